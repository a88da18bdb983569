/* test_once_failures.c - exactly once while replicas die and Redis restarts
 * (docs/replicas.md, "Actions exactly once").
 *
 * Real once_service replicas on a private redis-server, heartbeat 1 s:
 * - a replica stopped gracefully while it runs slow requests finishes what it
 *   took: every request answered once, also the ones that waited in its queue
 *   longer than 3W/4 (their marker's answer time decides, not their start);
 * - a replica killed with -9 under load: no request is answered twice or run
 *   twice; the requests it had not taken are answered by the others; the
 *   ones it took may time out (at most the requests in flight);
 * - two replicas frozen (SIGSTOP) past their window: the third goes solo and
 *   answers what is published meanwhile; when the frozen ones resume (their
 *   heartbeat may announce before their subscriber reads the backlog) they
 *   run none of it again;
 * - Redis killed and restarted on the same port under load: nothing runs
 *   twice across the outage, and once the replicas are back every request is
 *   answered exactly once (redis-py and the C caller). */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "once_fixture.h"

#define HB     "1"
#define WINDOW 32
#define N      8000

static int init(void)
{
    return once_setup("once_failures");
}

static int cleanup(void)
{
    once_teardown();
    return 0;
}

/* Requests of kind with prefix run more than once, across every replica. */
static int twice(char kind, const char *prefix)
{
    once_runs *r = once_runs_load();
    int n = once_runs_twice(r, kind, prefix);
    once_runs_free(r);
    return n;
}

static int jint(const cJSON *o, const char *k)
{
    return cJSON_GetObjectItem(o, k) ? cJSON_GetObjectItem(o, k)->valueint : -1;
}

/* What replica i has taken (as the primary or by a claim) since the counts
 * base[i], less what it has finished: the requests it runs or queues. */
static double took(int i, const double *base, const char *pre)
{
    double t = once_metric(i, "daebus_bus_primary_taken_total") +
               once_metric(i, "daebus_bus_claims_won_total") - base[i];
    return t - once_pid_runs(once_procs[i].pid, 'a', pre);
}

/* The replica with the most requests in its hands (at least 5), or -1. */
static int busiest(const double *base, const char *pre)
{
    int k = -1;
    double most = 4;
    for (int i = 0; i < 3; i++) {
        double t = took(i, base, pre);
        if (t > most)
            most = t, k = i;
    }
    return k;
}

/* Stops gracefully the replica with the most of 60 requests of sleep_ms
 * each (prefix p) in its hands, the primary's unless the primary left them
 * to claims: every one is answered once, the stopped one finishing what it
 * took (queued: more than its workers' first round). */
static void graceful_stop(const char *sleep_ms, const char *p, bool queued)
{
    char pre[8];
    snprintf(pre, sizeof pre, "%s-", p);
    for (int i = 0; i < 3; i++)
        if (once_procs[i].pid <= 0)
            once_start(i, HB);
    CU_ASSERT_FATAL(once_all_ready(10));
    /* A primary (after a stop before, one offers itself within a heartbeat),
     * and a replica started just before has joined everywhere. */
    CU_ASSERT_FATAL(once_primary_wait(10, -1) >= 0);
    ts_sleep_ms(1000);
    double base[3];
    for (int i = 0; i < 3; i++)
        base[i] = once_metric(i, "daebus_bus_primary_taken_total") +
                  once_metric(i, "daebus_bus_claims_won_total");
    setenv("ONCE_SLEEP_MS", sleep_ms, 1);
    pid_t py = once_python("req", ONCE_SERVICE, 60, p, 60, 20);
    unsetenv("ONCE_SLEEP_MS");
    /* The primary has taken the 60 requests or skipped what its 10 workers
     * could not start: the others claimed those. */
    int k = -1;
    TS_WAIT_UNTIL((k = busiest(base, pre)) >= 0 &&
                      once_metric(k, "daebus_bus_requests_received_total") >= 60,
                  5);
    CU_ASSERT_FATAL(k >= 0);
    pid_t stopped = once_procs[k].pid;
    int before = once_pid_runs(stopped, 'a', pre);
    once_reap(k, SIGTERM);
    cJSON *pr = once_python_wait(py, 40);
    CU_ASSERT_PTR_NOT_NULL_FATAL(pr);
    CU_ASSERT_EQUAL(jint(pr, "dups"), 0);
    CU_ASSERT_EQUAL(twice('a', p), 0);
    int after = once_pid_runs(stopped, 'a', pre);
    CU_ASSERT_EQUAL(jint(pr, "answered"), 60);
    CU_ASSERT_EQUAL(jint(pr, "errors"), 0);
    once_runs *r = once_runs_load();
    CU_ASSERT_EQUAL(once_runs_prefix(r, 'a', pre), 60);
    once_runs_free(r);
    if (!queued) {
        /* The stopped one ran requests after the stop began: the ones it had taken. */
        CU_ASSERT(after > before);
    } else {
        /* More than its first round of 10 (its workers): the queued ones too. */
        CU_ASSERT(after - before > 10);
    }
    printf("\n  graceful stop with %s ms requests in flight: the stopping replica finished %d "
           "(%d before the stop)",
           sleep_ms, after, before);
    cJSON_Delete(pr);
    once_start(k, HB);
    CU_ASSERT(once_all_ready(10));
}

