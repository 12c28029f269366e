/* server.c -- see server.h.
 *
 * Everything below the "I/O thread" banner runs on the I/O thread only; the
 * few entry points other threads use (outcome, quiet, stop) hand their work
 * over through the `lock`-protected fields and uv_async_send. */
#include "redis/server.h"

#include <errno.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <math.h>
#include <stddef.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "app/host.h"
#include "app/outcome.h"
#include "app/runner.h"
#include "core/backoff.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/jid.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/sigpipe.h"
#include "json/jtop.h"
#include "redis/keys.h"
#include "redis/scripts.h"
#include "redis/uri.h"
#include "redis/uvlink.h"

/* ==== tunables ============================================================ */

#define HEARTBEAT_S 5.0
#define SCHEDULER_MS 50          /* due jobs are on their queue within ~this */
#define REAPER_S 60.0
#define REAPER_LOCK_MS 30000
#define BLOCK_TIMEOUT_S 2        /* BLMOVE timeout: the server-side bound */
#define WATCHDOG_MS 500
#define SIGNALS_MS 1000         /* <identity>-signals is read this often */
#define COMMAND_DEADLINE_S 10.0  /* a command unanswered this long: the link is dead */
#define BACKOFF_MIN_S 0.1
#define BACKOFF_MAX_S 5.0
#define FAILURE_LOG_S 10.0       /* a failure that repeats is logged once per this, with a count */
/* Prefetch (jobs fetched ahead: in flight in Redis, queued here) adapts to
 * the job rate: enough for PREFETCH_WORK_S of work at the rate of the last
 * PREFETCH_WINDOW_S, between MIN and MAX per worker thread. Fast jobs get
 * big batches (fewer round trips per job); slow jobs are not hoarded (other
 * hosts can take them). */
#define PREFETCH_MIN_PER_THREAD 2
#define PREFETCH_MAX_PER_THREAD 64
#define PREFETCH_WORK_S 0.010
#define PREFETCH_WINDOW_S 0.1
#define FLUSH_MS 1               /* see on_flush_timer */
#define FETCHES_IN_FLIGHT 2     /* a batch asked for while the last is on its way */
#define FETCH_MAX 1000          /* jobs per fetch script (Lua's unpack limit is 8000) */
#define ACK_BATCH 200
#define ACK_BATCHES_IN_FLIGHT 4   /* pipelined: replies come back in order */
#define DUE_BATCH 100

/* ==== data ================================================================ */

enum { S_MIGRATE, S_REGISTER, S_FETCH, S_ACK, S_DUE, S_MOVE_DUE, S_REQUEUE, S_REAP, S_RECONCILE, S_COUNT };

/* One entry this process holds in an in-flight list: fetched and handed to
 * the executor (or about to be dead-lettered), its outcome not yet recorded.
 * Created and freed on the I/O thread only; the job carries a pointer to it
 * (job->source_ref) to the worker thread and back in its outcome. The set of
 * these is what reconcile() compares the in-flight lists with. */
typedef struct held held;

/* The outcome of a held entry, filled in by the worker thread that ran it
 * (no allocation per outcome: it lives in the entry, see held_of). */
typedef struct ack {
    struct ack *next;
    char kind;     /* o, r, d, x, n, k (see scripts.h) */
    char *newp;    /* retry or dead payload, or NULL */
    size_t newp_len;
    double delay;  /* retry: seconds from now (Redis's clock) */
} ack;

struct held {
    struct held *prev, *next;
    ack a;
    wh_job job;    /* the job handed to the executor (wh_job_raw_init: no allocation; the
                    * worker thread that parses it frees its tree with the outcome) */
    size_t qi;     /* index of the queue it was fetched from */
    size_t len;
    char raw[];    /* the exact bytes fetched */
};

/* The entry an outcome lives in. */
static held *held_of(ack *a) { return (held *)(void *)((char *)a - offsetof(held, a)); }

typedef struct conn conn;
typedef void (*reply_fn)(wh_rserver *s, conn *c, redisReply *r, void *data);

struct conn {
    wh_rserver *s;
    redisAsyncContext *ac; /* NULL while down */
    bool ready;            /* connected, authenticated, db selected */
    size_t pending;        /* commands sent, not answered */
    double last_io;        /* monotonic time of the last send or reply */
    int queue;             /* blocker: index of its queue; -1 for the command connection */
    bool blocking;         /* a BLMOVE is outstanding */
    bool auth_failed;      /* AUTH was refused: this connection never becomes ready */
    long long client_id;   /* blocker: its CLIENT ID in Redis, 0 if unknown */
    char client_addr[64];  /* blocker: its address as Redis sees it (CLIENT INFO addr=) */
};

/* A blocking connection we dropped. Redis may not have seen it close yet
 * (a proxy, a half-open link) and its BLMOVE may still take a job into our
 * in-flight list where nobody reads the reply: it is killed by id (and
 * address, so an id reused after a Redis restart is not hit) on the command
 * connection before anything relies on the in-flight lists being still. */
typedef struct dropped {
    long long id;
    char addr[64];
} dropped;

typedef struct req {
    conn *c;
    reply_fn fn;
    void *data;
} req;

struct wh_rserver {
    const wh_config *cfg;
    wh_host *host;        /* borrowed, or NULL */
    uv_work_t reload_req; /* a RELOAD signal: wh_host_reload on libuv's thread pool */
    bool reload_running, reload_again;
    wh_async *exec;
    wh_redis_uri uri;
    char uri_shown[256];
    char *ns;        /* "ns:" or "" */
    char identity[320];
    char *queues_of_key;  /* <ns>wh:inflight-queues:<identity> */
    char *info_json; /* the heartbeat's info, without the generation fields and the closing brace */

    char **queues;   /* fetched queues, in configured order */
    char **queue_keys;    /* "<ns>queue:<q>" of each */
    char **inflight_keys; /* this process's in-flight list of each */
    int *weights;
    size_t nqueues;
    bool strict;

    /* shared with other threads, under lock */
    pthread_mutex_t lock;
    ack *acks, *acks_tail;
    size_t nacks_in;     /* outcomes handed over since the last look */
    size_t wake_after;   /* workers wake the I/O thread every this many outcomes */
    bool lazy_wake;      /* the I/O thread's copy: wake_after > 1 */
    bool want_quiet, want_stop;
    bool finished;       /* the I/O thread is done */
    pthread_cond_t done;

