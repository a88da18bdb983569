/* daebus/blueprint.h - handler registration: blueprints and the decorator macros.
 *
 * A blueprint groups handlers of every kind (routes, actions, socket message
 * types, listeners, background tasks, threads, start-up hooks).
 * daebus_app_register_blueprint() merges it into an app. Handlers written with
 * the macros below and no .bp option land in the app's default blueprint,
 * daebus_default_blueprint, which every app registers when it is created.
 *
 * The macros define the handler in place, like a Python decorator:
 *
 *   ROUTE(get_rooms, "/api/rooms") {
 *       daebus_http_send_json_take(res, 200, cJSON_CreateObject());
 *       return 0;
 *   }
 *   ACTION(get_status, "get_status", .bp = &admin_bp) { ... }
 *
 * Each macro generates a static descriptor and a constructor that only links
 * the descriptor into its blueprint (no allocation, no logging). Validation,
 * prefixes and "later one wins" warnings happen at register time. The macros
 * are sugar over daebus_blueprint_add_*(), which work at run time too.
 *
 * Linking: a static library drops objects nothing references. The blueprint
 * object that main() passes to daebus_app_register_blueprint() is the anchor
 * that pulls its file in, so keep one blueprint per .c file and its handlers
 * in that file.
 *
 * Parameter names the macros give each handler kind:
 *   ROUTE             req (daebus_http_request *), res (daebus_http_response *)
 *   SOCKET*           req (daebus_ws_request *), client_id (const char *)
 *   ACTION            req (daebus_bus_request *), payload (const cJSON *)
 *   LISTEN            req (daebus_bus_request *), message (const cJSON *)
 *   BACKGROUND        task (daebus_task *)
 *   THREAD            thread (daebus_thread *)
 *   ON_START          app (daebus_app *)
 * and all of them user (void *, the .user option).
 *
 * Registration is not thread-safe: register before daebus_app_run().
 * Thread: before the app runs.
 */
#ifndef DAEBUS_BLUEPRINT_H
#define DAEBUS_BLUEPRINT_H

#include <stdbool.h>
#include <stddef.h>
#include <cjson/cJSON.h>
#include "daebus/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- handler context types (defined by their components) ---- */
typedef struct daebus_app daebus_app;
typedef struct daebus_blueprint daebus_blueprint;
typedef struct daebus_http_request daebus_http_request;
typedef struct daebus_http_response daebus_http_response;
typedef struct daebus_ws_request daebus_ws_request;
typedef struct daebus_bus_request daebus_bus_request;
typedef struct daebus_task daebus_task;
typedef struct daebus_thread daebus_thread;

/* ---- handler signatures ---- */

/* HTTP route. Runs on a CivetWeb worker thread. Answer through res (http.h).
 * Returns: 0; a negative value with nothing sent yet makes a 500 response. */
typedef int daebus_route_fn(daebus_http_request *req, daebus_http_response *res, void *user);

/* WebSocket message, connect, disconnect and register handler. Runs on the
 * client's CivetWeb thread. Ownership: the returned JSON (may be NULL: send
 * nothing) is taken by the framework on every path and sent as
 * {"type":"response","data":...}. See websocket.h for failing and rejecting. */
typedef cJSON *daebus_socket_fn(daebus_ws_request *req, const char *client_id, void *user);

/* Bus action. Runs on a bus worker thread. payload is borrowed until return.
 * Reply with the functions of bus.h. Returns: 0; negative = failure (an error
 * reply is sent if no final reply was). */
typedef int daebus_action_fn(daebus_bus_request *req, const cJSON *payload, void *user);

/* Channel listener. Runs on a bus worker thread. message is the whole
 * published object, borrowed until return. Returns: 0 or negative (logged). */
typedef int daebus_listen_fn(daebus_bus_request *req, const cJSON *message, void *user);

/* Periodic task. Runs on a scheduler worker thread. Returns: 0 or negative
 * (logged with the task's name; the schedule goes on). */
typedef int daebus_task_fn(daebus_task *task, void *user);

/* Long-running thread. Runs on a thread of its own until it returns; it should
 * poll daebus_thread_is_running() or sleep with daebus_thread_sleep(). */
typedef void daebus_thread_fn(daebus_thread *thread, void *user);

