/* Channels end to end (framework/ws/ws_channel*.c, docs/channels/core.md):
 * real channels_service processes on a private redis-server, real WebSocket
 * clients (python3-websockets, channels_clients.py).
 *   - one process without a bus: local delivery and order, the server API,
 *     subscriptions ending with the connection; authorisation (closed by
 *     default, patterns, the hook and its reasons, bad frames); the rate limit
 *     on broadcast frames;
 *   - two replicas on one Redis: 500 messages from two publishers on two
 *     replicas reach the four subscribers once each, in one order; the
 *     cluster-wide subscriber list, also after a replica is killed -9 and
 *     after Redis restarted (publishes refused while it is away). */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
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
    CU_ASSERT_EQUAL(chan_py("auth %d", p.port), 0);
    CU_ASSERT_EQUAL(chan_py("rate %d", p.port), 0);
    CU_ASSERT_EQUAL(chan_stop(&p), 0);
}

/* Redis restarts under subscribed clients (channels_clients.py restart). */
static void restart_case(const chan_proc *a, const chan_proc *b)
{
    char dir[] = "/tmp/test_channels_XXXXXX";
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    setenv("CHAN_DIR", dir, 1);
    pid_t pid = chan_py_spawn("restart %d %d", a->port, b->port);
    TS_WAIT_UNTIL(chan_file_in(dir, "ready"), 30);
    CU_ASSERT_TRUE(chan_file_in(dir, "ready"));
    ts_redis_kill(&redis);
    chan_touch(dir, "down");
    TS_WAIT_UNTIL(chan_file_in(dir, "checked"), 30);
    CU_ASSERT_TRUE(chan_file_in(dir, "checked"));
    CU_ASSERT_EQUAL(ts_redis_restart(&redis), 0);
    chan_touch(dir, "up");
    CU_ASSERT_EQUAL(chan_py_wait(pid), 0);
    const char *names[] = {"ready", "down", "checked", "up"};
    for (int i = 0; i < 4; i++)
        chan_unlink(dir, names[i]);
    rmdir(dir);
}

static void test_replicas(void)
{
    chan_proc a, b;
    chan_start_two(&redis, 1, &a, &b);
    CU_ASSERT_EQUAL_FATAL(chan_answers(&a), 0);
    CU_ASSERT_EQUAL_FATAL(chan_answers(&b), 0);
    double t0 = ts_now();
    CU_ASSERT_EQUAL(chan_py("cluster %d %d", a.port, b.port), 0);
    printf("\n  cluster case (500 messages, 4 subscribers, 2 replicas): %.2f s\n", ts_now() - t0);
    restart_case(&a, &b);
    CU_ASSERT_EQUAL(chan_py("kill %d %d %d", a.port, b.port, (int)b.pid), 0);
    int st;
    waitpid(b.pid, &st, 0);
    b.pid = -1;
    /* every subscription left the cluster-wide lists (closed and reaped ones) */
    TS_WAIT_UNTIL(chan_keys(&redis, "ch*") == 0, 10);
    CU_ASSERT_EQUAL(chan_keys(&redis, "ch*"), 0);
    CU_ASSERT_EQUAL(chan_stop(&a), 0);
}

int main(void)
{
    chan_fixture_init("test_channels", "channels_clients.py");
    if (ts_redis_start(&redis, NULL) != 0)
        return 1;
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("channels", NULL, NULL);
    CU_add_test(s, "one process: delivery, API, authorisation, rate limit", test_one_process);
    CU_add_test(s, "two replicas: order, cluster-wide lists, kill -9", test_replicas);
    int rc = ts_run_cunit();
    ts_redis_stop(&redis);
    return rc;
}
