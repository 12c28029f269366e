/* workerhost.h -- the public C API of workerhost.
 *
 * A C program embeds the host: create it from an app root (config/ and
 * workers/) or a config file, start it, enqueue jobs by worker class name with
 * JSON arguments, stop it, free it.
 *
 * Conventions, everywhere in this header:
 *   - A function that can fail returns 0 (WH_OK) or a negative WH_E* code and,
 *     when `err` is not NULL, fills *err with the same code and a message.
 *     `err` is always the last parameter and is caller-owned (usually on the
 *     stack); nothing in it needs freeing.
 *   - Strings passed in are borrowed for the duration of the call unless a
 *     comment says otherwise. Strings returned are borrowed from the object
 *     that returned them unless a comment says "owned".
 *   - Threads: see each function. A wh_host may be shared by many threads for
 *     wh_host_enqueue; creating, starting, stopping and freeing it belong to
 *     one thread (the owner). */
#ifndef WORKERHOST_H
#define WORKERHOST_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WORKERHOST_VERSION "0.1.0"

/* ---- errors ---------------------------------------------------------- */

enum {
    WH_OK = 0,
    WH_EINVAL = -1,    /* bad call or command-line usage */
    WH_ECONFIG = -2,   /* configuration file error */
    WH_ESCRIPT = -3,   /* a worker script failed to load or define */
    WH_EARGS = -4,     /* job arguments refused by the schema check */
    WH_ENOCLASS = -5,  /* no worker with that class name */
    WH_EUNAVAIL = -6,  /* backend unavailable (Redis down, host stopped) */
    WH_EFULL = -7,     /* queue full: the job was not accepted */
    WH_EJOB = -8,      /* the job ran and failed (ForegroundBlocking) */
    WH_ENOMEM = -9,    /* out of memory (a VM's memory limit, say) */
    WH_EIO = -10,      /* reading or writing a file failed */
    WH_EJSON = -11,    /* malformed JSON */
    WH_ETIMEOUT = -12, /* a job ran past its timeout */
    WH_ESTATE = -13,   /* the call is not valid in the object's current state */
};

/* Error detail. Caller-owned, usually on the stack; fixed size, no heap. */
typedef struct wh_err {
    int code;          /* WH_OK or a WH_E* value */
    char msg[1024];    /* human-readable, NUL-terminated; truncated if longer */
    const char *file;  /* source file of workerhost that set it (static) */
    int line;          /* and its line */
} wh_err;

#define WH_ERR_INIT {0, {0}, NULL, 0}

/* Static text for a code ("arguments refused"); never NULL. */
const char *wh_strerror(int code);

/* ---- the host -------------------------------------------------------- */

typedef struct wh_host wh_host; /* opaque */

typedef struct wh_host_options {
    const char *root;        /* app root holding config/ and workers/; NULL = "." */
    const char *env;         /* NULL = $WORKERHOST_ENV, else "development" */
    const char *config_file; /* NULL = <root>/config/<env>.yaml */
} wh_host_options;

/* Reads the configuration and loads and checks every worker script.
 * On success *out is an owned host: free it with wh_host_free.
 * Errors: WH_ECONFIG (with file, line, column and key path), WH_ESCRIPT
 * (with file and line). Thread: any; the calling thread becomes the owner.
 * Process-wide state is left alone: it neither unsets the environment
 * variables the configuration read nor makes the process non-dumpable, and
 * workers.allow_core_dumps has no effect here. The workerhost command does
 * both itself (prctl(PR_SET_DUMPABLE, 0), unsetenv before threads start);
 * an embedding program that wants the same does it too. */
int wh_host_new(wh_host **out, const wh_host_options *opts, wh_err *err);

/* Starts processing according to workers.mode. In ForegroundBlocking mode
 * there is nothing to start and this returns 0. Owner thread only. */
int wh_host_start(wh_host *h, wh_err *err);

/* Retry setting of one enqueue. */
#define WH_RETRY_DEFAULT (-2) /* use the worker's `retry` */
#define WH_RETRY_FALSE (-1)   /* no retries, no dead set */

typedef struct wh_enqueue_options {
    const char *queue; /* NULL = the worker's queue */
    double in;         /* seconds from now; 0 = now. Ignored in ForegroundBlocking */
    double at;         /* epoch seconds; 0 = not set. Ignored in ForegroundBlocking */
    int retry;         /* WH_RETRY_DEFAULT, WH_RETRY_FALSE or a count >= 0 */
} wh_enqueue_options;

#define WH_ENQUEUE_OPTIONS_INIT {NULL, 0.0, 0.0, WH_RETRY_DEFAULT}