/* Start-up hook. Runs on the thread that called daebus_app_run(), after every
 * component started. Returns: 0, or negative to abort start-up. */
typedef int daebus_on_start_fn(daebus_app *app, void *user);

/* Called with the .user pointer when the registration is dropped. */
typedef void daebus_user_free_fn(void *user);

typedef enum daebus_handler_kind {
    DAEBUS_HANDLER_ROUTE = 1,
    DAEBUS_HANDLER_SOCKET,            /* key: message type ("register" for SOCKET_REGISTER) */
    DAEBUS_HANDLER_SOCKET_CONNECT,    /* key: NULL */
    DAEBUS_HANDLER_SOCKET_DISCONNECT, /* key: NULL */
    DAEBUS_HANDLER_ACTION,            /* key: action name */
    DAEBUS_HANDLER_LISTEN,            /* key: channel */
    DAEBUS_HANDLER_BACKGROUND,        /* key: task name */
    DAEBUS_HANDLER_THREAD,            /* key: thread name */
    DAEBUS_HANDLER_ON_START,          /* key: NULL */
    DAEBUS_HANDLER_KIND_COUNT
} daebus_handler_kind;

/* HTTP methods for the .methods option (a bit mask; 0 means GET). */
enum {
    DAEBUS_GET = 1u << 0,
    DAEBUS_POST = 1u << 1,
    DAEBUS_PUT = 1u << 2,
    DAEBUS_PATCH = 1u << 3,
    DAEBUS_DELETE = 1u << 4,
    DAEBUS_OPTIONS = 1u << 5,
    DAEBUS_HEAD = 1u << 6
};

/* Options shared by every handler kind; zero means default. */
typedef struct daebus_handler_options {
    daebus_blueprint *bp;           /* macros only: target blueprint (NULL = default) */
    unsigned methods;               /* ROUTE: DAEBUS_GET | DAEBUS_POST ... (0 = GET) */
    bool run_at_start;              /* BACKGROUND: first run at start, not after one interval */
    bool no_auto_start;             /* THREAD: do not start with the app */
    bool once;                      /* LISTEN: one replica of the service takes each message
                                       (a queue group); without it every replica gets every
                                       message (docs/replicas.md) */
    void *user;                     /* passed to the handler as user */
    daebus_user_free_fn *user_free; /* called on user when the registration is dropped */
    int sentinel_;                  /* keeps the option list non-empty; ignore */
} daebus_handler_options;

#define DAEBUS_HANDLER_OPTIONS_INIT                                                                \
    {                                                                                              \
        0                                                                                          \
    }

/* Framework bookkeeping that has to sit inside the public types below because
 * the macros define them statically (no allocation before main). PRIVATE:
 * the macros leave it zero, applications never read or write it, and its
 * members may change in any release. */
typedef struct daebus__desc_internal {
    struct daebus_handler_desc *next; /* the blueprint's static or run-time list */
    int owned;                        /* 1 = heap copy owned by its blueprint */
} daebus__desc_internal;

typedef struct daebus__blueprint_internal {
    struct daebus_handler_desc *static_head;  /* macro registrations */
    struct daebus_handler_desc *dynamic_head; /* daebus_blueprint_add_* registrations */
    int heap;                                 /* made by daebus_blueprint_create() */
    struct daebus_blueprint *next_defined;    /* every blueprint a macro linked into */
    int defined;
} daebus__blueprint_internal;

/* A handler registration. Public only so that the macros can build it
 * statically; treat the fields as read-only. */
typedef struct daebus_handler_desc {
    int kind;        /* daebus_handler_kind */
    const char *key; /* path, type, action, channel or task name */
    union {
        daebus_route_fn *route;
        daebus_socket_fn *socket;
        daebus_action_fn *action;
        daebus_listen_fn *listen;
        daebus_task_fn *task;
        daebus_thread_fn *thread;
        daebus_on_start_fn *on_start;
    } fn;
    double interval; /* BACKGROUND: seconds */
    daebus_handler_options opts;
    const char *file; /* registration site, for ordering and conflict messages */
    int line;
    daebus__desc_internal internal_; /* private (see above) */
} daebus_handler_desc;

/* A blueprint. Define static ones with DAEBUS_BLUEPRINT(); create others with
 * daebus_blueprint_create(). Treat the fields as read-only. */
