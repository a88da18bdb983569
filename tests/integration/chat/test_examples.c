/* test_examples.c - hello_service and metrics_service as a user runs them.
 *
 * hello: GET /hello and the hello action answer {"message": "Hello, <name>!"}.
 * metrics: get_metrics and GET /metrics count requests; a broadcast on
 * "system" reaches the listener; metrics_update goes to Redis and to
 * subscribed WebSocket clients (metrics_client.py). Both: ready line,
 * SIGTERM -> exit 0.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

#include <daebus/daebus.h>
#include "testsupport.h"

static ts_redis redis;
static char bindir[1024], srcdir[1024];

static pid_t spawn(const char *name, int port)
{
    char bin[1200], portbuf[16], logpath[256];
    snprintf(bin, sizeof bin, "%s/bin/%s", bindir, name);
    snprintf(portbuf, sizeof portbuf, "%d", port);
    snprintf(logpath, sizeof logpath, "/tmp/daebus-test-%s-%d.log", name, (int)getpid());
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        setenv("METRICS_INTERVAL", "0.5", 1);
        execl(bin, bin, "--port", portbuf, "--redis", redis.url, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static int wait_exit(pid_t pid, double seconds)
{
    for (double end = ts_now() + seconds; ts_now() < end; ts_sleep_ms(20)) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

static cJSON *get_json(int port, const char *path, int *status)
{
    ts_http_response r;
    if (ts_http(port, "GET", path, NULL, NULL, 0, &r) != 0)
        return NULL;
    *status = r.status;
    cJSON *j = cJSON_Parse(r.body);
    ts_http_free(&r);
    return j;
}

static int wait_http(int port, const char *path)
{
    for (double end = ts_now() + 20; ts_now() < end; ts_sleep_ms(50)) {
        int status = 0;
        cJSON *j = get_json(port, path, &status);
        cJSON_Delete(j);
        if (status == 200)
            return 0;
    }
    return -1;
}

/* Calls action on service until the bus answers (it may still be subscribing). */
static int call(daebus_caller *c, const char *service, const char *action, const char *json,
                cJSON **reply)
{
    daebus_error err = {0};
    cJSON *payload = json ? cJSON_Parse(json) : NULL;
    int rc = DAEBUS_ETIMEDOUT;
    for (int i = 0; i < 50 && (rc == DAEBUS_ETIMEDOUT || rc == DAEBUS_ENOLISTENER); i++) {
        if (i > 0 && rc == DAEBUS_ENOLISTENER)
            usleep(100 * 1000); /* not subscribed yet: fails at once, so pause */
        rc = daebus_caller_request(c, service, action, payload, 3.0, reply, &err);
    }
    cJSON_Delete(payload);
    return rc;
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

static int suite_init(void)
{
    const char *b = getenv("DAEBUS_BINARY_DIR"), *s = getenv("DAEBUS_SOURCE_DIR");
    if (!b || !s)
        return -1;
    snprintf(bindir, sizeof bindir, "%s", b);
    snprintf(srcdir, sizeof srcdir, "%s", s);
    return ts_redis_start(&redis, NULL);
}

static int suite_clean(void)
{
    ts_redis_stop(&redis);
    return 0;
}

static void test_hello(void)
{
    int port = ts_free_port();
    pid_t pid = spawn("hello_service", port);
    CU_ASSERT_EQUAL_FATAL(wait_http(port, "/hello"), 0);

    int status = 0;
    cJSON *j = get_json(port, "/hello?name=Ada", &status);
    CU_ASSERT_EQUAL(status, 200);
    CU_ASSERT(j && strcmp(cJSON_GetObjectItem(j, "message")->valuestring, "Hello, Ada!") == 0);
    cJSON_Delete(j);

    daebus_caller *c = daebus_caller_create(redis.url, NULL, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    cJSON *reply = NULL;
    CU_ASSERT_EQUAL(call(c, "hello_service", "hello", "{\"name\":\"Bob\"}", &reply), 0);
    CU_ASSERT(reply &&
              strcmp(cJSON_GetObjectItem(reply, "message")->valuestring, "Hello, Bob!") == 0);
    cJSON_Delete(reply);
    reply = NULL;
    CU_ASSERT_EQUAL(call(c, "hello_service", "hello", NULL, &reply), 0);
    CU_ASSERT(reply &&
              strcmp(cJSON_GetObjectItem(reply, "message")->valuestring, "Hello, World!") == 0);
    cJSON_Delete(reply);
    daebus_caller_destroy(c);

    kill(pid, SIGTERM);
    CU_ASSERT_EQUAL(wait_exit(pid, 20), 0);
}

static void test_metrics_service(void)
{
    int port = ts_free_port();
    pid_t pid = spawn("metrics_service", port);
    CU_ASSERT_EQUAL_FATAL(wait_http(port, "/metrics"), 0);

    daebus_caller *c = daebus_caller_create(redis.url, NULL, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    cJSON *reply = NULL;
    CU_ASSERT_EQUAL_FATAL(call(c, "metrics_service", "get_metrics", NULL, &reply), 0);
    double before = cJSON_GetObjectItem(reply, "requests")->valuedouble;
    CU_ASSERT_PTR_NOT_NULL(strstr(cJSON_GetObjectItem(reply, "uptime")->valuestring, " seconds"));
    cJSON_Delete(reply);
    reply = NULL;

    int status = 0;
    cJSON *j = get_json(port, "/metrics", &status);
    CU_ASSERT_EQUAL(status, 200);
    CU_ASSERT(j && cJSON_GetObjectItem(j, "requests")->valuedouble == before + 1);
    cJSON_Delete(j);

    /* The listener counts events published on "system" (our own broadcasts
     * included, so wait for the count to move past what we saw). */
    CU_ASSERT_EQUAL_FATAL(call(c, "metrics_service", "get_metrics", NULL, &reply), 0);
    double events = cJSON_GetObjectItem(reply, "system_events")->valuedouble;
    cJSON_Delete(reply);
    reply = NULL;
    cJSON *ev = cJSON_Parse("{\"type\":\"test_event\"}");
    CU_ASSERT(daebus_caller_send_message(c, "system", ev) >= 1);
    cJSON_Delete(ev);
    double seen = events;
    for (double end = ts_now() + 10; ts_now() < end && seen <= events; ts_sleep_ms(50)) {
        if (call(c, "metrics_service", "get_metrics", NULL, &reply) == 0)
            seen = cJSON_GetObjectItem(reply, "system_events")->valuedouble;
        cJSON_Delete(reply);
        reply = NULL;
    }
    CU_ASSERT(seen > events);
    daebus_caller_destroy(c);

    char cmd[3072];
    snprintf(cmd, sizeof cmd, "%s '%s/tests/integration/chat/metrics_client.py' %d '%s'", python3(),
             srcdir, port, redis.url);
    int st = system(cmd);
    CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);

    kill(pid, SIGTERM);
    CU_ASSERT_EQUAL(wait_exit(pid, 20), 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("examples", suite_init, suite_clean);
    CU_add_test(s, "hello", test_hello);
    CU_add_test(s, "metrics", test_metrics_service);
    return ts_run_cunit();
}
