/* Durable actions, the service side (framework/bus/bus_durable.c), in one
 * process: requests added to daebus:<service>:requests with a raw hiredis
 * client (the wire format of docs/protocol.md "Durable actions") before the
 * service started are handled once it starts; an expired one is not run
 * (counted); a request_id completed once is never run again; a handler
 * returning an error completes its request (error reply, not retried); a
 * burst leaves the stream empty (XLEN 0, nothing pending); progress goes out
 * as plain PUBLISH; the counters reach /metrics; after Redis restarts empty
 * the reader makes its group again and goes on; durable_wait_replicas sends
 * WAIT after each completion. */
#include <unistd.h>
#include "durable_common.h"
#include "health/health.h"

static ts_redis redis;
static redisContext *rc;

/* ---- the service ---- */

/* Counts its runs per request id in Redis, replies {"attempt": n}. */
ACTION(dur_work, "work")
{
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(payload, "id"));
    char key[160];
    snprintf(key, sizeof key, "test:runs:%s", id ? id : "?");
    const char *argv[] = {"INCR", key};
    daebus_bus_redis(daebus_bus_request_bus(req), 2, argv, NULL, NULL);
    daebus_bus_progress_take(req, cJSON_CreateString("working"), 50);
    cJSON *out = cJSON_CreateObject();
    cJSON_AddNumberToObject(out, "attempt", daebus_bus_request_attempt(req));
    return daebus_bus_reply_take(req, out);
}

ACTION(dur_fail, "fail")
{
    const char *argv[] = {"INCR", "test:fail_runs"};
    daebus_bus_redis(daebus_bus_request_bus(req), 2, argv, NULL, NULL);
    (void)payload;
    return DAEBUS_EIO;
}

ACTION(dur_slow, "slow")
{
    (void)payload;
    usleep(400 * 1000);
    return daebus_bus_reply_take(req, cJSON_CreateObject());
}

