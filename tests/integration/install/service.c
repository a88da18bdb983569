/* A user's one-file service, built against the installed package (see
 * install_test.sh): one route, one action, HTTP only (no Redis needed).
 * Prints its handler counts, then serves until SIGTERM. */
#include <stdio.h>
#include <daebus/daebus.h>

ROUTE(ping, "/ping")
{
    cJSON *out = cJSON_CreateObject();
    cJSON_AddBoolToObject(out, "pong", 1);
    return daebus_http_send_json_take(res, 200, out);
}

ACTION(hello, "hello")
{
    return daebus_bus_reply_take(req, cJSON_CreateString("hi"));
}

int main(int argc, char **argv)
{
    daebus_app_options o = DAEBUS_APP_OPTIONS_INIT;
    o.service = "install_check";
    daebus_app *app = daebus_app_create(&o, NULL);
    if (!app)
        return 2;
    daebus_app_configure(app, argc, argv);
    printf("handlers: routes=%zu actions=%zu\n",
           daebus_app_handler_count(app, DAEBUS_HANDLER_ROUTE),
           daebus_app_handler_count(app, DAEBUS_HANDLER_ACTION));
    fflush(stdout);
    daebus_http *http = daebus_http_create(NULL, NULL);
    if (daebus_http_attach(http, app) != 0)
        return 1;
    int status = daebus_app_run(app);
    daebus_app_destroy(app);
    return status;
}
