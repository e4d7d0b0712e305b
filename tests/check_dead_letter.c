/* check_dead_letter.c - records that cannot be learned from are kept, exactly.
 *
 * The file sink's JSON lines (base64 data, escaping, mode 0600, resume by
 * truncation), and end to end: a VW stream with about 1% of its lines
 * corrupted in every way train rejects learns exactly the good lines (the
 * model is bit-identical to one trained on the good lines alone) and
 * dead-letters exactly the others, in order, with their bytes, line, offset
 * and reason -- also when the job is killed at arbitrary points and resumed
 * each time.  The same stream with the Kafka sink (the embedded mock
 * cluster): the topic holds every bad line with its reason and position, and
 * a sink whose broker goes down stops the checkpoints from moving on. */
#include <check.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "job/job.h"
#include "kafka_testutil.h"
#include "streamlr/checkpoint.h"
#include "streamlr/dead_letter.h"
#include "streamlr/train.h"
#include "testutil.h"

/* ------------------------------------------------------------ reading dead letters */

typedef struct letter {
    char reason[32];
    uint64_t offset, line;
    bool truncated;
    char *data;
    size_t len;
} letter;

typedef struct letters {
    size_t n;
    letter *v;
} letters;

static int b64(char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

static const char *json_field(const char *line, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(line, pat);
    return p ? p + strlen(pat) : NULL;
}

/* Parse the dead-letter file written by the sink (its own fixed layout). */
static letters read_letters(const char *path)
{
    letters out = {0, NULL};
    FILE *f = fopen(path, "r");
    if (!f)
        return out;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0) {
        ck_assert_msg(line[n - 1] == '\n' && line[0] == '{', "not a JSON line: %s", line);
        out.v = realloc(out.v, (out.n + 1) * sizeof *out.v);
        letter *l = &out.v[out.n++];
        memset(l, 0, sizeof *l);
        const char *r = json_field(line, "reason");
        ck_assert_ptr_nonnull(r);
        sscanf(r, "\"%31[a-z_]\"", l->reason);
        const char *o = json_field(line, "offset"), *ln = json_field(line, "line");
        ck_assert_ptr_nonnull(o);
        l->offset = strtoull(o, NULL, 10);
        l->line = ln ? strtoull(ln, NULL, 10) : 0;
        l->truncated = json_field(line, "truncated") != NULL;
        const char *d = json_field(line, "data"), *len = json_field(line, "length");
        ck_assert(d && *d == '"' && len);
        d++;
        l->data = malloc(strlen(d));
        uint32_t acc = 0;
        int bits = 0;
        for (; *d != '"'; d++) {
            if (*d == '=')
                continue;
            int v = b64(*d);
            ck_assert_int_ge(v, 0);
            acc = acc << 6 | (uint32_t)v;
            if ((bits += 6) >= 8) {
                bits -= 8;
                l->data[l->len++] = (char)(acc >> bits);
            }
        }
        ck_assert_uint_eq(l->len, strtoull(len, NULL, 10));
    }
    free(line);
    fclose(f);
    return out;
}

static void free_letters(letters *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].data);
    free(l->v);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* ------------------------------------------------------------ the file sink */

