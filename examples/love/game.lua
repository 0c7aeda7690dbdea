-- The shared field: players, their positions and the chat, kept in step over p2pnet.
-- Nothing here draws or reads the keyboard (main.lua does), so the same code runs with a
-- window and headless.
--
-- On the wire:
--   MSG_STATE  sequenced unreliable datagram on lane STATE_LANE, TICK_RATE times a second, to
--              every connected player: "<tick> <x> <y> <moving 0|1> <name>". Newest wins: a
--              late or duplicated state is dropped by p2pnet, never applied over a newer one.
--   MSG_CHAT   reliable broadcast: the line of text; every player gets it exactly once, through
--              another player if it has no direct session with the author.
--   MSG_DONE   reliable message with a reply: the scripted player (bot.lua) says it has seen
--              everything; the reply tells it that its partner got the word.
local Game = {}
Game.__index = Game

Game.MSG_STATE, Game.MSG_CHAT, Game.MSG_DONE = 1, 2, 3
Game.STATE_LANE = 1
Game.TICK_RATE = 30
Game.SPEED = 160 -- pixels per second
Game.WIDTH, Game.HEIGHT = 800, 600
Game.RADIUS = 12
Game.MAX_CHAT = 200 -- bytes of one chat line
Game.MAX_NAME = 24
Game.CHAT_LINES = 8 -- lines of chat kept on screen

-- Text from the network or the keyboard, made printable: no control characters, at most
-- `max` bytes, never cutting a UTF-8 sequence in two.
local function clean(s, max)
    s = s:gsub("%c", "")
    if #s > max then
        s = s:sub(1, max)
        -- a UTF-8 sequence cut short at the end goes
        local i = #s
        while i > 0 and s:byte(i) >= 0x80 and s:byte(i) < 0xC0 do
            i = i - 1
        end
        local lead = i > 0 and s:byte(i) or 0
        local need = lead >= 0xF0 and 4 or lead >= 0xE0 and 3 or lead >= 0xC0 and 2 or 1
        if #s - i + 1 < need then
            s = s:sub(1, i - 1)
        end
    end
    return s
end
Game.clean = clean

-- A spawn point and a colour from an id, so every player sees the same for the same id.
local function spawn(id)
    local a, b = tonumber(id:sub(1, 4), 16), tonumber(id:sub(5, 8), 16)
    return 40 + a % (Game.WIDTH - 80), 40 + b % (Game.HEIGHT - 80)
end

local function colour(id)
    local h = tonumber(id:sub(9, 12), 16) / 65536 * 6
    local i, f = math.floor(h), h - math.floor(h)
    local q, t = 1 - f, f
    local rgb = ({ { 1, t, 0 }, { q, 1, 0 }, { 0, 1, t }, { 0, q, 1 }, { t, 0, 1 },
                   { 1, 0, q } })[i + 1]
    -- pastel: mix with white so names stay readable on the dark field
    return { 0.4 + 0.6 * rgb[1], 0.4 + 0.6 * rgb[2], 0.4 + 0.6 * rgb[3] }
end

