/*
 * bench_common.h - what every benchmark contender shares, so they are measured the same way.
 *
 * Each contender is one program with three roles:
 *   server              binds 127.0.0.1 on a free port, prints "PORT <n>", serves one client
 *   client <port>       runs the throughput and round-trip tests against the server and prints
 *                       "RESULT ..." lines (bench/run.sh turns them into the table)
 *   mem <n>             (p2pnet and ENet) heap bytes per idle session: a hub with n sessions
 *
 * The application protocol is the same for all: the first byte of a message is its kind.
 *   'D' data: bytes 1..2 hold ack_every (u16 LE). The server counts data messages and answers
 *       with an ACK after every ack_every of them.
 *   'F' the last data message of a run: counted, and acknowledged at once.
 *   'P' ping: echoed back unchanged.
 *   'A' ack (server to client): bytes 1..8 hold the cumulative count of data messages (u64 LE).
 *   'Q' quit.
 * The sender never has more than `window` unacknowledged data messages, so every transport
 * carries the same bounded amount in flight.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#define _GNU_SOURCE
#include <malloc.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BENCH_MAX_SIZE 65536
#define BENCH_ACK_LEN 16
#define BENCH_RTT_WARMUP 200
#define BENCH_RTT_SIZE 64 /* a ping's bytes */

static inline void bench_die(const char *what)
{
    fprintf(stderr, "bench: %s\n", what);
    exit(1);
}

static inline uint64_t bench_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Seconds per throughput run (BENCH_SECONDS, default 2). */
static inline double bench_seconds(void)
{
    const char *s = getenv("BENCH_SECONDS");
    double v = s ? atof(s) : 2.0;
    return v > 0 ? v : 2.0;
}

/* Round trips measured (BENCH_RTT_COUNT, default 5000). */
static inline int bench_rtt_count(void)
{
    const char *s = getenv("BENCH_RTT_COUNT");
    int v = s ? atoi(s) : 5000;
    return v > 0 ? v : 5000;
}

/* At most 256 messages and at most 4 MiB unacknowledged; acks come every quarter window. */
static inline uint32_t bench_window(size_t size)
{
    uint32_t w = (uint32_t)((4u << 20) / size);
    return w > 256 ? 256 : (w < 4 ? 4 : w);
}
static inline uint16_t bench_ack_every(size_t size)
{
    return (uint16_t)(bench_window(size) / 4);
}

static const size_t bench_sizes[] = {64, 1024, 65536};
#define BENCH_NSIZES (sizeof bench_sizes / sizeof bench_sizes[0])

/* 1 when the throughput run for size is wanted: BENCH_SIZES (e.g. "65536" or "64 1024")
 * names the sizes to run, for profiling one of them; unset, all run. */
static inline int bench_size_wanted(size_t size)
{
    const char *s = getenv("BENCH_SIZES");
    char *end;
    if (s == NULL || *s == '\0') return 1;
    while (*s != '\0') {
        unsigned long v = strtoul(s, &end, 10);
        if (end == s) break;
        if (v == size) return 1;
        s = end;
        while (*s == ' ' || *s == ',') s++;
    }
    return 0;
}

static inline void bench_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline uint16_t bench_get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}
static inline void bench_put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint64_t bench_get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* Server side: counts data messages and says what to send back. Returns the number of bytes
 * written to out (an ack or an echo; 0 for nothing), or -1 for quit. */
typedef struct bench_server {
    uint64_t count;
} bench_server;

static inline long bench_server_handle(bench_server *s, const uint8_t *msg, size_t len,
                                       uint8_t *out)
{
    if (len == 0) return 0;
    switch (msg[0]) {
    case 'D':
    case 'F': {
        s->count++;
        uint16_t every = len >= 3 ? bench_get_u16(msg + 1) : 1;
        if (msg[0] == 'F' || every == 0 || s->count % every == 0) {
            memset(out, 0, BENCH_ACK_LEN);
            out[0] = 'A';
            bench_put_u64(out + 1, s->count);
            return BENCH_ACK_LEN;
        }
        return 0;
    }
    case 'P': memcpy(out, msg, len); return (long)len;
    case 'Q': return -1;
    default: return 0;
    }
}

/* Client side of a throughput run, independent of the transport. */
typedef struct bench_tput {
    size_t size;
    uint32_t window;
    uint16_t ack_every;
    uint64_t base; /* the server's count before this run */
    uint64_t sent, acked, start_us, end_us, deadline_us;
    int final_sent;
} bench_tput;