    /* the I/O thread's own */
    uv_loop_t loop;
    uv_thread_t thread;
    bool thread_started;
    uv_async_t wake;
    uv_timer_t t_heartbeat, t_scheduler, t_reaper, t_watchdog, t_reconnect, t_final, t_reconcile, t_flush, t_signals,
        t_retry;
    double retry_at;      /* monotonic: when t_retry fires */
    conn cmd;
    conn *blockers;
    double backoff;
    bool up;              /* the command connection is ready */
    /* what fetching waits for, on every new command connection: the key
     * layout checked (MIGRATE), then this process in the registry with the
     * set of its queues (REGISTER), each confirmed by its reply */
    bool layout_ok, migrating;
    bool registered, registering, ever_registered;
    /* operations that can fail over and over: each waits longer before its
     * next try and logs once per FAILURE_LOG_S (core/backoff.h) */
    wh_backoff bo_layout, bo_register, bo_fetch, bo_ack, bo_sched, bo_reconcile, bo_auth;
    wh_backoff *bo_queue; /* per queue: its key held another type than a list */
    bool quiet, stopping, final_done;
    size_t outstanding;   /* fetched and not yet finished */
    size_t prefetch_max;  /* now: between prefetch_min and prefetch_cap */
    size_t prefetch_min, prefetch_cap;
    double window_start;  /* monotonic: start of the job-rate window */
    size_t window_done;   /* outcomes in the window */
    size_t fetches;       /* fetch scripts sent, not answered */
    size_t asked;         /* jobs those fetches may bring */
    bool idle;            /* the last fetch came back short: blockers wait */
    size_t ack_batches;   /* batches sent, not answered */
    bool requeue_sent;
    char sha[S_COUNT][41];      /* SCRIPT LOADed scripts; "" until loaded */
    int due_in_flight;    /* scheduler requests outstanding */
    held held;            /* sentinel of the list of held entries */
    dropped *drops;       /* blockers to kill */
    size_t ndrops;
    bool reconcile_wanted;   /* a fetch reply may have been lost */
    bool reconcile_in_flight;
    uint64_t rng;
    double started_at;
    size_t requeued;
    bool logged_down;
    size_t reap_pending;  /* peers still being checked in this reaper pass */
};

static void conn_open(wh_rserver *s, conn *c);
static void pump(wh_rserver *s);
static void flush_acks(wh_rserver *s);
static void on_flush_timer(uv_timer_t *t);
static void final_steps(wh_rserver *s);
static void register_now(wh_rserver *s);
static void migrate_now(wh_rserver *s);
static void lost_registration(wh_rserver *s, const char *what);

/* ==== keys ================================================================ */

static char *keydup(const wh_rserver *s, const char *fmt, const char *a, const char *b2) {
    wh_buf b = WH_BUF_INIT;
    wh_buf_puts(&b, s->ns);
    wh_buf_printf(&b, fmt, a, b2 ? b2 : "");
    return wh_buf_steal(&b);
}


/* ==== scripts: EVALSHA once loaded (no script text per call) ============== */


static const char *script_src(int i) {
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

/* argv builder */
typedef struct argv_b {
    const char **v;
    size_t *l;
    int n, cap;
    wh_buf owned; /* numbers formatted here are kept as separate strings */
    char **strs;
    int nstrs;
} argv_b;

static void av_init(argv_b *a) { memset(a, 0, sizeof *a); }

static void av_add(argv_b *a, const char *p, size_t len) {
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 16;
        a->v = wh_xrealloc(a->v, (size_t)a->cap * sizeof *a->v);
        a->l = wh_xrealloc(a->l, (size_t)a->cap * sizeof *a->l);
    }
    a->v[a->n] = p;
    a->l[a->n] = len;
    a->n++;
}

static void av_adds(argv_b *a, const char *p) { av_add(a, p, strlen(p)); }

/* adds an owned copy (freed with the builder) */
static void av_addf(argv_b *a, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    wh_buf b = WH_BUF_INIT;
    wh_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    a->strs = wh_xrealloc(a->strs, (size_t)(a->nstrs + 1) * sizeof *a->strs);
    size_t len = b.len;
    char *p = wh_buf_steal(&b);
    a->strs[a->nstrs++] = p;
    av_add(a, p, len);
}

/* adds the bytes of b, taken over (freed with the builder); b is left empty */
static void av_take(argv_b *a, wh_buf *b) {
    a->strs = wh_xrealloc(a->strs, (size_t)(a->nstrs + 1) * sizeof *a->strs);
    size_t len = b->len;
    char *p = wh_buf_steal(b);
    a->strs[a->nstrs++] = p;
    av_add(a, p, len);
}

static void av_free(argv_b *a) {
    for (int i = 0; i < a->nstrs; i++) wh_free(a->strs[i]);
    wh_free(a->strs);
    wh_free(a->v);
    wh_free(a->l);
}

/* EVALSHA <sha> when loaded, else EVAL <source> */
static void av_script(const wh_rserver *s, argv_b *a, int which) {
    if (s->sha[which][0]) {
        av_adds(a, "EVALSHA");
        av_adds(a, s->sha[which]);
    } else {
        av_adds(a, "EVAL");
        av_adds(a, script_src(which));
    }
}

/* Starts a script call whose KEYS are (in-flight list, its queue) for every
 * queue (REQUEUE, RECONCILE). */
static void av_pairs(const wh_rserver *s, argv_b *a, int which) {
    av_init(a);
    av_script(s, a, which);
    av_addf(a, "%zu", s->nqueues * 2);
    for (size_t i = 0; i < s->nqueues; i++) {
        av_adds(a, s->inflight_keys[i]);
        av_adds(a, s->queue_keys[i]);
    }
}

static bool send_b(conn *c, reply_fn fn, void *data, argv_b *a) {
    bool ok = send_argv(c, fn, data, a->n, a->v, a->l);
    av_free(a);
    return ok;
}

static void load_scripts(wh_rserver *s);

static bool reply_error(wh_rserver *s, redisReply *r, const char *what) {
    if (r == NULL) return true; /* the connection went away; logged there */
    if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
        /* the script cache was flushed: plain EVAL until loaded again */
        memset(s->sha, 0, sizeof s->sha);
        load_scripts(s);
        return true;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        wh_log(WH_LOG_ERROR, NULL, NULL, "redis: %s: %s", what, r->str);
        return true;
    }
    return false;
}

/* True for a NOSCRIPT error reply (the script cache was flushed): the
 * scripts are loaded again and the caller tries again at once. */
static bool noscript(wh_rserver *s, const redisReply *r) {
    if (r == NULL || r->type != REDIS_REPLY_ERROR || strncmp(r->str, "NOSCRIPT", 8) != 0) return false;
    memset(s->sha, 0, sizeof s->sha);
    load_scripts(s);
    return true;
}

static void on_retry_timer(uv_timer_t *t);

/* Makes sure t_retry fires within `wait` seconds. */
static void retry_in(wh_rserver *s, double wait) {
    if (s->final_done || uv_is_closing((uv_handle_t *)&s->t_retry)) return;
    double now = wh_clock_monotonic(), at = now + wait;
    if (uv_is_active((uv_handle_t *)&s->t_retry) && s->retry_at <= at) return;
    s->retry_at = at;
    uv_timer_start(&s->t_retry, on_retry_timer, (uint64_t)(wait * 1000) + 1, 0);
}

/* A failure of an operation gated by b: it waits before its next try (and
 * t_retry wakes us then), and the message is logged unless the same
 * operation was logged less than FAILURE_LOG_S ago; then it counts. */
