/* bench_replicas_send - send_to_client to a client connected to another
 * replica vs the raw floor: one Redis pub/sub hop plus the local send.
 *
 * Two perf_service processes (replicas A and B of service "perf_send") on one
 * private redis-server; one WebSocket client (in this process, on a reader
 * thread) is connected to B as "perf_target". One message in flight:
 *   daebus: POST /send to A: A stamps "t" (CLOCK_MONOTONIC) and calls
 *           daebus_ws_send_to_client("perf_target") -> B -> the client;
 *   raw:    POST /send_raw to A: A stamps "t" and PUBLISHes the message with
 *           hiredis on B's relay channel; B's relay thread (raw hiredis
 *           SUBSCRIBE) calls the local daebus_ws_send_to_client() -> the client;
 *   local:  POST /send to B itself (no hop at all; for reference).
 * The latency is the client's receive time minus "t", so the HTTP request that
 * triggers a send is outside the figure. Rounds alternate raw/daebus/local
 * (3 of each); the best p50 of each is kept, as bench_bus does. Then 500
 * sends of each case, profiled: CPU time of A, B and Redis per send (/proc;
 * the HTTP trigger included) and Redis commands per send (INFO commandstats).
 *
 * Usage: bench_replicas_send [seconds per round (default 2; env BENCH_SECONDS)] */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "daebus/daebus.h"
#include "perf_common.h"
#include "perf_probe.h"
#include "perf_svc.h"
#include "testsupport.h"
#include "wsc.h"

#define ROUNDS 3
#define BENCH  "replicas_send"
#define TARGET "perf_target"

/* The client's reader: latency of each "direct" frame, handed to the waiter. */
typedef struct reader {
    wsc c;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    long seq_seen;   /* seq of the last frame */
    double last_lat; /* its latency */
    bool gone;
} reader;

static void *reader_main(void *arg)
{
    reader *r = arg;
    for (;;) {
        char *p = NULL;
        size_t len = 0;
        int op = wsc_recv(&r->c, 1000, &p, &len);
        double now = perf_now();
        if (op == 9)
            wsc_send(&r->c, 10, p, len);
        if (op < 0 || op == 8) {
            free(p);
            break;
        }
        if (op == 1) {
            cJSON *m = cJSON_Parse(p);
            const cJSON *d = cJSON_GetObjectItemCaseSensitive(m, "data");
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(d, "t");
            const cJSON *s = cJSON_GetObjectItemCaseSensitive(d, "seq");
            if (cJSON_IsNumber(t) && cJSON_IsNumber(s)) {
                pthread_mutex_lock(&r->lock);
                r->seq_seen = (long)s->valuedouble;
                r->last_lat = now - t->valuedouble;
                pthread_cond_signal(&r->cond);
                pthread_mutex_unlock(&r->lock);
            }
            cJSON_Delete(m);
        }
        free(p);
    }
    pthread_mutex_lock(&r->lock);
    r->gone = true;
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

/* Waits until the frame with seq arrived; returns its latency or -1. */
static double wait_seq(reader *r, long seq, double timeout)
{
    double until = perf_now() + timeout, lat = -1;
    pthread_mutex_lock(&r->lock);
    while (r->seq_seen < seq && !r->gone && perf_now() < until) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&r->cond, &r->lock, &ts);
    }
    if (r->seq_seen == seq)
        lat = r->last_lat;
    pthread_mutex_unlock(&r->lock);
    return lat;
}

enum { CASE_RAW, CASE_DAEBUS, CASE_LOCAL, NCASES };
static const char *const case_names[NCASES] = {"raw_pubsub_hop", "daebus", "local"};

typedef struct target {
    int a_port, b_port;
    const char *b_relay;
} target;

static long g_seq;

/* One send of case k; returns its latency (s) or -1. */
static double one_send(reader *r, const target *t, int k)
{
    char body[256];
    long seq = ++g_seq;
    int port = k == CASE_LOCAL ? t->b_port : t->a_port;
    const char *path = k == CASE_RAW ? "/send_raw" : "/send";
    snprintf(body, sizeof body, "{\"to\":\"" TARGET "\",\"via\":\"%s\",\"data\":{\"seq\":%ld}}",
             t->b_relay, seq);
    int status = perf_svc_post(port, path, body, NULL);
    if (status != 200)
        return -1;
    return wait_seq(r, seq, 2.0);
}

/* A round of case k for `seconds`: latencies into lat. Returns errors. */
static long run_round(reader *r, const target *t, int k, double seconds, perf_samples *lat)
{
    long errors = 0;
    double end = perf_now() + seconds;
    while (perf_now() < end && errors < 20) {
        double l = one_send(r, t, k);
        if (l < 0)
            errors++;
        else
            perf_samples_add(lat, l);
    }
    return errors;
}

/* Sends until one arrives (the replicas learn of the client): true when it did. */
static bool warm_up(reader *r, const target *t, int k)
{
    double until = perf_now() + 10;
    while (perf_now() < until) {
        if (one_send(r, t, k) >= 0)
            return true;
        ts_sleep_ms(50);
    }
    return false;
}

