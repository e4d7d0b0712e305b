/* learner_io.c - the learner's state as records and as a checkpoint
 * section (see learner_io.h).  The slot layout (learner_impl.h) and its
 * on-disk form live here together: a change to one is a change to the
 * other, and docs/CHECKPOINT.md describes both. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "learner_impl.h"
#include "learner_io.h"
#include "util/le.h"
#include "util/msgpack_obj.h"

/* ------------------------------------------------------------ coordinates */

uint64_t slr_learner_epoch(const slr_learner *l) { return l->epoch; }

void slr_learner_state_export(const slr_learner *l, const uint32_t *idx, size_t n,
                              unsigned char *out)
{
    for (size_t i = 0; i < n; i++, out += SLR_STATE_RECORD) {
        const slr_slot *s = &l->slots[idx[i]];
        slr_le_put_u32(out, idx[i]);
        slr_le_put_f64(out + SLR_STATE_W, s->w);
        slr_le_put_f64(out + SLR_STATE_G2, s->g2);
        /* without a lazy penalty nothing is owed: every weight is as of now,
         * written as the epoch (0) as it always was */
        slr_le_put_u32(out + SLR_STATE_STAMP, l->stamps ? l->stamps[idx[i]] : 0);
    }
}

void slr_learner_copy_coords(slr_learner *dst, const slr_learner *src, const uint32_t *idx,
                             size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst->slots[idx[i]] = src->slots[idx[i]];
    if (dst->stamps)
        for (size_t i = 0; i < n; i++)
            dst->stamps[idx[i]] = src->stamps ? src->stamps[idx[i]] : 0;
}

bool slr_learner_revert(slr_learner *l, const slr_learner *src, const uint32_t *idx, size_t n)
{
    if (l->epoch != src->epoch || l->use_history || src->use_history || l->cfg.eager ||
        l->n_slots != src->n_slots || !l->stamps != !src->stamps)
        return false;
    slr_learner_copy_coords(l, src, idx, n);
    l->slots[l->n_slots] = src->slots[src->n_slots];
    l->step = src->step;
    return true;
}

uint64_t slr_learner_state_next(const slr_learner *l, uint64_t from)
{
    for (uint64_t j = from; j <= l->n_slots; j++)
        if (l->slots[j].w != 0.0 || l->slots[j].g2 != 0.0)
            return j;
    return l->n_slots + 1;
}

/* Why a record cannot be applied: its index, or its values. */
typedef enum record_fault { RECORD_OK, RECORD_BAD_INDEX, RECORD_BAD_VALUE } record_fault;

static record_fault check_record(const slr_learner *l, const unsigned char *r,
                                 slr_state_stamps stamps)
{
    uint32_t j = slr_le_get_u32(r);
    double w = slr_le_get_f64(r + SLR_STATE_W);
    double g2 = slr_le_get_f64(r + SLR_STATE_G2);
    uint32_t stamp = slr_le_get_u32(r + SLR_STATE_STAMP);
    if ((uint64_t)j > l->n_slots)
        return RECORD_BAD_INDEX;
    if (!(fabs(w) <= SLR_MAX_ABS_WEIGHT) || !isfinite(g2) || g2 < 0 ||
        (stamps == SLR_STATE_STAMPS_KEEP && l->epoch + stamp > l->step))
        return RECORD_BAD_VALUE;
    return RECORD_OK;
}

static void apply_record(slr_learner *l, const unsigned char *r, slr_state_stamps stamps)
{
    const uint32_t j = slr_le_get_u32(r);
    slr_slot *s = &l->slots[j];
    s->w = slr_le_get_f64(r + SLR_STATE_W);
    s->g2 = slr_le_get_f64(r + SLR_STATE_G2);
    if (l->stamps)
        l->stamps[j] = stamps == SLR_STATE_STAMPS_KEEP ? slr_le_get_u32(r + SLR_STATE_STAMP)
                                                       : (uint32_t)(l->step - l->epoch);
}

