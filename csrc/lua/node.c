/*
 * node.c - p2pnet.Node: one p2p_host with either a UDP driver or its place in a Sim. Options
 * and creation, close (the one function behind close(), __gc and __close), and the methods.
 *
 * Every Lua call into the core is followed by a flush of the driver and a drain of the host's
 * events into the node's queue (events.c) - except sends, which a UDP node hands to the
 * socket at the next poll (docs/API.md, "When sends leave"). The queue is dispatched to
 * handlers only inside node:poll(), sim:run() and node:close(): handlers never run while a
 * core function is on the C stack, and a Lua error never crosses core frames.
 *
 * The pure-Lua layer (lua/p2pnet/init.lua) keeps its per-node state in the table that
 * core.state(node) returns; the node calls the hooks it finds there (`resume` from poll and
 * next_timeout, `stats`, `on_close`, and the event hooks called by events.c).
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "binding.h"

/* Largest byte budget an option takes: 2^53, what every Lua number holds exactly. */
#define MAX_BUDGET_BYTES 9007199254740992.0
/* node:peers() asks the host for this many handles without allocating. */
#define PEERS_ON_STACK 64
/* The core's max_half_open when the option is not given (p2p_config_init). */
#define DEFAULT_MAX_HALF_OPEN 256
/* 1 once the UDP driver has the io queue of issue 12 (p2p_udp_listen_tcp, ...). */
#ifdef P2P_UDP_IO_QUEUE
#define LP_DRIVER_IO 1
#else
#define LP_DRIVER_IO 0
#endif
/* Simulated wall clock: a fixed epoch plus virtual time, so runs are reproducible. */
#define SIM_EPOCH_US UINT64_C(1700000000000000)

lnode *lp_to_node(lua_State *L, int idx)
{
    return (lnode *)lp_checkudata(L, idx, NODE_MT);
}

/* Use after close is a programming error: it raises, naming the method ("node:send"). A
 * node inside close() counts as closed: only its own leave events and callbacks run then. */
lnode *lp_check_open_node(lua_State *L, int idx, const char *fname)
{
    lnode *n = lp_to_node(L, idx);
    if (n->closed || n->closing || n->host == NULL) luaL_error(L, "%s: node is closed", fname);
    return n;
}

int lp_refuse_busy(lua_State *L, const lnode *n, const char *fname)
{
    if (!n->draining) return 0;
    lua_pushnil(L);
    lua_pushfstring(L, "%s: " BUSY_DRAINING, fname);
    return 2;
}

/* Why a call that dispatches events (poll, run) must refuse now, or NULL: a handler would
 * otherwise run the handlers of the events queued behind its own, inside itself. */
static const char *reentry(const lnode *n, int for_run)
{
    if (n->draining) return BUSY_DRAINING;
    if (n->dispatching > 0) return "not re-entrant (called from a handler of this node)";
    if (for_run && n->sim != NULL && n->sim->running)
        return "not re-entrant (called from a handler while its simulator runs)";
    return NULL;
}

uint64_t lp_node_now(const lnode *n)
{
    return n->sim != NULL ? p2p_sim_now(n->sim->sim) : p2p_udp_now();
}

/* The clock, also after close (the Sim may be gone then: its last time is not kept). */
static uint64_t clock_us(const lnode *n)
{
    if (n->simref != NULL) return n->simref->sim != NULL ? p2p_sim_now(n->simref->sim) : 0;
    return p2p_udp_now();
}

/* ---- options ------------------------------------------------------------------------------ */

typedef struct node_opts {
    const char *host;
    int64_t port;
    lidentity *identity;       /* an Identity userdata, or NULL */
    const char *identity_path; /* or a key file */
    const char *network_key;
    size_t network_key_len;
    int has_allow, has_deny;
    size_t allow_count, deny_count;
    int on_request; /* stack index of the function, or 0 */
    double timeout;
    int64_t max_peers, max_message;
    int nat;
    int is_sim;
    int mesh;  /* 1 unless mesh = false */
    int relay; /* 1 unless relay = false */
    int64_t relay_sessions, relay_rate;
    int64_t peer_memory, memory; /* budgets in bytes; 0: the core's default */
    int64_t max_half_open, cookie_threshold;
    int congestion; /* issue 10: P2P_CC_* */
    /* issue 12 (reach every peer): docs/API.md "Reaching every peer" */
    int portmap;      /* 1 unless portmap = false */
    int punch;        /* 1 unless punch = false */
    size_t nstun;     /* `stun` servers given (resolved in make_node) */
    int fallback_off; /* fallback = false */
    size_t nfallback; /* `fallback` URLs given */
    lp_url fallback[LP_MAX_FALLBACK];
    int64_t tcp_port;      /* 0: no TCP/WebSocket listener */
    const char *ws_path;   /* NULL: LP_DEFAULT_WS_PATH */
    int discover_lan;      /* discover = "lan" */
    int64_t discover_port; /* 0: P2P_LAN_PORT_DEFAULT */
    int64_t stun_server;   /* 0: no STUN responder */
    /* simulated nodes only (docs/API.md "Simulator") */
    int64_t lan;            /* LAN domain, 0: none */
    int gateway;            /* P2P_SIM_GW_* + 1, 0: no gateway */
    int64_t nat_lo, nat_hi; /* the NAT's port range, 0: the default */
} node_opts;

static int opt_error(lua_State *L, const char *fname, const char *name, const char *what)
{
    return luaL_error(L, "%s: option '%s' %s", fname, name, what);
}

/* Checks that the value at idx is an array of 64-hex ids; returns how many. */
static size_t check_ids(lua_State *L, int idx, const char *fname, const char *name)
{
    size_t n, i;
    uint8_t tmp[P2P_ID_LEN];
    if (!lua_istable(L, idx)) opt_error(L, fname, name, "must be an array of 64-hex ids");
    n = lp_rawlen(L, idx);
    for (i = 0; i < n; i++) {
        lua_rawgeti(L, idx, (int)(i + 1));
        if (!lp_parse_id(L, -1, tmp))
            luaL_error(L, "%s: option '%s' item %d must be 64 hex characters", fname, name,
                       (int)(i + 1));
        lua_pop(L, 1);
    }
    return n;
}

/* Copies the ids of option `name` (validated by check_ids) into a new malloc'd array. */
static uint8_t (*copy_ids(lua_State *L, int optidx, const char *name, size_t count))[P2P_ID_LEN]
{
    uint8_t(*ids)[P2P_ID_LEN] =
        (uint8_t(*)[P2P_ID_LEN])malloc((count > 0 ? count : 1) * P2P_ID_LEN);
    size_t i;
    if (ids == NULL) return NULL;
    lua_pushstring(L, name);
    lua_rawget(L, optidx);
    for (i = 0; i < count; i++) {
        lua_rawgeti(L, -1, (int)(i + 1));
        (void)lp_parse_id(L, -1, ids[i]);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return ids;
}

/* The options `stun`, `fallback`: arrays of at most `max` strings; returns how many. */
static size_t check_strings(lua_State *L, int idx, const char *fname, const char *name, size_t max,
                            const char *what)
{
    size_t n, i;
    if (!lua_istable(L, idx)) opt_error(L, fname, name, what);
    n = lp_rawlen(L, idx);
    if (n > max) opt_error(L, fname, name, what);
    for (i = 0; i < n; i++) {
        lua_rawgeti(L, idx, (int)(i + 1));
        if (lua_type(L, -1) != LUA_TSTRING) opt_error(L, fname, name, what);
        lua_pop(L, 1);
    }
    /* a hole, or a key that is not 1..n: not an array */
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        int64_t k;
        if (!lp_tointeger(L, -2, 1, (double)n, &k)) opt_error(L, fname, name, what);
        lua_pop(L, 1);
    }
    return n;
}

/* A URL path: starts with "/", printable ASCII without spaces, shorter than LP_PATH_SIZE. */
static int path_ok(const char *p, size_t len)
{
    size_t i;
    if (len == 0 || len >= LP_PATH_SIZE || p[0] != '/') return 0;
    for (i = 0; i < len; i++)
        if ((unsigned char)p[i] <= ' ' || (unsigned char)p[i] >= 0x7f) return 0;
    return 1;
}

int lp_parse_url(const char *s, size_t len, lp_url *u, const char **why)
{
    const char *rest, *slash, *hostend;
    size_t hlen;
    int64_t port = 0;
    memset(u, 0, sizeof *u);
    if (strlen(s) != len) return *why = "must not hold NUL bytes", 0;
    if (strncmp(s, "wss://", 6) == 0)
        return *why = "wss:// is not supported (put a TLS proxy in front; docs/OPENRESTY.md)", 0;
    if (strncmp(s, "tcp://", 6) == 0)
        u->ws = 0;
    else if (strncmp(s, "ws://", 5) == 0)
        u->ws = 1;
    else
        return *why = "must start with tcp:// or ws://", 0;
    rest = s + (u->ws ? 5 : 6);
    slash = strchr(rest, '/');
    hostend = slash != NULL ? slash : s + len;
    if (!u->ws && slash != NULL) return *why = "tcp:// takes no path", 0;
    /* host[:port], host may be [v6] */
    if (rest[0] == '[') {
        const char *close = memchr(rest, ']', (size_t)(hostend - rest));
        if (close == NULL) return *why = "has an unclosed [", 0;
        hlen = (size_t)(close + 1 - rest);
        if (close + 1 < hostend && close[1] != ':') return *why = "has junk after ]", 0;
    } else {
        const char *colon = memchr(rest, ':', (size_t)(hostend - rest));
        hlen = (size_t)((colon != NULL ? colon : hostend) - rest);
    }
    if (hlen == 0 || hlen >= sizeof u->host) return *why = "needs a host", 0;
    memcpy(u->host, rest, hlen);
    u->host[hlen] = '\0';
    if (rest + hlen < hostend) { /* ":port" */
        const char *p = rest + hlen + 1;
        if (p >= hostend) return *why = "has an empty port", 0;
        for (; p < hostend; p++) {
            if (*p < '0' || *p > '9') return *why = "has a bad port", 0;
            port = port * 10 + (*p - '0');
            if (port > 65535) return *why = "has a bad port", 0;
        }
        if (port == 0) return *why = "has a bad port", 0;
    } else if (u->ws) {
        port = 80;
    } else {
        return *why = "needs a port (tcp://host:port)", 0;
    }
    u->port = (uint16_t)port;
    if (slash != NULL) {
        if (!path_ok(slash, (size_t)(s + len - slash))) return *why = "has a bad path", 0;
        memcpy(u->path, slash, (size_t)(s + len - slash) + 1);
    } else if (u->ws) {
        memcpy(u->path, LP_DEFAULT_WS_PATH, sizeof LP_DEFAULT_WS_PATH);
    }
    return 1;
}

