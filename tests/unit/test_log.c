/* The log (framework/core/log.c): a value from outside cannot forge a line. A
 * message holding a newline and a fake "CRIT" line, terminal escapes or bytes
 * that are not UTF-8 gives exactly one line, escaped, of well-formed UTF-8,
 * in the text format and in the JSON format (where each line is one JSON
 * object that reads back to the message). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "daebus/daebus.h"
#include "daebus/log.h"
#include "testsupport.h"
#include "utf8.h"

#define FORGED "\n2026-12-05T10:00:00.000Z CRIT  svc [app] forged"

static int fds[2] = {-1, -1};

/* Everything written to the log since the last call (malloc'd). */
static char *drain(size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
        }
        ssize_t r = read(fds[0], buf + n, cap - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static size_t count_lines(const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += s[i] == '\n';
    return k;
}

static bool clean(const char *s, size_t n)
{
    /* one line: the only control character is the final newline */
    for (size_t i = 0; i + 1 < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7F)
            return false;
    return n > 0 && s[n - 1] == '\n' && daebus__utf8_valid(s, n);
}

static int suite_init(void)
{
    if (pipe(fds) != 0)
        return 1;
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    fcntl(fds[1], F_SETFL, O_NONBLOCK);
    daebus_log_set_fd(fds[1]);
    daebus_log_set_level(DAEBUS_LOG_DEBUG);
    daebus_log_set_service("svc");
    return 0;
}

static int suite_clean(void)
{
    daebus_log_set_fd(2);
    close(fds[0]);
    close(fds[1]);
    return 0;
}

static void test_text_forged_line(void)
{
    daebus_log_set_format(DAEBUS_LOG_TEXT);
    daebus_log(DAEBUS_LOG_INFO, "chat", "user %s joined", "bob" FORGED);
    size_t n;
    char *out = drain(&n);
    CU_ASSERT_EQUAL(count_lines(out, n), 1);
    CU_ASSERT_TRUE(clean(out, n));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, " INFO  svc [chat] user bob\\n2026-12-05T10:00:00.000Z "
                                       "CRIT  svc [app] forged joined\n"));
    free(out);
}

static void test_text_controls(void)
{
    daebus_log_set_format(DAEBUS_LOG_TEXT);
    /* CR (a line over the previous one on a terminal), an ANSI escape, a
     * C1 CSI, U+2028, bytes that are not UTF-8; in the component and the
     * service name as well. */
    daebus_log_set_service("s\nvc");
    daebus_log(DAEBUS_LOG_WARNING, "co\rmp",
               "a\rb \x1b[2J \xC2\x9B \xE2\x80\xA8 \xFF\xC3 caf\xC3\xA9");
    daebus_log_set_service("svc");
    size_t n;
    char *out = drain(&n);
    CU_ASSERT_EQUAL(count_lines(out, n), 1);
    CU_ASSERT_TRUE(clean(out, n));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, " WARN  s\\nvc [co\\rmp] a\\rb \\x1b[2J \\xc2\\x9b "
                                       "\\xe2\\x80\\xa8 \\xff\\xc3 caf\xC3\xA9\n"));
    free(out);
}

/* A JSON line: one object, whose msg reads back as sent. */
static void check_json_line(const char *line, size_t n, const char *want_msg)
{
    CU_ASSERT_EQUAL(count_lines(line, n), 1);
    CU_ASSERT_TRUE(clean(line, n));
    cJSON *j = daebus_json_parse(line, n, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(j, "msg");
    CU_ASSERT_TRUE(cJSON_IsString(msg));
    if (cJSON_IsString(msg) && want_msg)
        CU_ASSERT_STRING_EQUAL(msg->valuestring, want_msg);
    cJSON_Delete(j);
}

static void test_json_forged_line(void)
{
    daebus_log_set_format(DAEBUS_LOG_JSON);
    daebus_log(DAEBUS_LOG_INFO, "chat", "user %s joined", "bob\"}" FORGED "\t\x01\x7f\\");
    size_t n;
    char *out = drain(&n);
    check_json_line(out, n, "user bob\"}" FORGED "\t\x01\x7f\\ joined");
    free(out);

    /* Not UTF-8: the bytes as \xNN text, the line still JSON. */
    daebus_log_set_service("s\xFFvc");
    daebus_log(DAEBUS_LOG_ERROR, "c\"omp", "bad \xC3( \xC0\x80 end");
    daebus_log_set_service("svc");
    out = drain(&n);
    check_json_line(out, n, "bad \\xc3( \\xc0\\x80 end");
    cJSON *j = daebus_json_parse(out, n, NULL);
    if (j) {
        CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(j, "service")->valuestring, "s\\xffvc");
        CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(j, "component")->valuestring, "c\"omp");
        CU_ASSERT_STRING_EQUAL(cJSON_GetObjectItem(j, "level")->valuestring, "error");
    }
    cJSON_Delete(j);
    free(out);
    daebus_log_set_format(DAEBUS_LOG_TEXT);
}

/* Messages past 4 KiB, or past the line once escaped: cut on a character
 * boundary, marked with "...", still one well-formed line. */
static void test_long_messages(void)
{
    static const char *const units[] = {"\xC3\xA9", "\xF0\x9F\x98\x80", "\x01", "\n"};
    for (int fmt = 0; fmt < 2; fmt++) {
        daebus_log_set_format(fmt ? DAEBUS_LOG_JSON : DAEBUS_LOG_TEXT);
        for (size_t u = 0; u < sizeof units / sizeof units[0]; u++) {
            for (size_t total = 4090; total < 4100; total++) {
                size_t ul = strlen(units[u]);
                char *m = malloc(total + 8);
                size_t k = 0;
                while (k + ul <= total) {
                    memcpy(m + k, units[u], ul);
                    k += ul;
                }
                m[k] = '\0';
                daebus_log(DAEBUS_LOG_INFO, NULL, "%s", m);
                size_t n;
                char *out = drain(&n);
                CU_ASSERT_EQUAL(count_lines(out, n), 1);
                CU_ASSERT_TRUE(clean(out, n));
                if (fmt) {
                    cJSON *j = daebus_json_parse(out, n, NULL);
                    CU_ASSERT_PTR_NOT_NULL(j);
                    cJSON_Delete(j);
                }
                if (k >= 4096 || u == 2) /* \x01: 4 or 6 bytes escaped */
                    CU_ASSERT_PTR_NOT_NULL(strstr(out, fmt ? "...\"}\n" : "...\n"));
                free(out);
                free(m);
            }
        }
    }
    daebus_log_set_format(DAEBUS_LOG_TEXT);
}

int main(void)
{
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("log", suite_init, suite_clean);
    CU_add_test(s, "text: a newline cannot forge a line", test_text_forged_line);
    CU_add_test(s, "text: control characters and bad bytes", test_text_controls);
    CU_add_test(s, "json: one valid object per line", test_json_forged_line);
    CU_add_test(s, "long messages", test_long_messages);
    return ts_run_cunit();
}
