/* ws_channel.c - channels: the local subscription table, delivery, the server API.
 *
 * The table (ws->chans, under ws->ch_lock, a leaf lock) maps a channel to its
 * local subscribers (each holding a reference on its client) and a client id
 * to its channels. A client's subscriptions go with its connection
 * (daebus__ws_channel_client_gone, from the close callback). Delivery
 * serialises the message once into a shared frame and queues it for every
 * local subscriber; ws->ch_deliver_lock (outside c->lock) makes concurrent
 * deliveries of one replica reach every subscriber in one order. In cluster
 * mode a publish goes through Redis and every replica delivers when it comes
 * back (ws_channel_cluster.c).
 */
#include "ws_channel.h"
#include "daebus/json.h"
#include "ws_channel_presence.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <civetweb.h>

#include "hash.h"
#include "ws_client.h"
#include "ws_cluster.h"
#include "ws_io.h"
#include "ws_request.h"

/* A local subscriber: the client (referenced) and the "type" of its frames
 * (NULL: "channel_message"; daebus_ws_subscription). */
typedef struct ws_sub {
    ws_client *c;
    char *type;
} ws_sub;

typedef struct ws_chan {
    char *name;
    ws_sub *subs;
    size_t n, cap;
    uint64_t last_off;   /* history: the last offset delivered here (ws_channel_catchup.c) */
    char last_epoch[48]; /* and its epoch ("": none yet) */
    bool seeded;         /* last_off was read from Redis, not delivered: offsets up to it
                            may still arrive live (then delivered, not dropped) */
} ws_chan;

typedef struct ws_csubs {
    char **names;
    size_t n, cap;
} ws_csubs;

/* A subscription catching up (recovery): its live messages are held here
 * until the history was sent (ws_channel.h, daebus__ws_channel_hold). */
struct ws_chhold {
    const ws_client *c; /* identity only (the caller holds a reference) */
    char *channel;
    ws_frame **f; /* referenced */
    uint64_t *off;
    size_t n, cap;
    bool filter;    /* released: drops live messages up to after (sent from the history) */
    uint64_t after; /* of epoch, until the first live one above it (or of another epoch) */
    char epoch[48];
    struct ws_chhold *next;
};

struct ws_chtable {
    daebus__hash *chans;   /* channel -> ws_chan */
    daebus__hash *clients; /* client id -> ws_csubs */
    ws_chhold *holds;      /* subscriptions catching up */
};

static void holds_drop(struct ws_chtable *t, const ws_client *c);

/* ---- the table (ch_lock held) ---- */

static int grow(void **arr, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap * 2 : 4;
    void *p = realloc(*arr, n * size);
    if (!p)
        return DAEBUS_ENOMEM;
    *arr = p;
    *cap = n;
    return 0;
}

static bool csubs_has(const ws_csubs *cs, const char *name)
{
    for (size_t i = 0; cs && i < cs->n; i++)
        if (strcmp(cs->names[i], name) == 0)
            return true;
    return false;
}

/* The entry of channel name, made when missing. Returns: NULL when out of memory. */
static ws_chan *chan_entry(struct ws_chtable *t, const char *name)
{
    ws_chan *ch = daebus__hash_find(t->chans, name);
    if (ch)
        return ch;
    ch = calloc(1, sizeof *ch);
    if (ch && (ch->name = strdup(name)) && daebus__hash_insert(t->chans, name, ch) == 0)
        return ch;
    if (ch)
        free(ch->name);
    free(ch);
    return NULL;
}

/* The entry of client c, made when missing. Returns: NULL when out of memory. */
static ws_csubs *client_entry(struct ws_chtable *t, const ws_client *c)
{
    ws_csubs *cs = daebus__hash_find(t->clients, c->id);
    if (cs)
        return cs;
    cs = calloc(1, sizeof *cs);
    if (cs && daebus__hash_insert(t->clients, c->id, cs) == 0)
        return cs;
    free(cs);
    return NULL;
}

static void drop_empty_chan(struct ws_chtable *t, const char *name, ws_chan *ch)
{
    if (ch && ch->n == 0) {
        daebus__hash_remove(t->chans, name);
        free(ch->subs);
        free(ch->name);
        free(ch);
    }
}

