/*
 * p2p_identity.h - what the core uses of p2p_identity.c besides the public API in p2pnet.h.
 */
#ifndef P2P_IDENTITY_H
#define P2P_IDENTITY_H

#include <stddef.h>
#include <stdint.h>
#include "p2pnet.h"

/* hardening (fuzz): p2p_identity.c's key-file parser on a buffer, as p2p_identity_load uses
 * it after reading the file. Returns 0, P2P_ERR_KEYFILE or P2P_ERR_CRYPTO. */
int p2p_identity_parse_keyfile(p2p_identity *id, const uint8_t *buf, size_t len, const char *path,
                               char *err, size_t errlen);

#endif
