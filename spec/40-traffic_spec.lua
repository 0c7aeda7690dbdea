-- The traffic of a node with nobody to talk to (docs/API.md "Traffic without peers", design
-- bound of docs/PROTOCOL.md 8.7): port mapping on (the default) and `discover = "lan"`, on a
-- network whose default gateway answers nothing and where no other node is. In a network
-- namespace this spec makes, nft counters in the node's namespace count every packet it sends,
-- by kind, over two minutes of real time:
--
--   the node's own packets (UDP and TCP from its sockets):  <= 20 in minute 1, <= 6 in minute 2
--
-- The kernel's own packets in that namespace (IGMP/MLD membership reports when the node joins
-- the beacon group, IPv6 router solicitations and duplicate address detection) are counted
-- apart and printed; they are not the node's (docs/API.md says so).
--
-- P2P_TRAFFIC_SECONDS=10 makes a short run that checks only the first 10 s (<= 20), for a
-- quick look; the full two minutes is what `make test` runs (tag #natlab).
--
-- Needs root, `ip netns` and `nft`; pending otherwise, with the reason. Everything it makes
-- (namespaces, the node process, a temp dir) is removed in teardown, also after a failure.
local P = require "spec.procs"
local S = require "spec.support"

local q = P.quote
local SECONDS = tonumber(os.getenv("P2P_TRAFFIC_SECONDS") or "") or 120
local TAG = ("p6t%d"):format(os.time() % 100000)

local function available()
    local p = io.popen("id -u")
    local uid = p:read("*l")
    p:close()
    if uid ~= "0" then return false, "needs root (network namespaces)" end
    for _, cmd in ipairs { "ip", "nft" } do
        if not P.have(cmd) then return false, "needs " .. cmd end
    end
    local ok, out = P.run("ip netns add " .. TAG .. "-probe && ip netns del " .. TAG .. "-probe")
    if not ok then return false, "cannot make a network namespace: " .. out end
    return true
end

local ok_env, why = available()
if not ok_env then
    describe("traffic without peers", function()
        pending("skipped: " .. why)
    end)
    return
end

-- The child: a node in the namespace that polls for `seconds`, then closes. It prints
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
local nat = node.nat and node:nat() or {}
io.stdout:write(("stats portmap_sent=%s lan_sent=%s packets_sent=%s portmap=%s gateway=%s\n")
  :format(tostring(st.portmap_sent), tostring(st.lan_sent), tostring(st.packets_sent),
          tostring(nat.portmap), tostring(nat.gateway)))
io.stdout:flush()
node:close()
]]