static inline void bench_tput_start(bench_tput *t, size_t size, uint64_t server_count)
{
    memset(t, 0, sizeof *t);
    t->size = size;
    t->window = bench_window(size);
    t->ack_every = bench_ack_every(size);
    t->base = server_count;
    t->start_us = bench_now_us();
    t->deadline_us = t->start_us + (uint64_t)(bench_seconds() * 1e6);
}

/* 1 when another message may go now; fills msg (size bytes) with it. */
static inline int bench_tput_next(bench_tput *t, uint8_t *msg)
{
    if (t->final_sent || t->sent - t->acked >= t->window) return 0;
    int last = bench_now_us() >= t->deadline_us;
    msg[0] = last ? 'F' : 'D';
    bench_put_u16(msg + 1, t->ack_every);
    t->sent++;
    if (last) t->final_sent = 1;
    return 1;
}

/* Feeds a message from the server; returns 1 when the run is complete. */
static inline int bench_tput_on_msg(bench_tput *t, const uint8_t *msg, size_t len)
{
    if (len >= 9 && msg[0] == 'A') {
        uint64_t c = bench_get_u64(msg + 1) - t->base;
        if (c > t->acked) t->acked = c;
    }
    if (t->final_sent && t->acked >= t->sent) {
        if (!t->end_us) t->end_us = bench_now_us();
        return 1;
    }
    return 0;
}

static inline void bench_tput_report(const char *who, const bench_tput *t)
{
    double secs = (double)(t->end_us - t->start_us) / 1e6;
    double mps = (double)t->sent / secs;
    printf("RESULT %s tput %zu %.0f %.2f %llu\n", who, t->size, mps, mps * (double)t->size / 1e6,
           (unsigned long long)t->sent);
    fflush(stdout);
}

static inline int bench_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Sorts samples and prints p50 and p99 (microseconds). */
static inline void bench_rtt_report(const char *who, uint64_t *samples, int n)
{
    qsort(samples, (size_t)n, sizeof *samples, bench_cmp_u64);
    uint64_t p50 = samples[n / 2];
    uint64_t p99 = samples[(size_t)((double)n * 0.99) < (size_t)n ? (size_t)((double)n * 0.99)
                                                                  : (size_t)n - 1];
    printf("RESULT %s rtt %llu %llu %d\n", who, (unsigned long long)p50, (unsigned long long)p99,
           n);
    fflush(stdout);
}

/* Hands one message from the server to whoever polled. */
typedef void (*bench_msg_fn)(void *arg, const uint8_t *msg, size_t len);

/* A contender's client, as bench_client_run drives it. ctx is the contender's own state. */
typedef struct bench_ops {
    const char *name; /* the contender in RESULT lines */
    /* Queues one message for the server: reliable and in order. Dies on failure. */
    void (*send)(void *ctx, const uint8_t *msg, size_t len);
    /* Puts every queued message on the wire. */
    void (*flush)(void *ctx);
    /* Waits for the server a little (about a millisecond; a blocking transport until a message
     * comes) and hands each message that arrived to fn, in order. Dies when the session is lost. */
    void (*poll)(void *ctx, bench_msg_fn fn, void *arg);
} bench_ops;

typedef struct bench_tput_poll {
    bench_tput *t;
    int done;
} bench_tput_poll;

static inline void bench_on_tput_msg(void *arg, const uint8_t *msg, size_t len)
{
    bench_tput_poll *p = arg;
    p->done |= bench_tput_on_msg(p->t, msg, len);
}

static inline void bench_on_rtt_msg(void *arg, const uint8_t *msg, size_t len)
{
    if (len == BENCH_RTT_SIZE && msg[0] == 'P') *(int *)arg = 1;
}

/* The client side for every contender, so all are measured by the same code: a throughput run
 * per size, then round trips, then quit. The contender connects before and closes after. */
static inline void bench_client_run(const bench_ops *ops, void *ctx)
{
    static uint8_t msg[BENCH_MAX_SIZE];
    uint64_t server_count = 0;

    for (size_t i = 0; i < BENCH_NSIZES; i++) {
        bench_tput t;
        bench_tput_poll p = {&t, 0};
        if (!bench_size_wanted(bench_sizes[i])) continue;
        memset(msg, 0xab, sizeof msg);
        bench_tput_start(&t, bench_sizes[i], server_count);
        while (!p.done) {
            int queued = 0;
            while (bench_tput_next(&t, msg)) {
                ops->send(ctx, msg, t.size);
                queued = 1;
            }
            if (queued) ops->flush(ctx);
            ops->poll(ctx, bench_on_tput_msg, &p);
        }
        server_count += t.sent;
        bench_tput_report(ops->name, &t);
    }

    int n = bench_rtt_count();
    uint64_t *rtt = calloc((size_t)n, sizeof *rtt);
    if (!rtt) bench_die("out of memory");
    memset(msg, 0, BENCH_RTT_SIZE);
    msg[0] = 'P';
    for (int i = -BENCH_RTT_WARMUP; i < n; i++) {
        uint64_t t0 = bench_now_us();
        int got = 0;
        ops->send(ctx, msg, BENCH_RTT_SIZE);
        ops->flush(ctx);
        while (!got) ops->poll(ctx, bench_on_rtt_msg, &got);
        if (i >= 0) rtt[i] = bench_now_us() - t0;
    }
    bench_rtt_report(ops->name, rtt, n);
    free(rtt);

    msg[0] = 'Q';
    ops->send(ctx, msg, 1);
    ops->flush(ctx);
}

