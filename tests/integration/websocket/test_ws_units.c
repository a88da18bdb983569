/* Unit tests of the WebSocket component's pure parts: client envelope
 * parsing, UTF-8 validation, close payloads, server envelopes, the id
 * registry and the sliding-window rate limiter (PROTOCOL.md semantics); the
 * outbound frames' header (all three length forms), envelopes printed
 * straight into frames, and the send-buffer room bound (ws_io.c). */
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <CUnit/Basic.h>
#include <civetweb.h>
#include "daebus/daebus.h"
#include "daebus/error.h"
#include "testsupport.h"
#include "textlist.h"
#include "utf8.h"
#include "ws_io.h"
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

/* ---- outbound frames (ws_io.c) ---- */

static void test_frame_head(void)
{
    unsigned char h[10];
    /* opcode in the low bits, FIN set, no RSV, no mask */
    const int ops[] = {MG_WEBSOCKET_OPCODE_TEXT, MG_WEBSOCKET_OPCODE_BINARY,
                       MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE, MG_WEBSOCKET_OPCODE_PING,
                       MG_WEBSOCKET_OPCODE_PONG};
    const unsigned char first[] = {0x81, 0x82, 0x88, 0x89, 0x8a};
    for (size_t i = 0; i < 5; i++) {
        CU_ASSERT_EQUAL(daebus__ws_frame_head(ops[i], 5, h), 2);
        CU_ASSERT_EQUAL(h[0], first[i]);
        CU_ASSERT_EQUAL(h[1], 5);
    }
    /* 7-bit lengths: 0..125 */
    CU_ASSERT_EQUAL(daebus__ws_frame_head(1, 0, h), 2);
    CU_ASSERT_EQUAL(h[1], 0);
    CU_ASSERT_EQUAL(daebus__ws_frame_head(1, 125, h), 2);
    CU_ASSERT_EQUAL(h[1], 125);
    /* 16-bit: 126..65535, big-endian after 126 */
    CU_ASSERT_EQUAL(daebus__ws_frame_head(1, 126, h), 4);
    CU_ASSERT(h[0] == 0x81 && h[1] == 126 && h[2] == 0 && h[3] == 126);
    CU_ASSERT_EQUAL(daebus__ws_frame_head(1, 0x1234, h), 4);
    CU_ASSERT(h[1] == 126 && h[2] == 0x12 && h[3] == 0x34);
    CU_ASSERT_EQUAL(daebus__ws_frame_head(1, 65535, h), 4);
    CU_ASSERT(h[1] == 126 && h[2] == 0xff && h[3] == 0xff);
    /* 64-bit: from 65536, big-endian after 127 */
    CU_ASSERT_EQUAL(daebus__ws_frame_head(2, 65536, h), 10);
    const unsigned char l64[] = {0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0};
    CU_ASSERT_EQUAL(memcmp(h, l64, 10), 0);
    CU_ASSERT_EQUAL(daebus__ws_frame_head(1, (size_t)0x0102030405ull, h), 10);
    const unsigned char big[] = {0x81, 127, 0, 0, 0, 1, 2, 3, 4, 5};
    CU_ASSERT_EQUAL(memcmp(h, big, 10), 0);
}

/* The bytes a writer sends for a frame of n payload bytes: the header of
 * its length form immediately followed by the payload. */
static void check_wire(size_t n, size_t head)
{
    char *p = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++)
        p[i] = (char)('a' + i % 26);
    ws_frame *f = daebus__ws_frame_new(MG_WEBSOCKET_OPCODE_TEXT, p, n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    size_t wn = 0;
    const unsigned char *w = (const unsigned char *)daebus__ws_frame_wire(f, &wn);
    CU_ASSERT_EQUAL(wn, head + n);
    unsigned char h[10];
    CU_ASSERT_EQUAL(daebus__ws_frame_head(MG_WEBSOCKET_OPCODE_TEXT, n, h), head);
    CU_ASSERT_EQUAL(memcmp(w, h, head), 0);
    CU_ASSERT_EQUAL(memcmp(w + head, p, n), 0);
    CU_ASSERT_PTR_EQUAL(w + head, f->data);
    daebus__ws_frame_unref(f);
    free(p);
}

static void test_frame_wire(void)
{
    check_wire(0, 2);
    check_wire(125, 2);
    check_wire(126, 4);
    check_wire(65535, 4);
    check_wire(65536, 10);
    check_wire(200000, 10);
}

/* What the earlier builder printed: a cJSON object printed whole. */
static char *envelope_by_tree(const char *type, const cJSON *data, const cJSON *rid, int success)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", type);
    if (data)
        cJSON_AddItemReferenceToObject(o, "data", (cJSON *)data);
    if (rid)
        cJSON_AddItemReferenceToObject(o, "request_id", (cJSON *)rid);
    if (success >= 0)
        cJSON_AddBoolToObject(o, "success", success);
    char *s = daebus_json_print(o, NULL);
    cJSON_Delete(o);
    return s;
}

