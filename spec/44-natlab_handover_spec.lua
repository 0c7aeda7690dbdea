-- Scenario 5 of issue 12 in the NAT lab (tests/natlab/lab.sh): relay hand-over. A and B sit
-- behind symmetric (port-randomizing) NATs, so their session is relayed; both hold sessions
-- with two mediators, MED and a second one on GEN (the lab's other public host stands in for
-- the MED2 of design 12 section 8.4). While 300 messages flow from A to B through MED, MED is
-- killed with SIGKILL (no CLOSE): the session moves to GEN's relay within seconds, and B gets
-- all 300 messages once and in order, A every receipt.
--
-- Needs root and network namespaces; without them it is pending, with the reason.
local Lab = require "tests.natlab.lab"

local MEDIATOR = "lua5.4 bin/p2pnet mediator --port 7000"
local MED_ADDR = Lab.MED .. ":7000"
local GEN_ADDR = Lab.GEN .. ":7000"

-- A node that registers with several mediators (tests/natlab/node.lua takes one), dials by id
-- through one of them and sends numbered messages with receipts; it prints what spec 11's
-- node.lua prints (join, path, recv, receipt, done).
local NODE = [=[
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
if not os.getenv("LUA_CPATH") then package.cpath = "./build/?.so;" .. package.cpath end
local p2pnet = require "p2pnet"
local function say(...) io.stdout:write(table.concat({ ... }, " "), "\n"); io.stdout:flush() end
local opt = { count = 300, interval = 0.02, lifetime = 90 }
for i = 1, #arg, 2 do opt[arg[i]:gsub("^%-%-", ""):gsub("-", "_")] = arg[i + 1] end
local node = assert(p2pnet.node { port = tonumber(opt.port) })
say("id", node.id)
node:on("join", function(p)
    say("join", p.id, tostring(p.address), "direct=" .. tostring(p.direct))
end)
node:on("leave", function(p, why) say("leave", p.id, tostring(why)) end)
node:on("error", function(e) say("error", tostring(e)) end)
local want = {}
node:on("message", function(p, _, data)
    local n = tonumber(data:match("^msg (%d+)$"))
    if n == (want[p.id] or 1) then
        say("recv", p.id, n)
        want[p.id] = n + 1
    else
        say("recv-bad", p.id, tostring(n), want[p.id] or 1)
    end
    return "ack " .. tostring(n)
end)
for addr in (opt.connect or ""):gmatch("[^,]+") do assert(node:connect(addr)) end
if opt.dial then assert(node:connect(opt.dial, { via = opt.via })) end
local last, nextn, ok, failed, started = {}, 1, 0, 0, nil
local count, interval = tonumber(opt.count), tonumber(opt.interval)
local stop = node:now() + tonumber(opt.lifetime)
while node:now() < stop do
    node:poll(0.01)
    for _, p in ipairs(node:peers()) do
        local s = ("%s direct=%s %s"):format(tostring(p.address), tostring(p.direct), p.state)
        if p.id and last[p.id] ~= s then last[p.id] = s; say("path", p.id, s) end
    end
    local peer = opt.send_to and node:peer(opt.send_to)
    if peer and peer.state == "connected" and nextn <= count then
        started = started or node:now()
        while nextn <= count and node:now() >= started + (nextn - 1) * interval do
            local n = nextn
            if not peer:send(1, "msg " .. n, function(rok, reply)
                if rok and reply == "ack " .. n then ok = ok + 1 else failed = failed + 1 end
                say("receipt", n, rok and "ok" or "failed", tostring(reply))
                if ok + failed == count then say("done", "ok=" .. ok, "failed=" .. failed) end
            end) then break end
            nextn = n + 1
        end
    end
end
node:close()
]=]

local function esc(s)
    return (s:gsub("%p", "%%%0"))
end

local available, why = Lab.available()
if not available then
    describe("the NAT lab: relay hand-over", function()
        pending(why)
    end)
    return
