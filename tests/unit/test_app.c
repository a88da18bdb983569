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
    destroyed = 0;
    /* Every refused attach frees the component (attach takes it on every path). */
    CU_ASSERT_EQUAL(daebus__app_attach(app, &make(DAEBUS__COMP_WEBSOCKET, "W0")->base),
                    DAEBUS_EORDER);
    CU_ASSERT_EQUAL(destroyed, 1);
    fake *http = make(DAEBUS__COMP_HTTP, "H");
    CU_ASSERT_EQUAL(daebus__app_attach(app, &http->base), 0);
    fake *http2 = make(DAEBUS__COMP_HTTP, "H2");
    CU_ASSERT_EQUAL(daebus__app_attach(app, &http2->base), DAEBUS_EEXIST);
    CU_ASSERT_EQUAL(destroyed, 2);
    /* The same component twice: refused, but it stays the app's (not freed). */
    CU_ASSERT_EQUAL(daebus__app_attach(app, &http->base), DAEBUS_EEXIST);
    CU_ASSERT_EQUAL(destroyed, 2);
    fake *ws = make(DAEBUS__COMP_WEBSOCKET, "W");
    CU_ASSERT_EQUAL(daebus__app_attach(app, &ws->base), 0);
    CU_ASSERT_PTR_EQUAL(daebus_app_http(app), (daebus_http *)http);
    CU_ASSERT_PTR_EQUAL(daebus_app_websocket(app), (daebus_ws *)ws);
    CU_ASSERT_PTR_NULL(daebus_app_bus(app));
    /* No app: refused and freed. */
    CU_ASSERT_EQUAL(daebus__app_attach(NULL, &make(DAEBUS__COMP_BUS, "B")->base), DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(destroyed, 3);
    destroyed = 0;
    daebus_app_destroy(app);
    CU_ASSERT_EQUAL(destroyed, 2); /* the app owned the two attached ones */
}

/* The public attach functions: NULL component is an error; a refused real
 * component is freed (ASan and the leak checker see the rest). */
