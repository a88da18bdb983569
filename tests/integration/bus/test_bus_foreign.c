/* Foreign clients against a C service: a Python client (python3-redis)
 * publishing the exact JSON of PROTOCOL.md §1 and a DaebusCaller-shaped
 * Python caller; and the daebus-call tool's output and exit codes. */
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include "common.h"

#define SVC "foreign_svc"

static ts_redis redis;
static daebus_app *app;
static daebus_bus *bus;
static pthread_mutex_t rec_lock = PTHREAD_MUTEX_INITIALIZER;
static cJSON *recorded;
static atomic_int record_count;

ACTION(echo, "echo")
{
    return daebus_bus_reply(req, payload);
}

ACTION(progress3, "progress3")
{
    cJSON *p = cJSON_CreateObject();
    cJSON_AddNumberToObject(p, "step", 1);
    daebus_bus_progress(req, p, 10);
    cJSON_ReplaceItemInObject(p, "step", cJSON_CreateNumber(2));
    daebus_bus_progress(req, p, 150);
    cJSON_ReplaceItemInObject(p, "step", cJSON_CreateNumber(3));
    daebus_bus_progress(req, p, -1);
    cJSON_Delete(p);
    cJSON *f = cJSON_CreateObject();
    cJSON_AddTrueToObject(f, "done");
    return daebus_bus_reply_take(req, f);
}

ACTION(fail_explicit, "fail_explicit")
{
    return daebus_bus_reply_error(req, "bad thing");
}

ACTION(slow, "slow")
{
    ts_sleep_ms(3000);
    return daebus_bus_reply(req, payload);
}

ACTION(record, "record")
{
    pthread_mutex_lock(&rec_lock);
    cJSON_Delete(recorded);
    recorded = cJSON_Duplicate(payload, 1);
    pthread_mutex_unlock(&rec_lock);
    atomic_fetch_add(&record_count, 1);
    return 0;
}

static int init(void)
{
    if (ts_redis_start(&redis, NULL) != 0)
        return -1;
    app = start_app(SVC, redis.url, 8, NULL, &bus);
    return app ? 0 : -1;
}

static int cleanup(void)
{
    ts_app_stop(app);
    ts_redis_stop(&redis);
    cJSON_Delete(recorded);
    return 0;
}

static void test_python_client(void)
{
    const char *src = getenv("DAEBUS_SOURCE_DIR");
    CU_ASSERT_PTR_NOT_NULL_FATAL(src);
    char cmd[1024], out[4096];
    int before = atomic_load(&record_count);
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 %s/tests/integration/bus/foreign_client.py %d %s 2>&1", src,
             redis.port, SVC);
    int rc = run(cmd, out, sizeof out);
    if (rc != 0)
        fprintf(stderr, "\n%s\n", out);
    CU_ASSERT_EQUAL(rc, 0);
    TS_WAIT_UNTIL(atomic_load(&record_count) > before, 3);
    pthread_mutex_lock(&rec_lock);
    cJSON *expect = cJSON_Parse("{\"x\":1,\"y\":\"z\"}");
    CU_ASSERT_TRUE(cJSON_Compare(recorded, expect, 1));
    cJSON_Delete(expect);
    pthread_mutex_unlock(&rec_lock);
}