/* Where the time goes: PROFILE_SENDS sends of case k with the CPU time of
 * A, B and Redis per send and the Redis commands per send. */
#define PROFILE_SENDS 500
static void profile(reader *r, const target *t, int k, const perf_svc *a, const perf_svc *b,
                    const ts_redis *redis, long *errors)
{
    pid_t pids[3] = {a->pid, b->pid, redis->pid};
    double c0[3], c1[3];
    perf_redis_reset_stats(redis->port);
    for (int i = 0; i < 3; i++)
        c0[i] = perf_cpu_seconds(pids[i]);
    int done = 0;
    for (int i = 0; i < PROFILE_SENDS; i++)
        if (one_send(r, t, k) >= 0)
            done++;
        else
            (*errors)++;
    for (int i = 0; i < 3; i++)
        c1[i] = perf_cpu_seconds(pids[i]);
    if (!done)
        return;
    static const char *const who[3] = {"a", "b", "redis"};
    for (int i = 0; i < 3; i++) {
        char m[64];
        snprintf(m, sizeof m, "cpu_us_per_send_%s", who[i]);
        perf_emit(BENCH, case_names[k], m, (c1[i] - c0[i]) / done * 1e6, "us");
    }
    perf_redis_emit_stats(redis->port, BENCH, case_names[k], "send", done);
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : perf_env_seconds("BENCH_SECONDS", 2);
    if (seconds <= 0)
        seconds = 2;
    char path[512];
    ts_redis redis;
    if (perf_svc_default_path(path, sizeof path) != 0 || ts_redis_start(&redis, NULL) != 0)
        return 1;
    int rc = 1;
    long errors = 0;
    perf_svc a, b;
    perf_svc_opts so = {.path = path,
                        .redis_url = redis.url,
                        .service = "perf_send",
                        .max_clients = 64,
                        .relay = "perf_relay:a"};
    if (perf_svc_start_opts(&a, &so) != 0) {
        fprintf(stderr, BENCH ": replica start failed\n");
        goto out_redis;
    }
    so.relay = "perf_relay:b";
    if (perf_svc_start_opts(&b, &so) != 0) {
        fprintf(stderr, BENCH ": replica start failed\n");
        goto out_a;
    }
    reader r;
    memset(&r, 0, sizeof r);
    pthread_mutex_init(&r.lock, NULL);
    pthread_cond_init(&r.cond, NULL);
    if (wsc_connect(&r.c, b.port, "/ws?id=" TARGET, NULL) != 0 ||
        pthread_create(&r.thread, NULL, reader_main, &r) != 0) {
        fprintf(stderr, BENCH ": client connect failed\n");
        goto out_b;
    }
    target t = {.a_port = a.port, .b_port = b.port, .b_relay = "perf_relay:b"};
    bool ok[NCASES];
    for (int k = 0; k < NCASES; k++) {
        ok[k] = warm_up(&r, &t, k);
        if (!ok[k]) {
            fprintf(stderr, BENCH ": case %s: no send arrived within 10 s\n", case_names[k]);
            errors++;
        }
    }
    perf_samples best[NCASES] = {{0}};
    double best_p50[NCASES] = {1e9, 1e9, 1e9};
    for (int round = 0; round < ROUNDS; round++)
        for (int k = 0; k < NCASES; k++) {
            if (!ok[k])
                continue;
            perf_samples l = {0};
            errors += run_round(&r, &t, k, seconds, &l);
            double p50 = perf_percentile(l.v, l.n, 50);
            fprintf(stderr, BENCH ": round %d %-14s p50 %.1f us (%zu sends)\n", round,
                    case_names[k], p50 * 1e6, l.n);
            if (l.n && p50 < best_p50[k]) {
                best_p50[k] = p50;
                perf_samples_free(&best[k]);
                best[k] = l;
            } else {
                perf_samples_free(&l);
            }
        }
    for (int k = 0; k < NCASES; k++)
        if (ok[k])
            profile(&r, &t, k, &a, &b, &redis, &errors);
    for (int k = 0; k < NCASES; k++) {
        if (!ok[k])
            continue;
        perf_emit(BENCH, case_names[k], "p50", perf_percentile(best[k].v, best[k].n, 50) * 1e6,
                  "us");
        perf_emit(BENCH, case_names[k], "p99", perf_percentile(best[k].v, best[k].n, 99) * 1e6,
                  "us");
        perf_emit(BENCH, case_names[k], "sends", (double)best[k].n, "count");
        perf_samples_free(&best[k]);
    }
    if (ok[CASE_RAW] && ok[CASE_DAEBUS])
        perf_ratio(BENCH, "p50_cross_replica_vs_raw_hop",
                   best_p50[CASE_DAEBUS] / best_p50[CASE_RAW], 1.5, "<=");
    perf_emit(BENCH, "all", "errors", (double)errors, "count");
    rc = errors ? 1 : 0;
    shutdown(r.c.fd, SHUT_RDWR); /* the reader sees EOF */
    pthread_join(r.thread, NULL);
    wsc_close(&r.c);
out_b:
    perf_svc_stop(&b);
out_a:
    perf_svc_stop(&a);
out_redis:
    ts_redis_stop(&redis);
    return rc;
}
