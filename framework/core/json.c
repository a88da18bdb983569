/* json.c - JSON printing with exact numbers, and parsing that keeps NUL and lone surrogates.
 *
 * cJSON prints numbers with 15 significant digits (2^53 leaves as
 * 9007199254740990) and keeps strings NUL-terminated (an escaped NUL cuts the
 * string; a lone surrogate escape fails the whole parse). So the framework
 * prints cJSON trees itself: one pass over the tree, iterative (worker stacks
 * are small), appending into a growing buffer. A number is printed as the
 * shortest decimal that strtod reads back to the same double, found from the
 * correctly rounded digits glibc's printf gives for 15, 16 and 17 significant
 * digits (plus the one neighbour that can be shorter when the nearest is
 * not); the text is rendered as Python's repr() renders floats, and integers
 * up to 2^53 as plain integers.
 *
 * Parsing stays cJSON's (numbers via strtod, which is exact). Only when the
 * text holds a "\u" escape is it first copied through a small lexer that
 * knows strings and escapes ("\\u0000" is a backslash and "u0000", not an
 * escape): "\u0000" becomes the bytes C0 80 and a lone surrogate "\ufffd".
 * The printer writes C0 80 back as "\u0000".
 */
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "json.h"
#include "textlist.h"

/* ---- numbers ---- */

#define EXACT_INT_MAX 9007199254740992.0 /* 2^53 */

static size_t put_uint(uint64_t v, char *out)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

/* The p significant digits of a (> 0, finite), correctly rounded, into dig;
 * *exp10 receives the decimal exponent of the first digit. */
static void digits_of(double a, int p, char *dig, int *exp10)
{
    char tmp[48];
    snprintf(tmp, sizeof tmp, "%.*e", p - 1, a);
    int n = 0;
    const char *s = tmp;
    for (; *s && *s != 'e'; s++)
        if (*s >= '0' && *s <= '9' && n < p)
            dig[n++] = *s;
    *exp10 = *s ? (int)strtol(s + 1, NULL, 10) : 0;
}

/* Returns: the double strtod reads for dig[0..n) x 10^(exp10 - n + 1). The
 * text has no decimal point, so the C locale does not matter. */
static double value_of(const char *dig, int n, int exp10)
{
    char t[48];
    memcpy(t, dig, (size_t)n);
    snprintf(t + n, sizeof t - (size_t)n, "e%d", exp10 - n + 1);
    return strtod(t, NULL);
}

/* Adds delta (+1 or -1) to the last of n digits. Returns: false when the
 * result has another number of digits (it then has fewer significant digits
 * and was tried before). */
static bool nudge(char *dig, int n, int delta)
{
    int i = n - 1;
    if (delta > 0) {
        while (i >= 0 && dig[i] == '9')
            dig[i--] = '0';
        if (i < 0)
            return false;
        dig[i]++;
    } else {
        while (i >= 0 && dig[i] == '0')
            dig[i--] = '9';
        if (i < 0)
            return false;
        dig[i]--;
    }
    return dig[0] != '0';
}

/* The shortest digits that read back to a (> 0, finite). For normal numbers
 * 15 digits always do when fewer do (DBL_DIG), and printf's correctly rounded
 * 15 digits then end in the zeros that the caller strips; subnormals hold
 * fewer digits and are searched from 1. At each length, if the nearest
 * decimal misses, only its neighbour across a can hit. Returns: the count. */
static int shortest(double a, char *dig, int *exp10)
{
    for (int p = a < DBL_MIN ? 1 : 15; p < 17; p++) {
        digits_of(a, p, dig, exp10);
        double v = value_of(dig, p, *exp10);
        if (v == a)
            return p;
        char alt[17];
        memcpy(alt, dig, (size_t)p);
        if (nudge(alt, p, v < a ? 1 : -1) && value_of(alt, p, *exp10) == a) {
            memcpy(dig, alt, (size_t)p);
            return p;
        }
    }
    digits_of(a, 17, dig, exp10); /* 17 digits always read back */
    return 17;
}

