/*
 * bench/linkemu.c - a user-space link emulator for UDP on 127.0.0.1, for the benchmarks that
 * need a real link's delay, rate, queue, loss and reordering (this kernel has no netem).
 *
 * It stands between a client and a server as a two-port relay:
 *
 *     client  --->  127.0.0.1:LISTEN  [a->b link]  from 127.0.0.1:ephemeral  --->  server
 *     client  <---  127.0.0.1:LISTEN  [b->a link]  to   127.0.0.1:ephemeral  <---  server
 *
 * The client sends to LISTEN; the emulator remembers the client's address from the last
 * datagram it got there. Both directions are separate links with the same settings:
 *
 *   - a bottleneck of `rate` bits per second with a drop-tail queue of `queue` bytes; a
 *     datagram costs its UDP payload plus 28 bytes of IPv4 and UDP header;
 *   - then random loss with probability `loss`;
 *   - then a one-way propagation delay of `delay` milliseconds;
 *   - with probability `reorder`, an extra delay drawn uniformly from [0, reorder_max] ms,
 *     so that the datagram may overtake or be overtaken (the queue itself stays FIFO);
 *   - datagrams larger than `mtu - 28` bytes are dropped, as a path of that MTU would.
 *
 * Usage: linkemu LISTEN_PORT SERVER_PORT [key=value ...]
 *   keys: rate (bit/s, 0 = unlimited), queue (bytes, default one BDP at the rate and twice
 *   the delay, at least 64 KiB), delay (ms one-way), loss, reorder (probabilities 0-1),
 *   reorder_max (ms), mtu (bytes, default 1500), seed.
 * It prints "PORT n" once bound (LISTEN_PORT 0 picks one) and runs until SIGTERM or SIGINT,
 * then prints its counters on stderr. Only ever talks to 127.0.0.1.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define IP_UDP_HEADER 28
#define MAX_DATAGRAM 65536
#define NS_PER_S 1000000000ull
#define NS_PER_MS 1000000ull
#define MIN_QUEUE (64u * 1024u)
/* Datagrams read per wake-up at most, so that deliveries due meanwhile are not held up. */
#define READ_BATCH 64

typedef struct link_cfg {
    uint64_t rate_bps, queue_bytes, delay_ns, reorder_max_ns;
    double loss, reorder;
    size_t mtu;
} link_cfg;

typedef struct link_stats {
    uint64_t in, out, bytes_out, queue_drops, loss_drops, too_big, reordered;
} link_stats;

typedef struct emu_link {
    uint64_t busy_until; /* when the bottleneck has sent everything queued so far */
    link_stats st;
} emu_link;

/* A datagram on its way: delivered at `due` through socket `via` to `to`. */
typedef struct pending {
    uint64_t due, order;
    int via;
    struct sockaddr_in to;
    size_t len;
    uint8_t *data;
} pending;

static pending *heap;
static size_t heap_n, heap_cap;
static uint64_t next_order;
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static volatile sig_atomic_t stop;

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

/* xorshift64*: reproducible from the seed, good enough for drop decisions. */
static double uniform(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 0x2545f4914f6cdd1dull) >> 11) / (double)(1ull << 53);
}

static int earlier(const pending *a, const pending *b)
{
    return a->due < b->due || (a->due == b->due && a->order < b->order);
}

static void heap_push(const pending *p)
{
    if (heap_n == heap_cap) {
        heap_cap = heap_cap ? 2 * heap_cap : 1024;
        heap = realloc(heap, heap_cap * sizeof *heap);
        if (!heap) die("realloc");
    }
    size_t i = heap_n++;
    heap[i] = *p;
    while (i > 0 && earlier(&heap[i], &heap[(i - 1) / 2])) {
        pending t = heap[i];
        heap[i] = heap[(i - 1) / 2];
        heap[(i - 1) / 2] = t;
        i = (i - 1) / 2;
    }
}

static pending heap_pop(void)
{
    pending top = heap[0];
    heap[0] = heap[--heap_n];
    for (size_t i = 0;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < heap_n && earlier(&heap[l], &heap[m])) m = l;
        if (r < heap_n && earlier(&heap[r], &heap[m])) m = r;
        if (m == i) break;
        pending t = heap[i];
        heap[i] = heap[m];
        heap[m] = t;
        i = m;
    }
    return top;
}

/* One datagram enters a link at `now`: queued, dropped or scheduled for delivery. */
static void enter(emu_link *l, const link_cfg *c, const uint8_t *data, size_t len, int via,
                  const struct sockaddr_in *to, uint64_t now)
{
    uint64_t wire = len + IP_UDP_HEADER, depart = now;
    l->st.in++;
    if (wire > c->mtu) {
        l->st.too_big++;
        return;
    }
    if (c->rate_bps) {
        uint64_t start = l->busy_until > now ? l->busy_until : now;
        uint64_t backlog = (start - now) * c->rate_bps / 8 / NS_PER_S;
        if (backlog + wire > c->queue_bytes) {
            l->st.queue_drops++;
            return;
        }
        depart = start + wire * 8 * NS_PER_S / c->rate_bps;
        l->busy_until = depart;
    }
    if (c->loss > 0 && uniform() < c->loss) {
        l->st.loss_drops++;
        return;
    }
    pending p = {depart + c->delay_ns, next_order++, via, *to, len, malloc(len ? len : 1)};
    if (!p.data) die("malloc");
    memcpy(p.data, data, len);
    if (c->reorder > 0 && uniform() < c->reorder) {
        p.due += (uint64_t)(uniform() * (double)c->reorder_max_ns);
        l->st.reordered++;
    }
    heap_push(&p);
}

