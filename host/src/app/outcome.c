/* outcome.c -- see outcome.h. */
#include "app/outcome.h"

#include <string.h>

#include "core/log.h"
#include "json/json.h"

double wh_outcome_backoff(int count, int jitter) {
    double c = (double)count;
    return c * c * c * c + 15.0 + (double)jitter * (c + 1.0);
}

/* The payload's "dead": false (Sidekiq's option: no dead entry). */
static bool dead_refused(const wh_job *job) {
    const wh_json *d = job->payload ? wh_json_getz(job->payload, "dead") : NULL;
    return d && d->type == WH_JSON_FALSE;
}

void wh_outcome_decide(const wh_job *job, const wh_worker_def *def, int rc, int jitter, wh_outcome *out) {
    memset(out, 0, sizeof *out);
    if (rc == 0) {
        out->kind = WH_OUTCOME_DONE;
        return;
    }
    int max;
    if (job->retry != WH_RETRY_DEFAULT) max = job->retry;
    else if (def) max = def->retry;
    else max = WH_DEFAULT_RETRY;
    out->max = max < 0 ? -1 : max;
    if (max < 0) { /* WH_RETRY_FALSE */
        out->kind = WH_OUTCOME_DROP;
        out->reason = "retry: false";
        return;
    }
    out->count = job->has_retry_count ? (int)job->retry_count + 1 : 0; /* retry_count is clamped (job.h) */
    out->skew = rc == WH_EARGS && def && job->schema_hash[0] &&
                strcmp(job->schema_hash, wh_schema_hash(def->schema)) != 0;
    bool retryable = rc != WH_EARGS || out->skew;
    if (retryable && out->count < max) {
        out->kind = WH_OUTCOME_RETRY;
        out->delay = wh_outcome_backoff(out->count, jitter < 0 ? 0 : jitter % 10);
        return;
    }
    if (dead_refused(job)) {
        out->kind = WH_OUTCOME_DROP;
        out->reason = "dead: false";
        return;
    }
    out->kind = WH_OUTCOME_DEAD;
    out->reason = retryable ? "out of retries" : "arguments refused";
}

void wh_outcome_log(const wh_job *job, const wh_outcome *o, const char *error) {
    switch (o->kind) {
    case WH_OUTCOME_RETRY:
        wh_log(WH_LOG_INFO, job->class_name, job->jid, "retry %d of %d in %.0f s%s: %s", o->count + 1, o->max,
               o->delay, o->skew ? " (checked against another version of the schema)" : "", error);
        break;
    case WH_OUTCOME_DEAD:
        wh_log(WH_LOG_ERROR, job->class_name, job->jid, "dead after %d attempt%s: %s", o->count + 1,
               o->count ? "s" : "", error);
        break;
    case WH_OUTCOME_DROP:
        wh_log(WH_LOG_WARN, job->class_name, job->jid, "dropped (%s): %s", o->reason, error);
        break;
    case WH_OUTCOME_DONE:
        break;
    }
}
