-- examples/love in real LÖVE 11 processes (Debian's `love`, LuaJIT), as a player runs it:
-- headless players that find each other by --host/--join on 127.0.0.1, move and chat, and
-- check what they saw (the game's --bot); a player with a real window and OpenGL (SDL's
-- offscreen video driver and Mesa: no X server); a game shipped as a .love archive with
-- p2pnet/core.so beside it; and the failures a user meets first. Each process prints what
-- it saw, and the spec compares one player's view of another with that player's own
-- position. The headless run prints the frame cost of poll(0) (docs/LOVE.md).
-- #host: left out of the sanitizer run, like the other specs that start a real host.
local S = require "spec.support"

local function q(s)
    return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function sh(cmd)
    local ok, _, code = os.execute(cmd)
    return ok == true or ok == 0, code
end

local function exists(path)
    local f = io.open(path, "rb")
    if f then f:close() end
    return f ~= nil
end

local ROOT = assert(io.popen("pwd")):read("l")
local GAME = ROOT .. "/examples/love"

describe("examples/love in LÖVE #host", function()
    local dir, started

    setup(function()
        assert.is_true(sh("command -v love >/dev/null"), "love is not installed (make deps)")
        -- LÖVE runs LuaJIT: the game needs the LuaJIT build of the module
        local log = os.tmpname()
        local ok = sh("make -s BUILD=build-luajit LUA_PC=luajit module >" .. q(log) .. " 2>&1")
        local out = S.read(log)
        os.remove(log)
        assert(ok, "building the LuaJIT module failed:\n" .. out)
        assert.is_true(exists(ROOT .. "/build-luajit/p2pnet/core.so"))
    end)

    before_each(function()
        dir = S.tmpdir()
        started = {}
    end)

    after_each(function()
        -- every process this test started and that is still running, whatever happened
        -- (one whose status was written has exited, and its pid may be reused)
        for _, p in ipairs(started) do
            if not (exists(p.rcfile) and S.read(p.rcfile):match("%d+")) then
                local pid = exists(p.pidfile) and S.read(p.pidfile):match("%d+")
                if pid then
                    os.execute("kill -9 " .. pid .. " 2>/dev/null")
                end
                os.execute("kill -9 " .. p.shell .. " 2>/dev/null")
            end
        end
        S.rmdir(dir)
    end)

    -- Starts `love <game> <args>` in the background with `env` (a string of VAR=value
    -- words), its output in <dir>/<name>.out. Returns a handle for wait/screen/expect.
    -- LUA_PATH and LUA_CPATH are cleared (busted's point at the Lua 5.4 build) unless `env`
    -- sets them, and the save directory is the test's own (XDG_DATA_HOME).
    local function start(name, args, env, game)
        local p = { name = name, out = dir .. "/" .. name .. ".out",
                    pidfile = dir .. "/" .. name .. ".pid", rcfile = dir .. "/" .. name .. ".rc" }
        local cmd = ("(env -u LUA_PATH -u LUA_CPATH XDG_DATA_HOME=%s %s love %s %s >%s 2>&1 "
                     .. "& echo $! >%s; wait $!; echo $? >%s) >/dev/null 2>&1 & echo $!")
            :format(q(dir .. "/data"), env or "", q(game or GAME), args, q(p.out), q(p.pidfile),
                    q(p.rcfile))
        local pipe = assert(io.popen(cmd))
        p.shell = assert(pipe:read("l"):match("^%d+$"))
        pipe:close()
        started[#started + 1] = p
        function p.screen()
            return exists(p.out) and S.read(p.out) or ""
        end
        -- waits for a pattern in the output; returns its captures
        function p.expect(pattern, seconds)
            local deadline = S.now() + (seconds or 20)
            while S.now() < deadline do
                local caps = { p.screen():match(pattern) }
                if #caps > 0 then return table.unpack(caps) end
                os.execute("sleep 0.05")
            end
            error(("%s never printed %q; it printed:\n%s"):format(name, pattern, p.screen()), 2)
        end
        -- waits for the exit; returns the status and the output
        function p.wait(seconds)
            local deadline = S.now() + (seconds or 60)
            while not (exists(p.rcfile) and S.read(p.rcfile):match("%d+")) do
                if S.now() > deadline then
                    error(("%s did not exit within %d s; it printed:\n%s"):format(
                        name, seconds or 60, p.screen()), 2)
                end
                os.execute("sleep 0.05")
            end
            return math.tointeger(tonumber(S.read(p.rcfile):match("%d+"))), p.screen()
        end
        return p
    end

    -- What a bot printed: its own position, what it saw of each other player, the poll(0)
    -- figures and its verdict.
    local function report(out)
        local r = { seen = {}, chat = {} }
        r.id, r.x, r.y = out:match("\nSELF (%x+) (%S+) (%S+)")
        for id, x, y, states, chat in out:gmatch("\nSEEN (%x+) (%S+) (%S+) states=(%d+)"
                                                  .. " positions=%d+ chat=([^\n]*)") do
            r.seen[id] = { x = x, y = y, states = tonumber(states) }
            r.chat[id] = chat
        end
        local n, median, p99, max = out:match(
            "\nPOLL samples=(%d+) median_us=(%S+) p99_us=(%S+) max_us=(%S+)")
        r.poll = { samples = tonumber(n), median = tonumber(median), p99 = tonumber(p99),
                   max = tonumber(max) }
        r.stale = tonumber(out:match("stale=(%d+)"))
        r.result = out:match("\nRESULT ([^\n]*)")
        return r
    end

    -- Runs bots: the first hosts, the others join it; all must see each other.
    -- `players` is a list of {name, extra args, env, game}.
    local function play(players)
        local host = players[1]
        local n = #players
        local procs = {}
        procs[1] = start(host[1], ("--bot --players %d --host 0 --bind 127.0.0.1 --name %s %s")
                         :format(n, host[1], host[2] or ""), host[3], host[4])
        local addr = procs[1].expect("\nLISTEN (127%.0%.0%.1:%d+)\n")
        for i = 2, n do
            local pl = players[i]
            procs[i] = start(pl[1], ("--bot --players %d --join %s --bind 127.0.0.1 --name %s %s")
                             :format(n, addr, pl[1], pl[2] or ""), pl[3], pl[4])
        end
        local reports = {}
        for i, p in ipairs(procs) do
            local code, out = p.wait(60)
            assert.equal(0, code, p.name .. " failed; it printed:\n" .. out)
            reports[i] = report(out)
            assert.equal("ok", reports[i].result, out)
            assert.equal(0, reports[i].stale, "a state was applied out of order")
        end
        -- each one's view of every other is that player's final position and chat line
        for i, r in ipairs(reports) do
            for j, other in ipairs(reports) do
                if i ~= j then
                    local seen = r.seen[other.id]
                    assert.is_table(seen, players[i][1] .. " never saw " .. players[j][1])
                    assert.same({ other.x, other.y }, { seen.x, seen.y },
                                players[i][1] .. "'s view of " .. players[j][1])
                    assert.is_true(seen.states >= 10)
                    assert.equal("hello from " .. players[j][1], r.chat[other.id])
                end
            end
        end
        return reports
    end

    it("two headless players find each other, see each other's moves and chat", function()
        -- one headless by the environment variable, one by the flag
        local r = play { { "alice", "--frames 180", "P2PNET_LOVE_HEADLESS=1" },
                         { "bob", "--frames 180 --headless" } }
        for i, who in ipairs { "alice", "bob" } do
            local p = r[i].poll
            assert.is_true(p.samples >= 180, who .. ": " .. tostring(p.samples) .. " samples")
            assert.is_true(p.median > 0 and p.median <= p.p99 and p.p99 <= p.max)
            print(("\n  LÖVE %s poll(0) per frame: median %.1f us, p99 %.1f us, max %.1f us"
                   .. " (%d frames at 60 fps)"):format(who, p.median, p.p99, p.max, p.samples))
        end
    end)

    it("three players, one of them with a window (OpenGL through SDL's offscreen driver)",
       function()
        play { { "carol", "", "SDL_VIDEODRIVER=offscreen" },
               { "dave", "--headless" }, { "erin", "--headless" } }
    end)

    it("ships as a .love archive: core.so beside it, or inside it and copied out", function()
        -- the game and the Lua half of p2pnet in the archive
        local stage, core = dir .. "/stage", ROOT .. "/build-luajit/p2pnet/core.so"
        local function pack(love_file)
            assert(sh(("mkdir -p %s && cd %s && zip -q -r %s ."):format(
                q(love_file:match("^(.*)/")), q(stage), q(love_file))))
        end
        assert(sh(("mkdir -p %s/p2pnet && cp %s/*.lua %s/ && cp %s/lua/p2pnet/*.lua %s/p2pnet/")
            :format(q(stage), q(GAME), q(stage), q(ROOT), q(stage))))
        pack(dir .. "/bare/field.love")
        -- no source tree, and LUA_CPATH names nothing: only what ships with the game counts
        local env = "LUA_CPATH=" .. q(dir .. "/none/?.so")

        -- nothing beside it and nothing inside: the player is told what to do
        local p = start("nowhere", "--headless --host 0 --bind 127.0.0.1", env,
                        dir .. "/bare/field.love")
        local code, out = p.wait(30)
        assert.equal(2, code, out)
        assert.matches("cannot load p2pnet", out, 1, true)
        assert.matches("make BUILD=build-luajit LUA_PC=luajit module", out, 1, true)

        -- frank's copy has p2pnet/core.so beside field.love; grace's has it inside, which
        -- LÖVE cannot load in place: the game copies it to the save directory first
        pack(dir .. "/beside/field.love")
        assert(sh(("mkdir -p %s/beside/p2pnet && cp %s %s/beside/p2pnet/"):format(
            q(dir), q(core), q(dir))))
        assert(sh(("cp %s %s/p2pnet/"):format(q(core), q(stage))))
        pack(dir .. "/inside/field.love")
        play { { "frank", "--headless", env, dir .. "/beside/field.love" },
               { "grace", "--headless", env, dir .. "/inside/field.love" } }
        local find = assert(io.popen(("ls %s/data/love/p2pnet-love/native/*/p2pnet/core.so")
                                     :format(q(dir))))
        local copied = find:read("l")
        find:close()
        assert.is_string(copied, "no copy of core.so in the save directory")
        assert.is_true(S.read(copied) == S.read(core), "the copy differs from core.so")
    end)

    it("says what is wrong, with status 2, for bad arguments and a port in use", function()
        for i, args in ipairs { "--join", "--host 70000", "--host 1 --join 127.0.0.1:1",
                                "--frobnicate" } do
            local p = start("bad" .. i, "--headless " .. args)
            local code, out = p.wait(30)
            assert.equal(2, code, args .. ": " .. out)
            assert.matches("usage: love <game>", out, 1, true)
        end
        local holder = start("holder", "--headless --host 0 --bind 127.0.0.1")
        local addr = holder.expect("\nLISTEN (127%.0%.0%.1:%d+)\n")
        local p = start("second", "--headless --bind 127.0.0.1 --host " .. addr:match("%d+$"))
        local code, out = p.wait(30)
        assert.equal(2, code, out)
        assert.matches("Address already in use", out, 1, true)
    end)
end)

-- The game's network half (examples/love/game.lua needs nothing from LÖVE) on the simulator,
-- over a link that loses, duplicates and reorders: the states a player applies never go
-- back in time (p2pnet drops the late ones and counts them), each player ends where the
-- other one stopped, and each chat line arrives exactly once. Deterministic (one seed).
describe("examples/love game.lua over a bad simulated link", function()
    local p2pnet = require "p2pnet"
    local Game = assert(loadfile(ROOT .. "/examples/love/game.lua"))()

    it("applies only newer states and delivers chat exactly once", function()
        local sim = p2pnet.sim { seed = 11, latency = 0.03, jitter = 0.02, loss = 0.1,
                                 duplicate = 0.1, reorder = 0.3 }
        -- Game.new makes its node with p2pnet.node{...}: here, a simulated one
        local on_sim = { node = function() return sim:node() end }
        local a = assert(Game.new(on_sim, { name = "ann" }))
        local b = assert(Game.new(on_sim, { name = "ben", join = a:address() }))
        local frame = 1 / 60
        local function frames(n, a_dir, b_dir)
            for _ = 1, n do
                a:update(frame, a_dir[1], a_dir[2])
                b:update(frame, b_dir[1], b_dir[2])
                sim:run(frame)
            end
        end
        frames(120, { 0, 0 }, { 0, 0 }) -- joined and still
        assert.equal(1, a:count())
        assert.equal(1, b:count())
        a:say("hi from ann")
        b:say("hi from ben")
        frames(90, { 1, 0 }, { 0, -1 }) -- both walk for 1.5 s
        frames(90, { 0, 0 }, { 0, 0 }) -- and stand still
        local pa, pb = b.players[a.id], a.players[b.id]
        assert.same({ a:state_text() }, { pa.sx, pa.sy })
        assert.same({ b:state_text() }, { pb.sx, pb.sy })
        assert.is_true(pa.positions > 10 and pb.positions > 10)
        assert.is_true(pa.settled and pb.settled)
        assert.equal(0, a.stale + b.stale, "a state older than one applied was delivered")
        assert.equal(0, a.malformed + b.malformed)
        local dropped = a.node:stats().dropped_stale + b.node:stats().dropped_stale
        assert.is_true(dropped > 0, "the link reordered nothing: the test proves nothing")
        local function lines(game, text)
            local n = 0
            for _, c in ipairs(game.chat) do
                if c.text == text then n = n + 1 end
            end
            return n
        end
        assert.equal(1, lines(a, "hi from ben"))
        assert.equal(1, lines(b, "hi from ann"))
        a:close()
        b:close()
    end)
end)
