/*
 * p2pnet.h - the public C API of p2pnet.
 *
 * The protocol core is sans-IO: a p2p_host never reads a clock and never touches a socket.
 * Time is passed in as `now`, monotonic microseconds from any epoch. Datagrams come in with
 * p2p_host_recv() and go out through p2p_host_next_datagram(); events come out through
 * p2p_host_next_event(); p2p_host_next_timeout() says when p2p_host_on_timeout() is due.
 *
 * The one rule for drivers: after any input (recv, timeout, or an API call such as connect or
 * send), drain p2p_host_next_datagram() and p2p_host_next_event() until both report nothing,
 * then wait until p2p_host_next_timeout() or the next datagram.
 *
 * Errors are 0 or a negative P2P_ERR_* code; p2p_strerror() names them. A packet that fails to
 * parse or authenticate is never an error for the caller: it is dropped and counted.
 *
 * Thread safety: a host is used from one thread at a time. Hosts share no state.
 */
#ifndef P2PNET_H
#define P2PNET_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define P2P_VERSION_STRING "0.1.0"

/* The UDP payload every path carries: 1280 (IPv6 minimum MTU) - 40 - 8. Handshake packets
 * never exceed it, and sessions start with it. */
#define P2P_MAX_PACKET 1232
/* Largest DATA packet, used only on paths that acknowledged a probe of that size (path MTU
 * discovery, docs/PROTOCOL.md section 5.1): 16 KiB less IPv6 and UDP, which paths with a large
 * MTU (loopback, some LANs) carry. Drivers size their buffers for it. */
#define P2P_MAX_PACKET_PROBED 16336
/* Largest unreliable datagram payload: a DATA packet less header, tag and frame header. */
#define P2P_MAX_DATAGRAM 1195
#define P2P_ID_LEN 32
/* Key sizes. An id is an Ed25519 public key; a key file holds only the seed it comes from. */
#define P2P_ED_PK_LEN P2P_ID_LEN /* an Ed25519 public key */
#define P2P_SEED_LEN 32          /* an Ed25519 seed */
#define P2P_ED_SK_LEN 64         /* an Ed25519 secret key: the seed, then the public key */
#define P2P_SIG_LEN 64           /* an Ed25519 signature */
#define P2P_DH_LEN 32            /* an X25519 key, private or public */
#define P2P_ID_HEX_LEN 64        /* an id in hex digits, without the NUL */
#define P2P_DEFAULT_MAX_MESSAGE (16u * 1024u * 1024u)
#define P2P_TIME_NEVER UINT64_MAX

enum p2p_error {
    P2P_OK = 0,
    P2P_ERR_NOMEM = -1,    /* allocation failed */
    P2P_ERR_INVALID = -2,  /* an argument is out of range */
    P2P_ERR_ADDRESS = -3,  /* an address does not parse */
    P2P_ERR_CRYPTO = -4,   /* a cryptographic check failed */
    P2P_ERR_PEER = -5,     /* no such peer, or not in a state to do this */
    P2P_ERR_FULL = -6,     /* the peer's send queue is full; try later */
    P2P_ERR_TOO_BIG = -7,  /* larger than max_message / P2P_MAX_DATAGRAM */
    P2P_ERR_LIMIT = -8,    /* max_peers or another configured limit reached */
    P2P_ERR_CLOSED = -9,   /* the host is closed */
    P2P_ERR_IO = -10,      /* a system call failed (drivers and key files only) */
    P2P_ERR_KEYFILE = -11, /* a key file is malformed or has unsafe permissions */
    P2P_ERR_BUFFER = -12,  /* the caller's buffer is too small */
};

/* A static string naming the error code. Never NULL. */
const char *p2p_strerror(int err);

/* ---- addresses ------------------------------------------------------------------------ */

enum {
    P2P_AF_NONE = 0,
    P2P_AF_INET4 = 4,
    P2P_AF_INET6 = 6,
    P2P_AF_RELAY = 0x52, /* inside the core only: a path through a relay; the bytes of ip
                          * name it. Drivers never see it. */
    P2P_AF_STREAM = 0x53 /* issue 12: a TCP or WebSocket connection the driver holds; ip[0..3]
                          * is its stream id (little-endian u32, chosen by the driver), port 0.
                          * Drivers see it: datagrams to and from it go over that stream. */
};

/* A UDP endpoint. IPv4 is always stored as P2P_AF_INET4, never as a v4-mapped IPv6 address. */
typedef struct p2p_addr {
    uint8_t family; /* P2P_AF_INET4 or P2P_AF_INET6 */
    uint8_t ip[16]; /* IPv4 uses the first 4 bytes */
    uint8_t sock;   /* issue 12: the driver's socket it goes out of or came in on: 0 the node's
                     * UDP socket, 1..255 a punch socket (P2P_IO_PUNCH_OPEN). Zero it when
                     * filling an address by hand. p2p_addr_equal compares it. */
    uint16_t port;  /* host byte order */
    uint32_t zone;  /* IPv6 link-local (fe80::/10) only: the interface index it is on (the
                     * sockaddr_in6 sin6_scope_id, RFC 4007 zone), so "[fe80::1%3]:port";
                     * 0 for every other address. It means something on this machine only:
                     * never on the wire (p2p_wr_addr writes family, ip and port). Zero it
                     * when filling an address by hand. p2p_addr_equal compares it. */
} p2p_addr;

/* Parses a numeric "a.b.c.d:port", "[v6]:port", or "[fe80::...%zone]:port" where zone is a
 * decimal interface index 1..4294967295 (no leading zero; names such as "%eth0" are not
 * taken: resolving one is a system call) and the address is link-local (fe80::/10).
 * Returns 0 or P2P_ERR_ADDRESS. */
int p2p_addr_parse(p2p_addr *out, const char *text);
/* Writes "a.b.c.d:port", "[v6]:port" or "[v6%zone]:port" (zone not 0) into buf (at most cap
 * bytes, NUL-terminated). Returns 0, or P2P_ERR_BUFFER when cap is too small (64 always
 * suffices). */
int p2p_addr_format(const p2p_addr *a, char *buf, size_t cap);
/* A buffer of this many bytes holds any text p2p_addr_format writes. */
#define P2P_ADDR_TEXT_MAX 64
/* Parses a decimal port that is the whole of text: 1 to 5 digits, no sign, no leading zero,
 * at most 65535. The one port syntax for addresses, bind ports and names the driver resolves.
 * Returns 0 or P2P_ERR_ADDRESS. */
int p2p_addr_parse_port(const char *text, uint16_t *port);
/* 1 when a and b are the same endpoint, else 0. */
int p2p_addr_equal(const p2p_addr *a, const p2p_addr *b);

