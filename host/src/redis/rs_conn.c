/* rs_conn.c -- the connections to Redis: connect, AUTH and SELECT, CLIENT
 * INFO of the blocking connections, reconnect with backoff, the half-open
 * link watchdog, CLIENT KILL of dropped blockers, and SCRIPT LOAD. I/O thread
 * only. See server_int.h. */
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/mem.h"
#include "redis/uvlink.h"
#include "redis/server_int.h"

/* Remembers a blocking connection that is going away, to kill it by id. */
static void note_dropped(wh_rserver *s, conn *c) {
    if (c == &s->cmd || c->client_id == 0) return;
    s->drops = wh_xrealloc(s->drops, (s->ndrops + 1) * sizeof *s->drops);
    s->drops[s->ndrops].id = c->client_id;
    snprintf(s->drops[s->ndrops].addr, sizeof s->drops[s->ndrops].addr, "%s", c->client_addr);
    s->ndrops++;
    c->client_id = 0;
}

/* Kills every dropped blocking connection, on the command connection: what
 * is sent after this there runs when none of them can move a job. */
void rs_send_kills(wh_rserver *s) {
    if (!s->up) return;
    for (size_t i = 0; i < s->ndrops; i++) {
        argv_b a;
        rs_av_init(&a);
        rs_av_adds(&a, "CLIENT");
        rs_av_adds(&a, "KILL");
        rs_av_adds(&a, "ID");
        rs_av_addf(&a, "%lld", s->drops[i].id);
        if (s->drops[i].addr[0]) {
            rs_av_adds(&a, "ADDR");
            rs_av_adds(&a, s->drops[i].addr);
        }
        rs_send_b(&s->cmd, NULL, NULL, &a); /* 0 when it is gone already; an error when not allowed (ACL) */
    }
    s->ndrops = 0;
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
    conn *c = ac->data;
    if (c == NULL) return;
    wh_rserver *s = c->s;
    c->ac = NULL;
    c->ready = false;
    c->pending = 0;
    c->blocking = false;
    note_dropped(s, c);
    if (c == &s->cmd) {
        s->up = false;
        /* checked again on the next connection */
        s->layout_ok = s->migrating = false;
        s->registered = s->registering = false;
        /* pending callbacks have already run with NULL replies: unanswered
         * outcome batches are back in the queue */
        s->fetches = s->asked = 0;
        s->due_in_flight = 0;
        s->ack_batches = 0;
        rs_stop_conn_lost(s); /* an unanswered REQUEUE is sent again */
        s->reconcile_in_flight = false;
        memset(s->sha, 0, sizeof s->sha);
        if (!rs_closed(s))
            wh_log(WH_LOG_WARN, NULL, NULL, "redis: lost the connection to %s%s%s", s->uri_shown,
                   status == REDIS_OK ? "" : ": ", status == REDIS_OK ? "" : ac->errstr);
        rs_schedule_reconnect(s);
    }
}

static void on_connect(const redisAsyncContext *ac, int status) {
    conn *c = ac->data;
    if (status == REDIS_OK || c == NULL) return;
    wh_rserver *s = c->s;
    if (c == &s->cmd && !s->logged_down) {
        wh_log(WH_LOG_WARN, NULL, NULL, "redis: cannot connect to %s: %s (retrying)", s->uri_shown, ac->errstr);
        s->logged_down = true;
    }
    c->ac = NULL; /* hiredis frees the context after this callback */
    c->ready = false;
    c->pending = 0;
    c->blocking = false;
    if (c == &s->cmd) rs_schedule_reconnect(s);
}


static void became_ready(wh_rserver *s);

static void on_select(wh_rserver *s, conn *c, redisReply *r, void *data) {
    (void)data;
    if (c->auth_failed) return; /* disconnecting: a refused login is a failed connection */
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        if (r) rs_failed(s, &s->bo_auth, WH_LOG_ERROR, "redis: %s: %s", s->uri_shown, r->str);
        if (c->ac) redisAsyncDisconnect(c->ac);
        return;
    }
    if (c == &s->cmd) {
        c->ready = true;
        became_ready(s);
    }
    /* a blocker is ready once its CLIENT INFO is back */
}

