/* sched_lease.c - leader leases of .single tasks and threads (docs/replicas.md).
 *
 * Each .single task or thread has a lease in Redis: the string key
 * daebus:<service>:lease:task:<name> (or lease:thread:<name>) holding the
 * holder's instance id, with a TTL of lease_ttl. One lease thread per
 * scheduler tries to take (SET NX PX) or renew (PEXPIRE if still ours) every
 * lease every lease_ttl / 3, in one small script per lease.
 *
 * Safety across a network cut: Redis expires the key no earlier than
 * lease_ttl after it received the last renewal, and the holder received the
 * reply after it sent the command, so the holder counts its lease valid only
 * until (monotonic time it SENT the last successful command) + lease_ttl -
 * margin (20 %: scheduling stalls, clock-rate differences, Redis's expiry). Every check
 * that lets work start (a run, daebus_thread_is_running()) compares that time
 * with the clock, so a lease thread blocked on a dead connection changes
 * nothing: the replica stops on its own before anyone else can take over.
 *
 * Periods: a run of a .single task starts only after a second script (run
 * check) confirms the holder, renews, and records the run's start (Redis
 * TIME, ms) in daebus:<service>:lease:task:<name>:last, refusing a run less
 * than 3/4 of an interval after the one recorded. That key outlives the
 * lease, so a replica taking over puts its grid on the last holder's: the
 * next run comes one interval after the last one, whoever ran it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "redis_pub.h"
#include "redis_url.h"
#include "sched_internal.h"

#define LEASE_MARGIN 0.2  /* of the TTL: validity ends at sent + ttl * (1 - margin) */
#define MIN_GAP      0.75 /* of the interval: the closest two recorded runs may be */

/* Takes (nobody holds it) or renews (we hold it). KEYS: lease, last run,
 * the service's lease hash; ARGV: id, ttl ms, field, ms to keep the hash.
 * The hash's field says from when (Redis time, ms) a lease taken anew may be
 * used: a key that is missing while the field is missing too means Redis lost
 * its data (a restart) or the lease was never taken, and a holder from before
 * may still believe in its lease for up to a TTL: the new one waits that long.
 * Returns {held 0/1, Redis time ms, last run ms or "", holder or false,
 * usable from ms}. */
static const char ACQUIRE_LUA[] =
    "redis.replicate_commands()\n"
    "local h = redis.call('GET', KEYS[1])\n"
    "local t = redis.call('TIME')\n"
    "local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"
    "local from = tonumber(redis.call('HGET', KEYS[3], ARGV[3]) or 0) or 0\n"
    "if not h then\n"
    "  if from == 0 then from = now + tonumber(ARGV[2])\n"
    "    redis.call('HSET', KEYS[3], ARGV[3], string.format('%.0f', from)) end\n"
    "  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) h = ARGV[1]\n"
    "elseif h == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end\n"
    "if h == ARGV[1] then redis.call('PEXPIRE', KEYS[3], ARGV[4]) end\n"
    "local last = redis.call('GET', KEYS[2])\n"
    "return {h == ARGV[1] and 1 or 0, now, last or '', h, from}\n";

/* A run check. KEYS: lease, last run; ARGV: id, ttl ms, minimum gap ms, ms to
 * keep the last run. Returns {0} (not the holder), {2, now, last} (too early)
 * or {1, now, last} (renewed and recorded: run). */
static const char RUN_LUA[] =
    "redis.replicate_commands()\n"
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {0} end\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "local t = redis.call('TIME')\n"
    "local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"
    "local last = tonumber(redis.call('GET', KEYS[2]) or 0) or 0\n"
    "if last > 0 and now - last < tonumber(ARGV[3]) then return {2, now, last} end\n"
    "redis.call('SET', KEYS[2], string.format('%.0f', now), 'PX', ARGV[4])\n"
    "return {1, now, last}\n";

