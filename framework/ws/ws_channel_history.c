/* ws_channel_history.c - the history of a channel in Redis: one script, run
 * with EVALSHA on the caller's publisher pool (see ws_channel_history.h). */
#include "ws_channel_history.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <hiredis/hiredis.h>

#include "clock.h"
#include "daebus/log.h"
#include "ratelimit.h"
#include "utf8.h"
#include "ws_channel_history_lua.h"

#define LOGC       "ws.history"
#define SVC_MAX    128
#define KEY_MAX    (16 + SVC_MAX + DAEBUS__CHIST_NAME_MAX)
#define CALL_ARGC  12
#define PREFIX_MAX (DAEBUS__CHIST_HEAD_MAX + 2 * DAEBUS__CHIST_NAME_MAX + 32)

struct daebus__chist {
    daebus__redis_pub *pub;
    char service[SVC_MAX + 1];
    pthread_mutex_t sha_lock;
    char sha[41]; /* "" until loaded */
    atomic_ullong published, failed, loads;
    unsigned long long seed; /* for new epochs */
    atomic_ullong epochs;
    atomic_int down; /* the last call found Redis unreachable */
    daebus__ratelimit log_rl;
};

/* The keys and arguments of one script call. */
typedef struct chist_call {
    char keys[2][KEY_MAX];
    char epoch[24];
    char num[2][24];
    char prefix[PREFIX_MAX];
    const char **argv; /* argv_s, or allocated for many messages */
    size_t *lens;
    const char *argv_s[CALL_ARGC];
    size_t lens_s[CALL_ARGC];
    int argc;
} chist_call;

int daebus__chist_name_check(const char *channel)
{
    if (!channel)
        return DAEBUS_EINVAL;
    size_t n = strlen(channel);
    if (n == 0 || n > DAEBUS__CHIST_NAME_MAX || !daebus__utf8_valid(channel, n))
        return DAEBUS_EINVAL;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)channel[i] < 0x20 || channel[i] == 0x7f)
            return DAEBUS_EINVAL;
    return 0;
}

/* The seed of the store's epochs: getrandom(2), or when that fails the
 * wall clock, the pid and the store's address mixed. */
static unsigned long long epoch_seed(const void *h)
{
    unsigned long long v = 0;
    if (getrandom(&v, sizeof v, GRND_NONBLOCK) == (ssize_t)sizeof v && v)
        return v;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (unsigned long long)ts.tv_nsec * 0x100000001b3ULL ^ (unsigned long long)ts.tv_sec ^
           (unsigned long long)(uintptr_t)h ^ (unsigned long long)getpid() << 40;
}

daebus__chist *daebus__chist_create(const daebus__chist_opts *opts, daebus_error *err)
{
    if (!opts || !opts->pub || !opts->service || !opts->service[0] ||
        strlen(opts->service) > SVC_MAX) {
        daebus_error_set(err, DAEBUS_EINVAL,
                         "channel history: a pool and a service name (1..%d "
                         "bytes) are required",
                         SVC_MAX);
        return NULL;
    }
    daebus__chist *h = calloc(1, sizeof *h);
    if (!h) {
        daebus_error_set(err, DAEBUS_ENOMEM, "channel history: out of memory");
        return NULL;
    }
    h->pub = opts->pub;
    snprintf(h->service, sizeof h->service, "%s", opts->service);
    pthread_mutex_init(&h->sha_lock, NULL);
    h->seed = epoch_seed(h);
    return h;
}

void daebus__chist_destroy(daebus__chist *h)
{
    if (!h)
        return;
    pthread_mutex_destroy(&h->sha_lock);
    free(h);
}

void daebus__chist_get_stats(daebus__chist *h, daebus__chist_stats *out)
{
    out->published = atomic_load(&h->published);
    out->failed = atomic_load(&h->failed);
    out->script_loads = atomic_load(&h->loads);
}

/* A fresh epoch offered to the script (used only when the channel needs
 * one): 16 hex digits, the store's random seed mixed with a counter
 * (splitmix64), so no system call per publish. */
