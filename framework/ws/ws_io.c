/* ws_io.c - WebSocket outbound path: shared frames, per-client queues, writer threads, heartbeat.
 *
 * Every frame the server sends (responses, broadcasts, pings, close frames)
 * goes through the bounded queue of its client. A small pool of writer
 * threads drains the queues of the clients on the ready list, one client at
 * a time per writer, so frames to one connection never interleave. Before a
 * write the writer checks the room left in the socket's send buffer
 * (SIOCOUTQ against SO_SNDBUF): a client that stopped reading is parked on
 * the blocked list instead of stalling a writer, and its queue grows until
 * it hits the limit, which drops the client ("slow consumer"). The room is
 * asked of the kernel only when a lower bound kept since the last ask does
 * not cover the frame (see "room in the send buffer"). A frame goes out in
 * one write: its header is built with it, right before its payload. Frames a
 * message handler queues for its own client are written by the client's
 * CivetWeb thread once the handler returns (daebus__ws_own_end), acting as that
 * client's writer for the moment: the same checks, no hand-off.
 *
 * CivetWeb does not expose a connection's socket, so the socket is found
 * once per connection by matching the peer address among the process's file
 * descriptors (daebus__ws_find_fd). With it the server can also end a connection at
 * once (shutdown(2)), which the maintenance thread does for clients that
 * missed the heartbeat or ignored a close frame.
 */
#include "ws_io.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <civetweb.h>

#include "clock.h"
#include "daebus/log.h"
#include "civet.h"
#include "ws_client.h"
#include "ws_message.h"
#include "ws_parse.h"

#define TICK_MS    50
#define FAIR_BATCH 64
#define FD_RETRY_S 0.05 /* a socket not found: looked for again (a scan of every descriptor) */

bool daebus__ws_log_allow(daebus_ws *ws, int kind, uint64_t *dropped)
{
    long missed = daebus__ratelimit_pass(&ws->log_rl[kind], daebus__now_mono(), 1.0);
    if (missed < 0)
        return false;
    *dropped = (uint64_t)missed;
    return true;
}

void daebus__ws_stat_max(atomic_uint_fast64_t *a, uint64_t v)
{
    uint64_t cur = atomic_load(a);
    while (v > cur && !atomic_compare_exchange_weak(a, &cur, v))
        ;
}

/* ---- frames ---- */

/* The header of f (f->len and f->opcode set), right-aligned against data. */
static void frame_set_head(ws_frame *f)
{
    unsigned char h[WS_FRAME_HEAD_MAX];
    size_t n = daebus__ws_frame_head(f->opcode, f->len, h);
    f->head_len = (unsigned char)n;
    memcpy(f->head + WS_FRAME_HEAD_MAX - n, h, n);
}

ws_frame *daebus__ws_frame_new(int opcode, const char *data, size_t len)
{
    ws_frame *f = malloc(sizeof *f + len + 1);
    if (!f)
        return NULL;
    atomic_init(&f->refs, 1);
    f->opcode = opcode;
    f->len = len;
    if (len)
        memcpy(f->data, data, len);
    f->data[len] = '\0';
    frame_set_head(f);
    return f;
}

void daebus__ws_frame_out_begin(daebus__json_out *b)
{
    daebus__json_out_init(b, offsetof(ws_frame, data));
}

ws_frame *daebus__ws_frame_out_end(daebus__json_out *b, int opcode)
{
    size_t len = 0;
    ws_frame *f = (ws_frame *)daebus__json_out_finish(b, &len);
    if (!f)
        return NULL;
    atomic_init(&f->refs, 1);
    f->opcode = opcode;
    f->len = len;
    frame_set_head(f);
    return f;
}

const char *daebus__ws_frame_wire(const ws_frame *f, size_t *n)
{
    /* head and data are adjacent (static assertion in ws_io.h): the bytes
     * are read through the frame's own char representation. */
    *n = f->head_len + f->len;
    return (const char *)f + offsetof(ws_frame, data) - f->head_len;
}

ws_frame *daebus__ws_frame_text_take(char *text, size_t len)
{
    if (!text)
        return NULL;
    ws_frame *f = daebus__ws_frame_new(MG_WEBSOCKET_OPCODE_TEXT, text, len);
    free(text);
    return f;
}

void daebus__ws_frame_unref(ws_frame *f)
{
    if (f && atomic_fetch_sub(&f->refs, 1) == 1)
        free(f);
}

/* ---- queues ---- */

