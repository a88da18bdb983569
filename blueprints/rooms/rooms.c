/* rooms.c - the rooms blueprint: the Daebus guide's chat rooms in C.
 *
 * Rooms and users live in two linked lists behind one mutex. A handler
 * changes the state under the mutex, copies the recipient ids it needs, and
 * sends to them after unlocking, so a slow client never holds the lock. Room
 * history is a cJSON array per room trimmed to DAEBUS_ROOMS_HISTORY; the
 * objects are duplicated when they leave the lock (cJSON is not thread-safe
 * as a whole, but separate trees are).
 */
#include "rooms/rooms.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

DAEBUS_BLUEPRINT(daebus_rooms_bp, "rooms");

typedef struct chat_room {
    char *name;
    double created_at;
    char *created_by;
    char **members; /* client ids */
    size_t nmembers, cap;
    cJSON *messages; /* array, oldest first */
    struct chat_room *next;
} chat_room;

typedef struct chat_user {
    char *client_id;
    char *username;
    double registered_at;
    struct chat_user *next;
} chat_user;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static chat_room *rooms;
static chat_user *users;
static unsigned long long messages_total;
static atomic_ullong msg_seq;

static double now_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
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

/* ---- state helpers (call with lock held) ---- */

static chat_user *find_user(const char *client_id)
{
    for (chat_user *u = users; u; u = u->next)
        if (strcmp(u->client_id, client_id) == 0)
            return u;
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
    chat_user *u = find_user(client_id);
    return u ? u->username : "Anonymous";
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
    if (is_member(r, client_id))
        return 0;
    if (r->nmembers == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 8;
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

static chat_room *create_room(const char *name, const char *creator)
{
    chat_room *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->name = strdup(name);
    r->created_by = strdup(creator);
    r->messages = cJSON_CreateArray();
    r->created_at = now_wall();
    if (!r->name || !r->created_by || !r->messages) {
        free(r->name);
        free(r->created_by);
        cJSON_Delete(r->messages);
        free(r);
        return NULL;
    }
    r->next = rooms;
    rooms = r;
    return r;
}

static void free_room(chat_room *r)
{
    for (size_t i = 0; i < r->nmembers; i++)
        free(r->members[i]);
    free(r->members);
    free(r->name);
    free(r->created_by);
    cJSON_Delete(r->messages);
    free(r);
}

static cJSON *error_reply(const char *text)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "error", text);
    cJSON_AddStringToObject(o, "status", "error");
    return o;
}

/* A string field of data that is non-empty after trimming spaces, copied into
 * buf; NULL when missing, not a string, empty or longer than max. */
