/* hello - the smallest daebus-c service: one bus action, one HTTP route.
 *
 *   daebus-call hello_service hello '{"name": "Ada"}'   ->  {"message": "Hello, Ada!"}
 *   curl 'http://localhost:8080/hello?name=Ada'          ->  {"message": "Hello, Ada!"}
 */
#include <stdio.h>
#include <daebus/daebus.h>

/* Builds {"message": "Hello, <name>!"} from payload.name (default "World"). */
static cJSON *greeting(const cJSON *payload)
{
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(payload, "name");
    char text[256];
    snprintf(text, sizeof text, "Hello, %s!",
             cJSON_IsString(name) && name->valuestring[0] ? name->valuestring : "World");
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "message", text);
    return out;
}

ACTION(hello, "hello")
{
    return daebus_bus_reply_take(req, greeting(payload));
}

ROUTE(hello_http, "/hello")
{
    return daebus_http_send_json_take(res, 200, greeting(daebus_http_request_payload(req)));
}

int main(int argc, char **argv)
{
    daebus_app_options o = DAEBUS_APP_OPTIONS_INIT;
    o.service = "hello_service";
    daebus_app *app = daebus_app_create(&o, NULL);
    if (!app)
        return 1;
    daebus_app_configure(app, argc, argv); /* --port, --redis, --service ... and DAEBUS_* env */

    daebus_http *http = daebus_http_create(NULL, NULL); /* port 8080 unless configured */
    daebus_bus *bus = daebus_bus_create(NULL, NULL);
    if (!http || daebus_http_attach(http, app) != 0) {
        daebus_http_destroy(http);
        http = NULL;
    }
    if (!bus || daebus_bus_attach(bus, app) != 0) {
        daebus_bus_destroy(bus);
        bus = NULL;
    }
    int status = http && bus ? daebus_app_run(app) : 1;
    daebus_app_destroy(app);
    return status;
}
