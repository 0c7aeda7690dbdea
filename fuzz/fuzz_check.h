/*
 * fuzz_check.h - the check of the fuzz targets that test a parser alone (fuzz_addr,
 * fuzz_frames, fuzz_keyfile): a failed check traps at once, so libFuzzer records the input
 * without any harness code in the way. The host-level targets use FZ_CHECK (fuzz_common.h),
 * which also says which check failed.
 */
#ifndef FUZZ_CHECK_H
#define FUZZ_CHECK_H

#define CHECK(c)              \
    do {                      \
        if (!(c)) {           \
            __builtin_trap(); \
        }                     \
    } while (0)

#endif
