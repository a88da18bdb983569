/* perf_svc.h - runs perf_service (or any daebus service) as a child process
 * for the benchmarks: start, wait for its "ready" log line, stop with SIGTERM. */
#ifndef DAEBUS_PERF_SVC_H
#define DAEBUS_PERF_SVC_H

#include <pthread.h>
#include <stdbool.h>
#include <sys/types.h>

typedef struct perf_svc {
    pid_t pid;
    int port;
    int fd; /* its stderr */
    double t_fork, t_ready;
    pthread_t reader;
    pthread_mutex_t lock;
    pthread_cond_t cond;
} perf_svc;

/* Starts path --port <free> --redis redis_url --log-level info with
 * PERF_MAX_CLIENTS=max_clients (and PERF_RAW=1 when raw). Returns 0 once the
 * ready line was logged; t_ready - t_fork is the start-up time. The service's
 * log is drained (shown on stderr when PERF_SERVICE_LOG is set). */
int perf_svc_start(perf_svc *s, const char *path, const char *redis_url, int max_clients, bool raw);

/* SIGTERMs the service; returns its exit status (0 = clean stop). */
int perf_svc_stop(perf_svc *s);

/* Path of perf_service next to the running executable, into buf. */
int perf_svc_default_path(char *buf, size_t len);

#endif
