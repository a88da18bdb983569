/* Hardening: hostile text (issue 13, bugs 6 and 7), against a real service
 * (HTTP, WebSocket and bus on a private redis-server, real sockets):
 *   - every frame, reply and error text the service builds from long
 *     multibyte input is well-formed UTF-8: an unknown message type or action
 *     name of ~300 bytes of 2-, 3- or 4-byte characters (each at every byte
 *     offset), a handler's error text past 1 KiB (WebSocket and bus), a close
 *     reason past 123 bytes, a bad route, a caller's "no service" error.
 *     Python's json.loads reads every frame and reply;
 *   - a name holding a newline and a forged "CRIT" line gives exactly one
 *     log line, escaped, in the text and in the JSON format (each JSON line
 *     read by Python's json.loads), whether the service's own handler logs it,
 *     the WebSocket component (a bad upgrade path) or the bus (an unknown
 *     action);
 *   - the service survives all of it and still answers. */
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "daebus/daebus.h"
#include "daebus/http.h"
#include "daebus/websocket.h"
#include "testsupport.h"
#include "utf8.h"
#include "wsc.h"

#define SERVICE  "hard_text"
#define REPLY_CH "hard_text_replies"
#define FORGED   "\n1999-01-01T00:00:00.000Z CRIT  hard_text [app] forged"

static ts_redis redis;
static ts_service svc;
static int port;
static char log_path[] = "/tmp/hard_text_log_XXXXXX";
static int log_fd = -1;
static char frames_path[] = "/tmp/hard_text_frames_XXXXXX";
static FILE *frames; /* every JSON frame and reply, one per line, for json.loads */
static atomic_int n_frames;

/* ---- the service ---- */

/* What a chat service does: logs who joined. */
SOCKET(s_hello, "hello")
{
    const cJSON *n = cJSON_GetObjectItem(daebus_ws_request_data(req), "name");
    const char *name = cJSON_IsString(n) ? n->valuestring : "?";
    DAEBUS_LOG_INFOF("chat", "user %s joined", name);
    return cJSON_CreateTrue();
}

SOCKET(s_fail, "fail")
{
    const cJSON *t = cJSON_GetObjectItem(daebus_ws_request_data(req), "text");
    return daebus_ws_request_fail(req, "failed: %s", cJSON_IsString(t) ? t->valuestring : "");
}

SOCKET(s_reject, "reject")
{
    const cJSON *t = cJSON_GetObjectItem(daebus_ws_request_data(req), "text");
    return daebus_ws_request_reject(req, cJSON_IsString(t) ? t->valuestring : "");
}

ACTION(a_fail, "fail")
{
    const cJSON *t = cJSON_GetObjectItem(payload, "text");
    return daebus_bus_reply_error(req, "failed: %s", cJSON_IsString(t) ? t->valuestring : "");
}

ROUTE(r_ping, "/ping")
{
    return daebus_http_send(res, 200, "text/plain", "pong", 4);
}

static int suite_init(void)
{
    if (ts_redis_start(&redis, NULL) != 0)
        return 1;
    log_fd = mkstemp(log_path);
    int ffd = mkstemp(frames_path);
    if (log_fd < 0 || ffd < 0)
        return 1;
    frames = fdopen(ffd, "w");
    daebus_log_set_fd(log_fd);
    daebus_ws_options wo = DAEBUS_WS_OPTIONS_INIT;
    wo.allowed_origins = "https://good.example";
    ts_service_options o = {.service = SERVICE,
                            .redis_url = redis.url,
                            .log_level =
                                DAEBUS_LOG_DEBUG, /* the bus logs unknown actions at debug */
                            .shutdown_timeout = 2,
                            .ws = true,
                            .ws_options = &wo,
                            .bus = true,
                            .wait_bus = 10};
    if (ts_service_start(&svc, &o) != 0)
        return 1;
    port = svc.port;
    return 0;
}

static int suite_clean(void)
{
    ts_service_stop(&svc);
    daebus_log_set_fd(2);
    close(log_fd);
    if (frames)
        fclose(frames);
    unlink(log_path);
    unlink(frames_path);
    ts_redis_stop(&redis);
    return 0;
}

/* ---- helpers ---- */

