-- The NAT lab: real kernels, real NATs. tests/natlab/lab.sh builds network namespaces joined
-- by veth links, two private hosts A and B each behind its own iptables NAT router, a public
-- router, and two public hosts (a mediator MED, a genesis member GEN); see lab.sh for the
-- picture. Nothing leaves the machine.
--
-- First the lab proves itself with plain UDP (tests/natlab/udp.lua), independently of
-- p2pnet: cone NATs keep a host's port and let two hosts that send to each other's mapping
-- through; symmetric NATs change the port per destination, and the same punching fails;
-- unsolicited inbound UDP is dropped without leaving conntrack state behind. Then real p2pnet
-- nodes run as separate processes in the lab (tests/natlab/node.lua, and the mediator of
-- bin/p2pnet): a connection by id through a mediator (direct with cone NATs, relayed with
-- symmetric ones), a mesh that connects two NATed members directly, and NAT rebinding in the
-- middle of a transfer.
--
-- Needs root and network namespaces; without them it is pending, with the reason. With
-- NATLAB_KEEP=1 the children's logs stay in a /tmp directory (printed at the end).
local S = require "spec.support"
local Lab = require "tests.natlab.lab"

local UDP = "lua5.4 tests/natlab/udp.lua"
local MEDIATOR = "lua5.4 bin/p2pnet mediator --port 7000"
local MED_ADDR = Lab.MED .. ":7000"

local esc = Lab.esc

-- Touches a file, for a child's --go option.
local function touch(path)
    assert(io.open(path, "wb")):close()
end

local available, why = Lab.available()
if not available then
    describe("the NAT lab", function()
        pending("skipped: " .. why)
    end)
    return
end

