/* Scheduler with real clocks (intervals of 20-100 ms) inside a real app:
 * fixed-rate schedule over 50 runs, no overlap with a slow handler (late
 * starts), failing task, interval change, pause/resume/trigger, one-shot
 * timers (fire, cancel, shutdown), THREAD handlers (shutdown wake-up, manual
 * start), ON_START seeing a started scheduler, grace-period report of a hung
 * task and a stubborn thread, run-time tasks, counters.
 *
 * Timing bounds are loose on purpose (shared, loaded machine; sanitizers):
 * each one states what it would catch. */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "daebus/daebus.h"
#include "testsupport.h"

/* ---- helpers ---- */

/* An app with the scheduler (4 workers), built but not started (the shared fixture). */
static daebus_app *make_app(daebus_blueprint *bp, double grace, daebus_scheduler **out)
{
    daebus_scheduler_options so = DAEBUS_SCHEDULER_OPTIONS_INIT;
    so.workers = 4;
    so.grace_period = grace;
    ts_service svc;
    ts_service_options o = {
        .service = "sched_test", .sched = true, .sched_options = &so, .blueprints = {bp}};
    CU_ASSERT_EQUAL_FATAL(ts_service_create(&svc, &o), 0);
    CU_ASSERT_PTR_EQUAL(daebus_app_scheduler(svc.app), svc.sched);
    if (out)
        *out = svc.sched;
    return svc.app;
}

static double stop_app(daebus_app *app)
{
    double t0 = ts_now();
    daebus_app_stop(app);
    CU_ASSERT_EQUAL(daebus_app_wait(app), 0);
    return ts_now() - t0;
}

static uint64_t task_runs(daebus_task *t)
{
    daebus_task_stats st;
    if (daebus_task_get_stats(t, &st) != 0)
        return 0;
    return st.runs;
}

/* Log capture into a temporary file. */
static char log_path[64];
static int log_fd = -1;

static void log_capture_begin(void)
{
    snprintf(log_path, sizeof log_path, "/tmp/daebus_sched_log_XXXXXX");
    log_fd = mkstemp(log_path);
    CU_ASSERT_FATAL(log_fd >= 0);
    daebus_log_set_fd(log_fd);
}

static char *log_capture_end(void)
{
    daebus_log_set_fd(2);
    close(log_fd);
    size_t len;
    char *text = ts_read_file(log_path, &len);
    unlink(log_path);
    if (text)
        fputs(text, stderr); /* keep it visible in the test output */
    return text;
}

/* A recorder of run start/end times, shared with worker threads. */
#define MAX_REC 256
typedef struct recorder {
    pthread_mutex_t lock;
    double start[MAX_REC], end[MAX_REC];
    int n;
    atomic_int inflight, max_inflight;
    int sleep_ms;
    int ret;
} recorder;

static void rec_init(recorder *r, int sleep_ms, int ret)
{
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->lock, NULL);
    r->sleep_ms = sleep_ms;
    r->ret = ret;
}

static int rec_count(recorder *r)
{
    pthread_mutex_lock(&r->lock);
    int n = r->n;
    pthread_mutex_unlock(&r->lock);
    return n;
}

static int rec_task(daebus_task *task, void *user)
{
    (void)task;
    recorder *r = user;
    int now_in = atomic_fetch_add(&r->inflight, 1) + 1;
    int prev = atomic_load(&r->max_inflight);
    while (now_in > prev && !atomic_compare_exchange_weak(&r->max_inflight, &prev, now_in))
        ;
    double t0 = ts_now();
    if (r->sleep_ms)
        ts_sleep_ms(r->sleep_ms);
    double t1 = ts_now();
    atomic_fetch_sub(&r->inflight, 1);
    pthread_mutex_lock(&r->lock);
    if (r->n < MAX_REC) {
        r->start[r->n] = t0;
        r->end[r->n] = t1;
        r->n++;
    }
    pthread_mutex_unlock(&r->lock);
    return r->ret;
}

/* ---- fixed-rate schedule ---- */

