/* ws_internal.h - shared structures of the WebSocket layer (every framework/ws/ file).
 *
 * The functions each file offers the others are declared in its own header
 * (ws_io.h, ws_client.h, ws_request.h, ws_message.h, ws_conn.h); this one
 * holds only the types they share and the lock order.
 *
 * Locks, outermost first: (cluster mode) the cluster's dir_lock
 * (ws_cluster.h), ws->reg_lock (registry, client states), c->lock
 * (one client's queue and metadata), ws->wlock (writer ready/blocked lists);
 * ws->ch_deliver_lock (channel deliveries) is taken before c->lock, and
 * ws->ch_lock (the channel table) is a leaf, taken after reg_lock at most.
 * Socket writes happen with none of them held: a writer owns a client by its
 * `writing` flag; the close handler waits for that flag to drop before
 * CivetWeb closes the socket.
 */
#ifndef DAEBUS_WS_INTERNAL_H
#define DAEBUS_WS_INTERNAL_H

#include "ratelimit.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "component.h"
#include "daebus/websocket.h"
#include "ws_registry.h"

struct mg_connection;

/* The longest header of a frame the server sends: unmasked, 64-bit length. */
#define WS_FRAME_HEAD_MAX 10

/* A serialised frame shared by every queue it is on. Immutable once built
 * (daebus__ws_frame_new and friends), refs aside: its header is built with it,
 * right before data, so that a writer sends head and payload in one write
 * (daebus__ws_frame_wire) and concurrent writers of a shared frame only read. */
typedef struct ws_frame {
    atomic_int refs;
    int opcode;
    size_t len;
    unsigned char head_len;                /* the header: its last head_len bytes of head */
    unsigned char head[WS_FRAME_HEAD_MAX]; /* right-aligned against data */
    char data[];                           /* len bytes and a NUL */
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

/* Appends node to the singly linked list head..tail through its link field. */
#define WS_LIST_APPEND(head, tail, node, link)                                                     \
    do {                                                                                           \
        (node)->link = NULL;                                                                       \
        if (tail)                                                                                  \
            (tail)->link = (node);                                                                 \
        else                                                                                       \
            (head) = (node);                                                                       \
        (tail) = (node);                                                                           \
    } while (0)

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
    int fd;          /* socket, -1 unknown */
    int sndbuf;      /* its SO_SNDBUF when fixed by send_buffer, else 0 (ask the kernel) */
    double fd_retry; /* fd not found at open: when its own thread looks again (mono; 0 never) */
    ws_qnode *qhead, *qtail;
    size_t qbytes;
    int qcount;
    int scheduled; /* on the ready or blocked list, or being written */
    int writing;   /* a writer is in the frame write (ws_io.c write_frame) */
    size_t room;   /* lower bound of the free room in the socket's send buffer (ws_io.c) */
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
    /* cluster mode (ws_directory.c): what the directory in Redis last got;
     * read and written by the cluster thread only */
    double dir_activity;
    uint64_t dir_in, dir_out;
    double dir_out_mono; /* when messages_sent alone was last written (ws_directory.c) */
} ws_client;

/* A registered "client left" handler (daebus_ws_on_client_departed). */
typedef struct ws_departed {
    daebus_ws_departed_fn *fn;
    void *user;
} ws_departed;

struct ws_cluster;

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
    daebus__ratelimit log_rl[WS_LOG_KINDS]; /* daebus__ws_log_allow */
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
    /* across replicas (ws_cluster.c, ws_directory.c); cluster NULL: one process */
    daebus_ws_cluster_mode cluster_mode;
    _Atomic(struct ws_cluster *) cluster; /* set once started: HTTP routes may call in meanwhile */
    ws_departed *departed;                /* set before the app runs */
    size_t ndeparted;
    /* channels (ws_channel*.c); options immutable after create */
    bool channels;
    char *ch_subscribe, *ch_publish; /* comma-separated glob patterns, NULL = none */
    char *ch_history;                /* channels with a history (patterns), NULL = none */
    unsigned ch_hist_count;          /* their bounds */
    double ch_hist_age;
    char *ch_presence; /* the channels with presence (glob patterns) */
    daebus_ws_authorize_fn *authorize;
    void *authorize_user;
    struct ws_chtable *chans; /* the subscription table, under ch_lock (a leaf) */
    pthread_mutex_t ch_lock;
    pthread_mutex_t ch_deliver_lock; /* one local delivery at a time: outside c->lock */
    /* stats */
    atomic_uint_fast64_t st_cluster_pub, st_cluster_recv, st_cluster_err, st_cluster_reaped;
    atomic_uint_fast64_t st_connects, st_rejected, st_disc[5], st_in, st_out, st_bytes_in,
        st_bytes_out, st_handler_errors, st_rate_limited, st_qhw, st_clients_hw;
};

#endif
