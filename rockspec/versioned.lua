-- Writes the rockspec of a release, p2pnet-<version>-1.rockspec, from the development one,
-- rockspec/p2pnet-scm-1.rockspec, to standard output. Only two things differ: `version`, and
-- `source`, which names the release's git tag instead of the branch head. Everything else
-- (modules, sources, copy_directories, dependencies) is the scm rockspec's, so the two cannot
-- drift: `make rockspec` writes the file and tests/check-rockspec.sh fails when the committed
-- one is not what this script makes.
--
--   lua5.4 rockspec/versioned.lua 0.1.0 < rockspec/p2pnet-scm-1.rockspec
local version = assert(arg[1] and arg[1]:match("^%d+%.%d+%.%d+$") and arg[1],
    "usage: versioned.lua X.Y.Z < p2pnet-scm-1.rockspec")
local text = io.read("*a")

local n
text, n = text:gsub('\nversion = "scm%-1"\n', ('\nversion = "%s-1"\n'):format(version), 1)
assert(n == 1, "no `version = \"scm-1\"` line in the scm rockspec")

-- The source block: from `source = {` to the first line that is just `}`.
local url
text, n = text:gsub("\nsource = {\n(.-)\n}\n", function(body)
    url = body:match('url = "([^"]+)"')
    return ('\nsource = {\n   url = "%s",\n   tag = "v%s",\n}\n'):format(url, version)
end, 1)
assert(n == 1 and url, "no `source = { url = ... }` block in the scm rockspec")

io.write(text)
