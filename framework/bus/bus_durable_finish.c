/* bus_durable_finish.c - the end of a durable request, and the entries
 * running meanwhile.
 *
 * Completion runs on the worker (or whichever thread sends the final reply):
 * one script on the publisher pool (bus_durable_lua.h) publishes the reply,
 * writes the done record, acknowledges and deletes the entry.
 *
 * While a request is queued or running here, its entry sits in the group's
 * pending list, and its idle time grows: past the visibility time-out the
 * XAUTOCLAIM of another replica would take it and run it a second time. So
 * every entry handed to the pool is listed (running_add) until it finishes
 * or is left (running_remove), and every visibility/3 the reader resets the
 * idle time of all of them with one XCLAIM <key> daebus <me> 0 <id...>
 * JUSTID (JUSTID: the delivery count is not raised, the attempt stays what
 * it is). A replica that dies stops refreshing, so its entries are claimed
 * after the visibility time-out as before.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "daebus/log.h"
#include "bus_durable_gc.h"
#include "bus_durable_lua.h"
#include "bus_durable_reader.h"
#include "clock.h"

#define LOGC                  DAEBUS__BUS_LOGC
#define DURABLE_DONE_MARGIN_S 3600
/* The largest final reply kept in the done record (a caller that lost its
 * connection gets it from there); larger ones cost that memory per done
 * record for its whole TTL, so they are kept as "1" (docs/messaging/durable.md). */
#define DAEBUS__DURABLE_DONE_REPLY_MAX_S "4096"

/* ---- the running list ---- */

int daebus__durable_running_add(daebus__durable *d, const char *id)
{
    int rc = 0;
    pthread_mutex_lock(&d->run_lock);
    if (d->nrunning == d->caprunning) {
        size_t cap = d->caprunning ? 2 * d->caprunning : 16;
        void *p = realloc(d->running, cap * sizeof *d->running);
        if (p) {
            d->running = p;
            d->caprunning = cap;
        }
    }
    if (d->nrunning < d->caprunning)
        snprintf(d->running[d->nrunning++], DAEBUS__DURABLE_ID_LEN, "%s", id);
    else
        rc = DAEBUS_ENOMEM;
    pthread_mutex_unlock(&d->run_lock);
    return rc;
}

void daebus__durable_running_remove(daebus__durable *d, const char *id)
{
    pthread_mutex_lock(&d->run_lock);
    for (size_t i = 0; i < d->nrunning; i++) {
        if (strcmp(d->running[i], id) == 0) {
            d->nrunning--;
            if (i != d->nrunning)
                memcpy(d->running[i], d->running[d->nrunning], DAEBUS__DURABLE_ID_LEN);
            break;
        }
    }
    pthread_mutex_unlock(&d->run_lock);
}

void daebus__durable_running_free(daebus__durable *d)
{
    free(d->running);
    d->running = NULL;
    d->nrunning = d->caprunning = 0;
    pthread_mutex_destroy(&d->run_lock);
}

bool daebus__durable_refresh(daebus__durable *d)
{
    enum { HEAD = 5 };
    pthread_mutex_lock(&d->run_lock);
    size_t n = d->nrunning;
    char(*ids)[DAEBUS__DURABLE_ID_LEN] = n ? malloc(n * sizeof *ids) : NULL;
    if (ids)
        memcpy(ids, d->running, n * sizeof *ids);
    pthread_mutex_unlock(&d->run_lock);
    const char **argv = ids ? malloc((HEAD + 1 + n) * sizeof *argv) : NULL;
    if (!argv) {
        free(ids);
        return true; /* nothing to refresh (or no memory: tried again next time) */
    }
    argv[0] = "XCLAIM";
    argv[1] = d->key;
    argv[2] = "daebus";
    argv[3] = d->consumer;
    argv[4] = "0";
    for (size_t i = 0; i < n; i++)
        argv[HEAD + i] = ids[i];
    argv[HEAD + n] = "JUSTID";
    redisReply *r = daebus__durable_call(d, (int)(HEAD + 1 + n), argv, NULL, 0);
    if (daebus__durable_is_error(r, NULL))
        DAEBUS_LOG_ERRORF(LOGC, "durable: XCLAIM (refresh) of %s refused: %s", d->key, r->str);
    if (r)
        freeReplyObject(r);
    free(argv);
    free(ids);
    return r != NULL;
}

/* ---- completion (any thread holding the request) ---- */

void daebus__durable_leave(daebus_bus_request *r)
{
    if (r && r->durable) {
        r->durable->finished = true;
        daebus__durable_running_remove(r->bus->durable, r->durable->entry);
    }
}

