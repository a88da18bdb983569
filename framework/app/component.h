/* component.h - the plug between the app and its components (internal).
 *
 * Each component (http, websocket, bus, scheduler) embeds a daebus__component
 * and hands it to daebus__app_attach() from its public *_attach() function.
 * The app then owns the component: it calls start in attach order, stop in
 * reverse order, and destroy when the app is destroyed. Components find each
 * other only through the app: daebus__app_component() and the shared
 * resources the app hands out (daebus__app_civet_server()).
 */
#ifndef DAEBUS_COMPONENT_H
#define DAEBUS_COMPONENT_H

#include "daebus/app.h"
#include "clock.h"

struct daebus__civet_server;

typedef enum daebus__component_kind {
    DAEBUS__COMP_HTTP = 0,
    DAEBUS__COMP_WEBSOCKET,
    DAEBUS__COMP_BUS,
    DAEBUS__COMP_SCHEDULER,
    DAEBUS__COMP_COUNT
} daebus__component_kind;

typedef struct daebus__component_ops {
    const char *name; /* "http", "websocket", "bus", "scheduler" */
    int kind;         /* daebus__component_kind */
    /* Called by daebus__app_attach after the order checks pass; may refuse. */
    int (*attach)(void *self, daebus_app *app);
    /* Start: read the app's merged handler tables and configuration, start
     * threads/listeners. Returns 0 or a negative code (logged by the app). */
    int (*start)(void *self);
    /* Stop: the reverse of start, blocking until its threads are joined.
     * Called only after a successful start. */
    void (*stop)(void *self);
    /* Frees the component. Called once, by the app: when it is destroyed, or
     * when attach fails. */
    void (*destroy)(void *self);
    /* Optional: a few words for the "ready" log line, e.g. "port 8080",
     * "channel chat_service". */
    void (*describe)(void *self, char *buf, size_t len);
    /* Optional: the CivetWeb server (civet/civet_server.h) this component
     * owns and starts, which other components share (the HTTP component's:
     * the WebSocket component serves on the same port). */
    struct daebus__civet_server *(*civet_server)(void *self);
} daebus__component_ops;

typedef struct daebus__component {
    const daebus__component_ops *ops;
    void *self;
    daebus_app *app; /* set on successful attach */
    int started;
} daebus__component;

/* Attaches c to app. Checks: one component of each kind (DAEBUS_EEXIST),
 * websocket only after http (DAEBUS_EORDER), not while running (DAEBUS_ESTATE).
 * Ownership: the app takes c->self on every path: on failure (app NULL
 * included) it is destroyed through c->ops->destroy, except when c itself is
 * attached already (DAEBUS_EEXIST, still owned by the app). Each failure is
 * logged with what to do. */
int daebus__app_attach(daebus_app *app, daebus__component *c);

/* Returns: the self pointer of the attached component of kind, or NULL. */
void *daebus__app_component(const daebus_app *app, int kind);

/* Returns: the CivetWeb server of the attached component that owns one (the
 * HTTP component), or NULL. Components reserve threads and set options on it
 * when they attach, and use its context once it started (in their start).
 * Thread: the app's owning thread. */
struct daebus__civet_server *daebus__app_civet_server(const daebus_app *app);

/* Returns: the port the attached HTTP component listens on (once started),
 * else -1. Thread: callable from any thread. */
int daebus__app_http_bound_port(const daebus_app *app);

/* A merged registration, as components see it. */
typedef struct daebus__handler {
    const daebus_handler_desc *desc;
    const char *key;       /* effective key: route prefix applied; NULL for keyless kinds */
    unsigned methods;      /* routes: methods still served by this entry (never 0) */
    const char *blueprint; /* name of the blueprint it came from */
} daebus__handler;

/* Returns: the number of entries of kind and sets *out to the array (borrowed;
 * stable while the app runs; registration order, later winners last). */
size_t daebus__app_handlers(const daebus_app *app, int kind, const daebus__handler **out);

/* Blueprints the macros linked handlers into (blueprint.c), through
 * daebus_blueprint.internal_.next_defined. */
extern daebus_blueprint *daebus__blueprints_defined;

#endif
