/* ws_channel_recover.c - channels with a history (docs/channels.md
 * "Recovery"): a publish on one goes through the history store (one script
 * run: XADD + PUBLISH of the core's envelope, ws_channel_history.h), and a
 * subscribe with "since" replays what the client missed.
 *
 * Recovery without a gap or a duplicate: the client's live messages of the
 * channel are held (daebus__ws_channel_hold) from before it is subscribed;
 * the history after "since" is read (a loop while the store says "more"),
 * the answer is queued, then the history messages in order, then the held
 * live ones whose offset is above the last one sent; only then does the
 * hold end, so a later delivery comes after them all.
 */
#include "ws_channel.h"
#include "daebus/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws_channel_history.h"
#include "ws_channel_hpub.h"
#include "ws_client.h"
#include "ws_cluster.h"
#include "ws_io.h"

daebus__chist *daebus__ws_channel_history_of(daebus_ws *ws, const char *channel)
{
    ws_cluster *cl = ws->ch_history ? atomic_load(&ws->cluster) : NULL;
    if (!cl || !cl->hist || !daebus__ws_channel_glob(ws->ch_history, channel))
        return NULL;
    return cl->hist;
}

int daebus__ws_channel_history_publish(daebus_ws *ws, const ws_chmsg *m)
{
    ws_cluster *cl = atomic_load(&ws->cluster);
    if (!atomic_load(&cl->up)) /* as the core: nothing while this replica cannot receive */
        return daebus__ws_cluster_fail(cl, "a history publish");
    return daebus__ws_hpub_enqueue(cl, m); /* the publisher thread groups them */
}

int daebus__ws_channel_since_parse(const cJSON *root, uint64_t *since, const char **epoch,
                                   char *why, size_t why_len)
{
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(root, "since");
    if (!s || cJSON_IsNull(s))
        return 0;
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(s, "offset");
    const cJSON *ep = cJSON_GetObjectItemCaseSensitive(s, "epoch");
    if (!cJSON_IsObject(s) || !cJSON_IsNumber(off) || off->valuedouble < 0 ||
        off->valuedouble > 9007199254740992.0 ||
        off->valuedouble != (double)(uint64_t)off->valuedouble || !cJSON_IsString(ep) ||
        strlen(ep->valuestring) > DAEBUS__CHIST_EPOCH_MAX) {
        snprintf(why, why_len,
                 "\"since\" must be {\"offset\": <integer >= 0>, \"epoch\": <string>}");
        return -1;
    }
    *since = (uint64_t)off->valuedouble;
    *epoch = ep->valuestring;
    return 1;
}

static void replay_free(ws_chreplay *rp)
{
    for (size_t i = 0; i < rp->n; i++)
        daebus__chist_result_free(&rp->res[i]);
    free(rp->res);
    rp->res = NULL;
    rp->n = 0;
}

/* Reads the history after since (calls while "more"). Returns: true when
 * it reached back (rp holds the results), false otherwise (rp empty). */
static bool read_since(daebus__chist *h, const char *channel, uint64_t since, const char *epoch,
                       ws_chreplay *rp)
{
    for (uint64_t from = since;;) {
        daebus__chist_result *more = realloc(rp->res, (rp->n + 1) * sizeof *more);
        if (!more)
            break;
        rp->res = more;
        daebus__chist_result *r = &rp->res[rp->n];
        if (daebus__chist_since(h, channel, from, epoch, 0, r) != 0)
            break;
        rp->n++;
        if (!r->recovered)
            break;
        if (!r->more || r->n == 0)
            return true;
        from = r->msgs[r->n - 1].offset;
    }
    replay_free(rp);
    return false;
}

void daebus__ws_channel_replay_read(daebus_ws *ws, const char *channel, bool has_since,
                                    uint64_t since, const char *epoch, cJSON *extra,
                                    ws_chreplay *rp)
{
    daebus__chist *h = daebus__ws_channel_history_of(ws, channel);
    rp->since = since;
    if (!h) {
        if (has_since)
            cJSON_AddBoolToObject(extra, "recovered", false);
        return;
    }
    daebus__chist_pos now;
    bool have_now = false;
    if (has_since) {
        rp->recovered = read_since(h, channel, since, epoch, rp);
        cJSON_AddBoolToObject(extra, "recovered", rp->recovered);
        if (rp->recovered)
            now = rp->res[rp->n - 1].now, have_now = true;
    }
    if (!have_now)
        have_now = daebus__chist_position(h, channel, &now) == 0;
    if (have_now) {
        daebus__ws_channel_seed(ws, channel, now.offset, now.epoch);
        cJSON_AddNumberToObject(extra, "offset", (double)now.offset);
        cJSON_AddStringToObject(extra, "epoch", now.epoch);
    }
}

void daebus__ws_channel_replay_send(daebus_ws *ws, ws_client *c, const char *channel,
                                    ws_chreplay *rp, ws_chhold *hold)
{
    uint64_t last = rp->since;
    const char *epoch = rp->recovered && rp->n ? rp->res[rp->n - 1].now.epoch : NULL;
    char type[DAEBUS_WS_SUB_TYPE_MAX + 1] = "";
    if (rp->recovered && rp->n)
        daebus__ws_channel_type_of(ws, c, channel, type, sizeof type);
    for (size_t i = 0; rp->recovered && i < rp->n; i++) {
        const daebus__chist_result *r = &rp->res[i];
        for (size_t j = 0; j < r->n; j++) {
            ws_chmsg m = {.channel = channel,
                          .data = r->msgs[j].data,
                          .data_len = r->msgs[j].len,
                          .has_offset = true,
                          .offset = r->msgs[j].offset,
                          .epoch = r->now.epoch,
                          .type = type[0] ? type : NULL};
            ws_frame *f = daebus__ws_channel_frame(&m);
            if (f)
                daebus__ws_enqueue(c, f, false);
            daebus__ws_frame_unref(f);
            last = m.offset;
        }
    }
    daebus__ws_channel_release(ws, c, hold, rp->recovered ? last : 0, epoch);
    replay_free(rp);
}
