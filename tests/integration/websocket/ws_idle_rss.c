/* ws_idle_rss - measures the server's resident memory with N idle WebSocket
 * clients (default 5000). The clients live in a child process so that only
 * the server side is counted. Not a CI test: run build/tests/ws_idle_rss [N]. */
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "ws_common.h"
#include "wsc.h"

SOCKET(h_echo, "echo")
{
    return cJSON_Duplicate(daebus_ws_request_data(req), true);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            v = atol(line + 6);
    if (f)
        fclose(f);
    return v;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 5000;
    daebus_app *app;
    daebus_ws *ws;
    daebus_ws_options wo = DAEBUS_WS_OPTIONS_INIT;
    wo.max_clients = n + 16;
    long rss0 = rss_kb();
    int port = wst_start(&app, &ws, &wo, "ws_idle_rss");
    if (port <= 0) {
        fprintf(stderr, "start failed\n");
        return 1;
    }
    long rss_started = rss_kb();
    int pfd[2];
    if (pipe(pfd) != 0)
        return 1;
    double t0 = ts_now();
    pid_t pid = fork();
    if (pid == 0) {
        wsc *cs = calloc((size_t)n, sizeof *cs);
        int ok = 0;
        for (int i = 0; i < n; i++)
            if (wsc_connect(&cs[i], port, "/", NULL) == 0)
                ok++;
        if (write(pfd[1], &ok, sizeof ok) != (ssize_t)sizeof ok)
            _exit(1);
        pause();
        _exit(0);
    }
    int ok = 0;
    if (read(pfd[0], &ok, sizeof ok) != (ssize_t)sizeof ok)
        ok = -1;
    TS_WAIT_UNTIL(daebus_ws_get_client_count(ws) == (size_t)ok, 30);
    double took = ts_now() - t0;
    ts_sleep_ms(500);
    long rss = rss_kb();
    printf("clients %d/%d connected in %.2f s; RSS before start %ld KiB, after start %ld KiB, "
           "with clients %ld KiB (%.1f MiB; %.1f KiB per client)\n",
           ok, n, took, rss0, rss_started, rss, rss / 1024.0,
           ok > 0 ? (double)(rss - rss_started) / ok : 0.0);
    /* a broadcast to all of them */
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "hello", "world");
    double tb = ts_now();
    int q = daebus_ws_broadcast_to_all(ws, d, NULL);
    cJSON_Delete(d);
    daebus_ws_stats st;
    TS_WAIT_UNTIL((daebus_ws_get_stats(ws, &st), st.messages_out >= (uint64_t)q), 10);
    printf("broadcast queued for %d clients, written in %.3f s\n", q, ts_now() - tb);
    /* request/response round trips on one more connection, with the idle ones open */
    wsc e;
    if (wsc_connect(&e, port, "/", NULL) == 0) {
        enum { RT = 2000 };
        static double lat[RT];
        for (int i = 0; i < RT; i++) {
            double t = ts_now();
            wsc_send_text(&e, "{\"type\":\"echo\",\"data\":{\"n\":1},\"request_id\":\"r\"}");
            free(wsc_recv_text(&e, 5000));
            lat[i] = ts_now() - t;
        }
        qsort(lat, RT, sizeof lat[0], cmp_double);
        printf("echo round trip: median %.0f us, p99 %.0f us (%d sequential requests)\n",
               lat[RT / 2] * 1e6, lat[RT * 99 / 100] * 1e6, RT);
        wsc_close(&e);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    TS_WAIT_UNTIL(daebus_ws_get_client_count(ws) == 0, 30);
    ts_app_stop(app);
    return ok == n ? 0 : 1;
}
