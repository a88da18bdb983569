/* gw_service.c - the two processes of the action gateway test (run_gateway_test.sh).
 *
 * GW_MODE=target: service "gw_target" (bus only) with the actions
 *   echo {..}        replies {"echo": payload, "instance": id}
 *   fail {}          replies with the error "echo failed on purpose"
 *   slow {"ms": n}   sleeps n ms, then replies {"slept": n}
 *   progress {"n"}   n progress replies {"step": i} (pct i/n), then {"steps": n}
 *   admin_only {}    replies {"ok": true} (the front's authorise hook refuses it
 *                    to clients without the user data "role": "admin")
 *   big {"bytes": n} replies {"text": n times "x"}
 * GW_MODE=front: service "gw_front" with HTTP + WebSocket + bus and the gateway:
 *   allow "gw_target, gw_front.ping, gw_absent.*", 1 s per call, 3 calls in flight per client,
 *   WebSocket queue limit 64 KiB;
 *   actions ping (allowed) and secret (not on the allow-list);
 *   SOCKET "become_admin" sets the user data role = admin;
 *   GET /gw/stats answers daebus_gateway_get_stats().
 * --port and --redis as usual. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "daebus/daebus.h"

static int num(const cJSON *o, const char *k, int dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valueint : dflt;
}

/* ---- target ---- */

static int act_echo(daebus_bus_request *req, const cJSON *payload, void *user)
{
    (void)user;
    cJSON *r = cJSON_CreateObject();
    cJSON_AddItemToObject(r, "echo", cJSON_Duplicate(payload, true));
    cJSON_AddStringToObject(r, "instance", daebus_app_instance_id(daebus_bus_request_app(req)));
    return daebus_bus_reply_take(req, r);
}

static int act_fail(daebus_bus_request *req, const cJSON *payload, void *user)
{
    (void)payload;
    (void)user;
    return daebus_bus_reply_error(req, "echo failed on purpose");
}

static int act_slow(daebus_bus_request *req, const cJSON *payload, void *user)
{
    (void)user;
    int ms = num(payload, "ms", 100);
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    cJSON *r = cJSON_CreateObject();
    cJSON_AddNumberToObject(r, "slept", ms);
    return daebus_bus_reply_take(req, r);
}

static int act_progress(daebus_bus_request *req, const cJSON *payload, void *user)
{
    (void)user;
    int n = num(payload, "n", 3);
    for (int i = 1; i <= n; i++) {
        cJSON *p = cJSON_CreateObject();
        cJSON_AddNumberToObject(p, "step", i);
        daebus_bus_progress_take(req, p, (double)i / n);
    }
    cJSON *r = cJSON_CreateObject();
    cJSON_AddNumberToObject(r, "steps", n);
    return daebus_bus_reply_take(req, r);
}

static int act_big(daebus_bus_request *req, const cJSON *payload, void *user)
{
    (void)user;
    int n = num(payload, "bytes", 1000);
    char *text = malloc((size_t)n + 1);
    if (!text)
        return -1;
    memset(text, 'x', (size_t)n);
    text[n] = '\0';
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "text", text);
    free(text);
    return daebus_bus_reply_take(req, r);
}

static int act_ok(daebus_bus_request *req, const cJSON *payload, void *user)
{
    (void)payload;
    (void)user;
    cJSON *r = cJSON_CreateObject();
    cJSON_AddBoolToObject(r, "ok", true);
    return daebus_bus_reply_take(req, r);
}

/* ---- front ---- */

static bool admins_only(daebus_ws *ws, const daebus_ws_auth_request *q, char *reason, size_t cap,
                        void *user)
{
    (void)ws;
    (void)user;
    if (q->op != DAEBUS_WS_AUTH_CALL || strcmp(q->action, "admin_only") != 0)
        return q->rules_allow;
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(q->metadata, "role");
    if (cJSON_IsString(role) && strcmp(role->valuestring, "admin") == 0)
        return true;
    snprintf(reason, cap, "admins only");
    return false;
}

