/* test_ws_cluster.c - WebSocket across replicas (docs/replicas.md): the calls.
 *
 * Three real ws_cluster_service replicas on a private redis-server, nine
 * python-websockets clients a0..a8 (ai on replica i % 3). Each call of the
 * WebSocket API is driven on a chosen replica (POST /op) and reaches its
 * clients on every replica exactly once: broadcast_to_all (one PUBLISH per
 * call, queued: the calls of one thread, and a send after them, arrive in
 * order; the call returns at once while Redis is frozen), send_to_client, broadcast_to_clients (one PUBLISH per replica that
 * holds recipients), broadcast_to_filter over the cluster-wide metadata,
 * disconnect_client (the departed path runs once, on the holder);
 * set_client_data is visible from every replica; the cluster views agree on
 * every replica; an id in use on another replica is refused (409). */
#define _GNU_SOURCE
#include "wsc_common.h"

#define NCLIENTS 9

static const char *const ids_all =
    "[\"a0\",\"a1\",\"a2\",\"a3\",\"a4\",\"a5\",\"a6\",\"a7\",\"a8\"]";
static cJSON *record; /* the holder's record, read at the end */

static int init(void)
{
    return wsc_init("test_ws_cluster");
}

static int cleanup(void)
{
    cJSON_Delete(record);
    return wsc_cleanup();
}

/* Does replica i see exactly the n clients a0..a(n-1) but skip? */
static int view_is(int i, int n, int skip)
{
    cJSON *o = wsc_op(i, "{\"op\":\"view\"}");
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(o, "clients");
    int ok = wsc_num(o, "rc") == 0 && wsc_num(o, "count") == n - (skip >= 0) &&
             cJSON_GetArraySize(ids) == n - (skip >= 0);
    for (int k = 0; ok && k < n; k++) {
        char id[16];
        snprintf(id, sizeof id, "a%d", k);
        int found = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, ids) found += cJSON_IsString(e) && strcmp(e->valuestring, id) == 0;
        ok = found == (k == skip ? 0 : 1);
    }
    cJSON_Delete(o);
    return ok;
}

static double published(int i)
{
    return wsc_op_num(i, "cluster_published", "{\"op\":\"stats\"}");
}

static void test_start_and_views(void)
{
    for (int i = 0; i < 3; i++)
        wsc_start(i);
    for (int i = 0; i < 3; i++) {
        TS_WAIT_UNTIL(wsc_answers(i), 15);
        if (!wsc_answers(i))
            wsc_explain(i);
        CU_ASSERT_FATAL(wsc_answers(i));
    }
    CU_ASSERT_FATAL(wsc_holder_start(NCLIENTS, 3, "a") == 0);
    for (int i = 0; i < 3; i++) {
        TS_WAIT_UNTIL(view_is(i, NCLIENTS, -1), 10);
        CU_ASSERT(view_is(i, NCLIENTS, -1));
        cJSON *o = wsc_op(i, "{\"op\":\"view\"}");
        CU_ASSERT(wsc_num(o, "local_count") == 3);
        cJSON_Delete(o);
    }
    /* Metadata of a4 (on replica 1) from every replica: same instance, path. */
    cJSON *m[3];
    for (int i = 0; i < 3; i++) {
        cJSON *o = wsc_op(i, "{\"op\":\"meta\",\"id\":\"a4\"}");
        CU_ASSERT(wsc_num(o, "rc") == 0);
        m[i] = cJSON_DetachItemFromObject(o, "meta");
        cJSON_Delete(o);
        const cJSON *path = cJSON_GetObjectItemCaseSensitive(m[i], "path");
        CU_ASSERT(cJSON_IsString(path) && strcmp(path->valuestring, "/ws") == 0);
        CU_ASSERT(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(m[i], "last_activity")));
    }
    const cJSON *inst0 = cJSON_GetObjectItemCaseSensitive(m[0], "instance_id");
    CU_ASSERT(cJSON_IsString(inst0) && inst0->valuestring[0]);
    for (int i = 1; i < 3; i++)
        CU_ASSERT(cJSON_Compare(inst0, cJSON_GetObjectItemCaseSensitive(m[i], "instance_id"), 1));
    for (int i = 0; i < 3; i++)
        cJSON_Delete(m[i]);
    cJSON *o = wsc_op(0, "{\"op\":\"meta\",\"id\":\"ghost\"}");
    CU_ASSERT(wsc_num(o, "rc") == DAEBUS_ENOENT);
    cJSON_Delete(o);
}

