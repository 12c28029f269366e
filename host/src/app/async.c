/* async.c -- see async.h. */
#include "app/async.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "app/outcome.h"
#include "app/runner.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/sigpipe.h"

/* ==== data ================================================================= */

typedef struct queue {
    char *name;
    int weight;
    wh_job *head, *tail;
    size_t n;
} queue;

typedef struct dead_entry {
    char *jid, *class_name, *error;
} dead_entry;

typedef struct worker {
    wh_async *a;
    pthread_t thread;
    wh_vm *vm;            /* owned by this thread while it runs */
    bool busy;            /* running a job (under the lock) */
    const wh_job *current; /* the job it runs (under the lock) */
    double current_since;  /* epoch seconds */
    bool started;
    long jobs_since_build;
    wh_err build_err;     /* why the last rebuild failed (w->vm NULL): this thread's */
    wh_catalog *cat;      /* retained: the generation its VM was built from (this thread's) */
    unsigned gen;         /* that generation (written under the lock) */
} worker;

struct wh_async {
    wh_async_options o;
    const wh_config *cfg;

    pthread_mutex_t lock;
    pthread_cond_t work;   /* workers wait here for jobs */
    pthread_cond_t idle;   /* wait_idle and stop wait here */
    pthread_cond_t sched;  /* the scheduler waits here (CLOCK_MONOTONIC) */

    queue *queues;
    size_t nqueues;
    bool strict;           /* serve in list order */
    bool fixed_queues;     /* workers.queues given: other queues are refused */

    wh_job **heap;         /* scheduled jobs, min-heap on run_at */
    size_t nheap, capheap;
    size_t nretries;       /* how many in the heap are retries */

    size_t queued, running, nwaiting;
    /* Lock-free hints for the one worker that spins before sleeping: a
     * worker that finds the queues empty spins briefly (at most one at a
     * time) so a steady stream of jobs does not cost a futex wake-up each. */
    atomic_size_t queued_hint;
    atomic_bool spinning;
    atomic_bool stop_hint;
    bool started, stopping, quiet;
    uint64_t rng;

    worker *workers;
    size_t nworkers;
    size_t ncpu;
    pthread_t scheduler;
    bool scheduler_started;

    dead_entry *dead;      /* ring, newest at dead_head - 1 */
    size_t dead_n, dead_head;

    uint64_t processed, failed, dead_total, vm_rebuilds;
    size_t left_behind;    /* threads detached while stuck in a C call */
    unsigned gen;          /* the generation of o.catalog (under the lock) */
    double gen_since;      /* when it began (epoch seconds) */
};

static double now_of(const wh_async *a) {
    return a->o.clock.now ? a->o.clock.now(a->o.clock.ud) : wh_clock_wall();
}

static uint32_t rnd(wh_async *a) { /* xorshift64*, under the lock */
    a->rng ^= a->rng >> 12;
    a->rng ^= a->rng << 25;
    a->rng ^= a->rng >> 27;
    return (uint32_t)((a->rng * 2685821657736338717ULL) >> 32);
}

/* ==== queues ================================================================ */

static queue *find_queue(wh_async *a, const char *name) {
    for (size_t i = 0; i < a->nqueues; i++)
        if (strcmp(a->queues[i].name, name) == 0) return &a->queues[i];
    return NULL;
}

static queue *add_queue(wh_async *a, const char *name, int weight) {
    a->queues = wh_xrealloc(a->queues, (a->nqueues + 1) * sizeof *a->queues);
    queue *q = &a->queues[a->nqueues++];
    memset(q, 0, sizeof *q);
    q->name = wh_xstrdup(name);
    q->weight = weight;
    return q;
}

static void queue_push(queue *q, wh_job *job) {
    job->next = NULL;
    if (q->tail) q->tail->next = job;
    else q->head = job;
    q->tail = job;
    q->n++;
}

static wh_job *queue_pop(queue *q) {
    wh_job *job = q->head;
    if (job == NULL) return NULL;
    q->head = job->next;
    if (q->head == NULL) q->tail = NULL;
    job->next = NULL;
    q->n--;
    return job;
}

/* Strict: the first non-empty queue in list order. Weighted: a non-empty
 * queue drawn with probability proportional to its weight (Sidekiq's
 * weighted shuffle, reduced to the one draw a fetch needs). */
