/* train_sync.c - one model shared by a consumer group, through a sync topic
 * (issue 13; the protocol is docs/SYNC_PROTOCOL.md, its parts sync.h and
 * sync_topic.h).
 *
 * Rounds are defined by the data: round r of source partition p is offsets
 * [r*S, (r+1)*S) (its slice).  The job's learner is theta_r, the group's
 * model after rounds 0..r-1, exactly as every member holds it.  Each held
 * partition has a member (slr_sync_member_create_on) whose learner starts
 * the round as a copy of theta_r and learns the partition's slice, and
 * nothing past it.  The loop reads top to bottom like train_kafka.c:
 *
 *   consume a batch -> follow the assignment (a member per held partition)
 *   -> apply: each message of a slice learned by its partition's member
 *   -> publish: a complete slice's delta to the sync topic
 *   -> wait for the round: once the reader has every partition's delta of
 *      round r, merge them (theta_{r+1}), each range once (the ledger),
 *      every member follows, every partition restarts at (r+1)*S
 *   -> checkpoint if due (only here, between rounds) -> report.
 *
 * So the model depends on the data alone, not on which process learned
 * which partition, nor on crashes and rebalances: a partition taken away
 * mid-round drops its partial slice (the new owner learns it again from
 * theta_r), a slice learned twice is dropped by every reader as a repeat.
 * A checkpoint holds theta_r, the sync topic position after round r-1 and
 * the ledger; the positions table holds r*S per partition, committed to
 * the group once the checkpoint is durable (lag tools see the group's
 * progress).  A process without a checkpoint starts from the newest
 * snapshot on the sync topic (else replays it from its start); the holder
 * of partition 0 writes one every --sync-snapshot-every rounds, and theta_0
 * when the group starts, so that scorers and new members never need the
 * topic's whole history.
 *
 * Decoding runs on this thread (--threads 2 is refused): the examples of a
 * message must be learned by the member of the message's partition. */
#include <librdkafka/rdkafka.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "job.h"
#include "source/kafka_source.h"
#include "streamlr/kafka.h"
#include "streamlr/sync.h"
#include "streamlr/sync_topic.h"

#define BATCH_MAX 100000
#define POLL_MS 100        /* a consume call's wait while slices are being learned */
#define ROUND_WAIT_MS 100  /* a wait for the round's deltas, between two consumer polls */
#define FLUSH_STEP_MS 1000 /* a wait for the sync topic's acks, between stop checks */
#define FLUSH_MS 60000     /* with transactions: a commit not done by then stops the job */
#define PAUSE_LOG_SECONDS 30.0 /* an outage is said again this often */
#define CATCH_UP_MS 60000  /* no progress reading the sync topic for that long: an error */
#define COMMIT_WAIT_SECONDS 5.0
#define COMMIT_RETRY_SECONDS 15.0 /* a refused final commit is made again this long */
/* With transactions, a round's deltas wait for its last slice in one open
 * transaction -- at most this long: readers cannot read past an open
 * transaction, and the coordinator aborts one older than
 * transaction.timeout.ms (60 s by default) */
#define TXN_OPEN_SECONDS 5.0

/* One held source partition. */
typedef struct slot {
    slr_sync_member *m; /* its learner: theta_r plus its slice so far */
    char name[SLR_SYNC_MAX_MEMBER_ID + 1]; /* the delta's member name, "topic/000005" */
    int64_t next;       /* after the last offset of the slice learned */
    int64_t eof;        /* where the partition ended when last seen; -1: not seen */
    bool published;     /* its delta of the round is on the sync topic */
    uint64_t examples;  /* what it published: examples ... */
    int64_t to;         /* ... and the end of its range */
    bool paused;        /* fetched past its slice: not fetched until the next round */
} slot;

typedef struct sync_run {
    slr_job job;
    const slr_kafka_options *k; /* the group's consumer: the user's, eager protocol first */
    const slr_kafka_options *user; /* as given: the sync topic's clients take its -X */
    slr_kafka_source *src;
    const char *topic;  /* the source topic */
    int32_t P;          /* its partitions */
    int64_t S;          /* offsets per partition and round */
    uint64_t round;     /* r: the job's learner is theta_r */
    slr_sync_ledger *ledger;
    slr_sync_publisher *pub;
    slr_sync_reader *rd;
    slr_sync_pool *pool; /* the slots' work tables: taken for a slice, given back after */
    slot **slots;       /* [P]: the held partitions' slots, NULL for the others */
    int64_t *reach;     /* [P]: the end of the partition's ranges in the model */
    bool unflushed;     /* deltas published and not yet acknowledged */
    double unflushed_since; /* when the first of them was published */
    bool all_ended;     /* every partition's input has ended (--exit-at-end) */
    bool finished;      /* the final checkpoint and model are written */
    uint64_t rounds_merged, published, repeats;
    /* where the time went once learning started (seconds): consuming,
     * learning the slices, publishing (until acknowledged), waiting for
     * and merging the rounds -- the last line says it, so that a slow
     * group shows whether it waits on the barrier or on itself */
    double t_consume, t_learn, t_publish, t_round;
    uint64_t snapshots;     /* written by this process */
    uint64_t snapshot_round; /* the round of the last one it wrote (UINT64_MAX: none) */
    bool live;              /* caught up: merges are the group's news, not a replay */
    double paused_since;    /* the sync topic unreachable since (0: it is not) */
    double pause_said;      /* when that was last said */
    slr_status fatal;   /* a checkpoint could not be taken safely */
    slr_error fatal_err;
    void (*user_done)(void *ctx, const char *path, const slr_job_state *st);
    void *user_done_ctx;
} sync_run;

/* ------------------------------------------------------------ hooks */

static void log_hook(void *ctx, const char *msg)
{
    sync_run *run = ctx;
    slr_job_log(&run->job, "%s", msg);
}

static int64_t round_position(const struct sync_run *run, int32_t p);
static bool checkpoint_now(struct sync_run *run);

/* The source's positions are the round's start (what the model holds): a
 * partial slice is not in it. */