static void test_envelope_into_frame(void)
{
    const char *datas[] = {"{\"a\":[1,2.5,-0.0,1e300],\"b\":{\"c\":null,\"d\":true}}",
                           "\"quote \\\" back \\\\ nul \\u0000 tab \\t \\u00e9\"",
                           "[]",
                           "{}",
                           "9007199254740993",
                           NULL};
    const char *rids[] = {"\"r-1\"", "42", "0.1", NULL};
    const char *types[] = {"response", "ty\"pe\n", "message"};
    for (size_t t = 0; t < 3; t++)
        for (size_t i = 0; i < sizeof datas / sizeof *datas; i++)
            for (size_t k = 0; k < sizeof rids / sizeof *rids; k++)
                for (int success = -1; success <= 1; success++) {
                    cJSON *d =
                        datas[i] ? daebus_json_parse(datas[i], strlen(datas[i]), NULL) : NULL;
                    cJSON *r = rids[k] ? cJSON_Parse(rids[k]) : NULL;
                    char *want = envelope_by_tree(types[t], d, r, success);
                    daebus__json_out b;
                    daebus__ws_frame_out_begin(&b);
                    CU_ASSERT_TRUE(daebus__ws_envelope_into(&b, types[t], d, r, success));
                    ws_frame *f = daebus__ws_frame_out_end(&b, MG_WEBSOCKET_OPCODE_TEXT);
                    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
                    CU_ASSERT_STRING_EQUAL(f->data, want);
                    CU_ASSERT_EQUAL(f->len, strlen(want));
                    CU_ASSERT_EQUAL(f->opcode, MG_WEBSOCKET_OPCODE_TEXT);
                    CU_ASSERT_EQUAL(atomic_load(&f->refs), 1);
                    unsigned char h[10];
                    size_t hl = daebus__ws_frame_head(1, f->len, h), wn = 0;
                    const char *w = daebus__ws_frame_wire(f, &wn);
                    CU_ASSERT_EQUAL(wn, hl + f->len);
                    CU_ASSERT_EQUAL(memcmp(w, h, hl), 0);
                    daebus__ws_frame_unref(f);
                    free(want);
                    cJSON_Delete(d);
                    cJSON_Delete(r);
                }
    /* an item of invalid type fails the frame (nothing leaks: ASan) */
    cJSON bad = {0};
    daebus__json_out b;
    daebus__ws_frame_out_begin(&b);
    CU_ASSERT_FALSE(daebus__ws_envelope_into(&b, "response", &bad, NULL, 1));
    CU_ASSERT_PTR_NULL(daebus__ws_frame_out_end(&b, MG_WEBSOCKET_OPCODE_TEXT));
}

/* The nesting rule of the in-place printer: every frame is printed into a
 * buffer of its own, so a frame begun while another is half-printed on the
 * same thread (a send from inside a send) leaves the outer one intact. */
static void test_envelope_nesting(void)
{
    cJSON *d1 = cJSON_Parse("{\"outer\":1}"), *d2 = cJSON_Parse("{\"inner\":2}");
    daebus__json_out outer, inner;
    daebus__ws_frame_out_begin(&outer);
    daebus__json_out_raw(&outer, "{\"type\":", 8);
    daebus__ws_frame_out_begin(&inner);
    daebus__ws_envelope_into(&inner, "message", d2, NULL, -1);
    ws_frame *fi = daebus__ws_frame_out_end(&inner, MG_WEBSOCKET_OPCODE_TEXT);
    daebus__json_out_string(&outer, "response");
    daebus__json_out_raw(&outer, ",\"data\":", 8);
    daebus__json_out_value(&outer, d1);
    daebus__json_out_raw(&outer, "}", 1);
    ws_frame *fo = daebus__ws_frame_out_end(&outer, MG_WEBSOCKET_OPCODE_TEXT);
    CU_ASSERT_PTR_NOT_NULL_FATAL(fi);
    CU_ASSERT_PTR_NOT_NULL_FATAL(fo);
    CU_ASSERT_STRING_EQUAL(fi->data, "{\"type\":\"message\",\"data\":{\"inner\":2}}");
    CU_ASSERT_STRING_EQUAL(fo->data, "{\"type\":\"response\",\"data\":{\"outer\":1}}");
    CU_ASSERT_PTR_NOT_EQUAL(fi, fo);
    daebus__ws_frame_unref(fi);
    daebus__ws_frame_unref(fo);
    cJSON_Delete(d1);
    cJSON_Delete(d2);
}

/* A connected loopback TCP pair; *out gets a fixed SO_SNDBUF as
 * daebus__ws_find_fd sets it (its value read back into *sndbuf). */
