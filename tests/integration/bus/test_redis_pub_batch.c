/* The publisher pool's batched writes (issue 18): threads that find their
 * connection in use queue their commands; the next owner writes them all at
 * once and hands each thread its own replies. Checked with INCR (every reply
 * distinct), the pool's write counter, a connection killed with commands in
 * flight (exactly those fail), a close with threads queued, asynchronous
 * PUBLISHes and their receiver counts, and the caller's requests made in its
 * callbacks (published without waiting: a request that reaches nobody still
 * fails at once). A BLPOP holds a connection busy so that a queue forms. */
#include <stdio.h>
#include <string.h>
#include "daebus/daebus.h"
#include "redis_conn.h"
#include "redis_pub.h"
#include "common.h"
#include "redis_fixture.h"

static daebus__redis_pub *pool(int connections)
{
    daebus__redis_pub_opts o = {&url, connections, 2.0, 5.0, 0.0, "test"};
    return daebus__redis_pub_create(&o);
}

static redisReply *raw_cmd(const char *fmt, const char *arg)
{
    redisContext *c = raw_connect(redis.port);
    CU_ASSERT_FATAL(c != NULL);
    redisReply *r = redisCommand(c, fmt, arg);
    redisFree(c);
    return r;
}

/* One command as a pipeline; *out (may be NULL) gets the reply. */
typedef struct one_job {
    daebus__redis_pub *p;
    const char *argv[3];
    int argc;
    int rc;
    redisReply *reply;
    double took;
} one_job;

static void *run_one(void *arg)
{
    one_job *j = arg;
    size_t len[3] = {0};
    for (int i = 0; i < j->argc; i++)
        len[i] = strlen(j->argv[i]);
    daebus__redis_cmd c = {j->argc, j->argv, len};
    double t0 = ts_now();
    j->rc = daebus__redis_pub_pipeline(j->p, &c, 1, &j->reply);
    j->took = ts_now() - t0;
    return NULL;
}

static void start_one(pthread_t *t, one_job *j, daebus__redis_pub *p, const char *a0,
                      const char *a1, const char *a2)
{
    *j = (one_job){.p = p, .argv = {a0, a1, a2}, .argc = a2 ? 3 : a1 ? 2 : 1};
    CU_ASSERT_FATAL(pthread_create(t, NULL, run_one, j) == 0);
}

static long long int_of(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
}

/* ---- many threads: each gets its own replies, in order ---- */

#define THREADS 16
#define PER     300

typedef struct incr_thread {
    daebus__redis_pub *p;
    int idx;
    int wrong;         /* a reply of its own key out of sequence */
    int failed;        /* calls that did not return 0 */
    long long *shared; /* the shared counter's values it got */
} incr_thread;

static void *incr_main(void *arg)
{
    incr_thread *t = arg;
    char key[32];
    snprintf(key, sizeof key, "batch:own:%d", t->idx);
    const char *a1[2] = {"INCR", key}, *a2[2] = {"INCR", "batch:shared"};
    size_t l1[2] = {4, strlen(key)}, l2[2] = {4, 12};
    daebus__redis_cmd cmds[2] = {{2, a1, l1}, {2, a2, l2}};
    for (int i = 0; i < PER; i++) {
        redisReply *r[2] = {NULL, NULL};
        if (daebus__redis_pub_pipeline(t->p, cmds, 2, r) != 0) {
            t->failed++;
            continue;
        }
        if (int_of(r[0]) != i + 1)
            t->wrong++;
        t->shared[i] = int_of(r[1]);
        freeReplyObject(r[0]);
        freeReplyObject(r[1]);
    }
    return NULL;
}

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