void daebus__ws_queue_drop(ws_client *c)
{
    ws_qnode *n = c->qhead;
    while (n) {
        ws_qnode *next = n->next;
        daebus__ws_frame_unref(n->f);
        free(n);
        n = next;
    }
    c->qhead = c->qtail = NULL;
    c->qbytes = 0;
    c->qcount = 0;
}

/* Appends c to the writers' ready list (ws->wlock held). */
static void ready_append_locked(daebus_ws *ws, ws_client *c)
{
    WS_LIST_APPEND(ws->ready_head, ws->ready_tail, c, next_ready);
}

/* Adds c to the ready list (c->lock held, c->scheduled false). */
static void make_ready(ws_client *c)
{
    daebus_ws *ws = c->ws;
    c->scheduled = 1;
    daebus__ws_client_ref(c);
    pthread_mutex_lock(&ws->wlock);
    ready_append_locked(ws, c);
    pthread_cond_signal(&ws->wcond);
    pthread_mutex_unlock(&ws->wlock);
}

void daebus__ws_schedule(ws_client *c)
{
    pthread_mutex_lock(&c->lock);
    if (c->qhead && !c->scheduled && !c->conn_closed && c->state != WS_PENDING)
        make_ready(c);
    pthread_mutex_unlock(&c->lock);
}

/* The client whose message handler runs on this thread (daebus__ws_own_begin). */
static _Thread_local ws_client *own_client;

/* Called with c->lock held. */
static int push(ws_client *c, ws_frame *f)
{
    ws_qnode *n = malloc(sizeof *n);
    if (!n)
        return DAEBUS_ENOMEM;
    atomic_fetch_add(&f->refs, 1);
    n->f = f;
    WS_LIST_APPEND(c->qhead, c->qtail, n, next);
    c->qbytes += f->len;
    c->qcount++;
    daebus__ws_stat_max(&c->ws->st_qhw, (uint64_t)c->qcount);
    /* A handler's own frames wait for daebus__ws_own_end(), unless it queues many:
     * then a writer starts draining them meanwhile, as for any other sender. */
    bool deferred = own_client == c && c->qcount <= FAIR_BATCH;
    if (!c->scheduled && !c->conn_closed && c->state != WS_PENDING && !deferred)
        make_ready(c);
    return 0;
}

int daebus__ws_enqueue(ws_client *c, ws_frame *f, bool control)
{
    daebus_ws *ws = c->ws;
    pthread_mutex_lock(&c->lock);
    if (c->conn_closed || c->close_queued || c->state == WS_GONE || !atomic_load(&ws->running)) {
        pthread_mutex_unlock(&c->lock);
        return DAEBUS_ENOENT;
    }
    if (!control && f->len > ws->queue_max_bytes) {
        /* Could never fit, however fast the client reads: the sender's fault. */
        pthread_mutex_unlock(&c->lock);
        return DAEBUS_ETOOBIG;
    }
    if (!control &&
        (c->qcount + 1 > ws->queue_max_messages || c->qbytes + f->len > ws->queue_max_bytes)) {
        int qcount = c->qcount;
        size_t qbytes = c->qbytes;
        pthread_mutex_unlock(&c->lock);
        uint64_t dropped = 0;
        if (daebus__ws_log_allow(ws, WS_LOG_SLOW, &dropped))
            daebus_log(DAEBUS_LOG_WARNING, "websocket",
                       "client %s: outbound queue full (%d frames, %zu bytes): disconnecting it "
                       "as a slow consumer (%llu more such lines suppressed)",
                       c->id, qcount, qbytes, (unsigned long long)dropped);
        daebus__ws_force_close(c, WS_BY_SLOW);
        return DAEBUS_EFULL;
    }
    int rc = push(c, f);
    pthread_mutex_unlock(&c->lock);
    return rc;
}

int daebus__ws_begin_close(ws_client *c, int code, const char *reason, int why)
{
    char payload[125];
    size_t n = daebus__ws_close_payload(code, reason, payload);
    ws_frame *f = daebus__ws_frame_new(MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE, payload, n);
    if (!f)
        return DAEBUS_ENOMEM;
    pthread_mutex_lock(&c->lock);
    int rc = DAEBUS_ENOENT;
    if (!c->conn_closed && !c->close_queued && c->state != WS_GONE) {
        rc = push(c, f);
        if (rc == 0) {
            c->close_queued = 1;
            c->end_reason = why;
            c->close_deadline = daebus__now_mono() + c->ws->close_timeout;
        }
    }
    pthread_mutex_unlock(&c->lock);
    daebus__ws_frame_unref(f);
    return rc;
}

/* ---- sockets ---- */

