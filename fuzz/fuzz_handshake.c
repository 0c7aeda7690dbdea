/*
 * fuzz_handshake.c - libFuzzer target for INIT, RESP and FIN reaching a host mid-handshake.
 * The target plays the other side with its own Noise state (same protocol name, prologue and
 * psk as the host), so fuzzed bytes can be carried inside correctly encrypted handshake
 * messages and reach the identity payload parser, not only the MAC and AEAD checks.
 *
 * The first input byte picks the case; the rest is the body B:
 *   0  A initiated: RESP = valid header + B + valid mac1
 *   1  A initiated: RESP whose Noise message 2 carries B as payload (bit 0 of B[0] set: a
 *      valid identity prefix, then B[1..] as extensions). If A answers with FIN, the FIN must
 *      verify, and a DATA packet under the split keys must make A report JOIN. B = {1} (the
 *      bare valid payload) must be answered.
 *   2  A responding: FIN = valid header + B
 *   3  A responding: FIN whose Noise message 3 carries B as payload (prefix as in 1). If A
 *      reports JOIN, its first DATA packet must open under the split keys. B = {1} must join.
 *   4  INIT with B as the Noise message (cut or zero-padded to size) + valid mac1
 *   5  B raw, from both the address A initiated to and the address it is responding to
 *   6  A initiated: COOKIE = valid header + B (cut or zero-padded to size)
 *   7  A initiated: a COOKIE sealed as the protocol says, holding B's first 16 bytes as the
 *      cookie. A must resend its INIT at once, with mac2 made with that cookie.
 *   8  A responding under load: an INIT with B's first 16 bytes as mac2 gets a COOKIE (at
 *      most as large as the INIT); the same INIT with mac2 made from that cookie gets RESP.
 * Afterwards the handshake timers run through resend and expiry.
 */
#include "fuzz_common.h"

#define INIT_NOISE_LEN (P2P_INIT_LEN - 8 - 2 * P2P_MAC_LEN) /* e + sealed payload */
#define INIT_PAYLOAD_LEN (INIT_NOISE_LEN - P2P_DH_LEN - P2P_TAG_LEN)
#define INIT_MAC1 (8 + INIT_NOISE_LEN)
#define INIT_MAC2 (INIT_MAC1 + P2P_MAC_LEN)
#define COOKIE_PKT (8 + P2P_XNONCE_LEN + P2P_COOKIE_LEN + P2P_TAG_LEN)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_init();
    return 0;
}

/* Takes A's next datagram; 0 when there is none. */
static size_t take(p2p_host *a, uint8_t *buf)
{
    p2p_addr to;
    return p2p_host_next_datagram(a, &to, buf, P2P_MAX_PACKET);
}

static void mac1(const p2p_host *h, uint8_t *pkt, size_t len_before_mac)
{
    p2p_blake2b(pkt + len_before_mac, P2P_MAC_LEN, h->mac_key, P2P_KEY_LEN, pkt, len_before_mac,
                NULL, 0);
}

/* The fake peer's handshake payload: a valid identity prefix then body[1..] as extensions
 * when body[0] & 1, else the body as it is. */
static size_t fake_payload(const uint8_t *body, size_t len, uint8_t *out, size_t cap)
{
    if (len > 0 && (body[0] & 1)) {
        const p2p_identity *id = &fz_ident[1];
        size_t ext = len - 1;
        if (97 + ext > cap) ext = cap - 97;
        out[0] = 1;
        memcpy(out + 1, id->ed_pk, P2P_ID_LEN);
        memcpy(out + 1 + P2P_ID_LEN, id->binding_sig, P2P_SIG_LEN);
        memcpy(out + 97, body + 1, ext);
        return 97 + ext;
    }
    if (len > cap) len = cap;
    memcpy(out, body, len);
    return len;
}

static int count_joins(p2p_host *a, uint64_t now)
{
    return fz_events(a, now);
}

/* Seals a DATA packet holding one PING frame. */
static size_t ping_packet(uint8_t *pkt, uint32_t index, const uint8_t key[32], uint64_t pn)
{
    uint8_t pt[1] = {P2P_FRAME_PING};
    pkt[0] = P2P_PKT_DATA;
    pkt[1] = pkt[2] = pkt[3] = 0;
    p2p_put_u32(pkt + 4, index);
    p2p_put_u64(pkt + 8, pn);
    p2p_aead_seal(pkt + P2P_DATA_HEADER, key, pn, pkt, P2P_DATA_HEADER, pt, sizeof pt);
    return P2P_DATA_HEADER + sizeof pt + P2P_TAG_LEN;
}

