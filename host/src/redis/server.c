/* server.c -- see server.h; the internals are in server_int.h.
 *
 * This file: key names, the scripts, sending commands (the argv builder, the
 * per-operation backoff gates), the I/O thread and the API. The rest of the
 * I/O thread's work lives in rs_conn.c, rs_fetch.c, rs_ack.c, rs_sched.c,
 * rs_beat.c, rs_reap.c and rs_stop.c (docs/architecture.md).
 *
 * Everything below the "I/O thread" banner runs on the I/O thread only; the
 * few entry points other threads use (outcome, quiet, stop) hand their work
 * over through the `lock`-protected fields and uv_async_send. */
#include "redis/server.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "core/clock.h"
#include "core/jid.h"
#include "core/mem.h"
#include "core/sigpipe.h"
#include "redis/keys.h"
#include "redis/scripts.h"
#include "redis/server_int.h"

/* ==== keys ================================================================ */

char *rs_keydup(const wh_rserver *s, const char *fmt, const char *a, const char *b2) {
    wh_buf b = WH_BUF_INIT;
    wh_buf_puts(&b, s->ns);
    wh_buf_printf(&b, fmt, a, b2 ? b2 : "");
    return wh_buf_steal(&b);
}

/* ==== scripts: EVALSHA once loaded (no script text per call) ============== */

const char *rs_script_src(int i) {
    switch (i) {
    case S_MIGRATE: return wh_script_migrate;
    case S_REGISTER: return wh_script_register;
    case S_FETCH: return wh_script_fetch;
    case S_ACK: return wh_script_ack;
    case S_DUE: return wh_script_due;
    case S_MOVE_DUE: return wh_script_move_due;
    case S_REQUEUE: return wh_script_requeue;
    case S_REAP: return wh_script_reap;
    default: return wh_script_reconcile;
    }
}

/* ==== commands ============================================================ */

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata) {
    req *r = privdata;
    conn *c = r->c;
    (void)ac;
    if (c->pending) c->pending--;
    c->last_io = wh_clock_monotonic();
    if (r->fn) r->fn(c->s, c, reply, r->data);
    wh_free(r);
}

/* Sends a command given as argv; fn (may be NULL) gets the reply, or NULL
 * when the connection goes away first. Returns false if not sent. */
static bool send_argv(conn *c, reply_fn fn, void *data, int argc, const char **argv, const size_t *lens) {
    if (c->ac == NULL) return false;
    req *r = wh_xmalloc(sizeof *r);
    r->c = c;
    r->fn = fn;
    r->data = data;
    if (redisAsyncCommandArgv(c->ac, on_reply, r, argc, argv, lens) != REDIS_OK) {
        wh_free(r);
        return false;
    }
    if (c->pending++ == 0) c->last_io = wh_clock_monotonic();
    return true;
}

/* ---- the argv builder (argv_b: server_int.h) ---- */

void rs_av_init(argv_b *a) { memset(a, 0, sizeof *a); }

void rs_av_add(argv_b *a, const char *p, size_t len) {
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 16;
        a->v = wh_xrealloc(a->v, (size_t)a->cap * sizeof *a->v);
        a->l = wh_xrealloc(a->l, (size_t)a->cap * sizeof *a->l);
    }
    a->v[a->n] = p;
    a->l[a->n] = len;
    a->n++;
}

void rs_av_adds(argv_b *a, const char *p) { rs_av_add(a, p, strlen(p)); }

/* adds the bytes of b, taken over (freed with the builder); b is left empty */
void rs_av_take(argv_b *a, wh_buf *b) {
    a->strs = wh_xrealloc(a->strs, (size_t)(a->nstrs + 1) * sizeof *a->strs);
    size_t len = b->len;
    char *p = wh_buf_steal(b);
    a->strs[a->nstrs++] = p;
    rs_av_add(a, p, len);
}

/* adds an owned copy (freed with the builder) */
void rs_av_addf(argv_b *a, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    wh_buf b = WH_BUF_INIT;
    wh_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    rs_av_take(a, &b);
}

void rs_av_free(argv_b *a) {
    for (int i = 0; i < a->nstrs; i++) wh_free(a->strs[i]);
    wh_free(a->strs);
    wh_free(a->v);
    wh_free(a->l);
}