slr_status slr_learner_state_apply(slr_learner *l, const unsigned char *buf, size_t len,
                                   slr_state_stamps stamps, const char *what, slr_error *err)
{
    if (len % SLR_STATE_RECORD)
        return slr_error_set(err, SLR_ERR_CORRUPT, "%s: not a whole number of %d-byte records",
                             what, SLR_STATE_RECORD);
    for (size_t at = 0; at < len; at += SLR_STATE_RECORD)
        switch (check_record(l, buf + at, stamps)) {
        case RECORD_OK: break;
        case RECORD_BAD_INDEX:
            return slr_error_set(err, SLR_ERR_CORRUPT, "%s: coordinate %u out of range (2^%u)",
                                 what, slr_le_get_u32(buf + at), l->cfg.hashing.bits);
        case RECORD_BAD_VALUE:
            return slr_error_set(err, SLR_ERR_CORRUPT,
                                 "%s: coordinate %u holds a non-finite or inconsistent value", what,
                                 slr_le_get_u32(buf + at));
        }
    for (size_t at = 0; at < len; at += SLR_STATE_RECORD)
        apply_record(l, buf + at, stamps);
    return SLR_OK;
}

void slr_learner_bias_get(const slr_learner *l, double *w, double *g2)
{
    *w = l->slots[l->n_slots].w;
    *g2 = l->slots[l->n_slots].g2;
}

slr_status slr_learner_bias_set(slr_learner *l, double w, double g2, const char *what,
                                slr_error *err)
{
    if (!(fabs(w) <= SLR_MAX_ABS_WEIGHT) || !isfinite(g2) || g2 < 0)
        return slr_error_set(err, SLR_ERR_CORRUPT, "%s: the bias holds a non-finite or negative value",
                             what);
    l->slots[l->n_slots].w = w;
    l->slots[l->n_slots].g2 = g2; /* no stamp: the bias is never penalised */
    return SLR_OK;
}

/* ------------------------------------------------------------ the section */

static void pack_key(msgpack_packer *pk, const char *k) { slr_mp_pack_str(pk, k); }

