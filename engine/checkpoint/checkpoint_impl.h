/* checkpoint_impl.h - what the checkpoint writer (checkpoint_write.c), reader
 * (checkpoint.c) and directory (checkpoint_dir.c) share. */
#ifndef STREAMLR_CHECKPOINT_IMPL_H
#define STREAMLR_CHECKPOINT_IMPL_H

#include "atomic_file.h"
#include "streamlr/checkpoint.h"

/* The first bytes of every checkpoint file. */
static const char SLR_CHECKPOINT_MAGIC[8] = {'S', 'T', 'R', 'E', 'A', 'M', 'L', 'R'};

/* Fixed-width little-endian records of the bulk fields. */
#define WINDOW_RECORD 25    /* f64 p, f64 weight, f64 loss, u8 y */
#define HISTOGRAM_RECORD 20 /* u32 bin, f64 positive weight, f64 negative weight */

#define NAME_HEADER 14          /* u64 key, u32 index, u16 length, then the bytes */
#define RECORD_MAX (NAME_HEADER + SLR_NAME_MAX)

/* The whole checkpoint (magic, body, checksum) into an open atomic file.
 * It allocates nothing and takes no lock, so a fork()ed child of a threaded
 * process may run it; errors are sticky in f and reported at commit. */
void slr_checkpoint_write_to(slr_atomic_file *f, const slr_learner *l, const slr_job_state *st);

/* Misconfiguration checks, for before the first example: can checkpoints
 * be written into dir (made if missing), and can a file be written at path
 * (`what` names it in the message: "the model")? */
slr_status slr_checkpoint_dir_check(const char *dir, slr_error *err);
slr_status slr_checkpoint_path_check(const char *path, const char *what, slr_error *err);

#endif
