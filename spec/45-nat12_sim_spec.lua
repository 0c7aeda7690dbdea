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

    it("is \"relayed\" through two symmetric NATs, and the stats say why", function()
        local sim, peer, _, alice = pair("symmetric")
        sim:run(5)
        assert.equal("connected", peer.state)
        assert.equal("relayed", peer.path)
        assert.is_false(peer.direct)
        local st = peer:stats()
        assert.equal("relayed", st.path)
        -- both sides randomize: no birthday round, the session stays relayed and says so
        if st.nat ~= nil then
            assert.equal("relay", st.nat.strategy)
            assert.equal("dependent", st.nat.self)
            assert.equal("dependent", alice:nat().mapping)
        end
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
