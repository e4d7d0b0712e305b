/* error.h - how libstreamlr reports failure.
 *
 * Every fallible call returns an slr_status (0 on success) and, when given a
 * non-NULL slr_error, fills it with a message a user can act on: what failed,
 * where (file, line, byte offset) and why.  The library never prints on its
 * own behalf for errors and never calls exit(); the caller decides. */
#ifndef STREAMLR_ERROR_H
#define STREAMLR_ERROR_H

#include "streamlr/export.h"
#include <stdarg.h>
#include <stddef.h>

SLR_BEGIN_DECLS

typedef enum slr_status {
    SLR_OK = 0,
    SLR_ERR_ARG = -1,       /* a caller-supplied setting is invalid */
    SLR_ERR_NOMEM = -2,     /* an allocation failed */
    SLR_ERR_IO = -3,        /* read/write/open/fsync failed */
    SLR_ERR_BAD_INPUT = -4, /* an example could not be decoded or is out of range */
    SLR_ERR_CORRUPT = -5,   /* a checkpoint failed its checksum or structure checks */
    SLR_ERR_MISMATCH = -6,  /* a checkpoint does not fit the requested job */
    SLR_ERR_NOT_FOUND = -7, /* e.g. no checkpoint in a directory */
    SLR_ERR_KAFKA = -8,     /* librdkafka reported an error */
    SLR_ERR_STOPPED = -9,   /* a run was stopped on request (signal, --strict) */
} slr_status;

#define SLR_ERROR_MSG_MAX 512

typedef struct slr_error {
    slr_status code;
    char msg[SLR_ERROR_MSG_MAX];
} slr_error;

/* Set err (if non-NULL) and return code, so callers can write
 * `return slr_error_set(err, SLR_ERR_ARG, "...", ...);`. */
slr_status slr_error_set(slr_error *err, slr_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
slr_status slr_error_vset(slr_error *err, slr_status code, const char *fmt, va_list ap);

/* Prefix an existing message with context ("loading model.slr: ..."). */
slr_status slr_error_prefix(slr_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void slr_error_clear(slr_error *err);

/* A short fixed name for a status code ("bad input", "i/o error", ...). */
const char *slr_status_name(slr_status code);

SLR_END_DECLS
#endif
