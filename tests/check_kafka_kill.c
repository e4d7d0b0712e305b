/* check_kafka_kill.c - `streamlr train --brokers` killed and restarted.
 *
 * The real command runs as a child process against the embedded broker (in
 * this process, loopback).  It is killed with SIGKILL at random points --
 * a random time after a random checkpoint appears, so anywhere between or
 * during checkpoints -- and restarted with the same command line each
 * time; once it is stopped with SIGTERM instead, which must end it cleanly
 * (exit 0) with a final checkpoint whose offsets are then committed.  The
 * model it ends with must be bit-identical (`streamlr export` output equal)
 * to that of an uninterrupted run over the same single-partition topic. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "kafka_testutil.h"
#include "streamlr/checkpoint.h"

#define MESSAGES 30000

static char *tmp;
static test_cluster cluster;
static char topic[128];

static const char *streamlr_bin(void)
{
    const char *b = getenv("STREAMLR");
    return b && *b ? b : "tools/streamlr";
}

/* Start `streamlr train` on the topic with its checkpoints in dir. */
static pid_t start_train(const char *group, const char *dir, const char *model,
                         const char *log)
{
    const char *argv[] = {streamlr_bin(), "train", "--brokers", cluster.bootstraps, "--topic",
                          topic, "--group", group, "--partitions", "all", "--exit-at-end",
                          "-X", "fetch.wait.max.ms=10", "-X", "session.timeout.ms=6000",
                          "-b", "18", "-q", "ui", "--l1", "1e-6", "--l2", "1e-6",
                          "--checkpoint-dir", dir, "--checkpoint-every", "1000", "--quiet",
                          "-f", model, NULL};
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, STDERR_FILENO);
            dup2(fd, STDOUT_FILENO);
        }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

/* Wait for pid, at most `seconds`; returns its wait status. */
static int wait_exit(pid_t pid, double seconds)
{
    double until = test_now() + seconds;
    int status;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return status;
        if (test_now() > until) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            ck_abort_msg("streamlr train (pid %d) did not end within %.0f s", (int)pid, seconds);
        }
        test_sleep_ms(5);
    }
}

/* The highest checkpoint sequence number in dir (0 if none). */
static unsigned long long newest_checkpoint(const char *dir)
{
    DIR *d = opendir(dir);
    unsigned long long best = 0;
    if (!d)
        return 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        unsigned long long seq;
        if (sscanf(de->d_name, "ckpt-%llu.slr", &seq) == 1 && seq > best)
            best = seq;
    }
    closedir(d);
    return best;
}

/* Wait until dir holds a checkpoint numbered at least `seq`, or pid ends
 * (true if it is still running). */
static bool wait_checkpoint(pid_t pid, const char *dir, unsigned long long seq, int *status)
{
    double until = test_now() + 120;
    while (test_now() < until) {
        if (newest_checkpoint(dir) >= seq)
            return true;
        if (waitpid(pid, status, WNOHANG) == pid)
            return false;
        test_sleep_ms(2);
    }
    ck_abort_msg("no checkpoint %llu in %s within 120 s", seq, dir);
    return false;
}

