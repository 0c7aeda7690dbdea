/*
 * p2p_portmap.c - the port-mapping state machine of p2p_portmap.h (design12 section 4.1).
 *
 *   START --GATEWAY io--> GATEWAY --none--> IDLE (0 packets)
 *                             | gw
 *                             v
 *   PCP (3 tries) --ok--> MAPPED (renew at lifetime / 2)
 *     | NAT-PMP "unsupported version"      ^
 *     v                                    |
 *   NATPMP (3 tries) --ok--> NATPMP_ADDR --+   (the external address: NAT-PMP's map reply has none)
 *     | silence / refusal                  |
 *   SSDP (2 unicast + 1 multicast) --LOCATION on gw--> DESC --> ADD --> GETIP --+
 *     | silence
 *   IDLE: nothing until p2p_host_network_changed
 *
 * The codecs are the base layer's (p2p_pmp.h, p2p_upnp.h); this file only decides what to
 * send when, and what to believe.
 */
#include "p2p_portmap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p2p_guard.h"
#include "p2p_pmp.h"
#include "p2p_upnp.h"

#define MS UINT64_C(1000)
#define SEC UINT64_C(1000000)

enum {
    PM_START,       /* ask the driver for the gateway at the next timer */
    PM_GATEWAY,     /* waiting for the driver's answer */
    PM_PCP,         /* PCP MAP tries */
    PM_NATPMP,      /* NAT-PMP map tries */
    PM_NATPMP_ADDR, /* NAT-PMP external address tries (after a granted map) */
    PM_SSDP,        /* M-SEARCH tries */
    PM_DESC,        /* HTTP: the device description */
    PM_ADD,         /* HTTP: AddPortMapping */
    PM_GETIP,       /* HTTP: GetExternalIPAddress */
    PM_MAPPED,      /* holding a mapping */
    PM_IDLE,        /* nothing more on this network */
    PM_CLOSED
};

enum { VIA_NONE, VIA_PCP, VIA_NATPMP, VIA_UPNP };

/* Try schedules: offsets from the step's start; the last entry is when silence is final. */
static const uint64_t PCP_AT[] = {0, 500 * MS, 1500 * MS, 3000 * MS};
static const uint64_t PMP_AT[] = {0, 250 * MS, 750 * MS, 1500 * MS};
static const uint64_t SSDP_AT[] = {0, 1000 * MS, 2000 * MS, 3500 * MS};
#define TRIES 3
#define RENEW_FAILS 3      /* renewal rounds without an answer before the mapping is dropped */
#define UPNP_CONFLICTS 3   /* 718 ConflictInMappingEntry: try P+1 .. P+3 */
#define HTTP_PER_NETWORK 8 /* HTTP requests per network at most */

static const uint8_t SSDP_GROUP[4] = {239, 255, 255, 250};

/* PCP and NAT-PMP facts (RFC 6887 sections 7, 11; RFC 6886 section 3) the replies are checked
 * against. */
#define PCP_VERSION 2
#define PMP_R 0x80 /* the response bit of the opcode (NAT-PMP: 128 + opcode) */
#define PCP_OP_MAP 1
#define PMP_OP_MAP_UDP 1
#define PMP_UNSUPP_VERSION 1

struct p2p_portmap {
    int state, via;
    uint32_t io_id;      /* the request we wait for (GATEWAY, HTTP); 0: none */
    uint64_t step_at;    /* when the current step started */
    uint64_t next_at;    /* the next timer; P2P_TIME_NEVER: none */
    uint8_t tries;       /* datagrams sent in this step */
    uint8_t renewing;    /* MAPPED's renewal round is running (PCP/NAT-PMP states) */
    uint8_t renew_fails; /* renewal rounds that got no answer */
    uint8_t remapped;    /* the one fresh start after losing a mapping was used */
    uint8_t conflicts;   /* UPnP 718s */
    uint8_t lease0;      /* UPnP 725: ask for a permanent lease */
    uint8_t http_sent;   /* HTTP requests on this network */
    p2p_addr gw, local;  /* the gateway (port 0) and our source address towards it */
    uint16_t port;       /* our UDP port: the internal port to map */
    uint8_t nonce[12];   /* PCP: kept for renewals and the delete */
    /* the mapping */
    int has_map, advertised;
    p2p_addr ext; /* external address and port */
    p2p_addr adv; /* what the node advertises (advertised 1) */
    uint32_t lifetime;
    uint64_t granted_at, expires;
    /* the gateway's epoch (RFC 6887 section 8.5, RFC 6886 section 3.6) */
    int has_epoch;
    uint32_t epoch;
    uint64_t epoch_at;
    /* UPnP */
    p2p_addr http;  /* the LOCATION's host (the gateway's IP) and port */
    char host[64];  /* "a.b.c.d:port" for the Host header */
    char ctl[128];  /* control URL path */
    char svc[128];  /* service type */
    uint16_t eport; /* the external port asked for */
};

