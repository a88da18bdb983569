/* App life cycle with stand-in components: attach rules, start order, stop in
 * reverse, roll-back on a failed start, stop from another thread, signals,
 * configure() exit codes, JSON log lines. */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "daebus/daebus.h"
#include "component.h"
#include "testsupport.h"

static char events[256];
static void ev(const char *e)
{
    strncat(events, e, sizeof events - strlen(events) - 1);
}

typedef struct fake {
    daebus__component base;
    const char *tag;
    int fail_start;
    int *destroyed;
} fake;

static int fake_start(void *self)
{
    fake *f = self;
    if (f->fail_start)
        return DAEBUS_EIO;
    char b[16];
    snprintf(b, sizeof b, "+%s", f->tag);
    ev(b);
    return 0;
}
static void fake_stop(void *self)
{
    fake *f = self;
    char b[16];
    snprintf(b, sizeof b, "-%s", f->tag);
    ev(b);
}
static void fake_destroy(void *self)
{
    fake *f = self;
    if (f->destroyed)
        (*f->destroyed)++;
    free(f);
}

static const daebus__component_ops ops[DAEBUS__COMP_COUNT] = {
    {"http", DAEBUS__COMP_HTTP, NULL, fake_start, fake_stop, fake_destroy, NULL},
    {"websocket", DAEBUS__COMP_WEBSOCKET, NULL, fake_start, fake_stop, fake_destroy, NULL},
    {"bus", DAEBUS__COMP_BUS, NULL, fake_start, fake_stop, fake_destroy, NULL},
    {"scheduler", DAEBUS__COMP_SCHEDULER, NULL, fake_start, fake_stop, fake_destroy, NULL},
};

static int destroyed;

static fake *make(int kind, const char *tag)
{
    fake *f = calloc(1, sizeof *f);
    f->base.ops = &ops[kind];
    f->base.self = f;
    f->tag = tag;
    f->destroyed = &destroyed;
    return f;
}

static daebus_app *new_app(void)
{
    daebus_app_options o = DAEBUS_APP_OPTIONS_INIT;
    o.service = "app_test";
    o.no_signals = true;
    o.log_level = DAEBUS_LOG_CRITICAL;
    return daebus_app_create(&o, NULL);
}

static void test_attach_rules(void)
{
    daebus_app *app = new_app();
    fake *ws = make(DAEBUS__COMP_WEBSOCKET, "W");
    CU_ASSERT_EQUAL(daebus__app_attach(app, &ws->base), DAEBUS_EORDER);
    fake *http = make(DAEBUS__COMP_HTTP, "H");
    CU_ASSERT_EQUAL(daebus__app_attach(app, &http->base), 0);
    fake *http2 = make(DAEBUS__COMP_HTTP, "H2");
    CU_ASSERT_EQUAL(daebus__app_attach(app, &http2->base), DAEBUS_EEXIST);
    CU_ASSERT_EQUAL(daebus__app_attach(app, &http->base), DAEBUS_EEXIST);
    CU_ASSERT_EQUAL(daebus__app_attach(app, &ws->base), 0);
    CU_ASSERT_PTR_EQUAL(daebus_app_http(app), (daebus_http *)http);
    CU_ASSERT_PTR_EQUAL(daebus_app_websocket(app), (daebus_ws *)ws);
    CU_ASSERT_PTR_NULL(daebus_app_bus(app));
    destroyed = 0;
    daebus_app_destroy(app);
    CU_ASSERT_EQUAL(destroyed, 2); /* the app owned the two attached ones */
    fake_destroy(http2);
}

