/* The caller's side of durable actions (docs/messaging/choosing.md) against a
 * real redis-server, the test playing the service with a raw hiredis client:
 * the XADD's fields (req = the pub/sub envelope, deadline = now + time-out in
 * ms since epoch), the reply on the reply channel, no "no listener" failure,
 * an XADD Redis refuses, WAIT durable_wait_replicas, the queued counter and
 * daebus-call --durable. */
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include "daebus/daebus.h"
#include "testsupport.h"

static ts_redis redis;

static redisContext *raw(void)
{
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", redis.port, tv);
    CU_ASSERT_FATAL(c && !c->err);
    redisSetTimeout(c, tv);
    return c;
}

static double wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return tv.tv_sec * 1000.0 + tv.tv_usec / 1000.0;
}

typedef struct done_state {
    atomic_int done;
    int status;
    char message[300];
    cJSON *payload;
} done_state;

static void on_done(daebus_caller *c, int status, const cJSON *payload, const char *message,
                    void *user)
{
    (void)c;
    done_state *d = user;
    d->status = status;
    snprintf(d->message, sizeof d->message, "%s", message ? message : "");
    d->payload = payload ? cJSON_Duplicate(payload, 1) : NULL;
    atomic_store(&d->done, 1);
}

static daebus_caller *durable_caller(int wait_replicas)
{
    daebus_caller_options o = DAEBUS_CALLER_OPTIONS_INIT;
    o.durable = true;
    o.durable_wait_replicas = wait_replicas;
    daebus_error e = {0};
    daebus_caller *c = daebus_caller_create(redis.url, &o, &e);
    if (!c)
        fprintf(stderr, "caller: %s\n", e.message);
    return c;
}

/* The stream entry: req is the five-key envelope, deadline now + time-out;
 * a reply published on reply_to completes the request as for pub/sub. */
static void test_xadd_and_reply(void)
{
    daebus_caller *c = durable_caller(0);
    CU_ASSERT_FATAL(c != NULL);
    done_state d = {0};
    char id[40];
    cJSON *pl = cJSON_Parse("{\"n\":7}");
    double before = wall_ms();
    CU_ASSERT_EQUAL(daebus_caller_request_async(c, "dsvc", "work", pl, 3.0, on_done, NULL, &d, id),
                    0);
    double after = wall_ms();
    CU_ASSERT_EQUAL(daebus_caller_queued(c), 1);
    redisContext *r = raw();
    redisReply *x = redisCommand(r, "XRANGE daebus:dsvc:requests - +");
    CU_ASSERT_FATAL(x && x->type == REDIS_REPLY_ARRAY && x->elements == 1);
    redisReply *f = x->element[0]->element[1];
    CU_ASSERT_FATAL(f->elements == 4);
    CU_ASSERT_STRING_EQUAL(f->element[0]->str, "req");
    CU_ASSERT_STRING_EQUAL(f->element[2]->str, "deadline");
    double deadline = atof(f->element[3]->str);
    CU_ASSERT(deadline >= before + 3000 - 5 && deadline <= after + 3000 + 5);
    cJSON *req = cJSON_Parse(f->element[1]->str);
    CU_ASSERT_FATAL(req != NULL);
    CU_ASSERT_EQUAL(cJSON_GetArraySize(req), 5);
    CU_ASSERT_STRING_EQUAL(cJSON_GetStringValue(cJSON_GetObjectItem(req, "action")), "work");
    CU_ASSERT_STRING_EQUAL(cJSON_GetStringValue(cJSON_GetObjectItem(req, "service")), "dsvc");
    CU_ASSERT_STRING_EQUAL(cJSON_GetStringValue(cJSON_GetObjectItem(req, "request_id")), id);
    CU_ASSERT_STRING_EQUAL(cJSON_GetStringValue(cJSON_GetObjectItem(req, "reply_to")),
                           daebus_caller_reply_channel(c));
    CU_ASSERT(cJSON_Compare(cJSON_GetObjectItem(req, "payload"), pl, 1));
    freeReplyObject(x);
    /* The service's answer (what the completion script publishes). */
    char reply[300];
    snprintf(reply, sizeof reply,
             "{\"status\":\"success\",\"payload\":{\"ok\":1},\"request_id\":\"%s\","
             "\"final\":true}",
             id);
    x = redisCommand(r, "PUBLISH %s %s", daebus_caller_reply_channel(c), reply);
    CU_ASSERT(x && x->type == REDIS_REPLY_INTEGER && x->integer == 1);
    freeReplyObject(x);
    TS_WAIT_UNTIL(atomic_load(&d.done), 5);
    CU_ASSERT_EQUAL(d.status, 0);
    CU_ASSERT(d.payload && cJSON_GetObjectItem(d.payload, "ok"));
    cJSON_Delete(d.payload);
    cJSON_Delete(req);
    cJSON_Delete(pl);
    redisFree(r);
    daebus_caller_destroy(c);
}

/* Nobody reads the stream: no DAEBUS_ENOLISTENER (a replica may come), the
 * request waits for its time-out; the blocking form says so. */
