/* caller.c - the bus caller: requests to other services' actions over Redis.
 *
 * A protocol layer on the Redis transport (framework/redis/): one caller =
 * one subscriber (its reply channel caller:<uuid4>, plus the channels of
 * daebus_caller_listen) read by the transport's thread, one publisher
 * connection, and a hash table of pending requests keyed by request_id.
 * Only the subscriber thread completes requests (replies, time-outs, lost
 * connection), so every callback runs on that thread and exactly once; the
 * publishing side only marks a request as failed and wakes the thread.
 * destroy() joins the thread and then completes what is left with
 * DAEBUS_ECLOSED.
 *
 * The pending table is the core hash table (core/hash.h), keyed by the
 * request_id. It fits the hot path: a reply costs one FNV-1a hash of the
 * 36-character id and one strcmp (as the fixed bucket array it replaces did),
 * a request one more malloc for the entry and its key copy next to the
 * pending record, the request text and the PUBLISH round trip; and the table
 * grows with the requests in flight instead of chaining them into 256 buckets.
 * The expiry scan is one daebus__hash_take_if pass every 100 ms at most.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "daebus/caller.h"
#include "daebus/json.h"
#include "daebus/log.h"
#include "bus_internal.h"
#include "bus_parse.h"
#include "caller_internal.h"
#include "clock.h"
#include "hash.h"
#include "redis_pub.h"
#include "redis_sub.h"
#include "utf8.h"
#include "uuid.h"

#define PENDING_BUCKETS 256
#define LOGC            "caller"
/* Health check of the idle subscriber connection (catches dead peers that
 * TCP would only notice much later). */
#define HEALTH_IDLE    10.0
#define HEALTH_TIMEOUT 5.0
/* Requests published from the subscriber thread without waiting for the
 * PUBLISH reply: their receiver counts are read once this many are waiting,
 * and at the latest after this long idle (s). */
#define UNREAD_COLLECT 8
#define UNREAD_WAIT    0.001

typedef daebus__caller_pending pending;
typedef daebus__caller_listener listener;

/* The caller whose subscriber thread this is, while it runs one of the
 * transport's callbacks (and so the user's callbacks; set on entry, cleared
 * on return: they do not nest): a request made there is published without
 * waiting for its PUBLISH reply (publish_request). */
static _Thread_local daebus_caller *reader_of;

/* ---- helpers ---- */

static const char *error_text(const cJSON *payload)
{
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(payload, "error");
    if (cJSON_IsString(e) && e->valuestring)
        return e->valuestring;
    if (cJSON_IsString(payload) && payload->valuestring)
        return payload->valuestring;
    return "Unknown error";
}

/* ---- completing requests (reader thread, or destroy after the join) ---- */

void daebus__caller_pending_free(pending *p)
{
    free(p->text);
    free(p->service);
    free(p);
}

void daebus__caller_complete(daebus_caller *c, pending *p, int status, const cJSON *payload,
                             const char *msg)
{
    if (p->done)
        p->done(c, status, payload, msg, p->user);
    free(p->why);
    daebus__caller_pending_free(p);
}

/* What a take_where pass removes, and the list it builds (oldest first). */
typedef struct take_pass {
    int all; /* 1 every request; 2 every one but the durable ones (kept, marked requeue) */
    double now;
    double nearest;
    pending *head, **tail;
} take_pass;

static bool take_due(void *value, void *ctx)
{
    const pending *p = value;
    take_pass *t = ctx;
    if (t->all == 2 && p->durable && !p->failed) {
        ((pending *)value)->requeue = true;
        return false;
    }
    if (t->all || p->failed || p->deadline <= t->now)
        return true;
    if (p->deadline < t->nearest)
        t->nearest = p->deadline;
    return false;
}

static void take_append(void *value, void *ctx)
{
    pending *p = value;
    take_pass *t = ctx;
    p->next = NULL;
    *t->tail = p;
    t->tail = &p->next;
}

/* Removes every pending request that is failed, expired (deadline <= now)
 * or, with all, every one (all 2: but the durable ones, marked requeue),
 * into a list; *nearest (may be NULL) receives the nearest deadline of those
 * that stay (1e300 if none). One pass, under the lock. */
static pending *take_where(daebus_caller *c, int all, double now, double *nearest)
{
    take_pass t = {all, now, 1e300, NULL, NULL};
    t.tail = &t.head;
    pthread_mutex_lock(&c->lock);
    daebus__hash_take_if(c->pending, take_due, take_append, &t);
    pthread_mutex_unlock(&c->lock);
    if (nearest)
        *nearest = t.nearest;
    return t.head;
}

