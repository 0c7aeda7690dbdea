-- Issue 11, verified as a newcomer would use it (README.md, docs/*.md): defects found by
-- following the documents literally, each checked here through the same commands.
--
-- - docs/PORTING.md's `make SODIUM_STATIC=1` in a tree that `make` already built must relink
--   the module with libsodium inside it (it did nothing: the module was "up to date");
-- - the README's way to find the installed docs/ and examples/ must name a directory that
--   holds them (`luarocks show p2pnet` prints only the tree);
-- - the command line under wine, as docs/PORTING.md gives it: keygen, id, a refused
--   overwrite, and a mediator that a Linux node joins.
--
-- Tagged #host: it runs compilers, luarocks and wine on uninstrumented builds.
local S = require "spec.support"

local P = require "spec.procs"
local shell_quote, run, have, tail = P.quote, P.run, P.have, P.tail

local function read(path)
    local f = assert(io.open(path, "rb"))
    local s = f:read("a")
    f:close()
    return s
end

local root = assert(io.popen("pwd")):read("*l")

describe("issue 11 as a newcomer follows the docs #host", function()
    local tmp
    before_each(function() tmp = S.tmpdir() end)
    after_each(function() if tmp then S.rmdir(tmp) end end)

    it("make SODIUM_STATIC=1 after make relinks the module with libsodium inside", function()
        -- PORTING.md: "make SODIUM_STATIC=1 ... The module and the C programs then need no
        -- libsodium.so". A user has usually run `make` first; use a build dir of its own.
        local build = tmp .. "/build"
        local ok, out = run(("cd %s && make -j2 BUILD=%s module"):format(shell_quote(root),
                                                                        shell_quote(build)))
        assert.is_true(ok, "build failed:\n" .. tail(out))
        ok, out = run("ldd " .. shell_quote(build .. "/p2pnet/core.so"))
        assert.is_true(ok, out)
        assert.is_truthy(out:find("libsodium", 1, true), "the default build links libsodium.so")
        ok, out = run(("cd %s && make -j2 BUILD=%s SODIUM_STATIC=1 module"):format(
            shell_quote(root), shell_quote(build)))
        assert.is_true(ok, "static build failed:\n" .. tail(out))
        ok, out = run("ldd " .. shell_quote(build .. "/p2pnet/core.so"))
        assert.is_true(ok, out)
        assert.is_falsy(out:find("libsodium", 1, true),
                        "make SODIUM_STATIC=1 left the module linked to libsodium.so:\n" .. out)
        -- And back: a plain make links it dynamically again.
        ok, out = run(("cd %s && make -j2 BUILD=%s module"):format(shell_quote(root),
                                                                  shell_quote(build)))
        assert.is_true(ok, out)
        ok, out = run("ldd " .. shell_quote(build .. "/p2pnet/core.so"))
        assert.is_true(ok, out)
        assert.is_truthy(out:find("libsodium", 1, true), "make did not relink after static:\n"
            .. out)
    end)

    it("the README's luarocks command says where the installed docs/ and examples/ are",
       function()
        if not have("luarocks") then
            pending("no luarocks")
            return
        end
        local readme = read(root .. "/README.md")
        -- The sentence that tells a user where the rock put docs/ and examples/.
        local cmd = readme:match("installs the `p2pnet` module.-%(`(luarocks [^`]-)` says where%)")
        assert.is_truthy(cmd, "README no longer says which command shows where docs/ are")
        local ok, out = run(("cd %s && make rock ROCK_DIR=%s"):format(shell_quote(root),
                                                                      shell_quote(tmp)))
        assert.is_true(ok, "make rock failed:\n" .. tail(out))
        local tree = tmp .. "/T"
        ok, out = run(("cd %s && luarocks --lua-version 5.4 install ./p2pnet-*.src.rock --tree T")
            :format(shell_quote(tmp)))
        assert.is_true(ok, "install failed:\n" .. tail(out))
        -- The command as the README gives it, in the user's tree.
        local tree_cmd = cmd:gsub("^luarocks ", "luarocks --tree " .. shell_quote(tree) .. " ")
        ok, out = run(tree_cmd)
        assert.is_true(ok, tree_cmd .. ":\n" .. out)
        local found
        for line in out:gmatch("[^\n]+") do
            local dir = line:match("(/%S+)")
            if dir then
                dir = dir:gsub("/$", "")
                local f = io.open(dir .. "/docs/API.md")
                local g = io.open(dir .. "/examples/demo.lua")
                if f and g then found = dir end
                if f then f:close() end
                if g then g:close() end
            end
        end
        assert.is_truthy(found, ("`%s` names no directory holding docs/API.md and "
            .. "examples/demo.lua:\n%s"):format(cmd, out))
    end)

    it("runs the command line under wine as docs/PORTING.md says", function()
        if not (have("x86_64-w64-mingw32-gcc") and (have("wine64") or have("wine"))) then
            pending("no mingw-w64 or wine")
            return
        end
        local porting = read(root .. "/docs/PORTING.md")
        -- The documented way to run bin/p2pnet under wine: a line in a code block.
        local line = porting:match("\n    ([^\n]-tests/win/run%.sh bin/p2pnet keygen[^\n]*)")
        assert.is_truthy(line, "docs/PORTING.md gives no command to run bin/p2pnet under wine")
        local prefix = line:match("^(.-)tests/win/run%.sh")
        local ok, out = run(("cd %s && make windows"):format(shell_quote(root)))
        assert.is_true(ok, "make windows failed:\n" .. tail(out))
        local function cli(args)
            return run(("cd %s && %s bash %s/tests/win/run.sh bin/p2pnet %s"):format(
                shell_quote(tmp), prefix, shell_quote(root), args))
        end
        ok, out = cli("keygen node.key")
        assert.is_true(ok, out)
        local id = out:match("^(%x+)\r?\n") -- lua.exe writes CRLF
        assert.are.equal(64, id and #id, out)
        ok, out = cli("id node.key")
        assert.is_true(ok, out)
        assert.is_truthy(out:find(id, 1, true), out)
        ok, out = cli("keygen node.key")
        assert.is_false(ok, "keygen overwrote a key file:\n" .. out)
        assert.is_truthy(out:find("not overwriting", 1, true), out)

        -- A mediator under wine that a Linux node joins.
        local port = 20000 + math.random(20000)
        local log = tmp .. "/mediator.log"
        local pidf = tmp .. "/mediator.pid"
        os.execute(("cd %s && (%s WIN_TIMEOUT=60 bash %s/tests/win/run.sh bin/p2pnet mediator "
            .. "--host 127.0.0.1 --port %d --key m.key > %s 2>&1 & echo $! > %s)"):format(
            shell_quote(tmp), prefix, shell_quote(root), port, shell_quote(log),
            shell_quote(pidf)))
        local pid = read(pidf):match("%d+")
        local ok2, err = pcall(function()
            local p2pnet = require "p2pnet"
            local deadline = os.time() + 60
            repeat
                os.execute("sleep 0.2")
            until read(log):find("listening on", 1, true) or os.time() > deadline
            assert.is_truthy(
                read(log):find("p2pnet mediator %x+ listening on 127%.0%.0%.1:" .. port),
                read(log))
            local node = assert(p2pnet.node { host = "127.0.0.1" })
            local joined
            node:on("join", function(peer) joined = peer end)
            assert(node:connect("127.0.0.1:" .. port))
            S.spin({ node }, function() return joined end, 20)
            assert.is_truthy(joined, "no join with the mediator under wine:\n" .. read(log))
            node:close()
        end)
        -- Stop this run only: the timeout under its run.sh, which then stops its own
        -- wineserver and removes its scratch directory.
        os.execute(("pkill -TERM -P %s 2>/dev/null; for i in $(seq 50); do "
            .. "kill -0 %s 2>/dev/null || break; sleep 0.2; done; kill %s 2>/dev/null")
            :format(pid, pid, pid))
        assert(ok2, err)
    end)
end)

-- The two host examples that are also plain scripts run under every supported Lua, as the
-- README's "Which host?" and issue 11 ("every example runs under 5.1 to 5.4 and LuaJIT") say;
-- spec/36 runs the top-level examples, spec/33 and spec/30 these two under Lua 5.4 only.
local I = require "spec.interpreters"
for _, interp in ipairs(I.list) do
    describe("host examples as plain scripts under " .. interp.lua .. " #host", function()
        local tmp
        setup(function()
            local ok, out = I.build(interp)
            assert(ok, "building the module for " .. interp.lua .. " failed:\n" .. out)
        end)
        before_each(function() tmp = S.tmpdir() end)
        after_each(function() if tmp then S.rmdir(tmp) end end)

        it("examples/embed/game.lua: every receipt within its frames", function()
            local ok, out = I.run(("cd %s && %s timeout -k 5 60 %s examples/embed/game.lua")
                :format(I.quote(I.root()), I.env(interp), interp.lua))
            assert(ok, out)
            assert.matches("via require: 20 receipts each way in %d+ frames", out)
        end)

        it("examples/openresty/peer.lua: answers a message with its echo", function()
            local log = tmp .. "/peer.out"
            local pidf = tmp .. "/peer.pid"
            -- It runs for 20 s at most, or until it is stopped below.
            os.execute(("cd %s && (%s timeout -k 2 20 %s examples/openresty/peer.lua 0 - 20 "
                .. "> %s 2>&1 & echo $! > %s)"):format(I.quote(I.root()), I.env(interp),
                interp.lua, I.quote(log), I.quote(pidf)))
            local pid = read(pidf):match("%d+")
            local function output() -- the background process may not have opened it yet
                local f = io.open(log, "rb")
                if not f then return "" end
                local s = f:read("a")
                f:close()
                return s
            end
            local ok, err = pcall(function()
                local p2pnet = require "p2pnet"
                local addr
                S.spin({}, function()
                    addr = output():match("READY %x+ (%S+)")
                    if not addr then os.execute("sleep 0.05") end
                    return addr
                end, 15)
                assert(addr, "peer.lua printed no READY line:\n" .. output())
                local node = assert(p2pnet.node { host = "127.0.0.1" })
                local reply
                node:on("join", function(peer)
                    peer:send(1, "hi", function(okr, r) reply = { okr, r } end)
                end)
                assert(node:connect(addr))
                S.spin({ node }, function() return reply end, 15)
                node:close()
                assert.is_truthy(reply, "no receipt from peer.lua:\n" .. output())
                assert.same({ true, "echo:hi" }, reply)
            end)
            os.execute(("kill %s 2>/dev/null"):format(pid))
            assert(ok, err)
        end)
    end)
end