struct daebus_blueprint {
    const char *name;   /* for log messages */
    const char *prefix; /* route prefix, e.g. "/admin" (NULL = none) */
    const char *file;   /* DAEBUS_BLUEPRINT's site, for the "never registered" warning */
    int line;
    daebus__blueprint_internal internal_; /* private (see above) */
};

/* Defines a static blueprint: DAEBUS_BLUEPRINT(chat_bp, "chat", .prefix = "/chat"); */
#define DAEBUS_BLUEPRINT(var, ...)                                                                 \
    daebus_blueprint var = {.name = __VA_ARGS__, .file = __FILE__, .line = __LINE__}
/* Declares one defined in another file (in a header or main.c). */
#define DAEBUS_BLUEPRINT_DECLARE(var) extern daebus_blueprint var

/* The blueprint that macros without .bp fill. */
DAEBUS_API extern daebus_blueprint daebus_default_blueprint;

/* ---- explicit API ---- */

/* Creates an empty blueprint. Ownership: name and prefix (may be NULL) are
 * copied; free with daebus_blueprint_destroy() after the apps that registered
 * it are destroyed. Returns: NULL on allocation failure. */
DAEBUS_API daebus_blueprint *daebus_blueprint_create(const char *name, const char *prefix);

/* Frees a blueprint made by daebus_blueprint_create() and the registrations
 * added to it at run time. Accepts NULL. Static blueprints are left alone. */
DAEBUS_API void daebus_blueprint_destroy(daebus_blueprint *bp);

/* Adds a registration. key is copied; opts may be NULL. If the call fails,
 * user_free is not called; once it succeeds, user_free runs when the
 * blueprint is destroyed. Returns: 0, DAEBUS_EINVAL (NULL fn, bad key, bad
 * interval), DAEBUS_ENOMEM. */
DAEBUS_API int daebus_blueprint_add_route(daebus_blueprint *bp, const char *path,
                                          daebus_route_fn *fn, const daebus_handler_options *opts);
DAEBUS_API int daebus_blueprint_add_socket(daebus_blueprint *bp, const char *type,
                                           daebus_socket_fn *fn,
                                           const daebus_handler_options *opts);
DAEBUS_API int daebus_blueprint_add_socket_connect(daebus_blueprint *bp, daebus_socket_fn *fn,
                                                   const daebus_handler_options *opts);
DAEBUS_API int daebus_blueprint_add_socket_disconnect(daebus_blueprint *bp, daebus_socket_fn *fn,
                                                      const daebus_handler_options *opts);
DAEBUS_API int daebus_blueprint_add_action(daebus_blueprint *bp, const char *name,
                                           daebus_action_fn *fn,
                                           const daebus_handler_options *opts);
DAEBUS_API int daebus_blueprint_add_listen(daebus_blueprint *bp, const char *channel,
                                           daebus_listen_fn *fn,
                                           const daebus_handler_options *opts);
DAEBUS_API int daebus_blueprint_add_background(daebus_blueprint *bp, const char *name,
                                               double interval_seconds, daebus_task_fn *fn,
                                               const daebus_handler_options *opts);
DAEBUS_API int daebus_blueprint_add_thread(daebus_blueprint *bp, const char *name,
                                           daebus_thread_fn *fn,
                                           const daebus_handler_options *opts);
DAEBUS_API int daebus_blueprint_add_on_start(daebus_blueprint *bp, daebus_on_start_fn *fn,
                                             const daebus_handler_options *opts);

/* Number of registrations of kind (0 = all kinds) in bp. */
DAEBUS_API size_t daebus_blueprint_count(const daebus_blueprint *bp, int kind);

/* Used by the macros' constructors: links a static descriptor into
 * desc->opts.bp (or the default blueprint), and that blueprint into the
 * process-wide list of defined blueprints, which daebus_app_run() checks for
 * blueprints nobody registered. Does not allocate or log. */
DAEBUS_API void daebus_blueprint_link_static(daebus_handler_desc *desc);

/* ---- macros ---- */

