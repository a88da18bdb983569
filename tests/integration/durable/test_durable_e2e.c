/* Durable actions end to end (docs/messaging/choosing.md): replicas of
 * durable_service (real processes) read daebus:<service>:requests; C callers
 * with the durable option on threads of their own send the requests.
 *
 *   1. three replicas, N requests (argv[1]; 2,000 by default, the ASan variant
 *      300) of a 10 ms handler from four callers, 16 in flight each; replica 0
 *      killed -9 mid-run (once it holds taken entries) and started again: every request answered, exactly one final reply
 *      per request (a raw PSUBSCRIBE caller:* counts them), a done record per
 *      request, the handler's runs per request 1 except for the few the
 *      killed replica had taken (attempt > 1 recorded for those);
 *   2. requests sent while no replica runs, one started 2 s later: the ones
 *      with time left are answered within their deadline; the ones whose
 *      deadline passed time out and never run;
 *   3. a poison request (its handler _exit(1)s) under a supervisor that
 *      restarts replicas: dead-lettered after durable_max_attempts, an error
 *      reply to its caller, every other request answered. The replicas have
 *      one worker each here: a request running beside the poison in the same
 *      process dies with it and is retried with it, and could share its fate
 *      (dead letters count crashed runs, whatever crashed them). */
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "daebus/daebus.h"
#include "durable_replicas.h"

#define MAX_PROCS 4
#define NCALLERS  4
#define WINDOW    16

static ts_redis redis;
static int nrequests = 2000;
static char logpath[512];

/* ---- replicas ---- */

typedef struct replica {
    pid_t pid;
    const char *service, *max_attempts, *visibility, *workers;
} replica;

static replica procs[MAX_PROCS];

static void start(int i, const char *service, const char *max_attempts, const char *visibility,
                  const char *workers)
{
    char e[4][64];
    snprintf(e[0], sizeof e[0], "DUR_SERVICE=%s", service);
    snprintf(e[1], sizeof e[1], "DUR_MAX_ATTEMPTS=%s", max_attempts);
    snprintf(e[2], sizeof e[2], "DUR_VISIBILITY=%s", visibility);
    snprintf(e[3], sizeof e[3], "DUR_WORKERS=%s", workers);
    const char *env[] = {e[0], e[1], e[2], e[3], NULL};
    pid_t pid = dur_spawn(redis.url, logpath, env);
    procs[i] = (replica){pid, service, max_attempts, visibility, workers};
}

static void reap(int i, int sig)
{
    dur_reap(&procs[i].pid, sig);
}

static void reap_all(void)
{
    for (int i = 0; i < MAX_PROCS; i++)
        reap(i, SIGTERM);
}

/* ---- raw Redis ---- */

static redisContext *raw(void)
{
    return dur_raw(redis.port);
}

static long long raw_int(const char *fmt, const char *arg)
{
    redisContext *c = raw();
    if (!c)
        return -1;
    redisReply *r = redisCommand(c, fmt, arg);
    long long v = -1;
    if (r && r->type == REDIS_REPLY_INTEGER)
        v = r->integer;
    else if (r && r->type == REDIS_REPLY_STRING)
        v = atoll(r->str);
    else if (r && r->type == REDIS_REPLY_NIL)
        v = 0;
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return v;
}

/* Replicas of service up (subscribed to its channel: PUBSUB NUMSUB; the
 * stream reader starts with the bus, and a blocked XREADGROUP shows no
 * consumer in XINFO before it reads an entry). */
static long long consumers(const char *service)
{
    redisContext *c = raw();
    if (!c)
        return -1;
    redisReply *r = redisCommand(c, "PUBSUB NUMSUB %s", service);
    long long n =
        r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 ? r->element[1]->integer : 0;
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return n;
}

/* Entries taken and not yet acknowledged by the replica of pid (its consumer
 * name is its instance id, "<host>-<pid>-<random>"). */
static long long pending_of(const char *service, pid_t pid)
{
    char key[128], mark[32];
    snprintf(key, sizeof key, "daebus:%s:requests", service);
    snprintf(mark, sizeof mark, "-%ld-", (long)pid);
    redisContext *c = raw();
    if (!c)
        return -1;
    redisReply *r = redisCommand(c, "XPENDING %s daebus", key);
    long long n = 0;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 4 &&
        r->element[3]->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i < r->element[3]->elements; i++) {
            redisReply *e = r->element[3]->element[i];
            if (e->elements == 2 && strstr(e->element[0]->str, mark))
                n += atoll(e->element[1]->str);
        }
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return n;
}

