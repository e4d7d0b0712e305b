/* encode.h - output formats: raw or hashed examples back to bytes.
 *
 * The inverse of decode.h, for `streamlr convert` and for producers that
 * feed streamlr through Kafka.  Encoders append to an slr_buf, so a caller
 * can batch many records and write them with one call; on failure the buffer
 * is left as it was before the call.
 *
 * Only msgpack (the native format) and vw are written: LIBSVM cannot hold
 * names and Criteo's column layout cannot hold arbitrary examples. */
#ifndef STREAMLR_ENCODE_H
#define STREAMLR_ENCODE_H

#include <stddef.h>

#include "streamlr/buf.h"
#include "streamlr/decode.h"
#include "streamlr/error.h"
#include "streamlr/example.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Append one record in format `to` (msgpack or vw; others are SLR_ERR_ARG).
 *
 * msgpack: [label, weight, {ns: {name: value}}] -- [label, {...}] when the
 * raw example has no weight, label nil when unlabelled, the map form when it
 * has a tag.  Namespaces are written in input order, one map entry per run of
 * consecutive features, so decoding gives back the same features in the
 * same order (a namespace that occurs in two separate places becomes two
 * entries with the same key).  If every feature is pre-hashed with an id
 * below 2^32 and a value exact in float32, the compact form
 * [label, weight, ids, values] is written instead; otherwise pre-hashed
 * features are integer keys of the features map.
 *
 * vw: `label [weight] ['tag]|ns name[:value] ...`, values in the shortest
 * form that reads back to the same double.  VW has no escaping, so space,
 * tab, CR, LF, ':' and '|' in names, namespaces and tags become '_'; a weight
 * without a label cannot be written and is dropped; pre-hashed ids become
 * decimal names in the default namespace (lossy: read back, they are hashed
 * as names).  A NaN or infinite value is SLR_ERR_BAD_INPUT. */
slr_status slr_encode_raw(slr_buf *out, slr_format to, const slr_raw_example *raw, slr_error *err);

/* Append the compact pre-hashed msgpack form [label, weight, ids, values] of
 * a hashed example (after slr_example_finish, so -q features are included):
 * ids are the weight indices, values float32; label 0/1 or nil, weight nil
 * when 1, values nil when all are 1.  Decoding it gives the same indices and
 * values under any -b at least as large as the one used to hash. */
slr_status slr_encode_hashed(slr_buf *out, const slr_example *ex, slr_error *err);

#ifdef __cplusplus
}
#endif
#endif
