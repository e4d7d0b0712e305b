/* file_source.c - replaying files through a sliding buffer (see source.h).
 *
 * One buffer, refilled with read(2) in chunks of several MiB; records are
 * decoded in place from it, and only a partial record at the end of the
 * window is moved to the front before the next read.  A record longer than
 * the buffer doubles it; the decoder's max-record limit bounds that. */
#include <errno.h>
#include <poll.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "streamlr/source.h"

#define CHUNK (4u << 20)

struct slr_file_source {
    char **paths;
    uint32_t n_paths;
    uint32_t index; /* current file */
    int fd;
    bool eof;         /* the current file has no more bytes to read */
    bool count_lines;
    char *buf;
    size_t cap;
    size_t start, end; /* window = buf[start, end) */
    uint64_t offset;   /* file offset of buf[start] */
    uint64_t line;     /* line number at buf[start] */
};

static slr_status open_current(slr_file_source *src, slr_error *err)
{
    const char *p = src->paths[src->index];
    src->eof = false;
    src->start = src->end = 0;
    src->offset = 0;
    src->line = 1;
    if (!strcmp(p, "-")) {
        src->fd = STDIN_FILENO;
        return SLR_OK;
    }
    src->fd = open(p, O_RDONLY | O_CLOEXEC);
    if (src->fd < 0)
        return slr_error_set(err, SLR_ERR_IO, "cannot open %s: %s", p, strerror(errno));
    posix_fadvise(src->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    return SLR_OK;
}

static void close_current(slr_file_source *src)
{
    if (src->fd > STDIN_FILENO)
        close(src->fd);
    src->fd = -1;
}

slr_status slr_file_source_open(slr_file_source **out, const char *const *paths, uint32_t n,
                                bool count_lines, slr_error *err)
{
    *out = NULL;
    if (n == 0)
        return slr_error_set(err, SLR_ERR_ARG, "no input files");
    slr_file_source *src = calloc(1, sizeof *src);
    if (!src)
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
    src->fd = -1;
    src->count_lines = count_lines;
    src->paths = calloc(n, sizeof *src->paths);
    src->buf = malloc(CHUNK);
    src->cap = CHUNK;
    if (!src->paths || !src->buf) {
        slr_file_source_close(src);
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
    }
    for (uint32_t i = 0; i < n; i++) {
        if (!(src->paths[i] = strdup(paths[i]))) {
            slr_file_source_close(src);
            return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
        }
        src->n_paths = i + 1;
    }
    slr_status st = open_current(src, err);
    if (st != SLR_OK) {
        slr_file_source_close(src);
        return st;
    }
    *out = src;
    return SLR_OK;
}

void slr_file_source_close(slr_file_source *src)
{
    if (!src)
        return;
    close_current(src);
    for (uint32_t i = 0; i < src->n_paths; i++)
        free(src->paths[i]);
    free(src->paths);
    free(src->buf);
    free(src);
}

void slr_file_source_count_lines(slr_file_source *src, bool count_lines)
{
    src->count_lines = count_lines;
}

void slr_file_source_window(const slr_file_source *src, const char **buf, size_t *len,
                            bool *at_end)
{
    *buf = src->buf + src->start;
    *len = src->end - src->start;
    *at_end = src->eof;
}

bool slr_file_source_wait(const slr_file_source *src, int timeout_ms)
{
    if (src->eof || src->fd < 0)
        return true;
    struct pollfd p = {.fd = src->fd, .events = POLLIN};
    int n = poll(&p, 1, timeout_ms);
    /* readable or hung up: true; a signal: false, so the caller sees its flag;
     * another error: true, and read() will report it */
    return n > 0 || (n < 0 && errno != EINTR);
}

slr_status slr_file_source_fill(slr_file_source *src, slr_error *err)
{
    if (src->eof)
        return SLR_OK;
    if (src->start > 0) { /* keep the partial record, drop what was consumed */
        memmove(src->buf, src->buf + src->start, src->end - src->start);
        src->end -= src->start;
        src->start = 0;
    }
    if (src->end == src->cap) {
        size_t cap = src->cap * 2;
        char *b = realloc(src->buf, cap);
        if (!b)
            return slr_error_set(err, SLR_ERR_NOMEM, "out of memory growing the read buffer to %zu",
                                 cap);
        src->buf = b;
        src->cap = cap;
    }
    for (;;) {
        ssize_t k = read(src->fd, src->buf + src->end, src->cap - src->end);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return slr_error_set(err, SLR_ERR_IO, "reading %s failed: %s", src->paths[src->index],
                                 strerror(errno));
        if (k == 0)
            src->eof = true;
        src->end += (size_t)k;
        return SLR_OK;
    }
}

void slr_file_source_consume(slr_file_source *src, size_t n)
{
    if (src->count_lines) {
        const char *p = src->buf + src->start, *stop = p + n;
        while ((p = memchr(p, '\n', (size_t)(stop - p)))) {
            src->line++;
            p++;
        }
    }
    src->start += n;
    src->offset += n;
}

bool slr_file_source_next_file(slr_file_source *src, slr_error *err, slr_status *st)
{
    *st = SLR_OK;
    if (src->index >= src->n_paths)
        return false;
    close_current(src);
    src->index++;
    if (src->index >= src->n_paths)
        return false;
    *st = open_current(src, err);
    return *st == SLR_OK;
}

bool slr_file_source_done(const slr_file_source *src) { return src->index >= src->n_paths; }

void slr_file_source_position(const slr_file_source *src, slr_file_position *pos)
{
    pos->file_index = src->index;
    pos->offset = src->offset;
    pos->line = src->line;
}

const char *slr_file_source_path(const slr_file_source *src)
{
    return src->index < src->n_paths ? src->paths[src->index] : "(end of input)";
}

slr_status slr_file_source_seek(slr_file_source *src, const slr_file_position *pos, slr_error *err)
{
    if (pos->file_index > src->n_paths)
        return slr_error_set(err, SLR_ERR_MISMATCH,
                             "checkpoint position is in file #%u but only %u files were given",
                             pos->file_index + 1, src->n_paths);
    close_current(src);
    src->index = pos->file_index;
    if (src->index == src->n_paths)
        return SLR_OK; /* the checkpoint was taken at the very end */
    slr_status st = open_current(src, err);
    if (st != SLR_OK)
        return st;
    const char *p = src->paths[src->index];
    if (src->fd != STDIN_FILENO) {
        struct stat sb;
        if (fstat(src->fd, &sb) == 0 && S_ISREG(sb.st_mode) && (uint64_t)sb.st_size < pos->offset)
            return slr_error_set(err, SLR_ERR_MISMATCH,
                                 "%s has %lld bytes but the checkpoint resumes at byte %llu; "
                                 "was the file replaced or truncated?",
                                 p, (long long)sb.st_size, (unsigned long long)pos->offset);
        if (lseek(src->fd, (off_t)pos->offset, SEEK_SET) == (off_t)pos->offset) {
            src->offset = pos->offset;
            src->line = pos->line;
            return SLR_OK;
        }
    }
    /* a pipe: read forward to the offset */
    while (src->offset < pos->offset) {
        if (src->start == src->end) {
            if (src->eof)
                return slr_error_set(err, SLR_ERR_MISMATCH,
                                     "%s ended before the checkpoint's offset %llu", p,
                                     (unsigned long long)pos->offset);
            if ((st = slr_file_source_fill(src, err)) != SLR_OK)
                return st;
            continue;
        }
        size_t avail = src->end - src->start;
        uint64_t want = pos->offset - src->offset;
        src->start += avail < want ? avail : (size_t)want;
        src->offset += avail < want ? avail : want;
    }
    src->line = pos->line;
    return SLR_OK;
}