/* What kind of network an address is on (docs/PROTOCOL.md section 9.2). INVALID: not a
 * unicast endpoint anyone may be sent to (no family, port 0, unspecified, multicast,
 * broadcast, reserved 240.0.0.0/4, an IPv4-mapped IPv6 address, or a link-local fe80::/10
 * address without a zone, which no socket can send to). LOOPBACK: 127.0.0.0/8,
 * ::1. PRIVATE: 10/8, 172.16/12, 192.168/16, 100.64/10 (carrier-grade NAT), 169.254/16,
 * fc00::/7, fe80::/10. PUBLIC: everything else. */
enum { P2P_SCOPE_INVALID = 0, P2P_SCOPE_LOOPBACK = 1, P2P_SCOPE_PRIVATE = 2, P2P_SCOPE_PUBLIC = 3 };
int p2p_addr_scope(const p2p_addr *a);

/* ---- identity ------------------------------------------------------------------------- */

/* An Ed25519 identity with its X25519 static key. Holds secrets: wipe with
 * p2p_identity_wipe() when done. The node id is `ed_pk`. */
typedef struct p2p_identity {
    uint8_t ed_pk[P2P_ED_PK_LEN];
    uint8_t ed_sk[P2P_ED_SK_LEN];
    uint8_t x_pk[P2P_DH_LEN];
    uint8_t x_sk[P2P_DH_LEN];
    uint8_t binding_sig[P2P_SIG_LEN]; /* Ed25519 over "p2pnet/1 static" || x_pk */
} p2p_identity;

/* Initialises libsodium. Safe to call more than once; every other function that needs it
 * calls it too. Returns 0 or P2P_ERR_CRYPTO. */
int p2p_init(void);
/* A fresh random identity. Returns 0 or P2P_ERR_CRYPTO. */
int p2p_identity_generate(p2p_identity *id);
/* The identity for a 32-byte Ed25519 seed. Returns 0 or P2P_ERR_CRYPTO. */
int p2p_identity_from_seed(p2p_identity *id, const uint8_t seed[P2P_SEED_LEN]);
/* Loads the key file at path, or creates it (mode 0600, O_EXCL) when it does not exist.
 * On failure returns P2P_ERR_KEYFILE (malformed, unsafe permissions) or P2P_ERR_IO, and
 * writes a readable reason into err (at most errlen bytes, NUL-terminated) when err != NULL. */
int p2p_identity_load(p2p_identity *id, const char *path, char *err, size_t errlen);
/* Wipes the secrets. */
void p2p_identity_wipe(p2p_identity *id);
/* Writes the 64 lowercase hex characters of a 32-byte id and a NUL into hex[65]. */
void p2p_id_to_hex(const uint8_t id[P2P_ID_LEN], char hex[P2P_ID_HEX_LEN + 1]);
/* Parses 64 hex characters (either case). Returns 0 or P2P_ERR_INVALID. */
int p2p_id_from_hex(uint8_t id[P2P_ID_LEN], const char *hex, size_t len);

/* ---- host ----------------------------------------------------------------------------- */

typedef struct p2p_host p2p_host;

/* Called at the end of an incoming handshake, before a join, when set. Returns nonzero to
 * accept. It runs inside p2p_host_recv(): it must not call back into the host. Drivers that
 * need to ask a scripting language should use P2P_EV_REQUEST instead (see request_hook). */
typedef int (*p2p_admit_fn)(void *ud, const uint8_t id[P2P_ID_LEN], const p2p_addr *from);

/* issue 12: a stream relay to try when UDP gets no answers (p2p_config.fallback). */
#define P2P_STUN_SERVERS 4
#define P2P_FALLBACKS 4
#define P2P_LAN_PORT 44344
typedef struct p2p_fallback {
    p2p_addr addr;  /* the TCP endpoint (resolved) */
    int ws;         /* 1: WebSocket (an HTTP/1.1 upgrade to host/path), 0: raw framed TCP */
    char host[256]; /* WebSocket Host header (NUL-terminated) */
    char path[128]; /* WebSocket request path, "/p2pnet" by default */
} p2p_fallback;

typedef struct p2p_config {
    const p2p_identity *identity; /* required; copied */
    const uint8_t *network_key;   /* NULL for none */
    size_t network_key_len;
    const uint8_t (*allow)[P2P_ID_LEN]; /* NULL, or allow_count ids: nobody else may join */
    size_t allow_count;
    const uint8_t (*deny)[P2P_ID_LEN]; /* deny_count ids that may never join */
    size_t deny_count;
    int request_hook;          /* nonzero: incoming peers wait for p2p_host_admit()
                                * after a P2P_EV_REQUEST event */
    uint64_t timeout_us;       /* idle timeout; 0 means 10 s */
    uint32_t max_peers;        /* 0 means 1024 */
    uint32_t max_message;      /* 0 means P2P_DEFAULT_MAX_MESSAGE */
    uint32_t send_queue_limit; /* 0 means 8 MiB */
    int mediator;              /* nonzero: not a mesh member (Lua `mesh = false`): it
                                * neither dials the members it hears of nor shares them */
    uint64_t unix_us;          /* wall-clock time (microseconds since 1970) that goes
                                * with the `now` given to p2p_host_new; member records
                                * expire by it. 0: unknown, records never expire */
    int no_relay;              /* nonzero: never relay traffic for others (Lua
                                * `relay = false`); this node can still use relays */
    uint32_t relay_sessions;   /* pairs of peers relayed for at once; 0 means 64 */
    uint32_t relay_rate;       /* bytes per second relayed for others, all pairs
                                * together; 0 means 1 MiB/s */
    uint64_t seed;             /* nonzero: deterministic randomness for the simulator
                                * (session indexes, ephemeral keys, jitter). 0: system
                                * randomness. Never set it outside tests. */
    /* Budgets against hostile peers (docs/PROTOCOL.md section 9). Reaching one drops or
     * refuses the work and counts it in p2p_stats; memory never grows past them. */
    uint64_t peer_memory;      /* bytes one peer may make this node hold: its send
                                * queue and mesh records, message reassembly,
                                * out-of-order pieces, receipts and sent-packet
                                * records; 0 means P2P_DEFAULT_PEER_MEMORY */
    uint64_t memory;           /* bytes all peers together may make it hold; 0 means
                                * P2P_DEFAULT_MEMORY */
    uint32_t max_half_open;    /* incoming handshakes in progress; 0 means 256 */
    uint32_t cookie_threshold; /* half-open handshakes at which the node is "under
                                * load" and answers INIT without a valid cookie with a
                                * COOKIE reply instead; 0 means max_half_open / 8 */
    /* issue 10 (congestion control): P2P_CC_BBR (0, the default) or P2P_CC_NEWRENO */
    int congestion;
    /* issue 12 (reach every peer, docs/PROTOCOL.md section 8.7-8.9) */
    int portmap_off;                 /* nonzero: never ask the gateway for a port mapping */
    p2p_addr stun[P2P_STUN_SERVERS]; /* STUN servers (resolved), nstun of them */
    size_t nstun;
    p2p_fallback fallback[P2P_FALLBACKS]; /* relay over TCP/WebSocket when UDP gets nothing */
    size_t nfallback;
    int fallback_off;  /* nonzero: no stream fallback at all (not even the default
                             * same-port TCP to addresses given to connect) */
    int lan_discovery; /* nonzero: LAN discovery (beacons on lan_port) */
    uint16_t lan_port; /* 0 means P2P_LAN_PORT */
    int punch_off;     /* nonzero: no birthday punching (hard NATs stay relayed) */
} p2p_config;

