/* http_router.c - segment trie for HTTP route lookup.
 *
 * Each trie node stands for a path prefix ending at a segment boundary. Its
 * literal children are kept sorted by segment text (binary search); parameter
 * children are at most three (<int:>, <name>, <path:>). A node may end one
 * route (leaf). Parameter names belong to the route, not the node, so
 * "/a/<id>" and "/a/<name>/b" share the parameter node.
 */
#include "http_router.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "http_parse.h"

typedef struct node node;

typedef struct edge {
    char *seg;
    size_t len;
    node *child;
} edge;

struct node {
    edge *lits;
    size_t nlits, caplits;
    node *int_child, *float_child, *str_child, *path_child;
    daebus__http_route *leaf;
};

struct daebus__http_router {
    node root;
    size_t count;
};

int daebus__http_method_index(unsigned bit)
{
    for (int i = 0; i < DAEBUS__HTTP_METHOD_BITS; i++)
        if (bit == (1u << i))
            return i;
    return -1;
}

daebus__http_router *daebus__http_router_create(void)
{
    return calloc(1, sizeof(daebus__http_router));
}

static void route_free(daebus__http_route *rt)
{
    if (!rt)
        return;
    free(rt->pattern);
    for (int m = 0; m < DAEBUS__HTTP_METHOD_BITS; m++)
        for (int i = 0; i < rt->nparams; i++)
            free(rt->param_names[m][i]);
    free(rt);
}

static void node_free_children(node *n)
{
    for (size_t i = 0; i < n->nlits; i++) {
        node_free_children(n->lits[i].child);
        free(n->lits[i].child);
        free(n->lits[i].seg);
    }
    free(n->lits);
    node *params[4] = {n->int_child, n->float_child, n->str_child, n->path_child};
    for (int i = 0; i < 4; i++) {
        if (params[i]) {
            node_free_children(params[i]);
            free(params[i]);
        }
    }
    route_free(n->leaf);
}

void daebus__http_router_destroy(daebus__http_router *r)
{
    if (!r)
        return;
    node_free_children(&r->root);
    free(r);
}

size_t daebus__http_router_count(const daebus__http_router *r)
{
    return r ? r->count : 0;
}

/* ---- building ---- */

static int seg_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int c = memcmp(a, b, n);
    if (c)
        return c;
    return alen < blen ? -1 : alen > blen ? 1 : 0;
}

/* Returns the index where seg is or would be inserted; *found set. */
static size_t lit_find(const node *n, const char *seg, size_t len, int *found)
{
    size_t lo = 0, hi = n->nlits;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = seg_cmp(n->lits[mid].seg, n->lits[mid].len, seg, len);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

static node *lit_child(node *n, const char *seg, size_t len)
{
    int found;
    size_t at = lit_find(n, seg, len, &found);
    if (found)
        return n->lits[at].child;
    if (n->nlits == n->caplits) {
        size_t cap = n->caplits ? n->caplits * 2 : 4;
        edge *bigger = realloc(n->lits, cap * sizeof *bigger);
        if (!bigger)
            return NULL;
        n->lits = bigger;
        n->caplits = cap;
    }
    node *child = calloc(1, sizeof *child);
    char *copy = malloc(len + 1);
    if (!child || !copy) {
        free(child);
        free(copy);
        return NULL;
    }
    memcpy(copy, seg, len);
    copy[len] = '\0';
    memmove(&n->lits[at + 1], &n->lits[at], (n->nlits - at) * sizeof(edge));
    n->lits[at] = (edge){copy, len, child};
    n->nlits++;
    return child;
}

static node *param_child(node **slot)
{
    if (!*slot)
        *slot = calloc(1, sizeof(node));
    return *slot;
}

static bool name_ok(const char *s, size_t len)
{
    if (!len)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
              (i > 0 && c >= '0' && c <= '9')))
            return false;
    }
    return true;
}

