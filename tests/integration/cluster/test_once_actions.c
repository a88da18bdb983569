/* test_once_actions.c - actions and LISTEN .once exactly once across replicas
 * (docs/replicas.md, "Actions exactly once").
 *
 * Real once_service replicas on a private redis-server, heartbeat 1 s:
 * - one replica alone answers without a claim; a second one joining under
 *   load runs no request twice;
 * - three replicas, 10,000 requests from a redis-py caller, the C caller and
 *   daebus-call at once while a fourth replica joins and one stops
 *   gracefully: one reply per request_id, one handler run per request;
 *   fire-and-forget requests (no request_id), identical ones included, run
 *   once each;
 * - LISTEN .once: one run per message; LISTEN without it: one per replica;
 * - error replies made without a handler (unknown action, malformed JSON):
 *   one per request;
 * - a full worker queue: a replica in claim mode leaves the request to one
 *   with room (no "overloaded" while one has room); with every replica full,
 *   one of them answers "overloaded"; a solo replica answers it at once. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "once_fixture.h"

#define HB "1"

static int init(void)
{
    return once_setup("once_actions");
}

static int cleanup(void)
{
    once_teardown();
    return 0;
}

static int runs_of(char kind, const char *prefix)
{
    once_runs *r = once_runs_load();
    int n = once_runs_prefix(r, kind, prefix);
    once_runs_free(r);
    return n;
}

/* Every id prefix-0 .. prefix-(n-1) of kind ran exactly `each` times. */
static int each_ran(char kind, const char *prefix, int n, int each)
{
    once_runs *r = once_runs_load();
    int bad = 0;
    char id[64];
    for (int i = 0; i < n; i++) {
        snprintf(id, sizeof id, "%s-%d", prefix, i);
        int c = once_runs_count(r, kind, id);
        if (c != each && bad++ < 5)
            printf("\n  %c %s ran %d time(s), not %d", kind, id, c, each);
    }
    once_runs_free(r);
    return bad == 0;
}

static void test_solo_then_join(void)
{
    once_start(0, HB);
    CU_ASSERT_FATAL(once_all_ready(10));
    once_load l;
    CU_ASSERT_EQUAL_FATAL(once_load_start(&l, 300, "s", 16, 5), 0);
    once_load_join(&l);
    CU_ASSERT_EQUAL(atomic_load(&l.ok), 300);
    CU_ASSERT_TRUE(each_ran('a', "s", 300, 1));
    /* Alone: no claim made at all. */
    CU_ASSERT_EQUAL(once_metric(0, "daebus_bus_solo"), 1);
    CU_ASSERT_EQUAL(once_metric(0, "daebus_bus_claims_won_total"), 0);
    CU_ASSERT_EQUAL(once_metric(0, "daebus_bus_claims_lost_total"), 0);
    CU_ASSERT_EQUAL(once_metric(0, "daebus_bus_requests_handled_total"), 300);

    /* A second replica joins while requests keep coming. */
    CU_ASSERT_EQUAL_FATAL(once_load_start(&l, 6000, "j", 16, 5), 0);
    ts_sleep_ms(300);
    once_start(1, HB);
    CU_ASSERT(once_all_ready(10));
    once_load_join(&l);
    CU_ASSERT_EQUAL(atomic_load(&l.ok), 6000);
    CU_ASSERT_TRUE(each_ran('a', "j", 6000, 1));
    CU_ASSERT_EQUAL(once_metric(0, "daebus_bus_solo"), 0);
    double won0 = once_metric(0, "daebus_bus_claims_won_total"),
           won1 = once_metric(1, "daebus_bus_claims_won_total");
    /* The first replica was the primary from its start (alone, it offered
     * itself): the joiner knew it from its join and left it the requests. */
    double taken0 = once_metric(0, "daebus_bus_primary_taken_total"),
           covered1 = once_metric(1, "daebus_bus_covered_total");
    printf("\n  6000 requests while a second replica joined: claims won %.0f + %.0f, taken by the "
           "primary without a claim %.0f, left by the joiner %.0f, runs %d\n",
           won0, won1, taken0, covered1, runs_of('a', "j-"));
    CU_ASSERT_EQUAL(once_metric(0, "daebus_bus_primary"), 1);
    CU_ASSERT_EQUAL(once_metric(1, "daebus_bus_primary"), 0);
    CU_ASSERT(taken0 > 0);
    CU_ASSERT(covered1 > 0);
}

