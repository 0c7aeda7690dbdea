/*
 * events.c - the way back from the core to Lua: the node's event queue, flushing sends to
 * the driver, and calling handlers.
 *
 * The queue is a C array of the core's events (levent). The Lua values an event needs, its
 * data string and its Peer, are made when the event is taken from the host and kept at the
 * event's slot in two tables of the node's uservalue (UV_QDATA, UV_QPEER), where the
 * collector sees them; nothing else per event is a Lua object. Handlers are read from the
 * node's handler array and called directly.
 *
 * Re-entrancy. The core never calls Lua, so no core function is ever on the C stack when Lua
 * code runs. Lua code runs in two places: handlers (only inside lp_dispatch) and finalizers,
 * which Lua may run at any allocation the binding makes. A finalizer may call any method of
 * any node. So:
 *
 * - lp_drain() takes each event out of the host into the node (not on the C stack) before it
 *   allocates anything, so an event interrupted by a Lua error is queued on the next drain.
 *   Its data is read where the host keeps it (no core call that ends it can run meanwhile),
 *   and copied into the node only when the drain ends with the event still pending.
 * - While a node drains, it is "busy". A re-entrant drain of the same node returns at once.
 *   Calls that would make the host produce work are refused with nil, "<method>: node is
 *   busy (called from a finalizer during a drain)": peer:send, peer:send_unreliable,
 *   node:broadcast and node:connect. peer:disconnect() and node:close() are deferred: they
 *   run when the drain ends, in the order they came. node:poll() raises, and so does
 *   sim:run() of the node's simulator. Reading methods work.
 * - While a node dispatches, node:poll() and node:run() raise; everything else works,
 *   node:close() included: it dispatches the remaining events and the leave events before
 *   it returns.
 * - The dispatcher copies each event out of the queue (which a drain may grow, and so move)
 *   before any Lua code runs.
 * - The hot handlers (message, reply callbacks) run under one protected call per batch of
 *   events, not one per event: when one raises, the error is handled as api.md says (the
 *   sender's callback gets it, or it is printed and counted) and a new protected call goes
 *   on with the next event.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "binding.h"

const char *const lp_event_names[] = {"join", "leave", "message", "error", NULL};

/* Event data kept in pend_buf after a drain, at most: larger buffers are freed when it ends. */
#define PEND_KEEP 65536
/* Slots the queue starts with. */
#define QUEUE_MIN 64
/* Slots an empty queue keeps after a burst, at most: a larger array is freed. */
#define QUEUE_KEEP 4096
/* Hex digits of the sender's id at the start of a message id. */
#define MSG_ID_SENDER 16
/* Longest message id: 16 hex of the id, '-', 8 hex of the session, '-', 16 hex of seq. */
#define MSG_ID_TEXT 48

/* ---- the queue ---------------------------------------------------------------------------- */

int lp_has_events(const lnode *n)
{
    return n->q_head != n->q_tail;
}

void lp_queue_free(lnode *n)
{
    if (n->dispatching > 0 || n->draining)
        return; /* the outermost dispatch frees it (lp_dispatch) */
    free(n->q);
    n->q = NULL;
    n->q_head = n->q_tail = n->q_cap = 0;
    free(n->pend_buf);
    n->pend_buf = NULL;
    n->pend_cap = 0;
    n->has_pend = 0;
}

/* Room for one more event at q_tail (C memory only: no Lua code runs). Returns 0 or -1. */
static int queue_room(lnode *n)
{
    if (n->q_head == n->q_tail) n->q_head = n->q_tail = 0;
    if (n->q_tail == n->q_cap) {
        size_t cap = n->q_cap ? 2 * n->q_cap : QUEUE_MIN;
        levent *q = (levent *)realloc(n->q, cap * sizeof *q);
        if (q == NULL) return -1;
        n->q = q;
        n->q_cap = cap;
    }
    return 0;
}

/* Lua key of queue slot i in UV_QPEER and UV_QDATA. */
#define SLOT_KEY(i) ((int)(i) + 1)

/* Makes the pending event's data the node's own copy (C memory only), for a pending event
 * that outlives its drain. Returns 0, or P2P_ERR_NOMEM (the event is then lost: nothing can
 * hold it). */
