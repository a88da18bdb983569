/* app_internal.h - the app object and the calls between the app's files (internal).
 *
 * app.c: creation, components, life cycle. app_options.c: the service's own
 * options and the command line. app_merge.c: blueprint merging into the
 * handler tables. app_signals.c: the signal thread. config.c: defaults and
 * the environment. blueprint.c: blueprints and run-time registration.
 */
#ifndef DAEBUS_APP_INTERNAL_H
#define DAEBUS_APP_INTERNAL_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include "daebus/app.h"
#include "daebus/log.h"
#include "check.h"
#include "clock.h"
#include "component.h"

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
    char instance_id[96]; /* DAEBUS__INSTANCE_ID_MAX, made at create */
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

/* Returns: the last component of path ("?" for NULL), for log lines. */
static inline const char *daebus__app_base_name(const char *path)
{
    const char *slash = path ? strrchr(path, '/') : NULL;
    return slash ? slash + 1 : (path ? path : "?");
}

/* app_merge.c: qsort comparator of descriptor pointers by (file, line). */
int daebus__app_cmp_desc(const void *a, const void *b);

/* app_options.c: frees one declared option's strings. */
void daebus__app_option_free(app_option *o);

/* app_signals.c: blocks SIGINT/SIGTERM and starts the signal thread, which
 * calls daebus_app_stop() on the first and exits at once on the second.
 * Returns: 0 or DAEBUS_EIO. */
int daebus__app_signals_begin(daebus_app *app);
/* Stops the signal thread and restores the mask and the old handlers. */
void daebus__app_signals_end(daebus_app *app);

#endif
