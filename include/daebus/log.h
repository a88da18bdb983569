/* daebus/log.h - levelled, thread-safe logging to stderr.
 *
 * Each line carries a UTC timestamp, the level, the service name and the
 * component ("app", "http", "ws", "bus", "sched", or a user's own word):
 *
 *   2026-11-22T10:01:02.123Z INFO  chat_service [http] listening on 0.0.0.0:8080
 *
 * With DAEBUS_LOG_FORMAT=json in the environment (read once, at the first log
 * call or at daebus_log_set_format) every line is one JSON object:
 *   {"ts":"...","level":"info","service":"chat_service","component":"http","msg":"..."}
 *
 * Every line is exactly one line of well-formed UTF-8, whatever the message
 * holds: values from outside (a username, a path, an error text) are written
 * into messages as they are, and the logger escapes the service name, the
 * component and the message. In text lines a newline, carriage return or tab
 * becomes \n, \r or \t; other control characters (U+0000-001F, DEL,
 * U+0080-009F), U+2028/U+2029 and bytes that are not UTF-8 become \xNN (one
 * per byte); backslashes are not doubled (a text line is for reading, the
 * JSON format for tools). JSON lines use JSON escapes (\n, \u001b, \", \\,
 * and \u0080-\u009f, \u2028, \u2029) and the text \xNN (JSON "\\xNN")
 * for a byte that is not UTF-8, so each line parses as JSON.
 *
 * Every function here is thread-safe; a line is written with one write(2) so
 * lines from different threads never interleave.
 * Thread: callable from any thread.
 */
#ifndef DAEBUS_LOG_H
#define DAEBUS_LOG_H

#include <stdarg.h>
#include "daebus/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* DAEBUS_LOG_DEFAULT (0) stands for "not set" in option structs, so that a
 * zeroed struct means the default level, info. */
typedef enum daebus_log_level {
    DAEBUS_LOG_DEFAULT = 0,
    DAEBUS_LOG_DEBUG = 1,
    DAEBUS_LOG_INFO = 2,
    DAEBUS_LOG_WARNING = 3,
    DAEBUS_LOG_ERROR = 4,
    DAEBUS_LOG_CRITICAL = 5,
    DAEBUS_LOG_OFF = 6
} daebus_log_level;

typedef enum daebus_log_format { DAEBUS_LOG_TEXT = 0, DAEBUS_LOG_JSON = 1 } daebus_log_format;

/* Sets the minimum level written (DAEBUS_LOG_DEFAULT = info). Thread: callable from any thread. */
DAEBUS_API void daebus_log_set_level(daebus_log_level level);
DAEBUS_API daebus_log_level daebus_log_get_level(void);

/* Sets the output format, overriding DAEBUS_LOG_FORMAT. Thread: callable from any thread. */
DAEBUS_API void daebus_log_set_format(daebus_log_format format);

/* Sets the service name printed on every line. Ownership: the string is copied
 * (at most 127 bytes kept). Thread: callable from any thread. */
DAEBUS_API void daebus_log_set_service(const char *service);

/* Sends log lines to fd instead of 2 (stderr); tests use it. Thread: callable from any thread. */
DAEBUS_API void daebus_log_set_fd(int fd);

/* Parses "debug", "info", "warning"/"warn", "error", "critical", "off"
 * (case-insensitive). Returns: 0 and *out set, or DAEBUS_EINVAL.
 * Thread: callable from any thread. */
DAEBUS_API int daebus_log_level_parse(const char *text, daebus_log_level *out);

/* Returns: the lower-case name of level. Ownership: static string. */
DAEBUS_API const char *daebus_log_level_name(daebus_log_level level);

/* Writes one line if level is enabled. component may be NULL ("app").
 * The message is escaped as described above; a message longer than 4 KiB
 * (or 8 KiB once escaped) is cut on a character boundary and ends in "...".
 * Thread: callable from any thread. */
DAEBUS_API void daebus_log(daebus_log_level level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
DAEBUS_API void daebus_logv(daebus_log_level level, const char *component, const char *fmt,
                            va_list ap);

/* Returns: non-zero if a message at level would be written. Thread: callable from any thread. */
DAEBUS_API int daebus_log_is_enabled(daebus_log_level level);

#define DAEBUS_LOG_DEBUGF(comp, ...)                                                               \
    do {                                                                                           \
        if (daebus_log_is_enabled(DAEBUS_LOG_DEBUG))                                               \
            daebus_log(DAEBUS_LOG_DEBUG, comp, __VA_ARGS__);                                       \
    } while (0)
#define DAEBUS_LOG_INFOF(comp, ...)  daebus_log(DAEBUS_LOG_INFO, comp, __VA_ARGS__)
#define DAEBUS_LOG_WARNF(comp, ...)  daebus_log(DAEBUS_LOG_WARNING, comp, __VA_ARGS__)
#define DAEBUS_LOG_ERRORF(comp, ...) daebus_log(DAEBUS_LOG_ERROR, comp, __VA_ARGS__)

#ifdef __cplusplus
}
#endif
#endif
