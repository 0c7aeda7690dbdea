/*
 * driver/sim.c - a deterministic simulated network on virtual time.
 *
 * Determinism rests on three things: one seeded random stream drawn in a fixed order per
 * datagram (a symmetric NAT's new port, loss, duplicate, then per copy jitter and reorder);
 * in-flight copies ordered by (delivery time, insertion number), so equal times are delivered
 * in the order they were sent; and hosts visited in attach order. Given seeded hosts, the
 * same calls give the same run to the microsecond.
 *
 * Cost: a host's output and next timeout change only when it is given input (a datagram, a
 * timeout, or an API call followed by p2p_sim_flush()). The sim therefore caches each host's
 * deadline and drains only the hosts it fed, so idle hosts cost a comparison per step.
 *
 * NATs (see driver/sim.h) are a table of flows per NATed host, each a conntrack entry: external
 * port, remote endpoint, last use. Translation happens where a datagram leaves its host (so a
 * datagram lost on the path still refreshed its flow, as at a real edge) and filtering where
 * it arrives. A NAT draws randomness only when a symmetric NAT makes a mapping or any NAT is
 * rebound, so runs without NATs draw exactly as before.
 *
 * Access links (see driver/sim.h) add stages to a copy's trip, each an entry in the same heap:
 * a datagram leaves its host into the UP link's queue and is pushed for the time it leaves
 * that link (departure + delay, computed on entry, so a later rate change never moves it);
 * there the link's loss is drawn, and the network model of p2p_sim_config runs as it does at
 * once for a host without an UP link; the copy is pushed for its arrival at the receiver,
 * where it enters the DOWN link the same way, and is delivered when it leaves. A link's
 * backlog is kept in micro-bits (bits * 10^6), which drain by exactly rate_bps per
 * microsecond: integer arithmetic, so a minute at 100 Mbit/s ends on the exact microsecond.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "p2p_crypto.h"
#include "driver/sim.h"

/* 12 days in microseconds: keeps time + delay far from overflow. */
#define MAX_DELAY_US (UINT64_C(1) << 40)
#define HOSTS_PER_NET 250
/* 192.0.2/24, 198.51.100/24, 203.0.113/24, then the 512 /24s of 198.18.0.0/15. */
#define DOC_NETS 3
#define BENCH_NETS 512
#define MAX_HOSTS ((DOC_NETS + BENCH_NETS) * HOSTS_PER_NET)
#define DEFAULT_PORT 4000
#define RNG_POOL 64
/* External ports a NAT draws: the unprivileged range. */
#define NAT_PORT_MIN 1024
#define NAT_PORT_SPAN (65535 - NAT_PORT_MIN)
/* A link's backlog unit: micro-bits per byte, so that one microsecond drains rate_bps. */
#define UBITS_PER_BYTE UINT64_C(8000000)
/* A backlog carried over a rate change is capped here (about 146 years at 1 bit/s, 4.6 s at
 * the top rate): far beyond any queue limit, and small enough that adding to it, or a time
 * derived from it, cannot overflow. */
#define MAX_BACKLOG_UBITS (UINT64_C(1) << 62)
#define US_PER_SECOND UINT64_C(1000000)

/* Where a copy in the heap is going next (see the stages above). */
enum {
    PKT_ARRIVE = 0, /* reaches the receiver's edge: its DOWN link, or the host */
    PKT_UP_OUT,     /* leaves the sender's UP link (owner): its loss, then the network */
    PKT_DOWN_OUT,   /* leaves the receiver's DOWN link (owner): its loss, then the host */
    /* issue 12: events of the io queue, all for host `owner` */
    PKT_LOCAL,       /* a datagram within a LAN domain or from the gateway: to the host as is */
    PKT_LAN,         /* a datagram on the host's LAN socket */
    PKT_STREAM,      /* a datagram on stream `sid` of the host */
    PKT_STREAM_UP,   /* stream `sid` is up (aux: inbound; from: the peer's address) */
    PKT_STREAM_DOWN, /* stream `sid` is gone */
    PKT_IO           /* an io answer: kind aux, id sid, status from.port (0 ok), data */
};

/* One copy of a datagram in flight. */
struct sim_pkt {
    uint64_t time;     /* when its current stage ends (for PKT_ARRIVE, its delivery time) */
    uint64_t seq;      /* insertion number: breaks ties between equal times */
    uint64_t qdelay;   /* queueing delay in the link it is leaving (PKT_*_OUT) */
    size_t owner;      /* attach index of the host whose link it is in (PKT_*_OUT), or whom an
                      * io event is for */
    int stage;         /* PKT_* */
    uint32_t sid, aux; /* io events (see PKT_*) */
    p2p_addr from, to;
    size_t len;
    uint8_t data[];
};

/* One direction of a host's access link (allocated when first set; kept for its counters). */
struct sim_link {
    p2p_sim_link cfg;
    int on;           /* set, not cleared */
    int bad;          /* Gilbert-Elliott state */
    uint64_t limit;   /* drop-tail limit in bytes: cfg.queue_bytes or its default */
    uint64_t backlog; /* micro-bits not yet serialized at time `updated` */
    uint64_t updated;
    p2p_sim_link_stats stats;
};

/* One conntrack entry of a NAT: a mapping (ext_port) and the one remote endpoint allowed in
 * through it. A cone NAT's flows all share its one port. */
struct nat_flow {
    p2p_addr remote;
    uint64_t last_used;
    uint16_t ext_port;
    uint8_t sock; /* the host's socket (0, or a punch socket) */
};

struct sim_nat {
    int type;               /* P2P_SIM_NAT_CONE or P2P_SIM_NAT_SYMMETRIC */
    uint16_t cone_port;     /* a cone NAT's external port */
    struct nat_flow *flows; /* at most P2P_SIM_NAT_MAX_FLOWS */
    size_t len, cap;
    uint16_t *retired; /* the ports in use at the last rebind: never drawn again */
    size_t retired_len;
    uint16_t port_lo, port_hi; /* the range drawn from (p2p_sim_nat_ports); 0: the default */
};

struct sim_host {
    p2p_host *host;           /* NULL once detached */
    uint64_t deadline;        /* the host's next timeout as last read (see refresh()) */
    p2p_addr addr;            /* what the host is bound to: private behind a NAT */
    struct sim_nat *nat;      /* NULL without NAT; freed on detach */
    int touched;              /* fed a datagram or a timeout during this step */
    struct sim_link *link[2]; /* by P2P_SIM_UP / P2P_SIM_DOWN; NULL until first set */
    /* issue 12 */
    int udp_blocked;     /* p2p_sim_block_udp */
    uint16_t tcp_port;   /* listening for streams, or 0 */
    uint16_t lan_domain; /* p2p_sim_set_lan, 0: none */
    uint16_t lan_port;   /* its LAN socket's port while open, else 0 */
    uint8_t punch[32];   /* open punch sockets 1..255, a bit each */
    int has_gw;
    p2p_sim_gateway gw;
};

/* A stream between two hosts: end 0 opened it, end 1 accepted it. */
struct sim_stream {
    size_t end[2];    /* attach indexes */
    uint32_t sid[2];  /* each end's stream id */
    uint64_t last[2]; /* the last delivery time towards end k (keeps the pipe in order) */
    int live;
};

/* A firewall between two hosts' public IPs (attach indexes, a < b). */
struct sim_block {
    size_t a, b;
};

struct p2p_sim {
    p2p_sim_config cfg;
    uint64_t now;
    p2p_rng rng;
    uint8_t pool[RNG_POOL]; /* buffered rng output, so each draw is not a ChaCha20 block */
    size_t pool_pos;

    struct sim_pkt **heap; /* binary min-heap on (time, seq) */
    size_t heap_len, heap_cap;
    uint64_t next_seq;

    struct sim_host *hosts; /* indexed by attach order, which is also the address index */
    size_t host_len, host_cap;

    p2p_sim_tap_fn tap; /* test hook: sees every delivered copy, or NULL */
    void *tap_ud;
    struct sim_block *blocks; /* test hook: firewalls in place (few: a linear scan) */
    size_t block_len, block_cap;

