/* bench_soak - mixed load on one service (perf_service, its own process) for
 * SOAK_SECONDS (default 600): HTTP requests (wrk, 1 thread, 4 connections),
 * bus actions (a daebus_caller, one in flight), WebSocket round trips (50
 * clients) and broadcasts (POST /broadcast every 100 ms, to those 50 and to
 * 50 listening clients). Reports the service's resident memory after the
 * warm-up (a fifth of the run, at most 60 s) and at the end, and every error.
 * Not part of CI: `make soak` runs it through tests/perf/soak.sh.
 *
 * Usage: bench_soak [seconds] (or env SOAK_SECONDS) */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daebus/daebus.h"
#include "perf_common.h"
#include "perf_svc.h"
#include "perf_wsload.h"
#include "testsupport.h"

#define WS_CLIENTS 50

typedef struct soak {
    int port;
    const char *redis_url;
    double end;
    atomic_long actions, action_errors, broadcasts, broadcast_errors;
} soak;

static void *caller_main(void *arg)
{
    soak *s = arg;
    daebus_error err = {0};
    daebus_caller *c = daebus_caller_create(s->redis_url, NULL, &err);
    if (!c) {
        atomic_fetch_add(&s->action_errors, 1);
        return NULL;
    }
    cJSON *payload = cJSON_CreateObject();
    cJSON_AddStringToObject(payload, "text", "soak");
    while (perf_now() < s->end) {
        cJSON *reply = NULL;
        int rc = daebus_caller_request(c, "perf_service", "echo", payload, 5.0, &reply, &err);
        cJSON_Delete(reply);
        atomic_fetch_add(rc == 0 ? &s->actions : &s->action_errors, 1);
    }
    cJSON_Delete(payload);
    daebus_caller_destroy(c);
    return NULL;
}

static void *broadcaster_main(void *arg)
{
    soak *s = arg;
    long i = 0;
    while (perf_now() < s->end) {
        char body[64];
        int n = snprintf(body, sizeof body, "{\"n\":%ld}", i++);
        ts_http_response r;
        if (ts_http(s->port, "POST", "/broadcast", "Content-Type: application/json\r\n", body,
                    (size_t)n, &r) == 0) {
            atomic_fetch_add(r.status == 200 ? &s->broadcasts : &s->broadcast_errors, 1);
            ts_http_free(&r);
        } else {
            atomic_fetch_add(&s->broadcast_errors, 1);
        }
        ts_sleep_ms(100);
    }
    return NULL;
}

typedef struct wrk_job {
    char cmd[256];
    double rps;
    long errors;
} wrk_job;

static void *wrk_main(void *arg)
{
    wrk_job *w = arg;
    FILE *p = popen(w->cmd, "r");
    if (!p) {
        w->errors++;
        return NULL;
    }
    char line[512];
    while (fgets(line, sizeof line, p)) {
        double v;
        long a, b, c, d;
        if (sscanf(line, "Requests/sec: %lf", &v) == 1)
            w->rps = v;
        else if (sscanf(line, " Non-2xx or 3xx responses: %ld", &a) == 1)
            w->errors += a;
        else if (sscanf(line, " Socket errors: connect %ld, read %ld, write %ld, timeout %ld", &a,
                        &b, &c, &d) == 4)
            w->errors += a + b + c + d;
    }
    if (pclose(p) != 0 || w->rps <= 0)
        w->errors++;
    return NULL;
}

