/* http_hooks.c - the CivetWeb callbacks of the HTTP component.
 *
 * init_connection and begin_request start the request's clock (a request has
 * one deadline: request_timeout_ms from when the worker took the connection,
 * or from the end of the headers on a kept-alive one). begin_request refuses
 * ambiguous body framing (request smuggling) and the upgrades CivetWeb would
 * answer without a status line; connection_close answers the targets
 * CivetWeb drops without a word. The CivetWeb side of each (what it does and
 * why the answer is needed) is written down in civet/civet.c.
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

int daebus__http_dispatch(struct mg_connection *conn, void *cbdata)
{
    /* begin_request started the clock on this thread just before. */
    double start = tl_req_start > 0 ? tl_req_start : daebus__now_mono();
    tl_req_start = 0;
    return daebus__http_dispatch_target(conn, cbdata, NULL, NULL, start);
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
    if (daebus__civet_is_upgrade(conn)) {
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

/* The requests CivetWeb parsed but drops without a word (civet.c:
 * daebus__civet_dropped_target): OPTIONS * is answered for the server as a
 * whole, another method with "*" is refused, an absolute-form target is
 * routed as its path (the connection closes after). */
void daebus__http_connection_close(const struct mg_connection *cconn)
{
    struct mg_connection *conn = (struct mg_connection *)cconn;
    daebus_http *h = mg_get_user_data(mg_get_context(conn));
    const struct mg_request_info *ri = mg_get_request_info(conn);
    const char *target = daebus__civet_dropped_target(conn);
    if (!h || !target || !framing_ok(ri))
        return;
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
    daebus__http_dispatch_target(conn, h, raw, query, request_clock());
    free(raw);
}
