/* ws_parse.h - pure helpers of the WebSocket component (internal): client
 * envelope parsing, close payloads, server envelopes (UTF-8: core/utf8.h).
 *
 * Everything here is a pure function of its arguments (no globals, no I/O),
 * so that the fuzzing targets can drive it directly.
 */
#ifndef DAEBUS_WS_PARSE_H
#define DAEBUS_WS_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <cjson/cJSON.h>
#include "daebus/json.h"
#include "json.h"

typedef enum ws_parse_result {
    WS_PARSE_OK = 0,
    WS_PARSE_INVALID_JSON, /* not JSON at all */
    WS_PARSE_NOT_OBJECT,   /* valid JSON, but not an object */
    WS_PARSE_NO_TYPE       /* "type" missing, null, empty or not a string */
} ws_parse_result;

/* A parsed client message {"type": T, "data": D, "request_id": R}. */
typedef struct ws_message {
    cJSON *root;             /* owned: free with daebus__ws_message_free() */
    const char *type;        /* inside root */
    const cJSON *data;       /* inside root, or NULL when absent */
    const cJSON *request_id; /* string or number inside root, or NULL */
} ws_message;

/* Parses len bytes of buf (need not be NUL-terminated). On WS_PARSE_OK and
 * WS_PARSE_NO_TYPE out->root is set (free it); otherwise it is NULL. */
ws_parse_result daebus__ws_parse_message(const char *buf, size_t len, ws_message *out);
void daebus__ws_message_free(ws_message *m);

/* Writes a close frame payload (2-byte code + reason, at most 125 bytes; the
 * reason is cut at a UTF-8 boundary) into out. Returns: its length. */
size_t daebus__ws_close_payload(int code, const char *reason, char out[125]);

/* Reads the code of a close payload. Returns: the code, 1005 (none given) for
 * an empty payload, or -1 for a malformed one (length 1, bad UTF-8 reason or a
 * code a peer may not send). */
int daebus__ws_close_code(const char *payload, size_t n);

/* The header of a frame the server sends (RFC 6455 5.2, as CivetWeb 1.15's
 * mg_websocket_write builds it): FIN set, no RSV bits (no extension is
 * negotiated), opcode; unmasked (server frames); the payload length in 7 bits
 * (up to 125), 16 bits after 126 (up to 65535) or 64 bits after 127, in
 * network order. Returns: its length (2, 4 or 10), written at out[0..). */
size_t daebus__ws_frame_head(int opcode, size_t len, unsigned char out[10]);

/* Appends {"type": type[, "data": data][, "request_id": rid][, "success":
 * true|false]} to b (success < 0: no "success" key; type NULL: "message"),
 * exactly as daebus_json_print prints the same cJSON object, without building
 * it. Ownership: data and rid are borrowed. Returns: false once b failed. */
bool daebus__ws_envelope_into(daebus__json_out *b, const char *type, const cJSON *data,
                              const cJSON *rid, int success);

/* Builds {"type": type, "data": data[, "request_id": rid]} (data NULL: no
 * "data" key). Ownership: data and rid are borrowed; the result is malloc'd
 * (free()), NULL on allocation failure. *len gets strlen. */
char *daebus__ws_envelope(const char *type, const cJSON *data, const cJSON *rid, size_t *len);

/* Builds {"type":"response","data": data[, "request_id": rid],"success":true}:
 * the answer to a client message. Ownership: as daebus__ws_envelope(). */
char *daebus__ws_response_envelope(const cJSON *data, const cJSON *rid, size_t *len);

/* Builds {"type":"error","error": message[, "retry_after": retry]
 * [, "request_id": rid],"success":false} for the protocol errors (retry < 0:
 * no retry_after; rid NULL: no request_id). rid is borrowed. */
char *daebus__ws_error_envelope_rid(const char *message, double retry, const cJSON *rid,
                                    size_t *len);

/* daebus__ws_error_envelope_rid() without a request_id. */
char *daebus__ws_error_envelope(const char *message, double retry, size_t *len);

/* Builds {"type":"error","data":{"error": message}[, "request_id": rid],
 * "success":false,"error": message}. */
char *daebus__ws_handler_error_envelope(const char *message, const cJSON *rid, size_t *len);

/* Reads the top-level "request_id" of a message that may not parse (invalid
 * JSON, nested too deeply, not yet parsed): scans buf[0..len) without
 * recursion for a key "request_id" of the outermost object followed by a
 * string or number literal. A string must be valid UTF-8 once unescaped.
 * Without one, a message of type "publish" (the TypeScript client's gateway
 * frame) gives the "request_id" of its "data" object.
 * Ownership: returns a new item (cJSON_Delete()), or NULL when none is found. */
cJSON *daebus__ws_scan_request_id(const char *buf, size_t len);

#endif
