-- Two real nodes on 127.0.0.1: joins, reliable ordered exactly-once messages, receipts,
-- unreliable datagrams, stats, leaving, and a wrong expected id.
local p2pnet = require "p2pnet"
local S = require "spec.support"

describe("messaging between two nodes", function()
    local a, b, pa, pb
    before_each(function() a, b, pa, pb = S.pair() end)
    after_each(function()
        a:close()
        b:close()
    end)

    it("reports the join on both sides with live peer fields", function()
        assert.equal(b.id, pa.id)
        assert.equal(a.id, pb.id)
        assert.equal("connected", pa.state)
        assert.equal("connected", pb.state)
        assert.equal(b:address(), pa.address)
        assert.equal(a:address(), pb.address)
        assert.is_true(pa.direct)
        assert.is_number(pa.rtt)
        assert.is_true(pa.rtt >= 0 and pa.rtt < 1)
        -- one Lua object per peer
        assert.is_true(rawequal(pa, a:peer(b.id)))
        assert.is_true(rawequal(pa, a:peers()[1]))
        assert.equal(1, #a:peers())
        assert.is_true(rawequal(pa, (a:connect(b.id))))
        assert.is_truthy(tostring(pa):find(b.id, 1, true))
    end)

    it("delivers 300 messages of mixed sizes up to 1 MiB byte-exact, in order, once", function()
        local sizes = { 0, 1, 2, 100, 1195, 1196, 1232, 4096, 65535, 65536, 1048576 }
        local seed = 7
        for i = #sizes + 1, 300 do
            seed = (seed * 1103515245 + 12345) % 2147483648
            local r = seed % 100
            if r < 60 then
                sizes[i] = seed % 1500
            elseif r < 95 then
                sizes[i] = seed % 20000
            elseif r < 98 then
                sizes[i] = seed % 200000
            else
                sizes[i] = 1048576
            end
        end
        local got = {}
        b:on("message", function(peer, mtype, data, info)
            assert(rawequal(peer, pb))
            got[#got + 1] = { mtype, data, info }
        end)
        local total = 0
        for i, n in ipairs(sizes) do
            local data = S.payload(i, n)
            total = total + n
            local ok, err = pa:send(i % 65536, data)
            assert(ok, err)
        end
        assert.is_true(S.spin({ a, b }, function() return #got >= #sizes end, 60),
                       ("only %d of %d arrived"):format(#got, #sizes))
        S.spin_for({ a, b }, 0.2)
        assert.equal(#sizes, #got)
        for i, n in ipairs(sizes) do
            assert.equal(i % 65536, got[i][1])
            assert.equal(n, #got[i][2], "size of message " .. i)
            assert.is_true(got[i][2] == S.payload(i, n), "content of message " .. i)
        end
        local info = got[1][3]
        assert.is_false(info.broadcast)
        assert.equal(a.id, info.origin)
        -- sender id prefix, the sender's session index, the ordinal
        assert.is_truthy(info.id:match("^" .. a.id:sub(1, 16) .. "%-" .. ("%x"):rep(8) .. "%-%x+$"),
                         info.id)
        local ids = {}
        for _, m in ipairs(got) do
            assert.is_nil(ids[m[3].id], "message id reused")
            ids[m[3].id] = true
        end
        local sa, sb = a:stats(), b:stats()
        assert.is_true(sa.bytes_sent > total)
        assert.is_true(sb.bytes_received > total)
        -- packets grow to 16336 bytes once path MTU discovery proves the path (loopback does)
        assert.is_true(sa.packets_sent > total / 16336)
        assert.is_true(sb.packets_received > total / 16336)
        assert.equal(1, sa.peers)
        assert.equal(1, sb.peers)
        assert.equal(0, sb.callback_errors)
    end)

    it("passes replies, nil replies and remote errors to the sender's callback", function()
        b:on("message", function(_, mtype, data)
            if mtype == 1 then
                return "re:" .. data
            elseif mtype == 2 then
                return nil
            elseif mtype == 3 then
                error("boom " .. data, 0)
            elseif mtype == 4 then
                return 42
            elseif mtype == 5 then
                return ("r"):rep(100000)
            end
        end)
        local results = {}
        local function cb(i)
            return function(ok, v)
                assert(results[i] == nil, "callback ran twice")
                results[i] = { ok = ok, v = v }
            end
        end
        assert(pa:send(1, "hello", cb(1)))
        assert(pa:send(2, "nothing", cb(2)))
        assert(pa:send(3, "bad", cb(3)))
        assert(pa:send(4, "number", cb(4)))
        assert(pa:send(5, "big", cb(5)))
        assert(pa:send(1, "", cb(6)))
        assert(pa:send(9, "no callback"))
        assert.is_true(S.spin({ a, b }, function()
            for i = 1, 6 do if not results[i] then return false end end
            return true
        end))
        assert.same({ ok = true, v = "re:hello" }, results[1])
        assert.is_true(results[2].ok)
        assert.is_nil(results[2].v)
        assert.same({ ok = false, v = "boom bad" }, results[3])
        assert.is_false(results[4].ok)
        assert.is_truthy(results[4].v:find("string or nil", 1, true))
        assert.is_true(results[5].ok)
        assert.equal(("r"):rep(100000), results[5].v)
        assert.same({ ok = true, v = "re:" }, results[6])
    end)

    it("gives pending callbacks (false, 'disconnected') when the session ends", function()
        local result
        b:on("message", function() end)
        b:close() -- b never answers
        assert(pa:send(1, "x", function(ok, v) result = { ok, v } end))
        assert.is_true(S.spin({ a }, function() return result ~= nil end))
        assert.same({ false, "disconnected" }, result)
    end)

    it("carries unreliable datagrams and refuses oversize ones", function()
        local got = {}
        b:on("message", function(_, mtype, data, info)
            assert.is_true(info.unreliable)
            got[#got + 1] = { mtype, data }
        end)
        for i = 1, 20 do
            assert(pa:send_unreliable(i, "dgram" .. i))
        end
        assert(pa:send_unreliable(21, S.payload(21, p2pnet.MAX_DATAGRAM)))
        local ok, err = pa:send_unreliable(22, ("x"):rep(p2pnet.MAX_DATAGRAM + 1))
        assert.is_nil(ok)
        assert.is_string(err)
        S.spin({ a, b }, function() return #got >= 21 end, 2)
        assert.is_true(#got >= 15, "only " .. #got .. " of 21 datagrams arrived on loopback")
        for _, m in ipairs(got) do
            if m[1] == 21 then
                assert.equal(S.payload(21, p2pnet.MAX_DATAGRAM), m[2])
            else
                assert.equal("dgram" .. m[1], m[2])
            end
        end
        assert.equal(1195, p2pnet.MAX_DATAGRAM)
    end)

    it("refuses messages over the peer's max_message", function()
        local c = assert(p2pnet.node { host = "127.0.0.1", max_message = 1000 })
        local joined
        a:on("join", function(p) joined = p end)
        assert(a:connect(c:address()))
        assert.is_true(S.spin({ a, c }, function() return joined end))
        local ok, err = joined:send(1, ("x"):rep(1001))
        assert.is_nil(ok)
        assert.is_string(err)
        assert.is_true(joined:send(1, ("x"):rep(1000)))
        c:close()
    end)

    it("gives leave 'closed' on the other side when a node closes", function()
        local left
        b:on("leave", function(peer, reason) left = { peer, reason } end)
        local mine
        a:on("leave", function(peer, reason) mine = { peer, reason } end)
        a:close()
        assert.is_true(rawequal(pa, mine[1]))
        assert.equal("closed", mine[2])
        assert.is_true(S.spin({ b }, function() return left end, 5))
        assert.is_true(rawequal(pb, left[1]))
        assert.equal("closed", left[2])
        assert.equal("disconnected", pb.state)
        assert.equal(a.id, pb.id)
        local ok, err = pb:send(1, "x")
        assert.is_nil(ok)
        assert.is_string(err)
        assert.equal(0, #b:peers())
        assert.equal(0, b:stats().peers)
    end)

    it("gives leave 'timeout' and failed callbacks when the other side goes silent", function()
        local c = assert(p2pnet.node { host = "127.0.0.1", timeout = 0.5 })
        local d = assert(p2pnet.node { host = "127.0.0.1" })
        local pc
        c:on("join", function(p) pc = p end)
        assert(c:connect(d:address()))
        assert.is_true(S.spin({ c, d }, function() return pc end))
        local left, result
        c:on("leave", function(peer, reason) left = { peer, reason } end)
        assert(pc:send(1, "x", function(ok, v) result = { ok, v } end))
        local t0 = S.now()
        assert.is_true(S.spin({ c }, function() return left end, 5)) -- d is never polled
        assert.is_true(S.now() - t0 >= 0.4)
        assert.is_true(rawequal(pc, left[1]))
        assert.equal("timeout", left[2])
        assert.same({ false, "timeout" }, result)
        c:close()
        d:close()
    end)

    it("gives leave 'closed' on both sides after peer:disconnect()", function()
        local la, lb
        a:on("leave", function(_, reason) la = reason end)
        b:on("leave", function(_, reason) lb = reason end)
        assert.is_true(pa:disconnect())
        assert.is_true(S.spin({ a, b }, function() return la and lb end, 5))
        assert.equal("closed", la)
        assert.equal("closed", lb)
        assert.equal("disconnected", pa.state)
        assert.is_nil(a:peer(b.id))
    end)

    it("fails a connect to the wrong expected id with an error event and no join", function()
        local c = assert(p2pnet.node { host = "127.0.0.1" })
        local errors, joins = {}, 0
        c:on("error", function(err, peer) errors[#errors + 1] = { err, peer } end)
        c:on("join", function() joins = joins + 1 end)
        local bjoins = 0
        b:on("join", function() bjoins = bjoins + 1 end)
        local p = assert(c:connect(b:address(), { id = p2pnet.identity().id }))
        assert.is_true(S.spin({ c, b }, function() return #errors > 0 end, 5))
        S.spin_for({ c, b }, 0.3)
        assert.equal(0, joins)
        assert.equal(0, bjoins)
        assert.is_string(errors[1][1])
        assert.is_true(rawequal(p, errors[1][2]))
        assert.are_not.equal("connected", p.state)
        c:close()
    end)

    it("counts handler errors and keeps going", function()
        local n = 0
        b:on("message", function(_, mtype)
            n = n + 1
            if mtype == 1 then error("handler failure") end
        end)
        -- (the handler's traceback is printed on stderr: expected)
        assert(pa:send(1, "x"))
        assert(pa:send(2, "y"))
        assert.is_true(S.spin({ a, b }, function() return n == 2 end))
        assert.equal(1, b:stats().callback_errors)
    end)
end)
