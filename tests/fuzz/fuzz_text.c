/* fuzz_text.c - cuts on character boundaries and the log's escaping.
 *
 * Input: any bytes, as a value from outside that the framework cuts into an
 * error text or writes into a log line (a name, a path, a client's text).
 * Checks that a cut of well-formed UTF-8 is well-formed and as long as it can
 * be, that the escapers give one line of well-formed UTF-8 without control
 * characters (in JSON: a string that reads back to the input), and that the
 * logger itself writes exactly one such line per call, in both formats.
 */
#include <fcntl.h>
#include <stdbool.h>
#include <unistd.h>
#include "daebus/log.h"
#include "fuzz_common.h"
#include "utf8.h"

static bool no_controls(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7F)
            return false;
    return true;
}

/* s[0..n) is followed by a NUL (it may hold others). */
static void check_cuts(const char *s, size_t n, bool valid)
{
    static const size_t maxes[] = {0, 1, 2, 3, 5, 40, 100, 123, 150, 200};
    for (size_t m = 0; m < sizeof maxes / sizeof maxes[0]; m++) {
        size_t max = maxes[m];
        size_t c = daebus__utf8_cut(s, n, max);
        FUZZ_CHECK(c <= n && c <= max);
        FUZZ_CHECK(c == n || c + 3 >= max);
        if (valid) {
            FUZZ_CHECK(daebus__utf8_valid(s, c));
            /* As long as it can be: the next character does not fit. */
            if (c < n)
                FUZZ_CHECK(c + daebus__utf8_char(s + c, n - c) > max);
        }
        /* What snprintf into max + 1 bytes keeps, trimmed: the same cut. */
        if (valid && !memchr(s, '\0', n)) {
            char *buf = malloc(max + 1);
            FUZZ_CHECK(buf != NULL);
            daebus__utf8_snprintf(buf, max + 1, "%s", s);
            FUZZ_CHECK(strlen(buf) == c && memcmp(buf, s, c) == 0);
            FUZZ_CHECK((size_t)daebus__utf8_prec(s, max) == c);
            free(buf);
        }
    }
}

static void check_escapes(const char *s, size_t n, bool valid)
{
    size_t cap = 6 * n + 16;
    char *out = malloc(cap);
    FUZZ_CHECK(out != NULL);
    size_t used = 0;
    size_t len = daebus__utf8_escape_text(out, cap, s, n, &used);
    FUZZ_CHECK(used == n && len == strlen(out));
    FUZZ_CHECK(daebus__utf8_valid(out, len) && no_controls(out, len));
    if (valid && !memchr(s, '\0', n)) {
        /* Only controls and separators grow; everything else is copied. */
        FUZZ_CHECK(len >= n);
    }

    len = daebus__utf8_escape_json(out, cap, s, n, &used);
    FUZZ_CHECK(used == n && len == strlen(out));
    FUZZ_CHECK(daebus__utf8_valid(out, len) && no_controls(out, len));
    char *quoted = malloc(len + 3);
    FUZZ_CHECK(quoted != NULL);
    quoted[0] = '"';
    memcpy(quoted + 1, out, len);
    quoted[len + 1] = '"';
    quoted[len + 2] = '\0';
    cJSON *j = daebus_json_parse(quoted, len + 2, NULL);
    FUZZ_CHECK(cJSON_IsString(j));
    if (valid && !memchr(s, '\0', n))
        FUZZ_CHECK(strlen(j->valuestring) == n && memcmp(j->valuestring, s, n) == 0);
    cJSON_Delete(j);
    free(quoted);

    /* A small room: stops early, never inside an escape or a character. */
    size_t small = n % 17;
    len = daebus__utf8_escape_text(out, small, s, n, &used);
    FUZZ_CHECK(small == 0 || (len < small && daebus__utf8_valid(out, len)));
    FUZZ_CHECK(used <= n);
    free(out);
}

/* The logger, both formats: exactly one well-formed line per call. */
static void check_log(const char *s)
{
    static int fds[2] = {-1, -1};
    if (fds[0] < 0) {
        FUZZ_CHECK(pipe(fds) == 0);
        fcntl(fds[0], F_SETFL, O_NONBLOCK);
        daebus_log_set_fd(fds[1]);
        daebus_log_set_level(DAEBUS_LOG_DEBUG);
    }
    static char line[16384];
    for (int json = 0; json < 2; json++) {
        daebus_log_set_format(json ? DAEBUS_LOG_JSON : DAEBUS_LOG_TEXT);
        daebus_log(DAEBUS_LOG_WARNING, s, "value '%s'", s);
        ssize_t r = read(fds[0], line, sizeof line);
        FUZZ_CHECK(r > 0 && (size_t)r < sizeof line);
        size_t n = (size_t)r;
        FUZZ_CHECK(line[n - 1] == '\n' && memchr(line, '\n', n) == line + n - 1);
        FUZZ_CHECK(daebus__utf8_valid(line, n - 1) && no_controls(line, n - 1));
        if (json) {
            cJSON *j = daebus_json_parse(line, n, NULL);
            FUZZ_CHECK(cJSON_IsObject(j));
            FUZZ_CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "msg")));
            cJSON_Delete(j);
        }
    }
    daebus_log_set_format(DAEBUS_LOG_TEXT);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A NUL-terminated copy: the snprintf and "%.*s" paths read C strings. */
    char *s = fuzz_strndup(data, size);
    bool valid = daebus__utf8_valid(s, size);
    check_cuts(s, size, valid);
    check_escapes(s, size, valid);
    check_log(s);
    free(s);
    return 0;
}
