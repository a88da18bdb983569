/* bus.c - the Redis action bus component: ACTION and LISTEN handlers, replies, broadcasts.
 *
 * One subscriber thread owns a subscribed hiredis context (service channel +
 * LISTEN channels), reads with poll() so that it can be woken for shutdown,
 * parses each message (bus_parse.c) and submits a request object to the
 * worker pool; a full queue is answered "Service overloaded" at once. Replies
 * and broadcasts go through a few publisher connections, each behind its own
 * mutex, chosen round-robin; they reconnect lazily.
 *
 * A request is reference counted: the worker holds one reference while the
 * handler runs, daebus_bus_request_retain() adds more. When the last one goes
 * and an ACTION request with a reply channel has had no final reply, the bus
 * sends an error reply - so every answerable request gets exactly one final
 * reply. On connection loss the subscriber logs once, reconnects with capped
 * exponential backoff and subscribes again on a fresh connection (Redis does
 * not replay pub/sub messages, so no handler runs twice for one message).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "daebus/bus.h"
#include "daebus/caller.h"
#include "daebus/json.h"
#include "daebus/log.h"
#include "bus_parse.h"
#include "component.h"
#include "redis_conn.h"
#include "worker_pool.h"
#include "utf8.h"

#define LOGC "bus"

typedef struct pubconn {
    pthread_mutex_t lock;
    redisContext *ctx;
    double last_fail; /* monotonic time of the last failed connect */
} pubconn;

struct daebus_bus {
    daebus__component base;
    daebus_bus_options opts;
    daebus_app *app;
    const char *service; /* owned by the app */
    daebus_redis_url url;
    char where[320];

    const daebus__handler *actions, *listens;
    size_t nactions, nlistens;
    char **channels; /* subscribed channel names */
    size_t nchannels;

    daebus__pool *pool;
    pubconn *pubs;
    int npubs;
    atomic_uint rr;
    atomic_int pubs_open;

    pthread_t thread;
    int thread_started;
    atomic_int stopping;
    int wake[2];
    redisContext *sub;             /* subscriber thread only */
    daebus__redis_guard sub_guard; /* its size guard (subscriber thread only) */
    daebus__ratelimit big_log;     /* "message too large" lines (subscriber thread only) */
    daebus__ratelimit bad_log;     /* "malformed message" lines (subscriber thread only) */

    pthread_mutex_t state_lock;
    pthread_cond_t state_cond; /* connected changed; live requests changed */
    atomic_int connected;
    size_t live; /* requests not yet freed (under state_lock) */

    pthread_mutex_t caller_lock;
    daebus_caller *caller;

    atomic_ullong requests_received, requests_handled, errors, unknown_actions, malformed,
        too_large, overloads, replies_sent, listener_messages, broadcasts, reconnects;
};

struct daebus_bus_request {
    atomic_int refs;
    daebus_bus *bus;
    int is_action;
    daebus__bus_envelope env;
    char *channel;       /* arrival channel */
    char *reply_channel; /* NULL: cannot be answered */
    daebus_action_fn *afn;
    daebus_listen_fn *lfn;
    void *user;
    int handler_rc;
    pthread_mutex_t lock;
    int final_sent;
};

/* ---- publishing ---- */

static int pub_alive(redisContext *ctx)
{
    if (!ctx || ctx->err)
        return 0;
    struct pollfd p = {.fd = ctx->fd, .events = POLLIN};
    return poll(&p, 1, 0) == 0;
}

/* Returns: receivers >= 0, DAEBUS_ECONN or DAEBUS_ECLOSED. */
static int bus_publish(daebus_bus *bus, const char *channel, const char *data, size_t len)
{
    if (!atomic_load(&bus->pubs_open) || !bus->npubs)
        return DAEBUS_ECLOSED;
    unsigned i = atomic_fetch_add(&bus->rr, 1) % (unsigned)bus->npubs;
    pubconn *pc = &bus->pubs[i];
    int rc = DAEBUS_ECONN;
    pthread_mutex_lock(&pc->lock);
    if (!atomic_load(&bus->pubs_open)) {
        pthread_mutex_unlock(&pc->lock);
        return DAEBUS_ECLOSED;
    }
    if (!pub_alive(pc->ctx)) {
        if (pc->ctx)
            redisFree(pc->ctx);
        pc->ctx = NULL;
        double now = daebus__now_mono();
        /* While Redis is down, fail fast instead of waiting a connect time-out per call. */
        if (now - pc->last_fail >= 0.25) {
            daebus_error e = {0};
            pc->ctx = daebus__redis_connect(&bus->url, bus->opts.connect_timeout,
                                            bus->opts.command_timeout, &e);
            if (!pc->ctx) {
                pc->last_fail = now;
                DAEBUS_LOG_DEBUGF(LOGC, "publisher: %s", e.message);
            }
        }
    }
    if (pc->ctx) {
        daebus__sigpipe_guard g;
        daebus__sigpipe_block(&g);
        redisReply *r = redisCommand(pc->ctx, "PUBLISH %b %b", channel, strlen(channel), data, len);
        daebus__sigpipe_restore(&g);
        if (r && r->type == REDIS_REPLY_INTEGER)
            rc = (int)(r->integer > 0x7fffffff ? 0x7fffffff : r->integer);
        if (r)
            freeReplyObject(r);
        else {
            redisFree(pc->ctx);
            pc->ctx = NULL;
        }
    }
    pthread_mutex_unlock(&pc->lock);
    return rc;
}

