/* The core helpers: the string-keyed hash table (framework/core/hash.c) and
 * the JSON nesting-depth check (framework/core/json.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "daebus/daebus.h"
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include "check.h"
#include "hash.h"
#include "textlist.h"
#include "json.h"
#include "ratelimit.h"
#include "testsupport.h"

static void test_hash_basic(void)
{
    daebus__hash *h = daebus__hash_create(0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(h);
    static int vals[1000];
    char key[32];
    for (int i = 0; i < 1000; i++) { /* grows several times */
        snprintf(key, sizeof key, "k%d", i);
        CU_ASSERT_EQUAL(daebus__hash_insert(h, key, &vals[i]), 0);
    }
    CU_ASSERT_EQUAL(daebus__hash_insert(h, "k7", &vals[1]), DAEBUS_EEXIST);
    CU_ASSERT_PTR_EQUAL(daebus__hash_find(h, "k7"), &vals[7]);
    CU_ASSERT_EQUAL(daebus__hash_count(h), 1000);
    CU_ASSERT_PTR_NULL(daebus__hash_find(h, "k1000"));
    CU_ASSERT_PTR_EQUAL(daebus__hash_remove(h, "k0"), &vals[0]);
    CU_ASSERT_PTR_NULL(daebus__hash_remove(h, "k0"));
    CU_ASSERT_PTR_EQUAL(daebus__hash_remove(h, "k999"), &vals[999]);
    CU_ASSERT_EQUAL(daebus__hash_count(h), 998);
    void *out[4];
    CU_ASSERT_EQUAL(daebus__hash_values(h, out, 4), 4); /* oldest first */
    CU_ASSERT_PTR_EQUAL(out[0], &vals[1]);
    CU_ASSERT_PTR_EQUAL(out[3], &vals[4]);
    CU_ASSERT_EQUAL(daebus__hash_insert(h, "k0", &vals[0]), 0); /* back at the end */
    void **all = malloc(1000 * sizeof *all);
    CU_ASSERT_EQUAL(daebus__hash_values(h, all, 1000), 999);
    CU_ASSERT_PTR_EQUAL(all[998], &vals[0]);
    free(all);
    CU_ASSERT_EQUAL(daebus__hash_insert(h, NULL, &vals[0]), DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(daebus__hash_insert(NULL, "x", &vals[0]), DAEBUS_EINVAL);
    CU_ASSERT_PTR_NULL(daebus__hash_find(NULL, "x"));
    CU_ASSERT_EQUAL(daebus__hash_count(NULL), 0);
    daebus__hash_destroy(h);
    daebus__hash_destroy(NULL);
}

static bool is_even(void *value, void *ctx)
{
    (void)ctx;
    return *(int *)value % 2 == 0;
}

static void collect(void *value, void *ctx)
{
    int *sum = ctx;
    *sum += *(int *)value;
}

