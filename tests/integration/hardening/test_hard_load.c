/* Hardening: the load/fault test. 500 WebSocket clients send at once while
 * the server broadcasts to all of them every few milliseconds, plain HTTP is
 * polled, and Redis (which every message handler publishes to) is killed and
 * restarted in the middle. At the end:
 *   - every message was handled exactly once (server-side tally);
 *   - every reply reached the client that sent the message (its request_id
 *     and the client id echoed), exactly once;
 *   - every client saw broadcasts, HTTP never failed;
 *   - the bus reconnected and a listener gets a new message exactly once.
 * Phase A (rounds 0-1) runs with Redis up; Redis is killed, then phase B
 * (rounds 2-3, paced over about half a second) runs while it restarts: its
 * handlers' publishes fail with DAEBUS_ECONN, then succeed again; neither
 * affects the WebSocket replies. Sizes are bounded (500 x 4 messages) to
 * finish in seconds, also under the sanitizers. */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include "daebus/daebus.h"
#include "daebus/http.h"
#include "daebus/websocket.h"
#include "testsupport.h"
#include "wsc.h"

#define SVC     "hard_load"
#define N       500 /* clients */
#define M       4   /* messages per client: rounds 0-1 with Redis up, 2-3 across its restart */
#define DRIVERS 4
static ts_redis redis;
static daebus_app *app;
static daebus_ws *ws;
static daebus_bus *bus;
static int port;

/* server side */
static atomic_int handled[N][M];
static atomic_int bus_ok, bus_failed, bad_messages, listened;
static pthread_mutex_t ids_lock = PTHREAD_MUTEX_INITIALIZER;
static char *ids[N]; /* the client id that sent i's messages */
static atomic_int id_mismatch;

SOCKET(s_work, "work")
{
    const cJSON *d = daebus_ws_request_data(req);
    const cJSON *ji = cJSON_GetObjectItem(d, "i"), *jk = cJSON_GetObjectItem(d, "k");
    int i = cJSON_IsNumber(ji) ? ji->valueint : -1, k = cJSON_IsNumber(jk) ? jk->valueint : -1;
    if (i < 0 || i >= N || k < 0 || k >= M) {
        atomic_fetch_add(&bad_messages, 1);
        return daebus_ws_request_fail(req, "bad i/k");
    }
    atomic_fetch_add(&handled[i][k], 1);
    pthread_mutex_lock(&ids_lock);
    if (!ids[i])
        ids[i] = strdup(client_id);
    else if (strcmp(ids[i], client_id) != 0)
        atomic_fetch_add(&id_mismatch, 1);
    pthread_mutex_unlock(&ids_lock);
    /* in flight on the bus while Redis goes away and comes back */
    int rc = daebus_bus_broadcast(bus, "hard_load_events", d);
    atomic_fetch_add(rc >= 0 ? &bus_ok : &bus_failed, 1);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "i", i);
    cJSON_AddNumberToObject(o, "k", k);
    cJSON_AddStringToObject(o, "client", client_id);
    cJSON_AddBoolToObject(o, "published", rc >= 0);
    return o;
}

LISTEN(l_events, "hard_load_events")
{
    if (cJSON_GetObjectItem(message, "probe"))
        atomic_fetch_add(&listened, 1);
    return 0;
}

ROUTE(r_ping, "/ping")
{
    return daebus_http_send(res, 200, "text/plain", "pong", 4);
}

/* ---- client side ---- */

typedef struct client {
    wsc c;
    int replies[M];
    int wrong;   /* replies that were not ours */
    int ticks;   /* broadcasts seen */
    char id[64]; /* the client id the replies named */
} client;

static client cl[N];
static pthread_barrier_t barrier;
static atomic_int failures; /* connect/send/protocol failures on the client side */

