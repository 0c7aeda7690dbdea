-- p2pnet demo: five nodes on 127.0.0.1 that know only one bootstrap address form a full
-- mesh; one broadcast reaches everyone once; a direct message comes back with its receipt;
-- a node leaves and the others see it go.
--
-- Run from the repository root:  make demo   (or, after `make`: lua5.4 examples/demo.lua).
-- Exits 0 on success.
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
if not os.getenv("LUA_CPATH") then
    package.cpath = "./build/?.so;" .. package.cpath
end
local p2pnet = require "p2pnet"

local CHAT, QUESTION = 1, 2 -- message types: the application chooses them
local names = { "alice", "bob", "carol", "dave", "erin" }
local nodes, name_of = {}, {}

local function say(fmt, ...) print(fmt:format(...)) end
local function heading(text) print() print(text) end

-- Polls every open node until cond() holds; gives up after `seconds`.
local function spin(cond, seconds)
    local deadline = os.time() + (seconds or 5)
    while not cond() do
        assert(os.time() <= deadline, "the demo timed out")
        for i, node in ipairs(nodes) do
            if not node.closed then node:poll(i == 1 and 0.002 or 0) end
        end
    end
end

---------------------------------------------------------------------------------------------
heading("Five nodes, each with its own identity (an Ed25519 key; the id is the public key):")
for i, name in ipairs(names) do
    local node = assert(p2pnet.node { host = "127.0.0.1" })
    nodes[i], name_of[node.id] = node, name
    say("  %-5s  id %s...  at %s", name, node.id:sub(1, 16), node:address())
end

-- What each node does when things happen. Sessions are reported once per pair, when the
-- second side has it too.
local sessions, pairs_seen = {}, 0
local inbox = {}
for i, node in ipairs(nodes) do
    local me = names[i]
    inbox[me] = {}
    node:on("join", function(peer)
        local other = name_of[peer.id]
        local key = me < other and me .. "+" .. other or other .. "+" .. me
        sessions[key] = (sessions[key] or 0) + 1
        if sessions[key] == 2 then
            pairs_seen = pairs_seen + 1
            say("  %-5s <-> %-5s  connected", me, other)
        end
    end)
    node:on("leave", function(peer, reason)
        say("  %-5s sees %s leave (%s)", me, name_of[peer.id], reason)
    end)
    node:on("error", function(err) say("  %-5s error: %s", me, err) end)
    node:on("message", function(peer, mtype, data, info)
        inbox[me][#inbox[me] + 1] = data
        if info.broadcast then
            say("  %-5s got %s's broadcast: %q", me, name_of[info.origin], data)
        elseif mtype == QUESTION then
            say("  %-5s got a direct message from %s: %q", me, name_of[peer.id], data)
            return ("%s here: I hold %d sessions"):format(me, node:stats().peers)
        end
    end)
end

---------------------------------------------------------------------------------------------
local alice = nodes[1]
heading(("The others know only alice's address (%s) and connect to it.\n"
         .. "alice tells them about each other, and everyone connects to everyone:")
        :format(alice:address()))
for i = 2, #nodes do
    assert(nodes[i]:connect(alice:address()))
end
local want = #nodes * (#nodes - 1) / 2 -- a whole number: no // (Lua 5.3+ only)
spin(function() return pairs_seen == want end)
say("  full mesh: %d sessions, every node holds %d", want, alice:stats().peers)

heading("alice's view, from alice:peers():")
local peers = alice:peers()
table.sort(peers, function(a, b) return name_of[a.id] < name_of[b.id] end)
for _, p in ipairs(peers) do
    say("  %-5s  %s...  %-9s  %-15s  rtt %.2f ms", name_of[p.id], p.id:sub(1, 16), p.state,
        p.address, p.rtt * 1000)
end

---------------------------------------------------------------------------------------------
local carol = nodes[3]
heading("carol broadcasts a line; each other node gets it exactly once:")
local msg_id = carol:broadcast(CHAT, "hello, everyone")
local function reached()
    for _, name in ipairs(names) do
        if name ~= "carol" and #inbox[name] < 1 then return false end
    end
    return true
end
spin(reached)
for _ = 1, 50 do -- a little longer: a duplicate would show up now
    for _, node in ipairs(nodes) do node:poll(0.002) end
end
for _, name in ipairs(names) do
    if name ~= "carol" then assert(#inbox[name] == 1, name .. " got a copy too many") end
end
say("  (message id %s)", msg_id)

---------------------------------------------------------------------------------------------
local bob, dave = nodes[2], nodes[4]
heading("dave sends bob a direct message and waits for the receipt:")
local receipt
assert(dave:peer(bob.id):send(QUESTION, "how many sessions do you hold?", function(ok, reply)
    receipt = true
    say("  dave  receipt from bob: %s, reply %q", ok and "delivered" or "failed", reply)
end))
spin(function() return receipt end)

---------------------------------------------------------------------------------------------
local erin = nodes[5]
heading("erin leaves; the others see it at once:")
erin:on("leave", nil) -- erin's own view of its sessions ending is not the news here
erin:close()
spin(function()
    for i = 1, 4 do
        if nodes[i]:stats().peers ~= 3 then return false end
    end
    return true
end)

for i = 1, 4 do nodes[i]:on("leave", nil) end
for _, node in ipairs(nodes) do node:close() end -- closing twice is fine
heading("demo done")
