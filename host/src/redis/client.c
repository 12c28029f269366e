/* client.c -- the synchronous Redis client: connect and log in, push jobs in
 * Sidekiq's layout (single and pipelined bulk), read the stats; see client.h.
 * SPDX-License-Identifier: MIT */
#include "redis/client.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "core/clock.h"
#include "core/mem.h"
#include "core/sigpipe.h"
#include "json/json.h"
#include "redis/keys.h"
#include "redis/scripts.h"

#define BULK_CHUNK 1000 /* payloads per variadic LPUSH/ZADD, as Sidekiq 7.1+ slices */

struct wh_redis_client {
    redisContext *ctx; /* NULL after a connection error: the next call reconnects */
    wh_redis_uri uri;  /* owned copy */
    char *ns;          /* owned, or NULL */
    double timeout;
    struct timeval tv;
    char shown[320];   /* the URI, redacted */
};

const char *wh_redis_client_uri_shown(const wh_redis_client *c) { return c->shown; }
const char *wh_redis_client_namespace(const wh_redis_client *c) { return c->ns; }

const char *wh_redis_client_key(const wh_redis_client *c, wh_buf *out, const char *fmt, ...) {
    wh_buf_reset(out);
    if (c->ns) {
        wh_buf_puts(out, c->ns);
        wh_buf_putc(out, ':');
    }
    va_list ap;
    va_start(ap, fmt);
    wh_buf_vprintf(out, fmt, ap);
    va_end(ap);
    return wh_buf_cstr(out);
}

/* ---- errors ---- */

/* Copies a server error text into dst, with every occurrence of the
 * password replaced by "***" (Redis does not echo passwords today; this
 * keeps it so if some version or proxy does). */
static void scrub(const wh_redis_client *c, const char *text, char *dst, size_t n) {
    const char *pw = c->uri.password;
    size_t pwlen = pw ? strlen(pw) : 0, o = 0;
    for (const char *s = text; *s && o + 1 < n;) {
        if (pwlen && strncmp(s, pw, pwlen) == 0) {
            for (const char *r = "***"; *r && o + 1 < n; r++) dst[o++] = *r;
            s += pwlen;
        } else {
            dst[o++] = *s++;
        }
    }
    dst[o] = '\0';
}

static void drop_connection(wh_redis_client *c) {
    if (c->ctx) redisFree(c->ctx);
    c->ctx = NULL;
}

/* The connection failed (I/O error, EOF, timeout): drop it and report
 * WH_EUNAVAIL as "<what> <uri>: <cause>". */
static int io_fail(wh_redis_client *c, const char *what, wh_err *err) {
    char cause[160];
    if (c->ctx == NULL) {
        snprintf(cause, sizeof cause, "out of memory");
    } else if (c->ctx->err == REDIS_ERR_EOF) {
        snprintf(cause, sizeof cause, "the server closed the connection");
    } else if (c->ctx->err == REDIS_ERR_IO &&
               (strcmp(c->ctx->errstr, strerror(EAGAIN)) == 0 || strcmp(c->ctx->errstr, strerror(EWOULDBLOCK)) == 0 ||
                strcmp(c->ctx->errstr, strerror(ETIMEDOUT)) == 0)) {
        snprintf(cause, sizeof cause, "no answer within %g s (timed out)", c->timeout);
    } else {
        snprintf(cause, sizeof cause, "%s", c->ctx->errstr[0] ? c->ctx->errstr : "I/O error");
    }
    drop_connection(c);
    return wh_err_set(err, WH_EUNAVAIL, "%s %s: %s", what, c->shown, cause);
}

/* An error reply: login problems are configuration errors, anything else
 * (OOM, READONLY, WRONGTYPE, LOADING, ...) makes the backend unavailable
 * for this call. */