static void close_publishers(daebus_bus *bus)
{
    atomic_store(&bus->pubs_open, 0);
    for (int i = 0; i < bus->npubs; i++) {
        pthread_mutex_lock(&bus->pubs[i].lock);
        if (bus->pubs[i].ctx)
            redisFree(bus->pubs[i].ctx);
        bus->pubs[i].ctx = NULL;
        pthread_mutex_unlock(&bus->pubs[i].lock);
    }
}

/* Sends one response to channel (used for requests and for replies the
 * subscriber thread makes without a request object). */
static int send_response(daebus_bus *bus, const char *channel, bool error, const cJSON *payload,
                         const cJSON *request_id, bool final)
{
    char *s = daebus__bus_build_response(error, payload, request_id, final);
    if (!s)
        return DAEBUS_ENOMEM;
    int rc = bus_publish(bus, channel, s, strlen(s));
    free(s);
    if (rc >= 0) {
        atomic_fetch_add(&bus->replies_sent, 1);
        if (error)
            atomic_fetch_add(&bus->errors, 1);
        return 0;
    }
    /* While the connection is down the subscriber has already said so once. */
    daebus_log(atomic_load(&bus->connected) ? DAEBUS_LOG_WARNING : DAEBUS_LOG_DEBUG, LOGC,
               "could not publish a reply on '%.*s': %s", daebus__utf8_prec(channel, 100), channel,
               daebus_strerror(rc));
    return rc;
}

static int send_error_text(daebus_bus *bus, const char *channel, const cJSON *request_id,
                           const char *text)
{
    cJSON *p = cJSON_CreateObject();
    if (!p || !cJSON_AddStringToObject(p, "error", text)) {
        cJSON_Delete(p);
        return DAEBUS_ENOMEM;
    }
    int rc = send_response(bus, channel, true, p, request_id, true);
    cJSON_Delete(p);
    return rc;
}

/* ---- requests ---- */

static void live_add(daebus_bus *bus, int delta)
{
    pthread_mutex_lock(&bus->state_lock);
    bus->live = (size_t)((long)bus->live + delta);
    pthread_cond_broadcast(&bus->state_cond);
    pthread_mutex_unlock(&bus->state_lock);
}

static daebus_bus_request *request_new(daebus_bus *bus, daebus__bus_envelope *env,
                                       const char *channel, const char *reply_channel)
{
    daebus_bus_request *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->channel = strdup(channel);
    r->reply_channel = reply_channel ? strdup(reply_channel) : NULL;
    if (!r->channel || (reply_channel && !r->reply_channel)) {
        free(r->channel);
        free(r->reply_channel);
        free(r);
        return NULL;
    }
    atomic_init(&r->refs, 1);
    r->bus = bus;
    r->env = *env;
    memset(env, 0, sizeof *env);
    pthread_mutex_init(&r->lock, NULL);
    live_add(bus, 1);
    return r;
}

static void request_free(daebus_bus_request *r)
{
    daebus_bus *bus = r->bus;
    daebus__bus_envelope_free(&r->env);
    free(r->channel);
    free(r->reply_channel);
    pthread_mutex_destroy(&r->lock);
    free(r);
    live_add(bus, -1);
}

/* Claims the final reply. Returns: 1 if the caller may send it, 0 if one was sent. */
static int claim_final(daebus_bus_request *r)
{
    pthread_mutex_lock(&r->lock);
    int ok = !r->final_sent;
    r->final_sent = 1;
    pthread_mutex_unlock(&r->lock);
    return ok;
}

static void auto_error(daebus_bus_request *r, const char *fmt_action)
{
    if (!r->is_action || !r->reply_channel || !claim_final(r))
        return;
    char text[300];
    daebus__utf8_snprintf(text, sizeof text, fmt_action, r->env.action ? r->env.action : "?");
    send_error_text(r->bus, r->reply_channel, r->env.request_id, text);
}

void daebus_bus_request_retain(daebus_bus_request *r)
{
    if (r)
        atomic_fetch_add(&r->refs, 1);
}

void daebus_bus_request_release(daebus_bus_request *r)
{
    if (!r)
        return;
    if (atomic_fetch_sub(&r->refs, 1) != 1)
        return;
    auto_error(r, "Action '%s' sent no reply");
    request_free(r);
}

static void run_action(void *arg)
{
    daebus_bus_request *r = arg;
    int rc = r->afn(r, r->env.payload, r->user);
    r->handler_rc = rc;
    atomic_fetch_add(&r->bus->requests_handled, 1);
    if (rc < 0) {
        DAEBUS_LOG_ERRORF(LOGC, "action '%s' failed: returned %d (%s: %s)", r->env.action, rc,
                          daebus_errname(rc), daebus_strerror(rc));
        auto_error(r, "Internal error in action '%s'");
    }
    daebus_bus_request_release(r);
}