end

describe("the NAT lab: relay hand-over #natlab #lab12", function()
    local lab, dir, script

    setup(function()
        dir = os.tmpname()
        os.remove(dir)
        assert(os.execute("mkdir -p " .. dir))
        script = dir .. "/handover_node.lua"
        local f = assert(io.open(script, "wb"))
        f:write(NODE)
        f:close()
        lab = Lab.up("symmetric", dir)
    end)

    teardown(function()
        if lab then lab:down() end
        if dir and not os.getenv("NATLAB_KEEP") then os.execute("rm -rf " .. dir) end
    end)

    local function node(host, name, args)
        local c = lab:spawn(host, name, "lua5.4 " .. script .. " " .. args)
        return c, lab:wait(c, "^id (%x+)$", 10)
    end

    it("moves a relayed session to a second relay when the first is killed, losing and "
       .. "repeating nothing", function()
        lab:must("nat", "a", "symmetric")
        lab:must("nat", "b", "symmetric")
        local med = lab:spawn("med", "mediator", MEDIATOR)
        local med_id = lab:wait(med, "^p2pnet mediator (%x+) listening on ", 10)
        local gen = lab:spawn("gen", "mediator2", MEDIATOR)
        local gen_id = lab:wait(gen, "^p2pnet mediator (%x+) listening on ", 10)
        local b, b_id = node("b", "node-b", ("--port 6500 --connect %s,%s"):format(MED_ADDR,
                                                                                  GEN_ADDR))
        lab:wait(b, "^join " .. med_id .. " ", 20, "B registering with MED")
        lab:wait(b, "^join " .. gen_id .. " ", 20, "B registering with GEN")
        local a, a_id = node("a", "node-a", ("--port 6500 --connect %s --dial %s --via %s "
            .. "--send-to %s --count 300 --interval 0.02"):format(GEN_ADDR, b_id, MED_ADDR, b_id))
        local direct = lab:wait(a, "^join " .. b_id .. " %S+ direct=(%a+)$", 45,
                                "A reaching B through MED")
        assert.equal("false", direct, lab:logs())
        lab:wait(a, "^path " .. b_id .. " " .. esc(MED_ADDR) .. " direct=false connected$", 10,
                 "A relayed by MED")
        lab:wait(a, "^receipt 100 ", 30, "the first 100 messages")
        local killed = os.time()
        lab:kill(med) -- SIGKILL: MED says nothing
        lab:wait(a, "^path " .. b_id .. " " .. esc(GEN_ADDR) .. " direct=false connected$", 10,
                 "A moving to GEN's relay")
        lab:wait(b, "^path " .. a_id .. " " .. esc(GEN_ADDR) .. " direct=false connected$", 10,
                 "B moving to GEN's relay")
        local took = os.time() - killed
        print(("     hand-over after MED was killed: %d s or less"):format(took + 1))
        assert.is_true(took <= 5, lab:logs())
        local ok, failed = lab:wait(a, "^done ok=(%d+) failed=(%d+)$", 60, "every receipt")
        assert.equal("300/0", ok .. "/" .. failed, lab:logs())
        local seen = {}
        for _, r in ipairs(Lab.lines(a, "^receipt (%d+) (%a+) (.*)$")) do
            assert.is_nil(seen[r[1]], "two receipts for message " .. r[1])
            seen[r[1]] = true
            assert.equal("ack " .. r[1], r[3])
        end
        local recv = Lab.lines(b, "^recv " .. a_id .. " (%d+)$")
        assert.equal(300, #recv, lab:logs())
        for i, r in ipairs(recv) do assert.equal(i, tonumber(r[1])) end
        assert.same({}, Lab.lines(b, "^(recv%-bad .*)$"))
        assert.same({}, Lab.lines(a, "^(leave " .. b_id .. " .*)$"))
    end)
end)
