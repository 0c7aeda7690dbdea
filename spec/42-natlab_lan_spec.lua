-- Scenario 4 of issue 12: LAN discovery on a real Ethernet segment. tests/natlab/lan.sh puts
-- four network namespaces on one Linux bridge (10.9.0.0/24, multicast snooping off, no default
-- route). Three p2pnet nodes there with `discover = "lan"`, one network key and no address to
-- connect to find each other through their beacons and form a mesh; a fourth node with another
-- network key joins nobody, and learns no id: the others' ids never show in anything it
-- reports, and its own never shows in theirs.
--
-- Each node is a separate process (its script is written to a temporary directory) that
-- reports on stdout: "id ID", "join ID ADDR", "lan ID,ID,..." (node:lan_peers() whenever it
-- changes) and "stats sent=N received=N dropped=N dials=N" (node:stats()'s lan_* fields).
--
-- The same over IPv6 link-local (issue 12: "an IPv4 multicast group (and IPv6 link-local, where
-- available)"): a segment this spec builds itself (V6 below) whose IPv4 is dead, nodes bound
-- to "::" that find each other through ff02::7032:706e and join at their fe80:: addresses with
-- the zone of their interface, a stranger with another key that learns no id, and a node bound
-- to IPv4 that hears no IPv6 beacon and joins nobody.
--
-- Needs root and network namespaces, the UDP driver's LAN socket (csrc/driver/udp.c) and the
-- binding's `discover` option and node:lan_peers() (csrc/lua/); without any of them it is
-- pending, with the reason. NATLAB_KEEP=1 keeps the children's logs.
local S = require "spec.support"

local SCRIPT = "tests/natlab/lan.sh"
local KEY, OTHER_KEY = "lan-lab-key", "another-key"
local LIFETIME = 45 -- seconds: no child outlives a run
local MESH_WITHIN = 20 -- seconds for three nodes to find each other and join

local function q(s)
    return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- The sanitizer run preloads the ASan runtime (tests/run-all.sh); only the Lua children need it.
local PRELOAD = os.getenv("LD_PRELOAD")
local NO_PRELOAD = "env -u LD_PRELOAD "

local function sh(cmd)
    local f = assert(io.popen(cmd .. " 2>&1; echo \"==exit $?\""))
    local out = f:read("a")
    f:close()
    local code = tonumber(out:match("==exit (%d+)%s*$"))
    return code == 0, (out:gsub("==exit %d+%s*$", ""))
end

local function read(path)
    local f = io.open(path, "rb")
    if not f then return "" end
    local s = f:read("a")
    f:close()
    return s
end

local function file_has(path, pattern)
    return read(path):find(pattern) ~= nil
end

-- What is missing for this scenario, or nil.
local function missing()
    local ok, out = sh("id -u")
    if not ok or out:match("^%s*(%d+)") ~= "0" then
        return "the LAN lab needs root (network namespaces)"
    end
    local probe = "p2pn-probe-" .. math.random(1e9)
    ok, out = sh(NO_PRELOAD .. "ip netns add " .. probe)
    if not ok then
        return "network namespaces are not available here (ip netns add: "
            .. out:gsub("%s+$", "") .. ")"
    end
    sh(NO_PRELOAD .. "ip netns del " .. probe)
    local need = {}
    if not (file_has("csrc/driver/udp.c", "p2p_host_next_lan")
            and file_has("csrc/driver/udp.c", "P2P_IO_LAN_START")) then
        need[#need + 1] = "the UDP driver's LAN socket (csrc/driver/udp.c: P2P_IO_LAN_START, "
            .. "p2p_host_next_lan, p2p_host_recv_lan; package P3)"
    end
    local binding = sh("grep -q '\"discover\"' csrc/lua/*.c")
    local peers = sh("grep -q 'lan_peers' csrc/lua/*.c")
    if not (binding and peers) then
        need[#need + 1] = "the binding's `discover = \"lan\"` option and node:lan_peers() "
            .. "(csrc/lua/; package P6)"
    end
    if #need > 0 then return "pending until these land: " .. table.concat(need, "; ") end
    return nil
end

-- The child: a node that discovers its LAN and says what it sees.
local CHILD = [[
package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
if not os.getenv("LUA_CPATH") then package.cpath = "./build/?.so;" .. package.cpath end
local p2pnet = require "p2pnet"
local key, lifetime, host = arg[1], tonumber(arg[2]), arg[3]
local function say(...) io.stdout:write(table.concat({ ... }, " "), "\n") io.stdout:flush() end
local node = assert(p2pnet.node { discover = "lan", network_key = key, host = host })
say("id", node.id)
node:on("join", function(peer) say("join", peer.id, tostring(peer.address)) end)
node:on("leave", function(peer, reason) say("leave", peer.id, tostring(reason)) end)
local last_lan, last_stats
local stop = node:now() + lifetime
while node:now() < stop do
    node:poll(0.05)
    local ids = {}
    for _, p in ipairs(node:lan_peers()) do ids[#ids + 1] = tostring(p.id) end
    table.sort(ids)
    local lan = table.concat(ids, ",")
    if lan ~= last_lan then last_lan = lan say("lan", lan) end
    local st = node:stats()
    local stats = ("sent=%s received=%s dropped=%s dials=%s"):format(tostring(st.lan_sent),
        tostring(st.lan_received), tostring(st.lan_dropped), tostring(st.lan_dials))
    if stats ~= last_stats then last_stats = stats say("stats", stats) end
end
node:close()
say("lifetime over")
]]

local why = missing()
if why then
    describe("scenario 4: LAN discovery", function()
        pending("skipped: " .. why)
    end)
    return
end

-- ---- a run: child nodes in namespaces, their logs, and what they report ------------------

local Run = {}
Run.__index = Run

-- ns(host): the namespace a host's node runs in.
local function new_run(ns)
    local dir = S.tmpdir()
    S.write(dir .. "/child.lua", CHILD)
    return setmetatable({ ns = ns, dir = dir, children = {} }, Run)
end

-- A node with network key `key`, bound to `bind` (default: all IPv4 addresses).
function Run:spawn(host, key, bind)
    local log = ("%s/%s.log"):format(self.dir, host)
    assert(io.open(log, "wb")):close()
    local env = PRELOAD and ("env LD_PRELOAD=" .. q(PRELOAD) .. " ") or ""
    local line = ("%sip netns exec %s env -u P2P_UDP_NO_GATEWAY %slua5.4 %s %s %d %s > %s "
        .. "2>&1 & echo $!"):format(NO_PRELOAD, q(self.ns(host)), env,
        q(self.dir .. "/child.lua"), q(key), LIFETIME, bind and q(bind) or "", q(log))
    local f = assert(io.popen(line))
    local pid = math.tointeger(tonumber(f:read("l")))
    f:close()
    local child = { host = host, pid = pid, log = log }
    self.children[#self.children + 1] = child
    return child
end

function Run:finish(what)
    for _, c in ipairs(self.children) do
        if c.pid then os.execute("kill -9 " .. c.pid .. " 2>/dev/null") end
    end
    if os.getenv("NATLAB_KEEP") then
        print(what .. " logs kept in " .. self.dir)
    else
        S.rmdir(self.dir)
    end
end

function Run:logs()
    local parts = {}
    for _, c in ipairs(self.children) do
        parts[#parts + 1] = ("---- %s\n%s"):format(c.host, read(c.log))
    end
    return table.concat(parts, "\n")
end

local function id_of(child)
    return read(child.log):match("^id (%x+)") or read(child.log):match("\nid (%x+)")
end

-- The ids a child joined (a set) and the addresses it joined them at.
local function joins(child)
    local set, addrs = {}, {}
    for id, addr in read(child.log):gmatch("join (%x+) (%S+)") do
        set[id] = true
        addrs[#addrs + 1] = addr
    end
    return set, addrs
end

-- Every child's id (each prints it at start).
function Run:ids(nodes)
    local ids = {}
    local deadline = S.now() + 10
    while S.now() < deadline do
        local all = true
        for i, c in ipairs(nodes) do
            ids[i] = ids[i] or id_of(c)
            all = all and ids[i] ~= nil
        end
        if all then break end
        os.execute("sleep 0.2")
    end
    for i = 1, #nodes do assert(ids[i], "a node did not start:\n" .. self:logs()) end
    return ids
end

-- Seconds from t0 until each of the three members joined the other two.
function Run:mesh(members, ids, t0, what)
    local deadline = t0 + MESH_WITHIN
    while S.now() < deadline do
        local all = true
        for i = 1, 3 do
            local j = joins(members[i])
            for k = 1, 3 do
                if k ~= i and not j[ids[k]] then all = false end
            end
        end
        if all then return S.now() - t0 end
        os.execute("sleep 0.2")
    end
    error(("no %s of three within %d s:\n%s"):format(what, MESH_WITHIN, self:logs()))
end

-- Each member joined the other two at addresses that match `addr_pattern`, lists them in
-- node:lan_peers(), and never heard of the ids in `strangers`.
local function check_members(members, ids, strangers, addr_pattern)
    for i = 1, 3 do
        local out = read(members[i].log)
        for _, s in ipairs(strangers) do
            assert.is_nil(out:find(s, 1, true), members[i].host .. " learned a stranger's id")
        end
        local _, addrs = joins(members[i])
        assert.is_true(#addrs >= 2)
        for _, addr in ipairs(addrs) do
            assert.is_truthy(addr:match(addr_pattern), "joined at " .. addr)
        end
        local lan_line
        for l in out:gmatch("lan ([%x,]*)") do lan_line = l end
        for k = 1, 3 do
            if k ~= i then
                assert.is_truthy(lan_line and lan_line:find(ids[k], 1, true),
                    ("node:lan_peers() of %s lacks %s"):format(members[i].host, members[k].host))
            end
        end
    end
end

-- The node with another key joined nobody, learned no member's id, lists nobody in
-- node:lan_peers(), and did hear the beacons (counted as dropped), accepting none.
local function check_stranger(stranger, ids)
    local out = read(stranger.log)
    assert.is_nil(out:find("\njoin "), "the stranger joined someone:\n" .. out)
    for k = 1, 3 do
        assert.is_nil(out:find(ids[k], 1, true), "the stranger learned an id:\n" .. out)
    end
    local last_lan
    for l in out:gmatch("lan ([%x,]*)") do last_lan = l end
    assert.are.equal("", last_lan or "")
    local dropped, received
    for d in out:gmatch("dropped=(%d+)") do dropped = tonumber(d) end
    for r in out:gmatch("received=(%d+)") do received = tonumber(r) end
    assert.is_truthy(dropped and dropped > 0, "the stranger counted no dropped beacons:\n" .. out)
    assert.are.equal(0, received)
end

describe("scenario 4: LAN discovery on one segment #natlab", function()
    local prefix, run

    local function lan(cmd, ...)
        local args = { NO_PRELOAD .. "bash", SCRIPT, cmd, prefix }
        for _, a in ipairs { ... } do args[#args + 1] = q(a) end
        return sh(table.concat(args, " "))
    end

    lazy_setup(function()
        local pid = assert(io.popen("echo $PPID")):read("l")
        prefix = "p2pn" .. pid
        run = new_run(function(host) return prefix .. "-" .. host end)
        local ok, out = lan("up", "4")
        assert(ok, "could not build the LAN lab:\n" .. out)
    end)

    lazy_teardown(function()
        if run then run:finish("LAN lab") end
        if prefix then lan("down") end
    end)

    it("three nodes with one key form a mesh; a node with another key learns no id", function()
        local t0 = S.now()
        local members = { run:spawn("l1", KEY), run:spawn("l2", KEY), run:spawn("l3", KEY) }
        local stranger = run:spawn("l4", OTHER_KEY)
        local ids = run:ids { members[1], members[2], members[3], stranger }
        local meshed_at = run:mesh(members, ids, t0, "mesh")
        print(("\n  LAN mesh of 3 formed %.1f s after start"):format(meshed_at))
        -- a little longer, so that the stranger hears more beacons (0, 1, 3 s, ...)
        os.execute("sleep 4")
        check_members(members, ids, { ids[4] }, "^10%.9%.0%.[123]:%d+$")
        check_stranger(stranger, ids)
    end)
end)

-- ---- IPv6 link-local ------------------------------------------------------------------------
--
-- v6lab: hosts v1..vN (namespaces PREFIX-v1 ...) on one bridge (PREFIX-br, multicast snooping
-- off, so MLD needs no querier), IPv6 on with no duplicate address detection (each eth0's
-- fe80:: address is usable at once), and no route anywhere. mode "v4dead": each host also has
-- 10.9.0.i/24, and nftables in its namespace drops every IPv4 packet in and out, so the
-- address is there but the segment carries no IPv4 (IPv4 beacons, broadcasts and unicasts all
-- die); "linklocal": no IPv4 address at all. Stale labs (PREFIX p2pv<pid> of a gone process)
-- are removed first.
local V6 = {}

function V6.ns(prefix, h)
    return prefix .. "-" .. h
end

function V6.down(prefix)
    local _, list = sh("ip netns list")
    for name in list:gmatch("(%S+)[^\n]*\n?") do
        if name:sub(1, #prefix + 1) == prefix .. "-" then
            local _, pids = sh(NO_PRELOAD .. "ip netns pids " .. q(name))
            for pid in pids:gmatch("%d+") do os.execute("kill -9 " .. pid .. " 2>/dev/null") end
            sh(NO_PRELOAD .. "ip netns del " .. q(name))
        end
    end
end

function V6.remove_stale()
    local _, list = sh("ip netns list")
    for pid in list:gmatch("p2pv(%d+)%-br") do
        if not sh("kill -0 " .. pid) then V6.down("p2pv" .. pid) end
    end
end

function V6.up(prefix, n, mode)
    V6.remove_stale()
    V6.down(prefix)
    local br = q(V6.ns(prefix, "br"))
    local cmds = {
        "ip netns add " .. br,
        "ip -n " .. br .. " link set lo up",
        "ip -n " .. br .. " link add br0 type bridge",
        "ip -n " .. br .. " link set br0 type bridge mcast_snooping 0",
        "ip -n " .. br .. " link set br0 up",
    }
    for i = 1, n do
        local h = q(V6.ns(prefix, "v" .. i))
        local x = "ip netns exec " .. h .. " "
        cmds[#cmds + 1] = "ip netns add " .. h
        cmds[#cmds + 1] = "ip -n " .. h .. " link set lo up"
        cmds[#cmds + 1] = x .. "sysctl -qw net.ipv6.conf.all.disable_ipv6=0 "
            .. "net.ipv6.conf.default.disable_ipv6=0 net.ipv6.conf.default.accept_dad=0 "
            .. "net.ipv6.conf.all.accept_dad=0"
        cmds[#cmds + 1] = "ip -n " .. br .. " link add vv" .. i
            .. " type veth peer name eth0 netns " .. h
        cmds[#cmds + 1] = "ip -n " .. br .. " link set vv" .. i .. " master br0"
        cmds[#cmds + 1] = "ip -n " .. br .. " link set vv" .. i .. " up"
        cmds[#cmds + 1] = x .. "sysctl -qw net.ipv6.conf.eth0.accept_dad=0"
        if mode == "v4dead" then
            cmds[#cmds + 1] = "ip -n " .. h .. " addr add 10.9.0." .. i
                .. "/24 brd 10.9.0.255 dev eth0"
            cmds[#cmds + 1] = x .. "nft " .. q("add table ip dead4; "
                .. "add chain ip dead4 in { type filter hook input priority 0; policy drop; }; "
                .. "add chain ip dead4 out { type filter hook output priority 0; policy drop; }")
        end
        cmds[#cmds + 1] = "ip -n " .. h .. " link set eth0 up"
    end
    for _, c in ipairs(cmds) do
        local ok, out = sh(NO_PRELOAD .. c)
        if not ok then
            V6.down(prefix)
            return false, c .. ": " .. out
        end
    end
    -- every host's link-local address, usable (not tentative)
    local deadline = S.now() + 5
    for i = 1, n do
        local ok, out
        repeat
            ok, out = sh(NO_PRELOAD .. "ip -n " .. q(V6.ns(prefix, "v" .. i))
                .. " -6 addr show dev eth0 scope link")
            if ok and out:find("fe80::", 1, true) and not out:find("tentative", 1, true) then
                break
            end
            os.execute("sleep 0.1")
        until S.now() > deadline
        if not (ok and out:find("fe80::", 1, true)) then
            V6.down(prefix)
            return false, "v" .. i .. " has no link-local address: " .. out
        end
    end
    return true
end

local function v6_case(mode)
    local prefix, run

    lazy_setup(function()
        local pid = assert(io.popen("echo $PPID")):read("l")
        prefix = "p2pv" .. pid
        run = new_run(function(host) return V6.ns(prefix, host) end)
        local ok, out = V6.up(prefix, 5, mode)
        assert(ok, "could not build the IPv6 LAN lab:\n" .. tostring(out))
    end)

    lazy_teardown(function()
        if run then run:finish("IPv6 LAN lab") end
        if prefix then V6.down(prefix) end
    end)

    it("three nodes bound to :: form a mesh over fe80:: addresses; a stranger learns no id; "
        .. "a node bound to IPv4 joins nobody", function()
        local t0 = S.now()
        local members = { run:spawn("v1", KEY, "::"), run:spawn("v2", KEY, "::"),
            run:spawn("v3", KEY, "::") }
        local stranger = run:spawn("v4", OTHER_KEY, "::")
        local v4node = run:spawn("v5", KEY, "0.0.0.0")
        local ids = run:ids { members[1], members[2], members[3], stranger, v4node }
        local meshed_at = run:mesh(members, ids, t0, "IPv6 mesh (" .. mode .. ")")
        print(("\n  IPv6 link-local LAN mesh of 3 (%s) formed %.1f s after start"):format(mode,
            meshed_at))
        os.execute("sleep 4")
        -- fe80::..., with the zone of eth0 (an interface index), at a port
        check_members(members, ids, { ids[4], ids[5] }, "^%[fe80::[%x:]+%%%d+%]:%d+$")
        check_stranger(stranger, ids)
        -- bound to IPv4: no IPv6 socket, so it hears nothing here, and nobody dials it
        local out = read(v4node.log)
        assert.is_nil(out:find("\njoin "), "the IPv4-bound node joined someone:\n" .. out)
        for k = 1, 3 do assert.is_nil(out:find(ids[k], 1, true)) end
    end)
end

describe("scenario 4 over IPv6: IPv4 dead on the segment #natlab", function()
    v6_case("v4dead")
end)

describe("scenario 4 over IPv6: link-local addresses only #natlab", function()
    v6_case("linklocal")
end)
