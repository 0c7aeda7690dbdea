--- Drives p2pnet nodes from a cqueues controller.
--
-- Requiring this module makes every node pollable, as cqueues understands it: `node:pollfd()`
-- (its UDP descriptor), `node:events()` (`"r"`) and `node:timeout()` (`node:next_timeout()`),
-- so a coroutine can wait with `cqueues.poll(node)` and then call `node:poll(0)`. cqueues
-- fails on a descriptor closed while a coroutine waits on it: call `cqueues.cancel(node:fd())`
-- before `node:close()` in that case (`pcq.wrap` needs none of this).
--
--    local cqueues = require "cqueues"
--    local pcq = require "p2pnet.cqueues"
--    local cq = cqueues.new()
--    pcq.wrap(cq, node)          -- a coroutine on cq that polls the node when it is due
--    cq:wrap(function() ... peer:send(...) ... cqueues.sleep(1) ... end)
--    assert(pcq.loop(cq))        -- cq:loop() that also hands every coroutine's sends over
--
-- cqueues reads `timeout()` once, when the coroutine yields. A send made by another coroutine
-- arms an earlier timer and waits (batched) for the next poll, so with a bare `cq:loop()` it
-- would leave only when the driver next wakes (a keepalive: about a second when idle).
-- `pcq.loop(cq)` asks each wrapped node's `next_timeout()` after every step of the controller,
-- which hands those sends to the socket, and wakes the driver when its deadline moved
-- earlier or its node was closed.
-- @module p2pnet.cqueues
local cqueues = require "cqueues"
local condition = require "cqueues.condition"
local csocket = require "cqueues.socket"
local core = require "p2pnet.core"
local loop = require "p2pnet.loop"

local M = {}

-- When each node's driver will wake at the latest (node clock seconds), as cqueues was told.
local armed = setmetatable({}, { __mode = "k" })
-- The drivers wrapped on each controller.
local drivers = setmetatable({}, { __mode = "k" })

-- A node's clock and next_timeout() differ by microseconds between two calls; a deadline
-- earlier than the armed one by less than this does not wake the driver.
local SLACK = 0.0005

core.extend("Node", {
    -- The node's UDP descriptor, or nil once it is closed (cqueues then watches only the
    -- timeout). Methods of Node, described in the module's header (not module functions).
    pollfd = function(self)
        if self.closed then return nil end
        return (self:fd())
    end,
    -- Always `"r"`: a node waits for datagrams only.
    events = function()
        return "r"
    end,
    -- `next_timeout()`, or 0 once the node is closed.
    timeout = function(self)
        if self.closed then return 0 end
        local t = self:next_timeout()
        if t > loop.MAX_WAIT then t = loop.MAX_WAIT end
        armed[self] = self:now() + t
        return t
    end,
})

--- Adds to controller `cq` a coroutine that polls `node` whenever it is readable or due, until
-- the node is closed.
-- @param cq a cqueues controller
-- @param node an open UDP node
function M.wrap(cq, node)
    loop.check_node("p2pnet.cqueues.wrap", node)
    local d = { node = node, kick = condition.new() }
    local list = drivers[cq]
    if not list then
        list = {}
        drivers[cq] = list
    end
    list[#list + 1] = d
    -- The driver waits on a duplicate of the descriptor, which it closes itself when it ends:
    -- the node's own descriptor may be closed (node:close()) while the driver still waits,
    -- and cqueues fails on a descriptor closed under it.
    local dup = assert(csocket.dup(node:fd()))
    local watch = {
        pollfd = function() return dup:pollfd() end,
        events = function() return "r" end,
        timeout = function() return node:timeout() end,
    }
    cq:wrap(function()
        while not node.closed do
            cqueues.poll(watch, d.kick)
            if not node.closed then node:poll(0) end
        end
        dup:close()
    end)
end

--- Like `cq:loop()`, until the controller has no coroutine left: after every step it asks
-- each wrapped node's `next_timeout()`, which hands sends made by other coroutines to the
-- socket, and wakes the node's driver when it must poll sooner than it was told, or end.
-- @param cq a cqueues controller
-- @treturn true|nil `true`, or `nil, err` when a coroutine raised (as `cq:step` reports it)
function M.loop(cq)
    while not cq:empty() do
        local list = drivers[cq] or {}
        for i = #list, 1, -1 do
            local d = list[i]
            local node = d.node
            if node.closed then
                d.kick:signal()
                table.remove(list, i)
            elseif node:now() + node:next_timeout() < (armed[node] or 0) - SLACK then
                d.kick:signal()
            end
        end
        local ok, err = cq:step()
        if not ok then return nil, err end
    end
    return true
end

return M