static void round_positions(sync_run *run)
{
    slr_kafka_partition *const *parts;
    size_t n = slr_kafka_source_assignment(run->src, &parts);
    for (size_t i = 0; i < n; i++)
        parts[i]->next = round_position(run, parts[i]->partition);
}

/* Partitions go away (the slots of those no longer held are dropped at the
 * next turn): their round's start is committed once a checkpoint holding
 * it is durable -- the model is theta_r whenever the loop consumes, so one
 * can be taken mid-round.  (The rebalance that members leaving at the end
 * set off refuses commits made outside it: this one it takes.) */
static bool release_hook(void *ctx)
{
    sync_run *run = ctx;
    round_positions(run);
    return run->finished || checkpoint_now(run);
}

/* A checkpoint is durable: the round's positions may be committed. */
static void on_durable(void *ctx, const char *path, const slr_job_state *st)
{
    sync_run *run = ctx;
    if (run->src)
        slr_kafka_source_commit_state(run->src, st, 0);
    if (run->user_done)
        run->user_done(run->user_done_ctx, path, st);
}

/* ------------------------------------------------------------ outages */

/* The sync topic cannot be reached (why: the last error): learning is
 * paused, since a round merged without it, or a slice learned from a model
 * the group does not share, would diverge in silence.  Said when it starts
 * and every PAUSE_LOG_SECONDS; back() says when it ends. */
static void paused(sync_run *run, const char *why)
{
    double now = slr_monotonic_seconds();
    if (!run->paused_since)
        run->paused_since = now;
    if (run->pause_said && now - run->pause_said < PAUSE_LOG_SECONDS)
        return;
    char since[48] = "";
    if (run->pause_said)
        snprintf(since, sizeof since, " for %.0f s", now - run->paused_since);
    run->pause_said = now;
    slr_job_log(&run->job, "sync: sync topic %s unreachable%s (%s); learning is paused with the "
                           "model at round %llu and goes on when the topic is back (-X "
                           "message.timeout.ms bounds the wait for a delta's ack)",
                run->k->sync_topic, since, why, (unsigned long long)run->round);
}

static void back(sync_run *run)
{
    if (run->pause_said)
        slr_job_log(&run->job, "sync: sync topic %s reachable again after %.0f s; round %llu goes on",
                    run->k->sync_topic, slr_monotonic_seconds() - run->paused_since,
                    (unsigned long long)run->round);
    run->paused_since = run->pause_said = 0;
}

/* Wait until every record published is acknowledged, however long the
 * topic is away (librdkafka's message.timeout.ms is the bound: a delta it
 * gives up on stops the job); *done false if a stop came first. */
static slr_status sync_flush(sync_run *run, slr_error *err);

static slr_status flush_published(sync_run *run, bool *done, slr_error *err)
{
    double started = slr_monotonic_seconds();
    *done = false;
    if (run->k->sync_transactions) {
        /* a commit is not resumed step by step: one wait, FLUSH_MS, which
         * an outage longer than that ends with its error */
        slr_status st = sync_flush(run, err);
        *done = st == SLR_OK;
        return st;
    }
    for (;;) {
        slr_status st = slr_sync_publisher_flush(run->pub, FLUSH_STEP_MS, err);
        if (st == SLR_OK) {
            if (!slr_sync_reader_unreachable(run->rd, NULL))
                back(run);
            *done = true;
            return SLR_OK;
        }
        if (slr_sync_publisher_pending(run->pub) < 0)
            return st; /* a delta failed: err says which and why */
        if (slr_job_should_stop(&run->job))
            return SLR_OK;
        if (slr_monotonic_seconds() - started >= 2.0)
            paused(run, "its deltas are not acknowledged: brokers down, or its partition "
                        "without a leader?");
    }
}

/* ------------------------------------------------------------ rounds and positions */

static int64_t slice_from(const sync_run *run) { return (int64_t)run->round * run->S; }
static int64_t slice_end(const sync_run *run) { return (int64_t)(run->round + 1) * run->S; }

/* A partition whose ranges stop short of the round's start ended earlier. */
static bool ended(const sync_run *run, int32_t p) { return run->reach[p] < slice_from(run); }

/* Where partition p starts the round: r*S, or its end if its input ended. */
static int64_t round_position(const sync_run *run, int32_t p)
{
    return ended(run, p) ? run->reach[p] : slice_from(run);
}

/* The round into the job state: positions table and sync mark. */
static slr_status note_round(sync_run *run, slr_error *err)
{
    slr_status st = SLR_OK;
    for (int32_t p = 0; p < run->P && st == SLR_OK; p++)
        st = slr_job_state_set_kafka_offset(&run->job.state, run->topic, p,
                                            round_position(run, p), err);
    unsigned char *g = NULL;
    size_t len = 0;
    if (st == SLR_OK)
        st = slr_sync_ledger_encode(run->ledger, &g, &len, err);
    if (st == SLR_OK)
        st = slr_job_state_set_sync(&run->job.state, run->k->sync_topic, run->S, run->round,
                                    slr_sync_reader_position(run->rd), g, len, err);
    free(g);
    return st;
}

/* ------------------------------------------------------------ setup */

/* What the loop cannot do, refused before anything is read. */
static slr_status refuse(const slr_train_options *opt, const slr_kafka_options *k, slr_error *err)
{
    const char *why = NULL;
    if (opt->n_files)
        why = "a Kafka job takes no input files";
    else if (k->n_topics != 1)
        why = "--sync-topic needs exactly one source --topic (rounds slice its partitions)";
    else if (k->topics[0][0] == '^')
        why = "--sync-topic needs a named source --topic, not a pattern";
    else if (k->sync_every < 0)
        why = "--sync-every must be a number of offsets per partition >= 1";
    else if (opt->threads >= 2)
        why = "--sync-topic decodes on the learning thread (each message is learned by its "
              "partition's copy of the model); drop --threads";
    else if (opt->max_examples)
        why = "--examples cannot stop a group mid-round; use --exit-at-end or stop the members";
    else if (opt->test_only)
        why = "-t learns nothing: score with predict, not with a group's member";
    else if (opt->passes > 1)
        why = "--passes replays files; a Kafka job reads its topic once";
    if (why)
        return slr_error_set(err, SLR_ERR_ARG, "%s", why);
    return SLR_OK;
}

