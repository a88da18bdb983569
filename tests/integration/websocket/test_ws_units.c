/* Unit tests of the WebSocket component's pure parts: client envelope
 * parsing, UTF-8 validation, close payloads, server envelopes, the id
 * registry and the sliding-window rate limiter (PROTOCOL.md semantics). */
#include <stdlib.h>
#include <string.h>
#include <CUnit/Basic.h>
#include "daebus/daebus.h"
#include "daebus/error.h"
#include "testsupport.h"
#include "textlist.h"
#include "utf8.h"
#include "ws_parse.h"
#include "json.h"
#include "ws_registry.h"

static void test_parse(void)
{
    ws_message m;
    const char *s = "{\"type\":\"chat\",\"data\":{\"a\":1},\"request_id\":\"r1\"}";
    CU_ASSERT_EQUAL(daebus__ws_parse_message(s, strlen(s), &m), WS_PARSE_OK);
    CU_ASSERT_STRING_EQUAL(m.type, "chat");
    CU_ASSERT_TRUE(cJSON_IsObject(m.data));
    CU_ASSERT_STRING_EQUAL(m.request_id->valuestring, "r1");
    daebus__ws_message_free(&m);
    s = "{\"type\":\"x\",\"request_id\":5} \n";
    CU_ASSERT_EQUAL(daebus__ws_parse_message(s, strlen(s), &m), WS_PARSE_OK);
    CU_ASSERT_PTR_NULL(m.data);
    CU_ASSERT_EQUAL(m.request_id->valueint, 5);
    daebus__ws_message_free(&m);
    s = "{\"type\":\"x\",\"request_id\":{}}";
    CU_ASSERT_EQUAL(daebus__ws_parse_message(s, strlen(s), &m), WS_PARSE_OK);
    CU_ASSERT_PTR_NULL(m.request_id);
    daebus__ws_message_free(&m);
    /* not NUL-terminated: only len bytes count */
    char buf[] = "{\"type\":\"ab\"}GARBAGE";
    CU_ASSERT_EQUAL(daebus__ws_parse_message(buf, 13, &m), WS_PARSE_OK);
    daebus__ws_message_free(&m);
    CU_ASSERT_EQUAL(daebus__ws_parse_message(buf, sizeof buf - 1, &m), WS_PARSE_INVALID_JSON);
    CU_ASSERT_EQUAL(daebus__ws_parse_message("{bad", 4, &m), WS_PARSE_INVALID_JSON);
    CU_ASSERT_EQUAL(daebus__ws_parse_message("", 0, &m), WS_PARSE_INVALID_JSON);
    CU_ASSERT_EQUAL(daebus__ws_parse_message("[1,2]", 5, &m), WS_PARSE_NOT_OBJECT);
    CU_ASSERT_EQUAL(daebus__ws_parse_message("\"x\"", 3, &m), WS_PARSE_NOT_OBJECT);
    const char *notype[] = {"{}", "{\"type\":\"\"}", "{\"type\":null}", "{\"type\":5}"};
    for (size_t i = 0; i < 4; i++) {
        CU_ASSERT_EQUAL(daebus__ws_parse_message(notype[i], strlen(notype[i]), &m),
                        WS_PARSE_NO_TYPE);
        daebus__ws_message_free(&m);
    }
}

static void test_depth(void)
{
    CU_ASSERT_TRUE(daebus__json_depth_ok("{\"a\":[[1]]}", 11, 3));
    CU_ASSERT_FALSE(daebus__json_depth_ok("{\"a\":[[1]]}", 11, 2));
    /* brackets inside strings (and escaped quotes) do not count */
    const char *s = "{\"a\":\"[[[[\\\"[[[\"}";
    CU_ASSERT_TRUE(daebus__json_depth_ok(s, strlen(s), 1));
}