void slr_learner_pack(msgpack_packer *pk, const slr_learner *l)
{
    const slr_learner_config *c = &l->cfg;
    /* VW's --cubic, --ignore, --ignore_linear and --noconstant: keys only when
     * set, so a model without them has the bytes it always had */
    bool cubic = c->hashing.n_cubic > 0, ignores = slr_hashing_ignores_any(&c->hashing),
         linear = c->hashing.any_ignored_linear, ftrl = c->optimizer == SLR_OPTIMIZER_FTRL,
         decay = c->decay < 1.0;
    msgpack_pack_map(pk, 17 + cubic + ignores + linear + c->noconstant + 3 * ftrl + decay);
    if (decay) { /* --decay: absent = 1, none */
        pack_key(pk, "decay");
        msgpack_pack_double(pk, c->decay);
    }
    if (ftrl) { /* SGD's models have no such keys: their bytes are unchanged */
        pack_key(pk, "optimizer");
        slr_mp_pack_str(pk, slr_optimizer_name(c->optimizer));
        pack_key(pk, "ftrl_alpha");
        msgpack_pack_double(pk, c->ftrl_alpha);
        pack_key(pk, "ftrl_beta");
        msgpack_pack_double(pk, c->ftrl_beta);
    }
    if (cubic) {
        pack_key(pk, "cubic");
        msgpack_pack_array(pk, c->hashing.n_cubic);
        for (unsigned i = 0; i < c->hashing.n_cubic; i++) {
            msgpack_pack_str(pk, 3);
            msgpack_pack_str_body(pk, c->hashing.cubic[i], 3);
        }
    }
    if (ignores) {
        pack_key(pk, "ignore");
        msgpack_pack_bin(pk, sizeof c->hashing.ignored);
        msgpack_pack_bin_body(pk, c->hashing.ignored, sizeof c->hashing.ignored);
    }
    if (linear) {
        pack_key(pk, "ignore_linear");
        msgpack_pack_bin(pk, sizeof c->hashing.ignored_linear);
        msgpack_pack_bin_body(pk, c->hashing.ignored_linear, sizeof c->hashing.ignored_linear);
    }
    if (c->noconstant) {
        pack_key(pk, "noconstant");
        msgpack_pack_true(pk);
    }
    pack_key(pk, "bits");
    msgpack_pack_uint32(pk, c->hashing.bits);
    pack_key(pk, "quadratic");
    msgpack_pack_array(pk, c->hashing.n_quadratic);
    for (unsigned i = 0; i < c->hashing.n_quadratic; i++) {
        msgpack_pack_str(pk, 2);
        msgpack_pack_str_body(pk, c->hashing.quadratic[i], 2);
    }
    pack_key(pk, "schedule");
    slr_mp_pack_str(pk, slr_schedule_name(c->schedule));
    pack_key(pk, "eta");
    msgpack_pack_double(pk, c->eta);
    pack_key(pk, "power_t");
    msgpack_pack_double(pk, c->power_t);
    pack_key(pk, "initial_t");
    msgpack_pack_double(pk, c->initial_t);
    pack_key(pk, "adagrad_delta");
    msgpack_pack_double(pk, c->adagrad_delta);
    pack_key(pk, "l1");
    msgpack_pack_double(pk, c->l1);
    pack_key(pk, "l2");
    msgpack_pack_double(pk, c->l2);
    pack_key(pk, "tg_period");
    msgpack_pack_uint32(pk, c->tg_period);
    pack_key(pk, "tg_threshold");
    msgpack_pack_double(pk, c->tg_threshold);
    pack_key(pk, "eager");
    c->eager ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    pack_key(pk, "step");
    msgpack_pack_uint64(pk, l->step);
    pack_key(pk, "epoch");
    msgpack_pack_uint64(pk, l->epoch);
    pack_key(pk, "bias"); /* not a record: its stamp means nothing, it is never penalised */
    const slr_slot *bias = &l->slots[l->n_slots];
    msgpack_pack_array(pk, 2);
    msgpack_pack_double(pk, bias->w);
    msgpack_pack_double(pk, bias->g2);

    /* the records of every hashed coordinate with state, streamed from the
     * table through a fixed buffer: nothing of model size is held */
    pack_key(pk, "weights");
    uint64_t n = 0;
    for (uint64_t j = slr_learner_state_next(l, 0); j < l->n_slots; j = slr_learner_state_next(l, j + 1))
        n++;
    msgpack_pack_bin(pk, (size_t)(n * SLR_STATE_RECORD));
    uint32_t idx[1024];
    unsigned char chunk[SLR_STATE_RECORD * 1024];
    size_t used = 0;
    for (uint64_t j = slr_learner_state_next(l, 0); j < l->n_slots; j = slr_learner_state_next(l, j + 1)) {
        idx[used++] = (uint32_t)j;
        if (used == 1024) {
            slr_learner_state_export(l, idx, used, chunk);
            msgpack_pack_bin_body(pk, chunk, used * SLR_STATE_RECORD);
            used = 0;
        }
    }
    slr_learner_state_export(l, idx, used, chunk);
    msgpack_pack_bin_body(pk, chunk, used * SLR_STATE_RECORD);

    pack_key(pk, "history");
    if (!l->use_history) {
        msgpack_pack_nil(pk);
    } else {
        msgpack_pack_map(pk, 3);
        pack_key(pk, "base");
        msgpack_pack_uint64(pk, l->hist.base);
        const double *cols[2] = {l->hist.log_p, l->hist.c};
        const char *names[2] = {"log_p", "c"};
        for (int k = 0; k < 2; k++) {
            pack_key(pk, names[k]);
            msgpack_pack_bin(pk, l->hist.len * 8);
            for (size_t i = 0; i < l->hist.len; i++) {
                unsigned char b[8];
                slr_le_put_f64(b, cols[k][i]);
                msgpack_pack_bin_body(pk, b, 8);
            }
        }
    }
}

static slr_status corrupt(slr_error *err, const char *name, const char *what)
{
    return slr_error_set(err, SLR_ERR_CORRUPT, "%s: %s", name, what);
}

/* The optional hashing keys (slr_learner_pack): --cubic, --ignore/--keep,
 * --ignore_linear; absent means none. */
