/* daebus/http.h - HTTP server (CivetWeb): routes, requests, responses, CORS, static files,
 * middleware.
 *
 * (Filled in by the http component's issue.)
 */
#ifndef DAEBUS_HTTP_H
#define DAEBUS_HTTP_H

#include "daebus/app.h"

#endif
