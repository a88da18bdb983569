/* Hardening: faults, with HTTP, WebSocket and the bus in one service.
 *   - Redis killed and restarted: HTTP and WebSocket keep answering; a route
 *     or socket handler using the bus gets a clear error at once (no hang);
 *     the bus resubscribes and a listener gets a message exactly once.
 *   - A slow or failing handler affects only its own request (HTTP, WS).
 *   - A WebSocket client that vanishes (RST) while the server is writing to
 *     it is cleaned up; the others keep receiving.
 *   - HTTP clients that stall half-way through a request (half-open) are
 *     timed out and their threads serve others again.
 *   - SIGTERM under load: in-flight requests finish, WebSocket clients get
 *     server_shutdown and close 1001, the process exits 0 (hard_service). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include "daebus/daebus.h"
#include "daebus/http.h"
#include "daebus/websocket.h"
#include "testsupport.h"
#include "wsc.h"

#define SVC "hard_faults"
static ts_redis redis;
static ts_service svc;
static daebus_app *app;
static daebus_bus *bus;
static daebus_ws *ws;
static int port;
static atomic_int listened, ws_disconnects;

ROUTE(r_ping, "/ping")
{
    return daebus_http_send(res, 200, "text/plain", "pong", 4);
}

ROUTE(r_slow, "/slow")
{
    ts_sleep_ms(3000);
    return daebus_http_send(res, 200, "text/plain", "slow", 4);
}

/* 16 MiB: more than the socket buffers hold, for a client that never reads */
ROUTE(r_big, "/big")
{
    size_t n = (size_t)16 << 20;
    char *b = malloc(n);
    memset(b, 'b', n);
    int rc = daebus_http_send(res, 200, "application/octet-stream", b, n);
    free(b);
    return rc == DAEBUS_EIO ? 0 : rc; /* the client went away: nothing more to do */
}

ROUTE(r_fail, "/fail")
{
    return -1;
}

/* Calls this service's "add" action over Redis. */
ROUTE(r_call, "/call")
{
    daebus_caller *c = daebus_bus_caller(bus);
    cJSON *p = cJSON_CreateObject();
    cJSON_AddNumberToObject(p, "a", 2);
    cJSON_AddNumberToObject(p, "b", 3);
    cJSON *reply = NULL;
    daebus_error e = {0};
    int rc = c ? daebus_caller_request(c, SVC, "add", p, 6.0, &reply, &e) : DAEBUS_ECONN;
    cJSON_Delete(p);
    if (rc != 0) {
        char msg[300];
        snprintf(msg, sizeof msg, "bus unavailable: %s", c ? e.message : "no caller");
        return daebus_http_send_error(res, 503, msg);
    }
    return daebus_http_send_json_take(res, 200, reply);
}

ACTION(a_add, "add")
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "sum",
                            cJSON_GetNumberValue(cJSON_GetObjectItem(payload, "a")) +
                                cJSON_GetNumberValue(cJSON_GetObjectItem(payload, "b")));
    return daebus_bus_reply_take(req, o);
}

LISTEN(l_events, "hard_events")
{
    atomic_fetch_add(&listened, 1);
    return 0;
}

SOCKET(s_echo, "echo")
{
    return cJSON_Duplicate(daebus_ws_request_data(req), true);
}

SOCKET(s_slow, "slow")
{
    ts_sleep_ms(3000);
    return cJSON_CreateString("slow done");
}

SOCKET(s_fail, "fail")
{
    return daebus_ws_request_fail(req, "this one failed");
}

/* Publishes data on the bus; answers with the result code. */
SOCKET(s_bcast, "bcast")
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "rc",
                            daebus_bus_broadcast(bus, "hard_events", daebus_ws_request_data(req)));
    return o;
}

SOCKET_DISCONNECT(s_gone)
{
    atomic_fetch_add(&ws_disconnects, 1);
    return NULL;
}

