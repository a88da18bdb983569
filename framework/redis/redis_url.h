/* redis_url.h - Redis URLs (internal): parsing, redacting, describing.
 *
 * The one place that knows the URL forms of the Redis transport:
 * redis://[[user]:password@]host[:port][/db] and
 * unix://[[user]:password@]/path[?db=N&password=P]. Port defaults to 6379,
 * db to 0; percent-escapes in user and password are decoded; rediss:// (TLS)
 * is refused with a clear message. The public face is
 * daebus_redis_url_check() (bus.h).
 *
 * Thread: any thread (pure functions).
 */
#ifndef DAEBUS_REDIS_URL_H
#define DAEBUS_REDIS_URL_H

#include <stdbool.h>
#include <stddef.h>
#include "daebus/bus.h"

typedef struct daebus__redis_url {
    bool is_unix;       /* true: path is a Unix socket path */
    char host[256];     /* TCP host (IPv6 literals without brackets) */
    int port;           /* 1..65535 */
    char path[256];     /* Unix socket path */
    char username[128]; /* "" = none (AUTH password only) */
    char password[256]; /* "" = no AUTH */
    int db;             /* SELECT db when > 0 */
} daebus__redis_url;

/* Parses url into out (no I/O, no allocation). Returns: 0, or DAEBUS_EINVAL
 * with err->message saying why (the URL quoted without its password). */
int daebus__redis_url_parse(const char *url, daebus__redis_url *out, daebus_error *err);

/* Copies the URL text into buf (len bytes, truncated) with its password
 * replaced by "***" (userinfo and a password= query parameter), so that error
 * messages can quote what was given without leaking the secret. */
void daebus__redis_url_redact(const char *url, char *buf, size_t len);

/* A description of url without its password, for log lines. */
void daebus__redis_url_describe(const daebus__redis_url *url, char *buf, size_t len);

#endif
