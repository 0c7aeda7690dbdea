-- Portability (docs/PORTING.md), each through a real build:
-- - the plain POSIX driver: a build with the Linux extensions' probes off (recvfrom/sendto,
--   poll, fcntl, no offload, no IP_MTU_DISCOVER) passes the UDP driver's C tests and a Lua
--   loopback exchange;
-- - SODIUM_STATIC=1: a module with libsodium inside it, needing no libsodium.so;
-- - Windows: `make windows` cross-builds core.dll with mingw-w64 (libsodium and Lua 5.4 from
--   Debian's source packages, cached in build-win/deps), and tests/win/run.sh runs two nodes in
--   one lua.exe under wine: messages with receipts both ways, send_await, a key file.
--
-- Tagged #host: each starts compilers or wine on uninstrumented builds, so the sanitizer pass
-- of tests/run-all.sh leaves it out.

local P = require "spec.procs"
local shell_quote, run, have, tail = P.quote, P.run, P.have, P.tail

local root = assert(io.popen("pwd")):read("*l")
local lua_path = ("%s/lua/?.lua;%s/lua/?/init.lua;;"):format(root, root)

-- tests/loopback_roundtrip.lua against the module in build dir `dir`.
local function loopback(dir)
    return run(("cd %s && LUA_PATH=%s LUA_CPATH=%s lua5.4 tests/loopback_roundtrip.lua"):format(
        shell_quote(root), shell_quote(lua_path), shell_quote(root .. "/" .. dir .. "/?.so;;")))
end

describe("portable POSIX UDP driver #host", function()
    it("passes the driver's tests and a Lua loopback without the Linux extensions", function()
        local ok, out = run(("cd %s && make -j2 BUILD=build-posix PORT_PROBES=0 all "
            .. "build-posix/tests/test_udp"):format(shell_quote(root)))
        assert.is_true(ok, "build failed:\n" .. tail(out))
        local f = assert(io.open(root .. "/build-posix/config.h"))
        local config = f:read("a")
        f:close()
        for _, name in ipairs { "HAVE_RECVMMSG", "HAVE_SENDMMSG", "HAVE_PPOLL",
                                "HAVE_SOCK_NONBLOCK", "HAVE_UDP_SEGMENT", "HAVE_UDP_GRO",
                                "HAVE_IP_MTU_DISCOVER" } do
            assert.is_truthy(config:find("#define " .. name .. " 0", 1, true),
                             name .. " is on:\n" .. config)
        end
        -- The driver reports no feature at all, and every test passes without them.
        ok, out = run(("cd %s && P2P_UDP_EXPECT_FEATURES=0 timeout 300 build-posix/tests/test_udp")
            :format(shell_quote(root)))
        assert.is_true(ok, out)
        assert.is_truthy(out:find("test_udp: %d+ passed, 0 failed"), out)
        assert.is_truthy(out:find("ok   test_exchange_send_faults", 1, true), out)
        ok, out = loopback("build-posix")
        assert.is_true(ok, out)
        assert.is_truthy(out:find("loopback ok: re:hello", 1, true), out)
    end)

    it("the default Linux build probed the batched calls and offload", function()
        local f = io.open(root .. "/build/config.h")
        if not f then
            pending("no build/config.h: the default build has not run")
            return
        end
        local config = f:read("a")
        f:close()
        for _, name in ipairs { "HAVE_RECVMMSG", "HAVE_SENDMMSG", "HAVE_UDP_SEGMENT",
                                "HAVE_UDP_GRO", "HAVE_IP_MTU_DISCOVER" } do
            assert.is_truthy(config:find("#define " .. name .. " 1", 1, true),
                             name .. ":\n" .. config)
        end
    end)
end)

describe("static libsodium #host", function()
    it("links libsodium into the module (SODIUM_STATIC=1)", function()
        local ok, out = run(("cd %s && make -j2 BUILD=build-static SODIUM_STATIC=1 module")
            :format(shell_quote(root)))
        assert.is_true(ok, "build failed:\n" .. tail(out))
        ok, out = run(("ldd %s/build-static/p2pnet/core.so"):format(shell_quote(root)))
        assert.is_true(ok, out)
        assert.is_falsy(out:find("libsodium", 1, true), out)
        ok, out = run(("nm -D --defined-only %s/build-static/p2pnet/core.so"):format(
            shell_quote(root)))
        assert.is_true(ok, out)
        assert.is_falsy(out:find(" sodium_init", 1, true), "libsodium's symbols leak out")
        assert.is_truthy(out:find(" luaopen_p2pnet_core", 1, true), out)
        ok, out = loopback("build-static")
        assert.is_true(ok, out)
        assert.is_truthy(out:find("loopback ok: re:hello", 1, true), out)
    end)
end)

describe("Windows build under wine #host", function()
    it("builds core.dll with mingw-w64; lua.exe runs a loopback exchange under wine", function()
        if not have("x86_64-w64-mingw32-gcc") then
            pending("x86_64-w64-mingw32-gcc is not installed (Debian gcc-mingw-w64-x86-64)")
            return
        end
        if not (have("wine64") or have("wine") or io.open("/usr/lib/wine/wine64")) then
            pending("wine is not installed (Debian wine64)")
            return
        end
        local t0 = os.time()
        local ok, out = run(("cd %s && make windows"):format(shell_quote(root)))
        assert.is_true(ok, "make windows failed:\n" .. tail(out))
        local built = os.time() - t0
        ok, out = run(("cd %s && bash tests/win/run.sh tests/win/loopback.lua"):format(
            shell_quote(root)))
        assert.is_true(ok, "the wine run failed:\n" .. tail(out))
        assert.is_truthy(out:find("windows loopback ok: 50 messages and 50 receipts each way", 1,
                                  true), out)
        io.stderr:write(("\n  [windows: make windows %d s; %s]\n"):format(
            built, out:match("wine run took [%d.]+ s") or "?"))
    end)
end)
