/* fuzz_redis_url.c - the Redis URL parser (--redis, DAEBUS_REDIS_URL).
 *
 * Input: a URL. A parsed URL is checked field by field, described for the
 * log (never showing the password), then written back as a URL in a
 * canonical form and parsed again: both parses must agree.
 */
#include <stdbool.h>
#include "daebus/daebus.h"
#include "fuzz_common.h"
#include "redis_conn.h"

static size_t put(char *out, size_t o, size_t cap, const char *s)
{
    size_t n = strlen(s);
    FUZZ_CHECK(o + n < cap);
    memcpy(out + o, s, n);
    return o + n;
}

static size_t put_encoded(char *out, size_t o, size_t cap, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        FUZZ_CHECK(o + 3 < cap);
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')) {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    return o;
}

static void check_fields(const daebus__redis_url *u)
{
    FUZZ_CHECK(fuzz_terminated(u->host, sizeof u->host));
    FUZZ_CHECK(fuzz_terminated(u->path, sizeof u->path));
    FUZZ_CHECK(fuzz_terminated(u->username, sizeof u->username));
    FUZZ_CHECK(fuzz_terminated(u->password, sizeof u->password));
    FUZZ_CHECK(u->db >= 0 && u->db <= 1000000);
    if (u->is_unix) {
        FUZZ_CHECK(u->path[0] == '/' && u->path[1] != '\0');
        FUZZ_CHECK(!strchr(u->path, '?'));
    } else {
        FUZZ_CHECK(u->host[0] != '\0');
        FUZZ_CHECK(u->port >= 1 && u->port <= 65535);
        FUZZ_CHECK(!strpbrk(u->host, "/?@"));
    }
    FUZZ_CHECK(u->n_sentinels >= 0 && u->n_sentinels <= DAEBUS__REDIS_MAX_SENTINELS);
    FUZZ_CHECK(fuzz_terminated(u->sentinel_password, sizeof u->sentinel_password));
    if (u->n_sentinels) {
        FUZZ_CHECK(!u->is_unix && u->master_name[0]);
        FUZZ_CHECK(fuzz_terminated(u->master_name, sizeof u->master_name));
        FUZZ_CHECK(strspn(u->master_name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                          "0123456789._-") == strlen(u->master_name));
        for (int i = 0; i < u->n_sentinels; i++) {
            FUZZ_CHECK(fuzz_terminated(u->sentinels[i].host, sizeof u->sentinels[i].host));
            FUZZ_CHECK(u->sentinels[i].host[0] && !strpbrk(u->sentinels[i].host, ",/?@"));
            FUZZ_CHECK(u->sentinels[i].port >= 1 && u->sentinels[i].port <= 65535);
        }
    }
}

static void check_describe(const daebus__redis_url *u)
{
    char small[24], full[700];
    daebus__redis_url_describe(u, small, sizeof small);
    FUZZ_CHECK(fuzz_terminated(small, sizeof small));
    daebus__redis_url_describe(u, full, sizeof full);
    FUZZ_CHECK(fuzz_terminated(full, sizeof full));
    const char *scheme = u->n_sentinels ? "redis-sentinel://" : u->is_unix ? "unix://" : "redis://";
    FUZZ_CHECK(strncmp(full, scheme, strlen(scheme)) == 0);
    /* No secrets in logs: the description does not depend on the password,
     * only on whether there is one. */
    daebus__redis_url other = *u;
    snprintf(other.password, sizeof other.password, "%s", u->password[0] ? "x" : "");
    snprintf(other.sentinel_password, sizeof other.sentinel_password, "y");
    char masked[700];
    daebus__redis_url_describe(&other, masked, sizeof masked);
    FUZZ_CHECK(strcmp(full, masked) == 0);
    if (u->password[0])
        FUZZ_CHECK(strstr(full, ":***@") != NULL);
}

/* Writes u back as a URL in one canonical form. */
static void format_url(const daebus__redis_url *u, char *out, size_t cap)
{
    size_t o = put(out, 0, cap,
                   u->n_sentinels ? "redis-sentinel://"
                   : u->is_unix   ? "unix://"
                                  : "redis://");
    if (u->username[0] || u->password[0]) {
        o = put_encoded(out, o, cap, u->username);
        o = put(out, o, cap, ":");
        o = put_encoded(out, o, cap, u->password);
        o = put(out, o, cap, "@");
    }
    char num[32];
    if (u->n_sentinels) {
        for (int i = 0; i < u->n_sentinels; i++) {
            bool v6 = strchr(u->sentinels[i].host, ':') || u->sentinels[i].host[0] == '[';
            o = put(out, o, cap, i ? "," : "");
            o = put(out, o, cap, v6 ? "[" : "");
            o = put(out, o, cap, u->sentinels[i].host);
            snprintf(num, sizeof num, "%s:%d", v6 ? "]" : "", u->sentinels[i].port);
            o = put(out, o, cap, num);
        }
        o = put(out, o, cap, "/");
        o = put(out, o, cap, u->master_name);
        snprintf(num, sizeof num, "/%d", u->db);
        o = put(out, o, cap, num);
        if (u->sentinel_password[0]) {
            o = put(out, o, cap, "?sentinel_password=");
            o = put_encoded(out, o, cap, u->sentinel_password);
        }
    } else if (u->is_unix) {
        o = put(out, o, cap, u->path);
        snprintf(num, sizeof num, "?db=%d", u->db);
        o = put(out, o, cap, num);
    } else {
        bool brackets = strchr(u->host, ':') != NULL || u->host[0] == '[';
        o = put(out, o, cap, brackets ? "[" : "");
        o = put(out, o, cap, u->host);
        o = put(out, o, cap, brackets ? "]" : "");
        snprintf(num, sizeof num, ":%d/%d", u->port, u->db);
        o = put(out, o, cap, num);
    }
    out[o] = '\0';
}

