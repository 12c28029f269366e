/* server_int.h -- the internals of BackgroundQueue's Redis side (see
 * server.h), shared by the files of host/src/redis that implement it: the
 * one struct, the types its parts share, and what each file exports to the
 * others, grouped per file (as Redis's server.h does).
 *
 * Threads: everything here runs on the I/O thread only, except what is
 * marked otherwise (wh_rserver_outcome and rs_push_ack run on worker
 * threads; the fields under "shared with other threads" are read and written
 * under `lock`). Nothing declared here is for use outside host/src/redis. */
#ifndef WH_RSERVER_INT_H
#define WH_RSERVER_INT_H

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/backoff.h"
#include "core/buf.h"
#include "core/log.h"
#include "redis/server.h"
#include "redis/uri.h"

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
#define RS_MAX_QUEUES 64          /* queues one host fetches from: one blocking connection each */
#define PREFETCH_MIN_PER_THREAD 2
#define PREFETCH_MAX_PER_THREAD 64
#define PREFETCH_WORK_S 0.010
#define PREFETCH_WINDOW_S 0.1
#define FLUSH_MS 1               /* see rs_on_flush_timer */
#define FETCHES_IN_FLIGHT 2     /* a batch asked for while the last is on its way */
#define FETCH_MAX 1000          /* jobs per fetch script (Lua's unpack limit is 8000) */
#define ACK_BATCH 200
#define ACK_BATCHES_IN_FLIGHT 4   /* pipelined: replies come back in order */
#define DUE_BATCH 100
#define STOP_DEADLINE_MS 10000  /* stopping waits this long for Redis at most */

/* ==== data ================================================================ */

/* The stop sequence, one state at a time, in this order (rs_stop.c owns
 * every transition):
 *   RS_RUNNING     fetching.
 *   RS_QUIET       no more fetching (wh_rserver_quiet, or TSTP from the Web
 *                  UI); running and prefetched jobs still finish.
 *   RS_DRAINING    stop asked for (the executor is done): outcomes are being
 *                  recorded; the scheduler and the reaper are off.
 *   RS_REQUEUEING  every outcome recorded, REQUEUE sent: unfinished jobs go
 *                  back to their queues.
 *   RS_LEAVING     REQUEUE answered: leaving `processes` and the registry.
 *   RS_CLOSED      every handle closed; the loop ends.
 * A lost command connection takes REQUEUEING and LEAVING back to DRAINING
 * (REQUEUE is idempotent: it is sent again on the next connection). From
 * DRAINING on, t_final (STOP_DEADLINE_MS) ends it in CLOSED if Redis stays
 * away; with Redis down and nothing held it ends in CLOSED at once. */
typedef enum rs_stop_state {
    RS_RUNNING,
    RS_QUIET,
    RS_DRAINING,
    RS_REQUEUEING,
    RS_LEAVING,
    RS_CLOSED,
} rs_stop_state;

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
static inline held *held_of(ack *a) { return (held *)(void *)((char *)a - offsetof(held, a)); }

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

/* An argv being built for one command: rs_av_init, rs_av_add*, then rs_send_b
 * (which frees it) or rs_av_free. */
typedef struct argv_b {
    const char **v;
    size_t *l;
    int n, cap;
    wh_buf owned; /* numbers formatted here are kept as separate strings */
    char **strs;
    int nstrs;
} argv_b;

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
    rs_stop_state stop;   /* the stop sequence (rs_stop.c): RS_RUNNING until quiet or stop */
    size_t outstanding;   /* fetched and not yet finished */
    size_t prefetch_max;  /* now: between prefetch_min and prefetch_cap */
    size_t prefetch_min, prefetch_cap;
    double window_start;  /* monotonic: start of the job-rate window */
    size_t window_done;   /* outcomes in the window */
    size_t fetches;       /* fetch scripts sent, not answered */
    size_t asked;         /* jobs those fetches may bring */
    bool idle;            /* the last fetch came back short: blockers wait */
    size_t ack_batches;   /* batches sent, not answered */
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