/* The checkpoint loaded (if any) is this group's: same sync topic and S. */
static slr_status check_resumed(sync_run *run, slr_error *err)
{
    const slr_job_state *st = &run->job.state;
    const char *dir = run->job.opt->checkpoint_dir;
    if (st->source == SLR_SOURCE_FILES)
        return slr_error_set(err, SLR_ERR_MISMATCH,
                             "the checkpoints in %s were taken replaying files; give a group's "
                             "member its own --checkpoint-dir",
                             dir);
    if (!st->sync.topic && (st->n_kafka || slr_learner_steps(run->job.learner)))
        return slr_error_set(err, SLR_ERR_MISMATCH,
                             "the model loaded (-i, or the checkpoints in %s) is not a group's: "
                             "a member of a --sync-topic group starts from the group's model "
                             "(the sync topic, or its own checkpoints of it)",
                             dir ? dir : "--checkpoint-dir");
    if (st->sync.topic && (strcmp(st->sync.topic, run->k->sync_topic) || st->sync.slice != run->S))
        return slr_error_set(err, SLR_ERR_MISMATCH,
                             "the checkpoints in %s are of a group with --sync-topic %s "
                             "--sync-every %lld; this run has --sync-topic %s --sync-every %lld",
                             dir, st->sync.topic, (long long)st->sync.slice, run->k->sync_topic,
                             (long long)run->S);
    return SLR_OK;
}

/* The ledger and round from the checkpoint (or empty, round 0), each
 * partition's reach from the ledger. */
/* Where each partition's ranges in the model end, from the ledger of a
 * model at run->round (a checkpoint's or a snapshot's: `whose`). */
static slr_status reach_from_ledger(sync_run *run, const char *whose, slr_error *err)
{
    for (int32_t p = 0; p < run->P; p++) {
        int64_t r[1][2];
        size_t n = slr_sync_ledger_ranges(run->ledger, run->topic, p, r, 1);
        if (n > 1 || (n == 1 && r[0][0] != 0))
            return slr_error_set(err, SLR_ERR_CORRUPT,
                                 "%s's ledger holds %s[%d] as %zu ranges not starting at 0: not "
                                 "a group member's",
                                 whose, run->topic, (int)p, n);
        run->reach[p] = n ? r[0][1] : 0;
        if (run->reach[p] > slice_from(run))
            return slr_error_set(err, SLR_ERR_CORRUPT, "%s's ledger reaches past round %llu in %s[%d]",
                                 whose, (unsigned long long)run->round, run->topic, (int)p);
    }
    return SLR_OK;
}

static slr_status load_sync_state(sync_run *run, slr_error *err)
{
    const slr_sync_mark *mk = &run->job.state.sync;
    slr_status st = mk->topic ? slr_sync_ledger_decode(mk->ledger, mk->ledger_len, &run->ledger, err)
                              : slr_sync_ledger_create(&run->ledger, err);
    if (st != SLR_OK)
        return st;
    run->round = mk->topic ? mk->round : 0;
    run->slots = calloc((size_t)run->P, sizeof *run->slots);
    run->reach = calloc((size_t)run->P, sizeof *run->reach);
    if (!run->slots || !run->reach)
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
    return reach_from_ledger(run, "the checkpoint", err);
}

/* The model becomes snapshot s's theta_round (before anything learned or
 * started: the job's decoding follows the new learner's hashing, which a
 * matching fingerprint says is the same). */
static slr_status start_from_snapshot(sync_run *run, slr_sync_snapshot *s, slr_error *err)
{
    if (strcmp(s->source_topic, run->topic) != 0 || s->source_partitions != run->P ||
        s->slice != run->S)
        return slr_error_set(err, SLR_ERR_MISMATCH,
                             "sync topic %s: its snapshot of round %llu is of %s[0..%d) in rounds "
                             "of %lld, this member reads %s[0..%d) in rounds of %lld",
                             run->k->sync_topic, (unsigned long long)s->round, s->source_topic,
                             (int)s->source_partitions, (long long)s->slice, run->topic,
                             (int)run->P, (long long)run->S);
    if (slr_sync_fingerprint(slr_learner_config_of(s->learner)) !=
        slr_sync_fingerprint(slr_learner_config_of(run->job.learner)))
        return slr_error_set(err, SLR_ERR_MISMATCH,
                             "sync topic %s: the group's model was learned with other settings "
                             "(-b, -q, rates, penalties) than this member's",
                             run->k->sync_topic);
    slr_job_item_free(&run->job.item);
    slr_learner_destroy(run->job.learner);
    run->job.learner = s->learner;
    s->learner = NULL;
    slr_job_item_init(&run->job.item, run->job.learner, run->job.opt->max_features);
    slr_sync_ledger_destroy(run->ledger);
    run->ledger = s->ledger;
    s->ledger = NULL;
    run->round = s->round;
    slr_job_log(&run->job, "sync: starting from the snapshot of round %llu at %s offset %lld",
                (unsigned long long)s->round, run->k->sync_topic, (long long)s->offset);
    return reach_from_ledger(run, "the snapshot", err);
}

/* Wait until what was published is on the sync topic; with transactions
 * commit it, with the source offsets for the group as the consumer knows
 * it now (its generation fences a zombie's offsets). */
static slr_status sync_flush(sync_run *run, slr_error *err)
{
    void *group = NULL;
    size_t len = 0;
    slr_status st = SLR_OK;
    if (run->k->sync_transactions)
        st = slr_kafka_source_group_metadata(run->src, &group, &len, err);
    if (st == SLR_OK)
        st = slr_sync_publisher_commit(run->pub, group, len, FLUSH_MS, err);
    if (group)
        rd_kafka_mem_free(NULL, group);
    return st;
}

/* The holder of partition 0 writes a snapshot of theta_r every
 * --sync-snapshot-every rounds, and of theta_0 (so that a scorer, which
 * takes the group's settings from a snapshot, can follow from the start).
 * Once per round and process; only when caught up (a replay's rounds are
 * old news).  A snapshot lost to a crash mid-write is torn: readers ignore
 * it, and the next one comes N rounds later. */
