/* test_portmap.c - port mapping (csrc/p2p_portmap.c, design12 section 4.1) against the
 * simulated gateway of csrc/driver/sim_gw.c: a host behind a NAT router whose LAN side
 * speaks PCP + NAT-PMP, NAT-PMP only, UPnP-IGD only, everything, or nothing. The test is
 * the host's driver: it answers P2P_IO_GATEWAY and P2P_IO_HTTP, carries datagrams to the
 * gateway and back after 1 ms, and runs the host's timers on virtual time. */
#include "t.h"
#include "driver/sim.h"
#include "driver/sim_gw.h"
#include "simnet.h"
#include "p2p_portmap.h"

#include <stdlib.h>

#define SEC UINT64_C(1000000)
#define MSEC UINT64_C(1000)
#define LAT (1 * MSEC)
#define PORT 4000

typedef struct net {
    p2p_host *h;
    p2p_identity id;
    p2p_sim_gw *gw; /* NULL: the driver reports no gateway */
    int gw_answers; /* 0: the driver never answers P2P_IO_GATEWAY */
    p2p_addr lan, ext, host;
    uint64_t now;
    simnet_queue w; /* datagrams on their way to the host */
    /* what the host sent */
    int to_pmp, to_ssdp, to_group, to_other, http, gateway_asks;
    int pcp_lifetime0, natpmp_lifetime0;
    char last_http[4096];
} net;

/* A host at 10.0.1.2:4000 behind a router 10.0.1.1 (WAN 11.0.1.2) of kind gw_kind (-1: no
 * gateway at all). */
static void net_up(net *n, int gw_kind, int portmap_off)
{
    memset(n, 0, sizeof *n);
    n->now = 1000 * SEC;
    simnet_ip4(&n->lan, 10, 0, 1, 1, 0);
    simnet_ip4(&n->ext, 11, 0, 1, 2, 0);
    simnet_ip4(&n->host, 10, 0, 1, 2, PORT);
    n->gw_answers = 1;
    if (gw_kind >= 0) n->gw = p2p_sim_gw_new(gw_kind, &n->lan, &n->ext, n->now);
    uint8_t seed[32];
    memset(seed, 7, sizeof seed);
    T_EQ_INT(p2p_identity_from_seed(&n->id, seed), 0);
    p2p_config cfg;
    p2p_config_init(&cfg);
    cfg.identity = &n->id;
    cfg.seed = 99;
    cfg.portmap_off = portmap_off;
    T_EQ_INT(p2p_host_new(&n->h, &cfg, n->now), 0);
    T_EQ_INT(p2p_host_add_address(n->h, &n->host, n->now), 0);
}

static void net_down(net *n)
{
    p2p_host_free(n->h);
    p2p_sim_gw_free(n->gw);
    p2p_identity_wipe(&n->id);
}

/* The driver's answer to a request: the gateway's address, the gateway's HTTP server. */
static void on_io(void *ctx, const p2p_io *io)
{
    net *n = ctx;
    p2p_io_result r;
    memset(&r, 0, sizeof r);
    r.kind = io->kind;
    r.id = io->id;
    if (io->kind == P2P_IO_GATEWAY) {
        n->gateway_asks++;
        if (!n->gw_answers) return;
        if (n->gw) {
            p2p_sim_gw_lan(n->gw, &r.addr);
            r.local = n->host;
        } else {
            r.status = P2P_ERR_IO;
        }
    } else if (io->kind == P2P_IO_HTTP) {
        static uint8_t reply[16384];
        n->http++;
        size_t l = io->len < sizeof n->last_http - 1 ? io->len : sizeof n->last_http - 1;
        memcpy(n->last_http, io->data, l);
        n->last_http[l] = 0;
        size_t len = 0;
        if (n->gw && io->addr.family == P2P_AF_INET4 && !memcmp(io->addr.ip, n->lan.ip, 4) &&
            io->addr.port == P2P_SIM_GW_HTTP_PORT)
            len = p2p_sim_gw_http(n->gw, &n->host, io->data, io->len, n->now, reply, sizeof reply);
        if (len) {
            r.data = reply;
            r.len = len;
        } else {
            r.status = P2P_ERR_IO;
        }
    } else {
        r.status = P2P_ERR_IO;
    }
    int rc = p2p_host_io_done(n->h, &r, n->now);
    T_CHECK(rc == 0 || rc == P2P_ERR_CLOSED); /* the delete's answer comes after close */
}