/* issue 10 (congestion control): the controllers p2p_config.congestion names
 * (docs/PROTOCOL.md section 5.2) */
enum { P2P_CC_BBR = 0, P2P_CC_NEWRENO = 1 };

/* hardening (stream): was 40 MiB; see PROTOCOL.md 4.1 */
#define P2P_DEFAULT_PEER_MEMORY (64u * 1024u * 1024u)
#define P2P_DEFAULT_MEMORY (256u * 1024u * 1024u)

/* Fills cfg with the defaults (every field 0 or NULL). */
void p2p_config_init(p2p_config *cfg);

/* Creates a host. *out is owned by the caller and freed with p2p_host_free().
 * Returns 0, P2P_ERR_INVALID (no identity, bad limits) or P2P_ERR_NOMEM. */
int p2p_host_new(p2p_host **out, const p2p_config *cfg, uint64_t now);
/* Frees the host and everything it owns, wiping keys. Does not send anything: call
 * p2p_host_close() and drain first for a graceful leave. NULL is allowed. */
void p2p_host_free(p2p_host *h);
/* The host's id (32 bytes, valid as long as the host). */
const uint8_t *p2p_host_id(const p2p_host *h);

/* Feeds one received datagram. buf is borrowed for the call. Invalid datagrams are dropped
 * and counted; the return is 0 unless the host is closed (P2P_ERR_CLOSED). */
int p2p_host_recv(p2p_host *h, const p2p_addr *from, const uint8_t *buf, size_t len, uint64_t now);
/* Runs every timer due at `now`. Returns 0 or P2P_ERR_CLOSED. */
int p2p_host_on_timeout(p2p_host *h, uint64_t now);
/* The earliest time at which p2p_host_on_timeout() has work, or P2P_TIME_NEVER. */
uint64_t p2p_host_next_timeout(const p2p_host *h);

/* Writes the next datagram to send into buf (cap must be at least P2P_MAX_PACKET; with cap
 * of P2P_MAX_PACKET_PROBED, paths that proved larger packets get them) and its destination
 * into *to. Returns its length (> 0), or 0 when there is nothing to send now (for example
 * while pacing or congestion control hold data back). */
size_t p2p_host_next_datagram(p2p_host *h, p2p_addr *to, uint8_t *buf, size_t cap);

/* ---- issue 12: what the host asks of its driver (the io queue) ------------------------------
 *
 * The core never opens a socket. When it needs one (a stream relay, punch sockets, the LAN
 * socket, a UPnP request) or needs to know the default gateway, it queues a request that the
 * driver takes with p2p_host_next_io() and answers with p2p_host_io_done(). The driver rule
 * grows: after any input, drain p2p_host_next_datagram(), p2p_host_next_event(),
 * p2p_host_next_io() and p2p_host_next_lan() until all report nothing. A driver that cannot
 * do a request answers it with status P2P_ERR_IO: the host then goes on without it. */
typedef enum p2p_io_kind {
    P2P_IO_GATEWAY = 1, /* report the default IPv4 gateway (addr) and our source address
                         * towards it (local); status P2P_ERR_IO: there is none */
    P2P_IO_TCP_OPEN,    /* open stream `id` to addr; ws: a WebSocket upgrade to host/path.
                         * Answered with p2p_host_stream_up() or p2p_host_stream_down() */
    P2P_IO_TCP_CLOSE,   /* close stream `id` (no answer) */
    P2P_IO_HTTP,        /* one HTTP/1.1 request: connect to addr, write data/len, read the
                         * reply (at most 16 KiB, 2 s), close; answered with the reply */
    P2P_IO_PUNCH_OPEN,  /* open n more UDP sockets (any port): answered with the slots */
    P2P_IO_PUNCH_CLOSE, /* close punch socket `sock` of addr, or all of them when it is 0 */
    P2P_IO_LAN_START,   /* open the LAN socket on port n and join the groups (answered) */
    P2P_IO_LAN_STOP     /* close it (no answer) */
} p2p_io_kind;

typedef struct p2p_io {
    p2p_io_kind kind;
    uint32_t id;         /* echoed in the answer; the stream id for TCP_OPEN/TCP_CLOSE */
    p2p_addr addr;       /* TCP_OPEN, HTTP: where to; PUNCH_CLOSE: addr.sock */
    uint16_t n;          /* PUNCH_OPEN: sockets wanted (1..255); LAN_START: the port */
    int ws;              /* TCP_OPEN: 1 for a WebSocket */
    char host[256];      /* TCP_OPEN (ws): the Host header */
    char path[128];      /* TCP_OPEN (ws): the request path */
    const uint8_t *data; /* HTTP: the request bytes, owned by the host until its next call */
    size_t len;
} p2p_io;

/* Takes the next request into *out. Returns 1, or 0 when there is none. */
int p2p_host_next_io(p2p_host *h, p2p_io *out);

#define P2P_IO_PUNCH_MAX 255
typedef struct p2p_io_result {
    p2p_io_kind kind;
    uint32_t id;    /* the request's */
    int status;     /* 0, or P2P_ERR_IO: not done */
    p2p_addr addr;  /* GATEWAY: the gateway (port 0) */
    p2p_addr local; /* GATEWAY: our source address towards it (port: the node's UDP port) */
    uint8_t socks[P2P_IO_PUNCH_MAX]; /* PUNCH_OPEN: the socket numbers opened, n of them */
    uint16_t n;
    const uint8_t *data; /* HTTP: the reply, borrowed for the call */
    size_t len;
} p2p_io_result;

/* Answers a request. Returns 0, or P2P_ERR_CLOSED. */
int p2p_host_io_done(p2p_host *h, const p2p_io_result *r, uint64_t now);
/* A stream is up: one the host asked for (inbound 0, sid its request's id), or one a client
 * opened to the driver's TCP listener (inbound 1 for framed TCP, 2 for a WebSocket; sid
 * chosen by the driver with its top bit set, so the two never collide). from_ip: the TCP peer's address. Datagrams on it then arrive
 * with from.family == P2P_AF_STREAM. Returns 0, P2P_ERR_LIMIT (refused: close it) or
 * P2P_ERR_CLOSED. */
