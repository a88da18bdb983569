/* fuzz_http_route.c - route patterns, request path splitting and matching.
 *
 * Input: lines. Lines before a "--" line are extra route patterns (added to a
 * fixed realistic table; bad ones must be refused cleanly); the other lines
 * are raw request paths, still percent-encoded, as CivetWeb hands them over.
 * Every match is checked against a plain, independent reading of the
 * pattern: what the trie returns must match, and whatever matches must be
 * found.
 */
#include <stdbool.h>
#include "daebus/daebus.h"
#include "fuzz_common.h"
#include "http_parse.h"
#include "http_router.h"

#define MAX_SEGMENTS 128 /* http_request.c */
#define MAX_LINES    48
#define ALL_METHODS  0x7Fu

static const char *const base_patterns[] = {
    "/",
    "/health",
    "/devices",
    "/devices/<device_id>",
    "/devices/<int:id>/status",
    "/devices/<device_id>/logs/<path:rest>",
    "/static/<path:file>",
    "/users/<string:name>/posts/<int:post>",
    "/users/me/posts/latest",
    "/api/v1/items/",
    "/a/<x>/c",
    "/a/b/<y>",
    "/prices/<float:amount>/eur",
};

/* Reads a pattern segment: 0 literal, else 1 + daebus__http_param_type. */
static int seg_kind(const char *s, size_t n)
{
    if (n < 2 || s[0] != '<' || s[n - 1] != '>')
        return 0;
    const char *colon = memchr(s + 1, ':', n - 2);
    if (colon && colon - (s + 1) == 3 && memcmp(s + 1, "int", 3) == 0)
        return 1 + DAEBUS__HTTP_PARAM_INT;
    if (colon && colon - (s + 1) == 4 && memcmp(s + 1, "path", 4) == 0)
        return 1 + DAEBUS__HTTP_PARAM_PATH;
    if (colon && colon - (s + 1) == 5 && memcmp(s + 1, "float", 5) == 0)
        return 1 + DAEBUS__HTTP_PARAM_FLOAT;
    return 1 + DAEBUS__HTTP_PARAM_STRING;
}

/* The reference matcher: one pattern segment per path segment, a parameter
 * never empty, <path:> swallowing the rest. */
static bool pattern_matches(const char *pattern, const char *const *segs, const size_t *lens,
                            size_t nsegs)
{
    const char *p = pattern + 1;
    size_t k = 0;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        if (k >= nsegs)
            return false;
        long long v;
        switch (seg_kind(p, n)) {
        case 0:
            if (lens[k] != n || memcmp(segs[k], p, n) != 0)
                return false;
            break;
        case 1 + DAEBUS__HTTP_PARAM_INT:
            if (!daebus__http_parse_int(segs[k], lens[k], &v))
                return false;
            break;
        case 1 + DAEBUS__HTTP_PARAM_FLOAT:
            if (!daebus__http_is_float(segs[k], lens[k]))
                return false;
            break;
        case 1 + DAEBUS__HTTP_PARAM_PATH:
            return lens[k] > 0;
        default:
            if (lens[k] == 0)
                return false;
        }
        k++;
        if (!slash)
            break;
        p = slash + 1;
    }
    return k == nsegs;
}

