/* The claim line (framework/redis/redis_line.h) against a private
 * redis-server: commands sent now and answered later, tickets waited for
 * out of order (the replies read for others are kept for them), a ticket
 * taken once, four threads sending and waiting at once (each reply goes to
 * its own ticket), nothing sent while the line is down, Redis killed (the
 * tickets not answered fail, sends fail at once) and back (repair), Redis
 * restarted while the line was idle (found closed before a send), answers
 * read by a pump (without blocking, part of a ticket kept) and the time each
 * answer came. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "clock.h"
#include "daebus/daebus.h"
#include "redis_fixture.h"

static unsigned long long send1(daebus__redis_line *l, const char *a0, const char *a1)
{
    const char *argv[2] = {a0, a1};
    size_t len[2] = {strlen(a0), a1 ? strlen(a1) : 0};
    daebus__redis_cmd c = {a1 ? 2 : 1, argv, len};
    return daebus__redis_line_send(l, &c, 1);
}

/* The integer reply of ticket t, or -1. */
static long long wait_int(daebus__redis_line *l, unsigned long long t)
{
    redisReply *r = NULL;
    if (daebus__redis_line_wait(l, t, &r, 1) != 0)
        return -1;
    long long v = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    return v;
}

static void test_out_of_order(void)
{
    daebus__redis_line *l = line_new();
    CU_ASSERT_EQUAL(send1(l, "PING", NULL), 0); /* down until repaired: nothing sent */
    daebus__redis_line_repair(l);
    unsigned long long t[5];
    for (int i = 0; i < 5; i++)
        t[i] = send1(l, "INCR", "line:a");
    CU_ASSERT(t[0] > 0 && t[4] == t[0] + 4);
    CU_ASSERT_EQUAL(daebus__redis_line_last(l), t[4]);
    CU_ASSERT_EQUAL(wait_int(l, t[3]), 4); /* reads 1..4, keeps 1..3 */
    CU_ASSERT_EQUAL(wait_int(l, t[0]), 1);
    CU_ASSERT_EQUAL(wait_int(l, t[4]), 5);
    CU_ASSERT_EQUAL(wait_int(l, t[2]), 3);
    CU_ASSERT_EQUAL(wait_int(l, t[1]), 2);
    CU_ASSERT_EQUAL(wait_int(l, t[1]), -1); /* taken once */
    /* two commands, one ticket */
    const char *a[2][2] = {{"INCR", "line:b"}, {"INCR", "line:b"}};
    size_t n[2] = {4, 6};
    daebus__redis_cmd c[2] = {{2, a[0], n}, {2, a[1], n}};
    unsigned long long u = daebus__redis_line_send(l, c, 2);
    redisReply *r[2] = {NULL, NULL};
    CU_ASSERT_EQUAL_FATAL(daebus__redis_line_wait(l, u, r, 2), 0);
    CU_ASSERT(r[0]->integer == 1 && r[1]->integer == 2);
    freeReplyObject(r[0]);
    freeReplyObject(r[1]);
    daebus__redis_line_destroy(l);
}

/* Shared waits (the primary's markers): several waiters per ticket, the
 * replies left in place; an error reply fails the wait; "answered" never
 * reads. */
static void test_shared_waits(void)
{
    daebus__redis_line *l = line_new();
    daebus__redis_line_repair(l);
    unsigned long long a = send1(l, "INCR", "line:s"), b = send1(l, "INCR", "line:s");
    unsigned long long bad = send1(l, "NOSUCHCOMMAND", NULL);
    CU_ASSERT_FATAL(a > 0 && b == a + 1 && bad == b + 1);
    CU_ASSERT_FALSE(daebus__redis_line_answered(l, a)); /* nobody has read yet */
    CU_ASSERT_EQUAL(daebus__redis_line_wait_shared(l, b), 0);
    CU_ASSERT_TRUE(daebus__redis_line_answered(l, a));
    CU_ASSERT_TRUE(daebus__redis_line_answered(l, b));
    CU_ASSERT_FALSE(daebus__redis_line_answered(l, bad));
    CU_ASSERT_EQUAL(daebus__redis_line_wait_shared(l, b), 0); /* again: still there */
    CU_ASSERT_EQUAL(daebus__redis_line_wait_shared(l, a), 0);
    CU_ASSERT_EQUAL(wait_int(l, b), 2); /* a taking wait after shared ones */
    CU_ASSERT_EQUAL(daebus__redis_line_wait_shared(l, bad), DAEBUS_ECONN); /* error reply */
    CU_ASSERT_EQUAL(daebus__redis_line_wait_shared(l, 0), DAEBUS_ECONN);
    daebus__redis_line_destroy(l);
}

