/*
 * lp2pnet.c - the Lua binding `p2pnet.core`.
 *
 * Userdata: p2pnet.Identity, p2pnet.Node, p2pnet.Peer, p2pnet.Sim. A Node owns one p2p_host
 * and either a UDP driver or a reference to its Sim. Every Lua call into the core is followed
 * by a flush of the driver and a drain of the host's events into a Lua-side queue; the queue
 * is dispatched to handlers only inside node:poll(), sim:run() and node:close(). So handlers
 * never run while a core function is on the C stack, and a Lua error can never longjmp across
 * core frames. Finalizers, which Lua may run at any allocation, are the other way in: see
 * "re-entrancy" below for what a node does with calls that arrive while it drains.
 *
 * Each Node has a uservalue table holding its handlers, its peer cache (handle -> Peer, so a
 * peer is always the same Lua object), its event queue and, for simulated nodes, its Sim. Each
 * Peer has a uservalue table holding its Node (which keeps the node alive while the peer is
 * reachable) and the callbacks of its messages awaiting a reply, keyed by sequence number.
 *
 * Compiles against Lua 5.1, LuaJIT 2.1, 5.2, 5.3 and 5.4.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"

#include "p2pnet.h"
#include "driver/sim.h"
#include "driver/udp.h"

#define IDENTITY_MT "p2pnet.Identity"
#define NODE_MT "p2pnet.Node"
#define PEER_MT "p2pnet.Peer"
#define SIM_MT "p2pnet.Sim"

/* node:next_timeout() when no timer is armed: an hour, so that callers can always do
 * arithmetic on the result. */
#define NO_TIMEOUT_SECONDS 3600.0
/* Longest wait or run a caller may ask for, in seconds (about 30 years): keeps every
 * seconds-to-microseconds conversion inside uint64_t. */
#define MAX_SECONDS 1e9

/* ---- compatibility: Lua 5.1 / LuaJIT 2.1 / 5.2 / 5.3 / 5.4 ---------------------------- */

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

static int lp_absindex(lua_State *L, int idx) {
    return (idx > 0 || idx <= LUA_REGISTRYINDEX) ? idx : lua_gettop(L) + idx + 1;
}

/* luaL_setfuncs for every version (5.1 lacks it). */
static void lp_setfuncs(lua_State *L, const luaL_Reg *l, int nup) {
    int i;
    for (; l->name != NULL; l++) {
        for (i = 0; i < nup; i++)
            lua_pushvalue(L, -nup);
        lua_pushcclosure(L, l->func, nup);
        lua_setfield(L, -(nup + 2), l->name);
    }
    lua_pop(L, nup);
}

/* luaL_testudata for every version. */
static void *lp_testudata(lua_State *L, int idx, const char *tname) {
    void *p = lua_touserdata(L, idx);
    int same;
    if (p == NULL || !lua_getmetatable(L, idx))
        return NULL;
    luaL_getmetatable(L, tname);
    same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return same ? p : NULL;
}

/* Pushes a readable string for the value at idx, without invoking metamethods that could
 * raise (error values of any type reach the message handler). */
static const char *lp_describe(lua_State *L, int idx) {
    idx = lp_absindex(L, idx);
    switch (lua_type(L, idx)) {
    case LUA_TSTRING:
    case LUA_TNUMBER:
        lua_pushvalue(L, idx);
        lua_tostring(L, -1);
        break;
    case LUA_TNIL:
        lua_pushliteral(L, "nil");
        break;
    case LUA_TBOOLEAN:
        lua_pushstring(L, lua_toboolean(L, idx) ? "true" : "false");
        break;
    default:
        if (luaL_callmeta(L, idx, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            break;
        if (lua_gettop(L) > idx)
            lua_settop(L, idx);
        lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, idx));
        break;
    }
    return lua_tostring(L, -1);
}

/* Pushes msg followed by a traceback of L from `level`. */
static void lp_traceback(lua_State *L, const char *msg, int level) {
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
            if (lua_pcall(L, 2, 1, 0) == 0 && lua_type(L, -1) == LUA_TSTRING)
                return;
        }
    }
    lua_pop(L, 1);
    lua_pushstring(L, msg);
#endif
}

/* Pushes x as an integer when it fits lua_Integer exactly, else as a number. */
static void lp_pushu64(lua_State *L, uint64_t x) {
#if LUA_VERSION_NUM >= 503
    if (x <= (uint64_t)LUA_MAXINTEGER) {
        lua_pushinteger(L, (lua_Integer)x);
        return;
    }
#endif
    lua_pushnumber(L, (lua_Number)x);
}

/* Reads the value at idx as an integer in [lo, hi]. Returns 1 and sets *out, or 0 when it
 * is not a number with an integral value in range (strings are refused). */
static int lp_tointeger(lua_State *L, int idx, double lo, double hi, int64_t *out) {
    if (lua_type(L, idx) != LUA_TNUMBER)
        return 0;
#if LUA_VERSION_NUM >= 503
    if (lua_isinteger(L, idx)) {
        lua_Integer i = lua_tointeger(L, idx);
        if ((double)i < lo || (double)i > hi)
            return 0;
        *out = (int64_t)i;
        return 1;
    }
#endif
    {
        double d = (double)lua_tonumber(L, idx);
        if (d != d || d < lo || d > hi || floor(d) != d)
            return 0;
        *out = (int64_t)d;
        return 1;
    }
}

/* ---- small helpers -------------------------------------------------------------------- */

/* Raises "fname: argument 'arg' what": misuse names the function and the argument whichever
 * way the function was called. */
static int arg_error(lua_State *L, const char *fname, const char *arg, const char *what) {
    return luaL_error(L, "%s: argument '%s' %s", fname, arg, what);
}

/* A string argument (numbers are not converted); raises otherwise. */
static const char *check_string(lua_State *L, int idx, const char *fname, const char *arg,
                                size_t *len) {
    if (lua_type(L, idx) != LUA_TSTRING)
        arg_error(L, fname, arg, "must be a string");
    return lua_tolstring(L, idx, len);
}

static int push_fail(lua_State *L, const char *msg) {
    lua_pushnil(L);
    lua_pushstring(L, msg);
    return 2;
}

