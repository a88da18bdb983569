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
#include "http_router.h"

#define MAX_COMPONENTS DAEBUS__COMP_COUNT
#define MAX_BLUEPRINTS 64
#define MAX_OPTIONS    64

typedef struct app_option {
    char *name, *env, *def, *help, *metavar;
    char *value; /* from argv or the environment; NULL = def */
} app_option;

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

    app_option options[MAX_OPTIONS];
    size_t noptions;
    bool configured;

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
    app->http_port = o.http_port == DAEBUS_PORT_ANY || (o.http_port > 0 && o.http_port <= 65535)
                         ? o.http_port
                         : 0;
    app->log_level = o.log_level > DAEBUS_LOG_DEFAULT && o.log_level <= DAEBUS_LOG_OFF
                         ? o.log_level
                         : DAEBUS_LOG_INFO;
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

/* ---- the service's own options ---- */

static bool option_name_ok(const char *name)
{
    if (!name || !*name || name[0] == '-' || strlen(name) > 48)
        return false;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_'))
            return false;
    static const char *const standard[] = {"port",        "redis", "service", "log-level",
                                           "max-workers", "help",  "version"};
    for (size_t i = 0; i < sizeof standard / sizeof standard[0]; i++)
        if (strcmp(name, standard[i]) == 0)
            return false;
    return true;
}

static void option_free(app_option *o)
{
    free(o->name);
    free(o->env);
    free(o->def);
    free(o->help);
    free(o->metavar);
    free(o->value);
    memset(o, 0, sizeof *o);
}

static app_option *find_option(const daebus_app *app, const char *name, size_t len)
{
    for (size_t i = 0; i < app->noptions; i++) {
        app_option *o = (app_option *)&app->options[i];
        if (strlen(o->name) == len && strncmp(o->name, name, len) == 0)
            return o;
    }
    return NULL;
}

int daebus_app_add_option(daebus_app *app, const daebus_app_option *opt)
{
    if (!app || !opt) {
        daebus_log(DAEBUS_LOG_ERROR, "app", "add_option: app and option are required");
        return DAEBUS_EINVAL;
    }
    if (app->started || app->configured) {
        daebus_log(DAEBUS_LOG_ERROR, "app",
                   "add_option(\"%s\"): declare options before daebus_app_configure()",
                   opt->name ? opt->name : "?");
        return DAEBUS_ESTATE;
    }
    if (!option_name_ok(opt->name)) {
        daebus_log(DAEBUS_LOG_ERROR, "app",
                   "add_option(\"%s\"): the name must be letters, digits, '-' or '_', without "
                   "the leading \"--\", and not a standard flag (see --help)",
                   opt->name ? opt->name : "(null)");
        return DAEBUS_EINVAL;
    }
    if (find_option(app, opt->name, strlen(opt->name))) {
        daebus_log(DAEBUS_LOG_ERROR, "app", "add_option(\"%s\"): declared twice", opt->name);
        return DAEBUS_EEXIST;
    }
    if (app->noptions == MAX_OPTIONS) {
        daebus_log(DAEBUS_LOG_ERROR, "app", "add_option(\"%s\"): at most %d options", opt->name,
                   MAX_OPTIONS);
        return DAEBUS_EFULL;
    }
    app_option o = {0};
    bool ok = (o.name = strdup(opt->name)) != NULL;
    if (ok && opt->env)
        ok = (o.env = strdup(opt->env)) != NULL;
    if (ok && opt->default_value)
        ok = (o.def = strdup(opt->default_value)) != NULL;
    if (ok)
        ok = (o.help = strdup(opt->help ? opt->help : "")) != NULL;
    if (ok)
        ok = (o.metavar = strdup(opt->metavar ? opt->metavar : "VALUE")) != NULL;
    if (!ok) {
        option_free(&o);
        return DAEBUS_ENOMEM;
    }
    app->options[app->noptions++] = o;
    return 0;
}

const char *daebus_app_option_value(const daebus_app *app, const char *name)
{
    if (!app || !name)
        return NULL;
    const app_option *o = find_option(app, name, strlen(name));
    if (!o)
        return NULL;
    return o->value ? o->value : o->def;
}

