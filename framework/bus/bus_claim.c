/* bus_claim.c - exactly once for the bus: which replica takes a message.
 *
 * The service channel (and each LISTEN .once channel) is "claimed": the
 * subscriber thread asks the cluster's gate (framework/cluster/cluster_gate.c)
 * about each of its messages in arrival order and numbers them per channel
 * since the last join; a worker then claims the message by that number
 * before it runs a handler or sends an error reply, unless the gate said
 * solo. docs/replicas.md ("Actions exactly once") has the reasoning.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "daebus/log.h"
#include "bus_internal.h"
#include "clock.h"
#include "hash.h"

#define LOGC DAEBUS__BUS_LOGC

bool daebus__bus_gate(daebus_bus *bus, daebus__bus_pos *p, const char *channel,
                      daebus__bus_claim *cl)
{
    cl->mode = daebus__cluster_gate(atomic_load(&bus->cluster), &cl->t);
    if (cl->mode == DAEBUS__GATE_IGNORE)
        return false;
    if (p->serial != cl->t.serial) { /* a join: every position starts again */
        p->serial = cl->t.serial;
        p->next = 0;
    }
    cl->pos = p->next++;
    cl->scope[0] = '\0';
    if (channel && cl->mode == DAEBUS__GATE_CLAIM)
        snprintf(cl->scope, sizeof cl->scope, "l:%016llx",
                 (unsigned long long)daebus__hash_str(channel));
    return true;
}

bool daebus__bus_take(daebus_bus *bus, const daebus__bus_claim *cl)
{
    if (cl->mode != DAEBUS__GATE_CLAIM)
        return true;
    daebus__cluster *c = atomic_load(&bus->cluster);
    return c && daebus__cluster_claim(c, &cl->t, cl->scope[0] ? cl->scope : NULL, cl->pos) == 1;
}

/* ---- error replies made without a request ---- */

typedef struct error_job {
    daebus_bus *bus;
    daebus__bus_claim claim;
    cJSON *request_id;
    char *channel;
    char text[200];
} error_job;

static void error_job_free(void *arg)
{
    error_job *j = arg;
    cJSON_Delete(j->request_id);
    free(j->channel);
    free(j);
}

static void error_job_run(void *arg)
{
    error_job *j = arg;
    if (daebus__bus_take(j->bus, &j->claim))
        daebus__bus_send_error(j->bus, j->channel, j->request_id, j->text);
    error_job_free(j);
}

void daebus__bus_error_once(daebus_bus *bus, const daebus__bus_claim *cl, const char *channel,
                            const cJSON *request_id, const char *text)
{
    if (cl->mode != DAEBUS__GATE_CLAIM) {
        daebus__bus_send_error(bus, channel, request_id, text);
        return;
    }
    error_job *j = calloc(1, sizeof *j);
    if (!j)
        return;
    j->bus = bus;
    j->claim = *cl;
    j->request_id = cJSON_Duplicate(request_id, 1);
    j->channel = strdup(channel);
    snprintf(j->text, sizeof j->text, "%s", text);
    int rc = j->channel && j->request_id
                 ? daebus__pool_submit(bus->pool, error_job_run, error_job_free, j)
                 : DAEBUS_ENOMEM;
    if (rc == DAEBUS_EFULL)
        atomic_fetch_add(&bus->overloads, 1);
    if (rc != 0)
        error_job_free(j);
}

void daebus__bus_overloaded(daebus_bus *bus, daebus_bus_request *r)
{
    atomic_fetch_add(&bus->overloads, 1);
    bool claimed = r->claim.mode == DAEBUS__GATE_CLAIM;
    long missed = daebus__ratelimit_pass(&bus->full_log, daebus__now_mono(), 1.0);
    if (missed >= 0)
        DAEBUS_LOG_WARNF(LOGC,
                         "worker queue full: %s a message on '%s' (%ld more since the last "
                         "such line)",
                         claimed ? "left to another replica" : "refusing", r->channel, missed);
    /* Claimed: another replica with room takes it; "overloaded" would be a
     * second answer if one does. */
    if (!claimed && r->is_action && r->reply_channel && daebus__bus_claim_final(r))
        daebus__bus_send_error(bus, r->reply_channel, r->env.request_id,
                               "Service overloaded, try again later");
    else
        daebus__bus_claim_final(r);
}
