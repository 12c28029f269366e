/* bench_reload.c -- what a reload costs in BackgroundAsync: the time from
 * wh_host_reload until every worker thread runs the new generation, idle
 * and under a steady flow of no-op jobs (median of RUNS), and jobs/s during
 * a reload storm (one reload every STORM_MS) against the steady state.
 *
 *   bench_reload [RUNS] [CONCURRENCY] [STORM_MS]     (defaults 21 4 10) */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/async.h"
#include "app/host.h"
#include "core/clock.h"
#include "core/log.h"
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

static void make_app(int concurrency) {
    char d[512], yaml[512];
    const char *dirs[] = {"workers", "config", "lib"};
    for (int i = 0; i < 3; i++) {
        snprintf(d, sizeof d, "%s/%s", root, dirs[i]);
        mkdir(d, 0755);
    }
    /* a few workers and a module, so a VM build is not trivially small */
    for (int i = 0; i < 4; i++) {
        char rel[64];
        snprintf(rel, sizeof rel, "workers/noop%d_worker.lua", i);
        write_file(rel, "local wh = require 'workerhost'\nlocal util = require 'util'\n"
                        "return wh.worker { args = { n = 'integer', note = 'string?' },\n"
                        "  perform = function(args) return util.id(args.n) end }\n");
    }
    write_file("lib/util.lua", "local M = {}\nfunction M.id(x) return x end\nreturn M\n");
    snprintf(yaml, sizeof yaml,
             "workers:\n  mode: BackgroundAsync\n  concurrency: %d\n  queue_limit: 1000000\n"
             "logger:\n  level: warn\n", concurrency);
    write_file("config/bench.yaml", yaml);
}

static int cmp_dbl(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_dbl);
    return v[n / 2];
}

static void stats(wh_host *h, wh_async_stats *s) { wh_async_get_stats(wh_host_async(h), s); }

/* Seconds from the call to wh_host_reload until every thread is on the new
 * generation; *load gets the part spent in wh_host_reload (the scratch
 * load and check). */
static double reload_once(wh_host *h, int concurrency, double *load) {
    double t0 = wh_clock_monotonic();
    wh_err err;
    if (wh_host_reload(h, &err) != 0) { fprintf(stderr, "reload: %s\n", err.msg); exit(1); }
    *load = wh_clock_monotonic() - t0;
    unsigned gen = wh_host_generation(h);
    wh_async_stats s;
    for (;;) {
        stats(h, &s);
        if (s.generation == gen && s.on_generation == (size_t)concurrency) break;
        sched_yield();
    }
    return wh_clock_monotonic() - t0;
}

typedef struct producer {
    wh_host *h;
    atomic_bool stop;
    long sent;
} producer;

/* Enqueues no-op jobs as fast as the threads take them (backlog <= 5000). */
static void *produce(void *arg) {
    producer *p = arg;
    const char *args = "{\"n\":1}";
    wh_err err;
    while (!atomic_load(&p->stop)) {
        wh_async_stats s;
        stats(p->h, &s);
        if (s.queued > 5000) { sched_yield(); continue; }
        for (int i = 0; i < 256; i++) {
            char cls[32];
            snprintf(cls, sizeof cls, "Noop%dWorker", (int)(p->sent % 4));
            if (wh_host_enqueue(p->h, cls, args, strlen(args), NULL, NULL, &err) == 0) p->sent++;
        }
    }
    return NULL;
}

static double jobs_per_s(wh_host *h, double seconds, int storm_ms, int *reloads) {
    wh_async_stats a, b;
    stats(h, &a);
    double t0 = wh_clock_monotonic(), end = t0 + seconds;
    int n = 0;
    while (wh_clock_monotonic() < end) {
        if (storm_ms > 0) {
            wh_err err;
            if (wh_host_reload(h, &err) != 0) { fprintf(stderr, "reload: %s\n", err.msg); exit(1); }
            n++;
            usleep((useconds_t)storm_ms * 1000);
        } else {
            usleep(10000);
        }
    }
    stats(h, &b);
    if (reloads) *reloads = n;
    return (double)(b.processed - a.processed) / (wh_clock_monotonic() - t0);
}

int main(int argc, char **argv) {
    int runs = argc > 1 ? atoi(argv[1]) : 21;
    int conc = argc > 2 ? atoi(argv[2]) : 4;
    int storm_ms = argc > 3 ? atoi(argv[3]) : 10;
    if (runs < 1) runs = 1;
    wh_log_setup(WH_LOG_WARN, WH_LOG_TEXT);
    snprintf(root, sizeof root, "/tmp/wh_bench_reload_XXXXXX");
    if (!mkdtemp(root)) { perror("mkdtemp"); return 1; }
    make_app(conc);
    wh_host_options o = {root, "bench", NULL};
    wh_host *h;
    wh_err err;
    if (wh_host_new(&h, &o, &err) || wh_host_start(h, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }

    double *all = calloc((size_t)runs, sizeof *all), *load = calloc((size_t)runs, sizeof *load);
    for (int i = 0; i < runs; i++) all[i] = reload_once(h, conc, &load[i]);
    double idle_all = median(all, runs), idle_load = median(load, runs);

    producer p = {.h = h};
    atomic_init(&p.stop, false);
    pthread_t t;
    pthread_create(&t, NULL, produce, &p);
    usleep(200000);
    for (int i = 0; i < runs; i++) {
        all[i] = reload_once(h, conc, &load[i]);
        usleep(20000);
    }
    double busy_all = median(all, runs), busy_load = median(load, runs);

    double steady[3], storm[3];
    int reloads = 0;
    for (int i = 0; i < 3; i++) {
        steady[i] = jobs_per_s(h, 1.0, 0, NULL);
        storm[i] = jobs_per_s(h, 1.0, storm_ms, &reloads);
    }
    atomic_store(&p.stop, true);
    pthread_join(t, NULL);
    wh_host_wait_idle(h, 0, NULL);
    wh_async_stats s;
    stats(h, &s);

    printf("reload, BackgroundAsync, concurrency %d, 4 workers + 1 module, median of %d runs:\n", conc, runs);
    printf("  idle:        %7.2f ms to every thread on the new generation (%.2f ms of it loading and checking)\n",
           idle_all * 1e3, idle_load * 1e3);
    printf("  under load:  %7.2f ms to every thread on the new generation (%.2f ms of it loading and checking)\n",
           busy_all * 1e3, busy_load * 1e3);
    double st = median(steady, 3), sm = median(storm, 3);
    printf("  jobs/s:      %.0f steady, %.0f during a reload every %d ms (%d reloads/s), %.0f%%\n", st, sm, storm_ms,
           reloads, st > 0 ? 100.0 * sm / st : 0.0);
    printf("  generation %u, %llu jobs, %llu failed\n", wh_host_generation(h), (unsigned long long)s.processed,
           (unsigned long long)s.failed);
    wh_host_free(h);
    free(all);
    free(load);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
    return s.failed ? 1 : 0;
}