static void test_start_order_and_reverse_stop(void)
{
    daebus_app *app = new_app();
    events[0] = '\0';
    daebus__app_attach(app, &make(DAEBUS__COMP_HTTP, "H")->base);
    daebus__app_attach(app, &make(DAEBUS__COMP_WEBSOCKET, "W")->base);
    daebus__app_attach(app, &make(DAEBUS__COMP_BUS, "B")->base);
    daebus__app_attach(app, &make(DAEBUS__COMP_SCHEDULER, "S")->base);
    CU_ASSERT_EQUAL(daebus_app_start(app), 0);
    CU_ASSERT_STRING_EQUAL(events, "+H+W+B+S");
    /* Attaching while running is refused. */
    fake *late = make(DAEBUS__COMP_BUS, "L");
    CU_ASSERT_EQUAL(daebus__app_attach(app, &late->base), DAEBUS_ESTATE);
    fake_destroy(late);
    daebus_app_stop(app);
    CU_ASSERT_EQUAL(daebus_app_wait(app), 0);
    CU_ASSERT_STRING_EQUAL(events, "+H+W+B+S-S-B-W-H");
    daebus_app_destroy(app);
}

static void test_failed_start_rolls_back(void)
{
    daebus_app *app = new_app();
    events[0] = '\0';
    daebus__app_attach(app, &make(DAEBUS__COMP_HTTP, "H")->base);
    fake *bus = make(DAEBUS__COMP_BUS, "B");
    bus->fail_start = 1;
    daebus__app_attach(app, &bus->base);
    daebus__app_attach(app, &make(DAEBUS__COMP_SCHEDULER, "S")->base);
    CU_ASSERT_EQUAL(daebus_app_run(app), 1);
    CU_ASSERT_STRING_EQUAL(events, "+H-H");
    daebus_app_destroy(app);
}

static void *stopper(void *arg)
{
    ts_sleep_ms(100);
    daebus_app_stop(arg);
    return NULL;
}

static void test_stop_from_other_thread(void)
{
    daebus_app *app = new_app();
    pthread_t t;
    double t0 = ts_now();
    pthread_create(&t, NULL, stopper, app);
    CU_ASSERT_EQUAL(daebus_app_run(app), 0);
    pthread_join(t, NULL);
    double took = ts_now() - t0;
    CU_ASSERT_TRUE(took >= 0.09 && took < 2.0);
    daebus_app_destroy(app);
}

/* SIGTERM to a real run(): clean exit status 0 (in a child process). */
static void test_sigterm_exits_zero(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        daebus_app_options o = DAEBUS_APP_OPTIONS_INIT;
        o.service = "sig_test";
        o.log_level = DAEBUS_LOG_CRITICAL;
        daebus_app *app = daebus_app_create(&o, NULL);
        int rc = daebus_app_run(app);
        daebus_app_destroy(app);
        _exit(rc == 0 ? 0 : 3);
    }
    ts_sleep_ms(300);
    kill(pid, SIGTERM);
    int status = 0;
    waitpid(pid, &status, 0);
    CU_ASSERT_TRUE(WIFEXITED(status));
    CU_ASSERT_EQUAL(WEXITSTATUS(status), 0);
}

/* A service started with '&' from a script inherits SIGINT as ignored; Ctrl-C
 * (SIGINT) must still stop it cleanly. */
static void test_inherited_sig_ign(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGINT, SIG_IGN);
        daebus_app_options o = DAEBUS_APP_OPTIONS_INIT;
        o.service = "sig_ign_test";
        o.log_level = DAEBUS_LOG_CRITICAL;
        daebus_app *app = daebus_app_create(&o, NULL);
        int rc = daebus_app_run(app);
        daebus_app_destroy(app);
        _exit(rc == 0 ? 0 : 3);
    }
    ts_sleep_ms(300);
    kill(pid, SIGINT);
    int status = 0;
    for (int i = 0; i < 100 && waitpid(pid, &status, WNOHANG) == 0; i++)
        ts_sleep_ms(50);
    if (waitpid(pid, &status, WNOHANG) == 0 && !WIFEXITED(status)) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        CU_FAIL("SIGINT inherited as ignored did not stop the app");
        return;
    }
    CU_ASSERT_TRUE(WIFEXITED(status));
    CU_ASSERT_EQUAL(WEXITSTATUS(status), 0);
}