/* Validates the options table at idx (may be nil); raises on any bad option. */
static void read_node_opts(lua_State *L, int idx, const char *fname, int is_sim, node_opts *o)
{
    memset(o, 0, sizeof *o);
    o->is_sim = is_sim;
    o->timeout = 10.0;
    o->mesh = 1;
    o->relay = 1;
    o->portmap = 1;
    o->punch = 1;
    if (lua_isnoneornil(L, idx)) return;
    if (!lua_istable(L, idx)) luaL_error(L, "%s: options must be a table", fname);
    idx = lp_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        const char *k;
        int v = lua_gettop(L);
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "%s: option names must be strings", fname);
        k = lua_tostring(L, -2);
        if (strcmp(k, "host") == 0) {
            if (lua_type(L, v) != LUA_TSTRING) opt_error(L, fname, k, "must be a string");
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
            if (lua_type(L, v) != LUA_TSTRING) opt_error(L, fname, k, "must be a string");
            o->network_key = lua_tolstring(L, v, &o->network_key_len);
        } else if (strcmp(k, "allow") == 0) {
            o->allow_count = check_ids(L, v, fname, k);
            o->has_allow = 1;
        } else if (strcmp(k, "deny") == 0) {
            o->deny_count = check_ids(L, v, fname, k);
            o->has_deny = 1;
        } else if (strcmp(k, "on_request") == 0) {
            if (!lua_isfunction(L, v)) opt_error(L, fname, k, "must be a function");
            o->on_request = 1;
        } else if (strcmp(k, "mesh") == 0 || strcmp(k, "relay") == 0 || strcmp(k, "portmap") == 0 ||
                   strcmp(k, "punch") == 0) {
            if (lua_type(L, v) != LUA_TBOOLEAN) opt_error(L, fname, k, "must be a boolean");
            *(k[0] == 'm'   ? &o->mesh
              : k[0] == 'r' ? &o->relay
              : k[1] == 'o' ? &o->portmap
                            : &o->punch) = lua_toboolean(L, v);
        } else if (strcmp(k, "stun") == 0) { /* issue 12 */
            o->nstun = check_strings(L, v, fname, k, LP_MAX_STUN,
                                     "must be an array of at most 4 \"host:port\" strings");
        } else if (strcmp(k, "fallback") == 0) {
            size_t i;
            if (lua_type(L, v) == LUA_TBOOLEAN && !lua_toboolean(L, v)) {
                o->fallback_off = 1;
            } else {
                o->nfallback = check_strings(L, v, fname, k, LP_MAX_FALLBACK,
                                             "must be false or an array of at most 4 URLs "
                                             "(\"tcp://host:port\", \"ws://host[:port]/path\")");
                for (i = 0; i < o->nfallback; i++) {
                    const char *why = "";
                    size_t len;
                    const char *url;
                    lua_rawgeti(L, v, (int)(i + 1));
                    url = lua_tolstring(L, -1, &len);
                    if (!lp_parse_url(url, len, &o->fallback[i], &why))
                        luaL_error(L, "%s: option 'fallback' item %d %s", fname, (int)(i + 1), why);
                    lua_pop(L, 1);
                }
            }
        } else if (strcmp(k, "tcp_port") == 0 || strcmp(k, "discover_port") == 0 ||
                   strcmp(k, "stun_server") == 0) {
            if (!lp_tointeger(L, v, 1, 65535,
                              k[0] == 't'   ? &o->tcp_port
                              : k[0] == 'd' ? &o->discover_port
                                            : &o->stun_server))
                opt_error(L, fname, k, "must be an integer 1-65535");
        } else if (strcmp(k, "ws_path") == 0) {
            size_t len = 0;
            const char *p = lua_type(L, v) == LUA_TSTRING ? lua_tolstring(L, v, &len) : NULL;
            if (p == NULL || !path_ok(p, len) || strlen(p) != len)
                opt_error(L, fname, k,
                          "must be a URL path such as \"/p2pnet\" (printable, no spaces, at "
                          "most 127 bytes)");
            o->ws_path = p;
        } else if (strcmp(k, "discover") == 0) {
            const char *s = lua_type(L, v) == LUA_TSTRING ? lua_tostring(L, v) : "";
            if (strcmp(s, "lan") != 0) opt_error(L, fname, k, "must be \"lan\" or nil");
            o->discover_lan = 1;
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
        } else if (strcmp(k, "congestion") == 0) { /* issue 10 (congestion control) */
            const char *s = lua_type(L, v) == LUA_TSTRING ? lua_tostring(L, v) : "";
            if (strcmp(s, "bbr") == 0)
                o->congestion = P2P_CC_BBR;
            else if (strcmp(s, "newreno") == 0)
                o->congestion = P2P_CC_NEWRENO;
            else
                opt_error(L, fname, k, "must be \"bbr\" or \"newreno\"");
        } else if (o->is_sim && strcmp(k, "lan") == 0) { /* issue 12 */
            if (!lp_tointeger(L, v, 1, 65535, &o->lan))
                opt_error(L, fname, k, "must be an integer 1-65535 (a LAN domain)");
        } else if (o->is_sim && strcmp(k, "gateway") == 0) {
            static const char *const kinds[] = {"silent", "pcp", "natpmp", "upnp", "all", NULL};
            const char *g = lua_type(L, v) == LUA_TSTRING ? lua_tostring(L, v) : "";
            int i;
            for (i = 0; kinds[i] != NULL; i++)
                if (strcmp(g, kinds[i]) == 0) o->gateway = i + 1;
            if (o->gateway == 0)
                opt_error(L, fname, k,
                          "must be \"pcp\", \"natpmp\", \"upnp\", \"all\" or \"silent\"");
        } else if (o->is_sim && strcmp(k, "nat_ports") == 0) {
            int ok = lua_istable(L, v);
            if (ok) {
                lua_rawgeti(L, v, 1);
                lua_rawgeti(L, v, 2);
                ok = lp_tointeger(L, -2, 1024, 65535, &o->nat_lo) &&
                     lp_tointeger(L, -1, 1024, 65535, &o->nat_hi) &&
                     o->nat_hi - o->nat_lo + 1 >= 1024;
            }
            if (!ok)
                opt_error(L, fname, k, "must be {lo, hi}: ports 1024-65535, at least 1024 of them");
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
    if (o->cookie_threshold > (o->max_half_open ? o->max_half_open : DEFAULT_MAX_HALF_OPEN))
        opt_error(L, fname, "cookie_threshold", "must be at most max_half_open (256 by default)");
    if (o->ws_path != NULL && o->tcp_port == 0)
        opt_error(L, fname, "ws_path", "needs tcp_port (the listener it is served on)");
    if (o->discover_port != 0 && !o->discover_lan)
        opt_error(L, fname, "discover_port", "needs discover = \"lan\"");
    if (o->is_sim && o->gateway != 0 && o->nat == 0)
        opt_error(L, fname, "gateway", "needs nat (a gateway is the node's NAT router)");
    if (o->is_sim && o->nat_lo != 0 && o->nat == 0) opt_error(L, fname, "nat_ports", "needs nat");
    if (o->is_sim && o->stun_server != 0)
        opt_error(L, fname, "stun_server", "is not simulated (use sim:stun_server)");
}

/* Pushes field `name` of the options at idx, or nil. */
static void push_opt(lua_State *L, int idx, const char *name)
{
    if (lua_istable(L, idx))
        lua_getfield(L, idx, name);
    else
        lua_pushnil(L);
}

static void node_free_resources(lnode *n)
{
    if (n->sim != NULL && n->host != NULL) {
        p2p_sim_detach(n->sim->sim, n->host);
    }
#if LP_SIM_GW
    p2p_sim_gw_free((p2p_sim_gw *)n->gateway);
#endif
    n->gateway = NULL;
    p2p_host_free(n->host);
    n->host = NULL;
    p2p_udp_close(n->udp);
    n->udp = NULL;
    free(n->allow);
    n->allow = NULL;
    free(n->deny);
    n->deny = NULL;
    if (n->network_key != NULL) {
        memset(n->network_key, 0, n->network_key_len);
        free(n->network_key);
        n->network_key = NULL;
    }
    if (n->sim != NULL) {
        lsim *s = n->sim;
        n->sim = NULL;
        s->attached--;
        if (s->attached == 0 && s->collected) lp_sim_free(s);
    }
}

/* Derives a 32-byte seed from a 64-bit one (splitmix64), so that simulated nodes without an
 * identity of their own get the same ids on every run with the same sim seed. */
