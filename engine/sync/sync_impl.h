/* sync_impl.h - what the files of engine/sync share and nobody else needs. */
#ifndef STREAMLR_SYNC_IMPL_H
#define STREAMLR_SYNC_IMPL_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "streamlr/error.h"
#include "streamlr/sync.h"

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
