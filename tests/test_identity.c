/* test_identity.c - identities, key files and hex ids. Key files live in a fresh directory
 * made with mkdtemp() under $TMPDIR (or /tmp), removed at the end. The known answers were
 * computed independently with Python's `cryptography` package. */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "p2p_crypto.h"
#include "p2pnet.h"
#include "t.h"

static char g_dir[4096];
static int g_counter;

/* A fresh path in the test directory. */
static const char *new_path(char *buf, size_t cap, const char *tag)
{
    snprintf(buf, cap, "%s/%s-%d.key", g_dir, tag, g_counter++);
    return buf;
}

static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    T_CHECK(fd >= 0);
    if (fd < 0) return;
    T_CHECK(write(fd, data, len) == (ssize_t)len);
    T_CHECK(fchmod(fd, mode) == 0);
    close(fd);
}

static const char GOOD[] = "p2pnet-identity-v1\n"
                           "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20\n";

static void test_from_seed_known_answer(void)
{
    uint8_t seed[P2P_SEED_LEN], msg[47];
    p2p_identity id;
    size_t i;

    for (i = 0; i < P2P_SEED_LEN; i++) seed[i] = (uint8_t)(i + 1);
    T_EQ_INT(p2p_identity_from_seed(&id, seed), 0);
    T_EQ_HEX(id.ed_pk, "79b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad049664");
    T_EQ_MEM(id.ed_sk, seed, P2P_SEED_LEN);
    T_EQ_MEM(id.ed_sk + P2P_SEED_LEN, id.ed_pk, P2P_ID_LEN);
    T_EQ_HEX(id.x_sk, "70788f1a0cea001a2631dae5d05dbd062008d5b30f50b9e29beb2a7822289044");
    T_EQ_HEX(id.x_pk, "4a3807d064d077181cc070989e76891d20dca5559548dc2c77c1a50273882b38");
    T_EQ_HEX(id.binding_sig, "89026adf34b2d9b1dd6d1373e2974b0253da11fed4873de44b55a1033fa6ec76"
                             "967055432e698f2b8285d6463872e7ffa0bee669b88bba817c5284ee01352c07");
    memcpy(msg, "p2pnet/1 static", 15);
    memcpy(msg + 15, id.x_pk, P2P_DH_LEN);
    T_EQ_INT(p2p_verify(id.binding_sig, msg, sizeof msg, id.ed_pk), 0);
    p2p_identity_wipe(&id);
    for (i = 0; i < sizeof id.ed_sk; i++) T_CHECK(id.ed_sk[i] == 0);
    T_CHECK(id.x_sk[0] == 0 && id.x_sk[31] == 0);
}

static void test_generate(void)
{
    p2p_identity a, b;
    uint8_t x[P2P_DH_LEN], msg[47];

    T_EQ_INT(p2p_init(), 0);
    T_EQ_INT(p2p_init(), 0);
    T_EQ_INT(p2p_identity_generate(&a), 0);
    T_EQ_INT(p2p_identity_generate(&b), 0);
    T_CHECK(memcmp(a.ed_pk, b.ed_pk, P2P_ID_LEN) != 0);
    p2p_dh_public(x, a.x_sk);
    T_EQ_MEM(x, a.x_pk, P2P_DH_LEN);
    memcpy(msg, "p2pnet/1 static", 15);
    memcpy(msg + 15, a.x_pk, P2P_DH_LEN);
    T_EQ_INT(p2p_verify(a.binding_sig, msg, sizeof msg, a.ed_pk), 0);
    /* The signature binds this x_pk, not another. */
    memcpy(msg + 15, b.x_pk, P2P_DH_LEN);
    T_EQ_INT(p2p_verify(a.binding_sig, msg, sizeof msg, a.ed_pk), P2P_ERR_CRYPTO);
    p2p_identity_wipe(&a);
    p2p_identity_wipe(&b);
}

static void test_keyfile_create_and_reload(void)
{
    char path[4200], err[512], text[200];
    p2p_identity a, b, c;
    struct stat st;
    uint8_t seed[P2P_SEED_LEN];
    FILE *f;
    size_t n;
    mode_t old = umask(0); /* the file must still be 0600 with a permissive umask */

    new_path(path, sizeof path, "new");
    T_EQ_INT(p2p_identity_load(&a, path, err, sizeof err), 0);
    umask(old);
    T_EQ_INT(err[0], 0);
    T_EQ_INT(stat(path, &st), 0);
    T_CHECK(S_ISREG(st.st_mode));
    T_EQ_INT(st.st_mode & 0777, 0600);
    T_EQ_INT(st.st_size, 84);

    f = fopen(path, "r");
    T_CHECK(f != NULL);
    if (!f) return;
    n = fread(text, 1, sizeof text, f);
    fclose(f);
    T_EQ_INT(n, 84);
    T_CHECK(memcmp(text, "p2pnet-identity-v1\n", 19) == 0);
    T_EQ_INT(text[83], '\n');
    T_EQ_INT(p2p_id_from_hex(seed, text + 19, 64), 0);
    {
        char lower[65];
        /* The seed is written in lowercase. */
        p2p_id_to_hex(seed, lower);
        T_CHECK(memcmp(lower, text + 19, 64) == 0);
    }
    T_EQ_INT(p2p_identity_from_seed(&c, seed), 0);
    T_EQ_MEM(c.ed_pk, a.ed_pk, P2P_ID_LEN);

    /* Loading again gives the same identity and leaves the file alone. */
    T_EQ_INT(p2p_identity_load(&b, path, err, sizeof err), 0);
    T_EQ_MEM(&a, &b, sizeof a);
    T_EQ_INT(stat(path, &st), 0);
    T_EQ_INT(st.st_size, 84);

    /* A distinct path gets a distinct identity. */
    new_path(path, sizeof path, "other");
    T_EQ_INT(p2p_identity_load(&b, path, NULL, 0), 0);
    T_CHECK(memcmp(a.ed_pk, b.ed_pk, P2P_ID_LEN) != 0);
    p2p_identity_wipe(&a);
    p2p_identity_wipe(&b);
    p2p_identity_wipe(&c);
}