    p2p_sim_link default_link[2]; /* what hosts attached from now on get, when ... */
    int default_on[2];            /* ... this is set */

    struct sim_stream *streams; /* issue 12: streams, live or not (slots are reused) */
    size_t stream_len, stream_cap;
    uint32_t next_sid;
    p2p_sim_server *servers;
    size_t server_len, server_cap;

    p2p_sim_stats stats;
};

/* ---- randomness ----------------------------------------------------------------------- */

/* The sim's seed 0 is valid but p2p_rng treats 0 as "system randomness": map every seed
 * through a bijective mixer (the splitmix64 finaliser) so that only one seed, whose image is
 * 0, needs replacing. */
static uint64_t mix_seed(uint64_t x)
{
    x ^= UINT64_C(0x5032506e65742f31); /* "P2Pnet/1": separates this stream from hosts' */
    x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
    x ^= x >> 31;
    return x != 0 ? x : 1;
}

static uint64_t sim_u64(p2p_sim *s)
{
    uint64_t v = 0;
    int i;

    if (s->pool_pos + 8 > RNG_POOL) {
        p2p_rng_bytes(&s->rng, s->pool, RNG_POOL);
        s->pool_pos = 0;
    }
    for (i = 7; i >= 0; i--) v = v << 8 | s->pool[s->pool_pos + (size_t)i];
    s->pool_pos += 8;
    return v;
}

/* True with probability p. Certain outcomes draw nothing, so a perfect network costs no
 * randomness. */
static int sim_chance(p2p_sim *s, double p)
{
    if (p <= 0.0) return 0;
    if (p >= 1.0) return 1;
    return (double)(sim_u64(s) >> 11) * 0x1p-53 < p;
}

/* Uniform in [0, max]. */
static uint64_t sim_uniform(p2p_sim *s, uint64_t max)
{
    uint64_t range, threshold, x;

    if (max == 0) return 0;
    if (max == UINT64_MAX) return sim_u64(s);
    range = max + 1;
    threshold = (0 - range) % range; /* redraw the values that would bias the modulo */
    do {
        x = sim_u64(s);
    } while (x < threshold);
    return x % range;
}

uint64_t p2p_sim_host_seed(p2p_sim *s)
{
    uint64_t v;

    do {
        v = sim_u64(s);
    } while (v == 0);
    return v;
}

/* Makes room for one more item in a growing array of len items (*cap allocated, size bytes
 * each), doubling *cap, or starting at first. Returns the array, moved or not, or NULL when
 * memory ran out (the old array is then still valid and unchanged). */
static void *grow_for_one(void *items, size_t len, size_t *cap, size_t size, size_t first)
{
    void *grown;
    size_t n;

    if (len < *cap) return items;
    n = *cap ? *cap * 2 : first;
    grown = realloc(items, n * size);
    if (grown != NULL) *cap = n;
    return grown;
}

/* ---- the in-flight heap --------------------------------------------------------------- */

static int pkt_before(const struct sim_pkt *a, const struct sim_pkt *b)
{
    return a->time != b->time ? a->time < b->time : a->seq < b->seq;
}

static int heap_push(p2p_sim *s, struct sim_pkt *p)
{
    struct sim_pkt **grown;
    size_t i, parent;

    grown = grow_for_one(s->heap, s->heap_len, &s->heap_cap, sizeof *grown, 256);
    if (grown == NULL) return P2P_ERR_NOMEM;
    s->heap = grown;
    i = s->heap_len++;
    while (i > 0) {
        parent = (i - 1) / 2;
        if (!pkt_before(p, s->heap[parent])) break;
        s->heap[i] = s->heap[parent];
        i = parent;
    }
    s->heap[i] = p;
    return 0;
}

static struct sim_pkt *heap_pop(p2p_sim *s)
{
    struct sim_pkt *top, *last;
    size_t i = 0, child, n;

    top = s->heap[0];
    last = s->heap[--s->heap_len];
    n = s->heap_len;
    while ((child = 2 * i + 1) < n) {
        if (child + 1 < n && pkt_before(s->heap[child + 1], s->heap[child])) child++;
        if (!pkt_before(s->heap[child], last)) break;
        s->heap[i] = s->heap[child];
        i = child;
    }
    if (n > 0) s->heap[i] = last;
    return top;
}

/* ---- addresses ------------------------------------------------------------------------ */

static const uint8_t doc_nets[DOC_NETS][3] = {{192, 0, 2}, {198, 51, 100}, {203, 0, 113}};

static void index_to_ip(size_t i, uint8_t ip[4])
{
    size_t net = i / HOSTS_PER_NET, b;

    if (net < DOC_NETS) {
        memcpy(ip, doc_nets[net], 3);
    } else {
        b = net - DOC_NETS;
        ip[0] = 198;
        ip[1] = (uint8_t)(18 + b / 256);
        ip[2] = (uint8_t)(b % 256);
    }
    ip[3] = (uint8_t)(i % HOSTS_PER_NET + 1);
}

/* The attach index an address belongs to, or -1 when no host could ever have it. */
static long ip_to_index(const p2p_addr *a)
{
    size_t net;

    if (a->family != P2P_AF_INET4 || a->ip[3] < 1 || a->ip[3] > HOSTS_PER_NET) return -1;
    for (net = 0; net < DOC_NETS; net++)
        if (memcmp(a->ip, doc_nets[net], 3) == 0)
            return (long)(net * HOSTS_PER_NET + a->ip[3] - 1u);
    if (a->ip[0] == 198 && (a->ip[1] == 18 || a->ip[1] == 19))
        return (long)((DOC_NETS + (size_t)(a->ip[1] - 18) * 256 + a->ip[2]) * HOSTS_PER_NET +
                      a->ip[3] - 1u);
    return -1;
}

/* The slot of the attached host whose public IP that is (port not checked), or NULL. */
static struct sim_host *find_host(p2p_sim *s, const p2p_addr *a)
{
    long i = ip_to_index(a);

    if (i < 0 || (size_t)i >= s->host_len || s->hosts[i].host == NULL) return NULL;
    return &s->hosts[i];
}

/* 10.0.0.0/8: private networks, unreachable from outside their NAT. */
static int is_private(const p2p_addr *a)
{
    return a->family == P2P_AF_INET4 && a->ip[0] == 10;
}

static void index_to_private(size_t i, uint8_t ip[4])
{
    uint32_t v = UINT32_C(0x0a000001) + (uint32_t)i; /* MAX_HOSTS fits the /8 many times */

    ip[0] = (uint8_t)(v >> 24);
    ip[1] = (uint8_t)(v >> 16);
    ip[2] = (uint8_t)(v >> 8);
    ip[3] = (uint8_t)v;
}

static void refresh(struct sim_host *slot)
{
    slot->deadline = slot->host != NULL ? p2p_host_next_timeout(slot->host) : P2P_TIME_NEVER;
}

/* The attach index of an attached host, or -1. */
static long find_index(const p2p_sim *s, const p2p_host *h)
{
    size_t i;

    if (h == NULL) return -1;
    for (i = 0; i < s->host_len; i++)
        if (s->hosts[i].host == h) return (long)i;
    return -1;
}

static struct sim_host *find_slot(p2p_sim *s, const p2p_host *h)
{
    long i = find_index(s, h);

    return i >= 0 ? &s->hosts[i] : NULL;
}

/* ---- NAT ------------------------------------------------------------------------------ */

static void nat_free(struct sim_nat *n)
{
    if (n != NULL) {
        free(n->flows);
        free(n->retired);
        free(n);
    }
}

static int flow_live(const p2p_sim *s, const struct nat_flow *f)
{
    return s->now - f->last_used < P2P_SIM_NAT_IDLE_US;
}

/* Forgets flow i; the order of the rest does not matter for lookups, and swapping keeps the
 * table deterministic. */
static void flow_remove(struct sim_nat *n, size_t i)
{
    n->flows[i] = n->flows[--n->len];
}

/* The live flow with that remote endpoint (and, when port is not ANY_PORT, that external
 * port), or NULL. Expired flows met on the way are dropped, which keeps the table short. */
