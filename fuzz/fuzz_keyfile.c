/*
 * fuzz_keyfile.c - libFuzzer target for the key-file parser (p2p_identity_parse_keyfile, the
 * part of p2p_identity_load after the file is read) and the hex id parser (p2p_id_from_hex).
 *
 * The input is the file's contents. Checks: only the exact 84-byte form is accepted, and then
 * the identity is the one its seed gives; a refusal writes a NUL-terminated reason that fits
 * the error buffer, whatever its size (taken from the input's length), and leaves no
 * identity behind; a 64-character id parses exactly when every character is a hex digit, and
 * formats back to the same text in lowercase.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "p2p_internal.h"
#include "fuzz_check.h"

#define KEYFILE_LEN (HEADER_LEN + P2P_ID_HEX_LEN + 1)
#define HEADER "p2pnet-identity-v1\n"
#define HEADER_LEN 19
#define ERR_MAX 200

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    CHECK(p2p_init() == 0);
    return 0;
}

static int lower_hex(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f'))) return 0;
    return 1;
}

static void keyfile(const uint8_t *data, size_t size)
{
    char err[ERR_MAX + 1];
    size_t errlen = 1 + size % ERR_MAX;
    memset(err, 0x5a, sizeof err);
    p2p_identity id;
    memset(&id, 0xee, sizeof id);
    int rc = p2p_identity_parse_keyfile(&id, data, size, "fuzz.key", err, errlen);
    int valid = size == KEYFILE_LEN && memcmp(data, HEADER, HEADER_LEN) == 0 &&
                lower_hex(data + HEADER_LEN, P2P_ID_HEX_LEN) && data[KEYFILE_LEN - 1] == '\n';
    CHECK((rc == 0) == valid);
    CHECK((unsigned char)err[errlen] == 0x5a); /* nothing written past errlen */
    if (rc != 0) {
        CHECK(rc == P2P_ERR_KEYFILE);
        CHECK(memchr(err, '\0', errlen) != NULL);
        return;
    }
    uint8_t seed[P2P_SEED_LEN];
    CHECK(p2p_id_from_hex(seed, (const char *)data + HEADER_LEN, P2P_ID_HEX_LEN) == 0);
    p2p_identity again;
    CHECK(p2p_identity_from_seed(&again, seed) == 0);
    CHECK(memcmp(&again, &id, sizeof id) == 0);
    p2p_identity_wipe(&again);
    p2p_identity_wipe(&id);
}

static void hex_id(const uint8_t *data, size_t size)
{
    uint8_t id[P2P_ID_LEN];
    size_t n = size < P2P_ID_HEX_LEN ? size : P2P_ID_HEX_LEN;
    int ok = p2p_id_from_hex(id, (const char *)data, n) == 0;
    int want = n == P2P_ID_HEX_LEN;
    for (size_t i = 0; i < n && want; i++) want = isxdigit(data[i]) != 0;
    CHECK(ok == want);
    if (!ok) return;
    char hex[65];
    p2p_id_to_hex(id, hex);
    for (size_t i = 0; i < P2P_ID_HEX_LEN; i++) CHECK(hex[i] == tolower(data[i]));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    keyfile(data, size);
    hex_id(data, size);
    return 0;
}
