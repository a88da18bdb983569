/* fuzz_json.c - daebus_json_parse and daebus_json_print (framework/core/json.c).
 *
 * Input: any bytes, read as one JSON text. Invariants: a parse error names a
 * byte inside the text; the "\u" rewrite never grows the text; whatever cJSON
 * itself accepts is accepted too (but a "\u" without 4 hex digits, which is
 * not JSON), and gives the same tree when the text holds no "u0000"; a parsed tree prints, parses back to the same values (numbers
 * to the same bits) and prints the same text again. The input's first bytes,
 * read as doubles, print as the shortest text that strtod reads back exactly.
 */
#include <stdbool.h>
#include "fuzz_common.h"
#include "json.h"

static bool contains(const char *s, size_t len, const char *what)
{
    size_t n = strlen(what);
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(s + i, what, n) == 0)
            return true;
    return false;
}

static void check_numbers(const uint8_t *data, size_t size)
{
    for (size_t i = 0; i + 8 <= size && i < 64; i += 8) {
        double d;
        memcpy(&d, data + i, sizeof d);
        char buf[DAEBUS__JSON_NUMBER_MAX];
        size_t len = daebus__json_number(d, buf);
        FUZZ_CHECK(len < sizeof buf && len == strlen(buf));
        if (!isfinite(d)) {
            FUZZ_CHECK(strcmp(buf, "null") == 0);
            continue;
        }
        double back = strtod(buf, NULL);
        FUZZ_CHECK(memcmp(&back, &d, sizeof d) == 0);
        cJSON *j = daebus_json_parse(buf, len, NULL);
        FUZZ_CHECK(cJSON_IsNumber(j) && memcmp(&j->valuedouble, &d, sizeof d) == 0);
        cJSON_Delete(j);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy: ASan sees any read past the end. */
    char *text = malloc(size ? size : 1);
    FUZZ_CHECK(text != NULL);
    if (size)
        memcpy(text, data, size);

    char *rw = malloc(size ? size : 1);
    FUZZ_CHECK(rw != NULL);
    FUZZ_CHECK(daebus__json_rewrite(text, size, rw) <= size);
    free(rw);

    daebus_error err = {0};
    cJSON *j = daebus_json_parse(text, size, &err);
    const char *end = NULL;
    cJSON *theirs = cJSON_ParseWithLengthOpts(text, size, &end, 0);
    bool theirs_whole = theirs && end;
    for (const char *p = end; theirs_whole && p < text + size; p++)
        theirs_whole = strchr(" \t\r\n", *p) != NULL;
    if (!j) {
        FUZZ_CHECK(err.code == DAEBUS_EPARSE && err.message[0]);
        size_t at = 0;
        const char *b = strstr(err.message, "byte ");
        FUZZ_CHECK(b && sscanf(b, "byte %zu", &at) == 1 && at <= size);
        /* never refuses what cJSON accepts, but for a \u without 4 hex digits
         * (not JSON; cJSON reads it as a NUL that cuts the string) */
        FUZZ_CHECK(!theirs_whole || strstr(err.message, "4 hex digits"));
    } else {
        if (theirs_whole && !contains(text, size, "u0000"))
            FUZZ_CHECK(fuzz_json_equal_value(j, theirs));
        if (fuzz_json_finite(j)) {
            FUZZ_CHECK(fuzz_json_round_trips(j));
        } else {
            char *s = daebus_json_print(j, NULL); /* non-finite numbers print as null */
            FUZZ_CHECK(s && strstr(s, "null"));
            free(s);
        }
        cJSON_Delete(j);
    }
    cJSON_Delete(theirs);
    check_numbers(data, size);
    free(text);
    return 0;
}
