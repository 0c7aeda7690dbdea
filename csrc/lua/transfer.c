/*
 * transfer.c - the binding of streaming transfers (p2p_host_transfer_*, docs/PROTOCOL.md
 * section 4.2) for the pure-Lua layer (lua/p2pnet/transfer.lua), which builds the Transfer
 * object, reads sources and writes sinks on top of these calls:
 *
 *   core.transfer_open(node, peer, lane, total|nil, meta|nil) -> id | nil, err
 *   core.transfer_write(node, id, chunk)                       -> true | nil, "full" | nil, err
 *   core.transfer_absorb(node, id, bytes)                      -> true | nil, err
 *   core.transfer_finish(node, id)                             -> true | nil, err
 *   core.transfer_accept(node, id, offset)                     -> true | nil, err
 *   core.transfer_cancel(node, id, reason|nil)                 -> true | nil, err
 *   core.transfer_chunk                                        -- largest chunk (bytes)
 *
 * and the way back: the transfer events (offer, want, data, end) go to the layer's hook
 * `transfer` (lp_dispatch_transfer, from events.c).
 */
#include "binding.h"

/* The node at 1, open and not draining; the transfer id at 2 (when id_arg). */
static lnode *check_node(lua_State *L, const char *fname)
{
    return lp_check_open_node(L, 1, fname);
}

static uint32_t check_id(lua_State *L, int idx, const char *fname)
{
    int64_t v;
    if (!lp_tointeger(L, idx, 1, 4294967295.0, &v))
        lp_arg_error(L, fname, "id", "must be a transfer id");
    return (uint32_t)v;
}

/* Pushes true, or nil and the error's text; after any call the core's output is flushed. */
static int result(lua_State *L, lnode *n, int rc, size_t sent)
{
    if (sent && rc == 0)
        lp_after_send(L, 1, n, sent);
    else
        lp_after_call(L, 1);
    if (rc == 0) {
        lua_pushboolean(L, 1);
        return 1;
    }
    return lp_push_fail(L, rc == P2P_ERR_FULL ? "full" : lp_error_text(rc));
}

static int l_open(lua_State *L)
{
    static const char fname[] = "transfer_open";
    lnode *n = check_node(L, fname);
    lpeer *p = lp_check_peer(L, 2);
    int64_t lane, total = -1;
    size_t mlen = 0;
    const char *meta = NULL;
    uint32_t id = 0;
    int rc;
    if (!lp_tointeger(L, 3, 0, P2P_LANE_MAX, &lane))
        return lp_arg_error(L, fname, "lane", "must be 0-254");
    if (!lua_isnoneornil(L, 4) && !lp_tointeger(L, 4, 0, 9007199254740992.0, &total))
        return lp_arg_error(L, fname, "total", "must be a size in bytes or nil");
    if (!lua_isnoneornil(L, 5)) meta = lp_check_string(L, 5, fname, "meta", &mlen);
    if (mlen > P2P_TRANSFER_META_MAX) return lp_push_fail(L, "metadata too long");
    if (p->node != n) return lp_arg_error(L, fname, "peer", "must be a peer of this node");
    if (p->dead) return lp_push_fail(L, "disconnected");
    if (lp_refuse_busy(L, n, fname)) return 2;
    rc = p2p_host_transfer_open(n->host, p->handle, (int)lane,
                                total < 0 ? P2P_TRANSFER_UNKNOWN : (uint64_t)total,
                                (const uint8_t *)meta, mlen, &id, lp_node_now(n));
    lp_after_call(L, 1);
    if (rc != 0)
        return lp_push_fail(L, rc == P2P_ERR_LIMIT ? "too many transfers" : lp_error_text(rc));
    lua_pushinteger(L, (lua_Integer)id);
    return 1;
}

static int l_write(lua_State *L)
{
    static const char fname[] = "transfer_write";
    lnode *n = check_node(L, fname);
    uint32_t id = check_id(L, 2, fname);
    size_t len;
    const char *data = lp_check_string(L, 3, fname, "chunk", &len);
    if (len == 0 || len > P2P_TRANSFER_CHUNK)
        return lp_arg_error(L, fname, "chunk", "must be 1 to transfer_chunk bytes");
    if (lp_refuse_busy(L, n, fname)) return 2;
    int rc = p2p_host_transfer_write(n->host, id, (const uint8_t *)data, len, lp_node_now(n));
    return result(L, n, rc, len);
}

