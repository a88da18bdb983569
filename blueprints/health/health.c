/* health.c - the health blueprint: liveness, readiness and Prometheus metrics.
 *
 * Everything here is read-only: the routes ask the app for its components and
 * read their thread-safe get_stats functions, so the blueprint can be
 * registered into any service without touching its handlers. The metrics text
 * is built in a growing buffer (no fixed limits on task counts).
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

static void metric_u64(sbuf *b, const char *name, const char *type, const char *help,
                       unsigned long long v)
{
    metric_head(b, name, type, help);
    sb_printf(b, "%s %llu\n", name, v);
}

static void metric_dbl(sbuf *b, const char *name, const char *type, const char *help, double v)
{
    metric_head(b, name, type, help);
    sb_printf(b, "%s %.6f\n", name, v);
}

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
    if (!http || daebus_http_get_stats(http, &st) != 0)
        return;
    metric_u64(b, "daebus_http_requests_total", "counter", "HTTP requests answered.",
               (unsigned long long)st.requests_total);
    metric_head(b, "daebus_http_responses_total", "counter", "HTTP responses by status class.");
    sb_printf(b, "daebus_http_responses_total{class=\"2xx\"} %llu\n",
              (unsigned long long)st.responses_2xx);
    sb_printf(b, "daebus_http_responses_total{class=\"3xx\"} %llu\n",
              (unsigned long long)st.responses_3xx);
    sb_printf(b, "daebus_http_responses_total{class=\"4xx\"} %llu\n",
              (unsigned long long)st.responses_4xx);
    sb_printf(b, "daebus_http_responses_total{class=\"5xx\"} %llu\n",
              (unsigned long long)st.responses_5xx);
    metric_u64(b, "daebus_http_in_flight", "gauge", "HTTP requests being handled.",
               (unsigned long long)st.in_flight);
    metric_u64(b, "daebus_http_received_bytes_total", "counter", "HTTP request body bytes.",
               (unsigned long long)st.bytes_in);
    metric_u64(b, "daebus_http_sent_bytes_total", "counter", "HTTP response body bytes.",
               (unsigned long long)st.bytes_out);
}

static void bus_metrics(sbuf *b, daebus_bus *bus)
{
    struct daebus_bus_stats st;
    if (daebus_bus_get_stats(bus, &st) != 0)
        return;
    metric_u64(b, "daebus_bus_connected", "gauge", "1 while the Redis subscriber is connected.",
               (unsigned long long)(st.connected ? 1 : 0));
    metric_u64(b, "daebus_bus_requests_received_total", "counter",
               "Service-channel messages with an action.",
               (unsigned long long)st.requests_received);
    metric_u64(b, "daebus_bus_requests_handled_total", "counter",
               "Action handlers that ran to completion.", (unsigned long long)st.requests_handled);
    metric_u64(b, "daebus_bus_errors_total", "counter", "Error replies sent.",
               (unsigned long long)st.errors);
    metric_u64(b, "daebus_bus_unknown_actions_total", "counter", "Requests for unknown actions.",
               (unsigned long long)st.unknown_actions);
    metric_u64(b, "daebus_bus_malformed_total", "counter", "Unparsable or non-object messages.",
               (unsigned long long)st.malformed);
    metric_u64(b, "daebus_bus_too_large_total", "counter", "Messages over the size limit.",
               (unsigned long long)st.too_large);
    metric_u64(b, "daebus_bus_overloads_total", "counter",
               "Messages refused because the worker queue was full.",
               (unsigned long long)st.overloads);
    metric_u64(b, "daebus_bus_replies_sent_total", "counter", "Replies published.",
               (unsigned long long)st.replies_sent);
    metric_u64(b, "daebus_bus_listener_messages_total", "counter",
               "Messages handed to LISTEN handlers.", (unsigned long long)st.listener_messages);
    metric_u64(b, "daebus_bus_broadcasts_total", "counter", "Broadcasts published.",
               (unsigned long long)st.broadcasts);
    metric_u64(b, "daebus_bus_reconnects_total", "counter", "Redis subscriber reconnections.",
               (unsigned long long)st.reconnects);
}

static void ws_metrics(sbuf *b, daebus_ws *ws)
{
    daebus_ws_stats st;
    if (!ws || daebus_ws_get_stats(ws, &st) != 0)
        return;
    metric_u64(b, "daebus_ws_clients", "gauge", "WebSocket clients connected.",
               (unsigned long long)st.clients);
    metric_u64(b, "daebus_ws_clients_high_water", "gauge", "Most WebSocket clients at once.",
               (unsigned long long)st.clients_high_water);
    metric_u64(b, "daebus_ws_connects_total", "counter", "WebSocket upgrades accepted.",
               (unsigned long long)st.connects);
    metric_u64(b, "daebus_ws_rejected_upgrades_total", "counter", "WebSocket upgrades refused.",
               (unsigned long long)st.rejected_upgrades);
    metric_head(b, "daebus_ws_disconnects_total", "counter", "WebSocket disconnects by cause.");
    static const char *const causes[] = {"client", "server", "idle", "slow", "protocol"};
    const uint64_t counts[] = {st.disconnects_client, st.disconnects_server, st.disconnects_idle,
                               st.disconnects_slow, st.disconnects_protocol};
    for (size_t i = 0; i < 5; i++)
        sb_printf(b, "daebus_ws_disconnects_total{cause=\"%s\"} %llu\n", causes[i],
                  (unsigned long long)counts[i]);
    metric_u64(b, "daebus_ws_messages_received_total", "counter", "WebSocket messages received.",
               (unsigned long long)st.messages_in);
    metric_u64(b, "daebus_ws_messages_sent_total", "counter", "WebSocket frames sent.",
               (unsigned long long)st.messages_out);
    metric_u64(b, "daebus_ws_received_bytes_total", "counter", "WebSocket bytes received.",
               (unsigned long long)st.bytes_in);
    metric_u64(b, "daebus_ws_sent_bytes_total", "counter", "WebSocket bytes sent.",
               (unsigned long long)st.bytes_out);
    metric_u64(b, "daebus_ws_handler_errors_total", "counter", "Socket handlers that failed.",
               (unsigned long long)st.handler_errors);
    metric_u64(b, "daebus_ws_rate_limited_total", "counter",
               "Messages refused by the rate limiter.", (unsigned long long)st.rate_limited);
    metric_u64(b, "daebus_ws_queue_depth_high_water", "gauge", "Most frames queued for one client.",
               (unsigned long long)st.queue_depth_high_water);
}

typedef struct task_ctx {
    sbuf *b;
    int pass;
} task_ctx;

static void task_line(const daebus_task_stats *st, void *user)
{
    task_ctx *c = user;
    sbuf *b = c->b;
    static const char *names[] = {"daebus_scheduler_task_runs_total",
                                  "daebus_scheduler_task_failures_total",
                                  "daebus_scheduler_task_last_duration_seconds"};
    sb_printf(b, "%s{task=\"", names[c->pass]);
    sb_label(b, st->name);
    if (c->pass == 0)
        sb_printf(b, "\"} %llu\n", (unsigned long long)st->runs);
    else if (c->pass == 1)
        sb_printf(b, "\"} %llu\n", (unsigned long long)st->failures);
    else
        sb_printf(b, "\"} %.6f\n", st->last_duration);
}

static void scheduler_metrics(sbuf *b, daebus_scheduler *s)
{
    daebus_scheduler_stats st;
    if (!s || daebus_scheduler_get_stats(s, &st) != 0)
        return;
    metric_u64(b, "daebus_scheduler_tasks", "gauge", "Periodic tasks known.",
               (unsigned long long)st.tasks);
    metric_u64(b, "daebus_scheduler_tasks_running", "gauge", "Task runs in progress.",
               (unsigned long long)st.tasks_running);
    metric_u64(b, "daebus_scheduler_threads_running", "gauge", "THREAD handlers alive.",
               (unsigned long long)st.threads_running);
    metric_u64(b, "daebus_scheduler_runs_total", "counter", "Task runs finished.",
               (unsigned long long)st.runs);
    metric_u64(b, "daebus_scheduler_failures_total", "counter", "Task runs that failed.",
               (unsigned long long)st.failures);
    metric_u64(b, "daebus_scheduler_late_starts_total", "counter",
               "Runs started late because the previous run overran.",
               (unsigned long long)st.late_starts);
    metric_u64(b, "daebus_scheduler_skipped_total", "counter", "Slots skipped.",
               (unsigned long long)st.skipped);
    metric_u64(b, "daebus_scheduler_timers_fired_total", "counter", "One-shot timers run.",
               (unsigned long long)st.timers_fired);
    metric_u64(b, "daebus_scheduler_dispatch_errors_total", "counter",
               "Runs that could not be handed to the worker pool.",
               (unsigned long long)st.dispatch_errors);
    if (st.tasks == 0)
        return;
    static const struct {
        const char *name, *type, *help;
    } per_task[] = {
        {"daebus_scheduler_task_runs_total", "counter", "Runs finished, per task."},
        {"daebus_scheduler_task_failures_total", "counter", "Failed runs, per task."},
        {"daebus_scheduler_task_last_duration_seconds", "gauge", "Last run time, per task."},
    };
    for (int pass = 0; pass < 3; pass++) {
        metric_head(b, per_task[pass].name, per_task[pass].type, per_task[pass].help);
        task_ctx c = {b, pass};
        daebus_scheduler_foreach_task(s, task_line, &c);
    }
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
    metric_dbl(&b, "daebus_uptime_seconds", "gauge", "Seconds since the service started.",
               uptime());
    http_metrics(&b, daebus_app_http(app));
    bus_metrics(&b, daebus_app_bus(app));
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