/* Counts what the host sent; the gateway answers after LAT. */
static void on_datagram(void *ctx, const p2p_addr *to, const uint8_t *buf, size_t len)
{
    net *n = ctx;
    if (to->port == 5351) {
        n->to_pmp++;
        if (buf[0] == 2 && len >= 8 && !buf[4] && !buf[5] && !buf[6] && !buf[7]) n->pcp_lifetime0++;
        if (buf[0] == 0 && len == 12 && !buf[8] && !buf[9] && !buf[10] && !buf[11])
            n->natpmp_lifetime0++;
    } else if (to->port == 1900) {
        if (to->ip[0] == 239)
            n->to_group++;
        else
            n->to_ssdp++;
    } else {
        n->to_other++;
    }
    if (!n->gw) return;
    uint8_t out[2048];
    p2p_addr from;
    size_t rl = p2p_sim_gw_udp(n->gw, &n->host, to, buf, len, n->now, out, sizeof out, &from);
    if (rl) simnet_later(&n->w, n->now + LAT, &from, out, rl);
}

/* Drains the host's requests and datagrams (the driver rule). */
static void drain(net *n)
{
    simnet_drain(n->h, &(simnet_driver){on_io, on_datagram, n});
}

/* Runs the host and the network until virtual time `until`. */
static void run(net *n, uint64_t until)
{
    simnet_run(n->h, &n->w, &n->now, until, &(simnet_driver){on_io, on_datagram, n});
}

/* The host's advertised address of kind P2P_ADDR_MAPPED into *out; 1 when there is one. */
static int mapped_addr(net *n, p2p_addr *out)
{
    return simnet_own_addr(n->h, P2P_ADDR_MAPPED, out);
}

static int total_sent(const net *n)
{
    return n->to_pmp + n->to_ssdp + n->to_group + n->to_other;
}

static void check_mapped(net *n, int proto, uint16_t eport)
{
    p2p_addr m;
    T_CHECK(mapped_addr(n, &m));
    p2p_addr want = n->ext;
    want.port = eport;
    T_CHECK(p2p_addr_equal(&m, &want));
    p2p_nat_info info;
    memset(&info, 0, sizeof info);
    p2p_host_nat(n->h, &info);
    T_EQ_INT(info.portmap, proto);
    T_EQ_INT(info.has_gateway, 1);
    T_EQ_INT(info.has_mapped, 1);
    T_EQ_INT(info.mapped.port, eport);
    T_EQ_INT(info.mapping, P2P_MAPPING_INDEPENDENT);
    T_EQ_INT(info.source, P2P_MAPSRC_PORTMAP);
    /* the router forwards the external port to the host */
    p2p_addr priv;
    T_EQ_INT(p2p_sim_gw_in(n->gw, eport, n->now, &priv), 1);
    T_EQ_INT(priv.port, PORT);
    T_EQ_MEM(priv.ip, n->host.ip, 4);
}

static void test_pcp(void)
{
    net n;
    net_up(&n, P2P_SIM_GW_ALL, 0);
    run(&n, n.now + 5 * SEC);
    check_mapped(&n, P2P_PORTMAP_PCP, PORT);
    T_EQ_INT(n.to_pmp, 1); /* one PCP request, answered */
    T_EQ_INT(n.to_ssdp + n.to_group + n.http, 0);
    p2p_sim_gw_stats gs;
    p2p_sim_gw_stats_get(n.gw, &gs);
    T_EQ_INT(gs.pcp, 1);
    T_EQ_INT(gs.natpmp, 0);
    p2p_stats st;
    p2p_host_stats(n.h, &st);
    T_EQ_INT(st.portmap_sent, 1);
    net_down(&n);
}

