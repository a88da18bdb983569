/* http_cors.c - CORS: configuration from options or JSON, and the header lines it yields.
 *
 * Rules (docs/protocol.md section 2, and the fixes over the Python framework):
 * disallowed origins get no CORS headers at all; "*" is sent only for a
 * wildcard configuration without credentials, otherwise the request's origin
 * is echoed; Vary: Origin accompanies every response while CORS is on;
 * preflight answers name the allowed methods intersected with the route's.
 */
#include "http_cors.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "daebus/blueprint.h"
#include "http_parse.h"
#include "textlist.h"

/* ---- building ---- */

/* Normalises a comma list: trims items, drops empty ones, optionally
 * upper-cases; sets *star if an item is "*". Returns NULL for an empty list
 * (and *ok stays true) or on allocation failure (*ok false). */
static char *norm_list(const char *in, bool upper, bool *star, bool *ok)
{
    *ok = true;
    if (star)
        *star = false;
    if (!in)
        return NULL;
    size_t n = strlen(in);
    char *out = malloc(n + 1);
    if (!out) {
        *ok = false;
        return NULL;
    }
    size_t o = 0;
    const char *p = in, *s;
    size_t len;
    while (daebus__list_next(&p, &s, &len)) {
        if (len == 1 && *s == '*' && star)
            *star = true;
        if (o)
            out[o++] = ',';
        for (size_t q = 0; q < len; q++)
            out[o++] = upper ? (char)toupper((unsigned char)s[q]) : s[q];
    }
    out[o] = '\0';
    if (!o) {
        free(out);
        return NULL;
    }
    return out;
}

static bool has_crlf(const char *s)
{
    return s && strpbrk(s, "\r\n") != NULL;
}

int daebus__http_cors_build(const daebus_http_cors *c, daebus__http_cors **out, daebus_error *err)
{
    *out = NULL;
    if (!c || !c->allowed_origins || !*c->allowed_origins)
        return 0;
    if (has_crlf(c->allowed_origins) || has_crlf(c->allowed_methods) ||
        has_crlf(c->allowed_headers) || has_crlf(c->expose_headers))
        return daebus_error_set(err, DAEBUS_EINVAL, "CORS values must not contain CR or LF");
    daebus__http_cors *k = calloc(1, sizeof *k);
    if (!k)
        return daebus_error_set(err, DAEBUS_ENOMEM, "out of memory");
    atomic_init(&k->refs, 1);
    bool ok1, ok2, ok3, ok4;
    k->origins = norm_list(c->allowed_origins, false, &k->any_origin, &ok1);
    k->methods = norm_list(c->allowed_methods, true, NULL, &ok2);
    k->headers = norm_list(c->allowed_headers, false, &k->any_headers, &ok3);
    k->expose = norm_list(c->expose_headers, false, NULL, &ok4);
    k->credentials = c->allow_credentials;
    k->max_age = c->max_age > 0 ? c->max_age : 0;
    if (!ok1 || !ok2 || !ok3 || !ok4) {
        daebus__http_cors_unref(k);
        return daebus_error_set(err, DAEBUS_ENOMEM, "out of memory");
    }
    if (!k->origins) { /* only separators: off */
        daebus__http_cors_unref(k);
        return 0;
    }
    *out = k;
    return 0;
}

/* Joins a string or an array of strings into a comma list (malloc'd).
 * Returns 0 (absent: *out NULL), or -1 on a wrong type, -2 on no memory. */
static int json_list(const cJSON *config, const char *key, char **out)
{
    *out = NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(config, key);
    if (!v || cJSON_IsNull(v))
        return 0;
    if (cJSON_IsString(v)) {
        *out = strdup(v->valuestring);
        return *out ? 0 : -2;
    }
    if (!cJSON_IsArray(v))
        return -1;
    size_t total = 1;
    const cJSON *it;
    cJSON_ArrayForEach(it, v)
    {
        if (!cJSON_IsString(it))
            return -1;
        total += strlen(it->valuestring) + 1;
    }
    char *s = malloc(total);
    if (!s)
        return -2;
    size_t o = 0;
    cJSON_ArrayForEach(it, v)
    {
        size_t n = strlen(it->valuestring);
        if (o)
            s[o++] = ',';
        memcpy(s + o, it->valuestring, n);
        o += n;
    }
    s[o] = '\0';
    *out = s;
    return 0;
}

int daebus__http_cors_build_json(const cJSON *config, daebus__http_cors **out, daebus_error *err)
{
    *out = NULL;
    if (!config || (cJSON_IsObject(config) && !config->child))
        return 0;
    if (!cJSON_IsObject(config))
        return daebus_error_set(err, DAEBUS_EINVAL, "CORS configuration must be a JSON object");
    static const char *keys[4] = {"allowed_origins", "allowed_methods", "allowed_headers",
                                  "expose_headers"};
    char *vals[4] = {0};
    int rc = 0;
    for (int i = 0; i < 4 && !rc; i++) {
        int r = json_list(config, keys[i], &vals[i]);
        if (r == -1)
            rc = daebus_error_set(err, DAEBUS_EINVAL,
                                  "CORS key \"%s\" must be a string or a list of strings", keys[i]);
        else if (r == -2)
            rc = daebus_error_set(err, DAEBUS_ENOMEM, "out of memory");
    }
    daebus_http_cors c = {vals[0], vals[1], vals[2], vals[3], false, 0};
    const cJSON *cred = cJSON_GetObjectItemCaseSensitive(config, "allow_credentials");
    if (!rc && cred && !cJSON_IsNull(cred)) {
        if (cJSON_IsBool(cred))
            c.allow_credentials = cJSON_IsTrue(cred);
        else
            rc = daebus_error_set(err, DAEBUS_EINVAL,
                                  "CORS key \"allow_credentials\" must be a bool");
    }
    const cJSON *age = cJSON_GetObjectItemCaseSensitive(config, "max_age");
    if (!rc && age && !cJSON_IsNull(age)) {
        if (cJSON_IsNumber(age) && age->valuedouble >= 0 && age->valuedouble < 1e9)
            c.max_age = (int)age->valuedouble;
        else
            rc = daebus_error_set(err, DAEBUS_EINVAL,
                                  "CORS key \"max_age\" must be a number of seconds");
    }
    if (!rc)
        rc = daebus__http_cors_build(&c, out, err);
    for (int i = 0; i < 4; i++)
        free(vals[i]);
    return rc;
}

