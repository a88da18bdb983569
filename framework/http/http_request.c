/* http_request.c - one HTTP request: dispatch, request accessors, responses, static files.
 *
 * daebus__http_dispatch() is CivetWeb's request handler for every path. It
 * runs on a CivetWeb worker thread and owns the request and response objects
 * for the life of the call: they live on the heap only because the response
 * carries an 8 KiB header buffer. Order of work: read the body (413), split
 * and decode the path (400), route lookup, automatic OPTIONS / 405 / static
 * files / 404, payload (400), middleware, handler, then whatever the handler
 * left unsent (500 or 204), stats and the access log line.
 *
 * A request has one deadline (request_timeout_ms from when the worker took
 * the connection, or from the end of the headers on a kept-alive one); the
 * body is read under it with a body-reader slot whose watchdog (http.c)
 * shuts the socket's read side when it passes. CivetWeb's begin_request and
 * connection_close callbacks, at the end of this file, answer what CivetWeb
 * 1.15 would refuse without a status line or drop without a word: bad
 * framing, bad upgrades, absolute-form targets and OPTIONS *.
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

static void allow_text(unsigned mask, char *buf, size_t cap)
{
    if (mask & DAEBUS_GET)
        mask |= DAEBUS_HEAD;
    mask |= DAEBUS_OPTIONS;
    daebus__http_methods_text(mask, buf, cap);
}

/* ---- responses ---- */

bool daebus_http_response_sent(const daebus_http_response *res)
{
    return res && res->sent;
}

static bool token_ok(const char *s)
{
    if (!s || !*s)
        return false;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= 32 || c >= 127 || strchr("()<>@,;:\\\"/[]?={}", c))
            return false;
    }
    return true;
}

/* Allocates the extra-header buffer on first use. Returns 0 or -1. */
static int headers_buffer(daebus_http_response *res)
{
    if (!res->headers) {
        res->headers = malloc(DAEBUS__HTTP_EXTRA_HEADERS);
        if (!res->headers)
            return -1;
        res->headers[0] = '\0';
        res->hlen = 0;
    }
    return 0;
}

int daebus_http_set_header(daebus_http_response *res, const char *name, const char *value)
{
    if (!res || !token_ok(name) || !value || strpbrk(value, "\r\n")) {
        daebus_log(DAEBUS_LOG_ERROR, "http",
                   "set_header: needs a token name and a value without CR/LF");
        return DAEBUS_EINVAL;
    }
    if (!strcasecmp(name, "Content-Length") || !strcasecmp(name, "Transfer-Encoding") ||
        !strcasecmp(name, "Connection")) {
        daebus_log(DAEBUS_LOG_ERROR, "http",
                   "set_header: %s is managed by the server; use the send/stream functions", name);
        return DAEBUS_EINVAL;
    }
    if (res->sent) {
        daebus_log(DAEBUS_LOG_ERROR, "http",
                   "set_header: the response was sent already; set headers before sending");
        return DAEBUS_ESTATE;
    }
    if (headers_buffer(res) != 0)
        return DAEBUS_ENOMEM;
    int n = snprintf(res->headers + res->hlen, DAEBUS__HTTP_EXTRA_HEADERS - res->hlen, "%s: %s\r\n",
                     name, value);
    if (n < 0 || (size_t)n >= DAEBUS__HTTP_EXTRA_HEADERS - res->hlen) {
        res->headers[res->hlen] = '\0';
        return DAEBUS_EFULL;
    }
    res->hlen += (size_t)n;
    return 0;
}

/* The Date header, formatted here (gmtime_r, fixed English names) and cached
 * per thread for the current second. CivetWeb only formats its own Date when
 * the response has none, and it does that with the non-reentrant libc call:
 * supplying it keeps every response off that shared buffer without a lock. */
static const char *http_date(void)
{
    static _Thread_local time_t cached = (time_t)-1;
    static _Thread_local char buf[40];
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t now = time(NULL);
    if (now != cached) {
        struct tm tm;
        if (!gmtime_r(&now, &tm))
            return NULL;
        snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7],
                 tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                 tm.tm_sec);
        cached = now;
    }
    return buf;
}

