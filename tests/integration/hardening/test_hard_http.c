/* test_hard_http.c - hostile HTTP framing against a real service (issue 13,
 * bugs 4, 5 and 8): request deadlines (408), bounded body readers (503),
 * truncated bodies and malformed Content-Length (400, no handler), and
 * refusals that carry a status line (bad upgrades, absolute-form targets,
 * OPTIONS *). Raw sockets only; the service runs in this process with a
 * 2 s request time-out and 4 body readers.
 */
#include <CUnit/Basic.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "daebus/daebus.h"
#include "daebus/http.h"
#include "daebus/websocket.h"
#include "testsupport.h"
#include "wsc.h"

#define TIMEOUT_MS   2000
#define BODY_READERS 4
#define SLOW_UPLOADS 50

static ts_service svc;
static daebus_http *http;
static int port;
static atomic_int n_handled;

ROUTE(h_echo, "/echo", .methods = DAEBUS_POST)
{
    atomic_fetch_add(&n_handled, 1);
    size_t len;
    const char *body = daebus_http_request_body(req, &len);
    return daebus_http_send(res, 200, "text/plain", body, len);
}

ROUTE(h_ping, "/ping")
{
    atomic_fetch_add(&n_handled, 1);
    return daebus_http_send(res, 200, "text/plain", "pong", 4);
}

SOCKET(s_echo, "echo")
{
    return cJSON_Duplicate(daebus_ws_request_data(req), true);
}

static int suite_init(void)
{
    daebus_http_options ho = {
        .num_threads = 16, .request_timeout_ms = TIMEOUT_MS, .max_body_readers = BODY_READERS};
    daebus_ws_options wo = DAEBUS_WS_OPTIONS_INIT;
    wo.max_clients = 4;
    ts_service_options o = {.service = "hard_http",
                            .log_level = DAEBUS_LOG_CRITICAL,
                            .http_options = &ho,
                            .ws = true,
                            .ws_options = &wo};
    if (ts_service_start(&svc, &o) != 0)
        return 1;
    http = svc.http;
    port = svc.port;
    return 0;
}

static int suite_clean(void)
{
    ts_service_stop(&svc);
    return 0;
}

static int dial(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static bool send_all(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w <= 0)
            return false;
        s += w;
        n -= (size_t)w;
    }
    return true;
}

/* Reads until the server closes or limit_s passes. *closed: it closed.
 * Returns what arrived (malloc'd, NUL-terminated). */
static char *read_answer(int fd, double limit_s, bool *closed)
{
    size_t cap = 8192, got = 0;
    char *out = calloc(1, cap);
    bool eof = false;
    for (double end = ts_now() + limit_s; !eof && ts_now() < end && got < cap - 1;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        ssize_t n = recv(fd, out + got, cap - 1 - got, 0);
        if (n <= 0)
            eof = true;
        else
            got += (size_t)n;
    }
    if (closed)
        *closed = eof;
    return out;
}

/* Sends req (len bytes), optionally half-closes, returns the answer. */
static char *exchange(const char *req, size_t len, bool half_close, bool *closed)
{
    int fd = dial();
    if (fd < 0 || !send_all(fd, req, len)) {
        if (fd >= 0)
            close(fd);
        return calloc(1, 1);
    }
    if (half_close)
        shutdown(fd, SHUT_WR);
    char *out = read_answer(fd, 10, closed);
    close(fd);
    return out;
}

static bool starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static void expect_status(const char *ans, const char *line, const char *what)
{
    CU_ASSERT(starts(ans, line));
    if (!starts(ans, line))
        fprintf(stderr, "\n  %s: wanted \"%s\", got \"%.200s\"\n", what, line, ans);
}

static void expect_alive(void)
{
    ts_http_response r;
    CU_ASSERT_EQUAL_FATAL(ts_http(port, "GET", "/ping", NULL, NULL, 0, &r), 0);
    CU_ASSERT_EQUAL(r.status, 200);
    ts_http_free(&r);
}

/* ---- bug 5: truncated bodies and malformed Content-Length ---- */

static void test_truncated_body(void)
{
    int before = atomic_load(&n_handled);
    const char *req = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n1234567";
    bool closed = false;
    char *ans = exchange(req, strlen(req), true, &closed);
    expect_status(ans, "HTTP/1.1 400 Bad Request\r\n", "7 of 100 bytes, half-close");
    CU_ASSERT_PTR_NOT_NULL(strstr(ans, "Request body incomplete"));
    CU_ASSERT(closed);
    CU_ASSERT_EQUAL(atomic_load(&n_handled), before);
    free(ans);
    /* chunked: the last chunk never comes */
    const char *chunked =
        "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n";
    ans = exchange(chunked, strlen(chunked), true, &closed);
    expect_status(ans, "HTTP/1.1 400 Bad Request\r\n", "chunked body without its last chunk");
    CU_ASSERT(closed);
    CU_ASSERT_EQUAL(atomic_load(&n_handled), before);
    free(ans);
    expect_alive();
}