START_TEST(file_sink_writes_exact_json_lines)
{
    char *dir = test_mkdtemp("dl");
    char path[4200];
    snprintf(path, sizeof path, "%s/dead.jsonl", dir);
    slr_dead_letter_sink *s;
    slr_error err;
    ck_assert_int_eq(slr_dead_letter_file_open(&s, path, &err), SLR_OK);
    ck_assert_str_eq(s->kind, "file");
    ck_assert_str_eq(s->name, path);
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert_uint_eq(sb.st_mode & 0777, 0600);

    /* every byte value, quotes and invalid UTF-8 in the message and source */
    char data[256];
    for (int i = 0; i < 256; i++)
        data[i] = (char)i;
    slr_dead_letter dl = {.reason = SLR_BAD_VALUE, .error = "feature \"\xff\" \\ \n bad é",
                          .source = "in\tput.vw", .offset = 12, .line = 3, .format = "vw",
                          .data = data, .len = 256};
    ck_assert_int_eq(s->put(s, &dl, &err), SLR_OK);
    dl = (slr_dead_letter){.reason = SLR_BAD_JUNK, .error = "x", .source = "t[2]", .offset = 99,
                           .is_message = true, .format = "msgpack", .data = "\xc1", .len = 1};
    ck_assert_int_eq(s->put(s, &dl, &err), SLR_OK);
    dl = (slr_dead_letter){.reason = SLR_BAD_TOO_LARGE, .error = "", .source = "a", .data = "ab",
                           .len = 2, .truncated = true, .format = "vw"};
    ck_assert_int_eq(s->put(s, &dl, &err), SLR_OK);
    uint64_t pos;
    ck_assert_int_eq(s->sync(s, &pos, &err), SLR_OK);
    size_t len;
    char *text = slurp(path, &len);
    ck_assert_uint_eq(pos, len);
    const char *want =
        /* jansson's escapes (\n, \t; U+FFFD as its UTF-8 bytes): the same JSON
         * values as the hand-written \u000a, \u0009, \ufffd of before */
        "{\"reason\":\"value\",\"error\":\"feature \\\"\xef\xbf\xbd\\\" \\\\ \\n bad é\","
        "\"source\":\"in\\tput.vw\",\"offset\":12,\"line\":3,\"format\":\"vw\",\"length\":256,"
        "\"data\":\"";
    ck_assert_msg(!strncmp(text, want, strlen(want)), "got %.*s", 200, text);
    ck_assert_ptr_nonnull(strstr(text, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4v"));
    ck_assert_ptr_nonnull(strstr(text, "\n{\"reason\":\"junk\",\"error\":\"x\",\"source\":\"t[2]\","
                                       "\"offset\":99,\"message\":true,\"format\":\"msgpack\","
                                       "\"length\":1,\"data\":\"wQ==\"}\n"));
    ck_assert_ptr_nonnull(strstr(text, "\"length\":2,\"truncated\":true,\"data\":\"YWI=\"}\n"));
    letters got = read_letters(path);
    ck_assert_uint_eq(got.n, 3);
    ck_assert(got.v[0].len == 256 && !memcmp(got.v[0].data, data, 256));
    free_letters(&got);
    free(text);

    /* resume: what came after the checkpoint's position goes; less is an error */
    dl = (slr_dead_letter){.reason = SLR_BAD_LABEL, .error = "late", .source = "a", .data = "2 |a\n",
                           .len = 5, .format = "vw"};
    ck_assert_int_eq(s->put(s, &dl, &err), SLR_OK);
    s->close(s); /* a crash after the write, before the next checkpoint */
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert_uint_gt((uint64_t)sb.st_size, pos);
    ck_assert_int_eq(slr_dead_letter_file_open(&s, path, &err), SLR_OK);
    uint64_t dropped;
    ck_assert_int_eq(s->resume(s, pos, &dropped, &err), SLR_OK);
    ck_assert_uint_eq(dropped, (uint64_t)sb.st_size - pos);
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert_uint_eq((uint64_t)sb.st_size, pos);
    ck_assert_int_eq(s->resume(s, pos + 1, &dropped, &err), SLR_ERR_MISMATCH);
    ck_assert_ptr_nonnull(strstr(err.msg, "truncated or replaced"));
    s->close(s);

    /* not a regular file */
    ck_assert_int_eq(slr_dead_letter_file_open(&s, dir, &err), SLR_ERR_IO);
    test_rmtree(dir);
    free(dir);
}
END_TEST

/* The job as a Kafka consumer drives it: each message applied until used up,
 * with the message's offset.  A message of junk is one dead letter holding
 * the whole message, not one per byte; a good message between two junk ones
 * keeps them apart. */
START_TEST(junk_in_a_message_is_one_dead_letter)
{
    char *dir = test_mkdtemp("dlmsg");
    char path[4200];
    snprintf(path, sizeof path, "%s/dead.jsonl", dir);
    slr_dead_letter_sink *sink;
    slr_error err;
    ck_assert_int_eq(slr_dead_letter_file_open(&sink, path, &err), SLR_OK);
    slr_train_options opt;
    slr_train_options_init(&opt);
    slr_hashing_init(&opt.learner.hashing, 10);
    opt.format = SLR_FORMAT_MSGPACK;
    opt.dead_letter = sink;
    slr_job job;
    ck_assert_msg(slr_job_open(&job, &opt, &err) == SLR_OK, "%s", err.msg);
    ck_assert_int_eq(slr_job_start(&job, &err), SLR_OK);
    static const struct {
        const char *bytes;
        size_t len;
    } messages[] = {
        {"\xc1\xc1\x92\xa1", 4},     /* junk, then a cut-off record */
        {"\x92\x01\x91\xa1x", 5},   /* [1, ["x"]] */
        {"\xc1\xc1\xc1", 3},
    };
    for (int m = 0; m < 3; m++) {
        slr_where where = {"clicks[3]", 0, 98765 + (uint64_t)m, true};
        for (size_t pos = 0; pos < messages[m].len;) {
            size_t used;
            slr_apply_result r;
            ck_assert_int_eq(slr_job_apply(&job, messages[m].bytes + pos, messages[m].len - pos, true,
                                           &where, &used, &r, &err), SLR_OK);
            ck_assert_int_ne(r, SLR_APPLY_NEED_MORE);
            pos += used;
        }
    }
    slr_train_result res;
    ck_assert_int_eq(slr_job_finish(&job, false, &res, &err), SLR_OK);
    ck_assert_uint_eq(res.metrics.examples, 1);
    ck_assert_uint_eq(res.metrics.bad, 2);
    ck_assert_uint_eq(res.metrics.rejected[SLR_BAD_JUNK], 2);
    slr_job_close(&job);
    sink->close(sink);
    size_t len;
    char *text = slurp(path, &len);
    ck_assert_ptr_nonnull(strstr(text, "\"source\":\"clicks[3]\",\"offset\":98765,\"message\":true,"
                                       "\"format\":\"msgpack\",\"length\":4,\"data\":\"wcGSoQ==\"}\n"));
    ck_assert_ptr_nonnull(strstr(text, "\"offset\":98767,\"message\":true,\"format\":\"msgpack\","
                                       "\"length\":3,\"data\":\"wcHB\"}\n"));
    letters got = read_letters(path);
    ck_assert_uint_eq(got.n, 2);
    free_letters(&got);
    free(text);
    test_rmtree(dir);
    free(dir);
}
END_TEST

/* ------------------------------------------------------------ a corrupted stream */

static char *tmp;
static char input[4200], good_only[4200];

typedef struct expected {
    size_t n;
    struct {
        slr_bad_reason why;
        uint64_t offset, line;
        char *bytes;
        size_t len;
    } v[1024];
    uint64_t good, by_reason[SLR_BAD_REASON_COUNT];
} expected;

static expected want;
enum { LINES = 20000, MAX_FEATURES = 40, MAX_RECORD = 2048 };

static void append_line(FILE *out, const char *text, size_t len, uint64_t *offset)
{
    ck_assert_uint_eq(fwrite(text, 1, len, out), len);
    *offset += len;
}

/* VW lines from a hidden model; ~1% replaced by a line train must reject,
 * of every kind.  The good lines also go to good_only. */
static void write_corrupted_stream(void)
{
    test_rng r = {.s = 2024};
    snprintf(input, sizeof input, "%s/stream.vw", tmp);
    snprintf(good_only, sizeof good_only, "%s/good.vw", tmp);
    FILE *in = fopen(input, "w"), *good = fopen(good_only, "w");
    ck_assert(in && good);
    memset(&want, 0, sizeof want);
    uint64_t offset = 0;
    char line[40000];
    for (uint64_t no = 1; no <= LINES; no++) {
        int user = (int)floor(pow(3000.0, test_rng_unif(&r)));
        int item = (int)floor(pow(200.0, test_rng_unif(&r)));
        double z = -0.7 + (user % 7 == 0 ? 1.5 : 0) + (item % 5 == 0 ? -1 : 0.5);
        int y = test_rng_unif(&r) < 1.0 / (1.0 + exp(-z)) ? 1 : -1;
        int len = snprintf(line, sizeof line, "%d |u u%d |i i%d c%d\n", y, user, item, item % 11);
        slr_bad_reason why = SLR_BAD_REASON_COUNT;
        if (no % 331 == 0) {
            append_line(in, "\n", 1, &offset); /* blank: skipped, not a dead letter */
            continue;
        }
        if (test_rng_unif(&r) < 0.01) {
            switch (test_rng_below(&r, 10)) {
            case 0: len = snprintf(line, sizeof line, "2 |u u%d\n", user); why = SLR_BAD_LABEL; break;
            case 1: len = snprintf(line, sizeof line, "1 |u x:abc\n"); why = SLR_BAD_DECODE; break;
            case 2: len = snprintf(line, sizeof line, "1 -1 |u u%d\n", user); why = SLR_BAD_WEIGHT; break;
            case 3: len = snprintf(line, sizeof line, "-1 |u big:5e12\n"); why = SLR_BAD_VALUE; break;
            case 4: len = snprintf(line, sizeof line, "1 |u inf:1e999\n"); why = SLR_BAD_VALUE; break;
            case 5: /* too many features */
                len = snprintf(line, sizeof line, "1 |u");
                for (int k = 0; k < MAX_FEATURES + 5; k++)
                    len += snprintf(line + len, sizeof line - (size_t)len, " f%d", k);
                line[len++] = '\n';
                why = SLR_BAD_TOO_MANY_FEATURES;
                break;
            case 6: /* longer than --max-record */
                len = snprintf(line, sizeof line, "1 |u ");
                while (len < 16 * MAX_RECORD) /* big enough for the sink to write mid-run */
                    line[len++] = 'x';
                line[len++] = '\n';
                why = SLR_BAD_TOO_LARGE;
                break;
            case 7: /* binary junk: NUL, 0xff, invalid UTF-8 */
                memcpy(line, "\x01\xfe\x00\xff |u \xc3(\n", 11);
                len = 11;
                why = SLR_BAD_DECODE;
                break;
            case 8: len = snprintf(line, sizeof line, "|u u%d unlabelled\n", user); why = SLR_BAD_UNLABELLED; break;
            default: len = snprintf(line, sizeof line, "1 |u x:nan\n"); why = SLR_BAD_DECODE; break;
            }
        }
        if (why == SLR_BAD_REASON_COUNT) {
            fwrite(line, 1, (size_t)len, good);
            want.good++;
        } else {
            ck_assert_uint_lt(want.n, 1024);
            want.v[want.n].why = why;
            want.v[want.n].offset = offset;
            want.v[want.n].line = no;
            want.v[want.n].bytes = malloc((size_t)len);
            memcpy(want.v[want.n].bytes, line, (size_t)len);
            want.v[want.n].len = (size_t)len;
            want.n++;
            want.by_reason[why]++;
        }
        append_line(in, line, (size_t)len, &offset);
    }
    fclose(in);
    fclose(good);
    /* every kind must occur for the test to mean something */
    for (int k = 0; k < SLR_BAD_REASON_COUNT; k++)
        if (k != SLR_BAD_JUNK)
            ck_assert_msg(want.by_reason[k] > 0, "no %s line generated", slr_bad_reason_name((slr_bad_reason)k));
    ck_assert_uint_gt(want.n, LINES / 200);
}

static void setup(void)
{
    tmp = test_mkdtemp("deadletter");
    write_corrupted_stream();
}

static void teardown(void)
{
    for (size_t i = 0; i < want.n; i++)
        free(want.v[i].bytes);
    test_rmtree(tmp);
    free(tmp);
}

typedef struct kill_plan {
    int bad_seen, kill_at; /* SIGKILL the process at this many bad-record messages */
} kill_plan;

static void log_and_maybe_die(void *ctx, const char *msg)
{
    kill_plan *k = ctx;
    if (k && strstr(msg, "; skipped") && ++k->bad_seen == k->kill_at)
        raise(SIGKILL);
}

/* Rarely enough that the sink writes letters between checkpoints, which a
 * crash then leaves past the checkpoint's mark. */
static uint64_t checkpoint_every = 2000;

static void options(slr_train_options *opt, const char *file, const char *ckdir,
                    slr_dead_letter_sink *sink, kill_plan *kill)
{
    static const char *files[1];
    files[0] = file;
    slr_train_options_init(opt);
    slr_hashing_init(&opt->learner.hashing, 16);
    slr_hashing_add_quadratic(&opt->learner.hashing, "ui", NULL);
    opt->learner.l1 = 1e-5;
    opt->learner.l2 = 1e-5;
    opt->format = SLR_FORMAT_VW;
    opt->files = files;
    opt->n_files = 1;
    opt->checkpoint_dir = ckdir;
    opt->checkpoint_every_examples = ckdir ? checkpoint_every : 0;
    opt->max_features = MAX_FEATURES;
    opt->max_record = MAX_RECORD;
    opt->dead_letter = sink;
    opt->log = log_and_maybe_die;
    opt->log_ctx = kill;
}

static slr_status train_once(const char *file, const char *ckdir, const char *dl_path, bool resume,
                             const char *model, kill_plan *kill, slr_train_result *res)
{
    slr_dead_letter_sink *sink = NULL;
    slr_error err;
    if (dl_path)
        ck_assert_msg(slr_dead_letter_file_open(&sink, dl_path, &err) == SLR_OK, "%s", err.msg);
    slr_train_options opt;
    options(&opt, file, ckdir, sink, kill);
    opt.resume = resume;
    opt.model_out = model;
    slr_status st = slr_train_files(&opt, res, &err);
    ck_assert_msg(st == SLR_OK, "%s", err.msg);
    if (sink)
        sink->close(sink);
    return st;
}

static void assert_letters_are_the_bad_lines(const char *dl_path)
{
    letters got = read_letters(dl_path);
    ck_assert_uint_eq(got.n, want.n);
    for (size_t i = 0; i < got.n; i++) {
        const letter *l = &got.v[i];
        ck_assert_msg(!strcmp(l->reason, slr_bad_reason_name(want.v[i].why)),
                      "letter %zu (line %llu): reason %s, expected %s", i,
                      (unsigned long long)want.v[i].line, l->reason, slr_bad_reason_name(want.v[i].why));
        ck_assert_uint_eq(l->line, want.v[i].line);
        ck_assert_uint_eq(l->offset, want.v[i].offset);
        /* the exact bytes; an over-long line cut at a buffer boundary says so */
        bool prefix = l->truncated && l->len <= want.v[i].len;
        ck_assert_msg((l->len == want.v[i].len || prefix) && !memcmp(l->data, want.v[i].bytes, l->len),
                      "letter %zu (line %llu): bytes differ", i, (unsigned long long)want.v[i].line);
    }
    free_letters(&got);
}

static bool same_file(const char *a, const char *b)
{
    size_t na, nb;
    char *x = slurp(a, &na), *y = slurp(b, &nb);
    bool same = na == nb && !memcmp(x, y, na);
    free(x);
    free(y);
    return same;
}

/* Both models hold bit-identical weights (the files differ in their creation
 * time); *state_a receives the first one's job state. */
static void assert_same_weights(const char *model_a, const char *model_b, slr_job_state *state_a)
{
    slr_learner *a, *b;
    slr_job_state sb;
    slr_job_state_init(state_a);
    slr_job_state_init(&sb);
    ck_assert_int_eq(slr_checkpoint_read(model_a, &a, state_a, NULL), SLR_OK);
    ck_assert_int_eq(slr_checkpoint_read(model_b, &b, &sb, NULL), SLR_OK);
    ck_assert(state_a->metrics.loss == sb.metrics.loss);
    slr_learner_sync(a);
    slr_learner_sync(b);
    uint64_t nonzero = 0;
    for (uint64_t j = 0; j <= slr_learner_bias_index(a); j++) {
        double x = slr_learner_weight(a, j), y = slr_learner_weight(b, j);
        ck_assert_msg(!memcmp(&x, &y, sizeof x), "weight %llu: %.17g vs %.17g", (unsigned long long)j, x, y);
        nonzero += x != 0;
    }
    ck_assert_uint_gt(nonzero, 1000);
    slr_learner_destroy(a);
    slr_learner_destroy(b);
    slr_job_state_free(&sb);
}

START_TEST(corrupted_stream_learns_the_good_and_keeps_the_bad)
{
    char ck[4200], dl[4200], model[4200], ref_model[4200];
    snprintf(ck, sizeof ck, "%s/ck", tmp);
    snprintf(dl, sizeof dl, "%s/dead.jsonl", tmp);
    snprintf(model, sizeof model, "%s/m.slr", tmp);
    snprintf(ref_model, sizeof ref_model, "%s/good.slr", tmp);
    slr_train_result res, ref;
    train_once(input, ck, dl, false, model, NULL, &res);
    train_once(good_only, NULL, NULL, false, ref_model, NULL, &ref);

    /* every good example learned, nothing else */
    ck_assert_uint_eq(res.metrics.examples, want.good);
    ck_assert_uint_eq(ref.metrics.examples, want.good);
    ck_assert(res.metrics.loss == ref.metrics.loss);
    ck_assert_uint_eq(res.metrics.unlabelled, want.by_reason[SLR_BAD_UNLABELLED]);
    ck_assert_uint_eq(res.metrics.bad, want.n - want.by_reason[SLR_BAD_UNLABELLED]);
    for (int k = 0; k < SLR_BAD_REASON_COUNT; k++)
        ck_assert_msg(res.metrics.rejected[k] == want.by_reason[k], "%s: %llu counted, %llu expected",
                      slr_bad_reason_name((slr_bad_reason)k), (unsigned long long)res.metrics.rejected[k],
                      (unsigned long long)want.by_reason[k]);
    ck_assert_uint_eq(res.dead_letters, want.n);
    assert_letters_are_the_bad_lines(dl);

    /* the model is the one trained on the good lines alone */
    slr_job_state sa;
    assert_same_weights(model, ref_model, &sa);
    /* the per-reason counts and the sink's position are in the checkpoint */
    for (int k = 0; k < SLR_BAD_REASON_COUNT; k++)
        ck_assert_uint_eq(sa.metrics.rejected[k], want.by_reason[k]);
    ck_assert_str_eq(sa.dead_letter.kind, "file");
    ck_assert_str_eq(sa.dead_letter.name, dl);
    size_t dl_len;
    free(slurp(dl, &dl_len));
    ck_assert_uint_eq(sa.dead_letter.position, dl_len);
    slr_job_state_free(&sa);
}
END_TEST

/* Killed (SIGKILL) at arbitrary bad records, resumed each time: the dead
 * letters and the model end up exactly those of an uninterrupted run. */
START_TEST(killed_and_resumed_neither_loses_nor_repeats)
{
    char ref_ck[4200], ref_dl[4200], ref_model[4200], ck[4200], dl[4200], model[4200];
    snprintf(ref_ck, sizeof ref_ck, "%s/ref-ck", tmp);
    snprintf(ref_dl, sizeof ref_dl, "%s/ref.jsonl", tmp);
    snprintf(ref_model, sizeof ref_model, "%s/ref.slr", tmp);
    snprintf(ck, sizeof ck, "%s/ck", tmp);
    snprintf(dl, sizeof dl, "%s/dead.jsonl", tmp);
    snprintf(model, sizeof model, "%s/m.slr", tmp);
    slr_train_result res;
    train_once(input, ref_ck, ref_dl, false, ref_model, NULL, &res);

    /* killed before the first periodic checkpoint, with letters already
     * written: the resume must start from the checkpoint the job wrote
     * before its first record, not from scratch on top of them */
    char ck0[4200], dl0[4200], model0[4200];
    snprintf(ck0, sizeof ck0, "%s/ck0", tmp);
    snprintf(dl0, sizeof dl0, "%s/dead0.jsonl", tmp);
    snprintf(model0, sizeof model0, "%s/m0.slr", tmp);
    checkpoint_every = 1000000;
    kill_plan early = {0, 100};
    pid_t pid0 = fork();
    ck_assert_int_ge(pid0, 0);
    if (pid0 == 0) {
        slr_train_result child;
        train_once(input, ck0, dl0, false, model0, &early, &child);
        _exit(0);
    }
    int status0;
    ck_assert_int_eq(waitpid(pid0, &status0, 0), pid0);
    ck_assert(WIFSIGNALED(status0));
    struct stat sb0;
    ck_assert_int_eq(stat(dl0, &sb0), 0);
    ck_assert_uint_gt((uint64_t)sb0.st_size, 0); /* letters on disk before any periodic checkpoint */
    train_once(input, ck0, dl0, true, model0, NULL, &res);
    ck_assert_msg(same_file(dl0, ref_dl), "dead letters after an early crash differ");
    checkpoint_every = 2000;

    test_rng r = {.s = 77};
    int kills = 0, truncations = 0;
    for (int run = 0; run < 40; run++) {
        kill_plan plan = {0, 3 + (int)test_rng_below(&r, 30)};
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            slr_train_result child;
            train_once(input, ck, dl, true, model, &plan, &child);
            _exit(0); /* got to the end without dying */
        }
        int status;
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        if (WIFSIGNALED(status)) {
            ck_assert_int_eq(WTERMSIG(status), SIGKILL);
            kills++;
        } else {
            ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
            break;
        }
        /* letters written past the newest checkpoint: the resume must cut them */
        slr_learner *l;
        slr_job_state st;
        slr_job_state_init(&st);
        struct stat sb;
        ck_assert_int_eq(slr_checkpoint_dir_load(ck, &l, &st, NULL, NULL, NULL, NULL), SLR_OK);
        ck_assert_int_eq(stat(dl, &sb), 0);
        ck_assert_uint_ge((uint64_t)sb.st_size, st.dead_letter.position);
        truncations += (uint64_t)sb.st_size > st.dead_letter.position;
        slr_learner_destroy(l);
        slr_job_state_free(&st);
    }
    train_once(input, ck, dl, true, model, NULL, &res);
    fprintf(stderr, "killed_and_resumed: %d kills, %d with dead letters written past a checkpoint\n",
            kills, truncations);
    ck_assert_int_gt(kills, 3);
    ck_assert_int_gt(truncations, 0);
    ck_assert_msg(same_file(dl, ref_dl), "dead letters differ from the uninterrupted run's "
                                         "(%d kills, %d with letters past a checkpoint)", kills, truncations);
    assert_letters_are_the_bad_lines(dl);
    slr_job_state sa;
    assert_same_weights(model, ref_model, &sa);
    ck_assert_uint_eq(sa.metrics.examples, want.good);
    for (int k = 0; k < SLR_BAD_REASON_COUNT; k++)
        ck_assert_uint_eq(sa.metrics.rejected[k], want.by_reason[k]);
    slr_job_state_free(&sa);
}
END_TEST

/* ------------------------------------------------------------ the Kafka sink */

static test_cluster cluster;

static void kafka_setup(void)
{
    setup();
    test_cluster_start(&cluster, 1);
}

static void kafka_teardown(void)
{
    test_cluster_stop(&cluster);
    teardown();
}

static slr_dead_letter_sink *kafka_sink(const char *topic, const char *const *config, uint32_t n,
                                        void (*log)(void *, const char *), void *log_ctx)
{
    slr_dead_letter_sink *sink;
    slr_error err;
    slr_dead_letter_kafka_options o = {.topic = topic, .brokers = cluster.bootstraps,
                                       .config = config, .n_config = n, .log = log,
                                       .log_ctx = log_ctx};
    ck_assert_msg(slr_dead_letter_kafka_open(&sink, &o, &err) == SLR_OK, "%s", err.msg);
    ck_assert_str_eq(sink->kind, "kafka");
    return sink;
}

/* Topic "dead" (one partition, so in input order), a sink with one extra
 * property, options for the corrupted stream with checkpoints in ck; the
 * topic is to be copied to copy. */
static slr_dead_letter_sink *kafka_run(const char *property, slr_train_options *opt, char *ck,
                                       char *copy)
{
    test_topic(&cluster, "dead", 1);
    const char *const config[] = {property};
    slr_dead_letter_sink *sink = kafka_sink("dead", config, 1, NULL, NULL);
    snprintf(ck, 4200, "%s/ck", tmp);
    snprintf(copy, 4200, "%s/topic.jsonl", tmp);
    options(opt, input, ck, sink, NULL);
    return sink;
}

typedef struct topic_copy {
    size_t n;
    char **keys; /* "source@offset" */
    char **reasons; /* the "reason" header */
} topic_copy;

/* Read partition 0 of topic to its end: every value as a line in path (the
 * file sink's format, so read_letters parses it), keys and headers aside. */
static topic_copy consume_topic(const char *topic, const char *path)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", cluster.bootstraps, NULL, 0);
    rd_kafka_conf_set(conf, "group.id", "dead-letter-reader", NULL, 0);
    rd_kafka_conf_set(conf, "enable.partition.eof", "true", NULL, 0);
    rd_kafka_conf_set(conf, "fetch.wait.max.ms", "10", NULL, 0);
    rd_kafka_conf_set(conf, "log_level", "0", NULL, 0);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    ck_assert_msg(rk != NULL, "%s", errstr);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    ck_assert_int_eq(rd_kafka_assign(rk, l), 0);
    rd_kafka_topic_partition_list_destroy(l);
    FILE *out = fopen(path, "w");
    ck_assert_ptr_nonnull(out);
    topic_copy c = {0, NULL, NULL};
    double until = test_now() + 60;
    for (bool eof = false; !eof;) {
        ck_assert_msg(test_now() < until, "the dead-letter topic was not read to its end in time");
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            eof = true;
        } else {
            ck_assert_msg(!m->err, "%s", rd_kafka_message_errstr(m));
            fwrite(m->payload, 1, m->len, out);
            fputc('\n', out);
            c.keys = realloc(c.keys, (c.n + 1) * sizeof *c.keys);
            c.reasons = realloc(c.reasons, (c.n + 1) * sizeof *c.reasons);
            c.keys[c.n] = strndup(m->key, m->key_len);
            rd_kafka_headers_t *h = NULL;
            const void *v = NULL;
            size_t vlen = 0;
            ck_assert_int_eq(rd_kafka_message_headers(m, &h), 0);
            ck_assert_int_eq(rd_kafka_header_get_last(h, "reason", &v, &vlen), 0);
            c.reasons[c.n] = strndup(v, vlen);
            c.n++;
        }
        rd_kafka_message_destroy(m);
    }
    fclose(out);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return c;
}

