/* bench_footprint - memory and start-up of a service (perf_service: HTTP,
 * WebSocket and bus on one app) run as its own process:
 *   - start-up time: from fork to the "ready" log line (median of 3, with the
 *     default 1,024-client capacity), and once with capacity for 5,000 clients;
 *   - resident memory with 0, 1,000 and 5,000 idle WebSocket clients, and the
 *     memory per connection, for daebus and for a raw CivetWeb WebSocket server
 *     with the same thread count (perf_service with PERF_RAW=1).
 * The 200 MB target is in decimal megabytes (the MiB figures / 1.048576).
 * The clients run in separate processes (perf_wsload.c). A private
 * redis-server serves the bus.
 *
 * Usage: bench_footprint [clients (default 5000)] */
#include <pthread.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "perf_common.h"
#include "perf_wsload.h"
#include "testsupport.h"

#define PROCS 2

typedef struct service {
    pid_t pid;
    int port;
    int fd; /* its stderr */
    double t_fork, t_ready;
    pthread_t reader;
    pthread_mutex_t lock;
    pthread_cond_t cond;
} service;

/* Reads the service's log; notes when the ready line arrives, then keeps
 * draining so that the service never blocks on its log. */
static void *reader_main(void *arg)
{
    service *s = arg;
    FILE *f = fdopen(s->fd, "r");
    char line[1024];
    while (f && fgets(line, sizeof line, f)) {
        if (strstr(line, "ready (components")) {
            pthread_mutex_lock(&s->lock);
            s->t_ready = perf_now();
            pthread_cond_signal(&s->cond);
            pthread_mutex_unlock(&s->lock);
        } else if (getenv("PERF_SERVICE_LOG")) {
            fputs(line, stderr);
        }
    }
    if (f)
        fclose(f);
    pthread_mutex_lock(&s->lock);
    if (s->t_ready == 0)
        s->t_ready = -1;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

static char service_path[1024];

/* Starts perf_service; returns 0 once it logged its ready line. */
static int service_start(service *s, const char *redis_url, int max_clients, bool raw)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    s->port = ts_free_port();
    int pfd[2];
    if (pipe(pfd) != 0)
        return -1;
    char port[16], mc[16];
    snprintf(port, sizeof port, "%d", s->port);
    snprintf(mc, sizeof mc, "%d", max_clients);
    s->t_fork = perf_now();
    s->pid = fork();
    if (s->pid == 0) {
        dup2(pfd[1], 2);
        close(pfd[0]);
        close(pfd[1]);
        setenv("PERF_MAX_CLIENTS", mc, 1);
        if (raw)
            setenv("PERF_RAW", "1", 1);
        execl(service_path, service_path, "--port", port, "--redis", redis_url, "--log-level",
              "info", (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    s->fd = pfd[0];
    pthread_create(&s->reader, NULL, reader_main, s);
    pthread_mutex_lock(&s->lock);
    while (s->t_ready == 0)
        pthread_cond_wait(&s->cond, &s->lock);
    int ok = s->t_ready > 0;
    pthread_mutex_unlock(&s->lock);
    return ok ? 0 : -1;
}

/* SIGTERMs the service; returns its exit status (0 = clean stop). */
static int service_stop(service *s)
{
    int st = -1;
    kill(s->pid, SIGTERM);
    waitpid(s->pid, &st, 0);
    pthread_join(s->reader, NULL);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int connect_idle(perf_ws_proc *procs, int port, int n)
{
    perf_ws_cmd cmd;
    memset(&cmd, 0, sizeof cmd);
    cmd.port = port;
    cmd.mode = PERF_WS_SINK;
    cmd.seconds = 0.2; /* after "go": nothing arrives; the clients close */
    cmd.expect = 1;
    snprintf(cmd.path, sizeof cmd.path, "/ws");
    int connected = 0;
    for (int p = 0; p < PROCS; p++) {
        int c = 0;
        cmd.nclients = n / PROCS + (p < n % PROCS);
        if (perf_ws_connect(&procs[p], &cmd, &c) != 0)
            return -1;
        connected += c;
    }
    return connected;
}

static void release_idle(perf_ws_proc *procs)
{
    for (int p = 0; p < PROCS; p++)
        perf_ws_go(&procs[p]);
    for (int p = 0; p < PROCS; p++) {
        perf_ws_result r;
        perf_ws_result_wait(&procs[p], &r, NULL, NULL);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    int total = argc > 1 ? atoi(argv[1]) : 5000;
    int first = total < 1000 ? total : 1000;
    perf_raise_nofile();
    ssize_t n = readlink("/proc/self/exe", service_path, sizeof service_path - 32);
    if (n <= 0)
        return 1;
    service_path[n] = '\0';
    char *slash = strrchr(service_path, '/');
    snprintf(slash + 1, sizeof service_path - (size_t)(slash + 1 - service_path), "perf_service");
    perf_ws_proc procs[2 * PROCS]; /* the first 1,000 clients, then the rest */
    for (int p = 0; p < 2 * PROCS; p++)
        if (perf_ws_spawn(&procs[p]) != 0)
            return 1;
    ts_redis redis;
    if (ts_redis_start(&redis, NULL) != 0)
        return 1;
    int errors = 0;

    /* start-up with default capacity */
    double times[3];
    for (int i = 0; i < 3; i++) {
        service s;
        if (service_start(&s, redis.url, 1024, false) != 0) {
            fprintf(stderr, "bench_footprint: %s did not get ready\n", service_path);
            ts_redis_stop(&redis);
            return 1;
        }
        times[i] = s.t_ready - s.t_fork;
        if (service_stop(&s) != 0)
            errors++;
    }
    qsort(times, 3, sizeof times[0], cmp_double);
    perf_emit("footprint", "daebus", "startup_to_ready", times[1] * 1e3, "ms");

    /* capacity for every client: the raw CivetWeb baseline, then daebus */
    long rss_raw = 0, rss_fw = 0;
    for (int raw = 1; raw >= 0; raw--) {
        const char *kase = raw ? "raw_civetweb" : "daebus";
        service s;
        if (service_start(&s, redis.url, total + 16, raw) != 0) {
            ts_redis_stop(&redis);
            return 1;
        }
        perf_emit("footprint", kase, "startup_to_ready_5000_capacity", (s.t_ready - s.t_fork) * 1e3,
                  "ms");
        ts_sleep_ms(1000);
        long rss0 = perf_rss_kb(s.pid);
        perf_emit("footprint", kase, "rss_0_clients", rss0 / 1024.0, "MiB");
        int c1 = connect_idle(procs, s.port, first);
        ts_sleep_ms(1000);
        long rss1 = perf_rss_kb(s.pid);
        int c2 = connect_idle(procs + PROCS, s.port, total - first);
        ts_sleep_ms(1000);
        long rss2 = perf_rss_kb(s.pid);
        if (c1 != first || c2 != total - first) {
            fprintf(stderr, "bench_footprint: %s: %d + %d of %d clients connected\n", kase, c1, c2,
                    total);
            errors++;
        }
        char m[64];
        snprintf(m, sizeof m, "rss_%d_clients", first);
        perf_emit("footprint", kase, m, rss1 / 1024.0, "MiB");
        snprintf(m, sizeof m, "rss_%d_clients", total);
        perf_emit("footprint", kase, m, rss2 / 1024.0, "MiB");
        perf_emit("footprint", kase, "per_connection",
                  total > 0 ? (double)(rss2 - rss0) / total : 0, "KiB");
        perf_emit("footprint", kase, "per_reserved_thread", (double)rss0 / (total + 16 + 32),
                  "KiB");
        release_idle(procs);
        release_idle(procs + PROCS);
        if (service_stop(&s) != 0)
            errors++;
        *(raw ? &rss_raw : &rss_fw) = rss2;
    }
    printf("{\"bench\":\"footprint\",\"case\":\"target\",\"metric\":\"rss_%d_clients_mb\","
           "\"value\":%.1f,\"target\":200,\"cmp\":\"<=\",\"met\":%s}\n",
           total, rss_fw * 1024 / 1e6, rss_fw * 1024 / 1e6 < 200 ? "true" : "false");
    perf_emit("footprint", "ratio", "rss_vs_raw", rss_raw > 0 ? (double)rss_fw / rss_raw : 0, "x");
    perf_emit("footprint", "all", "errors", errors, "count");
    for (int p = 0; p < 2 * PROCS; p++)
        perf_ws_end(&procs[p]);
    ts_redis_stop(&redis);
    return errors ? 1 : 0;
}
