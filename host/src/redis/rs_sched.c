/* rs_sched.c -- the scheduler: due jobs of `schedule` and `retry` (by
 * Redis's clock) moved to their queues, enqueued_at set. I/O thread only.
 * See server_int.h. */
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/mem.h"
#include "json/jtop.h"
#include "redis/keys.h"
#include "redis/server_int.h"

/* ==== the scheduler: schedule and retry -> their queues ==================== */

/* An error reply of a scheduler step (after NOSCRIPT the next tick tries again). */
static bool sched_error(wh_rserver *s, redisReply *r, const char *what) {
    if (r == NULL) return true;
    if (r->type != REDIS_REPLY_ERROR) return false;
    if (!rs_noscript(s, r)) rs_failed(s, &s->bo_sched, WH_LOG_ERROR, "redis: %s: %s", what, r->str);
    return true;
}

static void on_moved(wh_rserver *s, conn *c, redisReply *r, void *data) {
    (void)c;
    const char *zset = data;
    if (s->due_in_flight) s->due_in_flight--;
    if (sched_error(s, r, "moving due jobs")) return;
    wh_backoff_ok(&s->bo_sched);
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[1]->type == REDIS_REPLY_INTEGER &&
        r->element[1]->integer > 0)
        wh_log(WH_LOG_ERROR, NULL, NULL, "moved %lld due job%s from %s to the dead set: not a job, or its queue key "
               "holds another type than a list", r->element[1]->integer, r->element[1]->integer == 1 ? "" : "s",
               zset);
}

static void on_due(wh_rserver *s, conn *c, redisReply *r, void *data) {
    (void)c;
    const char *zset = data; /* static key name */
    if (sched_error(s, r, "reading due jobs") || r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
        if (s->due_in_flight) s->due_in_flight--;
        return;
    }
    double now = wh_clock_wall(); /* enqueued_at: the host's clock, as Sidekiq's scheduler writes it */
    argv_b a;
    rs_av_init(&a);
    rs_av_script(s, &a, S_MOVE_DUE);
    rs_av_adds(&a, "3");
    rs_av_addf(&a, "%s%s", s->ns, zset);
    rs_av_addf(&a, "%s%s", s->ns, WH_KEY_QUEUES);
    rs_av_addf(&a, "%s%s", s->ns, WH_KEY_DEAD);
    rs_av_addf(&a, "%s%s", s->ns, WH_KEY_QUEUE_PREFIX);
    /* no tree: one pass over each payload sets enqueued_at and reads queue
     * (json/jtop.h), every other byte kept; memory does not grow with the
     * payload beyond its copy */
    wh_buf nowb = WH_BUF_INIT;
    wh_json_write_float(&nowb, now, NULL);
    for (size_t i = 0; i < r->elements; i++) {
        redisReply *m = r->element[i];
        rs_av_add(&a, m->str, m->len);
        wh_buf out = WH_BUF_INIT, q = WH_BUF_INIT;
        int rc = wh_jtop_rewrite(m->str, m->len, "enqueued_at", nowb.data, nowb.len, &out, NULL);
        if (rc == 0) rc = wh_jtop_string(m->str, m->len, "queue", &q, NULL);
        if (rc >= 0) {
            rs_av_take(&a, &out);
            if (q.len) rs_av_take(&a, &q);
            else rs_av_adds(&a, "default");
        } else {
            rs_av_adds(&a, "");
            rs_av_adds(&a, ""); /* not a job: to the dead set */
        }
        wh_buf_free(&out);
        wh_buf_free(&q);
    }
    wh_buf_free(&nowb);
    if (!rs_send_b(&s->cmd, on_moved, data, &a) && s->due_in_flight) s->due_in_flight--;
}

/* Every tick looks at both sets (one round trip each, pipelined); a set
 * with more due than one batch is moved a batch per tick. */
void rs_on_scheduler(uv_timer_t *t) {
    wh_rserver *s = t->data;
    if (!s->up || !s->layout_ok || s->due_in_flight || rs_quiet(s) || rs_stopping(s)) return;
    if (!wh_backoff_ready(&s->bo_sched, wh_clock_monotonic())) return; /* the next tick looks again */
    static const char *const sets[] = {WH_KEY_RETRY, WH_KEY_SCHEDULE};
    for (int k = 0; k < 2; k++) {
        argv_b a;
        rs_av_init(&a);
        rs_av_script(s, &a, S_DUE); /* due by Redis's clock, not this host's */
        rs_av_adds(&a, "1");
        rs_av_addf(&a, "%s%s", s->ns, sets[k]);
        rs_av_addf(&a, "%d", DUE_BATCH);
        if (rs_send_b(&s->cmd, on_due, (void *)sets[k], &a)) s->due_in_flight++;
    }
}