static void test_fixed_rate(void)
{
    /* 40 ms interval, each run takes 10 ms: a schedule measured from the end
     * of the previous run would have a 50 ms period (25 % off). */
    const double iv = 0.040;
    recorder r;
    rec_init(&r, 10, 0);
    daebus_blueprint *bp = daebus_blueprint_create("fixed", NULL);
    daebus_handler_options ho = DAEBUS_HANDLER_OPTIONS_INIT;
    ho.user = &r;
    CU_ASSERT_EQUAL(daebus_blueprint_add_background(bp, "fixed", iv, rec_task, &ho), 0);
    daebus_scheduler *s;
    daebus_app *app = make_app(bp, 1.0, &s);
    double t_start = ts_now();
    CU_ASSERT_EQUAL_FATAL(daebus_app_start(app), 0);
    double t_started = ts_now();
    /* the first slot is one interval after the scheduler's start, which lies
     * between t_start and t_started (both CLOCK_MONOTONIC) */
    daebus_task_stats st0;
    CU_ASSERT_EQUAL(daebus_task_get_stats(daebus_scheduler_find(s, "fixed"), &st0), 0);
    if (st0.runs == 0 && !st0.running && rec_count(&r) == 0) {
        CU_ASSERT(st0.next_run_mono >= t_start + iv - 1e-6);
        CU_ASSERT(st0.next_run_mono <= t_started + iv + 1e-6);
    }
    TS_WAIT_UNTIL(rec_count(&r) >= 51, 10.0);
    stop_app(app);
    CU_ASSERT_FATAL(rec_count(&r) >= 51);

    /* First run one interval after start (not at once). */
    double first = r.start[0] - t_start;
    CU_ASSERT(first >= iv * 0.9);
    CU_ASSERT(first < 1.0);

    /* 50 periods. The period is the least-squares slope of start time over run
     * number (one late wake-up barely moves it, a drift does) and must be within
     * 5 % of the interval. Runs can only be late, so the grid is anchored at the
     * earliest-looking run; every start must be within 4 intervals of its slot
     * (a 40 ms task drifting 4 ms a run would be 200 ms off by the end). The
     * slack is for sanitizer builds on a loaded machine, where one wake-up can
     * be 100 ms late. */
    double sk = 0, st = 0, skk = 0, skt = 0, anchor = r.start[0];
    for (int k = 0; k <= 50; k++) {
        double t = r.start[k] - r.start[0];
        sk += k;
        st += t;
        skk += (double)k * k;
        skt += k * t;
        if (r.start[k] - k * iv < anchor)
            anchor = r.start[k] - k * iv;
    }
    double mean = (51 * skt - sk * st) / (51 * skk - sk * sk);
    double maxdev = 0;
    for (int k = 0; k <= 50; k++) {
        double dev = r.start[k] - (anchor + k * iv);
        if (dev > maxdev)
            maxdev = dev;
    }
    fprintf(stderr,
            "\n  fixed rate: interval %.1f ms, period %.3f ms, max lateness %.3f ms, "
            "first run after %.3f ms\n",
            iv * 1e3, mean * 1e3, maxdev * 1e3, first * 1e3);
    CU_ASSERT(mean > iv * 0.95 && mean < iv * 1.05);
    CU_ASSERT(maxdev < 4 * iv);
    CU_ASSERT_EQUAL(atomic_load(&r.max_inflight), 1);
    daebus_app_destroy(app);
    daebus_blueprint_destroy(bp);
    pthread_mutex_destroy(&r.lock);
}

/* ---- no overlap, late starts ---- */

static void test_no_overlap_late_start(void)
{
    /* 20 ms interval, 50 ms runs: every slot finds the previous run going. */
    recorder r;
    rec_init(&r, 50, 0);
    daebus_scheduler *s;
    daebus_app *app = make_app(NULL, 1.0, &s);
    CU_ASSERT_EQUAL(daebus_scheduler_add_task(s, "slow", 0.020, rec_task, &r, false), 0);
    log_capture_begin();
    CU_ASSERT_EQUAL_FATAL(daebus_app_start(app), 0);
    TS_WAIT_UNTIL(rec_count(&r) >= 10, 10.0);
    daebus_task *t = daebus_scheduler_find(s, "slow");
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    daebus_task_stats st;
    CU_ASSERT_EQUAL(daebus_task_get_stats(t, &st), 0);
    stop_app(app);
    char *log = log_capture_end();

    CU_ASSERT_EQUAL(atomic_load(&r.max_inflight), 1); /* never two at once */
    CU_ASSERT(st.late_starts >= 5);
    CU_ASSERT(st.skipped >= 1);
    CU_ASSERT(st.last_duration >= 0.045);
    /* A late run starts right after the previous one ends (not at the next
     * grid slot): mean gap end(k) -> start(k+1) well under one interval. */
    int n = rec_count(&r);
    double gaps = 0;
    for (int k = 1; k < n; k++)
        gaps += r.start[k] - r.end[k - 1];
    double mean_gap = gaps / (n - 1);
    fprintf(stderr, "\n  overlap: %d runs, %llu late starts, %llu skipped, mean gap %.3f ms\n", n,
            (unsigned long long)st.late_starts, (unsigned long long)st.skipped, mean_gap * 1e3);
    CU_ASSERT(mean_gap < 0.010);
    CU_ASSERT_PTR_NOT_NULL(log);
    CU_ASSERT_PTR_NOT_NULL(log ? strstr(log, "task \"slow\" overran its interval") : NULL);
    free(log);
    daebus_app_destroy(app);
    pthread_mutex_destroy(&r.lock);
}

/* ---- failing task ---- */

