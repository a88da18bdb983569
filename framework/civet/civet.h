/* civet.h - the CivetWeb adapter, server side (internal).
 *
 * Everything the framework does around CivetWeb 1.15 that CivetWeb does not
 * do itself, or does in a way that breaks the framework, lives in civet.c
 * with the reason next to it: the process-wide library set-up, the TLS
 * probe, telling a busy port from other start failures, the mg_stop wake-up,
 * the tests of what CivetWeb would answer badly (upgrades it would answer
 * without a status line, targets it drops without a word), the request
 * deadline watchdog, and finding a connection's socket. The HTTP and
 * WebSocket layers call these; this layer calls only core/ and CivetWeb.
 * WebSocket-only workarounds are in civet_ws.[ch].
 *
 * Threads of this layer: CivetWeb's master and worker threads, the thread that starts and
 * stops the server, and one deadline watchdog thread per running server.
 */
#ifndef DAEBUS_CIVET_H
#define DAEBUS_CIVET_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

struct mg_connection;
struct mg_context;

/* ---- library and server life cycle ---- */

/* CivetWeb's process-wide set-up, once (and once more with TLS the first
 * time a certificate is configured).
 * Thread: callable from any thread. */
void daebus__civet_library_init(bool tls);

/* Returns: true (the reason in why) when this CivetWeb and the installed
 * OpenSSL would crash on the first TLS connection.
 * Thread: callable from any thread. */
bool daebus__civet_tls_broken(char *why, size_t len);

/* Returns: true when port on the IPv4 address addr is taken by another
 * socket (to explain a failed mg_start).
 * Thread: callable from any thread. */
bool daebus__civet_port_busy(const char *addr, int port);

/* mg_stop(ctx), made fast: bind_address and port are where the server
 * listens (port <= 0: plain mg_stop). Never from CivetWeb's own threads.
 * Thread: the app's owning thread. */
void daebus__civet_stop(struct mg_context *ctx, const char *bind_address, int port);

/* ---- requests CivetWeb would answer badly ---- */

/* Returns: true when CivetWeb will take this request for a WebSocket
 * handshake (its own test), so that its response header calls would write no
 * status line. (In begin_request.)
 * Thread: only inside its handler. */
bool daebus__civet_is_upgrade(const struct mg_connection *conn);

/* In the connection_close callback: the request target CivetWeb parsed but
 * closed the connection on without an answer ("*", or an absolute-form target
 * on another host or port). Returns: the target, or NULL when the request was
 * handled, not parsed, or never started.
 * Thread: only inside its handler. */
const char *daebus__civet_dropped_target(const struct mg_connection *conn);

/* ---- a connection's socket ---- */

/* What identifies the socket of a connection among the process's
 * descriptors: the peer's address and port and the server's port. */
typedef struct daebus__civet_peer {
    char addr[48]; /* as CivetWeb prints it */
    int port;
    int local_port;
} daebus__civet_peer;

/* Copies conn's peer (in a CivetWeb callback for conn). Returns: false when
 * CivetWeb has no request info.
 * Thread: only inside its handler. */
bool daebus__civet_peer_of(const struct mg_connection *conn, daebus__civet_peer *out);

/* The descriptor of the connection whose peer is p, or -1 when it cannot be
 * told apart with certainty (never another connection's socket). The caller
 * guarantees that the connection's socket stays open during the call: it
 * runs on the CivetWeb thread serving the connection, inside a callback for
 * it, or it holds a lock that thread must take before it can return from
 * that callback (see civet.c for the proof). Costs a scan of the process's
 * descriptors: about 1 µs per open descriptor. (Or on another thread under
 * such a lock.)
 * Thread: only inside its handler. */
int daebus__civet_find_socket(const daebus__civet_peer *p);

/* daebus__civet_peer_of + daebus__civet_find_socket for conn. Returns: the
 * descriptor or -1.
 * Thread: only inside its handler. */
int daebus__civet_socket(const struct mg_connection *conn);

/* ---- request deadlines ---- */

typedef struct daebus__civet_deadline_slot {
    daebus__civet_peer peer;
    double deadline; /* daebus__now_mono() */
    bool used;
    bool expired; /* the deadline passed (and the read side was shut if found) */
} daebus__civet_deadline_slot;

/* A bounded set of connections being read under a deadline, and the
 * watchdog thread that shuts the read side of a socket whose deadline
 * passed (which wakes the worker blocked in mg_read). */
typedef struct daebus__civet_deadlines {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    daebus__civet_deadline_slot *slots;
    int nslots;
    double next; /* when the watchdog wakes next */
    bool running;
    bool stop;
    pthread_t thread;
} daebus__civet_deadlines;

/* Returns: 0 or DAEBUS_ENOMEM.
 * Thread: before the app runs. */
int daebus__civet_deadlines_init(daebus__civet_deadlines *d, int nslots);
void daebus__civet_deadlines_destroy(daebus__civet_deadlines *d);
/* Starts / stops the watchdog thread (when the server starts and stops).
 * Returns: 0 or DAEBUS_ENOMEM.
 * Thread: the app's owning thread. */
int daebus__civet_deadlines_start(daebus__civet_deadlines *d);
void daebus__civet_deadlines_stop(daebus__civet_deadlines *d);

/* Takes a slot for conn, read until deadline (by the worker serving conn).
 * Returns: the slot, or -1 when all are taken.
 * Thread: only inside its handler. */
int daebus__civet_deadline_acquire(daebus__civet_deadlines *d, const struct mg_connection *conn,
                                   double deadline);
/* Gives the slot back; call before returning from the handler. Returns:
 * true when the watchdog expired it (the socket's read side is shut).
 * Thread: only inside its handler. */
bool daebus__civet_deadline_release(daebus__civet_deadlines *d, int slot);

#endif