/* A final reply over the 4 KiB a done record keeps. */
ACTION(dur_big, "big")
{
    (void)payload;
    char text[5000];
    memset(text, 'x', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    return daebus_bus_reply_take(req, cJSON_CreateString(text));
}

static int start(ts_service *s, const char *svc, bool metrics)
{
    static daebus_bus_options bo = DAEBUS_BUS_OPTIONS_INIT;
    bo.durable_visibility = 1;
    ts_service_options o = {.service = svc,
                            .redis_url = redis.url,
                            .bus = true,
                            .bus_options = &bo,
                            .wait_bus = 5,
                            .http = metrics,
                            .max_workers = 4};
    if (metrics)
        o.blueprints[0] = &daebus_health_bp;
    return ts_service_start(s, &o);
}

static struct daebus_bus_stats stats(ts_service *s)
{
    struct daebus_bus_stats st;
    daebus_bus_get_stats(s->bus, &st);
    return st;
}

static int init(void)
{
    return dur_suite_init(&redis, &rc);
}

static int cleanup(void)
{
    return dur_suite_cleanup(&redis, rc);
}

/* ---- tests ---- */

static void test_added_before_start(void)
{
    redisContext *l = dur_listen(redis.port, "dur:r1", 5);
    CU_ASSERT_PTR_NOT_NULL_FATAL(l);
    CU_ASSERT_EQUAL(dur_add(rc, "dur_a", "work", "a1", "dur:r1", 30000), 0);
    CU_ASSERT_EQUAL(dur_add(rc, "dur_a", "work", "a2", "dur:r1", 30000), 0);
    ts_sleep_ms(300); /* nobody reads yet */
    CU_ASSERT_EQUAL(dur_int(rc, "EXISTS test:runs:a1"), 0);
    ts_service s;
    CU_ASSERT_EQUAL_FATAL(start(&s, "dur_a", true), 0);
    int got = 0;
    for (int i = 0; i < 2; i++) {
        char *m = dur_final(l);
        got += m && strstr(m, "\"attempt\":1") != NULL;
        free(m);
    }
    CU_ASSERT_EQUAL(got, 2);
    CU_ASSERT_EQUAL(dur_int(rc, "GET test:runs:a1"), 1);
    CU_ASSERT_EQUAL(dur_int(rc, "GET test:runs:a2"), 1);
    CU_ASSERT_EQUAL(dur_int(rc, "EXISTS daebus:dur_a:done:a1"), 1);
    long long ttl = dur_int(rc, "TTL daebus:dur_a:done:a1");
    CU_ASSERT(ttl > 3600 && ttl <= 3600 + 31);
    /* The done record keeps the final reply (for a caller that lost it). */
    redisReply *kept = redisCommand(rc, "GET daebus:dur_a:done:a1");
    CU_ASSERT(kept && kept->type == REDIS_REPLY_STRING && strstr(kept->str, "\"attempt\":1") &&
              strstr(kept->str, "\"request_id\":\"a1\"") && strstr(kept->str, "\"final\":true"));
    if (kept)
        freeReplyObject(kept);
    TS_WAIT_UNTIL(dur_int(rc, "XLEN daebus:dur_a:requests") == 0, 3);
    CU_ASSERT_EQUAL(dur_int(rc, "XLEN daebus:dur_a:requests"), 0);
    CU_ASSERT_EQUAL(dur_pending(rc, "dur_a"), 0);
    /* The replies leave inside the completion script; the counters follow. */
    TS_WAIT_UNTIL(stats(&s).durable_completed == 2, 3);
    struct daebus_bus_stats st = stats(&s);
    CU_ASSERT_EQUAL(st.durable_taken, 2);
    CU_ASSERT_EQUAL(st.durable_completed, 2);
    CU_ASSERT_EQUAL(st.durable_retried, 0);
    ts_http_response h;
    CU_ASSERT_EQUAL(ts_http(s.port, "GET", "/metrics", NULL, NULL, 0, &h), 0);
    CU_ASSERT_PTR_NOT_NULL(h.body && strstr(h.body, "daebus_bus_durable_completed_total 2"));
    ts_http_free(&h);
    ts_service_stop(&s);
    redisFree(l);
}

static void test_expired_not_run(void)
{
    ts_service s;
    CU_ASSERT_EQUAL_FATAL(start(&s, "dur_e", false), 0);
    CU_ASSERT_EQUAL(dur_add(rc, "dur_e", "work", "e1", "dur:r2", -1000), 0);
    TS_WAIT_UNTIL(stats(&s).durable_expired == 1, 5);
    CU_ASSERT_EQUAL(stats(&s).durable_expired, 1);
    CU_ASSERT_EQUAL(stats(&s).durable_taken, 0);
    CU_ASSERT_EQUAL(dur_int(rc, "EXISTS test:runs:e1"), 0);
    CU_ASSERT_EQUAL(dur_int(rc, "XLEN daebus:dur_e:requests"), 0);
    CU_ASSERT_EQUAL(dur_pending(rc, "dur_e"), 0);
    ts_service_stop(&s);
}

static void test_completed_never_again(void)
{
    ts_service s;
    CU_ASSERT_EQUAL_FATAL(start(&s, "dur_d", false), 0);
    redisContext *l = dur_listen(redis.port, "dur:r3", 5);
    CU_ASSERT_PTR_NOT_NULL_FATAL(l);
    CU_ASSERT_EQUAL(dur_add(rc, "dur_d", "work", "d1", "dur:r3", 30000), 0);
    CU_ASSERT(dur_final_has(l, "\"attempt\":1"));
    /* The same request_id again (a caller retrying after a lost reply). */
    CU_ASSERT_EQUAL(dur_add(rc, "dur_d", "work", "d1", "dur:r3", 30000), 0);
    TS_WAIT_UNTIL(stats(&s).durable_duplicates == 1, 5);
    CU_ASSERT_EQUAL(stats(&s).durable_duplicates, 1);
    CU_ASSERT_EQUAL(dur_int(rc, "GET test:runs:d1"), 1);
    /* the counter may be seen before the drop's XDEL */
    TS_WAIT_UNTIL(dur_int(rc, "XLEN daebus:dur_d:requests") == 0, 3);
    CU_ASSERT_EQUAL(dur_int(rc, "XLEN daebus:dur_d:requests"), 0);
    CU_ASSERT_EQUAL(dur_pending(rc, "dur_d"), 0);
    ts_service_stop(&s);
    redisFree(l);
}

/* A reply too large for the done record: sent, and the record is "1". */
static void test_big_reply_not_kept(void)
{
    ts_service s;
    CU_ASSERT_EQUAL_FATAL(start(&s, "dur_big", false), 0);
    redisContext *l = dur_listen(redis.port, "dur:r10", 5);
    CU_ASSERT_PTR_NOT_NULL_FATAL(l);
    CU_ASSERT_EQUAL(dur_add(rc, "dur_big", "big", "big1", "dur:r10", 30000), 0);
    CU_ASSERT(dur_final_has(l, "xxxxxxxxxxxxxxxx"));
    TS_WAIT_UNTIL(dur_int(rc, "EXISTS daebus:dur_big:done:big1") == 1, 3);
    CU_ASSERT_EQUAL(dur_int(rc, "GET daebus:dur_big:done:big1"), 1);
    ts_service_stop(&s);
    redisFree(l);
}

static void test_error_completes(void)
{
    ts_service s;
    CU_ASSERT_EQUAL_FATAL(start(&s, "dur_f", false), 0);
    redisContext *l = dur_listen(redis.port, "dur:r4", 5);
    CU_ASSERT_PTR_NOT_NULL_FATAL(l);
    CU_ASSERT_EQUAL(dur_add(rc, "dur_f", "fail", "f1", "dur:r4", 30000), 0);
    CU_ASSERT(dur_final_has(l, "Internal error in action 'fail'"));
    ts_sleep_ms(2500); /* past the visibility time-out: not taken again */
    CU_ASSERT_EQUAL(dur_int(rc, "GET test:fail_runs"), 1);
    CU_ASSERT_EQUAL(stats(&s).durable_completed, 1);
    CU_ASSERT_EQUAL(dur_pending(rc, "dur_f"), 0);
    ts_service_stop(&s);
    redisFree(l);
}

static void test_burst_leaves_stream_empty(void)
{
    enum { N = 400 };
    redisContext *l = dur_listen(redis.port, "dur:r5", 10);
    CU_ASSERT_PTR_NOT_NULL_FATAL(l);
    ts_service s;
    CU_ASSERT_EQUAL_FATAL(start(&s, "dur_b", false), 0);
    for (int i = 0; i < N; i++) {
        char id[32];
        snprintf(id, sizeof id, "b%d", i);
        CU_ASSERT_EQUAL(dur_add(rc, "dur_b", "work", id, "dur:r5", 60000), 0);
    }
    int finals = 0;
    for (int i = 0; i < N; i++) {
        char *m = dur_final(l);
        if (!m)
            break;
        finals++;
        free(m);
    }
    CU_ASSERT_EQUAL(finals, N);
    TS_WAIT_UNTIL(dur_int(rc, "XLEN daebus:dur_b:requests") == 0, 5);
    CU_ASSERT_EQUAL(dur_int(rc, "XLEN daebus:dur_b:requests"), 0);
    CU_ASSERT_EQUAL(dur_pending(rc, "dur_b"), 0);
    TS_WAIT_UNTIL(stats(&s).durable_completed == N, 3);
    CU_ASSERT_EQUAL(stats(&s).durable_completed, N);
    CU_ASSERT_EQUAL(stats(&s).durable_retried, 0);
    ts_service_stop(&s);
    redisFree(l);
}

/* Redis restarted empty (no persistence): the reader reconnects, makes the
 * group again and takes new requests. */
static void test_redis_restart(void)
{
    ts_service s;
    CU_ASSERT_EQUAL_FATAL(start(&s, "dur_r", false), 0);
    ts_sleep_ms(200);
    CU_ASSERT_EQUAL_FATAL(ts_redis_restart(&redis), 0);
    redisFree(rc);
    rc = raw_connect(redis.port);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rc);
    redisContext *l = dur_listen(redis.port, "dur:r7", 10);
    CU_ASSERT_PTR_NOT_NULL_FATAL(l);
    CU_ASSERT_EQUAL(dur_add(rc, "dur_r", "work", "r1", "dur:r7", 30000), 0);
    CU_ASSERT(dur_final_has(l, "\"request_id\":\"r1\""));
    CU_ASSERT_EQUAL(dur_int(rc, "GET test:runs:r1"), 1);
    TS_WAIT_UNTIL(dur_int(rc, "XLEN daebus:dur_r:requests") == 0, 3);
    CU_ASSERT_EQUAL(dur_int(rc, "XLEN daebus:dur_r:requests"), 0);
    ts_service_stop(&s);
    redisFree(l);
}

