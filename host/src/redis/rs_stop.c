/* rs_stop.c -- the stop sequence: one state (rs_stop_state, server_int.h)
 * and every transition between its values, from quiet to closed; the
 * requests of other threads (quiet, stop) arrive here through the wake-up.
 * I/O thread only.
 *
 *   RUNNING -> QUIET          rs_stop_quiet: wh_rserver_quiet, or TSTP
 *   RUNNING/QUIET -> DRAINING rs_on_wake: wh_rserver_stop (executor done)
 *   DRAINING -> REQUEUEING    rs_stop_step: every outcome recorded, REQUEUE sent
 *   REQUEUEING -> DRAINING    REQUEUE met NOSCRIPT, or the connection was lost
 *   REQUEUEING -> LEAVING     REQUEUE answered: leaving `processes` and the registry
 *   LEAVING -> DRAINING       the connection was lost (REQUEUE is sent again)
 *   LEAVING -> CLOSED         the registry left (or, jobs left in flight, the
 *                             heartbeat deleted)
 *   DRAINING -> CLOSED        Redis unreachable and nothing held: at once
 *   DRAINING.. -> CLOSED      t_final: Redis away for STOP_DEADLINE_MS */
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "core/log.h"
#include "redis/keys.h"
#include "redis/server_int.h"

/* ==== closing ============================================================= */

