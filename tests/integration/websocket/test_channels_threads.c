/* Channels under concurrency, in one process (for ThreadSanitizer, label
 * concurrency): three threads publish on one channel while a fourth churns
 * server-side subscriptions and a fifth connects, subscribes and disconnects
 * clients over and over; every steady subscriber (real WebSocket clients,
 * the C test client) gets every message once, each publisher's in order, and
 * all of them in the same order. Then: the table is empty once everyone left. */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include "ws_common.h"
#include "wsc.h"

#define NSUB  5
#define NPUB  3
#define NMSG  200
#define CHAN  "t:a"
#define TOTAL (NPUB * NMSG)

static daebus_app *app;
static daebus_ws *ws;
static int port;
static atomic_int stop_churn;

SOCKET_CONNECT(on_connect)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "client_id", client_id);
    return o;
}

/* Connects and returns the client id of the connect reply (malloc'd) or NULL. */
static char *connect_client(wsc *c)
{
    if (wsc_connect(c, port, "/ws", NULL) != 0)
        return NULL;
    char *t = wsc_recv_text(c, 5000);
    cJSON *o = t ? cJSON_Parse(t) : NULL;
    free(t);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItem(o, "data"), "client_id");
    char *r = cJSON_IsString(id) ? strdup(id->valuestring) : NULL;
    cJSON_Delete(o);
    return r;
}

static void *publisher(void *arg)
{
    int p = (int)(intptr_t)arg;
    for (int i = 1; i <= NMSG; i++) {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddNumberToObject(d, "p", p);
        cJSON_AddNumberToObject(d, "seq", i);
        if (daebus_ws_channel_publish(ws, CHAN, d) != 0)
            fprintf(stderr, "publish failed\n");
        cJSON_Delete(d);
    }
    return NULL;
}

/* Server-side subscribe / unsubscribe / list churn on a client that stays. */
static void *churn_api(void *arg)
{
    const char *id = arg;
    while (!atomic_load(&stop_churn)) {
        daebus_ws_channel_subscribe(ws, id, "t:b");
        cJSON *l = NULL;
        daebus_ws_channel_subscribers(ws, CHAN, &l);
        cJSON_Delete(l);
        daebus_ws_channel_client_channels(ws, id, &l);
        cJSON_Delete(l);
        daebus_ws_channel_unsubscribe(ws, id, "t:b");
    }
    return NULL;
}

/* Clients that subscribe and leave while messages flow. */
static void *churn_clients(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop_churn)) {
        wsc c;
        char *id = connect_client(&c);
        if (id)
            wsc_subscribe(&c, CHAN);
        wsc_close(&c);
        free(id);
    }
    return NULL;
}

/* Reads TOTAL channel messages of c into order[] as p * 100000 + seq. */
static int read_all(wsc *c, int *order)
{
    int n = 0;
    while (n < TOTAL) {
        char *t = wsc_recv_text(c, 10000);
        if (!t)
            break;
        cJSON *o = cJSON_Parse(t);
        free(t);
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(o, "type");
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(o, "data");
        if (cJSON_IsString(type) && strcmp(type->valuestring, "channel_message") == 0)
            order[n++] = cJSON_GetObjectItem(d, "p")->valueint * 100000 +
                         cJSON_GetObjectItem(d, "seq")->valueint;
        cJSON_Delete(o);
    }
    return n;
}

static void test_concurrent(void)
{
    static wsc subs[NSUB];
    static int orders[NSUB][TOTAL];
    char *ids[NSUB];
    for (int i = 0; i < NSUB; i++) {
        ids[i] = connect_client(&subs[i]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(ids[i]);
        CU_ASSERT_TRUE_FATAL(wsc_subscribe(&subs[i], CHAN));
    }
    pthread_t pubs[NPUB], ca, cc;
    pthread_create(&ca, NULL, churn_api, ids[0]);
    pthread_create(&cc, NULL, churn_clients, NULL);
    for (int p = 0; p < NPUB; p++)
        pthread_create(&pubs[p], NULL, publisher, (void *)(intptr_t)(p + 1));
    for (int p = 0; p < NPUB; p++)
        pthread_join(pubs[p], NULL);
    for (int i = 0; i < NSUB; i++) {
        CU_ASSERT_EQUAL(read_all(&subs[i], orders[i]), TOTAL);
        int last[NPUB + 1] = {0};
        for (int k = 0; k < TOTAL; k++) {
            int p = orders[i][k] / 100000, seq = orders[i][k] % 100000;
            CU_ASSERT_TRUE(p >= 1 && p <= NPUB && seq == last[p] + 1);
            if (p >= 1 && p <= NPUB)
                last[p] = seq;
        }
        CU_ASSERT_EQUAL(memcmp(orders[i], orders[0], sizeof orders[0]), 0);
    }
    atomic_store(&stop_churn, 1);
    pthread_join(ca, NULL);
    pthread_join(cc, NULL);
    for (int i = 0; i < NSUB; i++) {
        wsc_close(&subs[i]);
        free(ids[i]);
    }
    /* every subscription ended with its connection */
    cJSON *l = NULL;
    TS_WAIT_UNTIL(daebus_ws_get_client_count(ws) == 0, 10);
    CU_ASSERT_EQUAL(daebus_ws_channel_subscribers(ws, CHAN, &l), 0);
    CU_ASSERT_EQUAL(cJSON_GetArraySize(l), 0);
    cJSON_Delete(l);
}

int main(void)
{
    daebus_ws_options wo = DAEBUS_WS_OPTIONS_INIT;
    wo.channels = true;
    wo.channel_subscribe = "t:*";
    wo.queue_max_messages = TOTAL + 100;
    port = wst_start(&app, &ws, &wo, "ws_channels_threads");
    if (port <= 0)
        return 1;
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("channels_threads", NULL, NULL);
    CU_add_test(s, "publishers, churn, one order", test_concurrent);
    int rc = ts_run_cunit();
    ts_app_stop(app);
    return rc;
}
