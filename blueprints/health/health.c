/* health.c - the health blueprint: liveness, readiness and Prometheus metrics.
 *
 * Everything here is read-only: the routes ask the app for its components and
 * read their thread-safe get_stats functions, so the blueprint can be
 * registered into any service without touching its handlers. The metrics text
 * is built in a growing buffer (no fixed limits on task counts); its lines are
 * generated from the DAEBUS_*_STATS lists that also define the stats structs
 * (daebus/app.h says how), so a new counter is one line in its header.
 */
#include "health/health.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

DAEBUS_BLUEPRINT(daebus_health_bp, "health");

/* Wall-clock start of the app (first ON_START), for uptime. 0 = not started. */
static _Atomic double started_at;

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

DAEBUS_ON_START(health_on_start, .bp = &daebus_health_bp)
{
    double zero = 0.0;
    atomic_compare_exchange_strong(&started_at, &zero, wall_now());
    return 0;
}

static double uptime(void)
{
    double s = atomic_load(&started_at);
    return s > 0 ? wall_now() - s : 0.0;
}

/* ---- a growing text buffer ---- */

typedef struct sbuf {
    char *data;
    size_t len, cap;
    int failed;
} sbuf;

__attribute__((format(printf, 2, 3))) static void sb_printf(sbuf *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    for (;;) {
        size_t room = b->cap - b->len;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->data ? b->data + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = 1;
            return;
        }
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap - b->len <= (size_t)n)
            cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d) {
            b->failed = 1;
            return;
        }
        b->data = d;
        b->cap = cap;
    }
}

static void metric_head(sbuf *b, const char *name, const char *type, const char *help)
{
    sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One sample: "metric{labels} value", integers plainly, doubles with six
 * decimals. */
static void metric_sample(sbuf *b, const char *name, const char *labels, bool is_double, double d,
                          unsigned long long u)
{
    sb_printf(b, "%s%s%s%s ", name, labels[0] ? "{" : "", labels, labels[0] ? "}" : "");
    if (is_double)
        sb_printf(b, "%.6f\n", d);
    else
        sb_printf(b, "%llu\n", u);
}

#define IS_DOUBLE(v) _Generic((v), double : true, float : true, default : false)

/* Prints every X entry of a DAEBUS_*_STATS list from the struct st, with one
 * HELP/TYPE head per family (consecutive entries of the same metric). */
#define METRIC_LINE(type, field, metric, labels, kind, help)                                       \
    if (!last || strcmp(last, metric) != 0)                                                        \
        metric_head(b, metric, kind, help);                                                        \
    last = metric;                                                                                 \
    metric_sample(b, metric, labels, IS_DOUBLE(st.field), (double)st.field,                        \
                  (unsigned long long)st.field);
#define METRIC_SKIP(type, field)

/* Label values: escape backslash, double quote and newline. */
static void sb_label(sbuf *b, const char *v)
{
    for (; v && *v; v++) {
        if (*v == '\\' || *v == '"')
            sb_printf(b, "\\%c", *v);
        else if (*v == '\n')
            sb_printf(b, "\\n");
        else
            sb_printf(b, "%c", *v);
    }
}

/* ---- per-component sections ---- */

static void http_metrics(sbuf *b, daebus_http *http)
{
    daebus_http_stats st;
    const char *last = NULL;
    if (!http || daebus_http_get_stats(http, &st) != 0)
        return;
    DAEBUS_HTTP_STATS(METRIC_LINE, METRIC_SKIP)
}

static void bus_metrics(sbuf *b, daebus_bus *bus)
{
    struct daebus_bus_stats st;
    const char *last = NULL;
    if (!bus)
        return;
    if (daebus_bus_get_stats(bus, &st) != 0)
        return;
    st.connected = st.connected ? 1 : 0;
    DAEBUS_BUS_STATS(METRIC_LINE, METRIC_SKIP)
}

static void ws_metrics(sbuf *b, daebus_ws *ws)
{
    daebus_ws_stats st;
    const char *last = NULL;
    if (!ws || daebus_ws_get_stats(ws, &st) != 0)
        return;
    DAEBUS_WS_STATS(METRIC_LINE, METRIC_SKIP)
}

/* The per-task families, from the X entries of DAEBUS_TASK_STATS. */
#define TASK_FAMILY(type, field, metric, labels, kind, help) {metric, kind, help},
static const struct {
    const char *name, *type, *help;
} task_families[] = {DAEBUS_TASK_STATS(TASK_FAMILY, METRIC_SKIP)};
#define NTASK_FAMILIES (sizeof task_families / sizeof *task_families)

typedef struct task_ctx {
    sbuf *b;
    size_t pass; /* index into task_families */
} task_ctx;

#define TASK_LINE(type, field, metric, labels, kind, help)                                         \
    if (i++ == c->pass) {                                                                          \
        sb_printf(b, "%s{task=\"", metric);                                                        \
        sb_label(b, st->name);                                                                     \
        sb_printf(b, "\"} ");                                                                      \
        if (IS_DOUBLE(st->field))                                                                  \
            sb_printf(b, "%.6f\n", (double)st->field);                                             \
        else                                                                                       \
            sb_printf(b, "%llu\n", (unsigned long long)st->field);                                 \
    }

static void task_line(const daebus_task_stats *st, void *user)
{
    task_ctx *c = user;
    sbuf *b = c->b;
    size_t i = 0;
    DAEBUS_TASK_STATS(TASK_LINE, METRIC_SKIP)
}

static void scheduler_metrics(sbuf *b, daebus_scheduler *s)
{
    daebus_scheduler_stats st;
    const char *last = NULL;
    if (!s || daebus_scheduler_get_stats(s, &st) != 0)
        return;
    DAEBUS_SCHEDULER_STATS(METRIC_LINE, METRIC_SKIP)
    if (st.tasks == 0)
        return;
    for (size_t pass = 0; pass < NTASK_FAMILIES; pass++) {
        metric_head(b, task_families[pass].name, task_families[pass].type,
                    task_families[pass].help);
        task_ctx c = {b, pass};
        daebus_scheduler_foreach_task(s, task_line, &c);
    }
}

/* Returns: the number of live instances this one sees (negative without a
 * running bus); *stale: whether that is the last view before Redis went. */
static int live_instances(daebus_app *app, bool *stale)
{
    cJSON *list = NULL;
    int n = daebus_app_instances(app, &list);
    *stale = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(list, 0), "stale"));
    cJSON_Delete(list);
    return n;
}

