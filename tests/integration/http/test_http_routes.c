/* HTTP routes end to end over real sockets: parameters (one, several,
 * encoded, typed, path), exact beats parameter, every method, HEAD, automatic
 * OPTIONS, query/JSON/form payloads, 400/404/405/413/500 bodies, 204 for a
 * silent handler, chunked responses, middleware (pass, stop, per blueprint),
 * hundreds of routes, keep-alive on one connection, stats, access log. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "daebus/daebus.h"
#include "daebus/http.h"
#include "testsupport.h"

/* ---- routes ---- */

static cJSON *params_object(daebus_http_request *req, const char *const *names, int n)
{
    cJSON *o = cJSON_CreateObject();
    for (int i = 0; i < n; i++) {
        const char *v = daebus_http_request_param(req, names[i]);
        cJSON_AddItemToObject(o, names[i], v ? cJSON_CreateString(v) : cJSON_CreateNull());
    }
    return o;
}

ROUTE(one_param, "/devices/<device_id>")
{
    static const char *const names[] = {"device_id"};
    return daebus_http_send_json_take(res, 200, params_object(req, names, 1));
}

ROUTE(two_params, "/rooms/<room>/messages/<msg_id>")
{
    static const char *const names[] = {"room", "msg_id"};
    return daebus_http_send_json_take(res, 200, params_object(req, names, 2));
}

ROUTE(exact_device, "/devices/special")
{
    return daebus_http_send(res, 200, "text/plain", "exact", 5);
}

ROUTE(int_item, "/items/<int:id>")
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "kind", "int");
    cJSON_AddItemToObject(o, "payload", cJSON_Duplicate(daebus_http_request_payload(req), 1));
    return daebus_http_send_json_take(res, 200, o);
}

ROUTE(str_item, "/items/<name>")
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "kind", "str");
    cJSON_AddStringToObject(o, "name", daebus_http_request_param(req, "name"));
    return daebus_http_send_json_take(res, 200, o);
}

ROUTE(files_rest, "/files/<path:rest>")
{
    const char *rest = daebus_http_request_param(req, "rest");
    return daebus_http_send(res, 200, "text/plain", rest, strlen(rest));
}

/* Echoes method, path and payload; serves every method. */
ROUTE(echo_all, "/echo",
      .methods = DAEBUS_GET | DAEBUS_POST | DAEBUS_PUT | DAEBUS_PATCH | DAEBUS_DELETE)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "method", daebus_http_request_method(req));
    cJSON_AddStringToObject(o, "path", daebus_http_request_path(req));
    cJSON_AddItemToObject(o, "payload", cJSON_Duplicate(daebus_http_request_payload(req), 1));
    const char *q = daebus_http_request_query(req, "q");
    if (q)
        cJSON_AddStringToObject(o, "q", q);
    const char *h = daebus_http_request_header(req, "x-CUSTOM-header");
    if (h)
        cJSON_AddStringToObject(o, "header", h);
    size_t blen;
    daebus_http_request_body(req, &blen);
    cJSON_AddNumberToObject(o, "body_len", (double)blen);
    cJSON_AddStringToObject(o, "remote", daebus_http_request_remote_addr(req));
    daebus_http_set_header(res, "X-Handled", "yes");
    return daebus_http_send_json_take(res, 200, o);
}

/* <int:> and <float:> arrive as JSON numbers, the others as strings. */
ROUTE(measure, "/measure/<float:x>/<int:n>/<label>")
{
    cJSON *o = cJSON_Duplicate(daebus_http_request_payload(req), 1);
    cJSON_AddStringToObject(o, "x_text", daebus_http_request_param(req, "x"));
    return daebus_http_send_json_take(res, 200, o);
}

/* Differ only in the parameter name: the same route, the later one wins. */
ROUTE(dup_first, "/dup/<a>")
{
    return daebus_http_send(res, 200, "text/plain", "first", 5);
}
static const int dup_first_line = __LINE__ - 4;

