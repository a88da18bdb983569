/* durable_service.c - a replica for the durable-action tests (test_durable_e2e)
 * and benchmarks.
 *
 * Service $DUR_SERVICE (default "dur_test"), bus only (no HTTP), durable on.
 * ACTION count {"sleep_ms": N, "poison": true?}:
 *   poison: the process dies at once (_exit(1)), as a handler that crashes;
 *   else sleeps N ms, then one pipeline: INCR dur:runs:<request_id> (the
 *   handler's runs) and, from the second attempt on, INCR dur:retried and
 *   SET dur:attempt:<request_id> <attempt>; replies {"attempt": A, "pid": P}.
 * ACTION echo: replies its payload (benchmarks).
 * Environment: DUR_VISIBILITY (s, default 2), DUR_MAX_ATTEMPTS (default 5),
 * DUR_WORKERS (default 10), DUR_DONE_TTL (s, default: the bus option's, 1 h);
 * Redis from --redis. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "daebus/daebus.h"

ACTION(count, "count")
{
    (void)user;
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(payload, "poison")))
        _exit(1);
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(payload, "sleep_ms");
    if (cJSON_IsNumber(ms) && ms->valueint > 0) {
        struct timespec ts = {ms->valueint / 1000, (long)(ms->valueint % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    int attempt = daebus_bus_request_attempt(req);
    const char *rid = daebus_bus_request_id(req);
    char runs[128], akey[128], aval[16];
    snprintf(runs, sizeof runs, "dur:runs:%s", rid ? rid : "?");
    snprintf(akey, sizeof akey, "dur:attempt:%s", rid ? rid : "?");
    snprintf(aval, sizeof aval, "%d", attempt);
    const char *incr[] = {"INCR", runs};
    const char *retried[] = {"INCR", "dur:retried"};
    const char *set[] = {"SET", akey, aval};
    daebus_redis_cmd cmds[3] = {{2, incr, NULL}, {2, retried, NULL}, {3, set, NULL}};
    int rc =
        daebus_bus_redis_pipeline(daebus_bus_request_bus(req), cmds, attempt > 1 ? 3 : 1, NULL);
    if (rc != 0)
        return daebus_bus_reply_error(req, "INCR failed (%d)", rc);
    cJSON *out = cJSON_CreateObject();
    cJSON_AddNumberToObject(out, "attempt", attempt);
    cJSON_AddNumberToObject(out, "pid", (double)getpid());
    return daebus_bus_reply_take(req, out);
}

ACTION(echo, "echo")
{
    (void)user;
    return daebus_bus_reply(req, payload);
}

int main(int argc, char **argv)
{
    const char *svc = getenv("DUR_SERVICE");
    const char *vis = getenv("DUR_VISIBILITY"), *maxa = getenv("DUR_MAX_ATTEMPTS");
    const char *workers = getenv("DUR_WORKERS");
    const char *margin = getenv("DUR_DONE_TTL");
    daebus_app_options ao = DAEBUS_APP_OPTIONS_INIT;
    ao.service = svc && *svc ? svc : "dur_test";
    ao.max_workers = workers ? atoi(workers) : 10;
    daebus_app *app = daebus_app_create(&ao, NULL);
    if (!app)
        return 1;
    daebus_app_configure(app, argc, argv);
    daebus_bus_options bo = DAEBUS_BUS_OPTIONS_INIT;
    bo.heartbeat = 0.5;
    bo.durable = 1;
    bo.durable_visibility = vis ? atof(vis) : 2.0;
    bo.durable_max_attempts = maxa ? atoi(maxa) : 5;
    bo.durable_done_ttl = margin ? atof(margin) : 0.0;
    daebus_bus_attach(daebus_bus_create(&bo, NULL), app);
    int status = daebus_app_run(app);
    daebus_app_destroy(app);
    return status;
}
