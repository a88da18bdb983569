/* The hand-offs of an action round trip (issue 18, slices C and D) against a
 * private redis-server: the bus's reader thread runs a request itself after
 * handing the reading on (redis_sub run_here), and a caller's lone blocking
 * request reads its own reply (the parked reader role, borrowed). Checks
 * that both paths are taken (the subscribers' role counters) and that
 * nothing the design promises is lost: a blocking handler never stops the
 * reading, max_workers and the queue bound still hold ("overloaded"),
 * progress comes before the final reply, many blocking callers on one
 * caller each get their own reply, async callbacks and listeners still run
 * on the caller's reader thread while a blocking request reads for itself,
 * and a connection lost while it reads fails the request at once. */
#include <unistd.h>
#include "caller_internal.h"
#include "common.h"

#define SVC  "handoff_svc"
#define SVC1 "handoff_one" /* max_workers 1, max_queue 1 */

static ts_redis redis;
static daebus_app *app, *app1;
static daebus_bus *bus, *bus1;

/* The gate: "gate" handlers block until it opens. */
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static int gate_open;
static atomic_int gate_inside;
static atomic_int heard;

/* ---- the services ---- */

ACTION(ho_echo, "echo")
{
    return daebus_bus_reply(req, payload);
}

ACTION(ho_slow, "slow")
{
    const cJSON *ms = cJSON_GetObjectItem(payload, "ms");
    ts_sleep_ms(cJSON_IsNumber(ms) ? (int)ms->valuedouble : 100);
    return daebus_bus_reply(req, payload);
}

ACTION(ho_gate, "gate")
{
    atomic_fetch_add(&gate_inside, 1);
    pthread_mutex_lock(&gate_lock);
    double end = ts_now() + 10;
    while (!gate_open && ts_now() < end) {
        pthread_mutex_unlock(&gate_lock);
        ts_sleep_ms(5);
        pthread_mutex_lock(&gate_lock);
    }
    pthread_mutex_unlock(&gate_lock);
    atomic_fetch_sub(&gate_inside, 1);
    return daebus_bus_reply(req, payload);
}

ACTION(ho_steps, "steps")
{
    for (int i = 1; i <= 5; i++) {
        cJSON *p = cJSON_CreateObject();
        cJSON_AddNumberToObject(p, "step", i);
        daebus_bus_progress_take(req, p, i * 20);
    }
    cJSON *f = cJSON_CreateObject();
    cJSON_AddTrueToObject(f, "done");
    return daebus_bus_reply_take(req, f);
}

LISTEN(ho_notes, "handoff.notes")
{
    atomic_fetch_add(&heard, 1);
    return 0;
}

static void set_gate(int open)
{
    pthread_mutex_lock(&gate_lock);
    gate_open = open;
    pthread_cond_broadcast(&gate_cond);
    pthread_mutex_unlock(&gate_lock);
}

/* ---- fixtures ---- */

static int cleanup(void);

static int init(void)
{
    if (ts_redis_start(&redis, NULL) != 0)
        return -1;
    app = start_app(SVC, redis.url, 4, NULL, &bus);
    daebus_bus_options bo = DAEBUS_BUS_OPTIONS_INIT;
    bo.max_queue = 1;
    app1 = app ? start_app(SVC1, redis.url, 1, &bo, &bus1) : NULL;
    if (!app || !app1) {
        cleanup();
        return -1;
    }
    TS_WAIT_UNTIL(ts_bus_connected(bus) && ts_bus_connected(bus1), 5);
    return 0;
}

static int cleanup(void)
{
    set_gate(1);
    ts_app_stop(app1);
    ts_app_stop(app);
    ts_redis_stop(&redis);
    return 0;
}

static daebus_caller *new_caller(void)
{
    daebus_caller_options co = DAEBUS_CALLER_OPTIONS_INIT;
    co.connect_timeout = 10;
    daebus_error e = {0};
    daebus_caller *c = daebus_caller_create(redis.url, &co, &e);
    if (!c)
        fprintf(stderr, "caller: %s\n", e.message);
    return c;
}

static unsigned long ran_here(daebus_bus *b)
{
    unsigned long n = 0;
    daebus__redis_sub_role_counts(b->sub, &n, NULL);
    return n;
}

