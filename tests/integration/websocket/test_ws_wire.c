/* WebSocket handshake on the wire: the accepted subprotocol never leaks from
 * one connection to the next (hundreds of alternating raw handshakes on a
 * server with few CivetWeb workers; run it under ASan too), upgrades are
 * served on the configured paths only (HTTP 404 elsewhere), and the startup
 * log line names exactly those paths. */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include "ws_common.h"
#include "wsc.h"

static daebus_app *app;
static daebus_ws *ws;
static int port;
static char startlog[16384];

SOCKET(h_echo, "echo")
{
    return cJSON_Duplicate(daebus_ws_request_data(req), true);
}

static int suite_init(void)
{
    int logp[2];
    if (pipe(logp) != 0)
        return 1;
    daebus_log_set_fd(logp[1]);
    daebus_http_options ho = {.num_threads = 2};
    daebus_ws_options wo = DAEBUS_WS_OPTIONS_INIT;
    wo.paths = "/ws,/live";
    wo.max_clients = 2; /* 2 + 2 CivetWeb workers in all: each serves many connections */
    ts_service svc;
    ts_service_options o = {.service = "ws_wire",
                            .log_level = DAEBUS_LOG_INFO,
                            .http_options = &ho,
                            .ws = true,
                            .ws_options = &wo};
    int rc = ts_service_start(&svc, &o);
    daebus_log_set_fd(2);
    daebus_log_set_level(getenv("DAEBUS_TEST_LOG") ? DAEBUS_LOG_DEBUG : DAEBUS_LOG_ERROR);
    fcntl(logp[0], F_SETFL, O_NONBLOCK);
    ssize_t n = read(logp[0], startlog, sizeof startlog - 1);
    startlog[n > 0 ? n : 0] = '\0';
    close(logp[0]);
    close(logp[1]);
    if (rc != 0)
        return 1;
    app = svc.app;
    ws = svc.ws;
    port = svc.port;
    return 0;
}

static int suite_clean(void)
{
    ts_app_stop(app);
    return 0;
}

/* Closes c cleanly (close frame, waits for the server's answer or EOF). */
static void close_clean(wsc *c)
{
    wsc_send(c, 8, "\x03\xe8", 2);
    char *p;
    size_t n;
    int op;
    while ((op = wsc_recv(c, 2000, &p, &n)) > 0 && op != 8)
        free(p);
    free(p);
    wsc_close(c);
}

static void test_subprotocol_never_stale(void)
{
    enum { ROUNDS = 400 };
    int stray = 0, wrong = 0, failed = 0, offered_ok = 0;
    for (int i = 0; i < ROUNDS; i++) {
        char extra[160] = "", want[64] = "";
        if (i % 2 == 0) {
            /* different names, so that a stale pointer would show */
            if (i % 4 == 0)
                snprintf(want, sizeof want, "daebus-v1");
            else
                snprintf(want, sizeof want, "proto-%d", i);
            snprintf(extra, sizeof extra, "Sec-WebSocket-Protocol: %s, other\r\n", want);
        }
        wsc c;
        if (wsc_connect(&c, port, i % 3 ? "/ws" : "/live", extra[0] ? extra : NULL) != 0) {
            failed++;
            wsc_close(&c);
            continue;
        }
        char got[128];
        const char *h = wsc_header(&c, "Sec-WebSocket-Protocol", got, sizeof got);
        if (!want[0] && h) {
            stray++;
            fprintf(stderr, "\n  round %d: stray Sec-WebSocket-Protocol: %s\n", i, h);
        } else if (want[0] && (!h || strcmp(h, want) != 0)) {
            wrong++;
            fprintf(stderr, "\n  round %d: offered %s, answered %s\n", i, want, h ? h : "(none)");
        } else if (want[0]) {
            offered_ok++;
        }
        close_clean(&c);
        TS_WAIT_UNTIL(daebus_ws_get_client_count(ws) == 0, 2);
    }
    CU_ASSERT_EQUAL(failed, 0);
    CU_ASSERT_EQUAL(stray, 0);
    CU_ASSERT_EQUAL(wrong, 0);
    CU_ASSERT_EQUAL(offered_ok, ROUNDS / 2 - failed / 2);
}