static slr_status snapshot_if_due(sync_run *run, slr_error *err)
{
    uint64_t every = run->user->sync_snapshot_every;
    if (!every || !run->live || !run->slots || !run->slots[0] || run->round % every != 0 ||
        run->snapshot_round == run->round)
        return SLR_OK;
    bool done = true;
    slr_status st = slr_sync_publish_snapshot(run->pub, run->job.learner, run->round, run->ledger,
                                              slr_sync_reader_position(run->rd), 0, err);
    if (st == SLR_OK)
        st = flush_published(run, &done, err);
    if (st == SLR_OK && !done)
        return SLR_OK; /* stopped: the loop ends */
    if (st != SLR_OK) {
        slr_error_prefix(err, "snapshot of round %llu: ", (unsigned long long)run->round);
        return st;
    }
    run->snapshot_round = run->round;
    run->snapshots++;
    return SLR_OK;
}

/* This member's transactional.id (--sync-transactions on): the group, the
 * sync topic, and what stays the same when the member restarts -- its
 * static group.instance.id (-X), else its checkpoint directory on this
 * host -- so that the restarted process fences the old one, should it
 * still live (a zombie), and aborts the transaction it left open, which
 * readers would otherwise wait behind until transaction.timeout.ms.
 * Without either, the process id: nothing stable to fence by.  -X
 * transactional.id=ID says it outright. */
static slr_status transactional_id(const sync_run *run, char *buf, size_t n, slr_error *err)
{
    const char *instance = NULL, *given = NULL;
    for (uint32_t i = 0; i < run->user->n_config; i++)
        if (!strncmp(run->user->config[i], "group.instance.id=", 18))
            instance = run->user->config[i] + 18;
        else if (!strncmp(run->user->config[i], "transactional.id=", 17))
            given = run->user->config[i] + 17;
    char host[256] = "localhost", dir[PATH_MAX];
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    const char *cd = run->job.opt->checkpoint_dir;
    int len;
    if (given)
        len = snprintf(buf, n, "%s", given);
    else if (instance)
        len = snprintf(buf, n, "streamlr.%s.%s.instance.%s", run->k->group, run->k->sync_topic,
                       instance);
    else if (cd && realpath(cd, dir))
        len = snprintf(buf, n, "streamlr.%s.%s.dir.%s:%s", run->k->group, run->k->sync_topic,
                       host, dir);
    else
        len = snprintf(buf, n, "streamlr.%s.%s.pid.%s:%ld", run->k->group, run->k->sync_topic,
                       host, (long)getpid());
    if (len < 0 || (size_t)len >= n)
        return slr_error_set(err, SLR_ERR_ARG, "a transactional.id of %d bytes or more; set a "
                             "shorter one with -X transactional.id=...", len);
    return SLR_OK;
}

/* The sync topic's reader and publisher; the reader knows which partitions
 * ended before the checkpoint's round (their short slice tells the round). */
static slr_status open_sync_topic(sync_run *run, slr_error *err)
{
    slr_sync_topic_config c = {
        .brokers = run->k->brokers,
        .topic = run->k->sync_topic,
        .properties = run->user->config,
        .n_properties = run->user->n_config,
        .source_topic = run->topic,
        .source_partitions = run->P,
        .slice = run->S,
    };
    const slr_sync_mark *mk = &run->job.state.sync;
    slr_status st = SLR_OK;
    if (!mk->topic) { /* no checkpoint: the newest snapshot, if any */
        bool found = false;
        slr_sync_snapshot snap = {0};
        st = slr_sync_snapshot_find(&c, CATCH_UP_MS, &snap, &found, err);
        /* the reader first: it reads the snapshot's ledger, which the model then takes */
        if (st == SLR_OK && found && snap.round > 0)
            st = slr_sync_reader_create_at(&run->rd, &c, &snap, err);
        if (st == SLR_OK && found && snap.round > 0)
            st = start_from_snapshot(run, &snap, err);
        slr_sync_snapshot_clear(&snap);
        if (st != SLR_OK)
            return st;
    }
    if (!run->rd)
        st = slr_sync_reader_create(&run->rd, &c, mk->topic ? mk->position : 0, run->round, err);
    for (int32_t p = 0; p < run->P && st == SLR_OK; p++)
        if (ended(run, p))
            st = slr_sync_reader_set_ended(run->rd, p, (uint64_t)(run->reach[p] / run->S), err);
    char txn_id[1024];
    if (st == SLR_OK && run->k->sync_transactions &&
        (st = transactional_id(run, txn_id, sizeof txn_id, err)) == SLR_OK)
        c.transactional_id = txn_id;
    if (st == SLR_OK)
        st = slr_sync_publisher_create(&run->pub, &c, err);
    if (st == SLR_OK && c.transactional_id) /* what an ACL on the cluster must allow */
        slr_job_log(&run->job, "sync: deltas published in transactions as transactional.id "
                               "\"%s\"",
                    c.transactional_id);
    return st;
}

/* ------------------------------------------------------------ slots */

static void slot_free(slot *s)
{
    if (!s)
        return;
    slr_sync_member_destroy(s->m);
    free(s);
}

static slr_status slot_new(sync_run *run, slr_kafka_partition *q, slr_error *err)
{
    slot *s = calloc(1, sizeof *s);
    if (!s)
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
    slr_status st = slr_sync_slice_name(s->name, sizeof s->name, run->topic, q->partition, err);
    /* generation 0: a slice's delta is the same bytes whoever learns it */
    if (st == SLR_OK)
        st = slr_sync_member_create_pooled(&s->m, run->pool, s->name, 0, run->round, err);
    if (st != SLR_OK) {
        slot_free(s);
        return st;
    }
    s->next = slice_from(run);
    s->eof = -1;
    run->slots[q->partition] = s;
    /* a partition given back may still be paused from when it was ours */
    s->paused = ended(run, q->partition);
    slr_kafka_source_pause(run->src, q, s->paused);
    return SLR_OK;
}

/* Follow the assignment: a slot for each partition newly held (it starts
 * at the round's position, from the positions table), none for a partition
 * given away (its partial slice is dropped: the new owner learns it). */
