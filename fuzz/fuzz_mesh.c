/*
 * fuzz_mesh.c - libFuzzer target for the mesh, introduction and relay records and the relay
 * and path frames, behind a valid session (fuzz_net.h: attacker A, victim V, bystander B, with
 * established sessions and a relay pair).
 *
 * The input is a sequence of chunks ([u8 flags][u8 dt_ms][u16 len LE][bytes], fuzz_common.h);
 * time advances by dt_ms before each, and flags & 15 (FN_MODE_*, modulo FN_MODES) says what A
 * does with the bytes: a record of one of the nine kinds MEMBERS .. INTRO_FAIL on its stream
 * (flags & 15 == 13: a PUNCH record, issue 12),
 * frames sealed with its keys (from its address or another one), or a datagram wrapped in a
 * RELAY or RELAYED frame. The network then runs until quiet.
 *
 * This target passes member records and broadcasts on as they are, so it finds what happens
 * before and at the signature checks (the seeds carry valid signatures);
 * fuzz_mesh_signed.c builds this file with FN_SIGNED and signs them, to reach the tables.
 *
 * The hosts live across inputs (setting them up costs two handshakes) and are built afresh
 * every FN_REBUILD inputs (the environment variable FUZZ_REBUILD overrides it: 1 to replay a
 * crash from a fresh state), and whenever A's session with V has ended.
 *
 * Checks: V never holds more than its memory budget, nor more sessions than the three hosts
 * make, and a graceful close works from whatever state the inputs left.
 */
#include "fuzz_net.h"

#ifndef FN_SIGNED
#define FN_SIGNED 0
#endif
#define FN_REBUILD 64
/* flags & 15 == 13 (which FN_MODES would fold onto MEMBERS): a PUNCH record, birthday punching */
#define FN_MODE_PUNCH 13

static fn_net net;
static int built, since_build, rebuild_every = FN_REBUILD, verbose;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *e = getenv("FUZZ_REBUILD");
    if (e && atoi(e) > 0) rebuild_every = atoi(e);
    verbose = getenv("FUZZ_VERBOSE") != NULL;
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

/* One RELAY or RELAYED frame around a datagram, sealed by A and delivered to V. */
static void wrap(uint8_t type, uint32_t channel, const uint8_t *d, size_t len)
{
    static uint8_t pt[P2P_PLAINTEXT_MAX], pkt[P2P_MAX_PACKET_PROBED];
    if (!len) return;
    if (len > P2P_MAX_PACKET) len = P2P_MAX_PACKET;
    p2p_wr w;
    p2p_wr_init(&w, pt, sizeof pt);
    p2p_wr_u8(&w, type);
    p2p_wr_u32(&w, channel);
    p2p_wr_varint(&w, len);
    p2p_wr_bytes(&w, d, len);
    FZ_CHECK(!w.bad);
    p2p_peer *av = p2p_lookup(net.h[FN_A], net.av);
    if (!av) return;
    size_t n = p2p_peer_seal_extra(av, pt, (size_t)(w.p - pt), pkt, net.now);
    if (n) p2p_host_recv(net.h[FN_V], &net.addr[FN_A], pkt, n, net.now);
}

static void chunk(const fz_chunk *c)
{
    static uint8_t body[65536 + 64], pkt[P2P_MAX_PACKET_PROBED];
    int mode = (c->flags & 15) % FN_MODES;
    p2p_peer *av = p2p_lookup(net.h[FN_A], net.av);
    if (!av || av->state != P2P_S_CONNECTED) return;
    if ((c->flags & 15) == FN_MODE_PUNCH) { /* issue 12: a PUNCH record (0x0e) */
        size_t len = c->len < sizeof body ? c->len : sizeof body;
        memcpy(body, c->data, len);
        (void)p2p_peer_append(net.h[FN_A], av, P2P_REC_PUNCH, body, len);
    } else if (mode <= FN_MODE_RECORD_LAST) {
        uint8_t kind = (uint8_t)(P2P_REC_MEMBERS + mode);
        size_t len = c->len < sizeof body ? c->len : sizeof body;
        memcpy(body, c->data, len);
        if (FN_SIGNED && kind == P2P_REC_MEMBERS) fn_sign_members(body, len);
        if (FN_SIGNED && kind == P2P_REC_BROADCAST) fn_sign_broadcast(body, len);
        (void)p2p_peer_append(net.h[FN_A], av, kind, body, len);
    } else if (mode == FN_MODE_FRAMES || mode == FN_MODE_FRAMES_AWAY) {
        size_t len = c->len < P2P_PLAINTEXT_MAX ? c->len : P2P_PLAINTEXT_MAX;
        size_t n = p2p_peer_seal_extra(av, c->data, len, pkt, net.now);
        const p2p_addr *from = mode == FN_MODE_FRAMES ? &net.addr[FN_A] : &net.away;
        if (n) p2p_host_recv(net.h[FN_V], from, pkt, n, net.now);
    } else if (mode == FN_MODE_RELAY) {
        uint32_t channel = net.channel;
        const uint8_t *d = c->data;
        size_t len = c->len;
        if ((c->flags & 0x10) && len >= 4) {
            channel = p2p_get_u32(d);
            d += 4;
            len -= 4;
        }
        wrap(P2P_FRAME_RELAY, channel, d, len);
    } else if (c->len >= 4) {
        wrap(P2P_FRAME_RELAYED, p2p_get_u32(c->data), c->data + 4, c->len - 4);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (built && (since_build >= rebuild_every || !fn_connected(&net, FN_A, FN_V))) teardown();
    if (!built) {
        fn_build(&net);
        built = 1;
        since_build = 0;
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
        FZ_CHECK(st.peers <= FN_HOSTS - 1);
    }
    if (verbose) {
        /* What the input reached: to check that the seeds get where they are meant to. */
        p2p_stats st;
        p2p_host_stats(net.h[FN_V], &st);
        fprintf(stderr,
                "victim: peers %llu members %llu dropped %llu intros %llu relayed %llu "
                "relay_dropped %llu path_changes %llu verify %llu unsolicited %llu "
                "memory %llu\n",
                (unsigned long long)st.peers, (unsigned long long)st.members,
                (unsigned long long)st.dropped, (unsigned long long)st.introductions,
                (unsigned long long)st.relayed_packets, (unsigned long long)st.relay_dropped,
                (unsigned long long)st.path_changes, (unsigned long long)st.work_verify,
                (unsigned long long)st.dropped_unsolicited, (unsigned long long)st.memory);
    }
    return 0;
}