static void free_topic_copy(topic_copy *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->keys[i]);
        free(c->reasons[i]);
    }
    free(c->keys);
    free(c->reasons);
}

/* Letter i of the copy is want.v[i]: key, reason header (the value is
 * checked by assert_letters_are_the_bad_lines). */
static void assert_keys_are_the_bad_lines(const topic_copy *c)
{
    ck_assert_uint_eq(c->n, want.n);
    for (size_t i = 0; i < c->n; i++) {
        char key[4300];
        snprintf(key, sizeof key, "%s@%llu", input, (unsigned long long)want.v[i].offset);
        ck_assert_str_eq(c->keys[i], key);
        ck_assert_str_eq(c->reasons[i], slr_bad_reason_name(want.v[i].why));
    }
}

/* The file stream with ~1% corruption, dead letters to a topic: every good
 * example learned, every bad line in the topic in order with its reason and
 * position; a record longer than message.max.bytes allows is cut and
 * flagged. */
START_TEST(kafka_topic_holds_every_bad_record)
{
    char ck[4200], copy[4200];
    slr_train_options opt;
    slr_dead_letter_sink *sink = kafka_run("message.max.bytes=1500", &opt, ck, copy);
    slr_train_result res;
    slr_error err;
    ck_assert_msg(slr_train_files(&opt, &res, &err) == SLR_OK, "%s", err.msg);
    sink->close(sink);

    ck_assert_uint_eq(res.metrics.examples, want.good);
    for (int k = 0; k < SLR_BAD_REASON_COUNT; k++)
        ck_assert_uint_eq(res.metrics.rejected[k], want.by_reason[k]);
    ck_assert_uint_eq(res.dead_letters, want.n);
    topic_copy c = consume_topic("dead", copy);
    assert_keys_are_the_bad_lines(&c);
    free_topic_copy(&c);
    assert_letters_are_the_bad_lines(copy);
    /* too_large records were cut below --max-record to fit the message */
    letters got = read_letters(copy);
    for (size_t i = 0; i < got.n; i++)
        if (want.v[i].why == SLR_BAD_TOO_LARGE)
            ck_assert_msg(got.v[i].truncated && got.v[i].len < MAX_RECORD && got.v[i].len > 100,
                          "letter %zu: %zu bytes, %s", i, got.v[i].len,
                          got.v[i].truncated ? "truncated" : "whole");
    free_letters(&got);

    /* the checkpoint counts the delivered dead letters */
    slr_learner *l;
    slr_job_state st;
    slr_job_state_init(&st);
    ck_assert_int_eq(slr_checkpoint_dir_load(ck, &l, &st, NULL, NULL, NULL, NULL), SLR_OK);
    ck_assert_str_eq(st.dead_letter.kind, "kafka");
    ck_assert_str_eq(st.dead_letter.name, "dead");
    ck_assert_uint_eq(st.dead_letter.position, want.n);
    slr_learner_destroy(l);
    slr_job_state_free(&st);
}
END_TEST