static void test_no_replica_times_out(void)
{
    daebus_caller *c = durable_caller(0);
    CU_ASSERT_FATAL(c != NULL);
    daebus_error e = {0};
    double t0 = ts_now();
    int rc = daebus_caller_request(c, "nobody", "work", NULL, 0.4, NULL, &e);
    double took = ts_now() - t0;
    CU_ASSERT_EQUAL(rc, DAEBUS_ETIMEDOUT);
    CU_ASSERT(took >= 0.35 && took < 3.0);
    redisContext *r = raw();
    redisReply *x = redisCommand(r, "XLEN daebus:nobody:requests");
    CU_ASSERT(x && x->integer == 1);
    freeReplyObject(x);
    redisFree(r);
    daebus_caller_destroy(c);
}

/* Redis refuses the XADD (the key holds a string): DAEBUS_EIO at once, with
 * Redis's error, not counted as queued. */
static void test_xadd_refused(void)
{
    redisContext *r = raw();
    freeReplyObject(redisCommand(r, "SET daebus:badsvc:requests oops"));
    daebus_caller *c = durable_caller(0);
    CU_ASSERT_FATAL(c != NULL);
    daebus_error e = {0};
    double t0 = ts_now();
    int rc = daebus_caller_request(c, "badsvc", "work", NULL, 5.0, NULL, &e);
    CU_ASSERT_EQUAL(rc, DAEBUS_EIO);
    CU_ASSERT(ts_now() - t0 < 2.0);
    CU_ASSERT(strstr(e.message, "could not be queued") != NULL);
    CU_ASSERT(strstr(e.message, "WRONGTYPE") != NULL);
    CU_ASSERT_EQUAL(daebus_caller_queued(c), 0);
    daebus_caller_destroy(c);
    redisFree(r);
}

/* durable_wait_replicas: WAIT 1 on a Redis without replicas waits half the
 * time-out, then the request is queued all the same. */
static void test_wait_replicas(void)
{
    daebus_caller *c = durable_caller(1);
    CU_ASSERT_FATAL(c != NULL);
    done_state d = {0};
    double t0 = ts_now();
    CU_ASSERT_EQUAL(
        daebus_caller_request_async(c, "waitsvc", "work", NULL, 1.0, on_done, NULL, &d, NULL), 0);
    double took = ts_now() - t0;
    CU_ASSERT(took >= 0.45 && took < 1.0);
    CU_ASSERT_EQUAL(daebus_caller_queued(c), 1);
    TS_WAIT_UNTIL(atomic_load(&d.done), 5);
    CU_ASSERT_EQUAL(d.status, DAEBUS_ETIMEDOUT);
    daebus_caller_destroy(c);
}

/* A pub/sub caller is unchanged: no stream, DAEBUS_ENOLISTENER at once. */
static void test_pubsub_unchanged(void)
{
    daebus_caller *c = daebus_caller_create(redis.url, NULL, NULL);
    CU_ASSERT_FATAL(c != NULL);
    daebus_error e = {0};
    CU_ASSERT_EQUAL(daebus_caller_request(c, "plain", "work", NULL, 5.0, NULL, &e),
                    DAEBUS_ENOLISTENER);
    CU_ASSERT_EQUAL(daebus_caller_queued(c), 0);
    redisContext *r = raw();
    redisReply *x = redisCommand(r, "EXISTS daebus:plain:requests");
    CU_ASSERT(x && x->integer == 0);
    freeReplyObject(x);
    redisFree(r);
    daebus_caller_destroy(c);
}

/* A pub/sub caller sends one request durable: daebus_caller_request_durable
 * queues it (no ENOLISTENER), the caller's other requests stay pub/sub. */
static void test_per_request(void)
{
    daebus_caller *c = daebus_caller_create(redis.url, NULL, NULL);
    CU_ASSERT_FATAL(c != NULL);
    daebus_error e = {0};
    CU_ASSERT_EQUAL(daebus_caller_request_durable(c, "onesvc", "work", NULL, 0.3, NULL, &e),
                    DAEBUS_ETIMEDOUT);
    CU_ASSERT_EQUAL(daebus_caller_queued(c), 1);
    CU_ASSERT_EQUAL(daebus_caller_request(c, "onesvc", "work", NULL, 0.3, NULL, &e),
                    DAEBUS_ENOLISTENER);
    done_state d = {0};
    char id[40];
    CU_ASSERT_EQUAL(
        daebus_caller_request_durable_async(c, "onesvc", "work", NULL, 0.3, on_done, NULL, &d, id),
        0);
    CU_ASSERT_EQUAL(daebus_caller_queued(c), 2);
    TS_WAIT_UNTIL(atomic_load(&d.done), 5);
    CU_ASSERT_EQUAL(d.status, DAEBUS_ETIMEDOUT);
    redisContext *r = raw();
    redisReply *x = redisCommand(r, "XRANGE daebus:onesvc:requests - +");
    CU_ASSERT(x && x->elements == 2 && strstr(x->element[1]->element[1]->element[1]->str, id));
    freeReplyObject(x);
    redisFree(r);
    daebus_caller_destroy(c);
}

