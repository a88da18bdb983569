/* metrics_service - the Python Daebus guide's "complete example" in C, plus WebSocket.
 *
 * Every kind of handler in one small service:
 *   ACTION     get_metrics        -> {"uptime": "12.34 seconds", "requests": n}
 *   LISTEN     "system"           logs the events other services broadcast
 *   ROUTE      GET /metrics       the same JSON as get_metrics, over HTTP
 *   SOCKET     get_metrics        the same JSON to a WebSocket client
 *   channel    "metrics"          WebSocket clients subscribe to it (built-in frames)
 *   BACKGROUND metrics_reporter   every METRICS_INTERVAL seconds (default 60):
 *                                 {"type": "metrics_update", ...} to the Redis
 *                                 channel "system" and on the WebSocket channel
 *                                 "metrics" (its subscribers)
 *   ON_START   announces the service on "system"
 *
 * Flags: the standard ones; env METRICS_INTERVAL sets the report period.
 */
#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <daebus/daebus.h>

static double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double now_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- the service's metrics ---- */

static double start_time;           /* monotonic, set in main before run */
static atomic_ullong requests;      /* get_metrics + GET /metrics */
static atomic_ullong system_events; /* messages seen on "system" */

/* {"uptime": "<s> seconds", "requests": n}; counts the request. */
static cJSON *metrics_snapshot(bool count)
{
    unsigned long long n = count ? atomic_fetch_add(&requests, 1) + 1 : atomic_load(&requests);
    char uptime[64];
    snprintf(uptime, sizeof uptime, "%.2f seconds", now_mono() - start_time);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "uptime", uptime);
    cJSON_AddNumberToObject(o, "requests", (double)n);
    cJSON_AddNumberToObject(o, "system_events", (double)atomic_load(&system_events));
    return o;
}

ACTION(get_metrics, "get_metrics")
{
    return daebus_bus_reply_take(req, metrics_snapshot(true));
}

ROUTE(http_get_metrics, "/metrics")
{
    return daebus_http_send_json_take(res, 200, metrics_snapshot(true));
}

LISTEN(handle_system_event, "system")
{
    atomic_fetch_add(&system_events, 1);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(message, "type");
    daebus_log(DAEBUS_LOG_INFO, "metrics", "received system event: %s",
               cJSON_IsString(type) ? type->valuestring : "(no type)");
    return 0;
}

/* ---- WebSocket: the channel "metrics" ----
 *
 * Clients subscribe with the built-in frame {"type":"subscribe","channel":"metrics"}
 * (channels are on, and the option channel_subscribe lets browsers subscribe to this
 * one channel only); the report reaches them as
 * {"type":"channel_message","channel":"metrics","data":{...}}. The framework ends a
 * client's subscriptions with its connection. */

#define METRICS_CHANNEL "metrics"

/* The current numbers at once (for a dashboard's first paint). */
SOCKET(ws_get_metrics, "get_metrics")
{
    (void)req;
    (void)client_id;
    return metrics_snapshot(false);
}

/* ---- background report ---- */

static int metrics_reporter(daebus_task *task, void *user)
{
    (void)user;
    daebus_app *app = daebus_task_app(task);
    cJSON *m = metrics_snapshot(false);
    cJSON_AddStringToObject(m, "type", "metrics_update");
    cJSON_AddStringToObject(m, "service", daebus_app_service(app));
    cJSON_AddNumberToObject(m, "timestamp", now_wall());

    int receivers = daebus_bus_broadcast(daebus_app_bus(app), "system", m);
    int rc = daebus_ws_channel_publish(daebus_app_websocket(app), METRICS_CHANNEL, m);
    cJSON_Delete(m);
    daebus_log(DAEBUS_LOG_INFO, "metrics",
               "metrics broadcast completed (%d Redis receivers; WebSocket channel '%s': %s)",
               receivers < 0 ? 0 : receivers, METRICS_CHANNEL,
               rc == 0 ? "published" : daebus_strerror(rc));
    return receivers < 0 ? receivers : 0;
}

ON_START(announce)
{
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "type", "service_started");
    cJSON_AddStringToObject(m, "service", daebus_app_service(app));
    cJSON_AddNumberToObject(m, "timestamp", now_wall());
    daebus_bus_broadcast_take(daebus_app_bus(app), "system", m);
    return 0;
}

/* ---- main ---- */

int main(int argc, char **argv)
{
    double interval = 60.0;
    const char *env = getenv("METRICS_INTERVAL");
    if (env && *env) {
        char *end = NULL;
        errno = 0;
        interval = strtod(env, &end);
        if (errno || end == env || *end || !isfinite(interval) || interval <= 0) {
            fprintf(stderr, "metrics_service: METRICS_INTERVAL '%s' is not a number of seconds\n",
                    env);
            return 2;
        }
    }
    start_time = now_mono();

    daebus_app_options o = DAEBUS_APP_OPTIONS_INIT;
    o.service = "metrics_service";
    daebus_app *app = daebus_app_create(&o, NULL);
    if (!app)
        return 1;
    daebus_app_configure(app, argc, argv);

    daebus_http *http = daebus_http_create(NULL, NULL);
    daebus_ws_options wo = DAEBUS_WS_OPTIONS_INIT;
    wo.channels = true;                     /* the built-in subscribe / unsubscribe frames */
    wo.channel_subscribe = METRICS_CHANNEL; /* closed by default: open this channel only */
    daebus_ws *ws = daebus_ws_create(&wo, NULL);
    daebus_bus *bus = daebus_bus_create(NULL, NULL);
    daebus_scheduler *sched = daebus_scheduler_create(NULL, NULL);
    int rc = http && ws && bus && sched ? 0 : -1;
    if (rc == 0 && (rc = daebus_http_attach(http, app)) == 0)
        http = NULL;
    if (rc == 0 && (rc = daebus_ws_attach(ws, app)) == 0)
        ws = NULL;
    if (rc == 0 && (rc = daebus_bus_attach(bus, app)) == 0)
        bus = NULL;
    if (rc == 0 && (rc = daebus_scheduler_attach(sched, app)) == 0) {
        rc = daebus_scheduler_add_task(sched, "metrics_reporter", interval, metrics_reporter, NULL,
                                       false);
        sched = NULL;
    }
    int status = rc == 0 ? daebus_app_run(app) : 1;
    daebus_scheduler_destroy(sched);
    daebus_bus_destroy(bus);
    daebus_ws_destroy(ws);
    daebus_http_destroy(http);
    daebus_app_destroy(app);
    return status;
}
