/* replay.c - run every fuzz harness over its committed corpus (make check).
 *
 * Usage: replay DIR   where DIR holds one subdirectory per harness
 * (tests/fuzz/corpus/<name>/).  Each file is fed once; a crash or a failed
 * property aborts, which fails the test.  This keeps every input that ever
 * crashed a harness as a regression test under the normal compiler and the
 * sanitizer build, without clang. */
#include <dirent.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static const struct {
    const char *name;
    int (*fn)(const uint8_t *, size_t);
} harnesses[] = {
    {"msgpack", fuzz_msgpack}, {"vw", fuzz_vw}, {"libsvm", fuzz_libsvm}, {"criteo", fuzz_criteo},
    {"checkpoint", fuzz_checkpoint}, {"checkpoint_body", fuzz_checkpoint_body},
    {"train", fuzz_train}, {"sync", fuzz_sync}, {"sync_ledger", fuzz_sync_ledger},
    {"sync_snapshot", fuzz_sync_snapshot},
};

static int replay_file(const char *path, int (*fn)(const uint8_t *, size_t))
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t cap = 1 << 16, n = 0, k;
    uint8_t *buf = malloc(cap);
    while ((k = fread(buf + n, 1, cap - n, f)) > 0)
        if ((n += k) == cap)
            buf = realloc(buf, cap *= 2);
    fclose(f);
    uint8_t *exact = malloc(n ? n : 1); /* so a read past the input is caught */
    memcpy(exact, buf, n);
    free(buf);
    fn(exact, n);
    free(exact);
    return 0;
}

int main(int argc, char **argv)
{
#ifndef FUZZ_CORPUS
#define FUZZ_CORPUS "tests/fuzz/corpus"
#endif
    const char *top = argc > 1 ? argv[1] : FUZZ_CORPUS;
    int total = 0;
    for (size_t h = 0; h < sizeof harnesses / sizeof harnesses[0]; h++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/%s", top, harnesses[h].name);
        DIR *d = opendir(dir);
        if (!d) {
            fprintf(stderr, "replay: no corpus %s\n", dir);
            return 1;
        }
        int n = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.')
                continue;
            char path[8192];
            snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
            if (replay_file(path, harnesses[h].fn) != 0) {
                fprintf(stderr, "replay: cannot read %s\n", path);
                return 1;
            }
            n++;
        }
        closedir(d);
        printf("%-16s %d inputs\n", harnesses[h].name, n);
        total += n;
    }
    if (total == 0) {
        fprintf(stderr, "replay: empty corpus under %s\n", top);
        return 1;
    }
    return 0;
}