static unsigned long lent_reads(daebus_caller *c)
{
    unsigned long n = 0;
    daebus__redis_sub_role_counts(c->sub, NULL, &n);
    return n;
}

/* echo {"i": i}; returns 0 when the reply is that. */
static int echo_i(daebus_caller *c, const char *svc, int i, double timeout)
{
    cJSON *p = cJSON_CreateObject();
    cJSON_AddNumberToObject(p, "i", i);
    cJSON *out = NULL;
    daebus_error e = {0};
    int rc = daebus_caller_request(c, svc, "echo", p, timeout, &out, &e);
    if (rc == 0 && !cJSON_Compare(p, out, 1))
        rc = -1000;
    if (rc != 0)
        fprintf(stderr, "echo %d: %d %s\n", i, rc, e.message);
    cJSON_Delete(p);
    cJSON_Delete(out);
    return rc;
}

/* ---- tests ---- */

/* Sequential blocking requests: the service's reader runs them, the caller
 * reads its own replies (no reader thread wakes it). */
static void test_round_trips_take_both_paths(void)
{
    daebus_caller *c = new_caller();
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(echo_i(c, SVC, -1, 5), 0);
    unsigned long here0 = ran_here(bus), own0 = lent_reads(c);
    int bad = 0;
    for (int i = 0; i < 100; i++)
        bad += echo_i(c, SVC, i, 5) != 0;
    CU_ASSERT_EQUAL(bad, 0);
    unsigned long here = ran_here(bus) - here0, own = lent_reads(c) - own0;
    fprintf(stderr,
            "\n  100 round trips: %lu run by the service's reader, %lu replies read by "
            "their requester\n",
            here, own);
    /* Nearly all; a reader thread's look every poll_ms may take a few. */
    CU_ASSERT_TRUE(here >= 80);
    CU_ASSERT_TRUE(own >= 60);
    daebus_caller_destroy(c);
}

typedef struct steps_seen {
    int n;
    int steps[8];
} steps_seen;

static void on_step(daebus_caller *c, const cJSON *payload, void *user)
{
    (void)c;
    steps_seen *s = user;
    const cJSON *st = cJSON_GetObjectItem(payload, "step");
    if (s->n < 8)
        s->steps[s->n] = cJSON_IsNumber(st) ? (int)st->valuedouble : -1;
    s->n++;
}

/* Progress before the final reply, in order, read by the requester. */
static void test_progress_order_own_read(void)
{
    daebus_caller *c = new_caller();
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(echo_i(c, SVC, 0, 5), 0); /* the role parks after it */
    /* Reading its own replies is opportunistic (a reader thread's look, a
     * loaded machine): rounds until one was read by the requester. */
    unsigned long own = 0;
    for (int round = 0; round < 40 && (round < 5 || own == 0); round++) {
        unsigned long own0 = lent_reads(c);
        steps_seen s = {0};
        cJSON *out = NULL;
        daebus_error e = {0};
        CU_ASSERT_EQUAL(
            daebus_caller_request_progress(c, SVC, "steps", NULL, 5, on_step, &s, &out, &e), 0);
        CU_ASSERT_TRUE(cJSON_IsTrue(cJSON_GetObjectItem(out, "done")));
        cJSON_Delete(out);
        CU_ASSERT_EQUAL(s.n, 5); /* all before the final reply returned */
        for (int i = 0; i < 5 && i < s.n; i++)
            CU_ASSERT_EQUAL(s.steps[i], i + 1);
        if (round > 0)
            own += lent_reads(c) - own0;
    }
    CU_ASSERT_TRUE(own >= 5); /* a whole round: five progress replies and the final one */
    daebus_caller_destroy(c);
}

typedef struct gate_call {
    daebus_caller *c;
    const char *svc;
    int rc;
    double took;
} gate_call;

static void *call_gate(void *arg)
{
    gate_call *g = arg;
    daebus_error e = {0};
    cJSON *out = NULL;
    double t0 = ts_now();
    g->rc = daebus_caller_request(g->c, g->svc, "gate", NULL, 15, &out, &e);
    g->took = ts_now() - t0;
    cJSON_Delete(out);
    return NULL;
}

/* Two handlers blocked (each run by the reader that read it): requests and
 * listener messages are still read and served. */
