/* The pure wire-format functions (framework/bus/bus_parse.c) and their edge
 * cases: payload decoding rules, reply channel choice, response key order,
 * progress payloads, response parsing, Redis URL redaction, reading reply_to
 * and request_id from the kept ends of a message cut for its size. No Redis
 * needed. */
#include <math.h>
#include <string.h>
#include "bus_parse.h"
#include "redis_conn.h"
#include "testsupport.h"

static cJSON *parse_payload(const char *msg)
{
    daebus__bus_envelope env;
    char why[64];
    if (daebus__bus_parse_request(msg, strlen(msg), &env, why, sizeof why) != 0)
        return NULL;
    cJSON *p = cJSON_Duplicate(env.payload, 1);
    daebus__bus_envelope_free(&env);
    return p;
}

static int payload_is(const char *msg, const char *expect)
{
    cJSON *p = parse_payload(msg), *e = cJSON_Parse(expect);
    int ok = p && e && cJSON_Compare(p, e, 1);
    cJSON_Delete(p);
    cJSON_Delete(e);
    return ok;
}

static void test_payload_rules(void)
{
    CU_ASSERT_TRUE(payload_is("{\"action\":\"a\",\"payload\":{\"k\":1}}", "{\"k\":1}"));
    CU_ASSERT_TRUE(payload_is("{\"action\":\"a\",\"payload\":\"{\\\"s\\\":2}\"}", "{\"s\":2}"));
    CU_ASSERT_TRUE(payload_is("{\"action\":\"a\",\"payload\":\"nope\"}", "{}"));
    CU_ASSERT_TRUE(payload_is("{\"action\":\"a\",\"payload\":\"{} x\"}", "{}"));
    CU_ASSERT_TRUE(payload_is("{\"action\":\"a\",\"payload\":null}", "null"));
    CU_ASSERT_TRUE(payload_is("{\"action\":\"a\",\"payload\":[1,2]}", "[1,2]"));
    CU_ASSERT_TRUE(payload_is("{\"action\":\"a\",\"payload\":5}", "5"));
    /* no payload key: {} for requests, the message minus action for fire-and-forget */
    CU_ASSERT_TRUE(payload_is("{\"action\":\"a\",\"request_id\":\"r\"}", "{}"));
    CU_ASSERT_TRUE(payload_is("{\"action\":\"a\",\"reply_to\":\"c\"}", "{}"));
    CU_ASSERT_TRUE(
        payload_is("{\"action\":\"a\",\"x\":1,\"service\":\"s\"}", "{\"x\":1,\"service\":\"s\"}"));
}

static void test_malformed(void)
{
    const char *bad[] = {"", "{", "{not json", "[1,2]", "42", "\"str\"", "{\"a\":1} x", "null"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        daebus__bus_envelope env;
        char why[64] = "";
        CU_ASSERT_EQUAL(daebus__bus_parse_request(bad[i], strlen(bad[i]), &env, why, sizeof why),
                        -1);
        CU_ASSERT_TRUE(why[0] != 0);
        CU_ASSERT_PTR_NULL(env.root);
    }
    /* Not NUL-terminated: only len bytes are read. */
    const char buf[] = {'{', '}', 'x', 'x'};
    daebus__bus_envelope env;
    CU_ASSERT_EQUAL(daebus__bus_parse_request(buf, 2, &env, NULL, 0), 0);
    daebus__bus_envelope_free(&env);
    /* Wrong field types are treated as absent. */
    const char *m = "{\"action\":5,\"reply_to\":[],\"service\":{},\"request_id\":{\"o\":1}}";
    CU_ASSERT_EQUAL(daebus__bus_parse_request(m, strlen(m), &env, NULL, 0), 0);
    CU_ASSERT_PTR_NULL(env.action);
    CU_ASSERT_PTR_NULL(env.reply_to);
    CU_ASSERT_PTR_NULL(env.service);
    CU_ASSERT_PTR_NOT_NULL(env.request_id);
    daebus__bus_envelope_free(&env);
    m = "{\"action\":\"\"}";
    CU_ASSERT_EQUAL(daebus__bus_parse_request(m, strlen(m), &env, NULL, 0), 0);
    CU_ASSERT_PTR_NULL(env.action);
    daebus__bus_envelope_free(&env);
    CU_ASSERT_PTR_NULL(daebus__bus_parse_object("[1]", 3));
    CU_ASSERT_PTR_NULL(daebus__bus_parse_object(NULL, 0));
}

