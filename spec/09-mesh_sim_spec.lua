-- The mesh on the simulator at 5% loss: 200 nodes joining through various members form a
-- full mesh, a broadcast then reaches the 199 others exactly once, and every node lists each
-- other member once; no member is seen leaving and joining again while a mesh forms; a node
-- that can hold only one session still gets every broadcast through the member it holds (and
-- its own reach everyone).
--
-- Cost: the full mesh of 200 is 19,900 sessions, each a Noise handshake plus signed member
-- records, so the first test takes about a minute of CPU on an idle machine however little
-- virtual time it runs. Under AddressSanitizer (make test preloads libasan for its second
-- busted run) everything is several times slower, so there the same test runs with 60 nodes.
local p2pnet = require "p2pnet"

local UNDER_ASAN = (os.getenv("LD_PRELOAD") or ""):match("asan") ~= nil
local N = UNDER_ASAN and 60 or 200

-- Virtual seconds: measured with seeds 1-3 and 2024, the mesh of 200 was full 4.5-5 s after
-- the last node had dialled; the limits below give that twice over. The runs stop as soon as
-- the condition holds, so the margin costs nothing when all is well.
local JOIN_SPREAD = 2    -- the joins are spread over this much virtual time
local CONVERGE = 10      -- after the last join, a full mesh is required by then
local BROADCAST = 5      -- a broadcast must have reached everyone by then

-- A simulated network at 5% loss.
local function network(seed)
    return p2pnet.sim { seed = seed, loss = 0.05, latency = 0.01, jitter = 0.005 }
end

