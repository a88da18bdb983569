/* ws_cluster.c - the transport between the replicas' WebSocket components.
 *
 * Cluster mode (ws_cluster.h) gives the component a publisher pool and a
 * subscriber of its own on the app's Redis. A published message is a JSON
 * header ({"k": kind, "o": origin instance, ...}), a '\n', and the frame's
 * bytes exactly as they go on the wire: the sender serialised the frame once,
 * every receiving replica queues it for its clients as is. The subscriber's
 * state decides whether cross-replica operations are tried: while it is down
 * they fail fast with DAEBUS_ECONN (counted); when it is up again every local
 * client is announced again (resync). Broadcasts to all go through the
 * publisher queue (ws_cluster_pub.c). The cluster thread runs every half
 * heartbeat: resync when asked, activity flush, reaping of dead replicas.
 */
#include "ws_cluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <civetweb.h>

#include "clock.h"
#include "daebus/log.h"
#include "ws_channel.h"
#include "ws_channel_history.h"
#include "ws_channel_hpub.h"
#include "ws_channel_presence.h"
#include "ws_client.h"
#include "ws_io.h"

#define LOGC            "websocket"
#define CONNECT_TIMEOUT 2.0

/* ---- names ---- */

static char *fmt_name(const char *svc, const char *suffix)
{
    size_t n = strlen(svc) + strlen(suffix) + 16;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "daebus:%s:%s", svc, suffix);
    return s;
}

static void free_names(ws_cluster *cl)
{
    char **all[] = {&cl->service,   &cl->self,        &cl->chan_all,   &cl->chan_prefix,
                    &cl->chan_self, &cl->key_clients, &cl->key_client, &cl->key_inst,
                    &cl->key_insts, &cl->key_reap,    &cl->key_alive};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        free(*all[i]);
        *all[i] = NULL;
    }
}

/* Returns: 0 or DAEBUS_ENOMEM. */
static int make_names(ws_cluster *cl, const char *svc, const char *self)
{
    cl->service = strdup(svc);
    cl->self = strdup(self);
    cl->chan_all = fmt_name(svc, "ws");
    cl->chan_prefix = fmt_name(svc, "ws:");
    size_t n = strlen(svc) + strlen(self) + 16;
    cl->chan_self = malloc(n);
    if (cl->chan_self)
        snprintf(cl->chan_self, n, "daebus:%s:ws:%s", svc, self);
    cl->key_clients = fmt_name(svc, "ws:clients");
    cl->key_client = fmt_name(svc, "ws:client:");
    cl->key_inst = fmt_name(svc, "ws:inst:");
    cl->key_insts = fmt_name(svc, "ws:instances");
    cl->key_reap = fmt_name(svc, "ws:reap:");
    cl->key_alive = fmt_name(svc, "ws:alive:");
    if (!cl->service || !cl->self || !cl->chan_all || !cl->chan_prefix || !cl->chan_self ||
        !cl->key_clients || !cl->key_client || !cl->key_inst || !cl->key_insts || !cl->key_reap ||
        !cl->key_alive)
        return DAEBUS_ENOMEM;
    return 0;
}

/* ---- failures ---- */

int daebus__ws_cluster_fail(ws_cluster *cl, const char *what)
{
    atomic_fetch_add(&cl->ws->st_cluster_err, 1);
    long missed = daebus__ratelimit_pass(&cl->log_rl, daebus__now_mono(), 1.0);
    if (missed >= 0)
        daebus_log(DAEBUS_LOG_WARNING, LOGC,
                   "%s: Redis unreachable: the other replicas' clients are out of reach "
                   "(DAEBUS_ECONN; %ld more such failures not logged)",
                   what, missed);
    return DAEBUS_ECONN;
}

/* ---- publishing ---- */

size_t daebus__ws_cluster_message(ws_cluster *cl, cJSON *header, const ws_frame *f, size_t at,
                                  char **out)
{
    *out = NULL;
    cJSON_AddStringToObject(header, "o", cl->self);
    char *h = cJSON_PrintUnformatted(header);
    if (!h)
        return 0;
    size_t hl = strlen(h), fl = f ? f->len : 0;
    char *buf = malloc(at + hl + 1 + fl + 1);
    if (buf) {
        char *m = buf + at;
        memcpy(m, h, hl);
        m[hl] = '\n';
        if (fl)
            memcpy(m + hl + 1, f->data, fl);
        m[hl + 1 + fl] = '\0';
    }
    free(h);
    *out = buf;
    return buf ? hl + 1 + fl : 0;
}

int daebus__ws_cluster_run(ws_cluster *cl, const daebus__redis_cmd *cmds, int n,
                           redisReply **replies)
{
    if (!atomic_load(&cl->up) || daebus__redis_pub_pipeline(cl->pub, cmds, n, replies) != 0)
        return daebus__ws_cluster_fail(cl, "client directory");
    return 0;
}

