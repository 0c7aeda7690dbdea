-- The traffic of a node with nobody to talk to (docs/API.md "Traffic without peers", the
-- bound of design 12 section 6): port mapping on (the default) and `discover = "lan"`, on a
-- network whose default gateway answers nothing and where no other node is. Two such nodes
-- run at once, each in a network namespace of its own with its own silent gateway: one bound
-- to 0.0.0.0 (IPv4), one to :: (dual stack: IPv6 beacons too). nft counters in each node's
-- namespace count every packet it sends, by kind, over two minutes of real time:
--
--   the node's own packets (UDP and TCP from its sockets):  <= 20 in minute 1, <= 6 in minute 2
--
-- The kernel's own packets in those namespaces (IGMP/MLD membership reports when the node
-- joins the beacon group, IPv6 neighbour discovery) are counted apart and printed; they are
-- not the node's (README and docs/API.md say so).
--
-- P2P_TRAFFIC_SECONDS=10 makes a short run that checks only the first 10 s (<= 20): `make
-- test` runs that (tests/run-all.sh, to keep CI under 25 minutes); `make natlab` runs
-- the full two minutes (tag #natlab; #host: the ASan pass leaves it out). The same bound
-- on the simulator's clock, over an hour, is in spec/45-nat12_sim_spec.lua.
--
-- Needs root, `ip netns` and `nft`; pending otherwise, with the reason. Everything it makes
-- (namespaces, the node processes, a temp dir) is removed in teardown, also after a failure.
-- Nothing leaves the namespaces.
local P = require "spec.procs"
local S = require "spec.support"

local q = P.quote
local SECONDS = tonumber(os.getenv("P2P_TRAFFIC_SECONDS") or "") or 120
local TAG = ("p6t%d"):format(os.time() % 100000)

local ok_env, why = P.netns_available(TAG, { "ip", "nft" })
if not ok_env then
    describe("traffic without peers", function()
        pending("skipped: " .. why)
    end)
    return
end

-- The child: a node in its namespace that polls for `seconds`, then closes. It prints
-- "ready <address>" once made, "stats <k>=<v> ..." before it closes.
local CHILD = [[
local p2pnet = require "p2pnet"
local seconds = tonumber(arg[1])
local node = assert(p2pnet.node { host = arg[2], discover = "lan" })
io.stdout:write("ready ", node:address(), "\n")
io.stdout:flush()
local t0 = node:now()
while node:now() - t0 < seconds do node:poll(0.5) end
local st = node:stats()
local nat = node:nat()
io.stdout:write(("stats portmap_sent=%s lan_sent=%s packets_sent=%s portmap=%s gateway=%s\n")
  :format(tostring(st.portmap_sent), tostring(st.lan_sent), tostring(st.packets_sent),
          tostring(nat.portmap), tostring(nat.gateway)))
io.stdout:flush()
node:close()
]]

-- Counters by kind on everything that leaves the node's namespace (loopback excepted).
local COUNT_RULES = [[
table inet p6count {
  counter own {}
  counter pcp {}
  counter ssdp {}
  counter lan {}
  counter tcpc {}
  counter other_udp {}
  counter kernel {}
  chain out {
    type filter hook output priority 0; policy accept;
    oifname "lo" accept
    meta l4proto { udp, tcp } counter name own
    udp dport 5351 counter name pcp accept
    udp dport 1900 counter name ssdp accept
    udp dport 44344 counter name lan accept
    meta l4proto tcp counter name tcpc accept
    meta l4proto udp counter name other_udp accept
    counter name kernel
  }
}
]]

-- The gateway drops all IP input: it answers nothing, not even ICMP.
local GW_RULES = [[
table inet gwdrop {
  chain input {
    type filter hook input priority 0; policy drop;
  }
}
]]

local KINDS = { "own", "pcp", "ssdp", "lan", "tcpc", "other_udp", "kernel" }

local function minus(a, b)
    local d = {}
    for _, k in ipairs(KINDS) do d[k] = a[k] - (b and b[k] or 0) end
    return d
end

local function show(label, c)
    local parts = {}
    for _, k in ipairs(KINDS) do parts[#parts + 1] = k .. "=" .. c[k] end
    print(("traffic %s: %s"):format(label, table.concat(parts, " ")))
end

describe("traffic without peers #natlab #host #lab12", function()
    local dir
    -- one case per node: its bind address, namespaces, subnet, child pid and output file
    local cases = {
        { name = "ipv4", host = "0.0.0.0", net = 1 },
        { name = "dual", host = "::", net = 2 },
    }

    local function sh(cmd)
        local ok, o = P.run(cmd)
        assert(ok, cmd .. "\n" .. o)
        return o
    end

    local function counts(c)
        local t = {}
        for _, k in ipairs(KINDS) do
            local o = sh(("ip netns exec %s nft list counter inet p6count %s"):format(c.ns, k))
            t[k] = tonumber(o:match("packets (%d+)"))
        end
        return t
    end

    lazy_setup(function()
        dir = S.tmpdir()
        S.write(dir .. "/count.nft", COUNT_RULES)
        S.write(dir .. "/gw.nft", GW_RULES)
        S.write(dir .. "/child.lua", CHILD)
        for _, c in ipairs(cases) do
            c.ns, c.gw = ("%s-n%d"):format(TAG, c.net), ("%s-g%d"):format(TAG, c.net)
            local a, b = ("%s-a%d"):format(TAG, c.net), ("%s-b%d"):format(TAG, c.net)
            local pre = ("10.77.%d."):format(c.net)
            -- node (.2) --veth-- gateway (.1), the node's default route, a broadcast address
            -- (as DHCP gives one: beacons go to it too); IPv6 link-local
            -- addresses come without duplicate address detection, so they work at once
            sh(("ip netns add %s && ip netns add %s"):format(c.ns, c.gw))
            sh(("ip link add %s netns %s type veth peer name %s netns %s"):format(a, c.ns, b,
                                                                                   c.gw))
            for _, side in ipairs { { c.ns, a, pre .. "2" }, { c.gw, b, pre .. "1" } } do
                sh(("ip netns exec %s sysctl -qw net.ipv6.conf.all.accept_dad=0 "
                    .. "net.ipv6.conf.default.accept_dad=0 "
                    .. "net.ipv6.conf.default.router_solicitations=0"):format(side[1]))
                sh(("ip -n %s link set lo up && ip -n %s addr add %s/24 brd + dev %s && "
                    .. "ip -n %s link set %s up"):format(side[1], side[1], side[3], side[2],
                                                         side[1], side[2]))
            end
            sh(("ip -n %s route add default via %s1"):format(c.ns, pre))
            sh(("ip netns exec %s nft -f %s"):format(c.gw, q(dir .. "/gw.nft")))
            sh(("ip netns exec %s nft -f %s"):format(c.ns, q(dir .. "/count.nft")))
        end
        os.execute("sleep 1")
    end)

    lazy_teardown(function()
        for _, c in ipairs(cases) do
            if c.pid then P.kill_pid(c.pid) end
            if c.ns then P.run("ip netns del " .. c.ns .. " 2>/dev/null") end
            if c.gw then P.run("ip netns del " .. c.gw .. " 2>/dev/null") end
        end
        if dir then S.rmdir(dir) end
    end)

    it(("send at most 20 packets in their first minute and 6 in the next (%d s run)"):format(
        SECONDS), function()
        local root = P.root()
        for _, c in ipairs(cases) do
            c.out = ("%s/%s.out"):format(dir, c.name)
            c.before = counts(c)
            local p = assert(io.popen(("cd %s && LUA_PATH=%s LUA_CPATH=%s ip netns exec %s "
                .. "env -u P2P_UDP_NO_GATEWAY lua5.4 %s %d %s > %s 2>&1 & echo $!"):format(q(root),
                q(root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;;"),
                q(os.getenv("LUA_CPATH") or (root .. "/build/?.so;;")), c.ns,
                q(dir .. "/child.lua"), SECONDS + 5, q(c.host), q(c.out))))
            c.pid = tonumber(p:read("*l"))
            p:close()
        end
        for _, c in ipairs(cases) do
            c.t0 = P.wait_until(function()
                return (P.read(c.out) or ""):match("^ready ") and S.now()
            end, 10)
            assert(c.t0, c.name .. ": the node did not start:\n" .. (P.read(c.out) or ""))
        end
        local t0 = cases[1].t0
        local function at(t)
            local wait = t0 + t - S.now()
            if wait > 0 then os.execute(("sleep %.3f"):format(wait)) end
            local r = {}
            for i, c in ipairs(cases) do r[i] = counts(c) end
            return r
        end
        if SECONDS < 60 then
            local now = at(SECONDS)
            for i, c in ipairs(cases) do
                local first = minus(now[i], c.before)
                show(("%s, first %d s"):format(c.name, SECONDS), first)
                assert.is_true(first.own <= 20, c.name .. ": more than 20 packets")
                assert.is_true(first.own > 0, c.name .. ": the node sent nothing: is port "
                    .. "mapping or LAN discovery on at all?\n" .. (P.read(c.out) or ""))
            end
            return
        end
        local m1 = at(60)
        local m2 = at(120)
        for i, c in ipairs(cases) do
            local first, second = minus(m1[i], c.before), minus(m2[i], m1[i])
            show(c.name .. ", minute 1", first)
            show(c.name .. ", minute 2", second)
            assert(P.wait_until(function() return (P.read(c.out) or ""):match("\nstats ") end,
                                15), c.name .. ": the node did not finish:\n"
                                     .. (P.read(c.out) or ""))
            print(c.name .. " " .. ((P.read(c.out) or ""):match("\n(stats [^\n]*)")))
            assert.is_true(first.own <= 20,
                           ("%s, minute 1: %d packets (bound 20)"):format(c.name, first.own))
            assert.is_true(second.own <= 6,
                           ("%s, minute 2: %d packets (bound 6)"):format(c.name, second.own))
            -- what the bound is made of: port mapping only at the start, beacons throughout
            assert.is_true(first.pcp + first.ssdp <= 8, c.name .. ": port mapping sent > 8")
            assert.is_true(first.pcp >= 1, c.name .. ": no port-mapping request at all")
            assert.equal(0, second.pcp + second.ssdp, c.name .. ": port mapping went on")
            assert.equal(0, first.tcpc + second.tcpc, c.name .. ": TCP to a silent gateway")
            assert.is_true(first.lan >= 1, c.name .. ": no LAN beacon in minute 1")
            assert.is_true(second.lan >= 1, c.name .. ": no LAN beacon in minute 2")
        end
    end)
end)
