/* bus_store.c - Redis commands for shared state on the bus's publisher pool.
 *
 * daebus_bus_redis() and daebus_bus_redis_pipeline() (daebus/bus.h) hand
 * their commands to the transport's pipeline (redis_pub.h: one write, one
 * connection of the pool, its replies read in order) and convert each hiredis
 * reply to cJSON. A failed call is counted (store_errors) and logged at most
 * once a second: an error reply with Redis's text, a lost connection without
 * it (the bus's subscriber logs the link's state changes).
 */
#include <stdlib.h>
#include <string.h>
#include "daebus/log.h"
#include "bus_internal.h"
#include "clock.h"

#define LOGC DAEBUS__BUS_LOGC

/* Converts r; *bad is set when r (or an element) is an error reply.
 * Returns: the JSON, or NULL when out of memory. */
static cJSON *to_json(const redisReply *r, int *bad)
{
    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
        return cJSON_CreateString(r->str ? r->str : "");
    case REDIS_REPLY_INTEGER:
        return cJSON_CreateNumber((double)r->integer);
    case REDIS_REPLY_NIL:
        return cJSON_CreateNull();
    case REDIS_REPLY_ERROR: {
        *bad = 1;
        cJSON *o = cJSON_CreateObject();
        if (o && !cJSON_AddStringToObject(o, "error", r->str ? r->str : "")) {
            cJSON_Delete(o);
            return NULL;
        }
        return o;
    }
    case REDIS_REPLY_ARRAY: {
        cJSON *a = cJSON_CreateArray();
        for (size_t i = 0; a && i < r->elements; i++) {
            cJSON *e = to_json(r->element[i], bad);
            if (!e) {
                cJSON_Delete(a);
                return NULL;
            }
            cJSON_AddItemToArray(a, e);
        }
        return a;
    }
    default: /* RESP3 types never come: the pool speaks RESP2 */
        return cJSON_CreateNull();
    }
}

static int check_cmd(int argc, const char **argv)
{
    if (argc < 1 || !argv)
        return DAEBUS_EINVAL;
    for (int i = 0; i < argc; i++)
        if (!argv[i])
            return DAEBUS_EINVAL;
    return 0;
}

/* Counts and logs (one line a second) a failed call. first_error: the text of
 * the first error reply, or NULL for a lost connection. */
static void note_failure(daebus_bus *bus, const char *cmd, const char *first_error, int rc)
{
    atomic_fetch_add(&bus->store_errors, 1);
    long missed = daebus__ratelimit_pass(&bus->store_log, daebus__now_mono(), 1.0);
    if (missed < 0)
        return;
    if (first_error)
        DAEBUS_LOG_WARNF(LOGC,
                         "Redis refused %.32s: %.200s (%ld more failed command(s) not logged)", cmd,
                         first_error, missed);
    else
        DAEBUS_LOG_WARNF(LOGC, "Redis command %.32s failed: %s (%ld more not logged)", cmd,
                         daebus_strerror(rc), missed);
}

/* Runs the n commands and converts their replies into out[0..n-1]. */
static int run(daebus_bus *bus, const daebus_redis_cmd *cmds, size_t n, cJSON **out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = NULL;
    if (!bus || !cmds || n < 1 || n > DAEBUS_BUS_PIPELINE_MAX)
        return DAEBUS_EINVAL;
    daebus__redis_cmd *rc_cmds = calloc(n, sizeof *rc_cmds);
    size_t **lens = calloc(n, sizeof *lens);
    redisReply **replies = calloc(n, sizeof *replies);
    int rc = rc_cmds && lens && replies ? 0 : DAEBUS_ENOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = check_cmd(cmds[i].argc, cmds[i].argv);
        if (rc == 0 && !cmds[i].lens) {
            lens[i] = malloc((size_t)cmds[i].argc * sizeof **lens);
            if (!lens[i])
                rc = DAEBUS_ENOMEM;
            for (int k = 0; lens[i] && k < cmds[i].argc; k++)
                lens[i][k] = strlen(cmds[i].argv[k]);
        }
        if (rc == 0)
            rc_cmds[i] = (daebus__redis_cmd){cmds[i].argc, cmds[i].argv,
                                             cmds[i].lens ? cmds[i].lens : lens[i]};
    }
    if (rc == 0 && !daebus__redis_pub_is_open(bus->pub))
        rc = DAEBUS_ESTATE;
    if (rc == 0) {
        atomic_fetch_add(&bus->store_commands, n);
        rc = daebus__redis_pub_pipeline(bus->pub, rc_cmds, (int)n, replies);
        if (rc == DAEBUS_ECLOSED)
            rc = DAEBUS_ESTATE; /* stopped meanwhile */
        else if (rc != 0)
            note_failure(bus, cmds[0].argv[0], NULL, rc);
    }
    const char *first_error = NULL;
    size_t first_at = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        int bad = 0;
        out[i] = to_json(replies[i], &bad);
        if (!out[i])
            rc = DAEBUS_ENOMEM;
        if (bad && !first_error) {
            first_error =
                replies[i]->type == REDIS_REPLY_ERROR ? replies[i]->str : "an error in an array";
            first_at = i;
        }
    }
    if (rc == 0 && first_error) {
        /* NOSCRIPT is EVALSHA's normal answer after Redis lost its script
         * cache (the caller loads the script again): neither logged nor
         * counted. */
        if (strncmp(first_error, "NOSCRIPT", 8) != 0)
            note_failure(bus, cmds[first_at].argv[0], first_error, DAEBUS_EREPLY);
        rc = DAEBUS_EREPLY;
    }
    for (size_t i = 0; replies && i < n; i++)
        if (replies[i])
            freeReplyObject(replies[i]);
    for (size_t i = 0; lens && i < n; i++)
        free(lens[i]);
    if (rc != 0 && rc != DAEBUS_EREPLY)
        for (size_t i = 0; i < n; i++) {
            cJSON_Delete(out[i]);
            out[i] = NULL;
        }
    free(replies);
    free(lens);
    free(rc_cmds);
    return rc;
}

int daebus_bus_redis(daebus_bus *bus, int argc, const char **argv, const size_t *lens,
                     cJSON **reply)
{
    daebus_redis_cmd cmd = {argc, argv, lens};
    cJSON *out = NULL;
    int rc = run(bus, &cmd, 1, &out);
    if (reply)
        *reply = out;
    else
        cJSON_Delete(out);
    return rc;
}

int daebus_bus_redis_pipeline(daebus_bus *bus, const daebus_redis_cmd *cmds, size_t n,
                              cJSON **replies)
{
    if (replies)
        return run(bus, cmds, n, replies);
    if (n < 1 || n > DAEBUS_BUS_PIPELINE_MAX)
        return DAEBUS_EINVAL;
    cJSON **tmp = calloc(n, sizeof *tmp);
    if (!tmp)
        return DAEBUS_ENOMEM;
    int rc = run(bus, cmds, n, tmp);
    for (size_t i = 0; i < n; i++)
        cJSON_Delete(tmp[i]);
    free(tmp);
    return rc;
}
