/* buf.h - a growable byte buffer, for encoders (encode.h), dead letters and
 * anything else that assembles bytes to hand on.  Reused between records,
 * so steady-state writing does not allocate. */
#ifndef STREAMLR_BUF_H
#define STREAMLR_BUF_H

#include <stddef.h>

#include "streamlr/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A growable byte buffer.  Zero-initialised is a valid empty buffer. */
typedef struct slr_buf {
    char *data;
    size_t len, cap;
} slr_buf;

void slr_buf_init(slr_buf *b);
void slr_buf_free(slr_buf *b);
/* Empty the buffer, keeping its memory for reuse. */
void slr_buf_reset(slr_buf *b);
/* Make room for at least `extra` more bytes after len. */
slr_status slr_buf_reserve(slr_buf *b, size_t extra, slr_error *err);
slr_status slr_buf_append(slr_buf *b, const void *data, size_t n, slr_error *err);

#ifdef __cplusplus
}
#endif
#endif
