/* The UTF-8 helpers (framework/utf8.c): the decoder against a reference on
 * every sequence of up to three bytes, cuts that never split a character,
 * the trim after a cut by bytes, and the escapers of the log. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "daebus/daebus.h"
#include "http_parse.h"
#include "json.h"
#include "testsupport.h"
#include "utf8.h"
#include "ws_parse.h"

/* ---- a reference decoder: builds the code point, then range-checks it ---- */

static size_t ref_char(const unsigned char *s, size_t n)
{
    if (n == 0)
        return 0;
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
        len = 2;
        cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3;
        cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[k] & 0x3F);
    }
    static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

static bool ref_valid(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t k = ref_char(s + i, n - i);
        if (!k)
            return false;
        i += k;
    }
    return true;
}

/* Every sequence of 1, 2 and 3 bytes, and 4-byte ones around the edges. */
static void test_decoder_exhaustive(void)
{
    unsigned char b[8];
    size_t bad = 0;
    for (unsigned x = 0; x < 256; x++) {
        b[0] = (unsigned char)x;
        bad += daebus__utf8_char((char *)b, 1) != ref_char(b, 1);
        for (unsigned y = 0; y < 256; y++) {
            b[1] = (unsigned char)y;
            bad += daebus__utf8_char((char *)b, 2) != ref_char(b, 2);
            bad += daebus__utf8_valid((char *)b, 2) != ref_valid(b, 2);
            for (unsigned z = 0; z < 256; z++) {
                b[2] = (unsigned char)z;
                bad += daebus__utf8_valid((char *)b, 3) != ref_valid(b, 3);
            }
        }
    }
    for (unsigned x = 0xEF; x < 0x100; x++)
        for (unsigned y = 0x70; y < 0xD0; y++)
            for (unsigned z = 0x70; z < 0xD0; z += 7)
                for (unsigned w = 0x70; w < 0xD0; w += 5) {
                    unsigned char s[4] = {(unsigned char)x, (unsigned char)y, (unsigned char)z,
                                          (unsigned char)w};
                    bad += daebus__utf8_valid((char *)s, 4) != ref_valid(s, 4);
                    bad += daebus__utf8_char((char *)s, 4) != ref_char(s, 4);
                }
    CU_ASSERT_EQUAL(bad, 0);
}

