/* daebus/http.h - HTTP server (CivetWeb): routes, requests, responses, CORS, static files,
 * middleware.
 *
 *   daebus_http_options o = DAEBUS_HTTP_OPTIONS_INIT;
 *   o.port = 8080;
 *   o.static_dir = "./public";              // GET / serves ./public/index.html
 *   daebus_http *http = daebus_http_create(&o, NULL);
 *   daebus_http_attach(http, app);
 *
 *   ROUTE(get_device, "/devices/<device_id>", .methods = DAEBUS_GET | DAEBUS_PUT) {
 *       cJSON *out = cJSON_CreateObject();
 *       cJSON_AddStringToObject(out, "id", daebus_http_request_param(req, "device_id"));
 *       return daebus_http_send_json_take(res, 200, out);
 *   }
 *
 * Routes come from the app's merged ROUTE registrations when the component
 * starts. Patterns are Flask-style: "<name>" matches one non-empty segment,
 * "<int:name>" an integer segment ("-12"), "<float:name>" a decimal number
 * segment ("2.5", "-3", "1e3"), "<path:name>" the rest of the path (last
 * segment only); a literal segment beats a parameter. The path is split at
 * its raw slashes before each segment is percent-decoded, so "%2F" stays
 * inside its parameter ("/rooms/a%2Fb" gives room = "a/b"). In the payload,
 * <int:> and <float:> parameters are JSON numbers, the others strings;
 * daebus_http_request_param() returns the text of any of them.
 *
 * Every request gets a JSON payload (daebus_http_request_payload): the query
 * parameters, then the fields of a JSON object body or of an urlencoded form
 * body (POST, PUT, PATCH, DELETE), then the route parameters, later sources
 * overwriting earlier ones. A JSON body that is not an object (a list, a
 * number) becomes the payload itself. Invalid UTF-8 or a JSON body that does
 * not parse, or nests deeper than max_json_depth, is answered 400 before the
 * handler runs; a body larger than max_body_size is answered 413. A request
 * must arrive whole within request_timeout_ms (else 408), its body must match
 * its one Content-Length (else 400), and at most max_body_readers bodies are
 * read at once (else 503 with Retry-After): all before any handler runs.
 *
 * Errors are JSON: 404 {"error": "Not Found", "path": "<path as sent>"}, 405
 * {"error": "Method Not Allowed", "path": ...} with Allow, 400/413
 * {"error": "<reason>"}, 500 {"error": "Internal server error"} (detail in the
 * log only). A handler that returns a negative value before sending anything
 * gets the 500; one that returns 0 without sending gets 204 No Content.
 * HEAD is served by GET routes (without the body); OPTIONS is answered
 * automatically (204 with Allow, and the CORS preflight headers when CORS is
 * on) unless a route registers OPTIONS itself.
 *
 * Thread model: route handlers and middleware run on CivetWeb worker threads,
 * many at once. A request and its response belong to the thread running the
 * handler and are valid until the handler returns. create/attach/use/destroy
 * are not thread-safe (call them before daebus_app_run()); daebus_http_port,
 * daebus_http_get_stats and the daebus_http_set_cors* functions may be called
 * from any thread at any time.
 *
 * Ownership: strings given in options are copied at create. Strings returned by
 * request accessors are owned by the request (valid until the handler returns).
 */
#ifndef DAEBUS_HTTP_H
#define DAEBUS_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "daebus/app.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- configuration ---- */

/* CORS configuration, with the Python framework's keys. Lists are
 * comma-separated strings ("https://a.example, https://b.example").
 * allowed_origins NULL or "" turns CORS off (no CORS headers at all). */
typedef struct daebus_http_cors {
    const char *allowed_origins; /* list, or "*" for every origin */
    const char *allowed_methods; /* list; NULL = the methods of the matched route */
    const char *allowed_headers; /* list, or "*" (echoes the requested headers); NULL = none */
    const char *expose_headers;  /* list; NULL = none */
    bool allow_credentials;      /* send Access-Control-Allow-Credentials: true */
    int max_age;                 /* preflight cache seconds; <= 0 = not sent */
} daebus_http_cors;

/* options.port: let the kernel pick a free port (the same as DAEBUS_PORT_ANY, config.h). */
#define DAEBUS_HTTP_PORT_ANY DAEBUS_PORT_ANY

