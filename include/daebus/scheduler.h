/* daebus/scheduler.h - background scheduler: periodic tasks, threads, one-shot timers.
 *
 * The scheduler component runs the work nobody asked for over the network:
 *
 *   BACKGROUND(poll_status, "poll_status", 5.0) { ...; return 0; }   // every 5 s
 *   THREAD(watcher, "watcher") {
 *       while (daebus_thread_is_running(thread)) { ...; daebus_thread_sleep(thread, 1.0); }
 *   }
 *   ON_START(warm_up) { ...; return 0; }                             // once, before "ready"
 *
 *   daebus_scheduler_attach(daebus_scheduler_create(NULL, NULL), app);
 *
 * Periodic tasks (BACKGROUND) run on a fixed-rate schedule on the monotonic
 * clock: run k starts at start + k * interval (k = 1, 2, ...; k = 0 as well
 * with .run_at_start), whatever the handler's own run time. Two runs of one
 * task never overlap: a slot that comes while the previous run is still
 * going makes the next run start right after it finishes (a "late start",
 * counted and logged); slots missed meanwhile are skipped and the schedule
 * goes on on the same grid. A run that fails (negative return) is logged
 * with the task's name and the schedule goes on.
 *
 * Threads: one timer thread keeps a min-heap of due times and hands runs to
 * a pool of worker threads (options.workers, default 4), so a task that
 * hangs holds one worker and never the timer or the other tasks. THREAD
 * handlers each get a thread of their own. ON_START hooks are run by the
 * app (app.h) on the thread that called daebus_app_run(), after every
 * component - this one included - has started: a hook can look tasks up.
 *
 * Shutdown (the app stops the component): pending one-shot timers are
 * dropped, no new run starts, runs in progress are waited for up to the
 * grace period and THREAD handlers are asked to stop (daebus_thread_is_running()
 * turns false and daebus_thread_sleep() returns at once) and joined within
 * the same grace period. Whatever is still running then is reported by name
 * in an error log line; C threads cannot be killed, so the scheduler keeps
 * their memory alive (it is leaked at destroy if they still have not
 * returned) and the process may exit under them.
 *
 * Thread: callable from any thread.
 * Functions that take a daebus_task, a daebus_thread or a running
 * scheduler are thread-safe (handlers may call them on their own task) unless
 * the declaration says otherwise.
 *
 * Ownership: names are copied. daebus_task and daebus_thread pointers are
 * owned by the scheduler and stay valid until it is destroyed.
 */
#ifndef DAEBUS_SCHEDULER_H
#define DAEBUS_SCHEDULER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "daebus/app.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- component life cycle ---- */

typedef struct daebus_scheduler_options {
    int workers;         /* worker threads running tasks and timers; <= 0 = 4 */
    double grace_period; /* seconds shutdown waits for runs and threads; <= 0 = 5 */
    double lease_ttl;    /* seconds a leader lease of a .single task or thread lives in Redis
                            without renewal (renewed every lease_ttl / 3); <= 0 = 10.
                            A run of a .single task must be shorter than 0.8 * lease_ttl. */
} daebus_scheduler_options;

#define DAEBUS_SCHEDULER_OPTIONS_INIT                                                              \
    {                                                                                              \
        0, 0.0, 0.0                                                                                \
    }

/* Creates a scheduler. opts may be NULL (defaults).
 * Returns: NULL on failure (err filled). Thread: callable from any thread. */
DAEBUS_API daebus_scheduler *daebus_scheduler_create(const daebus_scheduler_options *opts,
                                                     daebus_error *err);

/* Attaches s to app.
 * Ownership: attach takes s on every path: on failure (app NULL included) it
 * is destroyed, so the caller never frees it. Passing s NULL (a failed create)
 * returns DAEBUS_EINVAL, so "attach(create(...), app)" needs no check.
 * Returns: 0, DAEBUS_EINVAL,
 * DAEBUS_EEXIST (a scheduler is already attached), DAEBUS_ESTATE (app running).
 * Thread: before the app runs. */
DAEBUS_API int daebus_scheduler_attach(daebus_scheduler *s, daebus_app *app);

/* Frees a scheduler that was never attached (attached ones are freed by the
 * app). Accepts NULL. Not while it runs.
 * Thread: before the app runs. */
DAEBUS_API void daebus_scheduler_destroy(daebus_scheduler *s);

/* ---- periodic tasks ---- */

/* Adds a periodic task at run time, as BACKGROUND does at build time. Before
 * start it is scheduled with the others; while running, its schedule starts
 * now (first run after interval, or at once with run_at_start).
 * Ownership: name is copied; user is borrowed and must outlive the scheduler.
 * Returns: 0, DAEBUS_EINVAL (NULL fn, empty name, interval <= 0 or not
 * finite), DAEBUS_EEXIST (a task of that name exists), DAEBUS_ECLOSED
 * (shutdown in progress), DAEBUS_ENOMEM. Thread: callable from any thread. */
