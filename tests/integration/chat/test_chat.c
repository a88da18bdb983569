/* test_chat.c - the chat example end to end: real binary, real Redis, real clients.
 *
 * Starts build/bin/chat_service against a private redis-server and checks:
 * the health blueprint (/health, /health/live, /health/ready, /metrics), the
 * static page, GET /api/rooms, the WebSocket chat protocol and the admin
 * actions (Python websockets + redis clients in chat_client.py, and the C
 * caller API here), the system_status broadcast, readiness while Redis is
 * down, the shutdown action, and SIGTERM exiting 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <daebus/daebus.h>
#include "testsupport.h"

static ts_redis redis;
static int port;
static pid_t service = -1;
static char binary[1024], script[1024], logpath[256];

/* ---- the service process ---- */

static pid_t start_service(const char *extra_flag, const char *status_interval)
{
    char portbuf[16];
    snprintf(portbuf, sizeof portbuf, "%d", port);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        setenv("CHAT_STATUS_INTERVAL", status_interval ? status_interval : "60", 1);
        unsetenv("CHAT_STATIC_DIR");
        /* The protocol scenario sends 105 messages in a burst (history bound):
         * above the default rate limit, whose own test is in
         * tests/integration/hardening/test_hard_rooms.c. */
        setenv("CHAT_RATE_LIMIT", "0", 1);
        if (extra_flag)
            execl(binary, binary, "--port", portbuf, "--redis", redis.url, extra_flag,
                  (char *)NULL);
        else
            execl(binary, binary, "--port", portbuf, "--redis", redis.url, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Waits for the process; returns its exit status, 128+signal, or -1 on
 * time-out (the process is then killed and reaped: no strays). */
static int wait_exit(pid_t pid, double seconds)
{
    double end = ts_now() + seconds;
    while (ts_now() < end) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        ts_sleep_ms(20);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

/* Fails the current test at once when the service is gone (instead of every
 * later check waiting for its time-out). */
#define REQUIRE_SERVICE()                                                                          \
    do {                                                                                           \
        int st_;                                                                                   \
        if (service <= 0 || waitpid(service, &st_, WNOHANG) == service) {                          \
            if (service > 0)                                                                       \
                fprintf(stderr, "chat_service died (status %d); log: %s\n", st_, logpath);         \
            service = -1;                                                                          \
            CU_FAIL_FATAL("chat_service is not running");                                          \
        }                                                                                          \
    } while (0)

static int http_get(const char *path, ts_http_response *out)
{
    return ts_http(port, "GET", path, NULL, NULL, 0, out);
}

/* Waits until GET /health/ready answers 200 (HTTP up, Redis connected). */
static int wait_ready(double seconds)
{
    double end = ts_now() + seconds;
    while (ts_now() < end) {
        ts_http_response r;
        if (http_get("/health/ready", &r) == 0) {
            int ok = r.status == 200;
            ts_http_free(&r);
            if (ok)
                return 0;
        }
        ts_sleep_ms(50);
    }
    return -1;
}

/* The Debian python3 has python3-websockets and python3-redis; a python3
 * earlier in PATH (pyenv, venv) may not. DAEBUS_PYTHON overrides. */
static const char *python3(void)
{
    const char *env = getenv("DAEBUS_PYTHON");
    if (env && *env)
        return env;
    return access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
}

static int run_python(const char *scenario)
{
    char cmd[3072];
    snprintf(cmd, sizeof cmd, "%s '%s' %s %d '%s'", python3(), script, scenario, port, redis.url);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int suite_init(void)
{
    const char *bin = getenv("DAEBUS_BINARY_DIR"), *src = getenv("DAEBUS_SOURCE_DIR");
    if (!bin || !src)
        return -1;
    snprintf(binary, sizeof binary, "%s/bin/chat_service", bin);
    snprintf(script, sizeof script, "%s/tests/integration/chat/chat_client.py", src);
    snprintf(logpath, sizeof logpath, "/tmp/daebus-test-chat-%d.log", (int)getpid());
    if (access(binary, X_OK) != 0 || ts_redis_start(&redis, NULL) != 0)
        return -1;
    port = ts_free_port();
    service = start_service(NULL, NULL);
    if (service < 0 || wait_ready(20) != 0) {
        fprintf(stderr, "chat_service did not start; log: %s\n", logpath);
        return -1;
    }
    return 0;
}

static int suite_clean(void)
{
    if (service > 0) {
        kill(service, SIGTERM);
        wait_exit(service, 15);
    }
    ts_redis_stop(&redis);
    return 0;
}

/* ---- HTTP: health blueprint, page, rooms ---- */

static cJSON *get_json(const char *path, int *status)
{
    ts_http_response r;
    if (http_get(path, &r) != 0)
        return NULL;
    *status = r.status;
    cJSON *j = cJSON_Parse(r.body);
    ts_http_free(&r);
    return j;
}

static void test_health(void)
{
    REQUIRE_SERVICE();
    int status = 0;
    cJSON *j = get_json("/health", &status);
    CU_ASSERT_EQUAL(status, 200);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(j, "status")->valuestring, "ok");
    CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(j, "service")->valuestring, "chat_service");
    CU_ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(j, "live")));
    CU_ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(j, "ready")));
    cJSON *checks = cJSON_GetObjectItem(j, "checks");
    cJSON *redis_check = cJSON_GetObjectItem(checks, "redis");
    CU_ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(redis_check, "connected")));
    CU_ASSERT_PTR_NOT_NULL(cJSON_GetObjectItem(checks, "websocket"));
    CU_ASSERT_PTR_NOT_NULL(cJSON_GetObjectItem(checks, "scheduler"));
    CU_ASSERT_EQUAL(cJSON_GetObjectItem(cJSON_GetObjectItem(checks, "http"), "port")->valueint,
                    port);
    cJSON_Delete(j);

    j = get_json("/health/ready", &status);
    CU_ASSERT_EQUAL(status, 200);
    cJSON_Delete(j);
    j = get_json("/health/live", &status);
    CU_ASSERT_EQUAL(status, 200);
    CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(j, "status")->valuestring, "alive");
    cJSON_Delete(j);
}