static int own_pending(lnode *n)
{
    const p2p_event *ev = &n->pend;
    if (ev->data == NULL || ev->data == n->pend_buf) return 0;
    if (ev->len > n->pend_cap || n->pend_buf == NULL) {
        size_t cap = ev->len > 0 ? ev->len : 1;
        uint8_t *b = (uint8_t *)malloc(cap);
        if (b == NULL) {
            n->has_pend = 0;
            return P2P_ERR_NOMEM;
        }
        free(n->pend_buf);
        n->pend_buf = b;
        n->pend_cap = cap;
    }
    memcpy(n->pend_buf, ev->data, ev->len);
    n->pend.data = n->pend_buf;
    return 0;
}

/* Queues the pending event: its data string and Peer go to their slots (qpeer, qdata: stack
 * indexes of those tables; peers: the node's cache, and at peers + 1 the Peer of the handle
 * *last), the event to the C array. Runs with the node busy: the host cannot be freed and
 * nothing else takes events from it meanwhile. */
static void queue_pending(lua_State *L, lnode *n, int nidx, int qpeer, int qdata, int peers,
                          p2p_peer_handle *last)
{
    const p2p_event *ev = &n->pend;
    int top = lua_gettop(L), key;
    levent *e;
    if (queue_room(n) != 0) luaL_error(L, "p2pnet: out of memory (event queue)");
    key = SLOT_KEY(n->q_tail);
    if (ev->data != NULL) {
        lua_pushlstring(L, (const char *)ev->data, ev->len);
        lua_rawseti(L, qdata, key);
    }
    if (ev->type != P2P_EV_REQUEST && ev->peer != 0) {
        if (ev->type == P2P_EV_JOIN && ev->replaces != 0)
            lp_rekey_peer(L, nidx, ev->replaces, ev->peer);
        /* the Peer of the previous message (slot peers + 1), the cached one, or a new one:
         * only session events change which Peer a handle names */
        int message =
            ev->type == P2P_EV_MESSAGE || ev->type == P2P_EV_DATAGRAM || ev->type == P2P_EV_REPLY;
        if (message && *last == ev->peer) {
            lua_pushvalue(L, peers + 1);
        } else {
            lua_pushnumber(L, (lua_Number)ev->peer);
            lua_rawget(L, peers);
            if (lua_isnil(L, -1)) {
                lua_pop(L, 1);
                lp_push_peer(L, nidx, ev->peer);
            }
        }
        *last = 0;
        if (message) {
            lua_pushvalue(L, -1);
            lua_replace(L, peers + 1);
            *last = ev->peer;
        }
        /* The handle dies with LEAVE; a failed connect's handle may die with its ERROR. The
         * Peer is retired now, so that later lookups of a reused handle get a new object. */
        if (ev->type == P2P_EV_LEAVE || ev->type == P2P_EV_ERROR) {
            lpeer *p = lp_check_peer(L, -1);
            p2p_peer_info info;
            (void)lp_peer_info(p);
            /* the handle may be dead already: the event still names the peer */
            if (ev->has_id && !p->snap.has_id) {
                memcpy(p->snap.id, ev->id, P2P_ID_LEN);
                p->snap.has_id = 1;
                p2p_id_to_hex(p->snap.id, p->hex);
            }
            if (ev->from.family != P2P_AF_NONE && p->snap.address.family == P2P_AF_NONE)
                p->snap.address = ev->from;
            if (ev->type == P2P_EV_LEAVE || n->host == NULL ||
                p2p_host_peer_info(n->host, ev->peer, &info) != 0 ||
                info.state == P2P_PEER_DISCONNECTED || info.state == P2P_PEER_NONE)
                lp_retire_peer(L, nidx, -1);
        }
        lua_rawseti(L, qpeer, key);
    } else {
        /* dispatch leaves the slots of Peers as they are: clear a peerless event's */
        lua_pushnil(L);
        lua_rawseti(L, qpeer, key);
        *last = 0;
    }
    /* Nothing below allocates: the event is queued exactly once. */
    e = &n->q[n->q_tail++];
    e->ev = *ev;
    e->ev.data = NULL;
    e->has_data = ev->data != NULL;
    n->has_pend = 0;
    lua_settop(L, top);
}

