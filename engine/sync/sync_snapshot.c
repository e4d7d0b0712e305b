/* sync_snapshot.c - a snapshot of a group's shared model (sync_topic.h,
 * docs/SYNC_PROTOCOL.md "Snapshots and retention"): the body's msgpack
 * codec, and the chunks the body is cut into so that no record exceeds the
 * sync topic's message size.
 *
 * The body is one positional msgpack array:
 *   ["streamlr-snapshot", 2, fingerprint, round, position, source topic,
 *    partitions, slice, ledger (bin: slr_sync_ledger_encode), learner]
 * with the learner the map slr_learner_pack writes into a checkpoint: its
 * settings, step, epoch, bias and the records (weight, accumulators, the step
 * its penalty is paid to) of every coordinate with state, so that a change of
 * the learner's state carries over here, and a loaded model is the writer's
 * bit for bit, owed penalties included.
 *
 * A chunk is a record's value:
 *   ["streamlr-snapshot-chunk", 2, id, round, position, index, count, total, hash,
 *    bytes]
 * (total: the body's length, hash: its XXH3-64); the chunks of one snapshot
 * share an id and come in order, from one producer. */
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "learner/learner_io.h"
#include "streamlr/sync_topic.h"
#include "sync_impl.h"
#include "util/msgpack_obj.h"

#define MAGIC "streamlr-snapshot"
#define CHUNK_MAGIC "streamlr-snapshot-chunk"
#define N_FIELDS 10
#define N_CHUNK_FIELDS 10

void slr_sync_snapshot_clear(slr_sync_snapshot *s)
{
    slr_learner_destroy(s->learner);
    slr_sync_ledger_destroy(s->ledger);
    memset(s, 0, sizeof *s);
}

static slr_status bad(slr_error *err, const char *what)
{
    return slr_error_set(err, SLR_ERR_CORRUPT, "sync snapshot: %s", what);
}

static bool is_str(const msgpack_object *o, const char *s)
{
    return o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(s) &&
           memcmp(o->via.str.ptr, s, o->via.str.size) == 0;
}

/* The tag and the version of a positional record. */
static slr_status check_head(const msgpack_object *a, const char *magic, uint32_t n_fields,
                             slr_error *err)
{
    if (a->type != MSGPACK_OBJECT_ARRAY || a->via.array.size < 2 || !is_str(&a->via.array.ptr[0], magic))
        return slr_error_set(err, SLR_ERR_CORRUPT, "sync snapshot: not a \"%s\" record", magic);
    const msgpack_object *v = &a->via.array.ptr[1];
    if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER || v->via.u64 != SLR_SYNC_SNAPSHOT_VERSION)
        return slr_error_set(err, SLR_ERR_CORRUPT,
                             "sync snapshot: format version is not %d (upgrade streamlr, or "
                             "keep the group on one version)",
                             SLR_SYNC_SNAPSHOT_VERSION);
    if (a->via.array.size != n_fields)
        return bad(err, "wrong number of fields for this version");
    return SLR_OK;
}

slr_status slr_sync_snapshot_encode(const slr_sync_snapshot *s, unsigned char **out,
                                    size_t *out_len, slr_error *err)
{
    *out = NULL;
    *out_len = 0;
    if (!s->learner || !s->ledger || !s->source_topic[0] || s->source_partitions < 1 ||
        s->slice < 1 || s->position < 0)
        return slr_error_set(err, SLR_ERR_ARG,
                             "a snapshot needs a model, a ledger, the source topic, its "
                             "partitions, the slice size and a position >= 0");
    unsigned char *ledger;
    size_t ledger_len;
    slr_status st = slr_sync_ledger_encode(s->ledger, &ledger, &ledger_len, err);
    if (st != SLR_OK)
        return st;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, N_FIELDS);
    slr_mp_pack_str(&pk, MAGIC);
    msgpack_pack_uint32(&pk, SLR_SYNC_SNAPSHOT_VERSION);
    msgpack_pack_uint64(&pk, slr_sync_fingerprint(slr_learner_config_of(s->learner)));
    msgpack_pack_uint64(&pk, s->round);
    msgpack_pack_int64(&pk, s->position);
    slr_mp_pack_str(&pk, s->source_topic);
    msgpack_pack_int32(&pk, s->source_partitions);
    msgpack_pack_int64(&pk, s->slice);
    msgpack_pack_bin(&pk, ledger_len);
    msgpack_pack_bin_body(&pk, ledger, ledger_len);
    free(ledger);
    slr_learner_pack(&pk, s->learner);
    return slr_sync_take(&sb, out, out_len, "a snapshot", err);
}

/* The ledger agrees with the round: no range reaches past round*S, and every
 * range is of a partition of the source. */
static slr_status check_ledger(const slr_sync_snapshot *s, slr_error *err)
{
    const int64_t reach = s->round > (uint64_t)(INT64_MAX / s->slice) ? INT64_MAX
                                                                     : (int64_t)s->round * s->slice;
    for (int32_t p = 0; p < s->source_partitions; p++)
        if (slr_sync_ledger_reach(s->ledger, s->source_topic, p) > reach)
            return bad(err, "its ledger holds offsets after its round");
    return SLR_OK;
}

