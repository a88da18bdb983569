/* test_lease.c - leader leases of .single tasks and threads (docs/replicas.md).
 *
 * In-process: without a bus a .single task runs as an ordinary one; with a
 * bus it takes the lease (counted), runs, stops running with Redis gone and
 * resumes when it returns, and releases the lease at stop.
 *
 * Real replicas (lease_service, task every 0.3 s, lease TTL 2 s) on a
 * private redis-server, each writing its runs and its thread's life to a file
 * of its own (wall-clock us):
 *   - three replicas: the task runs on one of them, at its interval;
 *   - the holder stopped gracefully: another takes over within about one
 *     interval + one renew period;
 *   - the holder killed -9: another takes over after the TTL;
 *   - a network cut between the holder and Redis (a TCP proxy of this test
 *     that stops forwarding but keeps its sockets open): the cut replica stops
 *     before another starts, and stays quiet when the cut heals;
 *   - a Redis restart: the lease is taken again and runs resume;
 *   - over all of it: no two runs of the task overlap or come less than 0.6
 *     interval apart, and no two terms of the thread overlap. Each event is
 *     stamped, then the lease asked (lease_service.c): a process stalled past
 *     its lease's end between the framework's check and the stamp (a loaded
 *     host) is counted apart, as docs/replicas.md says it cannot be helped;
 *     at most two such run starts/ends are allowed, a steady stream fails.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <hiredis/hiredis.h>
#include "daebus/daebus.h"
#include "testsupport.h"

#define INTERVAL  0.3
#define TTL       2.0
#define MAX_PROCS 12

/* ---- a TCP proxy that can be cut ---- */

#define MAX_PAIRS 32
typedef struct proxy {
    int lfd, port, target;
    atomic_int cut, stop;
    pthread_t tid;
    int a[MAX_PAIRS], b[MAX_PAIRS], n;
} proxy;

static int write_all(int fd, const char *p, ssize_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, (size_t)n);
        if (w <= 0)
            return -1;
        p += w;
        n -= w;
    }
    return 0;
}

static void proxy_accept(proxy *px)
{
    int c = accept(px->lfd, NULL, NULL);
    if (c < 0)
        return;
    int u = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)px->target)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (u < 0 || px->n == MAX_PAIRS || connect(u, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(c);
        if (u >= 0)
            close(u);
        return;
    }
    px->a[px->n] = c;
    px->b[px->n] = u;
    px->n++;
}

static void proxy_drop(proxy *px, int i)
{
    close(px->a[i]);
    close(px->b[i]);
    px->n--;
    px->a[i] = px->a[px->n];
    px->b[i] = px->b[px->n];
}

/* Forwards until stopped; while cut, reads and accepts nothing (the peers see
 * silence, as in a partition, not a reset). */
static void *proxy_main(void *arg)
{
    proxy *px = arg;
    char buf[16384];
    while (!atomic_load(&px->stop)) {
        if (atomic_load(&px->cut)) {
            ts_sleep_ms(10);
            continue;
        }
        struct pollfd p[1 + 2 * MAX_PAIRS];
        int n = 0;
        p[n++] = (struct pollfd){.fd = px->lfd, .events = POLLIN};
        for (int i = 0; i < px->n; i++) {
            p[n++] = (struct pollfd){.fd = px->a[i], .events = POLLIN};
            p[n++] = (struct pollfd){.fd = px->b[i], .events = POLLIN};
        }
        if (poll(p, (nfds_t)n, 20) <= 0 || atomic_load(&px->cut))
            continue;
        for (int i = px->n - 1; i >= 0; i--) {
            for (int side = 0; side < 2; side++) {
                if (!(p[1 + 2 * i + side].revents & (POLLIN | POLLHUP | POLLERR)))
                    continue;
                int from = side ? px->b[i] : px->a[i], to = side ? px->a[i] : px->b[i];
                ssize_t r = read(from, buf, sizeof buf);
                if (r <= 0 || write_all(to, buf, r) != 0) {
                    proxy_drop(px, i);
                    break;
                }
            }
        }
        if (p[0].revents & POLLIN)
            proxy_accept(px);
    }
    while (px->n > 0)
        proxy_drop(px, 0);
    return NULL;
}

