/* rooms.c - the rooms blueprint: the Daebus guide's chat rooms in C, bounded.
 *
 * Rooms and clients live in two linked lists behind one mutex. A handler
 * changes the state under the mutex, copies the recipient ids it needs, and
 * sends to them after unlocking, so a slow client never holds the lock.
 *
 * Every quantity a client can make grow is bounded (daebus_rooms_options):
 * rooms exist only while they have members (the last one out deletes the room
 * and its history), rooms in total and per client, name and message lengths,
 * and history. A message is one allocation linked twice: into its room's list
 * (trimmed to history_messages / history_bytes) and into one process-wide list
 * in arrival order (trimmed to history_total_bytes, oldest first, whatever its
 * room). Replies that list rooms are pages of at most list_max names, so no
 * reply grows with the number of rooms.
 */
#include "rooms/rooms.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

DAEBUS_BLUEPRINT(daebus_rooms_bp, "rooms");

struct chat_room;

typedef struct chat_msg {
    struct chat_msg *prev, *next;   /* in its room, oldest first */
    struct chat_msg *gprev, *gnext; /* over all rooms, oldest first */
    struct chat_room *room;
    double ts;
    size_t bytes;             /* what it counts for in the history bounds */
    char *id, *sender, *text; /* point into the same allocation */
} chat_msg;

typedef struct chat_room {
    char *name;
    double created_at;
    char **members; /* client ids */
    size_t nmembers, cap;
    chat_msg *first, *last;
    size_t nmsgs, bytes;
    struct chat_room *next;
} chat_room;

typedef struct chat_client {
    char *client_id;
    char *username; /* NULL until registered */
    double registered_at;
    size_t nrooms; /* memberships */
    struct chat_client *next;
} chat_client;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static daebus_rooms_options cfg = {
    .max_rooms = DAEBUS_ROOMS_MAX_ROOMS,
    .max_rooms_per_client = DAEBUS_ROOMS_MAX_ROOMS_PER_CLIENT,
    .max_name_bytes = DAEBUS_ROOMS_MAX_NAME,
    .max_message_bytes = DAEBUS_ROOMS_MAX_TEXT,
    .history_messages = DAEBUS_ROOMS_HISTORY,
    .history_bytes = DAEBUS_ROOMS_HISTORY_BYTES,
    .history_total_bytes = DAEBUS_ROOMS_HISTORY_TOTAL_BYTES,
    .join_history = DAEBUS_ROOMS_JOIN_HISTORY,
    .list_max = DAEBUS_ROOMS_LIST_MAX,
    .same_origin = false,
};
static chat_room *rooms;
static size_t nrooms_total;
static chat_client *clients;
static chat_msg *gfirst, *glast;
static size_t gbytes, gmsgs;
static unsigned long long messages_total;
static atomic_ullong msg_seq, refused_total, refused_quiet;
static atomic_llong refused_logged_at;

static double now_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- options ---- */

int daebus_rooms_configure(const daebus_rooms_options *opts)
{
    daebus_rooms_options o = DAEBUS_ROOMS_OPTIONS_INIT;
    if (opts)
        o = *opts;
    if (o.max_name_bytes > DAEBUS_ROOMS_MAX_NAME_LIMIT ||
        o.max_message_bytes > DAEBUS_ROOMS_MAX_TEXT_LIMIT || o.list_max > DAEBUS_ROOMS_LIST_LIMIT) {
        daebus_log(DAEBUS_LOG_ERROR, "rooms",
                   "daebus_rooms_configure: max_name_bytes (<= %d), max_message_bytes (<= %u) or "
                   "list_max (<= %d) too large; options unchanged",
                   DAEBUS_ROOMS_MAX_NAME_LIMIT, DAEBUS_ROOMS_MAX_TEXT_LIMIT,
                   DAEBUS_ROOMS_LIST_LIMIT);
        return DAEBUS_EINVAL;
    }
#define DEF(f, v)                                                                                  \
    if (!o.f)                                                                                      \
    o.f = (v)
    DEF(max_rooms, DAEBUS_ROOMS_MAX_ROOMS);
    DEF(max_rooms_per_client, DAEBUS_ROOMS_MAX_ROOMS_PER_CLIENT);
    DEF(max_name_bytes, DAEBUS_ROOMS_MAX_NAME);
    DEF(max_message_bytes, DAEBUS_ROOMS_MAX_TEXT);
    DEF(history_messages, DAEBUS_ROOMS_HISTORY);
    DEF(history_bytes, DAEBUS_ROOMS_HISTORY_BYTES);
    DEF(history_total_bytes, DAEBUS_ROOMS_HISTORY_TOTAL_BYTES);
    DEF(join_history, DAEBUS_ROOMS_JOIN_HISTORY);
    DEF(list_max, DAEBUS_ROOMS_LIST_MAX);
#undef DEF
    pthread_mutex_lock(&lock);
    cfg = o;
    pthread_mutex_unlock(&lock);
    return 0;
}

