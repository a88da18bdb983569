/* perf_replica.h - what perf_service adds for the replica benchmarks
 * (bench_replicas_*): several processes of perf_service on one Redis and one
 * service name are replicas of one service.
 *
 *   WebSocket upgrade "/ws?id=<id>"   the client gets that id (the benches
 *                                     address clients by name)
 *   POST /burst {"n":100}             broadcast_to_all of n messages
 *                                     {"seq":i,"text":"hello everyone"}, in a loop
 *   POST /send {"to":id,"data":{}}    send_to_client(to, data + {"t": now}, "direct"):
 *                                     "t" is CLOCK_MONOTONIC just before the call,
 *                                     so the receiving client computes the latency
 *   POST /send_raw {"to":id,"via":channel,"data":{}}
 *                                     the baseline of /send: a raw hiredis PUBLISH of
 *                                     {"to":id,"data":data + {"t": now}} on channel;
 *                                     the replica whose PERF_RELAY is that channel
 *                                     receives it (raw hiredis SUBSCRIBE) and makes
 *                                     the local send_to_client(to, data, "direct")
 *
 * env PERF_RELAY=<channel>: run that relay (a thread with its own Redis
 * connection). */
#ifndef DAEBUS_PERF_REPLICA_H
#define DAEBUS_PERF_REPLICA_H

#include "daebus/daebus.h"

/* Installs the id generator and starts the relay when PERF_RELAY is set.
 * Call after daebus_app_configure (needs the Redis URL). Returns 0 or -1. */
int perf_replica_setup(daebus_app *app, daebus_ws *ws);

#endif