typedef struct outage {
    int bad_seen, down_at;
    bool resumed_note; /* the resume said that letters may come again */
} outage;

static void log_and_maybe_down(void *ctx, const char *msg)
{
    outage *o = ctx;
    if (strstr(msg, "; skipped") && ++o->bad_seen == o->down_at) {
        /* the letters so far delivered first, so that some lie past the
         * checkpoint and the resumed run repeats them */
        int64_t lo, hi = 0;
        for (double until = test_now() + 30; hi < o->down_at - 1 && test_now() < until;)
            test_watermarks(&cluster, "dead", 0, &lo, &hi);
        rd_kafka_mock_broker_set_down(cluster.mc, 1);
    }
    if (strstr(msg, "the replay sends them again"))
        o->resumed_note = true;
}

/* The broker goes down mid-run: the next checkpoint cannot make the dead
 * letters durable, so the job stops with an error and its newest checkpoint
 * counts only letters the topic holds.  Resumed once the broker is back, the
 * topic holds every bad line, the ones delivered after the checkpoint twice,
 * with the same key. */
START_TEST(kafka_sink_down_stops_the_checkpoints)
{
    outage o = {0, 25, false};
    char ck[4200], copy[4200];
    slr_train_options opt;
    slr_dead_letter_sink *sink = kafka_run("message.timeout.ms=2000", &opt, ck, copy);
    opt.log = log_and_maybe_down;
    opt.log_ctx = &o;
    slr_train_result res;
    slr_error err;
    ck_assert_int_ne(slr_train_files(&opt, &res, &err), SLR_OK);
    ck_assert_msg(strstr(err.msg, "could not be delivered to topic dead") &&
                  strstr(err.msg, "without a further checkpoint"), "%s", err.msg);
    sink->close(sink);

    slr_learner *l;
    slr_job_state st;
    slr_job_state_init(&st);
    ck_assert_int_eq(slr_checkpoint_dir_load(ck, &l, &st, NULL, NULL, NULL, NULL), SLR_OK);
    uint64_t counted = st.dead_letter.position;
    ck_assert_uint_lt(st.metrics.examples, want.good); /* it stopped */
    ck_assert_uint_lt(counted, (uint64_t)o.down_at);
    slr_learner_destroy(l);
    slr_job_state_free(&st);

    rd_kafka_mock_broker_set_up(cluster.mc, 1);
    topic_copy before = consume_topic("dead", copy);
    size_t delivered = before.n;
    free_topic_copy(&before);
    /* the checkpoint counts no more than the topic holds; the rest is to come again */
    ck_assert_uint_gt(delivered, counted);

    sink = kafka_sink("dead", NULL, 0, NULL, NULL);
    options(&opt, input, ck, sink, NULL);
    opt.resume = true;
    opt.log = log_and_maybe_down;
    opt.log_ctx = &o;
    ck_assert_msg(slr_train_files(&opt, &res, &err) == SLR_OK, "%s", err.msg);
    sink->close(sink);
    ck_assert(o.resumed_note);
    ck_assert_uint_eq(res.metrics.examples, want.good);

    /* at least once: what was delivered before the outage, then everything
     * after the checkpoint again, with the same keys */
    topic_copy all = consume_topic("dead", copy);
    ck_assert_uint_eq(all.n, delivered + want.n - counted);
    for (size_t i = delivered; i < all.n; i++) {
        char key[4300];
        snprintf(key, sizeof key, "%s@%llu", input,
                 (unsigned long long)want.v[counted + i - delivered].offset);
        ck_assert_str_eq(all.keys[i], key);
    }
    topic_copy once = {0, calloc(all.n, sizeof(char *)), calloc(all.n, sizeof(char *))};
    for (size_t i = 0; i < all.n; i++) {
        bool seen = false;
        for (size_t j = 0; j < once.n && !seen; j++)
            seen = !strcmp(once.keys[j], all.keys[i]);
        if (!seen) {
            once.keys[once.n] = strdup(all.keys[i]);
            once.reasons[once.n++] = strdup(all.reasons[i]);
        }
    }
    assert_keys_are_the_bad_lines(&once);
    fprintf(stderr, "kafka_sink_down: %zu dead letters in the topic for %zu bad lines; %zu "
                    "delivered before the outage, of which the checkpoint counted %llu\n",
            all.n, want.n, delivered, (unsigned long long)counted);
    free_topic_copy(&once);
    free_topic_copy(&all);
}
END_TEST

static Suite *dead_letter_suite(void)
{
    Suite *s = suite_create("dead_letter");
    TCase *tc = tcase_create("sink");
    tcase_add_test(tc, file_sink_writes_exact_json_lines);
    tcase_add_test(tc, junk_in_a_message_is_one_dead_letter);
    suite_add_tcase(s, tc);
    tc = tcase_create("stream");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, corrupted_stream_learns_the_good_and_keeps_the_bad);
    tcase_add_test(tc, killed_and_resumed_neither_loses_nor_repeats);
    suite_add_tcase(s, tc);
    tc = tcase_create("kafka");
    tcase_add_checked_fixture(tc, kafka_setup, kafka_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, kafka_topic_holds_every_bad_record);
    tcase_add_test(tc, kafka_sink_down_stops_the_checkpoints);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(dead_letter_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
