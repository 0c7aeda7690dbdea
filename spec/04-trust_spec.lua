-- Who may hold a session: network keys, allow and deny lists, on_request.
local p2pnet = require "p2pnet"
local S = require "spec.support"

local function node(opts)
    opts = opts or {}
    opts.host = "127.0.0.1"
    return assert(p2pnet.node(opts))
end

-- Watches joins and errors of a node.
local function watch(n)
    local w = { joins = {}, errors = {} }
    n:on("join", function(p) w.joins[#w.joins + 1] = p end)
    n:on("error", function(err, p) w.errors[#w.errors + 1] = { err, p } end)
    return w
end

describe("network keys", function()
    it("never join nodes with different keys, and the keyed node stays silent", function()
        local a = node { network_key = "alpha", timeout = 1 }
        local b = node { network_key = "beta" }
        local wa, wb = watch(a), watch(b)
        assert(a:connect(b:address()))
        assert.is_true(S.spin({ a, b }, function() return #wa.errors > 0 end, 5),
                       "the connect never failed")
        assert.equal(0, #wa.joins)
        assert.equal(0, #wb.joins)
        local sb = b:stats()
        assert.equal(0, sb.packets_sent)
        assert.is_true(sb.packets_received > 0)
        assert.is_true(sb.dropped > 0)
        a:close()
        b:close()
    end)

    it("keep a keyed node silent to a node without a key, both ways", function()
        local a = node { timeout = 1 }
        local b = node { network_key = "secret" }
        local wa, wb = watch(a), watch(b)
        assert(a:connect(b:address()))
        assert(b:connect(a:address()))
        assert.is_true(S.spin({ a, b }, function()
            return #wa.errors > 0 and #wb.errors > 0
        end, 15))
        assert.equal(0, #wa.joins)
        assert.equal(0, #wb.joins)
        -- b sent its own INITs but never answered a's
        assert.is_true(b:stats().dropped > 0)
        assert.is_true(a:stats().dropped > 0)
        a:close()
        b:close()
    end)

    it("join nodes with the same key", function()
        local a, b, pa = S.pair({ network_key = "same" }, { network_key = "same" })
        assert.equal("connected", pa.state)
        a:close()
        b:close()
    end)
end)

describe("admission", function()
    local ia, ic
    before_each(function()
        ia, ic = p2pnet.identity(), p2pnet.identity()
    end)

    -- b is built with opts; a (identity ia) and c (identity ic) both connect to it.
    local function scenario(opts)
        local b = node(opts)
        local a = node { identity = ia, timeout = 2 }
        local c = node { identity = ic, timeout = 2 }
        local wa, wb, wc = watch(a), watch(b), watch(c)
        assert(a:connect(b:address(), { id = b.id }))
        assert(c:connect(b:address(), { id = b.id }))
        local nodes = { a, b, c }
        assert.is_true(S.spin(nodes, function()
            return #wa.joins + #wa.errors > 0 and #wc.joins + #wc.errors > 0
        end, 10), "no outcome")
        S.spin_for(nodes, 0.2)
        wb.stats = b:stats()
        for _, n in ipairs(nodes) do n:close() end
        return wa, wb, wc
    end

    it("lets only allowed ids join", function()
        local wa, wb, wc = scenario { allow = { ia.id } }
        assert.equal(1, #wa.joins)
        assert.equal(0, #wc.joins)
        assert.equal(1, #wc.errors)
        assert.equal(1, #wb.joins)
        assert.equal(ia.id, wb.joins[1].id)
    end)

    it("keeps denied ids out", function()
        local wa, wb, wc = scenario { deny = { ic.id } }
        assert.equal(1, #wa.joins)
        assert.equal(0, #wc.joins)
        assert.equal(1, #wc.errors)
        assert.equal(1, #wb.joins)
        assert.equal(ia.id, wb.joins[1].id)
    end)

    it("asks on_request with the id and address, and obeys it", function()
        local asked = {}
        local wa, wb, wc = scenario {
            on_request = function(id, address)
                asked[#asked + 1] = { id, address }
                return id == ia.id
            end,
        }
        assert.equal(1, #wa.joins)
        assert.equal(0, #wc.joins)
        assert.equal(1, #wc.errors)
        assert.equal(1, #wb.joins)
        assert.equal(ia.id, wb.joins[1].id)
        assert.equal(2, #asked)
        for _, q in ipairs(asked) do
            assert.is_true(q[1] == ia.id or q[1] == ic.id)
            assert.is_truthy(q[2]:match("^127%.0%.0%.1:%d+$"))
        end
    end)

    it("rejects when on_request raises or returns anything but true", function()
        local wa, wb, wc = scenario {
            on_request = function(id)
                if id == ia.id then error("refusing by error") end
                return 1
            end,
        }
        assert.equal(0, #wa.joins)
        assert.equal(0, #wc.joins)
        assert.equal(0, #wb.joins)
        assert.equal(1, #wa.errors)
        assert.equal(1, #wc.errors)
        assert.equal(1, wb.stats.callback_errors)
    end)
end)
