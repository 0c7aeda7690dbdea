/*
 * peer.c - p2pnet.Peer: one userdata per session, cached by its node (UV_PEERS, handle ->
 * Peer) so that every event and every lookup of a session gives the same Lua object. A Peer
 * whose session ended is retired from the cache and answers from its last snapshot.
 *
 * Each Peer's uservalue holds its Node (which keeps the node alive while the peer is
 * reachable) and the callbacks of its messages awaiting a reply, keyed by sequence number and
 * lane (cb_key).
 */
#include <string.h>

#include "binding.h"

#define PUV_NODE "node"
#define PUV_CBS "cbs"
#define PUV_HEX 1 /* the id as a Lua string, once known */

lpeer *lp_check_peer(lua_State *L, int idx)
{
    return (lpeer *)lp_checkudata(L, idx, PEER_MT);
}

static void remember_id(lpeer *p)
{
    if (p->snap.has_id && p->hex[0] == '\0') p2p_id_to_hex(p->snap.id, p->hex);
}

const p2p_peer_info *lp_peer_info(lpeer *p)
{
    p2p_peer_info info;
    if (!p->dead && p->node->host != NULL &&
        p2p_host_peer_info(p->node->host, p->handle, &info) == 0) {
        p->snap = info;
        remember_id(p);
    }
    return &p->snap;
}

const char *lp_peer_hex(lpeer *p)
{
    if (p->hex[0] == '\0') (void)lp_peer_info(p);
    return p->hex[0] != '\0' ? p->hex : NULL;
}

/* Pushes the peer's id as a Lua string, made once per Peer (slot PUV_HEX of its uservalue),
 * or nil while the id is unknown. */
void lp_push_peer_hex(lua_State *L, int pidx)
{
    lpeer *p = (lpeer *)lua_touserdata(L, pidx);
    const char *hex;
    lp_getuservalue(L, pidx);
    lua_rawgeti(L, -1, PUV_HEX);
    if (lua_type(L, -1) == LUA_TSTRING) {
        lua_remove(L, -2);
        return;
    }
    lua_pop(L, 1);
    hex = lp_peer_hex(p);
    if (hex == NULL) {
        lua_pop(L, 1);
        lua_pushnil(L);
        return;
    }
    lua_pushlstring(L, hex, LP_HEX_LEN);
    lua_pushvalue(L, -1);
    lua_rawseti(L, -3, PUV_HEX);
    lua_remove(L, -2);
}

/* Pushes the cached Peer for `handle` of the node at nidx and returns 1, or returns 0 with
 * nothing pushed. Allocates nothing. */
static int push_cached_peer(lua_State *L, int nidx, p2p_peer_handle handle)
{
    lp_uv_field(L, nidx, UV_PEERS);
    lua_pushnumber(L, (lua_Number)handle);
    lua_rawget(L, -2);
    lua_remove(L, -2);
    if (!lua_isnil(L, -1)) return 1;
    lua_pop(L, 1);
    return 0;
}

/* Every allocation comes first: a finalizer run by one of them may close the node, end the
 * session, or (through node:peers()) create the Peer for this very handle. Only then is the
 * host asked about the handle, and the cache looked at again, with nothing in between that
 * could run Lua: one Lua object per peer, and never a live-looking Peer of a closed node. */
void lp_push_peer(lua_State *L, int nidx, p2p_peer_handle handle)
{
    lnode *n = lp_node_at(L, nidx);
    lpeer *p;
    nidx = lp_absindex(L, nidx);
    if (push_cached_peer(L, nidx, handle)) return;
    p = (lpeer *)lua_newuserdata(L, sizeof *p);
    memset(p, 0, sizeof *p);
    p->node = n;
    p->handle = handle;
    lua_createtable(L, 0, 2);
    lua_pushvalue(L, nidx);
    lua_setfield(L, -2, PUV_NODE);
    lua_newtable(L);
    lua_setfield(L, -2, PUV_CBS);
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
    remember_id(p);
    lp_uv_field(L, nidx, UV_PEERS);
    lua_pushnumber(L, (lua_Number)handle);
    lua_pushvalue(L, -3);
    lua_rawset(L, -3);
    lua_pop(L, 1);
}

