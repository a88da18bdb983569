/* A second translation unit: a blueprint with a prefix and one handler of
 * every kind, plus a default-blueprint handler, for test_registration. */
#include "daebus/daebus.h"

DAEBUS_BLUEPRINT(other_bp, "other", .prefix = "/other");

ROUTE(other_items, "/items/<id>", .methods = DAEBUS_GET | DAEBUS_DELETE, .bp = &other_bp)
{
    return 0;
}

SOCKET(other_ping, "ping", .bp = &other_bp)
{
    return cJSON_CreateString("pong");
}

SOCKET_CONNECT(other_connect, .bp = &other_bp)
{
    return NULL;
}

SOCKET_DISCONNECT(other_disconnect, .bp = &other_bp)
{
    return NULL;
}

SOCKET_REGISTER(other_register, .bp = &other_bp)
{
    return NULL;
}

/* Overrides the default blueprint's "get_status" when other_bp is registered. */
ACTION(other_status, "get_status", .bp = &other_bp)
{
    return 1;
}

LISTEN(other_listen, "notifications", .bp = &other_bp)
{
    return 0;
}

BACKGROUND(other_tick, "tick", 0.5, .run_at_start = true, .bp = &other_bp)
{
    return 0;
}

THREAD(other_thread, "worker", .no_auto_start = true, .bp = &other_bp) {}

ON_START(other_start, .bp = &other_bp)
{
    return 0;
}

/* This one goes to the default blueprint from a second file. */
ACTION(default_from_tu2, "from_tu2")
{
    return 0;
}
