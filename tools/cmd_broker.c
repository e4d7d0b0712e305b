/* cmd_broker.c - `streamlr broker`: an embedded Kafka broker for the
 * quickstart, the tests and benchmarks.
 *
 * It is librdkafka's mock cluster (rdkafka_mock.h) on loopback: real Kafka
 * protocol, so any client (kcat, librdkafka, streamlr) talks to it, but it
 * keeps everything in memory, drops the oldest data beyond about 5 MiB per
 * partition and has hard-wired group timings.  Not a production broker; the
 * engine never depends on it.
 *
 * librdkafka 2.0 gives the mock brokers random ports.  --port therefore
 * opens a fixed bootstrap port that forwards connections to broker 1; after
 * the first metadata request clients connect to the advertised brokers
 * directly, so the forwarder only ever carries a few small requests.
 *
 * SIGUSR1 starts an outage and SIGUSR2 ends it (rdkafka_mock's
 * broker_set_down/up, or with --outage-topic a topic's partitions left
 * without a leader): how the tests take the cluster away from a running
 * group and give it back.  Signals, not a schedule, so that a test starts an
 * outage when the group is where it wants it and ends it when it has seen
 * the stall. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"

#define MAX_TOPICS 64
#define MAX_LINKS 64 /* forwarded connections at once */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: streamlr broker [--topic T[:P]]... [--partitions P] [--port PORT]\n"
            "                       [--bootstrap-file FILE] [--broker-count N]\n"
            "                       [--outage-topic T]\n"
            "\n"
            "Run an embedded Kafka broker on 127.0.0.1 until SIGINT/SIGTERM: librdkafka's\n"
            "mock cluster.  It prints its bootstrap address (HOST:PORT) on stdout.\n"
            "\n"
            "  --topic T[:P]        create topic T, with P partitions if given (repeatable;\n"
            "                       other topics are created on first use, with 4\n"
            "                       partitions): --topic clicks:8 --topic ctr.model:1\n"
            "  --partitions P       partitions of each --topic without :P (default 1)\n"
            "  --port PORT          serve the bootstrap address on this port (default: a\n"
            "                       random free port)\n"
            "  --bootstrap-file F   also write the bootstrap address to F once the broker is\n"
            "                       up (removed again on exit): scripts wait for it\n"
            "  --broker-count N     brokers in the cluster (default 1)\n"
            "  --outage-topic T     SIGUSR1 leaves topic T's partitions without a leader\n"
            "                       instead of taking every broker down\n"
            "  -h, --help           this text\n"
            "\n"
            "Outages, for testing clients: SIGUSR1 takes every broker down (connections\n"
            "closed, new ones refused; with --outage-topic T only T's partitions lose their\n"
            "leader), SIGUSR2 brings them back (T's partitions led by broker 1).  Each is\n"
            "said on stderr.\n"
            "\n"
            "Limits (of the mock, not of Kafka): data lives in memory only and is gone when\n"
            "the broker stops; about 5 MiB is kept per partition and older messages are\n"
            "dropped (a consumer that falls that far behind loses them: streamlr reports\n"
            "it); consumer group joins take about 3 s and rejoins about 5 s (clients should\n"
            "use session.timeout.ms=6000); idle fetches wait the full fetch.wait.max.ms\n"
            "(clients should use -X fetch.wait.max.ms=10); transactions are accepted but\n"
            "write no markers (aborted records stay visible); no compaction.\n"
            "It is for the quickstart, tests and benchmarks, not a production broker.\n");
}

/* ------------------------------------------------------------ forwarder */

typedef struct forwarder {
    int listen_fd;
    struct sockaddr_in target;
    int wake[2]; /* a byte here stops the thread */
    pthread_t thread;
    int links[MAX_LINKS][2]; /* client fd, broker fd; -1 when free */
} forwarder;

static void close_link(forwarder *f, int i)
{
    close(f->links[i][0]);
    close(f->links[i][1]);
    f->links[i][0] = f->links[i][1] = -1;
}

