/*
 * binding.h - private to the Lua binding `p2pnet.core` (csrc/lua/): its userdata, and the
 * functions one file of the binding offers the others.
 *
 *   compat.h     Lua 5.1 / LuaJIT / 5.2 / 5.3 / 5.4 differences
 *   util.c       argument checks, error texts, pushing ids and addresses
 *   identity.c   p2pnet.Identity
 *   node.c       p2pnet.Node: options, creation, close, methods (poll, connect, ...)
 *   peer.c       p2pnet.Peer: the per-node cache (one userdata per session), methods
 *   sim.c        p2pnet.Sim
 *   events.c     the event queue (a C array), flushing sends, calling handlers
 *   lp2pnet.c    the module table and the metatables
 *
 * Each Node has a uservalue table (UV_* keys below) holding what the garbage collector must
 * see: its handlers, its peer cache, the Lua values of queued events, its Sim, and the state
 * of the pure-Lua layer. Handlers live there rather than in the registry so that a handler
 * that captures its own node does not keep the node from being collected (and closed).
 */
#ifndef LP2PNET_BINDING_H
#define LP2PNET_BINDING_H

#include <stddef.h>
#include <stdint.h>

#include "compat.h"
#include "p2pnet.h"
#include "driver/sim.h"
#include "driver/udp.h"

/* issue 12: the simulator's io queue (driver/sim.h: LANs, UDP blocking, streams, NAT port
 * ranges), and its gateways and STUN servers (driver/sim_gw.h) */
#include "driver/sim_gw.h"
#define LP_SIM_REACH 1
#define LP_SIM_GW 1
/* STUN servers one simulator holds at most (sim:stun_server). */
#define LP_SIM_STUNS 8

/* The metatable names. Each is one object (util.c), whose address also keys its metatable
 * in the registry for lp_checkudata, without hashing the name. */
extern const char lp_identity_mt[], lp_node_mt[], lp_peer_mt[], lp_sim_mt[];
#define IDENTITY_MT lp_identity_mt
#define NODE_MT lp_node_mt
#define PEER_MT lp_peer_mt
#define SIM_MT lp_sim_mt

/* An id as lowercase hex, without and with its terminating NUL. */
#define LP_HEX_LEN (2 * P2P_ID_LEN)
#define LP_HEX_SIZE (LP_HEX_LEN + 1)
/* Room for "ip:port" of either family, with brackets. */
#define LP_ADDR_TEXT 64
/* Room for the readable reason of a failed open or load (key file, bind). */
#define LP_ERR_TEXT 256

/* issue 12 (reach every peer): node options `stun` and `fallback` hold at most this many. */
#define LP_MAX_STUN 4
#define LP_MAX_FALLBACK 4
/* Room for a URL path (ws_path, the path of a ws:// fallback) with its NUL. */
#define LP_PATH_SIZE 128
#define LP_DEFAULT_WS_PATH "/p2pnet"
/* LAN discovery's UDP port when `discover_port` is not given (docs/PROTOCOL.md 8.9). */
#define LP_DEFAULT_DISCOVER_PORT 44344

/* A `fallback` URL, parsed: tcp://host:port or ws://host[:port][/path]. */
typedef struct lp_url {
    int ws;                  /* 1: WebSocket */
    char host[256];          /* as written, brackets of an IPv6 address kept */
    uint16_t port;           /* 80 when a ws:// URL names none */
    char path[LP_PATH_SIZE]; /* ws://: the path, LP_DEFAULT_WS_PATH when none; tcp://: "" */
    p2p_addr addr;           /* resolved at node() */
} lp_url;

/* node:next_timeout() when no timer is armed: an hour, so that callers can always do
 * arithmetic on the result. */
#define NO_TIMEOUT_SECONDS 3600.0
/* Longest wait or run a caller may ask for, in seconds (about 30 years): keeps every
 * seconds-to-microseconds conversion inside uint64_t. */
#define MAX_SECONDS 1e9
#define US_PER_SECOND 1e6

/* Sends are handed to the socket at the next poll, or once this many bytes wait (about a
 * sendmmsg batch of full packets), whichever comes first (docs/API.md, "When sends leave"). */
#define LP_FLUSH_BYTES (32 * P2P_MAX_PACKET)
/* ... or once this many events were dispatched since the last flush (events.c). */
#define LP_FLUSH_EVENTS 16

/* Keys of the node's uservalue table. */
#define UV_HANDLERS "handlers" /* array: LH_* -> function */
#define UV_PEERS "peers"       /* handle -> Peer */
#define UV_QPEER "qpeer"       /* queue slot + 1 -> the Peer of that event */
#define UV_QDATA "qdata"       /* queue slot + 1 -> the data string of that event */
#define UV_SIM "sim"
#define UV_LAYER "lua" /* the pure-Lua layer's table (core.state) and its hooks */
#define UV_ON_REQUEST "on_request"
#define UV_DEFERRED "deferred" /* Peers whose disconnect() came during a drain */

