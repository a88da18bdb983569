/* ws_channel.h - channels of the WebSocket layer (internal).
 *
 * ws_channel_auth.c: channel names, pattern rules and the authorisation hook.
 * ws_channel.c: the local subscription table (channel -> clients, client ->
 * channels), publish and local delivery, the server API.
 * ws_channel_cluster.c: cluster mode: publishes through Redis (every replica,
 * the publisher included, delivers when the message comes back, so that every
 * subscriber sees Redis's one order) and the cluster-wide subscriber lists.
 * ws_channel_frames.c: the client frames subscribe / unsubscribe / broadcast.
 *
 * ws->ch_lock guards the table; it is a leaf: nothing else is locked while it
 * is held (deliveries collect referenced clients under it, then queue with it
 * released).
 * Thread: any thread unless a line says otherwise.
 */
#ifndef DAEBUS_WS_CHANNEL_H
#define DAEBUS_WS_CHANNEL_H

#include "ws_internal.h"
#include "ws_parse.h"

#define DAEBUS__WS_STR2(x) #x
#define DAEBUS__WS_STR(x)  DAEBUS__WS_STR2(x)

/* ---- ws_channel_auth.c ---- */

/* Checks name[0..len) as a channel name. Returns: 0, or DAEBUS_EINVAL with
 * the reason in why (may be NULL). */
int daebus__ws_channel_name_error(const char *name, size_t len, char *why, size_t why_len);
/* Returns: true if a glob pattern of the comma-separated list (may be NULL)
 * matches name. */
bool daebus__ws_channel_glob(const char *patterns, const char *name);
/* Copies the channel options into ws (create). Returns: 0, DAEBUS_EINVAL
 * (err set), DAEBUS_ENOMEM. */
int daebus__ws_channel_auth_options(daebus_ws *ws, const daebus_ws_options *o, daebus_error *err);

/* ---- ws_channel.c ---- */

/* One channel message to deliver. The place history fills: has_offset,
 * offset and epoch go into the frame as "offset" and "epoch". */
typedef struct ws_chmsg {
    const char *channel;
    const char *data; /* the data, as JSON text (data_len bytes) */
    size_t data_len;
    bool has_offset;
    uint64_t offset;
    const char *epoch;
    const char *type;   /* the frame's "type"; NULL: "channel_message" */
    const char *except; /* a client not to deliver to (the sender); NULL: none */
} ws_chmsg;

/* Makes the table (create). Returns: 0 or DAEBUS_ENOMEM. */
int daebus__ws_channel_init(daebus_ws *ws);
/* Frees it (destroy; accepts a component whose init failed). */
void daebus__ws_channel_free(daebus_ws *ws);
/* Ends c's subscriptions (here and in the cluster-wide lists). Thread: the
 * close callback (c's state is GONE already) or a rejected connect. */
void daebus__ws_channel_client_gone(daebus_ws *ws, ws_client *c);
/* Returns: true when type is a subscription's frame type
 * (daebus_ws_subscription: 1..DAEBUS_WS_SUB_TYPE_MAX of [A-Za-z0-9_.:-]). */
bool daebus__ws_channel_type_ok(const char *type);
/* Copies into buf the frame type of c's subscription to channel ("": the
 * default, or not subscribed). */
void daebus__ws_channel_type_of(daebus_ws *ws, const ws_client *c, const char *channel, char *buf,
                                size_t cap);
/* Returns: the frame {"type":"channel_message" (or m->type),"channel":C,
 * "data":D[,"offset":N,"epoch":E]} with one reference, or NULL (out of
 * memory). Subscribers whose subscription has a type of its own get a copy
 * with that type (daebus__ws_channel_deliver). */
ws_frame *daebus__ws_channel_frame(const ws_chmsg *m);
/* Queues f (history offset off of epoch; 0 and NULL = none) for every local
 * subscriber of channel, one delivery at a time (ch_deliver_lock); a held
 * subscription (below) keeps it instead. Returns: how many took it. */
int daebus__ws_channel_deliver(daebus_ws *ws, const char *channel, ws_frame *f, uint64_t off,
                               const char *epoch);
