/* app_signals.c - the signal thread: SIGINT/SIGTERM stop the app, a second one exits at once.
 *
 * run() blocks SIGINT/SIGTERM before any component thread exists, so every
 * thread inherits the mask and only this thread ever sees them.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "app_internal.h"

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

int daebus__app_signals_begin(daebus_app *app)
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

void daebus__app_signals_end(daebus_app *app)
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