static void fail_list(daebus_caller *c, pending *list, int status, const char *why)
{
    while (list) {
        pending *n = list->next;
        int st = status;
        char msg[420];
        if (list->failed && (list->why || status == 0)) { /* whichever pass takes it */
            st = list->failed;
            daebus__utf8_snprintf(msg, sizeof msg, "%s",
                                  list->why ? list->why
                                            : "request could not be published (no connection "
                                              "to Redis)");
        } else if (status == 0) { /* expiry pass */
            st = DAEBUS_ETIMEDOUT;
            snprintf(msg, sizeof msg, "%s", "request timed out");
        } else {
            daebus__utf8_snprintf(msg, sizeof msg, "%s", why);
        }
        daebus__caller_complete(c, list, st, NULL, msg);
        list = n;
    }
}

static void handle_reply(daebus_caller *c, const char *data, size_t len)
{
    daebus__bus_response r;
    if (daebus__bus_parse_response(data, len, &r) != 0) {
        DAEBUS_LOG_DEBUGF(LOGC, "ignoring malformed message on %s", c->channel);
        return;
    }
    if (!r.request_id) {
        daebus__bus_response_free(&r);
        return;
    }
    pthread_mutex_lock(&c->lock);
    pending *p = daebus__hash_find(c->pending, r.request_id);
    if (p && p->failed)
        p = NULL;
    else if (p && r.final)
        daebus__hash_remove(c->pending, r.request_id);
    pthread_mutex_unlock(&c->lock);
    if (!p) {
        DAEBUS_LOG_DEBUGF(LOGC, "dropping reply for unknown or expired request %.*s",
                          daebus__utf8_prec(r.request_id, 40), r.request_id);
    } else if (!r.final) {
        /* Only this thread removes entries, so p stays valid here. */
        if (p->progress) {
            cJSON *empty = NULL;
            const cJSON *pl = r.payload;
            if (!pl || cJSON_IsNull(pl))
                pl = empty = cJSON_CreateObject();
            p->progress(c, pl, p->user);
            cJSON_Delete(empty);
        }
    } else if (r.error) {
        daebus__caller_complete(c, p, DAEBUS_EREPLY, r.payload, error_text(r.payload));
    } else {
        cJSON *empty = NULL;
        const cJSON *pl = r.payload;
        if (!pl)
            pl = empty = cJSON_CreateObject();
        daebus__caller_complete(c, p, 0, pl, NULL);
        cJSON_Delete(empty);
    }
    daebus__bus_response_free(&r);
}

/* A reply over max_message_size, of which the transport's size guard kept the first
 * bytes (m->data) and the last ones (m->tail): counted, logged at most once a second,
 * never parsed; the pending request it names (request_id read from those
 * bytes) completes with DAEBUS_ETOOBIG instead of waiting for its time-out. */
static void on_too_large(daebus_caller *c, const daebus__redis_msg *m)
{
    atomic_fetch_add(&c->too_large, 1);
    long missed = daebus__ratelimit_pass(&c->big_log, daebus__now_mono(), 1.0);
    if (missed >= 0) {
        char more[64] = "";
        if (missed > 0)
            snprintf(more, sizeof more, "; %ld more since the last such line", missed);
        DAEBUS_LOG_WARNF(LOGC,
                         "reply of %zu bytes on %s refused unread: over the limit of %zu bytes "
                         "(max_message_size)%s",
                         m->cut_len, c->channel, c->max_message, more);
    }
    char reply_to[8], id[40];
    daebus__bus_scan_reply_cut(m->data, m->len, m->tail, m->tail_len, reply_to, sizeof reply_to, id,
                               sizeof id);
    if (!id[0])
        return;
    pthread_mutex_lock(&c->lock);
    pending *p = daebus__hash_find(c->pending, id);
    if (p && !p->failed)
        daebus__hash_remove(c->pending, id);
    else
        p = NULL;
    pthread_mutex_unlock(&c->lock);
    if (p) {
        char msg[160];
        snprintf(msg, sizeof msg, "reply too large (%zu bytes; limit %zu)", m->cut_len,
                 c->max_message);
        daebus__caller_complete(c, p, DAEBUS_ETOOBIG, NULL, msg);
    }
}

unsigned long long daebus__caller_too_large(const daebus_caller *c)
{
    return c ? atomic_load(&((daebus_caller *)c)->too_large) : 0;
}

/* ---- the transport's callbacks (its subscriber thread) ---- */