/* Returns: whether the extra header lines set one named name (case-insensitive). */
static bool has_header_line(const daebus_http_response *res, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = res->hlen ? res->headers : NULL; p && *p;) {
        if (strncasecmp(p, name, n) == 0 && p[n] == ':')
            return true;
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return false;
}

/* mg_disable_keep_alive() is a Debian (Orthanc) patch to CivetWeb 1.15, used
 * to close the connection after a 413 whose body was left unread; linked
 * weakly so that other CivetWeb builds still work (without the close). */
#pragma weak mg_disable_keep_alive

/* send_head() for res->raw_head: the whole head in one mg_write. */
static int send_head_raw(daebus_http_response *res, int status, const char *ctype, long long clen,
                         bool chunked)
{
    const char *reason = mg_get_response_code_text(res->conn, status);
    size_t cap = res->hlen + (ctype ? strlen(ctype) : 0) + 512;
    char *t = malloc(cap);
    if (!t)
        return DAEBUS_ENOMEM;
    int n = snprintf(t, cap, "HTTP/1.1 %d %s\r\n", status, reason ? reason : "");
    if (ctype)
        n += snprintf(t + n, cap - (size_t)n, "Content-Type: %s\r\n", ctype);
    if (clen >= 0 && status != 204 && status != 304 && status >= 200)
        n += snprintf(t + n, cap - (size_t)n, "Content-Length: %lld\r\n", clen);
    if (chunked)
        n += snprintf(t + n, cap - (size_t)n, "Transfer-Encoding: chunked\r\n");
    if (res->hlen)
        n += snprintf(t + n, cap - (size_t)n, "%s", res->headers);
    const char *date = has_header_line(res, "Date") ? NULL : http_date();
    if (date)
        n += snprintf(t + n, cap - (size_t)n, "Date: %s\r\n", date);
    n += snprintf(t + n, cap - (size_t)n, "Connection: close\r\n\r\n");
    res->sent = true;
    res->status = status;
    int w = mg_write(res->conn, t, (size_t)n);
    free(t);
    return w == n ? 0 : DAEBUS_EIO;
}

/* Sends the status line and headers; clen < 0 = no Content-Length. */
static int send_head(daebus_http_response *res, int status, const char *ctype, long long clen,
                     bool chunked)
{
    if (res->sent) {
        daebus_log(DAEBUS_LOG_ERROR, "http",
                   "a response was sent already; send one response per request");
        return DAEBUS_ESTATE;
    }
    if (status < 100 || status > 999)
        status = 500;
    struct mg_connection *c = res->conn;
    void (*disable_keep_alive)(struct mg_connection *) = mg_disable_keep_alive;
    if ((res->close_after || res->raw_head) && disable_keep_alive)
        disable_keep_alive(c);
    if (res->raw_head)
        return send_head_raw(res, status, ctype, clen, chunked);
    if (mg_response_header_start(c, status) < 0)
        return DAEBUS_EIO;
    res->sent = true;
    res->status = status;
    if (ctype)
        mg_response_header_add(c, "Content-Type", ctype, -1);
    if (clen >= 0 && status != 204 && status != 304 && status >= 200) {
        char num[32];
        snprintf(num, sizeof num, "%lld", clen);
        mg_response_header_add(c, "Content-Length", num, -1);
    }
    if (chunked)
        mg_response_header_add(c, "Transfer-Encoding", "chunked", -1);
    if (res->hlen)
        mg_response_header_add_lines(c, res->headers);
    if (!has_header_line(res, "Date")) {
        const char *date = http_date();
        if (date)
            mg_response_header_add(c, "Date", date, -1);
    }
    int rc = mg_response_header_send(c);
    return rc < 0 ? DAEBUS_EIO : 0;
}