static slr_status decode_body(const msgpack_object *a, slr_sync_snapshot *s, slr_error *err)
{
    s->offset = -1;
    slr_status st = check_head(a, MAGIC, N_FIELDS, err);
    if (st != SLR_OK)
        return st;
    const msgpack_object *f = a->via.array.ptr;
    int64_t position, parts, slice;
    if (f[2].type != MSGPACK_OBJECT_POSITIVE_INTEGER || f[3].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        !slr_mp_int(&f[4], &position) || !slr_mp_int(&f[6], &parts) || !slr_mp_int(&f[7], &slice))
        return bad(err, "fingerprint, round, position, partitions or slice is not an integer");
    if (position < 0 || parts < 1 || parts > INT32_MAX || slice < 1)
        return bad(err, "a negative position, no partitions or a slice < 1");
    if (f[5].type != MSGPACK_OBJECT_STR || f[5].via.str.size == 0 ||
        f[5].via.str.size > SLR_SYNC_MAX_MEMBER_ID || memchr(f[5].via.str.ptr, 0, f[5].via.str.size))
        return bad(err, "the source topic is not a string of 1..255 bytes without NUL");
    if (f[8].type != MSGPACK_OBJECT_BIN)
        return bad(err, "the ledger is not a bin");
    s->round = f[3].via.u64;
    s->position = position;
    memcpy(s->source_topic, f[5].via.str.ptr, f[5].via.str.size);
    s->source_topic[f[5].via.str.size] = '\0';
    s->source_partitions = (int32_t)parts;
    s->slice = slice;
    if ((st = slr_sync_ledger_decode(f[8].via.bin.ptr, f[8].via.bin.size, &s->ledger, err)) != SLR_OK)
        return st;
    if ((st = check_ledger(s, err)) != SLR_OK)
        return st;
    if ((st = slr_learner_unpack(&f[9], "sync snapshot", &s->learner, err)) != SLR_OK)
        return st;
    if (slr_sync_fingerprint(slr_learner_config_of(s->learner)) != f[2].via.u64)
        return bad(err, "its fingerprint is not its learner's settings'");
    return SLR_OK;
}

slr_status slr_sync_snapshot_decode(const void *buf, size_t len, slr_sync_snapshot *s,
                                    slr_error *err)
{
    memset(s, 0, sizeof *s);
    msgpack_zone zone;
    msgpack_object obj;
    slr_status st = slr_sync_unpack(buf, len, &zone, &obj, "sync snapshot", err);
    if (st == SLR_OK)
        st = decode_body(&obj, s, err);
    msgpack_zone_destroy(&zone);
    if (st != SLR_OK)
        slr_sync_snapshot_clear(s);
    return st;
}

/* ------------------------------------------------------------------ chunks */

slr_status slr_sync_chunk_encode(const slr_sync_chunk *c, unsigned char **out, size_t *out_len,
                                 slr_error *err)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, N_CHUNK_FIELDS);
    slr_mp_pack_str(&pk, CHUNK_MAGIC);
    msgpack_pack_uint32(&pk, SLR_SYNC_SNAPSHOT_VERSION);
    msgpack_pack_uint64(&pk, c->id);
    msgpack_pack_uint64(&pk, c->round);
    msgpack_pack_int64(&pk, c->position);
    msgpack_pack_uint32(&pk, c->index);
    msgpack_pack_uint32(&pk, c->count);
    msgpack_pack_uint64(&pk, c->total);
    msgpack_pack_uint64(&pk, c->hash);
    msgpack_pack_bin(&pk, c->len);
    msgpack_pack_bin_body(&pk, c->data, c->len);
    return slr_sync_take(&sb, out, out_len, "a snapshot", err);
}

/* c->data is a copy (free() it). */
slr_status slr_sync_chunk_decode(const void *buf, size_t len, slr_sync_chunk *c, slr_error *err)
{
    memset(c, 0, sizeof *c);
    msgpack_zone zone;
    msgpack_object a;
    slr_status st = slr_sync_unpack(buf, len, &zone, &a, "sync snapshot chunk", err);
    if (st == SLR_OK)
        st = check_head(&a, CHUNK_MAGIC, N_CHUNK_FIELDS, err);
    if (st == SLR_OK) {
        const msgpack_object *f = a.via.array.ptr;
        int64_t position = -1;
        if (!slr_mp_int(&f[4], &position) || position < 0)
            st = bad(err, "a chunk's position is not an offset");
        for (int i = 5; i < 9 && st == SLR_OK; i++)
            if (f[i].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
                st = bad(err, "a chunk's index, count, total or hash is not an unsigned integer");
        if (st == SLR_OK && (f[2].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
                             f[3].type != MSGPACK_OBJECT_POSITIVE_INTEGER))
            st = bad(err, "a chunk's id or round is not an unsigned integer");
        if (st == SLR_OK && (f[5].via.u64 >= f[6].via.u64 || f[6].via.u64 > UINT32_MAX))
            st = bad(err, "a chunk's index is not below its count");
        if (st == SLR_OK && f[9].type != MSGPACK_OBJECT_BIN)
            st = bad(err, "a chunk's bytes are not a bin");
        if (st == SLR_OK && f[9].via.bin.size > f[7].via.u64)
            st = bad(err, "a chunk holds more bytes than its snapshot");
        if (st == SLR_OK) {
            c->id = f[2].via.u64;
            c->round = f[3].via.u64;
            c->position = position;
            c->index = (uint32_t)f[5].via.u64;
            c->count = (uint32_t)f[6].via.u64;
            c->total = f[7].via.u64;
            c->hash = f[8].via.u64;
            c->len = f[9].via.bin.size;
            unsigned char *data = malloc(c->len ? c->len : 1);
            if (!data)
                st = slr_error_set(err, SLR_ERR_NOMEM, "out of memory reading a snapshot");
            else
                memcpy(data, f[9].via.bin.ptr, c->len);
            c->data = data;
        }
    }
    msgpack_zone_destroy(&zone);
    return st;
}

uint64_t slr_sync_body_hash(const void *buf, size_t len) { return XXH3_64bits(buf, len); }
