/* mem.c -- see mem.h. */
#include "core/mem.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void oom(size_t n) {
    fprintf(stderr, "workerhost: out of memory allocating %zu bytes\n", n);
    abort();
}

void *wh_xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (p == NULL) oom(n);
    return p;
}

void *wh_xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL) oom(n * size);
    return p;
}

void *wh_xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (q == NULL) oom(n);
    return q;
}

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
