/* bus.c - the Redis action bus component: life cycle, connection state, stats, broadcasts.
 *
 * The bus is the Daebus action protocol on top of the Redis transport
 * (framework/redis/): one subscriber (service channel + LISTEN channels) whose
 * thread hands each message to bus_dispatch.c, and one publisher pool for
 * replies and broadcasts (bus_request.c). The transport logs nothing about
 * the connection: its state callback lands here, which logs once per state
 * change and counts reconnections. On connection loss the transport
 * reconnects with capped exponential backoff and subscribes again on a fresh
 * connection (Redis does not replay pub/sub messages, so no handler runs
 * twice for one message).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "daebus/json.h"
#include "daebus/log.h"
#include "bus_durable_gc.h"
#include "bus_internal.h"
#include "clock.h"
#include "utf8.h"

#define LOGC DAEBUS__BUS_LOGC

/* ---- connection state (the transport's subscriber thread) ---- */

/* subscribed: the subscriber's state; connected (the public gauge): it
 * takes messages, which with exactly once waits for the join to come back. */
static void set_connected(daebus_bus *bus, int subscribed, int connected)
{
    pthread_mutex_lock(&bus->state_lock);
    atomic_store(&bus->subscribed, subscribed);
    atomic_store(&bus->connected, connected);
    pthread_cond_broadcast(&bus->state_cond);
    pthread_mutex_unlock(&bus->state_lock);
}

static void on_state(void *user, const daebus__redis_event *ev)
{
    daebus_bus *bus = user;
    /* Exactly once: a fresh subscription joins again (others may have gone
     * solo meanwhile); a lost one stops handling at once. */
    if (ev->state == DAEBUS__REDIS_UP || ev->state == DAEBUS__REDIS_DOWN)
        daebus__cluster_on_link(atomic_load(&bus->cluster), ev->state == DAEBUS__REDIS_UP,
                                ev->after, ev->nafter);
    switch (ev->state) {
    case DAEBUS__REDIS_UP:
        if (ev->reconnect) {
            atomic_fetch_add(&bus->reconnects, 1);
            DAEBUS_LOG_INFOF(LOGC, "reconnected to %s; subscribed again to %zu channel(s)",
                             bus->where, ev->nchannels);
        } else {
            DAEBUS_LOG_INFOF(LOGC, "connected to %s; subscribed to %zu channel(s)", bus->where,
                             ev->nchannels);
        }
        /* Joined with the subscription, unless its announce was missing
         * (then when its next join comes back: daebus__bus_joined). */
        set_connected(bus, 1,
                      !bus->gated ||
                          (ev->after && daebus__cluster_handles(atomic_load(&bus->cluster))));
        break;
    case DAEBUS__REDIS_RETRY:
        if (!ev->reconnect)
            DAEBUS_LOG_WARNF(LOGC, "cannot reach Redis at %s (%s); retrying with backoff",
                             bus->where, ev->why);
        else
            DAEBUS_LOG_DEBUGF(LOGC, "reconnect failed: %s (next try in %.2fs)", ev->why,
                              ev->next_try);
        break;
    case DAEBUS__REDIS_DOWN:
        set_connected(bus, 0, 0);
        DAEBUS_LOG_WARNF(LOGC, "lost connection to Redis at %s (%s); reconnecting", bus->where,
                         ev->why);
        break;
    case DAEBUS__REDIS_STOPPED:
        set_connected(bus, 0, 0);
        break;
    }
}

/* ---- component ops ---- */

/* Waits until pred(bus) holds or the deadline passes (state_lock held). */
static void wait_state(daebus_bus *bus, int (*pred)(daebus_bus *), double seconds)
{
    daebus__deadline until = daebus__deadline_in(seconds);
    while (!pred(bus))
        if (daebus__cond_wait_until(&bus->state_cond, &bus->state_lock, until) != 0)
            break;
}

static int is_subscribed(daebus_bus *bus)
{
    return atomic_load(&bus->subscribed);
}

void daebus__bus_joined(daebus_bus *bus)
{
    if (atomic_load(&bus->subscribed))
        set_connected(bus, 1, 1);
}

