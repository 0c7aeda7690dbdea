--- p2pnet.ngx: a p2pnet node inside nginx (lua-nginx-module / OpenResty). docs/OPENRESTY.md.
--
--   init_worker_by_lua_block { require("p2pnet.ngx").start { shared = "p2pnet", port = 7000 } }
--   exit_worker_by_lua_block { require("p2pnet.ngx").stop() }
--   content_by_lua_block     { local pn = require "p2pnet.ngx"
--                              local ok, reply = pn.send_await(id, 1, "hi", 5) ... }
--
-- One worker (the owner, worker 0 by default) holds the node and its UDP port. Every worker
-- runs a driver: a light thread started from init_worker by ngx.timer.at. The owner's driver
-- calls node:poll(0) and waits, through an ngx cosocket, on a wake-up line (core.waker: a C
-- thread that poll()s the node's UDP socket and a kick socket, and answers one byte when
-- either is readable or when node:next_timeout() has passed). Requests in the owner worker call
-- the node directly; requests in other workers put a command in the shared dict, kick the
-- owner and wait for the result, which the owner puts in the dict before kicking them back.
-- Request handlers wait on their own ngx.semaphore, posted by a driver: p2pnet's coroutine
-- scheduler (node:spawn, peer:send_await, node:receive) is never used here, so nothing ever
-- resumes a coroutine that nginx owns.
-- @module p2pnet.ngx
local p2pnet = require "p2pnet"
local core = require "p2pnet.core"

local ngx = rawget(_G, "ngx")

local M = {}

-- Longest a driver waits without a timer due, in seconds (it also checks for shutdown then).
local IDLE_WAIT = 1.0
-- Messages kept in the shared log for M.messages (the oldest are deleted beyond this).
local LOG_KEEP = 1024
-- Messages queued per type for M.receive when nobody takes them.
local INBOX_LIMIT = 1024
-- How long an owner retries binding its port (another process, or the worker it replaces
-- during a reload, may still hold it), and the pause between tries, in seconds.
local BIND_RETRY_FOR = 10
local BIND_RETRY_EVERY = 0.05
-- How long a call waits when its caller gives no timeout, in seconds.
local DEFAULT_TIMEOUT = 30
-- How long a call waits for the node to open (start-up, reloads), in seconds at most.
local READY_WAIT = 5
-- How much longer than its deadline the driver waits for the wake-up thread's answer.
local LINE_SLACK_MS = 5000
-- How long a driver waits to connect to its wake-up line before it falls back to a timer.
local CONNECT_TIMEOUT_MS = 1000

-- This worker's state.
local S = {
    started = false,
    stopping = false,
}

local function argerror(fname, arg, what)
    error(("%s: argument '%s' %s"):format(fname, arg, what), 3)
end

local function check_timeout(fname, timeout)
    if timeout ~= nil and (type(timeout) ~= "number" or not (timeout >= 0)) then
        argerror(fname, "timeout", "must be a number of seconds >= 0")
    end
end

local function check_type(fname, mtype)
    if type(mtype) ~= "number" or mtype % 1 ~= 0 or mtype < 0 or mtype > 65535 then
        argerror(fname, "type", "must be an integer 0-65535")
    end
end

-- The phases in which a light thread may wait (ngx.sleep, ngx.semaphore, cosockets).
local YIELDABLE = { rewrite = true, server_rewrite = true, access = true, content = true,
                    timer = true, ssl_cert = true, ssl_session_fetch = true,
                    ssl_client_hello = true, preread = true }

-- Raises, naming `fname`, when the current phase cannot wait: nothing is done then (no
-- message is sent half-way, no command is queued for the owner).
local function check_yieldable(fname, sync)
    if S.in_poll and not sync then
        -- a timer phase, but inside node:poll (a C function): waiting would fail half-way
        error(("%s: cannot wait inside a p2pnet callback (on_start, on_message, on_join, "
            .. "node:on handlers: the driver runs them); start the work with pn.spawn(fn)")
            :format(fname), 3)
    end
    local phase = ngx.get_phase()
    if not YIELDABLE[phase] then
        error(("%s: cannot wait in the %s phase (use rewrite, access, content or a timer; "
            .. "pn.spawn(fn) runs fn in a timer)"):format(fname, tostring(phase)), 3)
    end
end

local function log_err(...)
    ngx.log(ngx.ERR, "p2pnet.ngx: ", ...)
end

-- ==========================================================================================
-- Encoding values for the shared dict: strings, numbers, booleans, nil and tables of them.