#define WH_JID_SIZE 25 /* 24 hex characters and a NUL */

/* Enqueues one job of worker `class_name`. `args_json` (len bytes, need not
 * be NUL-terminated) is what perform receives as `args`: a JSON object for a
 * worker with named fields, a JSON array for a positional one. The arguments
 * are checked against the worker's schema in C first; a refused job is not
 * queued (WH_EARGS, the message names the argument path).
 * On success writes the new job's id into jid_out (may be NULL).
 * In BackgroundQueue mode the job is pushed to Redis as Sidekiq's client
 * does (WH_EUNAVAIL, within about 2 s, when Redis cannot be reached).
 * In ForegroundBlocking mode the job runs now, in the calling thread, and the
 * call returns its outcome: 0, or WH_EJOB with the job's error in err
 * (jid_out is filled in both cases).
 * Errors: WH_ENOCLASS, WH_EARGS, WH_EJSON, WH_EFULL, WH_EUNAVAIL, WH_EJOB.
 * Thread: any thread, concurrently, once wh_host_new has returned. */
int wh_host_enqueue(wh_host *h, const char *class_name, const char *args_json, size_t len,
                    const wh_enqueue_options *opts, char jid_out[WH_JID_SIZE], wh_err *err);

/* Enqueues n jobs of worker `class_name`: args_json[i] (lens[i] bytes) as in
 * wh_host_enqueue, the same options for all. Every job is checked first; if
 * any is refused nothing is queued and the error names it ("job 3 of 10").
 * BackgroundQueue: one pipelined push (Sidekiq's push_bulk: jobs[0] is
 * popped first). BackgroundAsync: queued in order. ForegroundBlocking: each
 * runs now, in order; all run, and the first failure is returned (WH_EJOB).
 * jids_out (may be NULL) receives the n job ids.
 * Errors: as wh_host_enqueue. Thread: any, as wh_host_enqueue. */
int wh_host_enqueue_bulk(wh_host *h, const char *class_name, const char *const *args_json, const size_t *lens,
                         size_t n, const wh_enqueue_options *opts, char (*jids_out)[WH_JID_SIZE], wh_err *err);

/* Blocks until no job is queued or running and no scheduled job or retry is
 * due within `within` seconds (BackgroundAsync). Returns at once in the
 * other modes. Useful in tests and one-shot programs. Any thread. */
int wh_host_wait_idle(wh_host *h, double within, wh_err *err);

/* Reloads the worker scripts (and the app's Lua modules) without a
 * restart. The scripts are read and loaded in a scratch VM first; if any
 * fails to load or define its worker, nothing changes, the host keeps
 * running the code it had, and the error (file:line) is returned and
 * logged. Otherwise a new generation begins: new jobs are checked against
 * it, and each worker thread finishes its running job on the old code, then
 * rebuilds its VM from the new scripts before its next job (in
 * ForegroundBlocking, idle pooled VMs are replaced when next taken). The
 * YAML configuration is not read again. Returns 0, WH_ESCRIPT / WH_EIO
 * (nothing changed), or WH_ESTATE once the host is stopped.
 * Thread: any thread, once wh_host_new has returned and until wh_host_free;
 * concurrent calls run one after the other. It blocks while the scripts
 * load (milliseconds for small apps), not until the threads switch. */
int wh_host_reload(wh_host *h, wh_err *err);

/* The generation of the code new jobs run on: 1 at start, +1 for each
 * successful wh_host_reload. Any thread, lock-free (safe under any other
 * lock); 0 for NULL. */
unsigned wh_host_generation(const wh_host *h);

/* Epoch seconds of the last successful reload, 0 if none. Any thread,
 * lock-free. Read right after a reload, it may belong to the generation
 * before the one wh_host_generation just returned (or after): read both
 * twice if the pair must match. */
double wh_host_reloaded_at(const wh_host *h);

/* Stops taking jobs, lets running ones finish for up to `timeout` seconds
 * (< 0: workers.shutdown_timeout), then interrupts Lua code still running,
 * and stops. A worker thread stuck inside a long C call (os.execute, say)
 * cannot be interrupted: it is left behind, and wh_host_free will then not
 * free the host (that thread still uses it when the call returns).
 * Jobs still queued in memory (BackgroundAsync) are abandoned; their count
 * is logged. Idempotent. Owner thread only. */
int wh_host_stop(wh_host *h, double timeout, wh_err *err);

/* Stops the host if needed and releases it (see wh_host_stop for the one
 * case where it is deliberately kept). Accepts NULL. Owner thread only. */
void wh_host_free(wh_host *h);

#ifdef __cplusplus
}
#endif

#endif
