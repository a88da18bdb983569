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

/* ---- the print buffer ----
 *
 * daebus_json_print's growing buffer, for printers that write text of their
 * own around printed values (the WebSocket envelopes): no cJSON tree is built
 * for the text around, and the caller may keep room in front of the text
 * (front bytes, left uninitialised) to turn the allocation into its own
 * structure without a copy.
 *
 * Ownership: one buffer, one owner: the functions are reentrant (no state
 * outside *b) but a buffer is never shared. Every append after a failure
 * (allocation, an item of invalid type) is a no-op; finish reports it.
 * Thread: safe (distinct buffers). */
typedef struct daebus__json_out {
    char *p;         /* malloc'd, NULL until the first append */
    size_t len, cap; /* len counts the front bytes too */
    size_t front;
    bool failed;
} daebus__json_out;

/* Starts an empty buffer with front bytes kept before the text. */
void daebus__json_out_init(daebus__json_out *b, size_t front);
/* Appends n bytes as they are (JSON syntax, keys known to need no escape). */
void daebus__json_out_raw(daebus__json_out *b, const char *s, size_t n);
/* Appends s as a JSON string literal, escaped as daebus_json_print does. */
void daebus__json_out_string(daebus__json_out *b, const char *s);
/* Appends item (not its siblings) as daebus_json_print prints it; item NULL
 * or of invalid type fails the buffer. Returns: false once failed. */
bool daebus__json_out_value(daebus__json_out *b, const cJSON *item);
/* Ends the text with a NUL and hands the allocation over (b is reset).
 * Returns: the allocation (front bytes, then the text; free() it), NULL if
 * anything failed (all freed). *len (may be NULL) gets the text's length,
 * front not included. */
char *daebus__json_out_finish(daebus__json_out *b, size_t *len);

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
