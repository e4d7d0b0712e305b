/* c11threads.c - C11 <threads.h> on top of pthreads, preloaded under
 * ThreadSanitizer only (.ci/run).
 *
 * librdkafka 2.0 uses C11 thrd_* / mtx_* / cnd_*, which glibc implements by
 * calling its pthread internals directly: TSan's interceptors never see
 * them, so every lock librdkafka takes looks like no synchronisation and
 * its threads look like strangers (false reports, then crashes).  Routing
 * the C11 calls through the public pthread functions, which TSan does
 * intercept, fixes that.  glibc's C11 types are its pthread types. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <threads.h>

typedef struct start {
    thrd_start_t fn;
    void *arg;
} start;

static void *trampoline(void *p)
{
    start s = *(start *)p;
    free(p);
    return (void *)(intptr_t)s.fn(s.arg);
}

static int result(int r)
{
    return r == 0 ? thrd_success : r == ENOMEM ? thrd_nomem : r == EBUSY ? thrd_busy
         : r == ETIMEDOUT ? thrd_timedout : thrd_error;
}

int thrd_create(thrd_t *t, thrd_start_t fn, void *arg)
{
    start *s = malloc(sizeof *s);
    if (!s)
        return thrd_nomem;
    *s = (start){fn, arg};
    int r = pthread_create((pthread_t *)t, NULL, trampoline, s);
    if (r)
        free(s);
    return result(r);
}

int thrd_join(thrd_t t, int *res)
{
    void *v;
    int r = pthread_join((pthread_t)t, &v);
    if (!r && res)
        *res = (int)(intptr_t)v;
    return result(r);
}

int thrd_detach(thrd_t t) { return result(pthread_detach((pthread_t)t)); }
thrd_t thrd_current(void) { return (thrd_t)pthread_self(); }
int thrd_equal(thrd_t a, thrd_t b) { return pthread_equal((pthread_t)a, (pthread_t)b); }
_Noreturn void thrd_exit(int res) { pthread_exit((void *)(intptr_t)res); }

int mtx_init(mtx_t *m, int type)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    if (type & mtx_recursive)
        pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    int r = pthread_mutex_init((pthread_mutex_t *)m, &a);
    pthread_mutexattr_destroy(&a);
    return result(r);
}
int mtx_lock(mtx_t *m) { return result(pthread_mutex_lock((pthread_mutex_t *)m)); }
int mtx_trylock(mtx_t *m) { return result(pthread_mutex_trylock((pthread_mutex_t *)m)); }
int mtx_timedlock(mtx_t *restrict m, const struct timespec *restrict ts)
{
    return result(pthread_mutex_timedlock((pthread_mutex_t *)m, ts));
}
int mtx_unlock(mtx_t *m) { return result(pthread_mutex_unlock((pthread_mutex_t *)m)); }
void mtx_destroy(mtx_t *m) { pthread_mutex_destroy((pthread_mutex_t *)m); }

int cnd_init(cnd_t *c) { return result(pthread_cond_init((pthread_cond_t *)c, NULL)); }
int cnd_signal(cnd_t *c) { return result(pthread_cond_signal((pthread_cond_t *)c)); }
int cnd_broadcast(cnd_t *c) { return result(pthread_cond_broadcast((pthread_cond_t *)c)); }
int cnd_wait(cnd_t *c, mtx_t *m)
{
    return result(pthread_cond_wait((pthread_cond_t *)c, (pthread_mutex_t *)m));
}
int cnd_timedwait(cnd_t *restrict c, mtx_t *restrict m, const struct timespec *restrict ts)
{
    return result(pthread_cond_timedwait((pthread_cond_t *)c, (pthread_mutex_t *)m, ts));
}
void cnd_destroy(cnd_t *c) { pthread_cond_destroy((pthread_cond_t *)c); }

int tss_create(tss_t *k, tss_dtor_t dtor) { return result(pthread_key_create((pthread_key_t *)k, dtor)); }
void *tss_get(tss_t k) { return pthread_getspecific((pthread_key_t)k); }
int tss_set(tss_t k, void *v) { return result(pthread_setspecific((pthread_key_t)k, v)); }
void tss_delete(tss_t k) { pthread_key_delete((pthread_key_t)k); }
void call_once(once_flag *f, void (*fn)(void)) { pthread_once((pthread_once_t *)f, fn); }
