/* utf8.c - UTF-8 checks, cuts on character boundaries and escaping.
 *
 * Text from outside (an action name, a message type, a path, a handler's
 * error text) ends up in error replies and log lines, often cut to a fixed
 * size. A cut by bytes can split a multibyte character and turn valid input
 * into invalid output (a browser closes a WebSocket on it with 1007, Python's
 * json.loads refuses a bus reply holding it). Every such cut goes through
 * daebus__utf8_cut / _prec / _trim / _snprintf, and the log escapes what
 * could forge or break a line through the escapers below.
 *
 * The decoder follows table 3-7 of the Unicode standard byte by byte, so it
 * never builds a code point to range-check it: the second byte's range
 * already excludes overlongs, surrogates and values above U+10FFFF.
 */
#include "utf8.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* ---- decoding ---- */

static bool cont(unsigned char c)
{
    return (c & 0xC0) == 0x80;
}

size_t daebus__utf8_char(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    if (n == 0)
        return 0;
    unsigned char c = p[0];
    if (c < 0x80)
        return 1;
    unsigned char lo = 0x80, hi = 0xBF; /* the range of the second byte */
    size_t len;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0; /* overlong below U+0800 */
        else if (c == 0xED)
            hi = 0x9F; /* surrogates U+D800-DFFF */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90; /* overlong below U+10000 */
        else if (c == 0xF4)
            hi = 0x8F; /* above U+10FFFF */
    } else {
        return 0; /* continuation byte, C0, C1 or F5-FF */
    }
    if (n < len || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t k = 2; k < len; k++)
        if (!cont(p[k]))
            return 0;
    return len;
}

bool daebus__utf8_valid(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        /* ASCII runs, 8 bytes at a time. */
        while (n - i >= 8) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & UINT64_C(0x8080808080808080))
                break;
            i += 8;
        }
        if (i >= n)
            break;
        size_t k = daebus__utf8_char(s + i, n - i);
        if (k == 0)
            return false;
        i += k;
    }
    return true;
}

/* ---- cutting ---- */

/* Returns: the length of the character a lead byte announces (1 for ASCII
 * and for bytes that start nothing). */
static size_t announced(unsigned char c)
{
    if (c >= 0xF0 && c <= 0xF7)
        return 4;
    if (c >= 0xE0)
        return c <= 0xEF ? 3 : 1;
    if (c >= 0xC0)
        return 2;
    return 1;
}

size_t daebus__utf8_cut(const char *s, size_t n, size_t max)
{
    if (n <= max)
        return n;
    const unsigned char *p = (const unsigned char *)s;
    /* s[max] is the first byte left out: if it continues a character, that
     * character starts at most 3 bytes before it. */
    size_t i = max;
    while (i > 0 && max - i < 3 && cont(p[i]))
        i--;
    if (i < max && !cont(p[i]) && announced(p[i]) > max - i)
        return i;
    return max;
}

int daebus__utf8_prec(const char *s, size_t max)
{
    if (!s)
        return 0;
    if (max > INT_MAX)
        max = INT_MAX;
    /* Look one byte past max: cut needs the first byte left out. */
    size_t n = strnlen(s, max + 1);
    return (int)daebus__utf8_cut(s, n, max);
}

size_t daebus__utf8_trim(char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = n;
    while (i > 0 && n - i < 3 && cont(p[i - 1]))
        i--;
    /* p[i - 1], if not a continuation byte, starts the last character. */
    if (i > 0 && !cont(p[i - 1]) && p[i - 1] >= 0x80 && announced(p[i - 1]) > n - (i - 1))
        n = i - 1;
    s[n] = '\0';
    return n;
}

int daebus__utf8_vsnprintf(char *buf, size_t cap, const char *fmt, va_list ap)
{
    int r = vsnprintf(buf, cap, fmt, ap);
    if (r >= 0 && cap > 0 && (size_t)r >= cap)
        daebus__utf8_trim(buf, cap - 1);
    return r;
}

int daebus__utf8_snprintf(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = daebus__utf8_vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    return r;
}

/* ---- escaping ---- */

static const char hexdigits[] = "0123456789abcdef";

/* Returns: the code point of the well-formed character s[0..k). */
static uint32_t code_point(const unsigned char *s, size_t k)
{
    static const unsigned char lead_mask[] = {0, 0x7F, 0x1F, 0x0F, 0x07};
    uint32_t cp = s[0] & lead_mask[k];
    for (size_t i = 1; i < k; i++)
        cp = (cp << 6) | (s[i] & 0x3F);
    return cp;
}

/* Characters that end or confuse a line although they are well-formed: C1
 * controls (U+0080-009F, which some terminals obey) and the Unicode line and
 * paragraph separators. */
static bool special(uint32_t cp)
{
    return (cp >= 0x80 && cp <= 0x9F) || cp == 0x2028 || cp == 0x2029;
}

static size_t escape(char *out, size_t cap, const char *s, size_t n, size_t *used, bool json)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0, i = 0;
    if (cap == 0) {
        if (used)
            *used = 0;
        return 0;
    }
    while (i < n) {
        char tmp[16];
        size_t tl = 0; /* escape text in tmp, or 0: copy the character */
        size_t k = daebus__utf8_char(s + i, n - i);
        unsigned char c = p[i];
        if (k == 0) {
            /* Not part of a well-formed character: the byte as \xNN text. */
            k = 1;
            if (json)
                tmp[tl++] = '\\';
            tmp[tl++] = '\\';
            tmp[tl++] = 'x';
            tmp[tl++] = hexdigits[c >> 4];
            tmp[tl++] = hexdigits[c & 15];
        } else if (k == 1 && (c < 0x20 || c == 0x7F || (json && (c == '"' || c == '\\')))) {
            const char *named = NULL;
            switch (c) {
            case '\n':
                named = "\\n";
                break;
            case '\r':
                named = "\\r";
                break;
            case '\t':
                named = "\\t";
                break;
            case '\b':
                named = json ? "\\b" : NULL;
                break;
            case '\f':
                named = json ? "\\f" : NULL;
                break;
            case '"':
                named = "\\\"";
                break;
            case '\\':
                named = "\\\\";
                break;
            default:
                break;
            }
            if (named) {
                tl = strlen(named);
                memcpy(tmp, named, tl);
            } else {
                tl = (size_t)snprintf(tmp, sizeof tmp, json ? "\\u%04x" : "\\x%02x", c);
            }
        } else if (k > 1 && special(code_point(p + i, k))) {
            if (json) {
                tl = (size_t)snprintf(tmp, sizeof tmp, "\\u%04x", (unsigned)code_point(p + i, k));
            } else {
                for (size_t b = 0; b < k; b++) {
                    tmp[tl++] = '\\';
                    tmp[tl++] = 'x';
                    tmp[tl++] = hexdigits[p[i + b] >> 4];
                    tmp[tl++] = hexdigits[p[i + b] & 15];
                }
            }
        }
        size_t need = tl ? tl : k;
        if (cap - o <= need)
            break;
        memcpy(out + o, tl ? tmp : s + i, need);
        o += need;
        i += k;
    }
    out[o] = '\0';
    if (used)
        *used = i;
    return o;
}

size_t daebus__utf8_escape_text(char *out, size_t cap, const char *s, size_t n, size_t *used)
{
    return escape(out, cap, s, n, used, false);
}

size_t daebus__utf8_escape_json(char *out, size_t cap, const char *s, size_t n, size_t *used)
{
    return escape(out, cap, s, n, used, true);
}
