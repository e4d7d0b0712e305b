/* sync_topic.h - the Kafka transport of a group's shared model (sync.h,
 * docs/SYNC_PROTOCOL.md): a publisher of delta records onto the sync topic
 * and a reader that hands back the topic's rounds, complete and in order.
 *
 * Rounds are defined by the data, not by members or time: round r of source
 * partition p is the offsets [r*S, (r+1)*S) ("slice"), and one delta is
 * published per source partition and round, named by the partition (its
 * member field is slr_sync_slice_name), so that the merge of round r does
 * not depend on which process learned which partition, nor on kills and
 * rebalances.  Round r is complete when every partition that has not ended
 * has its round-r delta on the sync topic; a delta whose range stops short
 * of its slice's end marks its partition's end of input.  The first delta
 * of a slice in the sync topic's order wins, for every reader alike: a
 * later one (a restarted member re-learning the slice, a zombie) is counted
 * and dropped. */
#ifndef STREAMLR_SYNC_TOPIC_H
#define STREAMLR_SYNC_TOPIC_H

#include "streamlr/export.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "streamlr/error.h"
#include "streamlr/sync.h"

SLR_BEGIN_DECLS

/* The record's headers (values are decimal text) */
#define SLR_SYNC_HEADER_VERSION "streamlr.sync.version"
#define SLR_SYNC_HEADER_ROUND "streamlr.sync.round"
#define SLR_SYNC_HEADER_SLICE "streamlr.sync.slice"
/* on a snapshot's chunks only: "<id, 16 hex digits> <i>/<n>" */
#define SLR_SYNC_HEADER_SNAPSHOT "streamlr.sync.snapshot"
/* The default bound of a snapshot chunk's record (key, value, headers):
 * well under Kafka's default message.max.bytes (1 MB). */
#define SLR_SYNC_SNAPSHOT_CHUNK (512 * 1024)
/* 2: the learner section's records carry a double Sum g^2 (issue 12);
 * snapshots of version 1 are ignored like any other foreign record */
#define SLR_SYNC_SNAPSHOT_VERSION 2

typedef struct slr_sync_topic_config {
    const char *brokers;
    const char *topic; /* the sync topic (its partition 0 carries the group's order) */
    const char *const *properties; /* extra librdkafka "key=value" settings, or NULL */
    size_t n_properties;
    const char *source_topic; /* the data topic whose partitions are sliced */
    int32_t source_partitions; /* P: partitions 0..P-1 of source_topic */
    int64_t slice;             /* S: offsets per partition and round (>= 1) */
    /* Transactions, as defence in depth (docs/SYNC_PROTOCOL.md,
     * "Transactions"): non-NULL makes the publisher a transactional
     * producer with this transactional.id (a -X transactional.id in
     * properties overrides it); NULL: an idempotent producer, and a
     * transactional.id among the properties is refused.  Readers read
     * committed records only, either way. */
    const char *transactional_id;
} slr_sync_topic_config;

/* The member name of partition p's deltas: "<source topic>/<p, 6 digits>",
 * so that names sort like partitions (the merge's order).  Into buf (size
 * n); SLR_ERR_ARG if it does not fit a member id. */
slr_status slr_sync_slice_name(char *buf, size_t n, const char *source_topic, int32_t partition,
                               slr_error *err);

/* ---------------------------------------------------------------- publish */

typedef struct slr_sync_publisher slr_sync_publisher;

/* An idempotent producer (enable.idempotence, acks=all) of the sync topic;
 * with cfg->transactional_id a transactional one, its transactions begun
 * by the first record published after a commit (init_transactions here
 * fences an earlier producer of the same id and aborts what it left open;
 * SLR_ERR_KAFKA, saying what the cluster needs, if it cannot). */
slr_status slr_sync_publisher_create(slr_sync_publisher **out, const slr_sync_topic_config *cfg,
                                     slr_error *err);
void slr_sync_publisher_destroy(slr_sync_publisher *p);

/* Queue one delta (one source partition's slice: exactly one range, named
 * by slr_sync_slice_name; checked here so that a wrong record never reaches
 * the topic).  Key: the member field; value: slr_sync_delta_encode. */
slr_status slr_sync_publish(slr_sync_publisher *p, const slr_sync_delta *d, slr_error *err);

/* Deltas queued so far (snapshots not included), and the bytes of their
 * keys and values: the sync traffic a member adds (records compress their
 * entries themselves; a producer compression.type would come on top). */
void slr_sync_publisher_counts(const slr_sync_publisher *p, uint64_t *deltas, uint64_t *bytes);