typedef struct daebus_http_options {
    int port;                 /* 0 = 8080; DAEBUS_PORT_ANY = a free port. The app's
                                 http_port, --port and DAEBUS_HTTP_PORT override it
                                 ("--port 0" = a free port) */
    const char *bind_address; /* NULL = "0.0.0.0" */
    int num_threads;          /* CivetWeb worker threads = open connections served at once;
                                 <= 0 = 32 (plus threads reserved by the WebSocket component) */
    size_t max_body_size;     /* bytes; 0 = 1 MiB. Larger bodies get 413 */
    /* PEM file (certificate + key): serve HTTPS; NULL = plain. Debian 12's CivetWeb
     * 1.15 crashes on TLS handshakes with OpenSSL 3: start-up then fails with
     * DAEBUS_ESTATE and says so; terminate TLS at a proxy (docs/operations.md). */
    const char *ssl_certificate;
    bool access_log;              /* one info line per request ("http" component) */
    int request_timeout_ms;       /* a whole request (headers and body) must arrive within
                                     this time, or 408 and the connection closed; <= 0 =
                                     30000 (docs/operations.md, "Limits: HTTP bodies") */
    const char *static_dir;       /* serve files from this directory; NULL = none */
    const char *static_prefix;    /* URL prefix of static_dir; NULL = "/" */
    const daebus_http_cors *cors; /* NULL = CORS off (copied) */
    int max_json_depth;   /* JSON bodies nested deeper get 400 {"error": "JSON body nested too
                           deeply (max N levels)"}; 0 = 100; at most 512 (cJSON recurses on
                           CivetWeb's small worker stacks) */
    int max_body_readers; /* request bodies read at once (each holds a worker thread while
                             it arrives); more get 503 with Retry-After and the connection
                             closed; <= 0 = half of num_threads (at least 1) */
} daebus_http_options;

#define DAEBUS_HTTP_OPTIONS_INIT                                                                   \
    {                                                                                              \
        0                                                                                          \
    }

/* ---- handler-side types ---- */

/* Middleware: runs before the route handler (and before static files) of
 * every matching request, in registration order. To stop the request, send a
 * response (e.g. daebus_http_send_error(res, 401, "unauthorized")) and return
 * 0; the route then does not run. To pass, return 0 without sending.
 * Returns: 0; negative = failure (500 unless something was sent). */
typedef int daebus_http_middleware_fn(daebus_http_request *req, daebus_http_response *res,
                                      void *user);

/* The counters (X, F: see DAEBUS_STATS_FIELD in app.h). requests_total:
 * requests whose response was sent; in_flight: being handled right now;
 * bytes_in / bytes_out: request / response bodies; request_timeouts: 408
 * answers (request_timeout_ms passed before the body was in); busy_refusals:
 * 503 answers (max_body_readers bodies were being read). Both are also in
 * responses_4xx / responses_5xx. */
#define DAEBUS_HTTP_STATS(X, F)                                                                    \
    X(uint64_t, requests_total, "daebus_http_requests_total", "", "counter",                       \
      "HTTP requests answered.")                                                                   \
    X(uint64_t, responses_2xx, "daebus_http_responses_total", "class=\"2xx\"", "counter",          \
      "HTTP responses by status class.")                                                           \
    X(uint64_t, responses_3xx, "daebus_http_responses_total", "class=\"3xx\"", "counter",          \
      "HTTP responses by status class.")                                                           \
    X(uint64_t, responses_4xx, "daebus_http_responses_total", "class=\"4xx\"", "counter",          \
      "HTTP responses by status class.")                                                           \
    X(uint64_t, responses_5xx, "daebus_http_responses_total", "class=\"5xx\"", "counter",          \
      "HTTP responses by status class.")                                                           \
    X(uint64_t, in_flight, "daebus_http_in_flight", "", "gauge", "HTTP requests being handled.")   \
    X(uint64_t, bytes_in, "daebus_http_received_bytes_total", "", "counter",                       \
      "HTTP request body bytes.")                                                                  \
    X(uint64_t, bytes_out, "daebus_http_sent_bytes_total", "", "counter",                          \
      "HTTP response body bytes.")                                                                 \
    X(uint64_t, request_timeouts, "daebus_http_request_timeouts_total", "", "counter",             \
      "Requests answered 408: not arrived within request_timeout_ms.")                             \
    X(uint64_t, busy_refusals, "daebus_http_busy_refusals_total", "", "counter",                   \
      "Requests answered 503: max_body_readers bodies being read already.")

