/*
 * bench_enet.c - the ENet contender (Debian's libenet): reliable packets on channel 0,
 * unlimited bandwidth, enet_host_flush after sends; ENet fragments the 64 KiB messages itself.
 * See bench_common.h.
 */
#include "bench_common.h"

#include <enet/enet.h>

static void send_reliable(ENetPeer *peer, const uint8_t *data, size_t len)
{
    ENetPacket *p = enet_packet_create(data, len, ENET_PACKET_FLAG_RELIABLE);
    if (!p || enet_peer_send(peer, 0, p) != 0) bench_die("enet: send failed");
}

static ENetHost *host_on_loopback(size_t peers)
{
    ENetAddress a;
    enet_address_set_host_ip(&a, "127.0.0.1");
    a.port = 0;
    ENetHost *h = enet_host_create(&a, peers, 1, 0, 0);
    if (!h) bench_die("enet: host_create");
    return h;
}

static unsigned host_port(ENetHost *h)
{
    ENetAddress a;
    if (enet_socket_get_address(h->socket, &a) != 0) bench_die("enet: get_address");
    return a.port;
}

static int server(void)
{
    ENetHost *h = host_on_loopback(1);
    printf("PORT %u\n", host_port(h));
    fflush(stdout);
    static uint8_t out[BENCH_MAX_SIZE];
    bench_server s = {0};
    ENetEvent ev;
    int quit = 0, connected = 0;
    uint64_t idle_deadline = bench_now_us() + 60 * 1000000ull;
    while (!quit) {
        int r = enet_host_service(h, &ev, 5);
        if (r < 0) bench_die("enet: service");
        if (r == 0) {
            if (!connected && bench_now_us() > idle_deadline) bench_die("enet: no client");
            continue;
        }
        switch (ev.type) {
        case ENET_EVENT_TYPE_CONNECT: connected = 1; break;
        case ENET_EVENT_TYPE_RECEIVE: {
            long n = bench_server_handle(&s, ev.packet->data, ev.packet->dataLength, out);
            enet_packet_destroy(ev.packet);
            if (n < 0)
                quit = 1;
            else if (n > 0) {
                send_reliable(ev.peer, out, (size_t)n);
                enet_host_flush(h);
            }
            break;
        }
        case ENET_EVENT_TYPE_DISCONNECT: quit = 1; break;
        default: break;
        }
    }
    enet_host_flush(h);
    enet_host_destroy(h);
    return 0;
}

static ENetPeer *connect_to(ENetHost *c, unsigned port)
{
    ENetAddress a;
    enet_address_set_host_ip(&a, "127.0.0.1");
    a.port = (enet_uint16)port;
    ENetPeer *peer = enet_host_connect(c, &a, 1, 0);
    if (!peer) bench_die("enet: connect");
    return peer;
}

typedef struct enet_client {
    ENetHost *host;
    ENetPeer *peer;
} enet_client;

static void enet_send(void *ctx, const uint8_t *msg, size_t len)
{
    send_reliable(((enet_client *)ctx)->peer, msg, len);
}

static void enet_flush(void *ctx)
{
    enet_host_flush(((enet_client *)ctx)->host);
}

/* Takes every event waiting, blocking up to 1 ms for the first one. */
static void enet_poll(void *ctx, bench_msg_fn fn, void *arg)
{
    enet_client *cl = ctx;
    ENetEvent ev;
    int r = enet_host_service(cl->host, &ev, 1);
    while (r > 0) {
        if (ev.type == ENET_EVENT_TYPE_RECEIVE) {
            fn(arg, ev.packet->data, ev.packet->dataLength);
            enet_packet_destroy(ev.packet);
        } else if (ev.type == ENET_EVENT_TYPE_DISCONNECT) {
            bench_die("enet: disconnected");
        }
        r = enet_host_check_events(cl->host, &ev);
    }
    if (r < 0) bench_die("enet: service");
}

static const bench_ops enet_ops = {"enet", enet_send, enet_flush, enet_poll};

static int client(unsigned port)
{
    ENetHost *c = enet_host_create(NULL, 1, 1, 0, 0);
    if (!c) bench_die("enet: client host");
    ENetPeer *peer = connect_to(c, port);
    ENetEvent ev;
    uint64_t deadline = bench_now_us() + 5000000;
    for (;;) {
        if (enet_host_service(c, &ev, 10) > 0 && ev.type == ENET_EVENT_TYPE_CONNECT) break;
        if (bench_now_us() > deadline) bench_die("enet: connect timed out");
    }
    enet_client cl = {c, peer};
    bench_client_run(&enet_ops, &cl);
    /* Let the quit reach the server before the peer goes away. */
    uint64_t until = bench_now_us() + 200000;
    while (bench_now_us() < until && enet_host_service(c, &ev, 10) >= 0)
        if (ev.type == ENET_EVENT_TYPE_RECEIVE) enet_packet_destroy(ev.packet);
    enet_host_destroy(c);
    return 0;
}

/* The memory test (bench_mem): a hub host and n client hosts of one peer each. */
static void *enet_hub_open(int n, unsigned *port)
{
    ENetHost *hub = host_on_loopback((size_t)n);
    *port = host_port(hub);
    return hub;
}

static int enet_hub_pump(void *hub)
{
    ENetEvent ev;
    int joined = 0;
    while (enet_host_service(hub, &ev, 1) > 0)
        if (ev.type == ENET_EVENT_TYPE_CONNECT) joined++;
    return joined;
}

static void enet_hub_close(void *hub)
{
    enet_host_destroy(hub);
}

static void *enet_clients_open(int n, unsigned port)
{
    ENetHost **cs = calloc((size_t)n, sizeof *cs);
    if (!cs) bench_die("out of memory");
    for (int i = 0; i < n; i++) {
        cs[i] = enet_host_create(NULL, 1, 1, 0, 0);
        if (!cs[i]) bench_die("enet: client host");
        connect_to(cs[i], port);
    }
    return cs;
}

static int enet_clients_pump(void *clients, int n)
{
    ENetHost **cs = clients;
    ENetEvent ev;
    int joined = 0;
    for (int i = 0; i < n; i++)
        while (enet_host_service(cs[i], &ev, 0) > 0)
            if (ev.type == ENET_EVENT_TYPE_CONNECT) joined++;
    return joined;
}

static const bench_mem_ops enet_mem_ops = {"enet",         enet_hub_open,     enet_hub_pump,
                                           enet_hub_close, enet_clients_open, enet_clients_pump};

int main(int argc, char **argv)
{
    if (enet_initialize() != 0) bench_die("enet_initialize");
    atexit(enet_deinitialize);
    if (argc >= 2 && strcmp(argv[1], "server") == 0) return server();
    if (argc >= 3 && strcmp(argv[1], "client") == 0) return client((unsigned)atoi(argv[2]));
    if (argc >= 3 && strcmp(argv[1], "mem") == 0) return bench_mem(&enet_mem_ops, atoi(argv[2]));
    fprintf(stderr, "usage: %s server | client <port> | mem <sessions>\n", argv[0]);
    return 2;
}
