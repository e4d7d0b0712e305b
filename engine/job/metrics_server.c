/* metrics_server.c - the Prometheus endpoint (see metrics_server.h).
 *
 * libmicrohttpd with its own polling thread: a scrape is rare (every 15-60
 * s) and tiny, so one thread and a small connection limit are plenty, and a
 * slow or stuck client is dropped after a short timeout rather than holding
 * a slot.  No error log: the library does not print; a failure to start is
 * returned to the caller.
 *
 * libmicrohttpd is optional (configure --without-libmicrohttpd): without it
 * every function below exists and starting a server fails with a message
 * that says so. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "streamlr/metrics_server.h"

#if !HAVE_MICROHTTPD

slr_status slr_metrics_server_start(slr_metrics_server **out, const char *bind_addr,
                                    uint16_t port, slr_error *err)
{
    (void)bind_addr;
    (void)port;
    *out = NULL;
    return slr_error_set(err, SLR_ERR_ARG,
                         "this streamlr was built without metrics-port support (libmicrohttpd); "
                         "leave out --metrics-port and use --metrics FILE, or rebuild with "
                         "libmicrohttpd-dev installed");
}

void slr_metrics_server_stop(slr_metrics_server *s) { (void)s; }
uint16_t slr_metrics_server_port(const slr_metrics_server *s) { (void)s; return 0; }
void slr_metrics_server_publish(slr_metrics_server *s, const slr_metrics_report *r)
{
    (void)s;
    (void)r;
}
uint64_t slr_metrics_server_scrapes(slr_metrics_server *s) { (void)s; return 0; }

#else

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>

#define CONNECTION_LIMIT 16
#define CONNECTION_TIMEOUT_SECONDS 5
#define CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct slr_metrics_server {
    struct MHD_Daemon *daemon;
    pthread_mutex_t lock; /* guards everything below */
    slr_metrics_report latest;
    int have_latest;
    uint64_t scrapes;
};

static enum MHD_Result respond(struct MHD_Connection *c, unsigned status, char *body, size_t len,
                               const char *type)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result respond_text(struct MHD_Connection *c, unsigned status, const char *text)
{
    char *body = strdup(text);
    return body ? respond(c, status, body, strlen(body), "text/plain; charset=utf-8") : MHD_NO;
}

static enum MHD_Result serve_metrics(slr_metrics_server *s, struct MHD_Connection *c)
{
    slr_metrics_report snap;
    pthread_mutex_lock(&s->lock);
    int have = s->have_latest;
    snap = s->latest;
    if (have)
        s->scrapes++;
    pthread_mutex_unlock(&s->lock);
    if (!have)
        return respond_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "no metrics published yet\n");
    size_t len = slr_report_prometheus(&snap, NULL, 0);
    char *body = malloc(len + 1);
    if (!body)
        return MHD_NO;
    slr_report_prometheus(&snap, body, len + 1);
    return respond(c, MHD_HTTP_OK, body, len, CONTENT_TYPE);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size, void **req)
{
    (void)version;
    (void)upload_data;
    (void)req;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return respond_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET and HEAD\n");
    if (*upload_data_size != 0)
        return MHD_NO;
    if (!strcmp(url, "/metrics"))
        return serve_metrics(cls, c);
    if (!strcmp(url, "/"))
        return respond_text(c, MHD_HTTP_OK, "streamlr: metrics are at /metrics\n");
    return respond_text(c, MHD_HTTP_NOT_FOUND, "not found; metrics are at /metrics\n");
}

slr_status slr_metrics_server_start(slr_metrics_server **out, const char *bind_addr,
                                    uint16_t port, slr_error *err)
{
    *out = NULL;
    const char *addr = bind_addr && *bind_addr ? bind_addr : SLR_METRICS_BIND_DEFAULT;
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
    struct sockaddr *sa;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL;
    memset(&v4, 0, sizeof v4);
    memset(&v6, 0, sizeof v6);
    if (inet_pton(AF_INET, addr, &v4.sin_addr) == 1) {
        v4.sin_family = AF_INET;
        v4.sin_port = htons(port);
        sa = (struct sockaddr *)&v4;
    } else if (inet_pton(AF_INET6, addr, &v6.sin6_addr) == 1) {
        v6.sin6_family = AF_INET6;
        v6.sin6_port = htons(port);
        sa = (struct sockaddr *)&v6;
        flags |= MHD_USE_IPv6;
    } else {
        return slr_error_set(err, SLR_ERR_ARG,
                             "metrics bind address \"%s\" is not an IPv4 or IPv6 address "
                             "(e.g. 127.0.0.1, 0.0.0.0, ::1)",
                             addr);
    }
    slr_metrics_server *s = calloc(1, sizeof *s);
    if (!s)
        return slr_error_set(err, SLR_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&s->lock, NULL);
    /* The polling thread inherits our signal mask: block everything while
     * it is created (as slr_job_start_thread does), so that SIGTERM and
     * SIGINT are taken by the embedder's thread, never by this one. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    s->daemon = MHD_start_daemon(flags, port, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, sa,
                                 MHD_OPTION_CONNECTION_LIMIT, (unsigned)CONNECTION_LIMIT,
                                 MHD_OPTION_CONNECTION_TIMEOUT,
                                 (unsigned)CONNECTION_TIMEOUT_SECONDS, MHD_OPTION_END);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!s->daemon) {
        pthread_mutex_destroy(&s->lock);
        free(s);
        return slr_error_set(err, SLR_ERR_IO,
                             "cannot serve metrics on %s port %u (in use, or not an address of "
                             "this host?); choose another --metrics-port",
                             addr, (unsigned)port);
    }
    *out = s;
    return SLR_OK;
}

void slr_metrics_server_stop(slr_metrics_server *s)
{
    if (!s)
        return;
    MHD_stop_daemon(s->daemon);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

uint16_t slr_metrics_server_port(const slr_metrics_server *s)
{
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    return info ? info->port : 0;
}

void slr_metrics_server_publish(slr_metrics_server *s, const slr_metrics_report *r)
{
    pthread_mutex_lock(&s->lock);
    s->latest = *r;
    s->have_latest = 1;
    pthread_mutex_unlock(&s->lock);
}

uint64_t slr_metrics_server_scrapes(slr_metrics_server *s)
{
    pthread_mutex_lock(&s->lock);
    uint64_t n = s->scrapes;
    pthread_mutex_unlock(&s->lock);
    return n;
}

#endif
