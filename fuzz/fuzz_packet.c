/*
 * fuzz_packet.c - libFuzzer target for everything p2p_host_recv() does with a datagram once a
 * session exists. Each input starts from the same state: host A holds an established session
 * with host B (handshake run in memory), A has stream data in flight that B never
 * acknowledged, and host C is fresh. The input is a sequence of chunks
 * ([u8 flags][u8 dt_ms][u16 len][bytes], see fuzz_common.h); time advances by dt_ms before
 * each, and flags & 3 says how the bytes reach A:
 *   0  raw, as a whole datagram (to A and to the fresh host C)
 *   1  behind a valid DATA header for the live session (forged ciphertext: replay window and
 *      authentication are what is exercised)
 *   2  as the plaintext of a DATA packet sealed with B's real session key, so the frame,
 *      ACK, stream and record handling behind authentication see the fuzzed bytes
 *   3  as 2, but from another address (path migration)
 * flags >> 2 & 15 skips packet numbers (reordering, gaps); flags & 0x40 makes A send a
 * message first, flags & 0x80 a message that wants a reply.
 */
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_init();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t now = 1000000;
    p2p_addr aa = fz_addr(1, 1000), ba = fz_addr(2, 2000);
    p2p_addr other = fz_addr(4, 4000);
    p2p_host *a = fz_host(0, 101, now), *b = fz_host(1, 202, now), *c = fz_host(2, 303, now);

    p2p_peer_handle in_b = 0;
    FZ_CHECK(p2p_host_connect(b, &aa, fz_ident[0].ed_pk, now, &in_b) == 0);
    FZ_CHECK(fz_establish(a, &aa, b, &ba, &now));
    p2p_peer_handle in_a = p2p_host_find(a, fz_ident[1].ed_pk);
    p2p_peer *bp = p2p_lookup(b, in_b);
    FZ_CHECK(in_a && bp && bp->state == P2P_S_CONNECTED);

    /* In flight from A and never acknowledged: fuzzed ACK frames have something to ack. */
    static uint8_t big[3000];
    FZ_CHECK(p2p_peer_send(a, in_a, 1, (const uint8_t *)"hello", 5, 0, NULL, now) == 0);
    FZ_CHECK(p2p_peer_send(a, in_a, 2, big, sizeof big, 1, NULL, now) == 0);
    fz_discard(a);

    /* B's side of the session: what a packet from B to A is sealed with. */
    uint8_t key[P2P_KEY_LEN];
    memcpy(key, bp->keys.send, P2P_KEY_LEN);
    uint32_t index = bp->remote_index;
    uint64_t pn = bp->rec.next_pn;

    const uint8_t *p = data;
    size_t left = size;
    fz_chunk ch;
    while (fz_next_chunk(&p, &left, &ch)) {
        now += (uint64_t)ch.dt_ms * 1000;
        fz_advance(a, now);
        fz_advance(c, now);
        if (ch.flags & 0xc0) {
            int want = (ch.flags & 0x80) != 0;
            (void)p2p_peer_send(a, in_a, (uint16_t)ch.len, ch.data, ch.len, want, NULL, now);
        }
        uint8_t pkt[P2P_MAX_PACKET];
        size_t n = 0;
        int kind = ch.flags & 3;
        pn += (ch.flags >> 2) & 15;
        if (kind == 0) {
            p2p_host_recv(c, &aa, ch.data, ch.len, now);
            p2p_host_recv(a, &ba, ch.data, ch.len, now);
        } else {
            size_t body = ch.len;
            size_t max = P2P_MAX_PACKET - P2P_DATA_HEADER - (kind == 1 ? 0 : P2P_TAG_LEN);
            if (body > max) body = max;
            pkt[0] = P2P_PKT_DATA;
            pkt[1] = pkt[2] = pkt[3] = 0;
            p2p_put_u32(pkt + 4, index);
            p2p_put_u64(pkt + 8, pn);
            if (kind == 1) {
                memcpy(pkt + P2P_DATA_HEADER, ch.data, body);
                n = P2P_DATA_HEADER + body;
            } else {
                p2p_aead_seal(pkt + P2P_DATA_HEADER, key, pn, pkt, P2P_DATA_HEADER, ch.data, body);
                n = P2P_DATA_HEADER + body + P2P_TAG_LEN;
            }
            pn++;
            p2p_stats before;
            p2p_host_stats(a, &before);
            p2p_peer_info info;
            int live = p2p_host_peer_info(a, in_a, &info) == 0 && info.state == P2P_PEER_CONNECTED;
            p2p_host_recv(a, kind == 3 ? &other : &ba, pkt, n, now);
            /* A lone PING sealed for a live session must be accepted: this is what shows the
             * sealed inputs reach the code behind authentication at all. */
            if (kind >= 2 && live && ch.len == 1 && ch.data[0] == P2P_FRAME_PING) {
                p2p_stats after;
                p2p_host_stats(a, &after);
                FZ_CHECK(after.dropped == before.dropped);
            }
        }
        fz_events(a, now);
        fz_discard(a);
        fz_events(c, now);
        fz_discard(c);

        p2p_stats st;
        p2p_host_stats(a, &st);
        FZ_CHECK(st.peers <= 1);
    }

    /* A graceful close must work from whatever state the input left. */
    p2p_host_close(a, now);
    fz_events(a, now);
    fz_discard(a);
    p2p_host_free(a);
    p2p_host_free(b);
    p2p_host_free(c);
    return 0;
}
