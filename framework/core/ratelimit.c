/* ratelimit.c - at most one log line per interval, lock-free. */
#include "ratelimit.h"

long daebus__ratelimit_pass(daebus__ratelimit *rl, double now, double interval)
{
    long long now_ms = (long long)(now * 1000.0);
    if (now_ms <= 0)
        now_ms = 1; /* 0 means "none yet" */
    uint64_t n = atomic_fetch_add(&rl->events, 1) + 1;
    long long last = atomic_load(&rl->last_ms);
    if (last && now_ms - last < (long long)(interval * 1000.0))
        return -1;
    /* One winner per interval; the others' events are counted for the next line. */
    if (!atomic_compare_exchange_strong(&rl->last_ms, &last, now_ms))
        return -1;
    atomic_fetch_sub(&rl->events, n);
    return (long)(n - 1);
}
