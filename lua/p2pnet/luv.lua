--- Drives a p2pnet node from a libuv loop (luv).
--
--    local uv = require "luv"
--    local p2pnet = require "p2pnet"
--    local driver = require("p2pnet.luv").attach(node)
--    uv.run()     -- returns once every handle is closed: driver:close() or node:close()
--
-- Three libuv handles per node: a poll handle on `node:fd()` calls `node:poll(0)` when a
-- datagram is readable; a prepare handle, which libuv runs right before each wait, asks
-- `node:next_timeout()` (handing sends made since the last poll to the socket) and arms a
-- one-shot timer for that long, rounded up to the next millisecond, whose callback polls
-- the node too. A node closed by any code is noticed at the next prepare, and the handles close,
-- so `uv.run()` can return.
-- @module p2pnet.luv
local uv = require "luv"
local loop = require "p2pnet.loop"

local M = {}

-- The nodes attached now (weak keys): libuv takes one poll handle per descriptor.
local attached = setmetatable({}, { __mode = "k" })

local Driver = {}
Driver.__index = Driver

--- Stops watching the node and closes the three handles; the node stays open. Idempotent.
function Driver:stop()
    if attached[self.node] == self then attached[self.node] = nil end
    for _, h in ipairs { self.poll, self.prepare, self.timer } do
        if not h:is_closing() then h:close() end
    end
end

--- Stops watching, then closes the node. libuv wants a poll handle stopped before its
-- descriptor is closed: prefer this to a bare `node:close()`.
function Driver:close()
    self:stop()
    if not self.node.closed then self.node:close() end
end

--- Watches `node` on the default luv loop.
-- @param node an open UDP node
-- @treturn table a driver with `stop()` and `close()`; `driver.node` is the node
function M.attach(node)
    local fd = loop.check_node("p2pnet.luv.attach", node)
    local prev = attached[node]
    if prev and not prev.poll:is_closing() then
        error("p2pnet.luv.attach: argument 'node' is attached already (driver:stop() first)", 2)
    end
    local d = setmetatable({ node = node }, Driver)
    attached[node] = d
    local function turn()
        if node.closed then return d:stop() end
        node:poll(0)
    end
    d.poll = assert(uv.new_poll(fd))
    d.timer = assert(uv.new_timer())
    d.prepare = assert(uv.new_prepare())
    d.poll:start("r", turn)
    d.prepare:start(function()
        if node.closed then return d:stop() end
        uv.update_time() -- the timer counts from now, not from the start of this turn
        d.timer:start(loop.ms_up(node:next_timeout()), 0, turn)
    end)
    return d
end

return M
