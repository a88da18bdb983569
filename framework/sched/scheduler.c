/* scheduler.c - the scheduler component: life cycle, start and stop, statistics.
 *
 * The scheduler runs periodic tasks and one-shot timers (sched_tasks.c) and
 * THREAD handlers (sched_threads.c); sched_internal.h holds their objects.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sched_internal.h"

/* ---- component ops ---- */

static int load_handlers_locked(daebus_scheduler *s)
{
    const daebus__handler *h;
    size_t n = daebus__app_handlers(s->app, DAEBUS_HANDLER_BACKGROUND, &h);
    for (size_t i = 0; i < n; i++) {
        const daebus_handler_desc *d = h[i].desc;
        if (!sched_valid_interval(d->interval) || !h[i].key || !h[i].key[0]) {
            daebus_log(DAEBUS_LOG_ERROR, LOGC,
                       "background task \"%s\" (%s:%d) has an invalid interval %g: use a positive "
                       "number of seconds",
                       h[i].key ? h[i].key : "", d->file ? d->file : "?", d->line, d->interval);
            return DAEBUS_EINVAL;
        }
        daebus_task *t = daebus__sched_find_task_locked(s, h[i].key);
        if (t && !t->from_blueprint) {
            daebus_log(DAEBUS_LOG_ERROR, LOGC,
                       "background task \"%s\" is registered by a blueprint and was also added "
                       "with daebus_scheduler_add_task(): rename one of them",
                       h[i].key);
            return DAEBUS_EEXIST;
        }
        if (!t) {
            int rc = daebus__sched_add_task_locked(s, h[i].key, d->interval, d->fn.task,
                                                   d->opts.user, d->opts.run_at_start, true, &t);
            if (rc)
                return rc;
        } else { /* restart: refresh from the registration */
            t->fn = d->fn.task;
            t->user = d->opts.user;
            t->interval = d->interval;
            t->run_at_start = d->opts.run_at_start;
        }
        t->lease.single = d->opts.single;
    }
    n = daebus__app_handlers(s->app, DAEBUS_HANDLER_THREAD, &h);
    for (size_t i = 0; i < n; i++) {
        const daebus_handler_desc *d = h[i].desc;
        daebus_thread *t = daebus__sched_find_thread_locked(s, h[i].key);
        if (!t && !(t = daebus__sched_add_thread_locked(s, h[i].key)))
            return DAEBUS_ENOMEM;
        t->fn = d->fn.thread;
        t->user = d->opts.user;
        t->auto_start = !d->opts.no_auto_start;
        t->lease.single = d->opts.single;
    }
    return 0;
}

static void sched_stop(void *self);

static int sched_start(void *self)
{
    daebus_scheduler *s = self;
    daebus__mutex_lock(&s->lock);
    if (s->state == ST_RUNNING || s->state == ST_STOPPING) {
        daebus__mutex_unlock(&s->lock);
        return DAEBUS_ESTATE;
    }
    if (s->stragglers) {
        daebus__mutex_unlock(&s->lock);
        daebus_log(DAEBUS_LOG_ERROR, LOGC,
                   "cannot restart: runs or threads of the previous start are still running");
        return DAEBUS_ESTATE;
    }
    int rc = load_handlers_locked(s);
    if (rc) {
        daebus__mutex_unlock(&s->lock);
        return rc;
    }
    s->pool = daebus__pool_create("sched", s->workers, 0);
    if (!s->pool) {
        daebus__mutex_unlock(&s->lock);
        daebus_log(DAEBUS_LOG_ERROR, LOGC, "cannot create the worker pool (%d threads)",
                   s->workers);
        return DAEBUS_ENOMEM;
    }
    s->state = ST_RUNNING;
    atomic_store(&s->stopping, 0);
    if ((rc = daebus__sched_lease_start_locked(s)) != 0) {
        daebus__mutex_unlock(&s->lock);
        sched_stop(s);
        return rc;
    }
    double now = daebus__now_mono();
    for (daebus_task *t = s->tasks; t; t = t->next)
        daebus__sched_schedule_task_locked(s, t, now);
    if (pthread_create(&s->timer_tid, NULL, daebus__sched_timer_main, s) != 0) {
        daebus__mutex_unlock(&s->lock);
        daebus_log(DAEBUS_LOG_ERROR, LOGC, "cannot start the timer thread");
        s->timer_started = false;
        sched_stop(s);
        return DAEBUS_EIO;
    }
    s->timer_started = true;
    for (daebus_thread *t = s->threads; t; t = t->next) {
        bool by_lease = t->lease.single && t->lease.on; /* started by the lease thread */
        if (t->auto_start && !by_lease && daebus__sched_start_thread_locked(s, t) != 0) {
            daebus__mutex_unlock(&s->lock);
            sched_stop(s);
            return DAEBUS_EIO;
        }
    }
    daebus_log(DAEBUS_LOG_INFO, LOGC, "started: %zu tasks, %zu threads, %d workers", s->ntasks,
               s->nthreads, s->workers);
    daebus__mutex_unlock(&s->lock);
    return 0;
}

/* Appends ", what \"name\"" (no comma first) to buf while it has room. */
static void list_append(char *buf, size_t len, size_t *off, const char *what, const char *name)
{
    if (*off >= len)
        return;
    int n = snprintf(buf + *off, len - *off, "%s%s \"%s\"", *off ? ", " : "", what, name);
    if (n > 0)
        *off += (size_t)n;
}

