/* admin_durable.c - the admin blueprint's dead letters of durable actions.
 *
 * A durable request that no replica could complete after
 * durable_max_attempts deliveries is moved to the stream
 * daebus:<service>:dead (docs/messaging/durable.md). These two actions list
 * those entries, a page at a time, and put them back on the request stream
 * with a fresh deadline. They use the public bus API only (Redis commands
 * on the bus's publisher pool); a requeue is one script, so an entry is
 * never both requeued and kept, or lost.
 */
#include "admin/admin.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEAD_PAGE_DEFAULT 50
#define DEAD_PAGE_MAX     500
#define REQUEUE_MAX       1000

/* KEYS[1] the dead-letter stream, KEYS[2] the request stream; ARGV[1] an
 * entry id, or "" for every entry (up to ARGV[3]); ARGV[2] the fresh
 * deadline (ms). Returns the number of entries requeued. */
static const char requeue_lua[] =
    "local list\n"
    "if ARGV[1] ~= '' then list = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])\n"
    "else list = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', ARGV[3]) end\n"
    "local n = 0\n"
    "for _, e in ipairs(list) do\n"
    "  local f, req = e[2], nil\n"
    "  for i = 1, #f, 2 do if f[i] == 'req' then req = f[i + 1] end end\n"
    "  if req then\n"
    "    redis.call('XADD', KEYS[2], '*', 'req', req, 'deadline', ARGV[2])\n"
    "    n = n + 1\n"
    "  end\n"
    "  redis.call('XDEL', KEYS[1], e[1])\n"
    "end\n"
    "return n\n";

static void stream_key(daebus_bus_request *req, const char *what, char *buf, size_t len)
{
    snprintf(buf, len, "daebus:%s:%s", daebus_app_service(daebus_bus_request_app(req)), what);
}

static const char *str_of(const cJSON *payload, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(payload, key);
    return cJSON_IsString(v) && v->valuestring && v->valuestring[0] ? v->valuestring : NULL;
}

static double num_of(const cJSON *payload, const char *key, double dflt, double lo, double hi)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(payload, key);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return dflt;
    return v->valuedouble < lo ? lo : v->valuedouble > hi ? hi : v->valuedouble;
}

/* One XRANGE entry ([id, [field, value, ...]]) as {"id", "req", "reason",
 * "attempts", "at"}: req decoded when it is JSON. */
static cJSON *entry_json(const cJSON *e)
{
    const cJSON *id = cJSON_GetArrayItem(e, 0);
    const cJSON *fields = cJSON_GetArrayItem(e, 1);
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_IsString(id))
        return o;
    cJSON_AddStringToObject(o, "id", id->valuestring);
    int n = cJSON_GetArraySize(fields);
    for (int i = 0; i + 1 < n; i += 2) {
        const cJSON *k = cJSON_GetArrayItem(fields, i), *v = cJSON_GetArrayItem(fields, i + 1);
        if (!cJSON_IsString(k) || !cJSON_IsString(v))
            continue;
        cJSON *parsed = NULL;
        if (strcmp(k->valuestring, "req") == 0)
            parsed = cJSON_Parse(v->valuestring);
        else if (strcmp(k->valuestring, "attempts") == 0 || strcmp(k->valuestring, "at") == 0)
            parsed = cJSON_CreateNumber(strtod(v->valuestring, NULL));
        cJSON_AddItemToObject(o, k->valuestring,
                              parsed ? parsed : cJSON_CreateString(v->valuestring));
    }
    return o;
}

/* dead_letters {"start"?: entry id (first of the page), "count"?: n} ->
 * {"entries": [...], "count", "total", "next": id of the next page or null}. */
DAEBUS_ACTION(admin_dead_letters, "dead_letters", .bp = &daebus_admin_bp)
{
    daebus_bus *bus = daebus_bus_request_bus(req);
    char key[300], count[16];
    stream_key(req, "dead", key, sizeof key);
    int n = (int)num_of(payload, "count", DEAD_PAGE_DEFAULT, 1, DEAD_PAGE_MAX);
    snprintf(count, sizeof count, "%d", n + 1);
    const char *start = str_of(payload, "start");
    const char *argv[] = {"XRANGE", key, start ? start : "-", "+", "COUNT", count};
    const char *xlen[] = {"XLEN", key};
    daebus_redis_cmd cmds[2] = {{6, argv, NULL}, {2, xlen, NULL}};
    cJSON *rep[2] = {NULL, NULL};
    int rc = daebus_bus_redis_pipeline(bus, cmds, 2, rep);
    if (rc != 0) {
        cJSON_Delete(rep[0]);
        cJSON_Delete(rep[1]);
        return daebus_bus_reply_error(req, "Dead letters unavailable (%s)", daebus_strerror(rc));
    }
    cJSON *out = cJSON_CreateObject();
    cJSON *entries = cJSON_AddArrayToObject(out, "entries");
    int got = cJSON_GetArraySize(rep[0]);
    for (int i = 0; i < got && i < n; i++)
        cJSON_AddItemToArray(entries, entry_json(cJSON_GetArrayItem(rep[0], i)));
    cJSON_AddNumberToObject(out, "count", got < n ? got : n);
    cJSON_AddNumberToObject(out, "total", cJSON_IsNumber(rep[1]) ? rep[1]->valuedouble : 0);
    const cJSON *next = got > n ? cJSON_GetArrayItem(cJSON_GetArrayItem(rep[0], n), 0) : NULL;
    if (cJSON_IsString(next))
        cJSON_AddStringToObject(out, "next", next->valuestring);
    else
        cJSON_AddNullToObject(out, "next");
    cJSON_Delete(rep[0]);
    cJSON_Delete(rep[1]);
    return daebus_bus_reply_take(req, out);
}

/* requeue_dead {"id": entry id} | {"all": true}, "deadline_seconds"? (60) ->
 * {"requeued": n}; error "No dead letter <id>" / "Give an id or all: true". */
DAEBUS_ACTION(admin_requeue_dead, "requeue_dead", .bp = &daebus_admin_bp)
{
    const char *id = str_of(payload, "id");
    bool all = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(payload, "all"));
    if (!id && !all)
        return daebus_bus_reply_error(req, "Give an id or all: true");
    char dead[300], requests[300], deadline[32], max[16];
    stream_key(req, "dead", dead, sizeof dead);
    stream_key(req, "requests", requests, sizeof requests);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double secs = num_of(payload, "deadline_seconds", 60, 1, 7 * 86400);
    snprintf(deadline, sizeof deadline, "%lld",
             (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + (long long)(secs * 1000));
    snprintf(max, sizeof max, "%d", REQUEUE_MAX);
    const char *argv[] = {"EVAL", requeue_lua, "2", dead, requests, id ? id : "", deadline, max};
    cJSON *rep = NULL;
    int rc = daebus_bus_redis(daebus_bus_request_bus(req), 8, argv, NULL, &rep);
    if (rc != 0 || !cJSON_IsNumber(rep)) {
        cJSON_Delete(rep);
        return daebus_bus_reply_error(req, "Requeue failed (%s)", daebus_strerror(rc));
    }
    int n = rep->valueint;
    cJSON_Delete(rep);
    if (id && n == 0)
        return daebus_bus_reply_error(req, "No dead letter %s", id);
    cJSON *out = cJSON_CreateObject();
    cJSON_AddNumberToObject(out, "requeued", n);
    return daebus_bus_reply_take(req, out);
}
