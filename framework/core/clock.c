/* clock.c - monotonic clock, deadlines and timed condition waits. */
#include "clock.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <time.h>

double daebus__now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double daebus__now_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

daebus__deadline daebus__deadline_in(double seconds)
{
    daebus__deadline d = {.at = 0};
    if (!(seconds >= 0) || !isfinite(seconds))
        return d; /* negative, NaN or infinite: no deadline */
    d.at = daebus__now_mono() + seconds;
    /* A deadline computed within the first instant of the clock must not
     * read as "none". */
    if (d.at <= 0)
        d.at = 1e-9;
    return d;
}

double daebus__deadline_left(daebus__deadline d)
{
    if (d.at <= 0)
        return 1e18;
    double left = d.at - daebus__now_mono();
    return left > 0 ? left : 0;
}

bool daebus__deadline_passed(daebus__deadline d)
{
    return d.at > 0 && daebus__now_mono() >= d.at;
}

int daebus__deadline_poll_ms(daebus__deadline d)
{
    if (d.at <= 0)
        return -1;
    double ms = ceil(daebus__deadline_left(d) * 1000.0);
    return ms >= (double)INT_MAX ? INT_MAX : (int)ms;
}

int daebus__cond_init(pthread_cond_t *c)
{
    pthread_condattr_t a;
    int rc = pthread_condattr_init(&a);
    if (rc)
        return rc;
    rc = pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(c, &a);
    pthread_condattr_destroy(&a);
    return rc;
}

int daebus__cond_wait_until(pthread_cond_t *c, pthread_mutex_t *m, daebus__deadline d)
{
    if (d.at <= 0)
        return pthread_cond_wait(c, m);
    struct timespec ts;
    double whole = floor(d.at);
    ts.tv_sec = (time_t)whole;
    ts.tv_nsec = (long)((d.at - whole) * 1e9);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    int rc = pthread_cond_timedwait(c, m, &ts);
    return rc == ETIMEDOUT ? ETIMEDOUT : 0;
}

int daebus__cond_wait_for(pthread_cond_t *c, pthread_mutex_t *m, double seconds)
{
    return daebus__cond_wait_until(c, m, daebus__deadline_in(seconds));
}
