/* metrics_service - the Python Daebus guide's "complete example" in C, plus WebSocket.
 *
 * Every kind of handler in one small service:
 *   ACTION     get_metrics        -> {"uptime": "12.34 seconds", "requests": n}
 *   LISTEN     "system"           logs the events other services broadcast
 *   ROUTE      GET /metrics       the same JSON as get_metrics, over HTTP
 *   SOCKET     subscribe / unsubscribe: WebSocket clients that want pushes
 *   BACKGROUND metrics_reporter   every METRICS_INTERVAL seconds (default 60):
 *                                 {"type": "metrics_update", ...} to the Redis
 *                                 channel "system" and to subscribed clients
 *   ON_START   announces the service on "system"
 *
 * Flags: the standard ones; env METRICS_INTERVAL sets the report period.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
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

/* ---- WebSocket subscribers ---- */

static pthread_mutex_t subs_lock = PTHREAD_MUTEX_INITIALIZER;
static cJSON *subscribers; /* array of client ids */

static bool unsubscribe_id(const char *client_id)
{
    bool found = false;
    pthread_mutex_lock(&subs_lock);
    int n = cJSON_GetArraySize(subscribers);
    for (int i = 0; i < n; i++) {
        if (strcmp(cJSON_GetArrayItem(subscribers, i)->valuestring, client_id) == 0) {
            cJSON_DeleteItemFromArray(subscribers, i);
            found = true;
            break;
        }
    }
    pthread_mutex_unlock(&subs_lock);
    return found;
}

SOCKET(ws_subscribe, "subscribe")
{
    unsubscribe_id(client_id); /* no duplicates */
    pthread_mutex_lock(&subs_lock);
    cJSON_AddItemToArray(subscribers, cJSON_CreateString(client_id));
    pthread_mutex_unlock(&subs_lock);
    cJSON *o = metrics_snapshot(false);
    cJSON_AddBoolToObject(o, "subscribed", 1);
    return o;
}

SOCKET(ws_unsubscribe, "unsubscribe")
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "unsubscribed", unsubscribe_id(client_id));
    return o;
}

SOCKET_DISCONNECT(ws_gone)
{
    unsubscribe_id(client_id);
    return NULL;
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

    pthread_mutex_lock(&subs_lock);
    int n = cJSON_GetArraySize(subscribers);
    const char **ids = n > 0 ? calloc((size_t)n, sizeof *ids) : NULL;
    char **copies = n > 0 ? calloc((size_t)n, sizeof *copies) : NULL;
    int k = 0;
    for (int i = 0; ids && copies && i < n; i++) {
        copies[k] = strdup(cJSON_GetArrayItem(subscribers, i)->valuestring);
        if (copies[k]) {
            ids[k] = copies[k];
            k++;
        }
    }
    pthread_mutex_unlock(&subs_lock);
    int clients = 0;
    if (k > 0)
        clients = daebus_ws_broadcast_to_clients(daebus_app_websocket(app), ids, (size_t)k, m,
                                                 "metrics_update", NULL);
    for (int i = 0; i < k; i++)
        free(copies[i]);
    free(copies);
    free(ids);
    cJSON_Delete(m);
    daebus_log(DAEBUS_LOG_INFO, "metrics",
               "metrics broadcast completed (%d Redis receivers, %d WebSocket clients)",
               receivers < 0 ? 0 : receivers, clients < 0 ? 0 : clients);
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
    subscribers = cJSON_CreateArray();

    daebus_app_options o = DAEBUS_APP_OPTIONS_INIT;
    o.service = "metrics_service";
    daebus_app *app = daebus_app_create(&o, NULL);
    if (!app || !subscribers)
        return 1;
    daebus_app_configure(app, argc, argv);

    daebus_http *http = daebus_http_create(NULL, NULL);
    daebus_ws *ws = daebus_ws_create(NULL, NULL);
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
    cJSON_Delete(subscribers);
    return status;
}
