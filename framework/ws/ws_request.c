/* ws_request.c - the handler context: request and connection accessors, failing, rejecting, replies.
 *
 * A daebus_ws_request lives on the stack of the CivetWeb thread that runs
 * the handler and is valid until the handler returns; the connection info
 * exists only while the upgrade request is being decided (id generator and
 * SOCKET_CONNECT handler).
 */
#include "ws_request.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <civetweb.h>

#include "daebus/log.h"
#include "utf8.h"
#include "ws_client.h"
#include "ws_io.h"
#include "ws_parse.h"

/* ---- replies ---- */

int daebus__ws_send_text_take(ws_client *c, char *text, size_t len)
{
    ws_frame *f = daebus__ws_frame_text_take(text, len);
    if (!f)
        return DAEBUS_ENOMEM;
    int rc = daebus__ws_enqueue(c, f, false);
    daebus__ws_frame_unref(f);
    return rc;
}

void daebus__ws_send_error(ws_client *c, const char *message, double retry, const cJSON *rid)
{
    size_t len = 0;
    char *s = daebus__ws_error_envelope_rid(message, retry, rid, &len);
    if (s)
        daebus__ws_send_text_take(c, s, len);
}

void daebus__ws_send_error_scan(ws_client *c, const char *message, double retry, const char *buf,
                                size_t len)
{
    cJSON *rid = daebus__ws_scan_request_id(buf, len);
    daebus__ws_send_error(c, message, retry, rid);
    cJSON_Delete(rid);
}

void daebus__ws_log_too_big(daebus_ws *ws, const char *what, const char *to, size_t len)
{
    uint64_t dropped = 0;
    if (daebus__ws_log_allow(ws, WS_LOG_TOOBIG, &dropped))
        daebus_log(DAEBUS_LOG_WARNING, "websocket",
                   "%s to %s not sent: its frame (%zu bytes) is larger than the outbound queue "
                   "limit (queue_max_bytes %zu); recipients stay connected (%llu more such lines "
                   "suppressed)",
                   what, to, len, ws->queue_max_bytes, (unsigned long long)dropped);
}

void daebus__ws_request_clear(daebus_ws_request *req)
{
    free(req->fail_msg);
    free(req->reject_reason);
}

/* ---- handler context ---- */

const char *daebus_ws_request_type(const daebus_ws_request *req)
{
    return req ? req->type : NULL;
}
const cJSON *daebus_ws_request_data(const daebus_ws_request *req)
{
    return req ? req->data : NULL;
}
const cJSON *daebus_ws_request_message(const daebus_ws_request *req)
{
    return req ? req->message : NULL;
}
const cJSON *daebus_ws_request_request_id(const daebus_ws_request *req)
{
    return req ? req->rid : NULL;
}
const char *daebus_ws_request_client_id(const daebus_ws_request *req)
{
    return req ? req->c->id : NULL;
}
daebus_ws *daebus_ws_request_ws(const daebus_ws_request *req)
{
    return req ? req->ws : NULL;
}
daebus_app *daebus_ws_request_app(const daebus_ws_request *req)
{
    return req ? req->ws->app : NULL;
}
const char *daebus_ws_request_path(const daebus_ws_request *req)
{
    return req ? req->c->path : NULL;
}
const char *daebus_ws_request_header(const daebus_ws_request *req, const char *name)
{
    return req && req->info && name ? mg_get_header(req->info->conn, name) : NULL;
}
const char *daebus_ws_request_query(const daebus_ws_request *req)
{
    return req && req->info ? req->info->ri->query_string : NULL;
}

cJSON *daebus_ws_request_metadata(const daebus_ws_request *req)
{
    return req ? daebus__ws_client_metadata(req->c) : NULL;
}

cJSON *daebus_ws_request_fail(daebus_ws_request *req, const char *fmt, ...)
{
    if (!req)
        return NULL;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    daebus__utf8_vsnprintf(buf, sizeof buf, fmt ? fmt : "Handler failed", ap);
    va_end(ap);
    free(req->fail_msg);
    req->fail_msg = strdup(buf);
    req->failed = 1;
    return NULL;
}

cJSON *daebus_ws_request_reject(daebus_ws_request *req, const char *reason)
{
    if (!req)
        return NULL;
    free(req->reject_reason);
    req->reject_reason = strdup(reason ? reason : "Connection rejected");
    req->rejected = 1;
    return NULL;
}

int daebus_ws_request_send(daebus_ws_request *req, const cJSON *data, const char *type)
{
    if (!req)
        return DAEBUS_EINVAL;
    size_t len = 0;
    char *s = daebus__ws_envelope(type ? type : "message", data, NULL, &len);
    if (!s)
        return DAEBUS_ENOMEM;
    int rc = daebus__ws_send_text_take(req->c, s, len);
    if (rc == DAEBUS_ETOOBIG)
        daebus__ws_log_too_big(req->ws, "request_send", req->c->id, len);
    return rc;
}

/* ---- connection info for id generators ---- */

const char *daebus_ws_conn_remote_address(const daebus_ws_conn_info *info)
{
    return info ? info->ri->remote_addr : NULL;
}
int daebus_ws_conn_remote_port(const daebus_ws_conn_info *info)
{
    return info ? info->ri->remote_port : -1;
}
const char *daebus_ws_conn_path(const daebus_ws_conn_info *info)
{
    return info ? info->ri->local_uri : NULL;
}
const char *daebus_ws_conn_query(const daebus_ws_conn_info *info)
{
    return info ? info->ri->query_string : NULL;
}
const char *daebus_ws_conn_header(const daebus_ws_conn_info *info, const char *name)
{
    return info && name ? mg_get_header(info->conn, name) : NULL;
}