int p2p_host_stream_up(p2p_host *h, uint32_t sid, const p2p_addr *from_ip, int inbound,
                       uint64_t now);
/* A stream failed to open, or is gone. Returns 0 or P2P_ERR_CLOSED. */
int p2p_host_stream_down(p2p_host *h, uint32_t sid, uint64_t now);
/* A datagram that came in on the LAN socket. It is never taken for a p2pnet packet. */
int p2p_host_recv_lan(p2p_host *h, const p2p_addr *from, const uint8_t *buf, size_t len,
                      uint64_t now);
/* The next datagram for the LAN socket, as p2p_host_next_datagram. Its destination is a
 * multicast group or a broadcast address with the LAN port; to.sock names the interface:
 * 0 every interface, else the driver's interface number it reported. */
size_t p2p_host_next_lan(p2p_host *h, p2p_addr *to, uint8_t *buf, size_t cap);
/* The driver saw its interfaces or its default gateway change: port mapping, STUN and LAN
 * beacons start again. */
void p2p_host_network_changed(p2p_host *h, uint64_t now);

/* What the node knows of its NAT (p2p_host_nat). */
enum {
    P2P_MAPPING_UNKNOWN = 0,
    P2P_MAPPING_NONE = 1,
    P2P_MAPPING_INDEPENDENT = 2,
    P2P_MAPPING_DEPENDENT = 3
};
enum { P2P_MAPSRC_NONE = 0, P2P_MAPSRC_STUN = 1, P2P_MAPSRC_PEERS = 2, P2P_MAPSRC_PORTMAP = 3 };
enum {
    P2P_PORTMAP_OFF = 0,
    P2P_PORTMAP_PENDING = 1,
    P2P_PORTMAP_NONE = 2,
    P2P_PORTMAP_PCP = 3,
    P2P_PORTMAP_NATPMP = 4,
    P2P_PORTMAP_UPNP = 5
};
enum { P2P_UDP_UNKNOWN = 0, P2P_UDP_OK = 1, P2P_UDP_BLOCKED = 2 };
typedef struct p2p_nat_info {
    int mapping; /* P2P_MAPPING_* */
    int source;  /* P2P_MAPSRC_*: what said so */
    int has_gateway;
    p2p_addr gateway; /* the default gateway (port 0) */
    int portmap;      /* P2P_PORTMAP_* */
    int has_mapped;
    p2p_addr mapped;         /* the mapped external address */
    uint64_t mapped_expires; /* when the mapping runs out (the host's clock) */
    int udp;                 /* P2P_UDP_* */
    int has_stream;          /* a stream relay is up: */
    p2p_addr stream_to;      /* ... to this TCP endpoint */
    int stream_ws;           /* ... over WebSocket */
} p2p_nat_info;
void p2p_host_nat(const p2p_host *h, p2p_nat_info *out);

/* A node heard in a valid LAN beacon. */
typedef struct p2p_lan_peer {
    uint8_t id[P2P_ID_LEN];
    p2p_addr addr; /* the beacon's source IP with the node's UDP port */
    uint64_t last; /* when it was last heard (the host's clock) */
} p2p_lan_peer;
/* Writes up to cap of the nodes heard on the LAN into out; returns how many there are. */
size_t p2p_host_lan_peers(const p2p_host *h, p2p_lan_peer *out, size_t cap);

/* ---- events --------------------------------------------------------------------------- */

typedef enum p2p_event_type {
    P2P_EV_NONE = 0,
    P2P_EV_JOIN,     /* peer: a session is established */
    P2P_EV_LEAVE,    /* peer, reason: a session ended; the handle dies after this event */
    P2P_EV_MESSAGE,  /* peer, msg_type, data, len, seq, want_reply */
    P2P_EV_REPLY,    /* peer, seq (of our message), status, data, len */
    P2P_EV_DATAGRAM, /* peer, msg_type, data, len */
    P2P_EV_ERROR,    /* peer (0 if none), error text in data/len */
    P2P_EV_REQUEST,  /* peer, id, from: answer with p2p_host_admit() (request_hook only) */
    /* streaming transfers (docs/PROTOCOL.md section 4.2; see "streaming transfers" below) */
    P2P_EV_TRANSFER_OFFER, /* peer, transfer, total, meta in data/len: accept or cancel it */
    P2P_EV_TRANSFER_WANT,  /* peer, transfer, offset: an outgoing transfer has room to write */
    P2P_EV_TRANSFER_DATA,  /* peer, transfer, offset, the bytes at offset in data/len */
    P2P_EV_TRANSFER_END,   /* peer, transfer, status (p2p_transfer_status), reason in data;
                            * peer is 0 with status LOST (the LEAVE came first) */
} p2p_event_type;

typedef enum p2p_leave_reason {
    P2P_LEAVE_CLOSED = 0,  /* the peer closed, or we did with p2p_peer_disconnect() */
    P2P_LEAVE_TIMEOUT = 1, /* nothing heard for the idle timeout */
    P2P_LEAVE_DENIED = 2,  /* a connected peer became denied */
    P2P_LEAVE_PROTOCOL = 3 /* the peer broke the protocol */
} p2p_leave_reason;

typedef enum p2p_reply_status {
    P2P_REPLY_NIL = 0,   /* the remote handler returned nothing */
    P2P_REPLY_DATA = 1,  /* data/len hold the reply */
    P2P_REPLY_ERROR = 2, /* data/len hold the remote handler's error text */
    P2P_REPLY_LOST = 3   /* local: the session ended before a reply came (see reason) */
} p2p_reply_status;

typedef uint32_t p2p_peer_handle; /* 0 is never a valid handle */

/* One event. `data` is owned by the host and stays valid until the next call on the host. */
typedef struct p2p_event {
    p2p_event_type type;
    p2p_peer_handle peer;
    int reason;        /* LEAVE: p2p_leave_reason; REPLY with status LOST: the leave reason */
    int status;        /* REPLY: p2p_reply_status */
    int want_reply;    /* MESSAGE: the sender asked for a REPLY (answer p2p_peer_reply) */
    uint16_t msg_type; /* MESSAGE, DATAGRAM */
    uint64_t seq;      /* MESSAGE: record ordinal in the peer's stream; REPLY: ours */
    int has_id;        /* id holds the peer's id (JOIN, LEAVE, REQUEST; ERROR when known) */
    int broadcast;     /* MESSAGE: a broadcast from `origin`; seq is its number */
    uint32_t session;  /* the sender's index for this session: with the peer's id and
                        * seq it names a direct message uniquely across reconnects */
    p2p_peer_handle replaces; /* JOIN: the handle of our own connect to the same node that
                               * lost to this session (both dialled at once), or 0. That handle
                               * is dead; the application should treat this peer as it. */
    uint8_t origin[P2P_ID_LEN];
    uint8_t id[P2P_ID_LEN];
    p2p_addr from; /* the peer's address (JOIN, LEAVE, ERROR, REQUEST) */
    const uint8_t *data;
    size_t len;
    /* streaming transfers: the transfer's handle, the offset of DATA (or WANT's next offset,
     * or the offset accepted), and the announced size (P2P_TRANSFER_UNKNOWN: not announced) */
    uint32_t transfer;
    uint64_t offset;
    uint64_t total;
    /* lanes: MESSAGE, REPLY, DATAGRAM: the lane (0 to P2P_LANE_MAX; seq counts within it);
     * DATAGRAM: sequenced is 1 for p2p_peer_send_sequenced's, whose number is seq */
    uint8_t lane;
    uint8_t sequenced;
} p2p_event;

