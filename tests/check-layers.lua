-- tests/check-layers.lua - checks that the C sources keep to their layers (make check-layers,
-- part of make test).
--
-- usage: lua5.4 tests/check-layers.lua OBJDIR   (OBJDIR: build/obj of a finished build)
--
-- The graph has one node per module: csrc/p2p_x.c and csrc/p2p_x.h are module p2p_x; a header
-- without a .c of its own is a module by itself; csrc/driver/x.{c,h} is driver/x; every file
-- in csrc/lua/ is the one module "binding". An arrow A -> B means A includes a header of B or
-- calls (or reads) a symbol that B's object defines: the symbols come from `nm` over OBJDIR,
-- so static functions and macros never count, and a call through a function pointer does not
-- show (there are none across modules).
--
-- It fails when
--   1. an arrow runs from a lower layer to a higher one, or between two modules of the same
--      layer when that layer is marked "apart" (its modules may not know each other);
--   2. the graph has a circle (two modules that depend on each other, directly or not);
--   3. a module is not in the LAYERS table below (a new file must be given its place);
--   4. a function named p2p_host_* is defined anywhere but in p2p_host.c;
--   5. a file touches state that another module owns (PRIVATE below): `h->mesh`, `h->nat`,
--      `h->guard` and the per-session fields a module keeps for itself may be used only in
--      the owning module and in the hub, which reads what it routes. The graph above cannot see
--      these: two modules that share a struct field need no symbol of each other.
-- LAYERS is the picture of docs/ARCHITECTURE.md: keep the two the same.