/* Readable text for the errors an application can hit at run time. */
static const char *error_text(int err) {
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

static int is_hex_id(const char *s, size_t len) {
    uint8_t tmp[32];
    return len == 64 && p2p_id_from_hex(tmp, s, len) == 0;
}

/* Reads the value at idx as a 64-hex id; 0 when it is anything else. */
static int parse_id_arg(lua_State *L, int idx, uint8_t id[32]) {
    size_t len;
    const char *s = lua_type(L, idx) == LUA_TSTRING ? lua_tolstring(L, idx, &len) : NULL;
    return s != NULL && len == 64 && p2p_id_from_hex(id, s, len) == 0;
}

static void push_addr(lua_State *L, const p2p_addr *a) {
    char buf[64];
    if (a->family == P2P_AF_NONE || p2p_addr_format(a, buf, sizeof buf) != 0)
        lua_pushnil(L);
    else
        lua_pushstring(L, buf);
}

static void push_id(lua_State *L, const uint8_t id[32]) {
    char hex[65];
    p2p_id_to_hex(id, hex);
    lua_pushlstring(L, hex, 64);
}

/* ---- Identity ------------------------------------------------------------------------- */

typedef struct lidentity {
    p2p_identity key; /* secrets: wiped on __gc, never pushed to Lua */
    char hex[65];
} lidentity;

static lidentity *check_identity(lua_State *L, int idx) {
    return (lidentity *)luaL_checkudata(L, idx, IDENTITY_MT);
}

/* p2pnet.identity([path]) -> identity | nil, err */
static int l_identity(lua_State *L) {
    const char *path = lua_isnoneornil(L, 1) ? NULL
                       : check_string(L, 1, "p2pnet.identity", "path", NULL);
    p2p_identity key;
    char err[256] = "";
    int rc;
    lidentity *ident;

    if (path == NULL) {
        rc = p2p_identity_generate(&key);
    } else {
        rc = p2p_identity_load(&key, path, err, sizeof err);
    }
    if (rc != 0) {
        p2p_identity_wipe(&key);
        if (err[0] == '\0')
            snprintf(err, sizeof err, "%s", p2p_strerror(rc));
        return push_fail(L, err);
    }
    ident = (lidentity *)lua_newuserdata(L, sizeof *ident);
    memcpy(&ident->key, &key, sizeof key);
    p2p_identity_wipe(&key);
    p2p_id_to_hex(ident->key.ed_pk, ident->hex);
    luaL_getmetatable(L, IDENTITY_MT);
    lua_setmetatable(L, -2);
    return 1;
}

static int identity_index(lua_State *L) {
    lidentity *ident = check_identity(L, 1);
    const char *k = lua_tostring(L, 2);
    if (k != NULL && strcmp(k, "id") == 0) {
        lua_pushstring(L, ident->hex);
        return 1;
    }
    return 0;
}

static int identity_tostring(lua_State *L) {
    lidentity *ident = check_identity(L, 1);
    lua_pushfstring(L, "p2pnet.Identity(%s)", ident->hex);
    return 1;
}

static int identity_gc(lua_State *L) {
    lidentity *ident = check_identity(L, 1);
    p2p_identity_wipe(&ident->key);
    return 0;
}

/* ---- Node and Sim structures ---------------------------------------------------------- */

typedef struct lsim lsim;

typedef struct lnode {
    p2p_host *host;            /* NULL once closed */
    p2p_udp *udp;              /* UDP nodes */
    lsim *sim;                 /* simulated nodes: the Sim's memory, kept alive by the
                                * Sim userdata held in our uservalue; NULL once closed */
    lsim *simref;              /* the same, kept after close for the clock */
    int closed;
    int closing;               /* inside close(): dispatch does not touch the host */
    p2p_addr local;            /* simulated nodes: the address the sim gave us */
    uint8_t (*allow)[32];      /* owned copies, for as long as the host may read them */
    uint8_t (*deny)[32];
    uint8_t *network_key;
    size_t network_key_len;
    int q_head, q_tail;        /* event queue bounds in uservalue.q: [q_head, q_tail) */
    uint64_t callback_errors;  /* handler errors printed to stderr */
    char hex[65];
    /* Re-entrancy (see "Re-entrancy" below). */
    int draining;              /* inside drain_events(): the node is busy */
    int dispatching;           /* depth of dispatch_all(): handlers of this node may run */
    int close_deferred;        /* close() arrived during a drain: done at its end */
    int has_pend;              /* `pend` holds an event taken from the host but not yet
                                * queued in Lua (a Lua error interrupted the copy) */
    p2p_event pend;            /* that event; pend.data points into pend_buf */
    uint8_t *pend_buf;         /* private copy of event data: the host's copy dies with
                                * the next call on the host, and Lua may run a finalizer
                                * at any allocation */
    size_t pend_cap;
} lnode;

struct lsim {
    p2p_sim *sim;
    int attached;   /* nodes still attached: the sim is freed when this is 0 and ... */
    int collected;  /* ... the Sim userdata has been collected */
    int running;    /* inside sim:run(): not re-entrant */
    int draining;   /* nodes of this sim inside drain_events(): sim:run refuses */
};

typedef struct lpeer {
    lnode *node;               /* valid while the peer lives: its uservalue holds the Node */
    p2p_peer_handle handle;
    int dead;                  /* the session ended: fields come from `snap` */
    p2p_peer_info snap;        /* the last info read from the host */
} lpeer;

static lnode *to_node(lua_State *L, int idx) {
    return (lnode *)luaL_checkudata(L, idx, NODE_MT);
}

/* Use after close is a programming error: it raises, naming the method ("node:send"). A
 * node inside close() counts as closed: only its own leave events and callbacks run then. */
static lnode *check_open_node(lua_State *L, int idx, const char *fname) {
    lnode *n = to_node(L, idx);
    if (n->closed || n->closing || n->host == NULL)
        luaL_error(L, "%s: node is closed", fname);
    return n;
}

/* Why the node cannot take a call that makes its host produce work right now, or NULL. */
#define BUSY_DRAINING "node is busy (called from a finalizer during a drain)"

/* Refuses (nil, "<fname>: node is busy ...") a call that arrives during a drain: see
 * "re-entrancy" below. Returns 2 (values pushed) when refused, else 0. */
static int refuse_busy(lua_State *L, const lnode *n, const char *fname) {
    if (!n->draining)
        return 0;
    lua_pushnil(L);
    lua_pushfstring(L, "%s: " BUSY_DRAINING, fname);
    return 2;
}

/* Raises when a call that dispatches events (poll, run) arrives while the node drains or
 * dispatches: a handler would otherwise run the handlers of the events queued behind its
 * own, inside itself. */
static void check_not_reentrant(lua_State *L, const lnode *n, const char *fname) {
    if (n->draining)
        luaL_error(L, "%s: " BUSY_DRAINING, fname);
    if (n->dispatching > 0)
        luaL_error(L, "%s: not re-entrant (called from a handler of this node)", fname);
}

static uint64_t node_now(const lnode *n) {
    return n->sim != NULL ? p2p_sim_now(n->sim->sim) : p2p_udp_now();
}

/* Pushes field `name` of the uservalue table of the userdata at idx. */
static void uv_field(lua_State *L, int idx, const char *name) {
    lp_getuservalue(L, idx);
    lua_getfield(L, -1, name);
    lua_remove(L, -2);
}

/* ---- Peer ----------------------------------------------------------------------------- */

static lpeer *check_peer(lua_State *L, int idx) {
    return (lpeer *)luaL_checkudata(L, idx, PEER_MT);
}

/* The current info of a peer: from the host while it lives, else the snapshot. */
static const p2p_peer_info *peer_info(lpeer *p) {
    p2p_peer_info info;
    if (!p->dead && p->node->host != NULL &&
        p2p_host_peer_info(p->node->host, p->handle, &info) == 0) {
        p->snap = info;
    }
    return &p->snap;
}

/* Pushes the cached Peer for `handle` of the node at nidx and returns 1, or returns 0 with
 * nothing pushed. Allocates nothing. */
static int push_cached_peer(lua_State *L, int nidx, p2p_peer_handle handle) {
    uv_field(L, nidx, "peers");
    lua_pushnumber(L, (lua_Number)handle);
    lua_rawget(L, -2);
    lua_remove(L, -2);
    if (!lua_isnil(L, -1))
        return 1;
    lua_pop(L, 1);
    return 0;
}

/* Pushes the Peer for `handle` of the node at nidx, creating and caching it when new.
 *
 * Every allocation comes first: a finalizer run by one of them may close the node, end the
 * session, or (through node:peers()) create the Peer for this very handle. Only then is the
 * host asked about the handle, and the cache looked at again, with nothing in between that
 * could run Lua: one Lua object per peer, and never a live-looking Peer of a closed node. */
static void push_peer(lua_State *L, int nidx, p2p_peer_handle handle) {
    lnode *n = to_node(L, nidx);
    lpeer *p;
    nidx = lp_absindex(L, nidx);
    if (push_cached_peer(L, nidx, handle))
        return;
    p = (lpeer *)lua_newuserdata(L, sizeof *p);
    memset(p, 0, sizeof *p);
    p->node = n;
    p->handle = handle;
    lua_createtable(L, 0, 2);
    lua_pushvalue(L, nidx);
    lua_setfield(L, -2, "node");
    lua_newtable(L);
    lua_setfield(L, -2, "cbs");
    lp_setuservalue(L, -2);
    luaL_getmetatable(L, PEER_MT);
    lua_setmetatable(L, -2);
    /* From here on nothing allocates. */
    if (push_cached_peer(L, nidx, handle)) {
        lua_remove(L, -2); /* a finalizer made it meanwhile: ours is garbage */
        return;
    }
    if (n->host == NULL) {
        /* the node closed meanwhile: a Peer that says so, uncached */
        p->dead = 1;
        p->snap.state = P2P_PEER_DISCONNECTED;
        return;
    }
    /* A handle that died already still gets its cached Peer: its LEAVE (or ERROR) event is
     * queued and retires it, so every event of the session names the same object. */
    p->snap.state = P2P_PEER_CONNECTING;
    (void)p2p_host_peer_info(n->host, handle, &p->snap);
    uv_field(L, nidx, "peers");
    lua_pushnumber(L, (lua_Number)handle);
    lua_pushvalue(L, -3);
    lua_rawset(L, -3);
    lua_pop(L, 1);
}

/* Our connect (handle `from`) lost to a session the other node dialled at the same time
 * (handle `to`): the Peer that connect() returned becomes that session, so the application
 * keeps one object per remote node. */
static void rekey_peer(lua_State *L, int nidx, p2p_peer_handle from, p2p_peer_handle to) {
    lpeer *p;
    nidx = lp_absindex(L, nidx);
    uv_field(L, nidx, "peers");
    lua_pushnumber(L, (lua_Number)from);
    lua_rawget(L, -2);
    p = (lpeer *)lp_testudata(L, -1, PEER_MT);
    if (p != NULL) {
        p->handle = to;
        p->dead = 0;
        lua_pushnumber(L, (lua_Number)to);
        lua_pushvalue(L, -2);
        lua_rawset(L, -4);
        lua_pushnumber(L, (lua_Number)from);
        lua_pushnil(L);
        lua_rawset(L, -4);
    }
    lua_pop(L, 2);
}

/* Marks the Peer at pidx as ended (its handle is dead from now on) and drops it from the
 * cache of the node at nidx, so that a new session never shares its Lua object. */
static void retire_peer(lua_State *L, int nidx, int pidx) {
    lpeer *p = check_peer(L, pidx);
    nidx = lp_absindex(L, nidx);
    if (p->dead)
        return;
    (void)peer_info(p);
    p->dead = 1;
    p->snap.state = P2P_PEER_DISCONNECTED;
    uv_field(L, nidx, "peers");
    lua_pushnumber(L, (lua_Number)p->handle);
    lua_pushnil(L);
    lua_rawset(L, -3);
    lua_pop(L, 1);
}

static const char *state_text(p2p_peer_state s) {
    switch (s) {
    case P2P_PEER_CONNECTING: return "connecting";
    case P2P_PEER_CONNECTED: return "connected";
    default: return "disconnected";
    }
}

static const char *reason_text(int reason) {
    switch (reason) {
    case P2P_LEAVE_CLOSED: return "closed";
    case P2P_LEAVE_TIMEOUT: return "timeout";
    case P2P_LEAVE_DENIED: return "denied";
    case P2P_LEAVE_PROTOCOL: return "protocol";
    default: return "closed";
    }
}

/* ---- the event queue ------------------------------------------------------------------ */

/* Appends the table on top of the stack to the queue of the node at nidx (pops it). */
static void queue_push(lua_State *L, int nidx) {
    lnode *n = to_node(L, nidx);
    nidx = lp_absindex(L, nidx);
    uv_field(L, nidx, "q");
    lua_insert(L, -2);
    lua_rawseti(L, -2, n->q_tail++);
    lua_pop(L, 1);
}

/* Pushes the next queued event table, or returns 0 when the queue is empty. */
static int queue_pop(lua_State *L, int nidx) {
    lnode *n = to_node(L, nidx);
    nidx = lp_absindex(L, nidx);
    if (n->q_head == n->q_tail) {
        n->q_head = n->q_tail = 1;
        return 0;
    }
    uv_field(L, nidx, "q");
    lua_rawgeti(L, -1, n->q_head);
    lua_pushnil(L);
    lua_rawseti(L, -3, n->q_head);
    lua_remove(L, -2);
    n->q_head++;
    return 1;
}

/* ---- re-entrancy ---------------------------------------------------------------------
 *
 * The core never calls Lua, so no core function is ever on the C stack when Lua code runs.
 * Lua code runs in two places: handlers (only inside dispatch_all) and finalizers, which Lua
 * may run at any allocation the binding makes: a table, a string, a userdata. A finalizer may
 * call any method of any node. So:
 *
 * - drain_events() copies each event, data included, out of the host before it allocates
 *   anything (the host's copy dies with the next call on the host), and keeps the copy in
 *   the node, not on the C stack, so an event interrupted by a Lua error is queued on the
 *   next drain instead of being lost.
 * - While a node drains, it is "busy". A re-entrant drain of the same node returns at once
 *   (the running one picks up whatever the finalizer's call produced, in order). Calls that
 *   would make the host produce work are refused with nil, "<method>: node is busy (called
 *   from a finalizer during a drain)": peer:send, peer:send_unreliable, node:broadcast and
 *   node:connect. peer:disconnect() and node:close(), which have no result to report, are
 *   deferred: they run when the drain ends, in the order they came. node:poll() raises, and
 *   so does sim:run() of the node's simulator. Reading methods (peer fields, node:peers(),
 *   node:stats()) work.
 * - While a node dispatches, node:poll() and node:run() raise (a handler must not dispatch
 *   the events queued behind its own); everything else works, node:close() included: it
 *   dispatches the remaining events and the leave events before it returns.
 * - Between a call into the core and the last use of what it returned, the binding either
 *   allocates nothing, or checks again afterwards (push_peer).
 * ------------------------------------------------------------------------------------------ */

/* Data kept in pend_buf after a drain, at most: larger buffers are freed when it ends. */
#define PEND_KEEP 65536

/* Copies ev (and its data, which the host owns) into the node's pending slot. Allocates no
 * Lua memory. Returns 0, or P2P_ERR_NOMEM (the event is then lost: nothing can hold it). */
static int stash_event(lnode *n, const p2p_event *ev) {
    n->pend = *ev;
    n->pend.data = NULL;
    if (ev->data != NULL) {
        if (ev->len > n->pend_cap || n->pend_buf == NULL) {
            size_t cap = ev->len > 0 ? ev->len : 1;
            uint8_t *b = (uint8_t *)malloc(cap);
            if (b == NULL)
                return P2P_ERR_NOMEM;
            free(n->pend_buf);
            n->pend_buf = b;
            n->pend_cap = cap;
        }
        memcpy(n->pend_buf, ev->data, ev->len);
        n->pend.data = n->pend_buf;
    }
    n->has_pend = 1;
    return 0;
}

/* Builds the Lua table of the pending event and queues it. Runs with the node busy: the
 * host cannot be freed and nothing else takes events from it meanwhile. */
static void queue_pending(lua_State *L, int nidx) {
    lnode *n = to_node(L, nidx);
    const p2p_event *ev = &n->pend;
    int top = lua_gettop(L);
    lua_createtable(L, 0, 8);
    if (ev->data != NULL) {
        lua_pushlstring(L, (const char *)ev->data, ev->len);
        lua_setfield(L, -2, "d");
    }
    lua_pushinteger(L, (lua_Integer)ev->type);
    lua_setfield(L, -2, "t");
    if (ev->type == P2P_EV_REQUEST) {
        lua_pushnumber(L, (lua_Number)ev->peer);
        lua_setfield(L, -2, "h");
        push_id(L, ev->id);
        lua_setfield(L, -2, "id");
        push_addr(L, &ev->from);
        lua_setfield(L, -2, "from");
    } else if (ev->peer != 0) {
        if (ev->type == P2P_EV_JOIN && ev->replaces != 0)
            rekey_peer(L, nidx, ev->replaces, ev->peer);
        push_peer(L, nidx, ev->peer);
        lua_setfield(L, -2, "p");
    }
    lua_pushinteger(L, ev->reason);
    lua_setfield(L, -2, "r");
    lua_pushinteger(L, ev->status);
    lua_setfield(L, -2, "s");
    lua_pushboolean(L, ev->want_reply);
    lua_setfield(L, -2, "w");
    if (ev->type == P2P_EV_MESSAGE && ev->broadcast) {
        push_id(L, ev->origin);
        lua_setfield(L, -2, "o");
    }
    lua_pushinteger(L, ev->msg_type);
    lua_setfield(L, -2, "m");
    lp_pushu64(L, ev->seq);
    lua_setfield(L, -2, "q");
    lua_pushnumber(L, (lua_Number)ev->session);
    lua_setfield(L, -2, "x");
    /* The handle dies with LEAVE; a failed connect's handle may die with its ERROR. The
     * Peer is retired now, so that later lookups of a reused handle get a new object. No
     * allocation from here to queue_push's end. */
    if (ev->peer != 0 && (ev->type == P2P_EV_LEAVE || ev->type == P2P_EV_ERROR)) {
        p2p_peer_info info;
        lpeer *p;
        lua_getfield(L, -1, "p");
        p = check_peer(L, -1);
        (void)peer_info(p);
        /* the handle may be dead already: the event still names the peer */
        if (ev->has_id && !p->snap.has_id) {
            memcpy(p->snap.id, ev->id, 32);
            p->snap.has_id = 1;
        }
        if (ev->from.family != P2P_AF_NONE && p->snap.address.family == P2P_AF_NONE)
            p->snap.address = ev->from;
        if (ev->type == P2P_EV_LEAVE || n->host == NULL ||
            p2p_host_peer_info(n->host, ev->peer, &info) != 0 ||
            info.state == P2P_PEER_DISCONNECTED || info.state == P2P_PEER_NONE)
            retire_peer(L, nidx, -1);
        lua_pop(L, 1);
    }
    queue_push(L, nidx);
    n->has_pend = 0;
    lua_settop(L, top);
}

/* drain_events' body, under lua_pcall (the node at 1): the busy flags are cleared whatever
 * happens. */
static int drain_body(lua_State *L) {
    lnode *n = to_node(L, 1);
    p2p_event ev;
    for (;;) {
        if (!n->has_pend) {
            if (n->host == NULL || p2p_host_next_event(n->host, &ev) != 1)
                break;
            if (stash_event(n, &ev) != 0)
                return luaL_error(L, "p2pnet: out of memory (an event was lost)");
        }
        queue_pending(L, 1);
    }
    return 0;
}

static void node_close(lua_State *L, int nidx);
static void after_call(lua_State *L, int nidx);

/* Runs the peer:disconnect() and node:close() calls deferred during a drain. */
static void run_deferred(lua_State *L, int nidx) {
    lnode *n = to_node(L, nidx);
    for (;;) {
        lpeer *p;
        uv_field(L, nidx, "deferred");
        if (!lua_istable(L, -1) || lp_rawlen(L, -1) == 0) {
            lua_pop(L, 1);
            break;
        }
        /* take the first one out (in place: no allocation); a finalizer may defer more
         * while this one runs */
        {
            int i, len = (int)lp_rawlen(L, -1);
            lua_rawgeti(L, -1, 1);
            for (i = 2; i <= len; i++) {
                lua_rawgeti(L, -2, i);
                lua_rawseti(L, -3, i - 1);
            }
            lua_pushnil(L);
            lua_rawseti(L, -3, len);
            lua_remove(L, -2);
        }
        p = (lpeer *)lp_testudata(L, -1, PEER_MT);
        if (p != NULL && !p->dead && n->host != NULL && !n->closing && !n->closed) {
            (void)p2p_peer_disconnect(n->host, p->handle, node_now(n));
            lua_pop(L, 1);
            after_call(L, nidx);
        } else {
            lua_pop(L, 1);
        }
    }
    if (n->close_deferred) {
        n->close_deferred = 0;
        node_close(L, nidx);
    }
}

/* Copies every pending core event into the Lua queue, then runs what was deferred while it
 * did. A re-entrant call (from a finalizer) returns at once. */
static void drain_events(lua_State *L, int nidx) {
    lnode *n = to_node(L, nidx);
    lsim *s = n->sim;
    int rc;
    nidx = lp_absindex(L, nidx);
    if (n->draining)
        return;
    if (n->host != NULL) {
        n->draining = 1;
        if (s != NULL)
            s->draining++;
        lua_pushcfunction(L, drain_body);
        lua_pushvalue(L, nidx);
        rc = lua_pcall(L, 1, 0, 0);
        n->draining = 0;
        if (s != NULL)
            s->draining--;
        if (n->pend_cap > PEND_KEEP && !n->has_pend) {
            free(n->pend_buf);
            n->pend_buf = NULL;
            n->pend_cap = 0;
        }
        if (rc != LUA_OK)
            lua_error(L);
    }
    run_deferred(L, nidx);
}

/* Sends what the core has queued, then collects the events the call produced. */
static void after_call(lua_State *L, int nidx) {
    lnode *n = to_node(L, nidx);
    if (n->host == NULL)
        return;
    if (n->udp != NULL)
        (void)p2p_udp_flush(n->udp, n->host);
    else if (n->sim != NULL)
        p2p_sim_flush(n->sim->sim, n->host);
    drain_events(L, nidx);
}

/* ---- calling Lua handlers ------------------------------------------------------------- */

/* Message handler for handler calls: returns {message = text, traceback = text}. */
static int l_msgh(lua_State *L) {
    const char *msg = lp_describe(L, 1);
    lua_createtable(L, 0, 2);
    lua_pushstring(L, msg);
    lua_setfield(L, -2, "message");
    lp_traceback(L, msg, 1);
    lua_setfield(L, -2, "traceback");
    return 1;
}

/* Calls the function below its nargs arguments on top of the stack. Returns 0 and leaves
 * nres results, or 1 and leaves the {message, traceback} table. */
static int call_handler(lua_State *L, int nargs, int nres) {
    int base = lua_gettop(L) - nargs;
    int rc;
    lua_pushcfunction(L, l_msgh);
    lua_insert(L, base);
    rc = lua_pcall(L, nargs, nres, base);
    lua_remove(L, base);
    if (rc == LUA_OK)
        return 0;
    if (!lua_istable(L, -1)) { /* out of memory or an error in the message handler */
        const char *m = lua_tostring(L, -1);
        lua_pop(L, 1);
        lua_createtable(L, 0, 2);
        lua_pushstring(L, m != NULL ? m : "error in error handling");
        lua_setfield(L, -2, "message");
    }
    return 1;
}

/* Reports a handler error (the table on top, popped) on stderr and counts it. */
static void report_error(lua_State *L, lnode *n, const char *what) {
    const char *text;
    lua_getfield(L, -1, "traceback");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_getfield(L, -1, "message");
    }
    text = lua_tostring(L, -1);
    fprintf(stderr, "p2pnet: error in %s handler: %s\n", what, text != NULL ? text : "?");
    fflush(stderr);
    lua_pop(L, 2);
    n->callback_errors++;
}

