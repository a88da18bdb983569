/* bus_gateway_parse.h - the action gateway's pure parts (internal, fuzzed by
 * tests/fuzz/fuzz_ws_envelope.c): reading a "publish" frame, the allow-list,
 * the answer frames.
 * Thread: callable from any thread.
 */
#ifndef DAEBUS_BUS_GATEWAY_PARSE_H
#define DAEBUS_BUS_GATEWAY_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <cjson/cJSON.h>

/* The parts of a publish frame, borrowed from its root. */
typedef struct daebus__gw_frame {
    const cJSON *rid;     /* data.request_id, else the top-level one (a string or a number),
                             else NULL; set even when the frame is refused */
    const char *service;  /* "channel": non-empty */
    const char *action;   /* data.action: non-empty */
    const cJSON *payload; /* data.payload, an object; NULL: absent or null ({} is sent) */
} daebus__gw_frame;

/* Reads the publish frame root (the whole client message). Returns: true, or
 * false with the reason (well-formed UTF-8) in err. */
bool daebus__gateway_parse(const cJSON *root, daebus__gw_frame *out, char *err, size_t cap);

/* Is service.action on allow (comma-separated "service", "service.*" or
 * "service.action" entries; NULL: nothing)? */
bool daebus__gateway_allowed(const char *allow, const char *service, const char *action);

/* Writes the refusal of a call not on the allow-list (names cut on
 * character boundaries). */
void daebus__gateway_not_allowed(char *err, size_t cap, const char *service, const char *action);

/* {"type": type[, "request_id": rid]}; NULL on allocation failure. */
cJSON *daebus__gateway_frame(const char *type, const cJSON *rid);

/* {"type":"response"[,"request_id":rid],"success":false,"error":text[,"data":data]};
 * NULL on allocation failure. Ownership: borrowed arguments. */
cJSON *daebus__gateway_failure(const cJSON *rid, const char *text, const cJSON *data);

#endif