static wh_job *pick(wh_async *a) {
    if (a->queued == 0) return NULL;
    queue *chosen = NULL;
    if (a->strict) {
        for (size_t i = 0; i < a->nqueues && !chosen; i++)
            if (a->queues[i].n) chosen = &a->queues[i];
    } else {
        long total = 0;
        for (size_t i = 0; i < a->nqueues; i++)
            if (a->queues[i].n) total += a->queues[i].weight;
        long r = (long)(rnd(a) % (uint32_t)total);
        for (size_t i = 0; i < a->nqueues && !chosen; i++) {
            if (!a->queues[i].n) continue;
            if (r < a->queues[i].weight) chosen = &a->queues[i];
            else r -= a->queues[i].weight;
        }
    }
    if (chosen == NULL) return NULL;
    a->queued--;
    atomic_store_explicit(&a->queued_hint, a->queued, memory_order_relaxed);
    return queue_pop(chosen);
}

/* ==== the schedule (min-heap on run_at) ==================================== */

static void heap_push(wh_async *a, wh_job *job) {
    if (a->nheap == a->capheap) {
        a->capheap = a->capheap ? a->capheap * 2 : 64;
        a->heap = wh_xrealloc(a->heap, a->capheap * sizeof *a->heap);
    }
    size_t i = a->nheap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (a->heap[p]->run_at <= job->run_at) break;
        a->heap[i] = a->heap[p];
        i = p;
    }
    a->heap[i] = job;
    if (job->has_retry_count && job->first_attempt_done) a->nretries++;
}

static wh_job *heap_pop(wh_async *a) {
    wh_job *top = a->heap[0];
    wh_job *last = a->heap[--a->nheap];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const wh_job *cur = last;
        if (l < a->nheap && a->heap[l]->run_at < cur->run_at) { m = l; cur = a->heap[l]; }
        if (r < a->nheap && a->heap[r]->run_at < cur->run_at) m = r;
        if (m == i) break;
        a->heap[i] = a->heap[m];
        i = m;
    }
    if (a->nheap) a->heap[i] = last;
    if (top->has_retry_count && top->first_attempt_done) a->nretries--;
    return top;
}

/* Puts a job on its queue (the lock is held); wakes one waiting worker. */
static void enqueue_locked(wh_async *a, wh_job *job) {
    queue *q = find_queue(a, job->queue);
    if (q == NULL) q = add_queue(a, job->queue, 1);
    queue_push(q, job);
    a->queued++;
    atomic_store_explicit(&a->queued_hint, a->queued, memory_order_relaxed);
    if (a->nwaiting && !atomic_load_explicit(&a->spinning, memory_order_relaxed)) pthread_cond_signal(&a->work);
}

static size_t promote_locked(wh_async *a) {
    double now = now_of(a);
    size_t n = 0;
    while (a->nheap && a->heap[0]->run_at <= now) {
        wh_job *job = heap_pop(a);
        job->run_at = 0;
        job->enqueued_at = now;
        enqueue_locked(a, job);
        n++;
    }
    if (n) pthread_cond_broadcast(&a->idle);
    return n;
}

size_t wh_async_promote_due(wh_async *a) {
    pthread_mutex_lock(&a->lock);
    size_t n = promote_locked(a);
    pthread_mutex_unlock(&a->lock);
    return n;
}

static void *scheduler_main(void *arg) {
    wh_async *a = arg;
    wh_sigpipe_block_thread();
    pthread_mutex_lock(&a->lock);
    while (!a->stopping) {
        promote_locked(a);
        if (a->nheap == 0) {
            pthread_cond_wait(&a->sched, &a->lock);
            continue;
        }
        double wait = a->heap[0]->run_at - now_of(a);
        if (wait <= 0) continue;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        double sec = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 + wait;
        ts.tv_sec = (time_t)sec;
        ts.tv_nsec = (long)((sec - (double)ts.tv_sec) * 1e9);
        pthread_cond_timedwait(&a->sched, &a->lock, &ts);
    }
    pthread_mutex_unlock(&a->lock);
    return NULL;
}

/* ==== outcomes ============================================================== */

static void bury_locked(wh_async *a, wh_job *job, const char *error) {
    a->dead_total++;
    if (a->cfg->dead_limit == 0) return;
    if (a->dead == NULL) a->dead = wh_xcalloc(a->cfg->dead_limit, sizeof *a->dead);
    dead_entry *e = &a->dead[a->dead_head];
    wh_free(e->jid);
    wh_free(e->class_name);
    wh_free(e->error);
    e->jid = wh_xstrdup(job->jid);
    e->class_name = wh_xstrdup(job->class_name);
    e->error = wh_xstrdup(error);
    a->dead_head = (a->dead_head + 1) % a->cfg->dead_limit;
    if (a->dead_n < a->cfg->dead_limit) a->dead_n++;
}