ROUTE(dup_second, "/dup/<b>")
{
    const char *b = daebus_http_request_param(req, "b");
    return daebus_http_send(res, 200, "text/plain", b ? b : "?", b ? strlen(b) : 1);
}
static const int dup_second_line = __LINE__ - 5;

/* Same shape, other methods: each handler sees its own pattern's names. */
ROUTE(pm_get, "/pm/<a>")
{
    const char *v = daebus_http_request_param(req, "a");
    return daebus_http_send(res, 200, "text/plain", v ? "a" : "-", 1);
}

ROUTE(pm_post, "/pm/<b>", .methods = DAEBUS_POST)
{
    const char *v = daebus_http_request_param(req, "b");
    return daebus_http_send(res, 200, "text/plain", v ? "b" : "-", 1);
}

ROUTE(fails, "/fail")
{
    return DAEBUS_EHANDLER;
}

ROUTE(silent, "/silent", .methods = DAEBUS_POST)
{
    return 0;
}

ROUTE(streamed, "/stream")
{
    daebus_http_stream_begin(res, 200, "text/plain");
    for (int i = 0; i < 5; i++) {
        char line[32];
        int n = snprintf(line, sizeof line, "line %d\n", i);
        daebus_http_stream_write(res, line, (size_t)n);
    }
    return daebus_http_stream_end(res);
}

ROUTE(teapot, "/teapot")
{
    return daebus_http_send_error(res, 418, "short and stout");
}

static int misuse_rc[4];
static int misuse_done;

/* Sends twice and sets forbidden headers: each misuse must be refused. The
 * results are published with a release store once the handler is done (it
 * runs on after the client got its answer). */
ROUTE(misuse, "/misuse")
{
    int rc[4];
    rc[0] = daebus_http_set_header(res, "Content-Length", "5");
    rc[1] = daebus_http_set_header(res, "X-Evil", "a\r\nSet-Cookie: x=1");
    daebus_http_send(res, 200, "text/plain", "once", 4);
    rc[2] = daebus_http_send_json_take(res, 200, cJSON_CreateObject());
    rc[3] = daebus_http_set_header(res, "X-Late", "1");
    memcpy(misuse_rc, rc, sizeof rc);
    __atomic_store_n(&misuse_done, 1, __ATOMIC_RELEASE);
    return 0;
}

ROUTE(trailing, "/slash/")
{
    return daebus_http_send(res, 200, "text/plain", "slash", 5);
}

/* ---- middleware ---- */

static daebus_blueprint *admin_bp, *many_bp;

static int admin_route(daebus_http_request *req, daebus_http_response *res, void *user)
{
    (void)user;
    const char *who = daebus_http_request_get_local(req);
    return daebus_http_send(res, 200, "text/plain", who ? who : "none", who ? strlen(who) : 4);
}

static int numbered_route(daebus_http_request *req, daebus_http_response *res, void *user)
{
    (void)req;
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%d", (int)(intptr_t)user);
    return daebus_http_send(res, 200, "text/plain", buf, (size_t)n);
}

static int mw_global_calls;

static int mw_global(daebus_http_request *req, daebus_http_response *res, void *user)
{
    (void)user;
    __atomic_add_fetch(&mw_global_calls, 1, __ATOMIC_SEQ_CST);
    daebus_http_set_header(res, "X-Request-Id", "rid-1");
    if (daebus_http_request_header(req, "X-Block"))
        return daebus_http_send_error(res, 403, "blocked");
    return 0;
}

static int mw_admin(daebus_http_request *req, daebus_http_response *res, void *user)
{
    (void)user;
    const char *auth = daebus_http_request_header(req, "Authorization");
    if (!auth || strcmp(auth, "Bearer good") != 0)
        return daebus_http_send_error(res, 401, "unauthorized");
    daebus_http_request_set_local(req, "admin-user");
    return 0;
}

static int mw_fails(daebus_http_request *req, daebus_http_response *res, void *user)
{
    (void)res;
    (void)user;
    return daebus_http_request_header(req, "X-Mw-Fail") ? DAEBUS_EIO : 0;
}

/* ---- fixture ---- */

static ts_service svc;
static daebus_app *app;
static daebus_http *http;
static int port;
static int logfd[2];

