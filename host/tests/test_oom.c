/* test_oom.c -- allocation failures outside a VM's own limit: a host whose
 * workers.concurrency x workers.memory_limit is more than the process may
 * allocate (RLIMIT_AS here; a cgroup's memory.max alike). A job that eats
 * what is left must fail alone, with the out-of-memory outcome, and the
 * host must go on with the next jobs; the host says at start that the
 * limits cannot all be honoured.
 *
 * Each case runs in a forked child under a lowered RLIMIT_AS, so an abort
 * fails the test instead of ending the suite. Skipped under ASan/TSan, whose
 * shadow memory leaves no address space to limit.
 * SPDX-License-Identifier: MIT
 */
#include <fcntl.h>
#include <malloc.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "app/host.h"
#include "app/job.h"
#include "core/err.h"
#include "lua/vm.h"
#include "test.h"
#include "workerhost.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define WH_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define WH_TEST_SANITIZED 1
#endif
#endif
#ifndef WH_TEST_SANITIZED
#define WH_TEST_SANITIZED 0
#endif

#define MIB (1024L * 1024L)
#define HEADER "local wh = require 'workerhost'\n"

static char root[256];

static void write_in(const char *rel, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    FILE *f = fopen(path, "w");
    if (f == NULL) abort();
    fputs(text, f);
    fclose(f);
}

static void make_app(const char *mode) {
    snprintf(root, sizeof root, "/tmp/wh_test_oom_XXXXXX");
    if (mkdtemp(root) == NULL) abort();
    char d[512];
    snprintf(d, sizeof d, "%s/config", root);
    mkdir(d, 0755);
    snprintf(d, sizeof d, "%s/workers", root);
    mkdir(d, 0755);
    char yaml[512];
    snprintf(yaml, sizeof yaml,
             "workers:\n  mode: %s\n  concurrency: 2\n  memory_limit: 4GiB\n  timeout: 60\n"
             "logger:\n  level: warn\n", mode);
    write_in("config/test.yaml", yaml);
    /* eats memory until an allocation fails: long before its VM's 4 GiB */
    write_in("workers/hog.lua",
             HEADER "return wh.worker { retry = false, perform = function()\n"
                    "  local t = {} for i = 1, 1e9 do t[i] = ('x'):rep(4000) .. i end\n"
                    "end }\n");
    /* fills memory, then asks the host for work on its behalf: converting
     * a large table for wh.enqueue, while the process is still full */
    write_in("workers/hog_enqueue.lua",
             HEADER "return wh.worker { retry = false, perform = function()\n"
                    "  local t = {}\n"
                    "  pcall(function() for i = 1, 1e9 do t[i] = ('x'):rep(4000) .. i end end)\n"
                    "  for i = 1, 100 do t[#t] = nil end\n"
                    "  collectgarbage()\n"
                    "  wh.enqueue('Ok', { list = t })\n"
                    "  error('the enqueue went through')\n"
                    "end }\n");
    write_in("workers/ok.lua",
             HEADER "return wh.worker { retry = false, args = { list = 'any?' }, perform = function()\n"
                    "  local t = {} for i = 1, 1000 do t[i] = ('y'):rep(100) .. i end\n"
                    "end }\n");
}

static void remove_app(void) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "  could not remove %s\n", root);
}

/* ---- in the child ------------------------------------------------------------ */

typedef struct outcome {
    char class_name[32];
    int rc;
    char msg[1100];
} outcome;

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static outcome outs[128];
static size_t nouts;

static void observe(void *ud, const wh_job *job, const wh_run_result *res) {
    (void)ud;
    pthread_mutex_lock(&out_lock);
    if (nouts < sizeof outs / sizeof outs[0]) {
        outcome *o = &outs[nouts++];
        snprintf(o->class_name, sizeof o->class_name, "%s", job->class_name ? job->class_name : "?");
        o->rc = res->rc;
        snprintf(o->msg, sizeof o->msg, "%s", res->err.msg);
    }
    pthread_mutex_unlock(&out_lock);
}

/* The child's address space now, from /proc/self/status (bytes). */
static long vm_size(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL) return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmSize: %ld kB", &kb) == 1) break;
    fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