/* ---- receiving ---- */

static void recv_disconnect(daebus_ws *ws, const cJSON *ids, const cJSON *h)
{
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(h, "code");
    const cJSON *reason = cJSON_GetObjectItemCaseSensitive(h, "reason");
    const cJSON *id;
    cJSON_ArrayForEach(id, ids)
    {
        if (cJSON_IsString(id))
            daebus__ws_disconnect_local(ws, id->valuestring,
                                        cJSON_IsNumber(code) ? code->valueint : 1000,
                                        cJSON_IsString(reason) ? reason->valuestring : NULL);
    }
}

/* Acts on one parsed message: header h, frame bytes body[0..blen). */
static void dispatch(ws_cluster *cl, const cJSON *h, const char *body, size_t blen)
{
    daebus_ws *ws = cl->ws;
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(h, "k");
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(h, "o");
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(h, "ids");
    if (cJSON_IsString(k) && cJSON_IsString(o) && strcmp(k->valuestring, "ch") == 0) {
        /* A channel message: every replica delivers it, its publisher included. */
        atomic_fetch_add(&ws->st_cluster_recv, 1);
        daebus__ws_channel_recv(ws, h, body, blen);
        return;
    }
    if (cJSON_IsString(k) && cJSON_IsString(o) && strcmp(k->valuestring, "chp") == 0) {
        daebus__ws_presence_recv(ws, h, body, blen); /* likewise: a presence event */
        return;
    }
    if (!cJSON_IsString(k) || !cJSON_IsString(o) || strcmp(o->valuestring, cl->self) == 0)
        return; /* our own broadcast, or not ours to read */
    atomic_fetch_add(&ws->st_cluster_recv, 1);
    const char *kind = k->valuestring;
    if (strcmp(kind, "all") == 0 || strcmp(kind, "send") == 0) {
        ws_frame *f = daebus__ws_frame_new(MG_WEBSOCKET_OPCODE_TEXT, body, blen);
        if (!f)
            return;
        if (kind[0] == 'a') {
            daebus__ws_broadcast_local(ws, f);
        } else {
            const cJSON *id;
            cJSON_ArrayForEach(id, ids)
            {
                if (cJSON_IsString(id))
                    daebus__ws_send_local(ws, id->valuestring, f);
            }
        }
        daebus__ws_frame_unref(f);
    } else if (strcmp(kind, "chs") == 0) {
        daebus__ws_channel_remote_apply(ws, h);
    } else if (strcmp(kind, "disc") == 0) {
        recv_disconnect(ws, ids, h);
    } else if (strcmp(kind, "data") == 0) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(h, "id");
        const cJSON *key = cJSON_GetObjectItemCaseSensitive(h, "key");
        const cJSON *value = cJSON_GetObjectItemCaseSensitive(h, "value");
        if (cJSON_IsString(id) && cJSON_IsString(key) && value)
            daebus__ws_set_data_local(ws, id->valuestring, key->valuestring, value);
    }
}

static void on_message(void *user, const daebus__redis_msg *msg)
{
    ws_cluster *cl = user;
    const char *nl = msg->cut_len ? NULL : memchr(msg->data, '\n', msg->len);
    if (!nl)
        return;
    cJSON *h = cJSON_ParseWithLength(msg->data, (size_t)(nl - msg->data));
    if (!h)
        return;
    size_t hl = (size_t)(nl - msg->data) + 1;
    dispatch(cl, h, msg->data + hl, msg->len - hl);
    cJSON_Delete(h);
}

static void on_state(void *user, const daebus__redis_event *ev)
{
    ws_cluster *cl = user;
    if (ev->state == DAEBUS__REDIS_UP) {
        if (ev->reconnect) /* no reaping for a while: ws_directory.c */
            atomic_store(&cl->up_since, daebus__now_mono());
        atomic_store(&cl->up, 1);
        atomic_store(&cl->resync, 1);
        daebus_log(DAEBUS_LOG_INFO, LOGC,
                   "cluster: connected to Redis%s; announcing this replica's clients",
                   ev->reconnect ? " again" : "");
        pthread_mutex_lock(&cl->lock);
        pthread_cond_broadcast(&cl->cond); /* the cluster thread, wait_up */
        pthread_mutex_unlock(&cl->lock);
    } else if (ev->state == DAEBUS__REDIS_DOWN ||
               (ev->state == DAEBUS__REDIS_RETRY && atomic_load(&cl->up))) {
        atomic_store(&cl->up, 0);
        daebus_log(DAEBUS_LOG_WARNING, LOGC,
                   "cluster: Redis lost (%s): local clients keep working, the other "
                   "replicas' clients are out of reach until it returns",
                   ev->why ? ev->why : "connection closed");
    }
}

