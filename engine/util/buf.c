/* buf.c - the growable byte buffer (include/streamlr/buf.h). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "streamlr/buf.h"

void slr_buf_init(slr_buf *b)
{
    memset(b, 0, sizeof *b);
}

void slr_buf_free(slr_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

void slr_buf_reset(slr_buf *b)
{
    b->len = 0;
}

slr_status slr_buf_reserve(slr_buf *b, size_t extra, slr_error *err)
{
    if (extra <= b->cap - b->len)
        return SLR_OK;
    if (extra > SIZE_MAX / 2 - b->len)
        return slr_error_set(err, SLR_ERR_NOMEM, "output buffer would exceed the address space");
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p)
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory growing an output buffer to %zu bytes", cap);
    b->data = p;
    b->cap = cap;
    return SLR_OK;
}

slr_status slr_buf_append(slr_buf *b, const void *data, size_t n, slr_error *err)
{
    slr_status st = slr_buf_reserve(b, n, err);
    if (st != SLR_OK)
        return st;
    if (n)
        memcpy(b->data + b->len, data, n);
    b->len += n;
    return SLR_OK;
}
