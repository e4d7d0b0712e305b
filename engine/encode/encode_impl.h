/* encode_impl.h - what encode.c shares with the per-format encoders. */
#ifndef STREAMLR_ENCODE_IMPL_H
#define STREAMLR_ENCODE_IMPL_H

#include "streamlr/encode.h"

/* encode_vw.c */
slr_status slr_encode_vw(slr_buf *out, const slr_raw_example *raw, slr_error *err);

#endif
