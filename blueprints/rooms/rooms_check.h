/* rooms_check.h - input checks and error replies of the rooms blueprint (internal).
 *
 * Names (user and room) are whole UTF-8 characters without control
 * characters, trimmed, never cut (rooms.h says which characters). Refusals
 * are counted and logged at most once a second.
 * Thread: callable from any thread.
 */
#ifndef DAEBUS_BP_ROOMS_CHECK_H
#define DAEBUS_BP_ROOMS_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <daebus/daebus.h>

typedef enum {
    DAEBUS__ROOMS_FIELD_OK,
    DAEBUS__ROOMS_FIELD_MISSING,
    DAEBUS__ROOMS_FIELD_TOO_LONG,
    DAEBUS__ROOMS_FIELD_BAD_CHARS,
    DAEBUS__ROOMS_FIELD_NOMEM
} daebus__rooms_field_rc;

/* The string field key of data, trimmed, copied into *out (malloc'd; NULL
 * unless OK). MISSING when absent, not a string or blank; TOO_LONG over max
 * bytes; BAD_CHARS when name is set and the text is not a clean name. */
daebus__rooms_field_rc daebus__rooms_get_field(const cJSON *data, const char *key, size_t max,
                                               bool name, char **out);
/* The error text for a refused name field ("Username", "Room name") in buf. */
const char *daebus__rooms_name_error(daebus__rooms_field_rc rc, const char *what, size_t max,
                                     char *buf, size_t cap);

/* {"error": text, "status": "error"}. Ownership: the caller's. */
cJSON *daebus__rooms_error_reply(const char *text);
/* The same, counted as a refusal and logged (one line a second). */
cJSON *daebus__rooms_refuse(const char *client_id, const char *text);
/* Refusals so far. */
unsigned long long daebus__rooms_refused(void);

/* Counts a refusal. Returns: true when it may be logged, *quiet = refusals
 * not logged since the last line. */
bool daebus__rooms_refusal_log_slot(unsigned long long *quiet);
/* " (N more refusals ... not logged)" in a thread-local buffer, "" for 0. */
const char *daebus__rooms_quiet_note(unsigned long long quiet);
/* s for a log line: printable ASCII, other bytes as \xHH, at most cap - 1. */
const char *daebus__rooms_loggable(char *dst, size_t cap, const char *s);

#endif
