-- Every program in examples/ runs to completion under Lua 5.1, 5.2, 5.3, 5.4 and LuaJIT, each
-- with the C module built for its ABI (make BUILD=build-51 LUA_PC=lua5.1 module, ...), as a
-- user runs them from the repository root. Each runs in its bounded form:
--   demo.lua       ends by itself;
--   echo.lua       without arguments: server and client in one process, then it ends;
--   send-file.lua  `recv 127.0.0.1:0 OUT` and `send HOST:PORT FILE` both end with the file;
--   chat.lua       ends at /quit (or end of input); this spec is the other chat member.
-- Tagged #host: it starts other interpreters, so the ASan pass leaves it out.
local I = require "spec.interpreters"
local S = require "spec.support"
local p2pnet = require "p2pnet"

local q = I.quote

-- A program started in the background from the repository root; its stdout and stderr go to
-- one file. With `stdin`, its standard input is a pipe from here.
local function start(dir, name, interp, args, stdin)
    local out, pidfile = dir .. "/" .. name .. ".out", dir .. "/" .. name .. ".pid"
    -- $$ is the pid of this sh, which becomes `timeout`: a TERM to it reaches the program.
    local cmd = ("cd %s && exec sh -c %s"):format(q(I.root()), q(
        ("echo $$ > %s && exec %s timeout -k 5 60 %s %s > %s 2>&1"):format(
            q(pidfile), I.env(interp), interp.lua, args, q(out))))
    local p = {}
    if stdin then
        p.pipe = assert(io.popen(cmd, "w"))
    else
        os.execute(cmd .. " </dev/null >/dev/null 2>&1 &")
    end
    function p.output()
        local f = io.open(out, "rb")
        if not f then return "" end
        local s = f:read("*a")
        f:close()
        return s
    end
    function p.pid()
        local f = io.open(pidfile)
        local pid = f and tonumber(f:read("*l"))
        if f then f:close() end
        return pid
    end
    function p.alive()
        local pid = p.pid()
        return pid ~= nil and os.execute("kill -0 " .. pid .. " 2>/dev/null") == true
    end
    function p.kill()
        local pid = p.pid()
        if pid then os.execute("kill " .. pid .. " 2>/dev/null") end
        if p.pipe then p.pipe:close() p.pipe = nil end
    end
    return p
end

-- Waits (polling `nodes` meanwhile) until `pattern` shows in p's output; returns its captures.
local function expect(p, pattern, nodes, seconds)
    local caps
    local ok = S.spin(nodes or {}, function()
        caps = { p.output():match(pattern) }
        if #caps > 0 then return true end
        if not nodes or #nodes == 0 then os.execute("sleep 0.02") end
        return false
    end, seconds or 20)
    assert(ok, ("the output never showed %q; it is:\n%s"):format(pattern, p.output()))
    return (table.unpack or unpack)(caps) -- luacheck: ignore 143
end

local function wait_exit(p, seconds)
    S.spin({}, function()
        if not p.alive() then return true end
        os.execute("sleep 0.02")
        return false
    end, seconds or 20)
    return not p.alive()
end

for _, interp in ipairs(I.list) do
    describe("examples under " .. interp.lua .. " #host", function()
        local dir, procs

        setup(function()
            local ok, out = I.build(interp)
            assert(ok, "building the module for " .. interp.lua .. " failed:\n" .. out)
        end)

        before_each(function()
            dir = S.tmpdir()
            procs = {}
        end)

        after_each(function()
            for _, p in ipairs(procs) do p.kill() end
            S.rmdir(dir)
        end)

        it("demo.lua: a mesh of five, a broadcast, a receipt, a leave", function()
            local ok, out = I.run(("cd %s && %s timeout -k 5 60 %s examples/demo.lua"):format(
                q(I.root()), I.env(interp), interp.lua))
            assert(ok, out)
            assert.matches("full mesh: 10 sessions, every node holds 4", out, 1, true)
            assert.matches("dave  receipt from bob: delivered", out, 1, true)
            assert.matches("sees erin leave (closed)", out, 1, true)
            assert.matches("demo done", out, 1, true)
        end)

        it("echo.lua: server and client in one process", function()
            local ok, out = I.run(("cd %s && %s timeout -k 5 60 %s examples/echo.lua"):format(
                q(I.root()), I.env(interp), interp.lua))
            assert(ok, out)
            assert.matches("echo server %x+ at 127%.0%.0%.1:%d+", out)
            assert.matches("echo: hello, echo", out, 1, true)
        end)

        it("send-file.lua: a file arrives byte-exact and hash-checked", function()
            local src, dst = dir .. "/src.bin", dir .. "/dst.bin"
            local data = S.payload(7, 300 * 1024 + 13)
            S.write(src, data)
            local recv = start(dir, "recv", interp, "examples/send-file.lua recv 127.0.0.1:0 "
                .. q(dst))
            procs[#procs + 1] = recv
            local port = expect(recv, "receiving on 127%.0%.0%.1:(%d+)")
            local send = start(dir, "send", interp, ("examples/send-file.lua send 127.0.0.1:%s %s")
                :format(port, q(src)))
            procs[#procs + 1] = send
            assert(wait_exit(send, 40), "send-file send did not end:\n" .. send.output())
            assert(wait_exit(recv, 10), "send-file recv did not end:\n" .. recv.output())
            assert.matches("sent, receiver checked the hash", send.output(), 1, true)
            assert.matches("received, hash checked", recv.output(), 1, true)
            assert.is_true(S.read(dst) == data, "the received file differs")
        end)

        it("chat.lua: a line, a receipt and /quit with a member in this process", function()
            local node = assert(p2pnet.node { host = "127.0.0.1" })
            local joined, left, got
            node:on("join", function(peer) joined = peer end)
            node:on("leave", function(_, reason) left = reason end)
            node:on("message", function(_, _, data, info) got = { data = data, info = info } end)
            local chat = start(dir, "chat", interp, "examples/chat.lua --host 127.0.0.1 --join "
                .. node:address(), true)
            procs[#procs + 1] = chat
            local ok, err = pcall(function()
                local id = expect(chat, "you are %x+ %((%x+)%)", { node })
                assert(S.spin({ node }, function() return joined ~= nil end, 20),
                    "the chat never joined:\n" .. chat.output())
                assert.equal(id, joined.id)
                expect(chat, "%* " .. node.id:sub(1, 8) .. " joined from 127%.0%.0%.1:%d+",
                    { node })

                chat.pipe:write("hello from ", interp.lua, "\n")
                chat.pipe:flush()
                assert(S.spin({ node }, function() return got ~= nil end, 20),
                    "the typed line never arrived:\n" .. chat.output())
                assert.equal("hello from " .. interp.lua, got.data)
                assert.is_true(got.info.broadcast)

                local receipt
                assert(joined:send(2, "to you alone", function(ok2, reply)
                    receipt = { ok2, reply }
                end))
                expect(chat, "%(to you%): to you alone\n", { node })
                assert(S.spin({ node }, function() return receipt ~= nil end, 20))
                assert.same({ true, "delivered" }, receipt)

                chat.pipe:write("/quit\n")
                chat.pipe:flush()
                assert(S.spin({ node }, function() return left ~= nil end, 20),
                    "no leave after /quit:\n" .. chat.output())
                assert.equal("closed", left)
                local closed_ok = chat.pipe:close()
                chat.pipe = nil
                assert.is_truthy(closed_ok, "chat exited with an error:\n" .. chat.output())
                assert.matches("* bye", chat.output(), 1, true)
            end)
            node:close()
            assert(ok, err)
        end)
    end)
end
