/* ws_channel_hpub.c - queued channel publishes with history
 * (ws_channel_hpub.h): the copy into the cluster's publisher queue, and the
 * groups the publisher thread sends through the history store.
 */
#include "ws_channel_hpub.h"
#include "daebus/json.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "daebus/log.h"
#include "ws_channel_history.h"

#define LOGC "websocket"

struct ws_hpub {
    char *head;         /* the envelope head: "k":"ch","o":"<self>", */
    atomic_int failing; /* the last group failed (one log line per change) */
    daebus__ratelimit full_rl;
    atomic_uint_fast64_t queued, published, failed, refused, groups;
};

/* The head of the history envelope: the core's header members, each
 * followed by a comma ("k":"ch","o":"<self>",). Returns: malloc'd, or NULL. */
static char *envelope_head(const ws_cluster *cl)
{
    cJSON *h = cJSON_CreateObject();
    char *s = NULL;
    if (h && cJSON_AddStringToObject(h, "k", "ch") && cJSON_AddStringToObject(h, "o", cl->self))
        s = daebus_json_print(h, NULL);
    cJSON_Delete(h);
    size_t n = s ? strlen(s) : 0;
    if (n >= 2) { /* {...} -> ..., */
        memmove(s, s + 1, n - 2);
        s[n - 2] = ',';
        s[n - 1] = '\0';
    }
    return s;
}

int daebus__ws_hpub_init(ws_cluster *cl)
{
    struct ws_hpub *hp = calloc(1, sizeof *hp);
    if (hp)
        hp->head = envelope_head(cl);
    if (!hp || !hp->head) {
        free(hp);
        return DAEBUS_ENOMEM;
    }
    cl->hpub = hp;
    return 0;
}

void daebus__ws_hpub_free(ws_cluster *cl)
{
    if (!cl->hpub)
        return;
    free(cl->hpub->head);
    free(cl->hpub);
    cl->hpub = NULL;
}

/* ---- the caller's side ---- */

int daebus__ws_hpub_enqueue(ws_cluster *cl, const ws_chmsg *m)
{
    struct ws_hpub *hp = cl->hpub;
    /* data: channel '\0' except ('' = none) '\0' the message */
    size_t nl = strlen(m->channel), xl = m->except ? strlen(m->except) : 0;
    size_t len = nl + 1 + xl + 1 + m->data_len;
    ws_pubmsg *q = malloc(offsetof(ws_pubmsg, data) + len + 1);
    if (!q)
        return DAEBUS_ENOMEM;
    q->next = NULL;
    q->channel = NULL; /* a history publish */
    q->len = len;
    memcpy(q->data, m->channel, nl + 1);
    memcpy(q->data + nl + 1, m->except ? m->except : "", xl + 1);
    memcpy(q->data + nl + 1 + xl + 1, m->data, m->data_len);
    q->data[len] = '\0';
    int rc = daebus__ws_cluster_enqueue(cl, q);
    if (rc == 0) {
        atomic_fetch_add(&hp->queued, 1);
        return 0;
    }
    if (rc != DAEBUS_EFULL)
        return daebus__ws_cluster_fail(cl, "a history publish");
    atomic_fetch_add(&cl->ws->st_cluster_err, 1);
    atomic_fetch_add(&hp->refused, 1);
    long missed = daebus__ratelimit_pass(&hp->full_rl, daebus__now_mono(), 1.0);
    if (missed >= 0)
        daebus_log(DAEBUS_LOG_WARNING, LOGC,
                   "channel '%s': history publish refused: the publisher queue stayed full "
                   "for 2 s (Redis too slow; DAEBUS_EFULL; %ld more not logged)",
                   m->channel, missed);
    return DAEBUS_EFULL;
}

/* ---- the publisher thread ---- */

/* The client not to deliver to ("": none) of a queued history publish. */
static const char *msg_except(const ws_pubmsg *m)
{
    return m->data + strlen(m->data) + 1;
}

/* The data of a queued history publish. */
static const char *msg_data(const ws_pubmsg *m, size_t *len)
{
    size_t skip = strlen(m->data) + 1 + strlen(msg_except(m)) + 1;
    *len = m->len - skip;
    return m->data + skip;
}

/* The envelope head of a message with a client left out: the common head
 * plus "x":<id>,. Returns: malloc'd, or NULL. */
static char *head_except(const char *head, const char *except)
{
    cJSON *x = cJSON_CreateString(except);
    char *id = x ? daebus_json_print(x, NULL) : NULL;
    cJSON_Delete(x);
    size_t n = id ? strlen(head) + strlen(id) + 8 : 0;
    char *s = n ? malloc(n) : NULL;
    if (s)
        snprintf(s, n, "%s\"x\":%s,", head, id);
    free(id);
    return s;
}

