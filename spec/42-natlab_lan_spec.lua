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
local key, lifetime = arg[1], tonumber(arg[2])
local function say(...) io.stdout:write(table.concat({ ... }, " "), "\n") io.stdout:flush() end
local node = assert(p2pnet.node { discover = "lan", network_key = key })
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

describe("scenario 4: LAN discovery on one segment #natlab", function()
    local prefix, dir, children = nil, nil, {}

    local function lan(cmd, ...)
        local args = { NO_PRELOAD .. "bash", SCRIPT, cmd, prefix }
        for _, a in ipairs { ... } do args[#args + 1] = q(a) end
        return sh(table.concat(args, " "))
    end

    local function spawn(host, key)
        local log = ("%s/%s.log"):format(dir, host)
        assert(io.open(log, "wb")):close()
        local env = PRELOAD and ("env LD_PRELOAD=" .. q(PRELOAD) .. " ") or ""
        local line = ("%sip netns exec %s env -u P2P_UDP_NO_GATEWAY %slua5.4 %s %s %d > %s 2>&1 "
            .. "& echo $!"):format(
            NO_PRELOAD, q(prefix .. "-" .. host), env, q(dir .. "/child.lua"), q(key), LIFETIME,
            q(log))
        local f = assert(io.popen(line))
        local pid = math.tointeger(tonumber(f:read("l")))
        f:close()
        local child = { host = host, pid = pid, log = log }
        children[#children + 1] = child
        return child
    end

    local function id_of(child)
        return read(child.log):match("\nid (%x+)") or read(child.log):match("^id (%x+)")
    end

    local function joined(child)
        local set = {}
        for id in read(child.log):gmatch("join (%x+)") do set[id] = true end
        return set
    end

    local function logs()
        local parts = {}
        for _, c in ipairs(children) do
            parts[#parts + 1] = ("---- %s\n%s"):format(c.host, read(c.log))
        end
        return table.concat(parts, "\n")
    end

    lazy_setup(function()
        local pid = assert(io.popen("echo $PPID")):read("l")
        prefix = "p2pn" .. pid
        dir = S.tmpdir()
        S.write(dir .. "/child.lua", CHILD)
        local ok, out = lan("up", "4")
        assert(ok, "could not build the LAN lab:\n" .. out)
    end)

    lazy_teardown(function()
        for _, c in ipairs(children) do
            if c.pid then os.execute("kill -9 " .. c.pid .. " 2>/dev/null") end
        end
        if prefix then lan("down") end
        if dir and os.getenv("NATLAB_KEEP") then
            print("LAN lab logs kept in " .. dir)
        elseif dir then
            S.rmdir(dir)
        end
    end)

    it("three nodes with one key form a mesh; a node with another key learns no id", function()
        local t0 = S.now()
        local members = { spawn("l1", KEY), spawn("l2", KEY), spawn("l3", KEY) }
        local stranger = spawn("l4", OTHER_KEY)
        -- everyone's id first (printed at start)
        local ids = {}
        local deadline = S.now() + 10
        while S.now() < deadline do
            local all = true
            for i, c in ipairs { members[1], members[2], members[3], stranger } do
                ids[i] = ids[i] or id_of(c)
                all = all and ids[i] ~= nil
            end
            if all then break end
            os.execute("sleep 0.2")
        end
        assert(ids[1] and ids[2] and ids[3] and ids[4], "a node did not start:\n" .. logs())
        -- then the mesh: every member joined with the other two
        local meshed_at
        deadline = t0 + MESH_WITHIN
        while S.now() < deadline do
            local all = true
            for i = 1, 3 do
                local j = joined(members[i])
                for k = 1, 3 do
                    if k ~= i and not j[ids[k]] then all = false end
                end
            end
            if all then
                meshed_at = S.now() - t0
                break
            end
            os.execute("sleep 0.2")
        end
        assert(meshed_at, ("no mesh of three within %d s:\n%s"):format(MESH_WITHIN, logs()))
        print(("\n  LAN mesh of 3 formed %.1f s after start"):format(meshed_at))
        -- a little longer, so that the stranger hears more beacons (0, 1, 3 s, ...)
        os.execute("sleep 4")
        for i = 1, 3 do
            local out = read(members[i].log)
            -- each member heard the other two, on the segment, and nothing of the stranger
            assert.is_nil(out:find(ids[4], 1, true), "a member learned the stranger's id")
            local lan_line
            for l in out:gmatch("lan ([%x,]*)") do lan_line = l end
            for k = 1, 3 do
                if k ~= i then
                    assert.is_truthy(lan_line and lan_line:find(ids[k], 1, true),
                        "node:lan_peers() of l" .. i .. " lacks l" .. k)
                end
            end
            for addr in out:gmatch("join %x+ (%S+)") do
                assert.is_truthy(addr:match("^10%.9%.0%.[123]:%d+$"), "joined at " .. addr)
            end
        end
        local out = read(stranger.log)
        assert.is_nil(out:find("\njoin "), "the stranger joined someone:\n" .. out)
        for k = 1, 3 do
            assert.is_nil(out:find(ids[k], 1, true), "the stranger learned an id:\n" .. out)
        end
        local last_lan
        for l in out:gmatch("lan ([%x,]*)") do last_lan = l end
        assert.are.equal("", last_lan or "")
        -- it did hear them: beacons it could not open are counted as dropped
        local dropped
        for d in out:gmatch("dropped=(%d+)") do dropped = tonumber(d) end
        assert.is_truthy(dropped and dropped > 0, "the stranger counted no dropped beacons:\n"
            .. out)
        local received
        for r in out:gmatch("received=(%d+)") do received = tonumber(r) end
        assert.are.equal(0, received)
    end)
end)
