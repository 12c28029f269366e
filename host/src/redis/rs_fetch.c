/* rs_fetch.c -- fetching: batches by the FETCH script sized by adaptive
 * prefetch, BLMOVE per queue while idle, the records of held entries, and
 * RECONCILE after a fetch reply that may have been lost. I/O thread only.
 * See server_int.h. */
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "app/async.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/mem.h"
#include "redis/keys.h"
#include "redis/server_int.h"

/* ==== fetch =============================================================== */

/* Queue order for this fetch: as configured (strict), or a weighted shuffle. */
static void fetch_order(wh_rserver *s, size_t *order) {
    for (size_t i = 0; i < s->nqueues; i++) order[i] = i;
    if (s->strict) return;
    /* weighted shuffle without replacement: draw by weight among the rest */
    for (size_t k = 0; k < s->nqueues; k++) {
        long total = 0;
        for (size_t i = k; i < s->nqueues; i++) total += s->weights[order[i]];
        s->rng ^= s->rng << 13; s->rng ^= s->rng >> 7; s->rng ^= s->rng << 17;
        long r = (long)(s->rng % (uint64_t)total);
        size_t pick = k;
        for (size_t i = k; i < s->nqueues; i++) {
            if (r < s->weights[order[i]]) { pick = i; break; }
            r -= s->weights[order[i]];
        }
        size_t tmp = order[k]; order[k] = order[pick]; order[pick] = tmp;
    }
}

static held *held_new(wh_rserver *s, size_t qi, const char *p, size_t len) {
    held *h = wh_xmalloc(sizeof *h + len + 1);
    memset(&h->a, 0, sizeof h->a);
    h->qi = qi;
    h->len = len;
    memcpy(h->raw, p, len);
    h->raw[len] = '\0';
    h->next = &s->held;
    h->prev = s->held.prev;
    s->held.prev->next = h;
    s->held.prev = h;
    return h;
}

void rs_held_free(held *h) {
    if (h == NULL) return;
    h->prev->next = h->next;
    h->next->prev = h->prev;
    wh_free(h);
}

/* Wraps fetched bytes as a job for the executor, unparsed: the worker
 * thread parses it (wh_job_materialize), which keeps JSON off this thread,
 * the one every job goes through. */
wh_job *rs_deliver(wh_rserver *s, size_t qi, const char *p, size_t len) {
    s->outstanding++;
    held *h = held_new(s, qi, p, len);
    wh_job *job = &h->job;
    wh_job_raw_init(job, h->raw, len, s->queues[qi]); /* all three outlive the job */
    job->source_ref = h;
    return job;
}

/* Hands fetched jobs to the executor in one go. Jobs it refuses (it is
 * stopping) stay in flight in Redis and go back with the rest. */
void rs_hand_over(wh_rserver *s, wh_job **jobs, size_t n) {
    size_t accepted = 0;
    if (n && s->lazy_wake && !uv_is_active((uv_handle_t *)&s->t_flush))
        uv_timer_start(&s->t_flush, rs_on_flush_timer, FLUSH_MS, FLUSH_MS);
    if (n) wh_async_push_many(s->exec, jobs, n, &accepted);
    for (size_t i = accepted; i < n; i++) {
        held *h = jobs[i]->source_ref;
        wh_job_free(jobs[i]); /* lives in h */
        rs_held_free(h);
        s->outstanding--;
    }
}

typedef struct fetch_ctx {
    size_t asked;
    size_t n;         /* queues asked: those not resting after a refusal */
    size_t order[RS_MAX_QUEUES]; /* the script's queue positions -> our queue index */
} fetch_ctx;

/* A queue whose key (or our in-flight list of it) holds another type than a
 * list: it rests (its own backoff) while the others are fetched. */
static void queue_refused(wh_rserver *s, size_t qi, const char *why) {
    rs_failed(s, &s->bo_queue[qi], WH_LOG_ERROR, "redis: not fetching from %s: %s", s->queue_keys[qi], why);
}

