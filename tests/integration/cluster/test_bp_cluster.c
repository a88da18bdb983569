/* test_bp_cluster.c - the rooms, admin and health blueprints across replicas.
 *
 * Three chat_service replicas (the real example) on one private Redis,
 * heartbeat 1 s; python-websockets clients on different replicas' ports
 * and a redis-py caller (bp_cluster_client.py):
 *   - rooms: join, chat, history, leave and room updates seen by the members
 *     on every replica, each push once; usernames unique across replicas;
 *     /api/rooms and list_rooms the same from every replica; a direct
 *     message to a user on another replica, by name and by id;
 *   - admin: get_connected_clients, find_inactive_clients and notify_user
 *     over every replica's clients; kick_client of a client of another
 *     replica; /health and /metrics cluster figures; shutdown of one named
 *     replica reaches only its clients;
 *   - a member on a replica whose WebSocket subscriber is away (stopped,
 *     its connection killed) misses a chat: the sender gets a warning;
 *   - a replica killed with -9: its room members' departures are announced
 *     once each to the members on the others within 3 heartbeats;
 *   - Redis killed: every rooms request on every replica gets a clear error
 *     (GET /api/rooms 503), no replica crashes; a client leaving meanwhile
 *     (its departure cannot be written) frees its name and rooms when its
 *     name is asked for again; Redis back: rooms work again;
 *   - shutdown with scope "all" stops every replica (status 0). */
#include "bp_cluster.h"

static int init(void)
{
    /* An append-only file: the rooms outlive the Redis restart below. */
    return bp_init("bp-cluster", "appendonly yes\nappendfsync always\n");
}

static void test_rooms_across_replicas(void)
{
    CU_ASSERT_EQUAL(bp_python_run("rooms", NULL), 0);
}

/* A member on a replica whose WebSocket subscriber is away (replica 2
 * stopped, its subscriber's connection killed) misses the PUBLISH of a room
 * message: its replica delivers it from the room channel's history before
 * the next one, once, in order. */
static void test_missed_message_caught_up(void)
{
    char args[32];
    snprintf(args, sizeof args, "%d", (int)bp_rep[1].pid);
    CU_ASSERT_EQUAL(bp_python_run("unreached", args), 0);
}

static void test_admin_across_replicas(void)
{
    CU_ASSERT_EQUAL(bp_python_run("admin", NULL), 0);
    /* the admin scenario shut replica 3 down by its id: it exits 0 */
    int st = -1;
    double end = ts_now() + 10;
    while (bp_rep[2].pid > 0 && waitpid(bp_rep[2].pid, &st, WNOHANG) == 0 && ts_now() < end)
        ts_sleep_ms(20);
    CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    if (!WIFEXITED(st))
        bp_reap(2, SIGKILL); /* still running: the scenario failed early */
    bp_rep[2].pid = -1;
    CU_ASSERT_EQUAL(bp_up(), 0); /* it comes back; the others see 3 again */
}

static void test_shutdown_all(void)
{
    daebus_error err = {0};
    daebus_caller *c = daebus_caller_create(bp_redis.url, NULL, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    cJSON *payload = cJSON_Parse("{\"scope\": \"all\", \"timeout\": 0.5}"), *reply = NULL;
    CU_ASSERT_EQUAL(daebus_caller_request(c, "chat_service", "shutdown", payload, 5, &reply, &err),
                    0);
    CU_ASSERT_STRING_EQUAL(cJSON_GetStringValue(cJSON_GetObjectItem(reply, "scope")), "all");
    cJSON_Delete(reply);
    cJSON_Delete(payload);
    daebus_caller_destroy(c);
    /* every replica stops, each with status 0 */
    for (int i = 0; i < BP_REPLICAS; i++) {
        int st = -1;
        double end = ts_now() + 10;
        while (waitpid(bp_rep[i].pid, &st, WNOHANG) == 0 && ts_now() < end)
            ts_sleep_ms(20);
        CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        if (!WIFEXITED(st))
            bp_reap(i, SIGKILL);
        bp_rep[i].pid = -1;
    }
    CU_ASSERT_EQUAL(bp_up(), 0);
}

static void test_kill9_departures(void)
{
    char args[64];
    snprintf(args, sizeof args, "%d %s", (int)bp_rep[2].pid, BP_HEARTBEAT);
    CU_ASSERT_EQUAL(bp_python_run("kill", args), 0);
    int st;
    waitpid(bp_rep[2].pid, &st, 0);
    bp_rep[2].pid = -1;
    CU_ASSERT_EQUAL(bp_up(), 0);
}

/* Waits for the file dir/name the Python scenario writes. */
static int wait_step(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    TS_WAIT_UNTIL(access(path, F_OK) == 0, 30);
    return access(path, F_OK) == 0 ? 0 : -1;
}

static void step(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (f)
        fclose(f);
}

static void test_redis_away_and_back(void)
{
    char dir[] = "/tmp/daebus-bp-away-XXXXXX", args[64];
    CU_ASSERT_FATAL(mkdtemp(dir) != NULL);
    snprintf(args, sizeof args, "'%s'", dir);
    pid_t py = fork();
    if (py == 0)
        _exit(bp_python_run("away", args));
    CU_ASSERT_EQUAL(wait_step(dir, "1"), 0);
    ts_redis_kill(&bp_redis);
    step(dir, "2");
    CU_ASSERT_EQUAL(wait_step(dir, "3"), 0);
    for (int i = 0; i < BP_REPLICAS; i++) { /* nothing crashed */
        int st;
        CU_ASSERT(bp_rep[i].pid > 0 && waitpid(bp_rep[i].pid, &st, WNOHANG) == 0);
    }
    CU_ASSERT_EQUAL(ts_redis_restart(&bp_redis), 0);
    /* every replica back (bus and instances), and its WebSocket link too
     * (re-subscribed within a few heartbeats): cross-replica pushes sent
     * before that are lost with pub/sub */
    TS_WAIT_UNTIL(bp_all_see(BP_REPLICAS), 20);
    ts_sleep_ms(3000); /* 3 heartbeats */
    step(dir, "4");
    int st = -1;
    waitpid(py, &st, 0);
    CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    static const char *const steps[] = {"1", "2", "3", "4"};
    for (size_t i = 0; i < 4; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, steps[i]);
        unlink(path);
    }
    rmdir(dir);
    TS_WAIT_UNTIL(bp_all_see(BP_REPLICAS), 20);
}

int main(void)
{
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("bp_cluster", init, bp_cleanup);
    CU_add_test(s, "rooms across 3 replicas", test_rooms_across_replicas);
    CU_add_test(s, "a replica that missed a message catches up from the history",
                test_missed_message_caught_up);
    CU_add_test(s, "admin and health across 3 replicas", test_admin_across_replicas);
    CU_add_test(s, "a replica killed: departures once", test_kill9_departures);
    CU_add_test(s, "Redis away: clear errors; back: rooms work", test_redis_away_and_back);
    CU_add_test(s, "shutdown scope all", test_shutdown_all);
    return ts_run_cunit();
}
