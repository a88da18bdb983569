/* ws_internal.h - shared structures of the WebSocket component (websocket.c, ws_io.c).
 *
 * Locks, outermost first: ws->reg_lock (registry, client states), c->lock
 * (one client's queue and metadata), ws->wlock (writer ready/blocked lists).
 * Socket writes happen with none of them held: a writer owns a client by its
 * `writing` flag; the close handler waits for that flag to drop before
 * CivetWeb closes the socket.
 */
#ifndef DAEBUS_WS_INTERNAL_H
#define DAEBUS_WS_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "component.h"
#include "daebus/websocket.h"
#include "ws_registry.h"

struct mg_connection;

/* A serialised frame shared by every queue it is on. */
typedef struct ws_frame {
    atomic_int refs;
    int opcode;
    size_t len;
    char data[];
} ws_frame;

typedef struct ws_qnode {
    ws_frame *f;
    struct ws_qnode *next;
} ws_qnode;

/* Log lines an attacker can trigger at will, each at most once a second. */
enum { WS_LOG_TOOBIG = 0, WS_LOG_PINGS, WS_LOG_SLOW, WS_LOG_KINDS };

/* Reassembly buffers this large or larger are mmap'd, so that they go back to
 * the system when the message is done, whatever malloc would keep. */
#define WS_FRAG_MMAP ((size_t)64 * 1024)

/* Control frames over the limit ignored while the 1008 close waits to go out;
 * past them the connection is dropped. */
#define WS_CLOSING_FLOOD 256

enum { WS_PENDING = 0, WS_OPEN, WS_CLOSING, WS_GONE };

/* Why a connection ended, for the stats. */
enum { WS_BY_CLIENT = 0, WS_BY_SERVER, WS_BY_IDLE, WS_BY_SLOW, WS_BY_PROTOCOL };

typedef struct ws_client {
    char *id;
    struct daebus_ws *ws;
    struct mg_connection *conn;
    atomic_int refs;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    /* under ws->reg_lock (written), c->lock not needed to read a snapshot */
    int state;
    /* under c->lock */
    int fd;     /* socket, -1 unknown */
    int sndbuf; /* its SO_SNDBUF when fixed by send_buffer, else 0 (ask the kernel) */
    ws_qnode *qhead, *qtail;
    size_t qbytes;
    int qcount;
    int scheduled; /* on the ready or blocked list, or being written */
    int writing;   /* a writer is in mg_websocket_write */
    int conn_closed;
    int close_queued;
    int close_sent;
    double close_deadline; /* monotonic; force the socket shut after it */
    int end_reason;        /* WS_BY_* */
    int peer_close_code;   /* > 0 once the peer sent a close frame */
    int rejected;
    int accepted; /* connect handler ran and accepted */
    double connected_at, last_activity;
    double last_seen_mono, last_ping_mono, created_mono;
    char *path;
    char remote_addr[48];
    int remote_port;
    bool secure;
    uint64_t msgs_in, msgs_out;
    cJSON *user_data;
    /* worker thread only */
    ws_rate rate;
    int rate_violations;
    double ping_tokens, ping_refill; /* control-frame bucket (ping_refill 0: not started) */
    int ping_excess;                 /* over-limit control frames since the 1008 close */
    char *frag; /* reassembly buffer; mmap'd past WS_FRAG_MMAP, unmapped after each message */
    size_t frag_len, frag_cap;
    int frag_opcode;
    char subproto[96];
    struct ws_client *next_ready;
} ws_client;

