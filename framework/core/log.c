/* log.c - levelled, thread-safe log lines (text or JSON) to stderr.
 *
 * Each line is formatted into a stack buffer and written with a single
 * write(2), which keeps lines from different threads whole without a lock on
 * the hot path. Settings are atomics so any thread may change them.
 *
 * Log lines carry values from outside (names, paths, origins, a client's
 * text), so the service name, the component and the message are escaped as
 * the line is built (utf8.c): a newline in a username cannot start a forged
 * line, a terminal escape cannot reach the operator's terminal, and every
 * line is well-formed UTF-8 (in JSON, one valid JSON object). The framework
 * never writes a multi-line message on purpose.
 */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <pthread.h>
#include "daebus/log.h"
#include "utf8.h"

static atomic_int g_level = DAEBUS_LOG_INFO;
static atomic_int g_format = -1; /* -1: not decided yet, read DAEBUS_LOG_FORMAT */
static atomic_int g_fd = 2;
static pthread_mutex_t g_service_lock = PTHREAD_MUTEX_INITIALIZER;
static char g_service[128] = "daebus";

/* Indexed by daebus_log_level; 0 is DAEBUS_LOG_DEFAULT (never written). */
static const char *level_names[] = {"default", "debug",    "info", "warning",
                                    "error",   "critical", "off"};
static const char *level_tags[] = {"INFO ", "DEBUG", "INFO ", "WARN ", "ERROR", "CRIT ", "OFF  "};

void daebus_log_set_level(daebus_log_level level)
{
    if (level == DAEBUS_LOG_DEFAULT)
        level = DAEBUS_LOG_INFO;
    if ((int)level < DAEBUS_LOG_DEBUG || level > DAEBUS_LOG_OFF)
        return;
    atomic_store(&g_level, (int)level);
}

daebus_log_level daebus_log_get_level(void)
{
    return (daebus_log_level)atomic_load(&g_level);
}

void daebus_log_set_format(daebus_log_format format)
{
    atomic_store(&g_format, (int)format);
}

void daebus_log_set_fd(int fd)
{
    atomic_store(&g_fd, fd);
}

void daebus_log_set_service(const char *service)
{
    pthread_mutex_lock(&g_service_lock);
    snprintf(g_service, sizeof g_service, "%s", service ? service : "daebus");
    pthread_mutex_unlock(&g_service_lock);
}

int daebus_log_level_parse(const char *text, daebus_log_level *out)
{
    if (!text || !out)
        return DAEBUS_EINVAL;
    for (int i = DAEBUS_LOG_DEBUG; i <= DAEBUS_LOG_OFF; i++) {
        if (strcasecmp(text, level_names[i]) == 0) {
            *out = (daebus_log_level)i;
            return 0;
        }
    }
    if (strcasecmp(text, "warn") == 0) {
        *out = DAEBUS_LOG_WARNING;
        return 0;
    }
    return DAEBUS_EINVAL;
}

const char *daebus_log_level_name(daebus_log_level level)
{
    if ((int)level < 0 || level > DAEBUS_LOG_OFF)
        return "unknown";
    return level_names[level];
}

int daebus_log_is_enabled(daebus_log_level level)
{
    return (int)level >= atomic_load(&g_level) && level > DAEBUS_LOG_DEFAULT &&
           level < DAEBUS_LOG_OFF;
}

static int current_format(void)
{
    int f = atomic_load(&g_format);
    if (f < 0) {
        const char *env = getenv("DAEBUS_LOG_FORMAT");
        f = (env && strcasecmp(env, "json") == 0) ? DAEBUS_LOG_JSON : DAEBUS_LOG_TEXT;
        int expected = -1;
        atomic_compare_exchange_strong(&g_format, &expected, f);
        f = atomic_load(&g_format);
    }
    return f;
}

/* Room for a whole line. Escaping can make a message up to six times longer
 * (\u00XX for each byte of control characters); what does not fit is cut on
 * a character boundary and marked "...", so a line stays one write(2). */
#define LINE_CAP (8192 + 512)

/* Appends s, escaped for the format, to line[*n..cap); a part that does not
 * fit is left out on a character boundary and marked with "...". */
static void put_escaped(char *line, size_t *n, size_t cap, const char *s, bool json, bool cut)
{
    size_t len = strlen(s), used = 0;
    size_t room = cap - *n;
    if (room > 8)
        room -= 8; /* the "...", the closing "} and the newline */
    else
        room = 1;
    *n += json ? daebus__utf8_escape_json(line + *n, room, s, len, &used)
               : daebus__utf8_escape_text(line + *n, room, s, len, &used);
    if ((used < len || cut) && *n + 4 < cap) {
        memcpy(line + *n, "...", 3);
        *n += 3;
    }
}

static void put(char *line, size_t *n, size_t cap, const char *s)
{
    size_t len = strlen(s);
    if (*n + len < cap) {
        memcpy(line + *n, s, len);
        *n += len;
    }
}

void daebus_logv(daebus_log_level level, const char *component, const char *fmt, va_list ap)
{
    if (!daebus_log_is_enabled(level))
        return;
    char msg[4096];
    int r = daebus__utf8_vsnprintf(msg, sizeof msg, fmt, ap);
    bool cut = r >= (int)sizeof msg;
    if (r < 0)
        msg[0] = '\0';

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[96];
    snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (long)(ts.tv_nsec / 1000000) % 1000);

    char service[128];
    pthread_mutex_lock(&g_service_lock);
    memcpy(service, g_service, sizeof service);
    pthread_mutex_unlock(&g_service_lock);
    if (!component)
        component = "app";

    /* Every value may come from outside (a name, a path, a client's text):
     * escaped, a newline cannot start a forged line and the line stays
     * well-formed UTF-8 (and, in JSON, one valid JSON object). */
    char line[LINE_CAP];
    size_t n = 0;
    if (current_format() == DAEBUS_LOG_JSON) {
        put(line, &n, sizeof line, "{\"ts\":\"");
        put(line, &n, sizeof line, when);
        put(line, &n, sizeof line, "\",\"level\":\"");
        put(line, &n, sizeof line, level_names[level]);
        put(line, &n, sizeof line, "\",\"service\":\"");
        put_escaped(line, &n, n + 512, service, true, false);
        put(line, &n, sizeof line, "\",\"component\":\"");
        put_escaped(line, &n, n + 256, component, true, false);
        put(line, &n, sizeof line, "\",\"msg\":\"");
        put_escaped(line, &n, sizeof line, msg, true, cut);
        put(line, &n, sizeof line, "\"}\n");
    } else {
        put(line, &n, sizeof line, when);
        put(line, &n, sizeof line, " ");
        put(line, &n, sizeof line, level_tags[level]);
        put(line, &n, sizeof line, " ");
        put_escaped(line, &n, n + 512, service, false, false);
        put(line, &n, sizeof line, " [");
        put_escaped(line, &n, n + 256, component, false, false);
        put(line, &n, sizeof line, "] ");
        put_escaped(line, &n, sizeof line, msg, false, cut);
        put(line, &n, sizeof line, "\n");
    }
    int fd = atomic_load(&g_fd);
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(fd, line + off, n - off);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
}

void daebus_log(daebus_log_level level, const char *component, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    daebus_logv(level, component, fmt, ap);
    va_end(ap);
}