/* Applies the outcome policy (app/outcome.h) to a finished attempt, with
 * the worker's definition in the generation that ran it. Consumes job. */
static void settle(wh_async *a, const wh_worker_def *def, wh_job *job, const wh_run_result *res) {
    job->first_attempt_done = true;
    pthread_mutex_lock(&a->lock);
    a->processed++;
    if (a->o.outcome) {
        if (res->rc) a->failed++;
        bool stopping = a->stopping;
        pthread_mutex_unlock(&a->lock);
        a->o.outcome(a->o.outcome_ud, job, def, res, stopping);
        return;
    }
    if (res->rc) a->failed++;
    wh_outcome o;
    wh_outcome_decide(job, def, res->rc, a->o.no_jitter ? 0 : (int)(rnd(a) % 10), &o);
    if (o.kind == WH_OUTCOME_DONE) {
        pthread_mutex_unlock(&a->lock);
        wh_job_free(job);
        return;
    }
    wh_free(job->last_error);
    job->last_error = wh_xstrdup(res->err.msg);
    if (o.kind == WH_OUTCOME_RETRY) {
        job->has_retry_count = true;
        job->retry_count = o.count;
        if (a->stopping) {
            /* stopping: kept for the abandoned count, not run again */
            job->run_at = now_of(a);
            heap_push(a, job);
            pthread_mutex_unlock(&a->lock);
            return;
        }
        job->run_at = now_of(a) + o.delay;
        bool earliest = a->nheap == 0 || job->run_at < a->heap[0]->run_at;
        heap_push(a, job);
        if (earliest) pthread_cond_signal(&a->sched);
        pthread_mutex_unlock(&a->lock);
        wh_outcome_log(job, &o, res->err.msg);
        return;
    }
    if (o.kind == WH_OUTCOME_DEAD) bury_locked(a, job, res->err.msg);
    pthread_mutex_unlock(&a->lock);
    wh_outcome_log(job, &o, res->err.msg);
    wh_job_free(job);
}

/* ==== workers =============================================================== */

static bool needs_rebuild(const worker *w, const wh_config *cfg) {
    if (w->vm == NULL || wh_vm_tainted(w->vm)) return true;
    if (cfg->recycle_after_jobs > 0 && w->jobs_since_build >= cfg->recycle_after_jobs) return true;
    if (cfg->recycle_above_memory > 0 && wh_vm_memory(w->vm) > cfg->recycle_above_memory) return true;
    return false;
}

/* Rebuilds the VM from the thread's own catalog (w->cat): a VM recycled or
 * tainted keeps its generation's code, whatever is on disk now. */
