/* once_service.c - a replica for the exactly-once tests (test_once*).
 *
 * Service "once_test" with the health blueprint (HTTP: /health, /metrics) and
 * a bus. Every handler run appends one line to $ONCE_LOG_DIR/<pid>.log (one
 * write() on an O_APPEND file: lines of concurrent workers never mix), so a
 * test counts the runs of each request across replicas:
 *   ACTION work {"id": X[, "sleep_ms": N]}  "a X"  replies {"id": X, "pid": P}
 *   LISTEN once_test.queue (.once)           "q X"  (the message's "id")
 *   LISTEN once_test.all                     "b X"
 * The heartbeat comes from ONCE_HEARTBEAT (seconds; default 0.5), the worker
 * pool from ONCE_WORKERS and ONCE_QUEUE (default 10 and 1024); the port and
 * Redis from --port and --redis. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "daebus/daebus.h"
#include "health/health.h"

static int log_fd = -1;

static void record(char kind, const cJSON *obj)
{
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(obj, "id"));
    char line[300];
    int n = snprintf(line, sizeof line, "%c %s\n", kind, id ? id : "?");
    if (log_fd >= 0 && n > 0 && (size_t)n < sizeof line && write(log_fd, line, (size_t)n) != n)
        fprintf(stderr, "once_service: log write failed\n");
}

ACTION(work, "work")
{
    (void)user;
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(payload, "sleep_ms");
    if (cJSON_IsNumber(ms) && ms->valueint > 0) {
        struct timespec ts = {ms->valueint / 1000, (long)(ms->valueint % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    record('a', payload);
    cJSON *out = cJSON_CreateObject();
    cJSON_AddItemToObject(out, "id",
                          cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(payload, "id"), 1));
    cJSON_AddNumberToObject(out, "pid", (double)getpid());
    return daebus_bus_reply_take(req, out);
}

LISTEN(queue, "once_test.queue", .once = true)
{
    (void)req, (void)user;
    record('q', message);
    return 0;
}

LISTEN(all, "once_test.all")
{
    (void)req, (void)user;
    record('b', message);
    return 0;
}

int main(int argc, char **argv)
{
    const char *dir = getenv("ONCE_LOG_DIR");
    char path[512];
    snprintf(path, sizeof path, "%s/%ld.log", dir ? dir : "/tmp", (long)getpid());
    log_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    daebus_app_options ao = DAEBUS_APP_OPTIONS_INIT;
    ao.service = "once_test";
    const char *workers = getenv("ONCE_WORKERS"), *queue = getenv("ONCE_QUEUE");
    ao.max_workers = workers ? atoi(workers) : 0;
    daebus_app *app = daebus_app_create(&ao, NULL);
    if (!app)
        return 1;
    daebus_app_register_blueprint(app, &daebus_health_bp);
    daebus_app_configure(app, argc, argv);
    daebus_http_attach(daebus_http_create(NULL, NULL), app);
    daebus_bus_options bo = DAEBUS_BUS_OPTIONS_INIT;
    const char *hb = getenv("ONCE_HEARTBEAT");
    bo.heartbeat = hb ? atof(hb) : 0.5;
    bo.max_queue = queue ? (size_t)atoi(queue) : 0;
    daebus_bus_attach(daebus_bus_create(&bo, NULL), app);
    int status = daebus_app_run(app);
    daebus_app_destroy(app);
    if (log_fd >= 0)
        close(log_fd);
    return status;
}
