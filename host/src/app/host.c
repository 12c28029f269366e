/* host.c -- wh_host: configuration + catalog + the mode's engine.
 *
 * BackgroundAsync: jobs go to the in-process engine (app/async.c) and run on
 * its worker threads.
 *
 * ForegroundBlocking: enqueue runs the job at once in the caller's thread, in
 * a VM taken from a pool (at most workers.concurrency VMs; a caller waits
 * when all are busy), so two threads never share a VM. A job enqueued from
 * inside a job runs at once in the same VM.
 *
 * BackgroundQueue: the executor is fed by the Redis server (redis/server.c);
 * enqueue (C API and wh.enqueue in jobs) pushes to Redis through a pool of
 * synchronous clients (redis/pool.c), one per concurrent caller. */
#include "app/host.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "app/async.h"
#include "app/job.h"
#include "app/runner.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/mem.h"
#include "lua/lmodule.h"
#include "lua/vm.h"
#include "redis/pool.h"
#include "redis/server.h"

/* enqueue into Redis: connect and each command within this (as the CLI) */
#define WH_ENQUEUE_REDIS_TIMEOUT_S 2.0

struct wh_host {
    wh_config *cfg;
    /* The current generation. cat changes only under cat_lock (a reload);
     * readers take a reference under it (current()). */
    pthread_mutex_t cat_lock;
    wh_catalog *cat;
    /* written under cat_lock, read without a lock (wh_host_generation may be
     * called from anywhere, even under another module's lock) */
    atomic_uint generation;      /* 1 at start, +1 per successful reload */
    atomic_llong reloaded_at_us; /* epoch microseconds of the last successful reload; 0 = none */
    pthread_mutex_t reload_lock; /* one reload at a time */
    wh_lhost lhost; /* behind wh.enqueue in this host's VMs */
    bool started;
    _Atomic bool stopped; /* read by reload, which may run on another thread */
    wh_async *async; /* the executor: BackgroundAsync and BackgroundQueue; NULL in ForegroundBlocking */
    wh_rserver *rserver; /* BackgroundQueue: fetch from and record to Redis */
    wh_redis_pool *pusher; /* BackgroundQueue: enqueue into Redis */
    wh_async_observer observer;
    void *observer_ud;

    /* ForegroundBlocking VM pool */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    wh_vm **idle;
    unsigned *idle_gen; /* the generation each idle VM was built from */
    size_t nidle, nvms;
};

const wh_config *wh_host_config(const wh_host *h) { return h->cfg; }
const wh_catalog *wh_host_catalog(const wh_host *h) { return h->cat; }

/* The current catalog, retained (release it), and its generation. */
static wh_catalog *current(wh_host *h, unsigned *gen) {
    pthread_mutex_lock(&h->cat_lock);
    wh_catalog *c = wh_catalog_retain(h->cat);
    if (gen) *gen = atomic_load(&h->generation);
    pthread_mutex_unlock(&h->cat_lock);
    return c;
}

wh_catalog *wh_host_current_catalog(wh_host *h, unsigned *generation) { return current(h, generation); }

/* ---- the VM pool ---- */

/* A VM of generation `gen` built from cat: an idle one of that generation,
 * else a new one (an idle VM of an older generation is dropped). */
static wh_vm *pool_take(wh_host *h, const wh_catalog *cat, unsigned gen, wh_err *err) {
    pthread_mutex_lock(&h->lock);
    while (h->nidle == 0 && h->nvms >= (size_t)h->cfg->concurrency) pthread_cond_wait(&h->cond, &h->lock);
    wh_vm *stale = NULL;
    if (h->nidle > 0) {
        h->nidle--;
        wh_vm *vm = h->idle[h->nidle];
        if (h->idle_gen[h->nidle] == gen) {
            pthread_mutex_unlock(&h->lock);
            return vm;
        }
        stale = vm; /* its slot is reused for the new VM */
    } else {
        h->nvms++;
    }
    pthread_mutex_unlock(&h->lock);
    wh_vm_free(stale);
    wh_vm *vm = wh_catalog_new_vm(cat, h->cfg, &h->lhost, err);
    if (vm == NULL) {
        pthread_mutex_lock(&h->lock);
        h->nvms--;
        pthread_cond_signal(&h->cond);
        pthread_mutex_unlock(&h->lock);
    }
    return vm;
}

