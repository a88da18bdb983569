/* blueprint.c - blueprints: static (macro) and run-time handler registrations.
 *
 * A blueprint keeps two singly linked lists: descriptors linked by the macros'
 * constructors (static storage, never freed) and descriptors added at run time
 * (heap copies owned by the blueprint). Nothing here validates beyond the
 * arguments; merging, prefixes and conflicts are the app's job.
 */
#include <stdlib.h>
#include <string.h>
#include "daebus/blueprint.h"
#include "daebus/log.h"

daebus_blueprint daebus_default_blueprint = {.name = "default"};

/* Every blueprint a macro linked a descriptor into (constructors run before
 * main, on one thread; the list is only read afterwards). */
daebus_blueprint *daebus__blueprints_defined;

void daebus_blueprint_link_static(daebus_handler_desc *desc)
{
    daebus_blueprint *bp = desc->opts.bp ? desc->opts.bp : &daebus_default_blueprint;
    desc->internal_.next = bp->internal_.static_head;
    bp->internal_.static_head = desc;
    if (!bp->internal_.defined) {
        bp->internal_.defined = 1;
        bp->internal_.next_defined = daebus__blueprints_defined;
        daebus__blueprints_defined = bp;
    }
}

daebus_blueprint *daebus_blueprint_create(const char *name, const char *prefix)
{
    daebus_blueprint *bp = calloc(1, sizeof *bp);
    if (!bp)
        return NULL;
    bp->internal_.heap = 1;
    bp->name = strdup(name ? name : "blueprint");
    bp->prefix = prefix ? strdup(prefix) : NULL;
    if (!bp->name || (prefix && !bp->prefix)) {
        free((char *)bp->name);
        free((char *)bp->prefix);
        free(bp);
        return NULL;
    }
    return bp;
}

static void free_dynamic(daebus_blueprint *bp)
{
    daebus_handler_desc *d = bp->internal_.dynamic_head;
    while (d) {
        daebus_handler_desc *next = d->internal_.next;
        if (d->opts.user_free)
            d->opts.user_free(d->opts.user);
        free((char *)d->key);
        free((char *)d->file);
        free(d);
        d = next;
    }
    bp->internal_.dynamic_head = NULL;
}

void daebus_blueprint_destroy(daebus_blueprint *bp)
{
    if (!bp)
        return;
    free_dynamic(bp);
    if (bp->internal_.heap) {
        free((char *)bp->name);
        free((char *)bp->prefix);
        free(bp);
    }
}

static int add(daebus_blueprint *bp, daebus_handler_desc tmpl, const daebus_handler_options *opts)
{
    if (!bp)
        return DAEBUS_EINVAL;
    daebus_handler_desc *d = calloc(1, sizeof *d);
    if (!d)
        return DAEBUS_ENOMEM;
    *d = tmpl;
    if (opts)
        d->opts = *opts;
    d->opts.bp = bp;
    d->internal_.owned = 1;
    d->internal_.next = NULL;
    d->file = strdup("<runtime>");
    d->key = tmpl.key ? strdup(tmpl.key) : NULL;
    if (!d->file || (tmpl.key && !d->key)) {
        free((char *)d->file);
        free((char *)d->key);
        free(d);
        return DAEBUS_ENOMEM;
    }
    /* Run-time registrations are ordered by the order of the calls. */
    size_t n = 0;
    daebus_handler_desc **tail = &bp->internal_.dynamic_head;
    while (*tail) {
        tail = &(*tail)->internal_.next;
        n++;
    }
    d->line = (int)n + 1;
    *tail = d;
    return 0;
}

#define TMPL(kind_, key_, member, f, iv)                                                           \
    ((daebus_handler_desc){.kind = (kind_), .key = (key_), .fn = {.member = (f)}, .interval = (iv)})

static int key_ok(const char *key)
{
    return key && *key;
}