static int reply_fail(wh_redis_client *c, const char *what, const redisReply *r, wh_err *err) {
    char text[512];
    scrub(c, r->str ? r->str : "error", text, sizeof text);
    if (strncmp(text, "NOAUTH", 6) == 0)
        return wh_err_set(err, WH_ECONFIG,
                          "%s %s: authentication required (%s); put the password in queue.uri "
                          "(redis://:password@host or redis://user:password@host)",
                          what, c->shown, text);
    if (strncmp(text, "WRONGPASS", 9) == 0 || strncmp(text, "NOPERM", 6) == 0)
        return wh_err_set(err, WH_ECONFIG, "%s %s: permission denied (%s)", what, c->shown, text);
    return wh_err_set(err, WH_EUNAVAIL, "%s %s: redis refused: %s", what, c->shown, text);
}

/* ---- pipelines ---- */

/* Appends one command to the output buffer (nothing is sent yet). */
static void append(wh_redis_client *c, int argc, const char **argv, const size_t *lens) {
    /* REDIS_ERR only when out of memory; then the replies will not come and
     * reading reports it */
    if (redisAppendCommandArgv(c->ctx, argc, argv, lens) != REDIS_OK) c->ctx->err = REDIS_ERR_OOM;
}

/* Sends what was appended and reads n replies. With out, the replies are
 * stored there (owned by the caller: freeReplyObject each, also error
 * replies); without, they are checked (the first error reply is reported,
 * the others are still read so the connection stays in step) and freed.
 * On an I/O error the replies read so far are freed and out is zeroed. */
static int read_replies(wh_redis_client *c, size_t n, redisReply **out, const char *what, wh_err *err) {
    int rc = 0;
    if (c->ctx->err) return io_fail(c, what, err);
    for (size_t i = 0; i < n; i++) {
        void *r = NULL;
        /* redisGetReply writes what was appended: on the caller's thread,
         * which may be an embedder's, so SIGPIPE is held off here */
        wh_sigpipe_guard g;
        wh_sigpipe_enter(&g);
        int got = redisGetReply(c->ctx, &r);
        wh_sigpipe_leave(&g);
        if (got != REDIS_OK || r == NULL) {
            if (out)
                for (size_t k = 0; k < i; k++) {
                    freeReplyObject(out[k]);
                    out[k] = NULL;
                }
            return io_fail(c, what, err);
        }
        if (out) {
            out[i] = r;
        } else {
            if (rc == 0 && ((redisReply *)r)->type == REDIS_REPLY_ERROR) rc = reply_fail(c, what, r, err);
            freeReplyObject(r);
        }
    }
    return rc;
}

static void free_replies(redisReply **r, size_t n) {
    if (r == NULL) return;
    for (size_t i = 0; i < n; i++)
        if (r[i]) freeReplyObject(r[i]);
    wh_free(r);
}

/* ---- connecting ---- */

