/* bench_vs_base - "a single instance pays nothing it does not need" (issue
 * 15): the existing HTTP, WebSocket echo and broadcast benchmarks of this
 * build vs the same benchmarks of a base build (the commit before the replica
 * work, built by tests/perf/base_build.sh), run alternately in one run.
 *
 * Each round runs bench_http, bench_ws_echo, bench_ws_broadcast (no bus: the
 * framework's layers alone) and bench_one_service (this build's harness on
 * each build's perf_service: HTTP + WebSocket + bus in one process, the
 * single instance of a real service) of both builds one after the other (base first in even rounds, this build first in
 * odd ones), reads their JSON lines and keeps every "daebus" throughput figure
 * (req_per_s*, round_trips_per_s*, deliveries_per_s*, cpu_us_per_*). Printed per figure:
 * best and median of each build, and the ratios this/base of the best and of
 * the medians (target >= 0.95 on the best, as every other benchmark here
 * compares best rounds; for bench_one_service's CPU time per operation,
 * lower is better: target <= 1.05); also this/base of each benchmark's own ratio to raw
 * CivetWeb (which takes out some of the machine's drift between runs).
 *
 * Usage: bench_vs_base BASE_BIN_DIR [rounds (default 3; env BENCH_BASE_ROUNDS)]
 *   env BENCH_BASE_ECHO_N  clients of bench_ws_echo (default "100 1000")
 *   env BENCH_BASE_BCAST_N clients of bench_ws_broadcast (default "1000") */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daebus/daebus.h"
#include "perf_common.h"

#define BENCH     "vs_base"
#define MAX_FIG   64
#define MAX_RUNS  16
#define MAX_ARGS  12
#define BUILD_NEW 0
#define BUILD_OLD 1

typedef struct figure {
    char bench[32], kase[32], metric[64];
    double v[2][MAX_RUNS];
    int n[2];
} figure;

static figure figs[MAX_FIG];
static int nfigs;

static bool kept(const char *kase, const char *metric)
{
    if (strcmp(kase, "ratio") == 0)
        return true;
    return strcmp(kase, "daebus") == 0 &&
           (strncmp(metric, "req_per_s", 9) == 0 || strncmp(metric, "round_trips_per_s", 17) == 0 ||
            strncmp(metric, "deliveries_per_s", 16) == 0 ||
            strncmp(metric, "cpu_us_per_", 11) == 0);
}

static void record(int build, const char *line)
{
    cJSON *o = cJSON_Parse(line);
    const char *b = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "bench"));
    const char *k = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "case"));
    const char *m = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "metric"));
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "value");
    if (b && k && m && cJSON_IsNumber(v) && kept(k, m)) {
        figure *f = NULL;
        for (int i = 0; i < nfigs && !f; i++)
            if (!strcmp(figs[i].bench, b) && !strcmp(figs[i].kase, k) && !strcmp(figs[i].metric, m))
                f = &figs[i];
        if (!f && nfigs < MAX_FIG) {
            f = &figs[nfigs++];
            snprintf(f->bench, sizeof f->bench, "%s", b);
            snprintf(f->kase, sizeof f->kase, "%s", k);
            snprintf(f->metric, sizeof f->metric, "%s", m);
        }
        if (f && f->n[build] < MAX_RUNS)
            f->v[build][f->n[build]++] = v->valuedouble;
    }
    cJSON_Delete(o);
}

/* Runs exe with argv; its stdout lines are recorded. Returns its status. */
static int run(int build, const char *exe, char *const *argv)
{
    int pfd[2];
    if (pipe(pfd) != 0)
        return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pfd[1], 1);
        close(pfd[0]);
        close(pfd[1]);
        execv(exe, argv);
        _exit(127);
    }
    close(pfd[1]);
    FILE *f = fdopen(pfd[0], "r");
    char line[1024];
    while (f && fgets(line, sizeof line, f))
        record(build, line);
    if (f)
        fclose(f);
    int st = -1;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Splits "a b c" into argv after name (in place; at most MAX_ARGS). */
static void make_argv(char **argv, const char *name, const char *first, char *rest)
{
    int n = 0;
    argv[n++] = (char *)name;
    if (first)
        argv[n++] = (char *)first;
    char *save = NULL;
    for (char *t = rest ? strtok_r(rest, " ", &save) : NULL; t && n < MAX_ARGS - 1;
         t = strtok_r(NULL, " ", &save))
        argv[n++] = t;
    argv[n] = NULL;
}

static double best_of(const figure *f, int build, bool lower)
{
    double b = f->v[build][0];
    for (int i = 1; i < f->n[build]; i++)
        if (lower ? f->v[build][i] < b : f->v[build][i] > b)
            b = f->v[build][i];
    return b;
}

