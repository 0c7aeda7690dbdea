-- Lanes through the public Lua API, on simulated nodes: send opts and info.lane, per-lane
-- order, node:lanes, broadcast lanes, send_await with opts, sequenced datagrams, and the
-- errors misuse raises.
local p2pnet = require "p2pnet"
local S = require "spec.support"

-- Two connected simulated nodes a and b (a's peer for b is pa, b's for a is pb).
local function pair(sim_opts)
    local sim = p2pnet.sim(sim_opts or { seed = 17, latency = 0.01 })
    local a = assert(sim:node())
    local b = assert(sim:node())
    local pa, pb
    a:on("join", function(p) pa = p end)
    b:on("join", function(p) pb = p end)
    assert(a:connect(b:address(), { id = b.id }))
    for _ = 1, 300 do
        if pa and pb then break end
        sim:run(0.1)
    end
    assert(pa and pb, "no join")
    return sim, a, b, pa, pb
end

local function run_until(sim, cond, seconds)
    for _ = 1, (seconds or 30) * 10 do
        if cond() then return true end
        sim:run(0.1)
    end
    return cond()
end

describe("lanes", function()
    it("deliver on the lane sent, in order per lane, with info.lane and distinct ids", function()
        local sim, _, b, pa = pair { seed = 3, latency = 0.01, loss = 0.1, reorder = 0.1,
                                     duplicate = 0.05 }
        local got, ids = {}, {}
        b:on("message", function(_, _, data, info)
            got[info.lane] = got[info.lane] or {}
            table.insert(got[info.lane], data)
            assert.is_nil(ids[info.id], "message id seen twice: " .. info.id)
            ids[info.id] = info.lane
        end)
        local sent = { [0] = 0, [1] = 0, [254] = 0 }
        local lanes = { 0, 1, 254 }
        for i = 1, 300 do
            local lane = lanes[i % 3 + 1]
            sent[lane] = sent[lane] + 1
            local data = lane .. ":" .. sent[lane] .. ":" .. S.payload(i, (i * 53) % 2500)
            if lane == 0 then
                assert.is_true(pa:send(1, data)) -- no opts: lane 0, as always
            elseif i % 2 == 0 then
                assert.is_true(pa:send(1, data, { lane = lane }))
            else
                assert.is_true(pa:send(1, data, nil, { lane = lane }))
            end
        end
        assert.is_true(run_until(sim, function()
            return got[0] and got[1] and got[254] and #got[0] + #got[1] + #got[254] == 300
        end))
        for _, lane in ipairs(lanes) do
            assert.equal(sent[lane], #got[lane])
            for k, data in ipairs(got[lane]) do
                assert.equal(lane .. ":" .. k .. ":", data:match("^%d+:%d+:"))
            end
        end
        -- lane-0 ids keep their three parts; the others name the lane
        for id, lane in pairs(ids) do
            local _, dashes = id:gsub("-", "")
            assert.equal(lane == 0 and 2 or 3, dashes, id)
        end
    end)

    it("send a reply back for a message of any lane, to the right callback", function()
        local sim, a, b, pa = pair()
        b:on("message", function(_, _, data, info) return data .. "@" .. info.lane end)
        local replies = {}
        for _, lane in ipairs { 0, 5, 9 } do
            assert.is_true(pa:send(1, "q", function(ok, r) replies[lane] = { ok, r } end,
                                   { lane = lane }))
        end
        local awaited
        a:spawn(function() awaited = { pa:send_await(1, "w", 5, { lane = 7 }) } end)
        local awaited2
        a:spawn(function() awaited2 = { pa:send_await(1, "v", { lane = 8 }) } end)
        assert.is_true(run_until(sim, function()
            return replies[9] and awaited and awaited2
        end))
        assert.same({ true, "q@0" }, replies[0])
        assert.same({ true, "q@5" }, replies[5])
        assert.same({ true, "q@9" }, replies[9])
        assert.same({ true, "w@7" }, awaited)
        assert.same({ true, "v@8" }, awaited2)
    end)

    it("node:lanes gives a higher priority lane the link first", function()
        local sim, a, b, pa = pair { seed = 5, latency = 0.02, loss = 0.02 }
        assert.is_true(a:lanes { [1] = { priority = 0 }, [2] = { priority = 9, weight = 2 } })
        local order = {}
        b:on("message", function(_, _, _, info) order[#order + 1] = info.lane end)
        -- 3 x 256 KiB fit in lane 2's flow-control window: it is never held back by its peer,
        -- so only the priority decides (a lane that waits for a grant lets lower ones go)
        local big = ("x"):rep(256 * 1024)
        for _ = 1, 3 do assert.is_true(pa:send(1, big, { lane = 1 })) end
        for _ = 1, 3 do assert.is_true(pa:send(1, big, { lane = 2 })) end
        assert.is_true(run_until(sim, function() return #order == 6 end, 120))
        -- every lane-2 message arrives before the lane-1 ones, though sent after them
        assert.same({ 2, 2, 2, 1, 1, 1 }, order)
    end)

    it("carry a broadcast on its lane at every hop", function()
        local sim = p2pnet.sim { seed = 11, latency = 0.01 }
        local nodes = {}
        for i = 1, 3 do nodes[i] = assert(sim:node()) end
        local seen = {}
        for i = 2, 3 do
            nodes[i]:on("message", function(_, _, data, info)
                if info.broadcast then seen[#seen + 1] = { i, data, info.lane } end
            end)
        end
        -- a chain 1 - 2 - 3: node 3 hears it through node 2 (or directly once the mesh forms)
        assert(nodes[2]:connect(nodes[1]:address()))
        assert(nodes[3]:connect(nodes[2]:address()))
        sim:run(5)
        local id = assert(nodes[1]:broadcast(3, "hello", { lane = 6 }))
        assert.is_string(id)
        assert.is_true(run_until(sim, function() return #seen == 2 end))
        for _, s in ipairs(seen) do
            assert.equal("hello", s[2])
            assert.equal(6, s[3])
        end
    end)

    it("sequenced datagrams: newest wins, stale ones are dropped and counted", function()
        local sim, _, b, pa = pair { seed = 21, latency = 0.02, jitter = 0.02, reorder = 0.3,
                                     duplicate = 0.2 }
        local last, count, backwards = -1, 0, 0
        b:on("message", function(_, _, data, info)
            assert.is_true(info.unreliable)
            assert.is_true(info.sequenced)
            assert.equal(4, info.lane)
            local n = tonumber(data)
            if n <= last then backwards = backwards + 1 end
            last = n
            count = count + 1
        end)
        for i = 1, 300 do
            assert.is_true(pa:send_unreliable(2, tostring(i), { sequenced = true, lane = 4 }))
            sim:run(0.002)
        end
        sim:run(1)
        assert.equal(0, backwards)
        assert.is_true(count > 100 and count < 300, "delivered " .. count)
        assert.is_true(b:stats().dropped_stale > 0)
        assert.equal(1186, p2pnet.MAX_DATAGRAM_SEQUENCED)
        local ok, err = pa:send_unreliable(2, ("x"):rep(1187), { sequenced = true })
        assert.is_nil(ok)
        assert.equal("datagram too big", err)
    end)

    it("a plain datagram reports lane 0 and no sequence", function()
        local sim, _, b, pa = pair()
        local info
        b:on("message", function(_, _, _, i) info = i end)
        assert.is_true(pa:send_unreliable(2, "d"))
        assert.is_true(run_until(sim, function() return info ~= nil end))
        assert.is_true(info.unreliable)
        assert.equal(0, info.lane)
        assert.is_nil(info.sequenced)
    end)

    it("raise on misuse, naming the function and the argument", function()
        local _, a, _, pa = pair()
        local cases = {
            { "peer:send: argument 'opts.lane' must be an integer 0-254",
              function() pa:send(1, "x", nil, { lane = 255 }) end },
            { "peer:send: argument 'opts.lane' must be an integer 0-254",
              function() pa:send(1, "x", { lane = -1 }) end },
            { "peer:send: argument 'opts.lane' must be an integer 0-254",
              function() pa:send(1, "x", { lane = 1.5 }) end },
            { "peer:send: argument 'opts' must be a table or nil",
              function() pa:send(1, "x", nil, 3) end },
            { "node:broadcast: argument 'opts.lane' must be an integer 0-254",
              function() a:broadcast(1, "x", { lane = "2" }) end },
            { "peer:send_unreliable: argument 'opts.lane' must be an integer 0-254",
              function() pa:send_unreliable(1, "x", { sequenced = true, lane = 300 }) end },
            { "peer:send_unreliable: argument 'opts.lane' needs opts.sequenced = true",
              function() pa:send_unreliable(1, "x", { lane = 3 }) end },
            { "peer:send_unreliable: argument 'opts.sequenced' must be a boolean or nil",
              function() pa:send_unreliable(1, "x", { sequenced = 1 }) end },
            { "node:lanes: argument 'priority' must be an integer 0-255",
              function() a:lanes { [1] = { priority = 256 } } end },
            { "node:lanes: argument 'weight' must be an integer 1-65535",
              function() a:lanes { [1] = { weight = 0 } } end },
            { "node:lanes: argument 'lanes' keys must be lanes 0-254",
              function() a:lanes { [255] = { weight = 1 } } end },
            { "node:lanes: argument 'lanes' must be a table",
              function() a:lanes(3) end },
        }
        for _, c in ipairs(cases) do
            local ok, err = pcall(c[2])
            assert.is_false(ok)
            assert.is_truthy(tostring(err):find(c[1], 1, true), tostring(err))
        end
        local ok, err = pcall(function()
            a:spawn(function() end)
            return pa:send_await(1, "x", 1, 5)
        end)
        assert.is_false(ok)
        assert.is_truthy(tostring(err):find("send_await", 1, true), tostring(err))
    end)
end)
