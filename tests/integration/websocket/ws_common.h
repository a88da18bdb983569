/* ws_common.h - shared set-up of the WebSocket integration tests. */
#ifndef WS_COMMON_H
#define WS_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include "daebus/daebus.h"
#include "daebus/http.h"
#include "daebus/websocket.h"
#include "testsupport.h"

/* Starts an app with HTTP (free port, 4 workers) and a WebSocket component
 * made from wo (the shared fixture). Returns the port, or -1. */
static inline int wst_start(daebus_app **app, daebus_ws **ws, const daebus_ws_options *wo,
                            const char *service)
{
    daebus_http_options ho = {.num_threads = 4};
    ts_service_options o = {.service = service,
                            .log_level = DAEBUS_LOG_ERROR,
                            .http_options = &ho,
                            .ws = true,
                            .ws_options = wo};
    ts_service svc;
    if (ts_service_start(&svc, &o) != 0)
        return -1;
    *app = svc.app;
    *ws = svc.ws;
    return svc.port;
}

/* Runs ws_cases.py CASE PORT [ARG]; returns its exit status. */
static inline int wst_py(const char *casename, int port, const char *arg)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 %s/tests/integration/websocket/ws_cases.py %s %d %s",
             getenv("DAEBUS_SOURCE_DIR") ? getenv("DAEBUS_SOURCE_DIR") : ".", casename, port,
             arg ? arg : "");
    int r = system(cmd);
    return r == -1 ? -1 : (r >> 8) & 0xff;
}

#endif
