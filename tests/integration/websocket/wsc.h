/* wsc.h - a minimal blocking WebSocket client for the tests (raw sockets). */
#ifndef WSC_H
#define WSC_H

#include <stdbool.h>
#include <stddef.h>

typedef struct wsc {
    int fd;
    int status; /* HTTP status of the upgrade answer */
    char *buf;  /* receive buffer */
    size_t len, cap;
    int close_code;  /* set when a close frame arrived (-1 before) */
    char head[2048]; /* the upgrade answer's status line and headers (cut if longer) */
} wsc;

/* When > 0, the SO_RCVBUF of the next connections (set before connect). */
extern int wsc_rcvbuf_next;

/* Connects to 127.0.0.1:port path and upgrades. extra: header lines ending
 * in \r\n, or NULL. Returns 0 when the server answered 101; -1 otherwise
 * (c->status holds the HTTP status when there was one). */
int wsc_connect(wsc *c, int port, const char *path, const char *extra);
/* Sends one masked frame (opcode 1 text, 2 binary, 8 close, 9 ping). */
int wsc_send(wsc *c, int opcode, const void *data, size_t len);
int wsc_send_text(wsc *c, const char *text);
/* Receives one frame within timeout_ms. Returns its opcode (payload in
 * *out, malloc'd, NUL-terminated, length *n), 0 on time-out, -1 on EOF/error. */
int wsc_recv(wsc *c, int timeout_ms, char **out, size_t *n);
/* Receives the next text frame (skipping pings/pongs). Returns malloc'd text or NULL. */
char *wsc_recv_text(wsc *c, int timeout_ms);
/* Sends a channel subscribe frame (docs/channels.md) and waits up to 5 s for
 * its answer: true when it says success. */
bool wsc_subscribe(wsc *c, const char *channel);
void wsc_close(wsc *c);
/* Copies the value of header name (case-insensitive) of the upgrade answer
 * into buf. Returns: buf, or NULL when the answer has no such header. */
const char *wsc_header(const wsc *c, const char *name, char *buf, size_t len);

#endif
