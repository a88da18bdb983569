/* bench_http - a JSON route through daebus vs a raw CivetWeb handler writing
 * the same body, both driven by wrk (2 threads, 50 keep-alive connections).
 *
 * Both servers run in this process with the same CivetWeb options (64 worker
 * threads, so each of the 50 connections has one; keep-alive on; TCP_NODELAY).
 * They are measured alternately (raw, daebus, raw, daebus, ...) and the best
 * round of each is kept, which evens out the noise of a shared machine.
 *
 * Usage: bench_http [seconds per round (default 3; env BENCH_SECONDS)] */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <civetweb.h>

#include "daebus/daebus.h"
#include "perf_common.h"

#define THREADS "64"
#define ROUNDS  2

static const char BODY[] = "{\"message\":\"hello\",\"id\":42,\"ok\":true}";

ROUTE(bench_json, "/json")
{
    (void)req;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "message", "hello");
    cJSON_AddNumberToObject(o, "id", 42);
    cJSON_AddBoolToObject(o, "ok", true);
    return daebus_http_send_json_take(res, 200, o);
}

/* CivetWeb formats Date with a non-reentrant libc call: a correct raw handler
 * serialises the header send just as the framework does. */
static pthread_mutex_t raw_date_lock = PTHREAD_MUTEX_INITIALIZER;

static int raw_json(struct mg_connection *c, void *cbdata)
{
    (void)cbdata;
    mg_response_header_start(c, 200);
    mg_response_header_add(c, "Content-Type", "application/json", -1);
    char num[16];
    snprintf(num, sizeof num, "%zu", sizeof BODY - 1);
    mg_response_header_add(c, "Content-Length", num, -1);
    pthread_mutex_lock(&raw_date_lock);
    mg_response_header_send(c);
    pthread_mutex_unlock(&raw_date_lock);
    mg_write(c, BODY, sizeof BODY - 1);
    return 200;
}

typedef struct wrk_result {
    double rps, p50_ms, p99_ms;
    long errors; /* non-2xx plus socket errors */
    long requests;
} wrk_result;

static double to_ms(double v, const char *unit)
{
    if (strcmp(unit, "us") == 0)
        return v / 1000.0;
    if (strcmp(unit, "s") == 0)
        return v * 1000.0;
    if (strcmp(unit, "m") == 0)
        return v * 60000.0;
    return v;
}

