/* follow.c - score with the newest model a training job has written (see
 * slr_follower in checkpoint.h).
 *
 * A look costs one readdir() of the checkpoint directory; the model is
 * read only when a higher sequence number appears.  Checkpoints are renamed
 * into place whole, so a file with a checkpoint's name is never half
 * written; one that fails its checks anyway (a disk fault) is skipped, and
 * the model in use stays until a good newer one appears.
 *
 * Reading a -b 24 checkpoint takes a tenth of a second or more (zeroing and
 * filling the weight table), far too long to hold up scoring.  So with a
 * loader thread (slr_follower_start) the directory is watched and the new
 * model read and synced on that thread; the scorer's refresh only swaps
 * pointers when one is ready, and hands the old model back to the thread
 * to free.  The thread reads nothing newer while a model waits to be
 * swapped in, so at most two models are in memory, as when loading in
 * place.  Without the thread, refresh loads in place (the scorer waits).
 *
 * Over a sync topic (slr_follower_open_topic) the same interface wraps an
 * slr_sync_follower: the group's model, a round at a time.  With the
 * thread, reading the topic, merging rounds into theta and copying theta
 * into a scoring model (with its penalties paid) all happen on it, and the
 * scorer swaps pointers as for a directory; the thread merges nothing
 * while a model waits to be swapped in, so at most three models are in
 * memory: theta, the scorer's, and the one ready (or being copied).
 * Without the thread, refresh merges and copies in place. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "streamlr/checkpoint.h"
#include "util/clock.h"

#define RETIRED_MAX 4 /* old models waiting for the thread to free them */
/* The lowest priority.  A thread's nice orders it only among the threads
 * of its own scheduling group (the session's autogroup, a container's
 * cgroup), which the scorer is in too, and a loader busy on one core makes
 * the scorer wait longer for the other on a busy machine: at nice 10 some
 * loads held scoring up by 57-78 ms, at 19 none over 50 ms (BENCHMARKS.md,
 * "Where the long gaps come from"). */
#define LOADER_NICE 19
/* How long one look at a sync topic reads and merges before a model is
 * made of what it has: on the thread, several rounds that arrive together
 * are merged into one copy; in place, the scorer waits at most about this. */
#define TOPIC_THREAD_BUDGET_MS 500
#define TOPIC_INPLACE_BUDGET_MS 100
#define WARN_AGAIN_SECONDS 30.0 /* a refresh error that lasts is said again this often */

/* A loaded model: the learner, the job state its checkpoint holds, its path. */
typedef struct model {
    slr_learner *learner;
    slr_job_state state;
    char path[PATH_MAX];
} model;

struct slr_follower {
    char *dir;
    model cur;         /* the scorer's */
    uint64_t rejected; /* newest sequence that failed to load (not retried) */
    slr_warn_fn warn;
    void *warn_ctx;
    slr_sync_follower *topic; /* instead of dir (with the thread, the thread's alone) */
    char warned[SLR_ERROR_MSG_MAX]; /* the last refresh error (topic); "": none */
    double warned_at;               /* when one was last said */

    /* the loader thread (slr_follower_start) */
    bool started;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    double interval;
    bool stop;
    model ready;            /* loaded, not yet swapped in (learner NULL: none) */
    atomic_bool has_ready;  /* ready.learner != NULL, read without the lock */
    uint64_t loaded;        /* newest sequence the thread has loaded (or the scorer's) */
    slr_learner *retired[RETIRED_MAX];
    slr_job_state retired_state[RETIRED_MAX];
    unsigned n_retired;
};

static void model_free(model *m)
{
    slr_learner_destroy(m->learner);
    slr_job_state_free(&m->state);
    m->learner = NULL;
    slr_job_state_init(&m->state);
}

slr_status slr_follower_open(slr_follower **out, const char *dir, slr_warn_fn warn,
                             void *warn_ctx, slr_error *err)
{
    *out = NULL;
    slr_follower *f = calloc(1, sizeof *f);
    if (!f || !(f->dir = strdup(dir))) {
        free(f);
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
    }
    slr_job_state_init(&f->cur.state);
    slr_job_state_init(&f->ready.state);
    f->warn = warn;
    f->warn_ctx = warn_ctx;
    slr_status rc = slr_checkpoint_dir_load(dir, &f->cur.learner, &f->cur.state, f->cur.path,
                                            warn, warn_ctx, err);
    if (rc != SLR_OK) {
        slr_follower_close(f);
        return rc;
    }
    slr_learner_sync(f->cur.learner);
    f->loaded = f->cur.state.sequence;
    *out = f;
    return SLR_OK;
}

/* The sync topic follower's scoring model, taken over into m, with the
 * job state it stands for: its round and step. */