static void new_epoch(daebus__chist *h, char out[24])
{
    unsigned long long z = h->seed + 0x9e3779b97f4a7c15ULL * (atomic_fetch_add(&h->epochs, 1) + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    snprintf(out, 24, "%016llx", z ^ (z >> 31));
}

/* One log line per change between reachable and unreachable. */
static int note(daebus__chist *h, int rc, const char *what)
{
    if (rc == 0) {
        if (atomic_exchange(&h->down, 0))
            daebus_log(DAEBUS_LOG_INFO, LOGC, "channel history: Redis reachable again");
        return 0;
    }
    atomic_fetch_add(&h->failed, 1);
    if (rc == DAEBUS_ECONN && !atomic_exchange(&h->down, 1))
        daebus_log(DAEBUS_LOG_WARNING, LOGC,
                   "channel history: %s failed: Redis unreachable (DAEBUS_ECONN)", what);
    else if (rc != DAEBUS_ECONN) {
        long missed = daebus__ratelimit_pass(&h->log_rl, daebus__now_mono(), 1.0);
        if (missed >= 0)
            daebus_log(DAEBUS_LOG_WARNING, LOGC,
                       "channel history: %s failed: %s (%ld more such failures not logged)", what,
                       daebus_strerror(rc), missed);
    }
    return rc;
}

/* Loads the script when not loaded yet. Returns: 0 or a negative code. */
static int load_script(daebus__chist *h)
{
    pthread_mutex_lock(&h->sha_lock);
    int rc = 0;
    if (!h->sha[0]) {
        const char *argv[3] = {"SCRIPT", "LOAD", chist_lua};
        size_t lens[3] = {6, 4, sizeof chist_lua - 1};
        daebus__redis_cmd cmd = {3, argv, lens};
        redisReply *r = NULL;
        rc = daebus__redis_pub_pipeline(h->pub, &cmd, 1, &r);
        if (rc == 0) {
            if (r->type == REDIS_REPLY_STRING && r->len == 40) {
                memcpy(h->sha, r->str, 40);
                h->sha[40] = '\0';
                atomic_fetch_add(&h->loads, 1);
            } else
                rc = DAEBUS_EREPLY;
            freeReplyObject(r);
        }
    }
    pthread_mutex_unlock(&h->sha_lock);
    return rc;
}

static void arg(chist_call *c, const char *s, size_t n)
{
    c->argv[c->argc] = s;
    c->lens[c->argc++] = n;
}

static void sarg(chist_call *c, const char *s)
{
    arg(c, s, strlen(s));
}

/* The head of every call: EVALSHA sha 3 keys... mode epoch. */
static void call_begin(daebus__chist *h, chist_call *c, const char *channel, const char *mode)
{
    static const char *const suffix[2] = {"epoch", "hist"};
    if (!c->argv) {
        c->argv = c->argv_s;
        c->lens = c->lens_s;
    }
    c->argc = 0;
    sarg(c, "EVALSHA");
    arg(c, h->sha, 40);
    sarg(c, "2");
    for (int i = 0; i < 2; i++) {
        snprintf(c->keys[i], KEY_MAX, "daebus:%s:ch:%s:%s", h->service, channel, suffix[i]);
        sarg(c, c->keys[i]);
    }
    sarg(c, mode);
    new_epoch(h, c->epoch);
    sarg(c, c->epoch);
}

static bool is_noscript(const redisReply *r)
{
    return r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0;
}

/* Runs the n calls pipelined. A NOSCRIPT answer (Redis lost its script
 * cache: a restart, SCRIPT FLUSH) runs that call again as EVAL, which caches
 * the script again. Returns: 0 with every reply set, or a negative code. */
static int run_calls(daebus__chist *h, chist_call *calls, int n, redisReply **replies)
{
    int rc = load_script(h);
    if (rc != 0)
        return rc;
    daebus__redis_cmd *cmds = calloc((size_t)n, sizeof *cmds);
    if (!cmds)
        return DAEBUS_ENOMEM;
    for (int i = 0; i < n; i++)
        cmds[i] = (daebus__redis_cmd){calls[i].argc, calls[i].argv, calls[i].lens};
    rc = daebus__redis_pub_pipeline(h->pub, cmds, n, replies);
    for (int i = 0; rc == 0 && i < n; i++) {
        if (!is_noscript(replies[i]))
            continue;
        calls[i].argv[0] = "EVAL";
        calls[i].lens[0] = 4;
        calls[i].argv[1] = chist_lua;
        calls[i].lens[1] = sizeof chist_lua - 1;
        atomic_fetch_add(&h->loads, 1);
        redisReply *r = NULL;
        rc = daebus__redis_pub_pipeline(h->pub, &cmds[i], 1, &r);
        if (rc == 0) {
            freeReplyObject(replies[i]);
            replies[i] = r;
        }
    }
    free(cmds);
    if (rc != 0)
        for (int i = 0; i < n; i++) {
            if (replies[i])
                freeReplyObject(replies[i]);
            replies[i] = NULL;
        }
    return rc;
}

/* Checks the channel, Redis channel, head and bounds of p (not its data). */
static int pub_check_common(const daebus__chist_pub *p)
{
    if (!p || daebus__chist_name_check(p->channel) != 0)
        return DAEBUS_EINVAL;
    if (p->bounds.max_age < 0 || p->bounds.max_age > 1e9)
        return DAEBUS_EINVAL;
    if ((p->redis_channel && !p->redis_channel[0]) ||
        (p->head && strlen(p->head) > DAEBUS__CHIST_HEAD_MAX))
        return DAEBUS_EINVAL;
    return 0;
}

static int data_check(const char *data, size_t len)
{
    return !data ? DAEBUS_EINVAL : len > DAEBUS__CHIST_DATA_MAX ? DAEBUS_ETOOBIG : 0;
}

static int pub_check(const daebus__chist_pub *p)
{
    int rc = pub_check_common(p);
    return rc ? rc : data_check(p->data, p->len);
}

/* The envelope up to the offset: {<head>"channel":"<name>","offset": (a
 * checked name has no control byte: only '"' and '\\' need escaping). */
static size_t envelope_prefix(char *out, const char *head, const char *channel)
{
    size_t n = (size_t)snprintf(out, PREFIX_MAX, "{%s\"channel\":\"", head ? head : "");
    for (const char *s = channel; *s; s++) {
        if (*s == '"' || *s == '\\')
            out[n++] = '\\';
        out[n++] = *s;
    }
    memcpy(out + n, "\",\"offset\":", 11);
    return n + 11;
}

/* A publish call of n messages (data[i], lens[i]) of p's channel. */
static void pub_call(daebus__chist *h, chist_call *c, const daebus__chist_pub *p,
                     const char *const *data, const size_t *lens, int n)
{
    call_begin(h, c, p->channel, "p");
    sarg(c, p->redis_channel ? p->redis_channel : "");
    snprintf(c->num[0], sizeof c->num[0], "%u",
             p->bounds.max_count ? p->bounds.max_count : DAEBUS__CHIST_DEFAULT_COUNT);
    sarg(c, c->num[0]);
    snprintf(c->num[1], sizeof c->num[1], "%.0f", p->bounds.max_age * 1000.0);
    sarg(c, c->num[1]);
    arg(c, c->prefix, envelope_prefix(c->prefix, p->head, p->channel));
    for (int i = 0; i < n; i++)
        arg(c, data[i], lens[i]);
}

/* Reads an offset and an epoch (two string elements of r from at).
 * Returns: 0 or DAEBUS_EREPLY. */
static int read_pos(const redisReply *r, size_t at, daebus__chist_pos *out)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements < at + 2)
        return DAEBUS_EREPLY;
    const redisReply *o = r->element[at], *e = r->element[at + 1];
    if (o->type != REDIS_REPLY_STRING || e->type != REDIS_REPLY_STRING ||
        e->len > DAEBUS__CHIST_EPOCH_MAX)
        return DAEBUS_EREPLY;
    daebus__chist_pos pos;
    char *end = NULL;
    pos.offset = strtoull(o->str, &end, 10);
    if (end == o->str || *end)
        return DAEBUS_EREPLY;
    memcpy(pos.epoch, e->str, e->len);
    pos.epoch[e->len] = '\0';
    if (out)
        *out = pos;
    return 0;
}