static void expand_seed(uint64_t x, uint8_t out[P2P_ID_LEN])
{
    int i, j;
    for (i = 0; i < 4; i++) {
        uint64_t z = (x += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        for (j = 0; j < 8; j++) out[i * 8 + j] = (uint8_t)(z >> (8 * j));
    }
}

#if LP_SIM_GW
/* The simulated gateway's functions in the simulator's shape (ud: the p2p_sim_gw). */
static size_t gw_udp(void *ud, const p2p_addr *from, const p2p_addr *to, const uint8_t *in,
                     size_t len, uint64_t now, uint8_t *out, size_t cap, p2p_addr *reply_from)
{
    return p2p_sim_gw_udp((p2p_sim_gw *)ud, from, to, in, len, now, out, cap, reply_from);
}

static size_t gw_http(void *ud, const p2p_addr *from, const uint8_t *req, size_t len, uint64_t now,
                      uint8_t *out, size_t cap)
{
    return p2p_sim_gw_http((p2p_sim_gw *)ud, from, req, len, now, out, cap);
}

static int gw_out(void *ud, const p2p_addr *priv, uint64_t now, uint16_t *eport)
{
    return p2p_sim_gw_out((const p2p_sim_gw *)ud, priv, now, eport);
}

static int gw_in(void *ud, uint16_t eport, uint64_t now, p2p_addr *priv)
{
    return p2p_sim_gw_in((const p2p_sim_gw *)ud, eport, now, priv);
}
#endif

/* issue 12, simulated nodes: their LAN domain, NAT port range, TCP listener and gateway.
 * Returns 0 or a P2P_ERR_*. */
static int sim_reach(lsim *s, lnode *n, const node_opts *o, uint64_t now)
{
#if LP_SIM_REACH
    int rc;
    if (o->lan != 0 && (rc = p2p_sim_set_lan(s->sim, n->host, (uint16_t)o->lan)) != 0) return rc;
    if (o->nat_lo != 0 &&
        (rc = p2p_sim_nat_ports(s->sim, n->host, (uint16_t)o->nat_lo, (uint16_t)o->nat_hi)) != 0)
        return rc;
    if (o->tcp_port != 0 &&
        (rc = p2p_sim_listen_tcp(s->sim, n->host, (uint16_t)o->tcp_port, 1)) != 0)
        return rc;
#if LP_SIM_GW
    if (o->gateway != 0) {
        /* on the node's LAN at 10.255.255.254 (no simulated node gets that address), with the
         * NAT's public address outside */
        p2p_addr lan, ext;
        p2p_sim_gateway g;
        memset(&lan, 0, sizeof lan);
        lan.family = P2P_AF_INET4;
        lan.ip[0] = 10;
        lan.ip[1] = lan.ip[2] = 255;
        lan.ip[3] = 254;
        if ((rc = p2p_sim_public_addr(s->sim, n->host, &ext)) != 0) return rc;
        ext.port = 0;
        n->gateway = p2p_sim_gw_new(o->gateway - 1, &lan, &ext, now);
        if (n->gateway == NULL) return P2P_ERR_NOMEM;
        memset(&g, 0, sizeof g);
        g.ud = n->gateway;
        g.lan = lan;
        g.udp = gw_udp;
        g.http = gw_http;
        g.nat_out = gw_out;
        g.nat_in = gw_in;
        if ((rc = p2p_sim_set_gateway(s->sim, n->host, &g)) != 0) return rc;
    }
#else
    (void)now;
    if (o->gateway != 0) return P2P_ERR_INVALID;
#endif
#else
    (void)s;
    (void)n;
    (void)now;
    if (o->lan != 0 || o->nat_lo != 0 || o->tcp_port != 0 || o->gateway != 0)
        return P2P_ERR_INVALID;
#endif
    return 0;
}

/* Resolves `host:port` (UDP nodes: names too, matched to the socket's family; simulated
 * nodes: numeric addresses only). */
static int resolve(const lnode *n, const char *text, p2p_addr *out)
{
    return n->udp != NULL ? p2p_udp_resolve(n->udp, text, out) : p2p_addr_parse(out, text);
}

/* issue 12: copies the validated reach options into the node and resolves the addresses they
 * name, once, as connect does. Returns 0, or -1 with a readable reason in err: a name that
 * does not resolve is a runtime failure (nil, err), like a bad address given to connect. */
static int reach_options(lua_State *L, int optidx, lnode *n, const node_opts *o, char *err,
                         size_t errlen)
{
    size_t i;
    n->portmap = o->portmap;
    n->punch = o->punch;
    n->fallback_off = o->fallback_off;
    n->tcp_port = (uint16_t)o->tcp_port;
    n->stun_server = (uint16_t)o->stun_server;
    n->discover_lan = o->discover_lan;
    n->discover_port =
        (uint16_t)(o->discover_port != 0 ? o->discover_port : LP_DEFAULT_DISCOVER_PORT);
    snprintf(n->ws_path, sizeof n->ws_path, "%s",
             o->ws_path != NULL ? o->ws_path : LP_DEFAULT_WS_PATH);
    if (o->nstun > 0) {
        push_opt(L, optidx, "stun");
        for (i = 0; i < o->nstun; i++) {
            const char *text;
            lua_rawgeti(L, -1, (int)(i + 1));
            text = lua_tostring(L, -1);
            if (resolve(n, text, &n->stun[i]) != 0 || n->stun[i].port == 0) {
                snprintf(err, errlen, "bad address '%s' (option 'stun')", text);
                lua_pop(L, 2);
                return -1;
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        n->nstun = o->nstun;
    }
    for (i = 0; i < o->nfallback; i++) {
        char text[sizeof n->fallback[i].host + 8];
        n->fallback[i] = o->fallback[i];
        snprintf(text, sizeof text, "%s:%u", o->fallback[i].host, (unsigned)o->fallback[i].port);
        if (resolve(n, text, &n->fallback[i].addr) != 0) {
            snprintf(err, errlen, "bad address '%.200s' (option 'fallback')", text);
            return -1;
        }
    }
    n->nfallback = o->nfallback;
    return 0;
}

/* issue 12: the reach options into the host's configuration (pointers into the node, which
 * outlives its host). */
static void reach_config(const lnode *n, p2p_config *cfg)
{
    size_t i;
    cfg->portmap_off = !n->portmap;
    cfg->punch_off = !n->punch;
    for (i = 0; i < n->nstun && i < P2P_STUN_SERVERS; i++) cfg->stun[i] = n->stun[i];
    cfg->nstun = i;
    for (i = 0; i < n->nfallback && i < P2P_FALLBACKS; i++) {
        const lp_url *u = &n->fallback[i];
        p2p_fallback *f = &cfg->fallback[i];
        f->addr = u->addr;
        f->ws = u->ws;
        /* the Host header: the host as written, with the port unless it is HTTP's 80 */
        if (u->port == 80)
            snprintf(f->host, sizeof f->host, "%s", u->host);
        else
            snprintf(f->host, sizeof f->host, "%.240s:%u", u->host, (unsigned)u->port);
        snprintf(f->path, sizeof f->path, "%s", u->ws ? u->path : "");
    }
    cfg->nfallback = i;
    cfg->fallback_off = n->fallback_off;
    cfg->lan_discovery = n->discover_lan;
    cfg->lan_port = n->discover_port;
}

/* Builds a node from validated options. simidx is the stack index of the Sim, or 0 for a UDP
 * node. Pushes the node, or nil and an error. */
static int make_node(lua_State *L, int optidx, int simidx, const node_opts *o)
{
    lnode *n;
    int nidx, rc;
    p2p_identity key;
    p2p_config cfg;
    char err[LP_ERR_TEXT] = "";
    uint64_t now;

    n = (lnode *)lua_newuserdata(L, sizeof *n);
    memset(n, 0, sizeof *n);
    n->closed = 1; /* until fully built: __gc then frees what exists */
    nidx = lua_gettop(L);
    lua_createtable(L, 0, 8);
    lua_createtable(L, LH_COUNT, 0);
    lua_setfield(L, -2, UV_HANDLERS);
    lua_newtable(L);
    lua_setfield(L, -2, UV_PEERS);
    lua_newtable(L);
    lua_setfield(L, -2, UV_QPEER);
    lua_newtable(L);
    lua_setfield(L, -2, UV_QDATA);
    push_opt(L, optidx, "on_request");
    lua_setfield(L, -2, UV_ON_REQUEST);
    if (simidx != 0) {
        lua_pushvalue(L, simidx);
        lua_setfield(L, -2, UV_SIM);
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
            if (err[0] == '\0') snprintf(err, sizeof err, "%s", p2p_strerror(rc));
            return lp_push_fail(L, err);
        }
    } else if (simidx != 0) {
        uint8_t seed[P2P_ID_LEN];
        lsim *s = (lsim *)lua_touserdata(L, simidx);
        expand_seed(p2p_sim_host_seed(s->sim), seed);
        rc = p2p_identity_from_seed(&key, seed);
        memset(seed, 0, sizeof seed);
        if (rc != 0) return lp_push_fail(L, p2p_strerror(rc));
    } else if ((rc = p2p_identity_generate(&key)) != 0) {
        return lp_push_fail(L, p2p_strerror(rc));
    }

    /* Owned copies of what the host may keep pointing at. */
    if (o->has_allow && (n->allow = copy_ids(L, optidx, "allow", o->allow_count)) == NULL)
        goto nomem;
    if (o->has_deny && (n->deny = copy_ids(L, optidx, "deny", o->deny_count)) == NULL) goto nomem;
    if (o->network_key != NULL) {
        n->network_key = (uint8_t *)malloc(o->network_key_len > 0 ? o->network_key_len : 1);
        if (n->network_key == NULL) goto nomem;
        memcpy(n->network_key, o->network_key, o->network_key_len);
        n->network_key_len = o->network_key_len;
    }

    p2p_config_init(&cfg);
    cfg.identity = &key;
    if (n->network_key != NULL) {
        cfg.network_key = n->network_key;
        cfg.network_key_len = n->network_key_len;
    }
    cfg.allow = (const uint8_t(*)[P2P_ID_LEN])n->allow;
    cfg.allow_count = o->has_allow ? o->allow_count : 0;
    cfg.deny = (const uint8_t(*)[P2P_ID_LEN])n->deny;
    cfg.deny_count = o->has_deny ? o->deny_count : 0;
    cfg.request_hook = o->on_request;
    cfg.timeout_us = (uint64_t)(o->timeout * US_PER_SECOND + 0.5);
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
    cfg.congestion = o->congestion; /* issue 10 */

    if (simidx != 0) {
        lsim *s = (lsim *)lua_touserdata(L, simidx);
        cfg.seed = p2p_sim_host_seed(s->sim);
        now = p2p_sim_now(s->sim);
        cfg.unix_us = SIM_EPOCH_US + now;
    } else {
        rc = p2p_udp_open(&n->udp, o->host, (uint16_t)o->port, err, sizeof err);
        if (rc != 0) {
            p2p_identity_wipe(&key);
            node_free_resources(n);
            if (err[0] == '\0') snprintf(err, sizeof err, "%s", p2p_strerror(rc));
            return lp_push_fail(L, err);
        }
        now = p2p_udp_now();
        cfg.unix_us = p2p_udp_unix_now();
#if LP_DRIVER_IO
        /* issue 12: the listeners the options ask for, on the same bind address */
        if (o->tcp_port != 0 &&
            (rc = p2p_udp_listen_tcp(n->udp, (uint16_t)o->tcp_port,
                                     o->ws_path != NULL ? o->ws_path : LP_DEFAULT_WS_PATH, err,
                                     sizeof err)) != 0) {
            p2p_identity_wipe(&key);
            node_free_resources(n);
            if (err[0] == '\0') snprintf(err, sizeof err, "tcp_port: %s", p2p_strerror(rc));
            return lp_push_fail(L, err);
        }
        if (o->stun_server != 0 &&
            (rc = p2p_udp_stun_server(n->udp, (uint16_t)o->stun_server, err, sizeof err)) != 0) {
            p2p_identity_wipe(&key);
            node_free_resources(n);
            if (err[0] == '\0') snprintf(err, sizeof err, "stun_server: %s", p2p_strerror(rc));
            return lp_push_fail(L, err);
        }
#else
        if (o->tcp_port != 0 || o->stun_server != 0) {
            p2p_identity_wipe(&key);
            node_free_resources(n);
            return lp_push_fail(L, o->tcp_port != 0 ? "tcp_port: not supported by this build"
                                                    : "stun_server: not supported by this build");
        }
#endif
    }
    if (reach_options(L, optidx, n, o, err, sizeof err) != 0) {
        p2p_identity_wipe(&key);
        node_free_resources(n);
        return lp_push_fail(L, err);
    }
    reach_config(n, &cfg);
    if (n->udp != NULL) {
        /* A node bound to a loopback address can never reach a gateway: no port mapping (it
         * would only send requests that cannot leave, and say "pending"). */
        p2p_addr bound;
        p2p_udp_local(n->udp, &bound);
        if (p2p_addr_scope(&bound) == P2P_SCOPE_LOOPBACK) {
            cfg.portmap_off = 1;
            /* and no beacons: they would carry its id out of the machine's other interfaces */
            cfg.lan_discovery = 0;
        }
    }
    rc = p2p_host_new(&n->host, &cfg, now);
    p2p_identity_wipe(&key);
    if (rc != 0) {
        n->host = NULL;
        node_free_resources(n);
        return lp_push_fail(L, lp_error_text(rc));
    }
    if (simidx != 0) {
        lsim *s = (lsim *)lua_touserdata(L, simidx);
        rc = p2p_sim_attach(s->sim, n->host, (uint16_t)o->port, o->nat, &n->local);
        if (rc != 0) {
            node_free_resources(n);
            return lp_push_fail(L, rc == P2P_ERR_LIMIT ? "address in use or sim full"
                                                       : lp_error_text(rc));
        }
        n->sim = n->simref = s;
        s->attached++;
        (void)p2p_host_add_address(n->host, &n->local, now);
        if ((rc = sim_reach(s, n, o, now)) != 0) {
            node_free_resources(n);
            return lp_push_fail(L, lp_error_text(rc));
        }
    } else {
        p2p_addr local[P2P_LOCAL_ADDRS];
        size_t i, count = p2p_udp_local_addrs(n->udp, local, P2P_LOCAL_ADDRS);
        for (i = 0; i < count; i++) (void)p2p_host_add_address(n->host, &local[i], now);
    }
    p2p_id_to_hex(p2p_host_id(n->host), n->hex);
    n->closed = 0;
    lua_settop(L, nidx);
    return 1;

nomem:
    p2p_identity_wipe(&key);
    node_free_resources(n);
    return lp_push_fail(L, "out of memory");
}

/* p2pnet.node([opts]) -> node | nil, err */
int lp_node_open(lua_State *L)
{
    lua_settop(L, 1);
    return lp_node_new(L, 1, 0, "p2pnet.node");
}

int lp_node_new(lua_State *L, int optidx, int simidx, const char *fname)
{
    node_opts o;
    read_node_opts(L, optidx, fname, simidx != 0, &o);
    if (make_node(L, optidx, simidx, &o) != 1) return 2;
    lp_created(L, -1, "node");
    return 1;
}

/* ---- the Lua layer's hooks ---------------------------------------------------------------- */

/* Pushes hook `name` of the Lua layer's table of the node at 1 and returns 1, or returns 0
 * with nothing pushed. */
static int push_hook(lua_State *L, const char *name)
{
    lp_uv_field(L, 1, UV_LAYER);
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, name);
        lua_remove(L, -2);
        if (lua_isfunction(L, -1)) return 1;
    }
    lua_pop(L, 1);
    return 0;
}