describe("the NAT lab #natlab", function()
    local lab, dir

    lazy_setup(function()
        dir = S.tmpdir()
        lab = Lab.up("cone", dir)
    end)

    lazy_teardown(function()
        S.lab_down(lab, dir) -- NATLAB_KEEP=1 keeps the children's logs for a look after the run
    end)

    after_each(function() lab:forget() end)

    -- Both NAT routers in `mode`, with empty conntrack tables.
    local function nats(mode)
        lab:must("nat", "a", mode)
        lab:must("nat", "b", mode)
    end

    -- The "who" answer of both reflectors for `host` from local port `lport`.
    local function who(host, lport, server2)
        local c = lab:spawn(host, "who-" .. host .. lport,
                            ("%s who %d %s:3478 %s"):format(UDP, lport, Lab.MED, server2))
        local one = lab:wait(c, "^seen%-by%-1 (%S+)$", 10)
        local two = lab:wait(c, "^seen%-by%-2 (%S+)$", 10)
        return one, two
    end

    -- A and B punch towards each other through the reflector on MED; returns their results
    -- and children.
    local function punch(lport)
        local a = lab:spawn("a", "punch-a", ("%s punch %d %s:3478 a%d b%d 3"):format(
            UDP, lport, Lab.MED, lport, lport))
        local b = lab:spawn("b", "punch-b", ("%s punch %d %s:3478 b%d a%d 3"):format(
            UDP, lport, Lab.MED, lport, lport))
        return lab:wait(a, "^result (%a+)$", 15), lab:wait(b, "^result (%a+)$", 15), a, b
    end

    local function reflectors()
        lab:spawn("med", "reflect-med", UDP .. " reflect 3478 30")
        lab:spawn("gen", "reflect-gen", UDP .. " reflect 3478 30")
        -- wait until both listen
        for _, c in ipairs(lab.children) do lab:wait(c, "^reflecting", 10) end
    end

    describe("with plain UDP", function()
        it("cone NATs keep a host's port whatever the destination, and punching works",
           function()
            nats("cone")
            reflectors()
            local one, two = who("a", 5000, Lab.GEN .. ":3478")
            assert.equal(Lab.NAT_A .. ":5000", one)
            assert.equal(Lab.NAT_A .. ":5000", two)
            one, two = who("b", 5000, Lab.GEN .. ":3478")
            assert.equal(Lab.NAT_B .. ":5000", one)
            assert.equal(Lab.NAT_B .. ":5000", two)
            local ra, rb, a, b = punch(5001)
            assert.equal("reached", ra, lab:logs())
            assert.equal("reached", rb, lab:logs())
            -- each heard the other from its NAT's public address
            lab:wait(a, "^got HELLO from b5001 at " .. esc(Lab.NAT_B) .. ":5001$", 1)
            lab:wait(b, "^got HELLO from a5001 at " .. esc(Lab.NAT_A) .. ":5001$", 1)
        end)

        it("drops unsolicited inbound UDP and keeps no conntrack entry for it", function()
            nats("cone")
            reflectors()
            -- A opens a mapping towards MED; GEN, which A never talked to, sends to it
            local a = lab:spawn("a", "listen-a", ("%s listen 5002 %s:3478 2.5"):format(
                UDP, Lab.MED))
            assert.equal(Lab.NAT_A .. ":5002", lab:wait(a, "^mapped (%S+)$", 10))
            local g = lab:spawn("gen", "knock-gen", ("%s knock 4000 %s:5002 5 15"):format(
                UDP, Lab.NAT_A))
            lab:wait(g, "^reflecting", 10)
            assert.equal("silent", lab:wait(a, "^result (%a+)$", 10), lab:logs())
            -- the router dropped the knocks before conntrack confirmed an entry for them ...
            local _, table_ = lab:run("conntrack", "a", "-p", "udp")
            assert.is_nil(table_:match("src=" .. esc(Lab.GEN)), table_)
            -- ... so A keeps its port when it then talks to GEN from the knocked port
            local one, two = who("a", 5002, Lab.GEN .. ":4000")
            assert.equal(Lab.NAT_A .. ":5002", one)
            assert.equal(Lab.NAT_A .. ":5002", two, "the NAT lost port preservation")
        end)

        it("symmetric NATs map each destination to another port, and punching fails",
           function()
            nats("symmetric")
            reflectors()
            local one, two = who("a", 5003, Lab.GEN .. ":3478")
            local ip1, port1 = one:match("^(.*):(%d+)$")
            local ip2, port2 = two:match("^(.*):(%d+)$")
            assert.equal(Lab.NAT_A, ip1)
            assert.equal(Lab.NAT_A, ip2)
            assert.are_not.equal(port1, port2)
            local ra, rb = punch(5004)
            assert.equal("blocked", ra, lab:logs())
            assert.equal("blocked", rb, lab:logs())
        end)
    end)

    -- Starts the mediator (the command line's) on MED; returns it and its id.
    local function mediator()
        return lab:mediator("med", "mediator", MEDIATOR)
    end

    -- Checks the receiver's log and the sender's receipts after a transfer of `count`.
    local function check_transfer(sender, receiver, sender_id, count)
        S.check_transfer(lab, sender, receiver, sender_id, count)
        S.check_receipts(lab, sender)
    end

    -- The last "path" line a child printed for `id`: address, direct, state.
    local function last_path(child, id)
        local all = Lab.lines(child, "^path " .. id .. " (%S+) direct=(%a+) (%a+)$")
        local p = all[#all] or {}
        return p[1], p[2], p[3]
    end

    describe("with p2pnet", function()
        it("connects by id through a mediator across cone NATs, directly, and keeps "
           .. "working after the mediator is gone", function()
            nats("cone")
            local med, med_id = mediator()
            local b, b_id = lab:node("b", "node-b", "--port 6100 --connect " .. MED_ADDR)
            lab:wait(b, "^join " .. med_id .. " ", 20, "B registering with the mediator")
            local go = dir .. "/go-cone"
            local a, a_id = lab:node("a", "node-a", ("--port 6100 --dial %s --via %s --send-to %s "
                .. "--go %s"):format(b_id, MED_ADDR, b_id, go))
            lab:wait(a, "^join " .. b_id .. " ", 30, "A reaching B through the mediator")
            local addr = lab:wait(a, "^path " .. b_id .. " (" .. esc(Lab.NAT_B)
                                  .. ":%d+) direct=true connected$", 30, "a direct path")
            lab:wait(b, "^path " .. a_id .. " " .. esc(Lab.NAT_A) .. ":%d+ direct=true "
                     .. "connected$", 30, "B's direct path")
            lab:kill(med)
            touch(go)
            check_transfer(a, b, a_id, 100)
            assert.same({ addr, "true", "connected" }, { last_path(a, b_id) })
        end)

        it("relays through the mediator across symmetric NATs", function()
            nats("symmetric")
            local _, med_id = mediator()
            local b, b_id = lab:node("b", "node-b", "--port 6200 --connect " .. MED_ADDR)
            lab:wait(b, "^join " .. med_id .. " ", 20, "B registering with the mediator")
            local a, a_id = lab:node("a", "node-a", ("--port 6200 --dial %s --via %s --send-to %s")
                :format(b_id, MED_ADDR, b_id))
            local direct = lab:wait(a, "^join " .. b_id .. " %S+ direct=(%a+)$", 45,
                                    "A reaching B through the mediator")
            assert.equal("false", direct, lab:logs())
            check_transfer(a, b, a_id, 100)
            local _, still, state = last_path(a, b_id)
            assert.equal("false", still, "a direct path through two symmetric NATs?")
            assert.equal("connected", state)
        end)

        it("connects two members behind cone NATs that know only a public genesis member",
           function()
            nats("cone")
            local _, g_id = lab:node("gen", "genesis", "--port 7000")
            local g_addr = Lab.GEN .. ":7000"
            local b, b_id = lab:node("b", "member-b", "--port 6300 --connect " .. g_addr)
            local a, a_id = lab:node("a", "member-a", ("--port 6300 --connect %s --send-to %s "
                .. "--count 20"):format(g_addr, b_id))
            lab:wait(a, "^join " .. g_id .. " ", 20, "A joining genesis")
            lab:wait(a, "^path " .. b_id .. " " .. esc(Lab.NAT_B) .. ":%d+ direct=true "
                     .. "connected$", 45, "A's direct path to B")
            lab:wait(b, "^path " .. a_id .. " " .. esc(Lab.NAT_A) .. ":%d+ direct=true "
                     .. "connected$", 45, "B's direct path to A")
            check_transfer(a, b, a_id, 20)
        end)

        it("loses nothing when A's NAT forgets and then changes its mapping mid-transfer",
           function()
            nats("cone")
            local g, g_id = lab:node("gen", "genesis", "--port 7001")
            local count = 500
            local a, a_id = lab:node("a", "member-a", ("--port 6400 --connect %s:7001 --send-to %s "
                .. "--count %d --interval 0.02"):format(Lab.GEN, g_id, count))
            lab:wait(g, "^path " .. a_id .. " " .. esc(Lab.NAT_A) .. ":6400 direct=true "
                     .. "connected$", 20, "G seeing A")
            -- (a) the NAT forgets every flow; the port stays (it is free again)
            lab:wait(a, "^receipt 60 ", 30, "the transfer's start")
            lab:must("flush", "a")
            -- (b) a new mapping: masquerade into other ports, and forget the old flow
            lab:wait(a, "^receipt 150 ", 30, "the transfer after a conntrack flush")
            lab:must("nat", "a", "ports", "40000-40999")
            local port = tonumber(lab:wait(g, "^path " .. a_id .. " " .. esc(Lab.NAT_A)
                                           .. ":(%d+) direct=true connected$", 1))
            -- G follows A once a packet from the new mapping reaches it (a keepalive at the
            -- latest, should the transfer end first on a slow machine)
            lab:wait(g, "^path " .. a_id .. " " .. esc(Lab.NAT_A) .. ":4%d%d%d%d direct=true "
                     .. "connected$", 15, "G following A to its new mapping")
            check_transfer(a, g, a_id, count)
            local addr, direct, state = last_path(g, a_id)
            local ip, new = addr:match("^(.*):(%d+)$")
            assert.equal(Lab.NAT_A, ip)
            new = tonumber(new)
            assert.is_true(new >= 40000 and new <= 40999,
                           ("G's address for A is %s, not in the new range\n%s"):format(
                               addr, lab:logs()))
            assert.are_not.equal(port, new)
            assert.equal("true", direct)
            assert.equal("connected", state)
            assert.same({}, Lab.lines(a, "^(leave .*)$"))
            assert.same({}, Lab.lines(g, "^(leave .*)$"))
        end)
    end)
end)
