/* wsc.c - a minimal blocking WebSocket client for the tests (raw sockets). */
#define _GNU_SOURCE
#include "wsc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

static int write_all(int fd, const void *p, size_t n)
{
    const char *s = p;
    while (n) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads more bytes into the buffer; 0 on time-out, -1 on EOF/error. */
static int fill(wsc *c, int timeout_ms)
{
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    int r = poll(&p, 1, timeout_ms);
    if (r <= 0)
        return r < 0 ? -1 : 0;
    if (c->cap - c->len < 65536) {
        size_t cap = c->cap ? c->cap * 2 : 131072;
        char *b = realloc(c->buf, cap);
        if (!b)
            return -1;
        c->buf = b;
        c->cap = cap;
    }
    ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
    if (n <= 0)
        return -1;
    c->len += (size_t)n;
    return 1;
}

int wsc_rcvbuf_next = 0;

int wsc_connect(wsc *c, int port, const char *path, const char *extra)
{
    memset(c, 0, sizeof *c);
    c->close_code = -1;
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0)
        return -1;
    if (wsc_rcvbuf_next > 0)
        setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &wsc_rcvbuf_next, sizeof wsc_rcvbuf_next);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&a, sizeof a) != 0)
        return -1;
    char req[2048];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s\r\n",
                     path, port, extra ? extra : "");
    if (write_all(c->fd, req, (size_t)n) != 0)
        return -1;
    for (;;) {
        char *end = c->len ? memmem(c->buf, c->len, "\r\n\r\n", 4) : NULL;
        if (end) {
            sscanf(c->buf, "HTTP/1.1 %d", &c->status);
            size_t hl = (size_t)(end + 4 - c->buf);
            size_t keep = hl < sizeof c->head ? hl : sizeof c->head - 1;
            memcpy(c->head, c->buf, keep);
            c->head[keep] = '\0';
            memmove(c->buf, c->buf + hl, c->len - hl);
            c->len -= hl;
            return c->status == 101 ? 0 : -1;
        }
        if (fill(c, 5000) <= 0)
            return -1;
    }
}

int wsc_send(wsc *c, int opcode, const void *data, size_t len)
{
    unsigned char h[14];
    size_t hl = 2;
    h[0] = (unsigned char)(0x80 | opcode);
    if (len < 126) {
        h[1] = (unsigned char)(0x80 | len);
    } else if (len <= 0xFFFF) {
        h[1] = 0x80 | 126;
        h[2] = (unsigned char)(len >> 8);
        h[3] = (unsigned char)len;
        hl = 4;
    } else {
        h[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
        hl = 10;
    }
    unsigned char mask[4] = {0x12, 0x34, 0x56, 0x78};
    memcpy(h + hl, mask, 4);
    hl += 4;
    unsigned char *buf = malloc(hl + len);
    if (!buf)
        return -1;
    memcpy(buf, h, hl);
    for (size_t i = 0; i < len; i++)
        buf[hl + i] = ((const unsigned char *)data)[i] ^ mask[i & 3];
    int r = write_all(c->fd, buf, hl + len);
    free(buf);
    return r;
}

int wsc_send_text(wsc *c, const char *text)
{
    return wsc_send(c, 1, text, strlen(text));
}

int wsc_recv(wsc *c, int timeout_ms, char **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    for (;;) {
        if (c->len >= 2) {
            unsigned char *b = (unsigned char *)c->buf;
            uint64_t len = b[1] & 127;
            size_t hl = 2;
            if (len == 126 && c->len >= 4) {
                len = ((uint64_t)b[2] << 8) | b[3];
                hl = 4;
            } else if (len == 127 && c->len >= 10) {
                len = 0;
                for (int i = 0; i < 8; i++)
                    len = (len << 8) | b[2 + i];
                hl = 10;
            } else if (len >= 126) {
                hl = 0;
            }
            if (hl && c->len >= hl + len) {
                int op = b[0] & 0x0f;
                char *p = malloc((size_t)len + 1);
                if (!p)
                    return -1;
                memcpy(p, c->buf + hl, (size_t)len);
                p[len] = '\0';
                memmove(c->buf, c->buf + hl + len, c->len - hl - (size_t)len);
                c->len -= hl + (size_t)len;
                if (op == 8)
                    c->close_code =
                        len >= 2 ? (((unsigned char)p[0]) << 8 | (unsigned char)p[1]) : 1005;
                *out = p;
                *n = (size_t)len;
                return op;
            }
        }
        int r = fill(c, timeout_ms);
        if (r <= 0)
            return r;
    }
}

char *wsc_recv_text(wsc *c, int timeout_ms)
{
    for (;;) {
        char *p;
        size_t n;
        int op = wsc_recv(c, timeout_ms, &p, &n);
        if (op == 1)
            return p;
        free(p);
        if (op == 9) {
            continue;
        }
        if (op == 10)
            continue;
        return NULL;
    }
}

void wsc_close(wsc *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->buf);
    c->buf = NULL;
}

const char *wsc_header(const wsc *c, const char *name, char *buf, size_t len)
{
    size_t n = strlen(name);
    for (const char *line = strstr(c->head, "\r\n"); line && line[2];
         line = strstr(line + 2, "\r\n")) {
        const char *h = line + 2;
        if (strncasecmp(h, name, n) == 0 && h[n] == ':') {
            const char *v = h + n + 1;
            while (*v == ' ')
                v++;
            size_t vl = strcspn(v, "\r\n");
            if (vl >= len)
                vl = len - 1;
            memcpy(buf, v, vl);
            buf[vl] = '\0';
            return buf;
        }
    }
    return NULL;
}

bool wsc_subscribe(wsc *c, const char *channel)
{
    char f[128];
    snprintf(f, sizeof f, "{\"type\":\"subscribe\",\"channel\":\"%s\",\"request_id\":\"s\"}",
             channel);
    if (wsc_send_text(c, f) != 0)
        return false;
    char *t = wsc_recv_text(c, 5000);
    bool ok = t && strstr(t, "\"success\":true") && strstr(t, "\"request_id\":\"s\"");
    free(t);
    return ok;
}
