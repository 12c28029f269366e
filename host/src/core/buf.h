/* buf.h -- a growable byte buffer (kilo's abuf, redis's sds without the
 * header tricks). The struct is embedded by callers: init with WH_BUF_INIT or
 * wh_buf_init, release with wh_buf_free. The data is always NUL-terminated
 * (the NUL is not counted in len). Growth aborts on out-of-memory. */
#ifndef WH_BUF_H
#define WH_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct wh_buf {
    char *data; /* read-only for callers; NULL until the first append */
    size_t len; /* read-only: bytes used */
    size_t cap; /* private */
} wh_buf;

#define WH_BUF_INIT {NULL, 0, 0}

void wh_buf_init(wh_buf *b);
void wh_buf_free(wh_buf *b);           /* releases data; b is empty and reusable */
void wh_buf_reset(wh_buf *b);          /* len = 0, keeps the capacity */
void wh_buf_reserve(wh_buf *b, size_t extra);
void wh_buf_append(wh_buf *b, const void *p, size_t n);
void wh_buf_puts(wh_buf *b, const char *s);
void wh_buf_putc(wh_buf *b, char c);
void wh_buf_printf(wh_buf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void wh_buf_vprintf(wh_buf *b, const char *fmt, va_list ap);
/* Hands the data over: returns an owned NUL-terminated string (free with
 * wh_free), never NULL; b is left empty. */
char *wh_buf_steal(wh_buf *b);
/* Returns data, or "" when nothing was appended yet. Borrowed. */
const char *wh_buf_cstr(const wh_buf *b);

#endif