/* Returns: the clients of every replica (this one's alone without the bus),
 * or -1 without a WebSocket component or while Redis is unreachable. */
static long cluster_clients(daebus_app *app)
{
    daebus_ws *ws = daebus_app_websocket(app);
    size_t n = 0;
    if (!ws || daebus_ws_cluster_client_count(ws, &n) < 0)
        return -1;
    return (long)n;
}

static void instance_metrics(sbuf *b, daebus_app *app)
{
    long clients = cluster_clients(app);
    if (clients >= 0) {
        metric_head(b, "daebus_cluster_ws_clients", "gauge",
                    "WebSocket clients of every replica of the service.");
        metric_sample(b, "daebus_cluster_ws_clients", "", false, 0, (unsigned long long)clients);
    }
    bool stale;
    int n = live_instances(app, &stale);
    if (n < 0)
        return;
    metric_head(b, "daebus_instance_info", "gauge", "This instance's id (docs/replicas.md).");
    sb_printf(b, "daebus_instance_info{instance_id=\"");
    sb_label(b, daebus_app_instance_id(app));
    sb_printf(b, "\"} 1\n");
    metric_head(b, "daebus_instances", "gauge", "Live instances of the service seen by this one.");
    metric_sample(b, "daebus_instances", "", false, 0, (unsigned long long)n);
    metric_head(b, "daebus_instances_stale", "gauge",
                "1 while Redis cannot be reached and the instance list is the last known one.");
    metric_sample(b, "daebus_instances_stale", "", false, 0, stale ? 1ULL : 0ULL);
}

int daebus_health_metrics_text(daebus_app *app, char **out, size_t *len)
{
    if (!app || !out)
        return DAEBUS_EINVAL;
    sbuf b = {0};
    metric_head(&b, "daebus_info", "gauge", "Service name and framework version.");
    sb_printf(&b, "daebus_info{service=\"");
    sb_label(&b, daebus_app_service(app));
    sb_printf(&b, "\",version=\"%s\"} 1\n", DAEBUS_VERSION_STRING);
    metric_head(&b, "daebus_uptime_seconds", "gauge", "Seconds since the service started.");
    metric_sample(&b, "daebus_uptime_seconds", "", true, uptime(), 0);
    http_metrics(&b, daebus_app_http(app));
    bus_metrics(&b, daebus_app_bus(app));
    instance_metrics(&b, app);
    ws_metrics(&b, daebus_app_websocket(app));
    scheduler_metrics(&b, daebus_app_scheduler(app));
    if (b.failed || !b.data) {
        free(b.data);
        return DAEBUS_ENOMEM;
    }
    *out = b.data;
    if (len)
        *len = b.len;
    return 0;
}

/* ---- health ---- */

/* checks.cluster: the whole service as this replica sees it, beside the
 * per-replica figures: {"instances", "clients"} (clients null while Redis
 * is unreachable). Only with the bus (the live-instance view). */
