/* blueprints/health/health.h - liveness, readiness and Prometheus metrics in one line.
 *
 *   #include "health/health.h"
 *   daebus_app_register_blueprint(app, &daebus_health_bp);
 *
 * Routes (GET, HEAD):
 *   /health         200 {"status": "ok" | "degraded", "service", "instance_id",
 *                   "version", "uptime_seconds", "live": true, "ready": bool,
 *                   "checks": {...}}; with a bus, checks.instances is
 *                   {"status": "up" | "stale", "count": live instances of the
 *                   service} (docs/replicas.md) and checks.cluster is
 *                   {"instances", "clients"}: the whole service beside this
 *                   replica's own figures (clients: WebSocket clients of
 *                   every replica; null while Redis is unreachable)
 *                   - always 200 while the process serves HTTP (liveness);
 *                   "ready" is false (and status "degraded") while Redis is
 *                   unreachable.
 *   /health/live    200 {"status": "alive"}
 *   /health/ready   200 {"status": "ready", ...} or 503 {"status": "not_ready", ...}
 *   /metrics        Prometheus text format 0.0.4: HTTP, bus, WebSocket and
 *                   scheduler counters of the app serving the request, taken
 *                   from daebus_*_get_stats(), and with a bus the gauges
 *                   daebus_instance_info{instance_id}, daebus_instances and
 *                   daebus_instances_stale, and with a WebSocket component
 *                   daebus_cluster_ws_clients (every replica's clients);
 *                   components that are not attached are left out.
 *
 * To mount the routes under a prefix, set it before registering:
 * daebus_health_bp.prefix = "/ops"; (then /ops/health, /ops/metrics).
 * Needs the HTTP component; the bus, WebSocket and scheduler are optional.
 *
 * Thread: the routes run on CivetWeb worker threads and only read the
 * components' thread-safe stats functions.
 */
#ifndef DAEBUS_BP_HEALTH_H
#define DAEBUS_BP_HEALTH_H

#include <stddef.h>
#include <daebus/daebus.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The blueprint: GET /health, /health/live, /health/ready, /metrics. */
DAEBUS_BLUEPRINT_DECLARE(daebus_health_bp);

/* Writes the Prometheus text of app's counters into a malloc'd string.
 * Ownership: the caller frees *out. Returns: 0, DAEBUS_EINVAL, DAEBUS_ENOMEM.
 * Thread: any, while the app runs. */
int daebus_health_metrics_text(daebus_app *app, char **out, size_t *len);

#ifdef __cplusplus
}
#endif
#endif
