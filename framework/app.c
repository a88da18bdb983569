/* app.c - the app object: configuration, handler tables, component life cycle.
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
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "daebus/app.h"
#include "daebus/log.h"
#include "component.h"

#define MAX_COMPONENTS DAEBUS__COMP_COUNT
#define MAX_BLUEPRINTS 64

typedef struct handler_table {
    daebus__handler *items;
    size_t count, cap;
} handler_table;

struct daebus_app {
    char *service;
    char *redis_url;
    int http_port;
    int log_level;
    int max_workers;
    double shutdown_timeout;
    bool no_signals;

    daebus__component *components[MAX_COMPONENTS]; /* attach order */
    size_t ncomponents;

    daebus_blueprint *blueprints[MAX_BLUEPRINTS];
    size_t nblueprints;
    handler_table tables[DAEBUS_HANDLER_KIND_COUNT];

    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop_requested;
    bool started; /* components started, shutdown not done */
    bool running; /* started and not yet shutting down */

    bool signals_active;
    pthread_t signal_thread;
    atomic_int signal_quit; /* written by the app thread, read by the signal thread */
    sigset_t old_mask;
    struct sigaction old_int, old_term;
};

/* ---- clocks ---- */

double daebus__now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double daebus__now_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- helpers ---- */

static char *dup_or(const char *s, const char *fallback)
{
    return strdup(s ? s : fallback);
}

static int replace_str(char **dst, const char *src)
{
    char *copy = strdup(src);
    if (!copy)
        return DAEBUS_ENOMEM;
    free(*dst);
    *dst = copy;
    return 0;
}

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

static const char *base_name(const char *path)
{
    const char *slash = path ? strrchr(path, '/') : NULL;
    return slash ? slash + 1 : (path ? path : "?");
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
    app->http_port = o.http_port >= 0 && o.http_port <= 65535 ? o.http_port : -1;
    app->log_level = o.log_level >= 0 ? o.log_level : DAEBUS_LOG_INFO;
    app->max_workers = o.max_workers > 0 ? o.max_workers : 10;
    app->shutdown_timeout = o.shutdown_timeout > 0 ? o.shutdown_timeout : 5.0;
    app->no_signals = o.no_signals;
    pthread_mutex_init(&app->lock, NULL);
    pthread_cond_init(&app->cond, NULL);
    if (!app->service || !app->redis_url) {
        daebus_app_destroy(app);
        daebus_error_set(err, DAEBUS_ENOMEM, "out of memory");
        return NULL;
    }
    daebus_log_set_service(app->service);
    daebus_log_set_level((daebus_log_level)app->log_level);
    if (daebus_app_register_blueprint(app, &daebus_default_blueprint) != 0) {
        daebus_app_destroy(app);
        daebus_error_set(err, DAEBUS_ENOMEM, "cannot register the default blueprint");
        return NULL;
    }
    return app;
}

int daebus_app_configure_args(daebus_app *app, int argc, char **argv, daebus_error *err)
{
    if (!app)
        return DAEBUS_EINVAL;
    if (app->started)
        return daebus_error_set(err, DAEBUS_ESTATE, "configure the app before it runs");
    daebus_config cfg = DAEBUS_CONFIG_INIT;
    int rc = daebus_config_apply_env(&cfg, err);
    if (rc)
        return rc;
    rc = daebus_config_apply_args(&cfg, argc, argv, err);
    if (rc)
        return rc;
    if (cfg.service && replace_str(&app->service, cfg.service))
        return daebus_error_set(err, DAEBUS_ENOMEM, "out of memory");
    if (cfg.redis_url && replace_str(&app->redis_url, cfg.redis_url))
        return daebus_error_set(err, DAEBUS_ENOMEM, "out of memory");
    if (cfg.http_port >= 0)
        app->http_port = cfg.http_port;
    if (cfg.log_level >= 0)
        app->log_level = cfg.log_level;
    if (cfg.max_workers > 0)
        app->max_workers = cfg.max_workers;
    daebus_log_set_service(app->service);
    daebus_log_set_level((daebus_log_level)app->log_level);
    return 0;
}