static void test_failing_task(void)
{
    recorder r;
    rec_init(&r, 0, DAEBUS_EIO);
    daebus_scheduler *s;
    daebus_app *app = make_app(NULL, 1.0, &s);
    CU_ASSERT_EQUAL(daebus_scheduler_add_task(s, "failer", 0.020, rec_task, &r, false), 0);
    log_capture_begin();
    CU_ASSERT_EQUAL_FATAL(daebus_app_start(app), 0);
    TS_WAIT_UNTIL(rec_count(&r) >= 5, 10.0);
    daebus_task *t = daebus_scheduler_find(s, "failer");
    stop_app(app);
    char *log = log_capture_end();
    daebus_task_stats st;
    CU_ASSERT_EQUAL(daebus_task_get_stats(t, &st), 0);
    CU_ASSERT(st.runs >= 5);
    CU_ASSERT_EQUAL(st.failures, st.runs);
    CU_ASSERT_PTR_NOT_NULL(log ? strstr(log, "task \"failer\" failed: returned -7") : NULL);
    daebus_scheduler_stats ss;
    CU_ASSERT_EQUAL(daebus_scheduler_get_stats(s, &ss), 0);
    CU_ASSERT_EQUAL(ss.failures, st.failures);
    free(log);
    daebus_app_destroy(app);
    pthread_mutex_destroy(&r.lock);
}

/* ---- interval change ---- */

static int change_on_first(daebus_task *task, void *user)
{
    recorder *r = user;
    rec_task(task, user);
    if (rec_count(r) == 1)
        daebus_task_set_interval(task, 0.020); /* from inside the handler */
    return 0;
}