static slr_status follow_assignment(sync_run *run, slr_error *err)
{
    slr_kafka_partition *const *parts;
    size_t n = slr_kafka_source_assignment(run->src, &parts);
    bool held[run->P > 0 ? run->P : 1];
    memset(held, 0, sizeof held);
    for (size_t i = 0; i < n; i++) {
        slr_kafka_partition *q = parts[i];
        if (strcmp(q->topic, run->topic) || q->partition < 0 || q->partition >= run->P)
            return slr_error_set(err, SLR_ERR_ARG, "assigned %s, which is not a partition of the "
                                                   "%d of %s the group's rounds slice",
                                 q->name, (int)run->P, run->topic);
        held[q->partition] = true;
        if (!run->slots[q->partition]) {
            slr_status st = slot_new(run, q, err);
            if (st != SLR_OK)
                return st;
        }
    }
    for (int32_t p = 0; p < run->P; p++)
        if (!held[p] && run->slots[p]) {
            slot_free(run->slots[p]);
            run->slots[p] = NULL;
        }
    return SLR_OK;
}

/* A slot has nothing more to do this round. */
static bool slot_done(const sync_run *run, int32_t p)
{
    return ended(run, p) || run->slots[p]->published;
}

static bool all_done(const sync_run *run)
{
    for (int32_t p = 0; p < run->P; p++)
        if (run->slots[p] && !slot_done(run, p))
            return false;
    return true;
}

/* ------------------------------------------------------------ apply */

/* The message's examples, learned by the slot's member. */
static slr_status learn_message(sync_run *run, slot *s, slr_kafka_partition *q,
                                const rd_kafka_message_t *m, slr_error *err)
{
    slr_job *job = &run->job;
    slr_status st = slr_sync_member_begin(s->m, err);
    if (st != SLR_OK)
        return st;
    slr_learner *theta = job->learner;
    job->learner = slr_sync_member_learner(s->m);
    job->sync = s->m;
    const char *buf = m->payload ? (const char *)m->payload : "";
    size_t len = m->len;
    slr_where where = {q->name, 0, (uint64_t)m->offset, true};
    while (len > 0) {
        size_t used = 0;
        slr_apply_result r = SLR_APPLY_LEARNED;
        st = slr_job_apply(job, buf, len, true, &where, &used, &r, err);
        if (st != SLR_OK || r == SLR_APPLY_NEED_MORE || used == 0 || used > len)
            break; /* (NEED_MORE cannot happen with at_end; never loop on it) */
        buf += used;
        len -= used;
    }
    job->learner = theta;
    job->sync = NULL;
    if (st != SLR_OK)
        return st;
    s->next = m->offset + 1;
    if (s->eof >= 0 && m->offset >= s->eof)
        s->eof = -1; /* more came after that end */
    slr_kafka_source_applied(q, m->offset);
    if (run->k->applied)
        run->k->applied(run->k->applied_ctx, q->topic, q->partition, m->offset);
    return SLR_OK;
}

/* A message past the slice (or after the partition's delta is out): not
 * learned, and the partition fetches nothing more until the next round,
 * which starts it again at its first offset. */
static void overran(sync_run *run, slot *s, slr_kafka_partition *q)
{
    if (!s->paused) {
        slr_kafka_source_pause(run->src, q, true);
        s->paused = true;
    }
}

/* One message (or event) as the source says, then as the round says. */
static slr_status apply_one(sync_run *run, rd_kafka_message_t *m, slr_error *err)
{
    slr_kafka_partition *q;
    slr_kafka_take take = slr_kafka_source_take(run->src, m, &q, err);
    if (take == SLR_KAFKA_FAILED)
        return SLR_ERR_KAFKA;
    slot *s = q && q->partition >= 0 && q->partition < run->P ? run->slots[q->partition] : NULL;
    if (!s)
        return SLR_OK; /* not ours (any more) */
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        s->eof = m->offset; /* everything before it was delivered */
        return SLR_OK;
    }
    if (take != SLR_KAFKA_APPLY)
        return SLR_OK;
    if (!slot_done(run, q->partition) && m->offset >= slice_end(run))
        s->next = slice_end(run); /* in order: nothing of the slice is left (offsets may skip) */
    if (slot_done(run, q->partition) || m->offset >= slice_end(run)) {
        overran(run, s, q);
        return SLR_OK;
    }
    if (m->offset < s->next)
        return SLR_OK; /* learned already (fetched again after a rebalance) */
    if (run->job.records_this_run == 0 && run->job.waiting_seconds == 0)
        run->job.waiting_seconds = slr_monotonic_seconds() - run->job.started;
    return learn_message(run, s, q, m, err);
}

/* ------------------------------------------------------------ publish */

/* Where slot s's slice ends if it is complete: its last offset learned (or
 * passed: offsets may have gaps), or, with --exit-at-end, the partition's
 * end reached inside the slice, everything before it learned (a short or
 * empty slice: the partition's last).  -1: not complete. */
static int64_t slice_complete(const sync_run *run, const slot *s)
{
    int64_t end = slice_end(run);
    if (s->next >= end)
        return end;
    if (run->k->exit_at_end && s->eof >= 0 && s->eof == s->next)
        return s->eof;
    return -1;
}

/* Publish the delta of every complete slice not yet published, and wait
 * until the sync topic has them: a round never moves on with a delta the
 * group may not have. */
static slr_status publish(sync_run *run, slr_error *err)
{
    slr_status st = SLR_OK;
    for (int32_t p = 0; p < run->P && st == SLR_OK; p++) {
        slot *s = run->slots[p];
        if (!s || slot_done(run, p))
            continue;
        int64_t to = slice_complete(run, s);
        if (to < 0)
            continue;
        slr_sync_range g = {(char *)run->topic, p, slice_from(run), to};
        slr_sync_delta d;
        st = slr_sync_member_end_round(s->m, &g, 1, &d, err);
        if (st == SLR_OK) /* its table serves the next slice */
            st = slr_sync_member_release(s->m, err);
        if (st == SLR_OK)
            st = slr_sync_publish(run->pub, &d, err);
        if (st == SLR_OK) {
            s->published = true;
            s->examples = d.examples;
            s->to = to;
            run->published++;
            if (!run->unflushed)
                run->unflushed_since = slr_monotonic_seconds();
            run->unflushed = true;
        }
        slr_sync_delta_clear(&d);
    }
    if (st == SLR_OK && run->unflushed &&
        (all_done(run) || (run->k->sync_transactions &&
                           slr_monotonic_seconds() - run->unflushed_since > TXN_OPEN_SECONDS))) {
        bool done;
        st = flush_published(run, &done, err);
        run->unflushed = !done;
    }
    return st;
}

