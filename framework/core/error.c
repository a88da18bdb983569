/* error.c - daebus_strerror and daebus_error_set. */
#include <stdarg.h>
#include <stdio.h>
#include "daebus/error.h"
#include "utf8.h"

const char *daebus_strerror(int code)
{
    switch (code) {
#define DAEBUS__ERR_CASE(name, value, msg)                                                         \
    case value:                                                                                    \
        return msg;
        DAEBUS_ERRNO_MAP(DAEBUS__ERR_CASE)
#undef DAEBUS__ERR_CASE
    default:
        return "unknown error";
    }
}

const char *daebus_errname(int code)
{
    switch (code) {
#define DAEBUS__ERR_NAME(name, value, msg)                                                         \
    case value:                                                                                    \
        return "DAEBUS_" #name;
        DAEBUS_ERRNO_MAP(DAEBUS__ERR_NAME)
#undef DAEBUS__ERR_NAME
    default:
        return "not a DAEBUS_E* code";
    }
}

int daebus_error_set(daebus_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->code = code;
        va_start(ap, fmt);
        daebus__utf8_vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return code;
}
