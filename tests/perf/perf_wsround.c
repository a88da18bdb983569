/* perf_wsround.c - the burst benchmarks' client sets over replicas (see
 * perf_wsround.h). */
#include "perf_wsround.h"

#include <stdio.h>
#include <string.h>

#include "perf_common.h"
#include "perf_svc.h"

int perf_ws_bench_setup(perf_ws_proc *procs, int nprocs, char *path, size_t len, ts_redis *redis)
{
    perf_raise_nofile();
    for (int p = 0; p < nprocs; p++)
        if (perf_ws_spawn(&procs[p]) != 0)
            return -1;
    if (perf_svc_default_path(path, len) != 0 || ts_redis_start(redis, NULL) != 0)
        return -1;
    return 0;
}

/* The clients the replicas of ports count, each port once. */
static double registered(const int *ports, int nprocs)
{
    double seen = 0;
    for (int p = 0; p < nprocs; p++) {
        bool again = false;
        for (int q = 0; q < p; q++)
            again = again || ports[q] == ports[p];
        if (!again)
            seen += perf_svc_stat(ports[p], "ws", "clients");
    }
    return seen;
}

int perf_ws_connect_set(perf_ws_proc *procs, int nprocs, const int *ports, int n, perf_ws_cmd *cmd,
                        const char *bench)
{
    int connected = 0;
    for (int p = 0; p < nprocs; p++) {
        int c = 0;
        cmd->port = ports[p];
        cmd->nclients = n / nprocs + (p < n % nprocs);
        if (perf_ws_connect(&procs[p], cmd, &c) != 0)
            return -1;
        connected += c;
    }
    double until = perf_now() + 15, seen = 0;
    while (perf_now() < until) {
        seen = registered(ports, nprocs);
        if (seen >= connected)
            break;
        ts_sleep_ms(20);
    }
    if (connected != n || seen < connected)
        fprintf(stderr, "%s: %d of %d clients connected, %.0f registered\n", bench, connected, n,
                seen);
    return connected;
}

int perf_ws_burst_round(perf_ws_proc *procs, int nprocs, int port, const char *path,
                        const char *body, int n, long expect, const char *bench, perf_ws_round *out,
                        long *errors)
{
    memset(out, 0, sizeof *out);
    for (int p = 0; p < nprocs; p++)
        perf_ws_go(&procs[p]);
    ts_sleep_ms(20);
    double t0 = perf_now();
    int status = perf_svc_post(port, path, body, NULL);
    out->post = perf_now() - t0;
    if (status != 200) {
        fprintf(stderr, "%s: POST %s answered %d\n", bench, path, status);
        (*errors)++;
    }
    double t_last = 0;
    for (int p = 0; p < nprocs; p++) {
        perf_ws_result r;
        if (perf_ws_result_wait(&procs[p], &r, NULL, NULL) != 0)
            return -1;
        if (p < PERF_WS_MAX_SET) {
            out->proc_first[p] = r.t_first - t0;
            out->proc_last[p] = r.t_last - t0;
        }
        out->delivered += r.count;
        out->complete += r.complete;
        *errors += r.errors;
        if (r.t_last > t_last)
            t_last = r.t_last;
    }
    if (out->complete != n) {
        fprintf(stderr, "%s: %s: %ld of %d clients got every message (%ld of %ld deliveries)\n",
                bench, path, out->complete, n, out->delivered, (long)n * expect);
        (*errors)++;
    }
    out->to_last = t_last - t0;
    out->rate = out->to_last > 0 ? (double)out->delivered / out->to_last : 0;
    return 0;
}
