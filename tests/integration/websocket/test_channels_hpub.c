/* Queued channel publishes with history (ws_channel_hpub.c), in one process
 * on a private redis-server (label concurrency: runs under ThreadSanitizer).
 *
 * - Several threads publish into one history channel: every WebSocket
 *   subscriber (the C test client) gets every message once, each thread's in
 *   its order, with offsets following each other; the publisher thread sent
 *   them in groups (fewer round trips than messages).
 * - One thread alternating a plain channel and a history channel: a client
 *   subscribed to both gets them in call order.
 * - Redis refuses the groups (maxmemory): publishes queued, counted as
 *   failed, not delivered, not retried; later ones get through.
 * - Redis killed: publishes answer DAEBUS_ECONN or are queued and counted as
 *   failed (cluster_errors), the queue drains without a hang; after Redis is
 *   back publishes work again.
 * - Stop: what is queued when the app stops reaches Redis (XLEN).
 */
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include "clock.h"
#include "ws_channel_hpub.h"
#include "ws_common.h"
#include "wsc.h"

#define SVC   "ws_hpub"
#define NPUB  4
#define NMSG  400
#define TOTAL (NPUB * NMSG)
#define NSUB  2
#define CHAN  "h:a"

static ts_redis redis;
static daebus_app *app;
static daebus_ws *ws;
static int port;
static atomic_int pub_failures;

static int start_app(void)
{
    static daebus_ws_options wo = DAEBUS_WS_OPTIONS_INIT;
    wo.channels = true;
    wo.channel_subscribe = "h:*,p:*";
    wo.channel_history = "h:*";
    wo.cluster = DAEBUS_WS_CLUSTER_ON;
    wo.queue_max_messages = TOTAL + 100;
    static daebus_http_options ho = {.num_threads = 4};
    ts_service_options o = {.service = SVC,
                            .redis_url = redis.url,
                            .log_level = DAEBUS_LOG_ERROR,
                            .http_options = &ho,
                            .ws = true,
                            .ws_options = &wo,
                            .bus = true,
                            .wait_bus = 5};
    ts_service svc;
    if (ts_service_start(&svc, &o) != 0)
        return -1;
    app = svc.app;
    ws = svc.ws;
    port = svc.port;
    return 0;
}

static bool connect_client(wsc *c)
{
    return wsc_connect(c, port, "/ws", NULL) == 0;
}

/* Publishes {"p": p, "seq": seq} into channel. Returns: the publish's code. */
static int publish(const char *channel, int p, int seq)
{
    cJSON *d = cJSON_CreateObject();
    cJSON_AddNumberToObject(d, "p", p);
    cJSON_AddNumberToObject(d, "seq", seq);
    int rc = daebus_ws_channel_publish(ws, channel, d);
    cJSON_Delete(d);
    return rc;
}

static void *publisher(void *arg)
{
    int p = (int)(intptr_t)arg;
    for (int i = 1; i <= NMSG; i++)
        if (publish(CHAN, p, i) != 0)
            atomic_fetch_add(&pub_failures, 1);
    return NULL;
}

/* One channel message read from c. Returns: false when none came in time. */
typedef struct got {
    char channel[16];
    int p, seq;
    double offset; /* -1: none */
} got;

static bool recv_msg_within(wsc *c, got *g, int timeout_ms)
{
    for (;;) {
        char *t = wsc_recv_text(c, timeout_ms);
        if (!t)
            return false;
        cJSON *o = cJSON_Parse(t);
        free(t);
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(o, "type");
        bool msg = cJSON_IsString(type) && strcmp(type->valuestring, "channel_message") == 0;
        if (msg) {
            const cJSON *d = cJSON_GetObjectItemCaseSensitive(o, "data");
            const cJSON *off = cJSON_GetObjectItemCaseSensitive(o, "offset");
            const cJSON *ch = cJSON_GetObjectItemCaseSensitive(o, "channel");
            snprintf(g->channel, sizeof g->channel, "%s",
                     cJSON_IsString(ch) ? ch->valuestring : "");
            g->p = cJSON_GetObjectItem(d, "p")->valueint;
            g->seq = cJSON_GetObjectItem(d, "seq")->valueint;
            g->offset = cJSON_IsNumber(off) ? off->valuedouble : -1;
        }
        cJSON_Delete(o);
        if (msg)
            return true;
    }
}

static bool recv_msg(wsc *c, got *g)
{
    return recv_msg_within(c, g, 10000);
}