#define MANY_ROUTES 500

static int suite_init(void)
{
    if (pipe(logfd) != 0)
        return 1;
    daebus_log_set_fd(logfd[1]);
    admin_bp = daebus_blueprint_create("admin", "/admin");
    daebus_blueprint_add_route(admin_bp, "/panel", admin_route, NULL);
    daebus_blueprint *many = many_bp = daebus_blueprint_create("many", "/many");
    for (int i = 0; i < MANY_ROUTES; i++) {
        char path[64];
        snprintf(path, sizeof path, "/r%d/<id>/leaf%d", i, i % 7);
        daebus_handler_options ho = DAEBUS_HANDLER_OPTIONS_INIT;
        ho.user = (void *)(intptr_t)i;
        daebus_blueprint_add_route(many, path, numbered_route, &ho);
    }
    daebus_http_options hopt = {.max_body_size = 4096, .access_log = true};
    ts_service_options o = {.service = "http_routes",
                            .log_level = DAEBUS_LOG_INFO,
                            .http = true,
                            .http_options = &hopt,
                            .blueprints = {admin_bp, many}};
    if (ts_service_create(&svc, &o) != 0)
        return 1;
    app = svc.app;
    http = svc.http;
    daebus_http_use(http, mw_global, NULL);
    daebus_http_use(http, mw_fails, NULL);
    daebus_http_use_blueprint(http, admin_bp, mw_admin, NULL);
    if (ts_service_launch(&svc) != 0)
        return 1;
    port = svc.port;
    return 0;
}

static int suite_clean(void)
{
    ts_service_stop(&svc);
    daebus_blueprint_destroy(admin_bp);
    daebus_blueprint_destroy(many_bp);
    daebus_log_set_fd(2);
    close(logfd[0]);
    close(logfd[1]);
    return 0;
}

static ts_http_response r;
static char hv[512];

static int req(const char *method, const char *target, const char *headers, const char *body)
{
    ts_http_free(&r);
    if (ts_http(port, method, target, headers, body, body ? strlen(body) : 0, &r) != 0)
        return -1;
    return r.status;
}

static const char *hdr(const char *name)
{
    return ts_http_header(&r, name, hv, sizeof hv);
}

/* ---- tests ---- */

static void test_params(void)
{
    CU_ASSERT_EQUAL(req("GET", "/devices/d1", NULL, NULL), 200);
    CU_ASSERT_STRING_EQUAL(r.body, "{\"device_id\":\"d1\"}");
    CU_ASSERT_EQUAL(req("GET", "/rooms/lobby/messages/42", NULL, NULL), 200);
    CU_ASSERT_STRING_EQUAL(r.body, "{\"room\":\"lobby\",\"msg_id\":\"42\"}");
    /* percent-encoded: space, UTF-8 and an encoded slash stay in one segment */
    CU_ASSERT_EQUAL(req("GET", "/rooms/a%20b/messages/%C3%A9%2Fx", NULL, NULL), 200);
    CU_ASSERT_STRING_EQUAL(r.body, "{\"room\":\"a b\",\"msg_id\":\"\xc3\xa9/x\"}");
    /* '+' is not a space in a path */
    CU_ASSERT_EQUAL(req("GET", "/devices/a+b", NULL, NULL), 200);
    CU_ASSERT_STRING_EQUAL(r.body, "{\"device_id\":\"a+b\"}");
    /* invalid UTF-8 in the path */
    CU_ASSERT_EQUAL(req("GET", "/devices/%FF", NULL, NULL), 400);
    CU_ASSERT_STRING_EQUAL(r.body, "{\"error\":\"Invalid UTF-8 in path\"}");
    /* a parameter never matches an empty segment */
    CU_ASSERT_EQUAL(req("GET", "/devices/", NULL, NULL), 404);
}

