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
#else
/* Keeps the translation unit non-empty (ISO C) when asserts are off. */
typedef int daebus__check_unused;
#endif
