/* The scheduler's indexed min-heap: order, ties in push order, remove and
 * re-key from the middle, against a brute-force model. */
#include <stdio.h>
#include <stdlib.h>
#include "daebus/error.h"
#include "sched_heap.h"
#include "testsupport.h"

#define N 500

static unsigned lcg_state = 12345u;
static unsigned lcg(void)
{
    lcg_state = lcg_state * 1103515245u + 12345u;
    return (lcg_state >> 8) & 0xffffff;
}

static void test_order_and_ties(void)
{
    daebus__heap h;
    daebus__heap_init(&h);
    daebus__heap_entry e[6];
    double due[6] = {3, 1, 2, 1, 5, 1};
    for (int i = 0; i < 6; i++) {
        daebus__heap_entry_init(&e[i], i);
        CU_ASSERT_FALSE(daebus__heap_contains(&e[i]));
        e[i].due = due[i];
        CU_ASSERT_EQUAL(daebus__heap_push(&h, &e[i]), 0);
        CU_ASSERT_TRUE(daebus__heap_contains(&e[i]));
    }
    int expect[6] = {1, 3, 5, 2, 0, 4}; /* equal due times in push order */
    for (int i = 0; i < 6; i++) {
        daebus__heap_entry *p = daebus__heap_pop(&h);
        CU_ASSERT_PTR_NOT_NULL_FATAL(p);
        CU_ASSERT_EQUAL(p->kind, expect[i]);
        CU_ASSERT_FALSE(daebus__heap_contains(p));
    }
    CU_ASSERT_PTR_NULL(daebus__heap_pop(&h));
    CU_ASSERT_PTR_NULL(daebus__heap_peek(&h));
    daebus__heap_free(&h);
}

static void test_random_against_model(void)
{
    daebus__heap h;
    daebus__heap_init(&h);
    static daebus__heap_entry e[N];
    for (int i = 0; i < N; i++) {
        daebus__heap_entry_init(&e[i], i);
        e[i].due = (double)(lcg() % 1000);
        CU_ASSERT_EQUAL(daebus__heap_push(&h, &e[i]), 0);
    }
    /* remove every 7th, re-key every 5th */
    for (int i = 0; i < N; i += 7)
        daebus__heap_remove(&h, &e[i]);
    for (int i = 0; i < N; i += 5)
        CU_ASSERT_EQUAL(daebus__heap_set_due(&h, &e[i], (double)(lcg() % 1000)), 0);
    size_t expected = 0;
    for (int i = 0; i < N; i++)
        expected += daebus__heap_contains(&e[i]);
    CU_ASSERT_EQUAL(h.count, expected);
    double last = -1;
    size_t popped = 0;
    daebus__heap_entry *p;
    while ((p = daebus__heap_pop(&h)) != NULL) {
        CU_ASSERT(p->due >= last);
        last = p->due;
        popped++;
    }
    CU_ASSERT_EQUAL(popped, expected);
    daebus__heap_remove(&h, &e[1]); /* not in the heap: no-op */
    daebus__heap_free(&h);
}

int main(void)
{
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("sched_heap", NULL, NULL);
    CU_add_test(s, "order and ties", test_order_and_ties);
    CU_add_test(s, "random operations against a model", test_random_against_model);
    return ts_run_cunit();
}