/* Entries left in service's stream (XLEN; acknowledged ones are deleted). */
static long long stream_len(const char *service)
{
    char key[128];
    snprintf(key, sizeof key, "daebus:%s:requests", service);
    return raw_int("XLEN %s", key);
}

/* ---- the final-reply counter: PSUBSCRIBE caller:* ---- */

static atomic_int finals, stop_counter;
static pthread_t counter_thread;
static redisContext *counter_ctx;

static void *count_finals(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop_counter)) {
        redisReply *r = NULL;
        if (redisGetReply(counter_ctx, (void **)&r) != REDIS_OK) {
            if (counter_ctx->err == REDIS_ERR_IO && !atomic_load(&stop_counter)) {
                counter_ctx->err = 0; /* read time-out: go on */
                continue;
            }
            break;
        }
        if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 4) {
            cJSON *m = cJSON_Parse(r->element[3]->str);
            const cJSON *f = cJSON_GetObjectItemCaseSensitive(m, "final");
            if (m && !cJSON_IsFalse(f))
                atomic_fetch_add(&finals, 1);
            cJSON_Delete(m);
        }
        freeReplyObject(r);
    }
    return NULL;
}

static int counter_start(void)
{
    atomic_store(&finals, 0);
    atomic_store(&stop_counter, 0);
    counter_ctx = raw();
    if (!counter_ctx)
        return -1;
    struct timeval tv = {0, 200000};
    redisSetTimeout(counter_ctx, tv);
    redisReply *r = redisCommand(counter_ctx, "PSUBSCRIBE caller:*");
    if (!r)
        return -1;
    freeReplyObject(r);
    return pthread_create(&counter_thread, NULL, count_finals, NULL);
}

static void counter_stop(void)
{
    atomic_store(&stop_counter, 1);
    pthread_join(counter_thread, NULL);
    redisFree(counter_ctx);
}

/* ---- callers: n requests each, WINDOW in flight ---- */

typedef struct load {
    daebus_caller *caller;
    const char *service;
    const char *payload;
    int n;
    double timeout;
    char (*ids)[40];
    int *status;
    double *took; /* seconds from send to completion */
    double *sent;
    atomic_int done, ok, inflight;
    atomic_int issued; /* requests handed to the caller so far */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t thread;
} load;

typedef struct slot {
    load *l;
    int i;
} slot;

static void on_done(daebus_caller *c, int status, const cJSON *payload, const char *message,
                    void *user)
{
    (void)c, (void)payload, (void)message;
    slot *s = user;
    load *l = s->l;
    l->status[s->i] = status;
    l->took[s->i] = ts_now() - l->sent[s->i];
    if (status == 0)
        atomic_fetch_add(&l->ok, 1);
    free(s);
    pthread_mutex_lock(&l->lock);
    atomic_fetch_add(&l->done, 1);
    atomic_fetch_sub(&l->inflight, 1);
    pthread_cond_signal(&l->cond);
    pthread_mutex_unlock(&l->lock);
}

static void *run_load(void *arg)
{
    load *l = arg;
    cJSON *pl = cJSON_Parse(l->payload);
    for (int i = 0; i < l->n; i++) {
        pthread_mutex_lock(&l->lock);
        while (atomic_load(&l->inflight) >= WINDOW)
            pthread_cond_wait(&l->cond, &l->lock);
        atomic_fetch_add(&l->inflight, 1);
        pthread_mutex_unlock(&l->lock);
        slot *s = malloc(sizeof *s);
        *s = (slot){l, i};
        l->sent[i] = ts_now();
        int rc = daebus_caller_request_async(l->caller, l->service, "count", pl, l->timeout,
                                             on_done, NULL, s, l->ids[i]);
        atomic_fetch_add(&l->issued, 1);
        if (rc != 0) { /* never called back */
            free(s);
            l->status[i] = rc;
            pthread_mutex_lock(&l->lock);
            atomic_fetch_add(&l->done, 1);
            atomic_fetch_sub(&l->inflight, 1);
            pthread_mutex_unlock(&l->lock);
        }
    }
    cJSON_Delete(pl);
    return NULL;
}

