/* testsupport.c - private redis-server, free ports, a minimal HTTP client. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "testsupport.h"

double ts_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void ts_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

int ts_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        close(fd);
        return -1;
    }
    int port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static int tcp_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((unsigned short)port);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
}

static int redis_ping(int port)
{
    int fd = tcp_connect(port);
    if (fd < 0)
        return -1;
    const char *ping = "PING\r\n";
    char buf[64] = {0};
    /* A server started with requirepass answers -NOAUTH: it is up too. */
    int ok = write(fd, ping, strlen(ping)) == (ssize_t)strlen(ping) &&
             read(fd, buf, sizeof buf - 1) > 0 &&
             (strncmp(buf, "+PONG", 5) == 0 || strncmp(buf, "-NOAUTH", 7) == 0);
    close(fd);
    return ok ? 0 : -1;
}

static int spawn_redis(ts_redis *r)
{
    char conf[512];
    snprintf(conf, sizeof conf, "%s/redis.conf", r->dir);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            /* Neither stream may stay tied to ctest's pipe: a server left
             * behind by a failed suite would hold the test "running". */
            dup2(devnull, 1);
            dup2(devnull, 2);
            close(devnull);
        }
        setpgid(0, 0);
        /* The test's own sockets must not live on in redis-server (a restarted
         * server would keep closed test connections open). */
        closefrom(3);
        execlp("redis-server", "redis-server", conf, (char *)NULL);
        fprintf(stderr, "testsupport: cannot exec redis-server: %s\n", strerror(errno));
        _exit(127);
    }
    r->pid = pid;
    for (int i = 0; i < 200; i++) {
        if (redis_ping(r->port) == 0)
            return 0;
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            r->pid = 0;
            fprintf(stderr, "testsupport: redis-server exited at start-up\n");
            return -1;
        }
        ts_sleep_ms(25);
    }
    fprintf(stderr, "testsupport: redis-server did not answer PING\n");
    return -1;
}

int ts_redis_start(ts_redis *r, const char *extra_conf)
{
    memset(r, 0, sizeof *r);
    snprintf(r->dir, sizeof r->dir, "/tmp/daebus-test-redis-XXXXXX");
    if (!mkdtemp(r->dir))
        return -1;
    for (int attempt = 0; attempt < 5; attempt++) {
        r->port = ts_free_port();
        snprintf(r->unix_path, sizeof r->unix_path, "%s/redis.sock", r->dir);
        snprintf(r->url, sizeof r->url, "redis://127.0.0.1:%d", r->port);
        char conf[512];
        snprintf(conf, sizeof conf, "%s/redis.conf", r->dir);
        FILE *f = fopen(conf, "w");
        if (!f)
            return -1;
        fprintf(f,
                "port %d\nbind 127.0.0.1\nunixsocket %s\nunixsocketperm 700\ndir %s\n"
                "save \"\"\nappendonly no\ndaemonize no\nloglevel warning\nlogfile %s/redis.log\n"
                "protected-mode no\n%s\n",
                r->port, r->unix_path, r->dir, r->dir, extra_conf ? extra_conf : "");
        fclose(f);
        if (spawn_redis(r) == 0)
            return 0;
    }
    return -1;
}

void ts_redis_kill(ts_redis *r)
{
    if (r->pid > 0) {
        kill(r->pid, SIGKILL);
        waitpid(r->pid, NULL, 0);
        r->pid = 0;
    }
}

int ts_redis_restart(ts_redis *r)
{
    ts_redis_kill(r);
    return spawn_redis(r);
}

void ts_redis_stop(ts_redis *r)
{
    if (r->pid > 0) {
        kill(r->pid, SIGTERM);
        for (int i = 0; i < 100; i++) {
            if (waitpid(r->pid, NULL, WNOHANG) == r->pid) {
                r->pid = 0;
                break;
            }
            ts_sleep_ms(20);
        }
        ts_redis_kill(r);
    }
    if (r->dir[0]) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", r->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "testsupport: could not remove %s\n", r->dir);
        r->dir[0] = '\0';
    }
}

