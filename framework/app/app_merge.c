/* app_merge.c - merging blueprints into the app's per-kind handler tables.
 *
 * Within a blueprint, static registrations are ordered by (file, line)
 * because the order in which constructors run is unspecified; run-time
 * registrations keep the order of the calls. A later registration of the same
 * key replaces the earlier one with a warning naming both sites (as the
 * Python framework does).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "app_internal.h"
#include "http_router.h"

static const char *kind_word(int kind)
{
    switch (kind) {
    case DAEBUS_HANDLER_ROUTE:
        return "route";
    case DAEBUS_HANDLER_SOCKET:
        return "socket";
    case DAEBUS_HANDLER_SOCKET_CONNECT:
        return "socket_connect";
    case DAEBUS_HANDLER_SOCKET_DISCONNECT:
        return "socket_disconnect";
    case DAEBUS_HANDLER_ACTION:
        return "action";
    case DAEBUS_HANDLER_LISTEN:
        return "listen";
    case DAEBUS_HANDLER_BACKGROUND:
        return "background";
    case DAEBUS_HANDLER_THREAD:
        return "thread";
    case DAEBUS_HANDLER_ON_START:
        return "on_start";
    default:
        return "handler";
    }
}

static const char *method_word(unsigned bit)
{
    switch (bit) {
    case DAEBUS_GET:
        return "GET";
    case DAEBUS_POST:
        return "POST";
    case DAEBUS_PUT:
        return "PUT";
    case DAEBUS_PATCH:
        return "PATCH";
    case DAEBUS_DELETE:
        return "DELETE";
    case DAEBUS_OPTIONS:
        return "OPTIONS";
    case DAEBUS_HEAD:
        return "HEAD";
    default:
        return "?";
    }
}

/* ---- blueprint merge ---- */

static int table_push(handler_table *t, daebus__handler h)
{
    if (t->count == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 8;
        daebus__handler *items = realloc(t->items, cap * sizeof *items);
        if (!items)
            return DAEBUS_ENOMEM;
        t->items = items;
        t->cap = cap;
    }
    t->items[t->count++] = h;
    return 0;
}

static void table_remove(handler_table *t, size_t i)
{
    free((char *)t->items[i].key);
    memmove(&t->items[i], &t->items[i + 1], (t->count - i - 1) * sizeof t->items[0]);
    t->count--;
}

/* Joins a blueprint prefix and a route path: "/admin" + "/users" = "/admin/users". */
static char *join_route(const char *prefix, const char *path)
{
    if (!prefix || !*prefix || strcmp(prefix, "/") == 0)
        return strdup(path);
    size_t pl = strlen(prefix);
    while (pl > 0 && prefix[pl - 1] == '/')
        pl--;
    const char *p = path;
    if (strcmp(p, "/") == 0)
        p = "";
    size_t n = pl + strlen(p) + 2;
    char *out = malloc(n);
    if (!out)
        return NULL;
    snprintf(out, n, "%s%.*s%s", prefix[0] == '/' ? "" : "/", (int)pl, prefix, p);
    return out;
}

int daebus__app_cmp_desc(const void *a, const void *b)
{
    const daebus_handler_desc *x = *(const daebus_handler_desc *const *)a;
    const daebus_handler_desc *y = *(const daebus_handler_desc *const *)b;
    int c = strcmp(x->file ? x->file : "", y->file ? y->file : "");
    if (c)
        return c;
    return (x->line > y->line) - (x->line < y->line);
}

static void warn_override(const daebus__handler *old, const daebus_handler_desc *d, const char *key,
                          const char *what)
{
    if (old->key && strcmp(old->key, key) != 0) /* a route of the same shape */
        daebus_log(DAEBUS_LOG_WARNING, "app",
                   "%s \"%s\": %s:%d overrides \"%s\" at %s:%d (the patterns differ only in "
                   "parameter names, so they are the same route)",
                   what, key, daebus__app_base_name(d->file), d->line, old->key,
                   daebus__app_base_name(old->desc->file), old->desc->line);
    else
        daebus_log(DAEBUS_LOG_WARNING, "app", "%s \"%s\": %s:%d overrides %s:%d", what, key,
                   daebus__app_base_name(d->file), d->line, daebus__app_base_name(old->desc->file),
                   old->desc->line);
}

#define SHAPE_MAX 1024