static load *load_start(const char *service, const char *payload, int n, double timeout)
{
    load *l = calloc(1, sizeof *l);
    daebus_caller_options o = DAEBUS_CALLER_OPTIONS_INIT;
    o.durable = true;
    l->caller = daebus_caller_create(redis.url, &o, NULL);
    l->service = service;
    l->payload = payload;
    l->n = n;
    l->timeout = timeout;
    l->ids = calloc((size_t)n, sizeof *l->ids);
    l->status = calloc((size_t)n, sizeof *l->status);
    l->took = calloc((size_t)n, sizeof *l->took);
    l->sent = calloc((size_t)n, sizeof *l->sent);
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->cond, NULL);
    pthread_create(&l->thread, NULL, run_load, l);
    return l;
}

/* Joins the sender and waits (up to seconds) for every completion. */
static int load_wait(load *l, double seconds)
{
    pthread_join(l->thread, NULL);
    TS_WAIT_UNTIL(atomic_load(&l->done) == l->n, seconds);
    return atomic_load(&l->done) == l->n;
}

static void load_free(load *l)
{
    daebus_caller_destroy(l->caller);
    pthread_mutex_destroy(&l->lock);
    pthread_cond_destroy(&l->cond);
    free(l->ids);
    free(l->status);
    free(l->took);
    free(l->sent);
    free(l);
}

/* The handler's runs of request id (dur:runs:<id>; 0 when it never ran). */
static long long runs_of(redisContext *c, const char *id, long long *attempt)
{
    redisReply *r = redisCommand(c, "MGET dur:runs:%s dur:attempt:%s", id, id);
    long long v = -1;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
        v = r->element[0]->type == REDIS_REPLY_STRING ? atoll(r->element[0]->str) : 0;
        *attempt = r->element[1]->type == REDIS_REPLY_STRING ? atoll(r->element[1]->str) : 1;
    }
    if (r)
        freeReplyObject(r);
    return v;
}

/* ---- 1. kill -9 of a replica under load ---- */

static void test_kill_replica(void)
{
    const char *svc = "dur_test";
    for (int i = 0; i < 3; i++)
        start(i, svc, "5", "2", "10");
    TS_WAIT_UNTIL(consumers(svc) >= 3, 15);
    CU_ASSERT_FATAL(consumers(svc) >= 3);
    CU_ASSERT_FATAL(counter_start() == 0);
    double t0 = ts_now();
    load *l[NCALLERS];
    int per = nrequests / NCALLERS;
    for (int k = 0; k < NCALLERS; k++)
        l[k] = load_start(svc, "{\"sleep_ms\":10}", per, 40.0);
    /* Kill replica 0 a third of the way, start it again 0.3 s later. */
    int total = per * NCALLERS;
#define DONE_ALL                                                                                   \
    (atomic_load(&l[0]->done) + atomic_load(&l[1]->done) + atomic_load(&l[2]->done) +              \
     atomic_load(&l[3]->done))
    TS_WAIT_UNTIL(DONE_ALL >= total / 3, 30);
    /* Read once: the count moves as the replica acknowledges, so a second
     * read can see less than the one that ended the wait. */
    long long held = 0;
    TS_WAIT_UNTIL((held = pending_of(svc, procs[0].pid)) >= 2, 10);
    CU_ASSERT(held >= 2);
    reap(0, SIGKILL);
    ts_sleep_ms(300);
    start(0, svc, "5", "2", "10");
    int all = 1;
    for (int k = 0; k < NCALLERS; k++)
        all &= load_wait(l[k], 45);
    CU_ASSERT(all);
    int ok = 0;
    for (int k = 0; k < NCALLERS; k++)
        ok += atomic_load(&l[k]->ok);
    CU_ASSERT_EQUAL(ok, total);
    /* Nothing left to run: the stream is empty (acknowledged = deleted). */
    TS_WAIT_UNTIL(stream_len(svc) == 0, 10);
    CU_ASSERT_EQUAL(stream_len(svc), 0);
    ts_sleep_ms(300);
    counter_stop();
    CU_ASSERT_EQUAL(atomic_load(&finals), total); /* exactly one final reply each */
    redisContext *c = raw();
    CU_ASSERT_FATAL(c != NULL);
    int rerun = 0, missing = 0, undone = 0, rerun_unmarked = 0;
    for (int k = 0; k < NCALLERS; k++)
        for (int i = 0; i < per; i++) {
            long long attempt = 1;
            long long n = runs_of(c, l[k]->ids[i], &attempt);
            if (n < 1)
                missing++;
            if (n > 1) {
                rerun++;
                if (attempt < 2)
                    rerun_unmarked++;
            }
            char key[128];
            snprintf(key, sizeof key, "daebus:%s:done:%s", svc, l[k]->ids[i]);
            redisReply *r = redisCommand(c, "EXISTS %s", key);
            if (!r || r->integer != 1)
                undone++;
            if (r)
                freeReplyObject(r);
        }
    redisFree(c);
    long long retried = raw_int("GET %s", "dur:retried");
    printf("\n  %d requests in %.1f s; runs > 1: %d; attempts > 1: %lld\n", total, ts_now() - t0,
           rerun, retried);
    CU_ASSERT_EQUAL(missing, 0);
    CU_ASSERT_EQUAL(undone, 0);
    CU_ASSERT_EQUAL(rerun_unmarked, 0);
    /* Only what the killed replica had taken (at most its 10 workers) runs again. */
    CU_ASSERT(rerun <= 10);
    CU_ASSERT(retried >= 1); /* the killed replica's entries ran again elsewhere */
    for (int k = 0; k < NCALLERS; k++)
        load_free(l[k]);
    reap_all();
#undef DONE_ALL
}

