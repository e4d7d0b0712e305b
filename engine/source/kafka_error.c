/* kafka_error.c - what a librdkafka error callback's error means to a job,
 * shared by the consumer (kafka_source.c) and the producers (scoring
 * outputs, dead letters). */
#include "kafka_source.h"

slr_kafka_error_kind slr_kafka_error_classify(rd_kafka_t *rk, int err, char *fatal, size_t size)
{
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        rd_kafka_fatal_error(rk, fatal, size);
        return SLR_KAFKA_ERROR_FATAL;
    }
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        return SLR_KAFKA_ERROR_OUTAGE;
    /* connection failures also arrive as log lines */
    return err == RD_KAFKA_RESP_ERR__TRANSPORT ? SLR_KAFKA_ERROR_QUIET : SLR_KAFKA_ERROR_REPORT;
}
