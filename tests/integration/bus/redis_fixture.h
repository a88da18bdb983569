/* redis_fixture.h - the suite fixture of the tests of the Redis layer's
 * internals (test_redis_line.c, test_redis_readonly.c): a private
 * redis-server, its URL parsed, and a claim line on it. Included by one
 * source file each: it defines the suite's statics. */
#ifndef BUS_REDIS_FIXTURE_H
#define BUS_REDIS_FIXTURE_H

#include "redis_line.h"
#include "testsupport.h"

static ts_redis redis;
static daebus__redis_url url;

static int init(void)
{
    daebus_error e = {0};
    if (ts_redis_start(&redis, NULL) != 0)
        return -1;
    return daebus__redis_url_parse(redis.url, &url, &e);
}

static int cleanup(void)
{
    ts_redis_stop(&redis);
    return 0;
}

/* A claim line on the suite's Redis: one connection, 2 s time-outs. */
static inline daebus__redis_line *line_new(void)
{
    daebus__redis_pub_opts o = {&url, 1, 2.0, 2.0, 0.0, "test"};
    return daebus__redis_line_create(&o);
}

#endif