/* "id=7 addr=127.0.0.1:5678 laddr=... fd=8 ..." -> id and addr */
static void parse_client_info(conn *c, const char *info) {
    const char *id = strstr(info, "id="), *addr = strstr(info, " addr=");
    c->client_id = id == info ? strtoll(id + 3, NULL, 10) : 0;
    c->client_addr[0] = '\0';
    if (addr) {
        addr += 6;
        size_t n = strcspn(addr, " \n");
        if (n < sizeof c->client_addr) {
            memcpy(c->client_addr, addr, n);
            c->client_addr[n] = '\0';
        }
    }
}

static void on_client_info(wh_rserver *s, conn *c, redisReply *r, void *data) {
    (void)data;
    if (r == NULL || c->ac == NULL || c->auth_failed) return;
    if (r->type == REDIS_REPLY_STRING) parse_client_info(c, r->str);
    else if (r->type == REDIS_REPLY_INTEGER) c->client_id = r->integer; /* CLIENT ID (Redis < 6.2) */
    else if (r->type == REDIS_REPLY_ERROR && strstr(r->str, "nknown subcommand") && c->ac) {
        argv_b a; /* Redis before 6.2: no CLIENT INFO */
        rs_av_init(&a);
        rs_av_adds(&a, "CLIENT");
        rs_av_adds(&a, "ID");
        rs_send_b(c, on_client_info, NULL, &a);
        return;
    }
    c->ready = true;
    rs_pump(s);
}

static void on_auth(wh_rserver *s, conn *c, redisReply *r, void *data) {
    (void)data;
    if (r && r->type == REDIS_REPLY_ERROR) {
        /* the commands queued behind AUTH (SELECT, which the default user
         * may accept) must not make this connection ready */
        c->auth_failed = true;
        rs_failed(s, &s->bo_auth, WH_LOG_ERROR, "redis: authentication to %s failed: %s", s->uri_shown, r->str);
        if (c->ac) redisAsyncDisconnect(c->ac);
    }
}

void rs_conn_open(wh_rserver *s, conn *c) {
    if (c->ac) return;
    redisAsyncContext *ac = s->uri.path ? redisAsyncConnectUnix(s->uri.path)
                                        : redisAsyncConnect(s->uri.host, s->uri.port);
    if (ac == NULL) return;
    if (ac->err || wh_uvlink_attach(ac, &s->loop) != REDIS_OK) {
        if (c == &s->cmd && !s->logged_down) {
            wh_log(WH_LOG_WARN, NULL, NULL, "redis: cannot connect to %s: %s (retrying)", s->uri_shown,
                   ac->err ? ac->errstr : "cannot watch the socket");
            s->logged_down = true;
        }
        redisAsyncFree(ac);
        if (c == &s->cmd) rs_schedule_reconnect(s);
        return;
    }
    ac->data = c;
    c->ac = ac;
    c->ready = false;
    c->pending = 0;
    c->blocking = false;
    c->auth_failed = false;
    c->client_id = 0;
    c->last_io = wh_clock_monotonic();
    if (!s->uri.path) redisEnableKeepAlive(&ac->c);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    /* queued before the connection completes; hiredis sends them in order */
    argv_b a;
    if (s->uri.password) {
        rs_av_init(&a);
        rs_av_adds(&a, "AUTH");
        if (s->uri.user) rs_av_adds(&a, s->uri.user);
        rs_av_adds(&a, s->uri.password);
        rs_send_b(c, on_auth, NULL, &a);
    }
    rs_av_init(&a);
    rs_av_adds(&a, "SELECT");
    rs_av_addf(&a, "%d", s->uri.db);
    rs_send_b(c, on_select, NULL, &a);
    if (c != &s->cmd) {
        rs_av_init(&a);
        rs_av_adds(&a, "CLIENT");
        rs_av_adds(&a, "INFO");
        rs_send_b(c, on_client_info, NULL, &a);
    }
}