/* EVALSHA <sha> when loaded, else EVAL <source> */
void rs_av_script(const wh_rserver *s, argv_b *a, int which) {
    if (s->sha[which][0]) {
        rs_av_adds(a, "EVALSHA");
        rs_av_adds(a, s->sha[which]);
    } else {
        rs_av_adds(a, "EVAL");
        rs_av_adds(a, rs_script_src(which));
    }
}

/* Starts a script call whose KEYS are (in-flight list, its queue) for every
 * queue (REQUEUE, RECONCILE). */
void rs_av_pairs(const wh_rserver *s, argv_b *a, int which) {
    rs_av_init(a);
    rs_av_script(s, a, which);
    rs_av_addf(a, "%zu", s->nqueues * 2);
    for (size_t i = 0; i < s->nqueues; i++) {
        rs_av_adds(a, s->inflight_keys[i]);
        rs_av_adds(a, s->queue_keys[i]);
    }
}

bool rs_send_b(conn *c, reply_fn fn, void *data, argv_b *a) {
    bool ok = send_argv(c, fn, data, a->n, a->v, a->l);
    rs_av_free(a);
    return ok;
}

/* True for a NOSCRIPT error reply (the script cache was flushed): the
 * scripts are loaded again (plain EVAL meanwhile) and the caller tries again. */
bool rs_noscript(wh_rserver *s, const redisReply *r) {
    if (r == NULL || r->type != REDIS_REPLY_ERROR || strncmp(r->str, "NOSCRIPT", 8) != 0) return false;
    memset(s->sha, 0, sizeof s->sha);
    rs_load_scripts(s);
    return true;
}

bool rs_reply_error(wh_rserver *s, redisReply *r, const char *what) {
    if (r == NULL) return true; /* the connection went away; logged there */
    if (rs_noscript(s, r)) return true;
    if (r->type == REDIS_REPLY_ERROR) {
        wh_log(WH_LOG_ERROR, NULL, NULL, "redis: %s: %s", what, r->str);
        return true;
    }
    return false;
}

/* Makes sure t_retry fires within `wait` seconds. */
static void retry_in(wh_rserver *s, double wait) {
    if (rs_closed(s) || uv_is_closing((uv_handle_t *)&s->t_retry)) return;
    double now = wh_clock_monotonic(), at = now + wait;
    if (uv_is_active((uv_handle_t *)&s->t_retry) && s->retry_at <= at) return;
    s->retry_at = at;
    uv_timer_start(&s->t_retry, rs_on_retry_timer, (uint64_t)(wait * 1000) + 1, 0);
}

/* A failure of an operation gated by b: it waits before its next try (and
 * t_retry wakes us then), and the message is logged unless the same
 * operation was logged less than FAILURE_LOG_S ago; then it counts. */
