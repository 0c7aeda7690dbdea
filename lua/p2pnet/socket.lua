--- Drives p2pnet nodes with LuaSocket's `socket.select`.
--
--    local psocket = require "p2pnet.socket"
--    local w = psocket.wrap(node)             -- what socket.select takes
--    socket.select({ w, server_sock }, nil, w:timeout())
--    w:poll()
--    -- or, with other sockets to serve:
--    local readable = psocket.step({ w }, 1, { server_sock })
--    psocket.loop({ w })                      -- until every node is closed
--
-- `socket.select` accepts any object with a `getfd()` method (and asks `dirty()` when there
-- is one). A wrapper's `getfd()` is the node's descriptor (-1, which select skips, once the
-- node is closed); `timeout()` is `node:next_timeout()`, and asking it hands sends made
-- since the last poll to the socket, so ask it right before `select`.
-- @module p2pnet.socket
local socket = require "socket"
local loop = require "p2pnet.loop"

local M = {}

local Wrapper = {}
Wrapper.__index = Wrapper

--- The node's descriptor, or -1 once it is closed.
function Wrapper:getfd()
    return self.node.closed and -1 or self.fd
end

--- Always false: the node keeps nothing buffered that select cannot see (queued events
-- show as `timeout() == 0`).
function Wrapper.dirty()
    return false
end

--- Ignored: here for code that treats the wrapper as a socket.
function Wrapper.settimeout() end

--- Seconds until the node's next timer, or nil once it is closed.
function Wrapper:timeout()
    return loop.wait({ self.node })
end

--- `node:poll(0)`, unless the node is closed.
function Wrapper:poll()
    if self.node.closed then return 0 end
    return self.node:poll(0)
end

--- A wrapper for `node`, for `socket.select`; `w.node` is the node.
-- @param node an open UDP node
function M.wrap(node)
    local fd = loop.check_node("p2pnet.socket.wrap", node)
    return setmetatable({ node = node, fd = fd }, Wrapper)
end

local function check_list(fname, list, what)
    if type(list) ~= "table" then
        error(("%s: argument '%s' must be an array"):format(fname, what), 3)
    end
end

--- One turn: one `socket.select` on the wrappers and `sockets`, waiting at most `timeout`
-- seconds and no longer than the first node timer, then a poll of each node that is readable
-- or due.
-- @tparam table wrappers array of wrappers (from `wrap`)
-- @tparam[opt] number timeout seconds; default: until the first node timer
-- @tparam[opt] table sockets array of other objects for select to watch for reading
-- @treturn table the members of `sockets` that are readable (as `socket.select` returns them)
-- @treturn integer how many of the nodes are still open
function M.step(wrappers, timeout, sockets)
    check_list("p2pnet.socket.step", wrappers, "wrappers")
    if timeout ~= nil and (type(timeout) ~= "number" or not (timeout >= 0)) then
        error("p2pnet.socket.step: argument 'timeout' must be a number of seconds >= 0", 2)
    end
    if sockets ~= nil then check_list("p2pnet.socket.step", sockets, "sockets") end
    for i = 1, #wrappers do
        if getmetatable(wrappers[i]) ~= Wrapper then
            error(("p2pnet.socket.step: argument 'wrappers' must hold wrap(node) results (item %d"
                   .. " is a %s)"):format(i, type(wrappers[i])), 2)
        end
    end
    local recvt, nodes = {}, {}
    for i = 1, #wrappers do
        recvt[i] = wrappers[i]
        nodes[i] = wrappers[i].node
    end
    for i = 1, sockets and #sockets or 0 do recvt[#recvt + 1] = sockets[i] end
    local wait = loop.wait(nodes, timeout) or timeout
    if wait == nil and #recvt == 0 then wait = 0 end -- nothing left to wait for
    local readable = socket.select(recvt, nil, wait)
    local ready, open = {}, 0
    for _, w in ipairs(wrappers) do
        local node = w.node
        if not node.closed and (readable[w] or node:next_timeout() <= 0) then node:poll(0) end
        if not node.closed then open = open + 1 end
    end
    for i = 1, sockets and #sockets or 0 do
        if readable[sockets[i]] then ready[#ready + 1] = sockets[i] end
    end
    return ready, open
end

--- Steps until every node of `wrappers` is closed; `fn`, when given, runs after each step
-- (with the step's readable sockets) and may close nodes or send.
-- @tparam table wrappers array of wrappers
-- @tparam[opt] function fn
-- @tparam[opt] table sockets as for `step`
function M.loop(wrappers, fn, sockets)
    check_list("p2pnet.socket.loop", wrappers, "wrappers")
    repeat
        local ready = M.step(wrappers, nil, sockets)
        if fn then fn(ready) end
    until M.open(wrappers) == 0
end

--- How many nodes of `wrappers` are open.
function M.open(wrappers)
    local n = 0
    for _, w in ipairs(wrappers) do
        if not w.node.closed then n = n + 1 end
    end
    return n
end

return M