/* Copy what is readable on `from` to `to`; false when the link is done. */
static bool relay(int from, int to)
{
    char buf[65536];
    ssize_t n = read(from, buf, sizeof buf);
    if (n <= 0)
        return n < 0 && (errno == EINTR || errno == EAGAIN);
    for (ssize_t off = 0; off < n;) {
        ssize_t w = write(to, buf + off, (size_t)(n - off));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        off += w;
    }
    return true;
}

static void accept_link(forwarder *f)
{
    int c = accept(f->listen_fd, NULL, NULL);
    if (c < 0)
        return;
    int b = socket(AF_INET, SOCK_STREAM, 0);
    int slot = -1;
    for (int i = 0; i < MAX_LINKS && slot < 0; i++)
        if (f->links[i][0] < 0)
            slot = i;
    if (b < 0 || slot < 0 ||
        connect(b, (const struct sockaddr *)&f->target, sizeof f->target) != 0) {
        close(c);
        if (b >= 0)
            close(b);
        return;
    }
    f->links[slot][0] = c;
    f->links[slot][1] = b;
}

static void *forward_loop(void *arg)
{
    forwarder *f = arg;
    for (;;) {
        struct pollfd fds[2 + 2 * MAX_LINKS];
        int slot_of[2 + 2 * MAX_LINKS];
        nfds_t n = 0;
        fds[n++] = (struct pollfd){f->wake[0], POLLIN, 0};
        fds[n++] = (struct pollfd){f->listen_fd, POLLIN, 0};
        for (int i = 0; i < MAX_LINKS; i++)
            for (int side = 0; side < 2 && f->links[i][0] >= 0; side++) {
                slot_of[n] = i;
                fds[n++] = (struct pollfd){f->links[i][side], POLLIN, 0};
            }
        if (poll(fds, n, -1) < 0 && errno != EINTR)
            break;
        if (fds[0].revents)
            break;
        if (fds[1].revents & POLLIN)
            accept_link(f);
        for (nfds_t j = 2; j < n; j++) {
            int i = slot_of[j];
            if (!fds[j].revents || f->links[i][0] < 0)
                continue;
            int from = fds[j].fd, to = from == f->links[i][0] ? f->links[i][1] : f->links[i][0];
            if (!relay(from, to))
                close_link(f, i);
        }
    }
    for (int i = 0; i < MAX_LINKS; i++)
        if (f->links[i][0] >= 0)
            close_link(f, i);
    return NULL;
}

