/* WebSocket component with real clients (python3-websockets and a raw C
 * client): every envelope and error of PROTOCOL.md section 3, connect
 * rejection, register, metadata and user data, disconnect handler, custom id
 * generator and its fallback, filters, rate limiting, 1009 / 1007 closes,
 * subprotocol echo, kicks. */
#include <pthread.h>
#include <string.h>
#include "ws_common.h"
#include "wsc.h"

static daebus_app *app;
static daebus_ws *ws;
static int port;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int connects, disconnects, disconnect_saw_rejected, disconnect_meta_ok;
static char rejected_ids[8][64];
static int nrejected;
static char last_disc_id[128];
static int last_disc_received = -1;

SOCKET_CONNECT(on_connect)
{
    pthread_mutex_lock(&mu);
    connects++;
    pthread_mutex_unlock(&mu);
    const char *q = daebus_ws_request_query(req);
    const char *tok = daebus_ws_request_header(req, "X-Token");
    if ((q && strstr(q, "reject")) || (tok && strcmp(tok, "bad") == 0)) {
        pthread_mutex_lock(&mu);
        if (nrejected < 8)
            snprintf(rejected_ids[nrejected++], 64, "%s", client_id);
        pthread_mutex_unlock(&mu);
        if (q && strstr(q, "reject"))
            return daebus_ws_request_reject(req, "Forbidden token");
        return cJSON_CreateFalse(); /* the Python guide's "return False" */
    }
    cJSON *t = cJSON_CreateString(tok ? tok : "good");
    daebus_ws_set_client_data(daebus_ws_request_ws(req), client_id, "token", t);
    cJSON_Delete(t);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "connected");
    cJSON_AddStringToObject(o, "client_id", client_id);
    return o;
}

SOCKET_DISCONNECT(on_disconnect)
{
    daebus_ws *w = daebus_ws_request_ws(req);
    cJSON *m = daebus_ws_get_client_metadata(w, client_id);
    pthread_mutex_lock(&mu);
    disconnects++;
    for (int i = 0; i < nrejected; i++)
        if (strcmp(rejected_ids[i], client_id) == 0)
            disconnect_saw_rejected++;
    if (m && !daebus_ws_is_client_connected(w, client_id)) {
        disconnect_meta_ok++;
        snprintf(last_disc_id, sizeof last_disc_id, "%s", client_id);
        last_disc_received = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(m, "messages_received"));
    }
    pthread_mutex_unlock(&mu);
    cJSON_Delete(m);
    return NULL;
}

SOCKET(h_echo, "echo")
{
    return cJSON_Duplicate(daebus_ws_request_data(req), true);
}

SOCKET(h_fail, "fail")
{
    return daebus_ws_request_fail(req, "boom %d", 42);
}

SOCKET(h_none, "none")
{
    return NULL;
}

SOCKET(h_falsy, "falsy")
{
    return cJSON_CreateFalse();
}

SOCKET(h_meta, "meta")
{
    return daebus_ws_request_metadata(req);
}

SOCKET(h_kick, "kick_me")
{
    daebus_ws *w = daebus_ws_request_ws(req);
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "reason", "bye");
    daebus_ws_send_to_client(w, client_id, d, "disconnect_notice");
    cJSON_Delete(d);
    daebus_ws_disconnect_client(w, client_id, 0, NULL);
    return NULL;
}

SOCKET_REGISTER(on_register)
{
    const cJSON *u = cJSON_GetObjectItem(daebus_ws_request_data(req), "user");
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(u, "username"));
    if (!name)
        return daebus_ws_request_fail(req, "Username is required");
    cJSON *n = cJSON_CreateString(name);
    daebus_ws_set_client_data(daebus_ws_request_ws(req), client_id, "username", n);
    cJSON_Delete(n);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "registered");
    cJSON_AddStringToObject(o, "username", name);
    return o;
}

static char *id_gen(const daebus_ws_conn_info *info, void *user)
{
    (void)user;
    const char *h = daebus_ws_conn_header(info, "X-Id");
    if (!h)
        return NULL;
    if (strcmp(h, "empty") == 0)
        return strdup("");
    if (strcmp(h, "fixed") == 0)
        return strdup("fixed-id");
    char buf[128];
    snprintf(buf, sizeof buf, "client_%s_%d", daebus_ws_conn_remote_address(info),
             daebus_ws_conn_remote_port(info));
    return strdup(buf);
}