/* Sets the frame type of c's subscription to ch (type NULL: the default).
 * Returns: 0, DAEBUS_ENOMEM (the type stays). */
static int sub_set_type(ws_chan *ch, const ws_client *c, const char *type)
{
    for (size_t i = 0; ch && i < ch->n; i++) {
        if (ch->subs[i].c != c)
            continue;
        char *copy = type ? strdup(type) : NULL;
        if (type && !copy)
            return DAEBUS_ENOMEM;
        free(ch->subs[i].type);
        ch->subs[i].type = copy;
    }
    return 0;
}

/* Adds c to name with frames of type (NULL: the default). Returns: 0,
 * DAEBUS_EEXIST (already; the type is set), DAEBUS_ENOMEM. */
static int table_add(struct ws_chtable *t, ws_client *c, const char *name, const char *type)
{
    if (csubs_has(daebus__hash_find(t->clients, c->id), name)) {
        int rc = sub_set_type(daebus__hash_find(t->chans, name), c, type);
        return rc ? rc : DAEBUS_EEXIST;
    }
    ws_chan *ch = chan_entry(t, name);
    ws_csubs *cs = ch ? client_entry(t, c) : NULL;
    char *copy = cs ? strdup(name) : NULL;
    char *tcopy = copy && type ? strdup(type) : NULL;
    if (!copy || (type && !tcopy) ||
        grow((void **)&ch->subs, &ch->cap, ch->n + 1, sizeof *ch->subs) ||
        grow((void **)&cs->names, &cs->cap, cs->n + 1, sizeof *cs->names)) {
        free(copy);
        free(tcopy);
        drop_empty_chan(t, name, ch);
        if (cs && cs->n == 0) {
            daebus__hash_remove(t->clients, c->id);
            free(cs->names);
            free(cs);
        }
        return DAEBUS_ENOMEM;
    }
    daebus__ws_client_ref(c);
    ch->subs[ch->n++] = (ws_sub){.c = c, .type = tcopy};
    cs->names[cs->n++] = copy;
    return 0;
}

/* Takes the client who (or, who NULL, the one with that id) out of channel
 * name's subscribers. Returns: it (its reference, for the caller to drop
 * with no lock held), or NULL. */
static ws_client *chan_take(struct ws_chtable *t, const char *name, const char *id,
                            const ws_client *who)
{
    ws_chan *ch = daebus__hash_find(t->chans, name);
    for (size_t i = 0; ch && i < ch->n; i++) {
        ws_client *c = ch->subs[i].c;
        if (who ? c == who : strcmp(c->id, id) == 0) {
            free(ch->subs[i].type);
            memmove(ch->subs + i, ch->subs + i + 1, (ch->n - i - 1) * sizeof *ch->subs);
            ch->n--;
            drop_empty_chan(t, name, ch);
            return c;
        }
    }
    return NULL;
}

/* Removes the subscription of id to name. Returns: the client's reference
 * (drop it with no lock held), or NULL when id was not subscribed. */
static ws_client *table_remove(struct ws_chtable *t, const char *id, const char *name)
{
    ws_csubs *cs = daebus__hash_find(t->clients, id);
    for (size_t i = 0; cs && i < cs->n; i++) {
        if (strcmp(cs->names[i], name) != 0)
            continue;
        free(cs->names[i]);
        cs->names[i] = cs->names[--cs->n];
        if (cs->n == 0) {
            daebus__hash_remove(t->clients, id);
            free(cs->names);
            free(cs);
        }
        return chan_take(t, name, id, NULL);
    }
    return NULL;
}

/* ---- life cycle ---- */

int daebus__ws_channel_init(daebus_ws *ws)
{
    struct ws_chtable *t = calloc(1, sizeof *t);
    if (t) {
        t->chans = daebus__hash_create(64);
        t->clients = daebus__hash_create(64);
    }
    if (!t || !t->chans || !t->clients) {
        if (t) {
            daebus__hash_destroy(t->chans);
            daebus__hash_destroy(t->clients);
        }
        free(t);
        return DAEBUS_ENOMEM;
    }
    ws->chans = t;
    pthread_mutex_init(&ws->ch_lock, NULL);
    pthread_mutex_init(&ws->ch_deliver_lock, NULL);
    return 0;
}

