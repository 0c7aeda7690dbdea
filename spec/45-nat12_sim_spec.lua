-- Issue 12 ("reach every peer") as a user meets it in Lua, on the simulator: the new node
-- options and their errors, node:addresses() with the kinds "mapped" and "stun", node:nat(),
-- node:lan_peers(), peer.path and peer:stats().candidates/nat, the new node:stats() counters
-- and their metrics, hand-over and birthday punching on simulated NATs. (Spec 39 is taken:
-- this is 45.) docs/API.md "Reaching every peer" is the text these check.
local p2pnet = require "p2pnet"

-- The error a call raises, as a string ("" when it does not raise).
local function raised(fn, ...)
    local ok, err = pcall(fn, ...)
    if ok then return "" end
    return tostring(err)
end

local function connected(node)
    local n = 0
    for _, p in ipairs(node:peers()) do
        if p.state == "connected" then n = n + 1 end
    end
    return n
end

local function kinds(node)
    local t = {}
    for _, a in ipairs(node:addresses()) do
        t[a.kind] = t[a.kind] or {}
        table.insert(t[a.kind], a)
    end
    return t
end

describe("issue 12 options", function()
    -- name = {value, words the error must hold}; every one raises naming p2pnet.node and it
    local BAD = {
        { "portmap", 1, "option 'portmap' must be a boolean" },
        { "punch", "no", "option 'punch' must be a boolean" },
        { "stun", "1.2.3.4:3478", "option 'stun' must be an array of at most 4" },
        { "stun", { "a:1", "b:2", "c:3", "d:4", "e:5" }, "option 'stun' must be an array" },
        { "stun", { 3478 }, "option 'stun' must be an array" },
        { "stun", { [2] = "a:1" }, "option 'stun' must be an array" },
        { "fallback", true, "option 'fallback' must be false or an array of at most 4 URLs" },
        { "fallback", { "wss://relay.example/p2pnet" }, "wss:// is not supported" },
        { "fallback", { "tcp://relay.example" }, "needs a port" },
        { "fallback", { "http://relay.example/" }, "must start with tcp:// or ws://" },
        { "fallback", { "tcp://relay.example:80/x" }, "tcp:// takes no path" },
        { "fallback", { "ws://relay.example:0/x" }, "bad port" },
        { "fallback", { "ws://relay.example:99999/x" }, "bad port" },
        { "fallback", { "ws:///x" }, "needs a host" },
        { "fallback", { "ws://h/a b" }, "bad path" },
        { "tcp_port", 0, "option 'tcp_port' must be an integer 1-65535" },
        { "tcp_port", 65536, "option 'tcp_port' must be an integer 1-65535" },
        { "tcp_port", "443", "option 'tcp_port' must be an integer 1-65535" },
        { "ws_path", "p2pnet", "option 'ws_path' must be a URL path" },
        { "discover", "wan", "option 'discover' must be \"lan\" or nil" },
        { "discover", true, "option 'discover' must be \"lan\" or nil" },
        { "discover_port", 0, "option 'discover_port' must be an integer 1-65535" },
        { "stun_server", 1.5, "option 'stun_server' must be an integer 1-65535" },
    }

    it("raise naming p2pnet.node and the option, for UDP nodes", function()
        for _, case in ipairs(BAD) do
            local err = raised(p2pnet.node, { host = "127.0.0.1", [case[1]] = case[2] })
            assert.matches("p2pnet.node: ", err, 1, true)
            assert.matches(case[3], err, 1, true)
        end
    end)

    it("raise naming sim:node and the option, for simulated nodes", function()
        local sim = p2pnet.sim { seed = 1 }
        for _, case in ipairs(BAD) do
            local err = raised(sim.node, sim, { [case[1]] = case[2] })
            assert.matches("sim:node: ", err, 1, true)
            assert.matches(case[3], err, 1, true)
        end
    end)

    it("name the option that needs another", function()
        assert.matches("option 'ws_path' needs tcp_port",
                       raised(p2pnet.node, { host = "127.0.0.1", ws_path = "/x" }), 1, true)
        assert.matches("option 'discover_port' needs discover = \"lan\"",
                       raised(p2pnet.node, { host = "127.0.0.1", discover_port = 5000 }), 1, true)
    end)

    it("return nil, err for an address that does not resolve, like connect", function()
        local node, err = p2pnet.node { host = "127.0.0.1",
                                        stun = { "no.such.host.invalid:3478" } }
        assert.is_nil(node)
        assert.equal("bad address 'no.such.host.invalid:3478' (option 'stun')", err)
        node, err = p2pnet.node { host = "127.0.0.1",
                                  fallback = { "tcp://no.such.host.invalid:1" } }
        assert.is_nil(node)
        assert.equal("bad address 'no.such.host.invalid:1' (option 'fallback')", err)
        -- the simulator takes numeric addresses only
        local sim = p2pnet.sim { seed = 1 }
        node, err = sim:node { stun = { "stun.example:3478" } }
        assert.is_nil(node)
        assert.equal("bad address 'stun.example:3478' (option 'stun')", err)
    end)

    it("accept every good value", function()
        local node = assert(p2pnet.node {
            host = "127.0.0.1", portmap = false, punch = false,
            stun = { "127.0.0.1:3478", "localhost:3479" },
            fallback = { "tcp://127.0.0.1:9", "ws://localhost/p2pnet", "ws://127.0.0.1:8080" },
        })
        node:close()
        node = assert(p2pnet.node { host = "127.0.0.1", fallback = false, portmap = true })
        node:close()
        local sim = p2pnet.sim { seed = 1 }
        assert(sim:node { stun = { "192.0.2.9:3478" }, fallback = { "tcp://192.0.2.1:4000" },
                          discover = "lan", discover_port = 44344, portmap = false })
    end)
end)