#define ANY_PORT (-1)
#define ANY_SOCK (-1)
static struct nat_flow *flow_find(p2p_sim *s, struct sim_nat *n, const p2p_addr *remote, long port,
                                  int sock)
{
    size_t i = 0;
    struct nat_flow *f;

    while (i < n->len) {
        f = &n->flows[i];
        if (!flow_live(s, f)) {
            flow_remove(n, i);
            continue;
        }
        if ((port == ANY_PORT || f->ext_port == port) && (sock == ANY_SOCK || f->sock == sock) &&
            p2p_addr_equal(&f->remote, remote))
            return f;
        i++;
    }
    return NULL;
}

static int port_taken(const struct sim_nat *n, uint16_t port)
{
    size_t i;

    for (i = 0; i < n->len; i++)
        if (n->flows[i].ext_port == port) return 1;
    for (i = 0; i < n->retired_len; i++)
        if (n->retired[i] == port) return 1;
    return 0;
}

/* A random external port no live flow uses and no rebind retired. At most
 * 2 * P2P_SIM_NAT_MAX_FLOWS of 64511 ports are taken, so this ends quickly. */
static uint16_t nat_draw_port(p2p_sim *s, const struct sim_nat *n)
{
    uint16_t port, lo = NAT_PORT_MIN, span = NAT_PORT_SPAN;

    if (n->port_lo != 0) {
        lo = n->port_lo;
        span = (uint16_t)(n->port_hi - n->port_lo);
    }
    do {
        port = (uint16_t)(lo + sim_uniform(s, span));
    } while (port_taken(n, port));
    return port;
}

/* A new flow to remote, evicting the least recently used one when the table is full. */
static struct nat_flow *flow_add(p2p_sim *s, struct sim_nat *n, const p2p_addr *remote, int sock)
{
    struct nat_flow *f, *grown;
    size_t i, old = 0;

    if (n->len == P2P_SIM_NAT_MAX_FLOWS) {
        for (i = 1; i < n->len; i++)
            if (n->flows[i].last_used < n->flows[old].last_used) old = i;
        flow_remove(n, old);
    }
    grown = grow_for_one(n->flows, n->len, &n->cap, sizeof *grown, 8);
    if (grown == NULL) return NULL;
    n->flows = grown;
    f = &n->flows[n->len];
    f->ext_port =
        n->type == P2P_SIM_NAT_CONE ? (uint16_t)(n->cone_port + sock) : nat_draw_port(s, n);
    f->remote = *remote;
    f->sock = (uint8_t)sock;
    n->len++;
    return f;
}

/* Translates a datagram from the host at index i to `to`: writes its public source into
 * *from. Returns 0, or -1 when the NAT has no memory for the flow (the datagram is lost). */
static int nat_out(p2p_sim *s, size_t i, const p2p_addr *to, p2p_addr *from)
{
    struct sim_host *h = &s->hosts[i];
    struct sim_nat *n = h->nat;
    int sock = to->sock;
    struct nat_flow *f;
    p2p_addr remote = *to;
    uint16_t eport;

    remote.sock = 0;
    memset(from, 0, sizeof *from);
    from->family = P2P_AF_INET4;
    index_to_ip(i, from->ip);
    /* a port mapping on the gateway: that port, to every destination */
    if (sock == 0 && h->has_gw && h->gw.nat_out != NULL &&
        h->gw.nat_out(h->gw.ud, &h->addr, s->now, &eport)) {
        from->port = eport;
        return 0;
    }
    f = flow_find(s, n, &remote, ANY_PORT, sock);
    if (f == NULL && (f = flow_add(s, n, &remote, sock)) == NULL) return -1;
    f->last_used = s->now;
    from->port = f->ext_port;
    return 0;
}

/* When the NAT lets a datagram from `from` to its public port in: the host's socket it goes
 * to (0, or a punch socket), and the flow is refreshed; else -1. */
static int nat_in(p2p_sim *s, struct sim_host *h, const p2p_addr *from, uint16_t port)
{
    p2p_addr remote = *from, priv;
    struct nat_flow *f;

    remote.sock = 0;
    f = flow_find(s, h->nat, &remote, port, ANY_SOCK);
    if (f == NULL) {
        if (h->has_gw && h->gw.nat_in != NULL && h->gw.nat_in(h->gw.ud, port, s->now, &priv) &&
            memcmp(priv.ip, h->addr.ip, 4) == 0 && priv.port == h->addr.port)
            return 0;
        return -1;
    }
    f->last_used = s->now;
    return f->sock;
}

int p2p_sim_rebind(p2p_sim *s, p2p_host *h)
{
    struct sim_host *slot = find_slot(s, h);
    struct sim_nat *n;
    uint16_t *retired;
    size_t i, k = 0;

    if (slot == NULL || slot->nat == NULL) return P2P_ERR_INVALID;
    n = slot->nat;
    retired = malloc((n->len + 1) * sizeof *retired);
    if (retired == NULL) return P2P_ERR_NOMEM;
    for (i = 0; i < n->len; i++) retired[k++] = n->flows[i].ext_port;
    retired[k++] = n->cone_port;
    free(n->retired);
    n->retired = retired;
    n->retired_len = k;
    n->len = 0;
    if (n->type == P2P_SIM_NAT_CONE) n->cone_port = nat_draw_port(s, n);
    return 0;
}

int p2p_sim_public_addr(const p2p_sim *s, const p2p_host *h, p2p_addr *out)
{
    long i = find_index(s, h);

    if (i < 0) return P2P_ERR_INVALID;
    *out = s->hosts[i].addr;
    if (s->hosts[i].nat != NULL) {
        memset(out, 0, sizeof *out);
        out->family = P2P_AF_INET4;
        index_to_ip((size_t)i, out->ip);
    }
    return 0;
}

/* ---- lifecycle ------------------------------------------------------------------------ */

static int bad_probability(double p)
{
    return isnan(p) || p < 0.0 || p > 1.0;
}

/* ---- access links: settings ----------------------------------------------------------- */

static int bad_link(const p2p_sim_link *l)
{
    return l->rate_bps > P2P_SIM_LINK_MAX_RATE || l->queue_bytes > P2P_SIM_LINK_MAX_QUEUE ||
           l->delay_us > MAX_DELAY_US || bad_probability(l->loss) ||
           bad_probability(l->burst_enter) || bad_probability(l->burst_leave) ||
           bad_probability(l->burst_loss);
}

static uint64_t div_up(uint64_t a, uint64_t b)
{
    return a / b + (a % b != 0);
}

/* Brings the backlog of a rate-limited link forward to `now`. */
static void link_drain(struct sim_link *k, uint64_t now)
{
    uint64_t elapsed = now - k->updated;

    k->updated = now;
    if (k->backlog == 0) return;
    /* elapsed < backlog / rate + 1 here, so rate * elapsed < backlog + rate: no overflow */
    if (elapsed >= div_up(k->backlog, k->cfg.rate_bps))
        k->backlog = 0;
    else
        k->backlog -= k->cfg.rate_bps * elapsed;
}

/* Applies settings l (NULL: clears) to link k at time now. What is queued keeps its departure
 * times: the link stays busy as long as it would have, and the backlog is restated in work at
 * the new rate, so the next datagram queues behind the old ones. */
static void link_configure(struct sim_link *k, const p2p_sim_link *l, uint64_t now)
{
    uint64_t busy_us = 0, rate;

    if (k->on && k->cfg.rate_bps > 0) {
        link_drain(k, now);
        busy_us = div_up(k->backlog, k->cfg.rate_bps);
    }
    k->on = l != NULL;
    if (l == NULL) {
        k->backlog = 0;
        k->bad = 0;
        return;
    }
    k->cfg = *l;
    rate = l->rate_bps;
    if (l->burst_enter <= 0.0) k->bad = 0;
    k->limit = l->queue_bytes;
    if (k->limit == 0) {
        k->limit = rate / (8 * US_PER_SECOND / P2P_SIM_LINK_DEFAULT_QUEUE_US);
        if (k->limit < P2P_SIM_LINK_MIN_QUEUE) k->limit = P2P_SIM_LINK_MIN_QUEUE;
    }
    k->updated = now;
    if (rate == 0)
        k->backlog = 0;
    else if (busy_us > MAX_BACKLOG_UBITS / rate)
        k->backlog = MAX_BACKLOG_UBITS;
    else
        k->backlog = busy_us * rate;
}

