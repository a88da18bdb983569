/* Durable actions: the reader checks a batch of entries in one round trip
 * (framework/bus/bus_durable_batch.c). A service of 32 workers, in this
 * process, reads a batch that Redis already holds:
 *   - 20 fresh requests: all answered, attempt 1, with no XPENDING at all
 *     (an entry fresh from XREADGROUP ... > was delivered once);
 *   - 20 requests already done (their done records exist) and 10 expired:
 *     none runs; all 30 are acknowledged and deleted by ONE XACK and ONE
 *     XDEL, and the 20 EXISTS of the done records reach Redis in one write
 *     (Redis's read events stay far below one per command).
 */
#include <unistd.h>
#include "durable_common.h"

#define N 20

static ts_redis redis;
static redisContext *rc;
static ts_service svc;

ACTION(dur_batch_work, "work")
{
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(payload, "id"));
    char key[160];
    snprintf(key, sizeof key, "test:runs:%s", id ? id : "?");
    const char *argv[] = {"INCR", key};
    daebus_bus_redis(daebus_bus_request_bus(req), 2, argv, NULL, NULL);
    cJSON *out = cJSON_CreateObject();
    cJSON_AddNumberToObject(out, "attempt", daebus_bus_request_attempt(req));
    return daebus_bus_reply_take(req, out);
}

/* A field of INFO <section> ("name:value" or "name:calls=N,..."), or -1. */
static long long info_field(const char *section, const char *name)
{
    redisReply *r = redisCommand(rc, "INFO %s", section);
    long long n = -1;
    char pat[96];
    snprintf(pat, sizeof pat, "\r\n%s:", name);
    const char *p = r && r->type == REDIS_REPLY_STRING ? strstr(r->str, pat) : NULL;
    if (p) {
        p += strlen(pat);
        if (strncmp(p, "calls=", 6) == 0)
            p += 6;
        n = strtoll(p, NULL, 10);
    }
    if (r)
        freeReplyObject(r);
    return n;
}

static long long calls(const char *cmd)
{
    char name[64];
    snprintf(name, sizeof name, "cmdstat_%s", cmd);
    long long n = info_field("commandstats", name);
    return n < 0 ? 0 : n; /* never called: no line */
}

/* Adds the entries of ids [from, from+n) in one pipelined write. */
static void add_many(const char *prefix, int from, int n, long long deadline_ms)
{
    for (int i = from; i < from + n; i++) {
        char req[400];
        snprintf(req, sizeof req,
                 "{\"action\":\"work\",\"payload\":{\"id\":\"%s%d\"},\"reply_to\":\"db:r\","
                 "\"request_id\":\"%s%d\",\"service\":\"db\"}",
                 prefix, i, prefix, i);
        redisAppendCommand(rc, "XADD daebus:db:requests * req %s deadline %lld", req,
                           dur_wall_ms() + deadline_ms);
    }
    for (int i = 0; i < n; i++) {
        void *r = NULL;
        CU_ASSERT_EQUAL(redisGetReply(rc, &r), REDIS_OK);
        freeReplyObject(r);
    }
}

static int init(void)
{
    if (ts_redis_start(&redis, NULL) != 0)
        return -1;
    rc = raw_connect(redis.port);
    return rc ? 0 : -1;
}

static int cleanup(void)
{
    ts_service_stop(&svc);
    redisFree(rc);
    ts_redis_stop(&redis);
    return 0;
}

static int start_service(void)
{
    static daebus_bus_options bo = DAEBUS_BUS_OPTIONS_INIT;
    ts_service_options o = {.service = "db",
                            .redis_url = redis.url,
                            .bus = true,
                            .bus_options = &bo,
                            .wait_bus = 5,
                            .max_workers = 32};
    return ts_service_start(&svc, &o);
}

static void test_fresh_batch_no_xpending(void)
{
    redisContext *l = dur_listen(redis.port, "db:r", 10);
    CU_ASSERT_PTR_NOT_NULL_FATAL(l);
    add_many("f", 0, N, 60000); /* before the service: one batch */
    redisReply *x = redisCommand(rc, "CONFIG RESETSTAT");
    freeReplyObject(x);
    CU_ASSERT_EQUAL_FATAL(start_service(), 0);
    for (int i = 0; i < N; i++) {
        char *m = raw_next(l);
        CU_ASSERT_PTR_NOT_NULL_FATAL(m);
        CU_ASSERT(strstr(m, "\"attempt\":1") != NULL);
        free(m);
    }
    for (int i = 0; i < N; i++)
        CU_ASSERT_EQUAL(dur_int(rc, "GET test:runs:f%d", i), 1);
    CU_ASSERT_EQUAL(calls("xpending"), 0);
    /* The checks, and the completion scripts' own EXISTS. */
    TS_WAIT_UNTIL(dur_int(rc, "XLEN daebus:db:requests") == 0, 3);
    CU_ASSERT_EQUAL(calls("exists"), 2 * N);
    TS_WAIT_UNTIL(dur_int(rc, "XLEN daebus:db:requests") == 0, 3);
    CU_ASSERT_EQUAL(dur_int(rc, "XLEN daebus:db:requests"), 0);
    redisFree(l);
}