int daebus__ws_peer_fd(daebus_ws *ws, const struct mg_connection *conn)
{
    (void)ws; /* the caller is conn's own CivetWeb thread: see civet.c */
    if (!mg_get_request_info(conn))
        return -1;
    return daebus__civet_socket(conn);
}

/* The socket of c, found on c's own CivetWeb thread (civet.c says why that
 * cannot pick another connection's socket). */
void daebus__ws_find_fd(ws_client *c)
{
    daebus_ws *ws = c->ws;
    int found = daebus__civet_socket(c->conn);
    int sndbuf = 0;
    if (found >= 0 && ws->send_buffer != SIZE_MAX) {
        int sz = ws->send_buffer > (size_t)1 << 30 ? 1 << 30 : (int)ws->send_buffer;
        socklen_t l = sizeof sndbuf;
        /* A size set by hand is not tuned by the kernel afterwards: read it once. */
        if (setsockopt(found, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz) != 0 ||
            getsockopt(found, SOL_SOCKET, SO_SNDBUF, &sndbuf, &l) != 0)
            sndbuf = 0;
    }
    pthread_mutex_lock(&c->lock);
    c->fd = found;
    c->sndbuf = sndbuf;
    c->room = 0;
    c->fd_retry = found < 0 ? daebus__now_mono() + FD_RETRY_S : 0;
    pthread_mutex_unlock(&c->lock);
    if (found < 0)
        daebus_log(DAEBUS_LOG_DEBUG, "websocket",
                   "client %s: socket not found; looking again at its next frame", c->id);
}

void daebus__ws_release_fd(ws_client *c)
{
    pthread_mutex_lock(&c->lock);
    c->fd = -1;
    c->fd_retry = 0;
    c->room = 0;
    pthread_mutex_unlock(&c->lock);
}

void daebus__ws_force_close(ws_client *c, int why)
{
    pthread_mutex_lock(&c->lock);
    if (!c->conn_closed) {
        if (!c->close_queued)
            c->end_reason = why;
        c->close_queued = 1;
        daebus__ws_queue_drop(c);
        if (c->fd >= 0)
            shutdown(c->fd, SHUT_RDWR);
        else
            c->close_deadline = 0; /* nothing better: the next read error ends it */
    }
    pthread_mutex_unlock(&c->lock);
}

/* ---- room in the send buffer ----
 *
 * Asking the kernel (SIOCOUTQ) before every frame costs a system call per
 * frame. Between two asks the free room can only grow (the peer acknowledges
 * data), except by what the writer itself sends: so the room found by the
 * last ask, less every byte written since, is a lower bound, and a frame that
 * fits within it fits for sure. Only the client's claimed writer writes its
 * frames (c->scheduled), so no other write can spend the bound behind its
 * back (CivetWeb answers nothing on its own: civet_ws.c). The bound is kept
 * only for a send buffer whose size the framework fixed (c->sndbuf): the
 * kernel may shrink a buffer it sizes itself. A failed or partial write drops
 * the bound (0), so the next frame asks the kernel again. */

#define ROOM_MARGIN 14 /* the largest header (10) and slack, as the kernel ask always had */

int daebus__ws_room_check(int fd, int sndbuf, size_t *room, size_t len)
{
    if (fd < 0)
        return 1;
    size_t need = len + ROOM_MARGIN;
    if (sndbuf > 0 && *room >= need)
        return 1;
    *room = 0;
    int outq = 0;
    if (ioctl(fd, SIOCOUTQ, &outq) != 0)
        return 1;
    if (sndbuf > 0) {
        /* SO_SNDBUF reports twice the payload room (kernel bookkeeping). */
        long avail = (long)sndbuf / 2 - (long)outq;
        *room = avail > 0 ? (size_t)avail : 0;
    }
    if (outq == 0)
        return 1;
    int cur = sndbuf;
    socklen_t l = sizeof cur;
    if (cur <= 0 && getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &cur, &l) != 0)
        return 1;
    return (long)cur / 2 - (long)outq >= (long)need;
}

void daebus__ws_room_spent(size_t *room, size_t n, bool ok)
{
    *room = ok && *room > n ? *room - n : 0;
}

/* Room in the socket's send buffer for len more bytes (c->lock held)? */
static int has_room(ws_client *c, size_t len)
{
    return daebus__ws_room_check(c->fd, c->sndbuf, &c->room, len);
}

/* Sends f to c as one frame (c claimed by this writer, no lock held): header
 * and payload in one mg_write, under CivetWeb's connection lock as
 * mg_websocket_write takes it, so that any other writer of the connection
 * (the close callback's answer) cannot interleave. Returns: the bytes sent,
 * or -1 when the write failed or was partial (the stream is then broken). */
