-- Congestion control through the public interface: the `congestion` option, what each
-- controller keeps of a lossy link's goodput, the peer fields that show the controller's
-- state, and the handshake's round trip as the dialler's first RTT sample.
local p2pnet = require "p2pnet"
local S = require "spec.support"

local KIB16 = 16384
local RTT = 0.04 -- seconds: 20 ms each way on the simulator

-- Two nodes on a fresh simulator whose senders' up links are a 20 Mbit/s bottleneck with
-- `loss`, both with the controller `cc`; returns sim, a, b and a's peer for b.
local function pair(cc, loss, seed)
    local sim = p2pnet.sim { seed = seed or 3, latency = RTT / 2 }
    local link = { up = { rate = 20e6, queue = 100000, loss = loss } }
    local a = assert(sim:node { congestion = cc, link = link })
    local b = assert(sim:node { congestion = cc })
    return sim, a, b, S.sim_join(sim, a, b)
end

-- Keeps 2 MiB of 16 KiB messages queued from a to b for `seconds` of virtual time; returns
-- b's goodput in bit/s over the last `seconds - 2` of them, and whether every message arrived
-- once and in order.
local function goodput(sim, pa, b, seconds)
    local got, bytes, intact, sent = 0, 0, true, 0
    b:on("message", function(_, mtype, data)
        got = got + 1
        if mtype ~= got % 65536 or data ~= S.payload(got, KIB16) then intact = false end
        bytes = bytes + #data
    end)
    local t0, mark = sim:now(), nil
    while sim:now() < t0 + seconds do
        while sent - got < 128 do
            sent = sent + 1
            assert(pa:send(sent % 65536, S.payload(sent, KIB16)))
        end
        sim:run(0.05)
        if not mark and sim:now() >= t0 + 2 then mark = { t = sim:now(), bytes = bytes } end
    end
    b:on("message", nil)
    return (bytes - mark.bytes) * 8 / (sim:now() - mark.t), intact
end

describe("congestion control", function()
    it("BBR keeps its goodput through 2% random loss; NewReno does not", function()
        local figures = {}
        for _, cc in ipairs { "bbr", "newreno" } do
            for _, loss in ipairs { 0, 0.02 } do
                local sim, _, b, pa = pair(cc, loss)
                local bps, intact = goodput(sim, pa, b, 12)
                assert.is_true(intact)
                figures[cc .. loss] = bps
            end
        end
        print(("\n    20 Mbit/s, 40 ms: bbr %.1f -> %.1f Mbit/s at 2%% loss, newreno %.1f -> %.1f")
            :format(figures.bbr0 / 1e6, figures["bbr0.02"] / 1e6, figures.newreno0 / 1e6,
                figures["newreno0.02"] / 1e6))
        assert.is_true(figures.bbr0 > 0.9 * 20e6)
        assert.is_true(figures["bbr0.02"] > 0.8 * figures.bbr0)
        assert.is_true(figures["newreno0.02"] < 0.5 * figures.newreno0)
    end)

    it("shows the controller's state in the peer's fields", function()
        local sim, _, b, pa = pair("bbr", 0.02)
        -- the handshake's round trip is the dialler's first sample
        assert.is_true(pa.rtt >= RTT * 0.9 and pa.rtt < RTT * 2)
        assert.is_true(pa.min_rtt >= RTT * 0.9 and pa.min_rtt <= pa.rtt + 1e-9)
        goodput(sim, pa, b, 4)
        assert.is_true(pa.cwnd > 0)
        assert.is_true(pa.bandwidth > 0.5 * 20e6 / 8 and pa.bandwidth < 1.5 * 20e6 / 8)
        assert.is_true(pa.lost > 0 and pa.retransmits > 0)
        assert.is_true(pa.spurious >= 0 and pa.spurious <= pa.lost)
        assert.is_true(pa.in_flight >= 0)
        local sim2, _, b2, pb = pair("newreno", 0)
        goodput(sim2, pb, b2, 3)
        assert.are.equal(0, pb.bandwidth)
    end)

    it("refuses a controller it does not know", function()
        local sim = p2pnet.sim { seed = 1 }
        assert.has_error(function() sim:node { congestion = "cubic" } end,
            "sim:node: option 'congestion' must be \"bbr\" or \"newreno\"")
        assert.has_error(function() p2pnet.node { congestion = 1 } end,
            "p2pnet.node: option 'congestion' must be \"bbr\" or \"newreno\"")
    end)
end)