static void test_exact_typed_path(void)
{
    CU_ASSERT_EQUAL(req("GET", "/devices/special", NULL, NULL), 200);
    CU_ASSERT_STRING_EQUAL(r.body, "exact");
    CU_ASSERT_EQUAL(req("GET", "/items/17", NULL, NULL), 200);
    CU_ASSERT_STRING_EQUAL(r.body, "{\"kind\":\"int\",\"payload\":{\"id\":17}}");
    CU_ASSERT_EQUAL(req("GET", "/items/-3", NULL, NULL), 200);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "\"id\":-3"));
    CU_ASSERT_EQUAL(req("GET", "/items/17x", NULL, NULL), 200);
    CU_ASSERT_STRING_EQUAL(r.body, "{\"kind\":\"str\",\"name\":\"17x\"}");
    CU_ASSERT_EQUAL(req("GET", "/files/a/b%20c/d.txt", NULL, NULL), 200);
    CU_ASSERT_STRING_EQUAL(r.body, "a/b c/d.txt");
    CU_ASSERT_EQUAL(req("GET", "/slash/", NULL, NULL), 200);
    CU_ASSERT_EQUAL(req("GET", "/slash", NULL, NULL), 404);
    /* typed parameters are numbers in the payload; the param text stays text */
    CU_ASSERT_EQUAL(req("GET", "/measure/2.5/-4/7", NULL, NULL), 200);
    CU_ASSERT_STRING_EQUAL(r.body, "{\"x\":2.5,\"n\":-4,\"label\":\"7\",\"x_text\":\"2.5\"}");
    CU_ASSERT_EQUAL(req("GET", "/measure/1e3/0/x", NULL, NULL), 200);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "\"x\":1000,"));
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "\"x_text\":\"1e3\""));
    CU_ASSERT_EQUAL(req("GET", "/measure/abc/1/x", NULL, NULL), 404);
    CU_ASSERT_EQUAL(req("GET", "/measure/1.5/1.5/x", NULL, NULL), 404);
    /* duplicates by shape: the later registration serves, with its names */
    CU_ASSERT_EQUAL(req("GET", "/dup/zz", NULL, NULL), 200);
    CU_ASSERT_STRING_EQUAL(r.body, "zz");
    CU_ASSERT_EQUAL(req("GET", "/pm/1", NULL, NULL), 200);
    CU_ASSERT_STRING_EQUAL(r.body, "a");
    CU_ASSERT_EQUAL(req("POST", "/pm/1", NULL, NULL), 200);
    CU_ASSERT_STRING_EQUAL(r.body, "b");
}

static void test_methods(void)
{
    static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE"};
    for (int i = 0; i < 5; i++) {
        CU_ASSERT_EQUAL(req(methods[i], "/echo", NULL, NULL), 200);
        char want[64];
        snprintf(want, sizeof want, "\"method\":\"%s\"", methods[i]);
        CU_ASSERT_PTR_NOT_NULL(strstr(r.body, want));
        CU_ASSERT_PTR_NOT_NULL(hdr("X-Handled"));
    }
    /* HEAD: the GET's headers, no body */
    CU_ASSERT_EQUAL(req("HEAD", "/echo", NULL, NULL), 200);
    CU_ASSERT_EQUAL(r.body_len, 0);
    CU_ASSERT_PTR_NOT_NULL(hdr("Content-Length"));
    CU_ASSERT(atoi(hv) > 10);
    /* OPTIONS: automatic, 204 with Allow */
    CU_ASSERT_EQUAL(req("OPTIONS", "/echo", NULL, NULL), 204);
    CU_ASSERT_PTR_NOT_NULL(hdr("Allow"));
    CU_ASSERT_STRING_EQUAL(hv, "GET, POST, PUT, PATCH, DELETE, OPTIONS, HEAD");
    CU_ASSERT_EQUAL(r.body_len, 0);
    CU_ASSERT_EQUAL(req("OPTIONS", "/nowhere", NULL, NULL), 404);
    /* 405 with Allow */
    CU_ASSERT_EQUAL(req("POST", "/devices/x", NULL, NULL), 405);
    CU_ASSERT_STRING_EQUAL(r.body, "{\"error\":\"Method Not Allowed\",\"path\":\"/devices/x\"}");
    CU_ASSERT_PTR_NOT_NULL(hdr("Allow"));
    CU_ASSERT_STRING_EQUAL(hv, "GET, OPTIONS, HEAD");
    /* unknown method on a known path */
    /* methods routes cannot register: CivetWeb itself answers 400 */
    CU_ASSERT_EQUAL(req("TRACE", "/echo", NULL, NULL), 400);
}

