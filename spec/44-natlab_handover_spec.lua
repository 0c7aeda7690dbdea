-- Scenario 5 of issue 12 in the NAT lab (tests/natlab/lab.sh): relay hand-over. A and B sit
-- behind symmetric (port-randomizing) NATs, so their session is relayed; both hold sessions
-- with two mediators, MED and a second one on GEN (the lab's other public host stands in for
-- the MED2 of design 12 section 8.4). While 300 messages flow from A to B through MED, MED is
-- killed with SIGKILL (no CLOSE): the session moves to GEN's relay within seconds, and B gets
-- all 300 messages once and in order, A every receipt.
--
-- Needs root and network namespaces; without them it is pending, with the reason.
local S = require "spec.support"
local Lab = require "tests.natlab.lab"

local MEDIATOR = "lua5.4 bin/p2pnet mediator --port 7000"
local MED_ADDR = Lab.MED .. ":7000"
local GEN_ADDR = Lab.GEN .. ":7000"

local esc = Lab.esc

local available, why = Lab.available()
if not available then
    describe("the NAT lab: relay hand-over", function()
        pending(why)
    end)
    return
end

describe("the NAT lab: relay hand-over #natlab #lab12", function()
    local lab, dir

    setup(function()
        dir = S.tmpdir()
        lab = Lab.up("symmetric", dir)
    end)

    teardown(function()
        S.lab_down(lab, dir)
    end)

    it("moves a relayed session to a second relay when the first is killed, losing and "
       .. "repeating nothing", function()
        lab:must("nat", "a", "symmetric")
        lab:must("nat", "b", "symmetric")
        local med, med_id = lab:mediator("med", "mediator", MEDIATOR)
        local _, gen_id = lab:mediator("gen", "mediator2", MEDIATOR)
        local b, b_id = lab:node("b", "node-b", ("--port 6500 --connect %s,%s"):format(MED_ADDR,
                                                                                  GEN_ADDR))
        lab:wait(b, "^join " .. med_id .. " ", 20, "B registering with MED")
        lab:wait(b, "^join " .. gen_id .. " ", 20, "B registering with GEN")
        local a, a_id = lab:node("a", "node-a", ("--port 6500 --connect %s --dial %s --via %s "
            .. "--send-to %s --count 300 --interval 0.02"):format(GEN_ADDR, b_id, MED_ADDR, b_id))
        local direct = lab:wait(a, "^join " .. b_id .. " %S+ direct=(%a+)$", 45,
                                "A reaching B through MED")
        assert.equal("false", direct, lab:logs())
        lab:wait(a, "^path " .. b_id .. " " .. esc(MED_ADDR) .. " direct=false connected$", 10,
                 "A relayed by MED")
        lab:wait(a, "^receipt 100 ", 30, "the first 100 messages")
        local killed = os.time()
        lab:kill(med) -- SIGKILL: MED says nothing
        lab:wait(a, "^path " .. b_id .. " " .. esc(GEN_ADDR) .. " direct=false connected$", 10,
                 "A moving to GEN's relay")
        lab:wait(b, "^path " .. a_id .. " " .. esc(GEN_ADDR) .. " direct=false connected$", 10,
                 "B moving to GEN's relay")
        local took = os.time() - killed
        print(("     hand-over after MED was killed: %d s or less"):format(took + 1))
        assert.is_true(took <= 5, lab:logs())
        S.check_transfer(lab, a, b, a_id, 300, "every receipt")
        S.check_receipts(lab, a)
        assert.same({}, Lab.lines(a, "^(leave " .. b_id .. " .*)$"))
    end)
end)
