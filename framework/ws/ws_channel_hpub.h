/* ws_channel_hpub.h - queued channel publishes with history (internal).
 *
 * daebus_ws_channel_publish on a history channel does not wait for Redis:
 * the message is copied into the cluster's publisher queue (ws_cluster_pub.c)
 * and the publisher thread sends each run of consecutive history publishes
 * as one group, in one round trip: one script call carrying them all
 * (daebus__chist_publish_many) when they are of one channel, else one call
 * per message pipelined (daebus__chist_publish_batch); at most
 * DAEBUS__CHIST_BATCH_MAX a group. One queue and one drainer: the publishes
 * of a channel get their offsets, and reach its subscribers, in the order
 * they were queued, and a plain channel publish or broadcast_to_all queued
 * before or after a history publish keeps its place (the same queue).
 *
 * A group that fails at Redis is not retried (Redis may have run it): its
 * messages are counted in cluster_errors and in the failed counter below,
 * one log line when publishes start failing and one when they work again.
 * Thread: any thread unless a line says otherwise.
 */
#ifndef DAEBUS_WS_CHANNEL_HPUB_H
#define DAEBUS_WS_CHANNEL_HPUB_H

#include <stdint.h>
#include "ws_channel.h"
#include "ws_cluster.h"

/* Makes the state of cl's history publishes (cl->hist set). Returns: 0 or
 * DAEBUS_ENOMEM. Thread: the owner's (cluster start, before the publisher
 * thread starts). */
int daebus__ws_hpub_init(ws_cluster *cl);
/* Frees it (accepts cl->hpub NULL). Thread: the owner's, the publisher
 * thread stopped. */
void daebus__ws_hpub_free(ws_cluster *cl);

/* Queues m (copied) for the publisher thread.
 * Returns: 0 queued (it is published later, or counted as failed);
 * DAEBUS_ECONN (this replica is not connected to Redis, or stopping:
 * counted and logged by daebus__ws_cluster_fail); DAEBUS_EFULL (the queue
 * stayed full for 2 s: counted in cluster_errors, one log line a second at
 * most); DAEBUS_ENOMEM. */
int daebus__ws_hpub_enqueue(ws_cluster *cl, const ws_chmsg *m);

/* Sends the n queued history publishes from run on: one group (one round
 * trip) per DAEBUS__CHIST_BATCH_MAX. Thread: the publisher thread. */
void daebus__ws_hpub_send(ws_cluster *cl, ws_pubmsg *run, int n);

/* Counters since the cluster started (zero outside cluster mode). */
typedef struct daebus__ws_hpub_stats {
    uint64_t queued;    /* publishes queued */
    uint64_t published; /* publishes that Redis ran */
    uint64_t failed;    /* publishes of groups that failed at Redis */
    uint64_t refused;   /* publishes refused with DAEBUS_EFULL */
    uint64_t groups;    /* round trips (groups sent, failed ones included) */
} daebus__ws_hpub_stats;
void daebus__ws_hpub_get_stats(daebus_ws *ws, daebus__ws_hpub_stats *out);

#endif
