/* WebSocket life cycle: capacity cap (close 1013) with plain HTTP still answering,
 * heartbeat (silent clients dropped, ponging ones kept), graceful shutdown
 * (server_shutdown, then close 1001, disconnect handlers, 503 afterwards),
 * and the app's stop running that shutdown. */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include "ws_common.h"
#include "wsc.h"

static daebus_app *app;
static daebus_ws *ws;
static int port;
static atomic_int disconnects;

ROUTE(ping_route, "/ping")
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "ok", true);
    return daebus_http_send_json_take(res, 200, o);
}

SOCKET_DISCONNECT(on_disconnect)
{
    atomic_fetch_add(&disconnects, 1);
    return NULL;
}

SOCKET_CONNECT(on_connect)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "connected");
    cJSON_AddStringToObject(o, "client_id", client_id);
    return o;
}

static int suite_init(void)
{
    daebus_ws_options wo = DAEBUS_WS_OPTIONS_INIT;
    wo.max_clients = 5;
    wo.ping_interval = 0.2;
    wo.idle_timeout = 1.0;
    wo.close_timeout = 0.5;
    port = wst_start(&app, &ws, &wo, "ws_lifecycle");
    return port > 0 ? 0 : 1;
}

static int suite_clean(void)
{
    ts_app_stop(app);
    return 0;
}

/* A client that answers pings until told to stop; records what it saw. */
typedef struct ponger {
    wsc c;
    atomic_int stop;
    atomic_int pings;
    atomic_int texts;
    atomic_int closed; /* close frame or EOF seen */
    char first_text[512];
    pthread_t t;
} ponger;

static void *pong_main(void *arg)
{
    ponger *p = arg;
    while (!atomic_load(&p->stop)) {
        char *d;
        size_t n;
        int op = wsc_recv(&p->c, 50, &d, &n);
        if (op == 9) {
            atomic_fetch_add(&p->pings, 1);
            wsc_send(&p->c, 10, d, n);
        } else if (op == 1) {
            if (atomic_fetch_add(&p->texts, 1) == 1)
                snprintf(p->first_text, sizeof p->first_text, "%s", d);
        } else if (op == 8) {
            wsc_send(&p->c, 8, d, n < 2 ? n : 2);
            atomic_store(&p->closed, 1);
            free(d);
            break;
        } else if (op < 0) {
            atomic_store(&p->closed, 1);
            break;
        }
        free(d);
    }
    return NULL;
}

static int ponger_open(ponger *p, int prt)
{
    memset(p, 0, sizeof *p);
    if (wsc_connect(&p->c, prt, "/", NULL) != 0)
        return -1;
    return pthread_create(&p->t, NULL, pong_main, p);
}

static void ponger_close(ponger *p)
{
    atomic_store(&p->stop, 1);
    pthread_join(p->t, NULL);
    wsc_close(&p->c);
}

static void test_capacity(void)
{
    ponger ps[5];
    for (int i = 0; i < 5; i++)
        CU_ASSERT_EQUAL_FATAL(ponger_open(&ps[i], port), 0);
    TS_WAIT_UNTIL(daebus_ws_get_client_count(ws) == 5, 5);
    CU_ASSERT_EQUAL(daebus_ws_get_client_count(ws), 5);
    /* full: the upgrade completes only to be closed with 1013 */
    wsc extra;
    CU_ASSERT_EQUAL(wsc_connect(&extra, port, "/ws", NULL), 0);
    char *d = NULL;
    size_t n;
    CU_ASSERT_EQUAL(wsc_recv(&extra, 5000, &d, &n), 8);
    CU_ASSERT_EQUAL(extra.close_code, 1013);
    if (d && n > 2)
        CU_ASSERT_STRING_EQUAL(d + 2, "Server full");
    free(d);
    CU_ASSERT_EQUAL(wsc_recv(&extra, 5000, &d, &n), -1); /* then the server ends the TCP stream */
    wsc_close(&extra);
    ts_http_response r;
    CU_ASSERT_EQUAL_FATAL(ts_http(port, "GET", "/ping", NULL, NULL, 0, &r), 0);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_STRING_EQUAL(r.body, "{\"ok\":true}");
    ts_http_free(&r);
    daebus_ws_stats s;
    daebus_ws_get_stats(ws, &s);
    CU_ASSERT(s.rejected_upgrades >= 1);
    CU_ASSERT_EQUAL(s.clients_high_water, 5);
    /* a slot frees up when a client leaves */
    ponger_close(&ps[0]);
    TS_WAIT_UNTIL(daebus_ws_get_client_count(ws) == 4, 5);
    CU_ASSERT_EQUAL(ponger_open(&ps[0], port), 0);
    TS_WAIT_UNTIL(daebus_ws_get_client_count(ws) == 5, 5);
    CU_ASSERT_EQUAL(daebus_ws_get_client_count(ws), 5);
    for (int i = 0; i < 5; i++)
        ponger_close(&ps[i]);
    TS_WAIT_UNTIL(daebus_ws_get_client_count(ws) == 0, 5);
}