#define DAEBUS__REGISTER(fn)                                                                       \
    __attribute__((constructor, used)) static void daebus__ctor_##fn(void)                         \
    {                                                                                              \
        daebus_blueprint_link_static(&daebus__desc_##fn);                                          \
    }

#define DAEBUS__DESC(hfn, kind_, key_, member, interval_, ...)                                     \
    static daebus_handler_desc daebus__desc_##hfn = {                                              \
        .kind = (kind_),                                                                           \
        .key = (key_),                                                                             \
        .fn = {.member = hfn},                                                                     \
        .interval = (interval_),                                                                   \
        .opts = {__VA_ARGS__},                                                                     \
        .file = __FILE__,                                                                          \
        .line = __LINE__,                                                                          \
    };                                                                                             \
    DAEBUS__REGISTER(hfn)

#define DAEBUS__ROUTE_SIG(fn)                                                                      \
    static int fn(DAEBUS_UNUSED daebus_http_request *req, DAEBUS_UNUSED daebus_http_response *res, \
                  DAEBUS_UNUSED void *user)
#define DAEBUS__SOCKET_SIG(fn)                                                                     \
    static cJSON *fn(DAEBUS_UNUSED daebus_ws_request *req, DAEBUS_UNUSED const char *client_id,    \
                     DAEBUS_UNUSED void *user)
#define DAEBUS__ACTION_SIG(fn)                                                                     \
    static int fn(DAEBUS_UNUSED daebus_bus_request *req, DAEBUS_UNUSED const cJSON *payload,       \
                  DAEBUS_UNUSED void *user)
#define DAEBUS__LISTEN_SIG(fn)                                                                     \
    static int fn(DAEBUS_UNUSED daebus_bus_request *req, DAEBUS_UNUSED const cJSON *message,       \
                  DAEBUS_UNUSED void *user)
#define DAEBUS__TASK_SIG(fn)                                                                       \
    static int fn(DAEBUS_UNUSED daebus_task *task, DAEBUS_UNUSED void *user)
#define DAEBUS__THREAD_SIG(fn)                                                                     \
    static void fn(DAEBUS_UNUSED daebus_thread *thread, DAEBUS_UNUSED void *user)
#define DAEBUS__ON_START_SIG(fn)                                                                   \
    static int fn(DAEBUS_UNUSED daebus_app *app, DAEBUS_UNUSED void *user)

/* DAEBUS_ROUTE(fn, "/path/<id>", .methods = DAEBUS_GET | DAEBUS_POST, .bp = &bp) */
#define DAEBUS_ROUTE(fn, ...) DAEBUS__ROUTE_(fn, __VA_ARGS__, .sentinel_ = 0)
#define DAEBUS__ROUTE_(fn, path, ...)                                                              \
    DAEBUS__ROUTE_SIG(fn);                                                                         \
    DAEBUS__DESC(fn, DAEBUS_HANDLER_ROUTE, path, route, 0.0, __VA_ARGS__)                          \
    DAEBUS__ROUTE_SIG(fn)

/* DAEBUS_SOCKET(fn, "chat_message") */
#define DAEBUS_SOCKET(fn, ...) DAEBUS__SOCKET_(fn, __VA_ARGS__, .sentinel_ = 0)
#define DAEBUS__SOCKET_(fn, type, ...)                                                             \
    DAEBUS__SOCKET_SIG(fn);                                                                        \
    DAEBUS__DESC(fn, DAEBUS_HANDLER_SOCKET, type, socket, 0.0, __VA_ARGS__)                        \
    DAEBUS__SOCKET_SIG(fn)

/* DAEBUS_SOCKET_REGISTER(fn): the handler of message type "register". */
#define DAEBUS_SOCKET_REGISTER(...) DAEBUS__SOCKET_REGISTER_(__VA_ARGS__, .sentinel_ = 0)
#define DAEBUS__SOCKET_REGISTER_(fn, ...)                                                          \
    DAEBUS__SOCKET_SIG(fn);                                                                        \
    DAEBUS__DESC(fn, DAEBUS_HANDLER_SOCKET, "register", socket, 0.0, __VA_ARGS__)                  \
    DAEBUS__SOCKET_SIG(fn)

#define DAEBUS_SOCKET_CONNECT(...) DAEBUS__SOCKET_CONNECT_(__VA_ARGS__, .sentinel_ = 0)
#define DAEBUS__SOCKET_CONNECT_(fn, ...)                                                           \
    DAEBUS__SOCKET_SIG(fn);                                                                        \
    DAEBUS__DESC(fn, DAEBUS_HANDLER_SOCKET_CONNECT, NULL, socket, 0.0, __VA_ARGS__)                \
    DAEBUS__SOCKET_SIG(fn)

