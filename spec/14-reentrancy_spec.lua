-- Re-entrancy of the binding: finalizers (__gc) and handlers that call back into a node while
-- it drains or dispatches its events. Run it under ASan too (tests/run-all.sh does): before
-- the fix, a finalizer's peer:send during a drain freed the event data the drain was copying.
--
-- The documented results (docs/API.md, "Re-entrancy"):
--   during a drain (only a finalizer can run then): peer:send, peer:send_unreliable,
--     node:broadcast and node:connect return nil, "<method>: node is busy (called from a
--     finalizer during a drain)"; peer:disconnect() and node:close() are deferred to the end
--     of the drain; node:poll(), node:run() and sim:run() raise;
--   inside a handler: node:poll() and node:run() of the same node, and sim:run(), raise;
--     node:close() closes at once (it dispatches the remaining events before it returns).
local p2pnet = require "p2pnet"
local S = require "spec.support"
local core = require "p2pnet.core"

local BUSY = "node is busy (called from a finalizer during a drain)"

-- Finalizers need __gc on tables (5.2+); LuaJIT and 5.1 have them on userdata only.
local has_table_gc = _VERSION ~= "Lua 5.1"

-- Runs fn with a garbage collector that steps at nearly every allocation, so that
-- finalizers run inside the binding's own allocations (a drain's tables and strings).
-- (Lua 5.4 may start in generational mode, where pause and step multiplier do nothing.)
local function with_eager_gc(fn)
    collectgarbage("collect")
    local mode = _VERSION == "Lua 5.4" and collectgarbage("incremental") or nil
    local pause = collectgarbage("setpause", 0)
    local stepmul = collectgarbage("setstepmul", 1000)
    collectgarbage("collect") -- the next cycle's threshold now follows the new pause
    local ok, err = pcall(fn)
    collectgarbage("setpause", pause)
    collectgarbage("setstepmul", stepmul)
    if mode then
        collectgarbage(mode)
    end
    collectgarbage("collect")
    if not ok then
        error(err, 0)
    end
end

-- Keeps `count` finalizable objects in a chain: each finalizer makes a new one until
-- state.live is false, and calls action(state) while state.armed is true. state.calls counts
-- the actions that returned true; at `limit` (default 400) they stop.
local function finalizers(count, action, limit)
    local state = { live = true, armed = false, calls = 0 }
    local function arm()
        setmetatable({}, { __gc = function()
            if not state.live then
                return
            end
            if state.armed and state.calls < (limit or 400) and action(state) then
                state.calls = state.calls + 1
            end
            arm()
        end })
    end
    for _ = 1, count do
        arm()
    end
    return state
end

-- A simulated pair: a, b and their peers for each other (pa on a, pb on b).
local function sim_pair(seed)
    local sim = p2pnet.sim { seed = seed or 1, latency = 0.01 }
    local a, b = assert(sim:node()), assert(sim:node())
    local pa, pb
    a:on("join", function(p) pa = p end)
    b:on("join", function(p) pb = p end)
    assert(a:connect(b:address(), { id = b.id }))
    for _ = 1, 100 do
        if pa and pb then break end
        sim:run(0.05)
    end
    assert(pa and pb, "the pair did not join")
    a:on("join", nil)
    b:on("join", nil)
    return sim, a, b, pa, pb
end

-- Whether `node` is inside its drain right now (the finalizer calling this runs in it).
local function in_drain(node)
    return core.busy(node) == BUSY
end

local function payload(i)
    return ("m%05d:"):format(i) .. ("x"):rep(64 + i % 200)
end