static void pool_give(wh_host *h, wh_vm *vm, unsigned gen) {
    if (wh_vm_tainted(vm)) { /* rebuilt from the same in-memory sources */
        wh_vm_free(vm);
        pthread_mutex_lock(&h->lock);
        h->nvms--;
        pthread_cond_signal(&h->cond);
        pthread_mutex_unlock(&h->lock);
        return;
    }
    pthread_mutex_lock(&h->lock);
    h->idle_gen[h->nidle] = gen;
    h->idle[h->nidle++] = vm;
    pthread_cond_signal(&h->cond);
    pthread_mutex_unlock(&h->lock);
}

/* ---- enqueue ---- */

static int validate_options(const wh_enqueue_options *o, wh_err *err) {
    if (o == NULL) return 0;
    if (o->queue && o->queue[0] == '\0') return wh_err_set(err, WH_EINVAL, "queue must not be empty");
    if (o->in < 0) return wh_err_set(err, WH_EINVAL, "in must be >= 0 seconds");
    if (o->at < 0) return wh_err_set(err, WH_EINVAL, "at must be epoch seconds > 0");
    if (o->in > 0 && o->at > 0) return wh_err_set(err, WH_EINVAL, "give either in or at, not both");
    if (o->retry < WH_RETRY_DEFAULT) return wh_err_set(err, WH_EINVAL, "retry must be >= 0");
    return 0;
}

/* Runs a built job now in vm (ForegroundBlocking). Returns 0 or WH_EJOB
 * (and WH_EARGS if the second check refuses it) with the error in err. */
static int run_now(wh_host *h, wh_vm *vm, wh_job *job, wh_err *err) {
    wh_run_result res;
    wh_runner_perform(vm, job, h->cfg->timeout, &res);
    wh_free(res.traceback);
    if (res.rc == 0) return 0;
    if (err) *err = res.err;
    int rc = res.rc == WH_EARGS || res.rc == WH_ENOCLASS ? res.rc : WH_EJOB;
    if (err) err->code = rc;
    return rc;
}

/* Pushes n jobs (borrowed) through the pool, each written as it goes to
 * Redis now (wh_job_redis_items). Errors as wh_redis_pool_push. */
static int pool_push_jobs(wh_host *h, wh_job *const *jobs, size_t n, wh_err *err) {
    wh_buf text = WH_BUF_INIT;
    wh_redis_item *items = wh_xcalloc(n ? n : 1, sizeof *items);
    int rc = wh_job_redis_items(jobs, n, wh_clock_wall(), &text, items, err);
    if (rc == 0) rc = wh_redis_pool_push(h->pusher, items, n, err);
    wh_free(items);
    wh_buf_free(&text);
    return rc;
}

/* wh.enqueue inside this host's VMs. The arguments are checked against the
 * schema of the calling VM's own generation (borrowed from that VM, which
 * outlives the call), so a reload running meanwhile cannot pull the schema
 * away; the job's queue and retry come from the current generation. */
static const wh_schema *lhost_find(void *ud, lua_State *L, const char *name) {
    (void)ud;
    wh_lworker_info info;
    if (wh_vm_info(wh_vm_from_state(L), name, &info) != 0) return NULL;
    return info.schema;
}

/* wh.enqueue's worker in the current generation (*cat, retained: release
 * it), or NULL with err set: wh.enqueue checked the class against the
 * calling job's generation, and a reload since may have removed it. */
static const wh_worker_def *lhost_def(wh_host *h, const char *name, wh_catalog **cat, wh_err *err) {
    *cat = current(h, NULL);
    const wh_worker_def *def = wh_catalog_find(*cat, name);
    if (def == NULL) {
        wh_catalog_release(*cat);
        wh_err_set(err, WH_ENOCLASS, "unknown worker class \"%s\" (removed by a reload)", name);
    }
    return def;
}

