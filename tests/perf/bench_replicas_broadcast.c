/* bench_replicas_broadcast - broadcast_to_all with N WebSocket clients split
 * over two replicas vs one replica holding all N (issue 15).
 *
 * Three perf_service processes on one private redis-server: service
 * "perf_bc_one" (one replica, N clients) and service "perf_bc_two" (two
 * replicas, N/2 clients each). A round: the clients start reading, the bench
 * POSTs /burst {"n":100} to one replica of the service (the first), which calls
 * daebus_ws_broadcast_to_all() 100 times; every client must get the 100
 * messages. Deliveries are counted at the clients; the rate is deliveries over
 * the time from the POST to the last client's last message. Rounds alternate
 * one/two (5 of each, on the same connections); the best of each is kept.
 * Then one more round of each, profiled: CPU time per delivery of every
 * process (/proc) and Redis commands per broadcast (INFO commandstats);
 * BENCH_PERF=<dir>: the replicas' system calls and context switches during it
 * (perf stat, into <dir>/<case>.stat).
 *
 * The clients run in separate processes (perf_wsload.c), two per client set.
 *
 * Usage: bench_replicas_broadcast [N (default 1000)] */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daebus/daebus.h"
#include "perf_common.h"
#include "perf_probe.h"
#include "perf_svc.h"
#include "perf_wsround.h"
#include "testsupport.h"

#define PROCS    2 /* client processes per set */
#define MESSAGES 100
#define ROUNDS   5
#define BENCH    "replicas_broadcast"

typedef perf_ws_round outcome;

/* Connects the set: client process p goes to ports[p]. Returns the number
 * connected once every replica counts its clients. */
static int connect_set(perf_ws_proc *procs, const int *ports, int n)
{
    perf_ws_cmd cmd = {.mode = PERF_WS_SINK,
                       .seconds = 10, /* give up on a client that misses messages */
                       .expect = MESSAGES,
                       .rounds = ROUNDS + 1, /* and the profiled one */
                       .path = "/ws"};
    return perf_ws_connect_set(procs, PROCS, ports, n, &cmd, BENCH);
}

/* One round: the set reads, /burst goes to port. */
static int run_round(perf_ws_proc *procs, int port, int n, outcome *out, long *errors)
{
    char body[64];
    snprintf(body, sizeof body, "{\"n\":%d}", MESSAGES);
    return perf_ws_burst_round(procs, PROCS, port, "/burst", body, n, MESSAGES, BENCH, out, errors);
}

static void emit(const char *kase, int n, const outcome *o)
{
    char m[64];
    snprintf(m, sizeof m, "deliveries_per_s_%d", n);
    perf_emit(BENCH, kase, m, o->rate, "1/s");
    snprintf(m, sizeof m, "time_to_last_%d", n);
    perf_emit(BENCH, kase, m, o->to_last * 1e3, "ms");
}

/* Where the time goes: one more round with the CPU time of every process
 * (replicas, Redis, client processes) per delivery and the Redis commands per
 * broadcast. */