static void test_concurrent_grouped(void)
{
    static wsc subs[NSUB];
    for (int i = 0; i < NSUB; i++) {
        CU_ASSERT_TRUE_FATAL(connect_client(&subs[i]));
        CU_ASSERT_TRUE_FATAL(wsc_subscribe(&subs[i], CHAN));
    }
    daebus__ws_hpub_stats before;
    daebus__ws_hpub_get_stats(ws, &before);
    pthread_t pubs[NPUB];
    for (int p = 0; p < NPUB; p++)
        pthread_create(&pubs[p], NULL, publisher, (void *)(intptr_t)(p + 1));
    for (int p = 0; p < NPUB; p++)
        pthread_join(pubs[p], NULL);
    CU_ASSERT_EQUAL(atomic_load(&pub_failures), 0);
    for (int i = 0; i < NSUB; i++) {
        int last[NPUB + 1] = {0}, n = 0;
        double last_off = -1;
        got g;
        while (n < TOTAL && recv_msg(&subs[i], &g)) {
            n++;
            CU_ASSERT_TRUE(g.p >= 1 && g.p <= NPUB);
            if (g.p < 1 || g.p > NPUB)
                continue;
            CU_ASSERT_EQUAL(g.seq, last[g.p] + 1); /* once each, in the thread's order */
            last[g.p] = g.seq;
            CU_ASSERT_TRUE(g.offset > 0);
            CU_ASSERT_TRUE(last_off < 0 || g.offset == last_off + 1); /* no gap, increasing */
            last_off = g.offset;
        }
        CU_ASSERT_EQUAL(n, TOTAL);
    }
    daebus__ws_hpub_stats st;
    daebus__ws_hpub_get_stats(ws, &st);
    CU_ASSERT_EQUAL(st.queued - before.queued, TOTAL);
    CU_ASSERT_EQUAL(st.published - before.published, TOTAL);
    CU_ASSERT_EQUAL(st.failed, 0);
    /* grouped: fewer round trips than messages */
    CU_ASSERT_TRUE(st.groups - before.groups < (uint64_t)TOTAL);
    fprintf(stderr, "test_channels_hpub: %d publishes in %llu groups\n", TOTAL,
            (unsigned long long)(st.groups - before.groups));
    for (int i = 0; i < NSUB; i++)
        wsc_close(&subs[i]);
}

/* A plain publish and a history publish of one thread keep their call order. */
static void test_plain_history_order(void)
{
    wsc c;
    CU_ASSERT_TRUE_FATAL(connect_client(&c));
    CU_ASSERT_TRUE_FATAL(wsc_subscribe(&c, "h:mix"));
    CU_ASSERT_TRUE_FATAL(wsc_subscribe(&c, "p:mix"));
    enum { N = 300 };
    for (int i = 1; i <= N; i++) /* runs of 1..3 of each kind */
        CU_ASSERT_EQUAL(publish((i / 3) % 2 ? "h:mix" : "p:mix", 0, i), 0);
    got g;
    int n = 0;
    while (n < N && recv_msg(&c, &g)) {
        n++;
        CU_ASSERT_EQUAL(g.seq, n);
        CU_ASSERT_STRING_EQUAL(g.channel, (n / 3) % 2 ? "h:mix" : "p:mix");
        CU_ASSERT_TRUE((g.offset > 0) == ((n / 3) % 2 == 1));
    }
    CU_ASSERT_EQUAL(n, N);
    wsc_close(&c);
}

/* Runs one command on the private Redis. Returns: true when it answered OK. */
static bool redis_cmd(const char *cmd)
{
    redisContext *c = redisConnect("127.0.0.1", redis.port);
    redisReply *r = c && !c->err ? redisCommand(c, cmd) : NULL;
    bool ok = r && r->type == REDIS_REPLY_STATUS;
    if (r)
        freeReplyObject(r);
    if (c)
        redisFree(c);
    return ok;
}

/* Redis refuses the groups (OOM): the publishes were queued (0), each is
 * counted as failed, nothing is delivered, nothing is retried; once Redis
 * accepts again, publishes get through. */
static void test_group_refused(void)
{
    wsc c;
    CU_ASSERT_TRUE_FATAL(connect_client(&c));
    CU_ASSERT_TRUE_FATAL(wsc_subscribe(&c, "h:oom"));
    daebus_ws_stats s0;
    daebus_ws_get_stats(ws, &s0);
    daebus__ws_hpub_stats h0, h1;
    daebus__ws_hpub_get_stats(ws, &h0);
    CU_ASSERT_TRUE_FATAL(redis_cmd("CONFIG SET maxmemory 1"));
    enum { N = 50 };
    for (int i = 1; i <= N; i++)
        CU_ASSERT_EQUAL(publish("h:oom", 4, i), 0);
    TS_WAIT_UNTIL((daebus__ws_hpub_get_stats(ws, &h1), h1.queued == h1.published + h1.failed), 15);
    CU_ASSERT_TRUE_FATAL(redis_cmd("CONFIG SET maxmemory 0"));
    CU_ASSERT_EQUAL(h1.failed - h0.failed, N);
    CU_ASSERT_EQUAL(h1.published, h0.published);
    daebus_ws_stats s1;
    daebus_ws_get_stats(ws, &s1);
    CU_ASSERT_TRUE(s1.cluster_errors - s0.cluster_errors >= N);
    got g;
    CU_ASSERT_FALSE(recv_msg_within(&c, &g, 300));
    CU_ASSERT_EQUAL(publish("h:oom", 4, N + 1), 0);
    CU_ASSERT_TRUE(recv_msg(&c, &g) && g.seq == N + 1 && g.offset == 1);
    wsc_close(&c);
}