static struct p2p_portmap *pm_of(const p2p_host *h)
{
    return h->portmap;
}

int p2p_portmap_init(p2p_host *h, const p2p_config *cfg, uint64_t now)
{
    h->portmap = NULL;
    if (cfg->portmap_off) return 0;
    struct p2p_portmap *m = calloc(1, sizeof *m);
    if (!m) return P2P_ERR_NOMEM;
    m->state = PM_START;
    m->next_at = now;
    h->portmap = m;
    return 0;
}

void p2p_portmap_free(p2p_host *h)
{
    free(h->portmap);
    h->portmap = NULL;
}

uint64_t p2p_portmap_deadline(const p2p_host *h)
{
    const struct p2p_portmap *m = pm_of(h);
    return m ? m->next_at : P2P_TIME_NEVER;
}

/* ---- sending ---------------------------------------------------------------------------- */

/* Queues a datagram for the gateway (or the SSDP group). The gateway is not learned from the
 * network (the driver read it from the route table), so it bypasses the guard's probe
 * allowance (p2p_tx_push_own); this module bounds its own packets instead (6 per network to a
 * silent gateway, PROTOCOL.md section 8.7). Returns 1 when queued. */
static int send_udp(p2p_host *h, const p2p_addr *to, const uint8_t *b, size_t len)
{
    if (!len || p2p_tx_push_own(h, to, b, len) != 0) return 0;
    h->stats.portmap_sent++;
    return 1;
}

static void gw_port(const struct p2p_portmap *m, p2p_addr *to, uint16_t port)
{
    *to = m->gw;
    to->sock = 0;
    to->port = port;
}

static void send_pcp(p2p_host *h, struct p2p_portmap *m, uint32_t lifetime)
{
    uint8_t b[P2P_PCP_MAP_LEN];
    p2p_addr to;
    gw_port(m, &to, P2P_PMP_PORT);
    uint16_t hint = m->has_map ? m->ext.port : m->port;
    send_udp(h, &to, b, p2p_pcp_map(b, sizeof b, m->nonce, &m->local, m->port, hint, lifetime));
}

static void send_natpmp(p2p_host *h, struct p2p_portmap *m, uint32_t lifetime)
{
    uint8_t b[P2P_NATPMP_MAP_LEN];
    p2p_addr to;
    gw_port(m, &to, P2P_PMP_PORT);
    uint16_t hint = lifetime == 0 ? 0 : m->has_map ? m->ext.port : m->port;
    send_udp(h, &to, b, p2p_natpmp_map(b, sizeof b, m->port, hint, lifetime));
}

/* NAT-PMP's external address request (RFC 6886 section 3.2): version 0, opcode 0. */
static void send_natpmp_addr(p2p_host *h, struct p2p_portmap *m)
{
    static const uint8_t b[2] = {0, 0};
    p2p_addr to;
    gw_port(m, &to, P2P_PMP_PORT);
    send_udp(h, &to, b, sizeof b);
}

static void send_ssdp(p2p_host *h, struct p2p_portmap *m, int multicast)
{
    uint8_t b[256];
    p2p_addr to;
    size_t n = p2p_ssdp_msearch(b, sizeof b);
    if (multicast) {
        gw_port(m, &to, P2P_SSDP_PORT);
        memcpy(to.ip, SSDP_GROUP, 4);
        if (send_udp(h, &to, b, n)) return;
    }
    gw_port(m, &to, P2P_SSDP_PORT);
    send_udp(h, &to, b, n);
}

