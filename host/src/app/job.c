/* job.c -- see job.h. */
#include "app/job.h"

#include <string.h>

#include "core/jid.h"
#include "core/mem.h"

static const wh_json *field(const wh_json *obj, const char *k) { return wh_json_getz(obj, k); }

static double number_of(const wh_json *v) {
    if (v == NULL) return 0;
    if (v->type == WH_JSON_INT) return (double)v->u.i;
    if (v->type == WH_JSON_FLOAT) return v->u.f.d;
    return 0;
}

/* Reads the fields the host needs; the tree stays as it came (unknown
 * fields are kept, numbers keep their text). */
static int read_fields(wh_job *job, bool keep_queue, wh_err *err) {
    const wh_json *p = job->payload;
    if (p->type != WH_JSON_OBJECT)
        return wh_err_set(err, WH_EARGS, "job payload: expected a JSON object, got %s", wh_json_type_name(p));
    const wh_json *cls = field(p, "class");
    if (cls == NULL || cls->type != WH_JSON_STRING || cls->u.str.len == 0)
        return wh_err_set(err, WH_EARGS, "job payload: \"class\" must be a non-empty string");
    job->class_name = wh_json_doc_strndup(job->doc, cls->u.str.s, cls->u.str.len);
    job->args = field(p, "args");
    if (job->args == NULL || job->args->type != WH_JSON_ARRAY)
        return wh_err_set(err, WH_EARGS, "%s: job payload: \"args\" must be an array", job->class_name);
    const wh_json *q = field(p, "queue");
    if (!keep_queue) /* a fetched job keeps the queue it came from, and other threads may read it meanwhile */
        job->queue = (q && q->type == WH_JSON_STRING && q->u.str.len)
                         ? wh_json_doc_strndup(job->doc, q->u.str.s, q->u.str.len)
                         : "default";
    const wh_json *jid = field(p, "jid");
    if (jid && jid->type == WH_JSON_STRING && jid->u.str.len < WH_JID_SIZE) {
        memcpy(job->jid, jid->u.str.s, jid->u.str.len);
        job->jid[jid->u.str.len] = '\0';
    } else {
        job->jid[0] = '\0';
    }
    const wh_json *r = field(p, "retry");
    if (r == NULL) job->retry = WH_RETRY_DEFAULT;
    else if (r->type == WH_JSON_FALSE) job->retry = WH_RETRY_FALSE;
    else if (r->type == WH_JSON_TRUE) job->retry = WH_DEFAULT_RETRY;
    else if (r->type == WH_JSON_INT && r->u.i >= 0) job->retry = r->u.i > WH_RETRY_COUNT_MAX ? WH_RETRY_COUNT_MAX : (int)r->u.i;
    else job->retry = WH_RETRY_DEFAULT;
    const wh_json *rc = field(p, "retry_count");
    if (rc && rc->type == WH_JSON_INT) {
        /* another client's count may be anything: clamped to -1..WH_RETRY_COUNT_MAX,
         * so the next count cannot overflow and a negative one cannot park the
         * job for ever (a count at or past the job's retries sends it to dead).
         * -1 is Sidekiq's own: SortedEntry#retry decrements the count, so the
         * next failure of a job retried by hand counts from 0 again. */
        job->has_retry_count = true;
        job->retry_count = rc->u.i < -1 ? -1 : rc->u.i > WH_RETRY_COUNT_MAX ? WH_RETRY_COUNT_MAX : rc->u.i;
    }
    job->created_at = number_of(field(p, "created_at"));
    job->enqueued_at = number_of(field(p, "enqueued_at"));
    const wh_json *h = field(p, "wh_schema");
    if (h && h->type == WH_JSON_STRING && h->u.str.len < sizeof job->schema_hash) {
        memcpy(job->schema_hash, h->u.str.s, h->u.str.len);
        job->schema_hash[h->u.str.len] = '\0';
    }
    return 0;
}

wh_job *wh_job_parse(const char *text, size_t len, const wh_json_limits *limits, wh_err *err) {
    wh_json_doc *doc = wh_json_parse(text, len, limits, err);
    if (doc == NULL) return NULL;
    wh_job *job = wh_json_doc_alloc(doc, sizeof *job);
    memset(job, 0, sizeof *job);
    job->doc = doc;
    job->payload = wh_json_doc_root(doc);
    if (read_fields(job, false, err) != 0) {
        wh_job_free(job);
        return NULL;
    }
    return job;
}

void wh_job_raw_init(wh_job *job, const char *raw, size_t len, const char *queue) {
    memset(job, 0, sizeof *job);
    job->detached = true;
    job->raw = raw;
    job->raw_len = len;
    job->queue = job->source_queue = queue;
}

int wh_job_materialize(wh_job *job, const wh_json_limits *limits, wh_err *err) {
    if (!job->detached || job->doc) return 0;
    wh_err e = WH_ERR_INIT; /* its code is returned even when err is NULL */
    wh_json_doc *doc = wh_json_parse(job->raw, job->raw_len, limits, &e);
    if (doc == NULL) {
        if (err) *err = e;
        return e.code;
    }
    job->doc = doc;
    job->payload = wh_json_doc_root(doc);
    int rc = read_fields(job, true, err); /* routed by where it was fetched, as Sidekiq does */
    if (rc) job->class_name = NULL;
    return rc;
}

