/* Channel history and recovery end to end (framework/ws/ws_channel_recover.c,
 * docs/channels/history.md "Recovery"): two real channels_service replicas
 * (CHAN_HISTORY="hist:*") on a private redis-server, real WebSocket clients
 * (python3-websockets, channels_recovery.py):
 *   - a client of replica A is cut off (socket killed), 200 messages are
 *     published, it comes back on replica B with "since": exactly those 200
 *     in order, then the live ones (published during the recovery), no gap,
 *     no duplicate, "recovered": true, the answer first;
 *   - a trimmed history, a wrong epoch: "recovered": false, no history sent;
 *   - Redis restarted (no persistence): a new epoch, "recovered": false;
 *   - subscribes with "since" on both replicas during a steady stream of
 *     publishes: every client gets every offset once, in order;
 *   - one process without a bus: history channels are history-less. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <CUnit/Basic.h>
#include "channels_fixture.h"

static ts_redis redis;
static chan_proc a, b;

static int py(const char *kase, const char *extra)
{
    double t0 = ts_now();
    int r = chan_py("%s %d %d %d %s", kase, a.port, b.port, redis.port, extra ? extra : "");
    printf("\n  %s: %.2f s", kase, ts_now() - t0);
    return r;
}

static void test_recover(void)
{
    CU_ASSERT_EQUAL(py("recover", NULL), 0);
}

static void test_trimmed(void)
{
    CU_ASSERT_EQUAL(py("trimmed", NULL), 0);
}

static void test_steady(void)
{
    CU_ASSERT_EQUAL(py("steady", NULL), 0);
}

static void test_epoch(void)
{
    char path[] = "/tmp/test_channels_recovery_XXXXXX";
    int fd = mkstemp(path);
    CU_ASSERT_TRUE_FATAL(fd >= 0);
    close(fd);
    CU_ASSERT_EQUAL(py("epoch_pre", path), 0);
    CU_ASSERT_EQUAL(ts_redis_restart(&redis), 0); /* no persistence: the history is gone */
    CU_ASSERT_EQUAL(py("epoch_post", path), 0);
    unlink(path);
}

/* One process without a bus: the history channels are history-less. */
static void test_no_bus(void)
{
    chan_proc one = chan_start(&redis, false, 3);
    TS_WAIT_UNTIL(chan_answers(&one) == 0, 20);
    chan_proc keep = a;
    a = one;
    CU_ASSERT_EQUAL(py("nobus", NULL), 0);
    a = keep;
    CU_ASSERT_EQUAL(chan_stop(&one), 0);
}

static void test_stop(void)
{
    CU_ASSERT_EQUAL(chan_stop(&a), 0);
    CU_ASSERT_EQUAL(chan_stop(&b), 0);
}

int main(void)
{
    chan_fixture_init("test_channels_recovery", "channels_recovery.py");
    setenv("CHAN_HISTORY", "hist:*", 1); /* every replica: history on hist:* */
    if (ts_redis_start(&redis, NULL) != 0)
        return 1;
    chan_start_two(&redis, 1, &a, &b);
    int rc = 1;
    if (chan_answers(&a) == 0 && chan_answers(&b) == 0) {
        CU_initialize_registry();
        CU_pSuite s = CU_add_suite("channel recovery", NULL, NULL);
        CU_add_test(s, "a dropped client recovers 200 messages on the other replica", test_recover);
        CU_add_test(s, "trimmed history, wrong epoch: not recovered", test_trimmed);
        CU_add_test(s, "subscribes during a steady stream: no gap, no duplicate", test_steady);
        CU_add_test(s, "Redis restarted: a new epoch, not recovered", test_epoch);
        CU_add_test(s, "without a bus: history-less", test_no_bus);
        CU_add_test(s, "the replicas stop cleanly", test_stop);
        rc = ts_run_cunit();
    }
    chan_stop(&a);
    chan_stop(&b);
    ts_redis_stop(&redis);
    return rc;
}