static int handshake(wh_redis_client *c, wh_err *err) {
    const char *what = "cannot connect to";
    wh_buf key = WH_BUF_INIT;
    size_t n = 0;
    if (c->uri.password) {
        const char *argv[3] = {"AUTH"};
        size_t lens[3] = {4};
        int argc = 1;
        if (c->uri.user) {
            argv[argc] = c->uri.user;
            lens[argc++] = strlen(c->uri.user);
        }
        argv[argc] = c->uri.password;
        lens[argc++] = strlen(c->uri.password);
        append(c, argc, argv, lens);
        n++;
    }
    char db[16];
    snprintf(db, sizeof db, "%d", c->uri.db);
    if (c->uri.db != 0) {
        const char *argv[2] = {"SELECT", db};
        size_t lens[2] = {6, strlen(db)};
        append(c, 2, argv, lens);
        n++;
    }
    /* the key layout: written on a new Redis, migrated from layout 1 when no
     * host of that layout is alive, refused otherwise (scripts.h, MIGRATE) */
    wh_redis_client_key(c, &key, "%s", ""); /* the key prefix: "ns:" or "" */
    wh_script_args margs;
    wh_script_migrate_args(key.data, &margs);
    const char *ev[2 + WH_MIGRATE_NARGS] = {"EVAL", wh_script_migrate};
    size_t evl[2 + WH_MIGRATE_NARGS] = {4, strlen(wh_script_migrate)};
    for (int k = 0; k < WH_MIGRATE_NARGS; k++) ev[2 + k] = margs.v[k], evl[2 + k] = margs.l[k];
    append(c, 2 + WH_MIGRATE_NARGS, ev, evl); /* copied into hiredis's buffer */
    n++;
    wh_script_args_free(&margs);
    wh_buf_free(&key);

    redisReply **r = wh_xcalloc(n, sizeof *r);
    int rc = read_replies(c, n, r, what, err);
    if (rc) {
        wh_free(r);
        return rc;
    }
    size_t i = 0;
    char text[512];
    if (c->uri.password) {
        if (r[i]->type == REDIS_REPLY_ERROR) {
            scrub(c, r[i]->str, text, sizeof text);
            rc = wh_err_set(err, WH_ECONFIG, "cannot log in to %s: authentication failed (%s)", c->shown, text);
        }
        i++;
    }
    if (rc == 0 && c->uri.db != 0) {
        if (r[i]->type == REDIS_REPLY_ERROR) {
            if (strncmp(r[i]->str, "NOAUTH", 6) == 0) {
                rc = reply_fail(c, "cannot log in to", r[i], err);
            } else {
                scrub(c, r[i]->str, text, sizeof text);
                rc = wh_err_set(err, WH_ECONFIG, "cannot select database %d on %s (%s)", c->uri.db, c->shown, text);
            }
        }
        i++;
    }
    if (rc == 0) {
        const redisReply *m = r[i];
        /* a read-only replica can still serve stats: its refusal to write
         * the version of a new Redis is not fatal */
        if (m->type == REDIS_REPLY_ERROR && strncmp(m->str, "READONLY", 8) != 0)
            rc = reply_fail(c, "cannot connect to", m, err);
        else if (m->type == REDIS_REPLY_STRING && strncmp(m->str, "live ", 5) == 0)
            rc = wh_err_set(err, WH_ECONFIG,
                            "%s holds workerhost keys of layout version 1, in use by a running host of an older "
                            "workerhost (%.200s); stop every older host, then start again: this build moves "
                            "the keys to layout %s once none of them runs",
                            c->shown, m->str + 5, WH_KEY_VERSION_VALUE);
        else if (m->type == REDIS_REPLY_STRING && strncmp(m->str, "version ", 8) == 0)
            rc = wh_err_set(err, WH_ECONFIG,
                            "%s holds workerhost keys of layout version %.32s (key %s%s%s); this build "
                            "reads and writes version %s",
                            c->shown, m->str + 8, c->ns ? c->ns : "", c->ns ? ":" : "", WH_KEY_VERSION,
                            WH_KEY_VERSION_VALUE);
    }
    for (size_t k = 0; k < n; k++) freeReplyObject(r[k]);
    wh_free(r);
    return rc;
}

static int open_connection(wh_redis_client *c, wh_err *err) {
    redisContext *ctx = c->uri.path ? redisConnectUnixWithTimeout(c->uri.path, c->tv)
                                    : redisConnectWithTimeout(c->uri.host, c->uri.port, c->tv);
    if (ctx == NULL) return wh_err_set(err, WH_EUNAVAIL, "cannot connect to %s: out of memory", c->shown);
    if (ctx->err) {
        char cause[160];
        snprintf(cause, sizeof cause, "%s", ctx->errstr);
        redisFree(ctx);
        if (strcmp(cause, strerror(EINPROGRESS)) == 0 || strcmp(cause, strerror(ETIMEDOUT)) == 0)
            snprintf(cause, sizeof cause, "no answer within %g s (timed out)", c->timeout);
        return wh_err_set(err, WH_EUNAVAIL, "cannot connect to %s: %s", c->shown, cause);
    }
    c->ctx = ctx;
    if (redisSetTimeout(ctx, c->tv) != REDIS_OK || (!c->uri.path && redisEnableKeepAlive(ctx) != REDIS_OK))
        return io_fail(c, "cannot connect to", err);
    int rc = handshake(c, err);
    if (rc) drop_connection(c);
    return rc;
}

static int ensure_connected(wh_redis_client *c, wh_err *err) {
    if (c->ctx && c->ctx->err) drop_connection(c);
    return c->ctx ? 0 : open_connection(c, err);
}

