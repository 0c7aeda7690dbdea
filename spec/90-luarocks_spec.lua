-- The install test: rockspec/p2pnet-scm-1.rockspec builds and installs p2pnet with luarocks
-- into a private tree, offline, and the installed copy alone runs two nodes on loopback that
-- exchange a message with a receipt (tests/loopback_roundtrip.lua).
--
-- Tagged #luarocks: tests/run-all.sh leaves it out of the sanitizer run, which would otherwise
-- preload the ASan runtime into luarocks and the compiler.

local function shell_quote(s)
    return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Runs a shell command; returns ok, combined output.
local function run(cmd)
    local f = assert(io.popen(cmd .. " 2>&1; echo \"==exit $?\""))
    local out = f:read("*a")
    f:close()
    local code = tonumber(out:match("==exit (%d+)%s*$"))
    return code == 0, out:gsub("==exit %d+%s*$", "")
end

local function exists(path)
    local f = io.open(path, "rb")
    if f then f:close() return true end
    return false
end

local function mktemp_dir()
    local ok, out = run("mktemp -d")
    assert(ok, out)
    return (out:gsub("%s+$", ""))
end

describe("luarocks install #luarocks", function()
    local root = assert(io.popen("pwd")):read("*l")
    local work, tree

    setup(function()
        work = mktemp_dir()
        tree = work .. "/tree"
        -- Build from a copy, so luarocks' objects never land in the working tree.
        local ok, out = run(("mkdir -p %s/src && cp -R %s %s %s %s %s/src/"):format(
            shell_quote(work), shell_quote(root .. "/csrc"), shell_quote(root .. "/lua"),
            shell_quote(root .. "/bin"), shell_quote(root .. "/rockspec"), shell_quote(work)))
        assert(ok, out)
    end)

    teardown(function()
        if work and work:match("^/tmp/") then run("rm -rf " .. shell_quote(work)) end
    end)

    it("builds and installs from the rockspec without the network", function()
        -- A proxy on a closed local port makes any attempt to fetch fail at once.
        local cmd = ("cd %s/src && http_proxy=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9 "
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
        -- Only the tree is on the module paths (no ";;", so no system or in-tree copy), and
        -- the script runs from an empty directory.
        local lpath = ("%s/share/lua/5.4/?.lua;%s/share/lua/5.4/?/init.lua"):format(tree, tree)
        local cpath = ("%s/lib/lua/5.4/?.so"):format(tree)
        local cmd = ("mkdir -p %s/empty && cd %s/empty && env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 "
            .. "-u LUA_INIT -u LUA_INIT_5_4 LUA_PATH=%s LUA_CPATH=%s lua5.4 %s"):format(
            shell_quote(work), shell_quote(work), shell_quote(lpath), shell_quote(cpath),
            shell_quote(root .. "/tests/loopback_roundtrip.lua"))
        local ok, out = run(cmd)
        assert.is_true(ok, "the installed p2pnet failed:\n" .. out)
        assert.matches("loopback ok: re:hello", out, 1, true)
    end)
end)
