/* app_options.c - the service's own options (--name / environment / default) and the command line. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "app_internal.h"

static int replace_str(char **dst, const char *src)
{
    char *copy = strdup(src);
    if (!copy)
        return DAEBUS_ENOMEM;
    free(*dst);
    *dst = copy;
    return 0;
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

void daebus__app_option_free(app_option *o)
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
        daebus__app_option_free(&o);
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
    const char *prog = argc > 0 && argv && argv[0] ? daebus__app_base_name(argv[0]) : "service";
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
