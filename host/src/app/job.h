/* job.h -- one job: its payload as a JSON tree, in Sidekiq's shape
 *   {"class":"DownloadWorker","args":[{...}],"queue":"default","retry":25,
 *    "jid":"<24 hex>","created_at":1700000000.5,"enqueued_at":1700000000.5}
 * plus the fields read out of it. The same struct carries a job from any
 * source (C API, Lua, command line, later Redis) to the runner. */
#ifndef WH_JOB_H
#define WH_JOB_H

#include <stdbool.h>
#include <stdint.h>

#include "app/catalog.h"
#include "core/buf.h"
#include "core/err.h"
#include "json/json.h"
#include "lua/lworker.h"
#include "redis/client.h"
#include "workerhost.h"

/* The largest retry and retry_count a payload may carry; larger values
 * (from other clients) are taken as this, counts below -1 as -1 (Sidekiq's
 * "retried by hand", see job.c). */
#define WH_RETRY_COUNT_MAX 1000000

/* The struct, its strings and the payload tree all live in one arena (the
 * doc), so a job is one allocation and one free. */
typedef struct wh_job {
    wh_json_doc *doc;       /* owns everything below except last_error */
    const wh_json *payload; /* the root object as parsed; NULL for a job made by wh_job_new */
    const wh_json *args;    /* payload "args" (an array) */
    const char *class_name; /* in doc */
    const char *queue;      /* in doc */
    char jid[WH_JID_SIZE];
    int retry;              /* from the payload: count, WH_RETRY_FALSE, or WH_RETRY_DEFAULT if absent */
    bool has_retry_count;
    int64_t retry_count;    /* -1..WH_RETRY_COUNT_MAX (clamped) */
    double created_at, enqueued_at;
    double run_at;          /* when it should run (epoch s); 0 = now */
    char schema_hash[17];   /* of the schema the args were checked against; "" if unknown */
    const char *raw;        /* BackgroundQueue: the exact bytes fetched (in doc), or NULL */
    size_t raw_len;
    const char *source_queue; /* BackgroundQueue: the queue it was fetched from (in doc) */
    void *source_ref;       /* BackgroundQueue: the server's record of the fetched entry (opaque;
                             * not owned: it outlives the job and goes back with the outcome) */

    /* private to the engine that holds the job */
    struct wh_job *next;    /* queue link */
    char *last_error;       /* owned; the error of the last failed attempt */
    bool first_attempt_done;
    bool detached;          /* wh_job_raw_init: the struct is the caller's, not in doc */
} wh_job;

/* Reads a payload from JSON text (as a queue or a foreign client hands it).
 * Returns an owned job (free with wh_job_free), or NULL with err:
 * WH_EJSON for text that is not JSON, WH_EARGS for a payload without a
 * string "class" or an array "args" (the message says which). */
wh_job *wh_job_parse(const char *text, size_t len, const wh_json_limits *limits, wh_err *err);

/* Makes *job (storage the caller owns) a job that is, for now, only its
 * fetched bytes: raw (len bytes) and queue are borrowed and must outlive the
 * job; nothing is parsed, class_name is NULL. The thread that runs it calls
 * wh_job_materialize first, so parsing happens there (BackgroundQueue: off
 * the I/O thread). wh_job_free then frees only its tree, once parsed. */
void wh_job_raw_init(wh_job *job, const char *raw, size_t len, const char *queue);

/* Parses a wh_job_raw_init job's bytes and fills in its fields, as wh_job_parse
 * would. Returns 0, or WH_EJSON / WH_EARGS as wh_job_parse; on failure
 * class_name stays NULL (the job is not a job) and the job can still be
 * freed. A job that is already parsed is left alone (returns 0). */
int wh_job_materialize(wh_job *job, const wh_json_limits *limits, wh_err *err);

/* Builds a new job of worker def from call-shaped arguments (`args`, in
 * `args_doc`, already checked) and options. Takes ownership of args_doc.
 * `now` is epoch seconds. Never fails. */
wh_job *wh_job_new(const wh_worker_def *def, wh_json_doc *args_doc, const wh_json *args,
                   const wh_enqueue_options *opts, double now);

void wh_job_free(wh_job *job); /* accepts NULL */

/* Appends the payload's compact JSON text: as parsed (byte for byte, numbers
 * included), or for a job made by wh_job_new, as Sidekiq's client writes it:
 * class, args, queue, retry (always), jid, created_at, enqueued_at (float
 * seconds), plus "wh_schema", the hash of the schema its arguments were
 * checked against (hosts use it to tell version skew from bad arguments). */
int wh_job_write(const wh_job *job, wh_buf *out, wh_err *err);
/* The same, without enqueued_at when with_enqueued_at is false (members of
 * the schedule set carry none, as Sidekiq writes them). */
int wh_job_write_opts(const wh_job *job, wh_buf *out, bool with_enqueued_at, wh_err *err);

/* Writes each job's payload as it is pushed to Redis at time `now` into text
 * (appended, back to back) and fills items[0..n): a job whose run_at is later
 * than now is scheduled (at = run_at, the payload without enqueued_at, as
 * Sidekiq's schedule members), any other is pushed at once (at = 0, the
 * payload with it). The items borrow each job's queue and text's bytes, until
 * either changes. Returns 0 or wh_job_write_opts's error; then no item is
 * usable. */
int wh_job_redis_items(wh_job *const *jobs, size_t n, double now, wh_buf *text, wh_redis_item *items, wh_err *err);

/* Writes payload (a parsed object) with the members in `set` replaced or
 * added: every other member is written exactly as it was read (numbers keep
 * their text), in its place; the new values follow at the end. Used for
 * retries (error fields) and the scheduler (a fresh enqueued_at). */
int wh_job_rewrite(const wh_json *payload, const wh_json_member *set, size_t nset, wh_buf *out, wh_err *err);

/* The job's meta view for perform's `job` table (borrows from job). */
void wh_job_meta_of(const wh_job *job, wh_job_meta *out);

#endif