int wh_redis_client_connect(const wh_redis_uri *uri, const char *ns, double timeout_s, wh_redis_client **out,
                            wh_err *err) {
    *out = NULL;
    if (uri == NULL || (uri->host == NULL && uri->path == NULL))
        return wh_err_set(err, WH_EINVAL, "wh_redis_client_connect: no URI");
    if (!(timeout_s > 0) || !isfinite(timeout_s) || timeout_s > 86400)
        return wh_err_set(err, WH_EINVAL, "wh_redis_client_connect: the timeout must be > 0 and finite");
    wh_redis_client *c = wh_xcalloc(1, sizeof *c);
    wh_redis_uri_copy(&c->uri, uri);
    c->ns = ns && ns[0] ? wh_xstrdup(ns) : NULL;
    c->timeout = timeout_s;
    c->tv.tv_sec = (time_t)timeout_s;
    c->tv.tv_usec = (suseconds_t)((timeout_s - (double)c->tv.tv_sec) * 1e6);
    wh_redis_uri_redacted(&c->uri, c->shown, sizeof c->shown);
    int rc = open_connection(c, err);
    if (rc) {
        wh_redis_client_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void wh_redis_client_free(wh_redis_client *c) {
    if (c == NULL) return;
    drop_connection(c);
    wh_redis_uri_free(&c->uri);
    wh_free(c->ns);
    wh_free(c);
}

/* ---- push ---- */

static void score_text(double at, char out[64]) { snprintf(out, 64, "%.6f", at); }

int wh_redis_client_push(wh_redis_client *c, const wh_redis_item *item, wh_err *err) {
    wh_buf key = WH_BUF_INIT;
    int rc = ensure_connected(c, err);
    if (rc) return rc;
    size_t n;
    if (item->at > 0) {
        char score[64];
        score_text(item->at, score);
        wh_redis_client_key(c, &key, "%s", WH_KEY_SCHEDULE);
        const char *argv[4] = {"ZADD", key.data, score, item->payload};
        size_t lens[4] = {4, key.len, strlen(score), item->len};
        append(c, 4, argv, lens);
        n = 1;
    } else {
        wh_redis_client_key(c, &key, "%s", WH_KEY_QUEUES);
        const char *sadd[3] = {"SADD", key.data, item->queue};
        size_t saddl[3] = {4, key.len, strlen(item->queue)};
        append(c, 3, sadd, saddl);
        wh_redis_client_key(c, &key, "%s%s", WH_KEY_QUEUE_PREFIX, item->queue);
        const char *lpush[3] = {"LPUSH", key.data, item->payload};
        size_t lpushl[3] = {5, key.len, item->len};
        append(c, 3, lpush, lpushl);
        n = 2;
    }
    wh_buf_free(&key);
    return read_replies(c, n, NULL, "cannot push to", err);
}

typedef struct span {
    size_t off, len;
} span;

int wh_redis_client_push_bulk(wh_redis_client *c, const wh_redis_item *items, size_t n, wh_err *err) {
    if (n == 0) return 0;
    wh_buf text = WH_BUF_INIT; /* every score, back to back */
    span *sc = wh_xcalloc(n, sizeof *sc);
    bool *sched = wh_xcalloc(n, sizeof *sched);
    const char **queues = wh_xcalloc(n, sizeof *queues); /* distinct, in first-seen order */
    size_t nq = 0, nsched = 0;
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        sched[i] = items[i].at > 0;
        if (sched[i]) {
            char score[64];
            score_text(items[i].at, score);
            sc[i].off = text.len;
            wh_buf_puts(&text, score);
            sc[i].len = text.len - sc[i].off;
            nsched++;
            continue;
        }
        size_t q = 0;
        while (q < nq && strcmp(queues[q], items[i].queue) != 0) q++;
        if (q == nq) queues[nq++] = items[i].queue;
    }
    if (rc == 0) rc = ensure_connected(c, err);
    if (rc == 0) {
        size_t maxargs = 2 + 2 * (BULK_CHUNK > nq ? BULK_CHUNK : nq);
        const char **argv = wh_xcalloc(maxargs, sizeof *argv);
        size_t *lens = wh_xcalloc(maxargs, sizeof *lens);
        wh_buf key = WH_BUF_INIT;
        size_t ncmds = 0;
        if (nq > 0) { /* SADD queues q1 q2 ... */
            wh_redis_client_key(c, &key, "%s", WH_KEY_QUEUES);
            argv[0] = "SADD", lens[0] = 4, argv[1] = key.data, lens[1] = key.len;
            for (size_t q = 0; q < nq; q++) argv[2 + q] = queues[q], lens[2 + q] = strlen(queues[q]);
            append(c, (int)(2 + nq), argv, lens);
            ncmds++;
        }
        for (size_t q = 0; q < nq; q++) { /* LPUSH queue:q p1 p2 ..., in chunks */
            wh_redis_client_key(c, &key, "%s%s", WH_KEY_QUEUE_PREFIX, queues[q]);
            size_t argc = 2;
            for (size_t i = 0; i <= n; i++) {
                bool take = i < n && !sched[i] && strcmp(items[i].queue, queues[q]) == 0;
                if (take) argv[argc] = items[i].payload, lens[argc++] = items[i].len;
                if (argc > 2 && (argc - 2 == BULK_CHUNK || i == n)) {
                    argv[0] = "LPUSH", lens[0] = 5, argv[1] = key.data, lens[1] = key.len;
                    append(c, (int)argc, argv, lens);
                    ncmds++;
                    argc = 2;
                }
            }
        }
        if (nsched > 0) { /* ZADD schedule s1 p1 s2 p2 ..., in chunks */
            wh_redis_client_key(c, &key, "%s", WH_KEY_SCHEDULE);
            size_t argc = 2;
            for (size_t i = 0; i <= n; i++) {
                if (i < n && sched[i]) {
                    argv[argc] = text.data + sc[i].off, lens[argc++] = sc[i].len;
                    argv[argc] = items[i].payload, lens[argc++] = items[i].len;
                }
                if (argc > 2 && ((argc - 2) / 2 == BULK_CHUNK || i == n)) {
                    argv[0] = "ZADD", lens[0] = 4, argv[1] = key.data, lens[1] = key.len;
                    append(c, (int)argc, argv, lens);
                    ncmds++;
                    argc = 2;
                }
            }
        }
        wh_buf_free(&key);
        wh_free(argv);
        wh_free(lens);
        /* the commands are in hiredis's buffer now: the scores can go */
        wh_buf_free(&text);
        rc = read_replies(c, ncmds, NULL, "cannot push to", err);
        if (rc) wh_err_prefix(err, "bulk push of %zu jobs failed (some may have been stored)", n);
    }
    wh_buf_free(&text);
    wh_free(sc);
    wh_free(sched);
    wh_free(queues);
    return rc;
}

/* ---- stats ---- */

static long long reply_int(const redisReply *r) {
    if (r == NULL) return 0;
    if (r->type == REDIS_REPLY_INTEGER) return r->integer;
    if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) return strtoll(r->str, NULL, 10);
    return 0;
}

