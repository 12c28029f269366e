/* rs_ack.c -- outcomes: decided on the worker thread that ran the job (the
 * outcome policy of app/outcome.h, the payload rewritten as Sidekiq does),
 * handed to the I/O thread under `lock`, and recorded there in pipelined
 * ACK batches. See server_int.h. */
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "app/outcome.h"
#include "app/runner.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/mem.h"
#include "redis/keys.h"
#include "redis/server_int.h"

/* Queues an outcome for the I/O thread. Returns whether to wake it now: at
 * a high job rate, only every wake_after outcomes (t_flush picks up the
 * rest within FLUSH_MS), which saves a wake-up per job. */
bool rs_push_ack(wh_rserver *s, ack *a, bool urgent) {
    pthread_mutex_lock(&s->lock);
    a->next = NULL;
    if (s->acks_tail) s->acks_tail->next = a;
    else s->acks = a;
    s->acks_tail = a;
    bool wake = ++s->nacks_in >= s->wake_after || urgent;
    pthread_mutex_unlock(&s->lock);
    return wake;
}


/* ==== outcomes (any worker thread) ======================================== */

static void member_str(wh_json_member *m, const char *k, const char *v) {
    m->key = k;
    m->key_len = strlen(k);
    m->value.type = WH_JSON_STRING;
    m->value.u.str.s = v;
    m->value.u.str.len = strlen(v);
}

static void member_float(wh_json_member *m, const char *k, double d) {
    m->key = k;
    m->key_len = strlen(k);
    memset(&m->value, 0, sizeof m->value);
    m->value.type = WH_JSON_FLOAT;
    m->value.u.f.d = d;
}

static void member_int(wh_json_member *m, const char *k, int64_t i) {
    m->key = k;
    m->key_len = strlen(k);
    memset(&m->value, 0, sizeof m->value);
    m->value.type = WH_JSON_INT;
    m->value.u.i = i;
}

static const char *error_class_of(int rc) {
    switch (rc) {
    case WH_EARGS: return "WorkerHost::ArgumentError";
    case WH_ENOCLASS: return "NameError";
    case WH_ETIMEOUT: return "WorkerHost::Timeout";
    case WH_ENOMEM: return "WorkerHost::OutOfMemory";
    default: return "WorkerHost::LuaError";
    }
}

/* Cuts an error message to 10,000 bytes at a character boundary, as
 * Sidekiq stores it. */
static void cap_message(char *m) {
    size_t n = strlen(m);
    if (n <= 10000) return;
    n = 10000;
    while (n > 0 && ((unsigned char)m[n] & 0xC0) == 0x80) n--;
    m[n] = '\0';
}

/* A failed attempt: the outcome policy (app/outcome.h, the same as
 * BackgroundAsync's) decides; for a retry or a dead entry the payload is
 * rewritten here, as Sidekiq rewrites it (error fields, retry_count, queue),
 * every other byte kept. Runs on the worker thread that ran the job. */
static void decide(const wh_job *job, const wh_worker_def *def, const wh_run_result *res, ack *a) {
    const wh_json *p = job->payload;
    double now = wh_clock_wall();
    wh_outcome o;
    /* jitter from the clock: worker threads must not touch the I/O thread's rng */
    wh_outcome_decide(job, def, res->rc, (int)(((uint64_t)(now * 1e6) >> 3) % 10), &o);
    if (o.kind == WH_OUTCOME_DONE) {
        a->kind = 'o';
        return;
    }
    char msg[sizeof res->err.msg];
    snprintf(msg, sizeof msg, "%s", res->err.msg);
    cap_message(msg);
    if (!wh_json_utf8_valid(msg, strlen(msg))) snprintf(msg, sizeof msg, "(error message not valid UTF-8)");
    wh_outcome_log(job, &o, msg);
    if (o.kind == WH_OUTCOME_DROP) {
        a->kind = 'x';
        return;
    }
    wh_json_member set[6];
    size_t n = 0;
    member_str(&set[n++], "error_message", msg);
    member_str(&set[n++], "error_class", error_class_of(res->rc));
    if (job->has_retry_count) member_float(&set[n++], "retried_at", now);
    else member_float(&set[n++], "failed_at", now);
    member_int(&set[n++], "retry_count", o.count);
    const wh_json *rq = wh_json_getz(p, "retry_queue");
    const char *queue = (rq && rq->type == WH_JSON_STRING) ? NULL : job->source_queue;
    if (queue) member_str(&set[n++], "queue", queue);
    wh_buf out = WH_BUF_INIT;
    if (wh_job_rewrite(p, set, n, &out, NULL) != 0) {
        wh_buf_free(&out);
        a->kind = 'x';
        return;
    }
    a->newp_len = out.len;
    a->newp = wh_buf_steal(&out);
    a->kind = o.kind == WH_OUTCOME_RETRY ? 'r' : 'd';
    a->delay = o.delay;
}

