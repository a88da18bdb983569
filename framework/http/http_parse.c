/* http_parse.c - pure parsers for untrusted HTTP input.
 *
 * Nothing here touches a socket, a global or the log: input in, result out.
 * The HTTP component calls these on request paths, query strings, form bodies
 * and header values; the fuzz targets call them with arbitrary bytes.
 */
#include "http_parse.h"
#include "textlist.h"
#include "utf8.h"

#include <civetweb.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- UTF-8 ---- */

bool daebus__http_utf8_valid(const char *s, size_t len)
{
    return !memchr(s, '\0', len) && daebus__utf8_valid(s, len);
}

/* ---- percent-decoding and forms ---- */

/* CivetWeb's mg_url_decode does the decoding (the same rules: a malformed
 * escape is kept literally, "%00" gives a NUL byte that the callers refuse).
 * It takes int lengths: the rare text of 2 GiB or more is decoded in pieces
 * that end before a '%' so that no escape is split. */
size_t daebus__http_percent_decode(const char *src, size_t len, char *dst, bool plus_is_space)
{
    size_t o = 0;
    while (len) {
        size_t n = len;
        if (n > (size_t)INT_MAX - 1) {
            n = (size_t)INT_MAX - 1;
            while (n > 2 && (src[n - 1] == '%' || src[n - 2] == '%'))
                n--;
        }
        int w = mg_url_decode(src, (int)n, dst + o, (int)n + 1, plus_is_space ? 1 : 0);
        o += w > 0 ? (size_t)w : 0;
        src += n;
        len -= n;
    }
    dst[o] = '\0';
    return o;
}

int daebus__http_split_path(const char *raw, char *buf, const char **segs, size_t *lens, size_t max)
{
    if (!raw || raw[0] != '/')
        return -1;
    size_t n = 0;
    const char *p = raw + 1;
    char *out = buf;
    for (;;) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (n == max)
            return -1;
        size_t dlen = daebus__http_percent_decode(p, len, out, false);
        if (memchr(out, '\0', dlen) || !daebus__http_utf8_valid(out, dlen))
            return -2;
        segs[n] = out;
        lens[n] = dlen;
        n++;
        out += dlen + 1;
        if (!end)
            break;
        p = end + 1;
    }
    return (int)n;
}

/* Calls fn for each name=value pair of text (raw, still encoded). */
typedef int pair_fn(const char *name, size_t nlen, const char *value, size_t vlen, void *ctx);

static int each_pair(const char *text, size_t len, pair_fn *fn, void *ctx)
{
    size_t i = 0;
    while (i < len) {
        size_t start = i;
        while (i < len && text[i] != '&' && text[i] != ';')
            i++;
        size_t end = i;
        if (i < len)
            i++;
        if (end == start)
            continue;
        const char *eq = memchr(text + start, '=', end - start);
        const char *name = text + start;
        size_t nlen = eq ? (size_t)(eq - name) : end - start;
        const char *value = eq ? eq + 1 : text + end;
        size_t vlen = eq ? (size_t)(text + end - value) : 0;
        int rc = fn(name, nlen, value, vlen, ctx);
        if (rc)
            return rc;
    }
    return 0;
}

static char *decode_dup(const char *s, size_t len)
{
    char *out = malloc(len + 1);
    if (out)
        daebus__http_percent_decode(s, len, out, true);
    return out;
}

static int add_pair(const char *name, size_t nlen, const char *value, size_t vlen, void *ctx)
{
    cJSON *object = ctx;
    char *n = decode_dup(name, nlen);
    char *v = decode_dup(value, vlen);
    int rc = 0;
    if (!n || !v) {
        rc = -2;
        goto done;
    }
    size_t dn = strlen(n), dv = strlen(v);
    /* A decoded NUL shortens the string: treat it as invalid input. */
    if (!daebus__http_utf8_valid(n, dn) || !daebus__http_utf8_valid(v, dv)) {
        rc = -1;
        goto done;
    }
    if (dn == 0)
        goto done;
    cJSON *item = cJSON_CreateString(v);
    if (!item) {
        rc = -2;
        goto done;
    }
    /* Case-sensitive both ways: cJSON_HasObjectItem ignores case, and with "A"
     * present a replace of "a" would fail and leak item. */
    if (cJSON_GetObjectItemCaseSensitive(object, n))
        cJSON_ReplaceItemInObjectCaseSensitive(object, n, item);
    else
        cJSON_AddItemToObject(object, n, item);
done:
    free(n);
    free(v);
    return rc;
}

/* Rejects encoded NUL bytes (%00), which would silently cut a value short. */
static bool has_encoded_nul(const char *text, size_t len)
{
    for (size_t i = 0; i + 2 < len; i++)
        if (text[i] == '%' && text[i + 1] == '0' && text[i + 2] == '0')
            return true;
    return memchr(text, '\0', len) != NULL;
}

/* Not mg_split_form_urlencoded: it splits in place a NUL-terminated copy
 * into a fixed array of pairs (a second bound next to the body size) and
 * leaves a "name" without '=' NULL where the protocol wants "" (the pairs
 * are decoded with mg_url_decode, through daebus__http_percent_decode). */