static double reply_double(const redisReply *r) {
    if (r == NULL || r->type != REDIS_REPLY_STRING) return 0;
    double d = strtod(r->str, NULL);
    return isfinite(d) ? d : 0;
}

/* Seconds of a payload time: a float is seconds (Sidekiq <= 7), an integer
 * is milliseconds (Sidekiq 8). 0 if absent. */
static double payload_time(const wh_json *v) {
    if (v == NULL) return 0;
    if (v->type == WH_JSON_FLOAT) return isfinite(v->u.f.d) ? v->u.f.d : 0;
    if (v->type == WH_JSON_INT) return (double)v->u.i / 1000.0;
    return 0;
}

static double latency_of(const redisReply *r, double now) {
    if (r == NULL || r->type != REDIS_REPLY_STRING) return 0;
    wh_json_doc *doc = wh_json_parse(r->str, r->len, NULL, NULL);
    if (doc == NULL) return 0;
    double t = payload_time(wh_json_getz(wh_json_doc_root(doc), "enqueued_at"));
    wh_json_doc_free(doc);
    return t > 0 && now > t ? now - t : 0;
}

static int cmp_queue(const void *a, const void *b) {
    return strcmp(((const wh_redis_queue_stat *)a)->name, ((const wh_redis_queue_stat *)b)->name);
}

