/* streamlr.h - the whole public API of libstreamlr in one include.
 *
 * Each concept has its own header under streamlr/ (error, source, decode,
 * example, learner, metrics, checkpoint, train, kafka, predict, ...); this
 * one includes them all, for an embedder who would rather not choose.
 * tests/api.test checks that it names every public header. */
#ifndef STREAMLR_H
#define STREAMLR_H

#include "streamlr/bad_reason.h"
#include "streamlr/buf.h"
#include "streamlr/checkpoint.h"
#include "streamlr/dead_letter.h"
#include "streamlr/decode.h"
#include "streamlr/encode.h"
#include "streamlr/error.h"
#include "streamlr/example.h"
#include "streamlr/export.h"
#include "streamlr/kafka.h"
#include "streamlr/learner.h"
#include "streamlr/metrics.h"
#include "streamlr/metrics_server.h"
#include "streamlr/names.h"
#include "streamlr/position.h"
#include "streamlr/predict.h"
#include "streamlr/raw_example.h"
#include "streamlr/source.h"
#include "streamlr/sync.h"
#include "streamlr/sync_topic.h"
#include "streamlr/train.h"

#endif
