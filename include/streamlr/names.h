/* names.h - a name -> weight index map for debugging (VW's --invert_hash).
 *
 * Hashing forgets names; to read a model one wants them back.  With
 * `train --keep-names` the job records, for every feature it learns from,
 * the name it came from ("ns^name", "name" in the default namespace, and
 * "ns^a*ns^b" for a -q pair) and its weight index.  Several names may share
 * an index (hash collisions); all are kept.  The map is stored in the model
 * and checkpoints, and `inspect` / `export --format json` show it.
 *
 * Cost: nothing unless enabled (the job tests one pointer).  When enabled,
 * a feature already known costs one lookup of its 64-bit hash, which the
 * example already holds; only a new name is formatted and copied.  Memory is
 * bounded: at most `max_names` names (each at most SLR_NAME_MAX bytes), about
 * 24 + length bytes per name plus a table of 2 slots x 4 bytes per name;
 * past the bound new names are counted as dropped, not kept. */
#ifndef STREAMLR_NAMES_H
#define STREAMLR_NAMES_H

#include <stdbool.h>
#include "streamlr/export.h"
#include <stddef.h>
#include <stdint.h>

#include "streamlr/decode.h"
#include "streamlr/error.h"
#include "streamlr/example.h"

SLR_BEGIN_DECLS

#define SLR_NAMES_MAX_DEFAULT 1000000u
#define SLR_NAME_MAX 255 /* longer names are cut (the hash is still the full name's) */
#define SLR_BIAS_NAME "Constant" /* as VW calls it */

typedef struct slr_names slr_names;

slr_status slr_names_create(slr_names **out, uint64_t max_names, slr_error *err);
void slr_names_destroy(slr_names *n);

/* Record the names of ex's features; ex must have been built from raw by
 * slr_example_from_raw() (so its features line up with raw's nonzero ones). */
void slr_names_record(slr_names *n, const slr_raw_example *raw, const slr_example *ex);

/* Add one name for a feature with 64-bit hash `key` at weight `index`
 * (ignored if key is known; counted as dropped if full). */
void slr_names_add(slr_names *n, uint64_t key, uint32_t index, const char *name, size_t len);

uint64_t slr_names_count(const slr_names *n);
uint64_t slr_names_max(const slr_names *n);
/* Feature occurrences whose name was not kept because the map was full. */
uint64_t slr_names_dropped(const slr_names *n);
void slr_names_set_dropped(slr_names *n, uint64_t dropped);
/* Let the map hold up to max_names (never below what it holds). */
void slr_names_set_max(slr_names *n, uint64_t max_names);

typedef struct slr_name_ref {
    uint64_t key;
    uint32_t index;
    uint32_t len;
    const char *name; /* not NUL-terminated; valid while the map is unchanged */
} slr_name_ref;

/* The name of the feature with 64-bit hash `key` (the first one recorded),
 * if it was kept. */
bool slr_names_lookup(const slr_names *n, uint64_t key, slr_name_ref *out);

/* The i-th name in the order names were first seen, 0 <= i < count. */
slr_name_ref slr_names_at(const slr_names *n, uint64_t i);

/* All names sorted by index (then first seen), in a new array the caller
 * frees; NULL on out of memory (or when empty, with *count 0). */
slr_name_ref *slr_names_by_index(const slr_names *n, uint64_t *count);

SLR_END_DECLS
#endif
