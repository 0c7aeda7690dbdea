-- The scripted player (`--bot`): plays like a user would and checks what it saw.
--
-- It waits until `players` players are on the field (itself included), then walks a fixed
-- path (right, down, left) and stands still, and types one chat line through LÖVE's event
-- queue (Enter, the text, Enter), the same way keystrokes reach main.lua. From then on it
-- counts frames. It is satisfied when, for every other player, it has seen at least
-- MIN_STATES states, movement (MIN_POSITIONS distinct positions, then a still state: the
-- other one's final position) and its chat line, with no state applied out of order. After
-- `frames` frames and once satisfied, it tells every player so (MSG_DONE, reliable, with a
-- reply), and it quits when every player has answered and said the same: no one leaves
-- before the others have seen all they wait for. It prints what it saw and exits with 0,
-- or with 1 and the reasons when `timeout` seconds pass first.
local Game = require "game"

local Bot = {}
Bot.__index = Bot

local MIN_STATES = 10
local MIN_POSITIONS = 3
-- The walk: direction and seconds.
local PATH = { { 1, 0, 0.5 }, { 0, 1, 0.5 }, { -1, 0, 0.25 } }

-- opts: players (default 2), frames (default 120), timeout (seconds, default 30),
-- clock (seconds), push (love.event.push), quit (function(code)), out (function(line)).
function Bot.new(game, opts)
    return setmetatable({
        game = game,
        players = opts.players or 2,
        frames_wanted = opts.frames or 120,
        clock = opts.clock,
        deadline = opts.clock() + (opts.timeout or 30),
        push = opts.push,
        quit = opts.quit,
        out = opts.out or print,
        phase = "waiting",
        frames = 0,
        leg = 1,
        leg_time = 0,
        acked = {},
        done_sent = nil, -- id -> true for every player told MSG_DONE
    }, Bot)
end

-- What is still missing before this player has seen everything; an empty list when nothing.
function Bot:missing()
    local game, miss = self.game, {}
    local others = game:count()
    if others < self.players - 1 then
        miss[#miss + 1] = ("players: %d of %d"):format(others + 1, self.players)
    end
    for id, p in pairs(game.players) do
        local who = p.name .. " (" .. id:sub(1, 8) .. ")"
        if p.states < MIN_STATES then
            miss[#miss + 1] = ("%s: %d states"):format(who, p.states)
        end
        if p.positions < MIN_POSITIONS or not p.saw_moving then
            miss[#miss + 1] = ("%s: no movement (%d positions)"):format(who, p.positions)
        elseif not p.settled then
            miss[#miss + 1] = who .. ": not yet at its final position"
        end
        if not game.chat_from[id] then
            miss[#miss + 1] = who .. ": no chat"
        end
    end
    if game.stale > 0 then
        miss[#miss + 1] = ("%d states applied out of order"):format(game.stale)
    end
    return miss
end

-- Called once per frame; returns the direction the bot "holds" (dx, dy).
function Bot:update(dt)
    local game = self.game
    if self.finished then
        return 0, 0
    end
    if self.clock() > self.deadline then
        return self:finish(1, self:missing())
    end
    if self.phase == "waiting" then
        if game:count() < self.players - 1 then
            return 0, 0
        end
        self.phase = "playing"
        game.recording = true
        -- type a chat line as a user does: Enter opens the line, Enter sends it
        self.push("keypressed", "return", "return", false)
        self.push("textinput", "hello from " .. game.name)
        self.push("keypressed", "return", "return", false)
    end
    self.frames = self.frames + 1
    local dx, dy = 0, 0
    local leg = PATH[self.leg]
    if leg then
        dx, dy = leg[1], leg[2]
        self.leg_time = self.leg_time + dt
        if self.leg_time >= leg[3] then
            self.leg, self.leg_time = self.leg + 1, 0
        end
    end
    if self.frames >= self.frames_wanted and not self.done_sent and #self:missing() == 0 then
        self.done_sent = {}
        for id, p in pairs(game.players) do
            self.done_sent[id] = true
            p.peer:send(Game.MSG_DONE, "", function(ok)
                if ok then
                    self.acked[id] = true
                end
            end)
        end
    end
    if self.done_sent then
        -- each one has said it is done, and has our word too (or has left: it needs it no more)
        local all = true
        for id in pairs(self.done_sent) do
            if not (game.done_from[id] and (self.acked[id] or not game.players[id])) then
                all = false
            end
        end
        if all then
            return self:finish(0, {})
        end
    end
    return dx, dy
end

function Bot:finish(code, missing)
    local game, out = self.game, self.out
    self.finished = true
    local sx, sy = game:state_text()
    out(("SELF %s %s %s %s"):format(game.id, sx, sy, game.name))
    for id, p in pairs(game.known) do
        out(("SEEN %s %s %s states=%d positions=%d chat=%s"):format(
            id, p.sx or "-", p.sy or "-", p.states, p.positions,
            game.last_chat[id] or "-"))
    end
    local n, median, p99, max = game:poll_figures()
    out(("POLL samples=%d median_us=%.1f p99_us=%.1f max_us=%.1f"):format(n, median, p99, max))
    out(("FRAMES %d stale=%d malformed=%d send_failures=%d"):format(
        self.frames, game.stale, game.malformed, game.send_failures))
    if code == 0 then
        out("RESULT ok")
    else
        out("RESULT fail: " .. table.concat(missing, "; "))
    end
    game:close()
    self.quit(code)
    return 0, 0
end

return Bot
