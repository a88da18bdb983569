/* bench_ws_broadcast - fan-out: daebus_ws_broadcast_to_all() to N connected
 * clients, 100 messages, vs a raw CivetWeb loop calling mg_websocket_write()
 * for every connection with the same frames. Reports deliveries/s and the
 * time from the first send until the last client got the last message.
 *
 * Then the slow-consumer case (daebus only): N clients, 100 messages of
 * about 4 KiB (so that a client that does not read fills its socket buffers
 * and its queue backs up), once with every client reading and once with one
 * extra client that never reads; the delivery rate of the reading clients is
 * compared.
 *
 * The clients run in separate processes (perf_wsload.c), forked before the
 * servers start. Both servers run side by side, each with its own client
 * set connected; rounds alternate (raw, daebus, raw, ...) and the best round
 * of each is reported (3 rounds; 2 above 2000 clients).
 *
 * Usage: bench_ws_broadcast [N...] (default: 1000 5000) */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <civetweb.h>

#include "daebus/daebus.h"
#include "perf_common.h"
#include "perf_wsload.h"
#include "testsupport.h"

#define PROCS    2
#define HTTP_THR 4
#define MESSAGES 100
#define SLOW_N   1000
#define BIG_TEXT 4000
#define ROUNDS   3

/* ---- raw CivetWeb: a connection list and a write loop ---- */

static pthread_mutex_t raw_lock = PTHREAD_MUTEX_INITIALIZER;
static struct mg_connection **raw_conns;
static int raw_n, raw_cap;

static int raw_connect(const struct mg_connection *c, void *cbdata)
{
    (void)c;
    (void)cbdata;
    return 0;
}

static void raw_ready(struct mg_connection *c, void *cbdata)
{
    (void)cbdata;
    pthread_mutex_lock(&raw_lock);
    if (raw_n == raw_cap) {
        int cap = raw_cap ? raw_cap * 2 : 1024;
        struct mg_connection **v = realloc(raw_conns, (size_t)cap * sizeof *v);
        if (v) {
            raw_conns = v;
            raw_cap = cap;
        }
    }
    if (raw_n < raw_cap)
        raw_conns[raw_n++] = c;
    pthread_mutex_unlock(&raw_lock);
}

static int raw_data(struct mg_connection *c, int bits, char *data, size_t len, void *cbdata)
{
    (void)c;
    (void)data;
    (void)len;
    (void)cbdata;
    return (bits & 0x0f) != MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE;
}

static void raw_close(const struct mg_connection *c, void *cbdata)
{
    (void)cbdata;
    pthread_mutex_lock(&raw_lock);
    for (int i = 0; i < raw_n; i++)
        if (raw_conns[i] == c) {
            raw_conns[i] = raw_conns[--raw_n];
            break;
        }
    pthread_mutex_unlock(&raw_lock);
}

static int raw_count(void)
{
    pthread_mutex_lock(&raw_lock);
    int n = raw_n;
    pthread_mutex_unlock(&raw_lock);
    return n;
}

/* ---- the messages ---- */

static cJSON *message_data(int seq, bool big)
{
    cJSON *d = cJSON_CreateObject();
    cJSON_AddNumberToObject(d, "seq", seq);
    if (big) {
        char *t = malloc(BIG_TEXT + 1);
        memset(t, 'x', BIG_TEXT);
        t[BIG_TEXT] = '\0';
        cJSON_AddStringToObject(d, "text", t);
        free(t);
    } else {
        cJSON_AddStringToObject(d, "text", "hello everyone");
    }
    return d;
}

/* The frame broadcast_to_all sends: {"type":"broadcast","data":...}. */
static char *message_frame(int seq, bool big)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "broadcast");
    cJSON_AddItemToObject(o, "data", message_data(seq, big));
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* ---- one case ---- */

typedef struct outcome {
    double rate;    /* deliveries/s to the reading clients */
    double to_last; /* seconds from the first send to the last delivery */
    long delivered;
} outcome;

/* Connects one client set (PROCS processes): n reading clients plus `stalled`
 * that never read, for `rounds` rounds. Returns the number connected. */
static int connect_set(perf_ws_proc *procs, int port, int n, int stalled, int rounds, bool raw,
                       daebus_ws *ws)
{
    perf_ws_cmd cmd;
    memset(&cmd, 0, sizeof cmd);
    cmd.port = port;
    cmd.mode = PERF_WS_SINK;
    cmd.seconds = 30;
    cmd.expect = MESSAGES;
    cmd.rounds = rounds;
    snprintf(cmd.path, sizeof cmd.path, "/ws");
    int connected = 0;
    for (int p = 0; p < PROCS; p++) {
        int c = 0;
        cmd.nclients = n / PROCS + (p < n % PROCS);
        cmd.stalled = p == 0 ? stalled : 0;
        if (perf_ws_connect(&procs[p], &cmd, &c) != 0)
            return -1;
        connected += c;
    }
    double until = perf_now() + 15;
    while (perf_now() < until &&
           (raw ? raw_count() : (int)daebus_ws_get_client_count(ws)) < connected)
        ts_sleep_ms(5);
    if (connected != n + stalled)
        fprintf(stderr, "bench_ws_broadcast: %d of %d clients connected\n", connected, n + stalled);
    return connected;
}

