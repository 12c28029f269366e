/* server.h -- BackgroundQueue: the host's side of Redis, in Sidekiq's layout,
 * with reliable fetch.
 *
 * One I/O thread runs a libuv loop that owns every Redis connection (hiredis
 * async contexts are not thread-safe): a command connection, and one
 * connection per queue that blocks in BLMOVE while the host is idle. Worker
 * threads never talk to Redis: fetched jobs go to the executor (app/async.c,
 * the same engine as BackgroundAsync) and outcomes come back through
 * wh_rserver_outcome, which queues them for the I/O thread to record in
 * batches.
 *
 * Guarantees (see the README, "BackgroundQueue"): a job moves atomically from
 * queue:<q> into this process's in-flight list and leaves it only when its
 * outcome is recorded (idempotently); if the process dies, another host's
 * reaper puts it back. At-least-once: a job may run twice, never zero times,
 * as long as Redis keeps what it acknowledged (see appendfsync). */
#ifndef WH_RSERVER_H
#define WH_RSERVER_H

#include <stdbool.h>

#include "app/async.h"
#include "app/catalog.h"
#include "config/config.h"
#include "core/err.h"
#include "workerhost.h"

typedef struct wh_rserver wh_rserver;

typedef struct wh_rserver_options {
    const wh_config *cfg;  /* borrowed; outlives the server */
    wh_catalog *catalog;   /* borrowed, read by wh_rserver_new only: the queues to fetch when
                            * workers.queues is not set */
    wh_host *host;         /* borrowed, or NULL: the generation published in the heartbeat, and
                            * RELOAD signals (outcomes come with the definition that ran the job) */
} wh_rserver_options;

/* Parses queue.uri and prepares the server (no connection yet). Owned:
 * wh_rserver_free. WH_ECONFIG for a bad URI. */
int wh_rserver_new(const wh_rserver_options *opts, wh_rserver **out, wh_err *err);

/* The executor the server feeds. Set before start; borrowed. */
void wh_rserver_set_executor(wh_rserver *s, wh_async *exec);

/* Starts the I/O thread. Redis down is not an error: the server logs it and
 * keeps trying with backoff. */
int wh_rserver_start(wh_rserver *s, wh_err *err);

/* The executor's outcome hook (wh_async_options.outcome): takes the job. */
void wh_rserver_outcome(void *s, wh_job *job, const wh_worker_def *def, const wh_run_result *res, bool stopping);

/* Stops fetching (quiet). Running and prefetched jobs still finish. */
void wh_rserver_quiet(wh_rserver *s);

/* Stop, in order: no more fetching; the executor finishes running jobs
 * within `timeout` seconds; outcomes are recorded; every job still in this
 * process's in-flight lists goes back to the front of its queue; the process
 * leaves the registry. Returns the number of jobs put back. */
size_t wh_rserver_stop(wh_rserver *s, double timeout);

/* Frees the server. Free the executor first: jobs it still holds (queued,
 * never run) live in the server's records of fetched entries. Accepts NULL. */
void wh_rserver_free(wh_rserver *s);

/* This process's identity, "<hostname>:<pid>:<12 hex>". Borrowed. */
const char *wh_rserver_identity(const wh_rserver *s);

/* "<hostname>:<pid>:" (DYNO instead of the hostname when set, as Sidekiq):
 * what the identity of the process `pid` on this machine starts with. */
void wh_rserver_identity_prefix(long pid, char *out, size_t n);

#endif
