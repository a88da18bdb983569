/* daebus/bus.h - Redis action bus: actions, replies, listeners, broadcasts.
 *
 * (Filled in by the bus component's issue.)
 */
#ifndef DAEBUS_BUS_H
#define DAEBUS_BUS_H

#include "daebus/app.h"

#endif
