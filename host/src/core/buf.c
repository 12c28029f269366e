/* buf.c -- see buf.h. */
#include "core/buf.h"

#include <stdio.h>
#include <string.h>

#include "core/mem.h"

void wh_buf_init(wh_buf *b) {
    b->data = NULL;
    b->len = b->cap = 0;
}

void wh_buf_free(wh_buf *b) {
    wh_free(b->data);
    wh_buf_init(b);
}

void wh_buf_reset(wh_buf *b) {
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}

void wh_buf_reserve(wh_buf *b, size_t extra) {
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap *= 2;
    b->data = wh_xrealloc(b->data, cap);
    b->cap = cap;
}

void wh_buf_append(wh_buf *b, const void *p, size_t n) {
    wh_buf_reserve(b, n);
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void wh_buf_puts(wh_buf *b, const char *s) { wh_buf_append(b, s, strlen(s)); }

void wh_buf_putc(wh_buf *b, char c) {
    wh_buf_reserve(b, 1);
    b->data[b->len++] = c;
    b->data[b->len] = '\0';
}

void wh_buf_vprintf(wh_buf *b, const char *fmt, va_list ap) {
    va_list ap2;
    va_copy(ap2, ap);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, ap);
    if (n < 0) { va_end(ap2); return; }
    if ((size_t)n < sizeof small) {
        wh_buf_append(b, small, (size_t)n);
    } else {
        wh_buf_reserve(b, (size_t)n);
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
        b->len += (size_t)n;
    }
    va_end(ap2);
}

void wh_buf_printf(wh_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    wh_buf_vprintf(b, fmt, ap);
    va_end(ap);
}

char *wh_buf_steal(wh_buf *b) {
    if (b->data == NULL) wh_buf_reserve(b, 0), b->data[0] = '\0';
    char *p = b->data;
    wh_buf_init(b);
    return p;
}

const char *wh_buf_cstr(const wh_buf *b) { return b->data ? b->data : ""; }