/* The connection of the XADD dies while Redis holds the command (CLIENT
 * PAUSE WRITE, then CLIENT KILL of that connection): the caller sends it once
 * more on a fresh connection, with the same request_id, and the request
 * completes normally. */
typedef struct send_arg {
    daebus_caller *c;
    done_state *d;
    char id[40];
    int rc;
} send_arg;

static void *send_one(void *arg)
{
    send_arg *a = arg;
    a->rc = daebus_caller_request_async(a->c, "retrysvc", "work", NULL, 10.0, on_done, NULL, a->d,
                                        a->id);
    return NULL;
}

static long long xadd_client_id(redisContext *r)
{
    redisReply *x = redisCommand(r, "CLIENT LIST");
    long long id = -1;
    for (char *line = x && x->str ? x->str : NULL; line && *line;) {
        char *end = strchr(line, '\n');
        if (end)
            *end = 0;
        if (strstr(line, "cmd=xadd"))
            id = atoll(strstr(line, "id=") + 3);
        line = end ? end + 1 : NULL;
    }
    freeReplyObject(x);
    return id;
}

static void test_retry_after_lost_connection(void)
{
    daebus_caller *c = durable_caller(0);
    CU_ASSERT_FATAL(c != NULL);
    daebus_error e = {0};
    /* A first request makes the publisher connection's last command XADD. */
    CU_ASSERT_EQUAL(daebus_caller_request(c, "retrysvc", "work", NULL, 0.2, NULL, &e),
                    DAEBUS_ETIMEDOUT);
    redisContext *r = raw();
    long long victim = xadd_client_id(r);
    CU_ASSERT_FATAL(victim > 0);
    freeReplyObject(redisCommand(r, "CLIENT PAUSE 800 WRITE"));
    done_state d = {0};
    send_arg a = {c, &d, "", -100};
    pthread_t t;
    pthread_create(&t, NULL, send_one, &a);
    ts_sleep_ms(200); /* the XADD waits in Redis */
    redisReply *k = redisCommand(r, "CLIENT KILL ID %lld", victim);
    CU_ASSERT(k && k->type == REDIS_REPLY_INTEGER && k->integer == 1);
    freeReplyObject(k);
    pthread_join(t, NULL);
    CU_ASSERT_EQUAL(a.rc, 0);
    CU_ASSERT_EQUAL(daebus_caller_queued(c), 2);
    /* One entry for it (the killed connection's command never ran), its id. */
    redisReply *x = redisCommand(r, "XRANGE daebus:retrysvc:requests - +");
    CU_ASSERT(x && x->elements == 2 && strstr(x->element[1]->element[1]->element[1]->str, a.id));
    freeReplyObject(x);
    char reply[300];
    snprintf(reply, sizeof reply,
             "{\"status\":\"success\",\"payload\":{},\"request_id\":\"%s\",\"final\":true}", a.id);
    freeReplyObject(redisCommand(r, "PUBLISH %s %s", daebus_caller_reply_channel(c), reply));
    TS_WAIT_UNTIL(atomic_load(&d.done), 5);
    CU_ASSERT_EQUAL(d.status, 0);
    cJSON_Delete(d.payload);
    redisFree(r);
    daebus_caller_destroy(c);
}

/* daebus-call --durable queues its call (exit 2 at the time-out: nobody
 * answers); --help names the flag. */
static void test_cli(void)
{
    const char *bin = getenv("DAEBUS_BINARY_DIR");
    CU_ASSERT_FATAL(bin != NULL);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s/bin/daebus-call --help | grep -q -- --durable", bin);
    CU_ASSERT_EQUAL(system(cmd), 0);
    snprintf(cmd, sizeof cmd,
             "%s/bin/daebus-call clisvc work '{\"a\":1}' --durable --timeout 0.3 "
             "--redis %s 2>/dev/null",
             bin, redis.url);
    int st = system(cmd);
    CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 2);
    redisContext *r = raw();
    redisReply *x = redisCommand(r, "XRANGE daebus:clisvc:requests - +");
    CU_ASSERT(x && x->elements == 1 &&
              strstr(x->element[0]->element[1]->element[1]->str, "\"payload\":{\"a\":1}") != NULL);
    freeReplyObject(x);
    redisFree(r);
}

static int init(void)
{
    return ts_redis_start(&redis, NULL);
}

static int cleanup(void)
{
    ts_redis_stop(&redis);
    return 0;
}

int main(void)
{
    daebus_log_set_level(DAEBUS_LOG_ERROR);
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("durable caller", init, cleanup);
    CU_add_test(s, "XADD fields and the reply", test_xadd_and_reply);
    CU_add_test(s, "no replica: time-out", test_no_replica_times_out);
    CU_add_test(s, "XADD refused", test_xadd_refused);
    CU_add_test(s, "WAIT durable_wait_replicas", test_wait_replicas);
    CU_add_test(s, "pub/sub caller unchanged", test_pubsub_unchanged);
    CU_add_test(s, "durable per request", test_per_request);
    CU_add_test(s, "XADD sent again after a lost connection", test_retry_after_lost_connection);
    CU_add_test(s, "daebus-call --durable", test_cli);
    return ts_run_cunit();
}