static void test_threads_get_their_replies(void)
{
    daebus__redis_pub *p = pool(2);
    CU_ASSERT_FATAL(p != NULL);
    freeReplyObject(raw_cmd("DEL %s", "batch:shared"));
    long long *shared = calloc(THREADS * PER, sizeof *shared);
    incr_thread ts[THREADS];
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) {
        char key[32];
        snprintf(key, sizeof key, "batch:own:%d", i);
        freeReplyObject(raw_cmd("DEL %s", key));
        ts[i] = (incr_thread){.p = p, .idx = i, .shared = shared + i * PER};
        pthread_create(&th[i], NULL, incr_main, &ts[i]);
    }
    int wrong = 0, failed = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        wrong += ts[i].wrong;
        failed += ts[i].failed;
    }
    CU_ASSERT_EQUAL(failed, 0);
    CU_ASSERT_EQUAL(wrong, 0);
    /* The shared counter's values: each handed to exactly one job. */
    qsort(shared, THREADS * PER, sizeof *shared, cmp_ll);
    int gaps = 0;
    for (int i = 0; i < THREADS * PER; i++)
        gaps += shared[i] != i + 1;
    CU_ASSERT_EQUAL(gaps, 0);
    unsigned long long writes, cmds;
    daebus__redis_pub_counts(p, &writes, &cmds);
    CU_ASSERT_EQUAL(cmds, 2ULL * THREADS * PER);
    fprintf(stderr, "\n  %llu commands in %llu writes\n", cmds, writes);
    CU_ASSERT(writes < cmds / 2); /* some jobs went out together (2 commands a job) */
    free(shared);
    daebus__redis_pub_destroy(p);
}

/* ---- a queue that forms behind a busy connection goes out in one write ---- */

static void test_queue_is_one_write(void)
{
    daebus__redis_pub *p = pool(1);
    freeReplyObject(raw_cmd("DEL %s", "batch:q"));
    pthread_t tb, tq[6];
    one_job b, q[6];
    start_one(&tb, &b, p, "BLPOP", "batch:block1", "3");
    ts_sleep_ms(150); /* b owns the connection, blocked in Redis */
    unsigned long long w0, c0, w1, c1;
    daebus__redis_pub_counts(p, &w0, &c0);
    for (int i = 0; i < 6; i++)
        start_one(&tq[i], &q[i], p, "INCR", "batch:q", NULL);
    ts_sleep_ms(200); /* all six queued */
    freeReplyObject(raw_cmd("LPUSH batch:block1 %s", "go"));
    pthread_join(tb, NULL);
    CU_ASSERT_EQUAL(b.rc, 0);
    CU_ASSERT(b.reply && b.reply->type == REDIS_REPLY_ARRAY);
    int seen = 0;
    for (int i = 0; i < 6; i++) {
        pthread_join(tq[i], NULL);
        CU_ASSERT_EQUAL(q[i].rc, 0);
        long long v = int_of(q[i].reply);
        CU_ASSERT(v >= 1 && v <= 6);
        if (v >= 1 && v <= 6)
            seen |= 1 << (v - 1);
        if (q[i].reply)
            freeReplyObject(q[i].reply);
    }
    CU_ASSERT_EQUAL(seen, 0x3f); /* six distinct replies */
    daebus__redis_pub_counts(p, &w1, &c1);
    CU_ASSERT_EQUAL(w1 - w0, 1); /* the six INCRs: one write */
    CU_ASSERT_EQUAL(c1 - c0, 6);
    if (b.reply)
        freeReplyObject(b.reply);
    daebus__redis_pub_destroy(p);
}

/* ---- asynchronous PUBLISH ---- */

typedef struct sent_log {
    atomic_int calls;
    atomic_int sum;
    atomic_int econn;
} sent_log;

static void on_sent(void *arg, int result)
{
    sent_log *l = arg;
    if (result == DAEBUS_ECONN)
        atomic_fetch_add(&l->econn, 1);
    else
        atomic_fetch_add(&l->sum, result);
    atomic_fetch_add(&l->calls, 1);
}

