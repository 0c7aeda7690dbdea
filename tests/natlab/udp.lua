-- Plain UDP over LuaSocket, to prove what the NAT lab's routers do before p2pnet runs there
-- (spec/11-natlab_spec.lua). Every mode prints what it sees as lines on stdout.
--
--   udp.lua reflect PORT SECONDS
--       answers "WHO" with "YOU ip:port" (the sender's address as seen here), records
--       "REG name" (answering "YOU ip:port" too) and answers "GET name" with
--       "PEER name ip:port" once that name registered
--   udp.lua who LPORT SERVER1 SERVER2
--       from local port LPORT, asks both reflectors for this host's address:
--       prints "seen-by-1 ip:port" and "seen-by-2 ip:port"
--   udp.lua punch LPORT SERVER NAME OTHER SECONDS
--       registers NAME at the reflector SERVER, learns OTHER's address there ("mapped",
--       "peer" lines), then sends "HELLO from NAME" to it every 50 ms for SECONDS; prints
--       "got HELLO from OTHER at ip:port" when one arrives, and last "result reached" or
--       "result blocked"
--   udp.lua listen LPORT SERVER SECONDS
--       asks SERVER for this host's address (which opens a mapping on the NAT), then listens:
--       prints "got MSG from ip:port" for anything but SERVER's answers, last "result heard"
--       or "result silent"
--   udp.lua knock LPORT DEST COUNT SECONDS
--       sends COUNT "KNOCK" datagrams to DEST from LPORT, then reflects on LPORT for SECONDS
--   udp.lua hard DEST N SECONDS
--       the hard side of a birthday round (design12 section 5.4): opens N sockets on any
--       port, each sends "OPEN" to DEST (the easy side's public address), prints "opened N",
--       then answers the first "PROBE ..." on any of them with "HIT ..." from that socket
--       and prints "hit-on-socket I PROBE..."; stops 1 s after a hit or after SECONDS
--   udp.lua easy LPORT HIP RATE MAX
--       the easy side: from LPORT, sends "PROBE k q" to HIP at MAX distinct random ports q
--       (1024-65535), RATE a second, until a "HIT" comes back; prints "result hit|miss
--       sent K elapsed S"
local socket = require "socket"

local function say(...)
    io.stdout:write(table.concat({ ... }, " "), "\n")
    io.stdout:flush()
end

local function split(addr)
    local ip, port = assert(addr:match("^([%d.]+):(%d+)$"))
    return ip, tonumber(port)
end

local function bind(port)
    local s = assert(socket.udp())
    assert(s:setsockname("0.0.0.0", port))
    return s
end

-- Sends `msg` to `addr` until a reply matching `pattern` arrives from there (every 100 ms,
-- for 5 s at most); returns the captures.
local function ask(s, addr, msg, pattern)
    local ip, port = split(addr)
    local deadline = socket.gettime() + 5
    while socket.gettime() < deadline do
        assert(s:sendto(msg, ip, port))
        s:settimeout(0.1)
        local data, fip, fport = s:receivefrom()
        if data and fip == ip and fport == port then
            local caps = { data:match(pattern) }
            if #caps > 0 then return table.unpack(caps) end
        end
    end
    error(("no answer to %q from %s"):format(msg, addr))
end

local modes = {}

function modes.reflect(port, seconds)
    local s = bind(tonumber(port))
    local names = {}
    local stop = socket.gettime() + tonumber(seconds)
    say("reflecting on", port)
    while socket.gettime() < stop do
        s:settimeout(0.2)
        local data, ip, fport = s:receivefrom()
        if data then
            local from = ip .. ":" .. fport
            local name = data:match("^REG (%S+)$")
            local want = data:match("^GET (%S+)$")
            if name then names[name] = from end
            if data == "WHO" or name then
                s:sendto("YOU " .. from, ip, fport)
            elseif want and names[want] then
                s:sendto("PEER " .. want .. " " .. names[want], ip, fport)
            end
        end
    end
end

function modes.who(lport, server1, server2)
    local s = bind(tonumber(lport))
    say("seen-by-1", ask(s, server1, "WHO", "^YOU (%S+)$"))
    say("seen-by-2", ask(s, server2, "WHO", "^YOU (%S+)$"))
end

function modes.punch(lport, server, name, other, seconds)
    local s = bind(tonumber(lport))
    say("mapped", ask(s, server, "REG " .. name, "^YOU (%S+)$"))
    local peer = ask(s, server, "GET " .. other, "^PEER %S+ (%S+)$")
    say("peer", peer)
    local pip, pport = split(peer)
    local got = false
    local stop = socket.gettime() + tonumber(seconds)
    while socket.gettime() < stop do
        s:sendto("HELLO from " .. name, pip, pport)
        s:settimeout(0.05)
        local data, ip, port = s:receivefrom()
        if data == "HELLO from " .. other and not got then
            got = true
            say("got", data, "at", ip .. ":" .. port)
        end
    end
    say("result", got and "reached" or "blocked")
end

function modes.listen(lport, server, seconds)
    local s = bind(tonumber(lport))
    say("mapped", ask(s, server, "WHO", "^YOU (%S+)$"))
    local sip, sport = split(server)
    local heard = false
    local stop = socket.gettime() + tonumber(seconds)
    while socket.gettime() < stop do
        s:settimeout(0.1)
        local data, ip, port = s:receivefrom()
        if data and not (ip == sip and port == sport) then
            heard = true
            say("got", data, "from", ip .. ":" .. port)
        end
    end
    say("result", heard and "heard" or "silent")
end

function modes.knock(lport, dest, count, seconds)
    local s = bind(tonumber(lport))
    local ip, port = split(dest)
    for _ = 1, tonumber(count) do
        assert(s:sendto("KNOCK", ip, port))
        socket.sleep(0.02)
    end
    say("knocked", count)
    s:close()
    modes.reflect(lport, seconds)
end

function modes.hard(dest, n, seconds)
    local ip, port = split(dest)
    local socks = {}
    for i = 1, tonumber(n) do
        local s = bind(0)
        s:settimeout(0)
        assert(s:sendto("OPEN", ip, port))
        socks[i] = s
    end
    say("opened", #socks)
    local index = {}
    for i, s in ipairs(socks) do index[s] = i end
    local stop = socket.gettime() + tonumber(seconds)
    while socket.gettime() < stop do
        local ready = socket.select(socks, nil, 0.2)
        for _, s in ipairs(ready) do
            local data, fip, fport = s:receivefrom()
            if data and data:match("^PROBE") then
                s:sendto("HIT " .. data, fip, fport)
                say("hit-on-socket", index[s], data)
                stop = math.min(stop, socket.gettime() + 1)
            end
        end
    end
    for _, s in ipairs(socks) do s:close() end
end

function modes.easy(lport, hip, rate, max)
    local s = bind(tonumber(lport))
    rate, max = tonumber(rate), tonumber(max)
    math.randomseed(os.time() + tonumber(lport))
    local ports, seen = {}, {}
    while #ports < max do
        local q = math.random(1024, 65535)
        if not seen[q] then
            seen[q] = true
            ports[#ports + 1] = q
        end
    end
    local t0 = socket.gettime()
    local sent, hit = 0, false
    while sent < max and not hit do
        local due = t0 + sent / rate
        local now = socket.gettime()
        if now < due then
            s:settimeout(due - now)
            local data = s:receivefrom()
            if data and data:match("^HIT") then hit = true end
        else
            s:sendto(("PROBE %d %d"):format(sent, ports[sent + 1]), hip, ports[sent + 1])
            sent = sent + 1
        end
    end
    local stop = socket.gettime() + 1
    while not hit and socket.gettime() < stop do
        s:settimeout(0.1)
        local data = s:receivefrom()
        if data and data:match("^HIT") then hit = true end
    end
    say("result", hit and "hit" or "miss", "sent", sent, "elapsed",
        ("%.2f"):format(socket.gettime() - t0))
end

local mode = table.remove(arg, 1)
assert(modes[mode], "usage: udp.lua reflect|who|punch|listen|knock|hard|easy ...")
modes[mode](table.unpack(arg))
