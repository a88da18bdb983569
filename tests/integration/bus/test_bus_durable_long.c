/* Durable actions whose handler runs longer than the visibility time-out
 * (framework/bus/bus_durable_finish.c: the running entries are refreshed
 * with XCLAIM ... JUSTID every visibility/3). Real service processes: this
 * binary started again as "--child <service> <redis url>" is one replica
 * (visibility 1 s, 4 workers); its handler "long" sleeps 3.5 s.
 *   - two replicas, one request: it runs exactly once, attempt 1, and the
 *     caller gets one reply (the idle replica's XAUTOCLAIM never takes it);
 *   - the replica running it is killed -9 mid-handler: it stops refreshing,
 *     so the other replica runs it after the visibility time-out, attempt 2.
 */
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>
#include "durable_common.h"

#define HANDLER_MS 3500

static ts_redis redis;
static redisContext *rc;
static const char *self_path;

/* ---- the service (child processes) ---- */

static int run_cmd(daebus_bus_request *req, int argc, const char **argv)
{
    return daebus_bus_redis(daebus_bus_request_bus(req), argc, argv, NULL, NULL);
}

/* Records who runs it (pid) and each run per attempt, sleeps, answers. */
ACTION(dur_long, "long")
{
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(payload, "id"));
    int attempt = daebus_bus_request_attempt(req);
    char key[160], pid[24];
    snprintf(key, sizeof key, "test:long:pid:%s", id ? id : "?");
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    const char *set[] = {"SET", key, pid};
    run_cmd(req, 3, set);
    snprintf(key, sizeof key, "test:long:runs:%s:%d", id ? id : "?", attempt);
    const char *incr[] = {"INCR", key};
    run_cmd(req, 2, incr);
    usleep(HANDLER_MS * 1000);
    cJSON *out = cJSON_CreateObject();
    cJSON_AddNumberToObject(out, "attempt", attempt);
    cJSON_AddNumberToObject(out, "pid", (double)getpid());
    return daebus_bus_reply_take(req, out);
}

static int child_main(const char *svc, const char *url)
{
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    static daebus_bus_options bo = DAEBUS_BUS_OPTIONS_INIT;
    bo.durable_visibility = 1;
    ts_service_options o = {.service = svc,
                            .redis_url = url,
                            .bus = true,
                            .bus_options = &bo,
                            .wait_bus = 5,
                            .max_workers = 4,
                            .log_level = DAEBUS_LOG_WARNING};
    ts_service s;
    if (ts_service_start(&s, &o) != 0)
        return 1;
    for (;;)
        pause(); /* killed */
}

/* ---- the test ---- */

