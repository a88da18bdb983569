/* channels_fixture.c - channels_service processes for the channel tests
 * (see channels_fixture.h). */
#include "channels_fixture.h"
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "daebus/daebus.h"

static char test_name[64] = "test_channels";
static char binary[1024], script[1024];

void chan_fixture_init(const char *test, const char *script_name)
{
    const char *src = getenv("DAEBUS_SOURCE_DIR"), *bin = getenv("DAEBUS_BINARY_DIR");
    snprintf(test_name, sizeof test_name, "%s", test);
    snprintf(binary, sizeof binary, "%s/tests/channels_service", bin ? bin : ".");
    snprintf(script, sizeof script, "%s/tests/integration/websocket/%s", src ? src : ".",
             script_name);
}

chan_proc chan_start(const ts_redis *redis, bool bus, int i)
{
    chan_proc p = {-1, ts_free_port(), bus, ""};
    char port[16];
    snprintf(port, sizeof port, "%d", p.port);
    snprintf(p.log, sizeof p.log, "/tmp/%s.%d.%d.log", test_name, (int)getpid(), i);
    p.pid = fork();
    if (p.pid == 0) {
        int fd = open(p.log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        if (!bus)
            setenv("CHAN_NO_BUS", "1", 1);
        execl(binary, binary, "--port", port, "--redis", redis->url, (char *)NULL);
        _exit(127);
    }
    return p;
}

void chan_start_two(const ts_redis *redis, int i, chan_proc *a, chan_proc *b)
{
    *a = chan_start(redis, true, i);
    *b = chan_start(redis, true, i + 1);
    TS_WAIT_UNTIL(chan_answers(a) == 0 && chan_answers(b) == 0, 30);
}

int chan_answers(const chan_proc *p)
{
    const char *body = "{\"op\":\"subscribers\",\"channel\":\"x\"}";
    ts_http_response r;
    if (ts_http(p->port, "POST", "/op", "Content-Type: application/json\r\n", body, strlen(body),
                &r) != 0)
        return -1000;
    cJSON *o = r.status == 200 ? cJSON_Parse(r.body) : NULL;
    ts_http_free(&r);
    const cJSON *rc = cJSON_GetObjectItemCaseSensitive(o, "rc");
    int v = cJSON_IsNumber(rc) ? rc->valueint : -1000;
    if (v == 0 && p->bus && !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "cluster")))
        v = -1001;
    cJSON_Delete(o);
    return v;
}

/* true when log holds a sanitizer report (then copied to stderr). */
static bool sanitizer_report(const char *log)
{
    char *text = ts_read_file(log, NULL);
    char *at = text ? strstr(text, "Sanitizer") : NULL;
    while (at && at > text && at[-1] != '\n')
        at--; /* from the start of its line */
    if (at)
        fprintf(stderr, "%s: %s\n", log, at);
    free(text);
    return at != NULL;
}

int chan_stop(chan_proc *p)
{
    if (p->pid <= 0)
        return -1;
    kill(p->pid, SIGTERM);
    int st = 0;
    pid_t r = 0;
    double end = ts_now() + 10;
    while ((r = waitpid(p->pid, &st, WNOHANG)) == 0 && ts_now() < end)
        ts_sleep_ms(10);
    if (r != p->pid) {
        kill(p->pid, SIGKILL);
        waitpid(p->pid, &st, 0);
    }
    p->pid = -1;
    int code = r > 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return code == 0 && sanitizer_report(p->log) ? -2 : code;
}

/* Forks /bin/sh -c "/usr/bin/python3 <script> <args>"; the child's pid or -1. */
static pid_t py_vspawn(const char *fmt, va_list ap)
{
    char cmd[2048];
    int n = snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s ", script);
    if (n < 0 || (size_t)n >= sizeof cmd)
        return -1;
    int m = vsnprintf(cmd + n, sizeof cmd - (size_t)n, fmt, ap);
    if (m < 0 || (size_t)m >= sizeof cmd - (size_t)n)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

pid_t chan_py_spawn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pid_t pid = py_vspawn(fmt, ap);
    va_end(ap);
    return pid;
}

int chan_py(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pid_t pid = py_vspawn(fmt, ap);
    va_end(ap);
    return chan_py_wait(pid);
}

int chan_py_wait(pid_t pid)
{
    int st = 0;
    if (pid <= 0 || waitpid(pid, &st, 0) != pid)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int chan_keys(const ts_redis *redis, const char *pattern)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "redis-cli -p %d --raw KEYS 'daebus:chan_test:ws:%s' | grep -c .",
             redis->port, pattern);
    FILE *f = popen(cmd, "r");
    int n = -1;
    if (f) {
        if (fscanf(f, "%d", &n) != 1)
            n = -1;
        pclose(f);
    }
    return n;
}

static void path_in(char *p, size_t size, const char *dir, const char *name)
{
    snprintf(p, size, "%s/%s", dir, name);
}

bool chan_file_in(const char *dir, const char *name)
{
    char p[300];
    path_in(p, sizeof p, dir, name);
    return access(p, F_OK) == 0;
}

void chan_touch(const char *dir, const char *name)
{
    char p[300];
    path_in(p, sizeof p, dir, name);
    FILE *f = fopen(p, "w");
    if (f)
        fclose(f);
}

void chan_unlink(const char *dir, const char *name)
{
    char p[300];
    path_in(p, sizeof p, dir, name);
    unlink(p);
}
