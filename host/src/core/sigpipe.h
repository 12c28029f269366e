/* sigpipe.h -- writes to a socket its peer has closed must fail with EPIPE,
 * never kill the process with SIGPIPE.
 *
 * hiredis 0.14 writes with write(2), which raises SIGPIPE when Redis has
 * closed the connection (CLIENT KILL, a `timeout`, a proxy, a failover), and
 * SIGPIPE's default action ends the process without a word. So:
 *   - every thread workerhost creates calls wh_sigpipe_block_thread() first
 *     (the I/O thread, worker threads, the scheduler, the file watcher);
 *   - calls that write to Redis on the caller's thread (the synchronous
 *     client behind wh_host_enqueue, the CLI and the Lua client) run inside
 *     wh_sigpipe_enter/leave, which block SIGPIPE for the call and discard
 *     one it raised, leaving the thread's mask and pending set as they were;
 *   - the `workerhost` command ignores SIGPIPE process-wide.
 * Threads an embedder creates are the embedder's: the guard covers our own
 * calls on them; its own sockets are its own concern (README, "The C API"). */
#ifndef WH_SIGPIPE_H
#define WH_SIGPIPE_H

#include <signal.h>
#include <stdbool.h>

/* Blocks SIGPIPE on the calling thread, for good. */
void wh_sigpipe_block_thread(void);

typedef struct wh_sigpipe_guard {
    sigset_t old_mask;
    bool was_pending; /* a SIGPIPE was already pending: not ours to discard */
    bool active;
} wh_sigpipe_guard;

/* Blocks SIGPIPE on this thread until wh_sigpipe_leave. */
void wh_sigpipe_enter(wh_sigpipe_guard *g);

/* Discards a SIGPIPE raised since wh_sigpipe_enter and restores the mask. */
void wh_sigpipe_leave(wh_sigpipe_guard *g);

#endif
