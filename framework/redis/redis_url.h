/* redis_url.h - Redis URLs (internal): parsing, redacting, describing.
 *
 * The one place that knows the URL forms of the Redis transport:
 * redis://[[user]:password@]host[:port][/db] and
 * unix://[[user]:password@]/path[?db=N&password=P] and (Sentinel)
 * redis-sentinel://[[user]:password@]host:port[,host:port...]/master-name[/db]
 * [?sentinel_password=P] (up to DAEBUS__REDIS_MAX_SENTINELS sentinels; the
 * password is the master's; port defaults to 26379). Port defaults to 6379,
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

#define DAEBUS__REDIS_MAX_SENTINELS 8

/* One sentinel's address. */
typedef struct daebus__redis_hostport {
    char host[64]; /* IPv6 literals without brackets */
    int port;
} daebus__redis_hostport;

typedef struct daebus__redis_url {
    bool is_unix;       /* true: path is a Unix socket path */
    char host[256];     /* TCP host (IPv6 literals without brackets) */
    int port;           /* 1..65535 */
    char path[256];     /* Unix socket path */
    char username[128]; /* "" = none (AUTH password only) */
    char password[256]; /* "" = no AUTH */
    int db;             /* SELECT db when > 0 */
    /* Sentinel URLs (n_sentinels > 0): host and port above are unused; the
     * master's address is asked from the sentinels at each connect. */
    int n_sentinels;
    daebus__redis_hostport sentinels[DAEBUS__REDIS_MAX_SENTINELS];
    char master_name[128];
    char sentinel_password[128]; /* "" = the sentinels need no AUTH */
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