static double median_of(figure *f, int build)
{
    double tmp[MAX_RUNS];
    memcpy(tmp, f->v[build], sizeof tmp);
    return perf_percentile(tmp, (size_t)f->n[build], 50);
}

static void report(void)
{
    char m[160];
    for (int i = 0; i < nfigs; i++) {
        figure *f = &figs[i];
        if (!f->n[BUILD_NEW] || !f->n[BUILD_OLD])
            continue;
        /* CPU per operation: lower is better */
        bool cpu = strncmp(f->metric, "cpu_us_per_", 11) == 0;
        double bn = best_of(f, BUILD_NEW, cpu), bo = best_of(f, BUILD_OLD, cpu);
        double mn = median_of(f, BUILD_NEW), mo = median_of(f, BUILD_OLD);
        if (strcmp(f->kase, "ratio") == 0) {
            snprintf(m, sizeof m, "%s_%s_vs_raw_median", f->bench, f->metric);
            perf_emit(BENCH, "this", m, mn, "x");
            perf_emit(BENCH, "base", m, mo, "x");
            snprintf(m, sizeof m, "%s_%s_vs_raw_this_over_base_median", f->bench, f->metric);
            perf_emit(BENCH, "ratio_info", m, mo > 0 ? mn / mo : 0, "x");
            continue;
        }
        const char *unit = cpu ? "us" : "1/s";
        snprintf(m, sizeof m, "%s_%s_best", f->bench, f->metric);
        perf_emit(BENCH, "this", m, bn, unit);
        perf_emit(BENCH, "base", m, bo, unit);
        snprintf(m, sizeof m, "%s_%s_median", f->bench, f->metric);
        perf_emit(BENCH, "this", m, mn, unit);
        perf_emit(BENCH, "base", m, mo, unit);
        snprintf(m, sizeof m, "%s_%s_this_over_base_median", f->bench, f->metric);
        perf_emit(BENCH, "ratio_info", m, mo > 0 ? mn / mo : 0, "x");
        snprintf(m, sizeof m, "%s_%s_this_over_base", f->bench, f->metric);
        if (bo > 0) /* (the base's Redis spends nothing on a broadcast: no ratio) */
            perf_ratio(BENCH, m, bn / bo, cpu ? 1.05 : 0.95, cpu ? "<=" : ">=");
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_vs_base BASE_BIN_DIR [rounds]\n");
        return 2;
    }
    const char *base = argv[1];
    int rounds = argc > 2 ? atoi(argv[2]) : (int)perf_env_seconds("BENCH_BASE_ROUNDS", 3);
    if (rounds < 1 || rounds > MAX_RUNS)
        rounds = 3;
    char self[1024];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0)
        return 1;
    self[len] = '\0';
    *strrchr(self, '/') = '\0';
    const char *dirs[2] = {self, base};
    const char *echo_n = getenv("BENCH_BASE_ECHO_N"), *bcast_n = getenv("BENCH_BASE_BCAST_N");
    char seconds[32];
    snprintf(seconds, sizeof seconds, "%g", perf_env_seconds("BENCH_SECONDS", 3));
    long failures = 0;
    for (int r = 0; r < rounds; r++)
        for (int i = 0; i < 2; i++) {
            int build = (r + i) % 2 == 0 ? BUILD_OLD : BUILD_NEW;
            char en[128], bn[128];
            snprintf(en, sizeof en, "%s", echo_n ? echo_n : "100 1000");
            snprintf(bn, sizeof bn, "%s", bcast_n ? bcast_n : "1000");
            char *av[4][MAX_ARGS], exe[2200], svc[2200];
            make_argv(av[0], "bench_http", seconds, NULL);
            make_argv(av[1], "bench_ws_echo", seconds, en);
            make_argv(av[2], "bench_ws_broadcast", NULL, bn);
            /* this build's harness, each build's perf_service */
            snprintf(svc, sizeof svc, "%s/perf_service", dirs[build]);
            make_argv(av[3], "bench_one_service", svc, NULL);
            for (int b = 0; b < 4; b++) {
                fprintf(stderr, BENCH ": round %d %s %s\n", r, build == BUILD_OLD ? "base" : "this",
                        av[b][0]);
                snprintf(exe, sizeof exe, "%s/%s", b == 3 ? self : dirs[build], av[b][0]);
                int st = run(build, exe, av[b]);
                if (st != 0) {
                    fprintf(stderr, BENCH ": %s exited with %d\n", exe, st);
                    failures++;
                }
            }
        }
    report();
    perf_emit(BENCH, "all", "failed_runs", (double)failures, "count");
    return failures ? 1 : 0;
}
