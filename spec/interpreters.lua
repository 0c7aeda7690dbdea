-- The Lua interpreters p2pnet supports (the rockspec says lua >= 5.1, < 5.5), each with the
-- build directory of the C module for its ABI, for the specs that run programs under every
-- one of them (spec/36-examples_spec.lua, spec/38-pcall_yield_spec.lua).
local I = {}

I.list = {
    { lua = "lua5.1", pc = "lua5.1", build = "build-51" },
    { lua = "lua5.2", pc = "lua5.2", build = "build-52" },
    { lua = "lua5.3", pc = "lua5.3", build = "build-53" },
    { lua = "lua5.4", pc = "lua5.4", build = "build" },
    { lua = "luajit", pc = "luajit", build = "build-luajit" }, -- LuaJIT: the 5.1 ABI
}

local P = require "spec.procs"

I.root = P.root
I.quote = P.quote
-- Runs a shell command; returns ok, its output (stdout and stderr together).
I.run = P.run

-- Builds the module for interpreter `it` (make is incremental: cheap when it is up to date).
-- Returns ok, output.
function I.build(it)
    return I.run(("cd %s && make -s -j2 BUILD=%s LUA_PC=%s module"):format(
        I.quote(I.root()), it.build, it.pc))
end

-- The environment prefix that makes `it.lua` find the in-tree p2pnet (lua/ and its build of
-- the C module) ahead of anything installed, and the system's modules (LuaSocket) after it.
function I.env(it)
    local r = I.root()
    return ("env -u LUA_PATH_5_2 -u LUA_CPATH_5_2 -u LUA_PATH_5_3 -u LUA_CPATH_5_3 "
        .. "-u LUA_PATH_5_4 -u LUA_CPATH_5_4 -u LUA_INIT -u LUA_INIT_5_2 -u LUA_INIT_5_3 "
        .. "-u LUA_INIT_5_4 LUA_PATH=%s LUA_CPATH=%s"):format(
        I.quote(r .. "/lua/?.lua;" .. r .. "/lua/?/init.lua;;"),
        I.quote(r .. "/" .. it.build .. "/?.so;;"))
end

return I
