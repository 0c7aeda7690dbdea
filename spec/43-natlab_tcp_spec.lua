-- NAT lab, scenario 3 of issue 12 (design12 section 8.4): UDP is blocked at A's router, TCP is
-- not. A node behind it reaches the mediator over TCP (p2pnet mediator --tcp-port; by default
-- the node tries TCP to the port it was given, or a fallback URL), B (UDP as usual) is
-- reached by id through the mediator, relayed over A's stream, and 100 messages come back
-- with receipts. Then A's router lets UDP through again while messages keep flowing (600 in
-- all, one each 50 ms): the session with the mediator moves to UDP, with nothing lost and
-- nothing twice (node.lua prints "recv-bad" for either), and the A-B session, relayed until
-- then, goes direct on both sides (both NATs are cones: the mediator introduces A and B again
-- with A's UDP address and both probe at once) and stays direct. The same once more with a
-- WebSocket fallback URL (ws://MED:PORT/p2pnet).
--
-- Needs root and network namespaces; pending without them, with the reason.
local S = require "spec.support"
local Lab = require "tests.natlab.lab"

local PORT = 7000
local MED_ADDR = Lab.MED .. ":" .. PORT
local MEDIATOR = ("lua5.4 bin/p2pnet mediator --port %d --tcp-port %d"):format(PORT, PORT)

local function touch(path)
    assert(io.open(path, "wb")):close()
end

local function sleep(s)
    os.execute("sleep " .. s)
end

-- What is missing for this scenario (root, network namespaces, the lab's tools), or nil.
local function missing()
    local ok, why = Lab.available()
    if not ok then return why end
    return nil
end

local why = missing()
if why then
    describe("NAT lab scenario 3 (TCP and WebSocket relay)", function()
        pending("skipped: " .. why)
    end)
    return
end

describe("NAT lab scenario 3: UDP blocked, TCP relay #natlab #lab12", function()
    local lab, dir

    lazy_setup(function()
        dir = S.tmpdir()
        lab = Lab.up("cone", dir)
    end)

    lazy_teardown(function()
        if lab then pcall(lab.run, lab, "udp", "a", "unblock") end
        S.lab_down(lab, dir)
    end)

    after_each(function()
        pcall(lab.run, lab, "udp", "a", "unblock")
        lab:forget()
    end)

    -- Seconds until both A sees B and B sees A on a direct path ("path ID ADDR direct=true
    -- connected" from node.lua; an attempt's line before its join says direct=true too, with
    -- state "connecting"), polled every 50 ms; nil when not within `seconds`.
    local function wait_direct(a, b, a_id, b_id, seconds)
        local t0 = S.now()
        local a_sees = "^path " .. b_id .. " %S+ direct=true connected$"
        local b_sees = "^path " .. a_id .. " %S+ direct=true connected$"
        while S.now() - t0 < seconds do
            if #Lab.lines(a, a_sees) > 0 and #Lab.lines(b, b_sees) > 0 then return S.now() - t0 end
            sleep(0.05)
        end
        return nil
    end

    -- The last path line of child about id says direct=true.
    local function ends_direct(child, id)
        local lines = Lab.lines(child, "^path " .. id .. " %S+ direct=(%a+) connected$")
        return #lines > 0 and lines[#lines][1] == "true"
    end

    -- One run: A behind a UDP-blocking router, with `fallback` (nil: the default same-port
    -- TCP try), dials B through the mediator; `kind` is the path A reports for the mediator.
    local function scenario(tag, fallback, kind)
        lab:must("nat", "a", "cone")
        lab:must("nat", "b", "cone")
        lab:must("udp", "a", "block")
        local med, med_id = lab:mediator("med", "mediator-" .. tag, MEDIATOR)
        local b, b_id = lab:node("b", "node-b-" .. tag, "--port 6300 --connect " .. MED_ADDR)
        lab:wait(b, "^join " .. med_id .. " ", 20, "B registering with the mediator")
        local go = dir .. "/go-" .. tag
        local t0 = S.now()
        -- 600 messages, one each 50 ms (30 s): the first 100 while UDP is blocked, the rest
        -- across the unblock and the move to UDP (probes at 1, 2, 4, 8, 16 s) and after it
        local a, a_id = lab:node("a", "node-a-" .. tag, ("--port 6300 --connect %s --dial %s "
            .. "--via %s --send-to %s --count 600 --interval 0.05 --go %s%s"):format(
            MED_ADDR, b_id, MED_ADDR, b_id, go, fallback and (" --fallback " .. fallback) or ""))
        lab:wait(a, "^join " .. med_id .. " ", 30, "A reaching the mediator over " .. kind)
        local t_med = S.now()
        lab:wait(a, "^pathkind " .. med_id .. " " .. kind .. "$", 10, "the mediator's path kind")
        lab:wait(a, "^join " .. b_id .. " ", 30, "A reaching B through the mediator")
        local t_join = S.now()
        touch(go)
        -- 100 receipts over the stream, then UDP comes back
        lab:wait(a, "^receipt 100 ok", 60, "100 receipts while UDP is blocked")
        -- A-B was relayed while UDP was blocked
        assert.is_false(ends_direct(a, b_id), lab:logs())
        lab:must("udp", "a", "unblock")
        local t_unblock = S.now()
        -- the A-B session goes direct while the messages keep flowing
        local took = wait_direct(a, b, a_id, b_id, 22)
        -- every message once, in order, with its receipt, across both moves
        S.check_transfer(lab, a, b, a_id, 600)
        S.check_receipts(lab, a)
        -- the session with the mediator moved to UDP (PATH_CHALLENGE to its UDP address)
        lab:wait(a, "^pathkind " .. med_id .. " direct$", 5, "the move to UDP")
        assert(took, "A-B still relayed 22 s after UDP came back\n" .. lab:logs())
        -- and it stayed direct to the end, on both sides
        assert.is_true(ends_direct(a, b_id), lab:logs())
        assert.is_true(ends_direct(b, a_id), lab:logs())
        print(("  %s: mediator over %s %.1f s after start, B %.1f s; 600/600 receipts; "
            .. "moved to UDP after the unblock (unblocked %.1f s into the transfer); "
            .. "A-B direct %.1f s after the unblock"):format(
            tag, kind, t_med - t0, t_join - t0, t_unblock - t_join, took))
        lab:kill(med)
    end

    it("relays over TCP to the mediator's --tcp-port, then moves to UDP without loss", function()
        scenario("tcp", nil, "tcp")
    end)

    it("relays over a WebSocket (ws:// fallback URL), then moves to UDP without loss", function()
        scenario("ws", ("ws://%s/p2pnet"):format(MED_ADDR), "websocket")
    end)
end)