/* Pushes the handler for `event` of the node at nidx, or returns 0 (nothing pushed). */
static int push_handler(lua_State *L, int nidx, const char *event) {
    uv_field(L, nidx, "handlers");
    lua_getfield(L, -1, event);
    lua_remove(L, -2);
    if (lua_isfunction(L, -1))
        return 1;
    lua_pop(L, 1);
    return 0;
}

/* Calls fn(...) for a handler that returns nothing; errors are printed and counted. */
static void call_simple(lua_State *L, lnode *n, int nargs, const char *what) {
    if (call_handler(L, nargs, 0) != 0)
        report_error(L, n, what);
}

/* Pops the callback stored for (peer at pidx, seq) and pushes it; returns 0 when none. */
static int take_callback(lua_State *L, int pidx, lua_Number seq) {
    pidx = lp_absindex(L, pidx);
    uv_field(L, pidx, "cbs");
    lua_pushnumber(L, seq);
    lua_rawget(L, -2);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 2);
        return 0;
    }
    lua_pushnumber(L, seq);
    lua_pushnil(L);
    lua_rawset(L, -4);
    lua_remove(L, -2);
    return 1;
}

/* Calls every reply callback still pending on the Peer at pidx with (false, why): each
 * callback runs exactly once even when the core ends a session without LOST replies. */
static void fail_callbacks(lua_State *L, lnode *n, int pidx, const char *why) {
    pidx = lp_absindex(L, pidx);
    for (;;) {
        uv_field(L, pidx, "cbs");
        lua_pushnil(L);
        if (lua_next(L, -2) == 0) {
            lua_pop(L, 1);
            return;
        }
        /* stack: cbs key fn */
        lua_pushvalue(L, -2);
        lua_pushnil(L);
        lua_rawset(L, -5);
        lua_remove(L, -2);
        lua_remove(L, -2);
        lua_pushboolean(L, 0);
        lua_pushstring(L, why);
        call_simple(L, n, 2, "reply callback");
    }
}

/* Broadcast ids are "<origin id, 16 hex>-<seq hex>" (seq starts at the origin's wall clock,
 * so it never repeats); direct ones also name the sender's session, because their seq
 * restarts with every session: "<sender id, 16 hex>-<session hex>-<seq hex>". */
static void push_message_id(lua_State *L, const char *sender_hex, int direct, uint32_t session,
                            uint64_t seq) {
    char buf[80];
    if (direct)
        snprintf(buf, sizeof buf, "%.16s-%08lx-%llx", sender_hex != NULL ? sender_hex : "",
                 (unsigned long)session, (unsigned long long)seq);
    else
        snprintf(buf, sizeof buf, "%.16s-%llx", sender_hex != NULL ? sender_hex : "",
                 (unsigned long long)seq);
    lua_pushstring(L, buf);
}

/* Pushes the event's data (field "d" of the event table at eidx), or `dflt` when it has
 * none. */
static void push_data_or(lua_State *L, int eidx, const char *dflt) {
    lua_getfield(L, eidx, "d");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushstring(L, dflt);
    }
}

/* Dispatches a MESSAGE or DATAGRAM event (the event table at eidx). */
static void dispatch_message(lua_State *L, int nidx, int eidx, int unreliable) {
    lnode *n = to_node(L, nidx);
    int want_reply, pidx, status = P2P_REPLY_NIL;
    lpeer *p;
    const char *sender;
    uint64_t seq;
    size_t rlen = 0;
    const char *rdata = NULL;
    int top = lua_gettop(L);

    const char *origin;
    lua_getfield(L, eidx, "p");
    pidx = lua_gettop(L);
    p = (lpeer *)lp_testudata(L, pidx, PEER_MT);
    lua_getfield(L, eidx, "o");
    origin = lua_tostring(L, -1); /* broadcasts: stays on the stack until settop(top) */
    if (p == NULL && origin == NULL) {
        lua_settop(L, top);
        return;
    }
    lua_getfield(L, eidx, "w");
    want_reply = p != NULL && !unreliable && lua_toboolean(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, eidx, "q");
    seq = (uint64_t)lua_tonumber(L, -1);
    lua_pop(L, 1);

    if (push_handler(L, nidx, "message")) {
        int failed;
        char hex[65];
        sender = origin;
        if (sender == NULL) {
            const p2p_peer_info *info = peer_info(p);
            if (info->has_id) {
                p2p_id_to_hex(info->id, hex);
                sender = hex;
            }
        }
        lua_pushvalue(L, pidx);
        lua_getfield(L, eidx, "m");
        push_data_or(L, eidx, "");
        lua_createtable(L, 0, 4);
        if (!unreliable) {
            uint32_t session;
            lua_getfield(L, eidx, "x");
            session = (uint32_t)lua_tonumber(L, -1);
            lua_pop(L, 1);
            push_message_id(L, sender, origin == NULL, session, seq);
            lua_setfield(L, -2, "id");
        }
        lua_pushboolean(L, origin != NULL);
        lua_setfield(L, -2, "broadcast");
        if (sender != NULL) {
            lua_pushstring(L, sender);
            lua_setfield(L, -2, "origin");
        }
        if (unreliable) {
            lua_pushboolean(L, 1);
            lua_setfield(L, -2, "unreliable");
        }
        failed = call_handler(L, 4, 1);
        if (failed) {
            if (want_reply) {
                lua_getfield(L, -1, "message");
                lua_remove(L, -2);
                status = P2P_REPLY_ERROR;
                rdata = lua_tolstring(L, -1, &rlen);
            } else {
                report_error(L, n, "message");
            }
        } else if (lua_type(L, -1) == LUA_TSTRING) {
            status = P2P_REPLY_DATA;
            rdata = lua_tolstring(L, -1, &rlen);
        } else if (!lua_isnil(L, -1)) {
            status = P2P_REPLY_ERROR;
            lua_pushfstring(L, "message handler returned a %s: a reply must be a string or nil",
                            luaL_typename(L, -1));
            rdata = lua_tolstring(L, -1, &rlen);
            if (!want_reply) {
                fprintf(stderr, "p2pnet: %s\n", rdata);
                n->callback_errors++;
            }
        }
    }
    if (want_reply && !n->closing && n->host != NULL && p != NULL && !p->dead) {
        /* The reply may fail when the session ended meanwhile; the sender then gets LOST. */
        (void)p2p_peer_reply(n->host, p->handle, seq, status, (const uint8_t *)rdata, rlen,
                             node_now(n));
        after_call(L, nidx);
    }
    lua_settop(L, top);
}

