/* test_primary.c - the primary replica, seen from outside (docs/replicas.md,
 * "Actions exactly once"; issue 15).
 *
 * One replica of the service is the primary: it takes service-channel
 * requests without claims and publishes progress markers; the backups drop
 * what the markers cover and take over (making themselves primary, with
 * claims) what stays uncovered past the window W = max(1 s, 1.5 heartbeats).
 * Three once_service replicas (heartbeat 1 s) on a private redis-server, the
 * fixture's foreign callers (redis-py: once_client.py; the C caller), and the
 * replicas' /metrics (daebus_bus_primary, _primary_taken_total,
 * _covered_total, _takeovers_total, _claims_lost_total):
 * 1. one primary takes the load: exactly one primary; 2,000 requests answered
 *    once; the primary takes most of them without a claim, the backups drop
 *    them as covered and lose few claims;
 * 2. the primary frozen (SIGSTOP) for 3 s under load, then resumed: nothing
 *    answered or run twice; every request published from 1.5 s into the
 *    freeze on is answered; a backup became primary; one primary afterwards;
 * 3. the primary killed -9 under load: nothing twice; at most the requests in
 *    flight lost; a new primary within 3 s;
 * 4. a third replica joining two under a steady load learns who the primary
 *    is: it drops what the progress covers and loses almost no claim;
 * 5. the primary's Redis connections other than its subscriber (publisher
 *    pool, claim line, heartbeat) killed again and again for 3 s under load:
 *    nothing answered or run twice; requests published after the cut are all
 *    answered;
 * 6. the primary's claim line cut while 9 of its 10 workers are busy, a
 *    burst, then a graceful stop: its unsent marker's batch is claimed by
 *    the others, every request answered once. (And in 1: a new primary's
 *    first request is taken without a claim.)
 *
 * Every test counts handler runs through the replicas' run logs (once_runs):
 * a request run twice fails it, whatever the callers saw.
 *
 * Which Redis connections are the primary's: the framework names none
 * (no CLIENT SETNAME), so the test maps them through the kernel: the
 * socket inodes of /proc/<pid>/fd, their local ports in /proc/net/tcp (with
 * Redis's port as the remote one), and those ports in the "addr=" of
 * CLIENT LIST. Its subscriber is the one with sub/psub/ssub > 0 (or in a
 * MULTI: a subscription being made); every other one is killed by
 * CLIENT KILL ID. */
#include <dirent.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "once_fixture.h"

#define HB     "1"
#define WINDOW 16

static int init(void)
{
    return once_setup("primary");
}

static int cleanup(void)
{
    once_teardown();
    return 0;
}

static int jint(const cJSON *o, const char *k)
{
    return cJSON_GetObjectItem(o, k) ? cJSON_GetObjectItem(o, k)->valueint : -1;
}

static int lost_of(const cJSON *o)
{
    return cJSON_GetArraySize(cJSON_GetObjectItem(o, "unanswered"));
}

/* Requests of kind 'a' with prefix run more than once, across every replica. */
static int twice(const char *prefix)
{
    once_runs *r = once_runs_load();
    int n = once_runs_twice(r, 'a', prefix);
    once_runs_free(r);
    return n;
}

/* Every unanswered request of a redis-py caller ran at most once. */
static int lost_ran_at_most_once(const cJSON *o)
{
    once_runs *r = once_runs_load();
    const cJSON *e;
    int bad = 0;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(o, "unanswered")) bad +=
        once_runs_count(r, 'a', e->valuestring) > 1;
    once_runs_free(r);
    return bad == 0;
}

/* No request of the two callers (ra: "<family>1", the C caller "<family>2",
 * rb: "<family>3") answered twice or run twice; a lost one of ra ran at most
 * once. */
static void assert_nothing_twice(const cJSON *ra, const cJSON *rb, const char *family)
{
    CU_ASSERT_EQUAL(jint(ra, "dups"), 0);
    CU_ASSERT_EQUAL(jint(rb, "dups"), 0);
    for (int k = 1; k <= 3; k++) {
        char prefix[16];
        snprintf(prefix, sizeof prefix, "%s%d", family, k);
        CU_ASSERT_EQUAL(twice(prefix), 0);
    }
    CU_ASSERT_TRUE(lost_ran_at_most_once(ra));
}

