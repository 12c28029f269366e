/* SPDX-License-Identifier: MIT
 * bench_json.c -- micro-benchmark of json/json.c on a realistic ~200-byte
 * Sidekiq job payload: wh_json_parse + wh_json_doc_free, wh_json_write, and
 * for comparison in the same run yajl's own tree parser (yajl_tree_parse +
 * yajl_tree_free) and yajl's event parser with no callbacks (a lower bound:
 * the lexing and grammar work every yajl-based parser pays).
 *
 * Each case runs in a loop for about a second, five times (round-robin over
 * the cases); the median is printed. Every iteration feeds a result into a volatile sink so the work
 * cannot be optimized away.
 *
 * Build and run (from the repository root):
 *   gcc -std=c11 -O2 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Ihost/include -Ihost/src \
 *       host/bench/bench_json.c host/src/json/json.c host/src/core/err.c \
 *       host/src/core/mem.c host/src/core/buf.c $(pkg-config --cflags --libs yajl) -lm \
 *       -o /tmp/bench_json && /tmp/bench_json
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <yajl/yajl_parse.h>
#include <yajl/yajl_tree.h>

#include "core/buf.h"
#include "json/json.h"

static const char payload[] =
    "{\"class\":\"DownloadWorker\",\"args\":[{\"user_guid\":\"4f1c0a2e-9b7d-4c3e-8f2a-1d6e5b4a3c21\","
    "\"count\":3}],\"queue\":\"default\",\"retry\":25,\"jid\":\"b4a5c6d7e8f90a1b2c3d4e5f\","
    "\"created_at\":1700000000.123456,\"enqueued_at\":1700000000.1234567}";

static volatile size_t sink; /* results go here so loops are not removed */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- the cases: each runs n iterations ---- */

static void run_ours(size_t n) {
    for (size_t i = 0; i < n; i++) {
        wh_json_doc *d = wh_json_parse(payload, sizeof payload - 1, NULL, NULL);
        if (d == NULL) abort();
        sink += wh_json_doc_root(d)->u.obj.n;
        wh_json_doc_free(d);
    }
}

static const wh_json *write_root; /* parsed once for the writer case */

static void run_write(size_t n) {
    wh_buf b = WH_BUF_INIT;
    for (size_t i = 0; i < n; i++) {
        wh_buf_reset(&b);
        if (wh_json_write(&b, write_root, NULL) != 0) abort();
        sink += b.len;
    }
    wh_buf_free(&b);
}

static void run_yajl_tree(size_t n) {
    char errbuf[128];
    for (size_t i = 0; i < n; i++) {
        yajl_val v = yajl_tree_parse(payload, errbuf, sizeof errbuf);
        if (v == NULL) abort();
        sink += YAJL_GET_OBJECT(v)->len;
        yajl_tree_free(v);
    }
}

static void run_yajl_events(size_t n) {
    static const yajl_callbacks none;
    for (size_t i = 0; i < n; i++) {
        yajl_handle h = yajl_alloc(&none, NULL, NULL);
        yajl_status st = yajl_parse(h, (const unsigned char *)payload, sizeof payload - 1);
        if (st == yajl_status_ok) st = yajl_complete_parse(h);
        if (st != yajl_status_ok) abort();
        sink += yajl_get_bytes_consumed(h);
        yajl_free(h);
    }
}

/* ---- timing ---- */

/* Runs fn in batches until about `seconds` have passed; returns ops/s. */
static double rate(void (*fn)(size_t), double seconds) {
    size_t batch = 1000, total = 0;
    double t0 = now(), t;
    do {
        fn(batch);
        total += batch;
        t = now();
    } while (t - t0 < seconds);
    return (double)total / (t - t0);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct bench_case {
    const char *name;
    void (*fn)(size_t);
    double r[5]; /* ops/s of each repeat */
} bench_case;

/* Repeats run round-robin over the cases, so a change in machine load hits
 * every case alike and the medians stay comparable. */
static void run_all(bench_case *cases, size_t ncases) {
    for (size_t c = 0; c < ncases; c++) cases[c].fn(10000); /* warm up */
    for (int rep = 0; rep < 5; rep++)
        for (size_t c = 0; c < ncases; c++) cases[c].r[rep] = rate(cases[c].fn, 1.0);
}

static double report(bench_case *bc) {
    qsort(bc->r, 5, sizeof bc->r[0], cmp_double);
    double med = bc->r[2];
    printf("%-34s median %10.0f ops/s  %8.1f ns/op  (min %.0f, max %.0f)\n", bc->name, med,
           1e9 / med, bc->r[0], bc->r[4]);
    return med;
}

int main(void) {
    printf("payload: %zu bytes\n", sizeof payload - 1);
    wh_json_doc *d = wh_json_parse(payload, sizeof payload - 1, NULL, NULL);
    if (d == NULL) return 1;
    write_root = wh_json_doc_root(d);

    bench_case cases[] = {
        {"wh_json_parse + doc_free", run_ours, {0}},
        {"wh_json_write", run_write, {0}},
        {"yajl_tree_parse + tree_free", run_yajl_tree, {0}},
        {"yajl_parse, no callbacks (floor)", run_yajl_events, {0}},
    };
    run_all(cases, sizeof cases / sizeof cases[0]);
    double ours = report(&cases[0]);
    report(&cases[1]);
    double tree = report(&cases[2]);
    report(&cases[3]);
    printf("wh_json_parse is %.2fx the speed of yajl_tree_parse\n", ours / tree);

    wh_json_doc_free(d);
    return 0;
}