static int cmp_process(const void *a, const void *b) {
    return strcmp(((const wh_redis_process_stat *)a)->identity, ((const wh_redis_process_stat *)b)->identity);
}

static void append_key_cmd(wh_redis_client *c, wh_buf *key, const char *cmd, const char *extra) {
    const char *argv[3] = {cmd, key->data, extra};
    size_t lens[3] = {strlen(cmd), key->len, extra ? strlen(extra) : 0};
    append(c, extra ? 3 : 2, argv, lens);
}

/* Checks that a reply has the type wanted (or nil); else reports it. */
static int want(wh_redis_client *c, const redisReply *r, int type, wh_err *err) {
    if (r->type == type || r->type == REDIS_REPLY_NIL) return 0;
    if (r->type == REDIS_REPLY_ERROR) return reply_fail(c, "cannot read the stats from", r, err);
    return wh_err_set(err, WH_EUNAVAIL, "cannot read the stats from %s: unexpected reply type %d", c->shown, r->type);
}

static void read_process(wh_redis_process_stat *p, redisReply *const *f) {
    /* f: info, busy, beat, quiet */
    p->busy = reply_int(f[1]);
    p->beat = reply_double(f[2]);
    p->quiet = f[3]->type == REDIS_REPLY_STRING && strcmp(f[3]->str, "true") == 0;
    wh_json_doc *doc = wh_json_parse(f[0]->str, f[0]->len, NULL, NULL);
    if (doc == NULL) return;
    const wh_json *info = wh_json_doc_root(doc);
    const wh_json *v = wh_json_getz(info, "concurrency");
    if (v && v->type == WH_JSON_INT) p->concurrency = v->u.i;
    v = wh_json_getz(info, "pid");
    if (v && v->type == WH_JSON_INT) p->pid = v->u.i;
    v = wh_json_getz(info, "wh_generation");
    if (v && v->type == WH_JSON_INT) p->generation = v->u.i;
    v = wh_json_getz(info, "wh_reloaded_at");
    if (v && v->type == WH_JSON_FLOAT && isfinite(v->u.f.d)) p->reloaded_at = v->u.f.d;
        v = wh_json_getz(info, "hostname");
    if (v && v->type == WH_JSON_STRING) p->hostname = wh_xstrndup(v->u.str.s, v->u.str.len);
    wh_json_doc_free(doc);
}

/* true when the info JSON's "labels" array holds label */
static bool info_has_label(const char *info, size_t len, const char *label) {
    wh_json_doc *doc = wh_json_parse(info, len, NULL, NULL);
    bool yes = false;
    const wh_json *labels = doc ? wh_json_getz(wh_json_doc_root(doc), "labels") : NULL;
    if (labels && labels->type == WH_JSON_ARRAY)
        for (size_t i = 0; i < labels->u.arr.n && !yes; i++) {
            const wh_json *l = &labels->u.arr.items[i];
            yes = l->type == WH_JSON_STRING && l->u.str.len == strlen(label) && memcmp(l->u.str.s, label, l->u.str.len) == 0;
        }
    wh_json_doc_free(doc);
    return yes;
}