static long write_frame(ws_client *c, const ws_frame *f)
{
    size_t n = 0;
    const char *wire = daebus__ws_frame_wire(f, &n);
    if (n > INT_MAX) /* beyond mg_write's int result: CivetWeb's own two writes */
        return mg_websocket_write(c->conn, f->opcode, f->data, f->len) > 0 ? (long)n : -1;
    mg_lock_connection(c->conn);
    int r = mg_write(c->conn, wire, n);
    mg_unlock_connection(c->conn);
    return r == (int)n ? (long)n : -1;
}

/* ---- writers ---- */

static void write_client(daebus_ws *ws, ws_client *c)
{
    int done = 0;
    pthread_mutex_lock(&c->lock);
    while (c->qhead && !c->conn_closed && done < FAIR_BATCH) {
        ws_qnode *n = c->qhead;
        ws_frame *f = n->f;
        if (!has_room(c, f->len)) {
            /* Park it: the maintenance thread puts it back on the ready list. */
            pthread_mutex_unlock(&c->lock);
            pthread_mutex_lock(&ws->wlock);
            c->next_ready = ws->blocked;
            ws->blocked = c;
            pthread_mutex_unlock(&ws->wlock);
            return; /* the blocked list keeps the reference */
        }
        c->qhead = n->next;
        if (!c->qhead)
            c->qtail = NULL;
        c->qbytes -= f->len;
        c->qcount--;
        free(n);
        c->writing = 1;
        pthread_mutex_unlock(&c->lock);
        long r = write_frame(c, f);
        pthread_mutex_lock(&c->lock);
        c->writing = 0;
        pthread_cond_broadcast(&c->cond);
        daebus__ws_room_spent(&c->room, r > 0 ? (size_t)r : 0, r > 0);
        done++;
        if (r <= 0) {
            daebus__ws_frame_unref(f);
            daebus__ws_queue_drop(c);
            if (c->fd >= 0 && !c->conn_closed)
                shutdown(c->fd, SHUT_RDWR);
            break;
        }
        if (f->opcode == MG_WEBSOCKET_OPCODE_TEXT || f->opcode == MG_WEBSOCKET_OPCODE_BINARY) {
            c->msgs_out++; /* last_activity tracks the client's own messages only */
            atomic_fetch_add(&ws->st_out, 1);
            atomic_fetch_add(&ws->st_bytes_out, f->len);
        } else if (f->opcode == MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE) {
            c->close_sent = 1;
            c->close_deadline = daebus__now_mono() + ws->close_timeout;
            daebus__ws_queue_drop(c);
        }
        daebus__ws_frame_unref(f);
    }
    if (c->qhead && !c->conn_closed) {
        /* Fairness: back to the end of the ready list. */
        pthread_mutex_unlock(&c->lock);
        pthread_mutex_lock(&ws->wlock);
        ready_append_locked(ws, c);
        pthread_cond_signal(&ws->wcond);
        pthread_mutex_unlock(&ws->wlock);
        return;
    }
    c->scheduled = 0;
    pthread_mutex_unlock(&c->lock);
    daebus__ws_client_unref(c);
}

void daebus__ws_own_begin(ws_client *c)
{
    own_client = c;
}

void daebus__ws_own_end(ws_client *c)
{
    own_client = NULL;
    pthread_mutex_lock(&c->lock);
    if (c->qhead && !c->scheduled && !c->conn_closed && c->state != WS_PENDING) {
        /* Act as a writer for c once: the same claim make_ready() makes. */
        c->scheduled = 1;
        daebus__ws_client_ref(c);
        pthread_mutex_unlock(&c->lock);
        write_client(c->ws, c);
        return;
    }
    pthread_mutex_unlock(&c->lock);
}

static void *writer_main(void *arg)
{
    daebus_ws *ws = arg;
    pthread_mutex_lock(&ws->wlock);
    for (;;) {
        while (!ws->ready_head && !ws->wstop)
            pthread_cond_wait(&ws->wcond, &ws->wlock);
        if (ws->wstop)
            break;
        ws_client *c = ws->ready_head;
        ws->ready_head = c->next_ready;
        if (!ws->ready_head)
            ws->ready_tail = NULL;
        pthread_mutex_unlock(&ws->wlock);
        write_client(ws, c);
        pthread_mutex_lock(&ws->wlock);
    }
    pthread_mutex_unlock(&ws->wlock);
    return NULL;
}

/* ---- maintenance: blocked clients, heartbeat, close deadlines ---- */