-- Game.new(p2pnet, opts) -> game | nil, err
-- opts: bind (address, default "0.0.0.0"), port (default 0), join ("host:port" or nil),
-- name (default "player-<id>"), clock (function returning seconds, for the poll figures).
function Game.new(p2pnet, opts)
    local node, err = p2pnet.node { host = opts.bind or "0.0.0.0", port = opts.port or 0 }
    if not node then
        return nil, err
    end
    local x, y = spawn(node.id)
    local self = setmetatable({
        p2pnet = p2pnet,
        node = node,
        id = node.id,
        name = clean(opts.name or ("player-" .. node.id:sub(1, 4)), Game.MAX_NAME),
        colour = colour(node.id),
        x = x, y = y,
        moved = false, -- moved since the last state sent
        tick = 0, -- states sent
        since_tick = 0,
        players = {}, -- id -> player table, for every connected peer
        known = {}, -- id -> player table, for every player met (kept after it leaves)
        chat = {}, -- { {from = name, text = text, colour = {r, g, b}} }, newest last
        chat_from = {}, -- id -> true for every player whose chat line arrived
        last_chat = {}, -- id -> the last chat line from that player
        done_from = {}, -- id -> true for every player that sent MSG_DONE
        errors = {}, -- asynchronous errors, for the screen and the bot's report
        clock = opts.clock or os.clock,
        poll_us = {}, -- poll(0) times while recording
        recording = false,
        stale = 0, -- states that arrived older than one already applied (must stay 0)
        malformed = 0,
        send_failures = 0,
    }, Game)
    self.addr = node:address()
    node:on("join", function(peer) self:on_join(peer) end)
    node:on("leave", function(peer, reason) self:on_leave(peer, reason) end)
    node:on("message", function(peer, mtype, data, info)
        return self:on_message(peer, mtype, data, info)
    end)
    node:on("error", function(e)
        self.errors[#self.errors + 1] = tostring(e)
        self:notice("error: " .. tostring(e))
    end)
    if opts.join then
        local ok, cerr = node:connect(opts.join)
        if not ok then
            node:close()
            return nil, cerr
        end
    end
    return self
end

-- The address this player listens on (it stays readable after close).
function Game:address()
    return self.addr
end

function Game:notice(text)
    self:add_chat(nil, text, nil)
end

function Game:add_chat(from, text, col)
    local chat = self.chat
    chat[#chat + 1] = { from = from, text = text, colour = col }
    if #chat > Game.CHAT_LINES then
        table.remove(chat, 1)
    end
end

function Game:on_join(peer)
    if self.players[peer.id] then
        self.players[peer.id].peer = peer -- a new session with the same player
        return
    end
    local known = self.known[peer.id]
    if known then -- back after leaving: what was seen of it stays
        known.peer = peer
        self.players[peer.id] = known
        self:notice(known.name .. " is back")
        return
    end
    local x, y = spawn(peer.id)
    self.players[peer.id] = {
        peer = peer,
        id = peer.id,
        name = "player-" .. peer.id:sub(1, 4),
        colour = colour(peer.id),
        x = x, y = y, -- last state received (spawn point until the first one)
        shown_x = x, shown_y = y, -- where it is drawn: eases towards x, y
        sx = nil, sy = nil, -- x and y as they came in the datagram, text
        last_tick = -1,
        states = 0,
        moving = false,
        saw_moving = false,
        settled = false, -- a still state after moving ones
        positions = 0, -- distinct positions seen
    }
    self.known[peer.id] = self.players[peer.id]
end

function Game:on_leave(peer, reason)
    local p = self.players[peer.id]
    if p and p.peer == peer then
        self.players[peer.id] = nil
        self:notice(p.name .. " left (" .. tostring(reason) .. ")")
    end
end

function Game:on_state(peer, data)
    local p = self.players[peer.id]
    local tick, sx, sy, moving, name =
        data:match("^(%d+) (%-?%d+%.%d+) (%-?%d+%.%d+) ([01]) (.*)$")
    local x, y = tonumber(sx), tonumber(sy)
    if not p or not tick or not x or not y then
        self.malformed = self.malformed + 1
        return
    end
    tick = tonumber(tick)
    if tick <= p.last_tick then
        self.stale = self.stale + 1 -- p2pnet drops these: counting proves it
        return
    end
    p.last_tick = tick
    p.states = p.states + 1
    if x ~= p.x or y ~= p.y or p.positions == 0 then
        p.positions = p.positions + 1
    end
    p.x = math.max(0, math.min(Game.WIDTH, x))
    p.y = math.max(0, math.min(Game.HEIGHT, y))
    p.sx, p.sy = sx, sy
    p.moving = moving == "1"
    if p.moving then
        p.saw_moving = true
        p.settled = false
    elseif p.saw_moving then
        p.settled = true
    end
    p.name = clean(name, Game.MAX_NAME)
    if not p.announced then -- the first state gives the name to show
        p.announced = true
        self:notice(p.name .. " joined")
    end
end

function Game:on_message(peer, mtype, data, info)
    if mtype == Game.MSG_STATE and info.sequenced then
        self:on_state(peer, data)
    elseif mtype == Game.MSG_CHAT then
        local from = info.origin or peer.id
        local p = self.players[from]
        self.chat_from[from] = true
        self.last_chat[from] = clean(data, Game.MAX_CHAT)
        self:add_chat(p and p.name or ("player-" .. from:sub(1, 4)), clean(data, Game.MAX_CHAT),
                      p and p.colour or colour(from))
    elseif mtype == Game.MSG_DONE then
        self.done_from[peer.id] = true
        return "ok"
    end
end

-- Moves this player by (dx, dy) (each -1, 0 or 1) for dt seconds, then sends the state to
-- every player when a tick is due.
function Game:update(dt, dx, dy)
    if dx ~= 0 or dy ~= 0 then
        local len = math.sqrt(dx * dx + dy * dy)
        local x = math.max(Game.RADIUS, math.min(Game.WIDTH - Game.RADIUS,
                                                 self.x + dx / len * Game.SPEED * dt))
        local y = math.max(Game.RADIUS, math.min(Game.HEIGHT - Game.RADIUS,
                                                 self.y + dy / len * Game.SPEED * dt))
        if x ~= self.x or y ~= self.y then
            self.x, self.y, self.moved = x, y, true
        end
    end
    -- others are drawn easing towards their last state: smooth at any tick rate
    local k = math.min(1, dt * 15)
    for _, p in pairs(self.players) do
        p.shown_x = p.shown_x + (p.x - p.shown_x) * k
        p.shown_y = p.shown_y + (p.y - p.shown_y) * k
    end
    self.since_tick = self.since_tick + dt
    if self.since_tick >= 1 / Game.TICK_RATE then
        self.since_tick = self.since_tick % (1 / Game.TICK_RATE)
        self:send_state()
    end
end

-- The state as it goes on the wire, and as the bot prints it (the same text both ways).
function Game:state_text()
    return ("%.2f"):format(self.x), ("%.2f"):format(self.y)
end

function Game:send_state()
    self.tick = self.tick + 1
    local sx, sy = self:state_text()
    local data = ("%d %s %s %d %s"):format(self.tick, sx, sy, self.moved and 1 or 0, self.name)
    self.moved = false
    local opts = { sequenced = true, lane = Game.STATE_LANE }
    for _, p in pairs(self.players) do
        if p.peer.state == "connected" then
            local ok = p.peer:send_unreliable(Game.MSG_STATE, data, opts)
            if not ok then
                self.send_failures = self.send_failures + 1
            end
        end
    end
end

-- Sends a chat line to every player (reliable, exactly once each).
function Game:say(text)
    text = clean(text, Game.MAX_CHAT)
    if text == "" then
        return
    end
    self.node:broadcast(Game.MSG_CHAT, text)
    self:add_chat(self.name, text, self.colour)
end

-- The network part of a frame: poll(0), timed. Its cost is what a frame pays for p2pnet.
function Game:poll()
    local t0 = self.clock()
    self.node:poll(0)
    local us = (self.clock() - t0) * 1e6
    self.last_poll_us = us
    if self.recording then
        self.poll_us[#self.poll_us + 1] = us
    end
end

-- Median, 99th percentile and maximum of the recorded poll(0) times, in microseconds.
function Game:poll_figures()
    local s = {}
    for i, v in ipairs(self.poll_us) do
        s[i] = v
    end
    table.sort(s)
    local n = #s
    if n == 0 then
        return 0, 0, 0, 0
    end
    return n, s[math.ceil(n * 0.5)], s[math.ceil(n * 0.99)], s[n]
end

function Game:count()
    local n = 0
    for _, p in pairs(self.players) do
        if p.peer.state == "connected" then
            n = n + 1
        end
    end
    return n
end

function Game:close()
    if not self.closed then
        self.closed = true
        self.node:close()
    end
end

return Game
