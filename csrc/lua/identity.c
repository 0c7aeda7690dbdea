/*
 * identity.c - p2pnet.Identity: an Ed25519 key pair held in C. Its secret half never
 * reaches Lua and is wiped when the userdata is collected.
 */
#include <stdio.h>
#include <string.h>

#include "binding.h"

static lidentity *check_identity(lua_State *L, int idx)
{
    return (lidentity *)lp_checkudata(L, idx, IDENTITY_MT);
}

/* p2pnet.identity([path]) -> identity | nil, err */
int lp_identity_new(lua_State *L)
{
    const char *path =
        lua_isnoneornil(L, 1) ? NULL : lp_check_string(L, 1, "p2pnet.identity", "path", NULL);
    p2p_identity key;
    char err[LP_ERR_TEXT] = "";
    int rc;
    lidentity *ident;

    if (path == NULL)
        rc = p2p_identity_generate(&key);
    else
        rc = p2p_identity_load(&key, path, err, sizeof err);
    if (rc != 0) {
        p2p_identity_wipe(&key);
        if (err[0] == '\0') snprintf(err, sizeof err, "%s", p2p_strerror(rc));
        return lp_push_fail(L, err);
    }
    ident = (lidentity *)lua_newuserdata(L, sizeof *ident);
    memcpy(&ident->key, &key, sizeof key);
    p2p_identity_wipe(&key);
    p2p_id_to_hex(ident->key.ed_pk, ident->hex);
    luaL_getmetatable(L, IDENTITY_MT);
    lua_setmetatable(L, -2);
    return 1;
}

static int identity_index(lua_State *L)
{
    lidentity *ident = check_identity(L, 1);
    const char *k = lua_tostring(L, 2);
    if (k != NULL && strcmp(k, "id") == 0) {
        lua_pushstring(L, ident->hex);
        return 1;
    }
    return 0;
}

static int identity_tostring(lua_State *L)
{
    lidentity *ident = check_identity(L, 1);
    lua_pushfstring(L, "p2pnet.Identity(%s)", ident->hex);
    return 1;
}

static int identity_gc(lua_State *L)
{
    lidentity *ident = check_identity(L, 1);
    p2p_identity_wipe(&ident->key);
    return 0;
}

void lp_identity_class(lua_State *L)
{
    static const luaL_Reg meta[] = {
        {"__tostring", identity_tostring}, {"__gc", identity_gc}, {NULL, NULL}};
    static const luaL_Reg none[] = {{NULL, NULL}};
    lp_class(L, IDENTITY_MT, none, meta, identity_index);
}
