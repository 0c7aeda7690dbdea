-- A p2pnet node in a process of its own, for the NAT lab (spec/11-natlab_spec.lua). It does
-- what its options say and reports everything it sees as lines on stdout, which the spec
-- reads:
--
--   id ID / address ADDR                   at start
--   join ID ADDR direct=BOOL / leave ID REASON / error TEXT
--   path ID ADDR direct=BOOL STATE         whenever a peer's address, directness or state
--                                          changes (also at its join)
--   addresses KIND=ADDR ...                whenever node:addresses() changes
--   recv ID N                              message "msg N" from ID, in order and once
--   recv-bad ID got N expected M           anything else
--   receipt N ok|failed REPLY              the receipt of message N
--   done ok=K failed=F                     when every receipt of --send-to came back
--
--   lua5.4 tests/natlab/node.lua [options]
--     --port N             UDP port (default 0: any)
--     --connect LIST       connects to each ADDR of a comma-separated list (mediators to
--                          register with, or members)
--     --dial ID --via ADDR connects to ID through the mediator at ADDR
--     --send-to ID         once ID is connected (and --go FILE exists, when given), sends
--     --count N            N messages "msg 1" .. "msg N" (default 100) with receipts,
--     --interval S         one every S seconds (default 0: all at once)
--     --go FILE
--     --lifetime S         exits after S seconds (default 90), so nothing outlives a run
--     --stun LIST          node option stun: comma-separated "host:port" servers
--     --fallback LIST      node option fallback: comma-separated URLs, or "false"
--     --discover MODE      node option discover (such as "lan")
--     --no-portmap         node option portmap = false
--     --wait-address KIND  connects and dials only once node:addresses() holds an address of
--                          that kind ("mapped", "stun"), or after 10 s; prints
--                          "waited KIND SECONDS" or "wait-timeout KIND"
--
-- With the issue 12 options it also prints, when they change (if the binding has them):
--   nat mapping=M source=S portmap=P udp=U     node:nat()
--   pathkind ID KIND                           peer.path ("direct", "relayed", "tcp", ...)
--   stats NAME=N ...                           the node's nonzero counters among
--                                              portmap_sent stun_sent stun_received
--                                              punch_probes punch_hits punch_rounds
--                                              stream_up relay_handovers (once a second)
--
-- The module paths follow spec/mesh_child.lua: lua/ first, build/ unless LUA_CPATH is set.
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
if not os.getenv("LUA_CPATH") then
    package.cpath = "./build/?.so;" .. package.cpath
end
local p2pnet = require "p2pnet"

local function say(...)
    io.stdout:write(table.concat({ ... }, " "), "\n")
    io.stdout:flush()
end

local opt = { port = 0, count = 100, interval = 0, lifetime = 90 }
do
    local numeric = { port = true, count = true, interval = true, lifetime = true }
    local flags = { no_portmap = true }
    local i = 1
    while i <= #arg do
        local name = assert(arg[i]:match("^%-%-([%w-]+)$"), "bad option " .. arg[i])
        name = name:gsub("-", "_")
        if flags[name] then
            opt[name] = true
            i = i + 1
        else
            local value = assert(arg[i + 1], "option --" .. name .. " needs a value")
            opt[name] = numeric[name] and assert(tonumber(value), "not a number: " .. value)
                or value
            i = i + 2
        end
    end
end