static bool same_value(void *value, void *ctx)
{
    return value == ctx;
}

void daebus__ws_channel_free(daebus_ws *ws)
{
    struct ws_chtable *t = ws->chans;
    if (!t)
        return;
    /* Every client left through its close callback, unless the component
     * never ran its stop: then the entries left go here. */
    void *v;
    while (daebus__hash_values(t->clients, &v, 1) == 1) {
        ws_csubs *cs = v;
        for (size_t i = 0; i < cs->n; i++)
            free(cs->names[i]);
        daebus__hash_take_if(t->clients, same_value, NULL, v);
        free(cs->names);
        free(cs);
    }
    while (daebus__hash_values(t->chans, &v, 1) == 1) {
        ws_chan *ch = v;
        for (size_t i = 0; i < ch->n; i++) {
            daebus__ws_client_unref(ch->subs[i].c);
            free(ch->subs[i].type);
        }
        daebus__hash_remove(t->chans, ch->name);
        free(ch->subs);
        free(ch->name);
        free(ch);
    }
    holds_drop(t, NULL);
    daebus__hash_destroy(t->chans);
    daebus__hash_destroy(t->clients);
    free(t);
    ws->chans = NULL;
    pthread_mutex_destroy(&ws->ch_lock);
    pthread_mutex_destroy(&ws->ch_deliver_lock);
}

void daebus__ws_channel_client_gone(daebus_ws *ws, ws_client *c)
{
    if (!ws->chans)
        return;
    pthread_mutex_lock(&ws->ch_lock);
    holds_drop(ws->chans, c);
    ws_csubs *cs = daebus__hash_remove(ws->chans->clients, c->id);
    size_t n = 0;
    for (size_t i = 0; cs && i < cs->n; i++)
        n += chan_take(ws->chans, cs->names[i], c->id, c) != NULL;
    pthread_mutex_unlock(&ws->ch_lock);
    if (!cs)
        return;
    daebus__ws_channel_cluster_forget(ws, c->id, (const char *const *)cs->names, cs->n);
    daebus__ws_presence_gone(ws, c->id, (const char *const *)cs->names, cs->n);
    for (size_t i = 0; i < cs->n; i++)
        free(cs->names[i]);
    free(cs->names);
    free(cs);
    for (size_t i = 0; i < n; i++)
        daebus__ws_client_unref(c);
}

cJSON *daebus__ws_channel_pairs(daebus_ws *ws)
{
    cJSON *all = cJSON_CreateArray();
    pthread_mutex_lock(&ws->ch_lock);
    size_t n = daebus__hash_count(ws->chans->chans);
    void **vals = n ? malloc(n * sizeof *vals) : NULL;
    n = vals ? daebus__hash_values(ws->chans->chans, vals, n) : 0;
    for (size_t i = 0; all && i < n; i++) {
        const ws_chan *ch = vals[i];
        for (size_t k = 0; k < ch->n; k++) {
            cJSON *pair = cJSON_CreateArray();
            cJSON_AddItemToArray(all, pair);
            cJSON_AddItemToArray(pair, cJSON_CreateString(ch->subs[k].c->id));
            cJSON_AddItemToArray(pair, cJSON_CreateString(ch->name));
        }
    }
    pthread_mutex_unlock(&ws->ch_lock);
    free(vals);
    return all;
}

bool daebus__ws_channel_has(daebus_ws *ws, const char *client_id, const char *channel)
{
    pthread_mutex_lock(&ws->ch_lock);
    bool has = csubs_has(daebus__hash_find(ws->chans->clients, client_id), channel);
    pthread_mutex_unlock(&ws->ch_lock);
    return has;
}

/* ---- delivery ---- */