/* redis-py requests at most rate per second (0: as fast as the window lets). */
static pid_t python_req(int n, const char *prefix, int window, double timeout, double rate)
{
    char rs[32];
    snprintf(rs, sizeof rs, "%g", rate);
    setenv("ONCE_RATE", rs, 1);
    pid_t p = once_python("req", ONCE_SERVICE, n, prefix, window, timeout);
    unsetenv("ONCE_RATE");
    return p;
}

/* The sum of a metric over the started replicas other than skip. */
static double sum_metric(const char *name, int skip)
{
    double s = 0;
    for (int i = 0; i < ONCE_MAX_PROCS; i++)
        if (i != skip && once_procs[i].pid > 0)
            s += once_metric(i, name);
    return s;
}

/* The primary now, or replica 0 when none is found (main before the primary
 * protocol: the test goes on, so its exactly-once checks still run). */
static int primary_or_0(double seconds)
{
    int p = once_primary_wait(seconds, -1);
    CU_ASSERT(p >= 0);
    if (p < 0)
        printf("\n  no single replica has daebus_bus_primary 1: replica 0 stands in");
    return p < 0 ? 0 : p;
}

static void test_one_primary(void)
{
    for (int i = 0; i < 3; i++)
        once_start(i, HB);
    CU_ASSERT_FATAL(once_all_ready(10));
    double t0 = ts_now();
    int p = once_primary_wait(5, -1);
    CU_ASSERT(p >= 0);
    printf("\n  one primary after %.2f s: replica %d", ts_now() - t0, p);
    if (p < 0)
        p = 0;
    /* Its first request: taken under its first marker, without a claim (its
     * claim line connects before its join, not at a first claim). */
    double first0 = once_metric(p, "daebus_bus_primary_taken_total"),
           won0 = sum_metric("daebus_bus_claims_won_total", -1);
    cJSON *one = once_python_wait(python_req(1, "p0", 1, 5, 0), 10);
    CU_ASSERT_PTR_NOT_NULL_FATAL(one);
    CU_ASSERT_EQUAL(jint(one, "answered"), 1);
    cJSON_Delete(one);
    CU_ASSERT_EQUAL(once_metric(p, "daebus_bus_primary_taken_total") - first0, 1);
    CU_ASSERT_EQUAL(sum_metric("daebus_bus_claims_won_total", -1) - won0, 0);
    double taken0 = once_metric(p, "daebus_bus_primary_taken_total"), covered0[3], lost0[3];
    for (int i = 0; i < 3; i++) {
        covered0[i] = once_metric(i, "daebus_bus_covered_total");
        lost0[i] = once_metric(i, "daebus_bus_claims_lost_total");
    }
    pid_t py = python_req(2000, "p1", WINDOW, 5, 0);
    cJSON *pr = once_python_wait(py, 60);
    CU_ASSERT_PTR_NOT_NULL_FATAL(pr);
    CU_ASSERT_EQUAL(jint(pr, "answered"), 2000);
    CU_ASSERT_EQUAL(jint(pr, "dups"), 0);
    CU_ASSERT_EQUAL(jint(pr, "errors"), 0);
    CU_ASSERT_EQUAL(twice("p1"), 0);
    once_runs *r = once_runs_load();
    CU_ASSERT_EQUAL(once_runs_prefix(r, 'a', "p1-"), 2000);
    once_runs_free(r);
    ts_sleep_ms(300); /* the backups' last covered drops */
    double taken = once_metric(p, "daebus_bus_primary_taken_total");
    CU_ASSERT(taken0 >= 0 && taken - taken0 >= 1000);
    double backups_lost = 0;
    for (int i = 0; i < 3; i++) {
        if (i == p)
            continue;
        double covered = once_metric(i, "daebus_bus_covered_total"),
               lost = once_metric(i, "daebus_bus_claims_lost_total");
        CU_ASSERT(covered0[i] >= 0 && covered > covered0[i]);
        CU_ASSERT(lost0[i] >= 0 && lost >= lost0[i]);
        backups_lost += lost - lost0[i];
        printf("\n  backup %d: covered +%.0f, claims lost +%.0f", i, covered - covered0[i],
               lost - lost0[i]);
    }
    CU_ASSERT(backups_lost < 200);
    CU_ASSERT_EQUAL(once_primary(-1), p); /* still the one primary */
    printf("\n  2000 requests: the primary (replica %d) took %.0f without a claim", p,
           taken - taken0);
    cJSON_Delete(pr);
}

