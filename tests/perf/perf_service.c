/* perf_service - the service measured by bench_footprint and soak: HTTP,
 * WebSocket and bus on one app, as a production service would run it
 * (daebus_app_run, signals, info log with the "ready" line).
 *
 *   GET  /json            a small JSON object
 *   POST /broadcast       broadcast_to_all of the request payload ("tick")
 *   GET  /stats           {"rss_kb", "ws": {...}, "http": {...}}
 *   SOCKET "echo"         answers with the message's data
 *   ACTION "echo"         replies with the payload
 *   and the replica benchmarks' routes (perf_replica.h)
 *
 * Usage: perf_service [standard flags: --port N --redis URL ...]
 *        env PERF_MAX_CLIENTS (default 1024)
 *        env PERF_RAW=1: a raw CivetWeb WebSocket echo server instead (baseline)
 *        env PERF_WS_CLUSTER=off: daebus_ws_options.cluster = DAEBUS_WS_CLUSTER_OFF
 *        env PERF_HEARTBEAT=<seconds>: daebus_bus_options.heartbeat
 *        env PERF_CHANNEL=<name>: channels on; each client is subscribed to <name> on connect
 *        (perf_replica.c, with POST /chburst for bench_channel_fanout)
 *        env PERF_CHANNEL_HISTORY=<patterns>: channels on; those channels keep a history and
 *        clients may subscribe to them (bench_channel_recovery); outbound queue 4,096 messages */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <civetweb.h>
#include <stdlib.h>

#include "daebus/daebus.h"
#include "perf_common.h"
#include "perf_replica.h"

static daebus_ws *g_ws;
static daebus_http *g_http;
static daebus_bus *g_bus;

typedef struct daebus_bus_stats daebus_bus_stats;

ROUTE(perf_json, "/json")
{
    (void)req;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "message", "hello");
    cJSON_AddNumberToObject(o, "id", 42);
    return daebus_http_send_json_take(res, 200, o);
}

ROUTE(perf_broadcast, "/broadcast", .methods = DAEBUS_POST)
{
    int n = daebus_ws_broadcast_to_all(g_ws, daebus_http_request_payload(req), "tick");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "queued", n);
    return daebus_http_send_json_take(res, n >= 0 ? 200 : 500, o);
}

ROUTE(perf_stats, "/stats")
{
    (void)req;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "rss_kb", (double)perf_rss_kb(0));
    daebus_ws_stats ws;
    daebus_ws_get_stats(g_ws, &ws);
    cJSON *w = cJSON_AddObjectToObject(o, "ws");
    cJSON_AddNumberToObject(w, "clients", (double)ws.clients);
    cJSON_AddNumberToObject(w, "messages_in", (double)ws.messages_in);
    cJSON_AddNumberToObject(w, "messages_out", (double)ws.messages_out);
    cJSON_AddNumberToObject(w, "handler_errors", (double)ws.handler_errors);
    cJSON_AddNumberToObject(w, "disconnects_slow", (double)ws.disconnects_slow);
    cJSON_AddNumberToObject(w, "disconnects_protocol", (double)ws.disconnects_protocol);
    cJSON_AddNumberToObject(w, "disconnects_idle", (double)ws.disconnects_idle);
    cJSON_AddNumberToObject(w, "disconnects_server", (double)ws.disconnects_server);
    cJSON_AddNumberToObject(w, "disconnects_client", (double)ws.disconnects_client);
    daebus_http_stats hs;
    daebus_http_get_stats(g_http, &hs);
    cJSON *h = cJSON_AddObjectToObject(o, "http");
    cJSON_AddNumberToObject(h, "requests", (double)hs.requests_total);
    cJSON_AddNumberToObject(h, "responses_5xx", (double)hs.responses_5xx);
    daebus_bus_stats bs;
    daebus_bus_get_stats(g_bus, &bs);
    cJSON *b = cJSON_AddObjectToObject(o, "bus");
    cJSON_AddNumberToObject(b, "requests_handled", (double)bs.requests_handled);
    cJSON_AddNumberToObject(b, "errors", (double)bs.errors);
    cJSON_AddNumberToObject(b, "overloads", (double)bs.overloads);
    return daebus_http_send_json_take(res, 200, o);
}

SOCKET(perf_echo, "echo")
{
    return cJSON_Duplicate(daebus_ws_request_data(req), true);
}

ACTION(perf_action_echo, "echo")
{
    return daebus_bus_reply(req, payload);
}