static void on_fetch(wh_rserver *s, conn *c, redisReply *r, void *data) {
    (void)c;
    fetch_ctx *fc = data;
    if (s->fetches) s->fetches--;
    s->asked = s->asked > fc->asked ? s->asked - fc->asked : 0;
    if (r == NULL && !rs_stopping(s)) s->reconcile_wanted = true; /* Redis may have moved jobs we never saw */
    if (r && r->type == REDIS_REPLY_INTEGER && r->integer < 0) {
        /* not in the registry (a reaper took this process for dead): the
         * script moved nothing; register again before the next fetch */
        rs_lost_registration(s, "fetching");
    } else if (r && r->type == REDIS_REPLY_ERROR) {
        if (!rs_noscript(s, r)) rs_failed(s, &s->bo_fetch, WH_LOG_ERROR, "redis: fetching jobs: %s", r->str);
    } else if (r && r->type == REDIS_REPLY_ARRAY) {
        wh_backoff_ok(&s->bo_fetch);
        /* {count per queue in the order asked, then every payload} */
        size_t got = r->elements > fc->n ? r->elements - fc->n : 0, n = 0, k = fc->n;
        wh_job **jobs = wh_xmalloc((got ? got : 1) * sizeof *jobs);
        for (size_t pos = 0; pos < fc->n && pos < r->elements; pos++) {
            long long count = r->element[pos]->type == REDIS_REPLY_INTEGER ? r->element[pos]->integer : 0;
            if (count < 0) queue_refused(s, fc->order[pos], "its key holds another type than a list");
            else wh_backoff_ok(&s->bo_queue[fc->order[pos]]);
            for (long long j = 0; j < count && k < r->elements; j++, k++)
                jobs[n++] = rs_deliver(s, fc->order[pos], r->element[k]->str, r->element[k]->len);
        }
        rs_hand_over(s, jobs, n);
        wh_free(jobs);
        s->idle = got < fc->asked;
    }
    wh_free(fc);
    if (r) rs_pump(s);
}

static void on_block(wh_rserver *s, conn *c, redisReply *r, void *data) {
    (void)data;
    c->blocking = false;
    if (r == NULL) {
        /* dropped while blocked: its move may have happened, the reply lost */
        if (!rs_quiet(s) && !rs_stopping(s)) s->reconcile_wanted = true;
        return;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        if (strncmp(r->str, "WRONGTYPE", 9) == 0) queue_refused(s, (size_t)c->queue, r->str);
        else rs_failed(s, &s->bo_fetch, WH_LOG_ERROR, "redis: BLMOVE from %s: %s", s->queue_keys[c->queue], r->str);
        return;
    }
    if (r->type == REDIS_REPLY_STRING) {
        wh_job *job = rs_deliver(s, (size_t)c->queue, r->str, r->len);
        if (job) rs_hand_over(s, &job, 1);
        s->idle = false; /* there may be more: fetch in batches again */
    }
    rs_pump(s);
}

/* ---- reconcile: after a lost fetch reply ---------------------------------
 * A fetch script or a BLMOVE whose reply never came (the connection dropped,
 * Redis restarted) may have moved jobs into our in-flight lists that this
 * process does not know of: nothing would run them, and the reaper leaves a
 * live process's lists alone. So, with no fetch outstanding and every
 * blocking connection closed and killed, one script compares each in-flight
 * list with the entries we hold and puts the rest back on the queue. */

static void on_reconciled(wh_rserver *s, conn *c, redisReply *r, void *data) {
    (void)c;
    (void)data;
    s->reconcile_in_flight = false;
    if (r == NULL) { /* the connection dropped again: it may not have run */
        if (!rs_stopping(s)) s->reconcile_wanted = true;
        return;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        s->reconcile_wanted = true;
        if (!rs_noscript(s, r))
            rs_failed(s, &s->bo_reconcile, WH_LOG_ERROR, "redis: reconciling in-flight lists: %s", r->str);
    } else {
        wh_backoff_ok(&s->bo_reconcile);
        if (r->type == REDIS_REPLY_INTEGER && r->integer > 0)
            wh_log(WH_LOG_WARN, NULL, NULL, "put %lld job%s back on %s queue%s: fetched by a request whose reply "
                   "was lost", r->integer, r->integer == 1 ? "" : "s", r->integer == 1 ? "its" : "their",
                   r->integer == 1 ? "" : "s");
    }
    rs_pump(s);
}