static void rebuild(worker *w) {
    wh_async *a = w->a;
    /* w->vm changes under the lock: wh_async_stop reads it to interrupt */
    pthread_mutex_lock(&a->lock);
    wh_vm *old = w->vm;
    w->vm = NULL;
    pthread_mutex_unlock(&a->lock);
    wh_vm_free(old);
    wh_err *err = &w->build_err;
    wh_vm *vm = wh_catalog_new_vm(w->cat, a->cfg, a->o.lhost, err);
    w->jobs_since_build = 0;
    if (vm == NULL) wh_log(WH_LOG_ERROR, NULL, NULL, "cannot rebuild a VM: %s", err->msg);
    pthread_mutex_lock(&a->lock);
    w->vm = vm;
    a->vm_rebuilds++;
    pthread_mutex_unlock(&a->lock);
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Spins (the lock released) for up to ~50 us waiting for a job. Returns
 * true if this thread was the spinner. */
static bool spin_for_work(wh_async *a) {
    /* only with a core to spare: one for the spinner, one for whoever
     * produces jobs, one for each running job */
    if (a->running + 2 > a->ncpu) return false;
    /* BackgroundQueue: jobs come from our own I/O thread, which needs the
     * core a spinner would take */
    if (a->o.outcome) return false;
    bool expected = false;
    if (!atomic_compare_exchange_strong(&a->spinning, &expected, true)) return false;
    pthread_mutex_unlock(&a->lock);
    double until = wh_clock_monotonic() + 50e-6;
    for (unsigned i = 1;; i++) {
        if (atomic_load_explicit(&a->queued_hint, memory_order_relaxed) ||
            atomic_load_explicit(&a->stop_hint, memory_order_relaxed))
            break;
        cpu_relax();
        if ((i & 63) == 0 && wh_clock_monotonic() > until) break;
    }
    pthread_mutex_lock(&a->lock);
    atomic_store(&a->spinning, false);
    return true;
}

/* Called with the lock held when the engine's generation is newer than the
 * thread's: takes the new catalog and rebuilds the VM from it, the lock
 * released meanwhile. The thread's generation changes only once its VM is
 * built, so wh_async_get_stats counts threads really on the new code. */
static void switch_generation(worker *w) {
    wh_async *a = w->a;
    wh_catalog *cat = wh_catalog_retain(a->o.catalog);
    unsigned gen = a->gen;
    pthread_mutex_unlock(&a->lock);
    wh_catalog_release(w->cat);
    w->cat = cat;
    rebuild(w);
    pthread_mutex_lock(&a->lock);
    w->gen = gen;
    if (a->gen == gen && w->vm) {
        size_t on = 0;
        for (size_t i = 0; i < a->nworkers; i++) on += a->workers[i].gen == gen;
        if (on == a->nworkers)
            wh_log(WH_LOG_INFO, NULL, NULL, "generation %u: all %zu thread%s switched in %.3f ms", gen,
                   a->nworkers, a->nworkers == 1 ? "" : "s", (now_of(a) - a->gen_since) * 1000.0);
    }
}

static void *worker_main(void *arg) {
    worker *w = arg;
    wh_sigpipe_block_thread(); /* a job writing to a closed socket gets EPIPE */
    wh_async *a = w->a;
    pthread_mutex_lock(&a->lock);
    for (;;) {
        wh_job *job = NULL;
        bool spun = false;
        /* an idle thread wakes for a new generation and switches at once, so
         * the next job does not wait for the rebuild */
        while (!a->stopping && (a->quiet || w->gen == a->gen) && (a->quiet || (job = pick(a)) == NULL)) {
            if (!spun && !a->quiet && (spun = spin_for_work(a))) continue;
            spun = false;
            a->nwaiting++;
            pthread_cond_wait(&a->work, &a->lock);
            a->nwaiting--;
        }
        if (a->stopping) {
            if (job) { enqueue_locked(a, job); }
            break;
        }
        if (job == NULL) { /* a new generation while idle */
            switch_generation(w);
            continue;
        }
        a->running++;
        w->busy = true;
        w->current = job;
        w->current_since = now_of(a);
        /* the job runs on the newest generation: its arguments are checked
         * (in wh_vm_perform) against the schema of the code that runs it */
        if (w->gen != a->gen) switch_generation(w);
        pthread_mutex_unlock(&a->lock);

        if (needs_rebuild(w, a->cfg)) rebuild(w);
        wh_run_result res;
        wh_json_limits lim = {a->cfg->max_payload_bytes, 0};
        if ((res.rc = wh_job_materialize(job, &lim, &res.err)) != 0) {
            /* fetched bytes that are not a job (parsed here, off the I/O
             * thread): no run; the outcome hook sees class_name == NULL */
            res.traceback = NULL;
        } else if (w->vm) {
            wh_runner_perform(w->vm, job, a->cfg->timeout, &res);
            w->jobs_since_build++;
        } else {
            /* the rebuild failed: out of memory (the system's: the job
             * fails as out of memory, and the next job tries again) */
            res.rc = wh_err_set(&res.err, w->build_err.code == WH_ENOMEM ? WH_ENOMEM : WH_EJOB,
                                "no VM to run the job: %s", w->build_err.msg);
            res.traceback = NULL;
        }
        if (a->o.observer) a->o.observer(a->o.observer_ud, job, &res);
        wh_free(res.traceback);
        pthread_mutex_lock(&a->lock);
        w->current = NULL;
        pthread_mutex_unlock(&a->lock);
        settle(a, job->class_name ? wh_catalog_find(w->cat, job->class_name) : NULL, job, &res);

        pthread_mutex_lock(&a->lock);
        a->running--;
        w->busy = false;
        if (a->running == 0 || a->queued == 0) pthread_cond_broadcast(&a->idle);
    }
    pthread_mutex_unlock(&a->lock);
    return NULL;
}

/* ==== lifetime ============================================================== */

wh_async *wh_async_new(const wh_async_options *opts) {
    wh_async *a = wh_xcalloc(1, sizeof *a);
    a->o = *opts;
    a->cfg = opts->cfg;
    a->gen = 1; /* as the host counts: 1 at start */
    wh_catalog_retain(opts->catalog);
    pthread_mutex_init(&a->lock, NULL);
    pthread_cond_init(&a->work, NULL);
    pthread_cond_init(&a->idle, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&a->sched, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&a->queued_hint, 0);
    atomic_init(&a->spinning, false);
    atomic_init(&a->stop_hint, false);
    a->rng = 0x9E3779B97F4A7C15ULL ^ (uint64_t)(uintptr_t)a ^ (uint64_t)(wh_clock_wall() * 1e6);
    const wh_config *cfg = a->cfg;
    if (cfg->queues) {
        a->fixed_queues = true;
        a->strict = !cfg->queues_weighted;
        for (size_t i = 0; i < cfg->nqueues; i++) add_queue(a, cfg->queues[i].name, cfg->queues[i].weight);
    } else {
        /* every queue a loaded worker names, equal weights */
        for (size_t i = 0; i < wh_catalog_count(opts->catalog); i++) {
            const char *q = wh_catalog_at(opts->catalog, i)->queue;
            if (!find_queue(a, q)) add_queue(a, q, 1);
        }
    }
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    a->ncpu = ncpu > 0 ? (size_t)ncpu : 1;
    a->nworkers = (size_t)cfg->concurrency;
    a->workers = wh_xcalloc(a->nworkers, sizeof *a->workers);
    for (size_t i = 0; i < a->nworkers; i++) a->workers[i].a = a;
    return a;
}

int wh_async_start(wh_async *a, wh_err *err) {
    if (a->started) return 0;
    for (size_t i = 0; i < a->nworkers; i++) {
        a->workers[i].cat = wh_catalog_retain(a->o.catalog);
        a->workers[i].gen = a->gen;
        wh_err e = WH_ERR_INIT; /* its code is returned even when err is NULL */
        a->workers[i].vm = wh_catalog_new_vm(a->o.catalog, a->cfg, a->o.lhost, &e);
        if (a->workers[i].vm == NULL) {
            for (size_t k = 0; k < i; k++) { wh_vm_free(a->workers[k].vm); a->workers[k].vm = NULL; }
            if (err) *err = e;
            return e.code;
        }
    }
    a->started = true;
    size_t running = 0;
    int why = 0;
    for (size_t i = 0; i < a->nworkers; i++) {
        int rc = pthread_create(&a->workers[i].thread, NULL, worker_main, &a->workers[i]);
        if (rc != 0) {
            why = rc;
            wh_log(WH_LOG_ERROR, NULL, NULL, "cannot start worker thread %zu: %s", i, strerror(rc));
            continue;
        }
        a->workers[i].started = true;
        running++;
    }
    /* no worker thread: every job would wait for ever; fewer than asked:
     * the host runs, slower, and has said so above */
    if (running == 0)
        return wh_err_set(err, WH_EUNAVAIL, "cannot start any of the %zu worker threads: %s", a->nworkers,
                          strerror(why));
    if (!a->o.manual_schedule) {
        int rc = pthread_create(&a->scheduler, NULL, scheduler_main, a);
        a->scheduler_started = rc == 0;
        if (rc != 0) /* scheduled jobs and retries would never come due; wh_async_free stops the workers */
            return wh_err_set(err, WH_EUNAVAIL, "cannot start the scheduler thread: %s", strerror(rc));
    }
    return 0;
}

int wh_async_push(wh_async *a, wh_job *job, wh_err *err) {
    pthread_mutex_lock(&a->lock);
    int rc = 0;
    if (a->stopping) {
        rc = wh_err_set(err, WH_EUNAVAIL, "the host is stopping; job not accepted");
    } else if (a->queued + a->nheap >= a->cfg->queue_limit) {
        rc = wh_err_set(err, WH_EFULL, "queue full: %zu jobs are held in memory (workers.queue_limit); "
                        "job not accepted", a->queued + a->nheap);
    } else if (a->fixed_queues && !find_queue(a, job->queue)) {
        rc = wh_err_set(err, WH_EINVAL, "queue \"%s\" is not served by this host (workers.queues)", job->queue);
    }
    if (rc) {
        pthread_mutex_unlock(&a->lock);
        wh_job_free(job);
        return rc;
    }
    if (job->run_at > 0 && job->run_at > now_of(a)) {
        bool earliest = a->nheap == 0 || job->run_at < a->heap[0]->run_at;
        heap_push(a, job);
        if (earliest) pthread_cond_signal(&a->sched);
    } else {
        job->run_at = 0;
        enqueue_locked(a, job);
    }
    pthread_mutex_unlock(&a->lock);
    return 0;
}

void wh_async_push_many(wh_async *a, wh_job **jobs, size_t n, size_t *accepted) {
    pthread_mutex_lock(&a->lock);
    size_t waiting = a->nwaiting, k = 0;
    if (!a->stopping) {
        for (; k < n; k++) {
            wh_job *job = jobs[k];
            job->run_at = 0;
            queue *q = find_queue(a, job->queue);
            if (q == NULL) q = add_queue(a, job->queue, 1);
            queue_push(q, job);
            a->queued++;
        }
        atomic_store_explicit(&a->queued_hint, a->queued, memory_order_relaxed);
        /* one wake-up per job, at most one per waiting worker */
        for (size_t i = 0; i < k && i < waiting; i++) pthread_cond_signal(&a->work);
    }
    pthread_mutex_unlock(&a->lock);
    *accepted = k;
}

void wh_async_wait_idle(wh_async *a, double within) {
    pthread_mutex_lock(&a->lock);
    double horizon = now_of(a) + within;
    while (!a->stopping &&
           (a->queued > 0 || a->running > 0 || (a->nheap > 0 && a->heap[0]->run_at <= horizon))) {
        if (a->queued == 0 && a->running == 0 && a->o.manual_schedule) break; /* nobody would promote */
        pthread_cond_wait(&a->idle, &a->lock);
    }
    pthread_mutex_unlock(&a->lock);
}

void wh_async_quiet(wh_async *a) {
    pthread_mutex_lock(&a->lock);
    if (!a->quiet) wh_log(WH_LOG_INFO, NULL, NULL, "quiet: no new jobs will start; running ones finish");
    a->quiet = true;
    pthread_mutex_unlock(&a->lock);
}

static void timed_wait_running_zero(wh_async *a, double seconds) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double end = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 + seconds;
    while (a->running > 0) {
        ts.tv_sec = (time_t)end;
        ts.tv_nsec = (long)((end - (double)ts.tv_sec) * 1e9);
        if (pthread_cond_timedwait(&a->idle, &a->lock, &ts) == ETIMEDOUT) break;
    }
}

