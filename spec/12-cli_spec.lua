-- bin/p2pnet, the command line, as a user runs it: keygen and id on key files, usage errors,
-- and a mediator process that a node on 127.0.0.1 registers with. Then the same command
-- installed by luarocks into a private tree (#luarocks: left out of the sanitizer run, like
-- spec/90-luarocks_spec.lua).
local p2pnet = require "p2pnet"
local S = require "spec.support"
local Procs = require "spec.procs"

local q = S.q

-- Runs `cmd` through the shell; returns the exit status, stdout and stderr.
local function run(cmd)
    local errfile = os.tmpname()
    local f = assert(io.popen(("%s 2>%s; echo \"==exit $?\""):format(cmd, q(errfile))))
    local out = f:read("a")
    f:close()
    local err = S.read(errfile)
    os.remove(errfile)
    local code = math.tointeger(tonumber(out:match("==exit (%d+)%s*$")))
    return code, (out:gsub("==exit %d+%s*$", "")), err
end

local function exists(path)
    local f = io.open(path, "rb")
    if f then f:close() end
    return f ~= nil
end

local HEX64 = "^" .. ("%x"):rep(64) .. "\n$"

-- Starts a mediator in the background with `args`, its output in `outfile`; returns its pid
-- and a function that waits for a pattern in its output and returns the captures. The
-- command execs into the mediator, so the pid is the mediator's.
local function start_mediator(P, args, outfile)
    local pipe = assert(io.popen(("%s > %s 2>&1 & echo $!"):format(P("mediator " .. args),
                                                                  q(outfile))))
    local pid = math.tointeger(tonumber(pipe:read("l")))
    pipe:close()
    assert.is_number(pid)
    local function screen() return exists(outfile) and S.read(outfile) or "" end
    local function wait_for(pattern)
        local deadline = S.now() + 10
        while S.now() < deadline do
            local caps = { screen():match(pattern) }
            if #caps > 0 then return table.unpack(caps) end
            os.execute("sleep 0.05")
        end
        error(("the mediator never printed %q; it printed:\n%s"):format(pattern, screen()), 2)
    end
    return pid, wait_for, screen
end

local LISTENING = "^p2pnet mediator (%x+) listening on (127%.0%.0%.1:%d+)\n"

