/* once_fixture.c - see once_fixture.h. */
#include "once_fixture.h"
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

ts_redis once_redis;
once_proc once_procs[ONCE_MAX_PROCS];

static char binary[1024], call_bin[1024], client_py[1024], logdir[256], svc_log[300];

int once_setup(const char *name)
{
    const char *bin = getenv("DAEBUS_BINARY_DIR"), *src = getenv("DAEBUS_SOURCE_DIR");
    snprintf(binary, sizeof binary, "%s/tests/once_service", bin ? bin : ".");
    snprintf(call_bin, sizeof call_bin, "%s/bin/daebus-call", bin ? bin : ".");
    snprintf(client_py, sizeof client_py, "%s/tests/integration/cluster/once_client.py",
             src ? src : "..");
    snprintf(logdir, sizeof logdir, "/tmp/daebus_%s_XXXXXX", name);
    if (!mkdtemp(logdir))
        return -1;
    snprintf(svc_log, sizeof svc_log, "%s/service.out", logdir);
    for (int i = 0; i < ONCE_MAX_PROCS; i++)
        once_procs[i].pid = -1;
    return ts_redis_start(&once_redis, NULL) == 0 ? 0 : -1;
}

void once_teardown(void)
{
    for (int i = 0; i < ONCE_MAX_PROCS; i++)
        once_reap(i, SIGKILL);
    ts_redis_stop(&once_redis);
    if (CU_get_number_of_tests_failed() == 0 && !getenv("ONCE_KEEP_LOGS")) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", logdir);
        if (system(cmd) != 0)
            fprintf(stderr, "cannot remove %s\n", logdir);
    } else {
        printf("\n  replica logs kept in %s (service.out: their output)\n", logdir);
    }
}

static void to_file(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
    }
}

void once_start(int i, const char *heartbeat)
{
    once_proc p = {-1, ts_free_port()};
    char portbuf[16];
    snprintf(portbuf, sizeof portbuf, "%d", p.port);
    p.pid = fork();
    if (p.pid == 0) {
        to_file(svc_log);
        setenv("ONCE_LOG_DIR", logdir, 1);
        setenv("ONCE_HEARTBEAT", heartbeat, 1);
        execl(binary, binary, "--port", portbuf, "--redis", once_redis.url, "--log-level",
              getenv("ONCE_LOG_LEVEL") ? getenv("ONCE_LOG_LEVEL") : "info", (char *)NULL);
        _exit(127);
    }
    once_procs[i] = p;
}

void once_reap(int i, int sig)
{
    once_proc *p = &once_procs[i];
    if (p->pid <= 0)
        return;
    kill(p->pid, sig);
    double end = ts_now() + 10;
    int st;
    while (waitpid(p->pid, &st, WNOHANG) == 0 && ts_now() < end)
        ts_sleep_ms(10);
    if (ts_now() >= end) {
        kill(p->pid, SIGKILL);
        waitpid(p->pid, &st, 0);
    }
    p->pid = -1;
}

double once_metric(int i, const char *name)
{
    ts_http_response r;
    if (once_procs[i].pid <= 0 || ts_http(once_procs[i].port, "GET", "/metrics", NULL, NULL, 0, &r))
        return -1;
    double v = -1;
    size_t n = strlen(name);
    for (const char *p = r.body; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, name, n) == 0 && p[n] == ' ') {
            v = atof(p + n + 1);
            break;
        }
    ts_http_free(&r);
    return v;
}

int once_ready(int i)
{
    return once_metric(i, "daebus_bus_connected") == 1;
}

int once_all_ready(double seconds)
{
    double end = ts_now() + seconds;
    for (int i = 0; i < ONCE_MAX_PROCS; i++) {
        if (once_procs[i].pid <= 0)
            continue;
        while (!once_ready(i) && ts_now() < end)
            ts_sleep_ms(20);
        if (!once_ready(i))
            return 0;
    }
    return 1;
}

int once_primary(int skip)
{
    int which = -1, count = 0;
    for (int i = 0; i < ONCE_MAX_PROCS; i++)
        if (i != skip && once_procs[i].pid > 0 && once_metric(i, "daebus_bus_primary") == 1) {
            which = i;
            count++;
        }
    return count == 1 ? which : -1;
}

