/* kafka_input.c - see kafka_input.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "kafka_input.h"

/* Append the comma-separated items of s to *list (each strdup'ed). */
static bool split_list(const char *cmd, const char *s, char ***list, uint32_t *n,
                       const char *flag)
{
    char *copy = strdup(s);
    bool ok = copy != NULL;
    for (char *save = NULL, *tok = ok ? strtok_r(copy, ",", &save) : NULL; ok && tok;
         tok = strtok_r(NULL, ",", &save)) {
        char **l = realloc(*list, (*n + 1) * sizeof *l);
        if (l)
            *list = l;
        if (!(ok = l && (l[*n] = strdup(tok))))
            break;
        (*n)++;
    }
    free(copy);
    if (!ok)
        fprintf(stderr, "streamlr %s: out of memory\n", cmd);
    else if (*n == 0)
        fprintf(stderr, "streamlr %s: %s needs a value\n", cmd, flag);
    return ok && *n > 0;
}

static bool parse_partitions(const char *cmd, const char *s, cli_kafka_input *in)
{
    slr_kafka_options *k = &in->k;
    k->assign = true;
    if (!strcmp(s, "all"))
        return true;
    char **list = NULL;
    uint32_t n = 0;
    bool ok = split_list(cmd, s, &list, &n, "--partitions");
    for (uint32_t i = 0; ok && i < n; i++) {
        uint32_t v;
        if (!(ok = cli_u32(cmd, "--partitions", list[i], &v) && v <= INT32_MAX))
            break;
        int32_t *p = realloc(in->partitions, (k->n_partitions + 1) * sizeof *p);
        if (!(ok = p != NULL))
            break;
        in->partitions = p;
        p[k->n_partitions++] = (int32_t)v;
    }
    for (uint32_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
    k->partitions = in->partitions;
    return ok;
}

void cli_kafka_input_init(cli_kafka_input *in)
{
    memset(in, 0, sizeof *in);
    slr_kafka_options_init(&in->k);
}

int cli_kafka_option(const char *cmd, int opt, const char *arg, cli_kafka_input *in)
{
    bool ok = true;
    switch (opt) {
    case OPT_BROKERS: in->k.brokers = arg; return 1;
    case OPT_TOPIC: ok = split_list(cmd, arg, &in->topics, &in->n_topics, "--topic"); break;
    case OPT_GROUP: in->k.group = arg; in->flag = true; break;
    case 'X': ok = cli_kafka_conf_add(&in->conf, cmd, arg); in->flag = true; break;
    case OPT_KAFKA_CONFIG: ok = cli_kafka_conf_file(&in->conf, cmd, arg); in->flag = true; break;
    case OPT_PARTITIONS: ok = parse_partitions(cmd, arg, in); in->flag = true; break;
    case OPT_EXIT_AT_END: in->k.exit_at_end = true; in->flag = true; break;
    default: return 0;
    }
    /* the lists may have moved */
    in->k.topics = (const char *const *)in->topics;
    in->k.n_topics = in->n_topics;
    in->k.config = (const char *const *)in->conf.kv;
    in->k.n_config = in->conf.n;
    return ok ? 1 : -1;
}

bool cli_kafka_input_given(const cli_kafka_input *in)
{
    return in->k.brokers || in->n_topics;
}

void cli_kafka_input_free(cli_kafka_input *in)
{
    for (uint32_t i = 0; i < in->n_topics; i++)
        free(in->topics[i]);
    free(in->topics);
    free(in->partitions);
    cli_kafka_conf_free(&in->conf);
    memset(in, 0, sizeof *in);
}
