/* rs_beat.c -- the heartbeat (Sidekiq's process hash and work in progress),
 * <identity>-signals (TSTP, TERM, RELOAD) and reload on libuv's thread pool,
 * and what fetching waits for on each connection: the key layout (MIGRATE)
 * and this process in the registry (REGISTER). I/O thread only. See
 * server_int.h. */
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uv.h>

#include "app/host.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/proc.h"
#include "redis/keys.h"
#include "redis/scripts.h"
#include "redis/server_int.h"

/* ==== heartbeat and the process registry ================================== */

void rs_build_info(wh_rserver *s) {
    char host[256], boot[64], pidns[64];
    gethostname(host, sizeof host);
    host[sizeof host - 1] = '\0';
    wh_proc_boot_id(boot, sizeof boot);
    wh_proc_pid_namespace(pidns, sizeof pidns);
    wh_buf b = WH_BUF_INIT;
    wh_buf_puts(&b, "{\"hostname\":");
    wh_json_write_string(&b, host, strlen(host));
    wh_buf_printf(&b, ",\"started_at\":%.6f,\"pid\":%ld,\"tag\":\"\",\"concurrency\":%d,\"queues\":[",
                  s->started_at, (long)getpid(), s->cfg->concurrency);
    for (size_t i = 0; i < s->nqueues; i++) {
        if (i) wh_buf_putc(&b, ',');
        wh_json_write_string(&b, s->queues[i], strlen(s->queues[i]));
    }
    wh_buf_puts(&b, "],\"labels\":[\"workerhost\"],\"identity\":");
    wh_json_write_string(&b, s->identity, strlen(s->identity));
    wh_buf_printf(&b, ",\"version\":\"workerhost %s\",\"wh_boot_id\":", WORKERHOST_VERSION);
    wh_json_write_string(&b, boot, strlen(boot));
    wh_buf_puts(&b, ",\"wh_pidns\":");
    wh_json_write_string(&b, pidns, strlen(pidns));
    wh_buf_printf(&b, ",\"wh_start_ticks\":%llu", wh_proc_start_ticks((long)getpid()));
    s->info_json = wh_buf_steal(&b);
}

typedef struct work_ctx {
    wh_rserver *s;
    argv_b *a;
    size_t busy;
} work_ctx;

static void add_work(void *ud, size_t worker, const wh_job *job, double since) {
    work_ctx *w = ud;
    wh_buf v = WH_BUF_INIT;
    wh_buf_puts(&v, "{\"queue\":");
    const char *q = job->source_queue ? job->source_queue : job->queue;
    wh_json_write_string(&v, q, strlen(q));
    wh_buf_puts(&v, ",\"payload\":");
    if (job->raw) wh_json_write_string(&v, job->raw, job->raw_len);
    else wh_buf_puts(&v, "\"\"");
    wh_buf_printf(&v, ",\"run_at\":%lld}", (long long)since);
    rs_av_addf(w->a, "t%zu", worker);
    rs_av_addf(w->a, "%s", wh_buf_cstr(&v));
    wh_buf_free(&v);
    w->busy++;
}

/* wh_host_reload loads scripts in a scratch VM (milliseconds): on libuv's
 * thread pool, not on this thread, which every job goes through. */
static void reload_work(uv_work_t *w) {
    wh_rserver *s = w->data;
    wh_err err;
    wh_host_reload(s->host, &err); /* logs its outcome */
}


static void reload_soon(wh_rserver *s);

static void reload_done(uv_work_t *w, int status) {
    wh_rserver *s = w->data;
    (void)status;
    s->reload_running = false;
    if (s->reload_again) {
        s->reload_again = false;
        reload_soon(s);
    }
    rs_heartbeat(s); /* publish the new generation at once */
}

static void reload_soon(wh_rserver *s) {
    if (s->host == NULL || rs_closed(s)) return;
    if (s->reload_running) {
        s->reload_again = true;
        return;
    }
    s->reload_req.data = s;
    s->reload_running = uv_queue_work(&s->loop, &s->reload_req, reload_work, reload_done) == 0;
}