/* ---- 2. no replica for 2 s ---- */

static void test_late_replica(void)
{
    const char *svc = "dur_late";
    load *live = load_start(svc, "{}", 40, 8.0);
    load *gone = load_start(svc, "{}", 20, 1.0);
    double t0 = ts_now();
    /* 2 s after the last of the 1 s requests was sent (16 go at once, the
     * other 4 as the first ones time out): every deadline has passed by then,
     * with 1 s to spare, however slowly a loaded machine sends them. */
    TS_WAIT_UNTIL(atomic_load(&gone->issued) == 20, 10);
    CU_ASSERT_EQUAL(atomic_load(&gone->issued), 20);
    ts_sleep_ms(2000);
    start(0, svc, "5", "2", "10");
    CU_ASSERT(load_wait(live, 15));
    CU_ASSERT(load_wait(gone, 15));
    CU_ASSERT_EQUAL(atomic_load(&live->ok), 40);
    double worst = 0;
    for (int i = 0; i < 40; i++)
        if (live->took[i] > worst)
            worst = live->took[i];
    CU_ASSERT(worst < 8.0);
    for (int i = 0; i < 20; i++)
        CU_ASSERT_EQUAL(gone->status[i], DAEBUS_ETIMEDOUT);
    /* The expired ones are dropped at read, never run. */
    TS_WAIT_UNTIL(stream_len(svc) == 0, 10);
    CU_ASSERT_EQUAL(stream_len(svc), 0);
    redisContext *c = raw();
    int ran = 0;
    for (int i = 0; i < 20; i++) {
        long long attempt;
        if (runs_of(c, gone->ids[i], &attempt) != 0)
            ran++;
    }
    redisFree(c);
    printf("\n  answered 40/40 (slowest %.2f s after a 2 s wait), %d of 20 expired ones ran "
           "(%.1f s)\n",
           worst, ran, ts_now() - t0);
    CU_ASSERT_EQUAL(ran, 0);
    load_free(live);
    load_free(gone);
    reap_all();
}

/* ---- 3. poison ---- */

static atomic_int supervise;
static atomic_int restarts;

static void *supervisor(void *arg)
{
    (void)arg;
    while (atomic_load(&supervise)) {
        for (int i = 0; i < 2; i++) {
            int st;
            if (procs[i].pid > 0 && waitpid(procs[i].pid, &st, WNOHANG) == procs[i].pid) {
                procs[i].pid = -1;
                ts_sleep_ms(100);
                start(i, procs[i].service, procs[i].max_attempts, procs[i].visibility,
                      procs[i].workers);
                atomic_fetch_add(&restarts, 1);
            }
        }
        ts_sleep_ms(20);
    }
    return NULL;
}

typedef struct poison_state {
    atomic_int done;
    int status;
    char message[300];
} poison_state;

