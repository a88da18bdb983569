/* civet.c - the CivetWeb adapter, server side: every workaround, with its reason.
 *
 * CivetWeb 1.15 (Debian 12) is the server under the HTTP and WebSocket
 * layers. Where it falls short, the fix is here, next to the reason:
 *
 *   library set-up ........ daebus__civet_library_init
 *   TLS probe ............. daebus__civet_tls_broken
 *   start failures ........ daebus__civet_port_busy
 *   mg_stop wake-up ....... daebus__civet_stop
 *   silent refusals ....... daebus__civet_is_upgrade, daebus__civet_dropped_target
 *   request deadlines ..... daebus__civet_deadline_* (the watchdog thread)
 *   a connection's socket . daebus__civet_find_socket
 *
 * The HTTP layer answers what these detect (http_hooks.c); WebSocket-only
 * workarounds are in civet_ws.c.
 */
#include "civet.h"

#include <arpa/inet.h>
#include <civetweb.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include "clock.h"
#include "daebus/error.h"

/* ---- library set-up ---- */

/* mg_init_library is process-wide: plain once, and once more with TLS the
 * first time a certificate is configured (TLS set-up loads OpenSSL, which a
 * plain server should not pay for). Never undone: mg_start/mg_stop do not
 * need it undone, and undoing it under a second server would break that one. */
static pthread_mutex_t library_lock = PTHREAD_MUTEX_INITIALIZER;
static int library_features = -1;

void daebus__civet_library_init(bool tls)
{
    pthread_mutex_lock(&library_lock);
    if (library_features < 0)
        library_features = (int)mg_init_library(tls ? MG_FEATURES_TLS : 0);
    else if (tls && !(library_features & MG_FEATURES_TLS))
        library_features |= (int)mg_init_library(MG_FEATURES_TLS);
    pthread_mutex_unlock(&library_lock);
}

/* ---- the TLS probe ---- */

/* CivetWeb up to 1.15 loads OpenSSL with dlopen("libssl.so") and calls
 * SSL_get_peer_certificate, which OpenSSL 3 keeps only as a macro: the
 * function pointer stays NULL and the first TLS connection kills the process.
 * Refusing to start says so at once instead. */
bool daebus__civet_tls_broken(char *why, size_t len)
{
    unsigned major = 0, minor = 0;
    const char *v = mg_version();
    if (!v || sscanf(v, "%u.%u", &major, &minor) != 2 || major > 1 || minor > 15)
        return false;
    void *ssl = dlopen("libssl.so", RTLD_LAZY | RTLD_LOCAL);
    if (!ssl)
        return false; /* CivetWeb reports a missing library itself */
    bool old_api = dlsym(ssl, "SSL_get_peer_certificate") != NULL;
    dlclose(ssl);
    if (old_api)
        return false;
    snprintf(why, len,
             "CivetWeb %s calls SSL_get_peer_certificate, which the installed OpenSSL (3.x) "
             "does not export: the first TLS connection would crash the process",
             v);
    return true;
}

/* ---- start failures ---- */

/* mg_start2's error text for a bind failure does not say why: a second bind
 * on the address tells a busy port apart from other failures. */
bool daebus__civet_port_busy(const char *addr, int port)
{
    if (port == 0)
        return false;
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1)
        return false;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    bool busy = bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno == EADDRINUSE;
    close(fd);
    return busy;
}

/* ---- the mg_stop wake-up ---- */

/* mg_stop() waits for CivetWeb's accept loop, which polls the listening
 * socket in 2 s quanta (1.15 has no way to wake it). Stopping on a helper
 * thread while this one pokes the socket with empty connections makes a stop
 * take milliseconds; the accepted empty connections are closed by CivetWeb. */
typedef struct stopper {
    struct mg_context *ctx;
    atomic_int done;
} stopper;

static void *stop_main(void *arg)
{
    stopper *st = arg;
    mg_stop(st->ctx);
    atomic_store(&st->done, 1);
    return NULL;
}

static void poke(const char *addr, int port)
{
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (!addr || strcmp(addr, "0.0.0.0") == 0 || inet_pton(AF_INET, addr, &sa.sin_addr) != 1)
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno == EINPROGRESS) {
        struct pollfd pfd = {fd, POLLOUT, 0};
        poll(&pfd, 1, 20);
    }
    close(fd);
}

