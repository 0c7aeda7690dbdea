-- A p2pnet peer for examples/openresty, in plain Lua (5.1 to 5.4, LuaJIT):
--   lua5.4 examples/openresty/peer.lua [port] [connect-to host:port | -] [seconds]
-- Prints "READY <id> <address>", then answers messages: type 1 with "echo:" .. data, and
-- type 9 ("push N") by sending N messages of type 2 back to the sender. It runs for
-- `seconds`, or until it is killed.
local p2pnet = require "p2pnet"

local port = tonumber(arg[1] or "0")
local target = arg[2] ~= "-" and arg[2] or nil
local seconds = tonumber(arg[3])

local node = assert(p2pnet.node { host = "127.0.0.1", port = port })
node:on("message", function(peer, mtype, data)
    if mtype == 1 then
        return "echo:" .. data
    elseif mtype == 9 then
        local n = tonumber(data:match("push (%d+)")) or 1
        for i = 1, n do
            peer:send(2, "pushed " .. i)
        end
        return "pushing " .. n
    end
end)
node:on("join", function(peer)
    io.stderr:write("join ", peer.id, " ", peer.address, "\n")
end)
node:on("leave", function(peer, reason)
    io.stderr:write("leave ", peer.id, " ", tostring(reason), "\n")
end)
if target then
    node:connect(target)
end
io.stdout:write("READY ", node.id, " ", node:address(), "\n")
io.stdout:flush()
local clock = os.time
local stop_at = seconds and clock() + seconds
while not stop_at or clock() < stop_at do
    node:poll(stop_at and math.min(1, seconds) or 1)
end
node:close()