/* BackgroundQueue: wh.enqueue_bulk in a job, one pipelined push. */
static int lhost_enqueue_bulk(void *ud, lua_State *L, const char *name, wh_json_doc **docs, size_t n,
                              const wh_enqueue_options *opts, char (*jids)[WH_JID_SIZE], wh_err *err) {
    wh_host *h = ud;
    (void)L;
    wh_catalog *cat;
    const wh_worker_def *def = lhost_def(h, name, &cat, err);
    if (def == NULL) {
        for (size_t i = 0; i < n; i++) wh_json_doc_free(docs[i]);
        return WH_ENOCLASS;
    }
    wh_job **jobs = wh_xcalloc(n ? n : 1, sizeof *jobs);
    double now = wh_clock_wall();
    for (size_t i = 0; i < n; i++) {
        jobs[i] = wh_job_new(def, docs[i], wh_json_doc_root(docs[i]), opts, now); /* takes the doc */
        memcpy(jids[i], jobs[i]->jid, WH_JID_SIZE);
    }
    wh_catalog_release(cat);
    int rc = pool_push_jobs(h, jobs, n, err);
    for (size_t i = 0; i < n; i++) wh_job_free(jobs[i]);
    wh_free(jobs);
    return rc;
}

static int lhost_enqueue(void *ud, lua_State *L, const char *name, wh_json_doc *doc, const wh_json *args,
                         const wh_enqueue_options *opts, wh_err *err) {
    wh_host *h = ud;
    wh_catalog *cat;
    const wh_worker_def *def = lhost_def(h, name, &cat, err);
    if (def == NULL) {
        wh_json_doc_free(doc);
        return WH_ENOCLASS;
    }
    wh_job *job = wh_job_new(def, doc, args, opts, wh_clock_wall());
    wh_catalog_release(cat);
    if (h->cfg->mode == WH_MODE_BACKGROUND_ASYNC) {
        char jid[WH_JID_SIZE];
        memcpy(jid, job->jid, sizeof jid);
        int rc = wh_async_push(h->async, job, err);
        if (rc) return rc;
        lua_pushstring(L, jid);
        return 1;
    }
    if (h->cfg->mode == WH_MODE_BACKGROUND_QUEUE) {
        int rc = pool_push_jobs(h, &job, 1, err);
        if (rc == 0) lua_pushstring(L, job->jid);
        wh_job_free(job);
        return rc ? rc : 1;
    }
    lua_pushstring(L, job->jid);
    /* ForegroundBlocking: run at once, in this VM; a failing nested job does
     * not raise in its caller */
    wh_err jerr;
    int rc = run_now(h, wh_vm_from_state(L), job, &jerr);
    wh_job_free(job);
    lua_pushboolean(L, rc == 0);
    if (rc == 0) lua_pushnil(L);
    else lua_pushstring(L, jerr.msg);
    (void)err;
    return 3;
}

/* What every enqueue starts with: the host may take jobs, the options are
 * valid, and the class is known in the current generation, which the call
 * then holds (*cat, retained: release it) from start to end. */
static int begin_enqueue(wh_host *h, const char *class_name, const wh_enqueue_options *opts, wh_catalog **cat,
                         unsigned *gen, const wh_worker_def **def, wh_err *err) {
    if (h->stopped) return wh_err_set(err, WH_EUNAVAIL, "the host is stopped");
    int rc = validate_options(opts, err);
    if (rc) return rc;
    *cat = current(h, gen);
    *def = wh_catalog_find(*cat, class_name);
    if (*def == NULL) {
        rc = wh_catalog_unknown_class(*cat, class_name, err);
        wh_catalog_release(*cat);
        return rc;
    }
    return 0;
}

