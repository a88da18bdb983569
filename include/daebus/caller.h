/* daebus/caller.h - bus caller: request/response to other services' actions.
 *
 * (Filled in by the caller component's issue.)
 */
#ifndef DAEBUS_CALLER_H
#define DAEBUS_CALLER_H

#include "daebus/app.h"

#endif
