/*
 * sim.c - p2pnet.Sim: the deterministic network of driver/sim.c, on virtual time. Its nodes
 * are ordinary Nodes (node.c) attached to it; sim:run() steps the network and drains and
 * dispatches every node between steps. The Sim's uservalue holds its nodes in creation
 * order (and the Lua layer's table under UV_LAYER).
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "binding.h"

/* Longest one-way latency or jitter an option takes, in seconds. */
#define MAX_SIM_DELAY 3600
/* Largest seed: 2^53, what every Lua number holds exactly. */
#define MAX_SEED 9007199254740992.0
/* Largest link rate and queue, as the simulator takes them (driver/sim.h). */
#define MAX_LINK_RATE ((double)P2P_SIM_LINK_MAX_RATE)
#define MAX_LINK_QUEUE ((double)P2P_SIM_LINK_MAX_QUEUE)

static lsim *check_sim(lua_State *L, int idx)
{
    lsim *s = (lsim *)lp_checkudata(L, idx, SIM_MT);
    if (s->sim == NULL || s->collected) luaL_error(L, "sim is freed");
    return s;
}

static int read_probability(lua_State *L, int idx, const char *k, double *out)
{
    double p;
    lua_getfield(L, idx, k);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    p = lua_type(L, -1) == LUA_TNUMBER ? (double)lua_tonumber(L, -1) : -1;
    if (!(p >= 0 && p <= 1)) luaL_error(L, "p2pnet.sim: option '%s' must be a probability 0-1", k);
    *out = p;
    lua_pop(L, 1);
    return 1;
}

static void read_sim_seconds(lua_State *L, int idx, const char *k, uint64_t *out)
{
    double s;
    lua_getfield(L, idx, k);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return;
    }
    s = lua_type(L, -1) == LUA_TNUMBER ? (double)lua_tonumber(L, -1) : -1;
    if (!(s >= 0 && s <= MAX_SIM_DELAY))
        luaL_error(L, "p2pnet.sim: option '%s' must be a number of seconds 0-3600", k);
    *out = (uint64_t)(s * US_PER_SECOND + 0.5);
    lua_pop(L, 1);
}

/* ---- access links ---------------------------------------------------------------------- */

/* A link spec read from Lua: each direction's settings, and whether it has a link at all. */
typedef struct link_spec {
    p2p_sim_link dir[2]; /* by P2P_SIM_UP / P2P_SIM_DOWN */
    int on[2];
} link_spec;

/* Raises "fname: option '<path><k>' what". */
static int link_error(lua_State *L, const char *fname, const char *path, const char *k,
                      const char *what)
{
    return luaL_error(L, "%s: option '%s%s' %s", fname, path, k, what);
}

/* The number at idx in [lo, hi], or raises naming the option. */
static double link_number(lua_State *L, int idx, double lo, double hi, const char *fname,
                          const char *path, const char *k, const char *what)
{
    double v = lua_type(L, idx) == LUA_TNUMBER ? (double)lua_tonumber(L, idx) : -1;
    if (!(v >= lo && v <= hi)) link_error(L, fname, path, k, what);
    return v;
}

/* Reads the burst table at idx ({enter, leave [, loss]}) into l. */
static void read_burst(lua_State *L, int idx, const char *fname, const char *path, p2p_sim_link *l)
{
    static const char *const names[] = {"enter", "leave", "loss", NULL};
    double *fields[3];
    char sub[64];
    int i;
    fields[0] = &l->burst_enter;
    fields[1] = &l->burst_leave;
    fields[2] = &l->burst_loss;
    if (!lua_istable(L, idx)) link_error(L, fname, path, "burst", "must be a table");
    snprintf(sub, sizeof sub, "%sburst.", path);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
        int known = 0;
        for (i = 0; names[i] != NULL; i++)
            if (strcmp(k, names[i]) == 0) known = 1;
        if (!known) luaL_error(L, "%s: unknown option '%s%s'", fname, sub, k);
        lua_pop(L, 1);
    }
    /* The classic Gilbert model: a bad spell loses everything unless `loss` says otherwise. */
    l->burst_loss = 1.0;
    for (i = 0; names[i] != NULL; i++) {
        lua_getfield(L, idx, names[i]);
        if (!lua_isnil(L, -1) || i < 2)
            *fields[i] =
                link_number(L, -1, 0, 1, fname, sub, names[i], "must be a probability 0-1");
        lua_pop(L, 1);
    }
}