/* Handler slots in UV_HANDLERS, in the order of lp_event_names. */
enum { LH_JOIN = 1, LH_LEAVE, LH_MESSAGE, LH_ERROR, LH_COUNT = LH_ERROR };
extern const char *const lp_event_names[];

#define BUSY_DRAINING "node is busy (called from a finalizer during a drain)"

typedef struct lidentity {
    p2p_identity key; /* secrets: wiped on __gc, never pushed to Lua */
    char hex[LP_HEX_SIZE];
} lidentity;

typedef struct lsim {
    p2p_sim *sim;
    int attached;              /* nodes still attached: the sim is freed when this is 0 and ... */
    int collected;             /* ... the Sim userdata has been collected */
    int running;               /* inside sim:run(): not re-entrant */
    int draining;              /* nodes of this sim inside a drain: sim:run refuses */
    void *stuns[LP_SIM_STUNS]; /* issue 12: its STUN servers (p2p_sim_stun), freed with it */
    size_t nstuns;
} lsim;

/* One queued event: the core's event, copied. Its data and its Peer are Lua values, kept at
 * the same slot in UV_QDATA and UV_QPEER so that the collector sees them. */
typedef struct levent {
    p2p_event ev; /* ev.data is NULL; has_data says whether UV_QDATA holds a string */
    int has_data;
} levent;

typedef struct lnode {
    p2p_host *host; /* NULL once closed */
    p2p_udp *udp;   /* UDP nodes */
    lsim *sim;      /* simulated nodes: the Sim's memory, kept alive by the Sim userdata
                     * in our uservalue; NULL once closed */
    lsim *simref;   /* the same, kept after close for the clock */
    int closed;
    int closing;                  /* inside close(): dispatch does not touch the host */
    p2p_addr local;               /* simulated nodes: the address the sim gave us */
    uint8_t (*allow)[P2P_ID_LEN]; /* owned copies, for as long as the host may read them */
    uint8_t (*deny)[P2P_ID_LEN];
    uint8_t *network_key;
    size_t network_key_len;
    uint64_t callback_errors; /* handler errors printed to stderr */
    char hex[LP_HEX_SIZE];
    size_t unflushed; /* bytes given to the core by sends since the last flush */
    int message_info; /* the message handler can receive `info` (4 parameters or ...) */
    int has_tasks;    /* the Lua layer holds tasks of this node (core.tasks): poll asks it */
    /* The event queue: slots [q_head, q_tail) of q. */
    levent *q;
    size_t q_head, q_tail, q_cap;
    /* Re-entrancy (events.c). */
    int draining;       /* inside lp_drain(): the node is busy */
    int dispatching;    /* depth of lp_dispatch(): handlers of this node may run */
    int close_deferred; /* close() arrived during a drain: done at its end */
    int has_pend;       /* `pend` holds an event taken from the host but not yet queued */
    p2p_event pend;     /* that event; pend.data points into the host's copy during the
                         * drain that took it, and into pend_buf after that drain */
    uint8_t *pend_buf;  /* private copy of its data when a drain ends with it pending */
    size_t pend_cap;
    /* issue 12: what the options named, resolved, for as long as the host may read them */
    p2p_addr stun[LP_MAX_STUN];
    size_t nstun;
    lp_url fallback[LP_MAX_FALLBACK];
    size_t nfallback;
    int fallback_off;
    char ws_path[LP_PATH_SIZE];
    uint16_t tcp_port, stun_server, discover_port;
    int portmap, punch, discover_lan;
    void *gateway; /* simulated nodes: their gateway (p2p_sim_gw), freed after detach */
} lnode;

typedef struct lpeer {
    lnode *node; /* valid while the peer lives: its uservalue holds the Node */
    p2p_peer_handle handle;
    int dead;              /* the session ended: fields come from `snap` */
    p2p_peer_info snap;    /* the last info read from the host */
    char hex[LP_HEX_SIZE]; /* snap.id as hex once known ("" before) */
} lpeer;

/* ---- util.c ----------------------------------------------------------------------------- */

