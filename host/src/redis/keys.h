/* keys.h -- every Redis key workerhost reads or writes, in one place.
 *
 * Sidekiq's keys (../shared/docs/sidekiq-compat.md, section 1) keep their
 * names so Sidekiq's API and Web UI read our state. The keys we add start
 * with "wh:" and are documented in the README as a wire format whose
 * version is in WH_KEY_VERSION. With queue.namespace = "ns" every key gets
 * the prefix "ns:" (set members and values do not), as Sidekiq 6's
 * redis-namespace does. */
#ifndef WH_KEYS_H
#define WH_KEYS_H

/* ---- Sidekiq's ---- */
#define WH_KEY_QUEUES "queues"             /* SET of queue names */
#define WH_KEY_QUEUE_PREFIX "queue:"       /* LIST queue:<name>: LPUSH in, pop from the right */
#define WH_KEY_SCHEDULE "schedule"         /* ZSET, score = run at (float s) */
#define WH_KEY_RETRY "retry"               /* ZSET, score = next attempt (float s) */
#define WH_KEY_DEAD "dead"                 /* ZSET, score = time of death */
#define WH_KEY_PROCESSED "stat:processed"  /* + ":YYYY-MM-DD" daily */
#define WH_KEY_FAILED "stat:failed"        /* + ":YYYY-MM-DD" daily */
#define WH_KEY_PROCESSES "processes"       /* SET of identities */
/* <identity> HASH heartbeat; <identity>:workers and <identity>:work HASH in
 * progress; <identity>-signals LIST of TSTP/TERM */

/* ---- ours (wire format version 2) ----
 * No key below can be the same as another for any queue name or identity:
 * each family has a prefix no other family's key starts with. (Layout 1 kept
 * a host's set of queues at wh:inflight:<identity>:queues, which is also the
 * in-flight list of a queue named "queues"; MIGRATE renames those sets.) */
#define WH_KEY_VERSION "wh:version"        /* STRING "2": the layout of the keys below */
#define WH_KEY_VERSION_VALUE "2"
#define WH_KEY_REGISTRY "wh:registry"      /* SET of identities that may own in-flight lists */
#define WH_KEY_INFLIGHT_PREFIX "wh:inflight:" /* LIST wh:inflight:<identity>:<queue>: jobs being run */
#define WH_KEY_QUEUES_OF_PREFIX "wh:inflight-queues:" /* SET wh:inflight-queues:<identity>: its queue names */
#define WH_KEY_V1_QUEUES_OF_SUFFIX ":queues" /* layout 1: SET wh:inflight:<identity>:queues */
#define WH_KEY_RECOVERED_PREFIX "wh:recovered:" /* STRING wh:recovered:<jid or sha1>: recoveries, TTL 72 h */
#define WH_KEY_REAPER_LOCK "wh:reaper-lock"  /* STRING, SET NX PX: one reaper at a time */
#define WH_KEY_CONTROL "wh:control"        /* LIST of control messages (reload) */

#define WH_DEAD_MAX_JOBS 10000
#define WH_DEAD_TIMEOUT_S 15552000 /* 180 days */
#define WH_DAILY_STATS_TTL_S 157680000 /* 5 years */
#define WH_HEARTBEAT_TTL_S 60
#define WH_RECOVERY_WINDOW_S 259200 /* 72 hours */
#define WH_RECOVERY_MAX 3

#endif