static void test_natpmp_only(void)
{
    net n;
    net_up(&n, P2P_SIM_GW_NATPMP, 0);
    run(&n, n.now + 5 * SEC);
    check_mapped(&n, P2P_PORTMAP_NATPMP, PORT);
    p2p_sim_gw_stats gs;
    p2p_sim_gw_stats_get(n.gw, &gs);
    T_EQ_INT(gs.pcp, 1);    /* answered with "unsupported version" */
    T_EQ_INT(gs.natpmp, 2); /* map, then the external address */
    T_EQ_INT(n.to_pmp, 3);
    T_EQ_INT(n.to_ssdp + n.to_group + n.http, 0);
    net_down(&n);
}

static void test_upnp_only(void)
{
    net n;
    net_up(&n, P2P_SIM_GW_UPNP, 0);
    run(&n, n.now + 10 * SEC);
    check_mapped(&n, P2P_PORTMAP_UPNP, PORT);
    T_EQ_INT(n.to_pmp, 3); /* PCP: three tries into silence */
    T_EQ_INT(n.to_ssdp, 1);
    T_EQ_INT(n.to_group, 0);
    T_EQ_INT(n.http, 3); /* description, AddPortMapping, GetExternalIPAddress */
    T_CHECK(strstr(n.last_http, "GetExternalIPAddress") != NULL);
    net_down(&n);
}

/* A silent gateway gets 6 datagrams (3 PCP, 2 unicast and 1 multicast M-SEARCH), then
 * nothing for an hour; the module's timer is off. (While the guard lets nothing go to a
 * multicast group, the third M-SEARCH goes to the gateway again.) */
static void test_silent_bound(void)
{
    net n;
    net_up(&n, P2P_SIM_GW_SILENT, 0);
    run(&n, n.now + 10 * SEC);
    T_EQ_INT(n.to_pmp, 3);
    T_EQ_INT(n.to_ssdp + n.to_group, 3);
    T_CHECK(n.to_ssdp >= 2);
    T_EQ_INT(total_sent(&n), 6);
    run(&n, n.now + 3600 * SEC);
    T_EQ_INT(total_sent(&n), 6);
    T_EQ_INT(n.http, 0);
    T_EQ_INT(p2p_portmap_deadline(n.h), P2P_TIME_NEVER);
    p2p_stats st;
    p2p_host_stats(n.h, &st);
    T_EQ_INT(st.portmap_sent, 6);
    p2p_nat_info info;
    memset(&info, 0, sizeof info);
    p2p_host_nat(n.h, &info);
    T_EQ_INT(info.portmap, P2P_PORTMAP_NONE);
    p2p_addr m;
    T_CHECK(!mapped_addr(&n, &m));
    /* a new network: the same 6 again, and no more */
    p2p_host_network_changed(n.h, n.now);
    run(&n, n.now + 3600 * SEC);
    T_EQ_INT(total_sent(&n), 12);
    net_down(&n);
}

static void test_no_gateway(void)
{
    net n;
    net_up(&n, -1, 0);
    run(&n, n.now + 3600 * SEC);
    T_EQ_INT(n.gateway_asks, 1);
    T_EQ_INT(total_sent(&n) + n.http, 0);
    T_EQ_INT(p2p_portmap_deadline(n.h), P2P_TIME_NEVER);
    net_down(&n);
    /* a driver that never answers: nothing either */
    net_up(&n, P2P_SIM_GW_ALL, 0);
    n.gw_answers = 0;
    run(&n, n.now + 3600 * SEC);
    T_EQ_INT(total_sent(&n) + n.http, 0);
    net_down(&n);
}

