/* bench_channel_recovery - recovery of missed channel messages on reconnect
 * (issue 16: 1,000 missed messages, p50 under 50 ms on this machine).
 *
 * Two perf_service replicas of one service on a private redis-server, the
 * bench channel with history (PERF_CHANNEL_HISTORY). One sample: a WebSocket
 * client (wsc) connects to replica A, subscribes to the channel and keeps the
 * position {offset, epoch} of the answer, disconnects; replica A publishes M
 * messages on the channel (POST /chburst, daebus_ws_channel_publish: queued,
 * so the bench then waits until A's position reads N+M: every one is in
 * Redis); the client connects to replica B and sends
 * {"type":"subscribe","channel":C,"since":{"offset":N,"epoch":E}}. The sample
 * is the time from sending that subscribe to receiving the M-th missed
 * message. Every sample is checked: the answer says recovered with offset
 * N+M and the same epoch, then exactly the offsets N+1 .. N+M in order (any
 * other frame, gap, duplicate or timeout is an error).
 * M = 1,000 and M = 100, SAMPLES each: p50 and p99. Exit 1 on any error.
 *
 * Usage: bench_channel_recovery [samples (default 25)] */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daebus/daebus.h"
#include "perf_common.h"
#include "perf_svc.h"
#include "testsupport.h"
#include "wsc.h"

#define CHANNEL "bench:recover"
#define BENCH   "channel_recovery"

/* The next text frame of c, parsed, or NULL (timeout, closed, not JSON). */
static cJSON *recv_json(wsc *c)
{
    char *text = wsc_recv_text(c, 5000);
    cJSON *f = text ? cJSON_Parse(text) : NULL;
    free(text);
    return f;
}

static const char *str_of(const cJSON *o, const char *name)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, name));
}

/* o's string member name equals want. */
static bool str_is(const cJSON *o, const char *name, const char *want)
{
    const char *s = str_of(o, name);
    return s && strcmp(s, want) == 0;
}

static double num_of(const cJSON *o, const char *name)
{
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsNumber(n) ? n->valuedouble : -1;
}

/* Connects to port, subscribes without "since": *offset and epoch get the
 * channel's position. Returns 0 or -1. */
static int position(int port, long *offset, char *epoch, size_t len)
{
    wsc c;
    if (wsc_connect(&c, port, "/ws", NULL) != 0)
        return -1;
    int rc = -1;
    if (wsc_send_text(&c, "{\"type\":\"subscribe\",\"channel\":\"" CHANNEL
                          "\",\"request_id\":\"p\"}") == 0) {
        cJSON *f = recv_json(&c);
        /* live messages may come before the answer of a subscribe without since */
        for (int i = 0; f && str_is(f, "type", "channel_message") && i < 100000; i++) {
            cJSON_Delete(f);
            f = recv_json(&c);
        }
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(f, "data");
        const char *e = str_of(d, "epoch");
        if (e && num_of(d, "offset") >= 0 && str_is(f, "type", "response")) {
            *offset = (long)num_of(d, "offset");
            snprintf(epoch, len, "%s", e);
            rc = 0;
        } else {
            fprintf(stderr, BENCH ": unexpected subscribe answer\n");
        }
        cJSON_Delete(f);
    }
    wsc_close(&c);
    return rc;
}

/* Reads the answer and m missed messages after a subscribe with since
 * {from, epoch}; checks them. Returns 0 or -1. */
static int read_recovery(wsc *c, long from, const char *epoch, int m)
{
    cJSON *f = recv_json(c);
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(f, "data");
    int ok = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(d, "recovered")) &&
             (long)num_of(d, "offset") == from + m && str_is(d, "epoch", epoch);
    if (!ok) {
        char *t = f ? cJSON_PrintUnformatted(f) : NULL;
        fprintf(stderr, BENCH ": bad recovery answer %s (expected offset %ld)\n", t ? t : "(none)",
                from + m);
        free(t);
    }
    cJSON_Delete(f);
    for (int i = 1; ok && i <= m; i++) {
        f = recv_json(c);
        ok = f && str_is(f, "type", "channel_message") && (long)num_of(f, "offset") == from + i &&
             str_is(f, "epoch", epoch);
        if (!ok)
            fprintf(stderr, BENCH ": missed message %d of %d: %s (offset %.0f, expected %ld)\n", i,
                    m, f ? "wrong frame" : "not received", num_of(f, "offset"), from + i);
        cJSON_Delete(f);
    }
    return ok ? 0 : -1;
}