/* Hands one HTTP request to the driver; returns 0 or -1 (refused, over the per-network cap). */
static int send_http(p2p_host *h, struct p2p_portmap *m, const uint8_t *req, size_t len,
                     uint64_t now, int awaited)
{
    if (!len || m->http_sent >= HTTP_PER_NETWORK) return -1;
    p2p_io io;
    memset(&io, 0, sizeof io);
    io.kind = P2P_IO_HTTP;
    io.id = p2p_io_id(h);
    io.addr = m->http;
    snprintf(io.host, sizeof io.host, "%s", m->host);
    if (p2p_io_push(h, &io, req, len) != 0) return -1;
    m->http_sent++;
    h->stats.portmap_sent++;
    if (awaited) {
        m->io_id = io.id;
        m->next_at = now + P2P_PORTMAP_IO_WAIT_US;
    }
    return 0;
}

static int soap(p2p_host *h, struct p2p_portmap *m, int action, uint64_t now, int awaited)
{
    uint8_t req[2048];
    uint32_t lease = m->lease0 ? 0 : P2P_PORTMAP_LEASE;
    size_t n = p2p_upnp_request(req, sizeof req, action, m->svc, m->host, m->ctl, m->eport, m->port,
                                &m->local, lease);
    return send_http(h, m, req, n, now, awaited);
}

/* ---- steps ------------------------------------------------------------------------------- */

static void step(struct p2p_portmap *m, int state, uint64_t now)
{
    m->state = state;
    m->step_at = now;
    m->tries = 0;
    m->next_at = now;
    m->io_id = 0;
}

static void go_idle(struct p2p_portmap *m)
{
    m->state = PM_IDLE;
    m->next_at = P2P_TIME_NEVER;
    m->io_id = 0;
}

/* Forgets the mapping and what it made the node say. */
static void unmap(p2p_host *h, struct p2p_portmap *m)
{
    if (m->advertised) p2p_own_remove_kind(h, P2P_ADDR_MAPPED);
    m->has_map = 0;
    m->advertised = 0;
    m->via = VIA_NONE;
    m->renewing = 0;
    m->renew_fails = 0;
}

/* A mapping was granted: ext (address and port) for lifetime seconds. */
static void mapped(p2p_host *h, struct p2p_portmap *m, int via, const p2p_addr *ext,
                   uint32_t lifetime, uint64_t now)
{
    if (m->advertised && !p2p_addr_equal(&m->adv, ext)) {
        p2p_own_remove_kind(h, P2P_ADDR_MAPPED);
        m->advertised = 0;
    }
    m->has_map = 1;
    m->via = via;
    m->ext = *ext;
    m->ext.sock = 0;
    m->lifetime = lifetime;
    m->granted_at = now;
    m->expires = lifetime ? now + (uint64_t)lifetime * SEC : P2P_TIME_NEVER;
    m->renewing = 0;
    m->renew_fails = 0;
    m->state = PM_MAPPED;
    m->io_id = 0;
    m->http_sent = 0;
    /* renew at half the lifetime; a permanent UPnP lease is renewed hourly all the same, so
     * that a router that forgot it (reboot) learns it again */
    uint64_t half = lifetime ? (uint64_t)lifetime * SEC / 2 : (uint64_t)P2P_PORTMAP_LEASE * SEC;
    m->next_at = now + half;
    /* a private or CGNAT external address (double NAT) helps nobody outside: not advertised */
    if (p2p_addr_scope(&m->ext) == P2P_SCOPE_PUBLIC) {
        if (p2p_own_add_kind(h, &m->ext, P2P_ADDR_MAPPED, m->expires) >= 0) {
            m->advertised = 1;
            m->adv = m->ext;
        }
        /* our port now leaves the NAT as the same external port to everyone */
        p2p_own_mapping(h, P2P_MAPPING_INDEPENDENT, P2P_MAPSRC_PORTMAP);
    }
}

/* The mapping could not be kept: drop it; start over once, then stay idle. */
static void lost(p2p_host *h, struct p2p_portmap *m, uint64_t now)
{
    unmap(h, m);
    if (!m->remapped) {
        m->remapped = 1;
        p2p_rng_bytes(&h->rng, m->nonce, sizeof m->nonce);
        step(m, PM_PCP, now);
    } else {
        go_idle(m);
    }
}

