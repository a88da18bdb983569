/* Channel presence end to end (framework/ws/ws_channel_presence.c,
 * docs/channels/presence.md): real channels_service processes (presence on
 * "room:*") on a private redis-server, real WebSocket clients
 * (python3-websockets, presence_clients.py).
 *   - one process without a bus: join / leave to the others, the list;
 *   - two replicas: join / leave seen across replicas, once each, not by the
 *     client itself, in order (20 quick join / leave); the list
 *     cluster-wide (API and "presence" frame, only for subscribers); leave on unsubscribe and disconnect; one leave when a
 *     replica is killed -9; no events on a channel without presence; the
 *     info keys gone afterwards; after a Redis restart the info is back. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <CUnit/Basic.h>
#include "channels_fixture.h"

static ts_redis redis;

static void test_one_process(void)
{
    chan_proc p = chan_start(&redis, false, 0);
    TS_WAIT_UNTIL(chan_answers(&p) == 0, 20);
    CU_ASSERT_EQUAL_FATAL(chan_answers(&p), 0);
    CU_ASSERT_EQUAL(chan_py("local %d", p.port), 0);
    CU_ASSERT_EQUAL(chan_stop(&p), 0);
}

/* Redis restarts under a member: its info comes back (presence_clients.py restart). */
static void restart_case(const chan_proc *a)
{
    char dir[] = "/tmp/test_channel_presence_XXXXXX";
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    setenv("CHAN_DIR", dir, 1);
    pid_t pid = chan_py_spawn("restart %d", a->port);
    TS_WAIT_UNTIL(chan_file_in(dir, "ready"), 30);
    CU_ASSERT_TRUE(chan_file_in(dir, "ready"));
    ts_redis_kill(&redis);
    CU_ASSERT_EQUAL(ts_redis_restart(&redis), 0);
    chan_touch(dir, "up");
    CU_ASSERT_EQUAL(chan_py_wait(pid), 0);
    chan_unlink(dir, "ready");
    chan_unlink(dir, "up");
    rmdir(dir);
}

static void test_replicas(void)
{
    chan_proc a, b;
    chan_start_two(&redis, 1, &a, &b);
    CU_ASSERT_EQUAL_FATAL(chan_answers(&a), 0);
    CU_ASSERT_EQUAL_FATAL(chan_answers(&b), 0);
    double t0 = ts_now();
    CU_ASSERT_EQUAL(chan_py("cluster %d %d %d", a.port, b.port, (int)b.pid), 0);
    printf("\n  presence across replicas (kill -9 included): %.2f s\n", ts_now() - t0);
    chan_stop(&b); /* killed -9 by the case already: reaps it */
    restart_case(&a);
    CU_ASSERT_EQUAL(chan_stop(&a), 0);
    /* the lists and the info keys are gone with their clients */
    TS_WAIT_UNTIL(chan_keys(&redis, "ch*") == 0 && chan_keys(&redis, "pi:*") == 0, 10);
    CU_ASSERT_EQUAL(chan_keys(&redis, "ch*"), 0);
    CU_ASSERT_EQUAL(chan_keys(&redis, "pi:*"), 0);
}

int main(void)
{
    chan_fixture_init("test_channel_presence", "presence_clients.py");
    if (ts_redis_start(&redis, NULL) != 0)
        return 1;
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("channel presence", NULL, NULL);
    CU_add_test(s, "one process: join, leave, list", test_one_process);
    CU_add_test(s, "two replicas: events once, list, disconnect, kill -9", test_replicas);
    int rc = ts_run_cunit();
    ts_redis_stop(&redis);
    return rc;
}