describe("traffic without peers #natlab", function()
    local dir, ns, gw, pid, out

    local function sh(cmd)
        local ok, o = P.run(cmd)
        assert(ok, cmd .. "\n" .. o)
        return o
    end

    -- Counter `name` (packets) of the node's namespace.
    local function counter(name)
        local o = sh(("ip netns exec %s nft list counter inet p6count %s"):format(ns, name))
        return tonumber(o:match("packets (%d+)"))
    end

    local KINDS = { "own", "pcp", "ssdp", "lan", "tcpc", "other_udp", "kernel" }

    local function counts()
        local c = {}
        for _, k in ipairs(KINDS) do c[k] = counter(k) end
        return c
    end

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

    lazy_setup(function()
        dir = S.tmpdir()
        ns, gw = TAG .. "-node", TAG .. "-gw"
        -- node (10.77.0.2) --veth-- gateway (10.77.0.1), the node's default route; the
        -- gateway drops all IP input, so it answers nothing (not even ICMP)
        sh(("ip netns add %s && ip netns add %s"):format(ns, gw))
        sh(("ip link add %s-n netns %s type veth peer name %s-g netns %s"):format(TAG, ns, TAG, gw))
        sh(("ip -n %s link set lo up && ip -n %s link set %s-n up && "
            .. "ip -n %s addr add 10.77.0.2/24 dev %s-n && "
            .. "ip -n %s route add default via 10.77.0.1"):format(ns, ns, TAG, ns, TAG, ns))
        sh(("ip -n %s link set lo up && ip -n %s link set %s-g up && "
            .. "ip -n %s addr add 10.77.0.1/24 dev %s-g"):format(gw, gw, TAG, gw, TAG))
        S.write(dir .. "/gw.nft", "table inet gwdrop {\n  chain input {\n"
            .. "    type filter hook input priority 0; policy drop;\n  }\n}\n")
        sh(("ip netns exec %s nft -f %s"):format(gw, q(dir .. "/gw.nft")))
        -- the node's namespace: named counters by kind, on everything leaving it but loopback
        S.write(dir .. "/count.nft", "table inet p6count {\n"
            .. "  counter own {}\n  counter pcp {}\n  counter ssdp {}\n  counter lan {}\n"
            .. "  counter tcpc {}\n  counter other_udp {}\n  counter kernel {}\n"
            .. "  chain out {\n"
            .. "    type filter hook output priority 0; policy accept;\n"
            .. "    oifname \"lo\" accept\n"
            .. "    meta l4proto { udp, tcp } counter name own\n"
            .. "    udp dport 5351 counter name pcp accept\n"
            .. "    udp dport 1900 counter name ssdp accept\n"
            .. "    udp dport 44344 counter name lan accept\n"
            .. "    meta l4proto tcp counter name tcpc accept\n"
            .. "    meta l4proto udp counter name other_udp accept\n"
            .. "    counter name kernel\n"
            .. "  }\n"
            .. "}\n")
        sh(("ip netns exec %s nft -f %s"):format(ns, q(dir .. "/count.nft")))
        -- let the kernel's own start-up packets (IPv6 DAD, router solicitations) pass first
        os.execute("sleep 1")
    end)

    lazy_teardown(function()
        if pid then P.kill_pid(pid) end
        P.run("ip netns del " .. ns .. " 2>/dev/null")
        P.run("ip netns del " .. gw .. " 2>/dev/null")
        if dir then S.rmdir(dir) end
    end)

    it(("sends at most 20 packets in its first minute and 6 in the next (%d s run)"):format(
        SECONDS), function()
        local root = P.root()
        S.write(dir .. "/child.lua", CHILD)
        out = dir .. "/child.out"
        local before = counts()
        local p = assert(io.popen(("cd %s && LUA_PATH=%s LUA_CPATH=%s ip netns exec %s "
            .. "lua5.4 %s %d 0.0.0.0 > %s 2>&1 & echo $!"):format(q(root),
            q(root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;;"), q(root .. "/build/?.so;;"),
            ns, q(dir .. "/child.lua"), SECONDS + 5, q(out))))
        pid = tonumber(p:read("*l"))
        p:close()
        local t0 = P.wait_until(function()
            return (P.read(out) or ""):match("^ready ") and S.now()
        end, 10)
        assert(t0, "the node did not start:\n" .. (P.read(out) or ""))
        local function at(t)
            local wait = t0 + t - S.now()
            if wait > 0 then os.execute(("sleep %.3f"):format(wait)) end
            return counts()
        end
        if SECONDS < 60 then
            local first = minus(at(SECONDS), before)
            show(("first %d s"):format(SECONDS), first)
            assert.is_true(first.own <= 20, "more than 20 packets in the first seconds")
            assert.is_true(first.own > 0, "the node sent nothing: is port mapping or LAN "
                .. "discovery on at all?\n" .. (P.read(out) or ""))
            return
        end
        local m1 = at(60)
        local m2 = at(120)
        local first, second = minus(m1, before), minus(m2, m1)
        show("minute 1", first)
        show("minute 2", second)
        assert(P.wait_until(function() return (P.read(out) or ""):match("\nstats ") end, 15),
               "the node did not finish:\n" .. (P.read(out) or ""))
        print(((P.read(out) or ""):match("\n(stats [^\n]*)")))
        assert.is_true(first.own <= 20, ("minute 1: %d packets (bound 20)"):format(first.own))
        assert.is_true(second.own <= 6, ("minute 2: %d packets (bound 6)"):format(second.own))
        -- what the bound is made of: port mapping only in the first minute, beacons in both
        assert.is_true(first.pcp + first.ssdp <= 8, "port mapping sent more than 8")
        assert.equal(0, second.pcp + second.ssdp, "port mapping went on after minute 1")
        assert.equal(0, second.tcpc, "TCP without a gateway that answers")
        assert.is_true(first.lan >= 1, "no LAN beacon in minute 1")
        assert.is_true(second.lan >= 1, "no LAN beacon in minute 2")
        assert.is_true(first.pcp >= 1, "no port-mapping request at all")
    end)
end)