/* Dispatches one event (the table on top of the stack, popped). */
static void dispatch_event(lua_State *L, int nidx) {
    lnode *n = to_node(L, nidx);
    int eidx = lua_gettop(L);
    int type;
    lua_getfield(L, eidx, "t");
    type = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);

    switch (type) {
    case P2P_EV_JOIN:
        if (push_handler(L, nidx, "join")) {
            lua_getfield(L, eidx, "p");
            call_simple(L, n, 1, "join");
        }
        break;
    case P2P_EV_LEAVE: {
        int reason;
        lua_getfield(L, eidx, "r");
        reason = (int)lua_tointeger(L, -1);
        lua_pop(L, 1);
        lua_getfield(L, eidx, "p");
        if (!lua_isnil(L, -1))
            fail_callbacks(L, n, -1,
                           reason == P2P_LEAVE_TIMEOUT ? "timeout" : "disconnected");
        if (push_handler(L, nidx, "leave")) {
            lua_pushvalue(L, -2);
            lua_pushstring(L, reason_text(reason));
            call_simple(L, n, 2, "leave");
        }
        break;
    }
    case P2P_EV_MESSAGE:
        dispatch_message(L, nidx, eidx, 0);
        break;
    case P2P_EV_DATAGRAM:
        dispatch_message(L, nidx, eidx, 1);
        break;
    case P2P_EV_REPLY: {
        int status, reason;
        lua_Number seq;
        lua_getfield(L, eidx, "p");
        if (lua_isnil(L, -1))
            break;
        lua_getfield(L, eidx, "q");
        seq = lua_tonumber(L, -1);
        lua_pop(L, 1);
        if (!take_callback(L, -1, seq))
            break;
        lua_getfield(L, eidx, "s");
        status = (int)lua_tointeger(L, -1);
        lua_pop(L, 1);
        lua_getfield(L, eidx, "r");
        reason = (int)lua_tointeger(L, -1);
        lua_pop(L, 1);
        switch (status) {
        case P2P_REPLY_NIL:
            lua_pushboolean(L, 1);
            lua_pushnil(L);
            break;
        case P2P_REPLY_DATA:
            lua_pushboolean(L, 1);
            push_data_or(L, eidx, "");
            break;
        case P2P_REPLY_ERROR:
            lua_pushboolean(L, 0);
            push_data_or(L, eidx, "remote error");
            break;
        default:
            lua_pushboolean(L, 0);
            lua_pushstring(L, reason == P2P_LEAVE_TIMEOUT ? "timeout" : "disconnected");
            break;
        }
        call_simple(L, n, 2, "reply callback");
        break;
    }
    case P2P_EV_ERROR:
        if (push_handler(L, nidx, "error")) {
            push_data_or(L, eidx, "error");
            lua_getfield(L, eidx, "p");
            call_simple(L, n, 2, "error");
        }
        break;
    case P2P_EV_REQUEST: {
        int accept = 1;
        p2p_peer_handle h;
        lua_getfield(L, eidx, "h");
        h = (p2p_peer_handle)lua_tonumber(L, -1);
        lua_pop(L, 1);
        uv_field(L, nidx, "on_request");
        if (lua_isfunction(L, -1) && !n->closed) {
            lua_getfield(L, eidx, "id");
            lua_getfield(L, eidx, "from");
            if (call_handler(L, 2, 1) != 0) {
                report_error(L, n, "on_request");
                accept = 0;
            } else {
                accept = lua_type(L, -1) == LUA_TBOOLEAN && lua_toboolean(L, -1);
                lua_pop(L, 1);
            }
        } else {
            lua_pop(L, 1);
        }
        if (!n->closing && n->host != NULL) {
            (void)p2p_host_admit(n->host, h, accept, node_now(n));
            after_call(L, nidx);
        }
        break;
    }
    default:
        break;
    }
    lua_settop(L, eidx - 1);
}

/* dispatch_all's body, under lua_pcall (the node at 1); returns the count. */
static int dispatch_body(lua_State *L) {
    lua_Integer count = 0;
    while (queue_pop(L, 1)) {
        dispatch_event(L, 1);
        count++;
    }
    lua_pushinteger(L, count);
    return 1;
}

/* Dispatches every queued event of the node at nidx; returns how many. Handlers may queue
 * more (replies, admissions); those are dispatched in the same pass. The node counts as
 * dispatching meanwhile (node:poll() refuses), whatever error ends it. */
static int dispatch_all(lua_State *L, int nidx) {
    lnode *n = to_node(L, nidx);
    int rc, count;
    nidx = lp_absindex(L, nidx);
    n->dispatching++;
    lua_pushcfunction(L, dispatch_body);
    lua_pushvalue(L, nidx);
    rc = lua_pcall(L, 1, 1, 0);
    n->dispatching--;
    if (rc != LUA_OK)
        lua_error(L);
    count = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    return count;
}

/* ---- node creation: options ----------------------------------------------------------- */

typedef struct node_opts {
    const char *host;
    int64_t port;
    lidentity *identity;       /* an Identity userdata, or NULL */
    const char *identity_path; /* or a key file */
    const char *network_key;
    size_t network_key_len;
    int has_allow, has_deny;
    size_t allow_count, deny_count;
    int on_request;            /* stack index of the function, or 0 */
    double timeout;
    int64_t max_peers, max_message;
    int nat;
    int is_sim;
    int mesh;                  /* 1 unless mesh = false */
    int relay;                 /* 1 unless relay = false */
    int64_t relay_sessions, relay_rate;
    int64_t peer_memory, memory;         /* budgets in bytes; 0: the core's default */
    int64_t max_half_open, cookie_threshold;
} node_opts;

/* Largest byte budget an option takes: 2^53, what every Lua number holds exactly. */
#define MAX_BUDGET_BYTES 9007199254740992.0

static int opt_error(lua_State *L, const char *fname, const char *name, const char *what) {
    return luaL_error(L, "%s: option '%s' %s", fname, name, what);
}

/* Checks that the value at idx is an array of 64-hex ids; returns how many. */
static size_t check_ids(lua_State *L, int idx, const char *fname, const char *name) {
    size_t n, i;
    uint8_t tmp[32];
    if (!lua_istable(L, idx))
        opt_error(L, fname, name, "must be an array of 64-hex ids");
    n = lp_rawlen(L, idx);
    for (i = 0; i < n; i++) {
        lua_rawgeti(L, idx, (int)(i + 1));
        if (!parse_id_arg(L, -1, tmp))
            luaL_error(L, "%s: option '%s' item %d must be 64 hex characters", fname, name,
                       (int)(i + 1));
        lua_pop(L, 1);
    }
    return n;
}

/* Copies the ids of option `name` (validated by check_ids) into a new malloc'd array. */
static uint8_t (*copy_ids(lua_State *L, int optidx, const char *name, size_t count))[32] {
    uint8_t (*ids)[32] = (uint8_t (*)[32])malloc((count > 0 ? count : 1) * 32);
    size_t i;
    if (ids == NULL)
        return NULL;
    lua_pushstring(L, name);
    lua_rawget(L, optidx);
    for (i = 0; i < count; i++) {
        lua_rawgeti(L, -1, (int)(i + 1));
        (void)parse_id_arg(L, -1, ids[i]);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return ids;
}

/* Validates the options table at idx (may be nil); raises on any bad option. */
static void read_node_opts(lua_State *L, int idx, const char *fname, int is_sim,
                           node_opts *o) {
    memset(o, 0, sizeof *o);
    o->is_sim = is_sim;
    o->timeout = 10.0;
    o->mesh = 1;
    o->relay = 1;
    if (lua_isnoneornil(L, idx))
        return;
    if (!lua_istable(L, idx))
        luaL_error(L, "%s: options must be a table", fname);
    idx = lp_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        const char *k;
        int v = lua_gettop(L);
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "%s: option names must be strings", fname);
        k = lua_tostring(L, -2);
        if (strcmp(k, "host") == 0) {
            if (lua_type(L, v) != LUA_TSTRING)
                opt_error(L, fname, k, "must be a string");
            o->host = lua_tostring(L, v);
        } else if (strcmp(k, "port") == 0) {
            if (!lp_tointeger(L, v, 0, 65535, &o->port))
                opt_error(L, fname, k, "must be an integer 0-65535");
        } else if (strcmp(k, "identity") == 0) {
            if (lua_type(L, v) == LUA_TSTRING)
                o->identity_path = lua_tostring(L, v);
            else if ((o->identity = (lidentity *)lp_testudata(L, v, IDENTITY_MT)) == NULL)
                opt_error(L, fname, k, "must be an identity or a key file path");
        } else if (strcmp(k, "network_key") == 0) {
            if (lua_type(L, v) != LUA_TSTRING)
                opt_error(L, fname, k, "must be a string");
            o->network_key = lua_tolstring(L, v, &o->network_key_len);
        } else if (strcmp(k, "allow") == 0) {
            o->allow_count = check_ids(L, v, fname, k);
            o->has_allow = 1;
        } else if (strcmp(k, "deny") == 0) {
            o->deny_count = check_ids(L, v, fname, k);
            o->has_deny = 1;
        } else if (strcmp(k, "on_request") == 0) {
            if (!lua_isfunction(L, v))
                opt_error(L, fname, k, "must be a function");
            o->on_request = 1;
        } else if (strcmp(k, "mesh") == 0 || strcmp(k, "relay") == 0) {
            if (lua_type(L, v) != LUA_TBOOLEAN)
                opt_error(L, fname, k, "must be a boolean");
            if (k[0] == 'm')
                o->mesh = lua_toboolean(L, v);
            else
                o->relay = lua_toboolean(L, v);
        } else if (strcmp(k, "relay_sessions") == 0) {
            if (!lp_tointeger(L, v, 1, 65535, &o->relay_sessions))
                opt_error(L, fname, k, "must be an integer 1-65535");
        } else if (strcmp(k, "relay_rate") == 0) {
            if (!lp_tointeger(L, v, 1, 4294967295.0, &o->relay_rate))
                opt_error(L, fname, k, "must be an integer 1-4294967295 (bytes per second)");
        } else if (strcmp(k, "peer_memory") == 0 || strcmp(k, "memory") == 0) {
            if (!lp_tointeger(L, v, 1, MAX_BUDGET_BYTES,
                              k[0] == 'p' ? &o->peer_memory : &o->memory))
                opt_error(L, fname, k, "must be an integer 1-2^53 (bytes)");
        } else if (strcmp(k, "max_half_open") == 0) {
            if (!lp_tointeger(L, v, 1, 4096.0, &o->max_half_open))
                opt_error(L, fname, k, "must be an integer 1-4096");
        } else if (strcmp(k, "cookie_threshold") == 0) {
            if (!lp_tointeger(L, v, 1, 4096.0, &o->cookie_threshold))
                opt_error(L, fname, k, "must be an integer 1-4096 (at most max_half_open)");
        } else if (strcmp(k, "timeout") == 0) {
            double t = lua_type(L, v) == LUA_TNUMBER ? (double)lua_tonumber(L, v) : -1;
            if (!(t > 0 && t <= 86400.0))
                opt_error(L, fname, k, "must be a number of seconds > 0 (at most 86400)");
            o->timeout = t;
        } else if (strcmp(k, "max_peers") == 0) {
            if (!lp_tointeger(L, v, 1, 4294967295.0, &o->max_peers))
                opt_error(L, fname, k, "must be an integer 1-4294967295");
        } else if (strcmp(k, "max_message") == 0) {
            if (!lp_tointeger(L, v, 1, 4294967295.0, &o->max_message))
                opt_error(L, fname, k, "must be an integer 1-4294967295");
        } else if (o->is_sim && strcmp(k, "nat") == 0) {
            const char *s = lua_type(L, v) == LUA_TSTRING ? lua_tostring(L, v) : "";
            if (strcmp(s, "cone") == 0)
                o->nat = P2P_SIM_NAT_CONE;
            else if (strcmp(s, "symmetric") == 0)
                o->nat = P2P_SIM_NAT_SYMMETRIC;
            else
                opt_error(L, fname, k, "must be \"cone\" or \"symmetric\"");
        } else {
            luaL_error(L, "%s: unknown option '%s'", fname, k);
        }
        lua_settop(L, v - 1);
    }
    /* The core refuses a threshold above the table it guards: say so here, by name. */
    if (o->cookie_threshold > (o->max_half_open ? o->max_half_open : 256))
        opt_error(L, fname, "cookie_threshold", "must be at most max_half_open (256 by default)");
}