/* Runs Python on path: mode "json" reads each line (strict UTF-8) with
 * json.loads, mode "utf8" decodes the whole file strictly.
 * Returns: the number of lines read, or -1 if one failed. */
static int python_check(const char *mode, const char *path)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "python3 -c 'import sys, json\n"
             "t = open(sys.argv[2], \"rb\").read().decode(\"utf-8\")\n"
             "n = 0\n"
             "if sys.argv[1] == \"json\":\n"
             "    for l in t.split(\"\\n\")[:-1]:\n"
             "        json.loads(l); n += 1\n"
             "print(n)' %s %s",
             mode, path);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    int n = -1;
    if (fscanf(p, "%d", &n) != 1)
        n = -1;
    return pclose(p) == 0 ? n : -1;
}

/* s repeated as whole characters after `offset` ASCII letters, about bytes long. */
static char *multibyte(const char *unit, int offset, size_t bytes)
{
    size_t ul = strlen(unit);
    char *s = malloc(bytes + 8);
    size_t n = 0;
    for (int i = 0; i < offset; i++)
        s[n++] = (char)('a' + i);
    while (n + ul <= bytes) {
        memcpy(s + n, unit, ul);
        n += ul;
    }
    s[n] = '\0';
    return s;
}

static const char *const units[] = {"\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80"};

/* Checks one JSON text the service sent and keeps it for json.loads. */
static void check_json_text(const char *what, const char *s, size_t n)
{
    bool ok = s && daebus__utf8_valid(s, n) && !memchr(s, '\n', n);
    CU_ASSERT_TRUE(ok);
    if (!ok) {
        fprintf(stderr, "\n  %s: not UTF-8 (%zu bytes)\n", what, n);
        return;
    }
    fwrite(s, 1, n, frames);
    fputc('\n', frames);
    atomic_fetch_add(&n_frames, 1);
}

static char *ws_ask(wsc *c, const char *json, size_t *n)
{
    *n = 0;
    if (wsc_send_text(c, json) != 0)
        return NULL;
    char *s = wsc_recv_text(c, 10000);
    *n = s ? strlen(s) : 0;
    return s;
}

static char *envelope(const char *type, const char *key, const char *value)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", type);
    cJSON_AddNumberToObject(o, "request_id", 7);
    if (key) {
        cJSON *d = cJSON_AddObjectToObject(o, "data");
        cJSON_AddStringToObject(d, key, value);
    }
    char *s = daebus_json_print(o, NULL);
    cJSON_Delete(o);
    return s;
}

/* ---- bug 7: whole characters on the wire ---- */

static void test_ws_frames(void)
{
    wsc c;
    CU_ASSERT_EQUAL_FATAL(wsc_connect(&c, port, "/ws", NULL), 0);
    for (size_t u = 0; u < 3; u++) {
        for (int off = 0; off < 4; off++) {
            /* an unknown message type of ~300 bytes: "No handler found ..." */
            char *name = multibyte(units[u], off, 300);
            char *msg = envelope(name, NULL, NULL);
            size_t n;
            char *s = ws_ask(&c, msg, &n);
            CU_ASSERT_PTR_NOT_NULL(s && strstr(s, "No handler found"));
            check_json_text("unknown type", s, n);
            free(s);
            free(msg);
            free(name);
            /* a handler's error text past the 1 KiB it is cut at */
            char *text = multibyte(units[u], off, 1100);
            msg = envelope("fail", "text", text);
            s = ws_ask(&c, msg, &n);
            CU_ASSERT_PTR_NOT_NULL(s && strstr(s, "failed: "));
            check_json_text("handler error", s, n);
            free(s);
            free(msg);
            free(text);
        }
    }
    wsc_close(&c);
}

/* A close reason past 123 bytes: cut on a boundary (else the browser fails
 * the connection with 1007 instead of reading 1008). */