void daebus_rooms_get_options(daebus_rooms_options *out)
{
    if (!out)
        return;
    pthread_mutex_lock(&lock);
    *out = cfg;
    pthread_mutex_unlock(&lock);
}

/* ---- WebSocket plumbing ---- */

static daebus_ws *req_ws(daebus_ws_request *req)
{
    return daebus_ws_request_ws(req);
}

static const cJSON *req_data(daebus_ws_request *req)
{
    return daebus_ws_request_data(req);
}

/* Sends {"type": type, "data": data} to each id; ids are freed. */
static void send_and_free(daebus_ws *ws, char **ids, size_t n, const char *type, const cJSON *data)
{
    if (ws && n > 0)
        daebus_ws_broadcast_to_clients(ws, (const char *const *)ids, n, data, type, NULL);
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
}

static void remember_username(daebus_ws *ws, const char *client_id, const char *name)
{
    cJSON *v = cJSON_CreateString(name);
    if (ws && v)
        daebus_ws_set_client_data(ws, client_id, "username", v);
    cJSON_Delete(v);
}

/* Copies s for a log line: printable ASCII as is, other bytes as \xHH, at
 * most cap - 1 bytes (cut before an escape, never inside one). */
static const char *loggable(char *dst, size_t cap, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p >= 0x20 && *p < 0x7f && *p != '\\') {
            if (o + 1 >= cap)
                break;
            dst[o++] = (char)*p;
        } else {
            if (o + 4 >= cap)
                break;
            dst[o++] = '\\';
            dst[o++] = 'x';
            dst[o++] = hex[*p >> 4];
            dst[o++] = hex[*p & 15];
        }
    }
    dst[o] = '\0';
    return dst;
}

/* Counts a refusal. Returns: true when it may be logged - at most one line
 * per second, since clients control the rate - with *quiet set to the
 * refusals not logged since the last line. */
static bool refusal_log_slot(unsigned long long *quiet)
{
    atomic_fetch_add(&refused_total, 1);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long long now = (long long)ts.tv_sec;
    long long prev = atomic_load(&refused_logged_at);
    if (now != prev && atomic_compare_exchange_strong(&refused_logged_at, &prev, now)) {
        *quiet = atomic_exchange(&refused_quiet, 0);
        return true;
    }
    atomic_fetch_add(&refused_quiet, 1);
    return false;
}

/* " (N more refusals not logged)" in a thread-local buffer, "" for none. */
static const char *quiet_note(unsigned long long quiet)
{
    static _Thread_local char buf[96];
    if (!quiet)
        return "";
    snprintf(buf, sizeof buf, " (%llu more refusals since the last line not logged)", quiet);
    return buf;
}

static void note_refusal(const char *client_id, const char *what)
{
    unsigned long long quiet;
    char id[96];
    if (refusal_log_slot(&quiet))
        daebus_log(DAEBUS_LOG_WARNING, "rooms", "refused a request of client %s: %s%s",
                   loggable(id, sizeof id, client_id), what, quiet_note(quiet));
}

static cJSON *error_reply(const char *text)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "error", text);
    cJSON_AddStringToObject(o, "status", "error");
    return o;
}

static cJSON *refuse(const char *client_id, const char *text)
{
    note_refusal(client_id, text);
    return error_reply(text);
}

/* ---- names and fields ---- */

static int ascii_casecmp(const char *a, const char *b)
{
    for (;; a++, b++) {
        int ca = (unsigned char)*a, cb = (unsigned char)*b;
        if (ca >= 'A' && ca <= 'Z')
            ca += 'a' - 'A';
        if (cb >= 'A' && cb <= 'Z')
            cb += 'a' - 'A';
        if (ca != cb || !ca)
            return ca - cb;
    }
}

/* True when s starts with prefix (lower case), ASCII case ignored. */
static bool ascii_prefix(const char *s, const char *prefix)
{
    for (; *prefix; s++, prefix++) {
        int c = (unsigned char)*s;
        if (c >= 'A' && c <= 'Z')
            c += 'a' - 'A';
        if (c != *prefix)
            return false;
    }
    return true;
}

/* True when s (n bytes) is well-formed UTF-8 without control characters:
 * C0 controls and DEL, C1 controls, the two-byte NUL 0xC0 0x80 (not UTF-8:
 * the form an escaped NUL takes, docs/protocol.md section 4), zero-width and
 * bidi controls, line/paragraph separators, and the byte order mark. */
