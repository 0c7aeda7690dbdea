-- Request latency of examples/openresty: N POST /send requests over one keep-alive
-- connection, each waiting on the receipt of the remote peer.
--   lua5.4 examples/openresty/bench.lua HOST PORT PEER_ID [N] [WORKER]
-- With WORKER, it reconnects until its connection lands on that nginx worker (GET /info
-- says which), to time the path through another worker.
-- Prints "send ms: median M p90 M p99 M max M (N requests)". Needs LuaSocket.
local socket = require "socket"

local host, port, peer = arg[1], tonumber(arg[2]), arg[3]
local n = tonumber(arg[4] or "200")
local worker = tonumber(arg[5])
assert(host and port and peer, "usage: bench.lua HOST PORT PEER_ID [N] [WORKER]")

local c

local function request(body, path)
    local req = ("POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s")
        :format(path or ("/send?type=1&to=" .. peer), #body, body)
    assert(c:send(req))
    local len
    while true do
        local line = assert(c:receive("*l"))
        if line == "" then
            break
        end
        local v = line:match("^[Cc]ontent%-[Ll]ength:%s*(%d+)")
        if v then
            len = tonumber(v)
        end
        if line:match("^[Tt]ransfer%-[Ee]ncoding:%s*chunked") then
            len = "chunked"
        end
    end
    if len == "chunked" then
        local out = {}
        while true do
            local size = tonumber(assert(c:receive("*l")), 16)
            if size == 0 then
                assert(c:receive("*l"))
                break
            end
            out[#out + 1] = assert(c:receive(size))
            assert(c:receive("*l"))
        end
        return table.concat(out)
    end
    return assert(c:receive(len))
end

for _ = 1, 100 do
    c = assert(socket.connect(host, port))
    c:setoption("tcp-nodelay", true)
    if not worker then
        break
    end
    local info = request("", "/info")
    if tonumber(info:match('"worker":(%d+)')) == worker then
        break
    end
    c:close()
    c = nil
end
assert(c, "no connection landed on worker " .. tostring(worker))

local times = {}
for i = 1, n do
    local t0 = socket.gettime()
    local body = request("ping" .. i)
    times[i] = (socket.gettime() - t0) * 1000
    assert(body:find('"ok":true', 1, true), body)
end
table.sort(times)
local function q(p)
    return times[math.max(1, math.ceil(p * n))]
end
print(("send ms: median %.3f p90 %.3f p99 %.3f max %.3f (%d requests%s)")
    :format(q(0.5), q(0.9), q(0.99), times[n], n, worker and ", worker " .. worker or ""))