static void run_listen(void *arg)
{
    daebus_bus_request *r = arg;
    int rc = r->lfn(r, r->env.root, r->user);
    if (rc < 0)
        DAEBUS_LOG_WARNF(LOGC, "listener on '%s' failed: returned %d (%s: %s)", r->channel, rc,
                         daebus_errname(rc), daebus_strerror(rc));
    daebus_bus_request_release(r);
}

static void drop_request(void *arg)
{
    daebus_bus_request *r = arg;
    auto_error(r, "Service shutting down; action '%s' was not run");
    daebus_bus_request_release(r);
}

/* ---- request API ---- */

const char *daebus_bus_request_id(const daebus_bus_request *r)
{
    return r && cJSON_IsString(r->env.request_id) ? r->env.request_id->valuestring : NULL;
}
const cJSON *daebus_bus_request_id_json(const daebus_bus_request *r)
{
    return r ? r->env.request_id : NULL;
}
const char *daebus_bus_request_reply_to(const daebus_bus_request *r)
{
    return r ? r->reply_channel : NULL;
}
const char *daebus_bus_request_service(const daebus_bus_request *r)
{
    return r ? r->env.service : NULL;
}
const char *daebus_bus_request_action(const daebus_bus_request *r)
{
    return r && r->is_action ? r->env.action : NULL;
}
const char *daebus_bus_request_channel(const daebus_bus_request *r)
{
    return r ? r->channel : NULL;
}
const cJSON *daebus_bus_request_raw(const daebus_bus_request *r)
{
    return r ? r->env.root : NULL;
}
daebus_app *daebus_bus_request_app(const daebus_bus_request *r)
{
    return r ? r->bus->app : NULL;
}
daebus_bus *daebus_bus_request_bus(const daebus_bus_request *r)
{
    return r ? r->bus : NULL;
}
bool daebus_bus_request_answered(const daebus_bus_request *r)
{
    if (!r)
        return false;
    pthread_mutex_lock((pthread_mutex_t *)&r->lock);
    bool a = r->final_sent;
    pthread_mutex_unlock((pthread_mutex_t *)&r->lock);
    return a;
}

static int reply_common(daebus_bus_request *r, bool error, const cJSON *payload, bool final)
{
    if (!r) {
        DAEBUS_LOG_WARNF(LOGC, "reply: request is NULL");
        return DAEBUS_EINVAL;
    }
    if (final) {
        if (!claim_final(r)) {
            DAEBUS_LOG_WARNF(LOGC,
                             "reply to '%s' after its final reply: ignored (send progress "
                             "with daebus_bus_progress() before the final reply)",
                             r->env.action ? r->env.action : r->channel);
            return DAEBUS_ESTATE;
        }
    } else if (daebus_bus_request_answered(r)) {
        DAEBUS_LOG_WARNF(LOGC, "progress after the final reply: ignored");
        return DAEBUS_ESTATE;
    }
    if (!r->reply_channel)
        return 0; /* fire-and-forget: nothing to answer */
    return send_response(r->bus, r->reply_channel, error, payload, r->env.request_id, final);
}

int daebus_bus_reply(daebus_bus_request *r, const cJSON *payload)
{
    return reply_common(r, false, payload, true);
}

int daebus_bus_reply_take(daebus_bus_request *r, cJSON *payload)
{
    int rc = reply_common(r, false, payload, true);
    cJSON_Delete(payload);
    return rc;
}

int daebus_bus_reply_error(daebus_bus_request *r, const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    daebus__utf8_vsnprintf(text, sizeof text, fmt ? fmt : "error", ap);
    va_end(ap);
    cJSON *p = cJSON_CreateObject();
    if (!p || !cJSON_AddStringToObject(p, "error", text)) {
        cJSON_Delete(p);
        return DAEBUS_ENOMEM;
    }
    int rc = reply_common(r, true, p, true);
    cJSON_Delete(p);
    return rc;
}

int daebus_bus_progress(daebus_bus_request *r, const cJSON *payload, double pct)
{
    cJSON *p = daebus__bus_progress_payload(payload, pct);
    if (!p)
        return DAEBUS_ENOMEM;
    int rc = reply_common(r, false, p, false);
    cJSON_Delete(p);
    return rc;
}

int daebus_bus_progress_take(daebus_bus_request *r, cJSON *payload, double pct)
{
    int rc = daebus_bus_progress(r, payload, pct);
    cJSON_Delete(payload);
    return rc;
}

/* ---- the subscriber thread ---- */

static void excerpt(const char *data, size_t len, char *buf, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 5 < cap; i++) {
        unsigned char ch = (unsigned char)data[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '\\') {
            buf[o++] = (char)ch;
        } else {
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", ch);
        }
    }
    if (o >= cap)
        o = cap - 1;
    buf[o] = '\0';
}

/* The end of a rate-limited log line: how many like it were not logged. */
static const char *more_text(long missed, char *buf, size_t len)
{
    if (missed <= 0)
        return "";
    snprintf(buf, len, "; %ld more since the last such line", missed);
    return buf;
}

static const daebus__handler *find_handler(const daebus__handler *h, size_t n, const char *key)
{
    /* Later registrations win: search from the end. */
    for (size_t i = n; i-- > 0;)
        if (h[i].key && strcmp(h[i].key, key) == 0)
            return &h[i];
    return NULL;
}

