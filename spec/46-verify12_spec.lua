-- Issue 12, verification by a hostile stranger (loopback only): the mediator's TCP/WebSocket
-- listener (--tcp-port), its STUN responder (--stun-port), forged STUN on a node's main
-- socket, and misuse of the issue 12 node options. Each test fails while the defect it names
-- is present. Real processes on 127.0.0.0/8 only; every process and socket is cleaned up.
local p2pnet = require "p2pnet"
local socket = require "socket"
local S = require "spec.support"
local P = require "spec.procs"

local q = S.q

-- /proc figures of a process: resident KiB, and CPU seconds (user + system).
local function rss_kib(pid)
    local s = P.read("/proc/" .. pid .. "/status") or ""
    return tonumber(s:match("VmRSS:%s*(%d+)")) or 0
end

local function cpu_s(pid)
    local s = P.read("/proc/" .. pid .. "/stat") or ""
    -- fields after the command name in parentheses: state is field 3; utime 14, stime 15
    local rest = s:match("%) (.*)$") or ""
    local f = {}
    for w in rest:gmatch("%S+") do f[#f + 1] = w end
    local ticks = (tonumber(f[12]) or 0) + (tonumber(f[13]) or 0)
    return ticks / 100
end

-- Sends `data` on every connection of conns without blocking, again and again for 3 s (with
-- read, also reading whatever comes back); returns the bytes sent.
local function flood(conns, data, read)
    local t0, sent = socket.gettime(), 0
    while socket.gettime() - t0 < 3 do
        for _, c in ipairs(conns) do
            c:settimeout(0)
            local n = c:send(data)
            if n then sent = sent + n end
            if read then c:receive(65536) end
        end
    end
    return sent
end

-- Starts `p2pnet mediator ARGS` on 127.0.0.1; returns its pid and output file.
local function start_mediator(args, outfile, prefix)
    local root = P.root()
    local cmd = ("%scd %s && LUA_PATH=%s LUA_CPATH=%s exec lua5.4 bin/p2pnet mediator %s > %s 2>&1 "
                 .. "& echo $!"):format(prefix or "", q(root), q(root .. "/lua/?.lua;" .. root
                 .. "/lua/?/init.lua;;"), q(root .. "/build/?.so;;"), args, q(outfile))
    local pipe = assert(io.popen(cmd))
    local pid = math.tointeger(tonumber(pipe:read("l")))
    pipe:close()
    assert.is_number(pid)
    local ok = P.wait_until(function()
        local s = P.read(outfile) or ""
        return s:find("port mapping", 1, true)
    end, 10)
    assert(ok, "the mediator did not start: " .. (P.read(outfile) or ""))
    return pid
end

-- A TCP connection from `src` (a loopback address) to 127.0.0.1:port, or nil.
local function tcp_from(src, port)
    local c = socket.tcp()
    if src then assert(c:bind(src, 0)) end
    c:settimeout(2)
    local ok = c:connect("127.0.0.1", port)
    if not ok then
        c:close()
        return nil
    end
    return c
end

-- Reads from c for up to `seconds`; returns everything received and whether it was closed.
local function drain(c, seconds)
    local got, closed = {}, false
    local deadline = socket.gettime() + seconds
    c:settimeout(0.1)
    while socket.gettime() < deadline do
        local data, err, part = c:receive(4096)
        local d = data or part
        if d and #d > 0 then got[#got + 1] = d end
        if err == "closed" then
            closed = true
            break
        end
    end
    return table.concat(got), closed
end

local UPGRADE = "GET /p2pnet HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    .. "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

-- An upgraded WebSocket connection (the 101 read), or an error.
local function ws_open(port, src)
    local c = assert(tcp_from(src, port))
    assert(c:send(UPGRADE))
    c:settimeout(3)
    local head = {}
    repeat
        local line = assert(c:receive("*l"))
        head[#head + 1] = line
    until line == ""
    assert(head[1]:match("^HTTP/1.1 101"), table.concat(head, "\n"))
    return c
end

-- A client frame: masked (unless mask == false), FIN set unless fin == false.
local function frame(opcode, payload, opts)
    opts = opts or {}
    local b0 = (opts.fin == false and 0 or 0x80) | opcode | (opts.rsv or 0)
    local mask = opts.mask ~= false
    local n = #payload
    local hdr
    if opts.len64 then
        hdr = string.char(b0, (mask and 0x80 or 0) | 127) .. string.pack(">I8", opts.len64)
    elseif n <= 125 then
        hdr = string.char(b0, (mask and 0x80 or 0) | n)
    else
        hdr = string.char(b0, (mask and 0x80 or 0) | 126) .. string.pack(">I2", n)
    end
    if not mask then return hdr .. payload end
    local key = { 0x11, 0x22, 0x33, 0x44 }
    local out = {}
    for i = 1, n do out[i] = string.char(payload:byte(i) ~ key[(i - 1) % 4 + 1]) end
    return hdr .. string.char(table.unpack(key)) .. table.concat(out)
end

-- The close code in a server close frame at the start of `data`, or nil.
local function close_code(data)
    local i = data:find("\x88\x02", 1, true)
    if not i then return nil end
    return string.unpack(">I2", data, i + 2)
end

describe("issue 12 verification: the mediator's TCP/WebSocket listener #host", function()
    local dir, pid, udp_port, tcp_port, stun_port
    local held = {}

    lazy_setup(function()
        dir = S.tmpdir()
        udp_port, tcp_port, stun_port = P.free_port("udp"), P.free_port("tcp"), P.free_port("udp")
        pid = start_mediator(("--host 127.0.0.1 --port %d --tcp-port %d --stun-port %d "
                              .. "--no-portmap"):format(udp_port, tcp_port, stun_port),
                             dir .. "/med.out")
    end)

    lazy_teardown(function()
        for _, c in ipairs(held) do pcall(c.close, c) end
        P.kill_pid(pid)
        if dir then S.rmdir(dir) end
    end)

    after_each(function()
        for _, c in ipairs(held) do pcall(c.close, c) end
        held = {}
        assert.is_true(P.pid_alive(pid), "the mediator died: " .. (P.read(dir .. "/med.out") or ""))
    end)

    it("closes with an error each malformed WebSocket frame and raw stream", function()
        local cases = {
            { "unmasked client frame", frame(2, "abcd", { mask = false }), 1002 },
            { "text frame", frame(1, "hello"), 1003 },
            { "fragment (no FIN)", frame(2, "abcd", { fin = false }), 1003 },
            { "continuation", frame(0, "abcd"), 1003 },
            { "RSV bit", frame(2, "abcd", { rsv = 0x40 }), 1002 },
            { "unknown opcode", frame(3, "abcd"), 1002 },
            { "64-bit length", frame(2, "", { len64 = 0x7fffffffffffffff }), 1009 },
            { "2000-byte frame", frame(2, ("x"):rep(2000)), 1009 },
            { "ping over 125", frame(9, ("p"):rep(126)), 1002 },
        }
        for _, case in ipairs(cases) do
            local c = ws_open(tcp_port)
            held[#held + 1] = c
            assert(c:send(case[2]))
            local data, closed = drain(c, 3)
            assert.is_true(closed, case[1] .. ": not closed")
            assert.equal(case[3], close_code(data), case[1] .. ": close code")
        end
        -- raw: a zero length, a length over 1232, garbage instead of a preamble, a 5000-byte
        -- HTTP head without its end
        for _, bytes in ipairs { "p2pt\0\0", "p2pt\xff\xff" .. ("z"):rep(100), "\1\2\3\4junk",
                                 "GET /p2pnet HTTP/1.1\r\nX: " .. ("a"):rep(5000) } do
            local c = assert(tcp_from(nil, tcp_port))
            held[#held + 1] = c
            assert(c:send(bytes))
            local data, closed = drain(c, 3)
            assert.is_true(closed, ("not closed after %q"):format(bytes:sub(1, 12)))
            if bytes:sub(1, 3) == "GET" then assert.matches("^HTTP/1.1 431", data) end
        end
    end)

    it("closes connections that never finish their preamble (slowloris) within ~10 s", function()
        local silent = assert(tcp_from("127.0.0.2", tcp_port))
        local partial = assert(tcp_from("127.0.0.3", tcp_port))
        local partial_raw = assert(tcp_from("127.0.0.4", tcp_port))
        held[#held + 1], held[#held + 2], held[#held + 3] = silent, partial, partial_raw
        assert(partial:send("GET /p2pnet HTTP/1.1\r\nHost: x\r\n"))
        assert(partial_raw:send("p2p"))
        local t0 = socket.gettime()
        -- one more header byte a second: never completes
        local all = { silent, partial, partial_raw }
        local open = 3
        local state = {}
        while open > 0 and socket.gettime() - t0 < 14 do
            pcall(partial.send, partial, "X")
            for i, c in ipairs(all) do
                if not state[i] then
                    c:settimeout(0)
                    local _, err = c:receive(1)
                    if err == "closed" then
                        state[i] = socket.gettime() - t0
                        open = open - 1
                    end
                end
            end
            socket.sleep(0.5)
        end
        for i = 1, 3 do
            assert.is_not_nil(state[i], "connection " .. i .. " still open after 14 s")
            assert.is_true(state[i] < 12.5, "closed after " .. tostring(state[i]) .. " s")
        end
    end)

    it("answers pings of a client that never reads without growing past its output cap", function()
        local base = rss_kib(pid)
        local conns = {}
        for i = 1, 20 do
            local c = ws_open(tcp_port, "127.0.1." .. i)
            c:setoption("tcp-nodelay", true)
            conns[#conns + 1] = c
            held[#held + 1] = c
        end
        local ping = frame(9, ("p"):rep(125))
        local burst = ping:rep(64)
        local c0 = cpu_s(pid)
        local sent = flood(conns, burst)
        local grew = rss_kib(pid) - base
        -- 20 streams x (256 KiB output + 64 KiB input) is the documented bound: 6.4 MiB
        print(("\n  ping flood: %d bytes sent in 3 s, RSS +%d KiB, CPU %.2f s"):format(
            sent, grew, cpu_s(pid) - c0))
        assert.is_true(grew < 20 * 1024, "RSS grew by " .. grew .. " KiB")
    end)

    it("stays bounded and idle under a flood of junk datagrams over raw streams", function()
        local base = rss_kib(pid)
        local conns = {}
        for i = 1, 16 do
            local c = assert(tcp_from("127.0.2." .. i, tcp_port))
            assert(c:send("p2pt"))
            conns[#conns + 1] = c
            held[#held + 1] = c
        end
        local junk = {}
        for k = 1, 32 do
            local body = S.payload(k, 1232)
            -- half look like INIT (type 1, 160 bytes), half like DATA (type 4)
            if k % 2 == 0 then
                body = "\1\0\0\0" .. body:sub(5, 160)
            else
                body = "\4" .. body:sub(2)
            end
            junk[#junk + 1] = string.pack(">s2", body)
        end
        local blob = table.concat(junk)
        local c0 = cpu_s(pid)
        local sent = flood(conns, blob, true) -- reading whatever comes back (cookies)
        local busy = cpu_s(pid) - c0
        local grew = rss_kib(pid) - base
        -- after the flood, with the streams still open and quiet: no spinning
        local c1 = cpu_s(pid)
        socket.sleep(2)
        local idle = cpu_s(pid) - c1
        print(("\n  junk flood: %d bytes in 3 s, RSS +%d KiB, CPU %.2f s busy, %.2f s in 2 s idle")
              :format(sent, grew, busy, idle))
        assert.is_true(grew < 16 * 1024, "RSS grew by " .. grew .. " KiB")
        assert.is_true(idle < 0.3, "the mediator spun: " .. idle .. " s CPU in 2 s idle")
    end)

    -- A node whose only way to the mediator is its TCP URL connects within 8 s: the
    -- mediator's UDP port number differs from its TCP one, so connecting to that number over
    -- UDP gets no answer and the node falls back to the URL.
    local function legit_node_connects()
        local node = assert(p2pnet.node { host = "127.0.0.1", portmap = false,
                                          fallback = { "tcp://127.0.0.1:" .. tcp_port } })
        finally(function() node:close() end)
        local peer = assert(node:connect("127.0.0.1:" .. tcp_port))
        return S.spin({ node }, function() return peer.state == "connected" end, 8)
    end

    it("lets a legitimate node in over TCP while 200 silent connections are held", function()
        for i = 1, 200 do
            local c = tcp_from(("127.0.%d.%d"):format(3 + i // 250, 1 + i % 250), tcp_port)
            if c then held[#held + 1] = c end
        end
        local c0 = cpu_s(pid)
        local ok = legit_node_connects()
        print(("\n  %d silent connections held; legit node %s; mediator CPU %.2f s"):format(
            #held, ok and "connected" or "refused", cpu_s(pid) - c0))
        assert.is_true(ok, "a legitimate node did not get through")
    end)

    it("lets a legitimate node in while 300 silent connections try to fill every slot", function()
        -- a stranger with 38 addresses (8 each, the per-IP cap) or a loopback client fills
        -- the 256 stream slots with connections that never speak; each lasts 10 s and is
        -- then simply opened again
        for i = 1, 300 do
            local c = tcp_from(("127.0.%d.%d"):format(10 + i // 250, 1 + i % 250), tcp_port)
            if c then held[#held + 1] = c end
        end
        local ok = legit_node_connects()
        print(("\n  300 silent connections: legit node %s within 8 s"):format(
            ok and "connected" or "refused"))
        assert.is_true(ok, "slot exhaustion: a legitimate node was refused while 300 silent "
                           .. "connections were open (driver/udp.c accept_streams)")
    end)
end)

describe("issue 12 verification: the TCP listener out of descriptors #host", function()
    it("does not spin when accept() fails for want of descriptors (ulimit -n 48)", function()
        local dir = S.tmpdir()
        local tcp = P.free_port("tcp")
        local pid = start_mediator(("--host 127.0.0.1 --port 0 --tcp-port %d --no-portmap")
                                   :format(tcp), dir .. "/emfile.out", "ulimit -n 48; ")
        local held = {}
        finally(function()
            for _, c in ipairs(held) do pcall(c.close, c) end
            P.kill_pid(pid)
            S.rmdir(dir)
        end)
        for _ = 1, 80 do
            local c = tcp_from(nil, tcp)
            if c then held[#held + 1] = c end
        end
        local c0 = cpu_s(pid)
        socket.sleep(3)
        local used = cpu_s(pid) - c0
        print(("\n  %d connections against 48 descriptors: %.2f s CPU in 3 s"):format(#held, used))
        assert.is_true(used < 0.3, ("the mediator spun: %.2f s CPU in 3 s (driver/udp.c "
                                    .. "accept_streams on EMFILE)"):format(used))
    end)
end)

describe("issue 12 verification: the STUN responder #host", function()
    local dir, pid, stun_port

    lazy_setup(function()
        dir = S.tmpdir()
        stun_port = P.free_port("udp")
        pid = start_mediator(("--host 127.0.0.1 --port 0 --tcp-port 0 --stun-port %d --no-portmap")
                             :format(stun_port), dir .. "/stun.out")
    end)

    lazy_teardown(function()
        P.kill_pid(pid)
        if dir then S.rmdir(dir) end
    end)

    local function crc32(s)
        local c = 0xffffffff
        for i = 1, #s do
            c = c ~ s:byte(i)
            for _ = 1, 8 do
                c = (c >> 1) ~ (0xedb88320 & -(c & 1))
            end
        end
        return (~c) & 0xffffffff
    end

    local function msg(typ, attrs, fingerprint, txid)
        txid = txid or S.payload(typ + #attrs, 12)
        local body = attrs
        if fingerprint then
            local hdr = string.pack(">I2I2I4", typ, #body + 8, 0x2112A442) .. txid
            local crc = crc32(hdr .. body) ~ 0x5354554e
            body = body .. string.pack(">I2I2I4", 0x8028, 4, crc)
        end
        return string.pack(">I2I2I4", typ, #body, 0x2112A442) .. txid .. body
    end

    -- Sends each request from a fresh socket on src; returns the answers' sizes (0: none).
    local function ask(req, src)
        local u = socket.udp()
        assert(u:setsockname(src or "127.0.0.1", 0))
        assert(u:setpeername("127.0.0.1", stun_port))
        u:settimeout(0.3)
        u:send(req)
        local a = u:receive()
        u:close()
        return a and #a or 0, a
    end

    it("answers a Binding request at most 3x its size and nothing else at all", function()
        local cases = {
            { "bare request", msg(0x0001, ""), true },
            { "with FINGERPRINT", msg(0x0001, "", true), true },
            { "SOFTWARE + FINGERPRINT",
              msg(0x0001, string.pack(">I2I2", 0x8022, 4) .. "abcd", true), true },
            { "CHANGE-REQUEST ip", msg(0x0001, string.pack(">I2I2I4", 3, 4, 4)), false },
            { "RESPONSE-PORT", msg(0x0001, string.pack(">I2I2I2I2", 0x27, 4, 9, 0)), false },
            { "PADDING", msg(0x0001, string.pack(">I2I2", 0x26, 4) .. "\0\0\0\0"), false },
            { "unknown comprehension-required",
              msg(0x0001, string.pack(">I2I2", 0x7777, 4) .. "abcd"), false },
            { "success response",
              msg(0x0101, string.pack(">I2I2I1I1I2I4", 0x20, 8, 0, 1, 1, 1)), false },
            { "indication", msg(0x0011, ""), false },
            { "bad fingerprint", msg(0x0001, "", true):sub(1, -2) .. "\0", false },
            { "length mismatch",
              msg(0x0001, ""):sub(1, 2) .. "\0\4" .. msg(0x0001, ""):sub(5), false },
            { "19 bytes", msg(0x0001, ""):sub(1, 19), false },
            { "no cookie", "\0\1\0\0\0\0\0\0" .. ("t"):rep(12), false },
            { "p2pnet INIT shape", "\1\0\0\0" .. S.payload(9, 156), false },
        }
        local src = 0
        for _, case in ipairs(cases) do
            src = src + 1
            local n, a = ask(case[2], "127.0.5." .. src)
            if case[3] then
                assert.is_true(n > 0, case[1] .. ": no answer")
                assert.is_true(n <= 3 * #case[2],
                               ("%s: %d bytes for %d"):format(case[1], n, #case[2]))
                assert.equal(0x0101, string.unpack(">I2", a))
            else
                assert.equal(0, n, case[1] .. ": answered")
            end
        end
    end)

    it("limits answers per source IP to ~10 a second and in all to ~1000 a second", function()
        -- one IP, 60 requests in a burst
        local u = socket.udp()
        assert(u:setsockname("127.0.6.1", 0))
        assert(u:setpeername("127.0.0.1", stun_port))
        local req = msg(0x0001, "")
        for _ = 1, 60 do u:send(req) end
        u:settimeout(0.5)
        local got = 0
        while u:receive() do got = got + 1 end
        u:close()
        assert.is_true(got >= 5 and got <= 12, "one IP got " .. got .. " answers of 60")
        -- 250 "spoofed" sources (loopback aliases), 10 each, in well under a second
        local socks = {}
        for i = 1, 250 do
            local s = socket.udp()
            assert(s:setsockname(("127.0.7.%d"):format(i), 0))
            assert(s:setpeername("127.0.0.1", stun_port))
            socks[i] = s
        end
        local t0 = socket.gettime()
        for _ = 1, 10 do
            for _, s in ipairs(socks) do s:send(req) end
        end
        local dt = socket.gettime() - t0
        socket.sleep(0.3)
        local total = 0
        for _, s in ipairs(socks) do
            s:settimeout(0)
            while s:receive() do total = total + 1 end
            s:close()
        end
        print(("\n  STUN: one IP %d/60 answered; 250 IPs x 10 in %.2f s: %d answered"):format(
            got, dt, total))
        assert.is_true(total <= 1000 + math.ceil(dt * 1000) + 50, total .. " answers")
    end)
end)

describe("issue 12 verification: forged STUN on a node's main socket #host", function()
    it("drops a STUN success that answers nothing, and nat()/addresses() do not change", function()
        local node = assert(p2pnet.node { host = "127.0.0.1", portmap = false })
        finally(function() node:close() end)
        S.spin_for({ node }, 0.2)
        local function snapshot()
            local t = {}
            for _, a in ipairs(node:addresses()) do t[#t + 1] = a.kind .. " " .. a.address end
            table.sort(t)
            local n = node:nat()
            local keys = {}
            for k, v in pairs(n) do keys[#keys + 1] = k .. "=" .. tostring(v) end
            table.sort(keys)
            return table.concat(t, ",") .. " | " .. table.concat(keys, ",")
        end
        local before = snapshot()
        local dropped0 = node:stats().dropped or 0
        local host, port = node:address():match("^(.*):(%d+)$")
        local u = socket.udp()
        assert(u:setsockname("127.0.0.1", 0))
        -- XOR-MAPPED-ADDRESS 203.0.113.7:4444, a random transaction id: right shape, answers
        -- nothing the node asked
        local txid = S.payload(77, 12)
        local xport = 4444 ~ 0x2112
        local xip = string.pack(">I4", (203 << 24 | 0 << 16 | 113 << 8 | 7) ~ 0x2112A442)
        local attr = string.pack(">I2I2I1I1I2", 0x20, 8, 0, 1, xport) .. xip
        local m = string.pack(">I2I2I4", 0x0101, #attr, 0x2112A442) .. txid .. attr
        for _ = 1, 5 do u:sendto(m, host, tonumber(port)) end
        u:close()
        S.spin_for({ node }, 0.3)
        local after = snapshot()
        assert.is_true((node:stats().dropped or 0) >= dropped0 + 5, "not counted as dropped")
        assert.equal(before, after, "a forged STUN answer changed what the node reports")
    end)
end)

describe("issue 12 verification: a hostile server behind a fallback URL #host", function()
    -- The node's own stream client against a server that answers with junk: a raw length of
    -- 65535, a WebSocket upgrade whose head never ends, or an accept-and-close. The node
    -- must close each, never reconnect in a storm (the list is retried after 30 s, doubling),
    -- and never report UDP as blocked because of it.
    for _, case in ipairs {
        { name = "raw junk", url = "tcp", reply = "\xff\xff" .. ("j"):rep(200) },
        { name = "endless HTTP head", url = "ws", reply = "HTTP/1.1 101 Switching\r\n"
          .. ("X-Junk: " .. ("a"):rep(90) .. "\r\n"):rep(60) },
        { name = "accept and close", url = "tcp", close = true },
    } do
        it("closes a stream to a server sending " .. case.name .. " and retries slowly", function()
            local server = assert(socket.bind("127.0.0.1", 0))
            server:settimeout(0)
            local _, sport = server:getsockname()
            local url = case.url == "tcp" and ("tcp://127.0.0.1:" .. sport)
                or ("ws://127.0.0.1:%s/p2pnet"):format(sport)
            local node = assert(p2pnet.node { host = "127.0.0.1", portmap = false,
                                              fallback = { url } })
            local conns = {}
            finally(function()
                node:close()
                for _, c in ipairs(conns) do pcall(c.close, c) end
                server:close()
            end)
            local dead = P.free_port("udp")
            local peer = assert(node:connect("127.0.0.1:" .. dead))
            local closed_by_node, gone = 0, {}
            S.spin({ node }, function()
                local c = server:accept()
                if c then
                    c:settimeout(0)
                    conns[#conns + 1] = c
                    if case.close then c:close() else c:send(case.reply) end
                end
                for i, k in ipairs(conns) do
                    if not case.close and not gone[i] then
                        local _, err = k:receive(4096)
                        if err == "closed" then
                            gone[i] = true
                            closed_by_node = closed_by_node + 1
                        end
                    end
                end
                return false
            end, 9)
            print(("\n  %s: %d connections in 9 s, %d closed by the node, peer %s, udp %s")
                  :format(case.name, #conns, closed_by_node, peer.state, node:nat().udp))
            assert.is_true(#conns >= 1, "the node never tried the fallback")
            assert.is_true(#conns <= 2, #conns .. " connections in 9 s")
            if not case.close then assert.equal(#conns, closed_by_node) end
            assert.are_not.equal("connected", peer.state)
        end)
    end
end)

describe("issue 12 verification: LAN discovery on a loopback-bound node #natlab", function()
    -- A node bound to 127.0.0.1 is meant to be reachable from this host only (portmap is off
    -- for it, as documented). With discover = "lan" it must not send beacons (its id, in the
    -- clear without a network key) out of the machine's other interfaces. Measured in a
    -- namespace of our own with one veth interface: iptables counts what leaves on it.
    local NS = "v12verify" .. tostring(math.random(100000, 999999))
    local function sh(cmd) return P.run(cmd) end

    it("sends no beacon out of a non-loopback interface", function()
        if not (P.have("ip") and P.have("iptables")) or not P.run("test $(id -u) = 0") then
            pending("needs root, ip and iptables")
            return
        end
        finally(function() sh("ip netns del " .. NS) end)
        for _, c in ipairs {
            "ip netns add " .. NS, "ip -n " .. NS .. " link set lo up",
            "ip -n " .. NS .. " link add d0 type veth peer name d1",
            "ip -n " .. NS .. " link set d1 up", "ip -n " .. NS .. " link set d0 up",
            "ip -n " .. NS .. " addr add 10.99.0.1/24 brd 10.99.0.255 dev d0",
            "ip netns exec " .. NS .. " iptables -A OUTPUT -o d0 -p udp --dport 44344 -j ACCEPT",
        } do
            local ok, out = sh(c)
            assert(ok, c .. ": " .. out)
        end
        local root = P.root()
        local ok, out = sh(("ip netns exec %s env LUA_PATH=%s LUA_CPATH=%s timeout 20 lua5.4 -e %s")
            :format(NS, q(root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;;"),
                    q(root .. "/build/?.so;;"),
                    q("local p = require 'p2pnet'; local n = assert(p.node { host = '127.0.0.1',"
                      .. " portmap = false, discover = 'lan' }); local t = os.time();"
                      .. " while os.time() - t < 3 do n:poll(0.05) end; n:close()")))
        assert(ok, out)
        local _, counters = sh("ip netns exec " .. NS .. " iptables -L OUTPUT -v -x -n")
        local pkts = tonumber(counters:match("\n%s*(%d+)%s+%d+%s+ACCEPT")) or -1
        print(("\n  beacons out of d0 from a node bound to 127.0.0.1 in 3 s: %d"):format(pkts))
        assert.equal(0, pkts, "a loopback-bound node beaconed on the LAN (driver/udp.c lan_start)")
    end)
end)

describe("issue 12 verification: misuse of the new node options", function()
    local bad = {
        { "tcp_port", "x" }, { "tcp_port", 0 }, { "tcp_port", 70000 }, { "tcp_port", 1.5 },
        { "tcp_port", -1 }, { "ws_path", 5 }, { "ws_path", "p2pnet" }, { "ws_path", "/a b" },
        { "ws_path", "/" .. ("a"):rep(200) }, { "stun", "127.0.0.1:3478" },
        { "stun", { "a:1", "b:2", "c:3", "d:4", "e:5" } }, { "stun", { 3478 } },
        { "stun", { "127.0.0.1:99999" }, soft = true }, { "stun", { "127.0.0.1" }, soft = true },
        { "stun", { "127.0.0.1:0" }, soft = true },
        { "stun_server", 0 }, { "stun_server", 70000 }, { "stun_server", "3478" },
        { "fallback", "tcp://127.0.0.1:1" }, { "fallback", { "wss://127.0.0.1/p2pnet" } },
        { "fallback", { "http://127.0.0.1:1" } }, { "fallback", { "tcp://127.0.0.1" } },
        { "fallback", { "tcp://127.0.0.1:70000" } }, { "fallback", { 7 } }, { "fallback", true },
        { "fallback", { "tcp://a:1", "tcp://b:2", "tcp://c:3", "tcp://d:4", "tcp://e:5" } },
        { "discover", "wan" }, { "discover", true }, { "portmap", "yes" }, { "portmap", 1 },
        { "punch", "x" },
    }
    for _, case in ipairs(bad) do
        it(("raises for %s = %s"):format(case[1], type(case[2]) == "table"
                                         and "{" .. table.concat(case[2], ",") .. "}"
                                         or tostring(case[2])), function()
            local opts = { host = "127.0.0.1", portmap = false }
            opts[case[1]] = case[2]
            local ok, node, why = pcall(p2pnet.node, opts)
            if ok and node then node:close() end
            if case.soft and ok then
                -- an address that does not resolve is a runtime failure (as for connect):
                -- nil and a message naming the option
                assert.is_nil(node, "accepted")
                assert.matches(case[1], tostring(why), 1, true)
                return
            end
            assert.is_false(ok, "accepted")
            assert.matches("p2pnet.node", tostring(node), 1, true)
            assert.matches(case[1], tostring(node), 1, true)
        end)
    end

    it("returns nil, err (does not raise) when the TCP or STUN port is taken", function()
        local taken = socket.tcp()
        assert(taken:bind("127.0.0.1", 0))
        assert(taken:listen(1))
        local _, tport = taken:getsockname()
        finally(function() taken:close() end)
        local ok, node, err = pcall(p2pnet.node, { host = "127.0.0.1", portmap = false,
                                                   tcp_port = tonumber(tport) })
        assert.is_true(ok, tostring(node))
        if node then node:close() end
        assert.is_nil(node)
        assert.matches(tostring(tport), tostring(err), 1, true)
        local u = socket.udp()
        assert(u:setsockname("127.0.0.1", 0))
        local _, uport = u:getsockname()
        finally(function() u:close() end)
        ok, node, err = pcall(p2pnet.node, { host = "127.0.0.1", portmap = false,
                                             stun_server = tonumber(uport) })
        assert.is_true(ok, tostring(node))
        if node then node:close() end
        assert.is_nil(node)
        assert.is_string(err)
    end)
end)
