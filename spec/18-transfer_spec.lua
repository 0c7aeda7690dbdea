-- Streaming transfers (docs/API.md "Streaming transfers"): peer:send_file with a file or a
-- source function, node:on_transfer with a file or function sink, progress, cancel from
-- either side, refusal, the integrity check, resume, session loss, await in a task; the
-- source is read only as the window allows; and a file over real UDP on 127.0.0.1.
local p2pnet = require "p2pnet"
local S = require "spec.support"

local MiB = 1024 * 1024
-- What the core lets a transfer leave unacknowledged (P2P_TRANSFER_WINDOW), and a chunk.
local WINDOW = 4 * MiB
local CHUNK = 65536

-- A simulated pair, connected: a (sender) and b (receiver) and a's Peer of b.
local function sim_pair(opts)
    local sim = p2pnet.sim(opts or { seed = 18, latency = 0.01 })
    local a = assert(sim:node())
    local b = assert(sim:node())
    return sim, a, b, S.sim_join(sim, a, b)
end

-- A source function over `data`, in pieces of `piece` bytes; read counts what it gave.
local function source(data, piece)
    local src = { read = 0 }
    src.fn = function()
        if src.read >= #data then return nil end
        local s = data:sub(src.read + 1, src.read + piece)
        src.read = src.read + #s
        return s
    end
    return src
end

-- Runs sim until cond() or `seconds` of virtual time.
local function run_until(sim, cond, seconds)
    for _ = 1, seconds * 10 do
        if cond() then return true end
        sim:run(0.1)
    end
    return cond()
end

