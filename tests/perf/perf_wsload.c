/* perf_wsload.c - WebSocket load generator processes (see perf_wsload.h). */
#include "perf_wsload.h"

#include <errno.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

#include "perf_common.h"
#include "wsc.h"

static int write_full(int fd, const void *p, size_t n)
{
    const char *s = p;
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_full(int fd, void *p, size_t n)
{
    char *s = p;
    while (n) {
        ssize_t r = read(fd, s, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        s += r;
        n -= (size_t)r;
    }
    return 0;
}

/* ---- the child ---- */

typedef struct child_run {
    const perf_ws_cmd *cmd;
    wsc *c;       /* nclients reading clients, then the stalled ones */
    double *sent; /* ECHO: send time per client */
    long *got;    /* SINK: frames per client */
    perf_samples lat;
    perf_ws_result res;
} child_run;

static void run_echo(child_run *r, int ep)
{
    const perf_ws_cmd *cmd = r->cmd;
    int n = r->res.connected;
    double t0 = perf_now(), end = t0 + cmd->seconds, give_up = end + 10;
    int active = 0;
    for (int i = 0; i < n; i++) {
        r->sent[i] = perf_now();
        if (wsc_send_text(&r->c[i], cmd->msg) == 0)
            active++;
        else
            r->res.errors++;
    }
    struct epoll_event evs[256];
    while (active > 0 && perf_now() < give_up) {
        int k = epoll_wait(ep, evs, 256, 100);
        for (int e = 0; e < k; e++) {
            int i = (int)evs[e].data.u32;
            wsc *c = &r->c[i];
            for (;;) {
                char *p;
                size_t len;
                int op = wsc_recv(c, 0, &p, &len);
                /* broadcasts (the soak's "tick") are not answers */
                bool tick = op == 1 && strncmp(p, "{\"type\":\"tick\"", 15) == 0;
                free(p);
                if (op == 0)
                    break;
                if (op < 0 || op == 8) {
                    r->res.errors++;
                    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                    active--;
                    break;
                }
                if (op != 1 || tick)
                    continue;
                double now = perf_now();
                if (now <= end) {
                    r->res.count++;
                    perf_samples_add(&r->lat, now - r->sent[i]);
                    r->sent[i] = now;
                    if (wsc_send_text(c, cmd->msg) == 0)
                        continue;
                    r->res.errors++;
                }
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                active--;
                break;
            }
        }
    }
    r->res.errors += active; /* clients whose last answer never came */
    r->res.elapsed = cmd->seconds;
}

static void run_sink(child_run *r, int ep)
{
    const perf_ws_cmd *cmd = r->cmd;
    int n = r->res.connected;
    double give_up = perf_now() + cmd->seconds;
    int active = n;
    struct epoll_event evs[256];
    while (active > 0 && perf_now() < give_up) {
        int k = epoll_wait(ep, evs, 256, 100);
        for (int e = 0; e < k; e++) {
            int i = (int)evs[e].data.u32;
            wsc *c = &r->c[i];
            for (;;) {
                char *p;
                size_t len;
                int op = wsc_recv(c, 0, &p, &len);
                free(p);
                if (op == 0)
                    break;
                if (op < 0 || op == 8) {
                    r->res.errors++;
                    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                    active--;
                    break;
                }
                if (op != 1)
                    continue;
                double now = perf_now();
                if (!r->res.count)
                    r->res.t_first = now;
                r->res.t_last = now;
                r->res.count++;
                if (++r->got[i] == cmd->expect) {
                    r->res.complete++;
                    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                    active--;
                    break;
                }
            }
        }
    }
}

static void child_main(int in, int out)
{
    perf_raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    perf_ws_cmd cmd;
    while (read_full(in, &cmd, sizeof cmd) == 0 && cmd.port > 0) {
        child_run r;
        memset(&r, 0, sizeof r);
        r.cmd = &cmd;
        int total = cmd.nclients + (cmd.mode == PERF_WS_SINK ? cmd.stalled : 0);
        r.c = calloc((size_t)total, sizeof *r.c);
        r.sent = calloc((size_t)total, sizeof *r.sent);
        r.got = calloc((size_t)total, sizeof *r.got);
        int ep = epoll_create1(0);
        int ok = 0, stalled_ok = 0;
        for (int i = 0; i < cmd.nclients; i++) {
            if (wsc_connect(&r.c[ok], cmd.port, cmd.path, NULL) != 0) {
                wsc_close(&r.c[ok]);
                continue;
            }
            struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)ok};
            epoll_ctl(ep, EPOLL_CTL_ADD, r.c[ok].fd, &ev);
            ok++;
        }
        if (cmd.mode == PERF_WS_SINK && cmd.stalled > 0) {
            wsc_rcvbuf_next = 4096;
            for (int i = 0; i < cmd.stalled; i++)
                if (wsc_connect(&r.c[ok + stalled_ok], cmd.port, cmd.path, NULL) == 0)
                    stalled_ok++;
            wsc_rcvbuf_next = 0;
        }
        int both[2] = {ok, stalled_ok};
        if (write_full(out, both, sizeof both) != 0)
            _exit(1);
        for (int round = 0; round < (cmd.rounds > 0 ? cmd.rounds : 1); round++) {
            char go;
            if (read_full(in, &go, 1) != 0)
                _exit(1);
            memset(&r.res, 0, sizeof r.res);
            memset(r.got, 0, (size_t)total * sizeof *r.got);
            r.res.connected = ok;
            r.lat.n = 0;
            /* every reading client takes part again */
            for (int i = 0; i < ok && round > 0; i++) {
                struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
                epoll_ctl(ep, EPOLL_CTL_ADD, r.c[i].fd, &ev);
            }
            if (cmd.mode == PERF_WS_ECHO)
                run_echo(&r, ep);
            else
                run_sink(&r, ep);
            /* stray answers of the previous round must not count in the next */
            for (int i = 0; i < ok; i++)
                epoll_ctl(ep, EPOLL_CTL_DEL, r.c[i].fd, NULL);
            r.res.nlat = (long)r.lat.n;
            if (write_full(out, &r.res, sizeof r.res) != 0 ||
                (r.lat.n && write_full(out, r.lat.v, r.lat.n * sizeof(double)) != 0))
                _exit(1);
        }
        for (int i = 0; i < ok + stalled_ok; i++)
            wsc_close(&r.c[i]);
        close(ep);
        perf_samples_free(&r.lat);
        free(r.c);
        free(r.sent);
        free(r.got);
    }
    _exit(0);
}

