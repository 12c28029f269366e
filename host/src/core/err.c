/* err.c -- see err.h. */
#include "core/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int wh__err_set(wh_err *err, int code, const char *file, int line, const char *fmt, ...) {
    if (err == NULL) return code;
    err->code = code;
    err->file = file;
    err->line = line;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return code;
}

void wh_err_prefix(wh_err *err, const char *fmt, ...) {
    if (err == NULL) return;
    char prefix[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    size_t plen = strlen(prefix), mlen = strlen(err->msg);
    if (plen + 2 >= sizeof err->msg) plen = sizeof err->msg - 3;
    if (plen + 2 + mlen >= sizeof err->msg) mlen = sizeof err->msg - plen - 3;
    memmove(err->msg + plen + 2, err->msg, mlen);
    memcpy(err->msg, prefix, plen);
    err->msg[plen] = ':';
    err->msg[plen + 1] = ' ';
    err->msg[plen + 2 + mlen] = '\0';
}

void wh_err_clear(wh_err *err) {
    if (err == NULL) return;
    err->code = WH_OK;
    err->msg[0] = '\0';
    err->file = NULL;
    err->line = 0;
}

const char *wh_strerror(int code) {
    switch (code) {
    case WH_OK: return "ok";
    case WH_EINVAL: return "invalid argument";
    case WH_ECONFIG: return "configuration error";
    case WH_ESCRIPT: return "script error";
    case WH_EARGS: return "arguments refused";
    case WH_ENOCLASS: return "unknown worker class";
    case WH_EUNAVAIL: return "backend unavailable";
    case WH_EFULL: return "queue full";
    case WH_EJOB: return "job failed";
    case WH_ENOMEM: return "out of memory";
    case WH_EIO: return "input/output error";
    case WH_EJSON: return "malformed JSON";
    case WH_ETIMEOUT: return "timed out";
    case WH_ESTATE: return "wrong state";
    default: return "unknown error";
    }
}