static void submit(daebus_bus *bus, daebus_bus_request *r, daebus__job_fn *fn)
{
    int rc = daebus__pool_submit(bus->pool, fn, drop_request, r);
    if (rc == 0)
        return;
    if (rc == DAEBUS_EFULL) {
        atomic_fetch_add(&bus->overloads, 1);
        DAEBUS_LOG_WARNF(LOGC, "worker queue full: refusing a message on '%s'", r->channel);
        if (r->is_action && r->reply_channel && claim_final(r))
            send_error_text(bus, r->reply_channel, r->env.request_id,
                            "Service overloaded, try again later");
    } else {
        auto_error(r, "Service shutting down; action '%s' was not run");
    }
    daebus_bus_request_release(r);
}

/* The reply channel of env (see daebus__bus_reply_channel); a name too long
 * for buf is logged, the message is then handled without a reply. */
static const char *reply_channel(daebus_bus *bus, const daebus__bus_envelope *env,
                                 const char *channel, char *buf, size_t len)
{
    const char *reply = daebus__bus_reply_channel(env, bus->service, buf, len);
    if (!reply && (env->reply_to || env->request_id))
        DAEBUS_LOG_WARNF(LOGC,
                         "message on '%s': reply channel name longer than %zu bytes; handled "
                         "without a reply",
                         channel, len - 1);
    return reply;
}

static void on_service_message(daebus_bus *bus, const char *channel, const char *data, size_t len)
{
    daebus__bus_envelope env;
    char why[96];
    char rc_buf[512];
    if (daebus__bus_parse_request(data, len, &env, why, sizeof why) != 0) {
        atomic_fetch_add(&bus->malformed, 1);
        char ex[100], mbuf[64];
        excerpt(data, len < 60 ? len : 60, ex, sizeof ex);
        long missed = daebus__ratelimit_pass(&bus->bad_log, daebus__now_mono(), 1.0);
        if (missed >= 0)
            DAEBUS_LOG_WARNF(LOGC, "malformed message on '%s' (%s, %zu bytes): %s%s%s", channel,
                             why, len, ex, len > 60 ? "..." : "",
                             more_text(missed, mbuf, sizeof mbuf));
        /* The caller would wait for its time-out: answer if reply_to and request_id can be read. */
        char rid[256];
        if (daebus__bus_scan_reply(data, len, rc_buf, sizeof rc_buf, rid, sizeof rid) == 0) {
            cJSON *id = cJSON_CreateString(rid);
            char text[160];
            snprintf(text, sizeof text, "%s%s",
                     strncmp(why, "invalid JSON", 12) ? "invalid JSON: " : "", why);
            if (id)
                send_error_text(bus, rc_buf, id, text);
            cJSON_Delete(id);
        }
        return;
    }
    const char *reply = reply_channel(bus, &env, channel, rc_buf, sizeof rc_buf);
    if (!env.action) {
        DAEBUS_LOG_DEBUGF(LOGC, "message without action on '%s' ignored", channel);
        daebus__bus_envelope_free(&env);
        return;
    }
    atomic_fetch_add(&bus->requests_received, 1);
    const daebus__handler *h = find_handler(bus->actions, bus->nactions, env.action);
    if (!h) {
        atomic_fetch_add(&bus->unknown_actions, 1);
        if (env.reply_to && env.request_id) {
            char text[200];
            snprintf(text, sizeof text, "Unknown action '%.*s'", daebus__utf8_prec(env.action, 150),
                     env.action);
            send_error_text(bus, env.reply_to, env.request_id, text);
        }
        DAEBUS_LOG_DEBUGF(LOGC, "no handler for action '%.*s'", daebus__utf8_prec(env.action, 100),
                          env.action);
        daebus__bus_envelope_free(&env);
        return;
    }
    daebus_bus_request *r = request_new(bus, &env, channel, reply);
    if (!r) {
        DAEBUS_LOG_ERRORF(LOGC, "out of memory: dropping a request");
        daebus__bus_envelope_free(&env);
        return;
    }
    r->is_action = 1;
    r->afn = h->desc->fn.action;
    r->user = h->desc->opts.user;
    submit(bus, r, run_action);
}

static void on_listen_message(daebus_bus *bus, const daebus__handler *h, const char *channel,
                              const char *data, size_t len)
{
    daebus__bus_envelope env;
    char why[96];
    char rc_buf[512];
    if (daebus__bus_parse_request(data, len, &env, why, sizeof why) != 0) {
        atomic_fetch_add(&bus->malformed, 1);
        char ex[100], mbuf[64];
        excerpt(data, len < 60 ? len : 60, ex, sizeof ex);
        long missed = daebus__ratelimit_pass(&bus->bad_log, daebus__now_mono(), 1.0);
        if (missed >= 0)
            DAEBUS_LOG_WARNF(LOGC, "ignoring message on '%s' (%s): %s%s%s", channel, why, ex,
                             len > 60 ? "..." : "", more_text(missed, mbuf, sizeof mbuf));
        return;
    }
    const char *reply = reply_channel(bus, &env, channel, rc_buf, sizeof rc_buf);
    daebus_bus_request *r = request_new(bus, &env, channel, reply);
    if (!r) {
        daebus__bus_envelope_free(&env);
        return;
    }
    r->lfn = h->desc->fn.listen;
    r->user = h->desc->opts.user;
    atomic_fetch_add(&bus->listener_messages, 1);
    submit(bus, r, run_listen);
}