static int suite_init(void)
{
    if (ts_redis_start(&redis, NULL) != 0)
        return 1;
    daebus_http_options ho = {.num_threads = 6, .request_timeout_ms = 1000};
    daebus_ws_options wo = DAEBUS_WS_OPTIONS_INIT;
    wo.max_clients = 6;
    wo.close_timeout = 0.5;
    daebus_bus_options bo = DAEBUS_BUS_OPTIONS_INIT;
    bo.reconnect_initial = 0.05;
    bo.reconnect_max = 0.4;
    ts_service_options o = {.service = SVC,
                            .redis_url = redis.url,
                            .max_workers = 4,
                            .log_level = DAEBUS_LOG_CRITICAL,
                            .http_options = &ho,
                            .ws = true,
                            .ws_options = &wo,
                            .bus = true,
                            .bus_options = &bo};
    if (ts_service_start(&svc, &o) != 0)
        return 1;
    app = svc.app;
    ws = svc.ws;
    bus = svc.bus;
    port = svc.port;
    return 0;
}

static int suite_clean(void)
{
    ts_service_stop(&svc);
    ts_redis_stop(&redis);
    return 0;
}

static int get(const char *path, ts_http_response *r)
{
    if (ts_http(port, "GET", path, NULL, NULL, 0, r) != 0)
        return -1;
    return r->status;
}

static int get_status(const char *path)
{
    ts_http_response r;
    int s = get(path, &r);
    if (s >= 0)
        ts_http_free(&r);
    return s;
}

static char *ask(wsc *c, const char *msg)
{
    if (wsc_send_text(c, msg) != 0)
        return NULL;
    return wsc_recv_text(c, 10000);
}

static void test_redis_outage(void)
{
    TS_WAIT_UNTIL(ts_bus_connected(bus), 5);
    CU_ASSERT_TRUE_FATAL(ts_bus_connected(bus));
    ts_http_response r;
    CU_ASSERT_EQUAL(get("/call", &r), 200);
    CU_ASSERT_STRING_EQUAL(r.body, "{\"sum\":5}");
    ts_http_free(&r);
    wsc c;
    CU_ASSERT_EQUAL_FATAL(wsc_connect(&c, port, "/", NULL), 0);
    char *t = ask(&c, "{\"type\":\"bcast\",\"data\":{\"n\":1}}");
    CU_ASSERT_STRING_EQUAL(t ? t : "",
                           "{\"type\":\"response\",\"data\":{\"rc\":1},\"success\":true}");
    free(t);
    TS_WAIT_UNTIL(atomic_load(&listened) == 1, 5);
    CU_ASSERT_EQUAL(atomic_load(&listened), 1);

    ts_redis_kill(&redis);
    TS_WAIT_UNTIL(!ts_bus_connected(bus), 5);
    /* HTTP and WebSocket keep serving; bus users fail fast and clearly */
    for (int i = 0; i < 3; i++) {
        double t0 = ts_now();
        CU_ASSERT_EQUAL(get_status("/ping"), 200);
        CU_ASSERT_EQUAL(get("/call", &r), 503);
        CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "bus unavailable"));
        ts_http_free(&r);
        t = ask(&c, "{\"type\":\"echo\",\"data\":\"up\"}");
        CU_ASSERT_STRING_EQUAL(t ? t : "",
                               "{\"type\":\"response\",\"data\":\"up\",\"success\":true}");
        free(t);
        t = ask(&c, "{\"type\":\"bcast\",\"data\":{\"n\":2}}");
        char want[64];
        snprintf(want, sizeof want, "{\"type\":\"response\",\"data\":{\"rc\":%d},\"success\":true}",
                 DAEBUS_ECONN);
        CU_ASSERT_STRING_EQUAL(t ? t : "", want);
        free(t);
        CU_ASSERT(ts_now() - t0 < 4.0); /* well inside the 6 s caller time-out: no hang */
        ts_sleep_ms(100);
    }
    /* back: resubscribed (listener and service channel), callers work again */
    CU_ASSERT_EQUAL_FATAL(ts_redis_restart(&redis), 0);
    TS_WAIT_UNTIL(ts_bus_connected(bus), 10);
    CU_ASSERT_TRUE(ts_bus_connected(bus));
    int status = 0;
    for (double end = ts_now() + 10; ts_now() < end && status != 200; ts_sleep_ms(100))
        status = get_status("/call");
    CU_ASSERT_EQUAL(status, 200);
    t = ask(&c, "{\"type\":\"bcast\",\"data\":{\"n\":3}}");
    CU_ASSERT_STRING_EQUAL(t ? t : "",
                           "{\"type\":\"response\",\"data\":{\"rc\":1},\"success\":true}");
    free(t);
    TS_WAIT_UNTIL(atomic_load(&listened) == 2, 5);
    ts_sleep_ms(200);
    CU_ASSERT_EQUAL(atomic_load(&listened), 2); /* once: a single subscription */
    struct daebus_bus_stats st;
    daebus_bus_get_stats(bus, &st);
    CU_ASSERT(st.reconnects >= 1);
    wsc_close(&c);
    TS_WAIT_UNTIL(daebus_ws_get_client_count(ws) == 0, 5);
    CU_ASSERT_EQUAL(daebus_ws_get_client_count(ws), 0);
}