/* Recovery: holds the live messages of channel for c (call before
 * subscribing c) until release. Returns: the hold, or NULL (out of memory).
 * Thread: c's CivetWeb thread. */
typedef struct ws_chhold ws_chhold;
ws_chhold *daebus__ws_channel_hold(daebus_ws *ws, ws_client *c, const char *channel);
/* Ends the hold (accepts NULL): queues for c the held messages with an
 * offset above after (or none), before any later delivery. With after > 0
 * (the last offset sent from the history, of epoch) and none of them above
 * it, it stays as a filter dropping the live messages up to after of that
 * epoch until the first other one (or c's end). */
void daebus__ws_channel_release(daebus_ws *ws, ws_client *c, ws_chhold *h, uint64_t after,
                                const char *epoch);
/* The same, skipping the local subscriber skip_id (may be NULL). */
int daebus__ws_channel_deliver_except(daebus_ws *ws, const char *channel, ws_frame *f, uint64_t off,
                                      const char *epoch, const char *skip_id);
/* The same with ws->ch_deliver_lock held by the caller. A history message
 * (off > 0) becomes the channel's last position here. */
int daebus__ws_channel_deliver_held(daebus_ws *ws, const char *channel, ws_frame *f, uint64_t off,
                                    const char *epoch, const char *skip_id);
/* The last history position delivered on channel here (*seeded: read from
 * Redis at a subscribe, none delivered since). Returns: false when none is
 * known (no local subscriber, or no position since). */
bool daebus__ws_channel_last(daebus_ws *ws, const char *channel, uint64_t *off, char *epoch,
                             size_t cap, bool *seeded);
/* Sets channel's position read from Redis (a subscribe's), when it has none:
 * the first message after it that does not arrive shows as a gap. */
void daebus__ws_channel_seed(daebus_ws *ws, const char *channel, uint64_t off, const char *epoch);

/* ---- ws_channel_catchup.c ---- */

/* Delivers a history message that came back from Redis (m has an offset):
 * a message this replica delivered already is dropped; when messages before
 * it are missing here (this replica's subscriber was away: the PUBLISHes
 * were lost for it), they are read from the history and delivered first.
 * Thread: the subscriber thread. */
void daebus__ws_channel_deliver_history(daebus_ws *ws, const ws_chmsg *m, ws_frame *f);

/* Returns: every local subscription as [client id, channel] pairs (a JSON
 * array), or NULL when out of memory. Ownership: the caller frees it. */
cJSON *daebus__ws_channel_pairs(daebus_ws *ws);
/* Returns: true if the local client_id is subscribed to channel. */
bool daebus__ws_channel_has(daebus_ws *ws, const char *client_id, const char *channel);

/* ---- ws_channel_cluster.c (each a no-op / local answer outside cluster mode) ---- */

/* Writes (add) or removes a subscription of the cluster-wide lists.
 * Returns: 0, DAEBUS_ECONN (the local table holds it anyway). */
int daebus__ws_channel_cluster_note(daebus_ws *ws, const char *client_id, const char *channel,
                                    bool add);
/* Writes every local subscription to the cluster-wide lists again (after
 * Redis came back, with the directory's resync). Returns: 0, DAEBUS_ECONN,
 * DAEBUS_ENOMEM. Thread: the cluster thread. */
struct ws_cluster;
int daebus__ws_channel_resync(struct ws_cluster *cl);
/* Removes a departed client's subscriptions from the cluster-wide lists. */
void daebus__ws_channel_cluster_forget(daebus_ws *ws, const char *client_id,
                                       const char *const *channels, size_t n);
/* The same for a client of a dead replica (its channels read from Redis).
 * Thread: the cluster thread (reaping). */
void daebus__ws_channel_reaped(daebus_ws *ws, const char *client_id);
/* Publishes m through Redis (the publisher queue). Returns: 0, DAEBUS_ECONN,
 * DAEBUS_ENOMEM. */
