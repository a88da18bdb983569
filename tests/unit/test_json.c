/* daebus_json_print / daebus_json_parse (framework/core/json.c): numbers print as
 * the shortest text that reads back to the same double, strings keep NUL
 * (as C0 80) and survive lone surrogates, control characters are escaped,
 * errors name the byte. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "daebus/daebus.h"
#include "bus_parse.h"
#include "json.h"
#include "testsupport.h"

/* The awkward values, with the exact text each must print as. */
static const struct {
    double value;
    const char *text;
} numbers[] = {
    {0.1, "0.1"},
    {1e300, "1e+300"},
    {5e-324, "5e-324"},
    {-0.0, "-0.0"},
    {9007199254740992.0, "9007199254740992"}, /* 2^53 (cJSON: 9007199254740990) */
    {-9007199254740992.0, "-9007199254740992"},
    {1733400000123456.0, "1733400000123456"}, /* a microsecond timestamp */
    {0.30000000000000004, "0.30000000000000004"},
    {1e21, "1e+21"},
    {123456789012345678.0, "1.2345678901234568e+17"}, /* the double nearest to it */
    {1.5, "1.5"},
    {-1, "-1"},
    {0, "0"},
    {1e15, "1000000000000000"},
    {1e16, "1e+16"},
    {9007199254740994.0, "9007199254740994"},        /* 2^53 + 2: exact, plain */
    {18014398509481984.0, "1.8014398509481984e+16"}, /* 2^54 */
    {0.0001, "0.0001"},
    {0.00001, "1e-05"},
    {123.456, "123.456"},
    {-2.5e-8, "-2.5e-08"},
    {1.7976931348623157e308, "1.7976931348623157e+308"},
    {2.2250738585072014e-308, "2.2250738585072014e-308"},
    {4.9406564584124654e-323, "5e-323"},
    {1.0 / 3, "0.3333333333333333"},
    {2.0 / 3, "0.6666666666666666"},
    {100, "100"},
    {1e-300, "1e-300"},
};
#define NNUMBERS (sizeof numbers / sizeof *numbers)

static int same_double(double a, double b)
{
    return memcmp(&a, &b, sizeof a) == 0; /* tells -0.0 from 0 */
}

static void test_number_text(void)
{
    for (size_t i = 0; i < NNUMBERS; i++) {
        char buf[DAEBUS__JSON_NUMBER_MAX];
        size_t n = daebus__json_number(numbers[i].value, buf);
        CU_ASSERT_STRING_EQUAL(buf, numbers[i].text);
        CU_ASSERT_EQUAL(n, strlen(numbers[i].text));
        /* strtod reads it back to the very same double */
        CU_ASSERT_TRUE(same_double(strtod(buf, NULL), numbers[i].value));
        if (strcmp(buf, numbers[i].text) != 0)
            fprintf(stderr, "number %zu: got %s, want %s\n", i, buf, numbers[i].text);
    }
    char buf[DAEBUS__JSON_NUMBER_MAX];
    daebus__json_number(NAN, buf);
    CU_ASSERT_STRING_EQUAL(buf, "null");
    daebus__json_number(INFINITY, buf);
    CU_ASSERT_STRING_EQUAL(buf, "null");
    daebus__json_number(-INFINITY, buf);
    CU_ASSERT_STRING_EQUAL(buf, "null");
}

/* Every number through print -> parse -> print: same doubles, same text. */
static void test_number_round_trip(void)
{
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; i < NNUMBERS; i++)
        cJSON_AddItemToArray(arr, cJSON_CreateNumber(numbers[i].value));
    size_t len = 0;
    char *text = daebus_json_print(arr, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    CU_ASSERT_EQUAL(len, strlen(text));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "[0.1,1e+300,5e-324,-0.0,9007199254740992,"));
    cJSON *back = daebus_json_parse(text, len, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(back);
    CU_ASSERT_EQUAL(cJSON_GetArraySize(back), (int)NNUMBERS);
    size_t i = 0;
    for (const cJSON *it = back->child; it; it = it->next, i++)
        CU_ASSERT_TRUE(same_double(it->valuedouble, numbers[i].value));
    char *again = daebus_json_print(back, NULL);
    CU_ASSERT_STRING_EQUAL(again, text);
    free(again);
    free(text);
    cJSON_Delete(back);
    cJSON_Delete(arr);
}

