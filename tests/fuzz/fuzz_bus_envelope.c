/* fuzz_bus_envelope.c - the bus request envelope (PROTOCOL.md section 1).
 *
 * Input: one message as published on a service channel by anyone who can
 * reach Redis. Drives the request parser, the reply-channel choice, the
 * response builder (round trip through the caller's response parser) and the
 * progress payload; the same bytes are also read as a listener message, as
 * a response, and as a message refused for its size of which only the first
 * and last bytes are kept (the reply_to / request_id scan of the bus and the
 * caller). Every reply built from a message of well-formed UTF-8 is
 * well-formed UTF-8 (error texts that quote a cut action name included);
 * the UTF-8 gate the dispatcher applies first refuses exactly the others.
 */
#include "bus_parse.h"
#include "fuzz_common.h"
#include "utf8.h"

static void check_reply_channel(const daebus__bus_envelope *env)
{
    char small[16], big[512];
    const char *ch = daebus__bus_reply_channel(env, "fuzzsvc", small, sizeof small);
    FUZZ_CHECK(ch == NULL || (ch == small && fuzz_terminated(small, sizeof small)));
    ch = daebus__bus_reply_channel(env, "fuzzsvc", big, sizeof big);
    /* The whole name or none: a cut one would name another channel. */
    char want[1024] = "";
    if (env->reply_to)
        snprintf(want, sizeof want, "%s", env->reply_to);
    else if (env->request_id)
        snprintf(want, sizeof want, "%s.responses", env->service ? env->service : "fuzzsvc");
    if (!want[0] || strlen(want) >= sizeof big)
        FUZZ_CHECK(ch == NULL);
    else
        FUZZ_CHECK(ch == big && strcmp(big, want) == 0);
}

/* Set for each input: the message was well-formed UTF-8, so every reply
 * built from it must be. */
static bool input_utf8;

static void check_reply_text(const char *text)
{
    if (input_utf8)
        FUZZ_CHECK(daebus__utf8_valid(text, strlen(text)));
}

/* The error replies bus.c builds around an action name: cut on a boundary. */
static void check_error_texts(const daebus__bus_envelope *env)
{
    const char *action = env->action ? env->action : "?";
    char text[200];
    snprintf(text, sizeof text, "Unknown action '%.*s'", daebus__utf8_prec(action, 150), action);
    cJSON *p = cJSON_CreateObject();
    FUZZ_CHECK(p && cJSON_AddStringToObject(p, "error", text));
    char *reply = daebus__bus_build_response(true, p, env->request_id, true);
    FUZZ_CHECK(reply != NULL);
    check_reply_text(reply);
    free(reply);
    cJSON_Delete(p);
    /* auto_error (300 bytes) and daebus_bus_reply_error (1 KiB) */
    char big[1024];
    daebus__utf8_snprintf(text, sizeof text, "Service shutting down; action '%s' was not run",
                          action);
    daebus__utf8_snprintf(big, sizeof big, "%s %s %s %s %s %s %s", action, action, action, action,
                          action, action, action);
    p = cJSON_CreateObject();
    FUZZ_CHECK(p && cJSON_AddStringToObject(p, "error", text) &&
               cJSON_AddStringToObject(p, "detail", big));
    reply = daebus__bus_build_response(true, p, env->request_id, true);
    FUZZ_CHECK(reply != NULL);
    check_reply_text(reply);
    free(reply);
    cJSON_Delete(p);
}

static void check_response(const daebus__bus_envelope *env, bool error, bool final)
{
    char *text = daebus__bus_build_response(error, env->payload, env->request_id, final);
    FUZZ_CHECK(text != NULL);
    check_reply_text(text);
    daebus__bus_response r;
    FUZZ_CHECK(daebus__bus_parse_response(text, strlen(text), &r) == 0);
    FUZZ_CHECK(r.error == error && r.final == final);
    FUZZ_CHECK(r.payload != NULL);
    if (fuzz_json_finite(env->payload))
        FUZZ_CHECK(fuzz_json_equal_value(r.payload, env->payload));
    if (cJSON_IsString(env->request_id))
        FUZZ_CHECK(r.request_id && strcmp(r.request_id, env->request_id->valuestring) == 0);
    else
        FUZZ_CHECK(r.request_id == NULL);
    daebus__bus_response_free(&r);
    free(text);
}

static void check_progress(const cJSON *payload, double pct)
{
    cJSON *p = daebus__bus_progress_payload(payload, pct);
    FUZZ_CHECK(p != NULL);
    if (pct >= 0) {
        FUZZ_CHECK(cJSON_IsObject(p));
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(p, "progress_percentage");
        FUZZ_CHECK(cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= 100);
    }
    cJSON_Delete(p);
}

static int members_named(const cJSON *obj, const char *key)
{
    int n = 0;
    for (const cJSON *it = obj ? obj->child : NULL; it; it = it->next)
        n += it->string && strcmp(it->string, key) == 0;
    return n;
}

/* The bytes as a message cut for its size: its first and last k bytes only
 * (k from the first byte, so that both ends get cut everywhere). What is read
 * is plain, bounded and terminated; from a valid object with one such member
 * it is that member's value. */
