/* cluster.c - the instances of a service in Redis (see cluster.h). */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "daebus/log.h"
#include "check.h"
#include "clock.h"
#include "cluster_internal.h"

#define LOGC       DAEBUS__CLUSTER_LOGC
#define MAX_LISTED 1024 /* members read per refresh */
#define MAX_PIPE   DAEBUS__CLUSTER_MAX_PIPE

typedef daebus__cluster_cmd cmdbuf;

/* ---- ids ---- */

static void clean_host(char *out, size_t len)
{
    char h[256] = "";
    if (gethostname(h, sizeof h - 1) != 0 || !h[0])
        snprintf(h, sizeof h, "host");
    size_t i = 0;
    for (; h[i] && i + 1 < len && i < 64; i++) {
        char ch = h[i];
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                 ch == '.' || ch == '_';
        out[i] = ok ? ch : '_';
    }
    out[i] = '\0';
}

static unsigned random32(void)
{
    unsigned v = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (read(fd, &v, sizeof v) != (ssize_t)sizeof v)
            v = 0;
        close(fd);
    }
    if (!v) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        v = (unsigned)ts.tv_nsec ^ ((unsigned)getpid() << 16);
    }
    return v;
}

void daebus__cluster_make_id(char *buf, size_t len)
{
    char host[72];
    clean_host(host, sizeof host);
    snprintf(buf, len, "%s-%ld-%08x", host, (long)getpid(), random32());
}

/* ---- Redis commands ---- */

void daebus__cluster_cmd_set(daebus__cluster_cmd *b, int argc, const char *const *args)
{
    for (int i = 0; i < argc; i++) {
        b->argv[i] = args[i];
        b->len[i] = strlen(args[i]);
    }
    b->cmd = (daebus__redis_cmd){argc, b->argv, b->len};
}

int daebus__cluster_run(daebus__cluster *c, daebus__cluster_cmd *b, int n, redisReply **keep)
{
    daebus__redis_cmd cmds[MAX_PIPE] = {{0, NULL, NULL}};
    redisReply *r[MAX_PIPE] = {NULL};
    if (n > MAX_PIPE)
        return DAEBUS_EINVAL;
    for (int i = 0; i < n; i++)
        cmds[i] = b[i].cmd;
    int rc = daebus__redis_pub_pipeline(c->pub, cmds, n, r);
    for (int i = 0; rc == 0 && i < n; i++)
        if (r[i]->type == REDIS_REPLY_ERROR) {
            DAEBUS_LOG_DEBUGF(LOGC, "Redis said: %s", r[i]->str);
            rc = DAEBUS_ECONN;
        }
    for (int i = 0; i < n; i++) {
        if (keep && rc == 0)
            keep[i] = r[i];
        else if (r[i])
            freeReplyObject(r[i]);
    }
    return rc;
}

long long daebus__cluster_now_ms(void)
{
    return (long long)(daebus__now_mono() * 1000.0);
}

/* Redis's clock in ms (one clock for every host). Returns: 0 or a code. */
static int redis_time_ms(daebus__cluster *c, long long *out)
{
    cmdbuf b;
    daebus__cluster_cmd_set(&b, 1, (const char *[]){"TIME"});
    redisReply *r = NULL;
    int rc = daebus__cluster_run(c, &b, 1, &r);
    if (rc != 0)
        return rc;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
        freeReplyObject(r);
        return DAEBUS_ECONN;
    }
    *out = atoll(r->element[0]->str) * 1000 + atoll(r->element[1]->str) / 1000;
    freeReplyObject(r);
    return 0;
}

/* ---- announce ---- */

/* The join this tick publishes (generation 0: none), with its payload and the
 * key of the epoch it opens. */
typedef struct join_msg {
    unsigned long long gen;
    char payload[160];
    char fence[600];
} join_msg;

static void make_join(daebus__cluster *c, join_msg *j, long long sent_ms)
{
    j->gen = 0;
    if (!c->exactly_once)
        return;
    unsigned long long want = atomic_load(&c->join_wanted);
    if (want <= atomic_load(&c->join_sent))
        return;
    j->gen = want;
    snprintf(j->payload, sizeof j->payload, "join %s %llu %lld", c->id, want, sent_ms);
    daebus__cluster_fence_key(c, daebus__cluster_epoch_of(j->payload), j->fence, sizeof j->fence);
}

/* An announce that started at t0 reached Redis. It keeps this instance
 * handling only if it came back within the limit of the one before (or
 * came with a join): past it, the others may have dropped this instance
 * and gone solo meanwhile, unseen by the gate if no message arrived. Then
 * the proof stays old, so the gate and claims refuse until a join comes
 * back (asked for here). */
