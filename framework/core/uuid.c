/* uuid.c - uuid4 text from getrandom() bytes (see uuid.h). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include "uuid.h"

#define POOL 256 /* bytes of randomness per refill: 16 ids */

typedef struct pool {
    unsigned char bytes[POOL];
    unsigned used;       /* bytes taken; POOL = empty */
    unsigned generation; /* fork generation of the bytes */
} pool;

static _Thread_local pool mine = {.used = POOL};
static atomic_uint forks;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* In a child the parent's buffered bytes must not be used again. */
static void after_fork_child(void)
{
    atomic_fetch_add(&forks, 1);
}

static void register_atfork(void)
{
    pthread_atfork(NULL, NULL, after_fork_child);
}

/* Fills buf from /dev/urandom (getrandom() missing or failing). Returns: 0 or -1. */
static int from_urandom(unsigned char *buf, size_t len)
{
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    return got == len ? 0 : -1;
}

static void refill(pool *p, unsigned generation)
{
    size_t got = 0;
    while (got < POOL) {
        ssize_t n = getrandom(p->bytes + got, POOL - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    if (got < POOL && from_urandom(p->bytes, POOL) != 0) {
        /* No kernel randomness at all: still unique within this process. */
        static atomic_uint_fast64_t counter;
        uint64_t c = atomic_fetch_add(&counter, 1) ^ (uint64_t)(uintptr_t)p;
        for (size_t i = 0; i < POOL; i++)
            p->bytes[i] ^= (unsigned char)(c >> (8 * (i % 8))) ^ (unsigned char)(i * 131u);
    }
    p->used = 0;
    p->generation = generation;
}

void daebus__uuid4(char out[DAEBUS__UUID_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    pthread_once(&atfork_once, register_atfork);
    pool *p = &mine;
    unsigned generation = atomic_load_explicit(&forks, memory_order_relaxed);
    if (p->used + 16 > POOL || p->generation != generation)
        refill(p, generation);
    unsigned char b[16];
    memcpy(b, p->bytes + p->used, 16);
    memset(p->bytes + p->used, 0, 16); /* used bytes are never handed out twice */
    p->used += 16;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* variant RFC 4122 */
    char *o = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *o++ = '-';
        *o++ = hex[b[i] >> 4];
        *o++ = hex[b[i] & 0x0f];
    }
    *o = '\0';
}