int wh_host_enqueue(wh_host *h, const char *class_name, const char *args_json, size_t len,
                    const wh_enqueue_options *opts, char jid_out[WH_JID_SIZE], wh_err *err) {
    if (jid_out) jid_out[0] = '\0';
    if (h == NULL || class_name == NULL || (args_json == NULL && len > 0))
        return wh_err_set(err, WH_EINVAL, "wh_host_enqueue: NULL argument");
    unsigned gen;
    wh_catalog *cat;
    const wh_worker_def *def;
    int rc = begin_enqueue(h, class_name, opts, &cat, &gen, &def, err);
    if (rc) return rc;
    wh_json_limits lim = {h->cfg->max_payload_bytes, 0};
    wh_json_doc *doc = wh_json_parse(args_json ? args_json : "", len, &lim, err);
    if (doc == NULL) {
        wh_catalog_release(cat);
        return WH_EJSON;
    }
    if (wh_schema_check_call_args(def->schema, wh_json_doc_root(doc), err) != 0) {
        wh_err_prefix(err, "%s", class_name);
        wh_json_doc_free(doc);
        wh_catalog_release(cat);
        return WH_EARGS;
    }
    wh_job *job = wh_job_new(def, doc, wh_json_doc_root(doc), opts, wh_clock_wall());
    if (jid_out) memcpy(jid_out, job->jid, WH_JID_SIZE);
    switch (h->cfg->mode) {
    case WH_MODE_FOREGROUND_BLOCKING: {
        wh_err e = WH_ERR_INIT; /* its code is returned even when err is NULL */
        wh_vm *vm = pool_take(h, cat, gen, &e);
        if (vm == NULL) {
            wh_job_free(job);
            wh_catalog_release(cat);
            if (err) *err = e;
            return e.code;
        }
        rc = run_now(h, vm, job, err);
        pool_give(h, vm, gen);
        break;
    }
    case WH_MODE_BACKGROUND_ASYNC:
        wh_catalog_release(cat);
        return wh_async_push(h->async, job, err); /* takes the job */
    case WH_MODE_BACKGROUND_QUEUE:
        rc = pool_push_jobs(h, &job, 1, err);
        break;
    default:
        rc = wh_err_set(err, WH_EUNAVAIL, "workers.mode %s is not available in this build",
                        wh_mode_name(h->cfg->mode));
        break;
    }
    wh_job_free(job);
    wh_catalog_release(cat);
    return rc;
}