static void test_frozen_primary(void)
{
    CU_ASSERT_FATAL(once_all_ready(10));
    int p = primary_or_0(5);
    double takeovers0 = sum_metric("daebus_bus_takeovers_total", p);
    /* A steady load from before the freeze to after the resume (about 6 s). */
    pid_t pa = python_req(1500, "f1", 32, 5, 250);
    once_load l;
    CU_ASSERT_EQUAL_FATAL(once_load_start_paced(&l, 1500, "f2", WINDOW, 5, 250), 0);
    ts_sleep_ms(1000);
    kill(once_procs[p].pid, SIGSTOP);
    double frozen = ts_now();
    ts_sleep_ms(1500);
    /* From 1.5 s into the freeze on, every request is answered (the freeze
     * ends 1.5 s later; this caller runs on past it). */
    pid_t pb = python_req(600, "f3", WINDOW, 5, 200);
    int new_primary = -1;
    while (ts_now() < frozen + 3) {
        int q = once_primary(p);
        if (q >= 0)
            new_primary = q;
        ts_sleep_ms(50);
    }
    kill(once_procs[p].pid, SIGCONT);
    double resumed = ts_now();
    int after = once_primary_wait(5, -1);
    double settled = ts_now() - resumed;
    cJSON *ra = once_python_wait(pa, 60), *rb = once_python_wait(pb, 60);
    once_load_join(&l);
    ts_sleep_ms(500); /* a late second run would be in the logs by now */
    CU_ASSERT_PTR_NOT_NULL_FATAL(ra);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rb);
    assert_nothing_twice(ra, rb, "f"); /* answered or run */
    /* Published from 1.5 s into the freeze on: every one answered, once. */
    CU_ASSERT_EQUAL(jint(rb, "answered"), 600);
    CU_ASSERT_EQUAL(lost_of(rb), 0);
    once_runs *r = once_runs_load();
    CU_ASSERT_EQUAL(once_runs_prefix(r, 'a', "f3-"), 600);
    once_runs_free(r);
    /* Before that, at most what was in flight is lost. */
    CU_ASSERT_EQUAL(jint(ra, "answered") + lost_of(ra), 1500);
    CU_ASSERT(lost_of(ra) + atomic_load(&l.failed) <= 32 + WINDOW);
    /* A backup made itself primary during the freeze; one primary after. */
    double takeovers = sum_metric("daebus_bus_takeovers_total", p);
    CU_ASSERT(new_primary >= 0 || (takeovers0 >= 0 && takeovers > takeovers0));
    CU_ASSERT(after >= 0);
    printf("\n  primary %d frozen 3 s: backup %d primary during the freeze, takeovers +%.0f; "
           "one primary (%d) %.2f s after the resume; lost %d + %d of 3000, then 600 of 600 "
           "answered",
           p, new_primary, takeovers - takeovers0, after, settled, lost_of(ra),
           atomic_load(&l.failed));
    cJSON_Delete(ra);
    cJSON_Delete(rb);
}