void daebus__civet_stop(struct mg_context *ctx, const char *bind_address, int port)
{
    stopper st = {ctx, 0};
    pthread_t t;
    if (port <= 0 || pthread_create(&t, NULL, stop_main, &st) != 0) {
        mg_stop(ctx);
        return;
    }
    while (!atomic_load(&st.done)) {
        poke(bind_address, port);
        for (int i = 0; i < 10 && !atomic_load(&st.done); i++)
            usleep(1000);
    }
    pthread_join(t, NULL);
}

/* ---- requests CivetWeb would answer badly ---- */

/* CivetWeb marks a request as a WebSocket handshake before begin_request
 * when Upgrade holds "websocket" and Connection holds "upgrade" (substring
 * tests, any case); its mg_response_header_* calls then write no status
 * line, so a refusal must be written whole. This is CivetWeb's own test. */
static bool header_has(const struct mg_connection *conn, const char *name, const char *token)
{
    const char *v = mg_get_header(conn, name);
    size_t n = strlen(token);
    for (; v && *v; v++)
        if (strncasecmp(v, token, n) == 0)
            return true;
    return false;
}

bool daebus__civet_is_upgrade(const struct mg_connection *conn)
{
    return header_has(conn, "Upgrade", "websocket") && header_has(conn, "Connection", "upgrade");
}

/* CivetWeb 1.15 parses an absolute-form target on another host or port, and
 * "*", then closes the connection without a word (no local_uri is set, no
 * handler runs). Its connection_close callback still holds the request, so
 * the HTTP layer answers it there; this tells those requests apart from one
 * that was handled (local_uri set) or never parsed. */
const char *daebus__civet_dropped_target(const struct mg_connection *conn)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    if (!ri || ri->local_uri || !ri->request_method || !ri->request_uri)
        return NULL;
    return ri->request_uri;
}

/* ---- a connection's socket ----
 *
 * CivetWeb 1.15 does not hand out a connection's socket (no accessor, and
 * struct mg_connection is opaque; mg_get_request_link prints the configured
 * authentication domain, not the local address). The socket is found among
 * the process's descriptors by what the request info gives: the peer's
 * address and port, and the server's port. Why this cannot pick the wrong
 * socket:
 *
 * 1. The caller keeps the connection's socket open during the search (it is
 *    the CivetWeb thread serving the connection, inside a callback for it, and
 *    CivetWeb closes a connection's socket only on that thread after the
 *    callbacks return; or it holds a lock that thread must take first). So
 *    the socket is among the descriptors for the whole scan, and no other
 *    socket can take its descriptor number meanwhile.
 * 2. Every descriptor that could be it is counted: a TCP stream socket, not
 *    listening, on the server's port, whose peer is the request's peer
 *    ("match") or whose peer is unknown because it was reset or is closing
 *    ("maybe": getpeername fails with ENOTCONN after an RST, so the socket
 *    sought may be one of these).
 * 3. Two descriptors count once when they hold the same socket (same socket
 *    cookie, or inode on kernels without cookies: dup'ed descriptors). The socket sought is in the counted set
 *    (1, 2); when the set holds exactly one socket, that is it. When it holds
 *    more (the same peer port reaching two local addresses of this host, or
 *    other reset connections on the port), the answer is -1: the caller
 *    does without the socket rather than guess.
 *
 * Descriptors reused by other threads during the scan cannot match wrongly:
 * a descriptor is classified by the socket it holds at that moment, and the
 * one returned holds the sought socket, which stays open (1).
 * tests/integration/http/test_civet_socket.c checks the unique answer, the
 * refusal to guess, and reuse of descriptor numbers.
 */

enum { FD_OTHER, FD_MATCH, FD_MAYBE };

typedef struct target {
    int family;
    unsigned char addr[16];
    int port;
    int local_port;
} target;

/* CivetWeb prints the peer with inet_ntop (IPv4) or getnameinfo (IPv6,
 * possibly with a "%scope"): compare the bytes, not the texts. */
