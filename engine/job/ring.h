/* ring.h - the hand-off between the decoding stage and the learning stage: a
 * single-producer, single-consumer ring of job items.
 *
 * The producer claims the next free item, fills it (slr_job_read) and
 * publishes it; the consumer takes items in order, learns them and releases
 * them.  Items are allocated once and reused, so nothing is allocated per
 * record.  The two counters live on separate cache lines and each side
 * re-reads the other's only when its cached copy says it must wait, so a
 * busy ring costs no shared-line traffic per item beyond the items
 * themselves.  The consumer publishes its releases sixteen at a time (each
 * publication is a full memory barrier, which would otherwise wait for the
 * learner's stores to drain at every item).  A side that must wait spins
 * briefly, then sleeps on a
 * condition variable (the machine may have fewer free cores than threads);
 * a producer that found the ring full is woken only once it is half empty,
 * so a consumer that is the slower stage makes a system call per half ring,
 * not per item.
 *
 * The consumer may also look ahead at published items (slr_ring_peek) to
 * prefetch the weights they will touch. */
#ifndef STREAMLR_RING_H
#define STREAMLR_RING_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "job.h"

#define SLR_CACHE_LINE 64

typedef struct slr_ring {
    slr_job_item *items;
    uint64_t mask; /* capacity - 1, capacity a power of two */

    _Alignas(SLR_CACHE_LINE) _Atomic uint64_t tail; /* items published (producer) */
    uint64_t head_seen;                              /* producer's copy of head */

    _Alignas(SLR_CACHE_LINE) _Atomic uint64_t head; /* items released, as published */
    uint64_t next;                                   /* consumer: its own count of releases */
    uint32_t unpublished;                            /* ... not yet in head */
    uint64_t tail_seen;                              /* consumer's copy of tail */
    uint32_t wake_batch; /* a waiting consumer is woken once this many items wait ... */
    _Alignas(SLR_CACHE_LINE) _Atomic uint64_t flushed; /* ... or the producer flushed up to here */

    _Alignas(SLR_CACHE_LINE) _Atomic bool producer_asleep; /* waiting for room */
    _Atomic bool consumer_asleep;                           /* waiting for an item */
    _Atomic bool cancelled;                                 /* the consumer has stopped */
    bool shared; /* producer and consumer are different threads */
    pthread_mutex_t lock;
    pthread_cond_t wake;
} slr_ring;

/* capacity: a power of two >= 2.  Items are made with slr_job_item_init
 * (model, max_features).  `shared`: producer and consumer run on different
 * threads (otherwise the counters need no ordering and nobody ever waits). */
slr_status slr_ring_init(slr_ring *r, uint32_t capacity, const slr_learner *model,
                         uint32_t max_features, bool shared, slr_error *err);
void slr_ring_free(slr_ring *r);

/* Producer: the next item to fill, waiting for room; NULL once cancelled. */
slr_job_item *slr_ring_claim(slr_ring *r);
/* Producer: hand the claimed item to the consumer. */
void slr_ring_publish(slr_ring *r);
/* Producer, without waiting: is there room for another item? */
bool slr_ring_has_room(slr_ring *r);
/* Producer: wake a consumer waiting for a batch: the producer is about to
 * wait for input, or has published its last item. */
void slr_ring_flush(slr_ring *r);
/* Producer: has the consumer stopped? */
bool slr_ring_cancelled(slr_ring *r);

/* Consumer: the oldest published item, waiting for one. */
slr_job_item *slr_ring_take(slr_ring *r);
/* The same, waiting at most timeout_ms: NULL if none came. */
slr_job_item *slr_ring_take_within(slr_ring *r, int timeout_ms);
/* Consumer: the item k places after the oldest, if already published. */
slr_job_item *slr_ring_peek(slr_ring *r, uint32_t k);
/* Consumer: done with the oldest item. */
void slr_ring_release(slr_ring *r);
/* Before use: a consumer that found the ring empty waits until `batch`
 * items are there (or the producer flushes) rather than being woken for
 * each one -- for a consumer much faster than its producer (scoring), where
 * a wake per item costs more than the item.  Default 1. */
void slr_ring_set_wake_batch(slr_ring *r, uint32_t batch);
/* Consumer: stop the producer (it sees NULL from slr_ring_claim). */
void slr_ring_cancel(slr_ring *r);
/* Items this many places ahead of the one being scored or learned have
 * their feature lists, and their weight slots, fetched into the cache
 * (slr_job_prefetch), so that the memory latency overlaps the work between. */
#define SLR_PREFETCH_FEATURES 4
#define SLR_PREFETCH_WEIGHTS 2
/* Either may be NULL (nothing that far ahead). */
void slr_job_prefetch(slr_learner *learner, const slr_job_item *features_of,
                      const slr_job_item *weights_of);

/* Consumer, before learning the oldest item: fetch the feature lists and
 * weight slots of the items a few places behind it, so that their memory
 * latency overlaps this item's learning. */
void slr_ring_prefetch_ahead(slr_ring *r, slr_learner *learner);

#endif
