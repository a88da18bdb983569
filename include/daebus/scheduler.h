/* daebus/scheduler.h - background scheduler: periodic tasks, threads, one-shot timers.
 *
 * (Filled in by the scheduler component's issue.)
 */
#ifndef DAEBUS_SCHEDULER_H
#define DAEBUS_SCHEDULER_H

#include "daebus/app.h"

#endif
