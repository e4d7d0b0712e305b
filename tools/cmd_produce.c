/* cmd_produce.c - `streamlr produce`: replay example files into a Kafka
 * topic, the producer side of `streamlr train --brokers`.
 *
 * Records are read with the library's file source and decoder, checked the
 * way train would check them (slr_example_from_raw), and sent as msgpack
 * examples -- by name (slr_encode_raw), hashed (--hashed: the compact form,
 * hashing and -q done once here), or, with --raw, text lines exactly as they
 * are.  librdkafka batches the messages; when its queue is full we serve
 * delivery reports and retry, and at the end we flush and count every
 * delivery, so a failure is reported, never lost quietly. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "kafka_conf.h"
#include "streamlr/decode.h"
#include "streamlr/encode.h"
#include "streamlr/example.h"
#include "streamlr/source.h"

#define FAILURES_SHOWN 10

static void usage(FILE *out)
{
    fprintf(out,
            "usage: streamlr produce --brokers HOST:PORT[,..] --topic T [options] FILE...\n"
            "\n"
            "Send the examples in FILE... (- for stdin) to Kafka topic T, one message per\n"
            "example, as msgpack examples that `streamlr train --brokers` reads by default\n"
            "(msgpack input is sent as it is, once checked).\n"
            "Records that train would reject are reported as FILE:LINE: reason and skipped.\n"
            "\n"
            "  --brokers LIST       bootstrap servers\n"
            "  --topic T            destination topic\n"
            "  --format F           input format: msgpack | vw | libsvm | criteo (default:\n"
            "                       from the file extension); --from F is the same\n"
            "  --raw                send records as they are, unchecked: text lines (train then\n"
            "                       needs the same --format; blank lines are skipped) or\n"
            "                       msgpack objects\n"
            "  --hashed             send hashed examples in the compact msgpack form, with\n"
            "  -b, --bits N         ... N index bits (default %d) and\n"
            "  -q, --quadratic AB   ... -q interactions added here (train without -q then)\n"
            "  --per-message N      pack N examples (--raw: records) into each message\n"
            "                       (default 1)\n"
            "  --key-field tag|NS   message key: the example's tag, or the name of its first\n"
            "                       feature in namespace NS (e.g. a user id), so that all\n"
            "                       examples with one key land in one partition in order;\n"
            "                       default: no key (librdkafka spreads messages)\n"
            "  --partition P        send everything to partition P\n"
            "  --rate N             at most N messages per second\n"
            "  -X key=value         any librdkafka producer property (repeatable)\n"
            "  --kafka-config FILE  librdkafka properties file (key=value lines)\n"
            "  --quiet              no progress line\n"
            "  -h, --help           this text\n"
            "\n"
            "Exit status: 0 every message delivered, 1 a delivery failed or input could not\n"
            "be read, 2 usage error.  SIGINT/SIGTERM stop reading and flush what was sent.\n",
            SLR_BITS_DEFAULT);
}

typedef struct producer {
    rd_kafka_t *rk;
    const char *topic;
    int32_t partition;
    bool raw, hashed, quiet, tty;
    const char *key_field;
    uint32_t per_message;
    double rate;

    slr_decoder *dec;
    slr_raw_example rawex;
    slr_example ex;
    slr_buf msg;            /* the message being built */
    uint32_t in_msg;        /* examples in it */
    char key[256];
    size_t key_len;

    unsigned long long sent, examples, bad, delivered, failed;
    double started, last_progress;
} producer;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    producer *p = opaque;
    if (!m->err) {
        p->delivered++;
        return;
    }
    if (p->failed++ < FAILURES_SHOWN)
        fprintf(stderr, "streamlr produce: delivery to %s failed: %s\n", p->topic,
                rd_kafka_err2str(m->err));
}

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    (void)level;
    fprintf(stderr, "streamlr produce: kafka: %s: %s\n", fac, buf);
}

