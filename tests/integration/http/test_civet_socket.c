/* daebus__civet_find_socket (civet/civet.c): finds the socket of a
 * connection by its peer and the server's port, and answers -1 rather than
 * another connection's socket when it cannot be told apart: the same peer
 * port reaching two local addresses, a reset socket next to a live one, a
 * descriptor number reused by another socket. The connections are built by
 * hand on loopback (127.0.0.1 and 127.0.0.2), without CivetWeb. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include "civet.h"
#include "testsupport.h"

static int listener = -1;
static int lport;

static struct sockaddr_in loopback(const char *addr, int port)
{
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, addr, &sa.sin_addr);
    return sa;
}

static int port_of(int fd)
{
    struct sockaddr_in sa;
    socklen_t l = sizeof sa;
    return getsockname(fd, (struct sockaddr *)&sa, &l) == 0 ? ntohs(sa.sin_port) : -1;
}

static int suite_init(void)
{
    listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = loopback("0.0.0.0", 0);
    if (listener < 0 || bind(listener, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        listen(listener, 16) != 0)
        return 1;
    lport = port_of(listener);
    return lport > 0 ? 0 : 1;
}

static int suite_clean(void)
{
    close(listener);
    return 0;
}

/* A client socket from 127.0.0.1:src_port (0: any) to dst:lport, and the
 * server side of it in *server. Returns: the client socket or -1. */
static int connect_pair(int src_port, const char *dst, int *server)
{
    int c = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(c, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in src = loopback("127.0.0.1", src_port);
    struct sockaddr_in to = loopback(dst, lport);
    if (bind(c, (struct sockaddr *)&src, sizeof src) != 0 ||
        connect(c, (struct sockaddr *)&to, sizeof to) != 0) {
        close(c);
        return -1;
    }
    *server = accept(listener, NULL, NULL);
    return c;
}

static daebus__civet_peer peer_of(int client)
{
    daebus__civet_peer p = {.port = port_of(client), .local_port = lport};
    snprintf(p.addr, sizeof p.addr, "127.0.0.1");
    return p;
}

static bool same_socket(int a, int b)
{
    struct stat sa, sb;
    return a >= 0 && b >= 0 && fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_ino == sb.st_ino;
}

static void reset(int client)
{
    struct linger lg = {1, 0}; /* close with RST */
    setsockopt(client, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(client);
    usleep(20000);
}

static void test_unique(void)
{
    int s, c = connect_pair(0, "127.0.0.1", &s);
    CU_ASSERT_FATAL(c >= 0 && s >= 0);
    daebus__civet_peer p = peer_of(c);
    CU_ASSERT_EQUAL(daebus__civet_find_socket(&p), s);
    /* A duplicate descriptor is the same socket: still one answer. */
    int d = dup(s);
    CU_ASSERT_TRUE(same_socket(daebus__civet_find_socket(&p), s));
    close(d);
    /* The peer printed as an IPv4-mapped IPv6 address is another family. */
    daebus__civet_peer mapped = p;
    snprintf(mapped.addr, sizeof mapped.addr, "::ffff:127.0.0.1");
    CU_ASSERT_EQUAL(daebus__civet_find_socket(&mapped), -1);
    close(c);
    close(s);
}

static void test_two_local_addresses(void)
{
    int s1, s2;
    int c1 = connect_pair(0, "127.0.0.1", &s1);
    CU_ASSERT_FATAL(c1 >= 0);
    int c2 = connect_pair(port_of(c1), "127.0.0.2", &s2);
    if (c2 < 0) { /* no 127.0.0.2, or the kernel refused the shared port */
        fprintf(stderr, "skipped: cannot share a source port (%s)\n", strerror(errno));
        close(c1);
        close(s1);
        return;
    }
    daebus__civet_peer p = peer_of(c1);
    /* Both server sockets have this peer and port: no guess. */
    CU_ASSERT_EQUAL(daebus__civet_find_socket(&p), -1);
    /* The first reset: its socket has no peer any more, and the live one
     * (another local address) must not be taken for it. */
    reset(c1);
    CU_ASSERT_EQUAL(daebus__civet_find_socket(&p), -1);
    close(s1);
    /* Only the live one is left: now it is the answer. */
    CU_ASSERT_EQUAL(daebus__civet_find_socket(&p), s2);
    close(c2);
    close(s2);
}

static void test_reset_and_reuse(void)
{
    int s, c = connect_pair(0, "127.0.0.1", &s);
    CU_ASSERT_FATAL(c >= 0 && s >= 0);
    daebus__civet_peer p = peer_of(c);
    reset(c);
    CU_ASSERT_EQUAL(daebus__civet_find_socket(&p), -1); /* reset: useless, and unproven */
    /* The descriptor number goes to another connection: not its socket. */
    close(s);
    int s2, c2 = connect_pair(0, "127.0.0.1", &s2);
    CU_ASSERT_FATAL(c2 >= 0);
    CU_ASSERT_EQUAL(s2, s);
    CU_ASSERT_EQUAL(daebus__civet_find_socket(&p), -1);
    daebus__civet_peer p2 = peer_of(c2);
    CU_ASSERT_EQUAL(daebus__civet_find_socket(&p2), s2);
    close(c2);
    close(s2);
}

static void test_bad_peer(void)
{
    daebus__civet_peer p = {.addr = "not an address", .port = 1, .local_port = lport};
    CU_ASSERT_EQUAL(daebus__civet_find_socket(&p), -1);
    CU_ASSERT_EQUAL(daebus__civet_find_socket(NULL), -1);
    CU_ASSERT_EQUAL(daebus__civet_socket(NULL), -1);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("civet_socket", suite_init, suite_clean);
    CU_add_test(s, "one connection, one answer", test_unique);
    CU_add_test(s, "same peer on two local addresses", test_two_local_addresses);
    CU_add_test(s, "reset socket, reused descriptor", test_reset_and_reuse);
    CU_add_test(s, "bad peer", test_bad_peer);
    return ts_run_cunit();
}