void lp_rekey_peer(lua_State *L, int nidx, p2p_peer_handle from, p2p_peer_handle to)
{
    lpeer *p;
    nidx = lp_absindex(L, nidx);
    lp_uv_field(L, nidx, UV_PEERS);
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

void lp_retire_peer(lua_State *L, int nidx, int pidx)
{
    lpeer *p = lp_check_peer(L, pidx);
    nidx = lp_absindex(L, nidx);
    if (p->dead) return;
    (void)lp_peer_info(p);
    p->dead = 1;
    p->snap.state = P2P_PEER_DISCONNECTED;
    lp_uv_field(L, nidx, UV_PEERS);
    lua_pushnumber(L, (lua_Number)p->handle);
    lua_pushnil(L);
    lua_rawset(L, -3);
    lua_pop(L, 1);
}

/* A message's key in the table of callbacks: its ordinal counts within its lane, so both name
 * it (exact in a double while seq < 2^45, far beyond what a session sends). */
static lua_Number cb_key(uint8_t lane, uint64_t seq)
{
    return (lua_Number)seq * (P2P_LANE_MAX + 1) + lane;
}

int lp_take_callback(lua_State *L, int pidx, uint8_t lane, uint64_t seq)
{
    pidx = lp_absindex(L, pidx);
    lp_uv_field(L, pidx, PUV_CBS);
    lua_pushnumber(L, cb_key(lane, seq));
    lua_rawget(L, -2);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 2);
        return 0;
    }
    lua_pushnumber(L, cb_key(lane, seq));
    lua_pushnil(L);
    lua_rawset(L, -4);
    lua_remove(L, -2);
    return 1;
}

int lp_next_callback(lua_State *L, int pidx)
{
    pidx = lp_absindex(L, pidx);
    lp_uv_field(L, pidx, PUV_CBS);
    lua_pushnil(L);
    if (lua_next(L, -2) == 0) {
        lua_pop(L, 1);
        return 0;
    }
    /* stack: cbs key fn */
    lua_pushvalue(L, -2);
    lua_pushnil(L);
    lua_rawset(L, -5);
    lua_remove(L, -2);
    lua_remove(L, -2);
    return 1;
}

/* ---- methods ------------------------------------------------------------------------------ */

const char *lp_path_name(lpeer *p, const p2p_peer_info *info)
{
    if (info->state != P2P_PEER_CONNECTED) return NULL;
    {
        p2p_peer_stats st;
        if (!p->dead && p->node->host != NULL &&
            p2p_peer_stats_get(p->node->host, p->handle, &st) == 0)
            return lp_path_kind_name(st.path);
    }
    return info->direct ? "direct" : "relayed";
}

/* peer.address: "ip:port"; on a stream path (issue 12) the TCP endpoint of the node's stream,
 * which is where its packets go. */
static void push_peer_address(lua_State *L, lpeer *p, const p2p_peer_info *info)
{
    if (info->address.family == P2P_AF_STREAM) {
        p2p_nat_info ni;
        if (p->dead || p->node->host == NULL) {
            lua_pushnil(L);
            return;
        }
        p2p_host_nat(p->node->host, &ni);
        if (ni.has_stream)
            lp_push_addr(L, &ni.stream_to);
        else
            lua_pushnil(L);
        return;
    }
    lp_push_addr(L, &info->address);
}

/* Methods first: a method call checks its object itself, so looking it up needs no check. */
static int peer_index(lua_State *L)
{
    lpeer *p;
    const char *k;
    const p2p_peer_info *info;
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1));
    if (!lua_isnil(L, -1) || lua_type(L, 2) != LUA_TSTRING) return 1;
    p = lp_check_peer(L, 1);
    k = lua_tostring(L, 2);
    info = lp_peer_info(p);
    if (strcmp(k, "id") == 0) {
        if (!info->has_id) return 0;
        lua_pushstring(L, p->hex);
    } else if (strcmp(k, "address") == 0) {
        push_peer_address(L, p, info);
    } else if (strcmp(k, "state") == 0) {
        lua_pushstring(L, info->state == P2P_PEER_NONE ? "disconnected"
                                                       : p2p_peer_state_name(info->state));
    } else if (strcmp(k, "direct") == 0) {
        lua_pushboolean(L, info->direct);
    } else if (strcmp(k, "path") == 0) { /* issue 12: nil until the session is up */
        const char *path = lp_path_name(p, info);
        if (path == NULL) return 0;
        lua_pushstring(L, path);
    } else if (strcmp(k, "rtt") == 0) {
        lua_pushnumber(L, (lua_Number)info->srtt_us / US_PER_SECOND);
    } else if (strcmp(k, "min_rtt") == 0) { /* issue 10 (congestion control) */
        lua_pushnumber(L, (lua_Number)info->min_rtt_us / US_PER_SECOND);
    } else if (strcmp(k, "cwnd") == 0) {
        lua_pushinteger(L, (lua_Integer)info->cwnd);
    } else if (strcmp(k, "bandwidth") == 0) {
        lua_pushinteger(L, (lua_Integer)info->bandwidth);
    } else if (strcmp(k, "in_flight") == 0) {
        lua_pushinteger(L, (lua_Integer)info->in_flight);
    } else if (strcmp(k, "lost") == 0) {
        lua_pushinteger(L, (lua_Integer)info->lost);
    } else if (strcmp(k, "spurious") == 0) {
        lua_pushinteger(L, (lua_Integer)info->spurious);
    } else if (strcmp(k, "retransmits") == 0) {
        lua_pushinteger(L, (lua_Integer)info->retransmits);
    } else {
        return 0;
    }
    return 1;
}