static void announced_at(daebus__cluster *c, long long t0, bool join)
{
    if (!c->exactly_once) {
        atomic_store(&c->announce_ok_ms, t0);
        return;
    }
    long long prev = atomic_load(&c->announce_ok_ms), echo = atomic_load(&c->echo_ok_ms);
    if (echo > prev)
        prev = echo;
    if (join || prev == 0 || daebus__cluster_now_ms() - prev <= c->announce_limit_ms) {
        atomic_store(&c->announce_ok_ms, t0);
        return;
    }
    DAEBUS_LOG_WARNF(LOGC,
                     "instance %s: %lld ms without an announce reaching Redis: it joins again "
                     "before it handles more messages",
                     c->id, daebus__cluster_now_ms() - prev);
    daebus__cluster_request_join(c);
}

/* Announces this instance; with a join wanted, opens its epoch (the epoch's
 * key) and publishes the join on the same connection, after the announce:
 * whoever sees the join can read the announce. t0: monotonic ms taken before
 * now was read from Redis. */
static int announce(daebus__cluster *c, long long now, long long t0)
{
    char pid[24], started[32], seen[32], port[16], hb[24], win[24], score[32], ttl[24];
    char fttl[24], cur[600];
    snprintf(pid, sizeof pid, "%d", c->pid);
    snprintf(started, sizeof started, "%lld", c->started_ms);
    snprintf(seen, sizeof seen, "%lld", now);
    snprintf(port, sizeof port, "%d", c->http_port);
    snprintf(hb, sizeof hb, "%lld", (long long)(c->heartbeat * 1000 + 0.5));
    snprintf(win, sizeof win, "%lld", c->window_ms);
    snprintf(score, sizeof score, "%lld", now + c->window_ms);
    snprintf(ttl, sizeof ttl, "%lld", c->set_ttl_ms);
    snprintf(fttl, sizeof fttl, "%lld", c->fence_ttl_ms);
    cmdbuf b[7];
    int n = 4;
    daebus__cluster_cmd_set(&b[0], 16,
                            (const char *[]){"HSET", c->key, "id", c->id, "host", c->host, "pid",
                                             pid, "started_at", started, "last_seen", seen,
                                             "http_port", port, "heartbeat_ms", hb});
    daebus__cluster_cmd_set(&b[1], 3, (const char *[]){"PEXPIRE", c->key, win});
    daebus__cluster_cmd_set(&b[2], 4, (const char *[]){"ZADD", c->set_key, score, c->id});
    daebus__cluster_cmd_set(&b[3], 3, (const char *[]){"PEXPIRE", c->set_key, ttl});
    unsigned long long epoch = atomic_load(&c->epoch);
    if (c->exactly_once && epoch) { /* keeps the current epoch's key alive (never recreates it) */
        daebus__cluster_fence_key(c, epoch, cur, sizeof cur);
        daebus__cluster_cmd_set(&b[n++], 3, (const char *[]){"PEXPIRE", cur, fttl});
    }
    join_msg j;
    make_join(c, &j, daebus__cluster_now_ms());
    if (j.gen) {
        daebus__cluster_cmd_set(&b[n++], 5, (const char *[]){"SET", j.fence, c->id, "PX", fttl});
        daebus__cluster_cmd_set(&b[n++], 3, (const char *[]){"PUBLISH", c->channel, j.payload});
    }
    int rc = daebus__cluster_run(c, b, n, NULL);
    if (rc == 0) {
        if (j.gen)
            atomic_store(&c->join_sent, j.gen);
        announced_at(c, t0, j.gen != 0);
    }
    return rc;
}

/* ---- the view ---- */

static const char *field(const redisReply *h, const char *name)
{
    for (size_t i = 0; h->type == REDIS_REPLY_ARRAY && i + 1 < h->elements; i += 2)
        if (h->element[i]->type == REDIS_REPLY_STRING && strcmp(h->element[i]->str, name) == 0)
            return h->element[i + 1]->type == REDIS_REPLY_STRING ? h->element[i + 1]->str : NULL;
    return NULL;
}

