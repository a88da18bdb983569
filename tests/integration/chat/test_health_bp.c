/* test_health_bp.c - the health blueprint in-process, in an app with HTTP only.
 *
 * A service without a bus, WebSocket or scheduler registers the blueprint:
 * /health is ok and ready with only the http check, /health/ready is 200,
 * /metrics has the HTTP families and none of the absent components', a
 * prefix set before registering moves the routes, and the handler count
 * proves the blueprint's object file was linked.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <daebus/daebus.h>
#include "health/health.h"
#include "testsupport.h"

static ts_service svc;
static daebus_app *app;
static int port;

static int start_app(const char *prefix)
{
    daebus_health_bp.prefix = prefix;
    ts_service_options o = {
        .service = "health_test", .http = true, .blueprints = {&daebus_health_bp}};
    if (ts_service_start(&svc, &o) != 0)
        return -1;
    app = svc.app;
    port = svc.port;
    return 0;
}

static void stop_app(void)
{
    ts_service_stop(&svc);
    app = NULL;
    daebus_health_bp.prefix = NULL;
}

static cJSON *get_json(const char *path, int *status)
{
    ts_http_response r;
    *status = 0;
    if (ts_http(port, "GET", path, NULL, NULL, 0, &r) != 0)
        return NULL;
    *status = r.status;
    cJSON *j = cJSON_Parse(r.body);
    ts_http_free(&r);
    return j;
}

static void test_http_only(void)
{
    CU_ASSERT_EQUAL_FATAL(start_app(NULL), 0);
    CU_ASSERT_EQUAL(daebus_app_handler_count(app, DAEBUS_HANDLER_ROUTE), 4);

    int status;
    cJSON *j = get_json("/health", &status);
    CU_ASSERT_EQUAL(status, 200);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(j, "status")->valuestring, "ok");
    CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(j, "service")->valuestring, "health_test");
    CU_ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(j, "ready")));
    cJSON *checks = cJSON_GetObjectItem(j, "checks");
    CU_ASSERT_PTR_NOT_NULL(cJSON_GetObjectItem(checks, "http"));
    CU_ASSERT_PTR_NULL(cJSON_GetObjectItem(checks, "redis"));
    CU_ASSERT_PTR_NULL(cJSON_GetObjectItem(checks, "websocket"));
    CU_ASSERT(cJSON_GetObjectItem(j, "uptime_seconds")->valuedouble >= 0);
    cJSON_Delete(j);

    j = get_json("/health/ready", &status);
    CU_ASSERT_EQUAL(status, 200);
    CU_ASSERT(j && strcmp(cJSON_GetObjectItem(j, "status")->valuestring, "ready") == 0);
    cJSON_Delete(j);

    ts_http_response r;
    CU_ASSERT_EQUAL_FATAL(ts_http(port, "GET", "/metrics", NULL, NULL, 0, &r), 0);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "daebus_http_requests_total "));
    CU_ASSERT_PTR_NOT_NULL(strstr(r.body, "daebus_info{service=\"health_test\""));
    CU_ASSERT_PTR_NULL(strstr(r.body, "daebus_bus_"));
    CU_ASSERT_PTR_NULL(strstr(r.body, "daebus_ws_"));
    CU_ASSERT_PTR_NULL(strstr(r.body, "daebus_scheduler_"));
    /* Every sample line belongs to a family announced by # TYPE. */
    char *save = NULL, *body = strdup(r.body);
    for (char *line = strtok_r(body, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#')
            continue;
        char family[128];
        size_t n = strcspn(line, "{ ");
        snprintf(family, sizeof family, "# TYPE %.*s ", (int)n, line);
        if (!strstr(r.body, family))
            fprintf(stderr, "no TYPE line for: %s\n", line);
        CU_ASSERT_PTR_NOT_NULL(strstr(r.body, family));
    }
    free(body);
    ts_http_free(&r);

    /* The text function gives the same families. */
    char *text = NULL;
    size_t len = 0;
    CU_ASSERT_EQUAL(daebus_health_metrics_text(app, &text, &len), 0);
    CU_ASSERT(text && len == strlen(text) && strstr(text, "daebus_uptime_seconds "));
    free(text);
    stop_app();
}

static void test_prefix(void)
{
    CU_ASSERT_EQUAL_FATAL(start_app("/ops"), 0);
    int status;
    cJSON *j = get_json("/ops/health", &status);
    CU_ASSERT_EQUAL(status, 200);
    cJSON_Delete(j);
    j = get_json("/health", &status);
    CU_ASSERT_EQUAL(status, 404);
    cJSON_Delete(j);
    stop_app();
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("health blueprint", NULL, NULL);
    CU_add_test(s, "http only", test_http_only);
    CU_add_test(s, "prefix", test_prefix);
    return ts_run_cunit();
}