DAEBUS_API int daebus_scheduler_add_task(daebus_scheduler *s, const char *name, double interval,
                                         daebus_task_fn *fn, void *user, bool run_at_start);

/* Looks a task up by name. Returns: the task or NULL (unknown, or the
 * scheduler has not started yet and the task comes from a blueprint).
 * Ownership: borrowed, valid until the scheduler is destroyed. Thread: callable from any thread. */
DAEBUS_API daebus_task *daebus_scheduler_find(daebus_scheduler *s, const char *name);

/* Changes the interval. It takes effect from the next run: the next run is
 * due one new interval after the slot of the previous run (or after the
 * start, if none ran yet), at once if that time has already passed, and the
 * grid continues from there. Returns: 0, DAEBUS_EINVAL. Thread: callable from any thread. */
DAEBUS_API int daebus_task_set_interval(daebus_task *task, double interval);

/* Stops scheduling runs (a run in progress finishes). Returns: 0,
 * DAEBUS_EINVAL. Thread: callable from any thread. */
DAEBUS_API int daebus_task_pause(daebus_task *task);

/* Resumes a paused task: the next run comes at the next slot of its grid
 * after now. No-op for a task that is not paused. Returns: 0, DAEBUS_EINVAL.
 * Thread: callable from any thread. */
DAEBUS_API int daebus_task_resume(daebus_task *task);

/* Runs the task once now, paused or not, without touching its schedule. If
 * a run is in progress the extra run starts right after it (never two at
 * once; several triggers meanwhile make one run). Returns: 0, DAEBUS_EINVAL,
 * DAEBUS_ESTATE (scheduler not running), DAEBUS_ECLOSED (stopping).
 * Thread: callable from any thread. */
DAEBUS_API int daebus_task_trigger(daebus_task *task);

/* Accessors. Ownership: the name is owned by the scheduler. Thread: callable from any thread. */
DAEBUS_API const char *daebus_task_name(const daebus_task *task);
DAEBUS_API daebus_app *daebus_task_app(const daebus_task *task);
DAEBUS_API daebus_scheduler *daebus_task_scheduler(const daebus_task *task);
DAEBUS_API void *daebus_task_user(const daebus_task *task);
DAEBUS_API double daebus_task_interval(const daebus_task *task);

/* A snapshot of one task's counters. */
/* One task's figures (X, F: see DAEBUS_STATS_FIELD in app.h; the health
 * blueprint adds the label task="<name>").
 * name: owned by the scheduler; interval: seconds; runs: runs finished;
 * failures: runs that returned a negative value; late_starts: runs started
 * after their slot because the previous run overran; skipped: slots skipped
 * (overrun, pause excluded); triggers: runs asked for with
 * daebus_task_trigger(); last_duration: seconds the last finished run took
 * (0 if none); max_duration: longest run, seconds; last_run_wall: Unix time
 * the last run started (0 if none); next_run_mono: CLOCK_MONOTONIC seconds of
 * the next slot (0 if none); next_run_in: seconds from now to the next slot
 * (-1 if none: paused/stopped); running: a run is in progress now; single:
 * registered with .single; leader: daebus_task_is_leader() now. */
#define DAEBUS_TASK_STATS(X, F)                                                                    \
    F(const char *, name)                                                                          \
    F(double, interval)                                                                            \
    X(uint64_t, runs, "daebus_scheduler_task_runs_total", "", "counter",                           \
      "Runs finished, per task.")                                                                  \
    X(uint64_t, failures, "daebus_scheduler_task_failures_total", "", "counter",                   \
      "Failed runs, per task.")                                                                    \
    F(uint64_t, late_starts)                                                                       \
    F(uint64_t, skipped)                                                                           \
    F(uint64_t, triggers)                                                                          \
    X(double, last_duration, "daebus_scheduler_task_last_duration_seconds", "", "gauge",           \
      "Last run time, per task.")                                                                  \
    F(double, max_duration)                                                                        \
    F(double, last_run_wall)                                                                       \
    F(double, next_run_mono)                                                                       \
    F(double, next_run_in)                                                                         \
    F(bool, paused)                                                                                \
    F(bool, running)                                                                               \
    F(bool, single)                                                                                \
    F(bool, leader)

typedef struct daebus_task_stats {
    DAEBUS_TASK_STATS(DAEBUS_STATS_FIELD, DAEBUS_STATS_PLAIN_FIELD)
} daebus_task_stats;

/* Fills *out with a consistent snapshot. Returns: 0, DAEBUS_EINVAL.
 * Thread: callable from any thread. */
DAEBUS_API int daebus_task_get_stats(const daebus_task *task, daebus_task_stats *out);