size_t wh_async_stop(wh_async *a, double timeout) {
    pthread_mutex_lock(&a->lock);
    if (a->stopping && !a->started) {
        pthread_mutex_unlock(&a->lock);
        return 0;
    }
    bool first = !a->stopping;
    a->stopping = true;
    atomic_store(&a->stop_hint, true);
    pthread_cond_broadcast(&a->work);
    pthread_cond_broadcast(&a->sched);
    pthread_cond_broadcast(&a->idle);
    if (first && a->running) wh_log(WH_LOG_INFO, NULL, NULL, "stopping: waiting up to %g s for %zu running job%s",
                                   timeout, a->running, a->running == 1 ? "" : "s");
    timed_wait_running_zero(a, timeout);
    if (a->running > 0) {
        /* interrupt Lua code still running; give it a moment to unwind */
        for (size_t i = 0; i < a->nworkers; i++)
            if (a->workers[i].busy && a->workers[i].vm) wh_vm_interrupt(a->workers[i].vm);
        timed_wait_running_zero(a, 1.0);
    }
    size_t stuck = a->running;
    size_t abandoned = a->queued + a->nheap;
    pthread_mutex_unlock(&a->lock);

    for (size_t i = 0; i < a->nworkers; i++) {
        worker *w = &a->workers[i];
        if (!w->started) continue;
        pthread_mutex_lock(&a->lock);
        bool busy = w->busy;
        pthread_mutex_unlock(&a->lock);
        if (busy) {
            /* stuck inside a C call: left behind. It still uses its VM and
             * this engine when the call returns, so neither is ever freed
             * (wh_async_free leaks them on purpose). */
            pthread_detach(w->thread);
            a->left_behind++;
        } else {
            pthread_join(w->thread, NULL);
        }
        w->started = false;
    }
    if (a->scheduler_started) {
        pthread_join(a->scheduler, NULL);
        a->scheduler_started = false;
    }
    if (stuck) wh_log(WH_LOG_WARN, NULL, NULL, "%zu job%s still inside a C call after the shutdown timeout; left behind",
                      stuck, stuck == 1 ? " is" : "s are");
    if (first && a->started && a->o.outcome == NULL) /* BackgroundQueue: they are still in Redis */
        wh_log(abandoned ? WH_LOG_WARN : WH_LOG_DEBUG, NULL, NULL,
               "stopped: %zu job%s held in memory abandoned (BackgroundAsync keeps jobs in memory only)",
               abandoned, abandoned == 1 ? "" : "s");
    a->started = false;
    return abandoned;
}

