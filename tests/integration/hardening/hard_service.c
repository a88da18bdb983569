/* hard_service - the service test_hard_faults stops with SIGTERM under load:
 * HTTP (/ping, /slow), WebSocket (echo) and the bus, on --port / --redis. */
#define _DEFAULT_SOURCE
#include <string.h>
#include <unistd.h>
#include "daebus/daebus.h"
#include "daebus/http.h"
#include "daebus/websocket.h"

ROUTE(r_ping, "/ping")
{
    return daebus_http_send(res, 200, "text/plain", "pong", 4);
}

/* In flight when SIGTERM arrives: must still be answered. */
ROUTE(r_slow, "/slow")
{
    usleep(1500 * 1000);
    return daebus_http_send(res, 200, "text/plain", "slow", 4);
}

SOCKET(s_echo, "echo")
{
    return cJSON_Duplicate(daebus_ws_request_data(req), true);
}

ACTION(a_echo, "echo")
{
    return daebus_bus_reply(req, payload);
}

int main(int argc, char **argv)
{
    daebus_app_options o = DAEBUS_APP_OPTIONS_INIT;
    o.service = "hard_service";
    o.log_level = DAEBUS_LOG_WARNING;
    daebus_app *app = daebus_app_create(&o, NULL);
    if (!app)
        return 1;
    daebus_app_configure(app, argc, argv);
    daebus_http_options ho = DAEBUS_HTTP_OPTIONS_INIT;
    ho.bind_address = "127.0.0.1";
    ho.num_threads = 8;
    daebus_ws_options wo = DAEBUS_WS_OPTIONS_INIT;
    wo.max_clients = 32;
    wo.shutdown_timeout = 0.5;
    daebus_http *http = daebus_http_create(&ho, NULL);
    daebus_ws *ws = daebus_ws_create(&wo, NULL);
    daebus_bus *bus = daebus_bus_create(NULL, NULL);
    if (!http || daebus_http_attach(http, app) != 0 || !ws || daebus_ws_attach(ws, app) != 0 ||
        !bus || daebus_bus_attach(bus, app) != 0)
        return 1;
    int status = daebus_app_run(app);
    daebus_app_destroy(app);
    return status;
}
