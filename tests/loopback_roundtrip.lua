-- Two nodes on 127.0.0.1: connect, send one message with a receipt, check the reply.
-- Runs under any Lua the rockspec accepts (5.1 / LuaJIT to 5.4). Used by the LuaJIT smoke
-- check in tests/run-all.sh and by spec/90-luarocks_spec.lua against an installed rock.
-- Prints "loopback ok: <reply>" and exits 0, or raises.
local p2pnet = require "p2pnet"

local ia = p2pnet.identity()
assert(type(ia.id) == "string" and #ia.id == 64 and ia.id:match("^[0-9a-f]+$"),
       "identity id is not 64 lowercase hex characters")

local a = assert(p2pnet.node { host = "127.0.0.1", port = 0, identity = ia })
local b = assert(p2pnet.node { host = "127.0.0.1", port = 0 })
assert(a.id == ia.id, "node.id differs from its identity's id")
assert(a.id ~= b.id, "two fresh nodes share an id")
assert(b:address():match("^127%.0%.0%.1:%d+$"), "bad address " .. tostring(b:address()))

local received
b:on("message", function(peer, mtype, data)
    received = { from = peer.id, mtype = mtype, data = data }
    return "re:" .. data
end)
local joined
a:on("join", function(peer) joined = peer end)
a:on("error", function(err) error("connect failed: " .. tostring(err)) end)

-- Polls both nodes until cond() holds; at most `rounds` rounds of 10 ms.
local function pump(cond, rounds, what)
    for _ = 1, rounds do
        a:poll(0.005)
        b:poll(0.005)
        if cond() then return end
    end
    error("timed out waiting for " .. what)
end

local peer = assert(a:connect(b:address(), { id = b.id }))
pump(function() return joined ~= nil end, 500, "join")
assert(joined.id == b.id and joined.state == "connected", "joined the wrong peer")

local result
assert(peer:send(7, "hello", function(ok, reply) result = { ok = ok, reply = reply } end))
pump(function() return result ~= nil end, 500, "the receipt")

assert(received and received.from == a.id and received.mtype == 7 and received.data == "hello",
       "the message arrived wrong")
assert(result.ok == true, "receipt reports failure: " .. tostring(result.reply))
assert(result.reply == "re:hello", "wrong reply: " .. tostring(result.reply))
a:close()
b:close()
print("loopback ok: " .. result.reply)
