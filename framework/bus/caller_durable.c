/* caller_durable.c - the caller's side of durable actions: the XADD.
 *
 * A durable request is the pub/sub request envelope, unchanged, added to the
 * service's request stream with its deadline (wall clock, ms since epoch),
 * where the service's replicas read it through the consumer group "daebus"
 * (bus_durable.c). The reply comes back on the caller's reply channel as for
 * pub/sub, so the pending table of caller.c does not know the difference.
 */
#include <stdio.h>
#include <string.h>
#include "daebus/log.h"
#include "bus_internal.h"
#include "clock.h"
#include "redis_pub.h"
#include "utf8.h"

#define LOGC "caller"

/* One XADD [+ WAIT] round trip. Returns: as daebus__caller_queue. */
static int queue_once(daebus__redis_pub *pub, const char *key, const char *text,
                      const char *deadline, double timeout, int wait_replicas, char *why,
                      size_t why_size)
{
    const char *xadd[] = {"XADD", key, "*", "req", text, "deadline", deadline};
    size_t xlen[] = {4, strlen(key), 1, 3, strlen(text), 8, strlen(deadline)};
    char nrep[16], ms[24];
    snprintf(nrep, sizeof nrep, "%d", wait_replicas);
    /* Half the request's time-out at most (the rest is for the reply), and half
     * the pool's command time-out (5 s), so the read never gives up first: a
     * WAIT read as a lost connection would queue the request twice. */
    double wait_s = timeout / 2 < 2.5 ? timeout / 2 : 2.5;
    snprintf(ms, sizeof ms, "%lld", (long long)(wait_s * 1000.0) + 1);
    const char *wait[] = {"WAIT", nrep, ms};
    size_t wlen[] = {4, strlen(nrep), strlen(ms)};
    daebus__redis_cmd cmds[2] = {{7, xadd, xlen}, {3, wait, wlen}};
    redisReply *r[2] = {NULL, NULL};
    int n = wait_replicas > 0 ? 2 : 1;
    int rc = daebus__redis_pub_pipeline(pub, cmds, n, r);
    if (rc != 0)
        return rc == DAEBUS_ECLOSED ? DAEBUS_ECONN : rc;
    if (r[0]->type == REDIS_REPLY_ERROR) {
        daebus__utf8_snprintf(why, why_size, "request could not be queued: %.*s",
                              daebus__utf8_prec(r[0]->str, 300), r[0]->str);
        rc = DAEBUS_EIO;
    } else {
        rc = 1;
        if (n == 2 && (r[1]->type != REDIS_REPLY_INTEGER || r[1]->integer < wait_replicas))
            DAEBUS_LOG_DEBUGF(LOGC, "WAIT %d: only %lld replica(s) acknowledged %s", wait_replicas,
                              r[1]->type == REDIS_REPLY_INTEGER ? r[1]->integer : -1LL, key);
    }
    for (int i = 0; i < n; i++)
        freeReplyObject(r[i]);
    return rc;
}

int daebus__caller_queue(daebus__redis_pub *pub, const char *service, const char *text,
                         double timeout, int wait_replicas, char *why, size_t why_size)
{
    char key[300], deadline[24];
    if (snprintf(key, sizeof key, "daebus:%s:requests", service) >= (int)sizeof key) {
        snprintf(why, why_size, "request could not be queued: service name too long");
        return DAEBUS_EIO;
    }
    snprintf(deadline, sizeof deadline, "%lld",
             (long long)((daebus__now_wall() + timeout) * 1000.0));
    int rc = queue_once(pub, key, text, deadline, timeout, wait_replicas, why, why_size);
    if (rc == DAEBUS_ECONN) /* once more on a fresh connection: same request_id */
        rc = queue_once(pub, key, text, deadline, timeout, wait_replicas, why, why_size);
    return rc;
}
