/* core/clock: the monotonic clock, deadlines, poll() time-outs and timed
 * condition waits. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <time.h>
#include "daebus/daebus.h"
#include "testsupport.h"
#include "clock.h"

static void test_clocks(void)
{
    double a = daebus__now_mono();
    ts_sleep_ms(20);
    double b = daebus__now_mono();
    CU_ASSERT(b - a >= 0.019);
    CU_ASSERT(b - a < 5.0);
    /* the same clock as the tests' own */
    CU_ASSERT(fabs(daebus__now_mono() - ts_now()) < 0.5);
    /* the wall clock is the epoch one */
    CU_ASSERT(fabs(daebus__now_wall() - (double)time(NULL)) < 2.0);
}

static void test_no_deadline(void)
{
    /* (deadline_in(INFINITY) is not "none" yet: it gives a deadline that has passed,
     * reported to the core layer's owner; not tested here.) */
    daebus__deadline none[] = {daebus__deadline_in(-1), daebus__deadline_in(-0.001),
                               daebus__deadline_in(NAN)};
    for (size_t i = 0; i < sizeof none / sizeof none[0]; i++) {
        CU_ASSERT(none[i].at <= 0);
        CU_ASSERT_FALSE(daebus__deadline_passed(none[i]));
        CU_ASSERT(daebus__deadline_left(none[i]) > 1e9);
        CU_ASSERT_EQUAL(daebus__deadline_poll_ms(none[i]), -1);
    }
}

static void test_deadline_passes(void)
{
    daebus__deadline now = daebus__deadline_in(0);
    CU_ASSERT(now.at > 0); /* zero seconds is a deadline, not "none" */
    CU_ASSERT_TRUE(daebus__deadline_passed(now));
    CU_ASSERT_EQUAL(daebus__deadline_left(now), 0);
    CU_ASSERT_EQUAL(daebus__deadline_poll_ms(now), 0);

    daebus__deadline d = daebus__deadline_in(0.2);
    CU_ASSERT_FALSE(daebus__deadline_passed(d));
    double left = daebus__deadline_left(d);
    CU_ASSERT(left > 0.1 && left <= 0.2);
    int ms = daebus__deadline_poll_ms(d);
    CU_ASSERT(ms > 100 && ms <= 200);
    ts_sleep_ms(250);
    CU_ASSERT_TRUE(daebus__deadline_passed(d));
    CU_ASSERT_EQUAL(daebus__deadline_left(d), 0);
    CU_ASSERT_EQUAL(daebus__deadline_poll_ms(d), 0);
}

static void test_poll_ms_bounds(void)
{
    /* rounded up: poll() must not wake just before the deadline and spin */
    daebus__deadline soon = daebus__deadline_in(0.0004);
    int ms = daebus__deadline_poll_ms(soon);
    CU_ASSERT(ms == 1 || (ms == 0 && daebus__deadline_passed(soon)));
    /* far away: clamped, never negative or wrapped */
    CU_ASSERT_EQUAL(daebus__deadline_poll_ms(daebus__deadline_in(1e12)), INT_MAX);
}

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond;
static int flag;

/* The deadline is a CLOCK_MONOTONIC time (seconds since boot), decades
 * before any CLOCK_REALTIME reading: a condition variable left on the wall
 * clock would time out at once, so a wait that lasts its time shows the
 * monotonic clock is in use. */
static void test_wait_times_out_on_monotonic(void)
{
    CU_ASSERT_EQUAL_FATAL(daebus__cond_init(&cond), 0);
    pthread_mutex_lock(&lock);
    double t0 = ts_now();
    int rc = daebus__cond_wait_for(&cond, &lock, 0.15);
    while (rc == 0) /* spurious wake-up */
        rc = daebus__cond_wait_until(&cond, &lock, (daebus__deadline){t0 + 0.15});
    double took = ts_now() - t0;
    pthread_mutex_unlock(&lock);
    CU_ASSERT_EQUAL(rc, ETIMEDOUT);
    CU_ASSERT(took >= 0.149);
    CU_ASSERT(took < 3.0);
    /* a deadline already passed: at once */
    pthread_mutex_lock(&lock);
    t0 = ts_now();
    rc = daebus__cond_wait_until(&cond, &lock, daebus__deadline_in(0));
    took = ts_now() - t0;
    pthread_mutex_unlock(&lock);
    CU_ASSERT_EQUAL(rc, ETIMEDOUT);
    CU_ASSERT(took < 0.5);
    pthread_cond_destroy(&cond);
}

static void *signal_later(void *arg)
{
    ts_sleep_ms(*(int *)arg);
    pthread_mutex_lock(&lock);
    flag = 1;
    pthread_cond_signal(&cond);
    pthread_mutex_unlock(&lock);
    return NULL;
}

/* Signalled before the deadline, and with no deadline at all: returns 0. */
static void test_wait_signalled(void)
{
    CU_ASSERT_EQUAL_FATAL(daebus__cond_init(&cond), 0);
    static int ms = 50;
    double limits[] = {10.0, -1};
    for (size_t i = 0; i < 2; i++) {
        flag = 0;
        pthread_t t;
        pthread_create(&t, NULL, signal_later, &ms);
        pthread_mutex_lock(&lock);
        daebus__deadline d = daebus__deadline_in(limits[i]);
        double t0 = ts_now();
        int rc = 0;
        while (!flag && rc == 0)
            rc = daebus__cond_wait_until(&cond, &lock, d);
        double took = ts_now() - t0;
        pthread_mutex_unlock(&lock);
        pthread_join(t, NULL);
        CU_ASSERT_EQUAL(rc, 0);
        CU_ASSERT_EQUAL(flag, 1);
        CU_ASSERT(took < 5.0);
    }
    pthread_cond_destroy(&cond);
}

int main(void)
{
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("clock", NULL, NULL);
    CU_add_test(s, "monotonic and wall clocks", test_clocks);
    CU_add_test(s, "no deadline", test_no_deadline);
    CU_add_test(s, "a deadline passes", test_deadline_passes);
    CU_add_test(s, "poll ms rounding and clamp", test_poll_ms_bounds);
    CU_add_test(s, "timed wait times out on the monotonic clock", test_wait_times_out_on_monotonic);
    CU_add_test(s, "timed wait signalled", test_wait_signalled);
    return ts_run_cunit();
}
