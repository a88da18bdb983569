/* test_channel_history.c - the channel history store in Redis
 * (framework/ws/ws_channel_history.c, docs/channels/history.md).
 *
 * A private redis-server (no persistence): offsets from 1 without gap or
 * duplicate under two publishing threads, in stream order; since() returns
 * exactly the messages after N; a trimmed history, FLUSHALL and a restart
 * give recovered false and a new epoch; one EVALSHA per publish (INFO
 * commandstats); Redis down is DAEBUS_ECONN and works again when it returns;
 * bad input is refused. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <hiredis/hiredis.h>
#include "testsupport.h"
#include "ws_channel_history.h"

#define SVC       "hist_test"
#define PUB_EACH  500
#define REDIS_OUT "hist_test:out"

static ts_redis redis;
static daebus__redis_pub *pool;
static daebus__chist *hist;

static redisContext *rc_connect(void)
{
    struct timeval tv = {2, 0};
    return redisConnectWithTimeout("127.0.0.1", redis.port, tv);
}

/* Runs a command on a fresh connection and returns its reply (or NULL). */
static redisReply *cmd(const char *fmt, ...)
{
    redisContext *c = rc_connect();
    if (!c || c->err) {
        if (c)
            redisFree(c);
        return NULL;
    }
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    return r;
}

/* Runs a command, drops its reply. */
#define cmd_drop(...)                                                                              \
    do {                                                                                           \
        redisReply *r_ = cmd(__VA_ARGS__);                                                         \
        if (r_)                                                                                    \
            freeReplyObject(r_);                                                                   \
    } while (0)

static int make_pool(void)
{
    daebus__redis_url url;
    if (daebus__redis_url_parse(redis.url, &url, NULL) != 0)
        return -1;
    daebus__redis_pub_opts po = {.url = &url, .connections = 4, .command_timeout = 2};
    pool = daebus__redis_pub_create(&po);
    daebus__chist_opts ho = {.pub = pool, .service = SVC};
    hist = daebus__chist_create(&ho, NULL);
    return pool && hist ? 0 : -1;
}

static int init(void)
{
    if (ts_redis_start(&redis, NULL) != 0)
        return -1;
    return make_pool();
}

static int cleanup(void)
{
    daebus__chist_destroy(hist);
    daebus__redis_pub_destroy(pool);
    ts_redis_stop(&redis);
    return 0;
}

static int pub(const char *channel, const char *data, unsigned max_count, daebus__chist_pos *out)
{
    daebus__chist_pub p = {.channel = channel,
                           .data = data,
                           .len = data ? strlen(data) : 0,
                           .bounds = {.max_count = max_count}};
    return daebus__chist_publish(hist, &p, out);
}

/* --- offsets under two publishing threads ------------------------------- */

typedef struct pub_job {
    int id;
    int failures;
    unsigned long long offsets[PUB_EACH];
} pub_job;

static void *pub_thread(void *arg)
{
    pub_job *j = arg;
    for (int i = 0; i < PUB_EACH; i++) {
        char data[64];
        snprintf(data, sizeof data, "{\"t\":%d,\"i\":%d}", j->id, i);
        daebus__chist_pos pos;
        if (pub("race", data, 5000, &pos) != 0)
            j->failures++;
        else
            j->offsets[i] = pos.offset;
    }
    return NULL;
}