static int no_live_request(daebus_bus *bus)
{
    return bus->live == 0;
}

/* Is any message handled by one replica only (the service channel, a
 * LISTEN .once)? Then the cluster channel is read too (bus_claim.c). */
static bool needs_gate(const daebus_bus *bus)
{
    bool gated = !bus->opts.no_service_channel;
    for (size_t i = 0; i < bus->nlistens; i++)
        gated = gated || bus->listens[i].desc->opts.once;
    return gated;
}

/* Subscribes the service channel, every LISTEN channel and, when gated, the
 * cluster channel (one connection: one order for all). Returns: 0 or
 * DAEBUS_ENOMEM. */
static int add_channels(daebus_bus *bus)
{
    bus->gated = needs_gate(bus);
    daebus__cluster_channel(bus->service, bus->cluster_channel, sizeof bus->cluster_channel);
    bus->svc_pos = (daebus__bus_pos){0, 0};
    free(bus->listen_pos);
    bus->listen_pos = calloc(bus->nlistens ? bus->nlistens : 1, sizeof *bus->listen_pos);
    if (!bus->listen_pos)
        return DAEBUS_ENOMEM;
    if (bus->gated && daebus__redis_sub_subscribe(bus->sub, bus->cluster_channel) < 0)
        return DAEBUS_ENOMEM;
    if (!bus->opts.no_service_channel && daebus__redis_sub_subscribe(bus->sub, bus->service) < 0)
        return DAEBUS_ENOMEM;
    for (size_t i = 0; i < bus->nlistens; i++) {
        if (!bus->opts.no_service_channel && strcmp(bus->listens[i].key, bus->service) == 0)
            DAEBUS_LOG_WARNF(LOGC, "LISTEN on the service channel '%s' is ignored: actions use it",
                             bus->service);
        if (daebus__redis_sub_subscribe(bus->sub, bus->listens[i].key) < 0)
            return DAEBUS_ENOMEM;
    }
    return 0;
}

/* Exactly once: every subscription joins the cluster in the same
 * MULTI/EXEC (daebus__cluster_join_cmds). */
static bool on_subscribe(void *user, daebus__redis_atomic *a)
{
    daebus_bus *bus = user;
    return bus->gated && daebus__cluster_join_cmds(atomic_load(&bus->cluster), a);
}

/* Creates the worker pool, the publisher pool and the subscriber. */
static int make_transport(daebus_bus *bus)
{
    const daebus_bus_options *o = &bus->opts;
    daebus__redis_pub_opts po = {&bus->url,          o->publishers, o->connect_timeout,
                                 o->command_timeout, 0.25,          LOGC};
    daebus__redis_sub_opts so = {
        .url = &bus->url,
        .connect_timeout = o->connect_timeout,
        .reconnect_initial = o->reconnect_initial,
        .reconnect_max = o->reconnect_max,
        .health_idle = o->health_interval,
        .health_timeout = o->health_interval,
        .max_message = o->max_message_size,
        .poll_ms = o->health_interval < 1 ? 50 : 500,
        .on_message = daebus__bus_on_message,
        .on_state = on_state,
        .on_tick = daebus__bus_on_tick,
        .on_subscribe = on_subscribe,
        /* Leader/followers (bus_dispatch.c run_here): the reader that took
         * a request runs it while another reads; two followers let a second
         * request start the same way while the first runs. */
        .readers = daebus_app_max_workers(bus->app) > 1 ? 3 : 2,
        .user = bus,
    };
    bus->pool = daebus__pool_create("bus", daebus_app_max_workers(bus->app), o->max_queue);
    bus->pub = daebus__redis_pub_create(&po);
    bus->sub = daebus__redis_sub_create(&so);
    if (!bus->pool || !bus->pub || !bus->sub) {
        DAEBUS_LOG_ERRORF(LOGC, "cannot create the worker pool, publishers or subscriber");
        return DAEBUS_ENOMEM;
    }
    return add_channels(bus);
}

