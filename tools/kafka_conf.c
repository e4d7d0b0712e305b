/* kafka_conf.c - see kafka_conf.h. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka_conf.h"

static bool push(cli_kafka_conf *c, const char *key, size_t key_len, const char *value)
{
    if (c->n == c->cap) {
        uint32_t cap = c->cap ? 2 * c->cap : 16;
        char **kv = realloc(c->kv, cap * sizeof *kv);
        if (!kv)
            return false;
        c->kv = kv;
        c->cap = cap;
    }
    size_t n = key_len + strlen(value) + 2;
    char *s = malloc(n);
    if (!s)
        return false;
    snprintf(s, n, "%.*s=%s", (int)key_len, key, value);
    c->kv[c->n++] = s;
    return true;
}

bool cli_kafka_conf_add(cli_kafka_conf *c, const char *cmd, const char *kv)
{
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv) {
        fprintf(stderr, "streamlr %s: -X %s: expected key=value (e.g. -X security.protocol=ssl)\n",
                cmd, kv);
        return false;
    }
    if (!push(c, kv, (size_t)(eq - kv), eq + 1)) {
        fprintf(stderr, "streamlr %s: out of memory\n", cmd);
        return false;
    }
    return true;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

bool cli_kafka_conf_file(cli_kafka_conf *c, const char *cmd, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "streamlr %s: cannot open %s: %s\n", cmd, path, strerror(errno));
        return false;
    }
    char line[8192];
    unsigned long no = 0;
    bool ok = true;
    while (ok && fgets(line, sizeof line, f)) {
        no++;
        char *s = trim(line);
        if (!*s || *s == '#' || *s == '!')
            continue;
        char *eq = strchr(s, '=');
        if (!eq || eq == s) {
            fprintf(stderr, "streamlr %s: %s:%lu: expected key=value\n", cmd, path, no);
            ok = false;
            break;
        }
        *eq = '\0';
        char *key = trim(s), *value = trim(eq + 1);
        if (!push(c, key, strlen(key), value)) {
            fprintf(stderr, "streamlr %s: out of memory\n", cmd);
            ok = false;
        }
    }
    if (ok && ferror(f)) {
        fprintf(stderr, "streamlr %s: reading %s: %s\n", cmd, path, strerror(errno));
        ok = false;
    }
    fclose(f);
    return ok;
}

bool cli_kafka_conf_apply(const cli_kafka_conf *c, const char *cmd, rd_kafka_conf_t *conf)
{
    for (uint32_t i = 0; i < c->n; i++) {
        char key[512], errstr[512];
        const char *eq = strchr(c->kv[i], '=');
        snprintf(key, sizeof key, "%.*s", (int)(eq - c->kv[i]), c->kv[i]);
        if (rd_kafka_conf_set(conf, key, eq + 1, errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
            fprintf(stderr, "streamlr %s: kafka property %s: %s\n", cmd, c->kv[i], errstr);
            return false;
        }
    }
    return true;
}

void cli_kafka_conf_free(cli_kafka_conf *c)
{
    for (uint32_t i = 0; i < c->n; i++)
        free(c->kv[i]);
    free(c->kv);
    memset(c, 0, sizeof *c);
}