static void test_offsets_two_threads(void)
{
    static pub_job jobs[2];
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        jobs[i].id = i;
        pthread_create(&t[i], NULL, pub_thread, &jobs[i]);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    CU_ASSERT_EQUAL(jobs[0].failures + jobs[1].failures, 0);
    static unsigned char seen[2 * PUB_EACH + 1];
    int bad = 0;
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < PUB_EACH; i++) {
            unsigned long long o = jobs[k].offsets[i];
            if (o < 1 || o > 2 * PUB_EACH || seen[o]++)
                bad++;
            if (i > 0 && o <= jobs[k].offsets[i - 1]) /* one thread's own order */
                bad++;
        }
    CU_ASSERT_EQUAL(bad, 0);
    /* the stream: ids 1..1000 in order, each entry's data the publish that got that offset */
    redisReply *r = cmd("XRANGE daebus:" SVC ":ch:race:hist - +");
    CU_ASSERT_FATAL(r && r->type == REDIS_REPLY_ARRAY);
    CU_ASSERT_EQUAL(r->elements, 2 * PUB_EACH);
    int order_bad = 0;
    for (size_t i = 0; i < r->elements; i++) {
        const char *dash = strchr(r->element[i]->element[0]->str, '-');
        unsigned long long off = dash ? strtoull(dash + 1, NULL, 10) : 0;
        if (off != i + 1)
            order_bad++;
        int who = -1, n = -1;
        sscanf(r->element[i]->element[1]->element[1]->str, "{\"t\":%d,\"i\":%d}", &who, &n);
        if (who < 0 || who > 1 || n < 0 || n >= PUB_EACH || jobs[who].offsets[n] != off)
            order_bad++;
    }
    CU_ASSERT_EQUAL(order_bad, 0);
    freeReplyObject(r);
}

/* --- since ----------------------------------------------------------------- */

static void test_since_exact(void)
{
    daebus__chist_pos start, pos;
    CU_ASSERT_EQUAL_FATAL(daebus__chist_position(hist, "room:a", &start), 0);
    CU_ASSERT_EQUAL(start.offset, 0);
    CU_ASSERT(strlen(start.epoch) == 16);
    for (int i = 1; i <= 50; i++) {
        char data[32];
        snprintf(data, sizeof data, "m%d", i);
        CU_ASSERT_EQUAL(pub("room:a", data, 0, &pos), 0);
        CU_ASSERT_EQUAL(pos.offset, (unsigned long long)i);
        CU_ASSERT_STRING_EQUAL(pos.epoch, start.epoch);
    }
    daebus__chist_result res;
    CU_ASSERT_EQUAL_FATAL(daebus__chist_since(hist, "room:a", 20, start.epoch, 0, &res), 0);
    CU_ASSERT(res.recovered);
    CU_ASSERT(!res.more);
    CU_ASSERT_EQUAL(res.now.offset, 50);
    CU_ASSERT_EQUAL_FATAL(res.n, 30);
    int bad = 0;
    for (size_t i = 0; i < res.n; i++) {
        char want[32];
        int wl = snprintf(want, sizeof want, "m%zu", 21 + i);
        if (res.msgs[i].offset != 21 + i || res.msgs[i].len != (size_t)wl ||
            memcmp(res.msgs[i].data, want, (size_t)wl) != 0)
            bad++;
    }
    CU_ASSERT_EQUAL(bad, 0);
    daebus__chist_result_free(&res);
    /* from the start (0), with a limit: the first 10 and "more" */
    CU_ASSERT_EQUAL(daebus__chist_since(hist, "room:a", 0, start.epoch, 10, &res), 0);
    CU_ASSERT(res.recovered && res.more && res.n == 10 && res.msgs[0].offset == 1);
    daebus__chist_result_free(&res);
    /* nothing after the last: recovered, empty */
    CU_ASSERT_EQUAL(daebus__chist_since(hist, "room:a", 50, start.epoch, 0, &res), 0);
    CU_ASSERT(res.recovered && !res.more && res.n == 0);
    daebus__chist_result_free(&res);
    /* an offset from the future, or another epoch: not recovered, nothing given */
    CU_ASSERT_EQUAL(daebus__chist_since(hist, "room:a", 51, start.epoch, 0, &res), 0);
    CU_ASSERT(!res.recovered && res.n == 0 && res.msgs == NULL);
    daebus__chist_result_free(&res);
    CU_ASSERT_EQUAL(daebus__chist_since(hist, "room:a", 20, "0123456789abcdef", 0, &res), 0);
    CU_ASSERT(!res.recovered && res.n == 0);
    CU_ASSERT_STRING_EQUAL(res.now.epoch, start.epoch);
    daebus__chist_result_free(&res);
}