static const char *channel_of(const char *msg, char *buf, size_t len)
{
    daebus__bus_envelope env;
    if (daebus__bus_parse_request(msg, strlen(msg), &env, NULL, 0) != 0)
        return "parse error";
    const char *c = daebus__bus_reply_channel(&env, "me", buf, len);
    daebus__bus_envelope_free(&env);
    return c ? c : "(none)";
}

static void test_reply_channel(void)
{
    char b[128];
    CU_ASSERT_STRING_EQUAL(channel_of("{\"reply_to\":\"r\",\"request_id\":1}", b, sizeof b), "r");
    CU_ASSERT_STRING_EQUAL(channel_of("{\"request_id\":1,\"service\":\"s\"}", b, sizeof b),
                           "s.responses");
    CU_ASSERT_STRING_EQUAL(channel_of("{\"request_id\":1}", b, sizeof b), "me.responses");
    CU_ASSERT_STRING_EQUAL(channel_of("{\"action\":\"x\"}", b, sizeof b), "(none)");
    CU_ASSERT_STRING_EQUAL(channel_of("{\"reply_to\":\"\"}", b, sizeof b), "(none)");
}

static void test_build_response(void)
{
    cJSON *p = cJSON_Parse("{\"a\":1}"), *id = cJSON_CreateString("r1");
    char *s = daebus__bus_build_response(false, p, id, true);
    CU_ASSERT_STRING_EQUAL(s, "{\"status\":\"success\",\"payload\":{\"a\":1},\"request_id\":\"r1\","
                              "\"final\":true}");
    cJSON_free(s);
    s = daebus__bus_build_response(true, NULL, NULL, false);
    CU_ASSERT_STRING_EQUAL(
        s, "{\"status\":\"error\",\"payload\":{},\"request_id\":null,\"final\":false}");
    cJSON_free(s);
    cJSON_Delete(p);
    cJSON_Delete(id);
}

static void test_progress_payload(void)
{
    cJSON *p = cJSON_Parse("{\"a\":1,\"progress_percentage\":3}");
    cJSON *o = daebus__bus_progress_payload(p, 150);
    char *s = cJSON_PrintUnformatted(o);
    CU_ASSERT_STRING_EQUAL(s, "{\"a\":1,\"progress_percentage\":100}");
    cJSON_free(s);
    cJSON_Delete(o);
    o = daebus__bus_progress_payload(p, -1); /* unchanged copy */
    CU_ASSERT_TRUE(cJSON_Compare(o, p, 1));
    cJSON_Delete(o);
    o = daebus__bus_progress_payload(p, NAN);
    CU_ASSERT_TRUE(cJSON_Compare(o, p, 1));
    cJSON_Delete(o);
    cJSON_Delete(p);
    p = cJSON_CreateNumber(7);
    o = daebus__bus_progress_payload(p, 0);
    s = cJSON_PrintUnformatted(o);
    CU_ASSERT_STRING_EQUAL(s, "{\"data\":7,\"progress_percentage\":0}");
    cJSON_free(s);
    cJSON_Delete(o);
    cJSON_Delete(p);
    o = daebus__bus_progress_payload(NULL, 42.5);
    s = cJSON_PrintUnformatted(o);
    CU_ASSERT_STRING_EQUAL(s, "{\"progress_percentage\":42.5}");
    cJSON_free(s);
    cJSON_Delete(o);
}