static void test_metrics(void)
{
    REQUIRE_SERVICE();
    ts_http_response r;
    CU_ASSERT_EQUAL_FATAL(http_get("/metrics", &r), 0);
    CU_ASSERT_EQUAL(r.status, 200);
    char ct[128];
    CU_ASSERT_PTR_NOT_NULL(ts_http_header(&r, "Content-Type", ct, sizeof ct));
    CU_ASSERT_PTR_NOT_NULL(strstr(ct, "text/plain"));
    static const char *const want[] = {
        "# TYPE daebus_http_requests_total counter",
        "daebus_http_responses_total{class=\"2xx\"} ",
        "daebus_bus_connected 1\n",
        "daebus_bus_requests_received_total ",
        "# TYPE daebus_ws_clients gauge",
        "daebus_ws_disconnects_total{cause=\"client\"} ",
        "daebus_scheduler_runs_total ",
        "daebus_scheduler_task_runs_total{task=\"system_status\"} ",
        "daebus_info{service=\"chat_service\",version=\"",
        "daebus_uptime_seconds ",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        if (!strstr(r.body, want[i]))
            fprintf(stderr, "metrics lack '%s'\n", want[i]);
        CU_ASSERT_PTR_NOT_NULL(strstr(r.body, want[i]));
    }
    ts_http_free(&r);
}

static void test_static_page(void)
{
    REQUIRE_SERVICE();
    ts_http_response r;
    CU_ASSERT_EQUAL_FATAL(http_get("/", &r), 0);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "daebus-c chat"));
    char ct[128];
    CU_ASSERT_PTR_NOT_NULL(ts_http_header(&r, "Content-Type", ct, sizeof ct));
    CU_ASSERT_PTR_NOT_NULL(strstr(ct, "text/html"));
    ts_http_free(&r);
    CU_ASSERT_EQUAL_FATAL(http_get("/app.js", &r), 0);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "join_room"));
    ts_http_free(&r);
}