/* The envelope on the Redis channel: head, channel, offset, epoch, then the data. */
static void test_envelope_published(void)
{
    redisContext *sub = rc_connect();
    CU_ASSERT_FATAL(sub && !sub->err);
    redisReply *r = redisCommand(sub, "SUBSCRIBE " REDIS_OUT);
    freeReplyObject(r);
    daebus__chist_pub p = {.channel = "news \"x\"",
                           .data = "{\"a\":1}",
                           .len = 7,
                           .redis_channel = REDIS_OUT,
                           .head = "\"k\":\"c\","};
    daebus__chist_pos pos;
    CU_ASSERT_EQUAL_FATAL(daebus__chist_publish(hist, &p, &pos), 0);
    CU_ASSERT_EQUAL(pos.offset, 1);
    CU_ASSERT_EQUAL_FATAL(redisGetReply(sub, (void **)&r), REDIS_OK);
    char want[256];
    snprintf(
        want, sizeof want,
        "{\"k\":\"c\",\"channel\":\"news \\\"x\\\"\",\"offset\":1,\"epoch\":\"%s\"}\n{\"a\":1}",
        pos.epoch);
    CU_ASSERT_EQUAL_FATAL(r->elements, 3);
    CU_ASSERT_STRING_EQUAL(r->element[2]->str, want);
    freeReplyObject(r);
    redisFree(sub);
}

/* --- trimming -------------------------------------------------------------- */

static void test_trimmed_not_recovered(void)
{
    daebus__chist_pos pos;
    for (int i = 0; i < 1000; i++)
        CU_ASSERT_EQUAL(pub("small", "x", 10, &pos), 0);
    redisReply *r = cmd("XLEN daebus:" SVC ":ch:small:hist");
    CU_ASSERT(r && r->integer < 1000 && r->integer >= 10); /* MAXLEN ~: about 10, whole nodes */
    long long kept = r ? r->integer : 0;
    freeReplyObject(r);
    daebus__chist_result res;
    CU_ASSERT_EQUAL(daebus__chist_since(hist, "small", 5, pos.epoch, 0, &res), 0);
    CU_ASSERT(!res.recovered && res.n == 0);
    daebus__chist_result_free(&res);
    /* still within the kept part: recovered */
    unsigned long long from = 1000 - (unsigned long long)kept;
    CU_ASSERT_EQUAL(daebus__chist_since(hist, "small", from, pos.epoch, 0, &res), 0);
    CU_ASSERT(res.recovered && res.n == (size_t)kept);
    daebus__chist_result_free(&res);
}

static void test_age_trim(void)
{
    daebus__chist_pub p = {
        .channel = "aged", .data = "old", .len = 3, .bounds = {.max_count = 1000, .max_age = 0.3}};
    daebus__chist_pos pos;
    for (int i = 0; i < 20; i++)
        CU_ASSERT_EQUAL(daebus__chist_publish(hist, &p, &pos), 0);
    ts_sleep_ms(400);
    p.data = "new";
    for (int i = 0; i < 3; i++)
        CU_ASSERT_EQUAL(daebus__chist_publish(hist, &p, &pos), 0);
    redisReply *r = cmd("XLEN daebus:" SVC ":ch:aged:hist");
    CU_ASSERT(r && r->integer == 3); /* the 20 old ones are gone, exactly */
    freeReplyObject(r);
    daebus__chist_result res;
    CU_ASSERT_EQUAL(daebus__chist_since(hist, "aged", 10, pos.epoch, 0, &res), 0);
    CU_ASSERT(!res.recovered);
    daebus__chist_result_free(&res);
    CU_ASSERT_EQUAL(daebus__chist_since(hist, "aged", 20, pos.epoch, 0, &res), 0);
    CU_ASSERT(res.recovered && res.n == 3 && res.msgs[0].offset == 21);
    daebus__chist_result_free(&res);
}