static bool name_chars_ok(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f)
                return false;
            i++;
            continue;
        }
        size_t len;
        uint32_t cp;
        unsigned lo = 0x80, hi = 0xbf; /* range of the second byte */
        if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            cp = c & 0x0f;
            if (c == 0xe0)
                lo = 0xa0; /* overlong */
            if (c == 0xed)
                hi = 0x9f; /* surrogates */
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            cp = c & 0x07;
            if (c == 0xf0)
                lo = 0x90;
            if (c == 0xf4)
                hi = 0x8f;
        } else {
            return false; /* 0x80..0xc1 (0xc0 0x80 included), 0xf5.. */
        }
        if (i + len > n || s[i + 1] < lo || s[i + 1] > hi)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((cp >= 0x80 && cp <= 0x9f) || (cp >= 0x200b && cp <= 0x200f) ||
            (cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2060 && cp <= 0x206f) || cp == 0xfeff)
            return false;
        i += len;
    }
    return true;
}

typedef enum { FIELD_OK, FIELD_MISSING, FIELD_TOO_LONG, FIELD_BAD_CHARS, FIELD_NOMEM } field_rc;

static bool trim_char(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* The string field key of data with leading and trailing blanks trimmed,
 * copied into *out (malloc'd). MISSING when absent, not a string or blank;
 * TOO_LONG over max bytes; BAD_CHARS when name is set and the text is not a
 * clean name (name_chars_ok). Never cuts. */
static field_rc get_field(const cJSON *data, const char *key, size_t max, bool name, char **out)
{
    *out = NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(data, key);
    if (!cJSON_IsString(v) || !v->valuestring)
        return FIELD_MISSING;
    const char *s = v->valuestring;
    while (trim_char(*s))
        s++;
    size_t len = strlen(s);
    while (len > 0 && trim_char(s[len - 1]))
        len--;
    if (len == 0)
        return FIELD_MISSING;
    if (len > max)
        return FIELD_TOO_LONG;
    if (name && !name_chars_ok((const unsigned char *)s, len))
        return FIELD_BAD_CHARS;
    char *copy = malloc(len + 1);
    if (!copy)
        return FIELD_NOMEM;
    memcpy(copy, s, len);
    copy[len] = '\0';
    *out = copy;
    return FIELD_OK;
}

/* The error text for a refused name field ("Username", "Room name"). */
static const char *name_error(field_rc rc, const char *what, size_t max, char *buf, size_t cap)
{
    switch (rc) {
    case FIELD_MISSING:
        snprintf(buf, cap, "%s is required", what);
        break;
    case FIELD_TOO_LONG:
        snprintf(buf, cap, "%s is too long (max %zu bytes)", what, max);
        break;
    case FIELD_BAD_CHARS:
        snprintf(buf, cap, "%s must not contain control characters", what);
        break;
    default:
        snprintf(buf, cap, "Out of memory");
        break;
    }
    return buf;
}

/* ---- state helpers (call with lock held) ---- */

static chat_client *find_client(const char *client_id)
{
    for (chat_client *c = clients; c; c = c->next)
        if (strcmp(c->client_id, client_id) == 0)
            return c;
    return NULL;
}

static chat_client *get_client(const char *client_id)
{
    chat_client *c = find_client(client_id);
    if (c)
        return c;
    c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->client_id = strdup(client_id);
    if (!c->client_id) {
        free(c);
        return NULL;
    }
    c->next = clients;
    clients = c;
    return c;
}

/* The registered client other than self whose name equals name (ASCII case
 * ignored), or NULL. */
static chat_client *name_holder(const char *name, const char *self)
{
    for (chat_client *c = clients; c; c = c->next)
        if (c->username && strcmp(c->client_id, self) != 0 && ascii_casecmp(c->username, name) == 0)
            return c;
    return NULL;
}

static chat_room *find_room(const char *name)
{
    for (chat_room *r = rooms; r; r = r->next)
        if (strcmp(r->name, name) == 0)
            return r;
    return NULL;
}

static const char *username_of(const char *client_id)
{
    chat_client *c = find_client(client_id);
    return c && c->username ? c->username : "Anonymous";
}

static bool is_member(const chat_room *r, const char *client_id)
{
    for (size_t i = 0; i < r->nmembers; i++)
        if (strcmp(r->members[i], client_id) == 0)
            return true;
    return false;
}

static int add_member(chat_room *r, const char *client_id)
{
    if (r->nmembers == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 4;
        char **m = realloc(r->members, cap * sizeof *m);
        if (!m)
            return DAEBUS_ENOMEM;
        r->members = m;
        r->cap = cap;
    }
    char *id = strdup(client_id);
    if (!id)
        return DAEBUS_ENOMEM;
    r->members[r->nmembers++] = id;
    return 0;
}

static bool remove_member(chat_room *r, const char *client_id)
{
    for (size_t i = 0; i < r->nmembers; i++) {
        if (strcmp(r->members[i], client_id) == 0) {
            free(r->members[i]);
            r->members[i] = r->members[--r->nmembers];
            return true;
        }
    }
    return false;
}

/* Copies the member ids except skip into a malloc'd array. */
static char **others(const chat_room *r, const char *skip, size_t *n)
{
    *n = 0;
    if (r->nmembers == 0)
        return NULL;
    char **ids = calloc(r->nmembers, sizeof *ids);
    if (!ids)
        return NULL;
    for (size_t i = 0; i < r->nmembers; i++) {
        if (skip && strcmp(r->members[i], skip) == 0)
            continue;
        ids[*n] = strdup(r->members[i]);
        if (ids[*n])
            (*n)++;
    }
    return ids;
}

static void unlink_msg(chat_msg *m)
{
    chat_room *r = m->room;
    if (m->prev)
        m->prev->next = m->next;
    else
        r->first = m->next;
    if (m->next)
        m->next->prev = m->prev;
    else
        r->last = m->prev;
    r->nmsgs--;
    r->bytes -= m->bytes;
    if (m->gprev)
        m->gprev->gnext = m->gnext;
    else
        gfirst = m->gnext;
    if (m->gnext)
        m->gnext->gprev = m->gprev;
    else
        glast = m->gprev;
    gmsgs--;
    gbytes -= m->bytes;
    free(m);
}

/* Appends a message to r and trims r and the whole history to the bounds.
 * Returns: false when out of memory. */
static bool add_msg(chat_room *r, const char *id, const char *sender, const char *text, double ts)
{
    size_t li = strlen(id) + 1, ls = strlen(sender) + 1, lt = strlen(text) + 1;
    size_t bytes = sizeof(chat_msg) + li + ls + lt;
    chat_msg *m = malloc(bytes);
    if (!m)
        return false;
    m->id = (char *)(m + 1);
    m->sender = m->id + li;
    m->text = m->sender + ls;
    memcpy(m->id, id, li);
    memcpy(m->sender, sender, ls);
    memcpy(m->text, text, lt);
    m->ts = ts;
    m->bytes = bytes;
    m->room = r;
    m->next = NULL;
    m->prev = r->last;
    if (r->last)
        r->last->next = m;
    else
        r->first = m;
    r->last = m;
    r->nmsgs++;
    r->bytes += bytes;
    m->gnext = NULL;
    m->gprev = glast;
    if (glast)
        glast->gnext = m;
    else
        gfirst = m;
    glast = m;
    gmsgs++;
    gbytes += bytes;
    while (r->first && (r->nmsgs > cfg.history_messages || r->bytes > cfg.history_bytes))
        unlink_msg(r->first);
    while (gfirst && gbytes > cfg.history_total_bytes)
        unlink_msg(gfirst);
    return true;
}

static cJSON *msg_json(const chat_msg *m)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", m->id);
    cJSON_AddStringToObject(o, "room", m->room->name);
    cJSON_AddStringToObject(o, "sender", m->sender);
    cJSON_AddStringToObject(o, "text", m->text);
    cJSON_AddNumberToObject(o, "timestamp", m->ts);
    return o;
}

static chat_room *create_room(const char *name)
{
    chat_room *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->name = strdup(name);
    r->created_at = now_wall();
    if (!r->name) {
        free(r);
        return NULL;
    }
    r->next = rooms;
    rooms = r;
    nrooms_total++;
    return r;
}

static void free_room(chat_room *r)
{
    while (r->first)
        unlink_msg(r->first);
    for (size_t i = 0; i < r->nmembers; i++)
        free(r->members[i]);
    free(r->members);
    free(r->name);
    free(r);
}

/* Unlinks r from the room list and frees it with its history. */
static void delete_room(chat_room *r)
{
    for (chat_room **p = &rooms; *p; p = &(*p)->next) {
        if (*p == r) {
            *p = r->next;
            nrooms_total--;
            break;
        }
    }
    free_room(r);
}

static int by_name(const void *a, const void *b)
{
    const chat_room *ra = *(const chat_room *const *)a, *rb = *(const chat_room *const *)b;
    return strcmp(ra->name, rb->name);
}

/* detail levels of room_page */
enum { PAGE_NAMES, PAGE_MEMBERS, PAGE_FULL };

/* A page of at most limit rooms sorted by name, after `after` (NULL = from
 * the start): a JSON array of names or objects. *next_after gets a copy of
 * the last name when more rooms follow (NULL otherwise). Lock held. */
static cJSON *room_page(const char *after, size_t limit, int detail, char **next_after)
{
    *next_after = NULL;
    cJSON *list = cJSON_CreateArray();
    chat_room **sel = nrooms_total ? malloc(nrooms_total * sizeof *sel) : NULL;
    size_t n = 0;
    if (nrooms_total && !sel)
        return list;
    for (chat_room *r = rooms; r && n < nrooms_total; r = r->next)
        if (!after || strcmp(r->name, after) > 0)
            sel[n++] = r;
    if (n > 1)
        qsort(sel, n, sizeof *sel, by_name);
    size_t take = n < limit ? n : limit;
    for (size_t i = 0; i < take; i++) {
        const chat_room *r = sel[i];
        if (detail == PAGE_NAMES) {
            cJSON_AddItemToArray(list, cJSON_CreateString(r->name));
            continue;
        }
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", r->name);
        cJSON_AddNumberToObject(o, "members", (double)r->nmembers);
        if (detail == PAGE_FULL) {
            cJSON_AddNumberToObject(o, "message_count", (double)r->nmsgs);
            cJSON_AddNumberToObject(o, "created_at", r->created_at);
        }
        cJSON_AddItemToArray(list, o);
    }
    if (take < n && take > 0)
        *next_after = strdup(sel[take - 1]->name);
    free(sel);
    return list;
}

static void add_next_after(cJSON *o, char *next_after)
{
    if (next_after)
        cJSON_AddStringToObject(o, "next_after", next_after);
    else
        cJSON_AddNullToObject(o, "next_after");
    free(next_after);
}

/* ---- same-origin check ---- */

/* Splits an authority "host[:port]" or "[v6]:port" (n bytes) into a host
 * (its bytes in s) and a port (def_port when absent). Returns false when
 * malformed. */
static bool split_authority(const char *s, size_t n, int def_port, const char **host, size_t *hlen,
                            long *port)
{
    if (n == 0)
        return false;
    size_t end; /* end of the host part */
    if (s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close)
            return false;
        end = (size_t)(close - s) + 1;
    } else {
        end = 0;
        while (end < n && s[end] != ':')
            end++;
    }
    if (end == 0)
        return false;
    for (size_t i = 0; i < end; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f || c == '/' || c == '@' || c == '?' || c == '#' || c == '\\')
            return false;
    }
    *host = s;
    *hlen = end;
    *port = def_port;
    if (end == n)
        return true;
    if (s[end] != ':' || end + 1 == n || n - end - 1 > 5)
        return false;
    long p = 0;
    for (size_t i = end + 1; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        p = p * 10 + (s[i] - '0');
    }
    if (p < 1 || p > 65535)
        return false;
    *port = p;
    return true;
}

