/* app_instances.c - this app as an instance of its service (docs/replicas.md).
 *
 * The id is made at create (app.c); the bus component announces it in Redis
 * through framework/cluster/, and the app hands the cluster's view out. */
#include "daebus/bus.h"
#include "daebus/http.h"
#include "app_internal.h"
#include "bus_internal.h"

const char *daebus_app_instance_id(const daebus_app *app)
{
    return app ? app->instance_id : NULL;
}

int daebus_app_instances(daebus_app *app, cJSON **out)
{
    if (!out)
        return DAEBUS_EINVAL;
    *out = NULL;
    if (!app)
        return DAEBUS_EINVAL;
    daebus__cluster *c = daebus__bus_cluster(daebus__app_component(app, DAEBUS__COMP_BUS));
    if (!c)
        return DAEBUS_ESTATE;
    *out = daebus__cluster_instances(c);
    return *out ? cJSON_GetArraySize(*out) : DAEBUS_ENOMEM;
}

int daebus__app_http_bound_port(const daebus_app *app)
{
    daebus_http *http = daebus_app_http(app);
    return http ? daebus_http_port(http) : -1;
}
