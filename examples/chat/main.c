/* chat_service - the Daebus guide's complete chat example in C, with a browser page.
 *
 * WebSocket (same port as HTTP, paths / and /ws): register, join_room,
 * leave_room, chat_message, direct_message, room_update/new_message pushes -
 * the rooms blueprint. Replicas: start several on one Redis (same --service)
 * behind a load balancer; rooms, direct messages and the admin actions span
 * them all (docs/replicas.md). Bus actions for operators: get_connected_clients,
 * find_inactive_clients, kick_client, notify_user, shutdown - the admin
 * blueprint. GET /health, /metrics - the health blueprint. GET /api/rooms,
 * and the read-only bus action list_rooms ({"after", "limit"} optional) with
 * the same data, which browsers may call through the action gateway (the
 * TypeScript client's "publish" frame, docs/channels/gateway.md): the
 * gateway is on with only <service>.list_rooms allowed.
 * GET / serves the chat page from the static directory. Every
 * CHAT_STATUS_INTERVAL seconds (default 60) each replica sends a
 * system_status message to its own WebSocket clients and to the Redis
 * channel "system_status" (its instance_id, its connections, and the
 * service's rooms, users and cluster_connections).
 *
 * Flags: the standard ones (--port, --redis, --service, --log-level ...)
 * plus --status-interval SECONDS and --static DIR (env CHAT_STATUS_INTERVAL,
 * CHAT_STATIC_DIR), and what a public chat needs, on by default: the Origin
 * policy (--allowed-origins, CHAT_ALLOWED_ORIGINS; empty = same origin), a
 * WebSocket rate limit (--rate-limit N per --rate-window SECONDS, 60 per 10
 * s) and the rooms' bounds (--max-rooms, --max-rooms-per-client,
 * --max-name-bytes, --max-message-bytes, --history-messages,
 * --history-bytes, --history-total-bytes; CHAT_* variables) and the replica
 * heartbeat (--heartbeat, CHAT_HEARTBEAT). All are
 * declared with daebus_app_add_option() so that --help lists them.
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

#include <daebus/daebus.h>

#include "admin/admin.h"
#include "health/health.h"
#include "rooms/rooms.h"

#ifndef CHAT_SOURCE_STATIC_DIR
#define CHAT_SOURCE_STATIC_DIR ""
#endif
#ifndef CHAT_INSTALL_STATIC_DIR
#define CHAT_INSTALL_STATIC_DIR ""
#endif

/* ---- system_status ---- */

static double now_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Resident memory in MiB from /proc/self/statm, or -1. */
static double rss_mb(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = -1, resident = -1;
    if (!f)
        return -1;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
        resident = -1;
    fclose(f);
    if (resident < 0)
        return -1;
    return (double)resident * (double)sysconf(_SC_PAGESIZE) / (1024.0 * 1024.0);
}

/* The one-minute load average from /proc/loadavg, or -1. */
static double load1(void)
{
    FILE *f = fopen("/proc/loadavg", "r");
    double l = -1;
    if (!f)
        return -1;
    if (fscanf(f, "%lf", &l) != 1)
        l = -1;
    fclose(f);
    return l;
}

/* Sends m as system_status to this replica's own clients (each replica runs
 * the task for its clients; a broadcast_to_all would reach every replica's).
 * Returns: the clients it was queued for, or a negative code. */
static int send_to_local_clients(daebus_ws *ws, const cJSON *m)
{
    cJSON *ids = ws ? daebus_ws_get_clients(ws) : NULL;
    int n = cJSON_GetArraySize(ids), rc = 0;
    const char **v = n > 0 ? malloc((size_t)n * sizeof *v) : NULL;
    if (v) {
        int k = 0;
        const cJSON *id;
        cJSON_ArrayForEach(id, ids)
        {
            v[k++] = id->valuestring;
        }
        rc = daebus_ws_broadcast_to_clients(ws, v, (size_t)k, m, "system_status", NULL);
    }
    free(v);
    cJSON_Delete(ids);
    return rc;
}