static void progress(producer *p, bool final)
{
    double t = now();
    if (p->quiet || (!final && t - p->last_progress < (p->tty ? 0.5 : 5.0)))
        return;
    p->last_progress = t;
    double secs = t - p->started;
    fprintf(stderr, "%sstreamlr produce: %llu messages (%llu examples) in %.1f s, %.0f/s; "
                    "delivered %llu, failed %llu, bad records %llu%s",
            p->tty ? "\r" : "", p->sent, p->examples, secs, secs > 0 ? (double)p->sent / secs : 0,
            p->delivered, p->failed, p->bad, p->tty && !final ? "" : "\n");
}

/* Hand the message built so far to librdkafka, waiting while its queue is full. */
static bool send_message(producer *p)
{
    if (p->msg.len == 0)
        return true;
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            p->rk, RD_KAFKA_V_TOPIC(p->topic), RD_KAFKA_V_PARTITION(p->partition),
            RD_KAFKA_V_VALUE(p->msg.data, p->msg.len),
            RD_KAFKA_V_KEY(p->key_len ? p->key : NULL, p->key_len),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            break;
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            fprintf(stderr, "streamlr produce: cannot send to %s: %s\n", p->topic,
                    rd_kafka_err2str(e));
            return false;
        }
        rd_kafka_poll(p->rk, 50); /* deliveries free room in the queue */
        progress(p, false);
    }
    p->sent++;
    slr_buf_reset(&p->msg);
    p->in_msg = 0;
    p->key_len = 0;
    if ((p->sent & 1023) == 0) {
        rd_kafka_poll(p->rk, 0);
        progress(p, false);
    }
    if (p->rate > 0 && (p->rate < 1000 || (p->sent & 63) == 0)) {
        double wait = p->started + (double)p->sent / p->rate - now();
        if (wait > 0) {
            struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
            nanosleep(&ts, NULL);
        }
    }
    return true;
}

static void set_key(producer *p, const char *s, size_t n)
{
    if (n > sizeof p->key)
        n = sizeof p->key;
    memcpy(p->key, s, n);
    p->key_len = n;
}

/* The --key-field of the decoded example, if it has one. */
static void pick_key(producer *p)
{
    const slr_raw_example *r = &p->rawex;
    if (!strcmp(p->key_field, "tag")) {
        if (r->tag_len)
            set_key(p, r->tag, r->tag_len);
        return;
    }
    size_t n = strlen(p->key_field);
    for (uint32_t i = 0; i < r->n_features; i++) {
        const slr_raw_feature *f = &r->features[i];
        if (f->name && f->ns_len == n && !memcmp(f->ns, p->key_field, n)) {
            set_key(p, f->name, f->name_len);
            return;
        }
    }
}

/* One decoded example (record: its bytes): check, encode, and send when the
 * message is full.  A msgpack record that passes the checks is sent as it
 * is: re-encoding it would only cost time. */
static bool add_example(producer *p, const char *record, size_t len, bool is_msgpack,
                        const char *where, unsigned long long line)
{
    slr_error err;
    slr_status st = slr_example_from_raw(&p->ex, &p->rawex, &err);
    if (st == SLR_OK)
        st = p->hashed     ? slr_encode_hashed(&p->msg, &p->ex, &err)
             : is_msgpack ? slr_buf_append(&p->msg, record, len, &err)
                          : slr_encode_raw(&p->msg, SLR_FORMAT_MSGPACK, &p->rawex, &err);
    if (st == SLR_ERR_NOMEM) {
        fprintf(stderr, "streamlr produce: out of memory\n");
        return false;
    }
    if (st != SLR_OK) {
        p->bad++;
        fprintf(stderr, "%s:%llu: %s; skipped\n", where, line, err.msg);
        return true;
    }
    if (p->key_field && p->in_msg == 0)
        pick_key(p);
    p->examples++;
    return ++p->in_msg < p->per_message || send_message(p);
}

/* --raw: records (non-blank lines, or msgpack objects) as they are,
 * --per-message of them to a message (text lines joined by newlines). */