/* --- epochs ---------------------------------------------------------------- */

static void test_flushall_new_epoch(void)
{
    daebus__chist_pos before, after;
    CU_ASSERT_EQUAL(pub("ep", "a", 0, &before), 0);
    CU_ASSERT_EQUAL(pub("ep", "b", 0, &before), 0);
    cmd_drop("FLUSHALL");
    CU_ASSERT_EQUAL(pub("ep", "c", 0, &after), 0);
    CU_ASSERT_EQUAL(after.offset, 1);
    CU_ASSERT_STRING_NOT_EQUAL(after.epoch, before.epoch);
    daebus__chist_result res;
    CU_ASSERT_EQUAL(daebus__chist_since(hist, "ep", 1, before.epoch, 0, &res), 0);
    CU_ASSERT(!res.recovered && res.n == 0);
    CU_ASSERT_STRING_EQUAL(res.now.epoch, after.epoch);
    daebus__chist_result_free(&res);
}

/* The offset is the stream's own id sequence; the epoch key and the stream
 * lost apart from each other never give an offset twice under one epoch. */
static void test_partial_loss_no_reuse(void)
{
    daebus__chist_pos a, b;
    for (int i = 0; i < 5; i++)
        CU_ASSERT_EQUAL(pub("cnt", "a", 2, &a), 0);
    /* trimmed to nothing: offsets go on (the stream keeps its last id) */
    cmd_drop("XTRIM daebus:" SVC ":ch:cnt:hist MAXLEN 0");
    CU_ASSERT_EQUAL(daebus__chist_position(hist, "cnt", &b), 0);
    CU_ASSERT(b.offset == 5 && strcmp(b.epoch, a.epoch) == 0);
    CU_ASSERT_EQUAL(pub("cnt", "b", 0, &b), 0);
    CU_ASSERT(b.offset == 6 && strcmp(b.epoch, a.epoch) == 0);
    /* the epoch lost, the stream kept: a new epoch, offsets go on */
    cmd_drop("DEL daebus:" SVC ":ch:cnt:epoch");
    CU_ASSERT_EQUAL(pub("cnt", "c", 0, &b), 0);
    CU_ASSERT_EQUAL(b.offset, 7);
    CU_ASSERT_STRING_NOT_EQUAL(b.epoch, a.epoch);
    a = b;
    /* the stream lost, the epoch kept: a publish starts at 1 under a new epoch */
    cmd_drop("DEL daebus:" SVC ":ch:cnt:hist");
    CU_ASSERT_EQUAL(pub("cnt", "d", 0, &b), 0);
    CU_ASSERT_EQUAL(b.offset, 1);
    CU_ASSERT_STRING_NOT_EQUAL(b.epoch, a.epoch);
    a = b;
    /* ... and a read that finds the stream lost drops the old epoch too */
    cmd_drop("DEL daebus:" SVC ":ch:cnt:hist");
    CU_ASSERT_EQUAL(daebus__chist_position(hist, "cnt", &b), 0);
    CU_ASSERT_EQUAL(b.offset, 0);
    CU_ASSERT_STRING_NOT_EQUAL(b.epoch, a.epoch);
    /* the epoch given before the first publish is kept by that publish */
    daebus__chist_pos first;
    CU_ASSERT_EQUAL(pub("cnt", "e", 0, &first), 0);
    CU_ASSERT(first.offset == 1 && strcmp(first.epoch, b.epoch) == 0);
    daebus__chist_result res;
    CU_ASSERT_EQUAL(daebus__chist_since(hist, "cnt", 0, b.epoch, 0, &res), 0);
    CU_ASSERT(res.recovered && res.n == 1 && res.msgs[0].offset == 1);
    daebus__chist_result_free(&res);
}

/* --- one round trip ---------------------------------------------------------- */

