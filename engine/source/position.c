/* position.c - the table of Kafka next offsets (include/streamlr/position.h).
 * A job reads a few partitions, so a linear search is the fastest lookup. */
#include <stdlib.h>
#include <string.h>

#include "streamlr/position.h"

int64_t slr_kafka_offsets_get(const slr_kafka_offset *tab, uint32_t n, const char *topic,
                              int32_t partition)
{
    for (uint32_t i = 0; i < n; i++)
        if (tab[i].partition == partition && !strcmp(tab[i].topic, topic))
            return tab[i].offset;
    return -1;
}

slr_status slr_kafka_offsets_set(slr_kafka_offset **tab, uint32_t *n, const char *topic,
                                 int32_t partition, int64_t offset, slr_error *err)
{
    for (uint32_t i = 0; i < *n; i++)
        if ((*tab)[i].partition == partition && !strcmp((*tab)[i].topic, topic)) {
            (*tab)[i].offset = offset;
            return SLR_OK;
        }
    slr_kafka_offset *k = realloc(*tab, (*n + 1) * sizeof *k);
    if (!k)
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
    *tab = k;
    char *t = strdup(topic);
    if (!t)
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
    k[(*n)++] = (slr_kafka_offset){t, partition, offset};
    return SLR_OK;
}

void slr_kafka_offsets_free(slr_kafka_offset *tab, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        free(tab[i].topic);
    free(tab);
}
