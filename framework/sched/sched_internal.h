/* sched_internal.h - the scheduler's objects and the calls between its files (internal).
 *
 * scheduler.c: life cycle, component ops (start, stop), statistics.
 * sched_tasks.c: periodic tasks, one-shot timers and the timer thread.
 * sched_threads.c: THREAD handlers.
 * sched_lease.c: leader leases of .single tasks and threads in Redis.
 * One mutex (daebus_scheduler.lock) guards every field below; functions named
 * *_locked are called with it held.
 */
#ifndef DAEBUS_SCHED_INTERNAL_H
#define DAEBUS_SCHED_INTERNAL_H

#include <math.h> /* isfinite only: no libm needed */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include "daebus/log.h"
#include "daebus/scheduler.h"
#include "check.h"
#include "clock.h"
#include "component.h"
#include "sched_heap.h"
#include "worker_pool.h"

#define LOGC "sched"

enum { ENTRY_TASK = 1, ENTRY_TIMER = 2 };
enum { ST_CREATED = 0, ST_RUNNING, ST_STOPPING, ST_STOPPED };
enum { TIMER_WAITING = 0, TIMER_QUEUED, TIMER_RUNNING, TIMER_CANCELLED };
enum { THR_IDLE = 0, THR_RUNNING, THR_EXITED };

struct daebus_task;
struct daebus_thread;

/* The leader lease of one .single task or thread (sched_lease.c). */
typedef struct sched_lease {
    bool single;       /* registered with .single */
    bool on;           /* in force (the app has a bus): runs need the lease */
    bool held;         /* holding, as last logged */
    bool stuck_logged; /* a THREAD outlived its lease: logged once per term */
    bool term_started; /* a THREAD: started in this term of the lease */
    double until;      /* monotonic end of validity; 0 = not held */
    double from;       /* monotonic start of validity (a lease taken anew waits) */
    char *key, *last_key, *field;
    struct daebus_task *task; /* the owner: one of these two */
    struct daebus_thread *thread;
} sched_lease;

/* Is the owner of l allowed to run at now (lock held)? */
static inline bool sched_lease_ok(const sched_lease *l, double now)
{
    return !l->on || (l->from <= now && l->until > now);
}

struct daebus_task {
    daebus__heap_entry he; /* first: the heap hands entries back */
    daebus_scheduler *s;
    char *name;
    daebus_task_fn *fn;
    void *user;
    double interval;
    bool run_at_start;
    bool from_blueprint;
    /* schedule */
    double origin;    /* when the schedule started */
    double anchor;    /* grid: slot k is anchor + k * interval */
    uint64_t k;       /* index of the slot in he.due */
    double last_slot; /* grid time of the latest slot that came */
    bool has_slot;
    bool paused;
    /* run state */
    bool busy;  /* handed to the pool (queued or running) */
    bool in_fn; /* the handler is executing */
    bool pend_late, pend_trigger;
    bool late_streak;
    bool trig_run; /* the run being handed out was asked for by daebus_task_trigger() */
    sched_lease lease;
    /* counters */
    uint64_t runs, failures, late_starts, skipped, triggers;
    double last_duration, max_duration, last_run_wall;
    struct daebus_task *next;
};

struct daebus_thread {
    daebus_scheduler *s;
    char *name;
    daebus_thread_fn *fn;
    void *user;
    bool auto_start;
    int state;
    bool joinable;
    pthread_t tid;
    sched_lease lease;
    struct daebus_thread *next;
};

typedef struct sched_timer {
    daebus__heap_entry he;
    daebus_scheduler *s;
    daebus_timer_id id;
    daebus_timer_fn *fn;
    void *user;
    int state;
    struct sched_timer *prev, *next; /* live list */
} sched_timer;

