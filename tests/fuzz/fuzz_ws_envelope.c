/* fuzz_ws_envelope.c - the WebSocket message envelope and its neighbours.
 *
 * Input: one client text message, as websocket.c receives it. Drives the
 * depth pre-check, the envelope parser, the UTF-8 check (against the HTTP
 * one) and the close payload reader; checks that whatever parses survives a
 * round trip through the server's envelope builders, and that every frame
 * built from a message of well-formed UTF-8 is well-formed UTF-8 (error texts
 * that quote a cut message type included). Channel frames (subscribe,
 * unsubscribe, broadcast): a bad one gets a well-formed reason; a good one's
 * channel passes the name check and the authorisation's rules, and its
 * delivery frame reads back with the same channel and data.
 */
#include "fuzz_common.h"
#include "bus_gateway_parse.h"
#include "http_parse.h"
#include "utf8.h"
#include "ws_channel.h"
#include "ws_io.h"
#include "ws_parse.h"
#include "json.h"

#define MAX_DEPTH 100 /* websocket.c's MAX_JSON_DEPTH */

/* Set for each input: the message was well-formed UTF-8, so every frame
 * built from it must be. */
static bool input_utf8;

/* A frame the server would send: well-formed UTF-8 when the input was. */
static void check_frame(const char *text, size_t len)
{
    if (input_utf8)
        FUZZ_CHECK(daebus__utf8_valid(text, len));
}

static void check_envelope(const ws_message *m)
{
    size_t len = 0;
    char *text = daebus__ws_envelope(m->type, m->data, m->request_id, &len);
    FUZZ_CHECK(text != NULL);
    FUZZ_CHECK(strlen(text) == len);
    check_frame(text, len);
    ws_message back;
    FUZZ_CHECK(daebus__ws_parse_message(text, len, &back) == WS_PARSE_OK);
    FUZZ_CHECK(strcmp(back.type, m->type) == 0);
    int finite = (!m->data || fuzz_json_finite(m->data)) &&
                 (!m->request_id || fuzz_json_finite(m->request_id));
    if (finite) {
        FUZZ_CHECK((back.data == NULL) == (m->data == NULL));
        if (m->data)
            FUZZ_CHECK(fuzz_json_equal_value(back.data, m->data));
        FUZZ_CHECK((back.request_id == NULL) == (m->request_id == NULL));
        if (m->request_id)
            FUZZ_CHECK(fuzz_json_equal_value(back.request_id, m->request_id));
    }
    daebus__ws_message_free(&back);
    free(text);

    /* A handler error answers with the same request_id. */
    text = daebus__ws_handler_error_envelope(m->type, m->request_id, &len);
    FUZZ_CHECK(text != NULL && strlen(text) == len);
    check_frame(text, len);
    FUZZ_CHECK(daebus__ws_parse_message(text, len, &back) == WS_PARSE_OK);
    FUZZ_CHECK(strcmp(back.type, "error") == 0);
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(back.data, "error");
    FUZZ_CHECK(cJSON_IsString(err) && strcmp(err->valuestring, m->type) == 0);
    daebus__ws_message_free(&back);
    free(text);

    text = daebus__ws_error_envelope(m->type, 1.5, &len);
    FUZZ_CHECK(text != NULL && strlen(text) == len);
    check_frame(text, len);
    FUZZ_CHECK(daebus__ws_parse_message(text, len, &back) == WS_PARSE_OK);
    daebus__ws_message_free(&back);
    free(text);

    /* The answer to an unknown type, as websocket.c builds it: the type cut
     * at 200 bytes on a character boundary, quoted in an error frame. */
    char msg[300];
    snprintf(msg, sizeof msg, "No handler found for message type '%.*s'",
             daebus__utf8_prec(m->type, 200), m->type);
    text = daebus__ws_error_envelope_rid(msg, -1, m->request_id, &len);
    FUZZ_CHECK(text != NULL && strlen(text) == len);
    check_frame(text, len);
    free(text);
    /* A handler's error text, cut at 1 KiB as daebus_ws_request_fail does. */
    char fail[1024];
    daebus__utf8_snprintf(fail, sizeof fail, "%s: %s %s %s %s %s", m->type, m->type, m->type,
                          m->type, m->type, m->type);
    text = daebus__ws_handler_error_envelope(fail, m->request_id, &len);
    FUZZ_CHECK(text != NULL && strlen(text) == len);
    check_frame(text, len);
    free(text);
}

