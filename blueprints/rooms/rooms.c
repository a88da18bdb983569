/* rooms.c - the rooms blueprint: the Daebus guide's chat rooms in C, bounded,
 * shared by every replica of the service.
 *
 * The state (rooms, members, history, usernames) lives in Redis
 * (rooms_store.c: keys and scripts); each change is one Lua script, so the
 * bounds hold with any number of replicas. A handler runs its script, then
 * sends to the recipients the script returned through the WebSocket
 * component, which reaches a client on whichever replica holds it. Input
 * checks and error replies are in rooms_check.c.
 *
 * A client's departure (its close, a kick, or its replica's death) comes once
 * per client in the cluster through the component's "client left" path; the
 * departure script is idempotent, so a second call for the same client finds
 * nothing and announces nothing.
 */
#include "rooms/rooms.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "rooms/rooms_channel.h"
#include "rooms/rooms_check.h"
#include "rooms/rooms_store.h"

DAEBUS_BLUEPRINT(daebus_rooms_bp, "rooms");

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
/* The app the blueprint runs in (set at start): the rooms are per process. */
static _Atomic(daebus_app *) the_app;
/* daebus_rooms_register() put the departure on the "client left" hook. */
static atomic_bool hooked;

#define error_reply daebus__rooms_error_reply
#define refuse      daebus__rooms_refuse

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

/* ---- Redis and WebSocket plumbing ---- */

static daebus_ws *req_ws(daebus_ws_request *req)
{
    return daebus_ws_request_ws(req);
}

static const cJSON *req_data(daebus_ws_request *req)
{
    return daebus_ws_request_data(req);
}

/* The reply when the shared state cannot be reached (the bus logged why). */
static cJSON *store_failed(int rc)
{
    if (rc == DAEBUS_ESTATE)
        return error_reply("Rooms unavailable: the service has no running bus");
    if (rc == DAEBUS_EREPLY) /* e.g. Redis out of memory (maxmemory) */
        return error_reply("Rooms unavailable (Redis refused the change); try again later");
    return error_reply("Rooms unavailable (Redis unreachable); try again");
}

/* Runs a rooms script for app; on failure *failure is the error reply. */
static cJSON *run(daebus_app *app, int script, int nargs, const char **args, cJSON **failure)
{
    cJSON *r = NULL;
    int rc = daebus__rooms_eval(app, script, nargs, args, &r);
    *failure = rc == 0 ? NULL : store_failed(rc);
    return r;
}

static const char *str_at(const cJSON *a, int i)
{
    const char *s = cJSON_GetStringValue(cJSON_GetArrayItem(a, i));
    return s ? s : "";
}

