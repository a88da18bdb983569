/* ws_io.h - the WebSocket outbound path (ws_io.c): shared frames, per-client
 * queues, writer threads, the maintenance thread and the clients' sockets.
 *
 * Thread: any thread unless a line says otherwise; the locks are those of
 * ws_internal.h.
 */
#ifndef DAEBUS_WS_IO_H
#define DAEBUS_WS_IO_H

#include <stddef.h>

#include "json.h"
#include "ws_internal.h"

_Static_assert(offsetof(ws_frame, data) == offsetof(ws_frame, head) + WS_FRAME_HEAD_MAX,
               "a frame's header must end where its payload starts");

/* ---- frames ---- */

/* Returns: a frame holding a copy of data[0..len) with one reference, or NULL. */
ws_frame *daebus__ws_frame_new(int opcode, const char *data, size_t len);
/* A frame printed in place (no copy): begin readies b with room for the
 * frame's fields in front, the caller appends the payload (json.h), end turns
 * the allocation into a frame with one reference. Ownership: b's allocation
 * is taken by end (freed on failure). Returns: the frame, or NULL when b
 * failed (out of memory, an item of invalid type). */
void daebus__ws_frame_out_begin(daebus__json_out *b);
ws_frame *daebus__ws_frame_out_end(daebus__json_out *b, int opcode);
/* The bytes to send for f: its header immediately followed by its payload.
 * Returns: a pointer into f (valid while f is referenced), *n their count. */
const char *daebus__ws_frame_wire(const ws_frame *f, size_t *n);
/* A text frame. Ownership: text (malloc'd) is taken and freed, NULL included. */
ws_frame *daebus__ws_frame_text_take(char *text, size_t len);
void daebus__ws_frame_unref(ws_frame *f);

/* ---- queues ---- */

/* Queues f (adds a reference) for c. control frames (server pings, close)
 * ignore the limits; pongs do not.
 * Returns: 0, DAEBUS_ENOENT (closing/closed), DAEBUS_ETOOBIG (f alone is over
 * queue_max_bytes: refused, the client is not touched), DAEBUS_EFULL (over the
 * limit: the client is being dropped as a slow consumer), DAEBUS_ENOMEM. */
int daebus__ws_enqueue(ws_client *c, ws_frame *f, bool control);
/* Frees every frame queued for c (c->lock held, or c no longer shared). */
void daebus__ws_queue_drop(ws_client *c);
/* Puts c on the writers' ready list if it has frames (call after the
 * connection became open). */
void daebus__ws_schedule(ws_client *c);
/* Around a message handler on c's own CivetWeb thread: frames this thread
 * queues for c meanwhile are written by it when the handler is done
 * (daebus__ws_own_end), instead of being handed to a writer thread. Frames
 * queued by other threads go to the writers as usual. */
void daebus__ws_own_begin(ws_client *c);
void daebus__ws_own_end(ws_client *c);

/* ---- closing ---- */

/* Starts closing c: close frame queued after what is queued already.
 * Returns: 0 or DAEBUS_ENOENT (already closing or gone). */
int daebus__ws_begin_close(ws_client *c, int code, const char *reason, int why);
/* Shuts c's socket down at once (the CivetWeb thread then ends it). */
void daebus__ws_force_close(ws_client *c, int why);

/* ---- sockets ---- */

/* Finds c's socket (on its CivetWeb thread, connection open). Not found (a
 * reset connection to the port not yet closed makes the search ambiguous),
 * c->fd_retry says when its data callback looks again: without it a write
 * to a client that stopped reading blocks its writer. */
void daebus__ws_find_fd(ws_client *c);
/* Gives c's socket back (close callback). */
void daebus__ws_release_fd(ws_client *c);
/* The socket of a connection that has no client entry (not claimed).
 * Returns: the fd or -1. */
int daebus__ws_peer_fd(daebus_ws *ws, const struct mg_connection *conn);

/* ---- room in a socket's send buffer (ws_io.c says how the bound is kept) ---- */

/* May len payload bytes be written to fd now without blocking? sndbuf: its
 * SO_SNDBUF when the framework fixed it (a bound is kept in *room), else 0
 * (the kernel is asked every time). fd < 0: always yes. *room: the bound
 * (0: none); the kernel is asked when it does not cover len, and *room set
 * from the answer. Thread: the owner of *room (c->lock held for a client). */
int daebus__ws_room_check(int fd, int sndbuf, size_t *room, size_t len);
/* After a write of n bytes: ok, the bound shrinks by n; failed or partial,
 * it is dropped, so the next check asks the kernel. */
void daebus__ws_room_spent(size_t *room, size_t n, bool ok);

/* ---- threads, logs, stats ---- */

/* Starts the writer and maintenance threads. Returns: 0 or DAEBUS_ENOMEM.
 * Thread: the app's owning thread (component start). */
int daebus__ws_io_start(daebus_ws *ws);
/* Joins them and drops the ready and blocked lists. Thread: as io_start. */
void daebus__ws_io_stop(daebus_ws *ws);
/* Rate limit of the log lines of one kind: true at most once a second; the
 * lines dropped meanwhile are counted in *dropped (reset). */
bool daebus__ws_log_allow(daebus_ws *ws, int kind, uint64_t *dropped);
/* Raises the high-water mark *a to v if v is larger. */
void daebus__ws_stat_max(atomic_uint_fast64_t *a, uint64_t v);

#endif