bool daebus_rooms_origin_allowed(daebus_ws_request *req)
{
    const char *origin = daebus_ws_request_header(req, "Origin");
    if (!origin)
        return true; /* not a browser: the check protects browsers' users */
    const char *host = daebus_ws_request_header(req, "Host");
    if (!host)
        return false;
    int def;
    const char *rest;
    if (ascii_prefix(origin, "http://")) {
        def = 80;
        rest = origin + 7;
    } else if (ascii_prefix(origin, "https://")) {
        def = 443;
        rest = origin + 8;
    } else {
        return false; /* "null", file:, chrome-extension: ... */
    }
    const char *oh, *hh;
    size_t ol, hl;
    long op, hp;
    if (!split_authority(rest, strlen(rest), def, &oh, &ol, &op) ||
        !split_authority(host, strlen(host), def, &hh, &hl, &hp))
        return false;
    if (ol != hl || op != hp)
        return false;
    for (size_t i = 0; i < ol; i++) {
        int a = (unsigned char)oh[i], b = (unsigned char)hh[i];
        if (a >= 'A' && a <= 'Z')
            a += 'a' - 'A';
        if (b >= 'A' && b <= 'Z')
            b += 'a' - 'A';
        if (a != b)
            return false;
    }
    return true;
}

/* ---- connect / disconnect ---- */

