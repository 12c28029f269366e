/* uri.h -- queue.uri: where Redis is and how to log in.
 * SPDX-License-Identifier: MIT
 *
 *   redis://[[user]:password@]host[:port][/db]     port 6379, db 0 by default
 *   redis://:password@host                          a password only (AUTH pass)
 *   redis://user:password@host                      an ACL user (AUTH user pass)
 *   redis://[::1]:6380/2                            an IPv6 host in brackets
 *   unix:///path/to.sock[?db=N]                     a unix socket
 *   unix://[user]:password@/path/to.sock[?db=N]     a unix socket with AUTH
 *
 * The user and the password are percent-decoded (%40 for '@', %3A for ':').
 * A userinfo without ':' (redis://secret@host) is a password. TLS
 * (rediss://) is refused: Debian's hiredis 0.14 has no TLS.
 *
 * Passwords never appear in logs or error messages: every message that
 * shows a URI prints wh_redis_uri_redacted (a parsed URI) or
 * wh_redis_uri_redact (any text, such as a config value), and no message of
 * wh_redis_uri_parse quotes the URI. The one form: the password becomes
 * "***" and the user name stays (redis://user:***@host:6379/0); a text that
 * does not parse has everything between "//" and the last '@' replaced by
 * "***" (redis://:pw@host:x/0 becomes "redis://" "***@host:x/0"), since
 * which part is a user and which a password is unclear then. */
#ifndef WH_URI_H
#define WH_URI_H

#include <stddef.h>

#include "core/err.h"

typedef struct wh_redis_uri {
    char *host;     /* owned; NULL for a unix socket. IPv6 without brackets */
    int port;       /* 1..65535; 6379 by default; unused for a unix socket */
    char *path;     /* owned; the unix socket, or NULL */
    int db;         /* >= 0; 0 by default */
    char *user;     /* owned, or NULL (AUTH pass) */
    char *password; /* owned, or NULL (no AUTH) */
} wh_redis_uri;

/* Parses uri into *out. On success *out owns its strings: free them with
 * wh_redis_uri_free. On failure returns WH_ECONFIG, *out is zeroed (nothing
 * to free; wh_redis_uri_free on it is harmless), and the message says what
 * is wrong without quoting the URI (it may hold a password). */
int wh_redis_uri_parse(const char *uri, wh_redis_uri *out, wh_err *err);

/* Writes the URI for logs into buf (n bytes, always NUL-terminated,
 * truncated if needed), with the password as "***":
 *   redis://user:***@host:6379/0, redis://:***@[::1]:6380/2,
 *   unix:///run/redis.sock?db=1 */
void wh_redis_uri_redacted(const wh_redis_uri *u, char *buf, size_t n);

/* Writes the text uri (any string: a config value, a malformed URI) for
 * messages into buf (n bytes, always NUL-terminated, truncated if needed).
 * A URI that parses is written as wh_redis_uri_redacted writes it. Any other
 * text with an '@' has what lies between "//" (else the first ':', else the
 * start) and its last '@' replaced by "***":
 *   redis://:pw@host:notaport/0 -> "redis://" "***@host:notaport/0"
 *   http://u:pw@host            -> "http://" "***@host"
 * Text without an '@' is copied as it is (it holds no credentials). */
void wh_redis_uri_redact(const char *uri, char *buf, size_t n);

/* Deep copy of src into *dst (owned: wh_redis_uri_free). */
void wh_redis_uri_copy(wh_redis_uri *dst, const wh_redis_uri *src);

/* Frees the owned strings (the password is wiped first) and zeroes *u.
 * Accepts NULL and a zeroed struct. */
void wh_redis_uri_free(wh_redis_uri *u);

#endif