static void test_payloads(void)
{
    /* query (GET): decoded, '+' = space, last repeat wins, blank kept */
    CU_ASSERT_EQUAL(req("GET", "/echo?q=hello+w%C3%B6rld&a=1&a=2&b=", NULL, NULL), 200);
    CU_ASSERT_PTR_NOT_NULL(strstr(
        r.body,
        "\"payload\":{\"q\":\"hello w\xc3\xb6rld\",\"a\":\"2\",\"b\":\"\"},\"q\":\"hello w"));
    /* JSON body */
    CU_ASSERT_EQUAL(req("POST", "/echo", "Content-Type: application/json; charset=utf-8\r\n",
                        "{\"name\":\"x\",\"n\":[1,2]}"),
                    200);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "\"payload\":{\"name\":\"x\",\"n\":[1,2]}"));
    /* JSON body wins over the query; route params win over both */
    CU_ASSERT_EQUAL(req("PUT", "/echo?name=q&extra=1", "Content-Type: application/json\r\n",
                        "{\"name\":\"body\"}"),
                    200);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "\"payload\":{\"name\":\"body\",\"extra\":\"1\"}"));
    /* form body */
    CU_ASSERT_EQUAL(req("PATCH", "/echo", "Content-Type: application/x-www-form-urlencoded\r\n",
                        "a=1+2&b=%26%3D&c"),
                    200);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "\"payload\":{\"a\":\"1 2\",\"b\":\"&=\",\"c\":\"\"}"));
    /* a JSON list body is the payload itself */
    CU_ASSERT_EQUAL(req("POST", "/echo", "Content-Type: application/json\r\n", "[1,2,3]"), 200);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "\"payload\":[1,2,3]"));
    /* an empty body with a JSON content type is fine (the TypeScript client sends those) */
    CU_ASSERT_EQUAL(req("POST", "/echo", "Content-Type: application/json\r\n", NULL), 200);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "\"payload\":{}"));
    /* raw body of another type: available, not merged */
    CU_ASSERT_EQUAL(req("POST", "/echo", "Content-Type: text/plain\r\n", "hello"), 200);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "\"body_len\":5"));
    /* headers are case-insensitive */
    CU_ASSERT_EQUAL(req("GET", "/echo", "X-Custom-Header: v1\r\n", NULL), 200);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "\"header\":\"v1\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "\"remote\":\"127.0.0.1\""));
    /* keys differing in case are distinct (found by fuzzing: the second one
     * used to be dropped, and its value leaked) */
    CU_ASSERT_EQUAL(req("GET", "/echo?A=1&a=2", NULL, NULL), 200);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "\"payload\":{\"A\":\"1\",\"a\":\"2\"}"));
    CU_ASSERT_EQUAL(req("GET", "/items/5?ID=q", NULL, NULL), 200);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "\"payload\":{\"ID\":\"q\",\"id\":5}"));
}