/* Standard flags that take a value (so that the value is not read as a flag). */
static bool standard_with_value(const char *arg)
{
    static const char *const names[] = {"--port", "--redis", "--service", "--log-level",
                                        "--max-workers"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(arg, names[i]) == 0)
            return true;
    return false;
}

/* Takes the service's own flags out of argv into values[]; the rest (argv[0]
 * first) goes to rest[] for daebus_config_apply_args. Help and version stop
 * the scan, as they do there. */
static int split_args(daebus_app *app, int argc, char **argv, char **rest, int *nrest,
                      const char **values, daebus_error *err)
{
    int n = 0;
    if (argc > 0)
        rest[n++] = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0 || strcmp(a, "--help") == 0 || strcmp(a, "--version") == 0) {
            rest[n++] = argv[i];
            continue;
        }
        const char *eq = strchr(a + 2, '=');
        size_t len = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
        app_option *o = find_option(app, a + 2, len);
        if (!o) {
            rest[n++] = argv[i];
            if (!eq && standard_with_value(a) && i + 1 < argc)
                rest[n++] = argv[++i];
            continue;
        }
        const char *v = eq ? eq + 1 : NULL;
        if (!eq) {
            if (i + 1 >= argc)
                return daebus_error_set(err, DAEBUS_EINVAL, "option '%s' needs a value", a);
            v = argv[++i];
        }
        values[o - app->options] = v;
    }
    *nrest = n;
    return 0;
}

int daebus_app_configure_args(daebus_app *app, int argc, char **argv, daebus_error *err)
{
    if (!app || argc < 0 || (argc > 0 && !argv))
        return DAEBUS_EINVAL;
    if (app->started)
        return daebus_error_set(err, DAEBUS_ESTATE, "configure the app before it runs");
    const char *values[MAX_OPTIONS] = {0};
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    if (!rest)
        return daebus_error_set(err, DAEBUS_ENOMEM, "out of memory");
    for (size_t i = 0; i < app->noptions; i++) {
        const char *v = app->options[i].env ? getenv(app->options[i].env) : NULL;
        if (v)
            values[i] = v;
    }
    int nrest = 0;
    daebus_config cfg = DAEBUS_CONFIG_INIT;
    int rc = split_args(app, argc, argv, rest, &nrest, values, err);
    if (rc == 0)
        rc = daebus_config_apply_env(&cfg, err);
    if (rc == 0)
        rc = daebus_config_apply_args(&cfg, nrest, rest, err);
    free(rest);
    if (rc)
        return rc;
    for (size_t i = 0; i < app->noptions; i++) {
        if (!values[i])
            continue;
        char *copy = strdup(values[i]);
        if (!copy)
            return daebus_error_set(err, DAEBUS_ENOMEM, "out of memory");
        free(app->options[i].value);
        app->options[i].value = copy;
    }
    app->configured = true;
    if (cfg.service && replace_str(&app->service, cfg.service))
        return daebus_error_set(err, DAEBUS_ENOMEM, "out of memory");
    if (cfg.redis_url && replace_str(&app->redis_url, cfg.redis_url))
        return daebus_error_set(err, DAEBUS_ENOMEM, "out of memory");
    if (cfg.http_port != 0)
        app->http_port = cfg.http_port;
    if (cfg.log_level > 0)
        app->log_level = cfg.log_level;
    if (cfg.max_workers > 0)
        app->max_workers = cfg.max_workers;
    daebus_log_set_service(app->service);
    daebus_log_set_level((daebus_log_level)app->log_level);
    return 0;
}