/* Wait up to timeout_ms until everything queued is acknowledged -- with
 * transactions: the open transaction is committed.  SLR_ERR_KAFKA, naming
 * the cause, if a record failed or is still pending: the caller must not
 * start another round (learning pauses; it never goes on with a model the
 * group does not share). */
slr_status slr_sync_publisher_flush(slr_sync_publisher *p, int timeout_ms, slr_error *err);
/* Records queued and not yet acknowledged; -1 once one has failed (after
 * librdkafka's message.timeout.ms): a caller that waits for the topic
 * through an outage waits while this is > 0 and stops at -1. */
int slr_sync_publisher_pending(const slr_sync_publisher *p);

/* slr_sync_publisher_flush, and with transactions: the source offsets of
 * the transaction's deltas (the end of each one's slice) are sent to it
 * for the consumer group whose metadata `group` holds (group_len bytes of
 * rd_kafka_consumer_group_metadata_write(); NULL: none), so that the group
 * coordinator refuses them from a member of an older generation
 * (KIP-447).  An abortable error (the broker lost the producer's state,
 * the group refused the offsets) aborts the transaction and publishes its
 * records again, up to a few times in a row (offsets the group refused are
 * left to the member's checkpoint commits); a fatal one -- above all a
 * fenced producer: another process took the transactional.id over, this
 * one is a zombie -- ends the publisher, every later call failing with the
 * same message. */
slr_status slr_sync_publisher_commit(slr_sync_publisher *p, const void *group, size_t group_len,
                                     int timeout_ms, slr_error *err);

/* Transactions committed and aborted so far (0 without transactions). */
void slr_sync_publisher_transactions(const slr_sync_publisher *p, uint64_t *committed,
                                     uint64_t *aborted);

/* -------------------------------------------------------------- snapshot */

/* theta_r in full, so that a reader need not replay the sync topic from its
 * start (and may start after records its retention dropped).  A snapshot
 * is one body (msgpack: the learner's own checkpoint section, sparse, with
 * its step; the ledger; the round; where round r's deltas start on the
 * topic; the source topic, P and S; the learner's fingerprint) cut into
 * chunks of at most max_record bytes each, the records of one snapshot
 * sharing an id.  A reader loads a snapshot only when every chunk is there
 * and the body's hash matches: a writer killed mid-snapshot leaves a torn
 * one that every reader ignores. */
typedef struct slr_sync_snapshot {
    uint64_t round;   /* the model is theta_round: rounds < round are in it */
    int64_t position; /* the sync topic offset where round `round`'s records may start
                         (the writer's slr_sync_reader_position after round-1) */
    int64_t offset;   /* read back: the offset of its first chunk */
    uint64_t id;      /* read back: the chunks' id */
    char source_topic[SLR_SYNC_MAX_MEMBER_ID + 1];
    int32_t source_partitions;
    int64_t slice;
    slr_learner *learner;   /* theta_round (owned: slr_sync_snapshot_clear) */
    slr_sync_ledger *ledger; /* the ranges in it (owned) */
} slr_sync_snapshot;

void slr_sync_snapshot_clear(slr_sync_snapshot *s);

/* The body of snapshot s as msgpack, into *out (malloc'ed): s->learner's
 * whole state as it is (owed penalties stay owed: paying them early would
 * change the bits of later merges), s->ledger, round, position and the
 * source fields. */
slr_status slr_sync_snapshot_encode(const slr_sync_snapshot *s, unsigned char **out,
                                    size_t *out_len, slr_error *err);
/* Read and check a body: SLR_ERR_CORRUPT for anything malformed (never
 * reads out of bounds).  On success *s owns a learner and a ledger. */
slr_status slr_sync_snapshot_decode(const void *buf, size_t len, slr_sync_snapshot *s,
                                    slr_error *err);

/* Queue a snapshot of theta_round (the learner `theta`, the ledger of the
 * ranges it holds, and `position`, the sync topic offset after the record
 * that completed round-1: slr_sync_reader_position) as chunks of at most
 * max_record bytes (0: SLR_SYNC_SNAPSHOT_CHUNK); flush with
 * slr_sync_publisher_flush.  theta must be the group's model of that round,
 * unchanged by anything but merges: a member's snapshot every N rounds. */
slr_status slr_sync_publish_snapshot(slr_sync_publisher *p, const slr_learner *theta, uint64_t round,
                                     const slr_sync_ledger *ledger, int64_t position,
                                     size_t max_record, slr_error *err);

