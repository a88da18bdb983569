/* sentinel_caller.c - one long-lived daebus_caller (the public API) calling a
 * durable_service through a Redis failover (test_sentinel_durable.py).
 *
 * Usage: sentinel_caller URL SERVICE [--wait-replicas N] [--rate HZ]
 *                        [--durable-timeout S] [--timeout S] [--sleep-ms MS] [--count N]
 *
 * Every 1/rate s it sends one durable request (action count {"sleep_ms": MS},
 * daebus_caller_request_durable_async) and, on another thread, one pub/sub
 * request (action echo, daebus_caller_request_async), on the same caller for
 * the whole run (never re-created). One line per event on stdout, times in CLOCK_MONOTONIC
 * seconds (Python's time.monotonic):
 *   R <durable|pubsub> <sent> <done> <status> <request_id> <message>   a completion
 *   S <durable|pubsub> <t> <rc>                                        a refused send
 * With --count N it sends N durable requests only, at once, then waits.
 * It stops sending when stdin closes, waits for every pending request to
 * complete (each does by its time-out), prints "END <sent> <completed>" and
 * exits 0 (1 if a completion is missing after the longest time-out + 5 s).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "daebus/caller.h"

typedef struct call {
    const char *kind;
    double sent;
    char id[40];
} call;

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_long sent, completed;
static atomic_int stop;
static const char *service;

static double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_done(daebus_caller *c, int status, const cJSON *payload, const char *message,
                    void *user)
{
    (void)c;
    (void)payload;
    call *k = user;
    pthread_mutex_lock(&out_lock);
    printf("R %s %.3f %.3f %d %s %s\n", k->kind, k->sent, now_mono(), status, k->id,
           message && *message ? message : "-");
    fflush(stdout);
    pthread_mutex_unlock(&out_lock);
    free(k);
    atomic_fetch_add(&completed, 1);
}

static void *watch_stdin(void *arg)
{
    (void)arg;
    char buf[64];
    while (read(0, buf, sizeof buf) > 0)
        ;
    atomic_store(&stop, 1);
    return NULL;
}

static void send_one(daebus_caller *c, bool durable, double timeout, const cJSON *payload)
{
    call *k = calloc(1, sizeof *k);
    if (!k)
        return;
    k->kind = durable ? "durable" : "pubsub";
    k->sent = now_mono();
    int rc = durable ? daebus_caller_request_durable_async(c, service, "count", payload, timeout,
                                                           on_done, NULL, k, k->id)
                     : daebus_caller_request_async(c, service, "echo", payload, timeout, on_done,
                                                   NULL, k, k->id);
    if (rc != 0) {
        pthread_mutex_lock(&out_lock);
        printf("S %s %.3f %d\n", k->kind, k->sent, rc);
        fflush(stdout);
        pthread_mutex_unlock(&out_lock);
        free(k);
        return;
    }
    atomic_fetch_add(&sent, 1);
}

/* One kind of request, sent every 1/rate s on its own thread (a durable
 * send with WAIT may block up to 2.5 s while no replica acknowledges). */
typedef struct sender {
    daebus_caller *c;
    bool durable;
    double timeout;
    const cJSON *payload;
    double rate;
} sender;

static void *send_loop(void *arg)
{
    sender *s = arg;
    struct timespec gap = {0, (long)(1e9 / s->rate)};
    while (!atomic_load(&stop)) {
        send_one(s->c, s->durable, s->timeout, s->payload);
        nanosleep(&gap, NULL);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: sentinel_caller URL SERVICE [--wait-replicas N] [--rate HZ] "
                        "[--durable-timeout S] [--timeout S] [--sleep-ms MS] [--count N]\n");
        return 2;
    }
    service = argv[2];
    daebus_caller_options o = DAEBUS_CALLER_OPTIONS_INIT;
    double rate = 20, dtimeout = 15, timeout = 3;
    int sleep_ms = 20, count = 0;
    for (int i = 3; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--wait-replicas") == 0)
            o.durable_wait_replicas = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--rate") == 0)
            rate = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--durable-timeout") == 0)
            dtimeout = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--timeout") == 0)
            timeout = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--sleep-ms") == 0)
            sleep_ms = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--count") == 0)
            count = atoi(argv[i + 1]);
    }
    daebus_error err = {0};
    daebus_caller *c = daebus_caller_create(argv[1], &o, &err);
    if (!c) {
        fprintf(stderr, "sentinel_caller: [%d %s] %s\n", err.code, daebus_strerror(err.code),
                err.message);
        return 2;
    }
    pthread_t t;
    pthread_create(&t, NULL, watch_stdin, NULL);
    pthread_detach(t);
    cJSON *payload = cJSON_CreateObject();
    cJSON_AddNumberToObject(payload, "sleep_ms", sleep_ms);
    for (int i = 0; i < count; i++)
        send_one(c, true, dtimeout, payload);
    sender senders[2] = {{c, true, dtimeout, payload, rate}, {c, false, timeout, payload, rate}};
    pthread_t th[2];
    for (int i = 0; i < 2 && count == 0; i++)
        pthread_create(&th[i], NULL, send_loop, &senders[i]);
    for (int i = 0; i < 2 && count == 0; i++)
        pthread_join(th[i], NULL);
    double until = now_mono() + (dtimeout > timeout ? dtimeout : timeout) + 5;
    while (atomic_load(&completed) < atomic_load(&sent) && now_mono() < until) {
        struct timespec ms = {0, 20000000L};
        nanosleep(&ms, NULL);
    }
    long s = atomic_load(&sent), d = atomic_load(&completed);
    pthread_mutex_lock(&out_lock);
    printf("END %ld %ld\n", s, d);
    fflush(stdout);
    pthread_mutex_unlock(&out_lock);
    int rc = d == s ? 0 : 1;
    if (rc == 0)
        daebus_caller_destroy(c);
    cJSON_Delete(payload);
    return rc;
}
