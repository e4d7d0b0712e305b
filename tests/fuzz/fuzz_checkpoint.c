/* fuzz_checkpoint.c - the checkpoint loader on arbitrary bytes.
 *
 * fuzz_checkpoint feeds the input as a whole file to slr_checkpoint_read.
 * Random bytes almost never pass the XXH3 checksum, so fuzz_checkpoint_body
 * takes the input as the msgpack body and frames it (magic + body + the
 * right checksum): that is what reaches the parser behind the checksum, i.e.
 * what a buggy or hostile writer could make us load.
 *
 * Whatever the loader accepts must be a state the rest of the engine can
 * use: it is written back and re-read (the two must agree), then learned
 * from and read out, and every prediction and weight must stay finite.
 * Inputs declaring more than 2^16 weights are skipped: a legitimate
 * checkpoint may ask for 2^32 slots, which is a memory limit, not a bug. */
#include <fcntl.h>
#include <math.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "fuzz.h"
#include "streamlr/checkpoint.h"

#define FUZZ_MAX_BITS 16

static const char MAGIC[8] = {'S', 'T', 'R', 'E', 'A', 'M', 'L', 'R'};

/* True if some "bits" key is followed by an integer above FUZZ_MAX_BITS
 * (a cheap over-approximation of what the loader will read). */
static bool asks_for_a_big_table(const uint8_t *b, size_t n)
{
    static const uint8_t key[5] = {0xa4, 'b', 'i', 't', 's'};
    for (size_t i = 0; i + sizeof key < n; i++) {
        if (memcmp(b + i, key, sizeof key))
            continue;
        const uint8_t *v = b + i + sizeof key;
        size_t left = n - i - sizeof key;
        uint64_t x = 0;
        int width = v[0] == 0xcc ? 1 : v[0] == 0xcd ? 2 : v[0] == 0xce ? 4 : v[0] == 0xcf ? 8 : 0;
        if (v[0] <= 0x7f)
            x = v[0];
        else if (width && (size_t)width < left)
            for (int k = 1; k <= width; k++)
                x = x << 8 | v[k];
        if (x > FUZZ_MAX_BITS)
            return true;
    }
    return false;
}

static char scratch[256];

static void remove_scratch(void)
{
    rmdir(scratch); /* each use unlinks its file */
}

static const char *scratch_dir(void)
{
    if (!scratch[0]) {
        const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(scratch, sizeof scratch, "%s/streamlr-fuzz-XXXXXX", base);
        FUZZ_CHECK(mkdtemp(scratch) != NULL, "mkdtemp");
        atexit(remove_scratch);
    }
    return scratch;
}

static int check_weight(void *ctx, uint64_t index, double w)
{
    (void)ctx;
    FUZZ_CHECK(isfinite(w), "weight %llu is %g", (unsigned long long)index, w);
    return 0;
}

typedef struct weights {
    size_t n;
    uint64_t idx[256];
    double w[256];
} weights;

static int collect(void *ctx, uint64_t index, double w)
{
    weights *c = ctx;
    if (c->n < 256) {
        c->idx[c->n] = index;
        c->w[c->n] = w;
    }
    c->n++;
    return 0;
}

/* The loaded state survives a write and a re-read unchanged. */
static void check_round_trip(slr_learner *l, const slr_job_state *st)
{
    char path[512];
    snprintf(path, sizeof path, "%s/m.slr", scratch_dir());
    slr_job_state copy_st = *st; /* the writer only reads it */
    slr_error err;
    FUZZ_CHECK(slr_checkpoint_write(path, l, &copy_st, &err) == SLR_OK, "write: %s", err.msg);
    slr_learner *back;
    slr_job_state st2;
    slr_job_state_init(&st2);
    FUZZ_CHECK(slr_checkpoint_read(path, &back, &st2, &err) == SLR_OK,
               "an accepted checkpoint written back is rejected: %s", err.msg);
    FUZZ_CHECK(slr_learner_steps(back) == slr_learner_steps(l), "step");
    FUZZ_CHECK(!memcmp(&st2.metrics, &st->metrics, sizeof st->metrics), "metrics");
    FUZZ_CHECK(st2.file.offset == st->file.offset && st2.file.records == st->file.records &&
                   st2.n_files == st->n_files && st2.n_kafka == st->n_kafka,
               "source position");
    weights *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    slr_learner_foreach_weight(l, collect, a);
    slr_learner_foreach_weight(back, collect, b);
    FUZZ_CHECK(a->n == b->n, "%zu vs %zu weights", a->n, b->n);
    for (size_t i = 0; i < a->n && i < 256; i++)
        FUZZ_CHECK(a->idx[i] == b->idx[i] && !memcmp(&a->w[i], &b->w[i], 8), "weight %zu", i);
    free(a);
    free(b);
    slr_learner_destroy(back);
    slr_job_state_free(&st2);
    unlink(path);
}