static int proxy_start(proxy *px, int target)
{
    memset(px, 0, sizeof *px);
    px->target = target;
    px->lfd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(px->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    if (bind(px->lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(px->lfd, 64) != 0 ||
        getsockname(px->lfd, (struct sockaddr *)&sa, &len) != 0)
        return -1;
    px->port = ntohs(sa.sin_port);
    return pthread_create(&px->tid, NULL, proxy_main, px) == 0 ? 0 : -1;
}

static void proxy_stop(proxy *px)
{
    atomic_store(&px->stop, 1);
    pthread_join(px->tid, NULL);
    close(px->lfd);
}

/* ---- replicas ---- */

typedef struct replica {
    pid_t pid;
    char file[128];
} replica;

static ts_redis redis;
static proxy px;
static char binary[1024], logpath[256];
static replica reps[MAX_PROCS];
static int nreps;

static int start_replica(const char *redis_url)
{
    replica *r = &reps[nreps];
    snprintf(r->file, sizeof r->file, "/tmp/daebus_lease_%d_%d.txt", (int)getpid(), nreps);
    unlink(r->file);
    r->pid = fork();
    if (r->pid == 0) {
        int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        setenv("LEASE_FILE", r->file, 1);
        setenv("LEASE_TTL", "2", 1);
        execl(binary, binary, "--redis", redis_url, (char *)NULL);
        _exit(127);
    }
    return nreps++;
}

static void stop_replica(int i, int sig)
{
    replica *r = &reps[i];
    if (r->pid <= 0)
        return;
    kill(r->pid, sig);
    double end = ts_now() + 10;
    int st;
    while (waitpid(r->pid, &st, WNOHANG) == 0 && ts_now() < end)
        ts_sleep_ms(10);
    if (ts_now() >= end) {
        kill(r->pid, SIGKILL);
        waitpid(r->pid, &st, 0);
    }
    if (sig == SIGTERM) /* a graceful stop exits 0 (no leak, no crash under sanitizers) */
        CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    r->pid = -1;
}

/* ---- what the replicas wrote ---- */

typedef struct event {
    char kind;
    double t; /* wall seconds */
    int rep;
} event;

#define MAX_EVENTS 200000
static event evs[MAX_EVENTS];
static int nevs;

static int by_time(const void *a, const void *b)
{
    double x = ((const event *)a)->t, y = ((const event *)b)->t;
    return x < y ? -1 : x > y;
}

/* Reads every replica's file into evs, sorted by time. */
static void load_events(void)
{
    nevs = 0;
    for (int i = 0; i < nreps; i++) {
        FILE *f = fopen(reps[i].file, "r");
        if (!f)
            continue;
        char kind;
        long long us;
        while (nevs < MAX_EVENTS && fscanf(f, " %c %lld", &kind, &us) == 2)
            evs[nevs++] = (event){kind, (double)us / 1e6, i};
        fclose(f);
    }
    qsort(evs, (size_t)nevs, sizeof *evs, by_time);
}

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The number of events of kind after wall time since, by replica rep (-1:
 * any), and the time of the first (first may be NULL). */
static int count_after(char kind, double since, int rep, double *first)
{
    load_events();
    int n = 0;
    for (int i = 0; i < nevs; i++) {
        if (evs[i].kind != kind || evs[i].t <= since || (rep >= 0 && evs[i].rep != rep))
            continue;
        if (n++ == 0 && first)
            *first = evs[i].t;
    }
    return n;
}

/* The replica that wrote kind last (-1: none) and when: 'S' the task's
 * holder, 'T' the thread's (two leases: not always the same replica). */
static int last_actor(char kind, double *at)
{
    load_events();
    for (int i = nevs - 1; i >= 0; i--)
        if (evs[i].kind == kind) {
            if (at)
                *at = evs[i].t;
            return evs[i].rep;
        }
    return -1;
}

/* The last event of kind by rep (0: none). */
static double last_of(char kind, int rep)
{
    load_events();
    for (int i = nevs - 1; i >= 0; i--)
        if (evs[i].kind == kind && evs[i].rep == rep)
            return evs[i].t;
    return 0;
}

/* Terms [start, end] of runs ('S'..'E') or thread lives ('A', extended by
 * each tick 'T', closed by 'Z'). Only events stamped inside the lease's
 * validity extend a term: 'O' (a run's end past its lease) and 'Z' (the
 * thread returned: no work) close it without extending it. */
typedef struct term {
    double start, end;
    int rep;
} term;

static int collect_terms(char open, term *out, int max)
{
    load_events();
    int n = 0;
    int cur[MAX_PROCS];
    for (int r = 0; r < MAX_PROCS; r++)
        cur[r] = -1;
    for (int i = 0; i < nevs; i++) {
        event *e = &evs[i];
        if (e->kind == open && n < max) {
            cur[e->rep] = n;
            out[n++] = (term){e->t, e->t, e->rep};
        } else if (cur[e->rep] >= 0) {
            bool extend = (open == 'S' && e->kind == 'E') || (open == 'A' && e->kind == 'T');
            bool closes = (open == 'S' && (e->kind == 'E' || e->kind == 'O')) ||
                          (open == 'A' && e->kind == 'Z');
            if (extend)
                out[cur[e->rep]].end = e->t;
            if (closes)
                cur[e->rep] = -1;
        }
    }
    return n;
}

/* Checks the invariants over everything written so far. */
static void check_invariants(const char *when)
{
    static term terms[20000];
    int n = collect_terms('S', terms, 20000), bad_overlap = 0, bad_gap = 0;
    double min_gap = 1e9;
    for (int i = 1; i < n; i++) {
        double gap = terms[i].start - terms[i - 1].start;
        if (gap < min_gap)
            min_gap = gap;
        if (terms[i].start < terms[i - 1].end) {
            bad_overlap++;
            printf("\n  runs overlap: replica %d %.3f-%.3f, replica %d from %.3f", terms[i - 1].rep,
                   terms[i - 1].start, terms[i - 1].end, terms[i].rep, terms[i].start);
        }
        if (gap < 0.6 * INTERVAL) {
            bad_gap++;
            printf("\n  runs %.0f ms apart: replica %d then %d at %.3f", gap * 1000,
                   terms[i - 1].rep, terms[i].rep, terms[i].start);
        }
    }
    int runs = n;
    n = collect_terms('A', terms, 20000);
    int bad_thread = 0;
    for (int i = 1; i < n; i++)
        if (terms[i].start <= terms[i - 1].end && terms[i].rep != terms[i - 1].rep) {
            bad_thread++;
            printf("\n  thread terms overlap: replica %d %.3f-%.3f, replica %d from %.3f",
                   terms[i - 1].rep, terms[i - 1].start, terms[i - 1].end, terms[i].rep,
                   terms[i].start);
        }
    /* stalls past the lease's end between the framework's check and the
     * handler's stamp (lease_service.c): the documented limit, not counted
     * against the guarantee; a few on a loaded host, never a steady stream */
    int late_runs = count_after('L', 0, -1, NULL) + count_after('O', 0, -1, NULL);
    int late_ticks = count_after('K', 0, -1, NULL);
    printf("\n  %s: %d runs (closest two %.0f ms apart), %d thread terms; stalled past the "
           "lease: %d run starts/ends, %d thread ticks",
           when, runs, min_gap * 1000, n, late_runs, late_ticks);
    CU_ASSERT_EQUAL(bad_overlap, 0);
    CU_ASSERT_EQUAL(bad_gap, 0);
    CU_ASSERT_EQUAL(bad_thread, 0);
    CU_ASSERT(late_runs <= 2);
}

/* Waits until the task runs (a start after since) on a replica other than
 * not_rep; returns that replica or -1. */
static int wait_takeover(double since, int not_rep, double seconds, double *at)
{
    double end = ts_now() + seconds;
    while (ts_now() < end) {
        load_events();
        for (int i = 0; i < nevs; i++)
            if (evs[i].kind == 'S' && evs[i].t > since && evs[i].rep != not_rep) {
                if (at)
                    *at = evs[i].t;
                return evs[i].rep;
            }
        ts_sleep_ms(20);
    }
    return -1;
}

static int init(void)
{
    const char *bin = getenv("DAEBUS_BINARY_DIR");
    snprintf(binary, sizeof binary, "%s/tests/lease_service", bin ? bin : ".");
    snprintf(logpath, sizeof logpath, "/tmp/daebus_test_lease_%d.log", (int)getpid());
    if (ts_redis_start(&redis, NULL) != 0)
        return -1;
    return proxy_start(&px, redis.port);
}

static int cleanup(void)
{
    for (int i = 0; i < nreps; i++)
        stop_replica(i, SIGKILL);
    proxy_stop(&px);
    ts_redis_stop(&redis);
    bool keep = CU_get_number_of_tests_failed() != 0;
    for (int i = 0; i < nreps; i++)
        if (!keep)
            unlink(reps[i].file);
    if (!keep)
        unlink(logpath);
    else
        printf("\n  service log kept: %s (run files /tmp/daebus_lease_%d_*.txt)\n", logpath,
               (int)getpid());
    return 0;
}

/* ---- in-process: the option without and with a bus ---- */

DAEBUS_BLUEPRINT(local_bp, "local");
static atomic_int local_runs, local_not_leader;

BACKGROUND(local_tick, "local_tick", 0.05, .single = true, .bp = &local_bp)
{
    (void)user;
    if (!daebus_task_is_leader(task))
        atomic_fetch_add(&local_not_leader, 1);
    atomic_fetch_add(&local_runs, 1);
    return 0;
}

static void test_without_bus_runs_locally(void)
{
    ts_service svc;
    ts_service_options o = {.service = "lease_local", .sched = true, .blueprints = {&local_bp}};
    CU_ASSERT_FATAL(ts_service_start(&svc, &o) == 0);
    atomic_store(&local_runs, 0);
    TS_WAIT_UNTIL(atomic_load(&local_runs) >= 3, 5);
    CU_ASSERT(atomic_load(&local_runs) >= 3);
    CU_ASSERT_EQUAL(atomic_load(&local_not_leader), 0);
    daebus_task_stats st;
    CU_ASSERT_EQUAL(daebus_task_get_stats(daebus_scheduler_find(svc.sched, "local_tick"), &st), 0);
    CU_ASSERT(st.single && st.leader);
    ts_service_stop(&svc);
}

DAEBUS_BLUEPRINT(bad_bp, "bad");

THREAD(bad_thread, "bad_thread", .single = true, .no_auto_start = true, .bp = &bad_bp)
{
    (void)thread;
    (void)user;
}

static void test_single_no_auto_start_refused(void)
{
    ts_service svc;
    ts_service_options o = {.service = "lease_bad", .sched = true, .blueprints = {&bad_bp}};
    CU_ASSERT_NOT_EQUAL(ts_service_start(&svc, &o), 0); /* start refused, logged */
}

static long long redis_exists(const char *key)
{
    redisContext *c = redisConnect("127.0.0.1", redis.port);
    if (!c || c->err) {
        if (c)
            redisFree(c);
        return -1;
    }
    redisReply *r = redisCommand(c, "EXISTS %s", key);
    long long v = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return v;
}

/* GET key into buf ("" when missing). */
static void redis_get(const char *key, char *buf, size_t len)
{
    buf[0] = '\0';
    redisContext *c = redisConnect("127.0.0.1", redis.port);
    redisReply *r = c && !c->err ? redisCommand(c, "GET %s", key) : NULL;
    if (r && r->type == REDIS_REPLY_STRING)
        snprintf(buf, len, "%s", r->str);
    if (r)
        freeReplyObject(r);
    if (c)
        redisFree(c);
}

static void test_with_bus_takes_and_releases(void)
{
    daebus_scheduler_options so = DAEBUS_SCHEDULER_OPTIONS_INIT;
    so.lease_ttl = 1.0;
    ts_service svc;
    ts_service_options o = {.service = "lease_local",
                            .redis_url = redis.url,
                            .bus = true,
                            .wait_bus = 5,
                            .sched = true,
                            .sched_options = &so,
                            .blueprints = {&local_bp}};
    CU_ASSERT_FATAL(ts_service_start(&svc, &o) == 0);
    atomic_store(&local_runs, 0);
    /* a lease never taken before waits one TTL (docs/replicas.md) */
    TS_WAIT_UNTIL(atomic_load(&local_runs) >= 3, 5);
    CU_ASSERT(atomic_load(&local_runs) >= 3);
    CU_ASSERT_EQUAL(atomic_load(&local_not_leader), 0);
    daebus_scheduler_stats st;
    CU_ASSERT_EQUAL(daebus_scheduler_get_stats(svc.sched, &st), 0);
    CU_ASSERT_EQUAL(st.leases_held, 1);
    CU_ASSERT(st.lease_acquired >= 1); /* a renewal late on a loaded machine makes 2 */
    CU_ASSERT_EQUAL(st.lease_acquired, st.lease_lost + 1);
    CU_ASSERT(daebus_task_is_leader(daebus_scheduler_find(svc.sched, "local_tick")));
    CU_ASSERT_EQUAL(redis_exists("daebus:lease_local:lease:task:local_tick"), 1);

    /* Redis gone: the lease ends within its TTL, runs stop (counted); Redis
     * back: the lease is taken again (after one TTL: Redis lost its data). */
    daebus_task *task = daebus_scheduler_find(svc.sched, "local_tick");
    ts_redis_kill(&redis);
    double t0 = ts_now();
    TS_WAIT_UNTIL(!daebus_task_is_leader(task), 2);
    CU_ASSERT(!daebus_task_is_leader(task));
    CU_ASSERT(ts_now() - t0 <= 1.3); /* 0.8 TTL after the last renewal, + polling */
    ts_sleep_ms(100);
    int before = atomic_load(&local_runs);
    ts_sleep_ms(500);
    CU_ASSERT_EQUAL(atomic_load(&local_runs), before);
    CU_ASSERT_EQUAL(daebus_scheduler_get_stats(svc.sched, &st), 0);
    CU_ASSERT_EQUAL(st.leases_held, 0);
    CU_ASSERT_EQUAL(st.lease_lost, st.lease_acquired);
    CU_ASSERT(st.lease_errors >= 1);
    CU_ASSERT_FATAL(ts_redis_restart(&redis) == 0);
    t0 = ts_now();
    TS_WAIT_UNTIL(daebus_task_is_leader(task) && atomic_load(&local_runs) > before + 2, 12);
    CU_ASSERT(atomic_load(&local_runs) > before + 2);
    printf("\n  in-process: lease lost with Redis gone, taken again %.0f ms after Redis returned",
           (ts_now() - t0) * 1000);
    uint64_t lost = st.lease_lost;
    CU_ASSERT_EQUAL(daebus_scheduler_get_stats(svc.sched, &st), 0);
    CU_ASSERT(st.lease_acquired > lost); /* taken again (a stalled host may lapse once more) */
    ts_service_stop(&svc);
    CU_ASSERT_EQUAL(redis_exists("daebus:lease_local:lease:task:local_tick"), 0);
    CU_ASSERT_EQUAL(redis_exists("daebus:lease_local:lease:task:local_tick:last"), 1);
}

static atomic_int rt_runs;

static int rt_tick(daebus_task *task, void *user)
{
    (void)user;
    if (daebus_task_is_leader(task))
        atomic_fetch_add(&rt_runs, 1);
    return 0;
}

static void test_run_time_task(void)
{
    daebus_scheduler_options so = DAEBUS_SCHEDULER_OPTIONS_INIT;
    so.lease_ttl = 1.0;
    ts_service svc;
    ts_service_options o = {.service = "lease_rt",
                            .redis_url = redis.url,
                            .bus = true,
                            .wait_bus = 5,
                            .sched = true,
                            .sched_options = &so};
    CU_ASSERT_FATAL(ts_service_create(&svc, &o) == 0);
    CU_ASSERT_EQUAL(daebus_scheduler_add_task(svc.sched, "rt_tick", 0.05, rt_tick, NULL, false), 0);
    daebus_task *t = daebus_scheduler_find(svc.sched, "rt_tick");
    CU_ASSERT_EQUAL(daebus_task_set_single(t, true), 0);
    CU_ASSERT_EQUAL(daebus_task_set_single(NULL, true), DAEBUS_EINVAL);
    CU_ASSERT_FATAL(ts_service_launch(&svc) == 0);
    CU_ASSERT_EQUAL(daebus_task_set_single(t, false), DAEBUS_ESTATE);
    TS_WAIT_UNTIL(atomic_load(&rt_runs) >= 3, 5);
    CU_ASSERT(atomic_load(&rt_runs) >= 3);
    daebus_task_stats st;
    CU_ASSERT_EQUAL(daebus_task_get_stats(t, &st), 0);
    CU_ASSERT(st.single && st.leader);
    CU_ASSERT_EQUAL(redis_exists("daebus:lease_rt:lease:task:rt_tick"), 1);
    ts_service_stop(&svc);
}

/* A run that outlives its lease (Redis gone during the run) is logged. */
DAEBUS_BLUEPRINT(slow_bp, "slow");
static atomic_int slow_started, slow_done;

BACKGROUND(slow_tick, "slow_tick", 0.2, .single = true, .bp = &slow_bp)
{
    (void)task;
    (void)user;
    if (atomic_fetch_add(&slow_started, 1) == 0) {
        ts_sleep_ms(1200);
        atomic_store(&slow_done, 1);
    }
    return 0;
}

static void test_run_outliving_lease_logged(void)
{
    char path[] = "/tmp/daebus_lease_log_XXXXXX";
    int fd = mkstemp(path);
    CU_ASSERT_FATAL(fd >= 0);
    daebus_scheduler_options so = DAEBUS_SCHEDULER_OPTIONS_INIT;
    so.lease_ttl = 0.5;
    ts_service svc;
    ts_service_options o = {.service = "lease_slow",
                            .redis_url = redis.url,
                            .bus = true,
                            .wait_bus = 5,
                            .sched = true,
                            .sched_options = &so,
                            .blueprints = {&slow_bp}};
    CU_ASSERT_FATAL(ts_service_start(&svc, &o) == 0);
    TS_WAIT_UNTIL(atomic_load(&slow_started) > 0, 5);
    CU_ASSERT_FATAL(atomic_load(&slow_started) > 0);
    daebus_log_set_fd(fd);
    ts_redis_kill(&redis); /* no renewal reaches Redis during the run */
    TS_WAIT_UNTIL(atomic_load(&slow_done), 5);
    ts_sleep_ms(100);
    daebus_scheduler_stats st;
    CU_ASSERT_EQUAL(daebus_scheduler_get_stats(svc.sched, &st), 0);
    CU_ASSERT(st.lease_lost >= 1);
    ts_service_stop(&svc); /* nothing logs to fd any more */
    daebus_log_set_fd(2);
    close(fd);
    CU_ASSERT_FATAL(ts_redis_restart(&redis) == 0);
    size_t len = 0;
    char *text = ts_read_file(path, &len);
    unlink(path);
    CU_ASSERT(text && strstr(text, "outlived this replica's lease") != NULL);
    if (text)
        fputs(text, stderr);
    free(text);
}

/* ---- replicas ---- */

static void test_three_replicas_one_runs(void)
{
    for (int i = 0; i < 3; i++)
        start_replica(redis.url);
    double t0 = wall_now();
    TS_WAIT_UNTIL(count_after('S', t0, -1, NULL) >= 3, 15);
    CU_ASSERT_FATAL(count_after('S', t0, -1, NULL) >= 3);
    double from = wall_now();
    ts_sleep_ms(3000);
    int total = count_after('S', from, -1, NULL), on[3];
    for (int i = 0; i < 3; i++)
        on[i] = count_after('S', from, i, NULL);
    int runners = (on[0] > 0) + (on[1] > 0) + (on[2] > 0);
    printf("\n  3 s with 3 replicas: %d runs (%d/%d/%d), interval %.1f s", total, on[0], on[1],
           on[2], INTERVAL);
    CU_ASSERT_EQUAL(runners, 1);
    /* 10 expected; a loaded machine (load 8 on 2 cores seen) stalls a process for a second */
    CU_ASSERT(total >= 5 && total <= 11);
    int threads = 0;
    for (int i = 0; i < 3; i++)
        threads += count_after('T', from, i, NULL) > 0;
    CU_ASSERT_EQUAL(threads, 1);
    check_invariants("three replicas");
}

static void test_graceful_handover(void)
{
    double at = 0;
    int h = last_actor('S', &at), th = last_actor('T', NULL);
    CU_ASSERT_FATAL(h >= 0);
    pid_t pid = reps[h].pid;
    stop_replica(h, SIGTERM);
    /* released at stop: the key is gone, or already another replica's */
    char mine[32];
    snprintf(mine, sizeof mine, "-%d-", (int)pid);
    char holder[160] = "";
    redis_get("daebus:lease_test:lease:task:tick", holder, sizeof holder);
    CU_ASSERT(strstr(holder, mine) == NULL);
    double last_end = last_of('E', h);
    double took_at;
    int next = wait_takeover(at, h, 10, &took_at);
    CU_ASSERT_FATAL(next >= 0);
    double gap = took_at - last_end;
    printf("\n  graceful stop: replica %d ran %.0f ms after the holder's last run ended "
           "(limit: interval + renew period + 1 s for a loaded machine = %.0f ms)",
           next, gap * 1000, (INTERVAL + TTL / 3 + 1.0) * 1000);
    CU_ASSERT(gap <= INTERVAL + TTL / 3 + 1.0);
    if (th == h) { /* it held the thread's lease too: another starts the thread */
        double z = last_of('Z', h), a = 0;
        CU_ASSERT(z > 0);
        TS_WAIT_UNTIL(count_after('A', z, -1, &a) > 0, 3);
        CU_ASSERT(a > z);
        printf("\n  graceful stop: the thread started elsewhere %.0f ms after it returned",
               (a - z) * 1000);
    }
    start_replica(redis.url);
    check_invariants("after a graceful stop");
}

static void test_kill9_handover(void)
{
    double at = 0;
    int h = last_actor('S', &at);
    CU_ASSERT_FATAL(h >= 0 && reps[h].pid > 0);
    stop_replica(h, SIGKILL);
    double killed = wall_now();
    double took_at;
    int next = wait_takeover(at, h, 6, &took_at);
    CU_ASSERT_FATAL(next >= 0);
    printf("\n  kill -9: replica %d ran %.0f ms after the kill (TTL %.0f ms)", next,
           (took_at - killed) * 1000, TTL * 1000);
    /* not before the key expired (its last renewal came at most TTL / 3 before the kill) */
    CU_ASSERT(took_at - killed >= TTL - TTL / 3 - 0.1);
    CU_ASSERT(took_at - killed <= TTL + TTL / 3 + INTERVAL + 2.0); /* + 2 s: loaded machine */
    start_replica(redis.url);
    check_invariants("after a kill -9");
}

/* Did d write the latest run start and a thread tick in the last 200 ms? */
static bool d_holds_both(int d)
{
    double t = 0;
    return last_actor('S', NULL) == d && last_actor('T', &t) == d && wall_now() - t < 0.2;
}

static void test_network_cut(void)
{
    /* Only the proxied replica D at first, so that it takes the lease. */
    for (int i = 0; i < nreps; i++)
        stop_replica(i, SIGTERM);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", px.port);
    int d = start_replica(url);
    double t0 = wall_now();
    TS_WAIT_UNTIL(count_after('S', t0, d, NULL) >= 2, 10);
    CU_ASSERT_FATAL(count_after('S', t0, d, NULL) >= 2);
    int o1 = start_replica(redis.url), o2 = start_replica(redis.url);
    ts_sleep_ms(1500);
    CU_ASSERT_EQUAL(count_after('S', t0, o1, NULL) + count_after('S', t0, o2, NULL), 0);
    /* D holds both leases (it keeps them unless a stall longer than the
     * margin made it lapse: then this test cannot check what it is for) */
    TS_WAIT_UNTIL(d_holds_both(d), 5);
    CU_ASSERT_FATAL(d_holds_both(d));

    double cut = wall_now();
    atomic_store(&px.cut, 1);
    double took_at;
    int next = wait_takeover(cut, d, 8, &took_at);
    CU_ASSERT_FATAL(next >= 0);
    double d_end = last_of('E', d), d_returned = last_of('Z', d), d_tick = last_of('T', d);
    printf("\n  network cut: replica %d ran %.0f ms after the cut; the cut one's last run ended "
           "%.0f ms and its thread's last tick %.0f ms before that",
           next, (took_at - cut) * 1000, (took_at - d_end) * 1000, (took_at - d_tick) * 1000);
    CU_ASSERT(d_end < took_at);
    CU_ASSERT(d_returned > cut); /* its thread ran at the cut and returned */
    double thread_start = 0;
    TS_WAIT_UNTIL(count_after('A', cut, -1, &thread_start) > 0, 3);
    CU_ASSERT(thread_start > d_tick);

    /* The cut heals: D finds another holder and stays quiet. */
    atomic_store(&px.cut, 0);
    double healed = wall_now();
    ts_sleep_ms(2500);
    CU_ASSERT_EQUAL(count_after('S', healed, d, NULL), 0);
    CU_ASSERT_EQUAL(count_after('A', healed, d, NULL), 0);
    CU_ASSERT(count_after('S', healed, -1, NULL) >= 1); /* 8 expected; loaded machine */
    check_invariants("after a network cut");
}

static void test_redis_restart(void)
{
    ts_redis_kill(&redis);
    ts_sleep_ms(500);
    CU_ASSERT_FATAL(ts_redis_restart(&redis) == 0);
    double back = wall_now();
    double first = 0;
    TS_WAIT_UNTIL(count_after('S', back, -1, &first) >= 3, 10);
    CU_ASSERT(count_after('S', back, -1, &first) >= 3);
    printf("\n  Redis restart: runs resumed %.0f ms after Redis came back", (first - back) * 1000);
    /* Redis lost the leases: the thread stopped and starts again in a new term */
    double again = 0;
    TS_WAIT_UNTIL(count_after('A', back, -1, &again) > 0, 10);
    CU_ASSERT(again > back);
    printf("; the thread restarted %.0f ms after", (again - back) * 1000);
    check_invariants("after a Redis restart");
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("lease", init, cleanup);
    CU_add_test(s, "without a bus a .single task runs locally", test_without_bus_runs_locally);
    CU_add_test(s, ".single with .no_auto_start is refused", test_single_no_auto_start_refused);
    CU_add_test(s, "with a bus: lease taken, counted, released", test_with_bus_takes_and_releases);
    CU_add_test(s, "a run-time task made .single", test_run_time_task);
    CU_add_test(s, "a run that outlives its lease is logged", test_run_outliving_lease_logged);
    CU_add_test(s, "three replicas: one runs the task", test_three_replicas_one_runs);
    CU_add_test(s, "graceful stop of the holder: prompt takeover", test_graceful_handover);
    CU_add_test(s, "kill -9 of the holder: takeover after the TTL", test_kill9_handover);
    CU_add_test(s, "network cut: the cut holder stops first", test_network_cut);
    CU_add_test(s, "Redis restart: lease taken again, runs resume", test_redis_restart);
    return ts_run_cunit();
}
