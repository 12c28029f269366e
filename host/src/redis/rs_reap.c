/* rs_reap.c -- the reaper: under wh:reaper-lock, the in-flight jobs of
 * dead processes in the registry go back to their queues (REAP), a process
 * on this machine proved gone by /proc at once. I/O thread only. See
 * server_int.h. */
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "core/log.h"
#include "core/mem.h"
#include "core/proc.h"
#include "redis/keys.h"
#include "redis/server_int.h"

/* ==== the reaper ========================================================== */

static const char release_lock[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/* The lock is held only for one pass, so a host that dies while holding it
 * blocks the next pass for at most REAPER_LOCK_MS. */
static void reaper_pass_done(wh_rserver *s) {
    argv_b a;
    rs_av_init(&a);
    rs_av_adds(&a, "EVAL");
    rs_av_adds(&a, release_lock);
    rs_av_adds(&a, "1");
    rs_av_addf(&a, "%s%s", s->ns, WH_KEY_REAPER_LOCK);
    rs_av_adds(&a, s->identity);
    rs_send_b(&s->cmd, NULL, NULL, &a);
}

static void on_reaped(wh_rserver *s, conn *c, redisReply *r, void *data) {
    (void)c;
    char *id = data;
    if (!rs_reply_error(s, r, "recovering jobs") && r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
        long long got = r->element[0]->integer, left = r->element[1]->integer;
        wh_log(WH_LOG_WARN, NULL, NULL, "recovered %lld in-flight job%s of dead process %s", got,
               got == 1 ? "" : "s", id);
        if (left)
            wh_log(WH_LOG_ERROR, NULL, NULL, "%lld in-flight job%s of dead process %s stay%s where %s: %s queue "
                   "key holds another type than a list (fix the key; the next reaper pass takes them back)", left,
                   left == 1 ? "" : "s", id, left == 1 ? "s" : "", left == 1 ? "it is" : "they are",
                   left == 1 ? "its" : "their");
    }
    wh_free(id);
    if (r && s->reap_pending && --s->reap_pending == 0) reaper_pass_done(s);
}

static void reap(wh_rserver *s, const char *id, bool force) {
    argv_b a;
    rs_av_init(&a);
    rs_av_script(s, &a, S_REAP);
    rs_av_adds(&a, "4");
    rs_av_addf(&a, "%s%s", s->ns, WH_KEY_REGISTRY);
    rs_av_addf(&a, "%s" WH_KEY_QUEUES_OF_PREFIX "%s", s->ns, id);
    rs_av_addf(&a, "%s%s", s->ns, WH_KEY_DEAD);
    rs_av_addf(&a, "%s%s", s->ns, id);
    rs_av_adds(&a, id);
    rs_av_addf(&a, "%s%s", s->ns, WH_KEY_INFLIGHT_PREFIX);
    rs_av_addf(&a, "%s%s", s->ns, WH_KEY_QUEUE_PREFIX);
    rs_av_addf(&a, "%s%s", s->ns, WH_KEY_RECOVERED_PREFIX);
    rs_av_addf(&a, "%d", WH_RECOVERY_WINDOW_S);
    rs_av_addf(&a, "%d", WH_RECOVERY_MAX);
    rs_av_adds(&a, force ? "1" : "0");
    rs_send_b(&s->cmd, on_reaped, wh_xstrdup(id), &a);
}

/* A process on this machine is gone for sure when, in the same boot and the
 * same pid namespace, its pid is free or belongs to a process that started
 * at another time. Hostname and pid alone prove nothing (containers reuse
 * pid 1; hostnames repeat). */
static bool gone_on_this_machine(const char *info) {
    wh_json_doc *doc = info ? wh_json_parse(info, strlen(info), NULL, NULL) : NULL;
    if (doc == NULL) return false;
    const wh_json *r = wh_json_doc_root(doc);
    const wh_json *boot = wh_json_getz(r, "wh_boot_id"), *ns = wh_json_getz(r, "wh_pidns");
    const wh_json *pid = wh_json_getz(r, "pid"), *ticks = wh_json_getz(r, "wh_start_ticks");
    bool gone = false;
    char my_boot[64], my_ns[64];
    wh_proc_boot_id(my_boot, sizeof my_boot);
    wh_proc_pid_namespace(my_ns, sizeof my_ns);
    if (boot && ns && pid && ticks && boot->type == WH_JSON_STRING && ns->type == WH_JSON_STRING &&
        pid->type == WH_JSON_INT && ticks->type == WH_JSON_INT && my_boot[0] && my_ns[0] &&
        boot->u.str.len == strlen(my_boot) && memcmp(boot->u.str.s, my_boot, boot->u.str.len) == 0 &&
        ns->u.str.len == strlen(my_ns) && memcmp(ns->u.str.s, my_ns, ns->u.str.len) == 0) {
        unsigned long long now_ticks = wh_proc_start_ticks((long)pid->u.i);
        gone = now_ticks == 0 || now_ticks != (unsigned long long)ticks->u.i;
    }
    wh_json_doc_free(doc);
    return gone;
}

static void on_peer_info(wh_rserver *s, conn *c, redisReply *r, void *data) {
    (void)c;
    char *id = data;
    const char *info = (r && r->type == REDIS_REPLY_STRING) ? r->str : NULL;
    bool gone = gone_on_this_machine(info);
    wh_log(WH_LOG_DEBUG, NULL, NULL, "reaper: %s %s", id,
           gone ? "is gone (same machine, its pid is free or reused)" : "is checked by its heartbeat");
    if (r) reap(s, id, gone); /* without force, the script keeps live ones */
    wh_free(id);
}

static void on_registry(wh_rserver *s, conn *c, redisReply *r, void *data) {
    (void)c;
    (void)data;
    if (rs_reply_error(s, r, "reading the registry") || r->type != REDIS_REPLY_ARRAY) return;
    s->reap_pending = 0;
    for (size_t i = 0; i < r->elements; i++)
        if (strcmp(r->element[i]->str, s->identity) != 0) s->reap_pending++;
    if (s->reap_pending == 0) reaper_pass_done(s);
    for (size_t i = 0; i < r->elements; i++) {
        const char *id = r->element[i]->str;
        if (strcmp(id, s->identity) == 0) continue;
        argv_b a;
        rs_av_init(&a);
        rs_av_adds(&a, "HGET");
        rs_av_addf(&a, "%s%s", s->ns, id);
        rs_av_adds(&a, "info");
        rs_send_b(&s->cmd, on_peer_info, wh_xstrdup(id), &a);
    }
}

static void on_reaper_lock(wh_rserver *s, conn *c, redisReply *r, void *data) {
    (void)c;
    (void)data;
    if (r && r->type == REDIS_REPLY_ERROR) wh_log(WH_LOG_ERROR, NULL, NULL, "redis: reaper lock: %s", r->str);
    if (r == NULL || r->type != REDIS_REPLY_STATUS) return; /* another host holds it */
    wh_log(WH_LOG_DEBUG, NULL, NULL, "reaper: checking the registry for dead processes");
    argv_b a;
    rs_av_init(&a);
    rs_av_adds(&a, "SMEMBERS");
    rs_av_addf(&a, "%s%s", s->ns, WH_KEY_REGISTRY);
    rs_send_b(&s->cmd, on_registry, NULL, &a);
}

void rs_reaper(wh_rserver *s) {
    if (!s->up || !s->layout_ok || rs_stopping(s)) return; /* never with another layout's key names */
    argv_b a;
    rs_av_init(&a);
    rs_av_adds(&a, "SET");
    rs_av_addf(&a, "%s%s", s->ns, WH_KEY_REAPER_LOCK);
    rs_av_adds(&a, s->identity);
    rs_av_adds(&a, "NX");
    rs_av_adds(&a, "PX");
    rs_av_addf(&a, "%d", REAPER_LOCK_MS);
    rs_send_b(&s->cmd, on_reaper_lock, NULL, &a);
}

void rs_on_reaper(uv_timer_t *t) { rs_reaper(t->data); }

