/* check_sync_txn.c - train --sync-topic with --sync-transactions on
 * (docs/SYNC_PROTOCOL.md, "Transactions") against the embedded broker, in
 * this process so that errors can be injected into the broker's answers
 * (rd_kafka_mock_push_request_errors, as librdkafka's own
 * tests/0105-transactions_mock.c does):
 *  - a member publishing in transactions ends with the model, bit for bit,
 *    of the same member without them, and says how many it committed;
 *  - an abortable error on a commit (the broker lost the producer's state)
 *    makes it abort and publish the transaction again; the group refusing
 *    the offsets sent to the transaction (a stale generation), however
 *    often, makes it publish the deltas again without them: the model is
 *    still exact (the mock shows the aborted copies to every
 *    reader, which drops them as repeats: what a real cluster hides);
 *  - a fenced producer (another process took the member's transactional.id)
 *    stops the member, saying it is a zombie, without a final model.
 * The mock writes no transaction markers and does not fence a
 * transactional.id taken over by InitProducerId, so hiding aborted records
 * and fencing by id are shown here through their effects on the member
 * only. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kafka_testutil.h"
#include "streamlr/checkpoint.h"
#include "streamlr/kafka.h"
#include "streamlr/learner.h"
#include "streamlr/train.h"

#define BITS 14
#include "sync_testutil.h"
#define PARTS 4
#define SLICE 25
/* Kafka's API keys (librdkafka's RD_KAFKAP_* are not public) */
#define API_END_TXN 26
#define API_TXN_OFFSET_COMMIT 28

/* messages in partition p: several rounds, ending mid-slice */
static int part_size(int p) { return 60 + 17 * p; }

typedef struct member {
    char log[1 << 16];
    size_t log_len;
    slr_status st;
    slr_error err;
    char model[4200];
} member;

static void on_log(void *ctx, const char *msg)
{
    member *m = ctx;
    int n = snprintf(m->log + m->log_len, sizeof m->log - m->log_len, "%s\n", msg);
    if (n > 0 && m->log_len + (size_t)n < sizeof m->log)
        m->log_len += (size_t)n;
}

/* A broker with a data topic of PARTS partitions of msgpack examples, and
 * a directory for the models (test_rmtree it). */
static char *make_data(test_cluster *c, char *topic, size_t n)
{
    test_cluster_start(c, 1);
    test_unique(topic, n, "clicks");
    test_topic(c, topic, PARTS);
    test_rng r = {.s = 42};
    slr_buf b;
    slr_buf_init(&b);
    unsigned long long id = 0;
    for (int p = 0; p < PARTS; p++)
        for (int i = 0; i < part_size(p); i++) {
            slr_buf_reset(&b);
            test_example(&b, &r, id++, 0);
            test_produce(c, topic, p, b.data, b.len);
        }
    slr_buf_free(&b);
    test_flush(c);
    return test_mkdtemp("sync-txn");
}

/* One member holding every partition, to the end of the input, through a
 * fresh sync topic; its final model goes to dir/name.slr. */
static void run_member(test_cluster *c, const char *data, const char *dir, const char *name,
                       bool transactions, member *m)
{
    memset(m, 0, sizeof *m);
    char group[128], sync_topic[128];
    test_unique(group, sizeof group, name);
    test_unique(sync_topic, sizeof sync_topic, "model");
    test_topic(c, sync_topic, 1);
    snprintf(m->model, sizeof m->model, "%s/%s.slr", dir, name);
    slr_train_options opt;
    slr_train_options_init(&opt);
    slr_hashing_init(&opt.learner.hashing, BITS);
    opt.learner.l1 = 1e-4;
    opt.learner.l2 = 1e-3;
    opt.format = SLR_FORMAT_MSGPACK;
    opt.model_out = m->model;
    opt.threads = 1;
    opt.log = on_log;
    opt.log_ctx = m;
    slr_kafka_options k;
    slr_kafka_options_init(&k);
    const char *topics[] = {data};
    const char *config[] = {TEST_KAFKA_CONFIG, "transaction.timeout.ms=60000"};
    k.brokers = c->bootstraps;
    k.topics = topics;
    k.n_topics = 1;
    k.group = group;
    k.config = config;
    k.n_config = sizeof config / sizeof config[0];
    k.exit_at_end = true;
    k.sync_topic = sync_topic;
    k.sync_every = SLICE;
    k.sync_snapshot_every = 0; /* the first commit holds deltas */
    k.sync_transactions = transactions;
    slr_train_result res;
    m->st = slr_train_kafka(&opt, &k, &res, &m->err);
    if (getenv("KAFKA_LOGS"))
        fprintf(stderr, "---- %s (%s):\n%s----\n", name, m->err.msg, m->log);
}

/* The member's final model as bytes (every coordinate's state). */
static unsigned char *final_model(const member *m, size_t *len)
{
    slr_learner *l;
    slr_job_state st;
    slr_job_state_init(&st);
    slr_error err;
    ck_assert_msg(slr_checkpoint_read(m->model, &l, &st, &err) == SLR_OK, "%s", err.msg);
    unsigned char *b = model_bytes(l, len);
    slr_learner_destroy(l);
    slr_job_state_free(&st);
    return b;
}

