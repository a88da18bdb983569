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
 * CHAT_STATIC_DIR).
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

typedef struct chat_config {
    double status_interval;
    const char *static_dir;
} chat_config;

static int parse_interval(const char *text, const char *what, double *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || !end || end == text || *end || !isfinite(v) || v <= 0 || v > 86400) {
        fprintf(stderr, "chat_service: %s: '%s' is not a number of seconds (0 < s <= 86400)\n",
                what, text);
        return -1;
    }
    *out = v;
    return 0;
}

/* Takes --status-interval and --static out of argv (the standard flags stay
 * for daebus_app_configure); reads CHAT_STATUS_INTERVAL / CHAT_STATIC_DIR.
 * Returns 0, or -1 after printing the problem. */
static int own_flags(int *argc, char **argv, chat_config *cfg)
{
    const char *env = getenv("CHAT_STATUS_INTERVAL");
    if (env && *env && parse_interval(env, "CHAT_STATUS_INTERVAL", &cfg->status_interval) != 0)
        return -1;
    env = getenv("CHAT_STATIC_DIR");
    if (env && *env)
        cfg->static_dir = env;
    int out = 1;
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
        int flag = 0;
        if (strncmp(a, "--status-interval", 17) == 0 && (a[17] == '\0' || a[17] == '='))
            flag = 1;
        else if (strncmp(a, "--static", 8) == 0 && (a[8] == '\0' || a[8] == '='))
            flag = 2;
        if (!flag) {
            if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
                printf("chat_service options besides the standard ones below:\n"
                       "  --status-interval SECONDS  system_status broadcast period (env "
                       "CHAT_STATUS_INTERVAL, default 60)\n"
                       "  --static DIR               directory of the chat page (env "
                       "CHAT_STATIC_DIR)\n\n");
            argv[out++] = argv[i];
            continue;
        }
        const char *eq = strchr(a, '=');
        if (eq)
            val = eq + 1;
        else if (i + 1 < *argc)
            val = argv[++i];
        if (!val) {
            fprintf(stderr, "chat_service: %s needs a value\n", a);
            return -1;
        }
        if (flag == 1 && parse_interval(val, "--status-interval", &cfg->status_interval) != 0)
            return -1;
        if (flag == 2)
            cfg->static_dir = val;
    }
    argv[out] = NULL;
    *argc = out;
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
    chat_config cfg = {60.0, NULL};
    if (own_flags(&argc, argv, &cfg) != 0)
        return 2;

    daebus_app_options o = DAEBUS_APP_OPTIONS_INIT;
    o.service = "chat_service";
    daebus_app *app = daebus_app_create(&o, NULL);
    if (!app)
        return 1;
    daebus_app_configure(app, argc, argv);

    char buf[PATH_MAX];
    const char *static_dir = find_static_dir(cfg.static_dir, buf, sizeof buf);
    if (!static_dir)
        daebus_log(DAEBUS_LOG_WARNING, "chat",
                   "chat page not found (set CHAT_STATIC_DIR or --static); serving the API only");
    else if (!has_index(static_dir))
        daebus_log(DAEBUS_LOG_WARNING, "chat", "%s has no index.html", static_dir);

    daebus_error err = {0};
    daebus_http_options ho = DAEBUS_HTTP_OPTIONS_INIT;
    ho.static_dir = static_dir;
    daebus_http *http = daebus_http_create(&ho, &err);
    daebus_ws *ws = http ? daebus_ws_create(NULL, &err) : NULL;
    daebus_bus *bus = ws ? daebus_bus_create(NULL, &err) : NULL;
    daebus_scheduler *sched = bus ? daebus_scheduler_create(NULL, &err) : NULL;
    int rc = sched ? 0 : -1;
    /* Attach in order; after a failed attach the component is still ours. */
    if (rc == 0 && (rc = daebus_http_attach(http, app)) == 0)
        http = NULL;
    if (rc == 0 && (rc = daebus_ws_attach(ws, app)) == 0)
        ws = NULL;
    if (rc == 0 && (rc = daebus_bus_attach(bus, app)) == 0)
        bus = NULL;
    if (rc == 0 && (rc = daebus_scheduler_attach(sched, app)) == 0) {
        rc = daebus_scheduler_add_task(sched, "system_status", cfg.status_interval, system_status,
                                       NULL, false);
        sched = NULL;
    }
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
                       static_dir, cfg.status_interval);
        status = daebus_app_run(app);
    } else {
        fprintf(stderr, "chat_service: set-up failed: %s\n",
                err.message[0] ? err.message : daebus_strerror(rc));
    }
    daebus_scheduler_destroy(sched);
    daebus_bus_destroy(bus);
    daebus_ws_destroy(ws);
    daebus_http_destroy(http);
    daebus_app_destroy(app);
    daebus_rooms_reset();
    return status;
}
