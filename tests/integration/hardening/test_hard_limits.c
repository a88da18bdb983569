/* Hardening: limits and security checks with real sockets and a real
 * redis-server. Each check fails without its protection:
 *   - HTTP JSON nesting depth (400, configurable) and body size (413);
 *   - WebSocket Origin allow-list (403), nesting depth (clear error),
 *     capacity (close 1013 "Server full", HTTP 503 past the closers);
 *   - no handler runs for a connection the connect hook refused, even when
 *     the client pipelines a frame behind its upgrade request;
 *   - a client's messages cannot reach another client's data;
 *   - Redis passwords never reach the log or error messages.
 * (Rate limits, 1009, idle time-outs and the bus size limit have their tests
 * in tests/integration/websocket and tests/integration/bus.) */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "daebus/daebus.h"
#include "daebus/http.h"
#include "daebus/websocket.h"
#include "testsupport.h"
#include "wsc.h"

static ts_service svc;
static daebus_ws *ws;
static int port;
static atomic_int n_handled, n_disconnects, n_connect_calls;

ROUTE(h_echo, "/echo", .methods = DAEBUS_POST)
{
    return daebus_http_send_json(res, 200, daebus_http_request_payload(req));
}

ROUTE(h_ping, "/ping")
{
    return daebus_http_send(res, 200, "text/plain", "pong", 4);
}

/* The handshake token hook: a connection with a wrong X-Token is refused. */
SOCKET_CONNECT(on_connect)
{
    atomic_fetch_add(&n_connect_calls, 1);
    const char *tok = daebus_ws_request_header(req, "X-Token");
    if (tok && strcmp(tok, "let-me-in") != 0)
        return daebus_ws_request_reject(req, "Bad token");
    return NULL;
}

SOCKET_DISCONNECT(on_disconnect)
{
    atomic_fetch_add(&n_disconnects, 1);
    return NULL;
}

SOCKET(s_echo, "echo")
{
    atomic_fetch_add(&n_handled, 1);
    return cJSON_Duplicate(daebus_ws_request_data(req), true);
}

/* Stores data.secret as the sender's own client data. */
SOCKET(s_set_secret, "set_secret")
{
    atomic_fetch_add(&n_handled, 1);
    const cJSON *v = cJSON_GetObjectItem(daebus_ws_request_data(req), "secret");
    if (!v)
        return daebus_ws_request_fail(req, "secret required");
    daebus_ws_set_client_data(daebus_ws_request_ws(req), client_id, "secret", v);
    return cJSON_CreateTrue();
}

/* Answers who the framework says the sender is, and that client's secret. */
SOCKET(s_whoami, "whoami")
{
    atomic_fetch_add(&n_handled, 1);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "client_id", client_id);
    cJSON_AddStringToObject(o, "request_client_id", daebus_ws_request_client_id(req));
    cJSON *meta = daebus_ws_request_metadata(req);
    cJSON *sec = cJSON_DetachItemFromObject(meta, "secret");
    cJSON_AddItemToObject(o, "secret", sec ? sec : cJSON_CreateNull());
    cJSON_Delete(meta);
    return o;
}

static int suite_init(void)
{
    daebus_http_options ho = {.num_threads = 16, .max_body_size = 2100, .max_json_depth = 20};
    daebus_ws_options wo = DAEBUS_WS_OPTIONS_INIT;
    wo.max_clients = 2;
    wo.allowed_origins = "https://good.example, https://also.example";
    wo.max_json_depth = 20;
    wo.close_timeout = 3.0;
    ts_service_options o = {.service = "hard_limits",
                            .log_level = DAEBUS_LOG_CRITICAL,
                            .http_options = &ho,
                            .ws = true,
                            .ws_options = &wo};
    if (ts_service_start(&svc, &o) != 0)
        return 1;
    ws = svc.ws;
    port = svc.port;
    return 0;
}

static int suite_clean(void)
{
    ts_service_stop(&svc);
    return 0;
}