static int peer_tostring(lua_State *L)
{
    lpeer *p = lp_check_peer(L, 1);
    const p2p_peer_info *info = lp_peer_info(p);
    char addr[LP_ADDR_TEXT] = "?";
    if (info->address.family != P2P_AF_NONE)
        (void)p2p_addr_format(&info->address, addr, sizeof addr);
    lua_pushfstring(L, "p2pnet.Peer(%s, %s, %s)", p->hex[0] ? p->hex : "?", addr,
                    info->state == P2P_PEER_NONE ? "disconnected"
                                                 : p2p_peer_state_name(info->state));
    return 1;
}

/* The open node of the peer at 1, raising "fname: node is closed" after close. */
static lnode *peer_node(lua_State *L, lpeer *p, const char *fname)
{
    if (p->node->closed || p->node->closing || p->node->host == NULL)
        luaL_error(L, "%s: node is closed", fname);
    return p->node;
}

/* Pushes the Node of the peer at 1; returns its stack index. */
static int push_node(lua_State *L)
{
    lp_uv_field(L, 1, PUV_NODE);
    return lua_gettop(L);
}

/* After a send: a UDP node leaves it for the next poll (or flushes a full batch) without
 * touching Lua; the others flush and drain. */
static void sent(lua_State *L, lnode *n, size_t len)
{
    if (n->udp != NULL)
        lp_after_send(L, 0, n, len);
    else
        lp_after_call(L, push_node(L));
}

void lp_check_options(lua_State *L, int idx, const char *fname, const char *const *known)
{
    if (!lua_istable(L, idx)) return;
    idx = lp_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        const char *const *q = known;
        while (k && *q && strcmp(*q, k) != 0) q++;
        if (!k || !*q) {
            luaL_error(L, "%s: unknown option '%s'", fname, k ? k : luaL_typename(L, -2));
        }
        lua_pop(L, 1);
    }
}

uint8_t lp_opt_lane(lua_State *L, int idx, const char *fname)
{
    int64_t lane;
    if (lua_isnoneornil(L, idx)) return 0;
    if (!lua_istable(L, idx)) lp_arg_error(L, fname, "opts", "must be a table or nil");
    lua_getfield(L, idx, "lane");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    if (!lp_tointeger(L, -1, 0, P2P_LANE_MAX, &lane))
        lp_arg_error(L, fname, "opts.lane", "must be an integer 0-254");
    lua_pop(L, 1);
    return (uint8_t)lane;
}

/* peer:send(type, data [, callback] [, opts]) -> true | nil, err. opts = {lane = n}; it may
 * stand in the callback's place. */
