/* client.h -- a synchronous Redis client for the enqueue side of
 * BackgroundQueue: pushing jobs as Sidekiq's client writes them, and reading
 * what Sidekiq::Stats reads. Used by `workerhost enqueue`, `workerhost
 * stats` and the Lua `workerhost.connect` client.
 * SPDX-License-Identifier: MIT
 *
 * One wh_redis_client is one connection (hiredis's blocking API, Debian's
 * hiredis 0.14). It is NOT thread-safe: one thread at a time, or one client
 * per thread. Every call is bounded by the timeout given to connect: the
 * connect itself, and each command's reads and writes (a half-open socket
 * or a stopped server fails the call after that long; TCP keepalive is on).
 * After a connection error the client reconnects (AUTH, SELECT) on its next
 * call, once; a failed call is never retried by the client.
 *
 * Keys follow redis/keys.h. With a namespace "ns" every key is "ns:<key>";
 * set members and values are never prefixed (Sidekiq 6's redis-namespace).
 *
 * Errors: WH_EUNAVAIL when Redis cannot be reached or a connection fails
 * ("cannot connect to redis://127.0.0.1:1/0: Connection refused"),
 * WH_ECONFIG when Redis refuses the login or the database ("authentication
 * failed (WRONGPASS ...)"), WH_EINVAL for a bad argument. Messages name the URI redacted (wh_redis_uri_redacted); no
 * message ever contains the password. */
#ifndef WH_REDIS_CLIENT_H
#define WH_REDIS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"
#include "core/err.h"
#include "redis/uri.h"

typedef struct wh_redis_client wh_redis_client; /* opaque */

/* One payload to push, all borrowed: the caller has written the payload in
 * the shape its destination wants (app/job.h: wh_job_redis_items).
 *   at > 0: ZADD schedule <at, "%.6f"> <payload> (a scheduled job);
 *   at <= 0: SADD queues <queue>; LPUSH queue:<queue> <payload>. */
typedef struct wh_redis_item {
    const char *queue;   /* NUL-terminated */
    const char *payload; /* len bytes */
    size_t len;
    double at; /* epoch seconds to schedule at, or 0: push to the queue now */
} wh_redis_item;

/* Connects to uri (copied; the caller keeps its own), with at most
 * timeout_s seconds (> 0) for the connect and then for each command; sends
 * AUTH (ACL "AUTH user pass", or "AUTH pass") when the URI has a password,
 * SELECT db, and SET wh:version 1 NX (namespaced). namespace_or_NULL: NULL
 * or "" for none; copied.
 * On success *out is owned: free with wh_redis_client_free.
 * Errors: WH_EUNAVAIL (unreachable, timed out, connection lost), WH_ECONFIG
 * (login refused, bad database, or a wh:version this build does not write),
 * WH_EINVAL (bad timeout). */
int wh_redis_client_connect(const wh_redis_uri *uri, const char *namespace_or_NULL, double timeout_s,
                            wh_redis_client **out, wh_err *err);

/* Closes the connection and frees the client. Accepts NULL. */
void wh_redis_client_free(wh_redis_client *c);

/* The URI with the password hidden, for messages. Borrowed from c. */
const char *wh_redis_client_uri_shown(const wh_redis_client *c);

/* The namespace, or NULL. Borrowed from c. */
const char *wh_redis_client_namespace(const wh_redis_client *c);

/* Builds a key: resets out, writes "ns:" (when c has a namespace) and then
 * the printf-formatted key. Returns wh_buf_cstr(out) (borrowed from out).
 *   wh_redis_client_key(c, &k, "%s%s", WH_KEY_QUEUE_PREFIX, "default") */
const char *wh_redis_client_key(const wh_redis_client *c, wh_buf *out, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Pushes one item as Sidekiq's client does:
 *   item->at > 0: ZADD schedule <at, "%.6f"> <payload>;
 *   else, pipelined: SADD queues <queue>; LPUSH queue:<queue> <payload>.
 * Borrows item. Returns 0, or WH_EUNAVAIL (the job may or may not have been
 * stored when the connection broke mid-way), WH_ECONFIG (Redis refused the
 * command: wrong key type, read-only replica, ...). */
int wh_redis_client_push(wh_redis_client *c, const wh_redis_item *item, wh_err *err);

/* Pushes n items in one pipeline: every command is sent, then every reply is
 * read. As Sidekiq's push_bulk: one SADD of every queue named, then per
 * queue a variadic LPUSH (at most 1000 payloads per command) in the order
 * given, so items[0] is popped first; scheduled items (at > 0) go to ZADD
 * schedule in the same pipeline. Items may name different queues. n == 0
 * does nothing. Borrows the items. Errors as wh_redis_client_push; on a
 * failure some of the jobs may have been stored (the message says so). */
int wh_redis_client_push_bulk(wh_redis_client *c, const wh_redis_item *items, size_t n, wh_err *err);

/* Pushes `signal` (LPUSH <identity>-signals, as Sidekiq's Web UI does for
 * TSTP and TERM) to every process in `processes` whose heartbeat info lists
 * the label `label` (NULL: every process), except those whose identity
 * starts with `skip` (NULL: none). Sets *sent to how many were signalled. Errors as push. */
int wh_redis_client_signal_all(wh_redis_client *c, const char *signal, const char *label, const char *skip,
                               size_t *sent, wh_err *err);

/* ---- stats: what Sidekiq::Stats and ProcessSet read (sidekiq-compat §5, §6) ---- */

typedef struct wh_redis_queue_stat {
    char *name;         /* owned by the stats */
    long long size;     /* LLEN queue:<name> */
    double latency;     /* seconds since the oldest job's enqueued_at; 0 when empty or unknown */
} wh_redis_queue_stat;

typedef struct wh_redis_process_stat {
    char *identity;     /* owned; "<hostname>:<pid>:<nonce>" */
    char *hostname;     /* owned; from info, or NULL */
    long long pid;      /* from info, or 0 */
    long long busy;     /* the hash's busy */
    long long concurrency; /* from info */
    bool quiet;         /* quiet == "true" */
    double beat;        /* epoch seconds of the last heartbeat; 0 if unknown */
    long long generation; /* workerhost: the worker code's generation (info's wh_generation); 0 if none */
    double reloaded_at;   /* workerhost: when it began (info's wh_reloaded_at); 0 if never reloaded */
} wh_redis_process_stat;

typedef struct wh_redis_stats {
    double now;                  /* epoch seconds the latencies were measured at */
    long long processed, failed; /* stat:processed, stat:failed */
    long long scheduled, retries, dead; /* ZCARD schedule, retry, dead */
    long long enqueued;          /* sum of the queue sizes */
    long long in_flight;         /* jobs in every wh:inflight:<id>:<q> of the registry */
    long long busy;              /* sum of the processes' busy */
    wh_redis_queue_stat *queues; /* owned; sorted by name */
    size_t nqueues;
    wh_redis_process_stat *processes; /* owned; sorted by identity; those without info skipped */
    size_t nprocesses;
} wh_redis_stats;

/* Reads the stats in three pipelined round trips. *out is owned: free with
 * wh_redis_stats_free (also after a failure; then it is empty).
 * Errors: WH_EUNAVAIL, WH_ECONFIG (a key of the wrong type). */
int wh_redis_client_stats(wh_redis_client *c, wh_redis_stats *out, wh_err *err);

void wh_redis_stats_free(wh_redis_stats *s); /* accepts NULL */

#endif