static void on_signal_reply(wh_rserver *s, conn *c, redisReply *r, void *data) {
    (void)c;
    (void)data;
    if (r == NULL || r->type != REDIS_REPLY_STRING) return;
    if (strcmp(r->str, "TSTP") == 0) {
        wh_log(WH_LOG_INFO, NULL, NULL, "TSTP from %s-signals (Web UI's Quiet)", s->identity);
        rs_stop_quiet(s);
        if (s->exec) wh_async_quiet(s->exec);
    } else if (strcmp(r->str, "RELOAD") == 0) {
        wh_log(WH_LOG_INFO, NULL, NULL, "RELOAD from %s-signals (workerhost reload)", s->identity);
        reload_soon(s);
    } else if (strcmp(r->str, "TERM") == 0 || strcmp(r->str, "INT") == 0) {
        wh_log(WH_LOG_INFO, NULL, NULL, "%s from %s-signals (Web UI's Stop)", r->str, s->identity);
        kill(getpid(), SIGTERM); /* handled like the OS signal */
    }
}

static void on_ping(wh_rserver *s, conn *c, redisReply *r, void *data) {
    (void)c;
    double *t0 = data;
    if (r && r->type != REDIS_REPLY_ERROR) {
        long rtt = (long)((wh_clock_monotonic() - *t0) * 1e6);
        argv_b a;
        rs_av_init(&a);
        rs_av_adds(&a, "HSET");
        rs_av_addf(&a, "%s%s", s->ns, s->identity);
        rs_av_adds(&a, "rtt_us");
        rs_av_addf(&a, "%ld", rtt);
        rs_send_b(&s->cmd, NULL, NULL, &a);
    }
    wh_free(t0);
}

void rs_heartbeat(wh_rserver *s) {
    if (!s->up || rs_closed(s)) return;
    conn *c = &s->cmd;
    double now = wh_clock_wall();
    argv_b a;
    char *workers_key = rs_keydup(s, "%s:workers", s->identity, NULL);
    char *work_key = rs_keydup(s, "%s:work", s->identity, NULL);
    /* jobs in progress, under both of Sidekiq's names (6.4 and 6.5+) */
    rs_av_init(&a);
    rs_av_adds(&a, "DEL");
    rs_av_adds(&a, workers_key);
    rs_av_adds(&a, work_key);
    rs_send_b(c, NULL, NULL, &a);
    size_t busy = 0;
    for (int k = 0; k < 2; k++) {
        rs_av_init(&a);
        rs_av_adds(&a, "HSET");
        rs_av_adds(&a, k ? work_key : workers_key);
        work_ctx w = {s, &a, 0};
        if (s->exec) wh_async_each_running(s->exec, add_work, &w);
        busy = w.busy;
        if (w.busy) {
            rs_send_b(c, NULL, NULL, &a);
            rs_av_init(&a);
            rs_av_adds(&a, "EXPIRE");
            rs_av_adds(&a, k ? work_key : workers_key);
            rs_av_addf(&a, "%d", WH_HEARTBEAT_TTL_S);
            rs_send_b(c, NULL, NULL, &a);
        } else {
            rs_av_free(&a);
        }
    }
    rs_av_init(&a);
    rs_av_adds(&a, "SADD");
    rs_av_addf(&a, "%s%s", s->ns, WH_KEY_PROCESSES);
    rs_av_adds(&a, s->identity);
    rs_send_b(c, NULL, NULL, &a);
    rs_register_now(s); /* checked: restores what a reaper may have removed */
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    rs_av_init(&a);
    rs_av_adds(&a, "HSET");
    rs_av_addf(&a, "%s%s", s->ns, s->identity);
    rs_av_adds(&a, "info");
    if (s->host) /* the worker code's generation (issue: reload), and when it began */
        rs_av_addf(&a, "%s,\"wh_generation\":%u,\"wh_reloaded_at\":%.6f}", s->info_json, wh_host_generation(s->host),
                wh_host_reloaded_at(s->host));
    else
        rs_av_addf(&a, "%s}", s->info_json);
    rs_av_adds(&a, "busy");
    rs_av_addf(&a, "%zu", busy);
    rs_av_adds(&a, "beat");
    rs_av_addf(&a, "%.6f", now);
    rs_av_adds(&a, "quiet");
    rs_av_adds(&a, rs_quiet(s) ? "true" : "false");
    rs_av_adds(&a, "rss");
    rs_av_addf(&a, "%ld", ru.ru_maxrss);
    rs_send_b(c, NULL, NULL, &a);
    rs_av_init(&a);
    rs_av_adds(&a, "EXPIRE");
    rs_av_addf(&a, "%s%s", s->ns, s->identity);
    rs_av_addf(&a, "%d", WH_HEARTBEAT_TTL_S);
    rs_send_b(c, NULL, NULL, &a);
    double *t0 = wh_xmalloc(sizeof *t0);
    *t0 = wh_clock_monotonic();
    rs_av_init(&a);
    rs_av_adds(&a, "PING");
    if (!rs_send_b(c, on_ping, t0, &a)) wh_free(t0);
    wh_free(workers_key);
    wh_free(work_key);
    rs_flush_acks(s); /* outcomes refused while we were out of the registry */
}