local function split_list(s)
    local t = {}
    for item in s:gmatch("[^,]+") do t[#t + 1] = item end
    return t
end

-- The node's options: the issue 12 ones only when given, so this runs on older bindings.
local options = { port = opt.port }
if opt.stun then options.stun = split_list(opt.stun) end
if opt.fallback then
    options.fallback = opt.fallback ~= "false" and split_list(opt.fallback) or false
end
if opt.discover then options.discover = opt.discover end
if opt.no_portmap then options.portmap = false end
local node = assert(p2pnet.node(options))
say("id", node.id)
say("address", node:address())

local function yesno(b)
    return b == nil and "nil" or tostring(b)
end

node:on("join", function(peer)
    say("join", peer.id, tostring(peer.address), "direct=" .. yesno(peer.direct))
end)
node:on("leave", function(peer, reason) say("leave", peer.id, tostring(reason)) end)
node:on("error", function(err) say("error", tostring(err)) end)

-- The receiving side: every sender's messages must arrive numbered 1, 2, 3, ...
local expected = {}
node:on("message", function(peer, _, data)
    local n = tonumber(data:match("^msg (%d+)$"))
    local want = expected[peer.id] or 1
    if n == want then
        say("recv", peer.id, n)
        expected[peer.id] = want + 1
    else
        say("recv-bad", peer.id, "got", tostring(n or data:sub(1, 40)), "expected", want)
    end
    return "ack " .. tostring(n)
end)

-- --wait-address: the port mapping or STUN answer first, so that every flow the node opens
-- afterwards leaves through it
if opt.wait_address then
    local start, found = node:now(), false
    while not found and node:now() < start + 10 do
        node:poll(0.01)
        for _, a in ipairs(node:addresses()) do
            if a.kind == opt.wait_address then found = true end
        end
    end
    if found then
        say("waited", opt.wait_address, ("%.2f"):format(node:now() - start))
    else
        say("wait-timeout", opt.wait_address)
    end
end

for _, addr in ipairs(opt.connect and split_list(opt.connect) or {}) do
    local p, err = node:connect(addr)
    if not p then say("error", "connect " .. addr .. ": " .. tostring(err)) end
end
if opt.dial then
    local p, err = node:connect(opt.dial, { via = assert(opt.via, "--dial needs --via") })
    if not p then say("error", "dial " .. opt.dial .. ": " .. tostring(err)) end
end

-- Reports changes in the peers' paths and in this node's own addresses.
local last_path, last_addresses, last_kind, last_nat, last_stats = {}, nil, {}, nil, nil
local next_stats = 0
local STATS = { "portmap_sent", "stun_sent", "stun_received", "punch_probes", "punch_hits",
                "punch_rounds", "stream_up", "relay_handovers" }
local function report_nat()
    if type(node.nat) == "function" then
        local ok, n = pcall(node.nat, node)
        if ok and type(n) == "table" then
            local now = ("mapping=%s source=%s portmap=%s udp=%s"):format(
                tostring(n.mapping), tostring(n.source), tostring(n.portmap), tostring(n.udp))
            if now ~= last_nat then
                last_nat = now
                say("nat", now)
            end
        end
    end
    if node:now() >= next_stats then
        next_stats = node:now() + 1
        local ok, st = pcall(node.stats, node)
        if ok and type(st) == "table" then
            local parts = {}
            for _, name in ipairs(STATS) do
                local v = st[name]
                if type(v) == "number" and v ~= 0 then parts[#parts + 1] = name .. "=" .. v end
            end
            local now = table.concat(parts, " ")
            if now ~= last_stats and #parts > 0 then
                last_stats = now
                say("stats", now)
            end
        end
    end
end
local function report()
    for _, p in ipairs(node:peers()) do
        local now = ("%s direct=%s %s"):format(tostring(p.address), yesno(p.direct), p.state)
        local key = p.id or "?" -- an id is unknown until the handshake
        if last_path[key] ~= now then
            last_path[key] = now
            say("path", key, now)
        end
        local ok, kind = pcall(function() return p.path end)
        if ok and kind ~= nil and last_kind[key] ~= kind then
            last_kind[key] = kind
            say("pathkind", key, tostring(kind))
        end
    end
    report_nat()
    local have, addresses = pcall(function() return node:addresses() end)
    if have then
        local list = {}
        for _, a in ipairs(addresses) do
            list[#list + 1] = tostring(a.kind) .. "=" .. tostring(a.address)
        end
        local now = table.concat(list, " ")
        if now ~= last_addresses then
            last_addresses = now
            say("addresses", now)
        end
    end
end

-- The sending side.
local sender = { next = 1, ok = 0, failed = 0, started = nil, born = node:now() }
local function file_exists(path)
    local f = io.open(path, "rb")
    if f then f:close() end
    return f ~= nil
end
local function pump(now)
    if not opt.send_to or sender.next > opt.count then return end
    local peer = node:peer(opt.send_to)
    if not sender.started then
        local ready = peer and peer.state == "connected"
        if not ready or opt.go and not file_exists(opt.go) then
            if not sender.waiting and now > sender.born + 5 then
                sender.waiting = true -- says once why nothing is sent yet
                say("waiting", "peer=" .. (peer and peer.state or "none"),
                    "go=" .. tostring(opt.go == nil or file_exists(opt.go)))
            end
            return
        end
        sender.started = now
        say("sending", opt.count)
    end
    while sender.next <= opt.count
          and now >= sender.started + (sender.next - 1) * opt.interval do
        local n = sender.next
        local ok, err = peer:send(1, "msg " .. n, function(rok, reply)
            if rok and reply == "ack " .. n then
                sender.ok = sender.ok + 1
            else
                sender.failed = sender.failed + 1
            end
            say("receipt", n, rok and "ok" or "failed", tostring(reply))
            if sender.ok + sender.failed == opt.count then
                say("done", "ok=" .. sender.ok, "failed=" .. sender.failed)
            end
        end)
        if not ok then
            -- a full queue: try again on the next turn
            if sender.refused ~= n then say("send-error", n, tostring(err)) end
            sender.refused = n
            return
        end
        sender.next = n + 1
    end
end

local stop = node:now() + opt.lifetime
while node:now() < stop do
    node:poll(0.01)
    report()
    pump(node:now())
end
say("lifetime over")
node:close()
