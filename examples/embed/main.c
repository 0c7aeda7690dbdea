/*
 * examples/embed/main.c - a program that hosts its own Lua, the way a game engine does, with
 * p2pnet linked in statically (libp2pnet-lua.a: the binding and the core; `make static`).
 *
 * It registers the C module `p2pnet.core` without any shared object, points package.path at
 * the pure-Lua layer (the .lua files of lua/p2pnet/, which the engine ships as files or embeds), empties
 * package.cpath so that nothing can come from a .so, then runs a script's frames: the script
 * returns a table with `frame(dt)`, which the engine calls once per frame until it returns
 * true. The script polls its nodes with node:poll(0) in each frame: p2pnet never blocks the
 * frame and starts no thread.
 *
 *   embed [--preload] LUA_DIR SCRIPT [FRAME_MS]
 *
 * --preload registers the module in package.preload (works with every Lua, 5.1 and LuaJIT
 * included); the default is luaL_requiref (Lua 5.2 and later), which loads it at once into
 * package.loaded. Exit status: 0 when the script's frame returned true, 1 on an error or
 * when it did not finish within MAX_FRAMES frames.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

/* The binding's entry point, in libp2pnet-lua.a. */
int luaopen_p2pnet_core(lua_State *L);

/* About 20 s of frames at the default frame time. */
#define MAX_FRAMES 10000
#define DEFAULT_FRAME_MS 2

/* Message handler for lua_pcall: the error with a traceback. */
static int traceback(lua_State *L)
{
    lua_getglobal(L, "debug");
    lua_getfield(L, -1, "traceback");
    lua_pushvalue(L, 1);
    lua_pushinteger(L, 2);
    lua_call(L, 2, 1);
    return 1;
}

/* Calls the function under nargs arguments with the traceback handler; prints the error. */
static int call(lua_State *L, int nargs, int nresults)
{
    int base = lua_gettop(L) - nargs;
    int rc;
    lua_pushcfunction(L, traceback);
    lua_insert(L, base);
    rc = lua_pcall(L, nargs, nresults, base);
    lua_remove(L, base);
    if (rc != 0) {
        fprintf(stderr, "embed: %s\n", lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    return rc;
}

/* Way 1, every Lua: package.preload["p2pnet.core"], which require calls when asked. */
static void register_preload(lua_State *L)
{
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, luaopen_p2pnet_core);
    lua_setfield(L, -2, "p2pnet.core");
    lua_pop(L, 2);
}

/* Way 2, Lua 5.2 and later: luaL_requiref opens it now and stores it in package.loaded. */
static int register_requiref(lua_State *L)
{
#if LUA_VERSION_NUM >= 502
    luaL_requiref(L, "p2pnet.core", luaopen_p2pnet_core, 0);
    lua_pop(L, 1);
    return 0;
#else
    (void)L;
    fprintf(stderr, "embed: luaL_requiref needs Lua 5.2 or later; use --preload\n");
    return -1;
#endif
}

/* package.path = LUA_DIR/?.lua;LUA_DIR/?/init.lua, package.cpath = "". */
static void set_paths(lua_State *L, const char *dir)
{
    lua_getglobal(L, "package");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua", dir, dir);
    lua_setfield(L, -2, "path");
    lua_pushliteral(L, "");
    lua_setfield(L, -2, "cpath");
    lua_pop(L, 1);
}

static void sleep_ms(long ms)
{
    struct timespec ts;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    nanosleep(&ts, NULL);
}

int main(int argc, char **argv)
{
    int preload = 0, argi = 1, frame, status = 1;
    long frame_ms = DEFAULT_FRAME_MS;
    lua_State *L;
    if (argi < argc && strcmp(argv[argi], "--preload") == 0) {
        preload = 1;
        argi++;
    }
    if (argc - argi < 2 || argc - argi > 3) {
        fprintf(stderr, "usage: %s [--preload] LUA_DIR SCRIPT [FRAME_MS]\n", argv[0]);
        return 2;
    }
    if (argc - argi == 3) frame_ms = strtol(argv[argi + 2], NULL, 10);
    if (frame_ms < 0 || frame_ms > 1000) frame_ms = DEFAULT_FRAME_MS;

    L = luaL_newstate();
    if (L == NULL) return 1;
    luaL_openlibs(L);
    if (preload)
        register_preload(L);
    else if (register_requiref(L) != 0)
        goto out;
    set_paths(L, argv[argi]);

    /* the script returns its game table */
    if (luaL_loadfile(L, argv[argi + 1]) != 0) {
        fprintf(stderr, "embed: %s\n", lua_tostring(L, -1));
        goto out;
    }
    lua_pushstring(L, preload ? "package.preload" : "luaL_requiref");
    if (call(L, 1, 1) != 0) goto out;
    if (!lua_istable(L, -1)) {
        fprintf(stderr, "embed: %s must return a table with frame(dt)\n", argv[argi + 1]);
        goto out;
    }
    /* the frame loop: one call per frame, then the rest of the frame's time asleep */
    for (frame = 0; frame < MAX_FRAMES; frame++) {
        int done;
        lua_getfield(L, -1, "frame");
        lua_pushnumber(L, (lua_Number)frame_ms / 1000);
        if (call(L, 1, 1) != 0) goto out;
        done = lua_toboolean(L, -1);
        lua_pop(L, 1);
        if (done) {
            status = 0;
            break;
        }
        sleep_ms(frame_ms);
    }
    if (status != 0) fprintf(stderr, "embed: the script did not finish in %d frames\n", MAX_FRAMES);
out:
    lua_close(L); /* collects the nodes: each closes its socket */
    return status;
}