/* The newest complete snapshot on the sync topic of cfg (brokers, topic and
 * properties; the source fields are ignored: the snapshot names them) whose
 * round's records are still retained (position >= the low watermark), read
 * within timeout_ms.  *found false if there is none (*s untouched). */
slr_status slr_sync_snapshot_find(const slr_sync_topic_config *cfg, int timeout_ms,
                                  slr_sync_snapshot *s, bool *found, slr_error *err);

/* ------------------------------------------------------------------- read */

typedef struct slr_sync_reader slr_sync_reader;

/* A reader of the sync topic from offset `from` (0: the whole topic; a
 * restarted member: the position kept in its checkpoint), expecting rounds
 * from `round` on.  No consumer group: the position is the caller's. */
slr_status slr_sync_reader_create(slr_sync_reader **out, const slr_sync_topic_config *cfg,
                                  int64_t from, uint64_t round, slr_error *err);
void slr_sync_reader_destroy(slr_sync_reader *r);

/* A reader that goes on from snapshot s (its round, its position, the
 * partitions its ledger says have ended); cfg's source fields must be the
 * snapshot's.  Deltas of rounds before s->round are late. */
slr_status slr_sync_reader_create_at(slr_sync_reader **out, const slr_sync_topic_config *cfg,
                                     const slr_sync_snapshot *s, slr_error *err);

/* Move the reader to the newest complete snapshot on the topic, if it is
 * ahead of the reader's round, or whatever its round if the reader is lost
 * (its position fell off the topic's retention: slr_sync_reader_lost).  On
 * *loaded the reader hands back the rounds after it, records not yet handed
 * back are dropped, and *s holds theta_round and its ledger: the caller's
 * model must become s->learner.  Otherwise the reader is where it was; a
 * lost reader with no snapshot to go on from is SLR_ERR_KAFKA. */
slr_status slr_sync_reader_seek_snapshot(slr_sync_reader *r, int timeout_ms, slr_sync_snapshot *s,
                                         bool *loaded, slr_error *err);
/* Whether the reader's next record is no longer on the topic (retention
 * dropped it; catch_up and next then fail): seek a snapshot. */
bool slr_sync_reader_lost(const slr_sync_reader *r);
/* Why the sync topic cannot be read now (the last error: broker down, no
 * leader, a timeout), and for how long (*seconds, if not NULL); NULL while
 * it can.  A reader waiting for a round asks the broker for the topic's
 * watermarks after two seconds without a record, so a topic that is
 * merely quiet reads as reachable and an outage is seen within seconds,
 * also one that raises no error (a partition without a leader). */
const char *slr_sync_reader_unreachable(const slr_sync_reader *r, double *seconds);

/* Partition p's input ended in round `round` (its last slice was short):
 * rounds after it do not wait for it.  A reader created at a later round
 * (a member restarted from its checkpoint) learns it from the ledger:
 * the reader only knows of ends it read. */
slr_status slr_sync_reader_set_ended(slr_sync_reader *r, int32_t partition, uint64_t round,
                                     slr_error *err);

/* Read what the sync topic holds now (up to its high watermark), waiting at
 * most timeout_ms, but stop as soon as the next round is complete: take it
 * (slr_sync_reader_next with timeout 0) and call again, so that replaying a
 * long topic holds about one round in memory.  *caught_up says whether the
 * high watermark was reached. */
slr_status slr_sync_reader_catch_up(slr_sync_reader *r, int timeout_ms, bool *caught_up,
                                    slr_error *err);

/* The next round, once complete: waits up to timeout_ms (0: only what was
 * read already).  *complete false: not yet (nothing is handed back).
 * Otherwise deltas[0..*k) are its deltas in member order (owned by the
 * reader until the next call; empty when every partition has ended, *ended
 * then true), and the reader moves on to the next round.  A record that is
 * not a delta of this group's slices is SLR_ERR_CORRUPT, naming its
 * offset: a sync topic shared by mistake must stop the run, not feed it. */
slr_status slr_sync_reader_next(slr_sync_reader *r, int timeout_ms, bool *complete,
                                const slr_sync_delta **deltas, size_t *k, bool *ended,
                                slr_error *err);

/* The round the reader hands back next, and the sync topic offset after the
 * last record of the rounds handed back (where a restarted reader that
 * holds those rounds' model resumes). */
uint64_t slr_sync_reader_round(const slr_sync_reader *r);
int64_t slr_sync_reader_position(const slr_sync_reader *r);