/* ---- HTTP ---- */

int ts_http(int port, const char *method, const char *target, const char *extra_headers,
            const char *body, size_t body_len, ts_http_response *out)
{
    memset(out, 0, sizeof *out);
    int fd = tcp_connect(port);
    if (fd < 0)
        return -1;
    size_t cap = 1024 + strlen(method) + strlen(target) +
                 (extra_headers ? strlen(extra_headers) : 0) + body_len;
    char *req = malloc(cap);
    if (!req) {
        close(fd);
        return -1;
    }
    int n = snprintf(req, cap,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n%s"
                     "Content-Length: %zu\r\n\r\n",
                     method, target, port, extra_headers ? extra_headers : "", body ? body_len : 0);
    if (n < 0 || (size_t)n >= cap - body_len) {
        free(req);
        close(fd);
        return -1;
    }
    size_t len = (size_t)n;
    if (body && body_len) {
        memcpy(req + len, body, body_len);
        len += body_len;
    }
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, req + off, len - off);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    free(req);
    size_t rcap = 65536, rlen = 0;
    char *resp = malloc(rcap + 1);
    for (;;) {
        if (rlen == rcap) {
            rcap *= 2;
            char *bigger = realloc(resp, rcap + 1);
            if (!bigger)
                break;
            resp = bigger;
        }
        ssize_t got = read(fd, resp + rlen, rcap - rlen);
        if (got <= 0)
            break;
        rlen += (size_t)got;
    }
    close(fd);
    resp[rlen] = '\0';
    char *end = strstr(resp, "\r\n\r\n");
    if (!end || sscanf(resp, "HTTP/1.%*d %d", &out->status) != 1) {
        free(resp);
        return -1;
    }
    size_t hlen = (size_t)(end - resp);
    if (hlen >= sizeof out->headers)
        hlen = sizeof out->headers - 1;
    memcpy(out->headers, resp, hlen);
    out->headers[hlen] = '\0';
    const char *b = end + 4;
    size_t blen = rlen - (size_t)(b - resp);
    char te[64];
    out->body = malloc(blen + 1);
    if (ts_http_header(out, "Transfer-Encoding", te, sizeof te) && strcasecmp(te, "chunked") == 0) {
        size_t o = 0;
        const char *p = b;
        while (p < resp + rlen) {
            unsigned long sz = strtoul(p, NULL, 16);
            const char *nl = strstr(p, "\r\n");
            if (!nl || sz == 0)
                break;
            p = nl + 2;
            memcpy(out->body + o, p, sz);
            o += sz;
            p += sz + 2;
        }
        out->body_len = o;
    } else {
        memcpy(out->body, b, blen);
        out->body_len = blen;
    }
    out->body[out->body_len] = '\0';
    free(resp);
    return 0;
}

const char *ts_http_header(const ts_http_response *r, const char *name, char *buf, size_t len)
{
    size_t nl = strlen(name);
    const char *p = strstr(r->headers, "\r\n");
    while (p) {
        p += 2;
        if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ')
                v++;
            const char *e = strstr(v, "\r\n");
            size_t vl = e ? (size_t)(e - v) : strlen(v);
            if (vl >= len)
                vl = len - 1;
            memcpy(buf, v, vl);
            buf[vl] = '\0';
            return buf;
        }
        p = strstr(p, "\r\n");
    }
    return NULL;
}

void ts_http_free(ts_http_response *r)
{
    free(r->body);
    r->body = NULL;
}

int ts_run_cunit(void)
{
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    unsigned run = CU_get_number_of_tests_run();
    CU_cleanup_registry();
    if (run == 0) {
        fprintf(stderr, "no test ran\n");
        return 1;
    }
    return failed ? 1 : 0;
}

char *ts_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = '\0';
        if (len)
            *len = (size_t)n;
    }
    return buf;
}
