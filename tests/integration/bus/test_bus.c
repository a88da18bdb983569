/* Bus integration: a service built with daebus_app + the bus component
 * against a private redis-server; C callers and raw Redis clients drive it.
 * Covers request/reply, progress, error replies, unknown actions, malformed
 * JSON, fire-and-forget and the <service>.responses fallback, listeners,
 * broadcasts, retained requests, service-to-service calls, 200 concurrent
 * requests from several callers, caller time-outs. */
#include <unistd.h>
#include "common.h"

#define SVC "bus_test_svc"

static ts_redis redis;
static daebus_app *app;
static daebus_bus *bus;
static daebus_caller *caller;

static pthread_mutex_t rec_lock = PTHREAD_MUTEX_INITIALIZER;
static cJSON *recorded; /* last fire-and-forget payload */
static cJSON *heard;    /* last listener message */
static atomic_int heard_count;
static atomic_int record_count;

/* ---- the service ---- */

ACTION(echo, "echo")
{
    return daebus_bus_reply(req, payload);
}

ACTION(progress3, "progress3")
{
    cJSON *p = cJSON_CreateObject();
    cJSON_AddNumberToObject(p, "step", 1);
    daebus_bus_progress(req, p, 10);
    cJSON_ReplaceItemInObject(p, "step", cJSON_CreateNumber(2));
    daebus_bus_progress(req, p, 150);
    daebus_bus_progress_take(req, cJSON_CreateString("raw"), 50); /* takes the string */
    cJSON_Delete(p);
    cJSON *f = cJSON_CreateObject();
    cJSON_AddTrueToObject(f, "done");
    int rc = daebus_bus_reply_take(req, f);
    /* A second final reply is refused. */
    if (daebus_bus_reply(req, NULL) != DAEBUS_ESTATE)
        return DAEBUS_EIO;
    return rc;
}

ACTION(fail_explicit, "fail_explicit")
{
    return daebus_bus_reply_error(req, "bad %s", "thing");
}

ACTION(fail_negative, "fail_negative")
{
    return DAEBUS_EIO;
}

ACTION(no_reply, "no_reply")
{
    return 0;
}

ACTION(slow, "slow")
{
    const cJSON *ms = cJSON_GetObjectItem(payload, "ms");
    ts_sleep_ms(cJSON_IsNumber(ms) ? (int)ms->valuedouble : 100);
    return daebus_bus_reply(req, payload);
}

static void *later_thread(void *arg)
{
    daebus_bus_request *req = arg;
    ts_sleep_ms(50);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "from", "another thread");
    daebus_bus_progress(req, o, -1);
    daebus_bus_reply_take(req, o);
    daebus_bus_request_release(req);
    return NULL;
}

ACTION(later, "later")
{
    pthread_t t;
    daebus_bus_request_retain(req);
    pthread_create(&t, NULL, later_thread, req);
    pthread_detach(t);
    return 0;
}

ACTION(retain_forget, "retain_forget")
{
    daebus_bus_request_retain(req);
    daebus_bus_request_release(req); /* released without a reply */
    return 0;
}

ACTION(record, "record")
{
    pthread_mutex_lock(&rec_lock);
    cJSON_Delete(recorded);
    recorded = cJSON_Duplicate(payload, 1);
    pthread_mutex_unlock(&rec_lock);
    atomic_fetch_add(&record_count, 1);
    return daebus_bus_reply(req, NULL); /* fire-and-forget: dropped, returns 0 */
}

ACTION(whoami, "whoami")
{
    cJSON *o = cJSON_CreateObject();
    const char *id = daebus_bus_request_id(req);
    cJSON_AddStringToObject(o, "request_id", id ? id : "");
    const char *rt = daebus_bus_request_reply_to(req);
    cJSON_AddStringToObject(o, "reply_to", rt ? rt : "");
    const char *svc = daebus_bus_request_service(req);
    cJSON_AddStringToObject(o, "service", svc ? svc : "");
    cJSON_AddStringToObject(o, "action", daebus_bus_request_action(req));
    cJSON_AddStringToObject(o, "channel", daebus_bus_request_channel(req));
    cJSON_AddBoolToObject(o, "has_raw", daebus_bus_request_raw(req) != NULL);
    cJSON_AddBoolToObject(o, "app_ok", daebus_bus_request_app(req) == app);
    return daebus_bus_reply_take(req, o);
}

