/* bench_channel_history - publishes/s into one channel with history
 * (WINDOW messages per round trip: as WINDOW pipelined EVALSHAs with
 * daebus__chist_publish_batch, and as one EVALSHA carrying them all with
 * daebus__chist_publish_many) vs a raw hiredis loop pipelining WINDOW pairs of
 * `XADD <key> MAXLEN ~ 1000 * d <data>` + `PUBLISH <channel> <data>` on one
 * connection (the floor: no offset, no epoch, no envelope). A fourth case,
 * "api", is the whole path: daebus_ws_channel_publish from one thread on a
 * history channel of a WebSocket component in cluster mode (its publisher
 * thread groups the queued publishes, ws_channel_hpub.c), timed until the
 * last one was run by Redis.
 *
 * One private redis-server (ts_redis_start); one subscriber connection reads
 * the Redis channel in every case, as a replica would. The three cases
 * rotate, ROUNDS times each; the best round of each counts. Printed: each
 * case's rate, both ratios to raw (target >= 0.5), the client's CPU per
 * message and Redis's CPU per command (stderr); and the p50 of
 * daebus__chist_since reading 1,000 messages back (the store's share of a
 * recovery).
 *
 * Usage: bench_channel_history [seconds per round (default 3; env BENCH_SECONDS)] */
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdbool.h>
#include <time.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daebus/websocket.h"
#include "perf_common.h"
#include "testsupport.h"
#include "ws_channel_history.h"
#include "ws_channel_hpub.h"

#define WINDOW     16
#define ROUNDS     3
#define MAX_COUNT  1000
#define RECOVER    1000 /* messages read back by one since() */
#define SINCE_RUNS 200
#define CHANNEL    "bench:out"
#define DATA       "{\"user\":\"alice\",\"text\":\"hello everybody, this is a chat message\",\"n\":12}"

static ts_redis redis;
static atomic_ullong received;
static atomic_int stop_sub;

/* CPU seconds of the calling thread (the client's share of a case). */
static double thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static redisContext *raw_connect(void)
{
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", redis.port, tv);
    if (!c || c->err) {
        if (c)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    return c;
}

/* The subscriber: counts what arrives on CHANNEL (a replica's share of the work). */
static void *sub_main(void *arg)
{
    redisContext *c = arg;
    struct timeval tv = {60, 0};
    redisSetTimeout(c, tv);
    while (!atomic_load(&stop_sub)) { /* main publishes once more after setting stop_sub */
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK)
            break;
        atomic_fetch_add(&received, 1);
        freeReplyObject(r);
    }
    return NULL;
}

static double run_raw(double seconds)
{
    redisContext *c = raw_connect();
    if (!c)
        return -1;
    unsigned long long n = 0;
    double t0 = perf_now(), end = t0 + seconds;
    while (perf_now() < end) {
        for (int i = 0; i < WINDOW; i++) {
            redisAppendCommand(c, "XADD bench:raw:hist MAXLEN ~ %d * d %s", MAX_COUNT, DATA);
            redisAppendCommand(c, "PUBLISH %s %s", CHANNEL, DATA);
        }
        for (int i = 0; i < 2 * WINDOW; i++) {
            redisReply *r = NULL;
            if (redisGetReply(c, (void **)&r) != REDIS_OK) {
                redisFree(c);
                return -1;
            }
            freeReplyObject(r);
        }
        n += WINDOW;
    }
    double rate = (double)n / (perf_now() - t0);
    redisFree(c);
    return rate;
}

/* The history publishes: WINDOW messages per round trip, either as WINDOW
 * EVALSHAs pipelined (daebus__chist_publish_batch) or as one EVALSHA
 * carrying them all (daebus__chist_publish_many). */
