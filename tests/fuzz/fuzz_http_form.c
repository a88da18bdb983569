/* fuzz_http_form.c - query strings and urlencoded form bodies.
 *
 * Input: a query string or an application/x-www-form-urlencoded body. Drives
 * percent-decoding (both modes) and the form parser; a parsed form, encoded
 * again, must parse to the same object. The same bytes also go through the
 * small header helpers and the static-path check, which read header values
 * and decoded paths (Content-Length values, absolute-form request targets).
 */
#include <stdbool.h>
#include "fuzz_common.h"
#include "http_parse.h"

/* Appends s percent-encoded (everything but unreserved characters). */
static size_t encode(char *out, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_' || *p == '.' || *p == '~') {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    return o;
}

static void check_round_trip(const cJSON *form, size_t size)
{
    /* A raw pair of r bytes encodes to at most 3r + 2 ("n" gives "%6E=&"). */
    size_t cap = 5 * size + 16;
    char *text = malloc(cap);
    FUZZ_CHECK(text != NULL);
    size_t o = 0;
    for (const cJSON *it = form->child; it; it = it->next) {
        FUZZ_CHECK(it->string && it->string[0]);
        FUZZ_CHECK(cJSON_IsString(it) && it->valuestring);
        FUZZ_CHECK(daebus__http_utf8_valid(it->string, strlen(it->string)));
        FUZZ_CHECK(daebus__http_utf8_valid(it->valuestring, strlen(it->valuestring)));
        /* A later repeat replaced the earlier one: names are unique. */
        for (const cJSON *other = it->next; other; other = other->next)
            FUZZ_CHECK(strcmp(other->string, it->string) != 0);
        if (o)
            text[o++] = '&';
        o += encode(text + o, it->string);
        text[o++] = '=';
        o += encode(text + o, it->valuestring);
        FUZZ_CHECK(o <= cap);
    }
    cJSON *again = cJSON_CreateObject();
    FUZZ_CHECK(again != NULL);
    FUZZ_CHECK(daebus__http_parse_form(text, o, again) == 0);
    FUZZ_CHECK(fuzz_json_equal_value(form, again));
    cJSON_Delete(again);
    free(text);
}

static void check_decode(const char *src, size_t size, bool plus)
{
    char *dst = malloc(size + 1);
    FUZZ_CHECK(dst != NULL);
    size_t n = daebus__http_percent_decode(src, size, dst, plus);
    FUZZ_CHECK(n <= size && dst[n] == '\0');
    /* Without escapes, every '+' became a space. */
    if (plus && !memchr(src, '%', size))
        FUZZ_CHECK(memchr(dst, '+', n) == NULL);
    free(dst);
}

static void check_headers(const char *s)
{
    /* Header values and decoded paths are C strings by the time they get here. */
    (void)daebus__http_media_type_is(s, "application/x-www-form-urlencoded");
    bool json = daebus__http_media_type_is_json(s);
    if (daebus__http_media_type_is(s, "application/json"))
        FUZZ_CHECK(json);
    (void)daebus__list_has(s, "chunked", 7, true);
    (void)daebus__list_has("gzip, chunked", s, strlen(s), true);
    const char *mime = daebus__http_mime_type(s);
    FUZZ_CHECK(mime && mime[0]);
    if (daebus__http_static_path_safe(s, true)) {
        /* No "." or ".." segment and no backslash got through. */
        FUZZ_CHECK(!strchr(s, '\\'));
        const char *p = s;
        while (*p) {
            size_t n = strcspn(p, "/");
            FUZZ_CHECK(!(n == 1 && p[0] == '.') && !(n == 2 && p[0] == '.' && p[1] == '.'));
            for (size_t i = 0; i < n; i++)
                FUZZ_CHECK((unsigned char)p[i] >= 0x20);
            p += n;
            if (*p)
                p++;
        }
    }
    /* Content-Length: digits only (spaces around), and printing the value
     * gives those digits back without leading zeros. */
    long long cl;
    if (daebus__http_parse_content_length(s, &cl)) {
        FUZZ_CHECK(cl >= 0);
        const char *d = s + strspn(s, " \t");
        size_t nd = strspn(d, "0123456789");
        FUZZ_CHECK(nd >= 1 && nd <= 18 && d[nd + strspn(d + nd, " \t")] == '\0');
        char back[24];
        snprintf(back, sizeof back, "%lld", cl);
        while (nd > 1 && *d == '0') {
            d++;
            nd--;
        }
        FUZZ_CHECK(strlen(back) == nd && memcmp(back, d, nd) == 0);
    }
    /* An absolute-form target: the path lies inside it, after "scheme://host". */
    const char *path = daebus__http_absolute_path(s);
    if (path) {
        FUZZ_CHECK(path > s + 5 && path <= s + strlen(s));
        FUZZ_CHECK(*path == '\0' || *path == '/' || *path == '?' || *path == '#');
        FUZZ_CHECK(strstr(s, "://") != NULL && strstr(s, "://") + 3 < path);
    }
    /* Route <int:> values: at most 18 digits, so never out of range. */
    long long v;
    if (daebus__http_parse_int(s, strlen(s), &v)) {
        char back[32];
        snprintf(back, sizeof back, "%lld", v);
        FUZZ_CHECK(strtoll(s, NULL, 10) == v && strlen(s) <= 19);
        FUZZ_CHECK(strcmp(back, s) == 0 || s[0] == '-' || s[0] == '0');
    }
    if (daebus__http_static_path_safe(s, false))
        FUZZ_CHECK(daebus__http_static_path_safe(s, true));
}

/* The reference reading of a form: pairs split on '&' and ';', decoded, the
 * last value of a name winning. Each name must hold that value. */
static void check_last_wins(const char *text, size_t size, const cJSON *form)
{
    size_t max = size / 2 + 1, n = 0;
    char **names = calloc(max, sizeof *names), **values = calloc(max, sizeof *values);
    FUZZ_CHECK(names && values);
    for (size_t i = 0; i < size;) {
        size_t end = i;
        while (end < size && text[end] != '&' && text[end] != ';')
            end++;
        if (end > i) {
            const char *eq = memchr(text + i, '=', end - i);
            size_t nlen = eq ? (size_t)(eq - (text + i)) : end - i;
            FUZZ_CHECK(n < max);
            names[n] = malloc(nlen + 1);
            values[n] = malloc(end - i + 1);
            FUZZ_CHECK(names[n] && values[n]);
            daebus__http_percent_decode(text + i, nlen, names[n], true);
            if (eq)
                daebus__http_percent_decode(eq + 1, (size_t)(text + end - eq - 1), values[n], true);
            else
                values[n][0] = '\0';
            n++;
        }
        i = end + 1;
    }
    for (size_t i = 0; i < n; i++) {
        bool later = false;
        for (size_t j = i + 1; j < n && !later; j++)
            later = strcmp(names[i], names[j]) == 0;
        if (!later && names[i][0]) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(form, names[i]);
            FUZZ_CHECK(cJSON_IsString(v) && strcmp(v->valuestring, values[i]) == 0);
        }
        free(names[i]);
        free(values[i]);
    }
    free(names);
    free(values);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    check_decode(text, size, false);
    check_decode(text, size, true);

    cJSON *form = cJSON_CreateObject();
    FUZZ_CHECK(form != NULL);
    int rc = daebus__http_parse_form(text, size, form);
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (rc == 0) {
        check_last_wins(text, size, form);
        check_round_trip(form, size);
    }
    cJSON_Delete(form);

    char *s = fuzz_strndup(data, size);
    check_headers(s);
    free(s);
    return 0;
}