/* Called once per task, in the order tasks were added, with a snapshot
 * (borrowed for the call). No scheduler lock is held: fn may call any
 * function of this header. */
typedef void daebus_task_stats_fn(const daebus_task_stats *stats, void *user);

/* Calls fn for every task. Returns: the number of tasks visited, or
 * DAEBUS_EINVAL / DAEBUS_ENOMEM. Thread: callable from any thread. */
DAEBUS_API int daebus_scheduler_foreach_task(daebus_scheduler *s, daebus_task_stats_fn *fn,
                                             void *user);

/* Scheduler totals, for the metrics endpoint. */
/* The scheduler's figures (X, F: see DAEBUS_STATS_FIELD in app.h).
 * threads: THREAD handlers known; runs, failures, late_starts, skipped: all
 * tasks; timers_pending: one-shot timers waiting; workers: pool size;
 * leases_held .. single_refused: the leader leases of .single tasks and
 * threads (docs/replicas.md). */
#define DAEBUS_SCHEDULER_STATS(X, F)                                                               \
    X(size_t, tasks, "daebus_scheduler_tasks", "", "gauge", "Periodic tasks known.")               \
    X(size_t, tasks_running, "daebus_scheduler_tasks_running", "", "gauge",                        \
      "Task runs in progress.")                                                                    \
    F(size_t, threads)                                                                             \
    X(size_t, threads_running, "daebus_scheduler_threads_running", "", "gauge",                    \
      "THREAD handlers alive.")                                                                    \
    X(uint64_t, runs, "daebus_scheduler_runs_total", "", "counter", "Task runs finished.")         \
    X(uint64_t, failures, "daebus_scheduler_failures_total", "", "counter",                        \
      "Task runs that failed.")                                                                    \
    X(uint64_t, late_starts, "daebus_scheduler_late_starts_total", "", "counter",                  \
      "Runs started late because the previous run overran.")                                       \
    X(uint64_t, skipped, "daebus_scheduler_skipped_total", "", "counter", "Slots skipped.")        \
    F(size_t, timers_pending)                                                                      \
    X(uint64_t, timers_fired, "daebus_scheduler_timers_fired_total", "", "counter",                \
      "One-shot timers run.")                                                                      \
    F(uint64_t, timers_cancelled)                                                                  \
    X(uint64_t, dispatch_errors, "daebus_scheduler_dispatch_errors_total", "", "counter",          \
      "Runs that could not be handed to the worker pool.")                                         \
    F(int, workers)                                                                                \
    X(size_t, leases_held, "daebus_scheduler_leases_held", "", "gauge",                            \
      "Leader leases of .single tasks and threads this replica holds now.")                        \
    X(uint64_t, lease_acquired, "daebus_scheduler_lease_acquired_total", "", "counter",            \
      "Leader leases taken.")                                                                      \
    X(uint64_t, lease_lost, "daebus_scheduler_lease_lost_total", "", "counter",                    \
      "Leader leases lost (not renewed in time, or taken by another replica).")                    \
    X(uint64_t, lease_errors, "daebus_scheduler_lease_errors_total", "", "counter",                \
      "Lease commands that failed (Redis unreachable).")                                           \
    X(uint64_t, single_refused, "daebus_scheduler_single_refused_total", "", "counter",            \
      "Runs of .single tasks not started: lease not held or the period already ran.")

typedef struct daebus_scheduler_stats {
    DAEBUS_SCHEDULER_STATS(DAEBUS_STATS_FIELD, DAEBUS_STATS_PLAIN_FIELD)
} daebus_scheduler_stats;

/* Fills *out. Returns: 0, DAEBUS_EINVAL. Thread: callable from any thread. */
DAEBUS_API int daebus_scheduler_get_stats(daebus_scheduler *s, daebus_scheduler_stats *out);

/* ---- one-shot timers ---- */

typedef uint64_t daebus_timer_id; /* never 0 */

/* A one-shot timer's function. status is 0 when the timer fires (on a
 * worker thread) or DAEBUS_ECLOSED when the scheduler shut down before it
 * fired (on the stopping thread: free user, do no work). */
typedef void daebus_timer_fn(daebus_scheduler *s, int status, void *user);

/* Runs fn(s, 0, user) once, delay seconds from now (0 = as soon as a worker
 * is free). If the call fails, fn is never called; if it succeeds, fn is
 * called exactly once (with status 0 or, at shutdown, DAEBUS_ECLOSED) unless
 * daebus_scheduler_cancel() returns true for it. May be called before start
 * (the delay counts from the call). id may be NULL.
 * Ownership: user is borrowed until fn is called or the timer is cancelled.
 * Returns: 0, DAEBUS_EINVAL (NULL fn, delay < 0 or not finite),
 * DAEBUS_ECLOSED (stopping or stopped), DAEBUS_ENOMEM. Thread: callable from any thread. */