static void test_rooms_empty(void)
{
    REQUIRE_SERVICE();
    int status = 0;
    cJSON *j = get_json("/api/rooms", &status);
    CU_ASSERT_EQUAL(status, 200);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    CU_ASSERT_EQUAL(cJSON_GetObjectItem(j, "count")->valueint, 0);
    CU_ASSERT(cJSON_IsArray(cJSON_GetObjectItem(j, "rooms")));
    cJSON_Delete(j);
}

/* ---- WebSocket and bus, through Python clients ---- */

static void test_ws_protocol(void)
{
    REQUIRE_SERVICE();
    CU_ASSERT_EQUAL(run_python("protocol"), 0);
}

static void test_admin_actions_python(void)
{
    REQUIRE_SERVICE();
    CU_ASSERT_EQUAL(run_python("admin"), 0);
}

/* ---- admin actions through the C caller API ---- */

static int call(daebus_caller *c, const char *action, const char *json, cJSON **reply,
                daebus_error *err)
{
    cJSON *payload = json ? cJSON_Parse(json) : NULL;
    int rc = daebus_caller_request(c, "chat_service", action, payload, 5.0, reply, err);
    cJSON_Delete(payload);
    return rc;
}

static void test_admin_actions_caller(void)
{
    REQUIRE_SERVICE();
    daebus_error err = {0};
    daebus_caller *c = daebus_caller_create(redis.url, NULL, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    cJSON *reply = NULL;

    /* The Python clients are gone: wait until the registry agrees. */
    int count = -1;
    for (double end = ts_now() + 10; ts_now() < end && count != 0; ts_sleep_ms(50)) {
        if (call(c, "get_connected_clients", NULL, &reply, &err) == 0 && reply &&
            cJSON_IsNumber(cJSON_GetObjectItem(reply, "count")))
            count = cJSON_GetObjectItem(reply, "count")->valueint;
        cJSON_Delete(reply);
        reply = NULL;
    }
    CU_ASSERT_EQUAL(count, 0);

    CU_ASSERT_EQUAL(call(c, "kick_client", "{}", &reply, &err), DAEBUS_EREPLY);
    CU_ASSERT_STRING_EQUAL(err.message, "No client_id provided");
    cJSON_Delete(reply);
    reply = NULL;

    CU_ASSERT_EQUAL(
        call(c, "notify_user", "{\"user_id\":\"ghost\",\"message\":\"x\"}", &reply, &err),
        DAEBUS_EREPLY);
    CU_ASSERT_STRING_EQUAL(err.message, "User ghost not connected");
    cJSON_Delete(reply);
    reply = NULL;

    CU_ASSERT_EQUAL_FATAL(
        call(c, "find_inactive_clients", "{\"threshold_minutes\":5}", &reply, &err), 0);
    CU_ASSERT_EQUAL(cJSON_GetObjectItem(reply, "count")->valueint, 0);
    CU_ASSERT_DOUBLE_EQUAL(cJSON_GetObjectItem(reply, "threshold_seconds")->valuedouble, 300, 1e-9);
    cJSON_Delete(reply);
    reply = NULL;

    CU_ASSERT_EQUAL(call(c, "find_inactive_clients", "{\"threshold_seconds\":\"x\"}", &reply, &err),
                    DAEBUS_EREPLY);
    cJSON_Delete(reply);
    reply = NULL;

    CU_ASSERT_EQUAL(call(c, "no_such_action", NULL, &reply, &err), DAEBUS_EREPLY);
    cJSON_Delete(reply);
    daebus_caller_destroy(c);
}

/* ---- Redis down: readiness ---- */

static void test_ready_follows_redis(void)
{
    REQUIRE_SERVICE();
    ts_redis_kill(&redis);
    int status = 0, seen503 = 0;
    for (double end = ts_now() + 15; ts_now() < end && !seen503; ts_sleep_ms(100)) {
        cJSON *j = get_json("/health/ready", &status);
        seen503 = status == 503 && j && cJSON_IsFalse(cJSON_GetObjectItem(j, "ready"));
        cJSON_Delete(j);
    }
    CU_ASSERT(seen503);
    cJSON *j = get_json("/health", &status);
    CU_ASSERT_EQUAL(status, 200); /* still alive */
    CU_ASSERT(j && strcmp(cJSON_GetObjectItem(j, "status")->valuestring, "degraded") == 0);
    cJSON_Delete(j);

    CU_ASSERT_EQUAL_FATAL(ts_redis_restart(&redis), 0);
    int ready = 0;
    for (double end = ts_now() + 20; ts_now() < end && !ready; ts_sleep_ms(100)) {
        j = get_json("/health/ready", &status);
        ready = status == 200;
        cJSON_Delete(j);
    }
    CU_ASSERT(ready);
}

/* ---- process contract ---- */

static void test_sigterm_exits_zero(void)
{
    REQUIRE_SERVICE();
    CU_ASSERT_EQUAL_FATAL(kill(service, SIGTERM), 0);
    CU_ASSERT_EQUAL(wait_exit(service, 20), 0);
    service = -1;
    char *log = ts_read_file(logpath, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(log);
    char want[64];
    snprintf(want, sizeof want, "port %d", port);
    CU_ASSERT_PTR_NOT_NULL(strstr(log, "service \"chat_service\" ready"));
    CU_ASSERT_PTR_NOT_NULL(strstr(log, want));
    CU_ASSERT_PTR_NOT_NULL(strstr(log, "channel chat_service"));
    free(log);
}

/* A second instance with a 1 s status period. (The first one keeps the
 * default 60 s: every frame sent to a client, broadcasts included, refreshes
 * its last_activity, which would defeat find_inactive_clients.) */
static void test_system_status(void)
{
    port = ts_free_port();
    service = start_service(NULL, "1");
    CU_ASSERT_EQUAL_FATAL(wait_ready(20), 0);
    CU_ASSERT_EQUAL(run_python("status"), 0);
}

static void test_shutdown_action(void)
{
    REQUIRE_SERVICE();
    CU_ASSERT_EQUAL(run_python("shutdown"), 0);
    CU_ASSERT_EQUAL(wait_exit(service, 20), 0); /* stopped by the action, status 0 */
    service = -1;
}

static void test_bad_flag(void)
{
    pid_t pid = start_service("--status-interval=abc", NULL);
    CU_ASSERT_EQUAL(wait_exit(pid, 10), 2);
    pid = start_service("--help", NULL);
    CU_ASSERT_EQUAL(wait_exit(pid, 10), 0);
    pid = start_service("--bogus", NULL);
    CU_ASSERT_EQUAL(wait_exit(pid, 10), 2);
    pid = start_service("--max-rooms=0", NULL);
    CU_ASSERT_EQUAL(wait_exit(pid, 10), 2);
    pid = start_service("--max-name-bytes=5000", NULL);
    CU_ASSERT_EQUAL(wait_exit(pid, 10), 2);
    /* --help lists the chat's own options (declared with daebus_app_add_option) */
    char *out = ts_read_file(logpath, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "--status-interval SECONDS"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "(CHAT_STATUS_INTERVAL, default 60)"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "--static DIR"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "'abc' is not a number of seconds"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "chat_service: unknown option '--bogus'"));
    /* what a public chat needs, with their defaults */
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "--allowed-origins LIST"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "(CHAT_RATE_LIMIT, default 60)"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "(CHAT_MAX_ROOMS, default 1000)"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "--max-rooms (CHAT_MAX_ROOMS): '0' is not a number"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "--max-name-bytes (CHAT_MAX_NAME_BYTES): '5000'"));
    free(out);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("chat", suite_init, suite_clean);
    CU_add_test(s, "health", test_health);
    CU_add_test(s, "metrics", test_metrics);
    CU_add_test(s, "static page", test_static_page);
    CU_add_test(s, "rooms empty", test_rooms_empty);
    CU_add_test(s, "ws protocol", test_ws_protocol);
    CU_add_test(s, "admin actions (python)", test_admin_actions_python);
    CU_add_test(s, "admin actions (caller)", test_admin_actions_caller);
    CU_add_test(s, "ready follows redis", test_ready_follows_redis);
    CU_add_test(s, "sigterm exits 0", test_sigterm_exits_zero);
    CU_add_test(s, "system_status", test_system_status);
    CU_add_test(s, "shutdown action", test_shutdown_action);
    CU_add_test(s, "bad flag", test_bad_flag);
    return ts_run_cunit();
}
