/* checkpoint_dir.c - a directory of numbered checkpoints: save the next one,
 * keep the newest few, load the newest valid one.
 *
 * Files are named ckpt-<20-digit sequence>.slr so that name order is age
 * order.  Loading walks from the newest down and skips any that fail their
 * checksum or structure checks, so a crash or a disk fault during the latest
 * write costs one checkpoint interval, never the model.  Nothing here deletes
 * a checkpoint unless a newer one has just been written successfully. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "streamlr/checkpoint.h"

#define PREFIX "ckpt-"
#define SUFFIX ".slr"
#define DIGITS 20

typedef struct entry {
    uint64_t seq;
} entry;

static bool parse_name(const char *name, uint64_t *seq)
{
    size_t n = strlen(name);
    if (n != strlen(PREFIX) + DIGITS + strlen(SUFFIX) || strncmp(name, PREFIX, strlen(PREFIX)) ||
        strcmp(name + n - strlen(SUFFIX), SUFFIX))
        return false;
    uint64_t v = 0;
    for (size_t i = strlen(PREFIX); i < strlen(PREFIX) + DIGITS; i++) {
        if (name[i] < '0' || name[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(name[i] - '0');
    }
    *seq = v;
    return true;
}

static int by_seq_desc(const void *a, const void *b)
{
    uint64_t x = ((const entry *)a)->seq, y = ((const entry *)b)->seq;
    return (x < y) - (x > y);
}

/* Sequence numbers of the checkpoints in dir, newest first. */
static slr_status list_dir(const char *dir, entry **out, size_t *n, slr_error *err)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return slr_error_set(err, errno == ENOENT ? SLR_ERR_NOT_FOUND : SLR_ERR_IO,
                             "cannot open checkpoint directory %s: %s", dir, strerror(errno));
    size_t cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        uint64_t seq;
        if (!parse_name(de->d_name, &seq))
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            entry *e = realloc(*out, cap * sizeof *e);
            if (!e) {
                closedir(d);
                return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
            }
            *out = e;
        }
        (*out)[(*n)++].seq = seq;
    }
    closedir(d);
    if (*n)
        qsort(*out, *n, sizeof **out, by_seq_desc);
    return SLR_OK;
}

static void path_of(char *buf, size_t size, const char *dir, uint64_t seq)
{
    snprintf(buf, size, "%s/" PREFIX "%0*llu" SUFFIX, dir, DIGITS, (unsigned long long)seq);
}

/* A writer killed mid-write (SIGKILL, power loss) leaves its temporary file
 * .ckpt-<seq>.slr.tmp.<pid>.<n> behind; nothing reads it, but it takes space.
 * One job owns a checkpoint directory, so once its own write has succeeded
 * any such file is stale. */
static void remove_stale_temporaries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    char path[PATH_MAX];
    while ((de = readdir(d))) {
        if (strncmp(de->d_name, "." PREFIX, strlen("." PREFIX)) || !strstr(de->d_name, SUFFIX ".tmp."))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        unlink(path);
    }
    closedir(d);
}

slr_status slr_checkpoint_dir_save(const char *dir, const slr_learner *l, slr_job_state *st,
                                   unsigned keep, char *written, slr_error *err)
{
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return slr_error_set(err, SLR_ERR_IO, "cannot create checkpoint directory %s: %s", dir,
                             strerror(errno));
    entry *list;
    size_t n;
    slr_status rc = list_dir(dir, &list, &n, err);
    if (rc != SLR_OK)
        return rc;
    uint64_t seq = st->sequence + 1;
    if (n && list[0].seq >= seq)
        seq = list[0].seq + 1;
    free(list);

    char path[PATH_MAX];
    path_of(path, sizeof path, dir, seq);
    uint64_t prev_seq = st->sequence;
    double prev_created = st->created;
    st->sequence = seq;
    st->created = (double)time(NULL);
    rc = slr_checkpoint_write(path, l, st, err);
    if (rc != SLR_OK) {
        st->sequence = prev_seq;
        st->created = prev_created;
        return rc;
    }
    if (written)
        snprintf(written, PATH_MAX, "%s", path);

    /* Prune only after the new one is durable. */
    if (keep < 1)
        keep = 1;
    if (list_dir(dir, &list, &n, NULL) == SLR_OK) {
        for (size_t i = keep; i < n; i++) {
            path_of(path, sizeof path, dir, list[i].seq);
            unlink(path);
        }
        free(list);
    }
    remove_stale_temporaries(dir);
    return SLR_OK;
}

slr_status slr_checkpoint_dir_load(const char *dir, slr_learner **out, slr_job_state *st,
                                   char *loaded, slr_warn_fn warn, void *warn_ctx,
                                   slr_error *err)
{
    *out = NULL;
    entry *list;
    size_t n;
    slr_status rc = list_dir(dir, &list, &n, err);
    if (rc != SLR_OK)
        return rc;
    if (n == 0) {
        free(list);
        return slr_error_set(err, SLR_ERR_NOT_FOUND, "no checkpoint in %s", dir);
    }
    char path[PATH_MAX];
    for (size_t i = 0; i < n; i++) {
        path_of(path, sizeof path, dir, list[i].seq);
        slr_error e;
        rc = slr_checkpoint_read(path, out, st, &e);
        if (rc == SLR_OK) {
            free(list);
            if (loaded)
                snprintf(loaded, PATH_MAX, "%s", path);
            return SLR_OK;
        }
        if (warn) {
            char msg[SLR_ERROR_MSG_MAX + 128];
            snprintf(msg, sizeof msg, "skipping checkpoint: %s%s", e.msg,
                     i + 1 < n ? "; falling back to the previous one" : "");
            warn(warn_ctx, msg);
        }
        if (rc == SLR_ERR_NOMEM) {
            free(list);
            return slr_error_set(err, rc, "%s", e.msg);
        }
    }
    free(list);
    return slr_error_set(err, SLR_ERR_CORRUPT,
                         "none of the %zu checkpoints in %s is valid; refusing to start from "
                         "scratch over them (move them away to do that)",
                         n, dir);
}

slr_status slr_checkpoint_dir_newest(const char *dir, uint64_t *sequence, slr_error *err)
{
    entry *list;
    size_t n;
    slr_status rc = list_dir(dir, &list, &n, err);
    if (rc != SLR_OK)
        return rc;
    if (n)
        *sequence = list[0].seq;
    free(list);
    return n ? SLR_OK : slr_error_set(err, SLR_ERR_NOT_FOUND, "no checkpoint in %s", dir);
}