static void test_async_publish(void)
{
    daebus__redis_pub *p = pool(1);
    redisContext *sub = raw_subscribe(redis.port, "batch:chan");
    CU_ASSERT_FATAL(sub != NULL);
    sent_log l = {0};
    for (int i = 0; i < 50; i++)
        CU_ASSERT_EQUAL(daebus__redis_publish_async(p, "batch:chan", "m", 1, on_sent, &l), 0);
    for (int i = 0; i < 10; i++)
        CU_ASSERT_EQUAL(daebus__redis_publish_async(p, "batch:nobody", "m", 1, on_sent, &l), 0);
    CU_ASSERT(daebus__redis_pub_unread(p) > 0);
    CU_ASSERT_EQUAL(atomic_load(&l.calls), 0); /* nobody read the replies yet */
    CU_ASSERT_EQUAL(daebus__redis_pub_collect(p, true), 0);
    CU_ASSERT_EQUAL(atomic_load(&l.calls), 60);
    CU_ASSERT_EQUAL(atomic_load(&l.sum), 50); /* one receiver each on batch:chan, none else */
    CU_ASSERT_EQUAL(atomic_load(&l.econn), 0);
    for (int i = 0; i < 50; i++) {
        char *m = raw_next(sub);
        CU_ASSERT(m && strcmp(m, "m") == 0);
        free(m);
    }
    /* Without waiting: read once they are there; a blocking call reads them first. */
    CU_ASSERT_EQUAL(daebus__redis_publish_async(p, "batch:chan", "n", 1, on_sent, &l), 0);
    TS_WAIT_UNTIL(daebus__redis_pub_collect(p, false) == 0, 2);
    CU_ASSERT_EQUAL(atomic_load(&l.calls), 61);
    CU_ASSERT_EQUAL(daebus__redis_publish_async(p, "batch:chan", "o", 1, on_sent, &l), 0);
    CU_ASSERT_EQUAL(daebus__redis_publish(p, "batch:chan", "p", 1), 1);
    CU_ASSERT_EQUAL(atomic_load(&l.calls), 62);
    CU_ASSERT_EQUAL(daebus__redis_pub_unread(p), 0);
    /* Unread at close: completed with DAEBUS_ECONN; then DAEBUS_ECLOSED, fn not called. */
    CU_ASSERT_EQUAL(daebus__redis_publish_async(p, "batch:chan", "q", 1, on_sent, &l), 0);
    daebus__redis_pub_close(p);
    CU_ASSERT_EQUAL(atomic_load(&l.calls), 63);
    CU_ASSERT_EQUAL(atomic_load(&l.econn), 1);
    CU_ASSERT_EQUAL(daebus__redis_publish_async(p, "batch:chan", "r", 1, on_sent, &l),
                    DAEBUS_ECLOSED);
    CU_ASSERT_EQUAL(atomic_load(&l.calls), 63);
    daebus__redis_pub_destroy(p);
    redisFree(sub);
}

/* ---- held PUBLISHes: one write when flushed ---- */