static void *slow_get(void *arg)
{
    int *status = arg;
    *status = get_status("/slow");
    return NULL;
}

static void test_handler_isolation(void)
{
    /* HTTP: a slow request does not hold up the others; a failing one gets 500 */
    pthread_t th;
    int slow_status = 0;
    pthread_create(&th, NULL, slow_get, &slow_status);
    ts_sleep_ms(100);
    double worst = 0;
    for (int i = 0; i < 10; i++) {
        double t0 = ts_now();
        CU_ASSERT_EQUAL(get_status("/ping"), 200);
        if (ts_now() - t0 > worst)
            worst = ts_now() - t0;
    }
    CU_ASSERT(worst < 2.0); /* not queued behind the 3 s one */
    ts_http_response r;
    CU_ASSERT_EQUAL(get("/fail", &r), 500);
    CU_ASSERT_STRING_EQUAL(r.body, "{\"error\":\"Internal server error\"}");
    ts_http_free(&r);
    CU_ASSERT_EQUAL(get_status("/ping"), 200);
    pthread_join(th, NULL);
    CU_ASSERT_EQUAL(slow_status, 200);

    /* WebSocket: a's slow handler does not delay b; a's failure is a's only */
    wsc a, b;
    CU_ASSERT_EQUAL_FATAL(wsc_connect(&a, port, "/", NULL), 0);
    CU_ASSERT_EQUAL_FATAL(wsc_connect(&b, port, "/", NULL), 0);
    CU_ASSERT_EQUAL(wsc_send_text(&a, "{\"type\":\"slow\",\"request_id\":1}"), 0);
    ts_sleep_ms(100);
    double t0 = ts_now();
    char *t = ask(&b, "{\"type\":\"echo\",\"data\":\"b\"}");
    CU_ASSERT(ts_now() - t0 < 2.0);
    CU_ASSERT_STRING_EQUAL(t ? t : "", "{\"type\":\"response\",\"data\":\"b\",\"success\":true}");
    free(t);
    t = ask(&b, "{\"type\":\"fail\",\"request_id\":\"f\"}");
    CU_ASSERT_STRING_EQUAL(
        t ? t : "",
        "{\"type\":\"error\",\"data\":{\"error\":\"this one "
        "failed\"},\"request_id\":\"f\",\"success\":false,\"error\":\"this one failed\"}");
    free(t);
    t = wsc_recv_text(&a, 10000);
    CU_ASSERT_STRING_EQUAL(
        t ? t : "",
        "{\"type\":\"response\",\"data\":\"slow done\",\"request_id\":1,\"success\":true}");
    free(t);
    t = ask(&b, "{\"type\":\"echo\",\"data\":\"still\"}");
    CU_ASSERT_STRING_EQUAL(t ? t : "",
                           "{\"type\":\"response\",\"data\":\"still\",\"success\":true}");
    free(t);
    wsc_close(&a);
    wsc_close(&b);
    TS_WAIT_UNTIL(daebus_ws_get_client_count(ws) == 0, 5);
}