static void test_ten_thousand(void)
{
    once_start(2, HB);
    CU_ASSERT_FATAL(once_all_ready(10));
    pid_t py = once_python("req", ONCE_SERVICE, 5000, "p", 32, 5);
    pid_t ff = once_python("ff", ONCE_SERVICE, 300, "fu", 1, 5);
    pid_t sh = once_daebus_call(200, "d");
    once_load l;
    CU_ASSERT_EQUAL_FATAL(once_load_start(&l, 4800, "c", 32, 5), 0);
    double t0 = ts_now();
    ts_sleep_ms(700);
    once_start(3, HB); /* a fourth replica joins */
    CU_ASSERT(once_all_ready(10));
    ts_sleep_ms(300);
    once_reap(0, SIGTERM); /* one leaves gracefully */
    cJSON *pr = once_python_wait(py, 60);
    cJSON *fr = once_python_wait(ff, 60);
    int calls = once_shell_wait(sh, "d", 60);
    once_load_join(&l);
    double took = ts_now() - t0;
    CU_ASSERT_PTR_NOT_NULL_FATAL(pr);
    CU_ASSERT_PTR_NOT_NULL_FATAL(fr);
    /* redis-py: one final reply per request_id, none missing. */
    CU_ASSERT_EQUAL(cJSON_GetObjectItem(pr, "answered")->valueint, 5000);
    CU_ASSERT_EQUAL(cJSON_GetObjectItem(pr, "dups")->valueint, 0);
    CU_ASSERT_EQUAL(cJSON_GetObjectItem(pr, "errors")->valueint, 0);
    CU_ASSERT_EQUAL(cJSON_GetArraySize(cJSON_GetObjectItem(pr, "unanswered")), 0);
    CU_ASSERT_EQUAL(atomic_load(&l.ok), 4800);
    CU_ASSERT_EQUAL(calls, 200);
    /* One handler run per request across the replicas. */
    CU_ASSERT_TRUE(each_ran('a', "p", 5000, 1));
    CU_ASSERT_TRUE(each_ran('a', "c", 4800, 1));
    CU_ASSERT_TRUE(each_ran('a', "d", 200, 1));
    /* Fire-and-forget: 300 distinct and 300 identical messages, each once. */
    TS_WAIT_UNTIL(runs_of('a', "fu-") >= 600, 5);
    ts_sleep_ms(300);
    CU_ASSERT_TRUE(each_ran('a', "fu", 300, 1));
    once_runs *r = once_runs_load();
    CU_ASSERT_EQUAL(once_runs_count(r, 'a', "fu-same"), 300);
    once_runs_free(r);
    printf("\n  10,000 requests (redis-py 5000, C 4800, daebus-call 200) + 600 fire-and-forget "
           "in %.1f s while a replica joined and one left",
           took);
    cJSON_Delete(pr);
    cJSON_Delete(fr);
}

static void test_listen_once_and_all(void)
{
    /* Replicas 1, 2 and 3 are up. */
    CU_ASSERT_FATAL(once_all_ready(10));
    pid_t q = once_python("pub", "once_test.queue", 300, "lq", 1, 5);
    pid_t b = once_python("pub", "once_test.all", 100, "lb", 1, 5);
    cJSON *qr = once_python_wait(q, 30), *br = once_python_wait(b, 30);
    CU_ASSERT_PTR_NOT_NULL(qr);
    CU_ASSERT_PTR_NOT_NULL(br);
    TS_WAIT_UNTIL(runs_of('q', "lq-") >= 300 && runs_of('b', "lb-") >= 300, 10);
    ts_sleep_ms(300);
    CU_ASSERT_TRUE(each_ran('q', "lq", 300, 1)); /* .once: one replica each */
    CU_ASSERT_TRUE(each_ran('b', "lb", 100, 3)); /* broadcast: every replica */
    printf("\n  LISTEN .once: %d runs for 300 messages; LISTEN: %d runs for 100 messages on 3 "
           "replicas",
           runs_of('q', "lq-"), runs_of('b', "lb-"));
    cJSON_Delete(qr);
    cJSON_Delete(br);
}

static int jint(const cJSON *o, const char *k)
{
    return cJSON_GetObjectItem(o, k) ? cJSON_GetObjectItem(o, k)->valueint : -1;
}