static void test_publish_later(void)
{
    daebus__redis_pub *p = pool(1);
    redisContext *sub = raw_subscribe(redis.port, "batch:held");
    CU_ASSERT_FATAL(sub != NULL);
    CU_ASSERT_EQUAL(daebus__redis_publish(p, "batch:held", "0", 1), 1); /* connected */
    sent_log l = {0};
    unsigned long long w0, c0, w1, c1;
    daebus__redis_pub_counts(p, &w0, &c0);
    char m[8];
    for (int i = 1; i <= 5; i++) {
        snprintf(m, sizeof m, "%d", i);
        CU_ASSERT_EQUAL(daebus__redis_publish_later(p, "batch:held", m, 1, on_sent, &l), 0);
    }
    CU_ASSERT(daebus__redis_pub_held(p));
    ts_sleep_ms(100);
    daebus__redis_pub_counts(p, &w1, &c1);
    CU_ASSERT_EQUAL(w1 - w0, 0); /* nothing written yet */
    CU_ASSERT_EQUAL(daebus__redis_pub_flush(p), 0);
    CU_ASSERT(!daebus__redis_pub_held(p));
    daebus__redis_pub_counts(p, &w1, &c1);
    CU_ASSERT_EQUAL(w1 - w0, 1); /* five PUBLISHes, one write */
    CU_ASSERT_EQUAL(c1 - c0, 5);
    char *first = raw_next(sub); /* "0", then 1..5 in order */
    CU_ASSERT(first && strcmp(first, "0") == 0);
    free(first);
    for (int i = 1; i <= 5; i++) {
        char *got = raw_next(sub);
        snprintf(m, sizeof m, "%d", i);
        CU_ASSERT(got && strcmp(got, m) == 0);
        free(got);
    }
    CU_ASSERT_EQUAL(daebus__redis_pub_collect(p, true), 0);
    CU_ASSERT_EQUAL(atomic_load(&l.sum), 5);
    /* A blocking call writes what is held before its own command. */
    CU_ASSERT_EQUAL(daebus__redis_publish_later(p, "batch:held", "6", 1, on_sent, &l), 0);
    CU_ASSERT_EQUAL(daebus__redis_publish(p, "batch:held", "7", 1), 1);
    CU_ASSERT(!daebus__redis_pub_held(p));
    CU_ASSERT_EQUAL(atomic_load(&l.calls), 6);
    for (int i = 6; i <= 7; i++) {
        char *got = raw_next(sub);
        snprintf(m, sizeof m, "%d", i);
        CU_ASSERT(got && strcmp(got, m) == 0);
        free(got);
    }
    /* Held at close: never sent, completed with DAEBUS_ECONN. */
    CU_ASSERT_EQUAL(daebus__redis_publish_later(p, "batch:held", "8", 1, on_sent, &l), 0);
    daebus__redis_pub_destroy(p);
    CU_ASSERT_EQUAL(atomic_load(&l.calls), 7);
    CU_ASSERT_EQUAL(atomic_load(&l.econn), 1);
    redisFree(sub);
}

/* ---- a connection lost with a batch in flight ---- */

typedef struct async_job {
    daebus__redis_pub *p;
    sent_log *l;
    int rc;
} async_job;

static void *run_async(void *arg)
{
    async_job *a = arg;
    a->rc = daebus__redis_publish_async(a->p, "batch:chan", "x", 1, on_sent, a->l);
    return NULL;
}

/* CLIENT ID of the connection blocked in BLPOP, from CLIENT LIST. */
static long long blocked_client(void)
{
    redisReply *r = raw_cmd("CLIENT LIST", NULL);
    long long id = -1;
    for (char *line = r && r->str ? r->str : NULL; line && *line;) {
        char *nl = strchr(line, '\n');
        char *blpop = strstr(line, "cmd=blpop");
        if (blpop && (!nl || blpop < nl) && strncmp(line, "id=", 3) == 0)
            id = atoll(line + 3);
        line = nl ? nl + 1 : NULL;
    }
    if (r)
        freeReplyObject(r);
    return id;
}