/* Learn and predict with the loaded learner: nothing may become NaN or Inf. */
static void exercise(slr_learner *l, const slr_job_state *st)
{
    check_round_trip(l, st);
    const slr_learner_config *cfg = slr_learner_config_of(l);
    slr_example ex;
    slr_example_init(&ex, &cfg->hashing);
    uint64_t seed = slr_learner_steps(l);
    for (int k = 0; k < 8; k++) {
        slr_example_reset(&ex);
        for (int j = 0; j < 4; j++) {
            slr_example_begin_namespace(&ex, k & 1 ? "a" : "b", 1);
            char name[8] = {(char)('a' + fuzz_rand(&seed) % 26), 0};
            slr_example_add(&ex, name, 1, 1.0 + fuzz_rand(&seed) % 3, NULL);
            slr_example_add_hashed(&ex, fuzz_rand(&seed), 0.5, NULL);
        }
        slr_example_finish(&ex, NULL);
        ex.has_label = true;
        ex.label = k & 1;
        double loss = 0;
        double p = slr_learner_learn(l, &ex, &loss);
        FUZZ_CHECK(p >= 0 && p <= 1 && isfinite(loss), "p = %g, loss = %g", p, loss);
        FUZZ_CHECK(isfinite(slr_learner_margin(l, &ex)), "margin");
    }
    slr_learner_foreach_weight(l, check_weight, NULL);
    slr_example_free(&ex);
}

static void load_and_exercise(const char *data, size_t size, bool through_file)
{
    slr_learner *l = NULL;
    slr_job_state st;
    slr_job_state_init(&st);
    slr_error err;
    slr_status rc;
    if (through_file) {
        int fd = memfd_create("checkpoint", MFD_CLOEXEC);
        FUZZ_CHECK(fd >= 0, "memfd_create");
        FUZZ_CHECK(write(fd, data, size) == (ssize_t)size, "write");
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        rc = slr_checkpoint_read(path, &l, &st, &err);
        close(fd);
    } else {
        rc = slr_checkpoint_decode(data, size, "fuzz", &l, &st, &err);
    }
    if (rc == SLR_OK) {
        FUZZ_CHECK(l != NULL, "success without a learner");
        exercise(l, &st);
    } else {
        FUZZ_CHECK(l == NULL && err.msg[0], "failure (%d) without a message or with a learner", rc);
        FUZZ_CHECK(rc == SLR_ERR_CORRUPT || rc == SLR_ERR_MISMATCH || rc == SLR_ERR_NOMEM,
                   "unexpected status %d: %s", rc, err.msg);
    }
    slr_learner_destroy(l);
    slr_job_state_free(&st);
}

int fuzz_checkpoint(const uint8_t *data, size_t size)
{
    if (asks_for_a_big_table(data, size))
        return 0;
    load_and_exercise((const char *)data, size, true);
    return 0;
}

int fuzz_checkpoint_body(const uint8_t *data, size_t size)
{
    if (asks_for_a_big_table(data, size))
        return 0;
    size_t n = sizeof MAGIC + size + 8;
    char *file = malloc(n);
    memcpy(file, MAGIC, sizeof MAGIC);
    memcpy(file + sizeof MAGIC, data, size);
    uint64_t sum = XXH3_64bits(file, n - 8);
    for (int i = 0; i < 8; i++)
        file[n - 8 + i] = (char)(sum >> (56 - 8 * i));
    load_and_exercise(file, n, false);
    free(file);
    return 0;
}