/* One entry of the view from an HGETALL reply; NULL when the hash is gone. */
static cJSON *entry_from(const daebus__cluster *c, const redisReply *h)
{
    const char *id = field(h, "id");
    if (!id)
        return NULL;
    const char *host = field(h, "host"), *pid = field(h, "pid"), *st = field(h, "started_at"),
               *seen = field(h, "last_seen"), *port = field(h, "http_port"),
               *hb = field(h, "heartbeat_ms");
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "host", host ? host : "");
    cJSON_AddNumberToObject(o, "pid", pid ? atof(pid) : 0);
    cJSON_AddNumberToObject(o, "started_at", st ? atof(st) / 1000.0 : 0);
    cJSON_AddNumberToObject(o, "last_seen", seen ? atof(seen) / 1000.0 : 0);
    cJSON_AddNumberToObject(o, "http_port", port ? atof(port) : 0);
    cJSON_AddNumberToObject(o, "heartbeat", hb ? atof(hb) / 1000.0 : 0);
    cJSON_AddBoolToObject(o, "self", strcmp(id, c->id) == 0);
    return o;
}

/* Reads the hashes of the members listed in ids (a ZRANGE reply), MAX_PIPE
 * per round trip. */
static cJSON *read_hashes(daebus__cluster *c, const redisReply *ids, int *rc)
{
    cJSON *arr = cJSON_CreateArray();
    size_t n = ids->elements < MAX_LISTED ? ids->elements : MAX_LISTED;
    for (size_t i = 0; arr && i < n && *rc == 0; i += MAX_PIPE) {
        int k = n - i < MAX_PIPE ? (int)(n - i) : MAX_PIPE;
        char keys[MAX_PIPE][512];
        cmdbuf b[MAX_PIPE];
        redisReply *h[MAX_PIPE];
        for (int j = 0; j < k; j++) {
            snprintf(keys[j], sizeof keys[j], "daebus:%s:instance:%s", c->service,
                     ids->element[i + (size_t)j]->str);
            daebus__cluster_cmd_set(&b[j], 2, (const char *[]){"HGETALL", keys[j]});
        }
        *rc = daebus__cluster_run(c, b, k, h);
        for (int j = 0; *rc == 0 && j < k; j++) {
            cJSON *e = entry_from(c, h[j]);
            freeReplyObject(h[j]);
            if (e)
                cJSON_AddItemToArray(arr, e);
        }
    }
    return arr;
}

/* Is the ZRANGE reply r this instance alone? */
bool daebus__cluster_alone_in(const daebus__cluster *c, const redisReply *r)
{
    return r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
           r->element[0]->type == REDIS_REPLY_STRING && strcmp(r->element[0]->str, c->id) == 0;
}

/* This instance's rank among the ids of the ZRANGE reply r, by name (the
 * same order on every instance): size << 32 | rank, 0 when it is absent. */
unsigned long long daebus__cluster_rank_in(const daebus__cluster *c, const redisReply *r)
{
    unsigned long long rank = 0, size = 0;
    bool found = false;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        if (r->element[i]->type != REDIS_REPLY_STRING)
            continue;
        int cmp = strcmp(r->element[i]->str, c->id);
        size++;
        rank += cmp < 0;
        found = found || cmp == 0;
    }
    return found && size < 0xffffffffu ? size << 32 | rank : 0;
}

/* Prunes the ended windows and reads the live instances. With exactly once,
 * a marker published first on the same connection tells the subscriber where
 * in its stream this read happened: from that marker on, an instance that
 * read itself alone handles without claims (cluster_gate.c). */
static int read_view(daebus__cluster *c, long long now, cJSON **out)
{
    char bound[32], marker[160];
    snprintf(bound, sizeof bound, "(%lld", now);
    unsigned long long n = ++c->marker_n;
    snprintf(marker, sizeof marker, "view %s %llu %lld", c->id, n, daebus__cluster_now_ms());
    cmdbuf b[3];
    int k = 0;
    if (c->exactly_once)
        daebus__cluster_cmd_set(&b[k++], 3, (const char *[]){"PUBLISH", c->channel, marker});
    daebus__cluster_cmd_set(&b[k++], 4,
                            (const char *[]){"ZREMRANGEBYSCORE", c->set_key, "-inf", bound});
    daebus__cluster_cmd_set(&b[k++], 4, (const char *[]){"ZRANGE", c->set_key, "0", "-1"});
    redisReply *r[3] = {NULL, NULL, NULL};
    int rc = daebus__cluster_run(c, b, k, r);
    if (rc != 0)
        return rc;
    const redisReply *ids = r[k - 1];
    if (c->exactly_once) {
        atomic_store(&c->order, daebus__cluster_rank_in(c, ids));
        atomic_store(&c->results[n % DAEBUS__CLUSTER_RING],
                     n << 1 | (daebus__cluster_alone_in(c, ids) ? 1u : 0u));
    }
    cJSON *arr = ids->type == REDIS_REPLY_ARRAY ? read_hashes(c, ids, &rc) : NULL;
    for (int i = 0; i < k; i++)
        freeReplyObject(r[i]);
    if (c->exactly_once) {
        pthread_mutex_lock(&c->lock); /* daebus__cluster_wait_ready may wait for a first result */
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->lock);
    }
    if (rc != 0 || !arr) {
        cJSON_Delete(arr);
        return rc ? rc : DAEBUS_ENOMEM;
    }
    *out = arr;
    return 0;
}