/* Takes the next event. Returns 1 and fills *ev, or 0 when there is none. */
int p2p_host_next_event(p2p_host *h, p2p_event *ev);
/* How many events p2p_host_next_event() would still return (0 when it would return 0). */
size_t p2p_host_events_pending(const p2p_host *h);

/* ---- peers ---------------------------------------------------------------------------- */

typedef enum p2p_peer_state {
    P2P_PEER_NONE = 0, /* the handle is dead */
    P2P_PEER_CONNECTING,
    P2P_PEER_CONNECTED,
    P2P_PEER_DISCONNECTED
} p2p_peer_state;
const char *p2p_peer_state_name(p2p_peer_state s);

typedef struct p2p_peer_info {
    p2p_peer_state state;
    int has_id; /* 1 once the id is known (or was given to connect) */
    uint8_t id[P2P_ID_LEN];
    p2p_addr address; /* where packets go: the relay's address while relayed */
    int direct;       /* 0 while relayed */
    uint64_t srtt_us;
    uint64_t bytes_queued; /* stream bytes not yet acknowledged */
    /* issue 10 (congestion control) */
    uint64_t min_rtt_us;  /* lowest RTT seen (0 before a sample) */
    uint64_t cwnd;        /* congestion window, bytes */
    uint64_t bandwidth;   /* BBR's bottleneck estimate, bytes per second (0: NewReno) */
    uint64_t in_flight;   /* bytes sent and neither acknowledged nor lost */
    uint64_t lost;        /* packets declared lost */
    uint64_t spurious;    /* of them, acknowledged later (reordering, not loss) */
    uint64_t retransmits; /* packets that carried resent stream data */
} p2p_peer_info;

/* Starts a handshake with the node at addr. expected_id (32 bytes) or NULL pins its id.
 * Returns 0 and the new handle in *out, P2P_ERR_LIMIT, P2P_ERR_CLOSED or P2P_ERR_NOMEM.
 * The outcome arrives as P2P_EV_JOIN or P2P_EV_ERROR. */
int p2p_host_connect(p2p_host *h, const p2p_addr *addr, const uint8_t *expected_id, uint64_t now,
                     p2p_peer_handle *out);
/* Connects to a member of the mesh by id, at the addresses in its member record. Returns 0
 * and the handle (the existing one when a session is already there or being made), or
 * P2P_ERR_PEER when no member with that id is known. */
int p2p_host_connect_id(p2p_host *h, const uint8_t id[P2P_ID_LEN], uint64_t now,
                        p2p_peer_handle *out);
/* Sends a broadcast: every member of the mesh receives it exactly once (P2P_EV_MESSAGE with
 * broadcast set), relayed by other members where there is no direct link. *seq (may be NULL)
 * receives its number; with this node's id it makes the message id. Returns 0,
 * P2P_ERR_TOO_BIG, P2P_ERR_CLOSED or P2P_ERR_NOMEM. */
int p2p_host_broadcast(p2p_host *h, uint16_t type, const uint8_t *data, size_t len, uint64_t *seq,
                       uint64_t now);
/* Connects to the node with that id through an introducer at `via` (a mediator, or any node
 * that holds sessions with both): a session with `via` is made first when there is none, the
 * introducer sends each side the other's addresses, both punch through their NATs, and the
 * session falls back to being relayed by the introducer when punching fails. Returns 0 and the
 * handle (the existing one when a session with that id exists or is being made),
 * P2P_ERR_ADDRESS, P2P_ERR_LIMIT, P2P_ERR_CLOSED or P2P_ERR_NOMEM. The outcome arrives as
 * P2P_EV_JOIN or P2P_EV_ERROR (for example when the id is not registered at `via`). */
int p2p_host_connect_via(p2p_host *h, const uint8_t id[P2P_ID_LEN], const p2p_addr *via,
                         uint64_t now, p2p_peer_handle *out);
/* Adds a local address this node can be reached at (the bound one, or an interface address
 * with the bound port) to the candidates it advertises. Unspecified addresses (0.0.0.0, ::)
 * are ignored. Returns 0 or P2P_ERR_LIMIT (P2P_LOCAL_ADDRS already held). */
int p2p_host_add_address(p2p_host *h, const p2p_addr *a, uint64_t now);

/* issue 12: MAPPED, a port mapping the gateway granted (PCP, NAT-PMP or UPnP-IGD); STUN, the
 * address a configured STUN server saw. */
enum { P2P_ADDR_LOCAL = 0, P2P_ADDR_REFLEXIVE = 1, P2P_ADDR_MAPPED = 2, P2P_ADDR_STUN = 3 };
#define P2P_LOCAL_ADDRS 4
#define P2P_REFLEXIVE_ADDRS 4
/* The addresses this node advertises: local ones first, then reflexive ones (where peers saw
 * it). Writes up to cap of them into out and their kinds (P2P_ADDR_*) into kinds (may be
 * NULL); returns how many there are. */
size_t p2p_host_addresses(const p2p_host *h, p2p_addr *out, int *kinds, size_t cap);

/* Fills *info. Returns 0 or P2P_ERR_PEER when the handle is dead. */
int p2p_host_peer_info(const p2p_host *h, p2p_peer_handle p, p2p_peer_info *info);
/* The handle of the connected or connecting peer with that id, or 0. */
p2p_peer_handle p2p_host_find(const p2p_host *h, const uint8_t id[P2P_ID_LEN]);
/* Writes up to cap live handles into out; returns how many live peers there are. */
size_t p2p_host_peers(const p2p_host *h, p2p_peer_handle *out, size_t cap);

/* Queues a reliable message. want_reply asks for a P2P_EV_REPLY with the remote handler's
 * reply; *seq (may be NULL) receives the record ordinal that the REPLY event will carry.
 * Returns 0, P2P_ERR_PEER (not connected), P2P_ERR_TOO_BIG (over the peer's max_message),
 * P2P_ERR_FULL (send queue over its limit) or P2P_ERR_NOMEM. data is copied. */
