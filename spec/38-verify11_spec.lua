-- Independent checks of issue 11 (OpenResty, event loops), as a user and as an attacker would
-- use what landed. Each test failed before the fix it comes with.
-- The nginx part starts a real nginx (Debian nginx + libnginx-mod-http-lua) with its own prefix
-- on 127.0.0.1, with a configuration written here from docs/OPENRESTY.md, two workers and a
-- small shared dict, and a p2pnet peer in another process (lua5.4). Tagged #host.
local socket = require "socket"
local http = require "socket.http"
local P = require "spec.procs"
local sh, read, free_port, wait_until, kill_pid =
    P.sh, P.read, P.free_port, P.wait_until, P.kill_pid
local ROOT = P.root()

local function write(path, s)
    local f = assert(io.open(path, "wb"))
    f:write(s)
    f:close()
end

local function capture(cmd)
    local p = io.popen(cmd)
    local s = p:read("*a")
    p:close()
    return s
end

-- /info's answer when the node is there: its 64 hex digits
local ID = "id=" .. ("%x"):rep(64)

local have_nginx = sh("command -v nginx >/dev/null 2>&1")
    and read("/usr/lib/nginx/modules/ngx_http_lua_module.so") ~= nil

local CONF = [[
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
error_log logs/error.log info;
pid logs/nginx.pid;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path temp/body;
    lua_package_path  "@ROOT@/lua/?.lua;@ROOT@/lua/?/init.lua;;";
    lua_package_cpath "@ROOT@/build-luajit/?.so;;";
    lua_shared_dict p2pnet 1m;
@INIT@    init_worker_by_lua_block {
        local pn = require "p2pnet.ngx"
        assert(pn.start { shared = "p2pnet", host = "127.0.0.1", port = @UPORT@,
                          identity = "@DIR@/node.key", socket_dir = "@DIR@/run",
            on_start = function()
                local ok, err = pcall(pn.connect_await, "127.0.0.1:9", 1)
                ngx.log(ngx.ERR, "VERIFY on_start: ", tostring(ok), " ", tostring(err),
                        " peers: ", type(pn.peers()))
            end,
            on_message = function(peer, mtype)
                if mtype == 6 then -- waits inside the driver: must refuse, not half-send
                    local ok, err = pcall(pn.send_await, peer.id, 1, "from on_message", 1)
                    -- what completes at once still works here
                    return tostring(ok) .. " " .. tostring(err) .. " peers: " .. #pn.peers()
                        .. " broadcast: " .. type(pn.broadcast(3, "relay"))
                end
            end })
        local ok, err = pcall(pn.peers)
        ngx.log(ngx.ERR, "VERIFY init_worker: ", tostring(ok), " ", tostring(err))
    }
    exit_worker_by_lua_block { require("p2pnet.ngx").stop() }
    server {
        listen 127.0.0.1:@HPORT@ reuseport;
        location = /info { content_by_lua_block {
            local i, e = require("p2pnet.ngx").info()
            ngx.say("worker=", ngx.worker.id(), " id=", i and i.id or ("error:" .. tostring(e)))
        } }
        location = /connect { content_by_lua_block {
            ngx.say(tostring(require("p2pnet.ngx").connect_await(ngx.var.arg_t, 5)))
        } }
        location = /hf {
            content_by_lua_block { ngx.say("body") }
            header_filter_by_lua_block {
                local ok, err = pcall(require("p2pnet.ngx").send_await, ngx.var.arg_to, 1,
                                      "from header_filter", 2)
                ngx.header["X-Res"] = (tostring(ok) .. " " .. tostring(err)):gsub("%c", " ")
            } }
        location = /logp {
            content_by_lua_block { ngx.say("logp") }
            log_by_lua_block {
                local ok, err = pcall(require("p2pnet.ngx").send_await, ngx.var.arg_to, 1,
                                      "from log", 2)
                ngx.log(ngx.ERR, "VERIFY log: ", tostring(ok), " ", tostring(err))
            } }
        location = /setp {
            set_by_lua_block $x {
                local ok, err = pcall(require("p2pnet.ngx").peers)
                return tostring(ok) .. " " .. tostring(err)
            }
            content_by_lua_block { ngx.say(ngx.var.x) } }
    }
}
]]

-- For the second nginx: start() called where it does not belong, in init_by_lua (the master).
local BAD_INIT = [=[
    init_by_lua_block {
        local pn = require "p2pnet.ngx"
        local ok, err = pcall(pn.start, { shared = "p2pnet" })
        local f = io.open("@DIR@/init_by_lua.txt", "w")
        f:write(tostring(ok), " ", tostring(err), "\n")
        f:close()
    }
]=]