local LAYERS = {
    -- rank, name, modules (lower ranks first); apart = no arrows inside the layer
    -- issue 12: the STUN, PCP/NAT-PMP and UPnP codecs are pure: base
    { "base", { "p2p_wire", "p2p_crypto", "p2p_addr", "p2p_ranges", "p2pnet", "p2p_stun",
                "p2p_pmp", "p2p_upnp" } },
    { "parts", { "p2p_noise", "p2p_identity", "p2p_keys", "p2p_reliable", "p2p_index",
                 "p2p_cc" } }, -- issue 10: p2p_cc, the congestion controllers
    -- p2p_internal: the shared data types; p2p_state: the table, queues, budget, notices
    { "state", { "p2p_internal", "p2p_state" } },
    -- the guard reads the session table (proven paths, attempts' INITs): it sits with it
    { "session", { "p2p_peer", "p2p_guard" } },
    { "modules", { "p2p_handshake", "p2p_mesh", "p2p_nat", "p2p_path", "p2p_transfer",
                   -- issue 12: port mapping, the STUN client, LAN discovery
                   "p2p_portmap", "p2p_probe", "p2p_lan" }, apart = true },
    { "hub", { "p2p_host" } },
    -- under the UDP driver: its build switches and the Windows socket calls (issue 11)
    { "os", { "driver/udp_sys", "driver/udp_win" } },
    -- issue 12: the drivers' parts: TCP/WebSocket streams, the simulated gateway
    { "driver parts", { "driver/stream", "driver/sim_gw" }, apart = true },
    { "drivers", { "driver/udp", "driver/sim" }, apart = true },
    { "binding", { "binding" } },
}

-- Fields only their owner (and the hub) may use: `->name` or `.name` of any struct, outside
-- comments and strings. Host-level state of a module, then per-session fields of a module.
local PRIVATE = {
    mesh = "p2p_mesh", nat = "p2p_nat", guard = "p2p_guard",
    -- NAT's introduction state machine and its offer counters
    intro_state = "p2p_nat", punch_until = "p2p_nat", from_offer = "p2p_nat",
    offers = "p2p_nat", offers_since = "p2p_nat",
    -- what a peer may make the mesh do
    mesh_served = "p2p_mesh", mesh_wants = "p2p_mesh", mesh_answers = "p2p_mesh",
    mesh_answers_end = "p2p_mesh",
    -- path validation, anti-amplification and upgrades
    amp_recv = "p2p_path", amp_sent = "p2p_path", chal_data = "p2p_path",
    chal_at = "p2p_path", chal_tries = "p2p_path", upgrade_data = "p2p_path",
    upgrade_at = "p2p_path", upgrade_gap = "p2p_path",
    -- transfers
    xfers = "p2p_transfer", xfer_max_in = "p2p_transfer", xfer_in = "p2p_transfer",
    xfer_out = "p2p_transfer",
    -- issue 12: each module's own state
    portmap = "p2p_portmap", probe = "p2p_probe", lan = "p2p_lan",
    punch = "p2p_path", spray = "p2p_guard",
}
local HUB = "p2p_host"

local objdir = arg[1]
if not objdir then
    io.stderr:write("usage: lua5.4 tests/check-layers.lua OBJDIR\n")
    os.exit(2)
end

local function sh(cmd)
    local f = assert(io.popen(cmd))
    local out = f:read("a")
    f:close()
    return out
end

local function exists(path)
    local f = io.open(path)
    if f then f:close() end
    return f ~= nil
end

-- The module a source or header path belongs to.
local function module_of(path)
    path = path:gsub("^csrc/", "")
    if path:match("^lua/") then return "binding" end
    local stem = path:gsub("%.[ch]$", "")
    return stem
end

local rank, apart, layer_name = {}, {}, {}
for i, layer in ipairs(LAYERS) do
    for _, m in ipairs(layer[2]) do
        rank[m] = i
        layer_name[m] = layer[1]
    end
    apart[i] = layer.apart or false
end

-- Every source file of the tree, and its module.
local files = {}
for path in sh("cd csrc && ls p2p*.c p2p*.h driver/*.c driver/*.h lua/*.c lua/*.h 2>/dev/null"):gmatch("[^\n]+") do
    files[#files + 1] = "csrc/" .. path
end

local edges, why = {}, {}
local function arrow(from, to, reason)
    if from == to then return end
    edges[from] = edges[from] or {}
    if not edges[from][to] then
        edges[from][to] = true
        why[from .. " -> " .. to] = reason
    end
end

local modules = {}
local problems = {}
local file_incs = {} -- file -> the csrc files it includes

-- Include arrows. An include, quoted or in angle brackets, is resolved against the including
-- file's folder, then csrc/ (the build passes -Icsrc, so <p2p_host.h> finds it there too).
for _, path in ipairs(files) do
    local from = module_of(path)
    modules[from] = true
    local dir = path:match("^(.*)/")
    local n = 0
    for line in io.lines(path) do
        n = n + 1
        local inc = line:match('^%s*#%s*include%s*"([^"]+)"')
            or line:match("^%s*#%s*include%s*<([^>]+)>")
        if inc then
            local target
            if exists(dir .. "/" .. inc) then
                target = dir .. "/" .. inc
            elseif exists("csrc/" .. inc) then
                target = "csrc/" .. inc
            end
            if target then
                file_incs[path] = file_incs[path] or {}
                table.insert(file_incs[path], target)
                arrow(from, module_of(target), ("%s:%d includes %s"):format(path, n, inc))
            end
        end
    end
end

-- Symbol arrows from the objects.
local defined_in = {}
local uses = {}
for _, path in ipairs(files) do
    if path:match("%.c$") then
        local obj = objdir .. "/" .. path:gsub("^csrc/", ""):gsub("%.c$", ".o")
        if not exists(obj) then
            io.stderr:write("check-layers: ", obj, " is missing (build first)\n")
            os.exit(2)
        end
        local m = module_of(path)
        for line in sh("nm -P " .. obj):gmatch("[^\n]+") do
            local sym, kind = line:match("^(%S+)%s+(%a)")
            if sym then
                if kind == "U" then
                    uses[#uses + 1] = { m, sym, path }
                elseif kind:match("[TDBRCG]") then
                    defined_in[sym] = m
                    if kind == "T" and sym:match("^p2p_host_") and m ~= "p2p_host" then
                        problems[#problems + 1] = ("%s defines %s: every p2p_host_* "
                            .. "function belongs in p2p_host.c"):format(path, sym)
                    end
                end
            end
        end
    end
end
for _, u in ipairs(uses) do
    local to = defined_in[u[2]]
    if to then arrow(u[1], to, ("%s calls %s"):format(u[3], u[2])) end
end

-- 5. private state stays with its owner, in every file that can see the shared structs (that
-- includes p2p_internal.h, directly or not: elsewhere fields of the same name belong to other
-- structs). Comments, strings and character constants are blanked first (newlines kept, for
-- line numbers).
local SHARED = "csrc/p2p_internal.h"
local function sees_shared(path, visiting)
    if path == SHARED then return true end
    visiting = visiting or {}
    if visiting[path] then return false end
    visiting[path] = true
    for _, inc in ipairs(file_incs[path] or {}) do
        if sees_shared(inc, visiting) then return true end
    end
    return false
end
local function code_only(text)
    local out, i, len = {}, 1, #text
    while i <= len do
        local c, two = text:sub(i, i), text:sub(i, i + 1)
        if two == "/*" then
            local e = text:find("*/", i + 2, true) or len - 1
            out[#out + 1] = text:sub(i, e + 1):gsub("[^\n]", " ")
            i = e + 2
        elseif two == "//" then
            local e = text:find("\n", i, true) or len + 1
            out[#out + 1] = (" "):rep(e - i)
            i = e
        elseif c == '"' or c == "'" then
            local j = i + 1
            while j <= len and text:sub(j, j) ~= c do
                if text:sub(j, j) == "\\" then j = j + 1 end
                j = j + 1
            end
            out[#out + 1] = c .. text:sub(i + 1, j - 1):gsub("[^\n]", " ") .. c
            i = j + 1
        else
            out[#out + 1] = c
            i = i + 1
        end
    end
    return table.concat(out)
end
for _, path in ipairs(files) do
    local m = module_of(path)
    if not sees_shared(path) then goto next_file end
    local f = assert(io.open(path))
    local text = code_only(f:read("a"))
    f:close()
    local n = 0
    for line in (text .. "\n"):gmatch("([^\n]*)\n") do
        n = n + 1
        local seen = {}
        for _, pat in ipairs({ "%->%s*([%a_][%w_]*)", "%.%s*([%a_][%w_]*)" }) do
            for field in line:gmatch(pat) do
                local owner = PRIVATE[field]
                if owner and m ~= owner and m ~= HUB and not seen[field] then
                    seen[field] = true
                    problems[#problems + 1] = ("field: %s:%d uses %s, which %s owns"):format(
                        path, n, field, owner)
                end
            end
        end
    end
    ::next_file::
end

-- 3. every module has a place.
local names = {}
for m in pairs(modules) do names[#names + 1] = m end
table.sort(names)
for _, m in ipairs(names) do
    if not rank[m] then
        problems[#problems + 1] = ("module %s has no layer: add it to LAYERS in "
            .. "tests/check-layers.lua and to docs/ARCHITECTURE.md"):format(m)
    end
end

-- 1. arrows only look down.
local narrows = 0
for _, from in ipairs(names) do
    local tos = {}
    for to in pairs(edges[from] or {}) do tos[#tos + 1] = to end
    table.sort(tos)
    for _, to in ipairs(tos) do
        narrows = narrows + 1
        local rf, rt = rank[from], rank[to]
        if rf and rt then
            if rt > rf then
                problems[#problems + 1] = ("up: %s (%s) -> %s (%s): %s"):format(from,
                    layer_name[from], to, layer_name[to], why[from .. " -> " .. to])
            elseif rt == rf and apart[rf] then
                problems[#problems + 1] = ("sideways: %s -> %s (layer %s keeps its modules "
                    .. "apart): %s"):format(from, to, layer_name[from], why[from .. " -> " .. to])
            end
        end
    end
end

-- 2. no circles (Tarjan's strongly connected components).
local index, low, onstack, stack, counter = {}, {}, {}, {}, 0
local function connect(v)
    counter = counter + 1
    index[v], low[v] = counter, counter
    stack[#stack + 1] = v
    onstack[v] = true
    for w in pairs(edges[v] or {}) do
        if not index[w] then
            connect(w)
            low[v] = math.min(low[v], low[w])
        elseif onstack[w] then
            low[v] = math.min(low[v], index[w])
        end
    end
    if low[v] == index[v] then
        local scc = {}
        repeat
            local w = table.remove(stack)
            onstack[w] = false
            scc[#scc + 1] = w
        until w == v
        if #scc > 1 then
            table.sort(scc)
            problems[#problems + 1] = "circle: " .. table.concat(scc, ", ")
                .. " depend on each other"
        end
    end
end
for _, m in ipairs(names) do
    if not index[m] then connect(m) end
end

print(("check-layers: %d modules, %d arrows"):format(#names, narrows))
if #problems > 0 then
    for _, p in ipairs(problems) do io.stderr:write("  ", p, "\n") end
    io.stderr:write(("check-layers: %d problems\n"):format(#problems))
    os.exit(1)
end
print("check-layers: no circle, every arrow looks down")