static void test_lost_mid_batch(void)
{
    daebus__redis_pub *p = pool(1);
    sent_log l = {0};
    pthread_t ta, tb, tc, tm;
    one_job a, b, c;
    async_job m = {p, &l, -99};
    start_one(&ta, &a, p, "BLPOP", "batch:k1", "4"); /* owns the connection */
    ts_sleep_ms(150);
    start_one(&tb, &b, p, "BLPOP", "batch:k2", "4"); /* queued */
    ts_sleep_ms(100);
    pthread_create(&tm, NULL, run_async, &m); /* queued behind b: same batch */
    ts_sleep_ms(100);
    freeReplyObject(raw_cmd("LPUSH batch:k1 %s", "go"));
    pthread_join(ta, NULL);
    CU_ASSERT_EQUAL(a.rc, 0);
    /* b's batch is written (b's BLPOP, then m's PUBLISH): m returns at once, its
     * reply unread, Redis blocked in b's BLPOP. */
    pthread_join(tm, NULL);
    CU_ASSERT_EQUAL(m.rc, 0);
    ts_sleep_ms(100);
    CU_ASSERT_EQUAL(atomic_load(&l.calls), 0);
    start_one(&tc, &c, p, "INCR", "batch:after", NULL); /* queued behind b: not written */
    ts_sleep_ms(100);
    unsigned faults = daebus__redis_faults();
    long long id = blocked_client();
    CU_ASSERT_FATAL(id > 0);
    redisReply *k = NULL;
    {
        char cmd[64];
        snprintf(cmd, sizeof cmd, "CLIENT KILL ID %lld", id);
        redisContext *rc = raw_connect(redis.port);
        k = redisCommand(rc, cmd);
        redisFree(rc);
    }
    CU_ASSERT(int_of(k) == 1);
    if (k)
        freeReplyObject(k);
    pthread_join(tb, NULL);
    pthread_join(tc, NULL);
    CU_ASSERT_EQUAL(b.rc, DAEBUS_ECONN); /* its command was lost */
    CU_ASSERT_PTR_NULL(b.reply);
    CU_ASSERT_EQUAL(atomic_load(&l.calls), 1); /* m's PUBLISH was lost with it */
    CU_ASSERT_EQUAL(atomic_load(&l.econn), 1);
    CU_ASSERT_EQUAL(c.rc, 0); /* written after: on a new connection */
    CU_ASSERT_EQUAL(int_of(c.reply), 1);
    CU_ASSERT(daebus__redis_faults() != faults);
    if (a.reply)
        freeReplyObject(a.reply);
    if (c.reply)
        freeReplyObject(c.reply);
    daebus__redis_pub_destroy(p);
}

/* ---- close with threads queued ---- */

typedef struct closer {
    daebus__redis_pub *p;
    double took;
} closer;

static void *run_close(void *arg)
{
    closer *c = arg;
    double t0 = ts_now();
    daebus__redis_pub_close(c->p);
    c->took = ts_now() - t0;
    return NULL;
}

static void test_close_with_waiters(void)
{
    daebus__redis_pub *p = pool(1);
    sent_log l = {0};
    pthread_t ta, tq[4], tm, tc;
    one_job a, q[4];
    async_job m = {p, &l, -99};
    start_one(&ta, &a, p, "BLPOP", "batch:k3", "4");
    ts_sleep_ms(150);
    for (int i = 0; i < 4; i++)
        start_one(&tq[i], &q[i], p, "INCR", "batch:closed", NULL);
    pthread_create(&tm, NULL, run_async, &m);
    ts_sleep_ms(150);
    closer cl = {p, 0};
    pthread_create(&tc, NULL, run_close, &cl);
    ts_sleep_ms(150);
    CU_ASSERT(daebus__redis_publish(p, "batch:chan", "x", 1) == DAEBUS_ECLOSED);
    freeReplyObject(raw_cmd("LPUSH batch:k3 %s", "go")); /* a's batch ends */
    pthread_join(tc, NULL);
    pthread_join(ta, NULL);
    CU_ASSERT_EQUAL(a.rc, 0); /* running when the close came: its result */
    for (int i = 0; i < 4; i++) {
        pthread_join(tq[i], NULL);
        CU_ASSERT_EQUAL(q[i].rc, DAEBUS_ECLOSED);
        CU_ASSERT_PTR_NULL(q[i].reply);
    }
    pthread_join(tm, NULL);
    CU_ASSERT_EQUAL(m.rc, DAEBUS_ECLOSED);
    CU_ASSERT_EQUAL(atomic_load(&l.calls), 0); /* refused: never called */
    CU_ASSERT(cl.took < 3.0);
    redisReply *r = raw_cmd("GET %s", "batch:closed");
    CU_ASSERT(r && r->type == REDIS_REPLY_NIL); /* none of the queued INCRs ran */
    if (r)
        freeReplyObject(r);
    if (a.reply)
        freeReplyObject(a.reply);
    daebus__redis_pub_destroy(p);
}

/* ---- the caller: requests made in its callbacks ---- */

ACTION(pb_echo, "echo")
{
    return daebus_bus_reply(req, payload);
}

