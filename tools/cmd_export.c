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
 * VW's --invert_hash gives, in a form a script can load.  Written by
 * jansson; names that are not UTF-8 follow the rule of util/json.h. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_options.h"
#include "commands.h"
#include "streamlr/checkpoint.h"
#include "util/json.h"

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

/* The weights are streamed, one [index, weight] pair per line: a tree of
 * the whole model (tens of millions of pairs for -b 28) would take
 * gigabytes.  One pair, reused, formatted by jansson each time. */
typedef struct json_ctx {
    FILE *out;
    uint64_t n;
    json_t *pair, *index, *weight;
} json_ctx;

static int print_json(void *ctx, uint64_t index, double w)
{
    json_ctx *j = ctx;
    if (json_integer_set(j->index, (json_int_t)index) || json_real_set(j->weight, w))
        return 1;
    if (fputs(j->n++ ? ",\n" : "\n", j->out) < 0)
        return 1;
    return json_dumpf(j->pair, j->out, SLR_JSON_FLAGS) != 0;
}

/* The settings, as an object whose members the weights and names follow. */
static json_t *header(slr_learner *l)
{
    const slr_learner_config *cfg = slr_learner_config_of(l);
    json_t *o = json_object(), *quadratic = json_array();
    int bad = !o || !quadratic;
    for (unsigned i = 0; !bad && i < cfg->hashing.n_quadratic; i++)
        bad |= json_array_append_new(quadratic, slr_json_text(cfg->hashing.quadratic[i], 2));
    if (!bad) {
        bad |= json_object_set_new(o, "format", json_string("streamlr-weights"));
        bad |= json_object_set_new(o, "version", json_integer(1));
        bad |= json_object_set_new(o, "bits", json_integer(cfg->hashing.bits));
        bad |= json_object_set_new(o, "quadratic", quadratic);
        quadratic = NULL;
        bad |= json_object_set_new(o, "bias_index",
                                   json_integer((json_int_t)slr_learner_bias_index(l)));
        bad |= json_object_set_new(o, "examples", json_integer((json_int_t)slr_learner_steps(l)));
    }
    json_decref(quadratic);
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static int print_names(FILE *out, const slr_names *names)
{
    uint64_t n;
    slr_name_ref *refs = slr_names_by_index(names, &n);
    if (!refs && slr_names_count(names)) {
        fprintf(stderr, "streamlr export: out of memory sorting the names\n");
        return 1;
    }
    int failed = fprintf(out, ",\n\"names\":[") < 0;
    for (uint64_t i = 0; i < n && !failed; i++) {
        json_t *pair = json_pack("[Io]", (json_int_t)refs[i].index,
                                 slr_json_text(refs[i].name, refs[i].len));
        failed = !pair || fputs(i ? ",\n" : "\n", out) < 0 ||
                 json_dumpf(pair, out, SLR_JSON_FLAGS) != 0;
        json_decref(pair);
    }
    free(refs);
    return failed || fputc(']', out) == EOF;
}

static int export_json(FILE *out, slr_learner *l, const slr_job_state *st)
{
    /* the header object without its closing brace, then the long members */
    json_t *h = header(l);
    char *text = h ? json_dumps(h, SLR_JSON_FLAGS) : NULL;
    json_decref(h);
    if (!text)
        return 1;
    text[strlen(text) - 1] = '\0';
    int failed = fprintf(out, "%s,\n\"weights\":[", text) < 0;
    free(text);
    json_ctx j = {out, 0, NULL, json_integer(0), json_real(0)};
    j.pair = j.index && j.weight ? json_pack("[OO]", j.index, j.weight) : NULL;
    if (!j.pair) {
        json_decref(j.index);
        json_decref(j.weight);
        return 1;
    }
    failed = failed || slr_learner_foreach_weight(l, print_json, &j) || fputc(']', out) == EOF;
    json_decref(j.pair);
    json_decref(j.index);
    json_decref(j.weight);
    if (!failed && st->names)
        failed = print_names(out, st->names);
    return failed || fprintf(out, "}\n") < 0;
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
