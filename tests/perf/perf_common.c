/* perf_common.c - helpers shared by the benchmarks (see perf_common.h). */
#include "perf_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

double perf_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double perf_env_seconds(const char *name, double def)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return def;
    char *end = NULL;
    double v = strtod(s, &end);
    return end && *end == '\0' && v > 0 ? v : def;
}

void perf_emit(const char *bench, const char *kase, const char *metric, double value,
               const char *unit)
{
    printf("{\"bench\":\"%s\",\"case\":\"%s\",\"metric\":\"%s\",\"value\":%.6g,\"unit\":\"%s\"}\n",
           bench, kase, metric, value, unit);
    fflush(stdout);
}

bool perf_ratio(const char *bench, const char *metric, double value, double target, const char *cmp)
{
    bool met = strcmp(cmp, "<=") == 0 ? value <= target : value >= target;
    printf("{\"bench\":\"%s\",\"case\":\"ratio\",\"metric\":\"%s\",\"value\":%.4f,"
           "\"target\":%.2f,\"cmp\":\"%s\",\"met\":%s}\n",
           bench, metric, value, target, cmp, met ? "true" : "false");
    fflush(stdout);
    return met;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double perf_percentile(double *v, size_t n, double p)
{
    if (!n)
        return 0.0;
    qsort(v, n, sizeof *v, cmp_double);
    size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

long perf_raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    return (long)rl.rlim_cur;
}

long perf_rss_kb(pid_t pid)
{
    char path[64];
    if (pid > 0)
        snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    else
        snprintf(path, sizeof path, "/proc/self/status");
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[256];
    long v = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            v = atol(line + 6);
    fclose(f);
    return v;
}

void perf_samples_add(perf_samples *s, double x)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 4096;
        double *v = realloc(s->v, cap * sizeof *v);
        if (!v)
            return;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = x;
}

void perf_samples_free(perf_samples *s)
{
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}