/* `streamlr export model` into out. */
static void export_model(const char *model, const char *out)
{
    char cmd[8400];
    snprintf(cmd, sizeof cmd, "'%s' export '%s' > '%s'", streamlr_bin(), model, out);
    ck_assert_int_eq(system(cmd), 0);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    ck_assert_int_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void setup(void)
{
    tmp = test_mkdtemp("kafka-kill");
    test_cluster_start(&cluster, 1);
    test_unique(topic, sizeof topic, "kill");
    test_topic(&cluster, topic, 1);
    test_rng r = {.s = 2024};
    slr_buf b;
    slr_buf_init(&b);
    for (unsigned long long i = 0; i < MESSAGES; i++) {
        slr_buf_reset(&b);
        test_example(&b, &r, i, 0);
        test_produce(&cluster, topic, 0, b.data, b.len);
    }
    slr_buf_free(&b);
    test_flush(&cluster);
}

static void teardown(void)
{
    test_cluster_stop(&cluster);
    if (!getenv("KEEP_TMP")) test_rmtree(tmp); else fprintf(stderr, "kept %s\n", tmp);
    free(tmp);
}

START_TEST(test_kill_restart_bit_identical)
{
    char path[8][4200];
    const char *ref_dir = path[0], *ref_model = path[1], *dir = path[2], *model = path[3],
               *log = path[4], *ref_txt = path[5], *run_txt = path[6];
    snprintf(path[0], 4200, "%s/ref", tmp);
    snprintf(path[1], 4200, "%s/ref.model", tmp);
    snprintf(path[2], 4200, "%s/ck", tmp);
    snprintf(path[3], 4200, "%s/run.model", tmp);
    snprintf(path[4], 4200, "%s/train.log", tmp);
    snprintf(path[5], 4200, "%s/ref.txt", tmp);
    snprintf(path[6], 4200, "%s/run.txt", tmp);
    char group_ref[128], group[128];
    test_unique(group_ref, sizeof group_ref, "kill-ref");
    test_unique(group, sizeof group, "kill-run");

    int status = wait_exit(start_train(group_ref, ref_dir, ref_model, log), 120);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "reference run failed (see %s)",
                  log);
    slr_metrics m;
    ck_assert_int_eq(test_checkpoint_offset(ref_dir, topic, 0, &m), MESSAGES);
    ck_assert_uint_eq(m.examples, MESSAGES);

    /* A run killed after its checkpoint became durable but before it
     * committed leaves the group behind the checkpoint.  The next run must
     * commit the checkpoint's offsets even when it has nothing left to
     * apply: here, the reference checkpoints under a group that never
     * committed anything. */
    char group_copy[128], cmd[9000];
    test_unique(group_copy, sizeof group_copy, "kill-copy");
    snprintf(cmd, sizeof cmd, "cp -R '%s' '%s/copy'", ref_dir, tmp);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s/copy", tmp);
    status = wait_exit(start_train(group_copy, cmd, model, log), 120);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the copied run failed (see %s)",
                  log);
    ck_assert_int_eq(test_committed(&cluster, group_copy, topic, 0), MESSAGES);

    /* SIGKILL at random points */
    test_rng r = {.s = (uint64_t)time(NULL)};
    int kills = 0;
    for (int round = 0; round < 8; round++) {
        pid_t pid = start_train(group, dir, model, log);
        unsigned long long target = newest_checkpoint(dir) + 1 + test_rng_below(&r, 4);
        if (wait_checkpoint(pid, dir, target, &status)) {
            test_sleep_ms((int)test_rng_below(&r, 25));
            kill(pid, SIGKILL);
            status = wait_exit(pid, 30);
        }
        if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
            kills++;
        else
            ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                          "a run failed (see %s)", log);
    }
    ck_assert_msg(kills >= 5, "only %d of 8 runs were killed before they finished", kills);

    /* SIGTERM: finish the message in hand, final checkpoint, commit, exit 0 */
    pid_t pid = start_train(group, dir, model, log);
    unsigned long long before = newest_checkpoint(dir);
    if (wait_checkpoint(pid, dir, before + 1, &status)) {
        kill(pid, SIGTERM);
        status = wait_exit(pid, 30);
    }
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "SIGTERM did not end the run cleanly (see %s)", log);
    int64_t stopped_at = test_checkpoint_offset(dir, topic, 0, NULL);
    ck_assert_int_eq(test_committed(&cluster, group, topic, 0), stopped_at);

    /* and to the end */
    status = wait_exit(start_train(group, dir, model, log), 120);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the last run failed (see %s)",
                  log);
    ck_assert_int_eq(test_checkpoint_offset(dir, topic, 0, &m), MESSAGES);
    ck_assert_uint_eq(m.examples, MESSAGES);
    ck_assert_int_eq(test_committed(&cluster, group, topic, 0), MESSAGES);

    export_model(ref_model, ref_txt);
    export_model(model, run_txt);
    size_t n_ref, n_run;
    char *a = slurp(ref_txt, &n_ref), *b = slurp(run_txt, &n_run);
    size_t lines = 0;
    for (size_t i = 0; i < n_ref; i++)
        lines += a[i] == '\n';
    ck_assert_msg(lines > 1000, "the reference model is nearly empty (%zu weights)", lines);
    ck_assert_msg(n_ref == n_run && !memcmp(a, b, n_ref),
                  "the restarted model differs from the uninterrupted one (%d kills)", kills);
    free(a);
    free(b);
}
END_TEST

static Suite *kill_suite(void)
{
    Suite *s = suite_create("kafka-kill");
    TCase *tc = tcase_create("restarts");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_kill_restart_bit_identical);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(kill_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