static bool add_record(producer *p, const char *s, size_t n, bool text)
{
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r'))
        n--;
    if (n == 0)
        return true;
    slr_error err;
    if ((p->in_msg && text && slr_buf_append(&p->msg, "\n", 1, &err) != SLR_OK) ||
        slr_buf_append(&p->msg, s, n, &err) != SLR_OK) {
        fprintf(stderr, "streamlr produce: out of memory\n");
        return false;
    }
    p->examples++;
    return ++p->in_msg < p->per_message || send_message(p);
}

static bool produce_files(producer *p, const char *const *files, uint32_t n, slr_format fmt)
{
    slr_file_source *src;
    slr_error err;
    slr_status st = slr_file_source_open(&src, files, n, slr_format_is_text(fmt), &err);
    bool ok = st == SLR_OK;
    if (!ok)
        fprintf(stderr, "streamlr produce: %s\n", err.msg);
    while (ok && !cli_stop_requested && !slr_file_source_done(src)) {
        const char *buf;
        size_t len;
        bool at_end;
        slr_file_source_window(src, &buf, &len, &at_end);
        if (len == 0) {
            if (!at_end)
                st = slr_file_source_fill(src, &err);
            else if (!slr_file_source_next_file(src, &err, &st) && st == SLR_OK)
                break;
            if (st != SLR_OK) {
                fprintf(stderr, "streamlr produce: %s\n", err.msg);
                ok = false;
            }
            continue;
        }
        slr_file_position pos;
        slr_file_source_position(src, &pos);
        size_t used = 0;
        slr_decode_result r = p->raw ? slr_decoder_frame(p->dec, buf, len, at_end, &used)
                                     : slr_decoder_next(p->dec, buf, len, at_end, &used, &p->rawex,
                                                        &err);
        if (r == SLR_DECODE_NEED_MORE) {
            if ((st = slr_file_source_fill(src, &err)) != SLR_OK) {
                fprintf(stderr, "streamlr produce: %s\n", err.msg);
                ok = false;
            }
            continue;
        }
        unsigned long long where = slr_format_is_text(fmt) ? pos.line : pos.offset;
        if (p->raw) {
            if (r == SLR_DECODE_EXAMPLE)
                ok = add_record(p, buf, used, slr_format_is_text(fmt));
            else if (p->bad++ == 0) /* not msgpack: skipped byte by byte, reported once */
                fprintf(stderr, "%s@%llu: not msgpack data; skipping bytes\n",
                        slr_file_source_path(src), where);
        } else {
            if (r == SLR_DECODE_EXAMPLE) {
                ok = add_example(p, buf, used, fmt == SLR_FORMAT_MSGPACK,
                                 slr_file_source_path(src), where);
            } else if (r == SLR_DECODE_BAD) {
                p->bad++;
                fprintf(stderr, "%s%s%llu: %s; skipped\n", slr_file_source_path(src),
                        slr_format_is_text(fmt) ? ":" : "@", where, err.msg);
            }
        }
        slr_file_source_consume(src, used);
    }
    if (ok)
        ok = send_message(p); /* a last, partly filled message */
    slr_file_source_close(src);
    return ok;
}