static void test_graceful_stop_finishes(void)
{
    graceful_stop("300", "g", false);
}

/* Requests of 1.3 s with W = 1.5 s: the ones queued behind the first round
 * start later than 3W/4 after their marker's anchor. Their marker was
 * answered at once, so they are still the stopping primary's (which claims
 * nothing any more): it runs them (before: taken for late, claimed, refused,
 * and lost: it finished 10). Every request is answered once here too. */
static void test_graceful_stop_queued_past_window(void)
{
    graceful_stop("1300", "q", true);
}

static void test_kill9(void)
{
    CU_ASSERT_FATAL(once_all_ready(10));
    pid_t py = once_python("req", ONCE_SERVICE, N, "k", WINDOW, 3);
    once_load l;
    CU_ASSERT_EQUAL_FATAL(once_load_start(&l, N, "kc", WINDOW, 3), 0);
    TS_WAIT_UNTIL(atomic_load(&l.done) >= N / 4, 20);
    int before = atomic_load(&l.done);
    once_reap(0, SIGKILL);
    CU_ASSERT(before < N); /* killed mid-run */
    cJSON *pr = once_python_wait(py, 60);
    once_load_join(&l);
    CU_ASSERT_PTR_NOT_NULL_FATAL(pr);
    int answered = cJSON_GetObjectItem(pr, "answered")->valueint;
    const cJSON *lost = cJSON_GetObjectItem(pr, "unanswered");
    CU_ASSERT_EQUAL(cJSON_GetObjectItem(pr, "dups")->valueint, 0);
    CU_ASSERT_EQUAL(answered + cJSON_GetArraySize(lost), N);
    /* Only what the killed replica had taken can be lost: at most the
     * requests in flight of both callers. */
    CU_ASSERT(cJSON_GetArraySize(lost) + atomic_load(&l.failed) <= 2 * WINDOW);
    CU_ASSERT(atomic_load(&l.ok) + atomic_load(&l.failed) == N);
    CU_ASSERT(atomic_load(&l.ok) > before); /* the others went on */
    CU_ASSERT_EQUAL(twice('a', "k"), 0);
    /* A lost request never ran on a survivor. */
    once_runs *r = once_runs_load();
    const cJSON *e;
    int ran = 0;
    cJSON_ArrayForEach(e, lost) ran += once_runs_count(r, 'a', e->valuestring);
    once_runs_free(r);
    CU_ASSERT(ran <= cJSON_GetArraySize(lost)); /* at most once, by the killed one */
    printf("\n  kill -9 after %d of %d C requests: %d + %d answered, %d + %d timed out (taken by "
           "the killed replica)",
           before, N, answered, atomic_load(&l.ok), cJSON_GetArraySize(lost),
           atomic_load(&l.failed));
    cJSON_Delete(pr);
    once_start(0, HB); /* three again for the next test */
    CU_ASSERT(once_all_ready(10));
}