static void check_path(const daebus__http_router *r, const char *const *patterns, size_t npat,
                       const char *raw)
{
    size_t rawlen = strlen(raw);
    char *buf = malloc(rawlen + MAX_SEGMENTS + 2);
    FUZZ_CHECK(buf != NULL);
    const char *segs[MAX_SEGMENTS];
    size_t lens[MAX_SEGMENTS];
    int n = daebus__http_split_path(raw, buf, segs, lens, MAX_SEGMENTS);
    FUZZ_CHECK(n >= 1 || n == -1 || n == -2);
    if (raw[0] != '/')
        FUZZ_CHECK(n == -1);
    if (n < 1) {
        free(buf);
        return;
    }
    for (int i = 0; i < n; i++) {
        FUZZ_CHECK(segs[i] >= buf && segs[i] + lens[i] < buf + rawlen + MAX_SEGMENTS + 2);
        FUZZ_CHECK(segs[i][lens[i]] == '\0' && strlen(segs[i]) == lens[i]);
        FUZZ_CHECK(daebus__http_utf8_valid(segs[i], lens[i]));
    }

    daebus__http_match all;
    int rc_all = daebus__http_router_match(r, segs, lens, (size_t)n, ALL_METHODS, &all);
    FUZZ_CHECK(rc_all == 1 || rc_all == -1);
    /* Complete: a pattern that matches the path is found. */
    bool any = false;
    for (size_t i = 0; i < npat; i++)
        any = any || pattern_matches(patterns[i], segs, lens, (size_t)n);
    FUZZ_CHECK(any == (rc_all == 1));

    for (unsigned want = 1; want <= ALL_METHODS; want <<= 1) {
        daebus__http_match m;
        int rc = daebus__http_router_match(r, segs, lens, (size_t)n, want, &m);
        FUZZ_CHECK((rc == -1) == (rc_all == -1));
        if (rc == 0)
            FUZZ_CHECK(m.allow != 0 && !(m.allow & want) && m.route == NULL);
        if (rc != 1)
            continue;
        /* Sound: what was found matches, with consistent parameters. */
        const daebus__http_route *rt = m.route;
        FUZZ_CHECK(rt && (rt->methods & want) && (m.allow & want));
        FUZZ_CHECK(pattern_matches(rt->pattern, segs, lens, (size_t)n));
        FUZZ_CHECK(m.nparams == rt->nparams && m.nparams <= DAEBUS__HTTP_MAX_PARAMS);
        for (int i = 0; i < m.nparams; i++) {
            size_t s = m.params[i].seg;
            FUZZ_CHECK(s < (size_t)n && lens[s] > 0);
            if (i)
                FUZZ_CHECK(s > m.params[i - 1].seg);
            long long v;
            if (rt->param_types[i] == DAEBUS__HTTP_PARAM_INT)
                FUZZ_CHECK(daebus__http_parse_int(segs[s], lens[s], &v));
            if (rt->param_types[i] == DAEBUS__HTTP_PARAM_FLOAT)
                FUZZ_CHECK(daebus__http_is_float(segs[s], lens[s]));
        }
    }
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_strndup(data, size);
    char *lines[MAX_LINES];
    size_t nlines = 0;
    for (char *p = text; nlines < MAX_LINES;) {
        lines[nlines++] = p;
        char *nl = strchr(p, '\n');
        if (!nl)
            break;
        *nl = '\0';
        p = nl + 1;
    }
    size_t sep = nlines;
    for (size_t i = 0; i < nlines; i++)
        if (strcmp(lines[i], "--") == 0) {
            sep = i;
            break;
        }
    size_t nbase = sizeof base_patterns / sizeof base_patterns[0];
    if (sep == nlines)
        sep = 0; /* no "--": every line is a path */

    daebus__http_router *r = daebus__http_router_create();
    FUZZ_CHECK(r != NULL);
    const char *patterns[MAX_LINES + sizeof base_patterns / sizeof base_patterns[0]];
    size_t npat = 0;
    static const int tag = 0; /* any non-NULL handler */
    for (size_t i = 0; i < nbase + sep; i++) {
        const char *pat = i < nbase ? base_patterns[i] : lines[i - nbase];
        unsigned mask = i < nbase ? (DAEBUS_GET | (1u << (i % 7))) : 1u << (strlen(pat) % 7);
        daebus_error err = {0};
        int rc = daebus__http_router_add(r, pat, mask, &tag, &err);
        if (rc == 0) {
            patterns[npat++] = pat;
        } else {
            FUZZ_CHECK(rc == DAEBUS_EINVAL && err.code == rc && err.message[0]);
            FUZZ_CHECK(fuzz_terminated(err.message, sizeof err.message));
            FUZZ_CHECK(i >= nbase);
        }
    }
    FUZZ_CHECK(daebus__http_router_count(r) <= npat);

    for (size_t i = sep ? sep + 1 : 0; i < nlines; i++)
        check_path(r, patterns, npat, lines[i]);
    daebus__http_router_destroy(r);
    free(text);
    return 0;
}