int once_primary_wait(double seconds, int skip)
{
    double end = ts_now() + seconds;
    int p;
    while ((p = once_primary(skip)) < 0 && ts_now() < end)
        ts_sleep_ms(20);
    return p;
}

/* ---- runs ---- */

struct once_runs {
    char **lines;
    size_t n, cap;
};

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void add_lines(once_runs *r, char *text)
{
    for (char *save = NULL, *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        if (r->n == r->cap) {
            r->cap = r->cap ? r->cap * 2 : 1024;
            r->lines = realloc(r->lines, r->cap * sizeof *r->lines);
        }
        r->lines[r->n++] = strdup(l);
    }
}

once_runs *once_runs_load(void)
{
    once_runs *r = calloc(1, sizeof *r);
    DIR *d = opendir(logdir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".log") != 0)
            continue;
        char path[600];
        snprintf(path, sizeof path, "%s/%s", logdir, e->d_name);
        char *text = ts_read_file(path, NULL);
        if (text)
            add_lines(r, text);
        free(text);
    }
    if (d)
        closedir(d);
    if (r->n)
        qsort(r->lines, r->n, sizeof *r->lines, cmp_str);
    return r;
}

int once_runs_count(const once_runs *r, char kind, const char *id)
{
    char key[300];
    snprintf(key, sizeof key, "%c %s", kind, id);
    int n = 0;
    for (size_t i = 0; i < r->n; i++) /* sorted: a binary search would do; the logs are small */
        n += strcmp(r->lines[i], key) == 0;
    return n;
}

int once_runs_prefix(const once_runs *r, char kind, const char *prefix)
{
    char key[300];
    snprintf(key, sizeof key, "%c %s", kind, prefix);
    size_t k = strlen(key);
    int n = 0;
    for (size_t i = 0; i < r->n; i++)
        n += strncmp(r->lines[i], key, k) == 0;
    return n;
}

int once_runs_twice(const once_runs *r, char kind, const char *prefix)
{
    char key[300];
    snprintf(key, sizeof key, "%c %s", kind, prefix);
    size_t k = strlen(key);
    int twice = 0;
    for (size_t i = 1; i < r->n; i++)
        if (strncmp(r->lines[i], key, k) == 0 && strcmp(r->lines[i], r->lines[i - 1]) == 0 &&
            (i < 2 || strcmp(r->lines[i], r->lines[i - 2]) != 0)) {
            if (twice++ < 5)
                printf("\n  run more than once: '%s'", r->lines[i]);
        }
    return twice;
}

void once_runs_free(once_runs *r)
{
    for (size_t i = 0; r && i < r->n; i++)
        free(r->lines[i]);
    if (r)
        free(r->lines);
    free(r);
}

int once_pid_runs(pid_t pid, char kind, const char *prefix)
{
    char path[400], key[300];
    snprintf(path, sizeof path, "%s/%ld.log", logdir, (long)pid);
    snprintf(key, sizeof key, "%c %s", kind, prefix);
    char *text = ts_read_file(path, NULL);
    int n = 0;
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        n += strncmp(p, key, strlen(key)) == 0;
    free(text);
    return n;
}

/* ---- foreign callers ---- */

static void out_path(pid_t pid, char *buf, size_t len)
{
    snprintf(buf, len, "%s/out-%ld.txt", logdir, (long)pid);
}

pid_t once_python(const char *mode, const char *target, int n, const char *prefix, int window,
                  double timeout)
{
    char ns[16], ws[16], ts[32], port[16];
    snprintf(ns, sizeof ns, "%d", n);
    snprintf(ws, sizeof ws, "%d", window);
    snprintf(ts, sizeof ts, "%g", timeout);
    snprintf(port, sizeof port, "%d", once_redis.port);
    pid_t pid = fork();
    if (pid == 0) {
        char path[400];
        out_path(getpid(), path, sizeof path);
        to_file(path);
        execl("/usr/bin/python3", "python3", client_py, port, target, mode, ns, prefix, ws, ts,
              (char *)NULL);
        _exit(127);
    }
    return pid;
}

