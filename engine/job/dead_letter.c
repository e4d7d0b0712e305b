/* dead_letter.c - the dead-letter JSON line and the file sink (see dead_letter.h).
 *
 * One JSON object per line, keys in a fixed order, the record's bytes in
 * base64 so that any byte survives (msgpack, NULs, invalid UTF-8) and the
 * exact record can be replayed; docs/DEAD_LETTERS.md has the schema.  The
 * sink buffers lines and writes them in large chunks (no syscall per
 * record); sync writes the rest and fsyncs, and the position it reports is
 * the file's length, which is what resume truncates back to. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "streamlr/dead_letter.h"

#define FLUSH_AT (64u << 10)

/* ------------------------------------------------------------ JSON line */

static slr_status put_str(slr_buf *b, const char *s, slr_error *err)
{
    return slr_buf_append(b, s, strlen(s), err);
}

/* Length of the valid UTF-8 sequence at s[0, n), 0 if it is not one. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t len = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
    if (len == 0 || len > n || s[0] > 0xf4)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] > 0x9f) || /* overlong, surrogate */
        (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] > 0x8f))
        return 0;
    return len;
}

/* A JSON string.  Text from the input (quoted in messages, paths) may be any
 * bytes; valid UTF-8 passes through, anything else becomes U+FFFD, so the
 * line is always valid JSON.  (The record itself is in "data", exactly.) */
static slr_status put_json_string(slr_buf *b, const char *s, slr_error *err)
{
    size_t n = strlen(s);
    slr_status st = slr_buf_reserve(b, 3 + n * 6, err); /* \u00XX each, quotes, sprintf's NUL */
    if (st != SLR_OK)
        return st;
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    char *o = b->data + b->len;
    *o++ = '"';
    while (p < end) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            *o++ = '\\';
            *o++ = (char)c;
            p++;
        } else if (c < 0x20 || c == 0x7f) {
            o += sprintf(o, "\\u%04x", c);
            p++;
        } else if (c < 0x80) {
            *o++ = (char)c;
            p++;
        } else {
            size_t k = utf8_len(p, (size_t)(end - p));
            if (k) {
                memcpy(o, p, k);
                o += k;
                p += k;
            } else {
                o += sprintf(o, "\\ufffd");
                p++;
            }
        }
    }
    *o++ = '"';
    b->len = (size_t)(o - b->data);
    return SLR_OK;
}

static slr_status put_base64(slr_buf *b, const unsigned char *s, size_t n, slr_error *err)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    slr_status st = slr_buf_reserve(b, 2 + (n + 2) / 3 * 4, err);
    if (st != SLR_OK)
        return st;
    char *o = b->data + b->len;
    *o++ = '"';
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        *o++ = abc[v >> 18];
        *o++ = abc[(v >> 12) & 63];
        *o++ = abc[(v >> 6) & 63];
        *o++ = abc[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0);
        *o++ = abc[v >> 18];
        *o++ = abc[(v >> 12) & 63];
        *o++ = i + 1 < n ? abc[(v >> 6) & 63] : '=';
        *o++ = '=';
    }
    *o++ = '"';
    b->len = (size_t)(o - b->data);
    return SLR_OK;
}

slr_status slr_dead_letter_to_json(slr_buf *out, const slr_dead_letter *dl, slr_error *err)
{
    size_t before = out->len;
    char num[128];
    slr_status st = put_str(out, "{\"reason\":", err);
    if (st == SLR_OK)
        st = put_json_string(out, slr_bad_reason_name(dl->reason), err);
    if (st == SLR_OK)
        st = put_str(out, ",\"error\":", err);
    if (st == SLR_OK)
        st = put_json_string(out, dl->error ? dl->error : "", err);
    if (st == SLR_OK)
        st = put_str(out, ",\"source\":", err);
    if (st == SLR_OK)
        st = put_json_string(out, dl->source ? dl->source : "", err);
    if (st == SLR_OK) {
        int k = snprintf(num, sizeof num, ",\"offset\":%llu", (unsigned long long)dl->offset);
        if (dl->line)
            k += snprintf(num + k, sizeof num - (size_t)k, ",\"line\":%llu", (unsigned long long)dl->line);
        if (dl->is_message)
            snprintf(num + k, sizeof num - (size_t)k, ",\"message\":true");
        st = put_str(out, num, err);
    }
    if (st == SLR_OK)
        st = put_str(out, ",\"format\":", err);
    if (st == SLR_OK)
        st = put_json_string(out, dl->format ? dl->format : "", err);
    if (st == SLR_OK) {
        snprintf(num, sizeof num, ",\"length\":%zu%s,\"data\":", dl->len,
                 dl->truncated ? ",\"truncated\":true" : "");
        st = put_str(out, num, err);
    }
    if (st == SLR_OK)
        st = put_base64(out, (const unsigned char *)dl->data, dl->len, err);
    if (st == SLR_OK)
        st = put_str(out, "}\n", err);
    if (st != SLR_OK)
        out->len = before;
    return st;
}