/* A message on a channel of daebus_caller_listen(). */
static void on_listened(daebus_caller *c, const daebus__redis_msg *m)
{
    if (m->cut_len) {
        atomic_fetch_add(&c->too_large, 1);
        if (daebus__ratelimit_pass(&c->big_log, daebus__now_mono(), 1.0) >= 0)
            DAEBUS_LOG_WARNF(LOGC,
                             "message of %zu bytes on '%.100s' dropped: over the limit of %zu "
                             "bytes (max_message_size)",
                             m->cut_len, m->channel, c->max_message);
        return;
    }
    pthread_mutex_lock(&c->listen_lock);
    for (listener *l = c->listeners; l; l = l->next)
        if (strcmp(l->channel, m->channel) == 0) {
            l->fn(c, m->channel, m->data, m->len, l->user);
            break;
        }
    pthread_mutex_unlock(&c->listen_lock);
}

static void on_message(void *user, const daebus__redis_msg *m)
{
    daebus_caller *c = user;
    reader_of = c;
    if (strcmp(m->channel, c->channel) != 0)
        on_listened(c, m);
    else if (m->cut_len)
        on_too_large(c, m);
    else if (c->barriers && m->len > DAEBUS__CALLER_BARRIER_LEN &&
             memcmp(m->data, DAEBUS__CALLER_BARRIER, DAEBUS__CALLER_BARRIER_LEN) == 0)
        daebus__caller_on_barrier(c, m->data);
    else
        handle_reply(c, m->data, m->len);
    reader_of = NULL;
}

static void on_state(void *user, const daebus__redis_event *ev)
{
    daebus_caller *c = user;
    reader_of = c;
    if (ev->state == DAEBUS__REDIS_UP) {
        atomic_store(&c->connected, 1);
        DAEBUS_LOG_INFOF(LOGC, "reconnected to %s, listening on %s",
                         daebus__redis_sub_where(c->sub), c->channel);
    } else if (ev->state == DAEBUS__REDIS_DOWN) {
        pthread_mutex_lock(&c->lock);
        atomic_store(&c->connected, 0);
        pthread_mutex_unlock(&c->lock);
        /* Durable requests stay: queued again once subscribed again (a failover
         * may have lost their XADD; their replies need the subscription). */
        pending *lost = take_where(c, 2, 0, NULL);
        atomic_store(&c->requeue_due, 1);
        size_t n = 0;
        for (pending *q = lost; q; q = q->next)
            n++;
        DAEBUS_LOG_WARNF(LOGC,
                         "lost connection to %s (%s); failing %zu pending request(s) (durable ones "
                         "are kept)",
                         daebus__redis_sub_where(c->sub), ev->why, n);
        fail_list(c, lost, DAEBUS_ECONN, "connection to Redis lost");
    }
    reader_of = NULL;
}

/* Expiry scan: on a time-out or wake-up (new short request, failed publish),
 * at the nearest deadline, and at least every 100 ms; not after every reply,
 * so that many requests in flight stay cheap. Returns: the next read's wait. */
static int on_tick(void *user, bool idle)
{
    daebus_caller *c = user;
    reader_of = c;
    /* Requests made in this thread's callbacks are held until the messages
     * already received are handled: one write for them all. */
    if (daebus__redis_pub_held(c->pub) && (idle || daebus__redis_sub_drained(c->sub)))
        daebus__redis_pub_flush(c->pub);
    /* Their receiver counts: all of them when idle (they are due), else those
     * already here once a few are waiting; a request that reached nobody
     * fails here (after_sent). */
    int unread = daebus__redis_pub_unread(c->pub);
    if (unread > 0 && (idle || unread >= UNREAD_COLLECT))
        unread = daebus__redis_pub_collect(c->pub, idle);
    double now = daebus__now_mono();
    if (atomic_load(&c->requeue_due) && atomic_load(&c->connected) && now >= c->next_requeue) {
        daebus__caller_requeue_pass(c);
        c->next_requeue = now + DAEBUS__CALLER_REQUEUE_EVERY;
    }
    if (idle || now >= c->next_scan) {
        double nearest;
        fail_list(c, take_where(c, 0, now, &nearest), 0, NULL);
        c->next_scan = nearest < now + 0.1 ? nearest : now + 0.1;
    }
    double wait = c->next_scan - daebus__now_mono();
    if (unread > 0 && wait > UNREAD_WAIT)
        wait = UNREAD_WAIT; /* a request that reached nobody fails within about this */
    reader_of = NULL;
    return wait <= 0 ? 0 : wait > 0.2 ? 200000 : (int)(wait * 1e6) + 1;
}

/* ---- the reader role: a lone blocking request reads its own reply ---- */

/* Parks the reader role when nothing but a blocking request's own reply can
 * come (redis_sub.h): no request pending, no listener, nothing to queue
 * again. A request then wakes a reader thread (watch_request) unless it is
 * a lone blocking one, which reads for itself (read_own_reply). */
