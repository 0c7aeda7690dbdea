-- p2pnet: peer-to-peer networking for Lua.
--
-- This module is the pure-Lua layer over the C module `p2pnet.core`. It re-exports the core
-- (identities, nodes, peers, the simulator) and adds coroutine helpers: tasks spawned on a
-- node run inside that node's loop (node:poll, node:run, and sim:run for simulated nodes),
-- and helpers such as send_await, receive and sleep never block: they yield to that loop.
--
-- How it fits the core: the core keeps exactly one handler per event. This layer installs a
-- router for each event once per node and keeps the user's handlers itself, so that joins,
-- errors and messages can also wake tasks waiting in connect_await or receive.
local core = require "p2pnet.core"

local M = {
    identity = core.identity,
    MAX_DATAGRAM = core.MAX_DATAGRAM,
    version = core.version,
}

local Node = core._methods.Node
local Peer = core._methods.Peer
local Sim = core._methods.Sim

local core_on = Node.on
local core_poll = Node.poll
local core_stats = Node.stats
local core_next_timeout = Node.next_timeout
local core_sim_node = Sim.node
local core_sim_run = Sim.run

local unpack = table.unpack or unpack -- luacheck: ignore 143
local huge = math.huge

-- Messages kept for node:receive() when no task is waiting, per node; the oldest is dropped
-- beyond this (and counted in stats().receive_dropped).
local INBOX_LIMIT = 1024
-- Virtual time a simulated node:run() without a duration advances per slice, in seconds.
local SIM_SLICE = 1.0
-- Times within half a microsecond count as reached: the core's clocks are in microseconds.
local EPSILON = 5e-7

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

-- Calls a core function on behalf of a public function of this layer. A misuse error it
-- raises is raised again with the position of the user's call, not of this file.
local function call_core(fn, ...)
    local r = pack(pcall(fn, ...))
    if not r[1] then
        local msg = r[2]
        if type(msg) == "string" then
            msg = msg:gsub("^[^\n]-:%d+: ", "", 1)
        end
        error(msg, 3)
    end
    return unpack(r, 2, r.n)
end

-- The task calling a helper; raises when there is none.
local function current_task(fname)
    local co = coroutine.running()
    if current == nil or current.co ~= co then
        error(fname .. ": must be called inside a task (see node:spawn)", 3)
    end
    return current
end

---------------------------------------------------------------------------------------------
-- Tasks

-- Suspends the running task until wake() is called with the generation it gets here, or
-- until `timeout` seconds have passed on its node's clock (then it returns nil, "timeout").
local function wait(task, timeout)
    task.gen = task.gen + 1
    task.waiting = true
    task.wake_at = timeout and task.node:_now() + timeout or nil
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
    local now = node:_now()
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

---------------------------------------------------------------------------------------------
-- Per-node state and the event routers

local function state(node)
    return node:_state()
end

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

local function install(node)
    local st = state(node)
    st.tasks = {}
    st.user = {}
    st.inbox = {}
    st.receivers = {}
    st.connects = {}
    st.task_errors = 0
    st.receive_dropped = 0
    local user = st.user
    st.routers = {
        join = function(peer)
            settle_connects(st, peer, peer)
            local fn = user.join
            if fn then
                return fn(peer)
            end
        end,
        leave = function(peer, reason)
            settle_connects(st, peer, nil, reason)
            local fn = user.leave
            if fn then
                return fn(peer, reason)
            end
        end,
        error = function(err, peer)
            if peer ~= nil then
                settle_connects(st, peer, nil, err)
            end
            local fn = user.error
            if fn then
                return fn(err, peer)
            end
        end,
        message = function(peer, mtype, data, info)
            local fn = user.message
            if fn then
                return fn(peer, mtype, data, info)
            end
            deliver(st, peer, mtype, data, info)
        end,
    }
    for event, router in pairs(st.routers) do
        core_on(node, event, router)
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
    return node
end

---------------------------------------------------------------------------------------------
-- Node

--- p2pnet.node([opts]) -> node | nil, err
function M.node(opts)
    local node, err = call_core(core.node, opts)
    if not node then
        return nil, err
    end
    return install(node)
end

--- node:on(event, fn): the one handler for event; nil removes it.
function Node:on(event, fn)
    call_core(core_on, self, event, fn) -- validates the arguments and that the node is open
    local st = state(self)
    st.user[event] = fn
    core_on(self, event, st.routers[event])
end

--- node:poll([timeout]) -> number of events dispatched. Also resumes this node's tasks, and
-- waits no longer than until the next task timer.
function Node:poll(timeout)
    check_timeout("node:poll", "timeout", timeout)
    if self:_closed() then
        error("node:poll: node is closed", 2)
    end
    -- from a handler of this node, or a finalizer during its drain: raise before any task
    -- runs (see "re-entrancy" in lp2pnet.c)
    local busy = self:_busy()
    if busy then
        error("node:poll: " .. busy, 2)
    end
    timeout = timeout or 0
    local st = state(self)
    if self:_sim() then
        -- virtual time only moves in sim:run(); here: pending events and ready tasks
        local n = core_poll(self, 0)
        run_tasks(st, self)
        return n
    end
    local deadline = self:_now() + timeout
    local total = 0
    while true do
        local ran = run_tasks(st, self)
        if self:_closed() then
            return total
        end
        local now = self:_now()
        local wait_for = deadline - now
        local t = next_task_time(st, now)
        if ran > 0 then
            wait_for = 0
        elseif t and t - now < wait_for then
            wait_for = t - now
        end
        if wait_for < 0 then
            wait_for = 0
        end
        local n, err = core_poll(self, wait_for)
        if not n then
            return nil, err
        end
        total = total + n
        ran = ran + run_tasks(st, self)
        if total > 0 or ran > 0 or self:_closed() or self:_now() >= deadline then
            return total
        end
    end