/* Reads the link fields of the table at idx into l (fields it lacks are left alone); path is
 * the option's name so far, for errors. Returns 1 when it had any field. up and down are
 * taken only when top is set (the caller reads them). */
static int read_link_fields(lua_State *L, int idx, const char *fname, const char *path, int top,
                            p2p_sim_link *l)
{
    int any = 0;
    idx = lp_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        const char *k;
        int v = lua_gettop(L);
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "%s: option '%s' names must be strings", fname, path);
        k = lua_tostring(L, -2);
        if (strcmp(k, "rate") == 0) {
            l->rate_bps = (uint64_t)(link_number(L, v, 0, MAX_LINK_RATE, fname, path, k,
                                                 "must be a number of bits per second 0-1e12") +
                                     0.5);
        } else if (strcmp(k, "queue") == 0) {
            int64_t q;
            if (!lp_tointeger(L, v, 0, MAX_LINK_QUEUE, &q))
                link_error(L, fname, path, k, "must be an integer number of bytes 0-2^32");
            l->queue_bytes = (uint64_t)q;
        } else if (strcmp(k, "delay") == 0) {
            l->delay_us = (uint64_t)(link_number(L, v, 0, MAX_SIM_DELAY, fname, path, k,
                                                 "must be a number of seconds 0-3600") *
                                         US_PER_SECOND +
                                     0.5);
        } else if (strcmp(k, "loss") == 0) {
            l->loss = link_number(L, v, 0, 1, fname, path, k, "must be a probability 0-1");
        } else if (strcmp(k, "burst") == 0) {
            read_burst(L, v, fname, path, l);
        } else if (top && (strcmp(k, "up") == 0 || strcmp(k, "down") == 0)) {
            if (!lua_istable(L, v)) link_error(L, fname, path, k, "must be a table");
            any--; /* read by the caller: not a field of both directions */
        } else {
            luaL_error(L, "%s: unknown option '%s%s'", fname, path, k);
        }
        any++;
        lua_settop(L, v - 1);
    }
    return any > 0;
}

/* Reads the link spec at idx ({rate, queue, delay, loss, burst, up = {...}, down = {...}});
 * nil or false: no link. path is "link." inside an options table, "" for sim:link. Raises
 * naming fname and the option on any bad value. */
static void read_link_spec(lua_State *L, int idx, const char *fname, const char *path,
                           link_spec *out)
{
    static const char *const dirs[2] = {"up", "down"};
    p2p_sim_link both;
    int shared, d;
    memset(out, 0, sizeof *out);
    if (lua_isnoneornil(L, idx) || (lua_type(L, idx) == LUA_TBOOLEAN && !lua_toboolean(L, idx)))
        return;
    idx = lp_absindex(L, idx);
    if (!lua_istable(L, idx)) {
        if (path[0] == '\0') lp_arg_error(L, fname, "spec", "must be a table or nil");
        luaL_error(L, "%s: option 'link' must be a table or false", fname);
    }
    memset(&both, 0, sizeof both);
    shared = read_link_fields(L, idx, fname, path, 1, &both);
    for (d = 0; d < 2; d++) {
        char sub[32];
        out->dir[d] = both;
        out->on[d] = shared;
        lua_getfield(L, idx, dirs[d]);
        if (!lua_isnil(L, -1)) {
            snprintf(sub, sizeof sub, "%s%s.", path, dirs[d]);
            (void)read_link_fields(L, -1, fname, sub, 0, &out->dir[d]);
            out->on[d] = 1;
        }
        lua_pop(L, 1);
    }
}