int p2p_peer_send(p2p_host *h, p2p_peer_handle p, uint16_t type, const uint8_t *data, size_t len,
                  int want_reply, uint64_t *seq, uint64_t now);
/* Answers a MESSAGE event that had want_reply set; status is P2P_REPLY_NIL, _DATA or _ERROR.
 * Returns 0, P2P_ERR_PEER, P2P_ERR_INVALID (seq is not awaiting a reply) or P2P_ERR_NOMEM. */
int p2p_peer_reply(p2p_host *h, p2p_peer_handle p, uint64_t seq, int status, const uint8_t *data,
                   size_t len, uint64_t now);
/* Sends one unreliable datagram. Returns 0, P2P_ERR_PEER, P2P_ERR_TOO_BIG or P2P_ERR_NOMEM. */
int p2p_peer_send_datagram(p2p_host *h, p2p_peer_handle p, uint16_t type, const uint8_t *data,
                           size_t len, uint64_t now);
/* ---- lanes (docs/PROTOCOL.md section 4.4) -------------------------------------------- */

/* Application lanes are 0 to P2P_LANE_MAX. Each is a reliable, ordered, exactly-once stream of
 * its own: loss or a large message on one never delays another. Lane 0 is the one
 * p2p_peer_send uses. Lanes are made on first use, within the peer's memory budget. */
#define P2P_LANE_MAX 254
/* Largest sequenced datagram payload: its frame carries a lane and a sequence number too. */
#define P2P_MAX_DATAGRAM_SEQ (P2P_MAX_DATAGRAM - 9)
#define P2P_LANE_PRIORITY_MAX 255
#define P2P_LANE_WEIGHT_MAX 65535

/* p2p_peer_send on a lane. *seq counts within the lane (the REPLY event carries the lane).
 * Returns as p2p_peer_send, or P2P_ERR_INVALID when lane > P2P_LANE_MAX; P2P_ERR_FULL also
 * when the peer's memory budget cannot hold a new lane. */
int p2p_peer_send_lane(p2p_host *h, p2p_peer_handle p, uint8_t lane, uint16_t type,
                       const uint8_t *data, size_t len, int want_reply, uint64_t *seq,
                       uint64_t now);
/* p2p_peer_reply for a MESSAGE event of any lane (ev.lane, ev.seq). */
int p2p_peer_reply_lane(p2p_host *h, p2p_peer_handle p, uint8_t lane, uint64_t seq, int status,
                        const uint8_t *data, size_t len, uint64_t now);
/* One sequenced unreliable datagram on a lane: the receiver delivers it only when it is newer
 * than every one it delivered on that lane (the rest are dropped and counted in
 * dropped_stale). Returns 0, P2P_ERR_PEER, P2P_ERR_INVALID (lane), P2P_ERR_TOO_BIG (over
 * P2P_MAX_DATAGRAM_SEQ), P2P_ERR_FULL or P2P_ERR_NOMEM. */
int p2p_peer_send_sequenced(p2p_host *h, p2p_peer_handle p, uint8_t lane, uint16_t type,
                            const uint8_t *data, size_t len, uint64_t now);
/* p2p_host_broadcast on a lane: every hop carries it on that lane, and receivers report it. */
int p2p_host_broadcast_lane(p2p_host *h, uint8_t lane, uint16_t type, const uint8_t *data,
                            size_t len, uint64_t *seq, uint64_t now);
/* Sets how this node shares the window between its lanes: strict priority (higher first,
 * 0 to P2P_LANE_PRIORITY_MAX, default 0), and within one priority by weight (1 to
 * P2P_LANE_WEIGHT_MAX, default 1), by bytes. Returns 0 or P2P_ERR_INVALID. */
int p2p_host_set_lane(p2p_host *h, uint8_t lane, int priority, int weight);

/* Ends one session gracefully: CLOSE is sent and a LEAVE (closed) event follows.
 * Returns 0 or P2P_ERR_PEER. */
int p2p_peer_disconnect(p2p_host *h, p2p_peer_handle p, uint64_t now);
/* Answers a P2P_EV_REQUEST. Returns 0 or P2P_ERR_PEER. */
int p2p_host_admit(p2p_host *h, p2p_peer_handle p, int accept, uint64_t now);

/* Graceful leave for every session: CLOSE goes out to all, LEAVE events follow, and the host
 * accepts nothing more. Drain datagrams after it. Idempotent. */
int p2p_host_close(p2p_host *h, uint64_t now);

/* ---- streaming transfers (docs/PROTOCOL.md section 4.2) --------------------------------------
 *
 * A transfer moves a sequence of bytes of any size through a session's stream in chunks,
 * with back-pressure: the sender writes only while the transfer has room (bytes the peer has
 * not acknowledged stay under P2P_TRANSFER_WINDOW), so memory stays flat whatever the size.
 * The core does no file I/O: the application reads its source when P2P_EV_TRANSFER_WANT says
 * there is room, and writes what P2P_EV_TRANSFER_DATA delivers. Both sides hash the whole
 * content (BLAKE2b-256); the receiver checks it and tells the sender.
 *
 * Sender: p2p_host_transfer_open -> (OFFER at the peer; it accepts) -> WANT (offset: where to
 * start; absorb that many bytes first when offset > 0) -> write while it returns 0 (FULL: wait
 * for the next WANT) -> finish -> END (done, or why not).
 * Receiver: OFFER -> p2p_host_transfer_accept (or cancel: refused) -> DATA ... -> END. */
#define P2P_TRANSFER_UNKNOWN UINT64_MAX  /* a total not announced */
#define P2P_TRANSFER_CHUNK (64u * 1024u) /* largest write, and largest DATA record's bytes */
#define P2P_TRANSFER_WINDOW (4u << 20)   /* unacknowledged stream bytes a write may leave */
#define P2P_TRANSFER_META_MAX 1024u      /* bytes of an offer's name or metadata */
#define P2P_TRANSFER_REASON_MAX 256u     /* bytes of a cancel's reason text */
#define P2P_TRANSFER_PER_PEER 16u        /* transfers one peer may have open towards us */
#define P2P_TRANSFER_HASH_LEN 32         /* BLAKE2b-256 of the whole content */
/* The lane a transfer runs on unless told otherwise: the last application lane, so that a
 * transfer never holds up messages on lane 0 (docs/API.md, Lanes). */
#define P2P_TRANSFER_LANE P2P_LANE_MAX

