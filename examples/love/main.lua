-- p2pnet field: players move on a shared field and chat, peer to peer.
--
--   love examples/love --host 7777                 start a field on UDP port 7777
--   love examples/love --join 192.168.1.20:7777    join it (any player's address works)
--
-- Arrow keys or WASD move, Enter opens the chat line and sends it, Esc closes it or quits.
-- Positions go as sequenced unreliable datagrams (newest wins), chat as reliable broadcasts;
-- see game.lua. Options:
--   --host PORT      listen on PORT (0: any free port); the default is --host 7777
--   --join ADDR      join the player at ADDR ("host:port"); listens on a free port (or --port)
--   --port PORT      with --join: the port to listen on
--   --bind ADDR      the local address to bind (default 0.0.0.0: every interface)
--   --name NAME      the name shown to the others
--   --headless       no window (also P2PNET_LOVE_HEADLESS=1; see conf.lua)
--   --bot            a scripted player that checks what it sees and quits (bot.lua), with
--   --players N      players to wait for, itself included (default 2)
--   --frames N       frames to play once all are in (default 120)
--   --timeout S      give up after S seconds (default 30): exit status 1
--   --fps N          headless: frames per second (default 60, as vsync would give)
-- Exit status: 0 normally and when the bot saw everything, 1 when the bot timed out, 2 for
-- bad arguments or a node that cannot start.
-- luacheck: globals love
local netload = require "netload"
local Game = require "game"
local Bot = require "bot"

local game, bot, headless, fps, next_frame
local chatting, typed = false, ""
local poll_shown = 0 -- poll(0) time on screen, smoothed
local fatal -- a message shown instead of the field when the game could not start

local USAGE = "usage: love <game> [--host PORT | --join ADDR [--port PORT]] [--bind ADDR] "
    .. "[--name NAME] [--headless] [--bot [--players N] [--frames N] [--timeout S]] [--fps N]"

local function parse(args)
    local o = { players = 2, frames = 120, timeout = 30, fps = 60 }
    local takes = { host = "port", port = "port", join = "string", bind = "string",
                    name = "string", players = "count", frames = "count", timeout = "count",
                    fps = "count" }
    local i = 1
    while i <= #args do
        local flag = args[i]:match("^%-%-(.+)$")
        if flag == "headless" or flag == "bot" then
            o[flag] = true
        elseif flag and takes[flag] then
            local v = args[i + 1]
            if v == nil then
                return nil, "--" .. flag .. " needs a value"
            end
            if takes[flag] == "string" then
                o[flag] = v
            else
                local n = tonumber(v)
                if not n or n % 1 ~= 0 or n < 0 or (takes[flag] == "port" and n > 65535)
                    or (takes[flag] == "count" and n < 1) then
                    return nil, "--" .. flag .. ": bad value '" .. v .. "'"
                end
                o[flag] = n
            end
            i = i + 1
        else
            return nil, "unknown argument '" .. args[i] .. "'"
        end
        i = i + 1
    end
    if o.host and o.join then
        return nil, "--host and --join exclude each other"
    end
    if o.port and not o.join then
        return nil, "--port goes with --join (--host takes the port itself)"
    end
    if not o.join and not o.host then
        o.host = 7777
    end
    return o
end

-- Ends the game before it started: the message on stderr, and on screen when there is one.
local function fail(msg)
    io.stderr:write("p2pnet field: ", msg, "\n")
    if headless then
        love.event.quit(2)
    else
        fatal = msg -- stays on screen; Esc quits
    end
end

function love.load(args)
    io.stdout:setvbuf("line") -- the lines below are read by scripts while the game runs
    headless = love.graphics == nil
    local o, err = parse(args)
    if not o then
        return fail(err .. "\n" .. USAGE)
    end
    local p2pnet
    p2pnet, err = netload.load()
    if not p2pnet then
        return fail(err)
    end
    game, err = Game.new(p2pnet, { bind = o.bind, port = o.host or o.port, join = o.join,
                                   name = o.name, clock = love.timer.getTime })
    if not game then
        return fail(err)
    end
    print("ID " .. game.id)
    print("LISTEN " .. game:address())
    if o.bot then
        bot = Bot.new(game, { players = o.players, frames = o.frames, timeout = o.timeout,
                              clock = love.timer.getTime, push = love.event.push,
                              quit = love.event.quit })
    end
    game.recording = not bot -- a player's session: poll(0) figures printed on quit
    fps = o.fps
    if not headless then
        love.window.setTitle(("p2pnet field: %s at %s"):format(game.name, game:address()))
        love.keyboard.setKeyRepeat(true)
    end
end

-- The direction the arrow keys (or WASD) hold.
local function keys()
    if chatting or not love.keyboard then
        return 0, 0
    end
    local down = love.keyboard.isDown
    local dx = (down("right", "d") and 1 or 0) - (down("left", "a") and 1 or 0)
    local dy = (down("down", "s") and 1 or 0) - (down("up", "w") and 1 or 0)
    return dx, dy
end

-- Headless there is no vsync to hold the frame rate: sleep to keep `fps` frames a second.
local function pace()
    local now = love.timer.getTime()
    next_frame = (next_frame or now) + 1 / fps
    if next_frame > now then
        love.timer.sleep(next_frame - now)
    else
        next_frame = now -- late: start again from here rather than run to catch up
    end
end

function love.update(dt)
    if headless and fps then
        pace()
    end
    if not game or game.closed then
        return
    end
    game:poll()
    if game.closed then -- a handler may not close it, but the bot can
        return
    end
    local dx, dy = keys()
    if bot then
        local bx, by = bot:update(dt)
        if game.closed then
            return
        end
        dx, dy = dx + bx, dy + by
    end
    game:update(dt, dx, dy)
    poll_shown = poll_shown + ((game.last_poll_us or 0) - poll_shown) * 0.05
end

function love.keypressed(key)
    if chatting then
        if key == "return" or key == "kpenter" then
            if game and not game.closed then
                game:say(typed)
            end
            chatting, typed = false, ""
        elseif key == "escape" then
            chatting, typed = false, ""
        elseif key == "backspace" then
            -- remove the last UTF-8 character, continuation bytes and all
            typed = typed:gsub("[^\128-\191][\128-\191]*$", "")
        end
    elseif key == "return" or key == "kpenter" then
        chatting, typed = true, ""
    elseif key == "escape" then
        love.event.quit(fatal and 2 or 0)
    end
end

function love.textinput(text)
    if chatting then
        typed = Game.clean(typed .. text, Game.MAX_CHAT)
    end
end

function love.quit()
    if game and not game.closed then
        if not bot then
            local n, median, p99, max = game:poll_figures()
            print(("POLL samples=%d median_us=%.1f p99_us=%.1f max_us=%.1f"):format(
                n, median, p99, max))
        end
        game:close()
    end
end

---------------------------------------------------------------------------------------------
-- Drawing (only with a window)

local function text_centred(s, x, y)
    local w = love.graphics.getFont():getWidth(s)
    x = math.max(2, math.min(Game.WIDTH - w - 2, x - w / 2)) -- never off the edge
    love.graphics.print(s, math.floor(x), math.floor(y))
end

local function draw_player(name, col, x, y, me)
    local g = love.graphics
    g.setColor(col[1], col[2], col[3])
    g.circle("fill", x, y, Game.RADIUS)
    if me then
        g.setColor(1, 1, 1)
        g.setLineWidth(2)
        g.circle("line", x, y, Game.RADIUS + 3)
    end
    g.setColor(1, 1, 1, 0.9)
    text_centred(name, x, y - Game.RADIUS - 18)
end

function love.draw()
    local g = love.graphics
    g.clear(0.08, 0.09, 0.12)
    if fatal or not game then
        g.setColor(1, 0.6, 0.6)
        g.printf((fatal or "starting...") .. "\n\nEsc quits.", 20, 20, Game.WIDTH - 40)
        return
    end
    g.setColor(1, 1, 1, 0.05)
    for x = 0, Game.WIDTH, 50 do
        g.line(x, 0, x, Game.HEIGHT)
    end
    for y = 0, Game.HEIGHT, 50 do
        g.line(0, y, Game.WIDTH, y)
    end
    for _, p in pairs(game.players) do
        draw_player(p.name, p.colour, p.shown_x, p.shown_y, false)
    end
    draw_player(game.name, game.colour, game.x, game.y, true)

    g.setColor(0.8, 0.85, 0.9)
    g.print(("%s at %s   players: %d   poll(0): %.0f us"):format(
        game.name, game:address(), game:count() + 1, poll_shown), 10, 8)
    g.setColor(0.55, 0.6, 0.65)
    g.print("arrows/WASD move   Enter chat   Esc quit", 10, Game.HEIGHT - 22)

    local line_h = g.getFont():getHeight() + 2
    local y = Game.HEIGHT - 48 - line_h * #game.chat
    for _, c in ipairs(game.chat) do
        if c.from then
            local col = c.colour or { 1, 1, 1 }
            g.setColor(col[1], col[2], col[3])
            g.print(c.from .. ": " .. c.text, 10, y)
        else
            g.setColor(0.6, 0.6, 0.6)
            g.print("* " .. c.text, 10, y)
        end
        y = y + line_h
    end
    if chatting then
        g.setColor(1, 1, 1)
        g.print("say: " .. typed .. "_", 10, Game.HEIGHT - 44)
    end
end
