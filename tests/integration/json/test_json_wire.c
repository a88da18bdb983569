/* The awkward numbers and strings through every path the framework prints
 * and parses JSON on, against a real Redis and real sockets: an HTTP JSON
 * reply, a WebSocket response and broadcast, a bus action reply (read raw)
 * and a bus broadcast, daebus-call's JSON argument and its output, and a
 * bus request that does not parse (an error reply instead of a time-out).
 *
 * IN is what Python's json.dumps writes for the table (", " and ": "
 * separators, \u0000, a lone surrogate); OUT is the one text every path must
 * print back: each number as the shortest text that reads back to the same
 * double, NUL as \u0000, the lone surrogate as U+FFFD. */
#include <sys/wait.h>
#include "../bus/common.h"
#include "../websocket/wsc.h"

#define SVC "json_svc"

#define NUMS_IN                                                                                    \
    "[0.1, 1e+300, 5e-324, -0.0, 9007199254740992, 1733400000123456, 0.30000000000000004, "        \
    "1e+21, 1.2345678901234568e+17, 1.5, -1, 0]"
#define NUMS_OUT                                                                                   \
    "[0.1,1e+300,5e-324,-0.0,9007199254740992,1733400000123456,0.30000000000000004,1e+21,"         \
    "1.2345678901234568e+17,1.5,-1,0]"
#define IN "{\"n\": " NUMS_IN ", \"s\": \"a\\u0000b\\ud800c\\u001f\\u00e9\"}"
#define OUT                                                                                        \
    "{\"n\":" NUMS_OUT ",\"s\":\"a\\u0000b\xEF\xBF\xBD"                                            \
    "c\\u001f\xC3\xA9\"}"

static ts_redis redis;
static ts_service svc;
static daebus_bus *bus;
static int http_port;

ROUTE(j_echo, "/echo", .methods = DAEBUS_POST)
{
    (void)user;
    return daebus_http_send_json(res, 200, daebus_http_request_payload(req));
}

SOCKET(j_ws_echo, "echo")
{
    daebus_ws_broadcast_to_all(daebus_ws_request_ws(req), daebus_ws_request_data(req), "table");
    return cJSON_Duplicate(daebus_ws_request_data(req), true);
}

ACTION(j_bus_echo, "echo")
{
    return daebus_bus_reply(req, payload);
}

ACTION(j_bus_bcast, "bcast")
{
    daebus_bus_broadcast(bus, "json_table", payload);
    return daebus_bus_reply_take(req, cJSON_CreateObject());
}

static int init(void)
{
    if (ts_redis_start(&redis, NULL) != 0)
        return -1;
    daebus_http_options ho = {.num_threads = 4};
    ts_service_options o = {.service = SVC,
                            .redis_url = redis.url,
                            .log_level = DAEBUS_LOG_CRITICAL,
                            .shutdown_timeout = 2,
                            .http_options = &ho,
                            .ws = true,
                            .bus = true,
                            .wait_bus = 5};
    if (ts_service_start(&svc, &o) != 0)
        return -1;
    bus = svc.bus;
    http_port = svc.port;
    return 0;
}

static int cleanup(void)
{
    ts_service_stop(&svc);
    ts_redis_stop(&redis);
    return 0;
}

/* Python reads OUT back to the very values it sent (float bits, -0.0, NUL, U+FFFD). */
static void test_python_reads_back(void)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c 'import json,math,sys; o=json.loads(sys.argv[1]); "
             "n=[0.1,1e300,5e-324,-0.0,2**53,1733400000123456,0.30000000000000004,1e21,"
             "123456789012345678.0,1.5,-1,0]; "
             "ok=[float(a).hex()==float(b).hex() for a,b in zip(o[\"n\"],n)]; "
             "sys.exit(0 if all(ok) and len(ok)==12 and math.copysign(1,o[\"n\"][3])<0 and "
             "o[\"s\"]==\"a\\x00b\\ufffdc\\x1f\\xe9\" else 1)' '%s'",
             OUT);
    CU_ASSERT_EQUAL(system(cmd), 0);
}

static void test_http_reply(void)
{
    ts_http_response r;
    CU_ASSERT_EQUAL_FATAL(ts_http(http_port, "POST", "/echo", "Content-Type: application/json\r\n",
                                  IN, strlen(IN), &r),
                          0);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_STRING_EQUAL(r.body, OUT);
    ts_http_free(&r);
}

static void test_ws_reply_and_broadcast(void)
{
    wsc c;
    CU_ASSERT_EQUAL_FATAL(wsc_connect(&c, http_port, "/", NULL), 0);
    free(wsc_recv_text(&c, 5000)); /* the welcome */
    wsc_send_text(&c, "{\"type\": \"echo\", \"data\": " IN ", \"request_id\": \"r1\"}");
    int saw_response = 0, saw_broadcast = 0;
    for (int i = 0; i < 2; i++) {
        char *t = wsc_recv_text(&c, 5000);
        CU_ASSERT_PTR_NOT_NULL_FATAL(t);
        int has_data = strstr(t, "\"data\":" OUT) != NULL;
        if (strstr(t, "\"type\":\"response\""))
            saw_response += has_data;
        else if (strstr(t, "\"type\":\"table\""))
            saw_broadcast += has_data;
        if (!has_data)
            fprintf(stderr, "unexpected frame: %s\n", t);
        free(t);
    }
    CU_ASSERT_EQUAL(saw_response, 1);
    CU_ASSERT_EQUAL(saw_broadcast, 1);
    wsc_close(&c);
}

