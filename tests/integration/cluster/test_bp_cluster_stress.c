/* test_bp_cluster_stress.c - room chat among N clients (argument; 300 by
 * default, 20 in the ASan variant) spread over three chat_service replicas
 * while one replica is killed with -9 and Redis is killed and restarted.
 * Redis runs with an append-only file (fsync always), as docs/replicas.md
 * recommends for the rooms to outlive a Redis restart.
 *
 * Counted (bp_cluster_client.py stress): a message counts when its sender
 * got "sent" without a warning; every counted message must reach every
 * member of its room that stayed connected exactly once. Messages refused
 * while Redis was away, sent with a warning, or lost with their sender's
 * replica are reported. */
#include "bp_cluster.h"

static int nclients = 300;

static int init(void)
{
    return bp_init("bp-stress", "appendonly yes\nappendfsync always\n");
}

static void test_chat_through_kill_and_restart(void)
{
    char marker[256], args[320];
    snprintf(marker, sizeof marker, "/tmp/daebus-bp-stress-%d.started", (int)getpid());
    unlink(marker);
    snprintf(args, sizeof args, "%d 10 '%s'", nclients, marker);
    pid_t py = fork();
    if (py == 0)
        _exit(bp_python_run("stress", args));
    CU_ASSERT_FATAL(py > 0);
    TS_WAIT_UNTIL(access(marker, F_OK) == 0, 60);
    CU_ASSERT(access(marker, F_OK) == 0);
    unlink(marker);
    double t0 = ts_now();
    ts_sleep_ms(2500);
    bp_reap(2, SIGKILL);
    printf("\n  replica 3 killed at %.1f s", ts_now() - t0);
    ts_sleep_ms(2500);
    ts_redis_kill(&bp_redis);
    printf(", Redis killed at %.1f s", ts_now() - t0);
    ts_sleep_ms(1000);
    CU_ASSERT_EQUAL(ts_redis_restart(&bp_redis), 0);
    printf(", back at %.1f s\n", ts_now() - t0);
    int st = -1;
    waitpid(py, &st, 0);
    CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        nclients = atoi(argv[1]);
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("bp_cluster_stress", init, bp_cleanup);
    CU_add_test(s, "room chat while a replica dies and Redis restarts",
                test_chat_through_kill_and_restart);
    return ts_run_cunit();
}
