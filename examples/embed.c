/* embed.c - libstreamlr inside your own program: train from examples you
 * already have in memory, keep the progressive metrics, write a model file
 * that `streamlr predict -i` (or slr_checkpoint_read) can use.
 *
 * Build against an installed streamlr:
 *     cc embed.c $(pkg-config --cflags --libs streamlr) -o embed
 *     ./embed model.slr
 *
 * The loop is the whole API a trainer needs: build an example with the
 * builder (namespaces, named features: hashing happens here, once), learn
 * from it (the prediction returned was made before the update, so the
 * running log loss is an honest estimate), and write a checkpoint. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <streamlr/checkpoint.h>
#include <streamlr/example.h>
#include <streamlr/learner.h>
#include <streamlr/metrics.h>

/* Your events; here a tiny synthetic click log: users who like some items. */
typedef struct event {
    int user, item;
    double hour;
} event;

static int clicked(const event *e) { return (e->user + e->item) % 3 == 0; }

int main(int argc, char **argv)
{
    const char *out = argc > 1 ? argv[1] : "embed-model.slr";
    slr_error err;

    /* 1. the learner: 2^18 weights, user x item interactions (-q ui) */
    slr_learner_config cfg;
    slr_learner_config_defaults(&cfg);
    slr_hashing_init(&cfg.hashing, 18);
    slr_learner *learner;
    if (slr_hashing_add_quadratic(&cfg.hashing, "ui", &err) != SLR_OK ||
        slr_learner_create(&learner, &cfg, &err) != SLR_OK) {
        fprintf(stderr, "embed: %s\n", err.msg);
        return 1;
    }

    /* 2. the job state that goes into the model file: metrics (and, if
     * you like, an AUC window and histogram, as the streamlr tool keeps) */
    slr_job_state state;
    slr_job_state_init(&state);
    if (slr_auc_window_create(&state.window, 1000, &err) != SLR_OK ||
        slr_auc_histogram_create(&state.histogram, &err) != SLR_OK) {
        fprintf(stderr, "embed: %s\n", err.msg);
        return 1;
    }

    /* 3. the loop: one reusable example, filled by the builder per event */
    slr_example ex;
    slr_example_init(&ex, &cfg.hashing);
    char name[32];
    for (int i = 0; i < 20000; i++) {
        event e = {i * 7 % 101, i * 13 % 37, (i % 24) / 24.0};
        slr_example_reset(&ex);
        if (slr_example_set_label(&ex, clicked(&e), &err) != SLR_OK)
            goto bad;
        slr_example_begin_namespace(&ex, "user", 4);
        snprintf(name, sizeof name, "u%d", e.user);
        if (slr_example_add(&ex, name, strlen(name), 1.0, &err) != SLR_OK)
            goto bad;
        slr_example_begin_namespace(&ex, "item", 4);
        snprintf(name, sizeof name, "i%d", e.item);
        if (slr_example_add(&ex, name, strlen(name), 1.0, &err) != SLR_OK ||
            slr_example_add(&ex, "hour", 4, e.hour, &err) != SLR_OK ||
            slr_example_finish(&ex, &err) != SLR_OK) /* expands -q ui */
            goto bad;

        double loss;
        double p = slr_learner_learn(learner, &ex, &loss); /* predicted before learning */
        slr_metrics_add(&state.metrics, p, loss, ex.label, ex.weight, ex.n_features);
        slr_auc_window_add(state.window, p, ex.label, ex.weight, loss);
        slr_auc_histogram_add(state.histogram, p, ex.label, ex.weight);
    }

    /* 4. how it went, and the model file (atomic: temp file, fsync, rename) */
    slr_window_stats last;
    slr_auc_window_stats(state.window, &last);
    double auc, bound;
    slr_auc_histogram_auc(state.histogram, &auc, &bound);
    printf("examples %llu  progressive logloss %.4f  AUC %.4f  last-1000 AUC %.4f\n",
           (unsigned long long)state.metrics.examples, slr_metrics_logloss(&state.metrics), auc,
           last.auc);
    state.created = (double)time(NULL);
    if (slr_checkpoint_write(out, learner, &state, &err) != SLR_OK) {
        fprintf(stderr, "embed: %s\n", err.msg);
        return 1;
    }
    printf("model written to %s\n", out);
    slr_example_free(&ex);
    slr_job_state_free(&state);
    slr_learner_destroy(learner);
    /* the pattern is learnable: fail loudly if it was not learned */
    return last.auc > 0.9 ? 0 : 1;
bad:
    fprintf(stderr, "embed: bad example: %s\n", err.msg);
    return 1;
}
