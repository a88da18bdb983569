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
#include "daebus/json.h"
#include "utf8.h"

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
    cJSON *root = daebus_json_parse(data, len, NULL);
    if (root && !cJSON_IsObject(root)) {
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
    daebus_error err = {0};
    cJSON *root = daebus_json_parse(data, len, &err);
    if (!root) {
        if (errlen)
            snprintf(errbuf, errlen, "%s", err.message);
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
        out->payload = daebus_json_parse(s, strlen(s), NULL);
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
            s = daebus_json_print(o, NULL);
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

int daebus__bus_check_utf8(const char *data, size_t len, char *errbuf, size_t errlen)
{
    if (!data || daebus__utf8_valid(data, len))
        return 0;
    size_t i = 0, k;
    while (i < len && (k = daebus__utf8_char(data + i, len - i)) != 0)
        i += k;
    if (errlen)
        snprintf(errbuf, errlen, "invalid UTF-8 at byte %zu", i);
    return -1;
}

/* ---- reading reply_to and request_id from a message that does not parse ---- */

static size_t skip_space(const char *data, size_t len, size_t i)
{
    while (i < len && (data[i] == ' ' || data[i] == '\t' || data[i] == '\r' || data[i] == '\n'))
        i++;
    return i;
}

/* The string starting after the quote at data[i]: *end gets the index of its
 * closing quote (len if none); returns true if it holds no escape and no
 * control character (only such values are taken). */
static bool plain_string(const char *data, size_t len, size_t i, size_t *end)
{
    bool plain = true;
    for (; i < len && data[i] != '"'; i++) {
        if (data[i] == '\\') {
            plain = false;
            i++;
        } else if ((unsigned char)data[i] < 0x20) {
            plain = false;
        }
    }
    *end = i < len ? i : len;
    return plain;
}

/* A top-level plain string member looked for by scan_forward. */
typedef struct scan_want {
    const char *key;
    size_t klen;
    char *dst;
    size_t cap;
    bool got;
} scan_want;

/* The value of the member key (klen bytes) still wanted, or NULL. */
static scan_want *wanted(scan_want *w, int nw, const char *key, size_t klen)
{
    for (int k = 0; k < nw; k++)
        if (!w[k].got && w[k].klen == klen && memcmp(w[k].key, key, klen) == 0)
            return &w[k];
    return NULL;
}

static bool all_got(const scan_want *w, int nw)
{
    for (int k = 0; k < nw; k++)
        if (!w[k].got)
            return false;
    return true;
}

/* Forward scan of data for the top-level plain string members of w; fills
 * those not yet found (got). */
static void scan_forward(const char *data, size_t len, scan_want *w, int nw)
{
    int depth = 0;
    size_t i = 0;
    while (data && i < len && !all_got(w, nw)) {
        char c = data[i];
        if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            depth--;
        } else if (c == '"') {
            size_t kend;
            bool plain = plain_string(data, len, i + 1, &kend);
            if (kend >= len)
                break;
            scan_want *x = wanted(w, nw, data + i + 1, kend - i - 1);
            i = kend;
            size_t v = skip_space(data, len, kend + 1);
            if (depth != 1 || !plain || !x || v >= len || data[v] != ':')
                goto next;
            v = skip_space(data, len, v + 1);
            if (v >= len || data[v] != '"')
                goto next;
            size_t vend;
            bool vplain = plain_string(data, len, v + 1, &vend);
            if (vend >= len)
                break;
            i = vend;
            size_t vlen = vend - v - 1;
            if (vplain && vlen > 0 && vlen < x->cap) {
                memcpy(x->dst, data + v + 1, vlen);
                x->dst[vlen] = '\0';
                x->got = true;
            }
        }
    next:
        i++;
    }
}

int daebus__bus_scan_reply(const char *data, size_t len, char *reply_to, size_t rlen,
                           char *request_id, size_t idlen)
{
    scan_want w[2] = {{"reply_to", 8, reply_to, rlen, false},
                      {"request_id", 10, request_id, idlen, false}};
    scan_forward(data, len, w, 2);
    return w[0].got && w[1].got ? 0 : -1;
}

int daebus__bus_scan_action(const char *data, size_t len, char *action, size_t alen)
{
    scan_want w = {"action", 6, action, alen, false};
    scan_forward(data, len, &w, 1);
    return w.got ? 0 : -1;
}

/* ---- the same, backwards from the end of a cut message ---- */

static size_t skip_space_back(const char *d, size_t i)
{
    while (i > 0 && (d[i - 1] == ' ' || d[i - 1] == '\t' || d[i - 1] == '\r' || d[i - 1] == '\n'))
        i--;
    return i;
}

/* The plain string that ends with the quote at d[i - 1]: sets *start to the
 * index of its opening quote. Returns: false when it holds an escape or a
 * control character, or does not start within d (the scan then stops: the
 * backward walk only stays in step with the text over plain strings). */
static bool plain_string_back(const char *d, size_t i, size_t *start)
{
    if (i < 2 || d[i - 1] != '"')
        return false;
    for (size_t j = i - 1; j-- > 0;) {
        unsigned char ch = (unsigned char)d[j];
        if (ch == '"') {
            /* At the start of the kept bytes the quote may be an escaped one. */
            if (j == 0 || d[j - 1] == '\\')
                return false;
            *start = j;
            return true;
        }
        if (ch == '\\' || ch < 0x20)
            return false;
    }
    return false;
}

static bool literal_char(char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           ch == '.' || ch == '+' || ch == '-';
}

static void scan_backward(const char *d, size_t n, char *reply_to, size_t rlen, char *request_id,
                          size_t idlen, bool *got_reply, bool *got_id)
{
    size_t i = skip_space_back(d, n);
    if (i == 0 || d[i - 1] != '}')
        return;
    i--;
    while (!(*got_reply && *got_id)) {
        /* value */
        i = skip_space_back(d, i);
        size_t vstart, vend = i;
        bool vstring = false;
        if (i > 0 && d[i - 1] == '"') {
            if (!plain_string_back(d, i, &vstart))
                return;
            vstring = true;
        } else {
            while (i > 0 && literal_char(d[i - 1]))
                i--;
            if (i == vend)
                return;
            vstart = i;
        }
        i = skip_space_back(d, vstart);
        if (i == 0 || d[i - 1] != ':')
            return;
        /* key */
        i = skip_space_back(d, i - 1);
        size_t kstart;
        if (!plain_string_back(d, i, &kstart))
            return;
        size_t sep = skip_space_back(d, kstart);
        if (sep == 0 || (d[sep - 1] != ',' && d[sep - 1] != '{'))
            return;
        const char *key = d + kstart + 1;
        size_t klen = i - kstart - 2;
        bool is_reply = klen == 8 && memcmp(key, "reply_to", 8) == 0 && !*got_reply;
        bool is_id = klen == 10 && memcmp(key, "request_id", 10) == 0 && !*got_id;
        size_t vlen = vend - vstart - 2;
        if (vstring && (is_reply || is_id) && vlen > 0 && vlen < (is_reply ? rlen : idlen)) {
            memcpy(is_reply ? reply_to : request_id, d + vstart + 1, vlen);
            (is_reply ? reply_to : request_id)[vlen] = '\0';
            *(is_reply ? got_reply : got_id) = true;
        }
        if (d[sep - 1] == '{')
            return;
        i = sep - 1;
    }
}

int daebus__bus_scan_reply_cut(const char *head, size_t hlen, const char *tail, size_t tlen,
                               char *reply_to, size_t rlen, char *request_id, size_t idlen)
{
    scan_want w[2] = {{"reply_to", 8, reply_to, rlen, false},
                      {"request_id", 10, request_id, idlen, false}};
    reply_to[0] = request_id[0] = '\0';
    scan_forward(head, hlen, w, 2);
    if (tail && !(w[0].got && w[1].got))
        scan_backward(tail, tlen, reply_to, rlen, request_id, idlen, &w[0].got, &w[1].got);
    return w[0].got && w[1].got ? 0 : -1;
}
