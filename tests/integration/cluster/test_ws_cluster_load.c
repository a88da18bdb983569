/* test_ws_cluster_load.c - WebSocket across replicas under failures
 * (docs/replicas.md). WSC_N python-websockets clients l0.. spread over three
 * ws_cluster_service replicas (li on replica i % 3), heartbeat 1 s:
 * broadcasts and direct sends from every replica; replica 2 killed with -9:
 * its clients leave both survivors' views and departed runs once per client
 * (replica_died, on one survivor) within 3 heartbeats; Redis killed: local
 * sends and broadcasts still work, cross-replica ones return DAEBUS_ECONN and
 * are counted; Redis restarted: the views are whole again; at the end every
 * message to a live client was delivered exactly once (counted per client
 * and sequence number). Built twice: 1,000 clients (label no-asan) and 30. */
#define _GNU_SOURCE
#include "wsc_common.h"

#ifndef WSC_N
#define WSC_N 30
#endif
/* Slack on top of 3 heartbeats for the HTTP polls of a loaded machine. */
#define SLACK 1.0

static cJSON *record;
static char *ids_live; /* JSON array of the ids not on replica 2 */
static char *ids_every;
static int n_dead, n_live;

static int init(void)
{
    return wsc_init(WSC_N > 100 ? "test_ws_cluster_load" : "test_ws_cluster_small");
}

static int cleanup(void)
{
    cJSON_Delete(record);
    free(ids_live);
    free(ids_every);
    return wsc_cleanup();
}

static char *ids_json(bool with_dead)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < WSC_N; i++) {
        char id[16];
        snprintf(id, sizeof id, "l%d", i);
        if (with_dead || i % 3 != 2)
            cJSON_AddItemToArray(a, cJSON_CreateString(id));
    }
    char *s = cJSON_PrintUnformatted(a);
    cJSON_Delete(a);
    return s;
}

static int views_are(int n, int nprocs)
{
    for (int i = 0; i < nprocs; i++)
        if (wsc_view_count(i) != n)
            return 0;
    return 1;
}

/* The send /op from replica i to ids; returns how many rcs equal want. */
static int send_all(int i, const char *ids, int seq, int want)
{
    cJSON *o = wsc_op(i, "{\"op\":\"send\",\"kind\":\"d\",\"seq\":%d,\"ids\":%s}", seq, ids);
    int n = 0;
    const cJSON *rc;
    cJSON_ArrayForEach(rc, cJSON_GetObjectItemCaseSensitive(o, "rcs")) n +=
        cJSON_IsNumber(rc) && rc->valueint == want;
    cJSON_Delete(o);
    return n;
}

static void test_start(void)
{
    for (int i = 0; i < WSC_N; i++)
        n_dead += i % 3 == 2;
    n_live = WSC_N - n_dead;
    ids_live = ids_json(false);
    ids_every = ids_json(true);
    for (int i = 0; i < 3; i++)
        wsc_start(i);
    for (int i = 0; i < 3; i++) {
        TS_WAIT_UNTIL(wsc_answers(i), 15);
        if (!wsc_answers(i))
            wsc_explain(i);
        CU_ASSERT_FATAL(wsc_answers(i));
    }
    CU_ASSERT_FATAL(wsc_holder_start(WSC_N, 3, "l") == 0);
    TS_WAIT_UNTIL(views_are(WSC_N, 3), 15);
    CU_ASSERT_FATAL(views_are(WSC_N, 3));
}

static void test_traffic(void)
{
    for (int s = 1; s <= 3; s++) {
        char body[64];
        snprintf(body, sizeof body, "{\"op\":\"all\",\"seq\":%d}", s);
        CU_ASSERT(wsc_op_num(s % 3, "rc", body) >= 0);
    }
    CU_ASSERT(send_all(0, ids_every, 1, 0) == WSC_N);
    cJSON *o = wsc_op(1, "{\"op\":\"clients\",\"seq\":1,\"ids\":%s}", ids_every);
    CU_ASSERT(wsc_num(o, "rc") == WSC_N);
    cJSON_Delete(o);
    ts_sleep_ms(500); /* delivered before replica 2 dies */
}