static void test_off(void)
{
    net n;
    net_up(&n, P2P_SIM_GW_ALL, 1);
    run(&n, n.now + 60 * SEC);
    T_EQ_INT(n.gateway_asks, 0);
    T_EQ_INT(total_sent(&n) + n.http, 0);
    p2p_nat_info info;
    memset(&info, 0, sizeof info);
    p2p_host_nat(n.h, &info);
    T_EQ_INT(info.portmap, P2P_PORTMAP_OFF);
    net_down(&n);
}

/* Renewals at half the lifetime (7200 s asked: 3600 s), the mapping kept for a day. */
static void test_renew(void)
{
    net n;
    net_up(&n, P2P_SIM_GW_PCP, 0);
    run(&n, n.now + 5 * SEC);
    check_mapped(&n, P2P_PORTMAP_PCP, PORT);
    uint64_t t0 = n.now;
    run(&n, t0 + 3590 * SEC);
    T_EQ_INT(n.to_pmp, 1);
    run(&n, t0 + 3610 * SEC);
    T_EQ_INT(n.to_pmp, 2); /* one renewal, same nonce (else NOT_AUTHORIZED) */
    check_mapped(&n, P2P_PORTMAP_PCP, PORT);
    run(&n, t0 + 86400 * SEC);
    T_EQ_INT(n.to_pmp, 25);
    check_mapped(&n, P2P_PORTMAP_PCP, PORT);
    T_EQ_INT(p2p_sim_gw_mappings(n.gw, n.now), 1);
    net_down(&n);
}

static void test_delete_on_close(void)
{
    int kinds[] = {P2P_SIM_GW_PCP, P2P_SIM_GW_NATPMP, P2P_SIM_GW_UPNP};
    for (int i = 0; i < 3; i++) {
        net n;
        net_up(&n, kinds[i], 0);
        run(&n, n.now + 10 * SEC);
        T_EQ_INT(p2p_sim_gw_mappings(n.gw, n.now), 1);
        int http = n.http;
        T_EQ_INT(p2p_host_close(n.h, n.now), 0);
        run(&n, n.now + 5 * SEC);
        T_EQ_INT(p2p_sim_gw_mappings(n.gw, n.now), 0);
        if (kinds[i] == P2P_SIM_GW_PCP) T_EQ_INT(n.pcp_lifetime0, 1);
        if (kinds[i] == P2P_SIM_GW_NATPMP) T_EQ_INT(n.natpmp_lifetime0, 1);
        if (kinds[i] == P2P_SIM_GW_UPNP) {
            T_EQ_INT(n.http, http + 1);
            T_CHECK(strstr(n.last_http, "DeletePortMapping") != NULL);
        }
        p2p_addr m;
        T_CHECK(!mapped_addr(&n, &m));
        net_down(&n);
    }
}

/* The router reboots and, meanwhile, another LAN host took our external port: the renewal
 * finds the reset (epoch back near 0) and the node takes the mapping it is given. */
static void test_epoch_reset(void)
{
    net n;
    net_up(&n, P2P_SIM_GW_NATPMP, 0);
    run(&n, n.now + 5 * SEC);
    check_mapped(&n, P2P_PORTMAP_NATPMP, PORT);
    p2p_sim_gw_reboot(n.gw, n.now + 1000 * SEC);
    run(&n, n.now + 1000 * SEC);
    /* another host maps 4000 first */
    uint8_t req[12] = {0, 1, 0, 0, 0x0f, 0xa0, 0x0f, 0xa0, 0, 0, 0x1c, 0x20}, out[64];
    p2p_addr other, to, from;
    simnet_ip4(&other, 10, 0, 1, 3, 4000);
    simnet_ip4(&to, 10, 0, 1, 1, 5351);
    T_EQ_INT(p2p_sim_gw_udp(n.gw, &other, &to, req, sizeof req, n.now, out, sizeof out, &from), 16);
    T_EQ_INT(p2p_sim_gw_mappings(n.gw, n.now), 1);
    run(&n, n.now + 2700 * SEC);
    check_mapped(&n, P2P_PORTMAP_NATPMP, PORT + 1);
    T_EQ_INT(p2p_sim_gw_mappings(n.gw, n.now), 2);
    /* one advertised mapped address, the new one */
    p2p_addr a[16];
    int k[16], nm = 0;
    size_t c = p2p_host_addresses(n.h, a, k, 16);
    for (size_t i = 0; i < c && i < 16; i++) nm += k[i] == P2P_ADDR_MAPPED;
    T_EQ_INT(nm, 1);
    net_down(&n);
}

