-- tests/soak/soak.lua - the soak test (`make soak`): a mesh of real p2pnet processes on
-- 127.0.0.1 (tests/soak/node.lua), with churn, for SOAK_TIME seconds (default 3600).
--
--   long-lived  L1..L4 run from start to end; their memory is watched
--   churn       C1..C3 are killed with SIGKILL or closed gracefully, and restarted a few
--               seconds later with the same key file (a new port: a new address)
--   transient   up to 2 at a time, with a fresh identity, join for 10-40 s and leave
--
-- Every process sends a reliable message with a receipt to each connected peer twice a second
-- and a broadcast every 1-3 s. At the end every process stops sending, waits DRAIN seconds for
-- the last receipts, logs what is still open and closes. Then the logs are checked:
--
--   * every stream (the messages one process sent on one session) arrived in order without a
--     duplicate or a gap, on one session, and each receipt named its message;
--   * no message that got a receipt is missing at the receiver;
--   * a session that both ends still held at the end delivered and receipted every message;
--   * each process received each broadcast at most once, and every broadcast between two
--     long-lived processes whose session stayed up arrived (exactly once);
--   * memory stays flat on the long-lived processes: after the warm-up (WARMUP, or a tenth of
--     the run if longer), the average RSS of the last quarter is within RSS_SLACK (25%) +
--     1 MiB of the first quarter's, and so is the core's stats().memory (when the build has
--     it) within 50% + 1 MiB.
--
-- Prints a summary; exits 1 on any violation. The logs stay in SOAK_DIR (default a new
-- directory under /tmp) for inspection.
--
-- Environment: SOAK_TIME (seconds), SOAK_DIR, SOAK_SEED (churn randomness), LUA_PATH and
-- LUA_CPATH as for any p2pnet program (make soak sets them).
local socket = require "socket"

local SOAK_TIME = tonumber(os.getenv("SOAK_TIME") or "") or 3600
local WARMUP = math.max(30, SOAK_TIME / 10)
local DRAIN = 8
local TICK = 0.5
local CHURN_EVERY = 4            -- seconds between churn events, on average
local RSS_SLACK, RSS_PAD = 0.25, 1024          -- KiB
local MEM_SLACK, MEM_PAD = 0.5, 1024 * 1024    -- bytes
local N_LONG, N_CHURN, MAX_TRANSIENT = 4, 3, 2

local here = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/"
local lua = arg[-1] or "lua5.4"
local now = socket.gettime
local t0 = now()
local seed = tonumber(os.getenv("SOAK_SEED") or "") or os.time()
math.randomseed(seed)
local dir = os.getenv("SOAK_DIR")
    or string.format("/tmp/p2pnet-soak-%d-%d", os.time(), math.random(1e6))
assert(os.execute("mkdir -p '" .. dir .. "'"))

local function sleep(s) socket.sleep(s) end
local function elapsed() return now() - t0 end
local function note(fmt, ...)
    io.write(string.format("[%7.1f] " .. fmt .. "\n", elapsed(), ...))
    io.flush()
end

local function read_file(path)
    local f = io.open(path)
    if not f then return nil end
    local s = f:read("a")
    f:close()
    return s
end

local function write_file(path, text)
    local f = assert(io.open(path, "w"))
    f:write(text, "\n")
    f:close()
end

-- ---- processes -----------------------------------------------------------------------------

-- every launch: { name, role, instance, pid, log, ctl, key, started, ended, how }
local procs = {}
local by_name = {}      -- the current launch of each name
local launches = {}
local counts = { started = 0, killed = 0, closed = 0, restarted = 0, transient = 0 }

local function alive(p)
    if not p.pid or p.ended then return false end
    local st = read_file("/proc/" .. p.pid .. "/status")
    return st ~= nil and not st:match("State:%s*Z")
end

local function address_of(p)
    for _ = 1, 100 do
        local text = read_file(p.log)
        local a = text and text:match("ADDR (%S+)")
        if a then return a end
        if not alive(p) then return nil end
        sleep(0.05)
    end
    return nil
end

