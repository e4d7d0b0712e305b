/* fuzz_train.c - the training job on an arbitrary input file, with a
 * dead-letter sink: decoding, hashing, learning, the bad-record paths,
 * msgpack junk runs and the dead-letter JSON lines, end to end.
 *
 * Input: byte 0 picks the format (low 2 bits), a record limit and a feature
 * limit; the rest is the file.  Properties besides memory safety:
 *  - the job succeeds (bad input is never an error without --strict);
 *  - one dead letter per rejected record: lines == bad + unlabelled;
 *  - every dead letter is one valid UTF-8 line without raw control bytes,
 *    and its data, base64-decoded, is exactly the input's bytes at its
 *    offset (so a record can always be found and replayed). */
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "streamlr/dead_letter.h"
#include "streamlr/train.h"

static const size_t train_max_records[4] = {16, 40, 200, 1u << 20};
static const uint32_t train_max_features[2] = {4, 1000};

static char scratch[256];

static void remove_scratch(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/in", scratch);
    unlink(path);
    snprintf(path, sizeof path, "%s/dead.jsonl", scratch);
    unlink(path);
    rmdir(scratch);
}

static char *scratch_file(const char *name)
{
    if (!scratch[0]) {
        const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(scratch, sizeof scratch, "%s/streamlr-fuzz-train-XXXXXX", base);
        FUZZ_CHECK(mkdtemp(scratch) != NULL, "mkdtemp");
        atexit(remove_scratch);
    }
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", scratch, name);
    return path;
}

static int b64(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

static bool valid_utf8_text(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        if (c < 0x20 || c == 0x7f)
            return false;
        size_t len = c < 0x80 ? 1 : c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
        if (len == 0 || i + len > n)
            return false;
        for (size_t k = 1; k < len; k++)
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
        i += len;
    }
    return true;
}

/* Check one dead-letter line against the input; returns false at the end. */
static void check_letter(const char *line, size_t n, const uint8_t *input, size_t size)
{
    FUZZ_CHECK(n > 2 && line[0] == '{' && line[n - 1] == '}', "not a JSON object: %.*s", (int)n, line);
    FUZZ_CHECK(valid_utf8_text((const unsigned char *)line, n), "invalid UTF-8 or control byte: %.*s",
               (int)n, line);
    const char *off = strstr(line, "\"offset\":"), *len = strstr(line, "\"length\":"),
               *data = strstr(line, "\"data\":\"");
    FUZZ_CHECK(off && len && data, "keys missing: %.*s", (int)n, line);
    unsigned long long offset = strtoull(off + 9, NULL, 10), length = strtoull(len + 9, NULL, 10);
    FUZZ_CHECK(offset <= size && length <= size - offset, "letter [%llu, +%llu) outside %zu bytes",
               offset, length, size);
    const unsigned char *p = (const unsigned char *)data + 8;
    uint32_t acc = 0;
    int bits = 0;
    size_t got = 0;
    for (; *p != '"'; p++) {
        if (*p == '=')
            continue;
        int v = b64(*p);
        FUZZ_CHECK(v >= 0, "bad base64");
        acc = acc << 6 | (uint32_t)v;
        if ((bits += 6) >= 8) {
            bits -= 8;
            unsigned char byte = (unsigned char)(acc >> bits);
            FUZZ_CHECK(got < length && byte == input[offset + got],
                       "letter at %llu: byte %zu is not the input's", offset, got);
            got++;
        }
    }
    FUZZ_CHECK(got == length, "letter at %llu: %zu bytes, length says %llu", offset, got, length);
}

int fuzz_train(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t params = data[0];
    const uint8_t *input = data + 1;
    size_t n = size - 1;
    char *in_path = strdup(scratch_file("in"));
    char *dl_path = strdup(scratch_file("dead.jsonl"));
    FILE *f = fopen(in_path, "wb");
    FUZZ_CHECK(f && fwrite(input, 1, n, f) == n, "writing the input");
    fclose(f);
    unlink(dl_path);

    slr_dead_letter_sink *sink;
    slr_error err;
    FUZZ_CHECK(slr_dead_letter_file_open(&sink, dl_path, &err) == SLR_OK, "%s", err.msg);
    slr_train_options opt;
    slr_train_options_init(&opt);
    slr_hashing_init(&opt.learner.hashing, 10);
    slr_hashing_add_quadratic(&opt.learner.hashing, "ab", NULL);
    opt.learner.l1 = 1e-3;
    opt.format = (slr_format)(params & 3);
    opt.max_record = train_max_records[(params >> 2) & 3];
    opt.max_features = train_max_features[(params >> 4) & 1];
    const char *files[1] = {in_path};
    opt.files = files;
    opt.n_files = 1;
    opt.dead_letter = sink;
    slr_train_result res;
    slr_status st = slr_train_files(&opt, &res, &err);
    FUZZ_CHECK(st == SLR_OK, "training failed: %s", err.msg);
    sink->close(sink);

    uint64_t letters = 0;
    f = fopen(dl_path, "rb");
    FUZZ_CHECK(f != NULL, "no dead-letter file");
    char *line = NULL;
    size_t cap = 0;
    ssize_t k;
    while ((k = getline(&line, &cap, f)) > 0) {
        FUZZ_CHECK(line[k - 1] == '\n', "dead letter without a newline");
        check_letter(line, (size_t)k - 1, input, n);
        letters++;
    }
    free(line);
    fclose(f);
    FUZZ_CHECK(letters == res.metrics.bad + res.metrics.unlabelled && letters == res.dead_letters,
               "%llu dead letters for %llu bad + %llu unlabelled", (unsigned long long)letters,
               (unsigned long long)res.metrics.bad, (unsigned long long)res.metrics.unlabelled);
    uint64_t by_reason = 0;
    for (int r = 0; r < SLR_BAD_REASON_COUNT; r++)
        by_reason += res.metrics.rejected[r];
    FUZZ_CHECK(by_reason == letters, "per-reason counts add up to %llu, not %llu",
               (unsigned long long)by_reason, (unsigned long long)letters);
    free(in_path);
    free(dl_path);
    return 0;
}
