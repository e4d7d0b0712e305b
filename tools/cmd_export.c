/* cmd_export.c - `streamlr export MODEL`: every nonzero weight.
 *
 * text (the default): one weight per line, "<index> <weight>", sorted by
 * index, %.17g so the text round-trips to the same double.  The bias is the
 * last line, at index 2^bits.  Two models are bit-identical exactly when
 * their text exports are equal; tests rely on this format, keep it.
 *
 * json: one object with the hashing settings, the same weights as
 * [index, weight] pairs (%.17g again), and, if the model was trained with
 * --keep-names, the names as [index, "name"] pairs sorted by index - what
 * VW's --invert_hash gives, in a form a script can load. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_options.h"
#include "commands.h"
#include "streamlr/checkpoint.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: streamlr export [--format text|json] MODEL\n\n"
            "Print every nonzero weight of a model (or checkpoint); owed lazy penalties are\n"
            "settled first, so this is the model as the next prediction would use it.\n\n"
            "  --format text  \"<index> <weight>\" per line (%%.17g), sorted by index; the\n"
            "                 bias comes last, at index 2^bits (default)\n"
            "  --format json  {\"format\":\"streamlr-weights\",\"version\":1,\"bits\":B,\n"
            "                 \"quadratic\":[..],\"bias_index\":2^B,\"examples\":N,\n"
            "                 \"weights\":[[index,weight],..],\"names\":[[index,\"name\"],..]}\n"
            "                 with \"names\" only for a model trained with --keep-names\n"
            "  -h, --help     this text\n");
}

static int print_text(void *ctx, uint64_t index, double w)
{
    return fprintf(ctx, "%llu %.17g\n", (unsigned long long)index, w) < 0;
}

typedef struct json_ctx {
    FILE *out;
    uint64_t n;
} json_ctx;

static int print_json(void *ctx, uint64_t index, double w)
{
    json_ctx *j = ctx;
    return fprintf(j->out, "%s\n[%llu,%.17g]", j->n++ ? "," : "", (unsigned long long)index, w) <
           0;
}

/* A JSON string.  Names are input bytes: bytes that are not valid UTF-8
 * are written as \u00XX (read as Latin-1) so the output is always JSON. */
static void json_string(FILE *out, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    fputc('"', out);
    for (size_t i = 0; i < len;) {
        unsigned char c = p[i];
        size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        bool valid = n > 0 && i + n <= len;
        for (size_t k = 1; valid && k < n; k++)
            valid = (p[i + k] & 0xC0) == 0x80;
        if (n > 1 && valid) {
            fwrite(p + i, 1, n, out);
            i += n;
            continue;
        }
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            fprintf(out, "\\u%04x", c);
        else
            fputc(c, out);
        i++;
    }
    fputc('"', out);
}

static int export_json(FILE *out, slr_learner *l, const slr_job_state *st)
{
    const slr_learner_config *cfg = slr_learner_config_of(l);
    fprintf(out, "{\"format\":\"streamlr-weights\",\"version\":1,\"bits\":%u,\"quadratic\":[",
            cfg->hashing.bits);
    for (unsigned i = 0; i < cfg->hashing.n_quadratic; i++) {
        fprintf(out, "%s", i ? "," : "");
        json_string(out, cfg->hashing.quadratic[i], 2);
    }
    fprintf(out, "],\"bias_index\":%llu,\"examples\":%llu,\n\"weights\":[",
            (unsigned long long)slr_learner_bias_index(l), (unsigned long long)slr_learner_steps(l));
    json_ctx j = {out, 0};
    if (slr_learner_foreach_weight(l, print_json, &j))
        return 1;
    fprintf(out, "]");
    if (st->names) {
        uint64_t n;
        slr_name_ref *refs = slr_names_by_index(st->names, &n);
        if (!refs && slr_names_count(st->names)) {
            fprintf(stderr, "streamlr export: out of memory sorting the names\n");
            return 1;
        }
        fprintf(out, ",\n\"names\":[");
        for (uint64_t i = 0; i < n; i++) {
            fprintf(out, "%s\n[%u,", i ? "," : "", refs[i].index);
            json_string(out, refs[i].name, refs[i].len);
            fputc(']', out);
        }
        fprintf(out, "]");
        free(refs);
    }
    return fprintf(out, "}\n") < 0;
}

int cli_export_model(const char *cmd, const char *model, FILE *out, bool json)
{
    slr_learner *l;
    slr_job_state st;
    slr_error err;
    slr_job_state_init(&st);
    if (slr_checkpoint_read(model, &l, &st, &err) != SLR_OK) {
        fprintf(stderr, "streamlr %s: %s\n", cmd, err.msg);
        return -1;
    }
    int failed = json ? export_json(out, l, &st) : slr_learner_foreach_weight(l, print_text, out);
    if (fflush(out) != 0)
        failed = 1;
    slr_learner_destroy(l);
    slr_job_state_free(&st);
    return failed;
}

int slr_cmd_export(int argc, char **argv)
{
    static const struct option longopts[] = {{"format", required_argument, 0, OPT_FORMAT},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    bool json = false;
    optind = 1;
    int c;
    while ((c = cli_getopt(argc, argv, "h", longopts)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return 0;
        }
        if (c == OPT_FORMAT && (!strcmp(optarg, "json") || !strcmp(optarg, "text"))) {
            json = !strcmp(optarg, "json");
            continue;
        }
        if (c == OPT_FORMAT) {
            fprintf(stderr, "streamlr export: --format is text or json (got \"%s\")\n", optarg);
            cli_see_help("export");
        }
        return 2;
    }
    if (optind + 1 != argc) {
        fprintf(stderr, "streamlr export: give one MODEL\n");
        cli_see_help("export");
        return 2;
    }
    static char buf[1 << 20];
    setvbuf(stdout, buf, _IOFBF, sizeof buf);
    int failed = cli_export_model("export", argv[optind], stdout, json);
    if (failed < 0)
        return 1;
    if (failed) {
        fprintf(stderr, "streamlr export: writing to stdout failed\n");
        return 1;
    }
    return 0;
}