static int suite_init(void)
{
    daebus_ws_options wo = DAEBUS_WS_OPTIONS_INIT;
    wo.max_message_size = 64 * 1024;
    wo.rate_limit_disconnect_after = 3;
    wo.id_generator = id_gen;
    wo.max_clients = 64;
    port = wst_start(&app, &ws, &wo, "ws_envelopes");
    return port > 0 ? 0 : 1;
}

static int suite_clean(void)
{
    ts_app_stop(app);
    return 0;
}

static void test_envelopes(void)
{
    CU_ASSERT_EQUAL(wst_py("envelopes", port, NULL), 0);
}

static void test_disconnect_handler(void)
{
    int before;
    pthread_mutex_lock(&mu);
    before = disconnect_meta_ok;
    pthread_mutex_unlock(&mu);
    wsc c;
    CU_ASSERT_EQUAL_FATAL(wsc_connect(&c, port, "/", NULL), 0);
    char *hello = wsc_recv_text(&c, 5000);
    CU_ASSERT_PTR_NOT_NULL(hello);
    cJSON *h = cJSON_Parse(hello);
    char id[128];
    snprintf(
        id, sizeof id, "%s",
        cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(h, "data"), "client_id")));
    cJSON_Delete(h);
    free(hello);
    CU_ASSERT_TRUE(daebus_ws_is_client_connected(ws, id));
    wsc_send_text(&c, "{\"type\":\"none\"}");
    wsc_send_text(&c, "{\"type\":\"echo\",\"data\":1}");
    free(wsc_recv_text(&c, 5000));
    wsc_close(&c); /* abrupt: no close frame */
    int ok = 0;
    TS_WAIT_UNTIL(
        (pthread_mutex_lock(&mu), ok = disconnect_meta_ok > before, pthread_mutex_unlock(&mu), ok),
        5);
    CU_ASSERT_TRUE(ok);
    pthread_mutex_lock(&mu);
    CU_ASSERT_STRING_EQUAL(last_disc_id, id);
    CU_ASSERT_EQUAL(last_disc_received, 2);
    pthread_mutex_unlock(&mu);
    CU_ASSERT_FALSE(daebus_ws_is_client_connected(ws, id));
    CU_ASSERT_PTR_NULL(daebus_ws_get_client_metadata(ws, id));
}

static void test_error_frames(void)
{
    CU_ASSERT_EQUAL(wst_py("error_frames", port, NULL), 0);
}

static void test_binary(void)
{
    CU_ASSERT_EQUAL(wst_py("binary", port, NULL), 0);
}

/* With the default paths ("/" and "/ws"), other paths get 404, not an upgrade. */
static void test_default_paths(void)
{
    static const struct {
        const char *path;
        int status;
    } cases[] = {{"/", 101}, {"/?q=1", 101}, {"/ws", 101}, {"/nope", 404}, {"/ws/x", 404}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        wsc c;
        wsc_connect(&c, port, cases[i].path, NULL);
        CU_ASSERT_EQUAL(c.status, cases[i].status);
        if (c.status == 404)
            CU_ASSERT_PTR_NOT_NULL(strstr(c.head, "Content-Type: application/json"));
        if (c.status == 101) {
            /* the connect reply: the connection is open (and counted) before it goes */
            char *hello = wsc_recv_text(&c, 5000);
            CU_ASSERT_PTR_NOT_NULL(hello ? strstr(hello, "\"connected\"") : NULL);
            free(hello);
        }
        wsc_close(&c);
    }
    TS_WAIT_UNTIL(daebus_ws_get_client_count(ws) == 0, 5);
}

static void test_register_metadata(void)
{
    CU_ASSERT_EQUAL(wst_py("register_metadata", port, NULL), 0);
}

static void test_subprotocol(void)
{
    CU_ASSERT_EQUAL(wst_py("subprotocol", port, NULL), 0);
}

static void test_reject(void)
{
    daebus_ws_stats s0, s1;
    daebus_ws_get_stats(ws, &s0);
    CU_ASSERT_EQUAL(wst_py("reject", port, NULL), 0);
    daebus_ws_get_stats(ws, &s1);
    CU_ASSERT_EQUAL(s1.rejected_upgrades - s0.rejected_upgrades, 2);
    CU_ASSERT_EQUAL(s1.connects, s0.connects);
    /* raw client: the 403 body */
    wsc c;
    CU_ASSERT_EQUAL(wsc_connect(&c, port, "/?reject=1", NULL), -1);
    CU_ASSERT_EQUAL(c.status, 403);
    wsc_close(&c);
    ts_sleep_ms(100);
    pthread_mutex_lock(&mu);
    CU_ASSERT_EQUAL(nrejected, 3);
    CU_ASSERT_EQUAL(disconnect_saw_rejected, 0);
    pthread_mutex_unlock(&mu);
}

