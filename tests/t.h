/* t.h - the tiny unit-test harness shared by tests/test_*.c. Each test file defines
 * functions `static void test_xxx(void)` and lists them in main() with T_RUN(test_xxx).
 * A failed check prints where and why and marks the test failed; main returns t_summary(),
 * which prints "N passed, N failed" and exits nonzero on any failure. */
#ifndef P2P_T_H
#define P2P_T_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int t_failed_checks, t_pass, t_fail;
static const char *t_name;

#define T_CHECK(cond)                                                                       \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            t_failed_checks++;                                                              \
            fprintf(stderr, "  FAIL %s:%d in %s: %s\n", __FILE__, __LINE__, t_name, #cond); \
        }                                                                                   \
    } while (0)
#define T_EQ_INT(a, b)                                                                         \
    do {                                                                                       \
        long long t_a = (long long)(a), t_b = (long long)(b);                                  \
        if (t_a != t_b) {                                                                      \
            t_failed_checks++;                                                                 \
            fprintf(stderr, "  FAIL %s:%d in %s: %s == %lld, want %lld\n", __FILE__, __LINE__, \
                    t_name, #a, t_a, t_b);                                                     \
        }                                                                                      \
    } while (0)
#define T_EQ_MEM(a, b, n)                                                                     \
    do {                                                                                      \
        if (memcmp((a), (b), (n)) != 0) {                                                     \
            t_failed_checks++;                                                                \
            fprintf(stderr, "  FAIL %s:%d in %s: %s != %s (%zu bytes)\n", __FILE__, __LINE__, \
                    t_name, #a, #b, (size_t)(n));                                             \
        }                                                                                     \
    } while (0)
/* T_ONLY=substring runs only the tests whose name contains it (for debugging). */
#define T_RUN(fn)                                                      \
    do {                                                               \
        if (getenv("T_ONLY") && !strstr(#fn, getenv("T_ONLY"))) break; \
        int t_before = t_failed_checks;                                \
        t_name = #fn;                                                  \
        fn();                                                          \
        if (t_failed_checks == t_before) {                             \
            t_pass++;                                                  \
            printf("ok   %s\n", #fn);                                  \
        } else {                                                       \
            t_fail++;                                                  \
            printf("FAIL %s\n", #fn);                                  \
        }                                                              \
    } while (0)

/* Decodes the hex string hex (an even number of digits) into out. */
static inline void t_from_hex(uint8_t *out, const char *hex)
{
    size_t i, n = strlen(hex) / 2;
    for (i = 0; i < n; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
}

/* buf holds the bytes the hex string spells (at most 128 of them). */
#define T_EQ_HEX(buf, hex)            \
    do {                              \
        uint8_t t_want[128];          \
        size_t t_n = strlen(hex) / 2; \
        t_from_hex(t_want, hex);      \
        T_EQ_MEM(buf, t_want, t_n);   \
    } while (0)

static int t_summary(const char *suite)
{
    printf("%s: %d passed, %d failed\n", suite, t_pass, t_fail);
    return t_fail ? 1 : 0;
}
#endif
