/* daebus-call - call a daebus action, publish to a channel or listen to one.
 *
 *   daebus-call SERVICE ACTION [JSON] [--timeout S] [--durable] [--max-size BYTES] [--redis URL]
 *   daebus-call --publish CHANNEL JSON [--redis URL]
 *   daebus-call --listen CHANNEL [--count N] [--max-size BYTES] [--redis URL]
 *
 * Replies are printed on stdout as compact JSON, one per line: each progress
 * payload, then the final payload. Exit status: 0 success, 1 error reply,
 * 2 time-out, no service listening (fails at once: "no service 'x' is
 * listening on redis://..."), a reply over --max-size (the caller's
 * max_message_size, 1 MiB by default; fails at once: "reply too large"), no
 * connection or usage error. --durable queues the request on the service's
 * stream (daebus:<service>:requests) instead of publishing it: a replica
 * takes it when one runs, before the time-out (the request's deadline); no
 * "no service listening" failure then. A listened message over --max-size
 * is dropped. The Redis URL defaults to
 * $DAEBUS_REDIS_URL, then redis://127.0.0.1:6379.
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "daebus/daebus.h"

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static void usage(FILE *f)
{
    fputs("usage: daebus-call SERVICE ACTION [JSON] [--timeout S] [--durable] [--max-size BYTES]\n"
          "                   [--redis URL]\n"
          "       daebus-call --publish CHANNEL JSON [--redis URL]\n"
          "       daebus-call --listen CHANNEL [--count N] [--max-size BYTES] [--redis URL]\n"
          "Prints progress payloads, then the final payload, as JSON lines.\n"
          "--durable: queue the call on the service's request stream (at-least-once,\n"
          "      completed once; waits for a replica until the time-out = its deadline).\n"
          "--max-size: the largest reply or message read (default 1048576).\n"
          "Exit: 0 success, 1 error reply, 2 time-out / no service listening /\n"
          "      reply too large / no connection / usage error.\n"
          "Redis URL: --redis, else $DAEBUS_REDIS_URL, else redis://127.0.0.1:6379\n",
          f);
}

static void print_json(const cJSON *j)
{
    char *s = j ? daebus_json_print(j, NULL) : NULL;
    printf("%s\n", s ? s : "null");
    fflush(stdout);
    free(s);
}

static void on_progress(daebus_caller *c, const cJSON *payload, void *user)
{
    (void)c;
    (void)user;
    print_json(payload);
}

typedef struct listen_state {
    long count; /* stop after this many; <= 0: never */
    atomic_long seen;
} listen_state;

static void on_listen_message(daebus_caller *c, const char *channel, const char *data, size_t len,
                              void *user)
{
    (void)c;
    (void)channel;
    listen_state *ls = user;
    if (ls->count > 0 && atomic_load(&ls->seen) >= ls->count)
        return;
    cJSON *j = daebus_json_parse(data, len, NULL);
    if (!j)
        j = cJSON_CreateString(data);
    print_json(j);
    cJSON_Delete(j);
    atomic_fetch_add(&ls->seen, 1);
}

static int do_listen(const char *url, const daebus_caller_options *co, const char *channel,
                     long count)
{
    daebus_error err = {0};
    daebus_caller *c = daebus_caller_create(url, co, &err);
    if (!c) {
        fprintf(stderr, "daebus-call: %s\n", err.message);
        return 2;
    }
    listen_state ls = {count, 0};
    int rc = daebus_caller_listen(c, channel, on_listen_message, &ls);
    if (rc != 0) {
        fprintf(stderr, "daebus-call: cannot listen on '%s': %s\n", channel, daebus_strerror(rc));
        daebus_caller_destroy(c);
        return 2;
    }
    /* Messages are printed on the caller's thread; this one waits for the
     * count, Ctrl-C or a lost connection. */
    struct timespec tick = {0, 20 * 1000000L};
    while (!interrupted && (count <= 0 || atomic_load(&ls.seen) < count)) {
        if (!daebus_caller_connected(c)) {
            fprintf(stderr, "daebus-call: connection to Redis lost\n");
            rc = 2;
            break;
        }
        nanosleep(&tick, NULL);
    }
    daebus_caller_destroy(c);
    return rc;
}

/* The command line. */
typedef struct args {
    const char *url, *publish, *listen;
    double timeout;
    long count;
    long max_size; /* 0: the caller's default */
    int durable;
    const char *pos[3];
    int npos;
} args;

