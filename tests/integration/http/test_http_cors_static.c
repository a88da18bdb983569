/* CORS (preflight and simple requests for allowed, disallowed and wildcard
 * origins, with and without credentials, changed at run time from JSON) and
 * static files (index, content types, prefix, route precedence, escape
 * attempts: "..", "%2e%2e", encoded slashes, hidden files, symlinks). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "daebus/daebus.h"
#include "daebus/http.h"
#include "testsupport.h"

ROUTE(cors_api, "/api/items", .methods = DAEBUS_GET | DAEBUS_POST | DAEBUS_DELETE)
{
    return daebus_http_send_json_take(res, 200, cJSON_CreateArray());
}

/* A route shadowing a static file. */
ROUTE(shadow, "/shadowed.txt")
{
    return daebus_http_send(res, 200, "text/plain", "route", 5);
}

static ts_service svc;
static daebus_http *http;
static int port;
static char root[256], outside[300];

static void write_file(const char *dir, const char *name, const char *text)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static int suite_init(void)
{
    snprintf(root, sizeof root, "/tmp/daebus_http_static_XXXXXX");
    if (!mkdtemp(root))
        return 1;
    char pub[300];
    snprintf(pub, sizeof pub, "%s/public", root);
    mkdir(pub, 0755);
    snprintf(outside, sizeof outside, "%s/secret.txt", root);
    write_file(root, "secret.txt", "top secret");
    write_file(pub, "index.html", "<h1>chat</h1>");
    write_file(pub, "app.js", "console.log(1)");
    write_file(pub, "style.css", "body{}");
    write_file(pub, "shadowed.txt", "file");
    write_file(pub, ".env", "hidden");
    char sub[320];
    snprintf(sub, sizeof sub, "%s/sub", pub);
    mkdir(sub, 0755);
    write_file(sub, "index.html", "sub index");
    write_file(sub, "data.json", "{\"a\":1}");
    char link[340];
    snprintf(link, sizeof link, "%s/escape.txt", pub);
    if (symlink(outside, link) != 0)
        return 1;

    daebus_http_options ho = {.static_dir = pub};
    daebus_http_cors cors = {.allowed_origins = "https://good.example, https://also.example",
                             .allowed_methods = "GET, post",
                             .allowed_headers = "Content-Type, X-Token",
                             .expose_headers = "X-Total",
                             .allow_credentials = false,
                             .max_age = 600};
    ho.cors = &cors;
    ts_service_options o = {.service = "http_cors_static",
                            .log_level = DAEBUS_LOG_ERROR,
                            .http = true,
                            .http_options = &ho};
    if (ts_service_start(&svc, &o) != 0)
        return 1;
    http = svc.http;
    port = svc.port;
    return 0;
}

static int suite_clean(void)
{
    ts_service_stop(&svc);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    return system(cmd) == 0 ? 0 : 1;
}

static ts_http_response r;
static char hv[512];

static int req(const char *method, const char *target, const char *headers)
{
    ts_http_free(&r);
    if (ts_http(port, method, target, headers, NULL, 0, &r) != 0)
        return -1;
    return r.status;
}

static const char *hdr(const char *name)
{
    return ts_http_header(&r, name, hv, sizeof hv);
}

static void check_hdr(const char *name, const char *want)
{
    const char *got = hdr(name);
    if (!want) {
        CU_ASSERT_PTR_NULL(got);
        return;
    }
    CU_ASSERT_PTR_NOT_NULL(got);
    if (got) {
        CU_ASSERT_STRING_EQUAL(got, want);
        if (strcmp(got, want) != 0)
            fprintf(stderr, "header %s: got \"%s\", want \"%s\"\n", name, got, want);
    }
}

/* ---- CORS ---- */

static void test_cors_simple(void)
{
    CU_ASSERT_EQUAL(req("GET", "/api/items", "Origin: https://good.example\r\n"), 200);
    check_hdr("Access-Control-Allow-Origin", "https://good.example");
    check_hdr("Access-Control-Expose-Headers", "X-Total");
    check_hdr("Vary", "Origin");
    check_hdr("Access-Control-Allow-Credentials", NULL);
    /* disallowed origin: served, but no CORS headers */
    CU_ASSERT_EQUAL(req("GET", "/api/items", "Origin: https://evil.example\r\n"), 200);
    check_hdr("Access-Control-Allow-Origin", NULL);
    check_hdr("Access-Control-Expose-Headers", NULL);
    check_hdr("Access-Control-Allow-Methods", NULL);
    /* no Origin header: nothing but Vary */
    CU_ASSERT_EQUAL(req("GET", "/api/items", NULL), 200);
    check_hdr("Access-Control-Allow-Origin", NULL);
    /* error responses carry the CORS headers too */
    CU_ASSERT_EQUAL(req("GET", "/api/none", "Origin: https://also.example\r\n"), 404);
    check_hdr("Access-Control-Allow-Origin", "https://also.example");
}