/* Returns the `on_request` function of the options at idx pushed, or nil. */
static void push_opt(lua_State *L, int idx, const char *name) {
    if (lua_istable(L, idx))
        lua_getfield(L, idx, name);
    else
        lua_pushnil(L);
}

static void node_free_resources(lnode *n) {
    if (n->sim != NULL && n->host != NULL) {
        p2p_sim_detach(n->sim->sim, n->host);
    }
    p2p_host_free(n->host);
    n->host = NULL;
    p2p_udp_close(n->udp);
    n->udp = NULL;
    free(n->allow);
    n->allow = NULL;
    free(n->deny);
    n->deny = NULL;
    free(n->pend_buf);
    n->pend_buf = NULL;
    n->pend_cap = 0;
    n->has_pend = 0;
    if (n->network_key != NULL) {
        memset(n->network_key, 0, n->network_key_len);
        free(n->network_key);
        n->network_key = NULL;
    }
    if (n->sim != NULL) {
        lsim *s = n->sim;
        n->sim = NULL;
        s->attached--;
        if (s->attached == 0 && s->collected) {
            p2p_sim_free(s->sim);
            s->sim = NULL;
        }
    }
}

/* Derives a 32-byte seed from a 64-bit one (splitmix64), so that simulated nodes without an
 * identity of their own get the same ids on every run with the same sim seed. */
static void expand_seed(uint64_t x, uint8_t out[32]) {
    int i, j;
    for (i = 0; i < 4; i++) {
        uint64_t z = (x += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        for (j = 0; j < 8; j++)
            out[i * 8 + j] = (uint8_t)(z >> (8 * j));
    }
}

/* Builds a node from validated options. simidx is the stack index of the Sim, or 0 for a UDP
 * node. Pushes the node, or nil and an error. */
static int make_node(lua_State *L, int optidx, int simidx, const node_opts *o) {
    lnode *n;
    int nidx, rc;
    p2p_identity key;
    p2p_config cfg;
    char err[256] = "";
    uint64_t now;

    n = (lnode *)lua_newuserdata(L, sizeof *n);
    memset(n, 0, sizeof *n);
    n->q_head = n->q_tail = 1;
    n->closed = 1; /* until fully built: __gc then frees what exists */
    nidx = lua_gettop(L);
    lua_createtable(L, 0, 6);
    lua_newtable(L);
    lua_setfield(L, -2, "handlers");
    lua_newtable(L);
    lua_setfield(L, -2, "peers");
    lua_newtable(L);
    lua_setfield(L, -2, "q");
    push_opt(L, optidx, "on_request");
    lua_setfield(L, -2, "on_request");
    if (simidx != 0) {
        lua_pushvalue(L, simidx);
        lua_setfield(L, -2, "sim");
    }
    lp_setuservalue(L, nidx);
    luaL_getmetatable(L, NODE_MT);
    lua_setmetatable(L, nidx);

    /* Identity. */
    memset(&key, 0, sizeof key);
    if (o->identity != NULL) {
        key = o->identity->key;
    } else if (o->identity_path != NULL) {
        rc = p2p_identity_load(&key, o->identity_path, err, sizeof err);
        if (rc != 0) {
            p2p_identity_wipe(&key);
            if (err[0] == '\0')
                snprintf(err, sizeof err, "%s", p2p_strerror(rc));
            return push_fail(L, err);
        }
    } else if (simidx != 0) {
        uint8_t seed[32];
        lsim *s = (lsim *)lua_touserdata(L, simidx);
        expand_seed(p2p_sim_host_seed(s->sim), seed);
        rc = p2p_identity_from_seed(&key, seed);
        memset(seed, 0, sizeof seed);
        if (rc != 0)
            return push_fail(L, p2p_strerror(rc));
    } else if ((rc = p2p_identity_generate(&key)) != 0) {
        return push_fail(L, p2p_strerror(rc));
    }

    /* Owned copies of what the host may keep pointing at. */
    if (o->has_allow && (n->allow = copy_ids(L, optidx, "allow", o->allow_count)) == NULL)
        goto nomem;
    if (o->has_deny && (n->deny = copy_ids(L, optidx, "deny", o->deny_count)) == NULL)
        goto nomem;
    if (o->network_key != NULL) {
        n->network_key = (uint8_t *)malloc(o->network_key_len > 0 ? o->network_key_len : 1);
        if (n->network_key == NULL)
            goto nomem;
        memcpy(n->network_key, o->network_key, o->network_key_len);
        n->network_key_len = o->network_key_len;
    }

    p2p_config_init(&cfg);
    cfg.identity = &key;
    if (n->network_key != NULL) {
        cfg.network_key = n->network_key;
        cfg.network_key_len = n->network_key_len;
    }
    cfg.allow = (const uint8_t (*)[32])n->allow;
    cfg.allow_count = o->has_allow ? o->allow_count : 0;
    cfg.deny = (const uint8_t (*)[32])n->deny;
    cfg.deny_count = o->has_deny ? o->deny_count : 0;
    cfg.request_hook = o->on_request;
    cfg.timeout_us = (uint64_t)(o->timeout * 1e6 + 0.5);
    cfg.max_peers = (uint32_t)o->max_peers;
    cfg.max_message = (uint32_t)o->max_message;
    cfg.mediator = o->mesh == 0;
    cfg.no_relay = o->relay == 0;
    cfg.relay_sessions = (uint32_t)o->relay_sessions;
    cfg.relay_rate = (uint32_t)o->relay_rate;
    cfg.peer_memory = (uint64_t)o->peer_memory;
    cfg.memory = (uint64_t)o->memory;
    cfg.max_half_open = (uint32_t)o->max_half_open;
    cfg.cookie_threshold = (uint32_t)o->cookie_threshold;

    if (simidx != 0) {
        lsim *s = (lsim *)lua_touserdata(L, simidx);
        cfg.seed = p2p_sim_host_seed(s->sim);
        now = p2p_sim_now(s->sim);
        /* Simulated wall clock: a fixed epoch plus virtual time, so runs are reproducible. */
        cfg.unix_us = UINT64_C(1700000000000000) + now;
    } else {
        rc = p2p_udp_open(&n->udp, o->host, (uint16_t)o->port, err, sizeof err);
        if (rc != 0) {
            p2p_identity_wipe(&key);
            node_free_resources(n);
            if (err[0] == '\0')
                snprintf(err, sizeof err, "%s", p2p_strerror(rc));
            return push_fail(L, err);
        }
        now = p2p_udp_now();
        cfg.unix_us = p2p_udp_unix_now();
    }
    rc = p2p_host_new(&n->host, &cfg, now);
    p2p_identity_wipe(&key);
    if (rc != 0) {
        n->host = NULL;
        node_free_resources(n);
        return push_fail(L, error_text(rc));
    }
    if (simidx != 0) {
        lsim *s = (lsim *)lua_touserdata(L, simidx);
        rc = p2p_sim_attach(s->sim, n->host, (uint16_t)o->port, o->nat, &n->local);
        if (rc != 0) {
            node_free_resources(n);
            return push_fail(L, rc == P2P_ERR_LIMIT ? "address in use or sim full"
                                                    : error_text(rc));
        }
        n->sim = n->simref = s;
        s->attached++;
        (void)p2p_host_add_address(n->host, &n->local, now);
    } else {
        p2p_addr local[P2P_LOCAL_ADDRS];
        size_t i, count = p2p_udp_local_addrs(n->udp, local, P2P_LOCAL_ADDRS);
        for (i = 0; i < count; i++)
            (void)p2p_host_add_address(n->host, &local[i], now);
    }
    p2p_id_to_hex(p2p_host_id(n->host), n->hex);
    n->closed = 0;
    lua_settop(L, nidx);
    return 1;

nomem:
    p2p_identity_wipe(&key);
    node_free_resources(n);
    return push_fail(L, "out of memory");
}

/* p2pnet.node([opts]) -> node | nil, err */
static int l_node(lua_State *L) {
    node_opts o;
    int optidx = 1;
    lua_settop(L, 1);
    read_node_opts(L, optidx, "p2pnet.node", 0, &o);
    return make_node(L, optidx, 0, &o);
}

/* ---- Node methods --------------------------------------------------------------------- */

static int node_index(lua_State *L) {
    lnode *n = to_node(L, 1);
    const char *k = lua_tostring(L, 2);
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1));
    if (!lua_isnil(L, -1))
        return 1;
    if (k != NULL && strcmp(k, "id") == 0) {
        if (n->hex[0] == '\0')
            return 0;
        lua_pushstring(L, n->hex);
        return 1;
    }
    return 0;
}

static int node_tostring(lua_State *L) {
    lnode *n = to_node(L, 1);
    lua_pushfstring(L, "p2pnet.Node(%s%s)", n->hex[0] ? n->hex : "?",
                    n->closed ? ", closed" : "");
    return 1;
}