static void test_blocking_handler_reading_moves(void)
{
    daebus_caller *c = new_caller(), *c2 = new_caller();
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c2);
    set_gate(0);
    unsigned long here0 = ran_here(bus);
    gate_call g[2] = {{c, SVC, -1, 0}, {c, SVC, -1, 0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, call_gate, &g[i]);
    TS_WAIT_UNTIL(atomic_load(&gate_inside) == 2, 5);
    CU_ASSERT_EQUAL(atomic_load(&gate_inside), 2);
    int bad = 0;
    double t0 = ts_now();
    for (int i = 0; i < 40; i++)
        bad += echo_i(c2, SVC, i, 3) != 0;
    double took = ts_now() - t0;
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_TRUE(took < 5);
    int h0 = atomic_load(&heard);
    /* Both services listen (both apps have every handler of this file). */
    CU_ASSERT_EQUAL(raw_publish(redis.port, "handoff.notes", "{\"n\":1}"), 2);
    TS_WAIT_UNTIL(atomic_load(&heard) == h0 + 2, 3);
    CU_ASSERT_EQUAL(atomic_load(&heard), h0 + 2);
    CU_ASSERT_EQUAL(atomic_load(&gate_inside), 2); /* still blocked meanwhile */
    CU_ASSERT_TRUE(ran_here(bus) - here0 >= 2);
    set_gate(1);
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
        CU_ASSERT_EQUAL(g[i].rc, 0);
    }
    daebus_caller_destroy(c2);
    daebus_caller_destroy(c);
}

typedef struct async_done {
    pthread_mutex_t lock;
    int n, status;
    pthread_t thread;
} async_done;

static void on_async(daebus_caller *c, int status, const cJSON *payload, const char *msg,
                     void *user)
{
    (void)c;
    (void)payload;
    (void)msg;
    async_done *d = user;
    pthread_mutex_lock(&d->lock);
    d->n++;
    d->status = status;
    d->thread = pthread_self();
    pthread_mutex_unlock(&d->lock);
}

static int async_count(async_done *d)
{
    pthread_mutex_lock(&d->lock);
    int n = d->n;
    pthread_mutex_unlock(&d->lock);
    return n;
}

/* max_workers 1, max_queue 1: a request run by the reader holds the only
 * worker's slot, so one more is queued and the next is "overloaded". */
static void test_cap_and_overload_kept(void)
{
    daebus_caller *c = new_caller();
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(echo_i(c, SVC1, 0, 5), 0);
    set_gate(0);
    unsigned long here0 = ran_here(bus1);
    gate_call g = {c, SVC1, -1, 0};
    pthread_t t;
    pthread_create(&t, NULL, call_gate, &g);
    TS_WAIT_UNTIL(atomic_load(&gate_inside) == 1, 5);
    CU_ASSERT_EQUAL(atomic_load(&gate_inside), 1);
    CU_ASSERT_EQUAL(ran_here(bus1) - here0, 1); /* the gate runs on the reader */
    async_done queued = {PTHREAD_MUTEX_INITIALIZER, 0, -1, pthread_self()};
    CU_ASSERT_EQUAL(
        daebus_caller_request_async(c, SVC1, "echo", NULL, 10, on_async, NULL, &queued, NULL), 0);
    ts_sleep_ms(300);
    CU_ASSERT_EQUAL(async_count(&queued), 0); /* queued: the only slot is taken */
    cJSON *out = NULL;
    daebus_error e = {0};
    CU_ASSERT_EQUAL(daebus_caller_request(c, SVC1, "echo", NULL, 3, &out, &e), DAEBUS_EREPLY);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "overloaded"));
    cJSON_Delete(out);
    set_gate(1);
    pthread_join(t, NULL);
    CU_ASSERT_EQUAL(g.rc, 0);
    TS_WAIT_UNTIL(async_count(&queued) == 1, 5);
    CU_ASSERT_EQUAL(async_count(&queued), 1);
    CU_ASSERT_EQUAL(queued.status, 0);
    daebus_caller_destroy(c);
}

#define NTHREADS 8
#define PER      40

typedef struct blocker {
    daebus_caller *c;
    int t, bad;
} blocker;

