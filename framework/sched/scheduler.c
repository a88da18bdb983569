/* scheduler.c - periodic tasks, one-shot timers and THREAD handlers.
 *
 * One timer thread sleeps on a condition variable (CLOCK_MONOTONIC) until the
 * earliest entry of a min-heap (sched_heap.h) is due, then hands the run to a
 * worker pool (worker_pool.h). One mutex guards every piece of mutable state;
 * handlers always run without it, so they may call the whole API on
 * themselves.
 *
 * Fixed rate: a task's slots are anchor + k * interval. When a slot comes the
 * timer thread either dispatches a run or, if the previous run is still in
 * progress, marks a "late" run that the worker starts right after the current
 * one (never two runs of one task at once). The next slot is always computed
 * from the grid, never from the run's own start or end, so there is no drift;
 * slots that pass while a late run is already pending are skipped.
 *
 * Shutdown waits for runs and threads through one condition variable
 * (done_cond) up to the grace period. What still runs then cannot be killed:
 * the pool and every object such code could touch stay allocated; destroy
 * waits once more and leaks them if they still have not returned.
 */
#include <errno.h>
#include <math.h> /* isfinite only: no libm needed */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "daebus/log.h"
#include "daebus/scheduler.h"
#include "component.h"
#include "sched_heap.h"
#include "worker_pool.h"

#define LOGC "sched"

enum { ENTRY_TASK = 1, ENTRY_TIMER = 2 };
enum { ST_CREATED = 0, ST_RUNNING, ST_STOPPING, ST_STOPPED };
enum { TIMER_WAITING = 0, TIMER_QUEUED, TIMER_RUNNING, TIMER_CANCELLED };
enum { THR_IDLE = 0, THR_RUNNING, THR_EXITED };

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
};

/* ---- small helpers ---- */