void wh_async_free(wh_async *a) {
    if (a == NULL) return;
    wh_async_stop(a, a->cfg->shutdown_timeout);
    if (a->left_behind) return; /* see wh_async_stop: a thread may still touch it */
    for (size_t i = 0; i < a->nworkers; i++) {
        wh_vm_free(a->workers[i].vm);
        wh_catalog_release(a->workers[i].cat);
    }
    wh_free(a->workers);
    for (size_t i = 0; i < a->nqueues; i++) {
        wh_job *j;
        while ((j = queue_pop(&a->queues[i])) != NULL) wh_job_free(j);
        wh_free(a->queues[i].name);
    }
    wh_free(a->queues);
    for (size_t i = 0; i < a->nheap; i++) wh_job_free(a->heap[i]);
    wh_free(a->heap);
    for (size_t i = 0; i < a->dead_n; i++) {
        wh_free(a->dead[i].jid);
        wh_free(a->dead[i].class_name);
        wh_free(a->dead[i].error);
    }
    wh_free(a->dead);
    pthread_mutex_destroy(&a->lock);
    pthread_cond_destroy(&a->work);
    pthread_cond_destroy(&a->idle);
    pthread_cond_destroy(&a->sched);
    wh_catalog_release(a->o.catalog);
    wh_free(a);
}

