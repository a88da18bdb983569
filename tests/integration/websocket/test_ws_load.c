/* WebSocket under concurrency: a client that stops reading while 50 others
 * receive every broadcast; 8 threads sending to the same clients at once
 * while the clients send too (no frame corrupted, lost or reordered per
 * sender). Labelled concurrency: runs under TSan. */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include "ws_common.h"
#include "wsc.h"

static daebus_app *app;
static daebus_ws *ws;
static int port;

SOCKET(h_echo, "echo")
{
    return cJSON_Duplicate(daebus_ws_request_data(req), true);
}

/* Queues data.n numbered frames for its own client, then answers. */
SOCKET(h_many, "many")
{
    int n = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(daebus_ws_request_data(req), "n"));
    for (int i = 0; i < n; i++) {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddNumberToObject(d, "i", i);
        daebus_ws_request_send(req, d, "item");
        cJSON_Delete(d);
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "sent", n);
    return o;
}

SOCKET_CONNECT(on_connect)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "client_id", client_id);
    return o;
}

static int suite_init(void)
{
    daebus_ws_options wo = DAEBUS_WS_OPTIONS_INIT;
    wo.max_clients = 128;
    wo.queue_max_bytes = 1024 * 1024;
    wo.send_buffer = 64 * 1024;
    wo.queue_max_messages = 5000;
    port = wst_start(&app, &ws, &wo, "ws_load");
    return port > 0 ? 0 : 1;
}

static int suite_clean(void)
{
    ts_app_stop(app);
    return 0;
}

static int open_client(wsc *c, char *id, size_t idlen)
{
    if (wsc_connect(c, port, "/", NULL) != 0)
        return -1;
    char *hello = wsc_recv_text(c, 10000);
    cJSON *h = cJSON_Parse(hello);
    const char *s =
        cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(h, "data"), "client_id"));
    snprintf(id, idlen, "%s", s ? s : "");
    cJSON_Delete(h);
    free(hello);
    return s ? 0 : -1;
}

/* ---- slow consumer ---- */

enum { READERS = 50, BCAST = 600, PAYLOAD = 4096, MAX_LAG = 100 };

typedef struct reader {
    wsc c;
    atomic_int got;
    atomic_int done;
    int in_order;
    pthread_t t;
} reader;

static void *read_bcasts(void *arg)
{
    reader *r = arg;
    r->in_order = 1;
    while (r->got < BCAST) {
        char *t = wsc_recv_text(&r->c, 20000);
        if (!t)
            break;
        cJSON *m = cJSON_Parse(t);
        const cJSON *d = cJSON_GetObjectItem(m, "data");
        int seq = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(d, "seq"));
        const char *pad = cJSON_GetStringValue(cJSON_GetObjectItem(d, "pad"));
        if (!m || seq != r->got || !pad || strlen(pad) != PAYLOAD)
            r->in_order = 0;
        r->got++;
        cJSON_Delete(m);
        free(t);
    }
    atomic_store(&r->done, 1);
    return NULL;
}

/* The healthy readers' progress: the lowest count among those still reading. */
static int min_got(reader *rs)
{
    int m = BCAST;
    for (int i = 0; i < READERS; i++)
        if (!atomic_load(&rs[i].done) && atomic_load(&rs[i].got) < m)
            m = atomic_load(&rs[i].got);
    return m;
}

