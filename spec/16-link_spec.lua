-- The simulator's access links, through the public interface: a bottleneck rate that bounds
-- goodput, per-direction settings, delay, loss, changes mid-run, the counters of
-- sim:link_stats, determinism, and the errors bad link options raise.
local p2pnet = require "p2pnet"
local S = require "spec.support"

local KIB16 = 16384

local join = S.sim_join

-- Sends `count` messages of `size` bytes from a to b and runs until all arrived (at most
-- `limit` virtual seconds). Returns the goodput in bit/s from the first send to the last
-- arrival, and whether every message arrived once, in order and intact.
local function bulk(sim, pa, b, count, size, limit)
    local got, intact, last = 0, true, nil
    b:on("message", function(_, mtype, data)
        got = got + 1
        if mtype ~= got % 65536 or data ~= S.payload(got, size) then intact = false end
        last = sim:now()
    end)
    local start = sim:now()
    for i = 1, count do
        assert(pa:send(i % 65536, S.payload(i, size)))
    end
    local deadline = start + limit
    while got < count and sim:now() < deadline do
        sim:run(0.1)
    end
    b:on("message", nil)
    assert.equal(count, got)
    return count * size * 8 / (last - start), intact
end

describe("simulated access links", function()
    it("bound a bulk transfer's goodput by the link rate, and count it", function()
        -- 10 Mbit/s each way, 10 ms of link delay and 10 ms of network latency: 40 ms RTT.
        local sim = p2pnet.sim { seed = 5, latency = 0.01, link = { rate = 10e6, delay = 0.01 } }
        local a, b = assert(sim:node()), assert(sim:node())
        local pa = join(sim, a, b)
        local before = sim:link_stats(a).up
        local t0 = sim:now()
        local goodput, intact = bulk(sim, pa, b, 300, KIB16, 60)
        local elapsed = sim:now() - t0
        assert.is_true(intact)
        -- Never above the rate; a working sender gets most of it (NewReno got 8.9 Mbit/s).
        assert.is_true(goodput <= 10e6, goodput)
        assert.is_true(goodput >= 6e6, goodput)
        local up = sim:link_stats(a).up
        local sent = up.bytes - before.bytes
        assert.is_true(sent >= 300 * KIB16, sent) -- payload plus headers, ACKs the other way
        assert.is_true(sent * 8 / elapsed <= 10e6 * 1.001)
        assert.equal(0, up.loss_drops)
        -- The default queue is 100 ms of the rate: 125000 bytes, and never more.
        assert.is_true(up.queue_peak_bytes > 0 and up.queue_peak_bytes <= 125000)
        assert.is_true(up.queue_delay_max > 0 and up.queue_delay_max <= 0.1)
        assert.is_true(up.queue_delay_mean <= up.queue_delay_max)
        -- b's down link at the same rate sees the same packets, nearly without queueing.
        local down = sim:link_stats(b).down
        assert.equal(up.packets - up.loss_drops, down.packets + down.queue_drops +
            down.loss_drops)
        assert.is_true(down.queue_delay_max < 0.002, down.queue_delay_max)
        -- The acknowledgements went the other way: through b's up and a's down.
        assert.is_true(sim:link_stats(b).up.packets > 0)
        assert.is_true(sim:link_stats(a).down.packets > 0)
    end)

    it("takes per-direction settings, per node, and changes mid-run", function()
        local sim = p2pnet.sim { seed = 6, link = { rate = 50e6 } }
        -- b: the sim's default is replaced; only its down link is limited, to 4 Mbit/s.
        local a = assert(sim:node())
        local b = assert(sim:node { link = { rate = 4e6, up = { rate = 0, delay = 0.03 } } })
        local pa = join(sim, a, b)
        local g1 = bulk(sim, pa, b, 60, KIB16, 30)
        assert.is_true(g1 <= 4e6 and g1 > 2e6, g1)
        -- Drop b's down link to 1 Mbit/s mid-run.
        assert.is_true(sim:link(b, { down = { rate = 1e6 }, up = { delay = 0.03 } }))
        local g2 = bulk(sim, pa, b, 20, KIB16, 60)
        assert.is_true(g2 <= 1e6 and g2 > 0.5e6, g2)
        -- b's up link has no rate: no queueing, only its 30 ms.
        local up = sim:link_stats(b).up
        assert.is_true(up.packets > 0)
        assert.equal(0, up.queue_peak_bytes)
        assert.equal(0, up.queue_delay_max)
        -- Cleared, the link adds nothing more; its counters stay.
        assert.is_true(sim:link(b, nil))
        local packets = sim:link_stats(b).down.packets
        bulk(sim, pa, b, 20, KIB16, 10)
        assert.equal(packets, sim:link_stats(b).down.packets)
    end)

    it("adds its delay one way", function()
        local sim = p2pnet.sim { seed = 7, latency = 0.005 }
        local a = assert(sim:node { link = { up = { delay = 0.05 } } })
        local b = assert(sim:node())
        local pa = join(sim, a, b)
        local at
        b:on("message", function() at = sim:now() end)
        sim:run(1)
        local t0 = sim:now()
        assert(pa:send(1, "ping"))
        sim:run(1)
        assert.is_true(math.abs(at - t0 - 0.055) < 1e-5, at - t0)
        -- The other way has no link: the base latency only.
        local pb
        for _, p in pairs(b:peers()) do pb = p end
        a:on("message", function() at = sim:now() end)
        t0 = sim:now()
        assert(pb:send(1, "pong"))
        sim:run(1)
        assert.is_true(math.abs(at - t0 - 0.005) < 1e-5, at - t0)
    end)

    it("loses datagrams at random and in bursts, and delivery stays exact", function()
        local function run(link)
            local sim = p2pnet.sim { seed = 8, latency = 0.01 }
            local a = assert(sim:node { link = link })
            local b = assert(sim:node())
            local pa = join(sim, a, b)
            local _, intact = bulk(sim, pa, b, 100, 3000, 120)
            return sim:link_stats(a).up, intact
        end
        local up, intact = run { rate = 20e6, loss = 0.05 }
        assert.is_true(intact)
        assert.is_true(up.loss_drops > 0)
        assert.is_true(up.loss_drops / (up.packets + up.loss_drops) < 0.1)
        up, intact = run { rate = 20e6, burst = { enter = 0.02, leave = 0.3 } }
        assert.is_true(intact)
        assert.is_true(up.loss_drops > 0)
        -- The same seed gives the same run.
        local again = run { rate = 20e6, burst = { enter = 0.02, leave = 0.3 } }
        assert.same(up, again)
    end)

    it("refuses bad link options, naming the function and the option", function()
        local function check(want, fn, ...)
            local err = S.raises(fn, ...)
            assert.is_truthy(err:find(want, 1, true), err)
        end
        check("p2pnet.sim: option 'link' must be a table or false", p2pnet.sim, { link = 5 })
        check("p2pnet.sim: option 'link.rate' must be a number of bits per second 0-1e12",
            p2pnet.sim, { link = { rate = -1 } })
        check("p2pnet.sim: option 'link.rate' must be", p2pnet.sim, { link = { rate = 2e12 } })
        check("p2pnet.sim: option 'link.rate' must be", p2pnet.sim, { link = { rate = "1e6" } })
        check("p2pnet.sim: option 'link.queue' must be an integer number of bytes 0-2^32",
            p2pnet.sim, { link = { queue = 0.5 } })
        check("p2pnet.sim: option 'link.delay' must be a number of seconds 0-3600", p2pnet.sim,
            { link = { delay = -0.1 } })
        check("p2pnet.sim: option 'link.loss' must be a probability 0-1", p2pnet.sim,
            { link = { loss = 1.5 } })
        check("p2pnet.sim: option 'link.up.loss' must be a probability 0-1", p2pnet.sim,
            { link = { up = { loss = 0 / 0 } } })
        check("p2pnet.sim: option 'link.down.burst.leave' must be a probability 0-1",
            p2pnet.sim, { link = { down = { burst = { enter = 0.1 } } } })
        check("p2pnet.sim: option 'link.burst' must be a table", p2pnet.sim,
            { link = { burst = 0.1 } })
        check("p2pnet.sim: option 'link.up' must be a table", p2pnet.sim, { link = { up = 1 } })
        check("p2pnet.sim: unknown option 'link.speed'", p2pnet.sim, { link = { speed = 1 } })
        check("p2pnet.sim: unknown option 'link.up.up'", p2pnet.sim,
            { link = { up = { up = {} } } })
        check("p2pnet.sim: unknown option 'link.burst.rate'", p2pnet.sim,
            { link = { burst = { enter = 0.1, leave = 0.1, rate = 1 } } })
        local sim = p2pnet.sim()
        check("sim:node: option 'link.delay' must be a number of seconds 0-3600", sim.node, sim,
            { link = { delay = 4000 } })
        check("sim:node: option 'link' must be a table or false", sim.node, sim, { link = "x" })
        local a = assert(sim:node())
        check("sim:link: option 'up.rate' must be a number of bits per second 0-1e12", sim.link,
            sim, a, { up = { rate = -5 } })
        check("sim:link: option 'burst.enter' must be a probability 0-1", sim.link, sim, a,
            { burst = { enter = 2, leave = 0.5 } })
        check("sim:link: argument 'spec' must be a table or nil", sim.link, sim, a, 10)
        check("sim:link: argument 'node' must be a node of this sim", sim.link, sim, "x", {})
        local other = p2pnet.sim()
        local c = assert(other:node())
        check("sim:link_stats: argument 'node' must be a node of this sim", sim.link_stats, sim,
            c)
        -- A closed node has no link any more.
        a:close()
        local ok, err = sim:link(a, { rate = 1e6 })
        assert.is_nil(ok)
        assert.equal("the node is closed", err)
        ok, err = sim:link_stats(a)
        assert.is_nil(ok)
        assert.equal("the node is closed", err)
        -- link = false on a node opts out of the sim's default link.
        local sim2 = p2pnet.sim { link = { rate = 1e6 } }
        local d = assert(sim2:node { link = false })
        local e = assert(sim2:node())
        join(sim2, d, e)
        assert.equal(0, sim2:link_stats(d).up.packets)
        assert.is_true(sim2:link_stats(e).up.packets > 0)
    end)
end)
