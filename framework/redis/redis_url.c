/* redis_url.c - the one place that knows Redis URLs.
 *
 * Parsing is a pure function (no I/O, no allocation) so that it can be
 * fuzzed; messages quote the URL with its password masked.
 */
#include <stdio.h>
#include <string.h>
#include "redis_url.h"
#include "textlist.h"
#include "utf8.h"

/* ---- URL parsing ---- */

/* Appends [p, end) to buf at *o (len bytes) with the value of each
 * "password=" and "sentinel_password=" parameter (after '?' or '&') replaced by "***". */
static void put_masked(const char *p, const char *end, char *buf, size_t *o, size_t len)
{
    while (p < end && *p && *o + 1 < len) {
        buf[(*o)++] = *p;
        size_t skip = 0;
        if (*p == '?' || *p == '&')
            skip = strncmp(p + 1, "password=", 9) == 0             ? 9
                   : strncmp(p + 1, "sentinel_password=", 18) == 0 ? 18
                                                                   : 0;
        if (skip) {
            for (const char *q = p + 1; q < p + 1 + skip && *o + 1 < len; q++)
                buf[(*o)++] = *q;
            for (const char *q = "***"; *q && *o + 1 < len; q++)
                buf[(*o)++] = *q;
            p += 1 + skip;
            while (p < end && *p && *p != '&')
                p++;
            continue;
        }
        p++;
    }
}

void daebus__redis_url_redact(const char *url, char *buf, size_t len)
{
    if (!buf || !len)
        return;
    buf[0] = '\0';
    if (!url)
        return;
    size_t o = 0;
    const char *p = url;
    /* Userinfo: everything between "://" (or the start, without a scheme)
     * and the last '@' becomes "***". */
    const char *sep = strstr(url, "://");
    const char *at = strrchr(url, '@');
    const char *keep = sep && at && at > sep ? sep + 3 : url;
    if (at && at >= keep) {
        /* The part before may hold a password= parameter too (a URL that
         * is not one, e.g. "x?password=p://u@h"). */
        put_masked(url, keep, buf, &o, len);
        for (const char *q = "***"; *q && o + 1 < len; q++)
            buf[o++] = *q;
        p = at;
    }
    put_masked(p, p + strlen(p), buf, &o, len);
    buf[o] = '\0';
}

/* Copies [s, s+n) into dst (cap bytes) decoding %XX. Returns 0 or -1. */
static int copy_decoded(char *dst, size_t cap, const char *s, size_t n, int decode)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (decode && ch == '%') {
            if (i + 2 >= n)
                return -1;
            int h = daebus__hex_digit((unsigned char)s[i + 1]);
            int l = daebus__hex_digit((unsigned char)s[i + 2]);
            if (h < 0 || l < 0)
                return -1;
            ch = (char)(h * 16 + l);
            i += 2;
        }
        if (ch == '\0' || o + 1 >= cap)
            return -1;
        dst[o++] = ch;
    }
    dst[o] = '\0';
    return 0;
}