static slr_status unpack_vw_hashing(const msgpack_object *L, const char *name,
                                    slr_learner_config *c, slr_error *err)
{
    const msgpack_object *cu = slr_mp_field(L, "cubic");
    if (cu && (cu->type != MSGPACK_OBJECT_ARRAY || cu->via.array.size > SLR_MAX_CUBIC))
        return corrupt(err, name, "learner.cubic malformed");
    for (uint32_t i = 0; cu && i < cu->via.array.size; i++) {
        const msgpack_object *t = &cu->via.array.ptr[i];
        if (t->type != MSGPACK_OBJECT_STR || t->via.str.size != 3)
            return corrupt(err, name, "learner.cubic entry is not a 3-letter string");
        char triple[4] = {t->via.str.ptr[0], t->via.str.ptr[1], t->via.str.ptr[2], 0};
        if (slr_hashing_add_cubic(&c->hashing, triple, NULL) != SLR_OK)
            return corrupt(err, name, "learner.cubic entry is invalid");
    }
    const msgpack_object *ign = slr_mp_field(L, "ignore");
    if (ign && (ign->type != MSGPACK_OBJECT_BIN || ign->via.bin.size != sizeof c->hashing.ignored))
        return corrupt(err, name, "learner.ignore is not a 32-byte bitmap");
    for (int b = 0; ign && b < 256; b++)
        slr_hashing_ignore(&c->hashing, (unsigned char)b,
                           slr_letter_in((const uint8_t *)ign->via.bin.ptr, (unsigned char)b));
    const msgpack_object *lin = slr_mp_field(L, "ignore_linear");
    if (lin && (lin->type != MSGPACK_OBJECT_BIN ||
                lin->via.bin.size != sizeof c->hashing.ignored_linear))
        return corrupt(err, name, "learner.ignore_linear is not a 32-byte bitmap");
    for (int b = 0; lin && b < 256; b++)
        slr_hashing_ignore_linear(&c->hashing, (unsigned char)b,
                                  slr_letter_in((const uint8_t *)lin->via.bin.ptr, (unsigned char)b));
    return SLR_OK;
}

static slr_status unpack_config(const msgpack_object *L, const char *name, slr_learner_config *c,
                                slr_error *err)
{
    uint64_t bits, period;
    slr_learner_config_defaults(c);
    if (!slr_mp_get_uint(L, "bits", &bits) || bits < SLR_BITS_MIN || bits > SLR_BITS_MAX)
        return corrupt(err, name, "learner.bits missing or out of range");
    slr_hashing_init(&c->hashing, (unsigned)bits);
    const msgpack_object *q = slr_mp_field(L, "quadratic");
    if (!q || q->type != MSGPACK_OBJECT_ARRAY || q->via.array.size > SLR_MAX_QUADRATIC)
        return corrupt(err, name, "learner.quadratic missing or malformed");
    for (uint32_t i = 0; i < q->via.array.size; i++) {
        const msgpack_object *p = &q->via.array.ptr[i];
        if (p->type != MSGPACK_OBJECT_STR || p->via.str.size != 2)
            return corrupt(err, name, "learner.quadratic entry is not a 2-letter string");
        char pair[3] = {p->via.str.ptr[0], p->via.str.ptr[1], 0};
        if (slr_hashing_add_quadratic(&c->hashing, pair, NULL) != SLR_OK)
            return corrupt(err, name, "learner.quadratic entry is invalid");
    }
    slr_status st = unpack_vw_hashing(L, name, c, err);
    if (st != SLR_OK)
        return st;
    char *sched = slr_mp_strdup(slr_mp_field(L, "schedule"));
    st = sched ? slr_schedule_parse(sched, &c->schedule, NULL) : SLR_ERR_ARG;
    free(sched);
    if (st != SLR_OK)
        return corrupt(err, name, "learner.schedule missing or unknown");
    if (!slr_mp_get_double(L, "eta", &c->eta) || !slr_mp_get_double(L, "power_t", &c->power_t) ||
        !slr_mp_get_double(L, "initial_t", &c->initial_t) ||
        !slr_mp_get_double(L, "adagrad_delta", &c->adagrad_delta) ||
        !slr_mp_get_double(L, "l1", &c->l1) || !slr_mp_get_double(L, "l2", &c->l2) ||
        !slr_mp_get_double(L, "tg_threshold", &c->tg_threshold) ||
        !slr_mp_get_uint(L, "tg_period", &period) || period > UINT32_MAX)
        return corrupt(err, name, "a learner hyperparameter is missing or not a number");
    c->tg_period = (uint32_t)period;
    const msgpack_object *eager = slr_mp_field(L, "eager");
    if (!eager || eager->type != MSGPACK_OBJECT_BOOLEAN)
        return corrupt(err, name, "learner.eager missing");
    c->eager = eager->via.boolean;
    const msgpack_object *nc = slr_mp_field(L, "noconstant"); /* optional: --noconstant */
    if (nc && nc->type != MSGPACK_OBJECT_BOOLEAN)
        return corrupt(err, name, "learner.noconstant is not a boolean");
    c->noconstant = nc && nc->via.boolean;
    if (slr_mp_field(L, "decay") && !slr_mp_get_double(L, "decay", &c->decay))
        return corrupt(err, name, "learner.decay is not a number");
    const msgpack_object *opt = slr_mp_field(L, "optimizer"); /* optional: absent = sgd */
    if (opt) {
        char *o = slr_mp_strdup(opt);
        st = o ? slr_optimizer_parse(o, &c->optimizer, NULL) : SLR_ERR_ARG;
        free(o);
        if (st != SLR_OK)
            return corrupt(err, name, "learner.optimizer unknown");
        if (!slr_mp_get_double(L, "ftrl_alpha", &c->ftrl_alpha) ||
            !slr_mp_get_double(L, "ftrl_beta", &c->ftrl_beta))
            return corrupt(err, name, "learner.ftrl_alpha or ftrl_beta missing");
    }
    slr_error verr;
    if (slr_learner_config_validate(c, &verr) != SLR_OK)
        return slr_error_set(err, SLR_ERR_CORRUPT, "%s: invalid hyperparameters: %s", name,
                             verr.msg);
    return SLR_OK;
}

