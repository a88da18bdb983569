/* The sweep of durable actions (framework/bus/bus_durable_gc.c) against a
 * real redis-server, through a real bus's publisher pool, on streams of its
 * own (no replica reads them): what it deletes and what it must keep.
 *   - consumers: deleted only with nothing pending and idle past the bound,
 *     never the sweeping one; one holding an entry is kept however idle;
 *   - trim: acknowledged entries left undeleted go, never one pending or not
 *     yet delivered, and nothing when the stream has another group;
 *   - a key that is no stream, a missing key, a stream without the group:
 *     nothing done, no error;
 *   - the done records' TTL option. */
#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bus_durable_gc.h"
#include "testsupport.h"

static ts_redis redis;
static ts_service svc;
static redisContext *rc;

static long long cmd_int(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc, fmt, ap);
    va_end(ap);
    long long v = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    if (r)
        freeReplyObject(r);
    return v;
}

/* The id of the entry consumer reads next (XREADGROUP COUNT 1), in id. */
static void read_one(const char *key, const char *consumer, char *id, size_t len)
{
    redisReply *r =
        redisCommand(rc, "XREADGROUP GROUP daebus %s COUNT 1 STREAMS %s >", consumer, key);
    id[0] = 0;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
        r->element[0]->element[1]->elements == 1)
        snprintf(id, len, "%s", r->element[0]->element[1]->element[0]->element[0]->str);
    if (r)
        freeReplyObject(r);
}

/* Whether consumer is in the group of key. */
static bool has_consumer(const char *key, const char *consumer)
{
    redisReply *r = redisCommand(rc, "XINFO CONSUMERS %s daebus", key);
    bool yes = false;
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++)
        if (strcmp(r->element[i]->element[1]->str, consumer) == 0)
            yes = true;
    if (r)
        freeReplyObject(r);
    return yes;
}

static int sweep(const char *key, long long idle_ms, long long *deleted, long long *trimmed)
{
    *deleted = *trimmed = -1;
    return daebus__durable_gc_sweep(svc.bus, key, "me", idle_ms, deleted, trimmed);
}

static void test_consumers_and_trim(void)
{
    const char *k = "gc:s1";
    char e1[48], e2[48], e3[48];
    CU_ASSERT_EQUAL(cmd_int("DEL %s", k), 0);
    redisReply *r = redisCommand(rc, "XGROUP CREATE %s daebus 0 MKSTREAM", k);
    freeReplyObject(r);
    for (int i = 0; i < 3; i++)
        freeReplyObject(redisCommand(rc, "XADD %s * req {}", k));
    read_one(k, "holder", e1, sizeof e1); /* pending, its replica gone */
    read_one(k, "leaker", e2, sizeof e2); /* acknowledged, XDEL lost */
    CU_ASSERT_EQUAL(cmd_int("XACK %s daebus %s", k, e2), 1);
    CU_ASSERT_EQUAL(cmd_int("XGROUP CREATECONSUMER %s daebus empty", k), 1);
    CU_ASSERT_EQUAL(cmd_int("XGROUP CREATECONSUMER %s daebus me", k), 1);
    ts_sleep_ms(250);

    long long del, trim;
    /* Not idle long enough: nothing. */
    CU_ASSERT_EQUAL(sweep(k, 60000, &del, &trim), 0);
    CU_ASSERT_EQUAL(del, 0);
    CU_ASSERT_EQUAL(trim, 0); /* e2 is after e1, pending */
    /* Idle: the empty ones go, the holder (pending 1) and the sweeper stay. */
    CU_ASSERT_EQUAL(sweep(k, 200, &del, &trim), 0);
    CU_ASSERT_EQUAL(del, 2);
    CU_ASSERT(has_consumer(k, "holder"));
    CU_ASSERT(has_consumer(k, "me"));
    CU_ASSERT(!has_consumer(k, "leaker"));
    CU_ASSERT(!has_consumer(k, "empty"));
    CU_ASSERT_EQUAL(cmd_int("XLEN %s", k), 3);

    /* The holder's entry completes (XACK + XDEL): e2 is trimmed, the third
     * entry (never delivered) stays; the holder, now empty, goes. */
    CU_ASSERT_EQUAL(cmd_int("XACK %s daebus %s", k, e1), 1);
    CU_ASSERT_EQUAL(cmd_int("XDEL %s %s", k, e1), 1);
    ts_sleep_ms(250);
    CU_ASSERT_EQUAL(sweep(k, 200, &del, &trim), 0);
    CU_ASSERT_EQUAL(del, 1);
    CU_ASSERT_EQUAL(trim, 1);
    CU_ASSERT_EQUAL(cmd_int("XLEN %s", k), 1);
    CU_ASSERT(has_consumer(k, "me"));

    /* Another group on the stream: no trim (its entries are not ours to judge). */
    r = redisCommand(rc, "XGROUP CREATE %s other 0", k);
    freeReplyObject(r);
    read_one(k, "late", e3, sizeof e3);
    CU_ASSERT_EQUAL(cmd_int("XACK %s daebus %s", k, e3), 1);
    CU_ASSERT_EQUAL(sweep(k, 60000, &del, &trim), 0);
    CU_ASSERT_EQUAL(trim, 0);
    CU_ASSERT_EQUAL(cmd_int("XLEN %s", k), 1);
    CU_ASSERT_EQUAL(cmd_int("XGROUP DESTROY %s other", k), 1);
    CU_ASSERT_EQUAL(sweep(k, 60000, &del, &trim), 0);
    CU_ASSERT_EQUAL(trim, 1);
    CU_ASSERT_EQUAL(cmd_int("XLEN %s", k), 0);
}