DAEBUS_SOCKET_CONNECT(rooms_on_connect, .bp = &daebus_rooms_bp)
{
    pthread_mutex_lock(&lock);
    bool check = cfg.same_origin;
    pthread_mutex_unlock(&lock);
    if (check && !daebus_rooms_origin_allowed(req)) {
        char o[160], h[160];
        unsigned long long quiet;
        if (refusal_log_slot(&quiet))
            daebus_log(DAEBUS_LOG_WARNING, "rooms",
                       "refusing an upgrade: Origin '%s' is not this page's own (Host '%s'); "
                       "list it in the allowed origins to let it in%s",
                       loggable(o, sizeof o, daebus_ws_request_header(req, "Origin")),
                       loggable(h, sizeof h, daebus_ws_request_header(req, "Host")),
                       quiet_note(quiet));
        return daebus_ws_request_reject(req, "Origin not allowed");
    }
    daebus_log(DAEBUS_LOG_INFO, "rooms", "client connected: %s", client_id);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "connected");
    cJSON_AddStringToObject(o, "client_id", client_id);
    return o;
}

void daebus_rooms_client_gone(daebus_ws *ws, const char *client_id)
{
    if (!client_id)
        return;
    typedef struct note {
        char **ids;
        size_t n;
        cJSON *data;
        struct note *next;
    } note;
    note *notes = NULL;

    pthread_mutex_lock(&lock);
    const char *name = username_of(client_id);
    for (chat_room **pr = &rooms; *pr;) {
        chat_room *r = *pr;
        if (!remove_member(r, client_id)) {
            pr = &r->next;
            continue;
        }
        if (r->nmembers == 0) { /* the last one out: the room goes */
            *pr = r->next;
            nrooms_total--;
            free_room(r);
            continue;
        }
        pr = &r->next;
        note *nt = calloc(1, sizeof *nt);
        if (!nt)
            continue;
        nt->ids = others(r, NULL, &nt->n);
        nt->data = cJSON_CreateObject();
        cJSON_AddStringToObject(nt->data, "user", name);
        cJSON_AddStringToObject(nt->data, "action", "left");
        cJSON_AddStringToObject(nt->data, "room", r->name);
        cJSON_AddNumberToObject(nt->data, "members", (double)r->nmembers);
        nt->next = notes;
        notes = nt;
    }
    for (chat_client **pc = &clients; *pc; pc = &(*pc)->next) {
        if (strcmp((*pc)->client_id, client_id) == 0) {
            chat_client *c = *pc;
            *pc = c->next;
            free(c->client_id);
            free(c->username);
            free(c);
            break;
        }
    }
    pthread_mutex_unlock(&lock);

    while (notes) {
        note *nt = notes;
        notes = nt->next;
        send_and_free(ws, nt->ids, nt->n, "room_update", nt->data);
        cJSON_Delete(nt->data);
        free(nt);
    }
    daebus_log(DAEBUS_LOG_INFO, "rooms", "client disconnected: %s", client_id);
}

