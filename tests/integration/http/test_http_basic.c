/* HTTP component, first checks: life cycle, port 0, routes with parameters,
 * 404/405 bodies, JSON payload, and a raw CivetWeb WebSocket handler on "/"
 * still receiving upgrades next to the component's catch-all handler. */
#define _XOPEN_SOURCE 700 /* strptime */
#include <time.h>
#include <arpa/inet.h>
#include <civetweb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "daebus/daebus.h"
#include "daebus/http.h"
#include "civet_server.h"
#include "component.h"
#include "testsupport.h"

ROUTE(get_device, "/devices/<device_id>")
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", daebus_http_request_param(req, "device_id"));
    return daebus_http_send_json_take(res, 200, o);
}

ROUTE(post_echo, "/echo", .methods = DAEBUS_POST)
{
    return daebus_http_send_json(res, 201, daebus_http_request_payload(req));
}

static ts_service svc;
static daebus_app *app;
static int port;

static int suite_init(void)
{
    ts_service_options o = {.service = "http_basic", .log_level = DAEBUS_LOG_ERROR, .http = true};
    if (ts_service_create(&svc, &o) != 0)
        return 1;
    daebus__civet_server *server = daebus__app_civet_server(svc.app);
    if (!server || daebus__civet_server_reserve_threads(server, 2) != 0)
        return 1;
    if (daebus__civet_server_set_option(server, "websocket_timeout_ms", "3600000") != 0 ||
        daebus__civet_server_set_option(server, "websocket_timeout_ms", "7200000") != 0 ||
        daebus__civet_server_set_option(server, "enable_websocket_ping_pong", "yes") != 0)
        return 1;
    if (ts_service_launch(&svc) != 0)
        return 1;
    app = svc.app;
    port = svc.port;
    return 0;
}

static int suite_clean(void)
{
    ts_service_stop(&svc);
    return 0;
}

static void test_port_and_context(void)
{
    daebus__civet_server *server = daebus__app_civet_server(app);
    CU_ASSERT(port > 0);
    CU_ASSERT_EQUAL(daebus_http_port(daebus_app_http(app)), port);
    CU_ASSERT_EQUAL(daebus__civet_server_port(server), port);
    CU_ASSERT_PTR_NOT_NULL(daebus__civet_server_context(server));
    CU_ASSERT_EQUAL(daebus__civet_server_reserve_threads(server, 1), DAEBUS_ESTATE);
    CU_ASSERT_EQUAL(daebus__civet_server_set_option(server, "num_threads", "1"), DAEBUS_ESTATE);
}

static void test_param_route(void)
{
    ts_http_response r;
    CU_ASSERT_EQUAL_FATAL(ts_http(port, "GET", "/devices/a%20b", NULL, NULL, 0, &r), 0);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_STRING_EQUAL(r.body, "{\"id\":\"a b\"}");
    char ct[128];
    CU_ASSERT_PTR_NOT_NULL(ts_http_header(&r, "Content-Type", ct, sizeof ct));
    CU_ASSERT_STRING_EQUAL(ct, "application/json");
    CU_ASSERT_PTR_NOT_NULL(ts_http_header(&r, "Content-Length", ct, sizeof ct));
    /* One Date header, RFC 7231 IMF-fixdate of now (the framework formats it). */
    CU_ASSERT_PTR_NOT_NULL_FATAL(ts_http_header(&r, "Date", ct, sizeof ct));
    struct tm tm = {0};
    const char *end = strptime(ct, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    CU_ASSERT_TRUE(end && *end == '\0' && strlen(ct) == 29);
    long skew = end ? (long)(timegm(&tm) - time(NULL)) : 999;
    CU_ASSERT_TRUE(skew >= -5 && skew <= 5);
    const char *d1 = strstr(r.headers, "Date:");
    CU_ASSERT_PTR_NULL(d1 ? strstr(d1 + 5, "Date:") : NULL);
    ts_http_free(&r);
}

static void test_404_405(void)
{
    ts_http_response r;
    CU_ASSERT_EQUAL_FATAL(ts_http(port, "GET", "/nope", NULL, NULL, 0, &r), 0);
    CU_ASSERT_EQUAL(r.status, 404);
    CU_ASSERT_STRING_EQUAL(r.body, "{\"error\":\"Not Found\",\"path\":\"/nope\"}");
    ts_http_free(&r);
    CU_ASSERT_EQUAL_FATAL(ts_http(port, "DELETE", "/echo", NULL, NULL, 0, &r), 0);
    CU_ASSERT_EQUAL(r.status, 405);
    char allow[128];
    CU_ASSERT_PTR_NOT_NULL(ts_http_header(&r, "Allow", allow, sizeof allow));
    CU_ASSERT_STRING_EQUAL(allow, "POST, OPTIONS");
    ts_http_free(&r);
}

static void test_json_post(void)
{
    ts_http_response r;
    const char *body = "{\"a\":1,\"b\":[true]}";
    CU_ASSERT_EQUAL_FATAL(ts_http(port, "POST", "/echo?q=x", "Content-Type: application/json\r\n",
                                  body, strlen(body), &r),
                          0);
    CU_ASSERT_EQUAL(r.status, 201);
    CU_ASSERT_STRING_EQUAL(r.body, "{\"a\":1,\"b\":[true],\"q\":\"x\"}");
    ts_http_free(&r);
}

/* ---- WebSocket coexistence ---- */

static volatile int ws_connects;

static int raw_ws_connect(const struct mg_connection *c, void *u)
{
    (void)c;
    (void)u;
    __atomic_add_fetch(&ws_connects, 1, __ATOMIC_SEQ_CST);
    return 1; /* reject: enough to prove the handler was reached */
}

/* Sends text on a fresh connection and returns the first bytes answered. */
static void raw_exchange(const char *text, char *out, size_t cap)
{
    out[0] = '\0';
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        write(fd, text, strlen(text)) == (ssize_t)strlen(text)) {
        ssize_t n = read(fd, out, cap - 1);
        out[n > 0 ? n : 0] = '\0';
    }
    close(fd);
}

static void test_websocket_upgrade_reaches_ws_handler(void)
{
    struct mg_context *ctx = daebus__civet_server_context(daebus__app_civet_server(app));
    mg_set_websocket_handler(ctx, "/", raw_ws_connect, NULL, NULL, NULL, NULL);
    char out[1024];
    raw_exchange("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
                 out, sizeof out);
    CU_ASSERT_EQUAL(__atomic_load_n(&ws_connects, __ATOMIC_SEQ_CST), 1);
    /* A plain request to "/" still goes to the HTTP component. */
    ts_http_response r;
    CU_ASSERT_EQUAL_FATAL(ts_http(port, "GET", "/", NULL, NULL, 0, &r), 0);
    CU_ASSERT_EQUAL(r.status, 404);
    ts_http_free(&r);
    mg_set_websocket_handler(ctx, "/", NULL, NULL, NULL, NULL, NULL);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("http_basic", suite_init, suite_clean);
    CU_add_test(s, "port and context", test_port_and_context);
    CU_add_test(s, "route with a parameter", test_param_route);
    CU_add_test(s, "404 and 405", test_404_405);
    CU_add_test(s, "JSON POST payload", test_json_post);
    CU_add_test(s, "websocket upgrade reaches a ws handler",
                test_websocket_upgrade_reaches_ws_handler);
    return ts_run_cunit();
}