int p2p_sim_set_link(p2p_sim *s, const p2p_host *h, int dir, const p2p_sim_link *l)
{
    long i = find_index(s, h);
    struct sim_link **k;

    if (i < 0 || (dir != P2P_SIM_UP && dir != P2P_SIM_DOWN) || (l != NULL && bad_link(l)))
        return P2P_ERR_INVALID;
    k = &s->hosts[i].link[dir];
    if (*k == NULL) {
        if (l == NULL) return 0;
        if ((*k = calloc(1, sizeof **k)) == NULL) return P2P_ERR_NOMEM;
    }
    link_configure(*k, l, s->now);
    return 0;
}

int p2p_sim_set_default_link(p2p_sim *s, int dir, const p2p_sim_link *l)
{
    if ((dir != P2P_SIM_UP && dir != P2P_SIM_DOWN) || (l != NULL && bad_link(l)))
        return P2P_ERR_INVALID;
    s->default_on[dir] = l != NULL;
    if (l != NULL) s->default_link[dir] = *l;
    return 0;
}

int p2p_sim_link_stats_get(const p2p_sim *s, const p2p_host *h, int dir, p2p_sim_link_stats *out)
{
    long i = find_index(s, h);

    if (i < 0 || (dir != P2P_SIM_UP && dir != P2P_SIM_DOWN)) return P2P_ERR_INVALID;
    if (s->hosts[i].link[dir] != NULL)
        *out = s->hosts[i].link[dir]->stats;
    else
        memset(out, 0, sizeof *out);
    return 0;
}

int p2p_sim_new(p2p_sim **out, const p2p_sim_config *cfg)
{
    p2p_sim *s;

    *out = NULL;
    if (cfg == NULL || bad_probability(cfg->loss) || bad_probability(cfg->duplicate) ||
        bad_probability(cfg->reorder) || cfg->latency_us > MAX_DELAY_US ||
        cfg->jitter_us > MAX_DELAY_US)
        return P2P_ERR_INVALID;
    s = calloc(1, sizeof *s);
    if (s == NULL) return P2P_ERR_NOMEM;
    s->cfg = *cfg;
    p2p_rng_init(&s->rng, mix_seed(cfg->seed));
    s->pool_pos = RNG_POOL;
    *out = s;
    return 0;
}

void p2p_sim_free(p2p_sim *s)
{
    size_t i;

    if (s == NULL) return;
    for (i = 0; i < s->heap_len; i++) free(s->heap[i]);
    free(s->heap);
    for (i = 0; i < s->host_len; i++) {
        nat_free(s->hosts[i].nat);
        free(s->hosts[i].link[P2P_SIM_UP]);
        free(s->hosts[i].link[P2P_SIM_DOWN]);
    }
    free(s->hosts);
    free(s->blocks);
    free(s->streams);
    free(s->servers);
    p2p_wipe(&s->rng, sizeof s->rng);
    free(s);
}

uint64_t p2p_sim_now(const p2p_sim *s)
{
    return s->now;
}

int p2p_sim_attach(p2p_sim *s, p2p_host *h, uint16_t port, int nat, p2p_addr *addr)
{
    struct sim_host *slot, *grown;
    struct sim_nat *n = NULL;
    int dir;

    if (h == NULL || find_slot(s, h) != NULL) return P2P_ERR_INVALID;
    if (nat != P2P_SIM_NAT_NONE && nat != P2P_SIM_NAT_CONE && nat != P2P_SIM_NAT_SYMMETRIC)
        return P2P_ERR_INVALID;
    if (s->host_len >= MAX_HOSTS) return P2P_ERR_LIMIT;
    if (nat != P2P_SIM_NAT_NONE && (n = calloc(1, sizeof *n)) == NULL) return P2P_ERR_NOMEM;
    grown = grow_for_one(s->hosts, s->host_len, &s->host_cap, sizeof *grown, 16);
    if (grown == NULL) {
        free(n);
        return P2P_ERR_NOMEM;
    }
    s->hosts = grown;
    slot = &s->hosts[s->host_len];
    memset(slot, 0, sizeof *slot);
    slot->host = h;
    slot->nat = n;
    slot->addr.family = P2P_AF_INET4;
    slot->addr.port = port != 0 ? port : (uint16_t)(DEFAULT_PORT + s->host_len % 61536u);
    if (n != NULL) {
        n->type = nat;
        n->cone_port = slot->addr.port; /* port preservation */
        index_to_private(s->host_len, slot->addr.ip);
    } else {
        index_to_ip(s->host_len, slot->addr.ip);
    }
    for (dir = P2P_SIM_UP; dir <= P2P_SIM_DOWN; dir++) {
        if (!s->default_on[dir]) continue;
        slot->link[dir] = calloc(1, sizeof *slot->link[dir]);
        if (slot->link[dir] == NULL) {
            free(slot->link[P2P_SIM_UP]);
            nat_free(n);
            slot->host = NULL; /* the slot is not counted: the next attach takes it over */
            return P2P_ERR_NOMEM;
        }
        link_configure(slot->link[dir], &s->default_link[dir], s->now);
    }
    refresh(slot);
    s->host_len++;
    if (addr != NULL) *addr = slot->addr;
    return 0;
}

static void streams_of_gone(p2p_sim *s, size_t i);

void p2p_sim_detach(p2p_sim *s, p2p_host *h)
{
    struct sim_host *slot = find_slot(s, h);

    if (slot != NULL) {
        streams_of_gone(s, (size_t)(slot - s->hosts));
        slot->host = NULL;
        slot->deadline = P2P_TIME_NEVER;
        nat_free(slot->nat);
        slot->nat = NULL;
    }
}

/* ---- test hooks ----------------------------------------------------------------------- */

void p2p_sim_set_tap(p2p_sim *s, p2p_sim_tap_fn tap, void *ud)
{
    s->tap = tap;
    s->tap_ud = tap != NULL ? ud : NULL;
}

/* The block between attach indexes a and b, or -1. */
static long block_find(const p2p_sim *s, size_t a, size_t b)
{
    size_t i, lo = a < b ? a : b, hi = a < b ? b : a;

    for (i = 0; i < s->block_len; i++)
        if (s->blocks[i].a == lo && s->blocks[i].b == hi) return (long)i;
    return -1;
}

int p2p_sim_block(p2p_sim *s, const p2p_host *a, const p2p_host *b, int on)
{
    long ia = find_index(s, a), ib = find_index(s, b), k;
    struct sim_block *grown;

    if (ia < 0 || ib < 0 || ia == ib) return P2P_ERR_INVALID;
    k = block_find(s, (size_t)ia, (size_t)ib);
    if (!on) {
        if (k >= 0) s->blocks[k] = s->blocks[--s->block_len];
        return 0;
    }
    if (k >= 0) return 0;
    grown = grow_for_one(s->blocks, s->block_len, &s->block_cap, sizeof *grown, 4);
    if (grown == NULL) return P2P_ERR_NOMEM;
    s->blocks = grown;
    s->blocks[s->block_len].a = (size_t)(ia < ib ? ia : ib);
    s->blocks[s->block_len].b = (size_t)(ia < ib ? ib : ia);
    s->block_len++;
    return 0;
}

/* 1 when a firewall stands between the public addresses from and to. */
static int blocked(const p2p_sim *s, const p2p_addr *from, const p2p_addr *to)
{
    long a, b;

    if (s->block_len == 0) return 0;
    a = ip_to_index(from);
    b = ip_to_index(to);
    return a >= 0 && b >= 0 && block_find(s, (size_t)a, (size_t)b) >= 0;
}

/* ---- moving datagrams ----------------------------------------------------------------- */