ACTION(nested, "nested")
{
    daebus_caller *c = daebus_bus_caller(daebus_bus_request_bus(req));
    if (!c)
        return daebus_bus_reply_error(req, "no caller");
    cJSON *out = NULL;
    daebus_error e = {0};
    int rc = daebus_caller_request(c, SVC, "echo", payload, 3.0, &out, &e);
    if (rc != 0)
        return daebus_bus_reply_error(req, "nested call failed: %s", e.message);
    return daebus_bus_reply_take(req, out);
}

LISTEN(on_notification, "notifications")
{
    pthread_mutex_lock(&rec_lock);
    cJSON_Delete(heard);
    heard = cJSON_Duplicate(message, 1);
    pthread_mutex_unlock(&rec_lock);
    atomic_fetch_add(&heard_count, 1);
    return 0;
}

/* ---- fixtures ---- */

static int cleanup(void);

static int init(void)
{
    if (ts_redis_start(&redis, NULL) != 0)
        return -1;
    app = start_app(SVC, redis.url, 8, NULL, &bus);
    if (!app) {
        cleanup(); /* CUnit skips the suite cleanup when init fails */
        return -1;
    }
    TS_WAIT_UNTIL(ts_bus_connected(bus), 5);
    /* Sanitizer builds on a loaded machine can take a while to subscribe. */
    daebus_caller_options co = DAEBUS_CALLER_OPTIONS_INIT;
    co.connect_timeout = 10;
    daebus_error e = {0};
    caller = daebus_caller_create(redis.url, &co, &e);
    if (!caller) {
        fprintf(stderr, "caller: %s\n", e.message);
        cleanup();
        return -1;
    }
    return 0;
}

static int cleanup(void)
{
    daebus_caller_destroy(caller);
    ts_app_stop(app);
    ts_redis_stop(&redis);
    pthread_mutex_lock(&rec_lock);
    cJSON_Delete(recorded);
    cJSON_Delete(heard);
    pthread_mutex_unlock(&rec_lock);
    return 0;
}

/* ---- tests ---- */

static void test_request_reply(void)
{
    cJSON *p = cJSON_Parse("{\"a\":1,\"nested\":{\"list\":[1,2,3],\"s\":\"h\\u00e9\"}}");
    cJSON *out = NULL;
    daebus_error e = {0};
    CU_ASSERT_EQUAL(daebus_caller_request(caller, SVC, "echo", p, 3.0, &out, &e), 0);
    CU_ASSERT_TRUE(cJSON_Compare(p, out, 1));
    cJSON_Delete(out);
    out = NULL;
    /* NULL payload -> {} */
    CU_ASSERT_EQUAL(daebus_caller_request(caller, SVC, "echo", NULL, 3.0, &out, &e), 0);
    CU_ASSERT_TRUE(cJSON_IsObject(out) && cJSON_GetArraySize(out) == 0);
    cJSON_Delete(out);
    cJSON_Delete(p);
    /* Metadata seen by the handler. */
    out = NULL;
    CU_ASSERT_EQUAL(daebus_caller_request(caller, SVC, "whoami", NULL, 3.0, &out, &e), 0);
    CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(out, "reply_to")->valuestring,
                           daebus_caller_reply_channel(caller));
    CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(out, "service")->valuestring, SVC);
    CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(out, "action")->valuestring, "whoami");
    CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(out, "channel")->valuestring, SVC);
    CU_ASSERT_EQUAL(strlen(cJSON_GetObjectItem(out, "request_id")->valuestring), 36);
    CU_ASSERT_TRUE(cJSON_IsTrue(cJSON_GetObjectItem(out, "has_raw")));
    CU_ASSERT_TRUE(cJSON_IsTrue(cJSON_GetObjectItem(out, "app_ok")));
    cJSON_Delete(out);
    CU_ASSERT_EQUAL(strncmp(daebus_caller_reply_channel(caller), "caller:", 7), 0);
    CU_ASSERT_EQUAL(strlen(daebus_caller_reply_channel(caller)), 7 + 36);
}

typedef struct prog {
    cJSON *items;
} prog;

static void collect_progress(daebus_caller *c, const cJSON *payload, void *user)
{
    (void)c;
    prog *p = user;
    cJSON_AddItemToArray(p->items, cJSON_Duplicate(payload, 1));
}

