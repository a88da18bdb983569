/* perf_svc.c - a daebus service as a child process (see perf_svc.h). */
#include "perf_svc.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daebus/daebus.h"
#include "perf_common.h"
#include "testsupport.h"
/* Reads the service's log; notes when the ready line arrives, then keeps
 * draining so that the service never blocks on its log. */
static void *reader_main(void *arg)
{
    perf_svc *s = arg;
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

/* Starts perf_service; returns 0 once it logged its ready line. */
int perf_svc_start(perf_svc *s, const char *path, const char *redis_url, int max_clients, bool raw)
{
    perf_svc_opts o = {
        .path = path, .redis_url = redis_url, .max_clients = max_clients, .raw = raw};
    return perf_svc_start_opts(s, &o);
}

int perf_svc_start_opts(perf_svc *s, const perf_svc_opts *o)
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
    snprintf(mc, sizeof mc, "%d", o->max_clients);
    s->t_fork = perf_now();
    s->pid = fork();
    if (s->pid == 0) {
        /* a benchmark killed by run_all's time limit takes its replicas along */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        dup2(pfd[1], 2);
        close(pfd[0]);
        close(pfd[1]);
        setenv("PERF_MAX_CLIENTS", mc, 1);
        if (o->raw)
            setenv("PERF_RAW", "1", 1);
        if (o->relay)
            setenv("PERF_RELAY", o->relay, 1);
        if (o->service)
            execl(o->path, o->path, "--port", port, "--redis", o->redis_url, "--log-level", "info",
                  "--service", o->service, (char *)NULL);
        else
            execl(o->path, o->path, "--port", port, "--redis", o->redis_url, "--log-level", "info",
                  (char *)NULL);
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
int perf_svc_start_replicas(perf_svc *reps, int n, const perf_svc_opts *o, const char *bench)
{
    for (int i = 0; i < n; i++) {
        if (perf_svc_start_opts(&reps[i], o) != 0) {
            fprintf(stderr, "%s: replica start failed\n", bench);
            while (i-- > 0)
                perf_svc_stop(&reps[i]);
            return -1;
        }
    }
    return 0;
}

int perf_svc_stop(perf_svc *s)
{
    int st = -1;
    if (s->pid <= 0)
        return -1;
    kill(s->pid, SIGTERM);
    waitpid(s->pid, &st, 0);
    pthread_join(s->reader, NULL);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int perf_svc_post(int port, const char *path, const char *body, cJSON **out)
{
    ts_http_response r;
    memset(&r, 0, sizeof r);
    if (ts_http(port, "POST", path, "Content-Type: application/json\r\n", body, strlen(body), &r) !=
        0)
        return -1;
    if (out)
        *out = r.body ? cJSON_Parse(r.body) : NULL;
    int status = r.status;
    ts_http_free(&r);
    return status;
}

int perf_svc_post_pipelined(int port, const char *path, char *const *bodies, int n)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    size_t cap = 0;
    for (int i = 0; i < n; i++)
        cap += strlen(bodies[i]) + strlen(path) + 160;
    char *req = malloc(cap + 1), *w = req;
    for (int i = 0; req && i < n; i++)
        w +=
            snprintf(w, cap + 1 - (size_t)(w - req),
                     "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     "%sContent-Length: %zu\r\n\r\n%s",
                     path, i == n - 1 ? "Connection: close\r\n" : "", strlen(bodies[i]), bodies[i]);
    size_t len = req ? (size_t)(w - req) : 0, off = 0;
    while (off < len) {
        ssize_t k = write(fd, req + off, len - off);
        if (k <= 0)
            break;
        off += (size_t)k;
    }
    free(req);
    /* read until the server closes, then count the answers' status lines */
    size_t rcap = 65536, rlen = 0;
    char *resp = malloc(rcap + 1);
    ssize_t k = 0;
    while (resp && (k = read(fd, resp + rlen, rcap - rlen)) > 0)
        if ((rlen += (size_t)k) == rcap) {
            char *bigger = realloc(resp, 2 * rcap + 1);
            if (!bigger)
                break;
            resp = bigger;
            rcap *= 2;
        }
    int ok = resp ? 0 : -1;
    if (resp) {
        resp[rlen] = '\0';
        for (char *p = resp; (p = strstr(p, "HTTP/1.1 200")) != NULL; p += 12)
            ok++;
    }
    free(resp);
    close(fd);
    return ok;
}

double perf_svc_stat(int port, const char *section, const char *name)
{
    ts_http_response r;
    memset(&r, 0, sizeof r);
    if (ts_http(port, "GET", "/stats", NULL, NULL, 0, &r) != 0)
        return -1;
    cJSON *o = r.body ? cJSON_Parse(r.body) : NULL;
    const cJSON *v =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, section), name);
    double d = cJSON_IsNumber(v) ? v->valuedouble : -1;
    cJSON_Delete(o);
    ts_http_free(&r);
    return d;
}

int perf_svc_default_path(char *buf, size_t len)
{
    ssize_t n = readlink("/proc/self/exe", buf, len - 32);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    char *slash = strrchr(buf, '/');
    if (!slash)
        return -1;
    snprintf(slash + 1, len - (size_t)(slash + 1 - buf), "perf_service");
    return 0;
}
