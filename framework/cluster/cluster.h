/* cluster.h - the instances of a service in Redis (internal).
 *
 * Each running app with a bus announces itself as one instance: a hash
 * daebus:<service>:instance:<id> (id, host, pid, started_at, last_seen,
 * http_port, heartbeat) with a TTL of one window, and a member of the sorted
 * set daebus:<service>:instances scored by the end of its window (Redis time,
 * ms). The window is 2.5 heartbeats; readers drop members whose window ended
 * and refresh their view twice per heartbeat, so an instance that stops
 * heartbeating (kill -9) leaves every view within 3 heartbeats. A graceful
 * stop deletes its own hash and member at once. docs/replicas.md lists the keys.
 *
 * Thread: create/stop/destroy on the owner's thread (the bus component's
 * start, stop and destroy); the heartbeat runs on a thread of its own;
 * daebus__cluster_instances from any thread.
 */
#ifndef DAEBUS_CLUSTER_H
#define DAEBUS_CLUSTER_H

#include <stdbool.h>
#include <cjson/cJSON.h>
#include "redis_pub.h"

typedef struct daebus__cluster daebus__cluster;

typedef struct daebus__cluster_opts {
    daebus__redis_pub *pub;  /* borrowed: open until daebus__cluster_stop returns */
    const char *service;     /* copied */
    const char *instance_id; /* copied */
    int http_port;           /* the port this instance serves HTTP on; 0 = none */
    double heartbeat;        /* seconds; <= 0 = 1 */
} daebus__cluster_opts;

/* Creates the cluster view and starts the heartbeat thread (the first
 * announce happens on that thread). Returns: NULL when out of memory or
 * when the thread cannot start. */
daebus__cluster *daebus__cluster_start(const daebus__cluster_opts *o);

/* Stops the heartbeat thread and deletes this instance's keys (one attempt;
 * with Redis gone they expire on their own). The view is then empty.
 * Accepts NULL. */
void daebus__cluster_stop(daebus__cluster *c);

/* Stops if still running, and frees. Accepts NULL. */
void daebus__cluster_destroy(daebus__cluster *c);

/* Returns: a copy of the last view (an array of objects: id, host, pid,
 * started_at, last_seen, http_port, heartbeat, self, stale), or NULL when out
 * of memory. stale is true in every entry while Redis cannot be reached (the
 * last view read is kept). Ownership: the caller frees it with cJSON_Delete. */
cJSON *daebus__cluster_instances(daebus__cluster *c);

/* The public face of an instance id, made by the app: "<host>-<pid>-<8 hex
 * digits>", host being the host name with characters outside [A-Za-z0-9._]
 * replaced by '_' and cut to 64 bytes. buf holds at least
 * DAEBUS__INSTANCE_ID_MAX bytes. */
#define DAEBUS__INSTANCE_ID_MAX 96
void daebus__cluster_make_id(char *buf, size_t len);

#endif
