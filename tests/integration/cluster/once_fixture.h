/* once_fixture.h - what the exactly-once tests (test_once*.c) share.
 *
 * A private redis-server, replicas of once_service (real processes, their
 * run logs in one temp directory), the count of handler runs per request
 * across replicas, and three foreign callers run at once: a redis-py client
 * (once_client.py), daebus-call in a shell loop, and the C caller with a
 * window of requests in flight on a thread of its own.
 */
#ifndef ONCE_FIXTURE_H
#define ONCE_FIXTURE_H

#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>
#include "daebus/daebus.h"
#include "testsupport.h"

#define ONCE_SERVICE   "once_test"
#define ONCE_MAX_PROCS 8

typedef struct once_proc {
    pid_t pid;
    int port;
} once_proc;

extern ts_redis once_redis;
extern once_proc once_procs[ONCE_MAX_PROCS];

/* Starts Redis and makes the log directory. Returns: 0 or -1. */
int once_setup(const char *name);
/* Kills what is left, stops Redis; keeps the logs when a test failed. */
void once_teardown(void);

/* Starts a replica into once_procs[i] with this heartbeat (seconds). */
void once_start(int i, const char *heartbeat);
/* Signals the replica and reaps it (SIGKILL after 10 s). */
void once_reap(int i, int sig);
/* Does replica i take requests (daebus_bus_connected 1 in /metrics)? */
int once_ready(int i);
/* Waits until every started replica takes requests. Returns: 1 or 0. */
int once_all_ready(double seconds);
/* A sample of /metrics of replica i (the first line starting with name and
 * a space); -1 when absent. */
double once_metric(int i, const char *name);

/* The index of the one started replica whose daebus_bus_primary gauge is 1
 * (the service channel's primary, docs/replicas.md), skipping replica skip
 * (-1: none; a frozen replica would not answer /metrics); -1 when none or
 * several are. */
int once_primary(int skip);
/* Waits up to seconds until exactly one replica is the primary. Returns: its
 * index, or -1. */
int once_primary_wait(double seconds, int skip);

/* Handler runs recorded by every replica so far (once_service.c's logs). */
typedef struct once_runs once_runs;
once_runs *once_runs_load(void);
/* Lines "<kind> <id>". */
int once_runs_count(const once_runs *r, char kind, const char *id);
/* Lines of kind whose id starts with prefix. */
int once_runs_prefix(const once_runs *r, char kind, const char *prefix);
/* Ids of kind with prefix run more than once (printed, at most 5). */
int once_runs_twice(const once_runs *r, char kind, const char *prefix);
void once_runs_free(once_runs *r);
/* Lines of kind with prefix in the log of one replica (by pid). */
int once_pid_runs(pid_t pid, char kind, const char *prefix);

/* once_client.py in the background (mode req/ff/pub; target: the service or
 * a channel), its JSON line into a file ($ONCE_RATE paces its requests).
 * Returns: its pid. */
pid_t once_python(const char *mode, const char *target, int n, const char *prefix, int window,
                  double timeout);
/* Waits for it (up to seconds) and parses its line. Ownership: the caller
 * frees the result (NULL on failure). */
cJSON *once_python_wait(pid_t pid, double seconds);

/* n daebus-call requests in sequence (ids prefix-i) in a shell loop in the
 * background; once_shell_wait returns how many printed a reply. */
pid_t once_daebus_call(int n, const char *prefix);
int once_shell_wait(pid_t pid, const char *prefix, double seconds);

/* The C caller: n requests "work" (ids prefix-i), window in flight, on a
 * thread of its own. */
typedef struct once_load {
    daebus_caller *caller;
    int n, window;
    char prefix[32];
    double timeout, rate;
    atomic_int ok, failed, done, inflight;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t thread;
} once_load;
int once_load_start(once_load *l, int n, const char *prefix, int window, double timeout);
/* The same, at most rate requests per second (a steady load of known
 * length: n / rate seconds). */
int once_load_start_paced(once_load *l, int n, const char *prefix, int window, double timeout,
                          double rate);
void once_load_join(once_load *l);

#endif
