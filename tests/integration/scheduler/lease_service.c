/* lease_service.c - a replica for the leader-lease tests (test_lease.c).
 *
 * One .single BACKGROUND task "tick" and one .single THREAD "worker" on the
 * bus's service "lease_test". Each writes what it does to the file named by
 * LEASE_FILE (one file per replica, wall-clock microseconds: every replica
 * runs on the test's host, so the clocks agree):
 *   S <us>   a run of tick starts        E <us>   it ends
 *   A <us>   worker starts               T <us>   worker is alive (every 20 ms)
 *   Z <us>   worker returns
 * Each S, E, A and T is stamped, then the lease is asked: valid after the
 * stamp means valid at it. When it is not, the process stalled between the
 * framework's check and the stamp for longer than the lease had left (a
 * loaded host), and L (a run's start), O (its end: the run outlived its
 * lease) or K (the thread's tick) is written instead: the limit
 * docs/replicas.md states, counted by the test apart from the guarantee.
 * The task runs every 0.3 s; its run time and the lease TTL come from
 * LEASE_WORK and LEASE_TTL (seconds); Redis from --redis. A file is used, not
 * Redis, so that a replica cut off from Redis still reports what it ran. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "daebus/daebus.h"

static int out_fd = -1;
static double work = 0.05;

/* Writes what with the time now. */
static void note_at(char what, const struct timespec *ts)
{
    char line[64];
    int n = snprintf(line, sizeof line, "%c %lld\n", what,
                     (long long)ts->tv_sec * 1000000 + ts->tv_nsec / 1000);
    if (out_fd >= 0 && write(out_fd, line, (size_t)n) != n)
        perror("lease_service: write");
}

static struct timespec stamp(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

static double env_num(const char *name, double dflt)
{
    const char *v = getenv(name);
    return v && *v ? atof(v) : dflt;
}

DAEBUS_BLUEPRINT(lease_bp, "lease");

BACKGROUND(tick, "tick", 0.3, .single = true, .bp = &lease_bp)
{
    (void)user;
    /* The lease still valid after the stamp was valid at it. */
    struct timespec t = stamp();
    note_at(daebus_task_is_leader(task) ? 'S' : 'L', &t);
    sleep_s(work);
    t = stamp();
    note_at(daebus_task_is_leader(task) ? 'E' : 'O', &t);
    return 0;
}

THREAD(worker, "worker", .single = true, .bp = &lease_bp)
{
    (void)user;
    struct timespec t = stamp();
    note_at(daebus_thread_is_leader(thread) ? 'A' : 'K', &t);
    while (daebus_thread_is_running(thread)) {
        t = stamp();
        note_at(daebus_thread_is_leader(thread) ? 'T' : 'K', &t);
        daebus_thread_sleep(thread, 0.02);
    }
    t = stamp();
    note_at('Z', &t);
}

int main(int argc, char **argv)
{
    const char *path = getenv("LEASE_FILE");
    if (path)
        out_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    work = env_num("LEASE_WORK", 0.05);
    daebus_app_options ao = DAEBUS_APP_OPTIONS_INIT;
    ao.service = "lease_test";
    daebus_app *app = daebus_app_create(&ao, NULL);
    if (!app)
        return 1;
    daebus_app_register_blueprint(app, &lease_bp);
    daebus_app_configure(app, argc, argv);
    daebus_bus_options bo = DAEBUS_BUS_OPTIONS_INIT;
    bo.heartbeat = 0.5;
    daebus_bus_attach(daebus_bus_create(&bo, NULL), app);
    daebus_scheduler_options so = DAEBUS_SCHEDULER_OPTIONS_INIT;
    so.lease_ttl = env_num("LEASE_TTL", 1.5);
    so.grace_period = 2;
    daebus_scheduler_attach(daebus_scheduler_create(&so, NULL), app);
    int status = daebus_app_run(app);
    daebus_app_destroy(app);
    if (out_fd >= 0)
        close(out_fd);
    return status;
}
