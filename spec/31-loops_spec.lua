-- The event-loop adapters on the real libraries: p2pnet.luv (Debian lua-luv), p2pnet.cqueues
-- (lua-cqueues), p2pnet.socket (LuaSocket's select) in this Lua 5.4, and p2pnet.copas
-- (Debian's lua-copas, packaged for Lua 5.1/5.2 only) in a LuaJIT child process.
--
-- Each run: two nodes on 127.0.0.1 driven only by the adapter's loop. Once both joined, the
-- host loop's own code (a luv timer, a cqueues coroutine, a copas thread, the select loop)
-- sends one message each way, and every receipt (the remote handler's reply, checked) sends
-- the next, N each way. The time from that first send to its receipt shows that sends made
-- outside a poll leave at once (the idle keepalive timer is about a second away). Then the
-- loop runs idle for a second and the process CPU time over that second is measured.

local p2pnet = require "p2pnet"

-- Messages each way.
local N = 20
-- Idle CPU bound, in percent of wall time (two idle nodes measure about 0.01-0.1%).
local IDLE_CPU_MAX = 5
-- The first message's receipt, sent from the host loop's code: well under the keepalive (an
-- adapter that left that send for the next wake-up measures 0.2-1 s; they measure 0.2-6 ms).
local FIRST_RECEIPT_MAX = 0.1

-- The scenario, as source: the copas child (another interpreter) runs the same text.
local SCENARIO = [=[
local function scenario(p2pnet, n)
    local s = { got = { a = 0, b = 0 }, bad = {}, peer = {} }
    s.a = assert(p2pnet.node { host = "127.0.0.1" })
    s.b = assert(p2pnet.node { host = "127.0.0.1" })
    s.a:on("message", function(_, t, data) return "a:" .. t .. ":" .. data end)
    s.b:on("message", function(_, t, data) return "b:" .. t .. ":" .. data end)
    local function joined(side, p)
        s.peer[side] = p
        if s.peer.a and s.peer.b then s.joined_at = s.a:now() end
    end
    s.a:on("join", function(p) joined("a", p) end)
    s.b:on("join", function(p) joined("b", p) end)
    assert(s.a:connect(s.b:address()))
    local function send(side, other, i)
        assert(s.peer[side]:send(7, side .. i, function(ok, reply)
            if ok and reply == other .. ":7:" .. side .. i then
                s.got[side] = s.got[side] + 1
            else
                s.bad[#s.bad + 1] = tostring(reply)
            end
            if i == 1 and side == "a" then s.first = s.a:now() - s.t_start end
            if i < n then send(side, other, i + 1) end
        end))
    end
    -- both joined, and the handshake's own timers are over: the nodes wait for a keepalive,
    -- the better to see a send that would wait for the next wake-up
    function s.ready() return s.joined_at ~= nil and s.a:now() - s.joined_at > 0.05 end
    function s.start()
        s.t_start = s.a:now()
        send("a", "b", 1)
        send("b", "a", 1)
    end
    function s.done() return s.got.a == n and s.got.b == n end
    -- idle measurement: process CPU seconds over node-clock seconds
    function s.idle_begin() s.idle = { cpu = os.clock(), t = s.a:now() } end
    function s.idle_end()
        s.idle.cpu = os.clock() - s.idle.cpu
        s.idle.wall = s.a:now() - s.idle.t
        s.idle.percent = 100 * s.idle.cpu / s.idle.wall
    end
    return s
end
return scenario
]=]

local scenario = assert(load(SCENARIO, "=scenario"))()

local function check_run(name, s)
    assert.are.same({}, s.bad)
    assert.are.equal(N, s.got.a)
    assert.are.equal(N, s.got.b)
    assert.is_true(s.first < FIRST_RECEIPT_MAX, "first receipt after " .. s.first .. " s")
    assert.is_true(s.idle.wall >= 0.9, "idle for " .. s.idle.wall .. " s")
    print(("%s: first receipt %.2f ms; idle CPU %.3f%% (%.4f s CPU over %.3f s)")
          :format(name, s.first * 1000, s.idle.percent, s.idle.cpu, s.idle.wall))
    assert.is_true(s.idle.percent < IDLE_CPU_MAX, "idle CPU " .. s.idle.percent .. "%")
    assert.is_true(s.a.closed and s.b.closed)
end

describe("event-loop adapters", function()
    it("refuse what is not an open UDP node, naming the function and the argument", function()
        local sim = p2pnet.sim()
        local simnode = sim:node()
        local closed = assert(p2pnet.node { host = "127.0.0.1" })
        closed:close()
        local luv, cq = require "p2pnet.luv", require "p2pnet.cqueues"
        local ps = require "p2pnet.socket"
        local what = ": argument 'node' must be an open UDP node (not simulated, not closed)"
        for _, bad in ipairs { simnode, closed, "x", {} } do
            assert.has_error(function() luv.attach(bad) end, "p2pnet.luv.attach" .. what)
            assert.has_error(function() cq.wrap(require("cqueues").new(), bad) end,
                             "p2pnet.cqueues.wrap" .. what)
            assert.has_error(function() ps.wrap(bad) end, "p2pnet.socket.wrap" .. what)
        end
        assert.has_error(function() ps.step({}, -1) end,
            "p2pnet.socket.step: argument 'timeout' must be a number of seconds >= 0")
        simnode:close()
    end)

    it("p2pnet.loop: waits are rounded up to whole milliseconds, never down to 0", function()
        local loop = require "p2pnet.loop"
        assert.are.equal(0, loop.ms_up(0))
        assert.are.equal(1, loop.ms_up(0.0000001))
        assert.are.equal(1, loop.ms_up(0.0004))
        assert.are.equal(1, loop.ms_up(0.001))
        assert.are.equal(2, loop.ms_up(0.0011))
        assert.are.equal(loop.MAX_WAIT * 1000, loop.ms_up(1e12))
        -- wait(): the first timer of the open nodes; nil once all are closed
        local a = assert(p2pnet.node { host = "127.0.0.1" })
        local b = assert(p2pnet.node { host = "127.0.0.1" })
        assert.are.equal(0.5, loop.wait({ a, b }, 0.5)) -- no peer: no timer before 0.5 s
        assert(a:connect(b:address()))                   -- a retransmits the handshake
        local w = loop.wait({ a, b })
        assert.is_true(w >= 0 and w < 5)
        a:close()
        local nodes = { a, b }
        assert.are.equal(1, loop.poll_due(nodes))       -- a is dropped from the array
        assert.are.equal(1, #nodes)
        assert.are.equal(b, nodes[1])
        b:close()
        assert.is_nil(loop.wait({ a, b }))
    end)

    it("p2pnet.luv: a poll handle and a timer rounded up drive two nodes", function()
        local uv = require "luv"
        local pluv = require "p2pnet.luv"
        local s = scenario(p2pnet, N)
        local da, db = pluv.attach(s.a), pluv.attach(s.b)
        local guard, tick = uv.new_timer(), uv.new_timer()
        local result
        local function finish(r)
            result = r
            if not tick:is_closing() then tick:close() end
            if not guard:is_closing() then guard:close() end
            da:close()        -- the driver closes its handles, then the node
            s.b:close()       -- a bare close: the driver notices it before the loop waits
        end
        guard:start(10000, 0, function() finish("timed out") end)
        local started = false
        tick:start(5, 5, function() -- the host loop's own code, in a luv timer
            if not started and s.ready() then
                started = true
                s.start()
            elseif started and s.done() then
                tick:stop()
                s.idle_begin()
                tick:start(1000, 0, function()
                    s.idle_end()
                    finish("ok")
                end)
            end
        end)
        uv.run() -- returns only once every handle is closed
        assert.are.equal("ok", result)
        assert.is_false(uv.loop_alive())
        assert.is_true(db.poll:is_closing())
        check_run("luv", s)
    end)

    it("p2pnet.cqueues: the node is pollable and pcq.loop drives it", function()
        local cqueues = require "cqueues"
        local pcq = require "p2pnet.cqueues"
        local s = scenario(p2pnet, N)
        -- the pollable methods
        assert.are.equal(s.a:fd(), s.a:pollfd())
        assert.are.equal("r", s.a:events())
        assert.is_true(s.a:timeout() >= 0)
        local cq = cqueues.new()
        pcq.wrap(cq, s.a)
        pcq.wrap(cq, s.b)
        local result
        cq:wrap(function()
            local deadline = cqueues.monotime() + 10
            local function wait_for(cond)
                while not cond() do
                    if cqueues.monotime() > deadline then return false end
                    cqueues.sleep(0.005)
                end
                return true
            end
            if not wait_for(s.ready) then result = "no join" end
            if not result then
                s.start() -- sends from a coroutine of the controller
                if not wait_for(s.done) then result = "no receipts" end
            end
            if not result then
                s.idle_begin()
                cqueues.sleep(1)
                s.idle_end()
                result = "ok"
            end
            s.a:close()
            s.b:close() -- pcq.loop wakes both drivers to end, and returns
        end)
        local t0 = cqueues.monotime()
        assert(pcq.loop(cq))
        assert.are.equal("ok", result)
        assert.is_true(cq:empty())
        assert.is_true(cqueues.monotime() - t0 < 9)
        check_run("cqueues", s)
        -- a closed node is still pollable (no descriptor, due at once)
        assert.is_nil(s.a:pollfd())
        assert.are.equal(0, s.a:timeout())
    end)

    it("p2pnet.cqueues: cqueues.poll(node) wakes on a datagram", function()
        local cqueues = require "cqueues"
        require "p2pnet.cqueues"
        local a = assert(p2pnet.node { host = "127.0.0.1" })
        local b = assert(p2pnet.node { host = "127.0.0.1" })
        local cq = cqueues.new()
        local woke
        cq:wrap(function()
            assert(a:connect(b:address())) -- a's handshake datagram goes to b
            a:next_timeout()                -- hands it to the socket
            local t0 = cqueues.monotime()
            local r = cqueues.poll(b)
            woke = { r == b, cqueues.monotime() - t0 }
        end)
        assert(cq:loop(5))
        assert.is_true(woke[1])
        assert.is_true(woke[2] < 0.5)
        a:close()
        b:close()
    end)

    it("p2pnet.socket: socket.select on wrappers drives two nodes", function()
        local psocket = require "p2pnet.socket"
        local socket = require "socket"
        local s = scenario(p2pnet, N)
        local wa, wb = psocket.wrap(s.a), psocket.wrap(s.b)
        assert.are.equal(s.a:fd(), wa:getfd())
        -- select accepts the wrapper itself
        local r = socket.select({ wa }, nil, 0)
        assert.are.equal("table", type(r))
        -- a listening TCP socket served by the same loop
        local server = assert(socket.bind("127.0.0.1", 0))
        local _, port = server:getsockname()
        local client = assert(socket.connect("127.0.0.1", port))
        local accepted
        local deadline = s.a:now() + 10
        local started, result = false, nil
        psocket.loop({ wa, wb }, function(ready)
            if ready[1] == server and not accepted then accepted = server:accept() end
            if not started and s.ready() then
                started = true
                s.start() -- between two selects: the next wait hands the sends over
            elseif started and not s.idle and s.done() then
                s.idle_begin()
            elseif s.idle and s.a:now() - s.idle.t >= 1 then
                s.idle_end()
                result = "ok"
                s.a:close()
                s.b:close()
            end
            if s.a:now() > deadline and not s.a.closed then
                result = "timed out"
                s.a:close()
                s.b:close()
            end
        end, { server })
        client:close()
        if accepted then accepted:close() end
        server:close()
        assert.are.equal("ok", result)
        assert.is_truthy(accepted)
        assert.are.equal(-1, wa:getfd())
        assert.is_nil(wa:timeout())
        check_run("socket.select", s)
    end)
end)

-- Debian's lua-copas is installed for Lua 5.1 and 5.2 only: the copas run happens in a LuaJIT
-- child process, on the module built for LuaJIT.
describe("event-loop adapters under LuaJIT #host", function()
    local CHILD = [=[
local p2pnet = require "p2pnet"
local copas = require "copas"
local pcopas = require "p2pnet.copas"
local N = tonumber(arg[1])
local s = scenario(p2pnet, N)
local ta = pcopas.attach(s.a)
local tb = pcopas.attach(s.b)
assert(type(ta) == "thread")
local deadline = s.a:now() + 10
local started = false
while not (started and s.done()) and s.a:now() < deadline do
    pcopas.step(0.05)
    if not started and s.ready() then
        started = true
        copas.addthread(function() s.start() end) -- sends from a copas thread
    end
end
assert(s.done(), "no receipts")
s.idle_begin()
local stop = s.a:now() + 1
while s.a:now() < stop do pcopas.step(stop - s.a:now()) end
s.idle_end()
pcopas.close(s.a) -- ends a's watching thread, then closes a
assert(s.a.closed)
assert(coroutine.status(ta) == "dead", "the watching thread ended")
s.b:close()       -- a bare close: b's thread stays parked, its descriptor no longer watched
local t0 = os.time()
pcopas.loop()     -- every attached node is closed: returns
assert(os.time() - t0 < 3)
assert(pcopas.step(0) == 0)
assert(coroutine.status(tb) == "suspended")
print(("RESULT got=%d,%d bad=%d first=%.6f cpu=%.6f wall=%.6f copas=%s"):format(
    s.got.a, s.got.b, #s.bad, s.first, s.idle.cpu, s.idle.wall, copas._VERSION))
]=]

    it("p2pnet.copas: a copas thread watches each node, pcopas.loop runs the timers", function()
        local root = assert(io.popen("pwd")):read("*l")
        assert.are.equal(0, select(3, os.execute(
            "make -s -j2 BUILD=build-luajit LUA_PC=luajit module >/dev/null")))
        local dir = os.tmpname()
        os.remove(dir)
        assert(os.execute("mkdir -m 700 " .. dir))
        finally(function() os.execute("rm -rf " .. dir) end)
        local f = assert(io.open(dir .. "/child.lua", "w"))
        f:write("local scenario = (function() ", SCENARIO, " end)()\n", CHILD)
        f:close()
        local cmd = ("cd %s && LUA_PATH='%s/lua/?.lua;%s/lua/?/init.lua;;' " ..
                     "LUA_CPATH='%s/build-luajit/?.so;;' " ..
                     "timeout -k 5 30 luajit %s/child.lua %d 2>&1")
            :format(root, root, root, root, dir, N)
        local p = assert(io.popen(cmd))
        local out = p:read("*a")
        local ok = p:close()
        assert.is_true(ok, out)
        local a, b, bad, first, cpu, wall, version = out:match(
            "RESULT got=(%d+),(%d+) bad=(%d+) first=([%d.]+) cpu=([%d.]+) wall=([%d.]+) " ..
            "copas=(.-)\n")
        assert.is_truthy(a, out)
        local s = {
            got = { a = tonumber(a), b = tonumber(b) }, bad = {}, first = tonumber(first),
            idle = { cpu = tonumber(cpu), wall = tonumber(wall) },
            a = { closed = true }, b = { closed = true },
        }
        s.idle.percent = 100 * s.idle.cpu / s.idle.wall
        assert.are.equal(0, tonumber(bad))
        check_run("copas (" .. version .. ", LuaJIT)", s)
    end)
end)
