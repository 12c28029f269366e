/* test_outcome.c -- the outcome policy (app/outcome.h) as a table: every
 * kind of result, every retry setting, Sidekiq's backoff and counts. No
 * Redis, no threads, no clock. */
#include <math.h>

#include "app/outcome.h"
#include "test.h"

/* A schema with no arguments: only its hash matters here. */
static wh_schema *empty_schema(void) {
    wh_schema *s = wh_schema_new();
    wh_schema_finish(s, WH_ARGS_NONE, NULL, NULL, 0);
    return s;
}

static wh_job job_with(int retry, int64_t retry_count_or_minus2, const char *hash) {
    wh_job j;
    memset(&j, 0, sizeof j);
    j.class_name = "X";
    j.retry = retry;
    if (retry_count_or_minus2 != -2) {
        j.has_retry_count = true;
        j.retry_count = retry_count_or_minus2;
    }
    if (hash) snprintf(j.schema_hash, sizeof j.schema_hash, "%s", hash);
    return j;
}

typedef struct row {
    const char *what;
    int job_retry;       /* WH_RETRY_DEFAULT, WH_RETRY_FALSE or a count */
    int64_t retry_count; /* -2: none (first failure) */
    int def_retry;       /* -3: no definition (unknown class) */
    int rc;
    int skew;            /* the job was checked against another schema */
    wh_outcome_kind kind;
    int count;
    int max;
} row;

static void test_the_table(void) {
    wh_schema *schema = empty_schema();
    const char *hash = wh_schema_hash(schema);
    const row rows[] = {
        {"success", WH_RETRY_DEFAULT, -2, 5, 0, 0, WH_OUTCOME_DONE, 0, 0},
        {"success of a retried job", WH_RETRY_DEFAULT, 3, 5, 0, 0, WH_OUTCOME_DONE, 0, 0},
        {"Lua error, first failure", WH_RETRY_DEFAULT, -2, 5, WH_EJOB, 0, WH_OUTCOME_RETRY, 0, 5},
        {"Lua error, third failure", WH_RETRY_DEFAULT, 1, 5, WH_EJOB, 0, WH_OUTCOME_RETRY, 2, 5},
        {"Lua error, out of retries", WH_RETRY_DEFAULT, 4, 5, WH_EJOB, 0, WH_OUTCOME_DEAD, 5, 5},
        {"timeout", WH_RETRY_DEFAULT, -2, 5, WH_ETIMEOUT, 0, WH_OUTCOME_RETRY, 0, 5},
        {"out of memory", WH_RETRY_DEFAULT, -2, 5, WH_ENOMEM, 0, WH_OUTCOME_RETRY, 0, 5},
        {"worker retry 0: dead at once", WH_RETRY_DEFAULT, -2, 0, WH_EJOB, 0, WH_OUTCOME_DEAD, 0, 0},
        {"worker retry false: dropped", WH_RETRY_DEFAULT, -2, WH_RETRY_FALSE, WH_EJOB, 0, WH_OUTCOME_DROP, 0, -1},
        {"job retry false beats the worker's", WH_RETRY_FALSE, -2, 5, WH_EJOB, 0, WH_OUTCOME_DROP, 0, -1},
        {"job retry 2 beats the worker's 5", 2, 1, 5, WH_EJOB, 0, WH_OUTCOME_DEAD, 2, 2},
        {"job retry 9 beats the worker's 0", 9, -2, 0, WH_EJOB, 0, WH_OUTCOME_RETRY, 0, 9},
        {"arguments refused: dead, not retried", WH_RETRY_DEFAULT, -2, 5, WH_EARGS, 0, WH_OUTCOME_DEAD, 0, 5},
        {"arguments refused by another schema: retried", WH_RETRY_DEFAULT, -2, 5, WH_EARGS, 1, WH_OUTCOME_RETRY,
         0, 5},
        {"skew out of retries: dead", WH_RETRY_DEFAULT, 4, 5, WH_EARGS, 1, WH_OUTCOME_DEAD, 5, 5},
        {"unknown class: 25 retries", WH_RETRY_DEFAULT, -2, -3, WH_ENOCLASS, 0, WH_OUTCOME_RETRY, 0, 25},
        {"unknown class, job retry 1", 1, 0, -3, WH_ENOCLASS, 0, WH_OUTCOME_DEAD, 1, 1},
        {"retried by hand (Sidekiq's -1)", WH_RETRY_DEFAULT, -1, 5, WH_EJOB, 0, WH_OUTCOME_RETRY, 0, 5},
        {"a huge count (clamped by job.c): dead", WH_RETRY_DEFAULT, WH_RETRY_COUNT_MAX, 5, WH_EJOB, 0,
         WH_OUTCOME_DEAD, WH_RETRY_COUNT_MAX + 1, 5},
    };
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        const row *r = &rows[i];
        wh_worker_def def = {"X", "default", r->def_retry, 30, schema, "workers/x.lua"};
        wh_job j = job_with(r->job_retry, r->retry_count, r->skew ? "0123456789abcdef" : hash);
        wh_outcome o;
        wh_outcome_decide(&j, r->def_retry == -3 ? NULL : &def, r->rc, 0, &o);
        if (o.kind != r->kind || (r->kind != WH_OUTCOME_DONE && (o.count != r->count || o.max != r->max)))
            WH_TEST_FAIL("%s: kind %d count %d max %d, want %d %d %d", r->what, o.kind, o.count, o.max, r->kind,
                         r->count, r->max);
        if (o.kind == WH_OUTCOME_RETRY && o.delay != wh_outcome_backoff(o.count, 0))
            WH_TEST_FAIL("%s: delay %g", r->what, o.delay);
        ASSERT_EQ_INT(o.skew, r->skew && r->rc == WH_EARGS);
    }
    wh_schema_release(schema);
}

