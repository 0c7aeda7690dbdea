-- p2pnet chat: a terminal chat on the mesh. Everyone who joins through any member meets
-- everyone; a typed line goes to all of them.
--
--   lua5.4 examples/chat.lua [--port P] [--join host:port] [--key FILE] [--network-key S]
--                            [--host H]
--
--   a typed line      is broadcast to every member (message type 1)
--   /peers            lists the members with their state, address and round-trip time
--   /msg ID text      sends `text` to one member only (ID: its id or a unique prefix of it),
--                     and shows the receipt
--   /join host:port   connects to one more member
--   /quit             leaves the chat gracefully (end of input does the same)
--
-- Run from the repository root after `make` (the lines below find lua/ and build/), or with
-- p2pnet installed. Waiting on the keyboard and the network at once needs a poll on two
-- descriptors, which plain Lua lacks: this example uses LuaSocket's socket.select for it.
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
if not os.getenv("LUA_CPATH") then
    package.cpath = "./build/?.so;" .. package.cpath
end
local p2pnet = require "p2pnet"

local have_socket, socket = pcall(require, "socket")
if not have_socket then
    io.stderr:write("chat: this example needs LuaSocket (for socket.select) to wait on the\n",
                    "keyboard and the network together. Install it with\n",
                    "  apt-get install lua-socket      (Debian, Ubuntu)\n",
                    "  luarocks install luasocket      (elsewhere)\n")
    os.exit(1)
end

local CHAT, DIRECT = 1, 2 -- message types
local SHORT = 8           -- hex digits of an id shown

local function usage(err)
    if err then io.stderr:write("chat: ", err, "\n") end
    io.stderr:write("usage: lua5.4 examples/chat.lua [--port P] [--join host:port] ",
                    "[--key FILE] [--network-key S] [--host H]\n")
    os.exit(err and 2 or 0)
end

local function parse_args(argv)
    local opts = { host = "0.0.0.0", port = 0 }
    local names = { ["--port"] = "port", ["--join"] = "join", ["--key"] = "key",
                    ["--network-key"] = "network_key", ["--host"] = "host" }
    local i = 1
    while i <= #argv do
        local a = argv[i]
        if a == "-h" or a == "--help" then usage() end
        local name = names[a]
        if not name then usage("unknown argument " .. a) end
        local v = argv[i + 1]
        if v == nil then usage(a .. " needs a value") end
        opts[name] = v
        i = i + 2
    end
    opts.port = tonumber(opts.port)
    if not opts.port or opts.port % 1 ~= 0 or opts.port < 0 or opts.port > 65535 then
        usage("--port needs a number 0-65535")
    end
    return opts
end

-- Text from the network is shown as is, except control characters: a peer must not be able
-- to drive the terminal.
local function clean(s)
    return (s:gsub("[%c\127]", "?"))
end

local function say(fmt, ...)
    io.stdout:write(fmt:format(...), "\n")
    io.stdout:flush()
end

local function short(id) return id:sub(1, SHORT) end

local opts = parse_args(arg)
local node, err = p2pnet.node {
    host = opts.host,
    port = opts.port,
    identity = opts.key,
    network_key = opts.network_key,
}
if not node then
    io.stderr:write("chat: ", err, "\n")
    os.exit(1)
end

local address = node:address()
say("* you are %s (%s), listening on %s", short(node.id), node.id, address)
if opts.host == "0.0.0.0" or opts.host == "::" then
    say("* others on this machine join with: --join 127.0.0.1:%s", address:match(":(%d+)$"))
end
say("* type a line to talk to everyone; /peers, /msg ID text, /join host:port, /quit")

node:on("join", function(peer)
    say("* %s joined from %s", short(peer.id), peer.address)
end)
node:on("leave", function(peer, reason)
    say("* %s left (%s)", short(peer.id), reason)
end)
node:on("error", function(e)
    say("* error: %s", clean(tostring(e)))
end)
node:on("message", function(peer, mtype, data, info)
    if mtype == CHAT and info.broadcast then
        say("%s: %s", short(info.origin), clean(data))
    elseif mtype == DIRECT then
        say("%s (to you): %s", short(peer.id), clean(data))
        return "delivered" -- the receipt the sender sees
    end
end)

-- The connected peer whose id is `prefix` or starts with it, or nil and why not.
local function find_peer(prefix)
    prefix = prefix:lower()
    local found
    for _, p in ipairs(node:peers()) do
        if p.state == "connected" and p.id:sub(1, #prefix) == prefix then
            if found then return nil, "more than one member's id starts with " .. prefix end
            found = p
        end
    end
    if not found then return nil, "no member's id starts with " .. prefix end
    return found
end

local function list_peers()
    local peers = node:peers()
    table.sort(peers, function(a, b) return a.id < b.id end)
    local n = 0
    for _, p in ipairs(peers) do
        if p.state == "connected" then n = n + 1 end
    end
    say("* %d member%s besides you:", n, n == 1 and "" or "s")
    for _, p in ipairs(peers) do
        local rtt = p.state == "connected" and ("%.1f ms"):format(p.rtt * 1000) or "-"
        say("    %-8s  %-12s  %-21s  rtt %s%s", short(p.id or "?"), p.state,
            p.address or "?", rtt, p.direct == false and "  (relayed)" or "")
    end
end

local running = true

local function command(line)
    local cmd, rest = line:match("^/(%S+)%s*(.-)%s*$")
    if cmd == "quit" then
        running = false
    elseif cmd == "peers" then
        list_peers()
    elseif cmd == "msg" then
        local prefix, text = rest:match("^(%S+)%s+(.+)$")
        if not prefix then
            say("* usage: /msg ID text")
            return
        end
        local peer, why = find_peer(prefix)
        if not peer then
            say("* %s", why)
            return
        end
        local id = short(peer.id)
        local ok, e = peer:send(DIRECT, text, function(delivered, reply)
            if delivered then
                say("* receipt from %s: %s", id, clean(tostring(reply)))
            else
                say("* not delivered to %s: %s", id, clean(tostring(reply)))
            end
        end)
        if not ok then say("* cannot send to %s: %s", id, e) end
    elseif cmd == "join" and rest ~= "" then
        local _, e = node:connect(rest)
        if e then say("* cannot join %s: %s", rest, e) end
    else
        say("* commands: /peers, /msg ID text, /join host:port, /quit")
    end
end

local function input(line)
    if line:sub(1, 1) == "/" then
        command(line)
    elseif line:match("%S") then
        node:broadcast(CHAT, line)
    end
end

if opts.join then
    local _, e = node:connect(opts.join)
    if e then say("* cannot join %s: %s", opts.join, e) end
end

-- One wait on both descriptors. Unbuffered stdin makes a read take only the line at hand,
-- so that what the descriptor says is ready is all that is waiting.
io.stdin:setvbuf("no")
local keyboard = { getfd = function() return 0 end }
local network = { getfd = function() return node:fd() end }

local ok, failure = pcall(function()
    while running do
        local ready = socket.select({ keyboard, network }, nil, math.min(node:next_timeout(), 1))
        if ready[keyboard] then
            local line = io.stdin:read("*l") -- "*l", not "l": Lua 5.1 and 5.2 need the star
            if line == nil then
                running = false -- end of input
            else
                input(line)
            end
        end
        node:poll(0)
    end
end)
node:on("leave", nil) -- our own leaving ends every session: no need to list them
node:close()
if not ok and not tostring(failure):match("interrupted") then
    io.stderr:write("chat: ", tostring(failure), "\n")
    os.exit(1)
end
say("* bye")
