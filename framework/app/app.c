/* app.c - the app object: creation, components, life cycle.
 *
 * The service's options live in app_options.c, blueprint merging in
 * app_merge.c, the signal thread in app_signals.c (app_internal.h).
 *
 * Blueprints are merged into per-kind tables when they are registered, so the
 * components only ever see one flat, ordered list per handler kind. Within a
 * blueprint, static registrations are ordered by (file, line) because the
 * order in which constructors run is unspecified; run-time registrations keep
 * the order of the calls. A later registration of the same key replaces the
 * earlier one with a warning naming both sites (as the Python framework does).
 *
 * run() blocks SIGINT/SIGTERM before any component thread exists, so every
 * thread inherits the mask and only our signal thread ever sees them.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "app_internal.h"
#include "cluster.h"

static char *dup_or(const char *s, const char *fallback)
{
    return strdup(s ? s : fallback);
}

/* ---- creation and configuration ---- */

daebus_app *daebus_app_create(const daebus_app_options *opts, daebus_error *err)
{
    daebus_app_options o = DAEBUS_APP_OPTIONS_INIT;
    if (opts)
        o = *opts;
    daebus_app *app = calloc(1, sizeof *app);
    if (!app) {
        daebus_error_set(err, DAEBUS_ENOMEM, "out of memory");
        return NULL;
    }
    app->service = dup_or(o.service, "daebus_service");
    app->redis_url = dup_or(o.redis_url, "redis://127.0.0.1:6379");
    app->http_port = o.http_port == DAEBUS_PORT_ANY || (o.http_port > 0 && o.http_port <= 65535)
                         ? o.http_port
                         : 0;
    app->log_level = o.log_level > DAEBUS_LOG_DEFAULT && o.log_level <= DAEBUS_LOG_OFF
                         ? o.log_level
                         : DAEBUS_LOG_INFO;
    app->max_workers = o.max_workers > 0 ? o.max_workers : 10;
    app->shutdown_timeout = o.shutdown_timeout > 0 ? o.shutdown_timeout : 5.0;
    app->no_signals = o.no_signals;
    daebus__cluster_make_id(app->instance_id, sizeof app->instance_id);
    daebus__mutex_init(&app->lock);
    daebus__cond_init(&app->cond);
    if (!app->service || !app->redis_url) {
        daebus_app_destroy(app);
        daebus_error_set(err, DAEBUS_ENOMEM, "out of memory");
        return NULL;
    }
    daebus_log_set_service(app->service);
    daebus_log_set_level((daebus_log_level)app->log_level);
    int rc = daebus_app_register_blueprint(app, &daebus_default_blueprint);
    if (rc != 0) {
        daebus_app_destroy(app);
        daebus_error_set(err, rc,
                         "cannot register the handlers defined without .bp (%s; the line "
                         "logged above says which)",
                         daebus_strerror(rc));
        return NULL;
    }
    return app;
}

/* ---- components ---- */

/* Frees a component whose attach failed: attach takes ownership on every path. */
static int refuse(daebus__component *c, int rc)
{
    if (c && c->ops && c->ops->destroy && c->self)
        c->ops->destroy(c->self);
    return rc;
}