static void test_redis_away(void)
{
    daebus_ws_stats s0;
    daebus_ws_get_stats(ws, &s0);
    daebus__ws_hpub_stats h0;
    daebus__ws_hpub_get_stats(ws, &h0);
    ts_redis_kill(&redis);
    /* Publishes right after the kill are queued (the replica has not noticed
     * yet) and fail at Redis, or are refused: never another code, never a hang. */
    int econn = 0, other = 0;
    double t0 = daebus__now_mono();
    for (int i = 0; i < 300; i++) {
        int rc = publish("h:away", 1, i);
        econn += rc == DAEBUS_ECONN;
        other += rc != 0 && rc != DAEBUS_ECONN;
    }
    CU_ASSERT_EQUAL(other, 0);
    TS_WAIT_UNTIL(publish("h:away", 1, 0) == DAEBUS_ECONN, 15);
    CU_ASSERT_EQUAL(publish("h:away", 1, 0), DAEBUS_ECONN);
    /* every queued one sent or counted as failed */
    daebus__ws_hpub_stats h1;
    TS_WAIT_UNTIL((daebus__ws_hpub_get_stats(ws, &h1), h1.queued == h1.published + h1.failed), 15);
    CU_ASSERT_EQUAL(h1.queued, h1.published + h1.failed);
    CU_ASSERT_TRUE(daebus__now_mono() - t0 < 30);
    daebus_ws_stats s1;
    daebus_ws_get_stats(ws, &s1);
    CU_ASSERT_TRUE(s1.cluster_errors - s0.cluster_errors >=
                   (uint64_t)(econn + 2) + (h1.failed - h0.failed));
    fprintf(stderr, "test_channels_hpub: Redis away: %d ECONN, %llu queued ones failed\n", econn,
            (unsigned long long)(h1.failed - h0.failed));
    /* Redis back: publishes reach subscribers again */
    CU_ASSERT_EQUAL_FATAL(ts_redis_restart(&redis), 0);
    wsc c;
    CU_ASSERT_TRUE_FATAL(connect_client(&c));
    TS_WAIT_UNTIL(wsc_subscribe(&c, "h:back"), 15);
    /* the first group after the restart may fail (the pool finds its
     * connection broken): counted, not retried; later ones get through */
    got g = {0};
    TS_WAIT_UNTIL(publish("h:back", 2, 1) == 0 && recv_msg_within(&c, &g, 300), 15);
    CU_ASSERT_TRUE(g.p == 2 && g.offset > 0);
    wsc_close(&c);
}

/* What is queued when the app stops is published first. */
static void test_stop_flushes(void)
{
    enum { N = 1000 };
    int ok = 0;
    for (int i = 1; i <= N; i++)
        ok += publish("h:stop", 3, i) == 0;
    CU_ASSERT_EQUAL(ok, N);
    ts_app_stop(app);
    app = NULL;
    redisContext *c = redisConnect("127.0.0.1", redis.port);
    CU_ASSERT_FATAL(c && !c->err);
    redisReply *r = redisCommand(c, "XLEN daebus:" SVC ":ch:h:stop:hist");
    CU_ASSERT_TRUE(r && r->type == REDIS_REPLY_INTEGER && r->integer == N);
    if (r)
        freeReplyObject(r);
    redisFree(c);
}

int main(void)
{
    if (ts_redis_start(&redis, NULL) != 0)
        return 1;
    if (start_app() != 0) {
        ts_redis_stop(&redis);
        return 1;
    }
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("channels_hpub", NULL, NULL);
    CU_add_test(s, "concurrent publishers: grouped, ordered, once", test_concurrent_grouped);
    CU_add_test(s, "plain and history publishes keep call order", test_plain_history_order);
    CU_add_test(s, "Redis refuses a group: counted, not retried", test_group_refused);
    CU_add_test(s, "Redis away: ECONN, counted, no hang", test_redis_away);
    CU_add_test(s, "stop flushes the queue", test_stop_flushes);
    int rc = ts_run_cunit();
    if (app)
        ts_app_stop(app);
    ts_redis_stop(&redis);
    return rc;
}
