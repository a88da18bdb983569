/* http_parse.h - pure parsers for untrusted HTTP input (internal).
 *
 * Percent-decoding, query strings and urlencoded forms, UTF-8 validation,
 * path safety checks for static files, and small header-list helpers. Every
 * function here is pure (no globals, no I/O, no logging) so that the fuzzing
 * targets can call them directly.
 *
 * Every function is reentrant.
 * Thread: callable from any thread.
 */
#ifndef DAEBUS_HTTP_PARSE_H
#define DAEBUS_HTTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include "textlist.h"
#include <cjson/cJSON.h>

/* Returns: true if s[0..len) is well-formed UTF-8 (no overlongs, no
 * surrogates, nothing above U+10FFFF). NUL bytes are rejected too. */
bool daebus__http_utf8_valid(const char *s, size_t len);

/* Percent-decodes src[0..len) into dst (at least len + 1 bytes); with
 * plus_is_space, '+' becomes ' ' (forms and query strings). Malformed escapes
 * ("%4", "%zz") are kept literally. dst is NUL-terminated.
 * Returns: the decoded length. */
size_t daebus__http_percent_decode(const char *src, size_t len, char *dst, bool plus_is_space);

/* Splits a raw request path (starting with '/', still percent-encoded, no
 * query) into segments and percent-decodes each ('+' kept): "/a/b%2Fc" gives
 * "a" and "b/c"; "/" gives one empty segment. The decoded segments are
 * written NUL-terminated into buf (at least strlen(raw) + max bytes); segs[i]
 * points into buf. Returns: the number of segments, -1 when raw does not
 * start with '/' or has more than max segments, -2 when a decoded segment is
 * not valid UTF-8 or holds a NUL byte. */
int daebus__http_split_path(const char *raw, char *buf, const char **segs, size_t *lens,
                            size_t max);

/* Parses an application/x-www-form-urlencoded text (also a query string) into
 * object: each name=value pair decoded ('+' = space) and added as a string,
 * a later repeat of a name replacing the earlier one; "name" without '='
 * gives "". Empty names are skipped.
 * Returns: 0, -1 on invalid UTF-8 after decoding (object may be partly
 * filled), -2 on allocation failure. */
int daebus__http_parse_form(const char *text, size_t len, cJSON *object);

/* Checks a decoded relative path for static serving: rejects "..", ".",
 * empty segments are fine, backslashes, NUL, and segments starting with a dot
 * other than a plain file name like ".well-known" are allowed only when
 * allow_hidden. Returns: true if the path may be joined under a root. */
bool daebus__http_static_path_safe(const char *path, bool allow_hidden);

/* Returns: true if the media type of content_type (before ';', case-
 * insensitive) equals type, e.g. "application/json; charset=utf-8". */
bool daebus__http_media_type_is(const char *content_type, const char *type);

/* Returns: true if the media type is JSON: application/json or any
 * "application/<x>+json". */
bool daebus__http_media_type_is_json(const char *content_type);

/* Parses a decimal integer segment for <int:...> route parameters: optional
 * '-' then 1..18 digits, nothing else. Returns: true and *out on success. */
bool daebus__http_parse_int(const char *s, size_t len, long long *out);

/* Parses one Content-Length field value strictly: optional spaces or tabs
 * around 1..18 decimal digits, nothing else (no sign, no list, no
 * suffix). Returns: true and *out on success. */
bool daebus__http_parse_content_length(const char *s, long long *out);

/* The path (with its query, if any) of an absolute-form request target
 * ("http://host:8080/a/b?x=1" gives "/a/b?x=1"; "http://host" gives "").
 * Returns: a pointer into target, or NULL when target is not absolute-form
 * (an http, https, ws or wss scheme, "//", a non-empty authority). */
const char *daebus__http_absolute_path(const char *target);

/* Returns: a static MIME type for the file name's extension
 * ("application/octet-stream" when unknown). */
const char *daebus__http_mime_type(const char *path);

#endif