static int write_all(daebus_http_response *res, const void *data, size_t len)
{
    if (res->head_only || !len)
        return 0;
    const char *p = data;
    while (len) {
        size_t n = len > (1u << 30) ? (1u << 30) : len;
        int w = mg_write(res->conn, p, n);
        if (w <= 0)
            return DAEBUS_EIO;
        res->bytes_out += (uint64_t)w;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int daebus_http_send(daebus_http_response *res, int status, const char *content_type,
                     const void *data, size_t len)
{
    if (!res || (len && !data))
        return DAEBUS_EINVAL;
    int rc = send_head(res, status, content_type ? content_type : "application/octet-stream",
                       (long long)len, false);
    if (rc)
        return rc;
    if (status == 204 || status == 304)
        return 0;
    return write_all(res, data, len);
}

int daebus_http_send_json(daebus_http_response *res, int status, const cJSON *body)
{
    if (!res)
        return DAEBUS_EINVAL;
    char *text = body ? daebus_json_print(body, NULL) : NULL;
    if (body && !text)
        return DAEBUS_ENOMEM;
    int rc = daebus_http_send(res, status, "application/json", text ? text : "null",
                              text ? strlen(text) : 4);
    free(text);
    return rc;
}

int daebus_http_send_json_take(daebus_http_response *res, int status, cJSON *body)
{
    int rc = daebus_http_send_json(res, status, body);
    cJSON_Delete(body);
    return rc;
}

int daebus_http_send_error(daebus_http_response *res, int status, const char *message)
{
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddStringToObject(o, "error", message ? message : "error")) {
        cJSON_Delete(o);
        return DAEBUS_ENOMEM;
    }
    return daebus_http_send_json_take(res, status, o);
}

int daebus_http_stream_begin(daebus_http_response *res, int status, const char *content_type)
{
    if (!res)
        return DAEBUS_EINVAL;
    int rc = send_head(res, status, content_type ? content_type : "application/octet-stream", -1,
                       !res->head_only);
    if (rc == 0)
        res->streaming = true;
    return rc;
}

int daebus_http_stream_write(daebus_http_response *res, const void *data, size_t len)
{
    if (!res || (len && !data))
        return DAEBUS_EINVAL;
    if (!res->streaming || res->stream_ended) {
        daebus_log(DAEBUS_LOG_ERROR, "http", "stream_write: call daebus_http_stream_begin first");
        return DAEBUS_ESTATE;
    }
    if (res->head_only || !len)
        return 0;
    while (len) {
        unsigned n = len > (1u << 30) ? (1u << 30) : (unsigned)len;
        if (mg_send_chunk(res->conn, data, n) <= 0)
            return DAEBUS_EIO;
        res->bytes_out += n;
        data = (const char *)data + n;
        len -= n;
    }
    return 0;
}

int daebus_http_stream_end(daebus_http_response *res)
{
    if (!res)
        return DAEBUS_EINVAL;
    if (!res->streaming || res->stream_ended)
        return DAEBUS_ESTATE;
    res->stream_ended = true;
    if (res->head_only)
        return 0;
    return mg_write(res->conn, "0\r\n\r\n", 5) == 5 ? 0 : DAEBUS_EIO;
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

/* ---- error responses ---- */

static void send_path_error(daebus_http_response *res, int status, const char *error,
                            const char *path)
{
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "error", error);
        cJSON_AddStringToObject(o, "path", path ? path : "");
    }
    daebus_http_send_json_take(res, status, o);
}

static void send_405(daebus_http_response *res, unsigned allow, const char *path)
{
    char text[128];
    allow_text(allow, text, sizeof text);
    daebus_http_set_header(res, "Allow", text);
    send_path_error(res, 405, "Method Not Allowed", path);
}

/* ---- the request's clock ---- */

/* When the worker took the connection (init_connection): the first
 * request's clock starts there; later ones start when their headers are in
 * (CivetWeb bounds those by the keep-alive time-out). */
static _Thread_local double tl_conn_start;
static _Thread_local bool tl_first;
static _Thread_local double tl_req_start;

int daebus__http_init_connection(const struct mg_connection *conn, void **conn_data)
{
    (void)conn;
    (void)conn_data;
    tl_conn_start = daebus__now_mono();
    tl_first = true;
    return 0;
}