daebus__http_cors *daebus__http_cors_ref(daebus__http_cors *c)
{
    if (c)
        atomic_fetch_add(&c->refs, 1);
    return c;
}

void daebus__http_cors_unref(daebus__http_cors *c)
{
    if (!c || atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    free(c->origins);
    free(c->methods);
    free(c->headers);
    free(c->expose);
    free(c);
}

/* ---- headers ---- */

bool daebus__http_cors_origin_allowed(const daebus__http_cors *c, const char *origin)
{
    if (!c || !origin || !*origin || has_crlf(origin))
        return false;
    return c->any_origin || daebus__list_has(c->origins, origin, strlen(origin), true);
}

typedef struct out {
    char *buf;
    size_t cap, len;
    bool overflow;
} out;

__attribute__((format(printf, 2, 3))) static void put(out *o, const char *fmt, ...)
{
    if (o->overflow)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= o->cap - o->len) {
        o->overflow = true;
        return;
    }
    o->len += (size_t)n;
}

static size_t finish(out *o)
{
    if (o->overflow) {
        if (o->cap)
            o->buf[0] = '\0';
        return 0;
    }
    return o->len;
}

static void put_origin(out *o, const daebus__http_cors *c, const char *origin)
{
    if (c->any_origin && !c->credentials)
        put(o, "Access-Control-Allow-Origin: *\r\n");
    else
        put(o, "Access-Control-Allow-Origin: %s\r\n", origin);
    if (c->credentials)
        put(o, "Access-Control-Allow-Credentials: true\r\n");
}

/* Empties the buffer; with CORS on, starts with Vary (the answer depends on
 * Origin). Returns: whether CORS is on. */
static bool start_cors(out *o, const daebus__http_cors *c)
{
    if (o->cap)
        o->buf[0] = '\0';
    if (!c)
        return false;
    put(o, "Vary: Origin\r\n");
    return true;
}

size_t daebus__http_cors_simple(const daebus__http_cors *c, const char *origin, char *buf,
                                size_t cap)
{
    out o = {buf, cap, 0, false};
    if (!start_cors(&o, c))
        return 0;
    if (daebus__http_cors_origin_allowed(c, origin)) {
        put_origin(&o, c, origin);
        if (c->expose)
            put(&o, "Access-Control-Expose-Headers: %s\r\n", c->expose);
    }
    return finish(&o);
}

static const char *const method_names[] = {"GET",    "POST",    "PUT", "PATCH",
                                           "DELETE", "OPTIONS", "HEAD"};

size_t daebus__http_methods_text(unsigned mask, char *buf, size_t cap)
{
    out o = {buf, cap, 0, false};
    if (cap)
        buf[0] = '\0';
    for (int i = 0; i < 7; i++)
        if (mask & (1u << i))
            put(&o, "%s%s", o.len ? ", " : "", method_names[i]);
    return finish(&o);
}

size_t daebus__http_cors_preflight(const daebus__http_cors *c, const char *origin,
                                   const char *request_headers, unsigned route_methods, char *buf,
                                   size_t cap)
{
    out o = {buf, cap, 0, false};
    if (!start_cors(&o, c))
        return 0;
    if (!daebus__http_cors_origin_allowed(c, origin))
        return finish(&o);
    put_origin(&o, c, origin);
    unsigned mask = route_methods;
    if (mask & DAEBUS_GET)
        mask |= DAEBUS_HEAD;
    mask |= DAEBUS_OPTIONS;
    if (c->methods && strcmp(c->methods, "*") != 0) {
        unsigned allowed = 0;
        for (int i = 0; i < 7; i++)
            if (daebus__list_has(c->methods, method_names[i], strlen(method_names[i]), true))
                allowed |= 1u << i;
        mask &= allowed;
    }
    char methods[128];
    if (mask && daebus__http_methods_text(mask, methods, sizeof methods))
        put(&o, "Access-Control-Allow-Methods: %s\r\n", methods);
    if (request_headers && *request_headers && !has_crlf(request_headers)) {
        if (c->any_headers)
            put(&o, "Access-Control-Allow-Headers: %s\r\n", request_headers);
        else if (c->headers)
            put(&o, "Access-Control-Allow-Headers: %s\r\n", c->headers);
    }
    if (c->max_age > 0)
        put(&o, "Access-Control-Max-Age: %d\r\n", c->max_age);
    return finish(&o);
}