bool daebus__http_is_float(const char *s, size_t len)
{
    size_t i = 0, digits = 0;
    if (i < len && s[i] == '-')
        i++;
    while (i < len && s[i] >= '0' && s[i] <= '9')
        i++, digits++;
    if (!digits)
        return false; /* ".5" is not a number here, "0.5" is */
    if (i < len && s[i] == '.') {
        i++;
        size_t frac = 0;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++, frac++;
        if (!frac)
            return false;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            i++;
        size_t exp = 0;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++, exp++;
        if (!exp || exp > 3)
            return false;
    }
    if (i != len || len >= 64)
        return false;
    char buf[64];
    memcpy(buf, s, len);
    buf[len] = '\0';
    return isfinite(strtod(buf, NULL));
}

/* One parsed pattern segment. */
typedef struct seg_info {
    bool param;
    int type;
    const char *name;
    size_t nlen;
} seg_info;

static int seg_error(daebus_error *err, const char *pattern, const char *fmt, const char *seg,
                     size_t len)
{
    char what[192];
    snprintf(what, sizeof what, fmt, (int)len, seg);
    return daebus_error_set(err, DAEBUS_EINVAL, "route \"%s\": %s", pattern, what);
}

/* Parses the segment p[0..len) of pattern; last: no '/' follows it. */
static int parse_seg(const char *pattern, const char *p, size_t len, bool last, seg_info *si,
                     daebus_error *err)
{
    const char *lt = memchr(p, '<', len), *gt = memchr(p, '>', len);
    si->param = false;
    if (!lt && !gt)
        return 0;
    if (lt && !gt)
        return seg_error(err, pattern, "'<' without a closing '>' in segment \"%.*s\"", p, len);
    if (gt && !lt)
        return seg_error(err, pattern, "'>' without an opening '<' in segment \"%.*s\"", p, len);
    if (p[0] != '<' || p[len - 1] != '>')
        return seg_error(err, pattern,
                         "a parameter must be a whole segment: \"%.*s\" (write \"/a/<x>\", not "
                         "\"/a<x>\")",
                         p, len);
    const char *in = p + 1;
    size_t inlen = len - 2;
    if (memchr(in, '<', inlen) || memchr(in, '>', inlen))
        return seg_error(err, pattern, "one parameter per segment: \"%.*s\"", p, len);
    const char *colon = memchr(in, ':', inlen);
    si->param = true;
    si->type = DAEBUS__HTTP_PARAM_STRING;
    si->name = in;
    si->nlen = inlen;
    if (colon) {
        size_t clen = (size_t)(colon - in);
        si->name = colon + 1;
        si->nlen = inlen - clen - 1;
        if (clen == 3 && memcmp(in, "int", 3) == 0)
            si->type = DAEBUS__HTTP_PARAM_INT;
        else if (clen == 5 && memcmp(in, "float", 5) == 0)
            si->type = DAEBUS__HTTP_PARAM_FLOAT;
        else if (clen == 4 && memcmp(in, "path", 4) == 0)
            si->type = DAEBUS__HTTP_PARAM_PATH;
        else if (!(clen == 6 && memcmp(in, "string", 6) == 0))
            return seg_error(err, pattern,
                             "unknown converter in \"%.*s\" (use <name>, <int:name>, "
                             "<float:name>, <string:name> or <path:name>)",
                             p, len);
    }
    if (!si->nlen)
        return seg_error(err, pattern, "parameter without a name in \"%.*s\"", p, len);
    if (!name_ok(si->name, si->nlen))
        return seg_error(err, pattern,
                         "the parameter name in \"%.*s\" is not an identifier (letters, digits "
                         "and '_', not starting with a digit)",
                         p, len);
    if (si->type == DAEBUS__HTTP_PARAM_PATH && !last)
        return seg_error(err, pattern,
                         "\"%.*s\" must be the last segment (a <path:> parameter takes the rest "
                         "of the path)",
                         p, len);
    return 0;
}

/* Walks the segments of pattern, checking each; calls fn on each one. */
typedef int seg_fn(void *ctx, const char *p, size_t len, const seg_info *si);

