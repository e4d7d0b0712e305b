/* check_predict_kafka.c - `streamlr predict --brokers`: scoring a topic into
 * another one, against the embedded broker (librdkafka's mock cluster in
 * this process, loopback only).
 *
 * The real command runs as a child process.  What it produces is read back
 * from the output topic and compared, as text, with what `streamlr predict
 * -p` writes for the same examples from a file: one output message per
 * input message, in order, with the input's key and headers, and the
 * group's committed offsets at the end of what was scored.  With --follow,
 * a training job beside it (fed through a pipe) writes a newer checkpoint
 * while it runs: every output message names the checkpoint that scored it
 * (streamlr.model), its predictions must be that checkpoint's, and the
 * messages produced after the switch must carry the newer one.  Refused
 * deliveries must stop the job without committing past them, and two
 * scorers of one group must answer every message across a rebalance. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "kafka_testutil.h"

#define MAX_MSGS 4096

static char *tmp;
static test_cluster cluster;

static const char *streamlr_bin(void)
{
    const char *b = getenv("STREAMLR");
    return b && *b ? b : "tools/streamlr";
}

/* ------------------------------------------------------------ processes and files */

/* Start argv with stdout and stderr appended to log; stdin from in_fd if >= 0. */
static pid_t spawn(const char *const *argv, const char *log, int in_fd)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, STDERR_FILENO);
            dup2(fd, STDOUT_FILENO);
        }
        if (in_fd >= 0)
            dup2(in_fd, STDIN_FILENO);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 2)
            buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    buf[len] = '\0';
    return buf;
}

/* Wait for pid, at most `seconds`; returns its wait status (the log on failure). */
static int wait_exit(pid_t pid, double seconds, const char *log)
{
    double until = test_now() + seconds;
    int status;
    for (;;) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            return status;
        if (test_now() > until) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            char *l = slurp(log);
            fprintf(stderr, "---- %s:\n%s----\n", log, l);
            free(l);
            ck_abort_msg("pid %d did not end within %.0f s", (int)pid, seconds);
        }
        test_sleep_ms(10);
    }
}

static void write_file(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

/* `streamlr predict -i model -d data --format F --threads T -p out`, and
 * what it wrote. */
static char *file_predictions_as(const char *model, const char *data, const char *format,
                                 int threads, const char *name)
{
    char out[4200], cmd[13000];
    snprintf(out, sizeof out, "%s/%s", tmp, name);
    snprintf(cmd, sizeof cmd,
             "'%s' predict -i '%s' -d '%s' --format %s --threads %d -p '%s' --quiet",
             streamlr_bin(), model, data, format, threads, out);
    ck_assert_int_eq(system(cmd), 0);
    return slurp(out);
}

static char *file_predictions(const char *model, const char *data, const char *name)
{
    return file_predictions_as(model, data, "vw", 1, name);
}

/* One deterministic VW line (labelled), with a newline. */
static int vw_line(char *buf, size_t size, test_rng *r)
{
    int u = (int)floor(pow(300.0, test_rng_unif(r)));
    int it = (int)floor(pow(100.0, test_rng_unif(r)));
    double price = 3 * test_rng_unif(r);
    double z = -1.0 + (u % 7 == 0 ? 1.5 : 0) + (it % 5 == 0 ? -1 : 0.5) + 0.3 * price;
    int y = test_rng_unif(r) < 1.0 / (1.0 + exp(-z)) ? 1 : -1;
    return snprintf(buf, size, "%d |u u%d |i i%d c%d |x price:%.4f\n", y, u, it, it % 13, price);
}

/* ------------------------------------------------------------ Kafka */

static void produce(const char *topic, int32_t partition, const char *key, const char *value,
                    size_t len, const char *trace)
{
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            cluster.producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
            RD_KAFKA_V_KEY(key, strlen(key)), RD_KAFKA_V_VALUE((void *)value, len),
            RD_KAFKA_V_HEADER("trace", trace, -1), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            return;
        ck_assert_int_eq(e, RD_KAFKA_RESP_ERR__QUEUE_FULL);
        rd_kafka_poll(cluster.producer, 10);
    }
}

typedef struct out_msg {
    int64_t offset;
    char *key, *value, *source, *model, *trace;
} out_msg;

static char *header(rd_kafka_headers_t *h, const char *name)
{
    const void *v;
    size_t n;
    if (!h || rd_kafka_header_get_last(h, name, &v, &n) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return strdup("");
    return strndup(v, n);
}

/* Every message of topic[partition] (up to its high watermark) into out. */
static size_t read_topic(const char *topic, int32_t partition, out_msg *out, size_t max)
{
    int64_t lo, hi;
    test_watermarks(&cluster, topic, partition, &lo, &hi);
    ck_assert_int_le(hi, (int64_t)max);
    rd_kafka_t *rk = test_observer(&cluster, "reader");
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition)->offset = RD_KAFKA_OFFSET_BEGINNING;
    ck_assert_int_eq(rd_kafka_assign(rk, l), 0);
    rd_kafka_topic_partition_list_destroy(l);
    size_t n = 0;
    double until = test_now() + 30;
    while ((int64_t)n < hi && test_now() < until) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m)
            continue;
        if (!m->err) {
            ck_assert_int_eq(m->offset, (int64_t)n); /* in order, none missing */
            rd_kafka_headers_t *h = NULL;
            rd_kafka_message_headers(m, &h);
            out[n].offset = m->offset;
            out[n].key = strndup(m->key ? m->key : "", m->key_len);
            out[n].value = strndup(m->payload ? m->payload : "", m->len);
            out[n].source = header(h, "streamlr.source");
            out[n].model = header(h, "streamlr.model");
            out[n].trace = header(h, "trace");
            n++;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_destroy(rk);
    ck_assert_int_eq((int64_t)n, hi);
    return n;
}