#define DAEBUS_SOCKET_DISCONNECT(...) DAEBUS__SOCKET_DISCONNECT_(__VA_ARGS__, .sentinel_ = 0)
#define DAEBUS__SOCKET_DISCONNECT_(fn, ...)                                                        \
    DAEBUS__SOCKET_SIG(fn);                                                                        \
    DAEBUS__DESC(fn, DAEBUS_HANDLER_SOCKET_DISCONNECT, NULL, socket, 0.0, __VA_ARGS__)             \
    DAEBUS__SOCKET_SIG(fn)

/* DAEBUS_ACTION(fn, "get_status") */
#define DAEBUS_ACTION(fn, ...) DAEBUS__ACTION_(fn, __VA_ARGS__, .sentinel_ = 0)
#define DAEBUS__ACTION_(fn, name, ...)                                                             \
    DAEBUS__ACTION_SIG(fn);                                                                        \
    DAEBUS__DESC(fn, DAEBUS_HANDLER_ACTION, name, action, 0.0, __VA_ARGS__)                        \
    DAEBUS__ACTION_SIG(fn)

/* DAEBUS_LISTEN(fn, "notifications") */
#define DAEBUS_LISTEN(fn, ...) DAEBUS__LISTEN_(fn, __VA_ARGS__, .sentinel_ = 0)
#define DAEBUS__LISTEN_(fn, channel, ...)                                                          \
    DAEBUS__LISTEN_SIG(fn);                                                                        \
    DAEBUS__DESC(fn, DAEBUS_HANDLER_LISTEN, channel, listen, 0.0, __VA_ARGS__)                     \
    DAEBUS__LISTEN_SIG(fn)

/* DAEBUS_BACKGROUND(fn, "system_status", 60.0, .run_at_start = true) */
#define DAEBUS_BACKGROUND(fn, ...) DAEBUS__BACKGROUND_(fn, __VA_ARGS__, .sentinel_ = 0)
#define DAEBUS__BACKGROUND_(fn, name, interval, ...)                                               \
    DAEBUS__TASK_SIG(fn);                                                                          \
    DAEBUS__DESC(fn, DAEBUS_HANDLER_BACKGROUND, name, task, (double)(interval), __VA_ARGS__)       \
    DAEBUS__TASK_SIG(fn)

/* DAEBUS_THREAD(fn, "poller") */
#define DAEBUS_THREAD(fn, ...) DAEBUS__THREAD_(fn, __VA_ARGS__, .sentinel_ = 0)
#define DAEBUS__THREAD_(fn, name, ...)                                                             \
    DAEBUS__THREAD_SIG(fn);                                                                        \
    DAEBUS__DESC(fn, DAEBUS_HANDLER_THREAD, name, thread, 0.0, __VA_ARGS__)                        \
    DAEBUS__THREAD_SIG(fn)

/* DAEBUS_ON_START(fn) */
#define DAEBUS_ON_START(...) DAEBUS__ON_START_(__VA_ARGS__, .sentinel_ = 0)
#define DAEBUS__ON_START_(fn, ...)                                                                 \
    DAEBUS__ON_START_SIG(fn);                                                                      \
    DAEBUS__DESC(fn, DAEBUS_HANDLER_ON_START, NULL, on_start, 0.0, __VA_ARGS__)                    \
    DAEBUS__ON_START_SIG(fn)

#ifndef DAEBUS_NO_SHORT_NAMES
#define BLUEPRINT         DAEBUS_BLUEPRINT
#define ROUTE             DAEBUS_ROUTE
#define SOCKET            DAEBUS_SOCKET
#define SOCKET_CONNECT    DAEBUS_SOCKET_CONNECT
#define SOCKET_DISCONNECT DAEBUS_SOCKET_DISCONNECT
#define SOCKET_REGISTER   DAEBUS_SOCKET_REGISTER
#define ACTION            DAEBUS_ACTION
#define LISTEN            DAEBUS_LISTEN
#define BACKGROUND        DAEBUS_BACKGROUND
#define THREAD            DAEBUS_THREAD
#define ON_START          DAEBUS_ON_START
#endif

#ifdef __cplusplus
}
#endif
#endif