static double num_at(const cJSON *a, int i)
{
    const cJSON *v = cJSON_GetArrayItem(a, i);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

/* Sends {"type": type, "data": data} to the client ids of the array ids.
 * *missed (if not NULL): set when a recipient was not reached, e.g. its
 * replica's subscriber is away (reconnecting after a Redis restart: the
 * publish finds no subscriber and the push is lost, without an error).
 * Returns: what daebus_ws_broadcast_to_clients() returned (DAEBUS_ECONN: the
 * members on other replicas were not reached), 0 for nobody. */
static int send_to(daebus_ws *ws, const cJSON *ids, const char *type, const cJSON *data,
                   bool *missed)
{
    int n = cJSON_GetArraySize(ids), rc = 0;
    const char **v = ws && n > 0 ? malloc((size_t)n * sizeof *v) : NULL;
    bool *ok = missed && n > 0 ? calloc((size_t)n, sizeof *ok) : NULL;
    if (!v || (missed && n > 0 && !ok)) {
        free(v);
        free(ok);
        return n > 0 ? DAEBUS_ENOMEM : 0;
    }
    size_t k = 0;
    const cJSON *id;
    cJSON_ArrayForEach(id, ids)
    {
        if (cJSON_IsString(id))
            v[k++] = id->valuestring;
    }
    if (k > 0)
        rc = daebus_ws_broadcast_to_clients(ws, v, k, data, type, ok);
    for (size_t i = 0; ok && i < k; i++)
        if (!ok[i])
            *missed = true;
    free(v);
    free(ok);
    return rc;
}

/* room_update {"user", "action", "room", "members"} to the ids. */
static void send_update(daebus_ws *ws, const cJSON *ids, const char *user, const char *action,
                        const char *room, double members)
{
    if (cJSON_GetArraySize(ids) == 0)
        return;
    cJSON *upd = cJSON_CreateObject();
    cJSON_AddStringToObject(upd, "user", user);
    cJSON_AddStringToObject(upd, "action", action);
    cJSON_AddStringToObject(upd, "room", room);
    cJSON_AddNumberToObject(upd, "members", members);
    send_to(ws, ids, "room_update", upd, NULL);
    cJSON_Delete(upd);
}

static void remember_username(daebus_ws *ws, const char *client_id, const char *name)
{
    cJSON *v = cJSON_CreateString(name);
    if (ws && v)
        daebus_ws_set_client_data(ws, client_id, "username", v);
    cJSON_Delete(v);
}

static void add_next_after(cJSON *o, const char *next_after)
{
    if (next_after)
        cJSON_AddStringToObject(o, "next_after", next_after);
    else
        cJSON_AddNullToObject(o, "next_after");
}

/* detail levels of room_page */
enum { PAGE_NAMES, PAGE_MEMBERS, PAGE_FULL };

/* A page of at most limit rooms sorted by name, after `after` (NULL = from
 * the start). Returns: the script's reply {total, rows, next_after|null}, or
 * NULL with *failure set. */
static cJSON *room_page(daebus_app *app, const char *after, size_t limit, int detail,
                        cJSON **failure)
{
    char n[24], d[4];
    snprintf(n, sizeof n, "%zu", limit);
    snprintf(d, sizeof d, "%d", detail);
    const char *args[] = {after ? after : "", n, d};
    return run(app, DAEBUS__ROOMS_PAGE, 3, args, failure);
}

/* The rows of a page as the replies show them. */
static cJSON *page_rows(const cJSON *page, int detail)
{
    cJSON *list = cJSON_CreateArray();
    const cJSON *row;
    cJSON_ArrayForEach(row, cJSON_GetArrayItem(page, 1))
    {
        if (detail == PAGE_NAMES) {
            cJSON_AddItemToArray(list, cJSON_CreateString(cJSON_GetStringValue(row)));
            continue;
        }
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", str_at(row, 0));
        cJSON_AddNumberToObject(o, "members", num_at(row, 1));
        if (detail == PAGE_FULL) {
            cJSON_AddNumberToObject(o, "message_count", num_at(row, 2));
            cJSON_AddNumberToObject(o, "created_at", strtod(str_at(row, 3), NULL));
        }
        cJSON_AddItemToArray(list, o);
    }
    return list;
}

/* ---- start: the app, the "client left" path ---- */

daebus_app *daebus__rooms_app(void)
{
    return atomic_load(&the_app);
}

DAEBUS_ON_START(rooms_on_start, .bp = &daebus_rooms_bp)
{
    atomic_store(&the_app, app);
    if (!daebus_app_bus(app))
        daebus_log(DAEBUS_LOG_WARNING, "rooms",
                   "no bus attached: the rooms keep their state in Redis through the bus, so "
                   "every rooms request will be refused; attach the bus component");
    return 0;
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
        if (daebus__rooms_refusal_log_slot(&quiet))
            daebus_log(DAEBUS_LOG_WARNING, "rooms",
                       "refusing an upgrade: Origin '%s' is not this page's own (Host '%s'); "
                       "list it in the allowed origins to let it in%s",
                       daebus__rooms_loggable(o, sizeof o, daebus_ws_request_header(req, "Origin")),
                       daebus__rooms_loggable(h, sizeof h, daebus_ws_request_header(req, "Host")),
                       daebus__rooms_quiet_note(quiet));
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
    const char *args[] = {client_id};
    cJSON *failure, *r = run(atomic_load(&the_app), DAEBUS__ROOMS_GONE, 1, args, &failure);
    if (failure) {
        /* Redis unreachable: the membership stays until the client's name is
         * asked for again (rooms_register). One line a second at most: a
         * replica stopping while Redis is away sees all its clients leave. */
        static atomic_llong logged_at;
        static atomic_ullong quiet;
        long long now = (long long)time(NULL), prev = atomic_load(&logged_at);
        cJSON_Delete(failure);
        if (now != prev && atomic_compare_exchange_strong(&logged_at, &prev, now))
            daebus_log(DAEBUS_LOG_WARNING, "rooms",
                       "client %s left but its rooms could not be updated (Redis unreachable; "
                       "%llu more since the last line)",
                       client_id, (unsigned long long)atomic_exchange(&quiet, 0));
        else
            atomic_fetch_add(&quiet, 1);
        return;
    }
    const char *name = str_at(r, 0);
    const cJSON *note;
    cJSON_ArrayForEach(note, cJSON_GetArrayItem(r, 1))
    {
        send_update(ws, cJSON_GetArrayItem(note, 2), name, "left", str_at(note, 0),
                    num_at(note, 1));
    }
    cJSON_Delete(r);
    daebus_log(DAEBUS_LOG_INFO, "rooms", "client disconnected: %s", client_id);
}

DAEBUS_SOCKET_DISCONNECT(rooms_on_disconnect, .bp = &daebus_rooms_bp)
{
    /* With the "client left" hook the departure comes once per client in
     * the cluster through it (right after this handler); without it, here. */
    if (!atomic_load(&hooked))
        daebus_rooms_client_gone(req_ws(req), client_id);
    return NULL;
}

static void rooms_departed(daebus_ws *ws, const char *client_id, const cJSON *metadata,
                           bool replica_died, void *user)
{
    (void)metadata;
    (void)user;
    if (replica_died)
        daebus_log(DAEBUS_LOG_INFO, "rooms", "client %s left with its replica", client_id);
    daebus_rooms_client_gone(ws, client_id);
}

int daebus_rooms_register(daebus_app *app)
{
    daebus_ws *ws = daebus_app_websocket(app);
    if (!ws) {
        daebus_log(DAEBUS_LOG_ERROR, "rooms",
                   "daebus_rooms_register: attach the WebSocket component first");
        return DAEBUS_EORDER;
    }
    int rc = daebus_ws_on_client_departed(ws, rooms_departed, NULL);
    if (rc == 0)
        rc = daebus_app_register_blueprint(app, &daebus_rooms_bp);
    if (rc == 0)
        atomic_store(&hooked, true);
    return rc;
}

/* ---- register / list_rooms ---- */

DAEBUS_SOCKET_REGISTER(rooms_register, .bp = &daebus_rooms_bp)
{
    daebus_rooms_options o;
    daebus_rooms_get_options(&o);
    char *name, err[96];
    daebus__rooms_field_rc rc =
        daebus__rooms_get_field(req_data(req), "username", o.max_name_bytes, true, &name);
    if (rc != DAEBUS__ROOMS_FIELD_OK)
        return refuse(client_id,
                      daebus__rooms_name_error(rc, "Username", o.max_name_bytes, err, sizeof err));
    /* A name that is another client's id would catch notify_user calls meant
     * for that client once it is gone. */
    daebus_ws *ws = req_ws(req);
    if (strcmp(name, client_id) != 0 && ws && daebus_ws_is_client_connected(ws, name)) {
        free(name);
        return refuse(client_id, "Username is already taken");
    }
    char max[24];
    snprintf(max, sizeof max, "%zu", o.list_max);
    const char *args[] = {client_id, name, max};
    cJSON *failure, *r = run(daebus_ws_request_app(req), DAEBUS__ROOMS_REGISTER, 3, args, &failure);
    if (!failure && strcmp(str_at(r, 0), "taken") == 0 && ws &&
        !daebus_ws_is_client_connected(ws, str_at(r, 1))) {
        /* The holder is gone but its departure was never written (Redis was
         * away then): it leaves now, and the name is free. */
        daebus_log(DAEBUS_LOG_INFO, "rooms", "name of departed client %s released", str_at(r, 1));
        daebus_rooms_client_gone(ws, str_at(r, 1));
        cJSON_Delete(r);
        r = run(daebus_ws_request_app(req), DAEBUS__ROOMS_REGISTER, 3, args, &failure);
    }
    if (failure || strcmp(str_at(r, 0), "ok") != 0) {
        free(name);
        cJSON_Delete(r);
        return failure ? failure : refuse(client_id, "Username is already taken");
    }
    remember_username(ws, client_id, name);
    daebus_log(DAEBUS_LOG_INFO, "rooms", "user registered: %s (%s)", name, client_id);
    cJSON *available = cJSON_DetachItemFromArray(r, 2);
    const char *next_after = NULL;
    if ((size_t)cJSON_GetArraySize(available) > o.list_max) {
        cJSON_DeleteItemFromArray(available, (int)o.list_max);
        next_after = cJSON_GetStringValue(cJSON_GetArrayItem(available, (int)o.list_max - 1));
    }
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "status", "registered");
    cJSON_AddStringToObject(out, "username", name);
    cJSON_AddItemToObject(out, "available_rooms", available);
    cJSON_AddNumberToObject(out, "room_count", num_at(r, 1));
    if (next_after)
        add_next_after(out, next_after);
    free(name);
    cJSON_Delete(r);
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
    daebus_rooms_options o;
    daebus_rooms_get_options(&o);
    size_t n = o.list_max;
    if (limit && limit->valuedouble < (double)n)
        n = (size_t)limit->valuedouble;
    cJSON *failure, *page = room_page(daebus_ws_request_app(req),
                                      cJSON_IsString(after) ? after->valuestring : NULL, n,
                                      PAGE_MEMBERS, &failure);
    if (failure)
        return failure;
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "status", "ok");
    cJSON_AddItemToObject(out, "rooms", page_rows(page, PAGE_MEMBERS));
    cJSON_AddNumberToObject(out, "room_count", num_at(page, 0));
    add_next_after(out, cJSON_GetStringValue(cJSON_GetArrayItem(page, 2)));
    cJSON_Delete(page);
    return out;
}