DAEBUS_API int daebus_scheduler_after(daebus_scheduler *s, double delay, daebus_timer_fn *fn,
                                      void *user, daebus_timer_id *id);

/* Cancels a timer that has not started yet. Returns: true if it was
 * cancelled (fn will never be called; user is the caller's again), false if
 * it already started, ran, or is unknown. A timer's own fn may call it
 * (cancelling itself returns false). Thread: callable from any thread. */
DAEBUS_API bool daebus_scheduler_cancel(daebus_scheduler *s, daebus_timer_id id);

/* ---- THREAD handlers ---- */

/* Returns: true while the scheduler runs; false once shutdown began (the
 * thread should then return). For a .single thread, also false once this
 * replica's leader lease is no longer valid (the thread should return; it is
 * started again when the lease is taken again).
 * Thread: callable from any thread. */
DAEBUS_API bool daebus_thread_is_running(const daebus_thread *thread);

/* Sleeps up to seconds, waking at once when shutdown begins (a condition
 * variable, not polling) and, for a .single thread, when its leader lease
 * ends. Returns: true if the whole time elapsed and the scheduler still runs
 * (and the lease is still valid), false if the thread should return.
 * Thread: only inside its handler. */
DAEBUS_API bool daebus_thread_sleep(daebus_thread *thread, double seconds);

/* Accessors. Ownership: the name is owned by the scheduler. Thread: callable from any thread. */
DAEBUS_API const char *daebus_thread_name(const daebus_thread *thread);
DAEBUS_API daebus_app *daebus_thread_app(const daebus_thread *thread);
DAEBUS_API daebus_scheduler *daebus_thread_scheduler(const daebus_thread *thread);
DAEBUS_API void *daebus_thread_user(const daebus_thread *thread);

/* Starts a THREAD handler registered with .no_auto_start (or one that has
 * returned: it is started again). Returns: 0, DAEBUS_ENOENT (unknown name),
 * DAEBUS_EEXIST (already running), DAEBUS_ESTATE (scheduler not running),
 * DAEBUS_EIO (thread creation failed). Thread: callable from any thread. */
DAEBUS_API int daebus_scheduler_start_thread(daebus_scheduler *s, const char *name);

/* Returns: true if the named THREAD handler is running now. Thread: callable from any thread. */
DAEBUS_API bool daebus_scheduler_is_thread_alive(daebus_scheduler *s, const char *name);

/* ---- leader leases: .single tasks and threads ----
 *
 * BACKGROUND(fn, "name", 5.0, .single = true) and THREAD(fn, "name",
 * .single = true) run on one replica of the service at a time: the replica
 * holding a lease in Redis (daebus:<service>:lease:task:<name>, or
 * lease:thread:<name>) with a TTL of options.lease_ttl, renewed every
 * lease_ttl / 3. A replica treats its lease as valid only until the time it
 * sent the last successful renewal plus 0.8 * lease_ttl, so it stops
 * (no new run starts; a THREAD's daebus_thread_is_running() turns false)
 * before Redis can let another replica take it, even when it is cut off from
 * Redis. Each run of a .single task is also checked and recorded in Redis
 * (the run's start, Redis time), so no two runs of the task are less than
 * 3/4 of an interval apart across replicas, and a replica that takes the
 * lease over continues on the last holder's schedule. A run cannot be
 * stopped once started: it must be shorter than 0.8 * lease_ttl (one that
 * outlives its lease is logged). Without a bus attached to the app (no
 * cluster), .single tasks and threads run as ordinary ones (a warning at
 * start); with Redis unreachable, no replica holds the lease and they do not
 * run until it returns. A lease taken while Redis has no trace of it (the
 * first start, or Redis lost its data) is used only lease_ttl later, when any
 * earlier holder has stopped. A .single THREAD cannot be .no_auto_start. A
 * triggered run (daebus_task_trigger) of a .single task runs only on the
 * holder and counts as the period's run. docs/replicas.md has the details. */

/* Returns: true if task runs on this replica now: it is not .single, or the
 * lease is off (no bus), or this replica holds a valid lease for it.
 * Thread: callable from any thread. */
DAEBUS_API bool daebus_task_is_leader(const daebus_task *task);

/* The same for a THREAD handler. Thread: callable from any thread. */
DAEBUS_API bool daebus_thread_is_leader(const daebus_thread *thread);

/* Makes a task added with daebus_scheduler_add_task() .single (or not), as
 * the option does for BACKGROUND. Only before the scheduler starts.
 * Returns: 0, DAEBUS_EINVAL (NULL, or a blueprint's task: use the option),
 * DAEBUS_ESTATE (the scheduler runs). Thread: before the app runs. */
DAEBUS_API int daebus_task_set_single(daebus_task *task, bool single);

#ifdef __cplusplus
}
#endif
#endif