static int parse_num(const char *s, size_t n, long min, long max, long *out)
{
    if (n == 0 || n > 9)
        return -1;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* url in the error messages below is the redacted copy. */
static int parse_userinfo(const char *s, size_t n, daebus__redis_url *u, const char *url,
                          daebus_error *err)
{
    const char *colon = memchr(s, ':', n);
    int rc;
    if (colon) {
        rc = copy_decoded(u->username, sizeof u->username, s, (size_t)(colon - s), 1);
        if (rc == 0)
            rc = copy_decoded(u->password, sizeof u->password, colon + 1,
                              n - (size_t)(colon - s) - 1, 1);
    } else {
        rc = copy_decoded(u->password, sizeof u->password, s, n, 1);
    }
    if (rc != 0)
        return daebus_error_set(
            err, DAEBUS_EINVAL,
            "redis URL '%.*s': bad user or password (too long or bad %%-escape)",
            daebus__utf8_prec(url, 64), url);
    return 0;
}

static int unsupported_param(const char *q, size_t n, const char *url, daebus_error *err)
{
    return daebus_error_set(err, DAEBUS_EINVAL,
                            "redis URL '%.*s': unsupported query parameter '%.*s'",
                            daebus__utf8_prec(url, 64), url, (int)daebus__utf8_cut(q, n, 32), q);
}

/* One query parameter [q, q+n) of a unix:// URL: db=N, password=P. */
static int unix_param(const char *q, size_t n, daebus__redis_url *u, const char *url,
                      daebus_error *err)
{
    long v;
    if (n > 3 && strncmp(q, "db=", 3) == 0 && parse_num(q + 3, n - 3, 0, 1000000, &v) == 0)
        u->db = (int)v;
    else if (n > 9 && strncmp(q, "password=", 9) == 0 &&
             copy_decoded(u->password, sizeof u->password, q + 9, n - 9, 1) == 0)
        return 0;
    else if (strncmp(q, "password=", 9) == 0)
        /* Not quoted: the value is the secret, and the message may be logged. */
        return daebus_error_set(
            err, DAEBUS_EINVAL,
            "redis URL '%.*s': bad password parameter (empty, too long or bad %%-escape)",
            daebus__utf8_prec(url, 64), url);
    else
        return unsupported_param(q, n, url, err);
    return 0;
}

/* One query parameter [q, q+n) of a redis-sentinel:// URL: sentinel_password=P. */
static int sentinel_param(const char *q, size_t n, daebus__redis_url *u, const char *url,
                          daebus_error *err)
{
    if (strncmp(q, "sentinel_password=", 18) == 0) {
        if (n == 18 ||
            copy_decoded(u->sentinel_password, sizeof u->sentinel_password, q + 18, n - 18, 1) != 0)
            return daebus_error_set(err, DAEBUS_EINVAL,
                                    "redis URL '%.*s': bad sentinel_password parameter (empty, "
                                    "too long or bad %%-escape)",
                                    daebus__utf8_prec(url, 64), url);
        return 0;
    }
    if (strncmp(q, "password=", 9) == 0)
        return daebus_error_set(err, DAEBUS_EINVAL,
                                "redis URL '%.*s': the master's password goes before '@'; the "
                                "sentinels' is sentinel_password=",
                                daebus__utf8_prec(url, 64), url);
    return unsupported_param(q, n, url, err);
}

/* The query parameters after '?', each checked by param. */
static int parse_query(const char *q, daebus__redis_url *u, const char *url, daebus_error *err,
                       int (*param)(const char *, size_t, daebus__redis_url *, const char *,
                                    daebus_error *))
{
    while (*q) {
        const char *end = strchr(q, '&');
        size_t n = end ? (size_t)(end - q) : strlen(q);
        int rc = param(q, n, u, url, err);
        if (rc != 0)
            return rc;
        q += n;
        if (*q == '&')
            q++;
    }
    return 0;
}

/* An error naming the (redacted) URL shown. Returns: DAEBUS_EINVAL. */
static int bad_url(daebus_error *err, const char *shown, const char *why)
{
    return daebus_error_set(err, DAEBUS_EINVAL, "redis URL '%.*s': %s",
                            daebus__utf8_prec(shown, 64), shown, why);
}

/* unix://[[user]:password@]/path[?db=N&password=P] */
static int parse_unix(const char *rest, daebus__redis_url *u, const char *shown, daebus_error *err)
{
    const char *slash = strchr(rest, '/');
    if (!slash)
        return bad_url(err, shown, "expected unix:///absolute/path");
    if (slash != rest) {
        const char *at = memchr(rest, '@', (size_t)(slash - rest));
        if (!at || at + 1 != slash)
            return bad_url(err, shown, "expected unix:///absolute/path");
        if (parse_userinfo(rest, (size_t)(at - rest), u, shown, err) != 0)
            return DAEBUS_EINVAL;
    }
    const char *q = strchr(slash, '?');
    size_t n = q ? (size_t)(q - slash) : strlen(slash);
    if (n < 2 || copy_decoded(u->path, sizeof u->path, slash, n, 0) != 0)
        return bad_url(err, shown, "Unix socket path empty or too long");
    if (q && parse_query(q + 1, u, shown, err, unix_param) != 0)
        return DAEBUS_EINVAL;
    return 0;
}

/* host[:port] or [v6]:port in [hp, tail). */
static int parse_host_port(const char *hp, const char *tail, daebus__redis_url *u,
                           const char *shown, daebus_error *err)
{
    size_t hlen = (size_t)(tail - hp);
    const char *hs = hp;
    size_t hn;
    const char *portp = NULL;
    if (*hp == '[') {
        const char *close = memchr(hp, ']', hlen);
        if (!close)
            return bad_url(err, shown, "unclosed '['");
        hs = hp + 1;
        hn = (size_t)(close - hs);
        if (close + 1 < tail) {
            if (close[1] != ':')
                return bad_url(err, shown, "junk after ']'");
            portp = close + 2;
        }
    } else {
        const char *colon = memchr(hp, ':', hlen);
        hn = colon ? (size_t)(colon - hp) : hlen;
        if (colon)
            portp = colon + 1;
    }
    if (hn == 0)
        snprintf(u->host, sizeof u->host, "127.0.0.1");
    else if (copy_decoded(u->host, sizeof u->host, hs, hn, 0) != 0)
        return bad_url(err, shown, "host too long");
    long p;
    if (portp && parse_num(portp, (size_t)(tail - portp), 1, 65535, &p) != 0)
        return bad_url(err, shown, "port must be a number 1-65535");
    if (portp)
        u->port = (int)p;
    return 0;
}

/* The userinfo before the last '@' of rest, if any, into u. Returns: what
 * follows it, or NULL (err filled). */
static const char *after_userinfo(const char *rest, daebus__redis_url *u, const char *shown,
                                  daebus_error *err)
{
    const char *at = strrchr(rest, '@');
    if (!at)
        return rest;
    return parse_userinfo(rest, (size_t)(at - rest), u, shown, err) == 0 ? at + 1 : NULL;
}

/* The db number at db (up to '?' or the end; empty = 0) into u. Returns: what
 * follows it, or NULL (err filled). */
static const char *parse_db(const char *db, daebus__redis_url *u, const char *shown,
                            daebus_error *err)
{
    size_t dn = strcspn(db, "?");
    long v;
    if (dn > 0 && parse_num(db, dn, 0, 1000000, &v) != 0) {
        bad_url(err, shown, "database must be a number");
        return NULL;
    }
    if (dn > 0)
        u->db = (int)v;
    return db + dn;
}

/* redis://[[user]:password@]host[:port][/db] */
static int parse_tcp(const char *rest, daebus__redis_url *u, const char *shown, daebus_error *err)
{
    const char *hp = after_userinfo(rest, u, shown, err);
    if (!hp)
        return DAEBUS_EINVAL;
    const char *tail = hp + strcspn(hp, "/?");
    if (parse_host_port(hp, tail, u, shown, err) != 0)
        return DAEBUS_EINVAL;
    if (*tail == '/' && !(tail = parse_db(tail + 1, u, shown, err)))
        return DAEBUS_EINVAL;
    if (*tail == '?')
        return bad_url(err, shown, "query parameters are not supported");
    return 0;
}

/* ---- redis-sentinel:// ---- */

/* The comma-separated sentinels in [hp, end) into u->sentinels. */
static int parse_sentinel_list(const char *hp, const char *end, daebus__redis_url *u,
                               const char *shown, daebus_error *err)
{
    while (hp <= end) {
        const char *comma = memchr(hp, ',', (size_t)(end - hp));
        const char *stop = comma ? comma : end;
        if (stop == hp)
            return bad_url(err, shown, "empty sentinel address");
        if (u->n_sentinels == DAEBUS__REDIS_MAX_SENTINELS)
            return bad_url(err, shown, "more than 8 sentinels");
        daebus__redis_url one;
        memset(&one, 0, sizeof one);
        one.port = 26379;
        if (parse_host_port(hp, stop, &one, shown, err) != 0)
            return DAEBUS_EINVAL;
        daebus__redis_hostport *s = &u->sentinels[u->n_sentinels++];
        size_t hn = strlen(one.host);
        if (hn >= sizeof s->host || strpbrk(one.host, ",/?@"))
            return bad_url(err, shown, "bad sentinel host");
        memcpy(s->host, one.host, hn + 1);
        s->port = one.port;
        if (!comma)
            break;
        hp = comma + 1;
    }
    return 0;
}

/* The master's name: letters, digits, '.', '_', '-' (1 to 127). */
static int parse_master_name(const char *s, size_t n, daebus__redis_url *u, const char *shown,
                             daebus_error *err)
{
    if (n == 0 || n >= sizeof u->master_name)
        return bad_url(err, shown, "expected /<master-name> after the sentinels (1-127 chars)");
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return bad_url(err, shown, "master name: letters, digits, '.', '_' and '-' only");
    }
    memcpy(u->master_name, s, n);
    u->master_name[n] = '\0';
    return 0;
}

