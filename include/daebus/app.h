/* daebus/app.h - the app: owns components, merges blueprints, runs the service.
 *
 *   daebus_app_options o = DAEBUS_APP_OPTIONS_INIT;
 *   o.service = "chat_service";
 *   daebus_app *app = daebus_app_create(&o, NULL);
 *   daebus_app_configure(app, argc, argv);      // env + --flags (exits on --help/bad values)
 *   daebus_http_attach(daebus_http_create(NULL, NULL), app); // takes it on every path
 *   int status = daebus_app_run(app);           // blocks until SIGINT/SIGTERM or stop
 *   daebus_app_destroy(app);
 *   return status;
 *
 * Components (http, websocket, bus, scheduler) are attached once each;
 * websocket needs http attached first. They start in attach order and stop in
 * reverse order, except the bus, which stops last (what stops before it -
 * WebSocket clients leaving, their disconnect handlers - may still use Redis
 * through it). daebus_app_run() returns the process exit status: 0 after a
 * clean stop, 1 when start-up failed.
 *
 * Thread: the app's owning thread.
 * The exceptions are daebus_app_stop() and the getters, which any thread
 * (handlers included) may call while the app runs.
 */
#ifndef DAEBUS_APP_H
#define DAEBUS_APP_H

#include <stdbool.h>
#include "daebus/blueprint.h"
#include "daebus/config.h"
#include "daebus/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct daebus_http daebus_http;
typedef struct daebus_ws daebus_ws;
typedef struct daebus_bus daebus_bus;
typedef struct daebus_scheduler daebus_scheduler;

/* The components' statistics structs (daebus_http_stats, daebus_bus_stats,
 * daebus_ws_stats, daebus_scheduler_stats, daebus_task_stats) are generated
 * from one list each, DAEBUS_<NAME>_STATS(X, F), so that the health
 * blueprint prints its Prometheus lines from the same list:
 *   X(type, field, metric, labels, kind, help) a field printed as the metric
 *     `metric{labels} value` ("" labels: none; consecutive entries with the
 *     same metric form one family), kind "counter" or "gauge";
 *   F(type, field) a field that is not printed.
 * These two expand an entry into a struct member. */
#define DAEBUS_STATS_FIELD(type, field, metric, labels, kind, help) type field;
#define DAEBUS_STATS_PLAIN_FIELD(type, field)                       type field;

/* Zero means default in every field: "daebus_app_options o = {0}" and
 * DAEBUS_APP_OPTIONS_INIT are the same. */
typedef struct daebus_app_options {
    const char *service;     /* service name = bus channel (NULL: "daebus_service") */
    const char *redis_url;   /* NULL: "redis://127.0.0.1:6379" */
    int http_port;           /* 0 = the HTTP component's own option (8080 by default);
                                DAEBUS_PORT_ANY = any free port; else 1..65535 */
    int log_level;           /* daebus_log_level; 0 (DAEBUS_LOG_DEFAULT) = info */
    int max_workers;         /* bus worker pool size; <= 0 = 10 */
    double shutdown_timeout; /* seconds the graceful shutdown may take; <= 0 = 5 */
    bool no_signals;         /* true: run() does not handle SIGINT/SIGTERM (tests, embedding) */
} daebus_app_options;

#define DAEBUS_APP_OPTIONS_INIT                                                                    \
    {                                                                                              \
        NULL, NULL, 0, 0, 0, 0.0, false                                                            \
    }

/* A command-line option and environment variable of the service's own,
 * parsed by daebus_app_configure() with the standard ones and listed in
 * --help. Its value is text; read it with daebus_app_option_value(). */
typedef struct daebus_app_option {
    const char *name;          /* flag without the dashes: "status-interval" */
    const char *env;           /* environment variable, e.g. "CHAT_STATUS_INTERVAL"; NULL = none */
    const char *default_value; /* NULL = no value unless given */
    const char *help;          /* one line for --help */
    const char *metavar;       /* value placeholder in --help; NULL = "VALUE" */
} daebus_app_option;

/* Creates an app and registers daebus_default_blueprint into it.
 * Ownership: option strings are copied. Returns: NULL on failure (err filled).
 * Thread: before the app runs. */
DAEBUS_API daebus_app *daebus_app_create(const daebus_app_options *opts, daebus_error *err);

/* Stops the app if running, destroys its components and frees it. Accepts NULL.
 * Not while run() is executing on another thread (join it first).
 * Thread: the app's owning thread. */
DAEBUS_API void daebus_app_destroy(daebus_app *app);

/* Declares a service option (see daebus_app_option). Precedence:
 * default_value < environment < command line. Ownership: the strings are copied.
 * Returns: 0; DAEBUS_EINVAL (no name, a name that is not letters, digits and
 * '-', or the name of a standard flag); DAEBUS_EEXIST (declared already);
 * DAEBUS_ESTATE (after configure or run); DAEBUS_ENOMEM. Each failure is logged.
 * Call it before daebus_app_configure().
 * Thread: before the app runs. */
DAEBUS_API int daebus_app_add_option(daebus_app *app, const daebus_app_option *opt);

/* Returns: the value of a declared service option (command line, else
 * environment, else default_value), or NULL if it has none or was not declared.
 * Ownership: owned by app, valid until it is destroyed or configured again.
 * Call it after configure. Thread: callable from any thread. */
DAEBUS_API const char *daebus_app_option_value(const daebus_app *app, const char *name);