static void close_handle(uv_handle_t *h) {
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

static void close_all(wh_rserver *s) {
    s->stop = RS_CLOSED;
    if (s->cmd.ac) redisAsyncFree(s->cmd.ac);
    for (size_t i = 0; i < s->nqueues; i++)
        if (s->blockers[i].ac) redisAsyncFree(s->blockers[i].ac);
    close_handle((uv_handle_t *)&s->wake);
    close_handle((uv_handle_t *)&s->t_heartbeat);
    close_handle((uv_handle_t *)&s->t_scheduler);
    close_handle((uv_handle_t *)&s->t_reaper);
    close_handle((uv_handle_t *)&s->t_watchdog);
    close_handle((uv_handle_t *)&s->t_reconnect);
    close_handle((uv_handle_t *)&s->t_final);
    close_handle((uv_handle_t *)&s->t_reconcile);
    close_handle((uv_handle_t *)&s->t_flush);
    close_handle((uv_handle_t *)&s->t_signals);
    close_handle((uv_handle_t *)&s->t_retry);
}

static void on_deregistered(wh_rserver *s, conn *c, redisReply *r, void *data) {
    (void)c;
    (void)data;
    (void)r;
    close_all(s);
}

static void on_requeued(wh_rserver *s, conn *c, redisReply *r, void *data) {
    (void)c;
    (void)data;
    if (r == NULL) return;
    if (rs_noscript(s, r)) {
        s->stop = RS_DRAINING; /* loaded again: the next step sends it again */
        rs_stop_step(s);
        return;
    }
    long long left = -1; /* unknown: the script failed */
    if (!rs_reply_error(s, r, "putting jobs back") && r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
        s->requeued = (size_t)r->element[0]->integer;
        left = r->element[1]->integer;
        if (s->requeued)
            wh_log(WH_LOG_INFO, NULL, NULL, "put %zu unfinished job%s back on %s queue%s", s->requeued,
                   s->requeued == 1 ? "" : "s", s->requeued == 1 ? "its" : "their", s->requeued == 1 ? "" : "s");
    }
    /* leave the registry: gone from the Web UI at once */
    s->stop = RS_LEAVING;
    argv_b a;
    rs_av_init(&a);
    rs_av_adds(&a, "SREM");
    rs_av_addf(&a, "%s%s", s->ns, WH_KEY_PROCESSES);
    rs_av_adds(&a, s->identity);
    rs_send_b(&s->cmd, NULL, NULL, &a);
    rs_av_init(&a);
    rs_av_adds(&a, "DEL");
    rs_av_addf(&a, "%s%s", s->ns, s->identity);
    rs_av_addf(&a, "%s%s:workers", s->ns, s->identity);
    rs_av_addf(&a, "%s%s:work", s->ns, s->identity);
    if (left == 0) rs_av_adds(&a, s->queues_of_key);
    rs_send_b(&s->cmd, left == 0 ? NULL : on_deregistered, NULL, &a);
    if (left != 0) {
        /* jobs stay in flight (a queue key of another type, or the script
         * failed): stay in the registry with the set of queues, so that the
         * next reaper pass (the heartbeat is gone) takes them back */
        wh_log(WH_LOG_ERROR, NULL, NULL, "%s in-flight job%s could not go back to %s queue%s; another host's reaper "
               "takes %s back once %s queue key%s a list", left > 0 ? "some" : "the", left == 1 ? "" : "s",
               left == 1 ? "its" : "their", left == 1 ? "" : "s", left == 1 ? "it" : "them",
               left == 1 ? "its" : "their", left == 1 ? " is" : "s are");
        return;
    }
    rs_av_init(&a);
    rs_av_adds(&a, "SREM");
    rs_av_addf(&a, "%s%s", s->ns, WH_KEY_REGISTRY);
    rs_av_adds(&a, s->identity);
    rs_send_b(&s->cmd, on_deregistered, NULL, &a);
}

/* ==== transitions ========================================================= */

void rs_stop_quiet(wh_rserver *s) {
    if (s->stop < RS_QUIET) s->stop = RS_QUIET;
}

void rs_stop_conn_lost(wh_rserver *s) {
    if (s->stop == RS_REQUEUEING || s->stop == RS_LEAVING) s->stop = RS_DRAINING;
}

static size_t held_count(const wh_rserver *s) {
    size_t n = 0;
    for (const held *h = s->held.next; h != &s->held; h = h->next) n++;
    return n;
}

/* Redis is unreachable and this process holds nothing: no outcome to
 * record, no fetched job to put back. Waiting for Redis would change
 * nothing this process knows of; anything a fetch whose reply was lost may
 * have moved into its in-flight lists is recovered by another host's reaper
 * (the heartbeat expires). */
static void leave_unreachable(wh_rserver *s) {
    bool unsure = s->reconcile_wanted || s->ndrops;
    wh_log(WH_LOG_INFO, NULL, NULL, "redis: %s unreachable while stopping and nothing was held: stopping now%s",
           s->uri_shown, unsure ? " (jobs a fetch whose reply was lost may have moved into this process's in-flight "
                                  "lists are recovered by another host's reaper)" : "");
    close_all(s);
}

/* Moves the stop on as far as it can now: once every outcome is recorded,
 * unfinished jobs back (REQUEUE), then leave (on_requeued). */
void rs_stop_step(wh_rserver *s) {
    if (s->stop != RS_DRAINING) return; /* not stopping, closed, or a reply is awaited */
    if (!s->up) {
        if (s->held.next == &s->held) leave_unreachable(s);
        return; /* held entries: Redis may come back before t_final */
    }
    if (s->ack_batches) return;
    pthread_mutex_lock(&s->lock);
    bool more = s->acks != NULL;
    pthread_mutex_unlock(&s->lock);
    if (more) {
        rs_flush_acks(s);
        return;
    }
    rs_send_kills(s); /* no blocked BLMOVE may take a job after this */
    argv_b a;
    rs_av_pairs(s, &a, S_REQUEUE);
    if (rs_send_b(&s->cmd, on_requeued, NULL, &a)) s->stop = RS_REQUEUEING;
}

static void on_final_deadline(uv_timer_t *t) {
    wh_rserver *s = t->data;
    if (rs_closed(s)) return;
    size_t n = held_count(s);
    if (n)
        wh_log(WH_LOG_WARN, NULL, NULL, "redis unreachable while stopping: outcomes not recorded; the %zu job%s "
               "this process fetched stay%s in flight and will be recovered by another host's reaper", n,
               n == 1 ? "" : "s", n == 1 ? "s" : "");
    else
        wh_log(WH_LOG_WARN, NULL, NULL, "redis unreachable while stopping: nothing was held; stopping without "
               "leaving the registry (another host's reaper removes this process)");
    close_all(s);
}

/* ==== requests from other threads ========================================== */

void rs_on_wake(uv_async_t *h) {
    wh_rserver *s = h->data;
    pthread_mutex_lock(&s->lock);
    bool q = s->want_quiet, st = s->want_stop;
    pthread_mutex_unlock(&s->lock);
    if (q && s->stop < RS_QUIET) {
        s->stop = RS_QUIET;
        for (size_t i = 0; i < s->nqueues; i++) rs_conn_drop(&s->blockers[i]); /* stop blocking fetches */
    }
    if (st && s->stop < RS_DRAINING) {
        s->stop = RS_DRAINING;
        uv_timer_stop(&s->t_scheduler);
        uv_timer_start(&s->t_final, on_final_deadline, STOP_DEADLINE_MS, 0); /* reconnects go on meanwhile */
    }
    rs_flush_acks(s);
    if (rs_stopping(s)) rs_stop_step(s);
}
