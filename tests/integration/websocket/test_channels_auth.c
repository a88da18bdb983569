/* Unit tests of channel names and the authorisation API (daebus_ws_authorize):
 * closed by default, pattern rules, the hook's last word and its reason, the
 * CALL operation of the action gateway. Public API only. */
#include <stdlib.h>
#include <string.h>
#include <CUnit/Basic.h>
#include "daebus/daebus.h"
#include "daebus/websocket.h"
#include "testsupport.h"

static void test_names(void)
{
    daebus_error err = {0};
    CU_ASSERT_EQUAL(daebus_ws_channel_check_name("news:sport", &err), 0);
    CU_ASSERT_EQUAL(daebus_ws_channel_check_name("caf\xc3\xa9", &err), 0);
    CU_ASSERT_EQUAL(daebus_ws_channel_check_name("", &err), DAEBUS_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "empty"));
    CU_ASSERT_EQUAL(daebus_ws_channel_check_name(NULL, &err), DAEBUS_EINVAL);
    char longname[DAEBUS_WS_CHANNEL_MAX + 2];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    CU_ASSERT_EQUAL(daebus_ws_channel_check_name(longname, &err), DAEBUS_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "too long"));
    longname[DAEBUS_WS_CHANNEL_MAX] = '\0';
    CU_ASSERT_EQUAL(daebus_ws_channel_check_name(longname, &err), 0);
    CU_ASSERT_EQUAL(daebus_ws_channel_check_name("bad\xff", &err), DAEBUS_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "UTF-8"));
    CU_ASSERT_EQUAL(daebus_ws_channel_check_name("a\nb", &err), DAEBUS_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "control"));
    CU_ASSERT_EQUAL(daebus_ws_channel_check_name("a\x7f", &err), DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(daebus_ws_channel_check_name("a\xc2\x85", &err), DAEBUS_EINVAL); /* NEL */
}

