/* ws_channel_catchup.c - a replica catches up on the history messages it
 * missed (docs/channels/history.md, "A replica that missed messages").
 *
 * Every replica delivers a channel message when its PUBLISH comes back from
 * Redis. A replica whose subscriber connection was away for a moment (killed,
 * a network blip, a stopped process) misses those PUBLISHes, and pub/sub
 * never says so. On a channel with history each message carries its offset,
 * so the next message that arrives shows the gap: the missing ones are read
 * from the history and delivered first, in order, then the one that arrived.
 * A message delivered already (it came live after a catch-up read it) is
 * dropped. The whole step runs under ch_deliver_lock, so no other delivery
 * of this replica comes between.
 */
#include "ws_channel.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "daebus/log.h"
#include "ratelimit.h"
#include "ws_channel_history.h"
#include "ws_io.h"

/* Delivers the history of channel after from (of epoch) up to before upto.
 * Returns: how many messages were delivered. ch_deliver_lock held. */
static unsigned long long catch_up(daebus_ws *ws, const char *channel, uint64_t from,
                                   const char *epoch, uint64_t upto, bool *lost)
{
    daebus__chist *h = daebus__ws_channel_history_of(ws, channel);
    unsigned long long n = 0;
    *lost = h == NULL;
    for (uint64_t at = from; h && at + 1 < upto;) {
        daebus__chist_result r;
        int rc = daebus__chist_since(h, channel, at, epoch, 0, &r);
        if (rc != 0 || !r.recovered) {
            *lost = true; /* Redis away again, or the history does not reach back */
            if (rc == 0)
                daebus__chist_result_free(&r);
            break;
        }
        bool more = r.more && r.n > 0;
        for (size_t j = 0; j < r.n && r.msgs[j].offset < upto; j++) {
            ws_chmsg m = {.channel = channel,
                          .data = r.msgs[j].data,
                          .data_len = r.msgs[j].len,
                          .has_offset = true,
                          .offset = r.msgs[j].offset,
                          .epoch = epoch};
            ws_frame *f = daebus__ws_channel_frame(&m);
            if (f)
                n += daebus__ws_channel_deliver_held(ws, channel, f, m.offset, epoch, NULL) >= 0;
            daebus__ws_frame_unref(f);
            at = m.offset;
        }
        more = more && at + 1 < upto;
        daebus__chist_result_free(&r);
        if (!more)
            break;
    }
    return n;
}

void daebus__ws_channel_deliver_history(daebus_ws *ws, const ws_chmsg *m, ws_frame *f)
{
    pthread_mutex_lock(&ws->ch_deliver_lock);
    uint64_t last = 0;
    char ep[48];
    bool seeded = false;
    bool known = daebus__ws_channel_last(ws, m->channel, &last, ep, sizeof ep, &seeded);
    bool same = known && strcmp(ep, m->epoch) == 0;
    if (same && m->offset <= last && !seeded) { /* delivered here already (by a catch-up) */
        pthread_mutex_unlock(&ws->ch_deliver_lock);
        return;
    }
    /* A gap: offsets last+1 .. offset-1 of this epoch, or, after the epoch
     * changed (the history was lost: Redis restarted), 1 .. offset-1 of the
     * new one (published before this replica's subscriber came back). */
    uint64_t from = same ? last : 0;
    if (known && m->offset > from + 1 && !(same && seeded && m->offset <= last)) {
        bool lost = false;
        unsigned long long n = catch_up(ws, m->channel, from, m->epoch, m->offset, &lost);
        static daebus__ratelimit rl;
        long quiet = daebus__ratelimit_pass(&rl, daebus__now_mono(), 1.0);
        if (quiet >= 0)
            daebus_log(lost ? DAEBUS_LOG_WARNING : DAEBUS_LOG_INFO, "ws",
                       "channel '%.64s': this replica missed offsets %llu..%llu (its subscriber "
                       "was away); %llu delivered from the history%s (%ld similar lines "
                       "skipped)",
                       m->channel, (unsigned long long)from + 1, (unsigned long long)m->offset - 1,
                       n, lost ? ", the rest is lost (history trimmed or Redis away)" : "", quiet);
    }
    daebus__ws_channel_deliver_held(ws, m->channel, f, m->offset, m->epoch, m->except);
    pthread_mutex_unlock(&ws->ch_deliver_lock);
}
