-- A mesh member in a process of its own, for spec/08-mesh_spec.lua: it joins the mesh through
-- the address it is given, prints its id and bound address (one line each), and then polls
-- until it is killed. It gives up by itself after `lifetime` seconds so that a test run that
-- dies before its teardown leaves nothing behind.
--
--   lua5.4 spec/mesh_child.lua JOIN_ADDRESS [TIMEOUT] [LIFETIME]
--
-- The module paths follow spec/helper.lua: lua/ first, build/ unless LUA_CPATH is set.
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
if not os.getenv("LUA_CPATH") then
    package.cpath = "./build/?.so;" .. package.cpath
end
local p2pnet = require "p2pnet"

local join = assert(arg[1], "usage: mesh_child.lua JOIN_ADDRESS [TIMEOUT] [LIFETIME]")
local timeout = tonumber(arg[2] or "10")
local lifetime = tonumber(arg[3] or "60")

local node = assert(p2pnet.node { host = "127.0.0.1", timeout = timeout })
io.stdout:write(node.id, "\n", node:address(), "\n")
io.stdout:flush()
assert(node:connect(join))

local stop = node:now() + lifetime
while node:now() < stop do
    node:poll(0.05)
end
node:close()
