/*
 * p2p_identity.c - node identities (an Ed25519 key pair with its converted X25519 static key
 * and the signature binding the two), the key file, hex ids and p2p_strerror().
 *
 * The key file holds only the 32-byte Ed25519 seed; everything else is derived from it, so
 * the file cannot hold an inconsistent key pair.
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#ifdef _WIN32
#include <io.h>
/* Windows (docs/PORTING.md): no symbolic-link, close-on-exec or non-blocking open flags; the
 * file must open in binary mode; fsync is _commit. Permission bits do not say who may read a
 * file there (its ACL, inherited from its directory, does), so the group/other check does
 * not apply. */
#define O_NOFOLLOW 0
#define O_CLOEXEC 0
#define O_NONBLOCK 0
#define KEYFILE_BINARY O_BINARY
#define KEYFILE_CHECK_MODE 0
#define fchmod(fd, mode) ((void)(fd), (void)(mode), 0)
#define fsync(fd) _commit(fd)
#else
#define KEYFILE_BINARY 0
#define KEYFILE_CHECK_MODE 1
#endif

#include "p2p_identity.h"
#include "p2p_crypto.h"

#define BINDING_LABEL "p2pnet/1 static"
#define BINDING_LABEL_LEN 15
#define KEYFILE_HEADER "p2pnet-identity-v1\n"
#define KEYFILE_HEADER_LEN 19
#define KEYFILE_LEN (KEYFILE_HEADER_LEN + P2P_ID_HEX_LEN + 1) /* 84: the seed in hex, a newline */
#define KEYFILE_READ_MAX 4096

const char *p2p_strerror(int err)
{
    switch (err) {
    case P2P_OK: return "ok";
    case P2P_ERR_NOMEM: return "out of memory";
    case P2P_ERR_INVALID: return "invalid argument";
    case P2P_ERR_ADDRESS: return "bad address";
    case P2P_ERR_CRYPTO: return "cryptographic check failed";
    case P2P_ERR_PEER: return "no such peer or wrong peer state";
    case P2P_ERR_FULL: return "send queue full";
    case P2P_ERR_TOO_BIG: return "message too big";
    case P2P_ERR_LIMIT: return "limit reached";
    case P2P_ERR_CLOSED: return "host closed";
    case P2P_ERR_IO: return "I/O error";
    case P2P_ERR_KEYFILE: return "bad key file";
    case P2P_ERR_BUFFER: return "buffer too small";
    default: return "unknown error";
    }
}

int p2p_init(void)
{
    return p2p_crypto_init();
}

int p2p_identity_from_seed(p2p_identity *id, const uint8_t seed[P2P_SEED_LEN])
{
    uint8_t msg[BINDING_LABEL_LEN + P2P_DH_LEN];

    memset(id, 0, sizeof *id);
    if (p2p_init() != 0 || p2p_ed_keypair_from_seed(id->ed_pk, id->ed_sk, seed) != 0 ||
        p2p_ed_sk_to_x(id->x_sk, id->ed_sk) != 0 || p2p_ed_to_x_public(id->x_pk, id->ed_pk) != 0) {
        p2p_identity_wipe(id);
        return P2P_ERR_CRYPTO;
    }
    memcpy(msg, BINDING_LABEL, BINDING_LABEL_LEN);
    memcpy(msg + BINDING_LABEL_LEN, id->x_pk, P2P_DH_LEN);
    p2p_sign(id->binding_sig, msg, sizeof msg, id->ed_sk);
    return 0;
}

int p2p_identity_generate(p2p_identity *id)
{
    uint8_t seed[P2P_SEED_LEN];
    int rc;

    if (p2p_init() != 0) return P2P_ERR_CRYPTO;
    p2p_random_bytes(seed, sizeof seed);
    rc = p2p_identity_from_seed(id, seed);
    p2p_wipe(seed, sizeof seed);
    return rc;
}

void p2p_identity_wipe(p2p_identity *id)
{
    if (id) p2p_wipe(id, sizeof *id);
}

