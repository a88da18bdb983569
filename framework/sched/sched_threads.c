/* sched_threads.c - THREAD handlers: long-running functions on their own threads. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sched_internal.h"

daebus_thread *daebus__sched_find_thread_locked(daebus_scheduler *s, const char *name)
{
    for (daebus_thread *t = s->threads; t; t = t->next)
        if (strcmp(t->name, name) == 0)
            return t;
    return NULL;
}

daebus_thread *daebus__sched_add_thread_locked(daebus_scheduler *s, const char *name)
{
    daebus_thread *t = calloc(1, sizeof *t);
    char *nm = t ? strdup(name) : NULL;
    if (!nm) {
        free(t);
        return NULL;
    }
    t->s = s;
    t->name = nm;
    if (s->threads_tail)
        s->threads_tail->next = t;
    else
        s->threads = t;
    s->threads_tail = t;
    s->nthreads++;
    return t;
}
/* ---- THREAD handlers ---- */

static void *thread_main(void *arg)
{
    daebus_thread *t = arg;
    daebus_scheduler *s = t->s;
    DAEBUS_LOG_DEBUGF(LOGC, "thread \"%s\" started", t->name);
    t->fn(t, t->user);
    DAEBUS_LOG_DEBUGF(LOGC, "thread \"%s\" returned", t->name);
    daebus__mutex_lock(&s->lock);
    DAEBUS__ASSERT(s->threads_alive > 0 && t->state == THR_RUNNING);
    t->state = THR_EXITED;
    s->threads_alive--;
    pthread_cond_broadcast(&s->done_cond);
    daebus__mutex_unlock(&s->lock);
    return NULL;
}

/* Joins t if it has returned; caller holds the lock (the thread no longer
 * needs it once it is THR_EXITED). */
void daebus__sched_reap_thread_locked(daebus_thread *t)
{
    if (t->state == THR_EXITED && t->joinable) {
        pthread_join(t->tid, NULL);
        t->joinable = false;
        t->state = THR_IDLE;
    }
}

int daebus__sched_start_thread_locked(daebus_scheduler *s, daebus_thread *t)
{
    daebus__sched_reap_thread_locked(t);
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
/* ---- public: threads ---- */

bool daebus_thread_is_running(const daebus_thread *t)
{
    if (!t || atomic_load(&t->s->stopping))
        return false;
    return !t->lease.single || daebus_thread_is_leader(t);
}

bool daebus_thread_sleep(daebus_thread *t, double seconds)
{
    if (!t)
        return false;
    daebus_scheduler *s = t->s;
    const sched_lease *l = &t->lease;
    daebus__mutex_lock(&s->lock);
    if (seconds > 0) { /* infinite: until shutdown (or the lease ends) */
        daebus__deadline d =
            isfinite(seconds) ? daebus__deadline_in(seconds) : (daebus__deadline){0};
        while (s->state == ST_RUNNING && sched_lease_ok(l, daebus__now_mono())) {
            daebus__deadline w = d; /* wake at the lease's end too */
            if (l->on && (w.at <= 0 || l->until < w.at))
                w.at = l->until;
            if (daebus__cond_wait_until(&s->thread_cond, &s->lock, w) == ETIMEDOUT &&
                daebus__deadline_passed(d) && d.at > 0)
                break;
        }
    }
    bool running = s->state == ST_RUNNING && sched_lease_ok(l, daebus__now_mono());
    daebus__mutex_unlock(&s->lock);
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
    daebus__mutex_lock(&s->lock);
    int rc;
    daebus_thread *t = daebus__sched_find_thread_locked(s, name);
    if (s->state != ST_RUNNING)
        rc = s->state == ST_STOPPING ? DAEBUS_ECLOSED : DAEBUS_ESTATE;
    else if (!t)
        rc = DAEBUS_ENOENT;
    else
        rc = daebus__sched_start_thread_locked(s, t);
    daebus__mutex_unlock(&s->lock);
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

bool daebus_scheduler_is_thread_alive(daebus_scheduler *s, const char *name)
{
    if (!s || !name)
        return false;
    daebus__mutex_lock(&s->lock);
    daebus_thread *t = daebus__sched_find_thread_locked(s, name);
    bool alive = t && t->state == THR_RUNNING;
    daebus__mutex_unlock(&s->lock);
    return alive;
}
