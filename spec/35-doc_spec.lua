-- The ldoc reference: `make doc` generates it from the documentation comments (config.ld:
-- csrc/lua/core.luadoc for the C binding, lua/p2pnet/init.lua and transfer.lua for the Lua
-- layer), and tests/check-doc.lua finds in it every function, field, option and event that
-- the tables of the contract (shared/api.md) and of docs/API.md name. The check is shown to
-- fail when a name is missing from the reference or added to the API.
local I = require "spec.interpreters"
local S = require "spec.support"

local q = I.quote

-- The contract: shared/api.md beside the worktree (as tests/run-all.sh finds the vectors).
local function api_md()
    local path = I.root() .. "/../shared/api.md"
    local f = io.open(path)
    if f then f:close() return path end
    return "/work/shared/api.md"
end

local function check(doc_dir, ...)
    local files = {}
    for i, f in ipairs { ... } do files[i] = q(f) end
    return I.run(("cd %s && lua5.4 tests/check-doc.lua %s %s"):format(q(I.root()), q(doc_dir),
        table.concat(files, " ")))
end

describe("make doc", function()
    local dir, doc

    setup(function()
        dir = S.tmpdir()
        doc = dir .. "/doc"
    end)

    teardown(function()
        S.rmdir(dir)
    end)

    it("generates the reference with ldoc", function()
        local ok, out = I.run(("cd %s && make -s doc DOC_DIR=%s"):format(q(I.root()), q(doc)))
        assert(ok, "make doc failed:\n" .. out)
        assert.matches("output written to", out, 1, true)
        assert.is_nil(out:match("[Ww]arning"), out)
        assert.is_nil(out:match("cannot be parsed"), out)
        assert.is_true(S.read(doc .. "/index.html") ~= "")
        -- the page of the module p2pnet: index.html, unless other modules of the package
        -- (p2pnet.luv, ...) have ldoc comments too; then each module has a page
        local f = io.open(doc .. "/modules/p2pnet.html")
        local html = f and f:read("*a") or S.read(doc .. "/index.html")
        if f then f:close() end
        -- the three sources are merged into one module page
        for _, name in ipairs { "Node:connect", "Node:spawn", "Peer:send_file", "Transfer:await",
                                "Identity.id", "NodeOptions", "join", "sleep" } do
            assert.matches('<a name = "' .. name:gsub("%p", "%%%0") .. '"></a>', html)
        end
    end)

    it("names every function, field, option and event of shared/api.md", function()
        local ok, out = check(doc, api_md())
        assert(ok, out)
        local n = tonumber(out:match("documents all (%d+) names"))
        -- identities, options, node methods, events, peer fields and methods, coroutines, sim
        assert.is_true(n ~= nil and n >= 55, out)
    end)

    it("names every function and field the tables of docs/API.md add", function()
        local ok, out = check(doc, I.root() .. "/docs/API.md")
        assert(ok, out)
    end)

    it("fails when the API names something the reference lacks", function()
        local text = S.read(api_md())
        local extra = dir .. "/api-extra.md"
        -- one more row in the Peers table, one more node option, one more event
        text = text:gsub("(| `peer:disconnect%(%)` |[^\n]*\n)",
            "%1| `peer:frobnicate(x)` | new |\n")
        text = text:gsub("(| `max_message` |[^\n]*\n)", "%1| `frobnication` | `1` | new |\n")
        text = text:gsub("(| `\"error\"` |[^\n]*\n)", "%1| `\"frobnicated\"` | `fn()` | new |\n")
        S.write(extra, text)
        local ok, out = check(doc, extra)
        assert.is_false(ok, out)
        assert.matches("3 of %d+ names have no entry", out)
        assert.matches("Peer:frobnicate (peer:frobnicate(x))", out, 1, true)
        assert.matches("node option frobnication", out, 1, true)
        assert.matches("event frobnicated", out, 1, true)
    end)

    it("fails when the reference lacks an item of the API", function()
        local cut = dir .. "/cut"
        assert(os.execute(("cp -R %s %s"):format(q(doc), q(cut))))
        local page = cut .. "/modules/p2pnet.html"
        if not io.open(page) then page = cut .. "/index.html" end
        local html = S.read(page)
        local n1, n2, n3
        html, n1 = html:gsub('<a name = "Node:fd"></a>', "")
        html, n2 = html:gsub('<a name = "Peer%.rtt"></a>', "")
        html, n3 = html:gsub('<span class="parameter">via</span>', "")
        assert.same({ 1, 1, 1 }, { n1, n2, n3 })
        S.write(page, html)
        local ok, out = check(cut, api_md())
        assert.is_false(ok, out)
        assert.matches("Node:fd (node:fd())", out, 1, true)
        assert.matches("Peer.rtt (peer.rtt)", out, 1, true)
        assert.matches("Node:connect option opts.via", out, 1, true)
    end)
end)
