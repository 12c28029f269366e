/* scripts.h -- the Lua scripts workerhost runs inside Redis. Each one is
 * atomic, which is what makes fetch, acknowledgement, scheduling and
 * recovery safe with several hosts and with a host that dies at any point.
 * None of them re-encodes a payload (Redis's cjson changes int64 values and
 * float digits): payloads are moved as the exact bytes they were stored as,
 * and the host computes rewritten payloads itself. */
#ifndef WH_SCRIPTS_H
#define WH_SCRIPTS_H

/* FETCH: moves up to ARGV[1] jobs, queue by queue in the order given, from
 * queue:<q> into this process's in-flight list for <q>: the same result as
 * one LMOVE RIGHT LEFT per job, in three commands per queue. ARGV[1] must
 * stay below Lua's unpack limit (a few thousand).
 *   KEYS: queue:<q1>, inflight:<q1>, queue:<q2>, inflight:<q2>, ...
 *   returns {count fetched from <q1>, from <q2>, ..., then every payload, oldest first} */
extern const char wh_script_fetch[];

/* ACK: records outcomes, each only if its exact payload is still in the
 * in-flight list (so recording twice, or after a reaper took the job back,
 * records nothing). Refuses (-1) when this process is no longer in the
 * registry.
 *   KEYS[1..7]: registry, stat:processed, stat:failed, stat:processed:<day>,
 *               stat:failed:<day>, retry, dead; KEYS[8..]: one in-flight list per job
 *   ARGV[1..4]: identity, now, daily ttl, dead cutoff score
 *   then per job: payload, kind, new payload, score
 *   kind: o = done, r = retry (ZADD retry score newp), d = dead (ZADD dead
 *   newp), x = failed and dropped, n = not JSON (dead as it is, not counted)
 *   returns the number of jobs recorded */
extern const char wh_script_ack[];

/* MOVE_DUE: moves scheduled or retry jobs to their queues, each only if this
 * call removed it from the sorted set (several hosts move each job once).
 *   KEYS[1]: the sorted set, KEYS[2]: queues, KEYS[3]: dead
 *   ARGV: queue key prefix, now, then per job: member, new payload, queue name
 *         (an empty queue name: the member is not a job; it goes to dead)
 *   returns how many moved */
extern const char wh_script_move_due[];

/* REQUEUE: puts the jobs of in-flight lists back on their queues, at the
 * end that is popped next, keeping their order.
 *   KEYS: inflight:<q1>, queue:<q1>, inflight:<q2>, queue:<q2>, ...
 *   returns how many moved */
/* RECONCILE: after a fetch reply may have been lost (a dropped connection),
 * puts back on their queues the in-flight entries this process does not hold.
 * KEYS: pairs of (in-flight list, its queue). ARGV: per pair, the number of
 * entries held, then each held entry's exact bytes. Entries in a list beyond
 * the held multiset go to the front (the popping end) of the queue, oldest
 * first. Returns how many moved. */
extern const char wh_script_reconcile[];

extern const char wh_script_requeue[];

/* REAP: recovers the in-flight jobs of a dead process. Unless ARGV[7] is
 * "1" (a same-machine check proved it dead), it does nothing while the
 * process's heartbeat key exists. A job recovered more than ARGV[6] times
 * within ARGV[5] seconds (counted under wh:recovered:<jid or sha1>) goes to
 * the dead set instead.
 *   KEYS[1]: registry, KEYS[2]: wh:inflight:<id>:queues, KEYS[3]: dead,
 *   KEYS[4]: the process's heartbeat key
 *   ARGV: identity, inflight prefix (ns..wh:inflight:), queue prefix
 *         (ns..queue:), recovered prefix, window, max, force, now
 *   returns the number of jobs recovered (-1: still alive) */
extern const char wh_script_reap[];

#endif