static void test_daebus_call(void)
{
    const char *bin = getenv("DAEBUS_BINARY_DIR");
    CU_ASSERT_PTR_NOT_NULL_FATAL(bin);
    char tool[600], cmd[2048], out[4096];
    snprintf(tool, sizeof tool, "%s/bin/daebus-call", bin);
    CU_ASSERT_EQUAL_FATAL(access(tool, X_OK), 0);

    /* success: the final payload as JSON, exit 0 */
    snprintf(cmd, sizeof cmd, "%s " SVC " echo '{\"a\":[1,2]}' --redis %s", tool, redis.url);
    CU_ASSERT_EQUAL(run(cmd, out, sizeof out), 0);
    CU_ASSERT_STRING_EQUAL(out, "{\"a\":[1,2]}\n");
    /* progress lines, then the final payload; URL from the environment */
    snprintf(cmd, sizeof cmd, "DAEBUS_REDIS_URL=%s %s " SVC " progress3", redis.url, tool);
    CU_ASSERT_EQUAL(run(cmd, out, sizeof out), 0);
    CU_ASSERT_STRING_EQUAL(out, "{\"step\":1,\"progress_percentage\":10}\n"
                                "{\"step\":2,\"progress_percentage\":100}\n"
                                "{\"step\":3}\n"
                                "{\"done\":true}\n");
    /* error reply: exit 1, message on stderr */
    snprintf(cmd, sizeof cmd, "%s " SVC " fail_explicit --redis %s 2>&1", tool, redis.url);
    CU_ASSERT_EQUAL(run(cmd, out, sizeof out), 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "bad thing"));
    snprintf(cmd, sizeof cmd, "%s " SVC " nope --redis %s 2>&1", tool, redis.url);
    CU_ASSERT_EQUAL(run(cmd, out, sizeof out), 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "Unknown action 'nope'"));
    /* time-out: exit 2 */
    double t0 = ts_now();
    snprintf(cmd, sizeof cmd, "%s " SVC " slow --timeout 0.3 --redis %s 2>&1", tool, redis.url);
    CU_ASSERT_EQUAL(run(cmd, out, sizeof out), 2);
    CU_ASSERT_TRUE(ts_now() - t0 < 6.0); /* 0.3 s time-out; generous for sanitizer builds */
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "timed out"));
    /* no connection: exit 2 */
    snprintf(cmd, sizeof cmd, "%s " SVC " echo --redis redis://127.0.0.1:%d 2>&1", tool,
             ts_free_port());
    CU_ASSERT_EQUAL(run(cmd, out, sizeof out), 2);
    /* usage errors: exit 2 */
    snprintf(cmd, sizeof cmd, "%s 2>&1", tool);
    CU_ASSERT_EQUAL(run(cmd, out, sizeof out), 2);
    snprintf(cmd, sizeof cmd, "%s " SVC " echo '{bad' --redis %s 2>&1", tool, redis.url);
    CU_ASSERT_EQUAL(run(cmd, out, sizeof out), 2);
    snprintf(cmd, sizeof cmd, "%s " SVC " echo --timeout abc 2>&1", tool);
    CU_ASSERT_EQUAL(run(cmd, out, sizeof out), 2);
    snprintf(cmd, sizeof cmd, "%s --help", tool);
    CU_ASSERT_EQUAL(run(cmd, out, sizeof out), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "usage"));
    /* --publish prints the receiver count */
    snprintf(cmd, sizeof cmd, "%s --publish " SVC " '{\"action\":\"record\",\"q\":9}' --redis %s",
             tool, redis.url);
    int before = atomic_load(&record_count);
    CU_ASSERT_EQUAL(run(cmd, out, sizeof out), 0);
    CU_ASSERT_STRING_EQUAL(out, "1\n");
    TS_WAIT_UNTIL(atomic_load(&record_count) > before, 3);
    /* --listen prints each message as a JSON line, --count stops it */
    snprintf(cmd, sizeof cmd, "%s --listen lchan --count 2 --redis %s", tool, redis.url);
    FILE *f = popen(cmd, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    /* Publish until the listener is subscribed, then once more. */
    long got = 0;
    double until = ts_now() + 5;
    while (got < 1 && ts_now() < until) {
        got = raw_publish(redis.port, "lchan", "{\"m\":1}");
        if (got < 1)
            ts_sleep_ms(20);
    }
    raw_publish(redis.port, "lchan", "{\"m\":2}");
    size_t n = fread(out, 1, sizeof out - 1, f);
    out[n] = 0;
    int st = pclose(f);
    CU_ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CU_ASSERT_STRING_EQUAL(out, "{\"m\":1}\n{\"m\":2}\n");

    /* --listen without --count ends on SIGINT with status 0. */
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        execl(tool, tool, "--listen", "lchan2", "--redis", redis.url, (char *)NULL);
        _exit(127);
    }
    got = 0;
    until = ts_now() + 5;
    while (got < 1 && ts_now() < until) {
        got = raw_publish(redis.port, "lchan2", "{}");
        if (got < 1)
            ts_sleep_ms(20);
    }
    CU_ASSERT_EQUAL(got, 1);
    kill(pid, SIGINT);
    int wst = 0;
    waitpid(pid, &wst, 0);
    CU_ASSERT_TRUE(WIFEXITED(wst) && WEXITSTATUS(wst) == 0);
}

/* Runs daebus-call against a fake service (a raw subscriber on "bigsvc") that
 * answers with a reply of 3 MB; out gets daebus-call's stderr, *secs how long
 * it took. Returns: its exit status (-1 if the request never came). */
static int call_with_big_reply(const char *tool, const char *extra, char *out, size_t cap,
                               double *secs)
{
    redisContext *sub = raw_subscribe(redis.port, "bigsvc");
    if (!sub)
        return -1;
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s bigsvc big --timeout 20 %s --redis %s 2>&1 >/dev/null", tool,
             extra, redis.url);
    double t0 = ts_now();
    FILE *f = popen(cmd, "r");
    char *req = f ? raw_next(sub) : NULL;
    redisFree(sub);
    cJSON *r = req ? cJSON_Parse(req) : NULL;
    const char *reply_to = cJSON_GetStringValue(cJSON_GetObjectItem(r, "reply_to"));
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(r, "request_id"));
    if (reply_to && id) {
        size_t big = 3 * 1000 * 1000;
        char *msg = malloc(big + 200);
        int n = snprintf(msg, 200, "{\"status\":\"success\",\"payload\":{\"big\":\"");
        memset(msg + n, 'x', big);
        snprintf(msg + n + big, 200, "\"},\"request_id\":\"%s\",\"final\":true}", id);
        raw_publish(redis.port, reply_to, msg);
        free(msg);
    }
    cJSON_Delete(r);
    free(req);
    if (!f)
        return -1;
    size_t got = fread(out, 1, cap - 1, f);
    out[got] = '\0';
    int st = pclose(f);
    *secs = ts_now() - t0;
    return reply_to && id && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A reply over the caller's max_message_size (1 MiB unless --max-size says
 * otherwise) makes daebus-call exit 2 at once, not at its time-out. */
