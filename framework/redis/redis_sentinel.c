/* redis_sentinel.c - finding the master through Redis Sentinel.
 *
 * For a redis-sentinel:// URL each connect asks the sentinels in order
 * `SENTINEL get-master-addr-by-name <name>` (a short time-out each), connects
 * to the address given and checks `ROLE`: right after a failover a sentinel
 * may still name the old master, which then says "slave"; the next sentinel
 * is asked. No state is kept between connects but the last address seen per
 * master name, for the one log line per change.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "clock.h"
#include "daebus/log.h"
#include "ratelimit.h"
#include "redis_conn.h"
#include "redis_sentinel.h"
#include "utf8.h"

bool daebus__redis_reply_demoted(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_ERROR && r->str &&
           (strncmp(r->str, "READONLY", 8) == 0 || strncmp(r->str, "MASTERDOWN", 10) == 0 ||
            strncmp(r->str, "LOADING", 7) == 0);
}

/* ---- asking the sentinels ---- */

typedef struct master_addr {
    char host[256];
    int port;
} master_addr;

/* Appends "; what" to the list of failures in buf. */
static void note_failure(char *buf, size_t len, const daebus__redis_hostport *s, const char *what)
{
    size_t o = strlen(buf);
    bool v6 = strchr(s->host, ':') != NULL;
    if (o + 1 < len)
        snprintf(buf + o, len - o, "%s%s%s%s:%d %.*s", o ? "; " : "", v6 ? "[" : "", s->host,
                 v6 ? "]" : "", s->port, daebus__utf8_prec(what, 100), what);
}

/* Asks sentinel s. Returns: 0 with *out filled, or with why filled -2 (the
 * sentinel refused: AUTH refused, or NOAUTH) or -1 (any other failure). */
static int ask_sentinel(const daebus__redis_url *url, const daebus__redis_hostport *s,
                        master_addr *out, char *why, size_t wlen)
{
    struct timeval tv = daebus__redis_tv(DAEBUS__REDIS_SENTINEL_TIMEOUT);
    redisContext *c = redisConnectWithTimeout(s->host, s->port, tv);
    if (!c || c->err) {
        snprintf(why, wlen, "%s", c ? c->errstr : "out of memory");
        if (c)
            redisFree(c);
        return -1;
    }
    redisSetTimeout(c, tv);
    redisReply *r = NULL;
    int rc = -1;
    if (url->sentinel_password[0]) {
        r = redisCommand(c, "AUTH %s", url->sentinel_password);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            snprintf(why, wlen, "AUTH: %s", r ? r->str : c->errstr);
            rc = r ? -2 : -1; /* refused: the password is wrong, or these sentinels have none */
            goto fail;
        }
        freeReplyObject(r);
    }
    r = redisCommand(c, "SENTINEL get-master-addr-by-name %s", url->master_name);
    if (r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOAUTH", 6) == 0) {
        snprintf(why, wlen, "%s (set sentinel_password in the URL)", r->str);
        rc = -2;
        goto fail;
    }
    if (!r) {
        snprintf(why, wlen, "%s", c->errstr);
        goto fail;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(why, wlen, "%s", r->str);
        goto fail;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING) {
        snprintf(why, wlen, "does not know master '%s'", url->master_name);
        goto fail;
    }
    snprintf(out->host, sizeof out->host, "%s", r->element[0]->str);
    out->port = atoi(r->element[1]->str);
    freeReplyObject(r);
    redisFree(c);
    if (out->port > 0 && out->port < 65536)
        return 0;
    snprintf(why, wlen, "named a bad port for master '%s'", url->master_name);
    return -1;
fail:
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return rc;
}

/* ---- the log line per change ---- */

#define KNOWN 8

static pthread_mutex_t known_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    char name[128];
    char addr[280];
} known[KNOWN];
static daebus__ratelimit change_rl;
static atomic_uint epoch;

unsigned daebus__redis_sentinel_epoch(void)
{
    return atomic_load(&epoch);
}

