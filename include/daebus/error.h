/* daebus/error.h - the single error vocabulary of daebus-c.
 *
 * Every function that can fail returns 0 on success and one of the negative
 * DAEBUS_E* codes below on failure. Constructors return NULL and may fill an
 * optional daebus_error. There is no global "last error".
 *
 * Every function here is thread-safe.
 * Thread: callable from any thread.
 */
#ifndef DAEBUS_ERROR_H
#define DAEBUS_ERROR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && !defined(DAEBUS_STATIC_BUILD)
#define DAEBUS_API __attribute__((visibility("default")))
#else
#define DAEBUS_API
#endif

#define DAEBUS_UNUSED __attribute__((unused))

/* X(name, value, message): the one list that generates the enum and the strings. */
#define DAEBUS_ERRNO_MAP(X)                                                                        \
    X(OK, 0, "success")                                                                            \
    X(EINVAL, -1, "invalid argument")                                                              \
    X(ENOMEM, -2, "out of memory")                                                                 \
    X(EEXIST, -3, "already exists")                                                                \
    X(ENOENT, -4, "not found")                                                                     \
    X(EORDER, -5, "component attached in the wrong order")                                         \
    X(ESTATE, -6, "operation not valid in the current state")                                      \
    X(EIO, -7, "input/output error")                                                               \
    X(ETIMEDOUT, -8, "timed out")                                                                  \
    X(ECONN, -9, "connection failed or lost")                                                      \
    X(EREPLY, -10, "the peer answered with an error")                                              \
    X(EFULL, -11, "queue full or overloaded")                                                      \
    X(ETOOBIG, -12, "too large")                                                                   \
    X(EPARSE, -13, "malformed input")                                                              \
    X(EADDRINUSE, -14, "address already in use")                                                   \
    X(ECLOSED, -15, "closed or shutting down")                                                     \
    X(EHANDLER, -16, "handler failed")                                                             \
    X(EAUTH, -17, "authentication failed")                                                         \
    X(ENOLISTENER, -18, "no service is listening")

typedef enum daebus_errno {
#define DAEBUS__ERR_ENUM(name, value, msg) DAEBUS_##name = (value),
    DAEBUS_ERRNO_MAP(DAEBUS__ERR_ENUM)
#undef DAEBUS__ERR_ENUM
} daebus_errno;

/* Optional detail filled by constructors and parsers. */
typedef struct daebus_error {
    int code;          /* one of daebus_errno */
    char message[256]; /* human-readable detail, always NUL-terminated */
} daebus_error;

/* Returns: a static string describing code ("unknown error" for unknown codes).
 * Ownership: the string is static; do not free. Thread: callable from any thread. */
DAEBUS_API const char *daebus_strerror(int code);

/* Returns: the code's name, e.g. "DAEBUS_EIO" for DAEBUS_EIO, "DAEBUS_OK" for
 * 0, or "not a DAEBUS_E* code" for other values (a handler that returned -5
 * meaning errno EIO). Log lines about a failed handler show both:
 * "returned -7 (DAEBUS_EIO: input/output error)".
 * Ownership: the string is static; do not free. Thread: callable from any thread. */
DAEBUS_API const char *daebus_errname(int code);

/* Fills err (if not NULL) with code and a printf-style message; returns code.
 * Thread: callable from any thread. */
DAEBUS_API int daebus_error_set(daebus_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#ifdef __cplusplus
}
#endif
#endif
