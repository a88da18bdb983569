/* rooms_check.c - the rooms blueprint's input checks: names and fields,
 * the same-origin check, error replies and rate-limited refusal lines. Pure
 * functions of their arguments except the refusal counters. */
#include "rooms/rooms_check.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static atomic_ullong refused_total, refused_quiet;
static atomic_llong refused_logged_at;

unsigned long long daebus__rooms_refused(void)
{
    return atomic_load(&refused_total);
}

/* Copies s for a log line: printable ASCII as is, other bytes as \xHH, at
 * most cap - 1 bytes (cut before an escape, never inside one). */
const char *daebus__rooms_loggable(char *dst, size_t cap, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p >= 0x20 && *p < 0x7f && *p != '\\') {
            if (o + 1 >= cap)
                break;
            dst[o++] = (char)*p;
        } else {
            if (o + 4 >= cap)
                break;
            dst[o++] = '\\';
            dst[o++] = 'x';
            dst[o++] = hex[*p >> 4];
            dst[o++] = hex[*p & 15];
        }
    }
    dst[o] = '\0';
    return dst;
}

/* Counts a refusal. Returns: true when it may be logged - at most one line
 * per second, since clients control the rate - with *quiet set to the
 * refusals not logged since the last line. */
bool daebus__rooms_refusal_log_slot(unsigned long long *quiet)
{
    atomic_fetch_add(&refused_total, 1);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long long now = (long long)ts.tv_sec;
    long long prev = atomic_load(&refused_logged_at);
    if (now != prev && atomic_compare_exchange_strong(&refused_logged_at, &prev, now)) {
        *quiet = atomic_exchange(&refused_quiet, 0);
        return true;
    }
    atomic_fetch_add(&refused_quiet, 1);
    return false;
}

/* " (N more refusals not logged)" in a thread-local buffer, "" for none. */
const char *daebus__rooms_quiet_note(unsigned long long quiet)
{
    static _Thread_local char buf[96];
    if (!quiet)
        return "";
    snprintf(buf, sizeof buf, " (%llu more refusals since the last line not logged)", quiet);
    return buf;
}

static void note_refusal(const char *client_id, const char *what)
{
    unsigned long long quiet;
    char id[96];
    if (daebus__rooms_refusal_log_slot(&quiet))
        daebus_log(DAEBUS_LOG_WARNING, "rooms", "refused a request of client %s: %s%s",
                   daebus__rooms_loggable(id, sizeof id, client_id), what,
                   daebus__rooms_quiet_note(quiet));
}

cJSON *daebus__rooms_error_reply(const char *text)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "error", text);
    cJSON_AddStringToObject(o, "status", "error");
    return o;
}

cJSON *daebus__rooms_refuse(const char *client_id, const char *text)
{
    note_refusal(client_id, text);
    return daebus__rooms_error_reply(text);
}

/* ---- names and fields ---- */

/* True when s starts with prefix (lower case), ASCII case ignored. */
static bool ascii_prefix(const char *s, const char *prefix)
{
    for (; *prefix; s++, prefix++) {
        int c = (unsigned char)*s;
        if (c >= 'A' && c <= 'Z')
            c += 'a' - 'A';
        if (c != *prefix)
            return false;
    }
    return true;
}

/* True when s (n bytes) is well-formed UTF-8 without control characters:
 * C0 controls and DEL, C1 controls, the two-byte NUL 0xC0 0x80 (not UTF-8:
 * the form an escaped NUL takes, docs/protocol.md section 4), zero-width and
 * bidi controls, line/paragraph separators, and the byte order mark. */
static bool name_chars_ok(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f)
                return false;
            i++;
            continue;
        }
        size_t len;
        uint32_t cp;
        unsigned lo = 0x80, hi = 0xbf; /* range of the second byte */
        if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            cp = c & 0x0f;
            if (c == 0xe0)
                lo = 0xa0; /* overlong */
            if (c == 0xed)
                hi = 0x9f; /* surrogates */
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            cp = c & 0x07;
            if (c == 0xf0)
                lo = 0x90;
            if (c == 0xf4)
                hi = 0x8f;
        } else {
            return false; /* 0x80..0xc1 (0xc0 0x80 included), 0xf5.. */
        }
        if (i + len > n || s[i + 1] < lo || s[i + 1] > hi)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((cp >= 0x80 && cp <= 0x9f) || (cp >= 0x200b && cp <= 0x200f) ||
            (cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2060 && cp <= 0x206f) || cp == 0xfeff)
            return false;
        i += len;
    }
    return true;
}