/* The Lua layer's tasks of node n, at 1: with run, resumes the ready ones. Returns how
 * many ran; *due gets when they next need to run (microseconds, node clock) or NEVER. */
static int run_tasks(lua_State *L, const lnode *n, int run, uint64_t *due)
{
    int ran = 0;
    *due = P2P_TIME_NEVER;
    /* A node without tasks (most) costs no call into Lua per poll. */
    if (!n->has_tasks) return 0;
    if (!push_hook(L, "resume")) return 0;
    lua_pushvalue(L, 1);
    lua_pushboolean(L, run);
    lua_call(L, 2, 2);
    ran = (int)lua_tointeger(L, -2);
    if (lua_type(L, -1) == LUA_TNUMBER) {
        double t = (double)lua_tonumber(L, -1);
        *due = t <= 0             ? 0
               : t >= MAX_SECONDS ? (uint64_t)(MAX_SECONDS * US_PER_SECOND)
                                  : (uint64_t)ceil(t * US_PER_SECOND);
    }
    lua_pop(L, 2);
    return ran;
}

/* ---- methods ------------------------------------------------------------------------------ */

/* Methods first: a method call checks its object itself, so looking it up needs no check. */
static int node_index(lua_State *L)
{
    lnode *n;
    const char *k;
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1));
    if (!lua_isnil(L, -1) || lua_type(L, 2) != LUA_TSTRING) return 1;
    n = lp_to_node(L, 1);
    k = lua_tostring(L, 2);
    if (strcmp(k, "id") == 0) {
        if (n->hex[0] == '\0') return 0;
        lua_pushstring(L, n->hex);
        return 1;
    }
    if (strcmp(k, "closed") == 0) {
        lua_pushboolean(L, n->closed);
        return 1;
    }
    return 0;
}

static int node_tostring(lua_State *L)
{
    lnode *n = lp_to_node(L, 1);
    lua_pushfstring(L, "p2pnet.Node(%s%s)", n->hex[0] ? n->hex : "?", n->closed ? ", closed" : "");
    return 1;
}

void lp_node_close(lua_State *L, int nidx)
{
    lnode *n = lp_node_at(L, nidx);
    nidx = lp_absindex(L, nidx);
    if (n->closed || n->closing) return;
    if (n->draining) {
        /* a finalizer during a drain: the drain holds the host; close when it ends */
        n->close_deferred = 1;
        return;
    }
    n->closing = 1;
    if (n->host != NULL) {
        /* what earlier sends left waiting goes out before the goodbye */
        if (n->unflushed) lp_flush(n);
        (void)p2p_host_close(n->host, lp_node_now(n));
        lp_after_call(L, nidx);
        /* issue 12: a UPnP mapping's delete is an HTTP request: give it 200 ms */
        if (n->udp != NULL) (void)p2p_udp_settle(n->udp, n->host, 200000);
    }
    /* Peers the core did not report as gone end here too: connected ones with a leave
     * event, connecting ones silently (their reply callbacks still fail). */
    lp_uv_field(L, nidx, UV_PEERS);
    for (;;) {
        lpeer *p;
        lua_pushnil(L);
        if (lua_next(L, -2) == 0) break;
        lua_remove(L, -2);
        p = lp_check_peer(L, -1);
        if (lp_peer_info(p)->state != P2P_PEER_CONNECTED) {
            lp_retire_peer(L, nidx, -1);
            while (lp_next_callback(L, -1)) {
                lua_pushboolean(L, 0);
                lua_pushliteral(L, "disconnected");
                lp_call_reported(L, n, 2, 0, "reply callback");
            }
            lua_pop(L, 1);
            continue;
        }
        lp_retire_peer(L, nidx, -1);
        lp_queue_leave(L, nidx);
    }
    lua_pop(L, 1);
    node_free_resources(n);
    n->closed = 1;
    (void)lp_dispatch(L, nidx);
    n->closing = 0;
    /* The Lua layer's hook: wakes its waiting tasks, whichever of close(), __gc and
     * __close got here. */
    lp_uv_field(L, nidx, UV_LAYER);
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "on_close");
        lua_remove(L, -2);
        if (lua_isfunction(L, -1))
            lp_call_reported(L, n, 0, 0, "close");
        else
            lua_pop(L, 1);
    } else {
        lua_pop(L, 1);
    }
    /* Release every handler and callback reference (in place: a dispatch may hold it). */
    lp_uv_field(L, nidx, UV_HANDLERS);
    if (lua_istable(L, -1)) {
        int i;
        for (i = 1; i <= LH_COUNT; i++) {
            lua_pushnil(L);
            lua_rawseti(L, -2, i);
        }
    }
    lua_pop(L, 1);
    lp_getuservalue(L, nidx);
    lua_pushnil(L);
    lua_setfield(L, -2, UV_ON_REQUEST);
    lua_pop(L, 1);
}

/* node:close(), __gc and __close: idempotent. */
static int node_close_m(lua_State *L)
{
    lnode *n = lp_to_node(L, 1);
    lua_settop(L, 1);
    if (!n->closed) {
        lp_node_close(L, 1);
    } else {
        node_free_resources(n);
        lp_queue_free(n);
    }
    return 0;
}

/* core.busy(node [, for_run]) -> nil, or why node:poll() (node:run() with for_run) would
 * raise now; the Lua layer checks before it resumes tasks. */
int lp_node_busy(lua_State *L)
{
    const char *why = reentry(lp_to_node(L, 1), lua_toboolean(L, 2));
    if (why == NULL)
        lua_pushnil(L);
    else
        lua_pushstring(L, why);
    return 1;
}

/* core.tasks(node, any): the Lua layer says whether it holds tasks of the node (set when
 * one is spawned, cleared when the last one ends), so poll calls its resume hook only then. */
int lp_node_tasks(lua_State *L)
{
    lp_to_node(L, 1)->has_tasks = lua_toboolean(L, 2);
    return 0;
}

/* core.sim_of(node) -> the node's Sim, or nil */
int lp_node_sim(lua_State *L)
{
    lp_to_node(L, 1);
    lp_uv_field(L, 1, UV_SIM);
    return 1;
}

/* node:now() -> seconds on the node's clock: monotonic for UDP nodes, virtual time for
 * simulated ones. Works on closed nodes too. */
int lp_node_clock(lua_State *L)
{
    lnode *n = lp_to_node(L, 1);
    lua_pushnumber(L, (lua_Number)clock_us(n) / US_PER_SECOND);
    return 1;
}

static int node_address(lua_State *L)
{
    lnode *n = lp_check_open_node(L, 1, "node:address");
    p2p_addr a;
    if (n->udp != NULL)
        p2p_udp_local(n->udp, &a);
    else
        a = n->local;
    lp_push_addr(L, &a);
    return 1;
}

/* node:addresses() -> { {address = "ip:port", kind = "local" | "reflexive" | "mapped" |
 * "stun" [, protocol = "pcp" | "natpmp" | "upnp", expires = seconds]}, ... } */
static int node_addresses(lua_State *L)
{
    enum { CAP = 32 };
    static const char *const kind_names[] = {"local", "reflexive", "mapped", "stun"};
    lnode *n = lp_check_open_node(L, 1, "node:addresses");
    p2p_addr a[CAP];
    int kinds[CAP];
    size_t i, count = p2p_host_addresses(n->host, a, kinds, CAP);
    p2p_nat_info ni;
    uint64_t now = lp_node_now(n);
    p2p_host_nat(n->host, &ni);
    if (count > CAP) count = CAP;
    lua_createtable(L, (int)count, 0);
    for (i = 0; i < count; i++) {
        lua_createtable(L, 0, 2);
        lp_push_addr(L, &a[i]);
        lua_setfield(L, -2, "address");
        lua_pushstring(L, kinds[i] >= 0 && kinds[i] < 4 ? kind_names[kinds[i]] : "unknown");
        lua_setfield(L, -2, "kind");
        if (kinds[i] == P2P_ADDR_MAPPED) {
            lua_pushstring(L, ni.portmap == P2P_PORTMAP_NATPMP ? "natpmp"
                              : ni.portmap == P2P_PORTMAP_UPNP ? "upnp"
                                                               : "pcp");
            lua_setfield(L, -2, "protocol");
            lua_pushnumber(L, ni.has_mapped && ni.mapped_expires > now
                                  ? (lua_Number)(ni.mapped_expires - now) / US_PER_SECOND
                                  : 0);
            lua_setfield(L, -2, "expires");
        }
        lua_rawseti(L, -2, (int)(i + 1));
    }
    return 1;
}

/* node:nat() -> {mapping, source, gateway, portmap, udp, stream} (docs/API.md "node:nat()") */
static int node_nat(lua_State *L)
{
    static const char *const sources[] = {NULL, "stun", "peers", "portmap"};
    lnode *n = lp_check_open_node(L, 1, "node:nat");
    p2p_nat_info ni;
    size_t i;
    p2p_host_nat(n->host, &ni);
    lua_createtable(L, 0, 6);
    lua_pushstring(L, lp_mapping_name(ni.mapping));
    lua_setfield(L, -2, "mapping");
    if (ni.mapping != P2P_MAPPING_UNKNOWN && ni.source > 0 && ni.source < 4) {
        lua_pushstring(L, sources[ni.source]);
        lua_setfield(L, -2, "source");
    }
    if (ni.has_gateway) {
        lp_push_ip(L, &ni.gateway);
        lua_setfield(L, -2, "gateway");
    }
    lua_pushstring(L, ni.portmap == P2P_PORTMAP_PENDING  ? "pending"
                      : ni.portmap == P2P_PORTMAP_PCP    ? "pcp"
                      : ni.portmap == P2P_PORTMAP_NATPMP ? "natpmp"
                      : ni.portmap == P2P_PORTMAP_UPNP   ? "upnp"
                                                         : "none");
    lua_setfield(L, -2, "portmap");
    lua_pushstring(L, ni.udp == P2P_UDP_OK        ? "ok"
                      : ni.udp == P2P_UDP_BLOCKED ? "blocked"
                                                  : "unknown");
    lua_setfield(L, -2, "udp");
    if (ni.has_stream) {
        /* the URL the application gave, when the stream goes to one of its fallbacks */
        char text[LP_ADDR_TEXT];
        const char *url = NULL;
        for (i = 0; i < n->nfallback; i++)
            if (p2p_addr_equal(&n->fallback[i].addr, &ni.stream_to) &&
                n->fallback[i].ws == ni.stream_ws)
                break;
        if (i < n->nfallback) {
            const lp_url *u = &n->fallback[i];
            lua_pushfstring(L, "%s://%s:%d%s", u->ws ? "ws" : "tcp", u->host, (int)u->port,
                            u->path);
            url = lua_tostring(L, -1);
        } else if (p2p_addr_format(&ni.stream_to, text, sizeof text) == 0) {
            lua_pushfstring(L, "%s://%s%s", ni.stream_ws ? "ws" : "tcp", text,
                            ni.stream_ws ? LP_DEFAULT_WS_PATH : "");
            url = lua_tostring(L, -1);
        }
        if (url != NULL) lua_setfield(L, -2, "stream");
    }
    return 1;
}

