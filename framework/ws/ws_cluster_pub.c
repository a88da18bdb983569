/* ws_cluster_pub.c - the publisher queue of cluster mode.
 *
 * broadcast_to_all does not wait for Redis: its one PUBLISH is queued here
 * and a publisher thread of the cluster sends what is queued, in order, as
 * one pipeline on one connection of the component's publisher pool. So the
 * calling thread pays a copy of the message, not a round trip, and the
 * broadcasts of one thread (of every thread, in the order they were queued)
 * reach Redis in that order. The other cross-replica sends (send_to_client,
 * broadcast_to_clients, set_client_data, disconnect_client) still wait for
 * their reply, after the queue's earlier messages (daebus__ws_cluster_drain):
 * a client gets what one thread sent to it in the order it was sent.
 *
 * Failures: while the subscriber is down a broadcast fails fast (nothing is
 * queued: DAEBUS_ECONN, counted). A queued message whose PUBLISH fails is
 * counted in cluster_errors and logged (at most one line a second); its
 * broadcast already returned its local count. The queue holds at most
 * QUEUE_MAX messages or QUEUE_MAX_BYTES: a caller finding it full waits for
 * room (at most QUEUE_WAIT seconds, then DAEBUS_ECONN, counted).
 *
 * The channel publishes with history (ws_channel_hpub.c) share the queue:
 * a batch is sent run by run, consecutive plain messages as one pipeline,
 * consecutive history publishes as one group (one round trip), so every
 * message keeps its place in the one queue order.
 */
#include "ws_cluster.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "daebus/log.h"
#include "ws_channel_hpub.h"

#define LOGC            "websocket"
#define QUEUE_MAX       4096
#define QUEUE_MAX_BYTES ((size_t)64 << 20)
#define QUEUE_WAIT      2.0
#define BATCH_MAX       256

/* Sends one batch (the queue's lock not held). Returns: messages published. */
static int send_batch(ws_cluster *cl, ws_pubmsg *batch, int n)
{
    daebus__redis_cmd cmds[BATCH_MAX];
    const char *argv[BATCH_MAX][3];
    size_t lens[BATCH_MAX][3];
    redisReply *r[BATCH_MAX] = {0};
    int i = 0;
    for (ws_pubmsg *m = batch; m && i < n; m = m->next, i++) {
        argv[i][0] = "PUBLISH";
        lens[i][0] = 7;
        argv[i][1] = m->channel;
        lens[i][1] = strlen(m->channel);
        argv[i][2] = m->data;
        lens[i][2] = m->len;
        cmds[i] = (daebus__redis_cmd){3, argv[i], lens[i]};
    }
    if (!atomic_load(&cl->up) || daebus__redis_pub_pipeline(cl->pub, cmds, n, r) != 0) {
        for (i = 0; i < n; i++)
            daebus__ws_cluster_fail(cl, "broadcast to the other replicas");
        return 0;
    }
    int ok = 0;
    for (i = 0; i < n; i++) {
        if (r[i]->type == REDIS_REPLY_INTEGER)
            ok++;
        else
            daebus__ws_cluster_fail(cl, "broadcast to the other replicas");
        freeReplyObject(r[i]);
    }
    atomic_fetch_add(&cl->ws->st_cluster_pub, (uint_fast64_t)ok);
    return ok;
}

/* Sends a batch run by run: the plain messages as one pipeline, the history
 * publishes as one group each (the queue's lock not held). */
static void send_runs(ws_cluster *cl, ws_pubmsg *batch, int n)
{
    while (batch && n > 0) {
        bool hist = batch->channel == NULL;
        ws_pubmsg *m = batch->next;
        int k = 1;
        for (; m && k < n && (m->channel == NULL) == hist; m = m->next)
            k++;
        if (hist)
            daebus__ws_hpub_send(cl, batch, k);
        else
            send_batch(cl, batch, k);
        batch = m;
        n -= k;
    }
}

static void *pub_main(void *arg)
{
    ws_cluster *cl = arg;
    daebus__sigpipe_block_thread();
    pthread_mutex_lock(&cl->q_lock);
    for (;;) {
        while (!cl->q_head && !cl->q_stop)
            pthread_cond_wait(&cl->q_cond, &cl->q_lock);
        if (!cl->q_head)
            break; /* stopping, everything sent */
        /* Up to BATCH_MAX messages off the head, in order. */
        ws_pubmsg *batch = cl->q_head, *last = batch;
        int n = 1;
        size_t bytes = batch->len;
        while (last->next && n < BATCH_MAX) {
            last = last->next;
            bytes += last->len;
            n++;
        }
        cl->q_head = last->next;
        if (!cl->q_head)
            cl->q_tail = NULL;
        last->next = NULL;
        pthread_mutex_unlock(&cl->q_lock);
        send_runs(cl, batch, n);
        while (batch) {
            ws_pubmsg *next = batch->next;
            free(batch);
            batch = next;
        }
        pthread_mutex_lock(&cl->q_lock);
        cl->q_count -= (size_t)n;
        cl->q_bytes -= bytes;
        cl->q_done += (uint64_t)n;
        pthread_cond_broadcast(&cl->q_room); /* callers waiting for room or a drain */
    }
    pthread_mutex_unlock(&cl->q_lock);
    return NULL;
}