/* Gives the node's host the links of spec (directions without one are cleared). */
static int apply_link_spec(lsim *s, p2p_host *h, const link_spec *spec)
{
    int d, rc;
    for (d = P2P_SIM_UP; d <= P2P_SIM_DOWN; d++)
        if ((rc = p2p_sim_set_link(s->sim, h, d, spec->on[d] ? &spec->dir[d] : NULL)) != 0)
            return rc;
    return 0;
}

/* p2pnet.sim([opts]) -> sim */
int lp_sim_new(lua_State *L)
{
    p2p_sim_config cfg;
    link_spec link;
    lsim *s;
    int rc, d;
    memset(&cfg, 0, sizeof cfg);
    memset(&link, 0, sizeof link);
    lua_settop(L, 1);
    if (!lua_isnil(L, 1)) {
        if (!lua_istable(L, 1)) return luaL_error(L, "p2pnet.sim: options must be a table");
        lua_pushnil(L);
        while (lua_next(L, 1) != 0) {
            static const char *const known[] = {"seed",      "latency", "jitter", "loss",
                                                "duplicate", "reorder", "link",   NULL};
            const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
            int i, ok = 0;
            for (i = 0; known[i] != NULL; i++)
                if (strcmp(k, known[i]) == 0) ok = 1;
            if (!ok) return luaL_error(L, "p2pnet.sim: unknown option '%s'", k);
            lua_pop(L, 1);
        }
        lua_getfield(L, 1, "seed");
        if (!lua_isnil(L, -1)) {
            int64_t seed;
            if (!lp_tointeger(L, -1, 0, MAX_SEED, &seed))
                return luaL_error(L, "p2pnet.sim: option 'seed' must be an integer >= 0");
            cfg.seed = (uint64_t)seed;
        }
        lua_pop(L, 1);
        read_sim_seconds(L, 1, "latency", &cfg.latency_us);
        read_sim_seconds(L, 1, "jitter", &cfg.jitter_us);
        read_probability(L, 1, "loss", &cfg.loss);
        read_probability(L, 1, "duplicate", &cfg.duplicate);
        read_probability(L, 1, "reorder", &cfg.reorder);
        lua_getfield(L, 1, "link");
        read_link_spec(L, -1, "p2pnet.sim", "link.", &link);
        lua_pop(L, 1);
    }
    s = (lsim *)lua_newuserdata(L, sizeof *s);
    memset(s, 0, sizeof *s);
    rc = p2p_sim_new(&s->sim, &cfg);
    if (rc != 0) {
        s->sim = NULL;
        return lp_push_fail(L, lp_error_text(rc));
    }
    for (d = P2P_SIM_UP; d <= P2P_SIM_DOWN; d++)
        (void)p2p_sim_set_default_link(s->sim, d, link.on[d] ? &link.dir[d] : NULL);
    lua_newtable(L); /* nodes, in creation order */
    lp_setuservalue(L, -2);
    luaL_getmetatable(L, SIM_MT);
    lua_setmetatable(L, -2);
    lp_created(L, -1, "sim");
    return 1;
}

void lp_sim_free(lsim *s)
{
    size_t i;
    p2p_sim_free(s->sim);
    s->sim = NULL;
    for (i = 0; i < s->nstuns; i++) {
#if LP_SIM_GW
        p2p_sim_stun_free((p2p_sim_stun *)s->stuns[i]);
#endif
        s->stuns[i] = NULL;
    }
    s->nstuns = 0;
}

static int sim_gc(lua_State *L)
{
    lsim *s = (lsim *)lp_checkudata(L, 1, SIM_MT);
    if (s->collected) return 0;
    s->collected = 1;
    /* Nodes collected in the same cycle may be finalized after us: the last one frees. */
    if (s->attached == 0 && s->sim != NULL) lp_sim_free(s);
    return 0;
}

