/* ws_request.h - the handler context of the WebSocket layer (ws_request.c):
 * the request a socket handler gets, the connection info an id generator
 * gets, and the frames that answer a client's message.
 *
 * Thread: the client's own CivetWeb thread (handlers), unless a line says
 * otherwise.
 */
#ifndef DAEBUS_WS_REQUEST_H
#define DAEBUS_WS_REQUEST_H

#include "ws_internal.h"

struct mg_request_info;

struct daebus_ws_conn_info {
    const struct mg_connection *conn;
    const struct mg_request_info *ri;
};

struct daebus_ws_request {
    daebus_ws *ws;
    ws_client *c;
    const char *type;
    const cJSON *data;
    const cJSON *message;
    const cJSON *rid;
    const daebus_ws_conn_info *info; /* connect handler only */
    int failed;
    char *fail_msg;
    int rejected;
    char *reject_reason;
};

/* Frees what a handler left in req (failure and rejection texts). */
void daebus__ws_request_clear(daebus_ws_request *req);

/* Queues a text frame for c. Ownership: text (malloc'd) is taken, NULL
 * included. Returns: as daebus__ws_enqueue, or DAEBUS_ENOMEM. Thread: any. */
int daebus__ws_send_text_take(ws_client *c, char *text, size_t len);
/* Queues a protocol error answering a client message; rid (borrowed, may be
 * NULL) is the message's request_id; retry < 0: no retry_after. */
void daebus__ws_send_error(ws_client *c, const char *message, double retry, const cJSON *rid);
/* As daebus__ws_send_error for a message that was not parsed: its
 * request_id is read from buf[0..len) when it can be. */
void daebus__ws_send_error_scan(ws_client *c, const char *message, double retry, const char *buf,
                                size_t len);
/* Logs (at most once a second) a frame of len bytes to `to` refused because
 * it is over queue_max_bytes. Thread: any. */
void daebus__ws_log_too_big(daebus_ws *ws, const char *what, const char *to, size_t len);

#endif