int wh_redis_client_signal_all(wh_redis_client *c, const char *signal, const char *label, const char *skip,
                               size_t *sent, wh_err *err) {
    *sent = 0;
    int rc = ensure_connected(c, err);
    if (rc) return rc;
    const char *what = "cannot signal the processes of";
    wh_buf key = WH_BUF_INIT;
    wh_redis_client_key(c, &key, "%s", WH_KEY_PROCESSES);
    append_key_cmd(c, &key, "SMEMBERS", NULL);
    redisReply *ps = NULL;
    rc = read_replies(c, 1, &ps, what, err);
    if (rc == 0) rc = want(c, ps, REDIS_REPLY_ARRAY, err);
    size_t n = rc == 0 ? ps->elements : 0;
    redisReply **infos = wh_xcalloc(n ? n : 1, sizeof *infos);
    for (size_t i = 0; i < n; i++) {
        wh_redis_client_key(c, &key, "%s", ps->element[i]->str);
        append_key_cmd(c, &key, "HGET", "info");
    }
    if (rc == 0 && n) rc = read_replies(c, n, infos, what, err);
    size_t k = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const char *id = ps->element[i]->str;
        if (skip && strncmp(id, skip, strlen(skip)) == 0) continue;
        if (label && !(infos[i]->type == REDIS_REPLY_STRING && info_has_label(infos[i]->str, infos[i]->len, label)))
            continue;
        wh_redis_client_key(c, &key, "%s-signals", id);
        const char *argv[] = {"LPUSH", wh_buf_cstr(&key), signal};
        append(c, 3, argv, NULL);
        k++;
    }
    if (rc == 0 && k) rc = read_replies(c, k, NULL, what, err);
    if (rc == 0) *sent = k;
    if (ps) freeReplyObject(ps);
    free_replies(infos, n);
    wh_buf_free(&key);
    return rc;
}

