/* test_join_window.c - a replica takes every request from its first
 * subscribed moment on: at start and after its subscriber reconnects
 * (docs/replicas.md, "Joining").
 *
 * A raw hiredis publisher sends requests to the service channel without a
 * pause and records what each PUBLISH returned: 1 means a subscriber of the
 * service got it. With one once_service replica (no other to take it), every
 * request Redis delivered must be answered and run exactly once:
 * - while the replica starts (the publisher runs before it exists);
 * - after its subscriber connection is killed (CLIENT KILL) and it
 *   subscribes again.
 * Before the join became part of the subscription, requests arriving between
 * the SUBSCRIBE and the replica's own join were ignored and lost. */
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "once_fixture.h"

#define MAXREQ   60000
#define REPLY_TO "caller:join_window"

typedef struct flow {
    pthread_t pub_thread, reply_thread;
    atomic_int run, pause, sent, paused;
    char prefix[16];
    signed char delivered[MAXREQ]; /* what PUBLISH returned (-1: an error) */
    atomic_int replies[MAXREQ];
    double when[MAXREQ]; /* when it was published */
    redisContext *sub;
} flow;

static flow F;

static redisContext *connect_redis(void)
{
    redisContext *c = redisConnect("127.0.0.1", once_redis.port);
    if (c && c->err) {
        redisFree(c);
        c = NULL;
    }
    return c;
}

static void *publisher(void *arg)
{
    (void)arg;
    redisContext *c = connect_redis();
    char msg[256], rid[32];
    while (c && atomic_load(&F.run)) {
        if (atomic_load(&F.pause)) {
            atomic_store(&F.paused, 1);
            ts_sleep_ms(1);
            continue;
        }
        atomic_store(&F.paused, 0);
        int k = atomic_load(&F.sent);
        if (k >= MAXREQ)
            break;
        snprintf(rid, sizeof rid, "%s-%d", F.prefix, k);
        snprintf(msg, sizeof msg,
                 "{\"action\":\"work\",\"payload\":{\"id\":\"%s\"},\"reply_to\":\"" REPLY_TO
                 "\",\"request_id\":\"%s\"}",
                 rid, rid);
        F.when[k] = ts_now();
        redisReply *r = redisCommand(c, "PUBLISH %s %s", ONCE_SERVICE, msg);
        F.delivered[k] = r && r->type == REDIS_REPLY_INTEGER ? (signed char)r->integer : -1;
        if (r)
            freeReplyObject(r);
        atomic_store(&F.sent, k + 1);
        struct timespec ts = {0, 300 * 1000}; /* about 2,000 requests a second */
        nanosleep(&ts, NULL);
    }
    atomic_store(&F.paused, 1);
    if (c)
        redisFree(c);
    return NULL;
}

/* Counts the replies per request (their request_id "<prefix>-<k>"). */
static void *reply_reader(void *arg)
{
    (void)arg;
    redisReply *r;
    while (redisGetReply(F.sub, (void **)&r) == REDIS_OK && r) {
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
            r->element[2]->type == REDIS_REPLY_STRING) {
            cJSON *j = cJSON_Parse(r->element[2]->str);
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "request_id");
            const char *dash = cJSON_IsString(id) ? strrchr(id->valuestring, '-') : NULL;
            int k = dash ? atoi(dash + 1) : -1;
            if (k >= 0 && k < MAXREQ)
                atomic_fetch_add(&F.replies[k], 1);
            cJSON_Delete(j);
        }
        freeReplyObject(r);
    }
    return NULL;
}

static void flow_start(const char *prefix)
{
    memset(F.delivered, 0, sizeof F.delivered);
    for (int i = 0; i < MAXREQ; i++)
        atomic_store(&F.replies[i], 0);
    snprintf(F.prefix, sizeof F.prefix, "%s", prefix);
    atomic_store(&F.sent, 0);
    atomic_store(&F.pause, 0);
    atomic_store(&F.run, 1);
    CU_ASSERT_FATAL(pthread_create(&F.pub_thread, NULL, publisher, NULL) == 0);
}

static void flow_stop(void)
{
    atomic_store(&F.run, 0);
    pthread_join(F.pub_thread, NULL);
}

/* Every delivered request of [from, to) answered once (within 10 s) and run
 * once; prints the first misses. Returns: the requests delivered. */
static int check_answered(int from, int to)
{
    int delivered = 0, missing = 0;
    double until = ts_now() + 10;
    for (int k = from; k < to; k++) {
        if (F.delivered[k] < 1)
            continue;
        delivered++;
        while (atomic_load(&F.replies[k]) == 0 && ts_now() < until)
            ts_sleep_ms(10);
        if (atomic_load(&F.replies[k]) != 1 && missing++ < 5)
            printf("\n  request %s-%d delivered, answered %d time(s)", F.prefix, k,
                   atomic_load(&F.replies[k]));
    }
    ts_sleep_ms(200); /* a second reply would come now */
    for (int k = from; k < to; k++)
        if (F.delivered[k] >= 1 && atomic_load(&F.replies[k]) != 1 && missing++ < 5)
            printf("\n  request %s-%d answered %d times", F.prefix, k, atomic_load(&F.replies[k]));
    CU_ASSERT_EQUAL(missing, 0);
    once_runs *r = once_runs_load();
    int runs = once_runs_prefix(r, 'a', F.prefix), twice = once_runs_twice(r, 'a', F.prefix);
    once_runs_free(r);
    CU_ASSERT_EQUAL(twice, 0);
    printf("\n  %d of %d requests delivered, %d runs", delivered, to - from, runs);
    return delivered;
}

