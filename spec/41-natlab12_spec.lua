-- The NAT lab for issue 12 ("reach every peer"), on tests/natlab/lab.sh (see it for the
-- picture), with real kernels, real NATs, miniupnpd and coturn. Each scenario first proves the
-- lab with the command-line tools (natpmpc, upnpc, stun), then runs p2pnet nodes
-- (tests/natlab/node.lua, and the command line's mediator) and prints what it measured.
--
--   scenario 1  both NATs randomize ports (MASQUERADE --random-fully) and run miniupnpd: the
--               nodes map their port (PCP) and connect directly; with miniupnpd stopped the
--               same topology is relayed
--   scenario 6  STUN against coturn (RFC 5780 OTHER-ADDRESS): the "stun" address and the
--               mapping behaviour, for a cone NAT and for a randomizing one
--   scenario 2  A randomizes, B is a cone: 20 connects, at least 18 direct within 10 s
--               (birthday punching), all connected
--
-- Needs root, network namespaces, miniupnpd (-iptables), natpmpc, upnpc, coturn and
-- stun-client (mk/portmap.mk lists the Debian packages); without them it is pending, with
-- the reason. NATLAB_KEEP=1 keeps the children's logs.
local S = require "spec.support"
local Lab = require "tests.natlab.lab"

local MEDIATOR = "lua5.4 bin/p2pnet mediator --port 7000"
local MED_ADDR = Lab.MED .. ":7000"

-- Scenario 2 needs the birthday punching of design12 section 5 (package P5): this build has
-- it when, on the simulator, a randomizing NAT and a cone choose the "birthday" strategy.
local function birthday_in_build(p2pnet)
    local ok, strategy = pcall(function()
        local sim = p2pnet.sim { seed = 3, latency = 0.01 }
        assert(sim:stun_server("198.18.0.200:3478", "198.18.0.201:3479"))
        local stun = { "198.18.0.200:3478" }
        local m = assert(sim:node { mesh = false })
        local a = assert(sim:node { nat = "symmetric", stun = stun, portmap = false,
                                    nat_ports = { 20000, 24095 } })
        local b = assert(sim:node { nat = "cone", stun = stun, portmap = false })
        assert(a:connect(m:address()))
        assert(b:connect(m:address()))
        sim:run(1)
        local peer = assert(a:connect(b.id, { via = m:address() }))
        sim:run(15)
        return peer:stats().nat.strategy
    end)
    return ok and strategy == "birthday", ok and tostring(strategy) or strategy
end
local BIRTHDAY, BIRTHDAY_WHY

local esc = Lab.esc

local clock = os.time
do
    local ok, socket = pcall(require, "socket")
    if ok then clock = socket.gettime end
end

-- What the lab needs from this machine, or nil.
local function missing_tools()
    for _, tool in ipairs { "miniupnpd", "natpmpc", "upnpc", "turnserver", "stun",
                            "iptables-legacy", "conntrack" } do
        local f = io.popen("command -v " .. tool .. " 2>/dev/null")
        local found = f:read("l")
        f:close()
        if not found then return tool end
    end
    if not io.open("/etc/miniupnpd/iptables_init.sh") then return "miniupnpd-iptables" end
end

-- The binding's issue 12 options, or the reason they are not there.
local function binding_ready()
    package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
    local ok, p2pnet = pcall(require, "p2pnet")
    if not ok then return false, "p2pnet does not load: " .. tostring(p2pnet) end
    local made, node = pcall(p2pnet.node, { port = 0, stun = { "127.0.0.1:3478" },
                                            portmap = false })
    if not made then return false, "the binding lacks the issue 12 options: " .. tostring(node) end
    local has_nat = type(node.nat) == "function"
    node:close()
    if not has_nat then return false, "the binding lacks node:nat()" end
    BIRTHDAY, BIRTHDAY_WHY = birthday_in_build(p2pnet)
    return true
end

local available, why = Lab.available()
if available then
    local tool = missing_tools()
    if tool then available, why = false, "the issue 12 lab needs " .. tool end
end
if available then available, why = binding_ready() end
if not available then
    describe("the issue 12 NAT lab", function()
        pending("skipped: " .. why)
    end)
    return
end

-- Prints one measured line, so that the numbers show in the test output.
local function report(...)
    io.stdout:write("\n  natlab12: ", table.concat({ ... }, " "), "\n")
    io.stdout:flush()
end

describe("the issue 12 NAT lab #natlab #lab12", function()
    local lab, dir

    local function build(mode)
        if lab then lab:down() end
        lab = Lab.up(mode, dir)
    end

    lazy_setup(function()
        dir = S.tmpdir()
    end)

    lazy_teardown(function()
        S.lab_down(lab, dir)
    end)

    after_each(function()
        if lab then lab:forget() end
    end)

    local function mediator()
        return lab:mediator("med", "mediator", MEDIATOR)
    end

    -- Runs a command in a lab host; returns its output (raises when it fails).
    local function exec(host, ...)
        return lab:must("exec", host, ...)
    end

    -- The classic STUN client's verdict from `host` (it exits nonzero whatever it finds).
    local function stun_client(host, ...)
        local _, out = lab:run("exec", host, "timeout", "10", "stun", Lab.MED, "-v", ...)
        return out
    end

    -- NATA's miniupnpd rules once the one for `port` is gone, or after `seconds`.
    local function nata_rules_without(port, seconds)
        local t = clock()
        local rules
        repeat
            rules = exec("nata", "iptables-legacy", "-t", "nat", "-S", "MINIUPNPD")
            if not rules:find("--dport " .. port, 1, true) then break end
            os.execute("sleep 0.1")
        until clock() > t + seconds
        return rules
    end

    describe("scenario 1: both NATs randomize ports behind miniupnpd", function()
        it("the lab's gateways answer NAT-PMP, UPnP and keep randomizing without a mapping",
           function()
            build("upnp")
            local out = exec("a", "natpmpc", "-g", Lab.GW_A)
            assert.truthy(out:find("Public IP address : " .. Lab.UPNP_NAT_A, 1, true), out)
            out = exec("b", "timeout", "10", "upnpc", "-l")
            assert.truthy(out:find("Found valid IGD", 1, true), out)
            assert.truthy(out:find("ExternalIPAddress = " .. Lab.UPNP_NAT_B, 1, true), out)
            lab:coturn(true)
            out = stun_client("a")
            assert.truthy(out:find("Primary: Dependent Mapping", 1, true), out)
        end)

        it("maps the port with PCP and connects directly; close deletes the mapping",
           function()
            if not lab or lab.mode ~= "upnp" then build("upnp") end
            local _, med_id = mediator()
            local t0 = clock()
            local b, b_id = lab:node("b", "node-b", "--port 6100 --wait-address mapped --connect "
                                 .. MED_ADDR .. " --lifetime 60")
            lab:wait(b, "^addresses .*mapped=" .. esc(Lab.UPNP_NAT_B) .. ":6100", 15,
                     "B's mapped address")
            local mapped_b = clock() - t0
            lab:wait(b, "^nat mapping=independent source=portmap portmap=pcp ", 5)
            lab:wait(b, "^join " .. med_id .. " ", 20, "B registering with the mediator")
            local t1 = clock()
            local a, a_id = lab:node("a", "node-a", ("--port 6100 --wait-address mapped --dial %s "
                .. "--via %s --send-to %s --count 50 --lifetime 20"):format(b_id, MED_ADDR, b_id))
            lab:wait(a, "^addresses .*mapped=" .. esc(Lab.UPNP_NAT_A) .. ":6100", 15,
                     "A's mapped address")
            lab:wait(a, "^path " .. b_id .. " " .. esc(Lab.UPNP_NAT_B) .. ":6100 direct=true "
                     .. "connected$", 30, "A's direct path to B's mapped address")
            local direct = clock() - t1
            lab:wait(b, "^path " .. a_id .. " " .. esc(Lab.UPNP_NAT_A) .. ":6100 direct=true "
                     .. "connected$", 30, "B's direct path to A's mapped address")
            S.check_transfer(lab, a, b, a_id, 50)
            -- the gateway holds A's mapping while it runs, and none once it closed
            local rules = exec("nata", "iptables-legacy", "-t", "nat", "-S", "MINIUPNPD")
            assert.truthy(rules:find("--dport 6100", 1, true), rules)
            lab:wait(a, "^lifetime over$", 30)
            lab:wait_exit(a, 10)
            rules = nata_rules_without(6100, 5)
            assert.falsy(rules:find("--dport 6100", 1, true), "A's mapping outlived it: " .. rules)
            local stats = Lab.lines(a, "^stats (.*)$")
            report(("scenario 1 (miniupnpd): B mapped after %.2f s; A direct to B's mapped "
                    .. "address %.2f s after start; %s"):format(mapped_b, direct,
                                                               (stats[#stats] or {})[1] or ""))
        end)

        it("is relayed in the same topology without miniupnpd", function()
            if not lab or lab.mode ~= "upnp" then build("upnp") end
            lab:upnpd("a", false)
            lab:upnpd("b", false)
            local _, med_id = mediator()
            local b, b_id = lab:node("b", "node-b", "--port 6200 --connect " .. MED_ADDR)
            lab:wait(b, "^join " .. med_id .. " ", 20, "B registering with the mediator")
            local t1 = clock()
            local a, a_id = lab:node("a", "node-a", ("--port 6200 --dial %s --via %s --send-to %s "
                .. "--count 50"):format(b_id, MED_ADDR, b_id))
            local direct = lab:wait(a, "^join " .. b_id .. " %S+ direct=(%a+)$", 45,
                                    "A reaching B through the mediator")
            local joined = clock() - t1
            assert.equal("false", direct, lab:logs())
            S.check_transfer(lab, a, b, a_id, 50)
            local pm = lab:wait(a, "^nat mapping=%a+ source=%S+ portmap=(%a+) ", 15)
            -- the gateway stays silent: "none" once PCP and SSDP gave up (about 6.5 s)
            local t2 = clock()
            while pm ~= "none" and clock() < t2 + 10 do
                local all = Lab.lines(a, "^nat mapping=%a+ source=%S+ portmap=(%a+) ")
                pm = all[#all][1]
                os.execute("sleep 0.2")
            end
            assert.equal("none", pm, lab:logs())
            for _, p in ipairs(Lab.lines(a, "^path " .. b_id .. " %S+ direct=(%a+) connected$")) do
                assert.equal("false", p[1], "a direct path without port mapping?\n" .. lab:logs())
            end
            local stats = Lab.lines(a, "^stats (.*)$")
            report(("scenario 1 (no miniupnpd): relayed, joined after %.2f s; %s"):format(
                joined, (stats[#stats] or {})[1] or ""))
        end)
        it("maps with UPnP-IGD when the gateway speaks nothing else", function()
            if not lab or lab.mode ~= "upnp" then build("upnp") end
            lab:upnpd("a", false)
            lab:upnpd("a", true, true)
            local out = exec("a", "timeout", "10", "upnpc", "-l")
            assert.truthy(out:find("Found valid IGD", 1, true), out)
            local t0 = clock()
            local a = lab:node("a", "node-upnp", "--port 6700 --lifetime 12")
            lab:wait(a, "^addresses .*mapped=" .. esc(Lab.UPNP_NAT_A) .. ":6700", 15,
                     "A's mapped address")
            local took = clock() - t0
            lab:wait(a, "^nat mapping=independent source=portmap portmap=upnp ", 5)
            local rules = exec("nata", "iptables-legacy", "-t", "nat", "-S", "MINIUPNPD")
            assert.truthy(rules:find("--dport 6700", 1, true), rules)
            local stats = lab:wait(a, "^stats (portmap_sent=7.*)$", 5,
                                   "3 PCP + 1 SSDP + 3 HTTP requests")
            report(("scenario 1 (UPnP only): mapped 11.0.1.2:6700 after %.2f s; %s"):format(
                took, stats))
            lab:wait(a, "^lifetime over$", 20)
            lab:wait_exit(a, 10)
            rules = nata_rules_without(6700, 3)
            -- the node hands DeletePortMapping to the driver at close, which carries it out
            -- before it closes (p2p_udp_settle, at most 200 ms)
            assert.falsy(rules:find("--dport 6700", 1, true),
                         "the UPnP mapping outlives the node: " .. rules)
        end)
    end)

    describe("scenario 6: STUN against coturn", function()
        it("finds the stun address and an endpoint-independent mapping behind a cone NAT, "
           .. "a dependent one behind a randomizing NAT", function()
            build("cone")
            lab:coturn(true)
            -- the lab first, with the classic client: cone keeps the port, symmetric does not
            local out = stun_client("a", "-p", "6601")
            assert.truthy(out:find("Primary: Independent Mapping", 1, true), out)
            local t0 = clock()
            local a = lab:node("a", "stun-cone", "--port 6600 --no-portmap --stun " .. Lab.STUN
                           .. " --lifetime 20")
            local addr = lab:wait(a, "^addresses .*stun=(%S+)", 10, "the stun address")
            local took = clock() - t0
            assert.equal(Lab.NAT_A .. ":6600", addr)
            lab:wait(a, "^nat mapping=independent source=stun ", 10, "the mapping test")
            local tested = clock() - t0
            local stats = lab:wait(a, "^stats (.*stun_received=3.*)$", 5)
            report(("scenario 6 (cone): stun address %s after %.2f s, mapping independent "
                    .. "after %.2f s; %s"):format(addr, took, tested, stats))
            lab:forget()

            lab:must("nat", "a", "symmetric")
            out = stun_client("a", "-p", "6602")
            assert.truthy(out:find("Primary: Dependent Mapping", 1, true), out)
            t0 = clock()
            a = lab:node("a", "stun-symmetric", "--port 6610 --no-portmap --stun " .. Lab.STUN
                     .. " --lifetime 20")
            addr = lab:wait(a, "^addresses .*stun=(%S+)", 10, "the stun address")
            took = clock() - t0
            local ip, port = addr:match("^(.*):(%d+)$")
            assert.equal(Lab.NAT_A, ip)
            lab:wait(a, "^nat mapping=dependent source=stun ", 10, "the mapping test")
            tested = clock() - t0
            stats = lab:wait(a, "^stats (.*stun_received=3.*)$", 5)
            report(("scenario 6 (randomizing): stun address %s (port %s, bound 6610) after "
                    .. "%.2f s, mapping dependent after %.2f s; %s"):format(addr, port, took,
                                                                            tested, stats))
        end)
    end)

    describe("scenario 2: A randomizes ports, B is a cone", function()

        it("the lab: plain UDP birthday rounds (255 sockets, <= 1024 probes) hit", function()
            build("mixed")
            local hits, lines = 0, {}
            for run = 1, 5 do
                lab:must("flush", "a")
                lab:must("flush", "b")
                local h = lab:spawn("a", "hard" .. run, ("lua5.4 tests/natlab/udp.lua hard "
                    .. "%s:%d 255 9"):format(Lab.NAT_B, 40000 + run))
                lab:wait(h, "^opened 255$", 10)
                local e = lab:spawn("b", "easy" .. run, ("lua5.4 tests/natlab/udp.lua easy %d "
                    .. "%s 200 1024"):format(40000 + run, Lab.NAT_A))
                local result, sent, took = lab:wait(e, "^result (%a+) sent (%d+) elapsed (%S+)$",
                                                    15)
                if result == "hit" then hits = hits + 1 end
                lines[#lines + 1] = ("%s after %s probes, %s s"):format(result, sent, took)
                lab:forget()
            end
            report("scenario 2, plain UDP: " .. table.concat(lines, "; "))
            assert.is_true(hits >= 4, ("only %d of 5 plain birthday rounds hit"):format(hits))
        end)

        if not BIRTHDAY then
            pending("birthday punching (design12 section 5, package P5) is not in this build "
                    .. "(on the simulator a randomizing NAT and a cone chose strategy "
                    .. tostring(BIRTHDAY_WHY) .. "): scenario 2 cannot pass yet")
            return
        end

        it("connects 20 times, at least 18 directly within 10 s, all connected", function()
            if not lab or lab.mode ~= "mixed" then build("mixed") end
            local out = stun_client("a")
            assert.truthy(out:find("Primary: Dependent Mapping", 1, true), out)
            out = stun_client("b")
            assert.truthy(out:find("Primary: Independent Mapping", 1, true), out)
            local _, med_id = mediator()
            -- a fresh pair every run: the spray budget allows one spray per target IP per
            -- 10 minutes (design12 section 5.5), and every A is behind the same NAT
            local direct, connected, lines = 0, 0, {}
            for run = 1, 20 do
                lab:must("flush", "a")
                lab:must("flush", "b")
                local b, b_id = lab:node("b", "node-b" .. run, ("--port %d --stun %s --connect %s "
                    .. "--lifetime 40"):format(6300 + run, Lab.STUN, MED_ADDR))
                lab:wait(b, "^join " .. med_id .. " ", 20, "B registering with the mediator")
                local t0 = clock()
                local a = lab:node("a", "node-a" .. run, ("--port %d --stun %s --dial %s --via %s "
                    .. "--lifetime 30"):format(6400 + run, Lab.STUN, b_id, MED_ADDR))
                local ok = pcall(lab.wait, lab, a, "^path " .. b_id .. " %S+ %S+ connected$", 15,
                                 "A connected to B")
                local hit = false
                if ok then
                    connected = connected + 1
                    hit = pcall(lab.wait, lab, a, "^path " .. b_id .. " %S+ direct=true "
                                .. "connected$", math.max(0.1, t0 + 10 - clock()))
                end
                local took = clock() - t0
                if hit then direct = direct + 1 end
                -- B (the easy side) sprays: its counters, printed once a second
                os.execute("sleep 1.1")
                local astats, bstats = Lab.lines(a, "^stats (.*)$"), Lab.lines(b, "^stats (.*)$")
                local probes = ((bstats[#bstats] or {})[1] or ""):match("punch_probes=(%d+)")
                lines[#lines + 1] = ("run %2d: %s after %.2f s; B sprayed %s probes; A: %s"):format(
                    run, hit and "direct" or ok and "relayed" or "not connected", took,
                    probes or "0", (astats[#astats] or {})[1] or "no stats")
                lab:kill(a)
                lab:kill(b)
            end
            report("scenario 2:\n    " .. table.concat(lines, "\n    "))
            report(("scenario 2: %d of 20 direct within 10 s, %d connected"):format(direct,
                                                                                    connected))
            assert.equal(20, connected, lab:logs())
            assert.is_true(direct >= 18, ("only %d of 20 direct"):format(direct))
        end)
    end)
end)