static void failed(wh_rserver *s, wh_backoff *b, wh_log_level level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
static void failed(wh_rserver *s, wh_backoff *b, wh_log_level level, const char *fmt, ...) {
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
static bool gate_open(wh_rserver *s, const wh_backoff *b) {
    double now = wh_clock_monotonic();
    if (wh_backoff_ready(b, now)) return true;
    retry_in(s, wh_backoff_wait(b, now));
    return false;
}

/* ==== connections ========================================================= */

static void schedule_reconnect(wh_rserver *s);
static void reconcile_soon(wh_rserver *s);

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
static void send_kills(wh_rserver *s) {
    if (!s->up) return;
    for (size_t i = 0; i < s->ndrops; i++) {
        argv_b a;
        av_init(&a);
        av_adds(&a, "CLIENT");
        av_adds(&a, "KILL");
        av_adds(&a, "ID");
        av_addf(&a, "%lld", s->drops[i].id);
        if (s->drops[i].addr[0]) {
            av_adds(&a, "ADDR");
            av_adds(&a, s->drops[i].addr);
        }
        send_b(&s->cmd, NULL, NULL, &a); /* 0 when it is gone already; an error when not allowed (ACL) */
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
        s->requeue_sent = false;
        s->reconcile_in_flight = false;
        memset(s->sha, 0, sizeof s->sha);
        if (!s->final_done)
            wh_log(WH_LOG_WARN, NULL, NULL, "redis: lost the connection to %s%s%s", s->uri_shown,
                   status == REDIS_OK ? "" : ": ", status == REDIS_OK ? "" : ac->errstr);
        schedule_reconnect(s);
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
    if (c == &s->cmd) schedule_reconnect(s);
}

static void became_ready(wh_rserver *s);

static void on_select(wh_rserver *s, conn *c, redisReply *r, void *data) {
    (void)data;
    if (c->auth_failed) return; /* disconnecting: a refused login is a failed connection */
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        if (r) failed(s, &s->bo_auth, WH_LOG_ERROR, "redis: %s: %s", s->uri_shown, r->str);
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
        av_init(&a);
        av_adds(&a, "CLIENT");
        av_adds(&a, "ID");
        send_b(c, on_client_info, NULL, &a);
        return;
    }
    c->ready = true;
    pump(s);
}

static void on_auth(wh_rserver *s, conn *c, redisReply *r, void *data) {
    (void)data;
    if (r && r->type == REDIS_REPLY_ERROR) {
        /* the commands queued behind AUTH (SELECT, which the default user
         * may accept) must not make this connection ready */
        c->auth_failed = true;
        failed(s, &s->bo_auth, WH_LOG_ERROR, "redis: authentication to %s failed: %s", s->uri_shown, r->str);
        if (c->ac) redisAsyncDisconnect(c->ac);
    }
}

static void conn_open(wh_rserver *s, conn *c) {
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
        if (c == &s->cmd) schedule_reconnect(s);
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
        av_init(&a);
        av_adds(&a, "AUTH");
        if (s->uri.user) av_adds(&a, s->uri.user);
        av_adds(&a, s->uri.password);
        send_b(c, on_auth, NULL, &a);
    }
    av_init(&a);
    av_adds(&a, "SELECT");
    av_addf(&a, "%d", s->uri.db);
    send_b(c, on_select, NULL, &a);
    if (c != &s->cmd) {
        av_init(&a);
        av_adds(&a, "CLIENT");
        av_adds(&a, "INFO");
        send_b(c, on_client_info, NULL, &a);
    }
}

/* Drops a connection now (its pending callbacks run with NULL replies, then
 * on_disconnect). Not from inside one of its own reply callbacks. */
static void conn_drop(conn *c) {
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
    if (s->final_done) return;
    conn_open(s, &s->cmd);
}

static void schedule_reconnect(wh_rserver *s) {
    if (s->final_done || uv_is_closing((uv_handle_t *)&s->t_reconnect)) return;
    s->backoff = s->backoff == 0 ? BACKOFF_MIN_S : fmin(s->backoff * 2, BACKOFF_MAX_S);
    uv_timer_start(&s->t_reconnect, on_reconnect_timer, (uint64_t)(s->backoff * 1000), 0);
}

/* The half-open socket watchdog: hiredis 0.14's async API has no command
 * timeouts, so a connection whose oldest command has waited too long (a
 * blocked BLMOVE gets its own timeout plus a margin) is dropped and
 * reopened (Sidekiq #3195 is what happens without this). */
static void on_watchdog(uv_timer_t *t) {
    wh_rserver *s = t->data;
    double now = wh_clock_monotonic();
    conn *all[1 + 64];
    size_t n = 0;
    all[n++] = &s->cmd;
    for (size_t i = 0; i < s->nqueues && n < 65; i++) all[n++] = &s->blockers[i];
    for (size_t i = 0; i < n; i++) {
        conn *c = all[i];
        if (c->ac == NULL || c->pending == 0) continue;
        double limit = c->blocking ? BLOCK_TIMEOUT_S + 5.0 : COMMAND_DEADLINE_S;
        if (!c->ready) limit = 5.0; /* connecting */
        if (now - c->last_io > limit) {
            wh_log(WH_LOG_WARN, NULL, NULL, "redis: no answer from %s for %.0f s; dropping the connection",
                   s->uri_shown, now - c->last_io);
            bool was_cmd_up = c == &s->cmd && s->up;
            conn_drop(c);
            if (c == &s->cmd && !was_cmd_up) schedule_reconnect(s);
        }
    }
    /* blockers reconnect lazily: pump opens them when needed */
    pump(s);
}

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

static void held_free(held *h) {
    if (h == NULL) return;
    h->prev->next = h->next;
    h->next->prev = h->prev;
    wh_free(h);
}

/* Queues an outcome for the I/O thread. Returns whether to wake it now: at
 * a high job rate, only every wake_after outcomes (t_flush picks up the
 * rest within FLUSH_MS), which saves a wake-up per job. */
static bool push_ack(wh_rserver *s, ack *a, bool urgent) {
    pthread_mutex_lock(&s->lock);
    a->next = NULL;
    if (s->acks_tail) s->acks_tail->next = a;
    else s->acks = a;
    s->acks_tail = a;
    bool wake = ++s->nacks_in >= s->wake_after || urgent;
    pthread_mutex_unlock(&s->lock);
    return wake;
}

/* Wraps fetched bytes as a job for the executor, unparsed: the worker
 * thread parses it (wh_job_materialize), which keeps JSON off this thread,
 * the one every job goes through. */
static wh_job *deliver(wh_rserver *s, size_t qi, const char *p, size_t len) {
    s->outstanding++;
    held *h = held_new(s, qi, p, len);
    wh_job *job = &h->job;
    wh_job_raw_init(job, h->raw, len, s->queues[qi]); /* all three outlive the job */
    job->source_ref = h;
    return job;
}

/* Hands fetched jobs to the executor in one go. Jobs it refuses (it is
 * stopping) stay in flight in Redis and go back with the rest. */
static void hand_over(wh_rserver *s, wh_job **jobs, size_t n) {
    size_t accepted = 0;
    if (n && s->lazy_wake && !uv_is_active((uv_handle_t *)&s->t_flush))
        uv_timer_start(&s->t_flush, on_flush_timer, FLUSH_MS, FLUSH_MS);
    if (n) wh_async_push_many(s->exec, jobs, n, &accepted);
    for (size_t i = accepted; i < n; i++) {
        held *h = jobs[i]->source_ref;
        wh_job_free(jobs[i]); /* lives in h */
        held_free(h);
        s->outstanding--;
    }
}

typedef struct fetch_ctx {
    size_t asked;
    size_t n;         /* queues asked: those not resting after a refusal */
    size_t order[64]; /* the script's queue positions -> our queue index */
} fetch_ctx;

/* A queue whose key (or our in-flight list of it) holds another type than a
 * list: it rests (its own backoff) while the others are fetched. */
static void queue_refused(wh_rserver *s, size_t qi, const char *why) {
    failed(s, &s->bo_queue[qi], WH_LOG_ERROR, "redis: not fetching from %s: %s", s->queue_keys[qi], why);
}

static void on_fetch(wh_rserver *s, conn *c, redisReply *r, void *data) {
    (void)c;
    fetch_ctx *fc = data;
    if (s->fetches) s->fetches--;
    s->asked = s->asked > fc->asked ? s->asked - fc->asked : 0;
    if (r == NULL && !s->stopping) s->reconcile_wanted = true; /* Redis may have moved jobs we never saw */
    if (r && r->type == REDIS_REPLY_INTEGER && r->integer < 0) {
        /* not in the registry (a reaper took this process for dead): the
         * script moved nothing; register again before the next fetch */
        lost_registration(s, "fetching");
    } else if (r && r->type == REDIS_REPLY_ERROR) {
        if (!noscript(s, r)) failed(s, &s->bo_fetch, WH_LOG_ERROR, "redis: fetching jobs: %s", r->str);
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
                jobs[n++] = deliver(s, fc->order[pos], r->element[k]->str, r->element[k]->len);
        }
        hand_over(s, jobs, n);
        wh_free(jobs);
        s->idle = got < fc->asked;
    }
    wh_free(fc);
    if (r) pump(s);
}

