/* bus_durable.h - durable actions: the service side of the request stream (internal).
 *
 * A reader thread with its own Redis connection takes entries of
 * daebus:<service>:requests with the consumer group "daebus" (never more than
 * the worker pool can start now), claims the entries of dead replicas after
 * the visibility time-out, and hands each one to the worker pool as a
 * request of the ACTION handlers. A request completes with one script
 * (reply, done record, XACK, XDEL). Wire format: docs/protocol.md,
 * "Durable actions"; docs/messaging/durable.md.
 */
#ifndef DAEBUS_BUS_DURABLE_H
#define DAEBUS_BUS_DURABLE_H

#include <stdbool.h>
#include <cjson/cJSON.h>

typedef struct daebus_bus daebus_bus;
typedef struct daebus_bus_request daebus_bus_request;
typedef struct daebus__durable daebus__durable;

/* What a durable request carries (inside the request object). */
typedef struct daebus__durable_job {
    char entry[48];     /* the stream entry id */
    char *done_key;     /* daebus:<service>:done:<request_id> */
    long long deadline; /* ms since the epoch; 0 = none */
    bool finished;      /* completed, or left pending (shutdown) */
} daebus__durable_job;

/* Starts the reader when the bus has actions and durable is on. Returns: 0
 * or DAEBUS_ENOMEM. Thread: the app's (bus_start). */
int daebus__durable_start(daebus_bus *bus);
/* The first step of a stop: the reader takes nothing more (a blocking read
 * is woken) but keeps refreshing the entries still running, so that no other
 * replica takes them while the pool drains. Accepts a bus without a reader. */
void daebus__durable_drain(daebus_bus *bus);
/* Stops the reader (prompt: it is woken); after the drain, what is left of
 * the entries taken here is taken by another replica after the visibility
 * time-out. Accepts a bus without a reader. */
void daebus__durable_stop(daebus_bus *bus);

/* Stops the reader and frees it (bus destroy). */
void daebus__durable_free(daebus_bus *bus);

/* Completes the durable request r: its final reply (error: an error reply;
 * payload NULL: no reply) is published by the completion script, unless
 * the request completed elsewhere already. Returns: 0 or a negative code (the
 * entry then stays pending and is taken again after the visibility time-out).
 * Thread: any holding r. */
int daebus__durable_finish(daebus_bus_request *r, bool error, const cJSON *payload);
/* r will not run here (shutdown): its entry stays pending for another replica. */
void daebus__durable_leave(daebus_bus_request *r);
/* Frees the job of r (request_free). */
void daebus__durable_job_free(daebus__durable_job *j);

#endif