/* Announces this instance in Redis (framework/cluster/). */
static int start_cluster(daebus_bus *bus)
{
    daebus__cluster_destroy(atomic_exchange(&bus->cluster, NULL));
    if (bus->gated && !bus->line) {
        /* The preferred replica's claims (NULL: they go on the pool). */
        const daebus_bus_options *o = &bus->opts;
        daebus__redis_pub_opts lo = {&bus->url,          1,    o->connect_timeout,
                                     o->command_timeout, 0.25, LOGC};
        bus->line = daebus__redis_line_create(&lo);
        if (atomic_load(&bus->subscribed))
            daebus__redis_line_repair(bus->line);
    }
    int port = daebus__app_http_bound_port(bus->app);
    daebus__cluster_opts co = {bus->pub,
                               bus->service,
                               daebus_app_instance_id(bus->app),
                               port > 0 ? port : 0,
                               bus->opts.heartbeat,
                               bus->gated,
                               bus->line};
    daebus__cluster *c = daebus__cluster_start(&co);
    atomic_store(&bus->cluster, c);
    return c ? 0 : DAEBUS_ENOMEM;
}

daebus__cluster *daebus__bus_cluster(const daebus_bus *bus)
{
    return bus ? atomic_load(&((daebus_bus *)bus)->cluster) : NULL;
}

static void bus_stop(void *self);

static int bus_start(void *self)
{
    daebus_bus *bus = self;
    daebus_app *app = bus->base.app;
    bus->app = app;
    bus->service = daebus_app_service(app);
    daebus_error e = {0};
    if (daebus__redis_url_parse(daebus_app_redis_url(app), &bus->url, &e) != 0) {
        DAEBUS_LOG_ERRORF(LOGC, "%s (set --redis or DAEBUS_REDIS_URL)", e.message);
        return DAEBUS_EINVAL;
    }
    daebus__redis_url_describe(&bus->url, bus->where, sizeof bus->where);
    bus->nactions = daebus__app_handlers(app, DAEBUS_HANDLER_ACTION, &bus->actions);
    bus->nlistens = daebus__app_handlers(app, DAEBUS_HANDLER_LISTEN, &bus->listens);
    atomic_store(&bus->stopping, 0);
    int rc = make_transport(bus);
    if (rc != 0) {
        bus_stop(bus);
        return rc;
    }
    /* The instance announces itself before it subscribes: its subscription
     * joins the cluster at once (daebus__cluster_join_cmds). */
    rc = start_cluster(bus);
    if (rc != 0) {
        bus_stop(bus);
        return rc;
    }
    if (daebus__redis_sub_count(bus->sub) == 0) {
        DAEBUS_LOG_INFOF(LOGC, "no channel to subscribe to; publishing only");
    } else if (daebus__redis_sub_start(bus->sub, false, &e) != 0) {
        bus_stop(bus);
        return DAEBUS_ENOMEM;
    } else {
        /* Normally ready on return; if Redis is down the thread keeps trying. */
        pthread_mutex_lock(&bus->state_lock);
        wait_state(bus, is_subscribed, bus->opts.connect_timeout + 0.5);
        pthread_mutex_unlock(&bus->state_lock);
    }
    rc = daebus__durable_start(bus);
    if (rc != 0) {
        bus_stop(bus);
        return rc;
    }
    /* "Running" means taking requests: the join came back (bounded). */
    if (bus->gated && atomic_load(&bus->subscribed) &&
        !daebus__cluster_wait_ready(atomic_load(&bus->cluster), 2.0))
        DAEBUS_LOG_WARNF(LOGC,
                         "not yet joined the other replicas of '%s' after 2 s: requests "
                         "are handled once joined",
                         bus->service);
    return 0;
}