/* ------------------------------------------------------------ file sink */

typedef struct file_sink {
    slr_dead_letter_sink base;
    char *path;
    int fd;
    slr_buf pending;   /* lines not yet written */
    uint64_t written;  /* the file's length as far as we have written it */
    bool dirty;        /* written since the last fsync */
} file_sink;

static slr_status write_pending(file_sink *f, slr_error *err)
{
    size_t off = 0;
    while (off < f->pending.len) {
        ssize_t w = write(f->fd, f->pending.data + off, f->pending.len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return slr_error_set(err, SLR_ERR_IO, "writing dead letters to %s failed: %s", f->path,
                                 strerror(errno));
        off += (size_t)w;
        f->written += (uint64_t)w;
        f->dirty = true;
    }
    slr_buf_reset(&f->pending);
    return SLR_OK;
}

static slr_status file_put(slr_dead_letter_sink *s, const slr_dead_letter *dl, slr_error *err)
{
    file_sink *f = (file_sink *)s;
    slr_status st = slr_dead_letter_to_json(&f->pending, dl, err);
    if (st == SLR_OK && f->pending.len >= FLUSH_AT)
        st = write_pending(f, err);
    return st;
}

static slr_status file_sync(slr_dead_letter_sink *s, uint64_t *position, slr_error *err)
{
    file_sink *f = (file_sink *)s;
    slr_status st = write_pending(f, err);
    if (st != SLR_OK)
        return st;
    if (f->dirty && fsync(f->fd) != 0)
        return slr_error_set(err, SLR_ERR_IO, "fsync of dead-letter file %s failed: %s", f->path,
                             strerror(errno));
    f->dirty = false;
    *position = f->written;
    return SLR_OK;
}

static slr_status file_resume(slr_dead_letter_sink *s, uint64_t position, uint64_t *dropped,
                              slr_error *err)
{
    file_sink *f = (file_sink *)s;
    if (dropped)
        *dropped = 0;
    if (f->pending.len || f->written < position)
        return slr_error_set(err, SLR_ERR_MISMATCH,
                             "dead-letter file %s holds %llu bytes, but the checkpoint counts %llu "
                             "written: it was truncated or replaced since; restore it, or give a "
                             "new --dead-letter path",
                             f->path, (unsigned long long)f->written, (unsigned long long)position);
    if (f->written == position)
        return SLR_OK;
    /* Lines written after the checkpoint: the replay writes them again. */
    if (ftruncate(f->fd, (off_t)position) != 0 || fsync(f->fd) != 0)
        return slr_error_set(err, SLR_ERR_IO, "cannot truncate dead-letter file %s to %llu bytes: %s",
                             f->path, (unsigned long long)position, strerror(errno));
    if (dropped)
        *dropped = f->written - position;
    f->written = position;
    return SLR_OK;
}

static void file_close(slr_dead_letter_sink *s)
{
    file_sink *f = (file_sink *)s;
    if (!f)
        return;
    write_pending(f, NULL); /* best effort: sync is what makes them count */
    if (f->fd >= 0)
        close(f->fd);
    slr_buf_free(&f->pending);
    free(f->path);
    free(f);
}

slr_status slr_dead_letter_file_open(slr_dead_letter_sink **out, const char *path,
                                     slr_error *err)
{
    *out = NULL;
    file_sink *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
    }
    f->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    struct stat sb;
    if (f->fd < 0 || fstat(f->fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        int e = f->fd < 0 ? errno : EINVAL;
        if (f->fd >= 0)
            close(f->fd);
        free(f->path);
        free(f);
        return slr_error_set(err, SLR_ERR_IO, "cannot open dead-letter file %s: %s", path,
                             e == EINVAL ? "not a regular file" : strerror(e));
    }
    f->written = (uint64_t)sb.st_size;
    slr_buf_init(&f->pending);
    f->base = (slr_dead_letter_sink){.kind = "file", .name = f->path, .put = file_put,
                                     .sync = file_sync, .resume = file_resume, .close = file_close};
    *out = &f->base;
    return SLR_OK;
}