static void a_initiates(p2p_host *a, const p2p_addr *fa, int mode, const uint8_t *body, size_t len,
                        uint64_t now)
{
    p2p_peer_handle ph;
    FZ_CHECK(p2p_host_connect(a, fa, NULL, now, &ph) == 0);
    uint8_t init[P2P_MAX_PACKET], pkt[P2P_MAX_PACKET], payload[P2P_MAX_PACKET];
    FZ_CHECK(take(a, init) == P2P_INIT_LEN);
    uint32_t a_index = p2p_get_u32(init + 4);
    pkt[0] = P2P_PKT_RESP;
    pkt[1] = P2P_PROTOCOL_VERSION;
    pkt[2] = pkt[3] = 0;
    p2p_put_u32(pkt + 4, 0x5eed0001u);
    p2p_put_u32(pkt + 8, a_index);
    size_t n;
    p2p_noise hs;
    if (mode == 0) {
        size_t b =
            len > P2P_MAX_PACKET - 12 - P2P_MAC_LEN ? P2P_MAX_PACKET - 12 - P2P_MAC_LEN : len;
        memcpy(pkt + 12, body, b);
        n = 12 + b;
    } else {
        FZ_CHECK(p2p_noise_init(&hs, P2P_NOISE_PROTOCOL, 0, (const uint8_t *)P2P_PROLOGUE,
                                sizeof P2P_PROLOGUE - 1, fz_ident[1].x_sk, NULL, a->psk) == 0);
        size_t plen = 0;
        FZ_CHECK(p2p_noise_read(&hs, init + 8, INIT_NOISE_LEN, payload, sizeof payload, &plen) ==
                 0);
        FZ_CHECK(plen == INIT_PAYLOAD_LEN);
        p2p_rng rng;
        p2p_rng_init(&rng, 4242);
        uint8_t mine[P2P_MAX_PACKET];
        size_t mlen =
            fake_payload(body, len, mine, P2P_MAX_PACKET - 12 - 32 - 48 - 16 - P2P_MAC_LEN);
        size_t out = 0;
        FZ_CHECK(p2p_noise_write(&hs, &rng, mine, mlen, pkt + 12, P2P_MAX_PACKET - 12 - P2P_MAC_LEN,
                                 &out) == 0);
        n = 12 + out;
    }
    mac1(a, pkt, n);
    p2p_host_recv(a, fa, pkt, n + P2P_MAC_LEN, now);
    fz_events(a, now);
    size_t fin_len = take(a, pkt);
    /* The bare valid identity payload (body {0x01}) must be accepted. */
    if (mode == 1 && len == 1 && body[0] == 1) FZ_CHECK(fin_len > 0);
    if (mode == 1 && fin_len > 0) {
        /* A accepted our RESP: its FIN must verify, and our first DATA must confirm it. */
        FZ_CHECK(pkt[0] == P2P_PKT_FIN && p2p_get_u32(pkt + 4) == 0x5eed0001u);
        size_t plen = 0;
        FZ_CHECK(p2p_noise_read(&hs, pkt + 8, fin_len - 8, payload, sizeof payload, &plen) == 0);
        FZ_CHECK(p2p_noise_done(&hs) && plen >= 97);
        FZ_CHECK(memcmp(payload + 1, fz_ident[0].ed_pk, P2P_ID_LEN) == 0);
        uint8_t c1[P2P_KEY_LEN], c2[P2P_KEY_LEN];
        p2p_noise_split(&hs, c1, c2);
        n = ping_packet(pkt, a_index, c2, 0);
        p2p_host_recv(a, fa, pkt, n, now);
        FZ_CHECK(count_joins(a, now) == 1);
    }
    if (mode == 1) p2p_noise_wipe(&hs);
    fz_discard(a);
}

/* Our INIT to A, from fz_ident[1] with sender index `index`, up to its macs (the caller adds
 * them); hs keeps the handshake. Returns the length of the Noise message. */
static size_t write_init(const p2p_host *a, p2p_noise *hs, p2p_rng *rng, uint32_t index,
                         uint8_t *pkt)
{
    static const uint8_t zeros[INIT_PAYLOAD_LEN];
    size_t out = 0;
    FZ_CHECK(p2p_noise_init(hs, P2P_NOISE_PROTOCOL, 1, (const uint8_t *)P2P_PROLOGUE,
                            sizeof P2P_PROLOGUE - 1, fz_ident[1].x_sk, NULL, a->psk) == 0);
    pkt[0] = P2P_PKT_INIT;
    pkt[1] = P2P_PROTOCOL_VERSION;
    pkt[2] = pkt[3] = 0;
    p2p_put_u32(pkt + 4, index);
    FZ_CHECK(p2p_noise_write(hs, rng, zeros, sizeof zeros, pkt + 8, INIT_NOISE_LEN, &out) == 0);
    return out;
}

