/* Worker pool: every job runs once, bounded queue refuses, drain on shutdown. */
#include <stdatomic.h>
#include <stdlib.h>
#include "daebus/daebus.h"
#include "testsupport.h"
#include "worker_pool.h"

static atomic_int ran, dropped;

static void count_job(void *arg)
{
    (void)arg;
    atomic_fetch_add(&ran, 1);
}
static void slow_job(void *arg)
{
    ts_sleep_ms(*(int *)arg);
    atomic_fetch_add(&ran, 1);
}
static void drop_job(void *arg)
{
    (void)arg;
    atomic_fetch_add(&dropped, 1);
}

static void test_all_jobs_run(void)
{
    atomic_store(&ran, 0);
    daebus__pool *p = daebus__pool_create("t", 4, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    for (int i = 0; i < 10000; i++)
        CU_ASSERT_EQUAL(daebus__pool_submit(p, count_job, NULL, NULL), 0);
    CU_ASSERT_EQUAL(daebus__pool_shutdown(p, 10.0), 0);
    CU_ASSERT_EQUAL(atomic_load(&ran), 10000);
    CU_ASSERT_EQUAL(daebus__pool_submit(p, count_job, NULL, NULL), DAEBUS_ECLOSED);
    daebus__pool_destroy(p);
}

static void test_bounded_queue(void)
{
    atomic_store(&ran, 0);
    atomic_store(&dropped, 0);
    static int ms = 1000; /* outlasts the submits below, however loaded the machine */
    daebus__pool *p = daebus__pool_create("t", 1, 2);
    CU_ASSERT_EQUAL(daebus__pool_submit(p, slow_job, drop_job, &ms), 0);
    /* Wait until the worker has taken the first job (slow on a loaded machine). */
    for (int i = 0; i < 500 && daebus__pool_active(p) != 1; i++)
        ts_sleep_ms(10);
    CU_ASSERT_EQUAL(daebus__pool_submit(p, slow_job, drop_job, &ms), 0);
    CU_ASSERT_EQUAL(daebus__pool_submit(p, slow_job, drop_job, &ms), 0);
    CU_ASSERT_EQUAL(daebus__pool_submit(p, slow_job, drop_job, &ms), DAEBUS_EFULL);
    CU_ASSERT_EQUAL(daebus__pool_pending(p), 2);
    CU_ASSERT_EQUAL(daebus__pool_active(p), 1);
    /* No drain: the two queued ones are dropped (drop called), the running one finishes. */
    CU_ASSERT_EQUAL(daebus__pool_shutdown(p, 0), 2);
    CU_ASSERT_EQUAL(atomic_load(&ran), 1);
    CU_ASSERT_EQUAL(atomic_load(&dropped), 2);
    daebus__pool_destroy(p);
}

static void test_drain_timeout(void)
{
    atomic_store(&ran, 0);
    atomic_store(&dropped, 0);
    static int ms = 100;
    daebus__pool *p = daebus__pool_create("t", 1, 0);
    for (int i = 0; i < 20; i++)
        daebus__pool_submit(p, slow_job, drop_job, &ms);
    double t0 = ts_now();
    size_t d = daebus__pool_shutdown(p, 0.25);
    double took = ts_now() - t0;
    CU_ASSERT_TRUE(d >= 15 && d <= 18);
    CU_ASSERT_EQUAL((size_t)atomic_load(&ran) + d, 20);
    CU_ASSERT_TRUE(took < 1.0);
    daebus__pool_destroy(p);
    daebus__pool_destroy(NULL);
}

/* With time enough, shutdown runs every queued job: nothing dropped. */
static void test_full_drain(void)
{
    atomic_store(&ran, 0);
    atomic_store(&dropped, 0);
    static int ms = 10;
    daebus__pool *p = daebus__pool_create("t", 1, 0);
    for (int i = 0; i < 10; i++)
        CU_ASSERT_EQUAL(daebus__pool_submit(p, slow_job, drop_job, &ms), 0);
    CU_ASSERT_EQUAL(daebus__pool_shutdown(p, 30.0), 0);
    CU_ASSERT_EQUAL(atomic_load(&ran), 10);
    CU_ASSERT_EQUAL(atomic_load(&dropped), 0);
    CU_ASSERT_EQUAL(daebus__pool_pending(p), 0);
    CU_ASSERT_EQUAL(daebus__pool_active(p), 0);
    CU_ASSERT_EQUAL(daebus__pool_shutdown(p, 1.0), 0); /* a second shutdown: nothing to do */
    daebus__pool_destroy(p);
}

static daebus__pool *chain_pool;
static atomic_int chain_left;

/* Each run submits the next one from inside the pool. */
static void chain_job(void *arg)
{
    (void)arg;
    atomic_fetch_add(&ran, 1);
    if (atomic_fetch_sub(&chain_left, 1) > 1)
        CU_ASSERT_EQUAL(daebus__pool_submit(chain_pool, chain_job, NULL, NULL), 0);
}

static void test_submit_from_a_job(void)
{
    atomic_store(&ran, 0);
    atomic_store(&chain_left, 100);
    chain_pool = daebus__pool_create("t", 2, 4);
    CU_ASSERT_PTR_NOT_NULL_FATAL(chain_pool);
    CU_ASSERT_EQUAL(daebus__pool_submit(chain_pool, chain_job, NULL, NULL), 0);
    TS_WAIT_UNTIL(atomic_load(&ran) == 100, 10);
    CU_ASSERT_EQUAL(atomic_load(&ran), 100);
    CU_ASSERT_EQUAL(daebus__pool_shutdown(chain_pool, 1.0), 0);
    daebus__pool_destroy(chain_pool);
}

/* A job that runs while the pool starts to drain hands out the rest of its
 * batch: 4 jobs of 500 ms on the 4 workers, not one after the other on its
 * own; a plain submit is refused meanwhile, and submit_more too once the
 * drain is over. */
static daebus__pool *more_pool;
static atomic_int more_rc[4];
static atomic_int plain_rc;

static void more_job(void *arg)
{
    (void)arg;
    ts_sleep_ms(200); /* the shutdown has begun by now */
    static int ms = 500;
    for (int i = 0; i < 4; i++)
        atomic_store(&more_rc[i], daebus__pool_submit_more(more_pool, slow_job, drop_job, &ms));
    atomic_store(&plain_rc, daebus__pool_submit(more_pool, slow_job, drop_job, &ms));
}

static void test_submit_more_while_draining(void)
{
    atomic_store(&ran, 0);
    atomic_store(&dropped, 0);
    more_pool = daebus__pool_create("t", 4, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(more_pool);
    CU_ASSERT_EQUAL(daebus__pool_submit(more_pool, more_job, NULL, NULL), 0);
    TS_WAIT_UNTIL(daebus__pool_active(more_pool) == 1, 5);
    double t0 = ts_now();
    CU_ASSERT_EQUAL(daebus__pool_shutdown(more_pool, 5.0), 0);
    double took = ts_now() - t0;
    for (int i = 0; i < 4; i++)
        CU_ASSERT_EQUAL(atomic_load(&more_rc[i]), 0);
    CU_ASSERT_EQUAL(atomic_load(&plain_rc), DAEBUS_ECLOSED);
    CU_ASSERT_EQUAL(atomic_load(&ran), 4);
    CU_ASSERT_EQUAL(atomic_load(&dropped), 0);
    CU_ASSERT(took >= 0.65 && took < 1.6); /* 0.2 + 0.5 in parallel, not 0.2 + 4 x 0.5 */
    static int ms = 10;
    CU_ASSERT_EQUAL(daebus__pool_submit_more(more_pool, slow_job, drop_job, &ms), DAEBUS_ECLOSED);
    daebus__pool_destroy(more_pool);
}

static void test_bad_arguments(void)
{
    atomic_store(&ran, 0);
    daebus__pool *p = daebus__pool_create(NULL, 0, 0); /* at least one worker */
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_EQUAL(daebus__pool_submit(p, NULL, NULL, NULL), DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(daebus__pool_submit(NULL, count_job, NULL, NULL), DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(daebus__pool_submit(p, count_job, NULL, NULL), 0);
    CU_ASSERT_EQUAL(daebus__pool_shutdown(p, 10.0), 0);
    CU_ASSERT_EQUAL(atomic_load(&ran), 1);
    CU_ASSERT_EQUAL(daebus__pool_shutdown(NULL, 1.0), 0);
    daebus__pool_destroy(p);
}

int main(void)
{
    daebus_log_set_level(DAEBUS_LOG_CRITICAL);
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("worker_pool", NULL, NULL);
    CU_add_test(s, "all jobs run once", test_all_jobs_run);
    CU_add_test(s, "bounded queue", test_bounded_queue);
    CU_add_test(s, "drain with timeout", test_drain_timeout);
    CU_add_test(s, "full drain drops nothing", test_full_drain);
    CU_add_test(s, "a job submits the next", test_submit_from_a_job);
    CU_add_test(s, "the rest of a batch runs in parallel while draining",
                test_submit_more_while_draining);
    CU_add_test(s, "bad arguments", test_bad_arguments);
    return ts_run_cunit();
}
