/* test_gateway_options.c - daebus_gateway_enable()'s checks and life, in
 * process (no Redis needed: the app is never run): refused without the
 * WebSocket or the bus component, with bad options, twice, once running;
 * freed with the bus (ASan: nothing leaks); the "publish" handler it
 * registers. */
#include <daebus/daebus.h>
#include "testsupport.h"

static daebus_app *new_app(bool ws, bool bus)
{
    daebus_app_options o = DAEBUS_APP_OPTIONS_INIT;
    o.service = "gw_opts";
    o.http_port = DAEBUS_PORT_ANY;
    o.no_signals = true;
    daebus_app *app = daebus_app_create(&o, NULL);
    CU_ASSERT_FATAL(app != NULL);
    CU_ASSERT(daebus_http_attach(daebus_http_create(NULL, NULL), app) == 0);
    if (ws)
        CU_ASSERT(daebus_ws_attach(daebus_ws_create(NULL, NULL), app) == 0);
    if (bus)
        CU_ASSERT(daebus_bus_attach(daebus_bus_create(NULL, NULL), app) == 0);
    return app;
}

static void test_needs_components(void)
{
    daebus_gateway_options go = DAEBUS_GATEWAY_OPTIONS_INIT;
    go.allow = "svc.act";
    daebus_app *app = new_app(false, true);
    CU_ASSERT(daebus_gateway_enable(app, &go) == DAEBUS_ESTATE);
    daebus_app_destroy(app);
    app = new_app(true, false);
    CU_ASSERT(daebus_gateway_enable(app, &go) == DAEBUS_ESTATE);
    daebus_gateway_stats st;
    CU_ASSERT(daebus_gateway_get_stats(app, &st) == DAEBUS_ESTATE);
    daebus_app_destroy(app);
    CU_ASSERT(daebus_gateway_enable(NULL, &go) == DAEBUS_EINVAL);
}

static void test_bad_options(void)
{
    daebus_app *app = new_app(true, true);
    daebus_gateway_options go = DAEBUS_GATEWAY_OPTIONS_INIT;
    go.timeout = -1;
    CU_ASSERT(daebus_gateway_enable(app, &go) == DAEBUS_EINVAL);
    go.timeout = 0;
    go.max_in_flight = -2;
    CU_ASSERT(daebus_gateway_enable(app, &go) == DAEBUS_EINVAL);
    CU_ASSERT(daebus_app_find_handler(app, DAEBUS_HANDLER_SOCKET, "publish", 0) == NULL);
    daebus_app_destroy(app);
}

static void test_enable_once(void)
{
    daebus_app *app = new_app(true, true);
    /* Defaults (opts NULL): on, nothing callable. */
    CU_ASSERT(daebus_gateway_enable(app, NULL) == 0);
    CU_ASSERT(daebus_app_find_handler(app, DAEBUS_HANDLER_SOCKET, "publish", 0) != NULL);
    CU_ASSERT(daebus_gateway_enable(app, NULL) == DAEBUS_EEXIST);
    daebus_gateway_stats st;
    CU_ASSERT(daebus_gateway_get_stats(app, &st) == 0);
    CU_ASSERT(st.calls == 0 && st.refused == 0 && st.in_flight == 0);
    CU_ASSERT(daebus_gateway_get_stats(app, NULL) == DAEBUS_EINVAL);
    daebus_app_destroy(app); /* frees the gateway with the bus */
}

int main(void)
{
    daebus_log_set_level(DAEBUS_LOG_CRITICAL);
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("gateway options", NULL, NULL);
    CU_add_test(s, "needs the WebSocket and bus components", test_needs_components);
    CU_add_test(s, "bad options", test_bad_options);
    CU_add_test(s, "enable once", test_enable_once);
    return ts_run_cunit();
}