static uint64_t copy_delay(p2p_sim *s)
{
    uint64_t base = s->cfg.latency_us + sim_uniform(s, s->cfg.jitter_us);

    /* The extra hold-back spans more than a normal delay, so a held copy is overtaken by
     * later ones, and (with jitter) can itself overtake. */
    if (sim_chance(s, s->cfg.reorder)) {
        s->stats.reordered++;
        base += sim_uniform(s, 2 * (s->cfg.latency_us + s->cfg.jitter_us) + 1000);
    }
    return base;
}

/* Pushes p for time t at stage `stage`. Returns 0, or -1 when the heap cannot grow (p is then
 * freed and counted lost, which hosts must survive). */
static int push_at(p2p_sim *s, struct sim_pkt *p, uint64_t t, int stage)
{
    p->time = t;
    p->stage = stage;
    p->seq = s->next_seq++;
    if (heap_push(s, p) == 0) return 0;
    free(p);
    s->stats.lost++;
    return -1;
}

/* The network model of p2p_sim_config, for a datagram leaving its sender's edge now (its
 * NAT, and its UP link when it has one): loss, duplication, then each copy's delay. Takes
 * p: pushes it, and a clone when duplicated, for their arrival, or frees it. */
static void network(p2p_sim *s, struct sim_pkt *p)
{
    struct sim_pkt *twin = NULL;

    if (sim_chance(s, s->cfg.loss)) {
        s->stats.lost++;
        free(p);
        return;
    }
    if (sim_chance(s, s->cfg.duplicate)) {
        s->stats.duplicated++;
        twin = malloc(sizeof *p + p->len);
        if (twin != NULL)
            memcpy(twin, p, sizeof *p + p->len);
        else
            s->stats.lost++; /* out of memory looks like loss, which hosts must survive */
    }
    (void)push_at(s, p, s->now + copy_delay(s), PKT_ARRIVE);
    if (twin != NULL) (void)push_at(s, twin, s->now + copy_delay(s), PKT_ARRIVE);
}

/* p enters link k of the host at index owner now; it leaves at `stage`. Takes p: queues it
 * (pushes it for the time it leaves the link) or drops it (drop-tail). */
static void link_enter(p2p_sim *s, struct sim_link *k, size_t owner, struct sim_pkt *p, int stage)
{
    uint64_t wire = (uint64_t)p->len + P2P_SIM_LINK_OVERHEAD, waiting, rate = k->cfg.rate_bps;
    uint64_t depart = s->now;

    p->qdelay = 0;
    p->owner = owner;
    if (rate > 0) {
        link_drain(k, s->now);
        waiting = div_up(k->backlog, UBITS_PER_BYTE);
        if (waiting + wire > k->limit) {
            k->stats.queue_drops++;
            s->stats.lost++;
            free(p);
            return;
        }
        if (waiting + wire > k->stats.queue_peak_bytes) k->stats.queue_peak_bytes = waiting + wire;
        p->qdelay = div_up(k->backlog, rate);
        k->backlog += wire * UBITS_PER_BYTE;
        depart += div_up(k->backlog, rate);
    }
    (void)push_at(s, p, depart + k->cfg.delay_us, stage);
}

/* p leaves link k (its delay done): the link's loss is drawn. Returns 1 when p goes on (and
 * counts it), 0 when it was lost (p is then freed). */
static int link_leave(p2p_sim *s, struct sim_link *k, struct sim_pkt *p)
{
    double loss = k->cfg.loss;
    int lost;

    if (k->on) {
        if (k->cfg.burst_enter > 0.0) {
            /* Gilbert-Elliott: this datagram's fate by the state it finds, then the state
             * moves for the next one. */
            if (k->bad) loss = k->cfg.burst_loss;
            lost = sim_chance(s, loss);
            if (k->bad ? sim_chance(s, k->cfg.burst_leave) : sim_chance(s, k->cfg.burst_enter))
                k->bad = !k->bad;
        } else {
            lost = sim_chance(s, loss);
        }
        if (lost) {
            k->stats.loss_drops++;
            s->stats.lost++;
            free(p);
            return 0;
        }
    }
    k->stats.packets++;
    k->stats.bytes += (uint64_t)p->len + P2P_SIM_LINK_OVERHEAD;
    k->stats.queue_delay_sum_us += p->qdelay;
    if (p->qdelay > k->stats.queue_delay_max_us) k->stats.queue_delay_max_us = p->qdelay;
    return 1;
}

static int local_event(p2p_sim *s, size_t owner, int stage, uint64_t at, const p2p_addr *from,
                       const p2p_addr *to, uint32_t sid, uint32_t aux, const uint8_t *data,
                       size_t len);
static int gateway_udp(p2p_sim *s, size_t src, const p2p_addr *to, const uint8_t *buf, size_t len);
static long lan_peer(const p2p_sim *s, size_t src, const p2p_addr *to);
static int port_sock(const struct sim_host *h, uint16_t port);

/* A punch socket's port on a host without NAT: the host's own port + k. */
static uint16_t punch_port(uint16_t base, int k)
{
    uint32_t p = (uint32_t)base + (uint32_t)k;
    return (uint16_t)(p > 65535 ? p - 65535 + NAT_PORT_MIN : p);
}

static int punch_open(const struct sim_host *h, int k)
{
    return k >= 1 && k <= 255 && (h->punch[k / 8] >> (k % 8) & 1);
}

/* Sends a datagram from the host at index `src` into the network. */
static void emit(p2p_sim *s, size_t src, const p2p_addr *to_in, const uint8_t *buf, size_t len)
{
    struct sim_pkt *p;
    struct sim_link *up = s->hosts[src].link[P2P_SIM_UP];
    const p2p_addr *from = &s->hosts[src].addr;
    p2p_addr mapped, own, tocopy = *to_in;
    const p2p_addr *to = &tocopy;
    long peer;

    /* The simulated path is Ethernet-sized: a datagram over 1500 - 48 bytes never arrives,
     * as with a DF-flagged packet on a real path (what path MTU discovery must cope with). */
    if (len > P2P_SIM_PATH_MTU) {
        s->stats.too_big++;
        return;
    }
    s->stats.sent++;
    /* issue 12: a punch socket the host does not hold sends nothing */
    if (to->sock != 0 && !punch_open(&s->hosts[src], to->sock)) {
        s->stats.lost++;
        return;
    }
    /* the gateway on the LAN, and hosts of one LAN domain, are reached directly */
    if (s->hosts[src].has_gw && gateway_udp(s, src, to, buf, len)) return;
    if ((peer = lan_peer(s, src, to)) >= 0) {
        own = s->hosts[src].addr;
        if (to->sock != 0) own.port = punch_port(own.port, to->sock);
        tocopy.sock = (uint8_t)port_sock(&s->hosts[peer], to->port);
        (void)local_event(s, (size_t)peer, PKT_LOCAL, s->now + P2P_SIM_LAN_LATENCY_US, &own, to, 0,
                          0, buf, len);
        return;
    }
    /* Nothing routes into a private network from outside; checked before any draw, so such
     * datagrams do not shift the random stream. */
    if (is_private(to)) {
        s->stats.lost++;
        return;
    }
    /* a firewall on the sender's router drops UDP before its NAT sees it */
    if (s->hosts[src].udp_blocked) {
        s->stats.lost++;
        s->stats.udp_blocked++;
        return;
    }
    if (s->hosts[src].nat == NULL && to->sock != 0) {
        own = s->hosts[src].addr;
        own.port = punch_port(own.port, to->sock);
        from = &own;
    }
    if (s->hosts[src].nat != NULL) {
        if (nat_out(s, src, to, &mapped) != 0) {
            s->stats.lost++;
            return;
        }
        from = &mapped;
    }
    /* A firewall sits between the NATs: the sender's flow was made, the datagram goes no
     * further. Checked before any draw, so blocking does not shift the random stream. */
    if (blocked(s, from, to)) {
        s->stats.lost++;
        return;
    }
    p = malloc(sizeof *p + len);
    if (p == NULL) {
        s->stats.lost++; /* out of memory looks like loss, which hosts must survive */
        return;
    }
    p->from = *from;
    p->from.sock = 0;
    p->to = *to;
    p->to.sock = 0;
    p->len = len;
    if (len > 0) memcpy(p->data, buf, len);
    if (up != NULL && up->on)
        link_enter(s, up, src, p, PKT_UP_OUT);
    else
        network(s, p);
}