/* A number from the service's /stats JSON (path like "ws.handler_errors"). */
static double stat_of(int port, const char *group, const char *name)
{
    ts_http_response r;
    if (ts_http(port, "GET", "/stats", NULL, NULL, 0, &r) != 0)
        return -1;
    double v = -1;
    cJSON *o = cJSON_Parse(r.body);
    const cJSON *g = group ? cJSON_GetObjectItemCaseSensitive(o, group) : o;
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(g, name);
    if (cJSON_IsNumber(x))
        v = x->valuedouble;
    cJSON_Delete(o);
    ts_http_free(&r);
    return v;
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : perf_env_seconds("SOAK_SECONDS", 600);
    double warmup = seconds / 5 < 60 ? seconds / 5 : 60;
    perf_raise_nofile();
    char path[1024];
    if (perf_svc_default_path(path, sizeof path) != 0)
        return 1;
    perf_ws_proc echo_set, sink_set;
    if (perf_ws_spawn(&echo_set) != 0 || perf_ws_spawn(&sink_set) != 0)
        return 1;
    ts_redis redis;
    if (ts_redis_start(&redis, NULL) != 0)
        return 1;
    perf_svc svc;
    if (perf_svc_start(&svc, path, redis.url, 1024, false) != 0) {
        ts_redis_stop(&redis);
        return 1;
    }
    long errors = 0;
    perf_ws_cmd cmd;
    memset(&cmd, 0, sizeof cmd);
    cmd.port = svc.port;
    cmd.nclients = WS_CLIENTS;
    snprintf(cmd.path, sizeof cmd.path, "/ws");
    cmd.mode = PERF_WS_ECHO;
    cmd.seconds = seconds;
    snprintf(cmd.msg, sizeof cmd.msg, "{\"type\":\"echo\",\"data\":{\"text\":\"soak\"}}");
    int c1 = 0, c2 = 0;
    perf_ws_connect(&echo_set, &cmd, &c1);
    cmd.mode = PERF_WS_SINK;
    cmd.expect = 1L << 40; /* listen until the end */
    perf_ws_connect(&sink_set, &cmd, &c2);
    if (c1 != WS_CLIENTS || c2 != WS_CLIENTS) {
        fprintf(stderr, "bench_soak: %d + %d WebSocket clients connected\n", c1, c2);
        errors++;
    }

    soak s = {.port = svc.port, .redis_url = redis.url};
    double t0 = perf_now();
    s.end = t0 + seconds;
    wrk_job w = {0};
    snprintf(w.cmd, sizeof w.cmd, "wrk -t1 -c4 -d%.0fs http://127.0.0.1:%d/json 2>&1", seconds,
             svc.port);
    pthread_t tw, tc, tb;
    pthread_create(&tw, NULL, wrk_main, &w);
    pthread_create(&tc, NULL, caller_main, &s);
    pthread_create(&tb, NULL, broadcaster_main, &s);
    perf_ws_go(&echo_set);
    perf_ws_go(&sink_set);

    long rss_warm = -1, rss_end = -1, rss_max = 0;
    double next_report = t0 + 60;
    while (perf_now() < s.end) {
        ts_sleep_ms(1000);
        long rss = perf_rss_kb(svc.pid);
        if (rss > rss_max)
            rss_max = rss;
        if (rss_warm < 0 && perf_now() >= t0 + warmup)
            rss_warm = rss;
        if (perf_now() < s.end - 0.5)
            rss_end = rss;
        if (perf_now() >= next_report) {
            fprintf(stderr, "bench_soak: %.0f s: RSS %.1f MiB, %ld actions, %ld broadcasts\n",
                    perf_now() - t0, rss / 1024.0, atomic_load(&s.actions),
                    atomic_load(&s.broadcasts));
            next_report += 60;
        }
    }
    pthread_join(tc, NULL);
    pthread_join(tb, NULL);
    pthread_join(tw, NULL);
    perf_ws_result er, sr;
    memset(&er, 0, sizeof er);
    memset(&sr, 0, sizeof sr);
    if (perf_ws_result_wait(&echo_set, &er, NULL, NULL) != 0 ||
        perf_ws_result_wait(&sink_set, &sr, NULL, NULL) != 0)
        errors++;
    double handler_errors = stat_of(svc.port, "ws", "handler_errors");
    double ws_in = stat_of(svc.port, "ws", "messages_in");
    double http_5xx = stat_of(svc.port, "http", "responses_5xx");
    double bus_errors = stat_of(svc.port, "bus", "errors");
    double dropped = stat_of(svc.port, "ws", "disconnects_slow") +
                     stat_of(svc.port, "ws", "disconnects_protocol");
    perf_ws_end(&echo_set);
    perf_ws_end(&sink_set);
    int status = perf_svc_stop(&svc);
    ts_redis_stop(&redis);

    errors += w.errors + atomic_load(&s.action_errors) + atomic_load(&s.broadcast_errors) +
              er.errors + sr.errors + (status != 0) + (long)(handler_errors != 0) +
              (long)(http_5xx != 0) + (long)(bus_errors != 0) + (long)(dropped != 0);
    perf_emit("soak", "daebus", "seconds", seconds, "s");
    perf_emit("soak", "daebus", "http_req_per_s", w.rps, "req/s");
    perf_emit("soak", "daebus", "actions_per_s", (double)atomic_load(&s.actions) / seconds, "1/s");
    perf_emit("soak", "daebus", "ws_round_trips_per_s", (double)er.count / seconds, "1/s");
    perf_emit("soak", "daebus", "ws_messages_in_server_count", ws_in, "count");
    perf_emit("soak", "daebus", "broadcasts", (double)atomic_load(&s.broadcasts), "count");
    perf_emit("soak", "daebus", "broadcast_deliveries", (double)sr.count, "count");
    perf_emit("soak", "daebus", "rss_after_warmup", rss_warm / 1024.0, "MiB");
    perf_emit("soak", "daebus", "rss_end", rss_end / 1024.0, "MiB");
    perf_emit("soak", "daebus", "rss_max", rss_max / 1024.0, "MiB");
    perf_emit("soak", "all", "errors", (double)errors, "count");
    if (errors)
        fprintf(stderr,
                "bench_soak: errors: wrk %ld, actions %ld, broadcasts %ld, ws %ld+%ld, exit %d, "
                "ws handler %.0f, http 5xx %.0f, bus %.0f, dropped %.0f\n",
                w.errors, atomic_load(&s.action_errors), atomic_load(&s.broadcast_errors),
                er.errors, sr.errors, status, handler_errors, http_5xx, bus_errors, dropped);
    bool met = rss_warm > 0 && rss_end <= rss_warm * 1.10;
    perf_ratio("soak", "rss_end_vs_after_warmup", rss_warm > 0 ? (double)rss_end / rss_warm : 0,
               1.10, "<=");
    return errors || !met ? 1 : 0;
}
