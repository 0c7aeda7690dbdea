-- The NAT lab from Lua, for spec/11-natlab_spec.lua: builds the lab with tests/natlab/lab.sh,
-- starts processes in its hosts with their output in log files, waits for lines in those
-- logs, and tears everything down. See lab.sh for the topology.
local Lab = {}
Lab.__index = Lab

-- The lab's fixed addresses (lab.sh).
Lab.MED = "192.0.2.2"
Lab.MED_ALT = "192.0.2.3" -- MED's second address (coturn's RFC 5780 alternate)
Lab.MED2 = "192.0.2.34" -- the second mediator's host
Lab.GEN = "192.0.2.18"
Lab.NAT_A = "198.51.100.2" -- A's public address: NATA's WAN (not in the upnp mode)
Lab.NAT_B = "203.0.113.2"
Lab.A = "10.0.1.2"
Lab.B = "10.0.2.2"
Lab.GW_A = "10.0.1.1" -- the routers' LAN addresses: A's and B's default gateways
Lab.GW_B = "10.0.2.1"
Lab.STUN = "192.0.2.2:3478" -- coturn (modes mixed and upnp, or lab:coturn(true))
-- The NATs' WAN addresses in the upnp mode (miniupnpd refuses reserved ones).
Lab.UPNP_NAT_A = "11.0.1.2"
Lab.UPNP_NAT_B = "11.0.2.2"

-- The command line of the lab's p2pnet node (tests/natlab/node.lua), without its options.
Lab.NODE = "lua5.4 tests/natlab/node.lua"

-- The Lua pattern that matches s as it is (an address in a pattern for lab:wait).
function Lab.esc(s)
    return (s:gsub("%p", "%%%0"))
end

local SCRIPT = "tests/natlab/lab.sh"

local function q(s)
    return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Runs a shell command; returns ok and its output (stdout and stderr).
local function sh(cmd)
    local f = assert(io.popen(cmd .. " 2>&1; echo \"==exit $?\""))
    local out = f:read("a")
    f:close()
    local code = tonumber(out:match("==exit (%d+)%s*$"))
    return code == 0, (out:gsub("==exit %d+%s*$", ""))
end

-- The sanitizer run preloads the ASan runtime into every process (tests/run-all.sh); the lab's
-- tools do not need it, only the Lua children that load the instrumented module.
local PRELOAD = os.getenv("LD_PRELOAD")
local NO_PRELOAD = "env -u LD_PRELOAD "

local function read(path)
    local f = io.open(path, "rb")
    if not f then return "" end
    local s = f:read("a")
    f:close()
    return s
end

local function sleep(s)
    os.execute("sleep " .. s)
end

-- A monotonic enough clock in seconds, for deadlines.
local clock = os.time
do
    local ok, socket = pcall(require, "socket")
    if ok then clock = socket.gettime end
end

--- Lab.available() -> true | false, why: root and working network namespaces.
function Lab.available()
    local ok, out = sh("id -u")
    if not ok or out:match("^%s*(%d+)") ~= "0" then
        return false, "the NAT lab needs root (network namespaces and iptables)"
    end
    local probe = "p2pl-probe-" .. math.random(1e9)
    ok, out = sh(NO_PRELOAD .. "ip netns add " .. probe)
    if not ok then
        return false, "network namespaces are not available here (ip netns add: "
            .. out:gsub("%s+$", "") .. ")"
    end
    sh(NO_PRELOAD .. "ip netns del " .. probe)
    return true
end