static int sim_tostring(lua_State *L)
{
    lsim *s = (lsim *)lp_checkudata(L, 1, SIM_MT);
    lua_pushfstring(L, "p2pnet.Sim(%f s)",
                    s->sim != NULL ? (double)p2p_sim_now(s->sim) / US_PER_SECOND : 0.0);
    return 1;
}

/* sim:node([opts]) -> node | nil, err */
static int sim_node(lua_State *L)
{
    int nodeidx, has_link = 0;
    link_spec link;
    lsim *s = check_sim(L, 1);
    lua_settop(L, 2);
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "link");
        has_link = !lua_isnil(L, -1);
        read_link_spec(L, -1, "sim:node", "link.", &link);
        lua_pop(L, 1);
    }
    if (has_link) {
        /* The node options proper go on without `link`, which only the simulator knows. */
        lua_newtable(L);
        lua_pushnil(L);
        while (lua_next(L, 2) != 0) {
            if (lua_type(L, -2) == LUA_TSTRING && strcmp(lua_tostring(L, -2), "link") == 0) {
                lua_pop(L, 1);
                continue;
            }
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_settable(L, 3);
        }
        lua_replace(L, 2);
    }
    if (lp_node_new(L, 2, 1, "sim:node") != 1) return 2;
    nodeidx = lua_gettop(L);
    if (has_link) {
        lnode *n = (lnode *)lua_touserdata(L, nodeidx);
        int rc = apply_link_spec(s, n->host, &link);
        if (rc != 0) return lp_push_fail(L, lp_error_text(rc));
    }
    lp_getuservalue(L, 1);
    lua_pushvalue(L, nodeidx);
    lua_rawseti(L, -2, (int)lp_rawlen(L, -2) + 1);
    lua_pop(L, 1);
    return 1;
}

static int sim_now(lua_State *L)
{
    lsim *s = check_sim(L, 1);
    lua_pushnumber(L, (lua_Number)p2p_sim_now(s->sim) / US_PER_SECOND);
    return 1;
}

/* Drains and dispatches every open node of the sim at 1, in creation order. */
static int sim_dispatch(lua_State *L)
{
    int i, count = 0, len;
    lp_getuservalue(L, 1);
    len = (int)lp_rawlen(L, -1);
    for (i = 1; i <= len; i++) {
        lnode *n;
        lua_rawgeti(L, -1, i);
        n = (lnode *)lua_touserdata(L, -1);
        if (n != NULL && !n->closed) {
            lp_drain(L, -1);
            count += lp_dispatch(L, -1);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return count;
}

const char *lp_sim_refusal(const lsim *s)
{
    if (s->running) return "sim:run is not re-entrant (called from a handler)";
    if (s->draining > 0)
        return "sim:run is not re-entrant (called from a finalizer during a drain)";
    return NULL;
}

/* core.sim_busy(sim) -> nil, or the error sim:run() would raise now (for the Lua layer). */
int lp_sim_busy(lua_State *L)
{
    const char *why = lp_sim_refusal(check_sim(L, 1));
    if (why == NULL)
        lua_pushnil(L);
    else
        lua_pushstring(L, why);
    return 1;
}

/* Runs the network until virtual time `until` (microseconds). With stop_on_event, returns
 * early after the first step that dispatched an event (the Lua layer then resumes the tasks
 * it woke); returns 1 when it stopped early. */
static int sim_run_to(lua_State *L, lsim *s, uint64_t until, int stop_on_event)
{
    int stopped = 0;
    const char *why = lp_sim_refusal(s);
    if (why != NULL) luaL_error(L, "%s", why);
    s->running = 1;
    if (sim_dispatch(L) > 0 && stop_on_event) {
        s->running = 0;
        return 1;
    }
    for (;;) {
        int more = p2p_sim_step(s->sim, until);
        int events = sim_dispatch(L);
        if (!more && p2p_sim_now(s->sim) >= until) break;
        if (events > 0 && stop_on_event) {
            stopped = 1;
            break;
        }
    }
    s->running = 0;
    return stopped;
}

/* sim:run(seconds) */
static int sim_run(lua_State *L)
{
    lsim *s = check_sim(L, 1);
    double secs;
    lua_settop(L, 2);
    if (lua_type(L, 2) != LUA_TNUMBER || !((double)lua_tonumber(L, 2) >= 0))
        return lp_arg_error(L, "sim:run", "seconds", "must be a number >= 0");
    secs = (double)lua_tonumber(L, 2);
    if (secs > MAX_SECONDS) secs = MAX_SECONDS;
    if (lp_sim_refusal(s) != NULL) return luaL_error(L, "%s", lp_sim_refusal(s));
    /* the Lua layer runs the tasks of the sim's nodes between steps */
    lp_uv_field(L, 1, UV_LAYER);
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "run");
        if (lua_isfunction(L, -1)) {
            lua_pushvalue(L, 1);
            lua_pushnumber(L, (lua_Number)secs);
            lua_call(L, 2, 0);
            return 0;
        }
    }
    (void)sim_run_to(L, s, p2p_sim_now(s->sim) + (uint64_t)(secs * US_PER_SECOND + 0.5), 0);
    return 0;
}

