/* async.h -- the BackgroundAsync engine: an in-process queue per named
 * queue, served by workers.concurrency threads that each own one Lua VM.
 *
 * Threads: any thread may push (wh_async_push); the engine's own threads
 * run jobs; start/stop/free belong to the owner. Everything shared sits
 * behind one mutex; workers sleep on a condition variable and are woken only
 * when a job arrives while some of them wait, and the scheduler thread sleeps
 * until the earliest scheduled job is due (no polling tick).
 *
 * Time comes from an injectable clock, so tests can drive scheduling and
 * retry backoff without sleeping. */
#ifndef WH_ASYNC_H
#define WH_ASYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "app/catalog.h"
#include "app/job.h"
#include "config/config.h"
#include "lua/lmodule.h"
#include "lua/vm.h"

typedef struct wh_async wh_async;

typedef struct wh_async_clock {
    double (*now)(void *ud); /* epoch seconds */
    void *ud;
} wh_async_clock;

/* Called after every attempt, on the thread that ran it; res is borrowed.
 * Must be quick and must not call back into the engine. */
typedef void (*wh_async_observer)(void *ud, const wh_job *job, const wh_run_result *res);

typedef struct wh_async_options {
    const wh_config *cfg;        /* borrowed; must outlive the engine */
    wh_catalog *catalog;         /* retained by the engine */
    const wh_lhost *lhost;       /* installed in every VM (wh.enqueue) */
    wh_async_clock clock;        /* {NULL} = the real clock */
    bool manual_schedule;        /* tests: no scheduler thread; call wh_async_promote_due */
    wh_async_observer observer;  /* may be NULL */
    void *observer_ud;
    /* 0 = no jitter in the retry backoff (tests); otherwise rand(10) as Sidekiq */
    bool no_jitter;
    /* BackgroundQueue: every finished attempt goes here (the job's ownership
     * with it) instead of the in-memory retry and dead list. Called on the
     * worker thread, without the engine's lock. `stopping` tells that the
     * engine was stopping when the attempt ended; `def` is the worker's
     * definition in the generation that ran the job (NULL: no script defines
     * its class, or the payload was not a job), for wh_outcome_decide. */
    void (*outcome)(void *ud, wh_job *job, const wh_worker_def *def, const wh_run_result *res, bool stopping);
    void *outcome_ud;
} wh_async_options;

typedef struct wh_async_stats {
    uint64_t processed;   /* attempts finished, failures included */
    uint64_t failed;      /* attempts that failed */
    size_t queued;        /* waiting in queues */
    size_t scheduled;     /* waiting for their time (in/at and retries) */
    size_t retries;       /* of which retries */
    size_t running;
    size_t dead;          /* in the dead list */
    uint64_t dead_total;  /* ever sent to the dead list */
    uint64_t vm_rebuilds;
    bool quiet;
    unsigned generation;  /* of the catalog new jobs run on (see wh_async_set_catalog) */
    size_t on_generation; /* threads whose VM is built from that generation */
} wh_async_stats;

/* Creates the engine (threads not started). Owned: wh_async_free. */
wh_async *wh_async_new(const wh_async_options *opts);

/* Creates each worker thread's VM and starts the threads. The code of the
 * failure if a VM cannot be built (WH_ESCRIPT, WH_ENOMEM); WH_EUNAVAIL if no
 * worker thread, or the scheduler thread, could be started (some workers
 * failing is logged, and the engine runs with the rest). After a failure,
 * wh_async_free cleans up. */
int wh_async_start(wh_async *a, wh_err *err);

/* Takes ownership of job (also on failure: it is freed). A job with a
 * future run_at waits in the schedule. Returns 0, or WH_EFULL when
 * workers.queue_limit jobs are already held (the message says so), or
 * WH_EUNAVAIL when the engine is stopping. */
int wh_async_push(wh_async *a, wh_job *job, wh_err *err);

/* Puts n jobs on their queues under one lock, waking as many waiting
 * workers as needed (BackgroundQueue hands over whole fetched batches).
 * Takes the first *accepted jobs; the rest (when stopping) stay the
 * caller's. No queue limit and no schedule: the caller bounds what it
 * fetches. */
void wh_async_push_many(wh_async *a, wh_job **jobs, size_t n, size_t *accepted);

/* Moves every scheduled job that is due by the clock onto its queue; returns
 * how many. The scheduler thread calls it; tests call it in manual mode. */
size_t wh_async_promote_due(wh_async *a);

/* Blocks until nothing is queued or running and no scheduled job is due
 * within `within` seconds (from now), or until the engine stops. */
void wh_async_wait_idle(wh_async *a, double within);

/* Quiet: no new jobs start; running ones finish. Irreversible (as Sidekiq). */
void wh_async_quiet(wh_async *a);

/* Stops taking jobs, lets running jobs finish for up to `timeout` seconds,
 * then interrupts Lua code still running (it fails as timed out). Threads
 * stuck inside a C call past that are left behind (detached). Returns the
 * number of jobs abandoned in memory (queued + scheduled), and logs it. */
size_t wh_async_stop(wh_async *a, double timeout);

/* Stops first if needed; accepts NULL. When wh_async_stop had to leave a
 * thread behind, the engine (and that thread's VM) is deliberately not
 * freed, since the thread touches it when its C call returns. */
void wh_async_free(wh_async *a);

void wh_async_get_stats(wh_async *a, wh_async_stats *out);

/* Reload: makes cat (retained; the previous catalog is released) the code
 * of generation `generation`. Each thread finishes the job it runs on its
 * old VM, then rebuilds its VM from cat before its next job; idle threads
 * rebuild at once. A thread's VM rebuilt later (recycling, memory error)
 * keeps the catalog it was switched to. Any thread may call it; calls must
 * not overlap (the host serializes them). */
void wh_async_set_catalog(wh_async *a, wh_catalog *cat, unsigned generation);

/* Calls fn for each job running now, under the engine's lock (fn must be
 * quick and must not call the engine; job is borrowed for the call). */
void wh_async_each_running(wh_async *a, void (*fn)(void *ud, size_t worker, const wh_job *job, double since),
                           void *ud);

/* How many threads the last stop left behind inside a C call. */
size_t wh_async_left_behind(const wh_async *a);

/* The dead list, newest first: copies up to n entries' jid, class and
 * error into caller-owned arrays of strings (free each with wh_free);
 * returns how many. */
size_t wh_async_dead(wh_async *a, char **jids, char **classes, char **errors, size_t n);

#endif
