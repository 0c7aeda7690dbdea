-- p2pnet: peer-to-peer networking for Lua.
--
-- This module is the pure-Lua layer over the C module `p2pnet.core`. It re-exports the core
-- (identities, nodes, peers, the simulator) and adds coroutine helpers: tasks spawned on a
-- node run inside that node's loop (node:poll, node:run, and sim:run for simulated nodes),
-- and helpers such as send_await, receive and sleep never block: they yield to that loop.
--
-- How it fits the core: the core calls this layer on purpose. core.hooks() has it called with
-- every new node and sim; it keeps its state for each in core.state(obj), where the core finds
-- its hooks: `resume` (node:poll and node:next_timeout resume tasks and wait for their
-- timers), `stats` (its counters), `join`/`leave`/`error` (called before the user's handler,
-- to wake connect_await), `deliver` (a message with no handler goes to receive()), `on_close`
-- (wakes waiting tasks) and, for a sim, `run` (sim:run resumes its nodes' tasks between
-- steps). Its methods (spawn, run, receive, ...) are added with core.extend, which never
-- replaces one of the core's.

--- The coroutine helpers: tasks on a node's loop (docs/API.md "Coroutines"). The rest of the
-- module is the C binding's, documented in csrc/lua/core.luadoc.
-- @module p2pnet
local core = require "p2pnet.core"

local M = {
    identity = core.identity,
    node = core.node,
    sim = core.sim,
    MAX_DATAGRAM = core.MAX_DATAGRAM,
    MAX_DATAGRAM_SEQUENCED = core.MAX_DATAGRAM_SEQUENCED,
    TRANSFER_LANE = core.TRANSFER_LANE,
    version = core.version,
}

local unpack = table.unpack or unpack -- luacheck: ignore 143
local huge = math.huge

-- Messages kept for node:receive() when no task is waiting, per node; the oldest is dropped
-- beyond this (and counted in stats().receive_dropped).
local INBOX_LIMIT = 1024
-- Virtual time a simulated node:run() without a duration advances per slice, in seconds.
local SIM_SLICE = 1.0
-- Times within half a microsecond count as reached: the core's clocks are in microseconds.
local EPSILON = 5e-7

-- Inside nginx (lua-nginx-module) every coroutine belongs to the request or timer that made
-- it, and resuming it from another one crashes the worker; a blocking poll would stall the
-- worker. There, node:spawn and node:run refuse, and p2pnet.ngx offers the same helpers.
local function under_nginx(fname)
    local ngx = rawget(_G, "ngx")
    if type(ngx) == "table" and type(ngx.get_phase) == "function" then
        error(fname .. ": not available inside nginx (its coroutines belong to nginx);"
              .. " use require(\"p2pnet.ngx\"), see docs/OPENRESTY.md", 3)
    end
end

-- The task being resumed right now, or nil outside tasks.
local current
-- What a helper yields to the scheduler; anything else is a plain yield.
local SUSPEND = {}

local function pack(...)
    return { n = select("#", ...), ... }
end

-- Misuse raises "fname: argument 'arg' what", like the core, with the position of the
-- user's call: `depth` counts the library functions between argerror and that call (1 when a
-- public function calls argerror itself).
local function argerror(fname, arg, what, depth)
    error(("%s: argument '%s' %s"):format(fname, arg, what), 2 + (depth or 1))
end

local function check_timeout(fname, arg, timeout)
    if timeout ~= nil and (type(timeout) ~= "number" or not (timeout >= 0)) then
        argerror(fname, arg, "must be a number of seconds >= 0", 2)
    end
end

local function check_type(fname, mtype)
    if mtype ~= nil and (type(mtype) ~= "number" or mtype % 1 ~= 0
                         or mtype < 0 or mtype > 65535) then
        argerror(fname, "type", "must be an integer 0-65535", 2)
    end
end

-- The task calling a helper; raises when there is none.
local function current_task(fname)
    local co = coroutine.running()
    if current == nil or current.co ~= co then
        error(fname .. ": must be called inside a task (see node:spawn)", 3)
    end
    return current
end

-- ========================================================================================
-- Tasks

-- Suspends the running task until wake() is called with the generation it gets here, or
-- until `timeout` seconds have passed on its node's clock (then it returns nil, "timeout").
local function wait(task, timeout)
    task.gen = task.gen + 1
    task.waiting = true
    task.wake_at = timeout and task.node:now() + timeout or nil
    return coroutine.yield(SUSPEND)
end

