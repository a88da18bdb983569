/* http.c - the HTTP component: CivetWeb server, route dispatch, requests and responses.
 *
 * One CivetWeb request handler on "/" receives every non-WebSocket request
 * (CivetWeb keeps WebSocket handlers apart, so the WebSocket component can
 * register its own on the same context). The dispatcher splits and decodes the
 * raw path (CivetWeb runs with decode_url=no so that "%2F" stays inside a
 * segment), looks it up in the route trie built at start, reads and checks the
 * body, builds the merged payload, runs middleware and the handler, and turns
 * every failure into the JSON errors of docs/protocol.md section 2. Requests that
 * match no route fall through to the static directory, then to 404.
 *
 * Responses go out through CivetWeb's mg_response_header_* calls, which keep
 * HTTP/1.1 keep-alive working; every non-streamed response has a
 * Content-Length. CORS headers are computed once per request from a
 * reference-counted configuration that daebus_http_set_cors() swaps.
 *
 * Request bodies are read under a deadline in at most max_body_readers
 * slots; a watchdog thread, one per running server (civet/civet.c), shuts the
 * read side of a socket whose deadline passed, which wakes the worker blocked
 * in mg_read (CivetWeb's own time-out applies per read, not per request).
 *
 * This file: the component (options, life cycle, CORS swap, middleware
 * list); http_request.c: one request in stages; http_response.c: responses;
 * http_static.c: static files; http_hooks.c: CivetWeb's callbacks.
 */
#include "daebus/http.h"

#include <civetweb.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include "civet.h"
#include "clock.h"
#include "component.h"
#include "daebus/log.h"
#include "http_cors.h"
#include "http_parse.h"
#include "http_private.h"
#include "http_router.h"

#define DEFAULT_PORT       8080
#define DEFAULT_THREADS    32
#define DEFAULT_MAX_BODY   (1024 * 1024)
#define DEFAULT_TIMEOUT_MS 30000

/* ---- component ---- */

static int http_start(void *self);
static void http_stop(void *self);
static void http_destroy_op(void *self);
static void http_describe(void *self, char *buf, size_t len);
static daebus__civet_server *http_civet_server(void *self);

static const daebus__component_ops http_ops = {
    .name = "http",
    .kind = DAEBUS__COMP_HTTP,
    .attach = NULL,
    .start = http_start,
    .stop = http_stop,
    .destroy = http_destroy_op,
    .describe = http_describe,
    .civet_server = http_civet_server,
};

static char *dup_or_null(const char *s, bool *ok)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *ok = false;
    return d;
}

daebus_http *daebus_http_create(const daebus_http_options *opts, daebus_error *err)
{
    daebus_http_options o = DAEBUS_HTTP_OPTIONS_INIT;
    if (opts)
        o = *opts;
    if (o.port < DAEBUS_HTTP_PORT_ANY || o.port > 65535) {
        daebus_error_set(err, DAEBUS_EINVAL, "http: port %d out of range (0..65535)", o.port);
        return NULL;
    }
    if (o.static_prefix && o.static_prefix[0] != '/') {
        daebus_error_set(err, DAEBUS_EINVAL, "http: static_prefix must start with '/'");
        return NULL;
    }
    if (o.max_json_depth < 0 || o.max_json_depth > DAEBUS__HTTP_MAX_JSON_DEPTH) {
        daebus_error_set(err, DAEBUS_EINVAL,
                         "http: max_json_depth must be 0..%d (parsing recurses on CivetWeb's "
                         "small worker stacks)",
                         DAEBUS__HTTP_MAX_JSON_DEPTH);
        return NULL;
    }
    daebus_http *h = calloc(1, sizeof *h);
    if (!h) {
        daebus_error_set(err, DAEBUS_ENOMEM, "out of memory");
        return NULL;
    }
    h->comp.ops = &http_ops;
    h->comp.self = h;
    h->port = o.port == 0 ? DEFAULT_PORT : o.port == DAEBUS_HTTP_PORT_ANY ? 0 : o.port;
    int threads = o.num_threads > 0 ? o.num_threads : DEFAULT_THREADS;
    h->max_body = o.max_body_size ? o.max_body_size : DEFAULT_MAX_BODY;
    h->max_json_depth = o.max_json_depth ? o.max_json_depth : 100;
    h->access_log = o.access_log;
    h->timeout_ms = o.request_timeout_ms > 0 ? o.request_timeout_ms : DEFAULT_TIMEOUT_MS;
    h->max_body_readers = o.max_body_readers > 0 ? o.max_body_readers
                          : threads / 2 > 0      ? threads / 2
                                                 : 1;
    pthread_mutex_init(&h->cors_lock, NULL);
    int rc = daebus__civet_server_init(&h->server, o.bind_address ? o.bind_address : "0.0.0.0",
                                       threads, o.ssl_certificate != NULL);
    if (rc == 0)
        rc = daebus__civet_deadlines_init(&h->readers, h->max_body_readers);
    if (rc != 0) {
        daebus_error_set(err, DAEBUS_ENOMEM, "out of memory");
        daebus_http_destroy(h);
        return NULL;
    }
    bool ok = true;
    h->ssl_certificate = dup_or_null(o.ssl_certificate, &ok);
    h->static_dir = dup_or_null(o.static_dir, &ok);
    h->static_prefix = dup_or_null(o.static_prefix ? o.static_prefix : "/", &ok);
    if (!ok) {
        daebus_error_set(err, DAEBUS_ENOMEM, "out of memory");
        daebus_http_destroy(h);
        return NULL;
    }
    if (o.cors) {
        rc = daebus__http_cors_build(o.cors, &h->cors, err);
        if (rc) {
            daebus_http_destroy(h);
            return NULL;
        }
    }
    return h;
}