void lp_queue_leave(lua_State *L, int nidx)
{
    lnode *n = lp_node_at(L, nidx);
    levent *e;
    nidx = lp_absindex(L, nidx);
    if (queue_room(n) != 0) luaL_error(L, "p2pnet: out of memory (event queue)");
    lp_uv_field(L, nidx, UV_QPEER);
    lua_insert(L, -2);
    lua_rawseti(L, -2, SLOT_KEY(n->q_tail));
    lua_pop(L, 1);
    e = &n->q[n->q_tail++];
    memset(e, 0, sizeof *e);
    e->ev.type = P2P_EV_LEAVE;
    e->ev.reason = P2P_LEAVE_CLOSED;
}

/* ---- draining ----------------------------------------------------------------------------- */

/* lp_drain's body, under lua_pcall (the node at 1): the busy flags are cleared whatever
 * happens. */
static int drain_body(lua_State *L)
{
    lnode *n = lp_node_at(L, 1);
    p2p_event ev;
    p2p_peer_handle last = 0;
    lp_getuservalue(L, 1);
    lua_getfield(L, 2, UV_QPEER); /* 3 */
    lua_getfield(L, 2, UV_QDATA); /* 4 */
    lua_getfield(L, 2, UV_PEERS); /* 5 */
    lua_pushnil(L);               /* 6: the Peer of `last` */
    for (;;) {
        if (!n->has_pend) {
            if (n->host == NULL || p2p_host_next_event(n->host, &ev) != 1) break;
            /* The data stays the host's: only p2p_host_next_event and p2p_host_free end it,
             * and neither can run before this event is queued (the node is busy; a
             * close from a finalizer waits for the drain's end). lp_drain copies it if the
             * drain ends first. */
            n->pend = ev;
            n->has_pend = 1;
        }
        queue_pending(L, n, 1, 3, 4, 5, &last);
    }
    return 0;
}

/* Runs the peer:disconnect() and node:close() calls deferred during a drain. */
static void run_deferred(lua_State *L, int nidx)
{
    lnode *n = lp_node_at(L, nidx);
    for (;;) {
        lpeer *p;
        int i, len;
        lp_uv_field(L, nidx, UV_DEFERRED);
        if (!lua_istable(L, -1) || lp_rawlen(L, -1) == 0) {
            lua_pop(L, 1);
            break;
        }
        /* take the first one out (in place: no allocation); a finalizer may defer more
         * while this one runs */
        len = (int)lp_rawlen(L, -1);
        lua_rawgeti(L, -1, 1);
        for (i = 2; i <= len; i++) {
            lua_rawgeti(L, -2, i);
            lua_rawseti(L, -3, i - 1);
        }
        lua_pushnil(L);
        lua_rawseti(L, -3, len);
        lua_remove(L, -2);
        p = (lpeer *)lp_testudata(L, -1, PEER_MT);
        lua_pop(L, 1);
        if (p != NULL && !p->dead && n->host != NULL && !n->closing && !n->closed) {
            (void)p2p_peer_disconnect(n->host, p->handle, lp_node_now(n));
            lp_after_call(L, nidx);
        }
    }
    if (n->close_deferred) {
        n->close_deferred = 0;
        lp_node_close(L, nidx);
    }
}

void lp_drain(lua_State *L, int nidx)
{
    lnode *n = lp_node_at(L, nidx);
    lsim *s = n->sim;
    int rc;
    nidx = lp_absindex(L, nidx);
    if (n->draining) return;
    /* Most polls find nothing: no protected call then. */
    if (n->host != NULL && (n->has_pend || p2p_host_events_pending(n->host) > 0)) {
        n->draining = 1;
        if (s != NULL) s->draining++;
        lua_pushcfunction(L, drain_body);
        lua_pushvalue(L, nidx);
        rc = lua_pcall(L, 1, 0, 0);
        n->draining = 0;
        if (s != NULL) s->draining--;
        if (n->has_pend && own_pending(n) != 0 && rc == LUA_OK) {
            lua_pushliteral(L, "p2pnet: out of memory (an event was lost)");
            rc = LUA_ERRMEM;
        }
        if (n->pend_cap > PEND_KEEP && !n->has_pend) {
            free(n->pend_buf);
            n->pend_buf = NULL;
            n->pend_cap = 0;
        }
        if (rc != LUA_OK) lua_error(L);
    }
    run_deferred(L, nidx);
}

