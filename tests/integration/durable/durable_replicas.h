/* durable_replicas.h - replicas of durable_service for the durable tests
 * (test_durable_e2e.c, test_durable_soak.c): started as child processes
 * with their settings in the environment (durable_service.c reads them),
 * their output appended to one log file, stopped with a signal (SIGKILL
 * when they do not exit within 10 s); a raw hiredis client; the log checked
 * for sanitizer reports. The raw client is the bus tests' (bus/common.h). */
#ifndef DURABLE_REPLICAS_H
#define DURABLE_REPLICAS_H

#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "../bus/common.h" /* raw_connect */

/* Starts $DAEBUS_BINARY_DIR/tests/durable_service --redis url, output
 * appended to logpath, env: "NAME=value" strings, NULL-terminated. Returns
 * its pid (-1 when fork failed). */
static inline pid_t dur_spawn(const char *url, const char *logpath, const char *const *env)
{
    const char *bin = getenv("DAEBUS_BINARY_DIR");
    char path[512];
    snprintf(path, sizeof path, "%s/tests/durable_service", bin ? bin : ".");
    pid_t pid = fork();
    if (pid == 0) {
        FILE *f = freopen(logpath, "a", stdout);
        if (f)
            dup2(fileno(stdout), 2);
        for (int i = 0; env[i]; i++)
            putenv((char *)env[i]);
        execl(path, path, "--redis", url, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Sends sig to *pid and waits for it (SIGKILL after 10 s); *pid = -1. */
static inline void dur_reap(pid_t *pid, int sig)
{
    if (*pid <= 0)
        return;
    kill(*pid, sig);
    int st;
    double end = ts_now() + 10;
    while (waitpid(*pid, &st, WNOHANG) == 0 && ts_now() < end)
        ts_sleep_ms(10);
    if (ts_now() >= end) {
        kill(*pid, SIGKILL);
        waitpid(*pid, &st, 0);
    }
    *pid = -1;
}

/* A raw client of the test's Redis (5 s time-outs), or NULL. */
static inline redisContext *dur_raw(int port)
{
    return raw_connect(port);
}

/* Whether no replica reported a sanitizer error (ASan/UBSan builds) in
 * logpath; false too when it cannot be read. */
static inline bool dur_log_clean(const char *logpath)
{
    size_t len = 0;
    char *log = ts_read_file(logpath, &len);
    if (!log)
        return false;
    bool clean = !strstr(log, "Sanitizer") && !strstr(log, "runtime error:");
    if (!clean)
        fprintf(stderr, "sanitizer report in %s\n", logpath);
    free(log);
    return clean;
}

/* At the end of a suite: the log goes when every test passed, else its path
 * is printed for the reader. */
static inline void dur_log_done(const char *logpath)
{
    if (CU_get_number_of_failures() == 0)
        unlink(logpath);
    else
        fprintf(stderr, "replica logs: %s\n", logpath);
}

#endif