typedef enum p2p_transfer_status {
    P2P_TRANSFER_DONE = 0,        /* all bytes arrived and the hash matched */
    P2P_TRANSFER_CANCELLED = 1,   /* we cancelled it (reason: ours) */
    P2P_TRANSFER_PEER_CANCEL = 2, /* the peer cancelled or refused it (reason: theirs) */
    P2P_TRANSFER_INTEGRITY = 3,   /* the hash of what arrived did not match */
    P2P_TRANSFER_LOST = 4,        /* the session ended first */
} p2p_transfer_status;
/* "done", "cancelled", "peer cancelled", "integrity", "lost" (static; never NULL). */
const char *p2p_transfer_status_name(int status);

/* Offers a transfer of total bytes (P2P_TRANSFER_UNKNOWN: the size is not known yet) to a
 * connected peer, with meta (a name or metadata for the receiver, at most
 * P2P_TRANSFER_META_MAX bytes, copied). lane: the application lane (0 to P2P_LANE_MAX) its
 * records ride, P2P_TRANSFER_LANE by default. *out receives
 * the transfer's handle, for every call below and the events. Writing waits for the peer's
 * answer: a WANT event, or END when it refuses. Returns 0, P2P_ERR_PEER, P2P_ERR_INVALID,
 * P2P_ERR_LIMIT (P2P_TRANSFER_PER_PEER outgoing transfers open already), P2P_ERR_FULL (the
 * peer's memory budget) or P2P_ERR_NOMEM. */
int p2p_host_transfer_open(p2p_host *h, p2p_peer_handle peer, int lane, uint64_t total,
                           const uint8_t *meta, size_t len, uint32_t *out, uint64_t now);
/* Writes the next len bytes (1..P2P_TRANSFER_CHUNK, copied) of an accepted outgoing transfer.
 * Returns 0; P2P_ERR_FULL when it has no room now (nothing written: a WANT event follows when
 * it has); P2P_ERR_TOO_BIG past the announced total; P2P_ERR_INVALID (not accepted yet, or the
 * accepted prefix not absorbed); P2P_ERR_PEER (no such transfer). */
int p2p_host_transfer_write(p2p_host *h, uint32_t transfer, const uint8_t *data, size_t len,
                            uint64_t now);
/* Feeds bytes the other side already has into the transfer's hash without sending them: the
 * sender the first `offset` bytes of WANT after a resumed accept, the receiver its own prefix
 * before accepting from an offset. Returns 0, P2P_ERR_INVALID (more than that prefix, or not
 * now) or P2P_ERR_PEER. */
int p2p_host_transfer_absorb(p2p_host *h, uint32_t transfer, const uint8_t *data, size_t len);
/* Ends an outgoing transfer after its last byte: the announced total must have been written
 * (an unknown total becomes what was written). END follows when the peer has checked it.
 * Returns 0, P2P_ERR_INVALID (bytes missing, or not accepted), P2P_ERR_PEER or P2P_ERR_FULL. */
int p2p_host_transfer_finish(p2p_host *h, uint32_t transfer, uint64_t now);
/* Accepts an offered incoming transfer from offset (0, or the bytes the application has
 * already and gave to p2p_host_transfer_absorb). Returns 0, P2P_ERR_INVALID, P2P_ERR_PEER or
 * P2P_ERR_FULL. */
int p2p_host_transfer_accept(p2p_host *h, uint32_t transfer, uint64_t offset, uint64_t now);
/* Cancels a transfer in either direction, or refuses an offer, with a reason (at most
 * P2P_TRANSFER_REASON_MAX bytes, sent to the peer). An END event (cancelled) follows.
 * Returns 0 or P2P_ERR_PEER (no such transfer). */
int p2p_host_transfer_cancel(p2p_host *h, uint32_t transfer, const char *reason, uint64_t now);

typedef struct p2p_transfer_info {
    p2p_peer_handle peer;
    int outgoing; /* 1: we send it */
    int lane;
    uint64_t total;  /* P2P_TRANSFER_UNKNOWN while not known */
    uint64_t offset; /* bytes written (sender) or received (receiver), from the start */
    uint64_t start;  /* the offset it was accepted from */
} p2p_transfer_info;
/* Fills *info. Returns 0 or P2P_ERR_PEER when the transfer has ended. */
int p2p_host_transfer_info(const p2p_host *h, uint32_t transfer, p2p_transfer_info *info);

/* ---- statistics ----------------------------------------------------------------------- */

typedef struct p2p_stats {
    uint64_t peers; /* connected sessions */
    uint64_t packets_sent, packets_received;
    uint64_t bytes_sent, bytes_received;
    uint64_t retransmits;        /* packets that carried resent stream data */
    uint64_t dropped;            /* invalid, forged, replayed or unauthorised datagrams */
    uint64_t handshakes;         /* sessions established */
    uint64_t members;            /* member records known (mesh) */
    uint64_t broadcasts_relayed; /* broadcasts this node served to others on request */
    uint64_t introductions;      /* pairs of peers this node introduced to each other */
    uint64_t relayed_packets;    /* packets relayed for other nodes */
    uint64_t relayed_bytes;
    uint64_t relay_dropped; /* packets not relayed: over relay_rate, or no such pair */
    uint64_t path_changes;  /* sessions that moved to a new address (roaming, upgrades) */
    /* Hardening (docs/PROTOCOL.md section 9): what hostile input cost, and what was refused. */
    uint64_t memory;                /* bytes held for peers now (counted against the budgets) */
    uint64_t memory_peak;           /* the most ever held */
    uint64_t dropped_budget;        /* work refused because a peer or the node reached its
                                     * memory budget (records, pieces, events, queued sends) */
    uint64_t dropped_amplification; /* datagrams not sent: an unproven address had used its
                                     * 3x budget, or an address that never answered its packet
                                     * allowance */
    uint64_t dropped_unsolicited;   /* records acted on by nobody: INTROs not asked for,
                                     * responses to requests never made, over-rate dials */
    uint64_t dropped_replay;        /* replayed INITs (seen ephemeral keys) and broadcasts
                                     * outside their time window or already seen */
    uint64_t cookies_sent;          /* COOKIE replies sent while under load */
    uint64_t under_load;            /* 1 while the node demands cookies on INIT */
    uint64_t rekeys;                /* session key updates (both directions) */
    uint64_t work_dh;               /* X25519 operations done for handshakes */
    uint64_t work_verify;           /* Ed25519 signature checks */
    /* hardening (handshake) */
    uint64_t dropped_half_open; /* INITs refused because the half-open table, or the share
                                 * of it one source IP may hold (8), was full */
    /* streaming transfers */
    uint64_t transfers_refused; /* offers refused at once: P2P_TRANSFER_PER_PEER or budget */
    /* lanes */
    uint64_t dropped_stale; /* sequenced datagrams older than one already delivered */
    /* issue 12 (reach every peer) */
    uint64_t portmap_sent; /* packets to the gateway (PCP, NAT-PMP, SSDP) and HTTP requests */
    uint64_t stun_sent, stun_received; /* STUN Binding requests, and answers that matched */
    uint64_t lan_sent, lan_received;   /* LAN beacons; received: valid ones */
    uint64_t lan_dropped;              /* beacons that failed a check (key, time, replay, rate) */
    uint64_t lan_dials;                /* handshakes started because of a beacon */
    uint64_t punch_rounds;             /* birthday rounds started (either side) */
    uint64_t punch_probes;             /* spray probes sent */
    uint64_t punch_hits;               /* rounds that found a direct path */
    uint64_t stream_up;                /* streams that came up (either way) */
    uint64_t stream_dropped;           /* datagrams for a stream that was not up */
    uint64_t relay_handovers;          /* relayed sessions moved to another relay */
} p2p_stats;

