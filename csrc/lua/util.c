/*
 * util.c - small helpers shared by the files of the binding: argument checks, error texts,
 * pushing ids and addresses, the compat functions too large for compat.h.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "binding.h"

/* Array slot of a class's metatable that holds the address of its name (lp_checkudata). */
#define MT_TAG 1

const char lp_identity_mt[] = "p2pnet.Identity";
const char lp_node_mt[] = "p2pnet.Node";
const char lp_peer_mt[] = "p2pnet.Peer";
const char lp_sim_mt[] = "p2pnet.Sim";

void *lp_checkudata(lua_State *L, int idx, const char *tname)
{
    void *p = lua_touserdata(L, idx);
    /* The class's metatable holds its name's address at MT_TAG (lp_class): one array read
     * instead of a registry lookup, on every method call (peer:send, node:now). */
    if (p != NULL && lua_getmetatable(L, idx)) {
        int same;
        lua_rawgeti(L, -1, MT_TAG);
        same = lua_touserdata(L, -1) == (void *)tname;
        lua_pop(L, 2);
        if (same) return p;
    }
    return luaL_checkudata(L, idx, tname); /* raises the usual message */
}

void lp_traceback(lua_State *L, const char *msg, int level)
{
#if LUA_VERSION_NUM >= 502 || defined(LUAJIT_VERSION_NUM) || defined(LUA_JITLIBNAME)
    luaL_traceback(L, L, msg, level);
#else
    lua_getglobal(L, "debug");
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "traceback");
        lua_remove(L, -2);
        if (lua_isfunction(L, -1)) {
            lua_pushstring(L, msg);
            lua_pushinteger(L, level + 1);
            if (lua_pcall(L, 2, 1, 0) == 0 && lua_type(L, -1) == LUA_TSTRING) return;
        }
    }
    lua_pop(L, 1);
    lua_pushstring(L, msg);
#endif
}

const char *lp_describe(lua_State *L, int idx)
{
    idx = lp_absindex(L, idx);
    switch (lua_type(L, idx)) {
    case LUA_TSTRING:
    case LUA_TNUMBER:
        lua_pushvalue(L, idx);
        lua_tostring(L, -1);
        break;
    case LUA_TNIL: lua_pushliteral(L, "nil"); break;
    case LUA_TBOOLEAN: lua_pushstring(L, lua_toboolean(L, idx) ? "true" : "false"); break;
    default:
        if (luaL_callmeta(L, idx, "__tostring") && lua_type(L, -1) == LUA_TSTRING) break;
        if (lua_gettop(L) > idx) lua_settop(L, idx);
        lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, idx));
        break;
    }
    return lua_tostring(L, -1);
}

int lp_tointeger(lua_State *L, int idx, double lo, double hi, int64_t *out)
{
    double d;
    if (lua_type(L, idx) != LUA_TNUMBER) return 0;
#if LUA_VERSION_NUM >= 503
    if (lua_isinteger(L, idx)) {
        lua_Integer i = lua_tointeger(L, idx);
        if ((double)i < lo || (double)i > hi) return 0;
        *out = (int64_t)i;
        return 1;
    }
#endif
    d = (double)lua_tonumber(L, idx);
    if (d != d || d < lo || d > hi || floor(d) != d) return 0;
    *out = (int64_t)d;
    return 1;
}

int lp_arg_error(lua_State *L, const char *fname, const char *arg, const char *what)
{
    return luaL_error(L, "%s: argument '%s' %s", fname, arg, what);
}

const char *lp_check_string(lua_State *L, int idx, const char *fname, const char *arg, size_t *len)
{
    if (lua_type(L, idx) != LUA_TSTRING) lp_arg_error(L, fname, arg, "must be a string");
    return lua_tolstring(L, idx, len);
}

uint16_t lp_check_type(lua_State *L, int idx, const char *fname)
{
    int64_t t;
#if LUA_VERSION_NUM >= 503
    /* the common case, without the range arithmetic in doubles */
    if (lua_isinteger(L, idx)) {
        lua_Integer i = lua_tointeger(L, idx);
        if (i >= 0 && i <= UINT16_MAX) return (uint16_t)i;
    }
#endif
    if (!lp_tointeger(L, idx, 0, UINT16_MAX, &t))
        lp_arg_error(L, fname, "type", "must be an integer 0-65535");
    return (uint16_t)t;
}

int lp_push_fail(lua_State *L, const char *msg)
{
    lua_pushnil(L);
    lua_pushstring(L, msg);
    return 2;
}

