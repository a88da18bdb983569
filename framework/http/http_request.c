/* http_request.c - one HTTP request: request accessors, body, payload, the stages of handling.
 *
 * daebus__http_dispatch_target() serves every request (CivetWeb's request
 * handler and the close callback call it, http_hooks.c). It runs on a
 * CivetWeb worker thread and owns the request and response objects for the
 * life of the call: they live on the heap only because the response carries
 * an 8 KiB header buffer. handle() runs the stages in order: take the path,
 * CORS headers, read the body (413, 408, 400, 503), route (400 for a bad
 * path; automatic OPTIONS / 405 / static files / 404 when no route answers),
 * payload (400), middleware, handler, then whatever the handler left unsent
 * (500 or 204); dispatch adds the stats and the access log line.
 *
 * A request has one deadline (http_hooks.c starts its clock); the body is
 * read under it in a deadline slot whose watchdog (civet/civet.c) shuts the
 * socket's read side when it passes.
 */
#include <civetweb.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>
#include "clock.h"
#include "component.h"
#include "json.h"
#include "daebus/log.h"
#include "http_parse.h"
#include "http_private.h"

#define MAX_SEGMENTS 128

/* ---- helpers ---- */

static unsigned method_bit(const char *m)
{
    static const char *const names[] = {"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"};
    for (unsigned i = 0; i < 7; i++)
        if (strcmp(m, names[i]) == 0)
            return 1u << i;
    return 0;
}

/* ---- request accessors ---- */

const char *daebus_http_request_method(const daebus_http_request *req)
{
    return req ? req->method : NULL;
}

const char *daebus_http_request_path(const daebus_http_request *req)
{
    return req ? req->path : NULL;
}

const char *daebus_http_request_query_string(const daebus_http_request *req)
{
    return req ? req->query_string : NULL;
}

const char *daebus_http_request_param(const daebus_http_request *req, const char *name)
{
    if (!req || !name)
        return NULL;
    for (int i = 0; i < req->nparams; i++)
        if (strcmp(req->param_names[i], name) == 0)
            return req->param_values[i];
    return NULL;
}

