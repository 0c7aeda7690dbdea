-- Nodes: options, bad input, runtime failures as nil, err, and the closed state.
local p2pnet = require "p2pnet"
local S = require "spec.support"

local function port_of(node)
    return tonumber(node:address():match(":(%d+)$"))
end

describe("p2pnet.node", function()
    it("binds a free port and reports its id and address", function()
        local a = assert(p2pnet.node { host = "127.0.0.1" })
        assert.equal(64, #a.id)
        assert.is_truthy(a.id:match("^[0-9a-f]+$"))
        assert.is_truthy(a:address():match("^127%.0%.0%.1:%d+$"))
        assert.is_true(port_of(a) > 0)
        assert.is_true(math.type == nil or math.type(a:fd()) == "integer")
        assert.is_true(a:fd() >= 0)
        assert.is_number(a:next_timeout())
        assert.is_true(a:next_timeout() >= 0)
        assert.same({}, a:peers())
        assert.is_truthy(tostring(a):find(a.id, 1, true))
        a:close()
    end)

    it("binds the default host and IPv6", function()
        local a = assert(p2pnet.node())
        assert.is_truthy(a:address():match("^0%.0%.0%.0:%d+$"))
        a:close()
        local b, err = p2pnet.node { host = "::1" }
        if b then -- hosts without IPv6 get nil, err, which is fine too
            assert.is_truthy(b:address():match("^%[::1%]:%d+$"))
            b:close()
        else
            assert.is_string(err)
        end
    end)

    it("returns nil, err for a port in use", function()
        local a = assert(p2pnet.node { host = "127.0.0.1" })
        local b, err = p2pnet.node { host = "127.0.0.1", port = port_of(a) }
        assert.is_nil(b)
        assert.is_string(err)
        a:close()
    end)

    it("returns nil, err for a host that does not parse", function()
        for _, host in ipairs { "300.1.1.1", "not an address", "1.2.3", "::zz" } do
            local n, err = p2pnet.node { host = host }
            assert.is_nil(n, host)
            assert.is_string(err)
        end
    end)

    it("raises for option values of the wrong type or range, naming the option", function()
        local cases = {
            { { port = "80" }, "port" }, { { port = 70000 }, "port" }, { { port = -1 }, "port" },
            { { port = 1.5 }, "port" }, { { host = 1 }, "host" },
            { { identity = 5 }, "identity" }, { { network_key = 5 }, "network_key" },
            { { allow = "x" }, "allow" }, { { allow = { "abc" } }, "allow" },
            { { allow = { ("g"):rep(64) } }, "allow" }, { { deny = { 1 } }, "deny" },
            { { on_request = true }, "on_request" }, { { mesh = "yes" }, "mesh" },
            { { relay = 1 }, "relay" }, { { timeout = 0 }, "timeout" },
            { { timeout = -1 }, "timeout" }, { { timeout = "10" }, "timeout" },
            { { max_peers = 0 }, "max_peers" }, { { max_peers = 2.5 }, "max_peers" },
            { { max_message = 0 }, "max_message" }, { { max_message = "big" }, "max_message" },
        }
        for _, case in ipairs(cases) do
            local err = S.raises(p2pnet.node, case[1])
            assert.is_truthy(err:find("p2pnet.node", 1, true), err)
            assert.is_truthy(err:find("'" .. case[2] .. "'", 1, true), err)
        end
        local err = S.raises(p2pnet.node, { prot = 1 })
        assert.is_truthy(err:find("unknown option 'prot'", 1, true), err)
        S.raises(p2pnet.node, "127.0.0.1")
    end)

    it("accepts every documented option", function()
        local allowed = p2pnet.identity().id
        local a = assert(p2pnet.node {
            host = "127.0.0.1", port = 0, identity = p2pnet.identity(), network_key = "k",
            allow = { allowed }, deny = { p2pnet.identity().id },
            on_request = function() return true end, mesh = false, relay = false,
            timeout = 2.5, max_peers = 8, max_message = 65536,
        })
        a:close()
    end)

    it("returns nil, err for addresses that do not parse", function()
        local a = assert(p2pnet.node { host = "127.0.0.1" })
        for _, target in ipairs { "nonsense", "1.2.3.4", "1.2.3.4:99999", "1.2.3.4:",
                                  "[::1]", "::1:80", "300.0.0.1:80", "" } do
            local p, err = a:connect(target)
            assert.is_nil(p, target)
            assert.is_string(err)
        end
        local p, err = a:connect(p2pnet.identity().id)
        assert.is_nil(p)
        assert.equal("unknown peer id", err)
        a:close()
    end)

    it("returns nil, err for addresses nothing can answer from", function()
        local a = assert(p2pnet.node { host = "127.0.0.1" })
        -- unspecified, broadcast, multicast, port 0, and a link-local address
        -- without the interface it is on (its zone)
        for _, target in ipairs { "0.0.0.0:7000", "255.255.255.255:7000", "224.0.0.1:7000",
                                  "[::]:7000", "[ff02::1]:7000",
                                  "127.0.0.1:0", "[fe80::1]:7000" } do
            local p, err = a:connect(target)
            assert.is_nil(p, target)
            assert.equal("bad address '" .. target .. "'", err)
            p, err = a:connect(p2pnet.identity().id, { via = target })
            assert.is_nil(p, target)
            assert.equal("bad address '" .. target .. "'", err)
        end
        assert.equal(0, #a:peers())
        a:close()
    end)

    it("raises for bad connect arguments", function()
        local a = assert(p2pnet.node { host = "127.0.0.1" })
        S.raises(a.connect, a, {})
        local err = S.raises(a.connect, a, "127.0.0.1:9", { id = "abc" })
        assert.is_truthy(err:find("'id'", 1, true), err)
        err = S.raises(a.connect, a, "127.0.0.1:9", { via = 5 })
        assert.is_truthy(err:find("'via'", 1, true), err)
        err = S.raises(a.connect, a, "127.0.0.1:9", { bogus = 1 })
        assert.is_truthy(err:find("bogus", 1, true), err)
        a:close()
    end)

    it("raises when a message type is out of range, naming the function", function()
        local a = assert(p2pnet.node { host = "127.0.0.1" })
        local b = assert(p2pnet.node { host = "127.0.0.1" })
        local p = assert(a:connect(b:address()))
        assert.equal("connecting", p.state)
        for _, t in ipairs { -1, 65536, 1.5, "1", true } do
            local err = S.raises(p.send, p, t, "x")
            assert.is_truthy(err:find("send", 1, true), err)
            assert.is_truthy(err:find("type", 1, true), err)
            err = S.raises(p.send_unreliable, p, t, "x")
            assert.is_truthy(err:find("send_unreliable", 1, true), err)
        end
        S.raises(p.send, p, 1, {})
        S.raises(p.send, p, 1, "x", "not a function")
        -- not connected yet: a runtime failure, not an error
        local ok, err = p:send(1, "x")
        assert.is_nil(ok)
        assert.is_string(err)
        a:close()
        b:close()
    end)

    it("raises for bad handler registrations and poll timeouts", function()
        local a = assert(p2pnet.node { host = "127.0.0.1" })
        S.raises(a.on, a, "joined", function() end)
        S.raises(a.on, a, "join", 5)
        S.raises(a.poll, a, -1)
        S.raises(a.poll, a, "1")
        S.raises(a.peer, a, "abc")
        assert.is_nil(a:peer(p2pnet.identity().id))
        a:on("join", function() end)
        a:on("join", nil)
        a:close()
    end)

    it("has stats counters", function()
        local a = assert(p2pnet.node { host = "127.0.0.1" })
        local st = a:stats()
        for _, k in ipairs { "peers", "packets_sent", "packets_received", "bytes_sent",
                             "bytes_received", "retransmits", "dropped", "callback_errors" } do
            assert.equal(0, st[k], k)
        end
        a:close()
    end)

    it("closes idempotently and raises on use after close", function()
        local a = assert(p2pnet.node { host = "127.0.0.1" })
        local b = assert(p2pnet.node { host = "127.0.0.1" })
        local p = assert(a:connect(b:address()))
        a:close()
        a:close()
        assert.equal("disconnected", p.state)
        local calls = {
            function() a:poll() end, function() a:connect(b:address()) end,
            function() a:address() end, function() a:stats() end, function() a:fd() end,
            function() a:on("join", nil) end, function() a:peers() end,
            function() a:next_timeout() end, function() p:send(1, "x") end,
            function() p:disconnect() end, function() a:spawn(function() end) end,
        }
        for i, fn in ipairs(calls) do
            local err = S.raises(fn)
            assert.is_truthy(err:find("node is closed", 1, true), "call #" .. i .. ": " .. err)
        end
        b:close()
    end)

    it("frees the socket when collected", function()
        local port
        do
            local a = assert(p2pnet.node { host = "127.0.0.1" })
            port = port_of(a)
        end
        collectgarbage()
        collectgarbage()
        local b = assert(p2pnet.node { host = "127.0.0.1", port = port })
        b:close()
    end)

    if _VERSION == "Lua 5.4" then
        it("closes a to-be-closed variable", function()
            local chunk = assert(load([[
                local p2pnet = ...
                local port
                do
                    local a <close> = assert(p2pnet.node { host = "127.0.0.1" })
                    port = a:address():match(":(%d+)$")
                end
                return tonumber(port)
            ]]))
            local port = chunk(p2pnet)
            local b = assert(p2pnet.node { host = "127.0.0.1", port = port })
            b:close()
        end)
    end

    it("returns a message id from broadcast, even with no members yet", function()
        local a = assert(p2pnet.node { host = "127.0.0.1" })
        local id = assert(a:broadcast(1, "x"))
        assert.is_truthy(id:match("^" .. a.id:sub(1, 16) .. "%-%x+$"), id)
        local id2 = assert(a:broadcast(1, "y"))
        assert.are_not.equal(id, id2)
        S.raises(a.broadcast, a, 70000, "x")
        S.raises(a.broadcast, a, 1, {})
        a:close()
    end)
end)
