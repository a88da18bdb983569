/* wsc_common.h - fixtures of the WebSocket-across-replicas tests
 * (test_ws_cluster.c, test_ws_cluster_load.c): replicas of ws_cluster_service
 * on a private redis-server, the /op call, and the python client holder
 * (ws_cluster_clients.py). Static functions: each test program includes it once. */
#ifndef WSC_COMMON_H
#define WSC_COMMON_H

#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "daebus/daebus.h"
#include "testsupport.h"

#define WSC_MAX 4

typedef struct wsc_proc {
    pid_t pid;
    int port;
} wsc_proc;

static ts_redis wsc_redis;
static char wsc_binary[1024], wsc_script[1024], wsc_log[256], wsc_dir[256];
static wsc_proc wsc_procs[WSC_MAX];
static pid_t wsc_holder = -1;
/* The replicas' heartbeat (the default): 3 heartbeats (3 s) is what a death may
 * take to show; shorter ones make a replica stalled by a loaded machine look
 * dead. */
#define WSC_HEARTBEAT "1"
static const double wsc_heartbeat = 1.0;

/* Starts replica i (no_bus: a single process without a bus). */
static void wsc_start_opt(int i, bool no_bus)
{
    wsc_proc p = {-1, ts_free_port()};
    char portbuf[16];
    snprintf(portbuf, sizeof portbuf, "%d", p.port);
    p.pid = fork();
    if (p.pid == 0) {
        char log[300]; /* one log per replica: a log line does not say its process */
        snprintf(log, sizeof log, "%s.%d", wsc_log, i);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        setenv("WSC_HEARTBEAT", WSC_HEARTBEAT, 1);
        if (no_bus)
            setenv("WSC_NO_BUS", "1", 1);
        execl(wsc_binary, wsc_binary, "--port", portbuf, "--redis", wsc_redis.url, (char *)NULL);
        _exit(127);
    }
    wsc_procs[i] = p;
}

static void wsc_start(int i)
{
    wsc_start_opt(i, false);
}

static void wsc_reap(pid_t *pid, int sig)
{
    if (*pid <= 0)
        return;
    kill(*pid, sig);
    double end = ts_now() + 10;
    int st;
    while (waitpid(*pid, &st, WNOHANG) == 0 && ts_now() < end)
        ts_sleep_ms(10);
    if (ts_now() >= end) {
        kill(*pid, SIGKILL);
        waitpid(*pid, &st, 0);
    }
    *pid = -1;
}

/* Stops replica i with SIGTERM. Returns: its exit status, or -1 when it did
 * not exit within 10 s or died of a signal (an ASan report aborts it). */
static int wsc_stop(int i)
{
    pid_t pid = wsc_procs[i].pid;
    if (pid <= 0)
        return -1;
    kill(pid, SIGTERM);
    double end = ts_now() + 10;
    int st = 0;
    pid_t r;
    while ((r = waitpid(pid, &st, WNOHANG)) == 0 && ts_now() < end)
        ts_sleep_ms(10);
    if (r != pid) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
    }
    wsc_procs[i].pid = -1;
    return r == pid && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Keys of the service's WebSocket directory left in Redis (reap claims,
 * which expire on their own, aside). Returns: their number, or -1. */
static int wsc_directory_keys(void)
{
    char port[16];
    snprintf(port, sizeof port, "%d", wsc_redis.port);
    char cmd[200];
    snprintf(
        cmd, sizeof cmd,
        "redis-cli -p %s --raw KEYS 'daebus:wsc_test:ws:*' | grep ':ws:' | grep -vc ':ws:reap:'",
        port);
    FILE *f = popen(cmd, "r");
    int n = -1;
    if (f) {
        if (fscanf(f, "%d", &n) != 1)
            n = -1;
        pclose(f);
    }
    if (n != 0) {
        snprintf(cmd, sizeof cmd, "redis-cli -p %s --raw KEYS 'daebus:wsc_test:ws:*'", port);
        if (system(cmd) != 0)
            n = -1;
    }
    return n;
}

