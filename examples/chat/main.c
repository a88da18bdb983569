/* chat_service - the Daebus guide's complete chat example in C, with a browser page.
 *
 * WebSocket (same port as HTTP, paths / and /ws): register, join_room,
 * leave_room, chat_message, room_update/new_message pushes - the rooms
 * blueprint. Bus actions for operators: get_connected_clients,
 * find_inactive_clients, kick_client, notify_user, shutdown - the admin
 * blueprint. GET /health, /metrics - the health blueprint. GET /api/rooms.
 * GET / serves the chat page from the static directory. Every
 * CHAT_STATUS_INTERVAL seconds (default 60) a system_status message goes to
 * every WebSocket client and to the Redis channel "system_status".
 *
 * Flags: the standard ones (--port, --redis, --service, --log-level ...)
 * plus --status-interval SECONDS and --static DIR (env CHAT_STATUS_INTERVAL,
 * CHAT_STATIC_DIR), declared with daebus_app_add_option() so that --help
 * lists them.
 */
#include <errno.h>
#include <limits.h>
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

static int system_status(daebus_task *task, void *user)
{
    (void)user;
    daebus_app *app = daebus_task_app(task);
    daebus_ws *ws = daebus_app_websocket(app);
    daebus_rooms_stats rs;
    daebus_rooms_get_stats(&rs);

    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "service", daebus_app_service(app));
    cJSON_AddNumberToObject(m, "cpu", load1());
    cJSON_AddNumberToObject(m, "memory_mb", round(rss_mb() * 10) / 10);
    cJSON_AddNumberToObject(m, "active_users", (double)rs.users);
    cJSON_AddNumberToObject(m, "rooms", (double)rs.rooms);
    cJSON_AddNumberToObject(m, "connections", ws ? (double)daebus_ws_get_client_count(ws) : 0);
    cJSON_AddNumberToObject(m, "messages_total", (double)rs.messages_total);
    cJSON_AddNumberToObject(m, "timestamp", now_wall());

    int recipients = ws ? daebus_ws_broadcast_to_all(ws, m, "system_status") : 0;
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
    daebus_app_configure(app, argc, argv); /* exits on --help, bad values, unknown flags */
    double interval;
    if (status_interval(app, &interval) != 0) {
        daebus_app_destroy(app);
        return 2;
    }

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
        rc = daebus_ws_attach(daebus_ws_create(NULL, NULL), app);
    if (rc == 0)
        rc = daebus_bus_attach(daebus_bus_create(NULL, NULL), app);
    if (rc == 0)
        rc = daebus_scheduler_attach(sched, app);
    else
        daebus_scheduler_destroy(sched);
    if (rc == 0)
        rc =
            daebus_scheduler_add_task(sched, "system_status", interval, system_status, NULL, false);
    if (rc == 0)
        rc = daebus_app_register_blueprint(app, &daebus_rooms_bp);
    if (rc == 0)
        rc = daebus_app_register_blueprint(app, &daebus_admin_bp);
    if (rc == 0)
        rc = daebus_app_register_blueprint(app, &daebus_health_bp);

    int status = 1;
    if (rc == 0) {
        if (static_dir)
            daebus_log(DAEBUS_LOG_INFO, "chat", "chat page from %s; system_status every %g s",
                       static_dir, interval);
        status = daebus_app_run(app);
    } else {
        fprintf(stderr, "chat_service: set-up failed (%s); see the log line above\n",
                daebus_strerror(rc));
    }
    daebus_app_destroy(app);
    daebus_rooms_reset();
    return status;
}