/* '{"a":' + depth levels of [] + '}' (depth + 1 levels in all). */
static char *nested(int depth)
{
    size_t n = 8 + 2 * (size_t)depth;
    char *s = malloc(n);
    size_t k = (size_t)snprintf(s, n, "{\"a\":");
    for (int i = 0; i < depth; i++)
        s[k++] = '[';
    for (int i = 0; i < depth; i++)
        s[k++] = ']';
    s[k++] = '}';
    s[k] = '\0';
    return s;
}

static char *raw_exchange(const char *req, size_t len);
#define UPGRADE_HEAD                                                                               \
    "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"         \
    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"

static int post_json(const char *body, ts_http_response *r)
{
    if (ts_http(port, "POST", "/echo", "Content-Type: application/json\r\n", body, strlen(body),
                r) != 0)
        return -1;
    return r->status;
}

static void test_http_limits(void)
{
    ts_http_response r;
    char *ok = nested(19); /* 20 levels with the outer object */
    CU_ASSERT_EQUAL(post_json(ok, &r), 200);
    ts_http_free(&r);
    free(ok);
    char *deep = nested(20);
    CU_ASSERT_EQUAL(post_json(deep, &r), 400);
    CU_ASSERT_STRING_EQUAL(r.body, "{\"error\":\"JSON body nested too deeply (max 20 levels)\"}");
    ts_http_free(&r);
    free(deep);
    /* deep enough to overflow a CivetWeb worker's stack inside cJSON */
    char *huge = nested(1040);
    CU_ASSERT_EQUAL(post_json(huge, &r), 400);
    ts_http_free(&r);
    free(huge);
    char big[3000];
    memset(big, ' ', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    big[0] = '{';
    big[sizeof big - 2] = '}';
    CU_ASSERT_EQUAL(post_json(big, &r), 413);
    CU_ASSERT_STRING_EQUAL(r.body, "{\"error\":\"Request body too large\"}");
    ts_http_free(&r);
    /* oversized headers: refused by CivetWeb, the server carries on */
    char *hdr = malloc(20100);
    memcpy(hdr, "X-Big: ", 7);
    memset(hdr + 7, 'a', 20000);
    memcpy(hdr + 20007, "\r\n", 3);
    CU_ASSERT_EQUAL(ts_http(port, "GET", "/ping", hdr, NULL, 0, &r), 0);
    CU_ASSERT_EQUAL(r.status, 400);
    ts_http_free(&r);
    free(hdr);
    CU_ASSERT_EQUAL_FATAL(ts_http(port, "GET", "/ping", NULL, NULL, 0, &r), 0);
    CU_ASSERT_EQUAL(r.status, 200);
    ts_http_free(&r);
    /* the ceiling itself is safe on a CivetWeb worker (sanitizer builds too) */
    {
        daebus_http_options h2 = {.num_threads = 2, .max_json_depth = 512};
        ts_service svc2;
        ts_service_options o = {.service = "hard_ceiling",
                                .log_level = DAEBUS_LOG_CRITICAL,
                                .http = true,
                                .http_options = &h2};
        CU_ASSERT_EQUAL_FATAL(ts_service_start(&svc2, &o), 0);
        char *at = nested(511); /* 512 levels */
        CU_ASSERT_EQUAL(ts_http(svc2.port, "POST", "/echo", "Content-Type: application/json\r\n",
                                at, strlen(at), &r),
                        0);
        CU_ASSERT_EQUAL(r.status, 200);
        CU_ASSERT_EQUAL(r.body_len, strlen(at));
        ts_http_free(&r);
        free(at);
        ts_service_stop(&svc2);
    }
    /* the limit has a ceiling: cJSON recurses on small stacks */
    daebus_http_options ho = DAEBUS_HTTP_OPTIONS_INIT;
    ho.max_json_depth = 513;
    daebus_error e = {0};
    CU_ASSERT_PTR_NULL(daebus_http_create(&ho, &e));
    CU_ASSERT_EQUAL(e.code, DAEBUS_EINVAL);
    daebus_ws_options wo = DAEBUS_WS_OPTIONS_INIT;
    wo.max_json_depth = 513;
    CU_ASSERT_PTR_NULL(daebus_ws_create(&wo, &e));
}

static void test_ws_origin(void)
{
    daebus_ws_stats s0, s1;
    daebus_ws_get_stats(ws, &s0);
    wsc c;
    CU_ASSERT_EQUAL(wsc_connect(&c, port, "/ws", "Origin: https://evil.example\r\n"), -1);
    CU_ASSERT_EQUAL(c.status, 403);
    wsc_close(&c);
    CU_ASSERT_EQUAL(wsc_connect(&c, port, "/ws", "Origin: https://good.example.evil\r\n"), -1);
    CU_ASSERT_EQUAL(c.status, 403);
    wsc_close(&c);
    CU_ASSERT_EQUAL(wsc_connect(&c, port, "/ws", "Origin: null\r\n"), -1);
    CU_ASSERT_EQUAL(c.status, 403);
    wsc_close(&c);
    /* the 403 body says why */
    const char *evil = UPGRADE_HEAD "Origin: https://evil.example\r\n\r\n";
    char *ans = raw_exchange(evil, strlen(evil));
    CU_ASSERT_PTR_NOT_NULL_FATAL(ans);
    CU_ASSERT_EQUAL(strncmp(ans, "HTTP/1.1 403", 12), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(ans, "\r\n\r\n{\"error\":\"Origin not allowed\"}"));
    free(ans);
    daebus_ws_get_stats(ws, &s1);
    CU_ASSERT_EQUAL(s1.rejected_upgrades - s0.rejected_upgrades, 4);
    CU_ASSERT_EQUAL(s1.connects, s0.connects);
    /* listed origins (any case) and clients without an Origin pass */
    const char *good[] = {"Origin: https://good.example\r\n", "Origin: https://ALSO.example\r\n",
                          NULL};
    for (int i = 0; i < 3; i++) {
        CU_ASSERT_EQUAL(wsc_connect(&c, port, "/ws", good[i]), 0);
        CU_ASSERT_EQUAL(c.status, 101);
        /* counted once open (just after the 101): only then can we wait for it to go */
        TS_WAIT_UNTIL(daebus_ws_get_client_count(ws) == 1, 5);
        wsc_close(&c);
        TS_WAIT_UNTIL(daebus_ws_get_client_count(ws) == 0, 5);
        CU_ASSERT_EQUAL(daebus_ws_get_client_count(ws), 0);
    }
}

static char *ask(wsc *c, const char *msg)
{
    if (wsc_send_text(c, msg) != 0)
        return NULL;
    return wsc_recv_text(c, 5000);
}

static void test_ws_depth(void)
{
    wsc c;
    CU_ASSERT_EQUAL_FATAL(wsc_connect(&c, port, "/", NULL), 0);
    char msg[256];
    /* 20 levels: the envelope, data's object, 18 arrays */
    snprintf(msg, sizeof msg, "{\"type\":\"echo\",\"data\":{\"x\":%.*s%.*s}}", 18,
             "[[[[[[[[[[[[[[[[[[[[", 18, "]]]]]]]]]]]]]]]]]]]]");
    char *t = ask(&c, msg);
    CU_ASSERT_PTR_NOT_NULL(t);
    CU_ASSERT_PTR_NOT_NULL(t ? strstr(t, "\"type\":\"response\"") : NULL);
    free(t);
    snprintf(msg, sizeof msg, "{\"type\":\"echo\",\"data\":{\"x\":%.*s%.*s}}", 19,
             "[[[[[[[[[[[[[[[[[[[[", 19, "]]]]]]]]]]]]]]]]]]]]");
    t = ask(&c, msg);
    CU_ASSERT_STRING_EQUAL(t ? t : "", "{\"type\":\"error\",\"error\":\"JSON nested too deeply "
                                       "(max 20 levels)\",\"success\":false}");
    free(t);
    char *huge = nested(50000);
    t = ask(&c, huge);
    CU_ASSERT_PTR_NOT_NULL(t ? strstr(t, "nested too deeply") : NULL);
    free(t);
    free(huge);
    t = ask(&c, "{\"type\":\"echo\",\"data\":7}"); /* still served */
    CU_ASSERT_STRING_EQUAL(t ? t : "", "{\"type\":\"response\",\"data\":7,\"success\":true}");
    free(t);
    wsc_close(&c);
    TS_WAIT_UNTIL(daebus_ws_get_client_count(ws) == 0, 5);
}

static void test_ws_full(void)
{
    wsc a, b;
    CU_ASSERT_EQUAL_FATAL(wsc_connect(&a, port, "/", NULL), 0);
    CU_ASSERT_EQUAL_FATAL(wsc_connect(&b, port, "/", NULL), 0);
    TS_WAIT_UNTIL(daebus_ws_get_client_count(ws) == 2, 5);
    daebus_ws_stats s0, s1;
    daebus_ws_get_stats(ws, &s0);
    /* past max_clients: 101, then close 1013 "Server full" and the end of the stream */
    wsc x;
    CU_ASSERT_EQUAL_FATAL(wsc_connect(&x, port, "/", NULL), 0);
    char *d = NULL;
    size_t n = 0;
    CU_ASSERT_EQUAL(wsc_recv(&x, 5000, &d, &n), 8);
    CU_ASSERT_EQUAL(x.close_code, 1013);
    CU_ASSERT(n > 2 && strcmp(d + 2, "Server full") == 0);
    free(d);
    wsc_send(&x, 8, "\x03\xe8", 2); /* our close answer ends it at once */
    CU_ASSERT_EQUAL(wsc_recv(&x, 5000, &d, &n), -1);
    free(d);
    wsc_close(&x);
    /* silent peers hold a closer each (up to close_timeout): past
     * DAEBUS_WS_FULL_CLOSERS of them, upgrades get a plain 503 */
    wsc held[DAEBUS_WS_FULL_CLOSERS];
    for (int i = 0; i < DAEBUS_WS_FULL_CLOSERS; i++)
        CU_ASSERT_EQUAL(wsc_connect(&held[i], port, "/", NULL), 0);
    ts_sleep_ms(100);
    CU_ASSERT_EQUAL(wsc_connect(&x, port, "/", NULL), -1);
    CU_ASSERT_EQUAL(x.status, 503);
    wsc_close(&x);
    for (int i = 0; i < DAEBUS_WS_FULL_CLOSERS; i++) {
        CU_ASSERT_EQUAL(wsc_recv(&held[i], 5000, &d, &n), 8);
        CU_ASSERT_EQUAL(held[i].close_code, 1013);
        free(d);
        wsc_close(&held[i]);
    }
    /* HTTP is still served, the two clients too */
    ts_http_response r;
    CU_ASSERT_EQUAL_FATAL(ts_http(port, "GET", "/ping", NULL, NULL, 0, &r), 0);
    CU_ASSERT_EQUAL(r.status, 200);
    ts_http_free(&r);
    char *t = ask(&a, "{\"type\":\"echo\",\"data\":1}");
    CU_ASSERT_STRING_EQUAL(t ? t : "", "{\"type\":\"response\",\"data\":1,\"success\":true}");
    free(t);
    daebus_ws_get_stats(ws, &s1);
    CU_ASSERT_EQUAL(s1.rejected_upgrades - s0.rejected_upgrades, 2 + DAEBUS_WS_FULL_CLOSERS);
    CU_ASSERT_EQUAL(s1.connects, s0.connects);
    CU_ASSERT_EQUAL(daebus_ws_get_client_count(ws), 2);
    /* a slot frees up: a new client gets in */
    wsc_close(&b);
    TS_WAIT_UNTIL(daebus_ws_get_client_count(ws) == 1, 5);
    CU_ASSERT_EQUAL(wsc_connect(&b, port, "/", NULL), 0);
    t = ask(&b, "{\"type\":\"echo\",\"data\":2}");
    CU_ASSERT_STRING_EQUAL(t ? t : "", "{\"type\":\"response\",\"data\":2,\"success\":true}");
    free(t);
    wsc_close(&a);
    wsc_close(&b);
    TS_WAIT_UNTIL(daebus_ws_get_client_count(ws) == 0, 5);
}

/* Sends len bytes to the server in one write; returns what it answered
 * within 5 s (until it closed). */
static char *raw_exchange(const char *req, size_t len)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        write(fd, req, len) != (ssize_t)len) {
        close(fd);
        return NULL;
    }
    char *out = calloc(1, 4096);
    size_t got = 0;
    for (double end = ts_now() + 5; ts_now() < end && got < 4095;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t n = read(fd, out + got, 4095 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    return out;
}

/* An upgrade request with X-Token: bad and, in the same write, a masked
 * text frame. Returns what the server answered. */
static char *pipelined_reject(void)
{
    char buf[1024];
    int k = snprintf(buf, sizeof buf, "%sX-Token: bad\r\n\r\n", UPGRADE_HEAD);
    const char *msg = "{\"type\":\"echo\",\"data\":\"sneaky\"}";
    size_t len = strlen(msg);
    buf[k++] = (char)0x81;
    buf[k++] = (char)(0x80 | len);
    const unsigned char mask[4] = {1, 2, 3, 4};
    memcpy(buf + k, mask, 4);
    k += 4;
    for (size_t i = 0; i < len; i++)
        buf[k++] = (char)(msg[i] ^ mask[i % 4]);
    return raw_exchange(buf, (size_t)k);
}

static void test_ws_reject_runs_nothing(void)
{
    int h0 = atomic_load(&n_handled), d0 = atomic_load(&n_disconnects);
    int c0 = atomic_load(&n_connect_calls);
    char *ans = pipelined_reject();
    CU_ASSERT_PTR_NOT_NULL_FATAL(ans);
    CU_ASSERT_EQUAL(strncmp(ans, "HTTP/1.1 403", 12), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(ans, "{\"error\":\"Bad token\"}"));
    CU_ASSERT_PTR_NULL(strstr(ans, "sneaky"));
    free(ans);
    ts_sleep_ms(200);
    CU_ASSERT_EQUAL(atomic_load(&n_connect_calls) - c0, 1);
    CU_ASSERT_EQUAL(atomic_load(&n_handled), h0);
    CU_ASSERT_EQUAL(atomic_load(&n_disconnects), d0);
    /* the right token gets in */
    wsc c;
    CU_ASSERT_EQUAL(wsc_connect(&c, port, "/", "X-Token: let-me-in\r\n"), 0);
    char *t = ask(&c, "{\"type\":\"echo\",\"data\":3}");
    CU_ASSERT_STRING_EQUAL(t ? t : "", "{\"type\":\"response\",\"data\":3,\"success\":true}");
    free(t);
    wsc_close(&c);
    TS_WAIT_UNTIL(daebus_ws_get_client_count(ws) == 0, 5);
}

static char *field(const char *json, const char *key)
{
    cJSON *j = cJSON_Parse(json);
    const cJSON *d = cJSON_GetObjectItem(j, "data");
    const cJSON *v = cJSON_GetObjectItem(d, key);
    char *out = v ? cJSON_PrintUnformatted(v) : NULL;
    cJSON_Delete(j);
    return out;
}

static void test_ws_isolation(void)
{
    wsc a, b;
    CU_ASSERT_EQUAL_FATAL(wsc_connect(&a, port, "/", NULL), 0);
    CU_ASSERT_EQUAL_FATAL(wsc_connect(&b, port, "/", NULL), 0);
    char *t = ask(&a, "{\"type\":\"set_secret\",\"data\":{\"secret\":\"a-only\"}}");
    CU_ASSERT_STRING_EQUAL(t ? t : "", "{\"type\":\"response\",\"data\":true,\"success\":true}");
    free(t);
    t = ask(&a, "{\"type\":\"whoami\"}");
    char *a_id = t ? field(t, "client_id") : NULL;
    char *a_sec = t ? field(t, "secret") : NULL;
    CU_ASSERT_STRING_EQUAL(a_sec ? a_sec : "", "\"a-only\"");
    free(t);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a_id);
    /* b claims to be a, in the envelope and in data: the framework still
     * hands the handler b's id and b's data */
    char msg[512];
    snprintf(msg, sizeof msg,
             "{\"type\":\"whoami\",\"client_id\":%s,\"sid\":%s,\"data\":{\"client_id\":%s}}", a_id,
             a_id, a_id);
    t = ask(&b, msg);
    char *b_id = t ? field(t, "client_id") : NULL;
    char *b_req = t ? field(t, "request_client_id") : NULL;
    char *b_sec = t ? field(t, "secret") : NULL;
    CU_ASSERT_PTR_NOT_NULL(b_id);
    CU_ASSERT(b_id && strcmp(b_id, a_id) != 0);
    CU_ASSERT_STRING_EQUAL(b_req ? b_req : "", b_id ? b_id : "-");
    CU_ASSERT_STRING_EQUAL(b_sec ? b_sec : "", "null");
    free(t);
    /* b overwriting "its" secret leaves a's alone */
    snprintf(
        msg, sizeof msg,
        "{\"type\":\"set_secret\",\"client_id\":%s,\"data\":{\"secret\":\"b\",\"client_id\":%s}}",
        a_id, a_id);
    t = ask(&b, msg);
    free(t);
    t = ask(&a, "{\"type\":\"whoami\"}");
    char *a_sec2 = t ? field(t, "secret") : NULL;
    CU_ASSERT_STRING_EQUAL(a_sec2 ? a_sec2 : "", "\"a-only\"");
    free(t);
    free(a_id);
    free(a_sec);
    free(a_sec2);
    free(b_id);
    free(b_req);
    free(b_sec);
    wsc_close(&a);
    wsc_close(&b);
    TS_WAIT_UNTIL(daebus_ws_get_client_count(ws) == 0, 5);
}