static void test_errors(void)
{
    CU_ASSERT_EQUAL(req("POST", "/echo", "Content-Type: application/json\r\n", "{\"a\":"), 400);
    CU_ASSERT_STRING_EQUAL(r.body, "{\"error\":\"Invalid JSON body\"}");
    CU_ASSERT_EQUAL(req("POST", "/echo", "Content-Type: application/json\r\n", "null x"), 400);
    CU_ASSERT_EQUAL(req("POST", "/echo", "Content-Type: application/json\r\n", "{\"a\":\"\xff\"}"),
                    400);
    CU_ASSERT_STRING_EQUAL(r.body, "{\"error\":\"Invalid UTF-8 in request body\"}");
    CU_ASSERT_EQUAL(
        req("POST", "/echo", "Content-Type: application/x-www-form-urlencoded\r\n", "a=%FF"), 400);
    CU_ASSERT_STRING_EQUAL(r.body, "{\"error\":\"Invalid UTF-8 in form body\"}");
    CU_ASSERT_EQUAL(req("GET", "/echo?a=%C3", NULL, NULL), 400);
    CU_ASSERT_STRING_EQUAL(r.body, "{\"error\":\"Invalid UTF-8 in query string\"}");
    CU_ASSERT_EQUAL(req("GET", "/no/such/path", NULL, NULL), 404);
    CU_ASSERT_STRING_EQUAL(r.body, "{\"error\":\"Not Found\",\"path\":\"/no/such/path\"}");
    /* 413: limit 4096 in this fixture */
    char *big = malloc(5001);
    memset(big, 'a', 5000);
    big[5000] = '\0';
    CU_ASSERT_EQUAL(req("POST", "/echo", "Content-Type: text/plain\r\n", big), 413);
    CU_ASSERT_STRING_EQUAL(r.body, "{\"error\":\"Request body too large\"}");
    big[4096] = '\0';
    CU_ASSERT_EQUAL(req("POST", "/echo", "Content-Type: text/plain\r\n", big), 200);
    free(big);
    /* 500: detail logged, not sent */
    CU_ASSERT_EQUAL(req("GET", "/fail", NULL, NULL), 500);
    CU_ASSERT_STRING_EQUAL(r.body, "{\"error\":\"Internal server error\"}");
    /* nothing sent and 0 returned: 204 */
    CU_ASSERT_EQUAL(req("POST", "/silent", NULL, NULL), 204);
    CU_ASSERT_EQUAL(r.body_len, 0);
    CU_ASSERT_EQUAL(req("GET", "/teapot", NULL, NULL), 418);
    CU_ASSERT_STRING_EQUAL(r.body, "{\"error\":\"short and stout\"}");
}