-- Node i (i > 1) joins through an earlier node picked by a fixed rule, so that the first node
-- is only one of many entry points and some nodes join through members that are themselves
-- still joining. The joins are spread over JOIN_SPREAD virtual seconds. Returns how many
-- joined through the first node.
local function join_all(sim, nodes)
    local via_first = 0
    local per_step = math.ceil((#nodes - 1) / (JOIN_SPREAD / 0.1))
    for i = 2, #nodes do
        local via = ((i * 7919) % (i - 1)) + 1
        if via == 1 then via_first = via_first + 1 end
        assert(nodes[i]:connect(nodes[via]:address()))
        if i % per_step == 0 then sim:run(0.1) end
    end
    return via_first
end

-- Records each broadcast a node delivers: got[i] = list of { mtype, data, info }.
local function record_messages(nodes)
    local got = {}
    for i, node in ipairs(nodes) do
        got[i] = {}
        node:on("message", function(_, mtype, data, info)
            local list = got[i]
            list[#list + 1] = { mtype = mtype, data = data, info = info }
        end)
    end
    return got
end

-- Runs the sim in steps of `step` until cond() or `seconds` of virtual time pass. Returns
-- true when cond held, and the virtual time it took.
local function run_until(sim, cond, seconds, step)
    local t0 = sim:now()
    while not cond() do
        if sim:now() - t0 >= seconds then return false, sim:now() - t0 end
        sim:run(step or 0.25)
    end
    return true, sim:now() - t0
end

-- Checks that every node in `nodes` but `from` delivered the broadcast `id` exactly once,
-- with its type, data and origin intact. Returns a list of problems (empty when all is well).
local function check_broadcast(nodes, got, from, id, mtype, data)
    local problems = {}
    for i in ipairs(nodes) do
        local copies = 0
        for _, m in ipairs(got[i]) do
            if m.info.id == id then
                copies = copies + 1
                if not (m.info.broadcast and m.info.origin == nodes[from].id
                        and m.mtype == mtype and m.data == data) then
                    problems[#problems + 1] = ("node %d: altered copy"):format(i)
                end
            end
        end
        if i ~= from and copies ~= 1 then
            problems[#problems + 1] = ("node %d: %d copies"):format(i, copies)
        end
    end
    return problems
end

describe(("a mesh of %d simulated nodes at 5%% loss"):format(N), function()
    -- Built once for the tests below: the full mesh is the expensive part.
    local sim, nodes, formed, took

    lazy_setup(function()
        sim = network(2024)
        nodes = {}
        for i = 1, N do
            nodes[i] = assert(sim:node())
        end
        local via_first = join_all(sim, nodes)
        assert(via_first < N / 4, "most nodes joined through the first")
        formed, took = run_until(sim, function()
            for _, node in ipairs(nodes) do
                if node:stats().peers ~= N - 1 then return false end
            end
            return true
        end, CONVERGE, 0.5)
    end)

    lazy_teardown(function()
        for _, node in ipairs(nodes) do node:close() end
        nodes, sim = nil, nil
    end)

    it("becomes a full mesh, the nodes joining through various members", function()
        if not formed then
            local short, least = 0, N
            for _, node in ipairs(nodes) do
                local p = node:stats().peers
                if p ~= N - 1 then short = short + 1 end
                if p < least then least = p end
            end
            error(("no full mesh %.1f s after the last join: %d nodes short, the least "
                   .. "connected holds %d sessions"):format(took, short, least))
        end
    end)

    it("delivers a broadcast to all others exactly once, intact", function()
        assert(formed, "no full mesh")
        local got = record_messages(nodes)
        local from = 137 % N + 1
        local data = ("broadcast from node %d, with some bulk: %s"):format(from, ("x"):rep(3000))
        local id = nodes[from]:broadcast(42, data)
        local function all_got()
            for i in ipairs(nodes) do
                if i ~= from and #got[i] == 0 then return false end
            end
            return true
        end
        local reached = run_until(sim, all_got, BROADCAST, 0.1)
        sim:run(1.5) -- duplicates, if any, would arrive now
        assert.is_true(reached, "the broadcast did not reach everyone")
        local problems = check_broadcast(nodes, got, from, id, 42, data)
        assert(#problems == 0, table.concat(problems, "; "))
    end)

    it("lists, on every node, each other member once, connected, at its address", function()
        assert(formed, "no full mesh")
        local index = {}
        for i, node in ipairs(nodes) do index[node.id] = i end
        local problems = {}
        for i, node in ipairs(nodes) do
            local seen = {}
            for _, p in ipairs(node:peers()) do
                local j = p.id and index[p.id]
                local what = ("node %d lists %s (%s, %s)"):format(i,
                    j and "node " .. j or tostring(p.id), p.state, tostring(p.address))
                if not j or j == i then
                    problems[#problems + 1] = what .. ": not another member"
                elseif seen[j] then
                    problems[#problems + 1] = what .. ": a second time"
                elseif p.state ~= "connected" then
                    problems[#problems + 1] = what .. ": not connected"
                elseif p.address ~= nodes[j]:address() then
                    problems[#problems + 1] = what .. ": not at " .. nodes[j]:address()
                end
                if j then seen[j] = true end
            end
            for j = 1, N do
                if j ~= i and not seen[j] then
                    problems[#problems + 1] = ("node %d does not list node %d"):format(i, j)
                end
            end
        end
        assert(#problems == 0, "\n  " .. table.concat(problems, "\n  "))
    end)
end)

describe("the mesh on the simulator at 5% loss", function()
    -- Found with this spec: at 5% loss, a pair that already holds its session sometimes makes
    -- a second one, which replaces the first, and both sides see the peer leave ("closed")
    -- and join again (seed 2024, 60 nodes: 3 pairs).
    it("shows no member leaving and joining again while a mesh of 60 forms", function()
        local n = 60
        local sim = network(2024)
        local nodes, index = {}, {}
        for i = 1, n do
            nodes[i] = assert(sim:node())
            index[nodes[i].id] = i
        end
        local joins, flaps = 0, {}
        for i = 1, n do
            nodes[i]:on("join", function() joins = joins + 1 end)
            nodes[i]:on("leave", function(peer, reason)
                flaps[#flaps + 1] = ("node %d saw node %d leave (%s) at %.2f s"):format(
                    i, index[peer.id], reason, sim:now())
            end)
        end
        join_all(sim, nodes)
        local full = run_until(sim, function()
            for _, node in ipairs(nodes) do
                if node:stats().peers ~= n - 1 then return false end
            end
            return true
        end, CONVERGE, 0.5)
        sim:run(2)
        assert.is_true(full, "no full mesh")
        assert(#flaps == 0, "\n  " .. table.concat(flaps, "\n  "))
        assert.equal(n * (n - 1), joins)
    end)

    it("bridges a node with max_peers = 1: it gets every broadcast, and its own reach all",
       function()
        local sim = network(7)
        local nodes = {}
        for i = 1, 12 do
            nodes[i] = assert(sim:node())
            if i > 1 then assert(nodes[i]:connect(nodes[(i - 2) % 3 + 1]:address())) end
        end
        local lonely = assert(sim:node { max_peers = 1 })
        assert(lonely:connect(nodes[5]:address()))
        local all = { table.unpack(nodes) }
        all[#all + 1] = lonely
        local L = #all

        local function settled()
            for i = 1, 12 do
                if nodes[i]:stats().peers < 11 then return false end
            end
            return lonely:stats().peers == 1
        end
        assert.is_true(run_until(sim, settled, 20), "the network did not settle")
        sim:run(2)
        assert.equal(1, lonely:stats().peers)
        assert.equal(nodes[5].id, lonely:peers()[1].id)

        local got = record_messages(all)
        -- from members that have no session with the lonely node
        local sent = {}
        for _, from in ipairs { 1, 9, 12 } do
            assert.is_nil(lonely:peer(nodes[from].id), "lonely is linked to " .. from)
            sent[#sent + 1] = { from, nodes[from]:broadcast(100 + from, "from " .. from) }
        end
        -- and from the lonely node itself
        sent[#sent + 1] = { L, lonely:broadcast(200, "from the edge") }
        local function done()
            for i in ipairs(all) do
                local want = #sent - (i == L and 1 or 0)
                if i == 1 or i == 9 or i == 12 then want = want - 1 end
                if #got[i] < want then return false end
            end
            return true
        end
        local ok = run_until(sim, done, 10, 0.1)
        sim:run(3)
        assert.is_true(ok, "the broadcasts did not reach everyone")
        local problems = {}
        for _, s in ipairs(sent) do
            local from, id = s[1], s[2]
            local mtype = from == L and 200 or 100 + from
            local data = from == L and "from the edge" or "from " .. from
            for _, p in ipairs(check_broadcast(all, got, from, id, mtype, data)) do
                problems[#problems + 1] = ("broadcast of node %d: %s"):format(from, p)
            end
        end
        assert(#problems == 0, table.concat(problems, "; "))
        assert.equal(1, lonely:stats().peers) -- it never held more than it may
    end)
end)