/* Raises "fname: argument 'arg' what". */
int lp_arg_error(lua_State *L, const char *fname, const char *arg, const char *what);
/* A string argument (numbers are not converted); raises otherwise. */
const char *lp_check_string(lua_State *L, int idx, const char *fname, const char *arg, size_t *len);
/* The message type argument: an integer 0-65535; raises otherwise. */
uint16_t lp_check_type(lua_State *L, int idx, const char *fname);
/* Reads the value at idx as an integer in [lo, hi]: 1 and *out, or 0 (strings refused). */
int lp_tointeger(lua_State *L, int idx, double lo, double hi, int64_t *out);
/* Reads the value at idx as a 64-hex id; 0 when it is anything else. */
int lp_parse_id(lua_State *L, int idx, uint8_t id[P2P_ID_LEN]);
/* Pushes nil, msg; returns 2. */
int lp_push_fail(lua_State *L, const char *msg);
/* Readable text for the errors an application can hit at run time. */
const char *lp_error_text(int err);
/* Pushes "ip:port", or nil for no address. */
void lp_push_addr(lua_State *L, const p2p_addr *a);
/* Pushes the IP of a without its port ("192.0.2.1", "2001:db8::1"), or nil. */
void lp_push_ip(lua_State *L, const p2p_addr *a);
/* issue 12: the names of the core's P2P_MAPPING_*, P2P_PATH_* values ("unknown" when out of
 * range). */
const char *lp_mapping_name(int mapping);
const char *lp_path_kind_name(int path);
/* Pushes the 64-hex text of id. */
void lp_push_id(lua_State *L, const uint8_t id[P2P_ID_LEN]);
/* One uint64_t counter of a stats struct, by name and offset. */
typedef struct lp_counter {
    const char *name;
    size_t offset;
} lp_counter;
#define LP_COUNTER(type, field)       \
    {                                 \
#field, offsetof(type, field) \
    }
/* Pushes a new table with the counters (NULL-terminated list) read from the struct st. */
void lp_push_counters(lua_State *L, const void *st, const lp_counter *counters);
/* Sets field k of the table on top to v. */
void lp_set_u64(lua_State *L, const char *k, uint64_t v);
/* luaL_checkudata for the binding's classes (tname: one of the *_MT above), faster: the
 * metatable is recognised by a tag it holds, without a registry lookup. */
void *lp_checkudata(lua_State *L, int idx, const char *tname);
/* Pushes a readable string for the value at idx, without metamethods that could raise. */
const char *lp_describe(lua_State *L, int idx);
/* Pushes field `name` of the uservalue table of the userdata at idx. */
void lp_uv_field(lua_State *L, int idx, const char *name);
/* Pushes the pure-Lua layer's table of the userdata at idx (UV_LAYER), creating it. */
void lp_push_layer(lua_State *L, int idx);
/* Creates metatable `name` with the metamethods `meta`, a methods table, and __index: the
 * function `index` with the methods as its upvalue, or the methods table itself. */
void lp_class(lua_State *L, const char *name, const luaL_Reg *methods, const luaL_Reg *meta,
              lua_CFunction index);
/* Pushes the methods table of class `mt` (for core.extend). */
void lp_push_methods(lua_State *L, const char *mt);

/* ---- lp2pnet.c -------------------------------------------------------------------------- */

/* Calls the Lua layer's creation hook `kind` ("node" or "sim") with the object at idx. */
void lp_created(lua_State *L, int idx, const char *kind);

/* ---- identity.c ------------------------------------------------------------------------- */

int lp_identity_new(lua_State *L);
void lp_identity_class(lua_State *L);

/* ---- node.c ----------------------------------------------------------------------------- */

lnode *lp_to_node(lua_State *L, int idx);
/* The node at idx, known to be one (internal calls: no check). */
#define lp_node_at(L, idx) ((lnode *)lua_touserdata((L), (idx)))
/* The node at idx, raising "fname: node is closed" after close. */
lnode *lp_check_open_node(lua_State *L, int idx, const char *fname);
/* Refuses (pushes nil, "<fname>: node is busy ...") a call that arrives during a drain:
 * returns 2 when refused, else 0. */
int lp_refuse_busy(lua_State *L, const lnode *n, const char *fname);
/* The node's clock in microseconds (virtual time for simulated nodes). */
uint64_t lp_node_now(const lnode *n);
/* The one close behind close(), __gc and __close: graceful leave, then free. */
void lp_node_close(lua_State *L, int nidx);
/* p2pnet.node / sim:node: validates the options at optidx and builds the node (simidx: the
 * Sim's stack index, or 0). Pushes the node, or nil and an error; returns 1 or 2. */
int lp_node_new(lua_State *L, int optidx, int simidx, const char *fname);
int lp_node_open(lua_State *L);
void lp_node_class(lua_State *L);
/* Parses a `fallback` URL (len bytes at s): 1 and *u, or 0 and *why (static text). */
int lp_parse_url(const char *s, size_t len, lp_url *u, const char **why);
/* core.busy(node [, for_run]) and the other module functions the pure-Lua layer uses. */
int lp_node_busy(lua_State *L);
int lp_node_tasks(lua_State *L);
int lp_node_sim(lua_State *L);
int lp_node_clock(lua_State *L);

/* ---- peer.c ----------------------------------------------------------------------------- */

