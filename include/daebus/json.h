/* daebus/json.h - JSON text in and out without losing numbers or NUL characters.
 *
 * The framework prints and parses every JSON message on the wire (HTTP
 * replies, WebSocket envelopes, bus requests, replies and broadcasts) with
 * these two functions; services and tools that write or read JSON text
 * themselves should use them too, so that what they print reads back the same.
 *
 * Numbers (docs/protocol.md, "Numbers and strings"): a JSON number is a
 * double. daebus_json_print writes each as the shortest text that reads back
 * to the same double: integers up to 2^53 in magnitude as plain integers
 * (9007199254740992, never 9.007e+15), other values as Python's repr() does
 * (0.1, 0.30000000000000004, 1e+21, 5e-324); -0.0 as "-0.0". NaN and the
 * infinities are not JSON and print as null. Integers past 2^53 cannot be held
 * exactly by a double: send them as strings.
 *
 * Strings: cJSON keeps strings NUL-terminated, so daebus_json_parse stores an
 * escaped NUL ("\u0000") inside a string as the two bytes 0xC0 0x80 (the
 * "modified UTF-8" of Java and Android) and daebus_json_print writes those two
 * bytes back as "\u0000": a handler sees C0 80 where the sender had NUL, and
 * the string survives the round trip. A lone surrogate escape ("\ud800"
 * without its pair, or "\udc00" alone, which Python's json.dumps writes) is
 * read as U+FFFD, the replacement character, instead of failing the parse.
 *
 * Thread: callable from any thread.
 * Both functions are thread-safe (no global state; they never call
 * cJSON_GetErrorPtr).
 */
#ifndef DAEBUS_JSON_H
#define DAEBUS_JSON_H

#include <stddef.h>
#include <cjson/cJSON.h>
#include "daebus/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Prints item (and everything below it) as compact JSON: no spaces, object
 * members and array elements in their order, strings escaped (", \, control
 * characters; the bytes C0 80 as \u0000; other bytes as they are), numbers
 * as described above, cJSON_Raw items as their text, unchanged.
 * If len is not NULL it receives the length of the text (without its NUL).
 * item must not change meanwhile. Thread: callable from any thread.
 * Ownership: item is borrowed; the returned string is the caller's: free() it.
 * Returns: the NUL-terminated text, or NULL when item is NULL, holds an item
 * of invalid type, or memory runs out. */
DAEBUS_API char *daebus_json_print(const cJSON *item, size_t *len);

/* Parses exactly one JSON value from text[0..len) (text need not be
 * NUL-terminated). Whitespace and NUL bytes may follow the value; anything
 * else is an error. "\u0000" in a string becomes the bytes C0 80, a lone
 * surrogate escape becomes U+FFFD (see above); a "\u" without four hex
 * digits is refused (cJSON alone would read it as a NUL ending the
 * string). Numbers are read with strtod (exact; cJSON releases before 1.7.18, unless patched, refuse a number
 * token longer than 63 characters). Nesting is limited to cJSON's 1000
 * levels.
 * Thread: callable from any thread.
 * Ownership: text is borrowed; the returned tree is the caller's
 * (cJSON_Delete it). err, if not NULL, is filled on failure.
 * Returns: the parsed value, or NULL (err->code DAEBUS_EPARSE with
 * "invalid JSON near byte N" or "trailing data after the JSON value at byte
 * N", N counted in text; DAEBUS_EINVAL for a NULL text; DAEBUS_ENOMEM). */
DAEBUS_API cJSON *daebus_json_parse(const char *text, size_t len, daebus_error *err);

#ifdef __cplusplus
}
#endif

#endif