static double run_history(daebus__chist *h, double seconds, bool many)
{
    daebus__chist_pub p[WINDOW];
    daebus__chist_pos pos[WINDOW];
    const char *data[WINDOW];
    size_t lens[WINDOW];
    int rcs[WINDOW];
    for (int i = 0; i < WINDOW; i++) {
        p[i] = (daebus__chist_pub){.channel = "bench",
                                   .data = DATA,
                                   .len = strlen(DATA),
                                   .redis_channel = CHANNEL,
                                   .head = "\"k\":\"c\",",
                                   .bounds = {.max_count = MAX_COUNT}};
        data[i] = DATA;
        lens[i] = strlen(DATA);
    }
    unsigned long long n = 0, last = 0;
    double t0 = perf_now(), end = t0 + seconds;
    while (perf_now() < end) {
        int rc = many ? daebus__chist_publish_many(h, p, data, lens, WINDOW, pos)
                      : daebus__chist_publish_batch(h, p, WINDOW, pos, rcs);
        if (rc != 0 || (last != 0 && pos[0].offset != last + 1))
            return -1; /* offsets must follow each other */
        last = pos[0].offset + WINDOW - 1;
        n += WINDOW;
    }
    return (double)n / (perf_now() - t0);
}

/* The WebSocket component of the "api" case: cluster mode, channel "api" with a history. */
static int api_start(daebus_app **app, daebus_ws **ws)
{
    static daebus_ws_options wo = DAEBUS_WS_OPTIONS_INIT;
    wo.channels = true;
    wo.channel_history = "api";
    wo.channel_history_count = MAX_COUNT;
    wo.cluster = DAEBUS_WS_CLUSTER_ON;
    ts_service_options o = {.service = "bench_api",
                            .redis_url = redis.url,
                            .log_level = DAEBUS_LOG_ERROR,
                            .ws = true,
                            .ws_options = &wo,
                            .bus = true,
                            .wait_bus = 5};
    ts_service svc;
    if (ts_service_start(&svc, &o) != 0)
        return -1;
    *app = svc.app;
    *ws = svc.ws;
    return 0;
}

/* daebus_ws_channel_publish in a loop for seconds; the clock stops when
 * Redis ran the last one. Returns: messages/s, or -1 (a publish failed). */
static double run_api(daebus_ws *ws, double seconds)
{
    cJSON *d = cJSON_Parse(DATA);
    daebus__ws_hpub_stats s0, s;
    daebus__ws_hpub_get_stats(ws, &s0);
    unsigned long long n = 0;
    double t0 = perf_now(), end = t0 + seconds;
    while (perf_now() < end) {
        for (int i = 0; i < WINDOW; i++) {
            if (daebus_ws_channel_publish(ws, "api", d) != 0) {
                cJSON_Delete(d);
                return -1;
            }
        }
        n += WINDOW;
    }
    cJSON_Delete(d);
    for (;;) {
        daebus__ws_hpub_get_stats(ws, &s);
        if (s.published + s.failed >= s0.published + s0.failed + n)
            break;
        ts_sleep_ms(1);
    }
    double rate = (double)n / (perf_now() - t0);
    fprintf(stderr, "bench_channel_history: api: %llu publishes in %llu groups (round trips)\n", n,
            (unsigned long long)(s.groups - s0.groups));
    return s.failed == s0.failed ? rate : -1;
}

/* The store's share of a recovery: daebus__chist_since of RECOVER messages
 * (of DATA) from one connection, SINCE_RUNS times. Returns the p50 in ms. */
static double run_since(daebus__chist *h)
{
    daebus__chist_pub p = {.channel = "recover", .bounds = {.max_count = 2 * RECOVER}};
    const char *data[WINDOW];
    size_t lens[WINDOW];
    for (int i = 0; i < WINDOW; i++) {
        data[i] = DATA;
        lens[i] = strlen(DATA);
    }
    daebus__chist_pos first;
    for (int i = 0; i < RECOVER / WINDOW + 1; i++)
        if (daebus__chist_publish_many(h, &p, data, lens, WINDOW, &first) != 0)
            return -1;
    perf_samples ms = {0};
    unsigned long long since = first.offset + WINDOW - 1 - RECOVER;
    for (int i = 0; i < SINCE_RUNS; i++) {
        daebus__chist_result res;
        double t0 = perf_now();
        int rc = daebus__chist_since(h, "recover", since, first.epoch, 0, &res);
        double t = (perf_now() - t0) * 1e3;
        bool ok = rc == 0 && res.recovered && res.n == RECOVER;
        daebus__chist_result_free(&res);
        if (!ok) {
            perf_samples_free(&ms);
            return -1;
        }
        perf_samples_add(&ms, t);
    }
    double p50 = perf_percentile(ms.v, ms.n, 50);
    perf_samples_free(&ms);
    return p50;
}

