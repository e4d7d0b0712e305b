/* learner_io.h - the learner's state in and out, owned by the learner.
 *
 * Two levels, the second built on the first:
 *
 *  - Coordinates.  The state of coordinate j (its weight, AdaGrad's Sum g^2
 *    and the step its weight is caught up to) travels as one fixed-width
 *    little-endian record of SLR_STATE_RECORD bytes:
 *        u32 j, f64 w, f64 g2, u32 stamp
 *    (stamp counts steps from the learner's epoch, slr_learner_epoch; 0
 *    from a learner without a lazy penalty, which owes nothing).
 *    slr_learner_state_export writes the records of any list of
 *    coordinates, slr_learner_state_apply sets them; with change tracking on
 *    (slr_learner_track_changes) slr_learner_changed_next enumerates the
 *    coordinates a gradient step touched since the last mark.  This is the
 *    sparse "state of these coordinates" a member of a group publishes and
 *    applies (issue 13): a delta is the records of the coordinates changed
 *    since a mark.  The penalty owed by a coordinate nobody touched is not
 *    in any record until it is caught up (slr_learner_catch_up).
 *
 *  - The whole model.  slr_learner_pack writes the learner's section of a
 *    checkpoint (a msgpack map: hyperparameters, step, epoch, bias, the
 *    records of every coordinate with state as one bin, the penalty
 *    history); slr_learner_unpack reads and validates it.  The checkpoint
 *    (engine/checkpoint) frames it and never looks inside.
 *
 * Nothing here allocates while writing, so a fork()ed child of a threaded
 * process may pack a learner. */
#ifndef STREAMLR_LEARNER_IO_H
#define STREAMLR_LEARNER_IO_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "streamlr/error.h"
#include "streamlr/learner.h"

#define SLR_STATE_RECORD 24
/* where a record's fields are (j is at 0) */
#define SLR_STATE_W 4
#define SLR_STATE_G2 12
#define SLR_STATE_STAMP 20
/* checkpoint format 1's record: u32 j, f64 w, f32 g2, u32 stamp (read only) */
#define SLR_STATE_RECORD_V1 20

/* How slr_learner_state_apply treats the records' stamps. */
typedef enum slr_state_stamps {
    /* stamps are this learner's (its own export, or a checkpoint with the
     * same epoch): kept, and checked not to lie after the current step */
    SLR_STATE_STAMPS_KEEP,
    /* the weights are current as of this learner's step (another learner's
     * export after slr_learner_catch_up): stamps are set to now */
    SLR_STATE_STAMPS_NOW,
} slr_state_stamps;

/* The epoch stamps count from, and the number of coordinates (2^bits; the
 * bias is coordinate slr_learner_bias_index = that number). */
uint64_t slr_learner_epoch(const slr_learner *l);

/* Records of coordinates idx[0..n) (each <= the bias index) into out,
 * n * SLR_STATE_RECORD bytes. */
void slr_learner_state_export(const slr_learner *l, const uint32_t *idx, size_t n,
                              unsigned char *out);
/* Set the coordinates of len / SLR_STATE_RECORD records.  Every record is
 * checked (index in range, |w| <= SLR_MAX_ABS_WEIGHT, 0 <= g2 finite, a
 * stamp not after the current step) before any is applied, so a refused
 * buffer changes nothing.  `what` names the data in the error. */
slr_status slr_learner_state_apply(slr_learner *l, const unsigned char *buf, size_t len,
                                   slr_state_stamps stamps, const char *what, slr_error *err);

/* dst's coordinates idx[0..n) (each <= the bias index) become src's, stamps
 * included: what exporting them from src and applying the records to dst
 * with SLR_STATE_STAMPS_KEEP does, without the records or their checks,
 * which src's own state needs no more than dst's does.  For two learners
 * of one configuration at the same epoch, dst's step not behind src's. */
void slr_learner_copy_coords(slr_learner *dst, const slr_learner *src, const uint32_t *idx,
                             size_t n);

/* l, a copy of src that has since learned only coordinates idx[0..n) (the
 * bias aside), becomes src again: those coordinates, the bias and the step
 * counter are src's.  False, with l unchanged, when that cannot be exact
 * (the two count stamps from different epochs, or l's rates depend on a
 * per-step history): l must then be copied in full. */
bool slr_learner_revert(slr_learner *l, const slr_learner *src, const uint32_t *idx, size_t n);

/* Bring coordinates idx[0..n) up to the current step (pay their owed
 * penalty), so that their records hold their current weights. */
void slr_learner_catch_up(slr_learner *l, const uint32_t *idx, size_t n);

/* The bias's state (its index, 2^bits, does not fit a record's u32 when
 * bits = 32).  set checks the values as state_apply does. */
void slr_learner_bias_get(const slr_learner *l, double *w, double *g2);
slr_status slr_learner_bias_set(slr_learner *l, double w, double g2, const char *what,
                                slr_error *err);

/* Move the step counter n steps on without learning anything: every weight
 * then owes the penalty of those steps, paid lazily as always.  A group's
 * shared model counts the examples of all its members this way (issue 13),
 * so a coordinate pays each group step's penalty once.  Refused (SLR_ERR_ARG)
 * for --eager and for invpow with a penalty, whose catch-up needs a rate per
 * step. */
slr_status slr_learner_advance(slr_learner *l, uint64_t n, slr_error *err);

/* w after the penalty of steps (t0, t1] at the rate of a coordinate whose
 * Sum g^2 is g2 (AdaGrad; the constant rate otherwise): the closed form the
 * lazy catch-up uses. */
double slr_learner_penalized(const slr_learner *l, double w, double g2, uint64_t t0, uint64_t t1);

/* The first coordinate j >= from (the bias included) with any state
 * (w != 0 or g2 != 0), or slr_learner_bias_index + 1 if none. */
uint64_t slr_learner_state_next(const slr_learner *l, uint64_t from);

/* Change tracking: off by default (it costs a bit per touched coordinate
 * per example).  Turning it on, and slr_learner_mark, start an empty set;
 * every learned example adds its coordinates and the bias.  Applying
 * records does not add them (a member must not echo others' deltas). */
slr_status slr_learner_track_changes(slr_learner *l, bool on, slr_error *err);
void slr_learner_mark(slr_learner *l);
/* The first coordinate j >= from changed since the mark, or
 * slr_learner_bias_index + 1 if none (or tracking is off). */
uint64_t slr_learner_changed_next(const slr_learner *l, uint64_t from);

/* The learner's section of a checkpoint, as one msgpack map through pk. */
void slr_learner_pack(msgpack_packer *pk, const slr_learner *l);
/* Read it back: a new learner, or SLR_ERR_CORRUPT with "<name>: <what is
 * wrong>" (hyperparameters, step counters, records, history). */
slr_status slr_learner_unpack(const msgpack_object *section, const char *name, slr_learner **out,
                              slr_error *err);
/* The same for a section of layout `version`: SLR_LEARNER_SECTION_VERSION,
 * or 1 (20-byte records with a float Sum g^2: checkpoint format 1). */
#define SLR_LEARNER_SECTION_VERSION 2
slr_status slr_learner_unpack_version(const msgpack_object *section, const char *name,
                                      unsigned version, slr_learner **out, slr_error *err);

#endif