static void test_closed_by_default(void)
{
    daebus_ws_options wo = DAEBUS_WS_OPTIONS_INIT;
    wo.channels = true;
    daebus_ws *ws = daebus_ws_create(&wo, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ws);
    char reason[128];
    CU_ASSERT_EQUAL(daebus_ws_authorize(ws, "c1", DAEBUS_WS_AUTH_SUBSCRIBE, "news", NULL, reason,
                                        sizeof reason),
                    DAEBUS_EAUTH);
    CU_ASSERT_STRING_EQUAL(reason, "Not allowed to subscribe to channel 'news'");
    CU_ASSERT_EQUAL(
        daebus_ws_authorize(ws, "c1", DAEBUS_WS_AUTH_PUBLISH, "news", NULL, reason, sizeof reason),
        DAEBUS_EAUTH);
    CU_ASSERT_STRING_EQUAL(reason, "Not allowed to publish on channel 'news'");
    /* CALL: the gateway checked its own allow-list; no hook refuses it */
    CU_ASSERT_EQUAL(
        daebus_ws_authorize(ws, "c1", DAEBUS_WS_AUTH_CALL, "svc", "act", reason, sizeof reason), 0);
    /* bad arguments */
    CU_ASSERT_EQUAL(
        daebus_ws_authorize(ws, "c1", DAEBUS_WS_AUTH_CALL, "svc", NULL, reason, sizeof reason),
        DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(daebus_ws_authorize(ws, "c1", 99, "x", NULL, reason, sizeof reason),
                    DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(daebus_ws_authorize(ws, "c1", DAEBUS_WS_AUTH_SUBSCRIBE, "a\tb", NULL, reason,
                                        sizeof reason),
                    DAEBUS_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(reason, "control"));
    CU_ASSERT_EQUAL(daebus_ws_authorize(NULL, "c1", 1, "x", NULL, NULL, 0), DAEBUS_EINVAL);
    daebus_ws_destroy(ws);
}

static void test_patterns(void)
{
    daebus_ws_options wo = DAEBUS_WS_OPTIONS_INIT;
    wo.channels = true;
    wo.channel_subscribe = "news:*, ticker";
    wo.channel_publish = "room:?";
    daebus_ws *ws = daebus_ws_create(&wo, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ws);
    CU_ASSERT_EQUAL(daebus_ws_authorize(ws, "c", DAEBUS_WS_AUTH_SUBSCRIBE, "news:x", NULL, NULL, 0),
                    0);
    CU_ASSERT_EQUAL(daebus_ws_authorize(ws, "c", DAEBUS_WS_AUTH_SUBSCRIBE, "ticker", NULL, NULL, 0),
                    0);
    CU_ASSERT_EQUAL(
        daebus_ws_authorize(ws, "c", DAEBUS_WS_AUTH_SUBSCRIBE, "tickers", NULL, NULL, 0),
        DAEBUS_EAUTH);
    CU_ASSERT_EQUAL(daebus_ws_authorize(ws, "c", DAEBUS_WS_AUTH_PUBLISH, "news:x", NULL, NULL, 0),
                    DAEBUS_EAUTH);
    CU_ASSERT_EQUAL(daebus_ws_authorize(ws, "c", DAEBUS_WS_AUTH_PUBLISH, "room:1", NULL, NULL, 0),
                    0);
    CU_ASSERT_EQUAL(daebus_ws_authorize(ws, "c", DAEBUS_WS_AUTH_PUBLISH, "room:12", NULL, NULL, 0),
                    DAEBUS_EAUTH);
    daebus_ws_destroy(ws);
}

typedef struct seen {
    int calls;
    int op;
    bool rules_allow;
    char name[64], action[64], client[64];
    bool had_metadata;
} seen;

static bool hook(daebus_ws *ws, const daebus_ws_auth_request *q, char *reason, size_t reason_len,
                 void *user)
{
    (void)ws;
    seen *s = user;
    s->calls++;
    s->op = q->op;
    s->rules_allow = q->rules_allow;
    snprintf(s->name, sizeof s->name, "%s", q->name);
    snprintf(s->action, sizeof s->action, "%s", q->action ? q->action : "(null)");
    snprintf(s->client, sizeof s->client, "%s", q->client_id);
    s->had_metadata = q->metadata != NULL;
    if (strcmp(q->name, "secret") == 0) {
        snprintf(reason, reason_len, "secret is for admins");
        return false;
    }
    if (q->op == DAEBUS_WS_AUTH_CALL && strcmp(q->action, "drop") == 0)
        return false; /* no reason given */
    if (strncmp(q->name, "open:", 5) == 0)
        return true; /* overrides the patterns */
    return q->rules_allow;
}

static void test_hook(void)
{
    seen s = {0};
    daebus_ws_options wo = DAEBUS_WS_OPTIONS_INIT;
    wo.channels = true;
    wo.channel_subscribe = "news:*";
    wo.authorize = hook;
    wo.authorize_user = &s;
    daebus_ws *ws = daebus_ws_create(&wo, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ws);
    char reason[128];
    CU_ASSERT_EQUAL(daebus_ws_authorize(ws, "c7", DAEBUS_WS_AUTH_SUBSCRIBE, "news:a", NULL, reason,
                                        sizeof reason),
                    0);
    CU_ASSERT_EQUAL(s.calls, 1);
    CU_ASSERT_TRUE(s.rules_allow);
    CU_ASSERT_STRING_EQUAL(s.action, "(null)");
    CU_ASSERT_STRING_EQUAL(s.client, "c7");
    CU_ASSERT_FALSE(s.had_metadata); /* not a connected client */
    CU_ASSERT_EQUAL(daebus_ws_authorize(ws, "c7", DAEBUS_WS_AUTH_SUBSCRIBE, "secret", NULL, reason,
                                        sizeof reason),
                    DAEBUS_EAUTH);
    CU_ASSERT_STRING_EQUAL(reason, "secret is for admins");
    CU_ASSERT_EQUAL(daebus_ws_authorize(ws, "c7", DAEBUS_WS_AUTH_PUBLISH, "open:x", NULL, reason,
                                        sizeof reason),
                    0);
    CU_ASSERT_FALSE(s.rules_allow);
    CU_ASSERT_EQUAL(
        daebus_ws_authorize(ws, "c7", DAEBUS_WS_AUTH_PUBLISH, "other", NULL, reason, sizeof reason),
        DAEBUS_EAUTH);
    CU_ASSERT_STRING_EQUAL(reason, "Not allowed");
    CU_ASSERT_EQUAL(daebus_ws_authorize(ws, "c7", DAEBUS_WS_AUTH_CALL, "billing", "drop", reason,
                                        sizeof reason),
                    DAEBUS_EAUTH);
    CU_ASSERT_EQUAL(s.op, DAEBUS_WS_AUTH_CALL);
    CU_ASSERT_STRING_EQUAL(s.name, "billing");
    CU_ASSERT_STRING_EQUAL(s.action, "drop");
    CU_ASSERT_TRUE(s.rules_allow);
    CU_ASSERT_EQUAL(daebus_ws_authorize(ws, "c7", DAEBUS_WS_AUTH_CALL, "billing", "list", reason,
                                        sizeof reason),
                    0);
    /* a small reason buffer is cut, NUL-terminated */
    char small[8];
    CU_ASSERT_EQUAL(daebus_ws_authorize(ws, "c7", DAEBUS_WS_AUTH_SUBSCRIBE, "secret", NULL, small,
                                        sizeof small),
                    DAEBUS_EAUTH);
    CU_ASSERT_EQUAL(strlen(small), 7);
    daebus_ws_destroy(ws);
}

static void test_bad_options(void)
{
    daebus_ws_options wo = DAEBUS_WS_OPTIONS_INIT;
    char pat[1000];
    memset(pat, '*', sizeof pat - 1);
    pat[sizeof pat - 1] = '\0';
    wo.channel_subscribe = pat;
    daebus_error err = {0};
    CU_ASSERT_PTR_NULL(daebus_ws_create(&wo, &err));
    CU_ASSERT_EQUAL(err.code, DAEBUS_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "pattern"));
}

int main(void)
{
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("channels_auth", NULL, NULL);
    CU_add_test(s, "channel names", test_names);
    CU_add_test(s, "closed by default", test_closed_by_default);
    CU_add_test(s, "pattern rules", test_patterns);
    CU_add_test(s, "hook", test_hook);
    CU_add_test(s, "bad options", test_bad_options);
    return ts_run_cunit();
}
