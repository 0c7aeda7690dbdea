-- p2pnet LAN chat: a chat with no address to give. Start it on two or more machines of one
-- LAN (or twice on one machine): the nodes find each other with LAN discovery (signed
-- multicast and broadcast beacons, docs/API.md "LAN discovery"), form a mesh, and a typed line
-- goes to all of them.
--
--   lua5.4 examples/lan-chat.lua [--name NAME] [--network-key S] [--port P]
--   lua5.4 examples/lan-chat.lua --sim      three simulated nodes on a simulated LAN; exits
--
--   a typed line   is broadcast to every member (message type 1), signed NAME
--   /peers         lists the members found, with the path each session takes
--   /quit          leaves (the end of input does the same)
--
-- With --network-key, only nodes holding the same key find each other, and the beacons tell
-- anyone else nothing (not even the node's id). Run from the repository root after `make`
-- (the lines below find lua/ and build/), or with p2pnet installed. Waiting on the keyboard
-- and the network at once uses LuaSocket's socket.select, as examples/chat.lua does.
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
if not os.getenv("LUA_CPATH") then
    package.cpath = "./build/?.so;" .. package.cpath
end
local p2pnet = require "p2pnet"

local CHAT = 1

local function say(fmt, ...)
    io.stdout:write(fmt:format(...), "\n")
    io.stdout:flush()
end

-- A peer must not be able to drive the terminal.
local function clean(s)
    return (tostring(s):gsub("[%c\127]", "?"))
end

local function usage(err)
    if err then io.stderr:write("lan-chat: ", err, "\n") end
    io.stderr:write("usage: lua5.4 examples/lan-chat.lua [--name NAME] [--network-key S] ",
                    "[--port P] | --sim\n")
    os.exit(err and 2 or 0)
end

local opts = { port = 0 }
do
    local names = { ["--name"] = "name", ["--network-key"] = "network_key",
                    ["--port"] = "port" }
    local i = 1
    while i <= #arg do
        local a = arg[i]
        if a == "-h" or a == "--help" then usage() end
        if a == "--sim" then
            opts.sim = true
            i = i + 1
        else
            local name = names[a] or usage("unknown argument " .. a)
            opts[name] = arg[i + 1] or usage(a .. " needs a value")
            i = i + 2
        end
    end
    opts.port = tonumber(opts.port)
    if not opts.port or opts.port % 1 ~= 0 or opts.port < 0 or opts.port > 65535 then
        usage("--port needs a number 0-65535")
    end
end

-- The handlers every chat node has: joins, leaves and lines, printed with `tag`.
local function chat_handlers(node, tag)
    node:on("join", function(peer)
        say("%s* found %s at %s (%s)", tag, peer.id:sub(1, 8), tostring(peer.address),
            tostring(peer.path or (peer.direct and "direct" or "relayed")))
    end)
    node:on("leave", function(peer, reason)
        say("%s* %s left (%s)", tag, peer.id:sub(1, 8), reason)
    end)
    node:on("message", function(_, mtype, data, info)
        if mtype == CHAT and info.broadcast then
            say("%s%s", tag, clean(data))
        end
    end)
end

if opts.sim then
    -- Three simulated nodes on one simulated LAN, none given an address: they find each other
    -- by their beacons alone, and a line from one reaches the two others.
    local sim = p2pnet.sim { seed = 7, latency = 0.001 }
    local nodes = {}
    for i = 1, 3 do
        nodes[i] = assert(sim:node { discover = "lan", lan = 1, nat = "cone",
                                     network_key = opts.network_key })
        chat_handlers(nodes[i], ("[node %d] "):format(i))
    end
    sim:run(10)
    nodes[1]:broadcast(CHAT, "node 1: hello, LAN")
    sim:run(2)
    for i, node in ipairs(nodes) do
        local n = 0
        for _, p in ipairs(node:peers()) do
            if p.state == "connected" then n = n + 1 end
        end
        say("node %d: %d peers, heard by beacon: %d", i, n, #node:lan_peers())
    end
    for _, node in ipairs(nodes) do node:close() end
    os.exit(0)
end

local have_socket, socket = pcall(require, "socket")
if not have_socket then
    io.stderr:write("lan-chat: this example needs LuaSocket (for socket.select) to wait on\n",
                    "the keyboard and the network together: apt-get install lua-socket,\n",
                    "or luarocks install luasocket. (--sim runs without it.)\n")
    os.exit(1)
end

local node, err = p2pnet.node {
    port = opts.port,
    network_key = opts.network_key,
    discover = "lan",
}
if not node then
    io.stderr:write("lan-chat: ", err, "\n")
    os.exit(1)
end
local name = opts.name or node.id:sub(1, 8)
chat_handlers(node, "")
say("* you are %s (%s) on %s; looking for others on the LAN", name, node.id:sub(1, 8),
    node:address())
say("* type a line to talk to everyone; /peers, /quit")

local stdin = { getfd = function() return 0 end }
local net = { getfd = function() return node:fd() end }
local running = true
while running do
    local ready = socket.select({ stdin, net }, nil, math.min(node:next_timeout(), 1))
    if ready[stdin] then
        local line = io.read("*l")
        if line == nil or line == "/quit" then
            running = false
        elseif line == "/peers" then
            for _, p in ipairs(node:peers()) do
                say("  %s %s %s %s", tostring(p.id):sub(1, 8), p.state, tostring(p.address),
                    tostring(p.path))
            end
            for _, l in ipairs(node:lan_peers()) do
                say("  heard %s at %s, %.0f s ago", l.id:sub(1, 8), l.address, l.age)
            end
        elseif line ~= "" then
            node:broadcast(CHAT, name .. ": " .. line)
        end
    end
    node:poll(0)
end
node:close()