static void test_decoder_cases(void)
{
    static const struct {
        const char *s;
        bool ok;
    } cases[] = {
        {"", true},
        {"plain ascii, long enough for the 8-byte path", true},
        {"caf\xC3\xA9", true},
        {"\xE2\x82\xAC", true},      /* U+20AC */
        {"\xF0\x9F\x98\x80", true},  /* U+1F600 */
        {"\xF4\x8F\xBF\xBF", true},  /* U+10FFFF */
        {"\xED\x9F\xBF", true},      /* U+D7FF */
        {"\xEE\x80\x80", true},      /* U+E000 */
        {"\xC0\x80", false},         /* overlong NUL (modified UTF-8) */
        {"\xC1\xBF", false},         /* overlong */
        {"\xE0\x9F\xBF", false},     /* overlong */
        {"\xF0\x8F\xBF\xBF", false}, /* overlong */
        {"\xED\xA0\x80", false},     /* U+D800 */
        {"\xED\xBF\xBF", false},     /* U+DFFF */
        {"\xF4\x90\x80\x80", false}, /* U+110000 */
        {"\xF5\x80\x80\x80", false}, /* beyond */
        {"\x80", false},             /* stray continuation */
        {"abcdefgh\xC3", false},     /* cut short after the 8-byte path */
        {"\xF0\x9F\x98", false},     /* cut short */
        {"\xC3\xA9\xA9", false},     /* one continuation too many */
        {"\xFF", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = strlen(cases[i].s);
        /* The WebSocket layer calls this one; HTTP's is the same decoder. */
        CU_ASSERT_EQUAL(daebus__utf8_valid(cases[i].s, n), cases[i].ok);
        CU_ASSERT_EQUAL(daebus__http_utf8_valid(cases[i].s, n), cases[i].ok);
    }
    /* NUL is a character here; the HTTP validator refuses it. */
    CU_ASSERT_TRUE(daebus__utf8_valid("a\0b", 3));
    CU_ASSERT_FALSE(daebus__http_utf8_valid("a\0b", 3));
}

/* Texts of 1-, 2-, 3- and 4-byte characters, and a mix. */
static const char *const texts[] = {
    "hello",
    "\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9",
    "\xE2\x82\xAC\xE2\x82\xAC\xE2\x82\xAC\xE2\x82\xAC",
    "\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xF0\x9F\x98\x80",
    "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80z\xF0\x9F\x98\x80\xC3\xA9",
};

/* The longest prefix of s[0..n) of at most max bytes that ends on a
 * character boundary, found the slow way. */
static size_t ref_cut(const char *s, size_t n, size_t max)
{
    size_t best = 0;
    for (size_t i = 0; i <= n && i <= max;) {
        best = i;
        if (i == n)
            break;
        i += ref_char((const unsigned char *)s + i, n - i);
    }
    return best;
}

static void test_cut(void)
{
    for (size_t t = 0; t < sizeof texts / sizeof texts[0]; t++) {
        const char *s = texts[t];
        size_t n = strlen(s);
        for (size_t max = 0; max <= n + 2; max++) {
            size_t c = daebus__utf8_cut(s, n, max);
            CU_ASSERT_EQUAL(c, ref_cut(s, n, max));
            CU_ASSERT_TRUE(daebus__utf8_valid(s, c));
            int p = daebus__utf8_prec(s, max);
            CU_ASSERT_EQUAL((size_t)p, c);
        }
    }
    CU_ASSERT_EQUAL(daebus__utf8_prec(NULL, 10), 0);
    /* Invalid input is cut by bytes: nothing to keep whole. */
    CU_ASSERT_EQUAL(daebus__utf8_cut("\x80\x80\x80\x80\x80", 5, 3), 3);
    CU_ASSERT_EQUAL(daebus__utf8_cut("ab\xFF\xFF", 4, 3), 3);
    /* The first byte left out is a continuation of a character that ended: a stray. */
    CU_ASSERT_EQUAL(daebus__utf8_cut("\xC3\xA9\xA9\xA9", 4, 2), 2);
}

static void test_trim_and_snprintf(void)
{
    for (size_t t = 0; t < sizeof texts / sizeof texts[0]; t++) {
        size_t n = strlen(texts[t]);
        for (size_t k = 0; k <= n; k++) {
            char buf[64];
            memcpy(buf, texts[t], k);
            size_t m = daebus__utf8_trim(buf, k);
            CU_ASSERT_EQUAL(m, ref_cut(texts[t], n, k));
            CU_ASSERT_EQUAL(strlen(buf), m);
            /* snprintf into k + 1 bytes: the same cut */
            char out[64];
            int r = daebus__utf8_snprintf(out, k + 1, "%s", texts[t]);
            CU_ASSERT_EQUAL(r, (int)n);
            CU_ASSERT_EQUAL(strlen(out), m);
            CU_ASSERT_TRUE(daebus__utf8_valid(out, strlen(out)));
        }
    }
    /* Bytes that are not a cut character stay. */
    char s[] = "ab\x80";
    CU_ASSERT_EQUAL(daebus__utf8_trim(s, 3), 3);
    /* The error texts the framework cuts: 300 bytes of é into 200 and 256. */
    char name[301];
    for (int i = 0; i < 150; i++)
        memcpy(name + 2 * i, "\xC3\xA9", 2);
    name[300] = '\0';
    char text[200];
    daebus__utf8_snprintf(text, sizeof text, "Unknown action '%s'", name);
    CU_ASSERT_TRUE(daebus__utf8_valid(text, strlen(text)));
    CU_ASSERT_EQUAL(strlen(text), 198); /* 16 + 91 * 2 = 198: one é would end at 200 */
    daebus_error err;
    daebus_error_set(&err, DAEBUS_EINVAL, "xy%s", name);
    CU_ASSERT_TRUE(daebus__utf8_valid(err.message, strlen(err.message)));
    CU_ASSERT_EQUAL(strlen(err.message), 254);
    /* A close reason is cut at 123 bytes on a boundary. */
    char payload[125];
    size_t pn = daebus__ws_close_payload(1008, name, payload);
    CU_ASSERT_EQUAL(pn, 2 + 122);
    CU_ASSERT_TRUE(daebus__utf8_valid(payload + 2, pn - 2));
}

/* ---- escaping ---- */

static bool has_control(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7F)
            return true;
    return false;
}