/* Returns: -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, args *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--timeout") == 0 && next) {
            char *end = NULL;
            o->timeout = strtod(next, &end);
            if (!end || *end || o->timeout <= 0 || o->timeout > 86400) {
                fprintf(stderr, "daebus-call: --timeout needs seconds > 0, got '%s'\n", next);
                return 2;
            }
            i++;
        } else if (strcmp(a, "--durable") == 0) {
            o->durable = 1;
        } else if (strcmp(a, "--redis") == 0 && next) {
            o->url = argv[++i];
        } else if (strcmp(a, "--publish") == 0 && next) {
            o->publish = argv[++i];
        } else if (strcmp(a, "--listen") == 0 && next) {
            o->listen = argv[++i];
        } else if (strcmp(a, "--max-size") == 0 && next) {
            if (daebus_parse_int(next, 1024, 512L * 1024 * 1024, &o->max_size) != 0) {
                fprintf(stderr, "daebus-call: --max-size needs bytes from 1024 to 536870912\n");
                return 2;
            }
            i++;
        } else if (strcmp(a, "--count") == 0 && next) {
            if (daebus_parse_int(next, 1, 1000000000L, &o->count) != 0) {
                fprintf(stderr, "daebus-call: --count needs a positive number\n");
                return 2;
            }
            i++;
        } else if (a[0] == '-' && a[1] == '-') {
            fprintf(stderr, "daebus-call: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        } else if (o->npos < 3) {
            o->pos[o->npos++] = a;
        } else {
            fprintf(stderr, "daebus-call: too many arguments\n");
            usage(stderr);
            return 2;
        }
    }
    return -1;
}

/* --publish, or a call. Returns: the exit status. */
static int do_send(daebus_caller *c, const args *o, const cJSON *payload)
{
    daebus_error err = {0};
    if (o->publish) {
        int n = daebus_caller_send_message(c, o->publish, payload);
        if (n >= 0) {
            printf("%d\n", n);
            return 0;
        }
        fprintf(stderr, "daebus-call: publish failed: %s\n", daebus_strerror(n));
        return 2;
    }
    cJSON *reply = NULL;
    int status = 2;
    int rc = daebus_caller_request_progress(c, o->pos[0], o->pos[1], payload, o->timeout,
                                            on_progress, NULL, &reply, &err);
    if (rc == 0) {
        print_json(reply);
        status = 0;
    } else if (rc == DAEBUS_EREPLY) {
        print_json(reply);
        fprintf(stderr, "daebus-call: error from %s: %s\n", o->pos[0], err.message);
        status = 1;
    } else {
        fprintf(stderr, "daebus-call: %s\n", err.message);
    }
    cJSON_Delete(reply);
    return status;
}

int main(int argc, char **argv)
{
    args o = {getenv("DAEBUS_REDIS_URL"), NULL, NULL, 5.0, 0, 0, 0, {NULL, NULL, NULL}, 0};
    int st = parse_args(argc, argv, &o);
    if (st >= 0)
        return st;
    if (!o.url || !*o.url)
        o.url = "redis://127.0.0.1:6379";
    daebus_log_set_level(DAEBUS_LOG_ERROR);
    daebus_caller_options co = DAEBUS_CALLER_OPTIONS_INIT;
    co.max_message_size = (size_t)o.max_size;
    co.durable = o.durable != 0;
    signal(SIGPIPE, SIG_IGN);
    if (o.listen) {
        if (o.npos || o.publish) {
            usage(stderr);
            return 2;
        }
        /* Ctrl-C ends listening cleanly (exit 0); calls keep the default (abort). */
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        return do_listen(o.url, &co, o.listen, o.count);
    }
    const char *json_text = o.publish ? o.pos[0] : o.pos[2];
    if ((o.publish && o.npos != 1) || (!o.publish && (o.npos < 2 || o.npos > 3))) {
        usage(stderr);
        return 2;
    }
    cJSON *payload = NULL;
    if (json_text) {
        daebus_error perr = {0};
        payload = daebus_json_parse(json_text, strlen(json_text), &perr);
        if (!payload) {
            fprintf(stderr, "daebus-call: invalid JSON argument (%s): %s\n", perr.message,
                    json_text);
            return 2;
        }
    }
    daebus_error err = {0};
    daebus_caller *c = daebus_caller_create(o.url, &co, &err);
    if (!c) {
        fprintf(stderr, "daebus-call: %s\n", err.message);
        cJSON_Delete(payload);
        return 2;
    }
    st = do_send(c, &o, payload);
    cJSON_Delete(payload);
    daebus_caller_destroy(c);
    return st;
}