void daebus_app_configure(daebus_app *app, int argc, char **argv)
{
    daebus_error err = {0};
    const char *prog = argc > 0 && argv && argv[0] ? base_name(argv[0]) : "service";
    int rc = daebus_app_configure_args(app, argc, argv, &err);
    if (rc == DAEBUS_CONFIG_HELP) {
        char buf[2048];
        daebus_config_usage(prog, buf, sizeof buf);
        fputs(buf, stdout);
        fflush(stdout);
        daebus_app_destroy(app);
        exit(0);
    }
    if (rc == DAEBUS_CONFIG_VERSION) {
        printf("%s (daebus-c %s)\n", prog, DAEBUS_VERSION_STRING);
        fflush(stdout);
        daebus_app_destroy(app);
        exit(0);
    }
    if (rc != 0) {
        fprintf(stderr, "%s: %s\nTry '%s --help' for the options.\n", prog,
                err.message[0] ? err.message : daebus_strerror(rc), prog);
        daebus_app_destroy(app);
        exit(2);
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

static int cmp_desc(const void *a, const void *b)
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
    daebus_log(DAEBUS_LOG_WARNING, "app", "%s \"%s\": %s:%d overrides %s:%d", what, key,
               base_name(d->file), d->line, base_name(old->desc->file), old->desc->line);
}

static int merge_one(daebus_app *app, const daebus_blueprint *bp, const daebus_handler_desc *d)
{
    if (d->kind <= 0 || d->kind >= DAEBUS_HANDLER_KIND_COUNT) {
        daebus_log(DAEBUS_LOG_ERROR, "app", "blueprint \"%s\": invalid handler kind %d at %s:%d",
                   bp->name ? bp->name : "?", d->kind, base_name(d->file), d->line);
        return DAEBUS_EINVAL;
    }
    handler_table *t = &app->tables[d->kind];
    daebus__handler h = {.desc = d, .key = NULL, .methods = 0, .blueprint = bp->name};
    bool keyed = d->kind != DAEBUS_HANDLER_SOCKET_CONNECT &&
                 d->kind != DAEBUS_HANDLER_SOCKET_DISCONNECT && d->kind != DAEBUS_HANDLER_ON_START;
    if (keyed && (!d->key || !*d->key)) {
        daebus_log(DAEBUS_LOG_ERROR, "app", "%s registered without a name at %s:%d",
                   kind_word(d->kind), base_name(d->file), d->line);
        return DAEBUS_EINVAL;
    }
    if (d->kind == DAEBUS_HANDLER_ROUTE) {
        if (d->key[0] != '/') {
            daebus_log(DAEBUS_LOG_ERROR, "app", "route \"%s\" at %s:%d must start with '/'", d->key,
                       base_name(d->file), d->line);
            return DAEBUS_EINVAL;
        }
        h.key = join_route(bp->prefix, d->key);
        h.methods = d->opts.methods ? d->opts.methods : DAEBUS_GET;
    } else if (d->kind == DAEBUS_HANDLER_BACKGROUND && !(d->interval > 0.0)) {
        daebus_log(DAEBUS_LOG_ERROR, "app",
                   "background task \"%s\" at %s:%d needs an interval > 0 seconds", d->key,
                   base_name(d->file), d->line);
        return DAEBUS_EINVAL;
    } else if (keyed) {
        h.key = strdup(d->key);
    }
    if (keyed && !h.key)
        return DAEBUS_ENOMEM;

    for (size_t i = 0; i < t->count;) {
        daebus__handler *old = &t->items[i];
        bool same;
        if (!keyed)
            same = d->kind != DAEBUS_HANDLER_ON_START; /* one connect / disconnect handler */
        else
            same = strcmp(old->key, h.key) == 0;
        if (!same) {
            i++;
            continue;
        }
        if (d->kind == DAEBUS_HANDLER_ROUTE) {
            unsigned overlap = old->methods & h.methods;
            if (!overlap) {
                i++;
                continue;
            }
            for (unsigned bit = 1; bit <= DAEBUS_HEAD; bit <<= 1) {
                if (overlap & bit) {
                    char what[32];
                    snprintf(what, sizeof what, "route %s", method_word(bit));
                    warn_override(old, d, h.key, what);
                }
            }
            old->methods &= ~overlap;
            if (old->methods) {
                i++;
                continue;
            }
        } else {
            warn_override(old, d, keyed ? h.key : kind_word(d->kind), kind_word(d->kind));
        }
        table_remove(t, i);
    }
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
    for (const daebus_handler_desc *d = bp->static_head; d; d = d->next)
        nstatic++;
    const daebus_handler_desc **order = NULL;
    if (n) {
        order = malloc(n * sizeof *order);
        if (!order)
            return DAEBUS_ENOMEM;
    }
    size_t k = 0;
    for (const daebus_handler_desc *d = bp->static_head; d; d = d->next)
        order[k++] = d;
    if (nstatic > 1)
        qsort(order, nstatic, sizeof *order, cmp_desc);
    for (const daebus_handler_desc *d = bp->dynamic_head; d; d = d->next)
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

/* ---- components ---- */

int daebus__app_attach(daebus_app *app, daebus__component *c)
{
    if (!app || !c || !c->ops) {
        daebus_log(DAEBUS_LOG_ERROR, "app", "attach: app and component are required");
        return DAEBUS_EINVAL;
    }
    const char *name = c->ops->name;
    if (app->started) {
        daebus_log(DAEBUS_LOG_ERROR, "app", "attach %s: attach components before daebus_app_run()",
                   name);
        return DAEBUS_ESTATE;
    }
    for (size_t i = 0; i < app->ncomponents; i++) {
        if (app->components[i] == c || app->components[i]->ops->kind == c->ops->kind) {
            daebus_log(DAEBUS_LOG_ERROR, "app",
                       "attach %s: a %s component is already attached; attach each kind once", name,
                       name);
            return DAEBUS_EEXIST;
        }
    }
    if (c->ops->kind == DAEBUS__COMP_WEBSOCKET && !daebus__app_component(app, DAEBUS__COMP_HTTP)) {
        daebus_log(DAEBUS_LOG_ERROR, "app",
                   "attach websocket: the WebSocket server shares the HTTP port; attach the HTTP "
                   "component first");
        return DAEBUS_EORDER;
    }
    if (app->ncomponents == MAX_COMPONENTS)
        return DAEBUS_EFULL;
    if (c->ops->attach) {
        int rc = c->ops->attach(c->self, app);
        if (rc)
            return rc;
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
    return app ? app->http_port : -1;
}

int daebus_app_max_workers(const daebus_app *app)
{
    return app ? app->max_workers : 10;
}

double daebus_app_shutdown_timeout(const daebus_app *app)
{
    return app ? app->shutdown_timeout : 5.0;
}

/* ---- signals ---- */

static void *signal_main(void *arg)
{
    daebus_app *app = arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    int seen = 0;
    while (!atomic_load(&app->signal_quit)) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        int sig = sigtimedwait(&set, NULL, &ts);
        if (sig < 0)
            continue;
        if (++seen == 1) {
            daebus_log(DAEBUS_LOG_INFO, "app", "received %s, shutting down gracefully",
                       sig == SIGINT ? "SIGINT" : "SIGTERM");
            daebus_app_stop(app);
        } else {
            daebus_log(DAEBUS_LOG_WARNING, "app", "second signal: exiting at once");
            _exit(1);
        }
    }
    return NULL;
}

/* Never runs (the signals stay blocked); installing it undoes an inherited
 * SIG_IGN, under which the kernel would discard SIGINT before sigtimedwait sees
 * it (a service started with '&' from a script inherits that). */
static void ignore_signal(int sig)
{
    (void)sig;
}

static int signals_begin(daebus_app *app)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = ignore_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &app->old_int);
    sigaction(SIGTERM, &sa, &app->old_term);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    if (pthread_sigmask(SIG_BLOCK, &set, &app->old_mask) != 0)
        return DAEBUS_EIO;
    atomic_store(&app->signal_quit, 0);
    if (pthread_create(&app->signal_thread, NULL, signal_main, app) != 0) {
        pthread_sigmask(SIG_SETMASK, &app->old_mask, NULL);
        return DAEBUS_EIO;
    }
    app->signals_active = true;
    return 0;
}

