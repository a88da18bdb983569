/* log.c - levelled, thread-safe log lines (text or JSON) to stderr.
 *
 * Each line is formatted into a stack buffer and written with a single
 * write(2), which keeps lines from different threads whole without a lock on
 * the hot path. Settings are atomics so any thread may change them.
 */
#include <ctype.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <pthread.h>
#include "daebus/log.h"

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

int daebus_log_enabled(daebus_log_level level)
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

/* Appends s to buf as JSON string content (no quotes). */
static size_t json_escape(char *buf, size_t pos, size_t cap, const char *s)
{
    for (; *s && pos + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[pos++] = '\\';
            buf[pos++] = (char)c;
        } else if (c == '\n') {
            buf[pos++] = '\\';
            buf[pos++] = 'n';
        } else if (c < 0x20) {
            pos += (size_t)snprintf(buf + pos, cap - pos, "\\u%04x", c);
        } else {
            buf[pos++] = (char)c;
        }
    }
    return pos;
}

void daebus_logv(daebus_log_level level, const char *component, const char *fmt, va_list ap)
{
    if (!daebus_log_enabled(level))
        return;
    char msg[4096];
    vsnprintf(msg, sizeof msg, fmt, ap);

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

    char line[4096 + 512];
    size_t n;
    if (current_format() == DAEBUS_LOG_JSON) {
        n = (size_t)snprintf(line, sizeof line, "{\"ts\":\"%s\",\"level\":\"%s\",\"service\":\"",
                             when, level_names[level]);
        n = json_escape(line, n, sizeof line, service);
        n += (size_t)snprintf(line + n, sizeof line - n, "\",\"component\":\"");
        n = json_escape(line, n, sizeof line, component);
        n += (size_t)snprintf(line + n, sizeof line - n, "\",\"msg\":\"");
        n = json_escape(line, n, sizeof line, msg);
        if (n + 3 > sizeof line)
            n = sizeof line - 3;
        line[n++] = '"';
        line[n++] = '}';
        line[n++] = '\n';
    } else {
        n = (size_t)snprintf(line, sizeof line, "%s %s %s [%s] %s\n", when, level_tags[level],
                             service, component, msg);
        if (n >= sizeof line) {
            n = sizeof line - 1;
            line[n - 1] = '\n';
        }
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
