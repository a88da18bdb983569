/* Bus configuration against a real redis-server: AUTH from the URL
 * (requirepass), SELECT db, unix:// URLs, the message size limit, the bounded
 * worker queue's overload reply; plus the pure Redis URL parser. */
#include <unistd.h>
#include "common.h"

#define SVC "config_svc"

static ts_redis redis;

ACTION(echo, "echo")
{
    return daebus_bus_reply(req, payload);
}

/* Closed by the overload test so that the running request cannot finish (and
 * free a queue slot) before every refusal is in, however loaded the machine. */
static atomic_int slow_gate_open = 1;
static atomic_int slow_started;

ACTION(slow, "slow")
{
    atomic_fetch_add(&slow_started, 1);
    ts_sleep_ms(800);
    for (int i = 0; i < 2000 && !atomic_load(&slow_gate_open); i++)
        ts_sleep_ms(5);
    return daebus_bus_reply(req, payload);
}

static int init(void)
{
    return ts_redis_start(&redis, NULL);
}

static int cleanup(void)
{
    ts_redis_stop(&redis);
    return 0;
}

static int echo_ok(daebus_caller *c)
{
    cJSON *p = cJSON_Parse("{\"ping\":1}");
    cJSON *out = NULL;
    daebus_error e = {0};
    int rc = daebus_caller_request(c, SVC, "echo", p, 5.0, &out, &e);
    int ok = rc == 0 && cJSON_Compare(p, out, 1);
    if (!ok)
        fprintf(stderr, "echo failed: %d %s\n", rc, e.message);
    cJSON_Delete(p);
    cJSON_Delete(out);
    return ok;
}

