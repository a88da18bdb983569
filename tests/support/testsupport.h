/* testsupport.h - fixtures shared by the test programs.
 *
 * A private redis-server per test program (port chosen free, data in a temp
 * directory), free ports, a tiny blocking HTTP/1.1 client over a real socket,
 * a CUnit runner that returns a process status, and one wait-until macro.
 * ts_service.h (included here) starts an app with its components in-process.
 */
#ifndef DAEBUS_TESTSUPPORT_H
#define DAEBUS_TESTSUPPORT_H

#include <stddef.h>
#include <sys/types.h>
#include <CUnit/Basic.h>
#include "ts_service.h"

typedef struct ts_redis {
    pid_t pid;
    int port;
    char dir[256];
    char url[300];
    char unix_path[300];
} ts_redis;

/* Starts redis-server on a free loopback port (and a Unix socket in a temp
 * directory). Extra config lines (e.g. "requirepass s3cret") may be given.
 * Returns 0 once it answers PING, -1 on failure (message on stderr). */
int ts_redis_start(ts_redis *r, const char *extra_conf);
/* Restarts on the same port (after ts_redis_kill). */
int ts_redis_restart(ts_redis *r);
/* SIGKILLs the server (simulates a crash); the directory stays. */
void ts_redis_kill(ts_redis *r);
/* Stops the server and removes its directory. */
void ts_redis_stop(ts_redis *r);

/* A TCP port on 127.0.0.1 that was free a moment ago. */
int ts_free_port(void);

/* Monotonic seconds. */
double ts_now(void);
/* Sleeps ms milliseconds. */
void ts_sleep_ms(int ms);

/* Polls cond (an expression, evaluated again every 5 ms) until it is true or
 * seconds pass on the monotonic clock. The caller checks cond afterwards. */
#define TS_WAIT_UNTIL(cond, seconds)                                                               \
    do {                                                                                           \
        double ts_wait_end_ = ts_now() + (seconds);                                                \
        while (!(cond) && ts_now() < ts_wait_end_)                                                 \
            ts_sleep_ms(5);                                                                        \
    } while (0)

typedef struct ts_http_response {
    int status;
    char headers[8192]; /* raw header block, lines joined by \r\n */
    char *body;         /* malloc'd, NUL-terminated */
    size_t body_len;
} ts_http_response;

/* Sends one HTTP/1.1 request (Connection: close) to 127.0.0.1:port. extra_headers
 * are full lines each ending in \r\n (may be NULL). Returns 0 or -1. */
int ts_http(int port, const char *method, const char *target, const char *extra_headers,
            const char *body, size_t body_len, ts_http_response *out);
/* Value of header name (case-insensitive) copied into buf; returns buf or NULL. */
const char *ts_http_header(const ts_http_response *r, const char *name, char *buf, size_t len);
void ts_http_free(ts_http_response *r);

/* Runs every registered CUnit suite; returns 0 if all passed, 1 otherwise. */
int ts_run_cunit(void);

/* Reads a file into a malloc'd string; NULL on failure. */
char *ts_read_file(const char *path, size_t *len);

#endif