static bool target_of(const daebus__civet_peer *p, target *t)
{
    char buf[sizeof p->addr];
    snprintf(buf, sizeof buf, "%s", p->addr);
    char *scope = strchr(buf, '%');
    if (scope)
        *scope = '\0';
    memset(t, 0, sizeof *t);
    t->port = p->port;
    t->local_port = p->local_port;
    if (inet_pton(AF_INET, buf, t->addr) == 1)
        t->family = AF_INET;
    else if (inet_pton(AF_INET6, buf, t->addr) == 1)
        t->family = AF_INET6;
    return t->family != 0 && p->port >= 0 && p->local_port > 0;
}

static int port_of(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)ss)->sin_port);
    if (ss->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    return -1;
}

static bool peer_equals(const struct sockaddr_storage *ss, const target *t)
{
    if (ss->ss_family != t->family || port_of(ss) != t->port)
        return false;
    if (t->family == AF_INET)
        return memcmp(&((const struct sockaddr_in *)ss)->sin_addr, t->addr, 4) == 0;
    return memcmp(&((const struct sockaddr_in6 *)ss)->sin6_addr, t->addr, 16) == 0;
}

/* A TCP stream socket on the server's port that is not listening? */
static bool on_port(int fd, const target *t)
{
    struct sockaddr_storage ss;
    socklen_t l = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &l) != 0 || port_of(&ss) != t->local_port)
        return false;
    int type = 0, listening = 0;
    socklen_t tl = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 || type != SOCK_STREAM)
        return false;
    tl = sizeof listening;
    return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &tl) == 0 && !listening;
}

/* The peer first: one system call settles most descriptors. */
static int classify(int fd, const target *t)
{
    struct sockaddr_storage ss;
    socklen_t l = sizeof ss;
    if (getpeername(fd, (struct sockaddr *)&ss, &l) == 0)
        return peer_equals(&ss, t) && on_port(fd, t) ? FD_MATCH : FD_OTHER;
    if (errno != ENOTCONN)
        return FD_OTHER; /* not a socket */
    return on_port(fd, t) ? FD_MAYBE : FD_OTHER;
}

/* A socket's identity, the same through every descriptor of it. The kernel's
 * socket cookie is read with getsockopt, which (unlike fstat) does not touch
 * the descriptor table's bookkeeping that ThreadSanitizer models: another
 * thread may close any descriptor of the scan but ours (see below), and a
 * descriptor closed or reused mid-scan only ever reads as "other". */
static bool socket_identity(int fd, uint64_t *id)
{
#ifdef SO_COOKIE
    socklen_t l = sizeof *id;
    if (getsockopt(fd, SOL_SOCKET, SO_COOKIE, id, &l) == 0 && l == sizeof *id)
        return true;
#endif
    struct stat st;
    if (fstat(fd, &st) != 0)
        return false;
    *id = (uint64_t)st.st_ino;
    return true;
}