static void test_parse_response(void)
{
    daebus__bus_response r;
    const char *m =
        "{\"status\": \"error\", \"payload\": {\"error\": \"x\"}, \"request_id\": \"i\"}";
    CU_ASSERT_EQUAL(daebus__bus_parse_response(m, strlen(m), &r), 0);
    CU_ASSERT_TRUE(r.error);
    CU_ASSERT_TRUE(r.final); /* missing final = true */
    CU_ASSERT_STRING_EQUAL(r.request_id, "i");
    daebus__bus_response_free(&r);
    m = "{\"status\":\"progress\",\"final\":false,\"request_id\":7}";
    CU_ASSERT_EQUAL(daebus__bus_parse_response(m, strlen(m), &r), 0);
    CU_ASSERT_FALSE(r.final);
    CU_ASSERT_FALSE(r.error);
    CU_ASSERT_PTR_NULL(r.request_id); /* not a string: not ours */
    daebus__bus_response_free(&r);
    CU_ASSERT_EQUAL(daebus__bus_parse_response("nope", 4, &r), -1);
}

static int redacts_to(const char *url, size_t len, const char *want)
{
    char buf[128];
    daebus__redis_url_redact(url, buf, len);
    if (strcmp(buf, want) != 0)
        fprintf(stderr, "\n  redact(%s, %zu) = '%s', want '%s'\n", url ? url : "NULL", len, buf,
                want);
    return strcmp(buf, want) == 0;
}

/* scan of a message cut for its size: head = its first hn bytes, tail = its
 * last tn bytes (as the subscriber's size guard keeps them). */
static int cut_scan(const char *msg, size_t hn, size_t tn, char *rto, size_t rl, char *rid,
                    size_t il)
{
    size_t n = strlen(msg);
    hn = hn < n ? hn : n;
    tn = tn < n ? tn : n;
    return daebus__bus_scan_reply_cut(msg, hn, msg + n - tn, tn, rto, rl, rid, il);
}

