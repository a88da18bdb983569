/* ws_io.c - WebSocket outbound path: shared frames, per-client queues, writer threads, heartbeat.
 *
 * Every frame the server sends (responses, broadcasts, pings, close frames)
 * goes through the bounded queue of its client. A small pool of writer
 * threads drains the queues of the clients on the ready list, one client at
 * a time per writer, so frames to one connection never interleave. Before a
 * write the writer checks the room left in the socket's send buffer
 * (SIOCOUTQ against SO_SNDBUF): a client that stopped reading is parked on
 * the blocked list instead of stalling a writer, and its queue grows until
 * it hits the limit, which drops the client ("slow consumer"). Frames a
 * message handler queues for its own client are written by the client's
 * CivetWeb thread once the handler returns (ws__own_end), acting as that
 * client's writer for the moment: the same checks, no hand-off.
 *
 * CivetWeb does not expose a connection's socket, so the socket is found
 * once per connection by matching the peer address among the process's file
 * descriptors (ws__find_fd). With it the server can also end a connection at
 * once (shutdown(2)), which the maintenance thread does for clients that
 * missed the heartbeat or ignored a close frame.
 */
#include "ws_internal.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <civetweb.h>

#include "daebus/log.h"
#include "civet.h"
#include "ws_parse.h"

#define TICK_MS    50
#define FAIR_BATCH 64

double ws__mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double ws__wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

bool ws__log_allow(daebus_ws *ws, int kind, uint64_t *dropped)
{
    double now = ws__mono();
    bool ok = false;
    pthread_mutex_lock(&ws->rl_lock);
    if (ws->log_last[kind] == 0 || now - ws->log_last[kind] >= 1.0) {
        ws->log_last[kind] = now;
        *dropped = ws->log_dropped[kind];
        ws->log_dropped[kind] = 0;
        ok = true;
    } else {
        ws->log_dropped[kind]++;
    }
    pthread_mutex_unlock(&ws->rl_lock);
    return ok;
}

static void stat_max(atomic_uint_fast64_t *a, uint64_t v)
{
    uint64_t cur = atomic_load(a);
    while (v > cur && !atomic_compare_exchange_weak(a, &cur, v))
        ;
}

/* ---- frames ---- */

ws_frame *ws__frame_new(int opcode, const char *data, size_t len)
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
    return f;
}

ws_frame *ws__frame_text_take(char *text, size_t len)
{
    if (!text)
        return NULL;
    ws_frame *f = ws__frame_new(MG_WEBSOCKET_OPCODE_TEXT, text, len);
    free(text);
    return f;
}

void ws__frame_unref(ws_frame *f)
{
    if (f && atomic_fetch_sub(&f->refs, 1) == 1)
        free(f);
}

/* ---- clients ---- */

void ws__client_ref(ws_client *c)
{
    atomic_fetch_add(&c->refs, 1);
}

static void drop_queue(ws_client *c)
{
    ws_qnode *n = c->qhead;
    while (n) {
        ws_qnode *next = n->next;
        ws__frame_unref(n->f);
        free(n);
        n = next;
    }
    c->qhead = c->qtail = NULL;
    c->qbytes = 0;
    c->qcount = 0;
}

void ws__client_unref(ws_client *c)
{
    if (!c || atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    drop_queue(c);
    ws_rate_free(&c->rate);
    cJSON_Delete(c->user_data);
    ws__frag_release(c);
    free(c->path);
    free(c->id);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
    free(c);
}

/* Adds c to the ready list (c->lock held, c->scheduled false). */
static void make_ready(ws_client *c)
{
    daebus_ws *ws = c->ws;
    c->scheduled = 1;
    ws__client_ref(c);
    pthread_mutex_lock(&ws->wlock);
    c->next_ready = NULL;
    if (ws->ready_tail)
        ws->ready_tail->next_ready = c;
    else
        ws->ready_head = c;
    ws->ready_tail = c;
    pthread_cond_signal(&ws->wcond);
    pthread_mutex_unlock(&ws->wlock);
}

void ws__schedule(ws_client *c)
{
    pthread_mutex_lock(&c->lock);
    if (c->qhead && !c->scheduled && !c->conn_closed && c->state != WS_PENDING)
        make_ready(c);
    pthread_mutex_unlock(&c->lock);
}

/* The client whose message handler runs on this thread (ws__own_begin). */
static _Thread_local ws_client *own_client;

/* Called with c->lock held. */
static int push(ws_client *c, ws_frame *f)
{
    ws_qnode *n = malloc(sizeof *n);
    if (!n)
        return DAEBUS_ENOMEM;
    atomic_fetch_add(&f->refs, 1);
    n->f = f;
    n->next = NULL;
    if (c->qtail)
        c->qtail->next = n;
    else
        c->qhead = n;
    c->qtail = n;
    c->qbytes += f->len;
    c->qcount++;
    stat_max(&c->ws->st_qhw, (uint64_t)c->qcount);
    /* A handler's own frames wait for ws__own_end(), unless it queues many:
     * then a writer starts draining them meanwhile, as for any other sender. */
    bool deferred = own_client == c && c->qcount <= FAIR_BATCH;
    if (!c->scheduled && !c->conn_closed && c->state != WS_PENDING && !deferred)
        make_ready(c);
    return 0;
}

int ws__enqueue(ws_client *c, ws_frame *f, bool control)
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
        if (ws__log_allow(ws, WS_LOG_SLOW, &dropped))
            daebus_log(DAEBUS_LOG_WARNING, "websocket",
                       "client %s: outbound queue full (%d frames, %zu bytes): disconnecting it "
                       "as a slow consumer (%llu more such lines suppressed)",
                       c->id, qcount, qbytes, (unsigned long long)dropped);
        ws__force_close(c, WS_BY_SLOW);
        return DAEBUS_EFULL;
    }
    int rc = push(c, f);
    pthread_mutex_unlock(&c->lock);
    return rc;
}

