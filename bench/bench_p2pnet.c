/*
 * bench_p2pnet.c - the p2pnet contender through its C API: a sans-IO host driven by the UDP
 * driver (p2p_udp_pump / p2p_udp_flush), reliable messages with p2p_peer_send. See
 * bench_common.h for the roles and the application protocol.
 */
#include "bench_common.h"

#include "p2pnet.h"
#include "driver/udp.h"

typedef struct side {
    p2p_identity id;
    p2p_host *h;
    p2p_udp *u;
} side;

/* mediator: the host neither shares nor dials mesh members (used for the memory test, so the
 * clients of the hub do not also connect to each other and only hub-client sessions exist). */
static void side_open(side *s, uint32_t max_peers, int mediator)
{
    char err[256];
    p2p_config cfg;
    if (p2p_init() != 0 || p2p_identity_generate(&s->id) != 0) bench_die("p2pnet: identity");
    p2p_config_init(&cfg);
    cfg.identity = &s->id;
    cfg.max_peers = max_peers;
    cfg.mediator = mediator;
    if (p2p_host_new(&s->h, &cfg, p2p_udp_now()) != 0) bench_die("p2pnet: host_new");
    if (p2p_udp_open(&s->u, "127.0.0.1", 0, err, sizeof err) != 0) {
        fprintf(stderr, "p2pnet: udp_open: %s\n", err);
        exit(1);
    }
}

/* With BENCH_VERBOSE set, the driver's and the host's counters on stderr: how many datagrams
 * went segmented (GSO) or arrived coalesced (GRO), and what was resent or dropped. */
static void side_report(const side *s, const char *who)
{
    p2p_udp_stats us;
    p2p_stats hs;
    if (getenv("BENCH_VERBOSE") == NULL) return;
    p2p_udp_stats_get(s->u, &us);
    p2p_host_stats(s->h, &hs);
    fprintf(stderr,
            "p2pnet %s: udp sent %llu received %llu gso_sends %llu gro_receives %llu "
            "blocked %llu send_errors %llu; host retransmits %llu dropped %llu\n",
            who, (unsigned long long)us.sent, (unsigned long long)us.received,
            (unsigned long long)us.gso_sends, (unsigned long long)us.gro_receives,
            (unsigned long long)us.blocked, (unsigned long long)us.send_errors,
            (unsigned long long)hs.retransmits, (unsigned long long)hs.dropped);
}

static void side_close(side *s)
{
    p2p_host_close(s->h, p2p_udp_now());
    p2p_udp_flush(s->u, s->h);
    p2p_event ev;
    while (p2p_host_next_event(s->h, &ev)) {
    }
    p2p_udp_close(s->u);
    p2p_host_free(s->h);
    p2p_identity_wipe(&s->id);
}

static unsigned side_port(const side *s)
{
    p2p_addr a;
    p2p_udp_local(s->u, &a);
    return a.port;
}

static void send_msg(side *s, p2p_peer_handle peer, const uint8_t *data, size_t len)
{
    int rc = p2p_peer_send(s->h, peer, 1, data, len, 0, NULL, p2p_udp_now());
    if (rc != 0) {
        /* The window above bounds what the application has unacknowledged far below the send
         * queue limit, so FULL means the transport stopped retiring acknowledged bytes. */
        p2p_peer_info info;
        memset(&info, 0, sizeof info);
        p2p_host_peer_info(s->h, peer, &info);
        fprintf(stderr, "p2pnet: send of %zu bytes: %s (bytes_queued %llu)\n", len,
                p2p_strerror(rc), (unsigned long long)info.bytes_queued);
        exit(1);
    }
}

static int server(void)
{
    side s;
    side_open(&s, 0, 0);
    printf("PORT %u\n", side_port(&s));
    fflush(stdout);
    static uint8_t out[BENCH_MAX_SIZE];
    bench_server srv = {0};
    int quit = 0, joined = 0;
    uint64_t idle_deadline = bench_now_us() + 60 * 1000000ull;
    while (!quit) {
        if (p2p_udp_pump(s.u, s.h, 5000) < 0) bench_die("p2pnet: pump");
        p2p_event ev;
        while (p2p_host_next_event(s.h, &ev)) {
            if (ev.type == P2P_EV_JOIN) joined = 1;
            if (ev.type == P2P_EV_LEAVE) quit = 1;
            if (ev.type != P2P_EV_MESSAGE) continue;
            long n = bench_server_handle(&srv, ev.data, ev.len, out);
            if (n < 0)
                quit = 1;
            else if (n > 0)
                send_msg(&s, ev.peer, out, (size_t)n);
        }
        if (p2p_udp_flush(s.u, s.h) != 0) bench_die("p2pnet: flush");
        if (!joined && bench_now_us() > idle_deadline) bench_die("p2pnet: no client");
    }
    side_report(&s, "server");
    side_close(&s);
    return 0;
}

