/* bus_gateway_parse.c - the action gateway's pure parts: the "publish" frame,
 * the allow-list, the answer frames (bus_gateway_parse.h). */
#include <stdio.h>
#include <string.h>
#include "bus_gateway_parse.h"
#include "textlist.h"
#include "utf8.h"

#define NAME_MAX_BYTES 600 /* service + action compared against the allow-list */

static const cJSON *rid_of(const cJSON *v)
{
    return cJSON_IsString(v) || cJSON_IsNumber(v) ? v : NULL;
}

/* A service or action name: 1-200 bytes of UTF-8 without control
 * characters (an escaped NUL is read as C0 80, which is not UTF-8: refused,
 * so that no answer quotes it). */
static bool good_name(const cJSON *s)
{
    if (!cJSON_IsString(s))
        return false;
    size_t n = strlen(s->valuestring);
    if (n == 0 || n > 200 || !daebus__utf8_valid(s->valuestring, n))
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s->valuestring[i] < 0x20 || s->valuestring[i] == 0x7f)
            return false;
    return true;
}

bool daebus__gateway_parse(const cJSON *root, daebus__gw_frame *out, char *err, size_t cap)
{
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
    const cJSON *rid = rid_of(cJSON_GetObjectItemCaseSensitive(data, "request_id"));
    *out = (daebus__gw_frame){
        .rid = rid ? rid : rid_of(cJSON_GetObjectItemCaseSensitive(root, "request_id"))};
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(root, "channel");
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(data, "action");
    const cJSON *payload = cJSON_GetObjectItemCaseSensitive(data, "payload");
    const char *why = NULL;
    if (!cJSON_IsString(ch) || !*ch->valuestring)
        why = "publish needs \"channel\": the service name (a string)";
    else if (!good_name(ch))
        why =
            "\"channel\" must be a service name of 1-200 bytes of UTF-8 without control characters";
    else if (!cJSON_IsObject(data))
        why = "publish needs \"data\": an object with \"action\" and \"payload\"";
    else if (!cJSON_IsString(act) || !*act->valuestring)
        why = "publish needs \"data.action\": the action name (a string)";
    else if (!good_name(act))
        why = "\"data.action\" must be an action name of 1-200 bytes of UTF-8 without control "
              "characters";
    else if (payload && !cJSON_IsNull(payload) && !cJSON_IsObject(payload))
        why = "\"data.payload\" must be an object";
    if (why) {
        snprintf(err, cap, "%s", why);
        return false;
    }
    out->service = ch->valuestring;
    out->action = act->valuestring;
    out->payload = cJSON_IsObject(payload) ? payload : NULL;
    return true;
}

bool daebus__gateway_allowed(const char *allow, const char *service, const char *action)
{
    if (!allow || !service || !action)
        return false;
    char buf[NAME_MAX_BYTES];
    size_t ls = strlen(service), la = strlen(action);
    if (ls + la + 3 > sizeof buf)
        return false;
    memcpy(buf, service, ls);
    buf[ls] = '.';
    memcpy(buf + ls + 1, action, la + 1);
    if (daebus__list_has(allow, buf, ls + 1 + la, false) ||
        daebus__list_has(allow, service, ls, false))
        return true;
    buf[ls + 1] = '*';
    return daebus__list_has(allow, buf, ls + 2, false);
}

void daebus__gateway_not_allowed(char *err, size_t cap, const char *service, const char *action)
{
    daebus__utf8_snprintf(err, cap, "Action '%.*s.%.*s' is not allowed through the gateway",
                          daebus__utf8_prec(service, 100), service, daebus__utf8_prec(action, 100),
                          action);
}

cJSON *daebus__gateway_frame(const char *type, const cJSON *rid)
{
    cJSON *f = cJSON_CreateObject();
    if (!f || !cJSON_AddStringToObject(f, "type", type) ||
        (rid && !cJSON_AddItemToObject(f, "request_id", cJSON_Duplicate(rid, true)))) {
        cJSON_Delete(f);
        return NULL;
    }
    return f;
}

cJSON *daebus__gateway_failure(const cJSON *rid, const char *text, const cJSON *data)
{
    cJSON *f = daebus__gateway_frame("response", rid);
    if (f && (!cJSON_AddBoolToObject(f, "success", false) ||
              !cJSON_AddStringToObject(f, "error", text) ||
              (data && !cJSON_AddItemToObject(f, "data", cJSON_Duplicate(data, true))))) {
        cJSON_Delete(f);
        return NULL;
    }
    return f;
}