static void test_ws_close_reason(void)
{
    for (size_t u = 0; u < 3; u++) {
        for (int off = 0; off < 4; off++) {
            wsc c;
            CU_ASSERT_EQUAL_FATAL(wsc_connect(&c, port, "/ws", NULL), 0);
            char *text = multibyte(units[u], off, 300);
            char *msg = envelope("reject", "text", text);
            CU_ASSERT_EQUAL(wsc_send_text(&c, msg), 0);
            int op = 0;
            char *p = NULL;
            size_t n = 0;
            double end = ts_now() + 10;
            while (ts_now() < end) {
                free(p);
                op = wsc_recv(&c, 10000, &p, &n);
                if (op <= 0 || op == 8)
                    break;
            }
            CU_ASSERT_EQUAL(op, 8);
            if (op == 8) {
                CU_ASSERT_TRUE(n >= 2 && n <= 125);
                CU_ASSERT_EQUAL(((unsigned char)p[0] << 8) | (unsigned char)p[1], 1008);
                CU_ASSERT_TRUE(n > 100); /* the reason is there, cut */
                CU_ASSERT_TRUE(daebus__utf8_valid(p + 2, n - 2));
            }
            free(p);
            free(msg);
            free(text);
            wsc_close(&c);
        }
    }
}

/* A raw Redis client, as any client of the Redis server. */
static redisContext *raw(void)
{
    struct timeval tv = {10, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", redis.port, tv);
    if (c && !c->err)
        redisSetTimeout(c, tv);
    return c && !c->err ? c : NULL;
}

/* Publishes a request and returns its reply (malloc'd, *n its length). */
static char *bus_ask(redisContext *pub, redisContext *sub, const char *action, const char *text,
                     size_t *n)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "action", action);
    cJSON_AddStringToObject(o, "reply_to", REPLY_CH);
    cJSON_AddStringToObject(o, "request_id", "r1");
    cJSON *p = cJSON_AddObjectToObject(o, "payload");
    if (text)
        cJSON_AddStringToObject(p, "text", text);
    size_t len;
    char *s = daebus_json_print(o, &len);
    cJSON_Delete(o);
    redisReply *r = redisCommand(pub, "PUBLISH %s %b", SERVICE, s, len);
    free(s);
    CU_ASSERT_TRUE(r && r->type == REDIS_REPLY_INTEGER && r->integer == 1);
    if (r)
        freeReplyObject(r);
    void *v = NULL;
    *n = 0;
    if (redisGetReply(sub, &v) != REDIS_OK || !v)
        return NULL;
    r = v;
    char *out = NULL;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
        r->element[2]->type == REDIS_REPLY_STRING) {
        out = malloc(r->element[2]->len + 1);
        memcpy(out, r->element[2]->str, r->element[2]->len);
        out[r->element[2]->len] = '\0';
        *n = r->element[2]->len;
    }
    freeReplyObject(r);
    return out;
}

static void test_bus_replies(void)
{
    redisContext *pub = raw(), *sub = raw();
    CU_ASSERT_PTR_NOT_NULL_FATAL(pub);
    CU_ASSERT_PTR_NOT_NULL_FATAL(sub);
    redisReply *r = redisCommand(sub, "SUBSCRIBE %s", REPLY_CH);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    freeReplyObject(r);
    for (size_t u = 0; u < 3; u++) {
        for (int off = 0; off < 4; off++) {
            /* an unknown action of ~300 bytes: "Unknown action '...'" */
            char *name = multibyte(units[u], off, 300);
            size_t n;
            char *s = bus_ask(pub, sub, name, NULL, &n);
            CU_ASSERT_PTR_NOT_NULL(s && strstr(s, "Unknown action"));
            check_json_text("unknown action", s, n);
            free(s);
            free(name);
            /* an action's error text past the 1 KiB it is cut at */
            char *text = multibyte(units[u], off, 1100);
            s = bus_ask(pub, sub, "fail", text, &n);
            CU_ASSERT_PTR_NOT_NULL(s && strstr(s, "failed: "));
            check_json_text("action error", s, n);
            free(s);
            free(text);
        }
    }
    redisFree(pub);
    redisFree(sub);
}

/* A caller's error for a service name nobody listens on: cut on a boundary. */
static void test_caller_error(void)
{
    daebus_error err = {0};
    daebus_caller *c = daebus_caller_create(redis.url, NULL, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    for (size_t u = 0; u < 3; u++) {
        for (int off = 0; off < 4; off++) {
            char *name = multibyte(units[u], off, 300);
            cJSON *reply = NULL;
            memset(&err, 0, sizeof err);
            int rc = daebus_caller_request(c, name, "x", NULL, 5, &reply, &err);
            CU_ASSERT_EQUAL(rc, DAEBUS_ENOLISTENER);
            CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "no service '"));
            CU_ASSERT_TRUE(daebus__utf8_valid(err.message, strlen(err.message)));
            cJSON_Delete(reply);
            free(name);
        }
    }
    daebus_caller_destroy(c);
}

