/* ws_parse.c - pure helpers of the WebSocket layer: envelopes, close payloads.
 *
 * Parsing and printing use daebus_json_parse / daebus_json_print (exact
 * numbers, "\u0000" kept as C0 80; daebus/json.h). Envelopes are built around borrowed data with cJSON references,
 * so a handler's value is serialised without being copied first.
 */
#include "ws_parse.h"
#include "utf8.h"
#include "daebus/json.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- client messages ---- */

ws_parse_result daebus__ws_parse_message(const char *buf, size_t len, ws_message *out)
{
    memset(out, 0, sizeof *out);
    if (!buf)
        return WS_PARSE_INVALID_JSON;
    cJSON *root = daebus_json_parse(buf, len, NULL); /* only whitespace may follow */
    if (!root)
        return WS_PARSE_INVALID_JSON;
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return WS_PARSE_NOT_OBJECT;
    }
    out->root = root;
    const cJSON *rid = cJSON_GetObjectItemCaseSensitive(root, "request_id");
    if (cJSON_IsString(rid) || cJSON_IsNumber(rid))
        out->request_id = rid;
    out->data = cJSON_GetObjectItemCaseSensitive(root, "data");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "type");
    if (!cJSON_IsString(type) || !type->valuestring || !type->valuestring[0])
        return WS_PARSE_NO_TYPE;
    out->type = type->valuestring;
    return WS_PARSE_OK;
}

void daebus__ws_message_free(ws_message *m)
{
    if (!m)
        return;
    cJSON_Delete(m->root);
    memset(m, 0, sizeof *m);
}

/* ---- close frames ---- */

size_t daebus__ws_close_payload(int code, const char *reason, char out[125])
{
    out[0] = (char)((code >> 8) & 0xFF);
    out[1] = (char)(code & 0xFF);
    size_t n = reason ? strlen(reason) : 0;
    n = daebus__utf8_cut(reason, n, 123);
    if (n)
        memcpy(out + 2, reason, n);
    return n + 2;
}

int daebus__ws_close_code(const char *payload, size_t n)
{
    if (n == 0)
        return 1005;
    if (n == 1 || n > 125)
        return -1;
    int code = (((unsigned char)payload[0]) << 8) | (unsigned char)payload[1];
    if (!daebus__utf8_valid(payload + 2, n - 2))
        return -1;
    if (code < 1000 || code >= 5000 || code == 1004 || code == 1005 || code == 1006 ||
        code == 1015 || (code > 1014 && code < 3000))
        return -1;
    return code;
}

/* ---- server envelopes ---- */

/* An allocation failed half-way: free what was built, print nothing. */
static char *drop(cJSON *o)
{
    cJSON_Delete(o);
    return NULL;
}

static char *print_take(cJSON *o, size_t *len)
{
    char *s = o ? daebus_json_print(o, len) : NULL;
    cJSON_Delete(o);
    return s;
}

size_t daebus__ws_frame_head(int opcode, size_t len, unsigned char out[10])
{
    out[0] = (unsigned char)(0x80u | ((unsigned)opcode & 0x0fu));
    if (len <= 125) {
        out[1] = (unsigned char)len;
        return 2;
    }
    if (len <= 0xffff) {
        out[1] = 126;
        out[2] = (unsigned char)(len >> 8);
        out[3] = (unsigned char)len;
        return 4;
    }
    out[1] = 127;
    uint64_t v = (uint64_t)len;
    for (int i = 9; i >= 2; i--, v >>= 8)
        out[i] = (unsigned char)(v & 0xff);
    return 10;
}

/* The keys are plain ASCII: written as they are. Members in the order the
 * cJSON object of the earlier builder had them (type, data, request_id,
 * success), so that clients see the same bytes. */
bool daebus__ws_envelope_into(daebus__json_out *b, const char *type, const cJSON *data,
                              const cJSON *rid, int success)
{
    daebus__json_out_raw(b, "{\"type\":", 8);
    daebus__json_out_string(b, type ? type : "message");
    if (data) {
        daebus__json_out_raw(b, ",\"data\":", 8);
        daebus__json_out_value(b, data);
    }
    if (rid) {
        daebus__json_out_raw(b, ",\"request_id\":", 14);
        daebus__json_out_value(b, rid);
    }
    if (success > 0)
        daebus__json_out_raw(b, ",\"success\":true", 15);
    else if (success == 0)
        daebus__json_out_raw(b, ",\"success\":false", 16);
    daebus__json_out_raw(b, "}", 1);
    return !b->failed;
}

/* {"type": type[, "data": data][, "request_id": rid][, "success": success]};
 * success < 0: no "success" key. */
static char *envelope(const char *type, const cJSON *data, const cJSON *rid, int success,
                      size_t *len)
{
    daebus__json_out b;
    daebus__json_out_init(&b, 0);
    daebus__ws_envelope_into(&b, type, data, rid, success);
    return daebus__json_out_finish(&b, len);
}

char *daebus__ws_envelope(const char *type, const cJSON *data, const cJSON *rid, size_t *len)
{
    return envelope(type, data, rid, -1, len);
}

char *daebus__ws_response_envelope(const cJSON *data, const cJSON *rid, size_t *len)
{
    return envelope("response", data, rid, 1, len);
}

