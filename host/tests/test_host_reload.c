/* test_host_reload.c -- wh_host_reload in BackgroundAsync (and once in
 * ForegroundBlocking): new code for jobs after a reload while a running job
 * finishes on the old; a broken reload (syntax error, error while the
 * definition loads, bad schema) changes nothing; the argument check follows
 * the generation that runs the job; a recycled VM keeps its generation's
 * code, app modules (lib/) included; 100 reloads under a steady flow of jobs
 * lose and fail none. Runs under ThreadSanitizer too (label "threads").
 * SPDX-License-Identifier: MIT
 */
#include <dirent.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/async.h"
#include "app/host.h"
#include "core/err.h"
#include "core/log.h"
#include "test.h"
#include "workerhost.h"

/* ---- temp apps ---------------------------------------------------------------- */

static char root[512];

static void write_file(const char *rel, const char *text) {
    char path[PATH_MAX + 64], tmp[PATH_MAX + 80];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL) abort();
    fputs(text, f);
    fclose(f);
    if (rename(tmp, path) != 0) abort(); /* whole files only, as an editor saves */
}

/* Appends "<version> <n>" to ran.log per job; args {n = integer} plus
 * `extra` (schema fields); `body` runs first inside perform. */
static void write_echo(const char *version, const char *extra, const char *body) {
    char code[16384];
    snprintf(code, sizeof code,
             "local wh = require 'workerhost'\n"
             "local lib = require 'verlib'\n"
             "return wh.worker { args = { n = 'integer'%s }, perform = function(args)\n"
             "  %s\n"
             "  local f = assert(io.open('%s/ran.log', 'a'))\n"
             "  f:write('%s', ' ', lib.tag, ' ', args.n, '\\n')\n"
             "  f:close()\n"
             "end }\n",
             extra ? extra : "", body ? body : "", root, version);
    write_file("workers/echo_worker.lua", code);
}

static void write_lib(const char *tag) {
    char code[256];
    snprintf(code, sizeof code, "return { tag = '%s' }\n", tag);
    write_file("lib/verlib.lua", code);
}

static void make_app(const char *mode, int concurrency, const char *extra_cfg) {
    snprintf(root, sizeof root, "/tmp/wh_test_reload_XXXXXX");
    if (mkdtemp(root) == NULL) abort();
    char resolved[PATH_MAX];
    if (realpath(root, resolved) == NULL || strlen(resolved) >= sizeof root) abort();
    memcpy(root, resolved, strlen(resolved) + 1);
    char d[PATH_MAX + 16];
    snprintf(d, sizeof d, "%s/config", root);
    mkdir(d, 0755);
    snprintf(d, sizeof d, "%s/workers", root);
    mkdir(d, 0755);
    snprintf(d, sizeof d, "%s/lib", root);
    mkdir(d, 0755);
    char cfg[1024];
    snprintf(cfg, sizeof cfg, "workers:\n  mode: %s\n  concurrency: %d\n  timeout: 60\n%s", mode, concurrency,
             extra_cfg ? extra_cfg : "");
    write_file("config/test.yaml", cfg);
    write_lib("libA");
    write_echo("v1", NULL, NULL);
}

static wh_host *open_host(void) {
    wh_host_options o = {root, "test", NULL};
    wh_host *h = NULL;
    wh_err err = WH_ERR_INIT;
    if (wh_host_new(&h, &o, &err) != 0) {
        fprintf(stderr, "wh_host_new: %s\n", err.msg);
        abort();
    }
    if (wh_host_start(h, &err) != 0) {
        fprintf(stderr, "wh_host_start: %s\n", err.msg);
        abort();
    }
    return h;
}

static void close_app(wh_host *h) {
    wh_host_free(h);
    wh_test_rm_tree(root);
}

static int enqueue_n(wh_host *h, long n) {
    char args[64];
    snprintf(args, sizeof args, "{\"n\":%ld}", n);
    wh_err err = WH_ERR_INIT;
    int rc = wh_host_enqueue(h, "EchoWorker", args, strlen(args), NULL, NULL, &err);
    if (rc) fprintf(stderr, "enqueue %ld: %s\n", n, err.msg);
    return rc;
}

