/* Durable actions under a steady load: Redis memory stays bounded
 * (docs/messaging/durable.md, "Memory and sizing").
 *
 * Two replicas of durable_service (real processes; visibility 1 s, done
 * records kept 1 s past their deadline), two C callers with the durable
 * option keeping WINDOW echo requests in flight each, for argv[1] seconds
 * (25 by default, the ASan variant 10); every RESTART_MS one replica, in
 * turn, is killed -9 and started again, so consumers of the group churn
 * (each start is a new consumer: the instance id). Every second: INFO memory
 * used_memory, MEMORY USAGE of the request stream, XLEN, the group's
 * pending, the number of consumers, the done records, DBSIZE. Asserts:
 *   - every request answered;
 *   - after the warm-up (time-out + margin + 2 s) used_memory, the stream's
 *     memory and the done records plateau (the second half's maximum within
 *     a bound of the first half's), the consumers stay few;
 *   - an entry acknowledged but never deleted (a replica lost between its XACK
 *     and its XDEL) is trimmed by the sweep;
 *   - at the end: XLEN and pending 0, the consumers of the killed replicas
 *     deleted, and a replica stopped cleanly deletes its own consumer. */
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "daebus/daebus.h"
#include "durable_replicas.h"

#define SVC         "dur_soak"
#define KEY         "daebus:" SVC ":requests"
#define NCALLERS    2
#define WINDOW      32
#define TIMEOUT_S   5.0
#define DONE_TTL_S  "1"
#define VIS_S       "1"
#define RESTART_MS  2000
#define MAX_SAMPLES 120

static ts_redis redis;
static int duration = 25;
static char logpath[512];
static pid_t procs[2] = {-1, -1};

/* ---- replicas ---- */

static void start(int i)
{
    static const char *const env[] = {"DUR_SERVICE=" SVC, "DUR_VISIBILITY=" VIS_S,
                                      "DUR_DONE_TTL=" DONE_TTL_S, "DUR_WORKERS=8", NULL};
    procs[i] = dur_spawn(redis.url, logpath, env);
}

static void reap(int i, int sig)
{
    dur_reap(&procs[i], sig);
}

/* ---- raw Redis ---- */

static redisContext *raw(void)
{
    return dur_raw(redis.port);
}

static long long int_of(redisContext *c, const char *cmd)
{
    redisReply *r = redisCommand(c, cmd);
    long long v = -1;
    if (r && r->type == REDIS_REPLY_INTEGER)
        v = r->integer;
    else if (r && r->type == REDIS_REPLY_NIL)
        v = 0;
    if (r)
        freeReplyObject(r);
    return v;
}

static long long used_memory(redisContext *c)
{
    redisReply *r = redisCommand(c, "INFO memory");
    long long v = -1;
    const char *p = r && r->type == REDIS_REPLY_STRING ? strstr(r->str, "used_memory:") : NULL;
    if (p)
        v = atoll(p + strlen("used_memory:"));
    if (r)
        freeReplyObject(r);
    return v;
}

/* The group's pending entries (XPENDING summary). */
static long long pending(redisContext *c)
{
    redisReply *r = redisCommand(c, "XPENDING " KEY " daebus");
    long long v = -1;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 4 &&
        r->element[0]->type == REDIS_REPLY_INTEGER)
        v = r->element[0]->integer;
    if (r)
        freeReplyObject(r);
    return v;
}

/* Consumers of the group; *of_pid: whether one is the replica of pid
 * (its consumer name is its instance id, "<host>-<pid>-<random>"). */
static long long consumers(redisContext *c, pid_t pid, bool *of_pid)
{
    redisReply *r = redisCommand(c, "XINFO CONSUMERS " KEY " daebus");
    long long v = -1;
    char mark[32];
    snprintf(mark, sizeof mark, "-%ld-", (long)pid);
    if (of_pid)
        *of_pid = false;
    if (r && r->type == REDIS_REPLY_ARRAY) {
        v = (long long)r->elements;
        for (size_t i = 0; of_pid && i < r->elements; i++) {
            const redisReply *e = r->element[i];
            if (e->type == REDIS_REPLY_ARRAY && e->elements >= 2 &&
                e->element[1]->type == REDIS_REPLY_STRING && strstr(e->element[1]->str, mark))
                *of_pid = true;
        }
    }
    if (r)
        freeReplyObject(r);
    return v;
}