int ws__begin_close(ws_client *c, int code, const char *reason, int why)
{
    char payload[125];
    size_t n = ws_close_payload(code, reason, payload);
    ws_frame *f = ws__frame_new(MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE, payload, n);
    if (!f)
        return DAEBUS_ENOMEM;
    pthread_mutex_lock(&c->lock);
    int rc = DAEBUS_ENOENT;
    if (!c->conn_closed && !c->close_queued && c->state != WS_GONE) {
        rc = push(c, f);
        if (rc == 0) {
            c->close_queued = 1;
            c->end_reason = why;
            c->close_deadline = ws__mono() + c->ws->close_timeout;
        }
    }
    pthread_mutex_unlock(&c->lock);
    ws__frame_unref(f);
    return rc;
}

/* ---- sockets ---- */

static void set_owned(daebus_ws *ws, int fd, int v)
{
    if (fd >= ws->fd_cap) {
        if (!v)
            return;
        int cap = ws->fd_cap ? ws->fd_cap : 1024;
        while (cap <= fd)
            cap *= 2;
        unsigned char *m = realloc(ws->fd_owned, (size_t)cap);
        if (!m)
            return;
        memset(m + ws->fd_cap, 0, (size_t)(cap - ws->fd_cap));
        ws->fd_owned = m;
        ws->fd_cap = cap;
    }
    ws->fd_owned[fd] = (unsigned char)v;
}

int ws__peer_fd(daebus_ws *ws, const struct mg_connection *conn)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    if (!ri)
        return -1;
    pthread_mutex_lock(&ws->fd_lock);
    int fd = daebus__civet_socket(conn);
    pthread_mutex_unlock(&ws->fd_lock);
    return fd;
}

/* The socket of c, claimed in the ownership map. */
void ws__find_fd(ws_client *c)
{
    daebus_ws *ws = c->ws;
    pthread_mutex_lock(&ws->fd_lock);
    int found = daebus__civet_socket(c->conn);
    if (found >= 0) {
        set_owned(ws, found, 1);
        if (found > ws->fd_hi)
            ws->fd_hi = found;
    }
    pthread_mutex_unlock(&ws->fd_lock);
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
    pthread_mutex_unlock(&c->lock);
    if (found < 0)
        daebus_log(DAEBUS_LOG_DEBUG, "websocket",
                   "client %s: socket not found; writes to it may block a writer", c->id);
}

void ws__release_fd(ws_client *c)
{
    daebus_ws *ws = c->ws;
    pthread_mutex_lock(&c->lock);
    int fd = c->fd;
    c->fd = -1;
    pthread_mutex_unlock(&c->lock);
    if (fd >= 0) {
        pthread_mutex_lock(&ws->fd_lock);
        set_owned(ws, fd, 0);
        pthread_mutex_unlock(&ws->fd_lock);
    }
}

void ws__force_close(ws_client *c, int why)
{
    pthread_mutex_lock(&c->lock);
    if (!c->conn_closed) {
        if (!c->close_queued)
            c->end_reason = why;
        c->close_queued = 1;
        drop_queue(c);
        if (c->fd >= 0)
            shutdown(c->fd, SHUT_RDWR);
        else
            c->close_deadline = 0; /* nothing better: the next read error ends it */
    }
    pthread_mutex_unlock(&c->lock);
}