int daebus__ws_cluster_pub_start(ws_cluster *cl)
{
    pthread_mutex_init(&cl->q_lock, NULL);
    daebus__cond_init(&cl->q_cond);
    daebus__cond_init(&cl->q_room);
    cl->q_init = 1;
    if (pthread_create(&cl->q_thread, NULL, pub_main, cl) != 0)
        return DAEBUS_ENOMEM;
    cl->q_started = 1;
    return 0;
}

void daebus__ws_cluster_pub_stop(ws_cluster *cl)
{
    if (!cl->q_init)
        return;
    pthread_mutex_lock(&cl->q_lock);
    cl->q_stop = 1;
    pthread_cond_signal(&cl->q_cond);
    pthread_mutex_unlock(&cl->q_lock);
    if (cl->q_started)
        pthread_join(cl->q_thread, NULL);
    cl->q_started = 0;
}

void daebus__ws_cluster_pub_free(ws_cluster *cl)
{
    if (!cl->q_init)
        return;
    daebus__ws_cluster_pub_stop(cl);
    while (cl->q_head) { /* never started: nothing sends them */
        ws_pubmsg *next = cl->q_head->next;
        free(cl->q_head);
        cl->q_head = next;
    }
    pthread_mutex_destroy(&cl->q_lock);
    pthread_cond_destroy(&cl->q_cond);
    pthread_cond_destroy(&cl->q_room);
    cl->q_init = 0;
}

/* Waits (q_lock held) for room for len more bytes. Returns: true when there is. */
static bool wait_room(ws_cluster *cl, size_t len)
{
    daebus__deadline d = daebus__deadline_in(QUEUE_WAIT);
    while (!cl->q_stop && cl->q_count &&
           (cl->q_count >= QUEUE_MAX || cl->q_bytes + len > QUEUE_MAX_BYTES)) {
        if (daebus__cond_wait_until(&cl->q_room, &cl->q_lock, d) != 0 && daebus__deadline_passed(d))
            return false;
    }
    return !cl->q_stop;
}

int daebus__ws_cluster_enqueue(ws_cluster *cl, ws_pubmsg *m)
{
    pthread_mutex_lock(&cl->q_lock);
    if (!wait_room(cl, m->len)) {
        int rc = cl->q_stop ? DAEBUS_ECLOSED : DAEBUS_EFULL;
        pthread_mutex_unlock(&cl->q_lock);
        free(m);
        return rc;
    }
    if (cl->q_tail)
        cl->q_tail->next = m;
    else
        cl->q_head = m;
    cl->q_tail = m;
    cl->q_count++;
    cl->q_bytes += m->len;
    cl->q_queued++;
    pthread_cond_signal(&cl->q_cond);
    pthread_mutex_unlock(&cl->q_lock);
    return 0;
}

int daebus__ws_cluster_publish_async(ws_cluster *cl, const char *channel, cJSON *header,
                                     const ws_frame *f)
{
    if (!atomic_load(&cl->up))
        return daebus__ws_cluster_fail(cl, "broadcast to the other replicas");
    char *buf;
    size_t at = offsetof(ws_pubmsg, data);
    size_t len = daebus__ws_cluster_message(cl, header, f, at, &buf);
    if (!len)
        return DAEBUS_ENOMEM;
    ws_pubmsg *m = (ws_pubmsg *)(void *)buf; /* malloc'd: aligned for any type */
    m->next = NULL;
    m->channel = channel;
    m->len = len;
    int rc = daebus__ws_cluster_enqueue(cl, m);
    if (rc != 0)
        return daebus__ws_cluster_fail(cl, rc == DAEBUS_EFULL
                                               ? "broadcast to the other replicas (queue full)"
                                               : "broadcast to the other replicas");
    return 0;
}

void daebus__ws_cluster_drain(ws_cluster *cl)
{
    if (!cl->q_init)
        return;
    pthread_mutex_lock(&cl->q_lock);
    uint64_t upto = cl->q_queued;
    /* Bounded: each batch is bounded by the pool's command time-out; the
     * deadline only guards against a publisher thread that is gone. */
    daebus__deadline d = daebus__deadline_in(QUEUE_WAIT * 4);
    while (cl->q_done < upto && !daebus__deadline_passed(d))
        daebus__cond_wait_until(&cl->q_room, &cl->q_lock, d);
    pthread_mutex_unlock(&cl->q_lock);
}
