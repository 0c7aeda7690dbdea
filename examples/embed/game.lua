-- examples/embed/game.lua - the script that examples/embed/main.c runs inside its own Lua.
--
-- Two nodes in one engine (think: a host and a client in one test build) exchange messages
-- with receipts. The engine calls frame(dt) once per frame; each frame polls both nodes with
-- poll(0), which never blocks, and the script returns true once every receipt came back.
-- It prints how long the polls took per frame. Runs under Lua 5.1 to 5.4 and LuaJIT.
--
-- Run as a plain script (`lua examples/embed/game.lua`, with p2pnet installed), it drives its
-- frames itself, standing in for the engine.
local how = ... -- "luaL_requiref" or "package.preload": how the engine registered the module
local embedded = how == "luaL_requiref" or how == "package.preload"

local p2pnet = require "p2pnet" -- the pure-Lua layer, over the statically linked p2pnet.core
if embedded then
    assert(package.cpath == "", "the engine allows no shared modules")
else
    how = "require"
end

local MESSAGES = 20      -- each way
local TIMEOUT = 10       -- seconds of frames before giving up

local host = assert(p2pnet.node { host = "127.0.0.1" })
local client = assert(p2pnet.node { host = "127.0.0.1" })
host:on("message", function(_, _, data) return "host got " .. data end)
client:on("message", function(_, _, data) return "client got " .. data end)

local got = { host = 0, client = 0 }
local peers = {}
local function send(side, n)
    local expect = (side == "host" and "client" or "host") .. " got " .. side .. " " .. n
    assert(peers[side]:send(1, side .. " " .. n, function(ok, reply)
        if not ok or reply ~= expect then
            error(("%s: message %d: %s, %s"):format(side, n, tostring(ok), tostring(reply)))
        end
        got[side] = got[side] + 1
        if n < MESSAGES then send(side, n + 1) end
    end))
end
host:on("join", function(peer)
    peers.host = peer
    send("host", 1)
end)
client:on("join", function(peer)
    peers.client = peer
    send("client", 1)
end)
assert(client:connect(host:address()))

local game = {}
local frames, elapsed, poll_cpu, worst = 0, 0, 0, 0
local joined_frames, joined_cpu = 0, 0 -- the frames after both joins: no handshake crypto

function game.frame(dt)
    frames = frames + 1
    elapsed = elapsed + dt
    local t0 = os.clock()
    host:poll(0)
    client:poll(0)
    local spent = os.clock() - t0
    poll_cpu = poll_cpu + spent
    if spent > worst then worst = spent end
    if peers.host and peers.client then
        joined_frames = joined_frames + 1
        joined_cpu = joined_cpu + spent
    end
    if got.host == MESSAGES and got.client == MESSAGES then
        print(("p2pnet %s via %s: %d receipts each way in %d frames; poll(0) of two nodes: "
               .. "%.1f us per frame on average, %.1f us at most, %.1f us once joined")
              :format(p2pnet.version, how, MESSAGES, frames, 1e6 * poll_cpu / frames, 1e6 * worst,
                      1e6 * joined_cpu / math.max(joined_frames, 1)))
        host:close()
        client:close()
        return true
    end
    if elapsed > TIMEOUT then
        error(("no end after %d frames: %d and %d receipts"):format(frames, got.host, got.client))
    end
end

if not embedded then
    -- the engine's part: frames, with a wait for the client's socket in between
    repeat
        local done = game.frame(0.002)
        if not done then client:poll(0.002) end
    until done
    return
end
return game