static void free_msgs(out_msg *m, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(m[i].key);
        free(m[i].value);
        free(m[i].source);
        free(m[i].model);
        free(m[i].trace);
    }
}

/* Wait until topic[partition] holds n messages. */
static void wait_messages(const char *topic, int32_t partition, int64_t n, pid_t pid,
                          const char *log)
{
    double until = test_now() + 60;
    int64_t lo, hi = 0;
    while (test_now() < until) {
        test_watermarks(&cluster, topic, partition, &lo, &hi);
        if (hi >= n)
            return;
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid)
            break;
        test_sleep_ms(50);
    }
    char *l = slurp(log);
    fprintf(stderr, "---- %s:\n%s----\n", log, l);
    free(l);
    ck_abort_msg("%s[%d] holds %lld messages, expected %lld", topic, (int)partition,
                 (long long)hi, (long long)n);
}

static bool log_has(const char *log, const char *what)
{
    char *l = slurp(log);
    bool found = strstr(l, what) != NULL;
    free(l);
    return found;
}

/* Unique input and output topics (with `parts` partitions each) and group. */
typedef struct names {
    char in[128], out[128], group[128];
} names;

static void make_names(names *n, const char *what, int parts)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%s-in", what);
    test_unique(n->in, sizeof n->in, buf);
    snprintf(buf, sizeof buf, "%s-out", what);
    test_unique(n->out, sizeof n->out, buf);
    test_unique(n->group, sizeof n->group, what);
    test_topic(&cluster, n->in, parts);
    test_topic(&cluster, n->out, parts);
}

/* tmp/model.slr, trained on `examples` lines of vw_line's law (from r). */
static void train_model(char *model, size_t size, test_rng *r, int examples)
{
    char path[4200], cmd[13000];
    size_t cap = 1 << 20, len = 0;
    char *train = malloc(cap);
    for (int i = 0; i < examples; i++)
        len += (size_t)vw_line(train + len, cap - len, r);
    snprintf(path, sizeof path, "%s/train.vw", tmp);
    write_file(path, train, len);
    free(train);
    snprintf(model, size, "%s/model.slr", tmp);
    snprintf(cmd, sizeof cmd, "'%s' train -d '%s' -b 16 -q ui -f '%s' --quiet 2>/dev/null",
             streamlr_bin(), path, model);
    ck_assert_int_eq(system(cmd), 0);
}

static void setup(void)
{
    tmp = test_mkdtemp("predict-kafka");
    test_cluster_start(&cluster, 1);
}

static void teardown(void)
{
    test_cluster_stop(&cluster);
    test_rmtree(tmp);
    free(tmp);
}

/* ------------------------------------------------------------ tests */

#define PARTS 2
#define MESSAGES 300

/* Messages of 1-3 examples (one bad record among them) over two
 * partitions, scored with --exit-at-end into partitions of the same number:
 * each output partition is, message by message, what `predict -p` writes
 * for that input partition's examples, and the offsets are committed. */