/* node:lan_peers() -> { {id = hex, address = "ip:port", age = seconds}, ... } */
static int node_lan_peers(lua_State *L)
{
    lnode *n = lp_check_open_node(L, 1, "node:lan_peers");
    size_t i, count = p2p_host_lan_peers(n->host, NULL, 0), got;
    p2p_lan_peer *v;
    uint64_t now = lp_node_now(n);
    lua_settop(L, 1);
    v = (p2p_lan_peer *)lua_newuserdata(L, (count ? count : 1) * sizeof *v);
    got = p2p_host_lan_peers(n->host, v, count);
    if (got > count) got = count;
    lua_createtable(L, (int)got, 0);
    for (i = 0; i < got; i++) {
        lua_createtable(L, 0, 3);
        lp_push_id(L, v[i].id);
        lua_setfield(L, -2, "id");
        lp_push_addr(L, &v[i].addr);
        lua_setfield(L, -2, "address");
        lua_pushnumber(L, v[i].last < now ? (lua_Number)(now - v[i].last) / US_PER_SECOND : 0);
        lua_setfield(L, -2, "age");
        lua_rawseti(L, -2, (int)(i + 1));
    }
    return 1;
}

static int node_fd(lua_State *L)
{
    lnode *n = lp_check_open_node(L, 1, "node:fd");
    if (n->udp == NULL) return lp_push_fail(L, "a simulated node has no descriptor");
    lua_pushinteger(L, p2p_udp_fd(n->udp));
    return 1;
}

/* node:next_timeout() -> seconds until the core's next timer or a task's, whichever first.
 * Hands waiting sends to the socket first: an external loop that asks when to come back
 * must not sit on them. */
static int node_next_timeout(lua_State *L)
{
    lnode *n = lp_check_open_node(L, 1, "node:next_timeout");
    uint64_t t, due, now;
    lua_settop(L, 1);
    if (n->unflushed) lp_flush(n);
    if (lp_has_events(n)) {
        lua_pushnumber(L, 0);
        return 1;
    }
#if LP_DRIVER_IO
    /* the driver's own timers too (connects, HTTP, the gateway check, its service tick) */
    t = n->udp != NULL ? p2p_udp_next_timeout(n->udp, n->host) : p2p_host_next_timeout(n->host);
#else
    t = p2p_host_next_timeout(n->host);
#endif
    (void)run_tasks(L, n, 0, &due);
    if (due < t) t = due;
    now = lp_node_now(n);
    if (t == P2P_TIME_NEVER)
        lua_pushnumber(L, NO_TIMEOUT_SECONDS);
    else if (t <= now)
        lua_pushnumber(L, 0);
    else
        lua_pushnumber(L, (lua_Number)(t - now) / US_PER_SECOND);
    return 1;
}

static double check_seconds(lua_State *L, int idx, const char *fname, const char *arg)
{
    double s;
    if (lua_isnoneornil(L, idx)) return 0;
    s = lua_type(L, idx) == LUA_TNUMBER ? (double)lua_tonumber(L, idx) : -1;
    if (!(s >= 0)) lp_arg_error(L, fname, arg, "must be a number of seconds >= 0");
    return s > MAX_SECONDS ? MAX_SECONDS : s;
}

/* One turn of the driver for the node at 1: waiting sends go out first, then events are
 * dispatched, waiting up to wait_us for some. Returns the count, or -1 on a socket error. */
static int poll_core(lua_State *L, lnode *n, uint64_t wait_us)
{
    uint64_t now, deadline;
    int count;
    if (n->unflushed) lp_flush(n);
    lp_drain(L, 1);
    count = lp_dispatch(L, 1);
    if (n->udp == NULL || count > 0 || n->closed) goto done;
    now = p2p_udp_now();
    deadline = now + wait_us;
    for (;;) {
        int rc = p2p_udp_pump(n->udp, n->host, deadline > now ? deadline - now : 0);
        lp_drain(L, 1);
        count += lp_dispatch(L, 1);
        if (rc < 0 && count == 0) return -1;
        if (n->closed || count > 0) break;
        now = p2p_udp_now();
        if (now >= deadline) break;
    }
done:
    /* what the handlers sent leaves before poll returns */
    if (n->unflushed && !n->closed) lp_flush(n);
    return count;
}

/* node:poll([timeout]) -> events dispatched. Also resumes the node's tasks (the Lua layer),
 * and waits no longer than until the next task timer. */
static int node_poll(lua_State *L)
{
    lnode *n = lp_check_open_node(L, 1, "node:poll");
    double timeout = check_seconds(L, 2, "node:poll", "timeout");
    const char *busy = reentry(n, 0);
    uint64_t deadline, now, due, wait;
    int total = 0, ran, count;
    if (busy != NULL) return luaL_error(L, "node:poll: %s", busy);
    lua_settop(L, 1);
    if (n->udp == NULL) {
        /* virtual time only moves in sim:run(): here, pending events and ready tasks */
        total = poll_core(L, n, 0);
        (void)run_tasks(L, n, 1, &due);
        lua_pushinteger(L, total);
        return 1;
    }
    deadline = p2p_udp_now() + (uint64_t)(timeout * US_PER_SECOND);
    for (;;) {
        ran = run_tasks(L, n, 1, &due);
        if (n->closed) break;
        now = p2p_udp_now();
        wait = deadline > now ? deadline - now : 0;
        if (ran > 0)
            wait = 0;
        else if (due != P2P_TIME_NEVER && (due <= now || due - now < wait))
            wait = due > now ? due - now : 0;
        count = poll_core(L, n, wait);
        if (count < 0) return lp_push_fail(L, "socket error");
        total += count;
        if (!n->closed) ran += run_tasks(L, n, 1, &due);
        if (total > 0 || ran > 0 || n->closed || p2p_udp_now() >= deadline) break;
    }
    /* what the tasks sent leaves before poll returns, as what the handlers sent does */
    if (n->unflushed && !n->closed) lp_flush(n);
    lua_pushinteger(L, total);
    return 1;
}

/* node:on(event, fn): the one handler for event; nil removes it. */
static int node_on(lua_State *L)
{
    const char *ev;
    int i, slot = 0;
    lp_check_open_node(L, 1, "node:on");
    ev = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "";
    for (i = 0; lp_event_names[i] != NULL; i++)
        if (strcmp(ev, lp_event_names[i]) == 0) slot = i + 1;
    if (slot == 0)
        return lp_arg_error(L, "node:on", "event",
                            "must be \"join\", \"leave\", \"message\" or \"error\"");
    if (!lua_isnoneornil(L, 3) && !lua_isfunction(L, 3))
        return lp_arg_error(L, "node:on", "fn", "must be a function or nil");
    lua_settop(L, 3);
    if (slot == LH_MESSAGE) {
        /* A handler that declares fewer than 4 parameters (and no ...) cannot see `info`:
         * it is not built for it (docs/API.md). */
        int nparams, vararg;
        lnode *n = lp_node_at(L, 1);
        n->message_info = 1;
        if (lua_isfunction(L, 3) && lp_params(L, 3, &nparams, &vararg) && nparams < 4 && !vararg)
            n->message_info = 0;
    }
    lp_uv_field(L, 1, UV_HANDLERS);
    lua_pushvalue(L, 3);
    lua_rawseti(L, -2, slot);
    return 0;
}