static bool can_park(void *user)
{
    daebus_caller *c = user;
    /* Held PUBLISHes and unread receiver counts are the reader thread's work
     * (on_tick): it stays at it until they are done. */
    if (c->durable || atomic_load(&c->requeue_due) || daebus__redis_pub_held(c->pub) ||
        daebus__redis_pub_unread(c->pub) > 0)
        return false;
    pthread_mutex_lock(&c->listen_lock);
    bool listening = c->listeners != NULL;
    pthread_mutex_unlock(&c->listen_lock);
    pthread_mutex_lock(&c->lock);
    size_t n = daebus__hash_count(c->pending);
    pthread_mutex_unlock(&c->lock);
    return !listening && n == 0;
}

static daebus_caller_done_fn waiter_done;

/* After a request went into the table: a reader thread reads for it unless
 * it is the only one and blocking (it reads its own reply). Called after the
 * insert, so a reader parking at the same time sees it or is woken. */
static void watch_request(daebus_caller *c, daebus_caller_done_fn *done, bool durable)
{
    size_t n = 2;
    if (done == waiter_done && !durable) {
        pthread_mutex_lock(&c->lock);
        n = daebus__hash_count(c->pending);
        pthread_mutex_unlock(&c->lock);
    }
    if (n != 1)
        daebus__redis_sub_watch(c->sub);
}

/* ---- public API ---- */

/* The transport: the publisher and the subscriber on the reply channel. */
static int make_transport(daebus_caller *c, const daebus__redis_url *url,
                          const daebus_caller_options *opts, daebus_error *err)
{
    daebus__redis_pub_opts po = {url, 1, c->connect_timeout, 5.0, 0, LOGC};
    daebus__redis_sub_opts so = {
        .url = url,
        .connect_timeout = c->connect_timeout,
        .reconnect_initial = 0.1,
        .reconnect_max = opts && opts->reconnect_max > 0 ? opts->reconnect_max : 5.0,
        .health_idle = HEALTH_IDLE,
        .health_timeout = HEALTH_TIMEOUT,
        .max_message = c->max_message,
        .poll_ms = 200,
        .on_message = on_message,
        .on_state = on_state,
        .on_tick = on_tick,
        .can_park = can_park,
        .user = c,
    };
    c->pub = daebus__redis_pub_create(&po);
    c->sub = daebus__redis_sub_create(&so);
    if (c->wait_replicas > 0)
        c->wait_pub = daebus__redis_pub_create(&po);
    if (!c->pub || !c->sub || (c->wait_replicas > 0 && !c->wait_pub) ||
        daebus__redis_sub_subscribe(c->sub, c->channel) < 0)
        return daebus_error_set(err, DAEBUS_ENOMEM, "caller: out of memory");
    int rc = daebus__redis_pub_connect(c->pub, err);
    if (rc == 0)
        rc = daebus__redis_sub_start(c->sub, true, err);
    return rc;
}

daebus_caller *daebus_caller_create(const char *redis_url, const daebus_caller_options *opts,
                                    daebus_error *err)
{
    if (!redis_url || !*redis_url)
        redis_url = getenv("DAEBUS_REDIS_URL");
    if (!redis_url || !*redis_url)
        redis_url = "redis://127.0.0.1:6379";
    daebus__redis_url url;
    if (daebus__redis_url_parse(redis_url, &url, err) != 0)
        return NULL;
    daebus_caller *c = calloc(1, sizeof *c);
    if (!c) {
        daebus_error_set(err, DAEBUS_ENOMEM, "caller: out of memory");
        return NULL;
    }
    c->default_timeout = opts && opts->default_timeout > 0 ? opts->default_timeout : 5.0;
    c->connect_timeout = opts && opts->connect_timeout > 0 ? opts->connect_timeout : 2.0;
    c->max_message = opts && opts->max_message_size ? opts->max_message_size : 1024 * 1024;
    c->durable = opts && opts->durable;
    c->wait_replicas = opts && opts->durable_wait_replicas > 0 ? opts->durable_wait_replicas : 0;
    if (opts && opts->reply_channel && *opts->reply_channel) {
        snprintf(c->channel, sizeof c->channel, "%s", opts->reply_channel);
    } else {
        char s[DAEBUS__UUID_LEN + 1];
        daebus__uuid4(s);
        snprintf(c->channel, sizeof c->channel, "caller:%s", s);
    }
    pthread_mutex_init(&c->lock, NULL);
    pthread_mutex_init(&c->listen_lock, NULL);
    c->pending = daebus__hash_create(PENDING_BUCKETS);
    if (!c->pending) {
        daebus_error_set(err, DAEBUS_ENOMEM, "caller: out of memory");
        daebus_caller_destroy(c);
        return NULL;
    }
    if (make_transport(c, &url, opts, err) != 0) {
        daebus_caller_destroy(c);
        return NULL;
    }
    atomic_store(&c->connected, 1);
    DAEBUS_LOG_DEBUGF(LOGC, "connected to %s, replies on %s", daebus__redis_sub_where(c->sub),
                      c->channel);
    return c;
}