static void heartbeat(daebus_ws *ws, double now)
{
    ws_client **cs;
    size_t n = daebus__ws_snapshot(ws, &cs, WS_SNAP_ALL);
    for (size_t i = 0; i < n; i++) {
        ws_client *c = cs[i];
        int action = 0; /* 1 ping, 2 idle drop, 3 force close */
        pthread_mutex_lock(&c->lock);
        if (c->conn_closed || c->state == WS_GONE) {
            action = 0;
        } else if (c->state == WS_PENDING) {
            action = 0;
        } else if (c->close_queued) {
            if (now > c->close_deadline)
                action = 3;
        } else if (ws->idle_timeout > 0 && now - c->last_seen_mono > ws->idle_timeout) {
            action = 2;
        } else if (ws->ping_interval > 0 && now - c->last_ping_mono >= ws->ping_interval) {
            c->last_ping_mono = now;
            action = 1;
        }
        pthread_mutex_unlock(&c->lock);
        if (action == 1) {
            ws_frame *f = daebus__ws_frame_new(MG_WEBSOCKET_OPCODE_PING, "daebus", 6);
            if (f) {
                daebus__ws_enqueue(c, f, true);
                daebus__ws_frame_unref(f);
            }
        } else if (action == 2) {
            daebus_log(DAEBUS_LOG_INFO, "websocket", "client %s: no frame for %.1f s: dropping it",
                       c->id, ws->idle_timeout);
            daebus__ws_force_close(c, WS_BY_IDLE);
        } else if (action == 3) {
            daebus__ws_force_close(c, WS_BY_SERVER);
        }
    }
    daebus__ws_snapshot_release(cs, n);
}

static void *maint_main(void *arg)
{
    daebus_ws *ws = arg;
    double last_beat = 0;
    pthread_mutex_lock(&ws->wlock);
    while (!ws->wstop) {
        daebus__cond_wait_for(&ws->mcond, &ws->wlock, TICK_MS / 1000.0);
        if (ws->wstop)
            break;
        /* Blocked clients get another chance. */
        ws_client *b = ws->blocked;
        ws->blocked = NULL;
        while (b) {
            ws_client *next = b->next_ready;
            ready_append_locked(ws, b);
            b = next;
        }
        if (ws->ready_head)
            pthread_cond_broadcast(&ws->wcond);
        double now = daebus__now_mono();
        if (now - last_beat >= 0.1) {
            last_beat = now;
            pthread_mutex_unlock(&ws->wlock);
            heartbeat(ws, now);
            pthread_mutex_lock(&ws->wlock);
        }
    }
    pthread_mutex_unlock(&ws->wlock);
    return NULL;
}

int daebus__ws_io_start(daebus_ws *ws)
{
    ws->wstop = 0;
    ws->writers = calloc((size_t)ws->writer_threads, sizeof *ws->writers);
    if (!ws->writers)
        return DAEBUS_ENOMEM;
    for (int i = 0; i < ws->writer_threads; i++) {
        if (pthread_create(&ws->writers[i], NULL, writer_main, ws) != 0) {
            daebus__ws_io_stop(ws);
            return DAEBUS_ENOMEM;
        }
        ws->nwriters++;
    }
    if (pthread_create(&ws->maint, NULL, maint_main, ws) != 0) {
        daebus__ws_io_stop(ws);
        return DAEBUS_ENOMEM;
    }
    ws->maint_started = 1;
    return 0;
}

static void release_list(ws_client *c)
{
    while (c) {
        ws_client *next = c->next_ready;
        pthread_mutex_lock(&c->lock);
        c->scheduled = 0;
        pthread_mutex_unlock(&c->lock);
        daebus__ws_client_unref(c);
        c = next;
    }
}

void daebus__ws_io_stop(daebus_ws *ws)
{
    pthread_mutex_lock(&ws->wlock);
    ws->wstop = 1;
    pthread_cond_broadcast(&ws->wcond);
    pthread_cond_broadcast(&ws->mcond);
    pthread_mutex_unlock(&ws->wlock);
    for (int i = 0; i < ws->nwriters; i++)
        pthread_join(ws->writers[i], NULL);
    ws->nwriters = 0;
    free(ws->writers);
    ws->writers = NULL;
    if (ws->maint_started)
        pthread_join(ws->maint, NULL);
    ws->maint_started = 0;
    pthread_mutex_lock(&ws->wlock);
    ws_client *r = ws->ready_head, *b = ws->blocked;
    ws->ready_head = ws->ready_tail = ws->blocked = NULL;
    pthread_mutex_unlock(&ws->wlock);
    release_list(r);
    release_list(b);
}
