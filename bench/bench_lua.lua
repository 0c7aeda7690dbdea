-- bench/bench_lua.lua - the p2pnet contender through Lua (require "p2pnet"), measured exactly
-- like the C contenders: see bench/bench_common.h for the roles ("server", "client PORT") and
-- the application protocol ('D'/'F' data with ack_every, 'A' acks, 'P' pings, 'Q' quit).
-- Runs on Lua 5.1 to 5.4 and LuaJIT: the little-endian fields are read and written by hand
-- (no string.pack, no //). Times come from the node's monotonic clock (node:now()).
local p2pnet = require "p2pnet"

-- The column of bench/run.sh's table: LuaJIT has its own.
local NAME = rawget(_G, "jit") and "luajit" or "lua"
local SIZES = { 64, 1024, 65536 }
if os.getenv("BENCH_SIZES") then -- a subset, for profiling: BENCH_SIZES="64"
    SIZES = {}
    for size in os.getenv("BENCH_SIZES"):gmatch("%d+") do SIZES[#SIZES + 1] = tonumber(size) end
end
local RTT_WARMUP = 200
local seconds = tonumber(os.getenv("BENCH_SECONDS") or "") or 2
local rtt_count = tonumber(os.getenv("BENCH_RTT_COUNT") or "") or 5000

local floor = math.floor

-- Little-endian fields of the protocol (bench_common.h), by hand for every Lua.
local function u64le(s, i)
    local b1, b2, b3, b4, b5, b6, b7, b8 = s:byte(i, i + 7)
    return ((((((b8 * 256 + b7) * 256 + b6) * 256 + b5) * 256 + b4) * 256 + b3) * 256 + b2) * 256
        + b1
end

-- 'A' + count (u64 LE) + 7 bytes of padding: BENCH_ACK_LEN (16) bytes.
local function ack(count)
    local b = {}
    for i = 1, 8 do
        b[i] = count % 256
        count = floor(count / 256)
    end
    return string.char(65, b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], 0, 0, 0, 0, 0, 0, 0)
end

local function window(size)
    local w = floor((4 * 1024 * 1024) / size)
    if w > 256 then w = 256 elseif w < 4 then w = 4 end
    return w
end

local function die(msg)
    io.stderr:write("bench_lua: ", msg, "\n")
    os.exit(1)
end

local function server()
    local node = assert(p2pnet.node { host = "127.0.0.1", port = 0 })
    print("PORT " .. node:address():match(":(%d+)$"))
    io.stdout:flush()
    local count, quit, joined = 0, false, false
    node:on("join", function() joined = true end)
    node:on("leave", function() quit = true end)
    node:on("message", function(peer, _, data)
        local kind, lo, hi = data:byte(1, 3) -- the kind and ack_every (u16 LE), in one call
        if kind == 68 or kind == 70 then -- 'D', 'F'
            count = count + 1
            local every = hi and lo + 256 * hi or 1
            if kind == 70 or every == 0 or count % every == 0 then
                assert(peer:send(1, ack(count)))
            end
        elseif kind == 80 then -- 'P'
            assert(peer:send(1, data))
        elseif kind == 81 then -- 'Q'
            quit = true
        end
    end)
    local idle_deadline = node:now() + 60
    while not quit do
        node:poll(0.005)
        if not joined and node:now() > idle_deadline then die("no client") end
    end
    if os.getenv("BENCH_STATS") then -- for profiling: packets per message
        local st = node:stats()
        io.stderr:write(("stats: %d messages, %d packets received, %d sent\n"):format(count,
            st.packets_received, st.packets_sent))
    end
    node:close()
end

local function client(port)
    local node = assert(p2pnet.node { host = "127.0.0.1", port = 0 })
    local joined, failed
    node:on("join", function() joined = true end)
    node:on("error", function(err) failed = err end)
    local peer = assert(node:connect("127.0.0.1:" .. port))
    local deadline = node:now() + 5
    while not joined do
        node:poll(0.01)
        if failed then die("connect failed: " .. tostring(failed)) end
        if node:now() > deadline then die("connect timed out") end
    end
    node:on("leave", function() die("session lost") end)

    local server_count = 0
    for _, size in ipairs(SIZES) do
        local w = window(size)
        local pad = ("\171"):rep(size - 3)
        local quarter = floor(w / 4)
        local every = string.char(quarter % 256, floor(quarter / 256))
        local data_msg, final_msg = "D" .. every .. pad, "F" .. every .. pad
        local base, sent, acked, final = server_count, 0, 0, false
        node:on("message", function(_, _, data)
            if data:byte(1) == 65 then -- 'A'
                local c = u64le(data, 2) - base
                if c > acked then acked = c end
            end
        end)
        local start = node:now()
        local stop_at = start + seconds
        while true do
            while not final and sent - acked < w do
                local last = node:now() >= stop_at
                local ok, err = peer:send(1, last and final_msg or data_msg)
                if not ok then die("send: " .. tostring(err)) end
                sent = sent + 1
                final = last
            end
            if final and acked >= sent then break end
            node:poll(0.001)
        end
        local secs = node:now() - start
        server_count = server_count + sent
        local mps = sent / secs
        print(("RESULT %s tput %d %.0f %.2f %d"):format(NAME, size, mps, mps * size / 1e6, sent))
        io.stdout:flush()
    end

    local ping = "P" .. ("\0"):rep(63)
    local got
    node:on("message", function(_, _, data)
        if #data == 64 and data:byte(1) == 80 then got = true end
    end)
    local samples = {}
    for i = -RTT_WARMUP, rtt_count - 1 do
        got = false
        local t0 = node:now()
        assert(peer:send(1, ping))
        while not got do node:poll(0.001) end
        if i >= 0 then samples[#samples + 1] = (node:now() - t0) * 1e6 end
    end
    table.sort(samples)
    local n = #samples
    local p99 = math.min(n, math.floor(n * 0.99) + 1)
    print(("RESULT %s rtt %.0f %.0f %d"):format(NAME, samples[floor(n / 2) + 1], samples[p99], n))
    io.stdout:flush()

    node:on("leave", nil)
    assert(peer:send(1, "Q"))
    local until_t = node:now() + 0.2
    while node:now() < until_t do node:poll(0.01) end
    node:close()
end

local role = arg[1]
if role == "server" then
    server()
elseif role == "client" and tonumber(arg[2]) then
    client(tonumber(arg[2]))
else
    io.stderr:write("usage: lua5.4 | luajit bench/bench_lua.lua server | client PORT\n")
    os.exit(2)
end
