-- The simulator: exactly-once in-order delivery through loss, duplication and reordering,
-- and determinism (same seed, same run; another seed, another run).
local p2pnet = require "p2pnet"
local S = require "spec.support"

-- Runs a sim with `seed` and a hostile network, sends `count` messages from a to b, and
-- returns what b received ({type, data}), the virtual delivery times, and the sim.
local function transfer(seed, count)
    local sim = p2pnet.sim {
        seed = seed, latency = 0.02, jitter = 0.01,
        loss = 0.2, duplicate = 0.05, reorder = 0.1,
    }
    local a = assert(sim:node())
    local b = assert(sim:node())
    local got, times = {}, {}
    b:on("message", function(_, mtype, data)
        got[#got + 1] = { mtype, data }
        times[#times + 1] = sim:now()
    end)
    local pa
    a:on("join", function(p) pa = p end)
    assert(a:connect(b:address(), { id = b.id }))
    for _ = 1, 600 do
        if pa then break end
        sim:run(0.1)
    end
    assert(pa, "no join within 60 s of virtual time")
    for i = 1, count do
        assert(pa:send(i % 65536, S.payload(i, (i * 37) % 3000)))
    end
    for _ = 1, 6000 do
        if #got >= count then break end
        sim:run(0.1)
    end
    sim:run(5) -- anything extra would show now
    return got, times, sim, a, b
end

describe("the simulator", function()
    it("delivers 1000 messages exactly once and in order through a hostile network", function()
        local got, _, sim = transfer(1, 1000)
        assert.equal(1000, #got)
        for i = 1, 1000 do
            assert.equal(i % 65536, got[i][1], "type of message " .. i)
            assert.is_true(got[i][2] == S.payload(i, (i * 37) % 3000), "data of message " .. i)
        end
        local st = sim:stats()
        assert.is_true(st.lost > 0)
        assert.is_true(st.duplicated > 0)
        assert.is_true(st.reordered > 0)
    end)

    it("gives identical runs for the same seed and different runs for another", function()
        local got1, t1, _, a1, b1 = transfer(42, 200)
        local got2, t2, _, a2, b2 = transfer(42, 200)
        local got3, t3 = transfer(43, 200)
        assert.equal(200, #got1)
        assert.equal(200, #got2)
        assert.equal(200, #got3)
        assert.same(t1, t2)
        assert.are_not.same(t1, t3)
        assert.equal(a1.id, a2.id)
        assert.equal(b1.id, b2.id)
        assert.same(a1:stats(), a2:stats())
    end)

    it("keeps virtual time", function()
        local sim = p2pnet.sim()
        assert.equal(0, sim:now())
        sim:run(1.5)
        assert.is_true(math.abs(sim:now() - 1.5) < 1e-6)
        local a = assert(sim:node())
        sim:run(0.5)
        assert.is_true(math.abs(a:now() - 2) < 1e-6)
        assert.is_truthy(a:address():match("^[%d.]+:%d+$"))
    end)

    it("gives simulated nodes the node methods, without fd or blocking poll", function()
        local sim = p2pnet.sim { latency = 0.01 }
        local a, b = assert(sim:node()), assert(sim:node())
        local fd, err = a:fd()
        assert.is_nil(fd)
        assert.is_string(err)
        local joined
        b:on("join", function(p) joined = p end)
        assert(a:connect(b:address()))
        assert.equal(0, a:poll(5)) -- returns at once: nothing happens without sim:run
        assert.equal(0, sim:now())
        sim:run(1)
        assert.equal(a.id, joined.id)
        assert.equal(1, a:stats().peers)
        assert.is_number(a:next_timeout())
        a:close()
        sim:run(1)
        assert.equal("disconnected", joined.state)
    end)

    it("delivers a broadcast to every member exactly once, with its origin and id", function()
        local sim = p2pnet.sim { seed = 5, latency = 0.01, loss = 0.05 }
        local nodes, got = {}, {}
        for i = 1, 4 do
            nodes[i] = assert(sim:node())
            got[i] = {}
            nodes[i]:on("message", function(peer, mtype, data, info)
                got[i][#got[i] + 1] = { peer = peer, mtype = mtype, data = data, info = info }
            end)
        end
        for i = 1, 3 do -- a chain: 1 - 2 - 3 - 4
            assert(nodes[i]:connect(nodes[i + 1]:address()))
        end
        sim:run(10)
        local id = assert(nodes[1]:broadcast(7, "to everyone"))
        assert.is_truthy(id:match("^" .. nodes[1].id:sub(1, 16) .. "%-%x+$"), id)
        sim:run(10)
        assert.equal(0, #got[1])
        for i = 2, 4 do
            assert.equal(1, #got[i], "copies at node " .. i)
            local m = got[i][1]
            assert.equal(7, m.mtype)
            assert.equal("to everyone", m.data)
            assert.is_true(m.info.broadcast)
            assert.equal(nodes[1].id, m.info.origin)
            assert.equal(id, m.info.id)
        end
    end)

    it("validates its options", function()
        for _, opts in ipairs {
            { loss = 2 }, { loss = -0.1 }, { duplicate = "x" }, { latency = -1 },
            { jitter = "1" }, { seed = -1 }, { seed = 1.5 }, { speed = 1 },
        } do
            local err = S.raises(p2pnet.sim, opts)
            assert.is_truthy(err:find("p2pnet.sim", 1, true), err)
        end
        local sim = p2pnet.sim()
        local err = S.raises(sim.node, sim, { nat = "full" })
        assert.is_truthy(err:find("'nat'", 1, true), err)
        for _, kind in ipairs { "cone", "symmetric" } do
            local n = assert(sim:node { nat = kind })
            assert.is_truthy(n:address():find("^10%."), n:address())   -- a private address
        end
        local public = assert(sim:node())
        err = S.raises(sim.rebind, sim, "x")
        assert.is_truthy(err:find("sim:rebind", 1, true), err)
        local ok, why = sim:rebind(public)
        assert.is_nil(ok)
        assert.is_string(why)
        S.raises(sim.run, sim, -1)
    end)
end)
