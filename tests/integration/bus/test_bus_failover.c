/* Bus and caller when Redis dies: requests in flight fail fast with
 * DAEBUS_ECONN (none waits for its time-out), new requests are refused at once
 * while Redis is down, and after a restart the service subscribes again and a
 * message published after the reconnect is handled exactly once. */
#include <unistd.h>
#include "common.h"

#define SVC "failover_svc"

static ts_redis redis;
static atomic_int counted;

ACTION(slow, "slow")
{
    ts_sleep_ms(1500);
    return daebus_bus_reply(req, payload);
}

ACTION(count, "count")
{
    atomic_fetch_add(&counted, 1);
    return daebus_bus_reply(req, NULL);
}

typedef struct result {
    atomic_int done, econn, other;
    double last;
} result;

static void on_done(daebus_caller *c, int status, const cJSON *payload, const char *msg, void *user)
{
    (void)c;
    (void)payload;
    (void)msg;
    result *r = user;
    if (status == DAEBUS_ECONN)
        atomic_fetch_add(&r->econn, 1);
    else
        atomic_fetch_add(&r->other, 1);
    atomic_fetch_add(&r->done, 1);
}

static atomic_int listened;

static void on_listened(daebus_caller *c, const char *channel, const char *data, size_t len,
                        void *user)
{
    (void)c, (void)channel, (void)data, (void)len, (void)user;
    atomic_fetch_add(&listened, 1);
}