typedef struct worker {
    daebus__redis_line *l;
    long long seen[500];
    int bad;
} worker;

static void *hammer(void *arg)
{
    worker *w = arg;
    for (int i = 0; i < 500; i += 5) {
        unsigned long long t[5];
        for (int k = 0; k < 5; k++)
            t[k] = send1(w->l, "INCR", "line:c");
        for (int k = 4; k >= 0; k--) /* newest first: another thread may read for us */
            if ((w->seen[i + k] = wait_int(w->l, t[k])) <= 0)
                w->bad++;
    }
    return NULL;
}

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

static void test_threads(void)
{
    daebus__redis_line *l = line_new();
    daebus__redis_line_repair(l);
    static worker w[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker){.l = l};
        pthread_create(&th[i], NULL, hammer, &w[i]);
    }
    long long *all = malloc(2000 * sizeof *all);
    int bad = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        bad += w[i].bad;
        memcpy(all + 500 * i, w[i].seen, sizeof w[i].seen);
        for (int k = 1; k < 500; k++) /* one thread's INCRs answer in its order */
            if (w[i].seen[k] <= w[i].seen[k - 1])
                bad++;
    }
    qsort(all, 2000, sizeof *all, cmp_ll);
    for (int k = 0; k < 2000; k++) /* every reply once: 1..2000 */
        if (all[k] != k + 1)
            bad++;
    CU_ASSERT_EQUAL(bad, 0);
    free(all);
    daebus__redis_line_destroy(l);
}

static void test_redis_killed(void)
{
    daebus__redis_line *l = line_new();
    daebus__redis_line_repair(l);
    unsigned long long ok = send1(l, "INCR", "line:d");
    CU_ASSERT_EQUAL(wait_int(l, ok), 1);
    ts_redis_kill(&redis);
    ts_sleep_ms(100);
    /* The first send may still reach the socket; its answer never comes. */
    unsigned long long t = send1(l, "INCR", "line:d");
    if (t)
        CU_ASSERT_EQUAL(wait_int(l, t), -1);
    CU_ASSERT_EQUAL(send1(l, "INCR", "line:d"), 0); /* down: at once */
    daebus__redis_line_repair(l);                   /* Redis away: still down */
    CU_ASSERT_EQUAL(send1(l, "INCR", "line:d"), 0);
    CU_ASSERT_EQUAL_FATAL(ts_redis_restart(&redis), 0);
    daebus__redis_line_repair(l);
    unsigned long long u = send1(l, "PING", NULL);
    CU_ASSERT(u > 0);
    redisReply *r = NULL;
    CU_ASSERT_EQUAL_FATAL(daebus__redis_line_wait(l, u, &r, 1), 0);
    CU_ASSERT(r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0);
    freeReplyObject(r);
    /* closed: sends fail, the line stays usable for waits already answered */
    unsigned long long v = send1(l, "PING", NULL);
    CU_ASSERT_EQUAL(daebus__redis_line_wait(l, v, NULL, 1), 0);
    daebus__redis_line_close(l);
    CU_ASSERT_EQUAL(send1(l, "PING", NULL), 0);
    CU_ASSERT_EQUAL(daebus__redis_line_wait(l, v, &r, 1), 0);
    freeReplyObject(r);
    daebus__redis_line_destroy(l);
}

/* Redis restarted while the line was idle: the next send finds the line
 * closed and sends nothing (a claim sent into the dead connection would be
 * lost); repaired, it works on the new server. */
static void test_restart_while_idle(void)
{
    daebus__redis_line *l = line_new();
    daebus__redis_line_repair(l);
    CU_ASSERT_EQUAL(wait_int(l, send1(l, "INCR", "line:e")), 1);
    ts_redis_kill(&redis);
    CU_ASSERT_EQUAL_FATAL(ts_redis_restart(&redis), 0);
    ts_sleep_ms(50);
    CU_ASSERT_EQUAL(send1(l, "INCR", "line:e"), 0);
    daebus__redis_line_repair(l);
    unsigned long long t = send1(l, "INCR", "line:e");
    CU_ASSERT(t > 0);
    CU_ASSERT(wait_int(l, t) >= 1);
    daebus__redis_line_destroy(l);
}

/* A pump reads what has arrived and nothing more, and stamps each answer
 * with the time it was read, not the time it is waited for; a ticket of
 * two commands answered in part is completed by a later wait; a pump that
 * finds the connection closed fails what is pending. */