/* A message over max_message_size, of which the subscriber's size guard
 * kept only the first len bytes of data and the last bytes (guard tail):
 * counted, logged at most once a second, never parsed; a request on the
 * service channel whose reply_to and request_id can be read from those
 * bytes gets an error reply. */
static void on_too_large(daebus_bus *bus, const char *channel, const char *data, size_t len)
{
    const daebus__redis_guard *g = &bus->sub_guard;
    atomic_fetch_add(&bus->too_large, 1);
    long missed = daebus__ratelimit_pass(&bus->big_log, daebus__now_mono(), 1.0);
    char mbuf[64];
    if (missed >= 0)
        DAEBUS_LOG_WARNF(LOGC,
                         "message of %zu bytes on '%.100s' refused unread: over the limit of %zu "
                         "bytes (max_message_size)%s",
                         g->cut_len, channel, bus->opts.max_message_size,
                         more_text(missed, mbuf, sizeof mbuf));
    if (bus->opts.no_service_channel || strcmp(channel, bus->service) != 0)
        return;
    char reply[512], rid[256];
    if (daebus__bus_scan_reply_cut(data, len, g->tail, g->tail_len, reply, sizeof reply, rid,
                                   sizeof rid) != 0)
        return;
    cJSON *id = cJSON_CreateString(rid);
    char text[160];
    snprintf(text, sizeof text, "Message too large (%zu bytes; limit %zu)", g->cut_len,
             bus->opts.max_message_size);
    if (id)
        send_error_text(bus, reply, id, text);
    cJSON_Delete(id);
}

static void on_message(daebus_bus *bus, const char *channel, const char *data, size_t len)
{
    if (bus->sub_guard.cut_len) {
        on_too_large(bus, channel, data, len);
        return;
    }
    if (!bus->opts.no_service_channel && strcmp(channel, bus->service) == 0) {
        on_service_message(bus, channel, data, len);
        return;
    }
    const daebus__handler *h = find_handler(bus->listens, bus->nlistens, channel);
    if (h)
        on_listen_message(bus, h, channel, data, len);
}

static void set_connected(daebus_bus *bus, int v)
{
    pthread_mutex_lock(&bus->state_lock);
    atomic_store(&bus->connected, v);
    pthread_cond_broadcast(&bus->state_cond);
    pthread_mutex_unlock(&bus->state_lock);
}

static void drain_wake(daebus_bus *bus)
{
    char buf[64];
    while (read(bus->wake[0], buf, sizeof buf) > 0) {
    }
}

/* Connects and subscribes to every channel. Returns 0 or -1 (err filled). */
static int subscribe_all(daebus_bus *bus, daebus_error *err)
{
    redisContext *s = daebus__redis_connect(&bus->url, bus->opts.connect_timeout, 0, err);
    if (!s)
        return -1;
    /* Before the first message: nothing over the limit is ever copied or parsed. */
    daebus__redis_guard_attach(s, &bus->sub_guard, bus->opts.max_message_size);
    const char **argv = calloc(bus->nchannels + 1, sizeof *argv);
    if (!argv) {
        redisFree(s);
        daebus_error_set(err, DAEBUS_ENOMEM, "out of memory");
        return -1;
    }
    argv[0] = "SUBSCRIBE";
    for (size_t i = 0; i < bus->nchannels; i++)
        argv[i + 1] = bus->channels[i];
    int rc = redisAppendCommandArgv(s, (int)bus->nchannels + 1, argv, NULL);
    free(argv);
    if (rc != REDIS_OK) {
        redisFree(s);
        daebus_error_set(err, DAEBUS_ENOMEM, "SUBSCRIBE: out of memory");
        return -1;
    }
    size_t confirmed = 0;
    double until = daebus__now_mono() + bus->opts.connect_timeout;
    while (confirmed < bus->nchannels) {
        redisReply *r = NULL;
        int n = daebus__redis_read(s, &r, 50, bus->wake[0]);
        if (n < 0 || daebus__now_mono() > until || atomic_load(&bus->stopping)) {
            daebus_error_set(err, DAEBUS_ECONN, "SUBSCRIBE: %s",
                             s->err ? s->errstr : "no confirmation");
            if (r) /* a reply read just before the deadline or the stop */
                freeReplyObject(r);
            redisFree(s);
            return -1;
        }
        if (n == 0)
            continue;
        if (r->type == REDIS_REPLY_ERROR) {
            daebus_error_set(err, DAEBUS_ECONN, "SUBSCRIBE refused: %.*s",
                             daebus__utf8_prec(r->str, 120), r->str);
            freeReplyObject(r);
            redisFree(s);
            return -1;
        }
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
            r->element[0]->type == REDIS_REPLY_STRING &&
            strcmp(r->element[0]->str, "subscribe") == 0)
            confirmed++;
        freeReplyObject(r);
    }
    bus->sub = s;
    return 0;
}