static bool same_sentinels(const daebus__redis_url *a, const daebus__redis_url *b)
{
    if (a->n_sentinels != b->n_sentinels || strcmp(a->master_name, b->master_name) != 0 ||
        strcmp(a->sentinel_password, b->sentinel_password) != 0)
        return false;
    for (int i = 0; i < a->n_sentinels; i++)
        if (strcmp(a->sentinels[i].host, b->sentinels[i].host) != 0 ||
            a->sentinels[i].port != b->sentinels[i].port)
            return false;
    return true;
}

static bool same_url(const daebus__redis_url *a, const daebus__redis_url *b)
{
    return same_sentinels(a, b) && a->is_unix == b->is_unix && a->db == b->db &&
           strcmp(a->username, b->username) == 0 && strcmp(a->password, b->password) == 0 &&
           (a->is_unix ? strcmp(a->path, b->path) == 0
                       : strcmp(a->host, b->host) == 0 && a->port == b->port);
}

#define SECRET "S3cr3tPw"

/* Parses a URL that holds SECRET as (part of) its password: neither the
 * error message, nor the description, nor the redacted text may show it. */
static void check_secret_hidden(const char *url)
{
    daebus__redis_url u;
    daebus_error err = {0};
    if (daebus__redis_url_parse(url, &u, &err) == 0) {
        char desc[700];
        daebus__redis_url_describe(&u, desc, sizeof desc);
        if (strstr(desc, SECRET))
            fprintf(stderr, "secret shown for '%s': %s\n", url, desc);
        FUZZ_CHECK(strstr(desc, SECRET) == NULL);
    } else {
        if (strstr(err.message, SECRET))
            fprintf(stderr, "secret shown for '%s': %s\n", url, err.message);
        FUZZ_CHECK(strstr(err.message, SECRET) == NULL);
    }
    char shown[96];
    daebus__redis_url_redact(url, shown, sizeof shown);
    FUZZ_CHECK(fuzz_terminated(shown, sizeof shown));
    FUZZ_CHECK(strstr(shown, SECRET) == NULL);
}

/* Input "<url>\n<tail>": SECRET + tail planted as the userinfo password
 * ("scheme://u:SECRET<tail>@rest") and as a password= query parameter
 * ("<url>?password=SECRET<tail>"), where the parser takes them for one. */
static void check_planted(const char *text)
{
    if (strstr(text, SECRET))
        return; /* already in the host or path, where it may show */
    const char *nl = strchr(text, '\n');
    size_t ulen = nl ? (size_t)(nl - text) : strlen(text);
    const char *tail = nl ? nl + 1 : "";
    size_t cap = strlen(text) + 64;
    char *url = malloc(cap);
    FUZZ_CHECK(url != NULL);
    const char *sep = strstr(text, "://");
    if (sep && (size_t)(sep - text) + 3 <= ulen) {
        size_t head = (size_t)(sep - text) + 3;
        snprintf(url, cap, "%.*su:" SECRET "%s@%.*s", (int)head, text, tail, (int)(ulen - head),
                 text + head);
        check_secret_hidden(url);
    }
    /* Only as the first query parameter: after an earlier '?' the text
     * could be the host or the path, which are shown. */
    if (!memchr(text, '?', ulen)) {
        snprintf(url, cap, "%.*s?password=" SECRET "%s", (int)ulen, text, tail);
        check_secret_hidden(url);
    }
    free(url);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *url = fuzz_strndup(data, size);
    daebus__redis_url u;
    memset(&u, 0x5a, sizeof u); /* untouched on error: a stale value would show */
    daebus__redis_url before = u;
    daebus_error err = {0};
    int rc = daebus__redis_url_parse(url, &u, &err);
    if (rc != 0) {
        FUZZ_CHECK(rc == DAEBUS_EINVAL && err.code == rc && err.message[0]);
        FUZZ_CHECK(fuzz_terminated(err.message, sizeof err.message));
        FUZZ_CHECK(memcmp(&u, &before, sizeof u) == 0);
        /* Parsing without an error record must not crash either. */
        FUZZ_CHECK(daebus__redis_url_parse(url, &u, NULL) == DAEBUS_EINVAL);
    } else {
        check_fields(&u);
        check_describe(&u);
        char again[1600];
        format_url(&u, again, sizeof again);
        daebus__redis_url v;
        daebus_error err2 = {0};
        int rc2 = daebus__redis_url_parse(again, &v, &err2);
        if (rc2 != 0)
            fprintf(stderr, "re-parse of '%s' failed: %s\n", again, err2.message);
        FUZZ_CHECK(rc2 == 0);
        FUZZ_CHECK(same_url(&u, &v));
    }
    check_planted(url);
    free(url);
    return 0;
}
