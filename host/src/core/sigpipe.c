/* sigpipe.c -- see sigpipe.h. */
#include "core/sigpipe.h"

#include <errno.h>
#include <pthread.h>
#include <time.h>

static void only_sigpipe(sigset_t *set) {
    sigemptyset(set);
    sigaddset(set, SIGPIPE);
}

void wh_sigpipe_block_thread(void) {
    sigset_t set;
    only_sigpipe(&set);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

void wh_sigpipe_enter(wh_sigpipe_guard *g) {
    sigset_t set, pending;
    only_sigpipe(&set);
    g->active = pthread_sigmask(SIG_BLOCK, &set, &g->old_mask) == 0;
    g->was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1;
}

void wh_sigpipe_leave(wh_sigpipe_guard *g) {
    if (!g->active) return;
    g->active = false;
    sigset_t set, pending;
    only_sigpipe(&set);
    if (!g->was_pending && sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1) {
        /* ours (a write in the guarded call): take it off the pending set.
         * A process-wide SIGPIPE sent by someone else at the same moment is
         * indistinguishable, and is taken too; that is SIGPIPE's nature. */
        struct timespec zero = {0, 0};
        int r;
        do r = sigtimedwait(&set, NULL, &zero);
        while (r < 0 && errno == EINTR);
    }
    pthread_sigmask(SIG_SETMASK, &g->old_mask, NULL);
}
