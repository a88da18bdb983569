/* Durable actions across crashes (framework/bus/bus_durable.c) with real
 * service processes: this binary started again as "--child <service>
 * <redis url>" is one replica of the service (visibility 1 s, 3 attempts).
 * A request taken by a replica killed -9 is run again by another one after
 * the visibility time-out, with attempt 2 visible to its handler; a handler
 * that aborts its process every time (poison) is dead-lettered after 3
 * attempts while another request taken with it is still answered; the
 * admin blueprint lists the dead letters (paged) and requeues them (by id,
 * all). */
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>
#include "admin/admin.h"
#include "durable_common.h"

static ts_redis redis;
static redisContext *rc;
static bool child_mode;
static const char *self_path;

/* ---- the service ---- */

static daebus_bus *bus_of(daebus_bus_request *req)
{
    return daebus_bus_request_bus(req);
}

static int reply_attempt(daebus_bus_request *req, const char *key)
{
    cJSON *out = cJSON_CreateObject();
    cJSON_AddNumberToObject(out, "attempt", daebus_bus_request_attempt(req));
    if (key)
        cJSON_AddTrueToObject(out, key);
    return daebus_bus_reply_take(req, out);
}

/* The first attempt never ends (its replica is killed -9). */
ACTION(dur_hang, "hang")
{
    (void)payload;
    if (daebus_bus_request_attempt(req) == 1) {
        const char *argv[] = {"SET", "test:hang:started", "1"};
        daebus_bus_redis(bus_of(req), 3, argv, NULL, NULL);
        for (;;)
            sleep(1);
    }
    return reply_attempt(req, NULL);
}

/* Aborts its process (a child replica) every time; in the test process it
 * answers (the bug was fixed before the requeue). */
ACTION(dur_poison, "poison")
{
    (void)payload;
    const char *argv[] = {"INCR", "test:poison_runs"};
    daebus_bus_redis(bus_of(req), 2, argv, NULL, NULL);
    if (child_mode) {
        usleep(300 * 1000); /* crashes mid-work: what ran beside it completes */
        abort();
    }
    return reply_attempt(req, "recovered");
}

ACTION(dur_work2, "work")
{
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(payload, "id"));
    char key[160];
    snprintf(key, sizeof key, "test:runs:%s", id ? id : "?");
    const char *argv[] = {"INCR", key};
    daebus_bus_redis(bus_of(req), 2, argv, NULL, NULL);
    return reply_attempt(req, NULL);
}

static int start(ts_service *s, const char *svc, const char *url)
{
    static daebus_bus_options bo = DAEBUS_BUS_OPTIONS_INIT;
    bo.durable_visibility = 1;
    bo.durable_max_attempts = 3;
    ts_service_options o = {.service = svc,
                            .redis_url = url,
                            .bus = true,
                            .bus_options = &bo,
                            .wait_bus = 5,
                            .max_workers = 4,
                            .log_level = DAEBUS_LOG_WARNING};
    o.blueprints[0] = &daebus_admin_bp;
    return ts_service_start(s, &o);
}

static int child_main(const char *svc, const char *url)
{
    child_mode = true;
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    ts_service s;
    if (start(&s, svc, url) != 0)
        return 1;
    for (;;)
        pause(); /* killed -9, or aborted by a poison request */
}

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
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

static bool exited(pid_t pid)
{
    return waitpid(pid, NULL, WNOHANG) == pid;
}

/* Reads l until a message containing want arrives (others appended to seen). */
static bool await_msg(redisContext *l, const char *want, char *seen, size_t cap)
{
    for (;;) {
        char *m = raw_next(l);
        if (!m)
            return false;
        bool hit = strstr(m, want) != NULL;
        size_t used = seen ? strlen(seen) : 0;
        if (seen && used + strlen(m) + 2 < cap)
            snprintf(seen + used, cap - used, "%s\n", m);
        free(m);
        if (hit)
            return true;
    }
}

static int init(void)
{
    return dur_suite_init(&redis, &rc);
}

static int cleanup(void)
{
    return dur_suite_cleanup(&redis, rc);
}

/* ---- tests ---- */

