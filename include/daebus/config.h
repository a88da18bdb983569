/* daebus/config.h - service configuration: code, then environment, then argv.
 *
 * Precedence is code < environment < command line. A service sets defaults in
 * code (daebus_app_options), then daebus_app_configure() (app.h) applies the
 * environment and the standard flags. A service declares flags and environment
 * variables of its own with daebus_app_add_option() (app.h): configure parses
 * them with these and lists them in --help. The functions below are the
 * pieces configure is built from.
 *
 * Standard flags: --port N, --redis URL, --service NAME, --log-level LEVEL,
 * --max-workers N, --help, --version ("--flag=value" works too).
 * Environment: DAEBUS_HTTP_PORT, DAEBUS_REDIS_URL, DAEBUS_SERVICE,
 * DAEBUS_LOG_LEVEL, DAEBUS_MAX_WORKERS.
 *
 * Not thread-safe: configure before daebus_app_run().
 * Thread: before the app runs.
 */
#ifndef DAEBUS_CONFIG_H
#define DAEBUS_CONFIG_H

#include <stddef.h>
#include "daebus/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DAEBUS_VERSION_STRING "0.1.0"

/* Ports in every options struct: 0 means the default (the HTTP component's
 * 8080), DAEBUS_PORT_ANY means "any free port" (the kernel picks one; read it
 * back with daebus_http_port()). On the command line and in DAEBUS_HTTP_PORT,
 * "0" means any free port, as with most servers. */
#define DAEBUS_PORT_ANY (-1)

/* A configuration layer. Zero means unset: NULL strings, 0 numbers, so
 * "daebus_config c = {0}" is an empty layer.
 * Ownership: strings are borrowed (they point into argv, the environment or
 * the caller's literals); daebus_app copies what it keeps. */
typedef struct daebus_config {
    const char *service;
    const char *redis_url;
    int http_port;   /* 1..65535, DAEBUS_PORT_ANY (from "0"), 0 = unset */
    int log_level;   /* daebus_log_level, 0 (DAEBUS_LOG_DEFAULT) = unset */
    int max_workers; /* 1..1024, 0 = unset */
} daebus_config;

#define DAEBUS_CONFIG_INIT                                                                         \
    {                                                                                              \
        NULL, NULL, 0, 0, 0                                                                        \
    }

/* Results of daebus_config_apply_args besides 0 and errors. */
#define DAEBUS_CONFIG_HELP    1
#define DAEBUS_CONFIG_VERSION 2

/* Overrides cfg with the DAEBUS_* environment variables that are set.
 * Returns: 0, or DAEBUS_EINVAL with a message in err (e.g. "DAEBUS_HTTP_PORT:
 * 'abc' is not a port number (0-65535)"); cfg is unchanged on error.
 * Not thread-safe (reads the environment). Thread: before the app runs. */
DAEBUS_API int daebus_config_apply_env(daebus_config *cfg, daebus_error *err);

/* Overrides cfg with the standard flags in argv[1..argc-1]. Unknown flags are an
 * error ("unknown option '--bogus'"). Returns: 0, DAEBUS_CONFIG_HELP, DAEBUS_CONFIG_VERSION, or
 * DAEBUS_EINVAL with a message in err. Ownership: cfg borrows argv strings. */
DAEBUS_API int daebus_config_apply_args(daebus_config *cfg, int argc, char **argv,
                                        daebus_error *err);

/* Copies the set fields of over onto base. */
DAEBUS_API void daebus_config_merge(daebus_config *base, const daebus_config *over);

/* Writes the standard --help text for program to buf. Returns: bytes written. */
DAEBUS_API size_t daebus_config_usage(const char *program, char *buf, size_t len);

/* Parses a decimal integer in [min, max] with nothing trailing. Returns 0 or
 * DAEBUS_EINVAL. */
DAEBUS_API int daebus_parse_int(const char *text, long min, long max, long *out);

#ifdef __cplusplus
}
#endif
#endif