/* core.sim_run_until(sim, t [, stop_on_event]) -> stopped early: runs to the absolute
 * virtual time t (seconds); for the Lua layer. */
int lp_sim_run_until(lua_State *L)
{
    lsim *s = check_sim(L, 1);
    double t = lua_type(L, 2) == LUA_TNUMBER ? (double)lua_tonumber(L, 2) : -1;
    uint64_t until, now = p2p_sim_now(s->sim);
    lua_settop(L, 3);
    if (!(t >= 0)) return lp_arg_error(L, "sim_run_until", "t", "must be a number >= 0");
    if (t > MAX_SECONDS) t = MAX_SECONDS;
    /* Round up: the caller wants time to have reached t, never to stop a microsecond short
     * of it and then ask again forever. */
    until = (uint64_t)ceil(t * US_PER_SECOND - 1e-3);
    lua_pushboolean(L, sim_run_to(L, s, until > now ? until : now, lua_toboolean(L, 3)));
    return 1;
}

/* core.sim_next_time(sim) -> seconds of virtual time of the next network or timer event,
 * or nil */
int lp_sim_next_time(lua_State *L)
{
    lsim *s = check_sim(L, 1);
    uint64_t t = p2p_sim_next_time(s->sim);
    if (t == P2P_TIME_NEVER) return 0;
    lua_pushnumber(L, (lua_Number)t / US_PER_SECOND);
    return 1;
}

static const lp_counter sim_counters[] = {LP_COUNTER(p2p_sim_stats, sent),
                                          LP_COUNTER(p2p_sim_stats, delivered),
                                          LP_COUNTER(p2p_sim_stats, lost),
                                          LP_COUNTER(p2p_sim_stats, duplicated),
                                          LP_COUNTER(p2p_sim_stats, reordered),
                                          LP_COUNTER(p2p_sim_stats, nat_filtered),
#if LP_SIM_REACH
                                          LP_COUNTER(p2p_sim_stats, udp_blocked),
                                          LP_COUNTER(p2p_sim_stats, stream_datagrams),
                                          LP_COUNTER(p2p_sim_stats, lan_datagrams),
                                          LP_COUNTER(p2p_sim_stats, io_requests),
#endif
                                          {NULL, 0}};

static int sim_stats(lua_State *L)
{
    lsim *s = check_sim(L, 1);
    p2p_sim_stats st;
    p2p_sim_stats_get(s->sim, &st);
    lp_push_counters(L, &st, sim_counters);
    return 1;
}