/* UPnP: the external port is taken by another host (718): P + 1. */
static void test_upnp_conflict(void)
{
    net n;
    net_up(&n, P2P_SIM_GW_UPNP, 0);
    static const char body[] =
        "<?xml version=\"1.0\"?><s:Envelope><s:Body><u:AddPortMapping><NewRemoteHost>"
        "</NewRemoteHost><NewExternalPort>4000</NewExternalPort><NewProtocol>UDP</NewProtocol>"
        "<NewInternalPort>5555</NewInternalPort><NewInternalClient>10.0.1.3</NewInternalClient>"
        "<NewEnabled>1</NewEnabled><NewLeaseDuration>0</NewLeaseDuration></u:AddPortMapping>"
        "</s:Body></s:Envelope>";
    char req[1024];
    int l = snprintf(req, sizeof req,
                     "POST /ctl/IPConn HTTP/1.1\r\nHost: 10.0.1.1:5000\r\nContent-Length: %zu\r\n"
                     "SOAPAction: \"urn:schemas-upnp-org:service:WANIPConnection:1#AddPortMapping"
                     "\"\r\n\r\n%s",
                     strlen(body), body);
    p2p_addr other;
    simnet_ip4(&other, 10, 0, 1, 3, 0);
    static uint8_t out[4096];
    size_t rl =
        p2p_sim_gw_http(n.gw, &other, (const uint8_t *)req, (size_t)l, n.now, out, sizeof out);
    T_CHECK(rl > 12 && !memcmp(out, "HTTP/1.1 200", 12));
    run(&n, n.now + 10 * SEC);
    check_mapped(&n, P2P_PORTMAP_UPNP, PORT + 1);
    T_EQ_INT(n.http, 4); /* description, 718, AddPortMapping P+1, GetExternalIPAddress */
    net_down(&n);
}

/* What others send cannot steer the module: a PCP answer from a LAN host (not the gateway)
 * is not taken; an SSDP LOCATION that names another host is ignored; a PCP answer with
 * another nonce is ignored. */
static void test_spoofed_replies(void)
{
    net n;
    net_up(&n, P2P_SIM_GW_SILENT, 0);
    run(&n, n.now + 100 * MSEC); /* the first PCP try is out */
    T_EQ_INT(n.to_pmp, 1);
    uint8_t pcp[60];
    memset(pcp, 0, sizeof pcp);
    pcp[0] = 2, pcp[1] = 0x81, pcp[7] = 100;
    pcp[36] = 17, pcp[40] = 0x0f, pcp[41] = 0xa0, pcp[42] = 0x0f, pcp[43] = 0xa0;
    pcp[54] = 0xff, pcp[55] = 0xff, pcp[56] = 11, pcp[59] = 9;
    p2p_addr lanhost, gwpmp;
    simnet_ip4(&lanhost, 10, 0, 1, 3, 5351);
    simnet_ip4(&gwpmp, 10, 0, 1, 1, 5351);
    p2p_stats before, after;
    p2p_host_stats(n.h, &before);
    p2p_host_recv(n.h, &lanhost, pcp, sizeof pcp, n.now); /* not from the gateway */
    p2p_host_recv(n.h, &gwpmp, pcp, sizeof pcp, n.now);   /* nonce is not ours */
    drain(&n);
    p2p_addr m;
    T_CHECK(!mapped_addr(&n, &m));
    p2p_host_stats(n.h, &after);
    T_CHECK(after.dropped > before.dropped); /* the LAN host's was dropped as a packet */
    run(&n, n.now + 3500 * MSEC);            /* SSDP now */
    T_CHECK(n.to_ssdp >= 1);
    static const char ssdp[] = "HTTP/1.1 200 OK\r\nST: urn:schemas-upnp-org:device:"
                               "InternetGatewayDevice:1\r\nLOCATION: http://10.0.1.3:5000/"
                               "rootDesc.xml\r\n\r\n";
    p2p_addr gwssdp;
    simnet_ip4(&gwssdp, 10, 0, 1, 1, 1900);
    p2p_host_recv(n.h, &gwssdp, (const uint8_t *)ssdp, sizeof ssdp - 1, n.now);
    run(&n, n.now + 3600 * SEC);
    T_EQ_INT(n.http, 0);
    T_EQ_INT(total_sent(&n), 6);
    net_down(&n);
}