static void test_keyfile_loads_known_seed(void)
{
    char path[4200], err[512];
    p2p_identity id;

    new_path(path, sizeof path, "known");
    write_file(path, GOOD, sizeof GOOD - 1, 0600);
    T_EQ_INT(p2p_identity_load(&id, path, err, sizeof err), 0);
    T_EQ_HEX(id.ed_pk, "79b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad049664");
    /* 0400 is fine too: only group/other bits matter. */
    T_EQ_INT(chmod(path, 0400), 0);
    T_EQ_INT(p2p_identity_load(&id, path, err, sizeof err), 0);
    p2p_identity_wipe(&id);
}

static void test_keyfile_refuses_unsafe_modes(void)
{
    static const mode_t modes[] = {0644, 0640, 0604, 0660, 0602, 0620, 0666};
    char path[4200], err[512];
    p2p_identity id;
    size_t i;

    for (i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        new_path(path, sizeof path, "mode");
        write_file(path, GOOD, sizeof GOOD - 1, modes[i]);
        memset(&id, 0x77, sizeof id);
        T_EQ_INT(p2p_identity_load(&id, path, err, sizeof err), P2P_ERR_KEYFILE);
        T_CHECK(strstr(err, "readable by group or others (chmod 600)") != NULL);
        T_CHECK(strstr(err, path) != NULL);
        T_CHECK(id.ed_sk[0] == 0 && id.x_sk[0] == 0); /* nothing secret left behind */
    }
}

static void test_keyfile_refuses_malformed(void)
{
    static const char *bad[] = {
        "",
        "p2pnet-identity-v1\n",
        /* no final newline */
        "p2pnet-identity-v1\n0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20",
        /* uppercase hex */
        "p2pnet-identity-v1\n0102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F20\n",
        /* wrong version line */
        "p2pnet-identity-v2\n0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20\n",
        /* a non-hex digit */
        "p2pnet-identity-v1\n0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1fzz\n",
        /* 63 digits */
        "p2pnet-identity-v1\n0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f2\n",
        /* 65 digits */
        "p2pnet-identity-v1\n0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f200\n",
        /* CRLF */
        "p2pnet-identity-v1\r\n0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20\n",
        /* trailing garbage */
        "p2pnet-identity-v1\n0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20\n\n",
        /* right length, wrong final byte */
        "p2pnet-identity-v1\n0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20 ",
    };
    char path[4200], err[512];
    p2p_identity id;
    size_t i;

    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        new_path(path, sizeof path, "bad");
        write_file(path, bad[i], strlen(bad[i]), 0600);
        err[0] = '\0';
        T_EQ_INT(p2p_identity_load(&id, path, err, sizeof err), P2P_ERR_KEYFILE);
        T_CHECK(strstr(err, "malformed") != NULL);
        if (strstr(err, "malformed") == NULL) fprintf(stderr, "  case %zu: %s\n", i, err);
    }
    /* A big file (over the 4 KiB read limit). */
    {
        static char big[10000];
        memset(big, 'a', sizeof big);
        memcpy(big, GOOD, sizeof GOOD - 1);
        new_path(path, sizeof path, "big");
        write_file(path, big, sizeof big, 0600);
        T_EQ_INT(p2p_identity_load(&id, path, err, sizeof err), P2P_ERR_KEYFILE);
    }
    /* A NUL byte inside. */
    {
        char nul[84];
        memcpy(nul, GOOD, 84);
        nul[40] = '\0';
        new_path(path, sizeof path, "nul");
        write_file(path, nul, sizeof nul, 0600);
        T_EQ_INT(p2p_identity_load(&id, path, err, sizeof err), P2P_ERR_KEYFILE);
    }
}