/* ---- join / leave ---- */

/* The join reply's history: the script's JSON texts parsed. */
static cJSON *parse_history(const cJSON *texts)
{
    cJSON *history = cJSON_CreateArray();
    const cJSON *t;
    cJSON_ArrayForEach(t, texts)
    {
        cJSON *m = cJSON_IsString(t) ? cJSON_Parse(t->valuestring) : NULL;
        if (m)
            cJSON_AddItemToArray(history, m);
    }
    return history;
}

/* The refusal text of a join the script refused. */
static const char *join_refusal(const char *status, const daebus_rooms_options *o, char *err,
                                size_t cap)
{
    if (strcmp(status, "per_client") == 0)
        snprintf(err, cap, "Too many rooms for this client (max %zu): leave one first",
                 o->max_rooms_per_client);
    else
        snprintf(err, cap, "Too many rooms (max %zu): join an existing room", o->max_rooms);
    return err;
}

DAEBUS_SOCKET(rooms_join, "join_room", .bp = &daebus_rooms_bp)
{
    daebus_rooms_options o;
    daebus_rooms_get_options(&o);
    char *name, err[128];
    daebus__rooms_field_rc rc =
        daebus__rooms_get_field(req_data(req), "room", o.max_name_bytes, true, &name);
    if (rc != DAEBUS__ROOMS_FIELD_OK)
        return refuse(client_id,
                      daebus__rooms_name_error(rc, "Room name", o.max_name_bytes, err, sizeof err));
    if (daebus__rooms_since_ok(req_data(req)) != 0) {
        free(name);
        return refuse(client_id, "since must be {\"offset\": <integer >= 0>, \"epoch\": <string>}");
    }
    char now[40], max_rooms[24], per_client[24], jh[24], jb[24];
    snprintf(now, sizeof now, "%.6f", now_wall());
    snprintf(max_rooms, sizeof max_rooms, "%zu", o.max_rooms);
    snprintf(per_client, sizeof per_client, "%zu", o.max_rooms_per_client);
    snprintf(jh, sizeof jh, "%zu", o.join_history);
    snprintf(jb, sizeof jb, "%u", DAEBUS_ROOMS_JOIN_BYTES);
    const char *args[] = {client_id, name, now, max_rooms, per_client, jh, jb};
    /* The channel first, then the store: a message sent between the two
     * reaches the new member (the store's history in the reply may hold it
     * too: clients tell them apart by id), none is lost. "since": what the
     * client missed is queued now, before this handler's reply. */
    bool following = daebus__rooms_following(req_ws(req), client_id, name);
    cJSON *info = cJSON_CreateObject();
    daebus__rooms_subscribe(req_ws(req), client_id, name, req_data(req), info);
    cJSON *failure, *r = run(daebus_ws_request_app(req), DAEBUS__ROOMS_JOIN, 7, args, &failure);
    if (failure || strcmp(str_at(r, 0), "ok") != 0) {
        if (!following) /* not a member: no feed */
            daebus__rooms_unsubscribe(req_ws(req), client_id, name);
        cJSON *out =
            failure ? failure : refuse(client_id, join_refusal(str_at(r, 0), &o, err, sizeof err));
        cJSON_Delete(info);
        cJSON_Delete(r);
        free(name);
        return out;
    }
    bool already = num_at(r, 1) != 0;
    double members = num_at(r, 3);
    const char *username = str_at(r, 6);
    if (num_at(r, 2) != 0)
        daebus_log(DAEBUS_LOG_INFO, "rooms", "room created: %s by %s", name, username);
    if (!already) {
        send_update(req_ws(req), cJSON_GetArrayItem(r, 5), username, "joined", name, members);
        daebus_log(DAEBUS_LOG_INFO, "rooms", "user %s joined room: %s", username, name);
    }
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "status", "joined");
    cJSON_AddStringToObject(out, "room", name);
    cJSON_AddNumberToObject(out, "members", members);
    cJSON_AddItemToObject(out, "history", parse_history(cJSON_GetArrayItem(r, 4)));
    const cJSON *item; /* the channel's "recovered", "offset", "epoch" */
    cJSON_ArrayForEach(item, info)
    {
        cJSON_AddItemToObject(out, item->string, cJSON_Duplicate(item, true));
    }
    cJSON_Delete(info);
    cJSON_Delete(r);
    free(name);
    return out;
}

