-- tests/soak/node.lua - one process of the soak test (tests/soak/soak.lua starts, kills and
-- restarts these). A p2pnet node on 127.0.0.1 that joins the mesh through the bootstrap
-- addresses it is given, sends one reliable message with a receipt to every connected peer
-- every SEND_EVERY seconds and a broadcast every BCAST_EVERY seconds, and writes what it saw to
-- its log, one line per fact, unbuffered (a SIGKILL loses nothing that was written):
--
--   ADDR <ip:port>                         once, after binding
--   JOIN <t> <peer id> / LEAVE <t> <peer id> <reason>
--   SSTREAM <stream> <peer id> <sent> <ok> <okmax> <failed> <up|left|leave:reason>
--       a stream is the messages this process sent on one session: how many, how many
--       receipts came back (and the highest message number among them), how many failed
--   RSTREAM <stream> <last> <up|left|leave:reason>
--       what this process received of another's stream: messages 1..last, in order
--   BSENT <t> <broadcast id>, BRECV <t> <broadcast id> <origin>
--   MEM <t> <rss KiB> <stats().memory or 0> <Lua heap KiB>
--   VIOLATION <text>                       a duplicate, a gap, a message from the wrong
--                                          session, a wrong receipt
--   EXIT
--
-- The control file: the soak controller writes "stop" (stop sending; keep answering), then
-- "final" (log the streams still open as "up": by then every receipt is in), then "exit"
-- (close the node gracefully, exit). "final" comes to every process before any closes, so
-- the others' closing does not turn a session that was up into a leave. "leave" (a graceful
-- leave in mid-run) logs the open streams as "left", closes the node and exits.
--
-- usage: lua5.4 node.lua <instance> <key file or -> <log> <control file> [bootstrap ip:port ...]
local p2pnet = require "p2pnet"
local socket = require "socket"

local SEND_EVERY = 0.5
local BCAST_EVERY = 2
local MEM_EVERY = 5
local CTL_EVERY = 0.25
local MAX_BODY = 3000

local instance, keyfile, logpath, ctlpath = arg[1], arg[2], arg[3], arg[4]
assert(instance and keyfile and logpath and ctlpath,
    "usage: node.lua <instance> <key file or -> <log> <control file> [bootstrap ...]")
local bootstrap = {}
for i = 5, #arg do bootstrap[#bootstrap + 1] = arg[i] end

local log = assert(io.open(logpath, "a"))
log:setvbuf("no")
local function say(...)
    log:write(table.concat({ ... }, " "), "\n")
end
local now = socket.gettime

-- deterministic per instance, different between instances
local seed = 0
for c in instance:gmatch(".") do seed = (seed * 31 + c:byte()) % 2147483647 end
math.randomseed(seed)

local node = assert(p2pnet.node {
    host = "127.0.0.1",
    identity = keyfile ~= "-" and keyfile or nil,
})
say("ADDR", node:address())

local function rss_kib()
    local f = io.open("/proc/self/status")
    if not f then return 0 end
    local text = f:read("a")
    f:close()
    return tonumber(text:match("VmRSS:%s*(%d+)")) or 0
end

-- ---- sending: one stream per session ------------------------------------------------------

local out = {}        -- peer -> { id, to, sent, ok, okmax, failed }
local nstreams = 0
local sending = true

local function close_out(peer, how)
    local s = out[peer]
    if not s then return end
    say("SSTREAM", s.id, s.to, s.sent, s.ok, s.okmax, s.failed, how)
    out[peer] = nil
end

local function send_one(peer, s)
    local n = s.sent + 1
    local body = s.id .. " " .. n .. " " .. string.rep("x", math.random(0, MAX_BODY))
    local ok = peer:send(1, body, function(good, reply)
        if good then
            if reply ~= "ok:" .. n then
                say("VIOLATION", "receipt for", s.id, n, "was", tostring(reply))
            end
            s.ok = s.ok + 1
            if n > s.okmax then s.okmax = n end
        else
            s.failed = s.failed + 1
        end
    end)
    if ok then s.sent = n end
