/* Public API only (no framework/ internals), compiled with -pedantic: the
 * macros with and without options, the explicit API, app life cycle. */
#define DAEBUS_NO_SHORT_NAMES
#include <daebus/daebus.h>
#include "testsupport.h"

/* Short names are off: only the DAEBUS_ spellings exist. */
#ifdef ROUTE
#error "ROUTE must not be defined with DAEBUS_NO_SHORT_NAMES"
#endif

DAEBUS_BLUEPRINT(api_bp, "api", .prefix = "/v1");

DAEBUS_ROUTE(api_route, "/things/<int:id>", .methods = DAEBUS_GET | DAEBUS_PUT, .bp = &api_bp)
{
    return 0;
}

DAEBUS_SOCKET_CONNECT(api_connect, .bp = &api_bp)
{
    return NULL;
}

DAEBUS_ON_START(api_on_start)
{
    return 0;
}

static void test_prefixed_macros(void)
{
    CU_ASSERT_EQUAL(daebus_blueprint_count(&api_bp, 0), 2);
    daebus_app_options o = DAEBUS_APP_OPTIONS_INIT;
    o.no_signals = true;
    o.log_level = DAEBUS_LOG_ERROR;
    daebus_app *app = daebus_app_create(&o, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(app);
    CU_ASSERT_EQUAL(daebus_app_register_blueprint(app, &api_bp), 0);
    CU_ASSERT_PTR_NOT_NULL(
        daebus_app_find_handler(app, DAEBUS_HANDLER_ROUTE, "/v1/things/<int:id>", DAEBUS_PUT));
    CU_ASSERT_EQUAL(daebus_app_handler_count(app, DAEBUS_HANDLER_ON_START), 1);
    CU_ASSERT_EQUAL(daebus_app_start(app), 0);
    daebus_app_stop(app);
    CU_ASSERT_EQUAL(daebus_app_wait(app), 0);
    daebus_app_destroy(app);
}

int main(void)
{
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("public_api", NULL, NULL);
    CU_add_test(s, "DAEBUS_ macros under -pedantic", test_prefixed_macros);
    return ts_run_cunit();
}
