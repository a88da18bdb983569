/* cluster_service.c - a small service for the instance tests: HTTP (health
 * blueprint), WebSocket-free, the bus with the admin blueprint. The heartbeat
 * comes from CLUSTER_HEARTBEAT (seconds); the port and Redis from --port and
 * --redis. */
#include <stdlib.h>
#include "daebus/daebus.h"
#include "admin/admin.h"
#include "health/health.h"

int main(int argc, char **argv)
{
    daebus_app_options ao = DAEBUS_APP_OPTIONS_INIT;
    ao.service = "cluster_test";
    daebus_app *app = daebus_app_create(&ao, NULL);
    if (!app)
        return 1;
    daebus_app_register_blueprint(app, &daebus_health_bp);
    daebus_app_register_blueprint(app, &daebus_admin_bp);
    daebus_app_configure(app, argc, argv);
    daebus_http_attach(daebus_http_create(NULL, NULL), app);
    daebus_bus_options bo = DAEBUS_BUS_OPTIONS_INIT;
    const char *hb = getenv("CLUSTER_HEARTBEAT");
    bo.heartbeat = hb ? atof(hb) : 0.2;
    daebus_bus_attach(daebus_bus_create(&bo, NULL), app);
    int status = daebus_app_run(app);
    daebus_app_destroy(app);
    return status;
}
