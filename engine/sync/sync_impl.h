/* sync_impl.h - what the files of engine/sync share and nobody else needs. */
#ifndef STREAMLR_SYNC_IMPL_H
#define STREAMLR_SYNC_IMPL_H

#include <msgpack.h>

#include "streamlr/error.h"

/* Unpack untrusted bytes that must hold exactly one msgpack object into
 * *zone / *obj (msgpack_zone_destroy the zone after use, also on failure).
 * The bytes are scanned first (util/msgpack_scan.h), so a header promising
 * billions of elements is refused instead of reserving memory for them.
 * `what` starts the error message ("sync delta"). */
slr_status slr_sync_unpack(const void *buf, size_t len, msgpack_zone *zone, msgpack_object *obj,
                           const char *what, slr_error *err);

#endif
