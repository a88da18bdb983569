/* perf_probe.h - where the time goes, for the replica benchmarks: CPU time
 * of each process of a run (from /proc) and the Redis commands it made
 * (INFO commandstats of the benchmark's private redis-server). */
#ifndef DAEBUS_PERF_PROBE_H
#define DAEBUS_PERF_PROBE_H

#include <sys/types.h>

/* User + system CPU seconds of pid (0 = this process), all threads; -1 on error. */
double perf_cpu_seconds(pid_t pid);

/* CONFIG RESETSTAT on the redis-server at 127.0.0.1:port. Returns 0 or -1. */
int perf_redis_reset_stats(int port);

/* Emits, for each command Redis ran since the last reset, one line
 * {"bench":bench,"case":kase,"metric":"redis_<cmd>_per_<what>","value":calls/per}
 * and the total as "redis_commands_per_<what>". Returns the total calls or -1. */
long perf_redis_emit_stats(int port, const char *bench, const char *kase, const char *what,
                           double per);

/* A numeric field of INFO (e.g. "used_memory"), or -1. */
double perf_redis_info_number(int port, const char *field);

/* Redis commands per second over `seconds` of whatever runs now (sleeps). */
double perf_redis_rate(int port, double seconds);

/* p50 in seconds of n PING round trips on one connection, or -1. */
double perf_redis_ping_p50(int port, int n);

#endif