/* Sends the group (one round trip). Returns: how many Redis ran; *rc is
 * the first failure's code. */
static int send_group(ws_cluster *cl, ws_pubmsg *run, int n, int *rc)
{
    daebus_ws *ws = cl->ws;
    const char *data[DAEBUS__CHIST_BATCH_MAX];
    size_t lens[DAEBUS__CHIST_BATCH_MAX];
    daebus__chist_pub p[DAEBUS__CHIST_BATCH_MAX];
    int rcs[DAEBUS__CHIST_BATCH_MAX];
    char *heads[DAEBUS__CHIST_BATCH_MAX];
    bool one_channel = true, nomem = false;
    int i = 0;
    for (ws_pubmsg *m = run; m && i < n; m = m->next, i++) {
        const char *x = msg_except(m);
        data[i] = msg_data(m, &lens[i]);
        heads[i] = *x ? head_except(cl->hpub->head, x) : NULL;
        nomem = nomem || (*x && !heads[i]);
        p[i] = (daebus__chist_pub){.channel = m->data,
                                   .data = data[i],
                                   .len = lens[i],
                                   .redis_channel = cl->chan_all,
                                   .head = heads[i] ? heads[i] : cl->hpub->head,
                                   .bounds = {ws->ch_hist_count, ws->ch_hist_age}};
        /* one script for all: one channel and one head */
        one_channel =
            one_channel && strcmp(m->data, run->data) == 0 && strcmp(x, msg_except(run)) == 0;
    }
    int ok = 0;
    if (nomem || i < 1) {
        *rc = DAEBUS_ENOMEM;
    } else if (one_channel) {
        *rc = daebus__chist_publish_many(cl->hist, &p[0], data, lens, n, NULL);
        ok = *rc == 0 ? n : 0;
    } else {
        *rc = daebus__chist_publish_batch(cl->hist, p, n, NULL, rcs);
        for (int k = 0; k < n; k++)
            ok += rcs[k] == 0;
    }
    for (int k = 0; k < i; k++)
        free(heads[k]);
    return ok;
}

/* Sends one group of n <= BATCH_MAX, counts and logs the outcome. */
static void send_counted(ws_cluster *cl, ws_pubmsg *run, int n)
{
    struct ws_hpub *hp = cl->hpub;
    int rc = DAEBUS_ECONN, ok = 0;
    if (atomic_load(&cl->up)) /* else as the plain ones: fail fast while Redis is away */
        ok = send_group(cl, run, n, &rc);
    atomic_fetch_add(&hp->groups, 1);
    atomic_fetch_add(&hp->published, (uint_fast64_t)ok);
    atomic_fetch_add(&cl->ws->st_cluster_pub, (uint_fast64_t)ok);
    if (ok == n) {
        if (atomic_exchange(&hp->failing, 0))
            daebus_log(DAEBUS_LOG_INFO, LOGC,
                       "channel history: queued publishes reach Redis again (%llu lost before, "
                       "counted in cluster_errors)",
                       (unsigned long long)atomic_load(&hp->failed));
        return;
    }
    atomic_fetch_add(&hp->failed, (uint_fast64_t)(n - ok));
    atomic_fetch_add(&cl->ws->st_cluster_err, (uint_fast64_t)(n - ok));
    if (!atomic_exchange(&hp->failing, 1))
        daebus_log(DAEBUS_LOG_WARNING, LOGC,
                   "channel history: %d queued publishes (channel '%s' first) lost: %s (not "
                   "retried%s; counted in cluster_errors; logged again when publishes work "
                   "again)",
                   n - ok, run->data, daebus_strerror(rc),
                   rc == DAEBUS_ECONN ? ": Redis may have run them" : "");
}

void daebus__ws_hpub_send(ws_cluster *cl, ws_pubmsg *run, int n)
{
    while (run && n > 0) { /* the publisher's batches are no longer than one group, but */
        int k = n < DAEBUS__CHIST_BATCH_MAX ? n : DAEBUS__CHIST_BATCH_MAX;
        send_counted(cl, run, k);
        for (int i = 0; i < k; i++)
            run = run->next;
        n -= k;
    }
}

void daebus__ws_hpub_get_stats(daebus_ws *ws, daebus__ws_hpub_stats *out)
{
    memset(out, 0, sizeof *out);
    ws_cluster *cl = ws ? atomic_load(&ws->cluster) : NULL;
    struct ws_hpub *hp = cl ? cl->hpub : NULL;
    if (!hp)
        return;
    out->queued = atomic_load(&hp->queued);
    out->published = atomic_load(&hp->published);
    out->failed = atomic_load(&hp->failed);
    out->refused = atomic_load(&hp->refused);
    out->groups = atomic_load(&hp->groups);
}
