-- Observability through the public Lua API, on simulated nodes: peer:stats() (traffic each
-- way, loss, RTT, congestion control, path, lane queues) agrees with the other end, with
-- node:stats() and with what the simulated link dropped; node:metrics() is checked by a strict
-- parser of the Prometheus text format 0.0.4 (which is itself shown to reject bad input), and
-- its figures are the ones peer:stats() and node:stats() give.
local p2pnet = require "p2pnet"

-- Two connected simulated nodes a and b (a's peer for b is pa, b's for a is pb).
local function pair(sim_opts, a_opts)
    local sim = p2pnet.sim(sim_opts or { seed = 37, latency = 0.01 })
    local a = assert(sim:node(a_opts))
    local b = assert(sim:node())
    local pa, pb
    a:on("join", function(p) pa = p end)
    b:on("join", function(p) pb = p end)
    assert(a:connect(b:address(), { id = b.id }))
    for _ = 1, 100 do
        if pa and pb then break end
        sim:run(0.05)
    end
    assert(pa and pb, "no join")
    return sim, a, b, pa, pb
end

local function run_until(sim, limit, pred)
    local stop = sim:now() + limit
    while not pred() and sim:now() < stop do sim:run(0.05) end
    return pred()
end

-- ---- a strict reader of the Prometheus text exposition format, version 0.0.4 ---------------
-- Returns { [name] = { type = t, help = h, samples = { {labels = {...}, value = v} } } }, or
-- raises with the line number and what is wrong. Beyond the format itself it demands what
-- node:metrics() promises: HELP and TYPE once each, before the samples, counters named
-- *_total and only they, no empty lines, and a newline at the end.

local NAME = "^[a-zA-Z_:][a-zA-Z0-9_:]*$"
local LABEL = "^[a-zA-Z_][a-zA-Z0-9_]*$"
local TYPES = { counter = true, gauge = true, histogram = true, summary = true, untyped = true }

local function parse_value(s)
    if s == "NaN" then return 0 / 0 end
    if s == "+Inf" or s == "Inf" then return math.huge end
    if s == "-Inf" then return -math.huge end
    local ok = s:match("^[+-]?%d+%.?%d*$") or s:match("^[+-]?%d+%.?%d*[eE][+-]?%d+$")
        or s:match("^[+-]?%.%d+$")
    return ok and tonumber(s) or nil
end