static void on_frame(client *me, int i, const char *text)
{
    cJSON *j = cJSON_Parse(text);
    const char *type = cJSON_GetStringValue(cJSON_GetObjectItem(j, "type"));
    if (type && strcmp(type, "tick") == 0) {
        me->ticks++;
    } else if (type && strcmp(type, "response") == 0) {
        const cJSON *d = cJSON_GetObjectItem(j, "data");
        const char *rid = cJSON_GetStringValue(cJSON_GetObjectItem(j, "request_id"));
        int ri = -1, rk = -1;
        if (!rid || sscanf(rid, "%d-%d", &ri, &rk) != 2 || ri != i || rk < 0 || rk >= M ||
            cJSON_GetNumberValue(cJSON_GetObjectItem(d, "i")) != i ||
            cJSON_GetNumberValue(cJSON_GetObjectItem(d, "k")) != rk) {
            me->wrong++;
        } else {
            me->replies[rk]++;
            const char *cid = cJSON_GetStringValue(cJSON_GetObjectItem(d, "client"));
            if (!me->id[0] && cid)
                snprintf(me->id, sizeof me->id, "%s", cid);
            else if (!cid || strcmp(me->id, cid) != 0)
                me->wrong++;
        }
    } else {
        me->wrong++;
    }
    cJSON_Delete(j);
}

static int round_done(int lo, int hi, int upto)
{
    for (int i = lo; i < hi; i++)
        for (int k = 0; k < upto; k++)
            if (cl[i].replies[k] < 1)
                return 0;
    return 1;
}

/* Reads frames of clients [lo, hi) until rounds < upto are answered, or
 * seconds pass; then a little longer, to catch duplicates. */