static int configure_in_child(char **argv, int argc)
{
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        dup2(devnull, 2);
        daebus_app *app = new_app();
        daebus_app_configure(app, argc, argv);
        daebus_app_destroy(app);
        _exit(42);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_configure_exit_codes(void)
{
    char *bad[] = {"svc", "--port", "nope", NULL};
    CU_ASSERT_EQUAL(configure_in_child(bad, 3), 2);
    char *help[] = {"svc", "--help", NULL};
    CU_ASSERT_EQUAL(configure_in_child(help, 2), 0);
    char *ver[] = {"svc", "--version", NULL};
    CU_ASSERT_EQUAL(configure_in_child(ver, 2), 0);
    char *ok[] = {"svc", "--port", "0", NULL};
    CU_ASSERT_EQUAL(configure_in_child(ok, 3), 42);
}

static void test_log_formats(void)
{
    int fds[2];
    CU_ASSERT_EQUAL_FATAL(pipe(fds), 0);
    daebus_log_set_fd(fds[1]);
    daebus_log_set_level(DAEBUS_LOG_INFO);
    daebus_log_set_service("logsvc");
    daebus_log_set_format(DAEBUS_LOG_JSON);
    daebus_log(DAEBUS_LOG_INFO, "http", "hello \"%s\"", "world");
    daebus_log(DAEBUS_LOG_DEBUG, "http", "hidden");
    daebus_log_set_format(DAEBUS_LOG_TEXT);
    daebus_log(DAEBUS_LOG_WARNING, "bus", "plain");
    daebus_log_set_fd(2);
    close(fds[1]);
    char buf[2048] = {0};
    ssize_t n = read(fds[0], buf, sizeof buf - 1);
    close(fds[0]);
    CU_ASSERT_TRUE(n > 0);
    char *nl = strchr(buf, '\n');
    CU_ASSERT_PTR_NOT_NULL_FATAL(nl);
    *nl = '\0';
    cJSON *j = cJSON_Parse(buf);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(j, "level")->valuestring, "info");
    CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(j, "service")->valuestring, "logsvc");
    CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(j, "component")->valuestring, "http");
    CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(j, "msg")->valuestring, "hello \"world\"");
    cJSON_Delete(j);
    CU_ASSERT_PTR_NULL(strstr(nl + 1, "hidden"));
    CU_ASSERT_PTR_NOT_NULL(strstr(nl + 1, "WARN  logsvc [bus] plain"));
    daebus_log_set_level(DAEBUS_LOG_CRITICAL);
}

static void test_strerror(void)
{
    CU_ASSERT_STRING_EQUAL(daebus_strerror(0), "success");
    CU_ASSERT_STRING_EQUAL(daebus_strerror(DAEBUS_ETIMEDOUT), "timed out");
    CU_ASSERT_STRING_EQUAL(daebus_strerror(-9999), "unknown error");
    daebus_error e;
    CU_ASSERT_EQUAL(daebus_error_set(&e, DAEBUS_EINVAL, "x=%d", 5), DAEBUS_EINVAL);
    CU_ASSERT_STRING_EQUAL(e.message, "x=5");
}

int main(void)
{
    daebus_log_set_level(DAEBUS_LOG_CRITICAL);
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("app", NULL, NULL);
    CU_add_test(s, "attach rules", test_attach_rules);
    CU_add_test(s, "start order, reverse stop", test_start_order_and_reverse_stop);
    CU_add_test(s, "failed start rolls back", test_failed_start_rolls_back);
    CU_add_test(s, "stop from another thread", test_stop_from_other_thread);
    CU_add_test(s, "SIGTERM exits 0", test_sigterm_exits_zero);
    CU_add_test(s, "SIGINT inherited as ignored", test_inherited_sig_ign);
    CU_add_test(s, "configure exit codes", test_configure_exit_codes);
    CU_add_test(s, "log formats", test_log_formats);
    CU_add_test(s, "strerror", test_strerror);
    return ts_run_cunit();
}