/* ---- the parent ---- */

int perf_ws_spawn(perf_ws_proc *p)
{
    int a[2], b[2];
    if (pipe(a) != 0 || pipe(b) != 0)
        return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        close(a[1]);
        close(b[0]);
        child_main(a[0], b[1]);
    }
    close(a[0]);
    close(b[1]);
    p->pid = pid;
    p->to_child = a[1];
    p->from_child = b[0];
    return 0;
}

int perf_ws_connect(perf_ws_proc *p, const perf_ws_cmd *cmd, int *connected)
{
    int both[2];
    if (write_full(p->to_child, cmd, sizeof *cmd) != 0 ||
        read_full(p->from_child, both, sizeof both) != 0)
        return -1;
    *connected = both[0] + both[1];
    return 0;
}

int perf_ws_go(perf_ws_proc *p)
{
    return write_full(p->to_child, "g", 1);
}

int perf_ws_result_wait(perf_ws_proc *p, perf_ws_result *out, double **lat, long *nlat)
{
    if (read_full(p->from_child, out, sizeof *out) != 0)
        return -1;
    if (out->nlat <= 0)
        return 0;
    size_t bytes = (size_t)out->nlat * sizeof(double);
    double *buf = malloc(bytes);
    if (!buf || read_full(p->from_child, buf, bytes) != 0) {
        free(buf);
        return -1;
    }
    if (lat) {
        double *v = realloc(*lat, (size_t)(*nlat + out->nlat) * sizeof(double));
        if (v) {
            memcpy(v + *nlat, buf, bytes);
            *lat = v;
            *nlat += out->nlat;
        }
    }
    free(buf);
    return 0;
}

void perf_ws_end(perf_ws_proc *p)
{
    if (p->pid <= 0)
        return;
    perf_ws_cmd cmd;
    memset(&cmd, 0, sizeof cmd);
    write_full(p->to_child, &cmd, sizeof cmd);
    close(p->to_child);
    close(p->from_child);
    waitpid(p->pid, NULL, 0);
    p->pid = 0;
}
