-- A minimal echo server and client on 127.0.0.1.
--   lua5.4 examples/echo.lua server [port]        answers every message with its own text
--   lua5.4 examples/echo.lua client host:port msg  sends msg, prints the echo, exits
--   lua5.4 examples/echo.lua                       both in one process (a self-test)
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
if not os.getenv("LUA_CPATH") then
    package.cpath = "./build/?.so;" .. package.cpath
end
local p2pnet = require "p2pnet"

local function server(port)
    local node = assert(p2pnet.node { host = "127.0.0.1", port = port or 0 })
    node:on("message", function(_, _, data) return data end)
    print("echo server " .. node.id .. " at " .. node:address())
    return node
end

-- Runs a client task on `node`: connects, sends, prints the reply, closes the node.
local function client(node, target, text)
    node:spawn(function()
        local peer, err = node:connect_await(target, 5)
        if not peer then
            print("connect failed: " .. err)
        else
            local ok, reply = peer:send_await(1, text, 5)
            print(ok and ("echo: " .. reply) or ("failed: " .. tostring(reply)))
        end
        node:close()
    end)
end

local mode = arg[1]
if mode == "server" then
    server(tonumber(arg[2])):run()
elseif mode == "client" then
    local node = assert(p2pnet.node { host = "127.0.0.1" })
    client(node, assert(arg[2], "usage: echo.lua client host:port message"), arg[3] or "hello")
    node:run()
else
    local srv = server()
    local node = assert(p2pnet.node { host = "127.0.0.1" })
    client(node, srv:address(), "hello, echo")
    -- one process, two nodes: drive the server from a task on the client's loop
    node:spawn(function()
        while not node.closed do
            srv:poll(0)
            p2pnet.sleep(0.001)
        end
    end)
    node:run(10)
    srv:close()
end
