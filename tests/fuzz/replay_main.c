/* replay_main.c - runs a fuzz target over checked-in inputs (the ctest side).
 *
 * Usage: fuzz_replay_<name> [file-or-dir...]
 * Without arguments it replays $DAEBUS_SOURCE_DIR/tests/fuzz/corpus/<name>/
 * and tests/fuzz/regress/<name>/ (the latter may be missing). A crash or a
 * failed invariant aborts, which fails the test; an empty seed corpus fails
 * too, so a mistyped path cannot pass silently.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "fuzz_common.h"

#ifndef DAEBUS_FUZZ_NAME
#error "compile with -DDAEBUS_FUZZ_NAME=\"name\""
#endif

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: cannot open %s\n", path);
        return -1;
    }
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap) {
            uint8_t *bigger = realloc(buf, cap * 2);
            if (!bigger) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
    }
    fclose(f);
    if (!buf)
        return -1;
    /* An exact-size copy, as libFuzzer gives, so ASan sees any over-read. */
    uint8_t *exact = malloc(len ? len : 1);
    if (!exact) {
        free(buf);
        return -1;
    }
    memcpy(exact, buf, len);
    free(buf);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Returns: the number of files replayed, or -1 on an error. A missing
 * directory counts as empty. */
static int run_path(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return 0;
    if (!S_ISDIR(st.st_mode))
        return run_file(path) == 0 ? 1 : -1;
    DIR *d = opendir(path);
    if (!d)
        return -1;
    char **names = NULL;
    size_t count = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char **bigger = realloc(names, (count + 1) * sizeof *names);
        size_t plen = strlen(path) + strlen(e->d_name) + 2;
        char *full = malloc(plen);
        if (!bigger || !full) {
            free(full);
            free(bigger ? bigger : names);
            closedir(d);
            return -1;
        }
        names = bigger;
        snprintf(full, plen, "%s/%s", path, e->d_name);
        names[count++] = full;
    }
    closedir(d);
    /* A fixed order makes a failure reproducible. */
    qsort(names, count, sizeof *names, cmp_str);
    int done = 0, rc = 0;
    for (size_t i = 0; i < count; i++) {
        if (rc == 0 && run_file(names[i]) != 0)
            rc = -1;
        else
            done++;
        free(names[i]);
    }
    free(names);
    return rc ? -1 : done;
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        for (int i = 1; i < argc; i++)
            if (run_path(argv[i]) < 0)
                return 1;
        return 0;
    }
    const char *src = getenv("DAEBUS_SOURCE_DIR");
    if (!src) {
        fprintf(stderr, "replay: DAEBUS_SOURCE_DIR is not set\n");
        return 1;
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tests/fuzz/corpus/%s", src, DAEBUS_FUZZ_NAME);
    int seeds = run_path(dir);
    if (seeds <= 0) {
        fprintf(stderr, "replay: no seed inputs in %s\n", dir);
        return 1;
    }
    snprintf(dir, sizeof dir, "%s/tests/fuzz/regress/%s", src, DAEBUS_FUZZ_NAME);
    int regress = run_path(dir);
    if (regress < 0)
        return 1;
    printf("replay %s: %d seed and %d regression inputs passed\n", DAEBUS_FUZZ_NAME, seeds,
           regress);
    return 0;
}