-- Makes a waiting task ready to resume with the given values, unless it has moved on to
-- another wait (its generation changed) or was woken already. Returns true when it woke it.
local function wake(task, gen, ...)
    if not task.waiting or task.gen ~= gen then
        return false
    end
    task.waiting = false
    task.wake_at = nil
    task.ready = pack(...)
    return true
end

local function resume(st, task)
    local args = task.ready
    task.ready = nil
    local prev = current
    current = task
    local ok, res = coroutine.resume(task.co, unpack(args, 1, args.n))
    current = prev
    if not ok then
        task.done = true
        st.task_errors = st.task_errors + 1
        io.stderr:write("p2pnet: error in task: ", debug.traceback(task.co, tostring(res)), "\n")
    elseif coroutine.status(task.co) == "dead" then
        task.done = true
    elseif res ~= SUSPEND and not task.waiting then
        task.ready = pack() -- a plain coroutine.yield(): go on at the next turn
    end
end

-- One pass over the node's tasks: wakes the timed-out ones and resumes every ready one once.
-- Returns how many ran.
local function run_tasks(st, node)
    local list = st.tasks
    if #list == 0 then
        return 0
    end
    local now = node:now()
    local ran = 0
    local snapshot = { unpack(list) }
    for i = 1, #snapshot do
        local task = snapshot[i]
        if not task.done then
            if task.waiting and task.wake_at and task.wake_at <= now + EPSILON then
                wake(task, task.gen, nil, "timeout")
            end
            if task.ready then
                resume(st, task)
                ran = ran + 1
            end
        end
    end
    local j = 0
    for i = 1, #list do
        if not list[i].done then
            j = j + 1
            list[j] = list[i]
        end
    end
    for i = #list, j + 1, -1 do
        list[i] = nil
    end
    if j == 0 then
        core.tasks(node, false) -- the last one ended: poll stops asking
    end
    return ran
end

-- When the node's tasks next need to run: 0 when one is ready, the earliest timer, or nil.
local function next_task_time(st, now)
    local t
    for _, task in ipairs(st.tasks) do
        if not task.done then
            if task.ready then
                return now
            end
            if task.wake_at and (t == nil or task.wake_at < t) then
                t = task.wake_at
            end
        end
    end
    return t
end

local function live_tasks(st)
    for _, task in ipairs(st.tasks) do
        if not task.done then
            return true
        end
    end
    return false
end

-- ========================================================================================
-- Per-node state and the event routers

local state = core.state

