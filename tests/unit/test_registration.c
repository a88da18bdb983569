/* Registration macros of every kind, blueprint merge, prefixes, conflicts. */
#include <string.h>
#include "daebus/daebus.h"
#include "testsupport.h"

DAEBUS_BLUEPRINT_DECLARE(other_bp);

ROUTE(index_route, "/")
{
    return 0;
}

ROUTE(users_get, "/users", .methods = DAEBUS_GET | DAEBUS_POST)
{
    return 0;
}

/* A later POST /users overrides only the POST of users_get. */
ROUTE(users_post, "/users", .methods = DAEBUS_POST)
{
    return 0;
}

SOCKET(chat_message, "chat_message")
{
    return NULL;
}

SOCKET_CONNECT(on_connect)
{
    return NULL;
}

SOCKET_DISCONNECT(on_disconnect)
{
    return NULL;
}

SOCKET_REGISTER(on_register)
{
    return NULL;
}

ACTION(get_status, "get_status")
{
    return 0;
}

/* Same action name twice in one file: the later line wins. */
ACTION(get_status_v2, "get_status")
{
    return 2;
}

LISTEN(on_notice, "notifications")
{
    return 0;
}

BACKGROUND(status_task, "system_status", 60)
{
    return 0;
}

THREAD(poller, "poller") {}

static int start_order[8];
static int start_n;

ON_START(first_hook)
{
    start_order[start_n++] = 1;
    return 0;
}

ON_START(second_hook)
{
    start_order[start_n++] = 2;
    return 0;
}

/* DAEBUS_-prefixed spelling works alongside the short one. */
DAEBUS_ACTION(prefixed_action, "prefixed")
{
    return 0;
}

static daebus_app *new_app(void)
{
    daebus_app_options o = DAEBUS_APP_OPTIONS_INIT;
    o.service = "reg_test";
    o.no_signals = true;
    o.log_level = DAEBUS_LOG_ERROR;
    return daebus_app_create(&o, NULL);
}

static void test_default_blueprint_counts(void)
{
    daebus_blueprint *bp = &daebus_default_blueprint;
    CU_ASSERT_EQUAL(daebus_blueprint_count(bp, DAEBUS_HANDLER_ROUTE), 3);
    CU_ASSERT_EQUAL(daebus_blueprint_count(bp, DAEBUS_HANDLER_SOCKET), 2); /* incl. register */
    CU_ASSERT_EQUAL(daebus_blueprint_count(bp, DAEBUS_HANDLER_SOCKET_CONNECT), 1);
    CU_ASSERT_EQUAL(daebus_blueprint_count(bp, DAEBUS_HANDLER_SOCKET_DISCONNECT), 1);
    CU_ASSERT_EQUAL(daebus_blueprint_count(bp, DAEBUS_HANDLER_ACTION), 4); /* 2 + prefixed + tu2 */
    CU_ASSERT_EQUAL(daebus_blueprint_count(bp, DAEBUS_HANDLER_LISTEN), 1);
    CU_ASSERT_EQUAL(daebus_blueprint_count(bp, DAEBUS_HANDLER_BACKGROUND), 1);
    CU_ASSERT_EQUAL(daebus_blueprint_count(bp, DAEBUS_HANDLER_THREAD), 1);
    CU_ASSERT_EQUAL(daebus_blueprint_count(bp, DAEBUS_HANDLER_ON_START), 2);
    CU_ASSERT_EQUAL(daebus_blueprint_count(&other_bp, 0), 10);
}

