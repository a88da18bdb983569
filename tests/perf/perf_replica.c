/* perf_replica.c - perf_service's routes for the replica benchmarks (see
 * perf_replica.h). */
#include "perf_replica.h"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "perf_common.h"

static daebus_ws *r_ws;
static char r_host[128] = "127.0.0.1";
static int r_port = 6379;
static pthread_mutex_t r_pub_lock = PTHREAD_MUTEX_INITIALIZER;
static redisContext *r_pub; /* /send_raw's connection, made on first use */

/* "id=<value>" in the upgrade's query names the client. */
static char *query_id(const daebus_ws_conn_info *info, void *user)
{
    (void)user;
    const char *q = daebus_ws_conn_query(info);
    const char *p = q ? strstr(q, "id=") : NULL;
    if (!p || (p != q && p[-1] != '&'))
        return NULL;
    p += 3;
    size_t n = strcspn(p, "&");
    return n ? strndup(p, n) : NULL;
}

static cJSON *status_body(int rc, int queued)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "rc", rc);
    cJSON_AddNumberToObject(o, "queued", queued);
    return o;
}

ROUTE(perf_burst, "/burst", .methods = DAEBUS_POST)
{
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(daebus_http_request_payload(req), "n");
    int count = cJSON_IsNumber(n) ? n->valueint : 100, queued = 0, rc = 0;
    for (int i = 0; i < count && rc >= 0; i++) {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddNumberToObject(d, "seq", i);
        cJSON_AddStringToObject(d, "text", "hello everyone");
        rc = daebus_ws_broadcast_to_all(r_ws, d, NULL);
        queued += rc > 0 ? rc : 0;
        cJSON_Delete(d);
    }
    return daebus_http_send_json_take(res, rc >= 0 ? 200 : 500, status_body(rc, queued));
}

/* PERF_CHANNEL=<name> (bench_channel_fanout): every client is subscribed to
 * that channel as it connects; no welcome frame. */
SOCKET_CONNECT(perf_channel_join)
{
    const char *ch = getenv("PERF_CHANNEL");
    if (ch && *ch)
        daebus_ws_channel_subscribe(daebus_ws_request_ws(req), client_id, ch);
    return NULL;
}

/* POST /chburst {"n", "channel"}: n channel publishes of the /burst payload
 * plus "t" (perf_now() at the publish). */
ROUTE(perf_chburst, "/chburst", .methods = DAEBUS_POST)
{
    const cJSON *p = daebus_http_request_payload(req);
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(p, "n");
    const char *ch = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "channel"));
    int count = cJSON_IsNumber(n) ? n->valueint : 100, rc = ch ? 0 : -1, done = 0;
    for (int i = 0; i < count && rc == 0; i++) {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddNumberToObject(d, "seq", i);
        cJSON_AddStringToObject(d, "text", "hello everyone");
        cJSON_AddNumberToObject(d, "t", perf_now());
        rc = daebus_ws_channel_publish(r_ws, ch, d);
        done += rc == 0;
        cJSON_Delete(d);
    }
    return daebus_http_send_json_take(res, rc == 0 ? 200 : 500, status_body(rc, done));
}

/* The payload's "data" (a copy) with "t" set to now. */
static cJSON *stamped_data(const cJSON *payload)
{
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(payload, "data");
    cJSON *data = cJSON_IsObject(d) ? cJSON_Duplicate(d, true) : cJSON_CreateObject();
    cJSON_AddNumberToObject(data, "t", perf_now());
    return data;
}

ROUTE(perf_send, "/send", .methods = DAEBUS_POST)
{
    const cJSON *p = daebus_http_request_payload(req);
    const char *to = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "to"));
    if (!to)
        return daebus_http_send_json_take(res, 400, status_body(-1, 0));
    cJSON *data = stamped_data(p);
    int rc = daebus_ws_send_to_client(r_ws, to, data, "direct");
    cJSON_Delete(data);
    return daebus_http_send_json_take(res, rc == 0 ? 200 : 404, status_body(rc, rc == 0));
}

static redisContext *redis_connect(void)
{
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout(r_host, r_port, tv);
    if (!c || c->err) {
        if (c)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    return c;
}

ROUTE(perf_send_raw, "/send_raw", .methods = DAEBUS_POST)
{
    const cJSON *p = daebus_http_request_payload(req);
    const char *to = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "to"));
    const char *via = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "via"));
    if (!to || !via)
        return daebus_http_send_json_take(res, 400, status_body(-1, 0));
    cJSON *msg = cJSON_CreateObject();
    cJSON_AddStringToObject(msg, "to", to);
    cJSON_AddItemToObject(msg, "data", stamped_data(p));
    char *text = cJSON_PrintUnformatted(msg);
    cJSON_Delete(msg);
    long receivers = -1;
    pthread_mutex_lock(&r_pub_lock);
    if (!r_pub)
        r_pub = redis_connect();
    redisReply *r = r_pub ? redisCommand(r_pub, "PUBLISH %s %s", via, text) : NULL;
    if (r && r->type == REDIS_REPLY_INTEGER)
        receivers = (long)r->integer;
    if (r)
        freeReplyObject(r);
    else if (r_pub) {
        redisFree(r_pub);
        r_pub = NULL;
    }
    pthread_mutex_unlock(&r_pub_lock);
    free(text);
    int rc = receivers > 0 ? 0 : -1;
    return daebus_http_send_json_take(res, rc == 0 ? 200 : 503, status_body(rc, (int)receivers));
}

/* The relay: SUBSCRIBE channel; each message {"to","data"} becomes a local
 * send_to_client(to, data, "direct"). */
static void *relay_main(void *arg)
{
    char *channel = arg;
    redisContext *c = redis_connect();
    redisReply *r = c ? redisCommand(c, "SUBSCRIBE %s", channel) : NULL;
    if (!r) {
        fprintf(stderr, "perf_replica: relay cannot subscribe to %s\n", channel);
        return NULL;
    }
    freeReplyObject(r);
    struct timeval forever = {0, 0};
    redisSetTimeout(c, forever);
    void *v = NULL;
    while (redisGetReply(c, &v) == REDIS_OK && v) {
        r = v;
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
            r->element[2]->type == REDIS_REPLY_STRING) {
            cJSON *m = cJSON_ParseWithLength(r->element[2]->str, r->element[2]->len);
            const char *to = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "to"));
            const cJSON *data = cJSON_GetObjectItemCaseSensitive(m, "data");
            if (to && data)
                daebus_ws_send_to_client(r_ws, to, data, "direct");
            cJSON_Delete(m);
        }
        freeReplyObject(r);
        v = NULL;
    }
    redisFree(c);
    return NULL;
}

int perf_replica_setup(daebus_app *app, daebus_ws *ws)
{
    r_ws = ws;
    if (daebus_ws_set_client_id_generator(ws, query_id, NULL) != 0)
        return -1;
    const char *url = daebus_app_redis_url(app);
    if (url && sscanf(url, "redis://%127[^:/]:%d", r_host, &r_port) < 1)
        return -1;
    const char *relay = getenv("PERF_RELAY");
    if (!relay || !*relay)
        return 0;
    /* the app's signal thread must be the only one to see SIGTERM: the relay
     * starts with every signal blocked */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t t;
    int rc = pthread_create(&t, NULL, relay_main, strdup(relay));
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        return -1;
    pthread_detach(t);
    return 0;
}
