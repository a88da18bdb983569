/* strlist.h - comma-separated lists of names (core layer, internal).
 *
 * Options such as the WebSocket paths and allowed origins, and header values
 * such as Connection or Access-Control-Request-Headers, are lists like
 * "a, b,c": items separated by commas, spaces and tabs around them ignored.
 *
 * Thread: pure functions, callable from any thread.
 */
#ifndef DAEBUS_CORE_STRLIST_H
#define DAEBUS_CORE_STRLIST_H

#include <stdbool.h>
#include <stddef.h>

/* Returns: true if item[0..item_len) (not empty) is one of the items of the
 * NUL-terminated list, compared byte for byte, or ignoring ASCII case when
 * nocase is true. A NULL list or item has no items. */
bool daebus__strlist_has(const char *list, const char *item, size_t item_len, bool nocase);

#endif