size_t daebus__json_number(double d, char buf[DAEBUS__JSON_NUMBER_MAX])
{
    size_t n = 0;
    if (!isfinite(d)) {
        memcpy(buf, "null", 5);
        return 4;
    }
    if (signbit(d)) {
        buf[n++] = '-';
        d = -d;
    }
    if (d == 0) {
        /* "-0" would read back as the integer 0 in Python; "-0.0" keeps the sign. */
        memcpy(buf + n, n ? "0.0" : "0", n ? 4 : 2);
        return n ? 4 : 1;
    }
    if (d <= EXACT_INT_MAX && d == (double)(uint64_t)d) {
        n += put_uint((uint64_t)d, buf + n);
        buf[n] = '\0';
        return n;
    }
    char dig[17];
    int x;
    int p = shortest(d, dig, &x);
    while (p > 1 && dig[p - 1] == '0')
        p--;
    if (x >= -4 && x < 16) { /* fixed notation, as repr() */
        if (x < 0) {
            buf[n++] = '0';
            buf[n++] = '.';
            for (int i = -1; i > x; i--)
                buf[n++] = '0';
            memcpy(buf + n, dig, (size_t)p);
            n += (size_t)p;
        } else if (p <= x + 1) { /* an integer past 2^53 */
            memcpy(buf + n, dig, (size_t)p);
            n += (size_t)p;
            for (int i = p; i <= x; i++)
                buf[n++] = '0';
        } else {
            memcpy(buf + n, dig, (size_t)x + 1);
            n += (size_t)x + 1;
            buf[n++] = '.';
            memcpy(buf + n, dig + x + 1, (size_t)(p - x - 1));
            n += (size_t)(p - x - 1);
        }
    } else {
        buf[n++] = dig[0];
        if (p > 1) {
            buf[n++] = '.';
            memcpy(buf + n, dig + 1, (size_t)p - 1);
            n += (size_t)p - 1;
        }
        buf[n++] = 'e';
        buf[n++] = x < 0 ? '-' : '+';
        unsigned ax = (unsigned)(x < 0 ? -x : x);
        if (ax < 10)
            buf[n++] = '0';
        n += put_uint(ax, buf + n);
    }
    buf[n] = '\0';
    return n;
}

/* ---- printing ---- */

typedef daebus__json_out out_buf;