/* The one close behind close(), __gc and __close: graceful leave, then free. */
static void node_close(lua_State *L, int nidx) {
    lnode *n = to_node(L, nidx);
    nidx = lp_absindex(L, nidx);
    if (n->closed || n->closing)
        return;
    if (n->draining) {
        /* a finalizer during a drain: the drain holds the host; close when it ends */
        n->close_deferred = 1;
        return;
    }
    n->closing = 1;
    if (n->host != NULL) {
        (void)p2p_host_close(n->host, node_now(n));
        after_call(L, nidx);
    }
    /* Peers the core did not report as gone end here too: connected ones with a leave
     * event, connecting ones silently (their reply callbacks still fail). */
    uv_field(L, nidx, "peers");
    for (;;) {
        lpeer *p;
        lua_pushnil(L);
        if (lua_next(L, -2) == 0)
            break;
        lua_remove(L, -2);
        p = check_peer(L, -1);
        if (peer_info(p)->state != P2P_PEER_CONNECTED) {
            retire_peer(L, nidx, -1);
            fail_callbacks(L, n, -1, "disconnected");
            lua_pop(L, 1);
            continue;
        }
        lua_createtable(L, 0, 3);
        lua_pushinteger(L, P2P_EV_LEAVE);
        lua_setfield(L, -2, "t");
        lua_pushinteger(L, P2P_LEAVE_CLOSED);
        lua_setfield(L, -2, "r");
        lua_pushvalue(L, -2);
        lua_setfield(L, -2, "p");
        retire_peer(L, nidx, -2);
        queue_push(L, nidx);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    node_free_resources(n);
    n->closed = 1;
    (void)dispatch_all(L, nidx);
    n->closing = 0;
    /* The Lua layer's hook (uservalue.lua.on_close): wakes its waiting tasks, whichever of
     * close(), __gc and __close got here. */
    uv_field(L, nidx, "lua");
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "on_close");
        lua_remove(L, -2);
        if (lua_isfunction(L, -1))
            call_simple(L, n, 0, "close");
        else
            lua_pop(L, 1);
    } else {
        lua_pop(L, 1);
    }
    /* Release every handler and callback reference. */
    lp_getuservalue(L, nidx);
    if (lua_istable(L, -1)) {
        lua_newtable(L);
        lua_setfield(L, -2, "handlers");
        lua_pushnil(L);
        lua_setfield(L, -2, "on_request");
    }
    lua_pop(L, 1);
}

static int node_close_m(lua_State *L) {
    to_node(L, 1);
    lua_settop(L, 1);
    node_close(L, 1);
    return 0;
}

static int node_gc(lua_State *L) {
    lnode *n = to_node(L, 1);
    lua_settop(L, 1);
    if (!n->closed) {
        node_close(L, 1);
    } else {
        node_free_resources(n);
    }
    return 0;
}

/* node:_busy(for_run) -> nil, or why node:poll() (node:run() with for_run) would raise
 * now; for the Lua layer, which checks before it resumes tasks. */
static int node_busy_m(lua_State *L) {
    lnode *n = to_node(L, 1);
    if (n->draining)
        lua_pushliteral(L, BUSY_DRAINING);
    else if (n->dispatching > 0)
        lua_pushliteral(L, "not re-entrant (called from a handler of this node)");
    else if (lua_toboolean(L, 2) && n->sim != NULL && n->sim->running)
        lua_pushliteral(L, "not re-entrant (called from a handler while its simulator runs)");
    else
        lua_pushnil(L);
    return 1;
}

static int node_closed(lua_State *L) {
    lnode *n = to_node(L, 1);
    lua_pushboolean(L, n->closed);
    return 1;
}

static int node_address(lua_State *L) {
    lnode *n = check_open_node(L, 1, "node:address");
    p2p_addr a;
    if (n->udp != NULL)
        p2p_udp_local(n->udp, &a);
    else
        a = n->local;
    push_addr(L, &a);
    return 1;
}

/* node:addresses() -> { {address = "ip:port", kind = "local" | "reflexive"}, ... } */
static int node_addresses(lua_State *L) {
    lnode *n = check_open_node(L, 1, "node:addresses");
    p2p_addr a[P2P_LOCAL_ADDRS + P2P_REFLEXIVE_ADDRS];
    int kinds[P2P_LOCAL_ADDRS + P2P_REFLEXIVE_ADDRS];
    size_t i, count = p2p_host_addresses(n->host, a, kinds, P2P_LOCAL_ADDRS + P2P_REFLEXIVE_ADDRS);
    if (count > P2P_LOCAL_ADDRS + P2P_REFLEXIVE_ADDRS)
        count = P2P_LOCAL_ADDRS + P2P_REFLEXIVE_ADDRS;
    lua_createtable(L, (int)count, 0);
    for (i = 0; i < count; i++) {
        lua_createtable(L, 0, 2);
        push_addr(L, &a[i]);
        lua_setfield(L, -2, "address");
        lua_pushstring(L, kinds[i] == P2P_ADDR_LOCAL ? "local" : "reflexive");
        lua_setfield(L, -2, "kind");
        lua_rawseti(L, -2, (int)(i + 1));
    }
    return 1;
}

static int node_fd(lua_State *L) {
    lnode *n = check_open_node(L, 1, "node:fd");
    if (n->udp == NULL)
        return push_fail(L, "a simulated node has no descriptor");
    lua_pushinteger(L, p2p_udp_fd(n->udp));
    return 1;
}

/* node:_now() -> seconds on the node's clock (virtual time for simulated nodes). Works on
 * closed nodes too, for the loops of the Lua layer. */
static int node_now_m(lua_State *L) {
    lnode *n = to_node(L, 1);
    uint64_t now;
    if (n->simref != NULL)
        now = n->simref->sim != NULL ? p2p_sim_now(n->simref->sim) : 0;
    else
        now = p2p_udp_now();
    lua_pushnumber(L, (lua_Number)now / 1e6);
    return 1;
}

/* Pushes the table at uservalue.lua of the userdata at 1, creating it: private state of the
 * pure-Lua layer, kept with the object instead of in a global weak table. */
static int push_lua_state(lua_State *L) {
    lua_settop(L, 1);
    lp_getuservalue(L, 1);
    lua_getfield(L, 2, "lua");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, 2, "lua");
    }
    return 1;
}

static int node_state_m(lua_State *L) {
    to_node(L, 1);
    return push_lua_state(L);
}

static int sim_state_m(lua_State *L) {
    luaL_checkudata(L, 1, SIM_MT);
    return push_lua_state(L);
}

static int node_sim_m(lua_State *L) {
    lnode *n = to_node(L, 1);
    (void)n;
    uv_field(L, 1, "sim");
    return 1;
}

static int node_next_timeout(lua_State *L) {
    lnode *n = check_open_node(L, 1, "node:next_timeout");
    uint64_t t, now;
    if (n->q_head != n->q_tail) {
        lua_pushnumber(L, 0);
        return 1;
    }
    t = p2p_host_next_timeout(n->host);
    now = node_now(n);
    if (t == P2P_TIME_NEVER)
        lua_pushnumber(L, NO_TIMEOUT_SECONDS);
    else if (t <= now)
        lua_pushnumber(L, 0);
    else
        lua_pushnumber(L, (lua_Number)(t - now) / 1e6);
    return 1;
}

static int check_seconds(lua_State *L, int idx, const char *fname, const char *arg,
                         double *out) {
    double s;
    *out = 0;
    if (lua_isnoneornil(L, idx))
        return 1;
    s = lua_type(L, idx) == LUA_TNUMBER ? (double)lua_tonumber(L, idx) : -1;
    if (!(s >= 0))
        return arg_error(L, fname, arg, "must be a number of seconds >= 0");
    *out = s > MAX_SECONDS ? MAX_SECONDS : s;
    return 1;
}

/* node:poll([timeout]) -> events dispatched */
static int node_poll(lua_State *L) {
    lnode *n = check_open_node(L, 1, "node:poll");
    double timeout;
    uint64_t deadline, now;
    int count;
    check_seconds(L, 2, "node:poll", "timeout", &timeout);
    check_not_reentrant(L, n, "node:poll");
    lua_settop(L, 1);

    drain_events(L, 1);
    count = dispatch_all(L, 1);
    if (n->udp == NULL || count > 0 || n->closed)
        goto done;
    now = p2p_udp_now();
    deadline = now + (uint64_t)(timeout * 1e6);
    for (;;) {
        int rc = p2p_udp_pump(n->udp, n->host, deadline > now ? deadline - now : 0);
        drain_events(L, 1);
        count += dispatch_all(L, 1);
        if (rc < 0 && count == 0)
            return push_fail(L, "socket error");
        if (n->closed || count > 0)
            break;
        now = p2p_udp_now();
        if (now >= deadline)
            break;
    }
done:
    lua_pushinteger(L, count);
    return 1;
}

static int node_on(lua_State *L) {
    static const char *const events[] = { "join", "leave", "message", "error", NULL };
    const char *ev;
    int i, found = 0;
    check_open_node(L, 1, "node:on");
    ev = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "";
    for (i = 0; events[i] != NULL; i++)
        if (strcmp(ev, events[i]) == 0)
            found = 1;
    if (!found)
        return arg_error(L, "node:on", "event",
                         "must be \"join\", \"leave\", \"message\" or \"error\"");
    if (!lua_isnoneornil(L, 3) && !lua_isfunction(L, 3))
        return arg_error(L, "node:on", "fn", "must be a function or nil");
    lua_settop(L, 3);
    uv_field(L, 1, "handlers");
    lua_pushvalue(L, 3);
    lua_setfield(L, -2, ev);
    return 0;
}

/* node:connect(target [, opts]) -> peer | nil, err */
static int node_connect(lua_State *L) {
    lnode *n = check_open_node(L, 1, "node:connect");
    size_t tlen;
    const char *target = check_string(L, 2, "node:connect", "target", &tlen);
    uint8_t expected[32], tid[32];
    int have_expected = 0, rc;
    const char *via = NULL;
    p2p_addr addr;
    p2p_peer_handle h = 0;

    if (!lua_isnoneornil(L, 3)) {
        if (!lua_istable(L, 3))
            arg_error(L, "node:connect", "opts", "must be a table or nil");
        lua_pushnil(L);
        while (lua_next(L, 3) != 0) {
            const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
            if (strcmp(k, "id") == 0) {
                if (!parse_id_arg(L, -1, expected))
                    luaL_error(L, "node:connect: option 'id' must be 64 hex characters");
                have_expected = 1;
            } else if (strcmp(k, "via") == 0) {
                if (lua_type(L, -1) != LUA_TSTRING)
                    luaL_error(L, "node:connect: option 'via' must be a \"host:port\" string");
                via = lua_tostring(L, -1);
            } else {
                luaL_error(L, "node:connect: unknown option '%s'", k);
            }
            lua_pop(L, 1);
        }
    }
    lua_settop(L, 3);
    if (refuse_busy(L, n, "node:connect"))
        return 2;

    if (tlen == 64 && is_hex_id(target, tlen)) {
        (void)p2p_id_from_hex(tid, target, tlen);
        h = p2p_host_find(n->host, tid);
        if (h != 0) {
            push_peer(L, 1, h);
            return 1;
        }
        if (via != NULL) {
            p2p_addr vaddr;
            rc = n->udp != NULL ? p2p_udp_resolve(n->udp, via, &vaddr) : p2p_addr_parse(&vaddr, via);
            if (rc != 0) {
                lua_pushnil(L);
                lua_pushfstring(L, "bad address '%s'", via);
                return 2;
            }
            rc = p2p_host_connect_via(n->host, tid, &vaddr, node_now(n), &h);
        } else {
            rc = p2p_host_connect_id(n->host, tid, node_now(n), &h);
        }
        if (rc == 0) {
            push_peer(L, 1, h);
            after_call(L, 1);
            lua_settop(L, 4);
            return 1;
        }
        after_call(L, 1);
        if (rc == P2P_ERR_INVALID)
            return push_fail(L, "that is this node's own id");
        if (rc != P2P_ERR_PEER)
            return push_fail(L, error_text(rc));
        return push_fail(L, "unknown peer id");
    }
    /* A direct address needs no mediator: `via` is ignored. */
    if (n->udp != NULL)
        rc = p2p_udp_resolve(n->udp, target, &addr);
    else
        rc = p2p_addr_parse(&addr, target);
    if (rc != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "bad address '%s'", target);
        return 2;
    }
    rc = p2p_host_connect(n->host, &addr, have_expected ? expected : NULL, node_now(n), &h);
    if (rc != 0) {
        after_call(L, 1);
        return push_fail(L, error_text(rc));
    }
    push_peer(L, 1, h);
    after_call(L, 1);
    lua_settop(L, 4);
    return 1;
}