static void on_block(wh_rserver *s, conn *c, redisReply *r, void *data) {
    (void)data;
    c->blocking = false;
    if (r == NULL) {
        /* dropped while blocked: its move may have happened, the reply lost */
        if (!s->quiet && !s->stopping) s->reconcile_wanted = true;
        return;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        if (strncmp(r->str, "WRONGTYPE", 9) == 0) queue_refused(s, (size_t)c->queue, r->str);
        else failed(s, &s->bo_fetch, WH_LOG_ERROR, "redis: BLMOVE from %s: %s", s->queue_keys[c->queue], r->str);
        return;
    }
    if (r->type == REDIS_REPLY_STRING) {
        wh_job *job = deliver(s, (size_t)c->queue, r->str, r->len);
        if (job) hand_over(s, &job, 1);
        s->idle = false; /* there may be more: fetch in batches again */
    }
    pump(s);
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
        if (!s->stopping) s->reconcile_wanted = true;
        return;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        s->reconcile_wanted = true;
        if (!noscript(s, r))
            failed(s, &s->bo_reconcile, WH_LOG_ERROR, "redis: reconciling in-flight lists: %s", r->str);
    } else {
        wh_backoff_ok(&s->bo_reconcile);
        if (r->type == REDIS_REPLY_INTEGER && r->integer > 0)
            wh_log(WH_LOG_WARN, NULL, NULL, "put %lld job%s back on %s queue%s: fetched by a request whose reply "
                   "was lost", r->integer, r->integer == 1 ? "" : "s", r->integer == 1 ? "its" : "their",
                   r->integer == 1 ? "" : "s");
    }
    pump(s);
}

static void on_reconcile_timer(uv_timer_t *t) {
    wh_rserver *s = t->data;
    if (!s->reconcile_wanted || s->reconcile_in_flight || !s->up || !s->registered || s->stopping || s->fetches)
        return;
    if (!gate_open(s, &s->bo_reconcile)) return;
    for (size_t i = 0; i < s->nqueues; i++) conn_drop(&s->blockers[i]);
    s->reconcile_wanted = false; /* after the drops, which ask for it again */
    send_kills(s);
    argv_b a;
    av_pairs(s, &a, S_RECONCILE);
    for (size_t i = 0; i < s->nqueues; i++) {
        size_t n = 0;
        for (held *h = s->held.next; h != &s->held; h = h->next) n += h->qi == i;
        av_addf(&a, "%zu", n);
        for (held *h = s->held.next; h != &s->held; h = h->next)
            if (h->qi == i) av_add(&a, h->raw, h->len);
    }
    s->reconcile_in_flight = send_b(&s->cmd, on_reconciled, NULL, &a);
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
static void pump(wh_rserver *s) {
    if (!s->up || !s->registered || s->quiet || s->stopping) return;
    if (s->reconcile_wanted) {
        if (s->fetches == 0) reconcile_soon(s);
        return;
    }
    if (s->ndrops) send_kills(s);
    if (!gate_open(s, &s->bo_fetch)) return;
    size_t room = s->prefetch_max > s->outstanding + s->asked ? s->prefetch_max - s->outstanding - s->asked : 0;
    if (room == 0) return;
    if (!s->idle) {
        /* a second batch only when it is worth a round trip */
        if (s->fetches >= FETCHES_IN_FLIGHT || (s->fetches && room < s->prefetch_max / 4)) return;
        fetch_ctx *fc = wh_xmalloc(sizeof *fc);
        fc->asked = room < FETCH_MAX ? room : FETCH_MAX;
        size_t order[64];
        fetch_order(s, order);
        fc->n = 0;
        for (size_t i = 0; i < s->nqueues; i++)
            if (gate_open(s, &s->bo_queue[order[i]])) fc->order[fc->n++] = order[i];
        if (fc->n == 0) { /* every queue rests: t_retry comes back */
            wh_free(fc);
            return;
        }
        argv_b a;
        av_init(&a);
        av_script(s, &a, S_FETCH);
        av_addf(&a, "%zu", 1 + fc->n * 2);
        av_addf(&a, "%s%s", s->ns, WH_KEY_REGISTRY);
        for (size_t i = 0; i < fc->n; i++) {
            av_adds(&a, s->queue_keys[fc->order[i]]);
            av_adds(&a, s->inflight_keys[fc->order[i]]);
        }
        av_addf(&a, "%zu", fc->asked);
        av_adds(&a, s->identity);
        if (send_b(&s->cmd, on_fetch, fc, &a)) {
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
            conn_open(s, c);
            continue;
        }
        if (!c->ready || c->blocking || c->pending || !gate_open(s, &s->bo_queue[i])) continue;
        argv_b a;
        av_init(&a);
        av_adds(&a, "BLMOVE");
        av_adds(&a, s->queue_keys[i]);
        av_adds(&a, s->inflight_keys[i]);
        av_adds(&a, "RIGHT");
        av_adds(&a, "LEFT");
        av_addf(&a, "%d", BLOCK_TIMEOUT_S);
        c->blocking = send_b(c, on_block, NULL, &a);
    }
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
    if (push_ack(s, a, stopping)) uv_async_send(&s->wake);
}

/* Releases what an outcome holds (not the entry it lives in). */
static void free_ack(ack *a) {
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
        if (r && r->type == REDIS_REPLY_ERROR && !noscript(s, r))
            failed(s, &s->bo_ack, WH_LOG_ERROR, "redis: recording outcomes: %s", r->str);
        else if (r && r->type == REDIS_REPLY_INTEGER)
            lost_registration(s, "recording outcomes");
        return;
    }
    wh_backoff_ok(&s->bo_ack);
    while (batch) {
        ack *next = batch->next;
        free_ack(batch);
        held_free(held_of(batch)); /* recorded: out of the in-flight list */
        batch = next;
    }
    flush_acks(s);
    if (s->stopping) final_steps(s);
}

/* While outcomes come in fast (workers wake us only every wake_after of
 * them), this picks up the rest every FLUSH_MS; it stops when no job is out. */
static void on_flush_timer(uv_timer_t *t) {
    wh_rserver *s = t->data;
    flush_acks(s);
    /* hand_over starts it again; with slow jobs every outcome wakes us */
    if (s->outstanding == 0 || !s->lazy_wake) uv_timer_stop(&s->t_flush);
}