describe("peer.path", function()
    -- the examples of docs/API.md "Through a mediator": cone NATs end direct, symmetric relayed
    local function pair(nat)
        local sim = p2pnet.sim { seed = 1, latency = 0.01 }
        local mediator = assert(sim:node { mesh = false })
        local alice = assert(sim:node { nat = nat })
        local bob = assert(sim:node { nat = nat })
        assert(alice:connect(mediator:address()))
        assert(bob:connect(mediator:address()))
        sim:run(1)
        local peer = assert(alice:connect(bob.id, { via = mediator:address() }))
        return sim, peer, mediator, alice, bob
    end

    it("is nil while connecting, then \"direct\" through cone NATs", function()
        local sim, peer = pair("cone")
        assert.is_nil(peer.path)
        sim:run(3)
        assert.equal("connected", peer.state)
        assert.equal("direct", peer.path)
        assert.is_true(peer.direct)
        assert.equal("direct", peer:stats().path)
    end)

    it("is \"relayed\" through two symmetric NATs", function()
        local sim, peer, mediator = pair("symmetric")
        sim:run(5)
        assert.equal("connected", peer.state)
        assert.equal("relayed", peer.path)
        assert.is_false(peer.direct)
        assert.equal(mediator:address(), peer.address)
        local st = peer:stats()
        assert.equal("relayed", st.path)
        assert.equal("table", type(st.nat))
        assert.equal("table", type(st.candidates))
    end)

    it("is nil once the session has ended", function()
        local sim, peer = pair("cone")
        sim:run(3)
        peer:disconnect()
        sim:run(1)
        assert.equal("disconnected", peer.state)
        assert.is_nil(peer.path)
    end)
end)

