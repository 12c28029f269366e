/* watch.h -- watches folders for changes to Lua files (libuv uv_fs_event on
 * its own thread and loop) and calls back once things settle: an editor's
 * write-then-rename or a `git checkout` of many files makes one call.
 *
 * uv_fs_event is not recursive on Linux, so every folder is watched on its
 * own: the `flat` folders themselves, the `tree` folders with every folder
 * below them (at most 8 deep, no dot folders). The set of watched folders
 * is scanned again after every call, so a folder created meanwhile is
 * watched from then on. A folder that does not exist is skipped.
 *
 * What counts as a change: a file named *.lua appearing, changing, being
 * renamed or removed, or a folder appearing (editor back-up and swap files
 * are ignored). */
#ifndef WH_WATCH_H
#define WH_WATCH_H

#include "core/err.h"

typedef struct wh_watch wh_watch;

/* Called on the watch thread, `debounce` seconds after the last change of
 * a burst. May block (the next burst waits for it); must not call
 * wh_watch_stop. */
typedef void (*wh_watch_fn)(void *ud);

typedef struct wh_watch_options {
    const char *const *flat; /* NULL-terminated; may be NULL */
    const char *const *tree; /* NULL-terminated; may be NULL */
    double debounce;         /* seconds; 0 = 0.15 */
    wh_watch_fn fn;
    void *ud;
} wh_watch_options;

/* Starts watching (the folder lists are copied). Returns 0 and an owned
 * watcher (wh_watch_stop), or WH_EIO when the thread or loop cannot start.
 * Thread: any. */
int wh_watch_start(const wh_watch_options *opts, wh_watch **out, wh_err *err);

/* How many folders are being watched now. Any thread. */
size_t wh_watch_count(wh_watch *w);

/* Stops the thread (waiting for a running callback to return), closes
 * every handle and frees the watcher. Accepts NULL. Not from the callback. */
void wh_watch_stop(wh_watch *w);

#endif