-- The command-line checks, for a `p2pnet` command: cmd() returns a function that makes the
-- shell command running `p2pnet ARGS` from a string of ARGS.
local function cli_checks(cmd)
    local dir, P

    before_each(function()
        dir = S.tmpdir()
        P = cmd()
    end)
    after_each(function() S.rmdir(dir) end)

    it("keygen creates a 0600 key file and prints its id; id prints the same", function()
        local path = dir .. "/node.key"
        local code, out, err = run(P("keygen " .. q(path)))
        assert.equal(0, code, err)
        assert.matches(HEX64, out)
        assert.equal("600", S.mode(path))
        local code2, out2, err2 = run(P("id " .. q(path)))
        assert.equal(0, code2, err2)
        assert.equal(out, out2)
        assert.equal(out:sub(1, 64), p2pnet.identity(path).id)
    end)

    it("keygen refuses an existing file and leaves it as it was", function()
        local path = dir .. "/node.key"
        assert.equal(0, (run(P("keygen " .. q(path)))))
        local before = S.read(path)
        local code, out, err = run(P("keygen " .. q(path)))
        assert.equal(1, code)
        assert.equal("", out)
        assert.matches("already exists", err, 1, true)
        assert.equal(before, S.read(path))
    end)

    it("id fails on a missing file without creating it, and on a malformed one", function()
        local path = dir .. "/missing.key"
        local code, out, err = run(P("id " .. q(path)))
        assert.equal(1, code)
        assert.equal("", out)
        assert.matches("no such key file", err, 1, true)
        assert.is_false(exists(path))
        local bad = dir .. "/bad.key"
        S.write(bad, "not a key\n", "600")
        code, out, err = run(P("id " .. q(bad)))
        assert.equal(1, code)
        assert.equal("", out)
        assert.matches("malformed", err, 1, true)
    end)

    it("prints help and the version, and rejects bad usage with status 2", function()
        local code, out = run(P("--help"))
        assert.equal(0, code)
        assert.matches("usage: p2pnet", out, 1, true)
        assert.matches("mediator", out, 1, true)
        local hcode, hout = run(P("help"))
        assert.equal(0, hcode)
        assert.equal(out, hout)
        code, out = run(P("--version"))
        assert.equal(0, code)
        assert.equal("p2pnet " .. p2pnet.version .. "\n", out)
        for _, bad in ipairs { "", "frobnicate", "keygen", "id a b", "mediator --port nope",
                               "mediator --port 70000", "mediator --bogus",
                               "mediator --port", "mediator --no-relay=1",
                               "mediator --tcp-port 70000", "mediator --tcp-port x",
                               "mediator --ws-path p2pnet", "mediator --ws-path '/a b'",
                               "mediator --port 0 --ws-path /p2pnet", "mediator --stun-port 0",
                               "mediator --discover wan", "mediator --discover",
                               "mediator --no-portmap=1" } do
            local c, o, e = run(P(bad))
            assert.equal(2, c, "p2pnet " .. bad)
            assert.equal("", o, "p2pnet " .. bad)
            assert.is_true(#e > 0, "p2pnet " .. bad .. ": nothing on stderr")
        end
    end)

    it("runs a mediator that a node registers with, printing joins and leaves", function()
        local keyfile = dir .. "/med.key"
        local pid, wait_for, screen = start_mediator(P, "--host 127.0.0.1 --port 0 --key "
                                                     .. q(keyfile), dir .. "/med.out")
        finally(function() os.execute("kill -9 " .. pid .. " 2>/dev/null") end)
        local id, addr = wait_for(LISTENING)
        assert.equal(p2pnet.identity(keyfile).id, id)
        assert.equal("600", S.mode(keyfile))

        local node = assert(p2pnet.node { host = "127.0.0.1" })
        local joined
        node:on("join", function(peer) joined = peer end)
        assert(node:connect(addr, { id = id }))
        assert.is_true(S.spin({ node }, function() return joined ~= nil end, 10),
                       "the node did not join the mediator; it printed:\n" .. screen())
        assert.equal(id, joined.id)
        wait_for("\njoin " .. node.id .. " 127%.0%.0%.1:%d+\n")
        node:close()
        wait_for("\nleave " .. node.id .. " closed\n")
    end)

    -- issue 12: the ways in besides UDP, each named under the first line of the banner
    it("runs a mediator with --tcp-port, --ws-path, --stun-port and --no-portmap", function()
        local tcp, stun = Procs.free_port("tcp"), Procs.free_port("udp")
        local pid, wait_for, screen = start_mediator(P, ("--host 127.0.0.1 --port 0 "
            .. "--tcp-port %d --ws-path /relay --stun-port %d --no-portmap"):format(tcp, stun),
            dir .. "/med-tcp.out")
        finally(function() os.execute("kill -9 " .. pid .. " 2>/dev/null") end)
        wait_for(LISTENING)
        wait_for("\n  tcp 127%.0%.0%.1:" .. tcp .. " %(framed, and WebSocket at /relay%)\n")
        wait_for("\n  stun 127%.0%.0%.1:" .. stun .. "\n")
        wait_for("\n  port mapping off\n")
        -- the TCP port is really listening (ss lists it), and the STUN port is bound
        local code, out = run("ss -Hltn 'sport = :" .. tcp .. "'")
        assert.equal(0, code)
        assert.matches("127%.0%.0%.1:" .. tcp, out, 1, false, screen())
        code, out = run("ss -Hlun 'sport = :" .. stun .. "'")
        assert.equal(0, code)
        assert.matches("127%.0%.0%.1:" .. stun, out, 1, false, screen())
    end)

    it("listens on TCP at its UDP port's number unless --tcp-port 0", function()
        local port = Procs.free_port("udp")
        local pid, wait_for, screen = start_mediator(P, "--host 127.0.0.1 --port " .. port
                                                     .. " --discover lan",
                                                     dir .. "/med-default.out")
        local ok, err = pcall(function()
            wait_for("^p2pnet mediator %x+ listening on 127%.0%.0%.1:" .. port .. "\n")
            wait_for("\n  tcp 127%.0%.0%.1:" .. port .. " %(framed, and WebSocket at /p2pnet%)\n")
            wait_for("\n  port mapping on\n")
            wait_for("\n  lan discovery on\n")
        end)
        os.execute("kill -9 " .. pid .. " 2>/dev/null")
        assert(ok, err)
        local pid2, wait2 = start_mediator(P, "--host 127.0.0.1 --port " .. Procs.free_port("udp")
                                           .. " --tcp-port 0", dir .. "/med-notcp.out")
        ok, err = pcall(wait2, "\n  port mapping on\n")
        os.execute("kill -9 " .. pid2 .. " 2>/dev/null")
        assert(ok, err)
        assert.is_nil(S.read(dir .. "/med-notcp.out"):match("\n  tcp "), screen())
    end)

    -- issue 12: a node whose UDP gets no answer tunnels to the mediator over TCP, by
    -- default to the same port number it was given, or over a WebSocket it names
    it("carries a node whose UDP gets no answer over TCP and over a WebSocket", function()
        local udp, tcp = Procs.free_port("udp"), Procs.free_port("tcp")
        local pid, wait_for, screen = start_mediator(P, ("--host 127.0.0.1 --port %d "
            .. "--tcp-port %d"):format(udp, tcp), dir .. "/med-fallback.out")
        finally(function() os.execute("kill -9 " .. pid .. " 2>/dev/null") end)
        local id = wait_for(LISTENING)
        wait_for("\n  tcp 127%.0%.0%.1:" .. tcp .. " ")
        for _, case in ipairs {
            { path = "tcp", url = "tcp://127.0.0.1:" .. tcp },   -- the default: same port
            { path = "websocket", url = ("ws://127.0.0.1:%d/p2pnet"):format(tcp),
              opts = { fallback = { ("ws://127.0.0.1:%d/p2pnet"):format(tcp) } } },
        } do
            local opts = { host = "127.0.0.1", portmap = false }
            for k, v in pairs(case.opts or {}) do opts[k] = v end
            local node = assert(p2pnet.node(opts))
            -- nothing listens on UDP at the TCP port's number: UDP gets no answer
            local peer = assert(node:connect("127.0.0.1:" .. tcp))
            assert.is_true(S.spin({ node }, function() return peer.state == "connected" end,
                                  15), case.path .. ": no session; the mediator printed:\n"
                                       .. screen())
            assert.equal(id, peer.id)
            assert.equal(case.path, peer.path)
            local nat = node:nat()
            assert.equal("blocked", nat.udp)
            assert.equal(case.url, nat.stream)
            assert.is_true(node:stats().stream_up >= 1)
            local reply
            assert(peer:send(1, "ping", function(ok, r) reply = ok and (r or "nil") end))
            assert.is_true(S.spin({ node }, function() return reply ~= nil end, 5))
            node:close()
        end
    end)

    it("runs a mediator with relay limits, or with relaying off", function()
        for i, args in ipairs { "--relay-sessions 8 --relay-rate 100000", "--no-relay" } do
            local pid, wait_for = start_mediator(P, "--host 127.0.0.1 --port 0 " .. args,
                                                 dir .. "/med" .. i .. ".out")
            local ok, err = pcall(wait_for, LISTENING)
            os.execute("kill -9 " .. pid .. " 2>/dev/null")
            assert(ok, err)
        end
    end)
end

describe("bin/p2pnet from the source tree", function()
    cli_checks(function()
        return function(args) return "(exec lua5.4 bin/p2pnet " .. args .. ")" end
    end)
end)

describe("bin/p2pnet installed by luarocks #luarocks", function()
    local root = assert(io.popen("pwd")):read("l")
    local work, tree

    lazy_setup(function()
        work = S.tmpdir()
        tree = work .. "/tree"
        -- Build from a copy, so luarocks' objects never land in the working tree; a proxy
        -- on a closed local port makes any attempt to fetch fail at once.
        -- (docs/ and examples/ too: the rockspec installs them)
        local code, out, err = run(("mkdir -p %s/src %s/empty && "
            .. "cp -R %s %s %s %s %s %s %s/src/ && cd %s/src && "
            .. "http_proxy=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9 "
            .. "luarocks --lua-version=5.4 make --deps-mode=none --tree %s "
            .. "rockspec/p2pnet-scm-1.rockspec"):format(q(work), q(work),
            q(root .. "/csrc"), q(root .. "/lua"), q(root .. "/bin"), q(root .. "/rockspec"),
            q(root .. "/docs"), q(root .. "/examples"), q(work), q(work), q(tree)))
        assert(code == 0, "luarocks make failed:\n" .. out .. err)
        assert(exists(tree .. "/bin/p2pnet"), "luarocks installed no bin/p2pnet:\n" .. out)
    end)

    lazy_teardown(function() S.rmdir(work) end)

    -- Only the tree is on the module paths, and the command runs from an empty directory.
    cli_checks(function()
        return function(args)
            return ("(cd %s/empty && exec env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 -u LUA_INIT "
                .. "LUA_PATH=%s LUA_CPATH=%s %s/bin/p2pnet %s)"):format(q(work),
                q(("%s/share/lua/5.4/?.lua;%s/share/lua/5.4/?/init.lua"):format(tree, tree)),
                q(tree .. "/lib/lua/5.4/?.so"), q(tree), args)
        end
    end)
end)
