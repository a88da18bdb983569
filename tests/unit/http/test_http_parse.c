/* The HTTP component's pure parts: UTF-8 validation, percent-decoding, forms,
 * path splitting, static path checks, media types, the CORS header builder,
 * and the route trie (precedence, converters, 405 data, hundreds of routes). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "daebus/daebus.h"
#include "http_cors.h"
#include "http_parse.h"
#include "http_router.h"
#include "testsupport.h"

static void test_utf8(void)
{
    CU_ASSERT_TRUE(daebus__http_utf8_valid("abc", 3));
    CU_ASSERT_TRUE(daebus__http_utf8_valid("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9));
    CU_ASSERT_FALSE(daebus__http_utf8_valid("\xff", 1));
    CU_ASSERT_FALSE(daebus__http_utf8_valid("\xc3", 1));             /* truncated */
    CU_ASSERT_FALSE(daebus__http_utf8_valid("\xc0\xaf", 2));         /* overlong */
    CU_ASSERT_FALSE(daebus__http_utf8_valid("\xe0\x80\xaf", 3));     /* overlong */
    CU_ASSERT_FALSE(daebus__http_utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    CU_ASSERT_FALSE(daebus__http_utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    CU_ASSERT_FALSE(daebus__http_utf8_valid("a\0b", 3));
}

static void test_decode_and_forms(void)
{
    char out[64];
    CU_ASSERT_EQUAL(daebus__http_percent_decode("a%20b+c%2", 9, out, false), 7);
    CU_ASSERT_STRING_EQUAL(out, "a b+c%2");
    daebus__http_percent_decode("a+b%zz", 6, out, true);
    CU_ASSERT_STRING_EQUAL(out, "a b%zz");
    cJSON *o = cJSON_CreateObject();
    const char *form = "a=1&b=x+y&a=2&&=skip&c&d=%C3%A9";
    CU_ASSERT_EQUAL(daebus__http_parse_form(form, strlen(form), o), 0);
    char *text = cJSON_PrintUnformatted(o);
    CU_ASSERT_STRING_EQUAL(text, "{\"a\":\"2\",\"b\":\"x y\",\"c\":\"\",\"d\":\"\xc3\xa9\"}");
    free(text);
    cJSON_Delete(o);
    o = cJSON_CreateObject();
    CU_ASSERT_EQUAL(daebus__http_parse_form("a=%FF", 5, o), -1);
    CU_ASSERT_EQUAL(daebus__http_parse_form("a=%00", 5, o), -1);
    cJSON_Delete(o);
}

static void test_split_path(void)
{
    char buf[128];
    const char *segs[8];
    size_t lens[8];
    CU_ASSERT_EQUAL(daebus__http_split_path("/", buf, segs, lens, 8), 1);
    CU_ASSERT_EQUAL(lens[0], 0);
    CU_ASSERT_EQUAL(daebus__http_split_path("/a/b%2Fc/", buf, segs, lens, 8), 3);
    CU_ASSERT_STRING_EQUAL(segs[1], "b/c");
    CU_ASSERT_EQUAL(lens[2], 0);
    CU_ASSERT_EQUAL(daebus__http_split_path("/a%00", buf, segs, lens, 8), -2);
    CU_ASSERT_EQUAL(daebus__http_split_path("/%ff", buf, segs, lens, 8), -2);
    CU_ASSERT_EQUAL(daebus__http_split_path("x", buf, segs, lens, 8), -1);
    CU_ASSERT_EQUAL(daebus__http_split_path("/1/2/3/4/5/6/7/8/9", buf, segs, lens, 8), -1);
}

static void test_misc(void)
{
    CU_ASSERT_TRUE(daebus__http_static_path_safe("/a/b.txt", false));
    CU_ASSERT_FALSE(daebus__http_static_path_safe("/a/../b", false));
    CU_ASSERT_FALSE(daebus__http_static_path_safe("/a/./b", false));
    CU_ASSERT_FALSE(daebus__http_static_path_safe("/.env", false));
    CU_ASSERT_TRUE(daebus__http_static_path_safe("/.well-known/x", true));
    CU_ASSERT_FALSE(daebus__http_static_path_safe("/a\\..\\b", true));
    CU_ASSERT_TRUE(daebus__list_has("GET, Post ,PUT", "post", 4, true));
    CU_ASSERT_FALSE(daebus__list_has("GET,POSTX", "POST", 4, true));
    CU_ASSERT_TRUE(daebus__http_media_type_is_json("application/json; charset=utf-8"));
    CU_ASSERT_TRUE(daebus__http_media_type_is_json("application/vnd.api+json"));
    CU_ASSERT_FALSE(daebus__http_media_type_is_json("application/jsonx"));
    CU_ASSERT_FALSE(daebus__http_media_type_is_json(NULL));
    CU_ASSERT_TRUE(daebus__http_media_type_is(" application/x-www-form-urlencoded;x=1",
                                              "application/x-www-form-urlencoded"));
    long long n;
    CU_ASSERT_TRUE(daebus__http_parse_int("-42", 3, &n));
    CU_ASSERT_EQUAL(n, -42);
    CU_ASSERT_FALSE(daebus__http_parse_int("4a", 2, &n));
    CU_ASSERT_FALSE(daebus__http_parse_int("-", 1, &n));
    CU_ASSERT_FALSE(daebus__http_parse_int("1234567890123456789", 19, &n));
    CU_ASSERT_STRING_EQUAL(daebus__http_mime_type("/x/INDEX.HTML"), "text/html; charset=utf-8");
    CU_ASSERT_STRING_EQUAL(daebus__http_mime_type("/x/.hidden"), "application/octet-stream");
    CU_ASSERT_STRING_EQUAL(daebus__http_mime_type("/x/a.png"), "image/png");
}

static void test_cors_builder(void)
{
    daebus__http_cors *c = NULL;
    daebus_http_cors cfg = {.allowed_origins = " https://a.example ,, https://b.example ",
                            .allowed_methods = "get,post",
                            .allowed_headers = "X-A",
                            .max_age = 10};
    CU_ASSERT_EQUAL(daebus__http_cors_build(&cfg, &c, NULL), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_STRING_EQUAL(c->origins, "https://a.example,https://b.example");
    char buf[1024];
    CU_ASSERT(daebus__http_cors_simple(c, "https://b.example", buf, sizeof buf) > 0);
    CU_ASSERT_STRING_EQUAL(buf,
                           "Vary: Origin\r\nAccess-Control-Allow-Origin: https://b.example\r\n");
    daebus__http_cors_simple(c, "https://a.example\r\nX: y", buf, sizeof buf);
    CU_ASSERT_STRING_EQUAL(buf, "Vary: Origin\r\n"); /* header injection refused */
    daebus__http_cors_preflight(c, "https://a.example", "x-a", DAEBUS_GET | DAEBUS_DELETE, buf,
                                sizeof buf);
    CU_ASSERT_STRING_EQUAL(buf, "Vary: Origin\r\nAccess-Control-Allow-Origin: https://a.example\r\n"
                                "Access-Control-Allow-Methods: GET\r\n"
                                "Access-Control-Allow-Headers: X-A\r\n"
                                "Access-Control-Max-Age: 10\r\n");
    CU_ASSERT_EQUAL(daebus__http_cors_simple(c, "https://a.example", buf, 8), 0); /* too small */
    daebus__http_cors_unref(c);
    cfg.allowed_origins = " , ";
    CU_ASSERT_EQUAL(daebus__http_cors_build(&cfg, &c, NULL), 0);
    CU_ASSERT_PTR_NULL(c);
    cJSON *j = cJSON_Parse("{\"allowed_origins\":[\"https://a\",3]}");
    CU_ASSERT_EQUAL(daebus__http_cors_build_json(j, &c, NULL), DAEBUS_EINVAL);
    cJSON_Delete(j);
    j = cJSON_Parse("{}");
    CU_ASSERT_EQUAL(daebus__http_cors_build_json(j, &c, NULL), 0);
    CU_ASSERT_PTR_NULL(c);
    cJSON_Delete(j);
}

/* ---- router ---- */

static int match(daebus__http_router *r, const char *path, unsigned want, daebus__http_match *m)
{
    static char buf[1024];
    const char *segs[64];
    size_t lens[64];
    int n = daebus__http_split_path(path, buf, segs, lens, 64);
    if (n < 0)
        return -9;
    return daebus__http_router_match(r, segs, lens, (size_t)n, want, m);
}

static const char *const H1 = "h1", *const H2 = "h2", *const H3 = "h3", *const H4 = "h4",
                         *const H5 = "h5";

static void test_router(void)
{
    daebus__http_router *r = daebus__http_router_create();
    daebus_error err;
    CU_ASSERT_EQUAL(daebus__http_router_add(r, "/devices/<id>", DAEBUS_GET, H1, &err), 0);
    CU_ASSERT_EQUAL(daebus__http_router_add(r, "/devices/special", DAEBUS_GET, H2, &err), 0);
    CU_ASSERT_EQUAL(daebus__http_router_add(r, "/devices/<int:n>", DAEBUS_GET, H3, &err), 0);
    CU_ASSERT_EQUAL(daebus__http_router_add(r, "/devices/<id>", DAEBUS_POST, H4, &err), 0);
    CU_ASSERT_EQUAL(daebus__http_router_add(r, "/f/<path:rest>", DAEBUS_GET, H5, &err), 0);
    CU_ASSERT_EQUAL(daebus__http_router_add(r, "/a/<x>/b", DAEBUS_GET, H1, &err), 0);
    CU_ASSERT_EQUAL(daebus__http_router_add(r, "/a/lit/c", DAEBUS_GET, H2, &err), 0);
    CU_ASSERT_EQUAL(daebus__http_router_add(r, "/", DAEBUS_GET, H3, &err), 0);
    CU_ASSERT_EQUAL(daebus__http_router_add(r, "/x/<float:f>", DAEBUS_GET, H1, &err), 0);
    CU_ASSERT_EQUAL(daebus__http_router_add(r, "/x/<path:p>/y", DAEBUS_GET, H1, &err),
                    DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(daebus__http_router_add(r, "/x/<a>/<a>", DAEBUS_GET, H1, &err), DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(daebus__http_router_add(r, "/x/<1a>", DAEBUS_GET, H1, &err), DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(daebus__http_router_add(r, "x", DAEBUS_GET, H1, &err), DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(daebus__http_router_count(r), 8);

    daebus__http_match m;
    CU_ASSERT_EQUAL(match(r, "/devices/special", DAEBUS_GET, &m), 1);
    CU_ASSERT_PTR_EQUAL(m.route->handlers[0], H2);
    CU_ASSERT_EQUAL(match(r, "/devices/12", DAEBUS_GET, &m), 1);
    CU_ASSERT_PTR_EQUAL(m.route->handlers[0], H3);
    CU_ASSERT_EQUAL(m.nparams, 1);
    CU_ASSERT_EQUAL(match(r, "/devices/abc", DAEBUS_GET, &m), 1);
    CU_ASSERT_PTR_EQUAL(m.route->handlers[0], H1);
    /* POST: only the <id> route serves it, even for an integer or "special" */
    CU_ASSERT_EQUAL(match(r, "/devices/12", DAEBUS_POST, &m), 1);
    CU_ASSERT_PTR_EQUAL(m.route->handlers[1], H4);
    CU_ASSERT_EQUAL(match(r, "/devices/special", DAEBUS_POST, &m), 1);
    CU_ASSERT_EQUAL(match(r, "/devices/x", DAEBUS_PUT, &m), 0);
    CU_ASSERT_EQUAL(m.allow, DAEBUS_GET | DAEBUS_POST);
    CU_ASSERT_EQUAL(match(r, "/devices", DAEBUS_GET, &m), -1);
    CU_ASSERT_EQUAL(match(r, "/devices/", DAEBUS_GET, &m), -1);
    CU_ASSERT_EQUAL(match(r, "/f/a/b/c", DAEBUS_GET, &m), 1);
    CU_ASSERT_EQUAL(m.params[0].seg, 1);
    /* backtracking: /a/lit/b needs the parameter branch */
    CU_ASSERT_EQUAL(match(r, "/a/lit/b", DAEBUS_GET, &m), 1);
    CU_ASSERT_PTR_EQUAL(m.route->handlers[0], H1);
    CU_ASSERT_EQUAL(match(r, "/a/lit/c", DAEBUS_GET, &m), 1);
    CU_ASSERT_PTR_EQUAL(m.route->handlers[0], H2);
    CU_ASSERT_EQUAL(match(r, "/", DAEBUS_GET, &m), 1);
    daebus__http_router_destroy(r);
}

/* The error for a bad pattern, or "" when it is accepted. */
static const char *pattern_error(const char *pattern)
{
    static daebus_error err;
    char shape[256];
    memset(&err, 0, sizeof err);
    daebus__http_route_shape(pattern, shape, sizeof shape, &err);
    daebus__http_router *r = daebus__http_router_create();
    daebus_error err2 = {0};
    int rc = daebus__http_router_add(r, pattern, DAEBUS_GET, H1, &err2);
    daebus__http_router_destroy(r);
    CU_ASSERT_STRING_EQUAL(err.message, err2.message); /* one parser, one message */
    CU_ASSERT_EQUAL(rc, err.message[0] ? DAEBUS_EINVAL : 0);
    return err.message;
}

static void test_router_pattern_errors(void)
{
    CU_ASSERT_STRING_EQUAL(pattern_error("/a/<x>"), "");
    CU_ASSERT_STRING_EQUAL(pattern_error("/a/<x"),
                           "route \"/a/<x\": '<' without a closing '>' in segment \"<x\"");
    CU_ASSERT_STRING_EQUAL(pattern_error("/a/x>"),
                           "route \"/a/x>\": '>' without an opening '<' in segment \"x>\"");
    CU_ASSERT_PTR_NOT_NULL(strstr(pattern_error("/a/b<x>"), "must be a whole segment: \"b<x>\""));
    CU_ASSERT_PTR_NOT_NULL(
        strstr(pattern_error("/a/<uuid:x>"), "unknown converter in \"<uuid:x>\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(pattern_error("/a/<int:>"), "parameter without a name"));
    CU_ASSERT_PTR_NOT_NULL(strstr(pattern_error("/a/<x-y>"), "is not an identifier"));
    CU_ASSERT_PTR_NOT_NULL(strstr(pattern_error("/a/<p>/<p>"), "parameter 'p' appears twice"));
    CU_ASSERT_PTR_NOT_NULL(strstr(pattern_error("/<path:p>/x"), "must be the last segment"));
    CU_ASSERT_PTR_NOT_NULL(strstr(pattern_error("a/b"), "must start with '/'"));
    CU_ASSERT_PTR_NOT_NULL(strstr(pattern_error("/<<x>>"), "one parameter per segment"));
    /* never "out of memory" for a bad pattern */
    CU_ASSERT_PTR_NULL(strstr(pattern_error("/a/<x"), "memory"));

    char a[64], b[64];
    CU_ASSERT_EQUAL(
        daebus__http_route_shape("/a/<x>/<int:n>/<float:f>/<path:p>", a, sizeof a, NULL), 0);
    CU_ASSERT_STRING_EQUAL(a, "/a/<>/<int:>/<float:>/<path:>");
    daebus__http_route_shape("/a/<string:y>", a, sizeof a, NULL);
    daebus__http_route_shape("/a/<z>", b, sizeof b, NULL);
    CU_ASSERT_STRING_EQUAL(a, b);
}

static void test_router_float_and_names(void)
{
    daebus__http_router *r = daebus__http_router_create();
    CU_ASSERT_EQUAL(daebus__http_router_add(r, "/t/<float:x>", DAEBUS_GET, H1, NULL), 0);
    CU_ASSERT_EQUAL(daebus__http_router_add(r, "/t/<s>", DAEBUS_GET, H2, NULL), 0);
    /* same shape, other names, other method: one route, names per method */
    CU_ASSERT_EQUAL(daebus__http_router_add(r, "/p/<a>", DAEBUS_GET, H1, NULL), 0);
    CU_ASSERT_EQUAL(daebus__http_router_add(r, "/p/<b>", DAEBUS_POST, H2, NULL), 0);
    CU_ASSERT_EQUAL(daebus__http_router_count(r), 3);
    daebus__http_match m;
    static const char *const floats[] = {"2.5", "-3", "1e3", "0.000001", "-1.5E-2"};
    for (size_t i = 0; i < sizeof floats / sizeof floats[0]; i++) {
        char path[32];
        snprintf(path, sizeof path, "/t/%s", floats[i]);
        CU_ASSERT_EQUAL(match(r, path, DAEBUS_GET, &m), 1);
        CU_ASSERT_PTR_EQUAL(m.route->handlers[0], H1);
    }
    static const char *const strings[] = {"abc", "1.", ".5", "1e", "1e9999", "nan", "inf", "0x10"};
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++) {
        char path[32];
        snprintf(path, sizeof path, "/t/%s", strings[i]);
        CU_ASSERT_EQUAL(match(r, path, DAEBUS_GET, &m), 1);
        CU_ASSERT_PTR_EQUAL(m.route->handlers[0], H2);
    }
    CU_ASSERT_EQUAL(match(r, "/p/1", DAEBUS_GET, &m), 1);
    CU_ASSERT_STRING_EQUAL(m.route->param_names[0][0], "a");
    CU_ASSERT_STRING_EQUAL(m.route->param_names[1][0], "b");
    daebus__http_router_destroy(r);
}

static void test_router_many(void)
{
    daebus__http_router *r = daebus__http_router_create();
    enum { N = 2000 };
    for (int i = 0; i < N; i++) {
        char p[64];
        snprintf(p, sizeof p, "/api/v%d/items/<id>/part%d", i % 10, i);
        CU_ASSERT_EQUAL(daebus__http_router_add(r, p, DAEBUS_GET, H1, NULL), 0);
    }
    CU_ASSERT_EQUAL(daebus__http_router_count(r), N);
    char buf[256];
    const char *segs[16];
    size_t lens[16];
    int n = daebus__http_split_path("/api/v7/items/xyz/part1997", buf, segs, lens, 16);
    daebus__http_match m;
    double t0 = ts_now();
    int hits = 0;
    for (int i = 0; i < 200000; i++)
        hits += daebus__http_router_match(r, segs, lens, (size_t)n, DAEBUS_GET, &m) == 1;
    double per = (ts_now() - t0) / 200000 * 1e9;
    CU_ASSERT_EQUAL(hits, 200000);
    fprintf(stderr, "\n  route lookup among %d routes: %.0f ns\n", N, per);
    CU_ASSERT(per < 20000); /* generous: shared, sanitized machines */
    daebus__http_router_destroy(r);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("http_parse", NULL, NULL);
    CU_add_test(s, "UTF-8", test_utf8);
    CU_add_test(s, "percent-decoding and forms", test_decode_and_forms);
    CU_add_test(s, "path splitting", test_split_path);
    CU_add_test(s, "static paths, lists, media types, ints", test_misc);
    CU_add_test(s, "CORS header builder", test_cors_builder);
    CU_add_test(s, "router precedence and converters", test_router);
    CU_add_test(s, "router with 2000 routes", test_router_many);
    CU_add_test(s, "router pattern errors and shapes", test_router_pattern_errors);
    CU_add_test(s, "router <float:> and names per method", test_router_float_and_names);
    return ts_run_cunit();
}