static void check_scan_cut(const char *buf, size_t size, const daebus__bus_envelope *env)
{
    size_t k = 8 + (size ? (unsigned char)buf[0] : 0) * 4;
    if (k > size)
        k = size;
    char reply_to[40], request_id[24];
    int rc = daebus__bus_scan_reply_cut(buf, k, buf + size - k, k, reply_to, sizeof reply_to,
                                        request_id, sizeof request_id);
    FUZZ_CHECK(fuzz_terminated(reply_to, sizeof reply_to));
    FUZZ_CHECK(fuzz_terminated(request_id, sizeof request_id));
    FUZZ_CHECK(!strpbrk(reply_to, "\"\\") && !strpbrk(request_id, "\"\\"));
    FUZZ_CHECK(rc != 0 || (reply_to[0] && request_id[0]));
    if (!env)
        return;
    if (reply_to[0] && members_named(env->root, "reply_to") == 1)
        FUZZ_CHECK(env->reply_to && strcmp(env->reply_to, reply_to) == 0);
    if (request_id[0] && members_named(env->root, "request_id") == 1)
        FUZZ_CHECK(cJSON_IsString(env->request_id) &&
                   strcmp(env->request_id->valuestring, request_id) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    input_utf8 = daebus__utf8_valid(buf, size);
    char why[128];
    /* The dispatcher's gate before parsing: refuses exactly what is not UTF-8. */
    int bad = daebus__bus_check_utf8(buf, size, why, sizeof why);
    FUZZ_CHECK(fuzz_terminated(why, sizeof why));
    FUZZ_CHECK((bad == 0) == input_utf8);
    if (bad) {
        size_t at = 0;
        FUZZ_CHECK(sscanf(why, "invalid UTF-8 at byte %zu", &at) == 1 && at < size);
        FUZZ_CHECK(daebus__utf8_valid(buf, at) && daebus__utf8_char(buf + at, size - at) == 0);
    }
    /* The action read unparsed (a replica that claims the message later):
     * plain, bounded, terminated. */
    char action[16];
    if (daebus__bus_scan_action(buf, size, action, sizeof action) == 0)
        FUZZ_CHECK(fuzz_terminated(action, sizeof action) && action[0] && !strpbrk(action, "\"\\"));
    daebus__bus_envelope env;
    int rc = daebus__bus_parse_request(buf, size, &env, why, sizeof why);
    FUZZ_CHECK(fuzz_terminated(why, sizeof why));
    if (rc != 0) {
        FUZZ_CHECK(rc == -1 && why[0] != '\0');
        FUZZ_CHECK(env.root == NULL && env.payload == NULL);
        /* The lenient scan for an error reply: plain, bounded, terminated. */
        char reply_to[24], request_id[24];
        if (daebus__bus_scan_reply(buf, size, reply_to, sizeof reply_to, request_id,
                                   sizeof request_id) == 0) {
            FUZZ_CHECK(fuzz_terminated(reply_to, sizeof reply_to) && reply_to[0]);
            FUZZ_CHECK(fuzz_terminated(request_id, sizeof request_id) && request_id[0]);
            FUZZ_CHECK(!strpbrk(reply_to, "\"\\") && !strpbrk(request_id, "\"\\"));
        }
    } else {
        FUZZ_CHECK(cJSON_IsObject(env.root) && env.payload != NULL);
        FUZZ_CHECK(!env.action || env.action[0]);
        FUZZ_CHECK(!env.reply_to || env.reply_to[0]);
        /* Fire-and-forget without "payload": the message minus "action" (the
         * first one, should the key repeat). */
        if (!cJSON_GetObjectItemCaseSensitive(env.root, "payload") && !env.reply_to &&
            !env.request_id) {
            int had = cJSON_GetObjectItemCaseSensitive(env.root, "action") != NULL;
            FUZZ_CHECK(cJSON_GetArraySize(env.payload) == cJSON_GetArraySize(env.root) - had);
        }
        check_reply_channel(&env);
        check_error_texts(&env);
        /* Flags and a percentage from the input, so every branch is reached. */
        unsigned char b = size ? data[size - 1] : 0;
        check_response(&env, b & 1, b & 2);
        check_progress(env.payload, (double)(b % 130) - 10);
        check_progress(NULL, 42);
    }
    check_scan_cut(buf, size, rc == 0 ? &env : NULL);
    daebus__bus_envelope_free(&env);
    FUZZ_CHECK(env.root == NULL && env.payload == NULL);

    /* The same bytes as a listener message and as a response. */
    cJSON *obj = daebus__bus_parse_object(buf, size);
    FUZZ_CHECK((obj != NULL) == (rc == 0));
    cJSON_Delete(obj);
    daebus__bus_response r;
    int rr = daebus__bus_parse_response(buf, size, &r);
    FUZZ_CHECK((rr == 0) == (rc == 0));
    if (rr == 0)
        FUZZ_CHECK(r.root != NULL);
    daebus__bus_response_free(&r);
    return 0;
}