void wh_rserver_outcome(void *ud, wh_job *job, const wh_worker_def *def, const wh_run_result *res, bool stopping) {
    wh_rserver *s = ud;
    held *h = job->source_ref;
    ack *a = &h->a;
    bool keep = stopping && res->rc != 0 && strstr(res->err.msg, "interrupted: the host is shutting down");
    if (job->class_name == NULL) {
        /* not JSON, or JSON of the wrong shape: to the dead set as it is; the host goes on */
        a->kind = 'n';
        wh_log(WH_LOG_ERROR, NULL, NULL, "queue %s: a payload that is not %s goes to the dead set: %s",
               s->queues[h->qi], res->rc == WH_EJSON ? "JSON" : "a job", res->err.msg);
    } else if (keep) {
        /* interrupted by the shutdown: not a failure; it stays in flight and
         * goes back to its queue with the rest */
        a->kind = 'k';
    } else if (res->rc == 0) {
        a->kind = 'o';
    } else {
        decide(job, def, res, a);
    }
    wh_job_free(job); /* its tree, parsed on this thread; the struct lives in h */
    if (rs_push_ack(s, a, stopping)) uv_async_send(&s->wake);
}

/* Releases what an outcome holds (not the entry it lives in). */
void rs_free_ack(ack *a) {
    wh_free(a->newp);
    a->newp = NULL;
}

/* ==== recording outcomes (I/O thread) ===================================== */

static void utc_day(char *out, size_t n) {
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, n, "%Y-%m-%d", &tm);
}

/* Puts a batch back at the front of the queue of outcomes, to record again. */
static void requeue_batch(wh_rserver *s, ack *batch) {
    if (batch == NULL) return;
    ack *last = batch;
    while (last->next) last = last->next;
    pthread_mutex_lock(&s->lock);
    last->next = s->acks;
    s->acks = batch;
    if (s->acks_tail == NULL) s->acks_tail = last;
    pthread_mutex_unlock(&s->lock);
}

static void on_ack(wh_rserver *s, conn *c, redisReply *r, void *data) {
    (void)c;
    ack *batch = data;
    if (s->ack_batches) s->ack_batches--;
    if (r == NULL || r->type == REDIS_REPLY_ERROR || (r->type == REDIS_REPLY_INTEGER && r->integer < 0)) {
        requeue_batch(s, batch); /* kept until it can be recorded; recording twice is harmless */
        if (r && r->type == REDIS_REPLY_ERROR && !rs_noscript(s, r))
            rs_failed(s, &s->bo_ack, WH_LOG_ERROR, "redis: recording outcomes: %s", r->str);
        else if (r && r->type == REDIS_REPLY_INTEGER)
            rs_lost_registration(s, "recording outcomes");
        return;
    }
    wh_backoff_ok(&s->bo_ack);
    while (batch) {
        ack *next = batch->next;
        rs_free_ack(batch);
        rs_held_free(held_of(batch)); /* recorded: out of the in-flight list */
        batch = next;
    }
    rs_flush_acks(s);
    if (rs_stopping(s)) rs_stop_step(s);
}

/* While outcomes come in fast (workers wake us only every wake_after of
 * them), this picks up the rest every FLUSH_MS; it stops when no job is out. */