end

--- node:next_timeout() -> seconds until the core's next timer or a task's, whichever first.
function Node:next_timeout()
    local t = call_core(core_next_timeout, self)
    local st = state(self)
    if st.tasks then
        local now = self:_now()
        local due = next_task_time(st, now)
        if due and due - now < t then
            t = due > now and due - now or 0
        end
    end
    return t
end

--- node:stats() -> table; adds task_errors and receive_dropped to the core's counters.
function Node:stats()
    local t = call_core(core_stats, self)
    local st = state(self)
    t.task_errors = st.task_errors or 0
    t.receive_dropped = st.receive_dropped or 0
    return t
end

--- node:spawn(fn, ...) -> coroutine: runs fn(...) as a task on this node's loop.
function Node:spawn(fn, ...)
    if self:_closed() then
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
    return task.co
end

-- Runs the simulator of `sim` until virtual time t_end or until stop() holds, resuming the
-- tasks of its nodes between steps, on virtual time.
local function sim_loop(sim, t_end, stop)
    local sst = sim:_state()
    local nodes = sst.nodes or {}
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
            if st.tasks then
                local t = next_task_time(st, now)
                if t and t < target then
                    target = t
                end
            end
        end
        if target < now then
            target = now
        end
        sim:_run_until(target, true) -- back here after any event: it may wake a task
    end
end

--- node:run([seconds]): polls and resumes tasks until node:close(), or for `seconds`.
-- A simulated node runs its whole simulator on virtual time; without `seconds` it stops
-- when the node is closed or none of its tasks is left.
function Node:run(seconds)
    check_timeout("node:run", "seconds", seconds)
    if self:_closed() then
        error("node:run: node is closed", 2)
    end
    local busy = self:_busy(true)
    if busy then
        error("node:run: " .. busy, 2)
    end
    local st = state(self)
    local sim = self:_sim()
    if sim then
        local node = self
        if seconds then
            sim_loop(sim, sim:now() + seconds, function() return node:_closed() end)
        else
            while not node:_closed() and live_tasks(st) do
                sim_loop(sim, sim:now() + SIM_SLICE, function()
                    return node:_closed() or not live_tasks(st)
                end)
            end
        end
        return
    end
    local deadline = seconds and self:_now() + seconds or huge
    while not self:_closed() do
        local left = deadline - self:_now()
        if left <= 0 then
            break
        end
        self:poll(left)
    end
    if self:_closed() then
        run_tasks(st, self) -- let the tasks woken by close() see it
    end
end

--- node:receive([type] [, timeout]) -> peer, type, data, info | nil, "timeout"
function Node:receive(mtype, timeout)
    check_type("node:receive", mtype)
    check_timeout("node:receive", "timeout", timeout)
    local task = current_task("node:receive")
    if self:_closed() then
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

--- node:connect_await(target [, opts] [, timeout]) -> peer | nil, err
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

---------------------------------------------------------------------------------------------
-- Peer

--- peer:send_await(type, data [, timeout]) -> true, reply | nil, err
function Peer:send_await(mtype, data, timeout)
    check_timeout("peer:send_await", "timeout", timeout)
    local task = current_task("peer:send_await")
    local gen = task.gen + 1
    local ok, err = self:send(mtype, data, function(success, value)
        wake(task, gen, success, value)
    end)
    if not ok then
        return nil, err
    end
    local success, value = wait(task, timeout)
    if success then
        return true, value
    end
    return nil, value
end

---------------------------------------------------------------------------------------------
-- Simulator

--- p2pnet.sim([opts]) -> sim
function M.sim(opts)
    local sim = call_core(core.sim, opts)
    sim:_state().nodes = {}
    return sim
end

--- sim:node([opts]) -> node | nil, err
function Sim:node(opts)
    local node, err = call_core(core_sim_node, self, opts)
    if not node then
        return nil, err
    end
    local sst = self:_state()
    sst.nodes = sst.nodes or {}
    sst.nodes[#sst.nodes + 1] = node
    return install(node)
end

--- sim:run(seconds): advances virtual time, delivering packets, firing timers and events,
-- and resuming the tasks of the sim's nodes when their timers come due.
function Sim:run(seconds)
    if type(seconds) ~= "number" or not (seconds >= 0) then
        argerror("sim:run", "seconds", "must be a number >= 0")
    end
    local busy = self:_busy()
    if busy then
        error(busy, 2)
    end
    local sst = self:_state()
    if not sst.nodes or #sst.nodes == 0 then
        return core_sim_run(self, seconds)
    end
    sim_loop(self, self:now() + seconds)
end

---------------------------------------------------------------------------------------------
-- Module functions

--- p2pnet.sleep(seconds): in a task, yields for that long.
function M.sleep(seconds)
    if type(seconds) ~= "number" or not (seconds >= 0) then
        argerror("p2pnet.sleep", "seconds", "must be a number >= 0")
    end
    local task = current_task("p2pnet.sleep")
    wait(task, seconds)
end

return M
