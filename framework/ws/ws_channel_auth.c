/* ws_channel_auth.c - channel names and the authorisation of channels and gateway calls.
 *
 * Closed by default: a client may subscribe to (or broadcast on) a channel
 * only when a pattern of options.channel_subscribe (channel_publish) matches
 * it, unless the hook (options.authorize) says otherwise: the hook, when set,
 * has the last word and sees what the patterns said. The action gateway asks
 * the same hook with DAEBUS_WS_AUTH_CALL through daebus_ws_authorize().
 */
#include "ws_channel.h"

#include <fnmatch.h>
#include <stdio.h>
#include <string.h>

#include "textlist.h"
#include "utf8.h"
#include "ws_client.h"

int daebus__ws_channel_name_error(const char *name, size_t len, char *why, size_t why_len)
{
    const char *e = NULL;
    if (len == 0)
        e = "Channel name is empty";
    else if (len > DAEBUS_WS_CHANNEL_MAX)
        e = "Channel name is too long (max " DAEBUS__WS_STR(DAEBUS_WS_CHANNEL_MAX) " bytes)";
    else if (!daebus__utf8_valid(name, len))
        e = "Channel name is not valid UTF-8";
    for (size_t i = 0; !e && i < len; i++) {
        unsigned char b = (unsigned char)name[i];
        /* C0 controls, DEL, and the C1 controls U+0080..U+009F (0xC2 0x80..0x9F). */
        if (b < 0x20 || b == 0x7f ||
            (b == 0xc2 && i + 1 < len && (unsigned char)name[i + 1] < 0xa0))
            e = "Channel name contains a control character";
    }
    if (!e)
        return 0;
    if (why && why_len)
        snprintf(why, why_len, "%s", e);
    return DAEBUS_EINVAL;
}

int daebus_ws_channel_check_name(const char *channel, daebus_error *err)
{
    char why[96];
    if (!channel) {
        daebus_error_set(err, DAEBUS_EINVAL, "Channel name is missing");
        return DAEBUS_EINVAL;
    }
    if (daebus__ws_channel_name_error(channel, strlen(channel), why, sizeof why)) {
        daebus_error_set(err, DAEBUS_EINVAL, "%s", why);
        return DAEBUS_EINVAL;
    }
    return 0;
}

bool daebus__ws_channel_glob(const char *patterns, const char *name)
{
    const char *p = patterns, *item;
    size_t len;
    char pat[DAEBUS_WS_CHANNEL_MAX * 2 + 1];
    while (p && daebus__list_next(&p, &item, &len)) {
        if (len >= sizeof pat)
            continue; /* refused at create: cannot happen */
        memcpy(pat, item, len);
        pat[len] = '\0';
        if (fnmatch(pat, name, 0) == 0)
            return true;
    }
    return false;
}

/* What the pattern rules say about op on name. */
static bool rules_allow(const daebus_ws *ws, int op, const char *name)
{
    switch (op) {
    case DAEBUS_WS_AUTH_SUBSCRIBE:
        return daebus__ws_channel_glob(ws->ch_subscribe, name);
    case DAEBUS_WS_AUTH_PUBLISH:
        return daebus__ws_channel_glob(ws->ch_publish, name);
    default:
        return true; /* CALL: the gateway's allow-list was checked by its caller */
    }
}

static void set_reason(char *reason, size_t reason_len, const char *text)
{
    if (reason && reason_len)
        daebus__utf8_snprintf(reason, reason_len, "%s", text);
}

/* The default refusal text of op on name. */
static void default_refusal(int op, const char *name, const char *action, char *reason,
                            size_t reason_len)
{
    if (!reason || !reason_len)
        return;
    if (op == DAEBUS_WS_AUTH_CALL)
        daebus__utf8_snprintf(reason, reason_len, "Not allowed to call %s.%s", name,
                              action ? action : "");
    else
        daebus__utf8_snprintf(reason, reason_len, "Not allowed to %s channel '%s'",
                              op == DAEBUS_WS_AUTH_SUBSCRIBE ? "subscribe to" : "publish on", name);
}