static int udp_socket(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (fd < 0) die("socket");
    int buf = 8 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) die("bind");
    return fd;
}

static uint16_t bound_port(int fd)
{
    struct sockaddr_in a;
    socklen_t n = sizeof a;
    if (getsockname(fd, (struct sockaddr *)&a, &n) != 0) die("getsockname");
    return ntohs(a.sin_port);
}

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static void print_stats(const char *name, const link_stats *s)
{
    fprintf(stderr,
            "linkemu %s: in %llu out %llu bytes %llu queue_drops %llu loss_drops %llu "
            "too_big %llu reordered %llu\n",
            name, (unsigned long long)s->in, (unsigned long long)s->out,
            (unsigned long long)s->bytes_out, (unsigned long long)s->queue_drops,
            (unsigned long long)s->loss_drops, (unsigned long long)s->too_big,
            (unsigned long long)s->reordered);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: linkemu LISTEN_PORT SERVER_PORT [rate= queue= delay= loss= "
                        "reorder= reorder_max= mtu= seed=]\n");
        return 2;
    }
    link_cfg c = {0, 0, 0, 0, 0, 0, 1500};
    int queue_set = 0;
    for (int i = 3; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        if (!eq) {
            fprintf(stderr, "linkemu: bad argument %s\n", argv[i]);
            return 2;
        }
        *eq = '\0';
        const char *k = argv[i];
        double v = strtod(eq + 1, NULL);
        if (!strcmp(k, "rate"))
            c.rate_bps = (uint64_t)v;
        else if (!strcmp(k, "queue"))
            c.queue_bytes = (uint64_t)v, queue_set = 1;
        else if (!strcmp(k, "delay"))
            c.delay_ns = (uint64_t)(v * NS_PER_MS);
        else if (!strcmp(k, "loss"))
            c.loss = v;
        else if (!strcmp(k, "reorder"))
            c.reorder = v;
        else if (!strcmp(k, "reorder_max"))
            c.reorder_max_ns = (uint64_t)(v * NS_PER_MS);
        else if (!strcmp(k, "mtu"))
            c.mtu = (size_t)v;
        else if (!strcmp(k, "seed"))
            rng_state ^= (uint64_t)v * 0x100000001b3ull;
        else {
            fprintf(stderr, "linkemu: unknown key %s\n", k);
            return 2;
        }
    }
    if (!queue_set) {
        /* one bandwidth-delay product at the round trip the two delays make */
        c.queue_bytes = c.rate_bps / 8 * (2 * c.delay_ns) / NS_PER_S;
        if (c.queue_bytes < MIN_QUEUE) c.queue_bytes = MIN_QUEUE;
    }
    /* Wake-ups on time: the default timer slack of 50 us would blur sub-millisecond delays. */
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);

    int fa = udp_socket((uint16_t)atoi(argv[1])), fb = udp_socket(0);
    struct sockaddr_in server = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
    server.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct sockaddr_in client = {0};
    int have_client = 0;
    printf("PORT %u\n", bound_port(fa));
    fflush(stdout);

    static uint8_t buf[MAX_DATAGRAM];
    emu_link ab = {0}, ba = {0};
    while (!stop) {
        uint64_t now = now_ns();
        /* Deliver everything due. */
        while (heap_n && heap[0].due <= now) {
            pending p = heap_pop();
            emu_link *l = p.via == fb ? &ab : &ba;
            if (sendto(p.via, p.data, p.len, 0, (struct sockaddr *)&p.to, sizeof p.to) >= 0) {
                l->st.out++;
                l->st.bytes_out += p.len;
            }
            free(p.data);
        }
        struct pollfd pf[2] = {{fa, POLLIN, 0}, {fb, POLLIN, 0}};
        struct timespec ts, *tp = NULL;
        if (heap_n) {
            uint64_t wait = heap[0].due > now ? heap[0].due - now : 0;
            ts.tv_sec = (time_t)(wait / NS_PER_S);
            ts.tv_nsec = (long)(wait % NS_PER_S);
            tp = &ts;
        }
        if (ppoll(pf, 2, tp, NULL) < 0) {
            if (errno == EINTR) continue;
            die("ppoll");
        }
        now = now_ns();
        for (int i = 0; i < READ_BATCH; i++) {
            struct sockaddr_in from;
            socklen_t fl = sizeof from;
            ssize_t n = recvfrom(fa, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
            if (n < 0) break;
            client = from;
            have_client = 1;
            enter(&ab, &c, buf, (size_t)n, fb, &server, now);
        }
        for (int i = 0; i < READ_BATCH; i++) {
            struct sockaddr_in from;
            socklen_t fl = sizeof from;
            ssize_t n = recvfrom(fb, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
            if (n < 0) break;
            /* only the server's datagrams go back, and only once a client is known */
            if (from.sin_port != server.sin_port || !have_client) continue;
            enter(&ba, &c, buf, (size_t)n, fa, &client, now);
        }
    }
    print_stats("a->b", &ab.st);
    print_stats("b->a", &ba.st);
    return 0;
}
