/* fuzz_http_cors.c - the CORS answer to a request's Origin and
 * Access-Control-Request-Headers values.
 *
 * Input: "<Origin>\n<Access-Control-Request-Headers>\n<CORS config JSON>"
 * (the config is optional; a few fixed ones are always tried). The header
 * block written must be well formed: "Name: value\r\n" lines, nothing a
 * client could use to inject a header, and nothing at all for an origin that
 * is not allowed, beyond "Vary: Origin".
 */
#include <stdbool.h>
#include "daebus/daebus.h"
#include "fuzz_common.h"
#include "http_cors.h"
#include "http_parse.h"

static const char *const fixed_configs[] = {
    "{\"allowed_origins\":\"*\"}",
    /* Each entry in parentheses: one configuration, split over lines. */
    ("{\"allowed_origins\":[\"https://app.example.com\",\"http://localhost:3000\"],"
     "\"allowed_methods\":\"GET, post\",\"allowed_headers\":\"*\",\"allow_credentials\":true,"
     "\"max_age\":600}"),
    ("{\"allowed_origins\":\"*\",\"allowed_headers\":[\"X-Token\",\"Content-Type\"],"
     "\"expose_headers\":\"X-Request-Id\",\"allow_credentials\":true}"),
};

/* Checks a header block: NUL-terminated, len == strlen, only whole
 * "Name: value\r\n" lines, no CR or LF inside a line. */
static void check_block(const char *buf, size_t cap, size_t len)
{
    FUZZ_CHECK(fuzz_terminated(buf, cap));
    FUZZ_CHECK(len == strlen(buf));
    const char *p = buf;
    while (*p) {
        const char *eol = strstr(p, "\r\n");
        FUZZ_CHECK(eol != NULL);
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        FUZZ_CHECK(colon && colon > p && colon[1] == ' ');
        for (const char *q = p; q < eol; q++)
            FUZZ_CHECK(*q != '\r' && *q != '\n');
        p = eol + 2;
    }
}

static void check_config(const daebus__http_cors *c, const char *origin, const char *req_headers,
                         unsigned methods)
{
    char buf[4096], tiny[24];
    bool allowed = daebus__http_cors_origin_allowed(c, origin);
    if (allowed)
        FUZZ_CHECK(!strpbrk(origin, "\r\n") && origin[0]);

    size_t n = daebus__http_cors_simple(c, origin, buf, sizeof buf);
    check_block(buf, sizeof buf, n);
    if (!allowed)
        FUZZ_CHECK(strcmp(buf, "Vary: Origin\r\n") == 0 || n == 0);
    else if (!(c->any_origin && !c->credentials))
        FUZZ_CHECK(n == 0 || strstr(buf, origin) != NULL);
    n = daebus__http_cors_simple(c, origin, tiny, sizeof tiny);
    check_block(tiny, sizeof tiny, n);

    n = daebus__http_cors_preflight(c, origin, req_headers, methods, buf, sizeof buf);
    check_block(buf, sizeof buf, n);
    if (!allowed)
        FUZZ_CHECK(strcmp(buf, "Vary: Origin\r\n") == 0 || n == 0);
    n = daebus__http_cors_preflight(c, origin, req_headers, methods, tiny, sizeof tiny);
    check_block(tiny, sizeof tiny, n);
}

static const char *line(char **p)
{
    char *start = *p;
    char *nl = strchr(start, '\n');
    if (nl) {
        *nl = '\0';
        *p = nl + 1;
    } else {
        *p = start + strlen(start);
    }
    return start;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_strndup(data, size);
    char *p = text;
    const char *origin = line(&p);
    const char *req_headers = line(&p);
    unsigned methods = size ? (data[0] & 0x7F) : 0;

    char mtext[128];
    size_t mn = daebus__http_methods_text(methods, mtext, sizeof mtext);
    FUZZ_CHECK(mn == strlen(mtext));

    for (size_t i = 0; i <= sizeof fixed_configs / sizeof fixed_configs[0]; i++) {
        bool own = i == sizeof fixed_configs / sizeof fixed_configs[0];
        cJSON *json = cJSON_Parse(own ? p : fixed_configs[i]);
        if (!json) {
            FUZZ_CHECK(own);
            continue;
        }
        daebus__http_cors *c = NULL;
        daebus_error err = {0};
        int rc = daebus__http_cors_build_json(json, &c, &err);
        if (rc != 0) {
            FUZZ_CHECK(own && c == NULL && err.message[0]);
        } else if (c) {
            check_config(c, origin, req_headers, methods);
            /* The same configuration, shared: a second reference. */
            daebus__http_cors *again = daebus__http_cors_ref(c);
            daebus__http_cors_unref(c);
            check_config(again, origin, req_headers, methods);
            daebus__http_cors_unref(again);
        } else {
            FUZZ_CHECK(own);
        }
        cJSON_Delete(json);
    }
    free(text);
    return 0;
}
