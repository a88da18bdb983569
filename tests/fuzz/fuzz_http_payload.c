/* fuzz_http_payload.c - the HTTP request payload: JSON or form body plus
 * query string.
 *
 * Input: "<Content-Type>\n<query string>\n<body>". The steps follow
 * build_payload() in http_request.c, which needs a live CivetWeb connection
 * and so cannot be called here: media type, UTF-8 check, JSON parse
 * (daebus_json_parse: nothing but whitespace after the value), or form parse; then the query
 * string merged under the body's keys.
 */
#include <stdbool.h>
#include "fuzz_common.h"
#include "http_parse.h"

/* Splits off the text up to '\n' (or the end). */
static const char *take_line(const char **p, const char *end, size_t *len)
{
    const char *start = *p;
    const char *nl = memchr(start, '\n', (size_t)(end - start));
    *len = (size_t)((nl ? nl : end) - start);
    *p = nl ? nl + 1 : end;
    return start;
}

/* Returns: the payload, or NULL when the request would get a 400. */
static cJSON *payload_of(const char *ctype, const char *body, size_t blen, const char *query)
{
    cJSON *base = NULL;
    if (blen && daebus__http_media_type_is_json(ctype)) {
        if (!daebus__http_utf8_valid(body, blen))
            return NULL;
        base = daebus_json_parse(body, blen, NULL); /* only whitespace may follow */
        if (!base)
            return NULL;
        /* A JSON body decoded from valid UTF-8 prints and parses back. */
        if (fuzz_json_finite(base))
            FUZZ_CHECK(fuzz_json_round_trips(base));
        if (!cJSON_IsObject(base))
            return base;
    } else if (blen && daebus__http_media_type_is(ctype, "application/x-www-form-urlencoded")) {
        base = cJSON_CreateObject();
        FUZZ_CHECK(base != NULL);
        int rc = daebus__http_parse_form(body, blen, base);
        FUZZ_CHECK(rc == 0 || rc == -1);
        if (rc == -1) {
            cJSON_Delete(base);
            return NULL;
        }
    }
    if (!base)
        base = cJSON_CreateObject();
    FUZZ_CHECK(base != NULL);
    if (*query) {
        cJSON *q = cJSON_CreateObject();
        FUZZ_CHECK(q != NULL);
        if (daebus__http_parse_form(query, strlen(query), q) != 0) {
            cJSON_Delete(q);
            cJSON_Delete(base);
            return NULL;
        }
        for (cJSON *it = q->child; it; it = it->next)
            if (!cJSON_GetObjectItemCaseSensitive(base, it->string))
                cJSON_AddItemToObject(base, it->string, cJSON_CreateString(it->valuestring));
        /* Every query name is now in the payload, the body's value winning. */
        for (cJSON *it = q->child; it; it = it->next)
            FUZZ_CHECK(cJSON_GetObjectItemCaseSensitive(base, it->string));
        cJSON_Delete(q);
    }
    return base;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;
    size_t clen, qlen;
    const char *c = take_line(&p, end, &clen);
    const char *q = take_line(&p, end, &qlen);
    /* Header values and the query string are C strings in CivetWeb. */
    char *ctype = fuzz_strndup((const uint8_t *)c, clen);
    char *query = fuzz_strndup((const uint8_t *)q, qlen);
    size_t blen = (size_t)(end - p);
    /* The body is read into a buffer of exactly its length. */
    char *body = malloc(blen ? blen : 1);
    FUZZ_CHECK(body != NULL);
    if (blen)
        memcpy(body, p, blen);

    cJSON *payload = payload_of(ctype, body, blen, query);
    if (payload) {
        char *text = daebus_json_print(payload, NULL);
        FUZZ_CHECK(text != NULL);
        free(text);
    }
    cJSON_Delete(payload);
    free(body);
    free(query);
    free(ctype);
    return 0;
}