/* ---- sending ------------------------------------------------------------------------------ */

void lp_flush(lnode *n)
{
    n->unflushed = 0;
    if (n->host == NULL) return;
    if (n->udp != NULL)
        (void)p2p_udp_flush(n->udp, n->host);
    else if (n->sim != NULL)
        p2p_sim_flush(n->sim->sim, n->host);
}

void lp_after_call(lua_State *L, int nidx)
{
    lnode *n = lp_node_at(L, nidx);
    if (n->host == NULL) return;
    lp_flush(n);
    lp_drain(L, nidx);
}

void lp_after_send(lua_State *L, int nidx, lnode *n, size_t len)
{
    if (n->udp == NULL) {
        /* the simulator costs no system call: keep its timing as it always was (nidx is
         * only needed here) */
        lp_after_call(L, nidx);
        return;
    }
    /* +1: an empty message waits too */
    n->unflushed += len + 1;
    if (n->unflushed >= LP_FLUSH_BYTES) lp_flush(n);
}

/* ---- calling handlers --------------------------------------------------------------------- */

/* Message handler of the protected calls: {message = text, traceback = text}. With a
 * dispatch context as upvalue, only for errors raised by a handler: the binding's own errors
 * (out of memory) go on unchanged. */
static int l_msgh(lua_State *L)
{
    const char *msg;
    const char *const *what = (const char *const *)lua_touserdata(L, lua_upvalueindex(1));
    if (what != NULL && *what == NULL) return 1;
    msg = lp_describe(L, 1);
    lua_createtable(L, 0, 2);
    lua_pushstring(L, msg);
    lua_setfield(L, -2, "message");
    lp_traceback(L, msg, 1);
    lua_setfield(L, -2, "traceback");
    return 1;
}

/* The error of a protected call (on top) as the {message, traceback} table: out of memory
 * and errors in the message handler arrive as plain values. */
static void error_table(lua_State *L)
{
    const char *m;
    if (lua_istable(L, -1)) return;
    m = lua_tostring(L, -1);
    lua_pop(L, 1);
    lua_createtable(L, 0, 2);
    lua_pushstring(L, m != NULL ? m : "error in error handling");
    lua_setfield(L, -2, "message");
}