/* A gateway whose own external address is private (double NAT, carrier-grade NAT): the
 * mapping is made and kept, but the node neither advertises it nor says its mapping is
 * endpoint-independent on the strength of it. */
static void test_double_nat(void)
{
    net n;
    net_up(&n, P2P_SIM_GW_PCP, 0);
    p2p_sim_gw_free(n.gw);
    p2p_addr cgnat;
    simnet_ip4(&cgnat, 100, 64, 0, 2, 0);
    n.gw = p2p_sim_gw_new(P2P_SIM_GW_PCP, &n.lan, &cgnat, n.now);
    run(&n, n.now + 5 * SEC);
    T_EQ_INT(p2p_sim_gw_mappings(n.gw, n.now), 1);
    p2p_addr m;
    T_CHECK(!mapped_addr(&n, &m));
    p2p_nat_info info;
    memset(&info, 0, sizeof info);
    p2p_host_nat(n.h, &info);
    T_EQ_INT(info.portmap, P2P_PORTMAP_PCP);
    T_EQ_INT(info.has_mapped, 1);
    T_EQ_INT(info.mapping, P2P_MAPPING_UNKNOWN);
    T_EQ_INT(p2p_host_close(n.h, n.now), 0);
    run(&n, n.now + 5 * SEC);
    T_EQ_INT(p2p_sim_gw_mappings(n.gw, n.now), 0);
    net_down(&n);
}

/* A network change deletes the old mapping and maps again. */
static void test_network_changed(void)
{
    net n;
    net_up(&n, P2P_SIM_GW_PCP, 0);
    run(&n, n.now + 5 * SEC);
    check_mapped(&n, P2P_PORTMAP_PCP, PORT);
    p2p_host_network_changed(n.h, n.now);
    run(&n, n.now + 5 * SEC);
    T_EQ_INT(n.pcp_lifetime0, 1);
    T_EQ_INT(n.gateway_asks, 2);
    check_mapped(&n, P2P_PORTMAP_PCP, PORT);
    T_EQ_INT(p2p_sim_gw_mappings(n.gw, n.now), 1);
    net_down(&n);
}

/* On the simulator (driver/sim.c with a sim_gw gateway): A sits behind a NAT that randomizes
 * ports, whose gateway speaks PCP; B, a public host, connects to A's mapped address and
 * reaches it directly, which the NAT alone would have filtered. */
static int sim_joins(p2p_host *h)
{
    int joins = 0;
    p2p_event ev;
    while (p2p_host_next_event(h, &ev))
        if (ev.type == P2P_EV_JOIN) joins++;
    return joins;
}