static void test_utf8(void)
{
    CU_ASSERT_TRUE(daebus__utf8_valid("", 0));
    CU_ASSERT_TRUE(daebus__utf8_valid("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80", 16));
    CU_ASSERT_FALSE(daebus__utf8_valid("\xff", 1));
    CU_ASSERT_FALSE(daebus__utf8_valid("\xc3", 1));             /* truncated */
    CU_ASSERT_FALSE(daebus__utf8_valid("\xc0\xaf", 2));         /* overlong */
    CU_ASSERT_FALSE(daebus__utf8_valid("\xe0\x80\xaf", 3));     /* overlong */
    CU_ASSERT_FALSE(daebus__utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    CU_ASSERT_FALSE(daebus__utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    CU_ASSERT_FALSE(daebus__utf8_valid("\xe2\x82", 2));
}

static void test_close_payload(void)
{
    char p[125];
    size_t n = daebus__ws_close_payload(1001, "Server shutting down", p);
    CU_ASSERT_EQUAL(n, 2 + strlen("Server shutting down"));
    CU_ASSERT_EQUAL(daebus__ws_close_code(p, n), 1001);
    char longr[300];
    memset(longr, 'a', sizeof longr);
    longr[299] = '\0';
    longr[121] = '\xc3'; /* a 2-byte sequence across the 123-byte cut */
    longr[122] = '\xa9';
    longr[123] = '\xc3';
    longr[124] = '\xa9';
    n = daebus__ws_close_payload(1000, longr, p);
    CU_ASSERT(n <= 125);
    CU_ASSERT_EQUAL(daebus__ws_close_code(p, n), 1000); /* reason still valid UTF-8 */
    CU_ASSERT_EQUAL(daebus__ws_close_code(p, 0), 1005);
    CU_ASSERT_EQUAL(daebus__ws_close_code(p, 1), -1);
    CU_ASSERT_EQUAL(daebus__ws_close_code("\x03\xed", 2), -1); /* 1005 may not be sent */
    CU_ASSERT_EQUAL(daebus__ws_close_code("\x0f\xa1", 2), 4001);
}

static void test_envelopes(void)
{
    size_t n;
    cJSON *d = cJSON_Parse("{\"a\":[1,2]}");
    cJSON *rid = cJSON_CreateString("r-1");
    char *s = daebus__ws_envelope("response", d, rid, &n);
    CU_ASSERT_STRING_EQUAL(s,
                           "{\"type\":\"response\",\"data\":{\"a\":[1,2]},\"request_id\":\"r-1\"}");
    CU_ASSERT_EQUAL(n, strlen(s));
    free(s);
    s = daebus__ws_envelope("broadcast", d, NULL, &n);
    CU_ASSERT_STRING_EQUAL(s, "{\"type\":\"broadcast\",\"data\":{\"a\":[1,2]}}");
    free(s);
    /* data survives (references are not freed) */
    CU_ASSERT_EQUAL(cJSON_GetArraySize(cJSON_GetObjectItem(d, "a")), 2);
    s = daebus__ws_response_envelope(d, rid, &n);
    CU_ASSERT_STRING_EQUAL(s, "{\"type\":\"response\",\"data\":{\"a\":[1,2]},\"request_id\":"
                              "\"r-1\",\"success\":true}");
    free(s);
    s = daebus__ws_error_envelope("Rate limit exceeded", 60, &n);
    CU_ASSERT_STRING_EQUAL(s, "{\"type\":\"error\",\"error\":\"Rate limit exceeded\","
                              "\"retry_after\":60,\"success\":false}");
    free(s);
    s = daebus__ws_error_envelope_rid("Rate limit exceeded", 60, rid, &n);
    CU_ASSERT_STRING_EQUAL(s, "{\"type\":\"error\",\"error\":\"Rate limit exceeded\","
                              "\"retry_after\":60,\"request_id\":\"r-1\",\"success\":false}");
    free(s);
    s = daebus__ws_error_envelope("Invalid JSON", -1, &n);
    CU_ASSERT_STRING_EQUAL(s, "{\"type\":\"error\",\"error\":\"Invalid JSON\",\"success\":false}");
    free(s);
    s = daebus__ws_handler_error_envelope("boom", rid, &n);
    CU_ASSERT_STRING_EQUAL(s, "{\"type\":\"error\",\"data\":{\"error\":\"boom\"},\"request_id\":"
                              "\"r-1\",\"success\":false,\"error\":\"boom\"}");
    free(s);
    cJSON_Delete(d);
    cJSON_Delete(rid);
}

/* The request_id of a message that does not parse. */
static char *scanned(const char *text)
{
    cJSON *v = daebus__ws_scan_request_id(text, strlen(text));
    char *s = v ? cJSON_PrintUnformatted(v) : NULL;
    cJSON_Delete(v);
    return s;
}

static void test_scan_request_id(void)
{
    static const struct {
        const char *text, *want; /* want NULL: none found */
    } cases[] = {
        {"{\"type\":\"x\",\"request_id\":\"r-1\",", "\"r-1\""},
        {"{\"request_id\" : 42 , \"data\": {oops}", "42"},
        {"{\"data\":{\"request_id\":\"inner\"},\"request_id\":-7.5e1,", "-75"},
        {"{\"request_id\":\"a\\\"b\\u00e9\"} trailing", "\"a\\\"b\xc3\xa9\""},
        {"  {\"x\":\"\\\"request_id\\\":1\",\"request_id\":\"ok\"", "\"ok\""},
        {"{\"data\":{\"request_id\":\"inner\"}", NULL}, /* only nested */
        /* a "publish" frame (TypeScript client): its data's id */
        {"{\"type\":\"publish\",\"data\":{\"a\":{\"request_id\":1},\"request_id\":\"req_1\"",
         "\"req_1\""},
        {"{\"data\":{\"request_id\":7},\"type\":\"publish\",", "7"},
        {"{\"type\":\"publish\",\"x\":{\"request_id\":1},\"data\":[{\"request_id\":2}]", NULL},
        {"{\"type\":\"publish\",\"data\":{\"b\":[1,{\"request_id\":3}]}", NULL},
        {"{\"type\":\"other\",\"data\":{\"request_id\":\"inner\"}", NULL},
        {"{\"type\":\"publish\",\"data\":{\"request_id\":\"in\"},\"request_id\":\"top\"",
         "\"top\""},
        {"{\"x\":\"request_id\",\"y\":1", NULL}, /* a value, not a key */
        {"[{\"request_id\":1}]", NULL},          /* not an object */
        {"{\"request_id\":null,", NULL},         /* neither string nor number */
        {"{\"request_id\":{\"a\":1}", NULL},
        {"{\"request_id\":\"unterminated", NULL},
        {"{\"request_id\":\"\xff\xfe\"", NULL}, /* not UTF-8 */
        {"{\"a\":1}{\"request_id\":2}", NULL},  /* after the outer object */
        {"", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *got = scanned(cases[i].text);
        if (cases[i].want) {
            CU_ASSERT_STRING_EQUAL(got ? got : "(none)", cases[i].want);
        } else {
            CU_ASSERT_PTR_NULL(got);
        }
        free(got);
    }
}

static void test_registry(void)
{
    ws_registry *r = ws_registry_create();
    int vals[300];
    char key[32];
    for (int i = 0; i < 300; i++) {
        snprintf(key, sizeof key, "user_%d", i);
        CU_ASSERT_EQUAL(ws_registry_insert(r, key, &vals[i]), 0);
    }
    CU_ASSERT_EQUAL(ws_registry_insert(r, "user_7", &vals[0]), DAEBUS_EEXIST);
    CU_ASSERT_EQUAL(ws_registry_count(r), 300);
    CU_ASSERT_PTR_EQUAL(ws_registry_find(r, "user_299"), &vals[299]);
    CU_ASSERT_PTR_NULL(ws_registry_find(r, "user_300"));
    CU_ASSERT_PTR_EQUAL(ws_registry_remove(r, "user_0"), &vals[0]);
    CU_ASSERT_PTR_NULL(ws_registry_remove(r, "user_0"));
    CU_ASSERT_PTR_EQUAL(ws_registry_remove(r, "user_150"), &vals[150]);
    void *out[400];
    size_t n = ws_registry_values(r, out, 400);
    CU_ASSERT_EQUAL(n, 298);
    CU_ASSERT_PTR_EQUAL(out[0], &vals[1]); /* oldest first */
    CU_ASSERT_PTR_EQUAL(out[149], &vals[151]);
    CU_ASSERT_PTR_EQUAL(out[297], &vals[299]);
    CU_ASSERT_EQUAL(ws_registry_insert(r, "user_0", &vals[0]), 0);
    n = ws_registry_values(r, out, 400);
    CU_ASSERT_PTR_EQUAL(out[n - 1], &vals[0]);
    ws_registry_destroy(r);
}

static void test_rate(void)
{
    ws_rate r = {0};
    /* 5 per 3 s: messages 0..4 pass, 5..7 do not, and do not count */
    for (int i = 0; i < 5; i++)
        CU_ASSERT_TRUE(ws_rate_allow(&r, 5, 3.0, 100.0 + i * 0.1));
    for (int i = 0; i < 3; i++)
        CU_ASSERT_FALSE(ws_rate_allow(&r, 5, 3.0, 100.6 + i * 0.1));
    /* the window slides: the first one expires at 103.0 */
    CU_ASSERT_FALSE(ws_rate_allow(&r, 5, 3.0, 102.95));
    CU_ASSERT_TRUE(ws_rate_allow(&r, 5, 3.0, 103.05));
    CU_ASSERT_FALSE(ws_rate_allow(&r, 5, 3.0, 103.06));
    /* a client that keeps sending is let through as the window moves */
    int passed = 0;
    for (int i = 0; i < 100; i++)
        passed += ws_rate_allow(&r, 5, 3.0, 104.0 + i * 0.1);
    CU_ASSERT_EQUAL(passed, 19); /* 4 + 1 + 4 + 1 + 4 + 1 + 4: exactly 5 per 3 s */
    /* changing max keeps the newest entries */
    CU_ASSERT_FALSE(ws_rate_allow(&r, 2, 3.0, 113.95));
    CU_ASSERT_TRUE(ws_rate_allow(&r, 100, 3.0, 113.96));
    ws_rate_free(&r);
    CU_ASSERT_TRUE(ws_rate_allow(&r, 0, 1.0, 1.0)); /* disabled */
}

/* The upgrade paths (exact) and allowed origins (any case) are comma lists. */
static void test_strlist(void)
{
    const char *paths = " /, /ws ,/chat\t,,";
    CU_ASSERT_TRUE(daebus__list_has(paths, "/", 1, false));
    CU_ASSERT_TRUE(daebus__list_has(paths, "/ws", 3, false));
    CU_ASSERT_TRUE(daebus__list_has(paths, "/chat", 5, false));
    CU_ASSERT_FALSE(daebus__list_has(paths, "/WS", 3, false));
    CU_ASSERT_TRUE(daebus__list_has(paths, "/WS", 3, true));
    CU_ASSERT_FALSE(daebus__list_has(paths, "/w", 2, false));
    CU_ASSERT_FALSE(daebus__list_has(paths, "", 0, false));
    CU_ASSERT_FALSE(daebus__list_has(NULL, "/", 1, false));
    CU_ASSERT_FALSE(daebus__list_has(paths, NULL, 1, false));
    CU_ASSERT_TRUE(daebus__list_has("https://A.example", "https://a.example", 17, true));
}

static void test_attach_order(void)
{
    daebus_app_options o = DAEBUS_APP_OPTIONS_INIT;
    o.no_signals = true;
    o.log_level = DAEBUS_LOG_ERROR + 1;
    daebus_app *app = daebus_app_create(&o, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(app);
    daebus_error err;
    daebus_ws_options bad = DAEBUS_WS_OPTIONS_INIT;
    bad.max_clients = -1;
    CU_ASSERT_PTR_NULL(daebus_ws_create(&bad, &err));
    CU_ASSERT_EQUAL(err.code, DAEBUS_EINVAL);
    daebus_ws *ws = daebus_ws_create(NULL, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ws);
    /* before HTTP: refused, and freed (attach takes it on every path) */
    CU_ASSERT_EQUAL(daebus_ws_attach(ws, app), DAEBUS_EORDER);
    CU_ASSERT_PTR_NULL(daebus_app_websocket(app));
    ws = daebus_ws_create(NULL, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ws);
    daebus_http *http = daebus_http_create(NULL, NULL);
    CU_ASSERT_EQUAL_FATAL(daebus_http_attach(http, app), 0);
    CU_ASSERT_EQUAL(daebus_ws_attach(ws, app), 0);
    CU_ASSERT_PTR_EQUAL(daebus_app_websocket(app), ws);
    daebus_ws *ws2 = daebus_ws_create(NULL, NULL);
    CU_ASSERT_EQUAL(daebus_ws_attach(ws2, app), DAEBUS_EEXIST); /* freed ws2 */
    /* not running: the API answers sensibly */
    CU_ASSERT_EQUAL(daebus_ws_get_client_count(ws), 0);
    CU_ASSERT_EQUAL(daebus_ws_send_to_client(ws, "x", NULL, NULL), DAEBUS_ENOENT);
    CU_ASSERT_EQUAL(daebus_ws_graceful_shutdown(ws, 0.1, NULL), DAEBUS_ESTATE);
    CU_ASSERT_EQUAL(daebus_ws_enable_rate_limiting(ws, 0, 0), 0);
    daebus_ws_stats st;
    CU_ASSERT_EQUAL(daebus_ws_get_stats(ws, &st), 0);
    CU_ASSERT_EQUAL(st.clients, 0);
    daebus_app_destroy(app); /* frees http and ws */
}

int main(void)
{
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("ws_units", NULL, NULL);
    CU_add_test(s, "parse", test_parse);
    CU_add_test(s, "utf8", test_utf8);
    CU_add_test(s, "nesting depth", test_depth);
    CU_add_test(s, "close payload", test_close_payload);
    CU_add_test(s, "envelopes", test_envelopes);
    CU_add_test(s, "request_id of unparsed messages", test_scan_request_id);
    CU_add_test(s, "registry", test_registry);
    CU_add_test(s, "rate limiter", test_rate);
    CU_add_test(s, "comma lists", test_strlist);
    CU_add_test(s, "attach order and options", test_attach_order);
    return ts_run_cunit();
}
