/* sync_impl.h - what the files of engine/sync share and nobody else needs. */
#ifndef STREAMLR_SYNC_IMPL_H
#define STREAMLR_SYNC_IMPL_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "streamlr/error.h"
#include "streamlr/learner.h"
#include "streamlr/sync.h"

/* A delta entry's increments as bfloat16 (sync.h): x rounded to f32, then
 * to 8 significant bits, nearest even; beyond bfloat16's range (3.39e38)
 * it saturates, so that every entry is finite.  x must be finite. */
static inline uint16_t slr_sync_bf16(double x)
{
    const uint32_t top = 0x7f7f0000u; /* the largest finite bfloat16 */
    float big;
    memcpy(&big, &top, sizeof big);
    float f = x > (double)big ? big : x < -(double)big ? -big : (float)x;
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline double slr_sync_from_bf16(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return (double)f;
}

/* The bfloat16 is Inf or NaN (a record no member writes). */
static inline bool slr_sync_bf16_bad(uint16_t h) { return (h & 0x7f80u) == 0x7f80u; }

/* Where a member's own learning of coordinate j started from, as the merge
 * sees it: theta's weight w (Sum g^2 g2, its penalty paid up to step
 * `paid`) caught up to theta's step T, then decayed over the member's own n
 * steps.  The member (end of round, on theta as it is) and every reader
 * (merge, on theta caught up) compute it by this one function, so that
 * w_k = start + dw decodes exactly what the member measured against. */
double slr_sync_start(const slr_learner *theta, double w, double g2, uint64_t paid, uint64_t n);

/* Unpack untrusted bytes that must hold exactly one msgpack object into
 * *zone / *obj (msgpack_zone_destroy the zone after use, also on failure).
 * The bytes are scanned first (util/msgpack_scan.h), so a header promising
 * billions of elements is refused instead of reserving memory for them.
 * `what` starts the error message ("sync delta"). */
slr_status slr_sync_unpack(const void *buf, size_t len, msgpack_zone *zone, msgpack_object *obj,
                           const char *what, slr_error *err);

/* The packing side: hand sb's bytes (malloc'ed: the caller free()s them)
 * to *out / *out_len, or SLR_ERR_NOMEM "out of memory encoding <what>" if
 * a write failed on the way (msgpack's sbuffer then holds no data). */
slr_status slr_sync_take(msgpack_sbuffer *sb, unsigned char **out, size_t *out_len,
                         const char *what, slr_error *err);

/* The end of the last range of (topic, partition) in g, 0 if none: how far
 * a partition's slices reach in a model. */
int64_t slr_sync_ledger_reach(const slr_sync_ledger *g, const char *topic, int32_t partition);

/* One record of a snapshot (sync_snapshot.c): bytes [.., ..+len) of the
 * body, chunk index of count. */
typedef struct slr_sync_chunk {
    uint64_t id, round;
    int64_t position; /* the snapshot's (so that a reader can tell a usable one unread) */
    uint32_t index, count;
    uint64_t total, hash; /* the body's length and XXH3-64 */
    const unsigned char *data;
    size_t len;
} slr_sync_chunk;

slr_status slr_sync_chunk_encode(const slr_sync_chunk *c, unsigned char **out, size_t *out_len,
                                 slr_error *err);
/* SLR_ERR_CORRUPT for anything but a well-formed chunk of this version; on
 * success c->data is a malloc'ed copy of its bytes. */
slr_status slr_sync_chunk_decode(const void *buf, size_t len, slr_sync_chunk *c, slr_error *err);
uint64_t slr_sync_body_hash(const void *buf, size_t len);

#endif