typedef struct daebus_http_stats {
    DAEBUS_HTTP_STATS(DAEBUS_STATS_FIELD, DAEBUS_STATS_PLAIN_FIELD)
} daebus_http_stats;

/* ---- life cycle ---- */

/* Creates an HTTP component (not yet attached). opts may be NULL (defaults).
 * Ownership: option strings and the CORS struct are copied.
 * Returns: NULL on bad options or allocation failure (err filled).
 * Thread: callable from any thread. */
DAEBUS_API daebus_http *daebus_http_create(const daebus_http_options *opts, daebus_error *err);

/* Attaches http to app.
 * Ownership: attach takes http on every path: on failure (app NULL included) it
 * is destroyed, so the caller never frees it. Passing http NULL (a failed create)
 * returns DAEBUS_EINVAL, so "attach(create(...), app)" needs no check.
 * Returns: 0, DAEBUS_EEXIST (an HTTP component is attached already),
 * DAEBUS_ESTATE (app running), DAEBUS_EINVAL.
 * Thread: before the app runs. */
DAEBUS_API int daebus_http_attach(daebus_http *http, daebus_app *app);

/* Frees a component that was never attached (attached ones are freed by the
 * app). Accepts NULL.
 * Thread: before the app runs. */
DAEBUS_API void daebus_http_destroy(daebus_http *http);

/* Returns: the port the server listens on while running (the real one when
 * DAEBUS_PORT_ANY or --port 0 was asked), else -1.
 * Thread: callable from any thread. */
DAEBUS_API int daebus_http_port(const daebus_http *http);

/* Fills out with the counters. Returns: 0 or DAEBUS_EINVAL.
 * Thread: callable from any thread. */
DAEBUS_API int daebus_http_get_stats(const daebus_http *http, daebus_http_stats *out);

/* Replaces the CORS configuration (NULL = CORS off). Takes effect for requests
 * that start afterwards. Ownership: copied.
 * Returns: 0, DAEBUS_EINVAL, DAEBUS_ENOMEM.
 * Thread: callable from any thread. */
DAEBUS_API int daebus_http_set_cors(daebus_http *http, const daebus_http_cors *cors);

/* The same from a JSON object with the Python keys: allowed_origins,
 * allowed_methods, allowed_headers, expose_headers (each a string or a list of
 * strings), allow_credentials (bool), max_age (number). An empty object or
 * NULL turns CORS off. Ownership: borrowed.
 * Returns: 0, DAEBUS_EINVAL (wrong types; logged), DAEBUS_ENOMEM.
 * Thread: callable from any thread. */
DAEBUS_API int daebus_http_set_cors_json(daebus_http *http, const cJSON *config);

/* Adds middleware run before every route (and static file). user is passed
 * to fn. Returns: 0, DAEBUS_EINVAL, DAEBUS_ESTATE (running), DAEBUS_ENOMEM.
 * Thread: before the app runs. */
DAEBUS_API int daebus_http_use(daebus_http *http, daebus_http_middleware_fn *fn, void *user);

/* Adds middleware run only before the routes registered through bp (routes
 * whose .bp is bp, or that daebus_blueprint_add_route added to bp).
 * Ownership: bp borrowed, must outlive the app.
 * Returns: 0, DAEBUS_EINVAL, DAEBUS_ESTATE, DAEBUS_ENOMEM.
 * Thread: before the app runs. */
DAEBUS_API int daebus_http_use_blueprint(daebus_http *http, const daebus_blueprint *bp,
                                         daebus_http_middleware_fn *fn, void *user);

/* ---- the request (valid until the handler returns) ----
 * Thread: only inside its handler.
 * (Every accessor below, on the thread running the handler or middleware
 * that received req.) Ownership: returned strings and JSON belong to
 * the request. A NULL req gives NULL. */