int daebus__chist_publish_batch(daebus__chist *h, const daebus__chist_pub *p, int n,
                                daebus__chist_pos *out, int *rcs)
{
    if (!h || !p || !rcs || n < 1 || n > DAEBUS__CHIST_BATCH_MAX)
        return DAEBUS_EINVAL;
    chist_call *calls = calloc((size_t)n, sizeof *calls);
    redisReply **replies = calloc((size_t)n, sizeof *replies);
    int *slot = calloc((size_t)n, sizeof *slot); /* the call of publish i, -1: refused */
    if (!calls || !replies || !slot) {
        free(calls);
        free(replies);
        free(slot);
        return DAEBUS_ENOMEM;
    }
    int k = 0;
    for (int i = 0; i < n; i++) {
        rcs[i] = pub_check(&p[i]);
        slot[i] = rcs[i] == 0 ? k : -1;
        if (rcs[i] == 0)
            pub_call(h, &calls[k++], &p[i], &p[i].data, &p[i].len, 1);
    }
    int rc = k > 0 ? run_calls(h, calls, k, replies) : 0, first = 0;
    for (int i = 0; i < n; i++) {
        if (slot[i] >= 0) {
            redisReply *r = replies[slot[i]];
            rcs[i] = rc != 0                        ? rc
                     : r->type == REDIS_REPLY_ERROR ? DAEBUS_EREPLY
                                                    : read_pos(r, 0, out ? &out[i] : NULL);
            if (rcs[i] == 0)
                atomic_fetch_add(&h->published, 1);
            note(h, rcs[i], "publish");
        }
        if (rcs[i] != 0 && first == 0)
            first = rcs[i];
    }
    for (int i = 0; i < k; i++)
        if (replies[i])
            freeReplyObject(replies[i]);
    free(calls);
    free(replies);
    free(slot);
    return first;
}

