/* civet_server.c - the one CivetWeb server of an app: options, start, stop.
 * See civet_server.h. */
#include "civet_server.h"

#include <civetweb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "civet.h"
#include "daebus/error.h"
#include "daebus/log.h"

/* The owner's options may be at most this many pairs. */
#define MAX_OWNER_OPTIONS 16

int daebus__civet_server_init(daebus__civet_server *s, const char *bind_address, int threads,
                              bool tls)
{
    memset(s, 0, sizeof *s);
    atomic_init(&s->port, -1);
    s->threads = threads;
    s->tls = tls;
    s->bind_address = strdup(bind_address);
    return s->bind_address ? 0 : DAEBUS_ENOMEM;
}

void daebus__civet_server_destroy(daebus__civet_server *s)
{
    for (int i = 0; i < s->nextra; i++) {
        free(s->extra[i].name);
        free(s->extra[i].value);
    }
    s->nextra = 0;
    free(s->bind_address);
    s->bind_address = NULL;
}

/* Logs why a change before start is refused while the server runs. */
static bool refuse_running(const daebus__civet_server *s, const char *what, const char *name)
{
    if (!s->ctx)
        return false;
    daebus_log(DAEBUS_LOG_ERROR, "http",
               "%s%s%s: the server runs already; do it before daebus_app_run()", what,
               name ? " " : "", name ? name : "");
    return true;
}

int daebus__civet_server_reserve_threads(daebus__civet_server *s, int extra)
{
    if (!s || extra < 0)
        return DAEBUS_EINVAL;
    if (refuse_running(s, "reserve threads", NULL))
        return DAEBUS_ESTATE;
    s->reserved += extra;
    return 0;
}

int daebus__civet_server_set_option(daebus__civet_server *s, const char *name, const char *value)
{
    if (!s || !name || !value)
        return DAEBUS_EINVAL;
    if (refuse_running(s, "set option", name))
        return DAEBUS_ESTATE;
    int i = 0;
    while (i < s->nextra && strcmp(s->extra[i].name, name) != 0)
        i++;
    if (i == DAEBUS__CIVET_MAX_EXTRA_OPTIONS)
        return DAEBUS_EFULL;
    char *n = strdup(name), *v = strdup(value);
    if (!n || !v) {
        free(n);
        free(v);
        return DAEBUS_ENOMEM;
    }
    if (i == s->nextra) {
        s->nextra++;
    } else {
        free(s->extra[i].name);
        free(s->extra[i].value);
    }
    s->extra[i].name = n;
    s->extra[i].value = v;
    return 0;
}

int daebus__civet_server_threads(const daebus__civet_server *s)
{
    return s->threads + s->reserved;
}

struct mg_context *daebus__civet_server_context(const daebus__civet_server *s)
{
    return s ? s->ctx : NULL;
}

int daebus__civet_server_port(const daebus__civet_server *s)
{
    return s ? atomic_load(&s->port) : -1;
}

/* The CivetWeb options of a start, and the text they point into. */
typedef struct start_options {
    char ports[128], threads[16];
    const char *v[2 * (2 + MAX_OWNER_OPTIONS + DAEBUS__CIVET_MAX_EXTRA_OPTIONS) + 1];
} start_options;

static void build_options(const daebus__civet_server *s, int port, const char *const *owner,
                          start_options *so)
{
    snprintf(so->ports, sizeof so->ports, "%s:%d%s", s->bind_address, port, s->tls ? "s" : "");
    snprintf(so->threads, sizeof so->threads, "%d", daebus__civet_server_threads(s));
    const char **o = so->v;
    int k = 0;
    o[k++] = "listening_ports";
    o[k++] = so->ports;
    o[k++] = "num_threads";
    o[k++] = so->threads;
    for (int i = 0; owner && owner[i] && i < 2 * MAX_OWNER_OPTIONS; i += 2) {
        o[k++] = owner[i];
        o[k++] = owner[i + 1];
    }
    /* Options other components asked for replace the owner's of the same name. */
    for (int e = 0; e < s->nextra; e++) {
        int j = 0;
        while (j < k && strcmp(o[j], s->extra[e].name) != 0)
            j += 2;
        if (j == k) {
            o[k++] = s->extra[e].name;
            k++;
        }
        o[j + 1] = s->extra[e].value;
    }
    o[k] = NULL;
}

int daebus__civet_server_start(daebus__civet_server *s, int port, const char *const *options,
                               const struct mg_callbacks *callbacks, void *user_data)
{
    if (s->ctx)
        return DAEBUS_ESTATE;
    start_options so;
    build_options(s, port, options, &so);
    struct mg_init_data init = {callbacks, user_data, so.v};
    char etext[256] = "";
    unsigned ecode = 0;
    struct mg_error_data edata = {&ecode, etext, sizeof etext};
    daebus__civet_library_init(s->tls);
    s->ctx = mg_start2(&init, &edata);
    if (s->ctx) {
        struct mg_server_port sp[4];
        int np = mg_get_server_ports(s->ctx, 4, sp);
        atomic_store(&s->port, np > 0 ? sp[0].port : port);
        return 0;
    }
    if (daebus__civet_port_busy(s->bind_address, port)) {
        daebus_log(DAEBUS_LOG_ERROR, "http",
                   "cannot listen on %s:%d: port %d is already in use (choose another with "
                   "--port or stop the other server)",
                   s->bind_address, port, port);
        return DAEBUS_EADDRINUSE;
    }
    daebus_log(DAEBUS_LOG_ERROR, "http", "cannot start the server on %s:%d: %s", s->bind_address,
               port, etext[0] ? etext : "unknown CivetWeb error");
    return DAEBUS_EIO;
}

void daebus__civet_server_stop(daebus__civet_server *s)
{
    if (s->ctx) {
        daebus__civet_stop(s->ctx, s->bind_address, atomic_load(&s->port));
        s->ctx = NULL;
    }
    atomic_store(&s->port, -1);
}
