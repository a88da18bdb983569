/* perf_common.h - small helpers shared by the benchmarks in tests/perf.
 *
 * Every benchmark prints one JSON object per line on stdout:
 *   {"bench":"http","case":"daebus","metric":"req_per_s","value":12345.6,"unit":"req/s"}
 * and, for comparisons, a ratio line with its target:
 *   {"bench":"http","case":"ratio","metric":"req_per_s","value":0.93,"target":0.90,
 *    "cmp":">=","met":true}
 * Progress and diagnostics go to stderr.
 */
#ifndef DAEBUS_PERF_COMMON_H
#define DAEBUS_PERF_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Monotonic seconds (CLOCK_MONOTONIC: comparable between processes). */
double perf_now(void);

/* Seconds from environment variable name, or def when unset/invalid. */
double perf_env_seconds(const char *name, double def);

/* Prints one figure line. */
void perf_emit(const char *bench, const char *kase, const char *metric, double value,
               const char *unit);

/* Prints a ratio line; cmp is ">=" or "<=" and decides "met". Returns met. */
bool perf_ratio(const char *bench, const char *metric, double value, double target,
                const char *cmp);

/* Sorts v (n values) in place and returns the p-th percentile (0..100). */
double perf_percentile(double *v, size_t n, double p);

/* Raises RLIMIT_NOFILE's soft limit to the hard limit; returns the new soft limit. */
long perf_raise_nofile(void);

/* Resident set size of pid (0 = self) in KiB, or -1. */
long perf_rss_kb(pid_t pid);

/* A growable array of doubles (latency samples). */
typedef struct perf_samples {
    double *v;
    size_t n, cap;
} perf_samples;

void perf_samples_add(perf_samples *s, double x);
void perf_samples_free(perf_samples *s);

#endif