#define CHILD_FAIL(...)                                                        \
    do {                                                                       \
        fprintf(stderr, "  child: " __VA_ARGS__);                              \
        fputc('\n', stderr);                                                   \
        _exit(1);                                                              \
    } while (0)

static void enqueue(wh_host *h, const char *cls) {
    wh_err err;
    if (wh_host_enqueue(h, cls, "[]", 2, NULL, NULL, &err) != 0) CHILD_FAIL("enqueue %s: %s", cls, err.msg);
}

/* Counts outcomes of class cls with code rc, from index `from` on. */
static size_t count(size_t from, const char *cls, int rc) {
    size_t n = 0;
    for (size_t i = from; i < nouts; i++) n += strcmp(outs[i].class_name, cls) == 0 && outs[i].rc == rc;
    return n;
}

/* BackgroundAsync under RLIMIT_AS: the hog jobs fail as out of memory, the
 * jobs after them run, and the start warned about the limits. Exits 0 when
 * all held. */
static void child_async(const char *hog) {
    /* room for the host and its threads, far less than 2 x 4 GiB */
    long now = vm_size();
    if (now < 0) CHILD_FAIL("no VmSize in /proc/self/status");
    struct rlimit rl = {(rlim_t)(now + 384 * MIB), (rlim_t)(now + 384 * MIB)};
    if (setrlimit(RLIMIT_AS, &rl) != 0) CHILD_FAIL("setrlimit");
    char logpath[600];
    snprintf(logpath, sizeof logpath, "%s/stderr.log", root);
    int fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int saved = dup(2);
    dup2(fd, 2);
    close(fd);

    wh_host_options o = {root, "test", NULL};
    wh_host *h = NULL;
    wh_err err;
    if (wh_host_new(&h, &o, &err) != 0) CHILD_FAIL("wh_host_new: %s", err.msg);
    wh_host_set_observer(h, observe, NULL);
    if (wh_host_start(h, &err) != 0) CHILD_FAIL("wh_host_start: %s", err.msg);
    bool mixed = strcmp(hog, "Mixed") == 0;
    if (mixed) hog = "Hog";
    /* both threads eat memory at once, twice over; in "Mixed", with small
     * jobs in between, whose host allocations (parsing, queueing, logging)
     * meet a process that is out of memory */
    for (int i = 0; i < 4; i++) {
        enqueue(h, hog);
        for (int k = 0; mixed && k < 10; k++) enqueue(h, "Ok");
    }
    wh_host_wait_idle(h, 0, NULL);
    size_t after_hogs = nouts;
    if (mixed) {
        /* each small job either ran or failed as out of memory */
        for (size_t i = 0; i < nouts; i++)
            if (outs[i].rc != 0 && outs[i].rc != WH_ENOMEM)
                CHILD_FAIL("%s: rc %d: %s", outs[i].class_name, outs[i].rc, outs[i].msg);
        if (count(0, "Ok", 0) + count(0, "Ok", WH_ENOMEM) != 40) CHILD_FAIL("small jobs lost");
    }
    for (int i = 0; i < 6; i++) enqueue(h, "Ok");
    wh_host_wait_idle(h, 0, NULL);
    wh_host_free(h);
    dup2(saved, 2);
    close(saved);

    for (size_t i = 0; i < nouts; i++) fprintf(stderr, "  %s: %d %s\n", outs[i].class_name, outs[i].rc, outs[i].msg);
    if (after_hogs != (mixed ? 44u : 4u) || count(0, hog, WH_ENOMEM) != 4)
        CHILD_FAIL("the hog jobs did not all fail as out of memory");
    for (size_t i = 0; i < after_hogs; i++)
        if (outs[i].rc && strstr(outs[i].msg, "out of memory") == NULL) CHILD_FAIL("message: %s", outs[i].msg);
    if (count(after_hogs, "Ok", 0) != 6) CHILD_FAIL("the jobs after the hogs did not all run");

    /* the start said the limits cannot all be honoured, naming the numbers */
    FILE *f = fopen(logpath, "r");
    char buf[8192];
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f) fclose(f);
    buf[n] = '\0';
    if (strstr(buf, "workers.concurrency") == NULL || strstr(buf, "RLIMIT_AS") == NULL ||
        strstr(buf, "8589934592") == NULL)
        CHILD_FAIL("no warning at start about the memory limits; the log was:\n%s", buf);
    _exit(0);
}