/* The gateway's epoch (RFC 6887 section 8.5): 1 when it shows the gateway lost its state. */
static int epoch_reset(struct p2p_portmap *m, uint32_t epoch, uint64_t now)
{
    int reset = 0;
    if (m->has_epoch) {
        uint64_t client = (now - m->epoch_at) / SEC;
        if ((uint64_t)epoch + 1 < m->epoch) {
            reset = 1;
        } else {
            uint64_t server = epoch >= m->epoch ? epoch - m->epoch : 0;
            if (client + 2 < server - server / 16 || server + 2 < client - client / 16) reset = 1;
        }
    }
    m->has_epoch = 1;
    m->epoch = epoch;
    m->epoch_at = now;
    return reset;
}

static void start_ssdp(p2p_host *h, struct p2p_portmap *m, uint64_t now)
{
    (void)h;
    step(m, PM_SSDP, now);
}

/* ---- timers ------------------------------------------------------------------------------ */

/* One step of tries: sends when due; returns 1 when the step's silence is final. */
static int tries_due(p2p_host *h, struct p2p_portmap *m, const uint64_t at[4], uint64_t now,
                     void (*send)(p2p_host *, struct p2p_portmap *, int))
{
    while (m->tries < TRIES && now >= m->step_at + at[m->tries]) {
        send(h, m, m->tries);
        m->tries++;
    }
    if (m->tries < TRIES) {
        m->next_at = m->step_at + at[m->tries];
        return 0;
    }
    if (now >= m->step_at + at[TRIES]) return 1;
    m->next_at = m->step_at + at[TRIES];
    return 0;
}

static void try_pcp(p2p_host *h, struct p2p_portmap *m, int i)
{
    (void)i;
    send_pcp(h, m, P2P_PORTMAP_LIFETIME);
}

static void try_natpmp(p2p_host *h, struct p2p_portmap *m, int i)
{
    (void)i;
    send_natpmp(h, m, P2P_PORTMAP_LIFETIME);
}

static void try_natpmp_addr(p2p_host *h, struct p2p_portmap *m, int i)
{
    (void)i;
    send_natpmp_addr(h, m);
}

static void try_ssdp(p2p_host *h, struct p2p_portmap *m, int i)
{
    send_ssdp(h, m, i == 2);
}

/* A renewal round got no answer. */
static void renew_failed(p2p_host *h, struct p2p_portmap *m, uint64_t now)
{
    m->renewing = 0;
    m->state = PM_MAPPED;
    if (++m->renew_fails >= RENEW_FAILS || (m->expires != P2P_TIME_NEVER && now >= m->expires)) {
        lost(h, m, now);
        return;
    }
    /* again after an eighth of the lifetime, before it runs out */
    uint64_t gap = (uint64_t)(m->lifetime ? m->lifetime : P2P_PORTMAP_LEASE) * SEC / 8;
    m->next_at = now + gap;
    if (m->expires != P2P_TIME_NEVER && m->next_at >= m->expires) m->next_at = m->expires - 1;
}

void p2p_portmap_timer(p2p_host *h, uint64_t now)
{
    struct p2p_portmap *m = pm_of(h);
    if (!m || now < m->next_at) return;
    switch (m->state) {
    case PM_START: {
        p2p_io io;
        memset(&io, 0, sizeof io);
        io.kind = P2P_IO_GATEWAY;
        io.id = p2p_io_id(h);
        if (p2p_io_push(h, &io, NULL, 0) != 0) {
            go_idle(m);
            break;
        }
        m->state = PM_GATEWAY;
        m->io_id = io.id;
        m->next_at = now + P2P_PORTMAP_IO_WAIT_US;
        break;
    }
    case PM_GATEWAY:
    case PM_DESC:
    case PM_ADD:
    case PM_GETIP:
        /* the driver never answered */
        if (m->has_map) {
            renew_failed(h, m, now);
        } else {
            go_idle(m);
        }
        break;
    case PM_PCP:
    case PM_NATPMP:
        /* out of tries: a renewal failed, or on to UPnP */
        if (!tries_due(h, m, m->state == PM_PCP ? PCP_AT : PMP_AT, now,
                       m->state == PM_PCP ? try_pcp : try_natpmp))
            break;
        if (m->renewing) {
            renew_failed(h, m, now);
        } else {
            start_ssdp(h, m, now);
            p2p_portmap_timer(h, now);
        }
        break;
    case PM_NATPMP_ADDR:
        if (tries_due(h, m, PMP_AT, now, try_natpmp_addr)) {
            /* no address to advertise: a mapping we held is lost, a new one stays unused */
            if (m->has_map) {
                lost(h, m, now);
            } else {
                go_idle(m);
            }
        }
        break;
    case PM_SSDP:
        if (tries_due(h, m, SSDP_AT, now, try_ssdp)) go_idle(m);
        break;
    case PM_MAPPED:
        /* time to renew */
        m->renewing = 1;
        if (m->via == VIA_PCP || m->via == VIA_NATPMP) {
            step(m, m->via == VIA_PCP ? PM_PCP : PM_NATPMP, now);
            p2p_portmap_timer(h, now);
        } else {
            m->state = PM_ADD;
            if (soap(h, m, P2P_UPNP_ADD, now, 1) != 0) renew_failed(h, m, now);
        }
        break;
    default: m->next_at = P2P_TIME_NEVER; break;
    }
}