START_TEST(test_predict_topic_matches_file)
{
    char model[4200], log[4200];
    names nm;
    make_names(&nm, "scores", PARTS);
    const char *in = nm.in, *out = nm.out, *group = nm.group;
    /* a model trained on other examples of the same law */
    test_rng r = {7};
    train_model(model, sizeof model, &r, 2000);

    /* the messages, and each partition's examples as a file */
    char *part_data[PARTS];
    size_t part_len[PARTS] = {0}, part_msgs[PARTS] = {0};
    for (int p = 0; p < PARTS; p++)
        part_data[p] = malloc(1 << 20);
    for (int j = 0; j < MESSAGES; j++) {
        char value[1024], key[32], trace[32];
        size_t vlen = 0;
        int k = 1 + (int)test_rng_below(&r, 3);
        for (int e = 0; e < k; e++) {
            char line[512];
            if (j == 101 && e == 0) /* one record no decoder takes: "nan" in both */
                vlen += (size_t)snprintf(value + vlen, sizeof value - vlen, "x1 |u bad\n");
            else if (vw_line(line, sizeof line, &r) && j % 3 == 0) { /* a VW tag: r<j>_<e> */
                const char *bar = strchr(line, '|');
                vlen += (size_t)snprintf(value + vlen, sizeof value - vlen, "%.*s'r%d_%d%s",
                                         (int)(bar - line), line, j, e, bar);
            } else
                vlen += (size_t)snprintf(value + vlen, sizeof value - vlen, "%s", line);
        }
        if (j % 5 == 0) /* the last line without its newline: still a record */
            value[--vlen] = '\0';
        int p = j % PARTS;
        snprintf(key, sizeof key, "m%d", j);
        snprintf(trace, sizeof trace, "t%d", j);
        produce(in, p, key, value, vlen, trace);
        memcpy(part_data[p] + part_len[p], value, vlen);
        part_len[p] += vlen;
        part_data[p][part_len[p]++] = '\n';
        part_msgs[p]++;
    }
    test_flush(&cluster);

    snprintf(log, sizeof log, "%s/predict.log", tmp);
    char letters[4200];
    snprintf(letters, sizeof letters, "%s/letters.jsonl", tmp);
    const char *argv[] = {streamlr_bin(), "predict", "-i", model, "--brokers", cluster.bootstraps,
                          "--topic", in, "--group", group, "--output-topic", out,
                          "--format", "vw", "--partitions", "all", "--exit-at-end",
                          "--output-partition", "same", "--dead-letter", letters,
                          "-X", "fetch.wait.max.ms=10", "-X", "session.timeout.ms=6000", NULL};
    int status = wait_exit(spawn(argv, log, -1), 60, log);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "predict failed: %s",
                  slurp(log));
    ck_assert_msg(log_has(log, "bad records = 1"), "%s", slurp(log));
    ck_assert_msg(log_has(log, "test AUC"), "labelled input reports its AUC");
    /* the bad record's dead letter: message 101 is partition 1's 51st */
    char *dl = slurp(letters), want_src[256];
    snprintf(want_src, sizeof want_src, "\"source\":\"%s[1]\",\"offset\":50,", in);
    ck_assert_msg(strstr(dl, want_src) != NULL, "dead letters: %s", dl);
    ck_assert_ptr_eq(strchr(dl, '\n'), dl + strlen(dl) - 1); /* one letter */
    free(dl);

    out_msg *msgs = calloc(MAX_MSGS, sizeof *msgs);
    for (int p = 0; p < PARTS; p++) {
        char data[4200], name[64];
        snprintf(data, sizeof data, "%s/in-%d.vw", tmp, p);
        write_file(data, part_data[p], part_len[p]);
        snprintf(name, sizeof name, "expected-%d.txt", p);
        char *expected = file_predictions(model, data, name);

        size_t n = read_topic(out, p, msgs, MAX_MSGS);
        ck_assert_uint_eq(n, part_msgs[p]);
        size_t got_len = 0;
        char *got = malloc(1 << 20);
        for (size_t i = 0; i < n; i++) {
            int j = (int)(i * PARTS) + p; /* the input message it answers */
            char want[256];
            snprintf(want, sizeof want, "m%d", j);
            ck_assert_str_eq(msgs[i].key, want);
            snprintf(want, sizeof want, "t%d", j);
            ck_assert_str_eq(msgs[i].trace, want);
            snprintf(want, sizeof want, "%s[%d]@%zu", in, p, i);
            ck_assert_str_eq(msgs[i].source, want);
            ck_assert_str_eq(msgs[i].model, "model.slr");
            if (j % 3 == 0) { /* the tag follows the probability, as VW writes it */
                snprintf(want, sizeof want, " r%d_0\n", j);
                ck_assert_msg(strstr(msgs[i].value, want) != NULL, "message %d: no tag in %s", j,
                              msgs[i].value);
            }
            size_t vl = strlen(msgs[i].value);
            memcpy(got + got_len, msgs[i].value, vl);
            got_len += vl;
        }
        got[got_len] = '\0';
        ck_assert_msg(!strcmp(got, expected), "partition %d: the topic's predictions differ from "
                      "predict -p's", p);
        if (p == 101 % PARTS)
            ck_assert_ptr_nonnull(strstr(got, "nan\n"));
        free(got);
        free(expected);
        free_msgs(msgs, n);
        ck_assert_int_eq(test_committed(&cluster, group, in, p), (int64_t)part_msgs[p]);
        free(part_data[p]);
    }
    free(msgs);
}
END_TEST

/* Every input format, through the CLI: a `streamlr synth` stream (libsvm
 * lines written here) packed three records to a message by `streamlr
 * produce --raw`, scored from the topic and from the file, the file with
 * one thread and with two: the topic's messages, concatenated, are the
 * file's predictions byte for byte. */
static const struct {
    const char *name, *format, *synth; /* synth NULL: libsvm, written here */
} FORMATS[] = {
    {"vw", "vw", "--format vw"},
    {"criteo", "criteo", "--format criteo"},
    {"msgpack", "msgpack", "--format msgpack"},
    {"compact", "msgpack", "--format msgpack --hashed -b 18"},
    {"libsvm", "libsvm", NULL},
};
#define FORMAT_RECORDS 400
#define PER_MESSAGE 3