void p2p_id_to_hex(const uint8_t id[P2P_ID_LEN], char hex[P2P_ID_HEX_LEN + 1])
{
    static const char digits[] = "0123456789abcdef";
    int i;

    for (i = 0; i < P2P_ID_LEN; i++) {
        hex[2 * i] = digits[id[i] >> 4];
        hex[2 * i + 1] = digits[id[i] & 15];
    }
    hex[P2P_ID_HEX_LEN] = '\0';
}

static int hex_digit(char c, int lower_only)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (!lower_only && c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes exactly P2P_ID_HEX_LEN hex characters (an id or a seed). Returns 0 or
 * P2P_ERR_INVALID (out is then zeroed). */
static int unhex_id(uint8_t out[P2P_ID_LEN], const char *hex, int lower_only)
{
    int i;

    for (i = 0; i < P2P_ID_LEN; i++) {
        int hi = hex_digit(hex[2 * i], lower_only), lo = hex_digit(hex[2 * i + 1], lower_only);
        if (hi < 0 || lo < 0) {
            p2p_wipe(out, P2P_ID_LEN);
            return P2P_ERR_INVALID;
        }
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

int p2p_id_from_hex(uint8_t id[P2P_ID_LEN], const char *hex, size_t len)
{
    if (!hex || len != P2P_ID_HEX_LEN) return P2P_ERR_INVALID;
    return unhex_id(id, hex, 0);
}

/* ---- key file ------------------------------------------------------------------------- */

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static int
fail(int rc, char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err && errlen) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

static int write_all(int fd, const uint8_t *buf, size_t len)
{
    while (len) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Creates a new key file with a fresh seed. Returns 0, P2P_ERR_IO, or 1 when the file
 * appeared in the meantime (the caller then loads it). */
static int create_keyfile(p2p_identity *id, const char *path, char *err, size_t errlen)
{
    uint8_t seed[P2P_SEED_LEN], text[KEYFILE_LEN];
    char hex[P2P_ID_HEX_LEN + 1];
    int fd, rc, saved;

    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | KEYFILE_BINARY, 0600);
    if (fd < 0) {
        if (errno == EEXIST) return 1;
        return fail(P2P_ERR_IO, err, errlen, "cannot create key file %s: %s", path,
                    strerror(errno));
    }
    p2p_random_bytes(seed, sizeof seed);
    rc = p2p_identity_from_seed(id, seed);
    if (rc != 0) {
        close(fd);
        unlink(path);
        p2p_wipe(seed, sizeof seed);
        return fail(rc, err, errlen, "cannot derive a key for %s", path);
    }
    p2p_id_to_hex(seed, hex);
    memcpy(text, KEYFILE_HEADER, KEYFILE_HEADER_LEN);
    memcpy(text + KEYFILE_HEADER_LEN, hex, P2P_ID_HEX_LEN);
    text[KEYFILE_LEN - 1] = '\n';
    p2p_wipe(seed, sizeof seed);
    p2p_wipe(hex, sizeof hex);

    /* The umask may have removed bits, never added them, but be explicit about the mode. */
    if (fchmod(fd, 0600) != 0 || write_all(fd, text, sizeof text) != 0 || fsync(fd) != 0) {
        saved = errno;
        p2p_wipe(text, sizeof text);
        close(fd);
        unlink(path); /* a half-written file would be refused as malformed next time */
        p2p_identity_wipe(id);
        return fail(P2P_ERR_IO, err, errlen, "cannot write key file %s: %s", path, strerror(saved));
    }
    p2p_wipe(text, sizeof text);
    if (close(fd) != 0) {
        saved = errno;
        unlink(path);
        p2p_identity_wipe(id);
        return fail(P2P_ERR_IO, err, errlen, "cannot write key file %s: %s", path, strerror(saved));
    }
    return 0;
}

/* Reads and checks an existing key file. Returns 0, P2P_ERR_KEYFILE or P2P_ERR_IO, or 1 when
 * the file does not exist. */
static int read_keyfile(p2p_identity *id, const char *path, char *err, size_t errlen)
{
    uint8_t buf[KEYFILE_READ_MAX];
    struct stat st;
    size_t got = 0;
    int fd, rc;

    /* O_NOFOLLOW: a key file must be the file itself; O_NONBLOCK: a FIFO must not hang us
     * before fstat() refuses it. */
    fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | KEYFILE_BINARY);
    if (fd < 0) {
        if (errno == ENOENT) return 1;
        if (errno == ELOOP)
            return fail(P2P_ERR_KEYFILE, err, errlen,
                        "key file %s is a symbolic link, not a regular file", path);
        return fail(P2P_ERR_IO, err, errlen, "cannot open key file %s: %s", path, strerror(errno));
    }
    if (fstat(fd, &st) != 0) {
        rc = fail(P2P_ERR_IO, err, errlen, "cannot stat key file %s: %s", path, strerror(errno));
        close(fd);
        return rc;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return fail(P2P_ERR_KEYFILE, err, errlen, "key file %s is not a regular file", path);
    }
    if (KEYFILE_CHECK_MODE && (st.st_mode & 077)) {
        close(fd);
        return fail(P2P_ERR_KEYFILE, err, errlen,
                    "key file %s is readable by group or others (chmod 600)", path);
    }
    while (got < sizeof buf) {
        ssize_t n = read(fd, buf + got, sizeof buf - got);
        if (n < 0) {
            if (errno == EINTR) continue;
            rc =
                fail(P2P_ERR_IO, err, errlen, "cannot read key file %s: %s", path, strerror(errno));
            close(fd);
            p2p_wipe(buf, sizeof buf);
            return rc;
        }
        if (n == 0) break;
        got += (size_t)n;
    }
    close(fd);
    rc = p2p_identity_parse_keyfile(id, buf, got, path, err, errlen);
    p2p_wipe(buf, sizeof buf);
    return rc;
}

/* Checks the bytes of a key file (all of them, got bytes) and derives the identity: the
 * parser alone, apart from the file system, so that it can be fuzzed (fuzz/fuzz_keyfile.c).
 * path only names the file in messages. */
int p2p_identity_parse_keyfile(p2p_identity *id, const uint8_t *buf, size_t got, const char *path,
                               char *err, size_t errlen)
{
    uint8_t seed[P2P_SEED_LEN];
    int rc = 0;

    if (got != KEYFILE_LEN)
        rc = fail(P2P_ERR_KEYFILE, err, errlen,
                  "key file %s is malformed: expected 84 bytes (\"p2pnet-identity-v1\", a "
                  "newline, 64 lowercase hex digits, a newline)",
                  path);
    else if (memcmp(buf, KEYFILE_HEADER, KEYFILE_HEADER_LEN) != 0)
        rc = fail(P2P_ERR_KEYFILE, err, errlen,
                  "key file %s is malformed: the first line is not \"p2pnet-identity-v1\"", path);
    else if (buf[KEYFILE_LEN - 1] != '\n' ||
             unhex_id(seed, (const char *)buf + KEYFILE_HEADER_LEN, 1) != 0)
        rc = fail(P2P_ERR_KEYFILE, err, errlen,
                  "key file %s is malformed: the second line must be 64 lowercase hex digits "
                  "and a newline",
                  path);
    if (rc != 0) return rc;
    rc = p2p_identity_from_seed(id, seed);
    p2p_wipe(seed, sizeof seed);
    if (rc != 0) return fail(rc, err, errlen, "cannot derive a key from %s", path);
    return 0;
}

int p2p_identity_load(p2p_identity *id, const char *path, char *err, size_t errlen)
{
    int rc, attempt;

    if (err && errlen) err[0] = '\0';
    memset(id, 0, sizeof *id);
    if (!path || !*path) return fail(P2P_ERR_IO, err, errlen, "no key file path given");
    if (p2p_init() != 0) return fail(P2P_ERR_CRYPTO, err, errlen, "libsodium failed to initialise");
    /* Two rounds: another process may create the file between our read and our create. */
    for (attempt = 0; attempt < 2; attempt++) {
        rc = read_keyfile(id, path, err, errlen);
        if (rc != 1) return rc;
        rc = create_keyfile(id, path, err, errlen);
        if (rc != 1) return rc;
    }
    return fail(P2P_ERR_IO, err, errlen, "key file %s keeps appearing and disappearing", path);
}