/* Shape of a merged route key (checked when it was merged, so it parses). */
static bool same_route(const char *a, const char *b)
{
    if (strcmp(a, b) == 0)
        return true;
    char sa[SHAPE_MAX], sb[SHAPE_MAX];
    if (daebus__http_route_shape(a, sa, sizeof sa, NULL) != 0 ||
        daebus__http_route_shape(b, sb, sizeof sb, NULL) != 0)
        return false;
    return strcmp(sa, sb) == 0;
}

static bool is_keyed(int kind)
{
    return kind != DAEBUS_HANDLER_SOCKET_CONNECT && kind != DAEBUS_HANDLER_SOCKET_DISCONNECT &&
           kind != DAEBUS_HANDLER_ON_START;
}

/* Stage 1: checks d and fills h (the key copied, a route's joined with the
 * prefix). Returns: 0, DAEBUS_EINVAL (logged), DAEBUS_ENOMEM. */
static int make_entry(const daebus_blueprint *bp, const daebus_handler_desc *d, daebus__handler *h)
{
    *h = (daebus__handler){.desc = d, .key = NULL, .methods = 0, .blueprint = bp->name};
    if (d->kind <= 0 || d->kind >= DAEBUS_HANDLER_KIND_COUNT) {
        daebus_log(DAEBUS_LOG_ERROR, "app", "blueprint \"%s\": invalid handler kind %d at %s:%d",
                   bp->name ? bp->name : "?", d->kind, daebus__app_base_name(d->file), d->line);
        return DAEBUS_EINVAL;
    }
    bool keyed = is_keyed(d->kind);
    if (keyed && (!d->key || !*d->key)) {
        daebus_log(DAEBUS_LOG_ERROR, "app", "%s registered without a name at %s:%d",
                   kind_word(d->kind), daebus__app_base_name(d->file), d->line);
        return DAEBUS_EINVAL;
    }
    if (d->kind == DAEBUS_HANDLER_ROUTE) {
        if (d->key[0] != '/') {
            daebus_log(DAEBUS_LOG_ERROR, "app", "route \"%s\" at %s:%d must start with '/'", d->key,
                       daebus__app_base_name(d->file), d->line);
            return DAEBUS_EINVAL;
        }
        h->key = join_route(bp->prefix, d->key);
        h->methods = d->opts.methods ? d->opts.methods : DAEBUS_GET;
        if (h->key) {
            char shape[SHAPE_MAX];
            daebus_error err = {0};
            if (daebus__http_route_shape(h->key, shape, sizeof shape, &err) != 0) {
                daebus_log(DAEBUS_LOG_ERROR, "app", "%s (registered at %s:%d); fix the pattern",
                           err.message, daebus__app_base_name(d->file), d->line);
                free((char *)h->key);
                h->key = NULL;
                return DAEBUS_EINVAL;
            }
        }
    } else if (d->kind == DAEBUS_HANDLER_BACKGROUND && !(d->interval > 0.0)) {
        daebus_log(DAEBUS_LOG_ERROR, "app",
                   "background task \"%s\" at %s:%d needs an interval > 0 seconds", d->key,
                   daebus__app_base_name(d->file), d->line);
        return DAEBUS_EINVAL;
    } else if (keyed) {
        h->key = strdup(d->key);
    }
    return keyed && !h->key ? DAEBUS_ENOMEM : 0;
}

/* Stage 2: removes from t what h replaces (a route only for the methods it
 * takes over), with a warning naming both sites. */
static void drop_overridden(handler_table *t, const daebus_handler_desc *d,
                            const daebus__handler *h)
{
    bool keyed = is_keyed(d->kind);
    for (size_t i = 0; i < t->count;) {
        daebus__handler *old = &t->items[i];
        bool same;
        if (!keyed)
            same = d->kind != DAEBUS_HANDLER_ON_START; /* one connect / disconnect handler */
        else if (d->kind == DAEBUS_HANDLER_ROUTE)
            same = same_route(old->key, h->key);
        else
            same = strcmp(old->key, h->key) == 0;
        if (!same) {
            i++;
            continue;
        }
        if (d->kind == DAEBUS_HANDLER_ROUTE) {
            unsigned overlap = old->methods & h->methods;
            if (!overlap) {
                i++;
                continue;
            }
            for (unsigned bit = 1; bit <= DAEBUS_HEAD; bit <<= 1) {
                if (overlap & bit) {
                    char what[32];
                    snprintf(what, sizeof what, "route %s", method_word(bit));
                    warn_override(old, d, h->key, what);
                }
            }
            old->methods &= ~overlap;
            if (old->methods) {
                i++;
                continue;
            }
        } else {
            warn_override(old, d, keyed ? h->key : kind_word(d->kind), kind_word(d->kind));
        }
        table_remove(t, i);
    }
}

