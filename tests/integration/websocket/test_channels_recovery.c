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
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <CUnit/Basic.h>
#include "daebus/daebus.h"
#include "testsupport.h"

typedef struct proc {
    pid_t pid;
    int port;
} proc;

static ts_redis redis;
static char binary[1024], script[1024];
static proc a, b;

static proc start(int i, bool bus)
{
    proc p = {-1, ts_free_port()};
    char port[16];
    snprintf(port, sizeof port, "%d", p.port);
    p.pid = fork();
    if (p.pid == 0) {
        char log[64];
        snprintf(log, sizeof log, "/tmp/test_channels_recovery.%d.%d.log", (int)getppid(), i);
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        setenv("CHAN_HISTORY", "hist:*", 1);
        if (!bus)
            setenv("CHAN_NO_BUS", "1", 1);
        execl(binary, binary, "--port", port, "--redis", redis.url, (char *)NULL);
        _exit(127);
    }
    return p;
}

/* true when p answers POST /op (in cluster mode when cluster). */
static bool ready(const proc *p, bool cluster)
{
    const char *body = "{\"op\":\"subscribers\",\"channel\":\"x\"}";
    ts_http_response r;
    if (ts_http(p->port, "POST", "/op", "Content-Type: application/json\r\n", body, strlen(body),
                &r) != 0)
        return false;
    cJSON *o = r.status == 200 ? cJSON_Parse(r.body) : NULL;
    ts_http_free(&r);
    bool ok = o && (!cluster || cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "cluster")));
    cJSON_Delete(o);
    return ok;
}

static int stop(proc *p)
{
    if (p->pid <= 0)
        return -1;
    kill(p->pid, SIGTERM);
    int st = 0;
    pid_t r = 0;
    double end = ts_now() + 10;
    while ((r = waitpid(p->pid, &st, WNOHANG)) == 0 && ts_now() < end)
        ts_sleep_ms(10);
    if (r != p->pid) {
        kill(p->pid, SIGKILL);
        waitpid(p->pid, &st, 0);
    }
    p->pid = -1;
    return r > 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int py(const char *kase, const char *extra)
{
    char cmd[1600];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s %s %d %d %d %s", script, kase, a.port, b.port,
             redis.port, extra ? extra : "");
    double t0 = ts_now();
    int r = system(cmd);
    printf("\n  %s: %.2f s", kase, ts_now() - t0);
    return r == -1 ? -1 : WEXITSTATUS(r);
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
    proc one = start(3, false);
    TS_WAIT_UNTIL(ready(&one, false), 20);
    proc keep = a;
    a = one;
    CU_ASSERT_EQUAL(py("nobus", NULL), 0);
    a = keep;
    CU_ASSERT_EQUAL(stop(&one), 0);
}

static void test_stop(void)
{
    CU_ASSERT_EQUAL(stop(&a), 0);
    CU_ASSERT_EQUAL(stop(&b), 0);
}

int main(void)
{
    const char *src = getenv("DAEBUS_SOURCE_DIR"), *bin = getenv("DAEBUS_BINARY_DIR");
    snprintf(binary, sizeof binary, "%s/tests/channels_service", bin ? bin : ".");
    snprintf(script, sizeof script, "%s/tests/integration/websocket/channels_recovery.py",
             src ? src : ".");
    if (ts_redis_start(&redis, NULL) != 0)
        return 1;
    a = start(1, true);
    b = start(2, true);
    TS_WAIT_UNTIL(ready(&a, true) && ready(&b, true), 30);
    int rc = 1;
    if (ready(&a, true) && ready(&b, true)) {
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
    stop(&a);
    stop(&b);
    ts_redis_stop(&redis);
    return rc;
}