/* Waits until the server saw every client leave. */
static void wait_gone(bool raw, daebus_ws *ws)
{
    double until = perf_now() + 15;
    while (perf_now() < until && (raw ? raw_count() : (int)daebus_ws_get_client_count(ws)) > 0)
        ts_sleep_ms(5);
}

/* One round: MESSAGES sends to every client of the server; the n reading
 * clients of the set report what they got. */
static int run_round(perf_ws_proc *procs, int n, bool big, bool raw, daebus_ws *ws, outcome *out,
                     long *errors)
{
    for (int p = 0; p < PROCS; p++)
        perf_ws_go(&procs[p]);
    ts_sleep_ms(20);
    double t0 = perf_now();
    if (raw) {
        pthread_mutex_lock(&raw_lock);
        int k = raw_n;
        struct mg_connection **cs = malloc((size_t)k * sizeof *cs);
        memcpy(cs, raw_conns, (size_t)k * sizeof *cs);
        pthread_mutex_unlock(&raw_lock);
        for (int m = 0; m < MESSAGES; m++) {
            char *f = message_frame(m, big);
            size_t len = strlen(f);
            for (int i = 0; i < k; i++)
                mg_websocket_write(cs[i], MG_WEBSOCKET_OPCODE_TEXT, f, len);
            free(f);
        }
        free(cs);
    } else {
        for (int m = 0; m < MESSAGES; m++) {
            cJSON *d = message_data(m, big);
            if (daebus_ws_broadcast_to_all(ws, d, NULL) < n)
                (*errors)++;
            cJSON_Delete(d);
        }
    }
    double t_last = 0;
    long delivered = 0, complete = 0;
    for (int p = 0; p < PROCS; p++) {
        perf_ws_result r;
        if (perf_ws_result_wait(&procs[p], &r, NULL, NULL) != 0)
            return -1;
        delivered += r.count;
        complete += r.complete;
        *errors += r.errors;
        if (r.t_last > t_last)
            t_last = r.t_last;
    }
    if (complete != n) {
        fprintf(stderr, "bench_ws_broadcast: %ld of %d clients got every message\n", complete, n);
        (*errors)++;
    }
    out->delivered = delivered;
    out->to_last = t_last - t0;
    out->rate = out->to_last > 0 ? (double)delivered / out->to_last : 0;
    return 0;
}

static void keep_best(outcome *best, const outcome *o)
{
    if (o->rate > best->rate)
        *best = *o;
}

static void emit(const char *kase, const char *suffix, const outcome *o)
{
    char m[64];
    snprintf(m, sizeof m, "deliveries_per_s_%s", suffix);
    perf_emit("ws_broadcast", kase, m, o->rate, "1/s");
    snprintf(m, sizeof m, "time_to_last_%s", suffix);
    perf_emit("ws_broadcast", kase, m, o->to_last * 1e3, "ms");
}