static int peer_send(lua_State *L)
{
    lpeer *p = lp_check_peer(L, 1);
    uint16_t type = lp_check_type(L, 2, "peer:send");
    size_t len;
    const char *data = lp_check_string(L, 3, "peer:send", "data", &len);
    int want_reply, rc;
    uint64_t seq = 0;
    uint8_t lane = 0;
    lnode *n;
    if (lua_istable(L, 4) && lua_isnoneornil(L, 5)) { /* peer:send(t, d, opts) */
        lua_settop(L, 4);
        lua_pushnil(L);
        lua_insert(L, 4);
    }
    if (!lua_isnoneornil(L, 4) && !lua_isfunction(L, 4))
        return lp_arg_error(L, "peer:send", "callback", "must be a function or nil");
    want_reply = lua_isfunction(L, 4);
    if (!lua_isnoneornil(L, 5)) {
        static const char *const known[] = {"lane", NULL};
        lane = lp_opt_lane(L, 5, "peer:send");
        lp_check_options(L, 5, "peer:send", known);
    }
    lua_settop(L, 4);
    n = peer_node(L, p, "peer:send");
    if (p->dead) return lp_push_fail(L, "disconnected");
    if (lp_refuse_busy(L, n, "peer:send")) return 2;
    rc = p2p_peer_send_lane(n->host, p->handle, lane, type, (const uint8_t *)data, len, want_reply,
                            &seq, lp_node_now(n));
    if (rc != 0) {
        lp_after_call(L, push_node(L));
        return lp_push_fail(L, lp_error_text(rc));
    }
    if (want_reply) {
        lp_uv_field(L, 1, PUV_CBS);
        lua_pushnumber(L, cb_key(lane, seq));
        lua_pushvalue(L, 4);
        lua_rawset(L, -3);
        lua_pop(L, 1);
    }
    sent(L, n, len);
    lua_pushboolean(L, 1);
    return 1;
}

/* peer:send_unreliable(type, data [, opts]) -> true | nil, err. opts = {sequenced = true,
 * lane = n}: newest wins on that lane. */
static int peer_send_unreliable(lua_State *L)
{
    lpeer *p = lp_check_peer(L, 1);
    uint16_t type = lp_check_type(L, 2, "peer:send_unreliable");
    size_t len;
    const char *data = lp_check_string(L, 3, "peer:send_unreliable", "data", &len);
    int rc, sequenced = 0;
    uint8_t lane = lp_opt_lane(L, 4, "peer:send_unreliable");
    static const char *const known[] = {"lane", "sequenced", NULL};
    lnode *n;
    lp_check_options(L, 4, "peer:send_unreliable", known);
    if (lua_istable(L, 4)) {
        lua_getfield(L, 4, "sequenced");
        if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
            lp_arg_error(L, "peer:send_unreliable", "opts.sequenced", "must be a boolean or nil");
        sequenced = lua_toboolean(L, -1);
        lua_pop(L, 1);
        /* a lane orders only sequenced datagrams: plain ones have no number to order by */
        if (!sequenced && lane != 0)
            lp_arg_error(L, "peer:send_unreliable", "opts.lane", "needs opts.sequenced = true");
    }
    lua_settop(L, 3);
    n = peer_node(L, p, "peer:send_unreliable");
    if (p->dead) return lp_push_fail(L, "disconnected");
    if (lp_refuse_busy(L, n, "peer:send_unreliable")) return 2;
    if (len > (sequenced ? P2P_MAX_DATAGRAM_SEQ : P2P_MAX_DATAGRAM))
        return lp_push_fail(L, "datagram too big");
    if (sequenced)
        rc = p2p_peer_send_sequenced(n->host, p->handle, lane, type, (const uint8_t *)data, len,
                                     lp_node_now(n));
    else
        rc = p2p_peer_send_datagram(n->host, p->handle, type, (const uint8_t *)data, len,
                                    lp_node_now(n));
    if (rc != 0) {
        lp_after_call(L, push_node(L));
        return lp_push_fail(L, rc == P2P_ERR_TOO_BIG ? "datagram too big" : lp_error_text(rc));
    }
    sent(L, n, len);
    lua_pushboolean(L, 1);
    return 1;
}

/* peer:disconnect() -> true | nil, err */
static int peer_disconnect(lua_State *L)
{
    lpeer *p = lp_check_peer(L, 1);
    int rc, nidx;
    lnode *n;
    lua_settop(L, 1);
    n = peer_node(L, p, "peer:disconnect");
    nidx = push_node(L);
    if (p->dead) return lp_push_fail(L, "disconnected");
    if (n->draining) {
        /* a finalizer during a drain: done when the drain ends (events.c) */
        lp_uv_field(L, nidx, UV_DEFERRED);
        if (!lua_istable(L, -1)) {
            lua_pop(L, 1);
            lua_newtable(L);
            lp_getuservalue(L, nidx);
            lua_pushvalue(L, -2);
            lua_setfield(L, -2, UV_DEFERRED);
            lua_pop(L, 1);
        }
        lua_pushvalue(L, 1);
        lua_rawseti(L, -2, (int)lp_rawlen(L, -2) + 1);
        lua_pop(L, 1);
        lua_pushboolean(L, 1);
        return 1;
    }
    rc = p2p_peer_disconnect(n->host, p->handle, lp_node_now(n));
    lp_after_call(L, nidx);
    if (rc != 0) return lp_push_fail(L, lp_error_text(rc));
    lua_pushboolean(L, 1);
    return 1;
}

