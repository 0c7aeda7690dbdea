-- Loaded by busted (see .busted) before the specs: makes `require "p2pnet"` find the
-- in-tree sources. lua/ always comes first. The C module comes from LUA_CPATH when it is
-- set (tests/run-all.sh points it at build/, build-asan/, ...), else from ./build/, ahead of
-- any installed copy.
package.path = "./lua/?.lua;./lua/?/init.lua;./?.lua;" .. package.path
if not os.getenv("LUA_CPATH") then
    package.cpath = "./build/?.so;" .. package.cpath
end
