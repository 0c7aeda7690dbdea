-- Verification of what landed for issue 12 on 2026-11-30 (IPv6 LAN discovery, relayed ->
-- direct after UDP returns), as a user (the public Lua API, bin/p2pnet) and as an attacker on
-- the LAN. Network namespaces made here only (a bridge, veth pairs, IPv6 link-local, no
-- IPv4 unless said); nft counters in a namespace count what a node sends. Each test fails
-- while the defect it names is present. Needs root, ip, nft and python3 (the attacker's
-- datagrams); pending otherwise. Everything made here (namespaces, processes, a temp dir) is
-- removed in teardown, also after a failure; NATLAB_KEEP=1 keeps the logs.
local P = require "spec.procs"
local S = require "spec.support"

local q = S.q
local TAG = ("v13x%s"):format(assert(io.popen("echo $PPID")):read("l"))
local KEY, OTHER_KEY = "verify13-lan-key", "another-key"

local ok_env, why = P.netns_available(TAG, { "ip", "nft", "python3" })
if not ok_env then
    describe("issue 12 verification 13 #natlab #host", function()
        pending("skipped: " .. why)
    end)
    return
end

-- ---- the node every test runs ---------------------------------------------------------------
-- lua5.4 child.lua KEY|- HOST LIFETIME [name=value ...]
--   discover=lan mesh=false port=N discover_port=N connect=ADDR send=1 via=ADDR dial=ID
-- prints: id ID / address ADDR / join ID ADDR / leave ID R / recv ID TEXT / error TEXT /
-- once a second: lan ID@ADDR ...; stats k=v ...; cands ID ADDR,ADDR (peer:stats().candidates)
local CHILD = [[
local p2pnet = require "p2pnet"
local function say(...) io.stdout:write(table.concat({ ... }, " "), "\n") io.stdout:flush() end
local key, host, life = arg[1], arg[2], tonumber(arg[3])
local o = {}
for i = 4, #arg do
  local k, v = arg[i]:match("^([%w_]+)=(.*)$")
  o[k] = v
end
local opts = { host = host, port = tonumber(o.port or 0) }
if key ~= "-" then opts.network_key = key end
if o.discover then opts.discover = o.discover end
if o.discover_port then opts.discover_port = tonumber(o.discover_port) end
if o.mesh == "false" then opts.mesh = false end
if o.portmap == "false" then opts.portmap = false end
local node, err = p2pnet.node(opts)
if not node then say("error", tostring(err)) return end
say("id", node.id)
say("address", tostring(node:address()))
node:on("join", function(p)
  say("join", p.id, tostring(p.address))
  if o.send then p:send(7, "hello from " .. node.id) end
end)
node:on("leave", function(p, r) say("leave", tostring(p.id), tostring(r)) end)
node:on("error", function(e) say("error", tostring(e)) end)
node:on("message", function(p, _, data) say("recv", tostring(p.id), data) end)
if o.connect then
  local p, e = node:connect(o.connect)
  say("connect", o.connect, p and "ok" or ("nil " .. tostring(e)))
end
local dialled = false
local t0, nxt = node:now(), 0
while node:now() - t0 < life do
  node:poll(0.05)
  if o.dial and not dialled and node:now() - t0 > tonumber(o.dial_after or 3) then
    dialled = true
    local p, e = node:connect(o.dial, { via = o.via })
    say("dial", p and "ok" or ("nil " .. tostring(e)))
  end
  if node:now() >= nxt then
    nxt = node:now() + 1
    local l = {}
    for _, e in ipairs(node:lan_peers()) do l[#l + 1] = e.id .. "@" .. e.address end
    say("lan", table.concat(l, " "))
    local st = node:stats()
    say(("stats lan_dropped=%d lan_received=%d lan_dials=%d dropped_amplification=%d")
      :format(st.lan_dropped or -1, st.lan_received or -1, st.lan_dials or -1,
              st.dropped_amplification or -1))
    for _, p in ipairs(node:peers()) do
      local s = p:stats()
      if s and s.candidates then
        local c = {}
        for _, x in ipairs(s.candidates) do c[#c + 1] = x.address end
        say("cands", tostring(p.id), tostring(p.path), table.concat(c, ","))
      end
    end
  end
end
node:close()
say("closed")
]]

-- The attacker's datagrams (python3: source addresses of its choice, with zones).
--   capture PORT OUT SECONDS IF...    records each distinct beacon heard on [::]:PORT (group
--                                     joined on each IF), one hex line each, in OUT
--   beacons FILE IF SRCPREFIX NSRC DST REPEAT [LINES]   sends lines of FILE (all, or the
--                                     comma list LINES, 1-based) from SRCPREFIX1..NSRC (hex
--                                     suffixes) out of IF to DST (an address) port 44344
--   junk IF SRCPREFIX NSRC DST COUNT  malformed datagrams: 0..65000 bytes, "p2pb" headers
local ATTACK = [[
import socket, sys, time, os, random, struct
mode = sys.argv[1]
GROUP = "ff02::7032:706e"
def ifindex(name): return socket.if_nametoindex(name)
def sock_from(src, idx):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, idx)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
    s.bind((src, 0, 0, idx if src.startswith("fe80") else 0))
    return s
if mode == "capture":
    port, out, secs = int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("::", port))
    for name in sys.argv[5:]:
        mreq = socket.inet_pton(socket.AF_INET6, GROUP) + struct.pack("@I", ifindex(name))
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
    s.settimeout(0.2)
    seen, order = set(), []
    end = time.time() + secs
    while time.time() < end:
        try:
            d, a = s.recvfrom(70000)
        except socket.timeout:
            continue
        if d not in seen:
            seen.add(d); order.append(d)
    with open(out, "w") as f:
        for d in order: f.write(d.hex() + "\n")
    print("captured", len(order))
elif mode in ("beacons", "junk"):
    name, prefix, nsrc, dst = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
    idx = ifindex(name)
    dsti = (dst, 44344, 0, idx if dst.startswith("f") else 0)
    socks = [sock_from(prefix + "%x" % (i + 1), idx) for i in range(nsrc)]
    sent = 0
    if mode == "beacons":
        rep = int(sys.argv[7])
        lines = [bytes.fromhex(l.strip()) for l in open(sys.argv[6]) if l.strip()]
        if len(sys.argv) > 8:
            lines = [lines[int(i) - 1] for i in sys.argv[8].split(",")]
        for r in range(rep):
            for b in lines:
                for s in socks:
                    s.sendto(b, dsti); sent += 1
    else:
        count = int(sys.argv[6]); rnd = random.Random(13)
        sizes = [0, 1, 4, 5, 153, 154, 155, 1200, 1500, 9000, 65000]
        for i in range(count):
            n = sizes[i % len(sizes)]
            d = bytes(rnd.getrandbits(8) for _ in range(min(n, 64))) * (n // 64 + 1)
            d = d[:n]
            if n >= 8 and i % 2 == 0: d = b"p2pb\x01\x00\x00\x00" + d[8:]
            try:
                socks[i % nsrc].sendto(d, dsti); sent += 1
            except OSError:
                pass
            if i % 200 == 0: time.sleep(0.01)
    print("sent", sent)
]]

-- ---- the namespaces -------------------------------------------------------------------------
local Net = {}
Net.__index = Net

local function sh(cmd)
    local ok, out = P.run(cmd)
    assert(ok, cmd .. "\n" .. tostring(out))
    return out
end

function Net.new(name)
    return setmetatable({ prefix = TAG .. name, hosts = {}, children = {}, dir = S.tmpdir() },
        Net)
end

function Net:ns(h)
    return self.prefix .. "-" .. h
end

function Net:host(h)
    local ns = self:ns(h)
    sh("ip netns add " .. ns)
    self.hosts[#self.hosts + 1] = ns
    sh("ip -n " .. ns .. " link set lo up")
    sh("ip netns exec " .. ns .. " sysctl -qw net.ipv6.conf.all.disable_ipv6=0 "
        .. "net.ipv6.conf.default.disable_ipv6=0 net.ipv6.conf.default.accept_dad=0 "
        .. "net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.router_solicitations=0 "
        .. "net.ipv6.conf.default.accept_ra=0")
    return ns
end

-- a bridge in namespace h (multicast snooping off: MLD needs no querier)
function Net:bridge(h)
    local ns = self:host(h)
    sh("ip -n " .. ns .. " link add br0 type bridge")
    sh("ip -n " .. ns .. " link set br0 type bridge mcast_snooping 0")
    sh("ip -n " .. ns .. " link set br0 up")
    self.nports = (self.nports or 0)
    return ns
end

-- interface ifname of host h on the bridge of namespace b
function Net:plug(h, ifname, b)
    self.nports = self.nports + 1
    local port = "p" .. self.nports
    local bns, hns = self:ns(b), self:ns(h)
    sh(("ip -n %s link add %s type veth peer name %s netns %s"):format(bns, port, ifname, hns))
    sh(("ip -n %s link set %s master br0"):format(bns, port))
    sh(("ip -n %s link set %s up"):format(bns, port))
    sh(("ip netns exec %s sysctl -qw net.ipv6.conf.%s.accept_dad=0"):format(hns, ifname))
    sh(("ip -n %s link set %s up"):format(hns, ifname))
end

-- the fe80:: address of ifname in host h (once usable)
function Net:ll(h, ifname)
    local deadline = S.now() + 5
    repeat
        local _, out = P.run(("ip -n %s -6 addr show dev %s scope link"):format(self:ns(h),
            ifname))
        local a = out:match("inet6 (fe80::[%x:]+)/")
        if a and not out:find("tentative", 1, true) then return a end
        os.execute("sleep 0.1")
    until S.now() > deadline
    error("no link-local address on " .. h .. " " .. ifname)
end

function Net:ifindex(h, ifname)
    local out = sh(("ip -n %s -o link show dev %s"):format(self:ns(h), ifname))
    return tonumber(out:match("^(%d+):"))
end

-- a process in host h, output in DIR/name.log; returns the child
function Net:spawn(h, name, cmd)
    local root = P.root()
    local log = ("%s/%s.log"):format(self.dir, name)
    assert(io.open(log, "wb")):close()
    local line = ("cd %s && ip netns exec %s env -u P2P_UDP_NO_GATEWAY LUA_PATH=%s LUA_CPATH=%s "
        .. "%s > %s 2>&1 & echo $!"):format(q(root), self:ns(h),
        q(root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;;"),
        q(os.getenv("LUA_CPATH") or (root .. "/build/?.so;;")), cmd, q(log))
    local f = assert(io.popen(line))
    local pid = math.tointeger(tonumber(f:read("l")))
    f:close()
    local c = { name = name, pid = pid, log = log, host = h }
    self.children[#self.children + 1] = c
    return c
end

function Net:node(h, name, key, host, life, extra)
    if not self.child_written then
        S.write(self.dir .. "/child.lua", CHILD)
        self.child_written = true
    end
    return self:spawn(h, name, ("lua5.4 %s %s %s %d %s"):format(q(self.dir .. "/child.lua"),
        q(key or "-"), q(host), life, extra or ""))
end

function Net:attack(h, args)
    if not self.attack_written then
        S.write(self.dir .. "/attack.py", ATTACK)
        self.attack_written = true
    end
    return sh(("ip netns exec %s python3 %s %s"):format(self:ns(h), q(self.dir .. "/attack.py"),
        args))
end

function Net:logs()
    local parts = {}
    for _, c in ipairs(self.children) do
        parts[#parts + 1] = ("---- %s\n%s"):format(c.name, P.tail(P.read(c.log) or "", 40))
    end
    return table.concat(parts, "\n")
end

function Net:down()
    for _, c in ipairs(self.children) do
        if c.pid then P.kill_pid(c.pid) end
    end
    for i = #self.hosts, 1, -1 do
        local _, pids = P.run("ip netns pids " .. self.hosts[i])
        for pid in (pids or ""):gmatch("%d+") do os.execute("kill -9 " .. pid .. " 2>/dev/null") end
        P.run("ip netns del " .. self.hosts[i])
    end
    if os.getenv("NATLAB_KEEP") then
        print("logs kept in " .. self.dir)
    else
        S.rmdir(self.dir)
    end
end

local function out(c)
    return P.read(c.log) or ""
end

local function id_of(c)
    return out(c):match("^id (%x+)") or out(c):match("\nid (%x+)")
end

local function wait_ids(net, list)
    local ids = {}
    assert(P.wait_until(function()
        for i, c in ipairs(list) do ids[i] = ids[i] or id_of(c) end
        for i = 1, #list do if not ids[i] then return false end end
        return true
    end, 15), "a node did not start:\n" .. net:logs())
    return ids
end

local function last(c, pattern)
    local v
    for x in out(c):gmatch(pattern) do v = x end
    return v
end

local function stat(c, name)
    return tonumber(last(c, "\nstats [^\n]*" .. name .. "=(%-?%d+)") or "")
end

-- nft counters in namespace ns: a table named v13 with the named counters given
local function counters(ns, names)
    local o = sh(("ip netns exec %s nft list counters table inet v13"):format(ns))
    local t = {}
    for _, n in ipairs(names) do
        t[n] = tonumber(o:match("counter " .. n .. " {%s*packets (%d+)")) or -1
    end
    return t
end

local function rss_kib(pid)
    local s = P.read("/proc/" .. pid .. "/status") or ""
    return tonumber(s:match("VmRSS:%s*(%d+)")) or 0
end

-- ---- 1. as a user ---------------------------------------------------------------------------
describe("verify13: three nodes on an IPv6-only segment, as a user #natlab", function()
    local net

    lazy_setup(function()
        net = Net.new("u")
        net:bridge("br")
        for i = 1, 6 do
            net:host("h" .. i)
            net:plug("h" .. i, "eth0", "br")
        end
        for i = 1, 6 do net:ll("h" .. i, "eth0") end
    end)

    lazy_teardown(function()
        if net then net:down() end
    end)

    it("find each other with one key, exchange messages; addresses read [fe80::..%zone]:port; "
        .. "a node with another key learns no id", function()
        local m = {}
        for i = 1, 3 do
            m[i] = net:node("h" .. i, "m" .. i, KEY, "::", 40, "discover=lan send=1")
        end
        local stranger = net:node("h4", "stranger", OTHER_KEY, "::", 40, "discover=lan")
        local ids = wait_ids(net, { m[1], m[2], m[3], stranger })
        -- every member received "hello from" both others
        local ok = P.wait_until(function()
            for i = 1, 3 do
                for k = 1, 3 do
                    if k ~= i and not out(m[i]):find("recv " .. ids[k] .. " hello from "
                        .. ids[k], 1, true) then
                        return false
                    end
                end
            end
            return true
        end, 20)
        assert(ok, "the three did not exchange messages within 20 s:\n" .. net:logs())
        os.execute("sleep 2")
        for i = 1, 3 do
            local o = out(m[i])
            local zone = net:ifindex("h" .. i, "eth0")
            for id, addr in o:gmatch("\njoin (%x+) (%S+)") do
                local k = ({ [ids[1]] = 1, [ids[2]] = 2, [ids[3]] = 3 })[id]
                assert(k, "m" .. i .. " joined an unknown id " .. id)
                local want = ("[%s%%%d]:"):format(net:ll("h" .. k, "eth0"), zone)
                assert.are.equal(want, addr:sub(1, #want), "peer.address on m" .. i)
                assert.is_truthy(addr:match("^%[fe80::[%x:]+%%%d+%]:%d+$"), addr)
            end
            local lan = last(m[i], "\nlan ([^\n]*)")
            for k = 1, 3 do
                if k ~= i then
                    local a = lan:match(ids[k] .. "@(%S+)")
                    assert(a, "lan_peers() of m" .. i .. " lacks m" .. k .. ": " .. lan)
                    assert.is_truthy(a:match("^%[fe80::[%x:]+%%" .. zone .. "%]:%d+$"),
                        "lan_peers address " .. a)
                end
            end
            assert.is_nil(o:find(ids[4], 1, true), "m" .. i .. " learned the stranger's id")
        end
        local so = out(stranger)
        assert.is_nil(so:find("\njoin "), "the stranger joined someone:\n" .. so)
        for k = 1, 3 do assert.is_nil(so:find(ids[k], 1, true), "the stranger learned an id") end
        assert.is_true(stat(stranger, "lan_dropped") > 0)
        assert.are.equal(0, stat(stranger, "lan_received"))
    end)

    it("node:connect(\"[fe80::...%N]:port\") reaches a node on the segment", function()
        local target = net:node("h5", "target", KEY, "::", 30, "port=45001")
        wait_ids(net, { target })
        local ll = net:ll("h5", "eth0")
        local zone = net:ifindex("h6", "eth0")
        local addr = ("[%s%%%d]:45001"):format(ll, zone)
        local c = net:node("h6", "connector", KEY, "::", 30, "send=1 connect=" .. q(addr))
        local tid = wait_ids(net, { target, c })
        assert(P.wait_until(function()
            return out(target):find("recv " .. tid[2] .. " hello", 1, true)
        end, 10), "connect to " .. addr .. " did not join:\n" .. net:logs())
        assert.is_truthy(out(c):find("\njoin " .. tid[1] .. " " .. addr:gsub("%p", "%%%0")),
            "peer.address is not what was given:\n" .. out(c))
    end)

    it("p2pnet mediator --discover lan --host :: is found by LAN members", function()
        local root = P.root()
        local med = net:spawn("h4", "mediator", ("lua5.4 %s mediator --discover lan --host :: "
            .. "--port 7001 --network-key %s --no-portmap"):format(q(root .. "/bin/p2pnet"),
            q(KEY)))
        assert(P.wait_until(function() return out(med):find("lan discovery on", 1, true) end,
            10), "the mediator did not start:\n" .. out(med))
        local mid = out(med):match("p2pnet mediator (%x+) listening on")
        local member = net:node("h6", "member2", KEY, "::", 30, "discover=lan")
        assert(P.wait_until(function()
            return out(member):find("\njoin " .. mid .. " ", 1, true)
        end, 15), "a LAN member did not join the mediator:\n" .. net:logs())
        local a = out(member):match("\njoin " .. mid .. " (%S+)")
        assert.are.equal(("[%s%%%d]:7001"):format(net:ll("h4", "eth0"), net:ifindex("h6",
            "eth0")), a)
    end)

    -- the zone's text form through node:connect (docs/API.md: a decimal interface index, on a
    -- link-local address only; a target that does not parse returns nil, "bad address '...'")
    it("node:connect with malformed zones returns nil, \"bad address ...\" and never raises",
        function()
        local script = [==[
local p2pnet = require "p2pnet"
local node = assert(p2pnet.node { host = "::", portmap = false })
for _, t in ipairs { "[fe80::1%eth0]:5000", "[fe80::1%0]:5000", "[fd00::1%3]:5000",
                     "[fe80::1%4294967296]:5000", "[fe80::1%-1]:5000", "[fe80::1%]:5000",
                     "[::1%1]:5000", "[fe80::1%1%2]:5000", "[fe80::1%99999]:5000",
                     "[fe80::1]:5000", "[fe80::1%2]:80" } do
  local ok, p, err = pcall(node.connect, node, t)
  print(("target %s %s %s %s"):format(t, tostring(ok), tostring(p and "peer" or p),
    tostring(err)))
end
for _ = 1, 20 do node:poll(0.1) end
print("alive")
node:close()
]==]
        S.write(net.dir .. "/zones.lua", script)
        local z = net:spawn("h6", "zones", "lua5.4 " .. q(net.dir .. "/zones.lua"))
        assert(P.wait_until(function() return out(z):find("alive", 1, true) end, 15),
            "the zone script did not finish:\n" .. out(z))
        local o = out(z)
        print("\n" .. o)
        local function result(t)
            return o:match("target " .. t:gsub("%p", "%%%0") .. " ([^\n]*)")
        end
        for _, t in ipairs { "[fe80::1%eth0]:5000", "[fe80::1%0]:5000", "[fd00::1%3]:5000",
                             "[fe80::1%4294967296]:5000", "[fe80::1%-1]:5000",
                             "[fe80::1%]:5000", "[::1%1]:5000", "[fe80::1%1%2]:5000" } do
            local r = result(t)
            assert(r, "no result for " .. t)
            assert.are.equal("true nil bad address '" .. t .. "'", r, t)
        end
        -- a well-formed zone of no interface: a peer (or nil, err), not a raise
        assert.is_truthy(result("[fe80::1%99999]:5000"):match("^true "))
    end)
end)

-- ---- 2. as an attacker on the LAN -----------------------------------------------------------
-- gen: an isolated namespace where 20 nodes with KEY (ports 41001..41020), one with port 80,
-- one with port 1023 and one with OTHER_KEY (41030) beacon; the attacker records their
-- beacons there, then plays them to the victim from up to 64 spoofed fe80:: sources of its
-- own, to the group (heard on both of the victim's interfaces: two zones) and unicast.
-- The victim's namespace counts what it sends: per port named in the beacons, and in all.
describe("verify13: forged and replayed IPv6 beacons, as a LAN attacker #natlab #lab12",
    function()
    local net, victim, v4victim
    local NIDS = 20
    local names = { "dial", "beacon", "other", "lowport", "otherkey", "nonll", "same", "same0",
                    "same1" }
    for i = 1, NIDS do names[#names + 1] = "d" .. (41000 + i) end

    local function count_rules()
        local r = { "table inet v13 {" }
        for _, n in ipairs(names) do r[#r + 1] = "  counter " .. n .. " {}" end
        r[#r + 1] = "  chain out {"
        r[#r + 1] = "    type filter hook output priority 0; policy accept;"
        r[#r + 1] = "    oifname \"lo\" accept"
        r[#r + 1] = "    udp dport 44344 counter name beacon accept"
        for i = 1, NIDS do
            r[#r + 1] = ("    udp dport %d counter name d%d"):format(41000 + i, 41000 + i)
        end
        r[#r + 1] = "    udp dport { 80, 1023 } counter name lowport"
        r[#r + 1] = "    oifname \"eth0\" udp dport 41500 counter name same0"
        r[#r + 1] = "    oifname \"eth1\" udp dport 41500 counter name same1"
        r[#r + 1] = "    udp dport 41500 counter name same"
        r[#r + 1] = "    udp dport 41030 counter name otherkey"
        r[#r + 1] = "    meta l4proto udp ip6 daddr != fe80::/10 counter name nonll"
        r[#r + 1] = "    meta l4proto udp ip6 daddr fe80::/10 counter name dial accept"
        r[#r + 1] = "    meta l4proto { udp, tcp } counter name other"
        r[#r + 1] = "  }"
        r[#r + 1] = "}"
        return table.concat(r, "\n") .. "\n"
    end

    lazy_setup(function()
        net = Net.new("a")
        net:bridge("br")
        net:host("vic")
        net:plug("vic", "eth0", "br")
        net:plug("vic", "eth1", "br")
        net:host("v4")
        net:plug("v4", "eth0", "br")
        sh(("ip -n %s addr add 10.79.0.4/24 brd + dev eth0"):format(net:ns("v4")))
        net:host("att")
        net:plug("att", "eth0", "br")
        local att = net:ns("att")
        for i = 1, 64 do
            sh(("ip -n %s addr add fe80::aa:%x/64 dev eth0 nodad"):format(att, i))
        end
        -- a ULA and a global source too (beacons from them must not be dialled)
        sh(("ip -n %s addr add fd66::1/64 dev eth0 nodad"):format(att))
        sh(("ip -n %s addr add 2001:db8:66::1/64 dev eth0 nodad"):format(att))
        -- the attacker never answers an INIT (no ICMP either)
        S.write(net.dir .. "/att.nft", "table inet v13drop {\n chain in {\n"
            .. "  type filter hook input priority 0; policy accept;\n"
            .. "  udp dport != 44344 drop\n }\n}\n")
        sh(("ip netns exec %s nft -f %s"):format(att, q(net.dir .. "/att.nft")))
        net:host("gen")
        local gen = net:ns("gen")
        sh(("ip -n %s link add g0 type veth peer name g1"):format(gen))
        sh(("ip netns exec %s sysctl -qw net.ipv6.conf.g0.accept_dad=0 "
            .. "net.ipv6.conf.g1.accept_dad=0"):format(gen))
        sh(("ip -n %s link set g0 up && ip -n %s link set g1 up"):format(gen, gen))
        S.write(net.dir .. "/count.nft", count_rules())
        sh(("ip netns exec %s nft -f %s"):format(net:ns("vic"), q(net.dir .. "/count.nft")))
        sh(("ip netns exec %s nft -f %s"):format(net:ns("v4"), q(net.dir .. "/count.nft")))
        net:ll("vic", "eth0")
        net:ll("vic", "eth1")
        net:ll("att", "eth0")
        net:ll("gen", "g0")
    end)

    lazy_teardown(function()
        if net then net:down() end
    end)

    it("capture 23 nodes' beacons in an isolated namespace", function()
        net:attack("gen", "junk g0 fe80::1 0 ff02::1 0") -- writes attack.py (sends nothing)
        local cap = net:spawn("gen", "capture", ("python3 %s capture 44344 %s 16 g0 g1"):format(
            q(net.dir .. "/attack.py"), q(net.dir .. "/beacons.hex")))
        os.execute("sleep 0.5")
        local list = {}
        for i = 1, NIDS do
            list[#list + 1] = net:node("gen", "gen" .. i, KEY, "::", 12,
                "discover=lan portmap=false port=" .. (41000 + i))
        end
        list[#list + 1] = net:node("gen", "gen80", KEY, "::", 12, "discover=lan portmap=false "
            .. "port=80")
        list[#list + 1] = net:node("gen", "gen1023", KEY, "::", 12, "discover=lan "
            .. "portmap=false port=1023")
        list[#list + 1] = net:node("gen", "genother", OTHER_KEY, "::", 12, "discover=lan "
            .. "portmap=false port=41030")
        assert(P.wait_until(function() return out(cap):find("captured", 1, true) end, 25),
            "the capture did not end:\n" .. out(cap))
        print("\n  " .. out(cap):gsub("\n$", ""))
        local n = 0
        for l in io.lines(net.dir .. "/beacons.hex") do
            if #l == 308 then n = n + 1 end
        end
        -- each node beacons at 0, 1 and 3 s: 3 distinct beacons of 154 bytes each (the first
        -- may have gone before the IPv6 socket was up)
        assert.is_true(n >= 2 * #list, ("only %d beacons of %d nodes"):format(n, #list))
        for _, c in ipairs(list) do P.kill_pid(c.pid) end
        -- the victims: a mesh member bound to ::, one bound to 0.0.0.0
        victim = net:node("vic", "victim", KEY, "::", 400, "discover=lan portmap=false")
        v4victim = net:node("v4", "v4victim", KEY, "0.0.0.0", 400, "discover=lan portmap=false")
        wait_ids(net, { victim, v4victim })
    end)

    it("malformed and oversized datagrams on the beacon port: nothing sent, no growth",
        function()
        assert(victim, "needs the previous test")
        os.execute("sleep 4") -- past the node's own 0, 1, 3 s beacons
        local before = counters(net:ns("vic"), names)
        local rss0 = rss_kib(victim.pid)
        local o1 = net:attack("att", "junk eth0 fe80::aa: 64 ff02::7032:706e 6000")
        local o2 = net:attack("att", ("junk eth0 fe80::aa: 64 %s 6000"):format(net:ll("vic",
            "eth0")))
        os.execute("sleep 2")
        local after = counters(net:ns("vic"), names)
        local rss1 = rss_kib(victim.pid)
        print(("\n  junk: %s, %s; victim sent dial=%d other=%d; RSS %d -> %d KiB; lan_dropped=%s")
            :format(o1:gsub("\n", ""), o2:gsub("\n", ""), after.dial - before.dial,
            after.other - before.other, rss0, rss1, tostring(stat(victim, "lan_dropped"))))
        assert.is_true(P.pid_alive(victim.pid), "the victim died:\n" .. out(victim))
        assert.are.equal(0, after.dial - before.dial)
        assert.are.equal(0, after.other - before.other)
        assert.is_true(rss1 - rss0 < 2048, ("RSS grew %d KiB"):format(rss1 - rss0))
        assert.is_true(stat(victim, "lan_dropped") > 0, "the junk was not seen at all")
    end)

    it("replayed valid beacons from 64 spoofed sources, group and unicast: <= 3 INITs per id "
        .. "per minute, <= 16 dials a minute, none to a port below 1024, none to a ULA or "
        .. "global source, nothing from an IPv4-bound node", function()
        assert(victim, "needs the previous tests")
        local vns = net:ns("vic")
        local before = counters(vns, names)
        local v4before = counters(net:ns("v4"), names)
        local hex = q(net.dir .. "/beacons.hex")
        local vll = net:ll("vic", "eth0")
        local t0 = S.now()
        -- minute 1: every captured beacon, 3 times, from all 64 sources, to the group and to
        -- the victim's address; and from the ULA and global sources
        net:attack("att", ("beacons eth0 fe80::aa: 64 ff02::7032:706e %s 3"):format(hex))
        net:attack("att", ("beacons eth0 fe80::aa: 64 %s %s 2"):format(vll, hex))
        net:attack("att", ("beacons eth0 fd66:: 1 ff02::7032:706e %s 2"):format(hex))
        net:attack("att", ("beacons eth0 2001:db8:66:: 1 ff02::7032:706e %s 2"):format(hex))
        local sent_s = S.now() - t0
        os.execute("sleep 5")
        local at5 = counters(vns, names)
        local wait = t0 + 60 - S.now()
        -- keep replaying through the minute (the rate caps refuse most of the first burst)
        while wait > 12 do
            net:attack("att", ("beacons eth0 fe80::aa: 64 ff02::7032:706e %s 1"):format(hex))
            os.execute("sleep 10")
            wait = t0 + 60 - S.now()
        end
        if wait > 0 then os.execute(("sleep %.2f"):format(wait)) end
        local m1 = counters(vns, names)
        -- minute 2: the same again
        for _ = 1, 5 do
            net:attack("att", ("beacons eth0 fe80::aa: 64 ff02::7032:706e %s 1"):format(hex))
            os.execute("sleep 10")
        end
        wait = t0 + 120 - S.now()
        if wait > 0 then os.execute(("sleep %.2f"):format(wait)) end
        local m2 = counters(vns, names)
        local v4after = counters(net:ns("v4"), names)
        local function per_id(a, b)
            local t, maxv, sum, ids = {}, 0, 0, 0
            for i = 1, NIDS do
                local n = "d" .. (41000 + i)
                local d = a[n] - b[n]
                t[#t + 1] = d
                if d > maxv then maxv = d end
                sum = sum + d
                if d > 0 then ids = ids + 1 end
            end
            return table.concat(t, ","), maxv, sum, ids
        end
        local s1, max1, sum1, ids1 = per_id(m1, before)
        local s2, max2, sum2, ids2 = per_id(m2, m1)
        local _, _, sum5 = per_id(at5, before)
        print(("\n  replay (first burst %.1f s): within 5 s %d INITs; minute 1: %d INITs to %d ids"
            .. " (per id %s, max %d); minute 2: %d to %d ids (per id %s, max %d); low ports %d,"
            .. " other key %d, ULA/global %d, other %d; IPv4-bound node: dial %d other %d;"
            .. " victim lan_dials=%s lan_received=%s lan_dropped=%s"):format(sent_s, sum5, sum1,
            ids1, s1, max1, sum2, ids2, s2, max2, m2.lowport - before.lowport,
            m2.otherkey - before.otherkey, m2.nonll - before.nonll, m2.other - before.other
            - (m2.nonll - before.nonll), v4after.dial - v4before.dial,
            v4after.other - v4before.other, tostring(stat(victim, "lan_dials")),
            tostring(stat(victim, "lan_received")), tostring(stat(victim, "lan_dropped"))))
        assert.is_true(P.pid_alive(victim.pid), "the victim died:\n" .. out(victim))
        assert.is_true(sum1 > 0, "no dial at all: the replay did not reach the victim\n"
            .. out(victim))
        assert.is_true(max1 <= 3, "more than 3 INITs to one id in minute 1: " .. s1)
        assert.is_true(max2 <= 3, "more than 3 INITs to one id in minute 2: " .. s2)
        assert.is_true(ids1 <= 16, ids1 .. " ids dialled in minute 1 (bound 16)")
        assert.is_true(ids2 <= 16, ids2 .. " ids dialled in minute 2 (bound 16)")
        assert.is_true(sum1 <= 48 and sum2 <= 48)
        assert.are.equal(0, m2.lowport - before.lowport, "dialled a port below 1024")
        assert.are.equal(0, m2.otherkey - before.otherkey, "dialled a node with another key")
        assert.are.equal(0, m2.nonll - before.nonll, "sent to a ULA/global beacon source")
        assert.are.equal(0, m2.dial - before.dial - sum1 - sum2, "dials to other ports")
        assert.are.equal(0, v4after.dial - v4before.dial, "the IPv4-bound node dialled IPv6")
        assert.are.equal(0, v4after.other - v4before.other)
    end)

    -- 20 other ids whose beacons all name port 41500, played from one spoofed source that
    -- never sends anything else (a third party on the LAN): PROTOCOL 8.6, an address that
    -- never sends to a node receives at most 16 probes a minute from it
    it("beacons of 20 ids from one spoofed source, all naming one port: <= 16 INITs a minute "
        .. "to that address", function()
        assert(victim and P.pid_alive(victim.pid), "needs the previous tests")
        local gen = net:ns("gen")
        local list = {}
        for i = 1, 20 do
            sh(("ip -n %s addr add fd77::%x/64 dev g0 nodad"):format(gen, i))
        end
        os.execute("sleep 0.5")
        local cap = net:spawn("gen", "capture2", ("python3 %s capture 44344 %s 16 g0 g1"):format(
            q(net.dir .. "/attack.py"), q(net.dir .. "/beacons2.hex")))
        os.execute("sleep 0.5")
        for i = 1, 20 do
            list[#list + 1] = net:node("gen", "same" .. i, KEY, ("fd77::%x"):format(i), 12,
                "discover=lan portmap=false port=41500")
        end
        assert(P.wait_until(function() return out(cap):find("captured", 1, true) end, 25),
            "the capture did not end:\n" .. out(cap))
        for _, c in ipairs(list) do P.kill_pid(c.pid) end
        print("\n  " .. out(cap):gsub("\n$", ""))
        local vns = net:ns("vic")
        local before = counters(vns, names)
        local hex = q(net.dir .. "/beacons2.hex")
        local t0 = S.now()
        -- one beacon about every second (the per-source cap takes one per 2 s), from
        -- fe80::aa:1 only
        local nlines = 0
        for _ in io.lines(net.dir .. "/beacons2.hex") do nlines = nlines + 1 end
        local k = 1
        while S.now() - t0 < 60 and k <= nlines do
            net:attack("att", ("beacons eth0 fe80::aa: 1 ff02::7032:706e %s 1 %d"):format(hex,
                k))
            k = k + 1
            os.execute("sleep 1.05")
        end
        local wait = t0 + 60 - S.now()
        if wait > 0 then os.execute(("sleep %.2f"):format(wait)) end
        local after = counters(vns, names)
        local n = after.same - before.same
        print(("\n  %d beacons of 20 ids (port 41500) from fe80::aa:1 in 60 s: the victim sent "
            .. "%d INITs to [fe80::aa:1]:41500 (%d out of eth0, %d out of eth1; all dials %d)")
            :format(k - 1, n, after.same0 - before.same0, after.same1 - before.same1,
            after.dial - before.dial))
        assert.is_true(P.pid_alive(victim.pid))
        assert.is_true(n > 0, "no dial at all")
        assert.is_true(n <= 16, n .. " INITs to one address in a minute (bound 16)")
    end)
end)

-- ---- 3. zoned addresses stay on the host ----------------------------------------------------
-- LAN (link-local only): L (member, discover) and the mediator M (p2pnet mediator --discover
-- lan --host ::) and a member N, both with a second interface on a remote network fd13::/64
-- where R is. L meets M and N by LAN discovery (fe80::%zone). R registers with M and joins
-- N at fd13:: addresses, then asks M for L. Nothing may make R send to a fe80:: address (it
-- could only have learned one from the wire), and R's candidates for L hold none.
describe("verify13: link-local addresses never leave the LAN #natlab", function()
    local net

    lazy_setup(function()
        net = Net.new("z")
        net:bridge("lan")
        net:bridge("wan")
        for _, h in ipairs { "l", "m", "n" } do
            net:host(h)
            net:plug(h, "eth0", "lan")
        end
        net:host("r")
        net:plug("m", "eth1", "wan")
        net:plug("n", "eth1", "wan")
        net:plug("r", "eth0", "wan")
        sh(("ip -n %s addr add fd13::1/64 dev eth1 nodad"):format(net:ns("m")))
        sh(("ip -n %s addr add fd13::3/64 dev eth1 nodad"):format(net:ns("n")))
        sh(("ip -n %s addr add fd13::2/64 dev eth0 nodad"):format(net:ns("r")))
        S.write(net.dir .. "/count.nft", "table inet v13 {\n counter ll {}\n counter allu {}\n"
            .. " chain out {\n  type filter hook output priority 0; policy accept;\n"
            .. "  oifname \"lo\" accept\n"
            .. "  meta l4proto udp ip6 daddr fe80::/10 counter name ll\n"
            .. "  meta l4proto udp counter name allu\n }\n}\n")
        sh(("ip netns exec %s nft -f %s"):format(net:ns("r"), q(net.dir .. "/count.nft")))
        net:ll("l", "eth0")
        net:ll("m", "eth0")
        net:ll("n", "eth0")
        net:ll("r", "eth0")
    end)

    lazy_teardown(function()
        if net then net:down() end
    end)

    it("a mediator's introduction and a member's records carry no fe80:: address", function()
        local root = P.root()
        local med = net:spawn("m", "mediator", ("lua5.4 %s mediator --discover lan --host :: "
            .. "--port 7002 --network-key %s --no-portmap"):format(q(root .. "/bin/p2pnet"),
            q(KEY)))
        assert(P.wait_until(function() return out(med):find("lan discovery on", 1, true) end,
            10), "the mediator did not start:\n" .. out(med))
        local n = net:node("n", "member-n", KEY, "::", 45, "discover=lan portmap=false "
            .. "port=7003")
        local l = net:node("l", "lan-l", KEY, "::", 45, "discover=lan portmap=false send=1")
        local ids = wait_ids(net, { n, l })
        local mid = out(med):match("p2pnet mediator (%x+) listening on")
        -- L joins M and N over fe80::
        assert(P.wait_until(function()
            return out(l):find("\njoin " .. mid, 1, true) and out(l):find("\njoin " .. ids[1],
                1, true)
        end, 15), "L did not meet M and N on the LAN:\n" .. net:logs())
        local before = counters(net:ns("r"), { "ll", "allu" })
        local r = net:node("r", "remote-r", KEY, "::", 30, ("portmap=false send=1 "
            .. "connect=[fd13::3]:7003 dial=%s via=[fd13::1]:7002"):format(ids[2]))
        -- R registers with M (the dial's via) and joins N
        wait_ids(net, { r })
        os.execute("sleep 20")
        local after = counters(net:ns("r"), { "ll", "allu" })
        local ro = out(r)
        print(("\n  R sent %d UDP datagrams, %d of them to fe80::/10; R joined L: %s; "
            .. "R's last candidates for L: %s"):format(after.allu - before.allu,
            after.ll - before.ll, tostring(ro:find("\njoin " .. ids[2], 1, true) ~= nil),
            tostring(last(r, "\ncands " .. ids[2] .. " ([^\n]*)"))))
        assert.is_true(after.allu - before.allu > 0, "R sent nothing:\n" .. net:logs())
        assert.are.equal(0, after.ll - before.ll, "R sent to a link-local address")
        assert.is_nil(ro:find("fe80", 1, true), "R saw a fe80:: address:\n" .. ro)
        assert.is_truthy(ro:find("\njoin " .. ids[2], 1, true),
            "R never reached L through the mediator:\n" .. net:logs())
    end)
end)

-- ---- 4. traffic without peers, bound to ::, two interfaces, 3 minutes ------------------------
-- The node's namespace has eth0 (IPv4 10.78.1.2/24 with a default route to a gateway that
-- drops everything; IPv6 link-local) and eth1 (IPv4 10.78.2.2/24, IPv6 link-local), no other
-- node. docs/API.md "Traffic without peers": at most 20 packets in the first minute and 6 in
-- each later one, per interface.
local TRAFFIC_SECONDS = tonumber(os.getenv("P2P_TRAFFIC_SECONDS") or "") or 180
describe("verify13: traffic without peers bound to :: over 3 minutes #natlab #host #lab12",
    function()
    local net
    local names = { "e0", "e1", "e0pcp", "e0ssdp", "e0lan4", "e0lan6", "e1lan4", "e1lan6",
                    "e0k", "e1k" }

    lazy_setup(function()
        net = Net.new("t")
        net:bridge("b0")
        net:bridge("b1")
        net:host("node")
        net:host("gw")
        net:plug("node", "eth0", "b0")
        net:plug("node", "eth1", "b1")
        net:plug("gw", "eth0", "b0")
        local ns, gw = net:ns("node"), net:ns("gw")
        sh(("ip -n %s addr add 10.78.1.2/24 brd + dev eth0"):format(ns))
        sh(("ip -n %s addr add 10.78.2.2/24 brd + dev eth1"):format(ns))
        sh(("ip -n %s addr add 10.78.1.1/24 brd + dev eth0"):format(gw))
        sh(("ip -n %s route add default via 10.78.1.1"):format(ns))
        S.write(net.dir .. "/gw.nft", "table inet gwdrop {\n chain input {\n"
            .. "  type filter hook input priority 0; policy drop;\n }\n}\n")
        sh(("ip netns exec %s nft -f %s"):format(gw, q(net.dir .. "/gw.nft")))
        local r = { "table inet v13 {" }
        for _, n in ipairs(names) do r[#r + 1] = "  counter " .. n .. " {}" end
        r[#r + 1] = [[
  chain out {
    type filter hook output priority 0; policy accept;
    oifname "lo" accept
    oifname "eth0" meta l4proto { udp, tcp } counter name e0
    oifname "eth1" meta l4proto { udp, tcp } counter name e1
    oifname "eth0" udp dport 5351 counter name e0pcp
    oifname "eth0" udp dport 1900 counter name e0ssdp
    oifname "eth0" meta nfproto ipv4 udp dport 44344 counter name e0lan4
    oifname "eth0" meta nfproto ipv6 udp dport 44344 counter name e0lan6
    oifname "eth1" meta nfproto ipv4 udp dport 44344 counter name e1lan4
    oifname "eth1" meta nfproto ipv6 udp dport 44344 counter name e1lan6
    oifname "eth0" meta l4proto != { udp, tcp } counter name e0k
    oifname "eth1" meta l4proto != { udp, tcp } counter name e1k
  }
}]]
        S.write(net.dir .. "/count.nft", table.concat(r, "\n") .. "\n")
        sh(("ip netns exec %s nft -f %s"):format(ns, q(net.dir .. "/count.nft")))
        net:ll("node", "eth0")
        net:ll("node", "eth1")
    end)

    lazy_teardown(function()
        if net then net:down() end
    end)

    it(("sends at most 20 packets in minute 1 and 6 in each later minute per interface (%d s)")
        :format(TRAFFIC_SECONDS), function()
        local ns = net:ns("node")
        local before = counters(ns, names)
        local c = net:node("node", "quiet", "-", "::", TRAFFIC_SECONDS + 5, "discover=lan")
        wait_ids(net, { c })
        local t0 = S.now()
        local prev, worst = before, {}
        local minutes = math.max(1, math.floor(TRAFFIC_SECONDS / 60))
        local span = math.min(60, TRAFFIC_SECONDS) -- a short run: its first seconds only
        for m = 1, minutes do
            local wait = t0 + (m - 1) * 60 + span - S.now()
            if wait > 0 then os.execute(("sleep %.2f"):format(wait)) end
            local now = counters(ns, names)
            local d = {}
            for _, n in ipairs(names) do d[n] = now[n] - prev[n] end
            print(("\n  minute %d: eth0 %d (pcp %d ssdp %d beacons v4 %d v6 %d; kernel %d), "
                .. "eth1 %d (beacons v4 %d v6 %d; kernel %d)"):format(m, d.e0, d.e0pcp,
                d.e0ssdp, d.e0lan4, d.e0lan6, d.e0k, d.e1, d.e1lan4, d.e1lan6, d.e1k))
            local bound = m == 1 and 20 or 6
            for _, i in ipairs { "e0", "e1" } do
                if d[i] > bound then
                    worst[#worst + 1] = ("minute %d, %s: %d packets (bound %d)"):format(m, i,
                        d[i], bound)
                end
            end
            prev = now
        end
        assert.is_true(P.pid_alive(c.pid) or out(c):find("closed", 1, true) ~= nil)
        assert.are.same({}, worst)
    end)
end)