static long long stat_calls(const char *info, const char *name)
{
    char key[64];
    snprintf(key, sizeof key, "cmdstat_%s:calls=", name);
    const char *p = strstr(info, key);
    return p ? atoll(p + strlen(key)) : 0;
}

static void test_one_round_trip(void)
{
    daebus__chist_pos pos;
    CU_ASSERT_EQUAL(pub("rt", "warm", 0, &pos), 0);
    cmd_drop("CONFIG RESETSTAT");
    daebus__chist_pub p = {.channel = "rt", .data = "x", .len = 1, .redis_channel = REDIS_OUT};
    for (int i = 0; i < 100; i++)
        CU_ASSERT_EQUAL(daebus__chist_publish(hist, &p, &pos), 0);
    redisReply *r = cmd("INFO commandstats");
    CU_ASSERT_FATAL(r && r->type == REDIS_REPLY_STRING);
    /* client calls: 100 EVALSHA and the INFO itself; the rest runs inside the script */
    CU_ASSERT_EQUAL(stat_calls(r->str, "evalsha"), 100);
    CU_ASSERT_EQUAL(stat_calls(r->str, "eval"), 0);
    CU_ASSERT_EQUAL(stat_calls(r->str, "script|load"), 0);
    CU_ASSERT_EQUAL(stat_calls(r->str, "ping"), 0);
    CU_ASSERT_EQUAL(stat_calls(r->str, "xadd"), 100); /* counted inside the script */
    CU_ASSERT_EQUAL(stat_calls(r->str, "publish"), 100);
    freeReplyObject(r);
    /* a batch: n publishes, n EVALSHAs in one pipeline */
    daebus__chist_pub batch[8];
    int rcs[8];
    daebus__chist_pos outs[8];
    for (int i = 0; i < 8; i++)
        batch[i] = p;
    CU_ASSERT_EQUAL(daebus__chist_publish_batch(hist, batch, 8, outs, rcs), 0);
    for (int i = 1; i < 8; i++)
        CU_ASSERT_EQUAL(outs[i].offset, outs[0].offset + (unsigned long long)i);
}

/* Many messages of one channel in one EVALSHA: contiguous offsets, each
 * published in order; the first publish of a channel and an age bound take
 * the script's other path; a bad message refuses the whole call. */
