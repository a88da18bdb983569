/* config.c - configuration layers: environment and the standard flags.
 *
 * Each layer fills a daebus_config whose unset fields stay NULL/-1, so layers
 * merge by "set fields win". Parsing is strict: a value that is not entirely a
 * number in range is an error with a message naming the source.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "daebus/config.h"
#include "daebus/log.h"
#include "redis_url.h"

int daebus_parse_int(const char *text, long min, long max, long *out)
{
    if (!text || !*text)
        return DAEBUS_EINVAL;
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || !end || *end != '\0' || v < min || v > max)
        return DAEBUS_EINVAL;
    *out = v;
    return 0;
}

/* Validates one (name, value) pair into cfg. src names the source in messages. */
static int set_value(daebus_config *cfg, const char *name, const char *value, const char *src,
                     daebus_error *err)
{
    long v;
    if (strcmp(name, "port") == 0) {
        if (daebus_parse_int(value, 0, 65535, &v) != 0)
            return daebus_error_set(err, DAEBUS_EINVAL, "%s: '%s' is not a port number (0-65535)",
                                    src, value);
        cfg->http_port = v == 0 ? DAEBUS_PORT_ANY : (int)v;
    } else if (strcmp(name, "redis") == 0) {
        if (!value ||
            (strncmp(value, "redis://", 8) != 0 && strncmp(value, "unix://", 7) != 0 &&
             strncmp(value, "rediss://", 9) != 0 && strncmp(value, "redis-sentinel://", 17) != 0)) {
            char shown[96]; /* without a password: the message may be logged */
            daebus__redis_url_redact(value, shown, sizeof shown);
            return daebus_error_set(
                err, DAEBUS_EINVAL,
                "%s: '%s' is not a Redis URL (redis://[:password@]host:port[/db], "
                "unix:///path or redis-sentinel://host:port[,host:port...]/master-name[/db])",
                src, shown);
        }
        cfg->redis_url = value;
    } else if (strcmp(name, "service") == 0) {
        if (!value || !*value || strlen(value) > 200)
            return daebus_error_set(err, DAEBUS_EINVAL,
                                    "%s: the service name must be 1 to 200 characters", src);
        cfg->service = value;
    } else if (strcmp(name, "log-level") == 0) {
        daebus_log_level lvl;
        if (daebus_log_level_parse(value, &lvl) != 0)
            return daebus_error_set(err, DAEBUS_EINVAL,
                                    "%s: '%s' is not a log level (debug, info, warning, error, "
                                    "critical, off)",
                                    src, value ? value : "");
        cfg->log_level = (int)lvl;
    } else if (strcmp(name, "max-workers") == 0) {
        if (daebus_parse_int(value, 1, 1024, &v) != 0)
            return daebus_error_set(err, DAEBUS_EINVAL, "%s: '%s' is not a worker count (1-1024)",
                                    src, value);
        cfg->max_workers = (int)v;
    } else {
        return daebus_error_set(err, DAEBUS_EINVAL, "unknown option '--%s'", name);
    }
    return 0;
}

static bool known_flag(const char *name)
{
    static const char *const names[] = {"port", "redis", "service", "log-level", "max-workers"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(name, names[i]) == 0)
            return true;
    return false;
}

int daebus_config_apply_env(daebus_config *cfg, daebus_error *err)
{
    static const struct {
        const char *env, *name;
    } map[] = {{"DAEBUS_HTTP_PORT", "port"},
               {"DAEBUS_REDIS_URL", "redis"},
               {"DAEBUS_SERVICE", "service"},
               {"DAEBUS_LOG_LEVEL", "log-level"},
               {"DAEBUS_MAX_WORKERS", "max-workers"}};
    if (!cfg)
        return DAEBUS_EINVAL;
    daebus_config tmp = *cfg;
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        const char *v = getenv(map[i].env);
        if (!v)
            continue;
        int rc = set_value(&tmp, map[i].name, v, map[i].env, err);
        if (rc)
            return rc;
    }
    *cfg = tmp;
    return 0;
}

int daebus_config_apply_args(daebus_config *cfg, int argc, char **argv, daebus_error *err)
{
    if (!cfg || argc < 0)
        return DAEBUS_EINVAL;
    daebus_config tmp = *cfg;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0)
            return DAEBUS_CONFIG_HELP;
        if (strcmp(arg, "--version") == 0 || strcmp(arg, "-V") == 0)
            return DAEBUS_CONFIG_VERSION;
        if (strncmp(arg, "--", 2) != 0)
            return daebus_error_set(err, DAEBUS_EINVAL, "unexpected argument '%s'", arg);
        char name[64];
        const char *value;
        const char *eq = strchr(arg + 2, '=');
        if (eq) {
            size_t len = (size_t)(eq - (arg + 2));
            if (len >= sizeof name)
                return daebus_error_set(err, DAEBUS_EINVAL, "unknown option '%.*s'",
                                        (int)(eq - arg), arg);
            memcpy(name, arg + 2, len);
            name[len] = '\0';
            value = eq + 1;
        } else {
            if (strlen(arg + 2) >= sizeof name)
                return daebus_error_set(err, DAEBUS_EINVAL, "unknown option '%s'", arg);
            snprintf(name, sizeof name, "%s", arg + 2);
            if (!known_flag(name))
                return daebus_error_set(err, DAEBUS_EINVAL, "unknown option '%s'", arg);
            if (i + 1 >= argc)
                return daebus_error_set(err, DAEBUS_EINVAL, "option '%s' needs a value", arg);
            value = argv[++i];
        }
        char src[80];
        snprintf(src, sizeof src, "--%s", name);
        int rc = set_value(&tmp, name, value, src, err);
        if (rc)
            return rc;
    }
    *cfg = tmp;
    return 0;
}

void daebus_config_merge(daebus_config *base, const daebus_config *over)
{
    if (!base || !over)
        return;
    if (over->service)
        base->service = over->service;
    if (over->redis_url)
        base->redis_url = over->redis_url;
    if (over->http_port != 0)
        base->http_port = over->http_port;
    if (over->log_level > 0)
        base->log_level = over->log_level;
    if (over->max_workers > 0)
        base->max_workers = over->max_workers;
}

size_t daebus_config_usage(const char *program, char *buf, size_t len)
{
    int n = snprintf(buf, len,
                     "Usage: %s [options]\n"
                     "\n"
                     "Options (each also from the environment variable shown):\n"
                     "  --port N             HTTP and WebSocket port, 0 = any free port "
                     "(DAEBUS_HTTP_PORT)\n"
                     "  --redis URL          redis://[:password@]host:port[/db] or unix:///path "
                     "(DAEBUS_REDIS_URL)\n"
                     "  --service NAME       service name, also its bus channel (DAEBUS_SERVICE)\n"
                     "  --log-level LEVEL    debug, info, warning, error, critical, off "
                     "(DAEBUS_LOG_LEVEL)\n"
                     "  --max-workers N      bus worker threads, 1-1024 (DAEBUS_MAX_WORKERS)\n"
                     "  --help               show this text and exit\n"
                     "  --version            show the daebus-c version and exit\n"
                     "\n"
                     "DAEBUS_LOG_FORMAT=json writes one JSON object per log line.\n",
                     program ? program : "service");
    if (n < 0)
        return 0;
    return (size_t)n < len ? (size_t)n : (len ? len - 1 : 0);
}
