-- Embedding in a C engine: `make static` builds libp2pnet-lua.a (the binding and the core)
-- and examples/embed/main.c, a program with its own lua_State that links it statically,
-- registers p2pnet.core (luaL_requiref, or package.preload with --preload) and runs
-- examples/embed/game.lua frame by frame: two nodes exchange 20 messages with receipts each
-- way and exit 0; built with AddressSanitizer, it shows that lua_close frees everything. The
-- program is a host of its own, hence the tag.

local function sh(cmd)
    local p = assert(io.popen(cmd .. " 2>&1"))
    local out = p:read("*a")
    local ok, _, code = p:close()
    return ok and 0 or code, out
end

local function tmpdir()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -m 700 " .. dir))
    return dir
end

describe("a C program embedding Lua and p2pnet statically #host", function()
    local BIN = "build/examples/embed/embed"

    setup(function()
        local code, out = sh("make -s -j2 static")
        assert(code == 0, out)
    end)

    it("make static builds an archive with the binding and the core", function()
        local code, out = sh("nm -g --defined-only build/libp2pnet-lua.a")
        assert.are.equal(0, code, out)
        assert.is_truthy(out:find(" T luaopen_p2pnet_core\n", 1, true))
        assert.is_truthy(out:find(" T p2p_host_recv\n", 1, true))
        -- the core-only archive stays as it was
        code, out = sh("nm -g --defined-only build/libp2pnet.a")
        assert.are.equal(0, code, out)
        assert.is_nil(out:find("luaopen_p2pnet_core", 1, true))
    end)

    it("the program loads no p2pnet shared object", function()
        local code, out = sh("ldd " .. BIN)
        assert.are.equal(0, code, out)
        assert.is_nil(out:find("p2pnet", 1, true))
        assert.is_truthy(out:find("liblua5.4", 1, true))
    end)

    for _, way in ipairs { { "", "luaL_requiref" }, { "--preload ", "package.preload" } } do
        it("registers p2pnet.core with " .. way[2] .. " and runs the script's frames", function()
            -- no LUA_PATH/LUA_CPATH help: the program sets its own paths
            local code, out = sh("env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_4 -u LUA_CPATH_5_4 "
                                 .. BIN .. " " .. way[1] .. "lua examples/embed/game.lua")
            assert.are.equal(0, code, out)
            local receipts, frames, avg = out:match("via " .. way[2] .. ": (%d+) receipts each way "
                                                    .. "in (%d+) frames; poll%(0%) of two nodes: "
                                                    .. "([%d.]+) us per frame")
            assert.is_truthy(receipts, out)
            assert.are.equal("20", receipts)
            print(("embed (%s): %s frames, poll(0) %s us per frame"):format(way[2], frames, avg))
        end)
    end

    it("the script also runs as a plain Lua script, driving its own frames", function()
        local root = assert(io.popen("pwd")):read("*l")
        local env = ("LUA_PATH='%s/lua/?.lua;%s/lua/?/init.lua;;' LUA_CPATH='%s/build/?.so;;'")
            :format(root, root, root)
        local code, out = sh(env .. " timeout -k 5 30 lua5.4 examples/embed/game.lua")
        assert.are.equal(0, code, out)
        assert.is_truthy(out:find("via require: 20 receipts each way", 1, true), out)
    end)

    it("fails with the script's error and a traceback, and on a script without frame()", function()
        local dir = tmpdir()
        finally(function() os.execute("rm -rf " .. dir) end)
        local f = assert(io.open(dir .. "/bad.lua", "w"))
        f:write([[
local p2pnet = require "p2pnet"
local node = assert(p2pnet.node { host = "127.0.0.1" })
return { frame = function() node:poll(0); error("boom in frame") end }
]])
        f:close()
        local code, out = sh(BIN .. " lua " .. dir .. "/bad.lua")
        assert.are.equal(1, code)
        assert.is_truthy(out:find("boom in frame", 1, true), out)
        assert.is_truthy(out:find("stack traceback", 1, true), out)
        f = assert(io.open(dir .. "/none.lua", "w"))
        f:write("return 42\n")
        f:close()
        code, out = sh(BIN .. " lua " .. dir .. "/none.lua")
        assert.are.equal(1, code)
        assert.is_truthy(out:find("must return a table with frame(dt)", 1, true), out)
        -- no layer files where the engine said: require fails, and so does the program
        code, out = sh(BIN .. " " .. dir .. " examples/embed/game.lua")
        assert.are.equal(1, code)
        assert.is_truthy(out:find("module 'p2pnet' not found", 1, true), out)
    end)

    it("frees everything at lua_close: no leak under AddressSanitizer", function()
        -- the same objects as make test's ASan stage builds later (same BUILD and flags)
        local code, out = sh("make -s -j2 BUILD=build-asan SANITIZE=address,undefined static")
        assert.are.equal(0, code, out)
        for _, flag in ipairs { "", "--preload " } do
            code, out = sh("env ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1 "
                           .. "build-asan/examples/embed/embed " .. flag
                           .. "lua examples/embed/game.lua")
            assert.are.equal(0, code, out)
            assert.is_truthy(out:find("20 receipts each way", 1, true), out)
            assert.is_nil(out:find("Sanitizer", 1, true), out)
        end
    end)

    it("builds and runs for a LuaJIT engine (package.preload)", function()
        local code, out = sh("make -s -j2 BUILD=build-luajit LUA_PC=luajit static")
        assert.are.equal(0, code, out)
        code, out = sh("build-luajit/examples/embed/embed --preload lua examples/embed/game.lua")
        assert.are.equal(0, code, out)
        assert.is_truthy(out:find("via package.preload: 20 receipts each way", 1, true), out)
        -- luaL_requiref is Lua 5.2+: the program says so
        code, out = sh("build-luajit/examples/embed/embed lua examples/embed/game.lua")
        assert.are.equal(1, code)
        assert.is_truthy(out:find("luaL_requiref needs Lua 5.2 or later", 1, true), out)
    end)
end)
