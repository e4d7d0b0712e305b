/* metrics_server.h - serve metrics to Prometheus over HTTP (libmicrohttpd).
 *
 * The server runs its own thread.  The training loop never blocks on it and
 * never formats for it: at each report interval it publishes a copy of its
 * slr_metrics_report under a mutex; a scrape copies the latest one out under
 * the same mutex and formats it (slr_report_prometheus) on the server thread.
 * So every scrape sees one consistent snapshot, and the per-example path has
 * no locking at all.
 *
 * Paths: /metrics (text format 0.0.4) and / (a one-line pointer to it); any
 * other path is 404.  Bound to 127.0.0.1 unless told otherwise: metrics say
 * how a model is doing, which is not for every host on the network. */
#ifndef STREAMLR_METRICS_SERVER_H
#define STREAMLR_METRICS_SERVER_H

#include "streamlr/export.h"
#include <stdint.h>

#include "streamlr/error.h"
#include "streamlr/metrics.h"

SLR_BEGIN_DECLS

#define SLR_METRICS_BIND_DEFAULT "127.0.0.1"

typedef struct slr_metrics_server slr_metrics_server;

/* Listen on bind_addr:port (an IPv4 or IPv6 literal; NULL = 127.0.0.1;
 * port 0 = any free port, see slr_metrics_server_port). */
slr_status slr_metrics_server_start(slr_metrics_server **out, const char *bind_addr,
                                    uint16_t port, slr_error *err);
/* Stop serving and free; NULL is fine. */
void slr_metrics_server_stop(slr_metrics_server *s);

/* The port actually bound. */
uint16_t slr_metrics_server_port(const slr_metrics_server *s);

/* Replace the snapshot scrapes will see. */
void slr_metrics_server_publish(slr_metrics_server *s, const slr_metrics_report *r);

/* Scrapes served so far. */
uint64_t slr_metrics_server_scrapes(slr_metrics_server *s);

SLR_END_DECLS
#endif