local function long_addresses()
    local list = {}
    for i = 1, N_LONG do
        local p = by_name["L" .. i]
        if p and p.addr and alive(p) then list[#list + 1] = p.addr end
    end
    return list
end

local function launch(name, role, key, bootstrap)
    launches[name] = (launches[name] or 0) + 1
    local instance = name .. "#" .. launches[name]
    local p = {
        name = name, role = role, instance = instance, key = key or "-",
        log = dir .. "/" .. instance .. ".log", ctl = dir .. "/" .. instance .. ".ctl",
        started = elapsed(),
    }
    os.remove(p.ctl)
    local cmd = string.format("exec %s %snode.lua %s %s %s %s", lua, here, instance, p.key,
        p.log, p.ctl)
    for _, b in ipairs(bootstrap or {}) do cmd = cmd .. " " .. b end
    local out = dir .. "/" .. instance .. ".out"
    local h = assert(io.popen("(" .. cmd .. " >>" .. out .. " 2>&1) & echo $!"))
    p.pid = tonumber(h:read("l"))
    h:close()
    assert(p.pid, "could not start " .. instance)
    p.addr = address_of(p)
    if not p.addr then error("process " .. instance .. " did not start: see " .. dir) end
    procs[#procs + 1] = p
    by_name[name] = p
    counts.started = counts.started + 1
    return p
end

local function kill(p)
    os.execute("kill -9 " .. p.pid .. " 2>/dev/null")
    p.ended, p.how = elapsed(), "killed"
    counts.killed = counts.killed + 1
end

local function close(p)
    write_file(p.ctl, "leave")
    p.closing = elapsed()
end

local function random_bootstrap()
    local list = long_addresses()
    return { list[math.random(#list)] }
end

-- ---- the run -------------------------------------------------------------------------------

note("soak: %d s, logs in %s (seed %d)", SOAK_TIME, dir, seed)
launch("L1", "long", dir .. "/L1.key", {})
for i = 2, N_LONG do launch("L" .. i, "long", dir .. "/L" .. i .. ".key", { by_name.L1.addr }) end
for i = 1, N_CHURN do launch("C" .. i, "churn", dir .. "/C" .. i .. ".key", random_bootstrap()) end
note("started %d long-lived and %d churn processes", N_LONG, N_CHURN)

local restart_at = {}   -- churn name -> time
local next_churn = WARMUP / 2
while elapsed() < SOAK_TIME do
    sleep(TICK)
    local t = elapsed()
    -- processes that left on their own (graceful closes) or died
    for _, p in ipairs(procs) do
        if not p.ended and not alive(p) then
            p.ended = t
            p.how = p.closing and "closed" or "died"
            if p.how == "closed" then counts.closed = counts.closed + 1 end
            if p.how == "died" then
                note("%s died unexpectedly (see %s/%s.out)", p.instance, dir, p.instance)
                p.died = true
            end
            if p.role == "churn" then restart_at[p.name] = t + 3 + 5 * math.random() end
        end
        if p.role == "transient" and not p.closing and not p.ended and t >= p.leave_at then
            close(p)
        end
    end
    for name, at in pairs(restart_at) do
        if t >= at then
            restart_at[name] = nil
            local p = launch(name, "churn", dir .. "/" .. name .. ".key", random_bootstrap())
            counts.restarted = counts.restarted + 1
            note("restarted %s (same key) at %s", p.instance, p.addr)
        end
    end
    if t >= next_churn then
        next_churn = t + CHURN_EVERY * (0.5 + math.random())
        local r = math.random()
        local live = {}
        for i = 1, N_CHURN do
            local p = by_name["C" .. i]
            if p and not p.ended and not p.closing then live[#live + 1] = p end
        end
        local ntransient = 0
        for _, p in ipairs(procs) do
            if p.role == "transient" and not p.ended then ntransient = ntransient + 1 end
        end
        if r < 0.5 and #live > 0 then
            local p = live[math.random(#live)]
            kill(p)
            restart_at[p.name] = t + 3 + 5 * math.random()
            note("SIGKILL %s", p.instance)
        elseif r < 0.7 and #live > 0 then
            local p = live[math.random(#live)]
            close(p)
            note("closing %s", p.instance)
        elseif ntransient < MAX_TRANSIENT then
            counts.transient = counts.transient + 1
            local p = launch("T" .. counts.transient, "transient", nil, random_bootstrap())
            p.leave_at = t + 10 + 30 * math.random()
            note("joined %s at %s", p.instance, p.addr)
        end
    end
end

-- ---- the end: stop, drain, exit ------------------------------------------------------------

local t_stop = elapsed()
note("stopping: no more sends; %d s to drain", DRAIN)
for _, p in ipairs(procs) do
    if not p.ended and not p.closing then write_file(p.ctl, "stop") end
end
sleep(DRAIN)
for _, p in ipairs(procs) do
    if not p.ended and not p.closing then write_file(p.ctl, "final") end
end
sleep(2)
for _, p in ipairs(procs) do
    if not p.ended and not p.closing then write_file(p.ctl, "exit") end
end
local deadline = now() + 20
while now() < deadline do
    local any = false
    for _, p in ipairs(procs) do
        if not p.ended and alive(p) then any = true end
    end
    if not any then break end
    sleep(0.2)
end
for _, p in ipairs(procs) do
    if not p.ended then
        if alive(p) then
            note("%s did not exit: killed", p.instance)
            os.execute("kill -9 " .. p.pid .. " 2>/dev/null")
            p.how = "hung"
        else
            p.how = "exited"
        end
        p.ended = elapsed()
    end
end

-- ---- the checks ----------------------------------------------------------------------------

local violations = {}
local function violation(fmt, ...)
    violations[#violations + 1] = string.format(fmt, ...)
end

local sstreams, rstreams = {}, {}
local bsent = {}                   -- broadcast id -> { origin instance, t }
local joins = {}                   -- instance -> peer id -> list of { join t, leave t }
local last_instance_of = {}        -- node id -> the last instance that ran with it
local exited = {}                  -- instance -> logged EXIT
local mem = {}                     -- instance -> list of { t, rss, memory }
local brecv_total, bdups = 0, 0
local brecv = {}                   -- instance -> set of broadcast ids
local node_id = {}                 -- instance -> its id (from the logs of others: JOIN lines)
local totals = { sent = 0, ok = 0, failed = 0, delivered = 0, strict = 0 }

for _, p in ipairs(procs) do
    if p.died then violation("%s died (not killed by the test)", p.instance) end
    local text = read_file(p.log) or ""
    joins[p.instance] = {}
    brecv[p.instance] = {}
    mem[p.instance] = {}
    for line in text:gmatch("[^\n]+") do
        local w = {}
        for x in line:gmatch("%S+") do w[#w + 1] = x end
        local k = w[1]
        if k == "SSTREAM" then
            sstreams[w[2]] = { from = p, to = w[3], sent = tonumber(w[4]), ok = tonumber(w[5]),
                               okmax = tonumber(w[6]), failed = tonumber(w[7]), how = w[8] }
        elseif k == "RSTREAM" then
            rstreams[w[2]] = { at = p, last = tonumber(w[3]), how = w[4] }
        elseif k == "BSENT" then
            bsent[w[3]] = { origin = p, t = tonumber(w[2]) - t0 }
        elseif k == "BRECV" then
            brecv_total = brecv_total + 1
            if brecv[p.instance][w[3]] then
                bdups = bdups + 1
                violation("%s received broadcast %s twice", p.instance, w[3])
            end
            brecv[p.instance][w[3]] = true
        elseif k == "JOIN" then
            local l = joins[p.instance][w[3]] or {}
            joins[p.instance][w[3]] = l
            l[#l + 1] = { tonumber(w[2]) - t0, math.huge }
        elseif k == "LEAVE" then
            local l = joins[p.instance][w[3]]
            if l and #l > 0 then l[#l][2] = tonumber(w[2]) - t0 end
        elseif k == "MEM" then
            table.insert(mem[p.instance], { tonumber(w[2]) - t0, tonumber(w[3]), tonumber(w[4]) })
        elseif k == "VIOLATION" then
            violation("%s: %s", p.instance, line:sub(11))
        elseif k == "EXIT" then
            exited[p.instance] = true
        end
    end
end

-- ids: a process's id is what its peers saw in JOIN; key files give the same id to each launch
for _, p in ipairs(procs) do
    if p.key ~= "-" then
        local ident = require("p2pnet").identity(p.key)
        node_id[p.instance] = ident.id
        last_instance_of[ident.id] = p.instance
    end
end

for id, s in pairs(sstreams) do
    totals.sent = totals.sent + s.sent
    totals.ok = totals.ok + s.ok
    totals.failed = totals.failed + s.failed
    local r = rstreams[id]
    if r then
        totals.delivered = totals.delivered + r.last
        if r.last > s.sent then
            violation("stream %s: %d delivered of %d sent", id, r.last, s.sent)
        end
        if s.okmax > r.last then
            violation("stream %s: receipt for message %d, but %d delivered", id, s.okmax, r.last)
        end
    end
    if s.how == "up" and s.sent > 0 then
        local rinst = last_instance_of[s.to]
        local rup = r and r.how == "up"
        if rup or (not r and rinst and exited[rinst]) then
            totals.strict = totals.strict + 1
            local last = r and r.last or 0
            if last ~= s.sent or s.ok ~= s.sent then
                violation("stream %s (up at both ends): %d sent, %d delivered, %d receipts",
                    id, s.sent, last, s.ok)
            end
        end
    end
end

-- broadcasts between long-lived processes whose session stayed up
local bchecked, bmissing = 0, 0
local function session_up(rinst, oid, t)
    for _, j in ipairs(joins[rinst][oid] or {}) do
        if j[1] < t and j[2] >= t_stop + DRAIN then return true end
    end
    return false
end
for bid, b in pairs(bsent) do
    if b.origin.role == "long" and b.t > WARMUP and b.t < t_stop then
        local oid = node_id[b.origin.instance]
        for i = 1, N_LONG do
            local r = by_name["L" .. i]
            if r ~= b.origin and session_up(r.instance, oid, b.t) then
                bchecked = bchecked + 1
                if not brecv[r.instance][bid] then
                    bmissing = bmissing + 1
                    violation("broadcast %s of %s never reached %s", bid, b.origin.instance,
                        r.instance)
                end
            end
        end
    end
end

-- memory
local memrows = {}
local function quarter_avgs(samples, field)
    local from, to = WARMUP, t_stop
    local q = (to - from) / 4
    local a, na, b, nb = 0, 0, 0, 0
    for _, s in ipairs(samples) do
        if s[1] >= from and s[1] < from + q then a, na = a + s[field], na + 1 end
        if s[1] >= to - q and s[1] <= to then b, nb = b + s[field], nb + 1 end
    end
    if na == 0 or nb == 0 then return nil end
    return a / na, b / nb
end
for i = 1, N_LONG do
    local p = by_name["L" .. i]
    local first, last = quarter_avgs(mem[p.instance], 2)
    local mfirst, mlast = quarter_avgs(mem[p.instance], 3)
    if not first then
        violation("%s: too few memory samples", p.instance)
    else
        if last > first * (1 + RSS_SLACK) + RSS_PAD then
            violation("%s: RSS grew from %.0f KiB to %.0f KiB", p.instance, first, last)
        end
        if mlast > mfirst * (1 + MEM_SLACK) + MEM_PAD then
            violation("%s: stats().memory grew from %.0f to %.0f bytes", p.instance, mfirst, mlast)
        end
        memrows[#memrows + 1] = string.format(
            "  %-6s RSS %6.0f -> %6.0f KiB   stats().memory %9.0f -> %9.0f B",
            p.instance, first, last, mfirst, mlast)
    end
    if p.how ~= "exited" or not exited[p.instance] then
        violation("%s (long-lived) ended as %s", p.instance, tostring(p.how))
    end
end

local nbsent = 0
for _ in pairs(bsent) do nbsent = nbsent + 1 end
local nstreams = 0
for _ in pairs(sstreams) do nstreams = nstreams + 1 end

print()
print(string.format("soak summary: %.0f s (warm-up %.0f s), logs in %s", t_stop, WARMUP, dir))
print(string.format("  processes: %d launched, %d SIGKILLed, %d closed gracefully, "
    .. "%d restarted with the same key, %d transient",
    counts.started, counts.killed, counts.closed, counts.restarted, counts.transient))
print(string.format("  messages: %d sent on %d streams, %d receipts, %d failed (session ended); "
    .. "%d delivered in order as logged by receivers that were not killed", totals.sent,
    nstreams, totals.ok, totals.failed, totals.delivered))
print(string.format("  streams up at both ends at the end (all delivered and receipted): %d",
    totals.strict))
print(string.format("  broadcasts: %d sent, %d deliveries, %d duplicates; "
    .. "%d long-lived pairs checked, %d missing", nbsent, brecv_total, bdups, bchecked, bmissing))
print("  memory of the long-lived processes (first quarter -> last quarter after warm-up):")
for _, row in ipairs(memrows) do print(row) end
if #violations > 0 then
    print(string.format("FAILED: %d violation(s):", #violations))
    for i = 1, math.min(#violations, 50) do print("  " .. violations[i]) end
    os.exit(1)
end
print("soak: ok")
os.exit(0)