static int each_seg(const char *pattern, seg_fn *fn, void *ctx, daebus_error *err)
{
    if (!pattern || pattern[0] != '/')
        return daebus_error_set(err, DAEBUS_EINVAL, "route \"%s\": a pattern must start with '/'",
                                pattern ? pattern : "(null)");
    const char *names[DAEBUS__HTTP_MAX_PARAMS];
    size_t lens[DAEBUS__HTTP_MAX_PARAMS];
    int nparams = 0;
    const char *p = pattern + 1;
    for (;;) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        seg_info si;
        int rc = parse_seg(pattern, p, len, !end, &si, err);
        if (rc)
            return rc;
        if (si.param) {
            if (nparams == DAEBUS__HTTP_MAX_PARAMS)
                return daebus_error_set(err, DAEBUS_EINVAL, "route \"%s\": more than %d parameters",
                                        pattern, DAEBUS__HTTP_MAX_PARAMS);
            for (int i = 0; i < nparams; i++)
                if (lens[i] == si.nlen && memcmp(names[i], si.name, si.nlen) == 0)
                    return daebus_error_set(err, DAEBUS_EINVAL,
                                            "route \"%s\": parameter '%.*s' appears twice", pattern,
                                            (int)si.nlen, si.name);
            names[nparams] = si.name;
            lens[nparams++] = si.nlen;
        }
        if (fn && (rc = fn(ctx, p, len, &si)) != 0)
            return daebus_error_set(err, rc, "out of memory adding route \"%s\"", pattern);
        if (!end)
            return 0;
        p = end + 1;
    }
}

typedef struct shape_ctx {
    char *out;
    size_t len, off;
} shape_ctx;

static int shape_seg(void *ctx, const char *p, size_t len, const seg_info *si)
{
    shape_ctx *c = ctx;
    static const char *const conv[] = {"<>", "<int:>", "<path:>", "<float:>"};
    int n = si->param ? snprintf(c->out + c->off, c->len - c->off, "/%s", conv[si->type])
                      : snprintf(c->out + c->off, c->len - c->off, "/%.*s", (int)len, p);
    if (n < 0 || (size_t)n >= c->len - c->off)
        return DAEBUS_ETOOBIG;
    c->off += (size_t)n;
    return 0;
}

int daebus__http_route_shape(const char *pattern, char *shape, size_t len, daebus_error *err)
{
    if (!shape || !len)
        return DAEBUS_EINVAL;
    shape[0] = '\0';
    shape_ctx c = {shape, len, 0};
    int rc = each_seg(pattern, shape_seg, &c, err);
    if (rc == DAEBUS_ETOOBIG)
        return daebus_error_set(err, DAEBUS_EINVAL, "route \"%s\": pattern too long", pattern);
    return rc;
}

typedef struct add_ctx {
    daebus__http_router *r;
    node *n;
    daebus__http_route tmp; /* names and types, in order (names borrowed from the pattern) */
    const char *names[DAEBUS__HTTP_MAX_PARAMS];
    size_t lens[DAEBUS__HTTP_MAX_PARAMS];
} add_ctx;

static int add_seg(void *ctx, const char *p, size_t len, const seg_info *si)
{
    add_ctx *c = ctx;
    if (si->param) {
        c->names[c->tmp.nparams] = si->name;
        c->lens[c->tmp.nparams] = si->nlen;
        c->tmp.param_types[c->tmp.nparams++] = (unsigned char)si->type;
        node **slot = si->type == DAEBUS__HTTP_PARAM_INT     ? &c->n->int_child
                      : si->type == DAEBUS__HTTP_PARAM_FLOAT ? &c->n->float_child
                      : si->type == DAEBUS__HTTP_PARAM_PATH  ? &c->n->path_child
                                                             : &c->n->str_child;
        c->n = param_child(slot);
    } else {
        c->n = lit_child(c->n, p, len);
    }
    return c->n ? 0 : DAEBUS_ENOMEM;
}