static void test_frozen_resume(void)
{
    CU_ASSERT_FATAL(once_all_ready(10));
    kill(once_procs[1].pid, SIGSTOP);
    kill(once_procs[2].pid, SIGSTOP);
    TS_WAIT_UNTIL(once_metric(0, "daebus_bus_solo") == 1, 6);
    CU_ASSERT_EQUAL_FATAL(once_metric(0, "daebus_bus_solo"), 1);
    pid_t py = once_python("req", ONCE_SERVICE, 300, "z", 300, 5);
    TS_WAIT_UNTIL(once_metric(0, "daebus_bus_requests_handled_total") >= 300, 10);
    kill(once_procs[1].pid, SIGCONT);
    kill(once_procs[2].pid, SIGCONT);
    cJSON *pr = once_python_wait(py, 30);
    CU_ASSERT_PTR_NOT_NULL_FATAL(pr);
    CU_ASSERT_EQUAL(cJSON_GetObjectItem(pr, "answered")->valueint, 300);
    CU_ASSERT_EQUAL(cJSON_GetObjectItem(pr, "dups")->valueint, 0);
    CU_ASSERT(once_all_ready(10)); /* they joined again */
    ts_sleep_ms(500);
    CU_ASSERT_EQUAL(twice('a', "z"), 0);
    once_runs *r = once_runs_load();
    CU_ASSERT_EQUAL(once_runs_prefix(r, 'a', "z-"), 300);
    once_runs_free(r);
    cJSON_Delete(pr);
}

static void test_redis_restart(void)
{
    once_load l;
    CU_ASSERT_EQUAL_FATAL(once_load_start(&l, 3000, "rr", 16, 2), 0);
    ts_sleep_ms(400);
    ts_redis_kill(&once_redis);
    ts_sleep_ms(300);
    CU_ASSERT_EQUAL_FATAL(ts_redis_restart(&once_redis), 0);
    double t0 = ts_now();
    once_load_join(&l);
    CU_ASSERT(once_all_ready(15));
    double back = ts_now() - t0;
    CU_ASSERT_EQUAL(twice('a', "rr"), 0); /* across the outage: at most once */
    /* After the restart: exactly once again, for every caller. */
    pid_t py = once_python("req", ONCE_SERVICE, 2000, "ra", WINDOW, 5);
    CU_ASSERT_EQUAL_FATAL(once_load_start(&l, 2000, "rc", WINDOW, 5), 0);
    cJSON *pr = once_python_wait(py, 60);
    once_load_join(&l);
    CU_ASSERT_PTR_NOT_NULL_FATAL(pr);
    CU_ASSERT_EQUAL(cJSON_GetObjectItem(pr, "answered")->valueint, 2000);
    CU_ASSERT_EQUAL(cJSON_GetObjectItem(pr, "dups")->valueint, 0);
    CU_ASSERT_EQUAL(atomic_load(&l.ok), 2000);
    CU_ASSERT_EQUAL(twice('a', "ra"), 0);
    CU_ASSERT_EQUAL(twice('a', "rc"), 0);
    once_runs *r = once_runs_load();
    CU_ASSERT_EQUAL(once_runs_prefix(r, 'a', "ra-"), 2000);
    CU_ASSERT_EQUAL(once_runs_prefix(r, 'a', "rc-"), 2000);
    once_runs_free(r);
    printf("\n  Redis restarted: replicas taking requests %.1f s after it was back; then 4000 "
           "requests answered once",
           back);
    cJSON_Delete(pr);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("once failures", init, cleanup);
    CU_add_test(s, "graceful stop: finishes what it took", test_graceful_stop_finishes);
    CU_add_test(s, "graceful stop: finishes what waited past 3W/4",
                test_graceful_stop_queued_past_window);
    CU_add_test(s, "kill -9 under load: nothing twice", test_kill9);
    CU_add_test(s, "frozen replicas resume: nothing twice", test_frozen_resume);
    CU_add_test(s, "Redis restart under load", test_redis_restart);
    return ts_run_cunit();
}