void rs_on_flush_timer(uv_timer_t *t) {
    wh_rserver *s = t->data;
    rs_flush_acks(s);
    /* hand_over starts it again; with slow jobs every outcome wakes us */
    if (s->outstanding == 0 || !s->lazy_wake) uv_timer_stop(&s->t_flush);
}

/* Sends outcomes in batches, a few batches in flight at once. */
void rs_flush_acks(wh_rserver *s) {
    pthread_mutex_lock(&s->lock);
    size_t handed = s->nacks_in;
    s->nacks_in = 0;
    pthread_mutex_unlock(&s->lock);
    if (handed) {
        s->outstanding = s->outstanding > handed ? s->outstanding - handed : 0;
        s->window_done += handed;
        double now = wh_clock_monotonic(), took = now - s->window_start;
        if (took >= PREFETCH_WINDOW_S) {
            double want = (double)s->window_done / took * PREFETCH_WORK_S;
            s->prefetch_max = want <= (double)s->prefetch_min   ? s->prefetch_min
                              : want >= (double)s->prefetch_cap ? s->prefetch_cap
                                                                : (size_t)want;
            s->window_start = now;
            s->window_done = 0;
            size_t wake_after = s->prefetch_max > s->prefetch_min ? s->prefetch_max / 4 : 1;
            pthread_mutex_lock(&s->lock);
            s->wake_after = wake_after;
            pthread_mutex_unlock(&s->lock);
            s->lazy_wake = wake_after > 1;
        }
        rs_pump(s);
    }
    while (s->up && s->registered && s->ack_batches < ACK_BATCHES_IN_FLIGHT && rs_gate_open(s, &s->bo_ack)) {
        pthread_mutex_lock(&s->lock);
        ack *batch = NULL, **tail = &batch;
        size_t n = 0;
        while (s->acks && n < ACK_BATCH) {
            ack *a = s->acks;
            s->acks = a->next;
            a->next = NULL;
            if (a->kind == 'k') { /* stays in flight; goes back with the rest */
                rs_free_ack(a);
                rs_held_free(held_of(a));
                continue;
            }
            *tail = a;
            tail = &a->next;
            n++;
        }
        if (s->acks == NULL) s->acks_tail = NULL;
        pthread_mutex_unlock(&s->lock);
        if (n == 0) return;
        char day[16];
        utc_day(day, sizeof day);
        argv_b a;
        rs_av_init(&a);
        rs_av_script(s, &a, S_ACK);
        rs_av_addf(&a, "%zu", 7 + n);
        rs_av_addf(&a, "%s%s", s->ns, WH_KEY_REGISTRY);
        rs_av_addf(&a, "%s%s", s->ns, WH_KEY_PROCESSED);
        rs_av_addf(&a, "%s%s", s->ns, WH_KEY_FAILED);
        rs_av_addf(&a, "%s%s:%s", s->ns, WH_KEY_PROCESSED, day);
        rs_av_addf(&a, "%s%s:%s", s->ns, WH_KEY_FAILED, day);
        rs_av_addf(&a, "%s%s", s->ns, WH_KEY_RETRY);
        rs_av_addf(&a, "%s%s", s->ns, WH_KEY_DEAD);
        for (ack *x = batch; x; x = x->next) rs_av_adds(&a, s->inflight_keys[held_of(x)->qi]);
        rs_av_adds(&a, s->identity);
        rs_av_addf(&a, "%d", WH_DAILY_STATS_TTL_S);
        rs_av_addf(&a, "%d", WH_DEAD_TIMEOUT_S);
        rs_av_addf(&a, "%d", WH_DEAD_MAX_JOBS);
        for (ack *x = batch; x; x = x->next) {
            rs_av_add(&a, held_of(x)->raw, held_of(x)->len);
            rs_av_add(&a, &x->kind, 1);
            rs_av_add(&a, x->newp ? x->newp : "", x->newp_len);
            if (x->kind == 'r') rs_av_addf(&a, "%.6f", x->delay);
            else rs_av_add(&a, "0", 1);
        }
        if (!rs_send_b(&s->cmd, on_ack, batch, &a)) {
            requeue_batch(s, batch);
            return;
        }
        s->ack_batches++;
    }
}

