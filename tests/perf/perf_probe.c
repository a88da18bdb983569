/* perf_probe.c - CPU time per process and Redis command counts (see perf_probe.h). */
#include "perf_probe.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "perf_common.h"

double perf_cpu_seconds(pid_t pid)
{
    char path[64], buf[2048];
    if (pid > 0)
        snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    else
        snprintf(path, sizeof path, "/proc/self/stat");
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* fields after the command name (which may hold spaces): state is field 3,
     * utime 14, stime 15 */
    char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static redisReply *redis_command(int port, const char *cmd)
{
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (!c || c->err) {
        if (c)
            redisFree(c);
        return NULL;
    }
    redisReply *r = redisCommand(c, cmd);
    redisFree(c);
    return r;
}

int perf_redis_reset_stats(int port)
{
    redisReply *r = redis_command(port, "CONFIG RESETSTAT");
    int ok = r && r->type == REDIS_REPLY_STATUS;
    if (r)
        freeReplyObject(r);
    return ok ? 0 : -1;
}

long perf_redis_emit_stats(int port, const char *bench, const char *kase, const char *what,
                           double per)
{
    redisReply *r = redis_command(port, "INFO commandstats");
    if (!r || r->type != REDIS_REPLY_STRING) {
        if (r)
            freeReplyObject(r);
        return -1;
    }
    long total = 0;
    char metric[128];
    /* lines "cmdstat_<name>:calls=<n>,usec=..." */
    char *save = NULL;
    for (char *line = strtok_r(r->str, "\r\n", &save); line; line = strtok_r(NULL, "\r\n", &save)) {
        char name[64];
        long calls;
        if (sscanf(line, "cmdstat_%63[^:]:calls=%ld", name, &calls) != 2)
            continue;
        /* the probe's own INFO and CONFIG */
        if (!strcmp(name, "info") || !strncmp(name, "config", 6))
            continue;
        total += calls;
        snprintf(metric, sizeof metric, "redis_%s_per_%s", name, what);
        perf_emit(bench, kase, metric, per > 0 ? (double)calls / per : 0, "calls");
    }
    snprintf(metric, sizeof metric, "redis_commands_per_%s", what);
    perf_emit(bench, kase, metric, per > 0 ? (double)total / per : 0, "calls");
    freeReplyObject(r);
    return total;
}

double perf_redis_info_number(int port, const char *field)
{
    redisReply *r = redis_command(port, "INFO");
    double v = -1;
    if (r && r->type == REDIS_REPLY_STRING) {
        size_t fl = strlen(field);
        for (const char *p = r->str; (p = strstr(p, field)) != NULL; p += fl)
            if ((p == r->str || p[-1] == '\n') && p[fl] == ':') {
                v = atof(p + fl + 1);
                break;
            }
    }
    if (r)
        freeReplyObject(r);
    return v;
}

double perf_redis_rate(int port, double seconds)
{
    /* total_commands_processed counts the probe's own INFO: one per reading */
    double a = perf_redis_info_number(port, "total_commands_processed");
    double t0 = perf_now();
    usleep((useconds_t)(seconds * 1e6));
    double b = perf_redis_info_number(port, "total_commands_processed");
    double dt = perf_now() - t0;
    return a >= 0 && b >= 0 && dt > 0 ? (b - a - 1) / dt : -1;
}

double perf_redis_ping_p50(int port, int n)
{
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (!c || c->err) {
        if (c)
            redisFree(c);
        return -1;
    }
    perf_samples s = {0};
    for (int i = 0; i < n; i++) {
        double t = perf_now();
        redisReply *r = redisCommand(c, "PING");
        if (!r)
            break;
        perf_samples_add(&s, perf_now() - t);
        freeReplyObject(r);
    }
    redisFree(c);
    double p = s.n ? perf_percentile(s.v, s.n, 50) : -1;
    perf_samples_free(&s);
    return p;
}