static void topic_model(slr_follower *f, model *m)
{
    slr_job_state_init(&m->state);
    m->learner = slr_sync_follower_take_learner(f->topic);
    m->state.sequence = slr_sync_follower_round(f->topic);
    m->state.metrics.examples = slr_learner_steps(m->learner);
    snprintf(m->path, sizeof m->path, "%s", slr_sync_follower_name(f->topic));
}

slr_status slr_follower_open_topic(slr_follower **out, const slr_sync_topic_config *cfg,
                                   int timeout_ms, slr_warn_fn warn, void *warn_ctx,
                                   slr_error *err)
{
    *out = NULL;
    slr_follower *f = calloc(1, sizeof *f);
    if (!f)
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
    slr_job_state_init(&f->cur.state);
    slr_job_state_init(&f->ready.state);
    f->warn = warn;
    f->warn_ctx = warn_ctx;
    slr_status st = slr_sync_follower_open(&f->topic, cfg, timeout_ms, err);
    if (st != SLR_OK) {
        slr_follower_close(f);
        return st;
    }
    topic_model(f, &f->cur);
    f->loaded = f->cur.state.sequence;
    *out = f;
    return SLR_OK;
}

const char *slr_follower_name(const slr_follower *f)
{
    if (f->topic)
        return f->cur.path;
    const char *s = strrchr(f->cur.path, '/');
    return s ? s + 1 : f->cur.path;
}

/* The rounds completed since the last look, merged and made a scoring
 * model, into m: true if m holds one.  An error (the topic unreachable, a
 * malformed record) is said when it starts, again every
 * WARN_AGAIN_SECONDS while it lasts, and its end too; the model in use is
 * kept: scoring goes on. */
static bool load_topic(slr_follower *f, int budget_ms, const char *in_use, model *m)
{
    bool changed = false;
    slr_error err;
    char msg[2 * SLR_ERROR_MSG_MAX + PATH_MAX + 64];
    double now = slr_monotonic_seconds();
    if (slr_sync_follower_refresh(f->topic, budget_ms, &changed, &err) != SLR_OK) {
        const char *using = changed ? slr_sync_follower_name(f->topic) : in_use;
        if (f->warn && (!f->warned[0] || now - f->warned_at >= WARN_AGAIN_SECONDS)) {
            snprintf(msg, sizeof msg, "%s; still scoring with %s", err.msg, using);
            f->warn(f->warn_ctx, msg);
            f->warned_at = now;
        }
        snprintf(f->warned, sizeof f->warned, "%s", err.msg);
    } else if (f->warned[0]) {
        if (f->warn) {
            snprintf(msg, sizeof msg, "sync topic read again (the last error was: %s)", f->warned);
            f->warn(f->warn_ctx, msg);
        }
        f->warned[0] = '\0';
    }
    if (!changed)
        return false;
    topic_model(f, m);
    return true;
}

void slr_follower_close(slr_follower *f)
{
    if (!f)
        return;
    if (f->started) {
        pthread_mutex_lock(&f->mu);
        f->stop = true;
        pthread_cond_signal(&f->wake);
        pthread_mutex_unlock(&f->mu);
        pthread_join(f->thread, NULL);
        pthread_cond_destroy(&f->wake);
        pthread_mutex_destroy(&f->mu);
    }
    slr_sync_follower_close(f->topic); /* after the thread, its user */
    for (unsigned i = 0; i < f->n_retired; i++) {
        slr_learner_destroy(f->retired[i]);
        slr_job_state_free(&f->retired_state[i]);
    }
    model_free(&f->ready);
    model_free(&f->cur);
    free(f->dir);
    free(f);
}

slr_learner *slr_follower_learner(const slr_follower *f) { return f->cur.learner; }
const char *slr_follower_path(const slr_follower *f) { return f->cur.path; }
const slr_job_state *slr_follower_state(const slr_follower *f) { return &f->cur.state; }

/* Load the directory's newest checkpoint into m if it is newer than
 * `newer_than` (and not the one that failed before): true if m holds it. */
static bool load_newer(slr_follower *f, uint64_t newer_than, const char *in_use, model *m)
{
    uint64_t newest;
    if (slr_checkpoint_dir_newest(f->dir, &newest, NULL) != SLR_OK || newest <= newer_than ||
        newest == f->rejected)
        return false;
    slr_error err;
    slr_job_state_init(&m->state);
    m->learner = NULL;
    slr_status rc = slr_checkpoint_dir_load(f->dir, &m->learner, &m->state, m->path, NULL, NULL,
                                            &err);
    if (rc != SLR_OK || m->state.sequence <= newer_than) {
        if (f->warn) {
            char msg[2 * PATH_MAX + SLR_ERROR_MSG_MAX];
            snprintf(msg, sizeof msg, "checkpoint %llu in %s did not load (%s); still scoring "
                                      "with %s",
                     (unsigned long long)newest, f->dir, rc != SLR_OK ? err.msg : "damaged",
                     in_use);
            f->warn(f->warn_ctx, msg);
        }
        model_free(m);
        f->rejected = newest;
        return false;
    }
    slr_learner_sync(m->learner);
    return true;
}