static void test_heartbeat(void)
{
    ponger live;
    CU_ASSERT_EQUAL_FATAL(ponger_open(&live, port), 0);
    wsc silent;
    CU_ASSERT_EQUAL_FATAL(wsc_connect(&silent, port, "/", NULL), 0);
    daebus_ws_stats s0, s1;
    daebus_ws_get_stats(ws, &s0);
    double t0 = ts_now();
    int pings = 0, gone = 0;
    while (ts_now() - t0 < 6 && !gone) {
        char *d;
        size_t n;
        int op = wsc_recv(&silent, 100, &d, &n);
        if (op == 9)
            pings++;
        if (op < 0)
            gone = 1;
        free(d);
    }
    double took = ts_now() - t0;
    CU_ASSERT_TRUE(gone);
    CU_ASSERT(pings >= 2);
    CU_ASSERT(took >= 0.8);
    TS_WAIT_UNTIL((daebus_ws_get_stats(ws, &s1), s1.disconnects_idle > s0.disconnects_idle), 5);
    CU_ASSERT_EQUAL(s1.disconnects_idle - s0.disconnects_idle, 1);
    /* the ponging client is still there and was pinged */
    CU_ASSERT_EQUAL(daebus_ws_get_client_count(ws), 1);
    CU_ASSERT(atomic_load(&live.pings) >= 2);
    CU_ASSERT_FALSE(atomic_load(&live.closed));
    wsc_close(&silent);
    ponger_close(&live);
    TS_WAIT_UNTIL(daebus_ws_get_client_count(ws) == 0, 5);
}

static void test_graceful_shutdown(void)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 %s/tests/integration/websocket/ws_cases.py hold %d 3",
             getenv("DAEBUS_SOURCE_DIR") ? getenv("DAEBUS_SOURCE_DIR") : ".", port);
    FILE *py = popen(cmd, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(py);
    char line[4096];
    CU_ASSERT_PTR_NOT_NULL(fgets(line, sizeof line, py)); /* the clients are connected */
    TS_WAIT_UNTIL(daebus_ws_get_client_count(ws) == 3, 5);
    CU_ASSERT_EQUAL(daebus_ws_get_client_count(ws), 3);
    int d0 = atomic_load(&disconnects);
    cJSON *msg = cJSON_CreateObject();
    cJSON_AddStringToObject(msg, "message", "maintenance");
    cJSON_AddBoolToObject(msg, "reconnect", false);
    double t0 = ts_now();
    CU_ASSERT_EQUAL(daebus_ws_graceful_shutdown(ws, 1.0, msg), 0);
    double took = ts_now() - t0;
    cJSON_Delete(msg);
    CU_ASSERT(took >= 0.9 && took < 5.0);
    CU_ASSERT_EQUAL(atomic_load(&disconnects) - d0, 3);
    CU_ASSERT_EQUAL(daebus_ws_get_client_count(ws), 0);
    int st = pclose(py);
    CU_ASSERT_EQUAL(WEXITSTATUS(st), 0);
    /* after it: upgrades refused, HTTP still served */
    wsc late;
    CU_ASSERT_EQUAL(wsc_connect(&late, port, "/", NULL), -1);
    CU_ASSERT_EQUAL(late.status, 503);
    wsc_close(&late);
    ts_http_response r;
    CU_ASSERT_EQUAL_FATAL(ts_http(port, "GET", "/ping", NULL, NULL, 0, &r), 0);
    CU_ASSERT_EQUAL(r.status, 200);
    ts_http_free(&r);
}

/* ---- the app's stop runs the graceful shutdown ---- */

static void test_app_stop(void)
{
    daebus_app *a2 = NULL;
    daebus_ws *w2 = NULL;
    daebus_ws_options wo = DAEBUS_WS_OPTIONS_INIT;
    wo.shutdown_timeout = 0.3;
    int p2 = wst_start(&a2, &w2, &wo, "ws_stop");
    CU_ASSERT_FATAL(p2 > 0);
    ponger p;
    CU_ASSERT_EQUAL_FATAL(ponger_open(&p, p2), 0);
    TS_WAIT_UNTIL(daebus_ws_get_client_count(w2) == 1, 5);
    int d0 = atomic_load(&disconnects);
    double t0 = ts_now();
    daebus_app_stop(a2);
    CU_ASSERT_EQUAL(daebus_app_wait(a2), 0);
    double took = ts_now() - t0;
    CU_ASSERT(took < 5.0);
    pthread_join(p.t, NULL);
    CU_ASSERT_TRUE(atomic_load(&p.closed));
    CU_ASSERT_EQUAL(p.c.close_code, 1001);
    CU_ASSERT_PTR_NOT_NULL(strstr(p.first_text, "\"type\":\"server_shutdown\""));
    CU_ASSERT_EQUAL(atomic_load(&disconnects) - d0, 1);
    wsc_close(&p.c);
    daebus_app_destroy(a2);
}

int main(void)
{
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("ws_lifecycle", suite_init, suite_clean);
    CU_add_test(s, "capacity 1013 + HTTP", test_capacity);
    CU_add_test(s, "heartbeat", test_heartbeat);
    CU_add_test(s, "graceful shutdown", test_graceful_shutdown);
    CU_pSuite s2 = CU_add_suite("ws_app_stop", NULL, NULL);
    CU_add_test(s2, "app stop runs the graceful shutdown", test_app_stop);
    return ts_run_cunit();
}