/* ---- no secrets in logs ---- */

#define SECRET "Pa55-S3cr3t-w0rd"

static int log_fd = -1;
static char log_path[64];

static void capture_logs(void)
{
    snprintf(log_path, sizeof log_path, "/tmp/daebus_hard_log_XXXXXX");
    log_fd = mkstemp(log_path);
    daebus_log_set_fd(log_fd);
    daebus_log_set_level(DAEBUS_LOG_DEBUG);
}

static char *captured(void)
{
    daebus_log_set_fd(2);
    daebus_log_set_level(DAEBUS_LOG_CRITICAL);
    close(log_fd);
    char *s = ts_read_file(log_path, NULL);
    unlink(log_path);
    return s ? s : strdup("");
}

static void test_no_secrets(void)
{
    ts_redis r;
    CU_ASSERT_EQUAL_FATAL(ts_redis_start(&r, "requirepass " SECRET), 0);
    capture_logs();
    char url[256], wrong[256], msgs[4096] = "";
    /* parse errors quote the URL: never its password */
    const char *bad[] = {
        "redis://:" SECRET "@127.0.0.1:notaport",
        "redis://user:" SECRET "@[::1/0",
        "rediss://:" SECRET "@127.0.0.1:6379",
        "unix://:" SECRET "@/tmp/x.sock?bogus=1",
        "unix:///tmp/x.sock?password=" SECRET "&bogus=1",
        "redis://:" SECRET "@127.0.0.1:6379/notadb",
        "redis://:" SECRET "@127.0.0.1:6379?x=1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        daebus_error e = {0};
        CU_ASSERT_EQUAL(daebus_redis_url_check(bad[i], &e), DAEBUS_EINVAL);
        CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "redis URL"));
        CU_ASSERT_PTR_NULL(strstr(e.message, SECRET));
        size_t used = strlen(msgs);
        snprintf(msgs + used, sizeof msgs - used, "%s\n", e.message);
    }
    daebus_config cfg = DAEBUS_CONFIG_INIT;
    daebus_error e = {0};
    char *argv[] = {"svc", "--redis", "http://:" SECRET "@host", NULL};
    CU_ASSERT_EQUAL(daebus_config_apply_args(&cfg, 3, argv, &e), DAEBUS_EINVAL);
    CU_ASSERT_PTR_NULL(strstr(e.message, SECRET));
    /* a wrong password, then the right one: AUTH works, nothing leaks */
    snprintf(wrong, sizeof wrong, "redis://:Wr0ng-" SECRET "@127.0.0.1:%d", r.port);
    CU_ASSERT_PTR_NULL(daebus_caller_create(wrong, NULL, &e));
    CU_ASSERT_EQUAL(e.code, DAEBUS_EAUTH);
    CU_ASSERT_PTR_NULL(strstr(e.message, SECRET));
    snprintf(url, sizeof url, "redis://:%s@127.0.0.1:%d", SECRET, r.port);
    daebus_bus_options bo = DAEBUS_BUS_OPTIONS_INIT;
    bo.reconnect_max = 0.2;
    ts_service svc2;
    ts_service_options o = {.service = "hard_secret",
                            .redis_url = wrong,
                            .log_level = DAEBUS_LOG_DEBUG,
                            .bus = true,
                            .bus_options = &bo};
    ts_service_start(&svc2, &o); /* may fail or retry: either way it logs */
    ts_sleep_ms(300);
    ts_service_stop(&svc2);
    o.redis_url = url;
    o.wait_bus = 5;
    CU_ASSERT_EQUAL(ts_service_start(&svc2, &o), 0);
    CU_ASSERT_EQUAL(ts_bus_connected(svc2.bus), 1);
    daebus_caller *c = daebus_caller_create(url, NULL, &e);
    CU_ASSERT_PTR_NOT_NULL(c);
    cJSON *reply = NULL;
    /* an unknown action: answered, so the whole AUTH'd round trip works */
    int rc = c ? daebus_caller_request(c, "hard_secret", "nope", NULL, 5, &reply, &e) : -1;
    CU_ASSERT_EQUAL(rc, DAEBUS_EREPLY);
    if (rc != DAEBUS_EREPLY)
        fprintf(stderr, "\n  caller request: %d (%s)\n", rc, e.message);
    cJSON_Delete(reply);
    daebus_caller_destroy(c);
    ts_service_stop(&svc2);
    char *log = captured();
    CU_ASSERT_PTR_NULL(strstr(log, SECRET));
    CU_ASSERT_PTR_NULL(strstr(msgs, SECRET));
    /* the log did talk about the failed AUTH and the redacted URL */
    CU_ASSERT_PTR_NOT_NULL(strstr(log, ":***@127.0.0.1"));
    if (strstr(log, SECRET) || !strstr(log, ":***@"))
        fprintf(stderr, "log was:\n%s\n", log);
    free(log);
    ts_redis_stop(&r);
}

int main(void)
{
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("hard_limits", suite_init, suite_clean);
    CU_add_test(s, "HTTP JSON depth and body size", test_http_limits);
    CU_add_test(s, "WebSocket Origin allow-list", test_ws_origin);
    CU_add_test(s, "WebSocket JSON depth", test_ws_depth);
    CU_add_test(s, "WebSocket full: 1013, then 503", test_ws_full);
    CU_add_test(s, "rejected handshake runs no handler", test_ws_reject_runs_nothing);
    CU_add_test(s, "per-client data isolation", test_ws_isolation);
    CU_pSuite s2 = CU_add_suite("hard_secrets", NULL, NULL);
    CU_add_test(s2, "no secrets in logs or errors", test_no_secrets);
    return ts_run_cunit();
}