/* sim:rebind(node): the node's NAT forgets its mappings; new ones get new ports. */
static int sim_rebind(lua_State *L)
{
    lsim *s = check_sim(L, 1);
    lnode *n = (lnode *)lp_testudata(L, 2, NODE_MT);
    if (n == NULL || n->simref != s)
        lp_arg_error(L, "sim:rebind", "node", "must be a node of this sim");
    if (n->host == NULL || n->closed || p2p_sim_rebind(s->sim, n->host) != 0)
        return lp_push_fail(L, "the node is closed or not behind a NAT");
    lua_pushboolean(L, 1);
    return 1;
}

/* The node at idx, which must be a node of sim s (raises for fname otherwise). */
static lnode *sim_member(lua_State *L, lsim *s, int idx, const char *fname)
{
    lnode *n = (lnode *)lp_testudata(L, idx, NODE_MT);
    if (n == NULL || n->simref != s) lp_arg_error(L, fname, "node", "must be a node of this sim");
    return n;
}

/* sim:link(node, spec | nil): sets the node's access link (nil or false: none). */
static int sim_link(lua_State *L)
{
    lsim *s = check_sim(L, 1);
    lnode *n = sim_member(L, s, 2, "sim:link");
    link_spec link;
    int rc;
    lua_settop(L, 3);
    read_link_spec(L, 3, "sim:link", "", &link);
    if (n->host == NULL || n->closed) return lp_push_fail(L, "the node is closed");
    rc = apply_link_spec(s, n->host, &link);
    if (rc != 0) return lp_push_fail(L, lp_error_text(rc));
    lua_pushboolean(L, 1);
    return 1;
}

static const lp_counter link_counters[] = {
    LP_COUNTER(p2p_sim_link_stats, packets),          LP_COUNTER(p2p_sim_link_stats, bytes),
    LP_COUNTER(p2p_sim_link_stats, queue_drops),      LP_COUNTER(p2p_sim_link_stats, loss_drops),
    LP_COUNTER(p2p_sim_link_stats, queue_peak_bytes), {NULL, 0}};

/* sim:link_stats(node) -> {up = {...}, down = {...}} | nil, err */
static int sim_link_stats(lua_State *L)
{
    static const char *const dirs[2] = {"up", "down"};
    lsim *s = check_sim(L, 1);
    lnode *n = sim_member(L, s, 2, "sim:link_stats");
    p2p_sim_link_stats st[2];
    int d;
    if (n->host == NULL || n->closed) return lp_push_fail(L, "the node is closed");
    for (d = P2P_SIM_UP; d <= P2P_SIM_DOWN; d++)
        if (p2p_sim_link_stats_get(s->sim, n->host, d, &st[d]) != 0)
            return lp_push_fail(L, "the node is closed");
    lua_createtable(L, 0, 2);
    for (d = P2P_SIM_UP; d <= P2P_SIM_DOWN; d++) {
        lp_push_counters(L, &st[d], link_counters);
        lua_pushnumber(L, (lua_Number)st[d].queue_delay_max_us / US_PER_SECOND);
        lua_setfield(L, -2, "queue_delay_max");
        lua_pushnumber(L, st[d].packets > 0 ? (lua_Number)st[d].queue_delay_sum_us /
                                                  (lua_Number)st[d].packets / US_PER_SECOND
                                            : 0.0);
        lua_setfield(L, -2, "queue_delay_mean");
        lua_setfield(L, -2, dirs[d]);
    }
    return 1;
}

#if LP_SIM_REACH
/* sim:block_udp(node, on): the node's router drops all its UDP (streams, LAN and the gateway
 * still pass), or lets it through again. */
