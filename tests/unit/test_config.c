/* Configuration precedence (code < env < argv) and bad values. */
#include <stdlib.h>
#include <string.h>
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
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "bogus"));
    char *a6[] = {"svc", "--port", NULL};
    CU_ASSERT_EQUAL(daebus_config_apply_args(&cfg, 2, a6, &err), DAEBUS_EINVAL);
    char *a7[] = {"svc", "--max-workers", "0", NULL};
    CU_ASSERT_EQUAL(daebus_config_apply_args(&cfg, 3, a7, &err), DAEBUS_EINVAL);
    /* Nothing was applied by the failed calls. */
    CU_ASSERT_EQUAL(cfg.http_port, -1);
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
    return ts_run_cunit();
}