START_TEST(test_predict_topic_matches_file_each_format)
{
    const char *name = FORMATS[_i].name, *format = FORMATS[_i].format;
    char data[4200], model[4200], log[4200], cmd[13000];
    names nm;
    make_names(&nm, name, 1);
    snprintf(data, sizeof data, "%s/data.%s", tmp, name);
    snprintf(model, sizeof model, "%s/model-%s.slr", tmp, name);
    snprintf(log, sizeof log, "%s/predict-%s.log", tmp, name);
    if (FORMATS[_i].synth) {
        snprintf(cmd, sizeof cmd, "'%s' synth -n %d --seed 5 %s -o '%s' 2>/dev/null",
                 streamlr_bin(), FORMAT_RECORDS, FORMATS[_i].synth, data);
        ck_assert_int_eq(system(cmd), 0);
    } else {
        FILE *f = fopen(data, "w");
        ck_assert_ptr_nonnull(f);
        test_rng r = {5};
        for (int i = 0; i < FORMAT_RECORDS; i++) {
            int a = 1 + (int)test_rng_below(&r, 50), b = 51 + (int)test_rng_below(&r, 50);
            double v = test_rng_unif(&r);
            int y = test_rng_unif(&r) < (a % 3 ? 0.7 : 0.2) ? 1 : -1;
            fprintf(f, "%+d %d:1 %d:%.4f\n", y, a, b, v);
        }
        ck_assert_int_eq(fclose(f), 0);
    }
    snprintf(cmd, sizeof cmd, "'%s' train -d '%s' --format %s -b 18 -f '%s' --quiet 2>/dev/null",
             streamlr_bin(), data, format, model);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(cmd, sizeof cmd,
             "'%s' produce --brokers %s --topic %s --partition 0 --raw --format %s "
             "--per-message %d --quiet '%s'",
             streamlr_bin(), cluster.bootstraps, nm.in, format, PER_MESSAGE, data);
    ck_assert_int_eq(system(cmd), 0);

    const char *argv[] = {streamlr_bin(), "predict", "-i", model, "--brokers", cluster.bootstraps,
                          "--topic", nm.in, "--group", nm.group, "--output-topic", nm.out,
                          "--format", format, "--partitions", "all", "--exit-at-end",
                          "-X", "fetch.wait.max.ms=10", NULL};
    int status = wait_exit(spawn(argv, log, -1), 60, log);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "predict failed: %s",
                  slurp(log));

    out_msg *msgs = calloc(MAX_MSGS, sizeof *msgs);
    size_t n = read_topic(nm.out, 0, msgs, MAX_MSGS);
    ck_assert_uint_eq(n, (FORMAT_RECORDS + PER_MESSAGE - 1) / PER_MESSAGE);
    size_t cap = 1 << 20, len = 0;
    char *got = malloc(cap);
    for (size_t i = 0; i < n; i++) {
        size_t vl = strlen(msgs[i].value), lines = 0;
        for (size_t k = 0; k < vl; k++)
            lines += msgs[i].value[k] == '\n';
        ck_assert_uint_eq(lines, i + 1 < n ? PER_MESSAGE : FORMAT_RECORDS - PER_MESSAGE * i);
        ck_assert_uint_lt(len + vl, cap);
        memcpy(got + len, msgs[i].value, vl);
        len += vl;
    }
    got[len] = '\0';
    for (int threads = 1; threads <= 2; threads++) {
        char out[64];
        snprintf(out, sizeof out, "expected-%s-%d.txt", name, threads);
        char *expected = file_predictions_as(model, data, format, threads, out);
        ck_assert_msg(strstr(expected, "nan") == NULL, "%s: a bad record: %s", name, expected);
        ck_assert_msg(!strcmp(got, expected), "%s: the topic's predictions differ from "
                      "predict -p --threads %d's", name, threads);
        free(expected);
    }
    ck_assert_int_eq(test_committed(&cluster, nm.group, nm.in, 0), (int64_t)n);
    free(got);
    free_msgs(msgs, n);
    free(msgs);
}
END_TEST

#define FIRST 60
#define LATER 60

/* A training job beside the scorer writes checkpoint 1, the scorer starts
 * with it; checkpoint 2 appears while it runs: what is produced after the
 * switch is scored with checkpoint 2, everything with the checkpoint its
 * header names.  SIGTERM then ends it cleanly with its offsets committed. */
