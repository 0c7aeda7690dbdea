-- examples/chat.lua as a person uses it: two chat processes on loopback, driven through
-- their standard input, their screens read from their output. A typed line reaches the
-- other side, /peers lists the member, /msg shows the other's receipt, /quit is seen as a
-- leave. The chat needs LuaSocket (Debian: lua-socket).
local S = require "spec.support"

local CHAT = "examples/chat.lua"

-- One chat process: its stdin is a pipe from here, its output goes to a file.
local function start(dir, name, args)
    local out, pidfile = dir .. "/" .. name .. ".out", dir .. "/" .. name .. ".pid"
    local cmd = ("echo $$ > %s; exec lua5.4 %s %s > %s 2>&1"):format(pidfile, CHAT, args, out)
    local pipe = assert(io.popen(cmd, "w"))
    local c = { name = name, pipe = pipe, out = out, pidfile = pidfile }
    function c.screen()
        local f = io.open(out, "rb")
        if not f then return "" end
        local s = f:read("a")
        f:close()
        return s
    end
    function c.type(line)
        c.pipe:write(line, "\n")
        c.pipe:flush()
    end
    function c.pid()
        local f = io.open(pidfile)
        local pid = f and math.tointeger(tonumber(f:read("l")))
        if f then f:close() end
        return pid
    end
    return c
end

-- Waits until `pattern` (a Lua pattern) shows on c's screen; returns its captures.
local function expect(c, pattern, seconds)
    local deadline = S.now() + (seconds or 10)
    while true do
        local caps = { c.screen():match(pattern) }
        if #caps > 0 then return table.unpack(caps) end
        if S.now() > deadline then
            error(("%s's screen never showed %q; it shows:\n%s"):format(c.name, pattern,
                  c.screen()), 2)
        end
        os.execute("sleep 0.05")
    end
end

local function esc(s) return (s:gsub("%p", "%%%0")) end

describe("examples/chat.lua", function()
    local dir, chats

    before_each(function()
        dir = S.tmpdir()
        chats = {}
    end)

    after_each(function()
        for _, c in pairs(chats) do
            local pid = c.pid()
            if pid then os.execute("kill -9 " .. pid .. " 2>/dev/null") end
            c.pipe:close()
        end
        S.rmdir(dir)
    end)

    it("carries lines, /peers, /msg receipts and /quit between two processes", function()
        local a = start(dir, "a", "--host 127.0.0.1")
        chats[1] = a
        local a_id, a_addr = expect(a, "you are %x+ %((%x+)%), listening on (127%.0%.0%.1:%d+)")
        assert.equal(64, #a_id)
        local b = start(dir, "b", "--host 127.0.0.1 --join " .. a_addr)
        chats[2] = b
        local b_id, b_addr = expect(b, "you are %x+ %((%x+)%), listening on (127%.0%.0%.1:%d+)")
        local a_short, b_short = a_id:sub(1, 8), b_id:sub(1, 8)

        expect(a, "%* " .. b_short .. " joined from " .. esc(b_addr))
        expect(b, "%* " .. a_short .. " joined from " .. esc(a_addr))

        -- a typed line is broadcast, and shown with the sender's id prefix
        b.type("hello from b, with 100% punctuation!")
        expect(a, "\n" .. b_short .. ": hello from b, with 100%% punctuation!\n")

        -- /peers lists the other member with its state, address and rtt
        a.type("/peers")
        expect(a, "1 member besides you:\n%s+" .. b_short .. "%s+connected%s+" .. esc(b_addr)
                  .. "%s+rtt %d+%.%d ms")

        -- /msg with an id prefix: the other side shows it, the sender gets the receipt
        a.type("/msg " .. b_id:sub(1, 5) .. " just between us")
        expect(b, "\n" .. a_short .. " %(to you%): just between us\n")
        expect(a, "%* receipt from " .. b_short .. ": delivered\n")
        -- the direct message was not broadcast: a did not see its own line come back
        assert.is_nil(a.screen():match(a_short .. ": just between us"))

        -- /quit: b leaves gracefully, a sees it at once, b's process ends
        b.type("/quit")
        expect(a, "%* " .. b_short .. " left %(closed%)", 3)
        expect(b, "%* bye\n", 3)
        local ok, how, code = b.pipe:close()
        chats[2] = nil
        assert.is_true(ok, ("b exited by %s %s"):format(tostring(how), tostring(code)))

        -- end of input leaves too
        local ok2 = a.pipe:close()
        chats[1] = nil
        assert.is_true(ok2)
        expect(a, "%* bye\n", 1)
    end)

    it("says what is wrong with a bad command line", function()
        local p = assert(io.popen("lua5.4 " .. CHAT .. " --port nope 2>&1 </dev/null"))
        local text = p:read("a")
        local ok, _, code = p:close()
        assert.is_nil(ok)
        assert.equal(2, code)
        assert.truthy(text:match("%-%-port"), text)
        assert.truthy(text:match("usage:"), text)
    end)
end)