static void test_dead_false_drops(void) {
    wh_json_doc *doc = wh_json_parse("{\"dead\":false}", 14, NULL, NULL);
    ASSERT(doc != NULL);
    wh_job j = job_with(WH_RETRY_DEFAULT, 4, NULL);
    j.payload = wh_json_doc_root(doc);
    wh_worker_def def = {"X", "default", 5, 30, NULL, NULL};
    wh_outcome o;
    wh_outcome_decide(&j, &def, WH_EJOB, 0, &o);
    ASSERT_EQ_INT(o.kind, WH_OUTCOME_DROP);
    ASSERT_STREQ(o.reason, "dead: false");
    j.retry_count = 0; /* with retries left it is still retried */
    wh_outcome_decide(&j, &def, WH_EJOB, 0, &o);
    ASSERT_EQ_INT(o.kind, WH_OUTCOME_RETRY);
    wh_json_doc_free(doc);
}

/* Sidekiq's: count^4 + 15 + rand(10) * (count + 1) */
static void test_backoff(void) {
    ASSERT_EQ_DBL(wh_outcome_backoff(0, 0), 15);
    ASSERT_EQ_DBL(wh_outcome_backoff(0, 9), 24);
    ASSERT_EQ_DBL(wh_outcome_backoff(3, 2), 81 + 15 + 8);
    ASSERT_EQ_DBL(wh_outcome_backoff(24, 9), pow(24, 4) + 15 + 9 * 25);
    wh_job j = job_with(WH_RETRY_DEFAULT, 2, NULL);
    wh_worker_def def = {"X", "default", 25, 30, NULL, NULL};
    wh_outcome o;
    wh_outcome_decide(&j, &def, WH_EJOB, 7, &o);
    ASSERT_EQ_DBL(o.delay, wh_outcome_backoff(3, 7));
    wh_outcome_decide(&j, &def, WH_EJOB, 17, &o); /* a jitter out of range is taken mod 10 */
    ASSERT_EQ_DBL(o.delay, wh_outcome_backoff(3, 7));
}

int main(void) {
    RUN(test_the_table);
    RUN(test_dead_false_drops);
    RUN(test_backoff);
    return TEST_REPORT();
}