/* ==== prototypes, per file ================================================= */

/* server.c -- keys, scripts, commands, the I/O thread, the API */
char *rs_keydup(const wh_rserver *s, const char *fmt, const char *a, const char *b2); /* owned: wh_free */
const char *rs_script_src(int which);
void rs_av_init(argv_b *a);
void rs_av_add(argv_b *a, const char *p, size_t len); /* borrowed: p must outlive the send */
void rs_av_adds(argv_b *a, const char *p);
void rs_av_addf(argv_b *a, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void rs_av_take(argv_b *a, wh_buf *b);
void rs_av_free(argv_b *a);
void rs_av_script(const wh_rserver *s, argv_b *a, int which);
void rs_av_pairs(const wh_rserver *s, argv_b *a, int which);
/* Sends and frees a; fn (may be NULL) gets the reply, or NULL when the
 * connection goes away first. Returns false if not sent. */
bool rs_send_b(conn *c, reply_fn fn, void *data, argv_b *a);
bool rs_reply_error(wh_rserver *s, redisReply *r, const char *what);
bool rs_noscript(wh_rserver *s, const redisReply *r);
void rs_failed(wh_rserver *s, wh_backoff *b, wh_log_level level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
bool rs_gate_open(wh_rserver *s, const wh_backoff *b);

/* rs_conn.c -- connections: connect, auth, reconnect, watchdog, kills of
 * dropped blockers, script loading */
void rs_conn_open(wh_rserver *s, conn *c);
void rs_conn_drop(conn *c);
void rs_send_kills(wh_rserver *s);
void rs_schedule_reconnect(wh_rserver *s);
void rs_on_watchdog(uv_timer_t *t);
void rs_load_scripts(wh_rserver *s);

/* rs_fetch.c -- fetch, prefetch, blocking fetch, reconcile */
void rs_pump(wh_rserver *s);
wh_job *rs_deliver(wh_rserver *s, size_t qi, const char *p, size_t len);
void rs_hand_over(wh_rserver *s, wh_job **jobs, size_t n);
void rs_held_free(held *h);

/* rs_ack.c -- outcomes: decided on worker threads, recorded in batches */
bool rs_push_ack(wh_rserver *s, ack *a, bool urgent); /* any thread */
void rs_free_ack(ack *a);
void rs_flush_acks(wh_rserver *s);
void rs_on_flush_timer(uv_timer_t *t);

/* rs_sched.c -- the scheduler: schedule and retry -> their queues */
void rs_on_scheduler(uv_timer_t *t);

/* rs_beat.c -- heartbeat, signals, reload, the key layout and the registry */
void rs_build_info(wh_rserver *s);
void rs_heartbeat(wh_rserver *s);
void rs_on_heartbeat(uv_timer_t *t);
void rs_on_signals(uv_timer_t *t);
void rs_migrate_now(wh_rserver *s);
void rs_register_now(wh_rserver *s);
void rs_lost_registration(wh_rserver *s, const char *what);
void rs_on_retry_timer(uv_timer_t *t);

/* rs_reap.c -- the reaper of dead processes' in-flight jobs */
void rs_reaper(wh_rserver *s);
void rs_on_reaper(uv_timer_t *t);

/* rs_stop.c -- the stop sequence (rs_stop_state) and the wake-up from other threads */
static inline bool rs_quiet(const wh_rserver *s) { return s->stop >= RS_QUIET; }
static inline bool rs_stopping(const wh_rserver *s) { return s->stop >= RS_DRAINING; }
static inline bool rs_closed(const wh_rserver *s) { return s->stop == RS_CLOSED; }
void rs_stop_quiet(wh_rserver *s);        /* RUNNING -> QUIET (blockers left as they are) */
void rs_stop_step(wh_rserver *s);         /* moves the sequence on as far as it can now */
void rs_stop_conn_lost(wh_rserver *s);    /* REQUEUEING, LEAVING -> DRAINING */
void rs_on_wake(uv_async_t *h);

#endif
