/* follow.c - score with the newest model a training job has written (see
 * slr_follower in checkpoint.h).
 *
 * A refresh costs one readdir() of the checkpoint directory; the model is
 * read only when a higher sequence number appears.  Checkpoints are renamed
 * into place whole, so a file with a checkpoint's name is never half
 * written; one that fails its checks anyway (a disk fault) is skipped, and
 * the model in use stays until a good newer one appears.
 *
 * Over a sync topic (slr_follower_open_topic) the same interface wraps an
 * slr_sync_follower: the group's model, a round at a time. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "streamlr/checkpoint.h"

struct slr_follower {
    char *dir;
    slr_learner *learner;
    slr_job_state state;
    char path[PATH_MAX];
    uint64_t rejected; /* newest sequence that failed to load (not retried) */
    slr_warn_fn warn;
    void *warn_ctx;
    slr_sync_follower *topic; /* instead of dir: learner is topic's */
    char warned[SLR_ERROR_MSG_MAX]; /* the last refresh error reported */
};

slr_status slr_follower_open(slr_follower **out, const char *dir, slr_warn_fn warn,
                             void *warn_ctx, slr_error *err)
{
    *out = NULL;
    slr_follower *f = calloc(1, sizeof *f);
    if (!f || !(f->dir = strdup(dir))) {
        free(f);
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
    }
    slr_job_state_init(&f->state);
    f->warn = warn;
    f->warn_ctx = warn_ctx;
    slr_status rc =
        slr_checkpoint_dir_load(dir, &f->learner, &f->state, f->path, warn, warn_ctx, err);
    if (rc != SLR_OK) {
        slr_follower_close(f);
        return rc;
    }
    slr_learner_sync(f->learner);
    *out = f;
    return SLR_OK;
}

/* The job state a sync topic's model stands for: its round and step. */
static void topic_state(slr_follower *f)
{
    f->learner = slr_sync_follower_learner(f->topic);
    f->state.sequence = slr_sync_follower_round(f->topic);
    f->state.metrics.examples = slr_learner_steps(f->learner);
    snprintf(f->path, sizeof f->path, "%s", slr_sync_follower_name(f->topic));
}

slr_status slr_follower_open_topic(slr_follower **out, const slr_sync_topic_config *cfg,
                                   int timeout_ms, slr_warn_fn warn, void *warn_ctx,
                                   slr_error *err)
{
    *out = NULL;
    slr_follower *f = calloc(1, sizeof *f);
    if (!f)
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
    slr_job_state_init(&f->state);
    f->warn = warn;
    f->warn_ctx = warn_ctx;
    slr_status st = slr_sync_follower_open(&f->topic, cfg, timeout_ms, err);
    if (st != SLR_OK) {
        slr_follower_close(f);
        return st;
    }
    topic_state(f);
    *out = f;
    return SLR_OK;
}

const char *slr_follower_name(const slr_follower *f)
{
    if (f->topic)
        return f->path;
    const char *s = strrchr(f->path, '/');
    return s ? s + 1 : f->path;
}

/* Rounds completed since the last look; an error (the topic unreachable,
 * a malformed record) is said once and the model kept: scoring goes on. */
static bool refresh_topic(slr_follower *f)
{
    bool changed = false;
    slr_error err;
    if (slr_sync_follower_refresh(f->topic, 100, &changed, &err) != SLR_OK) {
        if (f->warn && strcmp(err.msg, f->warned) != 0) {
            char msg[SLR_ERROR_MSG_MAX + PATH_MAX + 64];
            snprintf(msg, sizeof msg, "%s; still scoring with %s", err.msg, f->path);
            f->warn(f->warn_ctx, msg);
        }
        snprintf(f->warned, sizeof f->warned, "%s", err.msg);
    } else {
        f->warned[0] = '\0';
    }
    if (changed)
        topic_state(f);
    return changed;
}

void slr_follower_close(slr_follower *f)
{
    if (!f)
        return;
    if (f->topic)
        slr_sync_follower_close(f->topic);
    else
        slr_learner_destroy(f->learner);
    slr_job_state_free(&f->state);
    free(f->dir);
    free(f);
}

slr_learner *slr_follower_learner(const slr_follower *f) { return f->learner; }
const char *slr_follower_path(const slr_follower *f) { return f->path; }
const slr_job_state *slr_follower_state(const slr_follower *f) { return &f->state; }

bool slr_follower_refresh(slr_follower *f)
{
    if (f->topic)
        return refresh_topic(f);
    uint64_t newest;
    if (slr_checkpoint_dir_newest(f->dir, &newest, NULL) != SLR_OK ||
        newest <= f->state.sequence || newest == f->rejected)
        return false;
    slr_learner *l;
    slr_job_state st;
    slr_job_state_init(&st);
    char path[PATH_MAX];
    slr_error err;
    slr_status rc = slr_checkpoint_dir_load(f->dir, &l, &st, path, NULL, NULL, &err);
    if (rc != SLR_OK || st.sequence <= f->state.sequence) {
        if (f->warn) {
            char msg[2 * PATH_MAX + SLR_ERROR_MSG_MAX];
            snprintf(msg, sizeof msg, "checkpoint %llu in %s did not load (%s); still scoring "
                                      "with %s",
                     (unsigned long long)newest, f->dir, rc != SLR_OK ? err.msg : "damaged",
                     f->path);
            f->warn(f->warn_ctx, msg);
        }
        if (l)
            slr_learner_destroy(l);
        slr_job_state_free(&st);
        f->rejected = newest;
        return false;
    }
    slr_learner_sync(l);
    slr_learner_destroy(f->learner);
    slr_job_state_free(&f->state);
    f->learner = l;
    f->state = st;
    snprintf(f->path, sizeof f->path, "%s", path);
    return true;
}
