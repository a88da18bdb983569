/* check.c - the failure path of DAEBUS__ASSERT (check.h). */
#include "check.h"

#include <stdio.h>
#include <stdlib.h>

#ifdef DAEBUS__ASSERTS_ON
_Noreturn void daebus__assert_fail(const char *cond, const char *file, int line, const char *func)
{
    fprintf(stderr, "daebus: assertion failed: %s (%s:%d, %s)\n", cond, file, line, func);
    fflush(stderr);
    abort();
}
#endif

int daebus__mutex_init(pthread_mutex_t *m)
{
#ifdef DAEBUS__ASSERTS_ON
    pthread_mutexattr_t a;
    int rc = pthread_mutexattr_init(&a);
    if (rc)
        return rc;
    rc = pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
    if (rc == 0)
        rc = pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
    return rc;
#else
    return pthread_mutex_init(m, NULL);
#endif
}