/* ---- the driver's answers ---------------------------------------------------------------- */

static void on_gateway(p2p_host *h, struct p2p_portmap *m, const p2p_io_result *r, uint64_t now)
{
    if (r->status != 0 || r->addr.family != P2P_AF_INET4 || r->local.family != P2P_AF_INET4) {
        go_idle(m); /* no gateway: nothing is sent on this network */
        return;
    }
    m->gw = r->addr;
    m->gw.port = 0;
    m->gw.sock = 0;
    m->local = r->local;
    m->local.sock = 0;
    m->port = r->local.port;
    if (!m->port) {
        /* the driver did not say: our first local address's port */
        for (size_t i = 0; i < h->nlocal && !m->port; i++) m->port = h->addrs[i].port;
    }
    if (!m->port) {
        go_idle(m);
        return;
    }
    m->local.port = m->port;
    p2p_rng_bytes(&h->rng, m->nonce, sizeof m->nonce);
    step(m, PM_PCP, now);
    p2p_portmap_timer(h, now);
}

static void on_http(p2p_host *h, struct p2p_portmap *m, const p2p_io_result *r, uint64_t now)
{
    int http = 0, err = 0;
    p2p_addr ext;
    memset(&ext, 0, sizeof ext);
    int ok = r->status == 0 && r->data && p2p_upnp_reply(r->data, r->len, &http, &err, &ext) == 0;
    m->io_id = 0;
    switch (m->state) {
    case PM_DESC:
        if (!ok || http != 200 ||
            p2p_upnp_control((const char *)r->data, r->len, m->ctl, sizeof m->ctl, m->svc,
                             sizeof m->svc) != 0) {
            go_idle(m);
            return;
        }
        m->eport = m->port;
        m->state = PM_ADD;
        if (soap(h, m, P2P_UPNP_ADD, now, 1) != 0) go_idle(m);
        return;
    case PM_ADD:
        if (ok && http == 200) {
            if (m->has_map && m->via == VIA_UPNP) {
                mapped(h, m, VIA_UPNP, &m->ext, m->lease0 ? 0 : P2P_PORTMAP_LEASE, now);
                return;
            }
            m->state = PM_GETIP;
            if (soap(h, m, P2P_UPNP_GET_IP, now, 1) != 0) go_idle(m);
            return;
        }
        if (m->has_map) { /* a renewal refused or not answered */
            renew_failed(h, m, now);
            return;
        }
        if (ok && err == 718 && m->conflicts < UPNP_CONFLICTS && m->eport < 65535) {
            m->conflicts++;
            m->eport++;
        } else if (ok && err == 725 && !m->lease0) {
            m->lease0 = 1;
        } else {
            go_idle(m);
            return;
        }
        if (soap(h, m, P2P_UPNP_ADD, now, 1) != 0) go_idle(m);
        return;
    case PM_GETIP:
        if (!ok || http != 200 || ext.family != P2P_AF_INET4) {
            go_idle(m);
            return;
        }
        ext.port = m->eport;
        ext.sock = 0;
        mapped(h, m, VIA_UPNP, &ext, m->lease0 ? 0 : P2P_PORTMAP_LEASE, now);
        return;
    default: return;
    }
}