bool daebus__ws_channel_type_ok(const char *type)
{
    size_t n = 0;
    for (; type[n]; n++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-", type[n]))
            return false;
    return n >= 1 && n <= DAEBUS_WS_SUB_TYPE_MAX;
}

ws_frame *daebus__ws_channel_frame(const ws_chmsg *m)
{
    cJSON *name = cJSON_CreateString(m->channel);
    char *ch = name ? daebus_json_print(name, NULL) : NULL;
    cJSON_Delete(name);
    if (!ch)
        return NULL;
    char extra[128] = "";
    if (m->has_offset) /* history (docs/channels.md): the epoch is a plain id, no escaping */
        snprintf(extra, sizeof extra, ",\"offset\":%llu,\"epoch\":\"%.64s\"",
                 (unsigned long long)m->offset, m->epoch ? m->epoch : "");
    /* A type is checked (daebus__ws_channel_type_ok): nothing to escape. */
    const char *type = m->type ? m->type : "channel_message";
    size_t len = 30 + strlen(type) + strlen(ch) + m->data_len + strlen(extra);
    char *s = malloc(len + 1);
    if (s)
        snprintf(s, len + 1, "{\"type\":\"%s\",\"channel\":%s,\"data\":%.*s%s}", type, ch,
                 (int)m->data_len, m->data, extra);
    free(ch);
    return s ? daebus__ws_frame_text_take(s, strlen(s)) : NULL;
}

/* The frame f (a "channel_message") with the type of a subscription
 * instead. Returns: a new reference (f's own when it cannot be made). */
static ws_frame *frame_as(ws_frame *f, const char *type)
{
    static const char head[] = "{\"type\":\"channel_message\",";
    size_t hl = sizeof head - 1;
    char *s = NULL;
    if (f->len > hl && memcmp(f->data, head, hl) == 0) {
        size_t len = 11 + strlen(type) + (f->len - hl);
        if ((s = malloc(len + 1)))
            snprintf(s, len + 1, "{\"type\":\"%s\",%.*s", type, (int)(f->len - hl), f->data + hl);
    }
    ws_frame *v = s ? daebus__ws_frame_text_take(s, strlen(s)) : NULL;
    if (!v)
        atomic_fetch_add(&(v = f)->refs, 1);
    return v;
}

/* The frames of one delivery, one per subscription type met (most channels
 * have one). */
typedef struct typed_frames {
    const char **type; /* the subscriptions' own strings: used under ch_lock only */
    ws_frame **f;      /* referenced */
    size_t n, cap;
} typed_frames;

/* The frame for a subscriber of type (NULL: f itself). ch_lock held. */
static ws_frame *frame_for(typed_frames *tf, ws_frame *f, const char *type)
{
    if (!type)
        return f;
    for (size_t i = 0; i < tf->n; i++)
        if (strcmp(tf->type[i], type) == 0)
            return tf->f[i];
    size_t cap = tf->cap;
    if (grow((void **)&tf->type, &cap, tf->n + 1, sizeof *tf->type) ||
        grow((void **)&tf->f, &tf->cap, tf->n + 1, sizeof *tf->f))
        return f; /* out of memory: the default frame rather than none */
    tf->type[tf->n] = type;
    return tf->f[tf->n++] = frame_as(f, type);
}

static void typed_frames_free(typed_frames *tf)
{
    for (size_t i = 0; i < tf->n; i++)
        daebus__ws_frame_unref(tf->f[i]);
    free(tf->type);
    free(tf->f);
}

void daebus__ws_channel_type_of(daebus_ws *ws, const ws_client *c, const char *channel, char *buf,
                                size_t cap)
{
    buf[0] = '\0';
    pthread_mutex_lock(&ws->ch_lock);
    const ws_chan *ch = daebus__hash_find(ws->chans->chans, channel);
    for (size_t i = 0; ch && i < ch->n; i++)
        if (ch->subs[i].c == c && ch->subs[i].type)
            snprintf(buf, cap, "%s", ch->subs[i].type);
    pthread_mutex_unlock(&ws->ch_lock);
}

/* The hold of (c, channel), or NULL. ch_lock held. */
static ws_chhold *hold_of(const struct ws_chtable *t, const ws_client *c, const char *channel)
{
    for (ws_chhold *h = t->holds; h; h = h->next)
        if (h->c == c && strcmp(h->channel, channel) == 0)
            return h;
    return NULL;
}

static void hold_unlink(struct ws_chtable *t, ws_chhold *h)
{
    for (ws_chhold **p = &t->holds; *p; p = &(*p)->next)
        if (*p == h) {
            *p = h->next;
            return;
        }
}

static void hold_free(ws_chhold *h)
{
    for (size_t i = 0; i < h->n; i++)
        daebus__ws_frame_unref(h->f[i]);
    free(h->f);
    free(h->off);
    free(h->channel);
    free(h);
}

/* Frees c's released holds (its active ones belong to their recovery). ch_lock held. */
static void holds_drop(struct ws_chtable *t, const ws_client *c)
{
    for (ws_chhold **p = &t->holds; *p;) {
        ws_chhold *h = *p;
        if ((!c || h->c == c) && (!c || h->filter)) {
            *p = h->next;
            hold_free(h);
        } else {
            p = &h->next;
        }
    }
}

/* Returns: true if c is in channel's subscribers. ch_lock held. */
static bool chan_has(const struct ws_chtable *t, const char *channel, const ws_client *c)
{
    const ws_chan *ch = daebus__hash_find(t->chans, channel);
    for (size_t i = 0; ch && i < ch->n; i++)
        if (ch->subs[i].c == c)
            return true;
    return false;
}

/* Keeps f for a held subscription. Returns: true when held (not to be
 * queued now; a message that cannot be kept is lost as on a full queue).
 * ch_lock held. */
static bool hold_keep(struct ws_chtable *t, const ws_client *c, const char *channel, ws_frame *f,
                      uint64_t off, const char *epoch)
{
    ws_chhold *h = t->holds ? hold_of(t, c, channel) : NULL;
    if (!h)
        return false;
    if (h->filter) {
        if (off && off <= h->after && epoch && strcmp(epoch, h->epoch) == 0)
            return true; /* read from the history already: a duplicate */
        hold_unlink(t, h);
        hold_free(h);
        return false;
    }
    size_t cap = h->cap;
    if (grow((void **)&h->f, &cap, h->n + 1, sizeof *h->f) == 0 &&
        grow((void **)&h->off, &h->cap, h->n + 1, sizeof *h->off) == 0) {
        atomic_fetch_add(&f->refs, 1);
        h->f[h->n] = f;
        h->off[h->n++] = off;
    }
    return true;
}

ws_chhold *daebus__ws_channel_hold(daebus_ws *ws, ws_client *c, const char *channel)
{
    ws_chhold *h = calloc(1, sizeof *h);
    if (!h || !(h->channel = strdup(channel))) {
        free(h);
        return NULL;
    }
    h->c = c;
    pthread_mutex_lock(&ws->ch_lock);
    h->next = ws->chans->holds;
    ws->chans->holds = h;
    pthread_mutex_unlock(&ws->ch_lock);
    return h;
}

void daebus__ws_channel_release(daebus_ws *ws, ws_client *c, ws_chhold *h, uint64_t after,
                                const char *epoch)
{
    if (!h)
        return;
    pthread_mutex_lock(&ws->ch_deliver_lock); /* no delivery between the held ones and the next */
    bool sent_above = false;
    for (size_t i = 0; i < h->n; i++)
        if (h->off[i] == 0 || h->off[i] > after) {
            daebus__ws_enqueue(c, h->f[i], false);
            sent_above = sent_above || h->off[i] > after;
        }
    pthread_mutex_lock(&ws->ch_lock);
    /* A message read from the history may still come live (its PUBLISH not
     * yet received here): while none above after came, the hold stays as a
     * filter (ended by the first one above, or by the client's end). */
    bool keep = after && epoch && !sent_above && chan_has(ws->chans, h->channel, c);
    if (keep) {
        for (size_t i = 0; i < h->n; i++)
            daebus__ws_frame_unref(h->f[i]);
        h->n = 0;
        h->filter = true;
        h->after = after;
        snprintf(h->epoch, sizeof h->epoch, "%s", epoch);
    } else {
        hold_unlink(ws->chans, h);
    }
    pthread_mutex_unlock(&ws->ch_lock);
    pthread_mutex_unlock(&ws->ch_deliver_lock);
    if (!keep)
        hold_free(h);
}

int daebus__ws_channel_deliver(daebus_ws *ws, const char *channel, ws_frame *f, uint64_t off,
                               const char *epoch)
{
    return daebus__ws_channel_deliver_except(ws, channel, f, off, epoch, NULL);
}

int daebus__ws_channel_deliver_except(daebus_ws *ws, const char *channel, ws_frame *f, uint64_t off,
                                      const char *epoch, const char *skip_id)
{
    if (!ws->chans)
        return 0;
    pthread_mutex_lock(&ws->ch_deliver_lock);
    int count = daebus__ws_channel_deliver_held(ws, channel, f, off, epoch, skip_id);
    pthread_mutex_unlock(&ws->ch_deliver_lock);
    return count;
}

bool daebus__ws_channel_last(daebus_ws *ws, const char *channel, uint64_t *off, char *epoch,
                             size_t cap, bool *seeded)
{
    pthread_mutex_lock(&ws->ch_lock);
    const ws_chan *ch = daebus__hash_find(ws->chans->chans, channel);
    bool known = ch && ch->last_epoch[0];
    if (known) {
        *off = ch->last_off;
        snprintf(epoch, cap, "%s", ch->last_epoch);
        *seeded = ch->seeded;
    }
    pthread_mutex_unlock(&ws->ch_lock);
    return known;
}

void daebus__ws_channel_seed(daebus_ws *ws, const char *channel, uint64_t off, const char *epoch)
{
    pthread_mutex_lock(&ws->ch_lock);
    ws_chan *ch = daebus__hash_find(ws->chans->chans, channel);
    if (ch && !ch->last_epoch[0] && epoch && *epoch) {
        ch->last_off = off;
        snprintf(ch->last_epoch, sizeof ch->last_epoch, "%s", epoch);
        ch->seeded = true;
    }
    pthread_mutex_unlock(&ws->ch_lock);
}

int daebus__ws_channel_deliver_held(daebus_ws *ws, const char *channel, ws_frame *f, uint64_t off,
                                    const char *epoch, const char *skip_id)
{
    pthread_mutex_lock(&ws->ch_lock);
    ws_chan *ch = daebus__hash_find(ws->chans->chans, channel);
    if (ch && off && epoch && (off > ch->last_off || strcmp(epoch, ch->last_epoch) != 0)) {
        ch->last_off = off;
        snprintf(ch->last_epoch, sizeof ch->last_epoch, "%s", epoch);
        ch->seeded = false;
    }
    size_t n = ch ? ch->n : 0, kept = 0;
    ws_client **subs = n ? malloc(n * sizeof *subs) : NULL;
    ws_frame **fs = subs ? malloc(n * sizeof *fs) : NULL;
    typed_frames tf = {0};
    for (size_t i = 0; fs && i < n; i++) {
        ws_frame *sf = frame_for(&tf, f, ch->subs[i].type);
        if (!hold_keep(ws->chans, ch->subs[i].c, channel, sf, off, epoch)) {
            daebus__ws_client_ref(subs[kept] = ch->subs[i].c);
            fs[kept++] = sf;
        }
    }
    n = kept;
    pthread_mutex_unlock(&ws->ch_lock);
    int count = 0;
    for (size_t i = 0; i < n; i++)
        if (!skip_id || strcmp(subs[i]->id, skip_id) != 0)
            count += daebus__ws_enqueue(subs[i], fs[i], false) == 0;
    for (size_t i = 0; i < n; i++)
        daebus__ws_client_unref(subs[i]);
    typed_frames_free(&tf);
    free(subs);
    free(fs);
    return count;
}

/* ---- the server API ---- */

/* Subscribes the local client c (frames of type, NULL: the default). */
static int subscribe_local(daebus_ws *ws, ws_client *c, const char *channel, const char *type)
{
    /* The state is read under reg_lock and the entry made under it: the close
     * callback's cleanup (after the state became GONE) cannot miss it. */
    pthread_mutex_lock(&ws->reg_lock);
    int rc = c->state == WS_PENDING || c->state == WS_OPEN ? 0 : DAEBUS_ENOENT;
    if (rc == 0) {
        pthread_mutex_lock(&ws->ch_lock);
        rc = table_add(ws->chans, c, channel, type);
        pthread_mutex_unlock(&ws->ch_lock);
    }
    pthread_mutex_unlock(&ws->reg_lock);
    if (rc == 0) {
        rc = daebus__ws_channel_cluster_note(ws, c->id, channel, true);
        daebus__ws_presence_join(ws, c, channel);
        /* The client may have left meanwhile, its cleanup's removal from Redis
         * running before this write: remove it again (the cleanup always
         * follows the table's removal, which is checked after the write). */
        if (!daebus__ws_channel_has(ws, c->id, channel))
            daebus__ws_channel_cluster_note(ws, c->id, channel, false);
    }
    return rc == DAEBUS_EEXIST ? 0 : rc;
}

/* A server-side subscription with recovery: as a "subscribe" frame with
 * "since" (ws_channel_frames.c), the answer's fields going to *info_out. */
static int subscribe_recover(daebus_ws *ws, ws_client *c, const char *channel,
                             const daebus_ws_subscription *s, cJSON **info_out)
{
    bool since = s && s->has_since;
    ws_chhold *hold = NULL;
    if (since && daebus__ws_channel_history_of(ws, channel) &&
        !(hold = daebus__ws_channel_hold(ws, c, channel)))
        return DAEBUS_ENOMEM;
    int rc = subscribe_local(ws, c, channel, s ? s->type : NULL);
    if (rc && rc != DAEBUS_ECONN) { /* ECONN: held here, missing from the cluster-wide list */
        daebus__ws_channel_release(ws, c, hold, 0, NULL);
        return rc;
    }
    cJSON *info = since || info_out ? cJSON_CreateObject() : NULL;
    ws_chreplay rp = {0};
    if (info)
        daebus__ws_channel_replay_read(ws, channel, since, since ? s->since_offset : 0,
                                       since ? s->since_epoch : NULL, info, &rp);
    daebus__ws_channel_replay_send(ws, c, channel, &rp, hold);
    if (info_out)
        *info_out = info;
    else
        cJSON_Delete(info);
    return rc;
}

int daebus_ws_channel_subscribe_ex(daebus_ws *ws, const char *client_id, const char *channel,
                                   const daebus_ws_subscription *s, cJSON **info_out)
{
    if (info_out)
        *info_out = NULL;
    const char *type = s ? s->type : NULL;
    bool since = s && s->has_since;
    if (!ws || !client_id || daebus_ws_channel_check_name(channel, NULL) ||
        (type && !daebus__ws_channel_type_ok(type)) || (since && !s->since_epoch))
        return DAEBUS_EINVAL;
    ws_client *c = daebus__ws_client_find(ws, client_id);
    if (!c) {
        if (!atomic_load(&ws->cluster))
            return DAEBUS_ENOENT;
        if (since) /* the history is replayed by the client's own replica */
            return daebus__ws_dir_has(ws, client_id) ? DAEBUS_EINVAL : DAEBUS_ENOENT;
        return daebus__ws_channel_remote(ws, client_id, channel, true, type);
    }
    int rc = since || info_out ? subscribe_recover(ws, c, channel, s, info_out)
                               : subscribe_local(ws, c, channel, type);
    daebus__ws_client_unref(c);
    return rc;
}

int daebus_ws_channel_subscribe(daebus_ws *ws, const char *client_id, const char *channel)
{
    return daebus_ws_channel_subscribe_ex(ws, client_id, channel, NULL, NULL);
}

int daebus_ws_channel_unsubscribe(daebus_ws *ws, const char *client_id, const char *channel)
{
    if (!ws || !client_id || daebus_ws_channel_check_name(channel, NULL))
        return DAEBUS_EINVAL;
    pthread_mutex_lock(&ws->ch_lock);
    ws_client *c = table_remove(ws->chans, client_id, channel);
    pthread_mutex_unlock(&ws->ch_lock);
    if (!c && atomic_load(&ws->cluster)) { /* a client of another replica? */
        ws_client *local = daebus__ws_client_find(ws, client_id);
        daebus__ws_client_unref(local);
        if (!local)
            return daebus__ws_channel_remote(ws, client_id, channel, false, NULL);
    }
    if (!c)
        return DAEBUS_ENOENT;
    daebus__ws_client_unref(c);
    int rc = daebus__ws_channel_cluster_note(ws, client_id, channel, false);
    daebus__ws_presence_leave(ws, client_id, channel);
    return rc;
}

int daebus_ws_channel_publish(daebus_ws *ws, const char *channel, const cJSON *data)
{
    return daebus_ws_channel_publish_except(ws, channel, data, NULL);
}

int daebus_ws_channel_publish_except(daebus_ws *ws, const char *channel, const cJSON *data,
                                     const char *except_client_id)
{
    if (!ws || !data || daebus_ws_channel_check_name(channel, NULL) ||
        (except_client_id && strlen(except_client_id) > DAEBUS_WS_CHANNEL_MAX))
        return DAEBUS_EINVAL;
    char *text = daebus_json_print(data, NULL);
    if (!text)
        return DAEBUS_ENOMEM;
    ws_chmsg m = {
        .channel = channel, .data = text, .data_len = strlen(text), .except = except_client_id};
    int rc;
    if (m.data_len + strlen(channel) + 64 > ws->queue_max_bytes) {
        daebus__ws_log_too_big(ws, "a channel message", channel, m.data_len);
        rc = DAEBUS_ETOOBIG;
    } else if (daebus__ws_channel_history_of(ws, channel)) {
        rc = daebus__ws_channel_history_publish(ws, &m);
    } else if (atomic_load(&ws->cluster)) {
        rc = daebus__ws_channel_cluster_publish(ws, &m);
    } else {
        ws_frame *f = daebus__ws_channel_frame(&m);
        rc = f ? 0 : DAEBUS_ENOMEM;
        if (f)
            daebus__ws_channel_deliver_except(ws, channel, f, 0, NULL, except_client_id);
        daebus__ws_frame_unref(f);
    }
    free(text);
    return rc;
}

/* The local subscribers of channel, as a JSON array. */
static cJSON *local_subscribers(daebus_ws *ws, const char *channel)
{
    cJSON *ids = cJSON_CreateArray();
    pthread_mutex_lock(&ws->ch_lock);
    ws_chan *ch = daebus__hash_find(ws->chans->chans, channel);
    for (size_t i = 0; ids && ch && i < ch->n; i++)
        cJSON_AddItemToArray(ids, cJSON_CreateString(ch->subs[i].c->id));
    pthread_mutex_unlock(&ws->ch_lock);
    return ids;
}

int daebus_ws_channel_subscribers(daebus_ws *ws, const char *channel, cJSON **ids_out)
{
    if (ids_out)
        *ids_out = NULL;
    if (!ws || !ids_out || daebus_ws_channel_check_name(channel, NULL))
        return DAEBUS_EINVAL;
    if (atomic_load(&ws->cluster))
        return daebus__ws_channel_cluster_subscribers(ws, channel, ids_out);
    *ids_out = local_subscribers(ws, channel);
    return *ids_out ? 0 : DAEBUS_ENOMEM;
}

/* The channels of a local client (a JSON array); *found: it has some. */
static cJSON *local_channels(daebus_ws *ws, const char *client_id, bool *found)
{
    cJSON *names = cJSON_CreateArray();
    pthread_mutex_lock(&ws->ch_lock);
    ws_csubs *cs = daebus__hash_find(ws->chans->clients, client_id);
    for (size_t i = 0; names && cs && i < cs->n; i++)
        cJSON_AddItemToArray(names, cJSON_CreateString(cs->names[i]));
    pthread_mutex_unlock(&ws->ch_lock);
    *found = cs != NULL;
    return names;
}

int daebus_ws_channel_client_channels(daebus_ws *ws, const char *client_id, cJSON **out)
{
    if (out)
        *out = NULL;
    if (!ws || !client_id || !out)
        return DAEBUS_EINVAL;
    bool found = false;
    ws_client *c = daebus__ws_client_find(ws, client_id);
    if (c || !atomic_load(&ws->cluster)) {
        *out = c ? local_channels(ws, client_id, &found) : NULL;
        daebus__ws_client_unref(c);
        return c ? (*out ? 0 : DAEBUS_ENOMEM) : DAEBUS_ENOENT;
    }
    return daebus__ws_channel_cluster_of(ws, client_id, out);
}