int wh_host_enqueue_bulk(wh_host *h, const char *class_name, const char *const *args_json, const size_t *lens,
                         size_t n, const wh_enqueue_options *opts, char (*jids_out)[WH_JID_SIZE], wh_err *err) {
    if (h == NULL || class_name == NULL || (n && (args_json == NULL || lens == NULL)))
        return wh_err_set(err, WH_EINVAL, "wh_host_enqueue_bulk: NULL argument");
    unsigned gen;
    wh_catalog *cat;
    const wh_worker_def *def;
    int rc = begin_enqueue(h, class_name, opts, &cat, &gen, &def, err);
    if (rc) return rc;
    /* every job is checked before any is queued */
    wh_job **jobs = wh_xcalloc(n ? n : 1, sizeof *jobs);
    wh_json_limits lim = {h->cfg->max_payload_bytes, 0};
    double now = wh_clock_wall();
    for (size_t i = 0; i < n && rc == 0; i++) {
        wh_json_doc *doc = wh_json_parse(args_json[i] ? args_json[i] : "", lens[i], &lim, err);
        if (doc == NULL) {
            wh_err_prefix(err, "%s: job %zu of %zu", class_name, i + 1, n);
            rc = WH_EJSON;
        } else if (wh_schema_check_call_args(def->schema, wh_json_doc_root(doc), err) != 0) {
            wh_err_prefix(err, "%s: job %zu of %zu", class_name, i + 1, n);
            wh_json_doc_free(doc);
            rc = WH_EARGS;
        } else {
            jobs[i] = wh_job_new(def, doc, wh_json_doc_root(doc), opts, now);
        }
    }
    size_t done = 0;
    if (rc == 0) {
        switch (h->cfg->mode) {
        case WH_MODE_BACKGROUND_QUEUE:
            rc = pool_push_jobs(h, jobs, n, err);
            break;
        case WH_MODE_BACKGROUND_ASYNC:
            /* pushed in order; the queue takes each one (and frees it) */
            for (; done < n && rc == 0; done++) {
                if (jids_out) memcpy(jids_out[done], jobs[done]->jid, WH_JID_SIZE);
                wh_job *job = jobs[done];
                jobs[done] = NULL;
                rc = wh_async_push(h->async, job, err);
                if (rc) wh_err_prefix(err, "%s: job %zu of %zu (the ones before it are queued)", class_name, done + 1,
                                      n);
            }
            break;
        case WH_MODE_FOREGROUND_BLOCKING: {
            /* each runs now, in order; the first failure is returned, after all ran */
            wh_err e = WH_ERR_INIT;
            wh_vm *vm = pool_take(h, cat, gen, &e);
            if (vm == NULL) {
                if (err) *err = e;
                rc = e.code;
                break;
            }
            wh_err jerr;
            for (size_t i = 0; i < n; i++) {
                int jrc = run_now(h, vm, jobs[i], &jerr);
                if (jrc && rc == 0) {
                    rc = jrc;
                    if (err) *err = jerr;
                }
            }
            pool_give(h, vm, gen);
            break;
        }
        default:
            rc = wh_err_set(err, WH_EUNAVAIL, "workers.mode %s is not available in this build",
                            wh_mode_name(h->cfg->mode));
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (jids_out && jobs[i] && i >= done) memcpy(jids_out[i], jobs[i]->jid, WH_JID_SIZE);
        wh_job_free(jobs[i]);
    }
    wh_free(jobs);
    wh_catalog_release(cat);
    return rc;
}

/* ---- reload ---- */

int wh_host_reload(wh_host *h, wh_err *err) {
    if (h == NULL) return wh_err_set(err, WH_EINVAL, "wh_host_reload: NULL host");
    wh_err local = WH_ERR_INIT;
    if (err == NULL) err = &local;
    pthread_mutex_lock(&h->reload_lock);
    if (h->stopped) {
        pthread_mutex_unlock(&h->reload_lock);
        return wh_err_set(err, WH_ESTATE, "the host is stopped; nothing reloaded");
    }
    double t0 = wh_clock_monotonic();
    wh_catalog *cat = NULL;
    int rc = wh_catalog_load(h->cfg, &cat, err); /* reads and checks in a scratch VM */
    if (rc) {
        pthread_mutex_unlock(&h->reload_lock);
        wh_log(WH_LOG_ERROR, NULL, NULL, "reload failed, generation %u keeps running: %s",
               atomic_load(&h->generation), err->msg);
        return rc;
    }
    pthread_mutex_lock(&h->cat_lock);
    wh_catalog *old = h->cat;
    h->cat = cat;
    unsigned gen = atomic_load(&h->generation) + 1;
    atomic_store(&h->reloaded_at_us, (long long)(wh_clock_wall() * 1e6));
    atomic_store(&h->generation, gen);
    /* under cat_lock: a job enqueued from now on is also run by this
     * generation (or a later one) */
    if (h->async) wh_async_set_catalog(h->async, cat, gen);
    pthread_mutex_unlock(&h->cat_lock);
    wh_catalog_release(old);
    pthread_mutex_unlock(&h->reload_lock);
    wh_buf names = WH_BUF_INIT;
    for (size_t i = 0; i < wh_catalog_count(cat); i++)
        wh_buf_printf(&names, "%s%s", i ? ", " : "", wh_catalog_at(cat, i)->name);
    wh_log(WH_LOG_INFO, NULL, NULL, "reloaded: generation %u, %zu worker%s (%s), loaded and checked in %.1f ms",
           gen, wh_catalog_count(cat), wh_catalog_count(cat) == 1 ? "" : "s", names.len ? wh_buf_cstr(&names) : "none",
           (wh_clock_monotonic() - t0) * 1000.0);
    wh_buf_free(&names);
    return 0;
}

unsigned wh_host_generation(const wh_host *h) { return h ? atomic_load(&h->generation) : 0; }

double wh_host_reloaded_at(const wh_host *h) { return h ? (double)atomic_load(&h->reloaded_at_us) / 1e6 : 0; }

/* ---- lifetime ---- */

static void host_observer(void *ud, const wh_job *job, const wh_run_result *res) {
    wh_host *h = ud;
    if (h->observer) h->observer(h->observer_ud, job, res);
}

void wh_host_set_observer(wh_host *h, wh_async_observer fn, void *ud) {
    h->observer = fn;
    h->observer_ud = ud;
}

int wh_host_wait_idle(wh_host *h, double within, wh_err *err) {
    if (h == NULL) return wh_err_set(err, WH_EINVAL, "wh_host_wait_idle: NULL host");
    if (h->async) wh_async_wait_idle(h->async, within);
    return 0;
}

void wh_host_quiet(wh_host *h) {
    if (h->rserver) wh_rserver_quiet(h->rserver);
    if (h->async) wh_async_quiet(h->async);
}

wh_async *wh_host_async(wh_host *h) { return h->async; }

int wh_host_new_mode(wh_host **out, const wh_host_options *opts, const wh_mode *mode, wh_err *err) {
    wh_config_source src = {opts ? opts->root : NULL, opts ? opts->env : NULL, opts ? opts->config_file : NULL};
    wh_config *cfg = NULL;
    int rc = wh_config_load(&cfg, &src, err);
    if (rc) return rc;
    if (mode) cfg->mode = *mode;
    wh_catalog *cat = NULL;
    rc = wh_catalog_load(cfg, &cat, err);
    if (rc) {
        wh_config_free(cfg);
        return rc;
    }
    wh_host *h = wh_xcalloc(1, sizeof *h);
    h->cfg = cfg;
    h->cat = cat;
    atomic_init(&h->generation, 1);
    atomic_init(&h->reloaded_at_us, 0);
    pthread_mutex_init(&h->cat_lock, NULL);
    pthread_mutex_init(&h->reload_lock, NULL);
    h->lhost = (wh_lhost){lhost_find, lhost_enqueue, h,
                          cfg->mode == WH_MODE_BACKGROUND_QUEUE ? lhost_enqueue_bulk : NULL};
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->cond, NULL);
    h->idle = wh_xcalloc((size_t)cfg->concurrency, sizeof *h->idle);
    h->idle_gen = wh_xcalloc((size_t)cfg->concurrency, sizeof *h->idle_gen);
    if (cfg->mode == WH_MODE_BACKGROUND_QUEUE) {
        wh_rserver_options ro = {cfg, cat, h};
        rc = wh_rserver_new(&ro, &h->rserver, err);
        if (rc == 0)
            rc = wh_redis_pool_new(cfg->queue_uri, cfg->queue_namespace, WH_ENQUEUE_REDIS_TIMEOUT_S,
                                   (size_t)cfg->concurrency + 1, &h->pusher, err);
        if (rc) {
            wh_host_free(h);
            return rc;
        }
    }
    if (cfg->mode != WH_MODE_FOREGROUND_BLOCKING) {
        wh_async_options ao = {.cfg = cfg, .catalog = cat, .lhost = &h->lhost,
                               .observer = host_observer, .observer_ud = h};
        if (h->rserver) {
            ao.outcome = wh_rserver_outcome;
            ao.outcome_ud = h->rserver;
        }
        h->async = wh_async_new(&ao);
        if (h->rserver) wh_rserver_set_executor(h->rserver, h->async);
    }
    *out = h;
    return 0;
}