int daebus_http_attach(daebus_http *http, daebus_app *app)
{
    if (!http) {
        daebus_log(DAEBUS_LOG_ERROR, "http",
                   "attach: the component is NULL (did daebus_http_create fail?)");
        return DAEBUS_EINVAL;
    }
    int rc = daebus__app_attach(app, &http->comp);
    if (rc == 0)
        http->app = app;
    return rc;
}

static void http_free(daebus_http *h)
{
    daebus__http_router_destroy(h->router);
    daebus__http_cors_unref(h->cors);
    pthread_mutex_destroy(&h->cors_lock);
    daebus__civet_deadlines_destroy(&h->readers);
    free(h->mw);
    daebus__civet_server_destroy(&h->server);
    free(h->ssl_certificate);
    free(h->static_dir);
    free(h->static_root);
    free(h->static_prefix);
    free(h);
}

void daebus_http_destroy(daebus_http *http)
{
    if (!http)
        return;
    if (http->comp.app) {
        daebus_log(DAEBUS_LOG_ERROR, "http",
                   "daebus_http_destroy: this component is attached; the app destroys it");
        return;
    }
    http_free(http);
}

static void http_destroy_op(void *self)
{
    daebus_http *h = self;
    if (daebus__civet_server_context(&h->server))
        http_stop(h);
    http_free(h);
}

int daebus_http_port(const daebus_http *http)
{
    return http ? daebus__civet_server_port(&http->server) : -1;
}

static daebus__civet_server *http_civet_server(void *self)
{
    daebus_http *h = self;
    return &h->server;
}

int daebus_http_get_stats(const daebus_http *http, daebus_http_stats *out)
{
    if (!http || !out)
        return DAEBUS_EINVAL;
    out->requests_total = atomic_load(&http->st_requests);
    out->responses_2xx = atomic_load(&http->st_class[2]);
    out->responses_3xx = atomic_load(&http->st_class[3]);
    out->responses_4xx = atomic_load(&http->st_class[4]);
    out->responses_5xx = atomic_load(&http->st_class[5]);
    out->in_flight = atomic_load(&http->st_in_flight);
    out->bytes_in = atomic_load(&http->st_bytes_in);
    out->bytes_out = atomic_load(&http->st_bytes_out);
    out->request_timeouts = atomic_load(&http->st_timeouts);
    out->busy_refusals = atomic_load(&http->st_busy);
    return 0;
}

/* ---- CORS configuration ---- */

static void cors_swap(daebus_http *http, daebus__http_cors *next)
{
    pthread_mutex_lock(&http->cors_lock);
    daebus__http_cors *old = http->cors;
    http->cors = next;
    pthread_mutex_unlock(&http->cors_lock);
    daebus__http_cors_unref(old);
}

daebus__http_cors *daebus__http_cors_current(daebus_http *http)
{
    pthread_mutex_lock(&http->cors_lock);
    daebus__http_cors *c = daebus__http_cors_ref(http->cors);
    pthread_mutex_unlock(&http->cors_lock);
    return c;
}

int daebus_http_set_cors(daebus_http *http, const daebus_http_cors *cors)
{
    if (!http)
        return DAEBUS_EINVAL;
    daebus_error err = {0};
    daebus__http_cors *next;
    int rc = daebus__http_cors_build(cors, &next, &err);
    if (rc) {
        daebus_log(DAEBUS_LOG_ERROR, "http", "set_cors: %s", err.message);
        return rc;
    }
    cors_swap(http, next);
    return 0;
}