/* Remembers addr as the master of name; logs a line when it changed. */
static void note_master(const char *name, const master_addr *m)
{
    char addr[280];
    snprintf(addr, sizeof addr, strchr(m->host, ':') ? "[%s]:%d" : "%s:%d", m->host, m->port);
    char was[280] = "";
    bool changed = false;
    pthread_mutex_lock(&known_lock);
    int slot = -1;
    for (int i = 0; i < KNOWN && slot < 0; i++)
        if (strcmp(known[i].name, name) == 0 || !known[i].name[0])
            slot = i;
    if (slot < 0)
        slot = KNOWN - 1; /* more master names than remembered: reuse the last slot */
    if (strcmp(known[slot].name, name) != 0 || strcmp(known[slot].addr, addr) != 0) {
        changed = true;
        snprintf(was, sizeof was, "%s",
                 strcmp(known[slot].name, name) == 0 ? known[slot].addr : "");
        snprintf(known[slot].name, sizeof known[slot].name, "%s", name);
        snprintf(known[slot].addr, sizeof known[slot].addr, "%s", addr);
    }
    pthread_mutex_unlock(&known_lock);
    if (!changed)
        return;
    if (was[0])
        atomic_fetch_add(&epoch, 1);
    long quiet = daebus__ratelimit_pass(&change_rl, daebus__now_mono(), 1.0);
    if (quiet < 0)
        return;
    if (was[0])
        DAEBUS_LOG_WARNF("redis", "Redis master for '%s' is now %s (was %s)%s", name, addr, was,
                         quiet > 1 ? " (earlier changes not logged)" : "");
    else
        DAEBUS_LOG_INFOF("redis", "Redis master for '%s' is %s (from Sentinel)", name, addr);
}

/* ---- connecting ---- */

/* Returns: 1 if c's ROLE says master, 0 if not (role named in why), -1 on error. */
static int is_master(redisContext *c, char *why, size_t wlen)
{
    redisReply *r = redisCommand(c, "ROLE");
    int rc = -1;
    if (!r)
        snprintf(why, wlen, "ROLE: %s", c->errstr);
    else if (r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
             r->element[0]->type == REDIS_REPLY_STRING) {
        rc = strcmp(r->element[0]->str, "master") == 0;
        if (!rc)
            snprintf(why, wlen, "ROLE says '%.*s', not master",
                     daebus__utf8_prec(r->element[0]->str, 20), r->element[0]->str);
    } else {
        snprintf(why, wlen, "ROLE: %s", r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    }
    if (r)
        freeReplyObject(r);
    return rc;
}

/* Connects to the master m names (a copy of url without its sentinels).
 * Returns: a context on a master, or NULL with why filled (*code: the error code). */
static redisContext *connect_master(const daebus__redis_url *url, const master_addr *m,
                                    double connect_timeout, double command_timeout, char *why,
                                    size_t wlen, int *code)
{
    daebus__redis_url direct = *url;
    direct.n_sentinels = 0;
    snprintf(direct.host, sizeof direct.host, "%s", m->host);
    direct.port = m->port;
    daebus_error e = {0};
    redisContext *c = daebus__redis_connect_direct(&direct, connect_timeout, 0, &e);
    if (!c) {
        snprintf(why, wlen, "%s", e.message);
        *code = e.code;
        return NULL;
    }
    redisSetTimeout(c, daebus__redis_tv(connect_timeout > 0 ? connect_timeout : 2.0));
    if (is_master(c, why, wlen) != 1) {
        redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, daebus__redis_tv(command_timeout > 0 ? command_timeout : 0));
    return c;
}

redisContext *daebus__redis_sentinel_connect(const daebus__redis_url *url, double connect_timeout,
                                             double command_timeout, daebus_error *err)
{
    char failures[600] = "";
    int code = DAEBUS_ECONN, refused = 0;
    for (int i = 0; i < url->n_sentinels; i++) {
        const daebus__redis_hostport *s = &url->sentinels[i];
        master_addr m;
        char why[300];
        int arc = ask_sentinel(url, s, &m, why, sizeof why);
        if (arc != 0) {
            note_failure(failures, sizeof failures, s, why);
            refused += arc == -2;
            continue;
        }
        redisContext *c =
            connect_master(url, &m, connect_timeout, command_timeout, why, sizeof why, &code);
        if (c) {
            note_master(url->master_name, &m);
            return c;
        }
        char named[600];
        snprintf(named, sizeof named, "named %s:%d: %s", m.host, m.port, why);
        note_failure(failures, sizeof failures, s, named);
        if (code == DAEBUS_EAUTH || code == DAEBUS_ENOMEM)
            break;
        code = DAEBUS_ECONN;
    }
    /* Every sentinel refused the password (none was down): a configuration
     * error, as a master's refused AUTH, not a lost connection to retry. */
    if (refused == url->n_sentinels)
        code = DAEBUS_EAUTH;
    daebus_error_set(err, code, "redis master '%s' not reachable through %d sentinel(s): %s",
                     url->master_name, url->n_sentinels, failures);
    return NULL;
}

bool daebus__redis_sentinel_moved(const daebus__redis_url *url, const redisContext *c)
{
    if (!url->n_sentinels || !c || !c->tcp.host)
        return false;
    /* At most two asked: the caller's thread (a subscriber's) waits meanwhile. */
    for (int i = 0; i < url->n_sentinels && i < 2; i++) {
        master_addr m;
        char why[300];
        if (ask_sentinel(url, &url->sentinels[i], &m, why, sizeof why) == 0)
            return strcmp(m.host, c->tcp.host) != 0 || m.port != c->tcp.port;
    }
    return false;
}
