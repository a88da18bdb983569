/* sched_tasks.c - periodic tasks on a fixed-rate grid, one-shot timers and the timer thread.
 *
 * See scheduler.c for the model; everything here runs under the scheduler
 * lock except the handlers themselves.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sched_internal.h"

daebus_task *daebus__sched_find_task_locked(daebus_scheduler *s, const char *name)
{
    for (daebus_task *t = s->tasks; t; t = t->next)
        if (strcmp(t->name, name) == 0)
            return t;
    return NULL;
}

/* ---- running tasks ---- */

static void run_done_locked(daebus_scheduler *s)
{
    DAEBUS__ASSERT(s->inflight > 0);
    s->inflight--;
    pthread_cond_broadcast(&s->done_cond);
}

/* A .single task's run may start (lock held; dropped for the Redis check)? */
static bool lease_gate_locked(daebus_task *t)
{
    daebus_scheduler *s = t->s;
    double interval = t->interval;
    bool trig = t->trig_run;
    daebus__mutex_unlock(&s->lock);
    bool ok = daebus__sched_lease_run_check(t, interval, trig);
    daebus__mutex_lock(&s->lock);
    return ok && s->state == ST_RUNNING;
}

/* Worker: runs the task, then again at once while a late or triggered run is
 * pending, so the same task never runs on two workers at once. */
