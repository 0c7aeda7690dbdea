-- The binding's additions and precise behaviours (docs/API.md): node:now(), node.closed, when
-- sends leave, `info` only for handlers that can take it, one Lua object per session, and no
-- internals on the public objects.
local p2pnet = require "p2pnet"
local core = require "p2pnet.core"
local S = require "spec.support"

describe("the binding", function()
    it("has node:now() and node.closed, also after close", function()
        local n = assert(p2pnet.node { host = "127.0.0.1" })
        assert.is_false(n.closed)
        local t0 = n:now()
        assert.is_number(t0)
        n:close()
        assert.is_true(n.closed)
        assert.is_true(n:now() >= t0)
        local sim = p2pnet.sim { seed = 1 }
        local a = assert(sim:node())
        sim:run(1.5)
        assert.is_true(math.abs(a:now() - sim:now()) < 1e-9)
    end)

    it("shows no underscore internals on nodes, peers and sims", function()
        local a, b, pa = S.pair()
        local sim = p2pnet.sim()
        for _, name in ipairs { "_now", "_sim", "_closed", "_state", "_busy", "_run_until",
                                "_next_time", "_methods" } do
            assert.is_nil(a[name], name)
            assert.is_nil(pa[name], name)
            assert.is_nil(sim[name], name)
        end
        assert.is_nil(p2pnet._methods)
        assert.is_nil(core._methods)
        a:close(); b:close()
    end)

    it("core.extend adds methods but never replaces one; core.hooks is set once", function()
        assert.has_error(function() core.extend("Node", { poll = function() end }) end)
        assert.has_error(function() core.extend("Peer", { send = function() end }) end)
        assert.has_error(function() core.hooks({}) end)
    end)

    it("what handlers and tasks send in a poll leaves before that poll returns", function()
        local a, b, pa = S.pair()
        for _, mode in ipairs { "handler", "task" } do
            local got, answered
            a:on("message", function(_, _, data) got = data end)
            if mode == "task" then
                b:on("message", nil)
                b:spawn(function()
                    local p, _, data = b:receive(1, 5)
                    p:send(2, "echo:" .. data)
                    answered = true
                end)
            else
                b:on("message", function(p, _, data)
                    p:send(2, "echo:" .. data)
                    answered = true
                end)
            end
            assert(pa:send(1, mode))
            a:poll(0)
            assert.is_true(S.spin({ b }, function() return answered end, 2))
            -- only a polls from here: b's reply must be on the wire already
            assert.is_true(S.spin({ a }, function() return got end, 1), mode)
            assert.equal("echo:" .. mode, got)
        end
        a:close(); b:close()
    end)

    it("sends coalesce, and close sends what waits", function()
        local a, b, pa = S.pair()
        local got = 0
        b:on("message", function() got = got + 1 end)
        for i = 1, 200 do
            assert(pa:send(1, "m" .. i))
        end
        a:close() -- flushes the 200 before its leave
        assert.is_true(S.spin({ b }, function() return got == 200 end, 5), "got " .. got)
        b:close()
    end)

    it("a send followed by poll goes out at once", function()
        local a, b, pa = S.pair()
        local got
        b:on("message", function(_, _, data) got = data end)
        assert(pa:send(1, "now"))
        a:poll(0) -- hands it to the socket
        assert.is_true(S.spin({ b }, function() return got end, 2))
        assert.equal("now", got)
        a:close(); b:close()
    end)

    it("builds info only for handlers that can take it", function()
        local a, b, pa, pb = S.pair()
        local with, count = nil, 0
        b:on("message", function(_, _, _, info) with = info end)
        assert(pa:send(1, "x"))
        assert.is_true(S.spin({ a, b }, function() return with end, 2))
        assert.is_false(with.broadcast)
        assert.equal(a.id, with.origin)
        assert.is_string(with.id)
        local varargs
        b:on("message", function(...) varargs = select("#", ...) end)
        assert(pa:send(1, "y"))
        assert.is_true(S.spin({ a, b }, function() return varargs end, 2))
        assert.equal(4, varargs)
        b:on("message", function(peer, mtype, data)
            assert(peer == pb and mtype == 1 and data == "z")
            count = count + 1
        end)
        assert(pa:send(1, "z"))
        assert.is_true(S.spin({ a, b }, function() return count == 1 end, 2))
        a:close(); b:close()
    end)

    it("gives one Lua object per session to every event and lookup", function()
        local a, b, pa, pb = S.pair()
        local seen = {}
        b:on("message", function(peer) seen[#seen + 1] = peer end)
        b:on("leave", function(peer) seen[#seen + 1] = peer end)
        for _ = 1, 3 do assert(pa:send(1, "x")) end
        assert.is_true(S.spin({ a, b }, function() return #seen == 3 end, 2))
        assert.equal(pb, b:peer(a.id))
        assert.equal(pb, b:peers()[1])
        a:close()
        assert.is_true(S.spin({ b }, function() return #seen == 4 end, 5))
        for i = 1, 4 do assert.is_true(rawequal(pb, seen[i])) end
        b:close()
    end)
end)