/* Sends outcomes in batches, a few batches in flight at once. */
static void flush_acks(wh_rserver *s) {
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
        pump(s);
    }
    while (s->up && s->registered && s->ack_batches < ACK_BATCHES_IN_FLIGHT && gate_open(s, &s->bo_ack)) {
        pthread_mutex_lock(&s->lock);
        ack *batch = NULL, **tail = &batch;
        size_t n = 0;
        while (s->acks && n < ACK_BATCH) {
            ack *a = s->acks;
            s->acks = a->next;
            a->next = NULL;
            if (a->kind == 'k') { /* stays in flight; goes back with the rest */
                free_ack(a);
                held_free(held_of(a));
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
        av_init(&a);
        av_script(s, &a, S_ACK);
        av_addf(&a, "%zu", 7 + n);
        av_addf(&a, "%s%s", s->ns, WH_KEY_REGISTRY);
        av_addf(&a, "%s%s", s->ns, WH_KEY_PROCESSED);
        av_addf(&a, "%s%s", s->ns, WH_KEY_FAILED);
        av_addf(&a, "%s%s:%s", s->ns, WH_KEY_PROCESSED, day);
        av_addf(&a, "%s%s:%s", s->ns, WH_KEY_FAILED, day);
        av_addf(&a, "%s%s", s->ns, WH_KEY_RETRY);
        av_addf(&a, "%s%s", s->ns, WH_KEY_DEAD);
        for (ack *x = batch; x; x = x->next) av_adds(&a, s->inflight_keys[held_of(x)->qi]);
        av_adds(&a, s->identity);
        av_addf(&a, "%d", WH_DAILY_STATS_TTL_S);
        av_addf(&a, "%d", WH_DEAD_TIMEOUT_S);
        av_addf(&a, "%d", WH_DEAD_MAX_JOBS);
        for (ack *x = batch; x; x = x->next) {
            av_add(&a, held_of(x)->raw, held_of(x)->len);
            av_add(&a, &x->kind, 1);
            av_add(&a, x->newp ? x->newp : "", x->newp_len);
            if (x->kind == 'r') av_addf(&a, "%.6f", x->delay);
            else av_add(&a, "0", 1);
        }
        if (!send_b(&s->cmd, on_ack, batch, &a)) {
            requeue_batch(s, batch);
            return;
        }
        s->ack_batches++;
    }
}

/* ==== the scheduler: schedule and retry -> their queues ==================== */

/* An error reply of a scheduler step (after NOSCRIPT the next tick tries again). */
static bool sched_error(wh_rserver *s, redisReply *r, const char *what) {
    if (r == NULL) return true;
    if (r->type != REDIS_REPLY_ERROR) return false;
    if (!noscript(s, r)) failed(s, &s->bo_sched, WH_LOG_ERROR, "redis: %s: %s", what, r->str);
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
    av_init(&a);
    av_script(s, &a, S_MOVE_DUE);
    av_adds(&a, "3");
    av_addf(&a, "%s%s", s->ns, zset);
    av_addf(&a, "%s%s", s->ns, WH_KEY_QUEUES);
    av_addf(&a, "%s%s", s->ns, WH_KEY_DEAD);
    av_addf(&a, "%s%s", s->ns, WH_KEY_QUEUE_PREFIX);
    /* no tree: one pass over each payload sets enqueued_at and reads queue
     * (json/jtop.h), every other byte kept; memory does not grow with the
     * payload beyond its copy */
    wh_json nv;
    memset(&nv, 0, sizeof nv);
    nv.type = WH_JSON_FLOAT;
    nv.u.f.d = now;
    wh_buf nowb = WH_BUF_INIT;
    wh_json_write(&nowb, &nv, NULL);
    for (size_t i = 0; i < r->elements; i++) {
        redisReply *m = r->element[i];
        av_add(&a, m->str, m->len);
        wh_buf out = WH_BUF_INIT, q = WH_BUF_INIT;
        int rc = wh_jtop_rewrite(m->str, m->len, "enqueued_at", nowb.data, nowb.len, &out, NULL);
        if (rc == 0) rc = wh_jtop_string(m->str, m->len, "queue", &q, NULL);
        if (rc >= 0) {
            av_take(&a, &out);
            if (q.len) av_take(&a, &q);
            else av_adds(&a, "default");
        } else {
            av_adds(&a, "");
            av_adds(&a, ""); /* not a job: to the dead set */
        }
        wh_buf_free(&out);
        wh_buf_free(&q);
    }
    wh_buf_free(&nowb);
    if (!send_b(&s->cmd, on_moved, data, &a) && s->due_in_flight) s->due_in_flight--;
}

/* Every tick looks at both sets (one round trip each, pipelined); a set
 * with more due than one batch is moved a batch per tick. */
static void on_scheduler(uv_timer_t *t) {
    wh_rserver *s = t->data;
    if (!s->up || !s->layout_ok || s->due_in_flight || s->quiet || s->stopping) return;
    if (!wh_backoff_ready(&s->bo_sched, wh_clock_monotonic())) return; /* the next tick looks again */
    static const char *const sets[] = {WH_KEY_RETRY, WH_KEY_SCHEDULE};
    for (int k = 0; k < 2; k++) {
        argv_b a;
        av_init(&a);
        av_script(s, &a, S_DUE); /* due by Redis's clock, not this host's */
        av_adds(&a, "1");
        av_addf(&a, "%s%s", s->ns, sets[k]);
        av_addf(&a, "%d", DUE_BATCH);
        if (send_b(&s->cmd, on_due, (void *)sets[k], &a)) s->due_in_flight++;
    }
}

/* ==== heartbeat and the process registry ================================== */

static void read_first_line(const char *path, char *out, size_t n) {
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f) return;
    if (fgets(out, (int)n, f)) out[strcspn(out, "\n")] = '\0';
    fclose(f);
}

/* Field 22 of /proc/<pid>/stat: the process's start time in clock ticks
 * since boot. 0 if the process does not exist. */
static unsigned long long proc_start_ticks(long pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may contain spaces */
    if (!p) return 0;
    unsigned long long v = 0;
    int field = 2;
    for (char *tok = strtok(p + 1, " "); tok; tok = strtok(NULL, " ")) {
        if (++field == 22) { v = strtoull(tok, NULL, 10); break; }
    }
    return v;
}

static void pid_namespace(char *out, size_t n) {
    ssize_t k = readlink("/proc/self/ns/pid", out, n - 1);
    out[k > 0 ? (size_t)k : 0] = '\0';
}

static void build_info(wh_rserver *s) {
    char host[256], boot[64], pidns[64];
    gethostname(host, sizeof host);
    host[sizeof host - 1] = '\0';
    read_first_line("/proc/sys/kernel/random/boot_id", boot, sizeof boot);
    pid_namespace(pidns, sizeof pidns);
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
    wh_buf_printf(&b, ",\"wh_start_ticks\":%llu", proc_start_ticks((long)getpid()));
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
    av_addf(w->a, "t%zu", worker);
    av_addf(w->a, "%s", wh_buf_cstr(&v));
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
static void heartbeat(wh_rserver *s);

static void reload_done(uv_work_t *w, int status) {
    wh_rserver *s = w->data;
    (void)status;
    s->reload_running = false;
    if (s->reload_again) {
        s->reload_again = false;
        reload_soon(s);
    }
    heartbeat(s); /* publish the new generation at once */
}

static void reload_soon(wh_rserver *s) {
    if (s->host == NULL || s->final_done) return;
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
        s->quiet = true;
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
        av_init(&a);
        av_adds(&a, "HSET");
        av_addf(&a, "%s%s", s->ns, s->identity);
        av_adds(&a, "rtt_us");
        av_addf(&a, "%ld", rtt);
        send_b(&s->cmd, NULL, NULL, &a);
    }
    wh_free(t0);
}