DAEBUS_SOCKET(rooms_leave, "leave_room", .bp = &daebus_rooms_bp)
{
    daebus_rooms_options o;
    daebus_rooms_get_options(&o);
    char *name;
    if (daebus__rooms_get_field(req_data(req), "room", o.max_name_bytes, false, &name) !=
        DAEBUS__ROOMS_FIELD_OK)
        return error_reply("Room name is required");
    const char *args[] = {client_id, name};
    cJSON *failure, *r = run(daebus_ws_request_app(req), DAEBUS__ROOMS_LEAVE, 2, args, &failure);
    if (failure || strcmp(str_at(r, 0), "ok") != 0) {
        cJSON_Delete(r);
        free(name);
        return failure ? failure : error_reply("Not a member of this room");
    }
    send_update(req_ws(req), cJSON_GetArrayItem(r, 2), str_at(r, 3), "left", name, num_at(r, 1));
    daebus__rooms_unsubscribe(req_ws(req), client_id, name);
    cJSON_Delete(r);
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
    daebus__rooms_field_rc rrc =
        daebus__rooms_get_field(data, "room", o.max_name_bytes, false, &room_name);
    daebus__rooms_field_rc mrc =
        daebus__rooms_get_field(data, "message", o.max_message_bytes, false, &message);
    if (mrc == DAEBUS__ROOMS_FIELD_TOO_LONG) {
        free(room_name);
        snprintf(err, sizeof err, "Message is too long (max %zu bytes)", o.max_message_bytes);
        return refuse(client_id, err);
    }
    if (rrc != DAEBUS__ROOMS_FIELD_OK || mrc != DAEBUS__ROOMS_FIELD_OK) {
        bool nomem = rrc == DAEBUS__ROOMS_FIELD_NOMEM || mrc == DAEBUS__ROOMS_FIELD_NOMEM;
        free(room_name);
        free(message);
        return error_reply(nomem ? "Out of memory" : "Room and message are required");
    }
    /* The timestamp as the history keeps it (microseconds), the same in
     * every copy of the message. */
    char ts_text[40], hm[24], hb[24], ht[24];
    snprintf(ts_text, sizeof ts_text, "%.6f", now_wall());
    double ts = strtod(ts_text, NULL);
    snprintf(hm, sizeof hm, "%zu", o.history_messages);
    snprintf(hb, sizeof hb, "%zu", o.history_bytes);
    snprintf(ht, sizeof ht, "%zu", o.history_total_bytes);
    const char *args[] = {client_id, room_name, message, ts_text, hm, hb, ht};
    cJSON *failure, *r = run(daebus_ws_request_app(req), DAEBUS__ROOMS_CHAT, 7, args, &failure);
    const char *status = str_at(r, 0);
    if (failure || strcmp(status, "ok") != 0) {
        if (!failure)
            failure = error_reply(strcmp(status, "no_room") == 0 ? "Room does not exist"
                                                                 : "Not a member of this room");
        cJSON_Delete(r);
        free(room_name);
        free(message);
        return failure;
    }
    const char *id = str_at(r, 1);
    cJSON *copy = cJSON_CreateObject();
    cJSON_AddStringToObject(copy, "id", id);
    cJSON_AddStringToObject(copy, "room", room_name);
    cJSON_AddStringToObject(copy, "sender", str_at(r, 2));
    cJSON_AddStringToObject(copy, "text", message);
    cJSON_AddNumberToObject(copy, "timestamp", ts);
    /* One publish on the room's channel: every member but the sender, on
     * every replica, in the one order of the channel. */
    int sent = daebus__rooms_publish(req_ws(req), room_name, copy, client_id);
    cJSON_Delete(copy);
    DAEBUS_LOG_DEBUGF("rooms", "message in %s: %zu bytes", room_name, strlen(message));
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "status", "sent");
    cJSON_AddStringToObject(out, "message_id", id);
    cJSON_AddNumberToObject(out, "timestamp", ts);
    if (sent == DAEBUS_ECONN) /* kept in the room's history (join reply) */
        cJSON_AddStringToObject(out, "warning",
                                "Members were not reached (Redis unreachable); the message is "
                                "kept in the room's history");
    else if (sent < 0)
        cJSON_AddStringToObject(out, "warning", "Members were not reached");
    cJSON_Delete(r);
    free(room_name);
    free(message);
    return out;
}