DAEBUS_SOCKET_DISCONNECT(rooms_on_disconnect, .bp = &daebus_rooms_bp)
{
    daebus_rooms_client_gone(req_ws(req), client_id);
    return NULL;
}

/* ---- register / list_rooms ---- */

DAEBUS_SOCKET_REGISTER(rooms_register, .bp = &daebus_rooms_bp)
{
    daebus_rooms_options o;
    daebus_rooms_get_options(&o);
    char *name, err[96];
    field_rc rc = get_field(req_data(req), "username", o.max_name_bytes, true, &name);
    if (rc != FIELD_OK)
        return refuse(client_id, name_error(rc, "Username", o.max_name_bytes, err, sizeof err));
    /* A name that is another client's id would catch notify_user calls meant
     * for that client once it is gone. */
    daebus_ws *ws = req_ws(req);
    if (strcmp(name, client_id) != 0 && ws && daebus_ws_is_client_connected(ws, name)) {
        free(name);
        return refuse(client_id, "Username is already taken");
    }

    pthread_mutex_lock(&lock);
    if (name_holder(name, client_id)) {
        pthread_mutex_unlock(&lock);
        free(name);
        return refuse(client_id, "Username is already taken");
    }
    chat_client *c = get_client(client_id);
    char *dup = c ? strdup(name) : NULL;
    if (!dup) {
        pthread_mutex_unlock(&lock);
        free(name);
        return error_reply("Out of memory");
    }
    free(c->username);
    c->username = dup;
    c->registered_at = now_wall();
    char *next_after;
    cJSON *available = room_page(NULL, cfg.list_max, PAGE_NAMES, &next_after);
    size_t total = nrooms_total;
    pthread_mutex_unlock(&lock);

    remember_username(ws, client_id, name);
    daebus_log(DAEBUS_LOG_INFO, "rooms", "user registered: %s (%s)", name, client_id);
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "status", "registered");
    cJSON_AddStringToObject(out, "username", name);
    cJSON_AddItemToObject(out, "available_rooms", available);
    cJSON_AddNumberToObject(out, "room_count", (double)total);
    if (next_after)
        add_next_after(out, next_after);
    free(name);
    return out;
}

DAEBUS_SOCKET(rooms_list, "list_rooms", .bp = &daebus_rooms_bp)
{
    const cJSON *data = req_data(req);
    const cJSON *after = cJSON_GetObjectItemCaseSensitive(data, "after");
    const cJSON *limit = cJSON_GetObjectItemCaseSensitive(data, "limit");
    if (after && !cJSON_IsNull(after) && !cJSON_IsString(after))
        return refuse(client_id, "after must be a room name");
    if (limit && (!cJSON_IsNumber(limit) || limit->valuedouble < 1))
        return refuse(client_id, "limit must be a positive number");
    pthread_mutex_lock(&lock);
    size_t n = cfg.list_max;
    if (limit && limit->valuedouble < (double)n)
        n = (size_t)limit->valuedouble;
    char *next_after;
    cJSON *list =
        room_page(cJSON_IsString(after) ? after->valuestring : NULL, n, PAGE_MEMBERS, &next_after);
    size_t total = nrooms_total;
    pthread_mutex_unlock(&lock);
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "status", "ok");
    cJSON_AddItemToObject(out, "rooms", list);
    cJSON_AddNumberToObject(out, "room_count", (double)total);
    add_next_after(out, next_after);
    return out;
}

/* ---- join / leave ---- */