static void test_broadcast_to_all(void)
{
    double before = published(0);
    CU_ASSERT(wsc_op_num(0, "rc", "{\"op\":\"all\",\"seq\":1}") == 3); /* its local clients */
    /* One PUBLISH, sent by the publisher thread just after the call. */
    TS_WAIT_UNTIL(published(0) - before >= 1, 5);
    ts_sleep_ms(100);
    CU_ASSERT(published(0) - before == 1);
    CU_ASSERT(wsc_op_num(2, "rc", "{\"op\":\"all\",\"seq\":2}") == 3);
}

#define BURST 200

static void test_broadcast_order(void)
{
    /* 200 broadcasts then a direct send to a1 (replica 1), back to back on
     * one thread of replica 0: queued without waiting for Redis, they reach
     * every replica's clients in that order (checked at the end). */
    double before = published(0);
    cJSON *o = wsc_op(0, "{\"op\":\"burst\",\"n\":%d,\"id\":\"a1\"}", BURST);
    CU_ASSERT(wsc_num(o, "rc") == 0);
    cJSON_Delete(o);
    TS_WAIT_UNTIL(published(0) - before >= BURST + 1, 10);
    CU_ASSERT(published(0) - before == BURST + 1);
}

static void test_broadcast_redis_frozen(void)
{
    /* Redis stopped (SIGSTOP): broadcast_to_all returns at once with its
     * local count (it used to wait for the PUBLISH, up to the 2 s command
     * time-out, then return DAEBUS_ECONN); the other replicas' clients get
     * the broadcast once Redis runs again (checked at the end). */
    kill(wsc_redis.pid, SIGSTOP);
    double t0 = ts_now();
    double rc = wsc_op_num(1, "rc", "{\"op\":\"all\",\"seq\":3}");
    double took = ts_now() - t0;
    ts_sleep_ms(200);
    kill(wsc_redis.pid, SIGCONT);
    printf("\n  broadcast_to_all with Redis frozen: %.3f s\n", took);
    CU_ASSERT(rc == 3);
    CU_ASSERT(took < 1.5);
}

static void test_send_to_client(void)
{
    cJSON *o = wsc_op(1, "{\"op\":\"send\",\"kind\":\"d\",\"seq\":1,\"ids\":%s}", ids_all);
    const cJSON *rc;
    int n = 0;
    cJSON_ArrayForEach(rc, cJSON_GetObjectItemCaseSensitive(o, "rcs"))
    {
        CU_ASSERT(cJSON_IsNumber(rc) && rc->valueint == 0);
        n++;
    }
    CU_ASSERT(n == NCLIENTS);
    cJSON_Delete(o);
    o = wsc_op(0, "{\"op\":\"send\",\"kind\":\"d\",\"seq\":9,\"ids\":[\"ghost\"]}");
    CU_ASSERT(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, "rcs"), 0)->valueint ==
              DAEBUS_ENOENT);
    cJSON_Delete(o);
}

static void test_broadcast_to_clients(void)
{
    double before = published(2);
    cJSON *o = wsc_op(2, "{\"op\":\"clients\",\"seq\":1,\"ids\":[\"a0\",\"a1\",\"a3\",\"a4\","
                         "\"a2\",\"ghost\"]}");
    CU_ASSERT(wsc_num(o, "rc") == 5);
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(o, "results");
    for (int i = 0; i < 6; i++)
        CU_ASSERT(cJSON_IsTrue(cJSON_GetArrayItem(res, i)) == (i < 5));
    cJSON_Delete(o);
    /* a0, a3 on replica 0; a1, a4 on replica 1; a2 local: two PUBLISHes. */
    CU_ASSERT(published(2) - before == 2);
}

static int filter_is(int i)
{
    cJSON *o = wsc_op(i, "{\"op\":\"by_filter\",\"key\":\"room\",\"value\":\"x\"}");
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(o, "ids");
    int n = cJSON_GetArraySize(ids), a0 = 0, a4 = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, ids)
    {
        a0 += strcmp(e->valuestring, "a0") == 0;
        a4 += strcmp(e->valuestring, "a4") == 0;
    }
    int ok = wsc_num(o, "rc") == 0 && n == 2 && a0 == 1 && a4 == 1;
    cJSON_Delete(o);
    return ok;
}