static void test_progress_then_final(void)
{
    prog p = {cJSON_CreateArray()};
    cJSON *out = NULL;
    daebus_error e = {0};
    int rc = daebus_caller_request_progress(caller, SVC, "progress3", NULL, 3.0, collect_progress,
                                            &p, &out, &e);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_TRUE(cJSON_IsTrue(cJSON_GetObjectItem(out, "done")));
    CU_ASSERT_EQUAL(cJSON_GetArraySize(p.items), 3);
    cJSON *expect = cJSON_Parse("[{\"step\":1,\"progress_percentage\":10},"
                                "{\"step\":2,\"progress_percentage\":100},"
                                "{\"data\":\"raw\",\"progress_percentage\":50}]");
    CU_ASSERT_TRUE(cJSON_Compare(expect, p.items, 1));
    cJSON_Delete(expect);
    cJSON_Delete(p.items);
    cJSON_Delete(out);
    /* A retained request answered from another thread, progress first. */
    p.items = cJSON_CreateArray();
    out = NULL;
    rc = daebus_caller_request_progress(caller, SVC, "later", NULL, 3.0, collect_progress, &p, &out,
                                        &e);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_EQUAL(cJSON_GetArraySize(p.items), 1);
    CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(out, "from")->valuestring, "another thread");
    cJSON_Delete(p.items);
    cJSON_Delete(out);
}

static void test_error_replies(void)
{
    cJSON *out = NULL;
    daebus_error e = {0};
    CU_ASSERT_EQUAL(daebus_caller_request(caller, SVC, "fail_explicit", NULL, 3.0, &out, &e),
                    DAEBUS_EREPLY);
    CU_ASSERT_STRING_EQUAL(e.message, "bad thing");
    CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(out, "error")->valuestring, "bad thing");
    cJSON_Delete(out);
    CU_ASSERT_EQUAL(daebus_caller_request(caller, SVC, "fail_negative", NULL, 3.0, NULL, &e),
                    DAEBUS_EREPLY);
    CU_ASSERT_STRING_EQUAL(e.message, "Internal error in action 'fail_negative'");
    CU_ASSERT_EQUAL(daebus_caller_request(caller, SVC, "no_reply", NULL, 3.0, NULL, &e),
                    DAEBUS_EREPLY);
    CU_ASSERT_STRING_EQUAL(e.message, "Action 'no_reply' sent no reply");
    CU_ASSERT_EQUAL(daebus_caller_request(caller, SVC, "retain_forget", NULL, 3.0, NULL, &e),
                    DAEBUS_EREPLY);
    CU_ASSERT_STRING_EQUAL(e.message, "Action 'retain_forget' sent no reply");
}

static void test_unknown_action(void)
{
    daebus_error e = {0};
    double t0 = ts_now();
    CU_ASSERT_EQUAL(daebus_caller_request(caller, SVC, "nope", NULL, 5.0, NULL, &e), DAEBUS_EREPLY);
    CU_ASSERT_TRUE(ts_now() - t0 < 2.0);
    CU_ASSERT_STRING_EQUAL(e.message, "Unknown action 'nope'");
    struct daebus_bus_stats st;
    daebus_bus_get_stats(bus, &st);
    CU_ASSERT_TRUE(st.unknown_actions >= 1);
}

static void test_malformed_json(void)
{
    struct daebus_bus_stats before, after;
    daebus_bus_get_stats(bus, &before);
    CU_ASSERT_TRUE(raw_publish(redis.port, SVC, "{not json") >= 1);
    CU_ASSERT_TRUE(raw_publish(redis.port, SVC, "[1,2]") >= 1);
    CU_ASSERT_TRUE(raw_publish(redis.port, SVC, "\x01\xff garbage") >= 1);
    CU_ASSERT_TRUE(raw_publish(redis.port, SVC, "{\"no_action\":1}") >= 1);
    CU_ASSERT_TRUE(raw_publish(redis.port, SVC, "{\"action\":\"echo\"} trailing") >= 1);
    TS_WAIT_UNTIL((daebus_bus_get_stats(bus, &after), after.malformed >= before.malformed + 4), 3);
    CU_ASSERT_EQUAL(after.malformed, before.malformed + 4);
    /* The service keeps working. */
    cJSON *p = cJSON_Parse("{\"still\":\"alive\"}");
    cJSON *out = NULL;
    daebus_error e = {0};
    CU_ASSERT_EQUAL(daebus_caller_request(caller, SVC, "echo", p, 3.0, &out, &e), 0);
    CU_ASSERT_TRUE(cJSON_Compare(p, out, 1));
    cJSON_Delete(p);
    cJSON_Delete(out);
}