static void assert_same_model(const member *a, const member *b)
{
    size_t la, lb;
    unsigned char *ma = final_model(a, &la), *mb = final_model(b, &lb);
    ck_assert_uint_eq(la, lb);
    size_t at = 0;
    while (at < la && ma[at] == mb[at])
        at++;
    ck_assert_msg(at == la, "models differ at coordinate %zu", at / 16);
    free(ma);
    free(mb);
}

static void assert_ok(const member *m)
{
    ck_assert_msg(m->st == SLR_OK, "%s\n%s", m->err.msg, m->log);
}

/* "sync: N transactions committed, A aborted ..." from the member's log */
static void transactions(const member *m, unsigned long long *committed,
                         unsigned long long *aborted)
{
    const char *line = strstr(m->log, "transactions committed");
    ck_assert_msg(line, "no count of transactions in the log:\n%s", m->log);
    while (line > m->log && line[-1] != '\n')
        line--;
    ck_assert_int_eq(sscanf(line, "sync: %llu transactions committed, %llu aborted", committed,
                            aborted), 2);
}

/* "... repeats dropped: I identical, D different, L late" from the log */
static void repeats(const member *m, unsigned long long *identical, unsigned long long *different,
                    unsigned long long *late)
{
    const char *at = strstr(m->log, "repeats dropped: ");
    ck_assert_msg(at, "no count of repeats in the log:\n%s", m->log);
    ck_assert_int_eq(sscanf(at, "repeats dropped: %llu identical, %llu different, %llu late",
                            identical, different, late), 3);
}

START_TEST(transactions_same_model)
{
    test_cluster c;
    char data[128];
    char *dir = make_data(&c, data, sizeof data);
    member *off = malloc(sizeof *off), *on = malloc(sizeof *on), *m = malloc(sizeof *m);

    run_member(&c, data, dir, "off", false, off);
    assert_ok(off);
    ck_assert_ptr_null(strstr(off->log, "transactions committed"));

    run_member(&c, data, dir, "on", true, on);
    assert_ok(on);
    assert_same_model(off, on);
    unsigned long long committed, aborted;
    transactions(on, &committed, &aborted);
    /* one transaction a round at least: every round's deltas were in one */
    int longest = part_size(PARTS - 1);
    ck_assert_uint_ge(committed, (unsigned long long)(longest / SLICE + 1));
    ck_assert_uint_eq(aborted, 0);

    /* the broker lost the producer's state at the first commit, and at its
     * second attempt (the abort in between is an EndTxn too) */
    rd_kafka_mock_push_request_errors(c.mc, API_END_TXN, 3,
                                      RD_KAFKA_RESP_ERR_UNKNOWN_PRODUCER_ID,
                                      RD_KAFKA_RESP_ERR_NO_ERROR,
                                      RD_KAFKA_RESP_ERR_UNKNOWN_PRODUCER_ID);
    run_member(&c, data, dir, "abort", true, m);
    assert_ok(m);
    assert_same_model(off, m);
    transactions(m, &committed, &aborted);
    ck_assert_uint_eq(aborted, 2);
    /* the mock shows the aborted copies to readers (a real cluster hides
     * them): dropped as repeats, none of them different */
    unsigned long long identical, different, late;
    repeats(m, &identical, &different, &late);
    ck_assert_uint_gt(identical + late, 0);
    ck_assert_uint_eq(different, 0);

    /* the group refuses the offsets, a generation the coordinator has left,
     * as often as a commit may abort in a row: the deltas go again without
     * them, and each later commit that meets one of these does the same */
    rd_kafka_mock_push_request_errors(c.mc, API_TXN_OFFSET_COMMIT, 5,
                                      RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION,
                                      RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION,
                                      RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION,
                                      RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION,
                                      RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION);
    run_member(&c, data, dir, "generation", true, m);
    assert_ok(m);
    assert_same_model(off, m);
    transactions(m, &committed, &aborted);
    ck_assert_uint_ge(aborted, 1);
    ck_assert_uint_le(aborted, 5);

    free(off);
    free(on);
    free(m);
    test_rmtree(dir);
    free(dir);
    test_cluster_stop(&c);
}
END_TEST

START_TEST(fenced_member_stops)
{
    test_cluster c;
    char data[128];
    char *dir = make_data(&c, data, sizeof data);
    member *m = malloc(sizeof *m);
    /* another producer took the member's transactional.id over */
    rd_kafka_mock_push_request_errors(c.mc, API_END_TXN, 1,
                                      RD_KAFKA_RESP_ERR_PRODUCER_FENCED);
    run_member(&c, data, dir, "zombie", true, m);
    ck_assert_int_eq(m->st, SLR_ERR_KAFKA);
    ck_assert_msg(strstr(m->err.msg, "was fenced") && strstr(m->err.msg, "zombie") &&
                      strstr(m->err.msg, "transactional.id \"streamlr.zombie-"),
                  "%s", m->err.msg);
    struct stat sb;
    ck_assert_msg(stat(m->model, &sb) != 0, "a fenced member wrote its final model");
    free(m);
    test_rmtree(dir);
    free(dir);
    test_cluster_stop(&c);
}
END_TEST

int main(void)
{
    make_theta();
    Suite *s = suite_create("sync_txn");
    TCase *tc = tcase_create("transactions");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, transactions_same_model);
    tcase_add_test(tc, fenced_member_stops);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