static void sleep_or_wake(daebus_bus *bus, double seconds)
{
    struct pollfd p = {.fd = bus->wake[0], .events = POLLIN};
    int ms = (int)(seconds * 1000);
    if (poll(&p, 1, ms < 1 ? 1 : ms) > 0)
        drain_wake(bus);
}

static void *subscriber_main(void *arg)
{
    daebus_bus *bus = arg;
    daebus__sigpipe_block_thread();
    double backoff = bus->opts.reconnect_initial;
    int ever = 0, failing_logged = 0;
    double last_rx = 0, ping_at = 0;
    while (!atomic_load(&bus->stopping)) {
        if (!bus->sub) {
            daebus_error e = {0};
            if (subscribe_all(bus, &e) == 0) {
                if (ever) {
                    atomic_fetch_add(&bus->reconnects, 1);
                    DAEBUS_LOG_INFOF(LOGC, "reconnected to %s; subscribed again to %zu channel(s)",
                                     bus->where, bus->nchannels);
                } else {
                    DAEBUS_LOG_INFOF(LOGC, "connected to %s; subscribed to %zu channel(s)",
                                     bus->where, bus->nchannels);
                }
                ever = 1;
                failing_logged = 0;
                last_rx = daebus__now_mono();
                ping_at = 0;
                backoff = bus->opts.reconnect_initial;
                set_connected(bus, 1);
            } else if (!atomic_load(&bus->stopping)) {
                if (!failing_logged)
                    DAEBUS_LOG_WARNF(LOGC, "cannot reach Redis at %s (%s); retrying with backoff",
                                     bus->where, e.message);
                else
                    DAEBUS_LOG_DEBUGF(LOGC, "reconnect failed: %s (next try in %.2fs)", e.message,
                                      backoff);
                failing_logged = 1;
                sleep_or_wake(bus, backoff);
                backoff *= 2;
                if (backoff > bus->opts.reconnect_max)
                    backoff = bus->opts.reconnect_max;
            }
            continue;
        }
        redisReply *r = NULL;
        int rc = daebus__redis_read(bus->sub, &r, bus->opts.health_interval < 1 ? 50 : 500,
                                    bus->wake[0]);
        double now = daebus__now_mono();
        if (rc == 1 || bus->sub_guard.got_bytes) {
            /* A big message still arriving is traffic too (its PONG queues behind it). */
            last_rx = now;
            ping_at = 0;
        } else if (rc == 0 && ping_at > 0 && now - ping_at > bus->opts.health_interval) {
            rc = DAEBUS_ECONN;
            snprintf(bus->sub->errstr, sizeof bus->sub->errstr, "no answer to PING for %.1fs",
                     bus->opts.health_interval);
        } else if (rc == 0 && ping_at == 0 && now - last_rx > bus->opts.health_interval) {
            if (redisAppendCommand(bus->sub, "PING") == REDIS_OK)
                ping_at = now;
        }
        if (rc < 0) {
            set_connected(bus, 0);
            DAEBUS_LOG_WARNF(LOGC, "lost connection to Redis at %s (%s); reconnecting", bus->where,
                             bus->sub->errstr[0] ? bus->sub->errstr : "closed");
            failing_logged = 1;
            redisFree(bus->sub);
            bus->sub = NULL;
            continue;
        }
        if (rc == 0) {
            drain_wake(bus);
            continue;
        }
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
            r->element[0]->type == REDIS_REPLY_STRING &&
            strcmp(r->element[0]->str, "message") == 0 &&
            r->element[1]->type == REDIS_REPLY_STRING && r->element[2]->type == REDIS_REPLY_STRING)
            on_message(bus, r->element[1]->str, r->element[2]->str, r->element[2]->len);
        freeReplyObject(r);
    }
    if (bus->sub) {
        redisFree(bus->sub);
        bus->sub = NULL;
    }
    set_connected(bus, 0);
    return NULL;
}

/* ---- component ops ---- */

static void free_channels(daebus_bus *bus)
{
    for (size_t i = 0; i < bus->nchannels; i++)
        free(bus->channels[i]);
    free(bus->channels);
    bus->channels = NULL;
    bus->nchannels = 0;
}

static int add_channel(daebus_bus *bus, const char *name)
{
    for (size_t i = 0; i < bus->nchannels; i++)
        if (strcmp(bus->channels[i], name) == 0)
            return 0;
    char *d = strdup(name);
    if (!d)
        return DAEBUS_ENOMEM;
    bus->channels[bus->nchannels++] = d;
    return 0;
}

static void bus_stop(void *self);

