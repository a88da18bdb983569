/* durable_common.h - helpers of the durable-action tests: requests added to
 * the stream with a raw hiredis client (what a durable caller sends, in the
 * wire format of docs/protocol.md "Durable actions"), integer queries, and a
 * reply channel read with a time-out. */
#ifndef BUS_DURABLE_COMMON_H
#define BUS_DURABLE_COMMON_H

#include <stdarg.h>
#include <sys/time.h>
#include "common.h"

/* Wall-clock ms (the deadline field's clock). */
static inline long long dur_wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* XADD daebus:<svc>:requests * req {...} deadline <ms from now> (deadline_ms
 * may be negative: already passed). Returns 0 or -1. */
static inline int dur_add(redisContext *c, const char *svc, const char *action,
                          const char *request_id, const char *reply_to, long long deadline_ms)
{
    char req[512], key[128], deadline[32];
    snprintf(req, sizeof req,
             "{\"action\":\"%s\",\"payload\":{\"id\":\"%s\"},\"reply_to\":\"%s\","
             "\"request_id\":\"%s\",\"service\":\"%s\"}",
             action, request_id, reply_to, request_id, svc);
    snprintf(key, sizeof key, "daebus:%s:requests", svc);
    snprintf(deadline, sizeof deadline, "%lld", dur_wall_ms() + deadline_ms);
    redisReply *r = redisCommand(c, "XADD %s * req %s deadline %s", key, req, deadline);
    int ok = r && r->type == REDIS_REPLY_STRING ? 0 : -1;
    if (r)
        freeReplyObject(r);
    return ok;
}

/* An integer reply of a command (printf-style), or -1. */
static inline long long dur_int(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    long long n = -1;
    if (r && r->type == REDIS_REPLY_INTEGER)
        n = r->integer;
    else if (r && r->type == REDIS_REPLY_STRING)
        n = strtoll(r->str, NULL, 10);
    else if (r && r->type == REDIS_REPLY_NIL)
        n = 0;
    if (r)
        freeReplyObject(r);
    return n;
}

/* Pending entries of the group (XPENDING summary), or -1. */
static inline long long dur_pending(redisContext *c, const char *svc)
{
    redisReply *r = redisCommand(c, "XPENDING daebus:%s:requests daebus", svc);
    long long n = -1;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
        r->element[0]->type == REDIS_REPLY_INTEGER)
        n = r->element[0]->integer;
    if (r)
        freeReplyObject(r);
    return n;
}

/* A subscriber on a reply channel whose reads time out after seconds. */
static inline redisContext *dur_listen(int port, const char *channel, int seconds)
{
    redisContext *c = raw_subscribe(port, channel);
    if (c) {
        struct timeval tv = {seconds, 0};
        redisSetTimeout(c, tv);
    }
    return c;
}

/* The suite's Redis and a raw client on it (init of a CUnit suite). */
static inline int dur_suite_init(ts_redis *redis, redisContext **rc)
{
    if (ts_redis_start(redis, NULL) != 0)
        return -1;
    *rc = raw_connect(redis->port);
    return *rc ? 0 : -1;
}

static inline int dur_suite_cleanup(ts_redis *redis, redisContext *rc)
{
    redisFree(rc);
    ts_redis_stop(redis);
    return 0;
}

/* The next final reply on l (progress skipped), malloc'd, or NULL. */
static inline char *dur_final(redisContext *l)
{
    for (;;) {
        char *m = raw_next(l);
        if (!m || !strstr(m, "\"final\":false"))
            return m;
        free(m);
    }
}

/* Whether the next final reply on l contains want. */
static inline bool dur_final_has(redisContext *l, const char *want)
{
    char *m = dur_final(l);
    bool hit = m && strstr(m, want) != NULL;
    free(m);
    return hit;
}

#endif
