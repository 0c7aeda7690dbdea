-- Identities: ids, key files (created 0600, refused when unsafe or malformed, stable).
local p2pnet = require "p2pnet"
local S = require "spec.support"

describe("p2pnet.identity", function()
    local dir
    before_each(function() dir = S.tmpdir() end)
    after_each(function() S.rmdir(dir) end)

    it("makes a fresh ephemeral identity with a 64-hex id", function()
        local a, b = p2pnet.identity(), p2pnet.identity()
        assert.is_string(a.id)
        assert.is_truthy(a.id:match("^[0-9a-f]+$"))
        assert.equal(64, #a.id)
        assert.are_not.equal(a.id, b.id)
        assert.is_truthy(tostring(a):find(a.id, 1, true))
    end)

    it("exposes no secret", function()
        local a = p2pnet.identity()
        for _, k in ipairs { "secret", "seed", "sk", "ed_sk", "x_sk", "key", "private" } do
            assert.is_nil(a[k])
        end
    end)

    it("creates a key file with mode 0600 and loads the same id again", function()
        local path = dir .. "/node.key"
        local a = assert(p2pnet.identity(path))
        assert.equal("600", S.mode(path))
        local text = S.read(path)
        assert.equal(84, #text)
        assert.is_truthy(text:match("^p2pnet%-identity%-v1\n[0-9a-f]+\n$"))
        local b = assert(p2pnet.identity(path))
        assert.equal(a.id, b.id)
    end)

    it("refuses a key file readable by group or others", function()
        local path = dir .. "/node.key"
        local a = assert(p2pnet.identity(path))
        os.execute("chmod 0644 '" .. path .. "'")
        local b, err = p2pnet.identity(path)
        assert.is_nil(b)
        assert.is_string(err)
        os.execute("chmod 0640 '" .. path .. "'")
        assert.is_nil((p2pnet.identity(path)))
        os.execute("chmod 0600 '" .. path .. "'")
        assert.equal(a.id, assert(p2pnet.identity(path)).id)
    end)

    it("refuses malformed key files", function()
        local bad = {
            "",
            "p2pnet-identity-v1\n",
            "p2pnet-identity-v1\n" .. ("g"):rep(64) .. "\n",
            "p2pnet-identity-v1\n" .. ("a"):rep(63) .. "\n",
            "p2pnet-identity-v2\n" .. ("a"):rep(64) .. "\n",
            "p2pnet-identity-v1\n" .. ("a"):rep(64),
            "p2pnet-identity-v1\n" .. ("a"):rep(64) .. "\n\n",
        }
        for i, content in ipairs(bad) do
            local path = ("%s/bad%d.key"):format(dir, i)
            S.write(path, content, "0600")
            local id, err = p2pnet.identity(path)
            assert.is_nil(id, "accepted bad key file #" .. i)
            assert.is_string(err)
        end
    end)

    it("returns nil, err for a key file it cannot create", function()
        local id, err = p2pnet.identity(dir .. "/no/such/dir/node.key")
        assert.is_nil(id)
        assert.is_string(err)
    end)

    it("gives a node its id, from an identity or a key file path", function()
        local ident = p2pnet.identity()
        local a = assert(p2pnet.node { host = "127.0.0.1", identity = ident })
        assert.equal(ident.id, a.id)
        a:close()
        local path = dir .. "/node.key"
        local b = assert(p2pnet.node { host = "127.0.0.1", identity = path })
        assert.equal("600", S.mode(path))
        assert.equal(assert(p2pnet.identity(path)).id, b.id)
        b:close()
        os.execute("chmod 0644 '" .. path .. "'")
        local c, err = p2pnet.node { host = "127.0.0.1", identity = path }
        assert.is_nil(c)
        assert.is_string(err)
    end)
end)
