/*
 * p2p_keys.c - session key updates (docs/PROTOCOL.md section 2.3): the key schedule itself,
 * which is pure. The few lines that tie it to a session (count updates, ask for a PING, end a
 * session whose keys expired) are in p2p_peer.c.
 */
#include "p2p_keys.h"
#include "p2p_crypto.h"

#include <string.h>

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

void p2p_keys_next_key(uint8_t out[P2P_KEY_LEN], const uint8_t key[P2P_KEY_LEN])
{
    uint8_t k[P2P_KEY_LEN];
    memcpy(k, key, sizeof k); /* out may be key */
    p2p_blake2b(out, P2P_KEY_LEN, k, sizeof k, (const uint8_t *)P2P_KEY_UPDATE_LABEL,
                sizeof P2P_KEY_UPDATE_LABEL - 1, NULL, 0);
    p2p_wipe(k, sizeof k);
}

void p2p_keys_init(p2p_keys *k, const uint8_t send[P2P_KEY_LEN], const uint8_t recv[P2P_KEY_LEN],
                   uint64_t now)
{
    memset(k, 0, sizeof *k);
    memcpy(k->send, send, P2P_KEY_LEN);
    memcpy(k->recv, recv, P2P_KEY_LEN);
    p2p_keys_next_key(k->next, k->recv);
    k->installed = now;
    k->recv_first_pn = UINT64_MAX;
}

void p2p_keys_wipe(p2p_keys *k)
{
    p2p_wipe(k, sizeof *k);
}

static void wipe_prev(p2p_keys *k)
{
    p2p_wipe(k->prev, sizeof k->prev);
    k->has_prev = 0;
    k->prev_until = 0;
}

/* The next generation becomes current. The receive key it replaces is kept as the previous
 * one, at most until it is REJECT_AFTER_TIME old; the one before that is wiped. */
static void advance(p2p_keys *k, uint64_t now, uint64_t send_first_pn)
{
    memcpy(k->prev, k->recv, P2P_KEY_LEN);
    k->has_prev = 1;
    k->prev_until = k->installed + P2P_REJECT_AFTER_TIME_US;
    memcpy(k->recv, k->next, P2P_KEY_LEN);
    p2p_keys_next_key(k->next, k->recv);
    p2p_keys_next_key(k->send, k->send);
    k->phase ^= P2P_DATA_KEY_PHASE;
    k->installed = now;
    k->send_first_pn = send_first_pn;
    k->recv_first_pn = UINT64_MAX;
    k->confirmed = 0;
    k->generation++;
}

const uint8_t *p2p_keys_for_open(const p2p_keys *k, uint8_t phase, uint64_t pn, uint64_t now,
                                 int *which)
{
    if (phase == k->phase) {
        *which = P2P_KEY_CURRENT;
        return p2p_keys_expired(k, now) ? NULL : k->recv;
    }
    /* The peer changes phase once, at one packet number: below every number seen in the
     * current phase lies the previous one. Until a packet of the current phase arrives, the
     * other phase can only be the previous one (the peer is never two generations ahead). */
    if (k->has_prev && pn < k->recv_first_pn) {
        *which = P2P_KEY_PREVIOUS;
        return now < k->prev_until ? k->prev : NULL;
    }
    *which = P2P_KEY_NEXT;
    return k->next;
}

int p2p_keys_opened(p2p_keys *k, int which, uint64_t pn, uint64_t now, uint64_t keep,
                    uint64_t next_pn)
{
    if (which == P2P_KEY_PREVIOUS) {
        k->late++;
        return 0;
    }
    int moved = which == P2P_KEY_NEXT;
    if (moved) advance(k, now, next_pn);
    if (pn < k->recv_first_pn) k->recv_first_pn = pn;
    if (!k->confirmed) {
        /* The peer has the current keys: what it sent under the previous ones is now only
         * what the network holds back, which arrives within a few PTO or is resent. */
        k->confirmed = 1;
        if (k->has_prev) k->prev_until = min_u64(k->prev_until, now + keep);
    }
    return moved;
}

int p2p_keys_update_due(const p2p_keys *k, uint64_t pn, uint64_t now)
{
    return k->confirmed && (now >= k->installed + P2P_REKEY_AFTER_TIME_US ||
                            pn - k->send_first_pn >= P2P_REKEY_AFTER_MESSAGES);
}

void p2p_keys_update(p2p_keys *k, uint64_t pn, uint64_t now)
{
    advance(k, now, pn);
}

int p2p_keys_expired(const p2p_keys *k, uint64_t now)
{
    return now >= k->installed + P2P_REJECT_AFTER_TIME_US;
}

void p2p_keys_destroy_send(p2p_keys *k, const uint8_t junk[P2P_KEY_LEN])
{
    memcpy(k->send, junk, P2P_KEY_LEN);
}

uint64_t p2p_keys_deadline(const p2p_keys *k)
{
    uint64_t d = k->installed + P2P_REJECT_AFTER_TIME_US;
    if (k->confirmed) d = min_u64(d, k->installed + P2P_REKEY_AFTER_TIME_US);
    if (k->has_prev) d = min_u64(d, k->prev_until);
    return d;
}

void p2p_keys_on_timeout(p2p_keys *k, uint64_t now)
{
    if (k->has_prev && now >= k->prev_until) wipe_prev(k);
}
