/* outcome.h -- what becomes of a job after an attempt: done, retried at a
 * time with a count, dead with a reason, or dropped. One decision for every
 * mode that keeps jobs (BackgroundAsync's memory and BackgroundQueue's
 * Redis), so the same failure has the same outcome in both.
 *
 * Pure: no clock, no randomness, no locks, no allocation. The caller gives
 * the job, its worker's definition in the generation that ran it (NULL when
 * no loaded script defines the class), the result code of the run and a
 * jitter digit; it applies the decision itself (a heap, a Redis script).
 * Safe on any thread.
 *
 * The rules (Sidekiq's, sidekiq-compat section 4, with our departures
 * marked; README "Retries"):
 *   - success: done;
 *   - retry: false in the job (or in the worker, when the job has no retry):
 *     dropped after its one failure, no dead entry;
 *   - retries allowed: the job's retry, else the worker's, else 25 for a
 *     class no script defines (departure: Sidekiq drops it; we lose nothing);
 *   - the next count is retry_count + 1, or 0 on a first failure; while it
 *     is below the retries allowed the job is retried after Sidekiq's backoff
 *     count^4 + 15 + jitter * (count + 1) seconds;
 *   - arguments the C check refused are not retried (departure), unless the
 *     job was checked against another version of the worker's schema (its
 *     wh_schema differs from the schema that ran it: a deploy in progress),
 *     which is retried like any failure;
 *   - out of retries: dead, unless the payload says "dead": false (dropped).
 * Timeouts, out of memory and Lua errors are failures like any other. A job
 * interrupted by the host's own shutdown is not a failure: the caller keeps
 * it (it never reaches this decision). */
#ifndef WH_OUTCOME_H
#define WH_OUTCOME_H

#include <stdbool.h>

#include "app/catalog.h"
#include "app/job.h"
#include "lua/lworker.h" /* WH_DEFAULT_RETRY */

typedef enum {
    WH_OUTCOME_DONE,
    WH_OUTCOME_RETRY,
    WH_OUTCOME_DEAD,
    WH_OUTCOME_DROP,
} wh_outcome_kind;

typedef struct wh_outcome {
    wh_outcome_kind kind;
    int count;          /* RETRY, DEAD: the retry_count the job carries from now on */
    int max;            /* the retries allowed (-1: retry false) */
    double delay;       /* RETRY: seconds from now */
    bool skew;          /* refused by a schema other than the one it was checked against */
    const char *reason; /* DEAD, DROP: why, for the log (static text) */
} wh_outcome;

/* Decides the outcome of one attempt. def: the worker's definition in the
 * generation that ran the job, or NULL. rc: the run's result (0 = success,
 * else a WH_E* code). jitter: 0..9 (Sidekiq's rand(10)). */
void wh_outcome_decide(const wh_job *job, const wh_worker_def *def, int rc, int jitter, wh_outcome *out);

/* Sidekiq's delay before retry number count+1: count^4 + 15 + jitter*(count+1). */
double wh_outcome_backoff(int count, int jitter);

/* Logs the decision for a failed job (one wording for every mode). */
void wh_outcome_log(const wh_job *job, const wh_outcome *o, const char *error);

#endif