static void test_cors_preflight(void)
{
    CU_ASSERT_EQUAL(req("OPTIONS", "/api/items",
                        "Origin: https://good.example\r\nAccess-Control-Request-Method: POST\r\n"
                        "Access-Control-Request-Headers: content-type\r\n"),
                    204);
    check_hdr("Access-Control-Allow-Origin", "https://good.example");
    check_hdr("Access-Control-Allow-Methods", "GET, POST"); /* config ∩ route */
    check_hdr("Access-Control-Allow-Headers", "Content-Type,X-Token");
    check_hdr("Access-Control-Max-Age", "600");
    check_hdr("Vary", "Origin");
    check_hdr("Access-Control-Expose-Headers", NULL);
    CU_ASSERT_EQUAL(r.body_len, 0);
    /* disallowed origin: 204 with Allow, no CORS headers */
    CU_ASSERT_EQUAL(req("OPTIONS", "/api/items",
                        "Origin: https://evil.example\r\nAccess-Control-Request-Method: POST\r\n"),
                    204);
    check_hdr("Access-Control-Allow-Origin", NULL);
    check_hdr("Access-Control-Allow-Methods", NULL);
    check_hdr("Allow", "GET, POST, DELETE, OPTIONS, HEAD");
    /* unknown path: 404 */
    CU_ASSERT_EQUAL(req("OPTIONS", "/api/none", "Origin: https://good.example\r\n"), 404);
}

static void test_cors_wildcard_and_credentials(void)
{
    cJSON *cfg = cJSON_Parse("{\"allowed_origins\": \"*\", \"allowed_headers\": \"*\","
                             "\"allowed_methods\": [\"GET\", \"POST\", \"DELETE\"]}");
    CU_ASSERT_EQUAL(daebus_http_set_cors_json(http, cfg), 0);
    cJSON_Delete(cfg);
    CU_ASSERT_EQUAL(req("GET", "/api/items", "Origin: https://any.example\r\n"), 200);
    check_hdr("Access-Control-Allow-Origin", "*");
    check_hdr("Access-Control-Allow-Credentials", NULL);
    CU_ASSERT_EQUAL(req("OPTIONS", "/api/items",
                        "Origin: https://any.example\r\nAccess-Control-Request-Method: DELETE\r\n"
                        "Access-Control-Request-Headers: x-one, x-two\r\n"),
                    204);
    check_hdr("Access-Control-Allow-Origin", "*");
    check_hdr("Access-Control-Allow-Headers", "x-one, x-two"); /* "*" echoes */
    check_hdr("Access-Control-Allow-Methods", "GET, POST, DELETE");
    check_hdr("Access-Control-Max-Age", NULL);

    /* wildcard + credentials: the origin is echoed, never "*" */
    cfg =
        cJSON_Parse("{\"allowed_origins\": [\"*\"], \"allow_credentials\": true, \"max_age\": 5}");
    CU_ASSERT_EQUAL(daebus_http_set_cors_json(http, cfg), 0);
    cJSON_Delete(cfg);
    CU_ASSERT_EQUAL(req("GET", "/api/items", "Origin: https://any.example\r\n"), 200);
    check_hdr("Access-Control-Allow-Origin", "https://any.example");
    check_hdr("Access-Control-Allow-Credentials", "true");
    CU_ASSERT_EQUAL(req("OPTIONS", "/api/items",
                        "Origin: https://any.example\r\nAccess-Control-Request-Method: GET\r\n"),
                    204);
    check_hdr("Access-Control-Allow-Origin", "https://any.example");
    check_hdr("Access-Control-Allow-Credentials", "true");
    check_hdr("Access-Control-Max-Age", "5");

    /* list + credentials: allowed origin echoed with credentials, other none */
    daebus_http_cors c = {.allowed_origins = "https://good.example", .allow_credentials = true};
    CU_ASSERT_EQUAL(daebus_http_set_cors(http, &c), 0);
    CU_ASSERT_EQUAL(req("GET", "/api/items", "Origin: https://good.example\r\n"), 200);
    check_hdr("Access-Control-Allow-Origin", "https://good.example");
    check_hdr("Access-Control-Allow-Credentials", "true");
    CU_ASSERT_EQUAL(req("GET", "/api/items", "Origin: https://evil.example\r\n"), 200);
    check_hdr("Access-Control-Allow-Origin", NULL);
    check_hdr("Access-Control-Allow-Credentials", NULL);

    /* bad JSON types are refused and keep the old configuration */
    cfg = cJSON_Parse("{\"allowed_origins\": 5}");
    CU_ASSERT_EQUAL(daebus_http_set_cors_json(http, cfg), DAEBUS_EINVAL);
    cJSON_Delete(cfg);
    CU_ASSERT_EQUAL(req("GET", "/api/items", "Origin: https://good.example\r\n"), 200);
    check_hdr("Access-Control-Allow-Origin", "https://good.example");

    /* CORS off */
    CU_ASSERT_EQUAL(daebus_http_set_cors(http, NULL), 0);
    CU_ASSERT_EQUAL(req("GET", "/api/items", "Origin: https://good.example\r\n"), 200);
    check_hdr("Access-Control-Allow-Origin", NULL);
    check_hdr("Vary", NULL);
}