static void test_scan_reply_cut(void)
{
    char rto[64], rid[40];
    /* The callers' shape: payload first, reply_to and request_id after it. */
    const char *m = "{\"action\":\"echo\",\"payload\":{\"data\":[1,1,1,1,1,1,1,1,1,1,1,1]},"
                    "\"reply_to\":\"caller:abc\", \"request_id\" : \"r-1\",\"service\":\"svc\"}";
    CU_ASSERT_EQUAL(cut_scan(m, 20, 80, rto, sizeof rto, rid, sizeof rid), 0);
    CU_ASSERT_STRING_EQUAL(rto, "caller:abc");
    CU_ASSERT_STRING_EQUAL(rid, "r-1");
    /* Neither end long enough: nothing read. */
    CU_ASSERT_EQUAL(cut_scan(m, 20, 30, rto, sizeof rto, rid, sizeof rid), -1);
    CU_ASSERT_STRING_EQUAL(rto, "");
    CU_ASSERT_STRING_EQUAL(rid, "");
    /* One from each end. */
    m = "{\"reply_to\":\"r.c\",\"payload\":[1,2,3,4,5,6,7,8,9,10],\"request_id\":\"x\"}";
    CU_ASSERT_EQUAL(cut_scan(m, 20, 18, rto, sizeof rto, rid, sizeof rid), 0);
    CU_ASSERT_STRING_EQUAL(rto, "r.c");
    CU_ASSERT_STRING_EQUAL(rid, "x");
    /* A response: literals (true, numbers, null) are stepped over. */
    m = "{\"status\":\"success\",\"payload\":{\"a\":[1,2]},\"request_id\":\"id-9\","
        "\"n\":-1.5e3,\"z\":null,\"final\":true}";
    CU_ASSERT_EQUAL(cut_scan(m, 10, 60, rto, sizeof rto, rid, sizeof rid), -1);
    CU_ASSERT_STRING_EQUAL(rid, "id-9");
    CU_ASSERT_STRING_EQUAL(rto, "");
    /* Members of a nested object are not the request's. */
    m = "{\"p\":[0,0,0,0,0,0,0,0,0,0,0,0,0],\"q\":{\"reply_to\":\"a\",\"request_id\":\"b\"}}";
    CU_ASSERT_EQUAL(cut_scan(m, 10, 40, rto, sizeof rto, rid, sizeof rid), -1);
    CU_ASSERT_STRING_EQUAL(rto, "");
    /* Escapes stop the backward walk: an escaped quote could be anywhere. */
    m = "{\"p\":[0,0,0,0,0,0,0,0,0,0,0,0,0],\"s\":\"x\\\",\\\"reply_to\\\":\\\"evil\\\",\\\""
        "request_id\\\":\\\"1\"}";
    CU_ASSERT_EQUAL(cut_scan(m, 10, 60, rto, sizeof rto, rid, sizeof rid), -1);
    CU_ASSERT_STRING_EQUAL(rto, "");
    CU_ASSERT_STRING_EQUAL(rid, "");
    /* The tail starting inside a string: its first quote is not trusted. */
    m = "{\"p\":[0,0,0,0,0,0,0,0,0,0,0,0,0],\"reply_to\":\"abcdef\",\"request_id\":\"1\"}";
    CU_ASSERT_EQUAL(cut_scan(m, 10, 37, rto, sizeof rto, rid, sizeof rid), -1);
    CU_ASSERT_STRING_EQUAL(rid, "1");
    CU_ASSERT_STRING_EQUAL(rto, "");
    /* Values too long for the buffer are not taken (a cut name is another channel). */
    m = "{\"p\":[0,0,0,0,0,0],\"reply_to\":\"0123456789abcdef\",\"request_id\":\"1\"}";
    CU_ASSERT_EQUAL(cut_scan(m, 5, 60, rto, 8, rid, sizeof rid), -1);
    CU_ASSERT_STRING_EQUAL(rto, "");
    CU_ASSERT_STRING_EQUAL(rid, "1");
    /* Not an object's end, empty input. */
    CU_ASSERT_EQUAL(cut_scan("[1,2,3]", 3, 3, rto, sizeof rto, rid, sizeof rid), -1);
    CU_ASSERT_EQUAL(daebus__bus_scan_reply_cut(NULL, 0, NULL, 0, rto, sizeof rto, rid, sizeof rid),
                    -1);
}

static void test_url_redaction(void)
{
    CU_ASSERT(redacts_to("redis://:pw@h:1/2", 128, "redis://***@h:1/2"));
    CU_ASSERT(redacts_to("redis://user:pw@h", 128, "redis://***@h"));
    CU_ASSERT(redacts_to("redis://:p@ss@h:6379", 128, "redis://***@h:6379"));
    CU_ASSERT(redacts_to("redis://h:1/0", 128, "redis://h:1/0"));
    CU_ASSERT(redacts_to("unix:///tmp/s?db=1&password=pw&x=y", 128,
                         "unix:///tmp/s?db=1&password=***&x=y"));
    CU_ASSERT(redacts_to("unix:///tmp/s?password=pw", 128, "unix:///tmp/s?password=***"));
    CU_ASSERT(redacts_to("unix://:pw@/tmp/s", 128, "unix://***@/tmp/s"));
    CU_ASSERT(redacts_to("host:pw@x", 128, "***@x")); /* no scheme: all before '@' */
    /* cut short: the mask comes before anything after it, never a prefix of the secret */
    CU_ASSERT(redacts_to("redis://:secretpw@host", 12, "redis://***"));
    CU_ASSERT(redacts_to("redis://:secretpw@host", 9, "redis://"));
    CU_ASSERT(redacts_to("unix:///s?password=secret", 22, "unix:///s?password=**"));
    CU_ASSERT(redacts_to(NULL, 8, ""));
}