void rs_failed(wh_rserver *s, wh_backoff *b, wh_log_level level, const char *fmt, ...) {
    double now = wh_clock_monotonic();
    unsigned long repeated = 0;
    if (wh_backoff_fail(b, now, &repeated)) {
        char msg[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        if (repeated)
            wh_log(level, NULL, NULL, "%s (%lu more time%s since the last report; retrying every %.1f s at most)",
                   msg, repeated, repeated == 1 ? "" : "s", b->delay_s);
        else
            wh_log(level, NULL, NULL, "%s (retrying in %.1f s)", msg, b->delay_s);
    }
    retry_in(s, wh_backoff_wait(b, now));
}

/* Whether the operation gated by b may run now; if not, t_retry is set. */
bool rs_gate_open(wh_rserver *s, const wh_backoff *b) {
    double now = wh_clock_monotonic();
    if (wh_backoff_ready(b, now)) return true;
    retry_in(s, wh_backoff_wait(b, now));
    return false;
}

/* ==== the I/O thread ======================================================= */

static void io_main(void *arg) {
    wh_rserver *s = arg;
    wh_sigpipe_block_thread(); /* a write to a closed connection is EPIPE, not death */
    rs_conn_open(s, &s->cmd);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    pthread_mutex_lock(&s->lock);
    s->finished = true;
    pthread_cond_broadcast(&s->done);
    pthread_mutex_unlock(&s->lock);
}

/* ==== API ================================================================= */

int wh_rserver_new(const wh_rserver_options *opts, wh_rserver **out, wh_err *err) {
    wh_rserver *s = wh_xcalloc(1, sizeof *s);
    s->held.next = s->held.prev = &s->held;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->done, NULL);
    s->cfg = opts->cfg;
    if (wh_redis_uri_parse(opts->cfg->queue_uri, &s->uri, err) != 0) {
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->done);
        wh_free(s);
        return WH_ECONFIG;
    }
    wh_redis_uri_redacted(&s->uri, s->uri_shown, sizeof s->uri_shown);
    s->host = opts->host;
    const char *ns = opts->cfg->queue_namespace;
    wh_buf b = WH_BUF_INIT;
    if (ns && *ns) wh_buf_printf(&b, "%s:", ns);
    s->ns = wh_buf_steal(&b);
    char prefix[288], nonce[WH_JID_SIZE];
    wh_rserver_identity_prefix((long)getpid(), prefix, sizeof prefix);
    wh_jid_new(nonce);
    nonce[12] = '\0';
    snprintf(s->identity, sizeof s->identity, "%s%s", prefix, nonce);
    /* the queues to fetch: as configured, else every queue a worker names */
    const wh_config *cfg = opts->cfg;
    if (cfg->queues) {
        s->nqueues = cfg->nqueues;
        s->queues = wh_xcalloc(s->nqueues, sizeof *s->queues);
        s->weights = wh_xcalloc(s->nqueues, sizeof *s->weights);
        for (size_t i = 0; i < s->nqueues; i++) {
            s->queues[i] = wh_xstrdup(cfg->queues[i].name);
            s->weights[i] = cfg->queues[i].weight;
        }
        s->strict = !cfg->queues_weighted;
    } else {
        size_t n = wh_catalog_count(opts->catalog);
        s->queues = wh_xcalloc(n ? n : 1, sizeof *s->queues);
        s->weights = wh_xcalloc(n ? n : 1, sizeof *s->weights);
        for (size_t i = 0; i < n; i++) {
            const char *q = wh_catalog_at(opts->catalog, i)->queue;
            bool seen = false;
            for (size_t k = 0; k < s->nqueues; k++) seen = seen || strcmp(s->queues[k], q) == 0;
            if (seen) continue;
            s->queues[s->nqueues] = wh_xstrdup(q);
            s->weights[s->nqueues++] = 1;
        }
        s->strict = false;
    }
    if (s->nqueues == 0 || s->nqueues > RS_MAX_QUEUES) {
        size_t got = s->nqueues; /* read before the free */
        wh_rserver_free(s);
        return wh_err_set(err, WH_ECONFIG, "BackgroundQueue needs 1 to %d queues to fetch from (workers.queues, "
                                           "or the queues the workers name); got %zu", RS_MAX_QUEUES, got);
    }
    s->queue_keys = wh_xcalloc(s->nqueues, sizeof *s->queue_keys);
    s->inflight_keys = wh_xcalloc(s->nqueues, sizeof *s->inflight_keys);
    for (size_t i = 0; i < s->nqueues; i++) {
        s->queue_keys[i] = rs_keydup(s, WH_KEY_QUEUE_PREFIX "%s%s", s->queues[i], NULL);
        s->inflight_keys[i] = rs_keydup(s, WH_KEY_INFLIGHT_PREFIX "%s:%s", s->identity, s->queues[i]);
    }
    s->prefetch_min = (size_t)cfg->concurrency * PREFETCH_MIN_PER_THREAD;
    s->prefetch_cap = (size_t)cfg->concurrency * PREFETCH_MAX_PER_THREAD;
    s->prefetch_max = s->prefetch_min;
    s->wake_after = 1;
    s->started_at = wh_clock_wall();
    s->rng = 0x9E3779B97F4A7C15ULL ^ (uint64_t)(s->started_at * 1e6);
    s->cmd.s = s;
    s->cmd.queue = -1;
    s->blockers = wh_xcalloc(s->nqueues, sizeof *s->blockers);
    for (size_t i = 0; i < s->nqueues; i++) {
        s->blockers[i].s = s;
        s->blockers[i].queue = (int)i;
    }
    s->queues_of_key = rs_keydup(s, WH_KEY_QUEUES_OF_PREFIX "%s%s", s->identity, NULL);
    const wh_backoff gate = WH_BACKOFF_INIT(BACKOFF_MIN_S, BACKOFF_MAX_S, FAILURE_LOG_S);
    s->bo_layout = s->bo_register = s->bo_fetch = s->bo_ack = s->bo_sched = s->bo_reconcile = s->bo_auth = gate;
    s->bo_queue = wh_xcalloc(s->nqueues, sizeof *s->bo_queue);
    for (size_t i = 0; i < s->nqueues; i++) s->bo_queue[i] = gate;
    rs_build_info(s);
    *out = s;
    return 0;
}