static int system_status(daebus_task *task, void *user)
{
    (void)user;
    daebus_app *app = daebus_task_app(task);
    daebus_ws *ws = daebus_app_websocket(app);
    daebus_rooms_stats rs;
    daebus_rooms_get_stats(&rs);
    size_t cluster = 0;
    if (ws && daebus_ws_cluster_client_count(ws, &cluster) < 0)
        cluster = daebus_ws_get_client_count(ws);

    /* This replica's figures, and the service's (rooms, users, every
     * replica's connections). */
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "service", daebus_app_service(app));
    cJSON_AddStringToObject(m, "instance_id", daebus_app_instance_id(app));
    cJSON_AddNumberToObject(m, "cpu", load1());
    cJSON_AddNumberToObject(m, "memory_mb", round(rss_mb() * 10) / 10);
    cJSON_AddNumberToObject(m, "active_users", (double)rs.users);
    cJSON_AddNumberToObject(m, "rooms", (double)rs.rooms);
    cJSON_AddNumberToObject(m, "connections", ws ? (double)daebus_ws_get_client_count(ws) : 0);
    cJSON_AddNumberToObject(m, "cluster_connections", (double)cluster);
    cJSON_AddNumberToObject(m, "messages_total", (double)rs.messages_total);
    cJSON_AddNumberToObject(m, "timestamp", now_wall());

    int recipients = send_to_local_clients(ws, m);
    daebus_bus *bus = daebus_app_bus(app);
    int subscribers = bus ? daebus_bus_broadcast(bus, "system_status", m) : 0;
    cJSON_Delete(m);
    daebus_log(DAEBUS_LOG_DEBUG, "chat",
               "status broadcast sent to %d clients and %d Redis subscribers", recipients,
               subscribers < 0 ? 0 : subscribers);
    return recipients < 0 ? recipients : 0;
}

/* ---- configuration of our own ---- */

/* The service's own flags and environment variables: daebus_app_configure()
 * parses them with the standard ones and lists them in --help. */
static const daebus_app_option status_interval_option = {
    .name = "status-interval",
    .env = "CHAT_STATUS_INTERVAL",
    .default_value = "60",
    .help = "system_status broadcast period",
    .metavar = "SECONDS",
};
static const daebus_app_option static_dir_option = {
    .name = "static",
    .env = "CHAT_STATIC_DIR",
    .help = "directory of the chat page",
    .metavar = "DIR",
};
static const daebus_app_option origins_option = {
    .name = "allowed-origins",
    .env = "CHAT_ALLOWED_ORIGINS",
    .help = "Origins that may open the WebSocket: comma-separated, or *; unset or "
            "same-origin = the page's own only",
    .metavar = "LIST",
};

/* The numeric options: flag, environment, default, range, help. */
typedef struct num_option {
    daebus_app_option opt;
    double min, max;
} num_option;

#define CHAT_RATE_DISCONNECT_AFTER 20 /* consecutive rate-limit errors before close 1008 */

static const num_option num_options[] = {
    {{"rate-limit", "CHAT_RATE_LIMIT", "60", "WebSocket messages per client per window; 0 = off",
      "N"},
     0,
     1e6},
    {{"rate-window", "CHAT_RATE_WINDOW", "10", "rate-limit window", "SECONDS"}, 0.001, 86400},
    {{"max-rooms", "CHAT_MAX_ROOMS", "1000", "rooms at once", "N"}, 1, 1e6},
    {{"max-rooms-per-client", "CHAT_MAX_ROOMS_PER_CLIENT", "20",
      "rooms one client is a member of at once", "N"},
     1,
     1e6},
    {{"max-name-bytes", "CHAT_MAX_NAME_BYTES", "64", "bytes of a user or room name", "N"},
     1,
     DAEBUS_ROOMS_MAX_NAME_LIMIT},
    {{"max-message-bytes", "CHAT_MAX_MESSAGE_BYTES", "4096", "bytes of one chat message", "N"},
     1,
     DAEBUS_ROOMS_MAX_TEXT_LIMIT},
    {{"history-messages", "CHAT_HISTORY_MESSAGES", "100", "messages kept per room", "N"}, 1, 1e6},
    {{"history-bytes", "CHAT_HISTORY_BYTES", "262144", "history bytes kept per room", "N"},
     1024,
     1e12},
    {{"history-total-bytes", "CHAT_HISTORY_TOTAL_BYTES", "33554432",
      "history bytes kept over all rooms", "N"},
     1024,
     1e12},
    {{"heartbeat", "CHAT_HEARTBEAT", "1",
      "seconds between two announces of this replica in Redis (a dead replica's clients leave "
      "the rooms within 3 of them)",
      "SECONDS"},
     0.05,
     60},
};
#define NUM_OPTIONS (sizeof num_options / sizeof num_options[0])

/* Reads numeric option i into *out. Returns 0, or -1 after printing what is
 * wrong. */
static int num_value(daebus_app *app, size_t i, double *out)
{
    const num_option *n = &num_options[i];
    const char *text = daebus_app_option_value(app, n->opt.name);
    char *end = NULL;
    errno = 0;
    double v = text ? strtod(text, &end) : NAN;
    bool off = v == 0 && n->min == 0;
    if (!text || errno || !end || end == text || *end || !isfinite(v) ||
        (!off && (v < n->min || v > n->max))) {
        fprintf(stderr, "chat_service: --%s (%s): '%s' is not a number from %g to %g\n",
                n->opt.name, n->opt.env, text ? text : "", n->min, n->max);
        return -1;
    }
    *out = v;
    return 0;
}