int main(int argc, char **argv)
{
    int ns[8] = {1000, 5000}, nn = 2;
    if (argc > 1) {
        nn = 0;
        for (int i = 1; i < argc && nn < 8; i++)
            ns[nn++] = atoi(argv[i]);
    }
    int maxn = SLOW_N + 1;
    for (int i = 0; i < nn; i++)
        maxn = ns[i] > maxn ? ns[i] : maxn;
    perf_raise_nofile();
    perf_ws_proc procs[2 * PROCS]; /* a client set for each server */
    for (int p = 0; p < 2 * PROCS; p++)
        if (perf_ws_spawn(&procs[p]) != 0)
            return 1;
    long errors = 0;

    /* raw CivetWeb */
    char threads[16];
    snprintf(threads, sizeof threads, "%d", HTTP_THR + maxn + 16);
    const char *opts[] = {"listening_ports",   "127.0.0.1:0", "num_threads", threads,
                          "enable_keep_alive", "yes",         "tcp_nodelay", "1",
                          "decode_url",        "no",          NULL};
    struct mg_callbacks cb;
    memset(&cb, 0, sizeof cb);
    struct mg_context *ctx = mg_start(&cb, NULL, opts);
    if (!ctx) {
        fprintf(stderr, "bench_ws_broadcast: raw CivetWeb start failed\n");
        return 1;
    }
    mg_set_websocket_handler(ctx, "/ws", raw_connect, raw_ready, raw_data, raw_close, NULL);
    struct mg_server_port sp[2];
    int rport = mg_get_server_ports(ctx, 2, sp) > 0 ? sp[0].port : -1;

    /* daebus */
    daebus_app_options o = DAEBUS_APP_OPTIONS_INIT;
    o.service = "bench_ws_broadcast";
    o.no_signals = true;
    o.log_level = DAEBUS_LOG_ERROR;
    daebus_app *app = daebus_app_create(&o, NULL);
    daebus_http_options ho = DAEBUS_HTTP_OPTIONS_INIT;
    ho.port = DAEBUS_HTTP_PORT_ANY;
    ho.bind_address = "127.0.0.1";
    ho.num_threads = HTTP_THR;
    daebus_http *http = daebus_http_create(&ho, NULL);
    daebus_ws_options wo = DAEBUS_WS_OPTIONS_INIT;
    wo.max_clients = maxn + 16;
    daebus_ws *ws = daebus_ws_create(&wo, NULL);
    if (!app || !http || daebus_http_attach(http, app) != 0 || !ws ||
        daebus_ws_attach(ws, app) != 0 || daebus_app_start(app) != 0) {
        fprintf(stderr, "bench_ws_broadcast: daebus start failed\n");
        return 1;
    }
    int dport = daebus_http_port(http);

    perf_ws_proc *raw_set = procs, *fw_set = procs + PROCS;
    for (int i = 0; i < nn; i++) {
        int n = ns[i];
        int rounds = n > 2000 ? 2 : ROUNDS;
        if (connect_set(raw_set, rport, n, 0, rounds, true, NULL) != n ||
            connect_set(fw_set, dport, n, 0, rounds, false, ws) != n)
            errors++;
        outcome best_raw = {0}, best_fw = {0}, r;
        for (int k = 0; k < rounds; k++) {
            if (run_round(raw_set, n, false, true, NULL, &r, &errors) != 0)
                return 1;
            fprintf(stderr, "bench_ws_broadcast: %d clients round %d raw    %.0f/s %.0f ms\n", n, k,
                    r.rate, r.to_last * 1e3);
            keep_best(&best_raw, &r);
            if (run_round(fw_set, n, false, false, ws, &r, &errors) != 0)
                return 1;
            fprintf(stderr, "bench_ws_broadcast: %d clients round %d daebus %.0f/s %.0f ms\n", n, k,
                    r.rate, r.to_last * 1e3);
            keep_best(&best_fw, &r);
        }
        char s[16], m[64];
        snprintf(s, sizeof s, "%d", n);
        emit("raw_civetweb", s, &best_raw);
        emit("daebus", s, &best_fw);
        snprintf(m, sizeof m, "deliveries_per_s_%d", n);
        if (best_raw.rate > 0 && best_fw.rate > 0)
            perf_ratio("ws_broadcast", m, best_fw.rate / best_raw.rate, 0.90, ">=");
        else
            errors++;
        wait_gone(true, NULL);
        wait_gone(false, ws);
    }
    mg_stop(ctx);

    /* slow consumer: the same fan-out with and without one client that never reads */
    outcome fast = {0}, slow = {0}, r;
    /* alternate the two conditions (fresh connections each time) to share out the noise */
    for (int k = 0; k < ROUNDS; k++) {
        if (connect_set(fw_set, dport, SLOW_N, 0, 1, false, ws) != SLOW_N)
            errors++;
        if (run_round(fw_set, SLOW_N, true, false, ws, &r, &errors) == 0)
            keep_best(&fast, &r);
        wait_gone(false, ws);
        if (connect_set(fw_set, dport, SLOW_N, 1, 1, false, ws) != SLOW_N + 1)
            errors++;
        if (run_round(fw_set, SLOW_N, true, false, ws, &r, &errors) == 0)
            keep_best(&slow, &r);
        wait_gone(false, ws);
        fprintf(stderr, "bench_ws_broadcast: slow consumer round %d: best %.0f/s vs %.0f/s\n", k,
                fast.rate, slow.rate);
    }
    emit("daebus", "4k_all_reading", &fast);
    emit("daebus", "4k_one_stalled", &slow);
    daebus_ws_stats st;
    daebus_ws_get_stats(ws, &st);
    perf_emit("ws_broadcast", "daebus", "slow_consumer_disconnects", (double)st.disconnects_slow,
              "count");
    /* shows that the stalled client's queue did back up */
    perf_emit("ws_broadcast", "daebus", "queue_depth_high_water", (double)st.queue_depth_high_water,
              "frames");
    if (fast.rate > 0 && slow.rate > 0)
        perf_ratio("ws_broadcast", "deliveries_per_s_with_stalled_client", slow.rate / fast.rate,
                   0.90, ">=");
    perf_emit("ws_broadcast", "all", "errors", (double)errors, "count");

    for (int p = 0; p < 2 * PROCS; p++)
        perf_ws_end(&procs[p]);
    daebus_app_stop(app);
    daebus_app_wait(app);
    daebus_app_destroy(app);
    free(raw_conns);
    return errors ? 1 : 0;
}