int daebus_http_set_cors_json(daebus_http *http, const cJSON *config)
{
    if (!http)
        return DAEBUS_EINVAL;
    daebus_error err = {0};
    daebus__http_cors *next;
    int rc = daebus__http_cors_build_json(config, &next, &err);
    if (rc) {
        daebus_log(DAEBUS_LOG_ERROR, "http", "set_cors_json: %s", err.message);
        return rc;
    }
    cors_swap(http, next);
    return 0;
}

/* ---- middleware ---- */

static int add_mw(daebus_http *http, const daebus_blueprint *bp, daebus_http_middleware_fn *fn,
                  void *user)
{
    if (!http || !fn) {
        daebus_log(DAEBUS_LOG_ERROR, "http", "use: http and fn are required");
        return DAEBUS_EINVAL;
    }
    if (daebus__civet_server_context(&http->server)) {
        daebus_log(DAEBUS_LOG_ERROR, "http", "use: add middleware before daebus_app_run()");
        return DAEBUS_ESTATE;
    }
    daebus__http_mw *bigger = realloc(http->mw, (http->nmw + 1) * sizeof *bigger);
    if (!bigger)
        return DAEBUS_ENOMEM;
    http->mw = bigger;
    http->mw[http->nmw++] = (daebus__http_mw){fn, user, bp};
    return 0;
}

int daebus_http_use(daebus_http *http, daebus_http_middleware_fn *fn, void *user)
{
    return add_mw(http, NULL, fn, user);
}

int daebus_http_use_blueprint(daebus_http *http, const daebus_blueprint *bp,
                              daebus_http_middleware_fn *fn, void *user)
{
    if (!bp) {
        daebus_log(DAEBUS_LOG_ERROR, "http",
                   "use_blueprint: bp is required (or use daebus_http_use)");
        return DAEBUS_EINVAL;
    }
    return add_mw(http, bp, fn, user);
}

/* ---- refusal notes ---- */

void daebus__http_note(daebus_http *h, int note, const char *fmt, ...)
{
    long missed = daebus__ratelimit_pass(&h->note_rl[note], daebus__now_mono(), 1.0);
    if (missed < 0)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (missed > 0)
        daebus_log(DAEBUS_LOG_WARNING, "http", "%s (and %ld more like it in the last second)", msg,
                   missed);
    else
        daebus_log(DAEBUS_LOG_WARNING, "http", "%s", msg);
}

/* ---- start and stop ---- */

static int log_message(const struct mg_connection *conn, const char *message)
{
    (void)conn;
    daebus_log(DAEBUS_LOG_WARNING, "http", "civetweb: %s", message);
    return 1;
}

static int build_router(daebus_http *h)
{
    h->router = daebus__http_router_create();
    if (!h->router)
        return DAEBUS_ENOMEM;
    const daebus__handler *items;
    size_t n = daebus__app_handlers(h->app, DAEBUS_HANDLER_ROUTE, &items);
    for (size_t i = 0; i < n; i++) {
        daebus_error err = {0};
        const daebus_handler_desc *d = items[i].desc;
        unsigned methods = items[i].methods ? items[i].methods : DAEBUS_GET;
        int rc = daebus__http_router_add(h->router, items[i].key, methods, &items[i], &err);
        if (rc) {
            daebus_log(DAEBUS_LOG_ERROR, "http", "%s (registered at %s:%d)", err.message,
                       d->file ? d->file : "?", d->line);
            return rc;
        }
    }
    return 0;
}

/* The HTTP component's CivetWeb options (the server adds the port, the
 * threads and what other components set), and the text they point into. */
typedef struct start_options {
    char timeout[16], keepalive[16];
    const char *v[24];
} start_options;

static void build_options(const daebus_http *h, start_options *so)
{
    snprintf(so->timeout, sizeof so->timeout, "%d", h->timeout_ms);
    /* An idle keep-alive connection holds a worker thread: keep it short. */
    snprintf(so->keepalive, sizeof so->keepalive, "%d",
             h->timeout_ms < 5000 ? h->timeout_ms : 5000);
    const char **o = so->v;
    int k = 0;
    o[k++] = "enable_keep_alive";
    o[k++] = "yes";
    o[k++] = "keep_alive_timeout_ms";
    o[k++] = so->keepalive;
    o[k++] = "tcp_nodelay";
    o[k++] = "1";
    o[k++] = "request_timeout_ms";
    o[k++] = so->timeout;
    o[k++] = "decode_url";
    o[k++] = "no";
    /* CORS is ours: keep CivetWeb from answering preflights itself. */
    o[k++] = "access_control_allow_methods";
    o[k++] = "";
    o[k++] = "access_control_allow_origin";
    o[k++] = "";
    if (h->ssl_certificate) {
        o[k++] = "ssl_certificate";
        o[k++] = h->ssl_certificate;
    }
    o[k] = NULL;
}

