/* decode.c - formats, the decoder object and text framing (see decode.h).
 *
 * The three text formats share their framing, so it lives here once: a
 * record is one line; the per-format code in decode_<fmt>.c only ever sees a
 * complete, non-blank line without its line ending.  A line longer than the
 * record limit is reported once and its tail is then dropped as SKIP until
 * the next newline, so a runaway line costs bounded memory in the caller's
 * sliding buffer and still leaves the following records readable. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "decode/decode_impl.h"

/* ------------------------------------------------------------------ formats */

static const struct {
    const char *name;
    slr_format format;
} format_names[] = {
    {"msgpack", SLR_FORMAT_MSGPACK}, {"mp", SLR_FORMAT_MSGPACK},
    {"vw", SLR_FORMAT_VW},
    {"libsvm", SLR_FORMAT_LIBSVM},   {"svm", SLR_FORMAT_LIBSVM},
    {"criteo", SLR_FORMAT_CRITEO},   {"tsv", SLR_FORMAT_CRITEO},
};

const char *slr_format_name(slr_format f)
{
    switch (f) {
    case SLR_FORMAT_MSGPACK: return "msgpack";
    case SLR_FORMAT_VW: return "vw";
    case SLR_FORMAT_LIBSVM: return "libsvm";
    case SLR_FORMAT_CRITEO: return "criteo";
    }
    return "unknown";
}

static bool format_lookup(const char *name, slr_format *out)
{
    for (size_t i = 0; i < sizeof format_names / sizeof format_names[0]; i++)
        if (!strcasecmp(name, format_names[i].name)) {
            *out = format_names[i].format;
            return true;
        }
    return false;
}

slr_status slr_format_parse(const char *name, slr_format *out, slr_error *err)
{
    if (name && format_lookup(name, out))
        return SLR_OK;
    return slr_error_set(err, SLR_ERR_ARG,
                         "unknown input format \"%s\" (expected msgpack, vw, libsvm or criteo)",
                         name ? name : "");
}

bool slr_format_guess(const char *path, slr_format *out)
{
    if (!path)
        return false;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    /* A compressed file (.vw.gz) is not readable as is, so no guess. */
    if (!dot || dot == base)
        return false;
    return format_lookup(dot + 1, out);
}

bool slr_format_is_text(slr_format f)
{
    return f == SLR_FORMAT_VW || f == SLR_FORMAT_LIBSVM || f == SLR_FORMAT_CRITEO;
}

slr_decode_result slr_decode_bad(slr_error *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    slr_error_vset(err, SLR_ERR_BAD_INPUT, fmt, ap);
    va_end(ap);
    return SLR_DECODE_BAD;
}

/* ------------------------------------------------------------------ decoder */

slr_status slr_decoder_create(slr_decoder **out, slr_format fmt, slr_error *err)
{
    *out = NULL;
    if (fmt != SLR_FORMAT_MSGPACK && !slr_format_is_text(fmt))
        return slr_error_set(err, SLR_ERR_ARG, "unknown input format %d", (int)fmt);
    slr_decoder *d = calloc(1, sizeof *d);
    if (!d)
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory for a decoder");
    d->format = fmt;
    d->max_record = SLR_DEFAULT_MAX_RECORD;
    d->fast_paths = true;
    d->c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    if (d->c_locale == (locale_t)0) {
        free(d);
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory for a decoder (C locale)");
    }
    if (fmt == SLR_FORMAT_MSGPACK) {
        slr_status st = slr_decode_msgpack_init(d, err);
        if (st != SLR_OK) {
            slr_decoder_destroy(d);
            return st;
        }
    }
    *out = d;
    return SLR_OK;
}

void slr_decoder_destroy(slr_decoder *d)
{
    if (!d)
        return;
    slr_decode_msgpack_fini(d);
    if (d->c_locale != (locale_t)0)
        freelocale(d->c_locale);
    free(d);
}

void slr_decoder_set_fast_paths(slr_decoder *d, bool on) { d->fast_paths = on; }
void slr_decoder_set_keep_raw(slr_decoder *d, bool keep) { d->keep_raw = keep; }

slr_format slr_decoder_format(const slr_decoder *d)
{
    return d->format;
}

