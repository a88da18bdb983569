/* test_instances.c - instances of one service on one Redis (docs/replicas.md).
 *
 * Real cluster_service processes on a private redis-server, heartbeat 200 ms:
 * they see each other; one killed with -9 leaves the others' lists within 3
 * heartbeats; one stopped gracefully deletes its keys at once; after a Redis
 * restart every instance announces itself again; the admin action
 * get_instances answers a real Redis caller. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <hiredis/hiredis.h>
#include "daebus/daebus.h"
#include "testsupport.h"

#define HEARTBEAT 0.2
#define SERVICE   "cluster_test"
#define MAX_PROCS 6

typedef struct proc {
    pid_t pid;
    int port;
} proc;

static ts_redis redis;
static char binary[1024], logpath[256];
static proc procs[MAX_PROCS];

static proc start_proc(const char *heartbeat)
{
    proc p = {-1, ts_free_port()};
    char portbuf[16];
    snprintf(portbuf, sizeof portbuf, "%d", p.port);
    p.pid = fork();
    if (p.pid == 0) {
        int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        setenv("CLUSTER_HEARTBEAT", heartbeat, 1);
        execl(binary, binary, "--port", portbuf, "--redis", redis.url, (char *)NULL);
        _exit(127);
    }
    return p;
}

static void reap(proc *p, int sig)
{
    if (p->pid <= 0)
        return;
    kill(p->pid, sig);
    double end = ts_now() + 10;
    int st;
    while (waitpid(p->pid, &st, WNOHANG) == 0 && ts_now() < end)
        ts_sleep_ms(10);
    if (ts_now() >= end) {
        kill(p->pid, SIGKILL);
        waitpid(p->pid, &st, 0);
    }
    p->pid = -1;
}

/* GET /health of p: the count of live instances it sees (-1: no answer) and
 * whether its view is stale. */
static int seen_count(const proc *p, int *stale)
{
    ts_http_response r;
    if (p->pid <= 0 || ts_http(p->port, "GET", "/health", NULL, NULL, 0, &r) != 0)
        return -1;
    cJSON *o = cJSON_Parse(r.body);
    ts_http_free(&r);
    const cJSON *in = cJSON_GetObjectItem(cJSON_GetObjectItem(o, "checks"), "instances");
    const cJSON *n = cJSON_GetObjectItem(in, "count");
    int count = cJSON_IsNumber(n) ? n->valueint : -1;
    if (stale) {
        const cJSON *s = cJSON_GetObjectItem(in, "status");
        *stale = cJSON_IsString(s) && strcmp(s->valuestring, "stale") == 0;
    }
    cJSON_Delete(o);
    return count;
}

/* Do all of the live processes in procs see exactly n fresh instances? */
static int all_see(int n)
{
    for (int i = 0; i < MAX_PROCS; i++) {
        int stale = 0;
        if (procs[i].pid > 0 && (seen_count(&procs[i], &stale) != n || stale))
            return 0;
    }
    return 1;
}

static long long redis_exists(const char *key)
{
    redisContext *c = redisConnect("127.0.0.1", redis.port);
    if (!c || c->err) {
        if (c)
            redisFree(c);
        return -1;
    }
    redisReply *r = redisCommand(c, "EXISTS %s", key);
    long long v = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return v;
}

static int init(void)
{
    const char *bin = getenv("DAEBUS_BINARY_DIR");
    snprintf(binary, sizeof binary, "%s/tests/cluster_service", bin ? bin : ".");
    snprintf(logpath, sizeof logpath, "/tmp/daebus_test_instances_%d.log", (int)getpid());
    for (int i = 0; i < MAX_PROCS; i++)
        procs[i].pid = -1;
    return ts_redis_start(&redis, NULL) == 0 ? 0 : -1;
}

static int cleanup(void)
{
    for (int i = 0; i < MAX_PROCS; i++)
        reap(&procs[i], SIGKILL);
    ts_redis_stop(&redis);
    if (CU_get_number_of_tests_failed() == 0)
        unlink(logpath);
    else
        printf("\n  service log kept: %s\n", logpath);
    return 0;
}

static int answers(const proc *p)
{
    return seen_count(p, NULL) >= 0;
}

static void test_three_see_each_other(void)
{
    for (int i = 0; i < 3; i++)
        procs[i] = start_proc("0.2");
    for (int i = 0; i < 3; i++) {
        TS_WAIT_UNTIL(answers(&procs[i]), 10);
        CU_ASSERT_FATAL(answers(&procs[i]));
    }
    double t0 = ts_now();
    TS_WAIT_UNTIL(all_see(3), 2.0);
    CU_ASSERT_FATAL(all_see(3));
    printf("\n  3 instances seen by all %.0f ms after the last one served HTTP\n",
           (ts_now() - t0) * 1000);
}