-- Wakes the connect_await waiters of `peer` (all of them on a final outcome).
local function settle_connects(st, peer, ...)
    local keep = {}
    for _, w in ipairs(st.connects) do
        if w.peer == peer then
            wake(w.task, w.gen, ...)
        elseif w.task.waiting and w.task.gen == w.gen then
            keep[#keep + 1] = w
        end
    end
    st.connects = keep
end

-- Hands a message to the first task waiting in receive() for its type, or queues it.
local function deliver(st, peer, mtype, data, info)
    local receivers = st.receivers
    while #receivers > 0 do
        local found
        for i, w in ipairs(receivers) do
            if not (w.task.waiting and w.task.gen == w.gen) then
                found = i -- stale: timed out or woken otherwise
                break
            end
            if w.mtype == nil or w.mtype == mtype then
                table.remove(receivers, i)
                wake(w.task, w.gen, peer, mtype, data, info)
                return
            end
        end
        if not found then
            break
        end
        table.remove(receivers, found)
    end
    local inbox = st.inbox
    inbox[#inbox + 1] = { peer, mtype, data, info }
    if #inbox > INBOX_LIMIT then
        table.remove(inbox, 1)
        st.receive_dropped = st.receive_dropped + 1
    end
end

-- Streaming transfers (lua/p2pnet/transfer.lua): peer:send_file, node:on_transfer, Transfer.
local transfers = require("p2pnet.transfer")(core, {
    wait = wait, wake = wake, current_task = current_task,
})

-- The creation hook of every node: its state, and the hooks the core calls.
local function install(node)
    local st = state(node)
    st.tasks = {}
    st.inbox = {}
    st.receivers = {}
    st.connects = {}
    st.task_errors = 0
    st.receive_dropped = 0
    -- Before the user's handlers (called by the core): wake the tasks waiting for the peer.
    st.join = function(peer)
        settle_connects(st, peer, peer)
    end
    st.leave = function(peer, reason)
        settle_connects(st, peer, nil, reason)
    end
    st.error = function(err, peer)
        if peer ~= nil then
            settle_connects(st, peer, nil, err)
        end
    end
    -- A message for which there is no handler: for node:receive().
    st.deliver = function(peer, mtype, data, info)
        deliver(st, peer, mtype, data, info)
    end
    -- node:poll() and node:next_timeout(): runs the ready tasks (when `run`), and says when
    -- they next need to run (node clock), or nil.
    st.resume = function(n, run)
        if #st.tasks == 0 then
            return 0, nil
        end
        local ran = run and run_tasks(st, n) or 0
        return ran, next_task_time(st, n:now())
    end
    st.stats = function(t)
        t.task_errors = st.task_errors
        t.receive_dropped = st.receive_dropped
    end
    -- Called by the core's close (node:close(), __gc, __close): tasks waiting on this node
    -- get nil, "closed" and resume at the next turn of their loop.
    st.on_close = function()
        for _, task in ipairs(st.tasks) do
            if task.waiting then
                wake(task, task.gen, nil, "closed")
            end
        end
        for _, w in ipairs(st.receivers) do
            wake(w.task, w.gen, nil, "closed")
        end
        for _, w in ipairs(st.connects) do
            wake(w.task, w.gen, nil, "closed")
        end
        st.receivers, st.connects = {}, {}
    end
    transfers.install(node, st)
end

-- ========================================================================================
-- Node

--- Coroutine helpers of a node.
-- Under Lua 5.1 (not LuaJIT) a task cannot yield inside `pcall`: call `receive`,
-- `connect_await` and `send_await` directly and check their `nil, err` results
-- (docs/API.md "Coroutines under Lua 5.1").
-- @type Node
local Node = {}

--- Runs `fn(...)` as a task on this node's loop. The task first runs at the next `poll` or
-- `run` of this node; one that raises ends, printed and counted in `stats().task_errors`.
-- @tparam function fn the task
-- @param ... its arguments
-- @treturn thread the coroutine
function Node:spawn(fn, ...)
    under_nginx("node:spawn")
    if self.closed then
        error("node:spawn: node is closed", 2)
    end
    if type(fn) ~= "function" then
        argerror("node:spawn", "fn", "must be a function")
    end
    local st = state(self)
    local task = {
        co = coroutine.create(fn),
        node = self,
        gen = 0,
        waiting = false,
        ready = pack(...),
    }
    st.tasks[#st.tasks + 1] = task
    core.tasks(self, true)
    return task.co
end

-- Runs the simulator of `sim` until virtual time t_end or until stop() holds, resuming the
-- tasks of its nodes between steps, on virtual time.
local function sim_loop(sim, t_end, stop)
    local nodes = core.sim_nodes(sim)
    local function pass()
        local ran = 0
        for _, node in ipairs(nodes) do
            local st = state(node)
            if st.tasks then
                ran = ran + run_tasks(st, node)
            end
        end
        return ran
    end
    while true do
        -- tasks may wake each other: settle them at this instant first
        local guard = 0
        while pass() > 0 do
            guard = guard + 1
            if guard > 10000 then
                break -- tasks that only yield to each other; let time go on
            end
        end
        local now = sim:now()
        if (stop and stop()) or now >= t_end - EPSILON then
            return
        end
        local target = t_end
        for _, node in ipairs(nodes) do
            local st = state(node)
            local t = st.tasks and next_task_time(st, now)
            if t and t < target then
                target = t
            end
        end
        if target < now then
            target = now
        end
        core.sim_run_until(sim, target, true) -- back here after any event: it may wake a task
    end
end

--- Polls and resumes tasks until `node:close()`, or for `seconds`.
-- A simulated node runs its whole simulator on virtual time; without `seconds` it stops
-- when the node is closed or none of its tasks is left.
-- @tparam[opt] number seconds how long (default: until closed)
function Node:run(seconds)
    check_timeout("node:run", "seconds", seconds)
    under_nginx("node:run")
    if self.closed then
        error("node:run: node is closed", 2)
    end
    local busy = core.busy(self, true)
    if busy then
        error("node:run: " .. busy, 2)
    end
    local st = state(self)
    local sim = core.sim_of(self)
    if sim then
        local node = self
        if seconds then
            sim_loop(sim, sim:now() + seconds, function() return node.closed end)
        else
            while not node.closed and live_tasks(st) do
                sim_loop(sim, sim:now() + SIM_SLICE, function()
                    return node.closed or not live_tasks(st)
                end)
            end
        end
        return
    end
    local deadline = seconds and self:now() + seconds or huge
    while not self.closed do
        local left = deadline - self:now()
        if left <= 0 then
            break
        end
        self:poll(left)
    end
    if self.closed then
        run_tasks(st, self) -- let the tasks woken by close() see it
    end
end

--- In a task: waits for the next message no `message` handler took. Messages that arrive
-- with nobody waiting are queued (at most 1024; the oldest is dropped and counted in
-- `stats().receive_dropped`).
-- @tparam[opt] integer mtype only a message of this type, 0-65535 (others stay queued)
-- @tparam[opt] number timeout seconds
-- @treturn Peer peer
-- @treturn integer type
-- @treturn string data
-- @treturn table info as for the `message` event
-- @return `nil, "timeout"` or `nil, "closed"`
function Node:receive(mtype, timeout)
    check_type("node:receive", mtype)
    check_timeout("node:receive", "timeout", timeout)
    local task = current_task("node:receive")
    if self.closed then
        return nil, "closed"
    end
    local st = state(self)
    local inbox = st.inbox
    for i = 1, #inbox do
        local m = inbox[i]
        if mtype == nil or m[2] == mtype then
            table.remove(inbox, i)
            return m[1], m[2], m[3], m[4]
        end
    end
    st.receivers[#st.receivers + 1] = { task = task, gen = task.gen + 1, mtype = mtype }
    return wait(task, timeout)
end

--- In a task: `node:connect`, waited for until the peer joins. Also
-- `node:connect_await(target, timeout)`.
-- @tparam string target `"host:port"` or an id, as for `connect`
-- @tparam[opt] table opts as for `connect` (`opts.id`, `opts.via`)
-- @tparam[opt] number timeout seconds
-- @treturn Peer the peer, once joined
-- @return `nil, err`: the `connect` failure, the `error` event's text, a leave reason,
-- `"closed"`, or `"timeout"`
function Node:connect_await(target, opts, timeout)
    if type(opts) == "number" and timeout == nil then
        opts, timeout = nil, opts
    end
    check_timeout("node:connect_await", "timeout", timeout)
    local task = current_task("node:connect_await")
    local peer, err = self:connect(target, opts)
    if not peer then
        return nil, err
    end
    if peer.state == "connected" then
        return peer
    end
    local st = state(self)
    st.connects[#st.connects + 1] = { peer = peer, task = task, gen = task.gen + 1 }
    local p, e = wait(task, timeout)
    if p then
        return p
    end
    return nil, e
end

core.extend("Node", Node)

-- ========================================================================================
-- Peer

--- Coroutine helpers of a peer.
-- @type Peer
local Peer = {}

--- In a task: `peer:send` with a callback, waited for.
-- @tparam integer mtype the message type, 0-65535
-- @tparam string data the message
-- @tparam[opt] number timeout seconds; when it passes first, the message may still be
-- delivered and a late reply is ignored
-- @tparam[opt] table opts *(addition)* as for `peer:send`; it may stand in the timeout's place
-- @tparam[opt=0] integer opts.lane the lane, 0-254
-- @treturn boolean `true`
-- @treturn ?string the reply (the remote handler's return value)
-- @return `nil, err`: the remote error text, `"disconnected"`, `"timeout"`, `"closed"`, or a
-- `send` failure such as `"queue full"`
function Peer:send_await(mtype, data, timeout, opts)
    if type(timeout) == "table" and opts == nil then
        timeout, opts = nil, timeout
    end
    check_timeout("peer:send_await", "timeout", timeout)
    if opts ~= nil and type(opts) ~= "table" then
        argerror("peer:send_await", "opts", "must be a table or nil", 2)
    end
    local task = current_task("peer:send_await")
    local gen = task.gen + 1
    local ok, err = self:send(mtype, data, function(success, value)
        wake(task, gen, success, value)
    end, opts)
    if not ok then
        return nil, err
    end
    local success, value = wait(task, timeout)
    if success then
        return true, value
    end
    return nil, value
end

core.extend("Peer", Peer)

-- ========================================================================================
-- Simulator

-- The creation hook of every sim: sim:run() (the core's, after its checks) calls `run`,
-- which resumes the tasks of the sim's nodes when their timers come due.
local function install_sim(sim)
    state(sim).run = function(s, seconds)
        sim_loop(s, s:now() + seconds)
    end
end

core.hooks { node = install, sim = install_sim }

-- ========================================================================================
-- Module functions

--- Module functions of the Lua layer
-- @section lua_module

--- In a task: yields for `seconds` on its node's clock (virtual time on a simulator).
-- @tparam number seconds >= 0
function M.sleep(seconds)
    if type(seconds) ~= "number" or not (seconds >= 0) then
        argerror("p2pnet.sleep", "seconds", "must be a number >= 0")
    end
    local task = current_task("p2pnet.sleep")
    wait(task, seconds)
end

return M