static void test_interval_change(void)
{
    recorder r;
    rec_init(&r, 0, 0);
    daebus_scheduler *s;
    daebus_app *app = make_app(NULL, 1.0, &s);
    CU_ASSERT_EQUAL(daebus_scheduler_add_task(s, "changing", 0.100, change_on_first, &r, false), 0);
    CU_ASSERT_EQUAL_FATAL(daebus_app_start(app), 0);
    daebus_task *t = daebus_scheduler_find(s, "changing");
    TS_WAIT_UNTIL(rec_count(&r) >= 12, 10.0);
    CU_ASSERT_FATAL(rec_count(&r) >= 12);
    CU_ASSERT_DOUBLE_EQUAL(daebus_task_interval(t), 0.020, 1e-9);
    /* runs 2..12 follow the new 20 ms interval (the old one would take 1 s) */
    double mean = (r.start[11] - r.start[1]) / 10.0;
    double second_gap = r.start[1] - r.start[0];
    fprintf(stderr, "\n  interval 100 -> 20 ms: gap to next run %.3f ms, then mean %.3f ms\n",
            second_gap * 1e3, mean * 1e3);
    CU_ASSERT(second_gap < 0.060);
    CU_ASSERT(mean > 0.015 && mean < 0.030);

    /* Longer again, from the test thread: no run for a while. */
    CU_ASSERT_EQUAL(daebus_task_set_interval(t, 0.300), 0);
    ts_sleep_ms(30); /* let a run dispatched before the change finish */
    int before = rec_count(&r);
    daebus_task_stats st;
    daebus_task_get_stats(t, &st);
    CU_ASSERT(st.next_run_in > 0.150 && st.next_run_in <= 0.300);
    ts_sleep_ms(150);
    CU_ASSERT_EQUAL(rec_count(&r), before);
    CU_ASSERT_EQUAL(daebus_task_set_interval(t, 0), DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(daebus_task_set_interval(t, -1), DAEBUS_EINVAL);
    stop_app(app);
    daebus_app_destroy(app);
    pthread_mutex_destroy(&r.lock);
}

/* ---- pause, resume, trigger ---- */

static void test_pause_resume_trigger(void)
{
    recorder r;
    rec_init(&r, 0, 0);
    recorder slow;
    rec_init(&slow, 60, 0);
    daebus_scheduler *s;
    daebus_app *app = make_app(NULL, 1.0, &s);
    CU_ASSERT_EQUAL(daebus_scheduler_add_task(s, "pr", 0.030, rec_task, &r, false), 0);
    CU_ASSERT_EQUAL(daebus_scheduler_add_task(s, "slowtrig", 10.0, rec_task, &slow, false), 0);
    daebus_task *t = daebus_scheduler_find(s, "pr");
    CU_ASSERT_EQUAL(daebus_task_trigger(t), DAEBUS_ESTATE); /* not started yet */
    CU_ASSERT_EQUAL_FATAL(daebus_app_start(app), 0);
    TS_WAIT_UNTIL(rec_count(&r) >= 3, 10.0);

    CU_ASSERT_EQUAL(daebus_task_pause(t), 0);
    daebus_task_stats st;
    TS_WAIT_UNTIL((daebus_task_get_stats(t, &st), !st.running), 5.0);
    int paused_at = rec_count(&r);
    CU_ASSERT(st.paused);
    CU_ASSERT(st.next_run_in < 0);
    ts_sleep_ms(150); /* five intervals */
    CU_ASSERT_EQUAL(rec_count(&r), paused_at);

    /* trigger while paused: exactly one run */
    CU_ASSERT_EQUAL(daebus_task_trigger(t), 0);
    TS_WAIT_UNTIL(rec_count(&r) == paused_at + 1, 5.0);
    ts_sleep_ms(100);
    CU_ASSERT_EQUAL(rec_count(&r), paused_at + 1);

    CU_ASSERT_EQUAL(daebus_task_resume(t), 0);
    daebus_task_get_stats(t, &st);
    CU_ASSERT_FALSE(st.paused);
    CU_ASSERT(st.next_run_in >= 0 && st.next_run_in <= 0.031);
    TS_WAIT_UNTIL(rec_count(&r) >= paused_at + 4, 5.0);
    CU_ASSERT(rec_count(&r) >= paused_at + 4);

    /* trigger a slow task three times while it runs: never two at once, the
     * extra triggers coalesce into one run right after. */
    daebus_task *ts = daebus_scheduler_find(s, "slowtrig");
    CU_ASSERT_EQUAL(daebus_task_trigger(ts), 0);
    TS_WAIT_UNTIL(atomic_load(&slow.inflight) == 1, 5.0);
    CU_ASSERT_EQUAL(daebus_task_trigger(ts), 0);
    CU_ASSERT_EQUAL(daebus_task_trigger(ts), 0);
    TS_WAIT_UNTIL(rec_count(&slow) >= 2, 5.0);
    ts_sleep_ms(150);
    CU_ASSERT_EQUAL(rec_count(&slow), 2);
    CU_ASSERT_EQUAL(atomic_load(&slow.max_inflight), 1);
    daebus_task_get_stats(ts, &st);
    CU_ASSERT_EQUAL(st.triggers, 3);
    CU_ASSERT_EQUAL(st.late_starts, 0);

    stop_app(app);
    CU_ASSERT_EQUAL(daebus_task_trigger(t), DAEBUS_ESTATE); /* stopped */
    daebus_app_destroy(app);
    pthread_mutex_destroy(&r.lock);
    pthread_mutex_destroy(&slow.lock);
}

/* ---- one-shot timers ---- */

typedef struct timer_rec {
    atomic_int fired, closed;
    double at;
} timer_rec;

static void timer_cb(daebus_scheduler *s, int status, void *user)
{
    (void)s;
    timer_rec *tr = user;
    if (status == 0) {
        tr->at = ts_now();
        atomic_fetch_add(&tr->fired, 1);
    } else {
        CU_ASSERT_EQUAL(status, DAEBUS_ECLOSED);
        atomic_fetch_add(&tr->closed, 1);
    }
}

static void test_timers(void)
{
    daebus_scheduler *s;
    daebus_app *app = make_app(NULL, 1.0, &s);
    timer_rec early = {0}, fire = {0}, cancel = {0}, late = {0};
    daebus_timer_id id_early = 0, id_fire = 0, id_cancel = 0, id_late = 0;
    /* added before start: the delay counts from the call */
    CU_ASSERT_EQUAL(daebus_scheduler_after(s, 0.0, timer_cb, &early, &id_early), 0);
    CU_ASSERT_EQUAL(daebus_scheduler_after(s, -1, timer_cb, &early, NULL), DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(daebus_scheduler_after(s, 1, NULL, &early, NULL), DAEBUS_EINVAL);
    CU_ASSERT_EQUAL_FATAL(daebus_app_start(app), 0);
    TS_WAIT_UNTIL(atomic_load(&early.fired) == 1, 5.0);
    CU_ASSERT_EQUAL(atomic_load(&early.fired), 1);

    double t0 = ts_now();
    CU_ASSERT_EQUAL(daebus_scheduler_after(s, 0.050, timer_cb, &fire, &id_fire), 0);
    CU_ASSERT_EQUAL(daebus_scheduler_after(s, 0.100, timer_cb, &cancel, &id_cancel), 0);
    CU_ASSERT_EQUAL(daebus_scheduler_after(s, 30.0, timer_cb, &late, &id_late), 0);
    CU_ASSERT(id_fire != 0 && id_cancel != 0 && id_fire != id_cancel && id_early != id_fire);
    daebus_scheduler_stats ss;
    daebus_scheduler_get_stats(s, &ss);
    CU_ASSERT_EQUAL(ss.timers_pending, 3);
    CU_ASSERT_TRUE(daebus_scheduler_cancel(s, id_cancel));
    CU_ASSERT_FALSE(daebus_scheduler_cancel(s, id_cancel)); /* only once */
    TS_WAIT_UNTIL(atomic_load(&fire.fired) == 1, 5.0);
    CU_ASSERT_EQUAL(atomic_load(&fire.fired), 1);
    double delay = fire.at - t0;
    fprintf(stderr, "\n  one-shot 50 ms fired after %.3f ms\n", delay * 1e3);
    CU_ASSERT(delay >= 0.049 && delay < 0.250);
    ts_sleep_ms(150);
    CU_ASSERT_EQUAL(atomic_load(&cancel.fired), 0);
    CU_ASSERT_EQUAL(atomic_load(&cancel.closed), 0);
    CU_ASSERT_FALSE(daebus_scheduler_cancel(s, id_fire)); /* already ran */
    CU_ASSERT_FALSE(daebus_scheduler_cancel(s, 0));
    CU_ASSERT_FALSE(daebus_scheduler_cancel(s, 999999));
    daebus_scheduler_get_stats(s, &ss);
    CU_ASSERT_EQUAL(ss.timers_fired, 2);
    CU_ASSERT_EQUAL(ss.timers_cancelled, 1);
    CU_ASSERT_EQUAL(ss.timers_pending, 1);

    /* shutdown: the pending one is told once, with DAEBUS_ECLOSED */
    stop_app(app);
    CU_ASSERT_EQUAL(atomic_load(&late.fired), 0);
    CU_ASSERT_EQUAL(atomic_load(&late.closed), 1);
    CU_ASSERT_EQUAL(daebus_scheduler_after(s, 0.01, timer_cb, &late, NULL), DAEBUS_ECLOSED);
    daebus_app_destroy(app);
    CU_ASSERT_EQUAL(atomic_load(&late.closed), 1);

    /* never started: destroy tells pending timers once */
    daebus_scheduler *lone = daebus_scheduler_create(NULL, NULL);
    timer_rec never = {0};
    CU_ASSERT_EQUAL(daebus_scheduler_after(lone, 5.0, timer_cb, &never, NULL), 0);
    daebus_scheduler_destroy(lone);
    CU_ASSERT_EQUAL(atomic_load(&never.closed), 1);
    CU_ASSERT_EQUAL(atomic_load(&never.fired), 0);
    daebus_scheduler_destroy(NULL);
}

/* ---- THREAD handlers ---- */

static atomic_int sleeper_loops;
static _Atomic double sleeper_exit_at;
static atomic_int poller_exit;
static atomic_int manual_runs;

static void sleeper(daebus_thread *thread, void *user)
{
    (void)user;
    CU_ASSERT_STRING_EQUAL(daebus_thread_name(thread), "sleeper");
    CU_ASSERT_PTR_NOT_NULL(daebus_thread_app(thread));
    while (daebus_thread_is_running(thread)) {
        atomic_fetch_add(&sleeper_loops, 1);
        daebus_thread_sleep(thread, 10.0); /* must wake at once on shutdown */
    }
    atomic_store(&sleeper_exit_at, ts_now());
}

static void poller(daebus_thread *thread, void *user)
{
    (void)user;
    while (daebus_thread_is_running(thread))
        ts_sleep_ms(5);
    atomic_store(&poller_exit, 1);
}

static void manual(daebus_thread *thread, void *user)
{
    (void)user;
    atomic_fetch_add(&manual_runs, 1);
    daebus_thread_sleep(thread, 0.020); /* returns true: not shutting down */
}

static void test_threads(void)
{
    daebus_blueprint *bp = daebus_blueprint_create("threads", NULL);
    CU_ASSERT_EQUAL(daebus_blueprint_add_thread(bp, "sleeper", sleeper, NULL), 0);
    CU_ASSERT_EQUAL(daebus_blueprint_add_thread(bp, "poller", poller, NULL), 0);
    daebus_handler_options ho = DAEBUS_HANDLER_OPTIONS_INIT;
    ho.no_auto_start = true;
    CU_ASSERT_EQUAL(daebus_blueprint_add_thread(bp, "manual", manual, &ho), 0);
    daebus_scheduler *s;
    daebus_app *app = make_app(bp, 3.0, &s);
    atomic_store(&sleeper_loops, 0);
    atomic_store(&poller_exit, 0);
    atomic_store(&manual_runs, 0);
    CU_ASSERT_EQUAL(daebus_scheduler_start_thread(s, "manual"), DAEBUS_ESTATE);
    CU_ASSERT_EQUAL_FATAL(daebus_app_start(app), 0);
    TS_WAIT_UNTIL(atomic_load(&sleeper_loops) >= 1, 5.0);
    CU_ASSERT_TRUE(daebus_scheduler_is_thread_alive(s, "sleeper"));
    CU_ASSERT_FALSE(daebus_scheduler_is_thread_alive(s, "manual"));
    ts_sleep_ms(50);
    CU_ASSERT_EQUAL(atomic_load(&manual_runs), 0); /* no_auto_start */
    CU_ASSERT_EQUAL(daebus_scheduler_start_thread(s, "manual"), 0);
    CU_ASSERT_EQUAL(daebus_scheduler_start_thread(s, "nosuch"), DAEBUS_ENOENT);
    TS_WAIT_UNTIL(!daebus_scheduler_is_thread_alive(s, "manual"), 5.0);
    CU_ASSERT_EQUAL(atomic_load(&manual_runs), 1);
    CU_ASSERT_EQUAL(daebus_scheduler_start_thread(s, "manual"), 0); /* again after it returned */
    TS_WAIT_UNTIL(atomic_load(&manual_runs) == 2, 5.0);
    CU_ASSERT_EQUAL(atomic_load(&manual_runs), 2);
    daebus_scheduler_stats ss;
    daebus_scheduler_get_stats(s, &ss);
    CU_ASSERT_EQUAL(ss.threads, 3);
    CU_ASSERT(ss.threads_running >= 2);

    double t0 = ts_now();
    double took = stop_app(app);
    double woke = atomic_load(&sleeper_exit_at) - t0;
    fprintf(stderr, "\n  THREAD: sleeper returned %.3f ms after stop; app stop took %.3f ms\n",
            woke * 1e3, took * 1e3);
    CU_ASSERT(woke >= 0 && woke < 0.100);
    CU_ASSERT(took < 1.5); /* well under the 3 s grace: nobody waited for it */
    CU_ASSERT_EQUAL(atomic_load(&sleeper_loops), 1); /* one sleep, woken by the stop */
    CU_ASSERT_EQUAL(atomic_load(&poller_exit), 1);
    CU_ASSERT_FALSE(daebus_scheduler_is_thread_alive(s, "sleeper"));
    daebus_app_destroy(app);
    daebus_blueprint_destroy(bp);
}

/* ---- ON_START sees a started scheduler; order; failure ---- */

static char hook_log[64];
static int hook_found_task, hook_trigger_rc, hook_thread_rc;
static atomic_int hooked_runs;

static int counted_task(daebus_task *task, void *user)
{
    (void)user;
    CU_ASSERT_STRING_EQUAL(daebus_task_name(task), "hooked");
    atomic_fetch_add(&hooked_runs, 1);
    return 0;
}

static void idle_thread(daebus_thread *thread, void *user)
{
    (void)user;
    while (daebus_thread_sleep(thread, 5.0))
        ;
}

static int hook_a(daebus_app *app, void *user)
{
    (void)user;
    strncat(hook_log, "a", sizeof hook_log - strlen(hook_log) - 1);
    daebus_scheduler *s = daebus_app_scheduler(app);
    daebus_task *t = daebus_scheduler_find(s, "hooked");
    hook_found_task = t != NULL;
    hook_trigger_rc = t ? daebus_task_trigger(t) : -100;
    hook_thread_rc = daebus_scheduler_start_thread(s, "later");
    return 0;
}

static int hook_b(daebus_app *app, void *user)
{
    (void)app;
    (void)user;
    strncat(hook_log, "b", sizeof hook_log - strlen(hook_log) - 1);
    return 0;
}

static int hook_fail(daebus_app *app, void *user)
{
    (void)app;
    (void)user;
    strncat(hook_log, "F", sizeof hook_log - strlen(hook_log) - 1);
    return DAEBUS_EHANDLER;
}

static void test_on_start(void)
{
    daebus_blueprint *bp = daebus_blueprint_create("hooks", NULL);
    CU_ASSERT_EQUAL(daebus_blueprint_add_background(bp, "hooked", 60.0, counted_task, NULL), 0);
    daebus_handler_options ho = DAEBUS_HANDLER_OPTIONS_INIT;
    ho.no_auto_start = true;
    CU_ASSERT_EQUAL(daebus_blueprint_add_thread(bp, "later", idle_thread, &ho), 0);
    CU_ASSERT_EQUAL(daebus_blueprint_add_on_start(bp, hook_a, NULL), 0);
    CU_ASSERT_EQUAL(daebus_blueprint_add_on_start(bp, hook_b, NULL), 0);
    daebus_scheduler *s;
    daebus_app *app = make_app(bp, 1.0, &s);
    hook_log[0] = 0;
    atomic_store(&hooked_runs, 0);
    CU_ASSERT_EQUAL_FATAL(daebus_app_start(app), 0);
    CU_ASSERT_STRING_EQUAL(hook_log, "ab"); /* registration order */
    CU_ASSERT_TRUE(hook_found_task);        /* the scheduler had started */
    CU_ASSERT_EQUAL(hook_trigger_rc, 0);
    CU_ASSERT_EQUAL(hook_thread_rc, 0);
    TS_WAIT_UNTIL(atomic_load(&hooked_runs) == 1, 5.0);
    CU_ASSERT_EQUAL(atomic_load(&hooked_runs), 1);
    CU_ASSERT_TRUE(daebus_scheduler_is_thread_alive(s, "later"));
    stop_app(app);
    daebus_app_destroy(app);

    /* a failing hook aborts start-up; the scheduler is stopped again */
    CU_ASSERT_EQUAL(daebus_blueprint_add_on_start(bp, hook_fail, NULL), 0);
    app = make_app(bp, 1.0, &s);
    hook_log[0] = 0;
    CU_ASSERT_EQUAL(daebus_app_run(app), 1);
    CU_ASSERT_STRING_EQUAL(hook_log, "abF");
    CU_ASSERT_FALSE(daebus_app_is_running(app));
    CU_ASSERT_FALSE(daebus_scheduler_is_thread_alive(s, "later"));
    CU_ASSERT_EQUAL(daebus_scheduler_after(s, 0, timer_cb, NULL, NULL), DAEBUS_ECLOSED);
    daebus_app_destroy(app);
    daebus_blueprint_destroy(bp);
}

/* ---- grace period: a hung task and a stubborn thread ---- */

static pthread_mutex_t hang_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hang_cond = PTHREAD_COND_INITIALIZER;
static int hang_release;
static atomic_int hang_entered, hang_left, stubborn_left;

static void hang_wait(void)
{
    pthread_mutex_lock(&hang_lock);
    while (!hang_release)
        pthread_cond_wait(&hang_cond, &hang_lock);
    pthread_mutex_unlock(&hang_lock);
}

static int hung_task(daebus_task *task, void *user)
{
    (void)task;
    (void)user;
    atomic_fetch_add(&hang_entered, 1);
    hang_wait();
    atomic_fetch_add(&hang_left, 1);
    return 0;
}

static void stubborn(daebus_thread *thread, void *user)
{
    (void)thread;
    (void)user;
    hang_wait(); /* ignores daebus_thread_is_running() */
    atomic_store(&stubborn_left, 1);
}

static void test_grace_report(void)
{
    recorder r;
    rec_init(&r, 0, 0);
    daebus_blueprint *bp = daebus_blueprint_create("grace", NULL);
    CU_ASSERT_EQUAL(daebus_blueprint_add_background(bp, "hung", 0.020, hung_task, NULL), 0);
    CU_ASSERT_EQUAL(daebus_blueprint_add_thread(bp, "stubborn", stubborn, NULL), 0);
    daebus_scheduler *s;
    daebus_app *app = make_app(bp, 0.3, &s);
    CU_ASSERT_EQUAL(daebus_scheduler_add_task(s, "healthy", 0.020, rec_task, &r, false), 0);
    hang_release = 0;
    atomic_store(&hang_entered, 0);
    CU_ASSERT_EQUAL_FATAL(daebus_app_start(app), 0);
    TS_WAIT_UNTIL(atomic_load(&hang_entered) == 1, 5.0);
    /* the hung task holds one worker; the other task goes on */
    int before = rec_count(&r);
    TS_WAIT_UNTIL(rec_count(&r) >= before + 5, 5.0);
    CU_ASSERT(rec_count(&r) >= before + 5);
    CU_ASSERT_EQUAL(atomic_load(&hang_entered), 1); /* no second run of the hung task */

    log_capture_begin();
    double took = stop_app(app);
    char *log = log_capture_end();
    fprintf(stderr, "\n  grace 0.3 s: stop took %.3f s\n", took);
    CU_ASSERT(took >= 0.28 && took < 2.0);
    CU_ASSERT_PTR_NOT_NULL(log ? strstr(log, "task \"hung\"") : NULL);
    CU_ASSERT_PTR_NOT_NULL(log ? strstr(log, "thread \"stubborn\"") : NULL);
    CU_ASSERT_PTR_NOT_NULL(log ? strstr(log, "grace period") : NULL);
    CU_ASSERT_PTR_NULL(log ? strstr(log, "task \"healthy\"") : "x");
    free(log);
    CU_ASSERT_EQUAL(atomic_load(&hang_left), 0);

    /* release them; destroy then reclaims everything (ASan checks leaks) */
    pthread_mutex_lock(&hang_lock);
    hang_release = 1;
    pthread_cond_broadcast(&hang_cond);
    pthread_mutex_unlock(&hang_lock);
    daebus_app_destroy(app);
    CU_ASSERT_EQUAL(atomic_load(&hang_left), 1);
    CU_ASSERT_EQUAL(atomic_load(&stubborn_left), 1);
    daebus_blueprint_destroy(bp);
    pthread_mutex_destroy(&r.lock);
}

/* ---- macros, run_at_start, run-time tasks, counters ---- */

static DAEBUS_BLUEPRINT(macro_bp, "macros");
static atomic_int macro_runs;
static int macro_user = 42;

BACKGROUND(at_once, "at_once", 10.0, .bp = &macro_bp, .run_at_start = true, .user = &macro_user)
{
    CU_ASSERT_PTR_EQUAL(user, &macro_user);
    CU_ASSERT_PTR_EQUAL(daebus_task_user(task), &macro_user);
    atomic_fetch_add(&macro_runs, 1);
    return 0;
}

static void count_stats(const daebus_task_stats *st, void *user)
{
    int *n = user;
    if (strcmp(st->name, "at_once") == 0 || strcmp(st->name, "added") == 0)
        (*n)++;
}

static void test_macros_runtime_stats(void)
{
    CU_ASSERT_EQUAL(daebus_blueprint_count(&macro_bp, DAEBUS_HANDLER_BACKGROUND), 1);
    recorder r;
    rec_init(&r, 0, 0);
    daebus_scheduler *s;
    daebus_app *app = make_app(&macro_bp, 1.0, &s);
    atomic_store(&macro_runs, 0);
    CU_ASSERT_PTR_NULL(daebus_scheduler_find(s, "at_once")); /* blueprint tasks appear at start */
    double t0 = ts_now();
    CU_ASSERT_EQUAL_FATAL(daebus_app_start(app), 0);
    TS_WAIT_UNTIL(atomic_load(&macro_runs) == 1, 5.0);
    CU_ASSERT_EQUAL(atomic_load(&macro_runs), 1);
    CU_ASSERT(ts_now() - t0 < 1.0); /* run_at_start: not after 10 s */
    daebus_task *t = daebus_scheduler_find(s, "at_once");
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    CU_ASSERT_PTR_EQUAL(daebus_task_app(t), app);
    CU_ASSERT_PTR_EQUAL(daebus_task_scheduler(t), s);
    daebus_task_stats st;
    TS_WAIT_UNTIL((daebus_task_get_stats(t, &st), st.runs == 1), 5.0);
    CU_ASSERT_EQUAL(st.runs, 1);
    CU_ASSERT(st.last_run_wall > 1e9);
    CU_ASSERT(st.next_run_in > 9.0 && st.next_run_in <= 10.0);
    CU_ASSERT(st.next_run_mono > 0);

    /* run-time task */
    CU_ASSERT_EQUAL(daebus_scheduler_add_task(s, "added", 0.020, rec_task, &r, true), 0);
    CU_ASSERT_EQUAL(daebus_scheduler_add_task(s, "added", 0.020, rec_task, &r, true),
                    DAEBUS_EEXIST);
    CU_ASSERT_EQUAL(daebus_scheduler_add_task(s, "at_once", 1, rec_task, &r, true), DAEBUS_EEXIST);
    CU_ASSERT_EQUAL(daebus_scheduler_add_task(s, "bad", 0, rec_task, &r, true), DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(daebus_scheduler_add_task(s, "", 1, rec_task, &r, true), DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(daebus_scheduler_add_task(s, "nofn", 1, NULL, &r, true), DAEBUS_EINVAL);
    TS_WAIT_UNTIL(rec_count(&r) >= 3, 5.0);
    CU_ASSERT(rec_count(&r) >= 3);
    daebus_task *added = daebus_scheduler_find(s, "added");
    CU_ASSERT_PTR_NOT_NULL(added);
    CU_ASSERT(task_runs(added) >= 2);
    int seen = 0;
    CU_ASSERT_EQUAL(daebus_scheduler_foreach_task(s, count_stats, &seen), 2);
    CU_ASSERT_EQUAL(seen, 2);
    daebus_scheduler_stats ss;
    CU_ASSERT_EQUAL(daebus_scheduler_get_stats(s, &ss), 0);
    CU_ASSERT_EQUAL(ss.tasks, 2);
    CU_ASSERT_EQUAL(ss.workers, 4);
    CU_ASSERT(ss.runs >= 3);
    CU_ASSERT_PTR_NULL(daebus_scheduler_find(s, "nosuch"));
    stop_app(app);
    daebus_task_get_stats(t, &st);
    CU_ASSERT(st.next_run_in < 0); /* stopped: nothing scheduled */

    /* the app can start again: same task objects, counters kept */
    CU_ASSERT_EQUAL_FATAL(daebus_app_start(app), 0);
    CU_ASSERT_PTR_EQUAL(daebus_scheduler_find(s, "at_once"), t);
    TS_WAIT_UNTIL(atomic_load(&macro_runs) == 2, 5.0);
    CU_ASSERT_EQUAL(atomic_load(&macro_runs), 2);
    TS_WAIT_UNTIL(task_runs(t) == 2, 5.0);
    CU_ASSERT_EQUAL(task_runs(t), 2);
    stop_app(app);
    daebus_app_destroy(app);
    pthread_mutex_destroy(&r.lock);
}

int main(void)
{
    CU_initialize_registry();
    CU_pSuite su = CU_add_suite("scheduler", NULL, NULL);
    CU_add_test(su, "fixed-rate schedule over 50 runs", test_fixed_rate);
    CU_add_test(su, "no overlap, late starts", test_no_overlap_late_start);
    CU_add_test(su, "failing task keeps its schedule", test_failing_task);
    CU_add_test(su, "interval change", test_interval_change);
    CU_add_test(su, "pause, resume, trigger", test_pause_resume_trigger);
    CU_add_test(su, "one-shot timers", test_timers);
    CU_add_test(su, "THREAD handlers", test_threads);
    CU_add_test(su, "ON_START sees the scheduler; order; failure", test_on_start);
    CU_add_test(su, "grace period report", test_grace_report);
    CU_add_test(su, "macros, run-time tasks, counters", test_macros_runtime_stats);
    return ts_run_cunit();
}