static void test_admin_get_instances(void)
{
    daebus_error err = {0};
    daebus_caller *c = daebus_caller_create(redis.url, NULL, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    cJSON *reply = NULL;
    int rc = daebus_caller_request(c, SERVICE, "get_instances", NULL, 5.0, &reply, &err);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL(cJSON_GetObjectItem(reply, "count")->valueint, 3);
    CU_ASSERT(cJSON_IsFalse(cJSON_GetObjectItem(reply, "stale")));
    const cJSON *list = cJSON_GetObjectItem(reply, "instances"), *e;
    CU_ASSERT_EQUAL(cJSON_GetArraySize(list), 3);
    int found = 0, selves = 0;
    cJSON_ArrayForEach(e, list)
    {
        int pid = cJSON_GetObjectItem(e, "pid")->valueint;
        int port = cJSON_GetObjectItem(e, "http_port")->valueint;
        for (int i = 0; i < 3; i++)
            found += procs[i].pid == pid && procs[i].port == port;
        selves += cJSON_IsTrue(cJSON_GetObjectItem(e, "self"));
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(e, "id"));
        char want[32];
        snprintf(want, sizeof want, "-%d-", pid);
        CU_ASSERT(id && strstr(id, want) != NULL);
        CU_ASSERT(cJSON_GetObjectItem(e, "last_seen")->valuedouble > 1e9);
    }
    CU_ASSERT_EQUAL(found, 3);
    CU_ASSERT_EQUAL(selves, 1);
    cJSON_Delete(reply);
    daebus_caller_destroy(c);
}

static void test_kill9_leaves_within_3_heartbeats(void)
{
    reap(&procs[0], SIGKILL);
    double t0 = ts_now();
    TS_WAIT_UNTIL(all_see(2), 3 * HEARTBEAT + 0.4);
    double took = ts_now() - t0;
    CU_ASSERT(all_see(2));
    printf("\n  killed instance gone from the others' lists after %.0f ms (limit %.0f + 400)\n",
           took * 1000, 3 * HEARTBEAT * 1000);
    procs[0] = start_proc("0.2");
    TS_WAIT_UNTIL(all_see(3), 10);
    CU_ASSERT(all_see(3));
}

static void test_graceful_stop_deletes_keys(void)
{
    /* A slow heartbeat (window 5 s): only the deletion can remove it quickly. */
    procs[3] = start_proc("2");
    TS_WAIT_UNTIL(all_see(4), 10);
    CU_ASSERT_FATAL(all_see(4));
    char key[256];
    daebus_error err = {0};
    daebus_caller *c = daebus_caller_create(redis.url, NULL, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    cJSON *reply = NULL;
    CU_ASSERT_EQUAL_FATAL(
        daebus_caller_request(c, SERVICE, "get_instances", NULL, 5.0, &reply, &err), 0);
    const cJSON *e;
    key[0] = '\0';
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(reply, "instances"))
    {
        if (cJSON_GetObjectItem(e, "pid")->valueint == procs[3].pid)
            snprintf(key, sizeof key, "daebus:%s:instance:%s", SERVICE,
                     cJSON_GetStringValue(cJSON_GetObjectItem(e, "id")));
    }
    cJSON_Delete(reply);
    daebus_caller_destroy(c);
    CU_ASSERT_FATAL(key[0] != '\0');
    CU_ASSERT_EQUAL(redis_exists(key), 1);
    double t0 = ts_now();
    reap(&procs[3], SIGTERM);
    CU_ASSERT_EQUAL(redis_exists(key), 0);
    TS_WAIT_UNTIL(all_see(3), 1.0);
    CU_ASSERT(all_see(3));
    printf("\n  stopped instance gone from every list after %.0f ms (its window: 5000)\n",
           (ts_now() - t0) * 1000);
}

static int any_stale(void)
{
    for (int i = 0; i < MAX_PROCS; i++) {
        int stale = 0;
        if (procs[i].pid > 0 && seen_count(&procs[i], &stale) >= 0 && stale)
            return 1;
    }
    return 0;
}

/* Lines of the shared service log holding needle. */
static int log_count(const char *needle)
{
    size_t len = 0;
    char *text = ts_read_file(logpath, &len);
    int n = 0;
    for (const char *p = text; p && (p = strstr(p, needle)) != NULL; p++)
        n++;
    free(text);
    return n;
}

static void test_redis_restart(void)
{
    ts_redis_kill(&redis);
    TS_WAIT_UNTIL(any_stale(), 5);
    CU_ASSERT(any_stale());
    /* The last view is kept while Redis is away. */
    int stale = 0;
    CU_ASSERT_EQUAL(seen_count(&procs[1], &stale), 3);
    CU_ASSERT_EQUAL_FATAL(ts_redis_restart(&redis), 0);
    double t0 = ts_now();
    TS_WAIT_UNTIL(all_see(3), 10);
    CU_ASSERT(all_see(3));
    char key[128];
    snprintf(key, sizeof key, "daebus:%s:instances", SERVICE);
    CU_ASSERT_EQUAL(redis_exists(key), 1);
    /* One line per change of the link, per instance: at most one of each per
     * live instance (one whose ticks all fell outside the short outage saw
     * nothing), and each instance that lost Redis saw it come back. */
    int lost = log_count("cannot reach Redis");
    TS_WAIT_UNTIL(log_count("Redis reachable again") == lost, 2);
    CU_ASSERT(lost >= 1 && lost <= 3);
    CU_ASSERT_EQUAL(log_count("Redis reachable again"), lost);
    printf("\n  lists whole again %.0f ms after Redis came back\n", (ts_now() - t0) * 1000);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("instances", init, cleanup);
    CU_add_test(s, "three instances see each other", test_three_see_each_other);
    CU_add_test(s, "admin get_instances over a Redis caller", test_admin_get_instances);
    CU_add_test(s, "kill -9: gone within 3 heartbeats", test_kill9_leaves_within_3_heartbeats);
    CU_add_test(s, "graceful stop deletes its keys", test_graceful_stop_deletes_keys);
    CU_add_test(s, "Redis restart: all announce again", test_redis_restart);
    return ts_run_cunit();
}