--- Lab.up(mode, dir, env) -> lab: builds a lab in `mode` (lab.sh: cone, symmetric, mixed,
-- upnp); logs go to `dir`. `env`: a table of environment variables for lab.sh (such as
-- { MINIUPNPD = "0" }). lab.NAT_A and lab.NAT_B are the NATs' public addresses in that mode.
function Lab.up(mode, dir, env)
    local pid = assert(io.popen("echo $PPID")):read("l")
    local self = setmetatable({ prefix = "p2pl" .. pid, dir = dir, children = {},
                                mode = mode or "cone" }, Lab)
    if mode == "upnp" then
        self.NAT_A, self.NAT_B = Lab.UPNP_NAT_A, Lab.UPNP_NAT_B
    end
    local vars = {}
    for k, v in pairs(env or {}) do vars[#vars + 1] = k .. "=" .. q(v) end
    self.env = #vars > 0 and ("env " .. table.concat(vars, " ") .. " ") or ""
    local ok, out = self:run("up", mode)
    assert(ok, "could not build the NAT lab:\n" .. out)
    return self
end

--- lab:udp(side, blocked): side "a" or "b"; true makes that NAT drop all UDP it would
-- forward (both ways), false lets it through again (and flushes its conntrack table).
function Lab:udp(side, blocked)
    return self:must("udp", side, blocked and "block" or "unblock")
end

--- lab:coturn(on): starts (true) or stops (false) coturn on MED (Lab.STUN).
function Lab:coturn(on)
    return self:must("coturn", on and "start" or "stop")
end

--- lab:upnpd(side, on, upnp_only): starts or stops miniupnpd on a NAT router (upnp mode
-- only); upnp_only: a gateway without NAT-PMP and PCP.
function Lab:upnpd(side, on, upnp_only)
    if on and upnp_only then return self:must("upnpd", side, "start", "upnp-only") end
    return self:must("upnpd", side, on and "start" or "stop")
end

--- lab:state_dir() -> the directory where lab.sh keeps daemon logs (coturn, miniupnpd).
function Lab:state_dir()
    return "/tmp/p2pnet-lab/" .. self.prefix
end

-- Runs a lab.sh command on this lab; returns ok, output.
function Lab:run(cmd, ...)
    local args = { NO_PRELOAD .. (self.env or "") .. "bash", SCRIPT, cmd, self.prefix }
    for _, a in ipairs { ... } do args[#args + 1] = q(a) end
    return sh(table.concat(args, " "))
end

-- Like run, but raises with the output when the command fails.
function Lab:must(cmd, ...)
    local ok, out = self:run(cmd, ...)
    if not ok then error(("lab.sh %s %s failed:\n%s"):format(cmd, table.concat({ ... }, " "),
                         out), 2) end
    return out
end

function Lab:down()
    self:kill_all()
    self:run("down")
end

--- lab:spawn(host, name, cmd) -> child: runs the shell command `cmd` (from the working
-- directory) in `host`'s namespace, in the background, output to dir/NNN-name.log.
function Lab:spawn(host, name, cmd)
    -- A new file for every child: a name used again must not show the last one's lines.
    self.spawned = (self.spawned or 0) + 1
    local log = ("%s/%03d-%s.log"):format(self.dir, self.spawned, name)
    assert(io.open(log, "wb")):close()
    local env = PRELOAD and ("env LD_PRELOAD=" .. q(PRELOAD) .. " ") or ""
    -- env -u: inside the lab, the node asks its (lab) gateway; `make test` forbids the real one
    local line = ("%sip netns exec %s env -u P2P_UDP_NO_GATEWAY %s%s > %s 2>&1 & echo $!"):format(
        NO_PRELOAD, q(self.prefix .. "-" .. host), env, cmd, q(log))
    local f = assert(io.popen(line))
    local pid = math.tointeger(tonumber(f:read("l")))
    f:close()
    assert(pid, "no pid for " .. name)
    local child = { name = name, host = host, pid = pid, log = log, lab = self }
    self.children[#self.children + 1] = child
    return child
end

function Lab.kill(_, child)
    if child.pid then
        os.execute("kill -9 " .. child.pid .. " 2>/dev/null")
        child.pid = nil
    end
end

function Lab:kill_all()
    for _, c in ipairs(self.children) do self:kill(c) end
end

--- lab:forget(): kills this test's children and starts a new list.
function Lab:forget()
    self:kill_all()
    self.children = {}
end

function Lab.output(child)
    return read(child.log)
end

-- Every child's log of this test, for failure messages (long logs keep their ends).
function Lab:logs()
    local parts = {}
    for _, c in ipairs(self.children) do
        local s = read(c.log)
        local lines = {}
        for l in s:gmatch("[^\n]+") do lines[#lines + 1] = l end
        if #lines > 60 then
            local keep = {}
            for i = 1, 25 do keep[#keep + 1] = lines[i] end
            keep[#keep + 1] = ("... (%d lines)"):format(#lines - 50)
            for i = #lines - 24, #lines do keep[#keep + 1] = lines[i] end
            lines = keep
        end
        parts[#parts + 1] = ("---- %s (in %s):\n%s"):format(c.name, c.host,
                                                          table.concat(lines, "\n"))
    end
    return table.concat(parts, "\n")
end

-- True while the process runs (a zombie, waiting for init to reap it, has finished).
local function running(pid)
    local stat = read("/proc/" .. pid .. "/stat")
    local state = stat:match("^%d+ %b() (%a)")
    return state ~= nil and state ~= "Z"
end

--- lab:wait(child, pattern, seconds, what) -> captures: waits for a line matching `pattern`
-- (a Lua pattern, anchored to a complete line) in child's log. Raises, with every log, when it does
-- not come in time, or at once when the child prints an "error ..." line (node.lua's
-- report of an error event) or exits without printing it.
function Lab:wait(child, pattern, seconds, what)
    local deadline = clock() + (seconds or 20)
    local function fail(why)
        error(("%s: %s printed no line matching %q: %s\n%s"):format(what or "timeout",
              child.name, pattern, why, self:logs()), 3)
    end
    while true do
        local alive = child.pid and running(child.pid)
        for line in read(child.log):gmatch("([^\n]*)\n") do
            local caps = { line:match(pattern) }
            if #caps > 0 then return table.unpack(caps) end
            if line:match("^error ") then fail("it reported " .. line) end
        end
        if not alive then fail("it is not running") end
        if clock() > deadline then fail(("not within %d s"):format(seconds or 20)) end
        sleep(0.05)
    end
end

--- lab:wait_exit(child, seconds): waits until the child's process is gone.
function Lab:wait_exit(child, seconds)
    local deadline = clock() + (seconds or 20)
    while child.pid and running(child.pid) do
        if clock() > deadline then
            error(("%s did not finish within %d s\n%s"):format(child.name, seconds or 20,
                                                                self:logs()), 2)
        end
        sleep(0.05)
    end
    child.pid = nil
end

--- lab:mediator(host, name, cmd) -> child, id: starts a mediator (cmd: the command line's
-- "p2pnet mediator ...") in host and waits until it says its id.
function Lab:mediator(host, name, cmd)
    local med = self:spawn(host, name, cmd)
    return med, self:wait(med, "^p2pnet mediator (%x+) listening on ", 10)
end

--- lab:node(host, name, args) -> child, id: starts node.lua with the options args in host
-- and waits until it says its id.
function Lab:node(host, name, args)
    local c = self:spawn(host, name, Lab.NODE .. " " .. args)
    return c, self:wait(c, "^id (%x+)$", 10)
end

-- Every line of child's log that matches `pattern`, as arrays of captures.
function Lab.lines(child, pattern)
    local found = {}
    for line in read(child.log):gmatch("([^\n]*)\n") do
        local caps = { line:match(pattern) }
        if #caps > 0 then found[#found + 1] = caps end
    end
    return found
end

return Lab
