/* decode_impl.h - what decode.c shares with the per-format decoders.
 *
 * decode.c owns the decoder object and, for the text formats, the framing
 * (finding the line, CRLF, blank lines, over-long lines); each decode_<fmt>.c
 * then parses one line, or for msgpack one object, into a raw example.  The
 * helpers here are inline because they run once per feature. */
#ifndef STREAMLR_DECODE_IMPL_H
#define STREAMLR_DECODE_IMPL_H

#include <locale.h>
#include <stdbool.h>
#include <stddef.h>

#include "decode/decode_compact.h"
#include "streamlr/decode.h"

struct slr_msgpack_state; /* decode_msgpack.c */

struct slr_decoder {
    slr_format format;
    size_t max_record;
    bool discarding;    /* text: dropping the tail of an over-long line */
    /* why the last BAD happened (slr_decoder_last_bad) */
    slr_bad_reason bad_reason;
    bool bad_resync, bad_truncated;
    locale_t c_locale;  /* numbers must not depend on the caller's setlocale() */
    struct slr_msgpack_state *mp;
    bool fast_paths; /* msgpack: walk common shapes without msgpack objects */
    bool keep_raw;   /* slr_decoder_next_example always fills raw */
};

/* Tests switch the fast paths off to compare them with the general path. */
void slr_decoder_set_fast_paths(slr_decoder *d, bool on);

/* Parse one line (without its '\n' or a trailing '\r'; never blank) into raw,
 * which the caller has reset.  Returns EXAMPLE, SKIP (comment) or BAD. */
typedef slr_decode_result slr_line_parser(const slr_decoder *d, const char *line, size_t len,
                                          slr_raw_example *raw, slr_error *err);
slr_line_parser slr_decode_vw_line;
slr_line_parser slr_decode_libsvm_line;
slr_line_parser slr_decode_criteo_line;

slr_status slr_decode_msgpack_init(slr_decoder *d, slr_error *err);
void slr_decode_msgpack_fini(slr_decoder *d);
slr_decode_result slr_decode_msgpack_next(slr_decoder *d, const char *buf, size_t len, bool at_end,
                                          size_t *consumed, slr_raw_example *raw, slr_error *err);
slr_decode_result slr_decode_msgpack_frame(const char *buf, size_t len, bool at_end,
                                           size_t *consumed);

/* The compact form [label, weight, ids, values] as views (decode_compact.h). */
bool slr_decode_msgpack_compact(const slr_decoder *d, const char *buf, size_t len,
                                size_t *consumed, slr_raw_compact *out);

/* Fill err and return SLR_DECODE_BAD (decode.c). */
slr_decode_result slr_decode_bad(slr_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Append a feature; the common case is a store and an increment. */
static inline slr_status slr_raw_add(slr_raw_example *raw, const char *ns, size_t ns_len,
                                     const char *name, size_t name_len, uint64_t id, double value,
                                     slr_error *err)
{
    if (raw->n_features == raw->cap_features) {
        slr_status st = slr_raw_example_grow(raw, 1, err);
        if (st != SLR_OK)
            return st;
    }
    /* Lengths fit: a record is at most UINT32_MAX bytes (see set_max_record). */
    raw->features[raw->n_features++] = (slr_raw_feature){
        .ns = ns, .ns_len = (uint32_t)ns_len, .name = name, .name_len = (uint32_t)name_len,
        .id = id, .value = value};
    return SLR_OK;
}

static inline bool slr_is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Error messages quote input text; long or binary junk is cut short. */
#define SLR_QUOTE_MAX 64
#define SLR_QUOTE(p, n) (int)((n) > SLR_QUOTE_MAX ? SLR_QUOTE_MAX : (n)), ((p) ? (p) : "")

#endif
