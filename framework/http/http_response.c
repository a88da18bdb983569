/* http_response.c - responses: headers, status line, bodies, streams, error bodies.
 *
 * Responses go out through CivetWeb's mg_response_header_* calls, which keep
 * HTTP/1.1 keep-alive working; every non-streamed response has a
 * Content-Length. Outside CivetWeb's request handling (raw_head: the refusals
 * of begin_request and the answers of the close callback) the head is
 * written whole with mg_write, because CivetWeb's header calls write no
 * status line there (civet/civet.c).
 */
#include <civetweb.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>
#include "clock.h"
#include "component.h"
#include "json.h"
#include "daebus/log.h"
#include "http_parse.h"
#include "http_private.h"

void daebus__http_allow_text(unsigned mask, char *buf, size_t cap)
{
    if (mask & DAEBUS_GET)
        mask |= DAEBUS_HEAD;
    mask |= DAEBUS_OPTIONS;
    daebus__http_methods_text(mask, buf, cap);
}

/* ---- responses ---- */

bool daebus_http_response_sent(const daebus_http_response *res)
{
    return res && res->sent;
}

static bool token_ok(const char *s)
{
    if (!s || !*s)
        return false;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= 32 || c >= 127 || strchr("()<>@,;:\\\"/[]?={}", c))
            return false;
    }
    return true;
}

/* Allocates the extra-header buffer on first use. Returns 0 or -1. */
int daebus__http_headers_buffer(daebus_http_response *res)
{
    if (!res->headers) {
        res->headers = malloc(DAEBUS__HTTP_EXTRA_HEADERS);
        if (!res->headers)
            return -1;
        res->headers[0] = '\0';
        res->hlen = 0;
    }
    return 0;
}

int daebus_http_set_header(daebus_http_response *res, const char *name, const char *value)
{
    if (!res || !token_ok(name) || !value || strpbrk(value, "\r\n")) {
        daebus_log(DAEBUS_LOG_ERROR, "http",
                   "set_header: needs a token name and a value without CR/LF");
        return DAEBUS_EINVAL;
    }
    if (!strcasecmp(name, "Content-Length") || !strcasecmp(name, "Transfer-Encoding") ||
        !strcasecmp(name, "Connection")) {
        daebus_log(DAEBUS_LOG_ERROR, "http",
                   "set_header: %s is managed by the server; use the send/stream functions", name);
        return DAEBUS_EINVAL;
    }
    if (res->sent) {
        daebus_log(DAEBUS_LOG_ERROR, "http",
                   "set_header: the response was sent already; set headers before sending");
        return DAEBUS_ESTATE;
    }
    if (daebus__http_headers_buffer(res) != 0)
        return DAEBUS_ENOMEM;
    int n = snprintf(res->headers + res->hlen, DAEBUS__HTTP_EXTRA_HEADERS - res->hlen, "%s: %s\r\n",
                     name, value);
    if (n < 0 || (size_t)n >= DAEBUS__HTTP_EXTRA_HEADERS - res->hlen) {
        res->headers[res->hlen] = '\0';
        return DAEBUS_EFULL;
    }
    res->hlen += (size_t)n;
    return 0;
}

/* The Date header, formatted here (gmtime_r, fixed English names) and cached
 * per thread for the current second. CivetWeb only formats its own Date when
 * the response has none, and it does that with the non-reentrant libc call:
 * supplying it keeps every response off that shared buffer without a lock. */
static const char *http_date(void)
{
    static _Thread_local time_t cached = (time_t)-1;
    static _Thread_local char buf[40];
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t now = time(NULL);
    if (now != cached) {
        struct tm tm;
        if (!gmtime_r(&now, &tm))
            return NULL;
        snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7],
                 tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                 tm.tm_sec);
        cached = now;
    }
    return buf;
}

/* Returns: whether the extra header lines set one named name (case-insensitive). */
static bool has_header_line(const daebus_http_response *res, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = res->hlen ? res->headers : NULL; p && *p;) {
        if (strncasecmp(p, name, n) == 0 && p[n] == ':')
            return true;
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return false;
}

/* mg_disable_keep_alive() is a Debian (Orthanc) patch to CivetWeb 1.15, used
 * to close the connection after a 413 whose body was left unread; linked
 * weakly so that other CivetWeb builds still work (without the close). */
#pragma weak mg_disable_keep_alive

/* daebus__http_send_head() for res->raw_head: the whole head in one mg_write. */
static int send_head_raw(daebus_http_response *res, int status, const char *ctype, long long clen,
                         bool chunked)
{
    const char *reason = mg_get_response_code_text(res->conn, status);
    size_t cap = res->hlen + (ctype ? strlen(ctype) : 0) + 512;
    char *t = malloc(cap);
    if (!t)
        return DAEBUS_ENOMEM;
    int n = snprintf(t, cap, "HTTP/1.1 %d %s\r\n", status, reason ? reason : "");
    if (ctype)
        n += snprintf(t + n, cap - (size_t)n, "Content-Type: %s\r\n", ctype);
    if (clen >= 0 && status != 204 && status != 304 && status >= 200)
        n += snprintf(t + n, cap - (size_t)n, "Content-Length: %lld\r\n", clen);
    if (chunked)
        n += snprintf(t + n, cap - (size_t)n, "Transfer-Encoding: chunked\r\n");
    if (res->hlen)
        n += snprintf(t + n, cap - (size_t)n, "%s", res->headers);
    const char *date = has_header_line(res, "Date") ? NULL : http_date();
    if (date)
        n += snprintf(t + n, cap - (size_t)n, "Date: %s\r\n", date);
    n += snprintf(t + n, cap - (size_t)n, "Connection: close\r\n\r\n");
    res->sent = true;
    res->status = status;
    int w = mg_write(res->conn, t, (size_t)n);
    free(t);
    return w == n ? 0 : DAEBUS_EIO;
}

