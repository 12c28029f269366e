/* test_async.c -- the BackgroundAsync engine: many jobs on all threads, each
 * performed exactly once; order within a strict queue; job safety (timeout,
 * memory, os.exit) on worker threads; shutdown while busy; retry and
 * schedule timing driven by an injected clock instead of sleeps. Runs under
 * ThreadSanitizer in scripts/test (label "threads"). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/async.h"
#include "app/outcome.h"
#include "app/catalog.h"
#include "app/job.h"
#include "config/config.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/mem.h"
#include "test.h"

/* ---- a temp app ---- */

static char root[256];

static void write_file(const char *rel, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static void make_app(void) {
    snprintf(root, sizeof root, "/tmp/wh_test_async_XXXXXX");
    if (mkdtemp(root) == NULL) abort();
    char d[512];
    snprintf(d, sizeof d, "%s/workers", root);
    mkdir(d, 0755);
    write_file("workers/noop.lua",
               "local wh = require 'workerhost'\n"
               "return wh.worker { args = { n = 'integer' }, perform = function(args) end }\n");
    write_file("workers/parent.lua",
               "local wh = require 'workerhost'\n"
               "return wh.worker { args = { n = 'integer' }, perform = function(args)\n"
               "  wh.enqueue('Noop', { n = args.n + 1000000 })\n"
               "end }\n");
    write_file("workers/seq.lua",
               "local wh = require 'workerhost'\n"
               "return wh.worker { queue = 'ordered', args = { n = 'integer' }, perform = function(args) end }\n");
    write_file("workers/spin.lua",
               "local wh = require 'workerhost'\n"
               "return wh.worker { timeout = 0.2, args = { mode = 'string' }, perform = function(args)\n"
               "  if args.mode == 'loop' then while true do end end\n"
               "  if args.mode == 'pcall' then while true do pcall(function() while true do end end) end end\n"
               "end }\n");
    write_file("workers/bomb.lua",
               "local wh = require 'workerhost'\n"
               "return wh.worker { perform = function()\n"
               "  local t = {} for i = 1, 1e9 do t[i] = ('x'):rep(64) .. i end\n"
               "end }\n");
    write_file("workers/quitter.lua",
               "local wh = require 'workerhost'\n"
               "return wh.worker { perform = function() os.exit(1) end }\n");
    write_file("workers/flaky.lua",
               "local wh = require 'workerhost'\n"
               "return wh.worker { retry = 2, perform = function() error('always fails') end }\n");
    write_file("workers/slow.lua",
               "local wh = require 'workerhost'\n"
               "return wh.worker { timeout = 60, args = { seconds = 'number' }, perform = function(args)\n"
               "  local t0 = os.clock() while os.clock() - t0 < args.seconds do end\n"
               "end }\n");
    write_file("workers/counter.lua",
               "local wh = require 'workerhost'\n"
               "local count = 0\n"
               "return wh.worker { args = { n = 'integer' }, perform = function(args)\n"
               "  count = count + 1\n"
               "  if count ~= args.n then error('count ' .. count .. ', expected ' .. args.n) end\n"
               "end }\n");
    write_file("workers/sleeper.lua",
               "local wh = require 'workerhost'\n"
               "return wh.worker { timeout = 60, perform = function() os.execute('sleep 3') end }\n");
    write_file("workers/high.lua",
               "local wh = require 'workerhost'\n"
               "return wh.worker { queue = 'high', args = { n = 'integer' }, perform = function() end }\n");
    write_file("workers/low.lua",
               "local wh = require 'workerhost'\n"
               "return wh.worker { queue = 'low', args = { n = 'integer' }, perform = function() end }\n");
}

static void remove_app(void) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", root);
}

/* ---- an engine with a recording observer and an optional fake clock ---- */

typedef struct record {
    char jid[WH_JID_SIZE];
    char class_name[32];
    int rc;
    long n; /* args.n or -1 */
    char msg[1024];
} record;

typedef struct env {
    wh_config *cfg;
    wh_catalog *cat;
    wh_async *a;
    wh_lhost lhost;
    pthread_mutex_t lock;
    record *recs;
    size_t nrecs, caprecs;
    _Atomic double fake_now;
    bool fake;
} env;