/* ---- static files ---- */

static void test_static_files(void)
{
    CU_ASSERT_EQUAL(req("GET", "/", NULL), 200);
    CU_ASSERT_STRING_EQUAL(r.body, "<h1>chat</h1>");
    check_hdr("Content-Type", "text/html; charset=utf-8");
    check_hdr("Content-Length", "13");
    CU_ASSERT_EQUAL(req("GET", "/index.html", NULL), 200);
    CU_ASSERT_EQUAL(req("GET", "/app.js", NULL), 200);
    check_hdr("Content-Type", "text/javascript; charset=utf-8");
    CU_ASSERT_EQUAL(req("GET", "/style.css", NULL), 200);
    check_hdr("Content-Type", "text/css; charset=utf-8");
    CU_ASSERT_EQUAL(req("GET", "/sub/data.json", NULL), 200);
    check_hdr("Content-Type", "application/json");
    CU_ASSERT_EQUAL(req("GET", "/sub/", NULL), 200);
    CU_ASSERT_STRING_EQUAL(r.body, "sub index");
    CU_ASSERT_EQUAL(req("HEAD", "/app.js", NULL), 200);
    CU_ASSERT_EQUAL(r.body_len, 0);
    check_hdr("Content-Length", "14");
    /* routes take precedence */
    CU_ASSERT_EQUAL(req("GET", "/shadowed.txt", NULL), 200);
    CU_ASSERT_STRING_EQUAL(r.body, "route");
    /* missing file: the JSON 404 */
    CU_ASSERT_EQUAL(req("GET", "/missing.png", NULL), 404);
    CU_ASSERT_STRING_EQUAL(r.body, "{\"error\":\"Not Found\",\"path\":\"/missing.png\"}");
    /* writes to a static file: 405 */
    CU_ASSERT_EQUAL(req("POST", "/app.js", NULL), 405);
    check_hdr("Allow", "GET, OPTIONS, HEAD");
}

static void test_static_escape(void)
{
    static const char *const attempts[] = {
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/sub/../../secret.txt",
        "/sub/%2e%2e%2f..%2fsecret.txt",
        "/..%2fsecret.txt",
        "/.%2e/secret.txt",
        "/sub%2f..%2f..%2fsecret.txt",
        "/escape.txt",
        "/.env",
        "/sub/..%5c..%5csecret.txt",
    };
    for (size_t i = 0; i < sizeof attempts / sizeof attempts[0]; i++) {
        int st = req("GET", attempts[i], NULL);
        CU_ASSERT(st == 404 || st == 403 || st == 400);
        CU_ASSERT_PTR_NULL(strstr(r.body ? r.body : "", "top secret"));
        CU_ASSERT_PTR_NULL(strstr(r.body ? r.body : "", "hidden"));
        if (!(st == 404 || st == 403 || st == 400))
            fprintf(stderr, "escape %s: %d %s\n", attempts[i], st, r.body);
    }
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("http_cors_static", suite_init, suite_clean);
    CU_add_test(s, "CORS simple requests", test_cors_simple);
    CU_add_test(s, "CORS preflight", test_cors_preflight);
    CU_add_test(s, "CORS wildcard and credentials, set at run time",
                test_cors_wildcard_and_credentials);
    CU_add_test(s, "static files", test_static_files);
    CU_add_test(s, "static path escapes", test_static_escape);
    int rc = ts_run_cunit();
    ts_http_free(&r);
    return rc;
}