/* Reports a handler error (the table on top, popped) on stderr and counts it. */
static void report_error(lua_State *L, lnode *n, const char *what)
{
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

int lp_call_reported(lua_State *L, lnode *n, int nargs, int nres, const char *what)
{
    int base = lua_gettop(L) - nargs, ok = 1;
    lua_pushlightuserdata(L, NULL);
    lua_pushcclosure(L, l_msgh, 1);
    lua_insert(L, base);
    if (lua_pcall(L, nargs, nres, base) != LUA_OK) {
        error_table(L);
        report_error(L, n, what);
        ok = 0;
    }
    lua_remove(L, base);
    return ok;
}

/* Calls every reply callback still pending on the Peer at pidx with (false, why): each runs
 * exactly once even when the core ends a session without LOST replies. */
static void fail_callbacks(lua_State *L, lnode *n, int pidx, const char *why)
{
    pidx = lp_absindex(L, pidx);
    while (lp_next_callback(L, pidx)) {
        lua_pushboolean(L, 0);
        lua_pushstring(L, why);
        lp_call_reported(L, n, 2, 0, "reply callback");
    }
}

/* ---- dispatching -------------------------------------------------------------------------- */

/* One lp_dispatch: what its protected batch is doing, for when a handler raises. */
typedef struct ldispatch {
    const char *what; /* the handler running unprotected now ("message"), or NULL */
    levent cur;       /* the event it was called for */
    lpeer *peer;      /* its Peer (kept on the Lua stack by the caller meanwhile) */
    int count;        /* events taken from the queue */
    int since_flush;  /* events dispatched since sends were last flushed */
} ldispatch;

/* Stack slots of dispatch_body. */
enum {
    D_NODE = 1,
    D_CTX,
    D_ERR, /* the arguments */
    D_UV,
    D_HANDLERS,
    D_QPEER,
    D_QDATA,
    D_LAYER, /* the node's tables */
    D_KEY_ID,
    D_KEY_BROADCAST,
    D_KEY_ORIGIN,
    D_KEY_LANE, /* the keys of `info`, made once per batch */
    D_BASE = D_KEY_LANE
};

/* Pushes hex digits of x (at least `min` of them) into out; returns the count. */
static int put_hex(char *out, uint64_t x, int min)
{
    static const char digits[] = "0123456789abcdef";
    char tmp[2 * sizeof x];
    int n = 0, i;
    do {
        tmp[n++] = digits[x & 15];
        x >>= 4;
    } while (x != 0 || n < min);
    for (i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
    return n;
}

/* Pushes a message id. Broadcast ids are "<origin id, 16 hex>-<seq hex>" (seq starts at the
 * origin's wall clock, so it never repeats, whatever the lane); direct ones also name the
 * sender's session, because their seq restarts with every session: "<sender, 16 hex>-<session
 * hex>-<seq hex>" on lane 0, and "<sender>-<session>-<lane hex>-<seq hex>" on another lane
 * (seq counts within its lane; the number of parts tells the forms apart). Written by hand:
 * this runs for every message. */
static void push_message_id(lua_State *L, const char *sender_hex, int direct, uint32_t session,
                            uint8_t lane, uint64_t seq)
{
    char buf[MSG_ID_TEXT];
    int len = 0;
    size_t slen = sender_hex != NULL ? strlen(sender_hex) : 0;
    if (slen > MSG_ID_SENDER) slen = MSG_ID_SENDER;
    memcpy(buf, sender_hex != NULL ? sender_hex : "", slen);
    len = (int)slen;
    buf[len++] = '-';
    if (direct) {
        len += put_hex(buf + len, session, 2 * (int)sizeof session);
        buf[len++] = '-';
        if (lane) {
            len += put_hex(buf + len, lane, 1);
            buf[len++] = '-';
        }
    }
    len += put_hex(buf + len, seq, 1);
    lua_pushlstring(L, buf, (size_t)len);
}

/* node:broadcast's result. */
void lp_push_broadcast_id(lua_State *L, const char *origin_hex, uint64_t seq)
{
    push_message_id(L, origin_hex, 0, 0, 0, seq);
}

/* Pushes the data of the event (its slot value), or dflt when it had none. */
static void push_data(lua_State *L, const levent *e, const char *dflt)
{
    if (!e->has_data) {
        lua_pop(L, 1);
        lua_pushstring(L, dflt);
    }
}

/* Answers a MESSAGE that wanted a reply (status, data on top or none). */
static void send_reply(lua_State *L, lnode *n, lpeer *p, uint8_t lane, uint64_t seq, int status,
                       const char *data, size_t len)
{
    if (n->closing || n->host == NULL || p == NULL || p->dead) return;
    /* The reply may fail when the session ended meanwhile; the sender then gets LOST. */
    if (p2p_peer_reply_lane(n->host, p->handle, lane, seq, status, (const uint8_t *)data, len,
                            lp_node_now(n)) == 0)
        lp_after_send(L, D_NODE, n, len);
    else
        lp_after_call(L, D_NODE);
}

/* A MESSAGE or DATAGRAM: peer at pidx (nil for a broadcast whose link is gone), data at
 * didx. The user's handler runs in the batch's protected call; the Lua layer's deliver (the
 * receive() queue, when there is no handler) on its own. */
static void dispatch_message(lua_State *L, lnode *n, ldispatch *d, const levent *e, int pidx,
                             int didx)
{
    const p2p_event *ev = &e->ev;
    int unreliable = ev->type == P2P_EV_DATAGRAM;
    lpeer *p = (lpeer *)lua_touserdata(L, pidx);
    char origin[LP_HEX_SIZE];
    const char *sender;
    int want_reply = p != NULL && !unreliable && ev->want_reply;
    int status = P2P_REPLY_NIL, user;
    const char *rdata = NULL;
    size_t rlen = 0;

    if (ev->broadcast && !unreliable) {
        p2p_id_to_hex(ev->origin, origin);
        sender = origin;
    } else if (p == NULL) {
        return;
    } else {
        sender = lp_peer_hex(p);
    }
    lua_rawgeti(L, D_HANDLERS, LH_MESSAGE);
    user = lua_isfunction(L, -1);
    if (!user) {
        lua_pop(L, 1);
        if (!lua_istable(L, D_LAYER)) goto reply;
        lua_getfield(L, D_LAYER, "deliver");
        if (!lua_isfunction(L, -1)) {
            lua_pop(L, 1);
            goto reply;
        }
    }
    lua_pushvalue(L, pidx);
    lua_pushinteger(L, ev->msg_type);
    lua_pushvalue(L, didx);
    push_data(L, e, "");
    if (user && !n->message_info) {
        lua_pushnil(L); /* the handler has no parameter for it */
        goto call;
    }
    /* info: rawset with keys made once per batch, the sender's id string once per Peer */
    lua_createtable(L, 0, 4);
    if (!unreliable) {
        lua_pushvalue(L, D_KEY_ID);
        push_message_id(L, sender, !ev->broadcast, ev->session, ev->lane, ev->seq);
        lua_rawset(L, -3);
    }
    lua_pushvalue(L, D_KEY_BROADCAST);
    lua_pushboolean(L, ev->broadcast);
    lua_rawset(L, -3);
    lua_pushvalue(L, D_KEY_LANE);
    lua_pushinteger(L, ev->lane);
    lua_rawset(L, -3);
    if (sender != NULL) {
        lua_pushvalue(L, D_KEY_ORIGIN);
        if (sender == origin)
            lua_pushstring(L, sender);
        else
            lp_push_peer_hex(L, pidx);
        lua_rawset(L, -3);
    }
    if (unreliable) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "unreliable");
        if (ev->sequenced) {
            lua_pushboolean(L, 1);
            lua_setfield(L, -2, "sequenced");
        }
    }
    if (!user) {
        lp_call_reported(L, n, 4, 0, "message");
        goto reply;
    }
call:
    if (want_reply) {
        /* keeps the Peer alive for handle_failure, after the stack unwound */
        lua_pushvalue(L, pidx);
        lua_rawseti(L, D_QPEER, 0);
    }
    d->cur = *e;
    d->peer = p;
    d->what = "message";
    lua_call(L, 4, 1);
    d->what = NULL;
    if (lua_type(L, -1) == LUA_TSTRING) {
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
reply:
    if (want_reply) send_reply(L, n, p, ev->lane, ev->seq, status, rdata, rlen);
}

/* A handler that raised inside the batch (its error table on top): the sender of a message
 * that wanted a reply gets the error text; anything else is printed and counted. */
static void handle_failure(lua_State *L, lnode *n, ldispatch *d)
{
    const p2p_event *ev = &d->cur.ev;
    error_table(L);
    if (ev->type == P2P_EV_MESSAGE && ev->want_reply && d->peer != NULL &&
        strcmp(d->what, "message") == 0) {
        size_t len;
        const char *msg;
        lua_getfield(L, -1, "message");
        msg = lua_tolstring(L, -1, &len);
        send_reply(L, n, d->peer, ev->lane, ev->seq, P2P_REPLY_ERROR, msg, len);
        lua_pop(L, 2);
    } else {
        report_error(L, n, d->what);
    }
}

/* The join, leave and error events: the Lua layer's hook, then the handler, each protected
 * on its own (they are rare, and one raising must not skip the other). */
static void dispatch_session(lua_State *L, lnode *n, const levent *e, int pidx, int didx)
{
    const p2p_event *ev = &e->ev;
    int slot = ev->type == P2P_EV_JOIN ? LH_JOIN : ev->type == P2P_EV_LEAVE ? LH_LEAVE : LH_ERROR;
    const char *name = lp_event_names[slot - 1];
    int nargs, hook;
    if (ev->type == P2P_EV_LEAVE && !lua_isnil(L, pidx))
        fail_callbacks(L, n, pidx, ev->reason == P2P_LEAVE_TIMEOUT ? "timeout" : "disconnected");
    for (hook = 1; hook >= 0; hook--) {
        if (hook) {
            if (!lua_istable(L, D_LAYER)) continue;
            lua_getfield(L, D_LAYER, name);
        } else {
            lua_rawgeti(L, D_HANDLERS, slot);
        }
        if (!lua_isfunction(L, -1)) {
            lua_pop(L, 1);
            continue;
        }
        if (ev->type == P2P_EV_ERROR) {
            lua_pushvalue(L, didx);
            push_data(L, e, "error");
            lua_pushvalue(L, pidx);
            nargs = 2;
        } else if (ev->type == P2P_EV_LEAVE) {
            static const char *const reasons[] = {"closed", "timeout", "denied", "protocol"};
            lua_pushvalue(L, pidx);
            lua_pushstring(L, ev->reason >= 0 && ev->reason <= P2P_LEAVE_PROTOCOL
                                  ? reasons[ev->reason]
                                  : "closed");
            nargs = 2;
        } else {
            lua_pushvalue(L, pidx);
            nargs = 1;
        }
        lp_call_reported(L, n, nargs, 0, name);
    }
}

/* A REPLY: the callback of our message, in the batch's protected call. */
static void dispatch_reply(lua_State *L, ldispatch *d, const levent *e, int pidx, int didx)
{
    const p2p_event *ev = &e->ev;
    if (lua_isnil(L, pidx) || !lp_take_callback(L, pidx, ev->lane, ev->seq)) return;
    switch (ev->status) {
    case P2P_REPLY_NIL:
        lua_pushboolean(L, 1);
        lua_pushnil(L);
        break;
    case P2P_REPLY_DATA:
        lua_pushboolean(L, 1);
        lua_pushvalue(L, didx);
        push_data(L, e, "");
        break;
    case P2P_REPLY_ERROR:
        lua_pushboolean(L, 0);
        lua_pushvalue(L, didx);
        push_data(L, e, "remote error");
        break;
    default:
        lua_pushboolean(L, 0);
        lua_pushstring(L, ev->reason == P2P_LEAVE_TIMEOUT ? "timeout" : "disconnected");
        break;
    }
    d->what = "reply callback";
    d->cur = *e;
    d->peer = NULL;
    lua_call(L, 2, 0);
    d->what = NULL;
}

/* A REQUEST (on_request): asks the hook, then admits or refuses. */
static void dispatch_request(lua_State *L, lnode *n, const levent *e)
{
    const p2p_event *ev = &e->ev;
    int accept = 1;
    lua_getfield(L, D_UV, UV_ON_REQUEST);
    if (lua_isfunction(L, -1) && !n->closed) {
        lp_push_id(L, ev->id);
        lp_push_addr(L, &ev->from);
        if (lp_call_reported(L, n, 2, 1, "on_request")) {
            accept = lua_type(L, -1) == LUA_TBOOLEAN && lua_toboolean(L, -1);
            lua_pop(L, 1);
        } else {
            accept = 0;
        }
    } else {
        lua_pop(L, 1);
    }
    if (!n->closing && n->host != NULL) {
        (void)p2p_host_admit(n->host, ev->peer, accept, lp_node_now(n));
        lp_after_call(L, D_NODE);
    }
}

/* lp_dispatch's protected batch: (node, ctx, err or nil). Handles the error of the previous
 * batch first, then dispatches events until the queue is empty. */
static int dispatch_body(lua_State *L)
{
    lnode *n = lp_node_at(L, D_NODE);
    ldispatch *d = (ldispatch *)lua_touserdata(L, D_CTX);
    if (!lua_isnil(L, D_ERR)) {
        const char *what = d->what;
        lua_pushvalue(L, D_ERR);
        d->what = NULL;
        {
            ldispatch failed = *d;
            failed.what = what;
            handle_failure(L, n, &failed);
        }
    }
    lua_settop(L, D_ERR);
    lp_getuservalue(L, D_NODE);
    lua_getfield(L, D_UV, UV_HANDLERS);
    lua_getfield(L, D_UV, UV_QPEER);
    lua_getfield(L, D_UV, UV_QDATA);
    lua_getfield(L, D_UV, UV_LAYER);
    lua_pushliteral(L, "id");
    lua_pushliteral(L, "broadcast");
    lua_pushliteral(L, "origin");
    lua_pushliteral(L, "lane");
    while (n->q_head != n->q_tail) {
        levent e = n->q[n->q_head];
        int key = SLOT_KEY(n->q_head);
        /* take its values out of their slots: nothing here allocates. The data slot is
         * cleared (a string may be large); a Peer slot is overwritten by the next event that
         * takes it (Peers live in the node's cache anyway) */
        lua_rawgeti(L, D_QPEER, key);
        lua_rawgeti(L, D_QDATA, key);
        lua_pushnil(L);
        lua_rawseti(L, D_QDATA, key);
        n->q_head++;
        d->count++;
        switch (e.ev.type) {
        case P2P_EV_MESSAGE:
        case P2P_EV_DATAGRAM: dispatch_message(L, n, d, &e, D_BASE + 1, D_BASE + 2); break;
        case P2P_EV_REPLY: dispatch_reply(L, d, &e, D_BASE + 1, D_BASE + 2); break;
        case P2P_EV_JOIN:
        case P2P_EV_LEAVE:
        case P2P_EV_ERROR: dispatch_session(L, n, &e, D_BASE + 1, D_BASE + 2); break;
        case P2P_EV_REQUEST: dispatch_request(L, n, &e); break;
        case P2P_EV_TRANSFER_OFFER:
        case P2P_EV_TRANSFER_WANT:
        case P2P_EV_TRANSFER_DATA:
        case P2P_EV_TRANSFER_END:
            lp_dispatch_transfer(L, n, &e, D_LAYER, D_BASE + 1, D_BASE + 2);
            break;
        default: break;
        }
        lua_settop(L, D_BASE);
        /* What handlers sent leaves every LP_FLUSH_EVENTS events of a long batch, not only at
         * its end: an answer (an ack, a reply) made early in a burst of a thousand messages
         * does not wait for the last of them, and one system call still carries many. */
        if (n->unflushed && ++d->since_flush >= LP_FLUSH_EVENTS) {
            d->since_flush = 0;
            if (!n->closed) lp_flush(n);
        }
    }
    lua_pushnil(L);
    lua_rawseti(L, D_QPEER, 0);
    return 0;
}

int lp_dispatch(lua_State *L, int nidx)
{
    lnode *n = lp_node_at(L, nidx);
    ldispatch d;
    int rc, base;
    if (!lp_has_events(n)) {
        if (n->closed) lp_queue_free(n);
        return 0;
    }
    memset(&d, 0, sizeof d);
    nidx = lp_absindex(L, nidx);
    base = lua_gettop(L);
    n->dispatching++;
    lua_pushlightuserdata(L, &d.what);
    lua_pushcclosure(L, l_msgh, 1); /* base + 1 */
    lua_pushnil(L);                 /* base + 2: the error of the last batch */
    for (;;) {
        lua_pushcfunction(L, dispatch_body);
        lua_pushvalue(L, nidx);
        lua_pushlightuserdata(L, &d);
        lua_pushvalue(L, base + 2);
        rc = lua_pcall(L, 3, 0, base + 1);
        if (rc == LUA_OK) break;
        if (d.what == NULL) { /* not a handler's: the binding's own (out of memory) */
            n->dispatching--;
            lua_error(L);
        }
        lua_replace(L, base + 2); /* handled at the start of the next batch */
    }
    n->dispatching--;
    lua_settop(L, base);
    if (n->closed) {
        lp_queue_free(n);
    } else if (n->dispatching == 0 && !n->draining && n->q_head == n->q_tail &&
               n->q_cap > QUEUE_KEEP) {
        free(n->q);
        n->q = NULL;
        n->q_head = n->q_tail = n->q_cap = 0;
    }
    return d.count;
}
