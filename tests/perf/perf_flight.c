/* perf_flight.c - see perf_flight.h. */
#include "perf_flight.h"
#include <pthread.h>

#define FLIGHT_TIMEOUT 10.0

typedef struct flight {
    daebus_caller *caller;
    const char *service, *action;
    const cJSON *payload;
    double end;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    long done, errors;
    int outstanding;
} flight;

static void on_reply(daebus_caller *caller, int status, const cJSON *payload, const char *message,
                     void *user);

static int issue(flight *f)
{
    return daebus_caller_request_async(f->caller, f->service, f->action, f->payload, FLIGHT_TIMEOUT,
                                       on_reply, NULL, f, NULL);
}

/* Counts the answer and issues the next while the round lasts; the last
 * answer of a round wakes perf_flight_window. */
static void on_reply(daebus_caller *caller, int status, const cJSON *payload, const char *message,
                     void *user)
{
    (void)caller, (void)payload, (void)message;
    flight *f = user;
    pthread_mutex_lock(&f->lock);
    f->done++;
    if (status != 0)
        f->errors++;
    bool again = perf_now() < f->end;
    pthread_mutex_unlock(&f->lock);
    if (again && issue(f) == 0)
        return;
    pthread_mutex_lock(&f->lock);
    if (again)
        f->errors++;
    if (--f->outstanding == 0)
        pthread_cond_signal(&f->cond);
    pthread_mutex_unlock(&f->lock);
}

double perf_flight_window(daebus_caller *c, const char *service, const char *action,
                          const cJSON *payload, int window, double seconds, long *errors,
                          long *done)
{
    flight f = {.caller = c, .service = service, .action = action, .payload = payload};
    pthread_mutex_init(&f.lock, NULL);
    pthread_cond_init(&f.cond, NULL);
    double t0 = perf_now();
    f.end = t0 + seconds;
    pthread_mutex_lock(&f.lock);
    f.outstanding = window;
    pthread_mutex_unlock(&f.lock);
    for (int i = 0; i < window; i++)
        if (issue(&f) != 0) {
            pthread_mutex_lock(&f.lock);
            f.errors++;
            f.outstanding--;
            pthread_mutex_unlock(&f.lock);
        }
    pthread_mutex_lock(&f.lock);
    while (f.outstanding > 0)
        pthread_cond_wait(&f.cond, &f.lock);
    pthread_mutex_unlock(&f.lock);
    double rate = (double)f.done / (perf_now() - t0);
    *errors += f.errors;
    if (done)
        *done += f.done;
    pthread_mutex_destroy(&f.lock);
    pthread_cond_destroy(&f.cond);
    return rate;
}

void perf_flight_one(daebus_caller *c, const char *service, const char *action,
                     const cJSON *payload, double seconds, perf_samples *lat, long *errors,
                     long *done)
{
    double end = perf_now() + seconds;
    while (perf_now() < end) {
        double t = perf_now();
        cJSON *reply = NULL;
        daebus_error err = {0};
        int rc = daebus_caller_request(c, service, action, payload, FLIGHT_TIMEOUT, &reply, &err);
        double took = perf_now() - t;
        cJSON_Delete(reply);
        if (rc != 0)
            (*errors)++;
        else
            perf_samples_add(lat, took);
        if (done)
            (*done)++;
    }
}