void daebus_caller_destroy(daebus_caller *c)
{
    if (!c)
        return;
    atomic_store(&c->stopping, 1);
    daebus__redis_sub_stop(c->sub);
    fail_list(c, take_where(c, 1, 0, NULL), DAEBUS_ECLOSED, "caller closed");
    daebus__redis_sub_destroy(c->sub);
    daebus__redis_pub_destroy(c->pub);
    daebus__redis_pub_destroy(c->wait_pub);
    while (c->listeners) {
        listener *n = c->listeners->next;
        free(c->listeners->channel);
        free(c->listeners);
        c->listeners = n;
    }
    daebus__hash_destroy(c->pending);
    pthread_mutex_destroy(&c->lock);
    pthread_mutex_destroy(&c->listen_lock);
    free(c);
}

const char *daebus_caller_reply_channel(const daebus_caller *c)
{
    return c ? c->channel : NULL;
}

unsigned long long daebus_caller_queued(const daebus_caller *c)
{
    return c ? atomic_load(&((daebus_caller *)c)->queued) : 0;
}

bool daebus_caller_connected(const daebus_caller *c)
{
    return c && atomic_load(&((daebus_caller *)c)->connected);
}

int daebus_caller_listen(daebus_caller *c, const char *channel, daebus_caller_message_fn *fn,
                         void *user)
{
    if (!c || !channel || !*channel || !fn || strcmp(channel, c->channel) == 0) {
        DAEBUS_LOG_WARNF(LOGC, "listen: needs a caller, a channel (not its reply channel) and fn");
        return DAEBUS_EINVAL;
    }
    listener *l = calloc(1, sizeof *l);
    if (!l || !(l->channel = strdup(channel))) {
        free(l);
        return DAEBUS_ENOMEM;
    }
    l->fn = fn;
    l->user = user;
    pthread_mutex_lock(&c->listen_lock);
    for (listener *q = c->listeners; q; q = q->next)
        if (strcmp(q->channel, channel) == 0) {
            pthread_mutex_unlock(&c->listen_lock);
            free(l->channel);
            free(l);
            return DAEBUS_EEXIST;
        }
    l->next = c->listeners;
    c->listeners = l;
    pthread_mutex_unlock(&c->listen_lock);
    long ticket = daebus__redis_sub_subscribe(c->sub, channel);
    if (ticket < 0) {
        daebus_caller_unlisten(c, channel);
        return (int)ticket;
    }
    return daebus__redis_sub_wait(c->sub, ticket, c->connect_timeout);
}

int daebus_caller_unlisten(daebus_caller *c, const char *channel)
{
    if (!c || !channel)
        return DAEBUS_EINVAL;
    listener *gone = NULL;
    pthread_mutex_lock(&c->listen_lock);
    for (listener **pp = &c->listeners; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->channel, channel) == 0) {
            gone = *pp;
            *pp = gone->next;
            break;
        }
    pthread_mutex_unlock(&c->listen_lock);
    if (!gone)
        return DAEBUS_EINVAL;
    free(gone->channel);
    free(gone);
    long ticket = daebus__redis_sub_unsubscribe(c->sub, channel);
    return ticket > 0 ? daebus__redis_sub_wait(c->sub, ticket, c->connect_timeout) : 0;
}

int daebus_caller_publish(daebus_caller *c, const char *channel, const char *data, size_t len)
{
    if (!c || !channel || !*channel || (!data && len)) {
        DAEBUS_LOG_WARNF(LOGC, "publish: needs a caller, a channel name and data");
        return DAEBUS_EINVAL;
    }
    int rc = daebus__redis_publish(c->pub, channel, data ? data : "", len);
    return rc == DAEBUS_ECLOSED ? DAEBUS_ECONN : rc;
}

/* The five-key request message (docs/protocol.md §1), printed.
 * Returns: malloc'd text, or NULL (out of memory). */
static char *request_text(daebus_caller *c, const char *service, const char *action,
                          const cJSON *payload, const char *id)
{
    cJSON *msg = cJSON_CreateObject();
    cJSON *pl = payload ? cJSON_Duplicate(payload, 1) : cJSON_CreateObject();
    char *text = NULL;
    if (msg && cJSON_AddStringToObject(msg, "action", action) && pl &&
        cJSON_AddItemToObject(msg, "payload", pl) &&
        cJSON_AddStringToObject(msg, "reply_to", c->channel) &&
        cJSON_AddStringToObject(msg, "request_id", id) &&
        cJSON_AddStringToObject(msg, "service", service))
        text = daebus_json_print(msg, NULL);
    else if (pl && !cJSON_GetObjectItemCaseSensitive(msg, "payload"))
        cJSON_Delete(pl);
    cJSON_Delete(msg);
    return text;
}