int daebus_blueprint_add_route(daebus_blueprint *bp, const char *path, daebus_route_fn *fn,
                               const daebus_handler_options *opts)
{
    if (!key_ok(path) || path[0] != '/')
        return DAEBUS_EINVAL;
    if (!fn)
        return DAEBUS_EINVAL;
    return add(bp, TMPL(DAEBUS_HANDLER_ROUTE, path, route, fn, 0), opts);
}

int daebus_blueprint_add_socket(daebus_blueprint *bp, const char *type, daebus_socket_fn *fn,
                                const daebus_handler_options *opts)
{
    if (!key_ok(type))
        return DAEBUS_EINVAL;
    if (!fn)
        return DAEBUS_EINVAL;
    return add(bp, TMPL(DAEBUS_HANDLER_SOCKET, type, socket, fn, 0), opts);
}

int daebus_blueprint_add_socket_connect(daebus_blueprint *bp, daebus_socket_fn *fn,
                                        const daebus_handler_options *opts)
{
    if (!fn)
        return DAEBUS_EINVAL;
    return add(bp, TMPL(DAEBUS_HANDLER_SOCKET_CONNECT, NULL, socket, fn, 0), opts);
}

int daebus_blueprint_add_socket_disconnect(daebus_blueprint *bp, daebus_socket_fn *fn,
                                           const daebus_handler_options *opts)
{
    if (!fn)
        return DAEBUS_EINVAL;
    return add(bp, TMPL(DAEBUS_HANDLER_SOCKET_DISCONNECT, NULL, socket, fn, 0), opts);
}

int daebus_blueprint_add_action(daebus_blueprint *bp, const char *name, daebus_action_fn *fn,
                                const daebus_handler_options *opts)
{
    if (!key_ok(name))
        return DAEBUS_EINVAL;
    if (!fn)
        return DAEBUS_EINVAL;
    return add(bp, TMPL(DAEBUS_HANDLER_ACTION, name, action, fn, 0), opts);
}

int daebus_blueprint_add_listen(daebus_blueprint *bp, const char *channel, daebus_listen_fn *fn,
                                const daebus_handler_options *opts)
{
    if (!key_ok(channel))
        return DAEBUS_EINVAL;
    if (!fn)
        return DAEBUS_EINVAL;
    return add(bp, TMPL(DAEBUS_HANDLER_LISTEN, channel, listen, fn, 0), opts);
}

int daebus_blueprint_add_background(daebus_blueprint *bp, const char *name, double interval_seconds,
                                    daebus_task_fn *fn, const daebus_handler_options *opts)
{
    if (!key_ok(name) || !(interval_seconds > 0.0))
        return DAEBUS_EINVAL;
    if (!fn)
        return DAEBUS_EINVAL;
    return add(bp, TMPL(DAEBUS_HANDLER_BACKGROUND, name, task, fn, interval_seconds), opts);
}

int daebus_blueprint_add_thread(daebus_blueprint *bp, const char *name, daebus_thread_fn *fn,
                                const daebus_handler_options *opts)
{
    if (!key_ok(name))
        return DAEBUS_EINVAL;
    if (!fn)
        return DAEBUS_EINVAL;
    return add(bp, TMPL(DAEBUS_HANDLER_THREAD, name, thread, fn, 0), opts);
}

int daebus_blueprint_add_on_start(daebus_blueprint *bp, daebus_on_start_fn *fn,
                                  const daebus_handler_options *opts)
{
    if (!fn)
        return DAEBUS_EINVAL;
    return add(bp, TMPL(DAEBUS_HANDLER_ON_START, NULL, on_start, fn, 0), opts);
}

size_t daebus_blueprint_count(const daebus_blueprint *bp, int kind)
{
    size_t n = 0;
    if (!bp)
        return 0;
    for (const daebus_handler_desc *d = bp->internal_.static_head; d; d = d->internal_.next)
        n += (kind == 0 || d->kind == kind);
    for (const daebus_handler_desc *d = bp->internal_.dynamic_head; d; d = d->internal_.next)
        n += (kind == 0 || d->kind == kind);
    return n;
}