/* The delivery frame of a channel message reads back as built. */
static void check_delivery(const ws_message *m, const char *channel)
{
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(m->root, "data");
    cJSON *null = cJSON_CreateNull();
    char *text = cJSON_PrintUnformatted(data ? data : null);
    FUZZ_CHECK(text != NULL);
    ws_chmsg cm = {.channel = channel, .data = text, .data_len = strlen(text)};
    cm.has_offset = strlen(channel) % 2 == 1; /* the place history fills */
    cm.offset = strlen(channel);
    cm.epoch = "e1";
    ws_frame *f = daebus__ws_channel_frame(&cm);
    FUZZ_CHECK(f != NULL);
    check_frame(f->data, f->len);
    ws_message back;
    FUZZ_CHECK(daebus__ws_parse_message(f->data, f->len, &back) == WS_PARSE_OK);
    FUZZ_CHECK(strcmp(back.type, "channel_message") == 0);
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(back.root, "channel");
    FUZZ_CHECK(cJSON_IsString(ch) && strcmp(ch->valuestring, channel) == 0);
    if (!data || fuzz_json_finite(data))
        FUZZ_CHECK(fuzz_json_equal_value(back.data, data ? data : null));
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(back.root, "offset");
    FUZZ_CHECK(cm.has_offset ? cJSON_IsNumber(off) && off->valuedouble == (double)cm.offset
                             : off == NULL);
    daebus__ws_message_free(&back);
    daebus__ws_frame_unref(f);
    free(text);
    cJSON_Delete(null);
}

/* A component with rules, no hook: subscribe to "news:*" and "[a-c]?", publish nowhere. */
static daebus_ws *rules_ws(void)
{
    static daebus_ws *ws;
    if (!ws) {
        daebus_ws_options wo = DAEBUS_WS_OPTIONS_INIT;
        wo.channels = true;
        wo.channel_subscribe = "news:*, [a-c]?";
        ws = daebus_ws_create(&wo, NULL);
        FUZZ_CHECK(ws != NULL);
    }
    return ws;
}

static void check_channel_frame(const ws_message *m)
{
    char why[256] = "";
    const char *channel;
    int kind = daebus__ws_channel_frame_parse(m, &channel, why, sizeof why);
    if (kind == WS_CH_NONE)
        return;
    size_t len = 0;
    if (kind == WS_CH_BAD) {
        FUZZ_CHECK(channel == NULL && why[0]);
        char *t = daebus__ws_error_envelope_rid(why, -1, m->request_id, &len);
        FUZZ_CHECK(t != NULL);
        check_frame(t, len);
        free(t);
        return;
    }
    FUZZ_CHECK(channel && daebus_ws_channel_check_name(channel, NULL) == 0);
    FUZZ_CHECK(daebus__utf8_valid(channel, strlen(channel)));
    FUZZ_CHECK(daebus__ws_channel_glob("*", channel) && !daebus__ws_channel_glob(NULL, channel));
    /* closed by default: publishing is refused, subscribing follows the rules */
    char reason[256];
    daebus_ws *ws = rules_ws();
    FUZZ_CHECK(daebus_ws_authorize(ws, "c", DAEBUS_WS_AUTH_PUBLISH, channel, NULL, reason,
                                   sizeof reason) == DAEBUS_EAUTH);
    FUZZ_CHECK(daebus__utf8_valid(reason, strlen(reason)));
    bool rule = daebus__ws_channel_glob("news:*, [a-c]?", channel);
    FUZZ_CHECK((daebus_ws_authorize(ws, "c", DAEBUS_WS_AUTH_SUBSCRIBE, channel, NULL, reason,
                                    sizeof reason) == 0) == rule);
    check_delivery(m, channel);
}

/* The gateway's reading of a "publish" message: a call it accepts names a
 * non-empty service and action and an object payload (or none); a refusal
 * has a reason; both answers are frames of well-formed UTF-8 (names quoted
 * cut) carrying the message's request id. */