local encode
local function encode_one(v, out)
    local t = type(v)
    if t == "string" then
        out[#out + 1] = "s" .. #v .. ":" .. v
    elseif t == "number" then
        local s = ("%.17g"):format(v)
        out[#out + 1] = "n" .. #s .. ":" .. s
    elseif t == "boolean" then
        out[#out + 1] = v and "T" or "F"
    elseif t == "table" then
        local inner = {}
        for k, x in pairs(v) do
            encode_one(k, inner)
            encode_one(x, inner)
        end
        local s = table.concat(inner)
        out[#out + 1] = "t" .. #s .. ":" .. s
    else
        out[#out + 1] = "Z"
    end
end

function encode(...)
    local out = {}
    for i = 1, select("#", ...) do
        encode_one((select(i, ...)), out)
    end
    return table.concat(out)
end

local decode_all
local function decode_one(s, pos)
    local tag = s:sub(pos, pos)
    if tag == "T" then
        return true, pos + 1
    elseif tag == "F" then
        return false, pos + 1
    elseif tag == "Z" then
        return nil, pos + 1
    end
    local colon = s:find(":", pos + 1, true)
    local len = tonumber(s:sub(pos + 1, colon - 1))
    local body = s:sub(colon + 1, colon + len)
    local nxt = colon + len + 1
    if tag == "s" then
        return body, nxt
    elseif tag == "n" then
        return tonumber(body), nxt
    end
    local list = decode_all(body)
    local t = {}
    for i = 1, list.n, 2 do
        t[list[i]] = list[i + 1]
    end
    return t, nxt
end

function decode_all(s)
    local out, n, pos = {}, 0, 1
    while pos <= #s do
        n = n + 1
        out[n], pos = decode_one(s, pos)
    end
    out.n = n
    return out
end

local unpack = table.unpack or unpack -- luacheck: ignore 143

local function pack(...)
    return { n = select("#", ...), ... }
end

-- ==========================================================================================
-- Waiting: each waiter has its own semaphore, posted once by whoever completes it.

local semaphore

local function new_waiter()
    local sema, err = semaphore.new(0)
    if not sema then
        error("p2pnet.ngx: ngx.semaphore.new failed: " .. tostring(err))
    end
    return { sema = sema }
end

local function complete(w, ...)
    if w.done then
        return
    end
    w.done = true
    w.res = pack(...)
    w.sema:post(1)
end

-- Waits for `w` at most `timeout` seconds (nil: forever). Returns its results, or nil, err.
local function await(w, timeout)
    if not w.done then
        local ok, err = w.sema:wait(timeout or DEFAULT_TIMEOUT)
        if not ok and not w.done then
            w.done = true -- a late completion is dropped
            return nil, err == "timeout" and "timeout" or err
        end
    end
    return unpack(w.res, 1, w.res.n)
end

-- ==========================================================================================
-- Paths, kicks, notifications

local function kick_key(wid)
    return "w:" .. wid .. ":kick"
end

local function kick_worker(wid)
    local path = S.dict:get(kick_key(wid))
    if path then
        core.kick(path)
    end
end

-- Wakes this worker's own driver (after a local send, so that it sees the new timers).
local function kick_self()
    if S.kick_path then
        core.kick(S.kick_path)
    end
end

-- Local waiters for new log entries / inbox messages; posted by this worker's driver.
local function notify_local()
    local waiters = S.waiters
    if next(waiters) == nil then
        return
    end
    S.waiters = {}
    for w in pairs(waiters) do
        complete(w, true)
    end
end

local function notify_all_workers()
    notify_local()
    for wid = 0, ngx.worker.count() - 1 do
        if wid ~= S.wid then
            kick_worker(wid)
        end
    end
end

-- ==========================================================================================
-- Operations: run in the owner worker, with done(...) called once with the results.

-- The node's metrics (node:metrics(), Prometheus text format 0.0.4), labelled with the
-- worker that owns the node.
local function metrics_text(node)
    return node:metrics { labels = { worker = tostring(ngx.worker.id()) } }
end

local ops = {}

function ops.send(node, done, id, mtype, data)
    local peer = node:peer(id)
    if not peer then
        return done(nil, "unknown peer")
    end
    local ok, err = peer:send(mtype, data, function(success, value)
        if success then
            done(true, value)
        else
            done(nil, value)
        end
    end)
    if not ok then
        done(nil, err)
    end
end

function ops.send_unreliable(node, done, id, mtype, data)
    local peer = node:peer(id)
    if not peer then
        return done(nil, "unknown peer")
    end
    done(peer:send_unreliable(mtype, data))
end

function ops.connect(node, done, target, opts)
    local peer, err = node:connect(target, opts)
    if not peer then
        return done(nil, err)
    end
    if peer.state == "connected" then
        return done(peer.id)
    end
    local list = S.connects[peer]
    if not list then
        list = {}
        S.connects[peer] = list
    end
    list[#list + 1] = done
end

function ops.disconnect(node, done, id)
    local peer = node:peer(id)
    if not peer then
        return done(nil, "unknown peer")
    end
    peer:disconnect()
    done(true)
end

function ops.broadcast(node, done, mtype, data)
    done(node:broadcast(mtype, data))
end

function ops.peers(node, done)
    local list = {}
    for i, p in ipairs(node:peers()) do
        list[i] = { id = p.id, address = p.address, state = p.state, direct = p.direct,
                    rtt = p.rtt }
    end
    done(list)
end

function ops.stats(node, done)
    done(node:stats())
end

function ops.metrics(node, done)
    done(metrics_text(node))
end

function ops.info(node, done)
    done({ id = node.id, address = node:address(), owner = S.wid })
end

-- Ops that complete at once in the owner (no wait): allowed inside callbacks.
local SYNC_OPS = { send_unreliable = true, disconnect = true, broadcast = true, peers = true,
                   stats = true, metrics = true, info = true }

-- Ops that arm timers in the node: the owner's driver must look at next_timeout again.
local ARMS_TIMERS = { send = true, send_unreliable = true, connect = true, disconnect = true,
                      broadcast = true }

-- Settles the connect waiters of `peer`.
local function settle_connects(peer, ...)
    local list = S.connects[peer]
    if list then
        S.connects[peer] = nil
        for _, done in ipairs(list) do
            done(...)
        end
    end
end

-- The part of the dict that messages may not use: room for the commands, the results and
-- the keys the workers find each other by (an eighth of the dict, at least 16 KiB).
local function reserve()
    if not S.reserve then
        local ok, cap = pcall(S.dict.capacity, S.dict)
        S.reserve = ok and type(cap) == "number" and math.max(math.floor(cap / 8), 16384) or 0
    end
    return S.reserve
end

-- Makes room for `need` more bytes of messages while keeping the reserve free: the oldest
-- log entries go first, then the oldest queued messages of every type. Returns whether there
-- is room. (free_space() counts whole free pages: a lower bound of what fits.)
local function make_room(need)
    local dict = S.dict
    local ok, free = pcall(dict.free_space, dict)
    if not ok or type(free) ~= "number" then
        return true -- a lua-resty-core without free_space(): store as before
    end
    local want = need + reserve()
    if free >= want then
        return true
    end
    local last = dict:get("log:last") or 0
    local low = math.max(S.log_low or 1, last - LOG_KEEP + 1)
    while free < want and low <= last do
        dict:delete("log:" .. low)
        low = low + 1
        free = dict:free_space()
    end
    S.log_low = low
    if free < want then
        -- get_keys(0) walks the whole dict: free a reserve more than needed, so that this
        -- runs once per reserve's worth of messages at most, not for every message
        local target = want + reserve()
        for _, key in ipairs(dict:get_keys(0)) do
            if key:match("^in:%d+$") then
                while free < target and dict:lpop(key) do
                    free = dict:free_space()
                end
                if free >= target then
                    break
                end
            end
        end
    end
    return free >= want
end

-- Runs op `name` in this worker (the owner), or has the owner run it; waits for the result.
local function call(fname, name, timeout, ...)
    if not S.started then
        error(fname .. ": p2pnet.ngx is not started (call start() in init_worker_by_lua)", 3)
    end
    -- In callbacks (the owner's driver), the ops that complete at once still work.
    check_yieldable(fname, S.owner and SYNC_OPS[name])
    -- During start-up and reloads the node may not be open yet: wait for it a little.
    local ready_by = ngx.now() + math.min(timeout or READY_WAIT, READY_WAIT)
    while not (S.owner and S.node or not S.owner and S.dict:get("owner")) do
        if ngx.now() >= ready_by then
            return nil, "node not ready"
        end
        ngx.sleep(0.02)
        ngx.update_time()
    end
    local w = new_waiter()
    if S.owner then
        ops[name](S.node, function(...) complete(w, ...) end, ...)
        if ARMS_TIMERS[name] then
            kick_self()
        end
        return await(w, timeout)
    end
    local id = S.dict:incr("seq", 1, 0)
    local cmd = encode(name, id, S.wid, ...)
    local ok, err = S.dict:rpush("cmd", cmd)
    if not ok then
        make_room(#cmd + 256) -- full anyway: drop old messages, not the command
        ok, err = S.dict:rpush("cmd", cmd)
    end
    if not ok then
        return nil, "shared dict: " .. tostring(err)
    end
    S.pending[id] = w
    local path = S.dict:get("owner:kick") -- none when the owner's driver runs on a timer
    if path then
        core.kick(path)
    end
    local res = pack(await(w, timeout))
    S.pending[id] = nil
    return unpack(res, 1, res.n)
end

-- ==========================================================================================
-- The driver

-- The owner's message handler: the user's hook, then the shared log and inbox.
local function on_message(peer, mtype, data, info)
    local reply
    if S.on_message then
        local ok, r = pcall(S.on_message, peer, mtype, data, info)
        if not ok then
            error(r, 0) -- the sender's callback gets false and the error text
        end
        reply = r
    end
    local dict = S.dict
    -- A full dict must not starve the commands and results of the other workers: messages
    -- that do not fit beside the reserve are left out of the log and the inboxes.
    if not make_room(2 * (#data + 256)) then
        S.dropped = (S.dropped or 0) + 1
        local now = ngx.now()
        if not S.dropped_logged or now - S.dropped_logged >= 10 then
            S.dropped_logged = now
            log_err("shared dict full: ", S.dropped, " message(s) left out of the log and ",
                    "the inboxes so far (make lua_shared_dict larger, or take messages sooner)")
        end
        return reply
    end
    local n = dict:incr("log:last", 1, 0)
    local rec = encode(n, peer.id, mtype, data, info and info.id, info and info.broadcast,
                       info and info.origin)
    dict:set("log:" .. n, rec)
    if n > LOG_KEEP then
        dict:delete("log:" .. (n - LOG_KEEP))
    end
    local key = "in:" .. mtype
    local len = dict:rpush(key, rec)
    if len and len > INBOX_LIMIT then
        dict:lpop(key)
    end
    S.new_messages = true
    return reply
end

-- Runs the commands other workers queued, and hands their results back.
local function run_commands()
    local dict = S.dict
    for _ = 1, 1000 do
        local rec = dict:lpop("cmd")
        if not rec then
            return
        end
        local a = decode_all(rec)
        local name, id, wid = a[1], a[2], a[3]
        local op = ops[name]
        if op then
            local function done(...)
                local res = encode(id, ...)
                if not dict:rpush("res:" .. wid, res) then
                    make_room(#res + 256) -- full anyway: drop old messages, not the result
                    dict:rpush("res:" .. wid, res)
                end
                kick_worker(wid)
            end
            local ok, err = pcall(op, S.node, done, unpack(a, 4, a.n))
            if not ok then
                done(nil, tostring(err))
            end
        end
    end
end

-- Takes this worker's results from the dict and completes their waiters.
local function take_results()
    local dict = S.dict
    local key = "res:" .. S.wid
    for _ = 1, 10000 do
        local rec = dict:lpop(key)
        if not rec then
            return
        end
        local a = decode_all(rec)
        local w = S.pending[a[1]]
        if w then
            complete(w, unpack(a, 2, a.n))
        end
    end
end

-- The keys other workers rely on. A full dict evicts its least recently used entries to
-- store new ones (large messages in the log), and these keys are written once: each turn
-- reads them (which keeps them recently used) and writes back any that were evicted.
local function keep_keys()
    local dict = S.dict
    if S.kick_path and dict:get(kick_key(S.wid)) ~= S.kick_path then
        dict:set(kick_key(S.wid), S.kick_path)
    end
    local node = S.node
    if S.owner and node and not node.closed then
        local pid = ngx.worker.pid()
        if dict:get("owner") ~= pid then
            dict:set("id", node.id)
            dict:set("address", node:address())
            dict:set("owner", pid)
        end
        if S.kick_path and dict:get("owner:kick") ~= S.kick_path then
            dict:set("owner:kick", S.kick_path)
        end
    end
end

-- One turn of a driver: I/O and timers of the node (owner), commands, results, waiters.
local function turn()
    keep_keys()
    if S.node and not S.node.closed then
        S.in_poll = true
        local ok, err = pcall(S.node.poll, S.node, 0)
        S.in_poll = false
        if not ok then
            error(err, 0)
        end
        run_commands()
    end
    take_results()
    if S.new_messages then
        S.new_messages = false
        notify_all_workers()
    elseif next(S.waiters) ~= nil then
        notify_local() -- woken by a kick: maybe a new message in the dict
    end
end

-- Seconds until the driver must turn again.
local function next_wait()
    local t = IDLE_WAIT
    if S.node and not S.node.closed then
        local nt = S.node:next_timeout()
        if nt and nt < t then
            t = nt
        end
    end
    return t
end

local function close_node()
    if S.waker then
        S.waker:close() -- first: its thread polls the node's socket
        S.waker = nil
    end
    if S.node then
        pcall(S.node.close, S.node)
        S.node = nil
    end
    if S.dict and S.kick_path and S.dict:get(kick_key(S.wid)) == S.kick_path then
        S.dict:delete(kick_key(S.wid))
    end
    if S.dict and S.owner and S.kick_path and S.dict:get("owner:kick") == S.kick_path then
        S.dict:delete("owner:kick")
    end
    if S.dict and S.owner and S.dict:get("owner") == ngx.worker.pid() then
        S.dict:delete("owner")
    end
    S.kick_path = nil
end

local function running()
    return not S.stopping and not ngx.worker.exiting()
end

local function loop_timer()
    local interval = S.interval
    while running() do
        local ok, err = pcall(turn)
        if not ok then
            log_err("driver: ", err)
        end
        ngx.sleep(interval)
    end
end

local function loop_waker()
    local sock = ngx.socket.tcp()
    sock:settimeout(CONNECT_TIMEOUT_MS)
    local ok, err = sock:connect("unix:" .. S.listen_path)
    if not ok then
        log_err("wake-up line: ", err, "; driving the node from a ", S.interval, " s timer")
        return loop_timer()
    end
    while running() do
        local okt, errt = pcall(turn)
        if not okt then
            log_err("driver: ", errt)
        end
        -- The wake-up thread keeps the deadline: it answers "!" (readable) or "t" (time), so
        -- the cosocket read itself does not time out (nginx would log each timeout).
        local ms = math.ceil(next_wait() * 1000)
        if ms < 1 then
            ms = 1
        end
        local sent, rerr = sock:send(ms .. "\n")
        if sent then
            sock:settimeout(ms + LINE_SLACK_MS)
            local _
            _, rerr = sock:receive(1)
        end
        if rerr and rerr ~= "timeout" then
            if not running() then
                break
            end
            log_err("wake-up line: ", rerr)
            sock:close()
            sock = ngx.socket.tcp()
            sock:settimeout(CONNECT_TIMEOUT_MS)
            ok, err = sock:connect("unix:" .. S.listen_path)
            if not ok then
                log_err("wake-up line: ", err, "; driving the node from a timer")
                return loop_timer()
            end
        end
    end
    sock:close()
end

-- A timer that fires early (premature) when the worker starts to shut down: it kicks the
-- driver so that the node closes (and frees its port for the next worker) at once.
local function arm_shutdown_watch()
    local ok, err = ngx.timer.at(3600, function(premature)
        if premature then
            kick_self()
        elseif running() then
            arm_shutdown_watch()
        end
    end)
    if not ok then
        log_err("shutdown watch: ", err)
    end
end

-- Whether process `pid` exists (LuaJIT's ffi: kill(pid, 0)); true when it cannot tell.
local function pid_alive(pid)
    local ok, ffi = pcall(require, "ffi")
    if not ok then
        return true
    end
    pcall(ffi.cdef, "int kill(int pid, int sig);")
    local okk, rc = pcall(ffi.C.kill, pid, 0)
    if not okk then
        return true
    end
    return rc == 0 or ffi.errno() ~= 3 -- ESRCH: no such process
end

-- A worker killed with SIGKILL leaves its two socket files behind. The worker that replaces
-- it (same worker id) finds the old kick path in the dict and removes both files when the
-- process that made them is gone (during a graceful reload it still runs: they stay).
local function remove_stale_sockets()
    local old = S.dict:get(kick_key(S.wid))
    local pid = type(old) == "string" and tonumber(old:match("p2pnet%-(%d+)%.kick$"))
    if pid and pid ~= ngx.worker.pid() and not pid_alive(pid) then
        os.remove(old)
        os.remove((old:gsub("%.kick$", ".wake")))
    end
end

local function open_node()
    local deadline = ngx.now() + BIND_RETRY_FOR
    local node, err
    repeat
        node, err = p2pnet.node(S.node_opts)
        if node then
            return node
        end
        if not running() then
            break
        end
        ngx.sleep(BIND_RETRY_EVERY)
        ngx.update_time()
    until ngx.now() >= deadline
    return nil, err
end

local function driver(premature)
    if premature then
        return
    end
    local dict = S.dict
    if S.owner then
        local node, err = open_node()
        if not node then
            log_err("cannot open the node: ", err)
            S.start_error = err
            return
        end
        S.node = node
        node:on("message", on_message)
        node:on("join", function(peer)
            settle_connects(peer, peer.id)
            if S.hooks.join then S.hooks.join(peer) end
        end)
        node:on("leave", function(peer, reason)
            settle_connects(peer, nil, reason)
            if S.hooks.leave then S.hooks.leave(peer, reason) end
        end)
        node:on("error", function(e, peer)
            if peer then
                settle_connects(peer, nil, e)
            end
            if S.hooks.error then S.hooks.error(e, peer) end
        end)
        dict:set("owner", ngx.worker.pid())
        dict:set("id", node.id)
        dict:set("address", node:address())
        if S.on_start then
            S.in_poll = true -- the driver itself: waiting here would wait for itself
            local ok, e = pcall(S.on_start, node)
            S.in_poll = false
            if not ok then
                log_err("on_start: ", e)
            end
        end
    end
    if S.mode == "waker" and core.waker then
        remove_stale_sockets()
        local base = S.socket_dir .. "/p2pnet-" .. ngx.worker.pid()
        S.listen_path, S.kick_path = base .. ".wake", base .. ".kick"
        local w, err = core.waker(S.listen_path, S.kick_path, S.node and S.node:fd() or nil)
        if not w then
            log_err("wake-up line: ", err, "; driving the node from a timer")
            S.mode = "timer"
            S.listen_path, S.kick_path = nil, nil
        else
            S.waker = w
            dict:set(kick_key(S.wid), S.kick_path)
            if S.owner then
                dict:set("owner:kick", S.kick_path)
            end
            arm_shutdown_watch()
        end
    else
        S.mode = "timer"
    end
    S.ready = true
    local ok, err = pcall(S.mode == "waker" and loop_waker or loop_timer)
    if not ok then
        log_err("driver stopped: ", err)
    end
    close_node()
    -- Nothing will complete the waiters now: let them go (long-polls end, calls fail).
    notify_local()
    for id, w in pairs(S.pending) do
        S.pending[id] = nil
        complete(w, nil, "closed")
    end
end

-- ==========================================================================================
-- Public functions

local START_KEYS = { shared = true, owner = true, mode = true, interval = true, socket_dir = true,
                     on_message = true, on_start = true, on_join = true, on_leave = true,
                     on_error = true }

--- pn.start(opts): in init_worker_by_lua*. Starts this worker's driver; the owner worker
-- opens the node with the p2pnet node options in `opts` (host, port, identity, ...).
-- opts.shared (required): the name of a lua_shared_dict; opts.owner: the worker id that holds
-- the node (default 0); opts.mode: "waker" (default) or "timer"; opts.interval: the timer
-- mode's period in seconds (default 0.01); opts.socket_dir: where the wake-up sockets go
-- (default "/tmp"); opts.on_message(peer, type, data, info) -> reply, opts.on_start(node),
-- opts.on_join(peer), opts.on_leave(peer, reason), opts.on_error(err, peer): run in the
-- owner's driver; they must not yield.
-- @param opts node options plus `shared` (required), `owner`, `mode`, `interval`,
-- `socket_dir`, `on_message` and `on_start`, as above
function M.start(opts)
    if ngx == nil then
        error("p2pnet.ngx.start: not running inside nginx", 2)
    end
    if type(opts) ~= "table" then
        argerror("p2pnet.ngx.start", "opts", "must be a table")
    end
    if ngx.get_phase() ~= "init_worker" then
        error(("p2pnet.ngx.start: must be called in init_worker_by_lua* (not in the %s phase)")
            :format(tostring(ngx.get_phase())), 2)
    end
    if S.started then
        error("p2pnet.ngx.start: already started in this worker", 2)
    end
    local dict = type(opts.shared) == "string" and ngx.shared[opts.shared]
    if not dict then
        argerror("p2pnet.ngx.start", "shared", "must name a lua_shared_dict")
    end
    local owner = opts.owner or 0
    if type(owner) ~= "number" or owner % 1 ~= 0 or owner < 0 then
        argerror("p2pnet.ngx.start", "owner", "must be a worker id")
    end
    local mode = opts.mode or "waker"
    if mode ~= "waker" and mode ~= "timer" then
        argerror("p2pnet.ngx.start", "mode", "must be \"waker\" or \"timer\"")
    end
    local interval = opts.interval or 0.01
    if type(interval) ~= "number" or not (interval >= 0.001) then
        argerror("p2pnet.ngx.start", "interval", "must be a number of seconds >= 0.001")
    end
    for _, k in ipairs { "on_message", "on_start", "on_join", "on_leave", "on_error" } do
        if opts[k] ~= nil and type(opts[k]) ~= "function" then
            argerror("p2pnet.ngx.start", k, "must be a function")
        end
    end
    local node_opts = {}
    for k, v in pairs(opts) do
        if not START_KEYS[k] then
            node_opts[k] = v
        end
    end
    local wid = ngx.worker.id()
    if wid == nil then
        return nil, "not a worker process (the privileged agent cannot hold the node)"
    end
    semaphore = require "ngx.semaphore"
    S.started = true
    S.stopping = false
    S.dict = dict
    S.wid = wid
    S.owner = S.wid == owner % ngx.worker.count()
    S.mode = mode
    S.interval = interval
    S.socket_dir = opts.socket_dir or "/tmp"
    S.node_opts = node_opts
    S.on_message = opts.on_message
    S.on_start = opts.on_start
    S.hooks = { join = opts.on_join, leave = opts.on_leave, error = opts.on_error }
    S.pending = {}
    S.waiters = {}
    S.connects = setmetatable({}, { __mode = "k" })
    local ok, err = ngx.timer.at(0, driver)
    if not ok then
        S.started = false
        return nil, err
    end
    return true
end

--- pn.stop(): in exit_worker_by_lua*. Closes the node (peers get leave "closed") and the
-- wake-up line. Idempotent. The driver does the same when it sees the worker exiting.
function M.stop()
    S.stopping = true
    close_node()
end

--- pn.node() -> the node in the owner worker once it is open, else nil. For reading fields and
-- calling methods that do not wait; never call node:spawn, node:run or a blocking poll here.
function M.node()
    return S.node
end

--- pn.is_owner() -> true in the worker that holds the node.
function M.is_owner()
    return S.owner == true
end

--- pn.send_await(id, type, data [, timeout]) -> true, reply | nil, err
-- @param id the peer's id (64 hex digits)
-- @param mtype the message type, 0-65535
-- @param data the message (a string)
-- @param timeout seconds to wait for the receipt (optional)
function M.send_await(id, mtype, data, timeout)
    if type(id) ~= "string" then
        argerror("p2pnet.ngx.send_await", "id", "must be a peer id (string)")
    end
    check_type("p2pnet.ngx.send_await", mtype)
    if type(data) ~= "string" then
        argerror("p2pnet.ngx.send_await", "data", "must be a string")
    end
    check_timeout("p2pnet.ngx.send_await", timeout)
    return call("p2pnet.ngx.send_await", "send", timeout, id, mtype, data)
end

--- pn.send_unreliable(id, type, data) -> true | nil, err
-- @param id the peer's id
-- @param mtype the datagram type, 0-65535
-- @param data the datagram (at most p2pnet.MAX_DATAGRAM bytes)
function M.send_unreliable(id, mtype, data)
    if type(id) ~= "string" then
        argerror("p2pnet.ngx.send_unreliable", "id", "must be a peer id (string)")
    end
    check_type("p2pnet.ngx.send_unreliable", mtype)
    if type(data) ~= "string" then
        argerror("p2pnet.ngx.send_unreliable", "data", "must be a string")
    end
    return call("p2pnet.ngx.send_unreliable", "send_unreliable", nil, id, mtype, data)
end

--- pn.connect_await(target [, opts] [, timeout]) -> peer id | nil, err
-- @param target "host:port" or a 64-hex id
-- @param opts node:connect options (optional)
-- @param timeout seconds to wait for the session (optional)
function M.connect_await(target, opts, timeout)
    if type(opts) == "number" and timeout == nil then
        opts, timeout = nil, opts
    end
    if type(target) ~= "string" then
        argerror("p2pnet.ngx.connect_await", "target", "must be \"host:port\" or an id")
    end
    if opts ~= nil and type(opts) ~= "table" then
        argerror("p2pnet.ngx.connect_await", "opts", "must be a table or nil")
    end
    check_timeout("p2pnet.ngx.connect_await", timeout)
    return call("p2pnet.ngx.connect_await", "connect", timeout, target, opts)
end

--- pn.disconnect(id) -> true | nil, err
-- @param id the peer's id
function M.disconnect(id)
    if type(id) ~= "string" then
        argerror("p2pnet.ngx.disconnect", "id", "must be a peer id (string)")
    end
    return call("p2pnet.ngx.disconnect", "disconnect", nil, id)
end

--- pn.broadcast(type, data) -> message id | nil, err
-- @param mtype the message type, 0-65535
-- @param data the message
function M.broadcast(mtype, data)
    check_type("p2pnet.ngx.broadcast", mtype)
    if type(data) ~= "string" then
        argerror("p2pnet.ngx.broadcast", "data", "must be a string")
    end
    return call("p2pnet.ngx.broadcast", "broadcast", nil, mtype, data)
end

--- pn.peers() -> array of { id, address, state, direct, rtt } | nil, err
function M.peers()
    return call("p2pnet.ngx.peers", "peers", nil)
end

--- pn.stats() -> node:stats() of the owner | nil, err
function M.stats()
    return call("p2pnet.ngx.stats", "stats", nil)
end

--- pn.metrics() -> the node's counters in the Prometheus text format | nil, err
function M.metrics()
    return call("p2pnet.ngx.metrics", "metrics", nil)
end

--- pn.info() -> { id, address, owner } of the node | nil, err
function M.info()
    return call("p2pnet.ngx.info", "info", nil)
end

local function message_of(rec)
    local a = decode_all(rec)
    return { seq = a[1], from = a[2], type = a[3], data = a[4], id = a[5], broadcast = a[6],
             origin = a[7] }
end

--- pn.receive(type [, timeout]) -> message | nil, "timeout". Takes the oldest queued message
-- of that type (each goes to one caller, in any worker). A message is a table { from, type,
-- data, id, broadcast, origin, seq }.
-- @param mtype the message type to take
-- @param timeout seconds to wait (optional)
function M.receive(mtype, timeout)
    check_type("p2pnet.ngx.receive", mtype)
    check_timeout("p2pnet.ngx.receive", timeout)
    if not S.started then
        error("p2pnet.ngx.receive: p2pnet.ngx is not started", 2)
    end
    local deadline = timeout and ngx.now() + timeout
    while true do
        local rec = S.dict:lpop("in:" .. mtype)
        if rec then
            return message_of(rec)
        end
        local left = deadline and deadline - ngx.now()
        if left and left <= 0 then
            return nil, "timeout"
        end
        if ngx.worker.exiting() then
            return nil, "closed"
        end
        check_yieldable("p2pnet.ngx.receive")
        local w = new_waiter()
        S.waiters[w] = true
        local ok, err = await(w, left and math.min(left, IDLE_WAIT) or IDLE_WAIT)
        S.waiters[w] = nil
        if not ok and err ~= "timeout" then
            return nil, err
        end
        ngx.update_time()
    end
end

--- pn.messages([since] [, timeout] [, max]) -> array of messages, last seq. Every message
-- whose seq is above `since` still in the shared log (the last 1024), waiting up to `timeout`
-- seconds for the first one. Without `since`, only messages that arrive from now on. For
-- subscribers (long-poll, server-sent events): each caller sees every message.
-- @param since the last seq already seen (optional)
-- @param timeout seconds to wait for the first message (optional)
-- @param max at most this many messages (optional)
function M.messages(since, timeout, max)
    if since ~= nil and type(since) ~= "number" then
        argerror("p2pnet.ngx.messages", "since", "must be a number or nil")
    end
    check_timeout("p2pnet.ngx.messages", timeout)
    if max ~= nil and (type(max) ~= "number" or max % 1 ~= 0 or max < 1) then
        argerror("p2pnet.ngx.messages", "max", "must be an integer >= 1 or nil")
    end
    if not S.started then
        error("p2pnet.ngx.messages: p2pnet.ngx is not started", 2)
    end
    max = max or 100
    local dict = S.dict
    local last = dict:get("log:last") or 0
    if since == nil or since > last then
        since = last
    end
    local deadline = ngx.now() + (timeout or 0)
    while last <= since do
        local left = deadline - ngx.now()
        if left <= 0 or ngx.worker.exiting() then
            return {}, since
        end
        check_yieldable("p2pnet.ngx.messages")
        local w = new_waiter()
        S.waiters[w] = true
        local ok, err = await(w, math.min(left, IDLE_WAIT))
        S.waiters[w] = nil
        if not ok and err ~= "timeout" then
            return nil, err
        end
        ngx.update_time()
        last = dict:get("log:last") or 0
    end
    local out = {}
    local first = math.max(since + 1, last - LOG_KEEP + 1)
    for n = first, last do
        local rec = dict:get("log:" .. n)
        if rec then
            out[#out + 1] = message_of(rec)
            if #out >= max then
                return out, n
            end
        end
    end
    return out, last
end

--- pn.spawn(fn, ...) -> true | nil, err: runs fn(...) in its own nginx light thread (a
-- zero-delay ngx.timer.at), where the functions above may wait. Use it instead of node:spawn.
-- @param fn the function to run
-- @param ... its arguments
function M.spawn(fn, ...)
    if type(fn) ~= "function" then
        argerror("p2pnet.ngx.spawn", "fn", "must be a function")
    end
    local args = { n = select("#", ...), ... }
    return ngx.timer.at(0, function(premature)
        if not premature then
            local ok, err = pcall(fn, unpack(args, 1, args.n))
            if not ok then
                log_err("spawned function: ", err)
            end
        end
    end)
end

--- pn.mode() -> "waker" or "timer": how this worker's driver waits (nil before it runs).
function M.mode()
    return S.ready and S.mode or nil
end

M._encode, M._decode = encode, decode_all -- for the spec

return M