static void test_on_sim(void)
{
    p2p_sim *sim;
    p2p_sim_config c;
    memset(&c, 0, sizeof c);
    c.seed = 5;
    c.latency_us = 5000;
    T_EQ_INT(p2p_sim_new(&sim, &c), 0);
    p2p_identity ida, idb;
    uint8_t seed[32];
    memset(seed, 1, sizeof seed);
    p2p_identity_from_seed(&ida, seed);
    memset(seed, 2, sizeof seed);
    p2p_identity_from_seed(&idb, seed);
    p2p_host *a, *b;
    p2p_config cfg;
    p2p_config_init(&cfg);
    cfg.identity = &ida;
    cfg.seed = p2p_sim_host_seed(sim);
    T_EQ_INT(p2p_host_new(&a, &cfg, 0), 0);
    cfg.identity = &idb;
    cfg.seed = p2p_sim_host_seed(sim);
    cfg.portmap_off = 1;
    T_EQ_INT(p2p_host_new(&b, &cfg, 0), 0);
    p2p_addr aa, ba, pub, lan;
    T_EQ_INT(p2p_sim_attach(sim, a, 4000, P2P_SIM_NAT_SYMMETRIC, &aa), 0);
    T_EQ_INT(p2p_sim_public_addr(sim, a, &pub), 0);
    simnet_ip4(&lan, 10, 255, 255, 254, 0);
    p2p_sim_gw *g = p2p_sim_gw_new(P2P_SIM_GW_PCP, &lan, &pub, 0);
    p2p_sim_gateway gw;
    memset(&gw, 0, sizeof gw);
    gw.ud = g;
    gw.lan = lan;
    gw.udp = p2p_sim_gw_udp_ud;
    gw.http = p2p_sim_gw_http_ud;
    gw.nat_out = p2p_sim_gw_out_ud;
    gw.nat_in = p2p_sim_gw_in_ud;
    T_EQ_INT(p2p_sim_set_gateway(sim, a, &gw), 0);
    /* as the UDP driver does with its interface addresses (the guard lets the node send to a
     * private address, the gateway's, only while it has one of its own) */
    T_EQ_INT(p2p_host_add_address(a, &aa, 0), 0);
    T_EQ_INT(p2p_sim_attach(sim, b, 4000, P2P_SIM_NAT_NONE, &ba), 0);
    p2p_sim_flush(sim, a);
    p2p_sim_flush(sim, b);
    uint64_t until = 5 * SEC;
    while (p2p_sim_next_time(sim) <= until) p2p_sim_step(sim, until);
    p2p_addr addrs[16], mapped;
    int kinds[16], found = 0;
    size_t n = p2p_host_addresses(a, addrs, kinds, 16);
    for (size_t i = 0; i < n && i < 16; i++)
        if (kinds[i] == P2P_ADDR_MAPPED) {
            mapped = addrs[i];
            found = 1;
        }
    T_CHECK(found);
    if (found) {
        T_EQ_MEM(mapped.ip, pub.ip, 4);
        T_EQ_INT(mapped.port, 4000);
        p2p_peer_handle hb;
        T_EQ_INT(p2p_host_connect(b, &mapped, ida.ed_pk, p2p_sim_now(sim), &hb), 0);
        p2p_sim_flush(sim, b);
        int ja = sim_joins(a), jb = sim_joins(b);
        until = p2p_sim_now(sim) + 5 * SEC;
        while (p2p_sim_next_time(sim) <= until) {
            p2p_sim_step(sim, until);
            ja += sim_joins(a);
            jb += sim_joins(b);
        }
        T_EQ_INT(ja, 1);
        T_EQ_INT(jb, 1);
        p2p_peer_info info;
        T_EQ_INT(p2p_host_peer_info(b, hb, &info), 0);
        T_EQ_INT(info.state, P2P_PEER_CONNECTED);
        T_EQ_INT(info.direct, 1);
        T_CHECK(p2p_addr_equal(&info.address, &mapped));
    }
    p2p_sim_free(sim);
    p2p_host_free(a);
    p2p_host_free(b);
    p2p_sim_gw_free(g);
    p2p_identity_wipe(&ida);
    p2p_identity_wipe(&idb);
}