/* Room in the socket's send buffer for len more bytes (c->lock held)? */
static int has_room(ws_client *c, size_t len)
{
    if (c->fd < 0)
        return 1;
    int outq = 0, sndbuf = c->sndbuf;
    socklen_t l = sizeof sndbuf;
    if (ioctl(c->fd, SIOCOUTQ, &outq) != 0)
        return 1;
    if (outq == 0)
        return 1;
    if (sndbuf <= 0 && getsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &l) != 0)
        return 1;
    /* SO_SNDBUF reports twice the payload room (kernel bookkeeping). */
    return (long)sndbuf / 2 - (long)outq >= (long)len + 14;
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
        int r = mg_websocket_write(c->conn, f->opcode, f->data, f->len);
        pthread_mutex_lock(&c->lock);
        c->writing = 0;
        pthread_cond_broadcast(&c->cond);
        done++;
        if (r <= 0) {
            ws__frame_unref(f);
            drop_queue(c);
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
            c->close_deadline = ws__mono() + ws->close_timeout;
            drop_queue(c);
        }
        ws__frame_unref(f);
    }
    if (c->qhead && !c->conn_closed) {
        /* Fairness: back to the end of the ready list. */
        pthread_mutex_unlock(&c->lock);
        pthread_mutex_lock(&ws->wlock);
        c->next_ready = NULL;
        if (ws->ready_tail)
            ws->ready_tail->next_ready = c;
        else
            ws->ready_head = c;
        ws->ready_tail = c;
        pthread_cond_signal(&ws->wcond);
        pthread_mutex_unlock(&ws->wlock);
        return;
    }
    c->scheduled = 0;
    pthread_mutex_unlock(&c->lock);
    ws__client_unref(c);
}

void ws__own_begin(ws_client *c)
{
    own_client = c;
}

void ws__own_end(ws_client *c)
{
    own_client = NULL;
    pthread_mutex_lock(&c->lock);
    if (c->qhead && !c->scheduled && !c->conn_closed && c->state != WS_PENDING) {
        /* Act as a writer for c once: the same claim make_ready() makes. */
        c->scheduled = 1;
        ws__client_ref(c);
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
    pthread_mutex_lock(&ws->reg_lock);
    size_t n = ws_registry_count(ws->reg);
    ws_client **cs = n ? malloc(n * sizeof *cs) : NULL;
    if (cs) {
        n = ws_registry_values(ws->reg, (void **)cs, n);
        for (size_t i = 0; i < n; i++)
            ws__client_ref(cs[i]);
    } else {
        n = 0;
    }
    pthread_mutex_unlock(&ws->reg_lock);
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
            ws_frame *f = ws__frame_new(MG_WEBSOCKET_OPCODE_PING, "daebus", 6);
            if (f) {
                ws__enqueue(c, f, true);
                ws__frame_unref(f);
            }
        } else if (action == 2) {
            daebus_log(DAEBUS_LOG_INFO, "websocket", "client %s: no frame for %.1f s: dropping it",
                       c->id, ws->idle_timeout);
            ws__force_close(c, WS_BY_IDLE);
        } else if (action == 3) {
            ws__force_close(c, WS_BY_SERVER);
        }
        ws__client_unref(c);
    }
    free(cs);
}

static void *maint_main(void *arg)
{
    daebus_ws *ws = arg;
    double last_beat = 0;
    pthread_mutex_lock(&ws->wlock);
    while (!ws->wstop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += TICK_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&ws->mcond, &ws->wlock, &ts);
        if (ws->wstop)
            break;
        /* Blocked clients get another chance. */
        ws_client *b = ws->blocked;
        ws->blocked = NULL;
        while (b) {
            ws_client *next = b->next_ready;
            b->next_ready = NULL;
            if (ws->ready_tail)
                ws->ready_tail->next_ready = b;
            else
                ws->ready_head = b;
            ws->ready_tail = b;
            b = next;
        }
        if (ws->ready_head)
            pthread_cond_broadcast(&ws->wcond);
        double now = ws__mono();
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

int ws__io_start(daebus_ws *ws)
{
    ws->wstop = 0;
    ws->writers = calloc((size_t)ws->writer_threads, sizeof *ws->writers);
    if (!ws->writers)
        return DAEBUS_ENOMEM;
    for (int i = 0; i < ws->writer_threads; i++) {
        if (pthread_create(&ws->writers[i], NULL, writer_main, ws) != 0) {
            ws__io_stop(ws);
            return DAEBUS_ENOMEM;
        }
        ws->nwriters++;
    }
    if (pthread_create(&ws->maint, NULL, maint_main, ws) != 0) {
        ws__io_stop(ws);
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
        ws__client_unref(c);
        c = next;
    }
}

void ws__io_stop(daebus_ws *ws)
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
