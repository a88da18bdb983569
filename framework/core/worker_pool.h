/* worker_pool.h - a fixed pool of threads draining a bounded FIFO (internal).
 *
 * Used by the bus (actions and listeners) and the scheduler (periodic tasks).
 * Submitting never blocks: a full queue is refused with DAEBUS_EFULL so that
 * the caller can answer "overloaded" instead of growing memory without bound.
 */
#ifndef DAEBUS_WORKER_POOL_H
#define DAEBUS_WORKER_POOL_H

#include <stddef.h>

typedef struct daebus__pool daebus__pool;
typedef void daebus__job_fn(void *arg);

/* Creates threads (>= 1) workers with a queue of at most max_queue pending jobs
 * (0 = unbounded). name is copied and used for thread names and log lines.
 * Returns: NULL on failure. */
daebus__pool *daebus__pool_create(const char *name, int threads, size_t max_queue);

/* Queues fn(arg). If the call fails, fn is never called; if it succeeds, fn is
 * called exactly once (shutdown included: drop is called instead of fn for jobs
 * still queued when the pool is destroyed without draining, if drop is set).
 * Returns: 0, DAEBUS_EFULL (queue full), DAEBUS_ECLOSED (shutting down),
 * DAEBUS_ENOMEM. Thread: any. */
int daebus__pool_submit(daebus__pool *pool, daebus__job_fn *fn, daebus__job_fn *drop, void *arg);
/* As daebus__pool_submit, for the rest of the work of a job already taken
 * (a batch handed out by its first job): accepted while the pool drains for
 * a shutdown too (DAEBUS_ECLOSED only once the drain is over), so that it
 * runs on the free workers, not one after the other on the submitter's. */
int daebus__pool_submit_more(daebus__pool *pool, daebus__job_fn *fn, daebus__job_fn *drop,
                             void *arg);

/* Takes the slot of an idle worker for a job the calling thread runs itself
 * (leader/followers: the thread that read a request runs it): counted in
 * daebus__pool_active until daebus__pool_unclaim, and no worker starts a job
 * in its place meanwhile. Returns: 0, DAEBUS_EFULL (no worker idle: every
 * one runs a job or has one queued for it), DAEBUS_ECLOSED. Thread: any. */
int daebus__pool_claim(daebus__pool *pool);
/* Gives back a slot taken by daebus__pool_claim (the job finished). */
void daebus__pool_unclaim(daebus__pool *pool);

/* Jobs queued but not yet started, and jobs running now. Thread: any. */
size_t daebus__pool_pending(daebus__pool *pool);
size_t daebus__pool_active(daebus__pool *pool);

/* Refuses new jobs, lets queued and running jobs run for up to drain_seconds
 * (running ones may queue more: daebus__pool_submit_more), then drops what is
 * still queued (calling drop), waits for running jobs to finish and joins
 * the workers. Returns: number of jobs that were dropped.
 * Thread: not from a worker of this pool. */
size_t daebus__pool_shutdown(daebus__pool *pool, double drain_seconds);

/* Shuts down (drain 0) if needed and frees. Accepts NULL. */
void daebus__pool_destroy(daebus__pool *pool);

#endif