typedef struct chain {
    daebus_caller *c;
    atomic_int left, ok, nolistener, other;
    double t_issue, t_nolistener;
} chain;

static void chain_done(daebus_caller *c, int status, const cJSON *payload, const char *msg,
                       void *user);

static void nobody_done(daebus_caller *c, int status, const cJSON *payload, const char *msg,
                        void *user)
{
    (void)c;
    (void)payload;
    (void)msg;
    chain *ch = user;
    ch->t_nolistener = ts_now();
    if (status == DAEBUS_ENOLISTENER)
        atomic_fetch_add(&ch->nolistener, 1);
    else
        atomic_fetch_add(&ch->other, 1);
}

static void chain_done(daebus_caller *c, int status, const cJSON *payload, const char *msg,
                       void *user)
{
    (void)payload;
    (void)msg;
    chain *ch = user;
    if (status == 0)
        atomic_fetch_add(&ch->ok, 1);
    else
        atomic_fetch_add(&ch->other, 1);
    int prev = atomic_fetch_sub(&ch->left, 1);
    if (prev > 1) {
        /* on the caller's subscriber thread: published without waiting */
        if (daebus_caller_request_async(c, "pb_svc", "echo", NULL, 5.0, chain_done, NULL, ch,
                                        NULL) != 0)
            atomic_fetch_add(&ch->other, 1);
    } else if (prev == 1) {
        ch->t_issue = ts_now();
        if (daebus_caller_request_async(c, "pb_nobody", "echo", NULL, 5.0, nobody_done, NULL, ch,
                                        NULL) != 0)
            atomic_fetch_add(&ch->other, 1);
    }
}

static void test_caller_requests_in_callbacks(void)
{
    daebus_app *app = start_app("pb_svc", redis.url, 4, NULL, NULL);
    CU_ASSERT_FATAL(app != NULL);
    daebus_caller *c = daebus_caller_create(redis.url, NULL, NULL);
    CU_ASSERT_FATAL(c != NULL);
    chain ch = {.c = c};
    atomic_store(&ch.left, 400);
    for (int i = 0; i < 8; i++) /* 8 chains in flight, 400 requests in all */
        CU_ASSERT_EQUAL(daebus_caller_request_async(c, "pb_svc", "echo", NULL, 5.0, chain_done,
                                                    NULL, &ch, NULL),
                        0);
    TS_WAIT_UNTIL(atomic_load(&ch.nolistener) + atomic_load(&ch.other) >= 1 &&
                      atomic_load(&ch.ok) + atomic_load(&ch.other) >= 407,
                  20);
    CU_ASSERT_EQUAL(atomic_load(&ch.ok), 407);
    CU_ASSERT_EQUAL(atomic_load(&ch.other), 0);
    /* The last one reached nobody: failed at once, not at its 5 s time-out. */
    TS_WAIT_UNTIL(atomic_load(&ch.nolistener) == 1, 6);
    CU_ASSERT_EQUAL(atomic_load(&ch.nolistener), 1);
    CU_ASSERT(ch.t_nolistener - ch.t_issue < 0.5);
    daebus_caller_destroy(c);
    ts_app_stop(app);
}

int main(void)
{
    daebus_log_set_level(DAEBUS_LOG_ERROR);
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("publisher batches", init, cleanup);
    CU_add_test(s, "many threads each get their own replies", test_threads_get_their_replies);
    CU_add_test(s, "a queue behind a busy connection is one write", test_queue_is_one_write);
    CU_add_test(s, "asynchronous PUBLISH: counts read later", test_async_publish);
    CU_add_test(s, "held PUBLISHes go out in one write", test_publish_later);
    CU_add_test(s, "a lost connection fails exactly the commands in flight", test_lost_mid_batch);
    CU_add_test(s, "close with threads queued", test_close_with_waiters);
    CU_add_test(s, "caller: requests made in callbacks", test_caller_requests_in_callbacks);
    return ts_run_cunit();
}