static int departed_total(void)
{
    return wsc_departed_count(0, 1) + wsc_departed_count(1, 1);
}

/* Each client of replica 2 departed exactly once (survivors together). */
static void check_departed_once(void)
{
    int *seen = calloc(WSC_N, sizeof *seen);
    for (int r = 0; r < 2; r++) {
        cJSON *o = wsc_op(r, "{\"op\":\"stats\"}");
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(o, "departed"))
        {
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
            CU_ASSERT(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "died")));
            int k =
                cJSON_IsString(id) && id->valuestring[0] == 'l' ? atoi(id->valuestring + 1) : -1;
            CU_ASSERT(k >= 0 && k < WSC_N && k % 3 == 2);
            if (k >= 0 && k < WSC_N)
                seen[k]++;
        }
        cJSON_Delete(o);
    }
    for (int k = 2; k < WSC_N; k += 3)
        CU_ASSERT(seen[k] == 1);
    free(seen);
}

static void test_replica_killed(void)
{
    double t0 = ts_now();
    wsc_reap(&wsc_procs[2].pid, SIGKILL);
    TS_WAIT_UNTIL(views_are(n_live, 2), 10);
    double t_views = ts_now() - t0;
    CU_ASSERT(views_are(n_live, 2));
    TS_WAIT_UNTIL(departed_total() >= n_dead, 10);
    double t_departed = ts_now() - t0;
    printf("\n  replica killed: views without its %d clients after %.2f s, departed after %.2f s"
           " (3 heartbeats = %.1f s)\n",
           n_dead, t_views, t_departed, 3 * wsc_heartbeat);
    CU_ASSERT(t_views <= 3 * wsc_heartbeat + SLACK);
    CU_ASSERT(t_departed <= 3 * wsc_heartbeat + SLACK);
    ts_sleep_ms((int)(2000 * wsc_heartbeat)); /* no second reaper */
    CU_ASSERT(departed_total() == n_dead);
    check_departed_once();
    double reaped = wsc_op_num(0, "cluster_reaped", "{\"op\":\"stats\"}") +
                    wsc_op_num(1, "cluster_reaped", "{\"op\":\"stats\"}");
    CU_ASSERT(reaped == n_dead);
    /* Traffic after the death: live clients only. */
    CU_ASSERT(wsc_op_num(0, "rc", "{\"op\":\"all\",\"seq\":4}") >= 0);
    CU_ASSERT(wsc_op_num(1, "rc", "{\"op\":\"all\",\"seq\":5}") >= 0);
    CU_ASSERT(send_all(1, ids_live, 2, 0) == n_live);
    CU_ASSERT(send_all(1, "[\"l2\"]", 2, DAEBUS_ENOENT) == 1);
}

static void test_redis_outage(void)
{
    double errs0 = wsc_op_num(0, "cluster_errors", "{\"op\":\"stats\"}");
    int lost0 = wsc_log_count(0, "cluster: Redis lost");
    ts_redis_kill(&wsc_redis);
    /* Once replica 0 knows Redis is gone (its subscriber saw the connection
     * close; a broadcast queued before that fails in the publisher thread,
     * counted): local part done, cross-replica part refused. */
    TS_WAIT_UNTIL(wsc_log_count(0, "cluster: Redis lost") > lost0, 5);
    CU_ASSERT(wsc_op_num(0, "rc", "{\"op\":\"all\",\"seq\":6}") == DAEBUS_ECONN);
    CU_ASSERT(send_all(0, "[\"l1\"]", 3, DAEBUS_ECONN) == 1); /* on replica 1 */
    CU_ASSERT(send_all(0, "[\"l0\"]", 3, 0) == 1);            /* local */
    cJSON *o = wsc_op(0, "{\"op\":\"view\"}");
    CU_ASSERT(wsc_num(o, "rc") == DAEBUS_ECONN);
    CU_ASSERT(wsc_num(o, "local_count") == (WSC_N + 2) / 3);
    cJSON_Delete(o);
    CU_ASSERT(wsc_op_num(0, "cluster_errors", "{\"op\":\"stats\"}") - errs0 >= 3);
    ts_sleep_ms(300);
    CU_ASSERT_FATAL(ts_redis_restart(&wsc_redis) == 0);
    double t0 = ts_now();
    TS_WAIT_UNTIL(views_are(n_live, 2), 15);
    CU_ASSERT(views_are(n_live, 2));
    printf("  Redis restarted: views whole again after %.2f s\n", ts_now() - t0);
    CU_ASSERT(wsc_op_num(1, "rc", "{\"op\":\"all\",\"seq\":7}") >= 0);
    CU_ASSERT(send_all(0, ids_live, 4, 0) == n_live);
}