static void test_error_replies_once(void)
{
    pid_t u = once_python("unknown", ONCE_SERVICE, 200, "u", 32, 5);
    pid_t m = once_python("malformed", ONCE_SERVICE, 200, "m", 32, 5);
    cJSON *ur = once_python_wait(u, 30), *mr = once_python_wait(m, 30);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ur);
    CU_ASSERT_PTR_NOT_NULL_FATAL(mr);
    CU_ASSERT_EQUAL(jint(ur, "answered"), 200);
    CU_ASSERT_EQUAL(jint(ur, "errors"), 200);
    CU_ASSERT_EQUAL(jint(ur, "dups"), 0);
    CU_ASSERT_EQUAL(jint(mr, "answered"), 200);
    CU_ASSERT_EQUAL(jint(mr, "errors"), 200);
    CU_ASSERT_EQUAL(jint(mr, "dups"), 0);
    cJSON_Delete(ur);
    cJSON_Delete(mr);
}

/* Requests that sleep 50 ms each, 40 in flight, through the python caller. */
static cJSON *slow_burst(int n, const char *prefix)
{
    setenv("ONCE_SLEEP_MS", "50", 1);
    pid_t p = once_python("req", ONCE_SERVICE, n, prefix, 40, 10);
    unsetenv("ONCE_SLEEP_MS");
    return once_python_wait(p, 60);
}

static void test_full_queue(void)
{
    /* Replicas 1, 2, 3 (10 workers each) and 4: one worker, a queue of one. */
    setenv("ONCE_WORKERS", "1", 1);
    setenv("ONCE_QUEUE", "1", 1);
    once_start(4, HB);
    CU_ASSERT_FATAL(once_all_ready(10));
    cJSON *r = slow_burst(200, "o");
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL(jint(r, "answered"), 200);
    CU_ASSERT_EQUAL(jint(r, "overloaded"), 0); /* the others had room */
    CU_ASSERT_EQUAL(jint(r, "dups"), 0);
    /* The busy replica claims its share late (its one worker is busy): the
     * others take most of it. */
    CU_ASSERT(once_metric(4, "daebus_bus_requests_handled_total") < 50);
    CU_ASSERT_TRUE(each_ran('a', "o", 200, 1));
    cJSON_Delete(r);
    /* Only tiny replicas: every queue full, one answer each. */
    once_start(5, HB);
    for (int i = 1; i <= 3; i++)
        once_reap(i, SIGTERM);
    CU_ASSERT_FATAL(once_all_ready(10));
    TS_WAIT_UNTIL(once_metric(4, "daebus_bus_solo") == 0 && once_metric(5, "daebus_bus_solo") == 0,
                  5);
    r = slow_burst(100, "o2");
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL(jint(r, "answered"), 100);
    CU_ASSERT(jint(r, "overloaded") > 0);
    CU_ASSERT_EQUAL(jint(r, "dups"), 0);
    CU_ASSERT_EQUAL(jint(r, "errors"), jint(r, "overloaded"));
    printf("\n  two replicas with one worker each: %d of 100 answered \"overloaded\", once each",
           jint(r, "overloaded"));
    cJSON_Delete(r);
    /* Alone: "overloaded" at once, without claims. */
    once_reap(5, SIGTERM);
    TS_WAIT_UNTIL(once_metric(4, "daebus_bus_solo") == 1, 5);
    CU_ASSERT_EQUAL(once_metric(4, "daebus_bus_solo"), 1);
    double won = once_metric(4, "daebus_bus_claims_won_total"),
           lost = once_metric(4, "daebus_bus_claims_lost_total");
    r = slow_burst(50, "o3");
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL(jint(r, "answered"), 50);
    CU_ASSERT(jint(r, "overloaded") > 0);
    CU_ASSERT_EQUAL(once_metric(4, "daebus_bus_claims_won_total"), won);
    CU_ASSERT_EQUAL(once_metric(4, "daebus_bus_claims_lost_total"), lost);
    cJSON_Delete(r);
    unsetenv("ONCE_WORKERS");
    unsetenv("ONCE_QUEUE");
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("once actions", init, cleanup);
    CU_add_test(s, "solo: no claim; a second replica joins under load", test_solo_then_join);
    CU_add_test(s, "10,000 requests, a replica joins, one leaves", test_ten_thousand);
    CU_add_test(s, "LISTEN with and without .once", test_listen_once_and_all);
    CU_add_test(s, "unknown action, malformed: one error reply", test_error_replies_once);
    CU_add_test(s, "full worker queues", test_full_queue);
    return ts_run_cunit();
}