/* A new pending record and its request text (*text_out, malloc'd).
 * Returns: the record, or NULL (out of memory). */
static pending *pending_new(daebus_caller *c, const char *service, const char *action,
                            const cJSON *payload, double timeout, bool durable, char **text_out)
{
    pending *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    daebus__uuid4(p->id);
    p->deadline = daebus__now_mono() + timeout;
    p->durable = durable;
    if (durable)
        daebus__caller_deadline(timeout, p->wall_deadline, sizeof p->wall_deadline);
    char *text = request_text(c, service, action, payload, p->id);
    if (!text || (durable && !(p->service = strdup(service)))) {
        free(text);
        daebus__caller_pending_free(p);
        return NULL;
    }
    *text_out = text;
    return p;
}

/* Marks request id (p) failed: rc 0 (PUBLISH reached no subscriber), or a
 * negative code; the subscriber thread completes it. */
static void fail_sent(daebus_caller *c, const char *id, pending *p, int rc, const char *service,
                      char *why, size_t why_size)
{
    if (rc == 0) /* PUBLISH reached no subscriber */
        daebus__utf8_snprintf(why, why_size, "no service '%.*s' is listening on %s",
                              daebus__utf8_prec(service, 200), service,
                              daebus__redis_sub_where(c->sub));
    pthread_mutex_lock(&c->lock);
    /* Still in the table under its (unique) id: still p, not yet completed. */
    if (daebus__hash_find(c->pending, id) == p) {
        p->failed = rc == 0 ? DAEBUS_ENOLISTENER : rc == DAEBUS_EIO ? DAEBUS_EIO : DAEBUS_ECONN;
        if (why[0])
            p->why = strdup(why);
    }
    pthread_mutex_unlock(&c->lock);
    daebus__redis_sub_wake(c->sub);
}

/* A request published without waiting for its PUBLISH reply (from the
 * subscriber thread): what after_sent needs once the receiver count is read. */
typedef struct sent_req {
    daebus_caller *c;
    pending *p; /* compared only (under c->lock, with the id): may be completed */
    char id[40];
    char service[];
} sent_req;

/* The receiver count of a request published by publish_request (whichever
 * thread reads it): no receiver or no connection fails the request, as
 * after_send does for a blocking PUBLISH. */
static void after_sent(void *arg, int result)
{
    sent_req *s = arg;
    if (result <= 0 && !atomic_load(&s->c->stopping)) {
        char why[600] = "";
        fail_sent(s->c, s->id, s->p, result, s->service, why, sizeof why);
    }
    free(s);
}

/* The PUBLISH of a request (not durable). On the caller's subscriber thread
 * (a request made in a callback) it does not wait for the reply: the
 * thread that is to read the replies of the other requests goes on reading,
 * and the PUBLISHes of a batch of callbacks go out together; the receiver
 * count is read soon after (on_tick) and a request that reached nobody fails
 * then, within about UNREAD_WAIT. Returns: the receiver count (a blocking
 * PUBLISH), 1 (sent without waiting), or a negative code. */
static int publish_request(daebus_caller *c, const char *service, const char *text, const char *id,
                           pending *p)
{
    size_t len = strlen(text);
    if (reader_of != c)
        return daebus__redis_publish(c->pub, service, text, len);
    size_t sl = strlen(service);
    sent_req *s = malloc(sizeof *s + sl + 1);
    if (!s)
        return daebus__redis_publish(c->pub, service, text, len);
    s->c = c;
    s->p = p;
    memcpy(s->id, id, sizeof s->id);
    memcpy(s->service, service, sl + 1);
    int rc = daebus__redis_publish_later(c->pub, service, text, len, after_sent, s);
    if (rc != 0)
        free(s);
    return rc == 0 ? 1 : rc;
}

/* After the PUBLISH or XADD of request id (p, rc its result): a request
 * nothing can answer (no connection, XADD refused, PUBLISH reached no
 * subscriber) fails now, not at its time-out. */
static void after_send(daebus_caller *c, const char *id, pending *p, int rc, bool durable,
                       const char *service, double timeout, char *why, size_t why_size)
{
    if (durable && rc == 1)
        atomic_fetch_add(&c->queued, 1);
    if (rc < 0 || (rc == 0 && !durable)) {
        fail_sent(c, id, p, rc, service, why, why_size);
    } else if (timeout < 0.25) {
        daebus__redis_sub_wake(
            c->sub); /* the reader sleeps at most 200 ms: only short ones need it */
    }
}

