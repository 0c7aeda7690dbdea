-- The handlers of examples/openresty/nginx.conf: a p2pnet node behind HTTP.
--
--   GET  /info                      {"id":..., "address":..., "owner":0, "worker":N, ...}
--   GET  /connect?target=host:port  connects and waits for the session: {"id":...}
--   POST /send?to=ID&type=N (body)  reliable message, waits for the receipt:
--                                   {"ok":true, "reply":..., "ms":...}
--   POST /broadcast?type=N (body)   {"id":"<message id>"}
--   GET  /peers                     [{"id":..., "address":..., "state":..., "rtt":...}, ...]
--   GET  /metrics                   the node's counters, Prometheus text format
--   GET  /receive?type=N&timeout=S  takes one queued message of that type (one client each)
--   GET  /poll?since=SEQ&timeout=S  long-poll: every message after SEQ (each client sees all)
--   GET  /events?since=SEQ          server-sent events: one "data:" line per message
--   GET  /spawn                     shows that node:spawn refuses inside nginx, and why
--
-- Every handler may run in any worker; p2pnet.ngx takes requests to the worker that holds
-- the node. Message types: 1 is answered with "echo:" .. data; the rest is only logged.
local pn = require "p2pnet.ngx"

local ngx = rawget(_G, "ngx")
local M = {}

-- A small JSON encoder (strings, numbers, booleans, arrays and objects), to depend on nothing.
local function json(v)
    local t = type(v)
    if t == "string" then
        return '"' .. v:gsub('[%c"\\\128-\255]', function(c)
            return ("\\u%04x"):format(c:byte())
        end) .. '"'
    elseif t == "number" then
        return (v ~= v or v == math.huge or v == -math.huge) and "null" or ("%.17g"):format(v)
    elseif t == "boolean" then
        return tostring(v)
    elseif t == "table" then
        local out = {}
        if #v > 0 or next(v) == nil then
            for i = 1, #v do
                out[i] = json(v[i])
            end
            return "[" .. table.concat(out, ",") .. "]"
        end
        local keys = {}
        for k in pairs(v) do
            keys[#keys + 1] = tostring(k)
        end
        table.sort(keys)
        for i, k in ipairs(keys) do
            out[i] = json(k) .. ":" .. json(v[k])
        end
        return "{" .. table.concat(out, ",") .. "}"
    end
    return "null"
end
M.json = json

local function reply(status, body)
    ngx.status = status
    ngx.header["Content-Type"] = "application/json"
    ngx.say(json(body))
end

local function fail(status, err)
    reply(status, { ok = false, error = tostring(err) })
end

local function body()
    ngx.req.read_body()
    local data = ngx.req.get_body_data()
    if not data then
        local file = ngx.req.get_body_file()
        if file then
            local f = io.open(file, "rb")
            if f then
                data = f:read("*a")
                f:close()
            end
        end
    end
    return data or ngx.var.arg_data or ""
end

local function number_arg(name, default)
    local v = tonumber(ngx.var["arg_" .. name])
    if v == nil then
        return default
    end
    return v
end

function M.init_worker()
    local connect = os.getenv("P2PNET_CONNECT")
    local ok, err = pn.start {
        shared = "p2pnet",
        host = "127.0.0.1",
        port = tonumber(os.getenv("P2PNET_PORT") or "7000"),
        -- A key file keeps the node's id across restarts and reloads (created when absent).
        identity = os.getenv("P2PNET_IDENTITY"),
        mode = os.getenv("P2PNET_MODE") or "waker",
        interval = tonumber(os.getenv("P2PNET_INTERVAL") or "0.01"),
        -- Runs in the worker that holds the node, inside node:poll: must not yield.
        on_message = function(_, mtype, data)
            if mtype == 1 then
                return "echo:" .. data
            end
        end,
        on_start = function(node)
            ngx.log(ngx.NOTICE, "p2pnet node ", node.id, " on ", node:address())
            if connect and connect ~= "" then
                node:connect(connect)
            end
        end,
    }
    if not ok then
        ngx.log(ngx.ERR, "p2pnet.ngx.start: ", err)
    end
end

function M.info()
    local info, err = pn.info()
    if not info then
        return fail(503, err)
    end
    info.worker = ngx.worker.id()
    info.pid = ngx.worker.pid()
    info.mode = pn.mode()
    reply(200, info)
end

function M.connect()
    local target = ngx.var.arg_target
    if not target then
        return fail(400, "target missing")
    end
    local id, err = pn.connect_await(target, number_arg("timeout", 10))
    if not id then
        return fail(502, err)
    end
    reply(200, { ok = true, id = id })
end

function M.send()
    local to = ngx.var.arg_to
    if not to then
        return fail(400, "to missing")
    end
    local data = body()
    ngx.update_time()
    local t0 = ngx.now()
    local ok, res = pn.send_await(to, number_arg("type", 1), data, number_arg("timeout", 10))
    ngx.update_time()
    local ms = (ngx.now() - t0) * 1000
    if not ok then
        return fail(502, res)
    end
    reply(200, { ok = true, reply = res, ms = ms, worker = ngx.worker.id() })
end

function M.broadcast()
    local id, err = pn.broadcast(number_arg("type", 1), body())
    if not id then
        return fail(502, err)
    end
    reply(200, { ok = true, id = id })
end

function M.peers()
    local list, err = pn.peers()
    if not list then
        return fail(503, err)
    end
    reply(200, list)
end

function M.metrics()
    local text, err = pn.metrics()
    if not text then
        return fail(503, err)
    end
    ngx.header["Content-Type"] = "text/plain; version=0.0.4"
    ngx.print(text)
end

function M.receive()
    local msg, err = pn.receive(number_arg("type", 1), number_arg("timeout", 10))
    if not msg then
        return fail(504, err)
    end
    reply(200, msg)
end

function M.poll()
    local list, last = pn.messages(number_arg("since"), number_arg("timeout", 25))
    if not list then
        return fail(503, last)
    end
    reply(200, { last = last, messages = list })
end

function M.events()
    ngx.header["Content-Type"] = "text/event-stream"
    ngx.header["Cache-Control"] = "no-cache"
    local since = number_arg("since")
    ngx.print(": p2pnet\n\n")
    ngx.flush(true)
    while not ngx.worker.exiting() do
        local list, last = pn.messages(since, 15)
        if not list then
            return
        end
        for _, m in ipairs(list) do
            ngx.print("id: ", m.seq, "\ndata: ", json(m), "\n\n")
        end
        if #list == 0 then
            ngx.print(": keepalive\n\n")
        end
        since = last
        local ok = ngx.flush(true)
        if not ok then
            return -- the client went away
        end
    end
end

-- node:spawn refuses inside nginx, with an error that says what to use instead.
function M.spawn_check()
    local node = pn.node()
    if not node then
        return reply(200, { owner = false })
    end
    local ok, err = pcall(node.spawn, node, function() end)
    reply(200, { owner = true, ok = ok, error = tostring(err) })
end

return M