static p2p_peer_handle connect_to(side *s, unsigned port)
{
    char text[P2P_ADDR_TEXT_MAX];
    p2p_addr a;
    snprintf(text, sizeof text, "127.0.0.1:%u", port);
    if (p2p_addr_parse(&a, text) != 0) bench_die("p2pnet: address");
    p2p_peer_handle peer = 0;
    if (p2p_host_connect(s->h, &a, NULL, p2p_udp_now(), &peer) != 0) bench_die("p2pnet: connect");
    p2p_udp_flush(s->u, s->h);
    return peer;
}

typedef struct p2pnet_client {
    side *s;
    p2p_peer_handle peer;
} p2pnet_client;

static void p2pnet_send(void *ctx, const uint8_t *msg, size_t len)
{
    p2pnet_client *cl = ctx;
    send_msg(cl->s, cl->peer, msg, len);
}

static void p2pnet_flush(void *ctx)
{
    side *s = ((p2pnet_client *)ctx)->s;
    p2p_udp_flush(s->u, s->h);
}

static void p2pnet_poll(void *ctx, bench_msg_fn fn, void *arg)
{
    side *s = ((p2pnet_client *)ctx)->s;
    p2p_event ev;
    if (p2p_udp_pump(s->u, s->h, 1000) < 0) bench_die("p2pnet: pump");
    while (p2p_host_next_event(s->h, &ev)) {
        if (ev.type == P2P_EV_MESSAGE) fn(arg, ev.data, ev.len);
        if (ev.type == P2P_EV_LEAVE) bench_die("p2pnet: session lost");
    }
}

static const bench_ops p2pnet_ops = {"p2pnet", p2pnet_send, p2pnet_flush, p2pnet_poll};

static int client(unsigned port)
{
    side s;
    side_open(&s, 0, 0);
    p2p_peer_handle peer = connect_to(&s, port);
    uint64_t deadline = bench_now_us() + 5000000;
    int joined = 0;
    p2p_event ev;
    while (!joined) {
        p2p_udp_pump(s.u, s.h, 10000);
        while (p2p_host_next_event(s.h, &ev)) {
            if (ev.type == P2P_EV_JOIN && ev.peer == peer) joined = 1;
            if (ev.type == P2P_EV_ERROR) bench_die("p2pnet: connect failed");
        }
        if (bench_now_us() > deadline) bench_die("p2pnet: connect timed out");
    }

    p2pnet_client cl = {&s, peer};
    bench_client_run(&p2pnet_ops, &cl);
    /* Let the quit be delivered (and acknowledged) before leaving. */
    uint64_t until = bench_now_us() + 200000;
    while (bench_now_us() < until) {
        p2p_udp_pump(s.u, s.h, 10000);
        while (p2p_host_next_event(s.h, &ev)) {
        }
    }
    side_report(&s, "client");
    side_close(&s);
    return 0;
}

/* The memory test (bench_mem). Every host is a mediator, so the sessions form a star and the
 * figure is the cost of one session, not of mesh membership. */
static void *p2pnet_hub_open(int n, unsigned *port)
{
    side *hub = calloc(1, sizeof *hub);
    if (!hub) bench_die("out of memory");
    side_open(hub, (uint32_t)n + 8, 1);
    *port = side_port(hub);
    return hub;
}

static int p2pnet_hub_pump(void *ctx)
{
    side *hub = ctx;
    p2p_event ev;
    int joined = 0;
    p2p_udp_pump(hub->u, hub->h, 1000);
    while (p2p_host_next_event(hub->h, &ev))
        if (ev.type == P2P_EV_JOIN) joined++;
    return joined;
}

static void p2pnet_hub_close(void *ctx)
{
    side *hub = ctx;
    p2p_udp_close(hub->u);
    p2p_host_free(hub->h);
    free(hub);
}

static void *p2pnet_clients_open(int n, unsigned port)
{
    side *cs = calloc((size_t)n, sizeof *cs);
    if (!cs) bench_die("out of memory");
    for (int i = 0; i < n; i++) {
        side_open(&cs[i], 0, 1);
        connect_to(&cs[i], port);
    }
    return cs;
}

static int p2pnet_clients_pump(void *clients, int n)
{
    side *cs = clients;
    p2p_event ev;
    int joined = 0;
    for (int i = 0; i < n; i++) {
        p2p_udp_pump(cs[i].u, cs[i].h, 0);
        while (p2p_host_next_event(cs[i].h, &ev))
            if (ev.type == P2P_EV_JOIN) joined++;
    }
    return joined;
}

static const bench_mem_ops p2pnet_mem_ops = {
    "p2pnet",         p2pnet_hub_open,     p2pnet_hub_pump,
    p2pnet_hub_close, p2pnet_clients_open, p2pnet_clients_pump};

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "server") == 0) return server();
    if (argc >= 3 && strcmp(argv[1], "client") == 0) return client((unsigned)atoi(argv[2]));
    if (argc >= 3 && strcmp(argv[1], "mem") == 0) return bench_mem(&p2pnet_mem_ops, atoi(argv[2]));
    fprintf(stderr, "usage: %s server | client <port> | mem <sessions>\n", argv[0]);
    return 2;
}