void p2p_portmap_on_io(p2p_host *h, const p2p_io_result *r, uint64_t now)
{
    struct p2p_portmap *m = pm_of(h);
    if (!m || !r || !m->io_id || r->id != m->io_id) return;
    if (r->kind == P2P_IO_GATEWAY && m->state == PM_GATEWAY) {
        on_gateway(h, m, r, now);
    } else if (r->kind == P2P_IO_HTTP &&
               (m->state == PM_DESC || m->state == PM_ADD || m->state == PM_GETIP)) {
        on_http(h, m, r, now);
    }
}

/* ---- the gateway's datagrams ------------------------------------------------------------- */

static int from_gw(const struct p2p_portmap *m, const p2p_addr *from, uint16_t port)
{
    return m->gw.family == P2P_AF_INET4 && from->family == P2P_AF_INET4 && from->port == port &&
           !memcmp(from->ip, m->gw.ip, 4);
}

static void on_pmp(p2p_host *h, struct p2p_portmap *m, const uint8_t *b, size_t len, uint64_t now)
{
    p2p_pmp_reply r;
    if (p2p_pmp_parse(b, len, &r) != 0) return;
    int reset = epoch_reset(m, r.epoch, now);
    if (m->state == PM_PCP) {
        if (r.version == 0 && r.result == PMP_UNSUPP_VERSION) {
            /* a NAT-PMP-only gateway (RFC 6887 section 9) */
            if (m->renewing) {
                unmap(h, m);
            }
            step(m, PM_NATPMP, now);
            p2p_portmap_timer(h, now);
            return;
        }
        if (r.version != PCP_VERSION || r.opcode != (PMP_R | PCP_OP_MAP) ||
            memcmp(r.nonce, m->nonce, 12) || r.iport != m->port)
            return; /* not the answer to our request */
        if (r.result != 0 || r.ext.family != P2P_AF_INET4 || !r.eport || !r.lifetime) {
            if (m->renewing) {
                renew_failed(h, m, now);
            } else {
                start_ssdp(h, m, now);
                p2p_portmap_timer(h, now);
            }
            return;
        }
        p2p_addr ext = r.ext;
        ext.port = r.eport;
        mapped(h, m, VIA_PCP, &ext, r.lifetime, now);
        return;
    }
    if (m->state == PM_NATPMP) {
        if (r.version != 0 || r.opcode != (PMP_R | PMP_OP_MAP_UDP) || r.iport != m->port) return;
        if (r.result != 0 || !r.eport || !r.lifetime) {
            if (m->renewing) {
                renew_failed(h, m, now);
            } else {
                start_ssdp(h, m, now);
                p2p_portmap_timer(h, now);
            }
            return;
        }
        if (m->has_map && !reset && m->ext.port == r.eport) {
            mapped(h, m, VIA_NATPMP, &m->ext, r.lifetime, now);
            return;
        }
        /* a new mapping (or the gateway restarted): ask for the external address */
        m->ext.port = r.eport;
        m->lifetime = r.lifetime;
        m->granted_at = now;
        step(m, PM_NATPMP_ADDR, now);
        p2p_portmap_timer(h, now);
        return;
    }
    if (m->state == PM_NATPMP_ADDR) {
        if (r.version != 0 || r.opcode != PMP_R || r.result != 0 || r.ext.family != P2P_AF_INET4)
            return;
        p2p_addr ext = r.ext;
        ext.port = m->ext.port;
        uint32_t life = m->lifetime;
        uint64_t left = now - m->granted_at;
        if (left / SEC < life) life -= (uint32_t)(left / SEC);
        mapped(h, m, VIA_NATPMP, &ext, life, now);
        return;
    }
    if (m->state == PM_MAPPED && reset) {
        /* the gateway restarted (an unsolicited answer told us): map again at once */
        m->renewing = 0;
        step(m, m->via == VIA_NATPMP ? PM_NATPMP : PM_PCP, now);
        m->renewing = 1;
        p2p_portmap_timer(h, now);
    }
}