/* Redis's own CPU per command (INFO commandstats), on stderr. */
static void print_cost(void)
{
    redisContext *c = raw_connect();
    redisReply *r = c ? redisCommand(c, "INFO commandstats") : NULL;
    static const char *const names[] = {"cmdstat_evalsha:", "cmdstat_xadd:", "cmdstat_publish:"};
    for (int i = 0; r && r->type == REDIS_REPLY_STRING && i < 3; i++) {
        const char *line = strstr(r->str, names[i]);
        if (line)
            fprintf(stderr, "bench_channel_history: redis %.*s\n", (int)strcspn(line, "\r\n"),
                    line);
    }
    if (r)
        freeReplyObject(r);
    if (c)
        redisFree(c);
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : perf_env_seconds("BENCH_SECONDS", 3);
    if (seconds <= 0)
        seconds = 3;
    if (ts_redis_start(&redis, NULL) != 0)
        return 1;
    daebus__redis_url url;
    daebus__redis_url_parse(redis.url, &url, NULL);
    daebus__redis_pub_opts po = {.url = &url, .connections = 1};
    daebus__redis_pub *pool = daebus__redis_pub_create(&po);
    daebus__chist_opts ho = {.pub = pool, .service = "bench"};
    daebus__chist *h = daebus__chist_create(&ho, NULL);
    redisContext *sc = raw_connect();
    int status = 1;
    if (pool && h && sc) {
        redisReply *r = redisCommand(sc, "SUBSCRIBE %s", CHANNEL);
        freeReplyObject(r);
        pthread_t sub;
        pthread_create(&sub, NULL, sub_main, sc);
        double best[4] = {0, 0, 0, 0}; /* raw, pipelined, many, api */
        static const char *const names[4] = {"raw", "history pipelined", "history many",
                                             "history api"};
        daebus_app *app = NULL;
        daebus_ws *ws = NULL;
        bool api = api_start(&app, &ws) == 0;
        for (int round = 0; round < ROUNDS; round++) {
            /* the order rotates: no case always runs on a warmer machine */
            for (int k = 0; k < 4; k++) {
                int which = (k + round) % 4;
                double c0 = thread_cpu();
                double rate = which == 0   ? run_raw(seconds)
                              : which == 3 ? (api ? run_api(ws, seconds) : -1)
                                           : run_history(h, seconds, which == 2);
                fprintf(stderr,
                        "bench_channel_history: round %d: %s %.0f msg/s (client CPU %.2f "
                        "us/msg)\n",
                        round + 1, names[which], rate,
                        (thread_cpu() - c0) * 1e6 / (rate * seconds));
                best[which] = rate > best[which] ? rate : best[which];
            }
        }
        if (app)
            ts_app_stop(app);
        atomic_store(&stop_sub, 1);
        redisContext *c = raw_connect();
        if (c) {
            freeReplyObject(redisCommand(c, "PUBLISH %s stop", CHANNEL));
            redisFree(c);
        }
        pthread_join(sub, NULL);
        if (best[0] > 0 && best[1] > 0 && best[2] > 0 && best[3] > 0) {
            perf_emit("channel_history", "raw_xadd_publish", "publishes_per_s", best[0], "msg/s");
            perf_emit("channel_history", "history_pipelined", "publishes_per_s", best[1], "msg/s");
            perf_emit("channel_history", "history_many", "publishes_per_s", best[2], "msg/s");
            perf_emit("channel_history", "history_api", "publishes_per_s", best[3], "msg/s");
            perf_ratio("channel_history", "publishes_per_s_pipelined", best[1] / best[0], 0.5,
                       ">=");
            perf_ratio("channel_history", "publishes_per_s_many", best[2] / best[0], 0.5, ">=");
            perf_ratio("channel_history", "publishes_per_s_api", best[3] / best[0], 0.5, ">=");
            status = 0;
        }
        double p50 = run_since(h);
        if (p50 >= 0)
            perf_emit("channel_history", "since_1000", "p50", p50, "ms");
        else
            status = 1;
        print_cost();
        fprintf(stderr, "bench_channel_history: the subscriber received %llu messages\n",
                (unsigned long long)atomic_load(&received));
    }
    if (sc)
        redisFree(sc);
    daebus__chist_destroy(h);
    daebus__redis_pub_destroy(pool);
    ts_redis_stop(&redis);
    return status;
}