struct daebus_ws {
    daebus__component comp;
    daebus_app *app;
    /* options (immutable after create) */
    char *paths;
    int max_clients;
    size_t max_message_size;
    size_t queue_max_bytes;
    int queue_max_messages;
    double ping_interval, idle_timeout, close_timeout, shutdown_timeout;
    int writer_threads;
    size_t send_buffer;
    daebus_ws_id_fn *id_gen;
    void *id_gen_user;
    char *allowed_origins; /* NULL = any */
    int max_json_depth;
    double max_pings; /* control frames per second per client; <= 0 = no limit */
    /* rate limiting (rl_lock) */
    pthread_mutex_t rl_lock;
    int rl_max;
    double rl_window;
    int rl_disconnect_after;
    double log_last[WS_LOG_KINDS]; /* ws__log_allow (rl_lock) */
    uint64_t log_dropped[WS_LOG_KINDS];
    /* handlers, read at start */
    const daebus__handler *socket_handlers;
    size_t nsocket_handlers;
    const daebus_handler_desc *on_connect, *on_disconnect;
    /* registry */
    pthread_mutex_t reg_lock;
    pthread_cond_t reg_cond; /* signalled when a connection ends */
    ws_registry *reg;
    int nconn; /* pending + open + closing connections (capacity) */
    int nfull; /* upgrades past capacity being closed with 1013 */
    atomic_int running;
    atomic_int refusing; /* graceful shutdown started: 503 */
    /* writers */
    pthread_mutex_t wlock;
    pthread_cond_t wcond; /* writers */
    pthread_cond_t mcond; /* maintenance thread */
    ws_client *ready_head, *ready_tail, *blocked;
    int wstop;
    pthread_t *writers;
    int nwriters;
    pthread_t maint;
    int maint_started;
    /* fd ownership map (fd_lock) */
    pthread_mutex_t fd_lock;
    unsigned char *fd_owned;
    int fd_cap;
    int fd_hi; /* highest socket found so far */
    /* stats */
    atomic_uint_fast64_t st_connects, st_rejected, st_disc[5], st_in, st_out, st_bytes_in,
        st_bytes_out, st_handler_errors, st_rate_limited, st_qhw, st_clients_hw;
};

/* ---- ws_io.c ---- */
ws_frame *ws__frame_new(int opcode, const char *data, size_t len);
/* Takes ownership of a malloc'd text (freed here). */
ws_frame *ws__frame_text_take(char *text, size_t len);
void ws__frame_unref(ws_frame *f);
void ws__client_ref(ws_client *c);
void ws__client_unref(ws_client *c);
/* Queues f (adds a reference) for c. control frames (server pings, close)
 * ignore the limits; pongs do not.
 * Returns: 0, DAEBUS_ENOENT (closing/closed), DAEBUS_ETOOBIG (f alone is over
 * queue_max_bytes: refused, the client is not touched), DAEBUS_EFULL (over the
 * limit: the client is being dropped as a slow consumer), DAEBUS_ENOMEM. */
int ws__enqueue(ws_client *c, ws_frame *f, bool control);
/* Puts c on the writers' ready list if it has frames (call after the
 * connection became open). */
void ws__schedule(ws_client *c);
/* Around a message handler on c's own CivetWeb thread: frames this thread
 * queues for c meanwhile are written by it when the handler is done
 * (ws__own_end), instead of being handed to a writer thread. Frames queued
 * by other threads go to the writers as usual. */
void ws__own_begin(ws_client *c);
void ws__own_end(ws_client *c);
/* Starts closing c: close frame queued after what is queued already.
 * Returns: 0 or DAEBUS_ENOENT (already closing or gone). */
int ws__begin_close(ws_client *c, int code, const char *reason, int why);
/* Shuts c's socket down at once (the CivetWeb thread then ends it). */
void ws__force_close(ws_client *c, int why);
/* Finds c's socket (on its CivetWeb thread, connection open). */
void ws__find_fd(ws_client *c);
void ws__release_fd(ws_client *c);
/* The socket of a connection that has no client entry (not claimed).
 * Returns: the fd or -1. */
int ws__peer_fd(daebus_ws *ws, const struct mg_connection *conn);
int ws__io_start(daebus_ws *ws);
/* ---- websocket.c ---- */
/* Frees c's reassembly buffer (malloc'd or mmap'd). */
void ws__frag_release(ws_client *c);
void ws__io_stop(daebus_ws *ws);
/* Rate limit of the log lines of one kind: true at most once a second; the
 * lines dropped meanwhile are counted in *dropped (reset). */
bool ws__log_allow(daebus_ws *ws, int kind, uint64_t *dropped);
double ws__mono(void);
double ws__wall(void);

#endif
