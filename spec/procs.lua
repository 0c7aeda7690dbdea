-- Helpers for the specs that start real processes (nginx, peers in other interpreters): the
-- repository's absolute path, free loopback ports, and waiting for and stopping processes.
local socket = require "socket"

local P = {}

-- Runs a shell command; true when it exited 0, and its exit code.
function P.sh(cmd)
    local ok, _, code = os.execute(cmd)
    return ok == true or ok == 0, code
end

-- The whole of a file, or nil when it cannot be read.
function P.read(path)
    local f = io.open(path, "rb")
    if not f then
        return nil
    end
    local s = f:read("*a")
    f:close()
    return s
end

-- The repository's absolute path (this file is in its spec/).
function P.root()
    local src = debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]*$")
    if src and src:sub(1, 1) == "/" then
        return src
    end
    local p = io.popen("pwd")
    local cwd = p:read("*l")
    p:close()
    return src and (cwd .. "/" .. src) or cwd
end

-- A port on 127.0.0.1 that was free a moment ago ("udp" or "tcp").
function P.free_port(kind)
    local s = kind == "udp" and socket.udp() or socket.tcp()
    if kind == "udp" then
        assert(s:setsockname("127.0.0.1", 0))
    else
        assert(s:bind("127.0.0.1", 0))
    end
    local _, port = s:getsockname()
    s:close()
    return tonumber(port)
end

function P.pid_alive(pid)
    return pid and P.sh("kill -0 " .. pid .. " 2>/dev/null")
end

-- fn()'s first true value within `seconds` (polled every 50 ms), or nil.
function P.wait_until(fn, seconds)
    local deadline = socket.gettime() + seconds
    repeat
        local v = fn()
        if v then
            return v
        end
        socket.sleep(0.05)
    until socket.gettime() > deadline
    return nil
end

-- SIGTERM, then SIGKILL if the process is still there 5 s later. Nothing for a nil pid.
function P.kill_pid(pid)
    if not (pid and P.pid_alive(pid)) then
        return
    end
    P.sh("kill " .. pid .. " 2>/dev/null")
    if not P.wait_until(function() return not P.pid_alive(pid) end, 5) then
        P.sh("kill -9 " .. pid .. " 2>/dev/null")
    end
end

-- s quoted for the shell.
function P.quote(s)
    return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Runs a shell command; returns ok (exit status 0) and its output, stdout and stderr together.
function P.run(cmd)
    local f = assert(io.popen(cmd .. " 2>&1; echo \"==exit $?\""))
    local out = f:read("*a")
    f:close()
    local code = tonumber(out:match("==exit (%d+)%s*$"))
    return code == 0, (out:gsub("==exit %d+%s*$", ""))
end

-- Whether a command is on the PATH.
function P.have(cmd)
    return (P.run("command -v " .. P.quote(cmd) .. " >/dev/null"))
end

-- Whether a spec can make network namespaces here: root, `ip netns add` works (tried with a
-- namespace named tag .. "-probe"), and every command in cmds is on the PATH. Returns true,
-- or false and the reason.
function P.netns_available(tag, cmds)
    local p = io.popen("id -u")
    local uid = p:read("*l")
    p:close()
    if uid ~= "0" then return false, "needs root (network namespaces)" end
    for _, cmd in ipairs(cmds or {}) do
        if not P.have(cmd) then return false, "needs " .. cmd end
    end
    local ok, out = P.run("ip netns add " .. tag .. "-probe && ip netns del " .. tag .. "-probe")
    if not ok then return false, "cannot make a network namespace: " .. out end
    return true
end

-- The last n (default 40) lines of s.
function P.tail(s, n)
    local lines = {}
    for l in s:gmatch("[^\n]*") do lines[#lines + 1] = l end
    return table.concat(lines, "\n", math.max(1, #lines - (n or 40)))
end

return P
