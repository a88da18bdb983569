/* http_private.h - the structs shared by the files of the HTTP component (internal).
 *
 * http.c owns the component (options, life cycle, CORS swap, middleware list);
 * http_request.c owns the per-request path (dispatch, request accessors,
 * responses, static files). Nothing outside framework/http*.c includes this.
 */
#ifndef DAEBUS_HTTP_PRIVATE_H
#define DAEBUS_HTTP_PRIVATE_H

#include "ratelimit.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include "civet.h"
#include "civet_server.h"
#include "component.h"
#include "daebus/http.h"
#include "http_cors.h"
#include "http_router.h"

struct mg_connection;

typedef struct daebus__http_mw {
    daebus_http_middleware_fn *fn;
    void *user;
    const daebus_blueprint *bp; /* NULL = every request */
} daebus__http_mw;

/* Refusals logged at most once a second each (an attacker sets the rate). */
enum {
    DAEBUS__HTTP_NOTE_TIMEOUT,
    DAEBUS__HTTP_NOTE_BUSY,
    DAEBUS__HTTP_NOTE_BAD,
    DAEBUS__HTTP_NOTES
};

#define DAEBUS__HTTP_MAX_JSON_DEPTH 512

struct daebus_http {
    daebus__component comp;
    daebus_app *app;
    /* options (copied) */
    int port; /* 0 = any */
    size_t max_body;
    int max_json_depth;
    bool access_log;
    int timeout_ms;
    int max_body_readers;
    char *ssl_certificate;
    char *static_dir;
    char *static_root; /* realpath of static_dir while running */
    char *static_prefix;
    /* the CivetWeb server (shared with the WebSocket component through the app) */
    daebus__civet_server server;
    /* running state */
    daebus__http_router *router;
    daebus__http_mw *mw;
    size_t nmw;
    pthread_mutex_t cors_lock;
    daebus__http_cors *cors;
    /* stats */
    atomic_uint_fast64_t st_requests;
    atomic_uint_fast64_t st_class[6];
    atomic_uint_fast64_t st_in_flight;
    atomic_int draining; /* stopping: new requests get 503 while in-flight ones finish */
    atomic_uint_fast64_t st_bytes_in;
    atomic_uint_fast64_t st_bytes_out;
    atomic_uint_fast64_t st_timeouts; /* 408: the request missed its deadline */
    atomic_uint_fast64_t st_busy;     /* 503: max_body_readers bodies being read */
    /* body readers: max_body_readers deadline slots and their watchdog (civet.c) */
    daebus__civet_deadlines readers;
    /* rate-limited refusal notes: time of the last line, refusals since */
    daebus__ratelimit note_rl[DAEBUS__HTTP_NOTES]; /* daebus__http_note */
};

#define DAEBUS__HTTP_EXTRA_HEADERS 8192

struct daebus_http_request {
    daebus_http *http;
    struct mg_connection *conn;
    const char *method;
    unsigned method_bit;
    char *path; /* decoded */
    const char *query_string;
    char *body;
    size_t body_len;
    cJSON *payload;
    cJSON *query; /* lazily parsed query parameters (object of strings) */
    int nparams;
    const char *param_names[DAEBUS__HTTP_MAX_PARAMS];
    char *param_values[DAEBUS__HTTP_MAX_PARAMS];
    void *local;
};

struct daebus_http_response {
    daebus_http *http;
    struct mg_connection *conn;
    bool head_only;
    bool sent;
    bool streaming;
    bool stream_ended;
    bool close_after;
    /* written whole with mg_write, "Connection: close": outside CivetWeb's
     * request handling (begin_request refusals, the close callback), where its
     * header calls write no status line or leak their copies */
    bool raw_head;
    int status;
    uint64_t bytes_out;
    size_t hlen;
    /* "Name: value\r\n" lines; DAEBUS__HTTP_EXTRA_HEADERS bytes, allocated on the
     * first header (most responses have none), freed with the response */
    char *headers;
};

/* The CivetWeb request handler (http_hooks.c). */
int daebus__http_dispatch(struct mg_connection *conn, void *cbdata);

/* Serves one request (http_request.c): raw and query are an absolute-form
 * target's path and query (NULL: CivetWeb's); start is when the request's
 * clock started. Returns: the status sent. */
int daebus__http_dispatch_target(struct mg_connection *conn, daebus_http *h, const char *raw,
                                 const char *query, double start);

/* CivetWeb callbacks (http_hooks.c): begin_request checks the framing and
 * upgrade headers before CivetWeb's own handling; connection_close answers
 * the requests CivetWeb parsed but would drop (absolute-form targets on
 * another host or port, OPTIONS *); init_connection notes when a connection
 * was accepted (the first request's clock starts there). */
int daebus__http_begin_request(struct mg_connection *conn);
void daebus__http_connection_close(const struct mg_connection *conn);
int daebus__http_init_connection(const struct mg_connection *conn, void **conn_data);

/* Logs a refusal of kind note (DAEBUS__HTTP_NOTE_*) at most once a second,
 * with the count of those not logged. */
void daebus__http_note(daebus_http *h, int note, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Returns: a reference to the current CORS configuration (NULL = off). */
daebus__http_cors *daebus__http_cors_current(daebus_http *http);

/* ---- responses (http_response.c) ---- */

/* Allocates res->headers on first use. Returns: 0 or -1. */
int daebus__http_headers_buffer(daebus_http_response *res);
/* Sends the status line and headers; clen < 0 = no Content-Length.
 * Returns: 0, DAEBUS_ESTATE (sent already), DAEBUS_EIO, DAEBUS_ENOMEM. */
int daebus__http_send_head(daebus_http_response *res, int status, const char *ctype, long long clen,
                           bool chunked);
/* Writes a body (nothing for HEAD). Returns: 0 or DAEBUS_EIO. */
int daebus__http_write_all(daebus_http_response *res, const void *data, size_t len);
/* The Allow list of mask (HEAD with GET, OPTIONS always) into buf. */
void daebus__http_allow_text(unsigned mask, char *buf, size_t cap);
/* {"error": error, "path": path} with status. */
void daebus__http_send_path_error(daebus_http_response *res, int status, const char *error,
                                  const char *path);
/* 405 with the Allow header. */
void daebus__http_send_405(daebus_http_response *res, unsigned allow, const char *path);

/* ---- static files (http_static.c) ---- */

/* Resolves the static file of the path segments. Returns: 1 and a malloc'd
 * real path in *out, 0 when not under the prefix or no file, -1 for an
 * escape attempt (answered 404 too). */
int daebus__http_static_lookup(daebus_http *h, const char *const *segs, const size_t *lens,
                               int nsegs, char **out);
/* Sends the file at path (200, or 404/500 as JSON). */
void daebus__http_send_file(daebus_http_response *res, const char *path);

#endif