/* Lists what still runs into buf. Returns: how many. */
static size_t list_stragglers_locked(daebus_scheduler *s, char *buf, size_t len)
{
    size_t off = 0, count = 0;
    buf[0] = 0;
    for (daebus_task *t = s->tasks; t; t = t->next) {
        if (t->in_fn) {
            count++;
            list_append(buf, len, &off, "task", t->name);
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
        if (t->state == THR_RUNNING) {
            count++;
            list_append(buf, len, &off, "thread", t->name);
        }
    }
    return count;
}

/* Waits until nothing runs or the monotonic deadline passes.
 * Returns: true if nothing runs any more. */
static bool wait_quiet_locked(daebus_scheduler *s, double deadline)
{
    daebus__deadline d = {deadline > 0 ? deadline : 1e-9};
    while (s->inflight > 0 || s->threads_alive > 0) {
        if (daebus__cond_wait_until(&s->done_cond, &s->lock, d) == ETIMEDOUT)
            break;
    }
    return s->inflight == 0 && s->threads_alive == 0;
}

static void sched_stop(void *self)
{
    daebus_scheduler *s = self;
    daebus__mutex_lock(&s->lock);
    if (s->state != ST_RUNNING) {
        daebus__mutex_unlock(&s->lock);
        return;
    }
    double t0 = daebus__now_mono();
    s->state = ST_STOPPING;
    atomic_store(&s->stopping, 1);
    pthread_cond_broadcast(&s->timer_cond);
    pthread_cond_broadcast(&s->thread_cond);
    pthread_cond_broadcast(&s->lease_cond);
    daebus__mutex_unlock(&s->lock);
    if (s->timer_started) {
        pthread_join(s->timer_tid, NULL);
        s->timer_started = false;
    }

    /* Pending timers are dropped; tasks leave the heap. */
    daebus__mutex_lock(&s->lock);
    sched_timer *dropped = NULL;
    daebus__heap_entry *e;
    while ((e = daebus__heap_pop(&s->heap)) != NULL) {
        if (e->kind != ENTRY_TIMER)
            continue;
        sched_timer *tm = (sched_timer *)e;
        daebus__sched_timer_unlink_locked(s, tm);
        s->timers_waiting--;
        tm->next = dropped;
        dropped = tm;
    }
    daebus__mutex_unlock(&s->lock);
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

    daebus__mutex_lock(&s->lock);
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
        daebus__sched_reap_thread_locked(t);
    daebus__mutex_unlock(&s->lock);
    daebus__sched_lease_stop(s); /* after the runs: another replica takes over now */
    daebus__mutex_lock(&s->lock);
    bool drop_pool = s->inflight == 0;
    daebus__pool *pool = s->pool;
    if (drop_pool)
        s->pool = NULL;
    s->state = ST_STOPPED;
    daebus__mutex_unlock(&s->lock);
    if (drop_pool)
        daebus__pool_destroy(pool);
    daebus_log(DAEBUS_LOG_INFO, LOGC, "stopped in %.3f s", daebus__now_mono() - t0);
}

static void sched_describe(void *self, char *buf, size_t len)
{
    daebus_scheduler *s = self;
    daebus__mutex_lock(&s->lock);
    snprintf(buf, len, "%zu tasks, %zu threads", s->ntasks, s->nthreads);
    daebus__mutex_unlock(&s->lock);
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
    if (!isfinite(o.lease_ttl) || (o.lease_ttl > 0 && o.lease_ttl < 0.1)) {
        daebus_error_set(err, DAEBUS_EINVAL,
                         "lease_ttl must be a finite number of seconds, at least 0.1 (0 = 10)");
        return NULL;
    }
    daebus_scheduler *s = calloc(1, sizeof *s);
    if (!s) {
        daebus_error_set(err, DAEBUS_ENOMEM, "out of memory");
        return NULL;
    }
    s->workers = o.workers > 0 ? o.workers : 4;
    s->grace = o.grace_period > 0 ? o.grace_period : 5.0;
    s->lease_ttl = o.lease_ttl > 0 ? o.lease_ttl : 10.0;
    s->next_timer_id = 1;
    daebus__heap_init(&s->heap);
    if (daebus__mutex_init(&s->lock) != 0 || daebus__cond_init(&s->timer_cond) != 0 ||
        daebus__cond_init(&s->thread_cond) != 0 || daebus__cond_init(&s->done_cond) != 0 ||
        daebus__cond_init(&s->lease_cond) != 0) {
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
    daebus__mutex_lock(&s->lock);
    if (!wait_quiet_locked(s, daebus__now_mono() + (s->stragglers ? s->grace : 0.0))) {
        char names[1024];
        size_t n = list_stragglers_locked(s, names, sizeof names);
        daebus_log(DAEBUS_LOG_ERROR, LOGC,
                   "destroy: %zu still running (%s); leaking the scheduler's memory so they "
                   "can finish safely",
                   n, names[0] ? names : "queued runs");
        daebus__mutex_unlock(&s->lock);
        return;
    }
    for (daebus_thread *t = s->threads; t; t = t->next)
        daebus__sched_reap_thread_locked(t);
    daebus__pool *pool = s->pool;
    s->pool = NULL;
    daebus__mutex_unlock(&s->lock);
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
    daebus__sched_lease_destroy(s);
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
    pthread_cond_destroy(&s->lease_cond);
    free(s);
}
int daebus_scheduler_get_stats(daebus_scheduler *s, daebus_scheduler_stats *out)
{
    if (!s || !out)
        return DAEBUS_EINVAL;
    memset(out, 0, sizeof *out);
    daebus__mutex_lock(&s->lock);
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
    double now = daebus__now_mono();
    for (size_t i = 0; i < s->nleases; i++)
        out->leases_held += s->leases[i]->on && sched_lease_ok(s->leases[i], now);
    out->lease_acquired = s->lease_acquired;
    out->lease_lost = s->lease_lost;
    out->lease_errors = s->lease_errors;
    out->single_refused = s->single_refused;
    daebus__mutex_unlock(&s->lock);
    return 0;
}