/* A stop while a durable request runs: the reader takes nothing more, the
 * run finishes and completes (reply, entry deleted), the stop is prompt. */
static void test_graceful_stop(void)
{
    ts_service s;
    CU_ASSERT_EQUAL_FATAL(start(&s, "dur_g", false), 0);
    redisContext *l = dur_listen(redis.port, "dur:r9", 5);
    CU_ASSERT_PTR_NOT_NULL_FATAL(l);
    CU_ASSERT_EQUAL(dur_add(rc, "dur_g", "slow", "g1", "dur:r9", 30000), 0);
    TS_WAIT_UNTIL(stats(&s).durable_taken == 1, 5);
    double t0 = ts_now();
    ts_service_stop(&s);
    CU_ASSERT(ts_now() - t0 < 2.0);
    CU_ASSERT(dur_final_has(l, "\"request_id\":\"g1\""));
    CU_ASSERT_EQUAL(dur_int(rc, "XLEN daebus:dur_g:requests"), 0);
    CU_ASSERT_EQUAL(dur_pending(rc, "dur_g"), 0);
    redisFree(l);
}

/* Calls of a command so far (INFO commandstats; 0 when never called). */
static long long command_calls(const char *name)
{
    redisReply *r = redisCommand(rc, "INFO commandstats");
    char want[64];
    snprintf(want, sizeof want, "cmdstat_%s:calls=", name);
    const char *at = NULL;
    if (r && r->type == REDIS_REPLY_STRING)
        at = strstr(r->str, want);
    long long n = at ? strtoll(at + strlen(want), NULL, 10) : 0;
    if (r)
        freeReplyObject(r);
    return n;
}