static void test_url_parse(void)
{
    /* Field by field in test_bus_parse (the internal parser); here the public check. */
    daebus_error e = {0};
    const char *good[] = {"redis://localhost", "redis://:p%40ss@10.0.0.1:6380/3",
                          "redis://alice:pw@[::1]:7000", "unix:///run/redis.sock",
                          "unix://:pw@/tmp/r.sock?db=2"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        CU_ASSERT_EQUAL(daebus_redis_url_check(good[i], &e), 0);
    CU_ASSERT_EQUAL(daebus_redis_url_check("rediss://host:6380", &e), DAEBUS_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "TLS"));
    const char *bad[] = {
        "http://x",       "redis://h:0", "redis://h:70000", "redis://h:12a", "redis://h/x",
        "redis://:%zz@h", "unix://",     "unix://relative", "redis://[::1",  "",
        "redis://h:1?x=1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        e.message[0] = 0;
        CU_ASSERT_EQUAL(daebus_redis_url_check(bad[i], &e), DAEBUS_EINVAL);
        CU_ASSERT_TRUE(e.message[0] != 0);
    }
    CU_ASSERT_EQUAL(daebus_redis_url_check(NULL, &e), DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(daebus_redis_url_check("http://:secret@x", &e), DAEBUS_EINVAL);
    CU_ASSERT_PTR_NULL(strstr(e.message, "secret"));
}

static void test_auth_and_db(void)
{
    redisContext *adm = raw_connect(redis.port);
    CU_ASSERT_PTR_NOT_NULL_FATAL(adm);
    redisReply *r = redisCommand(adm, "CONFIG SET requirepass s3cret");
    CU_ASSERT_TRUE(r && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    char url[128], bad[128];
    snprintf(url, sizeof url, "redis://:s3cret@127.0.0.1:%d/2", redis.port);
    snprintf(bad, sizeof bad, "redis://:wrong@127.0.0.1:%d", redis.port);
    daebus_error e = {0};
    CU_ASSERT_PTR_NULL(daebus_caller_create(bad, NULL, &e));
    CU_ASSERT_EQUAL(e.code, DAEBUS_EAUTH);
    CU_ASSERT_PTR_NULL(daebus_caller_create(redis.url, NULL, &e)); /* no password */
    daebus_bus *bus = NULL;
    daebus_app *app = start_app(SVC, url, 2, NULL, &bus);
    CU_ASSERT_PTR_NOT_NULL_FATAL(app);
    TS_WAIT_UNTIL(ts_bus_connected(bus), 5);
    CU_ASSERT_TRUE(ts_bus_connected(bus));
    daebus_caller *c = daebus_caller_create(url, NULL, &e);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_TRUE(echo_ok(c));
    daebus_caller_destroy(c);
    ts_app_stop(app);
    r = redisCommand(adm, "AUTH s3cret");
    freeReplyObject(r);
    r = redisCommand(adm, "CONFIG SET requirepass %s", "");
    freeReplyObject(r);
    redisFree(adm);
}

static void test_unix_socket(void)
{
    char url[400];
    snprintf(url, sizeof url, "unix://%s", redis.unix_path);
    daebus_bus *bus = NULL;
    daebus_app *app = start_app(SVC, url, 2, NULL, &bus);
    CU_ASSERT_PTR_NOT_NULL_FATAL(app);
    TS_WAIT_UNTIL(ts_bus_connected(bus), 5);
    daebus_error e = {0};
    daebus_caller *c = daebus_caller_create(url, NULL, &e);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_TRUE(echo_ok(c));
    /* A TCP caller reaches the same service. */
    daebus_caller *t = daebus_caller_create(redis.url, NULL, &e);
    CU_ASSERT_TRUE(echo_ok(t));
    daebus_caller_destroy(t);
    daebus_caller_destroy(c);
    ts_app_stop(app);
}

static void test_message_size_limit(void)
{
    daebus_bus_options bo = DAEBUS_BUS_OPTIONS_INIT;
    bo.max_message_size = 1000;
    daebus_bus *bus = NULL;
    daebus_app *app = start_app(SVC, redis.url, 2, &bo, &bus);
    CU_ASSERT_PTR_NOT_NULL_FATAL(app);
    daebus_caller *c = daebus_caller_create(redis.url, NULL, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    cJSON *p = cJSON_CreateObject();
    char big[2001];
    memset(big, 'x', 2000);
    big[2000] = 0;
    cJSON_AddStringToObject(p, "blob", big);
    daebus_error e = {0};
    CU_ASSERT_EQUAL(daebus_caller_request(c, SVC, "echo", p, 3.0, NULL, &e), DAEBUS_EREPLY);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "Message too large"));
    CU_ASSERT_TRUE(echo_ok(c)); /* small ones still pass */
    struct daebus_bus_stats st;
    daebus_bus_get_stats(bus, &st);
    CU_ASSERT_EQUAL(st.too_large, 1);
    cJSON_Delete(p);
    daebus_caller_destroy(c);
    ts_app_stop(app);
}

typedef struct tally {
    atomic_int done, ok, overloaded, other;
} tally;

static void on_done(daebus_caller *c, int status, const cJSON *payload, const char *msg, void *user)
{
    (void)c;
    (void)payload;
    tally *t = user;
    if (status == 0)
        atomic_fetch_add(&t->ok, 1);
    else if (status == DAEBUS_EREPLY && strstr(msg, "overloaded"))
        atomic_fetch_add(&t->overloaded, 1);
    else
        atomic_fetch_add(&t->other, 1);
    atomic_fetch_add(&t->done, 1);
}

static void test_overload(void)
{
    daebus_bus_options bo = DAEBUS_BUS_OPTIONS_INIT;
    bo.max_queue = 2;
    daebus_bus *bus = NULL;
    daebus_app *app = start_app(SVC, redis.url, 1, &bo, &bus);
    CU_ASSERT_PTR_NOT_NULL_FATAL(app);
    daebus_caller *c = daebus_caller_create(redis.url, NULL, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    tally t = {0};
    atomic_store(&slow_gate_open, 0);
    double t0 = ts_now();
    /* The first one running before the others arrive: the queue bound does
     * not count it, so exactly 2 more are queued and 5 refused. */
    int started = atomic_load(&slow_started);
    daebus_caller_request_async(c, SVC, "slow", NULL, 20.0, on_done, NULL, &t, NULL);
    TS_WAIT_UNTIL(atomic_load(&slow_started) > started, 5);
    for (int i = 1; i < 8; i++)
        daebus_caller_request_async(c, SVC, "slow", NULL, 20.0, on_done, NULL, &t, NULL);
    /* Refusals come back at once, long before the queued work is done. */
    TS_WAIT_UNTIL(atomic_load(&t.overloaded) >= 5, 5);
    CU_ASSERT_TRUE(ts_now() - t0 < 5);
    CU_ASSERT_EQUAL(atomic_load(&t.ok), 0);
    atomic_store(&slow_gate_open, 1);
    TS_WAIT_UNTIL(atomic_load(&t.done) == 8, 10);
    CU_ASSERT_EQUAL(atomic_load(&t.ok), 3); /* 1 running + 2 queued */
    CU_ASSERT_EQUAL(atomic_load(&t.overloaded), 5);
    CU_ASSERT_EQUAL(atomic_load(&t.other), 0);
    struct daebus_bus_stats st;
    /* Counters move just after the reply is published: wait for them. */
    TS_WAIT_UNTIL(
        (daebus_bus_get_stats(bus, &st), st.requests_handled == 3 && st.replies_sent == 8), 3);
    CU_ASSERT_EQUAL(st.overloads, 5);
    CU_ASSERT_EQUAL(st.requests_received, 8);
    CU_ASSERT_EQUAL(st.requests_handled, 3);
    CU_ASSERT_EQUAL(st.replies_sent, 8);
    CU_ASSERT_EQUAL(st.errors, 5);
    daebus_caller_destroy(c);
    ts_app_stop(app);
}

static void on_done_shutdown(daebus_caller *c, int status, const cJSON *payload, const char *msg,
                             void *user)
{
    (void)c;
    (void)payload;
    tally *t = user;
    if (status == 0)
        atomic_fetch_add(&t->ok, 1);
    else if (status == DAEBUS_EREPLY && strstr(msg, "shutting down"))
        atomic_fetch_add(&t->overloaded, 1);
    else
        atomic_fetch_add(&t->other, 1);
    atomic_fetch_add(&t->done, 1);
}

static void test_shutdown_answers_queued(void)
{
    /* Stopping with work queued: the queue drains for up to shutdown_timeout
     * (2 s here), what is left gets a "shutting down" error: every request
     * gets exactly one final reply. */
    daebus_bus *bus = NULL;
    daebus_app *app = start_app(SVC, redis.url, 1, NULL, &bus);
    CU_ASSERT_PTR_NOT_NULL_FATAL(app);
    daebus_caller *c = daebus_caller_create(redis.url, NULL, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    tally t = {0};
    for (int i = 0; i < 6; i++)
        daebus_caller_request_async(c, SVC, "slow", NULL, 15.0, on_done_shutdown, NULL, &t, NULL);
    struct daebus_bus_stats st;
    TS_WAIT_UNTIL((daebus_bus_get_stats(bus, &st), st.requests_received == 6), 5);
    ts_app_stop(app);
    TS_WAIT_UNTIL(atomic_load(&t.done) == 6, 5);
    CU_ASSERT_EQUAL(atomic_load(&t.done), 6);
    CU_ASSERT_TRUE(atomic_load(&t.ok) >= 1);
    CU_ASSERT_TRUE(atomic_load(&t.overloaded) >= 1); /* "shutting down" replies */
    CU_ASSERT_EQUAL(atomic_load(&t.other), 0);
    daebus_caller_destroy(c);
}

static void test_api_misuse(void)
{
    daebus_bus *b = daebus_bus_create(NULL, NULL);
    CU_ASSERT_PTR_NOT_NULL(b);
    CU_ASSERT_EQUAL(daebus_bus_attach(NULL, NULL), DAEBUS_EINVAL);
    cJSON *o = cJSON_CreateObject();
    CU_ASSERT_EQUAL(daebus_bus_broadcast(b, "x", o), DAEBUS_ESTATE); /* not running */
    cJSON_Delete(o);
    CU_ASSERT_PTR_NULL(daebus_bus_caller(b));
    CU_ASSERT_EQUAL(daebus_bus_attach(b, NULL), DAEBUS_EINVAL); /* and frees b */
    daebus_bus_destroy(NULL);
    daebus_caller_destroy(NULL);
    /* A bad URL fails the app's start. */
    daebus_app_options ao = DAEBUS_APP_OPTIONS_INIT;
    ao.service = SVC;
    ao.redis_url = "rediss://secure:6380";
    ao.no_signals = true;
    ao.log_level = DAEBUS_LOG_OFF;
    daebus_app *app = daebus_app_create(&ao, NULL);
    daebus_bus_attach(daebus_bus_create(NULL, NULL), app);
    CU_ASSERT_NOT_EQUAL(daebus_app_start(app), 0);
    daebus_app_destroy(app);
}

int main(void)
{
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("bus config", init, cleanup);
    CU_add_test(s, "URL parsing", test_url_parse);
    CU_add_test(s, "AUTH and SELECT via URL", test_auth_and_db);
    CU_add_test(s, "unix:// URL", test_unix_socket);
    CU_add_test(s, "message size limit", test_message_size_limit);
    CU_add_test(s, "overload", test_overload);
    CU_add_test(s, "shutdown answers queued requests", test_shutdown_answers_queued);
    CU_add_test(s, "API misuse", test_api_misuse);
    return ts_run_cunit();
}