static const char *field(const cJSON *data, const char *key, char *buf, size_t max, bool *toolong)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(data, key);
    *toolong = false;
    if (!cJSON_IsString(v) || !v->valuestring)
        return NULL;
    const char *s = v->valuestring;
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
        s++;
    size_t len = strlen(s);
    while (len > 0 &&
           (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\n' || s[len - 1] == '\r'))
        len--;
    if (len == 0)
        return NULL;
    if (len > max) {
        *toolong = true;
        return NULL;
    }
    memcpy(buf, s, len);
    buf[len] = '\0';
    return buf;
}

/* ---- connect / disconnect ---- */

DAEBUS_SOCKET_CONNECT(rooms_on_connect, .bp = &daebus_rooms_bp)
{
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
    for (chat_room *r = rooms; r; r = r->next) {
        if (!remove_member(r, client_id) || r->nmembers == 0)
            continue;
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
    for (chat_user **pu = &users; *pu; pu = &(*pu)->next) {
        if (strcmp((*pu)->client_id, client_id) == 0) {
            chat_user *u = *pu;
            *pu = u->next;
            free(u->client_id);
            free(u->username);
            free(u);
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

/* ---- register ---- */

DAEBUS_SOCKET_REGISTER(rooms_register, .bp = &daebus_rooms_bp)
{
    char name[DAEBUS_ROOMS_MAX_NAME + 1];
    bool toolong;
    if (!field(req_data(req), "username", name, DAEBUS_ROOMS_MAX_NAME, &toolong))
        return error_reply(toolong ? "Username is too long" : "Username is required");

    cJSON *available = cJSON_CreateArray();
    pthread_mutex_lock(&lock);
    chat_user *u = find_user(client_id);
    if (!u) {
        u = calloc(1, sizeof *u);
        if (u && !(u->client_id = strdup(client_id))) {
            free(u);
            u = NULL;
        }
        if (u) {
            u->next = users;
            users = u;
        }
    }
    char *dup = u ? strdup(name) : NULL;
    if (dup) {
        free(u->username);
        u->username = dup;
        u->registered_at = now_wall();
    }
    for (chat_room *r = rooms; r; r = r->next)
        cJSON_AddItemToArray(available, cJSON_CreateString(r->name));
    pthread_mutex_unlock(&lock);
    if (!dup) {
        cJSON_Delete(available);
        return error_reply("Out of memory");
    }

    remember_username(req_ws(req), client_id, name);
    daebus_log(DAEBUS_LOG_INFO, "rooms", "user registered: %s (%s)", name, client_id);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "registered");
    cJSON_AddStringToObject(o, "username", name);
    cJSON_AddItemToObject(o, "available_rooms", available);
    return o;
}

/* ---- join / leave ---- */

DAEBUS_SOCKET(rooms_join, "join_room", .bp = &daebus_rooms_bp)
{
    char name[DAEBUS_ROOMS_MAX_NAME + 1];
    bool toolong;
    if (!field(req_data(req), "room", name, DAEBUS_ROOMS_MAX_NAME, &toolong))
        return error_reply(toolong ? "Room name is too long" : "Room name is required");

    pthread_mutex_lock(&lock);
    const char *who = username_of(client_id);
    char username[DAEBUS_ROOMS_MAX_NAME + 16];
    snprintf(username, sizeof username, "%s", who);
    chat_room *r = find_room(name);
    if (!r) {
        r = create_room(name, client_id);
        if (r)
            daebus_log(DAEBUS_LOG_INFO, "rooms", "room created: %s by %s", name, username);
    }
    if (!r || add_member(r, client_id) != 0) {
        pthread_mutex_unlock(&lock);
        return error_reply("Out of memory");
    }
    size_t n;
    char **ids = others(r, client_id, &n);
    size_t members = r->nmembers;
    cJSON *history = cJSON_CreateArray();
    int total = cJSON_GetArraySize(r->messages);
    int from = total > DAEBUS_ROOMS_JOIN_HISTORY ? total - DAEBUS_ROOMS_JOIN_HISTORY : 0;
    for (int i = from; i < total; i++)
        cJSON_AddItemToArray(history, cJSON_Duplicate(cJSON_GetArrayItem(r->messages, i), 1));
    pthread_mutex_unlock(&lock);

    cJSON *upd = cJSON_CreateObject();
    cJSON_AddStringToObject(upd, "user", username);
    cJSON_AddStringToObject(upd, "action", "joined");
    cJSON_AddStringToObject(upd, "room", name);
    cJSON_AddNumberToObject(upd, "members", (double)members);
    send_and_free(req_ws(req), ids, n, "room_update", upd);
    cJSON_Delete(upd);

    daebus_log(DAEBUS_LOG_INFO, "rooms", "user %s joined room: %s", username, name);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "joined");
    cJSON_AddStringToObject(o, "room", name);
    cJSON_AddNumberToObject(o, "members", (double)members);
    cJSON_AddItemToObject(o, "history", history);
    return o;
}

DAEBUS_SOCKET(rooms_leave, "leave_room", .bp = &daebus_rooms_bp)
{
    char name[DAEBUS_ROOMS_MAX_NAME + 1];
    bool toolong;
    if (!field(req_data(req), "room", name, DAEBUS_ROOMS_MAX_NAME, &toolong))
        return error_reply("Room name is required");
    pthread_mutex_lock(&lock);
    chat_room *r = find_room(name);
    if (!r || !remove_member(r, client_id)) {
        pthread_mutex_unlock(&lock);
        return error_reply("Not a member of this room");
    }
    char username[DAEBUS_ROOMS_MAX_NAME + 16];
    snprintf(username, sizeof username, "%s", username_of(client_id));
    size_t n;
    char **ids = others(r, NULL, &n);
    size_t members = r->nmembers;
    pthread_mutex_unlock(&lock);

    cJSON *upd = cJSON_CreateObject();
    cJSON_AddStringToObject(upd, "user", username);
    cJSON_AddStringToObject(upd, "action", "left");
    cJSON_AddStringToObject(upd, "room", name);
    cJSON_AddNumberToObject(upd, "members", (double)members);
    send_and_free(req_ws(req), ids, n, "room_update", upd);
    cJSON_Delete(upd);

    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "left");
    cJSON_AddStringToObject(o, "room", name);
    return o;
}

/* ---- chat_message ---- */

DAEBUS_SOCKET(rooms_chat_message, "chat_message", .bp = &daebus_rooms_bp)
{
    const cJSON *data = req_data(req);
    char name[DAEBUS_ROOMS_MAX_NAME + 1];
    bool toolong, text_toolong;
    const char *room_name = field(data, "room", name, DAEBUS_ROOMS_MAX_NAME, &toolong);
    char *text = malloc(DAEBUS_ROOMS_MAX_TEXT + 1);
    if (!text)
        return error_reply("Out of memory");
    const char *message = field(data, "message", text, DAEBUS_ROOMS_MAX_TEXT, &text_toolong);
    if (text_toolong) {
        free(text);
        return error_reply("Message is too long");
    }
    if (!room_name || !message) {
        free(text);
        return error_reply("Room and message are required");
    }

    double ts = now_wall();
    char id[160];
    snprintf(id, sizeof id, "msg_%.6f_%llu_%.8s", ts,
             (unsigned long long)atomic_fetch_add(&msg_seq, 1) + 1, client_id);

    pthread_mutex_lock(&lock);
    chat_room *r = find_room(room_name);
    if (!r || !is_member(r, client_id)) {
        pthread_mutex_unlock(&lock);
        free(text);
        return error_reply(r ? "Not a member of this room" : "Room does not exist");
    }
    cJSON *msg = cJSON_CreateObject();
    cJSON_AddStringToObject(msg, "id", id);
    cJSON_AddStringToObject(msg, "room", room_name);
    cJSON_AddStringToObject(msg, "sender", username_of(client_id));
    cJSON_AddStringToObject(msg, "text", message);
    cJSON_AddNumberToObject(msg, "timestamp", ts);
    cJSON *copy = cJSON_Duplicate(msg, 1);
    cJSON_AddItemToArray(r->messages, msg);
    while (cJSON_GetArraySize(r->messages) > DAEBUS_ROOMS_HISTORY)
        cJSON_DeleteItemFromArray(r->messages, 0);
    messages_total++;
    size_t n;
    char **ids = others(r, client_id, &n);
    pthread_mutex_unlock(&lock);

    send_and_free(req_ws(req), ids, n, "new_message", copy);
    cJSON_Delete(copy);
    daebus_log(DAEBUS_LOG_DEBUG, "rooms", "message in %s: %.30s", room_name, message);
    free(text);

    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "sent");
    cJSON_AddStringToObject(o, "message_id", id);
    cJSON_AddNumberToObject(o, "timestamp", ts);
    return o;
}

/* ---- HTTP ---- */

DAEBUS_ROUTE(rooms_list_route, "/api/rooms", .bp = &daebus_rooms_bp)
{
    cJSON *list = cJSON_CreateArray();
    size_t count = 0;
    pthread_mutex_lock(&lock);
    for (chat_room *r = rooms; r; r = r->next) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", r->name);
        cJSON_AddNumberToObject(o, "members", (double)r->nmembers);
        cJSON_AddNumberToObject(o, "message_count", cJSON_GetArraySize(r->messages));
        cJSON_AddNumberToObject(o, "created_at", r->created_at);
        cJSON_AddItemToArray(list, o);
        count++;
    }
    pthread_mutex_unlock(&lock);
    cJSON *out = cJSON_CreateObject();
    cJSON_AddNumberToObject(out, "count", (double)count);
    cJSON_AddItemToObject(out, "rooms", list);
    return daebus_http_send_json_take(res, 200, out);
}

/* ---- public helpers ---- */

void daebus_rooms_get_stats(daebus_rooms_stats *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&lock);
    for (chat_user *u = users; u; u = u->next)
        out->users++;
    for (chat_room *r = rooms; r; r = r->next) {
        out->rooms++;
        out->members += r->nmembers;
        out->messages += (size_t)cJSON_GetArraySize(r->messages);
    }
    out->messages_total = messages_total;
    pthread_mutex_unlock(&lock);
}

void daebus_rooms_reset(void)
{
    pthread_mutex_lock(&lock);
    while (rooms) {
        chat_room *r = rooms;
        rooms = r->next;
        free_room(r);
    }
    while (users) {
        chat_user *u = users;
        users = u->next;
        free(u->client_id);
        free(u->username);
        free(u);
    }
    messages_total = 0;
    pthread_mutex_unlock(&lock);
}
