/* bp_cluster.h - three chat_service replicas on one private Redis, for the
 * blueprint tests across replicas (test_bp_cluster*.c). Each replica is the
 * real example binary on its own port, heartbeat BP_HEARTBEAT; the Python
 * clients (bp_cluster_client.py) connect to the replicas' ports directly, as
 * a load balancer would spread them. */
#ifndef BP_CLUSTER_H
#define BP_CLUSTER_H

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
#include "daebus/daebus.h"
#include "testsupport.h"

#define BP_REPLICAS 3
/* 1 s, the default: on a loaded machine (load average 15-50 on 2 cores
 * measured while these tests were written) a replica's threads stalled past
 * the window of a 0.2 s and once of a 0.5 s heartbeat, and the others then
 * took it for dead. */
#define BP_HEARTBEAT "1"

typedef struct bp_replica {
    pid_t pid;
    int port;
} bp_replica;

static ts_redis bp_redis;
static bp_replica bp_rep[BP_REPLICAS];
static char bp_binary[1024], bp_script[1024], bp_log[256];

static void bp_start(int i)
{
    bp_replica *r = &bp_rep[i];
    if (r->port == 0)
        r->port = ts_free_port();
    char port[16];
    snprintf(port, sizeof port, "%d", r->port);
    r->pid = fork();
    if (r->pid == 0) {
        int fd = open(bp_log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        static const char *const vars[] = {"CHAT_STATIC_DIR", "CHAT_ALLOWED_ORIGINS",
                                           "CHAT_MAX_ROOMS", "CHAT_HISTORY_MESSAGES"};
        for (size_t k = 0; k < sizeof vars / sizeof vars[0]; k++)
            unsetenv(vars[k]);
        setenv("CHAT_STATUS_INTERVAL", "3600", 1);
        setenv("CHAT_RATE_LIMIT", "0", 1);
        setenv("CHAT_HEARTBEAT", BP_HEARTBEAT, 1);
        execl(bp_binary, bp_binary, "--port", port, "--redis", bp_redis.url, (char *)NULL);
        _exit(127);
    }
}

static void bp_reap(int i, int sig)
{
    bp_replica *r = &bp_rep[i];
    if (r->pid <= 0)
        return;
    kill(r->pid, sig);
    double end = ts_now() + 10;
    int st;
    while (waitpid(r->pid, &st, WNOHANG) == 0 && ts_now() < end)
        ts_sleep_ms(10);
    if (ts_now() >= end) {
        kill(r->pid, SIGKILL);
        waitpid(r->pid, &st, 0);
    }
    r->pid = -1;
}

/* /health of replica i: its cluster.instances (-1: no answer or not ready). */
static int bp_instances_seen(int i)
{
    ts_http_response res;
    if (bp_rep[i].pid <= 0 || ts_http(bp_rep[i].port, "GET", "/health", NULL, NULL, 0, &res) != 0)
        return -1;
    cJSON *o = cJSON_Parse(res.body);
    ts_http_free(&res);
    const cJSON *c = cJSON_GetObjectItem(cJSON_GetObjectItem(o, "checks"), "cluster");
    int n = cJSON_IsTrue(cJSON_GetObjectItem(o, "ready")) &&
                    cJSON_IsNumber(cJSON_GetObjectItem(c, "instances"))
                ? cJSON_GetObjectItem(c, "instances")->valueint
                : -1;
    cJSON_Delete(o);
    return n;
}

/* Do the running replicas all see n instances? */
static int bp_all_see(int n)
{
    for (int i = 0; i < BP_REPLICAS; i++)
        if (bp_rep[i].pid > 0 && bp_instances_seen(i) != n)
            return 0;
    return 1;
}

/* Starts every replica that is not running and waits until all see each other. */
static int bp_up(void)
{
    int n = 0;
    for (int i = 0; i < BP_REPLICAS; i++) {
        if (bp_rep[i].pid <= 0)
            bp_start(i);
        n++;
    }
    TS_WAIT_UNTIL(bp_all_see(n), 20);
    return bp_all_see(n) ? 0 : -1;
}

static const char *bp_python(void)
{
    const char *env = getenv("DAEBUS_PYTHON");
    if (env && *env)
        return env;
    return access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
}

/* Runs bp_cluster_client.py scenario with extra arguments. Returns its status. */
static int bp_python_run(const char *scenario, const char *extra)
{
    char cmd[4096];
    int n =
        snprintf(cmd, sizeof cmd, "%s '%s' %s '%s' %d,%d,%d %s", bp_python(), bp_script, scenario,
                 bp_redis.url, bp_rep[0].port, bp_rep[1].port, bp_rep[2].port, extra ? extra : "");
    if (n < 0 || (size_t)n >= sizeof cmd)
        return -1;
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The fixture: Redis (extra_conf as ts_redis_start) and three replicas. */
static int bp_init(const char *tag, const char *extra_conf)
{
    const char *bin = getenv("DAEBUS_BINARY_DIR"), *src = getenv("DAEBUS_SOURCE_DIR");
    if (!bin || !src)
        return -1;
    snprintf(bp_binary, sizeof bp_binary, "%s/bin/chat_service", bin);
    snprintf(bp_script, sizeof bp_script, "%s/tests/integration/cluster/bp_cluster_client.py", src);
    snprintf(bp_log, sizeof bp_log, "/tmp/daebus-test-%s-%d.log", tag, (int)getpid());
    unlink(bp_log);
    for (int i = 0; i < BP_REPLICAS; i++)
        bp_rep[i] = (bp_replica){-1, 0};
    if (access(bp_binary, X_OK) != 0 || ts_redis_start(&bp_redis, extra_conf) != 0)
        return -1;
    if (bp_up() != 0) {
        fprintf(stderr, "the replicas did not come up; log: %s\n", bp_log);
        return -1;
    }
    return 0;
}

static int bp_cleanup(void)
{
    for (int i = 0; i < BP_REPLICAS; i++)
        bp_reap(i, SIGTERM);
    ts_redis_stop(&bp_redis);
    if (CU_get_number_of_tests_failed() == 0)
        unlink(bp_log);
    else
        printf("\n  replicas' log kept: %s\n", bp_log);
    return 0;
}

#endif
