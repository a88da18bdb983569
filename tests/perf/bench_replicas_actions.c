/* bench_replicas_actions - action round trip to a service of three replicas
 * vs a service of one replica, one request in flight (p50) and 16 in flight
 * (throughput).
 *
 * Four perf_service processes on one private redis-server: service
 * "perf_act_one" (one replica) and service "perf_act_three" (three replicas);
 * a daebus_caller in this process calls their ACTION "echo". Rounds alternate
 * one/three (3 of each for one in flight, 6 of half the length for 16); the best of each
 * is kept, as bench_bus does. After each service's rounds the replicas' bus
 * counters (GET /stats: requests_handled) are summed: with exactly-once
 * actions every request is handled once ("handled_per_request" 1.0), without
 * it every replica handles every request (3.0; the caller takes the first
 * reply).
 * Then one more 16-in-flight round per service, profiled: CPU time of the
 * caller, the replicas and Redis per action (/proc) and the Redis commands
 * per action (INFO commandstats).
 *
 * Also printed: the p50 of a bare Redis round trip (PING) in the same run, to
 * read the difference in round trips. BENCH_ACTIONS_TWO=1 adds a service of
 * two replicas. BENCH_PERF=<dir>: `perf record -g` of each service's replicas
 * during its profiled round, into <dir>/<service>.data.
 *
 * Usage: bench_replicas_actions [seconds per round (default 3; env BENCH_SECONDS)] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daebus/daebus.h"
#include "perf_common.h"
#include "perf_flight.h"
#include "perf_probe.h"
#include "perf_svc.h"
#include "testsupport.h"

#define WINDOW 16
#define ROUNDS 3
/* 16 in flight: more, shorter rounds (this machine's neighbours only ever
 * slow a round down, so the best of more rounds is nearer the undisturbed
 * rate); the median of the rounds' ratios is printed beside it */
#define ROUNDS16 6
#define BENCH    "replicas_actions"

/* ---- the services ---- */

typedef struct service {
    const char *name, *label;
    int n;
    perf_svc rep[3];
    long sent; /* requests sent to it */
    double best_p50, best_p99, best_rate1, best_rate16;
} service;

static double handled(const service *s)
{
    double sum = 0;
    for (int i = 0; i < s->n; i++)
        sum += perf_svc_stat(s->rep[i].port, "bus", "requests_handled");
    return sum;
}

static int start_service(service *s, const char *path, const char *url)
{
    perf_svc_opts so = {.path = path, .redis_url = url, .service = s->name, .max_clients = 16};
    for (int i = 0; i < s->n; i++)
        if (perf_svc_start_opts(&s->rep[i], &so) != 0) {
            fprintf(stderr, BENCH ": replica %d of %s did not start\n", i, s->name);
            s->n = i;
            return -1;
        }
    s->best_p50 = 1e9;
    return 0;
}

static void report(const service *s)
{
    perf_emit(BENCH, s->label, "p50_1", s->best_p50 * 1e6, "us");
    perf_emit(BENCH, s->label, "p99_1", s->best_p99 * 1e6, "us");
    perf_emit(BENCH, s->label, "actions_per_s_1", s->best_rate1, "1/s");
    perf_emit(BENCH, s->label, "actions_per_s_16", s->best_rate16, "1/s");
    double h = handled(s);
    perf_emit(BENCH, s->label, "handled_per_request", s->sent ? h / (double)s->sent : 0, "x");
}

/* Where the time goes: one more 16-in-flight round of service s with the CPU
 * time of every process and the Redis commands per action. */