static void heartbeat(wh_rserver *s) {
    if (!s->up || s->final_done) return;
    conn *c = &s->cmd;
    double now = wh_clock_wall();
    argv_b a;
    char *workers_key = keydup(s, "%s:workers", s->identity, NULL);
    char *work_key = keydup(s, "%s:work", s->identity, NULL);
    /* jobs in progress, under both of Sidekiq's names (6.4 and 6.5+) */
    av_init(&a);
    av_adds(&a, "DEL");
    av_adds(&a, workers_key);
    av_adds(&a, work_key);
    send_b(c, NULL, NULL, &a);
    size_t busy = 0;
    for (int k = 0; k < 2; k++) {
        av_init(&a);
        av_adds(&a, "HSET");
        av_adds(&a, k ? work_key : workers_key);
        work_ctx w = {s, &a, 0};
        if (s->exec) wh_async_each_running(s->exec, add_work, &w);
        busy = w.busy;
        if (w.busy) {
            send_b(c, NULL, NULL, &a);
            av_init(&a);
            av_adds(&a, "EXPIRE");
            av_adds(&a, k ? work_key : workers_key);
            av_addf(&a, "%d", WH_HEARTBEAT_TTL_S);
            send_b(c, NULL, NULL, &a);
        } else {
            av_free(&a);
        }
    }
    av_init(&a);
    av_adds(&a, "SADD");
    av_addf(&a, "%s%s", s->ns, WH_KEY_PROCESSES);
    av_adds(&a, s->identity);
    send_b(c, NULL, NULL, &a);
    register_now(s); /* checked: restores what a reaper may have removed */
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    av_init(&a);
    av_adds(&a, "HSET");
    av_addf(&a, "%s%s", s->ns, s->identity);
    av_adds(&a, "info");
    if (s->host) /* the worker code's generation (issue: reload), and when it began */
        av_addf(&a, "%s,\"wh_generation\":%u,\"wh_reloaded_at\":%.6f}", s->info_json, wh_host_generation(s->host),
                wh_host_reloaded_at(s->host));
    else
        av_addf(&a, "%s}", s->info_json);
    av_adds(&a, "busy");
    av_addf(&a, "%zu", busy);
    av_adds(&a, "beat");
    av_addf(&a, "%.6f", now);
    av_adds(&a, "quiet");
    av_adds(&a, s->quiet ? "true" : "false");
    av_adds(&a, "rss");
    av_addf(&a, "%ld", ru.ru_maxrss);
    send_b(c, NULL, NULL, &a);
    av_init(&a);
    av_adds(&a, "EXPIRE");
    av_addf(&a, "%s%s", s->ns, s->identity);
    av_addf(&a, "%d", WH_HEARTBEAT_TTL_S);
    send_b(c, NULL, NULL, &a);
    double *t0 = wh_xmalloc(sizeof *t0);
    *t0 = wh_clock_monotonic();
    av_init(&a);
    av_adds(&a, "PING");
    if (!send_b(c, on_ping, t0, &a)) wh_free(t0);
    wh_free(workers_key);
    wh_free(work_key);
    flush_acks(s); /* outcomes refused while we were out of the registry */
}

static void on_heartbeat(uv_timer_t *t) { heartbeat(t->data); }

/* <identity>-signals, every second: the Web UI's Quiet and Stop (TSTP,
 * TERM), and RELOAD from `workerhost reload` (ours). Sidekiq reads them at
 * its heartbeat; once a second is as cheap and answers sooner. */
static void on_signals(uv_timer_t *t) {
    wh_rserver *s = t->data;
    if (!s->up || s->final_done) return;
    argv_b a;
    av_init(&a);
    av_adds(&a, "RPOP");
    av_addf(&a, "%s%s-signals", s->ns, s->identity);
    send_b(&s->cmd, on_signal_reply, NULL, &a);
}

/* ==== the key layout and the registry ===================================== */

static void reaper(wh_rserver *s);

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
        register_now(s);
        reaper(s);
        return;
    }
    if (noscript(s, r)) {
        migrate_now(s);
    } else if (r->type == REDIS_REPLY_STRING && strncmp(r->str, "live ", 5) == 0) {
        failed(s, &s->bo_layout, WH_LOG_ERROR, "redis: %s holds workerhost keys of layout 1, in use by a running "
               "host of an older workerhost (%s): this host fetches nothing until every older host has stopped, "
               "then moves the keys to layout %s", s->uri_shown, r->str + 5, WH_KEY_VERSION_VALUE);
    } else if (r->type == REDIS_REPLY_STRING && strncmp(r->str, "version ", 8) == 0) {
        failed(s, &s->bo_layout, WH_LOG_ERROR, "redis: %s holds workerhost keys of layout version %s (key %s%s); "
               "this build reads and writes version %s: this host fetches nothing", s->uri_shown, r->str + 8, s->ns,
               WH_KEY_VERSION, WH_KEY_VERSION_VALUE);
    } else {
        failed(s, &s->bo_layout, WH_LOG_ERROR, "redis: checking the key layout on %s: %s", s->uri_shown,
               r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    }
}

/* MIGRATE (scripts.h), once per connection, before anything else of ours. */
static void migrate_now(wh_rserver *s) {
    if (!s->up || s->layout_ok || s->migrating || !gate_open(s, &s->bo_layout)) return;
    argv_b a;
    av_init(&a);
    av_script(s, &a, S_MIGRATE);
    av_adds(&a, "2");
    av_addf(&a, "%s%s", s->ns, WH_KEY_VERSION);
    av_addf(&a, "%s%s", s->ns, WH_KEY_REGISTRY);
    av_adds(&a, WH_KEY_VERSION_VALUE);
    av_adds(&a, s->ns);
    av_addf(&a, "%s%s", s->ns, WH_KEY_INFLIGHT_PREFIX);
    av_adds(&a, WH_KEY_V1_QUEUES_OF_SUFFIX);
    av_addf(&a, "%s%s", s->ns, WH_KEY_QUEUES_OF_PREFIX);
    s->migrating = send_b(&s->cmd, on_migrated, NULL, &a);
}

static void on_registered(wh_rserver *s, conn *c, redisReply *r, void *data) {
    (void)c;
    (void)data;
    s->registering = false;
    if (r == NULL) return;
    if (r->type != REDIS_REPLY_INTEGER) {
        s->registered = false;
        if (noscript(s, r)) {
            register_now(s);
            return;
        }
        failed(s, &s->bo_register, WH_LOG_ERROR, "redis: registering this process (%s) on %s: %s; it fetches no "
               "job until it is registered", s->identity, s->uri_shown,
               r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "WHLAYOUT", 8) == 0) {
            s->layout_ok = false;
            migrate_now(s);
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
        if (!s->stopping) s->reconcile_wanted = true; /* pump drops the blockers first */
    }
    unsigned long refusals = wh_backoff_ok(&s->bo_register);
    if (refusals)
        wh_log(WH_LOG_INFO, NULL, NULL, "redis: registered %s after %lu refusal%s", s->identity, refusals,
               refusals == 1 ? "" : "s");
    s->registered = s->ever_registered = true;
    flush_acks(s);
    pump(s);
}

