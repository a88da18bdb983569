/* common.h - helpers shared by the bus integration tests: a raw hiredis
 * client for foreign-client checks; the service comes from ts_service.h. */
#ifndef BUS_TEST_COMMON_H
#define BUS_TEST_COMMON_H

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include "daebus/daebus.h"
#include "testsupport.h"

static inline redisContext *raw_connect(int port)
{
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (!c || c->err) {
        if (c)
            redisFree(c);
        return NULL;
    }
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

/* Runs a shell command; captures stdout; returns the exit status (-1 on failure). */
static inline int run(const char *cmd, char *out, size_t cap)
{
    FILE *f = popen(cmd, "r");
    if (!f)
        return -1;
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = '\0';
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* An app with the bus only (the shared fixture); the test waits for the bus. */
static inline daebus_app *start_app(const char *service, const char *url, int max_workers,
                                    const daebus_bus_options *bo, daebus_bus **bus_out)
{
    ts_service svc;
    ts_service_options o = {.service = service,
                            .redis_url = url,
                            .max_workers = max_workers,
                            .log_level = DAEBUS_LOG_CRITICAL,
                            .shutdown_timeout = 2,
                            .bus = true,
                            .bus_options = bo};
    if (ts_service_start(&svc, &o) != 0)
        return NULL;
    if (bus_out)
        *bus_out = svc.bus;
    return svc.app;
}

#endif