static void profile(const char *kase, perf_ws_proc *procs, perf_svc *reps, int nrep, int n,
                    const ts_redis *redis, long *errors)
{
    pid_t pids[2 + PROCS + 2];
    int np = 0;
    pids[np++] = redis->pid;
    for (int p = 0; p < PROCS; p++)
        pids[np++] = procs[p].pid;
    for (int i = 0; i < nrep; i++)
        pids[np++] = reps[i].pid;
    double cpu0[8], cpu1[8];
    /* BENCH_PERF=<dir>: system calls of the replicas during this round (perf stat) */
    const char *perf_dir = getenv("BENCH_PERF");
    pid_t rec = -1;
    if (perf_dir) {
        char cmd[512], list[64] = "";
        for (int i = 0; i < nrep; i++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%d", i ? "," : "",
                     (int)reps[i].pid);
        snprintf(
            cmd, sizeof cmd,
            "exec perf stat -x, -e raw_syscalls:sys_enter,context-switches -o %s/%s.stat -p %s",
            perf_dir, kase, list);
        rec = fork();
        if (rec == 0) {
            execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
            _exit(127);
        }
        ts_sleep_ms(200);
    }
    perf_redis_reset_stats(redis->port);
    for (int i = 0; i < np; i++)
        cpu0[i] = perf_cpu_seconds(pids[i]);
    outcome o;
    int rr = run_round(procs, reps[0].port, n, &o, errors);
    if (rec > 0) {
        kill(rec, SIGINT);
        waitpid(rec, NULL, 0);
    }
    if (rr != 0 || o.delivered <= 0)
        return;
    for (int i = 0; i < np; i++)
        cpu1[i] = perf_cpu_seconds(pids[i]);
    double d = (double)o.delivered, clients = 0;
    for (int p = 0; p < PROCS; p++)
        clients += cpu1[1 + p] - cpu0[1 + p];
    perf_emit(BENCH, kase, "profile_deliveries_per_s", o.rate, "1/s");
    perf_emit(BENCH, kase, "profile_broadcast_calls_ms", o.post * 1e3, "ms");
    perf_emit(BENCH, kase, "cpu_us_per_delivery_redis", (cpu1[0] - cpu0[0]) / d * 1e6, "us");
    perf_emit(BENCH, kase, "cpu_us_per_delivery_clients", clients / d * 1e6, "us");
    for (int i = 0; i < nrep; i++) {
        char m[64];
        snprintf(m, sizeof m, "cpu_us_per_delivery_replica_%d", i);
        perf_emit(BENCH, kase, m, (cpu1[1 + PROCS + i] - cpu0[1 + PROCS + i]) / d * 1e6, "us");
    }
    perf_redis_emit_stats(redis->port, BENCH, kase, "broadcast", MESSAGES);
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 1000;
    if (n < PROCS)
        n = 1000;
    perf_ws_proc procs[2 * PROCS];
    char path[512];
    ts_redis redis;
    if (perf_ws_bench_setup(procs, 2 * PROCS, path, sizeof path, &redis) != 0)
        return 1;
    long errors = 0;
    int rc = 1;
    perf_svc one, two[2];
    perf_svc_opts so = {.path = path, .redis_url = redis.url, .max_clients = n + 16};
    so.service = "perf_bc_one";
    if (perf_svc_start_replicas(&one, 1, &so, BENCH) != 0)
        goto out_redis;
    so.service = "perf_bc_two";
    so.max_clients = n / 2 + 16;
    if (perf_svc_start_replicas(two, 2, &so, BENCH) != 0)
        goto out_one;
    /* let the replicas see each other (heartbeat 1 s) */
    ts_sleep_ms(1500);
    int one_ports[PROCS] = {one.port, one.port}, two_ports[PROCS] = {two[0].port, two[1].port};
    perf_ws_proc *set_one = procs, *set_two = procs + PROCS;
    /* sizing: Redis memory and commands/s for the idle replicas, then with 2N idle clients */
    double mem0 = perf_redis_info_number(redis.port, "used_memory");
    double idle0 = perf_redis_rate(redis.port, 2.0);
    if (connect_set(set_one, one_ports, n) != n || connect_set(set_two, two_ports, n) != n)
        errors++;
    ts_sleep_ms(1000); /* the first activity refresh of the new clients */
    double mem1 = perf_redis_info_number(redis.port, "used_memory");
    double idle1 = perf_redis_rate(redis.port, 2.0);
    perf_emit(BENCH, "sizing", "redis_commands_per_s_3_replicas_no_clients", idle0, "1/s");
    char sm[64];
    snprintf(sm, sizeof sm, "redis_commands_per_s_3_replicas_%d_idle_clients", 2 * n);
    perf_emit(BENCH, "sizing", sm, idle1, "1/s");
    perf_emit(BENCH, "sizing", "redis_bytes_per_client", (mem1 - mem0) / (2.0 * n), "B");
    outcome best_one = {0}, best_two = {0}, r;
    for (int k = 0; k < ROUNDS; k++) {
        if (run_round(set_one, one.port, n, &r, &errors) != 0)
            goto out_two;
        fprintf(stderr, BENCH ": round %d one replica  %.0f/s %.0f ms (calls %.0f ms)\n", k, r.rate,
                r.to_last * 1e3, r.post * 1e3);
        if (r.rate > best_one.rate)
            best_one = r;
        if (run_round(set_two, two[0].port, n, &r, &errors) != 0)
            goto out_two;
        fprintf(stderr,
                BENCH ": round %d two replicas %.0f/s %.0f ms (calls %.0f ms; clients of A: "
                      "%.0f-%.0f ms, of B: %.0f-%.0f ms)\n",
                k, r.rate, r.to_last * 1e3, r.post * 1e3, r.proc_first[0] * 1e3,
                r.proc_last[0] * 1e3, r.proc_first[1] * 1e3, r.proc_last[1] * 1e3);
        if (r.rate > best_two.rate)
            best_two = r;
    }
    profile("one_replica", set_one, &one, 1, n, &redis, &errors);
    /* the first set's clients close after their last round: not during the next profile */
    double until = perf_now() + 15;
    while (perf_svc_stat(one.port, "ws", "clients") > 0 && perf_now() < until)
        ts_sleep_ms(20);
    ts_sleep_ms(1000); /* and their directory entries are gone */
    profile("two_replicas", set_two, two, 2, n, &redis, &errors);
    emit("one_replica", n, &best_one);
    emit("two_replicas", n, &best_two);
    char m[64];
    snprintf(m, sizeof m, "deliveries_per_s_%d_two_vs_one", n);
    if (best_one.rate > 0 && best_two.rate > 0)
        perf_ratio(BENCH, m, best_two.rate / best_one.rate, 0.80, ">=");
    else
        errors++;
    perf_emit(BENCH, "all", "errors", (double)errors, "count");
    rc = errors ? 1 : 0;
out_two:
    for (int p = 0; p < 2 * PROCS; p++)
        perf_ws_end(&procs[p]);
    perf_svc_stop(&two[0]);
    perf_svc_stop(&two[1]);
out_one:
    perf_svc_stop(&one);
out_redis:
    ts_redis_stop(&redis);
    return rc;
}