void wh_async_set_catalog(wh_async *a, wh_catalog *cat, unsigned generation) {
    wh_catalog_retain(cat);
    pthread_mutex_lock(&a->lock);
    wh_catalog *old = a->o.catalog;
    a->o.catalog = cat;
    a->gen = generation;
    a->gen_since = now_of(a);
    /* idle threads switch now; busy ones after their running job */
    pthread_cond_broadcast(&a->work);
    pthread_mutex_unlock(&a->lock);
    wh_catalog_release(old);
}

void wh_async_each_running(wh_async *a, void (*fn)(void *ud, size_t worker, const wh_job *job, double since),
                           void *ud) {
    pthread_mutex_lock(&a->lock);
    for (size_t i = 0; i < a->nworkers; i++)
        if (a->workers[i].current) fn(ud, i, a->workers[i].current, a->workers[i].current_since);
    pthread_mutex_unlock(&a->lock);
}

size_t wh_async_left_behind(const wh_async *a) { return a ? a->left_behind : 0; }

void wh_async_get_stats(wh_async *a, wh_async_stats *s) {
    pthread_mutex_lock(&a->lock);
    s->processed = a->processed;
    s->failed = a->failed;
    s->queued = a->queued;
    s->scheduled = a->nheap;
    s->retries = a->nretries;
    s->running = a->running;
    s->dead = a->dead_n;
    s->dead_total = a->dead_total;
    s->vm_rebuilds = a->vm_rebuilds;
    s->quiet = a->quiet;
    s->generation = a->gen;
    s->on_generation = 0;
    for (size_t i = 0; i < a->nworkers; i++)
        if (a->workers[i].gen == a->gen && a->workers[i].vm) s->on_generation++;
    pthread_mutex_unlock(&a->lock);
}

size_t wh_async_dead(wh_async *a, char **jids, char **classes, char **errors, size_t n) {
    pthread_mutex_lock(&a->lock);
    size_t k = 0;
    for (; k < n && k < a->dead_n; k++) {
        size_t cap = a->cfg->dead_limit;
        size_t i = (a->dead_head + cap - 1 - k) % cap;
        jids[k] = wh_xstrdup(a->dead[i].jid);
        classes[k] = wh_xstrdup(a->dead[i].class_name);
        errors[k] = wh_xstrdup(a->dead[i].error);
    }
    pthread_mutex_unlock(&a->lock);
    return k;
}