/* A bad route of multibyte characters: the 404 names it in valid JSON. */
static void test_bad_route(void)
{
    for (size_t u = 0; u < 3; u++) {
        char *name = multibyte(units[u], 1, 300);
        char target[4096] = "/";
        size_t o = 1;
        for (const unsigned char *p = (const unsigned char *)name; *p; p++)
            o += (size_t)snprintf(target + o, sizeof target - o, "%%%02X", *p);
        ts_http_response res;
        CU_ASSERT_EQUAL_FATAL(ts_http(port, "GET", target, NULL, NULL, 0, &res), 0);
        CU_ASSERT_EQUAL(res.status, 404);
        check_json_text("404 body", res.body, res.body_len);
        ts_http_free(&res);
        free(name);
    }
}

/* Every frame and reply kept above reads with Python's json.loads. */
static void test_python_reads_all(void)
{
    fflush(frames);
    int n = python_check("json", frames_path);
    CU_ASSERT_EQUAL(n, atomic_load(&n_frames));
    CU_ASSERT_TRUE(n >= 3 * 4 * 4 + 3);
}

/* ---- bug 6: log injection ---- */

/* Everything the log received from offset *from on (malloc'd); moves *from. */
static char *log_since(off_t *from, size_t *len)
{
    struct stat st;
    fstat(log_fd, &st);
    size_t n = st.st_size > *from ? (size_t)(st.st_size - *from) : 0;
    char *buf = malloc(n + 1);
    ssize_t r = pread(log_fd, buf, n, *from);
    n = r > 0 ? (size_t)r : 0;
    buf[n] = '\0';
    *from += (off_t)n;
    *len = n;
    return buf;
}

static size_t count(const char *hay, const char *needle)
{
    size_t k = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p++)
        k++;
    return k;
}

/* The lines of text that contain needle (joined by newlines). */
static size_t lines_with(const char *text, const char *needle)
{
    size_t k = 0;
    const char *p = text;
    while (*p) {
        const char *e = strchr(p, '\n');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        char *line = strndup(p, l);
        k += strstr(line, needle) != NULL;
        free(line);
        p += l + (e ? 1 : 0);
    }
    return k;
}

static bool log_has(off_t from, const char *needle)
{
    off_t f = from;
    size_t n;
    char *s = log_since(&f, &n);
    bool has = strstr(s, needle) != NULL;
    free(s);
    return has;
}

