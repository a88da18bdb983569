/* WebSocket handshake on the wire: the accepted subprotocol never leaks from
 * one connection to the next (hundreds of alternating raw handshakes on a
 * server with few CivetWeb workers; run it under ASan too), upgrades are
 * served on the configured paths only (HTTP 404 elsewhere), and the startup
 * log line names exactly those paths. The server's frames byte for byte
 * (header and payload sent in one write: each length form, control frames),
 * and frames queued for one client by several threads at once arrive whole
 * and in each sender's order. */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
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

SOCKET(h_whoami, "whoami")
{
    return cJSON_CreateString(daebus_ws_request_client_id(req));
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
    wo.queue_max_bytes = 16u << 20; /* test_many_senders queues megabytes at once */
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

/* Reads exactly n bytes of c's stream (what wsc has buffered first). */
static bool read_raw(wsc *c, unsigned char *out, size_t n)
{
    size_t got = c->len < n ? c->len : n;
    memcpy(out, c->buf, got);
    memmove(c->buf, c->buf + got, c->len - got);
    c->len -= got;
    while (got < n) {
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        if (poll(&p, 1, 5000) <= 0)
            return false;
        ssize_t r = recv(c->fd, out + got, n - got, 0);
        if (r <= 0)
            return false;
        got += (size_t)r;
    }
    return true;
}

/* The header RFC 6455 gives an unmasked server frame (minimal length form). */
static size_t want_head(int opcode, size_t len, unsigned char h[10])
{
    h[0] = (unsigned char)(0x80 | opcode);
    if (len < 126) {
        h[1] = (unsigned char)len;
        return 2;
    }
    if (len < 65536) {
        h[1] = 126;
        h[2] = (unsigned char)(len >> 8);
        h[3] = (unsigned char)len;
        return 4;
    }
    h[1] = 127;
    for (int i = 0; i < 8; i++)
        h[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
    return 10;
}

/* Echoes a string sized so that the response frame's payload is exactly
 * total bytes, and checks the frame byte for byte. */
static void check_echo_frame(wsc *c, size_t total)
{
    const char *pre = "{\"type\":\"response\",\"data\":\"",
               *post = "\",\"request_id\":7,\"success\":true}";
    size_t fixed = strlen(pre) + strlen(post);
    CU_ASSERT_FATAL(total >= fixed);
    size_t k = total - fixed;
    char *msg = malloc(k + 64), *want = malloc(total + 1);
    static const char head[] = "{\"type\":\"echo\",\"request_id\":7,\"data\":\"";
    size_t m = strlen(head), pl = strlen(pre);
    memcpy(msg, head, m);
    memset(msg + m, 'q', k);
    memcpy(msg + m + k, "\"}", 3);
    memcpy(want, pre, pl);
    memset(want + pl, 'q', k);
    memcpy(want + pl + k, post, strlen(post) + 1);
    CU_ASSERT_EQUAL(wsc_send(c, 1, msg, strlen(msg)), 0);
    unsigned char h[10], got[10];
    size_t hl = want_head(1, total, h);
    unsigned char *payload = malloc(total + 1);
    CU_ASSERT_TRUE(read_raw(c, got, hl) && read_raw(c, payload, total));
    CU_ASSERT_EQUAL(memcmp(got, h, hl), 0);
    CU_ASSERT_EQUAL(memcmp(payload, want, total), 0);
    free(payload);
    free(msg);
    free(want);
}

static void test_frames_on_the_wire(void)
{
    wsc c;
    CU_ASSERT_EQUAL_FATAL(wsc_connect(&c, port, "/ws", NULL), 0);
    /* each length form at its edges: 7-bit, 16-bit (126), 64-bit (127) */
    const size_t totals[] = {80, 125, 126, 127, 1000, 65535, 65536, 65537, 300000};
    for (size_t i = 0; i < sizeof totals / sizeof *totals; i++)
        check_echo_frame(&c, totals[i]);
    /* control frames: a pong echoes the ping's payload */
    CU_ASSERT_EQUAL(wsc_send(&c, 9, "abc", 3), 0);
    unsigned char pong[5];
    CU_ASSERT_TRUE(read_raw(&c, pong, 5));
    CU_ASSERT_EQUAL(memcmp(pong,
                           "\x8a\x03"
                           "abc",
                           5),
                    0);
    CU_ASSERT_EQUAL(wsc_send(&c, 9, "", 0), 0);
    CU_ASSERT_TRUE(read_raw(&c, pong, 2));
    CU_ASSERT_EQUAL(memcmp(pong, "\x8a\x00", 2), 0);
    /* and the close frame: 0x88, code 1000 */
    wsc_send(&c, 8, "\x03\xe8", 2);
    unsigned char cl[4];
    CU_ASSERT_TRUE(read_raw(&c, cl, 4));
    CU_ASSERT_EQUAL(memcmp(cl, "\x88\x02\x03\xe8", 4), 0);
    wsc_close(&c);
    TS_WAIT_UNTIL(daebus_ws_get_client_count(ws) == 0, 2);
}

enum { SENDERS = 4, PER_SENDER = 60 };

typedef struct sender {
    const char *id;
    int t, failed;
} sender;

/* The pad of message i: small, 16-bit and 64-bit length frames in turn. */
static size_t pad_len(int i)
{
    static const size_t sizes[] = {3, 500, 70000, 40, 2000};
    return sizes[i % 5];
}

static void *send_many(void *arg)
{
    sender *s = arg;
    char *pad = malloc(70001);
    for (int i = 0; i < PER_SENDER; i++) {
        size_t n = pad_len(i + s->t);
        memset(pad, 'a' + s->t, n);
        pad[n] = '\0';
        cJSON *d = cJSON_CreateObject();
        cJSON_AddNumberToObject(d, "t", s->t);
        cJSON_AddNumberToObject(d, "i", i);
        cJSON_AddStringToObject(d, "pad", pad);
        if (daebus_ws_send_to_client(ws, s->id, d, "load") != 0)
            s->failed++;
        cJSON_Delete(d);
    }
    free(pad);
    return NULL;
}

static void test_many_senders(void)
{
    wsc c;
    CU_ASSERT_EQUAL_FATAL(wsc_connect(&c, port, "/ws", NULL), 0);
    wsc_send_text(&c, "{\"type\":\"whoami\"}");
    char *t = wsc_recv_text(&c, 5000);
    cJSON *who = t ? cJSON_Parse(t) : NULL;
    free(t);
    const cJSON *idv = cJSON_GetObjectItem(who, "data");
    CU_ASSERT_FATAL(cJSON_IsString(idv));
    pthread_t th[SENDERS];
    sender ss[SENDERS];
    for (int k = 0; k < SENDERS; k++) {
        ss[k] = (sender){.id = idv->valuestring, .t = k};
        pthread_create(&th[k], NULL, send_many, &ss[k]);
    }
    int next[SENDERS] = {0}, bad = 0;
    for (int got = 0; got < SENDERS * PER_SENDER; got++) {
        char *p = NULL;
        size_t n = 0;
        int op = wsc_recv(&c, 10000, &p, &n);
        cJSON *m = op == 1 ? cJSON_Parse(p) : NULL;
        const cJSON *d = cJSON_GetObjectItem(m, "data");
        const cJSON *tv = cJSON_GetObjectItem(d, "t"), *iv = cJSON_GetObjectItem(d, "i");
        const cJSON *pv = cJSON_GetObjectItem(d, "pad");
        int k = cJSON_IsNumber(tv) ? tv->valueint : -1;
        if (op <= 0) {
            free(p);
            cJSON_Delete(m);
            bad++;
            break;
        }
        if (k < 0 || k >= SENDERS || !cJSON_IsNumber(iv) || iv->valueint != next[k] ||
            !cJSON_IsString(pv) || strlen(pv->valuestring) != pad_len(next[k] + k) ||
            pv->valuestring[0] != 'a' + k ||
            strcmp(cJSON_GetObjectItem(m, "type")->valuestring, "load"))
            bad++;
        else
            next[k]++;
        cJSON_Delete(m);
        free(p);
    }
    for (int k = 0; k < SENDERS; k++) {
        pthread_join(th[k], NULL);
        CU_ASSERT_EQUAL(ss[k].failed, 0);
        CU_ASSERT_EQUAL(next[k], PER_SENDER);
    }
    CU_ASSERT_EQUAL(bad, 0);
    cJSON_Delete(who);
    close_clean(&c);
    TS_WAIT_UNTIL(daebus_ws_get_client_count(ws) == 0, 2);
}

int main(void)
{
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("ws_wire", suite_init, suite_clean);
    CU_add_test(s, "subprotocol never stale", test_subprotocol_never_stale);
    CU_add_test(s, "subprotocol when full", test_subprotocol_when_full);
    CU_add_test(s, "configured paths only", test_paths);
    CU_add_test(s, "frames on the wire", test_frames_on_the_wire);
    CU_add_test(s, "many senders to one client", test_many_senders);
    return ts_run_cunit();
}