static void stream_send(p2p_sim *s, size_t i, uint32_t sid, const uint8_t *buf, size_t len);
static void serve_io(p2p_sim *s, size_t i, const p2p_io *io);
static void lan_send(p2p_sim *s, size_t i, const p2p_addr *to, const uint8_t *buf, size_t len);

static void drain_slot(p2p_sim *s, size_t i)
{
    uint8_t buf[P2P_MAX_PACKET_PROBED];
    p2p_addr to;
    p2p_io io;
    size_t len;
    int more = 1;

    while (more && s->hosts[i].host != NULL) {
        more = 0;
        while (s->hosts[i].host != NULL &&
               (len = p2p_host_next_datagram(s->hosts[i].host, &to, buf, sizeof buf)) > 0) {
            if (len > sizeof buf)
                len = sizeof buf; /* never happens with a correct host; stay in bounds anyway */
            if (to.family == P2P_AF_STREAM)
                stream_send(s, i,
                            (uint32_t)to.ip[0] | (uint32_t)to.ip[1] << 8 |
                                (uint32_t)to.ip[2] << 16 | (uint32_t)to.ip[3] << 24,
                            buf, len);
            else
                emit(s, i, &to, buf, len);
        }
        /* issue 12: the io queue and the LAN socket; their answers may queue datagrams */
        while (s->hosts[i].host != NULL) {
            memset(&io, 0, sizeof io);
            if (p2p_host_next_io(s->hosts[i].host, &io) != 1) break;
            s->stats.io_requests++;
            serve_io(s, i, &io);
            more = 1;
        }
        while (s->hosts[i].host != NULL) {
            memset(&to, 0, sizeof to);
            len = p2p_host_next_lan(s->hosts[i].host, &to, buf, sizeof buf);
            if (len == 0) break;
            lan_send(s, i, &to, buf, len);
            more = 1;
        }
    }
}

void p2p_sim_flush(p2p_sim *s, p2p_host *h)
{
    struct sim_host *slot = find_slot(s, h);

    if (slot != NULL) {
        drain_slot(s, (size_t)(slot - s->hosts));
        refresh(slot);
    }
}

uint64_t p2p_sim_next_time(const p2p_sim *s)
{
    uint64_t next = s->heap_len > 0 ? s->heap[0]->time : P2P_TIME_NEVER;
    size_t i;

    for (i = 0; i < s->host_len; i++)
        if (s->hosts[i].deadline < next) next = s->hosts[i].deadline;
    return next;
}

static int server_deliver(p2p_sim *s, const struct sim_pkt *p);

/* Which socket of a host without NAT a port is: 0, a punch socket, or -1. */
static int port_sock(const struct sim_host *h, uint16_t port)
{
    int k;
    if (port == h->addr.port) return 0;
    for (k = 1; k <= 255; k++)
        if (punch_open(h, k) && punch_port(h->addr.port, k) == port) return k;
    return -1;
}

static void deliver(p2p_sim *s, const struct sim_pkt *p)
{
    struct sim_host *slot;
    p2p_addr from = p->from;
    int sock = 0;

    if (s->server_len > 0 && server_deliver(s, p)) return;
    slot = find_host(s, &p->to);
    if (slot == NULL || (slot->nat == NULL && (sock = port_sock(slot, p->to.port)) < 0)) {
        s->stats.lost++;
        return;
    }
    if (slot->udp_blocked) {
        s->stats.lost++;
        s->stats.udp_blocked++;
        return;
    }
    if (slot->nat != NULL && (sock = nat_in(s, slot, &p->from, p->to.port)) < 0) {
        s->stats.nat_filtered++;
        return;
    }
    if (sock != 0 && !punch_open(slot, sock)) {
        s->stats.lost++; /* that punch socket is closed */
        return;
    }
    s->stats.delivered++;
    slot->touched = 1;
    if (s->tap != NULL) s->tap(s->tap_ud, &p->from, &p->to, p->data, p->len);
    from.sock = (uint8_t)sock;
    (void)p2p_host_recv(slot->host, &from, p->data, p->len, s->now);
}

static void local_deliver(p2p_sim *s, const struct sim_pkt *p);

int p2p_sim_step(p2p_sim *s, uint64_t until)
{
    uint64_t next = p2p_sim_next_time(s), t;
    struct sim_pkt *p;
    struct sim_host *slot;
    size_t i;

    if (next == P2P_TIME_NEVER || next > until) {
        if (until != P2P_TIME_NEVER && until > s->now) s->now = until;
        return 0;
    }
    /* A timer already overdue (a host created with a later clock) runs now, not in the past. */
    t = next > s->now ? next : s->now;
    s->now = t;
    while (s->heap_len > 0 && s->heap[0]->time <= t) {
        p = heap_pop(s);
        if (p->stage >= PKT_LOCAL) {
            local_deliver(s, p);
            free(p);
            continue;
        }
        if (p->stage == PKT_UP_OUT) {
            if (link_leave(s, s->hosts[p->owner].link[P2P_SIM_UP], p)) network(s, p);
            continue;
        }
        if (p->stage == PKT_ARRIVE && (slot = find_host(s, &p->to)) != NULL &&
            slot->link[P2P_SIM_DOWN] != NULL && slot->link[P2P_SIM_DOWN]->on) {
            link_enter(s, slot->link[P2P_SIM_DOWN], (size_t)(slot - s->hosts), p, PKT_DOWN_OUT);
            continue;
        }
        if (p->stage == PKT_DOWN_OUT && !link_leave(s, s->hosts[p->owner].link[P2P_SIM_DOWN], p))
            continue;
        deliver(s, p);
        free(p);
    }
    for (i = 0; i < s->host_len; i++) {
        slot = &s->hosts[i];
        if (slot->host != NULL && slot->deadline <= t) {
            slot->touched = 1;
            (void)p2p_host_on_timeout(slot->host, t);
        }
    }
    for (i = 0; i < s->host_len; i++) {
        slot = &s->hosts[i];
        if (!slot->touched) continue;
        slot->touched = 0;
        drain_slot(s, i);
        refresh(slot);
    }
    return 1;
}

int p2p_sim_inject(p2p_sim *s, const p2p_host *h, const p2p_addr *to, const uint8_t *data,
                   size_t len)
{
    long i = find_index(s, h);

    if (i < 0 || to == NULL || (data == NULL && len > 0)) return P2P_ERR_INVALID;
    emit(s, (size_t)i, to, data, len);
    return len > P2P_SIM_PATH_MTU ? P2P_ERR_TOO_BIG : 0;
}

void p2p_sim_stats_get(const p2p_sim *s, p2p_sim_stats *out)
{
    *out = s->stats;
    out->in_flight = s->heap_len;
}

/* ---- issue 12: the io queue ----------------------------------------------------------- */

static void sid_addr(uint32_t sid, p2p_addr *a)
{
    memset(a, 0, sizeof *a);
    a->family = P2P_AF_STREAM;
    a->ip[0] = (uint8_t)sid;
    a->ip[1] = (uint8_t)(sid >> 8);
    a->ip[2] = (uint8_t)(sid >> 16);
    a->ip[3] = (uint8_t)(sid >> 24);
}

/* Queues an io event for host `owner` at time `at` (no randomness). Returns 0 or -1. */
static int local_event(p2p_sim *s, size_t owner, int stage, uint64_t at, const p2p_addr *from,
                       const p2p_addr *to, uint32_t sid, uint32_t aux, const uint8_t *data,
                       size_t len)
{
    struct sim_pkt *p = malloc(sizeof *p + len);

    if (p == NULL) {
        s->stats.lost++;
        return -1;
    }
    memset(p, 0, sizeof *p);
    p->owner = owner;
    p->sid = sid;
    p->aux = aux;
    if (from != NULL) p->from = *from;
    if (to != NULL) p->to = *to;
    p->len = len;
    if (len > 0) memcpy(p->data, data, len);
    return push_at(s, p, at, stage);
}

