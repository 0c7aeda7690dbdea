-- Shared helpers for the specs: node pairs on loopback and poll loops with deadlines.
local p2pnet = require "p2pnet"

local S = {}

-- A monotonic clock in seconds: the clock of a UDP node, which keeps working after close.
local clock_node = assert(p2pnet.node { host = "127.0.0.1" })
clock_node:close()
function S.now()
    return clock_node:now()
end

-- Polls every node in `nodes` until cond() returns true or `seconds` (default 10) pass.
-- Returns true when cond held.
function S.spin(nodes, cond, seconds)
    local deadline = S.now() + (seconds or 10)
    while true do
        if cond() then
            return true
        end
        if S.now() > deadline then
            return false
        end
        for i, node in ipairs(nodes) do
            if not node.closed then
                node:poll(i == 1 and 0.002 or 0)
            end
        end
    end
end

-- Polls the nodes for `seconds` whatever happens.
function S.spin_for(nodes, seconds)
    S.spin(nodes, function() return false end, seconds)
end

-- Two connected nodes on 127.0.0.1: returns a, b, pa (a's peer for b), pb (b's for a).
-- opts_a / opts_b are extra node options.
function S.pair(opts_a, opts_b)
    local oa, ob = { host = "127.0.0.1" }, { host = "127.0.0.1" }
    for k, v in pairs(opts_a or {}) do oa[k] = v end
    for k, v in pairs(opts_b or {}) do ob[k] = v end
    local a = assert(p2pnet.node(oa))
    local b = assert(p2pnet.node(ob))
    local pa, pb
    a:on("join", function(p) pa = p end)
    b:on("join", function(p) pb = p end)
    assert(a:connect(b:address(), { id = b.id }))
    assert(S.spin({ a, b }, function() return pa and pb end), "the pair did not join")
    a:on("join", nil)
    b:on("join", nil)
    return a, b, pa, pb
end

-- A temporary directory, removed by S.rmdir.
-- Connects simulated node a to b (by address and id) and runs their simulator until a's
-- side joins; returns a's Peer for b. Raises after `seconds` (default 10) of virtual time.
function S.sim_join(sim, a, b, seconds)
    local pa
    a:on("join", function(p) pa = p end)
    assert(a:connect(b:address(), { id = b.id }))
    local deadline = sim:now() + (seconds or 10)
    while not pa and sim:now() < deadline do sim:run(0.05) end
    assert(pa, "no join within " .. (seconds or 10) .. " s of virtual time")
    return pa
end

-- s quoted for the shell (single quotes).
function S.q(s)
    return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

function S.tmpdir()
    local p = assert(io.popen("mktemp -d /tmp/p2pnet-spec.XXXXXX"))
    local dir = p:read("*l")
    p:close()
    return dir
end

function S.rmdir(dir)
    assert(dir:match("^/tmp/p2pnet%-spec%."))
    os.execute("rm -rf '" .. dir .. "'")
end

-- The permission bits of a file, as an octal string such as "600".
function S.mode(path)
    local p = assert(io.popen("stat -c %a '" .. path .. "'"))
    local m = p:read("*l")
    p:close()
    return m
end

function S.write(path, content, mode)
    local f = assert(io.open(path, "wb"))
    f:write(content)
    f:close()
    if mode then
        os.execute("chmod " .. mode .. " '" .. path .. "'")
    end
end

function S.read(path)
    local f = assert(io.open(path, "rb"))
    local s = f:read("*a")
    f:close()
    return s
end

-- pcall(fn, ...) that returns the error message, or fails the test when fn did not raise.
function S.raises(fn, ...)
    local ok, err = pcall(fn, ...)
    assert(not ok, "expected an error")
    return tostring(err)
end

-- A deterministic string of n bytes that encodes `seed`, so corruption and mix-ups show.
function S.payload(seed, n)
    local head = ("<%d:%d>"):format(seed, n)
    if n <= #head then
        return head:sub(1, n)
    end
    local unit = ("%08x"):format((seed * 2654435761) % 4294967296)
    local body = unit:rep(math.ceil((n - #head) / #unit))
    return head .. body:sub(1, n - #head)
end

-- The end of a NAT lab (tests/natlab/lab.lua) and its log directory dir (from S.tmpdir):
-- the lab goes down and dir is removed, unless NATLAB_KEEP is set (then it says where it is).
function S.lab_down(lab, dir)
    if lab then lab:down() end
    if dir and os.getenv("NATLAB_KEEP") then
        print("NAT lab logs kept in " .. dir)
    elseif dir then
        S.rmdir(dir)
    end
end

-- The NAT lab (tests/natlab/lab.lua, node.lua's lines): `sender` (of id sender_id) sent
-- `count` messages to `receiver`; every receipt came back ok, and the receiver got every
-- message once and in order.
function S.check_transfer(lab, sender, receiver, sender_id, count, what)
    local assert = require "luassert" -- busted's assert (this module is required, not run)
    local ok, failed = lab:wait(sender, "^done ok=(%d+) failed=(%d+)$", 60, what or "transfer")
    assert.equal(count .. "/0", ok .. "/" .. failed, lab:logs())
    local recv = lab.lines(receiver, "^recv " .. sender_id .. " (%d+)$")
    assert.equal(count, #recv, lab:logs())
    for i, r in ipairs(recv) do assert.equal(i, tonumber(r[1])) end
    assert.same({}, lab.lines(receiver, "^(recv%-bad .*)$"))
end

-- The NAT lab: every receipt `sender` printed is ok, carries its message's answer ("ack N"),
-- and came once.
function S.check_receipts(lab, sender)
    local assert = require "luassert"
    local seen = {}
    for _, r in ipairs(lab.lines(sender, "^receipt (%d+) (%a+) (.*)$")) do
        local n = tonumber(r[1])
        assert.is_nil(seen[n], "two receipts for message " .. n)
        seen[n] = true
        assert.equal("ok", r[2])
        assert.equal("ack " .. n, r[3])
    end
end

return S