/* Listen on 127.0.0.1:port and forward to the HOST:PORT in `to`. */
static bool forwarder_start(forwarder *f, unsigned port, const char *to)
{
    memset(f, 0, sizeof *f);
    for (int i = 0; i < MAX_LINKS; i++)
        f->links[i][0] = f->links[i][1] = -1;
    const char *colon = strrchr(to, ':');
    if (!colon)
        return false;
    f->target.sin_family = AF_INET;
    f->target.sin_port = htons((uint16_t)atoi(colon + 1));
    char host[64];
    snprintf(host, sizeof host, "%.*s", (int)(colon - to), to);
    if (inet_pton(AF_INET, host, &f->target.sin_addr) != 1)
        return false;
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int on = 1;
    f->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (f->listen_fd < 0 ||
        setsockopt(f->listen_fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
        bind(f->listen_fd, (struct sockaddr *)&sin, sizeof sin) != 0 ||
        listen(f->listen_fd, 16) != 0 || pipe(f->wake) != 0) {
        fprintf(stderr, "streamlr broker: cannot listen on 127.0.0.1:%u: %s\n", port,
                strerror(errno));
        if (f->listen_fd >= 0)
            close(f->listen_fd);
        return false;
    }
    if (pthread_create(&f->thread, NULL, forward_loop, f) != 0) {
        fprintf(stderr, "streamlr broker: cannot start the port forwarder\n");
        return false;
    }
    return true;
}

static void forwarder_stop(forwarder *f)
{
    if (write(f->wake[1], "x", 1) < 0)
        perror("streamlr broker: stopping the port forwarder");
    pthread_join(f->thread, NULL);
    close(f->listen_fd);
    close(f->wake[0]);
    close(f->wake[1]);
}

/* ------------------------------------------------------------ outages */

static volatile sig_atomic_t outage_wanted = -1; /* 1: SIGUSR1 came last, 0: SIGUSR2 */

static void on_outage_signal(int sig) { outage_wanted = sig == SIGUSR1; }

/* Start (down) or end an outage: every broker, or one topic's leaders. */
static void set_outage(rd_kafka_mock_cluster_t *mc, bool down, const char *topic,
                       int partitions)
{
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (!topic)
        e = down ? rd_kafka_mock_broker_set_down(mc, -1) : rd_kafka_mock_broker_set_up(mc, -1);
    for (int p = 0; topic && p < partitions && !e; p++)
        e = rd_kafka_mock_partition_set_leader(mc, topic, p, down ? -1 : 1);
    if (e)
        fprintf(stderr, "streamlr broker: %s the outage: %s\n", down ? "starting" : "ending",
                rd_kafka_err2str(e));
    else if (topic)
        fprintf(stderr, "streamlr broker: topic %s %s\n", topic,
                down ? "has no leader (SIGUSR2 gives it back)" : "is led by broker 1 again");
    else
        fprintf(stderr, "streamlr broker: brokers %s\n",
                down ? "down (SIGUSR2 brings them back)" : "up again");
}

/* ------------------------------------------------------------ main */

static bool write_bootstrap_file(const char *path, const char *addr)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    bool ok = f && fprintf(f, "%s\n", addr) > 0;
    if (f && fclose(f) != 0)
        ok = false;
    if (ok && rename(tmp, path) != 0)
        ok = false;
    if (!ok) {
        fprintf(stderr, "streamlr broker: cannot write %s: %s\n", path, strerror(errno));
        unlink(tmp);
    }
    return ok;
}

static void log_line(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    (void)level;
    fprintf(stderr, "streamlr broker: %s: %s\n", fac, buf);
}