/* redis-sentinel://[[user]:password@]host:port[,host:port...]/master[/db][?sentinel_password=P] */
static int parse_sentinel(const char *rest, daebus__redis_url *u, const char *shown,
                          daebus_error *err)
{
    const char *hp = after_userinfo(rest, u, shown, err);
    if (!hp)
        return DAEBUS_EINVAL;
    const char *tail = hp + strcspn(hp, "/?");
    if (parse_sentinel_list(hp, tail, u, shown, err) != 0)
        return DAEBUS_EINVAL;
    if (*tail != '/')
        return bad_url(err, shown, "expected /<master-name> after the sentinels");
    const char *name = tail + 1;
    size_t nn = strcspn(name, "/?");
    if (parse_master_name(name, nn, u, shown, err) != 0)
        return DAEBUS_EINVAL;
    tail = name + nn;
    if (*tail == '/' && !(tail = parse_db(tail + 1, u, shown, err)))
        return DAEBUS_EINVAL;
    /* host/port: the first sentinel, until a connect asks for the master. */
    snprintf(u->host, sizeof u->host, "%s", u->sentinels[0].host);
    u->port = u->sentinels[0].port;
    return *tail == '?' ? parse_query(tail + 1, u, shown, err, sentinel_param) : 0;
}

int daebus__redis_url_parse(const char *url, daebus__redis_url *out, daebus_error *err)
{
    if (!url || !out)
        return daebus_error_set(err, DAEBUS_EINVAL, "redis URL: NULL argument");
    /* Messages quote the URL without its password (they end up in logs). */
    char shown[96];
    daebus__redis_url_redact(url, shown, sizeof shown);
    daebus__redis_url u;
    memset(&u, 0, sizeof u);
    u.port = 6379;
    int rc;
    if (strncmp(url, "redis://", 8) == 0) {
        rc = parse_tcp(url + 8, &u, shown, err);
    } else if (strncmp(url, "unix://", 7) == 0) {
        u.is_unix = true;
        rc = parse_unix(url + 7, &u, shown, err);
    } else if (strncmp(url, "redis-sentinel://", 17) == 0) {
        rc = parse_sentinel(url + 17, &u, shown, err);
    } else if (strncmp(url, "rediss://", 9) == 0) {
        rc = bad_url(err, shown,
                     "TLS (rediss://) is not supported; use redis:// (e.g. through a local TLS "
                     "tunnel) or unix://");
    } else {
        rc = bad_url(err, shown,
                     "unsupported scheme (use redis://[:password@]host:port[/db], unix:///path or "
                     "redis-sentinel://host:port[,host:port...]/master-name[/db])");
    }
    if (rc == 0)
        *out = u;
    return rc;
}

