/* http_router.c - segment trie for HTTP route lookup.
 *
 * Each trie node stands for a path prefix ending at a segment boundary. Its
 * literal children are kept sorted by segment text (binary search); parameter
 * children are at most three (<int:>, <name>, <path:>). A node may end one
 * route (leaf). Parameter names belong to the route, not the node, so
 * "/a/<id>" and "/a/<name>/b" share the parameter node.
 */
#include "http_router.h"

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
    node *int_child, *str_child, *path_child;
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
    for (int i = 0; i < rt->nparams; i++)
        free(rt->param_names[i]);
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
    node *params[3] = {n->int_child, n->str_child, n->path_child};
    for (int i = 0; i < 3; i++) {
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

int daebus__http_router_add(daebus__http_router *r, const char *pattern, unsigned mask,
                            const void *handler, daebus_error *err)
{
    if (!r || !pattern || pattern[0] != '/' || !handler || !mask)
        return daebus_error_set(err, DAEBUS_EINVAL, "route pattern must start with '/'");
    daebus__http_route tmp = {0};
    node *n = &r->root;
    const char *p = pattern + 1;
    for (;;) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len >= 2 && p[0] == '<' && p[len - 1] == '>') {
            const char *in = p + 1;
            size_t inlen = len - 2;
            const char *colon = memchr(in, ':', inlen);
            int type = DAEBUS__HTTP_PARAM_STRING;
            const char *name = in;
            size_t nlen = inlen;
            if (colon) {
                size_t clen = (size_t)(colon - in);
                name = colon + 1;
                nlen = inlen - clen - 1;
                if (clen == 3 && memcmp(in, "int", 3) == 0)
                    type = DAEBUS__HTTP_PARAM_INT;
                else if (clen == 4 && memcmp(in, "path", 4) == 0)
                    type = DAEBUS__HTTP_PARAM_PATH;
                else if (!(clen == 6 && memcmp(in, "string", 6) == 0))
                    goto bad_converter;
            }
            if (!name_ok(name, nlen))
                goto bad_name;
            if (type == DAEBUS__HTTP_PARAM_PATH && end)
                goto path_not_last;
            if (tmp.nparams == DAEBUS__HTTP_MAX_PARAMS)
                goto too_many;
            for (int i = 0; i < tmp.nparams; i++)
                if (strlen(tmp.param_names[i]) == nlen && !memcmp(tmp.param_names[i], name, nlen))
                    goto bad_name;
            char *copy = malloc(nlen + 1);
            if (!copy)
                goto nomem;
            memcpy(copy, name, nlen);
            copy[nlen] = '\0';
            tmp.param_names[tmp.nparams] = copy;
            tmp.param_types[tmp.nparams++] = (unsigned char)type;
            n = param_child(type == DAEBUS__HTTP_PARAM_INT    ? &n->int_child
                            : type == DAEBUS__HTTP_PARAM_PATH ? &n->path_child
                                                              : &n->str_child);
        } else {
            if (memchr(p, '<', len) || memchr(p, '>', len))
                goto bad_name;
            n = lit_child(n, p, len);
        }
        if (!n)
            goto nomem;
        if (!end)
            break;
        p = end + 1;
    }
    daebus__http_route *rt = n->leaf;
    if (!rt) {
        rt = calloc(1, sizeof *rt);
        if (!rt || !(rt->pattern = strdup(pattern))) {
            free(rt);
            goto nomem;
        }
        n->leaf = rt;
        r->count++;
    } else {
        /* Same shape, maybe other parameter names: the newest names win. */
        for (int i = 0; i < rt->nparams; i++)
            free(rt->param_names[i]);
    }
    rt->nparams = tmp.nparams;
    memcpy(rt->param_names, tmp.param_names, sizeof tmp.param_names);
    memcpy(rt->param_types, tmp.param_types, sizeof tmp.param_types);
    for (int i = 0; i < DAEBUS__HTTP_METHOD_BITS; i++)
        if (mask & (1u << i))
            rt->handlers[i] = handler;
    rt->methods |= mask;
    return 0;

bad_converter:
    daebus_error_set(err, DAEBUS_EINVAL,
                     "route \"%s\": unknown converter (use <name>, <int:name>, <path:name>)",
                     pattern);
    goto fail;
bad_name:
    daebus_error_set(err, DAEBUS_EINVAL, "route \"%s\": bad or repeated parameter name", pattern);
    goto fail;
path_not_last:
    daebus_error_set(err, DAEBUS_EINVAL, "route \"%s\": <path:...> must be the last segment",
                     pattern);
    goto fail;
too_many:
    daebus_error_set(err, DAEBUS_EINVAL, "route \"%s\": more than %d parameters", pattern,
                     DAEBUS__HTTP_MAX_PARAMS);
    goto fail;
nomem:
    daebus_error_set(err, DAEBUS_ENOMEM, "out of memory adding route \"%s\"", pattern);
fail:
    for (int i = 0; i < tmp.nparams; i++)
        free(tmp.param_names[i]);
    return err ? err->code : DAEBUS_EINVAL;
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
        const node *kids[2] = {NULL, n->str_child};
        if (n->int_child && daebus__http_parse_int(p, len, &ignored))
            kids[0] = n->int_child;
        for (int k = 0; k < 2; k++) {
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
