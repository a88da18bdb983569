/* ts_service.c - the in-process test service fixture (ts_service.h). */
#include "ts_service.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "testsupport.h"

static daebus_app *create_app(const ts_service_options *o)
{
    daebus_app_options ao = DAEBUS_APP_OPTIONS_INIT;
    ao.service = o->service ? o->service : "ts_service";
    ao.redis_url = o->redis_url;
    ao.no_signals = !o->signals;
    ao.log_level = getenv("DAEBUS_TEST_LOG") ? DAEBUS_LOG_DEBUG : o->log_level;
    ao.max_workers = o->max_workers;
    ao.shutdown_timeout = o->shutdown_timeout;
    return daebus_app_create(&ao, NULL);
}

/* Each attach takes its component on every path (frees it on failure). */
static int attach_http(ts_service *s, const ts_service_options *o)
{
    daebus_http_options ho = DAEBUS_HTTP_OPTIONS_INIT;
    if (o->http_options)
        ho = *o->http_options;
    ho.port = o->http_port > 0 ? o->http_port : DAEBUS_HTTP_PORT_ANY;
    ho.bind_address = "127.0.0.1";
    s->http = daebus_http_create(&ho, NULL);
    return s->http && daebus_http_attach(s->http, s->app) == 0 ? 0 : -1;
}

static int attach_components(ts_service *s, const ts_service_options *o)
{
    if ((o->http || o->ws) && attach_http(s, o) != 0)
        return -1;
    if (o->ws) {
        s->ws = daebus_ws_create(o->ws_options, NULL);
        if (!s->ws || daebus_ws_attach(s->ws, s->app) != 0)
            return -1;
    }
    if (o->bus) {
        s->bus = daebus_bus_create(o->bus_options, NULL);
        if (!s->bus || daebus_bus_attach(s->bus, s->app) != 0)
            return -1;
    }
    if (o->sched) {
        s->sched = daebus_scheduler_create(o->sched_options, NULL);
        if (!s->sched || daebus_scheduler_attach(s->sched, s->app) != 0)
            return -1;
    }
    return 0;
}

static int register_blueprints(ts_service *s, const ts_service_options *o)
{
    for (int i = 0; i < TS_MAX_BLUEPRINTS && o->blueprints[i]; i++)
        if (daebus_app_register_blueprint(s->app, o->blueprints[i]) != 0)
            return -1;
    return 0;
}

int ts_service_create(ts_service *s, const ts_service_options *o)
{
    memset(s, 0, sizeof *s);
    s->wait_bus = o->wait_bus;
    s->app = create_app(o);
    if (!s->app || register_blueprints(s, o) != 0 || attach_components(s, o) != 0) {
        fprintf(stderr, "ts_service: cannot build service \"%s\"\n",
                o->service ? o->service : "ts_service");
        ts_service_stop(s);
        return -1;
    }
    return 0;
}

int ts_service_launch(ts_service *s)
{
    if (!s->app || daebus_app_start(s->app) != 0) {
        fprintf(stderr, "ts_service: the app did not start\n");
        ts_service_stop(s);
        return -1;
    }
    if (s->http)
        s->port = daebus_http_port(s->http);
    if (s->bus && s->wait_bus > 0) {
        TS_WAIT_UNTIL(ts_bus_connected(s->bus), s->wait_bus);
        if (!ts_bus_connected(s->bus)) {
            fprintf(stderr, "ts_service: the bus did not connect within %.1f s\n", s->wait_bus);
            ts_service_stop(s);
            return -1;
        }
    }
    if (s->http && s->port <= 0) {
        ts_service_stop(s);
        return -1;
    }
    return 0;
}

int ts_service_start(ts_service *s, const ts_service_options *o)
{
    if (ts_service_create(s, o) != 0)
        return -1;
    return ts_service_launch(s);
}

void ts_app_stop(daebus_app *app)
{
    if (!app)
        return;
    daebus_app_stop(app);
    daebus_app_wait(app);
    daebus_app_destroy(app);
}

void ts_service_stop(ts_service *s)
{
    ts_app_stop(s->app);
    memset(s, 0, sizeof *s);
}

int ts_bus_connected(daebus_bus *bus)
{
    if (!bus)
        return 0;
    struct daebus_bus_stats st = {0};
    daebus_bus_get_stats(bus, &st);
    return st.connected ? 1 : 0;
}
