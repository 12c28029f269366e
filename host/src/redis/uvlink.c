/* uvlink.c -- see uvlink.h. */
#include "redis/uvlink.h"

#include <stdbool.h>

#include "core/mem.h"

typedef struct link {
    redisAsyncContext *ac; /* NULL once hiredis has cleaned up */
    uv_poll_t poll;
    uv_prepare_t flush;
    int want;              /* UV_READABLE | UV_WRITABLE, as hiredis asked */
    int armed;             /* what the poll handle is started with */
    bool flush_due;        /* output queued: write it before the loop waits */
    bool flushing;         /* inside our own call of redisAsyncHandleWrite */
    int closing;           /* handles whose close callback is still due */
} link;

static bool connected(const link *l) { return l->ac && (l->ac->c.flags & REDIS_CONNECTED); }

static void on_poll(uv_poll_t *h, int status, int events);

/* Brings the poll handle in line with what is wanted: read interest, and
 * write interest only while connecting or while the socket was full. */
static void rearm(link *l) {
    if (l->ac == NULL) return;
    int ev = l->want & UV_READABLE;
    if ((l->want & UV_WRITABLE) && (!connected(l) || !l->flush_due)) ev |= UV_WRITABLE;
    if (ev == l->armed) return;
    l->armed = ev;
    if (ev) uv_poll_start(&l->poll, ev, on_poll);
    else uv_poll_stop(&l->poll);
}

static void on_poll(uv_poll_t *h, int status, int events) {
    link *l = h->data;
    if (status < 0) {
        /* POLLERR (libuv stopped the handle): let hiredis find the error */
        l->armed = 0;
        events = connected(l) ? UV_READABLE : UV_WRITABLE;
    }
    if (l->ac && (events & UV_READABLE)) redisAsyncHandleRead(l->ac);
    if (l->ac && (events & UV_WRITABLE)) {
        l->flushing = true;
        redisAsyncHandleWrite(l->ac);
        l->flushing = false;
    }
    rearm(l);
}

static void on_flush(uv_prepare_t *h) {
    link *l = h->data;
    uv_prepare_stop(&l->flush);
    if (!l->flush_due || l->ac == NULL) return;
    l->flush_due = false;
    l->flushing = true;
    redisAsyncHandleWrite(l->ac); /* may free the context (write error) */
    l->flushing = false;
    rearm(l);
}

static void add_read(void *p) {
    link *l = p;
    l->want |= UV_READABLE;
    if (!l->flushing) rearm(l);
}

static void del_read(void *p) {
    link *l = p;
    l->want &= ~UV_READABLE;
    if (!l->flushing) rearm(l);
}

static void add_write(void *p) {
    link *l = p;
    l->want |= UV_WRITABLE;
    if (connected(l) && !l->flushing) {
        /* a new command: written by on_flush before the loop next waits */
        if (!l->flush_due) {
            l->flush_due = true;
            uv_prepare_start(&l->flush, on_flush);
        }
        return;
    }
    /* connecting (writable = connected), or the socket did not take all the
     * output: wait for it to be writable */
    if (!l->flushing) rearm(l);
}

static void del_write(void *p) {
    link *l = p;
    l->want &= ~UV_WRITABLE;
    if (!l->flushing) rearm(l);
}

static void on_closed(uv_handle_t *h) {
    link *l = h->data;
    if (--l->closing == 0) wh_free(l);
}

static void cleanup(void *p) {
    link *l = p;
    l->ac = NULL;
    l->closing = 2;
    uv_close((uv_handle_t *)&l->poll, on_closed);
    uv_close((uv_handle_t *)&l->flush, on_closed);
}

int wh_uvlink_attach(redisAsyncContext *ac, uv_loop_t *loop) {
    if (ac->ev.data != NULL) return REDIS_ERR;
    link *l = wh_xcalloc(1, sizeof *l);
    if (uv_poll_init(loop, &l->poll, ac->c.fd) != 0) {
        wh_free(l);
        return REDIS_ERR;
    }
    uv_prepare_init(loop, &l->flush);
    l->ac = ac;
    l->poll.data = l;
    l->flush.data = l;
    ac->ev.data = l;
    ac->ev.addRead = add_read;
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    ac->ev.cleanup = cleanup;
    return REDIS_OK;
}