/* The host a datagram to `to` reaches within src's LAN domain (its bound address), or -1. */
static long lan_peer(const p2p_sim *s, size_t src, const p2p_addr *to)
{
    size_t i;

    if (s->hosts[src].lan_domain == 0 || to->family != P2P_AF_INET4) return -1;
    for (i = 0; i < s->host_len; i++) {
        const struct sim_host *h = &s->hosts[i];
        if (h->host == NULL || h->lan_domain != s->hosts[src].lan_domain) continue;
        if (memcmp(h->addr.ip, to->ip, 4) == 0 && port_sock(h, to->port) >= 0) return (long)i;
    }
    return -1;
}

/* A datagram to the host's gateway (lan:5351, lan:1900, 239.255.255.250:1900): answered on
 * the LAN. Returns 1 when it was for the gateway. */
static int gateway_udp(p2p_sim *s, size_t src, const p2p_addr *to, const uint8_t *buf, size_t len)
{
    struct sim_host *h = &s->hosts[src];
    static const uint8_t ssdp[4] = {239, 255, 255, 250};
    uint8_t out[P2P_MAX_PACKET_PROBED];
    p2p_addr from = h->addr, rfrom;
    size_t n;

    if (to->family != P2P_AF_INET4) return 0;
    if (!((memcmp(to->ip, h->gw.lan.ip, 4) == 0 && (to->port == 5351 || to->port == 1900)) ||
          (memcmp(to->ip, ssdp, 4) == 0 && to->port == 1900)))
        return 0;
    if (to->sock != 0) from.port = punch_port(from.port, to->sock);
    memset(&rfrom, 0, sizeof rfrom);
    n = h->gw.udp != NULL
            ? h->gw.udp(h->gw.ud, &from, to, buf, len, s->now, out, sizeof out, &rfrom)
            : 0;
    if (n > 0 && n <= sizeof out) {
        rfrom.sock = 0;
        from.sock = to->sock;
        (void)local_event(s, src, PKT_LOCAL, s->now + 2 * P2P_SIM_LAN_LATENCY_US, &rfrom, &from, 0,
                          0, out, n);
    }
    return 1;
}

/* A datagram to a server's address: its answer goes back through the network model. */
static int server_deliver(p2p_sim *s, const struct sim_pkt *p)
{
    uint8_t out[P2P_SIM_PATH_MTU];
    p2p_addr rfrom;
    struct sim_pkt *q;
    size_t i, k, n;

    for (i = 0; i < s->server_len; i++) {
        p2p_sim_server *v = &s->servers[i];
        for (k = 0; k < v->naddr; k++) {
            if (!p2p_addr_equal(&v->addr[k], &p->to)) continue;
            s->stats.delivered++;
            if (s->tap != NULL) s->tap(s->tap_ud, &p->from, &p->to, p->data, p->len);
            memset(&rfrom, 0, sizeof rfrom);
            n = v->udp(v->ud, &p->from, &p->to, p->data, p->len, out, sizeof out, &rfrom);
            if (n == 0 || n > sizeof out) return 1;
            s->stats.sent++;
            if (blocked(s, &rfrom, &p->from) || (q = malloc(sizeof *q + n)) == NULL) {
                s->stats.lost++;
                return 1;
            }
            memset(q, 0, sizeof *q);
            q->from = rfrom;
            q->from.sock = 0;
            q->to = p->from;
            q->len = n;
            memcpy(q->data, out, n);
            network(s, q);
            return 1;
        }
    }
    return 0;
}

static struct sim_stream *stream_by_sid(p2p_sim *s, size_t host, uint32_t sid, int *end)
{
    size_t i;
    int k;

    for (i = 0; i < s->stream_len; i++) {
        struct sim_stream *st = &s->streams[i];
        if (!st->live) continue;
        for (k = 0; k < 2; k++)
            if (st->end[k] == host && st->sid[k] == sid) {
                *end = k;
                return st;
            }
    }
    return NULL;
}

static void stream_send(p2p_sim *s, size_t i, uint32_t sid, const uint8_t *buf, size_t len)
{
    int end;
    struct sim_stream *st = stream_by_sid(s, i, sid, &end);
    uint64_t at;
    p2p_addr from;

    if (st == NULL) {
        s->stats.lost++;
        return;
    }
    at = s->now + s->cfg.latency_us;
    if (at < st->last[!end]) at = st->last[!end];
    st->last[!end] = at;
    s->stats.stream_datagrams++;
    sid_addr(st->sid[!end], &from);
    (void)local_event(s, st->end[!end], PKT_STREAM, at, &from, NULL, st->sid[!end], 0, buf, len);
}

/* One end closes (or is gone): the other hears stream_down one latency later. */
static void stream_end(p2p_sim *s, struct sim_stream *st, int closer)
{
    uint64_t at = s->now + s->cfg.latency_us;
    if (at < st->last[!closer]) at = st->last[!closer];
    st->live = 0;
    (void)local_event(s, st->end[!closer], PKT_STREAM_DOWN, at, NULL, NULL, st->sid[!closer], 0,
                      NULL, 0);
}

static void streams_of_gone(p2p_sim *s, size_t i)
{
    size_t k;
    for (k = 0; k < s->stream_len; k++) {
        struct sim_stream *st = &s->streams[k];
        if (st->live && (st->end[0] == i || st->end[1] == i)) stream_end(s, st, st->end[1] == i);
    }
}

static void io_answer_now(p2p_sim *s, size_t i, p2p_io_result *r)
{
    struct sim_host *h = &s->hosts[i];
    if (h->host == NULL) return;
    (void)p2p_host_io_done(h->host, r, s->now);
    h->touched = 1;
}

static void tcp_open(p2p_sim *s, size_t i, const p2p_io *io)
{
    struct sim_host *srv = io->addr.family == P2P_AF_INET4 ? find_host(s, &io->addr) : NULL;
    struct sim_stream *st = NULL, *grown;
    uint64_t lat = s->cfg.latency_us;
    p2p_addr from_pub, srv_addr;
    size_t k;

    if (srv == NULL || srv->nat != NULL || srv->tcp_port == 0 || srv->tcp_port != io->addr.port) {
        (void)local_event(s, i, PKT_STREAM_DOWN, s->now + 2 * lat, NULL, NULL, io->id, 0, NULL, 0);
        return;
    }
    for (k = 0; k < s->stream_len && st == NULL; k++)
        if (!s->streams[k].live) st = &s->streams[k];
    if (st == NULL) {
        grown = grow_for_one(s->streams, s->stream_len, &s->stream_cap, sizeof *grown, 8);
        if (grown == NULL) {
            (void)local_event(s, i, PKT_STREAM_DOWN, s->now + 2 * lat, NULL, NULL, io->id, 0, NULL,
                              0);
            return;
        }
        s->streams = grown;
        st = &s->streams[s->stream_len++];
    }
    memset(st, 0, sizeof *st);
    st->live = 1;
    st->end[0] = i;
    st->end[1] = (size_t)(srv - s->hosts);
    st->sid[0] = io->id;
    st->sid[1] = 0x80000000u | ++s->next_sid;
    st->last[1] = s->now + lat;
    st->last[0] = s->now + 2 * lat;
    /* the server sees the client's public address (its NAT's, with some port) */
    (void)p2p_sim_public_addr(s, s->hosts[i].host, &from_pub);
    if (from_pub.port == 0) from_pub.port = 40000;
    srv_addr = io->addr;
    (void)local_event(s, st->end[1], PKT_STREAM_UP, s->now + lat, &from_pub, NULL, st->sid[1], 1,
                      NULL, 0);
    (void)local_event(s, i, PKT_STREAM_UP, s->now + 2 * lat, &srv_addr, NULL, st->sid[0], 0, NULL,
                      0);
}