static void *blocking_loop(void *arg)
{
    blocker *b = arg;
    for (int i = 0; i < PER; i++)
        b->bad += echo_i(b->c, SVC, b->t * 1000 + i, 10) != 0;
    return NULL;
}

/* Eight threads of blocking requests on one caller, async requests beside
 * them: every reply to its own requester; async callbacks never run on a
 * thread that is inside daebus_caller_request. */
static void test_many_blocking_callers(void)
{
    daebus_caller *c = new_caller();
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    blocker b[NTHREADS];
    pthread_t t[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        b[i] = (blocker){c, i, 0};
        pthread_create(&t[i], NULL, blocking_loop, &b[i]);
    }
    async_done d = {PTHREAD_MUTEX_INITIALIZER, 0, -1, pthread_self()};
    int sent = 0, wrong_thread = 0;
    for (int i = 0; i < 100; i++) {
        if (daebus_caller_request_async(c, SVC, "echo", NULL, 10, on_async, NULL, &d, NULL) == 0)
            sent++;
        ts_sleep_ms(i % 3);
        pthread_mutex_lock(&d.lock);
        for (int k = 0; k < NTHREADS && d.n; k++)
            wrong_thread += pthread_equal(d.thread, t[k]);
        pthread_mutex_unlock(&d.lock);
    }
    int bad = 0;
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(t[i], NULL);
        bad += b[i].bad;
    }
    TS_WAIT_UNTIL(async_count(&d) == sent, 10);
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(sent, 100);
    CU_ASSERT_EQUAL(async_count(&d), sent);
    CU_ASSERT_EQUAL(wrong_thread, 0);
    /* Alone again: the requester reads its own reply. */
    CU_ASSERT_EQUAL(echo_i(c, SVC, 1, 5), 0);
    unsigned long own0 = lent_reads(c);
    for (int i = 0; i < 20; i++)
        CU_ASSERT_EQUAL(echo_i(c, SVC, i, 5), 0);
    CU_ASSERT_TRUE(lent_reads(c) - own0 >= 10);
    daebus_caller_destroy(c);
}

typedef struct slow_call {
    daebus_caller *c;
    int ms, rc;
    double timeout, took;
    pthread_t self;
    atomic_int started;
} slow_call;

static void *call_slow(void *arg)
{
    slow_call *s = arg;
    s->self = pthread_self();
    cJSON *p = cJSON_CreateObject();
    cJSON_AddNumberToObject(p, "ms", s->ms);
    cJSON *out = NULL;
    daebus_error e = {0};
    double t0 = ts_now();
    atomic_store(&s->started, 1);
    s->rc = daebus_caller_request(s->c, SVC, "slow", p, s->timeout, &out, &e);
    s->took = ts_now() - t0;
    cJSON_Delete(p);
    cJSON_Delete(out);
    return NULL;
}

static int listened;
static pthread_t listened_on;
static pthread_mutex_t listened_lock = PTHREAD_MUTEX_INITIALIZER;

static void on_listened(daebus_caller *c, const char *channel, const char *data, size_t len,
                        void *user)
{
    (void)c;
    (void)channel;
    (void)data;
    (void)len;
    (void)user;
    pthread_mutex_lock(&listened_lock);
    listened++;
    listened_on = pthread_self();
    pthread_mutex_unlock(&listened_lock);
}

static int listened_count(void)
{
    pthread_mutex_lock(&listened_lock);
    int n = listened;
    pthread_mutex_unlock(&listened_lock);
    return n;
}

/* While a lone blocking request reads for itself: an async request's reply
 * comes at once, on the reader thread; a listen() is confirmed and its
 * messages delivered on the reader thread too. */