static int init(void)
{
    if (once_setup("join_window") != 0)
        return -1;
    F.sub = connect_redis();
    if (!F.sub)
        return -1;
    redisReply *r = redisCommand(F.sub, "SUBSCRIBE %s", REPLY_TO);
    if (!r)
        return -1;
    freeReplyObject(r);
    return pthread_create(&F.reply_thread, NULL, reply_reader, NULL) == 0 ? 0 : -1;
}

static int cleanup(void)
{
    once_teardown(); /* stops Redis: the reply reader's read ends */
    pthread_join(F.reply_thread, NULL);
    redisFree(F.sub);
    return 0;
}

/* The publisher runs before the replica exists: from the first request
 * Redis gives the replica on, every one is answered. */
static void test_start(void)
{
    flow_start("st");
    ts_sleep_ms(200);
    int before = atomic_load(&F.sent);
    once_start(0, "3"); /* a long heartbeat: a loaded machine's stalls are not joins */
    CU_ASSERT_FATAL(once_all_ready(10));
    ts_sleep_ms(1000);
    flow_stop();
    int n = atomic_load(&F.sent), first = -1;
    for (int k = 0; k < n && first < 0; k++)
        if (F.delivered[k] >= 1)
            first = k;
    CU_ASSERT(before > 50 && first > before);
    CU_ASSERT(check_answered(0, n) > 500);
    CU_ASSERT_EQUAL(once_metric(0, "daebus_bus_ignored_joining_total"), 0);
}

/* The id of the replica's subscriber connection (it reads several channels;
 * this test's reply reader reads one). */
static long long service_subscriber(void)
{
    redisContext *c = connect_redis();
    redisReply *r = c ? redisCommand(c, "CLIENT LIST TYPE pubsub") : NULL;
    long long id = -1;
    for (const char *l = r && r->type == REDIS_REPLY_STRING ? r->str : NULL; l && *l;) {
        const char *sub = strstr(l, " sub="), *end = strchr(l, '\n');
        if (sub && (!end || sub < end) && atoi(sub + 5) >= 2)
            id = atoll(strstr(l, "id=") + 3);
        l = end ? end + 1 : NULL;
    }
    if (r)
        freeReplyObject(r);
    if (c)
        redisFree(c);
    return id;
}

/* Its subscriber connection is killed between two requests; from the first
 * request its new subscription gets on, every one is answered. */
static void test_resubscribe(void)
{
    double reconnects = once_metric(0, "daebus_bus_reconnects_total");
    flow_start("rs");
    ts_sleep_ms(500);
    atomic_store(&F.pause, 1);
    TS_WAIT_UNTIL(atomic_load(&F.paused), 5);
    int at = atomic_load(&F.sent);
    long long id = service_subscriber();
    CU_ASSERT_FATAL(id > 0);
    redisContext *c = connect_redis();
    redisReply *r = c ? redisCommand(c, "CLIENT KILL ID %lld", id) : NULL;
    CU_ASSERT(r && r->type == REDIS_REPLY_INTEGER && r->integer == 1);
    if (r)
        freeReplyObject(r);
    double killed = ts_now();
    atomic_store(&F.pause, 0);
    TS_WAIT_UNTIL(once_metric(0, "daebus_bus_reconnects_total") > reconnects, 10);
    ts_sleep_ms(1000);
    flow_stop();
    int n = atomic_load(&F.sent), back = -1;
    for (int k = at; k < n && back < 0; k++)
        if (F.delivered[k] >= 1)
            back = k;
    /* Requests kept coming while it subscribed again (so some would have
     * fallen into a join window). */
    CU_ASSERT_FATAL(back >= at);
    printf("\n  subscriber killed after request %d; delivered again from %d, %.1f ms later", at,
           back, (F.when[back] - killed) * 1000);
    CU_ASSERT(F.when[back] - killed < 0.1);
    CU_ASSERT(check_answered(0, n) > 500);
    CU_ASSERT(once_metric(0, "daebus_bus_reconnects_total") > reconnects);
    CU_ASSERT_EQUAL(once_metric(0, "daebus_bus_ignored_joining_total"), 0);
    if (c)
        redisFree(c);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("join window", init, cleanup);
    CU_add_test(s, "a starting replica takes every request delivered to it", test_start);
    CU_add_test(s, "a replica subscribing again takes every request", test_resubscribe);
    return ts_run_cunit();
}