static void test_public_attach_ownership(void)
{
    daebus_app *app = new_app();
    CU_ASSERT_EQUAL(daebus_http_attach(NULL, app), DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(daebus_ws_attach(NULL, app), DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(daebus_bus_attach(NULL, app), DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(daebus_scheduler_attach(NULL, app), DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(daebus_http_attach(daebus_http_create(NULL, NULL), NULL), DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(daebus_bus_attach(daebus_bus_create(NULL, NULL), NULL), DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(daebus_scheduler_attach(daebus_scheduler_create(NULL, NULL), NULL),
                    DAEBUS_EINVAL);
    /* websocket before http: refused and freed */
    CU_ASSERT_EQUAL(daebus_ws_attach(daebus_ws_create(NULL, NULL), app), DAEBUS_EORDER);
    CU_ASSERT_EQUAL(daebus_http_attach(daebus_http_create(NULL, NULL), app), 0);
    CU_ASSERT_EQUAL(daebus_http_attach(daebus_http_create(NULL, NULL), app), DAEBUS_EEXIST);
    CU_ASSERT_EQUAL(daebus_bus_attach(daebus_bus_create(NULL, NULL), app), 0);
    CU_ASSERT_EQUAL(daebus_bus_attach(daebus_bus_create(NULL, NULL), app), DAEBUS_EEXIST);
    CU_ASSERT_EQUAL(daebus_scheduler_attach(daebus_scheduler_create(NULL, NULL), app), 0);
    CU_ASSERT_EQUAL(daebus_scheduler_attach(daebus_scheduler_create(NULL, NULL), app),
                    DAEBUS_EEXIST);
    CU_ASSERT_EQUAL(daebus_ws_attach(daebus_ws_create(NULL, NULL), app), 0);
    CU_ASSERT_EQUAL(daebus_ws_attach(daebus_ws_create(NULL, NULL), app), DAEBUS_EEXIST);
    daebus_app_destroy(app);
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
    destroyed = 0;
    CU_ASSERT_EQUAL(daebus__app_attach(app, &make(DAEBUS__COMP_BUS, "L")->base), DAEBUS_ESTATE);
    CU_ASSERT_EQUAL(destroyed, 1); /* refused and freed */
    daebus_app_stop(app);
    CU_ASSERT_EQUAL(daebus_app_wait(app), 0);
    /* Reverse order, the bus last: WebSocket clients leaving at shutdown
     * still reach Redis through it (docs/replicas.md). */
    CU_ASSERT_STRING_EQUAL(events, "+H+W+B+S-S-W-H-B");
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

/* ---- log capture ---- */

static int cap_fd = -1;

static void cap_begin(daebus_log_level level)
{
    char path[] = "/tmp/daebus_test_app_log_XXXXXX";
    cap_fd = mkstemp(path);
    unlink(path);
    daebus_log_set_fd(cap_fd);
    daebus_log_set_format(DAEBUS_LOG_TEXT);
    daebus_log_set_level(level);
}

/* Returns the captured lines (malloc'd) and restores stderr. */
static char *cap_end(void)
{
    daebus_log_set_fd(2);
    daebus_log_set_level(DAEBUS_LOG_CRITICAL);
    off_t n = lseek(cap_fd, 0, SEEK_END);
    char *buf = calloc(1, (size_t)(n > 0 ? n : 0) + 1);
    if (n > 0 && pread(cap_fd, buf, (size_t)n, 0) != n)
        buf[0] = '\0';
    close(cap_fd);
    cap_fd = -1;
    return buf;
}

static size_t count_of(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

/* ---- options: zero means default ---- */

static void test_zero_options_are_defaults(void)
{
    daebus_app_options zero = {0};
    daebus_app_options init = DAEBUS_APP_OPTIONS_INIT;
    CU_ASSERT_TRUE(!zero.service && !init.service && !zero.redis_url && !init.redis_url);
    CU_ASSERT_TRUE(zero.http_port == init.http_port && zero.log_level == init.log_level);
    CU_ASSERT_TRUE(zero.max_workers == init.max_workers && !init.no_signals);
    CU_ASSERT_TRUE(zero.shutdown_timeout == init.shutdown_timeout);
    daebus_log_set_level(DAEBUS_LOG_CRITICAL);
    zero.no_signals = true;
    daebus_app *app = daebus_app_create(&zero, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(app);
    CU_ASSERT_EQUAL(daebus_log_get_level(), DAEBUS_LOG_INFO); /* not debug */
    CU_ASSERT_EQUAL(daebus_app_http_port(app), 0);            /* the HTTP default, not "any" */
    CU_ASSERT_STRING_EQUAL(daebus_app_service(app), "daebus_service");
    CU_ASSERT_EQUAL(daebus_app_max_workers(app), 10);
    daebus_app_destroy(app);
    daebus_app_options any = {
        .http_port = DAEBUS_PORT_ANY, .log_level = DAEBUS_LOG_DEBUG, .no_signals = true};
    app = daebus_app_create(&any, NULL);
    CU_ASSERT_EQUAL(daebus_app_http_port(app), DAEBUS_PORT_ANY);
    CU_ASSERT_EQUAL(daebus_log_get_level(), DAEBUS_LOG_DEBUG);
    daebus_app_destroy(app);
    daebus_config cfg = {0};
    daebus_config cinit = DAEBUS_CONFIG_INIT;
    CU_ASSERT_TRUE(cfg.http_port == cinit.http_port && cfg.log_level == cinit.log_level &&
                   cfg.max_workers == cinit.max_workers && !cinit.service && !cinit.redis_url);
    daebus_log_set_level(DAEBUS_LOG_DEFAULT);
    CU_ASSERT_EQUAL(daebus_log_get_level(), DAEBUS_LOG_INFO);
    daebus_log_set_level(DAEBUS_LOG_CRITICAL);
}

/* ---- newcomer errors: one clear line each ---- */

DAEBUS_BLUEPRINT(orphan_bp, "orphan");
static const int orphan_line = __LINE__ - 1;

ACTION(orphan_a, "orphan_a", .bp = &orphan_bp)
{
    return 0;
}

ROUTE(orphan_r, "/orphan", .bp = &orphan_bp)
{
    return 0;
}

static void test_unregistered_blueprint(void)
{
    daebus_app_options o = {
        .service = "orphans", .no_signals = true, .log_level = DAEBUS_LOG_WARNING};
    daebus_app *app = daebus_app_create(&o, NULL);
    cap_begin(DAEBUS_LOG_WARNING);
    CU_ASSERT_EQUAL(daebus_app_start(app), 0);
    daebus_app_stop(app);
    daebus_app_wait(app);
    char *log = cap_end();
    char want[160];
    snprintf(want, sizeof want,
             "blueprint 'orphan' (test_app.c:%d) has 2 handlers but was never registered",
             orphan_line);
    CU_ASSERT_PTR_NOT_NULL(strstr(log, want));
    CU_ASSERT_EQUAL(count_of(log, "never registered"), 1);
    free(log);
    daebus_app_destroy(app);

    /* Registered: no warning. */
    app = daebus_app_create(&o, NULL);
    CU_ASSERT_EQUAL(daebus_app_register_blueprint(app, &orphan_bp), 0);
    cap_begin(DAEBUS_LOG_WARNING);
    CU_ASSERT_EQUAL(daebus_app_start(app), 0);
    daebus_app_stop(app);
    daebus_app_wait(app);
    log = cap_end();
    CU_ASSERT_PTR_NULL(strstr(log, "never registered"));
    free(log);
    daebus_app_destroy(app);
}

static int route_fn(daebus_http_request *req, daebus_http_response *res, void *user)
{
    (void)req;
    (void)res;
    (void)user;
    return 0;
}

static void test_routes_differing_in_names_are_duplicates(void)
{
    daebus_app *app = new_app();
    daebus_blueprint *bp = daebus_blueprint_create("dups", NULL);
    daebus_handler_options post = {.methods = DAEBUS_POST};
    daebus_blueprint_add_route(bp, "/a/<x>", route_fn, NULL);
    daebus_blueprint_add_route(bp, "/a/<string:y>", route_fn, NULL);
    daebus_blueprint_add_route(bp, "/b/<x>", route_fn, NULL);
    daebus_blueprint_add_route(bp, "/b/<y>", route_fn, &post); /* other method: both stay */
    daebus_blueprint_add_route(bp, "/c/<x>", route_fn, NULL);
    daebus_blueprint_add_route(bp, "/c/<int:x>", route_fn, NULL); /* other shape: both stay */
    cap_begin(DAEBUS_LOG_WARNING);
    CU_ASSERT_EQUAL(daebus_app_register_blueprint(app, bp), 0);
    char *log = cap_end();
    CU_ASSERT_PTR_NOT_NULL(strstr(log, "route GET \"/a/<string:y>\": <runtime>:2 overrides "
                                       "\"/a/<x>\" at <runtime>:1"));
    CU_ASSERT_EQUAL(count_of(log, "overrides"), 1);
    CU_ASSERT_EQUAL(count_of(log, "\n"), 1); /* one line */
    free(log);
    CU_ASSERT_EQUAL(daebus_app_handler_count(app, DAEBUS_HANDLER_ROUTE), 5);
    CU_ASSERT_PTR_NULL(daebus_app_find_handler(app, DAEBUS_HANDLER_ROUTE, "/a/<x>", 0));
    CU_ASSERT_PTR_NOT_NULL(daebus_app_find_handler(app, DAEBUS_HANDLER_ROUTE, "/a/<string:y>", 0));
    daebus_app_destroy(app);
    daebus_blueprint_destroy(bp);
}

static void test_bad_route_pattern(void)
{
    daebus_app *app = new_app();
    daebus_blueprint *bp = daebus_blueprint_create("bad", "/api");
    daebus_blueprint_add_route(bp, "/rooms/<room", route_fn, NULL);
    cap_begin(DAEBUS_LOG_WARNING);
    CU_ASSERT_EQUAL(daebus_app_register_blueprint(app, bp), DAEBUS_EINVAL);
    char *log = cap_end();
    CU_ASSERT_PTR_NOT_NULL(strstr(log, "route \"/api/rooms/<room\": '<' without a closing '>' in "
                                       "segment \"<room\" (registered at <runtime>:1)"));
    CU_ASSERT_PTR_NULL(strstr(log, "memory"));
    CU_ASSERT_PTR_NULL(strstr(log, "--help"));
    CU_ASSERT_EQUAL(count_of(log, "\n"), 1);
    free(log);
    daebus_blueprint_destroy(bp);
    bp = daebus_blueprint_create("bad2", NULL);
    daebus_blueprint_add_route(bp, "/x/<uuid:id>", route_fn, NULL);
    cap_begin(DAEBUS_LOG_WARNING);
    CU_ASSERT_EQUAL(daebus_app_register_blueprint(app, bp), DAEBUS_EINVAL);
    log = cap_end();
    CU_ASSERT_PTR_NOT_NULL(strstr(log, "unknown converter in \"<uuid:id>\" (use <name>, "
                                       "<int:name>, <float:name>"));
    free(log);
    daebus_app_destroy(app);
    daebus_blueprint_destroy(bp);
}

static int failing_hook(daebus_app *app, void *user)
{
    (void)app;
    (void)user;
    return DAEBUS_EIO;
}

static void test_handler_error_names_its_code(void)
{
    CU_ASSERT_STRING_EQUAL(daebus_errname(DAEBUS_EIO), "DAEBUS_EIO");
    CU_ASSERT_STRING_EQUAL(daebus_errname(DAEBUS_EINVAL), "DAEBUS_EINVAL");
    CU_ASSERT_STRING_EQUAL(daebus_errname(0), "DAEBUS_OK");
    CU_ASSERT_STRING_EQUAL(daebus_errname(-4242), "not a DAEBUS_E* code");
    daebus_app_options o = {.service = "hooks", .no_signals = true, .log_level = DAEBUS_LOG_ERROR};
    daebus_app *app = daebus_app_create(&o, NULL);
    daebus_blueprint *bp = daebus_blueprint_create("hooks", NULL);
    daebus_blueprint_add_on_start(bp, failing_hook, NULL);
    daebus_app_register_blueprint(app, bp);
    cap_begin(DAEBUS_LOG_ERROR);
    CU_ASSERT_EQUAL(daebus_app_start(app), DAEBUS_EIO);
    char *log = cap_end();
    CU_ASSERT_PTR_NOT_NULL(strstr(log, "returned -7 (DAEBUS_EIO: input/output error)"));
    CU_ASSERT_PTR_NULL(strstr(log, "invalid argument"));
    free(log);
    daebus_app_destroy(app);
    daebus_blueprint_destroy(bp);
}

/* Runs configure() in a child; returns its exit status and its stderr in err. */
static int configure_capture(char **argv, int argc, char *err, size_t len)
{
    char path[] = "/tmp/daebus_test_app_err_XXXXXX";
    int fd = mkstemp(path);
    unlink(path);
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        dup2(fd, 2);
        daebus_app *app = new_app();
        daebus_app_configure(app, argc, argv);
        daebus_app_destroy(app);
        _exit(42);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    ssize_t n = pread(fd, err, len - 1, 0);
    err[n > 0 ? n : 0] = '\0';
    close(fd);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_unknown_option(void)
{
    char err[1024];
    char *a1[] = {"svc", "--bogus", NULL};
    CU_ASSERT_EQUAL(configure_capture(a1, 2, err, sizeof err), 2);
    CU_ASSERT_STRING_EQUAL(err,
                           "svc: unknown option '--bogus' (see 'svc --help' for the options)\n");
    char *a2[] = {"svc", "--bogus=1", NULL};
    CU_ASSERT_EQUAL(configure_capture(a2, 2, err, sizeof err), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "unknown option '--bogus'"));
    char *a3[] = {"svc", "--bogus", "1", NULL};
    CU_ASSERT_EQUAL(configure_capture(a3, 3, err, sizeof err), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "unknown option '--bogus'"));
}

int main(void)
{
    daebus_log_set_level(DAEBUS_LOG_CRITICAL);
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("app", NULL, NULL);
    CU_add_test(s, "attach rules", test_attach_rules);
    CU_add_test(s, "start order, reverse stop, bus last", test_start_order_and_reverse_stop);
    CU_add_test(s, "failed start rolls back", test_failed_start_rolls_back);
    CU_add_test(s, "stop from another thread", test_stop_from_other_thread);
    CU_add_test(s, "SIGTERM exits 0", test_sigterm_exits_zero);
    CU_add_test(s, "SIGINT inherited as ignored", test_inherited_sig_ign);
    CU_add_test(s, "configure exit codes", test_configure_exit_codes);
    CU_add_test(s, "log formats", test_log_formats);
    CU_add_test(s, "strerror", test_strerror);
    CU_add_test(s, "attach takes ownership (public API)", test_public_attach_ownership);
    CU_add_test(s, "zero options are the defaults", test_zero_options_are_defaults);
    CU_add_test(s, "blueprint never registered", test_unregistered_blueprint);
    CU_add_test(s, "routes differing in names are duplicates",
                test_routes_differing_in_names_are_duplicates);
    CU_add_test(s, "bad route pattern", test_bad_route_pattern);
    CU_add_test(s, "handler error names its code", test_handler_error_names_its_code);
    CU_add_test(s, "unknown option", test_unknown_option);
    return ts_run_cunit();
}