static void on_reconcile_timer(uv_timer_t *t) {
    wh_rserver *s = t->data;
    if (!s->reconcile_wanted || s->reconcile_in_flight || !s->up || !s->registered || rs_stopping(s) || s->fetches)
        return;
    if (!rs_gate_open(s, &s->bo_reconcile)) return;
    for (size_t i = 0; i < s->nqueues; i++) rs_conn_drop(&s->blockers[i]);
    s->reconcile_wanted = false; /* after the drops, which ask for it again */
    rs_send_kills(s);
    argv_b a;
    rs_av_pairs(s, &a, S_RECONCILE);
    for (size_t i = 0; i < s->nqueues; i++) {
        size_t n = 0;
        for (held *h = s->held.next; h != &s->held; h = h->next) n += h->qi == i;
        rs_av_addf(&a, "%zu", n);
        for (held *h = s->held.next; h != &s->held; h = h->next)
            if (h->qi == i) rs_av_add(&a, h->raw, h->len);
    }
    s->reconcile_in_flight = rs_send_b(&s->cmd, on_reconciled, NULL, &a);
    if (!s->reconcile_in_flight) s->reconcile_wanted = true;
}

static void reconcile_soon(wh_rserver *s) {
    /* from a timer: never inside a hiredis callback of a connection it drops */
    if (!uv_is_closing((uv_handle_t *)&s->t_reconcile) && !uv_is_active((uv_handle_t *)&s->t_reconcile))
        uv_timer_start(&s->t_reconcile, on_reconcile_timer, 0, 0);
}

/* Decides what to fetch next. Busy: batch scripts in queue order, as many
 * jobs as prefetch allows, a second batch asked for while the first is on
 * its way. Idle (the last batch came back short): one BLMOVE per queue, so
 * a newly pushed job starts at once with no polling. */
void rs_pump(wh_rserver *s) {
    if (!s->up || !s->registered || rs_quiet(s) || rs_stopping(s)) return;
    if (s->reconcile_wanted) {
        if (s->fetches == 0) reconcile_soon(s);
        return;
    }
    if (s->ndrops) rs_send_kills(s);
    if (!rs_gate_open(s, &s->bo_fetch)) return;
    size_t room = s->prefetch_max > s->outstanding + s->asked ? s->prefetch_max - s->outstanding - s->asked : 0;
    if (room == 0) return;
    if (!s->idle) {
        /* a second batch only when it is worth a round trip */
        if (s->fetches >= FETCHES_IN_FLIGHT || (s->fetches && room < s->prefetch_max / 4)) return;
        fetch_ctx *fc = wh_xmalloc(sizeof *fc);
        fc->asked = room < FETCH_MAX ? room : FETCH_MAX;
        size_t order[RS_MAX_QUEUES];
        fetch_order(s, order);
        fc->n = 0;
        for (size_t i = 0; i < s->nqueues; i++)
            if (rs_gate_open(s, &s->bo_queue[order[i]])) fc->order[fc->n++] = order[i];
        if (fc->n == 0) { /* every queue rests: t_retry comes back */
            wh_free(fc);
            return;
        }
        argv_b a;
        rs_av_init(&a);
        rs_av_script(s, &a, S_FETCH);
        rs_av_addf(&a, "%zu", 1 + fc->n * 2);
        rs_av_addf(&a, "%s%s", s->ns, WH_KEY_REGISTRY);
        for (size_t i = 0; i < fc->n; i++) {
            rs_av_adds(&a, s->queue_keys[fc->order[i]]);
            rs_av_adds(&a, s->inflight_keys[fc->order[i]]);
        }
        rs_av_addf(&a, "%zu", fc->asked);
        rs_av_adds(&a, s->identity);
        if (rs_send_b(&s->cmd, on_fetch, fc, &a)) {
            s->fetches++;
            s->asked += fc->asked;
        } else {
            wh_free(fc);
        }
        return;
    }
    if (s->fetches || s->reconcile_in_flight) return;
    /* idle: arm one blocking move per queue */
    for (size_t i = 0; i < s->nqueues; i++) {
        conn *c = &s->blockers[i];
        if (c->ac == NULL) {
            rs_conn_open(s, c);
            continue;
        }
        if (!c->ready || c->blocking || c->pending || !rs_gate_open(s, &s->bo_queue[i])) continue;
        argv_b a;
        rs_av_init(&a);
        rs_av_adds(&a, "BLMOVE");
        rs_av_adds(&a, s->queue_keys[i]);
        rs_av_adds(&a, s->inflight_keys[i]);
        rs_av_adds(&a, "RIGHT");
        rs_av_adds(&a, "LEFT");
        rs_av_addf(&a, "%d", BLOCK_TIMEOUT_S);
        c->blocking = rs_send_b(c, on_block, NULL, &a);
    }
}