/* Records dropped so far: deltas of a slice of a round not yet handed back
 * that was already read (identical bytes, and different ones, which
 * deterministic members never send), and deltas of rounds already handed
 * back (late: a restarted member re-publishing; not compared). */
void slr_sync_reader_repeats(const slr_sync_reader *r, uint64_t *identical, uint64_t *different,
                             uint64_t *late);

/* ----------------------------------------------------------------- follow */

/* The group's model for a scorer (`predict --follow-topic`): the newest
 * complete snapshot on the sync topic, then every complete round after it,
 * applied only when the caller refreshes (between messages).  The model's
 * settings and the group's source layout come from the snapshot: a
 * follower needs brokers, the topic and client properties only. */
typedef struct slr_sync_follower slr_sync_follower;

/* Load the newest snapshot and apply the complete rounds after it (within
 * timeout_ms).  SLR_ERR_ARG if the topic holds no complete snapshot. */
slr_status slr_sync_follower_open(slr_sync_follower **out, const slr_sync_topic_config *cfg,
                                  int timeout_ms, slr_error *err);
void slr_sync_follower_close(slr_sync_follower *f);

/* Apply the rounds completed on the topic since, reading for about
 * budget_ms at most; *changed if the model moved (then the learner below is
 * a new one: a whole copy of the group's model, which for -b 24 takes a few
 * hundred ms; slr_follower_start does this on a thread of its own).  A
 * follower whose position retention dropped goes on from the newest
 * snapshot.  On an error the rounds merged before it stay (*changed says
 * whether the learner moved to them); a scoring model that could not be
 * built is tried again at the next refresh. */
slr_status slr_sync_follower_refresh(slr_sync_follower *f, int budget_ms, bool *changed,
                                     slr_error *err);

/* The model to score with: theta_round with every owed penalty paid (valid
 * until the next refresh that changes it), NULL once taken. */
slr_learner *slr_sync_follower_learner(const slr_sync_follower *f);
/* The same, now the caller's (slr_learner_destroy): the follower never
 * writes to it again, so it may be scored with on another thread while
 * the follower refreshes.  NULL until a refresh changes the model. */
slr_learner *slr_sync_follower_take_learner(slr_sync_follower *f);
/* The model is theta_round (rounds 0..round-1 merged); position: the sync
 * topic offset after the record that completed round-1. */
uint64_t slr_sync_follower_round(const slr_sync_follower *f);
int64_t slr_sync_follower_position(const slr_sync_follower *f);
/* "sync:<topic>@<round>/<position>", what a scored message is stamped with */
const char *slr_sync_follower_name(const slr_sync_follower *f);
/* Snapshots loaded: 1 at the start, one more each time the topic's
 * retention dropped the follower's next round. */
uint64_t slr_sync_follower_snapshots(const slr_sync_follower *f);

/* ---------------------------------------------------------------- inspect */

/* What a sync topic holds (streamlr inspect --sync-topic), read off its
 * records alone: where the group is, and per source partition how far its
 * slices reach. */
typedef struct slr_sync_topic_info {
    char source_topic[SLR_SYNC_MAX_MEMBER_ID + 1]; /* "" if the topic is empty */
    int32_t source_partitions; /* the cluster's count, or 1 + the highest seen */
    int64_t slice;             /* S: from a record of round > 0, else the longest round-0 slice */
    int64_t low, high;         /* the sync topic's retained offsets */
    uint64_t first_round;      /* the lowest round retained */
    uint64_t rounds;           /* complete rounds, counted from first_round */
    int64_t position;          /* after the record that completed the last of them */
    bool ended;                /* every partition's input has ended */
    uint64_t identical, different, late; /* repeats, as slr_sync_reader_repeats */
    int64_t *reach;   /* per source partition: the end of its furthest slice, -1 if none */
    uint64_t *deltas; /* per source partition: records */
    bool *part_ended; /* per source partition: its input ended */
    uint64_t snapshot_records; /* records of snapshots, complete or torn */
    bool snapshot;             /* a complete, usable snapshot is retained; the newest: */
    uint64_t snapshot_round;
    int64_t snapshot_offset;   /* its first chunk */
    uint64_t snapshot_bytes;   /* its body */
} slr_sync_topic_info;

/* Read the whole sync topic of cfg (brokers, topic, properties; the source
 * fields are ignored: the records name them) within timeout_ms. */
slr_status slr_sync_topic_inspect(const slr_sync_topic_config *cfg, int timeout_ms,
                                  slr_sync_topic_info *out, slr_error *err);
void slr_sync_topic_info_free(slr_sync_topic_info *info);

SLR_END_DECLS
#endif