/* Deletes the lease only if we hold it. KEYS: lease; ARGV: id. */
static const char RELEASE_LUA[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end\n"
    "return 0\n";

static const char *owner_kind(const sched_lease *l)
{
    return l->task ? "task" : "thread";
}

static const char *owner_name(const sched_lease *l)
{
    return l->task ? l->task->name : l->thread->name;
}

static long long to_ms(double seconds)
{
    return (long long)(seconds * 1000.0 + 0.5);
}

/* Runs one EVAL of script on the lease pool. Returns: 0 with *out set (an
 * array reply), or DAEBUS_ECONN (Redis unreachable, or it answered an error:
 * logged once). */
static int eval(daebus_scheduler *s, const char *script, const sched_lease *l, int nkeys,
                const char *const *args, int nargs, redisReply **out)
{
    const char *argv[12];
    size_t lens[12];
    int n = 0;
    argv[n++] = "EVAL";
    argv[n++] = script;
    argv[n++] = nkeys == 1 ? "1" : nkeys == 2 ? "2" : "3";
    const char *keys[3] = {l->key, l->last_key, s->lease_hash};
    for (int i = 0; i < nkeys && i < 3; i++)
        argv[n++] = keys[i];
    for (int i = 0; i < nargs && n < 12; i++)
        argv[n++] = args[i];
    for (int i = 0; i < n; i++)
        lens[i] = strlen(argv[i]);
    daebus__redis_cmd cmd = {n, argv, lens};
    redisReply *r = NULL;
    int rc = daebus__redis_pub_pipeline(s->lease_pub, &cmd, 1, &r);
    if (rc != 0)
        return DAEBUS_ECONN;
    if (r->type == REDIS_REPLY_ERROR) {
        static daebus__ratelimit rl;
        long quiet = daebus__ratelimit_pass(&rl, daebus__now_mono(), 60);
        if (quiet >= 0)
            daebus_log(DAEBUS_LOG_ERROR, LOGC, "lease script refused by Redis: %s", r->str);
        freeReplyObject(r);
        return DAEBUS_ECONN;
    }
    *out = r;
    return 0;
}

static long long elem_int(const redisReply *r, size_t i)
{
    if (r->type != REDIS_REPLY_ARRAY || i >= r->elements)
        return 0;
    const redisReply *e = r->element[i];
    if (e->type == REDIS_REPLY_INTEGER)
        return e->integer;
    if (e->type == REDIS_REPLY_STRING)
        return atoll(e->str);
    return 0;
}

/* One line per change of Redis reachability (lock held). */
static void note_redis_locked(daebus_scheduler *s, bool ok)
{
    if (ok == !s->lease_redis_down)
        return;
    s->lease_redis_down = !ok;
    if (ok)
        daebus_log(DAEBUS_LOG_INFO, LOGC, "leases: Redis reachable again");
    else
        daebus_log(DAEBUS_LOG_WARNING, LOGC,
                   "leases: Redis unreachable: .single tasks and threads stop on this replica "
                   "when their lease runs out, and run nowhere until Redis returns");
}

/* ---- taking over the schedule ---- */

/* A replica just took the lease of task t: its grid continues one interval
 * after the last run recorded in Redis (last_ms, Redis time; the mapping
 * errs late by up to one round trip). Lock held. */
static void adopt_schedule_locked(daebus_scheduler *s, daebus_task *t, long long last_ms,
                                  long long redis_now_ms, double recv)
{
    if (last_ms <= 0 || t->paused || !daebus__heap_contains(&t->he))
        return;
    double next = recv + (double)(last_ms - redis_now_ms) / 1000.0 + t->interval;
    if (next < recv)
        next = recv;
    t->anchor = next;
    t->k = 0;
    daebus__heap_set_due(&s->heap, &t->he, next);
    pthread_cond_signal(&s->timer_cond);
}

/* ---- the lease thread ---- */

static void lease_lost_locked(daebus_scheduler *s, sched_lease *l, const char *why)
{
    l->until = 0;
    l->term_started = false;
    if (!l->held)
        return;
    l->held = false;
    s->lease_lost++;
    daebus_log(DAEBUS_LOG_WARNING, LOGC, "lease of %s \"%s\" lost (%s): it stops on this replica",
               owner_kind(l), owner_name(l), why);
}

/* Extends the validity to sent + ttl - margin (never shortens it). */
static void extend_locked(daebus_scheduler *s, sched_lease *l, double sent)
{
    double until = sent + s->lease_ttl * (1.0 - LEASE_MARGIN);
    if (until > l->until)
        l->until = until;
}

static void lease_got_locked(daebus_scheduler *s, sched_lease *l, double sent, double recv,
                             const redisReply *r)
{
    if (l->held && l->until <= sent)
        lease_lost_locked(s, l, "not renewed in time");
    long long redis_now = elem_int(r, 1);
    l->from = recv + (double)(elem_int(r, 4) - redis_now) / 1000.0;
    if (l->from > recv)
        l->term_started = false; /* Redis lost the lease: a new term begins at from */
    extend_locked(s, l, sent);
    if (l->held)
        return;
    l->stuck_logged = false;
    l->held = true;
    s->lease_acquired++;
    long long last = elem_int(r, 2);
    if (l->from > recv)
        daebus_log(DAEBUS_LOG_INFO, LOGC,
                   "lease of %s \"%s\" taken anew (first time, or Redis lost its data): it runs "
                   "on this replica in %.3f s, when any earlier holder has stopped",
                   owner_kind(l), owner_name(l), l->from - recv);
    else
        daebus_log(DAEBUS_LOG_INFO, LOGC, "lease of %s \"%s\" taken: it runs on this replica",
                   owner_kind(l), owner_name(l));
    if (l->task)
        adopt_schedule_locked(s, l->task, last, redis_now, recv);
}

/* Takes or renews one lease. Lock not held. */
static void lease_tick(daebus_scheduler *s, sched_lease *l, const char *id, const char *ttl)
{
    redisReply *r = NULL;
    double sent = daebus__now_mono();
    int rc = eval(s, ACQUIRE_LUA, l, 3, (const char *[]){id, ttl, l->field, "86400000"}, 4, &r);
    double recv = daebus__now_mono();
    daebus__mutex_lock(&s->lock);
    note_redis_locked(s, rc == 0);
    if (rc != 0) {
        s->lease_errors++;
        if (l->held && l->until <= recv)
            lease_lost_locked(s, l, "not renewed in time: Redis unreachable");
    } else if (elem_int(r, 0) == 1) {
        lease_got_locked(s, l, sent, recv, r);
    } else {
        lease_lost_locked(s, l, "another replica holds it");
    }
    daebus__mutex_unlock(&s->lock);
    if (r)
        freeReplyObject(r);
}

/* After a round (lock held): starts the .single threads whose lease is held,
 * and logs those still running without one. */
static void threads_follow_leases_locked(daebus_scheduler *s, double now)
{
    for (size_t i = 0; i < s->nleases; i++) {
        sched_lease *l = s->leases[i];
        daebus_thread *t = l->thread;
        if (!t)
            continue;
        daebus__sched_reap_thread_locked(t);
        if (!sched_lease_ok(l, now))
            l->term_started = false; /* the next valid moment starts a new term */
        if (sched_lease_ok(l, now) && t->state != THR_RUNNING && s->state == ST_RUNNING &&
            !l->term_started) {
            /* once per term: a thread that returned while leader stays returned */
            l->term_started = daebus__sched_start_thread_locked(s, t) == 0;
        } else if (!sched_lease_ok(l, now) && t->state == THR_RUNNING && !l->stuck_logged) {
            l->stuck_logged = true;
            daebus_log(DAEBUS_LOG_ERROR, LOGC,
                       "thread \"%s\" still runs after its lease ended: it must return when "
                       "daebus_thread_is_running() turns false, or another replica may run it "
                       "at the same time",
                       t->name);
        }
    }
}

static void *lease_main(void *arg)
{
    daebus_scheduler *s = arg;
    const char *id = daebus_app_instance_id(s->app);
    char ttl[32];
    snprintf(ttl, sizeof ttl, "%lld", to_ms(s->lease_ttl));
    double period = s->lease_ttl / 3.0;
    daebus__mutex_lock(&s->lock);
    while (!s->lease_stop) {
        daebus__mutex_unlock(&s->lock);
        double round = daebus__now_mono();
        for (size_t i = 0; i < s->nleases && !atomic_load(&s->stopping); i++)
            lease_tick(s, s->leases[i], id, ttl);
        daebus__mutex_lock(&s->lock);
        threads_follow_leases_locked(s, daebus__now_mono());
        daebus__deadline d = {round + period};
        while (!s->lease_stop && !daebus__deadline_passed(d))
            daebus__cond_wait_until(&s->lease_cond, &s->lock, d);
    }
    daebus__mutex_unlock(&s->lock);
    return NULL;
}

/* ---- start and stop ---- */

static char *make_key(const char *service, const char *kind, const char *name, const char *suffix)
{
    size_t n = strlen(service) + strlen(kind) + strlen(name) + strlen(suffix) + 32;
    char *k = malloc(n);
    if (k)
        snprintf(k, n, "daebus:%s:lease:%s:%s%s", service, kind, name, suffix);
    return k;
}

static int collect_locked(daebus_scheduler *s, size_t n)
{
    s->leases = n ? calloc(n, sizeof *s->leases) : NULL;
    if (n && !s->leases)
        return DAEBUS_ENOMEM;
    s->nleases = 0;
    for (daebus_task *t = s->tasks; t; t = t->next)
        if (t->lease.single) {
            t->lease.task = t;
            s->leases[s->nleases++] = &t->lease;
        }
    for (daebus_thread *t = s->threads; t; t = t->next)
        if (t->lease.single) {
            t->lease.thread = t;
            s->leases[s->nleases++] = &t->lease;
        }
    const char *service = daebus_app_service(s->app);
    for (size_t i = 0; i < s->nleases; i++) {
        sched_lease *l = s->leases[i];
        l->until = l->from = 0;
        l->held = l->stuck_logged = l->term_started = false;
        if (!l->key)
            l->key = make_key(service, owner_kind(l), owner_name(l), "");
        if (!l->last_key)
            l->last_key = make_key(service, owner_kind(l), owner_name(l), ":last");
        size_t flen = strlen(owner_name(l)) + 8;
        if (!l->field && (l->field = malloc(flen)) != NULL)
            snprintf(l->field, flen, "%s:%s", owner_kind(l), owner_name(l));
        if (!l->key || !l->last_key || !l->field)
            return DAEBUS_ENOMEM;
    }
    if (!s->lease_hash) {
        size_t len = strlen(service) + 16;
        if ((s->lease_hash = malloc(len)) == NULL)
            return DAEBUS_ENOMEM;
        snprintf(s->lease_hash, len, "daebus:%s:leases", service);
    }
    return 0;
}

static int open_pool_locked(daebus_scheduler *s)
{
    daebus__redis_url url;
    daebus_error err = {0};
    if (daebus__redis_url_parse(daebus_app_redis_url(s->app), &url, &err) != 0) {
        daebus_log(DAEBUS_LOG_ERROR, LOGC, "leases: %s", err.message);
        return DAEBUS_EINVAL;
    }
    /* A command may take up to half a TTL (a loaded host answers late; safety
     * does not depend on it: validity counts from when a command was sent). */
    double half = s->lease_ttl / 2.0, step = s->lease_ttl / 3.0;
    daebus__redis_pub_opts o = {
        .url = &url,
        .connections = 2,
        .connect_timeout = half < 1.0 ? half : 1.0,
        .command_timeout = half < 2.0 ? half : 2.0,
        .retry_after = step / 2.0,
        .log_component = LOGC,
    };
    s->lease_pub = daebus__redis_pub_create(&o);
    return s->lease_pub ? 0 : DAEBUS_ENOMEM;
}

int daebus__sched_lease_start_locked(daebus_scheduler *s)
{
    size_t n = 0;
    for (daebus_task *t = s->tasks; t; t = t->next)
        n += t->lease.single;
    for (daebus_thread *t = s->threads; t; t = t->next) {
        if (t->lease.single && !t->auto_start) {
            daebus_log(DAEBUS_LOG_ERROR, LOGC,
                       "thread \"%s\": .single and .no_auto_start cannot be combined (a "
                       ".single thread is started by its lease)",
                       t->name);
            return DAEBUS_EINVAL;
        }
        n += t->lease.single;
    }
    s->lease_stop = false;
    s->lease_redis_down = false;
    if (n == 0)
        return 0;
    int rc = collect_locked(s, n);
    if (rc)
        return rc;
    bool cluster = daebus__app_component(s->app, DAEBUS__COMP_BUS) != NULL;
    for (size_t i = 0; i < s->nleases; i++)
        s->leases[i]->on = cluster;
    if (!cluster) {
        daebus_log(DAEBUS_LOG_WARNING, LOGC,
                   "%zu .single task(s)/thread(s) run as ordinary ones: the app has no bus, so "
                   "there is no cluster to share them with",
                   n);
        return 0;
    }
    if ((rc = open_pool_locked(s)) != 0)
        return rc;
    if (pthread_create(&s->lease_tid, NULL, lease_main, s) != 0) {
        daebus__redis_pub_destroy(s->lease_pub);
        s->lease_pub = NULL;
        daebus_log(DAEBUS_LOG_ERROR, LOGC, "cannot start the lease thread");
        return DAEBUS_EIO;
    }
    s->lease_started = true;
    daebus_log(DAEBUS_LOG_INFO, LOGC, "%zu leader lease(s), ttl %.3g s, renewed every %.3g s", n,
               s->lease_ttl, s->lease_ttl / 3.0);
    return 0;
}

/* May l be released (its owner no longer runs)? Lock held. */
static bool releasable_locked(const sched_lease *l, double now)
{
    if (!l->on || !l->held || l->until <= now)
        return false;
    if (l->task)
        return !l->task->in_fn && !l->task->busy;
    return l->thread->state != THR_RUNNING;
}

void daebus__sched_lease_stop(daebus_scheduler *s)
{
    daebus__mutex_lock(&s->lock);
    bool started = s->lease_started;
    s->lease_stop = true;
    pthread_cond_broadcast(&s->lease_cond);
    daebus__mutex_unlock(&s->lock);
    if (started)
        pthread_join(s->lease_tid, NULL);
    const char *id = s->app ? daebus_app_instance_id(s->app) : NULL;
    size_t released = 0;
    for (size_t i = 0; s->lease_pub && i < s->nleases; i++) {
        sched_lease *l = s->leases[i];
        daebus__mutex_lock(&s->lock);
        bool release = releasable_locked(l, daebus__now_mono());
        l->until = 0;
        l->held = false;
        daebus__mutex_unlock(&s->lock);
        redisReply *r = NULL;
        if (release && eval(s, RELEASE_LUA, l, 1, (const char *[]){id}, 1, &r) == 0) {
            released++;
            freeReplyObject(r);
        }
    }
    if (released)
        daebus_log(DAEBUS_LOG_INFO, LOGC, "released %zu leader lease(s)", released);
    daebus__mutex_lock(&s->lock);
    s->lease_started = false;
    /* A straggling run may still be in its run check: keep the pool for
     * destroy, which frees it only once nothing runs. */
    daebus__redis_pub *pub = s->inflight == 0 ? s->lease_pub : NULL;
    if (pub)
        s->lease_pub = NULL;
    free(s->leases);
    s->leases = NULL;
    s->nleases = 0;
    daebus__mutex_unlock(&s->lock);
    daebus__redis_pub_destroy(pub);
}

/* ---- runs ---- */

bool daebus__sched_lease_run_check(daebus_task *t, double interval, bool trig)
{
    daebus_scheduler *s = t->s;
    sched_lease *l = &t->lease;
    double sent = daebus__now_mono();
    daebus__mutex_lock(&s->lock);
    bool ok = sched_lease_ok(l, sent);
    bool need_redis = ok && l->on;
    if (!ok)
        s->single_refused++;
    daebus__mutex_unlock(&s->lock);
    if (!need_redis)
        return ok;

    char ttl[32], gap[32], keep[32];
    snprintf(ttl, sizeof ttl, "%lld", to_ms(s->lease_ttl));
    snprintf(gap, sizeof gap, "%lld", trig ? 0LL : to_ms(interval * MIN_GAP));
    snprintf(keep, sizeof keep, "%lld", to_ms(2 * interval + s->lease_ttl));
    const char *id = daebus_app_instance_id(s->app);
    redisReply *r = NULL;
    int rc = eval(s, RUN_LUA, l, 2, (const char *[]){id, ttl, gap, keep}, 4, &r);
    long long verdict = rc == 0 ? elem_int(r, 0) : -1;
    daebus__mutex_lock(&s->lock);
    if (rc != 0)
        s->lease_errors++;
    if (verdict == 1 && l->until > 0)
        extend_locked(s, l, sent);
    else if (verdict == 0)
        lease_lost_locked(s, l, "another replica holds it");
    ok = verdict == 1 && sched_lease_ok(l, daebus__now_mono());
    if (!ok)
        s->single_refused++;
    daebus__mutex_unlock(&s->lock);
    if (verdict == 2)
        DAEBUS_LOG_DEBUGF(LOGC, "task \"%s\": run skipped, the period already ran %lld ms ago",
                          t->name, elem_int(r, 1) - elem_int(r, 2));
    if (r)
        freeReplyObject(r);
    return ok;
}

static void lease_free(sched_lease *l)
{
    free(l->key);
    free(l->last_key);
    free(l->field);
    l->key = l->last_key = l->field = NULL;
}

void daebus__sched_lease_destroy(daebus_scheduler *s)
{
    for (daebus_task *t = s->tasks; t; t = t->next)
        lease_free(&t->lease);
    for (daebus_thread *t = s->threads; t; t = t->next)
        lease_free(&t->lease);
    free(s->lease_hash);
    s->lease_hash = NULL;
    daebus__redis_pub_destroy(s->lease_pub);
    s->lease_pub = NULL;
}

/* ---- public ---- */

/* Is l valid now? Takes the lock. */
static bool lease_ok_now(daebus_scheduler *s, const sched_lease *l)
{
    daebus__mutex_lock(&s->lock);
    bool ok = sched_lease_ok(l, daebus__now_mono());
    daebus__mutex_unlock(&s->lock);
    return ok;
}

bool daebus_task_is_leader(const daebus_task *t)
{
    return t && lease_ok_now(t->s, &t->lease);
}

bool daebus_thread_is_leader(const daebus_thread *t)
{
    return t && lease_ok_now(t->s, &t->lease);
}

int daebus_task_set_single(daebus_task *t, bool single)
{
    if (!t)
        return DAEBUS_EINVAL;
    daebus_scheduler *s = t->s;
    daebus__mutex_lock(&s->lock);
    int rc = 0;
    if (s->state == ST_RUNNING || s->state == ST_STOPPING)
        rc = DAEBUS_ESTATE;
    else if (t->from_blueprint)
        rc = DAEBUS_EINVAL;
    else
        t->lease.single = single;
    daebus__mutex_unlock(&s->lock);
    if (rc)
        daebus_log(DAEBUS_LOG_ERROR, LOGC, "daebus_task_set_single(\"%s\"): %s", t->name,
                   rc == DAEBUS_ESTATE ? "only before the scheduler starts"
                                       : "a blueprint's task takes the .single option instead");
    return rc;
}