int daebus__app_attach(daebus_app *app, daebus__component *c)
{
    if (!c || !c->ops)
        return DAEBUS_EINVAL;
    const char *name = c->ops->name;
    if (!app) {
        daebus_log(DAEBUS_LOG_ERROR, "app",
                   "attach %s: the app is NULL (did daebus_app_create fail?); the component is "
                   "freed",
                   name);
        return refuse(c, DAEBUS_EINVAL);
    }
    if (app->started) {
        daebus_log(DAEBUS_LOG_ERROR, "app", "attach %s: attach components before daebus_app_run()",
                   name);
        return refuse(c, DAEBUS_ESTATE);
    }
    for (size_t i = 0; i < app->ncomponents; i++) {
        if (app->components[i] == c) {
            daebus_log(DAEBUS_LOG_ERROR, "app", "attach %s: this component is attached already",
                       name);
            return DAEBUS_EEXIST; /* already owned by the app: never free it twice */
        }
        if (app->components[i]->ops->kind == c->ops->kind) {
            daebus_log(DAEBUS_LOG_ERROR, "app",
                       "attach %s: a %s component is already attached; attach each kind once", name,
                       name);
            return refuse(c, DAEBUS_EEXIST);
        }
    }
    if (c->ops->kind == DAEBUS__COMP_WEBSOCKET && !daebus__app_component(app, DAEBUS__COMP_HTTP)) {
        daebus_log(DAEBUS_LOG_ERROR, "app",
                   "attach websocket: the WebSocket server shares the HTTP port; attach the HTTP "
                   "component first");
        return refuse(c, DAEBUS_EORDER);
    }
    if (app->ncomponents == MAX_COMPONENTS)
        return refuse(c, DAEBUS_EFULL);
    if (c->ops->attach) {
        int rc = c->ops->attach(c->self, app);
        if (rc)
            return refuse(c, rc);
    }
    c->app = app;
    c->started = 0;
    app->components[app->ncomponents++] = c;
    return 0;
}

void *daebus__app_component(const daebus_app *app, int kind)
{
    if (!app)
        return NULL;
    for (size_t i = 0; i < app->ncomponents; i++)
        if (app->components[i]->ops->kind == kind)
            return app->components[i]->self;
    return NULL;
}

struct daebus__civet_server *daebus__app_civet_server(const daebus_app *app)
{
    if (!app)
        return NULL;
    for (size_t i = 0; i < app->ncomponents; i++) {
        const daebus__component *c = app->components[i];
        if (c->ops->civet_server)
            return c->ops->civet_server(c->self);
    }
    return NULL;
}

daebus_http *daebus_app_http(const daebus_app *app)
{
    return daebus__app_component(app, DAEBUS__COMP_HTTP);
}

daebus_ws *daebus_app_websocket(const daebus_app *app)
{
    return daebus__app_component(app, DAEBUS__COMP_WEBSOCKET);
}

daebus_bus *daebus_app_bus(const daebus_app *app)
{
    return daebus__app_component(app, DAEBUS__COMP_BUS);
}

daebus_scheduler *daebus_app_scheduler(const daebus_app *app)
{
    return daebus__app_component(app, DAEBUS__COMP_SCHEDULER);
}

const char *daebus_app_service(const daebus_app *app)
{
    return app ? app->service : NULL;
}

const char *daebus_app_redis_url(const daebus_app *app)
{
    return app ? app->redis_url : NULL;
}

int daebus_app_http_port(const daebus_app *app)
{
    return app ? app->http_port : 0;
}

int daebus_app_max_workers(const daebus_app *app)
{
    return app ? app->max_workers : 10;
}

double daebus_app_shutdown_timeout(const daebus_app *app)
{
    return app ? app->shutdown_timeout : 5.0;
}

/* ---- life cycle ---- */

/* Stops the components in reverse attach order, the bus last: what stops
 * before it (WebSocket clients leaving, their disconnect handlers, HTTP
 * handlers in flight) may still use Redis through it (shared state of
 * replicas: docs/replicas.md). */
static void stop_components(daebus_app *app)
{
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = app->ncomponents; i-- > 0;) {
            daebus__component *c = app->components[i];
            if ((c->ops->kind == DAEBUS__COMP_BUS) != (pass == 1))
                continue;
            if (c->started && c->ops->stop) {
                daebus_log(DAEBUS_LOG_DEBUG, "app", "stopping %s", c->ops->name);
                c->ops->stop(c->self);
            }
            c->started = 0;
        }
    }
}

