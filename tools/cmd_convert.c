/* cmd_convert.c - `streamlr convert`: re-encode examples between formats.
 *
 * Reads files (or stdin) through a sliding buffer with large reads, decodes
 * records with slr_decoder_next and re-encodes them.  Every record is also
 * hashed with slr_example_from_raw, even when only re-encoding, so convert
 * rejects exactly what train would (labels like 2, NaN, too many features):
 * a converted file trains without surprises.  --hashed writes the hashed
 * example itself in the compact msgpack form, so a producer can do the
 * hashing and -q expansion once, ahead of many training runs. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "streamlr/decode.h"
#include "streamlr/encode.h"
#include "streamlr/example.h"

#define READ_CHUNK (1u << 20)
#define FLUSH_AT (1u << 20)

static void usage(FILE *out)
{
    fprintf(out,
            "usage: streamlr convert --to msgpack|vw [options] [FILE...]\n"
            "\n"
            "Re-encode examples.  Reads each FILE in turn (none, or -, means stdin) and\n"
            "writes one output stream.  Records that cannot be decoded, or that train\n"
            "would reject (a label other than 0/1/-1, a NaN value, ...), are reported on\n"
            "stderr as FILE:LINE: reason (text) or FILE@OFFSET: reason (msgpack) and\n"
            "skipped.  A summary line goes to stderr at the end.\n"
            "\n"
            "options:\n"
            "  --from FORMAT        input format: vw, libsvm, criteo or msgpack (--format\n"
            "                       works too, as in train).  Without\n"
            "                       it, each file's format is guessed from its extension\n"
            "                       (.vw, .svm/.libsvm, .tsv/.criteo, .msgpack/.mp); stdin\n"
            "                       needs --from\n"
            "  --to FORMAT          output format: msgpack or vw (required)\n"
            "  --hashed             write hashed examples in the compact msgpack form\n"
            "                       [label, weight, ids, values] (needs --to msgpack);\n"
            "                       -q features are included, so train on it without -q\n"
            "  -b, --bits N         with --hashed: index bits, %d..%d (default %d)\n"
            "  -q, --quadratic AB   with --hashed: cross namespaces starting with A and B;\n"
            "                       repeatable\n"
            "  -o, --output FILE    write to FILE instead of stdout\n"
            "      --strict         stop at the first bad record (exit status 1)\n"
            "      --max-record N   records longer than N bytes are bad (default %u)\n"
            "      --max-features N examples with more features are bad (default %d)\n"
            "  -h, --help           show this help\n"
            "\n"
            "vw output replaces space, tab, ':' and '|' in names with '_' (VW has no\n"
            "escaping) and writes pre-hashed ids (libsvm input) as names; msgpack output\n"
            "is lossless.  docs/FORMAT.md describes every format.\n"
            "\n"
            "exit status: 0 done (bad records skipped), 1 failure or --strict stop,\n"
            "2 usage error\n",
            SLR_BITS_MIN, SLR_BITS_MAX, SLR_BITS_DEFAULT, SLR_DEFAULT_MAX_RECORD,
            SLR_DEFAULT_MAX_FEATURES);
}

typedef struct convert_opts {
    bool have_from;
    slr_format from, to;
    bool hashed, strict;
    slr_hashing hashing;
    size_t max_record;
    uint32_t max_features;
    const char *output;
} convert_opts;

typedef struct convert_run {
    const convert_opts *o;
    FILE *out;
    slr_buf obuf;
    slr_raw_example raw;
    slr_example ex;
    unsigned long long converted, bad;
} convert_run;

/* One line of stderr per bad record (slr_error messages are already made
 * printable by the library). */
static void report(const char *name, bool text, unsigned long long where, const char *msg)
{
    fprintf(stderr, text ? "%s:%llu: %s\n" : "%s@%llu: %s\n", name, where, msg);
}

static int flush_output(convert_run *run)
{
    if (run->obuf.len && fwrite(run->obuf.data, 1, run->obuf.len, run->out) != run->obuf.len) {
        fprintf(stderr, "streamlr convert: writing %s: %s\n", run->o->output ? run->o->output : "stdout",
                strerror(errno));
        return -1;
    }
    slr_buf_reset(&run->obuf);
    return 0;
}

/* Hash (to validate, and for --hashed) and encode one decoded record. */
static slr_status convert_record(convert_run *run, slr_error *err)
{
    slr_status st = slr_example_from_raw(&run->ex, &run->raw, err);
    if (st != SLR_OK)
        return st;
    if (run->o->hashed)
        return slr_encode_hashed(&run->obuf, &run->ex, err);
    return slr_encode_raw(&run->obuf, run->o->to, &run->raw, err);
}