static void test_slow_consumer(void)
{
    static reader rs[READERS];
    char id[128], stuck_id[128];
    wsc stuck;
    wsc_rcvbuf_next = 4096;
    CU_ASSERT_EQUAL_FATAL(open_client(&stuck, stuck_id, sizeof stuck_id), 0);
    wsc_rcvbuf_next = 0;
    for (int i = 0; i < READERS; i++) {
        CU_ASSERT_EQUAL_FATAL(open_client(&rs[i].c, id, sizeof id), 0);
        pthread_create(&rs[i].t, NULL, read_bcasts, &rs[i]);
    }
    daebus_ws_stats s0;
    daebus_ws_get_stats(ws, &s0);
    char *pad = malloc(PAYLOAD + 1);
    memset(pad, 'p', PAYLOAD);
    pad[PAYLOAD] = '\0';
    double t0 = ts_now();
    int stuck_dropped_at = -1;
    for (int i = 0; i < BCAST; i++) {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddNumberToObject(d, "seq", i);
        cJSON_AddStringToObject(d, "pad", pad);
        int n = daebus_ws_broadcast_to_all(ws, d, "tick");
        cJSON_Delete(d);
        if (stuck_dropped_at < 0 && !daebus_ws_is_client_connected(ws, stuck_id))
            stuck_dropped_at = i;
        CU_ASSERT(n >= READERS);
        /* Pace the producer to the healthy readers (at most MAX_LAG behind);
         * the stuck client falls further behind every time. */
        double until = ts_now() + 20;
        while (min_got(rs) < i - MAX_LAG && ts_now() < until)
            ts_sleep_ms(1);
    }
    for (int i = 0; i < READERS; i++)
        pthread_join(rs[i].t, NULL);
    double took = ts_now() - t0;
    int all = 1;
    for (int i = 0; i < READERS; i++) {
        if (atomic_load(&rs[i].got) != BCAST || !rs[i].in_order)
            all = 0;
    }
    CU_ASSERT_TRUE(all);
    TS_WAIT_UNTIL(!daebus_ws_is_client_connected(ws, stuck_id), 5);
    CU_ASSERT_FALSE(daebus_ws_is_client_connected(ws, stuck_id));
    daebus_ws_stats s1;
    daebus_ws_get_stats(ws, &s1);
    CU_ASSERT_EQUAL(s1.disconnects_slow - s0.disconnects_slow, 1);
    /* Dropped without a close frame (docs: the peer sees 1006): what is still
     * in flight is data, then EOF. */
    int op, closes = 0;
    char *p;
    size_t plen;
    while ((op = wsc_recv(&stuck, 5000, &p, &plen)) > 0) {
        closes += op == 8;
        free(p);
    }
    CU_ASSERT_EQUAL(op, -1); /* EOF, not a time-out */
    CU_ASSERT_EQUAL(closes, 0);
    fprintf(stderr,
            "\n  slow consumer: %d readers got %d x %d B broadcasts in %.2f s; "
            "stuck client dropped after broadcast %d; queue high-water %llu\n",
            READERS, BCAST, PAYLOAD, took, stuck_dropped_at,
            (unsigned long long)s1.queue_depth_high_water);
    free(pad);
    for (int i = 0; i < READERS; i++)
        wsc_close(&rs[i].c);
    wsc_close(&stuck);
    TS_WAIT_UNTIL(daebus_ws_get_client_count(ws) == 0, 5);
}

/* ---- 8 senders at once ---- */

enum { CLIENTS = 20, SENDERS = 8, PER_SENDER = 250, ECHOES = 10 };

static char ids[CLIENTS][128];

typedef struct sink {
    wsc c;
    int next[SENDERS];
    int count, echoes, bad;
    pthread_t t;
} sink;

static void *sender(void *arg)
{
    int k = (int)(intptr_t)arg;
    const char *idp[CLIENTS];
    for (int i = 0; i < CLIENTS; i++)
        idp[i] = ids[i];
    for (int i = 0; i < PER_SENDER; i++) {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddNumberToObject(d, "t", k);
        cJSON_AddNumberToObject(d, "seq", i);
        cJSON_AddStringToObject(d, "s", "0123456789abcdefghijklmnopqrstuvwxyz");
        if (i % 2)
            daebus_ws_broadcast_to_clients(ws, idp, CLIENTS, d, "m", NULL);
        else
            for (int j = 0; j < CLIENTS; j++)
                daebus_ws_send_to_client(ws, ids[j], d, "m");
        cJSON_Delete(d);
    }
    return NULL;
}

static void *sink_main(void *arg)
{
    sink *s = arg;
    for (int i = 0; i < ECHOES; i++) {
        char buf[64];
        snprintf(buf, sizeof buf, "{\"type\":\"echo\",\"data\":%d}", i);
        wsc_send_text(&s->c, buf);
    }
    while (s->count < SENDERS * PER_SENDER || s->echoes < ECHOES) {
        char *t = wsc_recv_text(&s->c, 20000);
        if (!t)
            break;
        cJSON *m = cJSON_Parse(t);
        const char *type = cJSON_GetStringValue(cJSON_GetObjectItem(m, "type"));
        const cJSON *d = cJSON_GetObjectItem(m, "data");
        if (!m || !type) {
            s->bad++;
        } else if (strcmp(type, "response") == 0) {
            if ((int)cJSON_GetNumberValue(d) != s->echoes)
                s->bad++;
            s->echoes++;
        } else {
            int k = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(d, "t"));
            int seq = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(d, "seq"));
            const char *str = cJSON_GetStringValue(cJSON_GetObjectItem(d, "s"));
            if (k < 0 || k >= SENDERS || seq != s->next[k] || !str ||
                strcmp(str, "0123456789abcdefghijklmnopqrstuvwxyz") != 0)
                s->bad++;
            else
                s->next[k]++;
            s->count++;
        }
        cJSON_Delete(m);
        free(t);
    }
    return NULL;
}