/* Heap bytes in use: small chunks plus mmap'd large ones. */
static inline size_t bench_heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

static inline void bench_pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    (void)sched_setaffinity(0, sizeof set, &set);
}

/* 1 when fd can be read within usec microseconds (0: now); the memory tests' hub and clients
 * tell each other "ready" and "done" through pipes. */
static inline int bench_readable(int fd, long usec)
{
    struct timeval tv = {0, usec};
    fd_set fds;
    FD_ZERO(&fds);
    FD_SET(fd, &fds);
    return select(fd + 1, &fds, NULL, NULL, &tv) > 0;
}

/* A contender's side of the memory test, as bench_mem drives it. */
typedef struct bench_mem_ops {
    const char *name; /* the contender in RESULT lines */
    /* In this process: a hub on 127.0.0.1 for n sessions; *port is where it listens. */
    void *(*hub_open)(int n, unsigned *port);
    /* Serves the hub for about a millisecond; returns how many sessions were established. */
    int (*hub_pump)(void *hub);
    void (*hub_close)(void *hub);
    /* In the child: n clients, each connecting to the hub at port. */
    void *(*clients_open)(int n, unsigned port);
    /* Serves every client once without waiting; returns how many sessions were established. */
    int (*clients_pump)(void *clients, int n);
} bench_mem_ops;

/* Heap bytes of a hub holding n idle sessions, in this process; the n clients run in a child
 * pinned to the other core. */
static inline size_t bench_hub_bytes(const bench_mem_ops *ops, int n)
{
    int ready[2], done[2];
    unsigned port;
    if (pipe(ready) != 0 || pipe(done) != 0) bench_die("pipe");
    size_t before = bench_heap_in_use();
    void *hub = ops->hub_open(n, &port);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        bench_pin(1);
        close(ready[0]);
        close(done[1]);
        void *clients = ops->clients_open(n, port);
        int joined = 0, signalled = 0;
        uint64_t deadline = bench_now_us() + 20000000;
        for (;;) {
            joined += ops->clients_pump(clients, n);
            if (joined == n && !signalled) {
                char b = 0;
                if (write(ready[1], &b, 1) != 1) _exit(1);
                signalled = 1;
            }
            if (bench_readable(done[0], 1000)) break;
            if (bench_now_us() > deadline) _exit(1);
        }
        _exit(0);
    }
    close(ready[1]);
    close(done[0]);
    int joined = 0, child_ready = 0;
    uint64_t deadline = bench_now_us() + 20000000;
    while (joined < n || !child_ready) {
        joined += ops->hub_pump(hub);
        if (!child_ready) {
            char b;
            if (bench_readable(ready[0], 0) && read(ready[0], &b, 1) == 1) child_ready = 1;
        }
        if (bench_now_us() > deadline) {
            fprintf(stderr, "%s mem: %d of %d sessions established\n", ops->name, joined, n);
            exit(1);
        }
    }
    /* Settle: acknowledgements drain, so only idle session state remains. */
    uint64_t until = bench_now_us() + 300000;
    while (bench_now_us() < until) ops->hub_pump(hub);
    size_t after = bench_heap_in_use();
    char b = 0;
    if (write(done[1], &b, 1) != 1) bench_die("pipe");
    waitpid(pid, NULL, 0);
    close(ready[0]);
    close(done[1]);
    ops->hub_close(hub);
    return after - before;
}

/* Heap per idle session, reported as the slope between n/2 and n sessions so that the hub's
 * fixed cost drops out. */
static inline int bench_mem(const bench_mem_ops *ops, int n)
{
    size_t half = bench_hub_bytes(ops, n / 2), full = bench_hub_bytes(ops, n);
    double per = ((double)full - (double)half) / (double)(n - n / 2);
    printf("RESULT %s mem %.0f %d\n", ops->name, per, n);
    return 0;
}

#endif