/* Done records (SCAN of daebus:<service>:done:*). */
static long long done_keys(redisContext *c)
{
    long long n = 0;
    char cursor[32] = "0";
    do {
        redisReply *r = redisCommand(c, "SCAN %s MATCH daebus:" SVC ":done:* COUNT 5000", cursor);
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            if (r)
                freeReplyObject(r);
            return -1;
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        n += (long long)r->element[1]->elements;
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    return n;
}

/* ---- callers: WINDOW echo requests in flight each, until told to stop ---- */

typedef struct load {
    daebus_caller *caller;
    atomic_int stop, inflight;
    atomic_llong sent, ok, failed;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t thread;
} load;

static void on_done(daebus_caller *c, int status, const cJSON *payload, const char *message,
                    void *user)
{
    (void)c, (void)payload;
    load *l = user;
    if (status == 0) {
        atomic_fetch_add(&l->ok, 1);
    } else {
        if (atomic_fetch_add(&l->failed, 1) < 5)
            fprintf(stderr, "request failed: %d %s\n", status, message ? message : "");
    }
    pthread_mutex_lock(&l->lock);
    atomic_fetch_sub(&l->inflight, 1);
    pthread_cond_signal(&l->cond);
    pthread_mutex_unlock(&l->lock);
}

static void *run_load(void *arg)
{
    load *l = arg;
    cJSON *pl = cJSON_Parse("{\"n\":1,\"text\":\"a steady load of durable requests\"}");
    while (!atomic_load(&l->stop)) {
        pthread_mutex_lock(&l->lock);
        while (atomic_load(&l->inflight) >= WINDOW && !atomic_load(&l->stop))
            pthread_cond_wait(&l->cond, &l->lock);
        atomic_fetch_add(&l->inflight, 1);
        pthread_mutex_unlock(&l->lock);
        if (atomic_load(&l->stop)) {
            atomic_fetch_sub(&l->inflight, 1);
            break;
        }
        atomic_fetch_add(&l->sent, 1);
        int rc = daebus_caller_request_async(l->caller, SVC, "echo", pl, TIMEOUT_S, on_done, NULL,
                                             l, NULL);
        if (rc != 0) { /* never called back */
            atomic_fetch_add(&l->failed, 1);
            atomic_fetch_sub(&l->inflight, 1);
            ts_sleep_ms(10);
        }
    }
    cJSON_Delete(pl);
    return NULL;
}

static load *load_start(void)
{
    load *l = calloc(1, sizeof *l);
    daebus_caller_options o = DAEBUS_CALLER_OPTIONS_INIT;
    o.durable = true;
    l->caller = daebus_caller_create(redis.url, &o, NULL);
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->cond, NULL);
    pthread_create(&l->thread, NULL, run_load, l);
    return l;
}

static void load_stop(load *l)
{
    pthread_mutex_lock(&l->lock);
    atomic_store(&l->stop, 1);
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->lock);
    pthread_join(l->thread, NULL);
}

static void load_free(load *l)
{
    daebus_caller_destroy(l->caller);
    pthread_mutex_destroy(&l->lock);
    pthread_cond_destroy(&l->cond);
    free(l);
}

/* ---- samples ---- */

typedef struct sample {
    double t;
    long long mem, stream_mem, xlen, pending, consumers, done, dbsize, answered;
} sample;

static sample samples[MAX_SAMPLES];
static int nsamples;

static void take_sample(redisContext *c, double t, long long answered)
{
    if (nsamples >= MAX_SAMPLES)
        return;
    sample *s = &samples[nsamples++];
    s->t = t;
    s->mem = used_memory(c);
    s->stream_mem = int_of(c, "MEMORY USAGE " KEY " SAMPLES 0");
    s->xlen = int_of(c, "XLEN " KEY);
    s->pending = pending(c);
    s->consumers = consumers(c, 0, NULL);
    s->done = done_keys(c);
    s->dbsize = int_of(c, "DBSIZE");
    s->answered = answered;
}

/* Maximum of the field at offset off over the samples with from <= t < to. */
static long long max_over(size_t off, double from, double to)
{
    long long m = 0;
    for (int i = 0; i < nsamples; i++) {
        long long v = *(const long long *)((const char *)&samples[i] + off);
        if (samples[i].t >= from && samples[i].t < to && v > m)
            m = v;
    }
    return m;
}
#define MAX_OVER(field, from, to) max_over(offsetof(sample, field), from, to)

/* An entry acknowledged and never deleted, as a replica lost between its XACK
 * and its XDEL leaves it, read by consumer "lost". */