static void test_rate_limit(void)
{
    daebus_ws_stats s0, s1;
    daebus_ws_get_stats(ws, &s0);
    daebus_ws_enable_rate_limiting(ws, 5, 1.5);
    CU_ASSERT_EQUAL(wst_py("rate_limit", port, NULL), 0);
    CU_ASSERT_EQUAL(wst_py("rate_disconnect", port, NULL), 0);
    daebus_ws_disable_rate_limiting(ws);
    daebus_ws_get_stats(ws, &s1);
    CU_ASSERT_EQUAL(s1.rate_limited - s0.rate_limited, 5);
}

static void test_limits(void)
{
    CU_ASSERT_EQUAL(wst_py("oversize", port, NULL), 0);
    CU_ASSERT_EQUAL(wst_py("bad_utf8", port, NULL), 0);
}

static void test_kick(void)
{
    CU_ASSERT_EQUAL(wst_py("kick", port, NULL), 0);
}

static void test_custom_id(void)
{
    CU_ASSERT_EQUAL(wst_py("custom_id", port, NULL), 0);
}

static bool pick_odd(const char *id, const cJSON *meta, void *user)
{
    (void)id;
    const char *want = user;
    const cJSON *g = cJSON_GetObjectItem(meta, "group");
    return cJSON_IsString(g) && strcmp(g->valuestring, want) == 0;
}