static void test_eight_senders(void)
{
    static sink sinks[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        memset(&sinks[i], 0, sizeof sinks[i]);
        CU_ASSERT_EQUAL_FATAL(open_client(&sinks[i].c, ids[i], sizeof ids[i]), 0);
    }
    for (int i = 0; i < CLIENTS; i++)
        pthread_create(&sinks[i].t, NULL, sink_main, &sinks[i]);
    pthread_t th[SENDERS];
    double t0 = ts_now();
    for (int k = 0; k < SENDERS; k++)
        pthread_create(&th[k], NULL, sender, (void *)(intptr_t)k);
    for (int k = 0; k < SENDERS; k++)
        pthread_join(th[k], NULL);
    for (int i = 0; i < CLIENTS; i++)
        pthread_join(sinks[i].t, NULL);
    double took = ts_now() - t0;
    int ok = 1;
    for (int i = 0; i < CLIENTS; i++) {
        if (sinks[i].bad || sinks[i].count != SENDERS * PER_SENDER || sinks[i].echoes != ECHOES)
            ok = 0;
        for (int k = 0; k < SENDERS; k++)
            if (sinks[i].next[k] != PER_SENDER)
                ok = 0;
    }
    CU_ASSERT_TRUE(ok);
    fprintf(stderr, "\n  8 senders: %d clients x %d frames in %.2f s\n", CLIENTS,
            SENDERS * PER_SENDER, took);
    for (int i = 0; i < CLIENTS; i++)
        wsc_close(&sinks[i].c);
    TS_WAIT_UNTIL(daebus_ws_get_client_count(ws) == 0, 5);
}

/* A handler's own frames (written by its thread after it returns, or by a
 * writer when it queues many) arrive complete and in order, the response
 * last; for few and for many frames, several times on one connection. */
static void test_own_frames_in_order(void)
{
    wsc c;
    char id[128];
    CU_ASSERT_EQUAL_FATAL(open_client(&c, id, sizeof id), 0);
    static const int counts[] = {1, 3, 64, 65, 500, 2, 300};
    int ok = 1;
    for (size_t k = 0; k < sizeof counts / sizeof counts[0] && ok; k++) {
        char msg[96];
        snprintf(msg, sizeof msg, "{\"type\":\"many\",\"data\":{\"n\":%d},\"request_id\":%zu}",
                 counts[k], k);
        CU_ASSERT_EQUAL(wsc_send_text(&c, msg), 0);
        for (int i = 0; i <= counts[k] && ok; i++) {
            char *t = wsc_recv_text(&c, 10000);
            cJSON *o = cJSON_Parse(t);
            const char *type = cJSON_GetStringValue(cJSON_GetObjectItem(o, "type"));
            const cJSON *d = cJSON_GetObjectItem(o, "data");
            if (i < counts[k])
                ok = type && strcmp(type, "item") == 0 &&
                     cJSON_GetNumberValue(cJSON_GetObjectItem(d, "i")) == i;
            else
                ok = type && strcmp(type, "response") == 0 &&
                     cJSON_GetNumberValue(cJSON_GetObjectItem(d, "sent")) == counts[k] &&
                     cJSON_GetNumberValue(cJSON_GetObjectItem(o, "request_id")) == (double)k;
            if (!ok)
                fprintf(stderr, "\n  batch %zu frame %d: %s\n", k, i, t ? t : "(none)");
            cJSON_Delete(o);
            free(t);
        }
    }
    CU_ASSERT_TRUE(ok);
    wsc_close(&c);
    TS_WAIT_UNTIL(daebus_ws_get_client_count(ws) == 0, 5);
}

int main(void)
{
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("ws_load", suite_init, suite_clean);
    CU_add_test(s, "slow consumer", test_slow_consumer);
    CU_add_test(s, "8 senders", test_eight_senders);
    CU_add_test(s, "a handler's own frames in order", test_own_frames_in_order);
    return ts_run_cunit();
}