static void test_misuse(void)
{
    CU_ASSERT_EQUAL(req("GET", "/misuse", NULL, NULL), 200);
    CU_ASSERT_STRING_EQUAL(r.body, "once");
    CU_ASSERT_PTR_NULL(hdr("X-Evil"));
    CU_ASSERT_PTR_NULL(hdr("Set-Cookie"));
    double t0 = ts_now();
    while (!__atomic_load_n(&misuse_done, __ATOMIC_ACQUIRE) && ts_now() - t0 < 5)
        ts_sleep_ms(2);
    CU_ASSERT_EQUAL(misuse_rc[0], DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(misuse_rc[1], DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(misuse_rc[2], DAEBUS_ESTATE);
    CU_ASSERT_EQUAL(misuse_rc[3], DAEBUS_ESTATE);
}

static void test_chunked(void)
{
    CU_ASSERT_EQUAL(req("GET", "/stream", NULL, NULL), 200);
    CU_ASSERT_PTR_NOT_NULL(hdr("Transfer-Encoding"));
    CU_ASSERT_STRING_EQUAL(hv, "chunked");
    CU_ASSERT_PTR_NULL(hdr("Content-Length"));
    CU_ASSERT_STRING_EQUAL(r.body, "line 0\nline 1\nline 2\nline 3\nline 4\n");
}

static void test_middleware(void)
{
    int before = __atomic_load_n(&mw_global_calls, __ATOMIC_SEQ_CST);
    CU_ASSERT_EQUAL(req("GET", "/devices/a", NULL, NULL), 200);
    CU_ASSERT_PTR_NOT_NULL(hdr("X-Request-Id"));
    CU_ASSERT(__atomic_load_n(&mw_global_calls, __ATOMIC_SEQ_CST) == before + 1);
    /* global middleware stops the request */
    CU_ASSERT_EQUAL(req("GET", "/devices/a", "X-Block: 1\r\n", NULL), 403);
    CU_ASSERT_STRING_EQUAL(r.body, "{\"error\":\"blocked\"}");
    /* failing middleware: 500 */
    CU_ASSERT_EQUAL(req("GET", "/devices/a", "X-Mw-Fail: 1\r\n", NULL), 500);
    CU_ASSERT_STRING_EQUAL(r.body, "{\"error\":\"Internal server error\"}");
    /* blueprint middleware: stops without credentials, passes data on with */
    CU_ASSERT_EQUAL(req("GET", "/admin/panel", NULL, NULL), 401);
    CU_ASSERT_STRING_EQUAL(r.body, "{\"error\":\"unauthorized\"}");
    CU_ASSERT_EQUAL(req("GET", "/admin/panel", "Authorization: Bearer good\r\n", NULL), 200);
    CU_ASSERT_STRING_EQUAL(r.body, "admin-user");
    /* ...and does not run for other routes */
    CU_ASSERT_EQUAL(req("GET", "/devices/b", NULL, NULL), 200);
}

static void test_many_routes(void)
{
    CU_ASSERT_EQUAL(req("GET", "/many/r0/x/leaf0", NULL, NULL), 200);
    CU_ASSERT_STRING_EQUAL(r.body, "0");
    CU_ASSERT_EQUAL(req("GET", "/many/r499/x/leaf2", NULL, NULL), 200);
    CU_ASSERT_STRING_EQUAL(r.body, "499");
    CU_ASSERT_EQUAL(req("GET", "/many/r250/x/leaf5", NULL, NULL), 200);
    CU_ASSERT_STRING_EQUAL(r.body, "250");
    CU_ASSERT_EQUAL(req("GET", "/many/r250/x/leaf4", NULL, NULL), 404);
}

/* Two requests on one connection: keep-alive works. */
static void test_keep_alive(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CU_ASSERT_EQUAL_FATAL(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    const char *one = "GET /devices/k1 HTTP/1.1\r\nHost: x\r\n\r\n";
    char buf[4096];
    size_t got = 0;
    int responses = 0;
    for (int round = 0; round < 2; round++) {
        CU_ASSERT(write(fd, one, strlen(one)) == (ssize_t)strlen(one));
        double t0 = ts_now();
        while (ts_now() - t0 < 5) {
            ssize_t n = read(fd, buf + got, sizeof buf - 1 - got);
            if (n <= 0)
                break;
            got += (size_t)n;
            buf[got] = '\0';
            if (strstr(buf, "{\"device_id\":\"k1\"}"))
                break;
        }
        if (strstr(buf, "{\"device_id\":\"k1\"}") && strstr(buf, "keep-alive"))
            responses++;
        got = 0;
        buf[0] = '\0';
    }
    close(fd);
    CU_ASSERT_EQUAL(responses, 2);
}

/* Writes one request on fd and reads until marker (or 5 s); the answer goes to buf. */
static void ka_round(int fd, const char *request, const char *marker, char *buf, size_t cap)
{
    size_t got = 0;
    buf[0] = '\0';
    if (write(fd, request, strlen(request)) != (ssize_t)strlen(request))
        return;
    double t0 = ts_now();
    while (ts_now() - t0 < 5 && !strstr(buf, marker)) {
        ssize_t n = read(fd, buf + got, cap - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
        buf[got] = '\0';
    }
}

/* The request and response of one request do not leak into the next one on
 * the same connection (the same CivetWeb thread): headers, query, params. */
static void test_keep_alive_no_leftovers(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CU_ASSERT_EQUAL_FATAL(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    char buf[4096];
    ka_round(fd, "GET /echo?q=first HTTP/1.1\r\nHost: x\r\n\r\n", "\"q\":\"first\"}", buf,
             sizeof buf);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "X-Handled: yes"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "\"q\":\"first\""));
    ka_round(fd, "GET /devices/k2 HTTP/1.1\r\nHost: x\r\n\r\n", "{\"device_id\":\"k2\"}", buf,
             sizeof buf);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "{\"device_id\":\"k2\"}"));
    CU_ASSERT_PTR_NULL(strstr(buf, "X-Handled"));
    ka_round(fd, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n", "\"remote\"", buf, sizeof buf);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "\"payload\":{}"));
    CU_ASSERT_PTR_NULL(strstr(buf, "first"));
    close(fd);
}