static int bus_start(void *self)
{
    daebus_bus *bus = self;
    daebus_app *app = bus->base.app;
    bus->app = app;
    bus->service = daebus_app_service(app);
    daebus_error e = {0};
    if (daebus_redis_url_parse(daebus_app_redis_url(app), &bus->url, &e) != 0) {
        DAEBUS_LOG_ERRORF(LOGC, "%s (set --redis or DAEBUS_REDIS_URL)", e.message);
        return DAEBUS_EINVAL;
    }
    daebus__redis_url_describe(&bus->url, bus->where, sizeof bus->where);
    bus->nactions = daebus__app_handlers(app, DAEBUS_HANDLER_ACTION, &bus->actions);
    bus->nlistens = daebus__app_handlers(app, DAEBUS_HANDLER_LISTEN, &bus->listens);
    bus->channels = calloc(bus->nlistens + 1, sizeof *bus->channels);
    if (!bus->channels)
        return DAEBUS_ENOMEM;
    if (!bus->opts.no_service_channel && add_channel(bus, bus->service) != 0)
        return DAEBUS_ENOMEM;
    for (size_t i = 0; i < bus->nlistens; i++) {
        if (!bus->opts.no_service_channel && strcmp(bus->listens[i].key, bus->service) == 0)
            DAEBUS_LOG_WARNF(LOGC, "LISTEN on the service channel '%s' is ignored: actions use it",
                             bus->service);
        if (add_channel(bus, bus->listens[i].key) != 0)
            return DAEBUS_ENOMEM;
    }
    bus->pool = daebus__pool_create("bus", daebus_app_max_workers(app), bus->opts.max_queue);
    bus->pubs = calloc((size_t)bus->opts.publishers, sizeof *bus->pubs);
    if (!bus->pool || !bus->pubs || pipe(bus->wake) != 0) {
        DAEBUS_LOG_ERRORF(LOGC, "cannot create the worker pool, publishers or wake pipe");
        bus_stop(bus);
        return DAEBUS_ENOMEM;
    }
    for (int i = 0; i < 2; i++) {
        fcntl(bus->wake[i], F_SETFL, fcntl(bus->wake[i], F_GETFL) | O_NONBLOCK);
        fcntl(bus->wake[i], F_SETFD, FD_CLOEXEC);
    }
    bus->npubs = bus->opts.publishers;
    for (int i = 0; i < bus->npubs; i++)
        pthread_mutex_init(&bus->pubs[i].lock, NULL);
    atomic_store(&bus->pubs_open, 1);
    atomic_store(&bus->stopping, 0);
    if (bus->nchannels == 0) {
        DAEBUS_LOG_INFOF(LOGC, "no channel to subscribe to; publishing only");
        return 0;
    }
    if (pthread_create(&bus->thread, NULL, subscriber_main, bus) != 0) {
        bus_stop(bus);
        return DAEBUS_ENOMEM;
    }
    bus->thread_started = 1;
    /* Normally ready on return; if Redis is down the thread keeps trying. */
    double until = daebus__now_mono() + bus->opts.connect_timeout + 0.5;
    pthread_mutex_lock(&bus->state_lock);
    while (!atomic_load(&bus->connected) && daebus__now_mono() < until) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&bus->state_cond, &bus->state_lock, &ts);
    }
    pthread_mutex_unlock(&bus->state_lock);
    return 0;
}

static void bus_stop(void *self)
{
    daebus_bus *bus = self;
    double drain = daebus_app_shutdown_timeout(bus->app);
    atomic_store(&bus->stopping, 1);
    if (bus->thread_started) {
        char b = 1;
        ssize_t n = write(bus->wake[1], &b, 1);
        (void)n;
        pthread_join(bus->thread, NULL);
        bus->thread_started = 0;
    }
    if (bus->pool) {
        size_t dropped = daebus__pool_shutdown(bus->pool, drain);
        if (dropped)
            DAEBUS_LOG_WARNF(LOGC, "%zu queued message(s) dropped at shutdown", dropped);
    }
    /* Retained requests may still reply from other threads. */
    double until = daebus__now_mono() + drain;
    pthread_mutex_lock(&bus->state_lock);
    while (bus->live > 0 && daebus__now_mono() < until) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&bus->state_cond, &bus->state_lock, &ts);
    }
    size_t live = bus->live;
    pthread_mutex_unlock(&bus->state_lock);
    if (live)
        DAEBUS_LOG_WARNF(LOGC,
                         "%zu retained request(s) not released at shutdown; release them "
                         "before destroying the app",
                         live);
    pthread_mutex_lock(&bus->caller_lock);
    daebus_caller *c = bus->caller;
    bus->caller = NULL;
    pthread_mutex_unlock(&bus->caller_lock);
    daebus_caller_destroy(c);
    close_publishers(bus);
    daebus__pool_destroy(bus->pool);
    bus->pool = NULL;
    for (int i = 0; i < 2; i++) {
        if (bus->wake[i] >= 0)
            close(bus->wake[i]);
        bus->wake[i] = -1;
    }
    for (int i = 0; i < bus->npubs; i++)
        pthread_mutex_destroy(&bus->pubs[i].lock);
    free(bus->pubs);
    bus->pubs = NULL;
    bus->npubs = 0;
    free_channels(bus);
}

static void bus_destroy_op(void *self)
{
    daebus_bus *bus = self;
    pthread_mutex_destroy(&bus->state_lock);
    pthread_cond_destroy(&bus->state_cond);
    pthread_mutex_destroy(&bus->caller_lock);
    free(bus);
}

static void bus_describe(void *self, char *buf, size_t len)
{
    daebus_bus *bus = self;
    if (bus->opts.no_service_channel)
        snprintf(buf, len, "bus %zu listen channel(s)", bus->nlistens);
    else
        snprintf(buf, len, "channel %s", bus->service);
}

static const daebus__component_ops bus_ops = {
    "bus", DAEBUS__COMP_BUS, NULL, bus_start, bus_stop, bus_destroy_op, bus_describe,
};

