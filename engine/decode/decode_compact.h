/* decode_compact.h - the decoder's side of the compact msgpack shortcut,
 * for the example layer (slr_decoder_next_example, example_from_raw.c).
 *
 * [label, weight, ids, values] carries pre-hashed features as two bins
 * (little-endian u32 ids, f32 values).  Such a record needs no raw features
 * and no msgpack objects: the decoder only checks its shape and hands over
 * views of the bins, and the example builder reads them straight into the
 * example's arrays. */
#ifndef STREAMLR_DECODE_COMPACT_H
#define STREAMLR_DECODE_COMPACT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "streamlr/bad_reason.h"
#include "streamlr/decode.h"

typedef struct slr_raw_compact {
    double label, weight;
    bool has_label, has_weight;
    const unsigned char *ids;    /* n little-endian u32 */
    const unsigned char *values; /* n little-endian f32, or NULL for all 1 */
    uint32_t n;
} slr_raw_compact;

/* The compact form at the front of buf, when the decoder reads msgpack with
 * its fast paths on and without keep_raw, the record is complete in buf, and
 * it is nothing but the usual encodings of that form; false sends the
 * caller down the general path, which then gives the same example or the
 * proper error. */
bool slr_decoder_take_compact(const slr_decoder *d, const char *buf, size_t len, size_t *consumed,
                              slr_raw_compact *out);

/* Record why a decoded record was then refused (by the example builder),
 * for slr_decoder_last_bad. */
void slr_decoder_note_bad(slr_decoder *d, slr_bad_reason why);

#endif