static void test_client_data_and_filters(void)
{
    CU_ASSERT(wsc_op_num(0, "rc",
                         "{\"op\":\"set\",\"id\":\"a4\",\"key\":\"room\",\"value\":\"x\"}") == 0);
    CU_ASSERT(wsc_op_num(2, "rc",
                         "{\"op\":\"set\",\"id\":\"a0\",\"key\":\"room\",\"value\":\"x\"}") == 0);
    CU_ASSERT(wsc_op_num(1, "rc",
                         "{\"op\":\"set\",\"id\":\"a2\",\"key\":\"room\",\"value\":\"y\"}") == 0);
    CU_ASSERT(
        wsc_op_num(1, "rc", "{\"op\":\"set\",\"id\":\"ghost\",\"key\":\"room\",\"value\":1}") ==
        DAEBUS_ENOENT);
    /* Visible from every replica, and in the holder's local copy. */
    for (int i = 0; i < 3; i++) {
        cJSON *o = wsc_op(i, "{\"op\":\"get\",\"id\":\"a4\",\"key\":\"room\"}");
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "value");
        CU_ASSERT(cJSON_IsString(v) && strcmp(v->valuestring, "x") == 0);
        cJSON_Delete(o);
    }
    cJSON *o = NULL;
    const cJSON *room = NULL;
    TS_WAIT_UNTIL((cJSON_Delete(o), o = wsc_op(1, "{\"op\":\"local_meta\",\"id\":\"a4\"}"),
                   room = cJSON_GetObjectItemCaseSensitive(
                       cJSON_GetObjectItemCaseSensitive(o, "meta"), "room"),
                   cJSON_IsString(room)),
                  5);
    CU_ASSERT(cJSON_IsString(room) && strcmp(room->valuestring, "x") == 0);
    cJSON_Delete(o);
    for (int i = 0; i < 3; i++)
        CU_ASSERT(filter_is(i));
    CU_ASSERT(wsc_op_num(2, "rc",
                         "{\"op\":\"filter\",\"key\":\"room\",\"value\":\"x\","
                         "\"seq\":1}") == 2);
}

static void test_id_collision(void)
{
    char cmd[1400];
    for (int i = 0; i < 3; i++) {
        /* a0 is held by replica 0: refused there (as today) and on the others. */
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s collide %d a0", wsc_script,
                 wsc_procs[i].port);
        CU_ASSERT(system(cmd) == 0);
    }
    for (int i = 0; i < 3; i++)
        CU_ASSERT(view_is(i, NCLIENTS, -1));
}

static void test_connected_and_disconnect(void)
{
    cJSON *o = wsc_op(0, "{\"op\":\"connected\",\"id\":\"a5\"}");
    CU_ASSERT(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "connected")));
    cJSON_Delete(o);
    o = wsc_op(0, "{\"op\":\"connected\",\"id\":\"ghost\"}");
    CU_ASSERT(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(o, "connected")));
    cJSON_Delete(o);
    /* a5 is on replica 2; disconnected from replica 0. */
    CU_ASSERT(wsc_op_num(0, "rc", "{\"op\":\"disconnect\",\"id\":\"a5\",\"code\":4001}") == 0);
    for (int i = 0; i < 3; i++) {
        TS_WAIT_UNTIL(view_is(i, NCLIENTS, 5), 5);
        CU_ASSERT(view_is(i, NCLIENTS, 5));
    }
    TS_WAIT_UNTIL(wsc_departed_count(2, 0) == 1, 5);
    CU_ASSERT(wsc_departed_count(2, 0) == 1);
    CU_ASSERT(wsc_departed_count(2, 1) == 0);
    CU_ASSERT(wsc_departed_count(0, -1) == 0);
    CU_ASSERT(wsc_departed_count(1, -1) == 0);
    CU_ASSERT(wsc_op_num(0, "rc", "{\"op\":\"disconnect\",\"id\":\"a5\",\"code\":4001}") ==
              DAEBUS_ENOENT);
}

/* Do replica 0's cluster metadata of replica 1's clients (a1, a4, a7) say
 * what their local metadata says of the messages sent to them? */
static int activity_agrees(void)
{
    int ok = 1;
    for (int k = 1; ok && k < NCLIENTS; k += 3) {
        cJSON *r = wsc_op(0, "{\"op\":\"meta\",\"id\":\"a%d\"}", k);
        cJSON *l = wsc_op(1, "{\"op\":\"local_meta\",\"id\":\"a%d\"}", k);
        const cJSON *rs = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(r, "meta"), "messages_sent");
        const cJSON *ls = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(l, "meta"), "messages_sent");
        ok = cJSON_IsNumber(rs) && cJSON_IsNumber(ls) && rs->valuedouble == ls->valuedouble &&
             ls->valuedouble > BURST;
        cJSON_Delete(r);
        cJSON_Delete(l);
    }
    return ok;
}

