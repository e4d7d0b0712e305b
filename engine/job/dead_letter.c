/* dead_letter.c - the dead-letter JSON line and the file sink (see dead_letter.h).
 *
 * One JSON object per line (written by jansson), keys in a fixed order, the
 * record's bytes in base64 so that any byte survives (msgpack, NULs, invalid
 * UTF-8) and the exact record can be replayed; text fields follow the UTF-8
 * rule of util/json.h.  docs/DEAD_LETTERS.md has the schema.  The
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
#include "util/json.h"

#define FLUSH_AT (64u << 10)

/* ------------------------------------------------------------ JSON line */

/* The record in base64, so that any byte survives (RFC 4648, padded). */
static char *base64(const unsigned char *s, size_t n, size_t *out_len)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
    if (!out)
        return NULL;
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
    *out_len = (size_t)(o - out);
    return out;
}

static json_t *text(const char *s)
{
    return slr_json_text(s ? s : "", s ? strlen(s) : 0);
}

static int append_to_buf(const char *data, size_t n, void *ctx)
{
    return slr_buf_append(ctx, data, n, NULL) == SLR_OK ? 0 : -1;
}

slr_status slr_dead_letter_to_json(slr_buf *out, const slr_dead_letter *dl, slr_error *err)
{
    size_t before = out->len, b64_len = 0;
    char *b64 = base64((const unsigned char *)dl->data, dl->len, &b64_len);
    json_t *o = json_object();
    int bad = !b64 || !o;
    if (!bad) {
        /* keys in the order docs/DEAD_LETTERS.md lists them */
        bad |= json_object_set_new(o, "reason", text(slr_bad_reason_name(dl->reason)));
        bad |= json_object_set_new(o, "error", text(dl->error));
        bad |= json_object_set_new(o, "source", text(dl->source));
        bad |= json_object_set_new(o, "offset", json_integer((json_int_t)dl->offset));
        if (dl->line)
            bad |= json_object_set_new(o, "line", json_integer((json_int_t)dl->line));
        if (dl->is_message)
            bad |= json_object_set_new(o, "message", json_true());
        bad |= json_object_set_new(o, "format", text(dl->format));
        bad |= json_object_set_new(o, "length", json_integer((json_int_t)dl->len));
        if (dl->truncated)
            bad |= json_object_set_new(o, "truncated", json_true());
        bad |= json_object_set_new(o, "data", json_stringn_nocheck(b64, b64_len));
    }
    free(b64);
    if (!bad)
        bad = json_dump_callback(o, append_to_buf, out, SLR_JSON_FLAGS) != 0 ||
              slr_buf_append(out, "\n", 1, NULL) != SLR_OK;
    json_decref(o);
    if (bad) {
        out->len = before;
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory writing a dead letter");
    }
    return SLR_OK;
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