/* ---- the heartbeat thread ---- */

/* One log line per change of the link to Redis. */
static void link_changed(daebus__cluster *c, bool ok, int count)
{
    daebus__cluster_link now = ok ? LINK_UP : LINK_DOWN;
    if (now == c->link)
        return;
    if (ok && c->link == LINK_DOWN)
        DAEBUS_LOG_INFOF(LOGC, "Redis reachable again: instance %s announced (%d live)", c->id,
                         count);
    else if (ok)
        DAEBUS_LOG_DEBUGF(LOGC, "instance %s announced (%d live)", c->id, count);
    else
        DAEBUS_LOG_WARNF(LOGC,
                         "instance %s cannot reach Redis: the view of %d instance(s) is kept, "
                         "marked stale, until Redis returns",
                         c->id, count);
    c->link = now;
}

static bool has_self(const cJSON *view)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, view)
    {
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "self")))
            return true;
    }
    return false;
}

/* One tick: announce (when beat is set) and refresh the view. */
static void tick(daebus__cluster *c, bool beat)
{
    long long now = 0, t0 = daebus__cluster_now_ms();
    cJSON *view = NULL;
    int rc = redis_time_ms(c, &now);
    /* The claim line connects here (before a join goes out, and again after
     * Redis came back) rather than at a worker's first claim: a primary's
     * markers go on it, and a marker not sent turns its batch into claims. */
    if (rc == 0 && c->exactly_once)
        daebus__redis_line_repair(c->line);
    bool join = c->exactly_once && atomic_load(&c->join_wanted) > atomic_load(&c->join_sent);
    /* With exactly once, every tick: an instance whose announces fail for 2
     * heartbeats stops handling (cluster_gate.c), so one late tick must not
     * be enough to get there. */
    bool announced = rc == 0 && (beat || join || c->exactly_once || c->link != LINK_UP);
    if (announced)
        rc = announce(c, now, t0);
    if (rc == 0)
        rc = read_view(c, now, &view);
    /* Not in the view although the link held: Redis lost the keys (a restart
     * between two ticks). Announce at once instead of at the next beat. */
    if (rc == 0 && !announced && !has_self(view)) {
        cJSON_Delete(view);
        view = NULL;
        rc = announce(c, now, t0);
        if (rc == 0)
            rc = read_view(c, now, &view);
    }
    pthread_mutex_lock(&c->lock);
    if (rc == 0) {
        cJSON_Delete(c->view);
        c->view = view;
    }
    c->stale = rc != 0;
    int count = cJSON_GetArraySize(c->view);
    pthread_mutex_unlock(&c->lock);
    link_changed(c, rc == 0, count);
}

/* Waits until the next tick is due: the schedule's, a new join asked for,
 * or a join still pending (retried after retry seconds). Returns: false when
 * stopping. */
static bool wait_tick(daebus__cluster *c, daebus__deadline next, double retry)
{
    unsigned long long asked = atomic_load(&c->join_wanted);
    bool pending = c->exactly_once && asked > atomic_load(&c->join_sent);
    daebus__deadline until = next;
    if (pending && daebus__deadline_left(next) > retry)
        until = daebus__deadline_in(retry);
    pthread_mutex_lock(&c->lock);
    while (!c->stopping && !daebus__deadline_passed(until) && atomic_load(&c->join_wanted) == asked)
        daebus__cond_wait_until(&c->cond, &c->lock, until);
    bool stop = c->stopping;
    pthread_mutex_unlock(&c->lock);
    return !stop;
}

/* A tick every half heartbeat (an announce every other one), and more at once
 * while a join is asked for (it announces and joins; a failed one is retried
 * after 50 ms, doubling up to half a heartbeat). */
static void *heartbeat_main(void *arg)
{
    daebus__cluster *c = arg;
    daebus__sigpipe_block_thread();
    double half = c->heartbeat / 2, retry = 0.025;
    daebus__deadline next = daebus__deadline_in(half);
    for (unsigned long n = 0;;) {
        tick(c, n % 2 == 0);
        bool pending = atomic_load(&c->join_wanted) > atomic_load(&c->join_sent);
        retry = pending ? (retry * 2 < half ? retry * 2 : half) : 0.025;
        if (!wait_tick(c, next, retry))
            break;
        if (!daebus__deadline_passed(next))
            continue; /* a join: the schedule stays */
        n++;
        next.at += half;
        if (daebus__deadline_passed(next))
            next = daebus__deadline_in(half);
    }
    return NULL;
}

