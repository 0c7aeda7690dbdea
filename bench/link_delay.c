/*
 * link_delay.c - a fixed one-way delay for bench/link.sh, on a kernel without netem or fq.
 *
 *   link_delay QUEUE_NUM DELAY_MS
 *
 * iptables hands every packet arriving on the link to netfilter queue QUEUE_NUM (the NFQUEUE
 * target); the packet stays inside the kernel, and this program only says when it may go on:
 * DELAY_MS after it arrived. Packets leave in the order they came (the queue's packet ids
 * grow), so one batch verdict ("accept every id up to n") releases all that are due. It talks
 * nfnetlink directly (no libnetfilter_queue) and asks for metadata only, never packet bytes.
 * Prints "READY" once bound; runs until killed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <linux/netlink.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Packets held at once, at most: 100 Mbit/s of full-size packets for more than a second. */
#define HELD_MAX 16384
/* The kernel queue's own limit, above HELD_MAX so the kernel never drops for length first. */
#define KERNEL_QUEUE_MAX 20000
#define SOCKET_BUFFER (16 * 1024 * 1024)
#define RECV_BUF 65536
#define MSG_BUF 256

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void die(const char *what)
{
    fprintf(stderr, "link_delay: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* Appends one attribute to the message at buf (its nlmsg_len grows). */
static void put_attr(char *buf, uint16_t type, const void *data, size_t len)
{
    struct nlmsghdr *nh = (struct nlmsghdr *)buf;
    struct nlattr *a = (struct nlattr *)(buf + NLMSG_ALIGN(nh->nlmsg_len));
    a->nla_type = type;
    a->nla_len = (uint16_t)(NLA_HDRLEN + len);
    memcpy((char *)a + NLA_HDRLEN, data, len);
    nh->nlmsg_len = NLMSG_ALIGN(nh->nlmsg_len) + NLA_ALIGN(a->nla_len);
}

/* Starts a message to the queue subsystem: netlink header and nfgenmsg. */
static void start_msg(char *buf, uint8_t type, uint16_t queue, uint16_t flags)
{
    struct nlmsghdr *nh = (struct nlmsghdr *)buf;
    struct nfgenmsg *g;
    memset(buf, 0, MSG_BUF);
    nh->nlmsg_len = NLMSG_LENGTH(sizeof *g);
    nh->nlmsg_type = (uint16_t)((NFNL_SUBSYS_QUEUE << 8) | type);
    nh->nlmsg_flags = (uint16_t)(NLM_F_REQUEST | flags);
    g = NLMSG_DATA(nh);
    g->nfgen_family = AF_UNSPEC;
    g->version = NFNETLINK_V0;
    g->res_id = htons(queue);
}

static void send_msg(int fd, const char *buf)
{
    const struct nlmsghdr *nh = (const struct nlmsghdr *)buf;
    struct sockaddr_nl to = {.nl_family = AF_NETLINK};
    if (sendto(fd, buf, nh->nlmsg_len, 0, (struct sockaddr *)&to, sizeof to) < 0) die("sendto");
}

/* Reads the kernel's answer to a request sent with NLM_F_ACK; dies on an error. */
static void expect_ack(int fd)
{
    char buf[MSG_BUF * 4];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    struct nlmsghdr *nh = (struct nlmsghdr *)buf;
    if (n < (ssize_t)sizeof *nh) die("recv ack");
    if (nh->nlmsg_type == NLMSG_ERROR) {
        struct nlmsgerr *e = NLMSG_DATA(nh);
        if (e->error != 0) {
            errno = -e->error;
            die("queue config");
        }
    }
}

static void configure(int fd, uint16_t queue)
{
    char buf[MSG_BUF];
    struct nfqnl_msg_config_cmd cmd = {NFQNL_CFG_CMD_BIND, 0, htons(AF_INET)};
    struct nfqnl_msg_config_params params = {htonl(0), NFQNL_COPY_META};
    uint32_t maxlen = htonl(KERNEL_QUEUE_MAX);

    start_msg(buf, NFQNL_MSG_CONFIG, queue, NLM_F_ACK);
    put_attr(buf, NFQA_CFG_CMD, &cmd, sizeof cmd);
    send_msg(fd, buf);
    expect_ack(fd);
    start_msg(buf, NFQNL_MSG_CONFIG, queue, NLM_F_ACK);
    put_attr(buf, NFQA_CFG_PARAMS, &params, sizeof params);
    put_attr(buf, NFQA_CFG_QUEUE_MAXLEN, &maxlen, sizeof maxlen);
    send_msg(fd, buf);
    expect_ack(fd);
}

/* Lets every queued packet with an id up to `id` go on. */
static void release(int fd, uint16_t queue, uint32_t id)
{
    char buf[MSG_BUF];
    struct nfqnl_msg_verdict_hdr v = {htonl(NF_ACCEPT), htonl(id)};
    start_msg(buf, NFQNL_MSG_VERDICT_BATCH, queue, 0);
    put_attr(buf, NFQA_VERDICT_HDR, &v, sizeof v);
    send_msg(fd, buf);
}

/* The packet id in a NFQNL_MSG_PACKET message, or 0 when it has none. */
static uint32_t packet_id(struct nlmsghdr *nh)
{
    size_t off = NLMSG_LENGTH(sizeof(struct nfgenmsg));
    while (off + NLA_HDRLEN <= nh->nlmsg_len) {
        struct nlattr *a = (struct nlattr *)((char *)nh + off);
        if (a->nla_len < NLA_HDRLEN) break;
        if ((a->nla_type & NLA_TYPE_MASK) == NFQA_PACKET_HDR &&
            a->nla_len >= NLA_HDRLEN + sizeof(struct nfqnl_msg_packet_hdr)) {
            struct nfqnl_msg_packet_hdr ph;
            memcpy(&ph, (char *)a + NLA_HDRLEN, sizeof ph);
            return ntohl(ph.packet_id);
        }
        off += NLA_ALIGN(a->nla_len);
    }
    return 0;
}

int main(int argc, char **argv)
{
    static uint32_t held_id[HELD_MAX];
    static uint64_t held_due[HELD_MAX];
    static char rbuf[RECV_BUF];
    size_t head = 0, tail = 0; /* held packets: [head, tail) modulo HELD_MAX */
    struct sockaddr_nl me = {.nl_family = AF_NETLINK};
    int size = SOCKET_BUFFER, one = 1, fd;
    uint16_t queue;
    uint64_t delay;

    if (argc != 3) {
        fprintf(stderr, "usage: %s QUEUE_NUM DELAY_MS\n", argv[0]);
        return 2;
    }
    queue = (uint16_t)atoi(argv[1]);
    delay = (uint64_t)(atof(argv[2]) * 1000.0);
    fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
    if (fd < 0) die("socket");
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    /* A lost notification must not stall the queue: the batch verdicts release its packet. */
    (void)setsockopt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&me, sizeof me) != 0) die("bind");
    configure(fd, queue);
    printf("READY\n");
    fflush(stdout);

    for (;;) {
        uint64_t now = now_us();
        uint32_t last = 0;
        int got_due = 0, timeout = -1;
        /* Release what is due, in one verdict for the newest due packet. */
        while (head != tail && held_due[head % HELD_MAX] <= now) {
            last = held_id[head % HELD_MAX];
            got_due = 1;
            head++;
        }
        if (got_due) release(fd, queue, last);
        if (head != tail) {
            uint64_t wait = held_due[head % HELD_MAX] - now;
            timeout = (int)((wait + 999) / 1000);
        }
        struct pollfd pfd = {fd, POLLIN, 0};
        if (poll(&pfd, 1, timeout) < 0 && errno != EINTR) die("poll");
        if (!(pfd.revents & POLLIN)) continue;
        for (;;) {
            ssize_t n = recv(fd, rbuf, sizeof rbuf, MSG_DONTWAIT);
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR || errno == ENOBUFS) break;
                die("recv");
            }
            now = now_us();
            for (struct nlmsghdr *nh = (struct nlmsghdr *)rbuf; NLMSG_OK(nh, (size_t)n);
                 nh = NLMSG_NEXT(nh, n)) {
                if (nh->nlmsg_type != ((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET)) continue;
                uint32_t id = packet_id(nh);
                if (id == 0) continue;
                if (tail - head >= HELD_MAX) { /* full: let the oldest go early */
                    release(fd, queue, held_id[head % HELD_MAX]);
                    head++;
                }
                held_id[tail % HELD_MAX] = id;
                held_due[tail % HELD_MAX] = now + delay;
                tail++;
            }
        }
    }
}