static void test_publish_many(void)
{
    redisContext *sub = rc_connect();
    CU_ASSERT_FATAL(sub && !sub->err);
    freeReplyObject(redisCommand(sub, "SUBSCRIBE " REDIS_OUT));
    const char *data[5] = {"a", "bb", "ccc", "dddd", "eeeee"};
    size_t lens[5] = {1, 2, 3, 4, 5};
    daebus__chist_pub p = {.channel = "many", .redis_channel = REDIS_OUT};
    daebus__chist_pos first, second;
    cmd_drop("CONFIG RESETSTAT");
    CU_ASSERT_EQUAL_FATAL(daebus__chist_publish_many(hist, &p, data, lens, 5, &first), 0);
    CU_ASSERT_EQUAL(first.offset, 1); /* a new channel: the script's other path */
    CU_ASSERT_EQUAL_FATAL(daebus__chist_publish_many(hist, &p, data, lens, 5, &second), 0);
    CU_ASSERT_EQUAL(second.offset, 6);
    CU_ASSERT_STRING_EQUAL(second.epoch, first.epoch);
    redisReply *r = cmd("INFO commandstats");
    CU_ASSERT(r && stat_calls(r->str, "evalsha") == 2 && stat_calls(r->str, "xadd") == 10 &&
              stat_calls(r->str, "publish") == 10);
    freeReplyObject(r);
    int bad = 0;
    for (int i = 0; i < 10; i++) {
        CU_ASSERT_EQUAL_FATAL(redisGetReply(sub, (void **)&r), REDIS_OK);
        char want[128];
        snprintf(want, sizeof want, "{\"channel\":\"many\",\"offset\":%d,\"epoch\":\"%s\"}\n%s",
                 i + 1, first.epoch, data[i % 5]);
        if (r->elements != 3 || strcmp(r->element[2]->str, want) != 0)
            bad++;
        freeReplyObject(r);
    }
    CU_ASSERT_EQUAL(bad, 0);
    redisFree(sub);
    daebus__chist_result res;
    CU_ASSERT_EQUAL(daebus__chist_since(hist, "many", 3, first.epoch, 0, &res), 0);
    CU_ASSERT(res.recovered && res.n == 7 && res.msgs[0].offset == 4 && res.msgs[0].len == 4);
    daebus__chist_result_free(&res);
    /* with an age bound */
    p.bounds.max_age = 60;
    CU_ASSERT_EQUAL(daebus__chist_publish_many(hist, &p, data, lens, 3, &second), 0);
    CU_ASSERT_EQUAL(second.offset, 11);
    /* a NULL message: nothing added */
    const char *holed[2] = {"x", NULL};
    CU_ASSERT_EQUAL(daebus__chist_publish_many(hist, &p, holed, lens, 2, &second), DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(daebus__chist_position(hist, "many", &second), 0);
    CU_ASSERT_EQUAL(second.offset, 13);
    CU_ASSERT_EQUAL(daebus__chist_publish_many(hist, &p, data, lens, 0, &second), DAEBUS_EINVAL);
}

/* --- script cache lost, Redis restarted, Redis down ------------------------ */

static void test_script_flush_reloads(void)
{
    daebus__chist_stats st0, st1;
    daebus__chist_get_stats(hist, &st0);
    cmd_drop("SCRIPT FLUSH");
    daebus__chist_pos pos;
    CU_ASSERT_EQUAL(pub("sf", "x", 0, &pos), 0);
    CU_ASSERT_EQUAL(pos.offset, 1);
    daebus__chist_get_stats(hist, &st1);
    CU_ASSERT_EQUAL(st1.script_loads, st0.script_loads + 1);
}

static void test_restart_and_down(void)
{
    daebus__chist_pos before, after;
    CU_ASSERT_EQUAL(pub("rs", "a", 0, &before), 0);
    ts_redis_kill(&redis);
    /* down: a clear code, for publish, since and position, no crash */
    CU_ASSERT_EQUAL(pub("rs", "b", 0, &after), DAEBUS_ECONN);
    daebus__chist_result res;
    CU_ASSERT_EQUAL(daebus__chist_since(hist, "rs", 0, before.epoch, 0, &res), DAEBUS_ECONN);
    CU_ASSERT(!res.recovered && res.n == 0 && res.msgs == NULL);
    daebus__chist_result_free(&res);
    CU_ASSERT_EQUAL(daebus__chist_position(hist, "rs", &after), DAEBUS_ECONN);
    daebus__chist_stats st;
    daebus__chist_get_stats(hist, &st);
    CU_ASSERT(st.failed >= 3);
    /* back without persistence: a new epoch, the script loaded again */
    CU_ASSERT_EQUAL_FATAL(ts_redis_restart(&redis), 0);
    int rc = -1;
    TS_WAIT_UNTIL((rc = pub("rs", "c", 0, &after)) == 0, 5);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_EQUAL(after.offset, 1);
    CU_ASSERT_STRING_NOT_EQUAL(after.epoch, before.epoch);
    CU_ASSERT_EQUAL(daebus__chist_since(hist, "rs", 1, before.epoch, 0, &res), 0);
    CU_ASSERT(!res.recovered);
    daebus__chist_result_free(&res);
}

/* --- bad input --------------------------------------------------------------- */

static void test_bad_input(void)
{
    char big[DAEBUS__CHIST_NAME_MAX + 2];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    daebus__chist_pos pos;
    CU_ASSERT_EQUAL(pub("", "x", 0, &pos), DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(pub(NULL, "x", 0, &pos), DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(pub(big, "x", 0, &pos), DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(pub("a\nb", "x", 0, &pos), DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(pub("bad\xff", "x", 0, &pos), DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(pub("ok", NULL, 0, &pos), DAEBUS_EINVAL);
    big[DAEBUS__CHIST_NAME_MAX] = '\0'; /* exactly the maximum: fine */
    CU_ASSERT_EQUAL(pub(big, "x", 0, &pos), 0);
    daebus__chist_pub p = {.channel = "ok", .data = "x", .len = DAEBUS__CHIST_DATA_MAX + 1};
    CU_ASSERT_EQUAL(daebus__chist_publish(hist, &p, &pos), DAEBUS_ETOOBIG);
    p.len = 1;
    p.bounds.max_age = -1;
    CU_ASSERT_EQUAL(daebus__chist_publish(hist, &p, &pos), DAEBUS_EINVAL);
    daebus__chist_result res;
    CU_ASSERT_EQUAL(daebus__chist_since(hist, "", 0, "e", 0, &res), DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(daebus__chist_since(hist, "ok", 0, NULL, 0, &res), DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(daebus__chist_since(hist, "ok", 0, "e", DAEBUS__CHIST_LIMIT_MAX + 1, &res),
                    DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(daebus__chist_position(hist, NULL, &pos), DAEBUS_EINVAL);
    /* a client's nonsense position: answered, not recovered */
    CU_ASSERT_EQUAL(pub("ok", "x", 0, &pos), 0);
    CU_ASSERT_EQUAL(daebus__chist_since(hist, "ok", ~0ULL, pos.epoch, 0, &res), 0);
    CU_ASSERT(!res.recovered && res.n == 0);
    daebus__chist_result_free(&res);
    CU_ASSERT_EQUAL(daebus__chist_since(hist, "ok", 0, "\"'}\n\xff", 0, &res), 0);
    CU_ASSERT(!res.recovered && res.n == 0 && strcmp(res.now.epoch, pos.epoch) == 0);
    daebus__chist_result_free(&res);
    /* a batch: the bad one refused, the others published */
    daebus__chist_pub b[3] = {{.channel = "bt", .data = "1", .len = 1},
                              {.channel = "", .data = "2", .len = 1},
                              {.channel = "bt", .data = "3", .len = 1}};
    int rcs[3];
    daebus__chist_pos outs[3];
    CU_ASSERT_EQUAL(daebus__chist_publish_batch(hist, b, 3, outs, rcs), DAEBUS_EINVAL);
    CU_ASSERT(rcs[0] == 0 && rcs[1] == DAEBUS_EINVAL && rcs[2] == 0);
    CU_ASSERT(outs[0].offset == 1 && outs[2].offset == 2);
    /* nothing of a refused channel name reached Redis */
    redisReply *r = cmd("EXISTS daebus:" SVC ":ch::epoch");
    CU_ASSERT(r && r->integer == 0);
    freeReplyObject(r);
}

int main(void)
{
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("channel_history", init, cleanup);
    CU_add_test(s, "offsets from 1, two threads, stream order", test_offsets_two_threads);
    CU_add_test(s, "since: exactly the messages after N", test_since_exact);
    CU_add_test(s, "the envelope published", test_envelope_published);
    CU_add_test(s, "trimmed by count: not recovered", test_trimmed_not_recovered);
    CU_add_test(s, "trimmed by age", test_age_trim);
    CU_add_test(s, "FLUSHALL: a new epoch", test_flushall_new_epoch);
    CU_add_test(s, "partial loss: no offset reused", test_partial_loss_no_reuse);
    CU_add_test(s, "one EVALSHA per publish", test_one_round_trip);
    CU_add_test(s, "many messages in one EVALSHA", test_publish_many);
    CU_add_test(s, "script cache flushed: reloaded", test_script_flush_reloads);
    CU_add_test(s, "Redis down, restarted: ECONN, new epoch", test_restart_and_down);
    CU_add_test(s, "bad input refused", test_bad_input);
    return ts_run_cunit();
}
