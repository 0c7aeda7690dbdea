-- The install tests, offline, each into a private tree, where the installed copy alone then
-- runs two nodes on loopback that exchange a message with a receipt
-- (tests/loopback_roundtrip.lua):
-- - rockspec/p2pnet-scm-1.rockspec with `luarocks make`, as a developer does;
-- - the release: `make rock` packs p2pnet-<version>-1.src.rock (luarocks pack), and the exact
--   command a user runs, `luarocks --lua-version 5.4 install ./p2pnet-<version>-1.src.rock
--   --tree T`, installs it with its docs/ and examples/, and an installed example runs.
--
-- Tagged #luarocks: tests/run-all.sh leaves it out of the sanitizer run, which would otherwise
-- preload the ASan runtime into luarocks and the compiler.

local P = require "spec.procs"
local shell_quote, run = P.quote, P.run

local function exists(path)
    local f = io.open(path, "rb")
    if f then f:close() return true end
    return false
end

local function S_read(path)
    local f = assert(io.open(path, "rb"))
    local s = f:read("*a")
    f:close()
    return s
end

local function mktemp_dir()
    local ok, out = run("mktemp -d")
    assert(ok, out)
    return (out:gsub("%s+$", ""))
end

-- Runs tests/loopback_roundtrip.lua (or `script`) with only `tree` on the module paths (no
-- ";;", so no system or in-tree copy), from an empty directory under `work`.
local function run_from_tree(work, tree, script)
    local lpath = ("%s/share/lua/5.4/?.lua;%s/share/lua/5.4/?/init.lua"):format(tree, tree)
    local cpath = ("%s/lib/lua/5.4/?.so"):format(tree)
    return run(("mkdir -p %s/empty && cd %s/empty && env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 "
        .. "-u LUA_INIT -u LUA_INIT_5_4 LUA_PATH=%s LUA_CPATH=%s timeout -k 5 60 lua5.4 %s")
        :format(shell_quote(work), shell_quote(work), shell_quote(lpath), shell_quote(cpath),
                shell_quote(script)))
end

-- A proxy on a closed local port makes any attempt to fetch fail at once.
local OFFLINE = "http_proxy=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9 "

describe("luarocks install #luarocks", function()
    local root = assert(io.popen("pwd")):read("*l")
    local work, tree

    setup(function()
        work = mktemp_dir()
        tree = work .. "/tree"
        -- Build from a copy, so luarocks' objects never land in the working tree.
        local copy = {}
        for _, d in ipairs { "csrc", "lua", "bin", "rockspec", "docs", "examples" } do
            copy[#copy + 1] = shell_quote(root .. "/" .. d)
        end
        local ok, out = run(("mkdir -p %s/src && cp -R %s %s/src/"):format(
            shell_quote(work), table.concat(copy, " "), shell_quote(work)))
        assert(ok, out)
    end)

    teardown(function()
        if work and work:match("^/tmp/") then run("rm -rf " .. shell_quote(work)) end
    end)

    it("builds and installs from the rockspec without the network", function()
        -- A proxy on a closed local port makes any attempt to fetch fail at once.
        local cmd = ("cd %s/src && " .. OFFLINE
            .. "luarocks --lua-version=5.4 make --deps-mode=none --tree %s "
            .. "rockspec/p2pnet-scm-1.rockspec"):format(shell_quote(work), shell_quote(tree))
        local ok, out = run(cmd)
        assert.is_true(ok, "luarocks make failed:\n" .. out)
        assert.is_true(exists(tree .. "/share/lua/5.4/p2pnet/init.lua"), out)
        assert.is_true(exists(tree .. "/lib/lua/5.4/p2pnet/core.so"), out)
        local listed
        ok, listed = run(("luarocks --lua-version=5.4 --tree %s list --porcelain"):format(
            shell_quote(tree)))
        assert.is_true(ok, listed)
        assert.matches("p2pnet%s+scm%-1%s+installed", listed)
    end)

    it("runs two nodes from the installed tree alone", function()
        local ok, out = run_from_tree(work, tree, root .. "/tests/loopback_roundtrip.lua")
        assert.is_true(ok, "the installed p2pnet failed:\n" .. out)
        assert.matches("loopback ok: re:hello", out, 1, true)
    end)
end)

describe("the release's source rock #luarocks", function()
    local root = assert(io.popen("pwd")):read("*l")
    local version = assert(S_read(root .. "/csrc/p2pnet.h"):match(
        '#define P2P_VERSION_STRING "([^"]+)"'))
    local rock = ("p2pnet-%s-1.src.rock"):format(version)
    local work, tree

    setup(function()
        work = mktemp_dir()
        tree = work .. "/T"
    end)

    teardown(function()
        if work and work:match("^/tmp/") then run("rm -rf " .. shell_quote(work)) end
    end)

    it("make rock packs " .. rock .. " with luarocks pack", function()
        local ok, out = run(("cd %s && make -s rock ROCK_DIR=%s"):format(shell_quote(root),
            shell_quote(work)))
        assert.is_true(ok, "make rock failed:\n" .. out)
        assert.is_true(exists(work .. "/" .. rock), out)
        local listing
        ok, listing = run("unzip -l " .. shell_quote(work .. "/" .. rock))
        assert.is_true(ok, listing)
        -- the release rockspec, and the tree at its tag: sources, docs and examples
        for _, f in ipairs { ("p2pnet-%s-1.rockspec"):format(version), "p2pnet/csrc/p2pnet.h",
                             "p2pnet/lua/p2pnet/init.lua", "p2pnet/docs/API.md",
                             "p2pnet/examples/echo.lua", "p2pnet/bin/p2pnet" } do
            assert.matches("%s" .. f:gsub("%p", "%%%0") .. "\n", listing)
        end
        assert.is_nil(listing:match("%.git/"), "the rock holds a .git directory")
    end)

    it("installs with `luarocks --lua-version 5.4 install ./" .. rock .. " --tree T`", function()
        assert.is_true(exists(work .. "/" .. rock), "no rock: the test before failed")
        local ok, out = run(("cd %s && %s luarocks --lua-version 5.4 install ./%s --tree T")
            :format(shell_quote(work), OFFLINE, rock))
        assert.is_true(ok, "luarocks install failed:\n" .. out)
        assert.matches(("p2pnet %s%%-1 is now installed"):format(version:gsub("%p", "%%%0")), out)
        local dir = ("%s/lib/luarocks/rocks-5.4/p2pnet/%s-1"):format(tree, version)
        for _, f in ipairs { "/docs/API.md", "/examples/demo.lua", "/examples/chat.lua",
                             "/examples/echo.lua", "/examples/send-file.lua" } do
            assert.is_true(exists(dir .. f), "not installed: " .. f)
        end
        assert.is_true(exists(tree .. "/bin/p2pnet"))
    end)

    it("the installed rock runs two nodes, and an installed example", function()
        local ok, out = run_from_tree(work, tree, root .. "/tests/loopback_roundtrip.lua")
        assert.is_true(ok, "the installed p2pnet failed:\n" .. out)
        assert.matches("loopback ok: re:hello", out, 1, true)
        ok, out = run_from_tree(work, tree, ("%s/lib/luarocks/rocks-5.4/p2pnet/%s-1/examples/"
            .. "echo.lua"):format(tree, version))
        assert.is_true(ok, "the installed examples/echo.lua failed:\n" .. out)
        assert.matches("echo: hello, echo", out, 1, true)
        -- the command line the rock installs
        ok, out = run(("%s/bin/p2pnet --help"):format(shell_quote(tree)))
        assert.is_true(ok, out)
    end)
end)