static void test_app_tables_after_default(void)
{
    daebus_app *app = new_app();
    CU_ASSERT_PTR_NOT_NULL_FATAL(app);
    /* get_status: the later line (get_status_v2) wins within the file. */
    const daebus_handler_desc *d =
        daebus_app_find_handler(app, DAEBUS_HANDLER_ACTION, "get_status", 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    CU_ASSERT_EQUAL(d->fn.action(NULL, NULL, NULL), 2);
    CU_ASSERT_EQUAL(daebus_app_handler_count(app, DAEBUS_HANDLER_ACTION), 3);
    /* /users: GET from users_get, POST from users_post. */
    d = daebus_app_find_handler(app, DAEBUS_HANDLER_ROUTE, "/users", DAEBUS_GET);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    CU_ASSERT_PTR_EQUAL(d->fn.route, users_get);
    d = daebus_app_find_handler(app, DAEBUS_HANDLER_ROUTE, "/users", DAEBUS_POST);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    CU_ASSERT_PTR_EQUAL(d->fn.route, users_post);
    CU_ASSERT_PTR_NOT_NULL(daebus_app_find_handler(app, DAEBUS_HANDLER_SOCKET, "register", 0));
    CU_ASSERT_PTR_NOT_NULL(daebus_app_find_handler(app, DAEBUS_HANDLER_THREAD, "poller", 0));
    d = daebus_app_find_handler(app, DAEBUS_HANDLER_BACKGROUND, "system_status", 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    CU_ASSERT_DOUBLE_EQUAL(d->interval, 60.0, 1e-9);
    daebus_app_destroy(app);
}

static void test_blueprint_merge_prefix_and_override(void)
{
    daebus_app *app = new_app();
    CU_ASSERT_PTR_NOT_NULL_FATAL(app);
    CU_ASSERT_EQUAL(daebus_app_register_blueprint(app, &other_bp), 0);
    /* Registering twice is refused. */
    CU_ASSERT_EQUAL(daebus_app_register_blueprint(app, &other_bp), DAEBUS_EEXIST);
    const daebus_handler_desc *d =
        daebus_app_find_handler(app, DAEBUS_HANDLER_ROUTE, "/other/items/<id>", DAEBUS_DELETE);
    CU_ASSERT_PTR_NOT_NULL(d);
    CU_ASSERT_PTR_NULL(daebus_app_find_handler(app, DAEBUS_HANDLER_ROUTE, "/items/<id>", 0));
    /* The blueprint's get_status overrides the default one (later one wins). */
    d = daebus_app_find_handler(app, DAEBUS_HANDLER_ACTION, "get_status", 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    CU_ASSERT_EQUAL(d->fn.action(NULL, NULL, NULL), 1);
    /* One connect handler: the blueprint's replaced the default one. */
    CU_ASSERT_EQUAL(daebus_app_handler_count(app, DAEBUS_HANDLER_SOCKET_CONNECT), 1);
    /* Listener on the same channel replaced; background options kept. */
    CU_ASSERT_EQUAL(daebus_app_handler_count(app, DAEBUS_HANDLER_LISTEN), 1);
    d = daebus_app_find_handler(app, DAEBUS_HANDLER_BACKGROUND, "tick", 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    CU_ASSERT_TRUE(d->opts.run_at_start);
    CU_ASSERT_DOUBLE_EQUAL(d->interval, 0.5, 1e-9);
    d = daebus_app_find_handler(app, DAEBUS_HANDLER_THREAD, "worker", 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    CU_ASSERT_TRUE(d->opts.no_auto_start);
    /* ON_START hooks accumulate: 2 default + 1 from other_bp. */
    CU_ASSERT_EQUAL(daebus_app_handler_count(app, DAEBUS_HANDLER_ON_START), 3);
    daebus_app_destroy(app);
}

static int rt_calls;
static int rt_action(daebus_bus_request *req, const cJSON *payload, void *user)
{
    (void)req;
    (void)payload;
    rt_calls += *(int *)user;
    return 0;
}
static int freed;
static void free_user(void *u)
{
    (void)u;
    freed++;
}

static void test_runtime_blueprint(void)
{
    static int one = 1;
    daebus_blueprint *bp = daebus_blueprint_create("rt", "/api/");
    CU_ASSERT_PTR_NOT_NULL_FATAL(bp);
    daebus_handler_options o = DAEBUS_HANDLER_OPTIONS_INIT;
    o.user = &one;
    o.user_free = free_user;
    CU_ASSERT_EQUAL(daebus_blueprint_add_action(bp, "rt", rt_action, &o), 0);
    CU_ASSERT_EQUAL(daebus_blueprint_add_action(bp, "", rt_action, &o), DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(daebus_blueprint_add_action(bp, "x", NULL, &o), DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(daebus_blueprint_add_route(bp, "no-slash", NULL, NULL), DAEBUS_EINVAL);
    CU_ASSERT_EQUAL(daebus_blueprint_add_background(bp, "t", 0.0, NULL, NULL), DAEBUS_EINVAL);
    daebus_route_fn *rf = users_get;
    CU_ASSERT_EQUAL(daebus_blueprint_add_route(bp, "/", rf, NULL), 0);
    CU_ASSERT_EQUAL(daebus_blueprint_count(bp, 0), 2);
    daebus_app *app = new_app();
    CU_ASSERT_EQUAL(daebus_app_register_blueprint(app, bp), 0);
    CU_ASSERT_PTR_NOT_NULL(daebus_app_find_handler(app, DAEBUS_HANDLER_ROUTE, "/api", DAEBUS_GET));
    const daebus_handler_desc *d = daebus_app_find_handler(app, DAEBUS_HANDLER_ACTION, "rt", 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    d->fn.action(NULL, NULL, d->opts.user);
    CU_ASSERT_EQUAL(rt_calls, 1);
    daebus_app_destroy(app);
    CU_ASSERT_EQUAL(freed, 0);
    daebus_blueprint_destroy(bp);
    CU_ASSERT_EQUAL(freed, 1); /* user_free ran once, for the one registration with it */
    daebus_blueprint_destroy(NULL);
}

static void test_on_start_order(void)
{
    daebus_app *app = new_app();
    start_n = 0;
    CU_ASSERT_EQUAL(daebus_app_start(app), 0);
    CU_ASSERT_TRUE(daebus_app_is_running(app));
    CU_ASSERT_EQUAL(start_n, 2);
    CU_ASSERT_EQUAL(start_order[0], 1);
    CU_ASSERT_EQUAL(start_order[1], 2);
    daebus_app_stop(app);
    CU_ASSERT_EQUAL(daebus_app_wait(app), 0);
    CU_ASSERT_FALSE(daebus_app_is_running(app));
    daebus_app_destroy(app);
}

static int failing_hook(daebus_app *app, void *user)
{
    (void)app;
    (void)user;
    return DAEBUS_EHANDLER;
}

static void test_on_start_failure_aborts(void)
{
    daebus_blueprint *bp = daebus_blueprint_create("failing", NULL);
    CU_ASSERT_EQUAL(daebus_blueprint_add_on_start(bp, failing_hook, NULL), 0);
    daebus_app *app = new_app();
    CU_ASSERT_EQUAL(daebus_app_register_blueprint(app, bp), 0);
    CU_ASSERT_EQUAL(daebus_app_run(app), 1);
    CU_ASSERT_FALSE(daebus_app_is_running(app));
    daebus_app_destroy(app);
    daebus_blueprint_destroy(bp);
}

int main(void)
{
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("registration", NULL, NULL);
    CU_add_test(s, "macros fill the default blueprint", test_default_blueprint_counts);
    CU_add_test(s, "app tables, later one wins in a file", test_app_tables_after_default);
    CU_add_test(s, "blueprint prefix and override", test_blueprint_merge_prefix_and_override);
    CU_add_test(s, "run-time blueprint API", test_runtime_blueprint);
    CU_add_test(s, "ON_START order", test_on_start_order);
    CU_add_test(s, "ON_START failure aborts start-up", test_on_start_failure_aborts);
    return ts_run_cunit();
}
