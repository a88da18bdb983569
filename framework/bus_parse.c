/* bus_parse.c - parsing and building the bus wire format (docs/protocol.md §1).
 *
 * Pure functions over byte buffers and cJSON trees, kept apart from the I/O
 * so that they can be fuzzed. Parsing never trusts the input: every field is
 * type-checked and a wrong type is treated as absent.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bus_parse.h"

/* True if only JSON whitespace follows end within [data, data+len). */
static bool only_space_after(const char *data, size_t len, const char *end)
{
    if (!end || end < data || end > data + len)
        return false;
    for (const char *p = end; p < data + len; p++)
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n' && *p != '\0')
            return false;
    return true;
}

static const char *str_field(const cJSON *obj, const char *key, bool nonempty)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsString(it) || !it->valuestring)
        return NULL;
    if (nonempty && it->valuestring[0] == '\0')
        return NULL;
    return it->valuestring;
}

cJSON *daebus__bus_parse_object(const char *data, size_t len)
{
    if (!data || len == 0)
        return NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(data, len, &end, 0);
    if (!root)
        return NULL;
    if (!cJSON_IsObject(root) || !only_space_after(data, len, end)) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

int daebus__bus_parse_request(const char *data, size_t len, daebus__bus_envelope *out, char *errbuf,
                              size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (errlen)
        errbuf[0] = '\0';
    if (!data || len == 0) {
        if (errlen)
            snprintf(errbuf, errlen, "empty message");
        return -1;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(data, len, &end, 0);
    if (!root) {
        if (errlen) {
            size_t off = end && end >= data && end <= data + len ? (size_t)(end - data) : 0;
            snprintf(errbuf, errlen, "invalid JSON near byte %zu", off);
        }
        return -1;
    }
    if (!only_space_after(data, len, end)) {
        if (errlen)
            snprintf(errbuf, errlen, "trailing data after the JSON value");
        cJSON_Delete(root);
        return -1;
    }
    if (!cJSON_IsObject(root)) {
        if (errlen)
            snprintf(errbuf, errlen, "message is not a JSON object");
        cJSON_Delete(root);
        return -1;
    }
    out->root = root;
    out->action = str_field(root, "action", true);
    out->reply_to = str_field(root, "reply_to", true);
    out->service = str_field(root, "service", true);
    out->request_id = cJSON_GetObjectItemCaseSensitive(root, "request_id");

    const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "payload");
    if (p && cJSON_IsString(p)) {
        const char *s = p->valuestring ? p->valuestring : "";
        const char *pe = NULL;
        out->payload = cJSON_ParseWithLengthOpts(s, strlen(s), &pe, 0);
        if (out->payload && !only_space_after(s, strlen(s), pe)) {
            cJSON_Delete(out->payload);
            out->payload = NULL;
        }
        if (!out->payload)
            out->payload = cJSON_CreateObject();
    } else if (p) {
        out->payload = cJSON_Duplicate(p, 1);
    } else if (out->reply_to || out->request_id) {
        out->payload = cJSON_CreateObject();
    } else {
        out->payload = cJSON_Duplicate(root, 1);
        if (out->payload)
            cJSON_DeleteItemFromObjectCaseSensitive(out->payload, "action");
    }
    if (!out->payload) {
        if (errlen)
            snprintf(errbuf, errlen, "out of memory");
        daebus__bus_envelope_free(out);
        return -1;
    }
    return 0;
}

void daebus__bus_envelope_free(daebus__bus_envelope *env)
{
    if (!env)
        return;
    cJSON_Delete(env->payload);
    cJSON_Delete(env->root);
    memset(env, 0, sizeof *env);
}

const char *daebus__bus_reply_channel(const daebus__bus_envelope *env, const char *fallback_service,
                                      char *buf, size_t len)
{
    /* A channel name that does not fit is not used: a cut one would name
     * another channel. */
    int n;
    if (env->reply_to) {
        n = snprintf(buf, len, "%s", env->reply_to);
    } else {
        const char *svc = env->service ? env->service : fallback_service;
        if (!env->request_id || !svc)
            return NULL;
        n = snprintf(buf, len, "%s.responses", svc);
    }
    return n >= 0 && (size_t)n < len ? buf : NULL;
}

char *daebus__bus_build_response(bool error, const cJSON *payload, const cJSON *request_id,
                                 bool final)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON *p = payload ? cJSON_Duplicate(payload, 1) : cJSON_CreateObject();
    cJSON *id = request_id ? cJSON_Duplicate(request_id, 1) : cJSON_CreateNull();
    char *s = NULL;
    if (p && id && cJSON_AddStringToObject(o, "status", error ? "error" : "success")) {
        cJSON_AddItemToObject(o, "payload", p);
        cJSON_AddItemToObject(o, "request_id", id);
        p = id = NULL;
        if (cJSON_AddBoolToObject(o, "final", final))
            s = cJSON_PrintUnformatted(o);
    }
    cJSON_Delete(p);
    cJSON_Delete(id);
    cJSON_Delete(o);
    return s;
}

cJSON *daebus__bus_progress_payload(const cJSON *payload, double pct)
{
    if (pct < 0 || pct != pct)
        return payload ? cJSON_Duplicate(payload, 1) : cJSON_CreateObject();
    if (pct > 100)
        pct = 100;
    cJSON *o;
    if (!payload) {
        o = cJSON_CreateObject();
    } else if (cJSON_IsObject(payload)) {
        o = cJSON_Duplicate(payload, 1);
        if (o)
            cJSON_DeleteItemFromObjectCaseSensitive(o, "progress_percentage");
    } else {
        o = cJSON_CreateObject();
        cJSON *d = cJSON_Duplicate(payload, 1);
        if (!o || !d) {
            cJSON_Delete(o);
            cJSON_Delete(d);
            return NULL;
        }
        cJSON_AddItemToObject(o, "data", d);
    }
    if (o && !cJSON_AddNumberToObject(o, "progress_percentage", pct)) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

int daebus__bus_parse_response(const char *data, size_t len, daebus__bus_response *out)
{
    memset(out, 0, sizeof *out);
    cJSON *root = daebus__bus_parse_object(data, len);
    if (!root)
        return -1;
    out->root = root;
    out->request_id = str_field(root, "request_id", false);
    const char *status = str_field(root, "status", false);
    out->error = status && strcmp(status, "error") == 0;
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(root, "final");
    out->final = !cJSON_IsFalse(f);
    out->payload = cJSON_GetObjectItemCaseSensitive(root, "payload");
    return 0;
}

void daebus__bus_response_free(daebus__bus_response *r)
{
    if (!r)
        return;
    cJSON_Delete(r->root);
    memset(r, 0, sizeof *r);
}
