/* bench_durable - durable actions (issue 17) vs pub/sub actions.
 *
 * durable_service processes (tests/integration/durable) on one private
 * redis-server; two daebus_callers in this process, one pub/sub, one with the
 * durable option, call the same service:
 *   1. one in flight, ACTION "echo" of a service of one replica: p50 of the
 *      round trip, durable vs pub/sub (target <= 2 x);
 *   2. 16 in flight, the same: requests/s, durable vs pub/sub (>= 0.5 x);
 *   3. 16 in flight durable, ACTION "count" with a 5 ms sleep, replicas of
 *      4 workers: a service of two replicas vs one (>= 1.8 x: the second
 *      replica takes what the first has no free worker for).
 * Rounds alternate (ROUNDS of each); the best of each is kept, as in
 * bench_replicas_actions.
 *
 * Usage: bench_durable [seconds per round (default 2; env BENCH_SECONDS)] */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daebus/daebus.h"
#include "perf_common.h"
#include "perf_flight.h"
#include "testsupport.h"

#define WINDOW 16
#define ROUNDS 3
#define BENCH  "durable"

static ts_redis redis;
static char service_path[600];

/* ---- replicas ---- */

static pid_t start_replica(const char *service, const char *workers)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stdout) || dup2(fileno(stdout), 2) < 0)
            _exit(126);
        setenv("DUR_SERVICE", service, 1);
        setenv("DUR_WORKERS", workers, 1);
        execl(service_path, service_path, "--redis", redis.url, "--log-level", "error",
              (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void stop_replica(pid_t pid)
{
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
}

/* One in flight for `seconds`: the p50 in seconds. */
static double run_one(daebus_caller *c, const char *service, cJSON *payload, double seconds,
                      long *errors)
{
    perf_samples lat = {0};
    perf_flight_one(c, service, "echo", payload, seconds, &lat, errors, NULL);
    double p50 = lat.n ? perf_percentile(lat.v, lat.n, 50) : 0;
    perf_samples_free(&lat);
    return p50;
}

/* Waits until n replicas of service subscribe to its channel. */
static int wait_replicas(daebus_caller *c, const char *service, int n)
{
    for (int i = 0; i < 1000; i++) {
        /* A pub/sub echo reaches every replica's channel subscription: ask
         * Redis through a publish of nothing instead (PUBLISH counts them). */
        int got = daebus_caller_publish(c, service, "{}", 2);
        if (got >= n)
            return 0;
        ts_sleep_ms(10);
    }
    return -1;
}

static daebus_caller *make_caller(bool durable)
{
    daebus_caller_options o = DAEBUS_CALLER_OPTIONS_INIT;
    o.durable = durable;
    daebus_error err = {0};
    daebus_caller *c = daebus_caller_create(redis.url, &o, &err);
    if (!c)
        fprintf(stderr, BENCH ": caller: %s\n", err.message);
    return c;
}

/* 1 and 2: echo, durable vs pub/sub. */
static void bench_echo(daebus_caller *pubsub, daebus_caller *durable, double seconds, long *errors)
{
    pid_t rep = start_replica("bd_echo", "10");
    if (wait_replicas(pubsub, "bd_echo", 1) != 0) {
        fprintf(stderr, BENCH ": bd_echo did not start\n");
        (*errors)++;
    }
    cJSON *payload = cJSON_Parse("{\"text\":\"hello\",\"n\":42}");
    double best_p50[2] = {1e9, 1e9}, best_rate[2] = {0, 0};
    daebus_caller *c[2] = {pubsub, durable};
    const char *label[2] = {"pubsub", "durable"};
    for (int i = 0; i < 2; i++) /* warm-up */
        run_one(c[i], "bd_echo", payload, 0.3, errors);
    for (int round = 1; round <= ROUNDS; round++)
        for (int i = 0; i < 2; i++) {
            double p50 = run_one(c[i], "bd_echo", payload, seconds, errors);
            double rate =
                perf_flight_window(c[i], "bd_echo", "echo", payload, WINDOW, seconds, errors, NULL);
            fprintf(stderr, BENCH ": round %d %-8s p50 %.1f us, 16 in flight %.0f/s\n", round,
                    label[i], p50 * 1e6, rate);
            if (p50 < best_p50[i])
                best_p50[i] = p50;
            if (rate > best_rate[i])
                best_rate[i] = rate;
        }
    for (int i = 0; i < 2; i++) {
        perf_emit(BENCH, label[i], "p50_1", best_p50[i] * 1e6, "us");
        perf_emit(BENCH, label[i], "actions_per_s_16", best_rate[i], "1/s");
    }
    perf_ratio(BENCH, "p50_1_durable_vs_pubsub", best_p50[1] / best_p50[0], 2.0, "<=");
    perf_ratio(BENCH, "actions_per_s_16_durable_vs_pubsub", best_rate[1] / best_rate[0], 0.5, ">=");
    cJSON_Delete(payload);
    stop_replica(rep);
}

/* 3: a slow handler (5 ms), replicas of 4 workers: two replicas vs one. */
static void bench_slow(daebus_caller *pubsub, daebus_caller *durable, double seconds, long *errors)
{
    pid_t one = start_replica("bd_slow1", "4");
    pid_t two[2] = {start_replica("bd_slow2", "4"), start_replica("bd_slow2", "4")};
    if (wait_replicas(pubsub, "bd_slow1", 1) != 0 || wait_replicas(pubsub, "bd_slow2", 2) != 0) {
        fprintf(stderr, BENCH ": slow replicas did not start\n");
        (*errors)++;
    }
    cJSON *payload = cJSON_Parse("{\"sleep_ms\":5}");
    double best[2] = {0, 0};
    const char *svc[2] = {"bd_slow1", "bd_slow2"};
    const char *label[2] = {"slow_one_replica", "slow_two_replicas"};
    for (int round = 1; round <= ROUNDS; round++)
        for (int i = 0; i < 2; i++) {
            double rate = perf_flight_window(durable, svc[i], "count", payload, WINDOW, seconds,
                                             errors, NULL);
            fprintf(stderr, BENCH ": round %d %-18s 16 in flight %.0f/s\n", round, label[i], rate);
            if (rate > best[i])
                best[i] = rate;
        }
    for (int i = 0; i < 2; i++)
        perf_emit(BENCH, label[i], "actions_per_s_16", best[i], "1/s");
    perf_ratio(BENCH, "slow_actions_per_s_16_two_vs_one", best[1] / best[0], 1.8, ">=");
    cJSON_Delete(payload);
    stop_replica(one);
    stop_replica(two[0]);
    stop_replica(two[1]);
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : perf_env_seconds("BENCH_SECONDS", 2);
    signal(SIGPIPE, SIG_IGN);
    daebus_log_set_level(DAEBUS_LOG_ERROR);
    char self[512];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return 1;
    self[n] = 0;
    *strrchr(self, '/') = 0; /* build/bin */
    snprintf(service_path, sizeof service_path, "%s/../tests/durable_service", self);
    if (access(service_path, X_OK) != 0) {
        fprintf(stderr, BENCH ": %s missing (build the tests)\n", service_path);
        return 1;
    }
    if (ts_redis_start(&redis, NULL) != 0)
        return 1;
    daebus_caller *pubsub = make_caller(false), *durable = make_caller(true);
    long errors = 0;
    if (pubsub && durable) {
        bench_echo(pubsub, durable, seconds, &errors);
        bench_slow(pubsub, durable, seconds, &errors);
    }
    perf_emit(BENCH, "all", "errors", (double)errors, "count");
    daebus_caller_destroy(pubsub);
    daebus_caller_destroy(durable);
    ts_redis_stop(&redis);
    return pubsub && durable && errors == 0 ? 0 : 1;
}