int daebus__chist_publish(daebus__chist *h, const daebus__chist_pub *p, daebus__chist_pos *out)
{
    int rc = 0;
    return daebus__chist_publish_batch(h, p, 1, out, &rc);
}

int daebus__chist_publish_many(daebus__chist *h, const daebus__chist_pub *p,
                               const char *const *data, const size_t *lens, int n,
                               daebus__chist_pos *first)
{
    if (!h || !data || !lens || n < 1 || n > DAEBUS__CHIST_BATCH_MAX)
        return DAEBUS_EINVAL;
    int rc = pub_check_common(p);
    for (int i = 0; rc == 0 && i < n; i++)
        rc = data_check(data[i], lens[i]);
    if (rc != 0)
        return rc;
    chist_call *c = calloc(1, sizeof *c);
    const char **argv = calloc((size_t)(CALL_ARGC + n), sizeof *argv);
    size_t *alens = calloc((size_t)(CALL_ARGC + n), sizeof *alens);
    redisReply *r = NULL;
    rc = c && argv && alens ? 0 : DAEBUS_ENOMEM;
    if (rc == 0) {
        c->argv = argv;
        c->lens = alens;
        pub_call(h, c, p, data, lens, n);
        rc = run_calls(h, c, 1, &r);
    }
    if (rc == 0)
        rc = r->type == REDIS_REPLY_ERROR ? DAEBUS_EREPLY : read_pos(r, 0, first);
    if (r)
        freeReplyObject(r);
    free(c);
    free(argv);
    free(alens);
    if (rc == 0)
        atomic_fetch_add(&h->published, (unsigned long long)n);
    return note(h, rc, "publish");
}

void daebus__chist_result_free(daebus__chist_result *res)
{
    if (!res)
        return;
    free(res->msgs);
    if (res->reply_)
        freeReplyObject(res->reply_);
    res->msgs = NULL;
    res->reply_ = NULL;
    res->n = 0;
}

/* Fills res->msgs from the entries of a recovered read (pointing into the
 * reply). Returns: 0, DAEBUS_EREPLY or DAEBUS_ENOMEM. */