static void test_redis_url(void)
{
    daebus__redis_url u;
    daebus_error e = {0};
    CU_ASSERT_EQUAL(daebus__redis_url_parse("redis://localhost", &u, &e), 0);
    CU_ASSERT_STRING_EQUAL(u.host, "localhost");
    CU_ASSERT_EQUAL(u.port, 6379);
    CU_ASSERT_EQUAL(u.db, 0);
    CU_ASSERT_FALSE(u.is_unix);
    CU_ASSERT_EQUAL(daebus__redis_url_parse("redis://:p%40ss@10.0.0.1:6380/3", &u, &e), 0);
    CU_ASSERT_STRING_EQUAL(u.password, "p@ss");
    CU_ASSERT_STRING_EQUAL(u.username, "");
    CU_ASSERT_STRING_EQUAL(u.host, "10.0.0.1");
    CU_ASSERT_EQUAL(u.port, 6380);
    CU_ASSERT_EQUAL(u.db, 3);
    CU_ASSERT_EQUAL(daebus__redis_url_parse("redis://alice:pw@[::1]:7000", &u, &e), 0);
    CU_ASSERT_STRING_EQUAL(u.username, "alice");
    CU_ASSERT_STRING_EQUAL(u.host, "::1");
    CU_ASSERT_EQUAL(u.port, 7000);
    CU_ASSERT_EQUAL(daebus__redis_url_parse("unix:///run/redis.sock", &u, &e), 0);
    CU_ASSERT_TRUE(u.is_unix);
    CU_ASSERT_STRING_EQUAL(u.path, "/run/redis.sock");
    CU_ASSERT_EQUAL(daebus__redis_url_parse("unix://:pw@/tmp/r.sock?db=2", &u, &e), 0);
    CU_ASSERT_STRING_EQUAL(u.password, "pw");
    CU_ASSERT_STRING_EQUAL(u.path, "/tmp/r.sock");
    CU_ASSERT_EQUAL(u.db, 2);
    CU_ASSERT_EQUAL(daebus__redis_url_parse("rediss://host:6380", &u, &e), DAEBUS_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "TLS"));
    const char *bad[] = {
        "http://x",       "redis://h:0", "redis://h:70000", "redis://h:12a", "redis://h/x",
        "redis://:%zz@h", "unix://",     "unix://relative", "redis://[::1",  "",
        "redis://h:1?x=1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        e.message[0] = 0;
        CU_ASSERT_EQUAL(daebus__redis_url_parse(bad[i], &u, &e), DAEBUS_EINVAL);
        CU_ASSERT_TRUE(e.message[0] != 0);
    }
    CU_ASSERT_EQUAL(daebus__redis_url_parse(NULL, &u, &e), DAEBUS_EINVAL);
}

/* redis-sentinel://: the sentinels in order, the master's name and db, the
 * master's password before '@', the sentinels' as a parameter; both hidden. */