static void test_kill_and_restart(void)
{
    CU_ASSERT_EQUAL_FATAL(ts_redis_start(&redis, NULL), 0);
    daebus_bus_options bo = DAEBUS_BUS_OPTIONS_INIT;
    bo.reconnect_initial = 0.05;
    bo.reconnect_max = 0.4;
    daebus_bus *bus = NULL;
    daebus_app *app = start_app(SVC, redis.url, 4, &bo, &bus);
    CU_ASSERT_PTR_NOT_NULL_FATAL(app);
    TS_WAIT_UNTIL(ts_bus_connected(bus), 5);
    daebus_caller_options co = DAEBUS_CALLER_OPTIONS_INIT;
    co.reconnect_max = 0.4;
    daebus_caller *caller = daebus_caller_create(redis.url, &co, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(caller);
    CU_ASSERT_EQUAL(daebus_caller_listen(caller, "fo.listen", on_listened, NULL), 0);

    /* 12 requests in flight (4 running, 8 queued), time-out 30 s. */
    result res = {0};
    for (int i = 0; i < 12; i++)
        CU_ASSERT_EQUAL(
            daebus_caller_request_async(caller, SVC, "slow", NULL, 30.0, on_done, NULL, &res, NULL),
            0);
    ts_sleep_ms(200);
    double t0 = ts_now();
    ts_redis_kill(&redis);
    TS_WAIT_UNTIL(atomic_load(&res.done) == 12, 10);
    double dt = ts_now() - t0;
    CU_ASSERT_EQUAL(atomic_load(&res.done), 12);
    CU_ASSERT_EQUAL(atomic_load(&res.econn), 12);
    CU_ASSERT_TRUE(dt < 2.0);
    fprintf(stderr, "\n  12 in-flight requests failed %.3f s after Redis was killed\n", dt);

    /* While Redis is down: refused at once. */
    TS_WAIT_UNTIL(!daebus_caller_connected(caller), 3);
    daebus_error e = {0};
    t0 = ts_now();
    CU_ASSERT_EQUAL(daebus_caller_request(caller, SVC, "count", NULL, 10.0, NULL, &e),
                    DAEBUS_ECONN);
    CU_ASSERT_TRUE(ts_now() - t0 < 1.0);
    TS_WAIT_UNTIL(!ts_bus_connected(bus), 3);
    CU_ASSERT_FALSE(ts_bus_connected(bus));
    CU_ASSERT(daebus_bus_broadcast(bus, "x", cJSON_GetObjectItem(NULL, "x")) == DAEBUS_EINVAL);
    ts_sleep_ms(300); /* let a few reconnect attempts fail */

    /* Restart: the service resubscribes, the caller too. */
    CU_ASSERT_EQUAL_FATAL(ts_redis_restart(&redis), 0);
    TS_WAIT_UNTIL(ts_bus_connected(bus) && daebus_caller_connected(caller), 10);
    CU_ASSERT_TRUE(ts_bus_connected(bus));
    CU_ASSERT_TRUE(daebus_caller_connected(caller));
    struct daebus_bus_stats st;
    daebus_bus_get_stats(bus, &st);
    CU_ASSERT_EQUAL(st.reconnects, 1);
    /* Exactly one subscriber (ours) on the service channel. */
    long n = raw_publish(redis.port, SVC, "{\"action\":\"count\"}");
    CU_ASSERT_EQUAL(n, 1);
    TS_WAIT_UNTIL(atomic_load(&counted) >= 1, 5);
    ts_sleep_ms(300);
    CU_ASSERT_EQUAL(atomic_load(&counted), 1);
    /* The caller's listened channel is subscribed again too. */
    CU_ASSERT_EQUAL(raw_publish(redis.port, "fo.listen", "{}"), 1);
    TS_WAIT_UNTIL(atomic_load(&listened) == 1, 5);
    CU_ASSERT_EQUAL(atomic_load(&listened), 1);
    /* Request/reply works again through the (reconnected) publishers. */
    CU_ASSERT_EQUAL(daebus_caller_request(caller, SVC, "count", NULL, 5.0, NULL, &e), 0);
    CU_ASSERT_EQUAL(atomic_load(&counted), 2);
    /* Pending requests at destroy complete with DAEBUS_ECLOSED. */
    result late = {0};
    CU_ASSERT_EQUAL(
        daebus_caller_request_async(caller, "nobody", "x", NULL, 30.0, on_done, NULL, &late, NULL),
        0);
    daebus_caller_destroy(caller);
    CU_ASSERT_EQUAL(atomic_load(&late.done), 1);
    CU_ASSERT_EQUAL(atomic_load(&late.other), 1);
    ts_app_stop(app);
    ts_redis_stop(&redis);
}

static void test_start_without_redis(void)
{
    /* The bus starts, keeps retrying, and connects once Redis appears. */
    int port = ts_free_port();
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    daebus_bus_options bo = DAEBUS_BUS_OPTIONS_INIT;
    bo.connect_timeout = 0.2;
    bo.reconnect_max = 0.2;
    daebus_bus *bus = NULL;
    daebus_app *app = start_app(SVC, url, 2, &bo, &bus);
    CU_ASSERT_PTR_NOT_NULL_FATAL(app);
    CU_ASSERT_FALSE(ts_bus_connected(bus));
    daebus_error e = {0};
    CU_ASSERT_PTR_NULL(daebus_caller_create(url, NULL, &e));
    CU_ASSERT_EQUAL(e.code, DAEBUS_ECONN);
    cJSON *o = cJSON_CreateObject();
    CU_ASSERT_EQUAL(daebus_bus_broadcast(bus, "x", o), DAEBUS_ECONN);
    cJSON_Delete(o);
    ts_app_stop(app);
}

static void test_health_check(void)
{
    /* A Redis that stops answering (CLIENT PAUSE) without closing the socket:
     * the idle subscriber's PING goes unanswered, the bus treats the
     * connection as lost and subscribes again once Redis answers. */
    CU_ASSERT_EQUAL_FATAL(ts_redis_start(&redis, NULL), 0);
    daebus_bus_options bo = DAEBUS_BUS_OPTIONS_INIT;
    bo.health_interval = 0.3;
    bo.connect_timeout = 0.5;
    bo.reconnect_initial = 0.05;
    bo.reconnect_max = 0.2;
    daebus_bus *bus = NULL;
    daebus_app *app = start_app(SVC, redis.url, 2, &bo, &bus);
    CU_ASSERT_PTR_NOT_NULL_FATAL(app);
    TS_WAIT_UNTIL(ts_bus_connected(bus), 5);
    ts_sleep_ms(800); /* idle PINGs are answered: still the first connection */
    struct daebus_bus_stats st;
    daebus_bus_get_stats(bus, &st);
    CU_ASSERT_EQUAL(st.reconnects, 0);
    CU_ASSERT_EQUAL(st.connected, 1);
    redisContext *adm = raw_connect(redis.port);
    redisReply *r = redisCommand(adm, "CLIENT PAUSE 1500 ALL");
    freeReplyObject(r);
    redisFree(adm);
    TS_WAIT_UNTIL(!ts_bus_connected(bus), 3);
    CU_ASSERT_FALSE(ts_bus_connected(bus));
    TS_WAIT_UNTIL((daebus_bus_get_stats(bus, &st), st.reconnects >= 1 && st.connected), 8);
    CU_ASSERT_EQUAL(st.reconnects, 1);
    CU_ASSERT_TRUE(st.connected);
    int before = atomic_load(&counted);
    CU_ASSERT_EQUAL(raw_publish(redis.port, SVC, "{\"action\":\"count\"}"), 1);
    TS_WAIT_UNTIL(atomic_load(&counted) > before, 5);
    CU_ASSERT_EQUAL(atomic_load(&counted), before + 1);
    ts_app_stop(app);
    ts_redis_stop(&redis);
}

int main(void)
{
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("bus failover", NULL, NULL);
    CU_add_test(s, "kill and restart", test_kill_and_restart);
    CU_add_test(s, "start without redis", test_start_without_redis);
    CU_add_test(s, "health check", test_health_check);
    return ts_run_cunit();
}