static void bus_stop(void *self)
{
    daebus_bus *bus = self;
    double drain = daebus_app_shutdown_timeout(bus->app);
    atomic_store(&bus->stopping, 1);
    daebus__durable_drain(bus); /* takes no more; refreshes what drains below */
    /* Stop taking (claims in flight end) before leaving the lists: no other
     * replica goes solo while this one may still win a claim. What it took,
     * the pool drains below. */
    daebus__cluster_leave(atomic_load(&bus->cluster), bus->opts.command_timeout + 0.5);
    daebus__cluster_stop(
        atomic_load(&bus->cluster)); /* a graceful stop leaves every list at once */
    daebus__redis_sub_stop(bus->sub);
    daebus__bus_defer_drop_all(bus); /* not taken: never claimed */
    if (bus->pool) {
        size_t dropped = daebus__pool_shutdown(bus->pool, drain);
        if (dropped)
            DAEBUS_LOG_WARNF(LOGC, "%zu queued message(s) dropped at shutdown", dropped);
    }
    /* Retained requests may still reply from other threads. */
    pthread_mutex_lock(&bus->state_lock);
    wait_state(bus, no_live_request, drain);
    size_t live = bus->live;
    pthread_mutex_unlock(&bus->state_lock);
    if (live)
        DAEBUS_LOG_WARNF(LOGC,
                         "%zu retained request(s) not released at shutdown; release them "
                         "before destroying the app",
                         live);
    daebus__durable_stop(bus); /* drained: nothing more to refresh */
    pthread_mutex_lock(&bus->caller_lock);
    daebus_caller *c = bus->caller;
    bus->caller = NULL;
    pthread_mutex_unlock(&bus->caller_lock);
    daebus_caller_destroy(c);
    daebus__durable_gc_leave(bus); /* its consumer, when nothing is pending */
    daebus__redis_pub_close(bus->pub);
    daebus__pool_destroy(bus->pool);
    bus->pool = NULL;
    daebus__redis_line_destroy(bus->line); /* no claim after the pool */
    bus->line = NULL;
    daebus__redis_sub_destroy(bus->sub);
    bus->sub = NULL;
    free(bus->listen_pos);
    bus->listen_pos = NULL;
}

static void bus_destroy_op(void *self)
{
    daebus_bus *bus = self;
    daebus__cluster_destroy(atomic_load(&bus->cluster));
    daebus__durable_free(bus);
    daebus__redis_pub_destroy(bus->pub);
    daebus__gateway_free(bus->gateway); /* after the caller: no call is left */
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
    pthread_mutex_init(&bus->state_lock, NULL);
    daebus__cond_init(&bus->state_cond);
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

int daebus_bus_get_stats(const daebus_bus *cbus, struct daebus_bus_stats *out)
{
    if (!out)
        return DAEBUS_EINVAL;
    memset(out, 0, sizeof *out);
    if (!cbus)
        return DAEBUS_EINVAL;
    daebus_bus *bus = (daebus_bus *)cbus; /* the counters are atomics, the caller under its lock */
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
    out->store_commands = atomic_load(&bus->store_commands);
    out->store_errors = atomic_load(&bus->store_errors);
    out->connected = atomic_load(&bus->connected);
    daebus__cluster_claim_stats cs;
    daebus__cluster_claim_stats_get(atomic_load(&bus->cluster), &cs);
    out->claims_won = cs.won;
    out->claims_lost = cs.lost;
    out->claims_failed = cs.failed;
    out->ignored_joining = cs.ignored;
    out->solo = cs.solo;
    out->primary = cs.primary;
    out->primary_taken = cs.primary_taken;
    out->covered = atomic_load(&bus->covered);
    out->takeovers = cs.takeovers;
    out->durable_taken = atomic_load(&bus->durable_taken);
    out->durable_completed = atomic_load(&bus->durable_completed);
    out->durable_retried = atomic_load(&bus->durable_retried);
    out->durable_expired = atomic_load(&bus->durable_expired);
    out->durable_dead_lettered = atomic_load(&bus->durable_dead_lettered);
    out->durable_duplicates = atomic_load(&bus->durable_duplicates);
    return 0;
}

int daebus_bus_broadcast(daebus_bus *bus, const char *channel, const cJSON *obj)
{
    if (!bus || !channel || !*channel || !cJSON_IsObject(obj)) {
        DAEBUS_LOG_WARNF(LOGC, "broadcast: needs a bus, a non-empty channel and a JSON object");
        return DAEBUS_EINVAL;
    }
    if (!daebus__redis_pub_is_open(bus->pub))
        return DAEBUS_ESTATE;
    int rc = daebus__redis_publish_json(bus->pub, channel, obj);
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
    if (!bus || !daebus__redis_pub_is_open(bus->pub) || atomic_load(&bus->stopping))
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
