-- Finds and loads p2pnet for the game: netload.load() -> p2pnet | nil, err
--
-- LÖVE runs LuaJIT (the Lua 5.1 ABI), so the C module has to be the LuaJIT build
-- (`make BUILD=build-luajit LUA_PC=luajit module`); a module built for Lua 5.4 does not load.
-- `require` tries, in this order (LÖVE puts its own loaders before package.path):
--   1. LÖVE's loaders: p2pnet/ inside the game (Lua files; the C module too when the game is
--      a directory, never from inside a .love zip) and p2pnet/core.so in the save directory;
--   2. the source tree this example sits in: <repo>/lua for the Lua files and
--      <repo>/<P2PNET_LOVE_BUILD, default build-luajit> for p2pnet/core.so;
--   3. LUA_PATH / LUA_CPATH, and the default paths, as for any Lua program;
--   4. beside the game directory, the .love file or the fused executable:
--      <dir>/p2pnet/core.so;
--   5. p2pnet/core.so packed inside the .love: copied out to the save directory first
--      (M.extract), since LÖVE cannot load a C module from inside an archive.
-- See docs/LOVE.md for how a game ships it.
-- luacheck: globals love
local M = {}

local function exists(path)
    local f = io.open(path, "rb")
    if f then
        f:close()
    end
    return f ~= nil
end

function M.paths()
    local fs = love.filesystem
    local build = os.getenv("P2PNET_LOVE_BUILD") or "build-luajit"
    local root = fs.getSource() .. "/../.."
    local path, cpath = package.path, package.cpath
    if exists(root .. "/lua/p2pnet/init.lua") then
        path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. path
        if exists(root .. "/" .. build .. "/p2pnet/core.so") then
            cpath = root .. "/" .. build .. "/?.so;" .. cpath
        end
    end
    local base = fs.getSourceBaseDirectory()
    if base and base ~= "" then
        cpath = cpath .. ";" .. base .. "/?.so;" .. base .. "/?.dll"
    end
    package.path, package.cpath = path, cpath
end

-- A game shipped as one .love (or fused) file may carry p2pnet/core.so inside it, where no
-- dynamic loader can reach it. This copies it out to the save directory, under a name made
-- from its contents (so a new build of the game never loads an old copy), and puts that on
-- package.cpath. Returns true when there was one to copy.
function M.extract()
    local fs = love.filesystem
    local info = fs.getInfo("p2pnet/core.so", "file")
    if not info then
        return false
    end
    local data = fs.read("p2pnet/core.so")
    if not data then
        return false
    end
    local hash = love.data.encode("string", "hex", love.data.hash("md5", data))
    local dir = "native/" .. hash .. "/p2pnet"
    if not fs.getInfo(dir .. "/core.so", "file") then
        if not (fs.createDirectory(dir) and fs.write(dir .. "/core.so", data)) then
            return false
        end
    end
    package.cpath = fs.getSaveDirectory() .. "/native/" .. hash .. "/?.so;" .. package.cpath
    return true
end

function M.load()
    M.paths()
    local ok, mod = pcall(require, "p2pnet")
    if not ok and M.extract() then
        -- Lua 5.1's require leaves a failed module marked as loading: clear it to retry
        package.loaded["p2pnet"], package.loaded["p2pnet.core"] = nil, nil
        ok, mod = pcall(require, "p2pnet")
    end
    if ok then
        return mod
    end
    return nil, "cannot load p2pnet: " .. tostring(mod) .. "\n\n" ..
        "LÖVE needs the LuaJIT build of the C module: run\n" ..
        "  make BUILD=build-luajit LUA_PC=luajit module\n" ..
        "in the p2pnet source tree, or put p2pnet/core.so (LuaJIT build) beside the game or\n" ..
        "in its save directory (docs/LOVE.md)."
end

return M