static int l_absorb(lua_State *L)
{
    static const char fname[] = "transfer_absorb";
    lnode *n = check_node(L, fname);
    uint32_t id = check_id(L, 2, fname);
    size_t len;
    const char *data = lp_check_string(L, 3, fname, "bytes", &len);
    int rc = p2p_host_transfer_absorb(n->host, id, (const uint8_t *)data, len);
    if (rc != 0) return lp_push_fail(L, lp_error_text(rc));
    lua_pushboolean(L, 1);
    return 1;
}

static int l_finish(lua_State *L)
{
    static const char fname[] = "transfer_finish";
    lnode *n = check_node(L, fname);
    uint32_t id = check_id(L, 2, fname);
    if (lp_refuse_busy(L, n, fname)) return 2;
    return result(L, n, p2p_host_transfer_finish(n->host, id, lp_node_now(n)), 0);
}

static int l_accept(lua_State *L)
{
    static const char fname[] = "transfer_accept";
    lnode *n = check_node(L, fname);
    uint32_t id = check_id(L, 2, fname);
    int64_t off;
    if (!lp_tointeger(L, 3, 0, 9007199254740992.0, &off))
        return lp_arg_error(L, fname, "offset", "must be a byte offset");
    if (lp_refuse_busy(L, n, fname)) return 2;
    return result(L, n, p2p_host_transfer_accept(n->host, id, (uint64_t)off, lp_node_now(n)), 0);
}

static int l_cancel(lua_State *L)
{
    static const char fname[] = "transfer_cancel";
    lnode *n = check_node(L, fname);
    uint32_t id = check_id(L, 2, fname);
    const char *reason = NULL;
    size_t len;
    if (!lua_isnoneornil(L, 3)) reason = lp_check_string(L, 3, fname, "reason", &len);
    if (lp_refuse_busy(L, n, fname)) return 2;
    return result(L, n, p2p_host_transfer_cancel(n->host, id, reason, lp_node_now(n)), 0);
}

/* core.peer_node(peer) -> the Node the peer belongs to (peer.c keeps it in the Peer's
 * uservalue under "node", PUV_NODE there). */
static int l_peer_node(lua_State *L)
{
    (void)lp_check_peer(L, 1);
    lp_uv_field(L, 1, "node");
    return 1;
}

void lp_transfer_funcs(lua_State *L)
{
    static const luaL_Reg funcs[] = {{"peer_node", l_peer_node},    {"transfer_open", l_open},
                                     {"transfer_write", l_write},   {"transfer_absorb", l_absorb},
                                     {"transfer_finish", l_finish}, {"transfer_accept", l_accept},
                                     {"transfer_cancel", l_cancel}, {NULL, NULL}};
    lp_setfuncs(L, funcs, 0);
    lua_pushinteger(L, P2P_TRANSFER_CHUNK);
    lua_setfield(L, -2, "transfer_chunk");
}

/* A transfer event: the layer's hook transfer(kind, peer, id, offset, total, status, data),
 * protected (an error is reported as "error in transfer handler"). */
void lp_dispatch_transfer(lua_State *L, lnode *n, const levent *e, int layer, int pidx, int didx)
{
    const p2p_event *ev = &e->ev;
    static const char *const kinds[] = {"offer", "want", "data", "end"};
    if (!lua_istable(L, layer)) return;
    lua_getfield(L, layer, "transfer");
    if (!lua_isfunction(L, -1)) {
        lua_pop(L, 1);
        return;
    }
    lua_pushstring(L, kinds[ev->type - P2P_EV_TRANSFER_OFFER]);
    lua_pushvalue(L, pidx);
    lua_pushinteger(L, (lua_Integer)ev->transfer);
    lua_pushinteger(L, (lua_Integer)ev->offset);
    if (ev->total == P2P_TRANSFER_UNKNOWN)
        lua_pushnil(L);
    else
        lua_pushinteger(L, (lua_Integer)ev->total);
    if (ev->type == P2P_EV_TRANSFER_END)
        lua_pushstring(L, p2p_transfer_status_name(ev->status));
    else
        lua_pushnil(L);
    if (e->has_data)
        lua_pushvalue(L, didx);
    else
        lua_pushnil(L);
    lp_call_reported(L, n, 7, 0, "transfer");
}