static void test_sentinel_url(void)
{
    daebus__redis_url u;
    daebus_error e = {0};
    const char *url = "redis-sentinel://:m%40pw@10.0.0.1:26379,[::1]:26380,s3/mymaster/2"
                      "?sentinel_password=sp";
    CU_ASSERT_EQUAL(daebus__redis_url_parse(url, &u, &e), 0);
    CU_ASSERT_EQUAL(u.n_sentinels, 3);
    CU_ASSERT_STRING_EQUAL(u.sentinels[0].host, "10.0.0.1");
    CU_ASSERT_EQUAL(u.sentinels[0].port, 26379);
    CU_ASSERT_STRING_EQUAL(u.sentinels[1].host, "::1");
    CU_ASSERT_EQUAL(u.sentinels[1].port, 26380);
    CU_ASSERT_STRING_EQUAL(u.sentinels[2].host, "s3");
    CU_ASSERT_EQUAL(u.sentinels[2].port, 26379); /* Sentinel's default port */
    CU_ASSERT_STRING_EQUAL(u.master_name, "mymaster");
    CU_ASSERT_EQUAL(u.db, 2);
    CU_ASSERT_STRING_EQUAL(u.password, "m@pw");
    CU_ASSERT_STRING_EQUAL(u.sentinel_password, "sp");
    CU_ASSERT_FALSE(u.is_unix);
    char d[200];
    daebus__redis_url_describe(&u, d, sizeof d);
    CU_ASSERT_STRING_EQUAL(d,
                           "redis-sentinel://:***@10.0.0.1:26379,[::1]:26380,s3:26379/mymaster/2");
    CU_ASSERT(redacts_to(url, 128,
                         "redis-sentinel://***@10.0.0.1:26379,[::1]:26380,s3/mymaster/2"
                         "?sentinel_password=***"));
    CU_ASSERT(redacts_to("redis-sentinel://h/m?sentinel_password=x&a=1", 128,
                         "redis-sentinel://h/m?sentinel_password=***&a=1"));
    CU_ASSERT_EQUAL(daebus__redis_url_parse("redis-sentinel://h:1/m", &u, &e), 0);
    CU_ASSERT_EQUAL(u.n_sentinels, 1);
    CU_ASSERT_EQUAL(u.db, 0);
    CU_ASSERT_STRING_EQUAL(u.password, "");
    CU_ASSERT_EQUAL(daebus_redis_url_check("redis-sentinel://a,b,c,d,e,f,g,h/m", &e), 0);
    const char *bad[] = {"redis-sentinel://h:1",
                         "redis-sentinel://h:1/",
                         "redis-sentinel://h:1,,h:2/m",
                         "redis-sentinel://a,b,c,d,e,f,g,h,i/m",
                         "redis-sentinel://h:0/m",
                         "redis-sentinel://h:1/m x",
                         "redis-sentinel://h:1/m/x",
                         "redis-sentinel://h:1/m?db=1",
                         "redis-sentinel://h:1/m?sentinel_password=",
                         "redis-sentinel://[::1/m"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        e.message[0] = 0;
        CU_ASSERT_EQUAL(daebus__redis_url_parse(bad[i], &u, &e), DAEBUS_EINVAL);
        CU_ASSERT_TRUE(e.message[0] != 0);
    }
    /* The master's password given as a parameter: refused, and not quoted. */
    CU_ASSERT_EQUAL(daebus__redis_url_parse("redis-sentinel://h/m?password=S3cr3t", &u, &e),
                    DAEBUS_EINVAL);
    CU_ASSERT_PTR_NULL(strstr(e.message, "S3cr3t"));
    CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "before '@'"));
}

/* The transport's one reconnect policy: doubling, capped, reset on success. */
static void test_backoff(void)
{
    daebus__backoff b;
    daebus__backoff_init(&b, 0.1, 0.5);
    CU_ASSERT_DOUBLE_EQUAL(daebus__backoff_next(&b), 0.1, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(daebus__backoff_next(&b), 0.2, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(daebus__backoff_next(&b), 0.4, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(daebus__backoff_next(&b), 0.5, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(daebus__backoff_next(&b), 0.5, 1e-9);
    daebus__backoff_reset(&b);
    CU_ASSERT_DOUBLE_EQUAL(daebus__backoff_next(&b), 0.1, 1e-9);
    daebus__backoff_init(&b, 0, 0); /* defaults: 0.1, max raised to initial */
    CU_ASSERT_DOUBLE_EQUAL(daebus__backoff_next(&b), 0.1, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(daebus__backoff_next(&b), 0.1, 1e-9);
}

int main(void)
{
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("bus_parse", NULL, NULL);
    CU_add_test(s, "payload rules", test_payload_rules);
    CU_add_test(s, "malformed input", test_malformed);
    CU_add_test(s, "reply channel", test_reply_channel);
    CU_add_test(s, "build response", test_build_response);
    CU_add_test(s, "redis URL", test_redis_url);
    CU_add_test(s, "redis-sentinel URL", test_sentinel_url);
    CU_add_test(s, "reconnect backoff", test_backoff);
    CU_add_test(s, "progress payload", test_progress_payload);
    CU_add_test(s, "parse response", test_parse_response);
    CU_add_test(s, "URL redaction", test_url_redaction);
    CU_add_test(s, "reply_to and request_id of a cut message", test_scan_reply_cut);
    return ts_run_cunit();
}
