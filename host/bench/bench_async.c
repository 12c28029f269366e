/* bench_async.c -- BackgroundAsync throughput: no-op jobs enqueued through
 * the C API (wh_host_enqueue) from one thread and performed by the worker
 * threads. Prints, for each concurrency given, the median jobs/s over the
 * runs and the process's peak RSS; then the cost per job of the C check plus
 * the call into Lua, measured alone on one VM.
 *
 *   bench_async [JOBS] [RUNS] [CONCURRENCY...]     (defaults 200000 5 1 2 4) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/catalog.h"
#include "app/host.h"
#include "app/job.h"
#include "core/clock.h"
#include "core/log.h"
#include "lua/vm.h"
#include "workerhost.h"

static char root[256];

static void write_file(const char *rel, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    FILE *f = fopen(path, "w");
    if (!f) { perror(path); exit(1); }
    fputs(text, f);
    fclose(f);
}

static void make_app(int concurrency, long jobs) {
    char d[512], yaml[512];
    snprintf(d, sizeof d, "%s/workers", root);
    mkdir(d, 0755);
    snprintf(d, sizeof d, "%s/config", root);
    mkdir(d, 0755);
    write_file("workers/noop.lua", "local wh = require 'workerhost'\n"
                                   "return wh.worker { args = { n = 'integer' }, perform = function(args) end }\n");
    snprintf(yaml, sizeof yaml,
             "workers:\n  mode: BackgroundAsync\n  concurrency: %d\n  queue_limit: %ld\nlogger:\n  level: warn\n",
             concurrency, jobs + 10);
    write_file("config/bench.yaml", yaml);
}

static int cmp_dbl(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double last_enqueue_rate;

static double run_once(int concurrency, long jobs) {
    make_app(concurrency, jobs);
    wh_host_options o = {root, "bench", NULL};
    wh_host *h;
    wh_err err;
    if (wh_host_new(&h, &o, &err) || wh_host_start(h, &err)) {
        fprintf(stderr, "bench: %s\n", err.msg);
        exit(1);
    }
    const char *args = "{\"n\":1}";
    size_t len = strlen(args);
    double t0 = wh_clock_monotonic();
    for (long i = 0; i < jobs; i++) {
        if (wh_host_enqueue(h, "Noop", args, len, NULL, NULL, &err) != 0) {
            fprintf(stderr, "bench: enqueue: %s\n", err.msg);
            exit(1);
        }
    }
    last_enqueue_rate = (double)jobs / (wh_clock_monotonic() - t0);
    wh_host_wait_idle(h, 0, NULL);
    double dt = wh_clock_monotonic() - t0;
    wh_host_free(h);
    return (double)jobs / dt;
}

static double peak_rss_mib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

/* The C check plus the call into Lua, alone: one VM, one parsed payload. */
static double check_and_call_ns(long iters) {
    make_app(1, 10);
    wh_config *cfg;
    wh_catalog *cat;
    wh_err err;
    wh_config_source src = {root, "bench", NULL};
    if (wh_config_load(&cfg, &src, &err) || wh_catalog_load(cfg, &cat, &err)) {
        fprintf(stderr, "bench: %s\n", err.msg);
        exit(1);
    }
    wh_vm *vm = wh_catalog_new_vm(cat, cfg, NULL, &err);
    const char *payload = "{\"class\":\"Noop\",\"args\":[{\"n\":1}],\"queue\":\"default\",\"retry\":25,"
                          "\"jid\":\"0123456789abcdef01234567\",\"created_at\":1700000000.5,\"enqueued_at\":1700000000.5}";
    wh_job *job = wh_job_parse(payload, strlen(payload), NULL, &err);
    wh_job_meta meta;
    wh_job_meta_of(job, &meta);
    double t0 = wh_clock_monotonic();
    for (long i = 0; i < iters; i++) {
        wh_run_result res;
        wh_vm_perform(vm, &meta, job->args, 30, &res);
        if (res.rc) { fprintf(stderr, "bench: %s\n", res.err.msg); exit(1); }
    }
    double ns = (wh_clock_monotonic() - t0) * 1e9 / (double)iters;
    wh_job_free(job);
    wh_vm_free(vm);
    wh_catalog_release(cat);
    wh_config_free(cfg);
    return ns;
}

int main(int argc, char **argv) {
    long jobs = argc > 1 ? atol(argv[1]) : 200000;
    int runs = argc > 2 ? atoi(argv[2]) : 5;
    int conc[8] = {1, 2, 4}, nconc = 3;
    if (argc > 3) {
        nconc = 0;
        for (int i = 3; i < argc && nconc < 8; i++) conc[nconc++] = atoi(argv[i]);
    }
    wh_log_setup(WH_LOG_ERROR, WH_LOG_TEXT);
    snprintf(root, sizeof root, "/tmp/wh_bench_async_XXXXXX");
    if (!mkdtemp(root)) { perror("mkdtemp"); return 1; }
    printf("BackgroundAsync: %ld no-op jobs enqueued through the C API from one thread, performed by the\n"
           "worker threads; median of %d runs (%ld cores online)\n", jobs, runs, sysconf(_SC_NPROCESSORS_ONLN));
    printf("%-12s %14s %14s %14s %16s %12s\n", "concurrency", "median jobs/s", "min jobs/s", "max jobs/s",
           "enqueue calls/s", "peak RSS");
    for (int c = 0; c < nconc; c++) {
        double r[64], e[64];
        for (int i = 0; i < runs && i < 64; i++) {
            r[i] = run_once(conc[c], jobs);
            e[i] = last_enqueue_rate;
        }
        qsort(r, (size_t)runs, sizeof *r, cmp_dbl);
        qsort(e, (size_t)runs, sizeof *e, cmp_dbl);
        printf("%-12d %14.0f %14.0f %14.0f %16.0f %9.1f MiB\n", conc[c], r[runs / 2], r[0], r[runs - 1], e[runs / 2],
               peak_rss_mib());
    }
    double ns[5];
    for (int i = 0; i < 5; i++) ns[i] = check_and_call_ns(200000);
    qsort(ns, 5, sizeof *ns, cmp_dbl);
    printf("\nC check + call into Lua alone (one VM, parsed payload, no queue): median %.0f ns/job "
           "(%.0f jobs/s on one core)\n", ns[2], 1e9 / ns[2]);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    return system(cmd) == 0 ? 0 : 1;
}
