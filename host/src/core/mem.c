/* mem.c -- see mem.h. */
#include "core/mem.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* How long a host allocation waits for memory before the host gives up. */
#define WAIT_MS 10000

static atomic_int starving; /* host allocations waiting for memory right now */

bool wh_mem_starving(void) { return atomic_load_explicit(&starving, memory_order_relaxed) > 0; }

static void oom(size_t n) {
    fprintf(stderr, "workerhost: out of memory allocating %zu bytes\n", n);
    abort();
}

enum { KIND_MALLOC, KIND_CALLOC, KIND_REALLOC };

static void *alloc_once(int kind, void *p, size_t n, size_t size) {
    switch (kind) {
    case KIND_MALLOC: return malloc(n ? n : 1);
    case KIND_CALLOC: return calloc(n ? n : 1, size ? size : 1);
    default: return realloc(p, n ? n : 1);
    }
}

/* The system refused: wait for memory to come back (a VM whose job ran out
 * gives its memory back when the job fails, and VMs refuse to grow while
 * anyone waits here), then retry; abort only after WAIT_MS. */
static void *alloc_waiting(int kind, void *p, size_t n, size_t size) {
    void *q = alloc_once(kind, p, n, size);
    if (q) return q;
    atomic_fetch_add(&starving, 1);
    long waited = 0;
    for (long ms = 1; q == NULL && waited < WAIT_MS; waited += ms, ms = ms < 50 ? ms * 2 : 50) {
        struct timespec ts = {0, ms * 1000000L};
        nanosleep(&ts, NULL);
        q = alloc_once(kind, p, n, size);
    }
    atomic_fetch_sub(&starving, 1);
    if (q == NULL) oom(kind == KIND_CALLOC ? n * size : n);
    return q;
}

void *wh_xmalloc(size_t n) { return alloc_waiting(KIND_MALLOC, NULL, n, 0); }

void *wh_xcalloc(size_t n, size_t size) { return alloc_waiting(KIND_CALLOC, NULL, n, size); }

void *wh_xrealloc(void *p, size_t n) { return alloc_waiting(KIND_REALLOC, p, n, 0); }

char *wh_xstrdup(const char *s) {
    return s ? wh_xstrndup(s, strlen(s)) : NULL;
}

char *wh_xstrndup(const char *s, size_t n) {
    char *p = wh_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void wh_free(void *p) {
    int saved = errno;
    free(p);
    errno = saved;
}