/* A message that is not well-formed UTF-8 (Redis does not check) is refused
 * before parsing: counted as malformed, answered "invalid UTF-8 at byte N"
 * (reply_to and request_id read by the lenient scan), never echoed. */
static void test_invalid_utf8(void)
{
    struct daebus_bus_stats before, after;
    daebus_bus_get_stats(bus, &before);
    redisContext *sub = raw_subscribe(redis.port, "rawutf8");
    CU_ASSERT_PTR_NOT_NULL_FATAL(sub);
    const char *msg = "{\"action\":\"b\xff\xfe\",\"payload\":{},\"reply_to\":\"rawutf8\","
                      "\"request_id\":\"r-1\"}";
    CU_ASSERT_EQUAL(raw_publish(redis.port, SVC, msg), 1);
    char *reply = raw_next(sub);
    CU_ASSERT_PTR_NOT_NULL_FATAL(reply);
    int ascii = 1; /* all the reply's text is ASCII: nothing of the message is echoed */
    for (const char *c = reply; *c; c++)
        ascii &= (unsigned char)*c < 0x80;
    CU_ASSERT_TRUE(ascii);
    cJSON *r = cJSON_Parse(reply);
    CU_ASSERT_STRING_EQUAL(cJSON_GetStringValue(cJSON_GetObjectItem(r, "status")), "error");
    CU_ASSERT_STRING_EQUAL(cJSON_GetStringValue(cJSON_GetObjectItem(r, "request_id")), "r-1");
    const cJSON *p = cJSON_GetObjectItem(r, "payload");
    CU_ASSERT_STRING_EQUAL(cJSON_GetStringValue(cJSON_GetObjectItem(p, "error")),
                           "invalid UTF-8 at byte 12");
    cJSON_Delete(r);
    free(reply);
    redisFree(sub);
    /* On a listener channel: dropped and counted, the listener not called. */
    int heard_before = atomic_load(&heard_count);
    CU_ASSERT_EQUAL(raw_publish(redis.port, "notifications", "{\"n\":\"\xc0\xaf\"}"), 1);
    TS_WAIT_UNTIL((daebus_bus_get_stats(bus, &after), after.malformed >= before.malformed + 2), 3);
    CU_ASSERT_EQUAL(after.malformed, before.malformed + 2);
    CU_ASSERT_EQUAL(atomic_load(&heard_count), heard_before);
    /* The service keeps answering. */
    cJSON *out = NULL;
    daebus_error e = {0};
    cJSON *q = cJSON_Parse("{\"after\":\"bad bytes\"}");
    CU_ASSERT_EQUAL(daebus_caller_request(caller, SVC, "echo", q, 3.0, &out, &e), 0);
    CU_ASSERT_TRUE(cJSON_Compare(q, out, 1));
    cJSON_Delete(q);
    cJSON_Delete(out);
}