int daebus__http_router_add(daebus__http_router *r, const char *pattern, unsigned mask,
                            const void *handler, daebus_error *err)
{
    if (!r || !handler || !mask)
        return daebus_error_set(err, DAEBUS_EINVAL, "route \"%s\": no handler or no method",
                                pattern ? pattern : "(null)");
    /* Check first, so that a bad pattern leaves no nodes behind. */
    int rc = each_seg(pattern, NULL, NULL, err);
    if (rc)
        return rc;
    add_ctx c = {.r = r, .n = &r->root};
    rc = each_seg(pattern, add_seg, &c, err);
    if (rc)
        return rc;
    node *n = c.n;
    daebus__http_route *rt = n->leaf;
    if (!rt) {
        rt = calloc(1, sizeof *rt);
        if (!rt || !(rt->pattern = strdup(pattern))) {
            free(rt);
            return daebus_error_set(err, DAEBUS_ENOMEM, "out of memory adding route \"%s\"",
                                    pattern);
        }
        rt->nparams = c.tmp.nparams;
        memcpy(rt->param_types, c.tmp.param_types, sizeof rt->param_types);
        n->leaf = rt;
        r->count++;
    }
    /* Copy the names first: a failure must leave the route as it was. */
    char *copies[DAEBUS__HTTP_METHOD_BITS][DAEBUS__HTTP_MAX_PARAMS] = {{0}};
    bool ok = true;
    for (int m = 0; m < DAEBUS__HTTP_METHOD_BITS && ok; m++) {
        if (!(mask & (1u << m)))
            continue;
        for (int i = 0; i < c.tmp.nparams && ok; i++) {
            copies[m][i] = malloc(c.lens[i] + 1);
            if (!copies[m][i]) {
                ok = false;
                break;
            }
            memcpy(copies[m][i], c.names[i], c.lens[i]);
            copies[m][i][c.lens[i]] = '\0';
        }
    }
    for (int m = 0; m < DAEBUS__HTTP_METHOD_BITS; m++) {
        if (!(mask & (1u << m)))
            continue;
        for (int i = 0; i < c.tmp.nparams; i++) {
            if (!ok) {
                free(copies[m][i]);
                continue;
            }
            free(rt->param_names[m][i]);
            rt->param_names[m][i] = copies[m][i];
        }
        if (ok)
            rt->handlers[m] = handler;
    }
    if (!ok)
        return daebus_error_set(err, DAEBUS_ENOMEM, "out of memory adding route \"%s\"", pattern);
    rt->methods |= mask;
    return 0;
}

/* ---- lookup ---- */

typedef struct walk {
    unsigned want;
    daebus__http_match *m;
    const char *const *segs;
    const size_t *lens;
    size_t nsegs;
    int depth; /* parameters captured so far */
    size_t at[DAEBUS__HTTP_MAX_PARAMS];
} walk;

static int leaf_hit(walk *w, const daebus__http_route *rt)
{
    if (!rt)
        return 0;
    w->m->allow |= rt->methods;
    if (!(rt->methods & w->want))
        return 0;
    w->m->route = rt;
    w->m->nparams = w->depth;
    for (int i = 0; i < w->depth; i++)
        w->m->params[i].seg = w->at[i];
    return 1;
}

static int walk_node(walk *w, const node *n, size_t i)
{
    const char *p = w->segs[i];
    size_t len = w->lens[i];
    bool last = i + 1 == w->nsegs;
    int found;
    if (n->nlits) {
        size_t at = lit_find(n, p, len, &found);
        if (found) {
            const node *next = n->lits[at].child;
            if (last ? leaf_hit(w, next->leaf) : walk_node(w, next, i + 1))
                return 1;
        }
    }
    if (len && w->depth < DAEBUS__HTTP_MAX_PARAMS) {
        long long ignored;
        const node *kids[3] = {NULL, NULL, n->str_child};
        if (n->int_child && daebus__http_parse_int(p, len, &ignored))
            kids[0] = n->int_child;
        if (n->float_child && daebus__http_is_float(p, len))
            kids[1] = n->float_child;
        for (int k = 0; k < 3; k++) {
            if (!kids[k])
                continue;
            w->at[w->depth++] = i;
            int hit = last ? leaf_hit(w, kids[k]->leaf) : walk_node(w, kids[k], i + 1);
            w->depth--;
            if (hit)
                return 1;
        }
        if (n->path_child) {
            w->at[w->depth++] = i;
            int hit = leaf_hit(w, n->path_child->leaf);
            w->depth--;
            if (hit)
                return 1;
        }
    }
    return 0;
}

int daebus__http_router_match(const daebus__http_router *r, const char *const *segs,
                              const size_t *lens, size_t nsegs, unsigned want,
                              daebus__http_match *m)
{
    memset(m, 0, sizeof *m);
    if (!r || !nsegs)
        return -1;
    walk w = {.want = want, .m = m, .segs = segs, .lens = lens, .nsegs = nsegs};
    if (walk_node(&w, &r->root, 0))
        return 1;
    return m->allow ? 0 : -1;
}
