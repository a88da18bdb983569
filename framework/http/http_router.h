/* http_router.h - the route table of the HTTP component: a segment trie (internal).
 *
 * Patterns are Flask-style: literal segments, "<name>" (any non-empty
 * segment), "<int:name>" (an optional '-' and digits), "<float:name>" (a
 * finite decimal number: "-2.5", "3", "1e3"), "<string:name>" (same as
 * "<name>") and "<path:name>" (the rest of the path, slashes included; last
 * segment only). A lookup walks one trie level per path segment, trying the
 * literal child first (binary search), then <int:>, <float:>, <name>, <path:>,
 * backtracking when a branch dead-ends: an exact segment beats a parameter and
 * the cost does not grow with the number of routes.
 *
 * Built (create/add) on one thread when the server starts; lookups then run on
 * any number of CivetWeb workers at once (the trie is read-only).
 * Thread: the app's owning thread.
 */
#ifndef DAEBUS_HTTP_ROUTER_H
#define DAEBUS_HTTP_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include "daebus/error.h"

#define DAEBUS__HTTP_MAX_PARAMS  16
#define DAEBUS__HTTP_METHOD_BITS 7 /* DAEBUS_GET .. DAEBUS_HEAD */

typedef enum daebus__http_param_type {
    DAEBUS__HTTP_PARAM_STRING = 0,
    DAEBUS__HTTP_PARAM_INT,
    DAEBUS__HTTP_PARAM_PATH,
    DAEBUS__HTTP_PARAM_FLOAT
} daebus__http_param_type;

/* One pattern shape with the handler registered for each method. Patterns
 * that differ only in parameter names ("/a/<x>", "/a/<y>") share a route;
 * each method keeps the names of the pattern it was registered with. */
typedef struct daebus__http_route {
    char *pattern;                                  /* the first pattern added */
    unsigned methods;                               /* DAEBUS_GET | ... */
    const void *handlers[DAEBUS__HTTP_METHOD_BITS]; /* by method bit index */
    int nparams;
    char *param_names[DAEBUS__HTTP_METHOD_BITS][DAEBUS__HTTP_MAX_PARAMS]; /* by method index */
    unsigned char param_types[DAEBUS__HTTP_MAX_PARAMS];
} daebus__http_route;

typedef struct daebus__http_router daebus__http_router;

typedef struct daebus__http_match {
    const daebus__http_route *route; /* the route that serves the method, or NULL */
    unsigned allow;                  /* union of methods of every pattern matching the path */
    int nparams;
    struct {
        size_t seg; /* index of the segment holding the value (a <path:> value
                       runs from there to the end of the path) */
    } params[DAEBUS__HTTP_MAX_PARAMS];
} daebus__http_match;

/* Returns: a new empty router, or NULL. */
daebus__http_router *daebus__http_router_create(void);
void daebus__http_router_destroy(daebus__http_router *r);

/* Adds handler for the methods of mask to pattern (a later add for the same
 * pattern and method replaces the earlier handler). Ownership: pattern is
 * copied; handler is borrowed.
 * Returns: 0, DAEBUS_EINVAL (bad pattern; err says what is wrong),
 * DAEBUS_ENOMEM. */
int daebus__http_router_add(daebus__http_router *r, const char *pattern, unsigned mask,
                            const void *handler, daebus_error *err);

/* Looks a path up for any method of want. The path is given as its segments
 * (the text between slashes, each already percent-decoded: "/a/b%2Fc" is
 * {"a", "b/c"}; "/" is {""}). Returns: 1 and m->route set when a pattern matching the
 * path serves a method of want; 0 when patterns match the path but none
 * serves want (m->allow says which methods would); -1 when no pattern matches. */
int daebus__http_router_match(const daebus__http_router *r, const char *const *segs,
                              const size_t *lens, size_t nsegs, unsigned want,
                              daebus__http_match *m);

/* Checks pattern and writes its shape to shape (len bytes): the pattern with
 * parameter names left out ("/a/<int:id>/<name>" gives "/a/<int:>/<>"), so
 * two patterns are the same route exactly when their shapes are equal.
 * Returns: 0, or DAEBUS_EINVAL with err saying what is wrong with the pattern
 * (e.g. "route \"/a/<x\": '<' without a closing '>' in segment \"<x\""). */
int daebus__http_route_shape(const char *pattern, char *shape, size_t len, daebus_error *err);

/* Returns: true if s[0..len) is a finite decimal number as <float:> accepts. */
bool daebus__http_is_float(const char *s, size_t len);

/* Returns: the number of distinct patterns. */
size_t daebus__http_router_count(const daebus__http_router *r);

/* Returns: the bit index of a single DAEBUS_* method bit (0..6), or -1. */
int daebus__http_method_index(unsigned bit);

#endif