static void test_fire_and_forget(void)
{
    int before = atomic_load(&record_count);
    cJSON *p = cJSON_Parse("{\"x\":1,\"y\":\"z\"}");
    CU_ASSERT_EQUAL(daebus_caller_send_to_service(caller, SVC, p, "record"), 1);
    TS_WAIT_UNTIL(atomic_load(&record_count) > before, 3);
    pthread_mutex_lock(&rec_lock);
    /* The handler sees the message minus "action". */
    CU_ASSERT_TRUE(cJSON_Compare(recorded, p, 1));
    pthread_mutex_unlock(&rec_lock);
    cJSON_Delete(p);
    /* An explicit payload wins; a string payload is parsed; a bad string -> {}. */
    before = atomic_load(&record_count);
    raw_publish(redis.port, SVC, "{\"action\":\"record\",\"payload\":\"{\\\"s\\\":2}\"}");
    TS_WAIT_UNTIL(atomic_load(&record_count) > before, 3);
    pthread_mutex_lock(&rec_lock);
    CU_ASSERT_EQUAL(
        cJSON_GetObjectItem(recorded, "s") ? cJSON_GetObjectItem(recorded, "s")->valueint : -1, 2);
    pthread_mutex_unlock(&rec_lock);
    before = atomic_load(&record_count);
    raw_publish(redis.port, SVC, "{\"action\":\"record\",\"payload\":\"not json\"}");
    TS_WAIT_UNTIL(atomic_load(&record_count) > before, 3);
    pthread_mutex_lock(&rec_lock);
    CU_ASSERT_TRUE(cJSON_IsObject(recorded) && cJSON_GetArraySize(recorded) == 0);
    pthread_mutex_unlock(&rec_lock);
    /* No reply for fire-and-forget: an unknown one is ignored silently. */
    CU_ASSERT_TRUE(raw_publish(redis.port, SVC, "{\"action\":\"nope\"}") >= 1);
    /* A reply channel too long to use: handled, without a reply (never to a cut name). */
    char msg[1024];
    snprintf(msg, sizeof msg,
             "{\"action\":\"record\",\"payload\":{\"long\":1},\"reply_to\":\"%0600d\"}", 7);
    before = atomic_load(&record_count);
    CU_ASSERT_TRUE(raw_publish(redis.port, SVC, msg) >= 1);
    TS_WAIT_UNTIL(atomic_load(&record_count) > before, 3);
    CU_ASSERT_TRUE(atomic_load(&record_count) > before);
}

static void test_responses_fallback_and_wire_format(void)
{
    /* request_id but no reply_to -> <service>.responses, exact key order. */
    redisContext *sub = raw_subscribe(redis.port, SVC ".responses");
    CU_ASSERT_PTR_NOT_NULL_FATAL(sub);
    raw_publish(redis.port, SVC,
                "{\"action\":\"echo\",\"payload\":{\"k\":\"v\"},\"request_id\":\"r-1\","
                "\"service\":\"" SVC "\"}");
    char *got = raw_next(sub);
    CU_ASSERT_PTR_NOT_NULL(got);
    if (got)
        CU_ASSERT_STRING_EQUAL(
            got, "{\"status\":\"success\",\"payload\":{\"k\":\"v\"},\"request_id\":\"r-1\","
                 "\"final\":true}");
    free(got);
    /* Without a service field the fallback uses this service's name. */
    raw_publish(redis.port, SVC, "{\"action\":\"fail_explicit\",\"request_id\":7}");
    got = raw_next(sub);
    if (got)
        CU_ASSERT_STRING_EQUAL(got, "{\"status\":\"error\",\"payload\":{\"error\":\"bad thing\"},"
                                    "\"request_id\":7,\"final\":true}");
    CU_ASSERT_PTR_NOT_NULL(got);
    free(got);
    redisFree(sub);
    /* reply_to without request_id -> request_id echoed as null. */
    sub = raw_subscribe(redis.port, "reply_x");
    raw_publish(redis.port, SVC, "{\"action\":\"echo\",\"payload\":[1],\"reply_to\":\"reply_x\"}");
    got = raw_next(sub);
    if (got)
        CU_ASSERT_STRING_EQUAL(
            got, "{\"status\":\"success\",\"payload\":[1],\"request_id\":null,\"final\":true}");
    CU_ASSERT_PTR_NOT_NULL(got);
    free(got);
    /* Progress on the wire: success + final:false. */
    raw_publish(redis.port, SVC,
                "{\"action\":\"progress3\",\"payload\":{},\"reply_to\":\"reply_x\","
                "\"request_id\":\"p1\"}");
    got = raw_next(sub);
    if (got)
        CU_ASSERT_STRING_EQUAL(got, "{\"status\":\"success\",\"payload\":{\"step\":1,"
                                    "\"progress_percentage\":10},\"request_id\":\"p1\","
                                    "\"final\":false}");
    CU_ASSERT_PTR_NOT_NULL(got);
    free(got);
    for (int i = 0; i < 3; i++)
        free(raw_next(sub));
    redisFree(sub);
}