static void test_daebus_call_reply_too_large(void)
{
    const char *bin = getenv("DAEBUS_BINARY_DIR");
    CU_ASSERT_PTR_NOT_NULL_FATAL(bin);
    char tool[600], out[4096];
    snprintf(tool, sizeof tool, "%s/bin/daebus-call", bin);
    double secs = 0;
    CU_ASSERT_EQUAL(call_with_big_reply(tool, "", out, sizeof out, &secs), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "reply too large"));
    CU_ASSERT_TRUE(secs < 10.0); /* the time-out is 20 s */
    /* A larger --max-size reads it. */
    CU_ASSERT_EQUAL(call_with_big_reply(tool, "--max-size 4000000", out, sizeof out, &secs), 0);
    CU_ASSERT_STRING_EQUAL(out, "");
    /* A smaller one refuses it as well; a bad value is a usage error. */
    CU_ASSERT_EQUAL(call_with_big_reply(tool, "--max-size 2000000", out, sizeof out, &secs), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "reply too large"));
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s bigsvc big --max-size 10 2>&1", tool);
    CU_ASSERT_EQUAL(run(cmd, out, sizeof out), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "--max-size"));
}

static void count_progress(daebus_caller *c, const cJSON *payload, void *user)
{
    (void)c;
    cJSON_AddItemToArray((cJSON *)user, cJSON_Duplicate(payload, 1));
}

static void test_c_caller_to_python_service(void)
{
    const char *src = getenv("DAEBUS_SOURCE_DIR");
    CU_ASSERT_PTR_NOT_NULL_FATAL(src);
    char cmd[1024], line[64] = {0};
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 %s/tests/integration/bus/python_service.py %d py_svc", src,
             redis.port);
    FILE *f = popen(cmd, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_PTR_NOT_NULL(fgets(line, sizeof line, f));
    CU_ASSERT_STRING_EQUAL(line, "ready\n");
    daebus_caller *c = daebus_caller_create(redis.url, NULL, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    daebus_error e = {0};
    cJSON *p = cJSON_Parse("{\"x\":[1,{\"y\":null}]}");
    cJSON *out = NULL;
    CU_ASSERT_EQUAL(daebus_caller_request(c, "py_svc", "echo", p, 5.0, &out, &e), 0);
    CU_ASSERT_TRUE(cJSON_Compare(p, out, 1));
    cJSON_Delete(out);
    cJSON_Delete(p);
    /* "progress" status, success+final:false, then a final without the key. */
    cJSON *prog = cJSON_CreateArray();
    out = NULL;
    CU_ASSERT_EQUAL(daebus_caller_request_progress(c, "py_svc", "prog", NULL, 5.0, count_progress,
                                                   prog, &out, &e),
                    0);
    CU_ASSERT_EQUAL(cJSON_GetArraySize(prog), 2);
    CU_ASSERT_EQUAL(cJSON_GetObjectItem(out, "p") ? cJSON_GetObjectItem(out, "p")->valueint : 0, 3);
    cJSON_Delete(prog);
    cJSON_Delete(out);
    CU_ASSERT_EQUAL(daebus_caller_request(c, "py_svc", "err", NULL, 5.0, NULL, &e), DAEBUS_EREPLY);
    CU_ASSERT_STRING_EQUAL(e.message, "py bad");
    out = NULL;
    CU_ASSERT_EQUAL(daebus_caller_request(c, "py_svc", "check_shape", NULL, 5.0, &out, &e), 0);
    CU_ASSERT_TRUE(cJSON_IsTrue(cJSON_GetObjectItem(out, "five_keys")));
    cJSON_Delete(out);
    CU_ASSERT_EQUAL(daebus_caller_send_to_service(c, "py_svc", NULL, "quit"), 1);
    pclose(f);
    daebus_caller_destroy(c);
}

int main(void)
{
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("bus foreign clients", init, cleanup);
    CU_add_test(s, "python client (PROTOCOL.md §1)", test_python_client);
    CU_add_test(s, "daebus-call", test_daebus_call);
    CU_add_test(s, "daebus-call reply too large", test_daebus_call_reply_too_large);
    CU_add_test(s, "C caller to a Python-style service", test_c_caller_to_python_service);
    return ts_run_cunit();
}
