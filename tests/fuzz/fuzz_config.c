/* fuzz_config.c - the standard flags and environment variables.
 *
 * Input: newline-separated words, used as a command line (argv[1..]) and,
 * for the first five, as the values of the DAEBUS_* environment variables.
 * Whatever is accepted must be in range; a refusal must leave the
 * configuration unchanged and say why.
 */
#include <limits.h>
#include <stdbool.h>
#include "daebus/daebus.h"
#include "fuzz_common.h"

#define MAX_ARGS 24

static const char *const env_names[] = {"DAEBUS_HTTP_PORT", "DAEBUS_REDIS_URL", "DAEBUS_SERVICE",
                                        "DAEBUS_LOG_LEVEL", "DAEBUS_MAX_WORKERS"};

static void check_config(const daebus_config *c)
{
    /* zero = unset; a port is 1..65535 or DAEBUS_PORT_ANY ("0" given) */
    FUZZ_CHECK(c->http_port >= DAEBUS_PORT_ANY && c->http_port <= 65535);
    FUZZ_CHECK(c->log_level >= DAEBUS_LOG_DEFAULT && c->log_level <= DAEBUS_LOG_OFF);
    FUZZ_CHECK(c->max_workers == 0 || (c->max_workers >= 1 && c->max_workers <= 1024));
    if (c->service)
        FUZZ_CHECK(c->service[0] && strlen(c->service) <= 200);
    if (c->redis_url) {
        FUZZ_CHECK(strncmp(c->redis_url, "redis://", 8) == 0 ||
                   strncmp(c->redis_url, "unix://", 7) == 0 ||
                   strncmp(c->redis_url, "rediss://", 9) == 0 ||
                   strncmp(c->redis_url, "redis-sentinel://", 17) == 0);
        /* The URL parser gets whatever the flag let through. */
        daebus_error err = {0};
        (void)daebus_redis_url_check(c->redis_url, &err);
        FUZZ_CHECK(fuzz_terminated(err.message, sizeof err.message));
    }
}

static void check_result(int rc, const daebus_config *before, const daebus_config *after,
                         const daebus_error *err)
{
    FUZZ_CHECK(rc == 0 || rc == DAEBUS_CONFIG_HELP || rc == DAEBUS_CONFIG_VERSION ||
               rc == DAEBUS_EINVAL);
    if (rc != 0)
        FUZZ_CHECK(memcmp(before, after, sizeof *before) == 0);
    if (rc == DAEBUS_EINVAL)
        FUZZ_CHECK(err->code == rc && err->message[0] &&
                   fuzz_terminated(err->message, sizeof err->message));
    check_config(after);
}

static void check_word(const char *w)
{
    long v = 0;
    if (daebus_parse_int(w, 0, 65535, &v) == 0)
        FUZZ_CHECK(v >= 0 && v <= 65535);
    if (daebus_parse_int(w, LONG_MIN, LONG_MAX, &v) == 0)
        FUZZ_CHECK(w[0] != '\0');
    daebus_log_level lvl;
    if (daebus_log_level_parse(w, &lvl) == 0)
        FUZZ_CHECK(lvl >= DAEBUS_LOG_DEBUG && lvl <= DAEBUS_LOG_OFF);
    char small[32];
    size_t n = daebus_config_usage(w, small, sizeof small);
    FUZZ_CHECK(n < sizeof small && strlen(small) == n);
}

#define SECRET "S3cr3tPw"

/* A --redis value with a password in it is refused without showing it. */
static void check_secret(const char *word)
{
    if (strstr(word, SECRET))
        return;
    size_t cap = strlen(word) + 64;
    char *arg = malloc(cap);
    FUZZ_CHECK(arg != NULL);
    for (int form = 0; form < 2; form++) {
        snprintf(arg, cap, form ? "--redis=%s://u:" SECRET "@h" : "--redis=%s?password=" SECRET,
                 word);
        char *argv[] = {"service", arg, NULL};
        daebus_config cfg = DAEBUS_CONFIG_INIT;
        daebus_error err = {0};
        if (daebus_config_apply_args(&cfg, 2, argv, &err) != 0)
            FUZZ_CHECK(strstr(err.message, SECRET) == NULL);
    }
    free(arg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_strndup(data, size);
    char *argv[MAX_ARGS + 2];
    int argc = 0;
    argv[argc++] = "service";
    for (char *p = text; argc <= MAX_ARGS;) {
        argv[argc++] = p;
        char *nl = strchr(p, '\n');
        if (!nl)
            break;
        *nl = '\0';
        p = nl + 1;
    }
    argv[argc] = NULL;

    daebus_config cfg = DAEBUS_CONFIG_INIT, before = cfg;
    daebus_error err = {0};
    int rc = daebus_config_apply_args(&cfg, argc, argv, &err);
    check_result(rc, &before, &cfg, &err);
    /* Without an error record as well. */
    daebus_config quiet = DAEBUS_CONFIG_INIT;
    FUZZ_CHECK(daebus_config_apply_args(&quiet, argc, argv, NULL) == rc);

    /* The environment layer, then merged under the flags. */
    for (int i = 1; i < argc && i <= 5; i++)
        setenv(env_names[i - 1], argv[i], 1);
    daebus_config env = DAEBUS_CONFIG_INIT, env_before = env;
    daebus_error err2 = {0};
    int rc2 = daebus_config_apply_env(&env, &err2);
    FUZZ_CHECK(rc2 == 0 || rc2 == DAEBUS_EINVAL);
    check_result(rc2, &env_before, &env, &err2);
    for (size_t i = 0; i < sizeof env_names / sizeof env_names[0]; i++)
        unsetenv(env_names[i]);
    if (rc == 0) {
        daebus_config merged = env;
        daebus_config_merge(&merged, &cfg);
        check_config(&merged);
        if (cfg.http_port >= 0)
            FUZZ_CHECK(merged.http_port == cfg.http_port);
    }

    for (int i = 1; i < argc; i++)
        check_word(argv[i]);
    check_secret(argv[1]);
    free(text);
    return 0;
}
