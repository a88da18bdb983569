/* bench_one_service - one perf_service process (HTTP + WebSocket + bus on one
 * app, its own process, a private redis-server): what a single instance with a
 * bus pays. bench_vs_base runs it against the perf_service of this build and
 * of the base build (the same harness, only the service binary differs), since
 * bench_http, bench_ws_echo and bench_ws_broadcast run without a bus (no
 * cluster view, nothing of the replica work engaged).
 *
 *   HTTP:      wrk -t2 -c50 on GET /json, best of 2 rounds;
 *   echo:      N clients each with one {"type":"echo"} in flight, best of 2;
 *   broadcast: N clients reading, the bench POSTs /broadcast 100 times (a
 *              route both builds have: one broadcast_to_all each), pipelined on
 *              one connection; deliveries over the time from the first POST to
 *              the last delivery, best of 3.
 * With each: the CPU time of the service and its Redis per operation over all
 * its rounds (/proc), steadier than a rate on a busy machine.
 *
 * Usage: bench_one_service [perf_service path (default: next to this program)]
 *        [N clients (default 1000)]; env BENCH_SECONDS (default 3),
 *        BENCH_ONE_BROADCAST_ONLY=ROUNDS: only the broadcast part, ROUNDS rounds
 *        (to profile it: perf record of the service during them) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daebus/daebus.h"
#include "perf_common.h"
#include "perf_probe.h"
#include "perf_svc.h"
#include "perf_wsload.h"
#include "testsupport.h"

#define PROCS    2
#define MESSAGES 100
#define BENCH    "one_service"
#define ECHO_MSG "{\"type\":\"echo\",\"data\":{\"n\":1,\"text\":\"hello\"},\"request_id\":\"r1\"}"

static double wrk_rps(int port, double seconds)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "wrk -t2 -c50 -d%.0fs http://127.0.0.1:%d/json 2>&1", seconds, port);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    char line[512];
    double rps = -1, v;
    long non2xx = 0, a;
    while (fgets(line, sizeof line, p)) {
        if (sscanf(line, "Requests/sec: %lf", &v) == 1)
            rps = v;
        else if (sscanf(line, " Non-2xx or 3xx responses: %ld", &a) == 1)
            non2xx += a;
    }
    return pclose(p) == 0 && non2xx == 0 ? rps : -1;
}

static int connect_set(perf_ws_proc *procs, int port, int n, int mode, double seconds, int rounds)
{
    perf_ws_cmd cmd;
    memset(&cmd, 0, sizeof cmd);
    cmd.port = port;
    cmd.mode = mode;
    cmd.seconds = seconds;
    cmd.expect = MESSAGES;
    cmd.rounds = rounds;
    snprintf(cmd.path, sizeof cmd.path, "/ws");
    snprintf(cmd.msg, sizeof cmd.msg, "%s", ECHO_MSG);
    int connected = 0;
    for (int p = 0; p < PROCS; p++) {
        int c = 0;
        cmd.nclients = n / PROCS + (p < n % PROCS);
        if (perf_ws_connect(&procs[p], &cmd, &c) != 0)
            return -1;
        connected += c;
    }
    double until = perf_now() + 15;
    while (perf_svc_stat(port, "ws", "clients") < connected && perf_now() < until)
        ts_sleep_ms(20);
    return connected;
}

/* One round of the connected set: ECHO rate, or SINK deliveries/s after
 * MESSAGES POSTs of /broadcast. */
static double run_round(perf_ws_proc *procs, int port, int n, bool sink, double seconds,
                        long *errors)
{
    for (int p = 0; p < PROCS; p++)
        perf_ws_go(&procs[p]);
    double t0 = 0;
    if (sink) {
        char *bodies[MESSAGES];
        for (int m = 0; m < MESSAGES; m++) {
            bodies[m] = malloc(64);
            snprintf(bodies[m], 64, "{\"seq\":%d,\"text\":\"hello everyone\"}", m);
        }
        ts_sleep_ms(20);
        t0 = perf_now();
        int ok = perf_svc_post_pipelined(port, "/broadcast", bodies, MESSAGES);
        if (ok != MESSAGES) {
            fprintf(stderr, BENCH ": %d of %d POST /broadcast answered 200\n", ok, MESSAGES);
            (*errors)++;
        }
        for (int m = 0; m < MESSAGES; m++)
            free(bodies[m]);
    }
    long count = 0, complete = 0;
    double t_last = 0;
    for (int p = 0; p < PROCS; p++) {
        perf_ws_result r;
        if (perf_ws_result_wait(&procs[p], &r, NULL, NULL) != 0)
            return -1;
        count += r.count;
        complete += r.complete;
        *errors += r.errors;
        if (r.t_last > t_last)
            t_last = r.t_last;
    }
    if (!sink)
        return (double)count / seconds;
    if (complete != n) {
        fprintf(stderr, BENCH ": %ld of %d clients got every broadcast\n", complete, n);
        (*errors)++;
    }
    return t_last > t0 ? (double)count / (t_last - t0) : 0;
}