static void profile(service *s, daebus_caller *c, cJSON *payload, double seconds,
                    const ts_redis *redis, long *errors)
{
    double cpu0[5] = {0}, cpu1[5] = {0};
    perf_redis_reset_stats(redis->port);
    cpu0[0] = perf_cpu_seconds(0);
    cpu0[1] = perf_cpu_seconds(redis->pid);
    for (int i = 0; i < s->n; i++)
        cpu0[2 + i] = perf_cpu_seconds(s->rep[i].pid);
    /* BENCH_PERF=<dir>: perf record of the replicas during this round */
    const char *perf_dir = getenv("BENCH_PERF");
    pid_t rec = -1;
    if (perf_dir) {
        char cmd[512], pids[64] = "";
        for (int i = 0; i < s->n; i++)
            snprintf(pids + strlen(pids), sizeof pids - strlen(pids), "%s%d", i ? "," : "",
                     (int)s->rep[i].pid);
        snprintf(cmd, sizeof cmd, "perf record -q -F 999 -g -o %s/%s.data -p %s -- sleep %g",
                 perf_dir, s->name, pids, seconds);
        rec = fork();
        if (rec == 0) {
            execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
            _exit(127);
        }
    }
    long done = 0;
    double rate = perf_flight_window(c, s->name, "echo", payload, WINDOW, seconds, errors, &done);
    if (rec > 0)
        waitpid(rec, NULL, 0);
    cpu1[0] = perf_cpu_seconds(0);
    cpu1[1] = perf_cpu_seconds(redis->pid);
    for (int i = 0; i < s->n; i++)
        cpu1[2 + i] = perf_cpu_seconds(s->rep[i].pid);
    s->sent += done;
    if (done <= 0)
        return;
    double reps = 0;
    for (int i = 0; i < s->n; i++)
        reps += cpu1[2 + i] - cpu0[2 + i];
    perf_emit(BENCH, s->label, "profile_actions_per_s_16", rate, "1/s");
    perf_emit(BENCH, s->label, "cpu_us_per_action_caller", (cpu1[0] - cpu0[0]) / done * 1e6, "us");
    perf_emit(BENCH, s->label, "cpu_us_per_action_replicas", reps / done * 1e6, "us");
    perf_emit(BENCH, s->label, "cpu_us_per_action_redis", (cpu1[1] - cpu0[1]) / done * 1e6, "us");
    perf_redis_emit_stats(redis->port, BENCH, s->label, "action", (double)done);
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : perf_env_seconds("BENCH_SECONDS", 3);
    if (seconds <= 0)
        seconds = 3;
    char path[512];
    ts_redis redis;
    if (perf_svc_default_path(path, sizeof path) != 0 || ts_redis_start(&redis, NULL) != 0)
        return 1;
    int rc = 1;
    long errors = 0;
    service sv[3] = {{.name = "perf_act_one", .label = "one_replica", .n = 1},
                     {.name = "perf_act_three", .label = "three_replicas", .n = 3},
                     {.name = "perf_act_two", .label = "two_replicas", .n = 2}};
    /* BENCH_ACTIONS_TWO=1: a service of two replicas as well (where the cost grows) */
    int nsv = getenv("BENCH_ACTIONS_TWO") ? 3 : 2;
    daebus_caller *caller = NULL;
    int started = 0; /* services whose replicas need stopping */
    for (; started < nsv; started++)
        if (start_service(&sv[started], path, redis.url) != 0) {
            started++; /* its first replicas did start (sv.n of them) */
            goto out;
        }
    daebus_error err = {0};
    caller = daebus_caller_create(redis.url, NULL, &err);
    if (!caller) {
        fprintf(stderr, BENCH ": caller: %s\n", err.message);
        goto out;
    }
    cJSON *payload = cJSON_CreateObject();
    cJSON_AddNumberToObject(payload, "n", 1);
    cJSON_AddStringToObject(payload, "text", "hello");
    /* the replicas see each other (heartbeat 1 s); sizing: what 4 idle replicas
     * (a bus each) cost Redis */
    ts_sleep_ms(1500);
    perf_emit(BENCH, "sizing", "redis_commands_per_s_per_idle_replica",
              perf_redis_rate(redis.port, 3.0) / (nsv == 3 ? 6 : 4), "1/s");
    for (int s = 0; s < nsv; s++) {
        perf_samples w = {0};
        long e = 0;
        perf_flight_one(caller, sv[s].name, "echo", payload, 0.3, &w, &e, &sv[s].sent);
        perf_samples_free(&w);
    }
    for (int round = 0; round < ROUNDS; round++)
        for (int s = 0; s < nsv; s++) {
            perf_samples l = {0};
            long before = 0;
            perf_flight_one(caller, sv[s].name, "echo", payload, seconds, &l, &errors, &before);
            sv[s].sent += before;
            double p50 = perf_percentile(l.v, l.n, 50);
            fprintf(stderr, BENCH ": round %d %-14s 1 in flight p50 %.1f us (%ld)\n", round,
                    sv[s].label, p50 * 1e6, before);
            if (p50 < sv[s].best_p50) {
                sv[s].best_p50 = p50;
                sv[s].best_p99 = perf_percentile(l.v, l.n, 99);
                sv[s].best_rate1 = (double)before / seconds;
            }
            perf_samples_free(&l);
        }
    double pair[ROUNDS16];
    for (int round = 0; round < ROUNDS16; round++) {
        double rate[3] = {0};
        for (int s = 0; s < nsv; s++) {
            double r = perf_flight_window(caller, sv[s].name, "echo", payload, WINDOW, seconds / 2,
                                          &errors, &sv[s].sent);
            rate[s] = r;
            fprintf(stderr, BENCH ": round %d %-14s 16 in flight %.0f/s\n", round, sv[s].label, r);
            if (r > sv[s].best_rate16)
                sv[s].best_rate16 = r;
        }
        pair[round] = rate[0] > 0 ? rate[1] / rate[0] : 0;
    }
    for (int k = 0; k < nsv; k++)
        profile(&sv[k], caller, payload, seconds, &redis, &errors);
    cJSON_Delete(payload);
    /* the last replies of the other replicas (without exactly-once) are counted too */
    ts_sleep_ms(200);
    for (int k = 0; k < nsv; k++)
        report(&sv[k]);
    perf_emit(BENCH, "redis", "ping_p50", perf_redis_ping_p50(redis.port, 2000) * 1e6, "us");
    perf_emit(BENCH, "all", "errors", (double)errors, "count");
    perf_emit(BENCH, "three_vs_one", "actions_per_s_16_median_of_round_ratios",
              perf_percentile(pair, ROUNDS16, 50), "ratio");
    perf_ratio(BENCH, "p50_1_three_vs_one", sv[1].best_p50 / sv[0].best_p50, 1.3, "<=");
    perf_ratio(BENCH, "actions_per_s_16_three_vs_one", sv[1].best_rate16 / sv[0].best_rate16, 0.8,
               ">=");
    rc = errors ? 1 : 0;
out:
    daebus_caller_destroy(caller);
    for (int s = 0; s < started; s++)
        for (int i = 0; i < sv[s].n; i++)
            perf_svc_stop(&sv[s].rep[i]);
    ts_redis_stop(&redis);
    return rc;
}