/* ---- direct_message ---- */

DAEBUS_SOCKET(rooms_direct_message, "direct_message", .bp = &daebus_rooms_bp)
{
    daebus_rooms_options o;
    daebus_rooms_get_options(&o);
    const cJSON *data = req_data(req);
    char *to, *message, err[96];
    daebus__rooms_field_rc trc = daebus__rooms_get_field(data, "to", o.max_name_bytes, false, &to);
    daebus__rooms_field_rc mrc =
        daebus__rooms_get_field(data, "message", o.max_message_bytes, false, &message);
    if (trc != DAEBUS__ROOMS_FIELD_OK || mrc != DAEBUS__ROOMS_FIELD_OK) {
        free(to);
        free(message);
        if (mrc == DAEBUS__ROOMS_FIELD_TOO_LONG) {
            snprintf(err, sizeof err, "Message is too long (max %zu bytes)", o.max_message_bytes);
            return refuse(client_id, err);
        }
        return error_reply("Recipient and message are required");
    }
    const char *args[] = {client_id, to};
    cJSON *failure, *r = run(daebus_ws_request_app(req), DAEBUS__ROOMS_DIRECT, 2, args, &failure);
    const char *sender = cJSON_GetStringValue(cJSON_GetArrayItem(r, 0));
    const char *target = cJSON_GetStringValue(cJSON_GetArrayItem(r, 1));
    daebus_ws *ws = req_ws(req);
    if (!failure && !target && daebus_ws_is_client_connected(ws, to))
        target = to; /* a client id */
    if (failure || !sender || !target) {
        if (!failure && !sender)
            failure = error_reply("Register a username first");
        else if (!failure) {
            snprintf(err, sizeof err, "User %.64s not connected", to);
            failure = error_reply(err);
        }
        cJSON_Delete(r);
        free(to);
        free(message);
        return failure;
    }
    char ts_text[40], id[200];
    snprintf(ts_text, sizeof ts_text, "%.6f", now_wall());
    double ts = strtod(ts_text, NULL);
    static atomic_ullong dm_seq;
    snprintf(id, sizeof id, "dm_%s_%llu_%.8s_%.40s", ts_text,
             (unsigned long long)atomic_fetch_add(&dm_seq, 1) + 1, client_id,
             daebus_app_instance_id(daebus_ws_request_app(req)));
    cJSON *dm = cJSON_CreateObject();
    cJSON_AddStringToObject(dm, "id", id);
    cJSON_AddStringToObject(dm, "from", sender);
    cJSON_AddStringToObject(dm, "from_client_id", client_id);
    cJSON_AddStringToObject(dm, "to", to);
    cJSON_AddStringToObject(dm, "text", message);
    cJSON_AddNumberToObject(dm, "timestamp", ts);
    int rc = daebus_ws_send_to_client(ws, target, dm, "direct_message");
    cJSON_Delete(dm);
    cJSON_Delete(r);
    free(message);
    if (rc < 0) {
        snprintf(err, sizeof err, "User %.64s not reachable (%s)", to, daebus_strerror(rc));
        free(to);
        return error_reply(err);
    }
    free(to);
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "status", "sent");
    cJSON_AddStringToObject(out, "message_id", id);
    cJSON_AddNumberToObject(out, "timestamp", ts);
    return out;
}

