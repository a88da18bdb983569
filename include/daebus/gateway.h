/* daebus/gateway.h - the action gateway: WebSocket clients call bus actions.
 *
 * The TypeScript client (daebus-client) calls actions with the frame
 *   {"type":"publish","channel":"<service>","data":{"action":A,"payload":{...},
 *    "request_id":"req_<ms>_<n>","reply_channel":...,"timestamp":<ms>}}
 * The gateway, off until daebus_gateway_enable(), answers it with one final
 *   {"type":"response","request_id":R,"success":true,"data":<reply payload>}
 * or {"type":"response","request_id":R,"success":false,"error":"<text>"[,"data":P]}
 * and relays each progress reply before it as
 *   {"type":"progress","request_id":R,"data":<progress payload>}.
 * R is data.request_id (else the frame's top-level request_id; absent: no
 * request_id key). The call goes over the Redis action bus with the bus's
 * own caller (caller.h), asynchronously: no thread waits for a reply.
 *
 *   daebus_gateway_options go = DAEBUS_GATEWAY_OPTIONS_INIT;
 *   go.allow = "chat_service.list_rooms";   // nothing else is callable
 *   daebus_gateway_enable(app, &go);         // after the ws and bus attach
 *
 * Checks, in order, each refusal answered with success:false and not sent:
 * the frame's shape (channel, data, data.action strings; data.payload an
 * object when given), the allow-list, the WebSocket component's authorisation
 * (daebus_ws_authorize() with DAEBUS_WS_AUTH_CALL: the hook of
 * daebus_ws_options.authorize sees the client, service and action; its reason
 * is the error text), the client's calls in flight. Docs: docs/channels/gateway.md.
 * Thread: callable from any thread.
 */
#ifndef DAEBUS_GATEWAY_H
#define DAEBUS_GATEWAY_H

#include <stdbool.h>
#include <stddef.h>
#include <cjson/cJSON.h>
#include "daebus/app.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct daebus_gateway_options {
    /* Comma-separated entries "service" (all its actions), "service.*" (the
     * same) or "service.action". NULL or empty: nothing is callable. */
    const char *allow;
    double timeout;    /* seconds one call may take; 0 = 10 */
    int max_in_flight; /* calls one client may have unanswered at once; 0 = 8. The next
                          one gets "Too many calls in flight (max N)" and is not sent */
} daebus_gateway_options;

#define DAEBUS_GATEWAY_OPTIONS_INIT                                                                \
    {                                                                                              \
        NULL, 0.0, 0                                                                               \
    }

/* Turns the gateway on: registers the SOCKET handler of "publish" (a
 * "publish" handler of the app registered later replaces it). The WebSocket
 * and bus components must be attached first; the gateway lives as long as the
 * bus. Ownership: opts and its strings are copied.
 * Returns: 0, DAEBUS_EINVAL (bad option: an empty entry, timeout < 0,
 * max_in_flight < 0), DAEBUS_ESTATE (no WebSocket or bus component, or the
 * app runs), DAEBUS_EEXIST (enabled already), DAEBUS_ENOMEM.
 * Thread: before the app runs. */
DAEBUS_API int daebus_gateway_enable(daebus_app *app, const daebus_gateway_options *opts);

/* Counters of the gateway (monotonic, except in_flight). */
typedef struct daebus_gateway_stats {
    unsigned long long calls;     /* calls sent to a service */
    unsigned long long refused;   /* frames answered without a call (shape, allow-list,
                                     authorise hook, in-flight limit, bus down) */
    unsigned long long failed;    /* calls answered success:false (error reply, time-out,
                                     no listener, connection lost) */
    unsigned long long timeouts;  /* of those, time-outs */
    unsigned long long orphaned;  /* replies whose client had gone: dropped */
    unsigned long long in_flight; /* calls unanswered now (gauge) */
} daebus_gateway_stats;

/* Fills out. Returns: 0, DAEBUS_EINVAL, DAEBUS_ESTATE (no gateway enabled).
 * Thread: callable from any thread. */
DAEBUS_API int daebus_gateway_get_stats(const daebus_app *app, daebus_gateway_stats *out);

#ifdef __cplusplus
}
#endif
#endif