void rs_on_heartbeat(uv_timer_t *t) { rs_heartbeat(t->data); }

/* <identity>-signals, every second: the Web UI's Quiet and Stop (TSTP,
 * TERM), and RELOAD from `workerhost reload` (ours). Sidekiq reads them at
 * its heartbeat; once a second is as cheap and answers sooner. */
void rs_on_signals(uv_timer_t *t) {
    wh_rserver *s = t->data;
    if (!s->up || rs_closed(s)) return;
    argv_b a;
    rs_av_init(&a);
    rs_av_adds(&a, "RPOP");
    rs_av_addf(&a, "%s%s-signals", s->ns, s->identity);
    rs_send_b(&s->cmd, on_signal_reply, NULL, &a);
}

/* ==== the key layout and the registry ===================================== */


static void on_migrated(wh_rserver *s, conn *c, redisReply *r, void *data) {
    (void)c;
    (void)data;
    s->migrating = false;
    if (r == NULL) return;
    if (r->type == REDIS_REPLY_STRING && (strcmp(r->str, "ok") == 0 || strcmp(r->str, "migrated") == 0)) {
        if (strcmp(r->str, "migrated") == 0)
            wh_log(WH_LOG_WARN, NULL, NULL, "redis: moved workerhost's keys from layout 1 to layout %s (no host "
                   "of layout 1 is running)", WH_KEY_VERSION_VALUE);
        wh_backoff_ok(&s->bo_layout);
        s->layout_ok = true;
        rs_register_now(s);
        rs_reaper(s);
        return;
    }
    if (rs_noscript(s, r)) {
        rs_migrate_now(s);
    } else if (r->type == REDIS_REPLY_STRING && strncmp(r->str, "live ", 5) == 0) {
        rs_failed(s, &s->bo_layout, WH_LOG_ERROR, "redis: %s holds workerhost keys of layout 1, in use by a running "
               "host of an older workerhost (%s): this host fetches nothing until every older host has stopped, "
               "then moves the keys to layout %s", s->uri_shown, r->str + 5, WH_KEY_VERSION_VALUE);
    } else if (r->type == REDIS_REPLY_STRING && strncmp(r->str, "version ", 8) == 0) {
        rs_failed(s, &s->bo_layout, WH_LOG_ERROR, "redis: %s holds workerhost keys of layout version %s (key %s%s); "
               "this build reads and writes version %s: this host fetches nothing", s->uri_shown, r->str + 8, s->ns,
               WH_KEY_VERSION, WH_KEY_VERSION_VALUE);
    } else {
        rs_failed(s, &s->bo_layout, WH_LOG_ERROR, "redis: checking the key layout on %s: %s", s->uri_shown,
               r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    }
}

/* MIGRATE (scripts.h), once per connection, before anything else of ours. */
void rs_migrate_now(wh_rserver *s) {
    if (!s->up || s->layout_ok || s->migrating || !rs_gate_open(s, &s->bo_layout)) return;
    argv_b a;
    rs_av_init(&a);
    rs_av_script(s, &a, S_MIGRATE);
    wh_script_args m;
    wh_script_migrate_args(s->ns, &m);
    for (int i = 0; i < WH_MIGRATE_NARGS; i++) rs_av_add(&a, m.v[i], m.l[i]);
    s->migrating = rs_send_b(&s->cmd, on_migrated, NULL, &a); /* copied into hiredis's buffer */
    wh_script_args_free(&m);
}

static void on_registered(wh_rserver *s, conn *c, redisReply *r, void *data) {
    (void)c;
    (void)data;
    s->registering = false;
    if (r == NULL) return;
    if (r->type != REDIS_REPLY_INTEGER) {
        s->registered = false;
        if (rs_noscript(s, r)) {
            rs_register_now(s);
            return;
        }
        rs_failed(s, &s->bo_register, WH_LOG_ERROR, "redis: registering this process (%s) on %s: %s; it fetches no "
               "job until it is registered", s->identity, s->uri_shown,
               r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "WHLAYOUT", 8) == 0) {
            s->layout_ok = false;
            rs_migrate_now(s);
        }
        return;
    }
    if (r->integer == 0 && s->ever_registered) {
        /* it was not in the registry: a reaper took it for dead (its heartbeat
         * expired while it was paused, swapped out or cut off) and put its
         * in-flight jobs back. The jobs it still runs may run twice; anything
         * that reached its in-flight lists meanwhile goes back to its queue. */
        wh_log(WH_LOG_WARN, NULL, NULL, "this process (%s) had been taken for dead and its in-flight jobs put "
               "back on their queues; registered again (jobs it was running may run twice)", s->identity);
        if (!rs_stopping(s)) s->reconcile_wanted = true; /* pump drops the blockers first */
    }
    unsigned long refusals = wh_backoff_ok(&s->bo_register);
    if (refusals)
        wh_log(WH_LOG_INFO, NULL, NULL, "redis: registered %s after %lu refusal%s", s->identity, refusals,
               refusals == 1 ? "" : "s");
    s->registered = s->ever_registered = true;
    rs_flush_acks(s);
    rs_pump(s);
    if (rs_stopping(s)) rs_stop_step(s); /* back while stopping: nothing else moves the stop on */
}

