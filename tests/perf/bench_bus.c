/* bench_bus - action round trip through daebus (a daebus_caller invoking an
 * ACTION of a running service) vs a raw hiredis pub/sub round trip (request
 * published on one channel, a thread echoes it on a reply channel), with one
 * request in flight and with 16 in flight.
 *
 * Everything runs in this process against a private redis-server on a free
 * port (ts_redis_start). The raw service echoes the request bytes without
 * parsing them: it is the floor a framework round trip can approach.
 *
 * Usage: bench_bus [seconds per case (default 3; env BENCH_SECONDS)] */
#include <hiredis/hiredis.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daebus/daebus.h"
#include "perf_common.h"
#include "testsupport.h"

#define ROUNDS16 5 /* alternating rounds of the 16-in-flight cases */
#define WINDOW   16

ACTION(bench_echo, "echo")
{
    return daebus_bus_reply(req, payload);
}

/* ---- raw hiredis ---- */

static redisContext *raw_connect(int port)
{
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (!c || c->err) {
        if (c)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    return c;
}

static redisContext *raw_subscribe(int port, const char *channel)
{
    redisContext *c = raw_connect(port);
    if (!c)
        return NULL;
    redisReply *r = redisCommand(c, "SUBSCRIBE %s", channel);
    if (!r) {
        redisFree(c);
        return NULL;
    }
    freeReplyObject(r);
    return c;
}

/* Next pub/sub message body (borrowed from *reply_out, which the caller
 * frees), or NULL. */
static const char *raw_next(redisContext *c, redisReply **reply_out, size_t *len)
{
    void *v = NULL;
    *reply_out = NULL;
    if (redisGetReply(c, &v) != REDIS_OK || !v)
        return NULL;
    redisReply *r = v;
    *reply_out = r;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
        r->element[2]->type == REDIS_REPLY_STRING) {
        *len = r->element[2]->len;
        return r->element[2]->str;
    }
    return NULL;
}

typedef struct raw_service {
    int port;
    redisContext *sub, *pub;
    pthread_t thread;
} raw_service;

/* True when another reply can be read from c without blocking. */
static bool raw_ready(redisContext *c)
{
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    return poll(&p, 1, 0) == 1;
}

/* The next reply already buffered or readable without blocking, else NULL. */
static redisReply *raw_try_reply(redisContext *c)
{
    void *v = NULL;
    if (redisReaderGetReply(c->reader, &v) == REDIS_OK && v)
        return v;
    if (!raw_ready(c) || redisBufferRead(c) != REDIS_OK)
        return NULL;
    if (redisReaderGetReply(c->reader, &v) == REDIS_OK && v)
        return v;
    return NULL;
}

static const char *raw_body(redisReply *r, size_t *len)
{
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
        r->element[2]->type == REDIS_REPLY_STRING) {
        *len = r->element[2]->len;
        return r->element[2]->str;
    }
    return NULL;
}

/* Raw mode: false = one request at a time, each PUBLISH waited for (the
 * straightforward hiredis loop); true = pipelined (see below). */
static atomic_bool raw_pipelined;

/* An event-loop echo service: takes every request already received, queues
 * one PUBLISH per request (pipelined), then collects their replies. */
static void *raw_service_main(void *arg)
{
    raw_service *s = arg;
    bool stop = false;
    while (!stop) {
        redisReply *r;
        size_t len = 0;
        const char *msg = raw_next(s->sub, &r, &len);
        if (!r)
            break;
        int pending = 0;
        while (r) {
            msg = raw_body(r, &len);
            if (msg && len == 4 && memcmp(msg, "STOP", 4) == 0)
                stop = true;
            else if (msg && redisAppendCommand(s->pub, "PUBLISH raw_rep %b", msg, len) == REDIS_OK)
                pending++;
            freeReplyObject(r);
            r = atomic_load(&raw_pipelined) ? raw_try_reply(s->sub) : NULL;
        }
        while (pending-- > 0) {
            void *v = NULL;
            if (redisGetReply(s->pub, &v) != REDIS_OK)
                return NULL;
            freeReplyObject(v);
        }
    }
    return NULL;
}