/* ---- public component API ---- */

daebus_bus *daebus_bus_create(const daebus_bus_options *opts, daebus_error *err)
{
    daebus_bus *bus = calloc(1, sizeof *bus);
    if (!bus) {
        daebus_error_set(err, DAEBUS_ENOMEM, "bus: out of memory");
        return NULL;
    }
    if (opts)
        bus->opts = *opts;
    daebus_bus_options *o = &bus->opts;
    if (!o->max_message_size)
        o->max_message_size = 1024 * 1024;
    if (!o->max_queue)
        o->max_queue = 1024;
    if (o->publishers <= 0)
        o->publishers = 2;
    if (o->publishers > 64)
        o->publishers = 64;
    if (o->connect_timeout <= 0)
        o->connect_timeout = 2.0;
    if (o->command_timeout <= 0)
        o->command_timeout = 5.0;
    if (o->reconnect_initial <= 0)
        o->reconnect_initial = 0.1;
    if (o->reconnect_max <= 0)
        o->reconnect_max = 5.0;
    if (o->health_interval <= 0)
        o->health_interval = 10.0;
    if (o->reconnect_max < o->reconnect_initial)
        o->reconnect_max = o->reconnect_initial;
    bus->wake[0] = bus->wake[1] = -1;
    pthread_mutex_init(&bus->state_lock, NULL);
    pthread_cond_init(&bus->state_cond, NULL);
    pthread_mutex_init(&bus->caller_lock, NULL);
    bus->base.ops = &bus_ops;
    bus->base.self = bus;
    return bus;
}

int daebus_bus_attach(daebus_bus *bus, daebus_app *app)
{
    if (!bus) {
        DAEBUS_LOG_ERRORF(LOGC, "attach: the component is NULL (did daebus_bus_create fail?)");
        return DAEBUS_EINVAL;
    }
    return daebus__app_attach(app, &bus->base);
}

void daebus_bus_destroy(daebus_bus *bus)
{
    if (!bus)
        return;
    if (bus->base.app) {
        DAEBUS_LOG_WARNF(LOGC, "daebus_bus_destroy on an attached bus ignored: the app owns it");
        return;
    }
    bus_destroy_op(bus);
}

void daebus_bus_get_stats(daebus_bus *bus, struct daebus_bus_stats *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof *out);
    if (!bus)
        return;
    out->requests_received = atomic_load(&bus->requests_received);
    out->requests_handled = atomic_load(&bus->requests_handled);
    out->errors = atomic_load(&bus->errors);
    out->unknown_actions = atomic_load(&bus->unknown_actions);
    out->malformed = atomic_load(&bus->malformed);
    out->too_large = atomic_load(&bus->too_large);
    pthread_mutex_lock(&bus->caller_lock);
    if (bus->caller)
        out->too_large += daebus__caller_too_large(bus->caller);
    pthread_mutex_unlock(&bus->caller_lock);
    out->overloads = atomic_load(&bus->overloads);
    out->replies_sent = atomic_load(&bus->replies_sent);
    out->listener_messages = atomic_load(&bus->listener_messages);
    out->broadcasts = atomic_load(&bus->broadcasts);
    out->reconnects = atomic_load(&bus->reconnects);
    out->connected = atomic_load(&bus->connected);
}

int daebus_bus_broadcast(daebus_bus *bus, const char *channel, const cJSON *obj)
{
    if (!bus || !channel || !*channel || !cJSON_IsObject(obj)) {
        DAEBUS_LOG_WARNF(LOGC, "broadcast: needs a bus, a non-empty channel and a JSON object");
        return DAEBUS_EINVAL;
    }
    if (!atomic_load(&bus->pubs_open))
        return DAEBUS_ESTATE;
    char *s = daebus_json_print(obj, NULL);
    if (!s)
        return DAEBUS_ENOMEM;
    int rc = bus_publish(bus, channel, s, strlen(s));
    free(s);
    if (rc == DAEBUS_ECLOSED)
        rc = DAEBUS_ESTATE;
    if (rc >= 0)
        atomic_fetch_add(&bus->broadcasts, 1);
    return rc;
}

int daebus_bus_broadcast_take(daebus_bus *bus, const char *channel, cJSON *obj)
{
    int rc = daebus_bus_broadcast(bus, channel, obj);
    cJSON_Delete(obj);
    return rc;
}

daebus_caller *daebus_bus_caller(daebus_bus *bus)
{
    if (!bus || !atomic_load(&bus->pubs_open) || atomic_load(&bus->stopping))
        return NULL;
    pthread_mutex_lock(&bus->caller_lock);
    if (!bus->caller) {
        daebus_error e = {0};
        daebus_caller_options co = DAEBUS_CALLER_OPTIONS_INIT;
        co.max_message_size = bus->opts.max_message_size;
        bus->caller = daebus_caller_create(daebus_app_redis_url(bus->app), &co, &e);
        if (!bus->caller)
            DAEBUS_LOG_WARNF(LOGC, "cannot create the bus caller: %s", e.message);
    }
    daebus_caller *c = bus->caller;
    pthread_mutex_unlock(&bus->caller_lock);
    return c;
}