static void mono_timespec(double t, struct timespec *ts)
{
    if (t < 0)
        t = 0;
    time_t sec = (time_t)t; /* t >= 0: truncation is floor */
    ts->tv_sec = sec;
    ts->tv_nsec = (long)((t - (double)sec) * 1e9);
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static int cond_init_mono(pthread_cond_t *c)
{
    pthread_condattr_t a;
    if (pthread_condattr_init(&a) != 0)
        return -1;
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(c, &a);
    pthread_condattr_destroy(&a);
    return rc;
}

static bool valid_interval(double iv)
{
    return isfinite(iv) && iv > 0;
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

static daebus_task *find_task_locked(daebus_scheduler *s, const char *name)
{
    for (daebus_task *t = s->tasks; t; t = t->next)
        if (strcmp(t->name, name) == 0)
            return t;
    return NULL;
}

static daebus_thread *find_thread_locked(daebus_scheduler *s, const char *name)
{
    for (daebus_thread *t = s->threads; t; t = t->next)
        if (strcmp(t->name, name) == 0)
            return t;
    return NULL;
}

/* ---- running tasks ---- */

static void run_done_locked(daebus_scheduler *s)
{
    s->inflight--;
    pthread_cond_broadcast(&s->done_cond);
}

/* Worker: runs the task, then again at once while a late or triggered run is
 * pending, so the same task never runs on two workers at once. */
static void task_job(void *arg)
{
    daebus_task *t = arg;
    daebus_scheduler *s = t->s;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        if (s->state != ST_RUNNING)
            break;
        t->in_fn = true;
        t->last_run_wall = daebus__now_wall();
        pthread_mutex_unlock(&s->lock);

        double t0 = daebus__now_mono();
        int rc = t->fn(t, t->user);
        double took = daebus__now_mono() - t0;
        if (rc < 0)
            daebus_log(DAEBUS_LOG_ERROR, LOGC, "task \"%s\" failed: returned %d (%s: %s)", t->name,
                       rc, daebus_errname(rc), daebus_strerror(rc));

        pthread_mutex_lock(&s->lock);
        t->in_fn = false;
        t->runs++;
        if (rc < 0)
            t->failures++;
        t->last_duration = took;
        if (took > t->max_duration)
            t->max_duration = took;
        if (!t->pend_late && !t->pend_trigger) {
            t->late_streak = false;
            break;
        }
        if (t->pend_late) {
            t->late_starts++;
            if (!t->late_streak)
                daebus_log(DAEBUS_LOG_WARNING, LOGC,
                           "task \"%s\" overran its interval (run took %.3f s, interval %.3f s): "
                           "next run starts late",
                           t->name, took, t->interval);
            else
                DAEBUS_LOG_DEBUGF(LOGC, "task \"%s\": late start #%llu", t->name,
                                  (unsigned long long)t->late_starts);
            t->late_streak = true;
        } else {
            t->late_streak = false;
        }
        t->pend_late = t->pend_trigger = false;
    }
    t->busy = false;
    t->pend_late = t->pend_trigger = false;
    run_done_locked(s);
    pthread_mutex_unlock(&s->lock);
}

/* Pool drop: a queued run that never started (pool shut down). */
static void task_drop(void *arg)
{
    daebus_task *t = arg;
    daebus_scheduler *s = t->s;
    pthread_mutex_lock(&s->lock);
    t->busy = false;
    t->pend_late = t->pend_trigger = false;
    run_done_locked(s);
    pthread_mutex_unlock(&s->lock);
}

static void dispatch_locked(daebus_scheduler *s, daebus_task *t)
{
    t->busy = true;
    s->inflight++;
    int rc = daebus__pool_submit(s->pool, task_job, task_drop, t);
    if (rc != 0) {
        t->busy = false;
        s->inflight--;
        s->dispatch_errors++;
        daebus_log(DAEBUS_LOG_ERROR, LOGC, "task \"%s\": cannot queue a run: %s", t->name,
                   daebus_strerror(rc));
    }
}

/* The slot t->he.due has come. */
static void task_slot_locked(daebus_scheduler *s, daebus_task *t, double now)
{
    t->last_slot = t->he.due;
    t->has_slot = true;
    if (t->busy) {
        if (t->pend_late)
            t->skipped++; /* a late run is already waiting: coalesce */
        else
            t->pend_late = true;
    } else {
        dispatch_locked(s, t);
    }
    uint64_t j = t->k + 1;
    double next = t->anchor + (double)j * t->interval;
    if (next <= now) {
        uint64_t jj = (uint64_t)((now - t->anchor) / t->interval) + 1;
        if (jj < j)
            jj = j;
        while (t->anchor + (double)jj * t->interval <= now)
            jj++;
        t->skipped += jj - j;
        j = jj;
        next = t->anchor + (double)j * t->interval;
    }
    t->k = j;
    daebus__heap_set_due(&s->heap, &t->he, next); /* cannot fail: the entry was just popped */
}

/* Puts a task on its grid from origin (start or add time). */
static void schedule_task_locked(daebus_scheduler *s, daebus_task *t, double origin)
{
    t->origin = origin;
    t->anchor = origin;
    t->has_slot = false;
    t->k = t->run_at_start ? 0 : 1;
    if (!t->paused)
        daebus__heap_set_due(&s->heap, &t->he, t->anchor + (double)t->k * t->interval);
}

/* ---- timers ---- */

static void timer_unlink_locked(daebus_scheduler *s, sched_timer *tm)
{
    if (tm->prev)
        tm->prev->next = tm->next;
    else
        s->timers = tm->next;
    if (tm->next)
        tm->next->prev = tm->prev;
    tm->prev = tm->next = NULL;
}

static void timer_job(void *arg)
{
    sched_timer *tm = arg;
    daebus_scheduler *s = tm->s;
    pthread_mutex_lock(&s->lock);
    int status = 0;
    if (tm->state == TIMER_CANCELLED) {
        timer_unlink_locked(s, tm);
        run_done_locked(s);
        pthread_mutex_unlock(&s->lock);
        free(tm);
        return;
    }
    if (s->state != ST_RUNNING)
        status = DAEBUS_ECLOSED;
    tm->state = TIMER_RUNNING;
    pthread_mutex_unlock(&s->lock);

    tm->fn(s, status, tm->user);

    pthread_mutex_lock(&s->lock);
    if (status == 0)
        s->timers_fired++;
    timer_unlink_locked(s, tm);
    run_done_locked(s);
    pthread_mutex_unlock(&s->lock);
    free(tm);
}

/* Pool drop: shutdown before the queued timer started. */
static void timer_drop(void *arg)
{
    sched_timer *tm = arg;
    daebus_scheduler *s = tm->s;
    pthread_mutex_lock(&s->lock);
    bool call = tm->state != TIMER_CANCELLED;
    tm->state = TIMER_RUNNING;
    pthread_mutex_unlock(&s->lock);
    if (call)
        tm->fn(s, DAEBUS_ECLOSED, tm->user);
    pthread_mutex_lock(&s->lock);
    timer_unlink_locked(s, tm);
    run_done_locked(s);
    pthread_mutex_unlock(&s->lock);
    free(tm);
}

static void timer_due_locked(daebus_scheduler *s, sched_timer *tm, double now)
{
    tm->state = TIMER_QUEUED;
    s->timers_waiting--;
    s->inflight++;
    int rc = daebus__pool_submit(s->pool, timer_job, timer_drop, tm);
    if (rc != 0) {
        /* retry shortly rather than lose it: fn must be called exactly once */
        s->inflight--;
        s->timers_waiting++;
        s->dispatch_errors++;
        tm->state = TIMER_WAITING;
        daebus__heap_set_due(&s->heap, &tm->he, now + 0.01);
    }
}

/* ---- timer thread ---- */

static void *timer_main(void *arg)
{
    daebus_scheduler *s = arg;
    pthread_mutex_lock(&s->lock);
    while (s->state == ST_RUNNING) {
        daebus__heap_entry *top = daebus__heap_peek(&s->heap);
        if (!top) {
            pthread_cond_wait(&s->timer_cond, &s->lock);
            continue;
        }
        double now = daebus__now_mono();
        if (top->due > now) {
            struct timespec ts;
            mono_timespec(top->due, &ts);
            pthread_cond_timedwait(&s->timer_cond, &s->lock, &ts);
            continue;
        }
        daebus__heap_remove(&s->heap, top);
        if (top->kind == ENTRY_TASK)
            task_slot_locked(s, (daebus_task *)top, now);
        else
            timer_due_locked(s, (sched_timer *)top, now);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* ---- THREAD handlers ---- */

static void *thread_main(void *arg)
{
    daebus_thread *t = arg;
    daebus_scheduler *s = t->s;
    DAEBUS_LOG_DEBUGF(LOGC, "thread \"%s\" started", t->name);
    t->fn(t, t->user);
    DAEBUS_LOG_DEBUGF(LOGC, "thread \"%s\" returned", t->name);
    pthread_mutex_lock(&s->lock);
    t->state = THR_EXITED;
    s->threads_alive--;
    pthread_cond_broadcast(&s->done_cond);
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* Joins t if it has returned; caller holds the lock (the thread no longer
 * needs it once it is THR_EXITED). */
static void reap_thread_locked(daebus_thread *t)
{
    if (t->state == THR_EXITED && t->joinable) {
        pthread_join(t->tid, NULL);
        t->joinable = false;
        t->state = THR_IDLE;
    }
}

static int start_thread_locked(daebus_scheduler *s, daebus_thread *t)
{
    reap_thread_locked(t);
    if (t->state == THR_RUNNING)
        return DAEBUS_EEXIST;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 1024 * 1024);
    t->state = THR_RUNNING;
    s->threads_alive++;
    int rc = pthread_create(&t->tid, &attr, thread_main, t);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        t->state = THR_IDLE;
        s->threads_alive--;
        daebus_log(DAEBUS_LOG_ERROR, LOGC, "cannot start thread \"%s\": %s", t->name, strerror(rc));
        return DAEBUS_EIO;
    }
    t->joinable = true;
    return 0;
}

/* ---- component ops ---- */

static int add_task_locked(daebus_scheduler *s, const char *name, double interval,
                           daebus_task_fn *fn, void *user, bool run_at_start, bool from_bp,
                           daebus_task **out)
{
    if (daebus__heap_reserve(&s->heap, 1) != 0)
        return DAEBUS_ENOMEM;
    daebus_task *t = calloc(1, sizeof *t);
    char *nm = dup_str(name);
    if (!t || !nm) {
        free(t);
        free(nm);
        return DAEBUS_ENOMEM;
    }
    daebus__heap_entry_init(&t->he, ENTRY_TASK);
    t->s = s;
    t->name = nm;
    t->fn = fn;
    t->user = user;
    t->interval = interval;
    t->run_at_start = run_at_start;
    t->from_blueprint = from_bp;
    if (s->tasks_tail)
        s->tasks_tail->next = t;
    else
        s->tasks = t;
    s->tasks_tail = t;
    s->ntasks++;
    *out = t;
    return 0;
}

static int load_handlers_locked(daebus_scheduler *s)
{
    const daebus__handler *h;
    size_t n = daebus__app_handlers(s->app, DAEBUS_HANDLER_BACKGROUND, &h);
    for (size_t i = 0; i < n; i++) {
        const daebus_handler_desc *d = h[i].desc;
        if (!valid_interval(d->interval) || !h[i].key || !h[i].key[0]) {
            daebus_log(DAEBUS_LOG_ERROR, LOGC,
                       "background task \"%s\" (%s:%d) has an invalid interval %g: use a positive "
                       "number of seconds",
                       h[i].key ? h[i].key : "", d->file ? d->file : "?", d->line, d->interval);
            return DAEBUS_EINVAL;
        }
        daebus_task *t = find_task_locked(s, h[i].key);
        if (t && !t->from_blueprint) {
            daebus_log(DAEBUS_LOG_ERROR, LOGC,
                       "background task \"%s\" is registered by a blueprint and was also added "
                       "with daebus_scheduler_add_task(): rename one of them",
                       h[i].key);
            return DAEBUS_EEXIST;
        }
        if (!t) {
            int rc = add_task_locked(s, h[i].key, d->interval, d->fn.task, d->opts.user,
                                     d->opts.run_at_start, true, &t);
            if (rc)
                return rc;
        } else { /* restart: refresh from the registration */
            t->fn = d->fn.task;
            t->user = d->opts.user;
            t->interval = d->interval;
            t->run_at_start = d->opts.run_at_start;
        }
    }
    n = daebus__app_handlers(s->app, DAEBUS_HANDLER_THREAD, &h);
    for (size_t i = 0; i < n; i++) {
        const daebus_handler_desc *d = h[i].desc;
        daebus_thread *t = find_thread_locked(s, h[i].key);
        if (!t) {
            t = calloc(1, sizeof *t);
            char *nm = t ? dup_str(h[i].key) : NULL;
            if (!nm) {
                free(t);
                return DAEBUS_ENOMEM;
            }
            t->s = s;
            t->name = nm;
            if (s->threads_tail)
                s->threads_tail->next = t;
            else
                s->threads = t;
            s->threads_tail = t;
            s->nthreads++;
        }
        t->fn = d->fn.thread;
        t->user = d->opts.user;
        t->auto_start = !d->opts.no_auto_start;
    }
    return 0;
}

static void sched_stop(void *self);

static int sched_start(void *self)
{
    daebus_scheduler *s = self;
    pthread_mutex_lock(&s->lock);
    if (s->state == ST_RUNNING || s->state == ST_STOPPING) {
        pthread_mutex_unlock(&s->lock);
        return DAEBUS_ESTATE;
    }
    if (s->stragglers) {
        pthread_mutex_unlock(&s->lock);
        daebus_log(DAEBUS_LOG_ERROR, LOGC,
                   "cannot restart: runs or threads of the previous start are still running");
        return DAEBUS_ESTATE;
    }
    int rc = load_handlers_locked(s);
    if (rc) {
        pthread_mutex_unlock(&s->lock);
        return rc;
    }
    s->pool = daebus__pool_create("sched", s->workers, 0);
    if (!s->pool) {
        pthread_mutex_unlock(&s->lock);
        daebus_log(DAEBUS_LOG_ERROR, LOGC, "cannot create the worker pool (%d threads)",
                   s->workers);
        return DAEBUS_ENOMEM;
    }
    s->state = ST_RUNNING;
    atomic_store(&s->stopping, 0);
    double now = daebus__now_mono();
    for (daebus_task *t = s->tasks; t; t = t->next)
        schedule_task_locked(s, t, now);
    if (pthread_create(&s->timer_tid, NULL, timer_main, s) != 0) {
        pthread_mutex_unlock(&s->lock);
        daebus_log(DAEBUS_LOG_ERROR, LOGC, "cannot start the timer thread");
        s->timer_started = false;
        sched_stop(s);
        return DAEBUS_EIO;
    }
    s->timer_started = true;
    for (daebus_thread *t = s->threads; t; t = t->next) {
        if (t->auto_start && start_thread_locked(s, t) != 0) {
            pthread_mutex_unlock(&s->lock);
            sched_stop(s);
            return DAEBUS_EIO;
        }
    }
    daebus_log(DAEBUS_LOG_INFO, LOGC, "started: %zu tasks, %zu threads, %d workers", s->ntasks,
               s->nthreads, s->workers);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

/* Appends ", name" for each straggler to buf. */
static size_t list_stragglers_locked(daebus_scheduler *s, char *buf, size_t len)
{
    size_t off = 0, count = 0;
    buf[0] = 0;
    for (daebus_task *t = s->tasks; t; t = t->next) {
        if (!t->in_fn)
            continue;
        count++;
        if (off < len) {
            int n = snprintf(buf + off, len - off, "%stask \"%s\"", off ? ", " : "", t->name);
            if (n > 0)
                off += (size_t)n;
        }
    }
    size_t timers = 0;
    for (sched_timer *tm = s->timers; tm; tm = tm->next)
        if (tm->state == TIMER_RUNNING)
            timers++;
    if (timers && off < len) {
        int n = snprintf(buf + off, len - off, "%s%zu one-shot timer(s)", off ? ", " : "", timers);
        if (n > 0)
            off += (size_t)n;
    }
    count += timers;
    for (daebus_thread *t = s->threads; t; t = t->next) {
        if (t->state != THR_RUNNING)
            continue;
        count++;
        if (off < len) {
            int n = snprintf(buf + off, len - off, "%sthread \"%s\"", off ? ", " : "", t->name);
            if (n > 0)
                off += (size_t)n;
        }
    }
    return count;
}

/* Waits until nothing runs or the monotonic deadline passes.
 * Returns: true if nothing runs any more. */
static bool wait_quiet_locked(daebus_scheduler *s, double deadline)
{
    struct timespec ts;
    mono_timespec(deadline, &ts);
    while (s->inflight > 0 || s->threads_alive > 0) {
        if (pthread_cond_timedwait(&s->done_cond, &s->lock, &ts) == ETIMEDOUT)
            break;
    }
    return s->inflight == 0 && s->threads_alive == 0;
}

static void sched_stop(void *self)
{
    daebus_scheduler *s = self;
    pthread_mutex_lock(&s->lock);
    if (s->state != ST_RUNNING) {
        pthread_mutex_unlock(&s->lock);
        return;
    }
    double t0 = daebus__now_mono();
    s->state = ST_STOPPING;
    atomic_store(&s->stopping, 1);
    pthread_cond_broadcast(&s->timer_cond);
    pthread_cond_broadcast(&s->thread_cond);
    pthread_mutex_unlock(&s->lock);
    if (s->timer_started) {
        pthread_join(s->timer_tid, NULL);
        s->timer_started = false;
    }

    /* Pending timers are dropped; tasks leave the heap. */
    pthread_mutex_lock(&s->lock);
    sched_timer *dropped = NULL;
    daebus__heap_entry *e;
    while ((e = daebus__heap_pop(&s->heap)) != NULL) {
        if (e->kind != ENTRY_TIMER)
            continue;
        sched_timer *tm = (sched_timer *)e;
        timer_unlink_locked(s, tm);
        s->timers_waiting--;
        tm->next = dropped;
        dropped = tm;
    }
    pthread_mutex_unlock(&s->lock);
    size_t ndropped = 0;
    while (dropped) {
        sched_timer *next = dropped->next;
        dropped->fn(s, DAEBUS_ECLOSED, dropped->user);
        free(dropped);
        dropped = next;
        ndropped++;
    }
    if (ndropped)
        daebus_log(DAEBUS_LOG_INFO, LOGC, "shutdown dropped %zu pending one-shot timer(s)",
                   ndropped);

    pthread_mutex_lock(&s->lock);
    bool quiet = wait_quiet_locked(s, t0 + s->grace);
    if (!quiet) {
        char names[1024];
        size_t n = list_stragglers_locked(s, names, sizeof names);
        daebus_log(DAEBUS_LOG_ERROR, LOGC,
                   "still running after the %.3g s grace period, left behind (they cannot be "
                   "killed): %zu: %s",
                   s->grace, n, names[0] ? names : "queued runs");
        s->stragglers = true;
    }
    for (daebus_thread *t = s->threads; t; t = t->next)
        reap_thread_locked(t);
    bool drop_pool = s->inflight == 0;
    daebus__pool *pool = s->pool;
    if (drop_pool)
        s->pool = NULL;
    s->state = ST_STOPPED;
    pthread_mutex_unlock(&s->lock);
    if (drop_pool)
        daebus__pool_destroy(pool);
    daebus_log(DAEBUS_LOG_INFO, LOGC, "stopped in %.3f s", daebus__now_mono() - t0);
}

static void sched_describe(void *self, char *buf, size_t len)
{
    daebus_scheduler *s = self;
    pthread_mutex_lock(&s->lock);
    snprintf(buf, len, "%zu tasks, %zu threads", s->ntasks, s->nthreads);
    pthread_mutex_unlock(&s->lock);
}

static void sched_destroy_ops(void *self)
{
    daebus_scheduler_destroy(self);
}

static const daebus__component_ops sched_ops = {
    .name = "scheduler",
    .kind = DAEBUS__COMP_SCHEDULER,
    .start = sched_start,
    .stop = sched_stop,
    .destroy = sched_destroy_ops,
    .describe = sched_describe,
};

/* ---- public: life cycle ---- */

daebus_scheduler *daebus_scheduler_create(const daebus_scheduler_options *opts, daebus_error *err)
{
    daebus_scheduler_options o = DAEBUS_SCHEDULER_OPTIONS_INIT;
    if (opts)
        o = *opts;
    if (!isfinite(o.grace_period)) {
        daebus_error_set(err, DAEBUS_EINVAL, "grace_period must be a finite number of seconds");
        return NULL;
    }
    daebus_scheduler *s = calloc(1, sizeof *s);
    if (!s) {
        daebus_error_set(err, DAEBUS_ENOMEM, "out of memory");
        return NULL;
    }
    s->workers = o.workers > 0 ? o.workers : 4;
    s->grace = o.grace_period > 0 ? o.grace_period : 5.0;
    s->next_timer_id = 1;
    daebus__heap_init(&s->heap);
    if (pthread_mutex_init(&s->lock, NULL) != 0 || cond_init_mono(&s->timer_cond) != 0 ||
        cond_init_mono(&s->thread_cond) != 0 || cond_init_mono(&s->done_cond) != 0) {
        daebus_error_set(err, DAEBUS_ENOMEM, "cannot initialise the scheduler's locks");
        free(s);
        return NULL;
    }
    atomic_init(&s->stopping, 0);
    s->comp.ops = &sched_ops;
    s->comp.self = s;
    return s;
}

int daebus_scheduler_attach(daebus_scheduler *s, daebus_app *app)
{
    if (!s) {
        daebus_log(DAEBUS_LOG_ERROR, LOGC,
                   "attach: the component is NULL (did daebus_scheduler_create fail?)");
        return DAEBUS_EINVAL;
    }
    int rc = daebus__app_attach(app, &s->comp);
    if (rc == 0)
        s->app = app;
    return rc;
}

void daebus_scheduler_destroy(daebus_scheduler *s)
{
    if (!s)
        return;
    sched_stop(s); /* no-op unless running */
    pthread_mutex_lock(&s->lock);
    if (!wait_quiet_locked(s, daebus__now_mono() + (s->stragglers ? s->grace : 0.0))) {
        char names[1024];
        size_t n = list_stragglers_locked(s, names, sizeof names);
        daebus_log(DAEBUS_LOG_ERROR, LOGC,
                   "destroy: %zu still running (%s); leaking the scheduler's memory so they "
                   "can finish safely",
                   n, names[0] ? names : "queued runs");
        pthread_mutex_unlock(&s->lock);
        return;
    }
    for (daebus_thread *t = s->threads; t; t = t->next)
        reap_thread_locked(t);
    daebus__pool *pool = s->pool;
    s->pool = NULL;
    pthread_mutex_unlock(&s->lock);
    daebus__pool_destroy(pool);

    /* Timers added but never started (scheduler never ran): fn exactly once. */
    daebus__heap_entry *e;
    while ((e = daebus__heap_pop(&s->heap)) != NULL) {
        if (e->kind != ENTRY_TIMER)
            continue;
        sched_timer *tm = (sched_timer *)e;
        tm->fn(s, DAEBUS_ECLOSED, tm->user);
        free(tm);
    }
    daebus__heap_free(&s->heap);
    for (daebus_task *t = s->tasks, *n; t; t = n) {
        n = t->next;
        free(t->name);
        free(t);
    }
    for (daebus_thread *t = s->threads, *n; t; t = n) {
        n = t->next;
        free(t->name);
        free(t);
    }
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->timer_cond);
    pthread_cond_destroy(&s->thread_cond);
    pthread_cond_destroy(&s->done_cond);
    free(s);
}

/* ---- public: tasks ---- */

int daebus_scheduler_add_task(daebus_scheduler *s, const char *name, double interval,
                              daebus_task_fn *fn, void *user, bool run_at_start)
{
    if (!s || !fn || !name || !name[0] || !valid_interval(interval)) {
        daebus_log(DAEBUS_LOG_ERROR, LOGC,
                   "daebus_scheduler_add_task: give a scheduler, a non-empty name, a function "
                   "and an interval > 0 seconds");
        return DAEBUS_EINVAL;
    }
    pthread_mutex_lock(&s->lock);
    if (s->state == ST_STOPPING) {
        pthread_mutex_unlock(&s->lock);
        return DAEBUS_ECLOSED;
    }
    if (find_task_locked(s, name) ||
        (s->app && daebus_app_find_handler(s->app, DAEBUS_HANDLER_BACKGROUND, name, 0))) {
        pthread_mutex_unlock(&s->lock);
        daebus_log(DAEBUS_LOG_ERROR, LOGC,
                   "daebus_scheduler_add_task: a task named \"%s\" exists; pick another name or "
                   "change the existing one with daebus_task_set_interval()",
                   name);
        return DAEBUS_EEXIST;
    }
    daebus_task *t;
    int rc = add_task_locked(s, name, interval, fn, user, run_at_start, false, &t);
    if (rc == 0 && s->state == ST_RUNNING) {
        schedule_task_locked(s, t, daebus__now_mono());
        pthread_cond_signal(&s->timer_cond);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

daebus_task *daebus_scheduler_find(daebus_scheduler *s, const char *name)
{
    if (!s || !name)
        return NULL;
    pthread_mutex_lock(&s->lock);
    daebus_task *t = find_task_locked(s, name);
    pthread_mutex_unlock(&s->lock);
    return t;
}

int daebus_task_set_interval(daebus_task *t, double interval)
{
    if (!t || !valid_interval(interval)) {
        daebus_log(DAEBUS_LOG_ERROR, LOGC,
                   "daebus_task_set_interval: the interval must be a finite number of seconds "
                   "> 0");
        return DAEBUS_EINVAL;
    }
    daebus_scheduler *s = t->s;
    pthread_mutex_lock(&s->lock);
    t->interval = interval;
    if (s->state == ST_RUNNING) {
        double now = daebus__now_mono();
        double base = t->has_slot ? t->last_slot : t->origin;
        double due = base + interval;
        if (due < now) {
            t->anchor = now;
            t->k = 0;
            due = now;
        } else {
            t->anchor = base;
            t->k = 1;
        }
        if (!t->paused) {
            daebus__heap_set_due(&s->heap, &t->he, due);
            pthread_cond_signal(&s->timer_cond);
        }
    }
    pthread_mutex_unlock(&s->lock);
    return 0;
}

int daebus_task_pause(daebus_task *t)
{
    if (!t)
        return DAEBUS_EINVAL;
    daebus_scheduler *s = t->s;
    pthread_mutex_lock(&s->lock);
    if (!t->paused) {
        t->paused = true;
        t->pend_late = false;
        daebus__heap_remove(&s->heap, &t->he);
        pthread_cond_signal(&s->timer_cond);
    }
    pthread_mutex_unlock(&s->lock);
    return 0;
}

int daebus_task_resume(daebus_task *t)
{
    if (!t)
        return DAEBUS_EINVAL;
    daebus_scheduler *s = t->s;
    pthread_mutex_lock(&s->lock);
    if (t->paused) {
        t->paused = false;
        if (s->state == ST_RUNNING) {
            double now = daebus__now_mono();
            uint64_t j = now < t->anchor ? 0 : (uint64_t)((now - t->anchor) / t->interval) + 1;
            while (t->anchor + (double)j * t->interval <= now)
                j++;
            t->k = j;
            daebus__heap_set_due(&s->heap, &t->he, t->anchor + (double)j * t->interval);
            pthread_cond_signal(&s->timer_cond);
        }
    }
    pthread_mutex_unlock(&s->lock);
    return 0;
}

int daebus_task_trigger(daebus_task *t)
{
    if (!t)
        return DAEBUS_EINVAL;
    daebus_scheduler *s = t->s;
    pthread_mutex_lock(&s->lock);
    int rc = 0;
    if (s->state == ST_STOPPING) {
        rc = DAEBUS_ECLOSED;
    } else if (s->state != ST_RUNNING) {
        rc = DAEBUS_ESTATE;
    } else {
        t->triggers++;
        if (t->busy)
            t->pend_trigger = true;
        else
            dispatch_locked(s, t);
    }
    pthread_mutex_unlock(&s->lock);
    if (rc == DAEBUS_ESTATE)
        daebus_log(DAEBUS_LOG_ERROR, LOGC,
                   "daebus_task_trigger(\"%s\"): the scheduler is not running; trigger after "
                   "start (an ON_START hook may)",
                   t->name);
    return rc;
}

const char *daebus_task_name(const daebus_task *t)
{
    return t ? t->name : NULL;
}

daebus_app *daebus_task_app(const daebus_task *t)
{
    return t ? t->s->app : NULL;
}

daebus_scheduler *daebus_task_scheduler(const daebus_task *t)
{
    return t ? t->s : NULL;
}

void *daebus_task_user(const daebus_task *t)
{
    if (!t)
        return NULL;
    pthread_mutex_lock(&t->s->lock);
    void *u = t->user;
    pthread_mutex_unlock(&t->s->lock);
    return u;
}

double daebus_task_interval(const daebus_task *t)
{
    if (!t)
        return 0;
    pthread_mutex_lock(&t->s->lock);
    double iv = t->interval;
    pthread_mutex_unlock(&t->s->lock);
    return iv;
}

static void task_stats_locked(const daebus_task *t, double now, daebus_task_stats *out)
{
    out->name = t->name;
    out->interval = t->interval;
    out->runs = t->runs;
    out->failures = t->failures;
    out->late_starts = t->late_starts;
    out->skipped = t->skipped;
    out->triggers = t->triggers;
    out->last_duration = t->last_duration;
    out->max_duration = t->max_duration;
    out->last_run_wall = t->last_run_wall;
    if (daebus__heap_contains(&t->he)) {
        out->next_run_mono = t->he.due;
        out->next_run_in = t->he.due > now ? t->he.due - now : 0;
    } else {
        out->next_run_mono = 0;
        out->next_run_in = -1;
    }
    out->paused = t->paused;
    out->running = t->in_fn;
}

int daebus_task_get_stats(const daebus_task *t, daebus_task_stats *out)
{
    if (!t || !out)
        return DAEBUS_EINVAL;
    pthread_mutex_lock(&t->s->lock);
    task_stats_locked(t, daebus__now_mono(), out);
    pthread_mutex_unlock(&t->s->lock);
    return 0;
}

int daebus_scheduler_foreach_task(daebus_scheduler *s, daebus_task_stats_fn *fn, void *user)
{
    if (!s || !fn)
        return DAEBUS_EINVAL;
    pthread_mutex_lock(&s->lock);
    size_t n = s->ntasks;
    daebus_task_stats *snap = n ? calloc(n, sizeof *snap) : NULL;
    if (n && !snap) {
        pthread_mutex_unlock(&s->lock);
        return DAEBUS_ENOMEM;
    }
    double now = daebus__now_mono();
    size_t i = 0;
    for (daebus_task *t = s->tasks; t && i < n; t = t->next)
        task_stats_locked(t, now, &snap[i++]);
    pthread_mutex_unlock(&s->lock);
    for (size_t j = 0; j < i; j++)
        fn(&snap[j], user);
    free(snap);
    return (int)i;
}

int daebus_scheduler_get_stats(daebus_scheduler *s, daebus_scheduler_stats *out)
{
    if (!s || !out)
        return DAEBUS_EINVAL;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&s->lock);
    out->tasks = s->ntasks;
    for (daebus_task *t = s->tasks; t; t = t->next) {
        out->tasks_running += t->in_fn;
        out->runs += t->runs;
        out->failures += t->failures;
        out->late_starts += t->late_starts;
        out->skipped += t->skipped;
    }
    out->threads = s->nthreads;
    out->threads_running = s->threads_alive;
    out->timers_pending = s->timers_waiting;
    out->timers_fired = s->timers_fired;
    out->timers_cancelled = s->timers_cancelled;
    out->dispatch_errors = s->dispatch_errors;
    out->workers = s->workers;
    pthread_mutex_unlock(&s->lock);
    return 0;
}

/* ---- public: timers ---- */

int daebus_scheduler_after(daebus_scheduler *s, double delay, daebus_timer_fn *fn, void *user,
                           daebus_timer_id *id)
{
    if (!s || !fn || !isfinite(delay) || delay < 0) {
        daebus_log(DAEBUS_LOG_ERROR, LOGC,
                   "daebus_scheduler_after: give a scheduler, a function and a delay >= 0 "
                   "seconds");
        return DAEBUS_EINVAL;
    }
    sched_timer *tm = calloc(1, sizeof *tm);
    if (!tm)
        return DAEBUS_ENOMEM;
    daebus__heap_entry_init(&tm->he, ENTRY_TIMER);
    tm->s = s;
    tm->fn = fn;
    tm->user = user;
    tm->state = TIMER_WAITING;
    pthread_mutex_lock(&s->lock);
    if (s->state == ST_STOPPING || s->state == ST_STOPPED) {
        pthread_mutex_unlock(&s->lock);
        free(tm);
        return DAEBUS_ECLOSED;
    }
    tm->he.due = daebus__now_mono() + delay;
    if (daebus__heap_push(&s->heap, &tm->he) != 0) {
        pthread_mutex_unlock(&s->lock);
        free(tm);
        return DAEBUS_ENOMEM;
    }
    tm->id = s->next_timer_id++;
    tm->next = s->timers;
    if (s->timers)
        s->timers->prev = tm;
    s->timers = tm;
    s->timers_waiting++;
    if (id)
        *id = tm->id;
    pthread_cond_signal(&s->timer_cond);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

bool daebus_scheduler_cancel(daebus_scheduler *s, daebus_timer_id id)
{
    if (!s || !id)
        return false;
    bool done = false;
    sched_timer *to_free = NULL;
    pthread_mutex_lock(&s->lock);
    for (sched_timer *tm = s->timers; tm; tm = tm->next) {
        if (tm->id != id)
            continue;
        if (tm->state == TIMER_WAITING) {
            daebus__heap_remove(&s->heap, &tm->he);
            timer_unlink_locked(s, tm);
            s->timers_waiting--;
            to_free = tm;
            done = true;
        } else if (tm->state == TIMER_QUEUED) {
            tm->state = TIMER_CANCELLED; /* the job frees it */
            done = true;
        }
        break;
    }
    if (done) {
        s->timers_cancelled++;
        pthread_cond_signal(&s->timer_cond);
    }
    pthread_mutex_unlock(&s->lock);
    free(to_free);
    return done;
}

/* ---- public: threads ---- */

bool daebus_thread_running(const daebus_thread *t)
{
    return t && !atomic_load(&t->s->stopping);
}

bool daebus_thread_sleep(daebus_thread *t, double seconds)
{
    if (!t)
        return false;
    daebus_scheduler *s = t->s;
    pthread_mutex_lock(&s->lock);
    if (isfinite(seconds) && seconds > 0) {
        struct timespec ts;
        mono_timespec(daebus__now_mono() + seconds, &ts);
        while (s->state == ST_RUNNING) {
            if (pthread_cond_timedwait(&s->thread_cond, &s->lock, &ts) == ETIMEDOUT)
                break;
        }
    } else if (seconds > 0) { /* infinite: until shutdown */
        while (s->state == ST_RUNNING)
            pthread_cond_wait(&s->thread_cond, &s->lock);
    }
    bool running = s->state == ST_RUNNING;
    pthread_mutex_unlock(&s->lock);
    return running;
}

const char *daebus_thread_name(const daebus_thread *t)
{
    return t ? t->name : NULL;
}

daebus_app *daebus_thread_app(const daebus_thread *t)
{
    return t ? t->s->app : NULL;
}

daebus_scheduler *daebus_thread_scheduler(const daebus_thread *t)
{
    return t ? t->s : NULL;
}

void *daebus_thread_user(const daebus_thread *t)
{
    return t ? t->user : NULL;
}

int daebus_scheduler_start_thread(daebus_scheduler *s, const char *name)
{
    if (!s || !name)
        return DAEBUS_EINVAL;
    pthread_mutex_lock(&s->lock);
    int rc;
    daebus_thread *t = find_thread_locked(s, name);
    if (s->state != ST_RUNNING)
        rc = s->state == ST_STOPPING ? DAEBUS_ECLOSED : DAEBUS_ESTATE;
    else if (!t)
        rc = DAEBUS_ENOENT;
    else
        rc = start_thread_locked(s, t);
    pthread_mutex_unlock(&s->lock);
    if (rc == DAEBUS_ENOENT)
        daebus_log(DAEBUS_LOG_ERROR, LOGC,
                   "daebus_scheduler_start_thread: no THREAD handler named \"%s\"", name);
    else if (rc == DAEBUS_ESTATE)
        daebus_log(DAEBUS_LOG_ERROR, LOGC,
                   "daebus_scheduler_start_thread(\"%s\"): the scheduler is not running; call it "
                   "after start (an ON_START hook may)",
                   name);
    return rc;
}

bool daebus_scheduler_thread_alive(daebus_scheduler *s, const char *name)
{
    if (!s || !name)
        return false;
    pthread_mutex_lock(&s->lock);
    daebus_thread *t = find_thread_locked(s, name);
    bool alive = t && t->state == THR_RUNNING;
    pthread_mutex_unlock(&s->lock);
    return alive;
}