end

-- ---- receiving -----------------------------------------------------------------------------

local into = {}       -- stream id -> { peer, last }
local by_peer = {}    -- peer -> { stream id, ... }

local function close_in(peer, how)
    for _, id in ipairs(by_peer[peer] or {}) do
        say("RSTREAM", id, into[id].last, how)
        into[id] = nil
    end
    by_peer[peer] = nil
end

node:on("message", function(peer, _, data, info)
    if info.broadcast then
        say("BRECV", string.format("%.3f", now()), info.id, info.origin)
        return nil
    end
    if info.unreliable then return nil end
    local id, n = data:match("^(%S+) (%d+) ")
    n = tonumber(n)
    if not id then
        say("VIOLATION", "malformed message of", #data, "bytes from", tostring(peer.id))
        return nil
    end
    local s = into[id]
    if not s then
        s = { peer = peer, last = 0 }
        into[id] = s
        by_peer[peer] = by_peer[peer] or {}
        table.insert(by_peer[peer], id)
    end
    if not rawequal(s.peer, peer) then
        say("VIOLATION", "stream", id, "arrived on two sessions")
    end
    if n <= s.last then
        say("VIOLATION", "duplicate", id, n, "after", s.last)
    elseif n ~= s.last + 1 then
        say("VIOLATION", "gap", id, n, "after", s.last)
    end
    if n > s.last then s.last = n end
    return "ok:" .. n
end)

node:on("join", function(peer)
    say("JOIN", string.format("%.3f", now()), peer.id)
    nstreams = nstreams + 1
    out[peer] = { id = instance .. "/" .. nstreams, to = peer.id, sent = 0, ok = 0, okmax = 0,
                  failed = 0 }
end)

node:on("leave", function(peer, reason)
    say("LEAVE", string.format("%.3f", now()), tostring(peer.id), reason)
    close_out(peer, "leave:" .. reason)
    close_in(peer, "leave:" .. reason)
end)

node:on("error", function() end)   -- failed dials to killed members are expected

for _, addr in ipairs(bootstrap) do
    node:connect(addr)
end

-- ---- the loop ------------------------------------------------------------------------------

local function control()
    local f = io.open(ctlpath)
    if not f then return nil end
    local c = f:read("l")
    f:close()
    return c
end

local next_send, next_bcast, next_mem, next_ctl = now() + SEND_EVERY, now() + 1, now(), now()
local nb = 0
while true do
    node:poll(0.05)
    local t = now()
    if sending and t >= next_send then
        next_send = t + SEND_EVERY
        for peer, s in pairs(out) do
            if peer.state == "connected" then send_one(peer, s) end
        end
    end
    if sending and t >= next_bcast then
        next_bcast = t + BCAST_EVERY * (0.5 + math.random())
        nb = nb + 1
        local text = instance .. " " .. nb .. " " .. string.rep("b", math.random(0, 1000))
        local id = node:broadcast(2, text)
        if id then say("BSENT", string.format("%.3f", t), id) end
    end
    if t >= next_mem then
        next_mem = t + MEM_EVERY
        -- a full collection first, so that the heap figure is what is live, not what the
        -- incremental collector has not reached yet
        collectgarbage("collect")
        local st = node:stats()
        say("MEM", string.format("%.3f", t), rss_kib(), st.memory or 0,
            math.floor(collectgarbage("count")))
    end
    if t >= next_ctl then
        next_ctl = t + CTL_EVERY
        local c = control()
        if c == "stop" then
            sending = false
        elseif c == "final" or c == "exit" or c == "leave" then
            sending = false
            local how = c == "leave" and "left" or "up"
            for peer in pairs(out) do close_out(peer, how) end
            for peer in pairs(by_peer) do close_in(peer, how) end
            if c ~= "final" then break end
        end
    end
end

node:close()
say("EXIT")
log:close()
