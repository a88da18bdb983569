/* civet_server.h - the one CivetWeb server of an app (internal).
 *
 * The HTTP and WebSocket components share one CivetWeb server (one port).
 * This object owns it: the running mg_context, the worker thread count with
 * the threads other components reserve (CivetWeb holds one worker per open
 * connection, so the WebSocket component reserves one per client), CivetWeb
 * options other components set, the bound port, and start and stop.
 *
 * The HTTP component embeds it, starts it with its own options and callbacks
 * and stops it. Other components reach it through the app
 * (daebus__app_civet_server in app/component.h), never through the HTTP
 * component: they reserve threads and set options when they attach, and
 * register their handlers on the running context when they start (the app
 * starts components in attach order, and websocket attaches after http).
 *
 * Threads: everything here runs on the app's owning thread, except
 * daebus__civet_server_port, which any thread may call.
 */
#ifndef DAEBUS_CIVET_SERVER_H
#define DAEBUS_CIVET_SERVER_H

#include <stdatomic.h>
#include <stdbool.h>

struct mg_callbacks;
struct mg_context;

#define DAEBUS__CIVET_MAX_EXTRA_OPTIONS 8

typedef struct daebus__civet_server {
    char *bind_address; /* IPv4 address to listen on */
    bool tls;           /* listen with TLS ("s" port suffix, TLS library set-up) */
    int threads;        /* the owner's worker threads */
    int reserved;       /* worker threads other components reserved */
    struct {
        char *name, *value;
    } extra[DAEBUS__CIVET_MAX_EXTRA_OPTIONS]; /* daebus__civet_server_set_option() */
    int nextra;
    struct mg_context *ctx; /* NULL when stopped */
    atomic_int port;        /* bound port while running, else -1 */
} daebus__civet_server;

/* Returns: 0 or DAEBUS_ENOMEM (s is then still safe to destroy).
 * Thread: before the app runs. */
int daebus__civet_server_init(daebus__civet_server *s, const char *bind_address, int threads,
                              bool tls);

/* Frees what init and set_option allocated; the server must be stopped.
 * Thread: the app's owning thread. */
void daebus__civet_server_destroy(daebus__civet_server *s);

/* Adds extra worker threads to the next start (cumulative). Returns: 0,
 * DAEBUS_EINVAL, or DAEBUS_ESTATE (running).
 * Thread: before the app runs. */
int daebus__civet_server_reserve_threads(daebus__civet_server *s, int extra);

/* Sets a CivetWeb option for the next start (e.g. "websocket_timeout_ms"),
 * replacing the owner's value of the same name. Ownership: copied.
 * Returns: 0, DAEBUS_EINVAL, DAEBUS_ESTATE (running), DAEBUS_EFULL (more
 * than DAEBUS__CIVET_MAX_EXTRA_OPTIONS names), DAEBUS_ENOMEM.
 * Thread: before the app runs. */
int daebus__civet_server_set_option(daebus__civet_server *s, const char *name, const char *value);

/* Returns: the worker threads of the next (or running) start: the owner's
 * and the reserved ones.
 * Thread: the app's owning thread. */
int daebus__civet_server_threads(const daebus__civet_server *s);

/* Returns: the running CivetWeb context; NULL before start and after stop.
 * Thread: the app's owning thread. */
struct mg_context *daebus__civet_server_context(const daebus__civet_server *s);

/* Returns: the port the server is bound to while it runs, else -1.
 * Thread: callable from any thread. */
int daebus__civet_server_port(const daebus__civet_server *s);

/* Starts CivetWeb on port (0: any free port) with listening_ports and
 * num_threads from s, then the owner's options (NULL-terminated name/value
 * pairs, borrowed for the call), then the options set with set_option.
 * Returns: 0, DAEBUS_ESTATE (running), DAEBUS_EADDRINUSE or DAEBUS_EIO
 * (logged under the "http" tag: the server is the HTTP port).
 * Thread: the app's owning thread. */
int daebus__civet_server_start(daebus__civet_server *s, int port, const char *const *options,
                               const struct mg_callbacks *callbacks, void *user_data);

/* Stops the server, fast (daebus__civet_stop); no-op when stopped.
 * Thread: the app's owning thread. */
void daebus__civet_server_stop(daebus__civet_server *s);

#endif