/* durable_wait_replicas: each completion is followed by WAIT (no Redis
 * replica here: it waits command_timeout and the request still completes). */
static void test_wait_replicas(void)
{
    daebus_bus_options bo = DAEBUS_BUS_OPTIONS_INIT;
    bo.durable_wait_replicas = 1;
    bo.command_timeout = 0.2;
    ts_service_options o = {
        .service = "dur_w", .redis_url = redis.url, .bus = true, .bus_options = &bo, .wait_bus = 5};
    ts_service s;
    CU_ASSERT_EQUAL_FATAL(ts_service_start(&s, &o), 0);
    long long before = command_calls("wait");
    redisContext *l = dur_listen(redis.port, "dur:r8", 5);
    CU_ASSERT_PTR_NOT_NULL_FATAL(l);
    CU_ASSERT_EQUAL(dur_add(rc, "dur_w", "work", "w1", "dur:r8", 30000), 0);
    CU_ASSERT(dur_final_has(l, "\"request_id\":\"w1\""));
    TS_WAIT_UNTIL(stats(&s).durable_completed == 1, 3);
    CU_ASSERT_EQUAL(stats(&s).durable_completed, 1);
    CU_ASSERT_EQUAL(command_calls("wait"), before + 1);
    ts_service_stop(&s);
    redisFree(l);
}

static void test_off_reads_nothing(void)
{
    daebus_bus_options bo = DAEBUS_BUS_OPTIONS_INIT;
    bo.durable = -1;
    ts_service_options o = {.service = "dur_off",
                            .redis_url = redis.url,
                            .bus = true,
                            .bus_options = &bo,
                            .wait_bus = 5};
    ts_service s;
    CU_ASSERT_EQUAL_FATAL(ts_service_start(&s, &o), 0);
    CU_ASSERT_EQUAL(dur_add(rc, "dur_off", "work", "o1", "dur:r6", 30000), 0);
    ts_sleep_ms(700);
    CU_ASSERT_EQUAL(dur_int(rc, "EXISTS test:runs:o1"), 0);
    CU_ASSERT_EQUAL(stats(&s).durable_taken, 0);
    ts_service_stop(&s);
}

int main(void)
{
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("bus_durable", init, cleanup);
    CU_add_test(s, "added before any replica ran: handled at start", test_added_before_start);
    CU_add_test(s, "deadline passed: not run, counted", test_expired_not_run);
    CU_add_test(s, "a completed request_id is never run again", test_completed_never_again);
    CU_add_test(s, "a handler error completes (not retried)", test_error_completes);
    CU_add_test(s, "a reply over 4 KiB is not kept in the done record", test_big_reply_not_kept);
    CU_add_test(s, "a burst of 400: XLEN back to 0", test_burst_leaves_stream_empty);
    CU_add_test(s, "durable off: the stream is not read", test_off_reads_nothing);
    CU_add_test(s, "a stop lets a taken request finish", test_graceful_stop);
    CU_add_test(s, "durable_wait_replicas: WAIT after each completion", test_wait_replicas);
    CU_add_test(s, "Redis restarted empty: reads again", test_redis_restart);
    return ts_run_cunit();
}