-- Reads the label set at position i of line (just after "{"); returns labels, next position.
local function parse_labels(line, i, fail)
    local labels, seen = {}, {}
    if line:sub(i, i) == "}" then return labels, i + 1 end
    while true do
        local name, j = line:match("^([^=]*)=()", i)
        if not name then fail("label without '='") end
        if not name:match(LABEL) then fail("bad label name '" .. name .. "'") end
        if name:sub(1, 2) == "__" then fail("reserved label name '" .. name .. "'") end
        if seen[name] then fail("label '" .. name .. "' twice") end
        seen[name] = true
        if line:sub(j, j) ~= '"' then fail("label value not quoted") end
        j = j + 1
        local parts = {}
        while true do
            local c = line:sub(j, j)
            if c == "" then fail("unterminated label value") end
            if c == '"' then break end
            if c == "\\" then
                local e = line:sub(j + 1, j + 1)
                if e == "\\" then parts[#parts + 1] = "\\"
                elseif e == '"' then parts[#parts + 1] = '"'
                elseif e == "n" then parts[#parts + 1] = "\n"
                else fail("bad escape '\\" .. e .. "' in a label value") end
                j = j + 2
            else
                parts[#parts + 1] = c
                j = j + 1
            end
        end
        labels[name] = table.concat(parts)
        j = j + 1
        local c = line:sub(j, j)
        if c == "}" then return labels, j + 1 end
        if c ~= "," then fail("expected ',' or '}' after a label") end
        i = j + 1
        -- a trailing comma before "}" is allowed by the format
        if line:sub(i, i) == "}" then return labels, i + 1 end
    end
end

local function series_key(name, labels)
    local ks = {}
    for k in pairs(labels) do ks[#ks + 1] = k end
    table.sort(ks)
    local parts = { name }
    for _, k in ipairs(ks) do parts[#parts + 1] = k .. "=" .. ("%q"):format(labels[k]) end
    return table.concat(parts, "\0")
end

local function parse_prometheus(text)
    assert(type(text) == "string", "not a string")
    local metrics, order, series = {}, {}, {}
    local current, lineno = nil, 0
    local function fail(why) error(("line %d: %s"):format(lineno, why), 0) end
    if text == "" then return metrics end
    if text:sub(-1) ~= "\n" then error("no newline at the end", 0) end
    local function metric(name)
        local m = metrics[name]
        if not m then
            m = { samples = {} }
            metrics[name] = m
            order[#order + 1] = name
        end
        return m
    end
    local closed = {} -- metrics whose group ended: a later line for them is interleaving
    local function enter(name)
        if current ~= name then
            if current then closed[current] = true end
            if closed[name] then fail("lines of '" .. name .. "' are not one group") end
            current = name
        end
    end
    for line in text:gmatch("([^\n]*)\n") do
        lineno = lineno + 1
        if line == "" then fail("empty line") end
        if line:sub(1, 1) == "#" then
            local kind, name, rest = line:match("^# (%u+) (%S+) ?(.*)$")
            if kind ~= "HELP" and kind ~= "TYPE" then
                fail("a comment that is neither HELP nor TYPE")
            end
            if not name:match(NAME) then fail("bad metric name '" .. name .. "'") end
            enter(name)
            local m = metric(name)
            if kind == "HELP" then
                if m.help then fail("second HELP for " .. name) end
                if #m.samples > 0 then fail("HELP after samples of " .. name) end
                local bad = rest:gsub("\\[\\n]", ""):find("\\", 1, true)
                if bad then fail("bad escape in HELP of " .. name) end
                m.help = rest:gsub("\\(.)", { ["\\"] = "\\", n = "\n" })
            else
                if m.type then fail("second TYPE for " .. name) end
                if #m.samples > 0 then fail("TYPE after samples of " .. name) end
                if not TYPES[rest] then fail("unknown type '" .. rest .. "'") end
                m.type = rest
            end
        else
            local name, i = line:match("^([a-zA-Z_:][a-zA-Z0-9_:]*)()")
            if not name then fail("a sample without a metric name") end
            local labels = {}
            if line:sub(i, i) == "{" then labels, i = parse_labels(line, i + 1, fail) end
            local value, ts = line:sub(i):match("^ (%S+)( ?%S*)$")
            if not value then fail("expected ' value' after the name and labels") end
            if ts ~= "" and not ts:match("^ %-?%d+$") then fail("bad timestamp") end
            local v = parse_value(value)
            if not v then fail("bad value '" .. value .. "'") end
            enter(name)
            local m = metric(name)
            if not m.type or not m.help then
                fail("sample of " .. name .. " before its HELP and TYPE")
            end
            local key = series_key(name, labels)
            if series[key] then fail("the same series twice: " .. name) end
            series[key] = true
            m.samples[#m.samples + 1] = { labels = labels, value = v }
        end
    end
    for _, name in ipairs(order) do
        local m = metrics[name]
        if not m.type or not m.help then error(name .. " lacks HELP or TYPE", 0) end
        local total = name:match("_total$") ~= nil
        if (m.type == "counter") ~= total then
            error(name .. ": counters end in _total, and only counters", 0)
        end
        if m.type == "counter" then
            for _, s in ipairs(m.samples) do
                if not (s.value >= 0) then error(name .. ": a negative counter", 0) end
            end
        end
    end
    return metrics
end

-- The sample of metric `name` whose labels include every pair of `want`, or nil.
local function sample(metrics, name, want)
    local m = metrics[name]
    if not m then return nil end
    for _, s in ipairs(m.samples) do
        local ok = true
        for k, v in pairs(want or {}) do
            if s.labels[k] ~= v then ok = false end
        end
        if ok then return s.value, s.labels end
    end
    return nil
end

describe("peer:stats()", function()
    it("gives the session's figures, and the two ends agree", function()
        local sim, a, b, pa, pb = pair()
        for i = 1, 100 do assert(pa:send(1, ("a"):rep(1000 + i))) end
        for i = 1, 30 do assert(pb:send(2, ("b"):rep(200 + i))) end
        local got = 0
        b:on("message", function() got = got + 1 end)
        assert.is_true(run_until(sim, 10, function() return got == 100 end))
        sim:run(1)
        local sa, sb = assert(pa:stats()), assert(pb:stats())
        assert.equal(b.id, sa.id)
        assert.equal("connected", sa.state)
        -- traffic each way: what one sent, the other received, but for the MTU probes larger
        -- than the simulated path (1452 bytes), which never arrive
        assert.is_true(sa.packets_sent >= sb.packets_received)
        assert.is_true(sa.packets_sent - sb.packets_received <= 4)
        assert.is_true(sb.packets_sent - sa.packets_received <= 4)
        assert.is_true(sa.bytes_sent - sb.bytes_received <= 4 * 16384)
        assert.is_true(sa.bytes_sent > 100 * 1000)
        assert.is_true(sb.bytes_received > 100 * 1000)
        assert.is_true(sa.eliciting_sent > 0 and sa.eliciting_sent <= sa.packets_sent)
        -- nothing lost on this network
        assert.equal(0, sa.lost)
        assert.equal(0, sa.retransmits)
        assert.equal(0, sa.loss)
        -- the round trip is twice the one-way latency
        assert.is_true(sa.rtt >= 0.02 and sa.rtt < 0.023, tostring(sa.rtt))
        assert.is_true(sa.min_rtt >= 0.02 and sa.min_rtt <= sa.rtt)
        assert.is_true(sa.latest_rtt >= 0.02)
        assert.is_true(sa.rttvar >= 0)
        -- the same figures as the peer's fields
        assert.equal(pa.rtt, sa.rtt)
        assert.equal(pa.cwnd, sa.cwnd)
        assert.equal(pa.retransmits, sa.retransmits)
        -- congestion control
        assert.equal("bbr", sa.congestion)
        assert.is_truthy(({ startup = 1, drain = 1, probe_bw = 1, probe_rtt = 1 })[sa.phase])
        assert.is_true(sa.cwnd > 0 and sa.pacing_rate > 0 and sa.bandwidth > 0)
        assert.equal(0, sa.in_flight)
        -- the path
        assert.equal("direct", sa.path)
        assert.is_true(sa.direct)
        assert.equal(b:address(), sa.address)
        assert.equal(pa.address, sa.address)
        assert.is_nil(sa.relay)
        assert.is_true(sa.mtu >= 1232 and sa.mtu <= 1452)
        -- nothing queued
        assert.equal(0, sa.queued_bytes)
        assert.equal(0, sa.queued_datagrams)
        assert.equal(0, sa.lanes[0].queued_bytes)
        -- the node counts this session's packets and the handshake's
        local na = a:stats()
        local extra = na.packets_sent - sa.packets_sent
        assert.is_true(extra >= 2 and extra <= 4, tostring(extra))
        assert.is_true(na.bytes_sent > sa.bytes_sent)
        assert.is_true(na.packets_received >= sa.packets_received)
        assert.equal(na.retransmits, sa.retransmits)
        -- a new table each call
        assert.are_not.equal(sa, pa:stats())
    end)

    it("follows a lossy link: loss, retransmits and the traffic it dropped", function()
        local sim, a, b, pa, pb = pair({ seed = 8, latency = 0.01 })
        -- 5% loss on A's up link from now on: only the session's packets go through it
        assert(sim:link(a, { up = { loss = 0.05 } }))
        local got = 0
        b:on("message", function() got = got + 1 end)
        for i = 1, 1500 do assert(pa:send(1, ("x"):rep(900 + i % 200))) end
        assert.is_true(run_until(sim, 60, function() return got == 1500 end))
        sim:run(2)
        local sa, sb = pa:stats(), pb:stats()
        local up = sim:link_stats(a).up
        assert.is_true(up.loss_drops > 40, tostring(up.loss_drops))
        -- what A sent and B never got: the link's drops, and up to a few MTU probes that were
        -- too big for the simulated path
        local missing = sa.packets_sent - sb.packets_received
        assert.is_true(missing >= up.loss_drops and missing <= up.loss_drops + 4,
            ("missing %d, dropped %d"):format(missing, up.loss_drops))
        assert.is_true(sa.bytes_sent - sb.bytes_received >= up.loss_drops * 33)
        assert.is_true(sb.packets_sent - sa.packets_received <= 4) -- the way back loses nothing
        assert.is_true(sa.lost > 0 and sa.retransmits > 0)
        assert.is_true(sa.lost - sa.spurious <= up.loss_drops)
        assert.is_true(sa.loss > 0.025 and sa.loss < 0.1, tostring(sa.loss))
        assert.equal(a:stats().retransmits, sa.retransmits)
        assert.equal(pa.lost, sa.lost)
        -- B lost nothing on its way
        assert.equal(0, sb.lost)
        assert.equal(0, sb.loss)
    end)

    it("counts queued bytes and messages per lane until they are acknowledged", function()
        local sim, _, b, pa, pb = pair()
        b:on("message", function() return "ok" end)
        local replies = 0
        for _ = 1, 10 do assert(pa:send(1, ("q"):rep(2000))) end
        for _ = 1, 25 do
            assert(pa:send(1, ("r"):rep(100), function(ok) if ok then replies = replies + 1 end end,
                { lane = 3 }))
        end
        local s = pa:stats()
        assert.equal(10, s.lanes[0].queued_messages)
        assert.equal(25, s.lanes[3].queued_messages)
        assert.equal(25, s.lanes[3].messages_sent)
        assert.is_true(s.lanes[0].queued_bytes > 20000 and s.lanes[0].queued_bytes < 20300)
        assert.is_true(s.lanes[3].queued_bytes > 2500 and s.lanes[3].queued_bytes < 3000)
        -- a simulated node sends at once what its window allows; the rest waits
        local l0 = s.lanes[0]
        assert.is_true(l0.unsent_bytes > 0 and l0.unsent_bytes < l0.queued_bytes)
        assert.is_true(s.queued_bytes >= s.lanes[0].queued_bytes + s.lanes[3].queued_bytes)
        assert.is_nil(s.lanes[1])
        assert.is_true(run_until(sim, 10, function() return replies == 25 end))
        sim:run(1)
        s = pa:stats()
        for lane, l in pairs(s.lanes) do
            assert.equal(0, l.queued_messages, tostring(lane))
            assert.equal(0, l.queued_bytes, tostring(lane))
            assert.equal(0, l.unsent_bytes, tostring(lane))
        end
        local sb = pb:stats()
        assert.equal(25, sb.lanes[3].messages_received)
        assert.equal(10, sb.lanes[0].messages_received)
        -- B answered each on its control lane
        assert.is_true(sb.lanes.control.messages_sent >= 25)
    end)

    it("shows a relayed path: the relay's address and id", function()
        local sim = p2pnet.sim { seed = 12, latency = 0.01, jitter = 0.002 }
        local med = assert(sim:node { mesh = false })
        local a = assert(sim:node { nat = "symmetric" })
        local b = assert(sim:node { nat = "symmetric" })
        local got = 0
        b:on("message", function() got = got + 1 end)
        assert(a:connect(med:address()))
        assert(b:connect(med:address()))
        assert.is_true(run_until(sim, 5, function()
            local ps = med:peers()
            return #ps == 2 and ps[1].state == "connected" and ps[2].state == "connected"
        end))
        local p = assert(a:connect(b.id, { via = med:address() }))
        assert.is_true(run_until(sim, 15, function() return p.state == "connected" end))
        for _ = 1, 50 do assert(p:send(1, ("z"):rep(500))) end
        assert.is_true(run_until(sim, 10, function() return got == 50 end))
        local s = p:stats()
        assert.equal("relayed", s.path)
        assert.is_false(s.direct)
        assert.equal(med.id, s.relay)
        assert.equal(med:address(), s.address)
        assert.is_true(s.mtu <= 1232) -- a relayed path carries the minimum
        local sb = b:peer(a.id):stats()
        assert.equal(med.id, sb.relay)
        -- the relay passed on what the two ends sent each other, unwrapped
        local relayed = med:stats().relayed_bytes
        assert.is_true(relayed >= sb.bytes_received + s.bytes_received)
        assert.is_true(relayed <= s.bytes_sent + sb.bytes_sent + 8192,
            ("relayed %d, sent %d"):format(relayed, s.bytes_sent + sb.bytes_sent))
    end)

    it("names NewReno's phase", function()
        local _, _, _, pa = pair(nil, { congestion = "newreno" })
        local s = pa:stats()
        assert.equal("newreno", s.congestion)
        assert.equal("slow_start", s.phase)
        assert.equal(0, s.bandwidth)
    end)

    it("gives nil, 'disconnected' once the session ended, and raises after close", function()
        local sim, a, _, pa = pair()
        assert(pa:disconnect())
        sim:run(1)
        assert.equal("disconnected", pa.state)
        local s, err = pa:stats()
        assert.is_nil(s)
        assert.equal("disconnected", err)
        local _, _, _, pc = pair()
        local c = pc
        a:close()
        assert.has_error(function() pa:stats() end, "peer:stats: node is closed")
        assert.is_table(c:stats())
        assert.has_error(function() a:metrics() end, "node:metrics: node is closed")
    end)
end)

describe("the Prometheus format reader used here", function()
    local good = "# HELP x_total A \\\\ help.\\nline\n# TYPE x_total counter\n" ..
        'x_total{a="q\\"\\\\\\n",b="2"} 3\nx_total 4\n'
    it("reads good input, escapes and all", function()
        local m = parse_prometheus(good)
        assert.equal("counter", m.x_total.type)
        assert.equal("A \\ help.\nline", m.x_total.help)
        assert.equal('q"\\\n', m.x_total.samples[1].labels.a)
        assert.equal(4, m.x_total.samples[2].value)
    end)
    local bad = {
        ["no trailing newline"] = good:sub(1, -2),
        ["an empty line"] = good .. "\n",
        ["no TYPE"] = "# HELP y y\ny 1\n",
        ["no HELP"] = "# TYPE y gauge\ny 1\n",
        ["TYPE twice"] = "# HELP y y\n# TYPE y gauge\n# TYPE y gauge\ny 1\n",
        ["HELP twice"] = "# HELP y y\n# HELP y y\n# TYPE y gauge\ny 1\n",
        ["TYPE after a sample"] = "# HELP y y\ny 1\n# TYPE y gauge\n",
        ["an unknown type"] = "# HELP y y\n# TYPE y thing\ny 1\n",
        ["a counter without _total"] = "# HELP y y\n# TYPE y counter\ny 1\n",
        ["a gauge with _total"] = "# HELP y_total y\n# TYPE y_total gauge\ny_total 1\n",
        ["a negative counter"] = "# HELP y_total y\n# TYPE y_total counter\ny_total -1\n",
        ["interleaved groups"] = "# HELP y y\n# TYPE y gauge\ny 1\n# HELP z z\n# TYPE z gauge\n" ..
            "z 1\ny{a=\"1\"} 2\n",
        ["the same series twice"] = "# HELP y y\n# TYPE y gauge\ny{a=\"1\",b=\"2\"} 1\n" ..
            "y{b=\"2\",a=\"1\"} 2\n",
        ["an unescaped quote"] = '# HELP y y\n# TYPE y gauge\ny{a="x"y"} 1\n',
        ["a bad escape"] = '# HELP y y\n# TYPE y gauge\ny{a="x\\t"} 1\n',
        ["a raw newline in a label"] = '# HELP y y\n# TYPE y gauge\ny{a="x\ny"} 1\n',
        ["an unquoted label"] = "# HELP y y\n# TYPE y gauge\ny{a=1} 1\n",
        ["a bad label name"] = '# HELP y y\n# TYPE y gauge\ny{1a="1"} 1\n',
        ["a reserved label name"] = '# HELP y y\n# TYPE y gauge\ny{__a="1"} 1\n',
        ["a label twice"] = '# HELP y y\n# TYPE y gauge\ny{a="1",a="2"} 1\n',
        ["a bad value"] = "# HELP y y\n# TYPE y gauge\ny 1,5\n",
        ["no value"] = "# HELP y y\n# TYPE y gauge\ny\n",
        ["two spaces"] = "# HELP y y\n# TYPE y gauge\ny  1\n",
        ["a bad metric name"] = "# HELP 1y y\n# TYPE 1y gauge\n1y 1\n",
        ["a bad escape in HELP"] = "# HELP y a \\t b\n# TYPE y gauge\ny 1\n",
        ["another comment"] = "# just a comment\n",
    }
    for why, text in pairs(bad) do
        it("rejects " .. why, function()
            assert.has_error(function() parse_prometheus(text) end)
        end)
    end
end)

describe("node:metrics()", function()
    it("writes the node's and every peer's figures in the Prometheus text format", function()
        local sim, a, b, pa = pair({ seed = 5, latency = 0.01 })
        assert(sim:link(a, { up = { loss = 0.03 } }))
        local got = 0
        b:on("message", function() got = got + 1 end)
        for i = 1, 300 do assert(pa:send(1, ("m"):rep(800 + i))) end
        for _ = 1, 5 do assert(pa:send(1, "lane", { lane = 7 })) end
        assert.is_true(run_until(sim, 30, function() return got == 305 end))
        sim:run(1)
        local text = a:metrics()
        local st, ps = a:stats(), pa:stats()
        local m = parse_prometheus(text)
        -- the node's counters and gauges, as node:stats() has them
        assert.equal(st.packets_sent, sample(m, "p2pnet_sent_packets_total"))
        assert.equal(st.bytes_received, sample(m, "p2pnet_received_bytes_total"))
        assert.equal(st.retransmits, sample(m, "p2pnet_retransmits_total"))
        assert.equal(st.dropped, sample(m, "p2pnet_dropped_total"))
        assert.equal(st.memory, sample(m, "p2pnet_memory_bytes"))
        assert.equal(1, sample(m, "p2pnet_peers"))
        assert.equal("gauge", m.p2pnet_peers.type)
        assert.equal("counter", m.p2pnet_sent_packets_total.type)
        assert.equal(0, sample(m, "p2pnet_task_errors_total"))
        assert.equal(st.callback_errors, sample(m, "p2pnet_callback_errors_total"))
        -- every counter of node:stats() is there, under its name
        for k, v in pairs(st) do
            local found = false
            for name, mm in pairs(m) do
                if not name:match("^p2pnet_peer_") and #mm.samples == 1 then
                    local n = name:gsub("^p2pnet_", ""):gsub("_total$", "")
                    local alias = { sent_packets = "packets_sent",
                        received_packets = "packets_received", sent_bytes = "bytes_sent",
                        received_bytes = "bytes_received", memory_bytes = "memory",
                        memory_peak_bytes = "memory_peak" }
                    if (alias[n] or n) == k then
                        found = true
                        assert.equal(v, mm.samples[1].value, k)
                    end
                end
            end
            assert.is_true(found, "node:stats()." .. k .. " is not in node:metrics()")
        end
        -- the peer, labelled with the first 16 hex digits of its id
        local id16 = b.id:sub(1, 16)
        local P = { peer = id16 }
        local function lane(n) return { peer = id16, lane = n } end
        local _, info = sample(m, "p2pnet_peer_info", P)
        assert.equal(b.id, info.id)
        assert.equal("direct", info.path)
        assert.equal(b:address(), info.address)
        assert.equal("bbr", info.congestion)
        assert.equal(1, sample(m, "p2pnet_peer_direct", P))
        assert.equal(ps.bytes_sent, sample(m, "p2pnet_peer_sent_bytes_total", P))
        assert.equal(ps.packets_received, sample(m, "p2pnet_peer_received_packets_total", P))
        assert.equal(ps.retransmits, sample(m, "p2pnet_peer_retransmits_total", P))
        assert.equal(ps.lost, sample(m, "p2pnet_peer_lost_packets_total", P))
        assert.equal(ps.cwnd, sample(m, "p2pnet_peer_cwnd_bytes", P))
        assert.equal(ps.mtu, sample(m, "p2pnet_peer_mtu_bytes", P))
        assert.is_true(math.abs(ps.rtt - sample(m, "p2pnet_peer_rtt_seconds", P)) < 1e-6)
        assert.is_true(math.abs(ps.loss - sample(m, "p2pnet_peer_loss_ratio", P)) < 1e-8)
        assert.is_true(ps.loss > 0 and ps.retransmits > 0)
        -- its lanes in use
        assert.equal(5, sample(m, "p2pnet_peer_lane_sent_messages_total", lane("7")))
        assert.equal(300, sample(m, "p2pnet_peer_lane_sent_messages_total", lane("0")))
        assert.equal(0, sample(m, "p2pnet_peer_lane_queued_messages", lane("0")))
        assert.is_not_nil(sample(m, "p2pnet_peer_lane_queued_bytes", lane("control")))
        assert.is_nil(sample(m, "p2pnet_peer_lane_queued_bytes", lane("1")))
        -- B's side counts the messages in
        local mb = parse_prometheus(b:metrics())
        assert.equal(300, sample(mb, "p2pnet_peer_lane_received_messages_total",
            { peer = a.id:sub(1, 16), lane = "0" }))
        assert.is_true(sample(mb, "p2pnet_peer_received_bytes_total", { peer = a.id:sub(1, 16) })
            <= ps.bytes_sent)
    end)

    it("writes one series per peer of a mesh, and none for a peer still connecting", function()
        local sim = p2pnet.sim { seed = 9, latency = 0.005 }
        local nodes = {}
        for i = 1, 6 do nodes[i] = assert(sim:node()) end
        for i = 2, 6 do assert(nodes[i]:connect(nodes[1]:address())) end
        assert.is_true(run_until(sim, 20, function()
            for _, n in ipairs(nodes) do
                if n:stats().peers ~= 5 then return false end
            end
            return true
        end))
        -- one more, dialled but not answered yet
        local late = assert(sim:node())
        local pending = assert(nodes[1]:connect(late:address()))
        assert.equal("connecting", pending.state)
        local ps = assert(pending:stats())
        assert.equal("connecting", ps.state)
        local m = parse_prometheus(nodes[1]:metrics())
        assert.equal(5, #m.p2pnet_peer_info.samples)
        assert.equal(5, #m.p2pnet_peer_rtt_seconds.samples)
        local seen = {}
        for _, smp in ipairs(m.p2pnet_peer_info.samples) do
            assert.equal(smp.labels.id:sub(1, 16), smp.labels.peer)
            assert.is_nil(seen[smp.labels.peer])
            seen[smp.labels.peer] = true
            assert.equal("connected", nodes[1]:peer(smp.labels.id).state)
        end
        assert.equal(5, sample(m, "p2pnet_peers"))
    end)

    it("adds constant labels, escaped, and leaves out the peers when asked", function()
        local _, a = pair()
        local odd = 'a "quoted" \\ back\nslash'
        local text = a:metrics { labels = { worker = odd, zone = "eu" } }
        local m = parse_prometheus(text)
        for name, mm in pairs(m) do
            for _, s in ipairs(mm.samples) do
                assert.equal(odd, s.labels.worker, name)
                assert.equal("eu", s.labels.zone, name)
            end
        end
        assert.is_not_nil(m.p2pnet_peer_rtt_seconds)
        local bare = parse_prometheus(a:metrics { peers = false })
        for name in pairs(bare) do assert.is_nil(name:match("^p2pnet_peer_"), name) end
        assert.is_not_nil(bare.p2pnet_sent_packets_total)
        -- a node without peers has no per-peer metrics at all
        local sim2 = p2pnet.sim { seed = 1 }
        local lone = parse_prometheus(sim2:node():metrics())
        assert.is_nil(lone.p2pnet_peer_info)
        assert.equal(0, sample(lone, "p2pnet_peers"))
    end)

    it("raises on misuse, naming the function and the argument", function()
        local _, a = pair()
        assert.has_error(function() a:metrics(5) end,
            "node:metrics: argument 'opts' must be a table or nil")
        assert.has_error(function() a:metrics { color = true } end,
            "node:metrics: unknown option 'color'")
        assert.has_error(function() a:metrics { peers = 1 } end,
            "node:metrics: argument 'opts.peers' must be a boolean or nil")
        assert.has_error(function() a:metrics { labels = "x" } end,
            "node:metrics: argument 'opts.labels' must be a table of strings")
        assert.has_error(function() a:metrics { labels = { worker = 1 } } end,
            "node:metrics: argument 'opts.labels' must map label names to strings")
        for _, v in ipairs({ "\255", "a\192\128", "\237\160\128", "\240\144\128" }) do
            assert.has_error(function() a:metrics { labels = { w = v } } end,
                "node:metrics: argument 'opts.labels' value of 'w' must be UTF-8 without NUL bytes")
        end
        local m = parse_prometheus(a:metrics { labels = { w = "caf\195\169 \240\159\152\128" } })
        assert.equal("caf\195\169 \240\159\152\128", m.p2pnet_peers.samples[1].labels.w)
        for _, name in ipairs({ "1a", "a-b", "__x", "peer", "lane", "" }) do
            local ok, err = pcall(a.metrics, a, { labels = { [name] = "v" } })
            assert.is_false(ok)
            local want = "node:metrics: argument 'opts.labels' has a bad label name"
            assert.is_truthy(tostring(err):find(want, 1, true), tostring(err))
        end
    end)
end)