-- A peer that connects to nginx's node and sends `n` messages of `size` bytes (type 5).
local FLOOD = [[
local p2pnet = require "p2pnet"
local node = assert(p2pnet.node { host = "127.0.0.1", port = 0 })
local ok = 0
node:spawn(function()
    local peer = assert(node:connect_await(arg[1], nil, 5))
    for i = 1, tonumber(arg[2]) do
        if peer:send_await(5, ("x"):rep(tonumber(arg[3])) .. i, 10) then ok = ok + 1 end
    end
    node:close()
end)
node:run()
print("SENT " .. ok)
]]

-- A peer that sends one message of type 6 and prints the reply.
local ASK = [[
local p2pnet = require "p2pnet"
local node = assert(p2pnet.node { host = "127.0.0.1", port = 0 })
node:spawn(function()
    local peer = assert(node:connect_await(arg[1], nil, 5))
    print("REPLY", peer:send_await(6, "x", 10))
    node:close()
end)
node:run()
]]

describe("verify issue 11: p2pnet.ngx in a real nginx, misused and attacked #host", function()
    local dir, base, nginx_pid, uport
    local lua_env = ("LUA_PATH='%s/lua/?.lua;%s/lua/?/init.lua;;' LUA_CPATH='%s/build/?.so;;'")
        :format(ROOT, ROOT, ROOT)

    local function get(path)
        http.TIMEOUT = 15
        local body, code, headers = http.request("http://127.0.0.1" .. base .. path)
        return body or "", code, headers or {}
    end

    local function workers()
        local list = {}
        for pid in capture("pgrep -P " .. nginx_pid):gmatch("%d+") do
            list[#list + 1] = tonumber(pid)
        end
        return list
    end

    -- /info on fresh connections until both workers answered with the node's id, for at
    -- most `tries` requests and 12 s; returns their answers by worker id
    local function info_both(tries)
        local seen = {}
        local deadline = socket.gettime() + 12
        for _ = 1, tries or 200 do
            local body, code = get("/info")
            local w = tonumber(body:match("worker=(%d+)"))
            if code == 200 and w and body:find(ID) then
                seen[w] = body
            end
            if seen[0] and seen[1] or socket.gettime() > deadline then
                return seen
            end
        end
        return seen
    end

    local function error_log()
        return read(dir .. "/logs/error.log") or ""
    end

    -- Starts nginx (2 workers) with CONF in a new prefix; `init` goes in for @INIT@.
    local function launch(init)
        assert(sh("cd '" .. ROOT .. "' && make -s module >/dev/null"
            .. " && make -s BUILD=build-luajit LUA_PC=luajit module >/dev/null"))
        dir = capture("mktemp -d /tmp/p2pnet-verify11.XXXXXX"):gsub("%s+$", "")
        assert(sh("mkdir -p " .. dir .. "/logs " .. dir .. "/temp " .. dir .. "/run"))
        local hport = free_port("tcp")
        uport = free_port("udp")
        base = ":" .. hport
        local conf = CONF:gsub("@INIT@", init):gsub("@ROOT@", ROOT):gsub("@DIR@", dir)
            :gsub("@HPORT@", hport):gsub("@UPORT@", uport)
        write(dir .. "/nginx.conf", conf)
        write(dir .. "/flood.lua", FLOOD)
        write(dir .. "/ask.lua", ASK)
        local user = sh("[ $(id -u) = 0 ]") and "user root;" or ""
        assert(sh(("nginx -p '%s' -e '%s/logs/error.log' -c '%s/nginx.conf'"
            .. " -g 'daemon off; worker_processes 2; %s' > %s/nginx.out 2>&1 &"
            .. " echo $! > %s/master.pid"):format(dir, dir, dir, user, dir, dir)))
        nginx_pid = tonumber(read(dir .. "/master.pid"))
        wait_until(function() return get("/info"):find(ID) end, 15)
    end

    local function stop()
        kill_pid(nginx_pid)
        nginx_pid = nil
        if dir then
            sh("rm -rf '" .. dir .. "'")
            dir = nil
        end
    end

    lazy_setup(function()
        if have_nginx then
            launch("")
        end
    end)

    lazy_teardown(stop)

    it("waiting calls raise in phases that cannot wait, naming the function and the phase",
       function()
        if not have_nginx then return pending("no nginx with the Lua module") end
        local id = get("/info"):match("id=(%x+)")
        for _ = 1, 4 do
            local _, code, headers = get("/hf?to=" .. id)
            assert.equal(200, code)
            assert.matches("^false .*p2pnet%.ngx%.send_await: cannot wait in the "
                .. "header_filter phase", headers["x-res"])
            local body = get("/setp")
            assert.matches("^false .*p2pnet%.ngx%.peers: cannot wait in the set phase", body)
            get("/logp?to=" .. id)
        end
        assert.truthy(wait_until(function()
            return error_log():find("VERIFY log: false [^\n]*p2pnet%.ngx%.send_await: cannot "
                                    .. "wait in the log phase")
        end, 5), error_log())
        assert.matches("VERIFY init_worker: false [^\n]*p2pnet%.ngx%.peers: cannot wait in the "
                       .. "init_worker phase", error_log())
    end)

    it("waiting calls inside on_start and on_message raise instead of waiting on the driver",
       function()
        if not have_nginx then return pending("no nginx with the Lua module") end
        local out = capture(("cd %s && %s timeout 30 lua5.4 ask.lua 127.0.0.1:%d 2>&1")
            :format(dir, lua_env, uport))
        assert.matches("REPLY\ttrue\tfalse [^\n]*p2pnet%.ngx%.send_await: cannot wait inside a "
                       .. "p2pnet callback[^\n]* peers: 1 broadcast: string", out)
        assert.matches("VERIFY on_start: false [^\n]*p2pnet%.ngx%.connect_await: cannot wait "
                       .. "inside a p2pnet callback[^\n]* peers: table", error_log())
    end)

    it("a full shared dict does not cut the other workers off the node", function()
        if not have_nginx then return pending("no nginx with the Lua module") end
        -- 40 messages of 200 kB into a 1 MB dict: the log evicts everything else
        local out = capture(("cd %s && %s timeout 60 lua5.4 flood.lua 127.0.0.1:%d 40 200000"
            .. " 2>&1"):format(dir, lua_env, uport))
        assert.matches("SENT 40", out)
        local t0 = socket.gettime()
        local seen = info_both()
        assert.matches(ID, seen[0] or "none")
        assert.matches(ID, seen[1] or "none") -- before: "node not ready", 5 s each
        assert.is_true(socket.gettime() - t0 < 5)
        -- 3000 small messages nobody takes: the inbox and the log fill the dict, and the
        -- owner's results to the other worker found no room (its calls hung for 30 s)
        out = capture(("cd %s && %s timeout 60 lua5.4 flood.lua 127.0.0.1:%d 3000 600"
            .. " 2>&1"):format(dir, lua_env, uport))
        assert.matches("SENT 3000", out)
        for _ = 1, 10 do
            t0 = socket.gettime()
            http.TIMEOUT = 3
            local body = http.request("http://127.0.0.1" .. base .. "/info")
            assert.matches(ID, body or "timed out")
            assert.is_true(socket.gettime() - t0 < 2)
        end
        -- a message larger than the dict's room for messages is left out, and said so
        capture(("cd %s && %s timeout 60 lua5.4 flood.lua 127.0.0.1:%d 1 1000000 2>&1")
            :format(dir, lua_env, uport))
        assert.truthy(wait_until(function()
            return error_log():find("shared dict full: 1 message", 1, true)
        end, 5))
        assert.matches(ID, (get("/info")))
    end)

    it("removes the socket files of a killed worker once its successor runs", function()
        if not have_nginx then return pending("no nginx with the Lua module") end
        local before = workers()
        assert.equal(2, #before)
        local victim = before[1]
        assert.truthy(read(dir .. "/run/p2pnet-" .. victim .. ".kick") ~= nil
                      or sh("test -S " .. dir .. "/run/p2pnet-" .. victim .. ".kick"))
        assert(sh("kill -9 " .. victim))
        assert.truthy(wait_until(function()
            local now = workers()
            return #now == 2 and now[1] ~= victim and now[2] ~= victim
        end, 10))
        assert.truthy(wait_until(function()
            local seen = info_both(20)
            return seen[0] and seen[1]
        end, 15), error_log())
        assert.truthy(wait_until(function()
            return not sh("test -e " .. dir .. "/run/p2pnet-" .. victim .. ".kick")
                and not sh("test -e " .. dir .. "/run/p2pnet-" .. victim .. ".wake")
        end, 5), capture("ls " .. dir .. "/run"))
    end)

    it("survives 15 quick reloads: no thread, descriptor or socket file left, no crash",
       function()
        if not have_nginx then return pending("no nginx with the Lua module") end
        local function counts()
            local t = {}
            for _, pid in ipairs(workers()) do
                t[#t + 1] = capture("ls /proc/" .. pid .. "/task | wc -l"):gsub("%s", "")
                    .. "/" .. capture("ls /proc/" .. pid .. "/fd | wc -l"):gsub("%s", "")
            end
            table.sort(t)
            return table.concat(t, " ")
        end
        local before = counts()
        for _ = 1, 15 do
            assert(sh("kill -HUP " .. nginx_pid))
            socket.sleep(0.1)
        end
        -- the old workers go; two new ones hold a node again
        assert.truthy(wait_until(function()
            local now = workers()
            local seen = #now == 2 and info_both(20)
            return seen and seen[0] and seen[1]
        end, 30), error_log())
        assert.truthy(wait_until(function() return counts() == before end, 10),
                      before .. " vs " .. counts())
        local files = capture("ls " .. dir .. "/run"):gsub("%s+$", "")
        local n = select(2, files:gsub("%S+", ""))
        assert.equal(4, n, files) -- two per worker
        local log = error_log()
        -- the worker killed above exited on signal 9; no other may exit on a signal
        assert.falsy(log:gsub("exited on signal 9", ""):find("exited on signal", 1, true), log)
        assert.falsy(log:gsub("[^\n]*exited on signal 9[^\n]*", ""):find("[alert]", 1, true),
                     log)
        assert.falsy(log:find("lua entry thread aborted", 1, true), log)
    end)
    it("start() outside init_worker raises naming the phase, and the workers still start",
       function()
        if not have_nginx then return pending("no nginx with the Lua module") end
        stop()
        launch(BAD_INIT)
        local said = read(dir .. "/init_by_lua.txt") or ""
        assert.matches("^false .*p2pnet%.ngx%.start: must be called in init_worker_by_lua",
                       said)
        local seen = info_both()
        assert.matches(ID, seen[0] or "none", nil, false, error_log())
        assert.matches(ID, seen[1] or "none", nil, false, error_log())
    end)
end)

describe("verify issue 11: adapters and p2pnet.ngx outside nginx, misuse", function()
    it("p2pnet.luv.attach twice raises naming the function and the argument", function()
        -- in a child lua5.4: luv opened again in another spec file's insulated environment
        -- shares libuv's default loop with the first one, and busted's process can crash
        if not pcall(require, "luv") then return pending("no luv") end
        local script = [=[
            local p2pnet = require "p2pnet"
            local pluv = require "p2pnet.luv"
            local node = assert(p2pnet.node { host = "127.0.0.1", port = 0 })
            local d = pluv.attach(node)
            local ok, err = pcall(pluv.attach, node)
            print("TWICE", ok, err)
            d:stop() -- once stopped, it may be attached again
            local d2 = pluv.attach(node)
            d2:close()
            require("luv").run()
            print("CLOSED", node.closed)
        ]=]
        local path = os.tmpname()
        write(path, script)
        local out = capture(("LUA_PATH='%s/lua/?.lua;%s/lua/?/init.lua;;'"
            .. " LUA_CPATH='%s/build/?.so;;' lua5.4 %s 2>&1"):format(ROOT, ROOT, ROOT, path))
        os.remove(path)
        assert.matches("TWICE\tfalse\t[^\n]*p2pnet%.luv%.attach: argument 'node' is attached "
                       .. "already", out)
        assert.matches("CLOSED\ttrue", out)
    end)

    it("p2pnet.socket.step raises naming the argument when given a node, not a wrapper",
       function()
        local p2pnet = require "p2pnet"
        local psocket = require "p2pnet.socket"
        local node = assert(p2pnet.node { host = "127.0.0.1", port = 0 })
        local ok, err = pcall(psocket.step, { node }, 0)
        assert.is_false(ok)
        assert.matches("p2pnet%.socket%.step: argument 'wrappers' must hold wrap%(node%) results",
                       err)
        ok, err = pcall(psocket.loop, { psocket.wrap(node), 5 })
        assert.is_false(ok)
        assert.matches("p2pnet%.socket%.step: argument 'wrappers'", err)
        node:close()
    end)

    it("p2pnet.ngx.messages checks its 'max' argument", function()
        local pn = require "p2pnet.ngx"
        for _, bad in ipairs { "10", 0, 1.5, -3, {} } do
            local ok, err = pcall(pn.messages, nil, 0, bad)
            assert.is_false(ok)
            assert.matches("p2pnet%.ngx%.messages: argument 'max' must be an integer >= 1", err)
        end
    end)

    it("node:metrics refuses a label value with a NUL byte (it cut the text short: {v=\"a} 0)",
       function()
        local p2pnet = require "p2pnet"
        local node = assert(p2pnet.node { host = "127.0.0.1", port = 0 })
        local ok, err = pcall(node.metrics, node, { labels = { v = "a\0b" } })
        assert.is_false(ok)
        assert.matches("node:metrics: argument 'opts.labels' value of 'v' must be UTF%-8 "
                       .. "without NUL bytes", err)
        local text = node:metrics { labels = { v = 'q"\\\n' } }
        assert.truthy(text:find('p2pnet_peers{v="q\\"\\\\\\n"} 0\n', 1, true))
        node:close()
    end)
end)