struct daebus_scheduler {
    daebus__component comp;
    daebus_app *app;
    int workers;
    double grace;
    pthread_mutex_t lock;
    pthread_cond_t timer_cond;  /* the heap changed or stop began */
    pthread_cond_t thread_cond; /* THREAD sleepers: stop began */
    pthread_cond_t done_cond;   /* a run or a thread finished */
    int state;
    atomic_int stopping; /* mirror of state >= ST_STOPPING for lock-free reads */
    daebus__heap heap;
    daebus__pool *pool;
    pthread_t timer_tid;
    bool timer_started;
    daebus_task *tasks, *tasks_tail;
    size_t ntasks;
    daebus_thread *threads, *threads_tail;
    size_t nthreads, threads_alive;
    sched_timer *timers; /* waiting, queued or running */
    daebus_timer_id next_timer_id;
    size_t inflight; /* task runs and timers handed to the pool, not finished */
    size_t timers_waiting;
    uint64_t timers_fired, timers_cancelled, dispatch_errors;
    bool stragglers;
    /* leader leases (sched_lease.c) */
    double lease_ttl;
    sched_lease **leases; /* the .single tasks and threads, from start to stop */
    char *lease_hash;     /* daebus:<service>:leases */
    size_t nleases;
    struct daebus__redis_pub *lease_pub;
    pthread_cond_t lease_cond; /* the lease thread: stop began */
    pthread_t lease_tid;
    bool lease_started, lease_stop, lease_redis_down;
    uint64_t lease_acquired, lease_lost, lease_errors, single_refused;
};

static inline bool sched_valid_interval(double iv)
{
    return isfinite(iv) && iv > 0;
}

/* sched_tasks.c */
daebus_task *daebus__sched_find_task_locked(daebus_scheduler *s, const char *name);
int daebus__sched_add_task_locked(daebus_scheduler *s, const char *name, double interval,
                                  daebus_task_fn *fn, void *user, bool run_at_start, bool from_bp,
                                  daebus_task **out);
/* Puts a task on its grid from origin (start or add time). */
void daebus__sched_schedule_task_locked(daebus_scheduler *s, daebus_task *t, double origin);
void daebus__sched_timer_unlink_locked(daebus_scheduler *s, sched_timer *tm);
/* The timer thread: hands due entries of the heap to the pool until stop. */
void *daebus__sched_timer_main(void *arg);

/* sched_lease.c */
/* At start (lock held): finds the .single tasks and threads, and when the app
 * has a bus, connects their leases to Redis and starts the lease thread.
 * Returns: 0, DAEBUS_EINVAL (bad combination of options), DAEBUS_ENOMEM,
 * DAEBUS_EIO. */
int daebus__sched_lease_start_locked(daebus_scheduler *s);
/* At stop, after runs and threads finished (lock not held): stops the lease
 * thread and releases the leases held (not those whose run or thread still
 * runs: they expire on their own). */
void daebus__sched_lease_stop(daebus_scheduler *s);
/* Before a run of a .single task (lock not held): checks in Redis that this
 * replica still holds the lease and the period has not run yet, renews the
 * lease and records the run. interval: the task's; trig: a triggered run.
 * Returns: true to run. */
bool daebus__sched_lease_run_check(daebus_task *t, double interval, bool trig);
/* Frees what the leases of s still hold (destroy, once nothing runs). */
void daebus__sched_lease_destroy(daebus_scheduler *s);

/* sched_threads.c */
daebus_thread *daebus__sched_find_thread_locked(daebus_scheduler *s, const char *name);
/* Appends an idle thread named name (copied). Returns: it, or NULL (no memory). */
daebus_thread *daebus__sched_add_thread_locked(daebus_scheduler *s, const char *name);
/* Joins t if it has returned (the thread no longer needs the lock once it is
 * THR_EXITED). */
void daebus__sched_reap_thread_locked(daebus_thread *t);
/* Returns: 0, DAEBUS_EEXIST (running), DAEBUS_EIO. */
int daebus__sched_start_thread_locked(daebus_scheduler *s, daebus_thread *t);

#endif