static int run_wrk(int port, double seconds, wrk_result *out)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "wrk -t2 -c50 -d%.0fs --latency http://127.0.0.1:%d/json 2>&1",
             seconds, port);
    memset(out, 0, sizeof *out);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    char line[512];
    while (fgets(line, sizeof line, p)) {
        double v;
        char unit[8];
        long a, b, c, d;
        if (sscanf(line, " 50%% %lf%7[a-z]", &v, unit) == 2)
            out->p50_ms = to_ms(v, unit);
        else if (sscanf(line, " 99%% %lf%7[a-z]", &v, unit) == 2)
            out->p99_ms = to_ms(v, unit);
        else if (sscanf(line, "Requests/sec: %lf", &v) == 1)
            out->rps = v;
        else if (sscanf(line, " Non-2xx or 3xx responses: %ld", &a) == 1)
            out->errors += a;
        else if (sscanf(line, " Socket errors: connect %ld, read %ld, write %ld, timeout %ld", &a,
                        &b, &c, &d) == 4)
            out->errors += a + b + c + d;
        else if (sscanf(line, " %ld requests in", &a) == 1)
            out->requests = a;
    }
    int st = pclose(p);
    return st == 0 && out->rps > 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : perf_env_seconds("BENCH_SECONDS", 3);
    if (seconds < 1)
        seconds = 1;

    /* daebus */
    daebus_app_options o = DAEBUS_APP_OPTIONS_INIT;
    o.service = "bench_http";
    o.no_signals = true;
    o.log_level = DAEBUS_LOG_ERROR;
    daebus_app *app = daebus_app_create(&o, NULL);
    daebus_http_options ho = DAEBUS_HTTP_OPTIONS_INIT;
    ho.port = DAEBUS_HTTP_PORT_ANY;
    ho.bind_address = "127.0.0.1";
    ho.num_threads = atoi(THREADS);
    daebus_http *http = daebus_http_create(&ho, NULL);
    if (!app || !http || daebus_http_attach(http, app) != 0 || daebus_app_start(app) != 0) {
        fprintf(stderr, "bench_http: daebus start failed\n");
        return 1;
    }
    int dport = daebus_http_port(http);

    /* raw CivetWeb, same options as the framework's server */
    const char *opts[] = {"listening_ports",
                          "127.0.0.1:0",
                          "num_threads",
                          THREADS,
                          "enable_keep_alive",
                          "yes",
                          "keep_alive_timeout_ms",
                          "5000",
                          "tcp_nodelay",
                          "1",
                          "request_timeout_ms",
                          "30000",
                          "decode_url",
                          "no",
                          NULL};
    struct mg_callbacks cb;
    memset(&cb, 0, sizeof cb);
    struct mg_context *ctx = mg_start(&cb, NULL, opts);
    if (!ctx) {
        fprintf(stderr, "bench_http: raw CivetWeb start failed\n");
        return 1;
    }
    mg_set_request_handler(ctx, "/json", raw_json, NULL);
    struct mg_server_port sp[2];
    int rport = mg_get_server_ports(ctx, 2, sp) > 0 ? sp[0].port : -1;

    wrk_result best_raw = {0}, best_fw = {0};
    long errors = 0;
    int failed = 0;
    /* BENCH_HTTP_ONLY=raw|daebus: drive one server only (for profiling) */
    const char *only = getenv("BENCH_HTTP_ONLY");
    if (only) {
        wrk_result w;
        int rc = run_wrk(strcmp(only, "raw") == 0 ? rport : dport, seconds, &w);
        fprintf(stderr, "bench_http: %s %.0f req/s (%ld requests)\n", only, w.rps, w.requests);
        mg_stop(ctx);
        daebus_app_stop(app);
        daebus_app_wait(app);
        daebus_app_destroy(app);
        return rc ? 1 : 0;
    }
    for (int r = 0; r < ROUNDS; r++) {
        wrk_result w;
        if (run_wrk(rport, seconds, &w) == 0) {
            fprintf(stderr, "bench_http: round %d raw    %.0f req/s\n", r, w.rps);
            errors += w.errors;
            if (w.rps > best_raw.rps)
                best_raw = w;
        } else {
            failed = 1;
        }
        if (run_wrk(dport, seconds, &w) == 0) {
            fprintf(stderr, "bench_http: round %d daebus %.0f req/s\n", r, w.rps);
            errors += w.errors;
            if (w.rps > best_fw.rps)
                best_fw = w;
        } else {
            failed = 1;
        }
    }
    mg_stop(ctx);
    daebus_app_stop(app);
    daebus_app_wait(app);
    daebus_app_destroy(app);
    if (failed || best_raw.rps <= 0 || best_fw.rps <= 0) {
        fprintf(stderr, "bench_http: wrk failed (is wrk installed?)\n");
        return 1;
    }
    perf_emit("http", "raw_civetweb", "req_per_s", best_raw.rps, "req/s");
    perf_emit("http", "raw_civetweb", "p50", best_raw.p50_ms, "ms");
    perf_emit("http", "raw_civetweb", "p99", best_raw.p99_ms, "ms");
    perf_emit("http", "daebus", "req_per_s", best_fw.rps, "req/s");
    perf_emit("http", "daebus", "p50", best_fw.p50_ms, "ms");
    perf_emit("http", "daebus", "p99", best_fw.p99_ms, "ms");
    perf_emit("http", "all", "errors", (double)errors, "count");
    perf_ratio("http", "req_per_s", best_fw.rps / best_raw.rps, 0.90, ">=");
    return errors ? 1 : 0;
}
