/* The publisher pool's liveness check (issue 18): a connection is polled
 * before use only when it was idle for over a second or when a connection was
 * found lost somewhere in the process since it was last known good
 * (daebus__redis_fault_note(): the subscriber thread notices a Redis restart
 * at once). A connection used within the last second is used without a poll:
 * one system call less per PUBLISH. CLIENT KILL (the operator's connection)
 * closes the pool's connection; CLIENT ID tells whether a connection is new. */
#include <stdio.h>
#include <string.h>
#include "daebus/daebus.h"
#include "redis_conn.h"
#include "redis_pub.h"
#include "redis_fixture.h"

static void kill_client(long long id)
{
    redisContext *c = redisConnect("127.0.0.1", redis.port);
    CU_ASSERT_FATAL(c && !c->err);
    redisReply *r = redisCommand(c, "CLIENT KILL ID %lld", id);
    CU_ASSERT(r && r->type == REDIS_REPLY_INTEGER && r->integer == 1);
    if (r)
        freeReplyObject(r);
    redisFree(c);
}

/* CLIENT ID of the pool's connection; -1 and *rc set when the call failed. */
static long long pub_client_id(daebus__redis_pub *p, int *rc)
{
    const char *argv[2] = {"CLIENT", "ID"};
    size_t len[2] = {6, 2};
    daebus__redis_cmd c = {2, argv, len};
    redisReply *r = NULL;
    *rc = daebus__redis_pub_pipeline(p, &c, 1, &r);
    if (*rc != 0)
        return -1;
    long long id = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    return id;
}

static daebus__redis_pub *pool_of_one(void)
{
    daebus__redis_pub_opts o = {&url, 1, 2.0, 2.0, 0.0, "test"};
    return daebus__redis_pub_create(&o);
}

static void test_idle_connection_checked(void)
{
    daebus__redis_pub *p = pool_of_one();
    int rc;
    long long id1 = pub_client_id(p, &rc);
    CU_ASSERT_FATAL(id1 > 0);
    kill_client(id1);
    ts_sleep_ms(1200); /* idle past the re-check time */
    CU_ASSERT(daebus__redis_publish(p, "recheck:nobody", "x", 1) >= 0); /* reconnected first */
    long long id2 = pub_client_id(p, &rc);
    CU_ASSERT(id2 > id1);
    daebus__redis_pub_destroy(p);
}

static void test_fault_elsewhere_checked(void)
{
    daebus__redis_pub *p = pool_of_one();
    int rc;
    long long id1 = pub_client_id(p, &rc);
    CU_ASSERT_FATAL(id1 > 0);
    kill_client(id1);
    daebus__redis_fault_note(); /* what a subscriber does when its connection is lost */
    CU_ASSERT(daebus__redis_publish(p, "recheck:nobody", "x", 1) >= 0); /* reconnected first */
    long long id2 = pub_client_id(p, &rc);
    CU_ASSERT(id2 > id1);
    daebus__redis_pub_destroy(p);
}

/* Without a poll, a connection killed right after its last use is found by
 * the next command itself: that call fails with DAEBUS_ECONN (as a call whose
 * connection dies while it runs), the connection is dropped and the call
 * after it connects again. */
static void test_recent_connection_not_polled(void)
{
    daebus__redis_pub *p = pool_of_one();
    int rc;
    long long id1 = pub_client_id(p, &rc);
    CU_ASSERT_FATAL(id1 > 0);
    unsigned faults = daebus__redis_faults();
    kill_client(id1);
    ts_sleep_ms(20); /* the close has surely arrived: a poll would see it */
    CU_ASSERT_EQUAL(pub_client_id(p, &rc), -1);
    CU_ASSERT_EQUAL(rc, DAEBUS_ECONN);
    CU_ASSERT(daebus__redis_faults() != faults); /* the drop is noted */
    long long id2 = pub_client_id(p, &rc);
    CU_ASSERT(id2 > id1);
    daebus__redis_pub_destroy(p);
}

int main(void)
{
    daebus_log_set_level(DAEBUS_LOG_ERROR);
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("publisher re-check", init, cleanup);
    CU_add_test(s, "a connection idle over 1 s is checked before use",
                test_idle_connection_checked);
    CU_add_test(s, "a lost connection elsewhere makes the next use check",
                test_fault_elsewhere_checked);
    CU_add_test(s, "a connection used within 1 s is not polled", test_recent_connection_not_polled);
    return ts_run_cunit();
}
