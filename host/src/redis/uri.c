/* uri.c -- queue.uri parsing; see uri.h.
 * SPDX-License-Identifier: MIT */
#include "redis/uri.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/mem.h"

#define URI_FORMS "redis://[user:password@]host[:port][/db] or unix:///path/to.sock[?db=N]"

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decodes n bytes of s into an owned string; NULL on a bad escape
 * or an escaped NUL byte. */
static char *decode(const char *s, size_t n) {
    char *out = wh_xmalloc(n + 1), *o = out;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            *o++ = s[i];
            continue;
        }
        if (i + 2 >= n) { /* fewer than two characters follow the '%' */
            wh_free(out);
            return NULL;
        }
        int hi = hexval((unsigned char)s[i + 1]), lo = hexval((unsigned char)s[i + 2]);
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
            wh_free(out);
            return NULL;
        }
        *o++ = (char)(hi * 16 + lo);
        i += 2;
    }
    *o = '\0';
    return out;
}

/* A decimal integer of exactly n digits within [lo, hi]. */
static int parse_int(const char *s, size_t n, int lo, int hi, int *out) {
    if (n == 0 || n > 9) return -1;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int fail(wh_redis_uri *u, wh_err *err, const char *msg) {
    wh_redis_uri_free(u);
    return wh_err_set(err, WH_ECONFIG, "queue.uri: %s", msg);
}

/* Reads "[user]:password@" or "password@" from [p, at). */
static int parse_userinfo(const char *p, const char *at, wh_redis_uri *u, wh_err *err) {
    const char *colon = memchr(p, ':', (size_t)(at - p));
    if (colon) {
        if (colon > p && (u->user = decode(p, (size_t)(colon - p))) == NULL)
            return fail(u, err, "bad %-escape in the user name");
        if ((u->password = decode(colon + 1, (size_t)(at - colon - 1))) == NULL)
            return fail(u, err, "bad %-escape in the password");
    } else if ((u->password = decode(p, (size_t)(at - p))) == NULL) { /* redis://password@host */
        return fail(u, err, "bad %-escape in the password");
    }
    if (u->password[0] == '\0') return fail(u, err, "the password after ':' is empty");
    return 0;
}

static int parse_unix(const char *p, wh_redis_uri *u, wh_err *err) {
    const char *q = strchr(p, '?');
    size_t len = q ? (size_t)(q - p) : strlen(p);
    const char *at = memchr(p, '@', len);
    if (at) {
        int rc = parse_userinfo(p, at, u, err);
        if (rc != 0) return rc;
        len -= (size_t)(at + 1 - p);
        p = at + 1;
    }
    if (len == 0 || p[0] != '/') return fail(u, err, "a unix socket URI needs an absolute path (unix:///path/to.sock)");
    u->path = wh_xstrndup(p, len);
    if (q && (strncmp(q, "?db=", 4) != 0 || parse_int(q + 4, strlen(q + 4), 0, 999999, &u->db) != 0))
        return fail(u, err, "expected ?db=N (a number) after the socket path");
    return 0;
}

int wh_redis_uri_parse(const char *uri, wh_redis_uri *u, wh_err *err) {
    memset(u, 0, sizeof *u);
    u->port = 6379;
    if (uri == NULL || uri[0] == '\0') return fail(u, err, "empty; expected " URI_FORMS);
    if (strncmp(uri, "unix://", 7) == 0) return parse_unix(uri + 7, u, err);
    if (strncmp(uri, "rediss://", 9) == 0)
        return fail(u, err, "TLS is not supported by this build (hiredis 0.14); use redis:// or unix://");
    if (strncmp(uri, "redis://", 8) != 0) return fail(u, err, "unknown scheme; expected " URI_FORMS);

    const char *p = uri + 8;
    /* the authority ends at the first '/' after the last '@' (a password
     * may hold '/' or '@' unescaped; a host never does) */
    const char *at = NULL;
    for (const char *s = p; *s; s++)
        if (*s == '@') at = s;
    if (at) {
        int rc = parse_userinfo(p, at, u, err);
        if (rc != 0) return rc;
        p = at + 1;
    }
    const char *slash = strchr(p, '/');
    const char *hend = slash ? slash : p + strlen(p);
    if (memchr(p, '?', (size_t)(hend - p)) || (slash && strchr(slash, '?')))
        return fail(u, err, "query parameters are not supported in redis:// URIs");
    const char *port = NULL;
    if (*p == '[') {
        const char *rb = memchr(p, ']', (size_t)(hend - p));
        if (rb == NULL) return fail(u, err, "unterminated [IPv6] host");
        if (rb + 1 < hend && rb[1] != ':') return fail(u, err, "expected ':' and a port after the [IPv6] host");
        u->host = wh_xstrndup(p + 1, (size_t)(rb - p - 1));
        if (rb + 1 < hend) port = rb + 2;
    } else {
        const char *colon = memchr(p, ':', (size_t)(hend - p));
        if (colon && memchr(colon + 1, ':', (size_t)(hend - colon - 1)))
            return fail(u, err, "bad host (write an IPv6 address in brackets: redis://[::1]:6379)");
        u->host = wh_xstrndup(p, (size_t)((colon ? colon : hend) - p));
        if (colon) port = colon + 1;
        if (strchr(u->host, '[') || strchr(u->host, ']'))
            return fail(u, err, "bad host (write an IPv6 address in brackets: redis://[::1]:6379)");
    }
    if (u->host[0] == '\0') return fail(u, err, "no host");
    if (port && parse_int(port, (size_t)(hend - port), 1, 65535, &u->port) != 0)
        return fail(u, err, "the port must be a number from 1 to 65535");
    if (slash && slash[1] && parse_int(slash + 1, strlen(slash + 1), 0, 999999, &u->db) != 0)
        return fail(u, err, "the database after '/' must be a number");
    return 0;
}

void wh_redis_uri_redacted(const wh_redis_uri *u, char *buf, size_t n) {
    if (n == 0) return;
    const char *user = u->user ? u->user : "";
    const char *auth = u->password ? ":***@" : (u->user ? "@" : "");
    if (u->path) {
        if (u->db) snprintf(buf, n, "unix://%s%s%s?db=%d", user, auth, u->path, u->db);
        else snprintf(buf, n, "unix://%s%s%s", user, auth, u->path);
        return;
    }
    bool v6 = u->host && strchr(u->host, ':') != NULL;
    snprintf(buf, n, "redis://%s%s%s%s%s:%d/%d", user, auth, v6 ? "[" : "", u->host ? u->host : "",
             v6 ? "]" : "", u->port, u->db);
}

void wh_redis_uri_redact(const char *uri, char *buf, size_t n) {
    if (n == 0) return;
    if (uri == NULL) uri = "";
    wh_redis_uri u;
    if (wh_redis_uri_parse(uri, &u, NULL) == 0) {
        wh_redis_uri_redacted(&u, buf, n);
        wh_redis_uri_free(&u);
        return;
    }
    const char *at = strrchr(uri, '@');
    if (at == NULL) {
        snprintf(buf, n, "%s", uri);
        return;
    }
    const char *start = uri, *s;
    if ((s = strstr(uri, "//")) != NULL && s < at) start = s + 2;
    else if ((s = memchr(uri, ':', (size_t)(at - uri))) != NULL) start = s + 1;
    snprintf(buf, n, "%.*s***%s", (int)(start - uri), uri, at);
}

void wh_redis_uri_copy(wh_redis_uri *dst, const wh_redis_uri *src) {
    *dst = *src;
    dst->host = wh_xstrdup(src->host);
    dst->path = wh_xstrdup(src->path);
    dst->user = wh_xstrdup(src->user);
    dst->password = wh_xstrdup(src->password);
}

void wh_redis_uri_free(wh_redis_uri *u) {
    if (u == NULL) return;
    wh_free(u->host);
    wh_free(u->path);
    wh_free(u->user);
    if (u->password) {
        volatile char *p = u->password; /* not optimised away: the memory is freed next */
        while (*p) *p++ = '\0';
    }
    wh_free(u->password);
    memset(u, 0, sizeof *u);
}
