/* bench_channel_fanout - channel fan-out vs broadcast_to_all (issue 16).
 *
 * Two perf_service replicas of one service on a private redis-server, with
 * channels on (PERF_CHANNEL): N WebSocket clients (N/2 on each replica), each
 * subscribed to the channel by the server as it connects. A round: the clients
 * start reading, the bench POSTs to replica A either /burst {"n":100} (100
 * daebus_ws_broadcast_to_all() calls) or /chburst {"n":100,"channel"} (100
 * daebus_ws_channel_publish() calls); every client must get the 100 messages.
 * Deliveries are counted at the clients; the rate is deliveries over the time
 * from the POST to the last client's last message. Rounds alternate
 * broadcast/channel (9 pairs, on the same connections); the best of each is
 * reported; the target (>= 0.8) is the median over the pairs of channel /
 * broadcast (a pair runs back to back, so a load spike from elsewhere on the
 * machine moves both of its rounds).
 * Then the latency of one channel publish to its delivery: one client (wsc)
 * on replica B, publishes on A one at a time, 200 samples ("t" in the message
 * is A's monotonic clock at the publish; same machine): p50 and p99.
 *
 * The clients run in separate processes (perf_wsload.c), one per replica.
 *
 * Usage: bench_channel_fanout [N (default 1000)] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daebus/daebus.h"
#include "perf_common.h"
#include "perf_svc.h"
#include "perf_wsround.h"
#include "testsupport.h"
#include "wsc.h"

#define PROCS    2 /* client processes, one per replica */
#define MESSAGES 100
#define ROUNDS   9
#define SAMPLES  200
#define CHANNEL  "bench:fan"
#define BENCH    "channel_fanout"

/* Connects N clients, N/2 to each port; waits until the replicas count them.
 * Returns the number connected. */
static int connect_set(perf_ws_proc *procs, const int *ports, int n)
{
    perf_ws_cmd cmd = {.mode = PERF_WS_SINK,
                       .seconds = 10,
                       .expect = MESSAGES,
                       .rounds = 2 * ROUNDS,
                       .path = "/ws"};
    return perf_ws_connect_set(procs, PROCS, ports, n, &cmd, BENCH);
}

/* One round: the clients read, path (/burst or /chburst) goes to port.
 * Returns deliveries/s (0 on failure). */
static double run_round(perf_ws_proc *procs, int port, const char *path, int n, long *errors)
{
    char body[96];
    snprintf(body, sizeof body, "{\"n\":%d,\"channel\":\"%s\"}", MESSAGES, CHANNEL);
    perf_ws_round r;
    if (perf_ws_burst_round(procs, PROCS, port, path, body, n, MESSAGES, BENCH, &r, errors) != 0)
        return 0;
    return r.rate;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Publish (on port_a) to delivery (a client of port_b), one message at a time. */
static void latency(int port_a, int port_b, long *errors)
{
    wsc c;
    if (wsc_connect(&c, port_b, "/ws", NULL) != 0) {
        fprintf(stderr, BENCH ": latency client cannot connect\n");
        (*errors)++;
        return;
    }
    ts_sleep_ms(300); /* its subscription is known cluster-wide */
    double lat[SAMPLES];
    int got = 0;
    char body[96];
    snprintf(body, sizeof body, "{\"n\":1,\"channel\":\"%s\"}", CHANNEL);
    for (int i = 0; i < SAMPLES; i++) {
        if (perf_svc_post(port_a, "/chburst", body, NULL) != 200) {
            (*errors)++;
            continue;
        }
        char *text = wsc_recv_text(&c, 5000);
        double now = perf_now();
        cJSON *f = text ? cJSON_Parse(text) : NULL;
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(f, "data");
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(d, "t");
        if (cJSON_IsNumber(t))
            lat[got++] = now - t->valuedouble;
        else
            (*errors)++;
        cJSON_Delete(f);
        free(text);
    }
    wsc_close(&c);
    if (got == 0)
        return;
    qsort(lat, (size_t)got, sizeof lat[0], cmp_double);
    perf_emit(BENCH, "latency", "publish_to_delivery_p50", lat[got / 2] * 1e3, "ms");
    perf_emit(BENCH, "latency", "publish_to_delivery_p99", lat[(got * 99) / 100] * 1e3, "ms");
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 1000;
    if (n < PROCS)
        n = 1000;
    perf_ws_proc procs[PROCS];
    char path[512];
    ts_redis redis;
    if (perf_ws_bench_setup(procs, PROCS, path, sizeof path, &redis) != 0)
        return 1;
    setenv("PERF_CHANNEL", CHANNEL, 1); /* the replicas inherit it */
    long errors = 0;
    int rc = 1;
    perf_svc rep[2];
    perf_svc_opts so = {.path = path, .redis_url = redis.url, .max_clients = n / 2 + 16};
    so.service = "perf_chan";
    if (perf_svc_start_replicas(rep, 2, &so, BENCH) != 0)
        goto out_redis;
    ts_sleep_ms(1500); /* the replicas see each other (heartbeat 1 s) */
    int ports[PROCS] = {rep[0].port, rep[1].port};
    if (connect_set(procs, ports, n) != n)
        errors++;
    ts_sleep_ms(1000);
    double best_b = 0, best_c = 0, ratios[ROUNDS];
    int nr = 0;
    for (int k = 0; k < ROUNDS; k++) {
        double b = run_round(procs, rep[0].port, "/burst", n, &errors);
        double c = run_round(procs, rep[0].port, "/chburst", n, &errors);
        fprintf(stderr, BENCH ": round %d broadcast_to_all %.0f/s, channel %.0f/s\n", k, b, c);
        best_b = b > best_b ? b : best_b;
        best_c = c > best_c ? c : best_c;
        if (b > 0 && c > 0)
            ratios[nr++] = c / b;
    }
    char m[64];
    snprintf(m, sizeof m, "deliveries_per_s_%d", n);
    perf_emit(BENCH, "broadcast_to_all", m, best_b, "1/s");
    perf_emit(BENCH, "channel", m, best_c, "1/s");
    snprintf(m, sizeof m, "deliveries_per_s_%d_channel_vs_broadcast", n);
    if (nr == ROUNDS) {
        qsort(ratios, (size_t)nr, sizeof ratios[0], cmp_double);
        perf_ratio(BENCH, m, ratios[nr / 2], 0.80, ">=");
    } else {
        errors++;
    }
    /* the sink clients close after their last round: not during the latency */
    double until = perf_now() + 15;
    while (perf_svc_stat(rep[0].port, "ws", "clients") +
                   perf_svc_stat(rep[1].port, "ws", "clients") >
               0 &&
           perf_now() < until)
        ts_sleep_ms(20);
    latency(rep[0].port, rep[1].port, &errors);
    perf_emit(BENCH, "all", "errors", (double)errors, "count");
    rc = errors ? 1 : 0;
    for (int p = 0; p < PROCS; p++)
        perf_ws_end(&procs[p]);
    perf_svc_stop(&rep[1]);
    perf_svc_stop(&rep[0]);
out_redis:
    ts_redis_stop(&redis);
    return rc;
}