static void run_injections(bool json)
{
    daebus_log_set_format(json ? DAEBUS_LOG_JSON : DAEBUS_LOG_TEXT);
    struct stat st;
    fstat(log_fd, &st);
    off_t from = st.st_size;

    /* A: the service's handler logs a client's name */
    wsc c;
    CU_ASSERT_EQUAL_FATAL(wsc_connect(&c, port, "/ws", NULL), 0);
    char *msg = envelope("hello", "name", "bob" FORGED "-A");
    size_t n;
    char *s = ws_ask(&c, msg, &n);
    CU_ASSERT_PTR_NOT_NULL(s && strstr(s, "\"response\""));
    free(s);
    free(msg);
    wsc_close(&c);
    /* B: the WebSocket component logs a refused Origin (CivetWeb refuses
     * C0 controls and DEL in a header value, but passes C1 controls, U+2028
     * and bytes that are not UTF-8). */
    CU_ASSERT_EQUAL(
        wsc_connect(&c, port, "/ws", "Origin: https://e\xc2\x9b\xe2\x80\xa8\xff-forged-B\r\n"), -1);
    wsc_close(&c);
    /* C: the bus logs an unknown action */
    redisContext *pub = raw();
    CU_ASSERT_PTR_NOT_NULL_FATAL(pub);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "action", "x" FORGED "-C");
    char *text = daebus_json_print(o, NULL);
    cJSON_Delete(o);
    redisReply *r = redisCommand(pub, "PUBLISH %s %s", SERVICE, text);
    if (r)
        freeReplyObject(r);
    free(text);
    redisFree(pub);

    TS_WAIT_UNTIL(
        log_has(from, "forged-A") && log_has(from, "forged-B") && log_has(from, "forged-C"), 10);
    char *log = log_since(&from, &n);
    static const char *const marks[] = {"forged-A", "forged-B", "forged-C"};
    for (size_t i = 0; i < 3; i++) {
        size_t k = lines_with(log, marks[i]);
        CU_ASSERT_EQUAL(k, 1);
        if (k != 1)
            fprintf(stderr, "\n  %s: %zu lines with %s; log:\n%s\n", json ? "json" : "text", k,
                    marks[i], log);
    }
    /* No line starts with the forged time stamp; the escaped text is there. */
    CU_ASSERT_EQUAL(count(log, "\n1999-"), 0);
    CU_ASSERT_TRUE(strncmp(log, "1999-", 5) != 0);
    CU_ASSERT_EQUAL(count(log, "\\n1999-01-01"), 2);
    if (getenv("HARD_TEXT_SHOW"))
        fprintf(stderr, "\n%s\n", log);
    CU_ASSERT_EQUAL(count(log, json ? "'https://e\\u009b\\u2028\\\\xff-forged-B'"
                                    : "'https://e\\xc2\\x9b\\xe2\\x80\\xa8\\xff-forged-B'"),
                    1);
    CU_ASSERT_EQUAL(count(log, "\\\\n1999-01-01"), 0);
    if (json) {
        /* In JSON the newline is \n, which json.loads turns back into it. */
        char path[] = "/tmp/hard_text_json_XXXXXX";
        int fd = mkstemp(path);
        CU_ASSERT_TRUE_FATAL(fd >= 0);
        CU_ASSERT_EQUAL((size_t)write(fd, log, n), n);
        close(fd);
        int lines = python_check("json", path);
        CU_ASSERT_EQUAL((size_t)lines, count(log, "\n"));
        CU_ASSERT_TRUE(lines >= 3);
        unlink(path);
    } else {
        CU_ASSERT_TRUE(daebus__utf8_valid(log, n));
    }
    /* Each line begins with this run's time stamp (text) or an object (JSON). */
    CU_ASSERT_EQUAL(count(log, json ? "\n{\"ts\":\"" : "\n20"), count(log, "\n") - 1);
    CU_ASSERT_TRUE(strncmp(log, json ? "{\"ts\":\"" : "20", json ? 7 : 2) == 0);
    free(log);
}

static void test_log_text(void)
{
    run_injections(false);
}

static void test_log_json(void)
{
    run_injections(true);
    daebus_log_set_format(DAEBUS_LOG_TEXT);
}

/* After all of it the service still answers on every side. */
static void test_survives(void)
{
    ts_http_response res;
    CU_ASSERT_EQUAL_FATAL(ts_http(port, "GET", "/ping", NULL, NULL, 0, &res), 0);
    CU_ASSERT_EQUAL(res.status, 200);
    ts_http_free(&res);
    wsc c;
    CU_ASSERT_EQUAL_FATAL(wsc_connect(&c, port, "/ws", NULL), 0);
    char *msg = envelope("hello", "name", "carol");
    size_t n;
    char *s = ws_ask(&c, msg, &n);
    CU_ASSERT_PTR_NOT_NULL(s && strstr(s, "\"response\""));
    free(s);
    free(msg);
    wsc_close(&c);
}

int main(void)
{
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("hard_text", suite_init, suite_clean);
    CU_add_test(s, "WebSocket frames are UTF-8", test_ws_frames);
    CU_add_test(s, "WebSocket close reasons are UTF-8", test_ws_close_reason);
    CU_add_test(s, "bus replies are UTF-8", test_bus_replies);
    CU_add_test(s, "caller errors are UTF-8", test_caller_error);
    CU_add_test(s, "bad route answer is UTF-8", test_bad_route);
    CU_add_test(s, "Python reads every frame and reply", test_python_reads_all);
    CU_add_test(s, "log injection: text format", test_log_text);
    CU_add_test(s, "log injection: JSON format", test_log_json);
    CU_add_test(s, "the service survives", test_survives);
    return ts_run_cunit();
}