void daebus__durable_job_free(daebus__durable_job *j)
{
    if (!j)
        return;
    free(j->done_key);
    free(j);
}

/* Runs the completion script (and WAIT) on the publisher pool. Returns: the
 * script's reply (1 completed, 0 completed before) or a negative code. */
static int complete_cmd(daebus_bus *bus, const daebus__durable_job *j, const char *channel,
                        const char *msg, bool by_sha)
{
    daebus__durable *d = bus->durable;
    char ttl[24], nrep[16], wait_ms[24];
    long long left = j->deadline > 0 ? (j->deadline - daebus__durable_now_ms()) / 1000 : 0;
    snprintf(ttl, sizeof ttl, "%lld",
             (left > 0 ? left : 0) + daebus__durable_done_ttl(bus, DURABLE_DONE_MARGIN_S));
    const char *argv[] = {by_sha ? "EVALSHA" : "EVAL",
                          by_sha ? d->sha_complete : DAEBUS__DURABLE_LUA_COMPLETE,
                          "2",
                          j->done_key,
                          d->key,
                          channel,
                          msg,
                          ttl,
                          j->entry,
                          DAEBUS__DURABLE_DONE_REPLY_MAX_S};
    snprintf(nrep, sizeof nrep, "%d", bus->opts.durable_wait_replicas);
    snprintf(
        wait_ms, sizeof wait_ms, "%lld",
        (long long)(bus->opts.command_timeout * 500)); /* half: the read waits command_timeout */
    const char *wargv[] = {"WAIT", nrep, wait_ms};
    daebus__redis_cmd cmds[2] = {{10, argv, NULL}, {3, wargv, NULL}};
    redisReply *rep[2] = {NULL, NULL};
    int n = bus->opts.durable_wait_replicas > 0 ? 2 : 1;
    int rc = daebus__redis_pub_pipeline(bus->pub, cmds, n, rep);
    if (rc == 0) {
        if (daebus__durable_is_error(rep[0], "NOSCRIPT"))
            rc = 2; /* load it again */
        else if (rep[0]->type == REDIS_REPLY_INTEGER)
            rc = (int)rep[0]->integer;
        else
            rc = DAEBUS_EREPLY;
        if (n == 2 && rep[1]->type == REDIS_REPLY_INTEGER &&
            rep[1]->integer < bus->opts.durable_wait_replicas &&
            daebus__ratelimit_pass(&d->fail_log, daebus__now_mono(), 1.0) >= 0)
            DAEBUS_LOG_WARNF(LOGC, "durable: WAIT: %lld of %d Redis replicas acknowledged",
                             rep[1]->integer, bus->opts.durable_wait_replicas);
    }
    for (int i = 0; i < n; i++)
        if (rep[i])
            freeReplyObject(rep[i]);
    return rc;
}

int daebus__durable_finish(daebus_bus_request *r, bool error, const cJSON *payload)
{
    daebus__durable_job *j = r->durable;
    daebus_bus *bus = r->bus;
    if (!j || j->finished)
        return 0;
    j->finished = true;
    char *msg = payload && r->reply_channel
                    ? daebus__bus_build_response(error, payload, r->env.request_id, true)
                    : NULL;
    int rc = DAEBUS_ENOMEM;
    const char *channel = msg ? r->reply_channel : "";
    if (msg || !payload || !r->reply_channel) {
        rc = complete_cmd(bus, j, channel, msg ? msg : "", true);
        if (rc == 2)
            rc = complete_cmd(bus, j, channel, msg ? msg : "", false);
    }
    free(msg);
    /* Done or not, no longer refreshed: a failed completion runs again
     * after the visibility time-out. */
    daebus__durable_running_remove(bus->durable, j->entry);
    if (rc == 1 || rc == 0) {
        atomic_fetch_add(rc == 1 ? &bus->durable_completed : &bus->durable_duplicates, 1);
        if (rc == 1 && *channel) {
            atomic_fetch_add(&bus->replies_sent, 1);
            if (error)
                atomic_fetch_add(&bus->errors, 1);
        }
        return 0;
    }
    long missed = daebus__ratelimit_pass(&bus->durable->fail_log, daebus__now_mono(), 1.0);
    if (missed >= 0)
        DAEBUS_LOG_WARNF(LOGC,
                         "durable: could not complete entry %s (%s); it runs again after the "
                         "visibility time-out (%ld more not logged)",
                         j->entry, daebus_strerror(rc), missed);
    return rc < 0 ? rc : DAEBUS_EREPLY;
}
