/*
 * compat.h - what differs between Lua 5.1, LuaJIT 2.1, 5.2, 5.3 and 5.4, behind one name
 * each, so that the rest of the binding is written once for all of them.
 */
#ifndef LP2PNET_COMPAT_H
#define LP2PNET_COMPAT_H

#include <stdint.h>

#include "lua.h"
#include "lauxlib.h"

#ifndef LUA_OK
#define LUA_OK 0
#endif

#if LUA_VERSION_NUM < 502
#define lp_rawlen(L, i) lua_objlen((L), (i))
#define lp_getuservalue(L, i) lua_getfenv((L), (i))
#define lp_setuservalue(L, i) lua_setfenv((L), (i))
#else
#define lp_rawlen(L, i) lua_rawlen((L), (i))
#define lp_getuservalue(L, i) ((void)lua_getuservalue((L), (i)))
#define lp_setuservalue(L, i) ((void)lua_setuservalue((L), (i)))
#endif

/* lua_absindex, which 5.1 lacks. */
static inline int lp_absindex(lua_State *L, int idx)
{
    return (idx > 0 || idx <= LUA_REGISTRYINDEX) ? idx : lua_gettop(L) + idx + 1;
}

/* luaL_setfuncs, which 5.1 lacks. */
static inline void lp_setfuncs(lua_State *L, const luaL_Reg *l, int nup)
{
    int i;
    for (; l->name != NULL; l++) {
        for (i = 0; i < nup; i++) lua_pushvalue(L, -nup);
        lua_pushcclosure(L, l->func, nup);
        lua_setfield(L, -(nup + 2), l->name);
    }
    lua_pop(L, nup);
}

/* luaL_testudata, which 5.1 lacks. */
static inline void *lp_testudata(lua_State *L, int idx, const char *tname)
{
    void *p = lua_touserdata(L, idx);
    int same;
    if (p == NULL || !lua_getmetatable(L, idx)) return NULL;
    luaL_getmetatable(L, tname);
    same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return same ? p : NULL;
}

/* Pushes x as an integer when it fits lua_Integer exactly (5.3+), else as a number. */
static inline void lp_pushu64(lua_State *L, uint64_t x)
{
#if LUA_VERSION_NUM >= 503
    if (x <= (uint64_t)LUA_MAXINTEGER) {
        lua_pushinteger(L, (lua_Integer)x);
        return;
    }
#endif
    lua_pushnumber(L, (lua_Number)x);
}

/* How many parameters the Lua function at idx declares, and whether it takes `...`: 1 and
 * *nparams, *vararg, or 0 when this Lua cannot say (5.1 without debug.getinfo's "u"). */
static inline int lp_params(lua_State *L, int idx, int *nparams, int *vararg)
{
#if LUA_VERSION_NUM >= 502
    lua_Debug ar;
    lua_pushvalue(L, idx);
    if (!lua_getinfo(L, ">u", &ar)) return 0;
    *nparams = ar.nparams;
    *vararg = ar.isvararg;
    return 1;
#else
    /* LuaJIT's debug.getinfo knows nparams and isvararg; its C lua_Debug does not */
    int ok = 0;
    idx = idx < 0 && idx > LUA_REGISTRYINDEX ? lua_gettop(L) + idx + 1 : idx;
    lua_getglobal(L, "debug");
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "getinfo");
        if (lua_isfunction(L, -1)) {
            lua_pushvalue(L, idx);
            lua_pushliteral(L, "u");
            if (lua_pcall(L, 2, 1, 0) == 0 && lua_istable(L, -1)) {
                lua_getfield(L, -1, "nparams");
                lua_getfield(L, -2, "isvararg");
                if (lua_type(L, -2) == LUA_TNUMBER) {
                    *nparams = (int)lua_tointeger(L, -2);
                    *vararg = lua_toboolean(L, -1);
                    ok = 1;
                }
                lua_pop(L, 2);
            }
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return ok;
#endif
}

/* Pushes msg followed by a traceback of L from `level` (luaL_traceback where it exists). */
void lp_traceback(lua_State *L, const char *msg, int level);

#endif