/* Applies the environment then argv (config.h) over the options given at
 * creation, the service's own options included. On --help or --version
 * prints to stdout and exits 0; on a bad value or an unknown option prints
 * the message ("unknown option '--bogus'") and a hint to use --help to
 * stderr and exits 2.
 * Thread: before the app runs. */
DAEBUS_API void daebus_app_configure(daebus_app *app, int argc, char **argv);

/* The same, without exiting: Returns 0, DAEBUS_CONFIG_HELP,
 * DAEBUS_CONFIG_VERSION or DAEBUS_EINVAL (err filled). */
DAEBUS_API int daebus_app_configure_args(daebus_app *app, int argc, char **argv, daebus_error *err);

/* Merges bp into the app: its handlers join the app's tables, routes get bp's
 * prefix. A key already present is replaced ("later one wins") with a warning
 * naming both registration sites; routes whose patterns differ only in their
 * parameter names ("/a/<x>" and "/a/<y>") are the same key. A route pattern
 * that cannot be parsed is refused with a log line saying why. A blueprint
 * whose handlers were defined with the macros but that no call registers is
 * named in a warning when the app starts. Ownership: bp is borrowed and must outlive
 * the app. Returns: 0, DAEBUS_EINVAL, DAEBUS_ESTATE (app running), DAEBUS_ENOMEM.
 * Thread: before the app runs. */
DAEBUS_API int daebus_app_register_blueprint(daebus_app *app, daebus_blueprint *bp);

/* Runs the service: starts components in attach order, runs ON_START hooks,
 * logs readiness, blocks until SIGINT/SIGTERM (unless no_signals) or
 * daebus_app_stop(), then stops components in reverse order (the bus last).
 * A second signal during shutdown exits the process at once (status 1).
 * Returns: 0 after a clean stop; 1 if start-up failed.
 * Call it once. Thread: the app's owning thread. */
DAEBUS_API int daebus_app_run(daebus_app *app);

/* Starts without blocking (as run() does before it waits). Returns 0 or a
 * negative code; on failure everything started is stopped again.
 * Pair with daebus_app_stop() + daebus_app_wait().
 * Thread: the app's owning thread. */
DAEBUS_API int daebus_app_start(daebus_app *app);

/* Blocks until stop is requested, then shuts down. Returns the exit status. */
DAEBUS_API int daebus_app_wait(daebus_app *app);

/* Asks a running app to shut down; returns at once. Safe from any thread,
 * including handlers. Not async-signal-safe. */
DAEBUS_API void daebus_app_stop(daebus_app *app);

/* Returns: true between a successful start and the beginning of shutdown. */
DAEBUS_API bool daebus_app_is_running(const daebus_app *app);

/* Returns: the attached component, or NULL. Thread: callable from any thread. */
DAEBUS_API daebus_http *daebus_app_http(const daebus_app *app);
DAEBUS_API daebus_ws *daebus_app_websocket(const daebus_app *app);
DAEBUS_API daebus_bus *daebus_app_bus(const daebus_app *app);
DAEBUS_API daebus_scheduler *daebus_app_scheduler(const daebus_app *app);

/* Effective configuration after configure(). Ownership: strings owned by app. */
DAEBUS_API const char *daebus_app_service(const daebus_app *app);
DAEBUS_API const char *daebus_app_redis_url(const daebus_app *app);
/* 0 = not configured (the HTTP component's own option applies), DAEBUS_PORT_ANY
 * = any free port, else the port. */
DAEBUS_API int daebus_app_http_port(const daebus_app *app);
DAEBUS_API int daebus_app_max_workers(const daebus_app *app);
DAEBUS_API double daebus_app_shutdown_timeout(const daebus_app *app);

/* ---- instances (docs/replicas.md) ---- */

/* Returns: this app's instance id, made when the app was created and stable
 * for its life: "<host>-<pid>-<8 hex digits>" (host: the host name, characters
 * outside [A-Za-z0-9._] replaced by '_', at most 64 of them), at most 95 bytes.
 * With a bus attached the app announces itself under it in Redis.
 * Ownership: owned by app. Thread: callable from any thread. */
DAEBUS_API const char *daebus_app_instance_id(const daebus_app *app);

/* The live instances of this app's service as this instance last saw them
 * (refreshed from Redis twice per bus heartbeat): an array of objects {"id",
 * "host", "pid", "started_at", "last_seen" (Unix seconds, Redis's clock),
 * "http_port" (0: none), "heartbeat" (seconds), "self" (true for this app),
 * "stale" (true while Redis cannot be reached: the last view read is kept)}.
 * Returns: the number of entries (>= 0) with *out set (0, an empty array, once
 * the bus stopped), DAEBUS_ESTATE when the app has no bus or its bus never
 * started (*out NULL), DAEBUS_EINVAL, or DAEBUS_ENOMEM.
 * Ownership: the caller frees *out with cJSON_Delete.
 * Thread: callable from any thread. */
DAEBUS_API int daebus_app_instances(daebus_app *app, cJSON **out);

/* Number of merged registrations of kind (daebus_handler_kind). */
DAEBUS_API size_t daebus_app_handler_count(const daebus_app *app, int kind);

/* Looks a merged registration up by kind and key (key NULL for the keyless
 * kinds; for routes key is the full path pattern and method one DAEBUS_GET-style
 * bit, 0 for other kinds). Returns: the descriptor or NULL. Ownership: borrowed. */
DAEBUS_API const daebus_handler_desc *daebus_app_find_handler(const daebus_app *app, int kind,
                                                              const char *key, unsigned method);

#ifdef __cplusplus
}
#endif
#endif