int wh_host_new(wh_host **out, const wh_host_options *opts, wh_err *err) {
    if (out == NULL) return wh_err_set(err, WH_EINVAL, "wh_host_new: out is NULL");
    return wh_host_new_mode(out, opts, NULL, err);
}

/* The memory.max of this process's cgroup (v2) or of the tightest of its
 * parents, in bytes; 0 when there is none (no cgroup v2, or "max"). */
static unsigned long long cgroup_memory_max(void) {
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (f == NULL) return 0;
    char line[1024], dir[1200] = "";
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "0::", 3) == 0) {
            line[strcspn(line, "\n")] = '\0';
            snprintf(dir, sizeof dir, "/sys/fs/cgroup%s", strcmp(line + 3, "/") == 0 ? "" : line + 3);
            break;
        }
    }
    fclose(f);
    unsigned long long best = 0;
    while (dir[0]) {
        char path[1300];
        snprintf(path, sizeof path, "%s/memory.max", dir);
        unsigned long long v;
        FILE *m = fopen(path, "r");
        if (m && fscanf(m, "%llu", &v) == 1 && (best == 0 || v < best)) best = v; /* "max" reads nothing */
        if (m) fclose(m);
        char *slash = strrchr(dir, '/');
        if (slash == NULL || strcmp(dir, "/sys/fs/cgroup") == 0) break;
        *slash = '\0';
    }
    return best;
}