/* The simulated gateway itself: miniupnpd's bytes of design12 section 8.3. */
static void test_sim_gw_bytes(void)
{
    p2p_addr lan, ext, host, to, from;
    simnet_ip4(&lan, 10, 0, 1, 1, 0);
    simnet_ip4(&ext, 11, 0, 1, 2, 0);
    simnet_ip4(&host, 10, 0, 1, 2, 44000);
    p2p_sim_gw *g = p2p_sim_gw_new(P2P_SIM_GW_ALL, &lan, &ext, 0);
    uint8_t out[2048];
    simnet_ip4(&to, 10, 0, 1, 1, 5351);
    /* NAT-PMP map 44000 -> 44000 for 7200 s, at epoch 37327 */
    uint8_t req[12];
    t_from_hex(req, "00010000abe0abe000001c20");
    T_EQ_INT(p2p_sim_gw_udp(g, &host, &to, req, 12, UINT64_C(37327) * SEC, out, sizeof out, &from),
             16);
    T_EQ_HEX(out, "00810000000091cfabe0abe000001c20");
    T_EQ_INT(from.port, 5351);
    uint8_t addr[2] = {0, 0};
    T_EQ_INT(p2p_sim_gw_udp(g, &host, &to, addr, 2, UINT64_C(37327) * SEC, out, sizeof out, &from),
             12);
    T_EQ_HEX(out, "00800000000091cf0b000102");
    /* a second host's PCP request with the first host's address in it: ADDRESS_MISMATCH */
    uint8_t pcp[60];
    t_from_hex(pcp, "0201000000001c2000000000000000000000ffff0a000102"
                    "0102030405060708090a0b0c11000000a7f8a7f800000000000000000000ffff00000000");
    p2p_addr other;
    simnet_ip4(&other, 10, 0, 1, 9, 43000);
    T_EQ_INT(p2p_sim_gw_udp(g, &other, &to, pcp, 60, 0, out, sizeof out, &from), 60);
    T_EQ_INT(out[3], 12);
    host.port = 43000;
    T_EQ_INT(p2p_sim_gw_udp(g, &host, &to, pcp, 60, 0, out, sizeof out, &from), 60);
    T_EQ_INT(out[1], 0x81);
    T_EQ_INT(out[3], 0);
    T_EQ_HEX(out + 36, "11000000a7f8a7f800000000000000000000ffff0b000102");
    /* M-SEARCH to the group: the LOCATION on the gateway */
    static const char ms[] = "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\n"
                             "MAN: \"ssdp:discover\"\r\nMX: 1\r\n"
                             "ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n\r\n";
    simnet_ip4(&to, 239, 255, 255, 250, 1900);
    size_t n = p2p_sim_gw_udp(g, &host, &to, (const uint8_t *)ms, sizeof ms - 1, 0, out,
                              sizeof out - 1, &from);
    T_CHECK(n > 0);
    out[n] = 0;
    T_CHECK(strstr((char *)out, "LOCATION: http://10.0.1.1:5000/rootDesc.xml\r\n") != NULL);
    T_EQ_MEM(from.ip, lan.ip, 4);
    T_EQ_INT(from.port, 1900);
    p2p_sim_gw_free(g);
}

int main(void)
{
    T_RUN(test_sim_gw_bytes);
    T_RUN(test_pcp);
    T_RUN(test_natpmp_only);
    T_RUN(test_upnp_only);
    T_RUN(test_silent_bound);
    T_RUN(test_no_gateway);
    T_RUN(test_off);
    T_RUN(test_renew);
    T_RUN(test_delete_on_close);
    T_RUN(test_epoch_reset);
    T_RUN(test_upnp_conflict);
    T_RUN(test_spoofed_replies);
    T_RUN(test_network_changed);
    T_RUN(test_double_nat);
    T_RUN(test_on_sim);
    return t_summary("test_portmap");
}
