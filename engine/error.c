/* error.c - filling slr_error messages (see include/streamlr/error.h). */
#include <stdio.h>
#include <string.h>

#include "streamlr/error.h"

slr_status slr_error_vset(slr_error *err, slr_status code, const char *fmt, va_list ap)
{
    if (err) {
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        /* Messages quote input bytes; keep them one printable line so a
         * hostile record cannot forge log lines or move the terminal. */
        for (char *c = err->msg; *c; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f)
                *c = '?';
    }
    return code;
}

slr_status slr_error_set(slr_error *err, slr_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    slr_error_vset(err, code, fmt, ap);
    va_end(ap);
    return code;
}

slr_status slr_error_prefix(slr_error *err, const char *fmt, ...)
{
    if (!err)
        return SLR_ERR_ARG;
    /* Build "prefix: old" in a buffer that fits both, then cut to size: a
     * long prefix may truncate the message, which is better than losing it. */
    char joined[2 * SLR_ERROR_MSG_MAX + 2];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(joined, SLR_ERROR_MSG_MAX, fmt, ap);
    va_end(ap);
    size_t used = n < 0 ? 0 : (size_t)n < SLR_ERROR_MSG_MAX ? (size_t)n : SLR_ERROR_MSG_MAX - 1;
    memcpy(joined + used, ": ", 2);
    memcpy(joined + used + 2, err->msg, strnlen(err->msg, SLR_ERROR_MSG_MAX - 1) + 1);
    memcpy(err->msg, joined, SLR_ERROR_MSG_MAX - 1);
    err->msg[SLR_ERROR_MSG_MAX - 1] = '\0';
    return err->code;
}

void slr_error_clear(slr_error *err)
{
    if (err) {
        err->code = SLR_OK;
        err->msg[0] = '\0';
    }
}

const char *slr_status_name(slr_status code)
{
    switch (code) {
    case SLR_OK: return "ok";
    case SLR_ERR_ARG: return "invalid argument";
    case SLR_ERR_NOMEM: return "out of memory";
    case SLR_ERR_IO: return "i/o error";
    case SLR_ERR_BAD_INPUT: return "bad input";
    case SLR_ERR_CORRUPT: return "corrupt checkpoint";
    case SLR_ERR_MISMATCH: return "checkpoint mismatch";
    case SLR_ERR_NOT_FOUND: return "not found";
    case SLR_ERR_KAFKA: return "kafka error";
    case SLR_ERR_STOPPED: return "stopped";
    }
    return "unknown error";
}