int daebus__civet_find_socket(const daebus__civet_peer *p)
{
    target t;
    if (!p || !target_of(p, &t))
        return -1;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int found = -1, dfd = dirfd(d);
    uint64_t ident = 0, id = 0;
    bool ambiguous = false;
    struct dirent *e;
    while (!ambiguous && (e = readdir(d)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        int fd = atoi(e->d_name);
        if (fd == dfd || classify(fd, &t) == FD_OTHER || !socket_identity(fd, &id))
            continue;
        if (found < 0) {
            found = fd;
            ident = id;
        } else if (id != ident) {
            ambiguous = true;
        }
    }
    closedir(d);
    if (ambiguous || found < 0)
        return -1;
    /* The one candidate may be a reset socket of the port: only a match
     * names the connection (a reset one of ours is useless anyway). */
    return classify(found, &t) == FD_MATCH ? found : -1;
}

bool daebus__civet_peer_of(const struct mg_connection *conn, daebus__civet_peer *out)
{
    const struct mg_request_info *ri = conn ? mg_get_request_info(conn) : NULL;
    memset(out, 0, sizeof *out);
    out->port = -1;
    if (!ri)
        return false;
    snprintf(out->addr, sizeof out->addr, "%s", ri->remote_addr);
    out->port = ri->remote_port;
    out->local_port = ri->server_port;
    return true;
}

int daebus__civet_socket(const struct mg_connection *conn)
{
    daebus__civet_peer p;
    if (!daebus__civet_peer_of(conn, &p))
        return -1;
    return daebus__civet_find_socket(&p);
}

/* ---- request deadlines ----
 *
 * CivetWeb's request_timeout_ms applies to each read, not to the request: a
 * client sending one byte per interval holds a worker forever. The worker
 * takes a slot with its deadline before reading a body; when the deadline
 * passes, the watchdog shuts the socket's read side, which wakes the worker
 * blocked in mg_read with end-of-stream. The socket is looked up only then
 * (a scan costs about a microsecond per descriptor), under the lock the
 * worker needs to release its slot: the worker cannot return from its
 * handler, so CivetWeb cannot close the socket while it is sought (the
 * condition of daebus__civet_find_socket). A socket that cannot be told
 * apart is left to CivetWeb's per-read time-out; the worker checks the
 * deadline after every read.
 */

int daebus__civet_deadlines_init(daebus__civet_deadlines *d, int nslots)
{
    memset(d, 0, sizeof *d);
    d->slots = calloc((size_t)(nslots > 0 ? nslots : 1), sizeof *d->slots);
    if (!d->slots)
        return DAEBUS_ENOMEM;
    d->nslots = nslots > 0 ? nslots : 1;
    pthread_mutex_init(&d->lock, NULL);
    daebus__cond_init(&d->cond);
    return 0;
}

void daebus__civet_deadlines_destroy(daebus__civet_deadlines *d)
{
    if (!d->slots)
        return;
    daebus__civet_deadlines_stop(d);
    pthread_mutex_destroy(&d->lock);
    pthread_cond_destroy(&d->cond);
    free(d->slots);
    d->slots = NULL;
}

int daebus__civet_deadline_acquire(daebus__civet_deadlines *d, const struct mg_connection *conn,
                                   double deadline)
{
    daebus__civet_deadline_slot s = {.deadline = deadline, .used = true};
    daebus__civet_peer_of(conn, &s.peer);
    int slot = -1;
    pthread_mutex_lock(&d->lock);
    for (int i = 0; i < d->nslots && slot < 0; i++)
        if (!d->slots[i].used)
            slot = i;
    if (slot >= 0) {
        d->slots[slot] = s;
        if (deadline < d->next) /* else the watchdog wakes in time */
            pthread_cond_signal(&d->cond);
    }
    pthread_mutex_unlock(&d->lock);
    return slot;
}

bool daebus__civet_deadline_release(daebus__civet_deadlines *d, int slot)
{
    pthread_mutex_lock(&d->lock);
    bool expired = d->slots[slot].expired;
    d->slots[slot].used = false;
    pthread_mutex_unlock(&d->lock);
    return expired;
}

/* Expires the slots whose deadline passed (lock held). Returns: the next
 * deadline. */
static double expire_due(daebus__civet_deadlines *d, double now)
{
    double next = now + 3600.0;
    for (int i = 0; i < d->nslots; i++) {
        daebus__civet_deadline_slot *s = &d->slots[i];
        if (!s->used || s->expired)
            continue;
        if (s->deadline <= now) {
            s->expired = true;
            int fd = daebus__civet_find_socket(&s->peer);
            if (fd >= 0)
                shutdown(fd, SHUT_RD);
        } else if (s->deadline < next) {
            next = s->deadline;
        }
    }
    return next;
}

static void *watchdog_main(void *arg)
{
    daebus__civet_deadlines *d = arg;
    pthread_mutex_lock(&d->lock);
    while (!d->stop) {
        d->next = expire_due(d, daebus__now_mono());
        daebus__cond_wait_until(&d->cond, &d->lock, (daebus__deadline){d->next + 0.001});
    }
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

int daebus__civet_deadlines_start(daebus__civet_deadlines *d)
{
    d->stop = false;
    if (pthread_create(&d->thread, NULL, watchdog_main, d) != 0)
        return DAEBUS_ENOMEM;
    d->running = true;
    return 0;
}

void daebus__civet_deadlines_stop(daebus__civet_deadlines *d)
{
    if (!d->running)
        return;
    pthread_mutex_lock(&d->lock);
    d->stop = true;
    pthread_cond_signal(&d->cond);
    pthread_mutex_unlock(&d->lock);
    pthread_join(d->thread, NULL);
    d->running = false;
}