static void test_content_length(void)
{
    static const struct {
        const char *headers, *body, *status;
    } cases[] = {
        {"Content-Length: +5\r\n", "hello", "HTTP/1.1 400 Bad Request\r\n"},
        {"Content-Length: 5abc\r\n", "hello", "HTTP/1.1 400 Bad Request\r\n"},
        {"Content-Length: 5\r\nContent-Length: 6\r\n", "hello!", "HTTP/1.1 400 Bad Request\r\n"},
        {"Content-Length: 5, 5\r\n", "hello", "HTTP/1.1 400 Bad Request\r\n"},
        {"Content-Length: 0x5\r\n", "hello", "HTTP/1.1 400 Bad Request\r\n"},
        {"Content-Length: 99999999999999999999999\r\n", "hello", "HTTP/1.1 400 Bad Request\r\n"},
        {"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n",
         "HTTP/1.1 400 Bad Request\r\n"},
        /* CivetWeb refuses these itself, before any callback: 411 with a status line */
        {"Content-Length: -5\r\n", "hello", "HTTP/1.1 411 Length Required\r\n"},
        {"Content-Length: \r\n", "hello", "HTTP/1.1 411 Length Required\r\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int before = atomic_load(&n_handled);
        char req[512];
        int n = snprintf(req, sizeof req, "POST /echo HTTP/1.1\r\nHost: x\r\n%s\r\n%s",
                         cases[i].headers, cases[i].body);
        bool closed = false;
        char *ans = exchange(req, (size_t)n, false, &closed);
        expect_status(ans, cases[i].status, cases[i].headers);
        CU_ASSERT(closed);
        CU_ASSERT_EQUAL(atomic_load(&n_handled), before);
        free(ans);
    }
    /* The same value twice is one length (RFC 9110 8.6). */
    const char *same = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: "
                       "5\r\nConnection: close\r\n\r\nhello";
    char *ans = exchange(same, strlen(same), false, NULL);
    expect_status(ans, "HTTP/1.1 200 OK\r\n", "Content-Length 5 twice");
    CU_ASSERT_PTR_NOT_NULL(strstr(ans, "\r\n\r\nhello"));
    free(ans);
    expect_alive();
}

/* ---- bug 8: refusals with a status line ---- */

#define UPGRADE_START                                                                              \
    "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"

static void test_refusals(void)
{
    int before = atomic_load(&n_handled);
    const char *nokey = UPGRADE_START "Sec-WebSocket-Version: 13\r\n\r\n";
    char *ans = exchange(nokey, strlen(nokey), false, NULL);
    expect_status(ans, "HTTP/1.1 400 Bad Request\r\n", "upgrade without a key");
    CU_ASSERT_PTR_NOT_NULL(strstr(ans, "Sec-WebSocket-Key"));
    free(ans);

    const char *v8 = UPGRADE_START
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n";
    ans = exchange(v8, strlen(v8), false, NULL);
    expect_status(ans, "HTTP/1.1 426 Upgrade Required\r\n", "upgrade version 8");
    CU_ASSERT_PTR_NOT_NULL(strstr(ans, "\r\nSec-WebSocket-Version: 13\r\n"));
    free(ans);

    const char *nover = UPGRADE_START "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    ans = exchange(nover, strlen(nover), false, NULL);
    expect_status(ans, "HTTP/1.1 426 Upgrade Required\r\n", "upgrade without a version");
    free(ans);
    CU_ASSERT_EQUAL(atomic_load(&n_handled), before);

    /* Absolute-form: the path of the URI is routed, whatever the authority. */
    const char *abs[] = {"GET http://host/ping HTTP/1.1\r\nHost: host\r\n\r\n",
                         "GET http://example.com:1/ping?x=1 HTTP/1.1\r\nHost: x\r\n\r\n"};
    for (size_t i = 0; i < 2; i++) {
        ans = exchange(abs[i], strlen(abs[i]), false, NULL);
        expect_status(ans, "HTTP/1.1 200 OK\r\n", abs[i]);
        CU_ASSERT_PTR_NOT_NULL(strstr(ans, "\r\n\r\npong"));
        free(ans);
    }
    char own[128];
    snprintf(own, sizeof own, "GET http://127.0.0.1:%d/nope HTTP/1.1\r\nHost: x\r\n\r\n", port);
    ans = exchange(own, strlen(own), false, NULL);
    expect_status(ans, "HTTP/1.1 404 Not Found\r\n", own);
    free(ans);

    const char *star = "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n";
    ans = exchange(star, strlen(star), false, NULL);
    expect_status(ans, "HTTP/1.1 204 No Content\r\n", "OPTIONS *");
    CU_ASSERT_PTR_NOT_NULL(strstr(ans, "\r\nAllow: "));
    free(ans);

    /* A normal request then a close: nothing more is written. */
    const char *plain = "GET /ping HTTP/1.1\r\nHost: x\r\n\r\n";
    ans = exchange(plain, strlen(plain), true, NULL);
    CU_ASSERT_PTR_NULL(strstr(ans + 1, "HTTP/1.1"));
    free(ans);
    expect_alive();
}

/* ---- bug 4: request deadlines and bounded uploads ---- */

static void test_body_stops(void)
{
    int before = atomic_load(&n_handled);
    daebus_http_stats st0, st1;
    CU_ASSERT_EQUAL(daebus_http_get_stats(http, &st0), 0);
    int fd = dial();
    CU_ASSERT_FATAL(fd >= 0);
    const char *req = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789";
    double t0 = ts_now();
    CU_ASSERT(send_all(fd, req, strlen(req)));
    bool closed = false;
    char *ans = read_answer(fd, 20, &closed);
    double took = ts_now() - t0;
    expect_status(ans, "HTTP/1.1 408 ", "body that stops");
    CU_ASSERT(closed);
    /* 2 s configured: not before, and well before CivetWeb's own 60 s */
    CU_ASSERT(took >= TIMEOUT_MS / 1000.0 - 0.1);
    CU_ASSERT(took < TIMEOUT_MS / 1000.0 + 4.0);
    fprintf(stderr, "\n  body that stops: 408 after %.2f s (limit %.1f s)\n", took,
            TIMEOUT_MS / 1000.0);
    /* Counted as a request time-out (and a 4xx), no busy refusal. */
    CU_ASSERT_EQUAL(daebus_http_get_stats(http, &st1), 0);
    CU_ASSERT_EQUAL(st1.request_timeouts, st0.request_timeouts + 1);
    CU_ASSERT_EQUAL(st1.busy_refusals, st0.busy_refusals);
    CU_ASSERT(st1.responses_4xx >= st0.responses_4xx + 1);
    CU_ASSERT_EQUAL(atomic_load(&n_handled), before);
    free(ans);
    close(fd);
    expect_alive();
}

/* The clock starts when the connection is taken, not when the headers are
 * complete: headers sent over 1 s, then a body that stops, get the 408 about
 * 2 s after the connection opened. */
static void test_clock_starts_at_connect(void)
{
    int fd = dial();
    CU_ASSERT_FATAL(fd >= 0);
    double t0 = ts_now();
    const char *part1 = "POST /echo HTTP/1.1\r\nHost: x\r\n";
    const char *part2 = "Content-Length: 100\r\n\r\n0123456789";
    CU_ASSERT(send_all(fd, part1, strlen(part1)));
    ts_sleep_ms(1000);
    CU_ASSERT(send_all(fd, part2, strlen(part2)));
    bool closed = false;
    char *ans = read_answer(fd, 20, &closed);
    double took = ts_now() - t0;
    expect_status(ans, "HTTP/1.1 408 ", "headers over 1 s, then a body that stops");
    CU_ASSERT(closed);
    /* from the end of the headers it would be 3 s */
    CU_ASSERT(took < TIMEOUT_MS / 1000.0 + 0.9);
    fprintf(stderr, "  headers over 1 s, body stops: 408 %.2f s after connect\n", took);
    free(ans);
    close(fd);
}

static void test_body_trickles(void)
{
    int before = atomic_load(&n_handled);
    int fd = dial();
    CU_ASSERT_FATAL(fd >= 0);
    const char *req = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n";
    double t0 = ts_now();
    CU_ASSERT(send_all(fd, req, strlen(req)));
    /* one byte every 200 ms, until the server answers */
    char *ans = NULL;
    bool closed = false;
    for (int i = 0; i < 100 && !ans; i++) {
        if (!send_all(fd, "x", 1))
            break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 200) > 0)
            ans = read_answer(fd, 5, &closed);
    }
    double took = ts_now() - t0;
    if (!ans)
        ans = read_answer(fd, 5, &closed);
    expect_status(ans, "HTTP/1.1 408 ", "body trickling");
    CU_ASSERT(closed);
    CU_ASSERT(took < TIMEOUT_MS / 1000.0 + 4.0);
    fprintf(stderr, "  body trickling 1 byte / 200 ms: 408 after %.2f s\n", took);
    CU_ASSERT_EQUAL(atomic_load(&n_handled), before);
    free(ans);
    close(fd);
    expect_alive();
}

