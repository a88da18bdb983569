/* bench_ws_echo - WebSocket request/response through daebus (a typed message
 * answered by its SOCKET handler) vs a raw CivetWeb WebSocket echo, with N
 * clients each keeping one message in flight.
 *
 * The clients run in separate processes (perf_wsload.c, forked before the
 * servers start) with one epoll loop each. Both servers live in this process
 * with the same number of CivetWeb threads (one per connection, as CivetWeb
 * needs, plus 4).
 *
 * The two client sets stay connected side by side and the rounds alternate
 * (raw, daebus, raw, daebus); the best round of each is reported.
 *
 * Usage: bench_ws_echo [seconds per case (default 3; env BENCH_SECONDS)] [N...]
 * (default N: 100 1000) */
#include <stdbool.h>
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
#define MAX_N    5000
#define ROUNDS   2
#define ECHO_MSG "{\"type\":\"echo\",\"data\":{\"n\":1,\"text\":\"hello\"},\"request_id\":\"r1\"}"

SOCKET(bench_ws_echo, "echo")
{
    return cJSON_Duplicate(daebus_ws_request_data(req), true);
}

static int raw_connect(const struct mg_connection *c, void *cbdata)
{
    (void)c;
    (void)cbdata;
    return 0;
}

static void raw_ready(struct mg_connection *c, void *cbdata)
{
    (void)c;
    (void)cbdata;
}

static int raw_data(struct mg_connection *c, int bits, char *data, size_t len, void *cbdata)
{
    (void)cbdata;
    int op = bits & 0x0f;
    if (op == MG_WEBSOCKET_OPCODE_TEXT)
        mg_websocket_write(c, MG_WEBSOCKET_OPCODE_TEXT, data, len);
    return op != MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE;
}

static void raw_close(const struct mg_connection *c, void *cbdata)
{
    (void)c;
    (void)cbdata;
}

/* Connects n clients of one set (PROCS processes) to port for `rounds` rounds.
 * Returns the number connected. */
static int connect_set(perf_ws_proc *procs, int port, int n, double seconds, int rounds,
                       daebus_ws *ws)
{
    perf_ws_cmd cmd;
    memset(&cmd, 0, sizeof cmd);
    cmd.port = port;
    cmd.mode = PERF_WS_ECHO;
    cmd.seconds = seconds;
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
    /* the framework registers a client just after the upgrade answer */
    double until = perf_now() + 10;
    while (ws && daebus_ws_get_client_count(ws) < (size_t)connected && perf_now() < until)
        ts_sleep_ms(5);
    return connected;
}

typedef struct round_result {
    double rate, p50_ms, p99_ms;
} round_result;

/* Runs one round on a connected set. Returns 0 or -1. */
static int run_round(perf_ws_proc *procs, double seconds, round_result *out, long *errors)
{
    for (int p = 0; p < PROCS; p++)
        perf_ws_go(&procs[p]);
    double *lat = NULL;
    long nlat = 0, count = 0;
    for (int p = 0; p < PROCS; p++) {
        perf_ws_result r;
        if (perf_ws_result_wait(&procs[p], &r, &lat, &nlat) != 0)
            return -1;
        count += r.count;
        *errors += r.errors;
    }
    out->rate = (double)count / seconds;
    out->p50_ms = perf_percentile(lat, (size_t)nlat, 50) * 1e3;
    out->p99_ms = perf_percentile(lat, (size_t)nlat, 99) * 1e3;
    free(lat);
    return 0;
}