/* A request of the same shape and size as the caller's. */
static int raw_message(char *buf, size_t cap, long seq)
{
    return snprintf(buf, cap,
                    "{\"action\":\"echo\",\"payload\":{\"n\":1,\"text\":\"hello\"},"
                    "\"reply_to\":\"raw_rep\",\"request_id\":\"%036ld\",\"service\":\"raw\"}",
                    seq);
}

/* Runs the raw round trip with window requests in flight. */
static int raw_run(int port, int window, double seconds, perf_samples *lat, double *rate)
{
    redisContext *pub = raw_connect(port), *sub = raw_subscribe(port, "raw_rep");
    if (!pub || !sub)
        return -1;
    double *start = calloc((size_t)window, sizeof *start);
    char msg[512];
    long sent = 0, done = 0;
    double t0 = perf_now(), end = t0 + seconds;
    for (int i = 0; i < window; i++) {
        int n = raw_message(msg, sizeof msg, sent);
        start[sent % window] = perf_now();
        freeReplyObject(redisCommand(pub, "PUBLISH raw_req %b", msg, (size_t)n));
        sent++;
    }
    while (done < sent) {
        redisReply *r;
        size_t len = 0;
        raw_next(sub, &r, &len);
        if (!r)
            break;
        int again = 0;
        while (r) {
            const char *m = raw_body(r, &len);
            const char *id = m ? strstr(m, "\"request_id\":\"") : NULL;
            long seq = id ? atol(id + 14) : 0;
            freeReplyObject(r);
            double now = perf_now();
            if (m) {
                perf_samples_add(lat, now - start[seq % window]);
                done++;
                if (now < end)
                    again++;
            }
            r = atomic_load(&raw_pipelined) ? raw_try_reply(sub) : NULL;
        }
        /* pipelined: every new request goes out before their replies are read */
        for (int i = 0; i < again; i++) {
            int n = raw_message(msg, sizeof msg, sent);
            start[sent % window] = perf_now();
            redisAppendCommand(pub, "PUBLISH raw_req %b", msg, (size_t)n);
            sent++;
        }
        for (int i = 0; i < again; i++) {
            void *v = NULL;
            if (redisGetReply(pub, &v) != REDIS_OK)
                break;
            freeReplyObject(v);
        }
    }
    *rate = (double)done / (perf_now() - t0);
    free(start);
    redisFree(pub);
    redisFree(sub);
    return done == sent ? 0 : -1;
}

/* ---- daebus caller ---- */

typedef struct fw_state {
    daebus_caller *caller;
    cJSON *payload;
    double end;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    perf_samples *lat;
    long done, errors;
    int outstanding;
    double start[WINDOW];
} fw_state;

static void fw_done(daebus_caller *caller, int status, const cJSON *payload, const char *message,
                    void *user);

static int fw_issue(fw_state *s, int slot)
{
    s->start[slot] = perf_now();
    return daebus_caller_request_async(s->caller, "bench_svc", "echo", s->payload, 5.0, fw_done,
                                       NULL, (void *)&s->start[slot], NULL);
}

static fw_state *g_fw;