static int wait_pid(pid_t pid, double seconds)
{
    double end = ts_now() + seconds;
    int st = -1;
    while (waitpid(pid, &st, WNOHANG) == 0) {
        if (ts_now() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        ts_sleep_ms(20);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

cJSON *once_python_wait(pid_t pid, double seconds)
{
    int rc = wait_pid(pid, seconds);
    char path[400];
    out_path(pid, path, sizeof path);
    char *text = ts_read_file(path, NULL);
    const char *line = text ? strstr(text, "{\"sent\"") : NULL; /* before it: a traceback */
    cJSON *o = rc == 0 && line ? cJSON_Parse(line) : NULL;
    if (!o)
        printf("\n  python client (exit %d) said: %s\n", rc, text ? text : "(nothing)");
    free(text);
    return o;
}

pid_t once_daebus_call(int n, const char *prefix)
{
    char script[1600];
    snprintf(script, sizeof script,
             "i=0; while [ $i -lt %d ]; do '%s' %s work '{\"id\":\"%s-'$i'\"}' --timeout 5 "
             "--redis '%s'; i=$((i+1)); done",
             n, call_bin, ONCE_SERVICE, prefix, once_redis.url);
    pid_t pid = fork();
    if (pid == 0) {
        char path[400];
        out_path(getpid(), path, sizeof path);
        to_file(path);
        execl("/bin/sh", "sh", "-c", script, (char *)NULL);
        _exit(127);
    }
    return pid;
}

int once_shell_wait(pid_t pid, const char *prefix, double seconds)
{
    wait_pid(pid, seconds);
    char path[400], needle[64];
    out_path(pid, path, sizeof path);
    snprintf(needle, sizeof needle, "\"id\":\"%s-", prefix);
    char *text = ts_read_file(path, NULL);
    int n = 0;
    for (const char *p = text; p && (p = strstr(p, needle)) != NULL; p++)
        n++;
    free(text);
    return n;
}

/* ---- the C caller ---- */

static void load_done(daebus_caller *c, int status, const cJSON *payload, const char *msg,
                      void *user)
{
    (void)c, (void)payload, (void)msg;
    once_load *l = user;
    atomic_fetch_add(status == 0 ? &l->ok : &l->failed, 1);
    atomic_fetch_add(&l->done, 1);
    pthread_mutex_lock(&l->lock);
    atomic_fetch_sub(&l->inflight, 1);
    pthread_cond_signal(&l->cond);
    pthread_mutex_unlock(&l->lock);
}

static void *load_main(void *arg)
{
    once_load *l = arg;
    double start = ts_now();
    for (int i = 0; i < l->n; i++) {
        double due = l->rate > 0 ? start + i / l->rate : 0;
        while (ts_now() < due)
            ts_sleep_ms(1);
        pthread_mutex_lock(&l->lock);
        while (atomic_load(&l->inflight) >= l->window)
            pthread_cond_wait(&l->cond, &l->lock);
        atomic_fetch_add(&l->inflight, 1);
        pthread_mutex_unlock(&l->lock);
        char id[64];
        snprintf(id, sizeof id, "%s-%d", l->prefix, i);
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "id", id);
        int rc = daebus_caller_request_async(l->caller, ONCE_SERVICE, "work", p, l->timeout,
                                             load_done, NULL, l, NULL);
        cJSON_Delete(p);
        if (rc != 0) {
            atomic_fetch_add(&l->failed, 1);
            atomic_fetch_add(&l->done, 1);
            atomic_fetch_sub(&l->inflight, 1);
        }
    }
    return NULL;
}

int once_load_start(once_load *l, int n, const char *prefix, int window, double timeout)
{
    return once_load_start_paced(l, n, prefix, window, timeout, 0);
}

int once_load_start_paced(once_load *l, int n, const char *prefix, int window, double timeout,
                          double rate)
{
    memset(l, 0, sizeof *l);
    l->n = n;
    l->rate = rate;
    l->window = window;
    l->timeout = timeout;
    snprintf(l->prefix, sizeof l->prefix, "%s", prefix);
    l->caller = daebus_caller_create(once_redis.url, NULL, NULL);
    if (!l->caller)
        return -1;
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->cond, NULL);
    return pthread_create(&l->thread, NULL, load_main, l);
}

void once_load_join(once_load *l)
{
    pthread_join(l->thread, NULL);
    TS_WAIT_UNTIL(atomic_load(&l->done) == l->n, l->timeout + 2);
    daebus_caller_destroy(l->caller);
    pthread_mutex_destroy(&l->lock);
    pthread_cond_destroy(&l->cond);
}
