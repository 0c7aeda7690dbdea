-- bench/bench_mesh_real.lua - full-mesh formation among real processes on 127.0.0.1.
--
--   lua5.4 bench/bench_mesh_real.lua [N]      (default 30; LUA_PATH/LUA_CPATH as for bench_lua.lua)
--
-- This process is the bootstrap node. It starts N-1 child processes (this script with the
-- "child" role), each knowing only the bootstrap's address. A node counts as done when it holds
-- N-1 connected sessions; a child writes that moment (the system-wide monotonic clock, the
-- same in every process) to its own file in a temporary directory, which the parent reads.
-- Result: the wall-clock seconds from just before the children are spawned until all N hold a
-- full mesh, so process start-up (interpreter, module, identity) is included.
--
-- Prints "RESULT meshreal N SECONDS FULL_NODES" (SECONDS is -1 when the mesh did not form).
--
-- Cleanup is bounded three ways: the parent asks the children to stop (a stop file), then
-- kills any that remain; every child stops by itself when the parent's process disappears or
-- after HARD_STOP seconds; and every child runs under timeout(1) as a last resort.
local p2pnet = require "p2pnet"

local HARD_STOP = 60   -- seconds: the whole run, parent and children
local POLL = 0.02

local function own_pid()
    local f = assert(io.open("/proc/self/stat"))
    local pid = f:read("n")
    f:close()
    return pid
end

-- A process counts as gone when /proc has no entry or only a zombie is left.
local function alive(pid)
    local f = io.open("/proc/" .. pid .. "/stat")
    if not f then return false end
    local stat = f:read("a") or ""
    f:close()
    local state = stat:match("^%d+ %b() (%a)")
    return state ~= nil and state ~= "Z"
end

local function exists(path)
    local f = io.open(path)
    if f then f:close() end
    return f ~= nil
end

local function connected(node)
    return node:stats().peers
end

local function child(bootstrap, n, dir, index, parent_pid)
    local out = assert(io.open(("%s/%d.out"):format(dir, index), "w"))
    out:write("PID ", own_pid(), "\n")
    out:flush()
    local node = assert(p2pnet.node { host = "127.0.0.1", port = 0 })
    node:on("error", function(err) io.stderr:write("child ", index, ": ", tostring(err), "\n") end)
    assert(node:connect(bootstrap))
    local stop_file = dir .. "/stop"
    local deadline = node:now() + HARD_STOP
    local reported, next_check = false, 0
    while node:now() < deadline do
        node:poll(POLL)
        if not reported and connected(node) == n - 1 then
            out:write(("FULL %.6f\n"):format(node:now()))
            out:flush()
            reported = true
        end
        local now = node:now()
        if now >= next_check then
            next_check = now + 0.1
            if exists(stop_file) or not alive(parent_pid) then break end
        end
    end
    out:close()
    node:close() -- sends the goodbyes itself
end

local function shell_quote(s)
    return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function parent(n)
    local lua = arg[-1] or "lua5.4"
    local script = arg[0]
    local node = assert(p2pnet.node { host = "127.0.0.1", port = 0 })
    local bootstrap = node:address()
    local tmp = io.popen("mktemp -d"):read("l")
    assert(tmp and tmp ~= "", "mktemp -d failed")
    local me = own_pid()

    -- All children from one shell: `&` backgrounds each, `echo $!` hands back timeout's pid.
    -- Their stdout must not be the pipe, or reading it would wait for them to exit.
    local cmds = {}
    local child_cmd = "timeout -k 2 %d %s %s child %s %d %s %d %d >/dev/null 2>%s/%d.err & echo $!"
    for i = 1, n - 1 do
        cmds[#cmds + 1] = child_cmd:format(HARD_STOP + 10, shell_quote(lua), shell_quote(script),
            bootstrap, n, shell_quote(tmp), i, me, shell_quote(tmp), i)
    end
    local start = node:now()
    local sh = assert(io.popen(table.concat(cmds, "\n")))
    local wrapper_pids = {}
    for line in sh:lines() do wrapper_pids[#wrapper_pids + 1] = tonumber(line) end
    sh:close()

    local child_pid, child_full = {}, {}
    local own_full
    local deadline = start + HARD_STOP
    local next_read = 0
    local function read_children()
        local done = 0
        for i = 1, n - 1 do
            if not child_full[i] then
                local f = io.open(("%s/%d.out"):format(tmp, i))
                if f then
                    for line in f:lines() do
                        local pid = line:match("^PID (%d+)")
                        if pid then child_pid[i] = tonumber(pid) end
                        local at = line:match("^FULL ([%d.]+)")
                        if at then child_full[i] = tonumber(at) end
                    end
                    f:close()
                end
            end
            if child_full[i] then done = done + 1 end
        end
        return done
    end

    local children_done = 0
    while node:now() < deadline do
        node:poll(POLL)
        if not own_full and connected(node) == n - 1 then own_full = node:now() end
        local now = node:now()
        if now >= next_read then
            next_read = now + 0.05
            children_done = read_children()
            if own_full and children_done == n - 1 then break end
        end
    end

    local last = own_full
    for i = 1, n - 1 do
        if child_full[i] and (not last or child_full[i] > last) then last = child_full[i] end
    end
    local full_nodes = children_done + (own_full and 1 or 0)
    local secs = full_nodes == n and last - start or -1
    if full_nodes < n then
        io.stderr:write(("bench_mesh_real: only %d of %d nodes saw a full mesh in %d s\n"):format(
            full_nodes, n, HARD_STOP))
        for i = 1, n - 1 do
            local f = io.open(("%s/%d.err"):format(tmp, i))
            local err = f and f:read("a") or ""
            if f then f:close() end
            if err ~= "" then io.stderr:write("  child ", i, ": ", err) end
        end
    end

    -- Stop: ask, wait up to 3 s, then TERM (timeout passes it on), then KILL what remains.
    local stop = io.open(tmp .. "/stop", "w")
    if stop then stop:close() end
    read_children()
    local pids = {}
    for _, p in ipairs(wrapper_pids) do pids[#pids + 1] = p end
    for i = 1, n - 1 do if child_pid[i] then pids[#pids + 1] = child_pid[i] end end
    local function remaining()
        local left = {}
        for _, p in ipairs(pids) do if alive(p) then left[#left + 1] = p end end
        return left
    end
    local wait_until = node:now() + 3
    while #remaining() > 0 and node:now() < wait_until do node:poll(0.05) end
    for _, sig in ipairs({ "TERM", "KILL" }) do
        local left = remaining()
        if #left == 0 then break end
        os.execute("kill -" .. sig .. " " .. table.concat(left, " ") .. " 2>/dev/null")
        local t = node:now() + 1
        while #remaining() > 0 and node:now() < t do node:poll(0.05) end
    end
    local left = remaining()
    if #left > 0 then
        io.stderr:write("bench_mesh_real: processes still running: ", table.concat(left, " "), "\n")
    end
    node:close()
    os.execute("rm -rf " .. shell_quote(tmp))

    print(("RESULT meshreal %d %.2f %d"):format(n, secs, full_nodes))
    io.stdout:flush()
    return full_nodes == n and #left == 0
end

if arg[1] == "child" then
    child(arg[2], tonumber(arg[3]), arg[4], tonumber(arg[5]), tonumber(arg[6]))
else
    local n = tonumber(arg[1] or "30")
    if not n or n < 2 then
        io.stderr:write("usage: lua5.4 bench/bench_mesh_real.lua [N]\n")
        os.exit(2)
    end
    os.exit(parent(n) and 0 or 1)
end
