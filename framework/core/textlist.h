/* textlist.h - small text helpers: comma-separated lists in header values
 * and options, hex digits (core layer).
 *
 * "GET, post ,PUT" holds three items: items are separated by commas, spaces
 * and tabs around them are not part of them, empty items are skipped. Used by
 * the HTTP layer (Connection, Transfer-Encoding, CORS lists) and the
 * WebSocket layer (allowed origins, upgrade paths).
 *
 * Pure functions, no allocation.
 * Thread: callable from any thread.
 */
#ifndef DAEBUS_CORE_TEXTLIST_H
#define DAEBUS_CORE_TEXTLIST_H

#include <stdbool.h>
#include <stddef.h>

/* The next item at *p: *item and *len (never 0) are set and *p moves past
 * it. Returns: false when no item is left. */
bool daebus__list_next(const char **p, const char **item, size_t *len);

/* Returns: true if list (may be NULL) holds item[0..len), compared byte for
 * byte or, with ignore_case, ASCII case-insensitively. An empty item is never
 * held. */
bool daebus__list_has(const char *list, const char *item, size_t len, bool ignore_case);

/* Returns: the value of the hex digit c (0-9, a-f, A-F), or -1. Used by the
 * percent-decoding of Redis URLs and the \u escapes of the JSON lexer. */
int daebus__hex_digit(int c);

#endif