static void test_async_and_listen_during_own_read(void)
{
    daebus_caller *c = new_caller();
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(echo_i(c, SVC, 0, 5), 0);
    ts_sleep_ms(50);
    slow_call s = {.c = c, .ms = 600, .timeout = 5};
    pthread_t t;
    pthread_create(&t, NULL, call_slow, &s);
    TS_WAIT_UNTIL(atomic_load(&s.started), 5);
    ts_sleep_ms(100);
    async_done d = {PTHREAD_MUTEX_INITIALIZER, 0, -1, pthread_self()};
    double t0 = ts_now();
    CU_ASSERT_EQUAL(daebus_caller_request_async(c, SVC, "echo", NULL, 5, on_async, NULL, &d, NULL),
                    0);
    TS_WAIT_UNTIL(async_count(&d) == 1, 5);
    double took = ts_now() - t0;
    CU_ASSERT_EQUAL(async_count(&d), 1);
    CU_ASSERT_EQUAL(d.status, 0);
    CU_ASSERT_TRUE(took < 0.4); /* not behind the slow one */
    CU_ASSERT_FALSE(pthread_equal(d.thread, t));
    pthread_join(t, NULL);
    CU_ASSERT_EQUAL(s.rc, 0);
    /* listen() while a lone request reads for itself. */
    s = (slow_call){.c = c, .ms = 400, .timeout = 5};
    pthread_create(&t, NULL, call_slow, &s);
    TS_WAIT_UNTIL(atomic_load(&s.started), 5);
    ts_sleep_ms(50);
    CU_ASSERT_EQUAL(daebus_caller_listen(c, "handoff.side", on_listened, NULL), 0);
    CU_ASSERT_EQUAL(raw_publish(redis.port, "handoff.side", "x"), 1);
    TS_WAIT_UNTIL(listened_count() == 1, 5);
    CU_ASSERT_EQUAL(listened_count(), 1);
    pthread_mutex_lock(&listened_lock);
    CU_ASSERT_FALSE(pthread_equal(listened_on, t));
    pthread_mutex_unlock(&listened_lock);
    pthread_join(t, NULL);
    CU_ASSERT_EQUAL(s.rc, 0);
    CU_ASSERT_EQUAL(daebus_caller_unlisten(c, "handoff.side"), 0);
    daebus_caller_destroy(c);
}

/* The caller's connection killed while its lone blocking request reads for
 * itself: the request fails with DAEBUS_ECONN at once (not at its time-out),
 * and the caller works again once reconnected. */
static void test_loss_while_reading(void)
{
    daebus_caller *c = new_caller();
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_EQUAL(echo_i(c, SVC, 0, 5), 0);
    ts_sleep_ms(50);
    unsigned long own0 = lent_reads(c);
    CU_ASSERT_EQUAL(echo_i(c, SVC, 1, 5), 0);
    CU_ASSERT_TRUE(lent_reads(c) > own0); /* this caller reads its own replies */
    slow_call s = {.c = c, .ms = 1500, .timeout = 8};
    pthread_t t;
    pthread_create(&t, NULL, call_slow, &s);
    TS_WAIT_UNTIL(atomic_load(&s.started), 5);
    ts_sleep_ms(200);
    redisContext *rc = raw_connect(redis.port);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rc);
    redisReply *r = redisCommand(rc, "CLIENT KILL TYPE pubsub");
    CU_ASSERT_TRUE(r && r->type == REDIS_REPLY_INTEGER && r->integer >= 2);
    if (r)
        freeReplyObject(r);
    redisFree(rc);
    pthread_join(t, NULL);
    CU_ASSERT_EQUAL(s.rc, DAEBUS_ECONN);
    CU_ASSERT_TRUE(s.took < 1.5);
    TS_WAIT_UNTIL(daebus_caller_connected(c) && ts_bus_connected(bus), 10);
    int ok = -1;
    for (int i = 0; i < 50 && ok != 0; i++) { /* the service subscribes again too */
        ok = echo_i(c, SVC, 2, 2);
        if (ok != 0)
            ts_sleep_ms(100);
    }
    CU_ASSERT_EQUAL(ok, 0);
    daebus_caller_destroy(c);
    ts_sleep_ms(1500); /* the slow handler ends */
}

int main(void)
{
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("bus hand-offs", init, cleanup);
    CU_add_test(s, "round trips take both paths", test_round_trips_take_both_paths);
    CU_add_test(s, "progress in order, read by the requester", test_progress_order_own_read);
    CU_add_test(s, "blocking handlers: the reading moves on", test_blocking_handler_reading_moves);
    CU_add_test(s, "max_workers and overloaded kept", test_cap_and_overload_kept);
    CU_add_test(s, "many blocking callers on one caller", test_many_blocking_callers);
    CU_add_test(s, "async and listen during an own read", test_async_and_listen_during_own_read);
    CU_add_test(s, "connection lost while reading", test_loss_while_reading);
    return ts_run_cunit();
}