/* Sends a raw request (ending in Connection: close) and reads the whole answer. */
static void raw_exchange(const char *head, const char *body, size_t blen, char *out, size_t cap)
{
    out[0] = '\0';
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return;
    }
    ssize_t w = write(fd, head, strlen(head));
    size_t off = 0;
    while (w > 0 && off < blen) {
        w = write(fd, body + off, blen - off);
        off += w > 0 ? (size_t)w : 0;
    }
    size_t got = 0;
    ssize_t n;
    while (got < cap - 1 && (n = read(fd, out + got, cap - 1 - got)) > 0)
        got += (size_t)n;
    out[got] = '\0';
    close(fd);
}

static void test_chunked_upload(void)
{
    char out[8192];
    const char *body = "7\r\n{\"a\": \"\r\n4\r\nxy\"}\r\n0\r\n\r\n";
    raw_exchange("POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                 "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
                 body, strlen(body), out, sizeof out);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "HTTP/1.1 200"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\"payload\":{\"a\":\"xy\"}"));
    /* a chunked body over the limit (4096 here) */
    size_t big = 3 * 2000 + 64;
    char *b = malloc(big);
    size_t o = 0;
    for (int i = 0; i < 3; i++) {
        o += (size_t)snprintf(b + o, big - o, "7d0\r\n");
        memset(b + o, 'z', 2000);
        o += 2000;
        o += (size_t)snprintf(b + o, big - o, "\r\n");
    }
    o += (size_t)snprintf(b + o, big - o, "0\r\n\r\n");
    raw_exchange("POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                 "Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n",
                 b, o, out, sizeof out);
    free(b);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "HTTP/1.1 413"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "{\"error\":\"Request body too large\"}"));
}

static void test_stats_and_log(void)
{
    daebus_http_stats st;
    /* the last response may be on the wire before its worker finished */
    double t0 = ts_now();
    do {
        CU_ASSERT_EQUAL(daebus_http_get_stats(http, &st), 0);
        if (st.in_flight)
            ts_sleep_ms(5);
    } while (st.in_flight && ts_now() - t0 < 5);
    CU_ASSERT(st.requests_total > 20);
    CU_ASSERT(st.responses_2xx > 10);
    CU_ASSERT(st.responses_4xx > 5);
    CU_ASSERT(st.responses_5xx >= 2);
    CU_ASSERT(st.in_flight == 0);
    CU_ASSERT(st.bytes_in > 4096);
    CU_ASSERT(st.bytes_out > 100);
    /* the access log wrote a line for the teapot request */
    char buf[65536];
    ssize_t n = read(logfd[0], buf, sizeof buf - 1);
    CU_ASSERT(n > 0);
    buf[n > 0 ? n : 0] = '\0';
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "GET /teapot 418"));
    /* a failing handler's line names its code */
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "returned -16 (DAEBUS_EHANDLER: handler failed)"));
    /* the duplicate route, warned once when the app merged it */
    char want[256];
    snprintf(want, sizeof want,
             "route GET \"/dup/<b>\": test_http_routes.c:%d overrides \"/dup/<a>\" at "
             "test_http_routes.c:%d",
             dup_second_line, dup_first_line);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, want));
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("http_routes", suite_init, suite_clean);
    CU_add_test(s, "parameters", test_params);
    CU_add_test(s, "exact, typed and path parameters", test_exact_typed_path);
    CU_add_test(s, "methods, HEAD, OPTIONS, 405", test_methods);
    CU_add_test(s, "payloads", test_payloads);
    CU_add_test(s, "400/404/413/500/204", test_errors);
    CU_add_test(s, "chunked response", test_chunked);
    CU_add_test(s, "response misuse refused", test_misuse);
    CU_add_test(s, "middleware", test_middleware);
    CU_add_test(s, "hundreds of routes", test_many_routes);
    CU_add_test(s, "keep-alive", test_keep_alive);
    CU_add_test(s, "keep-alive: nothing left from the previous request",
                test_keep_alive_no_leftovers);
    CU_add_test(s, "chunked request bodies", test_chunked_upload);
    CU_add_test(s, "stats and access log", test_stats_and_log);
    int rc = ts_run_cunit();
    ts_http_free(&r);
    return rc;
}