static double fake_clock(void *ud) { return atomic_load(&((env *)ud)->fake_now); }

static void observe(void *ud, const wh_job *job, const wh_run_result *res) {
    env *e = ud;
    const wh_json *a0 = job->args->u.arr.n ? &job->args->u.arr.items[0] : NULL;
    const wh_json *n = a0 ? wh_json_getz(a0, "n") : NULL;
    pthread_mutex_lock(&e->lock);
    if (e->nrecs == e->caprecs) {
        e->caprecs = e->caprecs ? e->caprecs * 2 : 1024;
        e->recs = wh_xrealloc(e->recs, e->caprecs * sizeof *e->recs);
    }
    record *r = &e->recs[e->nrecs++];
    memcpy(r->jid, job->jid, WH_JID_SIZE);
    snprintf(r->class_name, sizeof r->class_name, "%s", job->class_name);
    r->rc = res->rc;
    r->n = (n && n->type == WH_JSON_INT) ? (long)n->u.i : -1;
    snprintf(r->msg, sizeof r->msg, "%s", res->err.msg);
    pthread_mutex_unlock(&e->lock);
}

static size_t nrecs(env *e) {
    pthread_mutex_lock(&e->lock);
    size_t n = e->nrecs;
    pthread_mutex_unlock(&e->lock);
    return n;
}

static const wh_schema *find(void *ud, lua_State *L, const char *name) {
    (void)L;
    const wh_worker_def *d = wh_catalog_find(((env *)ud)->cat, name);
    return d ? d->schema : NULL;
}

static int push_from_lua(void *ud, lua_State *L, const char *name, wh_json_doc *doc, const wh_json *args,
                         const wh_enqueue_options *opts, wh_err *err) {
    env *e = ud;
    wh_job *job = wh_job_new(wh_catalog_find(e->cat, name), doc, args, opts, wh_clock_wall());
    lua_pushstring(L, job->jid);
    int rc = wh_async_push(e->a, job, err);
    if (rc) { lua_pop(L, 1); return rc; }
    return 1;
}

