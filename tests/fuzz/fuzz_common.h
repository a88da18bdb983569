/* fuzz_common.h - small helpers shared by the libFuzzer targets.
 *
 * Each target defines LLVMFuzzerTestOneInput. Under clang with
 * -fsanitize=fuzzer the fuzzing engine calls it; in the normal build
 * replay_main.c calls it once per file of the seed corpus and of the
 * regression inputs, so every input ever checked in stays a test.
 *
 * Invariants are checked with FUZZ_CHECK, not assert(): assert() is compiled
 * out in the RelWithDebInfo build the replay tests run in.
 */
#ifndef DAEBUS_FUZZ_COMMON_H
#define DAEBUS_FUZZ_COMMON_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "daebus/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Returns: a malloc'd NUL-terminated copy of data[0..size) (never NULL: an
 * allocation failure aborts, there is nothing to fuzz without memory). */
static inline char *fuzz_strndup(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    FUZZ_CHECK(s != NULL);
    if (size)
        memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

/* Returns: true if s holds a NUL within its first cap bytes. */
static inline int fuzz_terminated(const char *s, size_t cap)
{
    return memchr(s, '\0', cap) != NULL;
}

/* Returns: true if every number in the tree is finite. A non-finite number
 * (e.g. 1e999 parses as inf) prints as null, so a round trip cannot keep it. */
static inline int fuzz_json_finite(const cJSON *j)
{
    for (; j; j = j->next) {
        if (cJSON_IsNumber(j) && !isfinite(j->valuedouble))
            return 0;
        if (j->child && !fuzz_json_finite(j->child))
            return 0;
    }
    return 1;
}

/* Returns: the nesting depth of arrays and objects in j (a scalar is 0). */
static inline int fuzz_json_depth(const cJSON *j)
{
    if (!j || !(cJSON_IsArray(j) || cJSON_IsObject(j)))
        return 0;
    int max = 0;
    for (const cJSON *c = j->child; c; c = c->next) {
        int d = fuzz_json_depth(c);
        if (d > max)
            max = d;
    }
    return max + 1;
}

/* Returns: true if a and b hold the same value (their own keys aside): same
 * types, member keys, values and order. Unlike cJSON_Compare, repeated keys
 * ({"a":1,"a":2}) are compared in order instead of by the first lookup. */
static inline int fuzz_json_equal_value(const cJSON *a, const cJSON *b)
{
    if (!a || !b)
        return a == b;
    if ((a->type & 0xFF) != (b->type & 0xFF))
        return 0;
    if (cJSON_IsNumber(a)) {
        /* daebus_json_print writes the shortest text that reads back to the
         * same double: the very same bits (-0.0 included). */
        double x = a->valuedouble, y = b->valuedouble;
        return memcmp(&x, &y, sizeof x) == 0;
    }
    if (cJSON_IsString(a))
        return strcmp(a->valuestring, b->valuestring) == 0;
    if (cJSON_IsArray(a) || cJSON_IsObject(a)) {
        const cJSON *x = a->child, *y = b->child;
        for (; x && y; x = x->next, y = y->next) {
            if (cJSON_IsObject(a) && (!x->string || !y->string || strcmp(x->string, y->string)))
                return 0;
            if (!fuzz_json_equal_value(x, y))
                return 0;
        }
        return x == NULL && y == NULL;
    }
    return 1;
}

/* Returns: true if j, printed with daebus_json_print and parsed again with
 * daebus_json_parse, equals itself exactly, and prints the same text again. */
static inline int fuzz_json_round_trips(const cJSON *j)
{
    size_t len = 0;
    char *text = daebus_json_print(j, &len);
    FUZZ_CHECK(text != NULL && len == strlen(text));
    cJSON *again = daebus_json_parse(text, len, NULL);
    int same = again && fuzz_json_equal_value(j, again);
    char *text2 = again ? daebus_json_print(again, NULL) : NULL;
    same = same && text2 && strcmp(text, text2) == 0;
    free(text2);
    cJSON_Delete(again);
    free(text);
    return same;
}

#endif