static void test_listener(void)
{
    int before = atomic_load(&heard_count);
    cJSON *m = cJSON_Parse("{\"type\":\"alert\",\"level\":3,\"payload\":{\"x\":1}}");
    CU_ASSERT_EQUAL(daebus_caller_send_message(caller, "notifications", m), 1);
    TS_WAIT_UNTIL(atomic_load(&heard_count) > before, 3);
    pthread_mutex_lock(&rec_lock);
    CU_ASSERT_TRUE(cJSON_Compare(heard, m, 1)); /* the whole object */
    pthread_mutex_unlock(&rec_lock);
    cJSON_Delete(m);
    /* Non-objects are dropped, the listener keeps working. */
    before = atomic_load(&heard_count);
    raw_publish(redis.port, "notifications", "[1,2]");
    raw_publish(redis.port, "notifications", "{\"n\":2}");
    TS_WAIT_UNTIL(atomic_load(&heard_count) > before, 3);
    ts_sleep_ms(50);
    CU_ASSERT_EQUAL(atomic_load(&heard_count), before + 1);
    struct daebus_bus_stats st;
    daebus_bus_get_stats(bus, &st);
    CU_ASSERT_TRUE(st.listener_messages >= 2);
}

static void test_broadcast(void)
{
    redisContext *a = raw_subscribe(redis.port, "bc_chan");
    redisContext *b = raw_subscribe(redis.port, "bc_chan");
    cJSON *o = cJSON_Parse("{\"hello\":\"all\"}");
    CU_ASSERT_EQUAL(daebus_bus_broadcast(bus, "bc_chan", o), 2);
    char *ga = raw_next(a), *gb = raw_next(b);
    CU_ASSERT_STRING_EQUAL(ga ? ga : "", "{\"hello\":\"all\"}");
    CU_ASSERT_STRING_EQUAL(gb ? gb : "", "{\"hello\":\"all\"}");
    free(ga);
    free(gb);
    CU_ASSERT_EQUAL(daebus_bus_broadcast(bus, "nobody_here", o), 0);
    cJSON *arr = cJSON_CreateArray();
    CU_ASSERT_EQUAL(daebus_bus_broadcast(bus, "bc_chan", arr), DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(daebus_bus_broadcast(bus, "", o), DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(daebus_bus_broadcast_take(bus, "bc_chan", cJSON_Duplicate(o, 1)), 2);
    free(raw_next(a));
    free(raw_next(b));
    cJSON_Delete(arr);
    cJSON_Delete(o);
    redisFree(a);
    redisFree(b);
    struct daebus_bus_stats st;
    daebus_bus_get_stats(bus, &st);
    CU_ASSERT_TRUE(st.broadcasts >= 3);
}

static void test_service_to_service(void)
{
    cJSON *p = cJSON_Parse("{\"via\":\"nested\"}");
    cJSON *out = NULL;
    daebus_error e = {0};
    CU_ASSERT_EQUAL(daebus_caller_request(caller, SVC, "nested", p, 5.0, &out, &e), 0);
    CU_ASSERT_TRUE(cJSON_Compare(p, out, 1));
    cJSON_Delete(out);
    cJSON_Delete(p);
}

/* ---- concurrency ---- */

typedef struct conc {
    atomic_int done, ok, wrong;
} conc;

typedef struct conc_req {
    conc *c;
    int n;
    char id[40];
} conc_req;

static void conc_done(daebus_caller *cl, int status, const cJSON *payload, const char *msg,
                      void *user)
{
    (void)cl;
    (void)msg;
    conc_req *r = user;
    const cJSON *n = cJSON_GetObjectItem(payload, "n");
    if (status == 0 && cJSON_IsNumber(n) && n->valueint == r->n)
        atomic_fetch_add(&r->c->ok, 1);
    else
        atomic_fetch_add(&r->c->wrong, 1);
    atomic_fetch_add(&r->c->done, 1);
}

typedef struct sender {
    daebus_caller *cl;
    conc *c;
    conc_req *reqs;
    int base, count;
} sender;

static void *send_many(void *arg)
{
    sender *s = arg;
    for (int i = 0; i < s->count; i++) {
        conc_req *r = &s->reqs[s->base + i];
        r->c = s->c;
        r->n = s->base + i;
        cJSON *p = cJSON_CreateObject();
        cJSON_AddNumberToObject(p, "n", r->n);
        cJSON_AddNumberToObject(p, "ms", i % 3);
        int rc = daebus_caller_request_async(s->cl, SVC, i % 2 ? "slow" : "echo", p, 20.0,
                                             conc_done, NULL, r, r->id);
        if (rc != 0) {
            atomic_fetch_add(&s->c->wrong, 1);
            atomic_fetch_add(&s->c->done, 1);
        }
        cJSON_Delete(p);
    }
    return NULL;
}

static void test_200_concurrent(void)
{
    enum { CALLERS = 4, PER = 50 };
    conc c = {0};
    conc_req *reqs = calloc(CALLERS * PER, sizeof *reqs);
    daebus_caller *cl[CALLERS];
    pthread_t t[CALLERS];
    sender s[CALLERS];
    for (int i = 0; i < CALLERS; i++) {
        cl[i] = daebus_caller_create(redis.url, NULL, NULL);
        CU_ASSERT_PTR_NOT_NULL_FATAL(cl[i]);
    }
    double t0 = ts_now();
    for (int i = 0; i < CALLERS; i++) {
        s[i] = (sender){cl[i], &c, reqs, i * PER, PER};
        pthread_create(&t[i], NULL, send_many, &s[i]);
    }
    for (int i = 0; i < CALLERS; i++)
        pthread_join(t[i], NULL);
    TS_WAIT_UNTIL(atomic_load(&c.done) == CALLERS * PER, 30);
    double dt = ts_now() - t0;
    CU_ASSERT_EQUAL(atomic_load(&c.done), CALLERS * PER);
    CU_ASSERT_EQUAL(atomic_load(&c.ok), CALLERS * PER);
    CU_ASSERT_EQUAL(atomic_load(&c.wrong), 0);
    /* Every request id distinct. */
    int dup = 0;
    for (int i = 0; i < CALLERS * PER; i++)
        for (int j = i + 1; j < CALLERS * PER; j++)
            if (strcmp(reqs[i].id, reqs[j].id) == 0)
                dup++;
    CU_ASSERT_EQUAL(dup, 0);
    fprintf(stderr, "\n  200 concurrent requests (4 callers) answered in %.3f s\n", dt);
    for (int i = 0; i < CALLERS; i++)
        daebus_caller_destroy(cl[i]);
    free(reqs);
}

static void test_caller_timeout(void)
{
    daebus_error e = {0};
    double t0 = ts_now();
    /* Nobody subscribes to the channel: fails at once, not at the time-out. */
    int rc = daebus_caller_request(caller, "nobody_listens", "x", NULL, 5.0, NULL, &e);
    double dt = ts_now() - t0;
    CU_ASSERT_EQUAL(rc, DAEBUS_ENOLISTENER);
    CU_ASSERT_TRUE(dt < 1.0);
    CU_ASSERT_PTR_NOT_NULL(
        strstr(e.message, "no service 'nobody_listens' is listening on redis://"));
    /* A listener that never answers: the time-out. */
    cJSON *slow = cJSON_Parse("{\"ms\":600}");
    t0 = ts_now();
    rc = daebus_caller_request(caller, SVC, "slow", slow, 0.3, NULL, &e);
    dt = ts_now() - t0;
    cJSON_Delete(slow);
    CU_ASSERT_EQUAL(rc, DAEBUS_ETIMEDOUT);
    CU_ASSERT_TRUE(dt >= 0.29 && dt < 1.5);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "timed out"));
    ts_sleep_ms(400); /* let the slow handler finish before the next checks */
    /* A late reply to an expired request is dropped (slow 600 ms, timeout 0.2 s). */
    cJSON *p = cJSON_Parse("{\"ms\":600}");
    CU_ASSERT_EQUAL(daebus_caller_request(caller, SVC, "slow", p, 0.2, NULL, &e), DAEBUS_ETIMEDOUT);
    cJSON_Delete(p);
    ts_sleep_ms(700);
    cJSON *out = NULL;
    CU_ASSERT_EQUAL(daebus_caller_request(caller, SVC, "echo", NULL, 3.0, &out, &e), 0);
    cJSON_Delete(out);
    /* Misuse. */
    CU_ASSERT_EQUAL(daebus_caller_request(caller, NULL, "x", NULL, 1, NULL, &e), DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(daebus_caller_send_to_service(caller, SVC, cJSON_GetArrayItem(NULL, 0), NULL),
                    1);
}

/* What a listen callback saw (under raw_lock). */
static pthread_mutex_t raw_lock = PTHREAD_MUTEX_INITIALIZER;
static char raw_data[64];
static size_t raw_len;
static int raw_count;

static void on_raw(daebus_caller *c, const char *channel, const char *data, size_t len, void *user)
{
    (void)c;
    CU_ASSERT_STRING_EQUAL(channel, "raw.chan");
    CU_ASSERT_PTR_EQUAL(user, &raw_count);
    pthread_mutex_lock(&raw_lock);
    memcpy(raw_data, data, len < sizeof raw_data ? len : sizeof raw_data);
    raw_len = len;
    raw_count++;
    pthread_mutex_unlock(&raw_lock);
}

static int raw_heard(void)
{
    pthread_mutex_lock(&raw_lock);
    int n = raw_count;
    pthread_mutex_unlock(&raw_lock);
    return n;
}

static void test_caller_listen_publish(void)
{
    /* Subscribed when listen returns: the first publish reaches it. */
    CU_ASSERT_EQUAL(daebus_caller_listen(caller, "raw.chan", on_raw, &raw_count), 0);
    CU_ASSERT_EQUAL(daebus_caller_listen(caller, "raw.chan", on_raw, NULL), DAEBUS_EEXIST);
    CU_ASSERT_EQUAL(daebus_caller_listen(caller, daebus_caller_reply_channel(caller), on_raw, NULL),
                    DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(daebus_caller_listen(caller, "x", NULL, NULL), DAEBUS_EINVAL);
    /* Raw bytes, a NUL included, as they are. */
    CU_ASSERT_EQUAL(daebus_caller_publish(caller, "raw.chan", "a\0b{", 4), 1);
    TS_WAIT_UNTIL(raw_heard() == 1, 3);
    pthread_mutex_lock(&raw_lock);
    CU_ASSERT_EQUAL(raw_len, 4);
    CU_ASSERT_EQUAL(memcmp(raw_data, "a\0b{", 4), 0);
    pthread_mutex_unlock(&raw_lock);
    /* Replies still work on the same connection. */
    cJSON *out = NULL;
    daebus_error e = {0};
    CU_ASSERT_EQUAL(daebus_caller_request(caller, SVC, "echo", NULL, 3.0, &out, &e), 0);
    cJSON_Delete(out);
    /* A foreign publisher reaches it too. */
    CU_ASSERT_EQUAL(raw_publish(redis.port, "raw.chan", "{\"m\":2}"), 1);
    TS_WAIT_UNTIL(raw_heard() == 2, 3);
    CU_ASSERT_EQUAL(raw_heard(), 2);
    /* After unlisten: unsubscribed, no callback. */
    CU_ASSERT_EQUAL(daebus_caller_unlisten(caller, "raw.chan"), 0);
    CU_ASSERT_EQUAL(daebus_caller_unlisten(caller, "raw.chan"), DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(daebus_caller_publish(caller, "raw.chan", "x", 1), 0);
    ts_sleep_ms(50);
    CU_ASSERT_EQUAL(raw_heard(), 2);
    CU_ASSERT_EQUAL(daebus_caller_publish(caller, "", "x", 1), DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(daebus_caller_publish(NULL, "c", "x", 1), DAEBUS_EINVAL);
}

int main(void)
{
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("bus", init, cleanup);
    CU_add_test(s, "request/reply", test_request_reply);
    CU_add_test(s, "progress then final", test_progress_then_final);
    CU_add_test(s, "error replies", test_error_replies);
    CU_add_test(s, "unknown action", test_unknown_action);
    CU_add_test(s, "malformed JSON", test_malformed_json);
    CU_add_test(s, "invalid UTF-8", test_invalid_utf8);
    CU_add_test(s, "fire-and-forget", test_fire_and_forget);
    CU_add_test(s, "responses fallback + wire format", test_responses_fallback_and_wire_format);
    CU_add_test(s, "listener", test_listener);
    CU_add_test(s, "broadcast", test_broadcast);
    CU_add_test(s, "service to service", test_service_to_service);
    CU_add_test(s, "200 concurrent", test_200_concurrent);
    CU_add_test(s, "caller timeout", test_caller_timeout);
    CU_add_test(s, "caller listen + publish", test_caller_listen_publish);
    return ts_run_cunit();
}