static int node_peers(lua_State *L) {
    lnode *n = check_open_node(L, 1, "node:peers");
    p2p_peer_handle stackbuf[64], *hs = stackbuf;
    size_t count, cap = 64, i;
    lua_settop(L, 1);
    count = p2p_host_peers(n->host, hs, cap);
    if (count > cap) {
        hs = (p2p_peer_handle *)lua_newuserdata(L, count * sizeof *hs);
        cap = count;
        count = p2p_host_peers(n->host, hs, cap);
        if (count > cap)
            count = cap;
    }
    lua_createtable(L, (int)count, 0);
    for (i = 0; i < count; i++) {
        push_peer(L, 1, hs[i]);
        lua_rawseti(L, -2, (int)(i + 1));
    }
    return 1;
}

static int node_peer(lua_State *L) {
    lnode *n = check_open_node(L, 1, "node:peer");
    uint8_t id[32];
    p2p_peer_handle h;
    if (!parse_id_arg(L, 2, id))
        return arg_error(L, "node:peer", "id", "must be 64 hex characters");
    lua_settop(L, 1);
    h = p2p_host_find(n->host, id);
    if (h == 0)
        return 0;
    push_peer(L, 1, h);
    return 1;
}

static uint16_t check_type_arg(lua_State *L, int idx, const char *fname) {
    int64_t t;
    if (!lp_tointeger(L, idx, 0, 65535, &t))
        arg_error(L, fname, "type", "must be an integer 0-65535");
    return (uint16_t)t;
}

/* node:broadcast(type, data) -> message id | nil, err */
static int node_broadcast(lua_State *L) {
    lnode *n = check_open_node(L, 1, "node:broadcast");
    uint16_t type = check_type_arg(L, 2, "node:broadcast");
    size_t len;
    const char *data = check_string(L, 3, "node:broadcast", "data", &len);
    uint64_t seq = 0;
    int rc;
    lua_settop(L, 3);
    if (refuse_busy(L, n, "node:broadcast"))
        return 2;
    rc = p2p_host_broadcast(n->host, type, (const uint8_t *)data, len, &seq, node_now(n));
    after_call(L, 1);
    if (rc != 0)
        return push_fail(L, error_text(rc));
    push_message_id(L, n->hex, 0, 0, seq);
    return 1;
}

static void push_u64_field(lua_State *L, const char *k, uint64_t v) {
    lp_pushu64(L, v);
    lua_setfield(L, -2, k);
}

static int node_stats(lua_State *L) {
    lnode *n = check_open_node(L, 1, "node:stats");
    p2p_stats st;
    p2p_host_stats(n->host, &st);
    lua_createtable(L, 0, 27);
    push_u64_field(L, "peers", st.peers);
    push_u64_field(L, "packets_sent", st.packets_sent);
    push_u64_field(L, "packets_received", st.packets_received);
    push_u64_field(L, "bytes_sent", st.bytes_sent);
    push_u64_field(L, "bytes_received", st.bytes_received);
    push_u64_field(L, "retransmits", st.retransmits);
    push_u64_field(L, "dropped", st.dropped);
    push_u64_field(L, "handshakes", st.handshakes);
    push_u64_field(L, "members", st.members);
    push_u64_field(L, "broadcasts_relayed", st.broadcasts_relayed);
    push_u64_field(L, "introductions", st.introductions);
    push_u64_field(L, "relayed_packets", st.relayed_packets);
    push_u64_field(L, "relayed_bytes", st.relayed_bytes);
    push_u64_field(L, "relay_dropped", st.relay_dropped);
    push_u64_field(L, "path_changes", st.path_changes);
    push_u64_field(L, "memory", st.memory);
    push_u64_field(L, "memory_peak", st.memory_peak);
    push_u64_field(L, "dropped_budget", st.dropped_budget);
    push_u64_field(L, "dropped_amplification", st.dropped_amplification);
    push_u64_field(L, "dropped_unsolicited", st.dropped_unsolicited);
    push_u64_field(L, "dropped_replay", st.dropped_replay);
    push_u64_field(L, "cookies_sent", st.cookies_sent);
    push_u64_field(L, "under_load", st.under_load);
    push_u64_field(L, "rekeys", st.rekeys);
    push_u64_field(L, "work_dh", st.work_dh);
    push_u64_field(L, "work_verify", st.work_verify);
    push_u64_field(L, "callback_errors", n->callback_errors);
    return 1;
}

/* ---- Peer methods --------------------------------------------------------------------- */

static int peer_index(lua_State *L) {
    lpeer *p = check_peer(L, 1);
    const char *k = lua_tostring(L, 2);
    const p2p_peer_info *info;
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1));
    if (!lua_isnil(L, -1) || k == NULL)
        return 1;
    info = peer_info(p);
    if (strcmp(k, "id") == 0) {
        if (!info->has_id)
            return 0;
        push_id(L, info->id);
    } else if (strcmp(k, "address") == 0) {
        push_addr(L, &info->address);
    } else if (strcmp(k, "state") == 0) {
        lua_pushstring(L, state_text(info->state));
    } else if (strcmp(k, "direct") == 0) {
        lua_pushboolean(L, info->direct);
    } else if (strcmp(k, "rtt") == 0) {
        lua_pushnumber(L, (lua_Number)info->srtt_us / 1e6);
    } else {
        return 0;
    }
    return 1;
}

static int peer_tostring(lua_State *L) {
    lpeer *p = check_peer(L, 1);
    const p2p_peer_info *info = peer_info(p);
    char hex[65] = "?";
    char addr[64] = "?";
    if (info->has_id)
        p2p_id_to_hex(info->id, hex);
    if (info->address.family != P2P_AF_NONE)
        (void)p2p_addr_format(&info->address, addr, sizeof addr);
    lua_pushfstring(L, "p2pnet.Peer(%s, %s, %s)", hex, addr, state_text(info->state));
    return 1;
}

/* The node of a peer, checked open; the peer's uservalue node is pushed to `*nidx`. */
static lnode *peer_node(lua_State *L, lpeer *p, int *nidx, const char *fname) {
    if (p->node->closed || p->node->closing || p->node->host == NULL)
        luaL_error(L, "%s: node is closed", fname);
    uv_field(L, 1, "node");
    *nidx = lua_gettop(L);
    return p->node;
}

/* peer:send(type, data [, callback]) -> true | nil, err */
static int peer_send(lua_State *L) {
    lpeer *p = check_peer(L, 1);
    uint16_t type = check_type_arg(L, 2, "peer:send");
    size_t len;
    const char *data = check_string(L, 3, "peer:send", "data", &len);
    int want_reply, rc, nidx;
    uint64_t seq = 0;
    lnode *n;
    if (!lua_isnoneornil(L, 4) && !lua_isfunction(L, 4))
        return arg_error(L, "peer:send", "callback", "must be a function or nil");
    want_reply = lua_isfunction(L, 4);
    lua_settop(L, 4);
    n = peer_node(L, p, &nidx, "peer:send");
    if (p->dead)
        return push_fail(L, "disconnected");
    if (refuse_busy(L, n, "peer:send"))
        return 2;
    rc = p2p_peer_send(n->host, p->handle, type, (const uint8_t *)data, len, want_reply, &seq,
                       node_now(n));
    if (rc != 0) {
        after_call(L, nidx);
        return push_fail(L, error_text(rc));
    }
    if (want_reply) {
        uv_field(L, 1, "cbs");
        lua_pushnumber(L, (lua_Number)seq);
        lua_pushvalue(L, 4);
        lua_rawset(L, -3);
        lua_pop(L, 1);
    }
    after_call(L, nidx);
    lua_pushboolean(L, 1);
    return 1;
}

/* peer:send_unreliable(type, data) -> true | nil, err */
static int peer_send_unreliable(lua_State *L) {
    lpeer *p = check_peer(L, 1);
    uint16_t type = check_type_arg(L, 2, "peer:send_unreliable");
    size_t len;
    const char *data = check_string(L, 3, "peer:send_unreliable", "data", &len);
    int rc, nidx;
    lnode *n;
    lua_settop(L, 3);
    n = peer_node(L, p, &nidx, "peer:send_unreliable");
    if (p->dead)
        return push_fail(L, "disconnected");
    if (refuse_busy(L, n, "peer:send_unreliable"))
        return 2;
    if (len > P2P_MAX_DATAGRAM)
        return push_fail(L, "datagram too big");
    rc = p2p_peer_send_datagram(n->host, p->handle, type, (const uint8_t *)data, len,
                                node_now(n));
    after_call(L, nidx);
    if (rc != 0)
        return push_fail(L, rc == P2P_ERR_TOO_BIG ? "datagram too big" : error_text(rc));
    lua_pushboolean(L, 1);
    return 1;
}

/* peer:disconnect() -> true | nil, err */
static int peer_disconnect(lua_State *L) {
    lpeer *p = check_peer(L, 1);
    int rc, nidx;
    lnode *n;
    lua_settop(L, 1);
    n = peer_node(L, p, &nidx, "peer:disconnect");
    if (p->dead)
        return push_fail(L, "disconnected");
    if (n->draining) {
        /* a finalizer during a drain: done when the drain ends (run_deferred) */
        uv_field(L, nidx, "deferred");
        if (!lua_istable(L, -1)) {
            lua_pop(L, 1);
            lua_newtable(L);
            lp_getuservalue(L, nidx);
            lua_pushvalue(L, -2);
            lua_setfield(L, -2, "deferred");
            lua_pop(L, 1);
        }
        lua_pushvalue(L, 1);
        lua_rawseti(L, -2, (int)lp_rawlen(L, -2) + 1);
        lua_pop(L, 1);
        lua_pushboolean(L, 1);
        return 1;
    }
    rc = p2p_peer_disconnect(n->host, p->handle, node_now(n));
    after_call(L, nidx);
    if (rc != 0)
        return push_fail(L, error_text(rc));
    lua_pushboolean(L, 1);
    return 1;
}

/* ---- Sim ------------------------------------------------------------------------------ */

static lsim *check_sim(lua_State *L, int idx) {
    lsim *s = (lsim *)luaL_checkudata(L, idx, SIM_MT);
    if (s->sim == NULL || s->collected)
        luaL_error(L, "sim is freed");
    return s;
}

static int read_probability(lua_State *L, int idx, const char *k, double *out) {
    double p;
    lua_getfield(L, idx, k);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    p = lua_type(L, -1) == LUA_TNUMBER ? (double)lua_tonumber(L, -1) : -1;
    if (!(p >= 0 && p <= 1))
        luaL_error(L, "p2pnet.sim: option '%s' must be a probability 0-1", k);
    *out = p;
    lua_pop(L, 1);
    return 1;
}

static void read_sim_seconds(lua_State *L, int idx, const char *k, uint64_t *out) {
    double s;
    lua_getfield(L, idx, k);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return;
    }
    s = lua_type(L, -1) == LUA_TNUMBER ? (double)lua_tonumber(L, -1) : -1;
    if (!(s >= 0 && s <= 3600))
        luaL_error(L, "p2pnet.sim: option '%s' must be a number of seconds 0-3600", k);
    *out = (uint64_t)(s * 1e6 + 0.5);
    lua_pop(L, 1);
}