static void pump(int lo, int hi, int upto, double seconds)
{
    struct pollfd pf[N];
    double end = ts_now() + seconds, settle = 0;
    for (;;) {
        double now = ts_now();
        if (now > end || (settle > 0 && now > settle))
            break;
        if (settle == 0 && round_done(lo, hi, upto))
            settle = now + 0.2;
        for (int i = lo; i < hi; i++)
            pf[i - lo] = (struct pollfd){.fd = cl[i].c.fd, .events = POLLIN};
        if (poll(pf, (nfds_t)(hi - lo), 50) <= 0)
            continue;
        for (int i = lo; i < hi; i++) {
            if (!(pf[i - lo].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            for (;;) {
                char *d = NULL;
                size_t n = 0;
                int op = wsc_recv(&cl[i].c, 0, &d, &n);
                if (op == 1)
                    on_frame(&cl[i], i, d);
                else if (op == 9)
                    wsc_send(&cl[i].c, 10, d, n);
                else if (op == 8 || op < 0)
                    atomic_fetch_add(&failures, 1);
                free(d);
                if (op <= 0 || op == 8)
                    break;
            }
        }
    }
}

/* Sends round k for clients [lo, hi); paced > 0: batches of 10 every
 * paced ms (spreads phase B over Redis' restart). */
static void send_round(int lo, int hi, int k, int paced)
{
    for (int i = lo; i < hi; i++) {
        if (paced && i > lo && (i - lo) % 10 == 0)
            ts_sleep_ms(paced);
        char msg[128];
        snprintf(msg, sizeof msg,
                 "{\"type\":\"work\",\"data\":{\"i\":%d,\"k\":%d},\"request_id\":\"%d-%d\"}", i, k,
                 i, k);
        if (wsc_send_text(&cl[i].c, msg) != 0)
            atomic_fetch_add(&failures, 1);
    }
}

static void *driver(void *arg)
{
    int d = (int)(long)arg;
    int lo = d * (N / DRIVERS), hi = lo + N / DRIVERS;
    for (int i = lo; i < hi; i++)
        if (wsc_connect(&cl[i].c, port, "/ws", NULL) != 0)
            atomic_fetch_add(&failures, 1);
    pthread_barrier_wait(&barrier); /* every client connected */
    pthread_barrier_wait(&barrier); /* phase A: all at once, Redis up */
    send_round(lo, hi, 0, 0);
    send_round(lo, hi, 1, 0);
    pump(lo, hi, 2, 40);
    pthread_barrier_wait(&barrier); /* main kills Redis now */
    pthread_barrier_wait(&barrier); /* phase B: all at once, across the restart */
    send_round(lo, hi, 2, 20);
    send_round(lo, hi, 3, 20);
    pump(lo, hi, 4, 40);
    return NULL;
}

typedef struct poller {
    atomic_int stop, ok, bad;
} poller;

static void *http_poll(void *arg)
{
    poller *p = arg;
    while (!atomic_load(&p->stop)) {
        ts_http_response r;
        int ok = ts_http(port, "GET", "/ping", NULL, NULL, 0, &r) == 0 && r.status == 200;
        if (ok || r.body)
            ts_http_free(&r);
        atomic_fetch_add(ok ? &p->ok : &p->bad, 1);
        ts_sleep_ms(20);
    }
    return NULL;
}

static atomic_int tick_stop;
static void *ticker(void *arg)
{
    (void)arg;
    int n = 0;
    while (!atomic_load(&tick_stop)) {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddNumberToObject(d, "n", n++);
        daebus_ws_broadcast_to_all(ws, d, "tick");
        cJSON_Delete(d);
        ts_sleep_ms(10);
    }
    return NULL;
}

static void *restarter(void *arg)
{
    int *rc = arg;
    ts_sleep_ms(150);
    *rc = ts_redis_restart(&redis);
    return NULL;
}

static void test_load_and_restart(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 4096) {
        rl.rlim_cur = rl.rlim_max < 4096 ? rl.rlim_max : 4096;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    CU_ASSERT_EQUAL_FATAL(ts_redis_start(&redis, NULL), 0);
    daebus_http_options ho = {.num_threads = 4};
    daebus_ws_options wo = DAEBUS_WS_OPTIONS_INIT;
    wo.max_clients = N + 8;
    wo.queue_max_messages = 20000;
    wo.queue_max_bytes = (size_t)16 << 20;
    daebus_bus_options bo = DAEBUS_BUS_OPTIONS_INIT;
    bo.reconnect_initial = 0.05;
    bo.reconnect_max = 0.3;
    bo.connect_timeout = 1;
    bo.command_timeout = 1;
    ts_service svc;
    ts_service_options o = {.service = SVC,
                            .redis_url = redis.url,
                            .log_level = DAEBUS_LOG_CRITICAL,
                            .http_options = &ho,
                            .ws = true,
                            .ws_options = &wo,
                            .bus = true,
                            .bus_options = &bo,
                            .wait_bus = 5};
    CU_ASSERT_EQUAL_FATAL(ts_service_start(&svc, &o), 0);
    app = svc.app;
    ws = svc.ws;
    bus = svc.bus;
    port = svc.port;

    double t0 = ts_now();
    pthread_barrier_init(&barrier, NULL, DRIVERS + 1);
    pthread_t drv[DRIVERS], tick, hp;
    for (int d = 0; d < DRIVERS; d++)
        pthread_create(&drv[d], NULL, driver, (void *)(long)d);
    pthread_barrier_wait(&barrier);
    TS_WAIT_UNTIL(daebus_ws_get_client_count(ws) == N, 10);
    CU_ASSERT_EQUAL(daebus_ws_get_client_count(ws), N);
    double t_conn = ts_now() - t0;
    poller p = {0};
    pthread_create(&hp, NULL, http_poll, &p);
    atomic_store(&tick_stop, 0);
    pthread_create(&tick, NULL, ticker, NULL);
    pthread_barrier_wait(&barrier); /* phase A */
    pthread_barrier_wait(&barrier); /* phase A answered */
    int ok_before = atomic_load(&bus_ok);
    ts_redis_kill(&redis);
    int restart_rc = -1;
    pthread_t rs;
    pthread_create(&rs, NULL, restarter, &restart_rc);
    pthread_barrier_wait(&barrier); /* phase B */
    for (int d = 0; d < DRIVERS; d++)
        pthread_join(drv[d], NULL);
    pthread_join(rs, NULL);
    CU_ASSERT_EQUAL(restart_rc, 0);
    atomic_store(&tick_stop, 1);
    pthread_join(tick, NULL);
    double t_load = ts_now() - t0;

    /* exactly once, to the right client */
    int missing = 0, dup_replies = 0, dup_handled = 0, unhandled = 0, wrong = 0, no_ticks = 0;
    for (int i = 0; i < N; i++) {
        for (int k = 0; k < M; k++) {
            missing += cl[i].replies[k] == 0;
            dup_replies += cl[i].replies[k] > 1;
            unhandled += atomic_load(&handled[i][k]) == 0;
            dup_handled += atomic_load(&handled[i][k]) > 1;
        }
        wrong += cl[i].wrong;
        no_ticks += cl[i].ticks == 0;
        if (ids[i] && strcmp(ids[i], cl[i].id) != 0)
            wrong++;
    }
    CU_ASSERT_EQUAL(atomic_load(&failures), 0);
    CU_ASSERT_EQUAL(missing, 0);
    CU_ASSERT_EQUAL(dup_replies, 0);
    CU_ASSERT_EQUAL(unhandled, 0);
    CU_ASSERT_EQUAL(dup_handled, 0);
    CU_ASSERT_EQUAL(wrong, 0);
    CU_ASSERT_EQUAL(atomic_load(&id_mismatch), 0);
    CU_ASSERT_EQUAL(atomic_load(&bad_messages), 0);
    CU_ASSERT_EQUAL(no_ticks, 0);
    CU_ASSERT_EQUAL(ok_before, N * 2); /* Redis up: every publish of phase A went out */
    CU_ASSERT_EQUAL(atomic_load(&bus_ok) + atomic_load(&bus_failed), N * M);
    CU_ASSERT(atomic_load(&bus_failed) >= 1); /* phase B starts with Redis down */
    daebus_ws_stats st;
    daebus_ws_get_stats(ws, &st);
    CU_ASSERT_EQUAL(st.disconnects, 0);
    CU_ASSERT_EQUAL(st.handler_errors, 0);
    CU_ASSERT(st.messages_in >= (uint64_t)(N * M));

    /* the bus is back: resubscribed once, publishing again */
    TS_WAIT_UNTIL(ts_bus_connected(bus), 10);
    CU_ASSERT_TRUE(ts_bus_connected(bus));
    daebus_caller *c = daebus_bus_caller(bus);
    cJSON *probe = cJSON_CreateObject();
    cJSON_AddTrueToObject(probe, "probe");
    int sent = -1;
    for (double end = ts_now() + 10; ts_now() < end && sent != 1; ts_sleep_ms(50))
        sent = daebus_bus_broadcast(bus, "hard_load_events", probe);
    cJSON_Delete(probe);
    CU_ASSERT_EQUAL(sent, 1); /* one subscriber: ours */
    TS_WAIT_UNTIL(atomic_load(&listened) >= 1, 5);
    ts_sleep_ms(200);
    CU_ASSERT_EQUAL(atomic_load(&listened), 1);
    (void)c;

    atomic_store(&p.stop, 1);
    pthread_join(hp, NULL);
    CU_ASSERT_EQUAL(atomic_load(&p.bad), 0);
    CU_ASSERT(atomic_load(&p.ok) > 0);
    fprintf(stderr,
            "\n  %d clients connected in %.2f s; %d messages, %d replies each delivered once; "
            "%d published, %d refused while Redis was down; %d HTTP polls; total %.2f s\n",
            N, t_conn, N * M, N * M - missing, atomic_load(&bus_ok), atomic_load(&bus_failed),
            atomic_load(&p.ok), t_load);

    for (int i = 0; i < N; i++)
        wsc_close(&cl[i].c);
    TS_WAIT_UNTIL(daebus_ws_get_client_count(ws) == 0, 20);
    CU_ASSERT_EQUAL(daebus_ws_get_client_count(ws), 0);
    ts_service_stop(&svc);
    ts_redis_stop(&redis);
    for (int i = 0; i < N; i++)
        free(ids[i]);
    pthread_barrier_destroy(&barrier);
}

int main(void)
{
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("hard_load", NULL, NULL);
    CU_add_test(s, "500 clients, broadcasts, Redis restart", test_load_and_restart);
    return ts_run_cunit();
}