/* One sample of m missed messages: seconds, or -1 on an error. */
static double sample(int port_a, int port_b, int m)
{
    long from = 0;
    char epoch[64], body[96], sub[256];
    if (position(port_a, &from, epoch, sizeof epoch) != 0)
        return -1;
    snprintf(body, sizeof body, "{\"n\":%d,\"channel\":\"%s\"}", m, CHANNEL);
    if (perf_svc_post(port_a, "/chburst", body, NULL) != 200) {
        fprintf(stderr, BENCH ": POST /chburst failed\n");
        return -1;
    }
    long now = -1; /* the publishes are queued: wait until Redis ran them all */
    double end = perf_now() + 10;
    while (perf_now() < end && (position(port_a, &now, sub, sizeof sub) != 0 || now < from + m))
        ts_sleep_ms(1);
    if (now != from + m) {
        fprintf(stderr, BENCH ": the history reached offset %ld, not %ld\n", now, from + m);
        return -1;
    }
    wsc c;
    if (wsc_connect(&c, port_b, "/ws", NULL) != 0)
        return -1;
    snprintf(sub, sizeof sub,
             "{\"type\":\"subscribe\",\"channel\":\"%s\",\"request_id\":\"r\","
             "\"since\":{\"offset\":%ld,\"epoch\":\"%s\"}}",
             CHANNEL, from, epoch);
    double t0 = perf_now();
    int rc = wsc_send_text(&c, sub) == 0 ? read_recovery(&c, from, epoch, m) : -1;
    double t = perf_now() - t0;
    wsc_close(&c);
    return rc == 0 ? t : -1;
}

/* samples samples of m missed messages, alternating A->B and B->A. */
static void measure(const int *ports, int m, int samples, long *errors)
{
    double *v = calloc((size_t)samples, sizeof *v);
    int got = 0;
    for (int i = 0; v && i < samples; i++) {
        double t = sample(ports[i % 2], ports[(i + 1) % 2], m);
        if (t < 0)
            (*errors)++;
        else
            v[got++] = t;
    }
    if (got > 0) {
        char metric[64];
        snprintf(metric, sizeof metric, "recover_%d_p50", m);
        perf_emit(BENCH, "since", metric, perf_percentile(v, (size_t)got, 50) * 1e3, "ms");
        snprintf(metric, sizeof metric, "recover_%d_p99", m);
        perf_emit(BENCH, "since", metric, perf_percentile(v, (size_t)got, 99) * 1e3, "ms");
        if (m == 1000)
            perf_ratio(BENCH, "recover_1000_p50_ms", perf_percentile(v, (size_t)got, 50) * 1e3,
                       50.0, "<=");
    }
    fprintf(stderr, BENCH ": %d missed: %d of %d samples good\n", m, got, samples);
    free(v);
}

int main(int argc, char **argv)
{
    int samples = argc > 1 ? atoi(argv[1]) : 25;
    if (samples < 1)
        samples = 25;
    char path[512];
    ts_redis redis;
    if (perf_svc_default_path(path, sizeof path) != 0 || ts_redis_start(&redis, NULL) != 0)
        return 1;
    setenv("PERF_CHANNEL_HISTORY", CHANNEL, 1); /* the replicas inherit it */
    long errors = 0;
    int rc = 1;
    perf_svc rep[2];
    perf_svc_opts so = {.path = path, .redis_url = redis.url, .max_clients = 64};
    so.service = "perf_recover";
    if (perf_svc_start_replicas(rep, 2, &so, BENCH) != 0)
        goto out_redis;
    ts_sleep_ms(1500); /* the replicas see each other (heartbeat 1 s) */
    int ports[2] = {rep[0].port, rep[1].port};
    if (sample(ports[0], ports[1], 10) < 0) /* warm-up: scripts loaded, connections made */
        errors++;
    measure(ports, 1000, samples, &errors);
    measure(ports, 100, samples, &errors);
    perf_emit(BENCH, "all", "errors", (double)errors, "count");
    rc = errors ? 1 : 0;
    perf_svc_stop(&rep[1]);
    perf_svc_stop(&rep[0]);
out_redis:
    ts_redis_stop(&redis);
    return rc;
}
