/* worker_pool.c - fixed threads draining a bounded FIFO of jobs.
 *
 * One mutex guards the queue; workers sleep on a condition variable. The
 * queue is a singly linked list of small job nodes. A bounded queue turns
 * overload into an immediate DAEBUS_EFULL for the submitter instead of
 * unbounded memory growth. A thread outside the pool may take an idle
 * worker's slot for a job it runs itself (claim/unclaim): the slot counts as
 * a running job, so no more than `threads` jobs ever run at once and the
 * queue fills exactly as if a worker ran it.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "clock.h"
#include "daebus/error.h"
#include "daebus/log.h"
#include "component.h"
#include "worker_pool.h"

typedef struct job {
    daebus__job_fn *fn, *drop;
    void *arg;
    struct job *next;
} job;

struct daebus__pool {
    char name[32];
    pthread_mutex_t lock;
    pthread_cond_t work; /* a job arrived or shutdown began */
    pthread_cond_t idle; /* the queue drained or a job finished */
    job *head, *tail;
    size_t pending, active, max_queue;
    int nthreads;
    pthread_t *threads;
    int closed;   /* no new submissions */
    int stopping; /* workers exit once the queue is empty */
    int joined;
};

static void *worker_main(void *arg)
{
    daebus__pool *p = arg;
    daebus__mutex_lock(&p->lock);
    for (;;) {
        /* A claimed slot (daebus__pool_claim) counts as a running job. */
        while ((!p->head || p->active >= (size_t)p->nthreads) && !p->stopping)
            pthread_cond_wait(&p->work, &p->lock);
        if (!p->head && p->stopping)
            break;
        job *j = p->head;
        p->head = j->next;
        if (!p->head)
            p->tail = NULL;
        DAEBUS__ASSERT(p->pending > 0);
        p->pending--;
        p->active++;
        daebus__mutex_unlock(&p->lock);
        j->fn(j->arg);
        free(j);
        daebus__mutex_lock(&p->lock);
        DAEBUS__ASSERT(p->active > 0);
        p->active--;
        pthread_cond_broadcast(&p->idle);
    }
    daebus__mutex_unlock(&p->lock);
    return NULL;
}

daebus__pool *daebus__pool_create(const char *name, int threads, size_t max_queue)
{
    if (threads < 1)
        threads = 1;
    daebus__pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    snprintf(p->name, sizeof p->name, "%s", name ? name : "pool");
    p->max_queue = max_queue;
    p->threads = calloc((size_t)threads, sizeof *p->threads);
    if (!p->threads) {
        free(p);
        return NULL;
    }
    daebus__mutex_init(&p->lock);
    daebus__cond_init(&p->work);
    daebus__cond_init(&p->idle);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 512 * 1024);
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&p->threads[i], &attr, worker_main, p) != 0) {
            daebus_log(DAEBUS_LOG_ERROR, p->name, "cannot start worker thread %d of %d", i + 1,
                       threads);
            p->nthreads = i;
            pthread_attr_destroy(&attr);
            daebus__pool_destroy(p);
            return NULL;
        }
        p->nthreads = i + 1;
    }
    pthread_attr_destroy(&attr);
    return p;
}

static int submit(daebus__pool *p, daebus__job_fn *fn, daebus__job_fn *drop, void *arg,
                  bool draining_ok)
{
    if (!p || !fn)
        return DAEBUS_EINVAL;
    job *j = malloc(sizeof *j);
    if (!j)
        return DAEBUS_ENOMEM;
    j->fn = fn;
    j->drop = drop;
    j->arg = arg;
    j->next = NULL;
    daebus__mutex_lock(&p->lock);
    if (p->closed && (!draining_ok || p->stopping)) {
        daebus__mutex_unlock(&p->lock);
        free(j);
        return DAEBUS_ECLOSED;
    }
    if (p->max_queue && p->pending >= p->max_queue) {
        daebus__mutex_unlock(&p->lock);
        free(j);
        return DAEBUS_EFULL;
    }
    if (p->tail)
        p->tail->next = j;
    else
        p->head = j;
    p->tail = j;
    p->pending++;
    DAEBUS__ASSERT(!p->max_queue || p->pending <= p->max_queue); /* the queue bound */
    pthread_cond_signal(&p->work);
    daebus__mutex_unlock(&p->lock);
    return 0;
}

int daebus__pool_submit(daebus__pool *p, daebus__job_fn *fn, daebus__job_fn *drop, void *arg)
{
    return submit(p, fn, drop, arg, false);
}

int daebus__pool_submit_more(daebus__pool *p, daebus__job_fn *fn, daebus__job_fn *drop, void *arg)
{
    return submit(p, fn, drop, arg, true);
}

int daebus__pool_claim(daebus__pool *p)
{
    int rc = 0;
    daebus__mutex_lock(&p->lock);
    if (p->closed)
        rc = DAEBUS_ECLOSED;
    else if (p->pending + p->active >= (size_t)p->nthreads)
        rc = DAEBUS_EFULL;
    else
        p->active++;
    daebus__mutex_unlock(&p->lock);
    return rc;
}

void daebus__pool_unclaim(daebus__pool *p)
{
    daebus__mutex_lock(&p->lock);
    DAEBUS__ASSERT(p->active > 0);
    p->active--;
    if (p->head) /* a job queued while the slot was taken */
        pthread_cond_signal(&p->work);
    pthread_cond_broadcast(&p->idle);
    daebus__mutex_unlock(&p->lock);
}

size_t daebus__pool_pending(daebus__pool *p)
{
    daebus__mutex_lock(&p->lock);
    size_t n = p->pending;
    daebus__mutex_unlock(&p->lock);
    return n;
}

size_t daebus__pool_active(daebus__pool *p)
{
    daebus__mutex_lock(&p->lock);
    size_t n = p->active;
    daebus__mutex_unlock(&p->lock);
    return n;
}

size_t daebus__pool_shutdown(daebus__pool *p, double drain_seconds)
{
    if (!p)
        return 0;
    daebus__mutex_lock(&p->lock);
    if (p->joined) {
        daebus__mutex_unlock(&p->lock);
        return 0;
    }
    p->closed = 1;
    /* Running jobs are waited for too: one may still queue the rest of its
     * work (daebus__pool_submit_more), which then runs on the free workers. */
    if (drain_seconds > 0 && (p->head || p->active)) {
        daebus__deadline until = daebus__deadline_in(drain_seconds);
        while (p->head || p->active) {
            if (daebus__cond_wait_until(&p->idle, &p->lock, until) != 0)
                break;
        }
    }
    job *rest = p->head;
    size_t dropped = p->pending;
    p->head = p->tail = NULL;
    p->pending = 0;
    p->stopping = 1;
    pthread_cond_broadcast(&p->work);
    daebus__mutex_unlock(&p->lock);
    while (rest) {
        job *next = rest->next;
        if (rest->drop)
            rest->drop(rest->arg);
        free(rest);
        rest = next;
    }
    for (int i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    daebus__mutex_lock(&p->lock);
    p->joined = 1;
    daebus__mutex_unlock(&p->lock);
    if (dropped)
        daebus_log(DAEBUS_LOG_WARNING, p->name, "shutdown dropped %zu queued jobs", dropped);
    return dropped;
}

void daebus__pool_destroy(daebus__pool *p)
{
    if (!p)
        return;
    daebus__pool_shutdown(p, 0);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->idle);
    free(p->threads);
    free(p);
}