static void *loader(void *arg)
{
    slr_follower *f = arg;
    /* reading a model is background work: on a busy machine the scorer,
     * not the loader, is to have the core (Linux: a thread's own nice) */
    setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), LOADER_NICE);
    pthread_mutex_lock(&f->mu);
    while (!f->stop) {
        /* free what the scorer has let go of */
        while (f->n_retired) {
            unsigned i = --f->n_retired;
            slr_learner *l = f->retired[i];
            slr_job_state st = f->retired_state[i];
            pthread_mutex_unlock(&f->mu);
            slr_learner_destroy(l);
            slr_job_state_free(&st);
            pthread_mutex_lock(&f->mu);
        }
        if (f->stop)
            break;
        if (f->ready.learner) { /* no third model in memory: wait for the swap */
            pthread_cond_wait(&f->wake, &f->mu);
            continue;
        }
        uint64_t newer_than = f->loaded;
        char in_use[PATH_MAX];
        snprintf(in_use, sizeof in_use, "%s", f->cur.path);
        pthread_mutex_unlock(&f->mu);
        model m;
        bool got = f->topic ? load_topic(f, TOPIC_THREAD_BUDGET_MS, in_use, &m)
                            : load_newer(f, newer_than, in_use, &m);
        pthread_mutex_lock(&f->mu);
        if (got) {
            f->ready = m;
            f->loaded = m.state.sequence;
            atomic_store_explicit(&f->has_ready, true, memory_order_release);
            continue;
        }
        if (f->stop || f->n_retired)
            continue;
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        double s = (double)until.tv_sec + until.tv_nsec * 1e-9 + f->interval;
        until.tv_sec = (time_t)s;
        until.tv_nsec = (long)((s - (double)until.tv_sec) * 1e9);
        pthread_cond_timedwait(&f->wake, &f->mu, &until);
    }
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

slr_status slr_follower_start(slr_follower *f, double interval_seconds, slr_error *err)
{
    if (f->started)
        return SLR_OK;
    f->interval = interval_seconds > 0 ? interval_seconds : 1;
    if (pthread_mutex_init(&f->mu, NULL) != 0)
        return slr_error_set(err, SLR_ERR_NOMEM, "cannot start the model loader");
    pthread_condattr_t ca; /* timed waits on the monotonic clock: a clock step is no pause */
    bool cond_ok = pthread_condattr_init(&ca) == 0;
    if (cond_ok) {
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        cond_ok = pthread_cond_init(&f->wake, &ca) == 0;
        pthread_condattr_destroy(&ca);
    }
    if (!cond_ok) {
        pthread_mutex_destroy(&f->mu);
        return slr_error_set(err, SLR_ERR_NOMEM, "cannot start the model loader");
    }
    /* signals are for the scoring thread, which checks its stop flag */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&f->thread, NULL, loader, f);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        pthread_cond_destroy(&f->wake);
        pthread_mutex_destroy(&f->mu);
        return slr_error_set(err, SLR_ERR_NOMEM, "cannot start the model loader thread: %s",
                             strerror(rc));
    }
    f->started = true;
    return SLR_OK;
}

/* The loader's model becomes the scorer's; the old one goes to the thread. */
static bool swap_ready(slr_follower *f)
{
    if (!atomic_load_explicit(&f->has_ready, memory_order_acquire))
        return false;
    pthread_mutex_lock(&f->mu);
    model old = f->cur;
    f->cur = f->ready;
    f->ready.learner = NULL;
    slr_job_state_init(&f->ready.state);
    atomic_store_explicit(&f->has_ready, false, memory_order_relaxed);
    bool keep = f->n_retired < RETIRED_MAX;
    if (keep) {
        f->retired[f->n_retired] = old.learner;
        f->retired_state[f->n_retired++] = old.state;
    }
    pthread_cond_signal(&f->wake); /* free it; look for the next one */
    pthread_mutex_unlock(&f->mu);
    if (!keep) /* the thread is behind on freeing: do it here rather than pile up models */
        model_free(&old);
    return true;
}

bool slr_follower_refresh(slr_follower *f)
{
    if (f->started)
        return swap_ready(f);
    model m;
    if (f->topic ? !load_topic(f, TOPIC_INPLACE_BUDGET_MS, f->cur.path, &m)
                 : !load_newer(f, f->cur.state.sequence, f->cur.path, &m))
        return false;
    model_free(&f->cur);
    f->cur = m;
    f->loaded = m.state.sequence;
    return true;
}