/* ------------------------------------------------------------ merge */

/* Did the round merge slot s's own slice?  Its name, range and example
 * count: then what its learner learned is in theta_{r+1}. */
static bool own_merged(const slot *s, const slr_sync_delta *kept, size_t nk)
{
    if (!s->published)
        return false;
    for (size_t i = 0; i < nk; i++)
        if (!strcmp(kept[i].member, s->name))
            return kept[i].examples == s->examples && kept[i].ranges[0].to == s->to;
    return false;
}

/* The next round starts: every slot learns from theta_r at r*S; a
 * partition fetched past its slice is fetched again from there, an ended
 * one fetches nothing. */
static void start_round(sync_run *run)
{
    slr_kafka_partition *const *parts;
    size_t n = slr_kafka_source_assignment(run->src, &parts);
    for (size_t i = 0; i < n; i++) {
        slr_kafka_partition *q = parts[i];
        slot *s = run->slots[q->partition];
        q->next = round_position(run, q->partition);
        if (!s)
            continue;
        s->next = slice_from(run);
        s->published = false;
        if (ended(run, q->partition)) {
            if (!s->paused)
                slr_kafka_source_pause(run->src, q, true);
            s->paused = true;
        } else if (s->paused) {
            slr_kafka_source_seek(run->src, q);
            s->paused = false;
        }
    }
}

/* theta_{r+1} = merge(theta_r, round r's deltas), each source range at most
 * once (the ledger), then every slot follows and the next round starts. */
static slr_status merge_round(sync_run *run, const slr_sync_delta *ds, size_t k, slr_error *err)
{
    slr_sync_delta *kept = calloc(k ? k : 1, sizeof *kept);
    if (!kept)
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
    size_t nk = 0;
    slr_status st = SLR_OK;
    for (size_t i = 0; i < k && st == SLR_OK; i++)
        switch (slr_sync_ledger_check(run->ledger, ds[i].ranges, ds[i].n_ranges)) {
        case SLR_SYNC_NEW: kept[nk++] = ds[i]; break;
        case SLR_SYNC_REPEAT: run->repeats++; break;
        case SLR_SYNC_OVERLAP:
            st = slr_error_set(err, SLR_ERR_MISMATCH,
                               "round %llu: \"%s\" holds offsets of which only some are in the "
                               "model already: it cannot be applied exactly once",
                               (unsigned long long)run->round, ds[i].member);
        }
    uint32_t *changed = NULL;
    size_t n_changed = 0;
    if (st == SLR_OK)
        st = slr_sync_merge(run->job.learner, run->round, kept, nk, SLR_SYNC_RELAXD, &changed,
                            &n_changed, err);
    for (size_t i = 0; i < nk && st == SLR_OK; i++) {
        st = slr_sync_ledger_add(run->ledger, kept[i].ranges, 1, err);
        run->reach[kept[i].ranges[0].partition] = kept[i].ranges[0].to;
    }
    for (int32_t p = 0; p < run->P && st == SLR_OK; p++)
        if (run->slots[p])
            st = slr_sync_member_follow(run->slots[p]->m, changed, n_changed,
                                        own_merged(run->slots[p], kept, nk), err);
    if (st == SLR_OK) /* after the slots: the tables they gave back follow too */
        st = slr_sync_pool_follow(run->pool, changed, n_changed, err);
    free(changed);
    free(kept);
    if (st != SLR_OK) {
        slr_error_prefix(err, "merging round %llu: ", (unsigned long long)run->round);
        return st;
    }
    run->round++;
    run->rounds_merged++;
    run->job.moves++; /* the model moved on: a member without partitions checkpoints too */
    start_round(run);
    return note_round(run, err);
}

/* Read the sync topic up to now, merging every round complete on it (a
 * process that starts: from its checkpoint's position, or from offset 0). */
static slr_status catch_up(sync_run *run, slr_error *err)
{
    for (;;) {
        bool caught_up, complete, ended_all;
        const slr_sync_delta *ds;
        size_t k;
        slr_status st = slr_sync_reader_catch_up(run->rd, CATCH_UP_MS, &caught_up, err);
        if (st == SLR_OK)
            st = slr_sync_reader_next(run->rd, 0, &complete, &ds, &k, &ended_all, err);
        if (st != SLR_OK)
            return st;
        if (complete && ended_all) {
            run->all_ended = true;
            return SLR_OK;
        }
        if (complete) {
            if ((st = merge_round(run, ds, k, err)) != SLR_OK)
                return st;
            continue;
        }
        if (caught_up)
            return SLR_OK;
        const char *why = slr_sync_reader_unreachable(run->rd, NULL);
        if (why) { /* wait for it: nothing is learned before the model is the group's */
            paused(run, why);
            if (slr_job_should_stop(&run->job))
                return SLR_OK;
            continue;
        }
        return slr_error_set(err, SLR_ERR_KAFKA, "sync topic %s: no round read in %d s",
                             run->k->sync_topic, CATCH_UP_MS / 1000);
    }
}

/* ------------------------------------------------------------ the turn's other steps */

/* A checkpoint of theta_r now, waited for: true once one holding the
 * current round is durable (or there is no --checkpoint-dir: nothing
 * durable to wait for). */
static bool checkpoint_now(sync_run *run)
{
    slr_job *job = &run->job;
    if (!job->opt->checkpoint_dir)
        return true;
    if (slr_job_checkpoint_held(job))
        return false; /* a wrong format is still likely */
    if (job->records_this_run == job->records_at_checkpoint &&
        job->moves == job->moves_at_checkpoint && job->last_checkpoint[0] && !job->writer)
        return true; /* the last one holds this round */
    uint64_t written = job->checkpoints_written;
    slr_status st = slr_job_checkpoint(job, &run->fatal_err);
    if (st != SLR_OK && run->fatal == SLR_OK)
        run->fatal = st;
    if (job->writer)
        slr_job_checkpoint_poll(job, true, NULL);
    return job->checkpoints_written > written;
}

