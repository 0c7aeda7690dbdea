--- Shared pieces of the event-loop adapters (p2pnet.luv, p2pnet.cqueues, p2pnet.copas,
-- p2pnet.socket).
--
-- Every adapter follows the rule of docs/API.md, "Driving nodes from an external event
-- loop": call `node:poll(0)` when the node's descriptor is readable or when
-- `node:next_timeout()` has passed, and ask `next_timeout()` again right before the loop
-- blocks. That last call also hands the sends that other code made since the last poll to the
-- socket, so a message sent from a timer or a coroutine of the host loop leaves at once.
-- @module p2pnet.loop
local M = {}

--- The longest wait an adapter asks of its loop, in seconds (one day). A node with no timer
-- at all reports a larger `next_timeout()`; this keeps the figure a loop accepts.
M.MAX_WAIT = 86400

--- Raises unless `node` is an open UDP node; returns its descriptor.
-- @tparam string fname the public function, for the message
-- @param node the argument to check
-- @treturn integer the node's UDP descriptor
function M.check_node(fname, node)
    local ok = type(node) == "userdata" and tostring(node):match("^p2pnet%.Node%(") ~= nil
    if ok and node.closed then ok = false end
    local fd = ok and node:fd() or nil
    if type(fd) ~= "number" then
        error(("%s: argument 'node' must be an open UDP node (not simulated, not closed)")
              :format(fname), 3)
    end
    return fd
end

--- Seconds until the first timer of the open nodes in `nodes` is due, at most `limit` (and at
-- most `MAX_WAIT`). Asking hands each node's waiting sends to its socket.
-- @tparam table nodes array of nodes
-- @tparam[opt] number limit seconds
-- @treturn number|nil the wait, or nil when every node is closed
function M.wait(nodes, limit)
    local wait, open = limit or M.MAX_WAIT, false
    if wait > M.MAX_WAIT then wait = M.MAX_WAIT end
    for i = 1, #nodes do
        local node = nodes[i]
        if not node.closed then
            open = true
            local t = node:next_timeout()
            if t < wait then wait = t end
        end
    end
    return open and wait or nil
end

--- Polls (with timeout 0) every open node of `nodes` whose timer is due, and drops the closed
-- ones from the array.
-- @tparam table nodes array of nodes
-- @treturn integer how many nodes are still open
function M.poll_due(nodes)
    local j = 0
    for i = 1, #nodes do
        local node = nodes[i]
        nodes[i] = nil
        if not node.closed and node:next_timeout() <= 0 then node:poll(0) end
        if not node.closed then
            j = j + 1
            nodes[j] = node
        end
    end
    return j
end

--- `seconds` in whole milliseconds, rounded up (and capped at `MAX_WAIT`). A timer rounded
-- down would fire before the node's deadline, find nothing due, and be armed again at 0 ms:
-- a busy loop for the last millisecond of every wait.
-- @tparam number seconds
-- @treturn integer milliseconds
function M.ms_up(seconds)
    if seconds > M.MAX_WAIT then seconds = M.MAX_WAIT end
    if seconds <= 0 then return 0 end
    return math.ceil(seconds * 1000)
end

return M
