/* http_cors.h - CORS configuration and the headers it produces (internal).
 *
 * A configuration is immutable once built and reference-counted, so the HTTP
 * component can swap it while requests use the old one.
 *
 * Built on any thread; ref/unref and the header functions are safe on a
 * shared configuration.
 * Thread: callable from any thread.
 */
#ifndef DAEBUS_HTTP_CORS_H
#define DAEBUS_HTTP_CORS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <cjson/cJSON.h>
#include "daebus/http.h"

typedef struct daebus__http_cors {
    atomic_int refs;
    bool any_origin;
    char *origins; /* normalised "a,b,c" (no spaces) */
    char *methods; /* upper-case list, or NULL = the route's methods */
    bool any_headers;
    char *headers; /* list, or NULL */
    char *expose;  /* list, or NULL */
    bool credentials;
    int max_age;
} daebus__http_cors;

/* Builds a configuration. *out is NULL when c is NULL or has no
 * allowed_origins (CORS off). Returns: 0, DAEBUS_EINVAL (err filled),
 * DAEBUS_ENOMEM. Ownership: *out has one reference. */
int daebus__http_cors_build(const daebus_http_cors *c, daebus__http_cors **out, daebus_error *err);
/* The same from a JSON object with the Python keys (see http.h). */
int daebus__http_cors_build_json(const cJSON *config, daebus__http_cors **out, daebus_error *err);

daebus__http_cors *daebus__http_cors_ref(daebus__http_cors *c);
void daebus__http_cors_unref(daebus__http_cors *c);

/* Returns: true if origin (the Origin header's value) may see responses. */
bool daebus__http_cors_origin_allowed(const daebus__http_cors *c, const char *origin);

/* Writes the CORS header lines ("Name: value\r\n") of an ordinary response to
 * a request with origin (NULL: no Origin header) into buf (NUL-terminated).
 * Nothing is written for a disallowed origin or when c is NULL, except
 * "Vary: Origin" whenever c is not NULL.
 * Returns: the length written, or 0 when it did not fit. */
size_t daebus__http_cors_simple(const daebus__http_cors *c, const char *origin, char *buf,
                                size_t cap);

/* Writes the header lines of a preflight answer: origin as above,
 * request_headers the Access-Control-Request-Headers value (may be NULL),
 * route_methods the DAEBUS_* mask of the matched path.
 * Returns: the length written (0 for a disallowed origin except Vary, or
 * when it did not fit). */
size_t daebus__http_cors_preflight(const daebus__http_cors *c, const char *origin,
                                   const char *request_headers, unsigned route_methods, char *buf,
                                   size_t cap);

/* Writes "GET, POST, ..." for a DAEBUS_* method mask into buf.
 * Returns: the length written. */
size_t daebus__http_methods_text(unsigned mask, char *buf, size_t cap);

#endif