static void on_poison(daebus_caller *c, int status, const cJSON *payload, const char *message,
                      void *user)
{
    (void)c, (void)payload;
    poison_state *p = user;
    p->status = status;
    snprintf(p->message, sizeof p->message, "%s", message ? message : "");
    atomic_store(&p->done, 1);
}

static void test_poison(void)
{
    const char *svc = "dur_poison";
    for (int i = 0; i < 2; i++)
        start(i, svc, "3", "1", "1");
    TS_WAIT_UNTIL(consumers(svc) >= 2, 15);
    atomic_store(&supervise, 1);
    pthread_t sup;
    pthread_create(&sup, NULL, supervisor, NULL);
    double t0 = ts_now();
    daebus_caller_options o = DAEBUS_CALLER_OPTIONS_INIT;
    o.durable = true;
    daebus_caller *c = daebus_caller_create(redis.url, &o, NULL);
    CU_ASSERT_FATAL(c != NULL);
    poison_state ps = {0};
    cJSON *poison = cJSON_Parse("{\"poison\":true}");
    char pid_[40];
    CU_ASSERT_EQUAL(
        daebus_caller_request_async(c, svc, "count", poison, 40.0, on_poison, NULL, &ps, pid_), 0);
    load *others = load_start(svc, "{\"sleep_ms\":1}", 60, 40.0);
    CU_ASSERT(load_wait(others, 45));
    TS_WAIT_UNTIL(atomic_load(&ps.done), 45);
    CU_ASSERT_EQUAL(atomic_load(&others->ok), 60);
    CU_ASSERT_EQUAL(ps.status, DAEBUS_EREPLY);
    CU_ASSERT(strstr(ps.message, "dead-lettered") != NULL);
    CU_ASSERT_EQUAL(raw_int("XLEN %s", "daebus:dur_poison:dead"), 1);
    redisContext *rc = raw();
    redisReply *r = redisCommand(rc, "XRANGE daebus:dur_poison:dead - +");
    long long attempts = 0;
    int named = 0;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 1) {
        redisReply *f = r->element[0]->element[1];
        for (size_t i = 0; i + 1 < f->elements; i += 2) {
            if (strcmp(f->element[i]->str, "attempts") == 0)
                attempts = atoll(f->element[i + 1]->str);
            if (strcmp(f->element[i]->str, "req") == 0 && strstr(f->element[i + 1]->str, pid_))
                named = 1;
        }
    }
    if (r)
        freeReplyObject(r);
    long long attempt;
    CU_ASSERT_EQUAL(runs_of(rc, pid_, &attempt), 0);
    redisFree(rc);
    printf("\n  poison dead-lettered after %lld attempts, %d restarts, %.1f s: %s\n", attempts,
           atomic_load(&restarts), ts_now() - t0, ps.message);
    CU_ASSERT(named);
    CU_ASSERT(attempts >= 3);
    CU_ASSERT(atomic_load(&restarts) >= 3);
    atomic_store(&supervise, 0);
    pthread_join(sup, NULL);
    load_free(others);
    daebus_caller_destroy(c);
    cJSON_Delete(poison);
    reap_all();
}

/* No replica reported a sanitizer error (ASan/UBSan builds) in its log. */
static void test_logs_clean(void)
{
    reap_all();
    CU_ASSERT(dur_log_clean(logpath));
}

static int init(void)
{
    snprintf(logpath, sizeof logpath, "/tmp/durable_e2e_%ld.log", (long)getpid());
    return ts_redis_start(&redis, NULL);
}

static int cleanup(void)
{
    reap_all();
    ts_redis_stop(&redis);
    dur_log_done(logpath);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        nrequests = atoi(argv[1]);
    if (nrequests < NCALLERS * 10)
        nrequests = NCALLERS * 10;
    signal(SIGPIPE, SIG_IGN);
    daebus_log_set_level(DAEBUS_LOG_ERROR);
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("durable end to end", init, cleanup);
    CU_add_test(s, "three replicas, one killed -9", test_kill_replica);
    CU_add_test(s, "no replica for 2 s", test_late_replica);
    CU_add_test(s, "poison request dead-lettered", test_poison);
    CU_add_test(s, "replica logs clean", test_logs_clean);
    return ts_run_cunit();
}
