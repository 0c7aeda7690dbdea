/*
 * mkseeds.c - writes the seed inputs of the fuzz targets that need structured ones:
 * fuzz/seeds/fuzz_mesh and fuzz_mesh_signed (one input per record kind and per relay and path
 * frame, signed by the harness's signers, in fuzz_net.h's chunk format), fuzz_addr and
 * fuzz_keyfile. Everything is deterministic, so `make fuzz-seeds` rewrites the same files.
 *
 * Usage: mkseeds <seeds directory>
 */
#include <errno.h>
#include <sys/stat.h>

#include "fuzz_net.h"
#include "../csrc/p2p_transfer.h" /* transfer seeds */

static const char *root;

static void put_file(const char *target, const char *name, const uint8_t *d, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, target);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        perror(path);
        exit(1);
    }
    snprintf(path, sizeof path, "%s/%s/%s", root, target, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(d, 1, n, f) != n || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

/* ---- the record targets ------------------------------------------------------------------ */

typedef struct seed {
    uint8_t b[8192];
    size_t n;
} seed;

static void chunk(seed *s, uint8_t flags, uint8_t dt_ms, const uint8_t *d, size_t n)
{
    FZ_CHECK(s->n + 4 + n <= sizeof s->b && n <= 65535);
    s->b[s->n++] = flags;
    s->b[s->n++] = dt_ms;
    s->b[s->n++] = (uint8_t)n;
    s->b[s->n++] = (uint8_t)(n >> 8);
    memcpy(s->b + s->n, d, n);
    s->n += n;
}

static void mesh_seed(const char *name, const seed *s)
{
    put_file("fuzz_mesh", name, s->b, s->n);
    put_file("fuzz_mesh_signed", name, s->b, s->n);
}

static void mesh_one(const char *name, uint8_t flags, const uint8_t *d, size_t n)
{
    seed s = {.n = 0};
    chunk(&s, flags, 0, d, n);
    mesh_seed(name, &s);
}

static p2p_addr addr4(uint8_t a, uint8_t b, uint8_t c, uint8_t d, uint16_t port)
{
    p2p_addr x = fz_addr(0, port);
    x.ip[0] = a;
    x.ip[1] = b;
    x.ip[2] = c;
    x.ip[3] = d;
    return x;
}

/* A member record of signer k, signed, as { u16 length, record }; returns its length. */
static size_t member(uint8_t *out, int k, uint64_t seq, uint64_t expires, const p2p_addr *a,
                     size_t na)
{
    uint8_t rec[P2P_MEMBER_REC_MAX];
    p2p_wr w;
    p2p_wr_init(&w, rec, sizeof rec - P2P_SIG_LEN);
    p2p_wr_u8(&w, 1);
    p2p_wr_bytes(&w, fn_id[k].ed_pk, P2P_ID_LEN);
    p2p_wr_u64(&w, seq);
    p2p_wr_u64(&w, expires);
    p2p_wr_u8(&w, (uint8_t)na);
    for (size_t i = 0; i < na; i++) p2p_wr_addr(&w, &a[i]);
    FZ_CHECK(!w.bad);
    size_t len = (size_t)(w.p - rec) + P2P_SIG_LEN;
    uint8_t entry[2 + P2P_MEMBER_REC_MAX];
    p2p_wr_init(&w, entry, sizeof entry);
    p2p_wr_u16(&w, (uint16_t)len);
    p2p_wr_bytes(&w, rec, len);
    fn_sign_record_as(entry + 2, len, k);
    memcpy(out, entry, len + 2);
    return len + 2;
}

/* A broadcast of signer k, signed. */
static size_t broadcast(uint8_t *out, int k, uint64_t seq, uint16_t type, const char *text)
{
    p2p_wr w;
    size_t tl = strlen(text);
    p2p_wr_init(&w, out, P2P_ID_LEN + 8 + 2 + tl + P2P_SIG_LEN);
    p2p_wr_bytes(&w, fn_id[k].ed_pk, P2P_ID_LEN);
    p2p_wr_u64(&w, seq);
    p2p_wr_u16(&w, type);
    p2p_wr_bytes(&w, text, tl);
    FZ_CHECK(!w.bad);
    size_t len = P2P_ID_LEN + 8 + 2 + tl + P2P_SIG_LEN;
    fn_sign_broadcast_as(out, len, k);
    return len;
}

/* { origin, u64 seq } entries */
static size_t wants(uint8_t *out, const int *k, const uint64_t *seq, size_t n)
{
    p2p_wr w;
    p2p_wr_init(&w, out, n * 40);
    for (size_t i = 0; i < n; i++) {
        p2p_wr_bytes(&w, fn_id[k[i]].ed_pk, P2P_ID_LEN);
        p2p_wr_u64(&w, seq[i]);
    }
    FZ_CHECK(!w.bad);
    return n * 40;
}

/* The INIT a fresh host of signer k sends to host `to`'s address. */
static size_t capture_init(fn_net *n, int k, int to, uint8_t *out)
{
    p2p_config cfg;
    p2p_config_init(&cfg);
    cfg.identity = &fn_id[k];
    cfg.seed = 0x1417;
    p2p_host *x = NULL;
    FZ_CHECK(p2p_host_new(&x, &cfg, n->now) == 0);
    p2p_peer_handle ph;
    FZ_CHECK(p2p_host_connect(x, &n->addr[to], fn_host_id(to)->ed_pk, n->now, &ph) == 0);
    p2p_addr dst;
    size_t len = p2p_host_next_datagram(x, &dst, out, P2P_MAX_PACKET);
    FZ_CHECK(len > 0 && out[0] == P2P_PKT_INIT);
    p2p_host_free(x);
    return len;
}

static void mesh_seeds(void)
{
    fn_net n;
    fn_build(&n);
    uint8_t b[4096], e[4096];
    size_t len;
    const uint64_t mseq = FN_UNIX_US / 1000u + 1000000u; /* newer than any own record */
    const uint64_t expires = FN_UNIX_US / 1000000u + 3600u;
    const uint64_t bseq = FN_UNIX_US + 1000u;
    p2p_addr pub[3] = {addr4(198, 51, 100, 7, 5000), addr4(203, 0, 113, 9, 6000),
                       addr4(10, 1, 2, 3, 7000)};

    /* MEMBERS */
    len = member(b, 0, mseq, expires, pub, 2);
    mesh_one("members_one", 0, b, len);
    len = 0;
    for (int k = 0; k < 4; k++) len += member(b + len, k, mseq + (uint64_t)k, expires, pub, 3);
    len += member(b + len, 4, mseq, expires, &n.addr[FN_A], 1); /* A's own, newer */
    mesh_one("members_many", 0, b, len);
    len = member(b, 1, mseq, expires, &n.addr[FN_B], 1); /* at a bystander */
    mesh_one("members_at_bystander", 0, b, len);
    len = member(b, 2, mseq, 0, pub, 0); /* never expires, no addr */
    mesh_one("members_noaddr", 0, b, len);
    len = member(b, 3, mseq, FN_UNIX_US / 1000000u - 1, pub, 1); /* expired */
    mesh_one("members_expired", 0, b, len);
    len = member(b, 6, mseq, expires, pub, 1); /* V's own id */
    mesh_one("members_victim", 0, b, len);

    /* BROADCAST, IHAVE, IWANT */
    int ks[4] = {0, 1, 4, 5};
    uint64_t seqs[4] = {bseq, bseq + 1, bseq + 2, bseq};
    for (int k = 0; k < FN_SIGNERS; k++) {
        len = broadcast(b, k, bseq, 7, "hello");
        char name[32];
        snprintf(name, sizeof name, "broadcast_%d", k);
        mesh_one(name, 1, b, len);
    }
    {
        int k = 0;
        seed s = {.n = 0};
        len = broadcast(b, k, bseq, 7, "pull me");
        chunk(&s, 1, 0, b, len);
        int kk[2] = {k, 0};
        uint64_t sq[2] = {bseq, bseq + 5};
        len = wants(e, kk, sq, 2);
        chunk(&s, 3, 10, e, len); /* IWANT: one cached, one not */
        chunk(&s, 2, 10, e, len); /* IHAVE */
        chunk(&s, 3, 200, e, 40); /* IWANT again */
        mesh_seed("broadcast_then_iwant", &s);
    }
    len = wants(b, ks, seqs, 4);
    mesh_one("ihave", 2, b, len);
    mesh_one("iwant", 3, b, len);

    /* SUMMARY, DIGEST */
    memset(b, 0x5c, 32);
    mesh_one("summary", 4, b, 32);
    b[0] = 0;
    len = 1 + wants(b + 1, ks, seqs, 4);
    mesh_one("digest", 5, b, len);
    b[0] = 1;
    mesh_one("digest_reply", 5, b, len);

    /* INTRO_REQ, INTRO, INTRO_FAIL */
    mesh_one("intro_req_bystander", 6, fn_host_id(FN_B)->ed_pk, P2P_ID_LEN);
    mesh_one("intro_req_victim", 6, fn_host_id(FN_V)->ed_pk, P2P_ID_LEN);
    mesh_one("intro_req_unknown", 6, fn_id[0].ed_pk, P2P_ID_LEN);
    for (int which = 0; which < 2; which++) {
        p2p_wr w;
        p2p_wr_init(&w, b, sizeof b);
        p2p_wr_bytes(&w, which ? fn_host_id(FN_B)->ed_pk : fn_id[1].ed_pk, P2P_ID_LEN);
        p2p_wr_u32(&w, n.channel);
        p2p_wr_u8(&w, 1);
        p2p_wr_u8(&w, 3);
        for (int i = 0; i < 3; i++) p2p_wr_addr(&w, &pub[i]);
        FZ_CHECK(!w.bad);
        mesh_one(which ? "intro_bystander" : "intro_stranger", 7, b, (size_t)(w.p - b));
    }
    /* an offer: "this node asks for you" (flags bit 1, no channel, no addresses) */
    memcpy(b, fn_host_id(FN_B)->ed_pk, P2P_ID_LEN);
    memset(b + P2P_ID_LEN, 0, 6);
    b[P2P_ID_LEN + 4] = 2;
    mesh_one("intro_offer", 7, b, P2P_ID_LEN + 6);
    memcpy(b, fn_host_id(FN_B)->ed_pk, P2P_ID_LEN);
    b[P2P_ID_LEN] = 1;
    mesh_one("intro_fail", 8, b, P2P_ID_LEN + 1);
    /* PUNCH (0x0e, issue 12; flags 13 in fuzz_mesh): INFO, READY, DONE, and a wrong length */
    {
        static const uint8_t info[4] = {1, 3, 0, 0}, done[6] = {3, 1, 7, 0, 0, 0};
        static const uint8_t ready[12] = {2, 0, 255, 0, 7, 0, 0, 0, 0x00, 0x04, 0xff, 0xff};
        mesh_one("punch_info", 13, info, sizeof info);
        mesh_one("punch_ready", 13, ready, sizeof ready);
        mesh_one("punch_done", 13, done, sizeof done);
        mesh_one("punch_short", 13, ready, 5);
    }

    /* frames: PATH_CHALLENGE, PATH_RESPONSE, RELAY, RELAYED */
    p2p_wr w;
    p2p_wr_init(&w, b, sizeof b);
    p2p_wr_u8(&w, P2P_FRAME_PATH_CHALLENGE);
    p2p_wr_u64(&w, UINT64_C(0x0102030405060708));
    mesh_one("path_challenge", FN_MODE_FRAMES, b, 9);
    mesh_one("path_challenge_away", FN_MODE_FRAMES_AWAY, b, 9);
    b[0] = P2P_FRAME_PATH_RESPONSE;
    mesh_one("path_response", FN_MODE_FRAMES, b, 9);
    b[0] = P2P_FRAME_PING;
    mesh_one("ping_away", FN_MODE_FRAMES_AWAY, b, 1);

    uint8_t init[P2P_MAX_PACKET];
    size_t ilen = capture_init(&n, 0, FN_B, init);
    mesh_one("relay_init", FN_MODE_RELAY, init, ilen);
    for (int type = 0; type < 2; type++) {
        p2p_wr_init(&w, b, sizeof b);
        p2p_wr_u8(&w, type ? P2P_FRAME_RELAYED : P2P_FRAME_RELAY);
        p2p_wr_u32(&w, n.channel);
        p2p_wr_varint(&w, ilen);
        p2p_wr_bytes(&w, init, ilen);
        FZ_CHECK(!w.bad);
        mesh_one(type ? "relayed_frame" : "relay_frame", FN_MODE_FRAMES, b, (size_t)(w.p - b));
    }
    /* a DATA header for a session nobody has, through the relay */
    memset(b, 0, 64);
    b[0] = P2P_PKT_DATA;
    p2p_put_u32(b + 4, 0x12345678);
    mesh_one("relay_data", FN_MODE_RELAY, b, 64);
    ilen = capture_init(&n, 1, FN_V, init);
    p2p_put_u32(b, 0x0badcafe);
    memcpy(b + 4, init, ilen);
    mesh_one("relayed_init", FN_MODE_RELAYED, b, ilen + 4);
    p2p_put_u32(e, 0x0badcafe);
    memcpy(e + 4, init, ilen);
    mesh_one("relay_channel", 0x10 | FN_MODE_RELAY, e, ilen + 4);

    /* a mix: members, a broadcast, a summary and an introduction in one input */
    {
        seed s = {.n = 0};
        len = member(b, 2, mseq, expires, pub, 2);
        chunk(&s, 0, 5, b, len);
        memset(e, 0x33, 32);
        chunk(&s, 4, 50, e, 32);
        chunk(&s, 6, 5, fn_host_id(FN_B)->ed_pk, P2P_ID_LEN);
        b[0] = P2P_FRAME_PATH_CHALLENGE;
        memset(b + 1, 0x77, 8);
        chunk(&s, FN_MODE_FRAMES_AWAY, 100, b, 9);
        mesh_seed("mix", &s);
    }
    /* lanes: a message on lane 3, a request on lane 3, a REPLY_LANE on the control lane (to
     * nothing: a protocol error), grants, a sequenced datagram, and the malformed forms */
    {
        uint8_t rec[P2P_RECORD_HEADER_MAX + 8];
        p2p_record r = {P2P_REC_MESSAGE, 9, 0, 0, 4};
        size_t hl = p2p_record_encode(rec, &r);
        memcpy(rec + hl, "lane", 4);
        p2p_wr_init(&w, b, sizeof b);
        p2p_frame_put_lane_header(&w, 3, 0, hl + 4);
        p2p_wr_bytes(&w, rec, hl + 4);
        p2p_frame_put_max_stream(&w, 3, 1u << 21);
        p2p_frame_put_datagram_seq(&w, 3, 7, 9, (const uint8_t *)"dg", 2);
        FZ_CHECK(!w.bad);
        mesh_one("lane_message", FN_MODE_FRAMES, b, (size_t)(w.p - b));
        put_file("fuzz_frames", "lanes", b, (size_t)(w.p - b));
        r.kind = P2P_REC_MESSAGE_RECEIPT;
        hl = p2p_record_encode(rec, &r);
        memcpy(rec + hl, "ask?", 4);
        p2p_wr_init(&w, b, sizeof b);
        p2p_frame_put_lane_header(&w, 254, 0, hl + 4);
        p2p_wr_bytes(&w, rec, hl + 4);
        FZ_CHECK(!w.bad);
        mesh_one("lane_request", FN_MODE_FRAMES, b, (size_t)(w.p - b));
        p2p_record rp = {P2P_REC_REPLY_LANE, 3, 0, P2P_REPLY_DATA, 2};
        hl = p2p_record_encode(rec, &rp);
        memcpy(rec + hl, "ok", 2);
        p2p_wr_init(&w, b, sizeof b);
        p2p_frame_put_lane_header(&w, P2P_LANE_CONTROL, 0, hl + 2);
        p2p_wr_bytes(&w, rec, hl + 2);
        FZ_CHECK(!w.bad);
        mesh_one("lane_reply", FN_MODE_FRAMES, b, (size_t)(w.p - b));
        const uint8_t bad_lane0[] = {P2P_FRAME_STREAM_LANE, 0, 0, 1, 'x'};
        mesh_one("lane_zero", FN_MODE_FRAMES, bad_lane0, sizeof bad_lane0);
        const uint8_t dg_ctl[] = {P2P_FRAME_DATAGRAM_SEQ, P2P_LANE_CONTROL, 0, 1, 0, 0};
        mesh_one("lane_dgram_control", FN_MODE_FRAMES, dg_ctl, sizeof dg_ctl);
    }

    fn_free(&n);
}

/* ---- addresses and key files ------------------------------------------------------------ */

static void text_seed(const char *target, const char *name, const char *text)
{
    put_file(target, name, (const uint8_t *)text, strlen(text));
}

static void addr_seeds(void)
{
    static const char *texts[] = {
        "1.2.3.4:5",
        "127.0.0.1:4000",
        "0.0.0.0:0",
        "255.255.255.255:65535",
        "10.0.0.1:1",
        "[::1]:80",
        "[::]:1",
        "[fe80::1]:9",
        "[::ffff:192.0.2.1]:7",
        "[2001:db8::1:2:3]:443",
        "[ff02::1]:5",
        "[1:2:3:4:5:6:1.2.3.4]:6",
        "01.2.3.4:5",
        "1.2.3.4:05",
        "[fe80::1%eth0]:1",
        "[fe80::1%3]:44344",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        char name[16];
        snprintf(name, sizeof name, "text%02zu", i);
        text_seed("fuzz_addr", name, texts[i]);
    }
    uint8_t b[64];
    p2p_addr a = addr4(192, 0, 2, 1, 4000), v6;
    FZ_CHECK(p2p_addr_parse(&v6, "[2001:db8::5]:4001") == 0);
    p2p_wr w;
    p2p_wr_init(&w, b, sizeof b);
    p2p_wr_addr(&w, &a);
    p2p_wr_addr(&w, &v6);
    put_file("fuzz_addr", "wire", b, (size_t)(w.p - b));
    put_file("fuzz_addr", "raw4", (const uint8_t *)&a, sizeof a);
    put_file("fuzz_addr", "raw6", (const uint8_t *)&v6, sizeof v6);
}

static void keyfile_seeds(void)
{
    char text[128];
    char hex[65];
    uint8_t seed[P2P_SEED_LEN];
    memset(seed, 0x42, sizeof seed);
    p2p_id_to_hex(seed, hex);
    snprintf(text, sizeof text, "p2pnet-identity-v1\n%s\n", hex);
    text_seed("fuzz_keyfile", "valid", text);
    text[20] = 'A';
    text_seed("fuzz_keyfile", "upper", text);
    snprintf(text, sizeof text, "p2pnet-identity-v1\n%s", hex);
    text_seed("fuzz_keyfile", "no_newline", text);
    snprintf(text, sizeof text, "p2pnet-identity-v2\n%s\n", hex);
    text_seed("fuzz_keyfile", "version", text);
    snprintf(text, sizeof text, "p2pnet-identity-v1\r\n%s\n", hex);
    text_seed("fuzz_keyfile", "crlf", text);
    text_seed("fuzz_keyfile", "hex_id", hex);
}

/* ---- fuzz_transfer (streaming transfers) -------------------------------------------------- */

/* A TRANSFER record body: op, varint id, then n bytes of fields. */
static size_t xf_body(uint8_t *b, size_t cap, uint8_t op, uint64_t id, const uint8_t *f, size_t n)
{
    p2p_wr w;
    p2p_wr_init(&w, b, cap);
    p2p_wr_u8(&w, op);
    p2p_wr_varint(&w, id);
    p2p_wr_bytes(&w, f, n);
    return (size_t)(w.p - b);
}

static void transfer_seeds(void)
{
    /* chunk modes of fuzz_transfer.c */
    enum { REC = 0, OPEN = 1, WRITE = 2, FINISH = 3, ACCEPT = 4, CANCEL = 5, ALT = 0x10 };
    uint8_t b[4096], f[2048];
    p2p_wr w;
    seed s;

    /* the API path: A offers 3000 bytes, V accepts, A writes them and finishes */
    memset(&s, 0, sizeof s);
    uint8_t total[4] = {0xb8, 0x0b, 0, 0}, meta[] = "file.bin";
    memcpy(f, total, 4);
    memcpy(f + 4, meta, sizeof meta - 1);
    chunk(&s, OPEN, 1, f, 4 + sizeof meta - 1);
    chunk(&s, ACCEPT, 1, NULL, 0);
    memset(f, 0x42, 1500);
    chunk(&s, WRITE, 1, f, 1500);
    chunk(&s, WRITE, 1, f, 1500);
    chunk(&s, FINISH, 1, NULL, 0);
    put_file("fuzz_transfer", "api_roundtrip", s.b, s.n);

    /* the same with a resumed accept (V absorbs 100 bytes first) and a cancel by V */
    memset(&s, 0, sizeof s);
    memcpy(f, total, 4);
    chunk(&s, OPEN, 1, f, 4);
    memset(f, 0x42, 100);
    chunk(&s, ACCEPT | ALT, 1, f, 100);
    chunk(&s, WRITE, 1, f, 100);
    chunk(&s, CANCEL, 1, (const uint8_t *)"stop", 4);
    put_file("fuzz_transfer", "api_resume_cancel", s.b, s.n);

    /* raw records: OPEN (sized, with meta), DATA, END with a wrong hash */
    memset(&s, 0, sizeof s);
    p2p_wr_init(&w, f, sizeof f);
    p2p_wr_u8(&w, P2P_XOPEN_SIZED);
    p2p_wr_varint(&w, 10);
    p2p_wr_varint(&w, 3);
    p2p_wr_bytes(&w, "abc", 3);
    chunk(&s, REC, 1, b, xf_body(b, sizeof b, P2P_XOP_OPEN, 1, f, (size_t)(w.p - f)));
    chunk(&s, ACCEPT, 1, NULL, 0);
    p2p_wr_init(&w, f, sizeof f);
    p2p_wr_varint(&w, 0);
    p2p_wr_bytes(&w, "0123456789", 10);
    chunk(&s, REC, 1, b, xf_body(b, sizeof b, P2P_XOP_DATA, 1, f, (size_t)(w.p - f)));
    p2p_wr_init(&w, f, sizeof f);
    p2p_wr_varint(&w, 10);
    memset(w.p, 0x77, P2P_TRANSFER_HASH_LEN);
    w.p += P2P_TRANSFER_HASH_LEN;
    chunk(&s, REC, 1, b, xf_body(b, sizeof b, P2P_XOP_END, 1, f, (size_t)(w.p - f)));
    put_file("fuzz_transfer", "records_open_data_end", s.b, s.n);

    /* raw records: an unsized OPEN, then CANCEL with a reason; ACCEPT, STOP and DONE for ids
     * A never gave out */
    memset(&s, 0, sizeof s);
    uint8_t unsized[] = {0, 0};
    chunk(&s, REC, 1, b, xf_body(b, sizeof b, P2P_XOP_OPEN, 2, unsized, sizeof unsized));
    chunk(&s, REC, 1, b, xf_body(b, sizeof b, P2P_XOP_CANCEL, 2, (const uint8_t *)"bye", 3));
    uint8_t zero[] = {0};
    chunk(&s, REC, 1, b, xf_body(b, sizeof b, P2P_XOP_ACCEPT, 1, zero, 1));
    chunk(&s, REC, 1, b, xf_body(b, sizeof b, P2P_XOP_STOP, 1, zero, 1));
    chunk(&s, REC, 1, b, xf_body(b, sizeof b, P2P_XOP_DONE, 1, NULL, 0));
    put_file("fuzz_transfer", "records_cancel_and_answers", s.b, s.n);

    /* twenty offers: past the per-peer cap */
    memset(&s, 0, sizeof s);
    for (uint64_t id = 1; id <= 20; id++)
        chunk(&s, REC, 0, b, xf_body(b, sizeof b, P2P_XOP_OPEN, id, unsized, sizeof unsized));
    put_file("fuzz_transfer", "records_over_cap", s.b, s.n);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s <seeds directory>\n", argv[0]);
        return 2;
    }
    root = argv[1];
    fn_init();
    mesh_seeds();
    addr_seeds();
    keyfile_seeds();
    transfer_seeds();
    return 0;
}