static int read_entries(const redisReply *list, unsigned long long since, daebus__chist_result *res)
{
    if (list->type != REDIS_REPLY_ARRAY)
        return DAEBUS_EREPLY;
    res->msgs = list->elements ? calloc(list->elements, sizeof *res->msgs) : NULL;
    if (list->elements && !res->msgs)
        return DAEBUS_ENOMEM;
    for (size_t i = 0; i < list->elements; i++) {
        const redisReply *e = list->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
            e->element[0]->type != REDIS_REPLY_STRING || e->element[1]->type != REDIS_REPLY_ARRAY)
            return DAEBUS_EREPLY;
        const char *dash = strchr(e->element[0]->str, '-'); /* ids are "0-<offset>" */
        unsigned long long off = dash ? strtoull(dash + 1, NULL, 10) : 0;
        if (off != since + 1 + i) /* offsets are contiguous: a hole is a broken history */
            return DAEBUS_EREPLY;
        const redisReply *f = e->element[1];
        daebus__chist_msg *m = &res->msgs[res->n];
        m->offset = off;
        m->data = NULL;
        for (size_t j = 0; j + 1 < f->elements; j += 2)
            if (f->element[j]->type == REDIS_REPLY_STRING && f->element[j]->len == 1 &&
                f->element[j]->str[0] == 'd' && f->element[j + 1]->type == REDIS_REPLY_STRING) {
                m->data = f->element[j + 1]->str;
                m->len = f->element[j + 1]->len;
            }
        if (!m->data)
            return DAEBUS_EREPLY;
        res->n++;
    }
    return 0;
}

/* Runs one read call (since or position). Returns: 0 with *reply set, or a
 * negative code. */
static int run_read(daebus__chist *h, chist_call *c, redisReply **reply)
{
    *reply = NULL;
    int rc = run_calls(h, c, 1, reply);
    if (rc == 0 && (*reply)->type == REDIS_REPLY_ERROR) {
        freeReplyObject(*reply);
        *reply = NULL;
        rc = DAEBUS_EREPLY;
    }
    return rc;
}

/* Reads the answer of a since call into res. Returns: 0 or a negative code. */
static int read_since(redisReply *r, unsigned long long since, daebus__chist_result *res)
{
    int rc = read_pos(r, 1, &res->now);
    if (rc != 0 || r->element[0]->type != REDIS_REPLY_INTEGER)
        return rc ? rc : DAEBUS_EREPLY;
    res->recovered = r->element[0]->integer == 1;
    if (res->recovered && r->elements > 3)
        rc = read_entries(r->element[3], since, res);
    if (rc == 0 && res->recovered)
        res->more = since + res->n < res->now.offset;
    return rc;
}

int daebus__chist_since(daebus__chist *h, const char *channel, unsigned long long since,
                        const char *epoch, unsigned limit, daebus__chist_result *res)
{
    if (!res)
        return DAEBUS_EINVAL;
    memset(res, 0, sizeof *res);
    if (!h || daebus__chist_name_check(channel) != 0 || !epoch ||
        strlen(epoch) > DAEBUS__CHIST_EPOCH_MAX || limit > DAEBUS__CHIST_LIMIT_MAX)
        return DAEBUS_EINVAL;
    chist_call c = {0};
    call_begin(h, &c, channel, "s");
    snprintf(c.num[0], sizeof c.num[0], "%llu", since);
    sarg(&c, c.num[0]);
    sarg(&c, epoch);
    snprintf(c.num[1], sizeof c.num[1], "%u", limit ? limit : DAEBUS__CHIST_LIMIT_MAX);
    sarg(&c, c.num[1]);
    redisReply *r = NULL;
    int rc = run_read(h, &c, &r);
    if (rc == 0) {
        res->reply_ = r;
        rc = read_since(r, since, res);
    }
    if (rc != 0) {
        daebus__chist_result_free(res);
        memset(res, 0, sizeof *res);
    }
    return note(h, rc, "history read");
}

int daebus__chist_position(daebus__chist *h, const char *channel, daebus__chist_pos *out)
{
    if (!h || !out || daebus__chist_name_check(channel) != 0)
        return DAEBUS_EINVAL;
    chist_call c = {0};
    call_begin(h, &c, channel, "c");
    redisReply *r = NULL;
    int rc = run_read(h, &c, &r);
    if (rc == 0) {
        rc = read_pos(r, 1, out);
        freeReplyObject(r);
    }
    return note(h, rc, "history position");
}