/* The line of ran.log for job n ("v1 libA 7"), or "" */
static void line_for(long n, char *out, size_t cap) {
    out[0] = '\0';
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/ran.log", root);
    FILE *f = fopen(path, "r");
    if (f == NULL) return;
    char buf[256], want[32];
    snprintf(want, sizeof want, " %ld\n", n);
    while (fgets(buf, sizeof buf, f)) {
        size_t bl = strlen(buf), wl = strlen(want);
        if (bl >= wl && strcmp(buf + bl - wl, want) == 0) {
            buf[bl - 1] = '\0';
            snprintf(out, cap, "%s", buf);
        }
    }
    fclose(f);
}

static bool exists(const char *rel) {
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    return access(path, F_OK) == 0;
}

/* Polls (generously) until pred holds; no timing is asserted. */
static bool wait_until(bool (*pred)(void *), void *ud) {
    for (int i = 0; i < 3000; i++) { /* 60 s */
        if (pred(ud)) return true;
        usleep(20000);
    }
    return false;
}

static bool file_exists_pred(void *ud) { return exists(ud); }

static bool all_switched(void *ud) {
    wh_async_stats s;
    wh_async_get_stats(wh_host_async(ud), &s);
    return s.on_generation == (size_t)wh_host_config(ud)->concurrency;
}

/* ---- outcomes seen by the observer ---------------------------------------------- */

static atomic_long seen_ok, seen_failed;
static char first_failure[1024];
static pthread_mutex_t failure_lock = PTHREAD_MUTEX_INITIALIZER;

static void observe(void *ud, const wh_job *job, const wh_run_result *res) {
    (void)ud;
    (void)job;
    if (res->rc == 0) {
        atomic_fetch_add(&seen_ok, 1);
        return;
    }
    atomic_fetch_add(&seen_failed, 1);
    pthread_mutex_lock(&failure_lock);
    if (first_failure[0] == '\0') snprintf(first_failure, sizeof first_failure, "%s", res->err.msg);
    pthread_mutex_unlock(&failure_lock);
}

static wh_host *open_observed_host(void) {
    wh_host_options o = {root, "test", NULL};
    wh_host *h = NULL;
    wh_err err = WH_ERR_INIT;
    if (wh_host_new(&h, &o, &err) != 0) abort();
    atomic_store(&seen_ok, 0);
    atomic_store(&seen_failed, 0);
    first_failure[0] = '\0';
    wh_host_set_observer(h, observe, NULL);
    if (wh_host_start(h, &err) != 0) abort();
    return h;
}

/* ---- tests ---------------------------------------------------------------------- */

static void test_new_code_after_reload_running_job_on_old(void) {
    make_app("BackgroundAsync", 2, NULL);
    /* v1 waits for a "go" file, so it is running while the reload happens */
    char body[PATH_MAX * 2 + 256];
    snprintf(body, sizeof body,
             "if args.n == 1 then io.open('%s/started', 'w'):close()\n"
             "    while not io.open('%s/go') do end end",
             root, root);
    write_echo("v1", NULL, body);
    wh_host *h = open_observed_host();
    ASSERT_EQ_INT((int)wh_host_generation(h), 1);
    ASSERT_EQ_DBL(wh_host_reloaded_at(h), 0.0);
    ASSERT_EQ_INT(enqueue_n(h, 1), 0);
    ASSERT(wait_until(file_exists_pred, "started"));

    write_echo("v2", NULL, NULL);
    wh_err err = WH_ERR_INIT;
    ASSERT_EQ_INT(wh_host_reload(h, &err), 0);
    ASSERT_EQ_INT((int)wh_host_generation(h), 2);
    ASSERT(wh_host_reloaded_at(h) > 0);
    ASSERT_EQ_INT(enqueue_n(h, 2), 0);
    write_file("go", "");
    wh_host_wait_idle(h, 0, NULL);

    char line[256];
    line_for(1, line, sizeof line);
    ASSERT_STREQ(line, "v1 libA 1"); /* the running job finished on the old code */
    line_for(2, line, sizeof line);
    ASSERT_STREQ(line, "v2 libA 2");
    ASSERT(wait_until(all_switched, h));
    wh_async_stats st;
    wh_async_get_stats(wh_host_async(h), &st);
    ASSERT_EQ_INT((int)st.generation, 2);
    ASSERT_EQ_INT((int)atomic_load(&seen_failed), 0);
    close_app(h);
}

