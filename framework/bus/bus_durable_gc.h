/* bus_durable_gc.h - durable actions: what would grow in Redis without bound (internal).
 *
 * The consumer of a replica in the group "daebus" is named after its
 * instance id, new at every start: every restart and every crash would leave
 * one more consumer in the group forever. Every few visibility periods the
 * reader sweeps (one script, atomic): consumers with nothing pending, idle
 * for DAEBUS__DURABLE_GC_IDLE visibility periods, are deleted (never itself),
 * and entries delivered and acknowledged but not deleted (a replica lost
 * between its XACK and its XDEL) are trimmed (XTRIM MINID up to the oldest
 * pending or undelivered entry). A replica that stops cleanly deletes its own
 * consumer when it has nothing pending. Docs: docs/messaging/durable.md,
 * "Memory and sizing".
 */
#ifndef DAEBUS_BUS_DURABLE_GC_H
#define DAEBUS_BUS_DURABLE_GC_H

typedef struct daebus_bus daebus_bus;

/* A consumer idle this many visibility periods (and with nothing pending)
 * is deleted; the sweep runs every DAEBUS__DURABLE_GC_EVERY periods. */
#define DAEBUS__DURABLE_GC_IDLE  4
#define DAEBUS__DURABLE_GC_EVERY 2

/* Sweeps the group of stream key once *next (monotonic seconds, 0 at first)
 * has passed, then sets *next. consumer: this replica's (kept). Runs on the
 * publisher pool; a failure is only logged at debug level (the reader logs
 * a lost Redis). Thread: the durable reader. */
void daebus__durable_gc_tick(daebus_bus *bus, const char *key, const char *consumer,
                             double visibility, double *next);

/* One sweep. Returns: 0 with *deleted consumers and *trimmed entries, or a
 * negative code (DAEBUS_ECONN, DAEBUS_EREPLY). */
int daebus__durable_gc_sweep(daebus_bus *bus, const char *key, const char *consumer,
                             long long min_idle_ms, long long *deleted, long long *trimmed);

/* A clean stop, once what the replica took has drained: deletes its own
 * consumer when it has nothing pending (else the others' sweeps do, after
 * its entries were claimed). Does nothing when the bus read no stream.
 * Thread: the app's (bus stop, before the publisher pool closes). */
void daebus__durable_gc_leave(daebus_bus *bus);

/* Seconds a done record is kept after the request's deadline: the bus
 * option durable_done_ttl (rounded up), or fallback when it is 0.
 * Thread: callable from any thread. */
long long daebus__durable_done_ttl(const daebus_bus *bus, long long fallback);

#endif