static void emit(const char *kase, int n, const round_result *r)
{
    char m[64];
    snprintf(m, sizeof m, "round_trips_per_s_%d", n);
    perf_emit("ws_echo", kase, m, r->rate, "1/s");
    snprintf(m, sizeof m, "p50_%d", n);
    perf_emit("ws_echo", kase, m, r->p50_ms, "ms");
    snprintf(m, sizeof m, "p99_%d", n);
    perf_emit("ws_echo", kase, m, r->p99_ms, "ms");
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : perf_env_seconds("BENCH_SECONDS", 3);
    int ns[8] = {100, 1000}, nn = 2;
    if (argc > 2) {
        nn = 0;
        for (int i = 2; i < argc && nn < 8; i++)
            ns[nn++] = atoi(argv[i]);
    }
    int maxn = 0;
    for (int i = 0; i < nn; i++)
        maxn = ns[i] > maxn ? ns[i] : maxn;
    if (maxn > MAX_N || maxn <= 0)
        return 2;
    perf_raise_nofile();
    perf_ws_proc procs[2 * PROCS]; /* raw set, then daebus set */
    for (int p = 0; p < 2 * PROCS; p++)
        if (perf_ws_spawn(&procs[p]) != 0)
            return 1;

    daebus_app_options o = DAEBUS_APP_OPTIONS_INIT;
    o.service = "bench_ws_echo";
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
        fprintf(stderr, "bench_ws_echo: daebus start failed\n");
        return 1;
    }
    int dport = daebus_http_port(http);

    char threads[16];
    snprintf(threads, sizeof threads, "%d", HTTP_THR + maxn + 16);
    const char *opts[] = {"listening_ports",   "127.0.0.1:0", "num_threads", threads,
                          "enable_keep_alive", "yes",         "tcp_nodelay", "1",
                          "decode_url",        "no",          NULL};
    struct mg_callbacks cb;
    memset(&cb, 0, sizeof cb);
    struct mg_context *ctx = mg_start(&cb, NULL, opts);
    if (!ctx) {
        fprintf(stderr, "bench_ws_echo: raw CivetWeb start failed\n");
        return 1;
    }
    mg_set_websocket_handler(ctx, "/ws", raw_connect, raw_ready, raw_data, raw_close, NULL);
    struct mg_server_port sp[2];
    int rport = mg_get_server_ports(ctx, 2, sp) > 0 ? sp[0].port : -1;

    long errors = 0;
    for (int i = 0; i < nn; i++) {
        int n = ns[i];
        /* both sets stay connected; rounds alternate raw, daebus, raw, daebus */
        /* BENCH_WS_ONLY=raw|daebus: measure one server only (for profiling) */
        const char *only = getenv("BENCH_WS_ONLY");
        bool do_raw = !only || strcmp(only, "raw") == 0, do_fw = !only || !do_raw;
        if ((do_raw && connect_set(procs, rport, n, seconds, ROUNDS, NULL) != n) ||
            (do_fw && connect_set(procs + PROCS, dport, n, seconds, ROUNDS, ws) != n)) {
            fprintf(stderr, "bench_ws_echo: not every client connected\n");
            errors++;
        }
        round_result best_raw = {0}, best_fw = {0}, r;
        for (int k = 0; k < ROUNDS; k++) {
            if (do_raw) {
                if (run_round(procs, seconds, &r, &errors) != 0)
                    return 1;
                fprintf(stderr, "bench_ws_echo: %d clients round %d raw    %.0f/s\n", n, k, r.rate);
                if (r.rate > best_raw.rate)
                    best_raw = r;
            }
            if (!do_fw)
                continue;
            if (run_round(procs + PROCS, seconds, &r, &errors) != 0)
                return 1;
            fprintf(stderr, "bench_ws_echo: %d clients round %d daebus %.0f/s\n", n, k, r.rate);
            if (r.rate > best_fw.rate)
                best_fw = r;
        }
        emit("raw_civetweb", n, &best_raw);
        emit("daebus", n, &best_fw);
        char m[64];
        snprintf(m, sizeof m, "round_trips_per_s_%d", n);
        if (best_raw.rate > 0 && best_fw.rate > 0)
            perf_ratio("ws_echo", m, best_fw.rate / best_raw.rate, 0.85, ">=");
        else
            errors++;
        /* let the framework see every close before the next size */
        double until = perf_now() + 10;
        while (daebus_ws_get_client_count(ws) > 0 && perf_now() < until)
            ts_sleep_ms(5);
        ts_sleep_ms(300);
    }
    perf_emit("ws_echo", "all", "errors", (double)errors, "count");
    for (int p = 0; p < 2 * PROCS; p++)
        perf_ws_end(&procs[p]);
    mg_stop(ctx);
    daebus_app_stop(app);
    daebus_app_wait(app);
    daebus_app_destroy(app);
    return errors ? 1 : 0;
}