/* Starts the clock of a request whose headers just arrived. Returns: its start. */
static double request_clock(void)
{
    double now = daebus__now_mono();
    tl_req_start = tl_first && tl_conn_start > 0 && tl_conn_start <= now ? tl_conn_start : now;
    tl_first = false;
    return tl_req_start;
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
    bool chunked = te && daebus__http_list_has(te, "chunked", 7);
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
    for (int i = 0; rt && i < req->nparams; i++) {
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
    req->payload = base;
    return 0;
}

/* ---- static files ---- */

/* Resolves the static file for the request path. Returns: 1 and a malloc'd
 * real path in *out, 0 when the path is not under the prefix or no file
 * exists, -1 for an escape attempt (answered 404 too). */
static int static_lookup(daebus_http *h, const char *const *segs, const size_t *lens, int nsegs,
                         char **out)
{
    *out = NULL;
    if (!h->static_root)
        return 0;
    /* Skip the prefix's segments. */
    const char *pre = h->static_prefix + 1;
    int i = 0;
    while (*pre) {
        const char *end = strchr(pre, '/');
        size_t len = end ? (size_t)(end - pre) : strlen(pre);
        if (len) {
            if (i >= nsegs || lens[i] != len || memcmp(segs[i], pre, len) != 0)
                return 0;
            i++;
        }
        if (!end)
            break;
        pre = end + 1;
    }
    size_t need = strlen(h->static_root) + 16 + sizeof "index.html";
    for (int k = i; k < nsegs; k++)
        need += lens[k] + 1;
    char *path = malloc(need);
    if (!path)
        return 0;
    size_t o = (size_t)snprintf(path, need, "%s", h->static_root);
    for (int k = i; k < nsegs; k++) {
        if (memchr(segs[k], '/', lens[k]) || memchr(segs[k], '\\', lens[k]) ||
            (lens[k] && segs[k][0] == '.')) {
            free(path);
            return -1; /* "..", ".", hidden files, encoded slashes */
        }
        path[o++] = '/';
        memcpy(path + o, segs[k], lens[k]);
        o += lens[k];
    }
    path[o] = '\0';
    if (!daebus__http_static_path_safe(path + strlen(h->static_root), false)) {
        free(path);
        return -1;
    }
    if (i == nsegs || lens[nsegs - 1] == 0)
        o += (size_t)snprintf(path + o, need - o, "%sindex.html", path[o - 1] == '/' ? "" : "/");
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        snprintf(path + o, need - o, "/index.html");
    char *real = realpath(path, NULL);
    free(path);
    if (!real)
        return 0;
    size_t rl = strlen(h->static_root);
    if (strncmp(real, h->static_root, rl) != 0 || real[rl] != '/') {
        free(real); /* a symbolic link leading out of the directory */
        return -1;
    }
    if (stat(real, &st) != 0 || !S_ISREG(st.st_mode)) {
        free(real);
        return 0;
    }
    *out = real;
    return 1;
}

static void send_file(daebus_http_response *res, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        if (fd >= 0)
            close(fd);
        daebus_http_send_error(res, 404, "Not Found");
        return;
    }
    /* CivetWeb worker stacks are small (about 100 KiB): buffer on the heap. */
    enum { CHUNK = 65536 };
    char *buf = malloc(CHUNK);
    if (!buf) {
        close(fd);
        daebus_http_send_error(res, 500, "Internal server error");
        return;
    }
    if (send_head(res, 200, daebus__http_mime_type(path), (long long)st.st_size, false) == 0 &&
        !res->head_only) {
        off_t left = st.st_size;
        while (left > 0) {
            ssize_t n = read(fd, buf, CHUNK);
            if (n <= 0 || write_all(res, buf, (size_t)n) != 0)
                break;
            left -= n;
        }
    }
    free(buf);
    close(fd);
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

/* raw: the path to route (an absolute-form target's), NULL = CivetWeb's. */
static void handle(daebus_http *h, daebus_http_request *req, daebus_http_response *res,
                   const char *raw, double deadline)
{
    const struct mg_request_info *ri = mg_get_request_info(req->conn);
    if (!raw)
        raw = ri->local_uri_raw ? ri->local_uri_raw : ri->local_uri;
    if (!raw || raw[0] != '/')
        raw = "/";
    size_t rawlen = strlen(raw);
    req->path = malloc(rawlen + 1);
    char *segbuf = malloc(rawlen + MAX_SEGMENTS + 2);
    if (!req->path || !segbuf) {
        free(segbuf);
        daebus_http_send_error(res, 500, "Internal server error");
        return;
    }
    daebus__http_percent_decode(raw, rawlen, req->path, false);

    /* CORS headers every ordinary response carries. */
    daebus__http_cors *cors = daebus__http_cors_current(h);
    const char *origin = mg_get_header(req->conn, "Origin");
    if (cors) {
        if (headers_buffer(res) == 0)
            res->hlen =
                daebus__http_cors_simple(cors, origin, res->headers, DAEBUS__HTTP_EXTRA_HEADERS);
    }

    if (atomic_load(&h->draining)) {
        res->close_after = true;
        daebus_http_send_error(res, 503, "Server shutting down");
        goto done;
    }
    int body_rc = read_body(h, req, deadline);
    if (body_rc) {
        /* The body was not read to its end: the connection cannot carry another request. */
        res->close_after = true;
        const char *msg = "Internal server error";
        if (body_rc == 413) {
            msg = "Request body too large";
        } else if (body_rc == 408) {
            msg = "Request Timeout";
            daebus__http_note(h, DAEBUS__HTTP_NOTE_TIMEOUT,
                              "%s %s from %s: the request did not arrive within %d ms: 408",
                              req->method, req->path, ri->remote_addr, h->timeout_ms);
        } else if (body_rc == 400) {
            msg = "Request body incomplete";
            daebus__http_note(h, DAEBUS__HTTP_NOTE_BAD,
                              "%s %s from %s: the body ended before its Content-Length: 400",
                              req->method, req->path, ri->remote_addr);
        } else if (body_rc == 503) {
            msg = "Too many uploads in progress";
            daebus_http_set_header(res, "Retry-After", "1");
            daebus__http_note(h, DAEBUS__HTTP_NOTE_BUSY,
                              "%s %s from %s: %d request bodies are being read already: 503",
                              req->method, req->path, ri->remote_addr, h->max_body_readers);
        }
        daebus_http_send_error(res, body_rc, msg);
        goto done;
    }

    const char *segs[MAX_SEGMENTS];
    size_t lens[MAX_SEGMENTS];
    int nsegs = daebus__http_split_path(raw, segbuf, segs, lens, MAX_SEGMENTS);
    if (nsegs == -2) {
        daebus_http_send_error(res, 400, "Invalid UTF-8 in path");
        goto done;
    }
    if (nsegs < 0) {
        send_path_error(res, 404, "Not Found", raw);
        goto done;
    }

    unsigned want = req->method_bit;
    if (want == DAEBUS_HEAD)
        want = DAEBUS_HEAD | DAEBUS_GET;
    daebus__http_match m;
    int mrc = daebus__http_router_match(h->router, segs, lens, (size_t)nsegs, want, &m);

    if (mrc != 1) {
        char *file = NULL;
        int src = mrc == -1 ? static_lookup(h, segs, lens, nsegs, &file) : 0;
        unsigned allow = mrc == 0 ? m.allow : src == 1 ? DAEBUS_GET : 0;
        if (req->method_bit == DAEBUS_OPTIONS && allow) {
            /* Automatic OPTIONS: the Allow list, plus the preflight headers. */
            char text[128];
            allow_text(allow, text, sizeof text);
            res->hlen = 0;
            if (res->headers)
                res->headers[0] = '\0';
            if (cors && headers_buffer(res) == 0)
                res->hlen = daebus__http_cors_preflight(
                    cors, origin, mg_get_header(req->conn, "Access-Control-Request-Headers"), allow,
                    res->headers, DAEBUS__HTTP_EXTRA_HEADERS);
            daebus_http_set_header(res, "Allow", text);
            daebus_http_send(res, 204, NULL, NULL, 0);
        } else if (src == 1 && (req->method_bit & (DAEBUS_GET | DAEBUS_HEAD))) {
            if (run_middleware(h, req, res, NULL) == 0)
                send_file(res, file);
        } else if (allow) {
            send_405(res, allow, raw);
        } else {
            send_path_error(res, 404, "Not Found", raw);
        }
        free(file);
        goto done;
    }

    const daebus__http_route *rt = m.route;
    int idx = daebus__http_method_index(req->method_bit);
    const daebus__handler *hd = idx >= 0 ? rt->handlers[idx] : NULL;
    if (!hd && req->method_bit == DAEBUS_HEAD) {
        idx = daebus__http_method_index(DAEBUS_GET);
        hd = rt->handlers[idx];
    }
    fill_params(req, rt, idx, &m, raw, segs);
    if (build_payload(req, res, rt) || !req->payload) {
        if (!res->sent)
            daebus_http_send_error(res, 500, "Internal server error");
        goto done;
    }
    if (run_middleware(h, req, res, hd))
        goto done;
    const daebus_handler_desc *d = hd->desc;
    int rc = d->fn.route(req, res, d->opts.user);
    if (res->streaming && !res->stream_ended)
        daebus_http_stream_end(res);
    if (!res->sent) {
        if (rc < 0) {
            daebus_log(DAEBUS_LOG_ERROR, "http",
                       "%s %s: route %s (%s:%d) failed: returned %d (%s: %s)", req->method,
                       req->path, rt->pattern, d->file ? d->file : "?", d->line, rc,
                       daebus_errname(rc), daebus_strerror(rc));
            daebus_http_send_error(res, 500, "Internal server error");
        } else {
            daebus_http_send(res, 204, NULL, NULL, 0);
        }
    } else if (rc < 0) {
        daebus_log(DAEBUS_LOG_WARNING, "http", "%s %s: route %s returned %d after responding",
                   req->method, req->path, rt->pattern, rc);
    }
done:
    daebus__http_cors_unref(cors);
    free(segbuf);
}

/* raw, query: an absolute-form target's path and query (NULL: CivetWeb's). */
static int dispatch(struct mg_connection *conn, daebus_http *h, const char *raw, const char *query,
                    double start)
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

int daebus__http_dispatch(struct mg_connection *conn, void *cbdata)
{
    /* begin_request started the clock on this thread just before. */
    double start = tl_req_start > 0 ? tl_req_start : daebus__now_mono();
    tl_req_start = 0;
    return dispatch(conn, cbdata, NULL, NULL, start);
}

/* ---- what CivetWeb would refuse badly, or not at all ---- */

/* Answers status with a JSON error (and one extra header) outside the
 * dispatcher; the connection closes after. CivetWeb marks an upgrade
 * request as a WebSocket before begin_request, and its header calls then
 * write no status line: the head is written whole. Returns: status. */
static int refuse(daebus_http *h, struct mg_connection *conn, int status, const char *message,
                  const char *hname, const char *hvalue)
{
    daebus_http_response res = {0};
    res.http = h;
    res.conn = conn;
    res.raw_head = true;
    res.close_after = true;
    const struct mg_request_info *ri = mg_get_request_info(conn);
    res.head_only = ri && ri->request_method && strcmp(ri->request_method, "HEAD") == 0;
    if (hname)
        daebus_http_set_header(&res, hname, hvalue);
    daebus_http_send_error(&res, status, message);
    free(res.headers);
    atomic_fetch_add(&h->st_requests, 1);
    atomic_fetch_add(&h->st_class[status / 100], 1);
    atomic_fetch_add(&h->st_bytes_out, res.bytes_out);
    return status;
}

/* CivetWeb's own test: name's value contains token, in any case. */
static bool header_has(const struct mg_connection *conn, const char *name, const char *token)
{
    const char *v = mg_get_header(conn, name);
    size_t n = strlen(token);
    for (; v && *v; v++)
        if (strncasecmp(v, token, n) == 0)
            return true;
    return false;
}

/* Runs before CivetWeb handles a request (and its WebSocket handshake):
 * refuses a request whose body framing is ambiguous (Content-Length
 * malformed, repeated with different values, or next to Transfer-Encoding:
 * request smuggling) and upgrades CivetWeb would answer without a status
 * line. Returns: 0 (go on) or the status sent. */
int daebus__http_begin_request(struct mg_connection *conn)
{
    daebus_http *h = mg_get_user_data(mg_get_context(conn));
    request_clock();
    const struct mg_request_info *ri = mg_get_request_info(conn);
    if (!h || !ri)
        return 0;
    int ncl = 0;
    bool bad = false, te = false;
    long long cl = -1;
    for (int i = 0; i < ri->num_headers; i++) {
        const char *name = ri->http_headers[i].name;
        if (!name)
            continue;
        if (strcasecmp(name, "Content-Length") == 0) {
            long long v = -1;
            if (!daebus__http_parse_content_length(ri->http_headers[i].value, &v) ||
                (ncl && v != cl))
                bad = true;
            cl = v;
            ncl++;
        } else if (strcasecmp(name, "Transfer-Encoding") == 0) {
            te = true;
        }
    }
    if (bad || (ncl && te)) {
        daebus__http_note(h, DAEBUS__HTTP_NOTE_BAD, "%s from %s: %s: 400",
                          ri->request_method ? ri->request_method : "?", ri->remote_addr,
                          bad ? "malformed or conflicting Content-Length"
                              : "both Content-Length and Transfer-Encoding");
        return refuse(h, conn, 400,
                      bad ? "Invalid Content-Length" : "Content-Length with Transfer-Encoding",
                      NULL, NULL);
    }
    /* What makes CivetWeb start a WebSocket handshake. */
    if (header_has(conn, "Upgrade", "websocket") && header_has(conn, "Connection", "upgrade")) {
        const char *key = mg_get_header(conn, "Sec-WebSocket-Key");
        const char *version = mg_get_header(conn, "Sec-WebSocket-Version");
        if (!key || !*key) {
            daebus__http_note(h, DAEBUS__HTTP_NOTE_BAD,
                              "WebSocket upgrade from %s without Sec-WebSocket-Key: 400",
                              ri->remote_addr);
            return refuse(h, conn, 400, "Missing Sec-WebSocket-Key", NULL, NULL);
        }
        if (!version || strcmp(version, "13") != 0) {
            daebus__http_note(h, DAEBUS__HTTP_NOTE_BAD,
                              "WebSocket upgrade from %s with an unsupported version: 426",
                              ri->remote_addr);
            return refuse(h, conn, 426, "Unsupported WebSocket version (13 is supported)",
                          "Sec-WebSocket-Version", "13");
        }
    }
    return 0;
}

/* True when CivetWeb parsed this request fully and accepted its framing, so
 * that an unanswered one was dropped only for its target. */
static bool framing_ok(const struct mg_request_info *ri)
{
    if (!ri->http_version ||
        (strcmp(ri->http_version, "1.1") != 0 && strcmp(ri->http_version, "1.0") != 0))
        return false;
    for (int i = 0; i < ri->num_headers; i++) {
        const char *name = ri->http_headers[i].name;
        long long v;
        if (name && strcasecmp(name, "Content-Length") == 0 &&
            !daebus__http_parse_content_length(ri->http_headers[i].value, &v))
            return false;
        if (name && strcasecmp(name, "Transfer-Encoding") == 0)
            return false;
    }
    return true;
}

/* CivetWeb 1.15 parses an absolute-form target on another host or port, and
 * "*", then closes the connection without a word. Its close callback still
 * holds the request: answer it here (the connection closes after). */
void daebus__http_connection_close(const struct mg_connection *cconn)
{
    struct mg_connection *conn = (struct mg_connection *)cconn;
    daebus_http *h = mg_get_user_data(mg_get_context(conn));
    const struct mg_request_info *ri = mg_get_request_info(conn);
    if (!h || !ri || ri->local_uri || !ri->request_method || !ri->request_uri || !framing_ok(ri))
        return;
    const char *target = ri->request_uri;
    if (strcmp(target, "*") == 0) {
        if (strcmp(ri->request_method, "OPTIONS") != 0) {
            refuse(h, conn, 400, "Request target * is for OPTIONS only", NULL, NULL);
            return;
        }
        /* The server as a whole: what any route may be asked. */
        daebus_http_response res = {0};
        res.http = h;
        res.conn = conn;
        res.raw_head = true;
        daebus_http_set_header(&res, "Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS");
        daebus_http_send(&res, 204, NULL, NULL, 0);
        free(res.headers);
        atomic_fetch_add(&h->st_requests, 1);
        atomic_fetch_add(&h->st_class[2], 1);
        return;
    }
    const char *path = daebus__http_absolute_path(target);
    if (!path)
        return; /* CivetWeb answered it (400 Invalid URI) */
    if (atomic_load(&h->draining) || !h->router)
        return;
    /* CivetWeb leaves the query on an absolute-form target: split it off. */
    size_t plen = strcspn(path, "?#");
    char *raw = malloc(plen + 2);
    if (!raw)
        return;
    if (path[0] == '/') {
        memcpy(raw, path, plen);
        raw[plen] = '\0';
    } else {
        raw[0] = '/';
        raw[1] = '\0';
    }
    const char *query = path[plen] == '?' ? path + plen + 1 : NULL;
    dispatch(conn, h, raw, query, request_clock());
    free(raw);
}