/* ---- observability ----------------------------------------------------------------------- */

static void set_seconds(lua_State *L, const char *k, uint64_t us)
{
    lua_pushnumber(L, (lua_Number)us / US_PER_SECOND);
    lua_setfield(L, -2, k);
}

/* One lane's table: {queued_bytes, unsent_bytes, queued_messages, messages_sent,
 * messages_received}, at key lane (or "control"), in the table on top. */
/* peer:stats().candidates: the session's direct paths, the one in use first. */
static void push_candidates(lua_State *L, const p2p_peer_stats *st)
{
    static const char *const kinds[] = {"local", "reflexive", "mapped", "stun"};
    static const char *const states[] = {"untried", "probing", "validated", "failed"};
    size_t i, n = st->ncands < P2P_PATH_CANDS ? st->ncands : P2P_PATH_CANDS;
    int out = 0, pass;
    lua_createtable(L, (int)n, 0);
    /* the address in use first, then the others in the core's order */
    for (pass = 0; pass < 2; pass++) {
        for (i = 0; i < n; i++) {
            const p2p_path_cand *c = &st->cands[i];
            int current = p2p_addr_equal(&c->addr, &st->address);
            if (current != (pass == 0)) continue;
            lua_createtable(L, 0, 4);
            lp_push_addr(L, &c->addr);
            lua_setfield(L, -2, "address");
            lua_pushstring(L, c->kind >= 0 && c->kind < 4 ? kinds[c->kind] : "unknown");
            lua_setfield(L, -2, "kind");
            lua_pushstring(L, c->state >= 0 && c->state < 4 ? states[c->state] : "unknown");
            lua_setfield(L, -2, "state");
            set_seconds(L, "rtt", c->rtt_us);
            lua_rawseti(L, -2, ++out);
        }
    }
}

/* peer:stats().nat: both sides' NAT mappings, what the session does about them, and why it
 * stays relayed. */
static void push_nat(lua_State *L, lnode *n, const p2p_peer_stats *st)
{
    static const char *const strategies[] = {"direct", "punch", "birthday", "relay"};
    p2p_nat_info ni;
    const char *reason = NULL;
    p2p_host_nat(n->host, &ni);
    lua_createtable(L, 0, 5);
    lua_pushstring(L, lp_mapping_name(ni.mapping));
    lua_setfield(L, -2, "self");
    lua_pushstring(L, lp_mapping_name(st->peer_mapping));
    lua_setfield(L, -2, "peer");
    lua_pushstring(L, st->strategy >= 0 && st->strategy < 4 ? strategies[st->strategy] : "direct");
    lua_setfield(L, -2, "strategy");
    lp_set_u64(L, "probes", st->punch_probes);
    if (st->path != P2P_PATH_DIRECT && st->strategy == P2P_STRATEGY_RELAY) {
        if (ni.mapping == P2P_MAPPING_DEPENDENT && st->peer_mapping == P2P_MAPPING_DEPENDENT)
            reason = "both NATs randomize ports";
        else if (ni.mapping == P2P_MAPPING_UNKNOWN || st->peer_mapping == P2P_MAPPING_UNKNOWN)
            reason = "mapping unknown";
        else if (!n->punch)
            reason = "punch = false";
    }
    if (reason != NULL) {
        lua_pushstring(L, reason);
        lua_setfield(L, -2, "reason");
    }
}

static void push_lane(lua_State *L, const p2p_lane_stats *l)
{
    if (l->lane == P2P_LANE_STATS_CONTROL)
        lua_pushliteral(L, "control");
    else
        lua_pushinteger(L, (lua_Integer)l->lane);
    lua_createtable(L, 0, 5);
    lp_set_u64(L, "queued_bytes", l->queued_bytes);
    lp_set_u64(L, "unsent_bytes", l->unsent_bytes);
    lp_set_u64(L, "queued_messages", l->queued_records);
    lp_set_u64(L, "messages_sent", l->records_sent);
    lp_set_u64(L, "messages_received", l->records_received);
    lua_rawset(L, -3);
}