static void task_job(void *arg)
{
    daebus_task *t = arg;
    daebus_scheduler *s = t->s;
    daebus__mutex_lock(&s->lock);
    double took = 0;
    for (;;) {
        if (s->state != ST_RUNNING)
            break;
        if (t->lease.single && !lease_gate_locked(t))
            goto next;
        t->in_fn = true;
        t->last_run_wall = daebus__now_wall();
        daebus__mutex_unlock(&s->lock);

        double t0 = daebus__now_mono();
        int rc = t->fn(t, t->user);
        took = daebus__now_mono() - t0;
        if (rc < 0)
            daebus_log(DAEBUS_LOG_ERROR, LOGC, "task \"%s\" failed: returned %d (%s: %s)", t->name,
                       rc, daebus_errname(rc), daebus_strerror(rc));

        daebus__mutex_lock(&s->lock);
        t->in_fn = false;
        t->runs++;
        if (rc < 0)
            t->failures++;
        t->last_duration = took;
        if (took > t->max_duration)
            t->max_duration = took;
        if (!sched_lease_ok(&t->lease, daebus__now_mono()))
            daebus_log(DAEBUS_LOG_ERROR, LOGC,
                       "task \"%s\": the run took %.3f s and outlived this replica's lease: "
                       "another replica may have started the task meanwhile (keep runs shorter "
                       "than 0.8 * lease_ttl)",
                       t->name, took);
    next:
        t->trig_run = !t->pend_late && t->pend_trigger;
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
    daebus__mutex_unlock(&s->lock);
}

/* Pool drop: a queued run that never started (pool shut down). */
static void task_drop(void *arg)
{
    daebus_task *t = arg;
    daebus_scheduler *s = t->s;
    daebus__mutex_lock(&s->lock);
    t->busy = false;
    t->pend_late = t->pend_trigger = false;
    run_done_locked(s);
    daebus__mutex_unlock(&s->lock);
}

static void dispatch_locked(daebus_scheduler *s, daebus_task *t, bool trig)
{
    DAEBUS__ASSERT(!t->busy); /* never two runs of one task at once */
    t->busy = true;
    t->trig_run = trig;
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
    if (!sched_lease_ok(&t->lease, now)) {
        /* a .single task whose lease another replica holds: nothing to do here */
    } else if (t->busy) {
        if (t->pend_late)
            t->skipped++; /* a late run is already waiting: coalesce */
        else
            t->pend_late = true;
    } else {
        dispatch_locked(s, t, false);
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
void daebus__sched_schedule_task_locked(daebus_scheduler *s, daebus_task *t, double origin)
{
    t->origin = origin;
    t->anchor = origin;
    t->has_slot = false;
    t->k = t->run_at_start ? 0 : 1;
    if (!t->paused)
        daebus__heap_set_due(&s->heap, &t->he, t->anchor + (double)t->k * t->interval);
}

/* ---- timers ---- */

void daebus__sched_timer_unlink_locked(daebus_scheduler *s, sched_timer *tm)
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
    daebus__mutex_lock(&s->lock);
    int status = 0;
    if (tm->state == TIMER_CANCELLED) {
        daebus__sched_timer_unlink_locked(s, tm);
        run_done_locked(s);
        daebus__mutex_unlock(&s->lock);
        free(tm);
        return;
    }
    if (s->state != ST_RUNNING)
        status = DAEBUS_ECLOSED;
    tm->state = TIMER_RUNNING;
    daebus__mutex_unlock(&s->lock);

    tm->fn(s, status, tm->user);

    daebus__mutex_lock(&s->lock);
    if (status == 0)
        s->timers_fired++;
    daebus__sched_timer_unlink_locked(s, tm);
    run_done_locked(s);
    daebus__mutex_unlock(&s->lock);
    free(tm);
}

/* Pool drop: shutdown before the queued timer started. */
static void timer_drop(void *arg)
{
    sched_timer *tm = arg;
    daebus_scheduler *s = tm->s;
    daebus__mutex_lock(&s->lock);
    bool call = tm->state != TIMER_CANCELLED;
    tm->state = TIMER_RUNNING;
    daebus__mutex_unlock(&s->lock);
    if (call)
        tm->fn(s, DAEBUS_ECLOSED, tm->user);
    daebus__mutex_lock(&s->lock);
    daebus__sched_timer_unlink_locked(s, tm);
    run_done_locked(s);
    daebus__mutex_unlock(&s->lock);
    free(tm);
}

static void timer_due_locked(daebus_scheduler *s, sched_timer *tm, double now)
{
    DAEBUS__ASSERT(s->timers_waiting > 0);
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

void *daebus__sched_timer_main(void *arg)
{
    daebus_scheduler *s = arg;
    daebus__mutex_lock(&s->lock);
    while (s->state == ST_RUNNING) {
        daebus__heap_entry *top = daebus__heap_peek(&s->heap);
        if (!top) {
            daebus__cond_wait_until(&s->timer_cond, &s->lock, (daebus__deadline){0});
            continue;
        }
        double now = daebus__now_mono();
        if (top->due > now) {
            daebus__cond_wait_until(&s->timer_cond, &s->lock, (daebus__deadline){top->due});
            continue;
        }
        daebus__heap_remove(&s->heap, top);
        if (top->kind == ENTRY_TASK)
            task_slot_locked(s, (daebus_task *)top, now);
        else
            timer_due_locked(s, (sched_timer *)top, now);
    }
    daebus__mutex_unlock(&s->lock);
    return NULL;
}
int daebus__sched_add_task_locked(daebus_scheduler *s, const char *name, double interval,
                                  daebus_task_fn *fn, void *user, bool run_at_start, bool from_bp,
                                  daebus_task **out)
{
    if (daebus__heap_reserve(&s->heap, 1) != 0)
        return DAEBUS_ENOMEM;
    daebus_task *t = calloc(1, sizeof *t);
    char *nm = strdup(name);
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

/* ---- public: tasks ---- */

int daebus_scheduler_add_task(daebus_scheduler *s, const char *name, double interval,
                              daebus_task_fn *fn, void *user, bool run_at_start)
{
    if (!s || !fn || !name || !name[0] || !sched_valid_interval(interval)) {
        daebus_log(DAEBUS_LOG_ERROR, LOGC,
                   "daebus_scheduler_add_task: give a scheduler, a non-empty name, a function "
                   "and an interval > 0 seconds");
        return DAEBUS_EINVAL;
    }
    daebus__mutex_lock(&s->lock);
    if (s->state == ST_STOPPING) {
        daebus__mutex_unlock(&s->lock);
        return DAEBUS_ECLOSED;
    }
    if (daebus__sched_find_task_locked(s, name) ||
        (s->app && daebus_app_find_handler(s->app, DAEBUS_HANDLER_BACKGROUND, name, 0))) {
        daebus__mutex_unlock(&s->lock);
        daebus_log(DAEBUS_LOG_ERROR, LOGC,
                   "daebus_scheduler_add_task: a task named \"%s\" exists; pick another name or "
                   "change the existing one with daebus_task_set_interval()",
                   name);
        return DAEBUS_EEXIST;
    }
    daebus_task *t;
    int rc = daebus__sched_add_task_locked(s, name, interval, fn, user, run_at_start, false, &t);
    if (rc == 0 && s->state == ST_RUNNING) {
        daebus__sched_schedule_task_locked(s, t, daebus__now_mono());
        pthread_cond_signal(&s->timer_cond);
    }
    daebus__mutex_unlock(&s->lock);
    return rc;
}

daebus_task *daebus_scheduler_find(daebus_scheduler *s, const char *name)
{
    if (!s || !name)
        return NULL;
    daebus__mutex_lock(&s->lock);
    daebus_task *t = daebus__sched_find_task_locked(s, name);
    daebus__mutex_unlock(&s->lock);
    return t;
}

int daebus_task_set_interval(daebus_task *t, double interval)
{
    if (!t || !sched_valid_interval(interval)) {
        daebus_log(DAEBUS_LOG_ERROR, LOGC,
                   "daebus_task_set_interval: the interval must be a finite number of seconds "
                   "> 0");
        return DAEBUS_EINVAL;
    }
    daebus_scheduler *s = t->s;
    daebus__mutex_lock(&s->lock);
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
    daebus__mutex_unlock(&s->lock);
    return 0;
}

int daebus_task_pause(daebus_task *t)
{
    if (!t)
        return DAEBUS_EINVAL;
    daebus_scheduler *s = t->s;
    daebus__mutex_lock(&s->lock);
    if (!t->paused) {
        t->paused = true;
        t->pend_late = false;
        daebus__heap_remove(&s->heap, &t->he);
        pthread_cond_signal(&s->timer_cond);
    }
    daebus__mutex_unlock(&s->lock);
    return 0;
}

int daebus_task_resume(daebus_task *t)
{
    if (!t)
        return DAEBUS_EINVAL;
    daebus_scheduler *s = t->s;
    daebus__mutex_lock(&s->lock);
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
    daebus__mutex_unlock(&s->lock);
    return 0;
}

int daebus_task_trigger(daebus_task *t)
{
    if (!t)
        return DAEBUS_EINVAL;
    daebus_scheduler *s = t->s;
    daebus__mutex_lock(&s->lock);
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
            dispatch_locked(s, t, true);
    }
    daebus__mutex_unlock(&s->lock);
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
    daebus__mutex_lock(&t->s->lock);
    void *u = t->user;
    daebus__mutex_unlock(&t->s->lock);
    return u;
}

double daebus_task_interval(const daebus_task *t)
{
    if (!t)
        return 0;
    daebus__mutex_lock(&t->s->lock);
    double iv = t->interval;
    daebus__mutex_unlock(&t->s->lock);
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
    out->single = t->lease.single;
    out->leader = sched_lease_ok(&t->lease, now);
}

int daebus_task_get_stats(const daebus_task *t, daebus_task_stats *out)
{
    if (!t || !out)
        return DAEBUS_EINVAL;
    daebus__mutex_lock(&t->s->lock);
    task_stats_locked(t, daebus__now_mono(), out);
    daebus__mutex_unlock(&t->s->lock);
    return 0;
}

int daebus_scheduler_foreach_task(daebus_scheduler *s, daebus_task_stats_fn *fn, void *user)
{
    if (!s || !fn)
        return DAEBUS_EINVAL;
    daebus__mutex_lock(&s->lock);
    size_t n = s->ntasks;
    daebus_task_stats *snap = n ? calloc(n, sizeof *snap) : NULL;
    if (n && !snap) {
        daebus__mutex_unlock(&s->lock);
        return DAEBUS_ENOMEM;
    }
    double now = daebus__now_mono();
    size_t i = 0;
    for (daebus_task *t = s->tasks; t && i < n; t = t->next)
        task_stats_locked(t, now, &snap[i++]);
    daebus__mutex_unlock(&s->lock);
    for (size_t j = 0; j < i; j++)
        fn(&snap[j], user);
    free(snap);
    return (int)i;
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
    daebus__mutex_lock(&s->lock);
    if (s->state == ST_STOPPING || s->state == ST_STOPPED) {
        daebus__mutex_unlock(&s->lock);
        free(tm);
        return DAEBUS_ECLOSED;
    }
    tm->he.due = daebus__now_mono() + delay;
    if (daebus__heap_push(&s->heap, &tm->he) != 0) {
        daebus__mutex_unlock(&s->lock);
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
    daebus__mutex_unlock(&s->lock);
    return 0;
}

bool daebus_scheduler_cancel(daebus_scheduler *s, daebus_timer_id id)
{
    if (!s || !id)
        return false;
    bool done = false;
    sched_timer *to_free = NULL;
    daebus__mutex_lock(&s->lock);
    for (sched_timer *tm = s->timers; tm; tm = tm->next) {
        if (tm->id != id)
            continue;
        if (tm->state == TIMER_WAITING) {
            daebus__heap_remove(&s->heap, &tm->he);
            daebus__sched_timer_unlink_locked(s, tm);
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
    daebus__mutex_unlock(&s->lock);
    free(to_free);
    return done;
}