/* POST /op to replica i with body; returns the parsed answer or NULL. */
static cJSON *wsc_op(int i, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static cJSON *wsc_op(int i, const char *fmt, ...)
{
    char *body = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&body, fmt, ap);
    va_end(ap);
    if (n < 0 || wsc_procs[i].pid <= 0) {
        free(body);
        return NULL;
    }
    ts_http_response r;
    int rc = ts_http(wsc_procs[i].port, "POST", "/op", "Content-Type: application/json\r\n", body,
                     (size_t)n, &r);
    free(body);
    if (rc != 0)
        return NULL;
    cJSON *o = r.status == 200 ? cJSON_Parse(r.body) : NULL;
    ts_http_free(&r);
    return o;
}

/* The number field name of an /op answer (-1000 when absent). */
static double wsc_num(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsNumber(v) ? v->valuedouble : -1000;
}

/* An /op answer's number (the answer freed). */
static double wsc_op_num(int i, const char *name, const char *body)
{
    cJSON *o = wsc_op(i, "%s", body);
    double v = wsc_num(o, name);
    cJSON_Delete(o);
    return v;
}

static int wsc_view_count(int i)
{
    cJSON *o = wsc_op(i, "{\"op\":\"view\"}");
    int n = wsc_num(o, "rc") == 0 ? (int)wsc_num(o, "count") : -1;
    int ids = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(o, "clients"));
    cJSON_Delete(o);
    return n == ids ? n : -2;
}

/* Is replica i started (its bus too: it starts last) and does its view answer? */
static int wsc_answers(int i)
{
    cJSON *o = wsc_op(i, "{\"op\":\"stats\"}");
    double started = wsc_num(o, "instances");
    cJSON_Delete(o);
    return started >= 1 && wsc_view_count(i) >= 0;
}

/* Says why replica i does not answer (after a failed wait). */
static void wsc_explain(int i)
{
    cJSON *o = wsc_op(i, "{\"op\":\"view\"}");
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    printf("\n  replica %d (port %d, pid %d): view answered %s\n", i, wsc_procs[i].port,
           (int)wsc_procs[i].pid, s ? s : "nothing");
    free(s);
    cJSON_Delete(o);
    o = wsc_op(i, "{\"op\":\"stats\"}");
    printf("  its cluster_errors: %.0f\n", wsc_num(o, "cluster_errors"));
    cJSON_Delete(o);
    if (getenv("WSC_GDB")) {
        char cmd[200];
        snprintf(cmd, sizeof cmd,
                 "gdb -p %d -batch -ex 'thread apply all bt 12' 2>/dev/null | grep -E "
                 "'^Thread|daebus|redis' | grep -v 'civetweb-worker' > /tmp/wsc_gdb_%d.txt",
                 (int)wsc_procs[i].pid, (int)wsc_procs[i].pid);
        if (system(cmd) != 0)
            printf("  gdb failed\n");
    }
}

/* The departed calls replica i saw: died is 1, 0, or -1 (both). */
static int wsc_departed_count(int i, int died)
{
    cJSON *o = wsc_op(i, "{\"op\":\"stats\"}");
    int n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(o, "departed"))
    {
        bool d = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "died"));
        n += died < 0 || d == (died == 1);
    }
    cJSON_Delete(o);
    return n;
}

/* ---- the client holder ---- */

static char wsc_ready[300], wsc_result[300];

static int wsc_holder_start(int n, int nprocs, const char *prefix)
{
    snprintf(wsc_ready, sizeof wsc_ready, "%s/ready.json", wsc_dir);
    snprintf(wsc_result, sizeof wsc_result, "%s/result.json", wsc_dir);
    unlink(wsc_ready);
    unlink(wsc_result);
    char ports[128] = "", nbuf[16];
    for (int i = 0; i < nprocs; i++)
        snprintf(ports + strlen(ports), sizeof ports - strlen(ports), "%s%d", i ? "," : "",
                 wsc_procs[i].port);
    snprintf(nbuf, sizeof nbuf, "%d", n);
    wsc_holder = fork();
    if (wsc_holder == 0) {
        execl("/usr/bin/python3", "python3", wsc_script, "hold", wsc_ready, wsc_result, nbuf, ports,
              prefix, (char *)NULL);
        _exit(127);
    }
    TS_WAIT_UNTIL(access(wsc_ready, F_OK) == 0, 60);
    return access(wsc_ready, F_OK) == 0 ? 0 : -1;
}

