/* perf_flight.h - action requests from a daebus_caller for a round of
 * benchmark: one in flight (blocking calls, latencies) or a window of them
 * (asynchronous calls, each answer issues the next until the round ends).
 * Used by bench_replicas_actions and bench_durable. */
#ifndef PERF_FLIGHT_H
#define PERF_FLIGHT_H

#include "daebus/daebus.h"
#include "perf_common.h"

/* Answers per second with `window` requests in flight for `seconds`:
 * ACTION `action` of service, payload each time (still the caller's).
 * Errors and answers are added to *errors and *done (done may be NULL). */
double perf_flight_window(daebus_caller *c, const char *service, const char *action,
                          const cJSON *payload, int window, double seconds, long *errors,
                          long *done);

/* One request in flight for `seconds`: the round trip of each answered one
 * goes into lat; errors and requests are added to *errors and *done (done
 * may be NULL). */
void perf_flight_one(daebus_caller *c, const char *service, const char *action,
                     const cJSON *payload, double seconds, perf_samples *lat, long *errors,
                     long *done);

#endif
