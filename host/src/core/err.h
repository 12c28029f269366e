/* err.h -- error detail through an out-param, no heap.
 *
 * Every fallible function in workerhost takes a `wh_err *err` as its last
 * argument and returns 0 on success or a negative WH_E* code (libuv style).
 * On failure it fills *err with the same code and a message; err may be NULL
 * when the caller does not care. The type and codes are declared in the public
 * header so embedders see the same thing. */
#ifndef WH_ERR_H
#define WH_ERR_H

#include "workerhost.h"

/* Fill err (if not NULL) with code and a printf-style message; records the
 * call site. Returns code, so `return wh_err_set(err, WH_EARGS, ...)` works. */
#define wh_err_set(err, code, ...) wh__err_set((err), (code), __FILE__, __LINE__, __VA_ARGS__)
int wh__err_set(wh_err *err, int code, const char *file, int line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;

/* Prefix the message already in err with "prefix: " (printf-style); keeps the code. */
void wh_err_prefix(wh_err *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Reset to WH_OK with an empty message. */
void wh_err_clear(wh_err *err);

#endif