static void a_responds(p2p_host *a, const p2p_addr *ga, int mode, const uint8_t *body, size_t len,
                       uint64_t now)
{
    uint8_t pkt[P2P_MAX_PACKET], resp[P2P_MAX_PACKET], payload[P2P_MAX_PACKET];
    p2p_noise hs;
    p2p_rng rng;
    p2p_rng_init(&rng, 4343);
    size_t out = write_init(a, &hs, &rng, 0x5eed0002u, pkt);
    FZ_CHECK(out == INIT_NOISE_LEN);
    mac1(a, pkt, 8 + out);
    memset(pkt + INIT_MAC2, 0, P2P_MAC_LEN);
    p2p_host_recv(a, ga, pkt, P2P_INIT_LEN, now);
    size_t rlen = take(a, resp);
    FZ_CHECK(rlen > 12 + P2P_MAC_LEN && resp[0] == P2P_PKT_RESP);
    FZ_CHECK(p2p_get_u32(resp + 8) == 0x5eed0002u);
    uint32_t a_index = p2p_get_u32(resp + 4);
    pkt[0] = P2P_PKT_FIN;
    pkt[1] = P2P_PROTOCOL_VERSION;
    pkt[2] = pkt[3] = 0;
    p2p_put_u32(pkt + 4, a_index);
    size_t n;
    if (mode == 2) {
        size_t b = len > P2P_MAX_PACKET - 8 ? P2P_MAX_PACKET - 8 : len;
        memcpy(pkt + 8, body, b);
        n = 8 + b;
    } else {
        size_t plen = 0;
        FZ_CHECK(p2p_noise_read(&hs, resp + 12, rlen - 12 - P2P_MAC_LEN, payload, sizeof payload,
                                &plen) == 0);
        FZ_CHECK(plen >= 97 && memcmp(payload + 1, fz_ident[0].ed_pk, P2P_ID_LEN) == 0);
        uint8_t mine[P2P_MAX_PACKET];
        size_t mlen = fake_payload(body, len, mine, P2P_MAX_PACKET - 8 - 48 - 16);
        FZ_CHECK(p2p_noise_write(&hs, &rng, mine, mlen, pkt + 8, P2P_MAX_PACKET - 8, &out) == 0);
        n = 8 + out;
    }
    p2p_host_recv(a, ga, pkt, n, now);
    int joins = count_joins(a, now);
    if (mode == 3 && len == 1 && body[0] == 1) FZ_CHECK(joins == 1);
    if (mode == 3 && joins) {
        /* A admitted us: its first DATA packet must open under the split keys. */
        uint8_t c1[P2P_KEY_LEN], c2[P2P_KEY_LEN], pt[P2P_MAX_PACKET];
        p2p_noise_split(&hs, c1, c2);
        size_t dlen = take(a, pkt);
        FZ_CHECK(dlen >= P2P_DATA_HEADER + P2P_TAG_LEN && pkt[0] == P2P_PKT_DATA);
        FZ_CHECK(p2p_get_u32(pkt + 4) == 0x5eed0002u);
        FZ_CHECK(p2p_aead_open(pt, c2, p2p_get_u64(pkt + 8), pkt, P2P_DATA_HEADER,
                               pkt + P2P_DATA_HEADER, dlen - P2P_DATA_HEADER) == 0);
    }
    p2p_noise_wipe(&hs);
    fz_discard(a);
}

/* The first 16 bytes of body, zero-padded. */
static void first16(const uint8_t *body, size_t len, uint8_t out[16])
{
    memset(out, 0, 16);
    memcpy(out, body, len < 16 ? len : 16);
}

static void a_gets_cookie(p2p_host *a, const p2p_addr *fa, int mode, const uint8_t *body,
                          size_t len, uint64_t now)
{
    p2p_peer_handle ph;
    FZ_CHECK(p2p_host_connect(a, fa, NULL, now, &ph) == 0);
    uint8_t init[P2P_MAX_PACKET], pkt[P2P_MAX_PACKET];
    FZ_CHECK(take(a, init) == P2P_INIT_LEN);
    memset(pkt, 0, COOKIE_PKT);
    pkt[0] = P2P_PKT_COOKIE;
    pkt[1] = P2P_PROTOCOL_VERSION;
    memcpy(pkt + 4, init + 4, 4);
    if (mode == 6) {
        memcpy(pkt + 8, body, len > COOKIE_PKT - 8 ? COOKIE_PKT - 8 : len);
        p2p_host_recv(a, fa, pkt, COOKIE_PKT, now);
        fz_events(a, now);
        fz_discard(a);
        return;
    }
    uint8_t cookie[P2P_COOKIE_LEN], want[P2P_MAC_LEN];
    first16(body, len, cookie);
    if (len > 16) memcpy(pkt + 8, body + 16, len - 16 > 24 ? 24 : len - 16); /* the nonce */
    p2p_xaead_seal(pkt + 8 + P2P_XNONCE_LEN, a->cookie_key, pkt + 8, init + INIT_MAC1, P2P_MAC_LEN,
                   cookie, P2P_COOKIE_LEN);
    p2p_host_recv(a, fa, pkt, COOKIE_PKT, now);
    FZ_CHECK(take(a, pkt) == P2P_INIT_LEN);
    FZ_CHECK(memcmp(pkt, init, INIT_MAC2) == 0);
    p2p_blake2b(want, P2P_MAC_LEN, cookie, P2P_COOKIE_LEN, init, INIT_MAC2, NULL, 0);
    FZ_CHECK(memcmp(pkt + INIT_MAC2, want, P2P_MAC_LEN) == 0);
    fz_discard(a);
}