static atomic_int flood_stop;
static void *flood(void *arg)
{
    (void)arg;
    cJSON *d = cJSON_CreateObject();
    char *blob = malloc(4096);
    memset(blob, 'x', 4095);
    blob[4095] = '\0';
    cJSON_AddStringToObject(d, "blob", blob);
    free(blob);
    while (!atomic_load(&flood_stop)) {
        daebus_ws_broadcast_to_all(ws, d, "flood");
        ts_sleep_ms(5);
    }
    cJSON_Delete(d);
    return NULL;
}

typedef struct reader {
    wsc *c;
    atomic_int stop, frames, eof;
} reader;

static void *read_main(void *arg)
{
    reader *r = arg;
    while (!atomic_load(&r->stop)) {
        char *t = wsc_recv_text(r->c, 100);
        if (t)
            atomic_fetch_add(&r->frames, 1);
        else if (r->c->fd < 0 || wsc_recv(r->c, 0, &t, &(size_t){0}) < 0)
            atomic_store(&r->eof, 1);
        free(t);
        if (atomic_load(&r->eof))
            break;
    }
    return NULL;
}

static void test_vanishing_ws_client(void)
{
    wsc keep, gone;
    CU_ASSERT_EQUAL_FATAL(wsc_connect(&keep, port, "/", NULL), 0);
    CU_ASSERT_EQUAL_FATAL(wsc_connect(&gone, port, "/", NULL), 0);
    TS_WAIT_UNTIL(daebus_ws_get_client_count(ws) == 2, 5);
    int d0 = atomic_load(&ws_disconnects);
    daebus_ws_stats s0, s1;
    daebus_ws_get_stats(ws, &s0);
    reader rd = {.c = &keep};
    pthread_t rt, th;
    pthread_create(&rt, NULL, read_main, &rd);
    atomic_store(&flood_stop, 0);
    pthread_create(&th, NULL, flood, NULL);
    /* the doomed one reads a little, then resets its connection mid-stream */
    for (int i = 0; i < 5; i++)
        free(wsc_recv_text(&gone, 5000));
    struct linger lg = {1, 0};
    setsockopt(gone.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    wsc_close(&gone);
    TS_WAIT_UNTIL(atomic_load(&ws_disconnects) > d0, 5);
    CU_ASSERT_EQUAL(atomic_load(&ws_disconnects) - d0, 1);
    TS_WAIT_UNTIL(daebus_ws_get_client_count(ws) == 1,
                  5); /* removed after its disconnect handler */
    CU_ASSERT_EQUAL(daebus_ws_get_client_count(ws), 1);
    /* the other one still receives */
    int f0 = atomic_load(&rd.frames);
    TS_WAIT_UNTIL(atomic_load(&rd.frames) >= f0 + 50 || atomic_load(&rd.eof), 5);
    CU_ASSERT(atomic_load(&rd.frames) >= f0 + 50);
    CU_ASSERT_FALSE(atomic_load(&rd.eof));
    atomic_store(&flood_stop, 1);
    pthread_join(th, NULL);
    atomic_store(&rd.stop, 1);
    pthread_join(rt, NULL);
    daebus_ws_get_stats(ws, &s1);
    CU_ASSERT_EQUAL(s1.disconnects_client - s0.disconnects_client, 1);
    CU_ASSERT_EQUAL(s1.disconnects_slow, s0.disconnects_slow);
    wsc_close(&keep);
    TS_WAIT_UNTIL(daebus_ws_get_client_count(ws) == 0, 5);
    CU_ASSERT_EQUAL(daebus_ws_get_client_count(ws), 0);
}

static int open_stalled(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    const char *half = "POST /ping HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       "Content-Length: 100\r\n\r\n{\"a\":";
    if (write(fd, half, strlen(half)) != (ssize_t)strlen(half)) {
        close(fd);
        return -1;
    }
    return fd;
}

static void test_stalled_http_clients(void)
{
    /* More stalled requests than worker threads (6 HTTP + 6 WebSocket):
     * the request time-out (1 s) frees them and /ping gets through. */
    enum { N = 14 };
    int fds[N];
    for (int i = 0; i < N; i++)
        fds[i] = open_stalled();
    ts_sleep_ms(200);
    double t0 = ts_now();
    int status = get_status("/ping");
    double took = ts_now() - t0;
    CU_ASSERT_EQUAL(status, 200);
    CU_ASSERT(took < 8.0);
    fprintf(stderr, "\n  /ping served %.2f s after %d stalled requests took every thread\n", took,
            N);
    for (int i = 0; i < N; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    daebus_http_stats hs;
    TS_WAIT_UNTIL((daebus_http_get_stats(daebus_app_http(app), &hs), hs.in_flight == 0), 5);
    CU_ASSERT_EQUAL(hs.in_flight, 0);
}

/* A client that asks for a big response and never reads it holds its worker
 * only until the request time-out. */
static void test_client_never_reads(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CU_ASSERT_EQUAL_FATAL(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    const char *rq = "GET /big HTTP/1.1\r\nHost: x\r\n\r\n";
    CU_ASSERT(write(fd, rq, strlen(rq)) == (ssize_t)strlen(rq));
    daebus_http_stats hs;
    TS_WAIT_UNTIL((daebus_http_get_stats(daebus_app_http(app), &hs), hs.in_flight == 1), 3);
    CU_ASSERT_EQUAL(hs.in_flight, 1); /* stuck writing to us */
    double t0 = ts_now();
    TS_WAIT_UNTIL((daebus_http_get_stats(daebus_app_http(app), &hs), hs.in_flight == 0), 10);
    CU_ASSERT_EQUAL(hs.in_flight, 0);
    fprintf(stderr, "\n  a client that never reads was dropped after %.2f s\n", ts_now() - t0);
    CU_ASSERT_EQUAL(get_status("/ping"), 200);
    close(fd);
}

/* ---- SIGTERM under load (separate process) ---- */

typedef struct loader {
    int port;
    atomic_int stop, ok, refused, draining;
} loader;

static void *hammer(void *arg)
{
    loader *l = arg;
    while (!atomic_load(&l->stop)) {
        ts_http_response r;
        if (ts_http(l->port, "GET", "/ping", NULL, NULL, 0, &r) == 0) {
            if (r.status == 200)
                atomic_fetch_add(&l->ok, 1);
            else if (r.status == 503 && r.body &&
                     strcmp(r.body, "{\"error\":\"Server shutting down\"}") == 0)
                atomic_fetch_add(&l->draining, 1);
            ts_http_free(&r);
        } else {
            atomic_fetch_add(&l->refused, 1);
            ts_sleep_ms(10);
        }
    }
    return NULL;
}

static void test_sigterm_under_load(void)
{
    char exe[512];
    snprintf(exe, sizeof exe, "%s/tests/hard_service",
             getenv("DAEBUS_BINARY_DIR") ? getenv("DAEBUS_BINARY_DIR") : ".");
    int p = ts_free_port();
    char pstr[16];
    snprintf(pstr, sizeof pstr, "%d", p);
    pid_t pid = fork();
    if (pid == 0) {
        /* Never outlive the test (a failed assertion must not leave it holding ctest's pipe). */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execl(exe, exe, "--port", pstr, "--redis", redis.url, (char *)NULL);
        _exit(127);
    }
    CU_ASSERT_FATAL(pid > 0);
    enum { NC = 10 };
    wsc cs[NC];
    /* Up = the WebSocket component answers too: HTTP starts serving before the
     * later components have started (sanitizer builds make that window long). */
    int up = 0;
    for (double end = ts_now() + 20; ts_now() < end && !up; ts_sleep_ms(50)) {
        up = wsc_connect(&cs[0], p, "/", NULL) == 0;
        if (!up)
            wsc_close(&cs[0]);
    }
    int connected = up;
    for (int i = 1; i < NC && connected == i; i++)
        connected += wsc_connect(&cs[i], p, "/", NULL) == 0;
    CU_ASSERT_EQUAL(connected, NC);
    if (connected != NC) {
        for (int i = 0; i < NC && i <= connected; i++)
            wsc_close(&cs[i]);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return;
    }
    loader l = {.port = p};
    pthread_t hs[2], sl;
    for (int i = 0; i < 2; i++)
        pthread_create(&hs[i], NULL, hammer, &l);
    int slow_status = 0;
    int saved = port;
    port = p; /* slow_get uses the global port */
    pthread_create(&sl, NULL, slow_get, &slow_status);
    ts_sleep_ms(300);
    double t0 = ts_now();
    CU_ASSERT_EQUAL(kill(pid, SIGTERM), 0);
    /* every WebSocket client is told, then closed with 1001 */
    int told = 0, closed1001 = 0;
    for (int i = 0; i < NC; i++) {
        char *d;
        size_t n;
        int op;
        while ((op = wsc_recv(&cs[i], 10000, &d, &n)) > 0 && op != 8) {
            if (op == 1 && strstr(d, "\"type\":\"server_shutdown\""))
                told++;
            free(d);
        }
        if (op == 8) {
            closed1001 += cs[i].close_code == 1001;
            wsc_send(&cs[i], 8, d, n < 2 ? n : 2);
            free(d);
        }
        wsc_close(&cs[i]);
    }
    int status = -1;
    for (double end = ts_now() + 15; ts_now() < end; ts_sleep_ms(20))
        if (waitpid(pid, &status, WNOHANG) == pid)
            break;
    double took = ts_now() - t0;
    if (!WIFEXITED(status)) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    atomic_store(&l.stop, 1);
    for (int i = 0; i < 2; i++)
        pthread_join(hs[i], NULL);
    pthread_join(sl, NULL);
    port = saved;
    CU_ASSERT_TRUE(WIFEXITED(status));
    CU_ASSERT_EQUAL(WEXITSTATUS(status), 0);
    CU_ASSERT_EQUAL(told, NC);
    CU_ASSERT_EQUAL(closed1001, NC);
    CU_ASSERT_EQUAL(slow_status, 200);       /* in flight at SIGTERM: drained, not cut */
    CU_ASSERT(atomic_load(&l.draining) > 0); /* new requests meanwhile: 503 */
    CU_ASSERT(atomic_load(&l.ok) > 0);
    CU_ASSERT(took < 10.0);
    fprintf(stderr, "  SIGTERM under load: exit %d after %.2f s, %d requests served, %d told 503\n",
            WIFEXITED(status) ? WEXITSTATUS(status) : -1, took, atomic_load(&l.ok),
            atomic_load(&l.draining));
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("hard_faults", suite_init, suite_clean);
    CU_add_test(s, "Redis killed and restarted", test_redis_outage);
    CU_add_test(s, "slow and failing handlers", test_handler_isolation);
    CU_add_test(s, "WebSocket client vanishes mid-write", test_vanishing_ws_client);
    CU_add_test(s, "stalled HTTP clients time out", test_stalled_http_clients);
    CU_add_test(s, "HTTP client that never reads", test_client_never_reads);
    CU_add_test(s, "SIGTERM under load exits 0", test_sigterm_under_load);
    return ts_run_cunit();
}