static void serve_io(p2p_sim *s, size_t i, const p2p_io *io)
{
    struct sim_host *h = &s->hosts[i];
    p2p_io_result r;
    int end, k;
    struct sim_stream *st;

    memset(&r, 0, sizeof r);
    r.kind = io->kind;
    r.id = io->id;
    switch (io->kind) {
    case P2P_IO_GATEWAY:
        if (h->has_gw) {
            r.addr = h->gw.lan;
            r.addr.port = 0;
            r.addr.sock = 0;
            r.local = h->addr;
        } else {
            r.status = P2P_ERR_IO;
        }
        io_answer_now(s, i, &r);
        break;
    case P2P_IO_TCP_OPEN: tcp_open(s, i, io); break;
    case P2P_IO_TCP_CLOSE:
        if ((st = stream_by_sid(s, i, io->id, &end)) != NULL) stream_end(s, st, end);
        break;
    case P2P_IO_HTTP: {
        uint8_t *out = malloc(16384);
        size_t n = 0;
        p2p_addr status;
        memset(&status, 0, sizeof status);
        if (out != NULL && h->has_gw && h->gw.http != NULL && io->addr.family == P2P_AF_INET4 &&
            memcmp(io->addr.ip, h->gw.lan.ip, 4) == 0 && io->addr.port == 5000)
            n = h->gw.http(h->gw.ud, &h->addr, io->data, io->len, s->now, out, 16384);
        if (n == 0 || n > 16384) {
            n = 0;
            status.port = 1; /* failed */
        }
        (void)local_event(s, i, PKT_IO, s->now + 2 * P2P_SIM_LAN_LATENCY_US, &status, NULL, io->id,
                          P2P_IO_HTTP, out, n);
        free(out);
        break;
    }
    case P2P_IO_PUNCH_OPEN:
        for (k = 1; k <= 255 && r.n < io->n; k++) {
            if (punch_open(h, k)) continue;
            h->punch[k / 8] |= (uint8_t)(1u << (k % 8));
            r.socks[r.n++] = (uint8_t)k;
        }
        if (r.n == 0) r.status = P2P_ERR_IO;
        io_answer_now(s, i, &r);
        break;
    case P2P_IO_PUNCH_CLOSE:
        if (io->addr.sock == 0)
            memset(h->punch, 0, sizeof h->punch);
        else
            h->punch[io->addr.sock / 8] &= (uint8_t) ~(1u << (io->addr.sock % 8));
        break;
    case P2P_IO_LAN_START:
        h->lan_port = io->n != 0 ? io->n : P2P_LAN_PORT;
        r.n = h->lan_domain != 0 ? 1 : 0;
        io_answer_now(s, i, &r);
        break;
    case P2P_IO_LAN_STOP: h->lan_port = 0; break;
    default:
        r.status = P2P_ERR_IO;
        io_answer_now(s, i, &r);
        break;
    }
}

static void lan_send(p2p_sim *s, size_t i, const p2p_addr *to, const uint8_t *buf, size_t len)
{
    struct sim_host *h = &s->hosts[i];
    p2p_addr from = h->addr;
    size_t k;
    int group, bcast;

    if (h->lan_port == 0 || h->lan_domain == 0 || to->family != P2P_AF_INET4) return;
    group = to->ip[0] >= 224 && to->ip[0] <= 239;
    bcast = to->ip[3] == 255;
    from.port = h->lan_port;
    for (k = 0; k < s->host_len; k++) {
        struct sim_host *o = &s->hosts[k];
        if (o->host == NULL || o->lan_domain != h->lan_domain || o->lan_port != to->port) continue;
        if (!group && !bcast && memcmp(o->addr.ip, to->ip, 4) != 0) continue;
        (void)local_event(s, k, PKT_LAN, s->now + P2P_SIM_LAN_LATENCY_US, &from, to, 0, 0, buf,
                          len);
    }
}

/* An io event is due. */
static void local_deliver(p2p_sim *s, const struct sim_pkt *p)
{
    struct sim_host *h = p->owner < s->host_len ? &s->hosts[p->owner] : NULL;
    p2p_io_result r;

    if (h == NULL || h->host == NULL) return;
    h->touched = 1;
    switch (p->stage) {
    case PKT_LOCAL:
        if (p->to.sock != 0 && !punch_open(h, p->to.sock)) return;
        {
            p2p_addr from = p->from;
            from.sock = p->to.sock;
            s->stats.delivered++;
            if (s->tap != NULL) s->tap(s->tap_ud, &p->from, &p->to, p->data, p->len);
            (void)p2p_host_recv(h->host, &from, p->data, p->len, s->now);
        }
        break;
    case PKT_LAN:
        if (h->lan_port == 0) return;
        s->stats.lan_datagrams++;
        (void)p2p_host_recv_lan(h->host, &p->from, p->data, p->len, s->now);
        break;
    case PKT_STREAM: {
        int end;
        if (stream_by_sid(s, p->owner, p->sid, &end) == NULL) return;
        (void)p2p_host_recv(h->host, &p->from, p->data, p->len, s->now);
        break;
    }
    case PKT_STREAM_UP: {
        int end;
        struct sim_stream *st = stream_by_sid(s, p->owner, p->sid, &end);
        if (st == NULL) {
            if (!p->aux) (void)p2p_host_stream_down(h->host, p->sid, s->now);
            return;
        }
        if (p2p_host_stream_up(h->host, p->sid, &p->from, (int)p->aux, s->now) != 0)
            stream_end(s, st, end);
        break;
    }
    case PKT_STREAM_DOWN: (void)p2p_host_stream_down(h->host, p->sid, s->now); break;
    case PKT_IO:
        memset(&r, 0, sizeof r);
        r.kind = (p2p_io_kind)p->aux;
        r.id = p->sid;
        r.status = p->from.port ? P2P_ERR_IO : 0;
        r.data = p->len ? p->data : NULL;
        r.len = p->len;
        (void)p2p_host_io_done(h->host, &r, s->now);
        break;
    default: break;
    }
}

int p2p_sim_block_udp(p2p_sim *s, const p2p_host *h, int on)
{
    struct sim_host *slot = find_slot(s, h);
    if (slot == NULL) return P2P_ERR_INVALID;
    slot->udp_blocked = on != 0;
    return 0;
}

int p2p_sim_nat_ports(p2p_sim *s, const p2p_host *h, uint16_t lo, uint16_t hi)
{
    struct sim_host *slot = find_slot(s, h);
    if (slot == NULL || slot->nat == NULL || lo == 0 || hi < lo || hi - lo + 1 < 1024)
        return P2P_ERR_INVALID;
    slot->nat->port_lo = lo;
    slot->nat->port_hi = hi;
    return 0;
}

int p2p_sim_listen_tcp(p2p_sim *s, const p2p_host *h, uint16_t port, int on)
{
    struct sim_host *slot = find_slot(s, h);
    if (slot == NULL) return P2P_ERR_INVALID;
    slot->tcp_port = on ? (port != 0 ? port : slot->addr.port) : 0;
    return 0;
}

int p2p_sim_set_lan(p2p_sim *s, const p2p_host *h, uint16_t domain)
{
    struct sim_host *slot = find_slot(s, h);
    if (slot == NULL) return P2P_ERR_INVALID;
    slot->lan_domain = domain;
    return 0;
}

int p2p_sim_set_gateway(p2p_sim *s, const p2p_host *h, const p2p_sim_gateway *gw)
{
    struct sim_host *slot = find_slot(s, h);
    if (slot == NULL) return P2P_ERR_INVALID;
    slot->has_gw = gw != NULL;
    if (gw != NULL) slot->gw = *gw;
    return 0;
}

int p2p_sim_add_server(p2p_sim *s, const p2p_sim_server *srv)
{
    p2p_sim_server *grown;
    if (srv == NULL || srv->udp == NULL || srv->naddr == 0 || srv->naddr > 4)
        return P2P_ERR_INVALID;
    grown = grow_for_one(s->servers, s->server_len, &s->server_cap, sizeof *grown, 2);
    if (grown == NULL) return P2P_ERR_NOMEM;
    s->servers = grown;
    s->servers[s->server_len++] = *srv;
    return 0;
}
