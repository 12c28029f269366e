/* pool.h -- a thread-safe pool of synchronous Redis clients, for enqueueing
 * into BackgroundQueue from a running host: wh_host_enqueue (any thread)
 * and wh.enqueue inside jobs (every worker thread).
 *
 * A caller takes an idle client, or connects a new one when none is idle
 * (so concurrent callers never wait on each other's round trips), pushes,
 * and gives it back; at most `max_idle` stay open. A client whose call
 * failed on the connection is closed, not given back. Calls are bounded by
 * the timeout (connect, and each command): with Redis unreachable, a push
 * fails with WH_EUNAVAIL within about that long. */
#ifndef WH_REDIS_POOL_H
#define WH_REDIS_POOL_H

#include <stddef.h>

#include "core/err.h"
#include "redis/client.h"

typedef struct wh_redis_pool wh_redis_pool; /* opaque */

/* uri (queue.uri) and ns (queue.namespace, NULL or "" for none) are copied.
 * Connects lazily. Owned: wh_redis_pool_free. WH_ECONFIG for a bad URI. */
int wh_redis_pool_new(const char *uri, const char *ns, double timeout_s, size_t max_idle, wh_redis_pool **out,
                      wh_err *err);

/* Closes every idle client and frees the pool; no push may be running.
 * Accepts NULL. */
void wh_redis_pool_free(wh_redis_pool *p);

/* Pushes n items (borrowed) as wh_redis_client_push_bulk does (n == 1: as
 * wh_redis_client_push). Any thread. Errors as those functions. */
int wh_redis_pool_push(wh_redis_pool *p, const wh_redis_item *items, size_t n, wh_err *err);

#endif