-- Asserts that got[i] == payload(i) for every i: in order, none lost before the last,
-- none duplicated. Returns #got.
local function assert_prefix(got, at_least)
    for i = 1, #got do
        if got[i] ~= payload(i) then
            error(("message %d is %q, expected %q"):format(i, tostring(got[i]):sub(1, 8),
                payload(i):sub(1, 8)), 2)
        end
    end
    assert(#got >= (at_least or 0), ("only %d messages delivered"):format(#got))
    return #got
end

-- Sends `count` messages from a to b (pa) and lets the sim run until they all arrived or
-- `seconds` of virtual time passed. With `fin` (a finalizers() state), the sim runs with the
-- eager collector and those finalizers armed.
local function transfer(sim, pa, got, count, seconds, fin)
    for i = 1, count do
        assert(pa:send(1, payload(i)))
    end
    local t_end = sim:now() + (seconds or 5)
    local function run()
        while #got < count and sim:now() < t_end do
            sim:run(0.05)
        end
    end
    if fin then
        fin.armed = true
        with_eager_gc(run)
        fin.armed = false
        fin.live = false
    else
        run()
    end
end

describe("re-entrancy from finalizers during a drain", function()
    if not has_table_gc then
        pending("needs __gc on tables (Lua 5.2+)")
        return
    end

    it("peer:send is refused while the node drains; nothing lost or duplicated", function()
        local sim, a, b, pa, pb = sim_pair(1)
        local got, back = {}, {}
        b:on("message", function(_, _, data) got[#got + 1] = data end)
        a:on("message", function(_, _, data) back[#back + 1] = data end)
        local sent, refused, other = {}, 0, {}
        local st = finalizers(10, function()
            local busy = in_drain(b)
            if not busy and #sent >= 100 then
                return false
            end
            local data = "fin" .. (#sent + refused + 1)
            local ok, err = pb:send(7, data)
            if ok and not busy then
                sent[#sent + 1] = data
            elseif busy and err == "peer:send: " .. BUSY then
                refused = refused + 1
            else
                other[#other + 1] = tostring(err)
            end
            return true
        end)
        transfer(sim, pa, got, 300, 5, st)
        sim:run(1)
        assert.equal(300, assert_prefix(got))
        assert.same({}, other)
        assert.is_true(refused > 0, "no finalizer ran during a drain")
        assert.is_true(#sent > 0, "no finalizer ran outside a drain")
        -- what the finalizers sent arrived once each, in order (their numbers skip refusals)
        assert.same(sent, back)
        a:close(); b:close()
    end)

    it("send_unreliable and broadcast are refused while busy, work otherwise", function()
        local sim, a, b, pa, pb = sim_pair(2)
        local got, dgrams, casts = {}, 0, 0
        b:on("message", function(_, mtype, data)
            if mtype == 1 then got[#got + 1] = data end
        end)
        a:on("message", function(_, mtype, _, info)
            if mtype == 8 then dgrams = dgrams + 1 end
            if mtype == 9 and info.broadcast then casts = casts + 1 end
        end)
        local ok_d, ok_b, refused, other = 0, 0, 0, {}
        local st = finalizers(10, function(s)
            local busy = in_drain(b)
            if not busy and ok_d + ok_b >= 100 then
                return false
            end
            local fname, ok, err
            if s.calls % 2 == 0 then
                fname = "peer:send_unreliable"
                ok, err = pb:send_unreliable(8, "d")
                if ok then ok_d = ok_d + 1 end
            else
                fname = "node:broadcast"
                ok, err = b:broadcast(9, "b")
                if ok then ok_b = ok_b + 1 end
            end
            if busy and err == fname .. ": " .. BUSY then
                refused = refused + 1
            elseif busy or not ok then
                other[#other + 1] = tostring(err)
            end
            return true
        end)
        transfer(sim, pa, got, 300, 5, st)
        sim:run(2)
        assert.equal(300, assert_prefix(got))
        assert.same({}, other)
        assert.is_true(refused > 0, "no finalizer ran during a drain")
        assert.equal(ok_b, casts)
        assert.is_true(dgrams <= ok_d)
        a:close(); b:close()
    end)

    it("defers peer:disconnect() to the end of the drain", function()
        local sim, a, b, pa, pb = sim_pair(3)
        local got = {}
        local leaves_a, leaves_b = {}, {}
        b:on("message", function(_, _, data) got[#got + 1] = data end)
        a:on("leave", function(p, why) leaves_a[#leaves_a + 1] = { p, why } end)
        b:on("leave", function(p, why) leaves_b[#leaves_b + 1] = { p, why } end)
        local result, state_after
        local st = finalizers(10, function(s)
            if in_drain(b) then
                result = { pb:disconnect() }
                state_after = pb.state
                s.live = false
                return true
            end
        end)
        transfer(sim, pa, got, 300, 3, st)
        sim:run(2)
        assert.is_truthy(result, "no finalizer ran during a drain")
        assert.same({ true }, result)
        assert.equal("connected", state_after) -- deferred: not yet done inside the drain
        assert.equal("disconnected", pb.state)
        assert_prefix(got)
        assert.equal(1, #leaves_b)
        assert.equal(pb, leaves_b[1][1])
        assert.equal("closed", leaves_b[1][2])
        assert.equal(1, #leaves_a)
        assert.equal("closed", leaves_a[1][2])
        assert.is_false(b.closed)
        a:close(); b:close()
    end)

    it("defers node:close() to the end of the drain", function()
        local sim, a, b, pa, pb = sim_pair(4)
        local got = {}
        local leaves_a, leaves_b = {}, {}
        local after_leave = 0
        b:on("message", function(_, _, data)
            got[#got + 1] = data
            if #leaves_b > 0 then after_leave = after_leave + 1 end
        end)
        a:on("leave", function(p, why) leaves_a[#leaves_a + 1] = { p, why } end)
        b:on("leave", function(p, why) leaves_b[#leaves_b + 1] = { p, why } end)
        local closed_inside
        local st = finalizers(10, function(s)
            if in_drain(b) then
                b:close()
                b:close() -- idempotent, deferred too
                closed_inside = b.closed
                s.live = false
                return true
            end
        end)
        transfer(sim, pa, got, 300, 3, st)
        sim:run(2)
        assert.is_false(closed_inside, "no finalizer ran during a drain")
        assert.is_true(b.closed)
        assert_prefix(got)
        -- close() dispatched the messages queued before it, then the leave: nothing after
        assert.equal(0, after_leave)
        assert.equal(1, #leaves_b)
        assert.equal(pb, leaves_b[1][1])
        assert.equal("closed", leaves_b[1][2])
        assert.equal(1, #leaves_a)
        assert.equal("closed", leaves_a[1][2])
        -- a closed node still raises on use, whoever closed it
        local ok, err = pcall(pb.send, pb, 1, "x")
        assert.is_false(ok)
        assert.is_truthy(tostring(err):find("peer:send: node is closed", 1, true), err)
        a:close()
    end)

    it("raises from poll and run during a drain, refuses connect, lets reads work", function()
        local sim, a, b, pa, pb = sim_pair(5)
        local got = {}
        b:on("message", function(_, mtype, data)
            if mtype == 1 then got[#got + 1] = data end
        end)
        local errs
        local st = finalizers(10, function(s)
            if in_drain(b) then
                errs = {
                    select(2, pcall(b.poll, b)),
                    select(2, pcall(b.run, b, 1)),
                    select(2, pcall(sim.run, sim, 1)),
                    { pb:send(7, "x") },
                    { pa:send(7, "x") }, -- another node: not busy
                    { b:connect(a:address()) },
                    -- reading works, and a peer is still one Lua object
                    b:peers()[1] == pb and b:peer(a.id) == pb,
                    pb.state,
                    type(b:stats().packets_received),
                }
                s.live = false
                return true
            end
        end)
        transfer(sim, pa, got, 300, 3, st)
        sim:run(1)
        assert.is_truthy(errs, "no finalizer ran during a drain")
        assert.is_truthy(tostring(errs[1]):find("node:poll: " .. BUSY, 1, true), errs[1])
        assert.is_truthy(tostring(errs[2]):find("node:run: " .. BUSY, 1, true), errs[2])
        assert.is_truthy(tostring(errs[3]):find("sim:run is not re-entrant", 1, true), errs[3])
        assert.same({ nil, "peer:send: " .. BUSY }, errs[4])
        assert.same({ true }, errs[5])
        assert.same({ nil, "node:connect: " .. BUSY }, errs[6])
        assert.is_true(errs[7])
        assert.equal("connected", errs[8])
        assert.equal("number", errs[9])
        assert.equal(300, assert_prefix(got))
        a:close(); b:close()
    end)

    it("survives finalizers closing a UDP node while node:poll() drains it", function()
        local a, b, pa, pb = S.pair()
        local got = {}
        b:on("message", function(_, _, data) got[#got + 1] = data end)
        local leaves = 0
        b:on("leave", function() leaves = leaves + 1 end)
        local closed_inside, sends, refused = nil, 0, 0
        local st = finalizers(10, function(s)
            local busy = in_drain(b)
            if not busy and sends >= 20 then
                return false
            end
            local ok, err = pb:send(7, "x")
            if ok then
                sends = sends + 1
            elseif busy and err == "peer:send: " .. BUSY then
                refused = refused + 1
                if refused == 3 then
                    b:close()
                    closed_inside = b.closed
                    s.live = false
                end
            end
            return true
        end)
        for i = 1, 300 do
            assert(pa:send(1, payload(i)))
        end
        st.armed = true
        with_eager_gc(function()
            S.spin({ a, b }, function() return b.closed or #got >= 300 end, 10)
        end)
        st.live = false
        assert.is_false(closed_inside, "no finalizer ran during a drain")
        assert.is_true(b.closed)
        assert_prefix(got)
        assert.equal(1, leaves)
        a:close()
    end)
end)

describe("re-entrancy from handlers", function()
    it("a handler that closes its node: no crash, nothing lost or duplicated", function()
        local sim, a, b, pa, pb = sim_pair(6)
        local got, leaves_a, leaves_b, replies = {}, {}, {}, {}
        b:on("message", function(_, _, data)
            got[#got + 1] = data
            if #got == 100 then
                b:close()
                assert(b.closed)
            end
        end)
        a:on("leave", function(_, why) leaves_a[#leaves_a + 1] = why end)
        b:on("leave", function(p, why) leaves_b[#leaves_b + 1] = { p, why } end)
        -- reply callbacks still pending at b's close run exactly once
        for i = 1, 3 do
            assert(pb:send(5, "ask" .. i, function(ok, r) replies[#replies + 1] = { ok, r } end))
        end
        a:on("message", function(_, mtype) if mtype == 5 then return "late" end end)
        transfer(sim, pa, got, 300, 3)
        sim:run(2)
        assert.is_true(b.closed)
        assert_prefix(got, 100)
        assert.equal(1, #leaves_b)
        assert.equal(pb, leaves_b[1][1])
        assert.same({ "closed" }, leaves_a)
        assert.equal(3, #replies)
        a:close()
    end)

    it("a handler that polls or runs its own node raises, naming the function", function()
        local sim, a, b, pa = sim_pair(7)
        local got, errs = {}, {}
        b:on("message", function(_, _, data)
            got[#got + 1] = data
            if #got == 10 then
                errs.poll = select(2, pcall(b.poll, b, 0))
                errs.run = select(2, pcall(b.run, b, 1))
                errs.sim = select(2, pcall(sim.run, sim, 1))
                errs.other = { pcall(a.poll, a, 0) } -- another node: allowed
            end
        end)
        transfer(sim, pa, got, 300)
        sim:run(1)
        assert.equal(300, assert_prefix(got))
        assert.is_truthy(tostring(errs.poll):find(
            "node:poll: not re-entrant (called from a handler of this node)", 1, true), errs.poll)
        assert.is_truthy(tostring(errs.run):find("node:run: not re-entrant", 1, true), errs.run)
        assert.is_truthy(tostring(errs.sim):find(
            "sim:run is not re-entrant (called from a handler)", 1, true), errs.sim)
        assert.is_true(errs.other[1])
        a:close(); b:close()
    end)

    it("a UDP node's handler that polls its node raises; the node keeps working", function()
        local a, b, pa = S.pair()
        local got, err = {}, nil
        b:on("message", function(_, _, data)
            got[#got + 1] = data
            if #got == 5 then
                err = select(2, pcall(b.poll, b, 0.01))
            end
        end)
        for i = 1, 50 do
            assert(pa:send(1, payload(i)))
        end
        assert.is_true(S.spin({ a, b }, function() return #got >= 50 end))
        assert.equal(50, assert_prefix(got))
        assert.is_truthy(tostring(err):find("node:poll: not re-entrant", 1, true), err)
        a:close(); b:close()
    end)

    if has_table_gc then
        it("finalizers run by collectgarbage() inside handlers may send, disconnect, close",
            function()
                local sim, a, b, pa, pb = sim_pair(8)
                local got, back, results = {}, {}, {}
                a:on("message", function(_, mtype, data)
                    if mtype == 9 then back[#back + 1] = data end
                end)
                b:on("message", function(_, _, data)
                    got[#got + 1] = data
                    local n = #got
                    setmetatable({}, { __gc = function()
                        if n == 150 then
                            results.close = { pcall(b.close, b) }
                            results.closed = b.closed
                        elseif not b.closed then
                            local ok, err = pb:send(9, "gc" .. n)
                            results[#results + 1] = ok or err
                        end
                    end })
                    collectgarbage(n % 2 == 0 and "collect" or "step")
                    collectgarbage("collect")
                end)
                transfer(sim, pa, got, 300, 3)
                sim:run(2)
                -- handlers are not a drain: every send from them worked
                for i = 1, #results do
                    assert.equal(true, results[i])
                end
                assert.same({ true }, results.close)
                assert.is_true(results.closed) -- not deferred: no drain was running
                assert_prefix(got, 150)
                for i = 1, #back do
                    assert.equal("gc" .. i, back[i])
                end
                assert.equal(#results, #back)
                a:close()
            end)
    end
end)

describe("hardening options and stats", function()
    it("accepts the budget options and reports the new counters", function()
        local sim = p2pnet.sim { seed = 9 }
        local n = assert(sim:node {
            peer_memory = 1048576, memory = 8 * 1048576, max_half_open = 64,
            cookie_threshold = 8,
        })
        local st = n:stats()
        for _, k in ipairs { "memory", "memory_peak", "dropped_budget", "dropped_amplification",
                             "dropped_unsolicited", "dropped_replay", "cookies_sent",
                             "under_load", "rekeys", "work_dh", "work_verify" } do
            assert.equal("number", type(st[k]), k)
            assert.is_true(st[k] >= 0, k)
        end
        n:close()
        local u = assert(p2pnet.node { host = "127.0.0.1", peer_memory = 65536, memory = 2 ^ 30,
                                       max_half_open = 1, cookie_threshold = 1 })
        u:close()
    end)

    it("raises for bad budget options, naming the function and the option", function()
        local sim = p2pnet.sim { seed = 10 }
        local cases = {
            { peer_memory = 0 }, { peer_memory = -1 }, { peer_memory = 1.5 },
            { peer_memory = "1M" }, { memory = 0 }, { memory = 2 ^ 60 }, { memory = true },
            { max_half_open = 0 }, { max_half_open = 2 ^ 32 }, { max_half_open = "8" },
            { cookie_threshold = 0 }, { cookie_threshold = 0.5 }, { cookie_threshold = {} },
        }
        for _, opts in ipairs(cases) do
            local name = next(opts)
            local err = S.raises(p2pnet.node, opts)
            assert.is_truthy(err:find("p2pnet.node: option '" .. name .. "'", 1, true), err)
            err = S.raises(sim.node, sim, opts)
            assert.is_truthy(err:find("sim:node: option '" .. name .. "'", 1, true), err)
        end
    end)
end)