/* An upgrade past max_clients (accepted only to be closed with 1013) answers
 * the offered subprotocol too, and a later one without an offer gets none. */
static void test_subprotocol_when_full(void)
{
    wsc a, b, full, full2;
    CU_ASSERT_EQUAL_FATAL(wsc_connect(&a, port, "/ws", NULL), 0);
    CU_ASSERT_EQUAL_FATAL(wsc_connect(&b, port, "/ws", NULL), 0);
    TS_WAIT_UNTIL(daebus_ws_get_client_count(ws) == 2, 2);
    char got[128];
    CU_ASSERT_EQUAL(wsc_connect(&full, port, "/ws", "Sec-WebSocket-Protocol: daebus-v1\r\n"), 0);
    CU_ASSERT_STRING_EQUAL(wsc_header(&full, "Sec-WebSocket-Protocol", got, sizeof got) ?: "",
                           "daebus-v1");
    char *p;
    size_t n;
    int op;
    while ((op = wsc_recv(&full, 3000, &p, &n)) > 0 && op != 8)
        free(p);
    free(p);
    CU_ASSERT_EQUAL(full.close_code, 1013);
    wsc_close(&full);
    CU_ASSERT_EQUAL(wsc_connect(&full2, port, "/ws", NULL), 0);
    CU_ASSERT_PTR_NULL(wsc_header(&full2, "Sec-WebSocket-Protocol", got, sizeof got));
    wsc_close(&full2);
    close_clean(&a);
    close_clean(&b);
    TS_WAIT_UNTIL(daebus_ws_get_client_count(ws) == 0, 2);
}

static int upgrade_status(const char *path)
{
    wsc c;
    int rc = wsc_connect(&c, port, path, NULL);
    int status = c.status;
    if (rc == 0) {
        /* a served path: the connection works */
        wsc_send_text(&c, "{\"type\":\"echo\",\"data\":1,\"request_id\":3}");
        char *t = wsc_recv_text(&c, 5000);
        CU_ASSERT_STRING_EQUAL(
            t ? t : "", "{\"type\":\"response\",\"data\":1,\"request_id\":3,\"success\":true}");
        free(t);
        close_clean(&c);
        TS_WAIT_UNTIL(daebus_ws_get_client_count(ws) == 0, 2);
    } else {
        wsc_close(&c);
    }
    return status;
}

static void test_paths(void)
{
    daebus_ws_stats s0, s1;
    daebus_ws_get_stats(ws, &s0);
    CU_ASSERT_EQUAL(upgrade_status("/ws"), 101);
    CU_ASSERT_EQUAL(upgrade_status("/live"), 101);
    CU_ASSERT_EQUAL(upgrade_status("/ws?token=1"), 101);
    /* CivetWeb's handler for "/ws" also takes "/ws/..."; we do not */
    CU_ASSERT_EQUAL(upgrade_status("/ws/deeper"), 404);
    CU_ASSERT_EQUAL(upgrade_status("/live2"), 404);
    CU_ASSERT_EQUAL(upgrade_status("/"), 404);
    CU_ASSERT_EQUAL(upgrade_status("/elsewhere"), 404);
    daebus_ws_get_stats(ws, &s1);
    CU_ASSERT_EQUAL(s1.connects - s0.connects, 3);
    /* the startup log names exactly the served paths */
    CU_ASSERT_PTR_NOT_NULL(strstr(startlog, "paths /ws,/live (upgrades elsewhere: 404"));
}

int main(void)
{
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("ws_wire", suite_init, suite_clean);
    CU_add_test(s, "subprotocol never stale", test_subprotocol_never_stale);
    CU_add_test(s, "subprotocol when full", test_subprotocol_when_full);
    CU_add_test(s, "configured paths only", test_paths);
    return ts_run_cunit();
}