static void fw_done(daebus_caller *caller, int status, const cJSON *payload, const char *message,
                    void *user)
{
    (void)caller;
    (void)payload;
    (void)message;
    fw_state *s = g_fw;
    double *st = user;
    int slot = (int)(st - s->start);
    double now = perf_now();
    pthread_mutex_lock(&s->lock);
    perf_samples_add(s->lat, now - *st);
    s->done++;
    if (status != 0)
        s->errors++;
    bool again = now < s->end;
    if (!again)
        s->outstanding--;
    pthread_mutex_unlock(&s->lock);
    if (again && fw_issue(s, slot) != 0) {
        pthread_mutex_lock(&s->lock);
        s->errors++;
        s->outstanding--;
        pthread_mutex_unlock(&s->lock);
    }
    pthread_mutex_lock(&s->lock);
    if (s->outstanding == 0)
        pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

/* window threads, each with one blocking request in flight at a time, all on
 * one caller. */
typedef struct fw_thread {
    daebus_caller *caller;
    const cJSON *payload;
    double end;
    perf_samples lat;
    long done, errors;
} fw_thread;

static void *fw_thread_main(void *arg)
{
    fw_thread *t = arg;
    while (perf_now() < t->end) {
        double t0 = perf_now();
        cJSON *reply = NULL;
        daebus_error err = {0};
        int rc =
            daebus_caller_request(t->caller, "bench_svc", "echo", t->payload, 5.0, &reply, &err);
        perf_samples_add(&t->lat, perf_now() - t0);
        cJSON_Delete(reply);
        t->done++;
        if (rc)
            t->errors++;
    }
    return NULL;
}

static int fw_run_threads(daebus_caller *c, int window, double seconds, perf_samples *lat,
                          double *rate, long *errors)
{
    cJSON *payload = cJSON_CreateObject();
    cJSON_AddNumberToObject(payload, "n", 1);
    cJSON_AddStringToObject(payload, "text", "hello");
    fw_thread ts[WINDOW];
    pthread_t th[WINDOW];
    double t0 = perf_now();
    long done = 0;
    for (int i = 0; i < window && i < WINDOW; i++) {
        ts[i] = (fw_thread){.caller = c, .payload = payload, .end = t0 + seconds};
        pthread_create(&th[i], NULL, fw_thread_main, &ts[i]);
    }
    for (int i = 0; i < window && i < WINDOW; i++) {
        pthread_join(th[i], NULL);
        for (size_t k = 0; k < ts[i].lat.n; k++)
            perf_samples_add(lat, ts[i].lat.v[k]);
        perf_samples_free(&ts[i].lat);
        done += ts[i].done;
        *errors += ts[i].errors;
    }
    *rate = (double)done / (perf_now() - t0);
    cJSON_Delete(payload);
    return 0;
}

static int fw_run(daebus_caller *c, int window, double seconds, perf_samples *lat, double *rate,
                  long *errors)
{
    cJSON *payload = cJSON_CreateObject();
    cJSON_AddNumberToObject(payload, "n", 1);
    cJSON_AddStringToObject(payload, "text", "hello");
    double t0 = perf_now();
    long done = 0;
    if (window == 1) {
        double end = t0 + seconds;
        while (perf_now() < end) {
            double t = perf_now();
            cJSON *reply = NULL;
            daebus_error err = {0};
            int rc = daebus_caller_request(c, "bench_svc", "echo", payload, 5.0, &reply, &err);
            perf_samples_add(lat, perf_now() - t);
            cJSON_Delete(reply);
            if (rc)
                (*errors)++;
            done++;
        }
    } else {
        fw_state s = {.caller = c, .payload = payload, .end = t0 + seconds, .lat = lat};
        pthread_mutex_init(&s.lock, NULL);
        pthread_cond_init(&s.cond, NULL);
        g_fw = &s;
        pthread_mutex_lock(&s.lock);
        s.outstanding = window;
        pthread_mutex_unlock(&s.lock);
        for (int i = 0; i < window; i++)
            if (fw_issue(&s, i) != 0) {
                pthread_mutex_lock(&s.lock);
                s.errors++;
                s.outstanding--;
                pthread_mutex_unlock(&s.lock);
            }
        pthread_mutex_lock(&s.lock);
        while (s.outstanding > 0)
            pthread_cond_wait(&s.cond, &s.lock);
        done = s.done;
        *errors += s.errors;
        pthread_mutex_unlock(&s.lock);
        pthread_mutex_destroy(&s.lock);
        pthread_cond_destroy(&s.cond);
        g_fw = NULL;
    }
    *rate = (double)done / (perf_now() - t0);
    cJSON_Delete(payload);
    return 0;
}

static void report(const char *kase, const char *suffix, perf_samples *lat, double rate,
                   double *p50_out)
{
    char m[64];
    double p50 = perf_percentile(lat->v, lat->n, 50) * 1e6;
    double p99 = perf_percentile(lat->v, lat->n, 99) * 1e6;
    snprintf(m, sizeof m, "p50_%s", suffix);
    perf_emit("bus", kase, m, p50, "us");
    snprintf(m, sizeof m, "p99_%s", suffix);
    perf_emit("bus", kase, m, p99, "us");
    snprintf(m, sizeof m, "actions_per_s_%s", suffix);
    perf_emit("bus", kase, m, rate, "1/s");
    if (p50_out)
        *p50_out = p50;
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : perf_env_seconds("BENCH_SECONDS", 3);
    ts_redis redis;
    if (ts_redis_start(&redis, NULL) != 0)
        return 1;
    int rc = 1;
    daebus_app_options o = DAEBUS_APP_OPTIONS_INIT;
    o.service = "bench_svc";
    o.redis_url = redis.url;
    o.no_signals = true;
    o.log_level = DAEBUS_LOG_ERROR;
    daebus_app *app = daebus_app_create(&o, NULL);
    daebus_bus *bus = daebus_bus_create(NULL, NULL);
    if (!app || !bus || daebus_bus_attach(bus, app) != 0 || daebus_app_start(app) != 0) {
        fprintf(stderr, "bench_bus: service start failed\n");
        goto out_redis;
    }
    daebus_error err = {0};
    daebus_caller *caller = daebus_caller_create(redis.url, NULL, &err);
    raw_service rs = {.port = redis.port};
    rs.sub = raw_subscribe(redis.port, "raw_req");
    rs.pub = raw_connect(redis.port);
    if (!caller || !rs.sub || !rs.pub ||
        pthread_create(&rs.thread, NULL, raw_service_main, &rs) != 0) {
        fprintf(stderr, "bench_bus: caller/raw service failed: %s\n", err.message);
        goto out_app;
    }
    /* warm-up: connections, first allocations */
    {
        perf_samples w = {0};
        double r;
        long e = 0;
        fw_run(caller, 1, 0.3, &w, &r, &e);
        perf_samples_free(&w);
        raw_run(redis.port, 1, 0.3, &w, &r);
        perf_samples_free(&w);
    }
    long errors = 0;
    double raw1_p50, fw1_p50, raw1_rate, fw1_rate, raw16_rate, rawp16_rate, fw16_rate;
    perf_samples l = {0};
    /* BENCH_BUS_ONLY=raw|daebus: one in flight, one side only, for profiling */
    const char *only = getenv("BENCH_BUS_ONLY");
    if (only) {
        double rate, p50;
        if (strcmp(only, "raw") == 0)
            raw_run(redis.port, 1, seconds, &l, &rate);
        else
            fw_run(caller, 1, seconds, &l, &rate, &errors);
        report(only, "1", &l, rate, &p50);
        perf_samples_free(&l);
        goto stop_raw;
    }
    /* one in flight: alternate raw and daebus, keep each side's best round */
    raw1_p50 = fw1_p50 = 1e9;
    raw1_rate = fw1_rate = 0;
    perf_samples best_raw = {0}, best_fw = {0};
    for (int round = 0; round < 2; round++) {
        double rate, p50;
        if (raw_run(redis.port, 1, seconds, &l, &rate) != 0)
            errors++;
        p50 = perf_percentile(l.v, l.n, 50);
        if (p50 < raw1_p50) {
            raw1_p50 = p50;
            raw1_rate = rate;
            perf_samples_free(&best_raw);
            best_raw = l;
        } else {
            perf_samples_free(&l);
        }
        memset(&l, 0, sizeof l);
        fw_run(caller, 1, seconds, &l, &rate, &errors);
        p50 = perf_percentile(l.v, l.n, 50);
        if (p50 < fw1_p50) {
            fw1_p50 = p50;
            fw1_rate = rate;
            perf_samples_free(&best_fw);
            best_fw = l;
        } else {
            perf_samples_free(&l);
        }
        memset(&l, 0, sizeof l);
    }
    report("raw_hiredis", "1", &best_raw, raw1_rate, &raw1_p50);
    report("daebus", "1", &best_fw, fw1_rate, &fw1_p50);
    perf_samples_free(&best_raw);
    perf_samples_free(&best_fw);
    /* 16 in flight: ROUNDS16 rounds of straightforward raw, pipelined raw and
     * daebus, one after the other; the ratios are the medians of each round's
     * ratios (a 2-core VM moves all three between rounds: one long run of
     * each compares different machines). */
    double r16[ROUNDS16], rp16[ROUNDS16], f16[ROUNDS16], q16[ROUNDS16], qp16[ROUNDS16];
    perf_samples all_raw = {0}, all_rawp = {0}, all_fw = {0};
    double part = seconds / 3 > 0.5 ? seconds / 3 : 0.5;
    for (int round = 0; round < ROUNDS16; round++) {
        if (raw_run(redis.port, WINDOW, part, &all_raw, &r16[round]) != 0)
            errors++;
        atomic_store(&raw_pipelined, true);
        if (raw_run(redis.port, WINDOW, part, &all_rawp, &rp16[round]) != 0)
            errors++;
        atomic_store(&raw_pipelined, false);
        fw_run(caller, WINDOW, part, &all_fw, &f16[round], &errors);
        q16[round] = r16[round] > 0 ? f16[round] / r16[round] : 0;
        qp16[round] = rp16[round] > 0 ? f16[round] / rp16[round] : 0;
        char kase[32];
        snprintf(kase, sizeof kase, "round_%d", round + 1);
        perf_emit("bus", kase, "ratio_16_vs_straightforward", q16[round], "x");
        perf_emit("bus", kase, "ratio_16_vs_pipelined", qp16[round], "x");
    }
    raw16_rate = perf_percentile(r16, ROUNDS16, 50);
    rawp16_rate = perf_percentile(rp16, ROUNDS16, 50);
    fw16_rate = perf_percentile(f16, ROUNDS16, 50);
    report("raw_hiredis", "16", &all_raw, raw16_rate, NULL);
    report("raw_hiredis_pipelined", "16", &all_rawp, rawp16_rate, NULL);
    report("daebus", "16", &all_fw, fw16_rate, NULL);
    perf_samples_free(&all_raw);
    perf_samples_free(&all_rawp);
    perf_samples_free(&all_fw);
    double fw16t_rate;
    fw_run_threads(caller, WINDOW, seconds, &l, &fw16t_rate, &errors);
    report("daebus_threads", "16", &l, fw16t_rate, NULL);
    perf_samples_free(&l);
    perf_emit("bus", "all", "errors", (double)errors, "count");
    perf_ratio("bus", "p50_1_in_flight", fw1_p50 / raw1_p50, 1.5, "<=");
    perf_ratio("bus", "actions_per_s_16_in_flight", perf_percentile(q16, ROUNDS16, 50), 1.0, ">=");
    /* Stricter reference: a hand-written pipelined event loop. */
    perf_ratio("bus", "actions_per_s_16_in_flight_vs_pipelined",
               perf_percentile(qp16, ROUNDS16, 50), 0.5, ">=");
    rc = errors ? 1 : 0;

stop_raw:;
    redisContext *stop = raw_connect(redis.port);
    if (stop) {
        freeReplyObject(redisCommand(stop, "PUBLISH raw_req STOP"));
        redisFree(stop);
    }
    pthread_join(rs.thread, NULL);
out_app:
    if (rs.sub)
        redisFree(rs.sub);
    if (rs.pub)
        redisFree(rs.pub);
    daebus_caller_destroy(caller);
    daebus_app_stop(app);
    daebus_app_wait(app);
    daebus_app_destroy(app);
out_redis:
    ts_redis_stop(&redis);
    return rc;
}