/* A request, pub/sub or durable (XADD to the service's stream). */
static int send_request(daebus_caller *c, const char *service, const char *action,
                        const cJSON *payload, double timeout, daebus_caller_done_fn *done,
                        daebus_caller_progress_fn *progress, void *user, char *request_id_out,
                        bool durable)
{
    if (!c || !service || !*service || !action || !*action || !done) {
        DAEBUS_LOG_WARNF(LOGC, "request_async: caller, service, action and done are required");
        return DAEBUS_EINVAL;
    }
    if (atomic_load(&c->stopping))
        return DAEBUS_ECLOSED;
    if (!atomic_load(&c->connected))
        return DAEBUS_ECONN;
    if (timeout <= 0)
        timeout = c->default_timeout;
    char *text = NULL;
    pending *p = pending_new(c, service, action, payload, timeout, durable, &text);
    if (!p)
        return DAEBUS_ENOMEM;
    p->done = done;
    p->progress = progress;
    p->user = user;
    if (request_id_out)
        memcpy(request_id_out, p->id, 37);
    char id[40], wall_deadline[24];
    memcpy(id, p->id, sizeof id);
    memcpy(wall_deadline, p->wall_deadline, sizeof wall_deadline);
    pthread_mutex_lock(&c->lock);
    /* Checked under the lock the reader takes when it fails everything on a
     * lost connection: a request is either failed by it or refused here. */
    int irc = DAEBUS_ECONN;
    if (atomic_load(&c->stopping))
        irc = DAEBUS_ECLOSED;
    else if (atomic_load(&c->connected))
        irc = daebus__hash_insert(c->pending, id, p); /* DAEBUS_ENOMEM: a fresh uuid4 is new */
    pthread_mutex_unlock(&c->lock);
    if (irc) {
        free(text);
        daebus__caller_pending_free(p);
        return irc;
    }
    watch_request(c, done, durable);
    /* From here the reader thread owns p: only mark it, never free it. */
    char why[600] = "", entry_id[DAEBUS__CALLER_ENTRY_ID] = "";
    int rc = durable ? daebus__caller_queue(c->wait_pub ? c->wait_pub : c->pub, service, text,
                                            wall_deadline, timeout, c->wait_replicas, entry_id, why,
                                            sizeof why)
                     : publish_request(c, service, text, id, p);
    if (!durable || !daebus__caller_hand_over(c, id, p, text, entry_id, rc == DAEBUS_ECONN))
        free(text);
    else if (rc == DAEBUS_ECONN)
        rc = 2; /* no connection now: queued again once there is one */
    after_send(c, id, p, rc, durable, service, timeout, why, sizeof why);
    return 0;
}

int daebus_caller_request_async(daebus_caller *c, const char *service, const char *action,
                                const cJSON *payload, double timeout, daebus_caller_done_fn *done,
                                daebus_caller_progress_fn *progress, void *user,
                                char *request_id_out)
{
    return send_request(c, service, action, payload, timeout, done, progress, user, request_id_out,
                        c && c->durable);
}

int daebus_caller_request_durable_async(daebus_caller *c, const char *service, const char *action,
                                        const cJSON *payload, double timeout,
                                        daebus_caller_done_fn *done,
                                        daebus_caller_progress_fn *progress, void *user,
                                        char *request_id_out)
{
    return send_request(c, service, action, payload, timeout, done, progress, user, request_id_out,
                        true);
}

/* ---- blocking form ---- */

typedef struct waiter {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done;
    int status;
    cJSON *payload;
    char message[256];
    daebus_caller_progress_fn *progress;
    void *user;
} waiter;