static void test_drops_one_round_trip(void)
{
    /* Done records of d0..d19: those requests completed before. */
    for (int i = 0; i < N; i++) {
        redisReply *r = redisCommand(rc, "SET daebus:db:done:d%d 1 EX 600", i);
        CU_ASSERT(r && r->type == REDIS_REPLY_STATUS);
        freeReplyObject(r);
    }
    /* The reader's read of the first test (COUNT: its free workers then)
     * times out: the next asks for 32. */
    ts_sleep_ms(700);
    struct daebus_bus_stats before, after;
    daebus_bus_get_stats(svc.bus, &before);
    redisReply *x = redisCommand(rc, "CONFIG RESETSTAT");
    freeReplyObject(x);
    long long reads0 = info_field("stats", "total_reads_processed");
    /* Both sets in one MULTI: the reader gets them in one XREADGROUP. */
    x = redisCommand(rc, "MULTI");
    freeReplyObject(x);
    for (int i = 0; i < N; i++)
        redisAppendCommand(rc,
                           "XADD daebus:db:requests * req "
                           "{\"action\":\"work\",\"payload\":{\"id\":\"d%d\"},"
                           "\"reply_to\":\"db:r\",\"request_id\":\"d%d\",\"service\":\"db\"} "
                           "deadline %lld",
                           i, i, dur_wall_ms() + 60000);
    for (int i = 0; i < N / 2; i++)
        redisAppendCommand(rc,
                           "XADD daebus:db:requests * req "
                           "{\"action\":\"work\",\"payload\":{\"id\":\"e%d\"},"
                           "\"reply_to\":\"db:r\",\"request_id\":\"e%d\",\"service\":\"db\"} "
                           "deadline %lld",
                           i, i, dur_wall_ms() - 1000);
    for (int i = 0; i < N + N / 2; i++) {
        void *r = NULL;
        CU_ASSERT_EQUAL(redisGetReply(rc, &r), REDIS_OK);
        freeReplyObject(r);
    }
    x = redisCommand(rc, "EXEC");
    CU_ASSERT(x && x->type == REDIS_REPLY_ARRAY && x->elements == N + N / 2);
    freeReplyObject(x);
    ts_sleep_ms(1000); /* no polling: it would add read events */
    long long reads = info_field("stats", "total_reads_processed") - reads0;
    CU_ASSERT_EQUAL(dur_int(rc, "XLEN daebus:db:requests"), 0);
    CU_ASSERT_EQUAL(dur_pending(rc, "db"), 0);
    daebus_bus_get_stats(svc.bus, &after);
    CU_ASSERT_EQUAL(after.durable_duplicates - before.durable_duplicates, N);
    CU_ASSERT_EQUAL(after.durable_expired - before.durable_expired, N / 2);
    CU_ASSERT_EQUAL(after.durable_taken, before.durable_taken);
    CU_ASSERT_EQUAL(calls("exists"), N);
    CU_ASSERT_EQUAL(calls("xack"), 1);
    CU_ASSERT_EQUAL(calls("xdel"), 1);
    for (int i = 0; i < N; i++)
        CU_ASSERT_EQUAL(dur_int(rc, "EXISTS test:runs:d%d", i), 0);
    /* One read event per command would add 80 (20 EXISTS + 30 XACK + 30
     * XDEL); pipelined, the reader's part is 3 (XREADGROUP, the checks, the
     * drops). The rest (about 15) is this test's commands and the idle
     * service's own traffic for 1 s. */
    CU_ASSERT(reads < 50);
    if (reads >= 50)
        fprintf(stderr, "read events: %lld, exists %lld xack %lld xdel %lld\n", reads,
                calls("exists"), calls("xack"), calls("xdel"));
}

int main(void)
{
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("bus_durable_batch", init, cleanup);
    CU_add_test(s, "20 fresh entries: answered, no XPENDING", test_fresh_batch_no_xpending);
    CU_add_test(s, "20 done + 10 expired: one XACK, one XDEL, EXISTS pipelined",
                test_drops_one_round_trip);
    return ts_run_cunit();
}