int slr_cmd_produce(int argc, char **argv)
{
    enum {
        OPT_BROKERS = 1000, OPT_TOPIC, OPT_FORMAT, OPT_RAW, OPT_HASHED, OPT_PER_MESSAGE,
        OPT_KEY_FIELD, OPT_PARTITION, OPT_RATE, OPT_KAFKA_CONFIG, OPT_QUIET,
    };
    static const struct option longopts[] = {
        {"brokers", required_argument, 0, OPT_BROKERS},
        {"topic", required_argument, 0, OPT_TOPIC},
        {"format", required_argument, 0, OPT_FORMAT},
        {"from", required_argument, 0, OPT_FORMAT}, /* convert's spelling */
        {"raw", no_argument, 0, OPT_RAW},
        {"hashed", no_argument, 0, OPT_HASHED},
        {"bits", required_argument, 0, 'b'},
        {"quadratic", required_argument, 0, 'q'},
        {"per-message", required_argument, 0, OPT_PER_MESSAGE},
        {"key-field", required_argument, 0, OPT_KEY_FIELD},
        {"partition", required_argument, 0, OPT_PARTITION},
        {"rate", required_argument, 0, OPT_RATE},
        {"kafka-config", required_argument, 0, OPT_KAFKA_CONFIG},
        {"quiet", no_argument, 0, OPT_QUIET},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    producer p = {.partition = RD_KAFKA_PARTITION_UA, .per_message = 1};
    cli_kafka_conf conf = {0};
    const char *brokers = NULL;
    bool have_format = false, have_hashing = false;
    slr_format fmt = SLR_FORMAT_VW;
    slr_hashing hashing;
    slr_hashing_init(&hashing, SLR_BITS_DEFAULT);
    slr_error err;
    uint32_t u;
    int rc = 2;
    slr_raw_example_init(&p.rawex);
    slr_example_init(&p.ex, &hashing); /* keeps a pointer: -b and -q below still apply */
    slr_buf_init(&p.msg);
    optind = 1;
    int c;
    while ((c = cli_getopt(argc, argv, "b:q:X:h", longopts)) != -1) {
        switch (c) {
        case OPT_BROKERS: brokers = optarg; break;
        case OPT_TOPIC: p.topic = optarg; break;
        case OPT_FORMAT:
            if (slr_format_parse(optarg, &fmt, &err) != SLR_OK) {
                fprintf(stderr, "streamlr produce: %s\n", err.msg);
                goto done;
            }
            have_format = true;
            break;
        case OPT_RAW: p.raw = true; break;
        case OPT_HASHED: p.hashed = true; break;
        case 'b':
            if (!cli_u32("produce", "-b", optarg, &u) || u < SLR_BITS_MIN || u > SLR_BITS_MAX) {
                fprintf(stderr, "streamlr produce: -b must be %d..%d\n", SLR_BITS_MIN, SLR_BITS_MAX);
                goto done;
            }
            hashing.bits = u;
            have_hashing = true;
            break;
        case 'q':
            if (slr_hashing_add_quadratic(&hashing, optarg, &err) != SLR_OK) {
                fprintf(stderr, "streamlr produce: %s\n", err.msg);
                goto done;
            }
            have_hashing = true;
            break;
        case OPT_PER_MESSAGE:
            if (!cli_u32("produce", "--per-message", optarg, &p.per_message) || !p.per_message ||
                p.per_message > 1000000) {
                fprintf(stderr, "streamlr produce: --per-message must be 1..1000000\n");
                goto done;
            }
            break;
        case OPT_KEY_FIELD: p.key_field = optarg; break;
        case OPT_PARTITION:
            if (!cli_u32("produce", "--partition", optarg, &u) || u > INT32_MAX)
                goto done;
            p.partition = (int32_t)u;
            break;
        case OPT_RATE:
            if (!cli_double("produce", "--rate", optarg, &p.rate) || p.rate <= 0) {
                fprintf(stderr, "streamlr produce: --rate must be a positive number of messages "
                                "per second\n");
                goto done;
            }
            break;
        case 'X':
            if (!cli_kafka_conf_add(&conf, "produce", optarg))
                goto done;
            break;
        case OPT_KAFKA_CONFIG:
            if (!cli_kafka_conf_file(&conf, "produce", optarg))
                goto done;
            break;
        case OPT_QUIET: p.quiet = true; break;
        case 'h': usage(stdout); rc = 0; goto done;
        default: goto done; /* cli_getopt said what was wrong */
        }
    }
    const char *const *files = (const char *const *)argv + optind;
    uint32_t n_files = (uint32_t)(argc - optind);
    if (!p.topic || n_files == 0) {
        fprintf(stderr, "streamlr produce: give --topic T and at least one FILE (- for stdin)\n");
        goto done;
    }
    if (!have_format && (!strcmp(files[0], "-") || !slr_format_guess(files[0], &fmt))) {
        fprintf(stderr, "streamlr produce: cannot tell the format of %s; use --format\n", files[0]);
        goto done;
    }
    if (p.raw && (p.hashed || p.key_field)) {
        fprintf(stderr, "streamlr produce: --raw sends records as they are: it takes no "
                        "--hashed or --key-field\n");
        goto done;
    }
    if (have_hashing && !p.hashed) {
        fprintf(stderr, "streamlr produce: -b and -q apply with --hashed\n");
        goto done;
    }

    char errstr[512];
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    rd_kafka_conf_set(kc, "client.id", "streamlr-produce", NULL, 0);
    /* big batches: many small messages are the normal load here */
    rd_kafka_conf_set(kc, "linger.ms", "20", NULL, 0);
    rd_kafka_conf_set(kc, "batch.num.messages", "100000", NULL, 0);
    rd_kafka_conf_set(kc, "queue.buffering.max.messages", "1000000", NULL, 0);
    if (brokers && rd_kafka_conf_set(kc, "bootstrap.servers", brokers, errstr, sizeof errstr)) {
        fprintf(stderr, "streamlr produce: --brokers: %s\n", errstr);
        rd_kafka_conf_destroy(kc);
        goto done;
    }
    if (!cli_kafka_conf_apply(&conf, "produce", kc)) {
        rd_kafka_conf_destroy(kc);
        goto done;
    }
    rd_kafka_conf_set_opaque(kc, &p);
    rd_kafka_conf_set_dr_msg_cb(kc, on_delivery);
    rd_kafka_conf_set_log_cb(kc, on_log);
    if (!(p.rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, errstr, sizeof errstr))) {
        fprintf(stderr, "streamlr produce: %s\n", errstr);
        rd_kafka_conf_destroy(kc);
        rc = 1;
        goto done;
    }
    /* Ask for the topic's partitions now: otherwise librdkafka learns them
     * from its once-a-second scan, and the first messages wait for it. */
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(p.rk, p.topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t me = rkt ? rd_kafka_metadata(p.rk, 0, rkt, &md, 10000)
                                 : rd_kafka_last_error();
    if (!me && md->topic_cnt == 1)
        me = md->topics[0].err;
    if (me)
        fprintf(stderr, "streamlr produce: topic %s: %s (sending anyway)\n", p.topic,
                rd_kafka_err2str(me));
    if (md)
        rd_kafka_metadata_destroy(md);
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    if (slr_decoder_create(&p.dec, fmt, &err) != SLR_OK) {
        fprintf(stderr, "streamlr produce: %s\n", err.msg);
        rc = 1;
        goto done;
    }
    cli_catch_stop_signals();

    p.tty = isatty(STDERR_FILENO);
    p.started = p.last_progress = now();
    bool ok = produce_files(&p, files, n_files, fmt);
    /* every message must come back delivered or failed; a stop bounds the wait */
    double flush_until = cli_stop_requested ? now() + 10 : 0;
    while (rd_kafka_outq_len(p.rk) > 0 && (!flush_until || now() < flush_until)) {
        rd_kafka_flush(p.rk, 500);
        progress(&p, false);
        if (cli_stop_requested && !flush_until)
            flush_until = now() + 10;
    }
    int unconfirmed = rd_kafka_outq_len(p.rk);
    progress(&p, true);
    if (p.failed > FAILURES_SHOWN)
        fprintf(stderr, "streamlr produce: %llu deliveries failed in all\n", p.failed);
    if (unconfirmed)
        fprintf(stderr, "streamlr produce: %d messages not confirmed when stopping\n", unconfirmed);
    rc = ok && !p.failed && !unconfirmed ? 0 : 1;
done:
    if (p.rk)
        rd_kafka_destroy(p.rk);
    slr_decoder_destroy(p.dec);
    slr_raw_example_free(&p.rawex);
    slr_example_free(&p.ex);
    slr_buf_free(&p.msg);
    cli_kafka_conf_free(&conf);
    return rc;
}