static void add_cluster(daebus_app *app, cJSON *checks, int instances)
{
    if (instances < 0)
        return;
    cJSON *c = cJSON_AddObjectToObject(checks, "cluster");
    cJSON_AddNumberToObject(c, "instances", instances);
    long clients = cluster_clients(app);
    if (clients >= 0)
        cJSON_AddNumberToObject(c, "clients", (double)clients);
    else if (daebus_app_websocket(app))
        cJSON_AddNullToObject(c, "clients");
}

/* Builds the checks object; returns whether the service is ready. */
static bool add_checks(daebus_app *app, cJSON *checks)
{
    bool ready = daebus_app_is_running(app);
    daebus_bus *bus = daebus_app_bus(app);
    if (bus) {
        struct daebus_bus_stats st;
        daebus_bus_get_stats(bus, &st); /* 0 here: bus is not NULL */
        cJSON *r = cJSON_AddObjectToObject(checks, "redis");
        cJSON_AddStringToObject(r, "status", st.connected ? "up" : "down");
        cJSON_AddBoolToObject(r, "connected", st.connected != 0);
        cJSON_AddNumberToObject(r, "reconnects", (double)st.reconnects);
        if (!st.connected)
            ready = false;
    }
    bool stale;
    int n = live_instances(app, &stale);
    if (n >= 0) {
        cJSON *in = cJSON_AddObjectToObject(checks, "instances");
        cJSON_AddStringToObject(in, "status", stale ? "stale" : "up");
        cJSON_AddNumberToObject(in, "count", n);
    }
    daebus_http *http = daebus_app_http(app);
    if (http) {
        cJSON *h = cJSON_AddObjectToObject(checks, "http");
        cJSON_AddStringToObject(h, "status", "up");
        cJSON_AddNumberToObject(h, "port", daebus_http_port(http));
    }
    if (daebus_app_websocket(app)) {
        cJSON *w = cJSON_AddObjectToObject(checks, "websocket");
        cJSON_AddStringToObject(w, "status", "up");
        cJSON_AddNumberToObject(w, "clients",
                                (double)daebus_ws_get_client_count(daebus_app_websocket(app)));
    }
    add_cluster(app, checks, n);
    daebus_scheduler *s = daebus_app_scheduler(app);
    if (s) {
        daebus_scheduler_stats st;
        cJSON *c = cJSON_AddObjectToObject(checks, "scheduler");
        if (daebus_scheduler_get_stats(s, &st) == 0) {
            cJSON_AddStringToObject(c, "status", "up");
            cJSON_AddNumberToObject(c, "tasks", (double)st.tasks);
            cJSON_AddNumberToObject(c, "failures", (double)st.failures);
        } else {
            cJSON_AddStringToObject(c, "status", "down");
            ready = false;
        }
    }
    return ready;
}

static cJSON *health_body(daebus_app *app, bool *ready_out)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *checks = cJSON_CreateObject();
    bool ready = add_checks(app, checks);
    cJSON_AddStringToObject(o, "status", ready ? "ok" : "degraded");
    cJSON_AddStringToObject(o, "service", daebus_app_service(app));
    cJSON_AddStringToObject(o, "instance_id", daebus_app_instance_id(app));
    cJSON_AddStringToObject(o, "version", DAEBUS_VERSION_STRING);
    cJSON_AddNumberToObject(o, "uptime_seconds", (double)(long long)(uptime() * 1000) / 1000.0);
    cJSON_AddBoolToObject(o, "live", 1);
    cJSON_AddBoolToObject(o, "ready", ready);
    cJSON_AddItemToObject(o, "checks", checks);
    *ready_out = ready;
    return o;
}

DAEBUS_ROUTE(health_route, "/health", .bp = &daebus_health_bp)
{
    bool ready;
    return daebus_http_send_json_take(res, 200, health_body(daebus_http_request_app(req), &ready));
}

DAEBUS_ROUTE(health_live_route, "/health/live", .bp = &daebus_health_bp)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "alive");
    cJSON_AddNumberToObject(o, "uptime_seconds", (double)(long long)(uptime() * 1000) / 1000.0);
    return daebus_http_send_json_take(res, 200, o);
}

DAEBUS_ROUTE(health_ready_route, "/health/ready", .bp = &daebus_health_bp)
{
    bool ready;
    cJSON *o = health_body(daebus_http_request_app(req), &ready);
    cJSON_ReplaceItemInObject(o, "status", cJSON_CreateString(ready ? "ready" : "not_ready"));
    return daebus_http_send_json_take(res, ready ? 200 : 503, o);
}

DAEBUS_ROUTE(metrics_route, "/metrics", .bp = &daebus_health_bp)
{
    char *text = NULL;
    size_t len = 0;
    int rc = daebus_health_metrics_text(daebus_http_request_app(req), &text, &len);
    if (rc != 0)
        return rc;
    rc = daebus_http_send(res, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
    return rc;
}