/* Asks the hook (no lock held). Returns: its verdict; a refusal without a
 * (valid UTF-8) reason gets the default text. */
static bool ask_hook(daebus_ws *ws, const daebus_ws_auth_request *q, char *reason,
                     size_t reason_len)
{
    char buf[256] = "";
    bool ok = ws->authorize(ws, q, buf, sizeof buf, ws->authorize_user);
    if (!ok) {
        buf[sizeof buf - 1] = '\0';
        if (buf[0] && daebus__utf8_valid(buf, strlen(buf)))
            set_reason(reason, reason_len, buf);
        else
            default_refusal(q->op, q->name, q->action, reason, reason_len);
    }
    return ok;
}

int daebus_ws_authorize(daebus_ws *ws, const char *client_id, int op, const char *name,
                        const char *action, char *reason, size_t reason_len)
{
    if (reason && reason_len)
        reason[0] = '\0';
    if (!ws || !client_id || !name || op < DAEBUS_WS_AUTH_SUBSCRIBE || op > DAEBUS_WS_AUTH_CALL ||
        (op == DAEBUS_WS_AUTH_CALL && !action)) {
        set_reason(reason, reason_len, "Invalid authorisation request");
        return DAEBUS_EINVAL;
    }
    if (op != DAEBUS_WS_AUTH_CALL &&
        daebus__ws_channel_name_error(name, strlen(name), reason, reason_len))
        return DAEBUS_EINVAL;
    bool allow = rules_allow(ws, op, name);
    if (!ws->authorize) {
        if (!allow)
            default_refusal(op, name, action, reason, reason_len);
        return allow ? 0 : DAEBUS_EAUTH;
    }
    cJSON *meta = daebus_ws_get_client_metadata(ws, client_id);
    daebus_ws_auth_request q = {.op = (daebus_ws_auth_op)op,
                                .client_id = client_id,
                                .metadata = meta,
                                .name = name,
                                .action = op == DAEBUS_WS_AUTH_CALL ? action : NULL,
                                .rules_allow = allow};
    bool ok = ask_hook(ws, &q, reason, reason_len);
    cJSON_Delete(meta);
    return ok ? 0 : DAEBUS_EAUTH;
}

int daebus__ws_channel_auth_options(daebus_ws *ws, const daebus_ws_options *o, daebus_error *err)
{
    const char *lists[4] = {o->channel_subscribe, o->channel_publish, o->channel_history,
                            o->channel_presence};
    for (int i = 0; i < 4; i++) {
        const char *p = lists[i], *item;
        size_t len;
        while (p && daebus__list_next(&p, &item, &len))
            if (len > DAEBUS_WS_CHANNEL_MAX * 2) {
                daebus_error_set(err, DAEBUS_EINVAL,
                                 "websocket options: a channel pattern is longer than %d bytes",
                                 DAEBUS_WS_CHANNEL_MAX * 2);
                return DAEBUS_EINVAL;
            }
    }
    ws->channels = o->channels;
    ws->authorize = o->authorize;
    ws->authorize_user = o->authorize_user;
    ws->ch_subscribe = o->channel_subscribe ? strdup(o->channel_subscribe) : NULL;
    ws->ch_publish = o->channel_publish ? strdup(o->channel_publish) : NULL;
    if (o->channel_history_age < 0 || o->channel_history_age > 1e9) {
        daebus_error_set(err, DAEBUS_EINVAL,
                         "websocket options: channel_history_age must be 0..1e9 seconds");
        return DAEBUS_EINVAL;
    }
    ws->ch_history = o->channel_history ? strdup(o->channel_history) : NULL;
    ws->ch_hist_count = o->channel_history_count;
    ws->ch_hist_age = o->channel_history_age;
    ws->ch_presence = o->channel_presence ? strdup(o->channel_presence) : NULL;
    if ((o->channel_subscribe && !ws->ch_subscribe) || (o->channel_publish && !ws->ch_publish) ||
        (o->channel_history && !ws->ch_history) || (o->channel_presence && !ws->ch_presence)) {
        daebus_error_set(err, DAEBUS_ENOMEM, "websocket: out of memory");
        return DAEBUS_ENOMEM;
    }
    return 0;
}
