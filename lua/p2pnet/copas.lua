--- Drives p2pnet nodes from copas.
--
--    local copas = require "copas"
--    local pcopas = require "p2pnet.copas"
--    pcopas.attach(node)
--    copas.addthread(function() ... end)   -- your threads, servers, ...
--    pcopas.loop()                         -- until every attached node is closed
--
-- copas has no public way to watch a descriptor, but `copas.receive(sock)` waits on any
-- object that LuaSocket's `socket.select` accepts. `attach` gives it a stand-in socket: its
-- `getfd()` is the node's descriptor, and its `receive()` runs `node:poll(0)` and answers
-- `"timeout"`, so the copas thread polls the node each time a datagram arrives and waits
-- again. `pcopas.close(node)` makes it `dirty()`, which wakes the thread to end, and then
-- closes the node.
--
-- Timers are the loop's part. Debian's copas (1.1.7) has none, and a thread blocked in
-- `copas.receive` wakes only on input, so `pcopas.step`/`pcopas.loop` take the place of
-- `copas.step`/`copas.loop`: each step waits at most until the first node's
-- `next_timeout()` (asking it hands the sends made by copas threads to the socket), runs
-- `copas.step`, and polls the nodes whose timer is due. The same code runs on newer copas.
--
-- Event handlers run inside the watching thread's `copas.receive`: like every p2pnet
-- handler, they must not yield (no copas I/O in a handler; hand the work to a thread).
-- @module p2pnet.copas
local copas = require "copas"
local loop = require "p2pnet.loop"

local M = {}

-- The attached nodes that are still open.
local nodes = {}
-- The stand-in socket of each attached node.
local watches = setmetatable({}, { __mode = "k" })

--- Watches `node` with a copas thread; `pcopas.step` and `pcopas.loop` run its timers.
-- @param node an open UDP node
-- @treturn thread the copas thread
function M.attach(node)
    local fd = loop.check_node("p2pnet.copas.attach", node)
    local watch = { ending = false }
    -- select skips a descriptor of -1: the one of a closed node is not watched any more
    function watch.getfd()
        return node.closed and -1 or fd
    end
    -- a dirty socket is returned by select at once: pcopas.close ends the thread this way
    function watch.dirty()
        return watch.ending
    end
    function watch.receive()
        if watch.ending or node.closed then return nil, "closed" end
        node:poll(0)
        return nil, "timeout"
    end
    function watch.settimeout() end
    function watch.close() end -- copas.autoclose closes what a finished thread waited on
    watches[node] = watch
    nodes[#nodes + 1] = node
    return copas.addthread(function()
        copas.receive(watch, 1)
    end)
end

--- Ends the node's copas thread, then closes the node. Called from a copas thread or a
-- handler, it closes the node at the next `pcopas.step` instead. A bare `node:close()` works
-- too, but leaves the thread parked in copas (copas 1.1.7's watchdog resumes it within two
-- minutes, and it ends then).
-- @param node an attached node
function M.close(node)
    local watch = watches[node]
    if not watch or node.closed then return node:close() end
    watch.ending = true
    local co, main = coroutine.running()
    if co == nil or main then
        copas.step(0)
        node:close()
    end
end

--- One turn: waits at most `timeout` seconds for copas, and no longer than the first timer
-- of the attached nodes (without `timeout` and with no node open, it does not wait), then
-- closes the nodes `pcopas.close` marked and polls the nodes whose timer is due.
-- @tparam[opt] number timeout seconds
-- @treturn integer how many attached nodes are still open
function M.step(timeout)
    if timeout ~= nil and (type(timeout) ~= "number" or not (timeout >= 0)) then
        error("p2pnet.copas.step: argument 'timeout' must be a number of seconds >= 0", 2)
    end
    -- with no open node and no timeout there is nothing to wait for: a step that does not block
    copas.step(loop.wait(nodes, timeout) or timeout or 0)
    for i = 1, #nodes do
        local watch = watches[nodes[i]]
        if watch and watch.ending then nodes[i]:close() end
    end
    return loop.poll_due(nodes)
end

--- Steps until every attached node is closed.
function M.loop()
    while loop.poll_due(nodes) > 0 do M.step() end
end

return M
