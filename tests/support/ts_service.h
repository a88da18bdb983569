/* ts_service.h - one fixture for every in-process test service.
 *
 * Builds an app with the components a test asks for (HTTP on 127.0.0.1 at a
 * free port, WebSocket, bus, scheduler) and its blueprints, starts it with
 * daebus_app_start() on the calling thread (the test thread is the app's
 * owning thread; the components run their own threads) and waits until it is
 * ready: HTTP bound (port known) and, if asked, the bus subscribed.
 *
 *   ts_service svc;
 *   ts_service_options o = {.service = "svc", .redis_url = redis.url, .http = true,
 *                           .ws = true, .bus = true, .wait_bus = 5};
 *   if (ts_service_start(&svc, &o) != 0) return 1;
 *   ... ts_http(svc.port, ...), daebus_bus_broadcast(svc.bus, ...) ...
 *   ts_service_stop(&svc);
 *
 * A test that must do something between attach and start (middleware, tasks,
 * internal options) calls ts_service_create(), does it, then
 * ts_service_launch(). A service meant for daebus_app_run() (a child process
 * that stops on SIGTERM) is built with ts_service_create() and .signals.
 *
 * DAEBUS_TEST_LOG set in the environment switches every fixture service to
 * debug logs.
 */
#ifndef DAEBUS_TS_SERVICE_H
#define DAEBUS_TS_SERVICE_H

#include <stdbool.h>
#include "daebus/daebus.h"
#include "daebus/http.h"
#include "daebus/websocket.h"

#define TS_MAX_BLUEPRINTS 8

/* Zero means default in every field. */
typedef struct ts_service_options {
    const char *service;     /* NULL: "ts_service" */
    const char *redis_url;   /* NULL: the app's default (only matters with .bus) */
    int log_level;           /* daebus_log_level; 0 = the app's default (info) */
    int max_workers;         /* bus worker pool; 0 = the app's default */
    double shutdown_timeout; /* 0 = the app's default */
    bool signals;            /* true: daebus_app_run() handles SIGINT/SIGTERM */

    bool http;                               /* attach HTTP (implied by .ws) */
    const daebus_http_options *http_options; /* NULL = defaults; .port and .bind_address
                                                are always the fixture's */
    int http_port;                           /* 0 = any free port */

    bool ws;                             /* attach WebSocket (after HTTP) */
    const daebus_ws_options *ws_options; /* NULL = defaults */

    bool bus;                              /* attach the bus */
    const daebus_bus_options *bus_options; /* NULL = defaults */
    double wait_bus;                       /* > 0: launch waits up to this many seconds
                                              for the bus to connect, failing otherwise */

    bool sched;                                    /* attach the scheduler */
    const daebus_scheduler_options *sched_options; /* NULL = defaults */

    daebus_blueprint *blueprints[TS_MAX_BLUEPRINTS]; /* registered in order; NULL ends */
} ts_service_options;

typedef struct ts_service {
    daebus_app *app;
    daebus_http *http;
    daebus_ws *ws;
    daebus_bus *bus;
    daebus_scheduler *sched;
    int port; /* the bound HTTP port once launched; 0 without HTTP */
    double wait_bus;
} ts_service;

/* Creates the app, registers the blueprints and attaches the components.
 * Returns 0, or -1 with everything freed and s zeroed (message on stderr). */
int ts_service_create(ts_service *s, const ts_service_options *o);
/* Starts a created service and waits until it is ready. Returns 0, or -1
 * with everything freed and s zeroed. */
int ts_service_launch(ts_service *s);
/* ts_service_create() then ts_service_launch(). */
int ts_service_start(ts_service *s, const ts_service_options *o);
/* Stops (if started), waits and destroys; s is zeroed. Accepts a zeroed s. */
void ts_service_stop(ts_service *s);

/* Stops, waits for and destroys an app (accepts NULL). */
void ts_app_stop(daebus_app *app);
/* 1 while the bus holds its subscription, else 0 (NULL: 0). */
int ts_bus_connected(daebus_bus *bus);

#endif