/* Runs fn(arg) in a child; returns its exit status, or -signal. */
static int in_child(void (*fn)(const char *), const char *arg) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) abort();
    if (pid == 0) {
        alarm(120); /* a hang fails too */
        fn(arg);
        _exit(1);
    }
    int st;
    if (waitpid(pid, &st, 0) != pid) return -1000;
    if (WIFSIGNALED(st)) return -WTERMSIG(st);
    return WEXITSTATUS(st);
}

/* A VM built when the process is out of memory (a rebuild, a recycle):
 * WH_ENOMEM, and the next build, with memory back, works. */
static void child_vm_build(const char *unused) {
    (void)unused;
    static const char code[] =
        HEADER "local big = {} for i = 1, 2e6 do big[i] = ('z'):rep(16) .. i end\n"
               "return wh.worker { perform = function() end }\n";
    wh_source src = {"/app/workers/fat.lua", "@workers/fat.lua", (char *)code, sizeof code - 1, NULL};
    wh_vm_options o = {1024 * MIB, NULL, NULL, NULL, 0, false, NULL};
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) != 0) CHILD_FAIL("getrlimit");
    struct rlimit low = {(rlim_t)(vm_size() + 32 * MIB), rl.rlim_max};
    if (setrlimit(RLIMIT_AS, &low) != 0) CHILD_FAIL("setrlimit");
    wh_err err;
    wh_vm *vm = wh_vm_new(&o, &src, 1, &err);
    if (vm != NULL) CHILD_FAIL("a VM of ~100 MB built under a 32 MB margin");
    if (err.code != WH_ENOMEM) CHILD_FAIL("code %d: %s", err.code, err.msg);
    fprintf(stderr, "  child: %s\n", err.msg);
    if (strstr(err.msg, "the system refused") == NULL) CHILD_FAIL("message: %s", err.msg);
    if (setrlimit(RLIMIT_AS, &rl) != 0) CHILD_FAIL("setrlimit back");
    vm = wh_vm_new(&o, &src, 1, &err);
    if (vm == NULL) CHILD_FAIL("with memory back: %s", err.msg);
    wh_vm_free(vm);

    _exit(0);
}

/* The system's refusal at any point of a small VM's build, in a fresh
 * child (whose heap holds no free memory to reuse): a VM or WH_ENOMEM,
 * never an abort (the panic of an allocation outside a protected call). */
static void child_vm_sweep(const char *unused) {
    (void)unused;
    wh_vm_options o = {1024 * MIB, NULL, NULL, NULL, 0, false, NULL};
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) != 0) CHILD_FAIL("getrlimit");
    struct rlimit low = rl;
    wh_vm *vm;
    wh_err err;
    static const char small[] = HEADER "local t = {} for i = 1, 20000 do t[i] = {i} end\n"
                                       "return wh.worker { args = { n = 'integer?' }, perform = function() end }\n";
    wh_source ssrc = {"/app/workers/small.lua", "@workers/small.lua", (char *)small, sizeof small - 1, NULL};
    int built = 0, refused = 0;
    for (long margin = 0; margin <= 4 * MIB; margin += 16 * 1024) {
        long now = vm_size();
        malloc_trim(0); /* the free heap back to the system, so the build needs new mappings */
        low.rlim_cur = (rlim_t)(now + margin);
        if (setrlimit(RLIMIT_AS, &low) != 0) CHILD_FAIL("setrlimit");
        vm = wh_vm_new(&o, &ssrc, 1, &err);
        if (setrlimit(RLIMIT_AS, &rl) != 0) CHILD_FAIL("setrlimit back");
        if (vm == NULL && err.code != WH_ENOMEM) CHILD_FAIL("margin %ld: code %d: %s", margin, err.code, err.msg);
        if (vm) built++;
        else refused++;
        wh_vm_free(vm);
    }
    fprintf(stderr, "  child: small VMs built %d, refused %d\n", built, refused);
    if (built == 0 || refused == 0) CHILD_FAIL("the margins did not cover both outcomes");
    _exit(0);
}

