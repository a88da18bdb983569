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

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

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
        /* cJSON prints with 15 digits when that reads back within about an
         * ulp, so a printed number may differ from the parsed one in its
         * last bit. */
        double x = a->valuedouble, y = b->valuedouble;
        double m = fabs(x) > fabs(y) ? fabs(x) : fabs(y);
        return x == y || fabs(x - y) <= m * 4 * DBL_EPSILON;
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

/* Returns: true if j, printed compactly and parsed again, equals itself. */
static inline int fuzz_json_round_trips(const cJSON *j)
{
    char *text = cJSON_PrintUnformatted(j);
    FUZZ_CHECK(text != NULL);
    cJSON *again = cJSON_Parse(text);
    int same = again && fuzz_json_equal_value(j, again);
    cJSON_Delete(again);
    free(text);
    return same;
}

#endif