/* ---- the cluster thread ---- */

/* The heartbeat of the cluster view (seconds), 1 when unknown. */
static double heartbeat_of(daebus_app *app)
{
    cJSON *a = NULL;
    double hb = 1.0;
    if (daebus_app_instances(app, &a) > 0) {
        const cJSON *it;
        cJSON_ArrayForEach(it, a)
        {
            const cJSON *self = cJSON_GetObjectItemCaseSensitive(it, "self");
            const cJSON *h = cJSON_GetObjectItemCaseSensitive(it, "heartbeat");
            if (cJSON_IsTrue(self) && cJSON_IsNumber(h) && h->valuedouble > 0)
                hb = h->valuedouble;
        }
    }
    cJSON_Delete(a);
    return hb;
}

static void tick(ws_cluster *cl)
{
    if (!atomic_load(&cl->up))
        return;
    daebus__ws_dir_load_scripts(cl);
    daebus__ws_dir_alive(cl, true);
    if (atomic_exchange(&cl->resync, 0) && daebus__ws_dir_resync(cl) != 0)
        atomic_store(&cl->resync, 1);
    daebus__ws_dir_flush(cl);
    daebus__ws_dir_reap(cl);
}

static void *cluster_main(void *arg)
{
    ws_cluster *cl = arg;
    daebus__sigpipe_block_thread();
    pthread_mutex_lock(&cl->lock);
    while (!cl->stop) {
        pthread_mutex_unlock(&cl->lock);
        cl->heartbeat = heartbeat_of(cl->ws->app);
        double period = cl->heartbeat / 2;
        tick(cl);
        pthread_mutex_lock(&cl->lock);
        if (!cl->stop)
            daebus__cond_wait_for(&cl->cond, &cl->lock, period);
    }
    pthread_mutex_unlock(&cl->lock);
    return NULL;
}

/* ---- start and stop ---- */

static void cluster_free(ws_cluster *cl)
{
    if (!cl)
        return;
    daebus__ws_cluster_pub_free(cl);
    daebus__ws_hpub_free(cl);
    if (cl->sub) {
        daebus__redis_sub_stop(cl->sub);
        daebus__redis_sub_destroy(cl->sub);
    }
    daebus__chist_destroy(cl->hist);
    daebus__redis_pub_destroy(cl->pub);
    free_names(cl);
    pthread_mutex_destroy(&cl->lock);
    pthread_mutex_destroy(&cl->dir_lock);
    pthread_cond_destroy(&cl->cond);
    free(cl);
}

/* Is cluster mode asked for? Returns: 1 yes, 0 no, DAEBUS_ESTATE (ON without a bus). */
static int wanted(daebus_ws *ws)
{
    if (ws->cluster_mode == DAEBUS_WS_CLUSTER_OFF)
        return 0;
    bool bus = daebus__app_component(ws->app, DAEBUS__COMP_BUS) != NULL;
    if (!bus && ws->cluster_mode == DAEBUS_WS_CLUSTER_ON) {
        daebus_log(DAEBUS_LOG_ERROR, LOGC,
                   "start: cluster mode ON needs a bus attached (the live-instance view)");
        return DAEBUS_ESTATE;
    }
    return bus;
}

static int open_connections(ws_cluster *cl)
{
    daebus__redis_pub_opts po = {.url = &cl->url,
                                 .connections = 2,
                                 .connect_timeout = CONNECT_TIMEOUT,
                                 .command_timeout = 2.0,
                                 .retry_after = 0.5,
                                 .log_component = LOGC};
    cl->pub = daebus__redis_pub_create(&po);
    daebus__redis_sub_opts so = {.url = &cl->url,
                                 .connect_timeout = CONNECT_TIMEOUT,
                                 .reconnect_initial = 0.05,
                                 .reconnect_max = DAEBUS__WS_RECONNECT_MAX,
                                 .health_idle = 2.0,
                                 .health_timeout = 2.0,
                                 .on_message = on_message,
                                 .on_state = on_state,
                                 .user = cl};
    cl->sub = daebus__redis_sub_create(&so);
    if (cl->pub && cl->ws->ch_history) {
        daebus__chist_opts ho = {.pub = cl->pub, .service = cl->service};
        daebus_error herr = {0};
        if (!(cl->hist = daebus__chist_create(&ho, &herr)))
            return DAEBUS_ENOMEM;
    }
    if (!cl->pub || !cl->sub || daebus__redis_sub_subscribe(cl->sub, cl->chan_all) < 0 ||
        daebus__redis_sub_subscribe(cl->sub, cl->chan_self) < 0)
        return DAEBUS_ENOMEM;
    daebus_error err = {0};
    int rc = daebus__redis_sub_start(cl->sub, false, &err);
    if (rc == 0 && pthread_create(&cl->thread, NULL, cluster_main, cl) == 0)
        cl->thread_started = 1;
    else if (rc == 0)
        rc = DAEBUS_ENOMEM;
    return rc;
}