lpeer *lp_check_peer(lua_State *L, int idx);
/* The current info of a peer: from the host while it lives, else the snapshot. */
const p2p_peer_info *lp_peer_info(lpeer *p);
/* Pushes the cached Peer of handle (node at nidx), creating it when new. */
void lp_push_peer(lua_State *L, int nidx, p2p_peer_handle handle);
/* A JOIN that replaced our own dial: the Peer of `from` becomes that of `to`. */
void lp_rekey_peer(lua_State *L, int nidx, p2p_peer_handle from, p2p_peer_handle to);
/* Marks the Peer at pidx as ended and drops it from the cache of the node at nidx. */
void lp_retire_peer(lua_State *L, int nidx, int pidx);
/* Pushes (and removes) the reply callback of (Peer at pidx, lane, seq); 0 when there is none. */
int lp_take_callback(lua_State *L, int pidx, uint8_t lane, uint64_t seq);
/* lanes: the lane an options table at idx (a table or nil) names in `lane` (default 0);
 * raises "fname: argument 'opts.lane' must be an integer 0-254" otherwise. */
uint8_t lp_opt_lane(lua_State *L, int idx, const char *fname);
/* Raises "fname: unknown option 'k'" for a key of the table at idx (if it is one) that is not
 * in `known` (NULL-terminated): a typo in an options table is never silently ignored. */
void lp_check_options(lua_State *L, int idx, const char *fname, const char *const *known);
/* peer.path: "direct", "relayed", "tcp" or "websocket" for a connected session, else NULL. */
const char *lp_path_name(lpeer *p, const p2p_peer_info *info);
/* Pushes the next pending reply callback of the Peer at pidx (removed); 0 when none. */
int lp_next_callback(lua_State *L, int pidx);
/* Pushes the peer's id (the Peer at pidx) as a string made once per Peer, or nil. */
void lp_push_peer_hex(lua_State *L, int pidx);
/* The 64-hex id of the peer, or NULL while unknown. */
const char *lp_peer_hex(lpeer *p);
void lp_peer_class(lua_State *L);

/* ---- sim.c ------------------------------------------------------------------------------ */

int lp_sim_new(lua_State *L);
/* Frees the simulator of s and what it holds (STUN servers); s->sim is NULL after. */
void lp_sim_free(lsim *s);
void lp_sim_class(lua_State *L);
/* core.sim_run_until(sim, t, stop_on_event), core.sim_next_time(sim), core.sim_busy(sim) */
int lp_sim_run_until(lua_State *L);
int lp_sim_next_time(lua_State *L);
int lp_sim_busy(lua_State *L);
int lp_sim_nodes(lua_State *L);
/* Why sim:run() must refuse now, or NULL. */
const char *lp_sim_refusal(const lsim *s);

/* ---- events.c --------------------------------------------------------------------------- */

/* Copies every pending core event of the node at nidx into its queue, then runs what was
 * deferred meanwhile. A re-entrant call (from a finalizer) returns at once. */
void lp_drain(lua_State *L, int nidx);
/* Hands what the core has to send to the driver (the socket or the simulator). */
void lp_flush(lnode *n);
/* After a call into the core: flush, then drain the events it made. */
void lp_after_call(lua_State *L, int nidx);
/* After a send of `len` bytes: flushes once LP_FLUSH_BYTES wait (UDP), else leaves them for
 * the next poll; simulated nodes flush at once. */
void lp_after_send(lua_State *L, int nidx, lnode *n, size_t len);
/* Dispatches every queued event of the node at nidx; returns how many. */
int lp_dispatch(lua_State *L, int nidx);
/* Queues a LEAVE for the Peer on top (popped), for close(). */
void lp_queue_leave(lua_State *L, int nidx);
/* Pushes the message id of this node's broadcast number seq. */
void lp_push_broadcast_id(lua_State *L, const char *origin_hex, uint64_t seq);
/* Whether events wait in the node's queue. */
int lp_has_events(const lnode *n);
/* Frees the queue's memory (closed nodes, when nothing dispatches). */
void lp_queue_free(lnode *n);
/* Calls the function below its nargs arguments under pcall. Returns 1 with nres results, or
 * 0 with none: the error was printed and counted as "error in <what> handler". */
int lp_call_reported(lua_State *L, lnode *n, int nargs, int nres, const char *what);

/* ---- transfer.c (streaming transfers) --------------------------------------------------- */

/* Adds the core.transfer_* functions to the module table on top of the stack. */
void lp_transfer_funcs(lua_State *L);
/* ngx_waker.c: core.waker and core.kick, the wake-up line for nginx (docs/OPENRESTY.md). */
void lp_waker_funcs(lua_State *L);
/* Hands a transfer event to the Lua layer's hook (layer, pidx, didx: stack indexes of the
 * layer's table, the event's Peer and its data). */
void lp_dispatch_transfer(lua_State *L, lnode *n, const levent *e, int layer, int pidx, int didx);

#endif
