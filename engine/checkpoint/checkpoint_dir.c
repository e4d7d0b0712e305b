/* checkpoint_dir.c - a directory of numbered checkpoints: save the next one
 * (here, or from a fork()ed child), keep the newest few, load the newest
 * valid one.
 *
 * Files are named ckpt-<20-digit sequence>.slr so that name order is age
 * order.  Loading walks from the newest down and skips any that fail their
 * checksum or structure checks, so a crash or a disk fault during the latest
 * write costs one checkpoint interval, never the model.  Nothing here deletes
 * a checkpoint unless a newer one has just been written successfully.
 *
 * The background save is Redis's BGSAVE: fork() gives the child a
 * copy-on-write snapshot of the model, the parent goes on learning after
 * paying only for the fork, and the kernel copies a page only when the
 * parent writes to it.  Everything that allocates (directory listing, the
 * temporary file, its buffer and hash state) happens in the parent before
 * the fork; the child only packs, writes, fsyncs, renames, fsyncs the
 * directory and _exits, taking no lock a thread of the parent (librdkafka's)
 * might have held.  It reports a failure (errno and the step) on a pipe; the
 * parent reaps it and prunes old checkpoints only after success. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "checkpoint_impl.h"

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

/* Make the directory and choose the next checkpoint's number and path; st
 * gets that sequence and the time of writing. */
static slr_status prepare(const char *dir, slr_job_state *st, char *path, slr_error *err)
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
    path_of(path, PATH_MAX, dir, seq);
    st->sequence = seq;
    st->created = (double)time(NULL);
    return SLR_OK;
}

/* Can a new file be made in dir?  Creating (and removing) an empty one is
 * the only test that covers permissions, read-only mounts and ACLs alike;
 * the caller names the user's path in the message, not the probe's. */
static bool dir_takes_files(const char *dir, int *error)
{
    char probe[PATH_MAX];
    snprintf(probe, sizeof probe, "%s/.streamlr-probe.%ld", dir, (long)getpid());
    int fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 && errno != EEXIST) { /* EEXIST: a file could be made there */
        *error = errno;
        return false;
    }
    if (fd >= 0) {
        close(fd);
        unlink(probe);
    }
    return true;
}

