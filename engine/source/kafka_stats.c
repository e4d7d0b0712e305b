/* kafka_stats.c - a minimal JSON walker for librdkafka statistics (see
 * kafka_stats.h).  Recursive descent over objects, arrays, strings, numbers
 * and literals, keeping the path of object keys; numbers are reported only
 * at topics.<T>.partitions.<P>.<field>. */
#include <stdlib.h>
#include <string.h>

#include "kafka_stats.h"

#define MAX_DEPTH 32

typedef struct walker {
    const char *p, *end;
    const char *key[MAX_DEPTH];
    size_t key_len[MAX_DEPTH];
    int depth;
    slr_kafka_stats_fn fn;
    void *ctx;
} walker;

static bool value(walker *w);

static void skip_space(walker *w)
{
    while (w->p < w->end && (*w->p == ' ' || *w->p == '\n' || *w->p == '\r' || *w->p == '\t'))
        w->p++;
}

static bool key_is(const walker *w, int i, const char *s)
{
    return w->key_len[i] == strlen(s) && !memcmp(w->key[i], s, w->key_len[i]);
}

static bool string(walker *w, const char **s, size_t *n)
{
    if (w->p >= w->end || *w->p != '"')
        return false;
    const char *start = ++w->p;
    while (w->p < w->end && *w->p != '"') {
        if (*w->p == '\\')
            w->p++;
        w->p++;
    }
    if (w->p >= w->end)
        return false;
    *s = start;
    *n = (size_t)(w->p - start);
    w->p++;
    return true;
}

/* topics.<T>.partitions.<P>.<field> */
static void report(walker *w, const char *num, size_t n)
{
    if (w->depth != 5 || !key_is(w, 0, "topics") || !key_is(w, 2, "partitions"))
        return;
    char buf[32], field[32];
    if (n >= sizeof buf || w->key_len[3] >= sizeof buf || w->key_len[4] >= sizeof field)
        return;
    memcpy(field, w->key[4], w->key_len[4]);
    field[w->key_len[4]] = '\0';
    memcpy(buf, w->key[3], w->key_len[3]);
    buf[w->key_len[3]] = '\0';
    char *e;
    long part = strtol(buf, &e, 10);
    if (*e || part < 0 || part > INT32_MAX) /* "-1" is librdkafka's internal partition */
        return;
    memcpy(buf, num, n);
    buf[n] = '\0';
    long long v = strtoll(buf, &e, 10);
    if (*e) /* not an integer */
        return;
    w->fn(w->ctx, w->key[1], w->key_len[1], (int32_t)part, field, (int64_t)v);
}

static bool number(walker *w)
{
    const char *start = w->p;
    while (w->p < w->end && (strchr("+-.eE", *w->p) || (*w->p >= '0' && *w->p <= '9')))
        w->p++;
    if (w->p == start)
        return false;
    report(w, start, (size_t)(w->p - start));
    return true;
}

static bool literal(walker *w, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(w->end - w->p) < n || memcmp(w->p, word, n))
        return false;
    w->p += n;
    return true;
}

static bool members(walker *w, char close, bool keyed)
{
    w->p++;
    skip_space(w);
    if (w->p < w->end && *w->p == close) {
        w->p++;
        return true;
    }
    if (w->depth >= MAX_DEPTH)
        return false;
    for (;;) {
        skip_space(w);
        if (keyed) {
            if (!string(w, &w->key[w->depth], &w->key_len[w->depth]))
                return false;
            skip_space(w);
            if (w->p >= w->end || *w->p++ != ':')
                return false;
        } else {
            w->key[w->depth] = "";
            w->key_len[w->depth] = 0;
        }
        w->depth++;
        bool ok = value(w);
        w->depth--;
        if (!ok)
            return false;
        skip_space(w);
        if (w->p >= w->end)
            return false;
        if (*w->p == close) {
            w->p++;
            return true;
        }
        if (*w->p++ != ',')
            return false;
    }
}

static bool value(walker *w)
{
    skip_space(w);
    if (w->p >= w->end)
        return false;
    const char *s;
    size_t n;
    switch (*w->p) {
    case '{': return members(w, '}', true);
    case '[': return members(w, ']', false);
    case '"': return string(w, &s, &n);
    case 't': return literal(w, "true");
    case 'f': return literal(w, "false");
    case 'n': return literal(w, "null");
    default: return number(w);
    }
}

bool slr_kafka_stats_walk(const char *json, size_t len, slr_kafka_stats_fn fn, void *ctx)
{
    walker w = {.p = json, .end = json + len, .fn = fn, .ctx = ctx};
    if (!value(&w))
        return false;
    skip_space(&w);
    return w.p == w.end;
}
