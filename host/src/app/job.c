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
static int read_fields(wh_job *job, wh_err *err) {
    const wh_json *p = job->payload;
    if (p->type != WH_JSON_OBJECT)
        return wh_err_set(err, WH_EARGS, "job payload: expected a JSON object, got %s", wh_json_type_name(p));
    const wh_json *cls = field(p, "class");
    if (cls == NULL || cls->type != WH_JSON_STRING || cls->u.str.len == 0)
        return wh_err_set(err, WH_EARGS, "job payload: \"class\" must be a non-empty string");
    job->class_name = wh_xstrndup(cls->u.str.s, cls->u.str.len);
    job->args = field(p, "args");
    if (job->args == NULL || job->args->type != WH_JSON_ARRAY)
        return wh_err_set(err, WH_EARGS, "%s: job payload: \"args\" must be an array", job->class_name);
    const wh_json *q = field(p, "queue");
    job->queue = (q && q->type == WH_JSON_STRING && q->u.str.len) ? wh_xstrndup(q->u.str.s, q->u.str.len)
                                                                  : wh_xstrdup("default");
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
    else if (r->type == WH_JSON_INT && r->u.i >= 0) job->retry = r->u.i > 1000000 ? 1000000 : (int)r->u.i;
    else job->retry = WH_RETRY_DEFAULT;
    const wh_json *rc = field(p, "retry_count");
    if (rc && rc->type == WH_JSON_INT) {
        job->has_retry_count = true;
        job->retry_count = rc->u.i;
    }
    job->created_at = number_of(field(p, "created_at"));
    job->enqueued_at = number_of(field(p, "enqueued_at"));
    return 0;
}

wh_job *wh_job_parse(const char *text, size_t len, const wh_json_limits *limits, wh_err *err) {
    wh_json_doc *doc = wh_json_parse(text, len, limits, err);
    if (doc == NULL) return NULL;
    wh_job *job = wh_xcalloc(1, sizeof *job);
    job->doc = doc;
    job->payload = wh_json_doc_root(doc);
    if (read_fields(job, err) != 0) {
        wh_job_free(job);
        return NULL;
    }
    return job;
}

static wh_json_member *member(wh_json_member *m, wh_json_doc *doc, const char *key) {
    m->key = key;
    m->key_len = strlen(key);
    (void)doc;
    return m;
}

static void set_string(wh_json *v, wh_json_doc *doc, const char *s) {
    v->type = WH_JSON_STRING;
    v->u.str.len = strlen(s);
    v->u.str.s = wh_json_doc_strndup(doc, s, v->u.str.len);
}

static void set_float(wh_json *v, double d) {
    v->type = WH_JSON_FLOAT;
    v->u.f.d = d;
    v->u.f.raw = NULL;
    v->u.f.int_literal = false;
}

wh_job *wh_job_new(const wh_worker_def *def, wh_json_doc *doc, const wh_json *args,
                   const wh_enqueue_options *opts, double now) {
    wh_job *job = wh_xcalloc(1, sizeof *job);
    job->doc = doc;
    wh_jid_new(job->jid);
    job->class_name = wh_xstrdup(def->name);
    job->queue = wh_xstrdup(opts && opts->queue ? opts->queue : def->queue);
    job->retry = (opts && opts->retry != WH_RETRY_DEFAULT) ? opts->retry : def->retry;
    job->created_at = job->enqueued_at = now;
    if (opts && opts->at > 0) job->run_at = opts->at;
    else if (opts && opts->in > 0) job->run_at = now + opts->in;

    enum { N = 7 };
    wh_json *root = wh_json_doc_alloc(doc, sizeof *root);
    wh_json_member *m = wh_json_doc_alloc(doc, N * sizeof *m);
    memset(m, 0, N * sizeof *m);
    root->type = WH_JSON_OBJECT;
    root->u.obj.members = m;
    root->u.obj.n = N;
    set_string(&member(&m[0], doc, "class")->value, doc, job->class_name);
    m[1].key = "args";
    m[1].key_len = 4;
    m[1].value = *wh_schema_payload_args(def->schema, doc, args);
    set_string(&member(&m[2], doc, "queue")->value, doc, job->queue);
    member(&m[3], doc, "retry");
    if (job->retry == WH_RETRY_FALSE) m[3].value.type = WH_JSON_FALSE;
    else { m[3].value.type = WH_JSON_INT; m[3].value.u.i = job->retry; }
    set_string(&member(&m[4], doc, "jid")->value, doc, job->jid);
    set_float(&member(&m[5], doc, "created_at")->value, now);
    set_float(&member(&m[6], doc, "enqueued_at")->value, now);
    wh_json_doc_set_root(doc, root);
    job->payload = root;
    job->args = &m[1].value;
    return job;
}

void wh_job_free(wh_job *job) {
    if (job == NULL) return;
    wh_json_doc_free(job->doc);
    wh_free(job->class_name);
    wh_free(job->queue);
    wh_free(job->last_error);
    wh_free(job);
}

int wh_job_write(const wh_job *job, wh_buf *out, wh_err *err) { return wh_json_write(out, job->payload, err); }

void wh_job_meta_of(const wh_job *job, wh_job_meta *out) {
    out->jid = job->jid;
    out->class_name = job->class_name;
    out->queue = job->queue;
    out->has_retry_count = job->has_retry_count;
    out->retry_count = job->retry_count;
    out->created_at = job->created_at;
    out->enqueued_at = job->enqueued_at;
}