/* Returns 0, or 1 when the job must stop (i/o error, --strict). */
static int convert_file(convert_run *run, const char *path)
{
    const convert_opts *o = run->o;
    bool is_stdin = !path || !strcmp(path, "-");
    const char *name = is_stdin ? "<stdin>" : path;
    slr_format fmt = o->from;
    if (!o->have_from)
        slr_format_guess(path, &fmt); /* checked before any file was read */
    int fd = is_stdin ? STDIN_FILENO : open(path, O_RDONLY);
    if (fd < 0) {
        fprintf(stderr, "streamlr convert: cannot open %s: %s\n", name, strerror(errno));
        return 1;
    }
    slr_error err;
    slr_decoder *dec;
    if (slr_decoder_create(&dec, fmt, &err) != SLR_OK) {
        fprintf(stderr, "streamlr convert: %s\n", err.msg);
        if (!is_stdin)
            close(fd);
        return 1;
    }
    slr_decoder_set_max_record(dec, o->max_record);
    bool text = slr_format_is_text(fmt);

    size_t cap = READ_CHUNK, start = 0, end = 0;
    char *buf = malloc(cap);
    bool eof = false;
    int rc = buf ? 0 : 1;
    unsigned long long line = 1, offset = 0;
    if (!buf)
        fprintf(stderr, "streamlr convert: out of memory\n");
    while (rc == 0) {
        size_t consumed = 0;
        slr_decode_result r = slr_decoder_next(dec, buf + start, end - start, eof, &consumed, &run->raw, &err);
        if (r == SLR_DECODE_NEED_MORE) {
            if (eof)
                break;
            /* Slide the unread tail to the front; grow only when a record fills the buffer. */
            memmove(buf, buf + start, end - start);
            end -= start;
            start = 0;
            if (end == cap) {
                char *bigger = realloc(buf, cap * 2);
                if (!bigger) {
                    fprintf(stderr, "streamlr convert: out of memory for a %zu-byte record in %s\n", cap * 2, name);
                    rc = 1;
                    break;
                }
                buf = bigger;
                cap *= 2;
            }
            ssize_t got = read(fd, buf + end, cap - end);
            if (got < 0) {
                if (errno == EINTR)
                    continue;
                fprintf(stderr, "streamlr convert: reading %s: %s\n", name, strerror(errno));
                rc = 1;
            } else if (got == 0) {
                eof = true;
            } else {
                end += (size_t)got;
            }
            continue;
        }
        bool bad = r == SLR_DECODE_BAD;
        if (r == SLR_DECODE_EXAMPLE) {
            slr_status st = convert_record(run, &err);
            if (st == SLR_OK)
                run->converted++;
            else if (st == SLR_ERR_NOMEM)
                rc = 1;
            bad = st != SLR_OK;
        } else if (bad && err.code == SLR_ERR_NOMEM) {
            rc = 1;
        }
        if (bad) {
            run->bad++;
            report(name, text, text ? line : offset, err.msg);
            if (o->strict)
                rc = 1;
        }
        line += consumed && buf[start + consumed - 1] == '\n';
        offset += consumed;
        start += consumed;
        if (rc == 0 && run->obuf.len >= FLUSH_AT && flush_output(run) != 0)
            rc = 1;
    }
    free(buf);
    slr_decoder_destroy(dec);
    if (!is_stdin)
        close(fd);
    return rc;
}

static int parse_size(const char *opt, const char *s, unsigned long long max, unsigned long long *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || v == 0 || v > max || s[0] == '-') {
        fprintf(stderr, "streamlr convert: %s takes a whole number from 1 to %llu (got \"%s\")\n", opt, max, s);
        return -1;
    }
    *out = v;
    return 0;
}

enum { OPT_FROM = 256, OPT_TO, OPT_HASHED, OPT_STRICT, OPT_MAX_RECORD, OPT_MAX_FEATURES };

/* Returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, convert_opts *o)
{
    static const struct option longopts[] = {
        {"from", required_argument, NULL, OPT_FROM},
        {"format", required_argument, NULL, OPT_FROM}, /* train's spelling */
        {"to", required_argument, NULL, OPT_TO},
        {"hashed", no_argument, NULL, OPT_HASHED},
        {"bits", required_argument, NULL, 'b'},
        {"quadratic", required_argument, NULL, 'q'},
        {"output", required_argument, NULL, 'o'},
        {"strict", no_argument, NULL, OPT_STRICT},
        {"max-record", required_argument, NULL, OPT_MAX_RECORD},
        {"max-features", required_argument, NULL, OPT_MAX_FEATURES},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool have_to = false, have_bits = false;
    unsigned long long v;
    slr_error err;
    slr_hashing_init(&o->hashing, SLR_BITS_DEFAULT);
    o->max_record = SLR_DEFAULT_MAX_RECORD;
    o->max_features = SLR_DEFAULT_MAX_FEATURES;
    optind = 1;
    int c;
    while ((c = cli_getopt(argc, argv, "b:q:o:h", longopts)) != -1) {
        switch (c) {
        case OPT_FROM:
            if (slr_format_parse(optarg, &o->from, &err) != SLR_OK) {
                fprintf(stderr, "streamlr convert: --from: %s\n", err.msg);
                return 2;
            }
            o->have_from = true;
            break;
        case OPT_TO:
            if (slr_format_parse(optarg, &o->to, &err) != SLR_OK) {
                fprintf(stderr, "streamlr convert: --to: %s\n", err.msg);
                return 2;
            }
            if (o->to != SLR_FORMAT_MSGPACK && o->to != SLR_FORMAT_VW) {
                fprintf(stderr, "streamlr convert: --to: %s is an input format only; write msgpack or vw\n",
                        slr_format_name(o->to));
                return 2;
            }
            have_to = true;
            break;
        case OPT_HASHED: o->hashed = true; break;
        case OPT_STRICT: o->strict = true; break;
        case 'b':
            if (parse_size("-b", optarg, SLR_BITS_MAX, &v) != 0)
                return 2;
            o->hashing.bits = (unsigned)v;
            have_bits = true;
            break;
        case 'q':
            if (slr_hashing_add_quadratic(&o->hashing, optarg, &err) != SLR_OK) {
                fprintf(stderr, "streamlr convert: %s\n", err.msg);
                return 2;
            }
            break;
        case 'o': o->output = optarg; break;
        case OPT_MAX_RECORD:
            if (parse_size("--max-record", optarg, UINT32_MAX, &v) != 0)
                return 2;
            o->max_record = (size_t)v;
            break;
        case OPT_MAX_FEATURES:
            if (parse_size("--max-features", optarg, UINT32_MAX, &v) != 0)
                return 2;
            o->max_features = (uint32_t)v;
            break;
        case 'h': usage(stdout); return 0;
        default: return 2; /* cli_getopt said what was wrong */
        }
    }
    if (!have_to) {
        fprintf(stderr, "streamlr convert: --to msgpack|vw is required (see --help)\n");
        return 2;
    }
    if (o->hashed && o->to != SLR_FORMAT_MSGPACK) {
        fprintf(stderr, "streamlr convert: --hashed writes the compact msgpack form; use it with --to msgpack\n");
        return 2;
    }
    if (!o->hashed && (have_bits || o->hashing.n_quadratic)) {
        fprintf(stderr, "streamlr convert: -b and -q only apply with --hashed\n");
        return 2;
    }
    return -1;
}

int slr_cmd_convert(int argc, char **argv)
{
    convert_opts o = {0};
    int status = parse_args(argc, argv, &o);
    if (status >= 0)
        return status;
    if (optind >= argc && !o.have_from) {
        fprintf(stderr, "streamlr convert: reading stdin needs --from (the format cannot be guessed)\n");
        return 2;
    }
    for (int i = optind; i < argc && !o.have_from; i++) {
        slr_format f;
        if (!strcmp(argv[i], "-") || !slr_format_guess(argv[i], &f)) {
            fprintf(stderr, "streamlr convert: cannot tell the format of %s from its name; use --from\n",
                    argv[i]);
            return 2;
        }
    }

    convert_run run = {.o = &o, .out = stdout};
    if (o.output && !(run.out = fopen(o.output, "wb"))) {
        fprintf(stderr, "streamlr convert: cannot create %s: %s\n", o.output, strerror(errno));
        return 1;
    }
    slr_buf_init(&run.obuf);
    slr_raw_example_init(&run.raw);
    slr_example_init(&run.ex, &o.hashing);
    run.ex.max_features = o.max_features;

    int rc = 0;
    if (optind >= argc)
        rc = convert_file(&run, NULL);
    for (int i = optind; i < argc && rc == 0; i++)
        rc = convert_file(&run, argv[i]);
    if (flush_output(&run) != 0 || fflush(run.out) != 0)
        rc = 1;
    if (o.output && fclose(run.out) != 0) {
        fprintf(stderr, "streamlr convert: closing %s: %s\n", o.output, strerror(errno));
        rc = 1;
    }
    fprintf(stderr, "streamlr convert: %llu records converted, %llu bad%s\n", run.converted, run.bad,
            rc ? " (stopped early)" : "");
    slr_example_free(&run.ex);
    slr_raw_example_free(&run.raw);
    slr_buf_free(&run.obuf);
    return rc;
}