static void test_killed_replica_retried(void)
{
    redisContext *l = dur_listen(redis.port, "dur:k", 10);
    CU_ASSERT_PTR_NOT_NULL_FATAL(l);
    CU_ASSERT_EQUAL(dur_add(rc, "dur_k", "hang", "k1", "dur:k", 60000), 0);
    pid_t pid = spawn("dur_k");
    CU_ASSERT_FATAL(pid > 0);
    TS_WAIT_UNTIL(dur_int(rc, "EXISTS test:hang:started") == 1, 10);
    CU_ASSERT_EQUAL(dur_int(rc, "EXISTS test:hang:started"), 1);
    kill_child(pid);
    CU_ASSERT_EQUAL(dur_pending(rc, "dur_k"), 1); /* taken by the dead replica */
    ts_service s;
    double t0 = ts_now();
    CU_ASSERT_EQUAL_FATAL(start(&s, "dur_k", redis.url), 0);
    char seen[4096] = "";
    CU_ASSERT(await_msg(l, "\"attempt\":2", seen, sizeof seen));
    CU_ASSERT(ts_now() - t0 < 5);
    struct daebus_bus_stats st;
    /* The reply leaves inside the completion script; the counter follows it. */
    TS_WAIT_UNTIL((daebus_bus_get_stats(s.bus, &st), st.durable_completed == 1), 3);
    CU_ASSERT_EQUAL(st.durable_retried, 1);
    CU_ASSERT_EQUAL(st.durable_completed, 1);
    TS_WAIT_UNTIL(dur_pending(rc, "dur_k") == 0, 3);
    CU_ASSERT_EQUAL(dur_pending(rc, "dur_k"), 0);
    CU_ASSERT_EQUAL(dur_int(rc, "XLEN daebus:dur_k:requests"), 0);
    ts_service_stop(&s);
    redisFree(l);
}

static char poison_seen[8192];

static void test_poison_dead_lettered(void)
{
    redisContext *l = dur_listen(redis.port, "dur:p", 10);
    CU_ASSERT_PTR_NOT_NULL_FATAL(l);
    CU_ASSERT_EQUAL(dur_add(rc, "dur_p", "poison", "p1", "dur:p", 120000), 0);
    CU_ASSERT_EQUAL(dur_add(rc, "dur_p", "work", "w1", "dur:p", 120000), 0);
    int spawns = 0;
    while (spawns < 8 && dur_int(rc, "XLEN daebus:dur_p:dead") < 1) {
        pid_t pid = spawn("dur_p");
        CU_ASSERT_FATAL(pid > 0);
        spawns++;
        double end = ts_now() + 8;
        while (ts_now() < end && !exited(pid) && dur_int(rc, "XLEN daebus:dur_p:dead") < 1)
            ts_sleep_ms(20);
        if (!exited(pid))
            kill_child(pid);
    }
    CU_ASSERT_EQUAL(dur_int(rc, "XLEN daebus:dur_p:dead"), 1);
    CU_ASSERT_EQUAL(dur_int(rc, "GET test:poison_runs"), 3);
    CU_ASSERT_EQUAL(dur_int(rc, "GET test:runs:w1"), 1);
    CU_ASSERT_EQUAL(spawns, 4); /* 3 aborted; the 4th dead-letters it */
    CU_ASSERT(
        await_msg(l, "Request dead-lettered after 3 attempts", poison_seen, sizeof poison_seen));
    /* The other request, taken with the poison, was answered. */
    CU_ASSERT(strstr(poison_seen, "\"request_id\":\"w1\"") != NULL ||
              await_msg(l, "\"request_id\":\"w1\"", poison_seen, sizeof poison_seen));
    CU_ASSERT_EQUAL(dur_int(rc, "EXISTS daebus:dur_p:done:w1"), 1);
    CU_ASSERT_EQUAL(dur_int(rc, "XLEN daebus:dur_p:requests"), 0);
    CU_ASSERT_EQUAL(dur_pending(rc, "dur_p"), 0);
    redisFree(l);
}

/* One admin call on the bus (pub/sub); returns the payload or NULL (err). */
static cJSON *admin(daebus_caller *c, const char *action, const char *payload, char *err,
                    size_t errlen)
{
    cJSON *p = cJSON_Parse(payload), *out = NULL;
    daebus_error e = {0};
    int r = daebus_caller_request(c, "dur_p", action, p, 5.0, &out, &e);
    cJSON_Delete(p);
    if (err)
        snprintf(err, errlen, "%s", r == 0 ? "" : e.message);
    if (r != 0) {
        cJSON_Delete(out); /* an error reply's payload */
        out = NULL;
    }
    return out;
}

