/* check.h - DAEBUS__ASSERT: invariants checked in Debug and sanitizer builds (core layer).
 *
 * DAEBUS__ASSERT(cond) aborts with the file, line and condition when cond is
 * false. It is active when NDEBUG is unset (CMAKE_BUILD_TYPE=Debug, which
 * scripts/sanitize.sh uses) and in every sanitizer build (GCC and Clang say so
 * with __SANITIZE_ADDRESS__ / __SANITIZE_THREAD__ or __has_feature), so the
 * sanitizer runs check refcounts, lock order and queue bounds even when built
 * as RelWithDebInfo. daebus__mutex_lock/unlock check the lock discipline the
 * same way (below). Elsewhere it compiles to nothing and cond is not
 * evaluated: never put a side effect in it.
 *
 * Thread: any thread.
 */
#ifndef DAEBUS_CORE_CHECK_H
#define DAEBUS_CORE_CHECK_H

#if !defined(NDEBUG) || defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define DAEBUS__ASSERTS_ON 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define DAEBUS__ASSERTS_ON 1
#endif
#endif

#ifdef DAEBUS__ASSERTS_ON
/* Prints "daebus: assertion failed: cond (file:line, func)" and aborts. */
_Noreturn void daebus__assert_fail(const char *cond, const char *file, int line, const char *func);
#define DAEBUS__ASSERT(cond)                                                                       \
    ((cond) ? (void)0 : daebus__assert_fail(#cond, __FILE__, __LINE__, __func__))
#else
#define DAEBUS__ASSERT(cond) ((void)0)
#endif

#include <pthread.h>

/* Mutexes whose use is checked where asserts are on: daebus__mutex_init
 * makes an error-checking mutex there (a normal one elsewhere), so locking a
 * mutex the thread already holds (a handler called back under its owner's
 * lock) or unlocking one it does not hold fails the assert instead of
 * deadlocking or corrupting state. Returns: 0 or an errno value. */
int daebus__mutex_init(pthread_mutex_t *m);

static inline void daebus__mutex_lock(pthread_mutex_t *m)
{
    int rc = pthread_mutex_lock(m);
    DAEBUS__ASSERT(rc == 0);
    (void)rc;
}

static inline void daebus__mutex_unlock(pthread_mutex_t *m)
{
    int rc = pthread_mutex_unlock(m);
    DAEBUS__ASSERT(rc == 0);
    (void)rc;
}

#endif
