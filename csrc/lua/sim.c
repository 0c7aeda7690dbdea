/*
 * sim.c - p2pnet.Sim: the deterministic network of driver/sim.c, on virtual time. Its nodes
 * are ordinary Nodes (node.c) attached to it; sim:run() steps the network and drains and
 * dispatches every node between steps. The Sim's uservalue holds its nodes in creation
 * order (and the Lua layer's table under UV_LAYER).
 */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "binding.h"

/* Longest one-way latency or jitter an option takes, in seconds. */
#define MAX_SIM_DELAY 3600
/* Largest seed: 2^53, what every Lua number holds exactly. */
#define MAX_SEED 9007199254740992.0

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

/* p2pnet.sim([opts]) -> sim */
int lp_sim_new(lua_State *L)
{
    p2p_sim_config cfg;
    lsim *s;
    int rc;
    memset(&cfg, 0, sizeof cfg);
    lua_settop(L, 1);
    if (!lua_isnil(L, 1)) {
        if (!lua_istable(L, 1)) return luaL_error(L, "p2pnet.sim: options must be a table");
        lua_pushnil(L);
        while (lua_next(L, 1) != 0) {
            static const char *const known[] = {"seed",      "latency", "jitter", "loss",
                                                "duplicate", "reorder", NULL};
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
    }
    s = (lsim *)lua_newuserdata(L, sizeof *s);
    memset(s, 0, sizeof *s);
    rc = p2p_sim_new(&s->sim, &cfg);
    if (rc != 0) {
        s->sim = NULL;
        return lp_push_fail(L, lp_error_text(rc));
    }
    lua_newtable(L); /* nodes, in creation order */
    lp_setuservalue(L, -2);
    luaL_getmetatable(L, SIM_MT);
    lua_setmetatable(L, -2);
    lp_created(L, -1, "sim");
    return 1;
}

static int sim_gc(lua_State *L)
{
    lsim *s = (lsim *)lp_checkudata(L, 1, SIM_MT);
    if (s->collected) return 0;
    s->collected = 1;
    /* Nodes collected in the same cycle may be finalized after us: the last one frees. */
    if (s->attached == 0 && s->sim != NULL) {
        p2p_sim_free(s->sim);
        s->sim = NULL;
    }
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
    int nodeidx;
    check_sim(L, 1);
    lua_settop(L, 2);
    if (lp_node_new(L, 2, 1, "sim:node") != 1) return 2;
    nodeidx = lua_gettop(L);
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

/* core.sim_nodes(sim) -> the array of its nodes, in creation order (read only) */
int lp_sim_nodes(lua_State *L)
{
    lp_checkudata(L, 1, SIM_MT);
    lp_getuservalue(L, 1);
    return 1;
}

void lp_sim_class(lua_State *L)
{
    static const luaL_Reg methods[] = {{"node", sim_node},     {"now", sim_now},
                                       {"run", sim_run},       {"stats", sim_stats},
                                       {"rebind", sim_rebind}, {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__tostring", sim_tostring}, {"__gc", sim_gc}, {NULL, NULL}};
    lp_class(L, SIM_MT, methods, meta, NULL);
}