/* Sends the status line and headers; clen < 0 = no Content-Length. */
int daebus__http_send_head(daebus_http_response *res, int status, const char *ctype, long long clen,
                           bool chunked)
{
    if (res->sent) {
        daebus_log(DAEBUS_LOG_ERROR, "http",
                   "a response was sent already; send one response per request");
        return DAEBUS_ESTATE;
    }
    if (status < 100 || status > 999)
        status = 500;
    struct mg_connection *c = res->conn;
    void (*disable_keep_alive)(struct mg_connection *) = mg_disable_keep_alive;
    if ((res->close_after || res->raw_head) && disable_keep_alive)
        disable_keep_alive(c);
    if (res->raw_head)
        return send_head_raw(res, status, ctype, clen, chunked);
    if (mg_response_header_start(c, status) < 0)
        return DAEBUS_EIO;
    res->sent = true;
    res->status = status;
    if (ctype)
        mg_response_header_add(c, "Content-Type", ctype, -1);
    if (clen >= 0 && status != 204 && status != 304 && status >= 200) {
        char num[32];
        snprintf(num, sizeof num, "%lld", clen);
        mg_response_header_add(c, "Content-Length", num, -1);
    }
    if (chunked)
        mg_response_header_add(c, "Transfer-Encoding", "chunked", -1);
    if (res->hlen)
        mg_response_header_add_lines(c, res->headers);
    if (!has_header_line(res, "Date")) {
        const char *date = http_date();
        if (date)
            mg_response_header_add(c, "Date", date, -1);
    }
    int rc = mg_response_header_send(c);
    return rc < 0 ? DAEBUS_EIO : 0;
}

int daebus__http_write_all(daebus_http_response *res, const void *data, size_t len)
{
    if (res->head_only || !len)
        return 0;
    const char *p = data;
    while (len) {
        size_t n = len > (1u << 30) ? (1u << 30) : len;
        int w = mg_write(res->conn, p, n);
        if (w <= 0)
            return DAEBUS_EIO;
        res->bytes_out += (uint64_t)w;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int daebus_http_send(daebus_http_response *res, int status, const char *content_type,
                     const void *data, size_t len)
{
    if (!res || (len && !data))
        return DAEBUS_EINVAL;
    int rc = daebus__http_send_head(res, status,
                                    content_type ? content_type : "application/octet-stream",
                                    (long long)len, false);
    if (rc)
        return rc;
    if (status == 204 || status == 304)
        return 0;
    return daebus__http_write_all(res, data, len);
}

int daebus_http_send_json(daebus_http_response *res, int status, const cJSON *body)
{
    if (!res)
        return DAEBUS_EINVAL;
    char *text = body ? daebus_json_print(body, NULL) : NULL;
    if (body && !text)
        return DAEBUS_ENOMEM;
    int rc = daebus_http_send(res, status, "application/json", text ? text : "null",
                              text ? strlen(text) : 4);
    free(text);
    return rc;
}

int daebus_http_send_json_take(daebus_http_response *res, int status, cJSON *body)
{
    int rc = daebus_http_send_json(res, status, body);
    cJSON_Delete(body);
    return rc;
}

int daebus_http_send_error(daebus_http_response *res, int status, const char *message)
{
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddStringToObject(o, "error", message ? message : "error")) {
        cJSON_Delete(o);
        return DAEBUS_ENOMEM;
    }
    return daebus_http_send_json_take(res, status, o);
}

int daebus_http_stream_begin(daebus_http_response *res, int status, const char *content_type)
{
    if (!res)
        return DAEBUS_EINVAL;
    int rc = daebus__http_send_head(
        res, status, content_type ? content_type : "application/octet-stream", -1, !res->head_only);
    if (rc == 0)
        res->streaming = true;
    return rc;
}

int daebus_http_stream_write(daebus_http_response *res, const void *data, size_t len)
{
    if (!res || (len && !data))
        return DAEBUS_EINVAL;
    if (!res->streaming || res->stream_ended) {
        daebus_log(DAEBUS_LOG_ERROR, "http", "stream_write: call daebus_http_stream_begin first");
        return DAEBUS_ESTATE;
    }
    if (res->head_only || !len)
        return 0;
    while (len) {
        unsigned n = len > (1u << 30) ? (1u << 30) : (unsigned)len;
        if (mg_send_chunk(res->conn, data, n) <= 0)
            return DAEBUS_EIO;
        res->bytes_out += n;
        data = (const char *)data + n;
        len -= n;
    }
    return 0;
}

int daebus_http_stream_end(daebus_http_response *res)
{
    if (!res)
        return DAEBUS_EINVAL;
    if (!res->streaming || res->stream_ended)
        return DAEBUS_ESTATE;
    res->stream_ended = true;
    if (res->head_only)
        return 0;
    return mg_write(res->conn, "0\r\n\r\n", 5) == 5 ? 0 : DAEBUS_EIO;
}

/* ---- error responses ---- */

void daebus__http_send_path_error(daebus_http_response *res, int status, const char *error,
                                  const char *path)
{
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "error", error);
        cJSON_AddStringToObject(o, "path", path ? path : "");
    }
    daebus_http_send_json_take(res, status, o);
}

void daebus__http_send_405(daebus_http_response *res, unsigned allow, const char *path)
{
    char text[128];
    daebus__http_allow_text(allow, text, sizeof text);
    daebus_http_set_header(res, "Allow", text);
    daebus__http_send_path_error(res, 405, "Method Not Allowed", path);
}
