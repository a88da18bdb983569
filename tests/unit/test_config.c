/* Configuration precedence (code < env < argv) and bad values. */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "daebus/daebus.h"
#include "testsupport.h"

static void clear_env(void)
{
    unsetenv("DAEBUS_HTTP_PORT");
    unsetenv("DAEBUS_REDIS_URL");
    unsetenv("DAEBUS_SERVICE");
    unsetenv("DAEBUS_LOG_LEVEL");
    unsetenv("DAEBUS_MAX_WORKERS");
}

static daebus_app *code_app(void)
{
    daebus_app_options o = DAEBUS_APP_OPTIONS_INIT;
    o.service = "from_code";
    o.redis_url = "redis://code:1";
    o.http_port = 1111;
    o.max_workers = 3;
    o.no_signals = true;
    return daebus_app_create(&o, NULL);
}

static void test_code_only(void)
{
    clear_env();
    daebus_app *app = code_app();
    char *argv[] = {"svc", NULL};
    CU_ASSERT_EQUAL(daebus_app_configure_args(app, 1, argv, NULL), 0);
    CU_ASSERT_STRING_EQUAL(daebus_app_service(app), "from_code");
    CU_ASSERT_STRING_EQUAL(daebus_app_redis_url(app), "redis://code:1");
    CU_ASSERT_EQUAL(daebus_app_http_port(app), 1111);
    CU_ASSERT_EQUAL(daebus_app_max_workers(app), 3);
    daebus_app_destroy(app);
}

static void test_env_over_code(void)
{
    clear_env();
    setenv("DAEBUS_SERVICE", "from_env", 1);
    setenv("DAEBUS_HTTP_PORT", "2222", 1);
    setenv("DAEBUS_MAX_WORKERS", "7", 1);
    setenv("DAEBUS_LOG_LEVEL", "error", 1);
    daebus_app *app = code_app();
    char *argv[] = {"svc", NULL};
    CU_ASSERT_EQUAL(daebus_app_configure_args(app, 1, argv, NULL), 0);
    CU_ASSERT_STRING_EQUAL(daebus_app_service(app), "from_env");
    CU_ASSERT_STRING_EQUAL(daebus_app_redis_url(app), "redis://code:1");
    CU_ASSERT_EQUAL(daebus_app_http_port(app), 2222);
    CU_ASSERT_EQUAL(daebus_app_max_workers(app), 7);
    CU_ASSERT_EQUAL(daebus_log_get_level(), DAEBUS_LOG_ERROR);
    daebus_app_destroy(app);
    clear_env();
}

static void test_argv_over_env(void)
{
    clear_env();
    setenv("DAEBUS_SERVICE", "from_env", 1);
    setenv("DAEBUS_HTTP_PORT", "2222", 1);
    setenv("DAEBUS_REDIS_URL", "redis://env:2", 1);
    daebus_app *app = code_app();
    char *argv[] = {"svc", "--port", "3333", "--service=from_argv", "--log-level", "WARNING", NULL};
    CU_ASSERT_EQUAL(daebus_app_configure_args(app, 6, argv, NULL), 0);
    CU_ASSERT_STRING_EQUAL(daebus_app_service(app), "from_argv");
    CU_ASSERT_STRING_EQUAL(daebus_app_redis_url(app), "redis://env:2");
    CU_ASSERT_EQUAL(daebus_app_http_port(app), 3333);
    CU_ASSERT_EQUAL(daebus_log_get_level(), DAEBUS_LOG_WARNING);
    daebus_app_destroy(app);
    clear_env();
    daebus_log_set_level(DAEBUS_LOG_ERROR);
}

