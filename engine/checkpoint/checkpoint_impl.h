/* checkpoint_impl.h - what checkpoint.c shares with checkpoint_dir.c. */
#ifndef STREAMLR_CHECKPOINT_IMPL_H
#define STREAMLR_CHECKPOINT_IMPL_H

#include "atomic_file.h"
#include "streamlr/checkpoint.h"

/* The whole checkpoint (magic, body, checksum) into an open atomic file.
 * It allocates nothing and takes no lock, so a fork()ed child of a threaded
 * process may run it; errors are sticky in f and reported at commit. */
void slr_checkpoint_write_to(slr_atomic_file *f, const slr_learner *l, const slr_job_state *st);

#endif