/* Makes room for need more bytes plus the final NUL. */
static bool reserve(out_buf *b, size_t need)
{
    if (b->failed)
        return false;
    if (need < b->cap - b->len)
        return true;
    size_t cap = b->cap ? b->cap : 256;
    while (need >= cap - b->len) {
        if (cap > SIZE_MAX / 2) {
            b->failed = true;
            return false;
        }
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (!p) {
        b->failed = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

static void put(out_buf *b, const char *s, size_t n)
{
    if (n && reserve(b, n)) {
        memcpy(b->p + b->len, s, n);
        b->len += n;
    }
}

static void put_c(out_buf *b, char c)
{
    if (reserve(b, 1))
        b->p[b->len++] = c;
}

static void put_string(out_buf *b, const char *str)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)(str ? str : "");
    const unsigned char *run = s;
    put_c(b, '"');
    for (;; s++) {
        unsigned char c = *s;
        if (c >= 0x20 && c != '"' && c != '\\' && c != 0xC0)
            continue;
        put(b, (const char *)run, (size_t)(s - run));
        run = s + 1;
        if (c == 0)
            break;
        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        size_t n = 2;
        switch (c) {
        case '"':
        case '\\':
            esc[1] = (char)c;
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        case 0xC0:
            if (s[1] != 0x80) { /* not a NUL: the byte as it is */
                esc[0] = (char)c;
                n = 1;
                break;
            }
            s++;
            run = s + 1;
            c = 0;
            /* fall through */
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            n = 6;
        }
        put(b, esc, n);
    }
    put_c(b, '"');
}

typedef struct frame {
    const cJSON *item; /* the member being printed */
    bool object;
} frame;

/* Appends item (not its siblings). Returns: false for an item of invalid type
 * or out of memory. */
/* Prints a scalar (null, bool, number, string, raw). Returns: false for a
 * raw item without text or an unknown type. */
static bool put_scalar(out_buf *b, const cJSON *it)
{
    switch (it->type & 0xFF) {
    case cJSON_NULL:
        put(b, "null", 4);
        return true;
    case cJSON_False:
        put(b, "false", 5);
        return true;
    case cJSON_True:
        put(b, "true", 4);
        return true;
    case cJSON_Number: {
        char num[DAEBUS__JSON_NUMBER_MAX];
        put(b, num, daebus__json_number(it->valuedouble, num));
        return true;
    }
    case cJSON_String:
        put_string(b, it->valuestring);
        return true;
    case cJSON_Raw:
        if (!it->valuestring)
            return false;
        put(b, it->valuestring, strlen(it->valuestring));
        return true;
    default:
        return false;
    }
}

/* Doubles the frame stack (moving off the caller's small array). */
static bool grow_stack(frame **stack, frame *small, size_t *cap, size_t depth)
{
    frame *bigger = malloc(2 * *cap * sizeof *bigger);
    if (!bigger)
        return false;
    memcpy(bigger, *stack, depth * sizeof **stack);
    if (*stack != small)
        free(*stack);
    *stack = bigger;
    *cap *= 2;
    return true;
}

static bool print_tree(out_buf *b, const cJSON *item)
{
    frame small[32], *stack = small;
    size_t depth = 0, cap = sizeof small / sizeof *small;
    bool ok = true;
    const cJSON *it = item;
    for (;;) {
        if (depth > 0 && stack[depth - 1].object) {
            put_string(b, it->string);
            put_c(b, ':');
        }
        int type = it->type & 0xFF;
        if (type != cJSON_Array && type != cJSON_Object) {
            if (!put_scalar(b, it)) {
                ok = false;
                goto done;
            }
        } else {
            bool obj = type == cJSON_Object;
            put_c(b, obj ? '{' : '[');
            if (it->child) {
                if (depth == cap && !grow_stack(&stack, small, &cap, depth)) {
                    ok = false;
                    goto done;
                }
                stack[depth++] = (frame){it->child, obj};
                it = it->child;
                continue;
            }
            put_c(b, obj ? '}' : ']');
        }
        /* it is done: on to its next sibling, closing finished containers. */
        for (;;) {
            if (depth == 0)
                goto done;
            frame *f = &stack[depth - 1];
            if (f->item->next) {
                f->item = it = f->item->next;
                put_c(b, ',');
                break;
            }
            put_c(b, f->object ? '}' : ']');
            depth--;
        }
    }
done:
    if (stack != small)
        free(stack);
    return ok && !b->failed;
}

char *daebus_json_print(const cJSON *item, size_t *len)
{
    if (!item)
        return NULL;
    out_buf b;
    daebus__json_out_init(&b, 0);
    daebus__json_out_value(&b, item);
    return daebus__json_out_finish(&b, len);
}

/* ---- the print buffer, for printers that add text around values ---- */

void daebus__json_out_init(daebus__json_out *b, size_t front)
{
    *b = (daebus__json_out){.front = front};
    if (front && reserve(b, front))
        b->len = front;
}

void daebus__json_out_raw(daebus__json_out *b, const char *s, size_t n)
{
    put(b, s, n);
}

void daebus__json_out_string(daebus__json_out *b, const char *s)
{
    put_string(b, s);
}

bool daebus__json_out_value(daebus__json_out *b, const cJSON *item)
{
    if (!item) {
        b->failed = true;
        return false;
    }
    if (!print_tree(b, item))
        b->failed = true;
    return !b->failed;
}

char *daebus__json_out_finish(daebus__json_out *b, size_t *len)
{
    if (!reserve(b, 0)) {
        free(b->p);
        *b = (daebus__json_out){0};
        return NULL;
    }
    b->p[b->len] = '\0';
    /* A buffer that grew by doubling may be up to twice its text: give the
     * slack back when it is worth a call (the text may be queued a while). */
    if (b->cap - b->len > 4096) {
        char *p = realloc(b->p, b->len + 1);
        if (p)
            b->p = p;
    }
    char *p = b->p;
    if (len)
        *len = b->len - b->front;
    *b = (daebus__json_out){0};
    return p;
}

/* ---- parsing ---- */

static int hex4(const char *s)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        int d = daebus__hex_digit((unsigned char)s[i]);
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* The rewrite lexer. Writes to out unless it is NULL; stops at the first
 * input token whose output would begin at or after stop (so that an output
 * offset can be mapped back to the input). A "\u" in a string without four
 * hex digits after it is not JSON, though cJSON would read it as a NUL that
 * ends the string: *bad (if not NULL) receives the offset of the first one,
 * else SIZE_MAX. Returns: the output length; *in_used: the input consumed. */
static size_t rewrite_core(const char *in, size_t len, char *out, size_t stop, size_t *in_used,
                           size_t *bad)
{
    if (bad)
        *bad = SIZE_MAX;
    size_t i = 0, o = 0;
    bool in_str = false;
    while (i < len && o < stop) {
        char c = in[i];
        const char *emit = in + i;
        size_t take = 1, n = 1;
        if (!in_str) {
            in_str = c == '"';
        } else if (c == '"') {
            in_str = false;
        } else if (c == '\\' && i + 1 < len) {
            take = n = 2; /* \\ \" \n ...: the pair as it is */
            int cp = in[i + 1] == 'u' && i + 5 < len ? hex4(in + i + 2) : -1;
            if (cp == 0) {
                emit = "\xC0\x80";
                take = 6;
            } else if (cp >= 0xD800 && cp <= 0xDBFF && i + 11 < len && in[i + 6] == '\\' &&
                       in[i + 7] == 'u' && hex4(in + i + 8) >= 0xDC00 &&
                       hex4(in + i + 8) <= 0xDFFF) {
                take = n = 12; /* a surrogate pair */
            } else if (cp >= 0xD800 && cp <= 0xDFFF) {
                emit = "\\ufffd";
                take = n = 6;
            } else if (cp > 0) {
                take = n = 6;
            } else if (in[i + 1] == 'u' && bad && *bad == SIZE_MAX) {
                *bad = i;
            }
        }
        if (out)
            memcpy(out + o, emit, n);
        i += take;
        o += n;
    }
    if (in_used)
        *in_used = i;
    return o;
}

size_t daebus__json_rewrite(const char *text, size_t len, char *out)
{
    return rewrite_core(text, len, out, SIZE_MAX, NULL, NULL);
}

/* Returns: true if text holds a backslash followed by 'u'. */
static bool has_u_escape(const char *text, size_t len)
{
    const char *p = text, *end = text + len;
    while ((p = memchr(p, '\\', (size_t)(end - p))) != NULL) {
        if (p + 1 < end && p[1] == 'u')
            return true;
        p += 2;
        if (p >= end)
            break;
    }
    return false;
}

cJSON *daebus_json_parse(const char *text, size_t len, daebus_error *err)
{
    if (!text) {
        daebus_error_set(err, DAEBUS_EINVAL, "no JSON text given");
        return NULL;
    }
    char *copy = NULL;
    const char *src = text;
    size_t slen = len;
    if (has_u_escape(text, len)) {
        copy = malloc(len);
        if (!copy) {
            daebus_error_set(err, DAEBUS_ENOMEM, "out of memory");
            return NULL;
        }
        size_t bad;
        slen = rewrite_core(text, len, copy, SIZE_MAX, NULL, &bad);
        src = copy;
        if (bad != SIZE_MAX) {
            free(copy);
            daebus_error_set(err, DAEBUS_EPARSE,
                             "invalid JSON near byte %zu (a \\u escape needs 4 hex digits)", bad);
            return NULL;
        }
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(src, slen, &end, 0);
    size_t off = end && end >= src && end <= src + slen ? (size_t)(end - src) : 0;
    bool trailing = false;
    if (root) {
        for (; off < slen && !trailing; off++)
            trailing = !strchr(" \t\r\n", src[off]); /* strchr finds '\0' too: NUL may follow */
        if (trailing) {
            off--;
            cJSON_Delete(root);
            root = NULL;
        }
    }
    if (!root) {
        size_t at = off;
        if (copy)
            rewrite_core(text, len, NULL, off, &at, NULL);
        daebus_error_set(err, DAEBUS_EPARSE,
                         trailing ? "trailing data after the JSON value at byte %zu"
                                  : "invalid JSON near byte %zu",
                         at);
    }
    free(copy);
    return root;
}

/* ---- nesting depth ---- */

bool daebus__json_depth_ok(const char *buf, size_t len, int max)
{
    int depth = 0;
    bool in_str = false;
    for (size_t i = 0; i < len; i++) {
        char ch = buf[i];
        if (in_str) {
            if (ch == '\\')
                i++;
            else if (ch == '"')
                in_str = false;
        } else if (ch == '"') {
            in_str = true;
        } else if (ch == '[' || ch == '{') {
            if (++depth > max)
                return false;
        } else if ((ch == ']' || ch == '}') && depth > 0) {
            depth--;
        }
    }
    return true;
}