static void test_bad_values(void)
{
    clear_env();
    daebus_error err = {0};
    daebus_config cfg = DAEBUS_CONFIG_INIT;
    char *a1[] = {"svc", "--port", "70000", NULL};
    CU_ASSERT_EQUAL(daebus_config_apply_args(&cfg, 3, a1, &err), DAEBUS_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "--port"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "70000"));
    char *a2[] = {"svc", "--port", "12ab", NULL};
    CU_ASSERT_EQUAL(daebus_config_apply_args(&cfg, 3, a2, &err), DAEBUS_EINVAL);
    char *a3[] = {"svc", "--redis", "http://x", NULL};
    CU_ASSERT_EQUAL(daebus_config_apply_args(&cfg, 3, a3, &err), DAEBUS_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "Redis URL"));
    char *a4[] = {"svc", "--log-level", "loud", NULL};
    CU_ASSERT_EQUAL(daebus_config_apply_args(&cfg, 3, a4, &err), DAEBUS_EINVAL);
    char *a5[] = {"svc", "--bogus", "1", NULL};
    CU_ASSERT_EQUAL(daebus_config_apply_args(&cfg, 3, a5, &err), DAEBUS_EINVAL);
    CU_ASSERT_STRING_EQUAL(err.message, "unknown option '--bogus'");
    char *a5b[] = {"svc", "--bogus", NULL};
    CU_ASSERT_EQUAL(daebus_config_apply_args(&cfg, 2, a5b, &err), DAEBUS_EINVAL);
    CU_ASSERT_STRING_EQUAL(err.message, "unknown option '--bogus'"); /* not "needs a value" */
    char *a6[] = {"svc", "--port", NULL};
    CU_ASSERT_EQUAL(daebus_config_apply_args(&cfg, 2, a6, &err), DAEBUS_EINVAL);
    char *a7[] = {"svc", "--max-workers", "0", NULL};
    CU_ASSERT_EQUAL(daebus_config_apply_args(&cfg, 3, a7, &err), DAEBUS_EINVAL);
    /* Nothing was applied by the failed calls. */
    CU_ASSERT_EQUAL(cfg.http_port, 0);
    CU_ASSERT_PTR_NULL(cfg.redis_url);
    setenv("DAEBUS_HTTP_PORT", "-5", 1);
    CU_ASSERT_EQUAL(daebus_config_apply_env(&cfg, &err), DAEBUS_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "DAEBUS_HTTP_PORT"));
    clear_env();
}

static void test_help_version(void)
{
    daebus_config cfg = DAEBUS_CONFIG_INIT;
    char *h[] = {"svc", "--help", NULL};
    CU_ASSERT_EQUAL(daebus_config_apply_args(&cfg, 2, h, NULL), DAEBUS_CONFIG_HELP);
    char *v[] = {"svc", "--version", NULL};
    CU_ASSERT_EQUAL(daebus_config_apply_args(&cfg, 2, v, NULL), DAEBUS_CONFIG_VERSION);
    char buf[2048];
    size_t n = daebus_config_usage("svc", buf, sizeof buf);
    CU_ASSERT_TRUE(n > 100);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "--redis"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "DAEBUS_HTTP_PORT"));
}

static void test_port_zero_is_any(void)
{
    clear_env();
    daebus_config cfg = DAEBUS_CONFIG_INIT;
    char *a[] = {"svc", "--port", "0", NULL};
    CU_ASSERT_EQUAL(daebus_config_apply_args(&cfg, 3, a, NULL), 0);
    CU_ASSERT_EQUAL(cfg.http_port, DAEBUS_PORT_ANY);
    daebus_app *app = code_app();
    CU_ASSERT_EQUAL(daebus_app_configure_args(app, 3, a, NULL), 0);
    CU_ASSERT_EQUAL(daebus_app_http_port(app), DAEBUS_PORT_ANY);
    daebus_app_destroy(app);
}