int daebus__ws_channel_cluster_publish(daebus_ws *ws, const ws_chmsg *m);
/* Asks the replica holding client_id (not local) to subscribe it to channel
 * (add; type: its frames' type, NULL = the default) or to end that
 * subscription. Returns: 0, DAEBUS_ENOENT (no such client), DAEBUS_ECONN,
 * DAEBUS_ENOMEM. */
int daebus__ws_channel_remote(daebus_ws *ws, const char *client_id, const char *channel, bool add,
                              const char *type);
/* Applies such a request from another replica (header h: "id", "c", "add").
 * Thread: the subscriber thread. */
void daebus__ws_channel_remote_apply(daebus_ws *ws, const cJSON *h);
/* A channel message back from Redis (header h, data body[0..len)): delivered
 * to the local subscribers. Thread: the subscriber thread. */
void daebus__ws_channel_recv(daebus_ws *ws, const cJSON *h, const char *body, size_t len);
/* Cluster-wide views. Returns: 0, DAEBUS_ENOENT, DAEBUS_ENOMEM, DAEBUS_ECONN. */
int daebus__ws_channel_cluster_subscribers(daebus_ws *ws, const char *channel, cJSON **ids_out);
int daebus__ws_channel_cluster_of(daebus_ws *ws, const char *client_id, cJSON **out);

/* ---- ws_channel_recover.c ---- */

struct daebus__chist;
/* Returns: the history store when channel keeps a history (cluster mode and
 * a channel_history pattern matches), else NULL. */
struct daebus__chist *daebus__ws_channel_history_of(daebus_ws *ws, const char *channel);
/* Queues m for the history store (ws_channel_hpub.h: the caller does not
 * wait for Redis). Returns: 0 (queued), DAEBUS_ECONN (Redis away, stopping),
 * DAEBUS_EFULL (queue full for 2 s), DAEBUS_ENOMEM. */
int daebus__ws_channel_history_publish(daebus_ws *ws, const ws_chmsg *m);
/* Reads "since" of a subscribe frame. Returns: 0 (none), 1 (*since and
 * *epoch set; epoch inside root), -1 (malformed: why says it). */
int daebus__ws_channel_since_parse(const cJSON *root, uint64_t *since, const char **epoch,
                                   char *why, size_t why_len);
/* What a subscribe replays. */
typedef struct ws_chreplay {
    struct daebus__chist_result *res;
    size_t n;
    bool recovered;
    uint64_t since;
} ws_chreplay;
/* Fills the subscribe answer extra: "recovered" (with since), "offset" and
 * "epoch" (a history channel: its position); reads the history into *rp
 * (zeroed by the caller). Thread: c's CivetWeb thread. */
void daebus__ws_channel_replay_read(daebus_ws *ws, const char *channel, bool has_since,
                                    uint64_t since, const char *epoch, cJSON *extra,
                                    ws_chreplay *rp);
/* Queues the history of *rp for c, then ends the hold (see release) and
 * frees *rp. Call after queuing the answer. */
void daebus__ws_channel_replay_send(daebus_ws *ws, ws_client *c, const char *channel,
                                    ws_chreplay *rp, ws_chhold *hold);

/* ---- ws_channel_frames.c ---- */

enum { WS_CH_NONE = -2, WS_CH_BAD = -1, WS_CH_SUBSCRIBE = 0, WS_CH_UNSUBSCRIBE, WS_CH_BROADCAST };

/* Reads a client message as a channel frame (pure: the fuzz target drives
 * it). Returns: WS_CH_NONE (another type), WS_CH_BAD (why says what is wrong:
 * no / non-string / invalid channel, a broadcast without data), or the kind
 * with *channel (inside m) set. */
int daebus__ws_channel_frame_parse(const ws_message *m, const char **channel, char *why,
                                   size_t why_len);
/* Handles m when it is a channel frame (subscribe, unsubscribe, broadcast)
 * and channels are on. Returns: true when handled (answered).
 * Thread: c's CivetWeb thread. */
bool daebus__ws_channel_frame_run(daebus_ws *ws, ws_client *c, const ws_message *m);

#endif