static slr_status checkpoint_if_due(sync_run *run, slr_error *err)
{
    slr_job *job = &run->job;
    if (slr_job_checkpoint_due_now(job)) {
        slr_status st = slr_job_checkpoint(job, &run->fatal_err);
        if (st != SLR_OK && run->fatal == SLR_OK)
            run->fatal = st;
    }
    if (job->writer)
        slr_job_checkpoint_poll(job, false, NULL); /* durable yet? then commit */
    if (run->fatal != SLR_OK)
        return slr_error_set(err, run->fatal, "%s", run->fatal_err.msg);
    return SLR_OK;
}

/* Wait for round r (briefly while slices are still being learned, so that
 * the consumer is polled and the group served), then merge it. */
static slr_status wait_round(sync_run *run, slr_error *err)
{
    bool complete, ended_all;
    const slr_sync_delta *ds;
    size_t k;
    slr_status st = slr_sync_reader_next(run->rd, all_done(run) ? ROUND_WAIT_MS : 1, &complete,
                                         &ds, &k, &ended_all, err);
    const char *why = slr_sync_reader_unreachable(run->rd, NULL);
    if (st == SLR_OK && !complete && why)
        paused(run, why);
    else if (st == SLR_OK && !why && !run->unflushed)
        back(run);
    if (st != SLR_OK || !complete)
        return st;
    if (ended_all) {
        run->all_ended = true;
        return SLR_OK;
    }
    if (run->unflushed) { /* complete without them: someone else's copies won */
        bool done;
        if ((st = flush_published(run, &done, err)) != SLR_OK || !done)
            return st; /* (not done: stopped, and the round is dropped) */
    }
    run->unflushed = false;
    if ((st = merge_round(run, ds, k, err)) != SLR_OK)
        return st;
    return checkpoint_if_due(run, err);
}

static void report(sync_run *run, size_t n)
{
    run->job.source.consumer_lag = slr_kafka_source_total_lag(run->src);
    if (n == 0)
        slr_job_idle(&run->job);
}

static void destroy_batch(rd_kafka_message_t **msgs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        rd_kafka_message_destroy(msgs[i]);
}

/* Commit what the final checkpoint holds.  Members reaching the end
 * together leave the group together, and the rebalance each departure sets
 * off refuses the others' commits: serve the group (consuming nothing more)
 * and commit again, for a bounded time. */
static void final_commit(sync_run *run, rd_kafka_message_t **msgs, size_t batch)
{
    double until = slr_monotonic_seconds() + COMMIT_RETRY_SECONDS;
    slr_kafka_source_commit_state(run->src, &run->job.state, COMMIT_WAIT_SECONDS);
    while (slr_kafka_source_commit_refused(run->src) && slr_monotonic_seconds() < until) {
        size_t n = slr_kafka_source_consume(run->src, msgs, batch, POLL_MS);
        destroy_batch(msgs, n);
        round_positions(run); /* partitions assigned meanwhile */
        slr_kafka_source_commit_state(run->src, &run->job.state, COMMIT_WAIT_SECONDS);
    }
}

/* ------------------------------------------------------------ the loop */

static slr_status open_run(sync_run *run, slr_train_options *opt, bool *format_chosen,
                           slr_error *err)
{
    slr_status st = slr_job_open(&run->job, opt, err);
    if (st != SLR_OK || (st = check_resumed(run, err)) != SLR_OK)
        return st;
    run->job.state.source = SLR_SOURCE_KAFKA;
    const slr_learner_config *cfg = slr_learner_config_of(run->job.learner);
    if (cfg->schedule != SLR_SCHEDULE_ADAGRAD || cfg->eager)
        return slr_error_set(err, SLR_ERR_ARG,
                             "--sync-topic needs --schedule adagrad without --eager: the merge "
                             "is built on AdaGrad's per-coordinate Sum g^2");
    if (!*format_chosen && run->job.checkpoint_format_known) {
        opt->format = run->job.checkpoint_format;
        *format_chosen = true;
        if ((st = slr_job_set_format(&run->job, err)) != SLR_OK)
            return st;
    }
    slr_kafka_hooks hooks = {run, log_hook, release_hook};
    bool want_stats = opt->progress || opt->metrics_out || opt->metrics_port >= 0;
    if ((st = slr_kafka_source_open(&run->src, run->k, want_stats, &run->job.state, &hooks,
                                    err)) != SLR_OK ||
        (st = slr_kafka_source_partition_count(run->src, run->topic, &run->P, err)) != SLR_OK ||
        (st = load_sync_state(run, err)) != SLR_OK || (st = open_sync_topic(run, err)) != SLR_OK ||
        (st = slr_sync_pool_create(&run->pool, run->job.learner, err)) != SLR_OK ||
        (st = note_round(run, err)) != SLR_OK)
        return st;
    /* before the first consume: partitions are assigned at the round's start */
    return slr_job_start(&run->job, err);
}

/* The eager protocol for the group, unless the user's -X says otherwise:
 * the sticky assignor's point (a partition stays with the member whose
 * model learned it) is moot when the members share the model, a round
 * waits for every partition whatever the protocol, and librdkafka before
 * 2.3 aborts when a cooperative-sticky member is closed before its first
 * assignment (librdkafka issue 4312), as a member stopped early would be. */
static const char **group_config(const slr_kafka_options *k, slr_kafka_options *out,
                                 slr_error *err)
{
    const char **c = malloc((k->n_config + 1) * sizeof *c);
    if (!c) {
        slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
        return NULL;
    }
    c[0] = "partition.assignment.strategy=roundrobin"; /* first: -X overrides it */
    uint32_t n = 1;
    for (uint32_t i = 0; i < k->n_config; i++) /* the sync topic's producer's, not ours */
        if (strncmp(k->config[i], "transactional.id=", 17))
            c[n++] = k->config[i];
    *out = *k;
    out->config = c;
    out->n_config = n;
    return c;
}

