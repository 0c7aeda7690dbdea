-- p2pnet.ngx in a real nginx (Debian nginx + libnginx-mod-http-lua): examples/openresty run
-- as its own process, with its own prefix in a temporary directory, on 127.0.0.1, with two
-- workers, against a p2pnet peer in another process (examples/openresty/peer.lua under
-- lua5.4). Builds the LuaJIT module nginx loads (build-luajit). Tagged #host: the ASan pass
-- of busted skips it.
local socket = require "socket"
local http = require "socket.http"
local ltn12 = require "ltn12"
local P = require "spec.procs"
local sh, read, free_port, pid_alive, wait_until, kill_pid =
    P.sh, P.read, P.free_port, P.pid_alive, P.wait_until, P.kill_pid
local ROOT = P.root()

local function median(t)
    local c = {}
    for i, v in ipairs(t) do
        c[i] = v
    end
    table.sort(c)
    return c[math.max(1, math.ceil(#c / 2))]
end

local have_nginx = sh("command -v nginx >/dev/null 2>&1")
    and read("/usr/lib/nginx/modules/ngx_http_lua_module.so") ~= nil

local function need_nginx()
    if not have_nginx then
        pending("nginx with the Lua module is not installed")
        return false
    end
    return true
end

local function http_get(base, path, body)
    http.TIMEOUT = 20
    local out = {}
    local _, code = http.request {
        url = base .. path,
        method = body and "POST" or "GET",
        source = body and ltn12.source.string(body) or nil,
        headers = body and { ["content-length"] = #body } or nil,
        sink = ltn12.sink.table(out),
    }
    return table.concat(out), code
end

-- Starts a peer (lua5.4, examples/openresty/peer.lua) and nginx with the example's
-- configuration in a new temporary prefix: `workers` workers, P2PNET_MODE `mode`. Returns
-- dir, http port, peer port, node port, nginx pid, peer pid, peer id, base URL; raises when
-- something does not start (the caller's teardown still cleans up what started).
-- started(dir, peer_pid, nginx_pid) is told of each as soon as it exists.
local function launch(workers, mode, started)
    local dir, hport, pport, uport, nginx_pid, peer_pid, peer_id, base
    assert(sh("cd '" .. ROOT .. "' && make -s module >/dev/null"
        .. " && make -s BUILD=build-luajit LUA_PC=luajit module >/dev/null"),
        "building the modules failed")
    local p = io.popen("mktemp -d /tmp/p2pnet-ngx-spec.XXXXXX")
    dir = p:read("*l")
    p:close()
    started(dir)
    assert(sh("mkdir -p " .. dir .. "/logs " .. dir .. "/temp"))
    hport, pport, uport = free_port("tcp"), free_port("udp"), free_port("udp")
    while uport == pport do
        uport = free_port("udp")
    end
    base = "http://127.0.0.1:" .. hport
    -- the peer: lua5.4 and the in-tree module
    local env = ("LUA_PATH='%s/lua/?.lua;%s/lua/?/init.lua;;' LUA_CPATH='%s/build/?.so;;'")
        :format(ROOT, ROOT, ROOT)
    assert(sh(("%s lua5.4 %s/examples/openresty/peer.lua %d > %s/peer.out 2> %s/peer.err"
        .. " & echo $! > %s/peer.pid"):format(env, ROOT, pport, dir, dir, dir)))
    peer_pid = tonumber(read(dir .. "/peer.pid"))
    started(dir, peer_pid)
    peer_id = wait_until(function()
        return (read(dir .. "/peer.out") or ""):match("READY (%x+)")
    end, 10)
    assert(peer_id, "the peer did not start: " .. tostring(read(dir .. "/peer.err")))
    -- nginx: the example's configuration on a free port; reuseport spreads connections
    -- over both workers
    local conf = assert(read(ROOT .. "/examples/openresty/nginx.conf"))
    local n
    conf, n = conf:gsub("listen 127%.0%.0%.1:8080;", "listen 127.0.0.1:" .. hport
        .. " reuseport;")
    assert(n == 1)
    local f = assert(io.open(dir .. "/nginx.conf", "w"))
    f:write(conf)
    f:close()
    local user = sh("[ $(id -u) = 0 ]") and "user root;" or ""
    assert(sh(("P2PNET_ROOT='%s' P2PNET_PORT=%d P2PNET_IDENTITY='%s/node.key'"
        .. " P2PNET_CONNECT=127.0.0.1:%d P2PNET_MODE=%s P2PNET_INTERVAL=0.005"
        .. " nginx -p '%s' -e '%s/logs/error.log'"
        .. " -c '%s/nginx.conf' -g 'daemon off; worker_processes %d; %s'"
        .. " > %s/nginx.out 2>&1 & echo $! > %s/master.pid")
        :format(ROOT, uport, dir, pport, mode, dir, dir, dir, workers, user, dir, dir)))
    nginx_pid = tonumber(read(dir .. "/master.pid"))
    started(dir, peer_pid, nginx_pid)
    local up = wait_until(function()
        local body, code = http_get(base, "/info")
        return code == 200 and body:find('"id"', 1, true)
    end, 15)
    assert(up, "nginx did not answer: " .. tostring(read(dir .. "/nginx.out"))
        .. tostring(read(dir .. "/logs/error.log")))
    return dir, hport, pport, uport, nginx_pid, peer_pid, peer_id, base
end

describe("p2pnet.ngx in a real nginx #host", function()
    local dir, hport, pport, uport, nginx_pid, peer_pid, peer_id, base

    local function get(path, body)
        return http_get(base, path, body)
    end

    local function field(body, name)
        local s = body:match('"' .. name .. '":"([^"]*)"')
        if s then
            return s
        end
        return tonumber(body:match('"' .. name .. '":([%d.eE+-]+)'))
    end

    local function error_log()
        return read(dir .. "/logs/error.log") or ""
    end

    lazy_setup(function()
        if not have_nginx then
            return
        end
        dir, hport, pport, uport, nginx_pid, peer_pid, peer_id, base =
            launch(2, "waker", function(d, pp, np)
                dir, peer_pid, nginx_pid = d, pp, np
            end)
    end)

    lazy_teardown(function()
        kill_pid(nginx_pid)
        kill_pid(peer_pid)
        if dir then
            sh("rm -rf '" .. dir .. "'")
        end
    end)

    -- Requests on fresh connections until each worker has answered `want` of them.
    local function per_worker(path, body, want, check)
        local seen, times = { [0] = 0, [1] = 0 }, { [0] = {}, [1] = {} }
        for _ = 1, 400 do
            local t0 = socket.gettime()
            local res, code = get(path, body)
            local ms = (socket.gettime() - t0) * 1000
            assert.equal(200, code, res)
            if check then
                check(res)
            end
            local w = field(res, "worker")
            assert.is_number(w, res)
            seen[w] = seen[w] + 1
            table.insert(times[w], ms)
            if seen[0] >= want and seen[1] >= want then
                return times
            end
        end
        error("requests did not reach both workers: " .. seen[0] .. " and " .. seen[1])
    end

    it("serves /info from both workers, one node held by worker 0", function()
        if not need_nginx() then return end
        per_worker("/info", nil, 3, function(res)
            assert.equal(0, field(res, "owner"))
            assert.equal("127.0.0.1:" .. uport, field(res, "address"))
            assert.equal("waker", field(res, "mode"))
        end)
    end)

    it("connects to the peer and /send waits for its receipt, from either worker", function()
        if not need_nginx() then return end
        local res, code = get("/connect?target=127.0.0.1:" .. pport)
        assert.equal(200, code, res)
        assert.equal(peer_id, field(res, "id"))
        local times = per_worker("/send?type=1&to=" .. peer_id, "hello", 20, function(r)
            assert.equal("echo:hello", field(r, "reply"))
        end)
        local m0, m1 = median(times[0]), median(times[1])
        print(("\n  /send waiting on a receipt, median over HTTP (new connection each):"
            .. " worker 0 (holds the node) %.2f ms, worker 1 (through the dict) %.2f ms")
            :format(m0, m1))
        assert.is_true(m0 < 100 and m1 < 100) -- loose: the machine is shared
    end)

    it("lists the peer at /peers and serves Prometheus text at /metrics", function()
        if not need_nginx() then return end
        local res, code = get("/peers")
        assert.equal(200, code)
        assert.truthy(res:find(peer_id, 1, true))
        assert.truthy(res:find('"state":"connected"', 1, true))
        res, code = get("/metrics")
        assert.equal(200, code)
        assert.truthy(res:find("# TYPE p2pnet_received_packets_total counter", 1, true), res)
        local n = tonumber(res:match('\np2pnet_received_packets_total{worker="0"} (%d+)'))
        assert.is_true(n and n > 0, res)
        -- the peer's own figures, labelled with its id
        assert.truthy(res:find('peer="' .. peer_id:sub(1, 16) .. '"', 1, true), res)
    end)

    it("pushes the peer's messages to long-poll and SSE clients, and to /receive", function()
        if not need_nginx() then return end
        local res, code = get("/send?type=9&to=" .. peer_id, "push 3")
        assert.equal(200, code, res)
        assert.equal("pushing 3", field(res, "reply"))
        -- long-poll: from the start of the log, waiting for the messages if need be
        local got = wait_until(function()
            local body = get("/poll?since=0&timeout=5")
            return body:find("pushed 3", 1, true) and body
        end, 10)
        assert.truthy(got)
        assert.truthy(got:find("pushed 1", 1, true) and got:find('"type":2', 1, true))
        -- server-sent events: a raw client reading the stream
        local c = assert(socket.connect("127.0.0.1", hport))
        c:settimeout(10)
        assert(c:send("GET /events?since=0 HTTP/1.1\r\nHost: x\r\n\r\n"))
        local datas = {}
        while #datas < 3 do
            local line = assert(c:receive("*l"))
            if line:find("^data: ") then
                datas[#datas + 1] = line
            end
        end
        c:close()
        assert.truthy(datas[3]:find("pushed 3", 1, true))
        -- /receive: one queued message of type 2 per call
        res, code = get("/receive?type=2&timeout=5")
        assert.equal(200, code, res)
        assert.equal("pushed 1", field(res, "data"))
        assert.equal(peer_id, field(res, "from"))
        -- messages that arrive later wake a waiting long-poll
        local t0 = socket.gettime()
        res = get("/send?type=9&to=" .. peer_id, "push 1")
        local last = tonumber(get("/poll?since=0&timeout=0"):match('"last":(%d+)'))
        assert.truthy(res:find("pushing 1", 1, true))
        assert.is_number(last)
        assert.is_true(socket.gettime() - t0 < 5)
    end)

    it("broadcasts", function()
        if not need_nginx() then return end
        local res, code = get("/broadcast?type=5", "to everyone")
        assert.equal(200, code, res)
        assert.is_string(field(res, "id"))
    end)

    it("refuses node:spawn inside nginx with an error naming p2pnet.ngx", function()
        if not need_nginx() then return end
        local res = wait_until(function()
            local body = get("/spawn")
            return body:find('"owner":true', 1, true) and body
        end, 10)
        assert.truthy(res)
        assert.truthy(res:find('"ok":false', 1, true))
        assert.truthy(res:find("node:spawn: not available inside nginx", 1, true), res)
    end)

    it("keeps working across a reload (SIGHUP): the old worker leaves, the new one binds",
       function()
        if not need_nginx() then return end
        local before = get("/info")
        local old_id = field(before, "id")
        local old_pids = {}
        for pid in io.popen("pgrep -P " .. nginx_pid):lines() do
            old_pids[#old_pids + 1] = tonumber(pid)
        end
        assert.equal(2, #old_pids)
        local t0 = socket.gettime()
        assert(sh("kill -HUP " .. nginx_pid))
        -- the old workers exit
        assert.truthy(wait_until(function()
            for _, pid in ipairs(old_pids) do
                if pid_alive(pid) then return false end
            end
            return true
        end, 15), "the old workers did not exit")
        -- the new owner holds the same identity and port, and reaches the peer again
        local res
        local ok = wait_until(function()
            local body, code = get("/send?type=1&to=" .. peer_id, "after reload")
            if code == 200 and body:find("echo:after reload", 1, true) then
                res = body
                return true
            end
            get("/connect?target=127.0.0.1:" .. pport .. "&timeout=2")
        end, 20)
        assert.truthy(ok, "no receipt after the reload: " .. tostring(res) .. error_log())
        print(("\n  reload: first receipt %.0f ms after SIGHUP"):format(
            (socket.gettime() - t0) * 1000))
        local after = get("/info")
        assert.equal(old_id, field(after, "id"))
        assert.equal("127.0.0.1:" .. uport, field(after, "address"))
        -- the old node closed gracefully: the peer saw it leave with "closed"
        assert.truthy((read(dir .. "/peer.err") or ""):find("leave " .. old_id .. " closed", 1,
                                                               true))
        per_worker("/send?type=1&to=" .. peer_id, "x", 3)
    end)

    it("has no crashed worker and no Lua error in the error log", function()
        if not need_nginx() then return end
        local log = error_log()
        assert.falsy(log:find("exited on signal", 1, true), log)
        assert.falsy(log:find("SIGSEGV", 1, true), log)
        assert.falsy(log:find("[alert]", 1, true), log)
        assert.falsy(log:find("p2pnet.ngx: ", 1, true), log)
        assert.falsy(log:find("lua entry thread aborted", 1, true), log)
        assert.truthy(pid_alive(nginx_pid))
    end)
end)

-- The default driver is the wake-up line; the timer is its fallback. One worker, timer mode.
describe("p2pnet.ngx with one worker driven by a timer #host", function()
    local dir, nginx_pid, peer_pid, peer_id, base, pport

    lazy_setup(function()
        if not have_nginx then
            return
        end
        local _
        dir, _, pport, _, nginx_pid, peer_pid, peer_id, base =
            launch(1, "timer", function(d, pp, np)
                dir, peer_pid, nginx_pid = d, pp, np
            end)
    end)

    lazy_teardown(function()
        kill_pid(nginx_pid)
        kill_pid(peer_pid)
        if dir then
            sh("rm -rf '" .. dir .. "'")
        end
    end)

    it("connects, sends with receipts and receives", function()
        if not need_nginx() then return end
        local res, code = http_get(base, "/info")
        assert.equal(200, code)
        assert.truthy(res:find('"mode":"timer"', 1, true), res)
        assert.truthy(res:find('"worker":0', 1, true), res)
        res, code = http_get(base, "/connect?target=127.0.0.1:" .. pport)
        assert.equal(200, code, res)
        local times = {}
        for i = 1, 20 do
            local t0 = socket.gettime()
            res, code = http_get(base, "/send?type=1&to=" .. peer_id, "m" .. i)
            times[i] = (socket.gettime() - t0) * 1000
            assert.equal(200, code, res)
            assert.truthy(res:find('"reply":"echo:m' .. i .. '"', 1, true), res)
        end
        print(("\n  timer mode (5 ms), one worker: /send median %.2f ms"):format(median(times)))
        res = http_get(base, "/send?type=9&to=" .. peer_id, "push 2")
        assert.truthy(res:find("pushing 2", 1, true), res)
        res, code = http_get(base, "/receive?type=2&timeout=5")
        assert.equal(200, code, res)
        assert.truthy(res:find('"data":"pushed 1"', 1, true), res)
        local log = read(dir .. "/logs/error.log") or ""
        assert.falsy(log:find("exited on signal", 1, true), log)
        assert.falsy(log:find("p2pnet.ngx: ", 1, true), log)
    end)
end)

-- The wake-up line on its own, under the Lua running busted (and its ASan build): a client
-- stream stands in for nginx's cosocket.
describe("core.waker, the wake-up line of p2pnet.ngx", function()
    local p2pnet = require "p2pnet"
    local core = require "p2pnet.core"
    local unix = require "socket.unix"
    local dir

    before_each(function()
        local p = io.popen("mktemp -d /tmp/p2pnet-waker-spec.XXXXXX")
        dir = p:read("*l")
        p:close()
    end)

    after_each(function()
        sh("rm -rf '" .. dir .. "'")
    end)

    local function line(w)
        local c = unix.stream()
        assert(c:connect(dir .. "/w.wake"))
        c:settimeout(2)
        return c, w
    end

    it("answers each wait: at once on a kick or a datagram for the node, else at its deadline",
       function()
        local a = assert(p2pnet.node { host = "127.0.0.1" })
        local b = assert(p2pnet.node { host = "127.0.0.1" })
        local w = assert(core.waker(dir .. "/w.wake", dir .. "/w.kick", a:fd()))
        local c = line(w)
        -- no wait asked yet: a kick stays pending, silently
        assert.is_true(core.kick(dir .. "/w.kick"))
        c:settimeout(0.2)
        local got, err = c:receive(1)
        assert.is_nil(got)
        assert.equal("timeout", err)
        c:settimeout(2)
        -- the pending kick answers the first wait at once
        assert(c:send("60000\n"))
        assert.equal("!", c:receive(1))
        -- one answer per wait: nothing more until the next line
        assert.is_true(core.kick(dir .. "/w.kick"))
        c:settimeout(0.2)
        assert.is_nil((c:receive(1)))
        c:settimeout(2)
        assert(c:send("600"))
        assert(c:send("00\n")) -- a line may come in pieces
        assert.equal("!", c:receive(1))
        -- a kick while waiting
        assert(c:send("60000\n"))
        socket.sleep(0.05)
        local t0 = socket.gettime()
        assert.is_true(core.kick(dir .. "/w.kick"))
        assert.equal("!", c:receive(1))
        local kick_ms = (socket.gettime() - t0) * 1000
        -- the deadline
        t0 = socket.gettime()
        assert(c:send("50\n"))
        assert.equal("t", c:receive(1))
        local dl_ms = (socket.gettime() - t0) * 1000
        assert.is_true(dl_ms >= 45 and dl_ms < 2000, tostring(dl_ms))
        -- a datagram for the node
        assert(c:send("60000\n"))
        socket.sleep(0.05)
        t0 = socket.gettime()
        b:connect(a:address())
        assert.equal("!", c:receive(1))
        local udp_ms = (socket.gettime() - t0) * 1000
        assert.is_true(a:poll(0) >= 0)
        print(("\n  waker: kick to wake %.3f ms, datagram to wake %.3f ms, 50 ms deadline %.1f ms")
            :format(kick_ms, udp_ms, dl_ms))
        w:close()
        w:close() -- idempotent
        c:close()
        assert.is_nil(io.open(dir .. "/w.wake"))
        assert.is_nil(io.open(dir .. "/w.kick"))
        local ok, kerr = core.kick(dir .. "/w.kick")
        assert.is_nil(ok)
        assert.is_string(kerr)
        a:close()
        b:close()
    end)

    it("serves a new client after the old one went away, and works without a node", function()
        local w = assert(core.waker(dir .. "/w.wake", dir .. "/w.kick"))
        local c = line(w)
        c:close()
        c = line(w)
        assert(c:send("60000\n"))
        assert.is_true(core.kick(dir .. "/w.kick"))
        assert.equal("!", c:receive(1))
        c:close()
        w = nil -- luacheck: ignore 311
        collectgarbage()
        collectgarbage() -- __gc stops the thread and removes the paths
        assert.is_nil(io.open(dir .. "/w.wake"))
    end)

    it("reports runtime failures and raises on misuse", function()
        local w, err = core.waker(dir .. "/missing/w.wake", dir .. "/w.kick")
        assert.is_nil(w)
        assert.truthy(err:find("missing", 1, true))
        w, err = core.waker(dir .. "/" .. ("x"):rep(200), dir .. "/w.kick")
        assert.is_nil(w)
        assert.truthy(err:find("too long", 1, true))
        local ok, e = pcall(core.waker, nil, "x")
        assert.is_false(ok)
        assert.truthy(e:find("core.waker", 1, true) and e:find("listen_path", 1, true))
        ok, e = pcall(core.waker, "a", "b", "fd")
        assert.is_false(ok)
        assert.truthy(e:find("'fd'", 1, true))
        ok, e = pcall(core.kick, 42)
        assert.is_false(ok)
        assert.truthy(e:find("core.kick", 1, true))
    end)

    it("makes node:spawn and node:run refuse when the host is nginx", function()
        local node = assert(p2pnet.node { host = "127.0.0.1" })
        _G.ngx = { get_phase = function() return "content" end }
        local ok1, e1 = pcall(node.spawn, node, function() end)
        local ok2, e2 = pcall(node.run, node, 0)
        _G.ngx = nil
        node:close()
        assert.is_false(ok1)
        assert.truthy(e1:find("node:spawn: not available inside nginx", 1, true))
        assert.truthy(e1:find("p2pnet.ngx", 1, true))
        assert.is_false(ok2)
        assert.truthy(e2:find("node:run: not available inside nginx", 1, true))
    end)
end)

-- The parts of p2pnet.ngx that need no nginx.
describe("p2pnet.ngx outside nginx", function()
    local pn = require "p2pnet.ngx"

    it("carries values between workers unchanged (the shared dict encoding)", function()
        local bin = {}
        for i = 0, 255 do
            bin[#bin + 1] = string.char(i)
        end
        bin = table.concat(bin) .. "s3:abc:" .. ("\0"):rep(10)
        local t = { id = "x", list = { 1, 2.5, "three" }, flag = false, [7] = true }
        local rec = pn._encode("send", 42, nil, bin, t, -1e300, true, "")
        local v = pn._decode(rec)
        assert.equal(8, v.n)
        assert.equal("send", v[1])
        assert.equal(42, v[2])
        assert.is_nil(v[3])
        assert.equal(bin, v[4])
        assert.same(t, v[5])
        assert.equal(-1e300, v[6])
        assert.is_true(v[7])
        assert.equal("", v[8])
        assert.equal(0, pn._decode("").n)
    end)

    it("refuses to start outside nginx, and its calls refuse before start", function()
        local ok, err = pcall(pn.start, { shared = "p2pnet" })
        assert.is_false(ok)
        assert.truthy(err:find("p2pnet.ngx.start: not running inside nginx", 1, true))
        ok, err = pcall(pn.send_await, 42, 1, "x")
        assert.is_false(ok)
        assert.truthy(err:find("p2pnet.ngx.send_await: argument 'id'", 1, true))
        ok, err = pcall(pn.broadcast, 70000, "x")
        assert.is_false(ok)
        assert.truthy(err:find("argument 'type'", 1, true))
        assert.is_nil(pn.node())
        assert.is_false(pn.is_owner())
    end)
end)