static int merge_one(daebus_app *app, const daebus_blueprint *bp, const daebus_handler_desc *d)
{
    daebus__handler h;
    int rc = make_entry(bp, d, &h);
    if (rc != 0)
        return rc;
    handler_table *t = &app->tables[d->kind];
    drop_overridden(t, d, &h);
    if (table_push(t, h) != 0) {
        free((char *)h.key);
        return DAEBUS_ENOMEM;
    }
    return 0;
}

int daebus_app_register_blueprint(daebus_app *app, daebus_blueprint *bp)
{
    if (!app || !bp) {
        daebus_log(DAEBUS_LOG_ERROR, "app", "register_blueprint: app and blueprint are required");
        return DAEBUS_EINVAL;
    }
    if (app->started) {
        daebus_log(DAEBUS_LOG_ERROR, "app",
                   "register_blueprint(\"%s\"): register blueprints before daebus_app_run()",
                   bp->name ? bp->name : "?");
        return DAEBUS_ESTATE;
    }
    for (size_t i = 0; i < app->nblueprints; i++) {
        if (app->blueprints[i] == bp) {
            daebus_log(DAEBUS_LOG_WARNING, "app", "blueprint \"%s\" is already registered",
                       bp->name ? bp->name : "?");
            return DAEBUS_EEXIST;
        }
    }
    if (app->nblueprints == MAX_BLUEPRINTS) {
        daebus_log(DAEBUS_LOG_ERROR, "app", "too many blueprints (at most %d)", MAX_BLUEPRINTS);
        return DAEBUS_EFULL;
    }
    size_t n = daebus_blueprint_count(bp, 0);
    size_t nstatic = 0;
    for (const daebus_handler_desc *d = bp->internal_.static_head; d; d = d->internal_.next)
        nstatic++;
    const daebus_handler_desc **order = NULL;
    if (n) {
        order = malloc(n * sizeof *order);
        if (!order)
            return DAEBUS_ENOMEM;
    }
    size_t k = 0;
    for (const daebus_handler_desc *d = bp->internal_.static_head; d; d = d->internal_.next)
        order[k++] = d;
    if (nstatic > 1)
        qsort(order, nstatic, sizeof *order, daebus__app_cmp_desc);
    for (const daebus_handler_desc *d = bp->internal_.dynamic_head; d; d = d->internal_.next)
        order[k++] = d;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = merge_one(app, bp, order[i]);
    free(order);
    if (rc)
        return rc;
    app->blueprints[app->nblueprints++] = bp;
    if (bp != &daebus_default_blueprint)
        daebus_log(DAEBUS_LOG_DEBUG, "app", "registered blueprint \"%s\" (%zu handlers)",
                   bp->name ? bp->name : "?", n);
    return 0;
}

size_t daebus__app_handlers(const daebus_app *app, int kind, const daebus__handler **out)
{
    if (!app || kind <= 0 || kind >= DAEBUS_HANDLER_KIND_COUNT) {
        if (out)
            *out = NULL;
        return 0;
    }
    if (out)
        *out = app->tables[kind].items;
    return app->tables[kind].count;
}

size_t daebus_app_handler_count(const daebus_app *app, int kind)
{
    if (!app)
        return 0;
    if (kind == 0) {
        size_t n = 0;
        for (int k = 1; k < DAEBUS_HANDLER_KIND_COUNT; k++)
            n += app->tables[k].count;
        return n;
    }
    return daebus__app_handlers(app, kind, NULL);
}

const daebus_handler_desc *daebus_app_find_handler(const daebus_app *app, int kind, const char *key,
                                                   unsigned method)
{
    const daebus__handler *items;
    size_t n = daebus__app_handlers(app, kind, &items);
    for (size_t i = 0; i < n; i++) {
        if (key && (!items[i].key || strcmp(items[i].key, key) != 0))
            continue;
        if (!key && items[i].key)
            continue;
        if (kind == DAEBUS_HANDLER_ROUTE && method && !(items[i].methods & method))
            continue;
        return items[i].desc;
    }
    return NULL;
}