slr_status slr_checkpoint_dir_check(const char *dir, slr_error *err)
{
    struct stat sb;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return slr_error_set(err, SLR_ERR_IO, "cannot create checkpoint directory %s: %s", dir,
                             strerror(errno));
    if (stat(dir, &sb) != 0)
        return slr_error_set(err, SLR_ERR_IO, "checkpoint directory %s: %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return slr_error_set(err, SLR_ERR_IO, "checkpoint directory %s is not a directory", dir);
    int e = 0;
    if (!dir_takes_files(dir, &e))
        return slr_error_set(err, SLR_ERR_IO, "cannot write checkpoints into %s: %s", dir,
                             strerror(e));
    return SLR_OK;
}

slr_status slr_checkpoint_path_check(const char *path, const char *what, slr_error *err)
{
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        return slr_error_set(err, SLR_ERR_IO, "cannot write %s to %s: it is a directory", what,
                             path);
    char *copy = strdup(path);
    if (!copy)
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
    const char *dir = dirname(copy); /* where the file is renamed into place */
    int e = 0;
    slr_status rc = SLR_OK;
    if (!dir_takes_files(dir, &e))
        rc = slr_error_set(err, SLR_ERR_IO, "cannot write %s to %s: %s%s%s", what, path,
                           strerror(e), e == ENOENT ? "; no directory " : "",
                           e == ENOENT ? dir : "");
    free(copy);
    return rc;
}

/* Remove all but the newest `keep`, and temporary files left by killed
 * writers; only ever called after a successful write (and no other write
 * in flight: the job waits for a child before it saves again). */
static void prune(const char *dir, unsigned keep)
{
    entry *list;
    size_t n;
    if (keep < 1)
        keep = 1;
    if (list_dir(dir, &list, &n, NULL) != SLR_OK)
        return;
    char path[PATH_MAX];
    for (size_t i = keep; i < n; i++) {
        path_of(path, sizeof path, dir, list[i].seq);
        unlink(path);
    }
    free(list);
    remove_stale_temporaries(dir);
}

slr_status slr_checkpoint_dir_save(const char *dir, const slr_learner *l, slr_job_state *st,
                                   unsigned keep, char *written, slr_error *err)
{
    uint64_t prev_seq = st->sequence;
    double prev_created = st->created;
    char path[PATH_MAX];
    slr_status rc = prepare(dir, st, path, err);
    if (rc == SLR_OK)
        rc = slr_checkpoint_write(path, l, st, err);
    if (rc != SLR_OK) {
        st->sequence = prev_seq;
        st->created = prev_created;
        return rc;
    }
    if (written)
        snprintf(written, PATH_MAX, "%s", path);
    prune(dir, keep);
    return SLR_OK;
}

/* ------------------------------------------------------------ in a child */

struct slr_checkpoint_child {
    pid_t pid;
    int report_fd;     /* read end of the child's failure report */
    slr_atomic_file f; /* the parent's copy: paths, for messages and clean-up */
    char *dir;
    unsigned keep;
    uint64_t sequence;
};

/* What a failing child tells its parent. */
typedef struct child_report {
    int errno_value;
    char step[48];
} child_report;

static _Noreturn void child_main(slr_checkpoint_child *c, int report_fd, pid_t parent,
                                 const slr_learner *l, const slr_job_state *st)
{
#ifdef __linux__
    /* if the trainer dies, so does its writer: a crash leaves the previous
     * checkpoint, as when the trainer writes it itself */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(1);
#else
    (void)parent;
#endif
    slr_checkpoint_write_to(&c->f, l, st);
    if (slr_atomic_file_commit_raw(&c->f))
        _exit(0);
    child_report rep = {.errno_value = c->f.failed_errno};
    const char *step = c->f.failed_step ? c->f.failed_step : "writing";
    for (size_t i = 0; step[i] && i + 1 < sizeof rep.step; i++)
        rep.step[i] = step[i];
    ssize_t w = write(report_fd, &rep, sizeof rep);
    (void)w;
    _exit(1);
}

static void child_free(slr_checkpoint_child *c, bool keep_file)
{
    if (keep_file) {
        free(c->f.tmp_path); /* renamed into place: nothing left to remove */
        c->f.tmp_path = NULL;
    }
    slr_atomic_file_abort(&c->f); /* unlinks a temporary file left by a killed child */
    if (c->report_fd >= 0)
        close(c->report_fd);
    free(c->dir);
    free(c);
}

slr_status slr_checkpoint_dir_fork(const char *dir, const slr_learner *l, slr_job_state *st,
                                   unsigned keep, slr_checkpoint_child **out, slr_error *err)
{
    *out = NULL;
    uint64_t prev_seq = st->sequence;
    double prev_created = st->created;
    char path[PATH_MAX];
    slr_checkpoint_child *c = calloc(1, sizeof *c);
    if (!c)
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
    c->report_fd = -1;
    c->keep = keep;
    c->dir = strdup(dir);
    slr_status rc = c->dir ? prepare(dir, st, path, err)
                           : slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
    if (rc == SLR_OK)
        rc = slr_atomic_file_open(&c->f, path, err);
    int fds[2] = {-1, -1};
    if (rc == SLR_OK && pipe2(fds, O_CLOEXEC) != 0)
        rc = slr_error_set(err, SLR_ERR_IO, "cannot create a pipe for the checkpoint writer: %s",
                           strerror(errno));
    pid_t parent = getpid(), pid = -1;
    if (rc == SLR_OK && (pid = fork()) < 0)
        rc = slr_error_set(err, SLR_ERR_IO, "cannot fork the checkpoint writer: %s",
                           strerror(errno));
    if (pid == 0)
        child_main(c, fds[1], parent, l, st);
    if (fds[1] >= 0)
        close(fds[1]);
    if (rc != SLR_OK) {
        if (fds[0] >= 0)
            close(fds[0]);
        st->sequence = prev_seq;
        st->created = prev_created;
        child_free(c, false);
        return rc;
    }
    /* the child has its own copies of the file, its buffer and hash state */
    close(c->f.fd);
    c->f.fd = -1;
    c->pid = pid;
    c->report_fd = fds[0];
    c->sequence = st->sequence;
    *out = c;
    return SLR_OK;
}

uint64_t slr_checkpoint_child_sequence(const slr_checkpoint_child *c) { return c->sequence; }

slr_status slr_checkpoint_child_wait(slr_checkpoint_child *c, bool block, bool *done,
                                     char *written, slr_error *err)
{
    int status = 0;
    pid_t r;
    do
        r = waitpid(c->pid, &status, block ? 0 : WNOHANG);
    while (r < 0 && errno == EINTR);
    *done = r != 0;
    if (r == 0)
        return SLR_OK;
    child_report rep = {0};
    ssize_t got = read(c->report_fd, &rep, sizeof rep);
    bool exited_ok = r == c->pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    /* reaped by someone else (SIGCHLD ignored): trust the file and the pipe */
    bool ok = r == c->pid ? exited_ok : got <= 0 && access(c->f.final_path, F_OK) == 0;
    slr_status rc = SLR_OK;
    if (ok) {
        if (written)
            snprintf(written, PATH_MAX, "%s", c->f.final_path);
        prune(c->dir, c->keep);
    } else if (got == (ssize_t)sizeof rep) {
        rep.step[sizeof rep.step - 1] = '\0';
        rc = slr_atomic_file_error(&c->f, rep.errno_value, rep.step, err);
    } else if (r == c->pid && WIFSIGNALED(status)) {
        rc = slr_error_set(err, SLR_ERR_IO, "the process writing %s was killed by signal %d",
                           c->f.final_path, WTERMSIG(status));
    } else {
        rc = slr_error_set(err, SLR_ERR_IO, "the process writing %s failed", c->f.final_path);
    }
    child_free(c, ok);
    return rc;
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