static void test_broken_reload_changes_nothing(void) {
    make_app("BackgroundAsync", 2, NULL);
    wh_host *h = open_host();
    const struct {
        const char *code, *want;
    } cases[] = {
        {"local wh = require 'workerhost'\nreturn wh.worker { perform = function( end }\n",
         "workers/echo_worker.lua:2:"},
        {"local wh = require 'workerhost'\nlocal x = nil\nlocal y = x.field\n"
         "return wh.worker { perform = function() end }\n",
         "workers/echo_worker.lua:3:"},
        {"local wh = require 'workerhost'\nreturn wh.worker {\n  args = { n = 'integr' },\n"
         "  perform = function() end }\n",
         "workers/echo_worker.lua"},
        {"local wh = require 'workerhost'\nreturn 42\n", "workers/echo_worker.lua"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_file("workers/echo_worker.lua", cases[i].code);
        wh_err err = WH_ERR_INIT;
        ASSERT(wh_host_reload(h, &err) != 0);
        ASSERT_CONTAINS(err.msg, cases[i].want);
        ASSERT_EQ_INT((int)wh_host_generation(h), 1);
        ASSERT_EQ_DBL(wh_host_reloaded_at(h), 0.0);
        ASSERT_EQ_INT(enqueue_n(h, (long)i), 0); /* the old code still serves */
        wh_host_wait_idle(h, 0, NULL);
        char line[256];
        line_for((long)i, line, sizeof line);
        char want[64];
        snprintf(want, sizeof want, "v1 libA %zu", i);
        ASSERT_STREQ(line, want);
    }
    close_app(h);
}

static void test_broken_module_nobody_requires_yet(void) {
    make_app("BackgroundAsync", 1, NULL);
    wh_host *h = open_host();
    write_file("lib/later.lua", "local M = {}\nfunction M.f( return 1 end\nreturn M\n");
    wh_err err = WH_ERR_INIT;
    ASSERT_EQ_INT(wh_host_reload(h, &err), WH_ESCRIPT);
    ASSERT_CONTAINS(err.msg, "lib/later.lua:2:");
    ASSERT_EQ_INT((int)wh_host_generation(h), 1);
    write_file("lib/later.lua", "local M = {}\nfunction M.f() return 1 end\nreturn M\n");
    ASSERT_EQ_INT(wh_host_reload(h, &err), 0);
    ASSERT_EQ_INT((int)wh_host_generation(h), 2);
    close_app(h);
}

static void test_schema_follows_generation(void) {
    make_app("BackgroundAsync", 1, NULL);
    wh_host *h = open_observed_host();
    wh_err err = WH_ERR_INIT;
    /* v1 refuses a "label" argument ... */
    ASSERT_EQ_INT(wh_host_enqueue(h, "EchoWorker", "{\"n\":1,\"label\":\"x\"}", 19, NULL, NULL, &err), WH_EARGS);
    /* ... v2 requires it */
    write_echo("v2", ", label = 'string'", NULL);
    ASSERT_EQ_INT(wh_host_reload(h, &err), 0);
    ASSERT_EQ_INT(wh_host_enqueue(h, "EchoWorker", "{\"n\":2,\"label\":\"x\"}", 19, NULL, NULL, &err), 0);
    ASSERT_EQ_INT(wh_host_enqueue(h, "EchoWorker", "{\"n\":3}", 7, NULL, NULL, &err), WH_EARGS);
    wh_host_wait_idle(h, 0, NULL);
    char line[256];
    line_for(2, line, sizeof line);
    ASSERT_STREQ(line, "v2 libA 2");
    ASSERT_EQ_INT((int)atomic_load(&seen_failed), 0);
    close_app(h);
}

static void test_schema_check_at_run_uses_the_running_generation(void) {
    /* a job accepted by v1 but waiting in the queue when v2 (which needs a
     * new argument) arrives is checked against v2, the code that runs it,
     * and refused: it never reaches v2's perform with arguments v2 cannot
     * take */
    make_app("BackgroundAsync", 1, NULL);
    char body[PATH_MAX * 2 + 256];
    snprintf(body, sizeof body,
             "if args.n == 1 then io.open('%s/started', 'w'):close()\n"
             "    while not io.open('%s/go') do end end",
             root, root);
    write_echo("v1", NULL, body);
    wh_host *h = open_observed_host();
    ASSERT_EQ_INT(enqueue_n(h, 1), 0);
    ASSERT(wait_until(file_exists_pred, "started"));
    ASSERT_EQ_INT(enqueue_n(h, 2), 0); /* queued behind job 1, checked by v1 */
    write_echo("v2", ", label = 'string'", NULL);
    wh_err err = WH_ERR_INIT;
    ASSERT_EQ_INT(wh_host_reload(h, &err), 0);
    write_file("go", "");
    wh_host_wait_idle(h, 0, NULL);
    char line[256];
    line_for(1, line, sizeof line);
    ASSERT_STREQ(line, "v1 libA 1");
    line_for(2, line, sizeof line);
    ASSERT_STREQ(line, ""); /* v2 never ran it */
    ASSERT_EQ_INT((int)atomic_load(&seen_failed), 1);
    ASSERT_CONTAINS(first_failure, "label");
    close_app(h);
}

static void test_recycled_vm_keeps_its_generation(void) {
    /* every job rebuilds the VM (recycle_after_jobs: 1) */
    make_app("BackgroundAsync", 1, "  recycle_after_jobs: 1\n");
    wh_host *h = open_observed_host();
    write_echo("v2", NULL, NULL);
    write_lib("libB");
    wh_err err = WH_ERR_INIT;
    ASSERT_EQ_INT(wh_host_reload(h, &err), 0);
    /* on disk from now on: v3 and libC, not reloaded */
    write_echo("v3", NULL, NULL);
    write_lib("libC");
    for (long n = 1; n <= 5; n++) ASSERT_EQ_INT(enqueue_n(h, n), 0);
    wh_host_wait_idle(h, 0, NULL);
    wh_async_stats s;
    wh_async_get_stats(wh_host_async(h), &s);
    ASSERT(s.vm_rebuilds >= 4);
    for (long n = 1; n <= 5; n++) {
        char line[256];
        line_for(n, line, sizeof line);
        char want[64];
        snprintf(want, sizeof want, "v2 libB %ld", n);
        ASSERT_STREQ(line, want);
    }
    close_app(h);
}

static void test_removed_and_added_workers(void) {
    make_app("BackgroundAsync", 2, NULL);
    wh_host *h = open_host();
    write_file("workers/other_worker.lua", "local wh = require 'workerhost'\n"
                                           "return wh.worker { perform = function() end }\n");
    wh_err err = WH_ERR_INIT;
    ASSERT_EQ_INT(wh_host_enqueue(h, "OtherWorker", "{}", 2, NULL, NULL, &err), WH_ENOCLASS);
    ASSERT_EQ_INT(wh_host_reload(h, &err), 0);
    ASSERT_EQ_INT(wh_host_enqueue(h, "OtherWorker", "{}", 2, NULL, NULL, &err), 0);
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/workers/other_worker.lua", root);
    unlink(path);
    ASSERT_EQ_INT(wh_host_reload(h, &err), 0);
    ASSERT_EQ_INT((int)wh_host_generation(h), 3);
    ASSERT_EQ_INT(wh_host_enqueue(h, "OtherWorker", "{}", 2, NULL, NULL, &err), WH_ENOCLASS);
    ASSERT_CONTAINS(err.msg, "EchoWorker");
    wh_host_wait_idle(h, 0, NULL);
    close_app(h);
}

static void test_removed_worker_queued_job_is_unknown_class(void) {
    make_app("BackgroundAsync", 1, NULL);
    char body[PATH_MAX * 2 + 256];
    snprintf(body, sizeof body,
             "if args.n == 1 then io.open('%s/started', 'w'):close()\n"
             "    while not io.open('%s/go') do end end",
             root, root);
    write_echo("v1", NULL, body);
    write_file("workers/other_worker.lua", "local wh = require 'workerhost'\n"
                                           "return wh.worker { perform = function() end }\n");
    wh_host *h = open_observed_host();
    ASSERT_EQ_INT(enqueue_n(h, 1), 0);
    ASSERT(wait_until(file_exists_pred, "started"));
    wh_err err = WH_ERR_INIT;
    ASSERT_EQ_INT(wh_host_enqueue(h, "OtherWorker", "{}", 2, NULL, NULL, &err), 0); /* queued */
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/workers/other_worker.lua", root);
    unlink(path);
    ASSERT_EQ_INT(wh_host_reload(h, &err), 0);
    write_file("go", "");
    wh_host_wait_idle(h, 0, NULL);
    ASSERT_EQ_INT((int)atomic_load(&seen_failed), 1);
    ASSERT_CONTAINS(first_failure, "OtherWorker");
    wh_async_stats st;
    wh_async_get_stats(wh_host_async(h), &st);
    ASSERT_EQ_INT((int)st.retries, 1); /* kept for a retry, as any unknown class */
    ASSERT_EQ_INT((int)st.dead, 0);
    close_app(h);
}

static void test_foreground_blocking_reload(void) {
    make_app("ForegroundBlocking", 2, NULL);
    wh_host_options o = {root, "test", NULL};
    wh_host *h = NULL;
    wh_err err = WH_ERR_INIT;
    ASSERT_EQ_INT(wh_host_new(&h, &o, &err), 0);
    ASSERT_EQ_INT(enqueue_n(h, 1), 0); /* leaves a v1 VM in the pool */
    write_echo("v2", NULL, NULL);
    write_lib("libB");
    ASSERT_EQ_INT(wh_host_reload(h, &err), 0);
    ASSERT_EQ_INT(enqueue_n(h, 2), 0);
    char line[256];
    line_for(1, line, sizeof line);
    ASSERT_STREQ(line, "v1 libA 1");
    line_for(2, line, sizeof line);
    ASSERT_STREQ(line, "v2 libB 2");
    close_app(h);
}

/* 100 reloads while a producer enqueues jobs; every other reload adds an
 * optional argument (a compatible change): every job runs, none fails. */
typedef struct producer {
    wh_host *h;
    atomic_bool stop;
    long sent, refused;
} producer;

static void *produce(void *arg) {
    producer *p = arg;
    while (!atomic_load(&p->stop)) {
        if (enqueue_n(p->h, p->sent + 1) == 0) p->sent++;
        else p->refused++;
        /* as a heartbeat would, on another thread */
        if (wh_host_generation(p->h) == 0 || wh_host_reloaded_at(p->h) < 0) p->refused++;
        if (p->sent % 8 == 0) usleep(200);
    }
    return NULL;
}

static void test_reload_storm_loses_nothing(void) {
    make_app("BackgroundAsync", 4, "  queue_limit: 1000000\n");
    wh_host *h = open_observed_host();
    producer p = {.h = h};
    atomic_init(&p.stop, false);
    pthread_t t;
    pthread_create(&t, NULL, produce, &p);
    for (int i = 0; i < 100; i++) {
        char v[16];
        snprintf(v, sizeof v, "g%d", i + 2);
        write_echo(v, i % 2 ? ", note = 'string?'" : NULL, NULL);
        wh_err err = WH_ERR_INIT;
        if (wh_host_reload(h, &err) != 0) {
            fprintf(stderr, "reload %d: %s\n", i, err.msg);
            ASSERT(false);
        }
        usleep(5000);
    }
    atomic_store(&p.stop, true);
    pthread_join(t, NULL);
    wh_host_wait_idle(h, 0, NULL);
    ASSERT_EQ_INT((int)wh_host_generation(h), 101);
    ASSERT(p.sent > 100);
    ASSERT_EQ_INT((int)p.refused, 0);
    ASSERT_EQ_INT((int)atomic_load(&seen_failed), 0);
    if (atomic_load(&seen_failed)) fprintf(stderr, "first failure: %s\n", first_failure);
    ASSERT_EQ_INT((int)atomic_load(&seen_ok), (int)p.sent);
    /* every job ran exactly once: one line per jid-like number */
    long lines = 0;
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/ran.log", root);
    FILE *f = fopen(path, "r");
    ASSERT(f != NULL);
    char buf[256];
    while (f && fgets(buf, sizeof buf, f)) lines++;
    if (f) fclose(f);
    ASSERT_EQ_INT((int)lines, (int)p.sent);
    ASSERT(wait_until(all_switched, h));
    close_app(h);
}

int main(void) {
    alarm(600);
    wh_log_setup(WH_LOG_ERROR, WH_LOG_TEXT);
    RUN(test_new_code_after_reload_running_job_on_old);
    RUN(test_broken_reload_changes_nothing);
    RUN(test_broken_module_nobody_requires_yet);
    RUN(test_schema_follows_generation);
    RUN(test_schema_check_at_run_uses_the_running_generation);
    RUN(test_recycled_vm_keeps_its_generation);
    RUN(test_removed_and_added_workers);
    RUN(test_removed_worker_queued_job_is_unknown_class);
    RUN(test_foreground_blocking_reload);
    RUN(test_reload_storm_loses_nothing);
    return TEST_REPORT();
}