const char *lp_error_text(int err)
{
    switch (err) {
    case P2P_ERR_PEER: return "peer is not connected";
    case P2P_ERR_FULL: return "queue full";
    case P2P_ERR_TOO_BIG: return "message too big";
    case P2P_ERR_LIMIT: return "too many peers";
    case P2P_ERR_CLOSED: return "node is closed";
    case P2P_ERR_ADDRESS: return "bad address";
    case P2P_ERR_NOMEM: return "out of memory";
    default: return p2p_strerror(err);
    }
}

int lp_parse_id(lua_State *L, int idx, uint8_t id[P2P_ID_LEN])
{
    size_t len;
    const char *s = lua_type(L, idx) == LUA_TSTRING ? lua_tolstring(L, idx, &len) : NULL;
    return s != NULL && len == LP_HEX_LEN && p2p_id_from_hex(id, s, len) == 0;
}

void lp_push_addr(lua_State *L, const p2p_addr *a)
{
    char buf[LP_ADDR_TEXT];
    if (a->family == P2P_AF_NONE || p2p_addr_format(a, buf, sizeof buf) != 0)
        lua_pushnil(L);
    else
        lua_pushstring(L, buf);
}

void lp_push_ip(lua_State *L, const p2p_addr *a)
{
    char buf[LP_ADDR_TEXT];
    const char *start = buf, *colon;
    if (a->family == P2P_AF_NONE || p2p_addr_format(a, buf, sizeof buf) != 0) {
        lua_pushnil(L);
        return;
    }
    colon = strrchr(buf, ':');
    if (colon == NULL) {
        lua_pushstring(L, buf);
        return;
    }
    if (buf[0] == '[') { /* "[v6]:port" */
        start = buf + 1;
        colon--;
    }
    lua_pushlstring(L, start, (size_t)(colon - start));
}

const char *lp_mapping_name(int mapping)
{
    switch (mapping) {
    case P2P_MAPPING_NONE: return "none";
    case P2P_MAPPING_INDEPENDENT: return "independent";
    case P2P_MAPPING_DEPENDENT: return "dependent";
    default: return "unknown";
    }
}

const char *lp_path_kind_name(int path)
{
    switch (path) {
    case P2P_PATH_RELAYED: return "relayed";
    case P2P_PATH_TCP: return "tcp";
    case P2P_PATH_WEBSOCKET: return "websocket";
    default: return "direct";
    }
}

void lp_push_id(lua_State *L, const uint8_t id[P2P_ID_LEN])
{
    char hex[LP_HEX_SIZE];
    p2p_id_to_hex(id, hex);
    lua_pushlstring(L, hex, LP_HEX_LEN);
}

void lp_push_counters(lua_State *L, const void *st, const lp_counter *counters)
{
    const lp_counter *c;
    int count = 0;
    for (c = counters; c->name != NULL; c++) count++;
    lua_createtable(L, 0, count + 4); /* + the counters the caller and the Lua layer add */
    for (c = counters; c->name != NULL; c++) {
        uint64_t v;
        memcpy(&v, (const char *)st + c->offset, sizeof v);
        lp_set_u64(L, c->name, v);
    }
}

void lp_set_u64(lua_State *L, const char *k, uint64_t v)
{
    lp_pushu64(L, v);
    lua_setfield(L, -2, k);
}

void lp_uv_field(lua_State *L, int idx, const char *name)
{
    lp_getuservalue(L, idx);
    lua_getfield(L, -1, name);
    lua_remove(L, -2);
}

void lp_push_layer(lua_State *L, int idx)
{
    idx = lp_absindex(L, idx);
    lp_getuservalue(L, idx);
    lua_getfield(L, -1, UV_LAYER);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, UV_LAYER);
    }
    lua_remove(L, -2);
}

/* Registry key of a class's methods table: "<metatable name>.methods". */
static void push_methods_key(lua_State *L, const char *mt)
{
    lua_pushfstring(L, "%s.methods", mt);
}

void lp_class(lua_State *L, const char *name, const luaL_Reg *methods, const luaL_Reg *meta,
              lua_CFunction index)
{
    luaL_newmetatable(L, name);
    lua_pushlightuserdata(L, (void *)name);
    lua_pushvalue(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
    lua_pushlightuserdata(L, (void *)name);
    lua_rawseti(L, -2, MT_TAG);
    lp_setfuncs(L, meta, 0);
    lua_newtable(L);
    lp_setfuncs(L, methods, 0);
    push_methods_key(L, name);
    lua_pushvalue(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
    if (index != NULL) lua_pushcclosure(L, index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushliteral(L, "p2pnet");
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
}

void lp_push_methods(lua_State *L, const char *mt)
{
    push_methods_key(L, mt);
    lua_rawget(L, LUA_REGISTRYINDEX);
}