static const char LEAK_LUA[] =
    "local id = redis.call('XADD', KEYS[1], '*', 'req', ARGV[1], 'deadline', '1')\n"
    "redis.call('XREADGROUP', 'GROUP', 'daebus', 'lost', 'COUNT', '1', 'STREAMS', KEYS[1], '>')\n"
    "return redis.call('XACK', KEYS[1], 'daebus', id)\n";

static long long answered_of(load **l)
{
    long long n = 0;
    for (int k = 0; k < NCALLERS; k++)
        n += atomic_load(&l[k]->ok) + atomic_load(&l[k]->failed);
    return n;
}

static void test_soak(void)
{
    redisContext *c = raw();
    CU_ASSERT_FATAL(c != NULL);
    start(0);
    start(1);
    load *l[NCALLERS];
    for (int k = 0; k < NCALLERS; k++)
        l[k] = load_start();
    double t0 = ts_now(), next_sample = t0 + 1, next_restart = t0 + RESTART_MS / 1000.0;
    int restarts = 0;
    while (ts_now() < t0 + duration) {
        if (ts_now() >= next_restart) {
            int i = restarts++ % 2;
            reap(i, SIGKILL);
            ts_sleep_ms(200);
            start(i);
            next_restart += RESTART_MS / 1000.0;
        }
        if (ts_now() >= next_sample) {
            take_sample(c, ts_now() - t0, answered_of(l));
            next_sample += 1;
        }
        ts_sleep_ms(20);
    }
    for (int k = 0; k < NCALLERS; k++)
        load_stop(l[k]);
    long long sent = 0, ok = 0, failed = 0;
    for (int k = 0; k < NCALLERS; k++)
        TS_WAIT_UNTIL(atomic_load(&l[k]->inflight) == 0, TIMEOUT_S + 2);
    for (int k = 0; k < NCALLERS; k++) {
        sent += atomic_load(&l[k]->sent);
        ok += atomic_load(&l[k]->ok);
        failed += atomic_load(&l[k]->failed);
    }
    double secs = ts_now() - t0;
    printf("\n  %lld durable requests in %.1f s (%.0f/s), %d restarts (kill -9), %lld failed\n",
           sent, secs, (double)ok / duration, restarts, failed);
    printf("  %5s %10s %10s %6s %7s %9s %8s %7s %8s\n", "t", "used_mem", "stream_mem", "xlen",
           "pending", "consumers", "done", "dbsize", "answered");
    for (int i = 0; i < nsamples; i++) {
        const sample *s = &samples[i];
        printf("  %5.1f %10lld %10lld %6lld %7lld %9lld %8lld %7lld %8lld\n", s->t, s->mem,
               s->stream_mem, s->xlen, s->pending, s->consumers, s->done, s->dbsize, s->answered);
    }
    CU_ASSERT(sent > 0);
    CU_ASSERT_EQUAL(ok, sent);
    CU_ASSERT_EQUAL(failed, 0);

    /* Plateau: after the warm-up (the done records live time-out + margin),
     * the second half holds no more than the first half. */
    double warm = TIMEOUT_S + atof(DONE_TTL_S) + 2;
    if (warm > duration * 0.4) /* the short variant: done records still filling up */
        warm = duration * 0.4;
    double half = warm + (duration - warm) / 2;
    long long mem_a = MAX_OVER(mem, warm, half), mem_b = MAX_OVER(mem, half, duration + 1);
    long long str_a = MAX_OVER(stream_mem, warm, half);
    long long str_b = MAX_OVER(stream_mem, half, duration + 1);
    long long done_a = MAX_OVER(done, warm, half), done_b = MAX_OVER(done, half, duration + 1);
    long long db_a = MAX_OVER(dbsize, warm, half), db_b = MAX_OVER(dbsize, half, duration + 1);
    long long cons = MAX_OVER(consumers, 0, duration + 1);
    printf("  max first half / second half: used_memory %lld / %lld, stream %lld / %lld, "
           "done %lld / %lld, dbsize %lld / %lld; consumers at most %lld\n",
           mem_a, mem_b, str_a, str_b, done_a, done_b, db_a, db_b, cons);
    /* The highest answer rate over 3 s: the done records are at most that
     * many per second of their life (time-out + margin, + 1 s of EX rounding). */
    double peak = 0;
    for (int i = 3; i < nsamples; i++) {
        double rate = (double)(samples[i].answered - samples[i - 3].answered) /
                      (samples[i].t - samples[i - 3].t);
        if (rate > peak)
            peak = rate;
    }
    printf("  peak rate %.0f/s: done records expected at most %.0f\n", peak,
           peak * (TIMEOUT_S + atof(DONE_TTL_S) + 1));
    CU_ASSERT(mem_a > 0 && str_a > 0);
    CU_ASSERT(done_b <= peak * (TIMEOUT_S + atof(DONE_TTL_S) + 1) + 500);
    /* The done records follow the rate (a loaded machine's rate varies by
     * more than half between the halves): everything else stays flat. The
     * keys are the done records and a few others; memory grows no more than
     * the done records do (each under 400 bytes with its kept reply). */
    long long more_done = done_b > done_a ? done_b - done_a : 0;
    CU_ASSERT(db_b <= done_b + 500);
    CU_ASSERT(mem_b <= mem_a + mem_a / 2 + 1024 * 1024 + more_done * 400);
    CU_ASSERT(str_b <= str_a + str_a / 2 + 64 * 1024);
    /* A dead consumer goes once idle 4 visibility periods (swept every 2):
     * the two live ones and those of the last few kills. */
    CU_ASSERT(cons <= 7);

    /* A lost XDEL: trimmed by the next sweep. */
    redisReply *r = redisCommand(c, "EVAL %s 1 %s %s", LEAK_LUA, KEY, "{}");
    CU_ASSERT(r && r->type == REDIS_REPLY_INTEGER && r->integer == 1);
    if (r)
        freeReplyObject(r);
    /* Everything answered: nothing left, the killed replicas' consumers and
     * "lost" deleted (idle 4 s, swept every 2 s). */
    TS_WAIT_UNTIL(int_of(c, "XLEN " KEY) == 0 && pending(c) == 0, 10);
    CU_ASSERT_EQUAL(int_of(c, "XLEN " KEY), 0);
    CU_ASSERT_EQUAL(pending(c), 0);
    TS_WAIT_UNTIL(consumers(c, 0, NULL) <= 2, 10);
    long long left = consumers(c, 0, NULL);
    printf("  after the load: XLEN %lld, pending %lld, consumers %lld (of %d starts)\n",
           int_of(c, "XLEN " KEY), pending(c), left, restarts + 2);
    CU_ASSERT(left <= 2);

    /* A clean stop: the replica deletes its own consumer. Make sure it has
     * one (it reads a request), then stop it before any sweep could. */
    cJSON *pl = cJSON_CreateObject();
    for (int k = 0; k < 4; k++)
        CU_ASSERT_EQUAL(daebus_caller_request(l[0]->caller, SVC, "echo", pl, TIMEOUT_S, NULL, NULL),
                        0);
    cJSON_Delete(pl);
    bool has0 = false, has1 = false;
    consumers(c, procs[0], &has0);
    consumers(c, procs[1], &has1);
    int which = has0 ? 0 : 1;
    pid_t pid = procs[which];
    CU_ASSERT(has0 || has1);
    reap(which, SIGTERM);
    bool still = true;
    consumers(c, pid, &still);
    printf("  clean stop of a replica with a consumer: consumer %s\n", still ? "kept" : "deleted");
    CU_ASSERT(!still);

    for (int k = 0; k < NCALLERS; k++)
        load_free(l[k]);
    reap(0, SIGTERM);
    reap(1, SIGTERM);
    redisFree(c);
}

/* No replica reported a sanitizer error (ASan/UBSan builds) in its log. */
static void test_logs_clean(void)
{
    CU_ASSERT(dur_log_clean(logpath));
}

static int init(void)
{
    snprintf(logpath, sizeof logpath, "/tmp/durable_soak_%ld.log", (long)getpid());
    return ts_redis_start(&redis, NULL);
}

static int cleanup(void)
{
    reap(0, SIGKILL);
    reap(1, SIGKILL);
    ts_redis_stop(&redis);
    dur_log_done(logpath);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        duration = atoi(argv[1]);
    if (duration < 10)
        duration = 10;
    if (duration > 100)
        duration = 100;
    signal(SIGPIPE, SIG_IGN);
    daebus_log_set_level(DAEBUS_LOG_ERROR);
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("durable soak", init, cleanup);
    CU_add_test(s, "steady load with replicas killed: memory bounded", test_soak);
    CU_add_test(s, "replica logs clean", test_logs_clean);
    return ts_run_cunit();
}