static void a_under_load(p2p_host *a, const p2p_addr *ga, const uint8_t *body, size_t len,
                         uint64_t now)
{
    /* One half-open handshake from elsewhere puts A under load. */
    a->cookie_threshold = 1;
    uint8_t none[1] = {0};
    p2p_addr other = fz_addr(4, 4000);
    a_responds(a, &other, 2, none, 0, now);
    p2p_noise hs;
    p2p_rng rng;
    p2p_rng_init(&rng, 4444);
    uint8_t pkt[P2P_MAX_PACKET], reply[P2P_MAX_PACKET], cookie[P2P_COOKIE_LEN];
    write_init(a, &hs, &rng, 0x5eed0003u, pkt);
    p2p_noise_wipe(&hs);
    mac1(a, pkt, INIT_MAC1);
    first16(body, len, pkt + INIT_MAC2);
    p2p_host_recv(a, ga, pkt, P2P_INIT_LEN, now);
    size_t n = take(a, reply);
    FZ_CHECK(n == COOKIE_PKT && reply[0] == P2P_PKT_COOKIE && n <= P2P_INIT_LEN);
    FZ_CHECK(memcmp(reply + 4, pkt + 4, 4) == 0);
    FZ_CHECK(p2p_xaead_open(cookie, a->cookie_key, reply + 8, pkt + INIT_MAC1, P2P_MAC_LEN,
                            reply + 8 + P2P_XNONCE_LEN, P2P_COOKIE_LEN + P2P_TAG_LEN) == 0);
    p2p_blake2b(pkt + INIT_MAC2, P2P_MAC_LEN, cookie, P2P_COOKIE_LEN, pkt, INIT_MAC2, NULL, 0);
    p2p_host_recv(a, ga, pkt, P2P_INIT_LEN, now);
    n = take(a, reply);
    FZ_CHECK(n > 0 && reply[0] == P2P_PKT_RESP && n <= 2 * P2P_INIT_LEN);
    fz_discard(a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint64_t now = 1000000;
    int mode = data[0] % 9;
    const uint8_t *body = data + 1;
    size_t len = size - 1;
    p2p_addr fa = fz_addr(2, 2000), ga = fz_addr(3, 3000);
    p2p_host *a = fz_host(0, 101, now);

    switch (mode) {
    case 0:
    case 1: a_initiates(a, &fa, mode, body, len, now); break;
    case 2:
    case 3: a_responds(a, &ga, mode, body, len, now); break;
    case 4: {
        uint8_t pkt[P2P_INIT_LEN] = {P2P_PKT_INIT, P2P_PROTOCOL_VERSION, 0, 0, 1, 2, 3, 4};
        size_t b = len > INIT_NOISE_LEN ? INIT_NOISE_LEN : len;
        memcpy(pkt + 8, body, b);
        mac1(a, pkt, 8 + INIT_NOISE_LEN);
        p2p_host_recv(a, &ga, pkt, sizeof pkt, now);
        fz_events(a, now);
        fz_discard(a);
        break;
    }
    case 6:
    case 7: a_gets_cookie(a, &fa, mode, body, len, now); break;
    case 8: a_under_load(a, &ga, body, len, now); break;
    default: {
        /* A both initiating (to fa) and half-open (for ga), then the raw bytes from each. */
        p2p_peer_handle ph;
        FZ_CHECK(p2p_host_connect(a, &fa, NULL, now, &ph) == 0);
        fz_discard(a);
        uint8_t none[1] = {0};
        a_responds(a, &ga, 2, none, 0, now);
        size_t b = len > P2P_MAX_PACKET ? P2P_MAX_PACKET : len;
        p2p_host_recv(a, &fa, body, b, now);
        p2p_host_recv(a, &ga, body, b, now);
        fz_events(a, now);
        fz_discard(a);
    }
    }

    /* Resends, then expiry of whatever is still half done. */
    for (uint64_t t = now + 300000; t <= now + 12000000; t += 3000000) {
        fz_advance(a, t);
        fz_events(a, t);
        fz_discard(a);
    }
    p2p_host_free(a);
    return 0;
}