/* Waits (at most the connect time-out) for the subscriber's first
 * connection, as the bus does at its start, so that the app is ready with
 * its cross-replica operations working; with Redis away it starts anyway
 * (they fail with DAEBUS_ECONN until Redis comes). */
static void wait_up(ws_cluster *cl)
{
    daebus__deadline d = daebus__deadline_in(CONNECT_TIMEOUT);
    pthread_mutex_lock(&cl->lock);
    while (!atomic_load(&cl->up) && !daebus__deadline_passed(d))
        daebus__cond_wait_until(&cl->cond, &cl->lock, d);
    pthread_mutex_unlock(&cl->lock);
}

int daebus__ws_cluster_start(daebus_ws *ws)
{
    int want = wanted(ws);
    if (want == 0 && ws->ch_history)
        daebus_log(DAEBUS_LOG_WARNING, LOGC,
                   "start: channel_history is set but cluster mode is off: no history is kept "
                   "(a subscribe with \"since\" answers \"recovered\": false)");
    if (want <= 0)
        return want;
    ws_cluster *cl = calloc(1, sizeof *cl);
    if (!cl)
        return DAEBUS_ENOMEM;
    cl->ws = ws;
    pthread_mutex_init(&cl->lock, NULL);
    pthread_mutex_init(&cl->dir_lock, NULL);
    daebus__cond_init(&cl->cond);
    daebus_error err = {0};
    int rc = daebus__redis_url_parse(daebus_app_redis_url(ws->app), &cl->url, &err);
    if (rc) {
        daebus_log(DAEBUS_LOG_ERROR, LOGC, "start: cluster mode: %s", err.message);
        cluster_free(cl);
        return rc;
    }
    rc = make_names(cl, daebus_app_service(ws->app), daebus_app_instance_id(ws->app));
    if (rc == 0)
        rc = open_connections(cl);
    if (rc == 0 && cl->hist)
        rc = daebus__ws_hpub_init(cl);
    if (rc == 0)
        rc = daebus__ws_cluster_pub_start(cl);
    if (rc) {
        cluster_free(cl);
        return rc;
    }
    ws->cluster = cl;
    daebus_log(DAEBUS_LOG_INFO, LOGC, "cluster mode: clients shared with the replicas of '%s' (%s)",
               cl->service, cl->chan_self);
    wait_up(cl);
    return 0;
}

void daebus__ws_cluster_stop(daebus_ws *ws)
{
    ws_cluster *cl = ws->cluster;
    if (!cl)
        return;
    pthread_mutex_lock(&cl->lock);
    cl->stop = 1;
    pthread_cond_signal(&cl->cond);
    pthread_mutex_unlock(&cl->lock);
    if (cl->thread_started)
        pthread_join(cl->thread, NULL);
    cl->thread_started = 0;
    daebus__ws_cluster_pub_stop(cl); /* what was queued is published first */
    daebus__ws_dir_leave(cl);
    daebus__redis_sub_stop(cl->sub);
    /* Kept until destroy: a late call from another component's thread fails
     * with DAEBUS_ECONN instead of touching freed memory. */
    atomic_store(&cl->up, 0);
    daebus__redis_pub_close(cl->pub);
}

void daebus__ws_cluster_free(daebus_ws *ws)
{
    cluster_free(ws->cluster);
    ws->cluster = NULL;
}

/* ---- departed ---- */

void daebus__ws_departed_run(daebus_ws *ws, const char *id, const cJSON *metadata, bool died)
{
    for (size_t i = 0; i < ws->ndeparted; i++)
        ws->departed[i].fn(ws, id, metadata, died, ws->departed[i].user);
}

int daebus_ws_on_client_departed(daebus_ws *ws, daebus_ws_departed_fn *fn, void *user)
{
    if (!ws || !fn)
        return DAEBUS_EINVAL;
    if (atomic_load(&ws->running)) {
        daebus_log(DAEBUS_LOG_ERROR, LOGC, "on_client_departed: register it before the app runs");
        return DAEBUS_ESTATE;
    }
    ws_departed *d = realloc(ws->departed, (ws->ndeparted + 1) * sizeof *d);
    if (!d)
        return DAEBUS_ENOMEM;
    d[ws->ndeparted++] = (ws_departed){fn, user};
    ws->departed = d;
    return 0;
}

bool daebus_ws_is_cluster(const daebus_ws *ws)
{
    return ws && ws->cluster;
}
