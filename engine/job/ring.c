/* ring.c - single-producer single-consumer ring of job items (see ring.h).
 *
 * Waiting without lost wake-ups: a waiter takes the lock, raises its
 * `asleep` flag (sequentially consistent) and re-checks its condition before
 * sleeping; a side that moves a counter (also sequentially consistent) then
 * reads the flag and, if it is up, broadcasts under the lock.  In the single
 * total order of those accesses either the waiter sees the new counter or
 * the mover sees the flag -- and the lock makes the broadcast come after the
 * waiter is asleep or after it has seen the counter. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "streamlr/learner.h"
#include "ring.h"

/* Pause loops before sleeping (a pause is some tens of ns): long enough to
 * ride out the gap between two items of a busy peer without a system call,
 * short enough not to hold a shared core for long. */
#define SPINS 1000

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

#define RELEASE_BATCH 16 /* releases the consumer publishes at once (shared rings) */

slr_status slr_ring_init(slr_ring *r, uint32_t capacity, const slr_learner *model,
                         uint32_t max_features, bool shared, slr_error *err)
{
    memset(r, 0, sizeof *r);
    r->shared = shared;
    r->items = calloc(capacity, sizeof *r->items);
    if (!r->items || pthread_mutex_init(&r->lock, NULL) != 0) {
        free(r->items);
        r->items = NULL;
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory for the decoding ring");
    }
    pthread_condattr_t attr;
    bool cond_ok = pthread_condattr_init(&attr) == 0;
    if (cond_ok) {
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC); /* timed waits ignore clock jumps */
        cond_ok = pthread_cond_init(&r->wake, &attr) == 0;
        pthread_condattr_destroy(&attr);
    }
    if (!cond_ok) {
        pthread_mutex_destroy(&r->lock);
        free(r->items);
        r->items = NULL;
        return slr_error_set(err, SLR_ERR_NOMEM, "cannot create the decoding ring's condition");
    }
    r->mask = capacity - 1;
    for (uint32_t i = 0; i < capacity; i++)
        slr_job_item_init(&r->items[i], model, max_features);
    atomic_init(&r->tail, 0);
    atomic_init(&r->head, 0);
    atomic_init(&r->flushed, 0);
    r->wake_batch = 1;
    atomic_init(&r->producer_asleep, false);
    atomic_init(&r->consumer_asleep, false);
    atomic_init(&r->cancelled, false);
    return SLR_OK;
}

void slr_ring_free(slr_ring *r)
{
    if (!r->items)
        return;
    for (uint64_t i = 0; i <= r->mask; i++)
        slr_job_item_free(&r->items[i]);
    free(r->items);
    pthread_cond_destroy(&r->wake);
    pthread_mutex_destroy(&r->lock);
    memset(r, 0, sizeof *r);
}

static void wake(slr_ring *r)
{
    pthread_mutex_lock(&r->lock);
    pthread_cond_broadcast(&r->wake);
    pthread_mutex_unlock(&r->lock);
}

/* Spin, then sleep until ready(r) -- or, with timeout_ms >= 0, until that
 * much time has passed; returns ready(r).  The caller's `asleep` flag tells
 * the peer to wake it.  ready() reads the counters with sequentially
 * consistent loads. */
static bool wait_until(slr_ring *r, _Atomic bool *asleep, bool (*ready)(slr_ring *),
                       int timeout_ms)
{
    for (int i = 0; i < SPINS; i++) {
        if (ready(r))
            return true;
        cpu_relax();
    }
    struct timespec until;
    if (timeout_ms >= 0) {
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += timeout_ms / 1000;
        until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&r->lock);
    atomic_store(asleep, true);
    bool ok;
    while (!(ok = ready(r))) {
        if (timeout_ms < 0)
            pthread_cond_wait(&r->wake, &r->lock);
        else if (pthread_cond_timedwait(&r->wake, &r->lock, &until) == ETIMEDOUT)
            break;
    }
    if (!ok)
        ok = ready(r);
    atomic_store(asleep, false);
    pthread_mutex_unlock(&r->lock);
    return ok;
}

/* ------------------------------------------------------------ producer */

/* A producer that found the ring full sleeps until it is half empty, so a
 * busy consumer wakes it once per half ring, not once per item. */
static bool half_empty_or_cancelled(slr_ring *r)
{
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    r->head_seen = atomic_load(&r->head);
    return tail - r->head_seen <= (r->mask + 1) / 2 || atomic_load(&r->cancelled);
}

bool slr_ring_has_room(slr_ring *r)
{
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    if (tail - r->head_seen <= r->mask)
        return true;
    r->head_seen = atomic_load(&r->head);
    return tail - r->head_seen <= r->mask;
}