static pid_t spawn(const char *svc)
{
    pid_t pid = fork();
    if (pid == 0) {
        execl(self_path, self_path, "--child", svc, redis.url, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void kill_child(pid_t pid)
{
    if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
}

/* Connections whose last command was XREADGROUP (readers waiting), or -1.
 * (XINFO CONSUMERS would not do: Redis 7.0 makes a consumer only once it has
 * read something.) */
static long readers(void)
{
    redisReply *r = redisCommand(rc, "CLIENT LIST");
    long n = r && r->type == REDIS_REPLY_STRING ? 0 : -1;
    for (const char *p = n == 0 ? r->str : NULL; p && (p = strstr(p, "cmd=xreadgroup")); p++)
        n++;
    if (r)
        freeReplyObject(r);
    return n;
}

/* Two replicas of svc, both reading their stream (else none is left). */
static bool two_replicas(const char *svc, pid_t pids[2])
{
    pids[0] = spawn(svc);
    pids[1] = spawn(svc);
    TS_WAIT_UNTIL(readers() == 2, 10);
    if (pids[0] > 0 && pids[1] > 0 && readers() == 2)
        return true;
    kill_child(pids[0]);
    kill_child(pids[1]);
    return false;
}

static void test_long_handler_runs_once(void)
{
    pid_t pids[2];
    CU_ASSERT_FATAL(two_replicas("dl_once", pids));
    redisContext *l = dur_listen(redis.port, "dl:once", 10);
    CU_ASSERT_PTR_NOT_NULL_FATAL(l);
    double t0 = ts_now();
    CU_ASSERT_EQUAL(dur_add(rc, "dl_once", "long", "o1", "dl:once", 60000), 0);
    char *m = raw_next(l);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT(strstr(m, "\"attempt\":1") != NULL);
    CU_ASSERT(strstr(m, "\"request_id\":\"o1\"") != NULL);
    free(m);
    CU_ASSERT(ts_now() - t0 >= HANDLER_MS / 1000.0);
    /* No second reply in 3 s: 3 more visibility time-outs in which the idle
     * replica could have taken it (it would answer at 3.5 s + 1 s at most). */
    struct timeval quiet = {3, 0};
    redisSetTimeout(l, quiet);
    m = raw_next(l);
    CU_ASSERT_PTR_NULL(m);
    free(m);
    CU_ASSERT_EQUAL(dur_int(rc, "GET test:long:runs:o1:1"), 1);
    CU_ASSERT_EQUAL(dur_int(rc, "EXISTS test:long:runs:o1:2"), 0);
    CU_ASSERT_EQUAL(dur_int(rc, "EXISTS daebus:dl_once:done:o1"), 1);
    CU_ASSERT_EQUAL(dur_pending(rc, "dl_once"), 0);
    CU_ASSERT_EQUAL(dur_int(rc, "XLEN daebus:dl_once:requests"), 0);
    redisFree(l);
    kill_child(pids[0]);
    kill_child(pids[1]);
}

static void test_killed_mid_handler_retried(void)
{
    pid_t pids[2];
    CU_ASSERT_FATAL(two_replicas("dl_kill", pids));
    redisContext *l = dur_listen(redis.port, "dl:kill", 10);
    CU_ASSERT_PTR_NOT_NULL_FATAL(l);
    CU_ASSERT_EQUAL(dur_add(rc, "dl_kill", "long", "k1", "dl:kill", 60000), 0);
    TS_WAIT_UNTIL(dur_int(rc, "GET test:long:pid:k1") > 0, 5);
    pid_t runner = (pid_t)dur_int(rc, "GET test:long:pid:k1");
    CU_ASSERT_FATAL(runner == pids[0] || runner == pids[1]);
    /* Mid-handler, after at least one refresh (visibility/3). */
    ts_sleep_ms(1200);
    CU_ASSERT_EQUAL(dur_int(rc, "EXISTS test:long:runs:k1:2"), 0); /* refreshed: not taken */
    kill_child(runner);
    pid_t other = runner == pids[0] ? pids[1] : pids[0];
    double t0 = ts_now();
    char *m = raw_next(l);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT(strstr(m, "\"attempt\":2") != NULL);
    CU_ASSERT(strstr(m, "\"request_id\":\"k1\"") != NULL);
    free(m);
    /* Taken after the visibility time-out (1 s), then the 3.5 s handler. */
    double took = ts_now() - t0;
    CU_ASSERT(took >= HANDLER_MS / 1000.0);
    CU_ASSERT(took < HANDLER_MS / 1000.0 + 4);
    CU_ASSERT_EQUAL(dur_int(rc, "GET test:long:pid:k1"), other);
    CU_ASSERT_EQUAL(dur_int(rc, "GET test:long:runs:k1:1"), 1);
    CU_ASSERT_EQUAL(dur_int(rc, "GET test:long:runs:k1:2"), 1);
    TS_WAIT_UNTIL(dur_pending(rc, "dl_kill") == 0, 3);
    CU_ASSERT_EQUAL(dur_pending(rc, "dl_kill"), 0);
    redisFree(l);
    kill_child(other);
}

static int init(void)
{
    if (ts_redis_start(&redis, NULL) != 0)
        return -1;
    rc = raw_connect(redis.port);
    return rc ? 0 : -1;
}

static int cleanup(void)
{
    redisFree(rc);
    ts_redis_stop(&redis);
    return 0;
}

int main(int argc, char **argv)
{
    self_path = argv[0];
    if (argc == 4 && strcmp(argv[1], "--child") == 0)
        return child_main(argv[2], argv[3]);
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("bus_durable_long", init, cleanup);
    CU_add_test(s, "a handler longer than the visibility: run once, attempt 1",
                test_long_handler_runs_once);
    CU_add_test(s, "its replica killed -9 mid-handler: run again, attempt 2",
                test_killed_mid_handler_retried);
    return ts_run_cunit();
}