static void test_activity_in_directory(void)
{
    /* A client that only receives has messages_sent written at most every 5
     * heartbeats, every changed client of a replica in one script call. */
    TS_WAIT_UNTIL(activity_agrees(), 5 * wsc_heartbeat + 5);
    CU_ASSERT(activity_agrees());
}

static void test_each_message_once(void)
{
    ts_sleep_ms(300); /* frames in flight */
    record = wsc_holder_stop();
    CU_ASSERT_FATAL(record != NULL);
    for (int i = 0; i < NCLIENTS; i++) {
        char id[16];
        snprintf(id, sizeof id, "a%d", i);
        CU_ASSERT(wsc_got(record, id, "a", 1) == 1);
        CU_ASSERT(wsc_got(record, id, "a", 2) == 1);
        CU_ASSERT(wsc_got(record, id, "a", 3) == 1);
        CU_ASSERT(wsc_in_order(record, id, BURST, i == 1));
        CU_ASSERT(wsc_got(record, id, "d", 1) == 1);
        CU_ASSERT(wsc_got(record, id, "c", 1) == (i <= 4 ? 1 : 0));
        CU_ASSERT(wsc_got(record, id, "f", 1) == (i == 0 || i == 4 ? 1 : 0));
        if (CU_get_number_of_failures())
            printf("\n  client %s: %s\n", id,
                   cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(record, id)));
    }
    const cJSON *closed =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(record, "a5"), "closed");
    CU_ASSERT(cJSON_IsNumber(closed) && closed->valueint == 4001);
}

static void test_graceful_stop(void)
{
    /* Every client is gone (the holder stopped): the directory empties, and
     * each replica leaves cleanly. */
    for (int i = 0; i < 3; i++)
        CU_ASSERT(wsc_stop(i) == 0);
    CU_ASSERT(wsc_directory_keys() == 0);
}

static void test_single_process(void)
{
    /* Without a bus: one process; the departed path still runs (not died),
     * the cluster views are the local ones. */
    wsc_start_opt(3, true);
    TS_WAIT_UNTIL(wsc_view_count(3) >= 0, 15); /* no bus: the holder retries a 503 */
    CU_ASSERT_FATAL(wsc_view_count(3) >= 0);
    cJSON *o = wsc_op(3, "{\"op\":\"stats\"}");
    CU_ASSERT(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(o, "cluster")));
    cJSON_Delete(o);
    wsc_procs[0] = wsc_procs[3]; /* the holder connects to replica 0's port */
    CU_ASSERT_FATAL(wsc_holder_start(2, 1, "s") == 0);
    CU_ASSERT(wsc_view_count(3) == 2);
    CU_ASSERT(wsc_op_num(3, "rc", "{\"op\":\"all\",\"seq\":1}") == 2);
    cJSON_Delete(wsc_holder_stop());
    wsc_procs[0].pid = -1;
    TS_WAIT_UNTIL(wsc_departed_count(3, 0) == 2, 5);
    CU_ASSERT(wsc_departed_count(3, 0) == 2);
    CU_ASSERT(wsc_departed_count(3, 1) == 0);
    CU_ASSERT(wsc_view_count(3) == 0);
    CU_ASSERT(wsc_stop(3) == 0);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("ws_cluster", init, cleanup);
    CU_add_test(s, "three replicas: the cluster views agree", test_start_and_views);
    CU_add_test(s, "broadcast_to_all: every client once, one PUBLISH", test_broadcast_to_all);
    CU_add_test(s, "broadcasts then a send from one thread arrive in order", test_broadcast_order);
    CU_add_test(s, "broadcast_to_all does not wait for Redis (frozen)",
                test_broadcast_redis_frozen);
    CU_add_test(s, "send_to_client wherever the client is", test_send_to_client);
    CU_add_test(s, "broadcast_to_clients: one PUBLISH per replica", test_broadcast_to_clients);
    CU_add_test(s, "set_client_data visible everywhere; filters", test_client_data_and_filters);
    CU_add_test(s, "an id in use on another replica is refused", test_id_collision);
    CU_add_test(s, "is_client_connected, disconnect_client, departed once",
                test_connected_and_disconnect);
    CU_add_test(s, "the directory gets the clients' activity", test_activity_in_directory);
    CU_add_test(s, "every message reached its clients exactly once", test_each_message_once);
    CU_add_test(s, "graceful stops leave an empty directory", test_graceful_stop);
    CU_add_test(s, "one process without a bus: departed runs, local views", test_single_process);
    return ts_run_cunit();
}
