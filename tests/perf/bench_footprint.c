/* bench_footprint - memory and start-up of a service (perf_service: HTTP,
 * WebSocket and bus on one app) run as its own process:
 *   - start-up time: from fork to the "ready" log line (median of 3, with the
 *     default 1,024-client capacity), and once with capacity for 5,000 clients;
 *   - resident memory with 0, 1,000 and 5,000 idle WebSocket clients, and the
 *     memory per connection, for daebus and for a raw CivetWeb WebSocket server
 *     with the same thread count (perf_service with PERF_RAW=1).
 * The 200 MB target is in decimal megabytes (the MiB figures / 1.048576).
 * The clients run in separate processes (perf_wsload.c). A private
 * redis-server serves the bus.
 *
 * Usage: bench_footprint [clients (default 5000)] */
#include <pthread.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "perf_common.h"
#include "perf_svc.h"
#include "perf_wsload.h"
#include "testsupport.h"

#define PROCS 2

static int connect_idle(perf_ws_proc *procs, int port, int n)
{
    perf_ws_cmd cmd;
    memset(&cmd, 0, sizeof cmd);
    cmd.port = port;
    cmd.mode = PERF_WS_SINK;
    cmd.seconds = 0.2; /* after "go": nothing arrives; the clients close */
    cmd.expect = 1;
    snprintf(cmd.path, sizeof cmd.path, "/ws");
    int connected = 0;
    for (int p = 0; p < PROCS; p++) {
        int c = 0;
        cmd.nclients = n / PROCS + (p < n % PROCS);
        if (perf_ws_connect(&procs[p], &cmd, &c) != 0)
            return -1;
        connected += c;
    }
    return connected;
}

static void release_idle(perf_ws_proc *procs)
{
    for (int p = 0; p < PROCS; p++)
        perf_ws_go(&procs[p]);
    for (int p = 0; p < PROCS; p++) {
        perf_ws_result r;
        perf_ws_result_wait(&procs[p], &r, NULL, NULL);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    int total = argc > 1 ? atoi(argv[1]) : 5000;
    int first = total < 1000 ? total : 1000;
    perf_raise_nofile();
    char service_path[1024];
    if (perf_svc_default_path(service_path, sizeof service_path) != 0)
        return 1;
    perf_ws_proc procs[2 * PROCS]; /* the first 1,000 clients, then the rest */
    for (int p = 0; p < 2 * PROCS; p++)
        if (perf_ws_spawn(&procs[p]) != 0)
            return 1;
    ts_redis redis;
    if (ts_redis_start(&redis, NULL) != 0)
        return 1;
    int errors = 0;

    /* start-up with default capacity */
    double times[3];
    for (int i = 0; i < 3; i++) {
        perf_svc s;
        if (perf_svc_start(&s, service_path, redis.url, 1024, false) != 0) {
            fprintf(stderr, "bench_footprint: %s did not get ready\n", service_path);
            ts_redis_stop(&redis);
            return 1;
        }
        times[i] = s.t_ready - s.t_fork;
        if (perf_svc_stop(&s) != 0)
            errors++;
    }
    qsort(times, 3, sizeof times[0], cmp_double);
    perf_emit("footprint", "daebus", "startup_to_ready", times[1] * 1e3, "ms");

    /* capacity for every client: the raw CivetWeb baseline, then daebus */
    long rss_raw = 0, rss_fw = 0;
    for (int raw = 1; raw >= 0; raw--) {
        const char *kase = raw ? "raw_civetweb" : "daebus";
        perf_svc s;
        if (perf_svc_start(&s, service_path, redis.url, total + 16, raw) != 0) {
            ts_redis_stop(&redis);
            return 1;
        }
        perf_emit("footprint", kase, "startup_to_ready_5000_capacity", (s.t_ready - s.t_fork) * 1e3,
                  "ms");
        ts_sleep_ms(1000);
        long rss0 = perf_rss_kb(s.pid);
        perf_emit("footprint", kase, "rss_0_clients", rss0 / 1024.0, "MiB");
        int c1 = connect_idle(procs, s.port, first);
        ts_sleep_ms(1000);
        long rss1 = perf_rss_kb(s.pid);
        int c2 = connect_idle(procs + PROCS, s.port, total - first);
        ts_sleep_ms(1000);
        long rss2 = perf_rss_kb(s.pid);
        if (c1 != first || c2 != total - first) {
            fprintf(stderr, "bench_footprint: %s: %d + %d of %d clients connected\n", kase, c1, c2,
                    total);
            errors++;
        }
        char m[64];
        snprintf(m, sizeof m, "rss_%d_clients", first);
        perf_emit("footprint", kase, m, rss1 / 1024.0, "MiB");
        snprintf(m, sizeof m, "rss_%d_clients", total);
        perf_emit("footprint", kase, m, rss2 / 1024.0, "MiB");
        perf_emit("footprint", kase, "per_connection",
                  total > 0 ? (double)(rss2 - rss0) / total : 0, "KiB");
        perf_emit("footprint", kase, "per_reserved_thread", (double)rss0 / (total + 16 + 32),
                  "KiB");
        release_idle(procs);
        release_idle(procs + PROCS);
        if (perf_svc_stop(&s) != 0)
            errors++;
        *(raw ? &rss_raw : &rss_fw) = rss2;
    }
    printf("{\"bench\":\"footprint\",\"case\":\"target\",\"metric\":\"rss_%d_clients_mb\","
           "\"value\":%.1f,\"target\":200,\"cmp\":\"<=\",\"met\":%s}\n",
           total, rss_fw * 1024 / 1e6, rss_fw * 1024 / 1e6 < 200 ? "true" : "false");
    perf_emit("footprint", "ratio", "rss_vs_raw", rss_raw > 0 ? (double)rss_fw / rss_raw : 0, "x");
    perf_emit("footprint", "all", "errors", errors, "count");
    for (int p = 0; p < 2 * PROCS; p++)
        perf_ws_end(&procs[p]);
    ts_redis_stop(&redis);
    return errors ? 1 : 0;
}