static int node_connect(lua_State *L)
{
    lnode *n = lp_check_open_node(L, 1, "node:connect");
    size_t tlen;
    const char *target = lp_check_string(L, 2, "node:connect", "target", &tlen);
    uint8_t expected[P2P_ID_LEN], tid[P2P_ID_LEN];
    int have_expected = 0, rc;
    const char *via = NULL;
    p2p_addr addr;
    p2p_peer_handle h = 0;

    if (!lua_isnoneornil(L, 3)) {
        if (!lua_istable(L, 3)) lp_arg_error(L, "node:connect", "opts", "must be a table or nil");
        lua_pushnil(L);
        while (lua_next(L, 3) != 0) {
            const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
            if (strcmp(k, "id") == 0) {
                if (!lp_parse_id(L, -1, expected))
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
    if (lp_refuse_busy(L, n, "node:connect")) return 2;

    if (tlen == LP_HEX_LEN && p2p_id_from_hex(tid, target, tlen) == 0) {
        h = p2p_host_find(n->host, tid);
        if (h != 0) {
            lp_push_peer(L, 1, h);
            return 1;
        }
        if (via != NULL) {
            p2p_addr vaddr;
            rc =
                n->udp != NULL ? p2p_udp_resolve(n->udp, via, &vaddr) : p2p_addr_parse(&vaddr, via);
            if (rc != 0) {
                lua_pushnil(L);
                lua_pushfstring(L, "bad address '%s'", via);
                return 2;
            }
            rc = p2p_host_connect_via(n->host, tid, &vaddr, lp_node_now(n), &h);
            if (rc == P2P_ERR_ADDRESS) { /* parsed, but nothing can answer from there */
                lp_after_call(L, 1);
                lua_pushnil(L);
                lua_pushfstring(L, "bad address '%s'", via);
                return 2;
            }
        } else {
            rc = p2p_host_connect_id(n->host, tid, lp_node_now(n), &h);
        }
        if (rc == 0) {
            lp_push_peer(L, 1, h);
            lp_after_call(L, 1);
            lua_settop(L, 4);
            return 1;
        }
        lp_after_call(L, 1);
        if (rc == P2P_ERR_INVALID) return lp_push_fail(L, "that is this node's own id");
        if (rc != P2P_ERR_PEER) return lp_push_fail(L, lp_error_text(rc));
        return lp_push_fail(L, "unknown peer id");
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
    rc = p2p_host_connect(n->host, &addr, have_expected ? expected : NULL, lp_node_now(n), &h);
    if (rc != 0) {
        lp_after_call(L, 1);
        /* parsed, but nothing can answer from there (unspecified, multicast, broadcast, a
         * link-local address without its zone, port 0) */
        if (rc == P2P_ERR_ADDRESS) {
            lua_pushnil(L);
            lua_pushfstring(L, "bad address '%s'", target);
            return 2;
        }
        return lp_push_fail(L, lp_error_text(rc));
    }
    lp_push_peer(L, 1, h);
    lp_after_call(L, 1);
    lua_settop(L, 4);
    return 1;
}

static int node_peers(lua_State *L)
{
    lnode *n = lp_check_open_node(L, 1, "node:peers");
    p2p_peer_handle stackbuf[PEERS_ON_STACK], *hs = stackbuf;
    size_t count, cap = PEERS_ON_STACK, i;
    lua_settop(L, 1);
    count = p2p_host_peers(n->host, hs, cap);
    if (count > cap) {
        hs = (p2p_peer_handle *)lua_newuserdata(L, count * sizeof *hs);
        cap = count;
        count = p2p_host_peers(n->host, hs, cap);
        if (count > cap) count = cap;
    }
    lua_createtable(L, (int)count, 0);
    for (i = 0; i < count; i++) {
        lp_push_peer(L, 1, hs[i]);
        lua_rawseti(L, -2, (int)(i + 1));
    }
    return 1;
}

static int node_peer(lua_State *L)
{
    lnode *n = lp_check_open_node(L, 1, "node:peer");
    uint8_t id[P2P_ID_LEN];
    p2p_peer_handle h;
    if (!lp_parse_id(L, 2, id))
        return lp_arg_error(L, "node:peer", "id", "must be 64 hex characters");
    lua_settop(L, 1);
    h = p2p_host_find(n->host, id);
    if (h == 0) return 0;
    lp_push_peer(L, 1, h);
    return 1;
}

/* node:broadcast(type, data [, opts]) -> message id | nil, err. opts = {lane = n}. */
static int node_broadcast(lua_State *L)
{
    lnode *n = lp_check_open_node(L, 1, "node:broadcast");
    uint16_t type = lp_check_type(L, 2, "node:broadcast");
    size_t len;
    const char *data = lp_check_string(L, 3, "node:broadcast", "data", &len);
    uint8_t lane = lp_opt_lane(L, 4, "node:broadcast");
    static const char *const known[] = {"lane", NULL};
    uint64_t seq = 0;
    int rc;
    lp_check_options(L, 4, "node:broadcast", known);
    lua_settop(L, 3);
    if (lp_refuse_busy(L, n, "node:broadcast")) return 2;
    rc = p2p_host_broadcast_lane(n->host, lane, type, (const uint8_t *)data, len, &seq,
                                 lp_node_now(n));
    lp_after_call(L, 1);
    if (rc != 0) return lp_push_fail(L, lp_error_text(rc));
    lp_push_broadcast_id(L, n->hex, seq);
    return 1;
}

/* The counters of node:stats(), in the order they are listed in docs/API.md. */
static const lp_counter node_counters[] = {LP_COUNTER(p2p_stats, peers),
                                           LP_COUNTER(p2p_stats, packets_sent),
                                           LP_COUNTER(p2p_stats, packets_received),
                                           LP_COUNTER(p2p_stats, bytes_sent),
                                           LP_COUNTER(p2p_stats, bytes_received),
                                           LP_COUNTER(p2p_stats, retransmits),
                                           LP_COUNTER(p2p_stats, dropped),
                                           LP_COUNTER(p2p_stats, handshakes),
                                           LP_COUNTER(p2p_stats, members),
                                           LP_COUNTER(p2p_stats, broadcasts_relayed),
                                           LP_COUNTER(p2p_stats, introductions),
                                           LP_COUNTER(p2p_stats, relayed_packets),
                                           LP_COUNTER(p2p_stats, relayed_bytes),
                                           LP_COUNTER(p2p_stats, relay_dropped),
                                           LP_COUNTER(p2p_stats, path_changes),
                                           LP_COUNTER(p2p_stats, memory),
                                           LP_COUNTER(p2p_stats, memory_peak),
                                           LP_COUNTER(p2p_stats, dropped_budget),
                                           LP_COUNTER(p2p_stats, dropped_amplification),
                                           LP_COUNTER(p2p_stats, dropped_unsolicited),
                                           LP_COUNTER(p2p_stats, dropped_replay),
                                           LP_COUNTER(p2p_stats, cookies_sent),
                                           LP_COUNTER(p2p_stats, under_load),
                                           LP_COUNTER(p2p_stats, rekeys),
                                           LP_COUNTER(p2p_stats, work_dh),
                                           LP_COUNTER(p2p_stats, work_verify),
                                           LP_COUNTER(p2p_stats, dropped_stale),
                                           LP_COUNTER(p2p_stats, dropped_half_open),
                                           LP_COUNTER(p2p_stats, transfers_refused),
                                           /* issue 12 */
                                           LP_COUNTER(p2p_stats, portmap_sent),
                                           LP_COUNTER(p2p_stats, stun_sent),
                                           LP_COUNTER(p2p_stats, stun_received),
                                           LP_COUNTER(p2p_stats, lan_sent),
                                           LP_COUNTER(p2p_stats, lan_received),
                                           LP_COUNTER(p2p_stats, lan_dropped),
                                           LP_COUNTER(p2p_stats, lan_dials),
                                           LP_COUNTER(p2p_stats, punch_probes),
                                           LP_COUNTER(p2p_stats, punch_hits),
                                           LP_COUNTER(p2p_stats, punch_rounds),
                                           LP_COUNTER(p2p_stats, stream_up),
                                           LP_COUNTER(p2p_stats, stream_dropped),
                                           LP_COUNTER(p2p_stats, relay_handovers),
                                           {NULL, 0}};

/* One entry of node:lanes: its field `key` (an integer within lo..hi, or dflt when nil). */
static int lane_field(lua_State *L, int idx, const char *key, int lo, int hi, int dflt)
{
    int64_t v = dflt;
    lua_getfield(L, idx, key);
    if (!lua_isnil(L, -1) && !lp_tointeger(L, -1, lo, hi, &v)) {
        char what[64];
        snprintf(what, sizeof what, "must be an integer %d-%d", lo, hi);
        lp_arg_error(L, "node:lanes", key, what);
    }
    lua_pop(L, 1);
    return (int)v;
}

/* node:lanes{[n] = {priority = p, weight = w}, ...} -> true. Lanes not named keep theirs.
 * Everything is checked before anything is set. */
static int node_lanes(lua_State *L)
{
    lnode *n = lp_check_open_node(L, 1, "node:lanes");
    int pass;
    if (!lua_istable(L, 2)) return lp_arg_error(L, "node:lanes", "lanes", "must be a table");
    lua_settop(L, 2);
    for (pass = 0; pass < 2; pass++) {
        lua_pushnil(L);
        while (lua_next(L, 2) != 0) {
            int64_t lane;
            int prio, weight;
            if (!lp_tointeger(L, -2, 0, P2P_LANE_MAX, &lane))
                return lp_arg_error(L, "node:lanes", "lanes", "keys must be lanes 0-254");
            if (!lua_istable(L, -1))
                return lp_arg_error(L, "node:lanes", "lanes",
                                    "values must be tables {priority = p, weight = w}");
            static const char *const known[] = {"priority", "weight", NULL};
            lp_check_options(L, -1, "node:lanes", known);
            prio = lane_field(L, -1, "priority", 0, P2P_LANE_PRIORITY_MAX, 0);
            weight = lane_field(L, -1, "weight", 1, P2P_LANE_WEIGHT_MAX, 1);
            if (pass == 1) (void)p2p_host_set_lane(n->host, (uint8_t)lane, prio, weight);
            lua_pop(L, 1);
        }
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* node:stats() -> table; the Lua layer's hook adds its counters. */
static int node_stats(lua_State *L)
{
    lnode *n = lp_check_open_node(L, 1, "node:stats");
    p2p_stats st;
    lua_settop(L, 1);
    p2p_host_stats(n->host, &st);
    lp_push_counters(L, &st, node_counters);
    lp_set_u64(L, "callback_errors", n->callback_errors);
    if (push_hook(L, "stats")) {
        lua_pushvalue(L, 2);
        lua_call(L, 1, 0);
    }
    return 1;
}

/* ---- node:metrics(): the Prometheus text exposition format, version 0.0.4 ----------------------
 *
 * Each metric is one group: "# HELP", "# TYPE", then its samples, one per line, so the figures
 * of all peers are gathered first and written metric by metric. Counters end in _total; label
 * values and HELP texts are escaped as the format says (backslash, double quote in label
 * values, newline). Numbers are written with integer arithmetic only, so that the C locale's
 * decimal point is never asked for. */

#define M_COUNTER "counter"
#define M_GAUGE "gauge"

/* How a node figure is read: from p2p_stats at `offset`, or from one of the binding's and the
 * Lua layer's counters. */
enum { FROM_STATS = 0, FROM_CALLBACK_ERRORS, FROM_TASK_ERRORS, FROM_RECEIVE_DROPPED };

typedef struct node_metric {
    const char *name, *type, *help;
    int from;
    size_t offset;
} node_metric;

#define NM(name, type, field, help)                              \
    {                                                            \
        name, type, help, FROM_STATS, offsetof(p2p_stats, field) \
    }

static const node_metric node_figures[] = {
    NM("p2pnet_peers", M_GAUGE, peers, "Sessions connected now."),
    NM("p2pnet_sent_packets_total", M_COUNTER, packets_sent,
       "UDP datagrams sent, handshakes included."),
    NM("p2pnet_received_packets_total", M_COUNTER, packets_received,
       "UDP datagrams received, dropped ones included."),
    NM("p2pnet_sent_bytes_total", M_COUNTER, bytes_sent, "UDP payload bytes sent."),
    NM("p2pnet_received_bytes_total", M_COUNTER, bytes_received, "UDP payload bytes received."),
    NM("p2pnet_retransmits_total", M_COUNTER, retransmits,
       "Packets that carried stream data sent again after a loss."),
    NM("p2pnet_dropped_total", M_COUNTER, dropped,
       "Invalid, forged, replayed or unauthorised datagrams and protocol violations."),
    NM("p2pnet_handshakes_total", M_COUNTER, handshakes, "Sessions established."),
    NM("p2pnet_members", M_GAUGE, members, "Member records known (mesh)."),
    NM("p2pnet_broadcasts_relayed_total", M_COUNTER, broadcasts_relayed,
       "Broadcasts served to members that pulled them."),
    NM("p2pnet_introductions_total", M_COUNTER, introductions,
       "Pairs of peers this node introduced to each other."),
    NM("p2pnet_relayed_packets_total", M_COUNTER, relayed_packets,
       "Datagrams relayed for other nodes."),
    NM("p2pnet_relayed_bytes_total", M_COUNTER, relayed_bytes,
       "Bytes of the datagrams relayed for other nodes."),
    NM("p2pnet_relay_dropped_total", M_COUNTER, relay_dropped, "Datagrams refused for relaying."),
    NM("p2pnet_path_changes_total", M_COUNTER, path_changes,
       "Times a session moved to a new address."),
    NM("p2pnet_memory_bytes", M_GAUGE, memory, "Bytes held now against the memory budgets."),
    NM("p2pnet_memory_peak_bytes", M_GAUGE, memory_peak, "The most bytes ever held."),
    NM("p2pnet_dropped_budget_total", M_COUNTER, dropped_budget,
       "Work refused because a memory budget or a cap was reached."),
    NM("p2pnet_dropped_amplification_total", M_COUNTER, dropped_amplification,
       "Datagrams not sent to an unproven address (amplification limit)."),
    NM("p2pnet_dropped_unsolicited_total", M_COUNTER, dropped_unsolicited,
       "Records acted on by nobody."),
    NM("p2pnet_dropped_replay_total", M_COUNTER, dropped_replay,
       "Replayed handshakes and stale or repeated broadcasts."),
    NM("p2pnet_dropped_stale_total", M_COUNTER, dropped_stale,
       "Sequenced datagrams older than one delivered."),
    NM("p2pnet_dropped_half_open_total", M_COUNTER, dropped_half_open,
       "Handshakes refused because the half-open table was full."),
    NM("p2pnet_cookies_sent_total", M_COUNTER, cookies_sent, "COOKIE replies sent under load."),
    NM("p2pnet_under_load", M_GAUGE, under_load, "1 while the node demands cookies, else 0."),
    NM("p2pnet_rekeys_total", M_COUNTER, rekeys, "Session key updates."),
    NM("p2pnet_work_dh_total", M_COUNTER, work_dh, "X25519 operations for handshakes."),
    NM("p2pnet_work_verify_total", M_COUNTER, work_verify, "Ed25519 signature checks."),
    NM("p2pnet_transfers_refused_total", M_COUNTER, transfers_refused,
       "Transfer offers refused at once."),
    NM("p2pnet_portmap_sent_total", M_COUNTER, portmap_sent,
       "Port-mapping requests sent to the gateway (PCP, NAT-PMP, SSDP, UPnP HTTP)."),
    NM("p2pnet_stun_sent_total", M_COUNTER, stun_sent, "STUN Binding requests sent."),
    NM("p2pnet_stun_received_total", M_COUNTER, stun_received,
       "STUN answers accepted from the configured servers."),
    NM("p2pnet_lan_sent_total", M_COUNTER, lan_sent, "LAN beacons sent."),
    NM("p2pnet_lan_received_total", M_COUNTER, lan_received,
       "Valid LAN beacons received from other nodes."),
    NM("p2pnet_lan_dropped_total", M_COUNTER, lan_dropped, "LAN beacons that failed a check."),
    NM("p2pnet_lan_dials_total", M_COUNTER, lan_dials, "Handshakes started because of a beacon."),
    NM("p2pnet_punch_probes_total", M_COUNTER, punch_probes, "Birthday-punching probes sent."),
    NM("p2pnet_punch_hits_total", M_COUNTER, punch_hits,
       "Birthday-punching rounds that found a direct path."),
    NM("p2pnet_punch_rounds_total", M_COUNTER, punch_rounds, "Birthday-punching rounds run."),
    NM("p2pnet_stream_up_total", M_COUNTER, stream_up, "TCP and WebSocket streams that came up."),
    NM("p2pnet_stream_dropped_total", M_COUNTER, stream_dropped,
       "Datagrams dropped on the way to a stream."),
    NM("p2pnet_relay_handovers_total", M_COUNTER, relay_handovers,
       "Relayed sessions moved to another relay."),
    {"p2pnet_callback_errors_total", M_COUNTER, "Errors raised by handlers and callbacks.",
     FROM_CALLBACK_ERRORS, 0},
    {"p2pnet_task_errors_total", M_COUNTER, "Tasks that ended with an error.", FROM_TASK_ERRORS, 0},
    {"p2pnet_receive_dropped_total", M_COUNTER,
     "Messages dropped because the receive queue was full.", FROM_RECEIVE_DROPPED, 0},
};

/* How a per-peer figure is written. */
enum { PV_U64 = 0, PV_SECONDS, PV_RATIO };

typedef struct peer_metric {
    const char *name, *type, *help;
    int kind;
    size_t offset; /* in p2p_peer_stats */
} peer_metric;

#define PM(name, type, kind, field, help)                       \
    {                                                           \
        name, type, help, kind, offsetof(p2p_peer_stats, field) \
    }

static const peer_metric peer_figures[] = {
    PM("p2pnet_peer_rtt_seconds", M_GAUGE, PV_SECONDS, srtt_us, "Smoothed round-trip time."),
    PM("p2pnet_peer_rtt_variation_seconds", M_GAUGE, PV_SECONDS, rttvar_us,
       "Round-trip time variation."),
    PM("p2pnet_peer_min_rtt_seconds", M_GAUGE, PV_SECONDS, min_rtt_us,
       "Lowest round-trip time seen."),
    PM("p2pnet_peer_loss_ratio", M_GAUGE, PV_RATIO, loss,
       "Packets declared lost and not acknowledged later, per packet sent that asks for an "
       "acknowledgement."),
    PM("p2pnet_peer_cwnd_bytes", M_GAUGE, PV_U64, cwnd, "Congestion window."),
    PM("p2pnet_peer_in_flight_bytes", M_GAUGE, PV_U64, in_flight,
       "Bytes sent and neither acknowledged nor lost."),
    PM("p2pnet_peer_bandwidth_bytes_per_second", M_GAUGE, PV_U64, bandwidth,
       "Bottleneck bandwidth estimate (BBR; 0 with NewReno)."),
    PM("p2pnet_peer_pacing_rate_bytes_per_second", M_GAUGE, PV_U64, pacing_rate,
       "Rate the pacer lets packets out at."),
    PM("p2pnet_peer_sent_packets_total", M_COUNTER, PV_U64, packets_sent,
       "Packets of this session sent."),
    PM("p2pnet_peer_received_packets_total", M_COUNTER, PV_U64, packets_received,
       "Packets of this session received and authenticated."),
    PM("p2pnet_peer_sent_bytes_total", M_COUNTER, PV_U64, bytes_sent,
       "Bytes of this session's packets sent."),
    PM("p2pnet_peer_received_bytes_total", M_COUNTER, PV_U64, bytes_received,
       "Bytes of this session's packets received and authenticated."),
    PM("p2pnet_peer_retransmits_total", M_COUNTER, PV_U64, retransmits,
       "Packets that carried resent stream data."),
    PM("p2pnet_peer_lost_packets_total", M_COUNTER, PV_U64, lost, "Packets declared lost."),
    PM("p2pnet_peer_spurious_losses_total", M_COUNTER, PV_U64, spurious,
       "Packets declared lost and acknowledged later (reordering)."),
    PM("p2pnet_peer_congestion_events_total", M_COUNTER, PV_U64, congestion_events,
       "Congestion responses (window or rate cuts)."),
    PM("p2pnet_peer_mtu_bytes", M_GAUGE, PV_U64, mtu, "Largest packet the path carries now."),
    PM("p2pnet_peer_queued_bytes", M_GAUGE, PV_U64, bytes_queued,
       "Stream bytes of all lanes not yet acknowledged."),
    PM("p2pnet_peer_queued_datagrams", M_GAUGE, PV_U64, datagrams_queued,
       "Unreliable datagrams waiting for a packet."),
};

enum { LV_QUEUED_BYTES = 0, LV_UNSENT_BYTES, LV_QUEUED_MESSAGES, LV_SENT, LV_RECEIVED };

static const struct lane_metric {
    const char *name, *type, *help;
    int which;
} lane_figures[] = {
    {"p2pnet_peer_lane_queued_bytes", M_GAUGE, "Bytes queued on a lane and not yet acknowledged.",
     LV_QUEUED_BYTES},
    {"p2pnet_peer_lane_unsent_bytes", M_GAUGE, "Bytes queued on a lane and not yet sent once.",
     LV_UNSENT_BYTES},
    {"p2pnet_peer_lane_queued_messages", M_GAUGE,
     "Messages (records) on a lane not yet acknowledged whole.", LV_QUEUED_MESSAGES},
    {"p2pnet_peer_lane_sent_messages_total", M_COUNTER, "Messages (records) queued on a lane.",
     LV_SENT},
    {"p2pnet_peer_lane_received_messages_total", M_COUNTER,
     "Messages (records) received on a lane.", LV_RECEIVED},
};

/* One peer's figures, read once per scrape. */
typedef struct metric_peer {
    p2p_peer_handle handle;
    char label[LP_HEX_SIZE]; /* its first 16 hex digits, or all 64 when two peers share them */
    char hex[LP_HEX_SIZE];
    char address[LP_ADDR_TEXT];
    char relay[LP_HEX_SIZE]; /* "" when direct */
    p2p_peer_stats st;
} metric_peer;

static void m_add(luaL_Buffer *b, const char *s)
{
    luaL_addlstring(b, s, strlen(s));
}

/* Appends text with the escapes of a label value (all three) or of a HELP text (backslash and
 * newline). */
static void m_escaped(luaL_Buffer *b, const char *s, size_t len, int label)
{
    size_t i, from = 0;
    for (i = 0; i < len; i++) {
        const char *esc = s[i] == '\\'           ? "\\\\"
                          : s[i] == '\n'         ? "\\n"
                          : s[i] == '"' && label ? "\\\""
                                                 : NULL;
        if (esc == NULL) continue;
        luaL_addlstring(b, s + from, i - from);
        m_add(b, esc);
        from = i + 1;
    }
    luaL_addlstring(b, s + from, len - from);
}

static void m_header(luaL_Buffer *b, const char *name, const char *type, const char *help)
{
    m_add(b, "# HELP ");
    m_add(b, name);
    luaL_addchar(b, ' ');
    m_escaped(b, help, strlen(help), 0);
    m_add(b, "\n# TYPE ");
    m_add(b, name);
    luaL_addchar(b, ' ');
    m_add(b, type);
    luaL_addchar(b, '\n');
}

/* `name{labels,extra} value\n`: labels is "" or label pairs already written and escaped,
 * extra the caller's constant labels (likewise). */
static void m_sample(luaL_Buffer *b, const char *name, const char *labels, const char *extra,
                     const char *value)
{
    m_add(b, name);
    if (labels[0] != '\0' || extra[0] != '\0') {
        luaL_addchar(b, '{');
        m_add(b, labels);
        if (labels[0] != '\0' && extra[0] != '\0') luaL_addchar(b, ',');
        m_add(b, extra);
        luaL_addchar(b, '}');
    }
    luaL_addchar(b, ' ');
    m_add(b, value);
    luaL_addchar(b, '\n');
}

static void fmt_u64(char *out, size_t cap, uint64_t v)
{
    snprintf(out, cap, "%llu", (unsigned long long)v);
}

/* us as seconds with six decimals. */
static void fmt_seconds(char *out, size_t cap, uint64_t us)
{
    snprintf(out, cap, "%llu.%06llu", (unsigned long long)(us / 1000000),
             (unsigned long long)(us % 1000000));
}

/* A ratio 0-1 with nine decimals. */
static void fmt_ratio(char *out, size_t cap, double r)
{
    uint64_t ppb = r <= 0 ? 0 : r >= 1 ? 1000000000u : (uint64_t)(r * 1e9 + 0.5);
    snprintf(out, cap, "%llu.%09llu", (unsigned long long)(ppb / 1000000000u),
             (unsigned long long)(ppb % 1000000000u));
}

/* A label name Prometheus accepts, [a-zA-Z_][a-zA-Z0-9_]*, not reserved (__*) and not one this
 * function writes itself. */
static int label_name_ok(const char *k, size_t len)
{
    static const char *const ours[] = {"peer",    "lane",  "id",         "path",
                                       "address", "relay", "congestion", NULL};
    const char *const *q;
    size_t i;
    if (len == 0 || (k[0] >= '0' && k[0] <= '9') || (len >= 2 && k[0] == '_' && k[1] == '_'))
        return 0;
    for (i = 0; i < len; i++) {
        char c = k[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return 0;
    }
    for (q = ours; *q; q++)
        if (strcmp(*q, k) == 0) return 0;
    return 1;
}

/* 1 when s holds well-formed UTF-8 (what Prometheus demands of label values). */
static int utf8_ok(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i], n, k;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf)
            n = 1, cp = c & 0x1f;
        else if (c >= 0xe0 && c <= 0xef)
            n = 2, cp = c & 0x0f;
        else if (c >= 0xf0 && c <= 0xf4)
            n = 3, cp = c & 0x07;
        else
            return 0;
        if (len - i <= n) return 0;
        for (k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return 0;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        /* overlong forms, surrogates, beyond U+10FFFF */
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += n + 1;
    }
    return 1;
}

/* Reads opts (at 2: a table or nil): pushes the extra labels as one escaped string
 * (`a="x",b="y"`, "" for none; sorted by name, so that every scrape writes them alike), and
 * returns whether per-peer figures are wanted. Raises on misuse, before anything is
 * written. */
static int metrics_opts(lua_State *L)
{
    static const char *const known[] = {"labels", "peers", NULL};
    int peers = 1, nlabels = 0, i, j;
    luaL_Buffer b;
    if (!lua_isnoneornil(L, 2) && !lua_istable(L, 2))
        lp_arg_error(L, "node:metrics", "opts", "must be a table or nil");
    lp_check_options(L, 2, "node:metrics", known);
    lua_settop(L, 2);
    lua_newtable(L); /* 3: the label names, sorted below */
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "peers");
        if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
            lp_arg_error(L, "node:metrics", "opts.peers", "must be a boolean or nil");
        peers = lua_isnil(L, -1) || lua_toboolean(L, -1);
        lua_pop(L, 1);
        lua_getfield(L, 2, "labels");
        if (!lua_isnil(L, -1)) {
            if (!lua_istable(L, -1))
                lp_arg_error(L, "node:metrics", "opts.labels", "must be a table of strings");
            lua_pushnil(L);
            while (lua_next(L, -2) != 0) {
                size_t kl;
                const char *k;
                if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
                    lp_arg_error(L, "node:metrics", "opts.labels",
                                 "must map label names to strings");
                k = lua_tolstring(L, -2, &kl);
                if (!label_name_ok(k, kl) || strlen(k) != kl)
                    luaL_error(L,
                               "node:metrics: argument 'opts.labels' has a bad label name '%s' "
                               "(must match [a-zA-Z_][a-zA-Z0-9_]*, not start with __, and not "
                               "be one of peer, lane, id, path, address, relay, congestion)",
                               k);
                {
                    size_t vl;
                    const char *v = lua_tolstring(L, -1, &vl);
                    /* no NUL either: the label text is carried as a C string below */
                    if (!utf8_ok((const unsigned char *)v, vl) || memchr(v, 0, vl) != NULL)
                        luaL_error(L,
                                   "node:metrics: argument 'opts.labels' value of '%s' must be "
                                   "UTF-8 without NUL bytes",
                                   k);
                }
                lua_pushvalue(L, -2);
                lua_rawseti(L, 3, ++nlabels);
                lua_pop(L, 1);
            }
        }
        lua_pop(L, 1);
    }
    /* insertion sort of the names by byte order: a handful at most */
    for (i = 2; i <= nlabels; i++) {
        for (j = i; j > 1; j--) {
            lua_rawgeti(L, 3, j - 1);
            lua_rawgeti(L, 3, j);
            if (strcmp(lua_tostring(L, -2), lua_tostring(L, -1)) <= 0) {
                lua_pop(L, 2);
                break;
            }
            lua_rawseti(L, 3, j - 1);
            lua_rawseti(L, 3, j);
        }
    }
    /* the labels table and the names are kept on the stack while the buffer is built: the
     * buffer's own slot comes after them (4), and nothing else is pushed meanwhile */
    if (lua_istable(L, 2))
        lua_getfield(L, 2, "labels");
    else
        lua_pushnil(L);
    lua_insert(L, 3); /* 3: labels (or nil), 4: sorted names */
    luaL_buffinit(L, &b);
    for (i = 1; i <= nlabels; i++) {
        size_t kl, vl;
        const char *k, *v;
        lua_rawgeti(L, 4, i);
        k = lua_tolstring(L, -1, &kl);
        lua_pop(L, 1); /* still referenced from the names table */
        lua_getfield(L, 3, k);
        v = lua_tolstring(L, -1, &vl);
        lua_pop(L, 1); /* still referenced from the labels table */
        if (i > 1) luaL_addchar(&b, ',');
        luaL_addlstring(&b, k, kl);
        m_add(&b, "=\"");
        m_escaped(&b, v, vl, 1);
        luaL_addchar(&b, '"');
    }
    luaL_pushresult(&b);
    lua_replace(L, 3);
    lua_settop(L, 3);
    return peers;
}

/* Gathers the connected peers that have an id into a userdata array (collected by the GC,
 * also if something raises later); returns how many, *out the array. */
static size_t metrics_peers(lua_State *L, lnode *n, metric_peer **out)
{
    size_t count = p2p_host_peers(n->host, NULL, 0), got, i, j, k = 0;
    p2p_peer_handle *handles;
    metric_peer *v;
    handles = (p2p_peer_handle *)lua_newuserdata(L, (count ? count : 1) * sizeof *handles);
    got = p2p_host_peers(n->host, handles, count);
    if (got > count) got = count;
    v = (metric_peer *)lua_newuserdata(L, (got ? got : 1) * sizeof *v);
    for (i = 0; i < got; i++) {
        p2p_peer_info info;
        metric_peer *m = &v[k];
        if (p2p_host_peer_info(n->host, handles[i], &info) != 0 || !info.has_id ||
            info.state != P2P_PEER_CONNECTED ||
            p2p_peer_stats_get(n->host, handles[i], &m->st) != 0)
            continue;
        m->handle = handles[i];
        p2p_id_to_hex(info.id, m->hex);
        memcpy(m->label, m->hex, 16);
        m->label[16] = '\0';
        m->address[0] = '\0';
        if (m->st.address.family != P2P_AF_NONE)
            (void)p2p_addr_format(&m->st.address, m->address, sizeof m->address);
        m->relay[0] = '\0';
        if (m->st.has_relay) p2p_id_to_hex(m->st.relay_id, m->relay);
        k++;
    }
    /* Two ids with the same first 16 digits would make two series one: both get the whole
     * id (only a peer that ground its key for it can cause this). */
    for (i = 0; i < k; i++)
        for (j = i + 1; j < k; j++)
            if (memcmp(v[i].hex, v[j].hex, 16) == 0) {
                memcpy(v[i].label, v[i].hex, LP_HEX_SIZE);
                memcpy(v[j].label, v[j].hex, LP_HEX_SIZE);
            }
    lua_remove(L, -2);
    *out = v;
    return k;
}

/* node:metrics([opts]) -> string: the node's counters and (unless opts.peers == false) every
 * connected peer's figures in the Prometheus text format; opts.labels = {name = "value"}
 * adds constant labels to every sample (for example the nginx worker). */
static int node_metrics(lua_State *L)
{
    lnode *n = lp_check_open_node(L, 1, "node:metrics");
    int with_peers;
    const char *extra;
    p2p_stats st;
    uint64_t lua_counters[2] = {0, 0};
    metric_peer *peers = NULL;
    size_t npeers = 0, i, j, m;
    char value[48], labels[LP_HEX_SIZE + LP_ADDR_TEXT + 3 * LP_HEX_SIZE + 96];
    luaL_Buffer b;
    with_peers = metrics_opts(L); /* 3: the extra labels */
    extra = lua_tostring(L, 3);
    p2p_host_stats(n->host, &st);
    /* the Lua layer's counters, through its stats hook, as node:stats() has them */
    lua_newtable(L);
    if (push_hook(L, "stats")) {
        lua_pushvalue(L, -2);
        lua_call(L, 1, 0);
    }
    lua_getfield(L, -1, "task_errors");
    lua_counters[0] = lua_isnumber(L, -1) ? (uint64_t)lua_tonumber(L, -1) : 0;
    lua_getfield(L, -2, "receive_dropped");
    lua_counters[1] = lua_isnumber(L, -1) ? (uint64_t)lua_tonumber(L, -1) : 0;
    lua_settop(L, 3);
    if (with_peers) npeers = metrics_peers(L, n, &peers); /* 4: their array */
    luaL_buffinit(L, &b);
    for (i = 0; i < sizeof node_figures / sizeof node_figures[0]; i++) {
        const node_metric *nm = &node_figures[i];
        uint64_t v;
        switch (nm->from) {
        case FROM_CALLBACK_ERRORS: v = n->callback_errors; break;
        case FROM_TASK_ERRORS: v = lua_counters[0]; break;
        case FROM_RECEIVE_DROPPED: v = lua_counters[1]; break;
        default: memcpy(&v, (const char *)&st + nm->offset, sizeof v);
        }
        m_header(&b, nm->name, nm->type, nm->help);
        fmt_u64(value, sizeof value, v);
        m_sample(&b, nm->name, "", extra, value);
    }
    if (npeers > 0) {
        m_header(&b, "p2pnet_peer_info", M_GAUGE,
                 "1 for each connected peer, with its id, path, address, relay and congestion "
                 "controller.");
        for (j = 0; j < npeers; j++) {
            const metric_peer *p = &peers[j];
            /* ids and addresses hold nothing to escape: hex digits, dots, colons, brackets */
            snprintf(labels, sizeof labels,
                     "peer=\"%s\",id=\"%s\",path=\"%s\",address=\"%s\",relay=\"%s\","
                     "congestion=\"%s\"",
                     p->label, p->hex, lp_path_kind_name(p->st.path), p->address, p->relay,
                     p->st.congestion == P2P_CC_NEWRENO ? "newreno" : "bbr");
            m_sample(&b, "p2pnet_peer_info", labels, extra, "1");
        }
        m_header(&b, "p2pnet_peer_direct", M_GAUGE,
                 "1 while the session's path is direct, 0 "
                 "while it is relayed.");
        for (j = 0; j < npeers; j++) {
            snprintf(labels, sizeof labels, "peer=\"%s\"", peers[j].label);
            m_sample(&b, "p2pnet_peer_direct", labels, extra, peers[j].st.direct ? "1" : "0");
        }
        for (i = 0; i < sizeof peer_figures / sizeof peer_figures[0]; i++) {
            const peer_metric *pm = &peer_figures[i];
            m_header(&b, pm->name, pm->type, pm->help);
            for (j = 0; j < npeers; j++) {
                const char *field = (const char *)&peers[j].st + pm->offset;
                if (pm->kind == PV_RATIO) {
                    double r;
                    memcpy(&r, field, sizeof r);
                    fmt_ratio(value, sizeof value, r);
                } else if (pm->offset == offsetof(p2p_peer_stats, mtu)) {
                    fmt_u64(value, sizeof value, peers[j].st.mtu);
                } else {
                    uint64_t v;
                    memcpy(&v, field, sizeof v);
                    if (pm->kind == PV_SECONDS)
                        fmt_seconds(value, sizeof value, v);
                    else
                        fmt_u64(value, sizeof value, v);
                }
                snprintf(labels, sizeof labels, "peer=\"%s\"", peers[j].label);
                m_sample(&b, pm->name, labels, extra, value);
            }
        }
        for (i = 0; i < sizeof lane_figures / sizeof lane_figures[0]; i++) {
            m_header(&b, lane_figures[i].name, lane_figures[i].type, lane_figures[i].help);
            for (j = 0; j < npeers; j++) {
                p2p_lane_stats lanes[P2P_LANE_MAX + 2];
                size_t nl = p2p_peer_lane_stats_get(n->host, peers[j].handle, lanes,
                                                    sizeof lanes / sizeof lanes[0]);
                if (nl > sizeof lanes / sizeof lanes[0]) nl = sizeof lanes / sizeof lanes[0];
                for (m = 0; m < nl; m++) {
                    const p2p_lane_stats *l = &lanes[m];
                    uint64_t v = lane_figures[i].which == LV_QUEUED_BYTES      ? l->queued_bytes
                                 : lane_figures[i].which == LV_UNSENT_BYTES    ? l->unsent_bytes
                                 : lane_figures[i].which == LV_QUEUED_MESSAGES ? l->queued_records
                                 : lane_figures[i].which == LV_SENT            ? l->records_sent
                                                                    : l->records_received;
                    if (l->lane == P2P_LANE_STATS_CONTROL)
                        snprintf(labels, sizeof labels, "peer=\"%s\",lane=\"control\"",
                                 peers[j].label);
                    else
                        snprintf(labels, sizeof labels, "peer=\"%s\",lane=\"%d\"", peers[j].label,
                                 l->lane);
                    fmt_u64(value, sizeof value, v);
                    m_sample(&b, lane_figures[i].name, labels, extra, value);
                }
            }
        }
    }
    luaL_pushresult(&b);
    return 1;
}

void lp_node_class(lua_State *L)
{
    static const luaL_Reg methods[] = {{"address", node_address},
                                       {"addresses", node_addresses},
                                       {"connect", node_connect},
                                       {"peers", node_peers},
                                       {"peer", node_peer},
                                       {"broadcast", node_broadcast},
                                       {"on", node_on},
                                       {"poll", node_poll},
                                       {"fd", node_fd},
                                       {"next_timeout", node_next_timeout},
                                       {"now", lp_node_clock},
                                       {"stats", node_stats},
                                       {"metrics", node_metrics},
                                       {"close", node_close_m},
                                       {"lanes", node_lanes},
                                       {"nat", node_nat},
                                       {"lan_peers", node_lan_peers},
                                       {NULL, NULL}};
    static const luaL_Reg meta[] = {
        {"__tostring", node_tostring},
        {"__gc", node_close_m},
#if LUA_VERSION_NUM >= 504
        {"__close", node_close_m},
#endif
        {NULL, NULL}
    };
    lp_class(L, NODE_MT, methods, meta, node_index);
}
