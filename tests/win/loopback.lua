-- tests/win/loopback.lua - the Windows loopback exchange (tests/win/run.sh runs it with lua.exe
-- under wine): two nodes in one process on 127.0.0.1, N messages each way with receipts, a
-- send_await in a task, a key file written and read back, a port in use, and a dual-stack
-- ("::") node reaching an IPv4 one through "localhost". Prints "windows loopback ok: ..."
-- and exits 0, or raises. arg[1] is a scratch directory for the key file.
local p2pnet = require "p2pnet"
local N = 50
local dir = assert(arg[1], "usage: loopback.lua SCRATCH_DIR")

-- The key file: created, then loaded again with the same id.
local path = dir .. "\\win-identity.key"
os.remove(path)
local ia = assert(p2pnet.identity(path))
local ia2 = assert(p2pnet.identity(path))
assert(ia.id == ia2.id, "the key file did not load back the same identity")
local f = assert(io.open(path, "rb"))
local text = f:read("a")
f:close()
assert(#text == 84 and not text:find("\r"), "key file is " .. #text .. " bytes (text mode?)")

local a = assert(p2pnet.node { host = "127.0.0.1", port = 0, identity = path })
local b = assert(p2pnet.node { host = "127.0.0.1", port = 0 })
assert(a.id == ia.id)
assert(type(a:fd()) == "number" and a:fd() > 0, "fd() is not a socket handle")
assert(b:address():match("^127%.0%.0%.1:%d+$"), "bad address " .. tostring(b:address()))

local got = { a = {}, b = {} }
a:on("message", function(_, mtype, data) got.a[#got.a + 1] = data; return "a:" .. mtype end)
b:on("message", function(_, mtype, data) got.b[#got.b + 1] = data; return "b:" .. mtype end)
local joined = {}
a:on("join", function(peer) joined.a = peer end)
b:on("join", function(peer) joined.b = peer end)
a:on("error", function(err) error("a: " .. tostring(err)) end)

local function pump(cond, what)
    local t0 = os.clock()
    for _ = 1, 2000 do
        a:poll(0.002)
        b:poll(0.002)
        if cond() then return end
    end
    error(("timed out waiting for %s (%.1f s cpu)"):format(what, os.clock() - t0))
end

assert(a:connect(b:address(), { id = b.id }))
pump(function() return joined.a and joined.b end, "both joins")

local receipts = { a = {}, b = {} }
for i = 1, N do
    local big = ("x"):rep(i * 97) -- up to ~4.8 kB: several packets each
    assert(joined.a:send(i, "from a " .. i .. big, function(ok, reply)
        receipts.a[i] = ok and reply end))
    assert(joined.b:send(i, "from b " .. i, function(ok, reply) receipts.b[i] = ok and reply end))
end
pump(function() return #got.a == N and #got.b == N and receipts.a[N] and receipts.b[N] end,
     "messages and receipts")
for i = 1, N do
    assert(got.b[i]:sub(1, #("from a " .. i)) == "from a " .. i and #got.b[i] > i * 97,
           "b got message " .. i .. " wrong")
    assert(got.a[i] == "from b " .. i, "a got message " .. i .. " wrong")
    assert(receipts.a[i] == "b:" .. i, "receipt " .. i .. " to a: " .. tostring(receipts.a[i]))
    assert(receipts.b[i] == "a:" .. i, "receipt " .. i .. " to b: " .. tostring(receipts.b[i]))
end
-- A task on a's loop: send_await through the coroutine layer.
local awaited
a:spawn(function() awaited = { joined.a:send_await(999, "await me", 5) } end)
pump(function() return awaited ~= nil end, "send_await")
assert(awaited[1] == true and awaited[2] == "b:999", "send_await: " .. tostring(awaited[2]))
-- A port in use is a runtime failure with the system's reason.
local port = a:address():match(":(%d+)$")
local c, err = p2pnet.node { host = "127.0.0.1", port = tonumber(port) }
assert(c == nil and tostring(err):find("in use", 1, true), "second bind: " .. tostring(err))

-- A dual-stack node ("::") reaches an IPv4 node, by name, and is reached back through the v4
-- mapping.
local d = assert(p2pnet.node { host = "::", port = 0 })
local djoined
d:on("join", function(peer) djoined = peer end)
-- By name: getaddrinfo through Winsock.
assert(d:connect("localhost:" .. b:address():match(":(%d+)$"), { id = b.id }))
local function pump3(cond, what)
    for _ = 1, 2000 do
        a:poll(0)
        b:poll(0.002)
        d:poll(0.002)
        if cond() then return end
    end
    error("timed out waiting for " .. what)
end
pump3(function() return djoined ~= nil end, "the dual-stack join")
local dreply
assert(djoined:send(5, "v6 socket", function(ok, reply) dreply = ok and reply end))
pump3(function() return dreply ~= nil end, "the dual-stack receipt")
assert(dreply == "b:5", "dual-stack receipt: " .. tostring(dreply))
d:close()

a:close()
b:close()
os.remove(path)
print(("windows loopback ok: %d messages and %d receipts each way, send_await, key file, "
       .. "port in use, dual stack"):format(N, N))