/* Writes the --help text (standard options, then the service's) to out. */
static void print_usage(const daebus_app *app, const char *prog, FILE *out)
{
    char buf[2048];
    daebus_config_usage(prog, buf, sizeof buf);
    /* The standard text ends with a note on DAEBUS_LOG_FORMAT; keep it last. */
    char *note = strstr(buf, "\nDAEBUS_LOG_FORMAT");
    if (note)
        *note = '\0';
    fputs(buf, out);
    if (app->noptions) {
        fputs("\nOptions of this service:\n", out);
        int width = 20; /* as the standard options, wider if a flag needs it */
        for (size_t i = 0; i < app->noptions; i++) {
            int w = (int)(strlen(app->options[i].name) + strlen(app->options[i].metavar) + 3);
            if (w > width)
                width = w;
        }
        for (size_t i = 0; i < app->noptions; i++) {
            const app_option *o = &app->options[i];
            char flag[128];
            snprintf(flag, sizeof flag, "--%s %s", o->name, o->metavar);
            fprintf(out, "  %-*s %s", width, flag, o->help);
            if (o->env || o->def) {
                fputs(" (", out);
                if (o->env)
                    fputs(o->env, out);
                if (o->def)
                    fprintf(out, "%sdefault %s", o->env ? ", " : "", o->def);
                fputc(')', out);
            }
            fputc('\n', out);
        }
    }
    if (note)
        fprintf(out, "\n%s", note + 1);
}

void daebus_app_configure(daebus_app *app, int argc, char **argv)
{
    daebus_error err = {0};
    const char *prog = argc > 0 && argv && argv[0] ? base_name(argv[0]) : "service";
    int rc = daebus_app_configure_args(app, argc, argv, &err);
    if (rc == DAEBUS_CONFIG_HELP) {
        print_usage(app, prog, stdout);
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
        fprintf(stderr, "%s: %s (see '%s --help' for the options)\n", prog,
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
    if (old->key && strcmp(old->key, key) != 0) /* a route of the same shape */
        daebus_log(DAEBUS_LOG_WARNING, "app",
                   "%s \"%s\": %s:%d overrides \"%s\" at %s:%d (the patterns differ only in "
                   "parameter names, so they are the same route)",
                   what, key, base_name(d->file), d->line, old->key, base_name(old->desc->file),
                   old->desc->line);
    else
        daebus_log(DAEBUS_LOG_WARNING, "app", "%s \"%s\": %s:%d overrides %s:%d", what, key,
                   base_name(d->file), d->line, base_name(old->desc->file), old->desc->line);
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
        if (h.key) {
            char shape[SHAPE_MAX];
            daebus_error err = {0};
            if (daebus__http_route_shape(h.key, shape, sizeof shape, &err) != 0) {
                daebus_log(DAEBUS_LOG_ERROR, "app", "%s (registered at %s:%d); fix the pattern",
                           err.message, base_name(d->file), d->line);
                free((char *)h.key);
                return DAEBUS_EINVAL;
            }
        }
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
        else if (d->kind == DAEBUS_HANDLER_ROUTE)
            same = same_route(old->key, h.key);
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

/* Names each blueprint that macros filled but no call registered: its
 * handlers would silently never run. */
static void warn_unregistered(daebus_app *app)
{
    for (const daebus_blueprint *bp = daebus__blueprints_defined; bp; bp = bp->next_defined) {
        if (bp == &daebus_default_blueprint)
            continue;
        bool registered = false;
        for (size_t i = 0; i < app->nblueprints && !registered; i++)
            registered = app->blueprints[i] == bp;
        if (registered)
            continue;
        size_t n = 0;
        const daebus_handler_desc *first = NULL;
        for (const daebus_handler_desc *d = bp->static_head; d; d = d->next, n++)
            if (!first || cmp_desc(&d, &first) < 0)
                first = d;
        const char *file = bp->file ? bp->file : first ? first->file : NULL;
        int line = bp->file ? bp->line : first ? first->line : 0;
        daebus_log(DAEBUS_LOG_WARNING, "app",
                   "blueprint '%s' (%s:%d) has %zu handler%s but was never registered; call "
                   "daebus_app_register_blueprint() with it before daebus_app_run()",
                   bp->name ? bp->name : "?", base_name(file), line, n, n == 1 ? "" : "s");
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
                       "start-up failed: on_start hook at %s:%d returned %d (%s: %s); stopping",
                       base_name(d->file), d->line, rc, daebus_errname(rc), daebus_strerror(rc));
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
    for (size_t i = 0; i < app->noptions; i++)
        option_free(&app->options[i]);
    pthread_mutex_destroy(&app->lock);
    pthread_cond_destroy(&app->cond);
    free(app->service);
    free(app->redis_url);
    free(app);
}