describe("relay hand-over", function()
    it("moves a relayed session to the second mediator when the first leaves", function()
        local sim = p2pnet.sim { seed = 11, latency = 0.01 }
        local m1 = assert(sim:node { mesh = false })
        local m2 = assert(sim:node { mesh = false })
        local alice = assert(sim:node { nat = "symmetric" })
        local bob = assert(sim:node { nat = "symmetric" })
        for _, n in ipairs { alice, bob } do
            assert(n:connect(m1:address()))
            assert(n:connect(m2:address()))
        end
        sim:run(1)
        local peer = assert(alice:connect(bob.id, { via = m1:address() }))
        sim:run(5)
        assert.equal("relayed", peer.path)
        assert.equal(m1:address(), peer.address)
        local got, receipts = {}, 0
        bob:on("message", function(_, _, data) got[#got + 1] = tonumber(data) end)
        for i = 1, 300 do
            assert(peer:send(1, tostring(i), function(ok)
                if ok then receipts = receipts + 1 end
            end))
            if i == 100 then
                sim:run(0.05)
                m1:close()                     -- the relay leaves mid-stream
            end
        end
        sim:run(10)
        assert.equal("connected", peer.state)
        assert.equal("relayed", peer.path)
        assert.equal(m2:address(), peer.address)
        assert.equal(300, #got)
        for i = 1, 300 do assert.equal(i, got[i]) end  -- once each, in order
        assert.equal(300, receipts)
        assert.is_true(alice:stats().relay_handovers + bob:stats().relay_handovers >= 1)
    end)
end)

describe("node:nat()", function()
    it("has every field, with \"unknown\" before anything is known", function()
        local sim = p2pnet.sim { seed = 2 }
        local node = assert(sim:node { nat = "cone" })
        local n = node:nat()
        assert.equal("unknown", n.mapping)
        assert.is_nil(n.source)
        assert.is_true(n.portmap == "none" or n.portmap == "pending", tostring(n.portmap))
        assert.equal("unknown", n.udp)
        assert.is_nil(n.stream)
        node:close()
        assert.matches("node:nat: node is closed", raised(node.nat, node), 1, true)
    end)

    it("tells a randomizing NAT from a cone one by what two peers report", function()
        local sim = p2pnet.sim { seed = 3, latency = 0.01 }
        local m1 = assert(sim:node { mesh = false })
        local m2 = assert(sim:node { mesh = false })
        local cone = assert(sim:node { nat = "cone" })
        local sym = assert(sim:node { nat = "symmetric" })
        for _, n in ipairs { cone, sym } do
            assert(n:connect(m1:address()))
            assert(n:connect(m2:address()))
        end
        sim:run(2)
        assert.equal("independent", cone:nat().mapping)
        assert.equal("peers", cone:nat().source)
        assert.equal("dependent", sym:nat().mapping)
        assert.equal("peers", sym:nat().source)
        assert.equal("ok", sym:nat().udp)
    end)
end)

describe("node:addresses() kinds", function()
    it("lists local and reflexive addresses as before", function()
        local sim = p2pnet.sim { seed = 1 }
        local m1 = assert(sim:node { mesh = false })
        local m2 = assert(sim:node { mesh = false })
        local node = assert(sim:node { nat = "cone" })
        assert(node:connect(m1:address()))
        assert(node:connect(m2:address()))
        sim:run(1)
        local k = kinds(node)
        assert.equal(1, #k["local"])
        assert.equal(1, #k.reflexive)
        assert.is_nil(k.mapped)
        assert.is_nil(k.stun)
    end)
end)

describe("node:lan_peers()", function()
    it("is empty without discover = \"lan\", and raises after close", function()
        local sim = p2pnet.sim { seed = 1 }
        local node = assert(sim:node())
        assert.same({}, node:lan_peers())
        node:close()
        assert.matches("node:lan_peers: node is closed", raised(node.lan_peers, node), 1, true)
    end)
end)

-- The simulator's LAN domains, UDP blocking and streams (driver/sim.h), and its gateways and
-- STUN servers (driver/sim_gw.h): pending, with the reason, in a build without them.
local SIM_REACH = p2pnet.sim().block_udp ~= nil
local SIM_GW = p2pnet.sim().stun_server ~= nil

local function sim_describe(name, fn, needs_gw)
    if SIM_REACH and (SIM_GW or not needs_gw) then
        describe(name, fn)
    else
        describe(name, function()
            pending(needs_gw and "this build's simulator has no gateways or STUN servers"
                    or "this build's simulator has no LANs, UDP blocking or streams")
        end)
    end
end

sim_describe("port mapping on the simulator", function()
    for _, case in ipairs { { "pcp", "pcp" }, { "all", "pcp" }, { "natpmp", "natpmp" },
                            { "upnp", "upnp" } } do
        it(("maps the port on a %s gateway: a \"mapped\" address, mapping independent")
           :format(case[1]), function()
            local sim = p2pnet.sim { seed = 1, latency = 0.01 }
            local node = assert(sim:node { nat = "symmetric", gateway = case[1] })
            assert.equal("pending", node:nat().portmap)
            sim:run(5)
            local n = node:nat()
            assert.equal(case[2], n.portmap)
            assert.equal("independent", n.mapping)
            assert.equal("portmap", n.source)
            assert.equal("10.255.255.254", n.gateway)
            local mapped = kinds(node).mapped
            assert.equal(1, #mapped)
            assert.equal(case[2], mapped[1].protocol)
            -- PCP/NAT-PMP grant the 7200 s asked for, UPnP a 3600 s lease
            local lifetime = case[2] == "upnp" and 3600 or 7200
            assert.is_true(mapped[1].expires > lifetime - 10 and mapped[1].expires <= lifetime,
                           tostring(mapped[1].expires))
            assert.matches("^192%.0%.2%.%d+:4000$", mapped[1].address)
            assert.is_true(node:stats().portmap_sent >= 1)
        end)
    end

    it("stays quiet with portmap = false, and says \"none\" after a silent gateway", function()
        local sim = p2pnet.sim { seed = 1, latency = 0.01 }
        local off = assert(sim:node { nat = "cone", gateway = "pcp", portmap = false })
        local silent = assert(sim:node { nat = "cone", gateway = "silent" })
        sim:run(10)
        assert.equal("none", off:nat().portmap)
        assert.equal(0, off:stats().portmap_sent)
        assert.is_nil(kinds(off).mapped)
        assert.equal("none", silent:nat().portmap)
        assert.is_nil(kinds(silent).mapped)
    end)
end, true)

sim_describe("traffic without peers, on the simulator's clock", function()
    it("is at most 20 packets in the first minute and 6 in each of the next 59", function()
        local sim = p2pnet.sim { seed = 3, latency = 0.01 }
        -- a silent gateway, a LAN with nobody else on it, and LAN discovery on
        local node = assert(sim:node { nat = "cone", gateway = "silent", discover = "lan",
                                       lan = 1 })
        local function sent()
            local st = node:stats()
            return st.packets_sent + st.lan_sent
        end
        local last = sent()
        sim:run(60)
        local first = sent() - last
        print(("traffic on the sim: minute 1: %d (portmap %d, beacons %d)"):format(first,
              node:stats().portmap_sent, node:stats().lan_sent))
        assert.is_true(first <= 20, "minute 1: " .. first)
        assert.equal(6, node:stats().portmap_sent)
        local worst = 0
        for _ = 2, 60 do
            last = sent()
            sim:run(60)
            worst = math.max(worst, sent() - last)
        end
        print(("traffic on the sim: the busiest of minutes 2 to 60: %d"):format(worst))
        assert.is_true(worst <= 6, "a later minute: " .. worst)
        assert.equal(6, node:stats().portmap_sent)   -- nothing more to the gateway in an hour
    end)
end, true)

sim_describe("STUN on the simulator", function()
    it("gives a \"stun\" address and the mapping: cone independent, symmetric dependent",
       function()
        local sim = p2pnet.sim { seed = 5, latency = 0.01 }
        assert(sim:stun_server("198.18.0.200:3478", "198.18.0.201:3479"))
        local stun = { "198.18.0.200:3478" }
        local cone = assert(sim:node { nat = "cone", stun = stun, portmap = false })
        local sym = assert(sim:node { nat = "symmetric", stun = stun, portmap = false })
        local open = assert(sim:node { stun = stun, portmap = false })
        sim:run(5)
        assert.equal("independent", cone:nat().mapping)
        assert.equal("stun", cone:nat().source)
        assert.equal("dependent", sym:nat().mapping)
        assert.equal("stun", sym:nat().source)
        assert.equal("none", open:nat().mapping)
        assert.equal(1, #kinds(cone).stun)
        assert.equal(1, #kinds(sym).stun)
        assert.is_true(cone:stats().stun_received >= 1)
        -- a silent server: 3 tries, then nothing
        local quiet = assert(sim:node { nat = "cone", stun = { "198.18.0.250:3478" },
                                        portmap = false })
        sim:run(600)
        assert.equal(3, quiet:stats().stun_sent)
        assert.equal(0, quiet:stats().stun_received)
        assert.equal("unknown", quiet:nat().mapping)
    end)

    it("raises for a bad server address", function()
        local sim = p2pnet.sim { seed = 5 }
        assert.matches("sim:stun_server: argument 'primary' must be an \"ip:port\" IPv4",
                       raised(sim.stun_server, sim, "stun.example:3478"), 1, true)
        assert.matches("argument 'alternate' must differ from primary",
                       raised(sim.stun_server, sim, "198.18.0.1:3478", "198.18.0.1:3479"), 1,
                       true)
    end)
end, true)

sim_describe("birthday punching on the simulator", function()
    -- both learn their mapping from a STUN server; the mediator introduces and relays
    local function pair(nat_a, nat_b, opts)
        local sim = p2pnet.sim { seed = opts.seed or 13, latency = 0.01 }
        assert(sim:stun_server("198.18.0.200:3478", "198.18.0.201:3479"))
        local base = { stun = { "198.18.0.200:3478" }, portmap = false, punch = opts.punch }
        local mediator = assert(sim:node { mesh = false })
        local a = assert(sim:node { nat = nat_a, stun = base.stun, portmap = false,
                                    punch = base.punch, nat_ports = opts.ports_a })
        local b = assert(sim:node { nat = nat_b, stun = base.stun, portmap = false,
                                    punch = base.punch })
        assert(a:connect(mediator:address()))
        assert(b:connect(mediator:address()))
        sim:run(3)
        local peer = assert(a:connect(b.id, { via = mediator:address() }))
        return sim, peer, a, b
    end

    it("stays relayed when both NATs randomize, and says why", function()
        local sim, peer, a = pair("symmetric", "symmetric", {})
        sim:run(15)
        assert.equal("relayed", peer.path)
        assert.equal("dependent", a:nat().mapping)
        local nat = peer:stats().nat
        assert.equal("dependent", nat.self)
        assert.equal("dependent", nat.peer)
        assert.equal("relay", nat.strategy)
        assert.equal("both NATs randomize ports", nat.reason)
        assert.equal(0, a:stats().punch_probes)
    end)

    it("goes direct with one randomizing NAT and one cone, within the probe budget",
       function()
        local direct, probes = 0, {}
        for seed = 1, 10 do
            local sim, peer, a, b = pair("symmetric", "cone",
                                         { seed = seed, ports_a = { 20000, 24095 } })
            sim:run(15)
            assert.equal("connected", peer.state, "seed " .. seed)
            if peer.path == "direct" then direct = direct + 1 end
            -- the easy side (b) sprays; its session's count, and the node's, agree
            local session = assert(b:peer(a.id)):stats()
            local sprayed = session.nat.probes + peer:stats().nat.probes
            assert.is_true(sprayed <= 1024, "seed " .. seed .. ": " .. sprayed .. " probes")
            -- (the node counts what its guard let through to that IP during the spray, which
            -- may include the first packets of the new direct path: a few more, never twice)
            local counted = a:stats().punch_probes + b:stats().punch_probes
            assert.is_true(counted >= sprayed and counted <= math.min(sprayed + 16, 1024),
                           ("seed %d: the node counted %d probes, the sessions %d"):format(seed,
                                                                      counted, sprayed))
            assert.equal(1, a:stats().punch_rounds, "seed " .. seed .. ": one round (hard side)")
            assert.equal(1, b:stats().punch_rounds, "seed " .. seed .. ": one round (easy side)")
            probes[#probes + 1] = sprayed
            assert.equal("birthday", peer:stats().nat.strategy, "seed " .. seed)
        end
        print(("birthday on the sim: %d of 10 direct, probes %s"):format(direct,
              table.concat(probes, " ")))
        assert.is_true(direct >= 9, direct .. " of 10 direct")
    end)

    it("stays relayed with punch = false", function()
        local sim, peer, a, b = pair("symmetric", "cone", { punch = false,
                                                            ports_a = { 20000, 24095 } })
        sim:run(15)
        assert.equal("relayed", peer.path)
        assert.equal(0, a:stats().punch_probes + b:stats().punch_probes)
        assert.equal("relay", peer:stats().nat.strategy)
    end)
end, true)

sim_describe("LAN discovery on the simulator", function()
    it("meshes three nodes given no address; a fourth with another key learns nothing",
       function()
        local sim = p2pnet.sim { seed = 7, latency = 0.01 }
        local nodes = {}
        for i = 1, 3 do
            nodes[i] = assert(sim:node { nat = "cone", lan = 1, discover = "lan",
                                         network_key = "home", portmap = false })
        end
        local other = assert(sim:node { nat = "cone", lan = 1, discover = "lan",
                                        network_key = "not home", portmap = false })
        sim:run(10)
        for i, node in ipairs(nodes) do
            assert.equal(2, connected(node), "node " .. i)
            assert.equal(2, #node:lan_peers(), "node " .. i)
            for _, p in ipairs(node:peers()) do
                assert.equal("direct", p.path)
                assert.is_true(p.id ~= other.id)
            end
        end
        assert.equal(0, connected(other))
        assert.same({}, other:lan_peers())
        assert.is_true(other:stats().lan_dropped > 0)
        assert.equal(0, other:stats().lan_received)
        -- a mediator on the LAN lists what it hears and dials nobody
        local med = assert(sim:node { mesh = false, nat = "cone", lan = 1, discover = "lan",
                                      network_key = "home", portmap = false })
        sim:run(40)
        assert.equal(3, #med:lan_peers())
        assert.equal(0, med:stats().lan_dials)
        local ids = {}
        for _, l in ipairs(med:lan_peers()) do
            ids[l.id] = true
            assert.matches("^10%.0%.0%.%d+:%d+$", l.address)
            assert.is_true(l.age >= 0 and l.age < 40)
        end
        for _, node in ipairs(nodes) do assert.is_true(ids[node.id]) end
    end)

    it("raises naming the simulator's own options", function()
        local sim = p2pnet.sim { seed = 7 }
        assert.matches("sim:node: option 'lan' must be an integer 1-65535",
                       raised(sim.node, sim, { lan = 0 }), 1, true)
        assert.matches("sim:node: option 'gateway' must be \"pcp\"",
                       raised(sim.node, sim, { nat = "cone", gateway = "miniupnpd" }), 1, true)
        assert.matches("sim:node: option 'gateway' needs nat",
                       raised(sim.node, sim, { gateway = "pcp" }), 1, true)
        assert.matches("sim:node: option 'nat_ports' must be {lo, hi}",
                       raised(sim.node, sim, { nat = "symmetric", nat_ports = { 5000, 5100 } }),
                       1, true)
        assert.matches("sim:node: option 'stun_server' is not simulated",
                       raised(sim.node, sim, { stun_server = 3478 }), 1, true)
        assert.matches("p2pnet.node: unknown option 'lan'",
                       raised(p2pnet.node, { host = "127.0.0.1", lan = 1 }), 1, true)
    end)
end)

sim_describe("relay over TCP on the simulator", function()
    it("carries a node whose UDP is blocked, then moves to UDP losing nothing", function()
        local sim = p2pnet.sim { seed = 9, latency = 0.01 }
        local med = assert(sim:node { mesh = false, tcp_port = 4000 })
        local node = assert(sim:node { nat = "cone", portmap = false })
        assert(sim:block_udp(node, true))
        local peer = assert(node:connect(med:address()))
        sim:run(6)
        assert.equal("connected", peer.state)
        assert.equal("tcp", peer.path)
        assert.equal("blocked", node:nat().udp)
        assert.equal("tcp://" .. med:address(), node:nat().stream)
        local got, receipts = {}, 0
        med:on("message", function(_, _, data) got[#got + 1] = tonumber(data) end)
        for i = 1, 100 do
            assert(peer:send(1, tostring(i), function(ok)
                if ok then receipts = receipts + 1 end
            end))
        end
        sim:run(2)
        assert.equal(100, receipts)
        assert(sim:block_udp(node, false))
        for i = 101, 200 do
            assert(peer:send(1, tostring(i), function(ok)
                if ok then receipts = receipts + 1 end
            end))
            sim:run(0.1)
        end
        sim:run(20)
        assert.equal("direct", peer.path)
        assert.equal(200, receipts)
        assert.equal(200, #got)
        for i = 1, 200 do assert.equal(i, got[i]) end
        assert.is_true(sim:stats().udp_blocked > 0)
        assert.is_true(sim:stats().stream_datagrams > 0)
    end)
end)

describe("node:stats() and node:metrics() counters", function()
    local NEW = { "portmap_sent", "stun_sent", "stun_received", "lan_sent", "lan_received",
                  "lan_dropped", "punch_probes", "punch_hits", "punch_rounds", "stream_up",
                  "stream_dropped", "relay_handovers" }

    it("has every new counter, 0 on a quiet node, and a metric for each", function()
        local sim = p2pnet.sim { seed = 1 }
        local node = assert(sim:node { portmap = false })
        sim:run(1)
        local st = node:stats()
        local text = node:metrics()
        for _, name in ipairs(NEW) do
            assert.equal(0, st[name], name)
            assert.matches("\np2pnet_" .. name .. "_total 0\n", text, 1, true)
        end
        assert.equal(0, connected(node))
    end)
end)