/* peer:stats() -> table | nil, "disconnected". A new table of the session's figures each call
 * (docs/API.md, Observability). A session's figures end with it: after its leave there are
 * none to give, as for peer:send. */
static int peer_stats(lua_State *L)
{
    lpeer *p = lp_check_peer(L, 1);
    lnode *n = peer_node(L, p, "peer:stats");
    p2p_peer_stats st;
    p2p_lane_stats lanes[P2P_LANE_MAX + 2];
    size_t nl, i;
    char relay[LP_HEX_SIZE];
    if (p->dead || p2p_peer_stats_get(n->host, p->handle, &st) != 0)
        return lp_push_fail(L, "disconnected");
    nl = p2p_peer_lane_stats_get(n->host, p->handle, lanes, sizeof lanes / sizeof lanes[0]);
    if (nl > sizeof lanes / sizeof lanes[0]) nl = sizeof lanes / sizeof lanes[0];
    lua_createtable(L, 0, 40);
    lp_push_peer_hex(L, 1);
    lua_setfield(L, -2, "id");
    lua_pushstring(L, st.state == P2P_PEER_NONE ? "disconnected" : p2p_peer_state_name(st.state));
    lua_setfield(L, -2, "state");
    /* round trip */
    set_seconds(L, "rtt", st.srtt_us);
    set_seconds(L, "rttvar", st.rttvar_us);
    set_seconds(L, "min_rtt", st.min_rtt_us);
    set_seconds(L, "latest_rtt", st.latest_rtt_us);
    /* loss */
    lua_pushnumber(L, (lua_Number)st.loss);
    lua_setfield(L, -2, "loss");
    lp_set_u64(L, "lost", st.lost);
    lp_set_u64(L, "spurious", st.spurious);
    lp_set_u64(L, "retransmits", st.retransmits);
    /* traffic */
    lp_set_u64(L, "packets_sent", st.packets_sent);
    lp_set_u64(L, "packets_received", st.packets_received);
    lp_set_u64(L, "bytes_sent", st.bytes_sent);
    lp_set_u64(L, "bytes_received", st.bytes_received);
    lp_set_u64(L, "eliciting_sent", st.eliciting_sent);
    /* congestion control */
    lua_pushstring(L, st.congestion == P2P_CC_NEWRENO ? "newreno" : "bbr");
    lua_setfield(L, -2, "congestion");
    lua_pushstring(L, st.phase != NULL ? st.phase : "");
    lua_setfield(L, -2, "phase");
    lp_set_u64(L, "cwnd", st.cwnd);
    lp_set_u64(L, "in_flight", st.in_flight);
    lp_set_u64(L, "bandwidth", st.bandwidth);
    lp_set_u64(L, "pacing_rate", st.pacing_rate);
    lp_set_u64(L, "congestion_events", st.congestion_events);
    lp_set_u64(L, "undos", st.undos);
    /* path */
    lua_pushstring(L, lp_path_kind_name(st.path));
    lua_setfield(L, -2, "path");
    lua_pushboolean(L, st.direct);
    lua_setfield(L, -2, "direct");
    push_peer_address(L, p, lp_peer_info(p));
    lua_setfield(L, -2, "address");
    push_candidates(L, &st);
    lua_setfield(L, -2, "candidates");
    push_nat(L, n, &st);
    lua_setfield(L, -2, "nat");
    if (st.has_relay) {
        p2p_id_to_hex(st.relay_id, relay);
        lua_pushstring(L, relay);
        lua_setfield(L, -2, "relay");
    }
    lp_set_u64(L, "mtu", st.mtu);
    /* queues */
    lp_set_u64(L, "queued_bytes", st.bytes_queued);
    lp_set_u64(L, "queued_datagrams", st.datagrams_queued);
    lua_createtable(L, 1, (int)nl);
    for (i = 0; i < nl; i++) push_lane(L, &lanes[i]);
    lua_setfield(L, -2, "lanes");
    return 1;
}

void lp_peer_class(lua_State *L)
{
    static const luaL_Reg methods[] = {{"send", peer_send},
                                       {"send_unreliable", peer_send_unreliable},
                                       {"disconnect", peer_disconnect},
                                       {"stats", peer_stats},
                                       {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__tostring", peer_tostring}, {NULL, NULL}};
    lp_class(L, PEER_MT, methods, meta, peer_index);
}
