/* perf_wsload.h - WebSocket load generator processes for the benchmarks.
 *
 * perf_ws_spawn() forks client processes before the server under test
 * starts (so that the server's process holds only its own sockets and the
 * children never inherit its threads). Each child then serves commands from
 * the parent: connect n clients to a port (with the blocking client of
 * tests/integration/websocket/wsc.c), then `rounds` times: wait for "go",
 * run one epoll loop over its connections, report:
 *   ECHO: every client sends msg, waits for one text frame back, sends again,
 *         for `seconds`; round trips and their latencies are counted;
 *   SINK: every client only reads, until it got `expect` text frames or
 *         `seconds` passed; `stalled` extra clients connect with a small
 *         receive buffer and never read.
 * The connections are closed after each command.
 */
#ifndef DAEBUS_PERF_WSLOAD_H
#define DAEBUS_PERF_WSLOAD_H

#include <sys/types.h>

enum { PERF_WS_ECHO = 1, PERF_WS_SINK = 2 };

typedef struct perf_ws_cmd {
    int port; /* 0 = exit */
    int nclients;
    int mode;
    int stalled;    /* SINK: clients that connect but never read */
    double seconds; /* ECHO: duration; SINK: give-up time */
    long expect;    /* SINK: text frames each reading client must get */
    int rounds;     /* runs on the same connections, each started by perf_ws_go (0 = 1) */
    char path[32];
    char msg[512]; /* ECHO: the text each client sends */
} perf_ws_cmd;

typedef struct perf_ws_result {
    int connected;
    long count;             /* ECHO: round trips; SINK: text frames received by reading clients */
    long errors;            /* connections lost, failed sends */
    double elapsed;         /* ECHO: measured time */
    double t_first, t_last; /* SINK: monotonic time of the first and last frame */
    int complete;           /* SINK: reading clients that got every frame */
    long nlat;              /* ECHO: latency samples that follow (doubles, seconds) */
} perf_ws_result;

typedef struct perf_ws_proc {
    pid_t pid;
    int to_child, from_child;
} perf_ws_proc;

/* Forks one client process. Returns 0 or -1. */
int perf_ws_spawn(perf_ws_proc *p);

/* Phase 1: sends cmd; returns once the child connected (result.connected). */
int perf_ws_connect(perf_ws_proc *p, const perf_ws_cmd *cmd, int *connected);
/* Phase 2: lets the child run. */
int perf_ws_go(perf_ws_proc *p);
/* Phase 3: waits for the result; latency samples (ECHO) are appended to
 * *lat (malloc'd/realloc'd, *nlat updated) when lat is not NULL. */
int perf_ws_result_wait(perf_ws_proc *p, perf_ws_result *out, double **lat, long *nlat);

/* Tells the child to exit and reaps it. */
void perf_ws_end(perf_ws_proc *p);

#endif