static void test_keyfile_refuses_non_regular(void)
{
    char path[4200], target[4200], err[512];
    p2p_identity id;

    new_path(path, sizeof path, "dir");
    T_EQ_INT(mkdir(path, 0700), 0);
    T_EQ_INT(p2p_identity_load(&id, path, err, sizeof err), P2P_ERR_KEYFILE);
    T_CHECK(strstr(err, "not a regular file") != NULL);
    rmdir(path);

    new_path(path, sizeof path, "fifo");
    T_EQ_INT(mkfifo(path, 0600), 0);
    T_EQ_INT(p2p_identity_load(&id, path, err, sizeof err), P2P_ERR_KEYFILE);
    T_CHECK(strstr(err, "not a regular file") != NULL);

    /* A symlink, even to a good file. */
    new_path(target, sizeof target, "target");
    write_file(target, GOOD, sizeof GOOD - 1, 0600);
    new_path(path, sizeof path, "link");
    T_EQ_INT(symlink(target, path), 0);
    T_EQ_INT(p2p_identity_load(&id, path, err, sizeof err), P2P_ERR_KEYFILE);
    T_CHECK(strstr(err, "symbolic link") != NULL);
}

static void test_keyfile_io_errors(void)
{
    char path[4200], err[512];
    p2p_identity id;

    snprintf(path, sizeof path, "%s/no-such-dir/x.key", g_dir);
    T_EQ_INT(p2p_identity_load(&id, path, err, sizeof err), P2P_ERR_IO);
    T_CHECK(strstr(err, strerror(ENOENT)) != NULL);
    T_CHECK(access(path, F_OK) != 0);
    /* A tiny error buffer is truncated, never overrun. */
    {
        char small[8];
        memset(small, 'x', sizeof small);
        T_EQ_INT(p2p_identity_load(&id, path, small, 5), P2P_ERR_IO);
        T_EQ_INT(small[4], '\0');
        T_EQ_INT(small[5], 'x');
    }
}

static void test_hex_round_trip(void)
{
    uint8_t id[P2P_ID_LEN], back[P2P_ID_LEN];
    char hex[65];
    size_t i;

    for (i = 0; i < 32; i++) id[i] = (uint8_t)(i * 37 + 200);
    p2p_id_to_hex(id, hex);
    T_EQ_INT(strlen(hex), 64);
    for (i = 0; i < 64; i++)
        T_CHECK((hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f'));
    T_EQ_INT(p2p_id_from_hex(back, hex, 64), 0);
    T_EQ_MEM(back, id, P2P_ID_LEN);
    /* Either case parses. */
    for (i = 0; i < 64; i++)
        if (hex[i] >= 'a') hex[i] = (char)(hex[i] - 'a' + 'A');
    memset(back, 0, sizeof back);
    T_EQ_INT(p2p_id_from_hex(back, hex, 64), 0);
    T_EQ_MEM(back, id, P2P_ID_LEN);
    T_CHECK(strncmp("00ff", (p2p_id_to_hex((const uint8_t[P2P_ID_LEN]){0, 255}, hex), hex), 4) ==
            0);
    /* Wrong length, non-hex. */
    T_EQ_INT(p2p_id_from_hex(back, hex, 63), P2P_ERR_INVALID);
    T_EQ_INT(p2p_id_from_hex(back, hex, 0), P2P_ERR_INVALID);
    hex[10] = 'g';
    T_EQ_INT(p2p_id_from_hex(back, hex, 64), P2P_ERR_INVALID);
    hex[10] = ' ';
    T_EQ_INT(p2p_id_from_hex(back, hex, 64), P2P_ERR_INVALID);
}

static void test_strerror(void)
{
    int e, f;

    for (e = 0; e >= P2P_ERR_BUFFER; e--) {
        T_CHECK(p2p_strerror(e) != NULL && p2p_strerror(e)[0] != '\0');
        T_CHECK(strcmp(p2p_strerror(e), p2p_strerror(-100)) != 0);
        for (f = 0; f > e; f--) T_CHECK(strcmp(p2p_strerror(e), p2p_strerror(f)) != 0);
    }
    T_CHECK(p2p_strerror(12345) != NULL);
}

/* Removes the test directory and what the tests put in it (the tests only make plain
 * entries directly inside it; remove() never follows a symlink). */
static void cleanup(void)
{
    char path[4400];
    DIR *d = opendir(g_dir);
    struct dirent *e;

    if (!d) return;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(path, sizeof path, "%s/%s", g_dir, e->d_name);
        if (remove(path) != 0) fprintf(stderr, "could not remove %s\n", path);
    }
    closedir(d);
    if (rmdir(g_dir) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    int rc;

    if (!tmp || !*tmp) tmp = "/tmp";
    snprintf(g_dir, sizeof g_dir, "%s/p2pnet-id-XXXXXX", tmp);
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    T_RUN(test_from_seed_known_answer);
    T_RUN(test_generate);
    T_RUN(test_keyfile_create_and_reload);
    T_RUN(test_keyfile_loads_known_seed);
    T_RUN(test_keyfile_refuses_unsafe_modes);
    T_RUN(test_keyfile_refuses_malformed);
    T_RUN(test_keyfile_refuses_non_regular);
    T_RUN(test_keyfile_io_errors);
    T_RUN(test_hex_round_trip);
    T_RUN(test_strerror);
    rc = t_summary("identity");
    cleanup();
    return rc;
}
