-- The Lua 5.1 pcall/yield limit (docs/API.md "Coroutines under Lua 5.1"): the documented
-- limit holds as written (pcall around send_await fails under plain Lua 5.1 with "attempt to
-- yield across metamethod/C-call boundary", and works under LuaJIT and 5.2 to 5.4), and the
-- section's example, the 5.1-safe way, runs as printed under every interpreter.
-- Tagged #host: it starts other interpreters, so the ASan pass leaves it out.
local I = require "spec.interpreters"
local S = require "spec.support"

local q = I.quote

-- The example of the section, as a user copies it.
local function doc_example()
    local text = S.read(I.root() .. "/docs/API.md")
    local section = assert(text:match("\n### Coroutines under Lua 5%.1\n(.-)\n##? "),
        "docs/API.md has no section \"Coroutines under Lua 5.1\"")
    return assert(section:match("```lua\n(.-)```"), "the section has no Lua example")
end

-- pcall around each helper inside a task: prints one line per helper.
local PROBE = [[
local p2pnet = require "p2pnet"
local a = assert(p2pnet.node { host = "127.0.0.1" })
local b = assert(p2pnet.node { host = "127.0.0.1" })
b:on("message", function(_, _, d) return "re:" .. d end)
local function show(name, ok, x, y)
  print(("%s %s %s %s"):format(name, tostring(ok), tostring(x), tostring(y)))
end
a:spawn(function()
  local peer = assert(a:connect_await(b:address(), 5))
  show("plain", peer:send_await(1, "x", 5))
  show("send_await", pcall(peer.send_await, peer, 1, "y", 5))
  show("sleep", pcall(p2pnet.sleep, 0.01))
  a:close()
end)
a:spawn(function() while not a.closed do b:poll(0); p2pnet.sleep(0.001) end end)
a:run(10)
b:close()
]]

for _, interp in ipairs(I.list) do
    describe("pcall and tasks under " .. interp.lua .. " #host", function()
        local dir

        setup(function()
            local ok, out = I.build(interp)
            assert(ok, "building the module for " .. interp.lua .. " failed:\n" .. out)
            dir = S.tmpdir()
        end)

        teardown(function()
            S.rmdir(dir)
        end)

        local function run(name, code)
            local path = dir .. "/" .. name .. ".lua"
            S.write(path, code)
            return I.run(("cd %s && %s timeout -k 5 30 %s %s"):format(q(dir), I.env(interp),
                interp.lua, q(path)))
        end

        it("the section's 5.1-safe example runs as printed", function()
            local ok, out = run("example", doc_example())
            assert(ok, out)
            assert.equal("13\nfailed: no such thing\n", out)
        end)

        if interp.lua == "lua5.1" then
            it("pcall around a helper cannot yield, as documented", function()
                local ok, out = run("probe", PROBE)
                assert(ok, out)
                assert.matches("plain true re:x nil", out, 1, true)
                assert.matches("send_await false attempt to yield across metamethod/C-call "
                    .. "boundary", out, 1, true)
                assert.matches("sleep false attempt to yield across", out, 1, true)
            end)
        else
            it("pcall around a helper works, as documented", function()
                local ok, out = run("probe", PROBE)
                assert(ok, out)
                assert.matches("plain true re:x nil", out, 1, true)
                assert.matches("send_await true true re:y", out, 1, true)
                assert.matches("sleep true nil nil", out, 1, true)
            end)
        end
    end)
end