static void test_replica_frozen(void)
{
    /* Replica 1 stops answering (SIGSTOP) for longer than 3 heartbeats:
     * replica 0 takes it for dead (views, departed); once it runs again it
     * finds itself reaped and enters its clients again. */
    int n1 = 0;
    for (int i = 0; i < WSC_N; i++)
        n1 += i % 3 == 1;
    int dep0 = wsc_departed_count(0, 1);
    kill(wsc_procs[1].pid, SIGSTOP);
    TS_WAIT_UNTIL(wsc_view_count(0) == n_live - n1 && wsc_departed_count(0, 1) == dep0 + n1,
                  3 * wsc_heartbeat + 10);
    CU_ASSERT(wsc_view_count(0) == n_live - n1);
    CU_ASSERT(wsc_departed_count(0, 1) == dep0 + n1);
    kill(wsc_procs[1].pid, SIGCONT);
    double t0 = ts_now();
    TS_WAIT_UNTIL(views_are(n_live, 2), 10);
    CU_ASSERT(views_are(n_live, 2));
    printf("  replica frozen and resumed: its clients back in the views after %.2f s\n",
           ts_now() - t0);
}

/* Expected count of kind:seq for client i (on replica i % 3). */
static int expected(int i, const char *kind, int seq)
{
    int dead = i % 3 == 2;
    if (kind[0] == 'a')
        return seq <= 3 ? 1 : dead ? 0 : seq == 6 ? i % 3 == 0 : 1;
    if (kind[0] == 'c')
        return 1;
    /* d: 1 all, 2 live, 3 l0 only, 4 live */
    return seq == 1 ? 1 : dead ? 0 : seq == 3 ? i == 0 : 1;
}

static void test_each_message_once(void)
{
    ts_sleep_ms(500);
    record = wsc_holder_stop();
    CU_ASSERT_FATAL(record != NULL);
    static const struct {
        const char *kind;
        int seqs;
    } msgs[] = {{"a", 7}, {"d", 4}, {"c", 1}};
    int bad = 0;
    for (int i = 0; i < WSC_N; i++) {
        char id[16];
        snprintf(id, sizeof id, "l%d", i);
        for (size_t m = 0; m < sizeof msgs / sizeof msgs[0]; m++) {
            for (int s = 1; s <= msgs[m].seqs; s++) {
                int got = wsc_got(record, id, msgs[m].kind, s);
                if (got != expected(i, msgs[m].kind, s) && bad++ < 10)
                    printf("  %s got %s:%d %d times, expected %d\n", id, msgs[m].kind, s, got,
                           expected(i, msgs[m].kind, s));
            }
        }
    }
    CU_ASSERT(bad == 0);
}

static void test_graceful_stop(void)
{
    for (int i = 0; i < 2; i++)
        CU_ASSERT(wsc_stop(i) == 0);
    CU_ASSERT(wsc_directory_keys() == 0);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("ws_cluster_load", init, cleanup);
    CU_add_test(s, "clients spread over three replicas", test_start);
    CU_add_test(s, "broadcasts and direct sends from every replica", test_traffic);
    CU_add_test(s, "a replica killed: views and departed within 3 heartbeats", test_replica_killed);
    CU_add_test(s, "Redis killed and restarted: ECONN while away, views whole after",
                test_redis_outage);
    CU_add_test(s, "a frozen replica taken for dead enters its clients again", test_replica_frozen);
    CU_add_test(s, "every message to a live client delivered exactly once", test_each_message_once);
    CU_add_test(s, "graceful stops leave an empty directory", test_graceful_stop);
    return ts_run_cunit();
}