static void test_registry_and_filters(void)
{
    enum { N = 6 };
    wsc c[N];
    char ids[N][128];
    size_t base = daebus_ws_get_client_count(ws);
    for (int i = 0; i < N; i++) {
        CU_ASSERT_EQUAL_FATAL(wsc_connect(&c[i], port, "/ws", NULL), 0);
        char *hello = wsc_recv_text(&c[i], 5000);
        cJSON *h = cJSON_Parse(hello);
        snprintf(
            ids[i], sizeof ids[i], "%s",
            cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(h, "data"), "client_id")));
        cJSON_Delete(h);
        free(hello);
        cJSON *g = cJSON_CreateString(i % 2 ? "odd" : "even");
        CU_ASSERT_EQUAL(daebus_ws_set_client_data(ws, ids[i], "group", g), 0);
        cJSON_Delete(g);
    }
    CU_ASSERT_EQUAL(daebus_ws_get_client_count(ws), base + N);
    cJSON *all = daebus_ws_get_clients(ws);
    CU_ASSERT_EQUAL(cJSON_GetArraySize(all), (int)(base + N));
    /* oldest first: ours are the last N, in order */
    for (int i = 0; i < N; i++)
        CU_ASSERT_STRING_EQUAL(cJSON_GetArrayItem(all, (int)base + i)->valuestring, ids[i]);
    cJSON_Delete(all);
    cJSON *odd = daebus_ws_get_clients_by_filter(ws, pick_odd, "odd");
    CU_ASSERT_EQUAL(cJSON_GetArraySize(odd), N / 2);
    CU_ASSERT_STRING_EQUAL(cJSON_GetArrayItem(odd, 0)->valuestring, ids[1]);
    cJSON_Delete(odd);
    cJSON *v = daebus_ws_get_client_data(ws, ids[2], "group");
    CU_ASSERT_STRING_EQUAL(cJSON_GetStringValue(v), "even");
    cJSON_Delete(v);
    CU_ASSERT_PTR_NULL(daebus_ws_get_client_data(ws, ids[2], "nope"));
    cJSON *x = cJSON_CreateNumber(1);
    CU_ASSERT_EQUAL(daebus_ws_set_client_data(ws, ids[2], "connected_at", x), DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(daebus_ws_set_client_data(ws, "nobody", "k", x), DAEBUS_ENOENT);
    cJSON_Delete(x);

    /* sends */
    cJSON *d = cJSON_CreateObject();
    cJSON_AddNumberToObject(d, "n", 7);
    CU_ASSERT_EQUAL(daebus_ws_send_to_client(ws, ids[0], d, NULL), 0);
    CU_ASSERT_EQUAL(daebus_ws_send_to_client(ws, "nobody", d, NULL), DAEBUS_ENOENT);
    char *t = wsc_recv_text(&c[0], 5000);
    CU_ASSERT_STRING_EQUAL(t, "{\"type\":\"message\",\"data\":{\"n\":7}}");
    free(t);
    const char *some[3] = {ids[1], "nobody", ids[3]};
    bool res[3];
    CU_ASSERT_EQUAL(daebus_ws_broadcast_to_clients(ws, some, 3, d, "room_update", res), 2);
    CU_ASSERT_TRUE(res[0]);
    CU_ASSERT_FALSE(res[1]);
    CU_ASSERT_TRUE(res[2]);
    t = wsc_recv_text(&c[3], 5000);
    CU_ASSERT_STRING_EQUAL(t, "{\"type\":\"room_update\",\"data\":{\"n\":7}}");
    free(t);
    free(wsc_recv_text(&c[1], 5000));
    CU_ASSERT_EQUAL(daebus_ws_broadcast_to_all(ws, d, NULL), (int)(base + N));
    for (int i = 0; i < N; i++) {
        t = wsc_recv_text(&c[i], 5000);
        CU_ASSERT_STRING_EQUAL(t, "{\"type\":\"broadcast\",\"data\":{\"n\":7}}");
        free(t);
    }
    /* filtered broadcast: the odd group only, one call */
    CU_ASSERT_EQUAL(daebus_ws_broadcast_to_filter(ws, pick_odd, "odd", d, "group_news"), N / 2);
    CU_ASSERT_EQUAL(daebus_ws_broadcast_to_filter(ws, pick_odd, "nobody", d, NULL), 0);
    CU_ASSERT_EQUAL(daebus_ws_broadcast_to_filter(ws, NULL, NULL, d, NULL), DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(daebus_ws_broadcast_to_filter(NULL, pick_odd, "odd", d, NULL), DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(daebus_ws_broadcast_to_filter(ws, pick_odd, "even", NULL, NULL), N / 2);
    cJSON_Delete(d); /* borrowed: the queued frames are already serialised */
    for (int i = 0; i < N; i++) {
        t = wsc_recv_text(&c[i], 5000);
        if (i % 2) {
            CU_ASSERT_STRING_EQUAL(t ? t : "", "{\"type\":\"group_news\",\"data\":{\"n\":7}}");
        } else {
            CU_ASSERT_STRING_EQUAL(t ? t : "", "{\"type\":\"broadcast\"}");
        }
        free(t);
    }
    /* disconnect_all with code and reason */
    int n = daebus_ws_disconnect_all_clients(ws, 4001, "bye");
    CU_ASSERT_EQUAL(n, (int)(base + N));
    for (int i = 0; i < N; i++) {
        char *p;
        size_t len;
        int op;
        while ((op = wsc_recv(&c[i], 5000, &p, &len)) > 0 && op != 8)
            free(p);
        CU_ASSERT_EQUAL(op, 8);
        CU_ASSERT_EQUAL(c[i].close_code, 4001);
        if (op == 8)
            CU_ASSERT_STRING_EQUAL(p + 2, "bye");
        free(p);
        wsc_send(&c[i], 8, "\x0f\xa1", 2);
        wsc_close(&c[i]);
    }
    TS_WAIT_UNTIL(daebus_ws_get_client_count(ws) == 0, 5);
    CU_ASSERT_EQUAL(daebus_ws_get_client_count(ws), 0);
    daebus_ws_stats s;
    daebus_ws_get_stats(ws, &s);
    CU_ASSERT(s.connects >= (uint64_t)N);
    CU_ASSERT(s.disconnects_server >= (uint64_t)N);
    CU_ASSERT(s.messages_out > 0);
}

int main(void)
{
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("ws_envelopes", suite_init, suite_clean);
    CU_add_test(s, "envelopes", test_envelopes);
    CU_add_test(s, "disconnect handler", test_disconnect_handler);
    CU_add_test(s, "register + metadata", test_register_metadata);
    CU_add_test(s, "subprotocol echo", test_subprotocol);
    CU_add_test(s, "error frames carry request_id, success, error", test_error_frames);
    CU_add_test(s, "binary frames", test_binary);
    CU_add_test(s, "default paths only", test_default_paths);
    CU_add_test(s, "connect rejection", test_reject);
    CU_add_test(s, "rate limiting", test_rate_limit);
    CU_add_test(s, "1009 and 1007", test_limits);
    CU_add_test(s, "kick", test_kick);
    CU_add_test(s, "custom id generator", test_custom_id);
    CU_add_test(s, "registry, filters, sends", test_registry_and_filters);
    return ts_run_cunit();
}
