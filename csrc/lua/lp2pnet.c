/*
 * lp2pnet.c - the Lua module `p2pnet.core`: its function table and its classes. The
 * userdata live in their own files (identity.c, node.c, peer.c, sim.c), the way back from
 * the core in events.c; binding.h says which is which.
 *
 * Besides the public functions (identity, node, sim), the module offers the pure-Lua layer
 * (lua/p2pnet/init.lua) what it needs on purpose, so that nothing private shows on the
 * public objects: state(obj) (the layer's table kept with a node or a sim, where it leaves
 * its hooks), extend(class, methods) (adds methods, never replaces one), hooks(t) (called
 * with every new node and sim), and a few read-outs (busy, sim_of, sim_nodes, sim_busy,
 * sim_run_until, sim_next_time).
 *
 * Compiles against Lua 5.1, LuaJIT 2.1, 5.2, 5.3 and 5.4 (compat.h).
 */
#include "binding.h"

/* Registry key of the Lua layer's module-wide hooks (core.hooks). */
#define HOOKS_KEY "p2pnet.hooks"

void lp_created(lua_State *L, int idx, const char *kind)
{
    idx = lp_absindex(L, idx);
    lua_getfield(L, LUA_REGISTRYINDEX, HOOKS_KEY);
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, kind);
        if (lua_isfunction(L, -1)) {
            lua_pushvalue(L, idx);
            lua_call(L, 1, 0);
        } else {
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
}

/* core.hooks(t): t.node(node) and t.sim(sim) are called with every new node and sim. Set
 * once, by the Lua layer: a second table would take task support from the nodes made after
 * it, so it is refused like core.extend refuses to replace a method. */
static int l_hooks(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_getfield(L, LUA_REGISTRYINDEX, HOOKS_KEY);
    if (!lua_isnil(L, -1)) return luaL_error(L, "core.hooks: the hooks are set already");
    lua_pop(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, HOOKS_KEY);
    return 0;
}

/* core.state(node_or_sim) -> the Lua layer's table for that object */
static int l_state(lua_State *L)
{
    if (lp_testudata(L, 1, NODE_MT) == NULL && lp_testudata(L, 1, SIM_MT) == NULL)
        return lp_arg_error(L, "core.state", "obj", "must be a node or a sim");
    lp_push_layer(L, 1);
    return 1;
}

/* core.extend(class, methods): adds the functions of `methods` to class "Node", "Peer" or
 * "Sim"; raises rather than replace a method the class has. */
static int l_extend(lua_State *L)
{
    static const char *const names[] = {"Node", "Peer", "Sim", NULL};
    static const char *const mts[] = {NODE_MT, PEER_MT, SIM_MT};
    int which = luaL_checkoption(L, 1, NULL, names);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    lp_push_methods(L, mts[which]);
    lua_pushnil(L);
    while (lua_next(L, 2) != 0) {
        if (lua_type(L, -2) != LUA_TSTRING || !lua_isfunction(L, -1))
            return luaL_error(L, "core.extend: methods must be functions named by strings");
        lua_pushvalue(L, -2);
        lua_rawget(L, 3);
        if (!lua_isnil(L, -1))
            return luaL_error(L, "core.extend: %s already has '%s'", names[which],
                              lua_tostring(L, -3));
        lua_pop(L, 1);
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, 3);
    }
    return 0;
}

int luaopen_p2pnet_core(lua_State *L)
{
    static const luaL_Reg funcs[] = {{"identity", lp_identity_new},
                                     {"node", lp_node_open},
                                     {"sim", lp_sim_new},
                                     {"hooks", l_hooks},
                                     {"state", l_state},
                                     {"extend", l_extend},
                                     {"busy", lp_node_busy},
                                     {"tasks", lp_node_tasks},
                                     {"sim_of", lp_node_sim},
                                     {"sim_nodes", lp_sim_nodes},
                                     {"sim_busy", lp_sim_busy},
                                     {"sim_run_until", lp_sim_run_until},
                                     {"sim_next_time", lp_sim_next_time},
                                     {NULL, NULL}};
    if (p2p_init() != 0) return luaL_error(L, "p2pnet: libsodium failed to initialise");
    lp_identity_class(L);
    lp_node_class(L);
    lp_peer_class(L);
    lp_sim_class(L);
    /* A fresh module has no hooks yet, as it has fresh method tables: a Lua layer loaded
     * again (busted reloads modules for every spec file) sets its own once more. */
    lua_pushnil(L);
    lua_setfield(L, LUA_REGISTRYINDEX, HOOKS_KEY);
    lua_newtable(L);
    lp_setfuncs(L, funcs, 0);
    lp_transfer_funcs(L); /* streaming transfers */
    lp_waker_funcs(L);    /* core.waker, core.kick: p2pnet.ngx */
    lua_pushinteger(L, P2P_MAX_DATAGRAM);
    lua_setfield(L, -2, "MAX_DATAGRAM");
    lua_pushinteger(L, P2P_MAX_DATAGRAM_SEQ); /* lanes */
    lua_setfield(L, -2, "MAX_DATAGRAM_SEQUENCED");
    lua_pushinteger(L, P2P_TRANSFER_LANE); /* the lane transfers run on by default */
    lua_setfield(L, -2, "TRANSFER_LANE");
    lua_pushliteral(L, P2P_VERSION_STRING);
    lua_setfield(L, -2, "version");
    return 1;
}