static void waiter_done(daebus_caller *c, int status, const cJSON *payload, const char *message,
                        void *user)
{
    (void)c;
    waiter *w = user;
    pthread_mutex_lock(&w->lock);
    w->status = status;
    w->payload = payload ? cJSON_Duplicate(payload, 1) : NULL;
    daebus__utf8_snprintf(w->message, sizeof w->message, "%s", message ? message : "");
    w->done = 1;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

static void waiter_progress(daebus_caller *c, const cJSON *payload, void *user)
{
    waiter *w = user;
    if (w->progress)
        w->progress(c, payload, w->user);
}

/* A blocking request reads its own reply when the reader role is parked
 * (it is the only request: can_park), instead of a reader thread reading it
 * and waking this one. Gives the role back when done, at its time-out (a
 * reader thread then times it out), on a lost connection (a reader thread
 * reports it) or as soon as something else needs a reader. */
static void read_own_reply(daebus_caller *c, waiter *w, double timeout)
{
    if (!daebus__redis_sub_borrow(c->sub)) {
        daebus__redis_sub_watch(c->sub); /* parked meanwhile: a reader thread reads */
        return;
    }
    daebus__deadline d = daebus__deadline_in(timeout);
    bool done = false;
    for (;;) {
        pthread_mutex_lock(&w->lock);
        done = w->done;
        pthread_mutex_unlock(&w->lock);
        double left = daebus__deadline_left(d);
        if (done || left <= 0)
            break;
        long us = left > 0.2 ? 200000 : (long)(left * 1e6) + 1;
        if (daebus__redis_sub_borrow_read(c->sub, us) < 0)
            break;
    }
    daebus__redis_sub_give_back(c->sub, !done);
}

static int wait_request(daebus_caller *c, const char *service, const char *action,
                        const cJSON *payload, double timeout, daebus_caller_progress_fn *progress,
                        void *user, cJSON **reply_out, daebus_error *err, bool durable)
{
    if (reply_out)
        *reply_out = NULL;
    waiter w;
    memset(&w, 0, sizeof w);
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.cond, NULL);
    w.progress = progress;
    w.user = user;
    int rc = send_request(c, service, action, payload, timeout, waiter_done, waiter_progress, &w,
                          NULL, durable);
    if (rc != 0) {
        daebus_error_set(err, rc, "request %s.%s: %s", service ? service : "?",
                         action ? action : "?",
                         rc == DAEBUS_ECONN ? "no connection to Redis" : daebus_strerror(rc));
    } else {
        if (!durable)
            read_own_reply(c, &w, timeout > 0 ? timeout : c->default_timeout);
        pthread_mutex_lock(&w.lock);
        while (!w.done)
            pthread_cond_wait(&w.cond, &w.lock);
        pthread_mutex_unlock(&w.lock);
        rc = w.status;
        if (rc == DAEBUS_EREPLY)
            daebus_error_set(err, rc, "%s", w.message);
        else if (rc == DAEBUS_ENOLISTENER)
            daebus_error_set(err, rc, "%s", w.message);
        else if (rc == DAEBUS_ETIMEDOUT)
            daebus_error_set(err, rc, "Request to %s.%s timed out after %gs", service, action,
                             timeout > 0 ? timeout : c->default_timeout);
        else if (rc != 0)
            daebus_error_set(err, rc, "Request to %s.%s failed: %s", service, action, w.message);
        if ((rc == 0 || rc == DAEBUS_EREPLY) && reply_out)
            *reply_out = w.payload;
        else
            cJSON_Delete(w.payload);
    }
    pthread_mutex_destroy(&w.lock);
    pthread_cond_destroy(&w.cond);
    return rc;
}

int daebus_caller_request_progress(daebus_caller *c, const char *service, const char *action,
                                   const cJSON *payload, double timeout,
                                   daebus_caller_progress_fn *progress, void *user,
                                   cJSON **reply_out, daebus_error *err)
{
    return wait_request(c, service, action, payload, timeout, progress, user, reply_out, err,
                        c && c->durable);
}

int daebus_caller_request_durable(daebus_caller *c, const char *service, const char *action,
                                  const cJSON *payload, double timeout, cJSON **reply_out,
                                  daebus_error *err)
{
    return wait_request(c, service, action, payload, timeout, NULL, NULL, reply_out, err, true);
}

int daebus_caller_request(daebus_caller *c, const char *service, const char *action,
                          const cJSON *payload, double timeout, cJSON **reply_out,
                          daebus_error *err)
{
    return daebus_caller_request_progress(c, service, action, payload, timeout, NULL, NULL,
                                          reply_out, err);
}

int daebus_caller_send_message(daebus_caller *c, const char *channel, const cJSON *payload)
{
    if (!c || !channel || !*channel || !payload) {
        DAEBUS_LOG_WARNF(LOGC, "send_message: caller, a channel name and a payload are required");
        return DAEBUS_EINVAL;
    }
    int rc = daebus__redis_publish_json(c->pub, channel, payload);
    return rc == DAEBUS_ECLOSED ? DAEBUS_ECONN : rc;
}

int daebus_caller_send_to_service(daebus_caller *c, const char *service, const cJSON *payload,
                                  const char *action)
{
    if (!c || !service || !*service || (payload && !cJSON_IsObject(payload))) {
        DAEBUS_LOG_WARNF(LOGC, "send_to_service: needs a service name and an object payload");
        return DAEBUS_EINVAL;
    }
    cJSON *msg = payload ? cJSON_Duplicate(payload, 1) : cJSON_CreateObject();
    if (!msg)
        return DAEBUS_ENOMEM;
    if (action) {
        cJSON_DeleteItemFromObjectCaseSensitive(msg, "action");
        if (!cJSON_AddStringToObject(msg, "action", action)) {
            cJSON_Delete(msg);
            return DAEBUS_ENOMEM;
        }
    }
    int rc = daebus_caller_send_message(c, service, msg);
    cJSON_Delete(msg);
    return rc;
}