/* REGISTER (scripts.h): the registry and the set of this process's queues,
 * together, confirmed by the reply. Nothing is fetched before. */
void rs_register_now(wh_rserver *s) {
    if (!s->up || !s->layout_ok || s->registering || rs_closed(s) || s->stop >= RS_REQUEUEING ||
        !rs_gate_open(s, &s->bo_register))
        return;
    argv_b a;
    rs_av_init(&a);
    rs_av_script(s, &a, S_REGISTER);
    rs_av_adds(&a, "3");
    rs_av_addf(&a, "%s%s", s->ns, WH_KEY_REGISTRY);
    rs_av_adds(&a, s->queues_of_key);
    rs_av_addf(&a, "%s%s", s->ns, WH_KEY_VERSION);
    rs_av_adds(&a, s->identity);
    rs_av_adds(&a, WH_KEY_VERSION_VALUE);
    for (size_t i = 0; i < s->nqueues; i++) rs_av_adds(&a, s->queues[i]);
    s->registering = rs_send_b(&s->cmd, on_registered, NULL, &a);
}

/* A script refused because this process is not in the registry. */
void rs_lost_registration(wh_rserver *s, const char *what) {
    if (s->registered)
        wh_log(WH_LOG_WARN, NULL, NULL, "redis: %s: this process is no longer in the registry (a reaper took it "
               "for dead?); registering again", what);
    s->registered = false;
    rs_register_now(s);
}

/* t_retry: an operation that failed may try again. */
void rs_on_retry_timer(uv_timer_t *t) {
    wh_rserver *s = t->data;
    if (!s->up || rs_closed(s)) return;
    rs_migrate_now(s);
    rs_register_now(s);
    rs_flush_acks(s);
    rs_pump(s);
    if (rs_stopping(s)) rs_stop_step(s);
}