static void warn_unserved(daebus_app *app)
{
    static const struct {
        int kind;
        int comp;
        const char *what, *component;
    } map[] = {
        {DAEBUS_HANDLER_ROUTE, DAEBUS__COMP_HTTP, "routes", "HTTP"},
        {DAEBUS_HANDLER_SOCKET, DAEBUS__COMP_WEBSOCKET, "socket handlers", "WebSocket"},
        {DAEBUS_HANDLER_SOCKET_CONNECT, DAEBUS__COMP_WEBSOCKET, "socket handlers", "WebSocket"},
        {DAEBUS_HANDLER_ACTION, DAEBUS__COMP_BUS, "actions", "bus"},
        {DAEBUS_HANDLER_LISTEN, DAEBUS__COMP_BUS, "listeners", "bus"},
        {DAEBUS_HANDLER_BACKGROUND, DAEBUS__COMP_SCHEDULER, "background tasks", "scheduler"},
        {DAEBUS_HANDLER_THREAD, DAEBUS__COMP_SCHEDULER, "threads", "scheduler"},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        size_t n = app->tables[map[i].kind].count;
        if (n && !daebus__app_component(app, map[i].comp))
            daebus_log(DAEBUS_LOG_WARNING, "app",
                       "%zu %s registered but no %s component is attached; they will not run", n,
                       map[i].what, map[i].component);
    }
}

/* Names each blueprint that macros filled but no call registered: its
 * handlers would silently never run. */
static void warn_unregistered(daebus_app *app)
{
    for (const daebus_blueprint *bp = daebus__blueprints_defined; bp;
         bp = bp->internal_.next_defined) {
        if (bp == &daebus_default_blueprint)
            continue;
        bool registered = false;
        for (size_t i = 0; i < app->nblueprints && !registered; i++)
            registered = app->blueprints[i] == bp;
        if (registered)
            continue;
        size_t n = 0;
        const daebus_handler_desc *first = NULL;
        for (const daebus_handler_desc *d = bp->internal_.static_head; d;
             d = d->internal_.next, n++)
            if (!first || daebus__app_cmp_desc(&d, &first) < 0)
                first = d;
        const char *file = bp->file ? bp->file : first ? first->file : NULL;
        int line = bp->file ? bp->line : first ? first->line : 0;
        daebus_log(DAEBUS_LOG_WARNING, "app",
                   "blueprint '%s' (%s:%d) has %zu handler%s but was never registered; call "
                   "daebus_app_register_blueprint() with it before daebus_app_run()",
                   bp->name ? bp->name : "?", daebus__app_base_name(file), line, n,
                   n == 1 ? "" : "s");
    }
}

