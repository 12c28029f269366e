/* watch.c -- see watch.h. */
#include "app/watch.h"

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/sigpipe.h"

enum { MAX_DEPTH = 8 };

typedef struct watched {
    uv_fs_event_t ev; /* first: the handle's address is the struct's */
    char *path;
    bool seen;        /* found by the current scan */
    struct watched *next;
} watched;

struct wh_watch {
    wh_watch_options o;
    char **flat, **tree; /* owned copies, NULL-terminated */
    uv_loop_t loop;
    uv_timer_t timer;
    uv_async_t stop;
    pthread_t thread;
    watched *dirs;       /* loop thread only */
    atomic_size_t count;
};

static char **copy_list(const char *const *l) {
    size_t n = 0;
    while (l && l[n]) n++;
    char **c = wh_xcalloc(n + 1, sizeof *c);
    for (size_t i = 0; i < n; i++) c[i] = wh_xstrdup(l[i]);
    return c;
}

static void free_list(char **l) {
    for (size_t i = 0; l && l[i]; i++) wh_free(l[i]);
    wh_free(l);
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static void on_event(uv_fs_event_t *ev, const char *filename, int events, int status);

/* ---- the set of watched folders ---- */

static void on_dir_closed(uv_handle_t *h) {
    watched *d = (watched *)h;
    wh_free(d->path);
    wh_free(d);
}

static void mark(wh_watch *w, const char *path) {
    for (watched *d = w->dirs; d; d = d->next)
        if (strcmp(d->path, path) == 0) {
            d->seen = true;
            return;
        }
    watched *d = wh_xcalloc(1, sizeof *d);
    d->path = wh_xstrdup(path);
    d->seen = true;
    uv_fs_event_init(&w->loop, &d->ev);
    d->ev.data = w;
    int rc = uv_fs_event_start(&d->ev, on_event, path, 0);
    if (rc != 0) {
        wh_log(WH_LOG_WARN, NULL, NULL, "cannot watch %s: %s", path, uv_strerror(rc));
        uv_close((uv_handle_t *)&d->ev, on_dir_closed);
        return;
    }
    d->next = w->dirs;
    w->dirs = d;
}

static void scan_tree(wh_watch *w, const char *path, int depth) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) return;
    mark(w, path);
    if (depth >= MAX_DEPTH) return;
    DIR *dir = opendir(path);
    if (dir == NULL) return;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        if (e->d_name[0] == '.') continue;
        wh_buf p = WH_BUF_INIT;
        wh_buf_printf(&p, "%s/%s", path, e->d_name);
        if (stat(wh_buf_cstr(&p), &st) == 0 && S_ISDIR(st.st_mode)) scan_tree(w, wh_buf_cstr(&p), depth + 1);
        wh_buf_free(&p);
    }
    closedir(dir);
}

/* Watches every folder that exists now and stops watching those that are
 * gone; folders still there keep their handle, so no event is lost. */
static void rescan(wh_watch *w) {
    for (watched *d = w->dirs; d; d = d->next) d->seen = false;
    struct stat st;
    for (size_t i = 0; w->flat[i]; i++)
        if (stat(w->flat[i], &st) == 0 && S_ISDIR(st.st_mode)) mark(w, w->flat[i]);
    for (size_t i = 0; w->tree[i]; i++) scan_tree(w, w->tree[i], 0);
    size_t n = 0;
    for (watched **pp = &w->dirs; *pp;) {
        watched *d = *pp;
        if (!d->seen) {
            *pp = d->next;
            uv_close((uv_handle_t *)&d->ev, on_dir_closed);
        } else {
            n++;
            pp = &d->next;
        }
    }
    atomic_store(&w->count, n);
}

/* ---- events ---- */

static void on_timer(uv_timer_t *t) {
    wh_watch *w = t->data;
    rescan(w);
    w->o.fn(w->o.ud);
}

static void on_event(uv_fs_event_t *ev, const char *filename, int events, int status) {
    (void)events;
    wh_watch *w = ev->data;
    if (status < 0) return;
    bool relevant = filename == NULL || ends_with(filename, ".lua");
    if (!relevant && filename[0] != '.') { /* a folder appearing (not an editor's temp file) */
        watched *d = (watched *)ev;
        wh_buf p = WH_BUF_INIT;
        wh_buf_printf(&p, "%s/%s", d->path, filename);
        struct stat st;
        relevant = stat(wh_buf_cstr(&p), &st) == 0 && S_ISDIR(st.st_mode);
        wh_buf_free(&p);
    }
    if (relevant) uv_timer_start(&w->timer, on_timer, (uint64_t)(w->o.debounce * 1000.0), 0);
}

static void close_any(uv_handle_t *h, void *arg) {
    (void)arg;
    if (uv_is_closing(h)) return;
    if (h->type == UV_FS_EVENT) uv_close(h, on_dir_closed);
    else uv_close(h, NULL);
}

static void on_stop(uv_async_t *a) {
    wh_watch *w = a->data;
    w->dirs = NULL;
    uv_walk(&w->loop, close_any, NULL);
}

static void *watch_main(void *arg) {
    wh_watch *w = arg;
    wh_sigpipe_block_thread();
    uv_run(&w->loop, UV_RUN_DEFAULT);
    return NULL;
}

/* ---- lifetime ---- */

int wh_watch_start(const wh_watch_options *opts, wh_watch **out, wh_err *err) {
    wh_watch *w = wh_xcalloc(1, sizeof *w);
    w->o = *opts;
    if (w->o.debounce <= 0) w->o.debounce = 0.15;
    w->flat = copy_list(opts->flat);
    w->tree = copy_list(opts->tree);
    atomic_init(&w->count, 0);
    int rc = uv_loop_init(&w->loop);
    if (rc != 0) {
        free_list(w->flat);
        free_list(w->tree);
        wh_free(w);
        return wh_err_set(err, WH_EIO, "cannot start the file watch: %s", uv_strerror(rc));
    }
    uv_timer_init(&w->loop, &w->timer);
    w->timer.data = w;
    uv_async_init(&w->loop, &w->stop, on_stop);
    w->stop.data = w;
    rescan(w); /* before the thread starts: the loop is still this thread's */
    if (pthread_create(&w->thread, NULL, watch_main, w) != 0) {
        on_stop(&w->stop);
        uv_run(&w->loop, UV_RUN_DEFAULT);
        uv_loop_close(&w->loop);
        free_list(w->flat);
        free_list(w->tree);
        wh_free(w);
        return wh_err_set(err, WH_EIO, "cannot start the file watch thread");
    }
    *out = w;
    return 0;
}

size_t wh_watch_count(wh_watch *w) { return w ? atomic_load(&w->count) : 0; }

void wh_watch_stop(wh_watch *w) {
    if (w == NULL) return;
    uv_async_send(&w->stop);
    pthread_join(w->thread, NULL);
    uv_loop_close(&w->loop);
    free_list(w->flat);
    free_list(w->tree);
    wh_free(w);
}
