/* source.h - where bytes come from when replaying an event log from files.
 *
 * The file source hands out a window of unread bytes of the current file,
 * read in large chunks (no syscall per record), and tracks the exact position
 * of the window's start (file index, byte offset, line), which is what a
 * checkpoint records and what --resume seeks back to.  Framing into records is
 * the decoder's business (decode.h); the source only grows the window when a
 * record does not fit.  "-" reads standard input (resume then skips forward
 * by reading, since a pipe cannot seek). */
#ifndef STREAMLR_SOURCE_H
#define STREAMLR_SOURCE_H

#include "streamlr/export.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "streamlr/error.h"
#include "streamlr/position.h"

SLR_BEGIN_DECLS

typedef struct slr_file_source slr_file_source;

/* count_lines: keep the line number (text formats). */
slr_status slr_file_source_open(slr_file_source **out, const char *const *paths, uint32_t n,
                                bool count_lines, slr_error *err);
void slr_file_source_close(slr_file_source *src);
/* Count lines or not from now on: for a format told from the first bytes,
 * which the source was opened to read (nothing consumed yet). */
void slr_file_source_count_lines(slr_file_source *src, bool count_lines);

/* The unread bytes of the current file that are in memory.  *at_end is true
 * when they run to the end of that file. */
void slr_file_source_window(const slr_file_source *src, const char **buf, size_t *len,
                            bool *at_end);

/* Read more of the current file into the window (growing the buffer if the
 * window already fills it).  Call when the decoder needs more bytes. */
slr_status slr_file_source_fill(slr_file_source *src, slr_error *err);

/* Wait up to timeout_ms for the current file to have bytes to read; true
 * when a fill would not block (always for a regular file).  For a pipe or
 * FIFO that is being written slowly, so the caller can do other work (report
 * metrics, notice a stop request) instead of sleeping in read(). */
bool slr_file_source_wait(const slr_file_source *src, int timeout_ms);

/* Drop n bytes from the front of the window. */
void slr_file_source_consume(slr_file_source *src, size_t n);

/* Move to the next file once the window is empty at the end of the current
 * one.  Returns false when there is no next file. */
bool slr_file_source_next_file(slr_file_source *src, slr_error *err, slr_status *st);

/* Position of the window's start (records is left to the caller). */
void slr_file_source_position(const slr_file_source *src, slr_file_position *pos);

/* Continue from pos (file_index, offset, line). */
slr_status slr_file_source_seek(slr_file_source *src, const slr_file_position *pos,
                                slr_error *err);

const char *slr_file_source_path(const slr_file_source *src);
bool slr_file_source_done(const slr_file_source *src);

SLR_END_DECLS
#endif
