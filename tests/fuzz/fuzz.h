/* fuzz.h - what the fuzz harnesses share.
 *
 * Each harness is an ordinary function `int fuzz_<name>(const uint8_t *, size_t)`.
 * Built by `make fuzz` with clang -fsanitize=fuzzer, one of them becomes
 * LLVMFuzzerTestOneInput (-DFUZZ_ENTRY=fuzz_<name>); built by `make check`
 * with the normal compiler, tests/fuzz/replay.c runs every harness over its
 * committed corpus, so each input that once crashed stays a regression test
 * even where clang is not installed.
 *
 * FUZZ_CHECK aborts with a message: to libFuzzer an abort is a crash, and
 * the harnesses use it for properties the code must keep (not only for the
 * memory errors the sanitizers find on their own). */
#ifndef STREAMLR_FUZZ_H
#define STREAMLR_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(cond, ...)                                                        \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: property violated: %s\n  ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                            \
            fputc('\n', stderr);                                                     \
            abort();                                                                 \
        }                                                                            \
    } while (0)

int fuzz_msgpack(const uint8_t *data, size_t size);
int fuzz_vw(const uint8_t *data, size_t size);
int fuzz_libsvm(const uint8_t *data, size_t size);
int fuzz_criteo(const uint8_t *data, size_t size);
int fuzz_checkpoint(const uint8_t *data, size_t size);
int fuzz_checkpoint_body(const uint8_t *data, size_t size);
int fuzz_train(const uint8_t *data, size_t size);
int fuzz_sync(const uint8_t *data, size_t size);
int fuzz_sync_ledger(const uint8_t *data, size_t size);
int fuzz_sync_snapshot(const uint8_t *data, size_t size);

/* A tiny deterministic generator, seeded from the input, for split points. */
static inline uint32_t fuzz_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (uint32_t)((z ^ (z >> 31)) >> 32);
}

#ifdef FUZZ_ENTRY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return FUZZ_ENTRY(data, size); }
#endif

#endif