static void test_service_options(void)
{
    clear_env();
    unsetenv("SVC_INTERVAL");
    unsetenv("SVC_DIR");
    daebus_app *app = code_app();
    daebus_app_option interval = {.name = "interval",
                                  .env = "SVC_INTERVAL",
                                  .default_value = "60",
                                  .help = "seconds between reports",
                                  .metavar = "SECONDS"};
    daebus_app_option dir = {.name = "dir", .env = "SVC_DIR", .help = "where files are"};
    CU_ASSERT_EQUAL(daebus_app_add_option(app, &interval), 0);
    CU_ASSERT_EQUAL(daebus_app_add_option(app, &dir), 0);
    /* misuse */
    CU_ASSERT_EQUAL(daebus_app_add_option(app, &interval), DAEBUS_EEXIST);
    daebus_app_option std = {.name = "port"};
    CU_ASSERT_EQUAL(daebus_app_add_option(app, &std), DAEBUS_EINVAL);
    daebus_app_option dashes = {.name = "--x"};
    CU_ASSERT_EQUAL(daebus_app_add_option(app, &dashes), DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(daebus_app_add_option(app, NULL), DAEBUS_EINVAL);

    /* default before configure and with nothing given */
    CU_ASSERT_STRING_EQUAL(daebus_app_option_value(app, "interval"), "60");
    CU_ASSERT_PTR_NULL(daebus_app_option_value(app, "dir"));
    CU_ASSERT_PTR_NULL(daebus_app_option_value(app, "nope"));
    /* environment over default, argv over environment, standard flags around them */
    setenv("SVC_INTERVAL", "30", 1);
    setenv("SVC_DIR", "/env/dir", 1);
    char *argv[] = {"svc", "--service", "svc_opts", "--interval=5", "--port", "4444", NULL};
    daebus_error err = {0};
    CU_ASSERT_EQUAL(daebus_app_configure_args(app, 6, argv, &err), 0);
    CU_ASSERT_STRING_EQUAL(daebus_app_option_value(app, "interval"), "5");
    CU_ASSERT_STRING_EQUAL(daebus_app_option_value(app, "dir"), "/env/dir");
    CU_ASSERT_STRING_EQUAL(daebus_app_service(app), "svc_opts");
    CU_ASSERT_EQUAL(daebus_app_http_port(app), 4444);
    /* declared after configure: refused */
    daebus_app_option late = {.name = "late"};
    CU_ASSERT_EQUAL(daebus_app_add_option(app, &late), DAEBUS_ESTATE);
    daebus_app_destroy(app);

    /* a missing value and an unknown flag next to a service option */
    app = code_app();
    CU_ASSERT_EQUAL(daebus_app_add_option(app, &interval), 0);
    char *miss[] = {"svc", "--interval", NULL};
    CU_ASSERT_EQUAL(daebus_app_configure_args(app, 2, miss, &err), DAEBUS_EINVAL);
    CU_ASSERT_STRING_EQUAL(err.message, "option '--interval' needs a value");
    char *bogus[] = {"svc", "--interval", "3", "--bogus", NULL};
    CU_ASSERT_EQUAL(daebus_app_configure_args(app, 4, bogus, &err), DAEBUS_EINVAL);
    CU_ASSERT_STRING_EQUAL(err.message, "unknown option '--bogus'");
    char *help[] = {"svc", "--interval", "3", "--help", NULL};
    CU_ASSERT_EQUAL(daebus_app_configure_args(app, 4, help, &err), DAEBUS_CONFIG_HELP);
    daebus_app_destroy(app);
    unsetenv("SVC_INTERVAL");
    unsetenv("SVC_DIR");
}

/* --help lists the service's options with their environment and default. */
static void test_service_options_help(void)
{
    int out[2];
    CU_ASSERT_EQUAL_FATAL(pipe(out), 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(out[1], 1);
        daebus_app *app = code_app();
        daebus_app_option o = {.name = "status-interval",
                               .env = "CHATTY_INTERVAL",
                               .default_value = "60",
                               .help = "status broadcast period",
                               .metavar = "SECONDS"};
        daebus_app_add_option(app, &o);
        char *argv[] = {"svc", "--help", NULL};
        daebus_app_configure(app, 2, argv);
        _exit(42);
    }
    close(out[1]);
    char buf[4096];
    size_t n = 0;
    ssize_t k;
    while (n < sizeof buf - 1 && (k = read(out[0], buf + n, sizeof buf - 1 - n)) > 0)
        n += (size_t)k;
    buf[n] = '\0';
    close(out[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    CU_ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "--redis"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "Options of this service:\n"
                                       "  --status-interval SECONDS status broadcast period "
                                       "(CHATTY_INTERVAL, default 60)\n"));
}

static void test_parse_int(void)
{
    long v = 0;
    CU_ASSERT_EQUAL(daebus_parse_int("42", 0, 100, &v), 0);
    CU_ASSERT_EQUAL(v, 42);
    CU_ASSERT_EQUAL(daebus_parse_int("", 0, 100, &v), DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(daebus_parse_int("101", 0, 100, &v), DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(daebus_parse_int("99999999999999999999", 0, 100, &v), DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(daebus_parse_int(NULL, 0, 100, &v), DAEBUS_EINVAL);
}

int main(void)
{
    daebus_log_set_level(DAEBUS_LOG_ERROR);
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("config", NULL, NULL);
    CU_add_test(s, "code only", test_code_only);
    CU_add_test(s, "env over code", test_env_over_code);
    CU_add_test(s, "argv over env", test_argv_over_env);
    CU_add_test(s, "bad values", test_bad_values);
    CU_add_test(s, "help and version", test_help_version);
    CU_add_test(s, "parse_int", test_parse_int);
    CU_add_test(s, "--port 0 is any free port", test_port_zero_is_any);
    CU_add_test(s, "service options", test_service_options);
    CU_add_test(s, "service options in --help", test_service_options_help);
    return ts_run_cunit();
}
