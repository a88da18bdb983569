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

/* The extended start: several replicas of one service, each with its own
 * port, the same --service and Redis. */
typedef struct perf_svc_opts {
    const char *path;      /* the service executable */
    const char *redis_url; /* --redis */
    const char *service;   /* --service; NULL: the binary's own name */
    int max_clients;       /* PERF_MAX_CLIENTS */
    bool raw;              /* PERF_RAW=1 */
    const char *relay; /* PERF_RELAY: the raw pub/sub relay channel (perf_replica.c); NULL: none */
} perf_svc_opts;

int perf_svc_start_opts(perf_svc *s, const perf_svc_opts *o);

/* n replicas of o's service: perf_svc_start_opts() each. Returns 0, or -1
 * with "<bench>: replica start failed" on stderr and the ones started
 * stopped. */
int perf_svc_start_replicas(perf_svc *reps, int n, const perf_svc_opts *o, const char *bench);

/* SIGTERMs the service; returns its exit status (0 = clean stop). */
int perf_svc_stop(perf_svc *s);

/* POSTs the JSON text body to 127.0.0.1:port path; *out (may be NULL) gets
 * the parsed answer (cJSON_Delete it). Returns the HTTP status or -1. */
struct cJSON;
int perf_svc_post(int port, const char *path, const char *body, struct cJSON **out);

/* POSTs n JSON bodies to path on one keep-alive connection, all written
 * before any answer is read (HTTP pipelining; the last request closes the
 * connection). Returns the number of 200 answers, or -1. */
int perf_svc_post_pipelined(int port, const char *path, char *const *bodies, int n);

/* A number of GET /stats of perf_service: section "ws"/"http"/"bus", or -1. */
double perf_svc_stat(int port, const char *section, const char *name);

/* Path of perf_service next to the running executable, into buf. */
int perf_svc_default_path(char *buf, size_t len);

#endif
