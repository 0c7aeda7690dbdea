/* test_noise.c - runs every Noise_*_25519_ChaChaPoly_BLAKE2b test vector through p2p_noise on
 * both sides, byte for byte, then checks that tampering is caught and that the API refuses
 * misuse. argv[1] is the vector file (default: ../shared/vectors/ relative to the repo). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p2p_noise.h"
#include "p2pnet.h"
#include "json_min.h"
#include "t.h"

#define DEFAULT_VECTORS "../shared/vectors/noise-25519-chachapoly-blake2b.json"
#define MAXMSG 1024

static jm_node *g_vectors;

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes a hex string node into out (cap bytes). Returns the length or -1. */
static long unhex(const jm_node *n, uint8_t *out, size_t cap)
{
    size_t i;

    if (!n || n->type != JM_STRING || n->len % 2 || n->len / 2 > cap) return -1;
    for (i = 0; i < n->len / 2; i++) {
        int hi = hexval(n->str[2 * i]), lo = hexval(n->str[2 * i + 1]);
        if (hi < 0 || lo < 0) return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return (long)(n->len / 2);
}

/* A key field (P2P_DH_LEN bytes; a psk is as long), or NULL when the vector does not have it. */
static const uint8_t *key32(const jm_node *v, const char *field, uint8_t buf[P2P_DH_LEN])
{
    const jm_node *n = jm_get(v, field);

    if (!n) return NULL;
    if (n->type == JM_ARRAY) /* the psk list: each entry here holds exactly one */
        n = n->child;
    if (unhex(n, buf, P2P_DH_LEN) != P2P_DH_LEN) return NULL;
    return buf;
}

typedef struct side {
    p2p_noise hs;
    p2p_noise_cipher tx, rx;
} side;

/* Sets up both parties of vector v. Returns 0 or -1 (a check failed). */
static int setup(const jm_node *v, side *ini, side *resp, const char **name)
{
    uint8_t pro_i[256], pro_r[256], s[P2P_DH_LEN], rs[P2P_DH_LEN], psk[P2P_KEY_LEN], e[P2P_DH_LEN];
    long lpi, lpr;
    const jm_node *pn = jm_get(v, "protocol_name");
    int rc;

    T_CHECK(pn && pn->type == JM_STRING);
    if (!pn || pn->type != JM_STRING) return -1;
    *name = pn->str;
    lpi = unhex(jm_get(v, "init_prologue"), pro_i, sizeof pro_i);
    lpr = unhex(jm_get(v, "resp_prologue"), pro_r, sizeof pro_r);
    T_CHECK(lpi >= 0 && lpr >= 0);
    if (lpi < 0 || lpr < 0) return -1;

    rc = p2p_noise_init(&ini->hs, pn->str, 1, pro_i, (size_t)lpi, key32(v, "init_static", s),
                        key32(v, "init_remote_static", rs), key32(v, "init_psks", psk));
    T_EQ_INT(rc, 0);
    if (rc) return -1;
    T_CHECK(key32(v, "init_ephemeral", e) != NULL);
    p2p_noise_set_ephemeral(&ini->hs, e);

    rc = p2p_noise_init(&resp->hs, pn->str, 0, pro_r, (size_t)lpr, key32(v, "resp_static", s),
                        key32(v, "resp_remote_static", rs), key32(v, "resp_psks", psk));
    T_EQ_INT(rc, 0);
    if (rc) return -1;
    if (key32(v, "resp_ephemeral", e)) p2p_noise_set_ephemeral(&resp->hs, e);
    return 0;
}

#define FLIP_NONE (-1)
#define FLIP_LAST (-2)

/* Runs vector v. flip >= 0: flips the last byte of handshake message `flip` before the
 * receiver reads it and expects the read to fail (then stops); FLIP_LAST: the final one. */
static void run_vector(const jm_node *v, int flip)
{
    side ini, resp;
    const char *name = "?";
    const jm_node *msgs = jm_get(v, "messages"), *m;
    uint8_t hh[P2P_HASH_LEN];
    size_t i, hs_msgs;
    int one_way;

    memset(&ini, 0, sizeof ini);
    memset(&resp, 0, sizeof resp);
    if (setup(v, &ini, &resp, &name) != 0) return;
    hs_msgs = ini.hs.msg_count;
    if (flip == FLIP_LAST) flip = (int)hs_msgs - 1;
    one_way = hs_msgs == 1;
    T_CHECK(msgs && jm_count(msgs) > hs_msgs);

    for (i = 0, m = msgs ? msgs->child : NULL; m; m = m->next, i++) {
        uint8_t payload[MAXMSG], want[MAXMSG], got[MAXMSG], back[MAXMSG];
        long plen = unhex(jm_get(m, "payload"), payload, sizeof payload);
        long wlen = unhex(jm_get(m, "ciphertext"), want, sizeof want);
        int from_init = one_way || i % 2 == 0;
        side *tx = from_init ? &ini : &resp, *rx = from_init ? &resp : &ini;
        size_t glen = 0, blen = 0;
        int rc;

        T_CHECK(plen >= 0 && wlen >= 0);
        if (plen < 0 || wlen < 0) break;
        if (i < hs_msgs) {
            rc = p2p_noise_write(&tx->hs, NULL, payload, (size_t)plen, got, sizeof got, &glen);
            T_EQ_INT(rc, 0);
            T_EQ_INT(glen, wlen);
            if (rc || glen != (size_t)wlen) {
                fprintf(stderr, "  %s: handshake message %zu\n", name, i);
                break;
            }
            T_EQ_MEM(got, want, glen);
            if ((int)i == flip) got[glen - 1] ^= 0x01;
            rc = p2p_noise_read(&rx->hs, got, glen, back, sizeof back, &blen);
            if ((int)i == flip) {
                T_EQ_INT(rc, P2P_ERR_CRYPTO);
                return;
            }
            T_EQ_INT(rc, 0);
            T_EQ_INT(blen, plen);
            if (rc || blen != (size_t)plen) {
                fprintf(stderr, "  %s: reading handshake message %zu\n", name, i);
                break;
            }
            T_EQ_MEM(back, payload, blen);
            if (i + 1 == hs_msgs) {
                T_CHECK(p2p_noise_done(&ini.hs));
                T_CHECK(p2p_noise_done(&resp.hs));
                T_CHECK(unhex(jm_get(v, "handshake_hash"), hh, sizeof hh) == P2P_HASH_LEN);
                T_EQ_MEM(p2p_noise_hash(&ini.hs), hh, P2P_HASH_LEN);
                T_EQ_MEM(p2p_noise_hash(&resp.hs), hh, P2P_HASH_LEN);
                p2p_noise_transport_keys(&ini.hs, &ini.tx, &ini.rx);
                p2p_noise_transport_keys(&resp.hs, &resp.rx, &resp.tx);
            }
        } else {
            /* Transport: ENCRYPT(k, n, "", payload) with the CipherStates from Split(). */
            T_CHECK((size_t)wlen == (size_t)plen + P2P_TAG_LEN);
            if ((size_t)wlen != (size_t)plen + P2P_TAG_LEN) break;
            p2p_aead_seal(got, tx->tx.k, tx->tx.n++, NULL, 0, payload, (size_t)plen);
            T_EQ_MEM(got, want, (size_t)wlen);
            rc = p2p_aead_open(back, rx->rx.k, rx->rx.n++, NULL, 0, got, (size_t)wlen);
            T_EQ_INT(rc, 0);
            T_EQ_MEM(back, payload, (size_t)plen);
            got[0] ^= 0x80;
            rc = p2p_aead_open(back, rx->rx.k, rx->rx.n - 1, NULL, 0, got, (size_t)wlen);
            T_EQ_INT(rc, P2P_ERR_CRYPTO);
        }
    }
    T_CHECK(i == jm_count(msgs));
    p2p_noise_wipe(&ini.hs);
    p2p_noise_wipe(&resp.hs);
}

/* Runs one vector as a named test, the way T_RUN does, with a name known only at run time. */
static void run_named(const char *label, const char *name, const jm_node *v, int flip)
{
    int before = t_failed_checks;
    char buf[160];

    snprintf(buf, sizeof buf, "%s %s", label, name);
    t_name = buf;
    run_vector(v, flip);
    if (t_failed_checks == before) {
        t_pass++;
        printf("ok   %s\n", buf);
    } else {
        t_fail++;
        printf("FAIL %s\n", buf);
    }
}

static const char *vector_name(const jm_node *v)
{
    const jm_node *n = jm_get(v, "protocol_name");
    return n && n->type == JM_STRING ? n->str : "?";
}

/* ---- API behaviour beyond the vectors ------------------------------------------------- */

static const char XXPSK3[] = "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b";

static void test_names_rejected(void)
{
    static const char *bad[] = {
        "Noise_XX_25519_AESGCM_SHA256",           "Noise_QQ_25519_ChaChaPoly_BLAKE2b",
        "Noise_XXpsk_25519_ChaChaPoly_BLAKE2b",   "Noise_XXpsk4_25519_ChaChaPoly_BLAKE2b",
        "Noise_XXpsk3+_25519_ChaChaPoly_BLAKE2b", "Noise__25519_ChaChaPoly_BLAKE2b",
        "Nois_XX_25519_ChaChaPoly_BLAKE2b",       "",
    };
    uint8_t s[P2P_DH_LEN] = {1}, psk[P2P_KEY_LEN] = {2};
    p2p_noise hs;
    size_t i;

    for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
        T_EQ_INT(p2p_noise_init(&hs, bad[i], 1, NULL, 0, s, NULL, psk), P2P_ERR_INVALID);
    T_EQ_INT(p2p_noise_init(&hs, XXPSK3, 1, NULL, 0, s, NULL, psk), 0);
    T_EQ_INT(hs.msg_count, 3);
    T_EQ_INT(p2p_noise_init(&hs, "Noise_NNpsk0+psk2_25519_ChaChaPoly_BLAKE2b", 1, NULL, 0, NULL,
                            NULL, psk),
             0);
    /* Missing keys: no static for XX, no psk for XXpsk3, no remote static for IK. */
    T_EQ_INT(p2p_noise_init(&hs, XXPSK3, 1, NULL, 0, NULL, NULL, psk), P2P_ERR_INVALID);
    T_EQ_INT(p2p_noise_init(&hs, XXPSK3, 0, NULL, 0, s, NULL, NULL), P2P_ERR_INVALID);
    T_EQ_INT(p2p_noise_init(&hs, "Noise_IK_25519_ChaChaPoly_BLAKE2b", 1, NULL, 0, s, NULL, NULL),
             P2P_ERR_INVALID);
}

/* A full XXpsk3 handshake with ephemeral keys from seeded rngs, as p2pnet runs it. */
static int handshake(p2p_noise *a, p2p_noise *b, const uint8_t psk_a[P2P_KEY_LEN],
                     const uint8_t psk_b[P2P_KEY_LEN], int *fail_step)
{
    uint8_t sa[P2P_DH_LEN], sb[P2P_DH_LEN], buf[512], pl[512];
    p2p_rng ra, rb;
    size_t n, pn;
    int rc, step;
    p2p_noise *w, *r;

    memset(sa, 0x11, sizeof sa);
    memset(sb, 0x22, sizeof sb);
    p2p_rng_init(&ra, 7);
    p2p_rng_init(&rb, 8);
    if (p2p_noise_init(a, XXPSK3, 1, (const uint8_t *)"p2pnet/1", 8, sa, NULL, psk_a) ||
        p2p_noise_init(b, XXPSK3, 0, (const uint8_t *)"p2pnet/1", 8, sb, NULL, psk_b))
        return -1;
    for (step = 0; step < 3; step++) {
        w = step % 2 ? b : a;
        r = step % 2 ? a : b;
        rc =
            p2p_noise_write(w, step % 2 ? &rb : &ra, (const uint8_t *)"hi", 2, buf, sizeof buf, &n);
        if (rc) return rc;
        rc = p2p_noise_read(r, buf, n, pl, sizeof pl, &pn);
        if (rc) {
            *fail_step = step;
            return rc;
        }
    }
    return 0;
}

static void test_xxpsk3_with_rng(void)
{
    p2p_noise a, b;
    uint8_t psk[P2P_KEY_LEN], a1[P2P_KEY_LEN], a2[P2P_KEY_LEN], b1[P2P_KEY_LEN], b2[P2P_KEY_LEN],
        sa[P2P_DH_LEN], sb[P2P_DH_LEN], pa[P2P_DH_LEN], pb[P2P_DH_LEN];
    int step = -1;

    memset(psk, 0x33, sizeof psk);
    T_EQ_INT(handshake(&a, &b, psk, psk, &step), 0);
    T_CHECK(p2p_noise_done(&a) && p2p_noise_done(&b));
    T_EQ_MEM(p2p_noise_hash(&a), p2p_noise_hash(&b), P2P_HASH_LEN);
    p2p_noise_split(&a, a1, a2);
    p2p_noise_split(&b, b1, b2);
    T_EQ_MEM(a1, b1, P2P_KEY_LEN);
    T_EQ_MEM(a2, b2, P2P_KEY_LEN);
    T_CHECK(memcmp(a1, a2, P2P_KEY_LEN) != 0);
    memset(sa, 0x11, sizeof sa);
    memset(sb, 0x22, sizeof sb);
    p2p_dh_public(pa, sa);
    p2p_dh_public(pb, sb);
    T_CHECK(p2p_noise_remote_static(&a) &&
            memcmp(p2p_noise_remote_static(&a), pb, P2P_DH_LEN) == 0);
    T_CHECK(p2p_noise_remote_static(&b) &&
            memcmp(p2p_noise_remote_static(&b), pa, P2P_DH_LEN) == 0);
    /* Done: no more messages either way. */
    T_EQ_INT(p2p_noise_write(&a, NULL, NULL, 0, a1, sizeof a1, &(size_t){0}), P2P_ERR_INVALID);
    p2p_noise_wipe(&a);
    p2p_noise_wipe(&b);
}

static void test_wrong_psk_fails_at_message_3(void)
{
    p2p_noise a, b;
    uint8_t psk_a[P2P_KEY_LEN], psk_b[P2P_KEY_LEN];
    int step = -1;

    memset(psk_a, 0x33, sizeof psk_a);
    memset(psk_b, 0x33, sizeof psk_b);
    psk_b[31] ^= 1;
    T_EQ_INT(handshake(&a, &b, psk_a, psk_b, &step), P2P_ERR_CRYPTO);
    T_EQ_INT(step, 2);
}

static void test_turns_and_buffers(void)
{
    p2p_noise a, b;
    uint8_t s[P2P_DH_LEN], psk[P2P_KEY_LEN], buf[256], pl[256];
    size_t n = 99, pn;
    p2p_rng rng;

    memset(s, 5, sizeof s);
    memset(psk, 6, sizeof psk);
    p2p_rng_init(&rng, 1);
    T_EQ_INT(p2p_noise_init(&a, XXPSK3, 1, NULL, 0, s, NULL, psk), 0);
    T_EQ_INT(p2p_noise_init(&b, XXPSK3, 0, NULL, 0, s, NULL, psk), 0);
    /* The responder cannot speak first, the initiator cannot read first. */
    T_EQ_INT(p2p_noise_write(&b, &rng, NULL, 0, buf, sizeof buf, &n), P2P_ERR_INVALID);
    T_EQ_INT(n, 0);
    T_EQ_INT(p2p_noise_read(&a, buf, P2P_DH_LEN, pl, sizeof pl, &pn), P2P_ERR_INVALID);
    /* Message 1 is e (32) || payload (2 in clear, but psk mode keys it: +16). */
    T_EQ_INT(p2p_noise_write(&a, &rng, (const uint8_t *)"ab", 2, buf, 49, &n), P2P_ERR_BUFFER);
    T_EQ_INT(p2p_noise_write(&a, &rng, (const uint8_t *)"ab", 2, buf, 50, &n), 0);
    T_EQ_INT(n, 50);
    /* Too short to hold e, or e but no tag. */
    {
        p2p_noise c = b;
        T_EQ_INT(p2p_noise_read(&c, buf, 31, pl, sizeof pl, &pn), P2P_ERR_INVALID);
        c = b;
        T_EQ_INT(p2p_noise_read(&c, buf, 40, pl, sizeof pl, &pn), P2P_ERR_INVALID);
        c = b;
        T_EQ_INT(p2p_noise_read(&c, buf, n, pl, 1, &pn), P2P_ERR_BUFFER);
    }
    T_EQ_INT(p2p_noise_read(&b, buf, n, pl, sizeof pl, &pn), 0);
    T_EQ_INT(pn, 2);
    T_EQ_MEM(pl, "ab", 2);
}

static void test_low_order_ephemeral_rejected(void)
{
    /* An all-zero "public key" gives an all-zero DH: the ee token must fail. */
    p2p_noise a, b;
    uint8_t s[P2P_DH_LEN], psk[P2P_KEY_LEN], buf[256], pl[256];
    size_t n, pn;
    p2p_rng rng;

    memset(s, 5, sizeof s);
    memset(psk, 6, sizeof psk);
    p2p_rng_init(&rng, 1);
    T_EQ_INT(p2p_noise_init(&a, XXPSK3, 1, NULL, 0, s, NULL, psk), 0);
    T_EQ_INT(p2p_noise_init(&b, XXPSK3, 0, NULL, 0, s, NULL, psk), 0);
    T_EQ_INT(p2p_noise_write(&a, &rng, NULL, 0, buf, sizeof buf, &n), 0);
    T_EQ_INT(p2p_noise_read(&b, buf, n, pl, sizeof pl, &pn), 0);
    T_EQ_INT(p2p_noise_write(&b, &rng, NULL, 0, buf, sizeof buf, &n), 0);
    memset(buf, 0, P2P_DH_LEN);
    T_CHECK(p2p_noise_read(&a, buf, n, pl, sizeof pl, &pn) < 0);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;

    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (buf = malloc((size_t)n)) != NULL) {
        if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
            free(buf);
            buf = NULL;
        } else {
            *len = (size_t)n;
        }
    }
    fclose(f);
    return buf;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : DEFAULT_VECTORS;
    size_t len = 0, count;
    int rc;
    char *text = slurp(path, &len);
    jm_node *root, *v;

    if (!text) {
        fprintf(stderr, "cannot read %s\n", path);
        return 1;
    }
    root = jm_parse(text, len);
    free(text);
    g_vectors = jm_get(root, "vectors");
    count = jm_count(g_vectors);
    if (!g_vectors || g_vectors->type != JM_ARRAY || count == 0) {
        fprintf(stderr, "%s: no vectors\n", path);
        jm_free(root);
        return 1;
    }
    for (v = g_vectors->child; v; v = v->next) run_named("vector", vector_name(v), v, FLIP_NONE);
    rc = t_summary("noise vectors");
    t_pass = t_fail = 0;
    /* The final handshake message is always encrypted: a flipped bit there must be caught. */
    for (v = g_vectors->child; v; v = v->next) run_named("tamper", vector_name(v), v, FLIP_LAST);
    T_RUN(test_names_rejected);
    T_RUN(test_xxpsk3_with_rng);
    T_RUN(test_wrong_psk_fails_at_message_3);
    T_RUN(test_turns_and_buffers);
    T_RUN(test_low_order_ephemeral_rejected);
    jm_free(root);
    return t_summary("noise checks") | rc;
}
