/* A connection that writes to a demoted master (a Redis that became a
 * replica: Sentinel failover, docs/operations.md "Redis Sentinel") gets
 * "-READONLY ..." replies: the publisher pool and the claim line treat it as
 * lost (closed; the next use connects again, through the sentinels for a
 * redis-sentinel:// URL). Here a private redis-server is turned into a
 * replica of a dead address with REPLICAOF and back with REPLICAOF NO ONE;
 * CLIENT ID tells whether a connection is the old one. */
#include <string.h>
#include "daebus/daebus.h"
#include "redis_pub.h"
#include "redis_sentinel.h"
#include "redis_fixture.h"

/* Runs one command on a connection of its own (the operator's). */
static void admin(const char *a0, const char *a1, const char *a2)
{
    redisContext *c = redisConnect("127.0.0.1", redis.port);
    CU_ASSERT_FATAL(c && !c->err);
    redisReply *r = redisCommand(c, "%s %s %s", a0, a1, a2);
    CU_ASSERT(r && r->type != REDIS_REPLY_ERROR);
    if (r)
        freeReplyObject(r);
    redisFree(c);
}

static void demote(void)
{
    char port[16];
    snprintf(port, sizeof port, "%d", ts_free_port()); /* nobody there: stays a replica */
    admin("REPLICAOF", "127.0.0.1", port);
}

static void promote(void)
{
    admin("REPLICAOF", "NO", "ONE");
}

static daebus__redis_cmd cmd2(const char **argv, size_t *len, const char *a0, const char *a1)
{
    argv[0] = a0;
    argv[1] = a1;
    len[0] = strlen(a0);
    len[1] = a1 ? strlen(a1) : 0;
    return (daebus__redis_cmd){a1 ? 2 : 1, argv, len};
}

/* CLIENT ID of a pool connection, or -1. */
static long long pub_client_id(daebus__redis_pub *p)
{
    const char *argv[2];
    size_t len[2];
    daebus__redis_cmd c = cmd2(argv, len, "CLIENT", "ID");
    redisReply *r = NULL;
    if (daebus__redis_pub_pipeline(p, &c, 1, &r) != 0)
        return -1;
    long long id = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    return id;
}

static void test_reply_demoted(void)
{
    redisReply r = {.type = REDIS_REPLY_ERROR, .str = "READONLY You can't write"};
    CU_ASSERT_TRUE(daebus__redis_reply_demoted(&r));
    r.str = "LOADING Redis is loading";
    CU_ASSERT_TRUE(daebus__redis_reply_demoted(&r));
    r.str = "ERR wrong number of arguments";
    CU_ASSERT_FALSE(daebus__redis_reply_demoted(&r));
    r.type = REDIS_REPLY_STATUS;
    r.str = "READONLY";
    CU_ASSERT_FALSE(daebus__redis_reply_demoted(&r));
    CU_ASSERT_FALSE(daebus__redis_reply_demoted(NULL));
}

static void test_pub_readonly(void)
{
    daebus__redis_pub_opts o = {&url, 1, 2.0, 2.0, 0.0, "test"};
    daebus__redis_pub *p = daebus__redis_pub_create(&o);
    long long id1 = pub_client_id(p);
    CU_ASSERT(id1 > 0);
    CU_ASSERT_EQUAL(pub_client_id(p), id1); /* the connection is kept */
    demote();
    const char *argv[2];
    size_t len[2];
    daebus__redis_cmd c = cmd2(argv, len, "INCR", "ro:pub");
    redisReply *r = NULL;
    CU_ASSERT_EQUAL_FATAL(daebus__redis_pub_pipeline(p, &c, 1, &r), 0);
    CU_ASSERT(r->type == REDIS_REPLY_ERROR && strncmp(r->str, "READONLY", 8) == 0);
    freeReplyObject(r);
    promote();
    long long id2 = pub_client_id(p);
    CU_ASSERT(id2 > id1); /* a new connection */
    daebus__redis_pub_destroy(p);
}

static void test_line_readonly(void)
{
    daebus__redis_line *l = line_new();
    daebus__redis_line_repair(l);
    const char *argv[2];
    size_t len[2];
    daebus__redis_cmd id = cmd2(argv, len, "CLIENT", "ID");
    redisReply *r = NULL;
    CU_ASSERT_EQUAL_FATAL(daebus__redis_line_wait(l, daebus__redis_line_send(l, &id, 1), &r, 1), 0);
    long long id1 = r->integer;
    freeReplyObject(r);
    demote();
    const char *argv2[2];
    size_t len2[2];
    daebus__redis_cmd incr = cmd2(argv2, len2, "INCR", "ro:line");
    unsigned long long t = daebus__redis_line_send(l, &incr, 1);
    CU_ASSERT(t > 0);
    /* The reply is given to its ticket; the connection is dropped after it. */
    CU_ASSERT_EQUAL_FATAL(daebus__redis_line_wait(l, t, &r, 1), 0);
    CU_ASSERT(r->type == REDIS_REPLY_ERROR && strncmp(r->str, "READONLY", 8) == 0);
    freeReplyObject(r);
    CU_ASSERT_EQUAL(daebus__redis_line_send(l, &id, 1), 0); /* down until repaired */
    promote();
    ts_sleep_ms(10);
    daebus__redis_line_repair(l);
    t = daebus__redis_line_send(l, &id, 1);
    CU_ASSERT_EQUAL_FATAL(daebus__redis_line_wait(l, t, &r, 1), 0);
    CU_ASSERT(r->integer > id1);
    freeReplyObject(r);
    daebus__redis_line_destroy(l);
}

int main(void)
{
    daebus_log_set_level(DAEBUS_LOG_ERROR);
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("redis readonly", init, cleanup);
    CU_add_test(s, "demoted replies", test_reply_demoted);
    CU_add_test(s, "publisher pool", test_pub_readonly);
    CU_add_test(s, "claim line", test_line_readonly);
    return ts_run_cunit();
}
