/* A blueprint linked from a static library keeps every handler. */
#include "daebus/daebus.h"
#include "testsupport.h"

DAEBUS_BLUEPRINT_DECLARE(static_lib_bp);

static void test_static_library_blueprint(void)
{
    CU_ASSERT_EQUAL(daebus_blueprint_count(&static_lib_bp, 0), 3);
    daebus_app_options o = DAEBUS_APP_OPTIONS_INIT;
    o.no_signals = true;
    daebus_app *app = daebus_app_create(&o, NULL);
    CU_ASSERT_EQUAL(daebus_app_register_blueprint(app, &static_lib_bp), 0);
    CU_ASSERT_PTR_NOT_NULL(daebus_app_find_handler(app, DAEBUS_HANDLER_ACTION, "sl_action", 0));
    CU_ASSERT_PTR_NOT_NULL(daebus_app_find_handler(app, DAEBUS_HANDLER_ROUTE, "/sl", DAEBUS_GET));
    CU_ASSERT_EQUAL(daebus_app_handler_count(app, DAEBUS_HANDLER_BACKGROUND), 1);
    daebus_app_destroy(app);
}

int main(void)
{
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("static_link", NULL, NULL);
    CU_add_test(s, "blueprint from a static library", test_static_library_blueprint);
    return ts_run_cunit();
}