/* What must hold before CivetWeb starts: the static directory exists, TLS
 * works, the routes build. Returns: 0 or an error (logged). */
static int prepare_start(daebus_http *h)
{
    if (h->static_dir) {
        h->static_root = realpath(h->static_dir, NULL);
        if (!h->static_root) {
            daebus_log(DAEBUS_LOG_ERROR, "http", "static_dir \"%s\": %s", h->static_dir,
                       strerror(errno));
            return DAEBUS_EINVAL;
        }
    }
    char why[256];
    if (h->ssl_certificate && daebus__civet_tls_broken(why, sizeof why)) {
        daebus_log(DAEBUS_LOG_ERROR, "http",
                   "ssl_certificate is set but TLS is unusable: %s. Serve plain HTTP behind a "
                   "TLS-terminating reverse proxy (docs/operations.md)",
                   why);
        return DAEBUS_ESTATE;
    }
    return build_router(h);
}

/* Starts CivetWeb on port. Returns: 0, DAEBUS_EADDRINUSE or DAEBUS_EIO (logged). */
static int start_civet(daebus_http *h, int port)
{
    start_options so;
    build_options(h, &so);
    struct mg_callbacks cb;
    memset(&cb, 0, sizeof cb);
    cb.log_message = log_message;
    cb.begin_request = daebus__http_begin_request;
    cb.connection_close = daebus__http_connection_close;
    cb.init_connection = daebus__http_init_connection;
    return daebus__civet_server_start(&h->server, port, so.v, &cb, h);
}

static int http_start(void *self)
{
    daebus_http *h = self;
    int port = h->port;
    int app_port = daebus_app_http_port(h->app); /* 0 = not configured */
    if (app_port != 0)
        port = app_port == DAEBUS_PORT_ANY ? 0 : app_port;
    atomic_store(&h->draining, 0);
    int rc = prepare_start(h);
    if (rc == 0)
        rc = daebus__civet_deadlines_start(&h->readers);
    if (rc == 0)
        rc = start_civet(h, port);
    if (rc) {
        daebus__civet_deadlines_stop(&h->readers);
        daebus__http_router_destroy(h->router);
        h->router = NULL;
        free(h->static_root);
        h->static_root = NULL;
        return rc;
    }
    mg_set_request_handler(daebus__civet_server_context(&h->server), "/", daebus__http_dispatch, h);
    daebus_log(DAEBUS_LOG_INFO, "http", "listening on %s:%d%s (%zu routes, %d threads)",
               h->server.bind_address, daebus__civet_server_port(&h->server),
               h->ssl_certificate ? " (TLS)" : "", daebus__http_router_count(h->router),
               daebus__civet_server_threads(&h->server));
    return 0;
}

/* CivetWeb stops writing as soon as mg_stop begins: let the requests in
 * flight finish first (up to the app's shutdown time-out), answering new
 * ones 503 meanwhile. */
static void drain(daebus_http *h)
{
    atomic_store(&h->draining, 1);
    if (atomic_load(&h->st_in_flight) == 0)
        return;
    double limit = h->app ? daebus_app_shutdown_timeout(h->app) : 5.0;
    daebus__deadline end = daebus__deadline_in(limit);
    while (atomic_load(&h->st_in_flight) > 0 && !daebus__deadline_passed(end))
        usleep(5000);
    uint64_t left = atomic_load(&h->st_in_flight);
    if (left)
        daebus_log(DAEBUS_LOG_WARNING, "http", "stopping with %llu requests still running",
                   (unsigned long long)left);
}

static void http_stop(void *self)
{
    daebus_http *h = self;
    if (daebus__civet_server_context(&h->server)) {
        drain(h);
        daebus__civet_server_stop(&h->server);
    }
    daebus__civet_deadlines_stop(&h->readers);
    daebus__http_router_destroy(h->router);
    h->router = NULL;
    free(h->static_root);
    h->static_root = NULL;
}

static void http_describe(void *self, char *buf, size_t len)
{
    daebus_http *h = self;
    snprintf(buf, len, "http port %d", daebus__civet_server_port(&h->server));
}