static void test_headers_trickle(void)
{
    /* CivetWeb bounds the headers itself with the same time-out (its own 400). */
    int fd = dial();
    CU_ASSERT_FATAL(fd >= 0);
    const char *req =
        "GET /ping HTTP/1.1\r\nHost: x\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    double t0 = ts_now();
    char *ans = NULL;
    bool closed = false;
    for (size_t i = 0; i < strlen(req) && !ans; i++) {
        if (!send_all(fd, req + i, 1))
            break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 200) > 0)
            ans = read_answer(fd, 5, &closed);
    }
    double took = ts_now() - t0;
    if (!ans)
        ans = read_answer(fd, 5, &closed);
    CU_ASSERT(starts(ans, "HTTP/1.0 400 ") || starts(ans, "HTTP/1.1 400 ") ||
              starts(ans, "HTTP/1.1 408 "));
    CU_ASSERT(closed);
    CU_ASSERT(took < TIMEOUT_MS / 1000.0 + 4.0);
    fprintf(stderr, "  headers trickling 1 byte / 200 ms: \"%.24s\" after %.2f s\n", ans, took);
    free(ans);
    close(fd);
    expect_alive();
}

static void test_slow_uploads(void)
{
    int before = atomic_load(&n_handled);
    daebus_http_stats st0;
    CU_ASSERT_EQUAL(daebus_http_get_stats(http, &st0), 0);
    int fds[SLOW_UPLOADS];
    const char *req = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nx";
    for (int i = 0; i < SLOW_UPLOADS; i++) {
        fds[i] = dial();
        CU_ASSERT(fds[i] >= 0);
        if (fds[i] >= 0)
            send_all(fds[i], req, strlen(req));
    }
    double t0 = ts_now();
    /* A WebSocket client and a plain GET are served at once. */
    wsc c;
    int wrc = wsc_connect(&c, port, "/ws", NULL);
    double t_ws = ts_now() - t0;
    CU_ASSERT_EQUAL(wrc, 0);
    if (wrc == 0) {
        wsc_send_text(&c, "{\"type\":\"echo\",\"data\":\"hi\"}");
        char *t = wsc_recv_text(&c, 5000);
        CU_ASSERT_PTR_NOT_NULL(t);
        free(t);
        wsc_close(&c);
    }
    double t1 = ts_now();
    expect_alive();
    double t_get = ts_now() - t1;
    CU_ASSERT(t_ws < 1.5);
    CU_ASSERT(t_get < 1.5);
    fprintf(stderr, "  %d slow uploads: WebSocket upgrade in %.3f s, GET in %.3f s\n", SLOW_UPLOADS,
            t_ws, t_get);
    /* Every upload is answered: BODY_READERS with 408, the others 503 at once. */
    int n408 = 0, n503 = 0, retry = 0;
    for (int i = 0; i < SLOW_UPLOADS; i++) {
        if (fds[i] < 0)
            continue;
        bool closed = false;
        char *ans = read_answer(fds[i], 15, &closed);
        n408 += starts(ans, "HTTP/1.1 408 ");
        n503 += starts(ans, "HTTP/1.1 503 ");
        retry += strstr(ans, "\r\nRetry-After: ") != NULL;
        CU_ASSERT(closed);
        free(ans);
        close(fds[i]);
    }
    fprintf(stderr, "  answers: %d x 408, %d x 503 (%d with Retry-After)\n", n408, n503, retry);
    CU_ASSERT_EQUAL(n408 + n503, SLOW_UPLOADS);
    CU_ASSERT(n408 <= BODY_READERS);
    CU_ASSERT_EQUAL(retry, n503);
    /* Each refusal counted once, as what it was. */
    daebus_http_stats st1;
    CU_ASSERT_EQUAL(daebus_http_get_stats(http, &st1), 0);
    CU_ASSERT_EQUAL(st1.request_timeouts - st0.request_timeouts, (uint64_t)n408);
    CU_ASSERT_EQUAL(st1.busy_refusals - st0.busy_refusals, (uint64_t)n503);
    CU_ASSERT(n503 > 0);
    CU_ASSERT_EQUAL(atomic_load(&n_handled), before + 1); /* the GET only */
    expect_alive();
}

int main(void)
{
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("hard_http", suite_init, suite_clean);
    CU_add_test(s, "truncated body: 400, no handler", test_truncated_body);
    CU_add_test(s, "malformed Content-Length: 400, no handler", test_content_length);
    CU_add_test(s, "refusals carry a status line", test_refusals);
    CU_add_test(s, "a body that stops: 408 at the limit", test_body_stops);
    CU_add_test(s, "the clock starts at connect", test_clock_starts_at_connect);
    CU_add_test(s, "a body that trickles: 408 at the limit", test_body_trickles);
    CU_add_test(s, "headers that trickle are cut", test_headers_trickle);
    CU_add_test(s, "slow uploads do not starve others", test_slow_uploads);
    return ts_run_cunit();
}