START_TEST(test_predict_follows_newer_checkpoint)
{
    char dir[4100], log[4200], tlog[4200];
    names nm;
    make_names(&nm, "follow", 1);
    const char *in = nm.in, *out = nm.out, *group = nm.group;
    snprintf(dir, sizeof dir, "%s/ckpt", tmp);
    snprintf(log, sizeof log, "%s/predict.log", tmp);
    snprintf(tlog, sizeof tlog, "%s/train.log", tmp);

    /* training from a pipe: a checkpoint every 500 examples */
    int fds[2];
    ck_assert_int_eq(pipe2(fds, O_CLOEXEC), 0); /* no child but the trainer may hold it */
    const char *targv[] = {streamlr_bin(), "train", "-d", "-", "--format", "vw", "-b", "16",
                           "--checkpoint-dir", dir, "--checkpoint-every", "500",
                           "--checkpoint-keep", "10", "--quiet", NULL};
    pid_t trainer = spawn(targv, tlog, fds[0]);
    close(fds[0]);
    FILE *feed = fdopen(fds[1], "w");
    test_rng r = {11};
    char line[256];
    for (int i = 0; i < 500; i++) {
        vw_line(line, sizeof line, &r);
        fputs(line, feed);
    }
    fflush(feed);
    char first[4200], second[4200];
    snprintf(first, sizeof first, "%s/ckpt-%020d.slr", dir, 1);
    snprintf(second, sizeof second, "%s/ckpt-%020d.slr", dir, 2);
    struct stat sb;
    double until = test_now() + 30;
    while (stat(first, &sb) != 0 && test_now() < until)
        test_sleep_ms(20);
    ck_assert_msg(stat(first, &sb) == 0, "no %s", first);

    /* the examples to score, as one file per phase for the expected values */
    char *phase[2];
    size_t phase_len[2] = {0};
    char sent[FIRST + LATER][256];
    for (int j = 0; j < FIRST + LATER; j++)
        vw_line(sent[j], sizeof sent[j], &r);

    for (int j = 0; j < FIRST; j++) {
        char key[32];
        snprintf(key, sizeof key, "m%d", j);
        produce(in, 0, key, sent[j], strlen(sent[j]), "-");
    }
    test_flush(&cluster);
    const char *argv[] = {streamlr_bin(), "predict", "--follow", dir, "--follow-interval", "0.05",
                          "--brokers", cluster.bootstraps, "--topic", in, "--group", group,
                          "--output-topic", out, "--format", "vw", "--partitions", "all",
                          "-X", "fetch.wait.max.ms=10", "-X", "session.timeout.ms=6000", NULL};
    pid_t pid = spawn(argv, log, -1);
    wait_messages(out, 0, FIRST, pid, log);

    /* checkpoint 2: 500 more examples learned */
    for (int i = 0; i < 500; i++) {
        vw_line(line, sizeof line, &r);
        fputs(line, feed);
    }
    fflush(feed);
    until = test_now() + 30;
    while (!log_has(log, "now scoring with") && test_now() < until)
        test_sleep_ms(20);
    ck_assert_msg(log_has(log, "now scoring with"), "no switch: %s", slurp(log));
    fclose(feed); /* the trainer ends */
    int tstatus = wait_exit(trainer, 30, tlog);
    ck_assert_msg(WIFEXITED(tstatus) && WEXITSTATUS(tstatus) == 0, "train: %s", slurp(tlog));

    for (int j = FIRST; j < FIRST + LATER; j++) {
        char key[32];
        snprintf(key, sizeof key, "m%d", j);
        produce(in, 0, key, sent[j], strlen(sent[j]), "-");
    }
    test_flush(&cluster);
    wait_messages(out, 0, FIRST + LATER, pid, log);
    kill(pid, SIGTERM);
    int status = wait_exit(pid, 30, log);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "predict: %s", slurp(log));
    ck_assert_int_eq(test_committed(&cluster, group, in, 0), FIRST + LATER);

    /* every example as a file, scored by each checkpoint */
    char data[4200];
    snprintf(data, sizeof data, "%s/sent.vw", tmp);
    FILE *f = fopen(data, "w");
    for (int j = 0; j < FIRST + LATER; j++)
        fputs(sent[j], f);
    fclose(f);
    phase[0] = file_predictions(first, data, "by-first.txt");
    phase[1] = file_predictions(second, data, "by-second.txt");
    (void)phase_len;

    out_msg *msgs = calloc(MAX_MSGS, sizeof *msgs);
    size_t n = read_topic(out, 0, msgs, MAX_MSGS);
    ck_assert_int_eq(n, FIRST + LATER);
    int differ = 0;
    char *cur[2] = {phase[0], phase[1]};
    for (size_t j = 0; j < n; j++) {
        char want[64];
        snprintf(want, sizeof want, "m%zu", j);
        ck_assert_str_eq(msgs[j].key, want);
        char *nl[2];
        for (int k = 0; k < 2; k++) {
            nl[k] = strchr(cur[k], '\n');
            ck_assert_ptr_nonnull(nl[k]);
            *nl[k] = '\0';
        }
        /* the checkpoint named in the header scored it, bit for bit */
        int k = !strcmp(msgs[j].model, strrchr(second, '/') + 1) ? 1 : 0;
        if (k == 0)
            ck_assert_str_eq(msgs[j].model, strrchr(first, '/') + 1);
        if (j < FIRST)
            ck_assert_int_eq(k, 0); /* checkpoint 2 did not exist yet */
        else
            ck_assert_int_eq(k, 1); /* produced after the switch */
        char got[64];
        snprintf(got, sizeof got, "%s", msgs[j].value);
        ck_assert_str_eq(got, strcat(strcpy(want, cur[k]), "\n"));
        differ += strcmp(cur[0], cur[1]) != 0;
        for (int q = 0; q < 2; q++)
            cur[q] = nl[q] + 1;
    }
    ck_assert_msg(differ > 0, "the two checkpoints score alike: the test shows nothing");
    free_msgs(msgs, n);
    free(msgs);
    free(phase[0]);
    free(phase[1]);
}
END_TEST


#define SWITCH_PER_MESSAGE 3
#define SWITCH_ROUND 5 /* messages produced at a time */
#define SWITCH_MAX_MSGS 3000

/* --follow switching to a checkpoint of another hashing (-b 16, then a
 * fresh -b 18 run in the same directory) while messages of three examples
 * keep coming: the model changes only between messages -- every output
 * message's three lines are, bit for bit, the scores of the checkpoint its
 * streamlr.model header names (an example hashed for the old model, or a
 * message split between models, would not be) -- and once the newer
 * checkpoint scores, the older never does again. */