/* Stops the holder and returns its record ({id: {got, closed}}). */
static cJSON *wsc_holder_stop(void)
{
    if (wsc_holder <= 0)
        return NULL;
    kill(wsc_holder, SIGUSR1);
    TS_WAIT_UNTIL(access(wsc_result, F_OK) == 0, 20);
    wsc_reap(&wsc_holder, SIGKILL);
    char *text = ts_read_file(wsc_result, NULL);
    cJSON *o = text ? cJSON_Parse(text) : NULL;
    free(text);
    return o;
}

/* How many times client id got kind:seq. */
static int wsc_got(const cJSON *rec, const char *id, const char *kind, int seq)
{
    char key[64];
    snprintf(key, sizeof key, "%s:%d", kind, seq);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(rec, id);
    const cJSON *v =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(c, "got"), key);
    return cJSON_IsNumber(v) ? v->valueint : 0;
}

/* How many lines of replica i's log contain text. */
__attribute__((unused)) static int wsc_log_count(int i, const char *text)
{
    char log[300], line[2048];
    snprintf(log, sizeof log, "%s.%d", wsc_log, i);
    FILE *f = fopen(log, "r");
    int n = 0;
    while (f && fgets(line, sizeof line, f))
        n += strstr(line, text) != NULL;
    if (f)
        fclose(f);
    return n;
}

/* The order in which client id got the messages of kinds "b" and "bd" (the
 * holder's "order"): 1 when it is b:1 .. b:n, then bd:n+1 when direct. */
__attribute__((unused)) static int wsc_in_order(const cJSON *rec, const char *id, int n,
                                                bool direct)
{
    const cJSON *o =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(rec, id), "order");
    if (cJSON_GetArraySize(o) != n + (direct ? 1 : 0))
        return 0;
    for (int k = 0; k < n + (direct ? 1 : 0); k++) {
        char want[32];
        snprintf(want, sizeof want, "%s:%d", k < n ? "b" : "bd", k + 1);
        const cJSON *e = cJSON_GetArrayItem(o, k);
        if (!cJSON_IsString(e) || strcmp(e->valuestring, want) != 0)
            return 0;
    }
    return 1;
}

static int wsc_init(const char *name)
{
    const char *bin = getenv("DAEBUS_BINARY_DIR");
    const char *src = getenv("DAEBUS_SOURCE_DIR");
    snprintf(wsc_binary, sizeof wsc_binary, "%s/tests/ws_cluster_service", bin ? bin : ".");
    snprintf(wsc_script, sizeof wsc_script, "%s/tests/integration/cluster/ws_cluster_clients.py",
             src ? src : "..");
    snprintf(wsc_log, sizeof wsc_log, "/tmp/daebus_%s_%d.log", name, (int)getpid());
    snprintf(wsc_dir, sizeof wsc_dir, "/tmp/daebus_%s_%d.d", name, (int)getpid());
    mkdir(wsc_dir, 0700);
    for (int i = 0; i < WSC_MAX; i++)
        wsc_procs[i].pid = -1;
    return ts_redis_start(&wsc_redis, NULL) == 0 ? 0 : -1;
}

static int wsc_cleanup(void)
{
    wsc_reap(&wsc_holder, SIGKILL);
    for (int i = 0; i < WSC_MAX; i++)
        wsc_reap(&wsc_procs[i].pid, SIGKILL);
    ts_redis_stop(&wsc_redis);
    unlink(wsc_ready);
    unlink(wsc_result);
    rmdir(wsc_dir);
    for (int i = 0; i < WSC_MAX; i++) {
        char log[300];
        snprintf(log, sizeof log, "%s.%d", wsc_log, i);
        if (CU_get_number_of_tests_failed() == 0 && !getenv("WSC_KEEP_LOG"))
            unlink(log);
        else if (access(log, F_OK) == 0)
            printf("\n  service log kept: %s\n", log);
    }
    return 0;
}

#endif
