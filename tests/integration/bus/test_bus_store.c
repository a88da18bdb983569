/* The public Redis command API (daebus_bus_redis, daebus_bus_redis_pipeline)
 * against a private redis-server: every reply type converted, binary-safe
 * arguments, an error reply (DAEBUS_EREPLY, logged, counted), a pipeline with
 * one refused command, Lua, calls from many threads at once, bad arguments,
 * a bus that is not running (DAEBUS_ESTATE), Redis killed (DAEBUS_ECONN, no
 * crash) and back (works again). The values are read back with a raw hiredis
 * client: what the API wrote is what Redis holds. */
#include <stdarg.h>
#include <unistd.h>
#include "common.h"

#define SVC "bus_store_svc"

static ts_redis redis;
static ts_service svc;

static int init(void)
{
    if (ts_redis_start(&redis, NULL) != 0)
        return -1;
    ts_service_options o = {.service = SVC, .redis_url = redis.url, .bus = true, .wait_bus = 5};
    return ts_service_start(&svc, &o);
}

static int cleanup(void)
{
    ts_service_stop(&svc);
    ts_redis_stop(&redis);
    return 0;
}

/* Runs a NUL-terminated command given as a NULL-terminated list. */
static int cmd(cJSON **reply, const char *a0, ...)
{
    const char *argv[16] = {a0};
    int argc = 1;
    va_list ap;
    va_start(ap, a0);
    const char *s;
    while (argc < 16 && (s = va_arg(ap, const char *)) != NULL)
        argv[argc++] = s;
    va_end(ap);
    return daebus_bus_redis(svc.bus, argc, argv, NULL, reply);
}

static void test_reply_types(void)
{
    cJSON *r = NULL;
    CU_ASSERT_EQUAL(cmd(&r, "SET", "k:s", "hello", NULL), 0);
    CU_ASSERT(cJSON_IsString(r) && strcmp(r->valuestring, "OK") == 0); /* status */
    cJSON_Delete(r);
    CU_ASSERT_EQUAL(cmd(&r, "GET", "k:s", NULL), 0);
    CU_ASSERT(cJSON_IsString(r) && strcmp(r->valuestring, "hello") == 0); /* bulk */
    cJSON_Delete(r);
    CU_ASSERT_EQUAL(cmd(NULL, "INCRBY", "k:n", "41", NULL), 0);
    CU_ASSERT_EQUAL(cmd(&r, "INCR", "k:n", NULL), 0);
    CU_ASSERT(cJSON_IsNumber(r) && r->valuedouble == 42); /* integer */
    cJSON_Delete(r);
    CU_ASSERT_EQUAL(cmd(&r, "GET", "k:none", NULL), 0);
    CU_ASSERT(cJSON_IsNull(r)); /* nil */
    cJSON_Delete(r);
    CU_ASSERT_EQUAL(cmd(&r, "RPUSH", "k:l", "a", "b", "c", NULL), 0);
    cJSON_Delete(r);
    CU_ASSERT_EQUAL(cmd(&r, "LRANGE", "k:l", "0", "-1", NULL), 0);
    char *text = cJSON_PrintUnformatted(r);
    CU_ASSERT_STRING_EQUAL(text, "[\"a\",\"b\",\"c\"]"); /* array */
    free(text);
    cJSON_Delete(r);
    /* nested arrays and a nil inside */
    CU_ASSERT_EQUAL(
        cmd(&r, "EVAL", "return {1, {'x', 2}, redis.call('GET', KEYS[1])}", "1", "k:none", NULL),
        0);
    text = cJSON_PrintUnformatted(r);
    /* GET of a missing key is false in Lua, a nil element in the reply */
    CU_ASSERT_STRING_EQUAL(text, "[1,[\"x\",2],null]");
    free(text);
    cJSON_Delete(r);
    /* the reply may be dropped */
    CU_ASSERT_EQUAL(cmd(NULL, "DEL", "k:l", NULL), 0);
}

static void test_binary_args_and_raw_readback(void)
{
    const char *argv[] = {"SET", "k:bin", "a\0b\nc"};
    size_t lens[] = {3, 5, 5};
    CU_ASSERT_EQUAL(daebus_bus_redis(svc.bus, 3, argv, lens, NULL), 0);
    redisContext *c = raw_connect(redis.port);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    redisReply *r = redisCommand(c, "GET k:bin");
    CU_ASSERT(r && r->type == REDIS_REPLY_STRING && r->len == 5 &&
              memcmp(r->str, "a\0b\nc", 5) == 0);
    freeReplyObject(r);
    r = redisCommand(c, "GET k:s");
    CU_ASSERT(r && r->type == REDIS_REPLY_STRING && strcmp(r->str, "hello") == 0);
    freeReplyObject(r);
    redisFree(c);
    /* a bulk string holding a NUL is text up to it */
    cJSON *j = NULL;
    CU_ASSERT_EQUAL(cmd(&j, "GET", "k:bin", NULL), 0);
    CU_ASSERT(cJSON_IsString(j) && strcmp(j->valuestring, "a") == 0);
    cJSON_Delete(j);
}