static void test_nothing_to_sweep(void)
{
    long long del, trim;
    CU_ASSERT_EQUAL(sweep("gc:missing", 0, &del, &trim), 0);
    CU_ASSERT(del == 0 && trim == 0);
    freeReplyObject(redisCommand(rc, "SET gc:string x"));
    CU_ASSERT_EQUAL(sweep("gc:string", 0, &del, &trim), 0);
    CU_ASSERT(del == 0 && trim == 0);
    freeReplyObject(redisCommand(rc, "XADD gc:nogroup * req {}"));
    CU_ASSERT_EQUAL(sweep("gc:nogroup", 0, &del, &trim), 0);
    CU_ASSERT(del == 0 && trim == 0);
    CU_ASSERT_EQUAL(cmd_int("XLEN gc:nogroup"), 1);
}

static void test_done_ttl(void)
{
    CU_ASSERT_EQUAL(daebus__durable_done_ttl(svc.bus, 3600), 3600); /* option 0 */
    daebus_bus_options o = DAEBUS_BUS_OPTIONS_INIT;
    o.durable_done_ttl = 1.2;
    daebus_bus *b = daebus_bus_create(&o, NULL);
    CU_ASSERT_FATAL(b != NULL);
    CU_ASSERT_EQUAL(daebus__durable_done_ttl(b, 3600), 2); /* rounded up */
    daebus_bus_destroy(b);
}

static int init(void)
{
    if (ts_redis_start(&redis, NULL) != 0)
        return -1;
    ts_service_options o = {.service = "ts_gc",
                            .redis_url = redis.url,
                            .bus = true,
                            .wait_bus = 5,
                            .log_level = DAEBUS_LOG_ERROR};
    if (ts_service_start(&svc, &o) != 0)
        return -1;
    struct timeval tv = {5, 0};
    rc = redisConnectWithTimeout("127.0.0.1", redis.port, tv);
    return rc && !rc->err ? 0 : -1;
}

static int cleanup(void)
{
    if (rc)
        redisFree(rc);
    ts_service_stop(&svc);
    ts_redis_stop(&redis);
    return 0;
}

int main(void)
{
    daebus_log_set_level(DAEBUS_LOG_ERROR);
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("durable sweep", init, cleanup);
    CU_add_test(s, "consumers deleted only when empty and idle; trim", test_consumers_and_trim);
    CU_add_test(s, "no stream, no group: nothing", test_nothing_to_sweep);
    CU_add_test(s, "done records' TTL", test_done_ttl);
    return ts_run_cunit();
}