/* redis-sentinel://[:***@]h1:p1,h2:p2/master/db */
static void describe_sentinel(const daebus__redis_url *url, char *buf, size_t len)
{
    int o = snprintf(buf, len, "redis-sentinel://%s", url->password[0] ? ":***@" : "");
    for (int i = 0; i < url->n_sentinels && o >= 0 && (size_t)o < len; i++) {
        const daebus__redis_hostport *s = &url->sentinels[i];
        bool v6 = strchr(s->host, ':') || s->host[0] == '[';
        o += snprintf(buf + o, len - (size_t)o, "%s%s%s%s:%d", i ? "," : "", v6 ? "[" : "", s->host,
                      v6 ? "]" : "", s->port);
    }
    if (o >= 0 && (size_t)o < len)
        snprintf(buf + o, len - (size_t)o, "/%s/%d", url->master_name, url->db);
}

void daebus__redis_url_describe(const daebus__redis_url *url, char *buf, size_t len)
{
    if (!len)
        return;
    if (url->n_sentinels > 0)
        describe_sentinel(url, buf, len);
    else if (url->is_unix)
        snprintf(buf, len, "unix://%s%s", url->password[0] ? ":***@" : "", url->path);
    else
        snprintf(buf, len, "redis://%s%s:%d/%d", url->password[0] ? ":***@" : "", url->host,
                 url->port, url->db);
}

int daebus_redis_url_check(const char *url, daebus_error *err)
{
    daebus__redis_url u;
    return daebus__redis_url_parse(url, &u, err);
}
