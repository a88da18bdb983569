/* hello - the smallest daebus-c service (README.md shows this whole file). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <daebus/daebus.h>

/* {"message": "Hello, <name>!"} from payload.name (default "World"). */
static cJSON *greeting(const cJSON *payload)
{
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(payload, "name");
    const char *who = cJSON_IsString(name) && name->valuestring[0] ? name->valuestring : "World";
    size_t len = strlen(who) + sizeof "Hello, !"; /* sized to the name: never cut a character */
    char *text = malloc(len);
    cJSON *out = cJSON_CreateObject();
    if (text) {
        snprintf(text, len, "Hello, %s!", who);
        cJSON_AddStringToObject(out, "message", text);
    }
    free(text);
    return out;
}

ACTION(hello, "hello") /* daebus-call hello_service hello '{"name": "Ada"}' */
{
    return daebus_bus_reply_take(req, greeting(payload)); /* the framework owns the JSON now */
}

ROUTE(hello_http, "/hello") /* curl 'http://localhost:8080/hello?name=Ada' */
{
    return daebus_http_send_json_take(res, 200, greeting(daebus_http_request_payload(req)));
}

int main(int argc, char **argv)
{
    daebus_app_options o = {.service = "hello_service"}; /* zero means default everywhere */
    daebus_app *app = daebus_app_create(&o, NULL);
    if (!app)
        return 1;
    daebus_app_configure(app, argc, argv); /* --port, --redis, --service ..., DAEBUS_* env */
    /* attach takes the component on every path: nothing to free if it fails */
    int rc = daebus_http_attach(daebus_http_create(NULL, NULL), app); /* port 8080 */
    if (rc == 0)
        rc = daebus_bus_attach(daebus_bus_create(NULL, NULL), app);
    int status = rc == 0 ? daebus_app_run(app) : 1; /* until SIGINT/SIGTERM, graceful stop */
    daebus_app_destroy(app);
    return status;
}
