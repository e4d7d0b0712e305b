/* decode.h - input formats: bytes in, raw examples out.
 *
 * A decoder turns the record at the front of a byte buffer into an
 * slr_raw_example (raw_example.h): label, importance weight, tag and
 * (namespace, name, value) features as views into the buffer (nothing is
 * copied or hashed here).  slr_example_from_raw() (example.h) then hashes it
 * for the learner; `streamlr convert` instead re-encodes it (encode.h).  Keeping the two apart is what lets every
 * format convert to every other without losing names.
 *
 * Framing is the decoder's job because it is format-specific: text formats
 * take one line per record; msgpack takes one msgpack object.  The same call
 * serves files (a sliding buffer, at_end only at EOF) and Kafka messages (one
 * message, at_end true). */
#ifndef STREAMLR_DECODE_H
#define STREAMLR_DECODE_H

#include "streamlr/export.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "streamlr/bad_reason.h"
#include "streamlr/error.h"
#include "streamlr/raw_example.h"

SLR_BEGIN_DECLS

typedef enum slr_format {
    SLR_FORMAT_MSGPACK = 0,
    SLR_FORMAT_VW = 1,
    SLR_FORMAT_LIBSVM = 2,
    SLR_FORMAT_CRITEO = 3,
} slr_format;

const char *slr_format_name(slr_format f);
slr_status slr_format_parse(const char *name, slr_format *out, slr_error *err);
/* Guess from a file name's extension (.vw, .svm/.libsvm, .tsv/.criteo,
 * .msgpack/.mp); false if it cannot tell. */
bool slr_format_guess(const char *path, slr_format *out);
/* Tell the format from the first bytes of the input (a few KiB: the first
 * lines of text, or one msgpack object's first byte); false if they do not
 * say.  Every format but the one given reads the others' records as bad,
 * so this is what to ask when the user did not give --format. */
bool slr_format_detect(const char *buf, size_t len, slr_format *out);
/* True for line-oriented text formats. */
bool slr_format_is_text(slr_format f);

/* The value given to a Criteo integer column I1..I13: a sign-preserving
 * log1p, so that counts spanning six orders of magnitude land in a range a
 * single learning rate can handle.  One function so it can be tuned; a
 * change alters every Criteo model, so note it in the changelog. */
double slr_criteo_numeric_transform(double v);

typedef enum slr_decode_result {
    SLR_DECODE_EXAMPLE = 0,  /* raw holds one example; *consumed bytes were used */
    SLR_DECODE_SKIP = 1,     /* a blank or comment line; drop *consumed bytes */
    SLR_DECODE_NEED_MORE = 2, /* the record continues past len; call again with more */
    SLR_DECODE_BAD = 3,      /* malformed; err says why, drop *consumed bytes and go on */
} slr_decode_result;

typedef struct slr_decoder slr_decoder;

#define SLR_DEFAULT_MAX_RECORD (16u << 20)

slr_status slr_decoder_create(slr_decoder **out, slr_format fmt, slr_error *err);
void slr_decoder_destroy(slr_decoder *d);
slr_format slr_decoder_format(const slr_decoder *d);
/* Records longer than this many bytes are bad input (default 16 MiB). */
void slr_decoder_set_max_record(slr_decoder *d, size_t max_bytes);

/* Decode the record at the front of buf[0, len).  at_end says that no byte
 * follows buf (end of file or of a message), so a last line without a
 * newline is still a record.  Views in raw stay valid while buf does.  err
 * is filled for SLR_DECODE_BAD only; the caller adds the position.
 *
 * Every result but NEED_MORE sets *consumed > 0, so a loop that drops
 * *consumed bytes always advances; len == 0 gives NEED_MORE.  Text: one line
 * per record, *consumed includes the '\n'; a line over the record limit is
 * BAD once, then its tail comes back as SKIP up to the next newline (the
 * decoder remembers this between calls).  msgpack: one object per record; a
 * well-formed object that is not an example is BAD with *consumed = its size;
 * bytes that are not msgpack (or an object cut off by at_end, or one that
 * would exceed the record limit) are BAD with *consumed = 1, i.e. the decoder
 * resynchronises byte by byte, which is slow on long runs of garbage but
 * never skips a good record that follows. */
slr_decode_result slr_decoder_next(slr_decoder *d, const char *buf, size_t len, bool at_end,
                                   size_t *consumed, slr_raw_example *raw, slr_error *err);

/* Find where the record at the front of buf ends without decoding it, for
 * passing records on as they are (streamlr produce --raw): *consumed is the
 * size of the line (with its '\n') or of the msgpack object.  Returns
 * EXAMPLE, NEED_MORE (the record continues past len and !at_end), or BAD
 * with *consumed = 1 for bytes that are not msgpack or an object cut off by
 * the end (as slr_decoder_next does).  Nothing is checked beyond framing. */
slr_decode_result slr_decoder_frame(const slr_decoder *d, const char *buf, size_t len,
                                    bool at_end, size_t *consumed);

/* Make slr_decoder_next_example (example.h) leave the raw example of every
 * EXAMPLE in raw, forgoing the compact shortcut (for --keep-names, which
 * needs it). */
void slr_decoder_set_keep_raw(slr_decoder *d, bool keep);

/* Why the last SLR_DECODE_BAD happened: SLR_BAD_DECODE, SLR_BAD_JUNK or
 * SLR_BAD_TOO_LARGE.  *resync (may be NULL): the decoder skipped bytes to
 * find the next record (msgpack), so consecutive such results are one
 * stretch of junk.  *truncated (may be NULL): the record goes on past the
 * bytes consumed (an over-long line, whose tail then comes back as SKIP). */
slr_bad_reason slr_decoder_last_bad(const slr_decoder *d, bool *resync, bool *truncated);

SLR_END_DECLS
#endif