static void test_hash_take_if(void)
{
    daebus__hash *h = daebus__hash_create(0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(h);
    static int vals[100];
    char key[32];
    int want = 0;
    for (int i = 0; i < 100; i++) {
        vals[i] = i;
        want += i % 2 == 0 ? i : 0;
        snprintf(key, sizeof key, "k%d", i);
        CU_ASSERT_EQUAL(daebus__hash_insert(h, key, &vals[i]), 0);
    }
    int sum = 0;
    CU_ASSERT_EQUAL(daebus__hash_take_if(h, is_even, collect, &sum), 50);
    CU_ASSERT_EQUAL(sum, want);
    CU_ASSERT_EQUAL(daebus__hash_count(h), 50);
    CU_ASSERT_PTR_NULL(daebus__hash_find(h, "k42"));
    CU_ASSERT_PTR_EQUAL(daebus__hash_find(h, "k43"), &vals[43]);
    void *out[2];
    CU_ASSERT_EQUAL(daebus__hash_values(h, out, 2), 2); /* order kept */
    CU_ASSERT_PTR_EQUAL(out[0], &vals[1]);
    CU_ASSERT_PTR_EQUAL(out[1], &vals[3]);
    CU_ASSERT_EQUAL(daebus__hash_take_if(h, is_even, NULL, NULL), 0);
    CU_ASSERT_EQUAL(daebus__hash_take_if(NULL, is_even, NULL, NULL), 0);
    daebus__hash_destroy(h);
}

static void test_hex_digit(void)
{
    CU_ASSERT_EQUAL(daebus__hex_digit('0'), 0);
    CU_ASSERT_EQUAL(daebus__hex_digit('9'), 9);
    CU_ASSERT_EQUAL(daebus__hex_digit('a'), 10);
    CU_ASSERT_EQUAL(daebus__hex_digit('F'), 15);
    CU_ASSERT_EQUAL(daebus__hex_digit('g'), -1);
    CU_ASSERT_EQUAL(daebus__hex_digit('%'), -1);
    CU_ASSERT_EQUAL(daebus__hex_digit(0), -1);
    CU_ASSERT_EQUAL(daebus__hex_digit(0xC3), -1);
}

static void test_hash_str(void)
{
    /* FNV-1a reference values */
    CU_ASSERT_EQUAL(daebus__hash_str(""), 0xcbf29ce484222325ULL);
    CU_ASSERT_EQUAL(daebus__hash_str("a"), 0xaf63dc4c8601ec8cULL);
}

static void test_json_depth(void)
{
    const char *s = "{\"a\":[[1]]}";
    CU_ASSERT_TRUE(daebus__json_depth_ok(s, strlen(s), 3));
    CU_ASSERT_FALSE(daebus__json_depth_ok(s, strlen(s), 2));
    const char *q = "{\"[[[[\\\"{{\":1}"; /* brackets inside a string do not count */
    CU_ASSERT_TRUE(daebus__json_depth_ok(q, strlen(q), 1));
    CU_ASSERT_TRUE(daebus__json_depth_ok("]]]]", 4, 0)); /* not valid JSON: never negative */
    char deep[DAEBUS__JSON_MAX_DEPTH + 2];
    memset(deep, '[', sizeof deep);
    CU_ASSERT_TRUE(daebus__json_depth_ok(deep, DAEBUS__JSON_MAX_DEPTH, DAEBUS__JSON_MAX_DEPTH));
    CU_ASSERT_FALSE(daebus__json_depth_ok(deep, sizeof deep, DAEBUS__JSON_MAX_DEPTH));
}

/* In builds with asserts on (Debug, sanitizers) a false DAEBUS__ASSERT aborts;
 * elsewhere it is not even evaluated. */
static void test_assert(void)
{
    int evaluated = 0;
    DAEBUS__ASSERT(++evaluated > 0);
#ifdef DAEBUS__ASSERTS_ON
    CU_ASSERT_EQUAL(evaluated, 1);
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0)
            dup2(fd, 2);
        DAEBUS__ASSERT(evaluated == 2);
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CU_ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
#else
    CU_ASSERT_EQUAL(evaluated, 0);
#endif
}

/* Where asserts are on, locking a checked mutex twice from one thread aborts
 * instead of deadlocking. */
static void test_mutex_checked(void)
{
    pthread_mutex_t m;
    CU_ASSERT_EQUAL_FATAL(daebus__mutex_init(&m), 0);
    daebus__mutex_lock(&m);
    daebus__mutex_unlock(&m);
#ifdef DAEBUS__ASSERTS_ON
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0)
            dup2(fd, 2);
        daebus__mutex_lock(&m);
        daebus__mutex_lock(&m);
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CU_ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
#endif
    pthread_mutex_destroy(&m);
}

/* One line per interval; the next line counts the events not logged. */
static void test_ratelimit(void)
{
    daebus__ratelimit rl = {0};
    CU_ASSERT_EQUAL(daebus__ratelimit_pass(&rl, 10.0, 1.0), 0);
    CU_ASSERT_EQUAL(daebus__ratelimit_pass(&rl, 10.2, 1.0), -1);
    CU_ASSERT_EQUAL(daebus__ratelimit_pass(&rl, 10.9, 1.0), -1);
    CU_ASSERT_EQUAL(daebus__ratelimit_pass(&rl, 11.0, 1.0), 2);
    CU_ASSERT_EQUAL(daebus__ratelimit_pass(&rl, 11.5, 1.0), -1);
    CU_ASSERT_EQUAL(daebus__ratelimit_pass(&rl, 20.0, 1.0), 1);
}

int main(void)
{
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("core", NULL, NULL);
    CU_add_test(s, "hash table", test_hash_basic);
    CU_add_test(s, "hash take_if", test_hash_take_if);
    CU_add_test(s, "hash function", test_hash_str);
    CU_add_test(s, "hex digit", test_hex_digit);
    CU_add_test(s, "json depth", test_json_depth);
    CU_add_test(s, "assert", test_assert);
    CU_add_test(s, "checked mutex", test_mutex_checked);
    CU_add_test(s, "log rate limit", test_ratelimit);
    return ts_run_cunit();
}