static void test_escape_text(void)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"plain", "plain"},
        {"bob\n2026-12-05T10:00:00.000Z CRIT  svc [app] forged",
         "bob\\n2026-12-05T10:00:00.000Z CRIT  svc [app] forged"},
        {"a\r\tb", "a\\r\\tb"},
        {"\x1b[31mred", "\\x1b[31mred"},
        {"del\x7f", "del\\x7f"},
        {"back\\slash \"quoted\"", "back\\slash \"quoted\""},
        {"caf\xC3\xA9 \xF0\x9F\x98\x80", "caf\xC3\xA9 \xF0\x9F\x98\x80"},
        {"c1 \xC2\x9B", "c1 \\xc2\\x9b"},
        {"ls \xE2\x80\xA8 ps \xE2\x80\xA9", "ls \\xe2\\x80\\xa8 ps \\xe2\\x80\\xa9"},
        {"bad \xFF \xC3( \xC0\x80", "bad \\xff \\xc3( \\xc0\\x80"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[256];
        size_t used = 0;
        size_t n =
            daebus__utf8_escape_text(out, sizeof out, cases[i].in, strlen(cases[i].in), &used);
        CU_ASSERT_STRING_EQUAL(out, cases[i].out);
        CU_ASSERT_EQUAL(n, strlen(cases[i].out));
        CU_ASSERT_EQUAL(used, strlen(cases[i].in));
    }
    /* NUL inside the given length is escaped too. */
    char out[32];
    daebus__utf8_escape_text(out, sizeof out, "a\0b", 3, NULL);
    CU_ASSERT_STRING_EQUAL(out, "a\\x00b");
    /* Too little room: stops before an escape or a character, never in one. */
    const char *s = "ab\n\xC3\xA9z";
    static const char *const want[] = {
        "", "", "a", "ab", "ab", "ab\\n", "ab\\n", "ab\\n\xC3\xA9", "ab\\n\xC3\xA9z"};
    for (size_t cap = 0; cap < sizeof want / sizeof want[0]; cap++) {
        char o[16] = "untouched";
        size_t used = 99;
        size_t n = daebus__utf8_escape_text(o, cap, s, strlen(s), &used);
        if (cap == 0) {
            CU_ASSERT_EQUAL(n, 0);
            CU_ASSERT_STRING_EQUAL(o, "untouched");
            CU_ASSERT_EQUAL(used, 0);
            continue;
        }
        CU_ASSERT_STRING_EQUAL(o, want[cap]);
        CU_ASSERT_TRUE(daebus__utf8_valid(o, n) && !has_control(o, n));
    }
}

static void test_escape_json(void)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"plain", "plain"},
        {"bob\n2026 CRIT forged", "bob\\n2026 CRIT forged"},
        {"q\"b\\s/", "q\\\"b\\\\s/"},
        {"\b\f\r\t\x01\x1b\x7f", "\\b\\f\\r\\t\\u0001\\u001b\\u007f"},
        {"caf\xC3\xA9 \xF0\x9F\x98\x80", "caf\xC3\xA9 \xF0\x9F\x98\x80"},
        {"c1 \xC2\x85 ls \xE2\x80\xA8", "c1 \\u0085 ls \\u2028"},
        {"bad \xFF\xC3", "bad \\\\xff\\\\xc3"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[256];
        size_t n =
            daebus__utf8_escape_json(out, sizeof out, cases[i].in, strlen(cases[i].in), NULL);
        CU_ASSERT_STRING_EQUAL(out, cases[i].out);
        /* Between quotes: a JSON string that reads back as the input (the
         * bytes that are not UTF-8 as their \xNN text). */
        char quoted[260];
        snprintf(quoted, sizeof quoted, "\"%s\"", out);
        cJSON *j = daebus_json_parse(quoted, n + 2, NULL);
        CU_ASSERT_PTR_NOT_NULL_FATAL(j);
        CU_ASSERT_TRUE(cJSON_IsString(j));
        if (daebus__utf8_valid(cases[i].in, strlen(cases[i].in)))
            CU_ASSERT_STRING_EQUAL(j->valuestring, cases[i].in);
        cJSON_Delete(j);
    }
    /* Room for "\u001b" or nothing of it. */
    char o[8];
    daebus__utf8_escape_json(o, 7, "ab\x1b", 3, NULL);
    CU_ASSERT_STRING_EQUAL(o, "ab");
}

int main(void)
{
    daebus_log_set_level(DAEBUS_LOG_ERROR);
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("utf8", NULL, NULL);
    CU_add_test(s, "decoder against a reference", test_decoder_exhaustive);
    CU_add_test(s, "decoder cases", test_decoder_cases);
    CU_add_test(s, "cut", test_cut);
    CU_add_test(s, "trim and snprintf", test_trim_and_snprintf);
    CU_add_test(s, "escape text", test_escape_text);
    CU_add_test(s, "escape json", test_escape_json);
    return ts_run_cunit();
}