static void check_publish(const ws_message *m)
{
    daebus__gw_frame fr;
    char err[300];
    bool ok = daebus__gateway_parse(m->root, &fr, err, sizeof err);
    FUZZ_CHECK(!fr.rid || cJSON_IsString(fr.rid) || cJSON_IsNumber(fr.rid));
    const char *text = err;
    if (ok) {
        FUZZ_CHECK(fr.service && fr.service[0] && fr.action && fr.action[0]);
        FUZZ_CHECK(!fr.payload || cJSON_IsObject(fr.payload));
        /* Nothing is callable without an allow-list; the exact entry,
         * "service" and "service.*" allow it, others do not. */
        FUZZ_CHECK(!daebus__gateway_allowed(NULL, fr.service, fr.action));
        char allow[700];
        snprintf(allow, sizeof allow, "x.y,%s.%s", fr.service, fr.action);
        size_t n = strlen(fr.service) + strlen(fr.action) + 1;
        bool fits = n < 590 && !strpbrk(fr.service, ", \t") && !strpbrk(fr.action, ", \t");
        if (fits && n + 4 < sizeof allow)
            FUZZ_CHECK(daebus__gateway_allowed(allow, fr.service, fr.action));
        FUZZ_CHECK(!daebus__gateway_allowed("other_service.other_action", fr.service, fr.action) ||
                   strcmp(fr.service, "other_service") == 0 ||
                   strcmp(fr.service, "other_service.other_action") == 0);
        daebus__gateway_not_allowed(err, sizeof err, fr.service, fr.action);
        if (input_utf8)
            FUZZ_CHECK(daebus__utf8_valid(err, strlen(err)));
    } else {
        FUZZ_CHECK(err[0]);
    }
    cJSON *f = daebus__gateway_failure(fr.rid, text, ok ? fr.payload : NULL);
    FUZZ_CHECK(f != NULL);
    char *s = daebus_json_print(f, NULL); /* as daebus_ws_send_frame */
    FUZZ_CHECK(s != NULL);
    check_frame(s, strlen(s));
    ws_message back;
    FUZZ_CHECK(daebus__ws_parse_message(s, strlen(s), &back) == WS_PARSE_OK);
    FUZZ_CHECK(strcmp(back.type, "response") == 0);
    /* A request id that is not a finite number (1e999) is written as null,
     * as in every answer (check_envelope). */
    if (!fr.rid || fuzz_json_finite(fr.rid))
        FUZZ_CHECK((back.request_id == NULL) == (fr.rid == NULL));
    if (fr.rid && fuzz_json_finite(fr.rid))
        FUZZ_CHECK(fuzz_json_equal_value(back.request_id, fr.rid));
    daebus__ws_message_free(&back);
    free(s);
    cJSON_Delete(f);
}

static void check_close(const uint8_t *data, size_t size)
{
    /* Any reason of well-formed UTF-8 (a handler's reject text) is cut to a
     * well-formed one (at most 123 bytes), which the peer accepts. */
    char *any = fuzz_strndup(data, size);
    char frame[125];
    size_t fn = daebus__ws_close_payload(1008, any, frame);
    if (input_utf8)
        FUZZ_CHECK(daebus__ws_close_code(frame, fn) == 1008);
    free(any);

    int code = daebus__ws_close_code((const char *)data, size);
    FUZZ_CHECK(code == -1 || code == 1005 || (code >= 1000 && code < 5000));
    if (code == 1005)
        FUZZ_CHECK(size == 0);
    if (code < 1000 || code == 1005)
        return;
    /* A valid close payload: its reason, rebuilt (cut at 123 bytes on a
     * character boundary), reads back with the same code. */
    char *reason = fuzz_strndup(data + 2, size - 2);
    char out[125];
    size_t n = daebus__ws_close_payload(code, reason, out);
    FUZZ_CHECK(n >= 2 && n <= 125);
    FUZZ_CHECK(daebus__ws_close_code(out, n) == code);
    free(reason);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;

    /* The core validator (the WebSocket layer's) and the HTTP one agree
     * except that the HTTP one refuses NUL. */
    bool ws_ok = daebus__utf8_valid(buf, size);
    bool http_ok = daebus__http_utf8_valid(buf, size);
    input_utf8 = ws_ok;
    if (!memchr(data, '\0', size))
        FUZZ_CHECK(ws_ok == http_ok);
    else
        FUZZ_CHECK(!http_ok);

    check_close(data, size);

    /* The request_id scanner reads unparsed text: whatever it finds is a
     * string of valid UTF-8 or a number. */
    cJSON *rid = daebus__ws_scan_request_id(buf, size);
    FUZZ_CHECK(
        !rid || cJSON_IsNumber(rid) ||
        (cJSON_IsString(rid) && daebus__utf8_valid(rid->valuestring, strlen(rid->valuestring))));
    cJSON_Delete(rid);

    /* As websocket.c: the depth check guards the recursive parser. */
    bool shallow = daebus__json_depth_ok(buf, size, MAX_DEPTH);
    ws_message m;
    ws_parse_result pr = daebus__ws_parse_message(buf, size, &m);
    switch (pr) {
    case WS_PARSE_OK:
        FUZZ_CHECK(m.root && cJSON_IsObject(m.root));
        FUZZ_CHECK(m.type && m.type[0]);
        FUZZ_CHECK(!m.request_id || cJSON_IsString(m.request_id) || cJSON_IsNumber(m.request_id));
        if (shallow)
            FUZZ_CHECK(fuzz_json_depth(m.root) <= MAX_DEPTH);
        check_envelope(&m);
        check_channel_frame(&m);
        if (strcmp(m.type, "publish") == 0)
            check_publish(&m);
        break;
    case WS_PARSE_NO_TYPE:
        FUZZ_CHECK(m.root && cJSON_IsObject(m.root) && m.type == NULL);
        break;
    case WS_PARSE_INVALID_JSON:
    case WS_PARSE_NOT_OBJECT:
        FUZZ_CHECK(m.root == NULL);
        break;
    default:
        FUZZ_CHECK(!"unknown parse result");
    }
    daebus__ws_message_free(&m);
    FUZZ_CHECK(m.root == NULL);
    return 0;
}