static void test_pump(void)
{
    daebus__redis_line *l = line_new();
    CU_ASSERT_FALSE(daebus__redis_line_pump(l)); /* down, nothing sent */
    daebus__redis_line_repair(l);
    CU_ASSERT_FALSE(daebus__redis_line_pump(l)); /* nothing pending */
    double sent = daebus__now_mono(), at = 0;
    unsigned long long a = send1(l, "INCR", "line:p");
    /* the first command answered at once, the second after 400 ms */
    const char *argv[2][3] = {{"INCR", "line:p", NULL}, {"BLPOP", "line:none", "0.4"}};
    size_t len[2][3] = {{4, 6, 0}, {5, 9, 3}};
    daebus__redis_cmd c[2] = {{2, argv[0], len[0]}, {3, argv[1], len[1]}};
    unsigned long long b = daebus__redis_line_send(l, c, 2);
    CU_ASSERT_FATAL(a > 0 && b == a + 1);
    CU_ASSERT_FALSE(daebus__redis_line_answered_at(l, a, &at)); /* nobody read yet */
    ts_sleep_ms(100);
    double pumped = daebus__now_mono();
    CU_ASSERT_TRUE(daebus__redis_line_pump(l)); /* b still pending */
    CU_ASSERT_TRUE(daebus__redis_line_answered(l, a));
    CU_ASSERT_FALSE(daebus__redis_line_answered(l, b)); /* one of its two replies read */
    CU_ASSERT_TRUE_FATAL(daebus__redis_line_answered_at(l, a, &at));
    CU_ASSERT(at >= sent && at <= daebus__now_mono() && at >= pumped - 0.001);
    double a_at = at;
    CU_ASSERT_FALSE(daebus__redis_line_answered_at(l, b, &at));
    ts_sleep_ms(100);
    CU_ASSERT_EQUAL(wait_int(l, a), 1); /* waited for later: its time stays */
    CU_ASSERT_TRUE(daebus__redis_line_answered_at(l, a, &at));
    CU_ASSERT_DOUBLE_EQUAL(at, a_at, 1e-9);
    redisReply *r[2] = {NULL, NULL};
    CU_ASSERT_EQUAL_FATAL(daebus__redis_line_wait(l, b, r, 2), 0);
    CU_ASSERT(r[0]->type == REDIS_REPLY_INTEGER && r[0]->integer == 2);
    CU_ASSERT(r[1]->type == REDIS_REPLY_NIL);
    freeReplyObject(r[0]);
    freeReplyObject(r[1]);
    CU_ASSERT_TRUE(daebus__redis_line_answered_at(l, b, &at));
    CU_ASSERT(at - sent >= 0.35);
    CU_ASSERT_FALSE(daebus__redis_line_pump(l));
    /* Redis gone under a pending ticket: the pump drops the line. */
    const char *bl[3] = {"BLPOP", "line:none", "5"};
    size_t bll[3] = {5, 9, 1};
    daebus__redis_cmd blc = {3, bl, bll};
    unsigned long long d = daebus__redis_line_send(l, &blc, 1);
    CU_ASSERT_FATAL(d > 0);
    CU_ASSERT_TRUE(daebus__redis_line_pump(l)); /* not answered yet */
    ts_redis_kill(&redis);
    ts_sleep_ms(50);
    CU_ASSERT_FALSE(daebus__redis_line_pump(l)); /* the end read: dropped */
    CU_ASSERT_TRUE(daebus__redis_line_answered(l, d));
    CU_ASSERT_FALSE(daebus__redis_line_answered_at(l, d, &at));
    CU_ASSERT_EQUAL(daebus__redis_line_wait(l, d, r, 1), DAEBUS_ECONN);
    CU_ASSERT_EQUAL(send1(l, "PING", NULL), 0); /* down */
    CU_ASSERT_EQUAL_FATAL(ts_redis_restart(&redis), 0);
    daebus__redis_line_destroy(l);
}

int main(void)
{
    daebus_log_set_level(DAEBUS_LOG_ERROR);
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("redis line", init, cleanup);
    CU_add_test(s, "tickets out of order", test_out_of_order);
    CU_add_test(s, "shared waits", test_shared_waits);
    CU_add_test(s, "four threads", test_threads);
    CU_add_test(s, "Redis killed and back", test_redis_killed);
    CU_add_test(s, "Redis restarted while idle", test_restart_while_idle);
    CU_add_test(s, "pump and answer times", test_pump);
    return ts_run_cunit();
}