static int tcp_pair(int *out, int *in, int want_sndbuf, int *sndbuf)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 1) != 0 ||
        getsockname(l, (struct sockaddr *)&a, &al) != 0)
        return -1;
    *out = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(*out, (struct sockaddr *)&a, sizeof a) != 0)
        return -1;
    *in = accept(l, NULL, NULL);
    close(l);
    socklen_t sl = sizeof *sndbuf;
    if (*in < 0 || setsockopt(*out, SOL_SOCKET, SO_SNDBUF, &want_sndbuf, sizeof want_sndbuf) ||
        getsockopt(*out, SOL_SOCKET, SO_SNDBUF, sndbuf, &sl))
        return -1;
    return fcntl(*out, F_SETFL, O_NONBLOCK);
}

/* Bytes the kernel says are free in fd's send buffer (as the check reads it). */
static long kernel_room(int fd, int sndbuf)
{
    int outq = 0;
    ioctl(fd, SIOCOUTQ, &outq);
    return (long)sndbuf / 2 - outq;
}

static void test_room_bound(void)
{
    int out = -1, in = -1, sndbuf = 0;
    CU_ASSERT_EQUAL_FATAL(tcp_pair(&out, &in, 64 * 1024, &sndbuf), 0);
    size_t room = 0;
    /* an empty buffer: yes, and the bound is the whole buffer */
    CU_ASSERT_EQUAL(daebus__ws_room_check(out, sndbuf, &room, 100), 1);
    CU_ASSERT_EQUAL(room, (size_t)sndbuf / 2);
    /* written bytes spend the bound, which stays under what the kernel says */
    char chunk[1000];
    memset(chunk, 'x', sizeof chunk);
    CU_ASSERT_EQUAL(send(out, chunk, sizeof chunk, 0), (ssize_t)sizeof chunk);
    daebus__ws_room_spent(&room, sizeof chunk, true);
    CU_ASSERT_EQUAL(room, (size_t)sndbuf / 2 - sizeof chunk);
    CU_ASSERT((long)room <= kernel_room(out, sndbuf));
    CU_ASSERT_EQUAL(daebus__ws_room_check(out, sndbuf, &room, 100), 1);
    /* more than the bound spent: 0, never wrapped round */
    size_t small = 10;
    daebus__ws_room_spent(&small, 11, true);
    CU_ASSERT_EQUAL(small, 0);
    /* fill the socket (the peer does not read) */
    ssize_t w;
    while ((w = send(out, chunk, sizeof chunk, 0)) > 0)
        ;
    CU_ASSERT(w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
    long left = kernel_room(out, sndbuf);
    size_t len = (size_t)(left > 0 ? left : 0) + 1000; /* more than the kernel has room for */
    /* a failed (or partial) write drops the bound: however large it was, the
     * next check asks the kernel, which says no */
    room = 2 * (size_t)sndbuf;
    daebus__ws_room_spent(&room, 500, false);
    CU_ASSERT_EQUAL(room, 0);
    CU_ASSERT_EQUAL(daebus__ws_room_check(out, sndbuf, &room, len), 0);
    CU_ASSERT((long)room <= (left > 0 ? left : 0));
    /* a stale bound alone (no failure reported) would have said yes without
     * asking: the bound is trusted, which is why every failure must drop it */
    size_t stale = 2 * (size_t)sndbuf;
    CU_ASSERT_EQUAL(daebus__ws_room_check(out, sndbuf, &stale, len), 1);
    /* a size the kernel tunes itself (sndbuf 0): no bound is kept */
    room = 4 * (size_t)sndbuf;
    CU_ASSERT_EQUAL(daebus__ws_room_check(out, 0, &room, len), 0);
    CU_ASSERT_EQUAL(room, 0);
    /* the peer reads everything: room again, found by asking */
    char sink[65536];
    while (kernel_room(out, sndbuf) < sndbuf / 2) {
        ssize_t r = recv(in, sink, sizeof sink, MSG_DONTWAIT);
        if (r <= 0)
            usleep(1000);
    }
    CU_ASSERT_EQUAL(daebus__ws_room_check(out, sndbuf, &room, 1000), 1);
    CU_ASSERT_EQUAL(room, (size_t)sndbuf / 2);
    /* no socket known: always yes, as before */
    room = 0;
    CU_ASSERT_EQUAL(daebus__ws_room_check(-1, sndbuf, &room, 1 << 30), 1);
    close(out);
    close(in);
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
    CU_add_test(s, "frame header", test_frame_head);
    CU_add_test(s, "frame bytes on the wire", test_frame_wire);
    CU_add_test(s, "envelope printed into its frame", test_envelope_into_frame);
    CU_add_test(s, "envelope buffers never shared", test_envelope_nesting);
    CU_add_test(s, "send-buffer room bound", test_room_bound);
    return ts_run_cunit();
}
