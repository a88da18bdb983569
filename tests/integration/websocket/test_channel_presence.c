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
    bool bus;
} proc;

static ts_redis redis;
static char binary[1024], script[1024];

static proc start(bool bus, int i)
{
    proc p = {-1, ts_free_port(), bus};
    char port[16];
    snprintf(port, sizeof port, "%d", p.port);
    p.pid = fork();
    if (p.pid == 0) {
        char log[64];
        snprintf(log, sizeof log, "/tmp/test_channel_presence.%d.%d.log", (int)getppid(), i);
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        if (!bus)
            setenv("CHAN_NO_BUS", "1", 1);
        execl(binary, binary, "--port", port, "--redis", redis.url, (char *)NULL);
        _exit(127);
    }
    return p;
}

/* The rc of POST /op {"op":"subscribers","channel":"x"} (-1000: no answer;
 * -1001: a replica with a bus whose cluster mode has not started yet, which
 * would answer from its local table). */
static int answers(const proc *p)
{
    const char *body = "{\"op\":\"subscribers\",\"channel\":\"x\"}";
    ts_http_response r;
    if (ts_http(p->port, "POST", "/op", "Content-Type: application/json\r\n", body, strlen(body),
                &r) != 0)
        return -1000;
    cJSON *o = r.status == 200 ? cJSON_Parse(r.body) : NULL;
    ts_http_free(&r);
    const cJSON *rc = cJSON_GetObjectItemCaseSensitive(o, "rc");
    int v = cJSON_IsNumber(rc) ? rc->valueint : -1000;
    if (v == 0 && p->bus && !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "cluster")))
        v = -1001;
    cJSON_Delete(o);
    return v;
}

/* SIGTERM; returns the exit status (-1: killed or hung). */
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

static int py(const char *args)
{
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s %s", script, args);
    int r = system(cmd);
    return r == -1 ? -1 : WEXITSTATUS(r);
}

/* The number of keys daebus:chan_test:ws:<pattern>. */
static int keys(const char *pattern)
{
    char cmd[200];
    snprintf(cmd, sizeof cmd, "redis-cli -p %d --raw KEYS 'daebus:chan_test:ws:%s' | grep -c .",
             redis.port, pattern);
    FILE *f = popen(cmd, "r");
    int n = -1;
    if (f) {
        if (fscanf(f, "%d", &n) != 1)
            n = -1;
        pclose(f);
    }
    return n;
}

static void test_one_process(void)
{
    proc p = start(false, 0);
    TS_WAIT_UNTIL(answers(&p) == 0, 20);
    CU_ASSERT_EQUAL_FATAL(answers(&p), 0);
    char args[64];
    snprintf(args, sizeof args, "local %d", p.port);
    CU_ASSERT_EQUAL(py(args), 0);
    CU_ASSERT_EQUAL(stop(&p), 0);
}

static void touch_in(const char *dir, const char *name)
{
    char p[300];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (f)
        fclose(f);
}

/* Redis restarts under a member: its info comes back (presence_clients.py restart). */
static void restart_case(const proc *a)
{
    char dir[] = "/tmp/test_channel_presence_XXXXXX";
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    setenv("CHAN_DIR", dir, 1);
    char args[1200], ready[300];
    snprintf(args, sizeof args, "/usr/bin/python3 %s restart %d", script, a->port);
    snprintf(ready, sizeof ready, "%s/ready", dir);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", args, (char *)NULL);
        _exit(127);
    }
    TS_WAIT_UNTIL(access(ready, F_OK) == 0, 30);
    CU_ASSERT_EQUAL(access(ready, F_OK), 0);
    ts_redis_kill(&redis);
    CU_ASSERT_EQUAL(ts_redis_restart(&redis), 0);
    touch_in(dir, "up");
    int st = 0;
    waitpid(pid, &st, 0);
    CU_ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    unlink(ready);
    char up[300];
    snprintf(up, sizeof up, "%s/up", dir);
    unlink(up);
    rmdir(dir);
}

static void test_replicas(void)
{
    proc a = start(true, 1), b = start(true, 2);
    TS_WAIT_UNTIL(answers(&a) == 0 && answers(&b) == 0, 30);
    CU_ASSERT_EQUAL_FATAL(answers(&a), 0);
    CU_ASSERT_EQUAL_FATAL(answers(&b), 0);
    char args[96];
    snprintf(args, sizeof args, "cluster %d %d %d", a.port, b.port, (int)b.pid);
    double t0 = ts_now();
    CU_ASSERT_EQUAL(py(args), 0);
    printf("\n  presence across replicas (kill -9 included): %.2f s\n", ts_now() - t0);
    stop(&b); /* killed -9 by the case already: reaps it */
    restart_case(&a);
    CU_ASSERT_EQUAL(stop(&a), 0);
    /* the lists and the info keys are gone with their clients */
    TS_WAIT_UNTIL(keys("ch*") == 0 && keys("pi:*") == 0, 10);
    CU_ASSERT_EQUAL(keys("ch*"), 0);
    CU_ASSERT_EQUAL(keys("pi:*"), 0);
}

int main(void)
{
    const char *src = getenv("DAEBUS_SOURCE_DIR"), *bin = getenv("DAEBUS_BINARY_DIR");
    snprintf(binary, sizeof binary, "%s/tests/channels_service", bin ? bin : ".");
    snprintf(script, sizeof script, "%s/tests/integration/websocket/presence_clients.py",
             src ? src : ".");
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
