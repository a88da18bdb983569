/* perf_wsround.h - the burst benchmarks' client sets over replicas
 * (bench_replicas_broadcast.c, bench_channel_fanout.c).
 *
 * A set is nprocs perf_wsload.c client processes of SINK clients, process p
 * connected to ports[p] (a port may be named twice: one replica holding the
 * whole set). A round: the set starts reading, the bench POSTs one request to
 * one replica that sends the messages (/burst, /chburst of perf_service.c),
 * every reading client must get cmd->expect of them; deliveries are counted at
 * the clients and timed from the POST to the last client's last message.
 */
#ifndef DAEBUS_PERF_WSROUND_H
#define DAEBUS_PERF_WSROUND_H

#include <stddef.h>
#include "perf_wsload.h"
#include "testsupport.h"

#define PERF_WS_MAX_SET 8 /* client processes in one set */

/* A burst benchmark's start: the open-files limit raised, nprocs client
 * processes forked (before any service, see perf_wsload.h), perf_service's
 * path into path, a private redis-server. Returns 0 or -1. */
int perf_ws_bench_setup(perf_ws_proc *procs, int nprocs, char *path, size_t len, ts_redis *redis);

/* Connects n clients with cmd (its mode, seconds, expect, rounds and path;
 * port and nclients are set here): process p gets ports[p] and n / nprocs
 * clients (the remainder on the first ones). Then waits up to 15 s until the
 * replicas count them (GET /stats ws.clients, each port once): they register a
 * client just after the upgrade answer. Returns the number connected (-1: a
 * client process failed); one line on stderr, prefixed with bench, when fewer
 * than n connected or registered. */
int perf_ws_connect_set(perf_ws_proc *procs, int nprocs, const int *ports, int n, perf_ws_cmd *cmd,
                        const char *bench);

typedef struct perf_ws_round {
    double rate;    /* deliveries / to_last (0 when nothing arrived) */
    double to_last; /* from the POST to the last client's last message, s */
    double post;    /* the POST's own time, s */
    long delivered; /* messages received by reading clients */
    long complete;  /* reading clients that got every message */
    double proc_first[PERF_WS_MAX_SET], proc_last[PERF_WS_MAX_SET]; /* per process, from the POST */
} perf_ws_round;

/* One round of n clients: the set reads, POST path body to port. Errors (a
 * POST not answered 200, a client short of messages, lost connections) are
 * added to *errors with a line on stderr. Returns 0, -1 when a client process
 * did not report. */
int perf_ws_burst_round(perf_ws_proc *procs, int nprocs, int port, const char *path,
                        const char *body, int n, long expect, const char *bench, perf_ws_round *out,
                        long *errors);

#endif