wh_job *wh_job_new(const wh_worker_def *def, wh_json_doc *doc, const wh_json *args,
                   const wh_enqueue_options *opts, double now) {
    wh_job *job = wh_json_doc_alloc(doc, sizeof *job);
    memset(job, 0, sizeof *job);
    job->doc = doc;
    wh_jid_new(job->jid);
    /* def outlives the job only within one catalog generation: copy */
    job->class_name = wh_json_doc_strndup(doc, def->name, strlen(def->name));
    const char *q = opts && opts->queue ? opts->queue : def->queue;
    job->queue = wh_json_doc_strndup(doc, q, strlen(q));
    job->retry = (opts && opts->retry != WH_RETRY_DEFAULT) ? opts->retry : def->retry;
    job->created_at = job->enqueued_at = now;
    if (opts && opts->at > 0) job->run_at = opts->at;
    else if (opts && opts->in > 0) job->run_at = now + opts->in;
    /* No payload tree: nothing in memory needs one, and wh_job_write writes
     * the payload from these fields. A job is its arguments plus ~200 bytes. */
    job->payload = NULL;
    job->args = wh_schema_payload_args(def->schema, doc, args);
    memcpy(job->schema_hash, wh_schema_hash(def->schema), sizeof job->schema_hash);
    return job;
}

void wh_job_free(wh_job *job) {
    if (job == NULL) return;
    wh_free(job->last_error);
    wh_json_doc *doc = job->doc;
    if (job->detached) { /* the struct is the caller's: leave it unparsed */
        job->doc = NULL;
        job->last_error = NULL;
        job->payload = job->args = NULL;
        job->class_name = NULL;
    }
    wh_json_doc_free(doc); /* the job itself lives in it, unless detached */
}

int wh_job_write(const wh_job *job, wh_buf *out, wh_err *err) { return wh_job_write_opts(job, out, true, err); }

int wh_job_write_opts(const wh_job *job, wh_buf *out, bool with_enqueued_at, wh_err *err) {
    if (job->payload) return wh_json_write(out, job->payload, err);
    /* a job made here: Sidekiq's field order, as its client writes it */
    wh_buf_puts(out, "{\"class\":");
    wh_json_write_string(out, job->class_name, strlen(job->class_name));
    wh_buf_puts(out, ",\"args\":");
    int rc = wh_json_write(out, job->args, err);
    if (rc) return rc;
    wh_buf_puts(out, ",\"queue\":");
    wh_json_write_string(out, job->queue, strlen(job->queue));
    if (job->retry == WH_RETRY_FALSE) wh_buf_puts(out, ",\"retry\":false");
    else wh_buf_printf(out, ",\"retry\":%d", job->retry);
    wh_buf_printf(out, ",\"jid\":\"%s\",\"created_at\":", job->jid);
    wh_json_write_float(out, job->created_at, NULL);
    if (with_enqueued_at) {
        wh_buf_puts(out, ",\"enqueued_at\":");
        wh_json_write_float(out, job->enqueued_at, NULL);
    }
    if (job->schema_hash[0]) wh_buf_printf(out, ",\"wh_schema\":\"%s\"", job->schema_hash);
    wh_buf_putc(out, '}');
    return 0;
}

void wh_job_meta_of(const wh_job *job, wh_job_meta *out) {
    out->jid = job->jid;
    out->class_name = job->class_name;
    out->queue = job->queue;
    out->has_retry_count = job->has_retry_count;
    out->retry_count = job->retry_count;
    out->created_at = job->created_at;
    out->enqueued_at = job->enqueued_at;
}

int wh_job_rewrite(const wh_json *payload, const wh_json_member *set, size_t nset, wh_buf *out, wh_err *err) {
    if (payload == NULL || payload->type != WH_JSON_OBJECT)
        return wh_err_set(err, WH_EJSON, "wh_job_rewrite: not an object");
    wh_buf_putc(out, '{');
    bool first = true;
    for (size_t i = 0; i < payload->u.obj.n; i++) {
        const wh_json_member *m = &payload->u.obj.members[i];
        bool replaced = false;
        for (size_t k = 0; k < nset && !replaced; k++)
            replaced = set[k].key_len == m->key_len && memcmp(set[k].key, m->key, m->key_len) == 0;
        if (replaced) continue;
        if (!first) wh_buf_putc(out, ',');
        first = false;
        wh_json_write_string(out, m->key, m->key_len);
        wh_buf_putc(out, ':');
        int rc = wh_json_write(out, &m->value, err);
        if (rc) return rc;
    }
    for (size_t k = 0; k < nset; k++) {
        if (set[k].value.type == WH_JSON_NULL && set[k].key_len == 0) continue;
        if (!first) wh_buf_putc(out, ',');
        first = false;
        wh_json_write_string(out, set[k].key, set[k].key_len);
        wh_buf_putc(out, ':');
        int rc = wh_json_write(out, &set[k].value, err);
        if (rc) return rc;
    }
    wh_buf_putc(out, '}');
    return 0;
}

int wh_job_redis_items(wh_job *const *jobs, size_t n, double now, wh_buf *text, wh_redis_item *items, wh_err *err) {
    size_t *off = wh_xcalloc(n ? n : 1, sizeof *off);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        bool scheduled = jobs[i]->run_at > now;
        off[i] = text->len;
        rc = wh_job_write_opts(jobs[i], text, !scheduled, err);
        items[i] = (wh_redis_item){.queue = jobs[i]->queue, .len = text->len - off[i], .at = scheduled ? jobs[i]->run_at : 0};
    }
    /* text may have moved while growing: point into it only now */
    for (size_t i = 0; i < n && rc == 0; i++) items[i].payload = text->data + off[i];
    wh_free(off);
    return rc;
}