static cJSON *become_admin(daebus_ws_request *req, const char *client_id, void *user)
{
    (void)user;
    cJSON *v = cJSON_CreateString("admin");
    daebus_ws_set_client_data(daebus_ws_request_ws(req), client_id, "role", v);
    cJSON_Delete(v);
    return cJSON_CreateTrue();
}

static int stats_route(daebus_http_request *req, daebus_http_response *res, void *user)
{
    (void)user;
    daebus_gateway_stats s;
    if (daebus_gateway_get_stats(daebus_http_request_app(req), &s) != 0)
        return daebus_http_send_json_take(res, 500, cJSON_CreateObject());
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "calls", (double)s.calls);
    cJSON_AddNumberToObject(o, "refused", (double)s.refused);
    cJSON_AddNumberToObject(o, "failed", (double)s.failed);
    cJSON_AddNumberToObject(o, "timeouts", (double)s.timeouts);
    cJSON_AddNumberToObject(o, "orphaned", (double)s.orphaned);
    cJSON_AddNumberToObject(o, "in_flight", (double)s.in_flight);
    return daebus_http_send_json_take(res, 200, o);
}

static int run_front(daebus_app *app, daebus_blueprint *bp)
{
    daebus_ws_options wo = DAEBUS_WS_OPTIONS_INIT;
    wo.authorize = admins_only; /* the gateway asks it with DAEBUS_WS_AUTH_CALL */
    wo.queue_max_bytes = 64 * 1024;
    int rc = daebus_http_attach(daebus_http_create(NULL, NULL), app);
    if (rc == 0)
        rc = daebus_ws_attach(daebus_ws_create(&wo, NULL), app);
    if (rc == 0)
        rc = daebus_bus_attach(daebus_bus_create(NULL, NULL), app);
    daebus_blueprint_add_action(bp, "ping", act_ok, NULL);
    daebus_blueprint_add_action(bp, "secret", act_ok, NULL);
    daebus_blueprint_add_socket(bp, "become_admin", become_admin, NULL);
    daebus_blueprint_add_route(bp, "/gw/stats", stats_route, NULL);
    daebus_gateway_options go = DAEBUS_GATEWAY_OPTIONS_INIT;
    go.allow = "gw_target, gw_front.ping, gw_absent.*";
    go.timeout = 1.0;
    go.max_in_flight = 3;
    if (rc == 0)
        rc = daebus_gateway_enable(app, &go);
    /* A second enable is refused. */
    if (rc == 0 && daebus_gateway_enable(app, &go) != DAEBUS_EEXIST)
        rc = DAEBUS_ESTATE;
    return rc;
}

int main(int argc, char **argv)
{
    const char *mode = getenv("GW_MODE");
    bool front = mode && strcmp(mode, "front") == 0;
    daebus_app_options ao = DAEBUS_APP_OPTIONS_INIT;
    ao.service = front ? "gw_front" : "gw_target";
    daebus_app *app = daebus_app_create(&ao, NULL);
    daebus_blueprint *bp = daebus_blueprint_create("gw_test", NULL);
    if (!app || !bp)
        return 1;
    daebus_app_configure(app, argc, argv);
    int rc;
    if (front) {
        rc = run_front(app, bp);
    } else {
        rc = daebus_bus_attach(daebus_bus_create(NULL, NULL), app);
        daebus_blueprint_add_action(bp, "echo", act_echo, NULL);
        daebus_blueprint_add_action(bp, "fail", act_fail, NULL);
        daebus_blueprint_add_action(bp, "slow", act_slow, NULL);
        daebus_blueprint_add_action(bp, "progress", act_progress, NULL);
        daebus_blueprint_add_action(bp, "admin_only", act_ok, NULL);
        daebus_blueprint_add_action(bp, "big", act_big, NULL);
    }
    if (rc == 0)
        rc = daebus_app_register_blueprint(app, bp);
    int status = rc == 0 ? daebus_app_run(app) : 1;
    daebus_app_destroy(app);
    daebus_blueprint_destroy(bp);
    return status;
}