/* ---- life cycle ---- */

static cJSON *self_entry(const daebus__cluster *c)
{
    cJSON *arr = cJSON_CreateArray(), *o = cJSON_CreateObject();
    if (!arr || !o) {
        cJSON_Delete(arr);
        cJSON_Delete(o);
        return NULL;
    }
    cJSON_AddStringToObject(o, "id", c->id);
    cJSON_AddStringToObject(o, "host", c->host);
    cJSON_AddNumberToObject(o, "pid", c->pid);
    cJSON_AddNumberToObject(o, "started_at", (double)c->started_ms / 1000.0);
    cJSON_AddNumberToObject(o, "last_seen", 0);
    cJSON_AddNumberToObject(o, "http_port", c->http_port);
    cJSON_AddNumberToObject(o, "heartbeat", c->heartbeat);
    cJSON_AddBoolToObject(o, "self", 1);
    cJSON_AddItemToArray(arr, o);
    return arr;
}

static int init_fields(daebus__cluster *c, const daebus__cluster_opts *o)
{
    c->pub = o->pub;
    c->line = o->line;
    c->service = strdup(o->service);
    c->id = strdup(o->instance_id);
    if (!c->service || !c->id)
        return DAEBUS_ENOMEM;
    clean_host(c->host, sizeof c->host);
    c->pid = (int)getpid();
    c->http_port = o->http_port;
    c->heartbeat = o->heartbeat > 0 ? o->heartbeat : 1.0;
    c->window_ms = (long long)(c->heartbeat * 2500 + 0.5);
    c->set_ttl_ms = c->window_ms * 4 > 10000 ? c->window_ms * 4 : 10000;
    c->started_ms = (long long)(daebus__now_wall() * 1000);
    snprintf(c->key, sizeof c->key, "daebus:%s:instance:%s", c->service, c->id);
    snprintf(c->set_key, sizeof c->set_key, "daebus:%s:instances", c->service);
    daebus__cluster_channel(c->service, c->channel, sizeof c->channel);
    c->exactly_once = o->exactly_once;
    daebus__cluster_gate_init(c);
    c->view = self_entry(c);
    c->stale = true;
    return c->view ? 0 : DAEBUS_ENOMEM;
}

daebus__cluster *daebus__cluster_start(const daebus__cluster_opts *o)
{
    daebus__cluster *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    daebus__mutex_init(&c->lock);
    daebus__cond_init(&c->cond);
    if (init_fields(c, o) != 0 || pthread_create(&c->thread, NULL, heartbeat_main, c) != 0) {
        DAEBUS_LOG_ERRORF(LOGC, "cannot start the heartbeat of instance %s",
                          o->instance_id ? o->instance_id : "?");
        daebus__cluster_destroy(c);
        return NULL;
    }
    c->thread_started = true;
    return c;
}

void daebus__cluster_stop(daebus__cluster *c)
{
    if (!c || !c->thread_started)
        return;
    atomic_store(&c->taking, 0);
    pthread_mutex_lock(&c->lock);
    c->stopping = true;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->thread, NULL);
    c->thread_started = false;
    cmdbuf b[2];
    daebus__cluster_cmd_set(&b[0], 2, (const char *[]){"DEL", c->key});
    daebus__cluster_cmd_set(&b[1], 3, (const char *[]){"ZREM", c->set_key, c->id});
    if (daebus__cluster_run(c, b, 2, NULL) != 0)
        DAEBUS_LOG_DEBUGF(LOGC, "instance %s: keys not deleted (they expire)", c->id);
    pthread_mutex_lock(&c->lock);
    cJSON_Delete(c->view);
    c->view = cJSON_CreateArray();
    pthread_mutex_unlock(&c->lock);
}

void daebus__cluster_destroy(daebus__cluster *c)
{
    if (!c)
        return;
    daebus__cluster_stop(c);
    cJSON_Delete(c->view);
    free(c->service);
    free(c->id);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
    free(c);
}

cJSON *daebus__cluster_instances(daebus__cluster *c)
{
    pthread_mutex_lock(&c->lock);
    cJSON *copy = cJSON_Duplicate(c->view, 1);
    bool stale = c->stale;
    pthread_mutex_unlock(&c->lock);
    cJSON *e;
    cJSON_ArrayForEach(e, copy)
    {
        cJSON_AddBoolToObject(e, "stale", stale);
    }
    return copy;
}