static int env_open(env *e, const char *yaml, bool fake, bool start) {
    memset(e, 0, sizeof *e);
    pthread_mutex_init(&e->lock, NULL);
    wh_err err;
    if (wh_config_parse(&e->cfg, "test.yaml", yaml, strlen(yaml), root, "test", &err) != 0) {
        fprintf(stderr, "config: %s\n", err.msg);
        return -1;
    }
    if (wh_catalog_load(e->cfg, &e->cat, &err) != 0) {
        fprintf(stderr, "catalog: %s\n", err.msg);
        return -1;
    }
    e->lhost = (wh_lhost){find, push_from_lua, e, NULL};
    e->fake = fake;
    atomic_store(&e->fake_now, 1700000000.0);
    wh_async_options o = {.cfg = e->cfg, .catalog = e->cat, .lhost = &e->lhost, .observer = observe,
                          .observer_ud = e, .manual_schedule = fake, .no_jitter = fake};
    if (fake) o.clock = (wh_async_clock){fake_clock, e};
    e->a = wh_async_new(&o);
    if (start && wh_async_start(e->a, &err) != 0) {
        fprintf(stderr, "start: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static void env_close(env *e) {
    bool left = wh_async_left_behind(e->a) > 0;
    wh_async_free(e->a);
    if (left) return; /* a thread stuck in C still uses the engine, its config and catalog */
    wh_catalog_release(e->cat);
    wh_config_free(e->cfg);
    wh_free(e->recs);
    pthread_mutex_destroy(&e->lock);
}

static int push(env *e, const char *cls, const char *args_json, const wh_enqueue_options *opts, char *jid) {
    const wh_worker_def *d = wh_catalog_find(e->cat, cls);
    if (d == NULL) return WH_ENOCLASS;
    wh_json_doc *doc = wh_json_parse(args_json, strlen(args_json), NULL, NULL);
    if (doc == NULL) return WH_EJSON;
    double now = e->fake ? atomic_load(&e->fake_now) : wh_clock_wall();
    wh_job *job = wh_job_new(d, doc, wh_json_doc_root(doc), opts, now);
    if (jid) memcpy(jid, job->jid, WH_JID_SIZE);
    wh_err err;
    return wh_async_push(e->a, job, &err);
}

static int cmp_jid(const void *x, const void *y) { return strcmp(((const record *)x)->jid, ((const record *)y)->jid); }

/* ---- tests ---- */

static void test_many_jobs_each_once(void) {
    env e;
    ASSERT_EQ_INT(env_open(&e, "workers:\n  concurrency: 4\n  queue_limit: 100000\n", false, true), 0);
    enum { N = 3000 };
    for (int i = 0; i < N; i++) {
        char args[64];
        snprintf(args, sizeof args, "{\"n\":%d}", i);
        ASSERT_EQ_INT(push(&e, i % 2 ? "Parent" : "Noop", args, NULL, NULL), 0);
    }
    wh_async_wait_idle(e.a, 0);
    /* N jobs plus one Noop for each of the N/2 Parents */
    ASSERT_EQ_INT(nrecs(&e), N + N / 2);
    qsort(e.recs, e.nrecs, sizeof *e.recs, cmp_jid);
    for (size_t i = 0; i < e.nrecs; i++) {
        ASSERT_EQ_INT(e.recs[i].rc, 0);
        if (i) ASSERT(strcmp(e.recs[i - 1].jid, e.recs[i].jid) != 0); /* no job twice */
    }
    int nested = 0;
    for (size_t i = 0; i < e.nrecs; i++) nested += e.recs[i].n >= 1000000;
    ASSERT_EQ_INT(nested, N / 2);
    wh_async_stats s;
    wh_async_get_stats(e.a, &s);
    ASSERT_EQ_INT(s.processed, N + N / 2);
    ASSERT_EQ_INT(s.failed, 0);
    env_close(&e);
}

static void test_strict_queue_order_one_thread(void) {
    env e;
    ASSERT_EQ_INT(env_open(&e, "workers:\n  concurrency: 1\n", false, false), 0);
    for (int i = 0; i < 500; i++) {
        char args[64];
        snprintf(args, sizeof args, "{\"n\":%d}", i);
        ASSERT_EQ_INT(push(&e, "Seq", args, NULL, NULL), 0);
    }
    wh_err err;
    ASSERT_EQ_INT(wh_async_start(e.a, &err), 0);
    wh_async_wait_idle(e.a, 0);
    ASSERT_EQ_INT(nrecs(&e), 500);
    for (size_t i = 0; i < e.nrecs; i++) ASSERT_EQ_INT(e.recs[i].n, (long)i);
    env_close(&e);
}

static void test_strict_priority_between_queues(void) {
    env e;
    ASSERT_EQ_INT(env_open(&e, "workers:\n  concurrency: 1\n  queues: [high, low]\n", false, false), 0);
    for (int i = 0; i < 50; i++) {
        char args[64];
        snprintf(args, sizeof args, "{\"n\":%d}", i);
        ASSERT_EQ_INT(push(&e, "Low", args, NULL, NULL), 0);
        ASSERT_EQ_INT(push(&e, "High", args, NULL, NULL), 0);
    }
    /* a queue not in workers.queues is refused, not silently never served */
    ASSERT_EQ_INT(push(&e, "Noop", "{\"n\":1}", NULL, NULL), WH_EINVAL);
    wh_err err;
    ASSERT_EQ_INT(wh_async_start(e.a, &err), 0);
    wh_async_wait_idle(e.a, 0);
    ASSERT_EQ_INT(nrecs(&e), 100);
    for (size_t i = 0; i < 50; i++) ASSERT_STREQ(e.recs[i].class_name, "High");
    for (size_t i = 50; i < 100; i++) ASSERT_STREQ(e.recs[i].class_name, "Low");
    env_close(&e);
}

static void test_weighted_queues_serve_both(void) {
    env e;
    ASSERT_EQ_INT(env_open(&e, "workers:\n  concurrency: 1\n  queues: [[high, 3], [low, 1]]\n", false, false), 0);
    for (int i = 0; i < 400; i++) {
        ASSERT_EQ_INT(push(&e, "Low", "{\"n\":1}", NULL, NULL), 0);
        ASSERT_EQ_INT(push(&e, "High", "{\"n\":1}", NULL, NULL), 0);
    }
    wh_err err;
    ASSERT_EQ_INT(wh_async_start(e.a, &err), 0);
    wh_async_wait_idle(e.a, 0);
    /* among the first 200 jobs, high (weight 3) runs far more than low
     * (weight 1) but low is not starved: expect about 150 / 50 */
    int high = 0;
    for (size_t i = 0; i < 200; i++) high += strcmp(e.recs[i].class_name, "High") == 0;
    ASSERT(high > 110 && high < 185);
    env_close(&e);
}

static void test_timeouts_on_worker_thread(void) {
    env e;
    ASSERT_EQ_INT(env_open(&e, "workers:\n  concurrency: 1\n", false, true), 0);
    wh_enqueue_options no_retry = WH_ENQUEUE_OPTIONS_INIT;
    no_retry.retry = WH_RETRY_FALSE;
    ASSERT_EQ_INT(push(&e, "Spin", "{\"mode\":\"loop\"}", &no_retry, NULL), 0);
    ASSERT_EQ_INT(push(&e, "Spin", "{\"mode\":\"pcall\"}", &no_retry, NULL), 0);
    ASSERT_EQ_INT(push(&e, "Spin", "{\"mode\":\"ok\"}", &no_retry, NULL), 0);
    wh_async_wait_idle(e.a, 0);
    ASSERT_EQ_INT(nrecs(&e), 3);
    ASSERT_EQ_INT(e.recs[0].rc, WH_ETIMEOUT);
    ASSERT_CONTAINS(e.recs[0].msg, "timed out after 0.2 seconds");
    ASSERT_EQ_INT(e.recs[1].rc, WH_ETIMEOUT);
    ASSERT_EQ_INT(e.recs[2].rc, 0);
    env_close(&e);
}

static void test_memory_bomb_then_next_job(void) {
    env e;
    ASSERT_EQ_INT(env_open(&e, "workers:\n  concurrency: 1\n  memory_limit: 32MiB\n", false, true), 0);
    wh_enqueue_options no_retry = WH_ENQUEUE_OPTIONS_INIT;
    no_retry.retry = WH_RETRY_FALSE;
    ASSERT_EQ_INT(push(&e, "Bomb", "{}", &no_retry, NULL), 0);
    ASSERT_EQ_INT(push(&e, "Noop", "{\"n\":1}", NULL, NULL), 0);
    ASSERT_EQ_INT(push(&e, "Quitter", "{}", &no_retry, NULL), 0);
    ASSERT_EQ_INT(push(&e, "Noop", "{\"n\":2}", NULL, NULL), 0);
    wh_async_wait_idle(e.a, 0);
    ASSERT_EQ_INT(nrecs(&e), 4);
    ASSERT_EQ_INT(e.recs[0].rc, WH_ENOMEM);
    ASSERT_CONTAINS(e.recs[0].msg, "memory limit");
    ASSERT_EQ_INT(e.recs[1].rc, 0);
    ASSERT_EQ_INT(e.recs[2].rc, WH_EJOB);
    ASSERT_CONTAINS(e.recs[2].msg, "os.exit");
    ASSERT_EQ_INT(e.recs[3].rc, 0);
    wh_async_stats s;
    wh_async_get_stats(e.a, &s);
    ASSERT(s.vm_rebuilds >= 1);
    env_close(&e);
}

static void test_retry_backoff_with_fake_clock(void) {
    env e;
    ASSERT_EQ_INT(env_open(&e, "workers:\n  concurrency: 1\n  dead_limit: 10\n", true, true), 0);
    char jid[WH_JID_SIZE];
    ASSERT_EQ_INT(push(&e, "Flaky", "{}", NULL, jid), 0);
    wh_async_wait_idle(e.a, 0);
    ASSERT_EQ_INT(nrecs(&e), 1);
    wh_async_stats s;
    wh_async_get_stats(e.a, &s);
    ASSERT_EQ_INT(s.scheduled, 1);
    ASSERT_EQ_INT(s.retries, 1);
    /* retry_count 0: 0^4 + 15 = 15 s (no jitter in this test) */
    atomic_store(&e.fake_now, 1700000000.0 + 14.9);
    ASSERT_EQ_INT(wh_async_promote_due(e.a), 0);
    atomic_store(&e.fake_now, 1700000000.0 + 15.0);
    ASSERT_EQ_INT(wh_async_promote_due(e.a), 1);
    wh_async_wait_idle(e.a, 0);
    ASSERT_EQ_INT(nrecs(&e), 2);
    /* retry_count 1: 1 + 15 = 16 s later */
    atomic_store(&e.fake_now, 1700000000.0 + 15.0 + 15.9);
    ASSERT_EQ_INT(wh_async_promote_due(e.a), 0);
    atomic_store(&e.fake_now, 1700000000.0 + 15.0 + 16.0);
    ASSERT_EQ_INT(wh_async_promote_due(e.a), 1);
    wh_async_wait_idle(e.a, 0);
    ASSERT_EQ_INT(nrecs(&e), 3);
    /* retry = 2: two retries used, the job is dead now */
    wh_async_get_stats(e.a, &s);
    ASSERT_EQ_INT(s.scheduled, 0);
    ASSERT_EQ_INT(s.dead, 1);
    ASSERT_EQ_INT(s.failed, 3);
    char *jids[1], *classes[1], *errors[1];
    ASSERT_EQ_INT(wh_async_dead(e.a, jids, classes, errors, 1), 1);
    ASSERT_STREQ(jids[0], jid);
    ASSERT_STREQ(classes[0], "Flaky");
    ASSERT_CONTAINS(errors[0], "always fails");
    wh_free(jids[0]); wh_free(classes[0]); wh_free(errors[0]);
    env_close(&e);
}

static void test_backoff_formula(void) {
    ASSERT_EQ_DBL(wh_outcome_backoff(0, 0), 15);
    ASSERT_EQ_DBL(wh_outcome_backoff(0, 9), 24);
    ASSERT_EQ_DBL(wh_outcome_backoff(3, 0), 81 + 15);
    ASSERT_EQ_DBL(wh_outcome_backoff(3, 5), 81 + 15 + 5 * 4);
}

static void test_scheduled_job_waits_for_its_time(void) {
    env e;
    ASSERT_EQ_INT(env_open(&e, "workers:\n  concurrency: 1\n", true, true), 0);
    wh_enqueue_options in60 = WH_ENQUEUE_OPTIONS_INIT;
    in60.in = 60;
    wh_enqueue_options at = WH_ENQUEUE_OPTIONS_INIT;
    at.at = 1700000000.0 + 30;
    ASSERT_EQ_INT(push(&e, "Noop", "{\"n\":60}", &in60, NULL), 0);
    ASSERT_EQ_INT(push(&e, "Noop", "{\"n\":30}", &at, NULL), 0);
    wh_async_wait_idle(e.a, 0);
    ASSERT_EQ_INT(nrecs(&e), 0);
    atomic_store(&e.fake_now, 1700000000.0 + 30);
    ASSERT_EQ_INT(wh_async_promote_due(e.a), 1);
    wh_async_wait_idle(e.a, 0);
    ASSERT_EQ_INT(nrecs(&e), 1);
    ASSERT_EQ_INT(e.recs[0].n, 30);
    atomic_store(&e.fake_now, 1700000000.0 + 60);
    ASSERT_EQ_INT(wh_async_promote_due(e.a), 1);
    wh_async_wait_idle(e.a, 0);
    ASSERT_EQ_INT(nrecs(&e), 2);
    ASSERT_EQ_INT(e.recs[1].n, 60);
    env_close(&e);
}

static void test_scheduler_thread_wakes_on_time(void) {
    /* the real clock and the scheduler thread: a job due in 0.3 s runs after
     * it is due (no earlier), without anyone polling */
    env e;
    ASSERT_EQ_INT(env_open(&e, "workers:\n  concurrency: 1\n", false, true), 0);
    wh_enqueue_options in = WH_ENQUEUE_OPTIONS_INIT;
    in.in = 0.3;
    double t0 = wh_clock_wall();
    ASSERT_EQ_INT(push(&e, "Noop", "{\"n\":1}", &in, NULL), 0);
    wh_async_wait_idle(e.a, 5);
    ASSERT_EQ_INT(nrecs(&e), 1);
    ASSERT(wh_clock_wall() - t0 >= 0.3);
    env_close(&e);
}

static void test_queue_limit(void) {
    env e;
    ASSERT_EQ_INT(env_open(&e, "workers:\n  concurrency: 1\n  queue_limit: 5\n", false, false), 0);
    for (int i = 0; i < 5; i++) ASSERT_EQ_INT(push(&e, "Noop", "{\"n\":1}", NULL, NULL), 0);
    ASSERT_EQ_INT(push(&e, "Noop", "{\"n\":1}", NULL, NULL), WH_EFULL);
    wh_err err;
    ASSERT_EQ_INT(wh_async_start(e.a, &err), 0);
    wh_async_wait_idle(e.a, 0);
    ASSERT_EQ_INT(nrecs(&e), 5); /* the refused one never ran; nothing else was dropped */
    ASSERT_EQ_INT(push(&e, "Noop", "{\"n\":1}", NULL, NULL), 0);
    env_close(&e);
}

static void test_refused_at_perform_is_dead_without_retry(void) {
    env e;
    ASSERT_EQ_INT(env_open(&e, "workers:\n  concurrency: 1\n", true, true), 0);
    /* as a foreign client would push it: wrong type, checked again before perform */
    const char *payload = "{\"class\":\"Noop\",\"args\":[{\"n\":\"one\"}],\"jid\":\"0123456789abcdef01234567\",\"retry\":5}";
    wh_err err;
    wh_job *job = wh_job_parse(payload, strlen(payload), NULL, &err);
    ASSERT(job != NULL);
    ASSERT_EQ_INT(wh_async_push(e.a, job, &err), 0);
    wh_async_wait_idle(e.a, 0);
    ASSERT_EQ_INT(nrecs(&e), 1);
    ASSERT_EQ_INT(e.recs[0].rc, WH_EARGS);
    ASSERT_STREQ(e.recs[0].msg, "Noop: args.n: expected integer, got string");
    wh_async_stats s;
    wh_async_get_stats(e.a, &s);
    ASSERT_EQ_INT(s.scheduled, 0);
    ASSERT_EQ_INT(s.dead, 1);
    env_close(&e);
}

static void test_shutdown_while_busy(void) {
    env e;
    ASSERT_EQ_INT(env_open(&e, "workers:\n  concurrency: 2\n", false, true), 0);
    ASSERT_EQ_INT(push(&e, "Slow", "{\"seconds\":0.3}", NULL, NULL), 0);
    ASSERT_EQ_INT(push(&e, "Slow", "{\"seconds\":0.3}", NULL, NULL), 0);
    /* wait until both run, then queue more that will be abandoned */
    for (int i = 0; i < 200; i++) {
        wh_async_stats s;
        wh_async_get_stats(e.a, &s);
        if (s.running == 2) break;
        usleep(5000);
    }
    for (int i = 0; i < 7; i++) ASSERT_EQ_INT(push(&e, "Slow", "{\"seconds\":0.3}", NULL, NULL), 0);
    size_t abandoned = wh_async_stop(e.a, 10);
    ASSERT_EQ_INT(abandoned, 7);
    ASSERT_EQ_INT(nrecs(&e), 2);
    ASSERT_EQ_INT(e.recs[0].rc, 0); /* running jobs finished within the timeout */
    ASSERT_EQ_INT(e.recs[1].rc, 0);
    ASSERT_EQ_INT(push(&e, "Noop", "{\"n\":1}", NULL, NULL), WH_EUNAVAIL);
    env_close(&e);
}

static void test_shutdown_timeout_interrupts_lua(void) {
    env e;
    ASSERT_EQ_INT(env_open(&e, "workers:\n  concurrency: 1\n", false, true), 0);
    ASSERT_EQ_INT(push(&e, "Slow", "{\"seconds\":30}", NULL, NULL), 0);
    for (int i = 0; i < 200; i++) {
        wh_async_stats s;
        wh_async_get_stats(e.a, &s);
        if (s.running == 1) break;
        usleep(5000);
    }
    double t0 = wh_clock_monotonic();
    wh_async_stop(e.a, 0.2);
    ASSERT(wh_clock_monotonic() - t0 < 5);
    ASSERT_EQ_INT(nrecs(&e), 1);
    ASSERT_CONTAINS(e.recs[0].msg, "shutting down");
    env_close(&e);
}

static void test_recycling_rebuilds_from_sources_in_memory(void) {
    env e;
    ASSERT_EQ_INT(env_open(&e, "workers:\n  concurrency: 1\n  recycle_after_jobs: 2\n", false, false), 0);
    /* the module-level counter starts again in each new VM: 1, 2, 1, 2, ... */
    const char *ns[] = {"{\"n\":1}", "{\"n\":2}", "{\"n\":1}", "{\"n\":2}", "{\"n\":1}"};
    for (int i = 0; i < 5; i++) ASSERT_EQ_INT(push(&e, "Counter", ns[i], NULL, NULL), 0);
    /* change the script on disk: rebuilt VMs must still run the code the
     * host started with (only a reload changes code) */
    write_file("workers/counter.lua", "local wh = require 'workerhost'\n"
                                      "return wh.worker { args = { n = 'integer' }, perform = function() error('new code ran') end }\n");
    wh_err err;
    ASSERT_EQ_INT(wh_async_start(e.a, &err), 0);
    wh_async_wait_idle(e.a, 0);
    ASSERT_EQ_INT(nrecs(&e), 5);
    for (size_t i = 0; i < 5; i++) {
        ASSERT_EQ_INT(e.recs[i].rc, 0);
    }
    wh_async_stats s;
    wh_async_get_stats(e.a, &s);
    ASSERT_EQ_INT(s.vm_rebuilds, 2);
    env_close(&e);
    write_file("workers/counter.lua", "local wh = require 'workerhost'\n"
                                      "return wh.worker { args = { n = 'integer' }, perform = function() end }\n");
}

static void test_stop_leaves_a_thread_stuck_in_c_behind(void) {
    env e;
    ASSERT_EQ_INT(env_open(&e, "workers:\n  concurrency: 1\n", false, true), 0);
    ASSERT_EQ_INT(push(&e, "Sleeper", "{}", NULL, NULL), 0);
    for (int i = 0; i < 200; i++) {
        wh_async_stats s;
        wh_async_get_stats(e.a, &s);
        if (s.running == 1) break;
        usleep(5000);
    }
    double t0 = wh_clock_monotonic();
    wh_async_stop(e.a, 0.2);
    /* the timeout, plus the second the interrupt gets: not the 3 s sleep */
    ASSERT(wh_clock_monotonic() - t0 < 2.5);
    env_close(&e); /* must not free what the sleeping thread will touch */
}

static void test_quiet_starts_nothing(void) {
    env e;
    ASSERT_EQ_INT(env_open(&e, "workers:\n  concurrency: 1\n", false, true), 0);
    wh_async_quiet(e.a);
    ASSERT_EQ_INT(push(&e, "Noop", "{\"n\":1}", NULL, NULL), 0);
    usleep(100000);
    ASSERT_EQ_INT(nrecs(&e), 0);
    ASSERT_EQ_INT(wh_async_stop(e.a, 1), 1);
    env_close(&e);
}

int main(void) {
    wh_log_setup(WH_LOG_ERROR, WH_LOG_TEXT);
    make_app();
    RUN(test_many_jobs_each_once);
    RUN(test_strict_queue_order_one_thread);
    RUN(test_strict_priority_between_queues);
    RUN(test_weighted_queues_serve_both);
    RUN(test_timeouts_on_worker_thread);
    RUN(test_memory_bomb_then_next_job);
    RUN(test_retry_backoff_with_fake_clock);
    RUN(test_backoff_formula);
    RUN(test_scheduled_job_waits_for_its_time);
    RUN(test_scheduler_thread_wakes_on_time);
    RUN(test_queue_limit);
    RUN(test_refused_at_perform_is_dead_without_retry);
    RUN(test_shutdown_while_busy);
    RUN(test_shutdown_timeout_interrupts_lua);
    RUN(test_quiet_starts_nothing);
    RUN(test_recycling_rebuilds_from_sources_in_memory);
    RUN(test_stop_leaves_a_thread_stuck_in_c_behind);
    remove_app();
    return TEST_REPORT();
}