/* Says at start when the VMs' limits cannot all be honoured: when
 * workers.concurrency x workers.memory_limit is more than the process may
 * allocate (RLIMIT_AS, which `ulimit -v` sets, or its cgroup's memory.max).
 * Jobs then run out of memory before their VM's limit; they fail as out of
 * memory, and the host goes on (lua/vm.c, core/mem.h). Logs a warning that
 * names the numbers; nothing else. */
static void warn_memory_budget(const wh_config *cfg) {
    unsigned long long want = (unsigned long long)cfg->concurrency * (unsigned long long)cfg->memory_limit;
    struct rlimit rl;
    struct { const char *what; unsigned long long cap; } limits[2] = {
        {"RLIMIT_AS (ulimit -v)", getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY ? rl.rlim_cur : 0},
        {"its cgroup's memory.max", cgroup_memory_max()},
    };
    for (int i = 0; i < 2; i++)
        if (limits[i].cap && want > limits[i].cap)
            wh_log(WH_LOG_WARN, NULL, NULL,
                   "workers.concurrency x workers.memory_limit = %d x %zu = %llu bytes is more than the process may "
                   "allocate: %s is %llu bytes; jobs may run out of memory below their VM's limit (they fail as "
                   "out of memory)", cfg->concurrency, cfg->memory_limit, want, limits[i].what, limits[i].cap);
}

int wh_host_start(wh_host *h, wh_err *err) {
    if (h == NULL) return wh_err_set(err, WH_EINVAL, "wh_host_start: NULL host");
    if (h->stopped) return wh_err_set(err, WH_ESTATE, "the host is stopped");
    h->started = true;
    warn_memory_budget(h->cfg);
    if (h->cfg->mode == WH_MODE_FOREGROUND_BLOCKING) return 0;
    if (h->async) {
        int rc = wh_async_start(h->async, err);
        if (rc == 0 && h->rserver) rc = wh_rserver_start(h->rserver, err);
        return rc;
    }
    return wh_err_set(err, WH_EUNAVAIL, "workers.mode %s is not available in this build",
                      wh_mode_name(h->cfg->mode));
}

int wh_host_stop(wh_host *h, double timeout, wh_err *err) {
    if (h == NULL) return wh_err_set(err, WH_EINVAL, "wh_host_stop: NULL host");
    if (h->stopped) return 0;
    h->stopped = true;
    double t = timeout < 0 ? h->cfg->shutdown_timeout : timeout;
    if (h->rserver) wh_rserver_stop(h->rserver, t); /* stops the executor in its order */
    else if (h->async) wh_async_stop(h->async, t);
    return 0;
}

void wh_host_free(wh_host *h) {
    if (h == NULL) return;
    wh_host_stop(h, -1, NULL);
    if (wh_async_left_behind(h->async)) {
        /* a thread stuck in a C call still reads the configuration and the
         * catalog when it returns: leave the host allocated (see wh_host_stop) */
        wh_log(WH_LOG_WARN, NULL, NULL, "host not freed: %zu thread%s still inside a C call",
               wh_async_left_behind(h->async), wh_async_left_behind(h->async) == 1 ? " is" : "s are");
        return;
    }
    /* the executor first: jobs it still holds live in the server's records */
    wh_async_free(h->async);
    wh_rserver_free(h->rserver);
    wh_redis_pool_free(h->pusher);
    for (size_t i = 0; i < h->nidle; i++) wh_vm_free(h->idle[i]);
    wh_free(h->idle);
    wh_free(h->idle_gen);
    pthread_mutex_destroy(&h->cat_lock);
    pthread_mutex_destroy(&h->reload_lock);
    pthread_mutex_destroy(&h->lock);
    pthread_cond_destroy(&h->cond);
    wh_catalog_release(h->cat);
    wh_config_free(h->cfg);
    wh_free(h);
}