/* ---- PERF_RAW=1: a raw CivetWeb WebSocket echo server, the footprint baseline ---- */

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
    if ((bits & 0x0f) == MG_WEBSOCKET_OPCODE_TEXT)
        mg_websocket_write(c, MG_WEBSOCKET_OPCODE_TEXT, data, len);
    return (bits & 0x0f) != MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE;
}

static void raw_close(const struct mg_connection *c, void *cbdata)
{
    (void)c;
    (void)cbdata;
}

static volatile sig_atomic_t raw_stop;

static void on_term(int sig)
{
    (void)sig;
    raw_stop = 1;
}

/* Same CivetWeb thread count as the daebus service (32 HTTP + max_clients). */
static int raw_main(int argc, char **argv, int max_clients)
{
    const char *port = "8080";
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--port") == 0)
            port = argv[i + 1];
    char ports[64], threads[16];
    snprintf(ports, sizeof ports, "127.0.0.1:%s", port);
    snprintf(threads, sizeof threads, "%d", 32 + max_clients);
    const char *opts[] = {
        "listening_ports", ports, "num_threads", threads, "enable_keep_alive", "yes",
        "tcp_nodelay",     "1",   NULL};
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    mg_init_library(0);
    struct mg_callbacks cb;
    memset(&cb, 0, sizeof cb);
    struct mg_context *ctx = mg_start(&cb, NULL, opts);
    if (!ctx)
        return 1;
    mg_set_websocket_handler(ctx, "/ws", raw_connect, raw_ready, raw_data, raw_close, NULL);
    fprintf(stderr, "raw CivetWeb ready (components: websocket)\n");
    while (!raw_stop)
        pause();
    mg_stop(ctx);
    return 0;
}

int main(int argc, char **argv)
{
    perf_raise_nofile();
    const char *mc = getenv("PERF_MAX_CLIENTS");
    int max_clients = mc ? atoi(mc) : 1024;
    if (getenv("PERF_RAW"))
        return raw_main(argc, argv, max_clients);
    daebus_app_options o = DAEBUS_APP_OPTIONS_INIT;
    o.service = "perf_service";
    daebus_app *app = daebus_app_create(&o, NULL);
    if (!app)
        return 1;
    daebus_app_configure(app, argc, argv);
    daebus_http_options ho = DAEBUS_HTTP_OPTIONS_INIT;
    ho.bind_address = "127.0.0.1";
    daebus_http *http = g_http = daebus_http_create(&ho, NULL);
    daebus_ws_options wo = DAEBUS_WS_OPTIONS_INIT;
    wo.max_clients = max_clients;
    /* PERF_WS_CLUSTER=off: one process even with a bus (what cluster mode costs alone) */
    const char *wc = getenv("PERF_WS_CLUSTER");
    if (wc && strcmp(wc, "off") == 0)
        wo.cluster = DAEBUS_WS_CLUSTER_OFF;
    /* PERF_CHANNEL=<name>: channels on (clients are subscribed by the server) */
    const char *pc = getenv("PERF_CHANNEL");
    wo.channels = pc && *pc;
    /* PERF_CHANNEL_HISTORY=<patterns>: history channels clients subscribe to themselves; the
     * queue holds a replay of 1,000 messages plus the answer */
    const char *ph = getenv("PERF_CHANNEL_HISTORY");
    if (ph && *ph) {
        wo.channels = true;
        wo.channel_history = ph;
        wo.channel_subscribe = ph;
        wo.queue_max_messages = 4096;
    }
    g_ws = daebus_ws_create(&wo, NULL);
    /* PERF_HEARTBEAT=<seconds>: the bus's heartbeat (the cluster's refresh period) */
    daebus_bus_options bo = DAEBUS_BUS_OPTIONS_INIT;
    const char *hb = getenv("PERF_HEARTBEAT");
    if (hb)
        bo.heartbeat = atof(hb);
    daebus_bus *bus = g_bus = daebus_bus_create(&bo, NULL);
    if (!http || daebus_http_attach(http, app) != 0 || !g_ws || daebus_ws_attach(g_ws, app) != 0 ||
        !bus || daebus_bus_attach(bus, app) != 0 || perf_replica_setup(app, g_ws) != 0) {
        fprintf(stderr, "perf_service: set-up failed\n");
        return 1;
    }
    int status = daebus_app_run(app);
    daebus_app_destroy(app);
    return status;
}