/* Drops a connection now (its pending callbacks run with NULL replies, then
 * on_disconnect). Not from inside one of its own reply callbacks. */
void rs_conn_drop(conn *c) {
    redisAsyncContext *ac = c->ac;
    if (ac == NULL) return;
    redisAsyncFree(ac);
    if (c->ac == ac) { /* never connected: no disconnect callback */
        c->ac = NULL;
        c->ready = false;
        c->pending = 0;
        c->blocking = false;
        note_dropped(c->s, c);
    }
}

static void on_reconnect_timer(uv_timer_t *t) {
    wh_rserver *s = t->data;
    if (rs_stopping(s)) rs_stop_step(s); /* down while stopping, nothing held: no need to wait */
    if (rs_closed(s)) return;
    rs_conn_open(s, &s->cmd);
}

void rs_schedule_reconnect(wh_rserver *s) {
    if (rs_closed(s) || uv_is_closing((uv_handle_t *)&s->t_reconnect)) return;
    s->backoff = s->backoff == 0 ? BACKOFF_MIN_S : fmin(s->backoff * 2, BACKOFF_MAX_S);
    uv_timer_start(&s->t_reconnect, on_reconnect_timer, (uint64_t)(s->backoff * 1000), 0);
}

/* The half-open socket watchdog: hiredis 0.14's async API has no command
 * timeouts, so a connection whose oldest command has waited too long (a
 * blocked BLMOVE gets its own timeout plus a margin) is dropped and
 * reopened (Sidekiq #3195 is what happens without this). */
void rs_on_watchdog(uv_timer_t *t) {
    wh_rserver *s = t->data;
    double now = wh_clock_monotonic();
    conn *all[1 + RS_MAX_QUEUES];
    size_t n = 0;
    all[n++] = &s->cmd;
    for (size_t i = 0; i < s->nqueues && n < 1 + RS_MAX_QUEUES; i++) all[n++] = &s->blockers[i];
    for (size_t i = 0; i < n; i++) {
        conn *c = all[i];
        if (c->ac == NULL || c->pending == 0) continue;
        double limit = c->blocking ? BLOCK_TIMEOUT_S + 5.0 : COMMAND_DEADLINE_S;
        if (!c->ready) limit = 5.0; /* connecting */
        if (now - c->last_io > limit) {
            wh_log(WH_LOG_WARN, NULL, NULL, "redis: no answer from %s for %.0f s; dropping the connection",
                   s->uri_shown, now - c->last_io);
            bool was_cmd_up = c == &s->cmd && s->up;
            rs_conn_drop(c);
            if (c == &s->cmd && !was_cmd_up) rs_schedule_reconnect(s);
        }
    }
    /* blockers reconnect lazily: pump opens them when needed */
    rs_pump(s);
}


static void on_script_loaded(wh_rserver *s, conn *c, redisReply *r, void *data) {
    (void)c;
    int which = (int)(intptr_t)data;
    if (r && r->type == REDIS_REPLY_STRING && r->len == 40) memcpy(s->sha[which], r->str, 41);
}

void rs_load_scripts(wh_rserver *s) {
    for (int i = 0; i < S_COUNT; i++) {
        argv_b a;
        rs_av_init(&a);
        rs_av_adds(&a, "SCRIPT");
        rs_av_adds(&a, "LOAD");
        rs_av_adds(&a, rs_script_src(i));
        rs_send_b(&s->cmd, on_script_loaded, (void *)(intptr_t)i, &a);
    }
}

static void became_ready(wh_rserver *s) {
    s->up = true;
    s->backoff = 0;
    if (s->logged_down) wh_log(WH_LOG_INFO, NULL, NULL, "redis: connected to %s", s->uri_shown);
    else wh_log(WH_LOG_INFO, NULL, NULL, "redis: connected to %s as %s", s->uri_shown, s->identity);
    s->logged_down = false;
    rs_load_scripts(s);
    /* the layout, then the registry (each confirmed), then fetching and the
     * outcomes kept while Redis was away: on_migrated, on_registered */
    rs_migrate_now(s);
    rs_heartbeat(s);
    s->idle = false;
}

