-- The coroutine helpers of the pure-Lua layer: spawn, run, sleep, send_await, receive,
-- connect_await, on real nodes (and one on the simulator).
local p2pnet = require "p2pnet"
local S = require "spec.support"

describe("coroutine helpers", function()
    local a, b, pa, pb
    before_each(function() a, b, pa, pb = S.pair() end)
    after_each(function()
        a:close()
        b:close()
    end)

    it("spawn runs a task with its arguments inside poll", function()
        local got
        local co = a:spawn(function(x, y) got = { x, y } end, 1, "two")
        assert.equal("thread", type(co))
        assert.is_nil(got) -- not before the loop runs
        a:poll(0)
        assert.same({ 1, "two" }, got)
    end)

    it("sleep yields for about that long, run(seconds) returns on time", function()
        local t0 = a:now()
        local woke
        a:spawn(function()
            p2pnet.sleep(0.15)
            woke = a:now()
        end)
        a:run(0.3)
        local t1 = a:now()
        assert.is_number(woke)
        assert.is_true(woke - t0 >= 0.149, "woke too early")
        assert.is_true(woke - t0 < 1.0, "woke too late") -- generous: loaded CI machines
        assert.is_true(t1 - t0 >= 0.299)
        assert.is_true(t1 - t0 < 2.0)
    end)

    it("send_await returns true, reply; nil, err for remote errors and timeouts", function()
        b:on("message", function(_, mtype, data)
            if mtype == 3 then error("no such thing", 0) end
            return mtype == 1 and data:upper() or nil
        end)
        local r = {}
        a:spawn(function()
            r[1] = { pa:send_await(1, "abc") }
            r[2] = { pa:send_await(2, "abc") }
            r[3] = { pa:send_await(3, "abc") }
        end)
        assert.is_true(S.spin({ a, b }, function() return r[3] end))
        assert.same({ true, "ABC" }, r[1])
        assert.same({ true }, r[2])
        assert.same({ nil, "no such thing" }, r[3])
        -- b is not polled: no reply can come
        local t
        a:spawn(function() t = { pa:send_await(1, "x", 0.2) } end)
        local t0 = a:now()
        assert.is_true(S.spin({ a }, function() return t end, 3))
        assert.same({ nil, "timeout" }, t)
        assert.is_true(a:now() - t0 >= 0.19)
        -- the late reply is ignored, and the task is gone
        S.spin_for({ a, b }, 0.1)
        assert.same({ nil, "timeout" }, t)
        assert.equal(0, a:stats().task_errors)
    end)

    it("receive delivers queued and later messages, filters by type, times out", function()
        assert(pa:send(5, "early"))
        S.spin_for({ a, b }, 0.1) -- queued on b: no handler, no task waiting yet
        local got = {}
        b:spawn(function()
            got[1] = { b:receive() }
            got[2] = { b:receive(7) }
            got[3] = { b:receive(nil, 0.1) }
        end)
        b:poll(0)
        assert.equal(pb, got[1][1])
        assert.equal(5, got[1][2])
        assert.equal("early", got[1][3])
        assert.equal(a.id, got[1][4].origin)
        assert.is_nil(got[2])
        assert(pa:send(6, "other"))
        assert(pa:send(7, "wanted"))
        assert.is_true(S.spin({ a, b }, function() return got[3] end, 5))
        assert.equal(7, got[2][2])
        assert.equal("wanted", got[2][3])
        -- type 6 was queued while the task waited for 7; the third receive takes it
        assert.equal(6, got[3][2])
        local last
        b:spawn(function() last = { b:receive(nil, 0.1) } end)
        assert.is_true(S.spin({ b }, function() return last end, 3))
        assert.same({ nil, "timeout" }, last)
    end)

    it("receive answers the sender with nil, and a message handler takes precedence", function()
        local reply = {}
        b:spawn(function() b:receive() end)
        assert(pa:send(1, "x", function(ok, v) reply = { ok, v } end))
        assert.is_true(S.spin({ a, b }, function() return reply[1] ~= nil end))
        assert.same({ true }, reply)
        b:on("message", function() return "handled" end)
        local waiting = {}
        b:spawn(function() waiting = { b:receive(nil, 0.3) } end)
        assert(pa:send(1, "y", function(ok, v) reply = { ok, v } end))
        assert.is_true(S.spin({ a, b }, function() return waiting[2] end))
        assert.same({ true, "handled" }, reply)
        assert.same({ nil, "timeout" }, waiting)
    end)

    it("bounds the receive queue, dropping the oldest", function()
        for i = 1, 1100 do assert(pa:send(1, tostring(i))) end
        S.spin({ a, b }, function() return b:stats().receive_dropped >= 76 end, 10)
        assert.equal(76, b:stats().receive_dropped)
        local first
        b:spawn(function() first = select(3, b:receive()) end)
        b:poll(0)
        assert.equal("77", first)
    end)

    it("connect_await returns the joined peer, or nil, err", function()
        local c = assert(p2pnet.node { host = "127.0.0.1", timeout = 1 })
        local r = {}
        c:spawn(function()
            r.ok = { c:connect_await(b:address(), { id = b.id }) }
            r.again = { c:connect_await(b.id) }
            r.bad = { c:connect_await("nonsense") }
            r.wrong = { c:connect_await(a:address(), { id = p2pnet.identity().id }) }
            r.quick = { c:connect_await("127.0.0.1:9", 0.1) }
        end)
        assert.is_true(S.spin({ a, b, c }, function() return r.quick end, 10))
        local peer = r.ok[1]
        assert.equal(b.id, peer.id)
        assert.equal("connected", peer.state)
        assert.is_true(rawequal(peer, r.again[1]))
        assert.is_nil(r.bad[1])
        assert.is_string(r.bad[2])
        assert.is_nil(r.wrong[1])
        assert.is_string(r.wrong[2])
        assert.same({ nil, "timeout" }, r.quick)
        c:close()
    end)

    it("raises when a helper is called outside a task", function()
        local cases = {
            function() p2pnet.sleep(0.1) end,
            function() a:receive() end,
            function() pa:send_await(1, "x") end,
            function() a:connect_await(b:address()) end,
        }
        for _, fn in ipairs(cases) do
            local err = S.raises(fn)
            assert.is_truthy(err:find("inside a task", 1, true), err)
        end
        S.raises(a.spawn, a, "not a function")
        S.raises(p2pnet.sleep, -1)
        S.raises(a.receive, a, 70000)
        S.raises(a.receive, a, nil, "soon")
    end)

    it("run() returns when a task closes the node; waiting tasks get 'closed'", function()
        local got, waiting
        b:on("message", function(_, _, data) return data .. "!" end)
        a:spawn(function() waiting = { a:receive() } end)
        a:spawn(function()
            local ok, reply = pa:send_await(1, "ping")
            got = { ok, reply }
            a:close()
        end)
        local done = false
        -- b must answer while a runs: run b from a task on a's loop
        a:spawn(function()
            while not done do
                b:poll(0)
                p2pnet.sleep(0.001)
            end
        end)
        a:run()
        done = true
        assert.same({ true, "ping!" }, got)
        assert.same({ nil, "closed" }, waiting)
        assert.is_true(a.closed)
    end)

    it("next_timeout counts the timers of tasks", function()
        a:spawn(function() p2pnet.sleep(0.05) end)
        a:poll(0)
        assert.is_true(a:next_timeout() <= 0.05)
        a:spawn(function() end)
        assert.equal(0, a:next_timeout())
    end)

    if _VERSION == "Lua 5.4" then
        it("wakes waiting tasks with 'closed' when a <close> variable closes the node", function()
            local got = {}
            local chunk = assert(load([[
                local a, b, got = ...
                do
                    local closing <close> = b
                    a:spawn(function() got.r = { closing:receive() } end)
                    a:poll(0)
                    assert(got.r == nil)
                end
                a:poll(0)
            ]]))
            chunk(a, b, got)
            assert.is_true(b.closed)
            assert.same({ nil, "closed" }, got.r)
        end)
    end

    it("counts tasks that raise and keeps the loop going", function()
        local after
        a:spawn(function() error("task failure") end)
        a:spawn(function() p2pnet.sleep(0.01); after = true end)
        assert.is_true(S.spin({ a }, function() return after end))
        assert.equal(1, a:stats().task_errors)
    end)
end)