describe("streaming transfers", function()
    it("delivers 3 MiB from a source function to a function sink exactly once, with progress",
       function()
        local sim, _, b, pa = sim_pair()
        local data = S.payload(1, 3 * MiB + 12345)
        local got, offsets, recv_done, offer = {}, {}, nil, nil
        b:on_transfer(function(peer, t, info)
            offer = { peer = peer, t = t, info = info }
            return function(chunk, offset)
                got[#got + 1] = chunk
                offsets[#offsets + 1] = offset
            end, { done = function(ok, err) recv_done = { ok, err } end }
        end)
        local src = source(data, 100000)
        local progress, send_done = {}, nil
        local t = assert(pa:send_file(src.fn, {
            total = #data, name = "blob.bin",
            progress = function(done, total) progress[#progress + 1] = { done, total } end,
            done = function(ok, err) send_done = { ok, err } end,
        }))
        assert.is_true(run_until(sim, function() return send_done ~= nil end, 60))
        assert.same({ true, nil }, send_done)
        assert.same({ true, nil }, recv_done)
        assert.equal("blob.bin", offer.info.name)
        assert.equal(#data, offer.info.total)
        assert.equal(b:peers()[1], offer.peer)
        -- exactly once, in order, byte-exact
        assert.equal(#data, #table.concat(got))
        assert.is_true(table.concat(got) == data)
        local expect = 0
        for i, off in ipairs(offsets) do
            assert.equal(expect, off)
            expect = expect + #got[i]
        end
        -- progress: many calls, growing, ending at the total
        assert.is_true(#progress >= 10)
        for i = 2, #progress do
            assert.is_true(progress[i][1] > progress[i - 1][1])
        end
        assert.same({ #data, #data }, progress[#progress])
        assert.equal("done", t.status)
        assert.equal(#data, t.done)
        assert.equal(#data, t.total)
        assert.is_true(t.rate > 0)
        assert.equal("done", offer.t.status)
        assert.is_false(offer.t.outgoing)
        assert.is_true(t.outgoing)
    end)

    it("arrives exactly once through loss, duplication and reordering", function()
        local sim, _, b, pa = sim_pair {
            seed = 19, latency = 0.02, jitter = 0.01, loss = 0.05, duplicate = 0.02,
            reorder = 0.05,
        }
        local data = S.payload(8, MiB + 3)
        local got, next_off = {}, 0
        b:on_transfer(function()
            return function(chunk, offset)
                assert.equal(next_off, offset)
                next_off = offset + #chunk
                got[#got + 1] = chunk
            end
        end)
        local t = assert(pa:send_file(source(data, 40000).fn, { total = #data }))
        assert.is_true(run_until(sim, function() return t.status == "done" end, 120))
        assert.is_true(table.concat(got) == data)
    end)

    it("reads the source only as the window allows (memory stays flat)", function()
        local sim, _, b, pa = sim_pair()
        local data = S.payload(2, 16 * MiB)
        local got, ahead = 0, 0
        local src = source(data, CHUNK)
        b:on_transfer(function()
            return function(chunk)
                got = got + #chunk
            end
        end)
        local real_fn = src.fn
        src.fn = function()
            local s = real_fn()
            ahead = math.max(ahead, src.read - got)
            return s
        end
        local t = assert(pa:send_file(src.fn, { total = #data }))
        assert.is_true(run_until(sim, function() return t.status ~= "offered" and
            t.status ~= "running" end, 120))
        assert.equal("done", t.status)
        assert.equal(#data, got)
        -- read ahead of the receiver: at most the window and the chunk being written
        assert.is_true(ahead <= WINDOW + CHUNK, "read ahead " .. ahead)
        assert.is_true(ahead >= WINDOW / 2, "read ahead " .. ahead)
    end)

    it("sends a file to a file, and a size it does not announce", function()
        local sim, _, b, pa = sim_pair()
        local dir = S.tmpdir()
        local data = S.payload(3, 2 * MiB + 7)
        S.write(dir .. "/in.bin", data)
        local outs = { dir .. "/out1.bin", dir .. "/out2.bin" }
        local n = 0
        local totals = {}
        b:on_transfer(function(_, _, info)
            n = n + 1
            totals[n] = info.total or "unknown"
            return outs[n]
        end)
        local t1 = assert(pa:send_file(dir .. "/in.bin"))
        assert.equal("in.bin", t1.name)
        local src = source(data, 50000)
        local t2 = assert(pa:send_file(src.fn)) -- no total
        assert.is_true(run_until(sim, function() return t1.status == "done" and
            t2.status == "done" end, 60))
        assert.equal(data, S.read(outs[1]))
        assert.equal(data, S.read(outs[2]))
        assert.same({ #data, "unknown" }, totals)
        S.rmdir(dir)
    end)

    it("is refused when the handler returns nil, or there is no handler", function()
        local sim, _, b, pa = sim_pair()
        local results = {}
        local function send()
            return assert(pa:send_file(function() return nil end, {
                total = 0, done = function(ok, err) results[#results + 1] = { ok, err } end,
            }))
        end
        send() -- no handler
        b:on_transfer(function() return nil end)
        send()
        assert.is_true(run_until(sim, function() return #results == 2 end, 10))
        assert.same({ false, "peer cancelled: refused" }, results[1])
        assert.same({ false, "peer cancelled: refused" }, results[2])
    end)

    it("is cancelled by the sender or by the receiver mid-way, and the session goes on", function()
        for _, side in ipairs { "sender", "receiver" } do
            local sim, a, b, pa = sim_pair()
            local data = S.payload(4, 6 * MiB)
            local recv_t, recv_done, send_done
            local got = 0
            b:on_transfer(function(_, t)
                recv_t = t
                return function(chunk)
                    got = got + #chunk
                    if side == "receiver" and got >= MiB and t.status == "running" then
                        assert(t:cancel("enough"))
                    end
                end, { done = function(ok, err) recv_done = { ok, err } end }
            end)
            local t
            t = assert(pa:send_file(source(data, CHUNK).fn, {
                total = #data,
                progress = function(done)
                    if side == "sender" and done >= MiB and t.status ~= "cancelling" then
                        t.status = "cancelling"
                        assert(t:cancel("changed my mind"))
                    end
                end,
                done = function(ok, err) send_done = { ok, err } end,
            }))
            assert.is_true(run_until(sim, function() return send_done and recv_done end, 30))
            if side == "sender" then
                assert.same({ false, "cancelled: changed my mind" }, send_done)
                assert.same({ false, "peer cancelled: changed my mind" }, recv_done)
            else
                assert.same({ false, "peer cancelled: enough" }, send_done)
                assert.same({ false, "cancelled: enough" }, recv_done)
            end
            assert.is_true(got < #data)
            assert.equal("cancelled", t.status == "cancelled" and t.status or recv_t.status)
            -- a message still goes through
            local msg
            b:on("message", function(_, _, d) msg = d end)
            assert(pa:send(1, "still here"))
            assert.is_true(run_until(sim, function() return msg ~= nil end, 5))
            assert.equal("connected", pa.state)
            a:close()
        end
    end)

    it("resumes from the bytes a file sink has, and fails the check when they are wrong", function()
        local dir = S.tmpdir()
        local data = S.payload(5, MiB + 999)
        for _, case in ipairs { "good", "bad" } do
            local sim, _, b, pa = sim_pair()
            local prefix = data:sub(1, 400000)
            if case == "bad" then
                prefix = prefix:sub(1, 1000) .. "X" .. prefix:sub(1002)
            end
            local out = dir .. "/" .. case .. ".bin"
            S.write(out, prefix)
            local first_progress
            b:on_transfer(function()
                return out, { resume = true, progress = function(done)
                    first_progress = first_progress or done
                end }
            end)
            local t = assert(pa:send_file(source(data, 30000).fn, { total = #data }))
            local recv_status
            assert.is_true(run_until(sim, function()
                return t.status ~= "offered" and t.status ~= "running"
            end, 30))
            recv_status = t.error
            -- only the rest travelled
            assert.is_true(first_progress > 400000 and first_progress <= 400000 + CHUNK)
            if case == "good" then
                assert.equal("done", t.status)
                assert.equal(data, S.read(out))
            else
                assert.equal("failed", t.status)
                assert.equal("integrity: integrity check failed", recv_status)
            end
        end
        S.rmdir(dir)
    end)

    it("ends as lost on both sides when the session goes, and await returns in a task", function()
        local sim, a, b, pa = sim_pair()
        local data = S.payload(6, 8 * MiB)
        local recv_done
        b:on_transfer(function()
            return function() end, { done = function(ok, err) recv_done = { ok, err } end }
        end)
        local t = assert(pa:send_file(source(data, CHUNK).fn, { total = #data }))
        local awaited
        a:spawn(function()
            awaited = { t:await() }
        end)
        assert.is_true(run_until(sim, function() return t.done >= MiB end, 10))
        pa:disconnect()
        assert.is_true(run_until(sim, function() return awaited and recv_done end, 10))
        assert.same({ nil, "lost" }, awaited)
        assert.same({ false, "lost" }, recv_done)
        assert.equal("failed", t.status)
        -- await on an ended transfer returns at once; cancel says it has ended
        a:spawn(function() awaited = { t:await() } end)
        sim:run(0.1)
        assert.same({ nil, "lost" }, awaited)
        assert.same({ nil, "transfer has ended" }, { t:cancel() })
    end)

    it("checks its arguments", function()
        local _, _, _, pa = sim_pair()
        assert.is_truthy(S.raises(pa.send_file, pa, 42):find("argument 'source'", 1, true))
        assert.is_truthy(S.raises(pa.send_file, pa, "x", { lane = -1 }):find("opts.lane", 1, true))
        assert.is_truthy(S.raises(pa.send_file, pa, "x", { progress = 1 }):find("opts.progress", 1,
            true))
        local t, err = pa:send_file("/nonexistent/file")
        assert.is_nil(t)
        assert.is_string(err)
        t, err = pa:send_file(function() end, { name = ("n"):rep(2000) })
        assert.is_nil(t)
        assert.equal("metadata too long", err)
    end)

    it("sends a 4 MiB file over UDP on 127.0.0.1 byte-exact", function()
        local a, b, pa = S.pair()
        local dir = S.tmpdir()
        local data = S.payload(7, 4 * MiB + 1)
        S.write(dir .. "/in.bin", data)
        local recv_ok
        b:on_transfer(function()
            return dir .. "/out.bin", { done = function(ok, err) recv_ok = { ok, err } end }
        end)
        local t = assert(pa:send_file(dir .. "/in.bin", { lane = 0 }))
        assert.is_true(S.spin({ a, b }, function() return recv_ok and t.status == "done" end, 30))
        assert.same({ true, nil }, recv_ok)
        assert.equal(data, S.read(dir .. "/out.bin"))
        S.rmdir(dir)
        a:close()
        b:close()
    end)
end)
