-- NAT traversal on the simulator, through the public Lua interface: a mediator introduces
-- nodes behind NATs, they punch through cone NATs and fall back to the relay between
-- symmetric ones, mesh members that know only a public member end up linked to each other,
-- and a NAT that changes its mapping mid-transfer loses nothing.
local p2pnet = require "p2pnet"

-- Runs the sim until pred() holds, for at most `limit` virtual seconds; returns pred().
local function run_until(sim, limit, pred)
    local stop = sim:now() + limit
    while not pred() and sim:now() < stop do sim:run(0.05) end
    return pred()
end

-- Sends `count` messages with receipts from peer p; the receiver echoes. Returns how many
-- receipts came back with the right reply, and in which order.
local function echo_all(sim, p, count)
    local ok, order = 0, {}
    for i = 1, count do
        assert(p:send(7, "msg" .. i, function(success, reply)
            if success and reply == "echo:msg" .. i then ok = ok + 1 end
            order[#order + 1] = i
        end))
    end
    run_until(sim, 30, function() return #order == count end)
    for i = 1, #order do assert.equal(i, order[i]) end
    return ok
end

local function echo(node) node:on("message", function(_, _, data) return "echo:" .. data end) end

-- A public mediator and two nodes behind NATs of `kind`, both registered with it.
local function lab(kind, seed, mopts)
    local sim = p2pnet.sim { seed = seed, latency = 0.01, jitter = 0.002 }
    local opts = { mesh = false }
    for k, v in pairs(mopts or {}) do opts[k] = v end
    local med = assert(sim:node(opts))
    local a = assert(sim:node { nat = kind })
    local b = assert(sim:node { nat = kind })
    local errors = {}
    a:on("error", function(err) errors[#errors + 1] = err end)
    echo(b)
    assert(a:connect(med:address()))
    assert(b:connect(med:address()))
    assert.is_true(run_until(sim, 5, function()
        return #med:peers() == 2 and med:peers()[1].state == "connected"
            and med:peers()[2].state == "connected"
    end))
    return sim, med, a, b, errors
end

describe("NAT traversal (simulator)", function()
    it("links cone-NATed nodes directly via a mediator; they stay linked when it leaves", function()
        local sim, med, a, b = lab("cone", 11)
        local joined
        a:on("join", function(p) if p.id == b.id then joined = p end end)
        local p = assert(a:connect(b.id, { via = med:address() }))
        assert.equal("connecting", p.state)
        assert.is_true(run_until(sim, 10, function() return joined ~= nil end))
        assert.is_true(p.direct)
        assert.equal("connected", p.state)
        assert.equal(1, med:stats().introductions)
        -- where A reaches B: B's NAT, not the mediator
        assert.not_equal(med:address():match("^[^:]+"), p.address:match("^[^:]+"))
        assert.equal(0, med:stats().relayed_packets)
        med:close()
        sim:run(1)
        assert.equal(100, echo_all(sim, p, 100))
    end)

    it("relays between symmetric NATs, end to end, with every receipt", function()
        local sim, med, a, b = lab("symmetric", 12)
        local p = assert(a:connect(b.id, { via = med:address() }))
        assert.is_true(run_until(sim, 15, function() return p.state == "connected" end))
        assert.is_false(p.direct)
        assert.equal(med:address(), p.address)          -- packets go to the relay
        assert.is_false(b:peer(a.id).direct)
        local before = med:stats().relayed_packets
        assert.equal(100, echo_all(sim, p, 100))
        assert.is_true(med:stats().relayed_packets > before)
        -- the relay holds no session with either end for this traffic: no messages reach it
        local seen = 0
        med:on("message", function() seen = seen + 1 end)
        assert.equal(10, echo_all(sim, p, 10))
        assert.equal(0, seen)
    end)

    it("reports an error event when the id is not registered at the mediator", function()
        local sim, med, a, _, errors = lab("cone", 13)
        local stranger = p2pnet.identity().id
        local p = assert(a:connect(stranger, { via = med:address() }))
        assert.is_true(run_until(sim, 5, function() return #errors > 0 end))
        assert.is_truthy(errors[1]:find("not registered", 1, true), errors[1])
        assert.is_truthy(errors[1]:find(stranger, 1, true), errors[1])
        assert.equal("disconnected", p.state)
    end)

    it("does not relay when the mediator is told not to", function()
        local sim, med, a, b, errors = lab("symmetric", 14, { relay = false })
        local p = assert(a:connect(b.id, { via = med:address() }))
        assert.is_true(run_until(sim, 20, function() return #errors > 0 end))
        assert.is_truthy(errors[1]:find("timed out", 1, true), errors[1])
        assert.equal("disconnected", p.state)
        assert.equal(0, med:stats().relayed_packets)
    end)

    it("links two NATed mesh members that know only a public member, directly", function()
        for _, case in ipairs { { "cone", true }, { "symmetric", false } } do
            local sim = p2pnet.sim { seed = 15, latency = 0.01 }
            local g = assert(sim:node())
            local a = assert(sim:node { nat = case[1] })
            local b = assert(sim:node { nat = case[1] })
            assert(a:connect(g:address()))
            assert(b:connect(g:address()))
            assert.is_true(run_until(sim, 20, function()
                return a:peer(b.id) ~= nil and b:peer(a.id) ~= nil
            end), case[1])
            assert.equal(case[2], a:peer(b.id).direct, case[1])
            assert.equal(case[2], b:peer(a.id).direct, case[1])
            assert.is_true(g:stats().introductions >= 1)
        end
    end)

    it("follows a node whose NAT changes its mapping mid-transfer, losing nothing", function()
        local sim = p2pnet.sim { seed = 16, latency = 0.01 }
        local g = assert(sim:node())
        local a = assert(sim:node { nat = "cone" })
        echo(g)
        local got = {}
        g:on("message", function(_, _, data) got[#got + 1] = data; return "echo:" .. data end)
        local p = assert(a:connect(g:address()))
        assert.is_true(run_until(sim, 5, function() return p.state == "connected" end))
        local seen_from = g:peer(a.id).address
        local ok, order = 0, {}
        for i = 1, 300 do
            assert(p:send(1, "msg" .. i, function(success, reply)
                if success and reply == "echo:msg" .. i then ok = ok + 1 end
                order[#order + 1] = i
            end))
            if i % 50 == 0 then sim:run(0.02) end
            if i == 150 then assert.is_true(sim:rebind(a)) end
        end
        assert.is_true(run_until(sim, 30, function() return #order == 300 end))
        assert.equal(300, ok)
        assert.equal(300, #got)
        for i = 1, 300 do assert.equal("msg" .. i, got[i]) end
        local now_from = g:peer(a.id).address
        assert.not_equal(seen_from, now_from)
        assert.equal(seen_from:match("^[^:]+"), now_from:match("^[^:]+"))   -- same NAT, new port
        assert.is_true(g:stats().path_changes >= 1)
    end)

    it("re-punches when one of two NATed peers is rebound mid-transfer, losing nothing", function()
        local sim, med, a, b = lab("cone", 19)
        local got = {}
        b:on("message", function(_, _, data) got[#got + 1] = data; return "echo:" .. data end)
        local p = assert(a:connect(b.id, { via = med:address() }))
        assert.is_true(run_until(sim, 10, function() return p.state == "connected" end))
        assert.is_true(p.direct)
        local seen_from = b:peer(a.id).address
        local ok, done = 0, 0
        for i = 1, 300 do
            assert(p:send(1, "m" .. i, function(success, reply)
                done = done + 1
                if success and reply == "echo:m" .. i then ok = ok + 1 end
            end))
            if i % 50 == 0 then sim:run(0.02) end
            if i == 150 then assert.is_true(sim:rebind(a)) end
        end
        -- B's NAT filters A's new port until the mediator introduces them again
        assert.is_true(run_until(sim, 30, function() return done == 300 end))
        assert.equal(300, ok)
        assert.equal(300, #got)
        for i = 1, 300 do assert.equal("m" .. i, got[i]) end
        assert.is_true(p.direct)
        assert.not_equal(seen_from, b:peer(a.id).address)
        assert.is_true(med:stats().introductions >= 2)
    end)

    it("lists local and reflexive addresses", function()
        local sim = p2pnet.sim { seed = 17 }
        local g = assert(sim:node())
        local a = assert(sim:node { nat = "cone" })
        local list = a:addresses()
        assert.equal(1, #list)
        assert.same({ address = a:address(), kind = "local" }, list[1])
        assert(a:connect(g:address()))
        sim:run(1)
        assert.equal(1, #a:addresses())   -- one peer's word is not enough
        local g2 = assert(sim:node())
        assert(a:connect(g2:address()))
        sim:run(1)
        list = a:addresses()
        assert.equal(2, #list)
        assert.equal("reflexive", list[2].kind)
        assert.equal(g:peer(a.id).address, list[2].address)
    end)

    it("is deterministic behind NATs", function()
        local function run()
            local sim, med, a, b = lab("symmetric", 18)
            local p = assert(a:connect(b.id, { via = med:address() }))
            run_until(sim, 15, function() return p.state == "connected" end)
            echo_all(sim, p, 20)
            local st = sim:stats()
            return { sim:now(), st.sent, st.delivered, st.nat_filtered, med:stats().relayed_bytes }
        end
        assert.same(run(), run())
    end)
end)