static void test_primary_kill9(void)
{
    CU_ASSERT_FATAL(once_all_ready(10));
    int p = primary_or_0(5);
    pid_t py = python_req(1500, "k1", WINDOW, 5, 300);
    once_load l;
    CU_ASSERT_EQUAL_FATAL(once_load_start_paced(&l, 1500, "k2", WINDOW, 5, 300), 0);
    ts_sleep_ms(1500);
    int before = atomic_load(&l.done);
    once_reap(p, SIGKILL);
    double killed = ts_now();
    int q = once_primary_wait(3, -1);
    double took = ts_now() - killed;
    CU_ASSERT(q >= 0 && q != p); /* a new primary within 3 s */
    cJSON *pr = once_python_wait(py, 60);
    once_load_join(&l);
    ts_sleep_ms(500);
    CU_ASSERT_PTR_NOT_NULL_FATAL(pr);
    CU_ASSERT_EQUAL(jint(pr, "dups"), 0);
    CU_ASSERT_EQUAL(twice("k1"), 0);
    CU_ASSERT_EQUAL(twice("k2"), 0);
    CU_ASSERT_TRUE(lost_ran_at_most_once(pr));
    CU_ASSERT_EQUAL(jint(pr, "answered") + lost_of(pr), 1500);
    CU_ASSERT_EQUAL(atomic_load(&l.ok) + atomic_load(&l.failed), 1500);
    /* Lost: only what the killed primary had taken, at most both windows. */
    CU_ASSERT(lost_of(pr) + atomic_load(&l.failed) <= 2 * WINDOW);
    CU_ASSERT(before < 1500 && atomic_load(&l.ok) > before); /* the others went on */
    printf("\n  primary %d killed after %d of 1500 C requests: new primary %d after %.2f s; "
           "lost %d + %d",
           p, before, q, took, lost_of(pr), atomic_load(&l.failed));
    cJSON_Delete(pr);
    once_start(p, HB); /* three again for the next test */
    CU_ASSERT(once_all_ready(10));
}

static void test_joiner(void)
{
    CU_ASSERT_FATAL(once_all_ready(10));
    /* Two replicas with a primary: a backup leaves. */
    int p = primary_or_0(5), j = p == 0 ? 1 : 0;
    once_reap(j, SIGTERM);
    ts_sleep_ms(600); /* the others' views drop it (half a heartbeat) */
    p = primary_or_0(5);
    once_load l;
    CU_ASSERT_EQUAL_FATAL(once_load_start_paced(&l, 1500, "j1", WINDOW, 5, 300), 0);
    ts_sleep_ms(1000);
    once_start(j, HB); /* joins under the load */
    CU_ASSERT(once_all_ready(10));
    int at_ready = atomic_load(&l.done);
    once_load_join(&l);
    ts_sleep_ms(300);
    CU_ASSERT(at_ready <= 1200); /* it took part for 300 requests at least (1 s) */
    CU_ASSERT_EQUAL(atomic_load(&l.ok), 1500);
    CU_ASSERT_EQUAL(twice("j1"), 0);
    once_runs *r = once_runs_load();
    CU_ASSERT_EQUAL(once_runs_prefix(r, 'a', "j1-"), 1500);
    once_runs_free(r);
    double got = once_metric(j, "daebus_bus_requests_received_total"),
           covered = once_metric(j, "daebus_bus_covered_total"),
           lost = once_metric(j, "daebus_bus_claims_lost_total");
    /* It learnt who takes the requests without claiming them: it dropped
     * them as covered, and lost (almost) no claim. */
    CU_ASSERT(covered >= 100);
    CU_ASSERT(lost >= 0 && lost <= 5);
    CU_ASSERT_EQUAL(once_primary(-1), p);
    printf("\n  a replica joined under load after %d of 1500 requests: received %.0f, covered "
           "%.0f, claims lost %.0f; primary still %d",
           at_ready, got, covered, lost, once_primary(-1));
}

/* ---- the primary's connections other than its subscriber ---- */

/* Local ports of pid's TCP connections to Redis (from /proc). */
static int redis_ports(pid_t pid, int *ports, int max)
{
    unsigned long inodes[256];
    int ni = 0, n = 0;
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%ld/fd", (long)pid);
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL && ni < 256) {
        char path[400], link[64];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        ssize_t len = readlink(path, link, sizeof link - 1);
        if (len <= 0)
            continue;
        link[len] = '\0';
        if (sscanf(link, "socket:[%lu]", &inodes[ni]) == 1)
            ni++;
    }
    if (d)
        closedir(d);
    FILE *f = fopen("/proc/net/tcp", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f) && n < max) {
        unsigned lport, rport;
        unsigned long inode;
        if (sscanf(line, " %*s %*[0-9A-Fa-f]:%x %*[0-9A-Fa-f]:%x %*s %*s %*s %*s %*s %*s %lu",
                   &lport, &rport, &inode) != 3 ||
            (int)rport != once_redis.port)
            continue;
        for (int k = 0; k < ni; k++)
            if (inodes[k] == inode) {
                ports[n++] = (int)lport;
                break;
            }
    }
    if (f)
        fclose(f);
    return n;
}