DAEBUS_SOCKET(rooms_join, "join_room", .bp = &daebus_rooms_bp)
{
    daebus_rooms_options o;
    daebus_rooms_get_options(&o);
    char *name, err[128];
    field_rc rc = get_field(req_data(req), "room", o.max_name_bytes, true, &name);
    if (rc != FIELD_OK)
        return refuse(client_id, name_error(rc, "Room name", o.max_name_bytes, err, sizeof err));

    pthread_mutex_lock(&lock);
    char *username = strdup(username_of(client_id));
    chat_client *c = get_client(client_id);
    chat_room *r = find_room(name);
    bool already = r && is_member(r, client_id);
    const char *refusal = NULL;
    if (!username || !c) {
        refusal = "Out of memory";
    } else if (!already && c->nrooms >= cfg.max_rooms_per_client) {
        snprintf(err, sizeof err, "Too many rooms for this client (max %zu): leave one first",
                 cfg.max_rooms_per_client);
        refusal = err;
    } else if (!r && nrooms_total >= cfg.max_rooms) {
        snprintf(err, sizeof err, "Too many rooms (max %zu): join an existing room", cfg.max_rooms);
        refusal = err;
    }
    bool created = false;
    if (!refusal && !r) {
        r = create_room(name);
        created = r != NULL;
        if (!r)
            refusal = "Out of memory";
    }
    if (!refusal && !already) {
        if (add_member(r, client_id) != 0) {
            if (created)
                delete_room(r);
            refusal = "Out of memory";
        } else {
            c->nrooms++;
        }
    }
    if (refusal) {
        pthread_mutex_unlock(&lock);
        free(username);
        free(name);
        return refuse(client_id, refusal);
    }
    size_t n = 0;
    char **ids = already ? NULL : others(r, client_id, &n);
    size_t members = r->nmembers;
    /* The newest join_history messages within DAEBUS_ROOMS_JOIN_BYTES of text. */
    const chat_msg *from = NULL;
    size_t count = 0, text = 0;
    for (const chat_msg *m = r->last; m && count < cfg.join_history; m = m->prev) {
        size_t t = strlen(m->text) + strlen(m->sender);
        if (count > 0 && text + t > DAEBUS_ROOMS_JOIN_BYTES)
            break;
        text += t;
        count++;
        from = m;
    }
    cJSON *history = cJSON_CreateArray();
    for (const chat_msg *m = from; m; m = m->next)
        cJSON_AddItemToArray(history, msg_json(m));
    pthread_mutex_unlock(&lock);

    if (created)
        daebus_log(DAEBUS_LOG_INFO, "rooms", "room created: %s by %s", name, username);
    if (!already) {
        cJSON *upd = cJSON_CreateObject();
        cJSON_AddStringToObject(upd, "user", username);
        cJSON_AddStringToObject(upd, "action", "joined");
        cJSON_AddStringToObject(upd, "room", name);
        cJSON_AddNumberToObject(upd, "members", (double)members);
        send_and_free(req_ws(req), ids, n, "room_update", upd);
        cJSON_Delete(upd);
        daebus_log(DAEBUS_LOG_INFO, "rooms", "user %s joined room: %s", username, name);
    }

    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "status", "joined");
    cJSON_AddStringToObject(out, "room", name);
    cJSON_AddNumberToObject(out, "members", (double)members);
    cJSON_AddItemToObject(out, "history", history);
    free(username);
    free(name);
    return out;
}

DAEBUS_SOCKET(rooms_leave, "leave_room", .bp = &daebus_rooms_bp)
{
    daebus_rooms_options o;
    daebus_rooms_get_options(&o);
    char *name;
    if (get_field(req_data(req), "room", o.max_name_bytes, false, &name) != FIELD_OK)
        return error_reply("Room name is required");
    pthread_mutex_lock(&lock);
    chat_room *r = find_room(name);
    if (!r || !remove_member(r, client_id)) {
        pthread_mutex_unlock(&lock);
        free(name);
        return error_reply("Not a member of this room");
    }
    chat_client *c = find_client(client_id);
    if (c && c->nrooms > 0)
        c->nrooms--;
    char *username = strdup(username_of(client_id));
    size_t n = 0;
    char **ids = others(r, NULL, &n);
    size_t members = r->nmembers;
    if (members == 0)
        delete_room(r);
    pthread_mutex_unlock(&lock);

    if (n > 0 && username) {
        cJSON *upd = cJSON_CreateObject();
        cJSON_AddStringToObject(upd, "user", username);
        cJSON_AddStringToObject(upd, "action", "left");
        cJSON_AddStringToObject(upd, "room", name);
        cJSON_AddNumberToObject(upd, "members", (double)members);
        send_and_free(req_ws(req), ids, n, "room_update", upd);
        cJSON_Delete(upd);
    } else {
        send_and_free(NULL, ids, n, NULL, NULL);
    }
    free(username);

    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "status", "left");
    cJSON_AddStringToObject(out, "room", name);
    free(name);
    return out;
}