static void test_bus_reply_raw(void)
{
    redisContext *sub = raw_subscribe(redis.port, "raw:reply");
    CU_ASSERT_PTR_NOT_NULL_FATAL(sub);
    CU_ASSERT_EQUAL(raw_publish(redis.port, SVC,
                                "{\"action\": \"echo\", \"payload\": " IN
                                ", \"reply_to\": \"raw:reply\", \"request_id\": \"q1\"}"),
                    1);
    char *t = raw_next(sub);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "\"status\":\"success\",\"payload\":" OUT ","));
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "\"request_id\":\"q1\""));
    free(t);
    redisFree(sub);
}

static void test_bus_broadcast_raw(void)
{
    redisContext *sub = raw_subscribe(redis.port, "json_table");
    CU_ASSERT_PTR_NOT_NULL_FATAL(sub);
    raw_publish(redis.port, SVC,
                "{\"action\": \"bcast\", \"payload\": " IN
                ", \"reply_to\": \"raw:ignored\", \"request_id\": \"q2\"}");
    char *t = raw_next(sub);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    CU_ASSERT_STRING_EQUAL(t, OUT);
    free(t);
    redisFree(sub);
}

static void test_daebus_call(void)
{
    const char *bin = getenv("DAEBUS_BINARY_DIR");
    CU_ASSERT_PTR_NOT_NULL_FATAL(bin);
    char cmd[2048], out[4096];
    /* its JSON argument in, the reply out */
    snprintf(cmd, sizeof cmd, "%s/bin/daebus-call " SVC " echo '%s' --redis %s", bin, IN,
             redis.url);
    CU_ASSERT_EQUAL(run(cmd, out, sizeof out), 0);
    CU_ASSERT_STRING_EQUAL(out, OUT "\n");
    /* --publish: the argument as the caller prints it */
    redisContext *sub = raw_subscribe(redis.port, "json_pub");
    CU_ASSERT_PTR_NOT_NULL_FATAL(sub);
    snprintf(cmd, sizeof cmd, "%s/bin/daebus-call --publish json_pub '%s' --redis %s", bin, IN,
             redis.url);
    CU_ASSERT_EQUAL(run(cmd, out, sizeof out), 0);
    char *t = raw_next(sub);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    CU_ASSERT_STRING_EQUAL(t, OUT);
    free(t);
    redisFree(sub);
}

/* Reads the next reply on sub: status, request_id and the error text. */
static void expect_error_reply(redisContext *sub, const char *request_id)
{
    char *t = raw_next(sub);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    cJSON *r = daebus_json_parse(t, strlen(t), NULL);
    CU_ASSERT_STRING_EQUAL(cJSON_GetStringValue(cJSON_GetObjectItem(r, "status")), "error");
    CU_ASSERT_STRING_EQUAL(cJSON_GetStringValue(cJSON_GetObjectItem(r, "request_id")), request_id);
    const char *e =
        cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "payload"), "error"));
    CU_ASSERT_PTR_NOT_NULL(e);
    CU_ASSERT_PTR_NOT_NULL(e ? strstr(e, "invalid JSON") : NULL);
    CU_ASSERT_TRUE(cJSON_IsTrue(cJSON_GetObjectItem(r, "final")));
    cJSON_Delete(r);
    free(t);
}

/* A request that is not JSON but names its reply channel and id gets an
 * error reply (the caller would otherwise wait for its time-out). */
static void test_unparsable_request_answered(void)
{
    redisContext *sub = raw_subscribe(redis.port, "raw:bad");
    CU_ASSERT_PTR_NOT_NULL_FATAL(sub);
    /* Python's json.dumps writes NaN, which is not JSON */
    raw_publish(redis.port, SVC,
                "{\"action\": \"echo\", \"payload\": {\"x\": NaN}, \"reply_to\": \"raw:bad\", "
                "\"request_id\": \"bad-1\"}");
    expect_error_reply(sub, "bad-1");
    /* a reply_to inside the payload is not the request's; a trailing comma */
    raw_publish(redis.port, SVC,
                "{\"action\":\"echo\",\"payload\":{\"reply_to\":\"wrong\",\"request_id\":\"w\"},"
                "\"request_id\":\"bad-2\",\"reply_to\":\"raw:bad\",}");
    expect_error_reply(sub, "bad-2");
    /* the service is still serving */
    raw_publish(redis.port, SVC,
                "{\"action\":\"echo\",\"payload\":{\"ok\":1},\"reply_to\":\"raw:bad\","
                "\"request_id\":\"good\"}");
    char *t = raw_next(sub);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    CU_ASSERT_PTR_NOT_NULL(strstr(t, "\"status\":\"success\""));
    free(t);
    redisFree(sub);
}

int main(void)
{
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("json wire", init, cleanup);
    CU_add_test(s, "python reads OUT back", test_python_reads_back);
    CU_add_test(s, "HTTP reply", test_http_reply);
    CU_add_test(s, "WebSocket reply and broadcast", test_ws_reply_and_broadcast);
    CU_add_test(s, "bus reply (raw)", test_bus_reply_raw);
    CU_add_test(s, "bus broadcast (raw)", test_bus_broadcast_raw);
    CU_add_test(s, "daebus-call", test_daebus_call);
    CU_add_test(s, "unparsable request answered", test_unparsable_request_answered);
    return ts_run_cunit();
}