static int field_int(const char *line, const char *end, const char *key)
{
    const char *v = strstr(line, key);
    return v && v < end ? atoi(v + strlen(key)) : 0;
}

/* Kills pid's Redis connections except its subscriber. Returns: how many. */
static int cut_publishers(redisContext *c, pid_t pid)
{
    int ports[64], np = redis_ports(pid, ports, 64), killed = 0;
    long long ids[64];
    int nid = 0;
    redisReply *r = redisCommand(c, "CLIENT LIST TYPE normal");
    for (const char *l = r && r->type == REDIS_REPLY_STRING ? r->str : NULL; l && *l;) {
        const char *end = strchr(l, '\n'), *addr = strstr(l, " addr=127.0.0.1:"),
                   *flags = strstr(l, " flags=");
        if (!end)
            end = l + strlen(l);
        int port = addr && addr < end ? atoi(addr + 16) : -1;
        int subscriber = field_int(l, end, " sub=") > 0 || field_int(l, end, " psub=") > 0 ||
                         field_int(l, end, " ssub=") > 0;
        int in_multi = flags && flags < end && strcspn(flags + 7, "x ") < strcspn(flags + 7, " ");
        for (int k = 0; k < np && nid < 64; k++)
            if (ports[k] == port && !subscriber && !in_multi)
                ids[nid++] = atoll(strstr(l, "id=") + 3);
        l = *end ? end + 1 : NULL;
    }
    if (r)
        freeReplyObject(r);
    for (int k = 0; k < nid; k++) {
        r = redisCommand(c, "CLIENT KILL ID %lld", ids[k]);
        killed += r && r->type == REDIS_REPLY_INTEGER && r->integer == 1;
        if (r)
            freeReplyObject(r);
    }
    return killed;
}

static void test_publishers_cut(void)
{
    CU_ASSERT_FATAL(once_all_ready(10));
    int p = primary_or_0(5);
    double reconnects = once_metric(p, "daebus_bus_reconnects_total");
    redisContext *c = redisConnect("127.0.0.1", once_redis.port);
    CU_ASSERT_FATAL(c != NULL && !c->err);
    pid_t py = python_req(1500, "c1", 32, 3, 250);
    once_load l;
    CU_ASSERT_EQUAL_FATAL(once_load_start_paced(&l, 1500, "c2", WINDOW, 3, 250), 0);
    ts_sleep_ms(700);
    int ok0 = atomic_load(&l.ok), killed = 0, rounds = 0;
    double end = ts_now() + 3;
    while (ts_now() < end) {
        killed += cut_publishers(c, once_procs[p].pid);
        rounds++;
        ts_sleep_ms(20);
    }
    double cut_end = ts_now();
    int ok_cut = atomic_load(&l.ok) - ok0;
    redisFree(c);
    CU_ASSERT(killed >= 3); /* the test cut something */
    /* ... and never the subscriber: it did not reconnect. */
    CU_ASSERT(reconnects >= 0 && once_metric(p, "daebus_bus_reconnects_total") == reconnects);
    int after = once_primary_wait(5, -1);
    while (ts_now() < cut_end + 1.5)
        ts_sleep_ms(20);
    /* After the cut: every request answered once. */
    pid_t pb = python_req(600, "c3", WINDOW, 5, 0);
    cJSON *ra = once_python_wait(py, 60), *rb = once_python_wait(pb, 60);
    once_load_join(&l);
    ts_sleep_ms(500); /* a late second run would be in the logs by now */
    CU_ASSERT_PTR_NOT_NULL_FATAL(ra);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rb);
    assert_nothing_twice(ra, rb, "c");
    CU_ASSERT_EQUAL(jint(ra, "answered") + lost_of(ra), 1500);
    CU_ASSERT_EQUAL(jint(rb, "answered"), 600);
    once_runs *r = once_runs_load();
    CU_ASSERT_EQUAL(once_runs_prefix(r, 'a', "c3-"), 600);
    once_runs_free(r);
    /* The backups answered during the cut. */
    CU_ASSERT(ok_cut > 0);
    CU_ASSERT(after >= 0);
    printf("\n  primary %d's publishers cut for 3 s (%d connections killed in %d rounds): C "
           "caller answered %d during the cut; lost %d + %d of 3000; then %d of 600 answered; "
           "primary after: %d",
           p, killed, rounds, ok_cut, lost_of(ra), atomic_load(&l.failed), jint(rb, "answered"),
           after);
    cJSON_Delete(ra);
    cJSON_Delete(rb);
}