void wh_rserver_set_executor(wh_rserver *s, wh_async *exec) { s->exec = exec; }
const char *wh_rserver_identity(const wh_rserver *s) { return s->identity; }

void wh_rserver_identity_prefix(long pid, char *out, size_t n) {
    char host[256];
    gethostname(host, sizeof host);
    host[sizeof host - 1] = '\0';
    const char *dyno = getenv("DYNO");
    snprintf(out, n, "%s:%ld:", dyno && *dyno ? dyno : host, pid);
}

int wh_rserver_start(wh_rserver *s, wh_err *err) {
    if (uv_loop_init(&s->loop) != 0) return wh_err_set(err, WH_EUNAVAIL, "cannot create the I/O loop");
    uv_async_init(&s->loop, &s->wake, rs_on_wake);
    s->wake.data = s;
    uv_timer_t *timers[] = {&s->t_heartbeat, &s->t_scheduler, &s->t_reaper, &s->t_watchdog, &s->t_reconnect,
                            &s->t_final, &s->t_reconcile, &s->t_flush, &s->t_signals, &s->t_retry};
    for (size_t i = 0; i < sizeof timers / sizeof *timers; i++) {
        uv_timer_init(&s->loop, timers[i]);
        timers[i]->data = s;
    }
    uv_timer_start(&s->t_heartbeat, rs_on_heartbeat, (uint64_t)(HEARTBEAT_S * 1000), (uint64_t)(HEARTBEAT_S * 1000));
    uv_timer_start(&s->t_scheduler, rs_on_scheduler, SCHEDULER_MS, SCHEDULER_MS);
    uv_timer_start(&s->t_reaper, rs_on_reaper, (uint64_t)(REAPER_S * 1000), (uint64_t)(REAPER_S * 1000));
    uv_timer_start(&s->t_watchdog, rs_on_watchdog, WATCHDOG_MS, WATCHDOG_MS);
    uv_timer_start(&s->t_signals, rs_on_signals, SIGNALS_MS, SIGNALS_MS);
    if (uv_thread_create(&s->thread, io_main, s) != 0) return wh_err_set(err, WH_EUNAVAIL, "cannot start the I/O thread");
    s->thread_started = true;
    return 0;
}

void wh_rserver_quiet(wh_rserver *s) {
    pthread_mutex_lock(&s->lock);
    s->want_quiet = true;
    pthread_mutex_unlock(&s->lock);
    if (s->thread_started) uv_async_send(&s->wake);
}

size_t wh_rserver_stop(wh_rserver *s, double timeout) {
    if (!s->thread_started) return 0;
    wh_rserver_quiet(s);
    if (s->exec) wh_async_stop(s->exec, timeout); /* running jobs finish; outcomes queue up */
    pthread_mutex_lock(&s->lock);
    s->want_stop = true;
    pthread_mutex_unlock(&s->lock);
    uv_async_send(&s->wake);
    uv_thread_join(&s->thread);
    s->thread_started = false;
    uv_run(&s->loop, UV_RUN_NOWAIT); /* close callbacks */
    uv_loop_close(&s->loop);
    return s->requeued;
}

void wh_rserver_free(wh_rserver *s) {
    if (s == NULL) return;
    wh_rserver_stop(s, s->cfg->shutdown_timeout);
    for (size_t i = 0; i < s->nqueues; i++) {
        wh_free(s->queues[i]);
        if (s->inflight_keys) wh_free(s->inflight_keys[i]);
        if (s->queue_keys) wh_free(s->queue_keys[i]);
    }
    wh_free(s->queues);
    wh_free(s->inflight_keys);
    wh_free(s->queue_keys);
    wh_free(s->weights);
    wh_free(s->blockers);
    wh_free(s->bo_queue);
    for (ack *a = s->acks; a; a = a->next) rs_free_ack(a);
    while (s->held.next != &s->held) rs_held_free(s->held.next);
    wh_free(s->drops);
    wh_free(s->info_json);
    wh_free(s->queues_of_key);
    wh_free(s->ns);
    wh_redis_uri_free(&s->uri);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->done);
    wh_free(s);
}