/* Reads --status-interval / CHAT_STATUS_INTERVAL. Returns 0, or -1 after
 * printing what is wrong. */
static int status_interval(daebus_app *app, double *out)
{
    const char *text = daebus_app_option_value(app, "status-interval");
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || !end || end == text || *end || !isfinite(v) || v <= 0 || v > 86400) {
        fprintf(stderr,
                "chat_service: --status-interval (CHAT_STATUS_INTERVAL): '%s' is not a number "
                "of seconds (0 < s <= 86400)\n",
                text);
        return -1;
    }
    *out = v;
    return 0;
}

/* ---- list_rooms: GET /api/rooms as a bus action (gateway-callable) ---- */

DAEBUS_ACTION(list_rooms, "list_rooms")
{
    const cJSON *after = cJSON_GetObjectItemCaseSensitive(payload, "after");
    const cJSON *limit = cJSON_GetObjectItemCaseSensitive(payload, "limit");
    if ((after && !cJSON_IsString(after) && !cJSON_IsNull(after)) ||
        (limit && !cJSON_IsNumber(limit)))
        return daebus_bus_reply_error(req, "after must be a string and limit a number");
    double n = cJSON_IsNumber(limit) ? limit->valuedouble : 0;
    cJSON *out;
    int rc = daebus_rooms_list(daebus_bus_request_app(req), cJSON_GetStringValue(after),
                               n >= 1 && n < 1e9 ? (size_t)n : 0, &out);
    if (rc == DAEBUS_EINVAL)
        return daebus_bus_reply_error(req, "Rooms unavailable");
    if (rc != 0) {
        const char *e = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(out, "error"));
        rc = daebus_bus_reply_error(req, "%s", e ? e : "Rooms unavailable");
        cJSON_Delete(out);
        return rc;
    }
    return daebus_bus_reply_take(req, out);
}

/* The action gateway: browsers may call list_rooms, nothing else. */
static int enable_gateway(daebus_app *app)
{
    char allow[300];
    snprintf(allow, sizeof allow, "%s.list_rooms", daebus_app_service(app));
    daebus_gateway_options go = DAEBUS_GATEWAY_OPTIONS_INIT;
    go.allow = allow; /* copied */
    go.timeout = 5.0;
    go.max_in_flight = 4;
    return daebus_gateway_enable(app, &go);
}

/* What a public chat needs, from the options: the rooms' bounds, the
 * WebSocket rate limit and the Origin policy. Returns 0, or -1 after printing
 * what is wrong. */
static int chat_limits(daebus_app *app, daebus_rooms_options *ro, daebus_ws_options *wo,
                       daebus_bus_options *bo)
{
    double v[NUM_OPTIONS];
    for (size_t i = 0; i < NUM_OPTIONS; i++)
        if (num_value(app, i, &v[i]) != 0)
            return -1;
    wo->rate_limit_max = (int)v[0];
    wo->rate_limit_window = v[1];
    wo->rate_limit_disconnect_after = v[0] > 0 ? CHAT_RATE_DISCONNECT_AFTER : 0;
    ro->max_rooms = (size_t)v[2];
    ro->max_rooms_per_client = (size_t)v[3];
    ro->max_name_bytes = (size_t)v[4];
    ro->max_message_bytes = (size_t)v[5];
    ro->history_messages = (size_t)v[6];
    ro->history_bytes = (size_t)v[7];
    ro->history_total_bytes = (size_t)v[8];
    bo->heartbeat = v[9];
    /* A frame holds one message as JSON: up to 6 bytes per byte of text
     * (\u00XX escapes) plus the envelope. */
    size_t frame = 6 * ro->max_message_bytes + 4096;
    wo->max_message_size = frame > 64 * 1024 ? frame : 64 * 1024;
    /* Origins: unset = the page's own only (the rooms blueprint compares
     * Origin with Host); otherwise the framework's allow-list ("*" = any). */
    const char *origins = daebus_app_option_value(app, "allowed-origins");
    if (!origins || !*origins || strcmp(origins, "same-origin") == 0) {
        ro->same_origin = true;
    } else {
        ro->same_origin = false;
        wo->allowed_origins = origins;
    }
    return 0;
}