static int sim_block_udp(lua_State *L)
{
    lsim *s = check_sim(L, 1);
    lnode *n = sim_member(L, s, 2, "sim:block_udp");
    if (lua_type(L, 3) != LUA_TBOOLEAN)
        return lp_arg_error(L, "sim:block_udp", "on", "must be a boolean");
    if (n->host == NULL || n->closed) return lp_push_fail(L, "the node is closed");
    if (p2p_sim_block_udp(s->sim, n->host, lua_toboolean(L, 3)) != 0)
        return lp_push_fail(L, "the node is closed");
    lua_pushboolean(L, 1);
    return 1;
}
#endif

#if LP_SIM_GW
static size_t stun_udp(void *ud, const p2p_addr *from, const p2p_addr *to, const uint8_t *in,
                       size_t len, uint8_t *out, size_t cap, p2p_addr *reply_from)
{
    return p2p_sim_stun_udp((p2p_sim_stun *)ud, from, to, in, len, out, cap, reply_from);
}

/* The "ip:port" at idx as an IPv4 address for a simulated server; raises otherwise. */
static void stun_addr(lua_State *L, int idx, const char *arg, p2p_addr *out)
{
    if (lua_type(L, idx) != LUA_TSTRING || p2p_addr_parse(out, lua_tostring(L, idx)) != 0 ||
        out->family != P2P_AF_INET4 || out->port == 0)
        lp_arg_error(L, "sim:stun_server", arg, "must be an \"ip:port\" IPv4 address");
}

/* sim:stun_server(primary [, alternate]) -> true | nil, err: a STUN server (like coturn
 * --stun-only) at primary; with alternate, also at its IP and port combinations, named in
 * OTHER-ADDRESS (RFC 5780). */
static int sim_stun_server(lua_State *L)
{
    lsim *s = check_sim(L, 1);
    p2p_addr primary, alternate;
    p2p_sim_server srv;
    p2p_sim_stun *st;
    int rc, alt = !lua_isnoneornil(L, 3);
    stun_addr(L, 2, "primary", &primary);
    if (alt) {
        stun_addr(L, 3, "alternate", &alternate);
        if (memcmp(alternate.ip, primary.ip, 4) == 0 || alternate.port == primary.port)
            lp_arg_error(L, "sim:stun_server", "alternate",
                         "must differ from primary in both IP and port");
    }
    if (s->nstuns >= LP_SIM_STUNS) return lp_push_fail(L, "too many STUN servers (8)");
    st = p2p_sim_stun_new(&primary, alt ? &alternate : NULL);
    if (st == NULL) return lp_push_fail(L, "out of memory");
    memset(&srv, 0, sizeof srv);
    srv.ud = st;
    srv.naddr = p2p_sim_stun_addresses(st, srv.addr);
    srv.udp = stun_udp;
    if ((rc = p2p_sim_add_server(s->sim, &srv)) != 0) {
        p2p_sim_stun_free(st);
        return lp_push_fail(L, rc == P2P_ERR_INVALID ? "address in use" : lp_error_text(rc));
    }
    s->stuns[s->nstuns++] = st;
    lua_pushboolean(L, 1);
    return 1;
}
#endif

/* core.sim_nodes(sim) -> the array of its nodes, in creation order (read only) */
int lp_sim_nodes(lua_State *L)
{
    lp_checkudata(L, 1, SIM_MT);
    lp_getuservalue(L, 1);
    return 1;
}

void lp_sim_class(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"node", sim_node},
        {"now", sim_now},
        {"run", sim_run},
        {"stats", sim_stats},
        {"rebind", sim_rebind},
        {"link", sim_link},
        {"link_stats", sim_link_stats},
#if LP_SIM_REACH
        {"block_udp", sim_block_udp},
#endif
#if LP_SIM_GW
        {"stun_server", sim_stun_server},
#endif
        {NULL, NULL}
    };
    static const luaL_Reg meta[] = {{"__tostring", sim_tostring}, {"__gc", sim_gc}, {NULL, NULL}};
    lp_class(L, SIM_MT, methods, meta, NULL);
}