slr_status slr_train_sync(const slr_train_options *opt_in, const slr_kafka_options *k_in,
                          slr_train_result *res, slr_error *err)
{
    slr_kafka_options kk;
    const char **config = group_config(k_in, &kk, err);
    if (!config)
        return SLR_ERR_NOMEM;
    const slr_kafka_options *k = &kk;
    sync_run run = {.k = k, .user = k_in, .snapshot_round = UINT64_MAX,
                    .S = k->sync_every ? k->sync_every : SLR_SYNC_EVERY_DEFAULT};
    slr_train_options opt;
    rd_kafka_message_t **msgs = NULL;
    slr_status st = slr_train_options_resolve(opt_in, &opt, err);
    if (st != SLR_OK || (st = refuse(&opt, k, err)) != SLR_OK) {
        free(config);
        return st;
    }
    run.topic = k->topics[0];
    bool format_chosen = !opt.format_auto;
    opt.resume = opt.checkpoint_dir != NULL; /* a member restarted must continue */
    run.user_done = opt.checkpoint_done;
    run.user_done_ctx = opt.checkpoint_done_ctx;
    opt.checkpoint_done = on_durable;
    opt.checkpoint_done_ctx = &run;
    size_t batch = k->batch ? k->batch : 1000;
    batch = batch > BATCH_MAX ? BATCH_MAX : batch;
    if (!(msgs = malloc(batch * sizeof *msgs)))
        st = slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
    if (st == SLR_OK)
        st = open_run(&run, &opt, &format_chosen, err);
    uint64_t start_round = run.round;
    if (st == SLR_OK)
        st = catch_up(&run, err);
    run.live = true;
    if (st == SLR_OK)
        slr_job_log(&run.job, "sync: %s[0..%d) in rounds of %lld offsets per partition via %s; "
                              "the model is at round %llu (%llu caught up)",
                    run.topic, (int)run.P, (long long)run.S, k->sync_topic,
                    (unsigned long long)run.round, (unsigned long long)(run.round - start_round));

    /* consume, follow the assignment, apply, publish, wait for the round
     * (merge, checkpoint if due), report: one batch a turn */
    bool stopped = false;
    while (st == SLR_OK && !run.all_ended && !(stopped = slr_job_should_stop(&run.job))) {
        double t0 = slr_monotonic_seconds();
        size_t n = slr_kafka_source_consume(run.src, msgs, batch, all_done(&run) ? 0 : POLL_MS);
        double t1 = slr_monotonic_seconds();
        if (!format_chosen && n)
            st = slr_kafka_job_detect_format(&run.job, &opt, msgs, n, &format_chosen, err);
        if (st == SLR_OK)
            st = follow_assignment(&run, err);
        if (st == SLR_OK)
            st = snapshot_if_due(&run, err);
        for (size_t i = 0; i < n && st == SLR_OK; i++)
            if (!(stopped = slr_job_should_stop(&run.job)))
                st = apply_one(&run, msgs[i], err);
        destroy_batch(msgs, n);
        if (stopped)
            break; /* the round's slices are dropped: the checkpoint holds theta_r */
        if (st == SLR_OK && slr_kafka_source_failed(run.src, err))
            st = SLR_ERR_KAFKA;
        double t2 = slr_monotonic_seconds();
        if (st == SLR_OK)
            st = publish(&run, err);
        double t3 = slr_monotonic_seconds();
        if (st == SLR_OK)
            st = wait_round(&run, err);
        if (run.job.records_this_run) { /* not the group join's wait */
            run.t_consume += t1 - t0;
            run.t_learn += t2 - t1;
            run.t_publish += t3 - t2;
            run.t_round += slr_monotonic_seconds() - t3;
        }
        if (st == SLR_OK)
            report(&run, n);
    }
    if (st == SLR_OK) {
        uint64_t identical, different, late;
        slr_sync_reader_repeats(run.rd, &identical, &different, &late);
        uint64_t n_deltas, bytes, committed, aborted;
        slr_sync_publisher_counts(run.pub, &n_deltas, &bytes);
        slr_sync_publisher_transactions(run.pub, &committed, &aborted);
        if (k->sync_transactions)
            slr_job_log(&run.job, "sync: %llu transactions committed, %llu aborted and published "
                                  "again",
                        (unsigned long long)committed, (unsigned long long)aborted);
        slr_job_log(&run.job, "sync: %llu rounds merged, %llu deltas published (%llu bytes), "
                              "%llu snapshots written, %zu work tables, repeats dropped: %llu "
                              "identical, %llu different, %llu late",
                    (unsigned long long)run.rounds_merged, (unsigned long long)run.published,
                    (unsigned long long)bytes, (unsigned long long)run.snapshots,
                    slr_sync_pool_tables(run.pool),
                    (unsigned long long)identical, (unsigned long long)different,
                    (unsigned long long)late);
        slr_job_log(&run.job, "sync: time since the first record: %.3f s consuming, %.3f s "
                              "learning slices, %.3f s publishing deltas, %.3f s waiting for "
                              "and merging rounds",
                    run.t_consume, run.t_learn, run.t_publish, run.t_round);
        /* final checkpoint (theta_r, round r), then commit what it holds:
         * now, and when the partitions are released at the close */
        st = slr_job_finish(&run.job, stopped && opt.stop && *opt.stop, res, err);
        if (st == SLR_OK) {
            round_positions(&run); /* a stop mid-round: back to its start */
            run.finished = true;
            final_commit(&run, msgs, batch);
        }
    }
    slr_kafka_source_close(run.src, k->close_timeout_seconds > 0 ? k->close_timeout_seconds : 10.0);
    slr_sync_reader_destroy(run.rd);
    slr_sync_publisher_destroy(run.pub);
    for (int32_t p = 0; run.slots && p < run.P; p++)
        slot_free(run.slots[p]);
    slr_sync_pool_destroy(run.pool);
    free(run.slots);
    free(run.reach);
    slr_sync_ledger_destroy(run.ledger);
    free(msgs);
    slr_job_close(&run.job);
    free(config);
    return st;
}