/* ---- chat_message ---- */

DAEBUS_SOCKET(rooms_chat_message, "chat_message", .bp = &daebus_rooms_bp)
{
    daebus_rooms_options o;
    daebus_rooms_get_options(&o);
    const cJSON *data = req_data(req);
    char *room_name, *message, err[96];
    field_rc rrc = get_field(data, "room", o.max_name_bytes, false, &room_name);
    field_rc mrc = get_field(data, "message", o.max_message_bytes, false, &message);
    if (mrc == FIELD_TOO_LONG) {
        free(room_name);
        snprintf(err, sizeof err, "Message is too long (max %zu bytes)", o.max_message_bytes);
        return refuse(client_id, err);
    }
    if (rrc == FIELD_NOMEM || mrc == FIELD_NOMEM || rrc != FIELD_OK || mrc != FIELD_OK) {
        bool nomem = rrc == FIELD_NOMEM || mrc == FIELD_NOMEM;
        free(room_name);
        free(message);
        return error_reply(nomem ? "Out of memory" : "Room and message are required");
    }

    double ts = now_wall();
    char id[160];
    snprintf(id, sizeof id, "msg_%.6f_%llu_%.8s", ts,
             (unsigned long long)atomic_fetch_add(&msg_seq, 1) + 1, client_id);

    pthread_mutex_lock(&lock);
    chat_room *r = find_room(room_name);
    if (!r || !is_member(r, client_id)) {
        pthread_mutex_unlock(&lock);
        free(room_name);
        free(message);
        return error_reply(r ? "Not a member of this room" : "Room does not exist");
    }
    const char *sender = username_of(client_id);
    cJSON *copy = cJSON_CreateObject();
    cJSON_AddStringToObject(copy, "id", id);
    cJSON_AddStringToObject(copy, "room", room_name);
    cJSON_AddStringToObject(copy, "sender", sender);
    cJSON_AddStringToObject(copy, "text", message);
    cJSON_AddNumberToObject(copy, "timestamp", ts);
    if (!add_msg(r, id, sender, message, ts)) {
        pthread_mutex_unlock(&lock);
        cJSON_Delete(copy);
        free(room_name);
        free(message);
        return error_reply("Out of memory");
    }
    messages_total++;
    size_t n;
    char **ids = others(r, client_id, &n);
    pthread_mutex_unlock(&lock);

    send_and_free(req_ws(req), ids, n, "new_message", copy);
    cJSON_Delete(copy);
    DAEBUS_LOG_DEBUGF("rooms", "message in %s: %zu bytes", room_name, strlen(message));
    free(room_name);
    free(message);

    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "status", "sent");
    cJSON_AddStringToObject(out, "message_id", id);
    cJSON_AddNumberToObject(out, "timestamp", ts);
    return out;
}

/* ---- HTTP ---- */

DAEBUS_ROUTE(rooms_list_route, "/api/rooms", .bp = &daebus_rooms_bp)
{
    const char *after = daebus_http_request_query(req, "after");
    const char *limit_text = daebus_http_request_query(req, "limit");
    pthread_mutex_lock(&lock);
    size_t limit = cfg.list_max;
    if (limit_text) {
        char *end = NULL;
        unsigned long long v = strtoull(limit_text, &end, 10);
        if (end != limit_text && !*end && v > 0 && v < limit)
            limit = (size_t)v;
    }
    char *next_after;
    cJSON *list = room_page(after && *after ? after : NULL, limit, PAGE_FULL, &next_after);
    size_t total = nrooms_total;
    pthread_mutex_unlock(&lock);
    cJSON *out = cJSON_CreateObject();
    cJSON_AddNumberToObject(out, "count", (double)cJSON_GetArraySize(list));
    cJSON_AddNumberToObject(out, "total", (double)total);
    cJSON_AddItemToObject(out, "rooms", list);
    add_next_after(out, next_after);
    return daebus_http_send_json_take(res, 200, out);
}

/* ---- public helpers ---- */

void daebus_rooms_get_stats(daebus_rooms_stats *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&lock);
    for (chat_client *c = clients; c; c = c->next)
        if (c->username)
            out->users++;
    for (chat_room *r = rooms; r; r = r->next) {
        out->rooms++;
        out->members += r->nmembers;
    }
    out->messages = gmsgs;
    out->history_bytes = gbytes;
    out->messages_total = messages_total;
    pthread_mutex_unlock(&lock);
    out->refused = atomic_load(&refused_total);
}

void daebus_rooms_reset(void)
{
    pthread_mutex_lock(&lock);
    while (rooms) {
        chat_room *r = rooms;
        rooms = r->next;
        free_room(r);
    }
    nrooms_total = 0;
    while (clients) {
        chat_client *c = clients;
        clients = c->next;
        free(c->client_id);
        free(c->username);
        free(c);
    }
    messages_total = 0;
    pthread_mutex_unlock(&lock);
}
