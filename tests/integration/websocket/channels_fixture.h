/* channels_fixture.h - channels_service processes for the channel tests
 * (test_channels.c, test_channel_presence.c, test_channels_recovery.c).
 *
 * A test names its python3-websockets client script once, then starts
 * replicas of channels_service (child processes on a private redis-server),
 * waits until they answer, drives its script and stops them:
 *
 *   chan_fixture_init("test_channels", "channels_clients.py");
 *   chan_proc a = chan_start(&redis, true, 1);
 *   TS_WAIT_UNTIL(chan_answers(&a) == 0, 30);
 *   CU_ASSERT_EQUAL(chan_py("cluster %d", a.port), 0);
 *   CU_ASSERT_EQUAL(chan_stop(&a), 0);
 *
 * The replicas inherit the test's environment: CHAN_HISTORY and the other
 * variables channels_service.c reads are set by the test before chan_start().
 * Linked as daebus_test_channels. */
#ifndef DAEBUS_CHANNELS_FIXTURE_H
#define DAEBUS_CHANNELS_FIXTURE_H

#include <stdbool.h>
#include <sys/types.h>
#include "testsupport.h"

typedef struct chan_proc {
    pid_t pid;     /* -1: not running (stopped or reaped) */
    int port;      /* its HTTP / WebSocket port */
    bool bus;      /* started with a bus (cluster mode) */
    char log[128]; /* its stdout and stderr */
} chan_proc;

/* Remembers the test's name (for the replicas' log files
 * /tmp/<test>.<pid>.<i>.log) and finds channels_service in
 * $DAEBUS_BINARY_DIR/tests and script in
 * $DAEBUS_SOURCE_DIR/tests/integration/websocket. */
void chan_fixture_init(const char *test, const char *script);

/* Forks channels_service --port <free port> --redis <redis->url>, its output
 * in /tmp/<test>.<pid>.<i>.log; without bus, CHAN_NO_BUS=1. Does not wait:
 * see chan_answers(). */
chan_proc chan_start(const ts_redis *redis, bool bus, int i);

/* Starts two replicas with a bus, a (log index i) and b (i + 1), and waits
 * up to 30 s until both answer 0 (chan_answers(): in cluster mode). The
 * caller checks chan_answers() after it. */
void chan_start_two(const ts_redis *redis, int i, chan_proc *a, chan_proc *b);

/* The rc of POST /op {"op":"subscribers","channel":"x"} to p (-1000: no
 * answer; -1001: a replica with a bus whose cluster mode has not started
 * yet, which would answer from its local table). */
int chan_answers(const chan_proc *p);

/* SIGTERM, then SIGKILL after 10 s; returns the exit status (-1: killed,
 * hung or not running; -2: exited 0 but its log holds a sanitizer report,
 * copied to stderr). p->pid is -1 afterwards. */
int chan_stop(chan_proc *p);

/* Runs /usr/bin/python3 <script> <printf(fmt, ...)> (through /bin/sh -c);
 * returns its exit status (-1: could not run it, or killed by a signal). */
int chan_py(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The same in the background: returns the child's pid (-1: fork failed);
 * chan_py_wait() returns its exit status (-1: killed or not run). chan_py()
 * is the two in one. */
pid_t chan_py_spawn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int chan_py_wait(pid_t pid);

/* The number of keys daebus:chan_test:ws:<pattern> in redis (-1: redis-cli
 * failed). */
int chan_keys(const ts_redis *redis, const char *pattern);

/* dir/name exists; creates the empty file dir/name; removes dir/name. The
 * flag files a background script and the test exchange through CHAN_DIR. */
bool chan_file_in(const char *dir, const char *name);
void chan_touch(const char *dir, const char *name);
void chan_unlink(const char *dir, const char *name);

#endif