/* CPU seconds of the service and its Redis (the clients are the same harness
 * for both builds). */
static double cpu_of(const perf_svc *s, const ts_redis *redis)
{
    return perf_cpu_seconds(s->pid) + perf_cpu_seconds(redis->pid);
}

static void emit_cpu(const char *metric, double cpu, double ops)
{
    perf_emit(BENCH, "daebus", metric, ops > 0 ? cpu / ops * 1e6 : 0, "us");
}

int main(int argc, char **argv)
{
    char path[512];
    if (argc > 1)
        snprintf(path, sizeof path, "%s", argv[1]);
    else if (perf_svc_default_path(path, sizeof path) != 0)
        return 1;
    int n = argc > 2 ? atoi(argv[2]) : 1000;
    if (n < PROCS)
        n = 1000;
    double seconds = perf_env_seconds("BENCH_SECONDS", 3);
    perf_raise_nofile();
    perf_ws_proc procs[PROCS];
    for (int p = 0; p < PROCS; p++)
        if (perf_ws_spawn(&procs[p]) != 0)
            return 1;
    ts_redis redis;
    if (ts_redis_start(&redis, NULL) != 0)
        return 1;
    long errors = 0;
    int rc = 1;
    perf_svc s;
    if (perf_svc_start(&s, path, redis.url, n + 16, false) != 0) {
        fprintf(stderr, BENCH ": %s did not start\n", path);
        goto out;
    }
    const char *only = getenv("BENCH_ONE_BROADCAST_ONLY");
    int bcast_rounds = only && atoi(only) > 0 ? atoi(only) : 3;
    double best = 0, r, ops = 0, cpu0 = cpu_of(&s, &redis);
    char m[64];
    if (only)
        goto broadcast;
    for (int k = 0; k < 2; k++) {
        r = wrk_rps(s.port, seconds);
        if (r < 0)
            errors++;
        best = r > best ? r : best;
        ops += r > 0 ? r * seconds : 0;
    }
    perf_emit(BENCH, "daebus", "req_per_s", best, "req/s");
    emit_cpu("cpu_us_per_req", cpu_of(&s, &redis) - cpu0, ops);
    if (connect_set(procs, s.port, n, PERF_WS_ECHO, seconds, 2) != n)
        errors++;
    best = ops = 0;
    cpu0 = cpu_of(&s, &redis);
    for (int k = 0; k < 2; k++) {
        r = run_round(procs, s.port, n, false, seconds, &errors);
        best = r > best ? r : best;
        ops += r > 0 ? r * seconds : 0;
    }
    snprintf(m, sizeof m, "round_trips_per_s_%d", n);
    perf_emit(BENCH, "daebus", m, best, "1/s");
    snprintf(m, sizeof m, "cpu_us_per_round_trip_%d", n);
    emit_cpu(m, cpu_of(&s, &redis) - cpu0, ops);
    /* the echo connections close; the broadcast set connects afresh */
    double until = perf_now() + 15;
    while (perf_svc_stat(s.port, "ws", "clients") > 0 && perf_now() < until)
        ts_sleep_ms(20);
broadcast:
    if (connect_set(procs, s.port, n, PERF_WS_SINK, 10, bcast_rounds) != n)
        errors++;
    best = 0;
    cpu0 = cpu_of(&s, &redis);
    double redis0 = perf_cpu_seconds(redis.pid);
    perf_redis_reset_stats(redis.port);
    for (int k = 0; k < bcast_rounds; k++) {
        r = run_round(procs, s.port, n, true, 0, &errors);
        best = r > best ? r : best;
    }
    double sent = (double)bcast_rounds * MESSAGES;
    snprintf(m, sizeof m, "deliveries_per_s_%d", n);
    perf_emit(BENCH, "daebus", m, best, "1/s");
    snprintf(m, sizeof m, "cpu_us_per_delivery_%d", n);
    emit_cpu(m, cpu_of(&s, &redis) - cpu0, sent * n);
    snprintf(m, sizeof m, "cpu_us_per_delivery_%d_redis", n);
    emit_cpu(m, perf_cpu_seconds(redis.pid) - redis0, sent * n);
    if (getenv("BENCH_REDIS_STATS"))
        perf_redis_emit_stats(redis.port, BENCH, "daebus", "broadcast", sent);
    perf_emit(BENCH, "all", "errors", (double)errors, "count");
    rc = errors ? 1 : 0;
    for (int p = 0; p < PROCS; p++)
        perf_ws_end(&procs[p]);
    if (perf_svc_stop(&s) != 0)
        rc = 1;
out:
    ts_redis_stop(&redis);
    return rc;
}