char *daebus__ws_error_envelope_rid(const char *message, double retry, const cJSON *rid,
                                    size_t *len)
{
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddStringToObject(o, "type", "error") ||
        !cJSON_AddStringToObject(o, "error", message) ||
        (retry >= 0 && !cJSON_AddNumberToObject(o, "retry_after", retry)) ||
        (rid && !cJSON_AddItemReferenceToObject(o, "request_id", (cJSON *)rid)) ||
        !cJSON_AddBoolToObject(o, "success", 0))
        return drop(o);
    return print_take(o, len);
}

char *daebus__ws_error_envelope(const char *message, double retry, size_t *len)
{
    return daebus__ws_error_envelope_rid(message, retry, NULL, len);
}

char *daebus__ws_handler_error_envelope(const char *message, const cJSON *rid, size_t *len)
{
    if (!message)
        message = "Handler failed";
    cJSON *o = cJSON_CreateObject();
    cJSON *d = cJSON_CreateObject();
    if (!o || !d || !cJSON_AddStringToObject(d, "error", message)) {
        cJSON_Delete(d);
        return drop(o);
    }
    if (!cJSON_AddStringToObject(o, "type", "error")) {
        cJSON_Delete(d);
        return drop(o);
    }
    cJSON_AddItemToObject(o, "data", d);
    if (rid && !cJSON_AddItemReferenceToObject(o, "request_id", (cJSON *)rid))
        return drop(o);
    if (!cJSON_AddBoolToObject(o, "success", 0) || !cJSON_AddStringToObject(o, "error", message))
        return drop(o);
    return print_take(o, len);
}

/* ---- request ids of unparsed messages ---- */

/* Index just past the string literal opening at buf[i], or len + 1 when it
 * is not terminated. */
static size_t skip_string(const char *buf, size_t len, size_t i)
{
    for (size_t k = i + 1; k < len; k++) {
        if (buf[k] == '\\')
            k++;
        else if (buf[k] == '"')
            return k + 1;
    }
    return len + 1;
}

static size_t skip_space(const char *buf, size_t len, size_t i)
{
    while (i < len && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\r' || buf[i] == '\n'))
        i++;
    return i;
}

/* The string or number literal at buf[i], or NULL. */
static cJSON *literal_at(const char *buf, size_t len, size_t i)
{
    size_t end = i;
    if (i < len && buf[i] == '"') {
        end = skip_string(buf, len, i);
        if (end > len)
            return NULL;
    } else {
        while (end < len && buf[end] && strchr("-+0123456789.eE", buf[end]))
            end++;
    }
    if (end == i)
        return NULL;
    cJSON *v = cJSON_ParseWithLength(buf + i, end - i);
    if (cJSON_IsString(v) && daebus__utf8_valid(v->valuestring, strlen(v->valuestring)))
        return v;
    if (cJSON_IsNumber(v))
        return v;
    cJSON_Delete(v);
    return NULL;
}

/* The literal of key in the outermost object (parent NULL) or in its object
 * member parent, scanned without recursion; NULL when none. */
static cJSON *scan_key(const char *buf, size_t len, const char *key, const char *parent)
{
    size_t klen = strlen(key), plen = parent ? strlen(parent) : 0;
    size_t i = skip_space(buf, len, 0);
    if (i >= len || buf[i] != '{')
        return NULL;
    int depth = 0;
    bool after_parent = false; /* the last depth-1 key is parent */
    bool in_parent = false;    /* inside its object */
    while (i < len) {
        char ch = buf[i];
        if (ch == '"') {
            size_t end = skip_string(buf, len, i);
            if (end > len)
                return NULL;
            size_t j = skip_space(buf, len, end);
            bool is_key = j < len && buf[j] == ':';
            int want = parent ? 2 : 1;
            if (is_key && depth == 1)
                after_parent =
                    parent && end - i == plen + 2 && memcmp(buf + i + 1, parent, plen) == 0;
            if (is_key && depth == want && (!parent || in_parent) && end - i == klen + 2 &&
                memcmp(buf + i + 1, key, klen) == 0) {
                cJSON *v = literal_at(buf, len, skip_space(buf, len, j + 1));
                if (v)
                    return v;
            }
            i = end;
            continue;
        }
        if (ch == '{' || ch == '[') {
            if (depth == 1) /* the value of the last depth-1 key */
                in_parent = ch == '{' && after_parent;
            depth++;
        } else if (ch == '}' || ch == ']') {
            if (--depth <= 0)
                return NULL; /* the outermost object ended */
            if (depth == 1)
                in_parent = false;
        }
        i++;
    }
    return NULL;
}

cJSON *daebus__ws_scan_request_id(const char *buf, size_t len)
{
    if (!buf)
        return NULL;
    cJSON *rid = scan_key(buf, len, "request_id", NULL);
    if (rid)
        return rid;
    /* The TypeScript client's "publish" frame carries its id in data. */
    cJSON *type = scan_key(buf, len, "type", NULL);
    bool publish = cJSON_IsString(type) && strcmp(type->valuestring, "publish") == 0;
    cJSON_Delete(type);
    return publish ? scan_key(buf, len, "request_id", "data") : NULL;
}