/* Format 1's record (20 bytes: u32 j, f64 w, f32 g2, u32 stamp) as a
 * current one: the float Sum g^2 converts to double exactly. */
static void record_from_v1(unsigned char *r, const unsigned char *v1)
{
    memcpy(r, v1, 12); /* j, w */
    slr_le_put_f64(r + SLR_STATE_G2, (double)slr_le_get_f32(v1 + 12));
    slr_le_put_u32(r + SLR_STATE_STAMP, slr_le_get_u32(v1 + 16));
}

/* The records of the "weights" bin: hashed coordinates only, in increasing
 * order, each with values a learner could hold at this step.  Applied as
 * they are checked: on a refusal the caller destroys the new learner. */
static slr_status unpack_weights(slr_learner *l, const msgpack_object *weights, size_t size,
                                 const char *name, slr_error *err)
{
    const unsigned char *p = (const unsigned char *)weights->via.bin.ptr;
    size_t len = weights->via.bin.size;
    int64_t prev = -1;
    for (size_t at = 0; at < len; at += size) {
        unsigned char v1[SLR_STATE_RECORD];
        const unsigned char *r = p + at;
        if (size != SLR_STATE_RECORD) {
            record_from_v1(v1, r);
            r = v1;
        }
        uint32_t j = slr_le_get_u32(r);
        if ((uint64_t)j >= l->n_slots || (int64_t)j <= prev)
            return corrupt(err, name, "learner.weights has an index out of range or out of order");
        prev = j;
        if (check_record(l, r, SLR_STATE_STAMPS_KEEP) != RECORD_OK)
            return corrupt(err, name, "learner.weights holds a non-finite or inconsistent value");
        apply_record(l, r, SLR_STATE_STAMPS_KEEP);
    }
    return SLR_OK;
}