describe("coroutine helpers on the simulator", function()
    it("sleep and send_await run on virtual time", function()
        local sim = p2pnet.sim { seed = 3, latency = 0.05 }
        local a = assert(sim:node())
        local b = assert(sim:node())
        b:on("message", function(_, _, data) return data .. "?" end)
        local r = {}
        a:spawn(function()
            p2pnet.sleep(10)
            r.slept = sim:now()
            local peer = assert(a:connect_await(b:address(), { id = b.id }))
            r.joined = sim:now()
            r.reply = { peer:send_await(1, "what") }
            r.replied = sim:now()
        end)
        sim:run(30)
        assert.is_true(math.abs(r.slept - 10) < 1e-6)
        assert.is_true(r.joined > 10.1 and r.joined < 11)
        assert.same({ true, "what?" }, r.reply)
        assert.is_true(r.replied - r.joined >= 0.1 - 1e-6)
        assert.is_true(sim:now() >= 30 - 1e-6)
    end)

    it("node:run() on a simulated node stops when its tasks are done", function()
        local sim = p2pnet.sim { seed = 4, latency = 0.01 }
        local a = assert(sim:node())
        local finished
        a:spawn(function() p2pnet.sleep(2.5); finished = sim:now() end)
        a:run()
        assert.is_true(math.abs(finished - 2.5) < 1e-6)
        assert.is_true(sim:now() < 4)
    end)
end)