/* A primary's marker that cannot be sent (its claim line cut) turns its
 * batch into claims; the next marker lists those positions as skipped, so
 * the others claim them too. The primary, 9 of its 10 workers busy, is then
 * stopped gracefully with the batch queued: it claims nothing any more, and
 * the others run every request once. (Before: the next marker covered the
 * batch without listing it, the others dropped their copies, and what the
 * stopping primary held in claim mode was lost.) */
static void test_marker_lost_then_stop(void)
{
    CU_ASSERT_FATAL(once_all_ready(10));
    int p = primary_or_0(5);
    double taken0 = once_metric(p, "daebus_bus_primary_taken_total");
    setenv("ONCE_SLEEP_MS", "1500", 1);
    pid_t slow = python_req(9, "m1", 9, 10, 0);
    TS_WAIT_UNTIL(once_metric(p, "daebus_bus_primary_taken_total") - taken0 >= 9, 5);
    CU_ASSERT_FATAL(once_metric(p, "daebus_bus_primary_taken_total") - taken0 >= 9);
    redisContext *c = redisConnect("127.0.0.1", once_redis.port);
    CU_ASSERT_FATAL(c != NULL && !c->err);
    int killed = cut_publishers(c, once_procs[p].pid);
    redisFree(c);
    CU_ASSERT(killed >= 1);
    setenv("ONCE_SLEEP_MS", "300", 1);
    pid_t burst = python_req(30, "m2", 30, 10, 0);
    unsetenv("ONCE_SLEEP_MS");
    ts_sleep_ms(400);
    pid_t stopped = once_procs[p].pid;
    once_reap(p, SIGTERM);
    cJSON *ra = once_python_wait(slow, 30), *rb = once_python_wait(burst, 30);
    ts_sleep_ms(500); /* a late second run would be in the logs by now */
    CU_ASSERT_PTR_NOT_NULL_FATAL(ra);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rb);
    CU_ASSERT_EQUAL(jint(ra, "answered"), 9); /* what it took, it finished */
    CU_ASSERT_EQUAL(jint(rb, "answered"), 30);
    CU_ASSERT_EQUAL(jint(ra, "dups") + jint(rb, "dups"), 0);
    CU_ASSERT_EQUAL(twice("m1") + twice("m2"), 0);
    once_runs *r = once_runs_load();
    CU_ASSERT_EQUAL(once_runs_prefix(r, 'a', "m2-"), 30);
    once_runs_free(r);
    printf("\n  primary %d: claim line cut (%d connections), 30 requests behind 9 slow ones, "
           "stopped: %d + %d answered, the stopped one ran %d of the 30",
           p, killed, jint(ra, "answered"), jint(rb, "answered"),
           once_pid_runs(stopped, 'a', "m2-"));
    cJSON_Delete(ra);
    cJSON_Delete(rb);
    once_start(p, HB);
    CU_ASSERT(once_all_ready(10));
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("primary replica", init, cleanup);
    CU_add_test(s, "one primary takes the load", test_one_primary);
    CU_add_test(s, "the primary frozen past the window resumes: nothing twice",
                test_frozen_primary);
    CU_add_test(s, "the primary killed -9 under load", test_primary_kill9);
    CU_add_test(s, "a joiner knows the primary", test_joiner);
    CU_add_test(s, "the primary's publishers cut off", test_publishers_cut);
    CU_add_test(s, "a marker not sent, then the primary stopped: nothing lost",
                test_marker_lost_then_stop);
    return ts_run_cunit();
}