void p2p_host_stats(const p2p_host *h, p2p_stats *out);

/* ---- per-peer statistics (docs/API.md, Observability) ---------------------------------------
 *
 * What one session has done and how its path looks now, for operators. Reading them costs a
 * copy: the counters are kept as the packets go (one add each), the rest is computed here.
 * Traffic counts the session's own DATA packets, whole (header and tag included): stream data,
 * datagrams, acknowledgements, keepalives, path and MTU probes, CLOSE. Handshake packets, and
 * packets relayed for other nodes, are counted by the node only (p2p_stats). A relayed session
 * counts its packets as the peer sees them, without the relay's wrapping: bytes_sent on one
 * side and bytes_received on the other then differ only by what the network lost. */
/* issue 12: the kinds of path a session can be on, how it tried to go direct, and one
 * direct path it knows. */
enum { P2P_PATH_DIRECT = 0, P2P_PATH_RELAYED = 1, P2P_PATH_TCP = 2, P2P_PATH_WEBSOCKET = 3 };
enum {
    P2P_STRATEGY_DIRECT = 0,
    P2P_STRATEGY_PUNCH = 1,
    P2P_STRATEGY_BIRTHDAY = 2,
    P2P_STRATEGY_RELAY = 3
};
enum { P2P_CAND_UNTRIED = 0, P2P_CAND_PROBING = 1, P2P_CAND_VALID = 2, P2P_CAND_FAILED = 3 };
#define P2P_PATH_CANDS 8
typedef struct p2p_path_cand {
    p2p_addr addr;
    int kind;        /* P2P_ADDR_* as the peer advertised it (LOCAL, REFLEXIVE, MAPPED, STUN) */
    int state;       /* P2P_CAND_* */
    uint64_t rtt_us; /* smoothed RTT of its path probes; 0 before one answered */
} p2p_path_cand;

typedef struct p2p_peer_stats {
    p2p_peer_state state;
    /* traffic */
    uint64_t packets_sent, bytes_sent;
    uint64_t packets_received, bytes_received; /* only packets that authenticated */
    uint64_t eliciting_sent; /* sent packets that ask for an acknowledgement (MTU probes
                              * excepted): what `lost` is counted among */
    uint64_t retransmits;    /* packets that carried resent stream data */
    uint64_t lost;           /* packets declared lost */
    uint64_t spurious;       /* of them, acknowledged later (reordering, not loss) */
    double loss;             /* (lost - spurious) / eliciting_sent; 0 before anything was sent */
    /* round-trip time, microseconds; 0 before the first sample */
    uint64_t srtt_us, rttvar_us, min_rtt_us, latest_rtt_us;
    /* congestion control */
    int congestion; /* P2P_CC_BBR or P2P_CC_NEWRENO */
    /* static: BBR "startup", "drain", "probe_bw", "probe_rtt"; NewReno "slow_start",
     * "avoidance" */
    const char *phase;
    uint64_t cwnd;              /* congestion window, bytes */
    uint64_t in_flight;         /* bytes sent and neither acknowledged nor lost */
    uint64_t bandwidth;         /* BBR's bottleneck estimate, bytes per second (0: NewReno) */
    uint64_t pacing_rate;       /* bytes per second the pacer lets out now */
    uint64_t congestion_events; /* responses to loss (window or rate cut) */
    uint64_t undos;             /* of them, undone because every loss proved spurious */
    /* path */
    int direct;                   /* 0 while relayed */
    p2p_addr address;             /* where packets go: the relay's address while relayed */
    int has_relay;                /* relayed, and the relay's session is known: */
    uint8_t relay_id[P2P_ID_LEN]; /* the relay's id */
    uint32_t mtu;                 /* largest DATA packet the path carries now (probed) */
    /* issue 12: which path and why (docs/API.md, peer.path) */
    int path;              /* P2P_PATH_* */
    int strategy;          /* P2P_STRATEGY_*: how this session tried to go direct */
    int peer_mapping;      /* the peer's NAT mapping as it told us (P2P_MAPPING_*) */
    uint64_t punch_probes; /* spray probes this session sent (birthday) */
    uint8_t ncands;        /* the direct paths it knows, with what they measured: */
    p2p_path_cand cands[P2P_PATH_CANDS];
    /* queues */
    uint64_t bytes_queued;     /* stream bytes of all lanes not yet acknowledged */
    uint64_t datagrams_queued; /* unreliable datagrams waiting for a packet */
    uint32_t lanes;            /* lanes in use: see p2p_peer_lane_stats_get */
} p2p_peer_stats;

/* Fills *out for a live handle (connecting, connected, or closing: then state is
 * P2P_PEER_DISCONNECTED). Returns 0, or P2P_ERR_PEER when the handle is dead: a session's
 * figures go with it, so read them before it ends if they matter. */
int p2p_peer_stats_get(const p2p_host *h, p2p_peer_handle p, p2p_peer_stats *out);

/* The lane that carries receipts and mesh and NAT records, as p2p_lane_stats names it. */
#define P2P_LANE_STATS_CONTROL 255

/* One lane of a session, send side. A record is one message, broadcast, transfer chunk or,
 * on the control lane, one receipt or mesh or NAT record. */
typedef struct p2p_lane_stats {
    int lane;                /* 0 to P2P_LANE_MAX, or P2P_LANE_STATS_CONTROL */
    uint64_t queued_bytes;   /* bytes queued and not yet acknowledged (in flight included) */
    uint64_t unsent_bytes;   /* of them, bytes not sent even once */
    uint64_t queued_records; /* records not yet acknowledged whole */
    uint64_t records_sent;   /* records queued since the session began */
    uint64_t records_received;
} p2p_lane_stats;

/* Writes the lanes the session has used (lane 0 always; the others once used, either way),
 * in the order they were first used, up to cap of them into out (NULL with cap 0 only
 * counts). Returns how many there are, or 0 when the handle is dead. At most
 * P2P_LANE_MAX + 2 (256). */
size_t p2p_peer_lane_stats_get(const p2p_host *h, p2p_peer_handle p, p2p_lane_stats *out,
                               size_t cap);

#ifdef __cplusplus
}
#endif
#endif
