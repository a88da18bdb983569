/* clock.h - clocks, deadlines and timed waits (core layer).
 *
 * Every timed wait of the framework goes through here so that it runs on the
 * monotonic clock: the wall clock jumps when NTP or an operator sets it, and a
 * wait computed on it can end at once or hang for hours. A condition variable
 * used with these waits must be initialised with daebus__cond_init().
 *
 * Thread: any thread.
 */
#ifndef DAEBUS_CORE_CLOCK_H
#define DAEBUS_CORE_CLOCK_H

#include <pthread.h>
#include <stdbool.h>

/* Seconds on CLOCK_MONOTONIC (deadlines, intervals, rates). */
double daebus__now_mono(void);
/* Seconds since the epoch on CLOCK_REALTIME: for timestamps shown to people
 * or sent on the wire, never for measuring time. */
double daebus__now_wall(void);

/* A point on the monotonic clock; forever when at is <= 0 (no deadline). */
typedef struct daebus__deadline {
    double at;
} daebus__deadline;

/* Returns: the deadline seconds from now; seconds < 0, NaN or infinite means
 * no deadline. */
daebus__deadline daebus__deadline_in(double seconds);
/* Returns: seconds left (0 once passed; a large number when there is none). */
double daebus__deadline_left(daebus__deadline d);
bool daebus__deadline_passed(daebus__deadline d);
/* Returns: the time left in whole milliseconds for poll(): 0 once passed, -1
 * when there is no deadline, at most INT_MAX. */
int daebus__deadline_poll_ms(daebus__deadline d);

/* Initialise c for monotonic timed waits. Returns: 0 or an errno value. */
int daebus__cond_init(pthread_cond_t *c);
/* Wait on c (m held) until signalled or the deadline passes; a deadline of
 * "none" waits without limit. Spurious wake-ups return 0 as pthread does: the
 * caller loops on its own predicate. Returns: 0, or ETIMEDOUT. */
int daebus__cond_wait_until(pthread_cond_t *c, pthread_mutex_t *m, daebus__deadline d);
/* The same for a relative time in seconds (< 0: no limit). */
int daebus__cond_wait_for(pthread_cond_t *c, pthread_mutex_t *m, double seconds);

#endif