static void signals_end(daebus_app *app)
{
    if (!app->signals_active)
        return;
    atomic_store(&app->signal_quit, 1);
    pthread_join(app->signal_thread, NULL);
    app->signals_active = false;
    pthread_sigmask(SIG_SETMASK, &app->old_mask, NULL);
    sigaction(SIGINT, &app->old_int, NULL);
    sigaction(SIGTERM, &app->old_term, NULL);
}

/* ---- life cycle ---- */

static void stop_components(daebus_app *app)
{
    for (size_t i = app->ncomponents; i-- > 0;) {
        daebus__component *c = app->components[i];
        if (c->started && c->ops->stop) {
            daebus_log(DAEBUS_LOG_DEBUG, "app", "stopping %s", c->ops->name);
            c->ops->stop(c->self);
        }
        c->started = 0;
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

int daebus_app_start(daebus_app *app)
{
    if (!app)
        return DAEBUS_EINVAL;
    if (app->started) {
        daebus_log(DAEBUS_LOG_ERROR, "app", "the app is already running");
        return DAEBUS_ESTATE;
    }
    pthread_mutex_lock(&app->lock);
    app->stop_requested = false;
    pthread_mutex_unlock(&app->lock);
    daebus_log_set_service(app->service);
    daebus_log_set_level((daebus_log_level)app->log_level);
    if (!app->no_signals) {
        int rc = signals_begin(app);
        if (rc) {
            daebus_log(DAEBUS_LOG_ERROR, "app", "cannot set up signal handling");
            return rc;
        }
    }
    warn_unserved(app);
    app->started = true;
    for (size_t i = 0; i < app->ncomponents; i++) {
        daebus__component *c = app->components[i];
        int rc = c->ops->start ? c->ops->start(c->self) : 0;
        if (rc) {
            daebus_log(DAEBUS_LOG_ERROR, "app", "start-up failed: %s component: %s", c->ops->name,
                       daebus_strerror(rc));
            stop_components(app);
            app->started = false;
            signals_end(app);
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
                       "start-up failed: on_start hook at %s:%d returned %d (%s); stopping",
                       base_name(d->file), d->line, rc, daebus_strerror(rc));
            stop_components(app);
            app->started = false;
            signals_end(app);
            return rc < 0 ? rc : DAEBUS_EHANDLER;
        }
    }
    pthread_mutex_lock(&app->lock);
    app->running = true;
    pthread_mutex_unlock(&app->lock);

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
    pthread_mutex_lock(&app->lock);
    while (!app->stop_requested)
        pthread_cond_wait(&app->cond, &app->lock);
    app->running = false;
    pthread_mutex_unlock(&app->lock);
    double t0 = daebus__now_mono();
    stop_components(app);
    app->started = false;
    signals_end(app);
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
    pthread_mutex_lock(&app->lock);
    app->stop_requested = true;
    app->running = false;
    pthread_cond_broadcast(&app->cond);
    pthread_mutex_unlock(&app->lock);
}

bool daebus_app_is_running(const daebus_app *app)
{
    if (!app)
        return false;
    daebus_app *mut = (daebus_app *)app;
    pthread_mutex_lock(&mut->lock);
    bool r = app->running;
    pthread_mutex_unlock(&mut->lock);
    return r;
}

void daebus_app_destroy(daebus_app *app)
{
    if (!app)
        return;
    if (app->started) {
        stop_components(app);
        app->started = false;
        signals_end(app);
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
    pthread_mutex_destroy(&app->lock);
    pthread_cond_destroy(&app->cond);
    free(app->service);
    free(app->redis_url);
    free(app);
}