int daebus_app_start(daebus_app *app)
{
    if (!app)
        return DAEBUS_EINVAL;
    if (app->started) {
        daebus_log(DAEBUS_LOG_ERROR, "app", "the app is already running");
        return DAEBUS_ESTATE;
    }
    daebus__mutex_lock(&app->lock);
    app->stop_requested = false;
    daebus__mutex_unlock(&app->lock);
    daebus_log_set_service(app->service);
    daebus_log_set_level((daebus_log_level)app->log_level);
    if (!app->no_signals) {
        int rc = daebus__app_signals_begin(app);
        if (rc) {
            daebus_log(DAEBUS_LOG_ERROR, "app", "cannot set up signal handling");
            return rc;
        }
    }
    warn_unserved(app);
    warn_unregistered(app);
    app->started = true;
    for (size_t i = 0; i < app->ncomponents; i++) {
        daebus__component *c = app->components[i];
        int rc = c->ops->start ? c->ops->start(c->self) : 0;
        if (rc) {
            daebus_log(DAEBUS_LOG_ERROR, "app", "start-up failed: %s component: %s", c->ops->name,
                       daebus_strerror(rc));
            stop_components(app);
            app->started = false;
            daebus__app_signals_end(app);
            return rc;
        }
        c->started = 1;
    }
    const daebus__handler *hooks;
    size_t nhooks = daebus__app_handlers(app, DAEBUS_HANDLER_ON_START, &hooks);
    for (size_t i = 0; i < nhooks; i++) {
        const daebus_handler_desc *d = hooks[i].desc;
        int rc = d->fn.on_start(app, d->opts.user);
        if (rc) {
            daebus_log(DAEBUS_LOG_ERROR, "app",
                       "start-up failed: on_start hook at %s:%d returned %d (%s: %s); stopping",
                       daebus__app_base_name(d->file), d->line, rc, daebus_errname(rc),
                       daebus_strerror(rc));
            stop_components(app);
            app->started = false;
            daebus__app_signals_end(app);
            return rc < 0 ? rc : DAEBUS_EHANDLER;
        }
    }
    daebus__mutex_lock(&app->lock);
    app->running = true;
    daebus__mutex_unlock(&app->lock);

    char parts[512] = "";
    size_t off = 0;
    for (size_t i = 0; i < app->ncomponents && off < sizeof parts; i++) {
        daebus__component *c = app->components[i];
        char desc[160] = "";
        if (c->ops->describe)
            c->ops->describe(c->self, desc, sizeof desc);
        const char *name = c->ops->name;
        bool named = strncmp(desc, name, strlen(name)) == 0; /* "http port 8080" */
        int n = snprintf(parts + off, sizeof parts - off, "%s%s%s%s", off ? "; " : "",
                         named ? "" : name, desc[0] && !named ? " " : "", desc);
        if (n > 0)
            off += (size_t)n;
    }
    daebus_log(DAEBUS_LOG_INFO, "app", "service \"%s\" ready (components: %s)", app->service,
               off ? parts : "none");
    return 0;
}

int daebus_app_wait(daebus_app *app)
{
    if (!app || !app->started)
        return 1;
    daebus__mutex_lock(&app->lock);
    while (!app->stop_requested)
        daebus__cond_wait_until(&app->cond, &app->lock, (daebus__deadline){0}); /* no limit */
    app->running = false;
    daebus__mutex_unlock(&app->lock);
    double t0 = daebus__now_mono();
    stop_components(app);
    app->started = false;
    daebus__app_signals_end(app);
    daebus_log(DAEBUS_LOG_INFO, "app", "service \"%s\" stopped (shutdown took %.3f s)",
               app->service, daebus__now_mono() - t0);
    return 0;
}

int daebus_app_run(daebus_app *app)
{
    if (daebus_app_start(app) != 0)
        return 1;
    return daebus_app_wait(app);
}

void daebus_app_stop(daebus_app *app)
{
    if (!app)
        return;
    daebus__mutex_lock(&app->lock);
    app->stop_requested = true;
    app->running = false;
    pthread_cond_broadcast(&app->cond);
    daebus__mutex_unlock(&app->lock);
}

bool daebus_app_is_running(const daebus_app *app)
{
    if (!app)
        return false;
    daebus_app *mut = (daebus_app *)app;
    daebus__mutex_lock(&mut->lock);
    bool r = app->running;
    daebus__mutex_unlock(&mut->lock);
    return r;
}

void daebus_app_destroy(daebus_app *app)
{
    if (!app)
        return;
    if (app->started) {
        stop_components(app);
        app->started = false;
        daebus__app_signals_end(app);
    }
    for (size_t i = app->ncomponents; i-- > 0;) {
        daebus__component *c = app->components[i];
        if (c->ops->destroy)
            c->ops->destroy(c->self);
    }
    for (int k = 0; k < DAEBUS_HANDLER_KIND_COUNT; k++) {
        for (size_t i = 0; i < app->tables[k].count; i++)
            free((char *)app->tables[k].items[i].key);
        free(app->tables[k].items);
    }
    for (size_t i = 0; i < app->noptions; i++)
        daebus__app_option_free(&app->options[i]);
    pthread_mutex_destroy(&app->lock);
    pthread_cond_destroy(&app->cond);
    free(app->service);
    free(app->redis_url);
    free(app);
}