static slr_status unpack_history(slr_learner *l, const msgpack_object *h, const char *name,
                                 slr_error *err)
{
    if (!l->use_history) {
        if (!h || h->type != MSGPACK_OBJECT_NIL)
            return corrupt(err, name, "learner.history present for a learner that keeps none");
        return SLR_OK;
    }
    uint64_t base;
    const msgpack_object *lp = h ? slr_mp_field(h, "log_p") : NULL,
                         *c = h ? slr_mp_field(h, "c") : NULL;
    if (!h || !slr_mp_get_uint(h, "base", &base) || !lp || !c || lp->type != MSGPACK_OBJECT_BIN ||
        c->type != MSGPACK_OBJECT_BIN || lp->via.bin.size != c->via.bin.size ||
        lp->via.bin.size % 8 || lp->via.bin.size / 8 > l->hist.cap || lp->via.bin.size / 8 == 0 ||
        base != l->epoch || base + lp->via.bin.size / 8 - 1 != l->step)
        return corrupt(err, name, "learner.history missing or inconsistent with the step counter");
    l->hist.base = base;
    l->hist.len = lp->via.bin.size / 8;
    for (size_t i = 0; i < l->hist.len; i++) {
        double lpi = slr_le_get_f64((const unsigned char *)lp->via.bin.ptr + 8 * i);
        double ci = slr_le_get_f64((const unsigned char *)c->via.bin.ptr + 8 * i);
        /* the catch-up searches these sums and relies on their order */
        bool ok = i == 0 ? lpi == 0.0 && ci == 0.0
                         : isfinite(lpi) && isfinite(ci) && lpi <= l->hist.log_p[i - 1] &&
                               ci >= l->hist.c[i - 1];
        if (!ok)
            return corrupt(err, name, "learner.history is not a valid sequence of running sums");
        l->hist.log_p[i] = lpi;
        l->hist.c[i] = ci;
    }
    return SLR_OK;
}

slr_status slr_learner_unpack(const msgpack_object *L, const char *name, slr_learner **out,
                              slr_error *err)
{
    return slr_learner_unpack_version(L, name, SLR_LEARNER_SECTION_VERSION, out, err);
}

slr_status slr_learner_unpack_version(const msgpack_object *L, const char *name, unsigned version,
                                      slr_learner **out, slr_error *err)
{
    const size_t record = version == 1 ? SLR_STATE_RECORD_V1 : SLR_STATE_RECORD;
    *out = NULL;
    slr_learner_config cfg;
    slr_status st = unpack_config(L, name, &cfg, err);
    if (st != SLR_OK)
        return st;
    uint64_t step, epoch;
    if (!slr_mp_get_uint(L, "step", &step) || !slr_mp_get_uint(L, "epoch", &epoch) ||
        epoch > step || step - epoch >= UINT32_MAX)
        return corrupt(err, name, "learner.step/epoch missing or inconsistent");
    const msgpack_object *bias = slr_mp_field(L, "bias");
    if (!bias || bias->type != MSGPACK_OBJECT_ARRAY || bias->via.array.size != 2 ||
        bias->via.array.ptr[0].type != MSGPACK_OBJECT_FLOAT64 ||
        bias->via.array.ptr[1].type != MSGPACK_OBJECT_FLOAT64)
        return corrupt(err, name, "learner.bias missing or malformed");
    const msgpack_object *weights = slr_mp_field(L, "weights");
    if (!weights || weights->type != MSGPACK_OBJECT_BIN || weights->via.bin.size % record != 0)
        return corrupt(err, name, "learner.weights missing or not a whole number of records");

    slr_learner *l;
    slr_error cerr;
    if ((st = slr_learner_create(&l, &cfg, &cerr)) != SLR_OK)
        return slr_error_set(err, st, "%s: %s", name, cerr.msg);
    l->step = step;
    l->epoch = epoch;
    double bias_w = bias->via.array.ptr[0].via.f64, bias_g2 = bias->via.array.ptr[1].via.f64;
    if (!(fabs(bias_w) <= SLR_MAX_ABS_WEIGHT) || !(bias_g2 >= 0 && bias_g2 <= DBL_MAX))
        st = corrupt(err, name, "learner.weights holds a non-finite or inconsistent value");
    else {
        l->slots[l->n_slots].w = bias_w;
        l->slots[l->n_slots].g2 = bias_g2;
        st = unpack_weights(l, weights, record, name, err);
    }
    if (st == SLR_OK)
        st = unpack_history(l, slr_mp_field(L, "history"), name, err);
    if (st == SLR_OK && l->stamps && l->cfg.decay < 1.0) /* the bias decays at every step */
        l->stamps[l->n_slots] = (uint32_t)(l->step - l->epoch);
    if (st != SLR_OK) {
        slr_learner_destroy(l);
        return st;
    }
    *out = l;
    return SLR_OK;
}