/* ---- HTTP ---- */

int daebus_rooms_list(daebus_app *app, const char *after, size_t limit, cJSON **out)
{
    if (!app || !out)
        return DAEBUS_EINVAL;
    daebus_rooms_options o;
    daebus_rooms_get_options(&o);
    if (limit == 0 || limit > o.list_max)
        limit = o.list_max;
    cJSON *failure,
        *page = room_page(app, after && *after ? after : NULL, limit, PAGE_FULL, &failure);
    if (failure) {
        *out = failure;
        return DAEBUS_ECONN;
    }
    cJSON *list = page_rows(page, PAGE_FULL);
    cJSON *r = cJSON_CreateObject();
    cJSON_AddNumberToObject(r, "count", (double)cJSON_GetArraySize(list));
    cJSON_AddNumberToObject(r, "total", num_at(page, 0));
    cJSON_AddItemToObject(r, "rooms", list);
    add_next_after(r, cJSON_GetStringValue(cJSON_GetArrayItem(page, 2)));
    cJSON_Delete(page);
    *out = r;
    return 0;
}

DAEBUS_ROUTE(rooms_list_route, "/api/rooms", .bp = &daebus_rooms_bp)
{
    const char *limit_text = daebus_http_request_query(req, "limit");
    size_t limit = 0;
    if (limit_text) {
        char *end = NULL;
        unsigned long long v = strtoull(limit_text, &end, 10);
        if (end != limit_text && !*end && v > 0 && v <= SIZE_MAX)
            limit = (size_t)v;
    }
    cJSON *out;
    if (daebus_rooms_list(daebus_http_request_app(req), daebus_http_request_query(req, "after"),
                          limit, &out) != 0) {
        cJSON_AddStringToObject(out, "status", "unavailable");
        return daebus_http_send_json_take(res, 503, out);
    }
    return daebus_http_send_json_take(res, 200, out);
}

/* ---- public helpers ---- */

void daebus_rooms_get_stats(daebus_rooms_stats *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof *out);
    daebus_app *app = atomic_load(&the_app);
    if (app && daebus__rooms_store_stats(app, out) != 0)
        memset(out, 0, sizeof *out);
    out->refused = daebus__rooms_refused();
}

void daebus_rooms_reset(void)
{
    atomic_store(&the_app, NULL);
}
