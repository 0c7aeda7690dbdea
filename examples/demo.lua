-- p2pnet demo: three nodes on 127.0.0.1 connect, exchange messages with receipts, and close.
-- Run from the repository root after `make`:  make demo   (or: lua5.4 examples/demo.lua with
-- LUA_PATH/LUA_CPATH pointing at lua/ and build/). Exits 0 on success.
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
if not os.getenv("LUA_CPATH") then
    package.cpath = "./build/?.so;" .. package.cpath
end
local p2pnet = require "p2pnet"

local names = { "alice", "bob", "carol" }
local nodes, by_id = {}, {}
for i, name in ipairs(names) do
    local node = assert(p2pnet.node { host = "127.0.0.1" })
    nodes[i] = node
    by_id[node.id] = name
    print(("%-5s is %s at %s"):format(name, node.id, node:address()))
end

local function short(peer) return by_id[peer.id] or peer.id:sub(1, 8) end

-- Every node answers messages of type 1 with a receipt; type 2 asks for a sum.
for i, node in ipairs(nodes) do
    local me = names[i]
    node:on("join", function(peer)
        print(("%-5s sees %s join from %s"):format(me, short(peer), peer.address))
    end)
    node:on("leave", function(peer, reason)
        print(("%-5s sees %s leave (%s)"):format(me, short(peer), reason))
    end)
    node:on("error", function(err) print(("%-5s error: %s"):format(me, err)) end)
    node:on("message", function(peer, mtype, data)
        print(("%-5s got type %d from %s: %q"):format(me, mtype, short(peer), data))
        if mtype == 1 then
            return me .. " read: " .. data
        elseif mtype == 2 then
            local sum = 0
            for n in data:gmatch("%d+") do sum = sum + tonumber(n) end
            return tostring(sum)
        end
        error("unknown message type " .. mtype)
    end)
end

-- Polls every open node until cond() holds (at most `seconds`).
local function spin(cond, seconds)
    local deadline = os.time() + (seconds or 10)
    while not cond() do
        assert(os.time() <= deadline, "the demo timed out")
        for _, node in ipairs(nodes) do
            if not node:_closed() then node:poll(0.002) end
        end
    end
end

-- alice connects to bob and carol, bob to carol.
local alice, bob, carol = nodes[1], nodes[2], nodes[3]
local links = {
    assert(alice:connect(bob:address(), { id = bob.id })),
    assert(alice:connect(carol:address(), { id = carol.id })),
    assert(bob:connect(carol:address(), { id = carol.id })),
}
spin(function()
    for _, p in ipairs(links) do if p.state ~= "connected" then return false end end
    return true
end)

-- Messages with receipts.
local pending = 0
local function send(from, peer, mtype, data)
    pending = pending + 1
    assert(peer:send(mtype, data, function(ok, reply)
        pending = pending - 1
        print(("%-5s receipt from %s: %s %q"):format(from, short(peer), ok and "ok" or "failed",
                                                    tostring(reply)))
    end))
end
send("alice", links[1], 1, "hello bob")
send("alice", links[2], 1, "hello carol")
send("bob", links[3], 2, "1 2 3 4 5")
send("alice", links[1], 3, "a type nobody handles")
spin(function() return pending == 0 end)

-- A coroutine on alice's loop: await a reply inline.
local done
alice:spawn(function()
    local ok, reply = links[2]:send_await(2, "40 2")
    print(("alice awaited carol's answer: %s %s"):format(tostring(ok), reply))
    done = true
end)
spin(function() return done end)

print(("alice sent %d packets (%d bytes), carol received %d packets"):format(
    alice:stats().packets_sent, alice:stats().bytes_sent, carol:stats().packets_received))

-- Closing: the others see alice leave.
alice:close()
spin(function() return bob:stats().peers == 1 and carol:stats().peers == 1 end)
bob:close()
carol:close()
print("demo done")
