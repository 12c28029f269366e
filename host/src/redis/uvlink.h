/* uvlink.h -- attaches a hiredis async context to a libuv loop.
 *
 * Our own adapter instead of hiredis's adapters/libuv.h (0.14), for two
 * reasons measured on this code:
 *
 *  - Errors. libuv reports POLLERR as status UV_EBADF and stops the handle;
 *    the stock adapter ignores any status, so a refused connect or a reset
 *    socket was never seen by hiredis: the connection hung until our
 *    watchdog dropped it, and "cannot connect" was never logged. Here an
 *    error status runs hiredis's read (or, while connecting, write) handler,
 *    which finds the socket error and reports it through the connect or
 *    disconnect callback.
 *  - Syscalls. The stock adapter calls uv_poll_start on every add/del of
 *    read or write interest: two to four epoll_ctl per command. Here the
 *    poll is re-armed only when the interest set changes, and commands are
 *    not written as they are queued: a link with output waiting is flushed
 *    once per loop iteration (a uv_prepare handle, just before the loop
 *    waits), so every command queued in one iteration leaves in one write.
 *    Only output the socket would not take at once arms write interest.
 *
 * Runs on the loop's thread only, like the context itself. */
#ifndef WH_UVLINK_H
#define WH_UVLINK_H

#include <hiredis/async.h>
#include <uv.h>

/* Attaches ac (not yet attached to anything) to loop. The link is owned by
 * the context: hiredis's cleanup hook closes its handles and frees it (after
 * the loop runs their close callbacks). Returns REDIS_OK or REDIS_ERR. */
int wh_uvlink_attach(redisAsyncContext *ac, uv_loop_t *loop);

#endif
