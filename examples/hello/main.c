/* hello - the smallest daebus-c service. */
#include <daebus/daebus.h>

int main(int argc, char **argv)
{
    daebus_app_options o = DAEBUS_APP_OPTIONS_INIT;
    o.service = "hello_service";
    daebus_app *app = daebus_app_create(&o, NULL);
    if (!app)
        return 1;
    daebus_app_configure(app, argc, argv);
    int status = daebus_app_run(app);
    daebus_app_destroy(app);
    return status;
}