static void test_admin_list_and_requeue(void)
{
    /* A second dead letter by hand, for paging and "all". */
    const char *req = "{\"action\":\"work\",\"payload\":{\"id\":\"fk\"},\"reply_to\":\"dur:p\","
                      "\"request_id\":\"fk\",\"service\":\"dur_p\"}";
    redisReply *x = redisCommand(rc,
                                 "XADD daebus:dur_p:dead * req %s reason manual attempts 5 "
                                 "at 1",
                                 req);
    CU_ASSERT_PTR_NOT_NULL_FATAL(x);
    freeReplyObject(x);
    ts_service s;
    CU_ASSERT_EQUAL_FATAL(start(&s, "dur_p", redis.url), 0);
    daebus_error e = {0};
    daebus_caller *c = daebus_caller_create(redis.url, NULL, &e);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    redisContext *l = dur_listen(redis.port, "dur:p", 10);
    CU_ASSERT_PTR_NOT_NULL_FATAL(l);

    cJSON *page = admin(c, "dead_letters", "{\"count\": 1}", NULL, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(page);
    CU_ASSERT_EQUAL(cJSON_GetObjectItem(page, "count")->valueint, 1);
    CU_ASSERT_EQUAL(cJSON_GetObjectItem(page, "total")->valueint, 2);
    const cJSON *first = cJSON_GetArrayItem(cJSON_GetObjectItem(page, "entries"), 0);
    const cJSON *freq = cJSON_GetObjectItem(first, "req");
    CU_ASSERT_STRING_EQUAL(cJSON_GetStringValue(cJSON_GetObjectItem(freq, "action")), "poison");
    CU_ASSERT_EQUAL(cJSON_GetObjectItem(first, "attempts")->valueint, 3);
    CU_ASSERT_PTR_NOT_NULL(cJSON_GetStringValue(cJSON_GetObjectItem(first, "reason")));
    char poison_id[64], next[64];
    snprintf(poison_id, sizeof poison_id, "%s",
             cJSON_GetStringValue(cJSON_GetObjectItem(first, "id")));
    const char *nx = cJSON_GetStringValue(cJSON_GetObjectItem(page, "next"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(nx);
    snprintf(next, sizeof next, "%s", nx);
    cJSON_Delete(page);
    char body[160];
    snprintf(body, sizeof body, "{\"count\": 1, \"start\": \"%s\"}", next);
    page = admin(c, "dead_letters", body, NULL, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(page);
    CU_ASSERT_EQUAL(cJSON_GetObjectItem(page, "count")->valueint, 1);
    CU_ASSERT(cJSON_IsNull(cJSON_GetObjectItem(page, "next")));
    cJSON_Delete(page);

    char err[256];
    CU_ASSERT_PTR_NULL(admin(c, "requeue_dead", "{}", err, sizeof err));
    CU_ASSERT_STRING_EQUAL(err, "Give an id or all: true");
    CU_ASSERT_PTR_NULL(admin(c, "requeue_dead", "{\"id\": \"1-1\"}", err, sizeof err));
    CU_ASSERT_STRING_EQUAL(err, "No dead letter 1-1");

    snprintf(body, sizeof body, "{\"id\": \"%s\"}", poison_id);
    cJSON *r = admin(c, "requeue_dead", body, NULL, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL(cJSON_GetObjectItem(r, "requeued")->valueint, 1);
    cJSON_Delete(r);
    CU_ASSERT(await_msg(l, "\"recovered\":true", NULL, 0)); /* run again, fixed */
    CU_ASSERT_EQUAL(dur_int(rc, "XLEN daebus:dur_p:dead"), 1);

    r = admin(c, "requeue_dead", "{\"all\": true}", NULL, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL(cJSON_GetObjectItem(r, "requeued")->valueint, 1);
    cJSON_Delete(r);
    CU_ASSERT(await_msg(l, "\"request_id\":\"fk\"", NULL, 0));
    CU_ASSERT_EQUAL(dur_int(rc, "GET test:runs:fk"), 1);
    CU_ASSERT_EQUAL(dur_int(rc, "XLEN daebus:dur_p:dead"), 0);
    TS_WAIT_UNTIL(dur_int(rc, "XLEN daebus:dur_p:requests") == 0, 3);
    CU_ASSERT_EQUAL(dur_int(rc, "XLEN daebus:dur_p:requests"), 0);

    daebus_caller_destroy(c);
    redisFree(l);
    ts_service_stop(&s);
}

int main(int argc, char **argv)
{
    self_path = argv[0];
    if (argc == 4 && strcmp(argv[1], "--child") == 0)
        return child_main(argv[2], argv[3]);
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("bus_durable_crash", init, cleanup);
    CU_add_test(s, "a replica killed -9: run again, attempt 2", test_killed_replica_retried);
    CU_add_test(s, "poison: dead-lettered after 3, the other answered", test_poison_dead_lettered);
    CU_add_test(s, "admin: dead_letters paged, requeue_dead by id and all",
                test_admin_list_and_requeue);
    return ts_run_cunit();
}
