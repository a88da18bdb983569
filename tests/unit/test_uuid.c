/* core/uuid: uuid4 text from getrandom() bytes - the format (36 lowercase
 * characters, version 4, RFC 4122 variant), uniqueness across threads, and
 * after fork() (the child must not reuse the parent's buffered bytes). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "daebus/daebus.h"
#include "testsupport.h"
#include "uuid.h"

#define PER_THREAD 20000
#define THREADS    4

static int well_formed(const char *s)
{
    if (strlen(s) != DAEBUS__UUID_LEN)
        return 0;
    for (int i = 0; i < DAEBUS__UUID_LEN; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return 0;
        } else if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    }
    return s[14] == '4' && strchr("89ab", s[19]) != NULL;
}

static void test_format(void)
{
    int seen_variant[4] = {0};
    for (int i = 0; i < 2000; i++) {
        char s[DAEBUS__UUID_LEN + 1];
        memset(s, 'x', sizeof s);
        daebus__uuid4(s);
        CU_ASSERT_TRUE(well_formed(s));
        const char *v = strchr("89ab", s[19]);
        if (v)
            seen_variant[v - "89ab"]++;
    }
    /* the two free bits of the variant nibble are random too */
    for (int i = 0; i < 4; i++)
        CU_ASSERT(seen_variant[i] > 0);
}

static char ids[THREADS][PER_THREAD][DAEBUS__UUID_LEN + 1];

static void *make_ids(void *arg)
{
    char(*mine)[DAEBUS__UUID_LEN + 1] = arg;
    for (int i = 0; i < PER_THREAD; i++)
        daebus__uuid4(mine[i]);
    return NULL;
}

static int cmp(const void *a, const void *b)
{
    return memcmp(a, b, DAEBUS__UUID_LEN);
}

static void test_unique_across_threads(void)
{
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        CU_ASSERT_EQUAL_FATAL(pthread_create(&t[i], NULL, make_ids, ids[i]), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    qsort(ids, THREADS * PER_THREAD, sizeof ids[0][0], cmp);
    int dups = 0, bad = 0;
    for (int i = 0; i < THREADS * PER_THREAD; i++) {
        const char *s = (const char *)ids + (size_t)i * sizeof ids[0][0];
        bad += !well_formed(s);
        if (i > 0 && cmp(s - sizeof ids[0][0], s) == 0)
            dups++;
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(dups, 0);
}

/* The parent buffers bytes, forks; the child's next id must differ from the
 * parent's next id (both would come from the same buffered bytes otherwise). */
static void test_fork_does_not_repeat(void)
{
    char first[DAEBUS__UUID_LEN + 1];
    daebus__uuid4(first); /* fills this thread's buffer */
    int fds[2];
    CU_ASSERT_EQUAL_FATAL(pipe(fds), 0);
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        char s[DAEBUS__UUID_LEN + 1];
        daebus__uuid4(s);
        ssize_t n = write(fds[1], s, DAEBUS__UUID_LEN);
        _exit(n == DAEBUS__UUID_LEN ? 0 : 1);
    }
    close(fds[1]);
    char parent[DAEBUS__UUID_LEN + 1], child[DAEBUS__UUID_LEN + 1] = {0};
    daebus__uuid4(parent);
    ssize_t got = 0;
    while (got < DAEBUS__UUID_LEN) {
        ssize_t n = read(fds[0], child + got, (size_t)(DAEBUS__UUID_LEN - got));
        if (n <= 0)
            break;
        got += n;
    }
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    CU_ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CU_ASSERT_EQUAL(got, DAEBUS__UUID_LEN);
    CU_ASSERT_TRUE(well_formed(child));
    CU_ASSERT_NOT_EQUAL(memcmp(parent, child, DAEBUS__UUID_LEN), 0);
}

int main(void)
{
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("uuid", NULL, NULL);
    CU_add_test(s, "uuid4 text format", test_format);
    CU_add_test(s, "unique across threads", test_unique_across_threads);
    CU_add_test(s, "a forked child does not repeat the parent's ids", test_fork_does_not_repeat);
    return ts_run_cunit();
}