/* Returns: "GET", "POST", ... */
DAEBUS_API const char *daebus_http_request_method(const daebus_http_request *req);
/* Returns: the decoded path without the query string. */
DAEBUS_API const char *daebus_http_request_path(const daebus_http_request *req);
/* Returns: the raw query string (without '?'), or NULL. */
DAEBUS_API const char *daebus_http_request_query_string(const daebus_http_request *req);
/* Returns: the decoded value of route parameter name, or NULL. */
DAEBUS_API const char *daebus_http_request_param(const daebus_http_request *req, const char *name);
/* Returns: the decoded value of query parameter name (the last one when
 * repeated), or NULL. Ownership: owned by the request. */
DAEBUS_API const char *daebus_http_request_query(daebus_http_request *req, const char *name);
/* Returns: the value of header name (case-insensitive), or NULL. */
DAEBUS_API const char *daebus_http_request_header(const daebus_http_request *req, const char *name);
/* Returns: the client's IP address as text. */
DAEBUS_API const char *daebus_http_request_remote_addr(const daebus_http_request *req);
/* Returns: the raw body (NUL-terminated, may hold NULs) and its length in
 * *len (if len not NULL); "" when there is none. */
DAEBUS_API const char *daebus_http_request_body(const daebus_http_request *req, size_t *len);
/* Returns: the merged payload (see the header comment): an object, or the
 * non-object JSON body. Ownership: borrowed, valid until the handler returns;
 * never NULL. */
DAEBUS_API const cJSON *daebus_http_request_payload(const daebus_http_request *req);
/* Returns: the app serving the request. */
DAEBUS_API daebus_app *daebus_http_request_app(const daebus_http_request *req);
/* A pointer middleware can leave for the route handler (e.g. the user it
 * authenticated). Ownership: not freed by the framework. */
DAEBUS_API void daebus_http_request_set_local(daebus_http_request *req, void *value);
DAEBUS_API void *daebus_http_request_get_local(const daebus_http_request *req);

/* ---- the response (one per request) ----
 * Thread: only inside its handler.
 * (Every function below, on the thread running the handler or middleware
 * that received res.) */

/* Adds a response header sent with the status line. Call before sending.
 * Content-Length, Transfer-Encoding and Connection are managed by the server
 * and refused. Ownership: copied.
 * Returns: 0, DAEBUS_EINVAL (bad name/value: CR/LF), DAEBUS_ESTATE (already
 * sent), DAEBUS_EFULL (more than 8 KiB of headers), DAEBUS_ENOMEM. */
DAEBUS_API int daebus_http_set_header(daebus_http_response *res, const char *name,
                                      const char *value);

/* Sends body with status and Content-Type application/json, then frees it.
 * Ownership: body is taken on every path (NULL sends "null").
 * Returns: 0, DAEBUS_ESTATE (a response was sent already), DAEBUS_ENOMEM,
 * DAEBUS_EIO (the client went away). */
DAEBUS_API int daebus_http_send_json_take(daebus_http_response *res, int status, cJSON *body);

/* The same, borrowing body. */
DAEBUS_API int daebus_http_send_json(daebus_http_response *res, int status, const cJSON *body);

/* Sends len bytes of data with status and content_type (NULL =
 * "application/octet-stream"). Ownership: data borrowed.
 * Returns: 0, DAEBUS_ESTATE, DAEBUS_EIO. */
DAEBUS_API int daebus_http_send(daebus_http_response *res, int status, const char *content_type,
                                const void *data, size_t len);

/* Sends {"error": message} with status. Returns: as daebus_http_send. */
DAEBUS_API int daebus_http_send_error(daebus_http_response *res, int status, const char *message);

/* Chunked streaming: begin sends the status and headers with
 * Transfer-Encoding: chunked; write sends one chunk (len 0 is ignored); end
 * sends the last chunk. A handler that begins and returns without end gets
 * end called for it. Returns: 0, DAEBUS_ESTATE, DAEBUS_EIO. */
DAEBUS_API int daebus_http_stream_begin(daebus_http_response *res, int status,
                                        const char *content_type);
DAEBUS_API int daebus_http_stream_write(daebus_http_response *res, const void *data, size_t len);
DAEBUS_API int daebus_http_stream_end(daebus_http_response *res);

/* Returns: true once a status line was sent. */
DAEBUS_API bool daebus_http_response_sent(const daebus_http_response *res);

#ifdef __cplusplus
}
#endif
#endif