int slr_cmd_broker(int argc, char **argv)
{
    enum {
        OPT_TOPIC = 1000,
        OPT_PARTITIONS,
        OPT_PORT,
        OPT_BOOTSTRAP_FILE,
        OPT_BROKER_COUNT,
        OPT_OUTAGE_TOPIC
    };
    static const struct option longopts[] = {
        {"topic", required_argument, 0, OPT_TOPIC},
        {"partitions", required_argument, 0, OPT_PARTITIONS},
        {"port", required_argument, 0, OPT_PORT},
        {"bootstrap-file", required_argument, 0, OPT_BOOTSTRAP_FILE},
        {"broker-count", required_argument, 0, OPT_BROKER_COUNT},
        {"outage-topic", required_argument, 0, OPT_OUTAGE_TOPIC},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    const char *topics[MAX_TOPICS];
    int n_topics = 0;
    uint32_t partitions = 1, port = 0, brokers = 1;
    const char *bootstrap_file = NULL, *outage_topic = NULL;
    int outage_partitions = 0;
    optind = 1;
    int c;
    while ((c = cli_getopt(argc, argv, "h", longopts)) != -1) {
        switch (c) {
        case OPT_TOPIC:
            if (n_topics == MAX_TOPICS) {
                fprintf(stderr, "streamlr broker: at most %d --topic\n", MAX_TOPICS);
                return 2;
            }
            topics[n_topics++] = optarg;
            break;
        case OPT_PARTITIONS:
            if (!cli_u32("broker", "--partitions", optarg, &partitions) || partitions < 1 ||
                partitions > 10000) {
                fprintf(stderr, "streamlr broker: --partitions must be 1..10000\n");
                return 2;
            }
            break;
        case OPT_PORT:
            if (!cli_u32("broker", "--port", optarg, &port) || port < 1 || port > 65535) {
                fprintf(stderr, "streamlr broker: --port must be 1..65535\n");
                return 2;
            }
            break;
        case OPT_BOOTSTRAP_FILE: bootstrap_file = optarg; break;
        case OPT_OUTAGE_TOPIC: outage_topic = optarg; break;
        case OPT_BROKER_COUNT:
            if (!cli_u32("broker", "--broker-count", optarg, &brokers) || brokers < 1 ||
                brokers > 16) {
                fprintf(stderr, "streamlr broker: --broker-count must be 1..16\n");
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        default: return 2; /* cli_getopt said what was wrong */
        }
    }
    if (optind < argc) {
        fprintf(stderr, "streamlr broker: unexpected argument %s\n", argv[optind]);
        return 2;
    }

    cli_catch_stop_signals();
    cli_catch_signals(SIGUSR1, SIGUSR2, on_outage_signal);
    signal(SIGPIPE, SIG_IGN); /* the forwarder writes to sockets that may close */

    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
    rd_kafka_conf_set(conf, "client.id", "streamlr-broker", NULL, 0);
    rd_kafka_conf_set_log_cb(conf, log_line);
    /* the mock cluster hangs off a client handle; nothing is produced with it */
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!rk) {
        fprintf(stderr, "streamlr broker: %s\n", errstr);
        return 1;
    }
    int rc = 1;
    forwarder fwd;
    bool forwarding = false;
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, (int)brokers);
    if (!mc) {
        fprintf(stderr, "streamlr broker: cannot start the mock cluster\n");
        goto out;
    }
    for (int i = 0; i < n_topics; i++) {
        /* T:P -- Kafka topic names cannot hold ':', so the suffix is unambiguous */
        char name[256];
        uint32_t parts = partitions;
        const char *colon = strrchr(topics[i], ':');
        size_t len = colon ? (size_t)(colon - topics[i]) : strlen(topics[i]);
        if (len == 0 || len >= sizeof name ||
            (colon && (!cli_u32("broker", "--topic T:P", colon + 1, &parts) || parts < 1 ||
                       parts > 10000))) {
            fprintf(stderr, "streamlr broker: --topic %s: give T or T:P (P 1..10000)\n",
                    topics[i]);
            goto out;
        }
        memcpy(name, topics[i], len);
        name[len] = '\0';
        if (outage_topic && !strcmp(outage_topic, name))
            outage_partitions = (int)parts;
        rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(mc, name, (int)parts, 1);
        if (e) {
            fprintf(stderr, "streamlr broker: creating topic %s: %s\n", name,
                    rd_kafka_err2str(e));
            goto out;
        }
    }
    if (outage_topic && !outage_partitions) {
        fprintf(stderr, "streamlr broker: --outage-topic %s: not one of the --topic given\n",
                outage_topic);
        goto out;
    }
    const char *real = rd_kafka_mock_cluster_bootstraps(mc);
    char first[256], addr[256];
    snprintf(first, sizeof first, "%s", real);
    first[strcspn(first, ",")] = '\0';
    if (port) {
        if (!(forwarding = forwarder_start(&fwd, port, first)))
            goto out;
        snprintf(addr, sizeof addr, "127.0.0.1:%u", port);
    } else {
        snprintf(addr, sizeof addr, "%s", real);
    }
    if (bootstrap_file && !write_bootstrap_file(bootstrap_file, addr))
        goto out;
    printf("%s\n", addr);
    fflush(stdout);
    fprintf(stderr,
            "streamlr broker: serving %s (%u broker%s, in memory only, about 5 MiB kept per "
            "partition; not a production broker); SIGINT or SIGTERM stops it\n",
            addr, brokers, brokers == 1 ? "" : "s");

    bool down = false;
    while (!cli_stop_requested) {
        rd_kafka_poll(rk, 200);
        if (outage_wanted >= 0 && (outage_wanted == 1) != down) {
            down = !down;
            set_outage(mc, down, outage_topic, outage_partitions);
        }
    }
    rc = 0;
    fprintf(stderr, "streamlr broker: stopping; its data is gone\n");
out:
    if (forwarding)
        forwarder_stop(&fwd);
    if (bootstrap_file && rc == 0)
        unlink(bootstrap_file);
    if (mc)
        rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return rc;
}