static void test_error_reply(void)
{
    struct daebus_bus_stats before, after;
    daebus_bus_get_stats(svc.bus, &before);
    cJSON *r = NULL;
    CU_ASSERT_EQUAL(cmd(&r, "INCR", "k:s", NULL), DAEBUS_EREPLY); /* not an integer */
    CU_ASSERT(cJSON_IsObject(r));
    const cJSON *e = cJSON_GetObjectItem(r, "error");
    CU_ASSERT(cJSON_IsString(e) && strstr(e->valuestring, "not an integer") != NULL);
    cJSON_Delete(r);
    CU_ASSERT_EQUAL(cmd(&r, "NOSUCHCOMMAND", NULL), DAEBUS_EREPLY);
    cJSON_Delete(r);
    CU_ASSERT_EQUAL(cmd(&r, "EVAL", "return redis.error_reply('MINE failed')", "0", NULL),
                    DAEBUS_EREPLY);
    CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(r, "error")->valuestring, "MINE failed");
    cJSON_Delete(r);
    /* NOSCRIPT, EVALSHA's normal answer for an unknown script: an error
     * reply, neither logged nor counted */
    CU_ASSERT_EQUAL(cmd(&r, "EVALSHA", "0123456789012345678901234567890123456789", "0", NULL),
                    DAEBUS_EREPLY);
    CU_ASSERT(strncmp(cJSON_GetObjectItem(r, "error")->valuestring, "NOSCRIPT", 8) == 0);
    cJSON_Delete(r);
    daebus_bus_get_stats(svc.bus, &after);
    CU_ASSERT_EQUAL(after.store_errors - before.store_errors, 3);
    CU_ASSERT_EQUAL(after.store_commands - before.store_commands, 4);
}

static void test_pipeline(void)
{
    const char *a[] = {"SET", "p:1", "one"};
    const char *b[] = {"INCR", "p:1"}; /* refused: not an integer */
    const char *c[] = {"GET", "p:1"};
    const char *d[] = {"HSET", "p:h", "f", "v"};
    daebus_redis_cmd cmds[] = {{3, a, NULL}, {2, b, NULL}, {2, c, NULL}, {4, d, NULL}};
    cJSON *out[4];
    CU_ASSERT_EQUAL(daebus_bus_redis_pipeline(svc.bus, cmds, 4, out), DAEBUS_EREPLY);
    CU_ASSERT(cJSON_IsString(out[0]) && strcmp(out[0]->valuestring, "OK") == 0);
    CU_ASSERT(cJSON_IsObject(out[1]) && cJSON_GetObjectItem(out[1], "error"));
    CU_ASSERT(cJSON_IsString(out[2]) && strcmp(out[2]->valuestring, "one") == 0);
    CU_ASSERT(cJSON_IsNumber(out[3]) && out[3]->valuedouble == 1);
    for (int i = 0; i < 4; i++)
        cJSON_Delete(out[i]);
    daebus_redis_cmd ok[] = {{2, c, NULL}, {2, c, NULL}};
    CU_ASSERT_EQUAL(daebus_bus_redis_pipeline(svc.bus, ok, 2, out), 0);
    cJSON_Delete(out[0]);
    cJSON_Delete(out[1]);
    CU_ASSERT_EQUAL(daebus_bus_redis_pipeline(svc.bus, ok, 2, NULL), 0);
}