int wh_redis_client_stats(wh_redis_client *c, wh_redis_stats *out, wh_err *err) {
    memset(out, 0, sizeof *out);
    int rc = ensure_connected(c, err);
    if (rc) return rc;
    const char *what = "cannot read the stats from";
    wh_buf key = WH_BUF_INIT;

    /* round 1: counters, set sizes, and the three sets to walk */
    static const struct { const char *cmd, *key; int type; } r1[] = {
        {"GET", WH_KEY_PROCESSED, REDIS_REPLY_STRING}, {"GET", WH_KEY_FAILED, REDIS_REPLY_STRING},
        {"ZCARD", WH_KEY_SCHEDULE, REDIS_REPLY_INTEGER}, {"ZCARD", WH_KEY_RETRY, REDIS_REPLY_INTEGER},
        {"ZCARD", WH_KEY_DEAD, REDIS_REPLY_INTEGER},     {"SMEMBERS", WH_KEY_QUEUES, REDIS_REPLY_ARRAY},
        {"SMEMBERS", WH_KEY_PROCESSES, REDIS_REPLY_ARRAY}, {"SMEMBERS", WH_KEY_REGISTRY, REDIS_REPLY_ARRAY},
    };
    enum { N1 = sizeof r1 / sizeof r1[0] };
    for (size_t i = 0; i < N1; i++) {
        wh_redis_client_key(c, &key, "%s", r1[i].key);
        append_key_cmd(c, &key, r1[i].cmd, NULL);
    }
    redisReply **a = wh_xcalloc(N1, sizeof *a), **b = NULL, **d = NULL;
    size_t nb = 0, nd = 0;
    rc = read_replies(c, N1, a, what, err);
    for (size_t i = 0; i < N1 && rc == 0; i++) rc = want(c, a[i], r1[i].type, err);
    out->now = wh_clock_wall();
    if (rc == 0) {
        out->processed = reply_int(a[0]);
        out->failed = reply_int(a[1]);
        out->scheduled = reply_int(a[2]);
        out->retries = reply_int(a[3]);
        out->dead = reply_int(a[4]);
    }
    const redisReply *qs = a[5], *ps = a[6], *ids = a[7];
    size_t nqs = rc == 0 && qs->type == REDIS_REPLY_ARRAY ? qs->elements : 0;
    size_t nps = rc == 0 && ps->type == REDIS_REPLY_ARRAY ? ps->elements : 0;
    size_t nids = rc == 0 && ids->type == REDIS_REPLY_ARRAY ? ids->elements : 0;

    /* round 2: each queue's size and oldest job, each process's hash, each
     * registered process's in-flight queue names */
    if (rc == 0 && nqs + nps + nids > 0) {
        for (size_t i = 0; i < nqs; i++) {
            wh_redis_client_key(c, &key, "%s%s", WH_KEY_QUEUE_PREFIX, qs->element[i]->str);
            append_key_cmd(c, &key, "LLEN", NULL);
            append_key_cmd(c, &key, "LINDEX", "-1");
        }
        for (size_t i = 0; i < nps; i++) {
            wh_redis_client_key(c, &key, "%s", ps->element[i]->str);
            const char *argv[6] = {"HMGET", key.data, "info", "busy", "beat", "quiet"};
            size_t lens[6] = {5, key.len, 4, 4, 4, 5};
            append(c, 6, argv, lens);
        }
        for (size_t i = 0; i < nids; i++) {
            wh_redis_client_key(c, &key, "%s%s", WH_KEY_QUEUES_OF_PREFIX, ids->element[i]->str);
            append_key_cmd(c, &key, "SMEMBERS", NULL);
        }
        nb = 2 * nqs + nps + nids;
        b = wh_xcalloc(nb, sizeof *b);
        rc = read_replies(c, nb, b, what, err);
    }
    if (rc == 0 && nqs > 0) {
        out->queues = wh_xcalloc(nqs, sizeof *out->queues);
        for (size_t i = 0; i < nqs && rc == 0; i++) {
            rc = want(c, b[2 * i], REDIS_REPLY_INTEGER, err);
            if (rc == 0) rc = want(c, b[2 * i + 1], REDIS_REPLY_STRING, err);
            if (rc) break;
            wh_redis_queue_stat *q = &out->queues[out->nqueues++];
            q->name = wh_xstrdup(qs->element[i]->str);
            q->size = reply_int(b[2 * i]);
            q->latency = latency_of(b[2 * i + 1], out->now);
            out->enqueued += q->size;
        }
        qsort(out->queues, out->nqueues, sizeof *out->queues, cmp_queue);
    }
    if (rc == 0 && nps > 0) {
        out->processes = wh_xcalloc(nps, sizeof *out->processes);
        for (size_t i = 0; i < nps && rc == 0; i++) {
            const redisReply *h = b[2 * nqs + i];
            rc = want(c, h, REDIS_REPLY_ARRAY, err);
            if (rc || h->type != REDIS_REPLY_ARRAY || h->elements != 4 || h->element[0]->type != REDIS_REPLY_STRING)
                continue; /* no info: gone (ProcessSet skips it too) */
            wh_redis_process_stat *p = &out->processes[out->nprocesses++];
            p->identity = wh_xstrdup(ps->element[i]->str);
            read_process(p, h->element);
            out->busy += p->busy;
        }
        qsort(out->processes, out->nprocesses, sizeof *out->processes, cmp_process);
    }

    /* round 3: the length of every in-flight list */
    if (rc == 0 && nids > 0) {
        for (size_t i = 0; i < nids && rc == 0; i++) {
            const redisReply *m = b[2 * nqs + nps + i];
            rc = want(c, m, REDIS_REPLY_ARRAY, err);
            if (rc || m->type != REDIS_REPLY_ARRAY) continue;
            for (size_t k = 0; k < m->elements; k++) {
                wh_redis_client_key(c, &key, "%s%s:%s", WH_KEY_INFLIGHT_PREFIX, ids->element[i]->str,
                                    m->element[k]->str);
                append_key_cmd(c, &key, "LLEN", NULL);
                nd++;
            }
        }
        if (rc == 0 && nd > 0) {
            d = wh_xcalloc(nd, sizeof *d);
            rc = read_replies(c, nd, d, what, err);
            for (size_t i = 0; i < nd && rc == 0; i++) {
                rc = want(c, d[i], REDIS_REPLY_INTEGER, err);
                out->in_flight += reply_int(d[i]);
            }
        } else if (rc && nd > 0) {
            /* commands were appended but will not be read: the connection is out of step */
            drop_connection(c);
        }
    }
    wh_buf_free(&key);
    free_replies(a, N1);
    free_replies(b, nb);
    free_replies(d, nd);
    if (rc) wh_redis_stats_free(out);
    return rc;
}

void wh_redis_stats_free(wh_redis_stats *s) {
    if (s == NULL) return;
    for (size_t i = 0; i < s->nqueues; i++) wh_free(s->queues[i].name);
    for (size_t i = 0; i < s->nprocesses; i++) {
        wh_free(s->processes[i].identity);
        wh_free(s->processes[i].hostname);
    }
    wh_free(s->queues);
    wh_free(s->processes);
    memset(s, 0, sizeof *s);
}