/* Many doubles of all kinds: the text reads back exactly, with at most 17
 * significant digits (checked against Python's repr() when written: same
 * text for every non-integer). */
static void test_number_sweep(void)
{
    uint64_t x = 88172645463325252ULL;
    int failures = 0;
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        double d;
        if (i % 4 == 0) {
            memcpy(&d, &x, sizeof d); /* any bit pattern */
        } else if (i % 4 == 1) {
            d = (double)(x >> 11) / 9007199254740992.0; /* [0, 1) */
        } else if (i % 4 == 2) {
            double scale = 1e-20;
            for (int k = (int)(x % 40); k > 0; k--)
                scale *= 10;
            d = (double)(x >> 11) * scale;
        } else {
            d = (double)(int64_t)x; /* big integers */
        }
        if (!isfinite(d))
            continue;
        char buf[DAEBUS__JSON_NUMBER_MAX];
        size_t n = daebus__json_number(d, buf), digits = 0;
        for (const char *p = buf; *p && *p != 'e'; p++) /* significant: from the first non-0 */
            digits += (*p >= '1' && *p <= '9') || (digits && *p == '0');
        if (!same_double(strtod(buf, NULL), d) || n >= DAEBUS__JSON_NUMBER_MAX || digits > 17)
            failures++;
    }
    CU_ASSERT_EQUAL(failures, 0);
}