static int has_index(const char *dir)
{
    char path[PATH_MAX];
    struct stat st;
    if (!dir || !*dir || (size_t)snprintf(path, sizeof path, "%s/index.html", dir) >= sizeof path)
        return 0;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* The chat page's directory: --static / CHAT_STATIC_DIR, else chat_static/
 * next to the executable (copied there at build time), else the installed
 * share/ directory, else the source tree. NULL if none has index.html. */
static const char *find_static_dir(const char *configured, char *buf, size_t len)
{
    if (configured)
        return configured;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            if ((size_t)snprintf(buf, len, "%s/chat_static", exe) < len && has_index(buf))
                return buf;
            if ((size_t)snprintf(buf, len, "%s/../share/daebus/examples/chat/static", exe) < len &&
                has_index(buf))
                return buf;
        }
    }
    if (has_index(CHAT_INSTALL_STATIC_DIR))
        return CHAT_INSTALL_STATIC_DIR;
    if (has_index(CHAT_SOURCE_STATIC_DIR))
        return CHAT_SOURCE_STATIC_DIR;
    return NULL;
}

/* ---- main ---- */

int main(int argc, char **argv)
{
    daebus_app_options o = DAEBUS_APP_OPTIONS_INIT;
    o.service = "chat_service";
    daebus_app *app = daebus_app_create(&o, NULL);
    if (!app)
        return 1;
    daebus_app_add_option(app, &status_interval_option);
    daebus_app_add_option(app, &static_dir_option);
    daebus_app_add_option(app, &origins_option);
    for (size_t i = 0; i < NUM_OPTIONS; i++)
        daebus_app_add_option(app, &num_options[i].opt);
    daebus_app_configure(app, argc, argv); /* exits on --help, bad values, unknown flags */
    double interval;
    daebus_rooms_options ro = DAEBUS_ROOMS_OPTIONS_INIT;
    daebus_ws_options wo = DAEBUS_WS_OPTIONS_INIT;
    daebus_bus_options bo = DAEBUS_BUS_OPTIONS_INIT;
    if (status_interval(app, &interval) != 0 || chat_limits(app, &ro, &wo, &bo) != 0 ||
        daebus_rooms_configure(&ro) != 0) {
        daebus_app_destroy(app);
        return 2;
    }
    /* The rooms are the channels room:<name>, with history (recovery after
     * a dropped connection) and the rooms' authorisation hook. */
    daebus_rooms_ws_options(&wo);

    char buf[PATH_MAX];
    const char *static_dir =
        find_static_dir(daebus_app_option_value(app, "static"), buf, sizeof buf);
    if (!static_dir)
        daebus_log(DAEBUS_LOG_WARNING, "chat",
                   "chat page not found (set CHAT_STATIC_DIR or --static); serving the API only");
    else if (!has_index(static_dir))
        daebus_log(DAEBUS_LOG_WARNING, "chat", "%s has no index.html", static_dir);

    /* Attach takes each component on every path (a failed create or attach
     * frees it and returns an error), so set-up is a straight line. */
    daebus_http_options ho = DAEBUS_HTTP_OPTIONS_INIT;
    ho.static_dir = static_dir;
    daebus_scheduler *sched = daebus_scheduler_create(NULL, NULL);
    int rc = daebus_http_attach(daebus_http_create(&ho, NULL), app);
    if (rc == 0)
        rc = daebus_ws_attach(daebus_ws_create(&wo, NULL), app);
    if (rc == 0)
        rc = daebus_bus_attach(daebus_bus_create(&bo, NULL), app);
    if (rc == 0)
        rc = daebus_scheduler_attach(sched, app);
    else
        daebus_scheduler_destroy(sched);
    if (rc == 0)
        rc =
            daebus_scheduler_add_task(sched, "system_status", interval, system_status, NULL, false);
    if (rc == 0)
        rc = daebus_rooms_register(app); /* + its "client left" hook */
    if (rc == 0)
        rc = enable_gateway(app);
    if (rc == 0)
        rc = daebus_app_register_blueprint(app, &daebus_admin_bp);
    if (rc == 0)
        rc = daebus_app_register_blueprint(app, &daebus_health_bp);

    int status = 1;
    if (rc == 0) {
        if (static_dir)
            daebus_log(DAEBUS_LOG_INFO, "chat", "chat page from %s; system_status every %g s",
                       static_dir, interval);
        daebus_log(DAEBUS_LOG_INFO, "chat",
                   "origins: %s; rate limit: %s%d messages per %g s; rooms: %zu (%zu per "
                   "client), names %zu bytes, messages %zu bytes, history %zu messages / %zu "
                   "bytes per room, %zu bytes in all",
                   ro.same_origin ? "same origin only" : wo.allowed_origins,
                   wo.rate_limit_max > 0 ? "" : "off, ", wo.rate_limit_max, wo.rate_limit_window,
                   ro.max_rooms, ro.max_rooms_per_client, ro.max_name_bytes, ro.max_message_bytes,
                   ro.history_messages, ro.history_bytes, ro.history_total_bytes);
        status = daebus_app_run(app);
    } else {
        fprintf(stderr, "chat_service: set-up failed (%s); see the log line above\n",
                daebus_strerror(rc));
    }
    daebus_app_destroy(app);
    daebus_rooms_reset();
    return status;
}