void slr_decoder_set_max_record(slr_decoder *d, size_t max_bytes)
{
    /* Views store 32-bit lengths, so no record may be longer than that. */
    if (max_bytes == 0)
        max_bytes = SLR_DEFAULT_MAX_RECORD;
    if (max_bytes > UINT32_MAX)
        max_bytes = UINT32_MAX;
    d->max_record = max_bytes;
}

static slr_line_parser *line_parser(slr_format f)
{
    switch (f) {
    case SLR_FORMAT_VW: return slr_decode_vw_line;
    case SLR_FORMAT_LIBSVM: return slr_decode_libsvm_line;
    case SLR_FORMAT_CRITEO: return slr_decode_criteo_line;
    case SLR_FORMAT_MSGPACK: break;
    }
    return NULL;
}

static slr_decode_result next_line(slr_decoder *d, const char *buf, size_t len, bool at_end,
                                   size_t *consumed, slr_raw_example *raw, slr_error *err)
{
    const char *nl = memchr(buf, '\n', len);
    if (d->discarding) {
        *consumed = nl ? (size_t)(nl - buf) + 1 : len;
        d->discarding = !nl && !at_end;
        return SLR_DECODE_SKIP;
    }
    size_t line_len;
    if (nl) {
        line_len = (size_t)(nl - buf);
        *consumed = line_len + 1;
        if (*consumed > d->max_record) {
            d->bad_reason = SLR_BAD_TOO_LARGE;
            return slr_decode_bad(err, "line longer than %zu bytes", d->max_record);
        }
    } else if (len >= d->max_record) {
        *consumed = len;
        d->discarding = !at_end;
        d->bad_reason = SLR_BAD_TOO_LARGE;
        d->bad_truncated = d->discarding;
        return slr_decode_bad(err, "line longer than %zu bytes", d->max_record);
    } else if (at_end) {
        line_len = len;
        *consumed = len;
    } else {
        *consumed = 0;
        return SLR_DECODE_NEED_MORE;
    }

    if (line_len > 0 && buf[line_len - 1] == '\r')
        line_len--;
    size_t i = 0;
    while (i < line_len && (slr_is_blank(buf[i]) || buf[i] == '\r'))
        i++;
    if (i == line_len)
        return SLR_DECODE_SKIP;
    slr_raw_example_reset(raw);
    return line_parser(d->format)(d, buf, line_len, raw, err);
}

slr_decode_result slr_decoder_frame(const slr_decoder *d, const char *buf, size_t len,
                                    bool at_end, size_t *consumed)
{
    *consumed = 0;
    if (len == 0)
        return SLR_DECODE_NEED_MORE;
    if (d->format == SLR_FORMAT_MSGPACK)
        return slr_decode_msgpack_frame(buf, len, at_end, consumed);
    const char *nl = memchr(buf, '\n', len);
    if (!nl && !at_end)
        return SLR_DECODE_NEED_MORE;
    *consumed = nl ? (size_t)(nl - buf) + 1 : len;
    return SLR_DECODE_EXAMPLE;
}

slr_decode_result slr_decoder_next(slr_decoder *d, const char *buf, size_t len, bool at_end,
                                   size_t *consumed, slr_raw_example *raw, slr_error *err)
{
    *consumed = 0;
    d->bad_reason = SLR_BAD_DECODE;
    d->bad_resync = d->bad_truncated = false;
    if (len == 0)
        return SLR_DECODE_NEED_MORE;
    if (d->format == SLR_FORMAT_MSGPACK)
        return slr_decode_msgpack_next(d, buf, len, at_end, consumed, raw, err);
    return next_line(d, buf, len, at_end, consumed, raw, err);
}

bool slr_decoder_take_compact(const slr_decoder *d, const char *buf, size_t len, size_t *consumed,
                              slr_raw_compact *out)
{
    return d->format == SLR_FORMAT_MSGPACK && d->fast_paths && !d->keep_raw &&
           slr_decode_msgpack_compact(d, buf, len, consumed, out);
}

void slr_decoder_note_bad(slr_decoder *d, slr_bad_reason why) { d->bad_reason = why; }

slr_bad_reason slr_decoder_last_bad(const slr_decoder *d, bool *resync, bool *truncated)
{
    if (resync)
        *resync = d->bad_resync;
    if (truncated)
        *truncated = d->bad_truncated;
    return d->bad_reason;
}
