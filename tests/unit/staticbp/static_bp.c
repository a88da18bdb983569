/* A blueprint compiled into a STATIC library: only the blueprint object is
 * referenced by the test, which must still see all three handlers. */
#include "daebus/daebus.h"

DAEBUS_BLUEPRINT(static_lib_bp, "static_lib");

ACTION(sl_action, "sl_action", .bp = &static_lib_bp)
{
    return 0;
}

ROUTE(sl_route, "/sl", .bp = &static_lib_bp)
{
    return 0;
}

BACKGROUND(sl_task, "sl_task", 1.0, .bp = &static_lib_bp)
{
    return 0;
}