/* No worker thread can start (no address space for its stack): starting
 * the host fails, naming it, instead of accepting jobs that never run. */
static void child_no_threads(const char *unused) {
    (void)unused;
    make_app("BackgroundAsync");
    wh_host_options o = {root, "test", NULL};
    wh_host *h = NULL;
    wh_err err = WH_ERR_INIT;
    if (wh_host_new(&h, &o, &err) != 0) CHILD_FAIL("wh_host_new: %s", err.msg);
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) != 0) CHILD_FAIL("getrlimit");
    /* room for the VMs, not for an 8 MiB thread stack */
    struct rlimit low = {(rlim_t)(vm_size() + 6 * MIB), rl.rlim_max};
    struct rlimit stack = {8 * MIB, 8 * MIB};
    setrlimit(RLIMIT_STACK, &stack); /* the default thread stack size follows it */
    if (setrlimit(RLIMIT_AS, &low) != 0) CHILD_FAIL("setrlimit");
    int rc = wh_host_start(h, &err);
    if (setrlimit(RLIMIT_AS, &rl) != 0) CHILD_FAIL("setrlimit back");
    fprintf(stderr, "  child: start: %d %s\n", rc, err.msg);
    if (rc == 0) CHILD_FAIL("started with no worker thread");
    if (rc != WH_EUNAVAIL || strstr(err.msg, "worker thread") == NULL) CHILD_FAIL("code %d: %s", rc, err.msg);
    wh_host_free(h);
    remove_app();
    _exit(0);
}

static void test_no_worker_thread(void) {
    if (WH_TEST_SANITIZED) return;
    int st = in_child(child_no_threads, NULL);
    if (st != 0) WH_TEST_FAIL("the child ended with %s %d", st < 0 ? "signal" : "status", st < 0 ? -st : st);
}

static void test_vm_build_out_of_memory(void) {
    int st = in_child(child_vm_build, NULL);
    if (st != 0) WH_TEST_FAIL("the child ended with %s %d", st < 0 ? "signal" : "status", st < 0 ? -st : st);
    st = in_child(child_vm_sweep, NULL);
    if (st != 0) WH_TEST_FAIL("the sweep's child ended with %s %d", st < 0 ? "signal" : "status", st < 0 ? -st : st);
}

static void test_async_host_survives_the_process_limit(void) {
    make_app("BackgroundAsync");
    int st = in_child(child_async, "Hog");
    remove_app();
    if (st != 0) WH_TEST_FAIL("the child (the host under RLIMIT_AS) ended with %s %d", st < 0 ? "signal" : "status",
                              st < 0 ? -st : st);
}

static void test_allocations_on_behalf_of_a_job(void) {
    make_app("BackgroundAsync");
    int st = in_child(child_async, "HogEnqueue");
    remove_app();
    if (st != 0) WH_TEST_FAIL("the child (the host under RLIMIT_AS) ended with %s %d", st < 0 ? "signal" : "status",
                              st < 0 ? -st : st);
}

static void test_other_jobs_meanwhile(void) {
    make_app("BackgroundAsync");
    int st = in_child(child_async, "Mixed");
    remove_app();
    if (st != 0) WH_TEST_FAIL("the child (the host under RLIMIT_AS) ended with %s %d", st < 0 ? "signal" : "status",
                              st < 0 ? -st : st);
}

int main(void) {
    if (WH_TEST_SANITIZED) {
        fprintf(stderr, "skipped: RLIMIT_AS cannot be lowered under a sanitizer's shadow memory\n");
        return 0;
    }
    RUN(test_vm_build_out_of_memory);
    RUN(test_no_worker_thread);
    RUN(test_async_host_survives_the_process_limit);
    RUN(test_allocations_on_behalf_of_a_job);
    RUN(test_other_jobs_meanwhile);
    return TEST_REPORT();
}