int daebus__http_parse_form(const char *text, size_t len, cJSON *object)
{
    if (!text || !len)
        return 0;
    if (has_encoded_nul(text, len))
        return -1;
    return each_pair(text, len, add_pair, object);
}

/* ---- paths ---- */

bool daebus__http_static_path_safe(const char *path, bool allow_hidden)
{
    if (!path)
        return false;
    if (strchr(path, '\\'))
        return false;
    const char *p = path;
    while (*p) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        const char *seg = p;
        while (*p && *p != '/')
            p++;
        size_t n = (size_t)(p - seg);
        if ((n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
            return false;
        if (seg[0] == '.' && !allow_hidden)
            return false;
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)seg[i] < 0x20)
                return false;
    }
    return true;
}

/* ---- header helpers ---- */

static size_t media_len(const char *ct)
{
    size_t n = 0;
    while (ct[n] && ct[n] != ';' && ct[n] != ' ' && ct[n] != '\t')
        n++;
    return n;
}

bool daebus__http_media_type_is(const char *content_type, const char *type)
{
    if (!content_type || !type)
        return false;
    while (*content_type == ' ' || *content_type == '\t')
        content_type++;
    size_t n = media_len(content_type);
    return n == strlen(type) && strncasecmp(content_type, type, n) == 0;
}

bool daebus__http_media_type_is_json(const char *content_type)
{
    if (!content_type)
        return false;
    while (*content_type == ' ' || *content_type == '\t')
        content_type++;
    size_t n = media_len(content_type);
    if (n == 16 && strncasecmp(content_type, "application/json", 16) == 0)
        return true;
    return n > 17 && strncasecmp(content_type, "application/", 12) == 0 &&
           strncasecmp(content_type + n - 5, "+json", 5) == 0;
}

bool daebus__http_parse_int(const char *s, size_t len, long long *out)
{
    size_t i = 0;
    bool neg = false;
    if (len && s[0] == '-') {
        neg = true;
        i = 1;
    }
    if (i == len || len - i > 18)
        return false;
    long long v = 0;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = neg ? -v : v;
    return true;
}

bool daebus__http_parse_content_length(const char *s, long long *out)
{
    if (!s)
        return false;
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = 0;
    long long v = 0;
    for (; s[n] >= '0' && s[n] <= '9'; n++) {
        if (n == 18)
            return false;
        v = v * 10 + (s[n] - '0');
    }
    if (n == 0)
        return false;
    for (s += n; *s == ' ' || *s == '\t'; s++)
        ;
    if (*s)
        return false;
    *out = v;
    return true;
}

const char *daebus__http_absolute_path(const char *target)
{
    static const char *const schemes[] = {"http://", "https://", "ws://", "wss://"};
    if (!target)
        return NULL;
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
        size_t n = strlen(schemes[i]);
        if (strncasecmp(target, schemes[i], n) != 0)
            continue;
        const char *host = target + n;
        size_t alen = strcspn(host, "/?#");
        if (alen == 0)
            return NULL;
        return host + alen;
    }
    return NULL;
}

/* ---- MIME types ---- */

/* Not mg_get_builtin_mime_type: its text types carry no charset (browsers
 * then guess), it gives "application/javascript" where RFC 9239 says
 * "text/javascript" (RFC 9239). */
const char *daebus__http_mime_type(const char *path)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {"html", "text/html; charset=utf-8"},
        {"htm", "text/html; charset=utf-8"},
        {"css", "text/css; charset=utf-8"},
        {"js", "text/javascript; charset=utf-8"},
        {"mjs", "text/javascript; charset=utf-8"},
        {"json", "application/json"},
        {"map", "application/json"},
        {"txt", "text/plain; charset=utf-8"},
        {"md", "text/markdown; charset=utf-8"},
        {"csv", "text/csv; charset=utf-8"},
        {"xml", "application/xml"},
        {"svg", "image/svg+xml"},
        {"png", "image/png"},
        {"jpg", "image/jpeg"},
        {"jpeg", "image/jpeg"},
        {"gif", "image/gif"},
        {"webp", "image/webp"},
        {"ico", "image/x-icon"},
        {"wasm", "application/wasm"},
        {"woff", "font/woff"},
        {"woff2", "font/woff2"},
        {"ttf", "font/ttf"},
        {"pdf", "application/pdf"},
        {"zip", "application/zip"},
        {"gz", "application/gzip"},
        {"mp3", "audio/mpeg"},
        {"mp4", "video/mp4"},
        {"webm", "video/webm"},
    };
    const char *slash = path ? strrchr(path, '/') : NULL;
    const char *base = slash ? slash + 1 : path;
    const char *dot = base ? strrchr(base, '.') : NULL;
    if (!dot || dot == base)
        return "application/octet-stream";
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (strcasecmp(dot + 1, types[i].ext) == 0)
            return types[i].type;
    return "application/octet-stream";
}
