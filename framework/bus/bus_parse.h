/* bus_parse.h - pure parsers and builders of the bus wire format (internal).
 *
 * No I/O, no globals: the fuzz targets call these directly. See docs/protocol.md §1.
 */
#ifndef DAEBUS_BUS_PARSE_H
#define DAEBUS_BUS_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <cjson/cJSON.h>

/* A parsed request envelope (service channel or listener message). */
typedef struct daebus__bus_envelope {
    cJSON *root;             /* owned: the decoded message (an object) */
    const char *action;      /* borrowed from root; NULL if missing, empty or not a string */
    const cJSON *request_id; /* borrowed; NULL if absent */
    const char *reply_to;    /* borrowed; NULL if missing, empty or not a string */
    const char *service;     /* borrowed; NULL if missing or not a string */
    cJSON *payload;          /* owned: the effective payload (see below) */
} daebus__bus_envelope;

/* Parses one request message of len bytes (need not be NUL-terminated) with
 * daebus_json_parse (daebus/json.h: "\u0000" arrives as the bytes C0 80).
 * Effective payload: "payload" object/array/number/null as given; a string is
 * parsed as JSON ({} if it does not parse); a missing "payload" gives {} when
 * the message has reply_to or request_id, otherwise (fire-and-forget,
 * Python's send_to_service shape) the whole message minus "action".
 * Returns: 0 (out filled; free with daebus__bus_envelope_free), or -1 for
 * malformed JSON / non-object (out zeroed; why in errbuf). */
int daebus__bus_parse_request(const char *data, size_t len, daebus__bus_envelope *out, char *errbuf,
                              size_t errlen);
void daebus__bus_envelope_free(daebus__bus_envelope *env);

/* Checks that a message is well-formed UTF-8 before it is parsed (one
 * pass): Redis does not check, cJSON does not either, and a reply that
 * echoes invalid bytes (an action name in "Unknown action '...'") is
 * refused by Python's json.loads.
 * Returns: 0, or -1 with "invalid UTF-8 at byte N" in errbuf (N: the offset
 * of the first byte that does not start a well-formed character). */
int daebus__bus_check_utf8(const char *data, size_t len, char *errbuf, size_t errlen);

/* For a request that does not parse (daebus__bus_parse_request failed): a
 * lenient scan of the raw text for the top-level members "reply_to" and
 * "request_id" with plain string values (no escapes), so that the caller
 * can get an error reply instead of a time-out. Copies them, NUL-terminated,
 * into reply_to (rlen bytes) and request_id (idlen bytes).
 * Returns: 0 if both were read and fit, else -1. */
int daebus__bus_scan_reply(const char *data, size_t len, char *reply_to, size_t rlen,
                           char *request_id, size_t idlen);

/* The top-level member "action" when its value is a plain non-empty string
 * (no escapes): a cheap look at a message without parsing it (a replica
 * that only claims it later). Copies it, NUL-terminated, into action (alen
 * bytes). Returns: 0 if read and fitting, else -1 (absent, not plain, too
 * long, or the text is not JSON enough to tell). */
int daebus__bus_scan_action(const char *data, size_t len, char *action, size_t alen);

/* For a message refused unparsed because of its size, of which only its
 * first bytes (head) and its last bytes (tail) are kept: reads the
 * top-level "reply_to" and "request_id" plain string members forwards from
 * the head (as daebus__bus_scan_reply) and backwards from the tail, over the
 * trailing members whose values are plain strings or literals (callers put
 * both after the payload: {"action","payload",..,"reply_to","request_id",..}).
 * Each value found is copied, NUL-terminated; one not found (or not fitting)
 * is left "" (rlen and idlen must be > 0).
 * Returns: 0 if both were read and fit, else -1. */
int daebus__bus_scan_reply_cut(const char *head, size_t hlen, const char *tail, size_t tlen,
                               char *reply_to, size_t rlen, char *request_id, size_t idlen);

/* Parses a listener message: returns the decoded object (owned), or NULL
 * when data is not a JSON object. */
cJSON *daebus__bus_parse_object(const char *data, size_t len);

/* The reply channel of a request: reply_to, else "<service>.responses" when
 * it has a request_id (service: the request's "service" field, else
 * fallback_service), else NULL (fire-and-forget). Writes into buf.
 * Returns: buf, or NULL (no reply channel, or one longer than len - 1). */
const char *daebus__bus_reply_channel(const daebus__bus_envelope *env, const char *fallback_service,
                                      char *buf, size_t len);

/* Builds a response {"status","payload","request_id","final"} (that key
 * order; request_id NULL -> null). payload NULL -> {}. Returns: a malloc'd
 * compact JSON string, or NULL (out of memory). */
char *daebus__bus_build_response(bool error, const cJSON *payload, const cJSON *request_id,
                                 bool final);

/* Progress payload: copy of payload with progress_percentage (clamped 0..100)
 * when pct >= 0; a non-object payload is wrapped as {"data":..,"progress_percentage":..}.
 * Returns: a new cJSON (owned) or NULL (out of memory). */
cJSON *daebus__bus_progress_payload(const cJSON *payload, double pct);

/* A parsed response (caller side). */
typedef struct daebus__bus_response {
    cJSON *root;            /* owned */
    const char *request_id; /* borrowed; NULL if absent or not a string */
    bool error;             /* status == "error" */
    bool final;             /* "final" (missing = true); status "progress" + not final = progress */
    const cJSON *payload;   /* borrowed; NULL if absent */
} daebus__bus_response;

/* Returns: 0 or -1 (malformed or not an object). */
int daebus__bus_parse_response(const char *data, size_t len, daebus__bus_response *out);
void daebus__bus_response_free(daebus__bus_response *r);

#endif
