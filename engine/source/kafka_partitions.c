/* kafka_partitions.c - the Kafka source's partition table: the partitions
 * assigned to this consumer, each with its position (next offset to apply),
 * looked up for every message (a one-entry cache: messages come in runs). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka_source_impl.h"

/* The assigned partition a message belongs to, or NULL. */
slr_kafka_partition *slr_kafka_partition_find(slr_kafka_source *src, const rd_kafka_message_t *m)
{
    slr_kafka_partition *p = src->last;
    if (p && p->rkt == m->rkt && p->partition == m->partition)
        return p;
    for (size_t i = 0; i < src->n_parts; i++) {
        p = src->parts[i];
        if (p->partition != m->partition)
            continue;
        if (!p->rkt && !strcmp(p->topic, rd_kafka_topic_name(m->rkt)))
            p->rkt = m->rkt;
        if (p->rkt == m->rkt)
            return src->last = p;
    }
    return NULL;
}

static void free_partition(slr_kafka_partition *p)
{
    if (p) {
        free(p->topic);
        free(p->name);
        free(p);
    }
}

/* Add topic[partition] to the assignment table, positioned at `next`. */
slr_kafka_partition *slr_kafka_partition_add(slr_kafka_source *src, const char *topic,
                                          int32_t partition, int64_t next)
{
    if (src->n_parts == src->cap_parts) {
        size_t cap = src->cap_parts ? 2 * src->cap_parts : 16;
        slr_kafka_partition **a = realloc(src->parts, cap * sizeof *a);
        if (!a)
            return NULL;
        src->parts = a;
        src->cap_parts = cap;
    }
    slr_kafka_partition *p = calloc(1, sizeof *p);
    size_t n = strlen(topic) + 16;
    if (!p || !(p->topic = strdup(topic)) || !(p->name = malloc(n))) {
        free_partition(p);
        return NULL;
    }
    snprintf(p->name, n, "%s[%d]", topic, (int)partition);
    p->partition = partition;
    p->next = next;
    p->reset_from = -1;
    p->end = -1;
    src->parts[src->n_parts++] = p;
    src->last = NULL;
    return p;
}

void slr_kafka_partition_remove(slr_kafka_source *src, const char *topic, int32_t partition)
{
    for (size_t i = 0; i < src->n_parts; i++)
        if (src->parts[i]->partition == partition && !strcmp(src->parts[i]->topic, topic)) {
            free_partition(src->parts[i]);
            src->parts[i] = src->parts[--src->n_parts];
            break;
        }
    src->last = NULL;
}

void slr_kafka_partitions_clear(slr_kafka_source *src)
{
    for (size_t i = 0; i < src->n_parts; i++)
        free_partition(src->parts[i]);
    src->n_parts = 0;
    src->last = NULL;
}