/* Returns 1 (the datagram was the gateway's, whatever it said). */
static int on_ssdp(p2p_host *h, struct p2p_portmap *m, const uint8_t *b, size_t len, uint64_t now)
{
    char url[256], path[128];
    p2p_addr at;
    memset(&at, 0, sizeof at);
    if (p2p_ssdp_location(b, len, url, sizeof url) != 0) return 1;
    if (p2p_upnp_url(url, &at, path, sizeof path) != 0) return 1;
    /* a LAN host cannot steer us to a third party: the description must be on the gateway */
    if (at.family != P2P_AF_INET4 || memcmp(at.ip, m->gw.ip, 4) || !at.port) return 1;
    at.sock = 0;
    m->http = at;
    snprintf(m->host, sizeof m->host, "%u.%u.%u.%u:%u", at.ip[0], at.ip[1], at.ip[2], at.ip[3],
             at.port);
    /* the description: a plain GET (path and host are checked: visible ASCII, no spaces) */
    for (const char *c = path; *c; c++)
        if (*c <= ' ' || *c > '~') return 1;
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n"
                     "User-Agent: p2pnet UPnP/1.1\r\n\r\n",
                     path, m->host);
    if (n <= 0 || (size_t)n >= sizeof req) return 1;
    m->state = PM_DESC;
    if (send_http(h, m, (const uint8_t *)req, (size_t)n, now, 1) != 0) go_idle(m);
    return 1;
}

int p2p_portmap_on_datagram(p2p_host *h, const p2p_addr *from, const uint8_t *b, size_t len,
                            uint64_t now)
{
    struct p2p_portmap *m = pm_of(h);
    if (!m || !from || !b) return 0;
    if (from_gw(m, from, P2P_PMP_PORT)) {
        on_pmp(h, m, b, len, now);
        return 1; /* the gateway's port-mapping server: never a peer */
    }
    if (from_gw(m, from, P2P_SSDP_PORT) && m->state == PM_SSDP && len >= 12 &&
        !memcmp(b, "HTTP/1.1 200", 12)) {
        return on_ssdp(h, m, b, len, now);
    }
    return 0;
}

/* ---- endings ----------------------------------------------------------------------------- */

/* Deletes the mapping at the gateway: one datagram or one HTTP request, not awaited. */
static void delete_mapping(p2p_host *h, struct p2p_portmap *m, uint64_t now)
{
    if (!m->has_map) return;
    if (m->via == VIA_PCP) {
        send_pcp(h, m, 0);
    } else if (m->via == VIA_NATPMP) {
        send_natpmp(h, m, 0);
    } else if (m->via == VIA_UPNP) {
        m->http_sent = 0; /* the delete is always allowed */
        soap(h, m, P2P_UPNP_DELETE, now, 0);
    }
}

void p2p_portmap_network_changed(p2p_host *h, uint64_t now)
{
    struct p2p_portmap *m = pm_of(h);
    if (!m || m->state == PM_CLOSED) return;
    delete_mapping(h, m, now);
    unmap(h, m);
    memset(m, 0, sizeof *m);
    m->state = PM_START;
    m->next_at = now;
}

void p2p_portmap_close(p2p_host *h, uint64_t now)
{
    struct p2p_portmap *m = pm_of(h);
    if (!m || m->state == PM_CLOSED) return;
    delete_mapping(h, m, now);
    unmap(h, m);
    m->state = PM_CLOSED;
    m->next_at = P2P_TIME_NEVER;
    m->io_id = 0;
}

void p2p_portmap_info(const p2p_host *h, p2p_nat_info *out)
{
    const struct p2p_portmap *m = pm_of(h);
    if (!m) {
        out->portmap = P2P_PORTMAP_OFF;
        return;
    }
    out->has_gateway = m->gw.family == P2P_AF_INET4;
    if (out->has_gateway) out->gateway = m->gw;
    if (m->has_map) {
        out->portmap = m->via == VIA_PCP      ? P2P_PORTMAP_PCP
                       : m->via == VIA_NATPMP ? P2P_PORTMAP_NATPMP
                                              : P2P_PORTMAP_UPNP;
        out->has_mapped = 1;
        out->mapped = m->ext;
        out->mapped_expires = m->expires;
    } else if (m->state == PM_IDLE || m->state == PM_CLOSED) {
        out->portmap = P2P_PORTMAP_NONE;
    } else {
        out->portmap = P2P_PORTMAP_PENDING;
    }
}
