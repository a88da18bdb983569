/* common.h - helpers shared by the bus integration tests: a raw hiredis
 * client for foreign-client checks, wait-until loops, a test service. */
#ifndef BUS_TEST_COMMON_H
#define BUS_TEST_COMMON_H

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "daebus/daebus.h"
#include "testsupport.h"

/* Waits until cond is true or seconds pass. */
#define WAIT_UNTIL(cond, seconds)                                                                  \
    do {                                                                                           \
        double until_ = ts_now() + (seconds);                                                      \
        while (!(cond) && ts_now() < until_)                                                       \
            ts_sleep_ms(5);                                                                        \
    } while (0)

static inline redisContext *raw_connect(int port)
{
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (!c || c->err)
        return NULL;
    redisSetTimeout(c, tv);
    return c;
}

/* PUBLISH with a raw string; returns receivers or -1. */
static inline long raw_publish(int port, const char *channel, const char *data)
{
    redisContext *c = raw_connect(port);
    if (!c)
        return -1;
    redisReply *r = redisCommand(c, "PUBLISH %s %b", channel, data, strlen(data));
    long n = r && r->type == REDIS_REPLY_INTEGER ? (long)r->integer : -1;
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return n;
}

/* A subscribed raw context (confirmation consumed). */
static inline redisContext *raw_subscribe(int port, const char *channel)
{
    redisContext *c = raw_connect(port);
    if (!c)
        return NULL;
    redisReply *r = redisCommand(c, "SUBSCRIBE %s", channel);
    if (!r) {
        redisFree(c);
        return NULL;
    }
    freeReplyObject(r);
    return c;
}

/* Next message body on a subscribed context (malloc'd) or NULL on time-out. */
static inline char *raw_next(redisContext *c)
{
    void *v = NULL;
    if (redisGetReply(c, &v) != REDIS_OK || !v)
        return NULL;
    redisReply *r = v;
    char *out = NULL;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
        r->element[2]->type == REDIS_REPLY_STRING)
        out = strdup(r->element[2]->str);
    freeReplyObject(r);
    return out;
}

static inline daebus_app *start_app(const char *service, const char *url, int max_workers,
                                    const daebus_bus_options *bo, daebus_bus **bus_out)
{
    daebus_app_options o = DAEBUS_APP_OPTIONS_INIT;
    o.service = service;
    o.redis_url = url;
    o.no_signals = true;
    o.max_workers = max_workers;
    o.log_level = getenv("BUS_TEST_LOG") ? DAEBUS_LOG_DEBUG : DAEBUS_LOG_CRITICAL;
    o.shutdown_timeout = 2;
    daebus_app *app = daebus_app_create(&o, NULL);
    if (!app)
        return NULL;
    daebus_bus *bus = daebus_bus_create(bo, NULL);
    if (daebus_bus_attach(bus, app) != 0 || daebus_app_start(app) != 0) {
        daebus_app_destroy(app);
        return NULL;
    }
    if (bus_out)
        *bus_out = bus;
    return app;
}

static inline void stop_app(daebus_app *app)
{
    if (!app)
        return;
    daebus_app_stop(app);
    daebus_app_wait(app);
    daebus_app_destroy(app);
}

static inline int bus_connected(daebus_bus *bus)
{
    struct daebus_bus_stats st;
    daebus_bus_get_stats(bus, &st);
    return st.connected;
}

#endif