START_TEST(test_predict_follow_switches_between_messages)
{
    char dir[4100], log[4200], cmd[13000], a_path[4200], first[4200], second[4200];
    names nm;
    make_names(&nm, "switch", 1);
    snprintf(dir, sizeof dir, "%s/swck", tmp);
    snprintf(log, sizeof log, "%s/predict.log", tmp);
    snprintf(first, sizeof first, "%s/ckpt-%020d.slr", dir, 1);
    snprintf(second, sizeof second, "%s/ckpt-%020d.slr", dir, 2);
    test_rng r = {21};
    for (int k = 0; k < 2; k++) { /* a.vw trains checkpoint 1, b.vw checkpoint 2 */
        char line[256];
        snprintf(a_path, sizeof a_path, "%s/%c.vw", tmp, 'a' + k);
        FILE *f = fopen(a_path, "w");
        ck_assert_ptr_nonnull(f);
        for (int i = 0; i < 600; i++) {
            vw_line(line, sizeof line, &r);
            fputs(line, f);
        }
        ck_assert_int_eq(fclose(f), 0);
    }
    snprintf(cmd, sizeof cmd, "'%s' train -d '%s/a.vw' -b 16 --checkpoint-dir '%s' --quiet",
             streamlr_bin(), tmp, dir);
    ck_assert_int_eq(system(cmd), 0);

    const char *argv[] = {streamlr_bin(), "predict", "--follow", dir, "--follow-interval", "0.02",
                          "--brokers", cluster.bootstraps, "--topic", nm.in, "--group", nm.group,
                          "--output-topic", nm.out, "--format", "vw", "--partitions", "all",
                          "-X", "fetch.wait.max.ms=10", NULL};
    pid_t pid = spawn(argv, log, -1);
    size_t cap = 1 << 20, len = 0;
    char *sent = malloc(cap);
    int msgs = 0, after = -1;
    while (msgs + SWITCH_ROUND <= SWITCH_MAX_MSGS && after < 5) {
        for (int j = 0; j < SWITCH_ROUND; j++, msgs++) {
            char value[1024], key[32];
            size_t vlen = 0;
            for (int e = 0; e < SWITCH_PER_MESSAGE; e++)
                vlen += (size_t)vw_line(value + vlen, sizeof value - vlen, &r);
            ck_assert_uint_lt(len + vlen, cap);
            memcpy(sent + len, value, vlen);
            len += vlen;
            snprintf(key, sizeof key, "m%d", msgs);
            produce(nm.in, 0, key, value, vlen, "-");
        }
        test_flush(&cluster);
        if (msgs == 3 * SWITCH_ROUND) { /* checkpoint 1 has scored these: now checkpoint 2 */
            wait_messages(nm.out, 0, msgs, pid, log);
            snprintf(cmd, sizeof cmd,
                     "'%s' train -d '%s/b.vw' -b 18 --checkpoint-dir '%s' --start-over --quiet",
                     streamlr_bin(), tmp, dir);
            ck_assert_int_eq(system(cmd), 0);
        }
        if (after >= 0 || log_has(log, "now scoring with"))
            after++; /* rounds produced after the switch */
        test_sleep_ms(20);
    }
    ck_assert_msg(after >= 5, "no switch to checkpoint 2: %s", slurp(log));
    wait_messages(nm.out, 0, msgs, pid, log);
    kill(pid, SIGTERM);
    int status = wait_exit(pid, 30, log);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "predict: %s", slurp(log));

    char data[4200];
    snprintf(data, sizeof data, "%s/sent.vw", tmp);
    write_file(data, sent, len);
    free(sent);
    char *by[2] = {file_predictions(first, data, "by-1.txt"),
                   file_predictions(second, data, "by-2.txt")};
    const char *model_name[2] = {strrchr(first, '/') + 1, strrchr(second, '/') + 1};
    out_msg *out = calloc(SWITCH_MAX_MSGS, sizeof *out);
    size_t n = read_topic(nm.out, 0, out, SWITCH_MAX_MSGS);
    ck_assert_uint_eq(n, (size_t)msgs);
    char *cur[2] = {by[0], by[1]};
    int scored_by[2] = {0, 0}, differ = 0, last = 0;
    for (size_t i = 0; i < n; i++) {
        int k = !strcmp(out[i].model, model_name[1]);
        ck_assert_msg(k || !strcmp(out[i].model, model_name[0]), "message %zu: model %s", i,
                      out[i].model);
        ck_assert_msg(k >= last, "message %zu: checkpoint 1 again after checkpoint 2", i);
        last = k;
        scored_by[k]++;
        size_t lines_len[2];
        for (int q = 0; q < 2; q++) { /* this message's three lines from each file */
            char *e = cur[q];
            for (int l = 0; l < SWITCH_PER_MESSAGE; l++) {
                e = strchr(e, '\n');
                ck_assert_ptr_nonnull(e);
                e++;
            }
            lines_len[q] = (size_t)(e - cur[q]);
        }
        ck_assert_msg(strlen(out[i].value) == lines_len[k] &&
                          !memcmp(out[i].value, cur[k], lines_len[k]),
                      "message %zu (%s): %s is not its scores %.*s", i, out[i].model,
                      out[i].value, (int)lines_len[k], cur[k]);
        differ += lines_len[0] != lines_len[1] || memcmp(cur[0], cur[1], lines_len[0]) != 0;
        cur[0] += lines_len[0];
        cur[1] += lines_len[1];
    }
    ck_assert_int_ge(scored_by[0], 3 * SWITCH_ROUND);
    ck_assert_int_ge(scored_by[1], 5 * SWITCH_ROUND);
    ck_assert_msg(differ == (int)n, "only %d of %zu messages score differently under the two "
                  "checkpoints: the test shows less than it should", differ, n);
    free_msgs(out, n);
    free(out);
    free(by[0]);
    free(by[1]);
}
END_TEST

#define RETRIED 200

/* Output deliveries refused by the broker: the job stops with an error and
 * commits no offset past a message whose predictions were not delivered;
 * run again, it scores from the committed offset on, so that every input
 * message ends up answered on the output topic (at-least-once). */
