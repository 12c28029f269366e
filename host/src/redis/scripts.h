/* scripts.h -- the Lua scripts workerhost runs inside Redis. Each one is
 * atomic, which is what makes fetch, acknowledgement, scheduling and
 * recovery safe with several hosts and with a host that dies at any point.
 * None of them re-encodes a payload (Redis's cjson changes int64 values and
 * float digits): payloads are moved as the exact bytes they were stored as,
 * and the host computes rewritten payloads itself.
 *
 * Every script checks what can fail before its first write and writes a job
 * where it goes before removing it from where it was (scripts.c says why),
 * and takes the time from Redis (TIME), not from the host. */
#ifndef WH_SCRIPTS_H
#define WH_SCRIPTS_H

#include <stddef.h>

/* MIGRATE: makes sure the keys are in this build's layout.
 *   KEYS[1]: wh:version, KEYS[2]: wh:registry
 *   ARGV: this layout's version, the key prefix (namespace + ":", or ""),
 *         the in-flight prefix (ns..wh:inflight:), layout 1's suffix of the
 *         set of a host's queues (":queues"), layout 2's prefix of that set
 *         (ns..wh:inflight-queues:)
 *   returns "ok" (already this layout, or a new Redis: version written),
 *   "migrated" (layout 1 with no live host: its sets renamed, version
 *   written), "live <identity>" (layout 1 and that host is alive: nothing
 *   done), or "version <v>" (another layout: nothing done). */
extern const char wh_script_migrate[];

/* MIGRATE's arguments after the script: numkeys, KEYS and ARGV, for the
 * key prefix ns ("name:" or ""), as owned strings. The one place that knows
 * them, for the host's connections and the synchronous client alike. */
#define WH_MIGRATE_NARGS 8
typedef struct wh_script_args {
    char *v[WH_MIGRATE_NARGS];
    size_t l[WH_MIGRATE_NARGS];
} wh_script_args;
void wh_script_migrate_args(const char *ns, wh_script_args *out);
void wh_script_args_free(wh_script_args *a);

/* REGISTER: puts this process in the registry together with the set of its
 * queues (what a reaper needs to find its in-flight lists), writing only
 * what is missing.
 *   KEYS[1]: registry, KEYS[2]: wh:inflight-queues:<id>, KEYS[3]: wh:version
 *   ARGV: identity, layout version, then every queue name
 *   returns 1 (it was in the registry), 0 (it was not: registered now), or
 *   an error (WHLAYOUT: the layout changed under it; WRONGTYPE). */
extern const char wh_script_register[];

/* FETCH: moves up to ARGV[1] jobs, queue by queue in the order given, from
 * queue:<q> into this process's in-flight list for <q>: the same result as
 * one LMOVE RIGHT LEFT per job, in three commands per queue. ARGV[1] must
 * stay below Lua's unpack limit (a few thousand). Moves nothing (-1) when
 * this process is not in the registry.
 *   KEYS[1]: registry, then queue:<q1>, inflight:<q1>, queue:<q2>, inflight:<q2>, ...
 *   ARGV: how many, identity
 *   returns {count fetched from <q1>, from <q2>, ..., then every payload,
 *   oldest first}, or -1; a queue whose key (or in-flight list) holds
 *   another type than a list is left alone, and its count is -1 */
extern const char wh_script_fetch[];

/* ACK: records outcomes, each only if its exact payload is still in the
 * in-flight list (so recording twice, or after a reaper took the job back,
 * records nothing). Refuses (-1) when this process is no longer in the
 * registry.
 *   KEYS[1..7]: registry, stat:processed, stat:failed, stat:processed:<day>,
 *               stat:failed:<day>, retry, dead; KEYS[8..]: one in-flight list per job
 *   ARGV[1..4]: identity, daily ttl, dead timeout (s), dead max jobs
 *   then per job: payload, kind, new payload, retry delay (s from now)
 *   kind: o = done, r = retry (ZADD retry now+delay newp), d = dead (ZADD
 *   dead newp), x = failed and dropped, n = not a job (dead as it is, not
 *   counted)
 *   returns the number of jobs recorded */
extern const char wh_script_ack[];

/* DUE: the members of a sorted set (schedule, retry) due by Redis's clock.
 *   KEYS[1]: the set; ARGV[1]: at most this many
 *   returns the members, earliest first */
extern const char wh_script_due[];

/* MOVE_DUE: moves scheduled or retry jobs to their queues, each only if it
 * is still in the sorted set (several hosts move each job once). A job whose
 * queue key holds another type, and a member that is not a job, go to dead.
 *   KEYS[1]: the sorted set, KEYS[2]: queues, KEYS[3]: dead
 *   ARGV: queue key prefix, then per job: member, new payload, queue name
 *         (an empty queue name: the member is not a job)
 *   returns {moved, sent to dead} */
extern const char wh_script_move_due[];

/* REQUEUE: puts the jobs of in-flight lists back on their queues, at the
 * end that is popped next, keeping their order. A list whose queue key holds
 * another type is left where it is (the reaper recovers it once fixed).
 *   KEYS: inflight:<q1>, queue:<q1>, inflight:<q2>, queue:<q2>, ...
 *   returns {moved, left in flight} */
extern const char wh_script_requeue[];

/* RECONCILE: after a fetch reply may have been lost (a dropped connection),
 * puts back on their queues the in-flight entries this process does not hold.
 * KEYS: pairs of (in-flight list, its queue). ARGV: per pair, the number of
 * entries held, then each held entry's exact bytes. Entries in a list beyond
 * the held multiset go to the front (the popping end) of the queue, oldest
 * first. Returns how many moved. */
extern const char wh_script_reconcile[];

/* REAP: recovers the in-flight jobs of a dead process. Unless ARGV[7] is
 * "1" (a same-machine check proved it dead), it does nothing while the
 * process's heartbeat key exists. A job recovered more than ARGV[6] times
 * within ARGV[5] seconds (counted under wh:recovered:<jid or sha1>) goes to
 * the dead set instead. The process leaves the registry only when nothing
 * was left behind (a list whose queue key holds another type stays).
 *   KEYS[1]: registry, KEYS[2]: wh:inflight-queues:<id>, KEYS[3]: dead,
 *   KEYS[4]: the process's heartbeat key
 *   ARGV: identity, inflight prefix (ns..wh:inflight:), queue prefix
 *         (ns..queue:), recovered prefix, window, max, force
 *   returns {recovered, left in flight}, or -1: still alive */
extern const char wh_script_reap[];

#endif
