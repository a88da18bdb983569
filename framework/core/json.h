/* json.h - internals of the JSON printer and parser (framework/core/json.c).
 *
 * The public pair is daebus_json_print / daebus_json_parse (daebus/json.h);
 * these pieces are exposed for the unit and fuzz tests.
 */
#ifndef DAEBUS_JSON_INTERNAL_H
#define DAEBUS_JSON_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include "daebus/json.h"

/* Room daebus__json_number needs, NUL included ("-1.2345678901234567e-308"). */
#define DAEBUS__JSON_NUMBER_MAX 32

/* Writes d as the shortest JSON text that strtod reads back to d (see
 * daebus/json.h): integers up to 2^53 plainly, -0.0 as "-0.0", NaN and
 * infinities as "null". Independent of the C locale.
 * Thread: safe. Returns: the length written into buf (NUL-terminated). */
size_t daebus__json_number(double d, char buf[DAEBUS__JSON_NUMBER_MAX]);

/* The input rewrite daebus_json_parse does before cJSON sees the text:
 * inside strings, "\u0000" becomes the bytes C0 80 and a lone surrogate
 * escape becomes "\ufffd"; everything else is copied. out needs len bytes
 * (the result is never longer). Thread: safe. Returns: the length written. */
size_t daebus__json_rewrite(const char *text, size_t len, char *out);

/* Nesting limits shared by every component that parses JSON from the network:
 * the default and the largest max_json_depth an option may ask for (cJSON
 * recurses once per level on the stack of the thread that parses). */
#define DAEBUS__JSON_DEFAULT_DEPTH 100
#define DAEBUS__JSON_MAX_DEPTH     512

/* Returns: true if the arrays and objects in buf[0..len) nest at most max
 * deep. Strings (and their escapes) are skipped; the text need not be valid
 * JSON, so this runs before the parser to refuse deep input cheaply.
 * Thread: safe. */
bool daebus__json_depth_ok(const char *buf, size_t len, int max);

#endif