const char *daebus_http_request_query(daebus_http_request *req, const char *name)
{
    if (!req || !name || !req->query_string)
        return NULL;
    if (!req->query) {
        req->query = cJSON_CreateObject();
        if (!req->query)
            return NULL;
        daebus__http_parse_form(req->query_string, strlen(req->query_string), req->query);
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(req->query, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

const char *daebus_http_request_header(const daebus_http_request *req, const char *name)
{
    if (!req || !name)
        return NULL;
    return mg_get_header(req->conn, name);
}

const char *daebus_http_request_remote_addr(const daebus_http_request *req)
{
    if (!req)
        return NULL;
    return mg_get_request_info(req->conn)->remote_addr;
}

const char *daebus_http_request_body(const daebus_http_request *req, size_t *len)
{
    if (len)
        *len = req ? req->body_len : 0;
    return req && req->body ? req->body : "";
}

const cJSON *daebus_http_request_payload(const daebus_http_request *req)
{
    return req ? req->payload : NULL;
}

daebus_app *daebus_http_request_app(const daebus_http_request *req)
{
    return req ? req->http->app : NULL;
}

void daebus_http_request_set_local(daebus_http_request *req, void *value)
{
    if (req)
        req->local = value;
}

void *daebus_http_request_get_local(const daebus_http_request *req)
{
    return req ? req->local : NULL;
}

/* ---- body and payload ---- */

/* Reads the request body until the request's deadline. Returns 0, or the
 * status to answer: 413 (too large), 400 (shorter than its Content-Length,
 * or a broken chunked encoding), 408 (too slow), 503 (too many bodies being
 * read), 500. */
static int read_body(daebus_http *h, daebus_http_request *req, double deadline)
{
    const struct mg_request_info *ri = mg_get_request_info(req->conn);
    long long cl = ri->content_length;
    const char *te = mg_get_header(req->conn, "Transfer-Encoding");
    bool chunked = te && daebus__list_has(te, "chunked", 7, true);
    if (cl <= 0 && !chunked)
        return 0;
    if (cl > 0 && (unsigned long long)cl > h->max_body)
        return 413;
    int slot = daebus__civet_deadline_acquire(&h->readers, req->conn, deadline);
    if (slot < 0)
        return 503;
    size_t cap = cl > 0 ? (size_t)cl : 16384;
    char *buf = malloc(cap + 1);
    size_t len = 0;
    int rc = buf ? 0 : 500;
    while (rc == 0) {
        if (len == cap) {
            if (cap > h->max_body) {
                rc = 413;
                break;
            }
            size_t ncap = cap * 2 > h->max_body + 1 ? h->max_body + 1 : cap * 2;
            char *bigger = realloc(buf, ncap + 1);
            if (!bigger) {
                rc = 500;
                break;
            }
            buf = bigger;
            cap = ncap;
        }
        if (daebus__now_mono() >= deadline) {
            rc = 408;
            break;
        }
        int n = mg_read(req->conn, buf + len, cap - len);
        if (n < 0 && chunked)
            rc = 400;
        if (n <= 0)
            break;
        len += (size_t)n;
        if (cl > 0 && len == (size_t)cl)
            break;
    }
    if (daebus__civet_deadline_release(&h->readers, slot) && (rc == 0 || rc == 400))
        rc = 408; /* the watchdog cut it short */
    if (rc == 0 && cl > 0 && len < (size_t)cl)
        rc = 400;
    if (rc == 0 && len > h->max_body)
        rc = 413;
    if (rc) {
        free(buf);
        return rc;
    }
    buf[len] = '\0';
    req->body = buf;
    req->body_len = len;
    atomic_fetch_add(&h->st_bytes_in, len);
    return 0;
}

/* The route parameters into the payload, typed (<int:>, <float:>), over
 * body and query fields of the same name. */
static void merge_params(const daebus_http_request *req, const daebus__http_route *rt, cJSON *base)
{
    for (int i = 0; i < req->nparams; i++) {
        cJSON *v = NULL;
        long long n;
        const char *val = req->param_values[i];
        if (rt->param_types[i] == DAEBUS__HTTP_PARAM_INT &&
            daebus__http_parse_int(val, strlen(val), &n))
            v = cJSON_CreateNumber((double)n);
        else if (rt->param_types[i] == DAEBUS__HTTP_PARAM_FLOAT &&
                 daebus__http_is_float(val, strlen(val)))
            v = cJSON_CreateNumber(strtod(val, NULL));
        else
            v = cJSON_CreateString(val);
        /* Case-sensitive, as the replace is (a body key "ID" must not make the
         * replace of "id" fail and leak v). */
        if (cJSON_GetObjectItemCaseSensitive(base, req->param_names[i]))
            cJSON_ReplaceItemInObjectCaseSensitive(base, req->param_names[i], v);
        else
            cJSON_AddItemToObject(base, req->param_names[i], v);
    }
}

/* Builds req->payload. Returns 0 or sends a 400 and returns 400. */
static int build_payload(daebus_http_request *req, daebus_http_response *res,
                         const daebus__http_route *rt)
{
    cJSON *base = NULL;
    bool body_fields = req->body_len && !(req->method_bit & (DAEBUS_GET | DAEBUS_HEAD));
    const char *ctype = mg_get_header(req->conn, "Content-Type");
    if (body_fields && daebus__http_media_type_is_json(ctype)) {
        if (!daebus__http_utf8_valid(req->body, req->body_len)) {
            daebus_http_send_error(res, 400, "Invalid UTF-8 in request body");
            return 400;
        }
        /* cJSON recurses and CivetWeb's worker stacks are small (a pure scan first). */
        if (!daebus__json_depth_ok(req->body, req->body_len, req->http->max_json_depth)) {
            char msg[64];
            snprintf(msg, sizeof msg, "JSON body nested too deeply (max %d levels)",
                     req->http->max_json_depth);
            daebus_http_send_error(res, 400, msg);
            return 400;
        }
        base = daebus_json_parse(req->body, req->body_len, NULL);
        if (!base) {
            daebus_http_send_error(res, 400, "Invalid JSON body");
            return 400;
        }
        if (!cJSON_IsObject(base)) {
            req->payload = base; /* a list or scalar body is the payload itself */
            return 0;
        }
    } else if (body_fields &&
               daebus__http_media_type_is(ctype, "application/x-www-form-urlencoded")) {
        base = cJSON_CreateObject();
        int rc = base ? daebus__http_parse_form(req->body, req->body_len, base) : -2;
        if (rc == -1) {
            cJSON_Delete(base);
            daebus_http_send_error(res, 400, "Invalid UTF-8 in form body");
            return 400;
        }
    }
    if (!base)
        base = cJSON_CreateObject();
    if (!base)
        return 500;
    if (req->query_string && *req->query_string) {
        cJSON *q = cJSON_CreateObject();
        if (!q || daebus__http_parse_form(req->query_string, strlen(req->query_string), q)) {
            cJSON_Delete(q);
            cJSON_Delete(base);
            daebus_http_send_error(res, 400, "Invalid UTF-8 in query string");
            return 400;
        }
        for (cJSON *it = q->child; it; it = it->next)
            if (!cJSON_GetObjectItemCaseSensitive(base, it->string))
                cJSON_AddItemToObject(base, it->string, cJSON_CreateString(it->valuestring));
        req->query = q;
    }
    if (rt)
        merge_params(req, rt, base);
    req->payload = base;
    return 0;
}

/* ---- middleware ---- */

static const daebus_blueprint *route_bp(const daebus__handler *hd)
{
    const daebus_blueprint *bp = hd ? hd->desc->opts.bp : NULL;
    return bp ? bp : &daebus_default_blueprint;
}

/* Runs the middleware for a route handler (NULL: static file). Returns 0 to
 * go on, 1 when the request was answered or failed. */
static int run_middleware(daebus_http *h, daebus_http_request *req, daebus_http_response *res,
                          const daebus__handler *hd)
{
    for (size_t i = 0; i < h->nmw; i++) {
        const daebus__http_mw *mw = &h->mw[i];
        if (mw->bp && (!hd || route_bp(hd) != mw->bp))
            continue;
        int rc = mw->fn(req, res, mw->user);
        if (res->sent)
            return 1;
        if (rc < 0) {
            daebus_log(DAEBUS_LOG_ERROR, "http", "%s %s: middleware failed: returned %d (%s: %s)",
                       req->method, req->path, rc, daebus_errname(rc), daebus_strerror(rc));
            daebus_http_send_error(res, 500, "Internal server error");
            return 1;
        }
    }
    return 0;
}

/* ---- dispatch ---- */

/* midx: the method index of the handler that runs (its pattern's names). */
static void fill_params(daebus_http_request *req, const daebus__http_route *rt, int midx,
                        const daebus__http_match *m, const char *raw, const char *const *segs)
{
    req->nparams = m->nparams;
    for (int i = 0; i < m->nparams; i++) {
        req->param_names[i] = rt->param_names[midx][i];
        if (rt->param_types[i] == DAEBUS__HTTP_PARAM_PATH) {
            /* The rest of the raw path from segment seg on, decoded. */
            const char *p = raw + 1;
            for (size_t s = 0; s < m->params[i].seg && p; s++) {
                p = strchr(p, '/');
                if (p)
                    p++;
            }
            if (!p)
                p = "";
            size_t n = strlen(p);
            req->param_values[i] = malloc(n + 1);
            if (req->param_values[i])
                daebus__http_percent_decode(p, n, req->param_values[i], false);
        } else {
            req->param_values[i] = strdup(segs[m->params[i].seg]);
        }
    }
}

/* ---- the stages of a request ---- */

/* A request on its way through handle(): the raw path and its segments. */
typedef struct route_ctx {
    const char *raw; /* still percent-encoded, no query */
    char *segbuf;    /* the decoded segments */
    const char *segs[MAX_SEGMENTS];
    size_t lens[MAX_SEGMENTS];
    int nsegs;
    daebus__http_cors *cors; /* a reference, or NULL */
    const char *origin;
} route_ctx;

/* Stage 1: the raw path (raw, else CivetWeb's), decoded into req->path.
 * Returns: 0, or -1 after answering 500. */
static int take_path(daebus_http_request *req, daebus_http_response *res, route_ctx *rc,
                     const char *raw)
{
    const struct mg_request_info *ri = mg_get_request_info(req->conn);
    if (!raw)
        raw = ri->local_uri_raw ? ri->local_uri_raw : ri->local_uri;
    if (!raw || raw[0] != '/')
        raw = "/";
    rc->raw = raw;
    size_t rawlen = strlen(raw);
    req->path = malloc(rawlen + 1);
    rc->segbuf = malloc(rawlen + MAX_SEGMENTS + 2);
    if (!req->path || !rc->segbuf) {
        daebus_http_send_error(res, 500, "Internal server error");
        return -1;
    }
    /* CivetWeb runs with decode_url=no so that "%2F" stays inside a segment
     * (daebus__http_split_path decodes segment by segment); req->path is
     * the whole path decoded, for logs and the handler. */
    daebus__http_percent_decode(raw, rawlen, req->path, false);
    return 0;
}

/* Stage 2: the CORS headers every ordinary response carries. */
static void add_cors(daebus_http *h, daebus_http_request *req, daebus_http_response *res,
                     route_ctx *rc)
{
    rc->cors = daebus__http_cors_current(h);
    rc->origin = mg_get_header(req->conn, "Origin");
    if (rc->cors && daebus__http_headers_buffer(res) == 0)
        res->hlen = daebus__http_cors_simple(rc->cors, rc->origin, res->headers,
                                             DAEBUS__HTTP_EXTRA_HEADERS);
}

/* Stage 3 (on failure): answers a body read_body() refused. The body was not
 * read to its end, so the connection cannot carry another request. */
static void refuse_body(daebus_http *h, daebus_http_request *req, daebus_http_response *res,
                        int status)
{
    const char *from = mg_get_request_info(req->conn)->remote_addr;
    const char *msg = "Internal server error";
    res->close_after = true;
    if (status == 413) {
        msg = "Request body too large";
    } else if (status == 408) {
        msg = "Request Timeout";
        atomic_fetch_add(&h->st_timeouts, 1);
        daebus__http_note(h, DAEBUS__HTTP_NOTE_TIMEOUT,
                          "%s %s from %s: the request did not arrive within %d ms: 408",
                          req->method, req->path, from, h->timeout_ms);
    } else if (status == 400) {
        msg = "Request body incomplete";
        daebus__http_note(h, DAEBUS__HTTP_NOTE_BAD,
                          "%s %s from %s: the body ended before its Content-Length: 400",
                          req->method, req->path, from);
    } else if (status == 503) {
        msg = "Too many uploads in progress";
        atomic_fetch_add(&h->st_busy, 1);
        daebus_http_set_header(res, "Retry-After", "1");
        daebus__http_note(h, DAEBUS__HTTP_NOTE_BUSY,
                          "%s %s from %s: %d request bodies are being read already: 503",
                          req->method, req->path, from, h->max_body_readers);
    }
    daebus_http_send_error(res, status, msg);
}

/* Automatic OPTIONS: the Allow list, plus the preflight headers. */
static void answer_options(daebus_http_request *req, daebus_http_response *res, const route_ctx *rc,
                           unsigned allow)
{
    char text[128];
    daebus__http_allow_text(allow, text, sizeof text);
    res->hlen = 0;
    if (res->headers)
        res->headers[0] = '\0';
    if (rc->cors && daebus__http_headers_buffer(res) == 0)
        res->hlen = daebus__http_cors_preflight(
            rc->cors, rc->origin, mg_get_header(req->conn, "Access-Control-Request-Headers"), allow,
            res->headers, DAEBUS__HTTP_EXTRA_HEADERS);
    daebus_http_set_header(res, "Allow", text);
    daebus_http_send(res, 204, NULL, NULL, 0);
}

/* Stage 4b: no route answers this method here (mrc 0: the path has other
 * methods in m->allow; -1: no route): automatic OPTIONS, a static file, 405
 * or 404. */
static void answer_unrouted(daebus_http *h, daebus_http_request *req, daebus_http_response *res,
                            const route_ctx *rc, int mrc, const daebus__http_match *m)
{
    char *file = NULL;
    int src = mrc == -1 ? daebus__http_static_lookup(h, rc->segs, rc->lens, rc->nsegs, &file) : 0;
    unsigned allow = mrc == 0 ? m->allow : src == 1 ? DAEBUS_GET : 0;
    if (req->method_bit == DAEBUS_OPTIONS && allow) {
        answer_options(req, res, rc, allow);
    } else if (src == 1 && (req->method_bit & (DAEBUS_GET | DAEBUS_HEAD))) {
        if (run_middleware(h, req, res, NULL) == 0)
            daebus__http_send_file(res, file);
    } else if (allow) {
        daebus__http_send_405(res, allow, rc->raw);
    } else {
        daebus__http_send_path_error(res, 404, "Not Found", rc->raw);
    }
    free(file);
}

/* Stage 5: what the handler left unanswered or failed on. */
static void finish_route(daebus_http_request *req, daebus_http_response *res,
                         const daebus__http_route *rt, const daebus_handler_desc *d, int rc)
{
    if (res->streaming && !res->stream_ended)
        daebus_http_stream_end(res);
    if (res->sent) {
        if (rc < 0)
            daebus_log(DAEBUS_LOG_WARNING, "http", "%s %s: route %s returned %d after responding",
                       req->method, req->path, rt->pattern, rc);
        return;
    }
    if (rc < 0) {
        daebus_log(DAEBUS_LOG_ERROR, "http", "%s %s: route %s (%s:%d) failed: returned %d (%s: %s)",
                   req->method, req->path, rt->pattern, d->file ? d->file : "?", d->line, rc,
                   daebus_errname(rc), daebus_strerror(rc));
        daebus_http_send_error(res, 500, "Internal server error");
    } else {
        daebus_http_send(res, 204, NULL, NULL, 0);
    }
}

/* Stage 4a: the route's handler for the method (HEAD runs GET's), its
 * parameters and payload, the middleware, the handler. */
static void run_route(daebus_http *h, daebus_http_request *req, daebus_http_response *res,
                      const route_ctx *rc, const daebus__http_match *m)
{
    const daebus__http_route *rt = m->route;
    int idx = daebus__http_method_index(req->method_bit);
    const daebus__handler *hd = idx >= 0 ? rt->handlers[idx] : NULL;
    if (!hd && req->method_bit == DAEBUS_HEAD) {
        idx = daebus__http_method_index(DAEBUS_GET);
        hd = rt->handlers[idx];
    }
    fill_params(req, rt, idx, m, rc->raw, rc->segs);
    if (build_payload(req, res, rt) || !req->payload) {
        if (!res->sent)
            daebus_http_send_error(res, 500, "Internal server error");
        return;
    }
    if (run_middleware(h, req, res, hd))
        return;
    const daebus_handler_desc *d = hd->desc;
    finish_route(req, res, rt, d, d->fn.route(req, res, d->opts.user));
}

/* Stage 4: splits the path and looks it up. */
static void route(daebus_http *h, daebus_http_request *req, daebus_http_response *res,
                  route_ctx *rc)
{
    rc->nsegs = daebus__http_split_path(rc->raw, rc->segbuf, rc->segs, rc->lens, MAX_SEGMENTS);
    if (rc->nsegs == -2) {
        daebus_http_send_error(res, 400, "Invalid UTF-8 in path");
        return;
    }
    if (rc->nsegs < 0) {
        daebus__http_send_path_error(res, 404, "Not Found", rc->raw);
        return;
    }
    unsigned want = req->method_bit;
    if (want == DAEBUS_HEAD)
        want = DAEBUS_HEAD | DAEBUS_GET;
    daebus__http_match m;
    int mrc = daebus__http_router_match(h->router, rc->segs, rc->lens, (size_t)rc->nsegs, want, &m);
    if (mrc == 1)
        run_route(h, req, res, rc, &m);
    else
        answer_unrouted(h, req, res, rc, mrc, &m);
}

/* One request, stage by stage. raw: the path to route (an absolute-form
 * target's), NULL = CivetWeb's. */
static void handle(daebus_http *h, daebus_http_request *req, daebus_http_response *res,
                   const char *raw, double deadline)
{
    route_ctx rc = {0};
    if (take_path(req, res, &rc, raw) == 0) {
        add_cors(h, req, res, &rc);
        int body_rc;
        if (atomic_load(&h->draining)) {
            res->close_after = true;
            daebus_http_send_error(res, 503, "Server shutting down");
        } else if ((body_rc = read_body(h, req, deadline)) != 0) {
            refuse_body(h, req, res, body_rc);
        } else {
            route(h, req, res, &rc);
        }
    }
    daebus__http_cors_unref(rc.cors);
    free(rc.segbuf);
}

/* raw, query: an absolute-form target's path and query (NULL: CivetWeb's). */
int daebus__http_dispatch_target(struct mg_connection *conn, daebus_http *h, const char *raw,
                                 const char *query, double start)
{
    double t0 = daebus__now_mono();
    atomic_fetch_add(&h->st_in_flight, 1);
    daebus_http_request *req = calloc(1, sizeof *req);
    daebus_http_response *res = calloc(1, sizeof *res);
    if (!req || !res) {
        free(req);
        free(res);
        atomic_fetch_sub(&h->st_in_flight, 1);
        mg_send_http_error(conn, 500, "out of memory");
        return 500;
    }
    const struct mg_request_info *ri = mg_get_request_info(conn);
    req->http = h;
    req->conn = conn;
    req->method = ri->request_method ? ri->request_method : "";
    req->method_bit = method_bit(req->method);
    req->query_string = raw ? query : ri->query_string;
    res->http = h;
    res->conn = conn;
    res->head_only = req->method_bit == DAEBUS_HEAD;
    res->raw_head = raw != NULL; /* answered from the close callback */

    handle(h, req, res, raw, start + h->timeout_ms / 1000.0);
    if (!res->sent)
        daebus_http_send_error(res, 500, "Internal server error");

    int status = res->status;
    atomic_fetch_add(&h->st_requests, 1);
    if (status >= 200 && status < 600)
        atomic_fetch_add(&h->st_class[status / 100], 1);
    atomic_fetch_add(&h->st_bytes_out, res->bytes_out);
    atomic_fetch_sub(&h->st_in_flight, 1);
    if (h->access_log)
        daebus_log(DAEBUS_LOG_INFO, "http", "%s %s %d %lluB %.1fms %s", req->method,
                   req->path ? req->path : "?", status, (unsigned long long)res->bytes_out,
                   (daebus__now_mono() - t0) * 1000.0, ri->remote_addr);

    for (int i = 0; i < req->nparams; i++)
        free(req->param_values[i]);
    cJSON_Delete(req->payload);
    cJSON_Delete(req->query);
    free(req->body);
    free(req->path);
    free(req);
    free(res->headers);
    free(res);
    return status;
}