static bool trim_char(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* The string field key of data with leading and trailing blanks trimmed,
 * copied into *out (malloc'd). MISSING when absent, not a string or blank;
 * TOO_LONG over max bytes; BAD_CHARS when name is set and the text is not a
 * clean name (name_chars_ok). Never cuts. */
daebus__rooms_field_rc daebus__rooms_get_field(const cJSON *data, const char *key, size_t max,
                                               bool name, char **out)
{
    *out = NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(data, key);
    if (!cJSON_IsString(v) || !v->valuestring)
        return DAEBUS__ROOMS_FIELD_MISSING;
    const char *s = v->valuestring;
    while (trim_char(*s))
        s++;
    size_t len = strlen(s);
    while (len > 0 && trim_char(s[len - 1]))
        len--;
    if (len == 0)
        return DAEBUS__ROOMS_FIELD_MISSING;
    if (len > max)
        return DAEBUS__ROOMS_FIELD_TOO_LONG;
    if (name && !name_chars_ok((const unsigned char *)s, len))
        return DAEBUS__ROOMS_FIELD_BAD_CHARS;
    char *copy = malloc(len + 1);
    if (!copy)
        return DAEBUS__ROOMS_FIELD_NOMEM;
    memcpy(copy, s, len);
    copy[len] = '\0';
    *out = copy;
    return DAEBUS__ROOMS_FIELD_OK;
}

/* The error text for a refused name field ("Username", "Room name"). */
const char *daebus__rooms_name_error(daebus__rooms_field_rc rc, const char *what, size_t max,
                                     char *buf, size_t cap)
{
    switch (rc) {
    case DAEBUS__ROOMS_FIELD_MISSING:
        snprintf(buf, cap, "%s is required", what);
        break;
    case DAEBUS__ROOMS_FIELD_TOO_LONG:
        snprintf(buf, cap, "%s is too long (max %zu bytes)", what, max);
        break;
    case DAEBUS__ROOMS_FIELD_BAD_CHARS:
        snprintf(buf, cap, "%s must not contain control characters", what);
        break;
    default:
        snprintf(buf, cap, "Out of memory");
        break;
    }
    return buf;
}

/* ---- same-origin check ---- */

/* Splits an authority "host[:port]" or "[v6]:port" (n bytes) into a host
 * (its bytes in s) and a port (def_port when absent). Returns false when
 * malformed. */
static bool split_authority(const char *s, size_t n, int def_port, const char **host, size_t *hlen,
                            long *port)
{
    if (n == 0)
        return false;
    size_t end; /* end of the host part */
    if (s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close)
            return false;
        end = (size_t)(close - s) + 1;
    } else {
        end = 0;
        while (end < n && s[end] != ':')
            end++;
    }
    if (end == 0)
        return false;
    for (size_t i = 0; i < end; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f || c == '/' || c == '@' || c == '?' || c == '#' || c == '\\')
            return false;
    }
    *host = s;
    *hlen = end;
    *port = def_port;
    if (end == n)
        return true;
    if (s[end] != ':' || end + 1 == n || n - end - 1 > 5)
        return false;
    long p = 0;
    for (size_t i = end + 1; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        p = p * 10 + (s[i] - '0');
    }
    if (p < 1 || p > 65535)
        return false;
    *port = p;
    return true;
}

bool daebus_rooms_origin_allowed(daebus_ws_request *req)
{
    const char *origin = daebus_ws_request_header(req, "Origin");
    if (!origin)
        return true; /* not a browser: the check protects browsers' users */
    const char *host = daebus_ws_request_header(req, "Host");
    if (!host)
        return false;
    int def;
    const char *rest;
    if (ascii_prefix(origin, "http://")) {
        def = 80;
        rest = origin + 7;
    } else if (ascii_prefix(origin, "https://")) {
        def = 443;
        rest = origin + 8;
    } else {
        return false; /* "null", file:, chrome-extension: ... */
    }
    const char *oh, *hh;
    size_t ol, hl;
    long op, hp;
    if (!split_authority(rest, strlen(rest), def, &oh, &ol, &op) ||
        !split_authority(host, strlen(host), def, &hh, &hl, &hp))
        return false;
    if (ol != hl || op != hp)
        return false;
    for (size_t i = 0; i < ol; i++) {
        int a = (unsigned char)oh[i], b = (unsigned char)hh[i];
        if (a >= 'A' && a <= 'Z')
            a += 'a' - 'A';
        if (b >= 'A' && b <= 'Z')
            b += 'a' - 'A';
        if (a != b)
            return false;
    }
    return true;
}