START_TEST(test_predict_failed_delivery_not_committed)
{
    char model[4200], log[4200];
    names nm;
    make_names(&nm, "refused", 1);
    const char *in = nm.in, *out = nm.out, *group = nm.group;
    test_rng r = {3};
    char line[256], key[32];
    train_model(model, sizeof model, &r, 500);
    for (int j = 0; j < RETRIED; j++) {
        vw_line(line, sizeof line, &r);
        snprintf(key, sizeof key, "m%d", j);
        produce(in, 0, key, line, strlen(line), "-");
    }
    test_flush(&cluster);

    /* the next produce request (the scorer's first: the test's producer is
     * done) is refused, with an error no retry can help */
    rd_kafka_mock_push_request_errors(cluster.mc, 0 /* Produce */, 1,
                                      RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    snprintf(log, sizeof log, "%s/predict.log", tmp);
    const char *argv[] = {streamlr_bin(), "predict", "-i", model, "--brokers", cluster.bootstraps,
                          "--topic", in, "--group", group, "--output-topic", out,
                          "--format", "vw", "--partitions", "all", "--exit-at-end",
                          "-X", "fetch.wait.max.ms=10", "-X", "session.timeout.ms=6000", NULL};
    int status = wait_exit(spawn(argv, log, -1), 60, log);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 1, "predict should fail: %s",
                  slurp(log));
    /* refused at delivery, or -- when the refusal reaches librdkafka's
     * metadata first (the topic then looks gone) -- already when producing */
    ck_assert_msg(log_has(log, "delivering predictions") ||
                      log_has(log, "producing the predictions of"),
                  "%s", slurp(log));
    out_msg *msgs = calloc(MAX_MSGS, sizeof *msgs);
    size_t n = read_topic(out, 0, msgs, MAX_MSGS);
    /* committed: at most the start of the first message without its output */
    bool *answered = calloc(RETRIED, sizeof *answered);
    char prefix[256];
    snprintf(prefix, sizeof prefix, "%s[0]@", in);
    for (size_t i = 0; i < n; i++) {
        ck_assert_int_eq(strncmp(msgs[i].source, prefix, strlen(prefix)), 0);
        int off = atoi(msgs[i].source + strlen(prefix));
        ck_assert(off >= 0 && off < RETRIED);
        answered[off] = true;
    }
    int64_t committed = test_committed(&cluster, group, in, 0);
    int64_t first_unanswered = 0;
    while (first_unanswered < RETRIED && answered[first_unanswered])
        first_unanswered++;
    ck_assert_int_lt(first_unanswered, RETRIED); /* some outputs were refused */
    ck_assert_int_le(committed, first_unanswered);
    free_msgs(msgs, n);

    /* the same command again: scores from the committed offset, all delivered */
    status = wait_exit(spawn(argv, log, -1), 60, log);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "predict: %s", slurp(log));
    ck_assert_int_eq(test_committed(&cluster, group, in, 0), RETRIED);
    n = read_topic(out, 0, msgs, MAX_MSGS);
    memset(answered, 0, RETRIED * sizeof *answered);
    for (size_t i = 0; i < n; i++)
        answered[atoi(msgs[i].source + strlen(prefix))] = true;
    for (int j = 0; j < RETRIED; j++)
        ck_assert_msg(answered[j], "input offset %d has no predictions on %s", j, out);
    free_msgs(msgs, n);
    free(msgs);
    free(answered);
}
END_TEST

#define GROUP_PARTS 4
#define ROUND 200

static int64_t total_messages(const char *topic, int parts)
{
    int64_t total = 0, lo, hi;
    for (int p = 0; p < parts; p++) {
        test_watermarks(&cluster, topic, p, &lo, &hi);
        total += hi;
    }
    return total;
}

/* Wait (bounded) until cond(arg) holds; the logs on failure. */
static void wait_until(bool (*cond)(void *), void *arg, const char *what, const char *log_a,
                       const char *log_b)
{
    double until = test_now() + 60;
    while (!cond(arg) && test_now() < until)
        test_sleep_ms(50);
    if (cond(arg))
        return;
    for (int i = 0; i < 2; i++) {
        char *l = slurp(i ? log_b : log_a);
        fprintf(stderr, "---- %s:\n%s----\n", i ? log_b : log_a, l);
        free(l);
    }
    ck_abort_msg("timed out waiting for %s", what);
}

typedef struct group_state {
    const names *nm;
    int64_t want;
    const char *log;
} group_state;

static bool outputs_reach(void *arg)
{
    group_state *g = arg;
    return total_messages(g->nm->out, GROUP_PARTS) >= g->want;
}

static bool all_committed(void *arg)
{
    group_state *g = arg;
    for (int p = 0; p < GROUP_PARTS; p++)
        if (test_committed(&cluster, g->nm->group, g->nm->in, p) != g->want)
            return false;
    return true;
}

static bool log_says(void *arg)
{
    group_state *g = arg;
    return log_has(g->log, "kafka: releasing");
}

static void produce_round(const names *nm, test_rng *r, int round)
{
    for (int j = 0; j < ROUND; j++) {
        char line[256], key[32];
        vw_line(line, sizeof line, r);
        snprintf(key, sizeof key, "r%dm%d", round, j);
        produce(nm->in, j % GROUP_PARTS, key, line, strlen(line), "-");
    }
    test_flush(&cluster);
}

/* Two scorers in one group: the second joins while the first runs, and
 * partitions move between them (the first delivers and commits what it
 * scored before letting them go).  Every input message is answered on the
 * output topic, every partition's committed offset reaches its end, and
 * SIGTERM ends both with status 0. */
