/* ws_common.h - shared set-up of the WebSocket integration tests. */
#ifndef WS_COMMON_H
#define WS_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include "daebus/daebus.h"
#include "daebus/http.h"
#include "daebus/websocket.h"
#include "testsupport.h"

/* Starts an app with HTTP (free port) and a WebSocket component made from wo.
 * Returns the port, or -1. */
static inline int wst_start(daebus_app **app, daebus_ws **ws, const daebus_ws_options *wo,
                            const char *service)
{
    daebus_app_options o = DAEBUS_APP_OPTIONS_INIT;
    o.service = service;
    o.no_signals = true;
    o.log_level = getenv("WS_TEST_LOG") ? DAEBUS_LOG_DEBUG : DAEBUS_LOG_ERROR;
    *app = daebus_app_create(&o, NULL);
    daebus_http_options ho = DAEBUS_HTTP_OPTIONS_INIT;
    ho.port = DAEBUS_HTTP_PORT_ANY;
    ho.bind_address = "127.0.0.1";
    ho.num_threads = 4;
    daebus_http *http = daebus_http_create(&ho, NULL);
    if (!*app || !http || daebus_http_attach(http, *app) != 0)
        return -1;
    *ws = daebus_ws_create(wo, NULL);
    if (!*ws || daebus_ws_attach(*ws, *app) != 0)
        return -1;
    if (daebus_app_start(*app) != 0)
        return -1;
    return daebus_http_port(http);
}

static inline void wst_stop(daebus_app *app)
{
    daebus_app_stop(app);
    daebus_app_wait(app);
    daebus_app_destroy(app);
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

/* Polls cond (an expression) for up to ms milliseconds. */
#define WST_WAIT(cond, ms)                                                                         \
    do {                                                                                           \
        double wst_end_ = ts_now() + (ms) / 1000.0;                                                \
        while (!(cond) && ts_now() < wst_end_)                                                     \
            ts_sleep_ms(5);                                                                        \
    } while (0)

#endif