slr_job_item *slr_ring_claim(slr_ring *r)
{
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    if (tail - r->head_seen > r->mask && !slr_ring_has_room(r))
        wait_until(r, &r->producer_asleep, half_empty_or_cancelled, -1);
    if (atomic_load_explicit(&r->cancelled, memory_order_relaxed))
        return NULL;
    return &r->items[tail & r->mask];
}

void slr_ring_publish(slr_ring *r)
{
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    if (!r->shared) {
        atomic_store_explicit(&r->tail, tail + 1, memory_order_relaxed);
        return;
    }
    atomic_store(&r->tail, tail + 1); /* seq_cst: orders the item and the flag read */
    if (atomic_load(&r->consumer_asleep) &&
        tail + 1 - atomic_load_explicit(&r->head, memory_order_relaxed) >= r->wake_batch)
        wake(r);
}

void slr_ring_flush(slr_ring *r)
{
    if (!r->shared)
        return;
    atomic_store(&r->flushed, atomic_load_explicit(&r->tail, memory_order_relaxed));
    if (atomic_load(&r->consumer_asleep))
        wake(r);
}

void slr_ring_set_wake_batch(slr_ring *r, uint32_t batch)
{
    r->wake_batch = batch >= 1 && batch <= r->mask + 1 ? batch : 1;
}

/* ------------------------------------------------------------ consumer */

static bool published(slr_ring *r)
{
    r->tail_seen = atomic_load(&r->tail);
    return r->tail_seen != r->next;
}

/* a batch, or what the producer flushed */
static bool batch_published(slr_ring *r)
{
    r->tail_seen = atomic_load(&r->tail);
    return r->tail_seen - r->next >= r->wake_batch ||
           (r->tail_seen != r->next && atomic_load(&r->flushed) > r->next);
}

/* Make the consumer's releases visible to the producer, and wake it if it
 * sleeps for room that is now there. */
static void publish_head(slr_ring *r)
{
    r->unpublished = 0;
    atomic_store(&r->head, r->next); /* seq_cst: orders the release and the flag read */
    if (atomic_load(&r->producer_asleep) &&
        atomic_load_explicit(&r->tail, memory_order_relaxed) - r->next <= (r->mask + 1) / 2)
        wake(r);
}

slr_job_item *slr_ring_take(slr_ring *r)
{
    return slr_ring_take_within(r, -1);
}

slr_job_item *slr_ring_take_within(slr_ring *r, int timeout_ms)
{
    if (r->tail_seen == r->next) {
        if (r->shared && r->unpublished)
            publish_head(r); /* the producer may be waiting for these */
        if (!wait_until(r, &r->consumer_asleep, r->wake_batch > 1 ? batch_published : published,
                        timeout_ms) &&
            !published(r))
            return NULL;
    }
    return &r->items[r->next & r->mask];
}

slr_job_item *slr_ring_peek(slr_ring *r, uint32_t k)
{
    if (r->tail_seen - r->next <= k) {
        r->tail_seen = atomic_load_explicit(&r->tail, memory_order_acquire);
        if (r->tail_seen - r->next <= k)
            return NULL;
    }
    return &r->items[(r->next + k) & r->mask];
}

void slr_ring_release(slr_ring *r)
{
    r->next++;
    if (!r->shared)
        atomic_store_explicit(&r->head, r->next, memory_order_relaxed);
    else if (++r->unpublished == RELEASE_BATCH)
        publish_head(r);
}

bool slr_ring_cancelled(slr_ring *r) { return atomic_load(&r->cancelled); }

void slr_ring_cancel(slr_ring *r)
{
    atomic_store(&r->cancelled, true);
    wake(r);
}

/* ------------------------------------------------------------ prefetching */

void slr_job_prefetch(slr_learner *learner, const slr_job_item *features_of,
                      const slr_job_item *weights_of)
{
    if (features_of && features_of->kind == SLR_ITEM_EXAMPLE) {
        const char *f = (const char *)features_of->ex.features;
        size_t bytes = (size_t)features_of->ex.n_features * sizeof *features_of->ex.features;
        for (size_t off = 0; off < bytes; off += SLR_CACHE_LINE)
            __builtin_prefetch(f + off, 0, 3);
    }
    if (weights_of && weights_of->kind == SLR_ITEM_EXAMPLE)
        slr_learner_prefetch(learner, &weights_of->ex);
}

void slr_ring_prefetch_ahead(slr_ring *r, slr_learner *learner)
{
    slr_job_prefetch(learner, slr_ring_peek(r, SLR_PREFETCH_FEATURES),
                     slr_ring_peek(r, SLR_PREFETCH_WEIGHTS));
}
