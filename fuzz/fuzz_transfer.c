/*
 * fuzz_transfer.c - libFuzzer target for streaming transfers (docs/PROTOCOL.md section 4.2)
 * behind a valid session (fuzz_net.h: attacker A, victim V, bystander B).
 *
 * The input is a sequence of chunks ([u8 flags][u8 dt_ms][u16 len LE][bytes], fuzz_common.h);
 * time advances by dt_ms before each, and flags & 7 (XF_MODE_*) says what happens:
 *   RECORD  the bytes are the body of a TRANSFER record on A's stream to V (any op, any field);
 *   OPEN    A offers a transfer through the API (total: the first 4 bytes, unless flags & 0x10;
 *           meta: the rest);
 *   WRITE   A writes the bytes to its newest transfer (ignored when it may not);
 *   FINISH  A finishes its newest transfer (flags & 0x10: cancels it, with the bytes as reason);
 *   ACCEPT  V accepts every transfer offered to it, from offset 0 (flags & 0x10: absorbs the
 *           bytes first and accepts from their length);
 *   CANCEL  V cancels every transfer it has, with the bytes as reason.
 * The network then runs until quiet.
 *
 * Checks: V never holds more than its memory budget, at most P2P_TRANSFER_PER_PEER transfers
 * from A, and a graceful close works from whatever state the inputs left.
 */
#include "fuzz_net.h"

#include "../csrc/p2p_transfer.h"

#define XF_REBUILD 64
/* Transfer handles V is tried with: handles count up from 1 in each host. */
#define XF_HANDLES 256

enum {
    XF_MODE_RECORD = 0,
    XF_MODE_OPEN,
    XF_MODE_WRITE,
    XF_MODE_FINISH,
    XF_MODE_ACCEPT,
    XF_MODE_CANCEL,
    XF_MODES
};

static fn_net net;
static int built, since_build, rebuild_every = XF_REBUILD;
static uint32_t newest; /* A's newest transfer */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *e = getenv("FUZZ_REBUILD");
    if (e && atoi(e) > 0) rebuild_every = atoi(e);
    fn_init();
    return 0;
}

static void teardown(void)
{
    if (!built) return;
    p2p_host_close(net.h[FN_V], net.now);
    fz_events(net.h[FN_V], net.now);
    fz_discard(net.h[FN_V]);
    fn_free(&net);
    built = 0;
}

static void chunk(const fz_chunk *c)
{
    static uint8_t body[P2P_TRANSFER_CHUNK + 64];
    p2p_host *a = net.h[FN_A], *v = net.h[FN_V];
    p2p_peer *av = p2p_lookup(a, net.av);
    if (!av || av->state != P2P_S_CONNECTED) return;
    size_t len = c->len < sizeof body ? c->len : sizeof body;
    memcpy(body, c->data, len);
    char reason[P2P_TRANSFER_REASON_MAX + 1];
    size_t rl = len < P2P_TRANSFER_REASON_MAX ? len : P2P_TRANSFER_REASON_MAX;
    memcpy(reason, body, rl);
    reason[rl] = 0;
    switch ((c->flags & 7) % XF_MODES) {
    case XF_MODE_RECORD: (void)p2p_peer_append(a, av, P2P_REC_TRANSFER, body, len); break;
    case XF_MODE_OPEN: {
        uint64_t total = P2P_TRANSFER_UNKNOWN;
        const uint8_t *meta = body;
        size_t mlen = len;
        if (!(c->flags & 0x10) && len >= 4) {
            total = p2p_get_u32(body);
            meta += 4;
            mlen -= 4;
        }
        uint32_t t;
        if (p2p_host_transfer_open(a, net.av, 0, total, meta, mlen, &t, net.now) == 0) newest = t;
        break;
    }
    case XF_MODE_WRITE:
        if (len) (void)p2p_host_transfer_write(a, newest, body, len, net.now);
        break;
    case XF_MODE_FINISH:
        if (c->flags & 0x10)
            (void)p2p_host_transfer_cancel(a, newest, reason, net.now);
        else
            (void)p2p_host_transfer_finish(a, newest, net.now);
        break;
    case XF_MODE_ACCEPT:
        for (uint32_t t = 1; t <= XF_HANDLES; t++) {
            uint64_t off = 0;
            if ((c->flags & 0x10) && p2p_host_transfer_absorb(v, t, body, len) == 0) off = len;
            (void)p2p_host_transfer_accept(v, t, off, net.now);
        }
        break;
    default:
        for (uint32_t t = 1; t <= XF_HANDLES; t++)
            (void)p2p_host_transfer_cancel(v, t, reason, net.now);
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (built && (since_build >= rebuild_every || !fn_connected(&net, FN_A, FN_V))) teardown();
    if (!built) {
        fn_build(&net);
        built = 1;
        since_build = 0;
        newest = 0;
    }
    since_build++;

    const uint8_t *p = data;
    size_t left = size;
    fz_chunk c;
    while (fn_next_chunk(&net, &p, &left, &c)) {
        chunk(&c);
        fn_settle(&net);

        p2p_stats st;
        p2p_host_stats(net.h[FN_V], &st);
        FZ_CHECK(st.memory <= FN_MEMORY);
        p2p_peer *va = p2p_lookup(net.h[FN_V], fn_handle(&net, FN_V, FN_A));
        if (va) FZ_CHECK(va->xfer_in <= P2P_TRANSFER_PER_PEER);
    }
    return 0;
}