/* REGISTER (scripts.h): the registry and the set of this process's queues,
 * together, confirmed by the reply. Nothing is fetched before. */
static void register_now(wh_rserver *s) {
    if (!s->up || !s->layout_ok || s->registering || s->final_done || (s->stopping && s->requeue_sent) ||
        !gate_open(s, &s->bo_register))
        return;
    argv_b a;
    av_init(&a);
    av_script(s, &a, S_REGISTER);
    av_adds(&a, "3");
    av_addf(&a, "%s%s", s->ns, WH_KEY_REGISTRY);
    av_adds(&a, s->queues_of_key);
    av_addf(&a, "%s%s", s->ns, WH_KEY_VERSION);
    av_adds(&a, s->identity);
    av_adds(&a, WH_KEY_VERSION_VALUE);
    for (size_t i = 0; i < s->nqueues; i++) av_adds(&a, s->queues[i]);
    s->registering = send_b(&s->cmd, on_registered, NULL, &a);
}

/* A script refused because this process is not in the registry. */
static void lost_registration(wh_rserver *s, const char *what) {
    if (s->registered)
        wh_log(WH_LOG_WARN, NULL, NULL, "redis: %s: this process is no longer in the registry (a reaper took it "
               "for dead?); registering again", what);
    s->registered = false;
    register_now(s);
}

/* t_retry: an operation that failed may try again. */
static void on_retry_timer(uv_timer_t *t) {
    wh_rserver *s = t->data;
    if (!s->up || s->final_done) return;
    migrate_now(s);
    register_now(s);
    flush_acks(s);
    pump(s);
    if (s->stopping) final_steps(s);
}

/* ==== the reaper ========================================================== */