/* p2pnet.sim([opts]) -> sim */
static int l_sim(lua_State *L) {
    p2p_sim_config cfg;
    lsim *s;
    int rc;
    memset(&cfg, 0, sizeof cfg);
    lua_settop(L, 1);
    if (!lua_isnil(L, 1)) {
        if (!lua_istable(L, 1))
            return luaL_error(L, "p2pnet.sim: options must be a table");
        lua_pushnil(L);
        while (lua_next(L, 1) != 0) {
            static const char *const known[] = { "seed", "latency", "jitter", "loss",
                                                 "duplicate", "reorder", NULL };
            const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
            int i, ok = 0;
            for (i = 0; known[i] != NULL; i++)
                if (strcmp(k, known[i]) == 0)
                    ok = 1;
            if (!ok)
                return luaL_error(L, "p2pnet.sim: unknown option '%s'", k);
            lua_pop(L, 1);
        }
        lua_getfield(L, 1, "seed");
        if (!lua_isnil(L, -1)) {
            int64_t seed;
            if (!lp_tointeger(L, -1, 0, 9007199254740992.0, &seed))
                return luaL_error(L, "p2pnet.sim: option 'seed' must be an integer >= 0");
            cfg.seed = (uint64_t)seed;
        }
        lua_pop(L, 1);
        read_sim_seconds(L, 1, "latency", &cfg.latency_us);
        read_sim_seconds(L, 1, "jitter", &cfg.jitter_us);
        read_probability(L, 1, "loss", &cfg.loss);
        read_probability(L, 1, "duplicate", &cfg.duplicate);
        read_probability(L, 1, "reorder", &cfg.reorder);
    }
    s = (lsim *)lua_newuserdata(L, sizeof *s);
    memset(s, 0, sizeof *s);
    rc = p2p_sim_new(&s->sim, &cfg);
    if (rc != 0) {
        s->sim = NULL;
        return push_fail(L, error_text(rc));
    }
    lua_newtable(L); /* nodes, in creation order */
    lp_setuservalue(L, -2);
    luaL_getmetatable(L, SIM_MT);
    lua_setmetatable(L, -2);
    return 1;
}

static int sim_gc(lua_State *L) {
    lsim *s = (lsim *)luaL_checkudata(L, 1, SIM_MT);
    if (s->collected)
        return 0;
    s->collected = 1;
    /* Nodes collected in the same cycle may be finalized after us: the last one frees. */
    if (s->attached == 0 && s->sim != NULL) {
        p2p_sim_free(s->sim);
        s->sim = NULL;
    }
    return 0;
}

static int sim_tostring(lua_State *L) {
    lsim *s = (lsim *)luaL_checkudata(L, 1, SIM_MT);
    lua_pushfstring(L, "p2pnet.Sim(%f s)",
                    s->sim != NULL ? (double)p2p_sim_now(s->sim) / 1e6 : 0.0);
    return 1;
}

/* sim:node([opts]) -> node | nil, err */
static int sim_node(lua_State *L) {
    node_opts o;
    int nodeidx;
    check_sim(L, 1);
    lua_settop(L, 2);
    read_node_opts(L, 2, "sim:node", 1, &o);
    if (make_node(L, 2, 1, &o) != 1)
        return 2;
    nodeidx = lua_gettop(L);
    lp_getuservalue(L, 1);
    lua_pushvalue(L, nodeidx);
    lua_rawseti(L, -2, (int)lp_rawlen(L, -2) + 1);
    lua_pop(L, 1);
    return 1;
}

static int sim_now(lua_State *L) {
    lsim *s = check_sim(L, 1);
    lua_pushnumber(L, (lua_Number)p2p_sim_now(s->sim) / 1e6);
    return 1;
}

/* Drains and dispatches every open node of the sim at 1, in creation order. */
static int sim_dispatch(lua_State *L) {
    int i, count = 0, len;
    lp_getuservalue(L, 1);
    len = (int)lp_rawlen(L, -1);
    for (i = 1; i <= len; i++) {
        lnode *n;
        lua_rawgeti(L, -1, i);
        n = (lnode *)lua_touserdata(L, -1);
        if (n != NULL && !n->closed) {
            drain_events(L, -1);
            count += dispatch_all(L, -1);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return count;
}

/* Pushes why sim:run() must refuse now, or nil. */
static void push_sim_busy(lua_State *L, const lsim *s) {
    if (s->running)
        lua_pushliteral(L, "sim:run is not re-entrant (called from a handler)");
    else if (s->draining > 0)
        lua_pushliteral(L, "sim:run is not re-entrant (called from a finalizer during a drain)");
    else
        lua_pushnil(L);
}

/* sim:_busy() -> nil, or the error sim:run() would raise now (for the Lua layer). */
static int sim_busy_m(lua_State *L) {
    push_sim_busy(L, check_sim(L, 1));
    return 1;
}

/* Runs the network until virtual time `until` (microseconds). With stop_on_event, returns
 * early after the first step that dispatched an event (the Lua layer then resumes the tasks
 * it woke); returns 1 when it stopped early. */
static int sim_run_to(lua_State *L, lsim *s, uint64_t until, int stop_on_event) {
    int stopped = 0;
    push_sim_busy(L, s);
    if (!lua_isnil(L, -1))
        lua_error(L);
    lua_pop(L, 1);
    s->running = 1;
    if (sim_dispatch(L) > 0 && stop_on_event) {
        s->running = 0;
        return 1;
    }
    for (;;) {
        int more = p2p_sim_step(s->sim, until);
        int events = sim_dispatch(L);
        if (!more && p2p_sim_now(s->sim) >= until)
            break;
        if (events > 0 && stop_on_event) {
            stopped = 1;
            break;
        }
    }
    s->running = 0;
    return stopped;
}

/* sim:run(seconds) */
static int sim_run(lua_State *L) {
    lsim *s = check_sim(L, 1);
    double secs;
    lua_settop(L, 2);
    if (lua_type(L, 2) != LUA_TNUMBER || !((double)lua_tonumber(L, 2) >= 0))
        return arg_error(L, "sim:run", "seconds", "must be a number >= 0");
    secs = (double)lua_tonumber(L, 2);
    if (secs > MAX_SECONDS)
        secs = MAX_SECONDS;
    (void)sim_run_to(L, s, p2p_sim_now(s->sim) + (uint64_t)(secs * 1e6 + 0.5), 0);
    return 0;
}

/* sim:_run_until(t [, stop_on_event]) -> stopped early: runs to the absolute virtual time t
 * (seconds); for the Lua layer. */
static int sim_run_until(lua_State *L) {
    lsim *s = check_sim(L, 1);
    double t = lua_type(L, 2) == LUA_TNUMBER ? (double)lua_tonumber(L, 2) : -1;
    uint64_t until, now = p2p_sim_now(s->sim);
    lua_settop(L, 3);
    if (!(t >= 0))
        return arg_error(L, "sim:_run_until", "t", "must be a number >= 0");
    if (t > MAX_SECONDS)
        t = MAX_SECONDS;
    /* Round up: the caller wants time to have reached t, never to stop a microsecond short
     * of it and then ask again forever. */
    until = (uint64_t)ceil(t * 1e6 - 1e-3);
    lua_pushboolean(L, sim_run_to(L, s, until > now ? until : now, lua_toboolean(L, 3)));
    return 1;
}

/* sim:_next_time() -> seconds of virtual time of the next network or timer event, or nil */
static int sim_next_time(lua_State *L) {
    lsim *s = check_sim(L, 1);
    uint64_t t = p2p_sim_next_time(s->sim);
    if (t == P2P_TIME_NEVER)
        return 0;
    lua_pushnumber(L, (lua_Number)t / 1e6);
    return 1;
}

static int sim_stats(lua_State *L) {
    lsim *s = check_sim(L, 1);
    p2p_sim_stats st;
    p2p_sim_stats_get(s->sim, &st);
    lua_createtable(L, 0, 5);
    push_u64_field(L, "sent", st.sent);
    push_u64_field(L, "delivered", st.delivered);
    push_u64_field(L, "lost", st.lost);
    push_u64_field(L, "duplicated", st.duplicated);
    push_u64_field(L, "reordered", st.reordered);
    push_u64_field(L, "nat_filtered", st.nat_filtered);
    return 1;
}

/* sim:rebind(node): the node's NAT forgets its mappings; new ones get new ports. */
static int sim_rebind(lua_State *L) {
    lsim *s = check_sim(L, 1);
    lnode *n = (lnode *)lp_testudata(L, 2, NODE_MT);
    if (n == NULL || n->simref != s)
        arg_error(L, "sim:rebind", "node", "must be a node of this sim");
    if (n->host == NULL || n->closed || p2p_sim_rebind(s->sim, n->host) != 0)
        return push_fail(L, "the node is closed or not behind a NAT");
    lua_pushboolean(L, 1);
    return 1;
}

/* ---- module --------------------------------------------------------------------------- */

static const luaL_Reg node_methods[] = {
    { "address", node_address },
    { "addresses", node_addresses },
    { "connect", node_connect },
    { "peers", node_peers },
    { "peer", node_peer },
    { "broadcast", node_broadcast },
    { "on", node_on },
    { "poll", node_poll },
    { "fd", node_fd },
    { "next_timeout", node_next_timeout },
    { "stats", node_stats },
    { "close", node_close_m },
    { "_now", node_now_m },
    { "_sim", node_sim_m },
    { "_closed", node_closed },
    { "_busy", node_busy_m },
    { "_state", node_state_m },
    { NULL, NULL }
};

static const luaL_Reg peer_methods[] = {
    { "send", peer_send },
    { "send_unreliable", peer_send_unreliable },
    { "disconnect", peer_disconnect },
    { NULL, NULL }
};

static const luaL_Reg sim_methods[] = {
    { "node", sim_node },
    { "now", sim_now },
    { "run", sim_run },
    { "stats", sim_stats },
    { "rebind", sim_rebind },
    { "_run_until", sim_run_until },
    { "_next_time", sim_next_time },
    { "_state", sim_state_m },
    { "_busy", sim_busy_m },
    { NULL, NULL }
};

static const luaL_Reg no_methods[] = {
    { NULL, NULL }
};

static const luaL_Reg module_funcs[] = {
    { "identity", l_identity },
    { "node", l_node },
    { "sim", l_sim },
    { NULL, NULL }
};

/* Creates metatable `name` with a methods table; __index is `index` (given the methods as
 * upvalue) or the methods table itself. Leaves the methods table on the stack. */
static void new_class(lua_State *L, const char *name, const luaL_Reg *methods,
                      lua_CFunction index, lua_CFunction gc, lua_CFunction tostring) {
    luaL_newmetatable(L, name);
    lua_newtable(L);
    lp_setfuncs(L, methods, 0);
    if (index != NULL) {
        lua_pushvalue(L, -1);
        lua_pushcclosure(L, index, 1);
    } else {
        lua_pushvalue(L, -1);
    }
    lua_setfield(L, -3, "__index");
    if (gc != NULL) {
        lua_pushcfunction(L, gc);
        lua_setfield(L, -3, "__gc");
    }
    lua_pushcfunction(L, tostring);
    lua_setfield(L, -3, "__tostring");
    lua_pushliteral(L, "p2pnet");
    lua_setfield(L, -3, "__metatable");
    lua_remove(L, -2);
}

int luaopen_p2pnet_core(lua_State *L) {
    if (p2p_init() != 0)
        return luaL_error(L, "p2pnet: libsodium failed to initialise");

    lua_newtable(L); /* module */
    lp_setfuncs(L, module_funcs, 0);
    lua_newtable(L); /* _methods */

    new_class(L, IDENTITY_MT, no_methods, identity_index, identity_gc, identity_tostring);
    lua_setfield(L, -2, "Identity");

    new_class(L, NODE_MT, node_methods, node_index, node_gc, node_tostring);
#if LUA_VERSION_NUM >= 504
    luaL_getmetatable(L, NODE_MT);
    lua_pushcfunction(L, node_gc);
    lua_setfield(L, -2, "__close");
    lua_pop(L, 1);
#endif
    lua_setfield(L, -2, "Node");

    new_class(L, PEER_MT, peer_methods, peer_index, NULL, peer_tostring);
    lua_setfield(L, -2, "Peer");

    new_class(L, SIM_MT, sim_methods, NULL, sim_gc, sim_tostring);
    lua_setfield(L, -2, "Sim");

    /* core._methods: the method tables, for the pure-Lua layer to extend. */
    lua_setfield(L, -2, "_methods");

    lua_pushinteger(L, P2P_MAX_DATAGRAM);
    lua_setfield(L, -2, "MAX_DATAGRAM");
    lua_pushliteral(L, P2P_VERSION_STRING);
    lua_setfield(L, -2, "version");
    return 1;
}
