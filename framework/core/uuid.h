/* uuid.h - random (version 4) UUIDs as text (core layer).
 *
 * Request ids, reply channels and client ids are uuid4 text. libuuid's
 * uuid_generate_random() re-seeds random() on every call; these take their
 * bytes from getrandom() through a small per-thread buffer instead (one
 * system call per 16 ids), refilled after fork() so that parent and child
 * never share bytes.
 *
 * Thread: any thread.
 */
#ifndef DAEBUS_CORE_UUID_H
#define DAEBUS_CORE_UUID_H

#define DAEBUS__UUID_LEN 36 /* text length, without the NUL */

/* Writes a uuid4 as 36 lowercase characters plus a NUL into out
 * (8-4-4-4-12 hex digits, version 4, variant RFC 4122). */
void daebus__uuid4(char out[DAEBUS__UUID_LEN + 1]);

#endif
