/* atomic_file.c - temp file + fsync + rename + fsync(dir); see atomic_file.h. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "atomic_file.h"

#define ATOMIC_BUF_SIZE (1u << 20)

static char *dir_of(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return NULL;
    char *d = strdup(dirname(copy));
    free(copy);
    return d;
}

slr_status slr_atomic_file_open(slr_atomic_file *f, const char *path, slr_error *err)
{
    memset(f, 0, sizeof *f);
    f->fd = -1;
    f->final_path = strdup(path);
    f->dir_path = dir_of(path);
    size_t n = strlen(path) + 64;
    f->tmp_path = malloc(n);
    f->buf = malloc(ATOMIC_BUF_SIZE);
    f->hash = XXH3_createState();
    if (!f->final_path || !f->dir_path || !f->tmp_path || !f->buf || !f->hash) {
        slr_atomic_file_abort(f);
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
    }
    f->cap = ATOMIC_BUF_SIZE;
    XXH3_64bits_reset(f->hash);
    /* The temporary name is hidden (leading dot in the same directory) and
     * unique per process and attempt; O_EXCL makes a collision an error
     * rather than a write through someone else's file or symlink. */
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    for (unsigned attempt = 0; attempt < 100; attempt++) {
        snprintf(f->tmp_path, n, "%s/.%s.tmp.%ld.%u", f->dir_path, base, (long)getpid(),
                 (unsigned)(time(NULL) + attempt));
        f->fd = open(f->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (f->fd >= 0 || errno != EEXIST)
            break;
    }
    if (f->fd < 0) {
        int e = errno;
        slr_error_set(err, SLR_ERR_IO, "cannot create %s: %s", f->tmp_path, strerror(e));
        free(f->tmp_path);
        f->tmp_path = NULL; /* nothing of ours to unlink */
        slr_atomic_file_abort(f);
        return SLR_ERR_IO;
    }
    return SLR_OK;
}

static void flush_buffer(slr_atomic_file *f)
{
    size_t off = 0;
    while (off < f->len && !f->failed_errno) {
        ssize_t w = write(f->fd, f->buf + off, f->len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            f->failed_errno = errno;
            f->failed_step = "writing";
        } else {
            off += (size_t)w;
        }
    }
    f->len = 0;
}

void slr_atomic_file_write(slr_atomic_file *f, const void *data, size_t len)
{
    if (f->failed_errno)
        return;
    XXH3_64bits_update(f->hash, data, len);
    const char *p = data;
    while (len) {
        if (f->len == f->cap)
            flush_buffer(f);
        size_t room = f->cap - f->len, k = len < room ? len : room;
        memcpy(f->buf + f->len, p, k);
        f->len += k;
        p += k;
        len -= k;
    }
}

uint64_t slr_atomic_file_digest(slr_atomic_file *f) { return XXH3_64bits_digest(f->hash); }

static bool failed(slr_atomic_file *f, const char *step)
{
    f->failed_errno = errno;
    f->failed_step = step;
    return false;
}

bool slr_atomic_file_commit_raw(slr_atomic_file *f)
{
    flush_buffer(f);
    bool ok = !f->failed_errno && (fsync(f->fd) == 0 || failed(f, "fsync"));
    if (close(f->fd) != 0 && ok)
        ok = failed(f, "closing");
    f->fd = -1;
    if (ok && rename(f->tmp_path, f->final_path) != 0)
        ok = failed(f, "renaming");
    if (!ok) {
        unlink(f->tmp_path);
        return false;
    }
    /* the rename is durable once the directory is (some filesystems cannot
     * sync a directory: EINVAL is not an error) */
    int dfd = open(f->dir_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return failed(f, "opening the directory");
    if (fsync(dfd) != 0 && errno != EINVAL) {
        failed(f, "fsync of the directory");
        close(dfd);
        return false;
    }
    close(dfd);
    return true;
}

slr_status slr_atomic_file_error(const slr_atomic_file *f, int errno_value, const char *step,
                                 slr_error *err)
{
    if (!strcmp(step, "renaming"))
        return slr_error_set(err, SLR_ERR_IO, "renaming %s to %s failed: %s", f->tmp_path,
                             f->final_path, strerror(errno_value));
    if (!strncmp(step, "opening the dir", 15) || !strncmp(step, "fsync of the dir", 16))
        return slr_error_set(err, SLR_ERR_IO, "%s %s failed: %s", step, f->dir_path,
                             strerror(errno_value));
    return slr_error_set(err, SLR_ERR_IO, "%s %s failed: %s (the previous file is untouched)", step,
                         f->final_path, strerror(errno_value));
}

slr_status slr_atomic_file_commit(slr_atomic_file *f, slr_error *err)
{
    slr_status st = SLR_OK;
    if (!slr_atomic_file_commit_raw(f))
        st = slr_atomic_file_error(f, f->failed_errno, f->failed_step, err);
    else {
        free(f->tmp_path); /* renamed: nothing to unlink */
        f->tmp_path = NULL;
    }
    slr_atomic_file_abort(f); /* frees the rest */
    return st;
}

void slr_atomic_file_abort(slr_atomic_file *f)
{
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    if (f->tmp_path)
        unlink(f->tmp_path);
    free(f->tmp_path);
    free(f->final_path);
    free(f->dir_path);
    free(f->buf);
    if (f->hash)
        XXH3_freeState(f->hash);
    memset(f, 0, sizeof *f);
    f->fd = -1;
}