static void test_bad_arguments(void)
{
    cJSON *r = (cJSON *)1;
    const char *argv[] = {"GET", NULL};
    CU_ASSERT_EQUAL(daebus_bus_redis(NULL, 1, argv, NULL, &r), DAEBUS_EINVAL);
    CU_ASSERT_PTR_NULL(r);
    CU_ASSERT_EQUAL(daebus_bus_redis(svc.bus, 0, argv, NULL, &r), DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(daebus_bus_redis(svc.bus, 2, argv, NULL, &r), DAEBUS_EINVAL); /* NULL arg */
    CU_ASSERT_EQUAL(daebus_bus_redis(svc.bus, 1, NULL, NULL, &r), DAEBUS_EINVAL);
    daebus_redis_cmd one = {1, argv, NULL};
    CU_ASSERT_EQUAL(daebus_bus_redis_pipeline(svc.bus, &one, 0, NULL), DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(daebus_bus_redis_pipeline(svc.bus, &one, DAEBUS_BUS_PIPELINE_MAX + 1, NULL),
                    DAEBUS_EINVAL);
    /* a bus that never ran */
    daebus_bus *idle = daebus_bus_create(NULL, NULL);
    const char *ping[] = {"PING"};
    CU_ASSERT_EQUAL(daebus_bus_redis(idle, 1, ping, NULL, &r), DAEBUS_ESTATE);
    CU_ASSERT_PTR_NULL(r);
    daebus_bus_destroy(idle);
}

#define THREADS    8
#define PER_THREAD 200

static void *incr_thread(void *arg)
{
    (void)arg;
    long ok = 0;
    for (int i = 0; i < PER_THREAD; i++) {
        const char *argv[] = {"INCR", "k:count"};
        cJSON *r = NULL;
        if (daebus_bus_redis(svc.bus, 2, argv, NULL, &r) == 0 && cJSON_IsNumber(r))
            ok++;
        cJSON_Delete(r);
    }
    return (void *)ok;
}

static void test_many_threads(void)
{
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, incr_thread, NULL);
    long ok = 0;
    for (int i = 0; i < THREADS; i++) {
        void *v;
        pthread_join(t[i], &v);
        ok += (long)v;
    }
    CU_ASSERT_EQUAL(ok, THREADS * PER_THREAD);
    cJSON *r = NULL;
    CU_ASSERT_EQUAL(cmd(&r, "GET", "k:count", NULL), 0);
    CU_ASSERT(cJSON_IsString(r) && atoi(r->valuestring) == THREADS * PER_THREAD);
    cJSON_Delete(r);
}

static void test_redis_gone_and_back(void)
{
    ts_redis_kill(&redis);
    cJSON *r = (cJSON *)1;
    double t0 = ts_now();
    int rc = cmd(&r, "GET", "k:s", NULL);
    CU_ASSERT_EQUAL(rc, DAEBUS_ECONN);
    CU_ASSERT_PTR_NULL(r);
    /* fails fast while Redis is down (no command time-out per call) */
    for (int i = 0; i < 20; i++)
        CU_ASSERT_EQUAL(cmd(&r, "PING", NULL), DAEBUS_ECONN);
    CU_ASSERT(ts_now() - t0 < 3.0);
    daebus_redis_cmd one = {1, (const char *[]){"PING"}, NULL};
    cJSON *out[1] = {(cJSON *)1};
    CU_ASSERT_EQUAL(daebus_bus_redis_pipeline(svc.bus, &one, 1, out), DAEBUS_ECONN);
    CU_ASSERT_PTR_NULL(out[0]);
    CU_ASSERT_EQUAL_FATAL(ts_redis_restart(&redis), 0);
    rc = -1;
    TS_WAIT_UNTIL((rc = cmd(&r, "PING", NULL)) == 0 || (cJSON_Delete(r), 0), 5);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT(cJSON_IsString(r) && strcmp(r->valuestring, "PONG") == 0);
    cJSON_Delete(r);
}

static void test_stopped_bus(void)
{
    ts_service_stop(&svc);
    /* svc.bus was freed with the app: use a fresh service and stop its app
     * without destroying it. */
    ts_service_options o = {.service = SVC, .redis_url = redis.url, .bus = true, .wait_bus = 5};
    CU_ASSERT_EQUAL_FATAL(ts_service_start(&svc, &o), 0);
    CU_ASSERT_EQUAL(cmd(NULL, "PING", NULL), 0);
    daebus_app_stop(svc.app);
    daebus_app_wait(svc.app);
    cJSON *r = (cJSON *)1;
    CU_ASSERT_EQUAL(cmd(&r, "PING", NULL), DAEBUS_ESTATE);
    CU_ASSERT_PTR_NULL(r);
    daebus_app_destroy(svc.app);
    memset(&svc, 0, sizeof svc);
}

int main(void)
{
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("bus_store", init, cleanup);
    CU_add_test(s, "every reply type converted", test_reply_types);
    CU_add_test(s, "binary-safe arguments, raw read-back", test_binary_args_and_raw_readback);
    CU_add_test(s, "an error reply: EREPLY, text, counted", test_error_reply);
    CU_add_test(s, "a pipeline with one refused command", test_pipeline);
    CU_add_test(s, "bad arguments, a bus not running", test_bad_arguments);
    CU_add_test(s, "8 threads x 200 INCRs", test_many_threads);
    CU_add_test(s, "Redis killed: ECONN fast; back: works", test_redis_gone_and_back);
    CU_add_test(s, "a stopped bus: ESTATE", test_stopped_bus);
    return ts_run_cunit();
}
