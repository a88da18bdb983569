/* utf8.h - UTF-8 checks, cuts on character boundaries and escaping (framework-internal).
 *
 * The one place the framework decides what is a character: the WebSocket and
 * HTTP validators, every cut of a text that may come from outside (error
 * texts, names in log lines) and the log's escaping all use these.
 *
 * "Well-formed" is RFC 3629 / Unicode table 3-7: no overlong forms, no
 * surrogates, nothing above U+10FFFF. NUL is a character like any other here
 * (callers that refuse it check for it themselves).
 *
 * Thread: every function is pure and thread-safe.
 */
#ifndef DAEBUS_UTF8_H
#define DAEBUS_UTF8_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

/* Returns: the length (1-4) of the well-formed character that s[0..n)
 * starts with, or 0 if it does not start with one (n == 0, a stray or
 * invalid byte, or a character cut short by n). */
size_t daebus__utf8_char(const char *s, size_t n);

/* Returns: true if s[0..n) is well-formed UTF-8. */
bool daebus__utf8_valid(const char *s, size_t n);

/* Returns: the largest length <= max (and <= n) at which s[0..n) can be cut
 * without splitting a character: n itself if n <= max, otherwise max moved
 * back (by at most 3 bytes) to the start of the character it falls inside.
 * A cut of well-formed text is well-formed. */
size_t daebus__utf8_cut(const char *s, size_t n, size_t max);

/* The precision for printf's "%.*s" that prints at most max bytes of the
 * NUL-terminated s without splitting a character: replaces "%.200s" with
 * "%.*s", daebus__utf8_prec(s, 200), s. s may be NULL (returns 0).
 * Returns: a length <= max (max above INT_MAX counts as INT_MAX). */
int daebus__utf8_prec(const char *s, size_t max);

/* Drops a character left incomplete at the end of s[0..n) (text that was cut
 * by bytes) and NUL-terminates s at the new length (s needs n + 1 bytes).
 * Returns: the new length (n, or up to 3 bytes less). */
size_t daebus__utf8_trim(char *s, size_t n);

/* vsnprintf/snprintf that, when the text does not fit, cut it on a character
 * boundary (the result may then be up to 3 bytes shorter than cap - 1).
 * Returns: what vsnprintf returns (the untruncated length, or negative). */
int daebus__utf8_vsnprintf(char *buf, size_t cap, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
int daebus__utf8_snprintf(char *buf, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Escapes s[0..n) for a text log line into out[0..cap) (always
 * NUL-terminated when cap > 0): \n, \r and \t as those two characters, other
 * control characters (C0, DEL, C1), U+2028/U+2029 and every byte that is not
 * part of a well-formed character as \xNN (one per byte); the rest as it is.
 * The output is one line of well-formed UTF-8 without control characters.
 * Stops before an escape or a character that does not fit (none is split).
 * *used (may be NULL) receives how many bytes of s were written out.
 * Returns: the length written (without the NUL). */
size_t daebus__utf8_escape_text(char *out, size_t cap, const char *s, size_t n, size_t *used);

/* As daebus__utf8_escape_text, for the inside of a JSON string: ", \ and
 * control characters escaped as JSON (\n, \r, \t, \b, \f, \u00XX; C1, DEL
 * and U+2028/U+2029 as \uXXXX too), a byte that is not part of a
 * well-formed character as the text \xNN (the JSON "\\xNN"). The output,
 * between quotes, is a valid JSON string of well-formed UTF-8. */
size_t daebus__utf8_escape_json(char *out, size_t cap, const char *s, size_t n, size_t *used);

#endif