/* Parsing is exact (strtod), including the hard cases. */
static void test_number_parse_exact(void)
{
    static const struct {
        const char *text;
        double value;
    } cases[] = {
        {"9007199254740993", 9007199254740992.0}, /* halfway: to even */
        {"9007199254740995", 9007199254740996.0},
        {"0.30000000000000004", 0.30000000000000004},
        {"2.2250738585072011e-308", 2.2250738585072011e-308},
        {"1733400000123456", 1733400000123456.0},
        {"-0.0", -0.0},
        {"-0", -0.0},
        {"1E+2", 100},
        {"123456789012345678", 123456789012345678.0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        cJSON *j = daebus_json_parse(cases[i].text, strlen(cases[i].text), NULL);
        CU_ASSERT_TRUE(cJSON_IsNumber(j));
        CU_ASSERT_TRUE(j && same_double(j->valuedouble, cases[i].value));
        cJSON_Delete(j);
    }
    /* A number token longer than 63 characters: read exactly by a fixed cJSON
     * (1.7.18, or Debian's patched 1.7.15), refused by older ones; never cut. */
    char longnum[80];
    memset(longnum, '1', 70);
    longnum[70] = '\0';
    char arr[90];
    snprintf(arr, sizeof arr, "[%s]", longnum);
    cJSON *j = daebus_json_parse(arr, strlen(arr), NULL);
    CU_ASSERT_TRUE(!j || (cJSON_IsNumber(j->child) &&
                          same_double(j->child->valuedouble, strtod(longnum, NULL))));
    cJSON_Delete(j);
}

/* Parses text and returns the string value (owned by *root). */
static const char *parse_str(const char *text, cJSON **root)
{
    *root = daebus_json_parse(text, strlen(text), NULL);
    return cJSON_IsString(*root) ? (*root)->valuestring : NULL;
}

static void expect_print(const cJSON *j, const char *want)
{
    char *s = daebus_json_print(j, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_STRING_EQUAL(s, want);
    if (strcmp(s, want) != 0)
        fprintf(stderr, "printed %s, want %s\n", s, want);
    free(s);
}

static void test_nul_in_strings(void)
{
    cJSON *j;
    const char *s = parse_str("\"a\\u0000b\"", &j);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_STRING_EQUAL(s, "a\xC0\x80"
                              "b"); /* kept, as C0 80 */
    expect_print(j, "\"a\\u0000b\"");
    cJSON_Delete(j);

    /* "\\u0000" is a backslash and "u0000": not an escape, nothing rewritten */
    s = parse_str("\"\\\\u0000\"", &j);
    CU_ASSERT_STRING_EQUAL(s, "\\u0000");
    expect_print(j, "\"\\\\u0000\"");
    cJSON_Delete(j);
    s = parse_str("\"\\\\\\u0000\"", &j); /* backslash, then a real NUL */
    CU_ASSERT_STRING_EQUAL(s, "\\\xC0\x80");
    expect_print(j, "\"\\\\\\u0000\"");
    cJSON_Delete(j);

    /* in keys too, in nested values, several in a row, and outside strings untouched */
    const char *obj = "{\"k\\u0000\":[\"\\u0000\\u0000x\",{\"y\":\"\\u0000\"}],\"n\":1}";
    j = daebus_json_parse(obj, strlen(obj), NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    CU_ASSERT_PTR_NOT_NULL(cJSON_GetObjectItemCaseSensitive(j, "k\xC0\x80"));
    expect_print(j, obj);
    cJSON_Delete(j);

    /* A C0 not followed by 80 is printed as it is. */
    cJSON *raw = cJSON_CreateString("\xC0x");
    expect_print(raw, "\"\xC0x\"");
    cJSON_Delete(raw);
}

static void test_surrogates(void)
{
    cJSON *j;
    const char *s = parse_str("\"x\\ud800y\"", &j); /* lone high */
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_STRING_EQUAL(s, "x\xEF\xBF\xBDy");
    cJSON_Delete(j);
    s = parse_str("\"\\uDC00\"", &j); /* lone low, upper-case hex */
    CU_ASSERT_STRING_EQUAL(s, "\xEF\xBF\xBD");
    cJSON_Delete(j);
    s = parse_str("\"\\ud83d\"", &j); /* high at the end */
    CU_ASSERT_STRING_EQUAL(s, "\xEF\xBF\xBD");
    cJSON_Delete(j);
    s = parse_str("\"\\ud83d\\ude00\"", &j); /* a pair is a pair */
    CU_ASSERT_STRING_EQUAL(s, "\xF0\x9F\x98\x80");
    cJSON_Delete(j);
    s = parse_str("\"\\ud800\\ud83d\\ude00\\udc00\"", &j); /* lone, pair, lone */
    CU_ASSERT_STRING_EQUAL(s, "\xEF\xBF\xBD\xF0\x9F\x98\x80\xEF\xBF\xBD");
    cJSON_Delete(j);
    s = parse_str("\"\\ud800\\u0041\"", &j); /* high before a non-surrogate */
    CU_ASSERT_STRING_EQUAL(s, "\xEF\xBF\xBD"
                              "A");
    cJSON_Delete(j);
}

static void test_escapes(void)
{
    cJSON *j = cJSON_CreateString("\x01\x1f\b\f\n\r\t\"\\/\x7f");
    expect_print(j, "\"\\u0001\\u001f\\b\\f\\n\\r\\t\\\"\\\\/\x7f\"");
    cJSON_Delete(j);
    j = cJSON_CreateString("h\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"); /* UTF-8 as it is */
    expect_print(j, "\"h\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80\"");
    cJSON_Delete(j);
    /* every control character reads back */
    char all[33];
    for (int i = 1; i < 32; i++)
        all[i - 1] = (char)i;
    all[31] = '\0';
    j = cJSON_CreateString(all);
    char *t = daebus_json_print(j, NULL);
    cJSON *back = daebus_json_parse(t, strlen(t), NULL);
    CU_ASSERT_TRUE(cJSON_IsString(back) && strcmp(back->valuestring, all) == 0);
    cJSON_Delete(back);
    free(t);
    cJSON_Delete(j);
    /* escapes of other characters parse as before */
    cJSON *r;
    const char *s = parse_str("\"\\u00e9\\u20ac\\/\\n\"", &r);
    CU_ASSERT_STRING_EQUAL(s, "\xC3\xA9\xE2\x82\xAC/\n");
    cJSON_Delete(r);
}

static void test_print_tree(void)
{
    const char *text = "{\"a\":[1,2.5,\"x\",true,false,null,{},[]],\"b\":{\"c\":{\"d\":[[-3]]}},"
                       "\"\":\"\"}";
    cJSON *j = daebus_json_parse(text, strlen(text), NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    expect_print(j, text);
    /* one member alone: neither its key nor its siblings */
    expect_print(cJSON_GetObjectItemCaseSensitive(j, "b"), "{\"c\":{\"d\":[[-3]]}}");
    /* references (as ws envelopes use) and raw items */
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemReferenceToObject(o, "ref", cJSON_GetObjectItemCaseSensitive(j, "b"));
    cJSON_AddRawToObject(o, "raw", "[1e999 ,  2]");
    expect_print(o, "{\"ref\":{\"c\":{\"d\":[[-3]]}},\"raw\":[1e999 ,  2]}");
    cJSON_Delete(o);
    cJSON_Delete(j);
    /* NULL, an invalid item and a Raw without text print nothing */
    CU_ASSERT_PTR_NULL(daebus_json_print(NULL, NULL));
    cJSON bad;
    memset(&bad, 0, sizeof bad);
    CU_ASSERT_PTR_NULL(daebus_json_print(&bad, NULL));
    bad.type = cJSON_Raw;
    CU_ASSERT_PTR_NULL(daebus_json_print(&bad, NULL));
    cJSON *num = cJSON_CreateNumber(NAN);
    expect_print(num, "null");
    cJSON_Delete(num);
}

/* Deep trees print iteratively, the same as cJSON prints them. */
static void test_print_deep(void)
{
    cJSON *root = cJSON_CreateArray(), *cur = root;
    for (int i = 0; i < 5000; i++) {
        cJSON *next = i % 2 ? cJSON_CreateArray() : cJSON_CreateObject();
        if (cJSON_IsObject(cur))
            cJSON_AddItemToObject(cur, "k", next);
        else
            cJSON_AddItemToArray(cur, next);
        cJSON_AddItemToArray(root, cJSON_CreateString("s")); /* siblings at the top */
        cur = next;
    }
    char *mine = daebus_json_print(root, NULL);
    char *theirs = cJSON_PrintUnformatted(root);
    CU_ASSERT_PTR_NOT_NULL_FATAL(mine);
    CU_ASSERT_STRING_EQUAL(mine, theirs);
    free(mine);
    cJSON_free(theirs);
    cJSON_Delete(root);
}

static void test_parse_errors(void)
{
    daebus_error err = {0};
    CU_ASSERT_PTR_NULL(daebus_json_parse("{\"a\":1} x", 9, &err));
    CU_ASSERT_EQUAL(err.code, DAEBUS_EPARSE);
    CU_ASSERT_STRING_EQUAL(err.message, "trailing data after the JSON value at byte 8");
    /* the byte is counted in the text given, before the \u0000 rewrite */
    const char *t = "[\"\\u0000\", x]";
    CU_ASSERT_PTR_NULL(daebus_json_parse(t, strlen(t), &err));
    CU_ASSERT_STRING_EQUAL(err.message, "invalid JSON near byte 11");
    CU_ASSERT_PTR_NULL(daebus_json_parse("", 0, &err));
    CU_ASSERT_EQUAL(err.code, DAEBUS_EPARSE);
    CU_ASSERT_PTR_NULL(daebus_json_parse(NULL, 0, &err));
    CU_ASSERT_EQUAL(err.code, DAEBUS_EINVAL);
    CU_ASSERT_PTR_NULL(daebus_json_parse("{\"a\":NaN}", 9, NULL));
    CU_ASSERT_PTR_NULL(daebus_json_parse("\"\\u00\"", 6, NULL)); /* short escape */
    /* cJSON alone would read a \u without 4 hex digits as a NUL ending the string */
    CU_ASSERT_PTR_NULL(daebus_json_parse("[\"ab\\uZZZZcd\"]", 14, &err));
    CU_ASSERT_STRING_EQUAL(err.message,
                           "invalid JSON near byte 4 (a \\u escape needs 4 hex digits)");
    CU_ASSERT_PTR_NULL(daebus_json_parse("\"\\u0000", 7, NULL)); /* unterminated */
    /* whitespace and NUL bytes may follow; only len bytes are read */
    cJSON *j = daebus_json_parse("{} \r\n\t\0\0", 8, NULL);
    CU_ASSERT_TRUE(cJSON_IsObject(j));
    cJSON_Delete(j);
    j = daebus_json_parse("[1]]]", 3, NULL);
    CU_ASSERT_TRUE(cJSON_IsArray(j));
    cJSON_Delete(j);
    j = daebus_json_parse("\"\\u0000\"garbage", 8, NULL);
    CU_ASSERT_TRUE(cJSON_IsString(j));
    cJSON_Delete(j);
}

/* ---- the bus side: wire parsing keeps NUL, and the lenient reply scan ---- */

static void test_bus_request_nul(void)
{
    /* a payload object, and a payload sent as a JSON string holding an object */
    const char *m = "{\"action\":\"a\",\"payload\":{\"s\":\"x\\u0000y\\udc00\"},"
                    "\"request_id\":\"r\\u0000\"}";
    daebus__bus_envelope env;
    CU_ASSERT_EQUAL_FATAL(daebus__bus_parse_request(m, strlen(m), &env, NULL, 0), 0);
    CU_ASSERT_STRING_EQUAL(cJSON_GetStringValue(cJSON_GetObjectItem(env.payload, "s")),
                           "x\xC0\x80y\xEF\xBF\xBD");
    char *reply = daebus__bus_build_response(false, env.payload, env.request_id, true);
    CU_ASSERT_STRING_EQUAL(reply,
                           "{\"status\":\"success\",\"payload\":{\"s\":\"x\\u0000y\xEF\xBF\xBD\"},"
                           "\"request_id\":\"r\\u0000\",\"final\":true}");
    free(reply);
    daebus__bus_envelope_free(&env);
    m = "{\"action\":\"a\",\"payload\":\"{\\\"s\\\":\\\"\\\\u0000\\\",\\\"n\\\":9007199254740993}"
        "\"}";
    CU_ASSERT_EQUAL_FATAL(daebus__bus_parse_request(m, strlen(m), &env, NULL, 0), 0);
    CU_ASSERT_STRING_EQUAL(cJSON_GetStringValue(cJSON_GetObjectItem(env.payload, "s")), "\xC0\x80");
    CU_ASSERT_EQUAL(cJSON_GetNumberValue(cJSON_GetObjectItem(env.payload, "n")),
                    9007199254740992.0);
    daebus__bus_envelope_free(&env);
}

static int scan(const char *m, char *reply, char *id)
{
    reply[0] = id[0] = '\0';
    return daebus__bus_scan_reply(m, strlen(m), reply, 16, id, 16);
}

static void test_bus_scan_reply(void)
{
    char reply[16], id[16];
    CU_ASSERT_EQUAL(scan("{\"action\":\"x\",\"payload\":{\"x\":NaN},\"reply_to\":\"c1\","
                         "\"request_id\":\"r1\"}",
                         reply, id),
                    0);
    CU_ASSERT_STRING_EQUAL(reply, "c1");
    CU_ASSERT_STRING_EQUAL(id, "r1");
    /* spaces, truncated text, either order */
    CU_ASSERT_EQUAL(
        scan("{ \"request_id\" :\t\"r2\" , \"reply_to\" : \"c2\", \"payload\": {", reply, id), 0);
    CU_ASSERT_STRING_EQUAL(reply, "c2");
    CU_ASSERT_STRING_EQUAL(id, "r2");
    /* members of nested objects are not the request's */
    CU_ASSERT_EQUAL(scan("{\"payload\":{\"reply_to\":\"c\",\"request_id\":\"r\"},x}", reply, id),
                    -1);
    CU_ASSERT_EQUAL(scan("{\"p\":[{\"reply_to\":\"c\"}],\"request_id\":\"r\",x", reply, id), -1);
    /* a key-like text inside a string value is a string */
    CU_ASSERT_EQUAL(
        scan("{\"note\":\"\\\"reply_to\\\":\\\"c\\\"\",\"request_id\":\"r\",x", reply, id), -1);
    /* values with escapes, too long, empty, not strings, or missing: no reply */
    CU_ASSERT_EQUAL(scan("{\"reply_to\":\"a\\\"b\",\"request_id\":\"r\",x", reply, id), -1);
    CU_ASSERT_EQUAL(scan("{\"reply_to\":\"0123456789abcdefg\",\"request_id\":\"r\",x", reply, id),
                    -1);
    CU_ASSERT_EQUAL(scan("{\"reply_to\":\"\",\"request_id\":\"r\",x", reply, id), -1);
    CU_ASSERT_EQUAL(scan("{\"reply_to\":\"c\",\"request_id\":5,x", reply, id), -1);
    CU_ASSERT_EQUAL(scan("{\"reply_to\":\"c\",x", reply, id), -1);
    CU_ASSERT_EQUAL(scan("{\"reply_to\":\"c\",\"request_id\":\"r", reply, id), -1);
    CU_ASSERT_EQUAL(scan("", reply, id), -1);
    CU_ASSERT_EQUAL(daebus__bus_scan_reply(NULL, 5, reply, 16, id, 16), -1);
    /* only len bytes are read */
    const char *m = "{\"reply_to\":\"c\",\"request_id\":\"r\"}";
    CU_ASSERT_EQUAL(daebus__bus_scan_reply(m, strlen(m) - 3, reply, 16, id, 16), -1);
}

/* The action a non-preferred replica reads without parsing (bus_dispatch.c). */
static void test_bus_scan_action(void)
{
    char a[8];
    const char *m = "{\"payload\":{\"action\":\"inner\"},\"action\" : \"echo\",\"x\":1}";
    CU_ASSERT_EQUAL(daebus__bus_scan_action(m, strlen(m), a, sizeof a), 0);
    CU_ASSERT_STRING_EQUAL(a, "echo"); /* the top-level one, not the payload's */
    /* escapes, not a string, empty, too long, absent, nested only: not read */
    const char *no[] = {"{\"action\":\"e\\u0063ho\"}", "{\"action\":5}",
                        "{\"action\":\"\"}",           "{\"action\":\"0123456789\"}",
                        "{\"reply_to\":\"c\"}",        "{\"p\":{\"action\":\"echo\"}}",
                        "[\"action\",\"echo\"]",       ""};
    for (size_t i = 0; i < sizeof no / sizeof *no; i++)
        CU_ASSERT_EQUAL(daebus__bus_scan_action(no[i], strlen(no[i]), a, sizeof a), -1);
    CU_ASSERT_EQUAL(daebus__bus_scan_action(NULL, 3, a, sizeof a), -1);
}

int main(void)
{
    daebus_log_set_level(DAEBUS_LOG_ERROR);
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("json", NULL, NULL);
    CU_add_test(s, "number text", test_number_text);
    CU_add_test(s, "number round trip", test_number_round_trip);
    CU_add_test(s, "number sweep", test_number_sweep);
    CU_add_test(s, "number parse exact", test_number_parse_exact);
    CU_add_test(s, "NUL in strings", test_nul_in_strings);
    CU_add_test(s, "lone surrogates", test_surrogates);
    CU_add_test(s, "escapes", test_escapes);
    CU_add_test(s, "print tree", test_print_tree);
    CU_add_test(s, "print deep", test_print_deep);
    CU_add_test(s, "parse errors", test_parse_errors);
    CU_add_test(s, "bus request keeps NUL", test_bus_request_nul);
    CU_add_test(s, "bus reply scan", test_bus_scan_reply);
    CU_add_test(s, "bus action scan", test_bus_scan_action);
    return ts_run_cunit();
}
