/* atomic_file.h - write a file so that readers see the old or the new
 * content, never a mix, even across a crash or power loss.
 *
 * The content goes to a temporary file beside the target (created with
 * O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600, so nobody can pre-plant a symlink or
 * read it), is fsync'ed, renamed over the target, and the directory is
 * fsync'ed so the rename itself is durable.  Writes are buffered; a running
 * XXH3-64 over every byte lets the caller append a checksum. */
#ifndef STREAMLR_ATOMIC_FILE_H
#define STREAMLR_ATOMIC_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <xxhash.h>

#include "streamlr/error.h"

typedef struct slr_atomic_file {
    int fd;
    char *tmp_path;
    char *final_path;
    char *dir_path; /* the directory to fsync after the rename */
    char *buf;
    size_t len, cap;
    XXH3_state_t *hash;
    int failed_errno; /* first write error, reported at commit */
    const char *failed_step; /* what failed_errno failed at: "writing", "fsync", ... */
} slr_atomic_file;

slr_status slr_atomic_file_open(slr_atomic_file *f, const char *path, slr_error *err);
/* Buffered write (also fed to the running hash).  Errors are sticky and
 * reported by commit, so callers can write without checking each call. */
void slr_atomic_file_write(slr_atomic_file *f, const void *data, size_t len);
uint64_t slr_atomic_file_digest(slr_atomic_file *f);
/* Flush, fsync, rename over the target, fsync the directory. */
slr_status slr_atomic_file_commit(slr_atomic_file *f, slr_error *err);

/* The steps of commit without allocating, freeing or formatting anything,
 * for a fork()ed child of a threaded process: true on success; on failure
 * the temporary file is removed and failed_errno/failed_step say why. */
bool slr_atomic_file_commit_raw(slr_atomic_file *f);
/* The error message for a commit_raw failure. */
slr_status slr_atomic_file_error(const slr_atomic_file *f, int errno_value, const char *step,
                                 slr_error *err);
/* Drop the temporary file (after an error, or instead of commit). */
void slr_atomic_file_abort(slr_atomic_file *f);

#endif