START_TEST(test_predict_group_rebalance)
{
    char model[4200], log_a[4200], log_b[4200];
    names nm;
    make_names(&nm, "rebalance", GROUP_PARTS);
    test_rng r = {5};
    train_model(model, sizeof model, &r, 500);
    snprintf(log_a, sizeof log_a, "%s/a.log", tmp);
    snprintf(log_b, sizeof log_b, "%s/b.log", tmp);
    const char *argv[] = {streamlr_bin(), "predict", "-i", model, "--brokers", cluster.bootstraps,
                          "--topic", nm.in, "--group", nm.group, "--output-topic", nm.out,
                          "--format", "vw", "-X", "fetch.wait.max.ms=10", "-X",
                          "session.timeout.ms=6000", NULL};
    produce_round(&nm, &r, 0);
    pid_t a = spawn(argv, log_a, -1);
    group_state g = {&nm, ROUND, log_a};
    wait_until(outputs_reach, &g, "the first scorer's outputs", log_a, log_b);
    pid_t b = spawn(argv, log_b, -1);
    wait_until(log_says, &g, "the first scorer to release partitions", log_a, log_b);
    produce_round(&nm, &r, 1);
    g.want = 2 * ROUND / GROUP_PARTS;
    wait_until(all_committed, &g, "every partition committed to its end", log_a, log_b);
    kill(a, SIGTERM);
    kill(b, SIGTERM);
    int sa = wait_exit(a, 30, log_a), sb = wait_exit(b, 30, log_b);
    ck_assert_msg(WIFEXITED(sa) && WEXITSTATUS(sa) == 0, "first scorer: %s", slurp(log_a));
    ck_assert_msg(WIFEXITED(sb) && WEXITSTATUS(sb) == 0, "second scorer: %s", slurp(log_b));
    ck_assert_msg(log_has(log_b, "kafka: assigned " ), "%s", slurp(log_b));

    bool answered[GROUP_PARTS][2 * ROUND / GROUP_PARTS] = {{false}};
    out_msg *msgs = calloc(MAX_MSGS, sizeof *msgs);
    for (int p = 0; p < GROUP_PARTS; p++) {
        size_t n = read_topic(nm.out, p, msgs, MAX_MSGS);
        for (size_t i = 0; i < n; i++) {
            int part, off;
            char fmt[200];
            snprintf(fmt, sizeof fmt, "%s[%%d]@%%d", nm.in);
            ck_assert_int_eq(sscanf(msgs[i].source, fmt, &part, &off), 2);
            ck_assert(part >= 0 && part < GROUP_PARTS && off >= 0 && off < 2 * ROUND / GROUP_PARTS);
            answered[part][off] = true;
        }
        free_msgs(msgs, n);
    }
    free(msgs);
    for (int p = 0; p < GROUP_PARTS; p++)
        for (int o = 0; o < 2 * ROUND / GROUP_PARTS; o++)
            ck_assert_msg(answered[p][o], "%s[%d]@%d has no predictions", nm.in, p, o);
}
END_TEST

static bool partition0_committed(void *arg)
{
    group_state *g = arg;
    return test_committed(&cluster, g->nm->group, g->nm->in, 0) == g->want;
}

/* --exit-at-end with more scorers than partitions: the one given no
 * partition (the sticky assignor leaves it with the first) says why it
 * waits and ends once the group has committed the partition to its end. */
START_TEST(test_predict_exit_at_end_without_partitions)
{
    char model[4200], log_a[4200], log_b[4200];
    names nm;
    make_names(&nm, "idle", 1);
    test_rng r = {7};
    train_model(model, sizeof model, &r, 200);
    snprintf(log_a, sizeof log_a, "%s/a.log", tmp);
    snprintf(log_b, sizeof log_b, "%s/b.log", tmp);
    const char *argv[] = {streamlr_bin(), "predict", "-i", model, "--brokers", cluster.bootstraps,
                          "--topic", nm.in, "--group", nm.group, "--output-topic", nm.out,
                          "--format", "vw", "-X", "fetch.wait.max.ms=10", "-X",
                          "session.timeout.ms=6000", "-X",
                          "partition.assignment.strategy=cooperative-sticky", NULL, NULL};
    for (int j = 0; j < 50; j++) {
        char line[256], key[32];
        vw_line(line, sizeof line, &r);
        snprintf(key, sizeof key, "m%d", j);
        produce(nm.in, 0, key, line, strlen(line), "-");
    }
    test_flush(&cluster);
    pid_t a = spawn(argv, log_a, -1); /* a long-running scorer */
    group_state g = {&nm, 50, log_a};
    wait_until(partition0_committed, &g, "the first scorer's commit", log_a, log_b);
    argv[sizeof argv / sizeof argv[0] - 2] = "--exit-at-end";
    pid_t b = spawn(argv, log_b, -1);
    int sb = wait_exit(b, 40, log_b);
    ck_assert_msg(WIFEXITED(sb) && WEXITSTATUS(sb) == 0, "second scorer: %s", slurp(log_b));
    ck_assert_msg(log_has(log_b, "no partition assigned to this member"), "%s", slurp(log_b));
    kill(a, SIGTERM);
    int sa = wait_exit(a, 30, log_a);
    ck_assert_msg(WIFEXITED(sa) && WEXITSTATUS(sa) == 0, "first scorer: %s", slurp(log_a));
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("predict_kafka");
    TCase *tc = tcase_create("stream");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_predict_topic_matches_file);
    tcase_add_loop_test(tc, test_predict_topic_matches_file_each_format, 0,
                        (int)(sizeof FORMATS / sizeof FORMATS[0]));
    tcase_add_test(tc, test_predict_follows_newer_checkpoint);
    tcase_add_test(tc, test_predict_follow_switches_between_messages);
    tcase_add_test(tc, test_predict_failed_delivery_not_committed);
    tcase_add_test(tc, test_predict_group_rebalance);
    tcase_add_test(tc, test_predict_exit_at_end_without_partitions);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