static const char release_lock[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/* The lock is held only for one pass, so a host that dies while holding it
 * blocks the next pass for at most REAPER_LOCK_MS. */
static void reaper_pass_done(wh_rserver *s) {
    argv_b a;
    av_init(&a);
    av_adds(&a, "EVAL");
    av_adds(&a, release_lock);
    av_adds(&a, "1");
    av_addf(&a, "%s%s", s->ns, WH_KEY_REAPER_LOCK);
    av_adds(&a, s->identity);
    send_b(&s->cmd, NULL, NULL, &a);
}

static void on_reaped(wh_rserver *s, conn *c, redisReply *r, void *data) {
    (void)c;
    char *id = data;
    if (!reply_error(s, r, "recovering jobs") && r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
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
    av_init(&a);
    av_script(s, &a, S_REAP);
    av_adds(&a, "4");
    av_addf(&a, "%s%s", s->ns, WH_KEY_REGISTRY);
    av_addf(&a, "%s" WH_KEY_QUEUES_OF_PREFIX "%s", s->ns, id);
    av_addf(&a, "%s%s", s->ns, WH_KEY_DEAD);
    av_addf(&a, "%s%s", s->ns, id);
    av_adds(&a, id);
    av_addf(&a, "%s%s", s->ns, WH_KEY_INFLIGHT_PREFIX);
    av_addf(&a, "%s%s", s->ns, WH_KEY_QUEUE_PREFIX);
    av_addf(&a, "%s%s", s->ns, WH_KEY_RECOVERED_PREFIX);
    av_addf(&a, "%d", WH_RECOVERY_WINDOW_S);
    av_addf(&a, "%d", WH_RECOVERY_MAX);
    av_adds(&a, force ? "1" : "0");
    send_b(&s->cmd, on_reaped, wh_xstrdup(id), &a);
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
    read_first_line("/proc/sys/kernel/random/boot_id", my_boot, sizeof my_boot);
    pid_namespace(my_ns, sizeof my_ns);
    if (boot && ns && pid && ticks && boot->type == WH_JSON_STRING && ns->type == WH_JSON_STRING &&
        pid->type == WH_JSON_INT && ticks->type == WH_JSON_INT && my_boot[0] && my_ns[0] &&
        boot->u.str.len == strlen(my_boot) && memcmp(boot->u.str.s, my_boot, boot->u.str.len) == 0 &&
        ns->u.str.len == strlen(my_ns) && memcmp(ns->u.str.s, my_ns, ns->u.str.len) == 0) {
        unsigned long long now_ticks = proc_start_ticks((long)pid->u.i);
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
    if (reply_error(s, r, "reading the registry") || r->type != REDIS_REPLY_ARRAY) return;
    s->reap_pending = 0;
    for (size_t i = 0; i < r->elements; i++)
        if (strcmp(r->element[i]->str, s->identity) != 0) s->reap_pending++;
    if (s->reap_pending == 0) reaper_pass_done(s);
    for (size_t i = 0; i < r->elements; i++) {
        const char *id = r->element[i]->str;
        if (strcmp(id, s->identity) == 0) continue;
        argv_b a;
        av_init(&a);
        av_adds(&a, "HGET");
        av_addf(&a, "%s%s", s->ns, id);
        av_adds(&a, "info");
        send_b(&s->cmd, on_peer_info, wh_xstrdup(id), &a);
    }
}

static void on_reaper_lock(wh_rserver *s, conn *c, redisReply *r, void *data) {
    (void)c;
    (void)data;
    if (r && r->type == REDIS_REPLY_ERROR) wh_log(WH_LOG_ERROR, NULL, NULL, "redis: reaper lock: %s", r->str);
    if (r == NULL || r->type != REDIS_REPLY_STATUS) return; /* another host holds it */
    wh_log(WH_LOG_DEBUG, NULL, NULL, "reaper: checking the registry for dead processes");
    argv_b a;
    av_init(&a);
    av_adds(&a, "SMEMBERS");
    av_addf(&a, "%s%s", s->ns, WH_KEY_REGISTRY);
    send_b(&s->cmd, on_registry, NULL, &a);
}

static void reaper(wh_rserver *s) {
    if (!s->up || !s->layout_ok || s->stopping) return; /* never with another layout's key names */
    argv_b a;
    av_init(&a);
    av_adds(&a, "SET");
    av_addf(&a, "%s%s", s->ns, WH_KEY_REAPER_LOCK);
    av_adds(&a, s->identity);
    av_adds(&a, "NX");
    av_adds(&a, "PX");
    av_addf(&a, "%d", REAPER_LOCK_MS);
    send_b(&s->cmd, on_reaper_lock, NULL, &a);
}

static void on_reaper(uv_timer_t *t) { reaper(t->data); }

static void on_script_loaded(wh_rserver *s, conn *c, redisReply *r, void *data) {
    (void)c;
    int which = (int)(intptr_t)data;
    if (r && r->type == REDIS_REPLY_STRING && r->len == 40) memcpy(s->sha[which], r->str, 41);
}

static void load_scripts(wh_rserver *s) {
    for (int i = 0; i < S_COUNT; i++) {
        argv_b a;
        av_init(&a);
        av_adds(&a, "SCRIPT");
        av_adds(&a, "LOAD");
        av_adds(&a, script_src(i));
        send_b(&s->cmd, on_script_loaded, (void *)(intptr_t)i, &a);
    }
}

static void became_ready(wh_rserver *s) {
    s->up = true;
    s->backoff = 0;
    if (s->logged_down) wh_log(WH_LOG_INFO, NULL, NULL, "redis: connected to %s", s->uri_shown);
    else wh_log(WH_LOG_INFO, NULL, NULL, "redis: connected to %s as %s", s->uri_shown, s->identity);
    s->logged_down = false;
    load_scripts(s);
    /* the layout, then the registry (each confirmed), then fetching and the
     * outcomes kept while Redis was away: on_migrated, on_registered */
    migrate_now(s);
    heartbeat(s);
    s->idle = false;
}

/* ==== stopping ============================================================ */

static void close_handle(uv_handle_t *h) {
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

static void close_all(wh_rserver *s) {
    s->final_done = true;
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
    long long left = -1; /* unknown: the script failed */
    if (!noscript(s, r) && !reply_error(s, r, "putting jobs back") && r->type == REDIS_REPLY_ARRAY &&
        r->elements == 2) {
        s->requeued = (size_t)r->element[0]->integer;
        left = r->element[1]->integer;
        if (s->requeued)
            wh_log(WH_LOG_INFO, NULL, NULL, "put %zu unfinished job%s back on %s queue%s", s->requeued,
                   s->requeued == 1 ? "" : "s", s->requeued == 1 ? "its" : "their", s->requeued == 1 ? "" : "s");
    } else if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
        s->requeue_sent = false; /* loaded again: the next step sends it again */
        final_steps(s);
        return;
    }
    /* leave the registry: gone from the Web UI at once */
    argv_b a;
    av_init(&a);
    av_adds(&a, "SREM");
    av_addf(&a, "%s%s", s->ns, WH_KEY_PROCESSES);
    av_adds(&a, s->identity);
    send_b(&s->cmd, NULL, NULL, &a);
    av_init(&a);
    av_adds(&a, "DEL");
    av_addf(&a, "%s%s", s->ns, s->identity);
    av_addf(&a, "%s%s:workers", s->ns, s->identity);
    av_addf(&a, "%s%s:work", s->ns, s->identity);
    if (left == 0) av_adds(&a, s->queues_of_key);
    send_b(&s->cmd, left == 0 ? NULL : on_deregistered, NULL, &a);
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
    av_init(&a);
    av_adds(&a, "SREM");
    av_addf(&a, "%s%s", s->ns, WH_KEY_REGISTRY);
    av_adds(&a, s->identity);
    send_b(&s->cmd, on_deregistered, NULL, &a);
}

/* Once every outcome is recorded: unfinished jobs back, then leave. */
static void final_steps(wh_rserver *s) {
    if (s->final_done || !s->up || s->ack_batches || s->requeue_sent) return;
    pthread_mutex_lock(&s->lock);
    bool more = s->acks != NULL;
    pthread_mutex_unlock(&s->lock);
    if (more) {
        flush_acks(s);
        return;
    }
    send_kills(s); /* no blocked BLMOVE may take a job after this */
    argv_b a;
    av_pairs(s, &a, S_REQUEUE);
    s->requeue_sent = send_b(&s->cmd, on_requeued, NULL, &a);
}

static void on_final_deadline(uv_timer_t *t) {
    wh_rserver *s = t->data;
    if (s->final_done) return;
    wh_log(WH_LOG_WARN, NULL, NULL, "redis unreachable while stopping: outcomes not recorded and jobs left in "
                                    "flight will be recovered by another host's reaper");
    close_all(s);
}

/* ==== the I/O thread ======================================================= */

static void on_wake(uv_async_t *h) {
    wh_rserver *s = h->data;
    pthread_mutex_lock(&s->lock);
    bool q = s->want_quiet, st = s->want_stop;
    pthread_mutex_unlock(&s->lock);
    if (q && !s->quiet) {
        s->quiet = true;
        for (size_t i = 0; i < s->nqueues; i++) conn_drop(&s->blockers[i]); /* stop blocking fetches */
    }
    if (st && !s->stopping) {
        s->stopping = true;
        uv_timer_stop(&s->t_scheduler);
        uv_timer_start(&s->t_final, on_final_deadline, 10000, 0); /* reconnects go on meanwhile */
    }
    flush_acks(s);
    if (s->stopping) final_steps(s);
}

static void io_main(void *arg) {
    wh_rserver *s = arg;
    wh_sigpipe_block_thread(); /* a write to a closed connection is EPIPE, not death */
    conn_open(s, &s->cmd);
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
    if (s->nqueues == 0 || s->nqueues > 64) {
        wh_rserver_free(s);
        return wh_err_set(err, WH_ECONFIG, "BackgroundQueue needs 1 to 64 queues to fetch from (workers.queues, "
                                           "or the queues the workers name); got %zu", s->nqueues);
    }
    s->queue_keys = wh_xcalloc(s->nqueues, sizeof *s->queue_keys);
    s->inflight_keys = wh_xcalloc(s->nqueues, sizeof *s->inflight_keys);
    for (size_t i = 0; i < s->nqueues; i++) {
        s->queue_keys[i] = keydup(s, WH_KEY_QUEUE_PREFIX "%s%s", s->queues[i], NULL);
        s->inflight_keys[i] = keydup(s, WH_KEY_INFLIGHT_PREFIX "%s:%s", s->identity, s->queues[i]);
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
    s->queues_of_key = keydup(s, WH_KEY_QUEUES_OF_PREFIX "%s%s", s->identity, NULL);
    const wh_backoff gate = WH_BACKOFF_INIT(BACKOFF_MIN_S, BACKOFF_MAX_S, FAILURE_LOG_S);
    s->bo_layout = s->bo_register = s->bo_fetch = s->bo_ack = s->bo_sched = s->bo_reconcile = s->bo_auth = gate;
    s->bo_queue = wh_xcalloc(s->nqueues, sizeof *s->bo_queue);
    for (size_t i = 0; i < s->nqueues; i++) s->bo_queue[i] = gate;
    build_info(s);
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
    uv_async_init(&s->loop, &s->wake, on_wake);
    s->wake.data = s;
    uv_timer_t *timers[] = {&s->t_heartbeat, &s->t_scheduler, &s->t_reaper, &s->t_watchdog, &s->t_reconnect,
                            &s->t_final, &s->t_reconcile, &s->t_flush, &s->t_signals, &s->t_retry};
    for (size_t i = 0; i < sizeof timers / sizeof *timers; i++) {
        uv_timer_init(&s->loop, timers[i]);
        timers[i]->data = s;
    }
    uv_timer_start(&s->t_heartbeat, on_heartbeat, (uint64_t)(HEARTBEAT_S * 1000), (uint64_t)(HEARTBEAT_S * 1000));
    uv_timer_start(&s->t_scheduler, on_scheduler, SCHEDULER_MS, SCHEDULER_MS);
    uv_timer_start(&s->t_reaper, on_reaper, (uint64_t)(REAPER_S * 1000), (uint64_t)(REAPER_S * 1000));
    uv_timer_start(&s->t_watchdog, on_watchdog, WATCHDOG_MS, WATCHDOG_MS);
    uv_timer_start(&s->t_signals, on_signals, SIGNALS_MS, SIGNALS_MS);
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
    for (ack *a = s->acks; a; a = a->next) free_ack(a);
    while (s->held.next != &s->held) held_free(s->held.next);
    wh_free(s->drops);
    wh_free(s->info_json);
    wh_free(s->queues_of_key);
    wh_free(s->ns);
    wh_redis_uri_free(&s->uri);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->done);
    wh_free(s);
}
