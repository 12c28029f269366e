/* config.c -- reads config/<env>.yaml into a wh_config (see config.h).
 *
 * libyaml's document API loads the file (aliases resolved, every node keeps
 * its position); one static table of rows maps `section.key` to a type, an
 * offset in wh_config, a default and limits, and one parse function per type
 * fills the struct. ${VAR} substitution runs on each value scalar just before
 * it is converted, so every error names the scalar's own line and column.
 * SPDX-License-Identifier: MIT
 */
#include "config/config.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "core/buf.h"
#include "core/file.h"
#include "core/err.h"
#include "core/mem.h"
#include "redis/uri.h"

/* ==== the table ======================================================== */

typedef enum cfg_type {
    T_INT,      /* int: plain decimal integer within [min, max] */
    T_LONG,     /* long: same */
    T_COUNT,    /* size_t: same */
    T_SECONDS,  /* double: a number of seconds or "500ms"/"30s"/"5m"/"1h" */
    T_SIZE,     /* size_t: bytes, or a string with a unit ("256MiB", "64 MB") */
    T_BOOL,     /* bool: exactly true or false */
    T_ENUM,     /* an int-sized enum: one of names[], value = index */
    T_STRING,   /* char *: non-empty (with F_NULLABLE, null or "" = NULL) */
    T_PATH,     /* char *: a directory, joined to root when relative */
    T_PATHLIST, /* char **: a list of directories, NULL-terminated */
    T_QUEUES,   /* wh_queue_weight *: Sidekiq's queues list (also sets nqueues, queues_weighted) */
} cfg_type;

#define F_NULLABLE 1u    /* null (or "") means absent: the field is NULL */
#define F_DEV_DEFAULT 2u /* bool whose default is true only in the development env */
#define F_SECRET 4u      /* a URI that may hold a password: messages show it through
                          * wh_redis_uri_redact, and the variables ${VAR} put into it
                          * are listed in secret_env (see config.h) */

/* Extra validation of a string value: returns NULL when the value is fine,
 * else what was expected (static text, used as "expected <that>, got ..."). */
typedef const char *(*cfg_check)(const char *value);

typedef struct cfg_row {
    const char *section;           /* "workers" */
    const char *key;               /* "concurrency" */
    cfg_type type;
    size_t offset;                 /* offsetof(wh_config, field) */
    const char *def;               /* the default, written as in the YAML file; NULL = absent */
    unsigned flags;                /* F_* */
    unsigned long long min, max;   /* T_INT, T_LONG, T_COUNT, T_SIZE */
    double smin, smax;             /* T_SECONDS */
    bool smin_open;                /* T_SECONDS: value must be > smin (else >= smin) */
    const char *const *names;      /* T_ENUM: NULL-terminated, index = enum value */
    cfg_check check;               /* T_STRING: extra validation, or NULL */
} cfg_row;

#define OFF(field) offsetof(wh_config, field)
/* One row: ROW(section, key, type, field, default, optional .min = ..., ...). */
#define ROW(sec, k, t, field, dflt, ...) \
    { .section = (sec), .key = (k), .type = (t), .offset = OFF(field), .def = (dflt), __VA_ARGS__ }
#define NOMAX ((unsigned long long)LONG_MAX) /* "no upper bound" for integers */
#define MIB (1024ull * 1024ull)
#define SECONDS_MAX 31536000.0 /* one year: keeps timers far from overflow */
#define WEIGHT_MAX 1000        /* workers.queues weights */
#define FILE_MAX (16u * 1024u * 1024u)

static const char *const mode_names[] = {"BackgroundAsync", "BackgroundQueue", "ForegroundBlocking", NULL};
static const char *const level_names[] = {"debug", "info", "warn", "error", NULL};
static const char *const format_names[] = {"text", "json", NULL};
static const char *const section_names[] = {"workers", "queue", "logger"};
#define NSECTIONS (sizeof section_names / sizeof section_names[0])

_Static_assert(WH_MODE_BACKGROUND_ASYNC == 0 && WH_MODE_BACKGROUND_QUEUE == 1 &&
                   WH_MODE_FOREGROUND_BLOCKING == 2, "mode_names follows wh_mode");
_Static_assert(WH_LOG_DEBUG == 0 && WH_LOG_ERROR == 3 && WH_LOG_TEXT == 0 && WH_LOG_JSON == 1,
               "level_names and format_names follow the enums");
_Static_assert(sizeof(wh_mode) == sizeof(int) && sizeof(wh_log_level) == sizeof(int) &&
                   sizeof(wh_log_format) == sizeof(int), "T_ENUM stores an int");

static const char *check_redis_uri(const char *value);

/* Every key of the file. The order is the order of "known keys" in messages
 * and of docs/config-reference.md. */
static const cfg_row rows[] = {
    ROW("workers", "mode", T_ENUM, mode, "BackgroundAsync", .names = mode_names),
    ROW("workers", "concurrency", T_INT, concurrency, "4", .min = 1, .max = 1024),
    ROW("workers", "scripts", T_PATH, scripts_dir, "workers"),
    ROW("workers", "lua_path", T_PATHLIST, lua_path, "lib"),
    ROW("workers", "queues", T_QUEUES, queues, NULL, .flags = F_NULLABLE),
    ROW("workers", "timeout", T_SECONDS, timeout, "30", .smin = 0, .smin_open = true, .smax = SECONDS_MAX),
    ROW("workers", "memory_limit", T_SIZE, memory_limit, "256MiB", .min = MIB, .max = SIZE_MAX),
    ROW("workers", "shutdown_timeout", T_SECONDS, shutdown_timeout, "25", .smin = 0, .smax = SECONDS_MAX),
    ROW("workers", "recycle_after_jobs", T_LONG, recycle_after_jobs, "0", .min = 0, .max = NOMAX),
    ROW("workers", "recycle_above_memory", T_SIZE, recycle_above_memory, "0", .min = 0, .max = SIZE_MAX),
    ROW("workers", "queue_limit", T_COUNT, queue_limit, "100000", .min = 1, .max = NOMAX),
    ROW("workers", "dead_limit", T_COUNT, dead_limit, "1000", .min = 0, .max = NOMAX),
    ROW("workers", "max_payload_bytes", T_SIZE, max_payload_bytes, "1MiB", .min = 1, .max = SIZE_MAX),
    ROW("workers", "reload", T_BOOL, reload, NULL, .flags = F_DEV_DEFAULT),
    ROW("workers", "allow_unknown_classes", T_BOOL, allow_unknown_classes, "false"),
    ROW("workers", "allow_core_dumps", T_BOOL, allow_core_dumps, "false"),
    ROW("queue", "uri", T_STRING, queue_uri, "redis://127.0.0.1:6379/0", .flags = F_SECRET,
        .check = check_redis_uri),
    ROW("queue", "namespace", T_STRING, queue_namespace, NULL, .flags = F_NULLABLE),
    ROW("logger", "level", T_ENUM, log_level, "info", .names = level_names),
    ROW("logger", "format", T_ENUM, log_format, "text", .names = format_names),
};
#define NROWS (sizeof rows / sizeof rows[0])

/* queue.uri is checked by the parser that will use it (redis/uri.c), so
 * the config refuses, with file:line:col, exactly what the host would: one
 * validator for one value. The text lives until the next call on this
 * thread (the caller formats it at once). */
static const char *check_redis_uri(const char *value) {
    wh_redis_uri u;
    wh_err err;
    if (wh_redis_uri_parse(value, &u, &err) == 0) {
        wh_redis_uri_free(&u);
        return NULL;
    }
    static _Thread_local char expected[sizeof err.msg + 160];
    const char *why = err.msg;
    if (strncmp(why, "queue.uri: ", 11) == 0) why += 11;
    size_t n = strcspn(why, ";"); /* "unknown scheme; expected <forms>": the forms are said below */
    if (strncmp(why + n, "; expected ", 11) != 0) n = strlen(why);
    snprintf(expected, sizeof expected, "a Redis URI, redis://[user:password@]host[:port][/db] or "
             "unix:///path/to.sock[?db=N] (%.*s)", (int)n, why);
    return expected;
}

static void *field_of(wh_config *cfg, const cfg_row *r) { return (char *)cfg + r->offset; }

/* ==== small helpers ===================================================== */

static bool is_digit(char ch) { return ch >= '0' && ch <= '9'; }
static bool is_name_start(char ch) { return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || ch == '_'; }
static bool is_name_char(char ch) { return is_name_start(ch) || is_digit(ch); }

/* Appends s (len bytes) double-quoted, escaped and shortened for a message. */
static void put_quoted(wh_buf *b, const char *s, size_t len) {
    size_t shown = len;
    if (shown > 80) {
        shown = 77;
        while (shown > 0 && ((unsigned char)s[shown] & 0xC0) == 0x80) shown--; /* UTF-8 boundary */
    }
    wh_buf_putc(b, '"');
    for (size_t i = 0; i < shown; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') wh_buf_printf(b, "\\%c", ch);
        else if (ch == '\n') wh_buf_puts(b, "\\n");
        else if (ch == '\t') wh_buf_puts(b, "\\t");
        else if (ch < 0x20 || ch == 0x7f) wh_buf_printf(b, "\\x%02x", ch);
        else wh_buf_putc(b, (char)ch);
    }
    if (shown < len) wh_buf_puts(b, "...");
    wh_buf_putc(b, '"');
}

/* Like put_quoted; when secret (the value may hold a password), the text
 * goes through wh_redis_uri_redact first. */
static void put_value(wh_buf *b, const char *s, size_t len, bool secret) {
    if (!secret) {
        put_quoted(b, s, len);
        return;
    }
    char *text = wh_xstrndup(s, len);
    size_t n = len + 64; /* the parsed form may add a port and a db */
    char *shown = wh_xmalloc(n);
    wh_redis_uri_redact(text, shown, n);
    put_quoted(b, shown, strlen(shown));
    wh_free(shown);
    wh_free(text);
}

/* "1MiB", "16MiB", "1000 bytes": a size for messages and the docs. */
static void put_size(wh_buf *b, unsigned long long n) {
    if (n != 0 && n % (1024ull * MIB) == 0) wh_buf_printf(b, "%lluGiB", n / (1024ull * MIB));
    else if (n != 0 && n % MIB == 0) wh_buf_printf(b, "%lluMiB", n / MIB);
    else if (n != 0 && n % 1024 == 0) wh_buf_printf(b, "%lluKiB", n / 1024);
    else wh_buf_printf(b, "%llu byte%s", n, n == 1 ? "" : "s");
}

/* Joins a directory to root unless it is absolute; drops trailing slashes
 * and a leading "./". Returns owned. */
static char *join_root(const char *root, const char *p) {
    size_t len = strlen(p);
    while (len > 1 && p[len - 1] == '/') len--;
    if (p[0] == '/') return wh_xstrndup(p, len);
    while (len >= 2 && p[0] == '.' && p[1] == '/') {
        p += 2, len -= 2;
        while (len > 1 && p[0] == '/') p++, len--;
    }
    if (len == 1 && p[0] == '.') return wh_xstrdup(root);
    wh_buf b = WH_BUF_INIT;
    wh_buf_puts(&b, root);
    if (b.len == 0 || b.data[b.len - 1] != '/') wh_buf_putc(&b, '/');
    wh_buf_append(&b, p, len);
    return wh_buf_steal(&b);
}

/* An absolute form of root without touching it: NULL = the current
 * directory, relative = joined to it. Returns owned. */
static char *absolute_root(const char *root) {
    if (root != NULL && root[0] == '/') return join_root("/", root);
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof cwd) == NULL) return wh_xstrdup(root ? root : ".");
    return root ? join_root(cwd, root) : wh_xstrdup(cwd);
}

/* The environment name: env, else $WORKERHOST_ENV (empty = unset), else
 * "development". Borrowed. *from says where it came from (for messages). */
static const char *pick_env(const char *env, const char **from) {
    *from = NULL;
    if (env != NULL) return env;
    const char *e = getenv("WORKERHOST_ENV");
    if (e != NULL && e[0] != '\0') {
        *from = "WORKERHOST_ENV";
        return e;
    }
    return "development";
}

static int check_env_name(const char *env, const char *from, wh_err *err) {
    bool ok = env[0] != '\0';
    for (const char *p = env; *p; p++)
        if (!is_name_char(*p) && *p != '-') ok = false;
    if (ok) return 0;
    wh_buf b = WH_BUF_INIT;
    wh_buf_puts(&b, "invalid environment name ");
    put_quoted(&b, env, strlen(env));
    if (from) wh_buf_printf(&b, " (from %s)", from);
    wh_buf_puts(&b, ": use only letters, digits, \"_\" and \"-\"");
    wh_err_set(err, WH_ECONFIG, "%s", wh_buf_cstr(&b));
    wh_buf_free(&b);
    return WH_ECONFIG;
}

/* ==== scalar conversions (pure, text in, value out) ===================== */

/* [-+]?[0-9]+ within [min, max]. */
static bool conv_integer(const char *s, unsigned long long min, unsigned long long max,
                         unsigned long long *out) {
    bool neg = false;
    if (*s == '-' || *s == '+') neg = *s++ == '-';
    if (!is_digit(*s)) return false;
    unsigned long long v = 0;
    for (; is_digit(*s); s++) {
        unsigned d = (unsigned)(*s - '0');
        if (v > (ULLONG_MAX - d) / 10) return false;
        v = v * 10 + d;
    }
    if (*s != '\0') return false;
    if (neg && v != 0) return false; /* every integer key has min >= 0 */
    if (v < min || v > max) return false;
    *out = v;
    return true;
}

/* A number of seconds: [-+]?digits[.digits][e[-+]digits] with an optional
 * unit ms|s|m|h after optional spaces. Syntax only; the caller checks range. */
static bool conv_seconds(const char *s, double *out) {
    const char *p = s;
    if (*p == '-' || *p == '+') p++;
    size_t digits = 0;
    while (is_digit(*p)) p++, digits++;
    if (*p == '.') {
        p++;
        while (is_digit(*p)) p++, digits++;
    }
    if (digits == 0) return false;
    if (*p == 'e' || *p == 'E') {
        const char *q = p + 1;
        if (*q == '-' || *q == '+') q++;
        if (!is_digit(*q)) return false;
        while (is_digit(*q)) q++;
        p = q;
    }
    char num[64];
    if ((size_t)(p - s) >= sizeof num) return false;
    memcpy(num, s, (size_t)(p - s));
    num[p - s] = '\0';
    const char *unit = p;
    while (*unit == ' ') unit++;
    double v = strtod(num, NULL); /* the host never calls setlocale: "." is the decimal point */
    if (*unit == '\0' && unit == p) { /* no unit */
    } else if (strcmp(unit, "ms") == 0) v /= 1000.0;
    else if (strcmp(unit, "s") == 0) {
    } else if (strcmp(unit, "m") == 0) v *= 60.0;
    else if (strcmp(unit, "h") == 0) v *= 3600.0;
    else return false;
    if (!isfinite(v)) return false;
    *out = v;
    return true;
}

static const struct {
    const char *name;
    unsigned long long mult;
} size_units[] = {
    {"B", 1},           {"KB", 1000},          {"kB", 1000},           {"MB", 1000000},
    {"GB", 1000000000}, {"KiB", 1024},         {"MiB", 1024 * 1024},   {"GiB", 1024 * 1024 * 1024},
};

/* A size: digits (bytes), or digits[.digits] followed by optional spaces and
 * a unit. The result must be a whole number of bytes that fits in size_t. */
static bool conv_size(const char *s, unsigned long long *out) {
    const char *p = s;
    if (!is_digit(*p)) return false;
    unsigned long long ip = 0;
    for (; is_digit(*p); p++) {
        unsigned d = (unsigned)(*p - '0');
        if (ip > (ULLONG_MAX - d) / 10) return false;
        ip = ip * 10 + d;
    }
    unsigned long long frac = 0, scale = 1;
    bool has_frac = false;
    if (*p == '.') {
        p++;
        has_frac = true;
        if (!is_digit(*p)) return false;
        for (; is_digit(*p); p++) {
            if (scale == 1000000000ull) return false; /* at most 9 decimals */
            frac = frac * 10 + (unsigned)(*p - '0');
            scale *= 10;
        }
    }
    const char *unit = p;
    while (*unit == ' ') unit++;
    unsigned long long mult = 1;
    if (*unit == '\0' && unit == p) {
        if (has_frac) return false; /* "1.5" bytes */
    } else {
        size_t i, n = sizeof size_units / sizeof size_units[0];
        for (i = 0; i < n; i++)
            if (strcmp(unit, size_units[i].name) == 0) break;
        if (i == n) return false;
        mult = size_units[i].mult;
    }
    if (ip > ULLONG_MAX / mult) return false;
    unsigned long long v = ip * mult;
    if (has_frac) {
        unsigned long long f = frac * mult; /* < 1e9 * 2^30: no overflow */
        if (f % scale != 0) return false;   /* not a whole number of bytes */
        if (v > ULLONG_MAX - f / scale) return false;
        v += f / scale;
    }
    if (v > SIZE_MAX) return false;
    *out = v;
    return true;
}

/* ==== ${VAR} substitution =============================================== */

/* Expands ${NAME}, ${NAME:-default} and $$ (a literal $) in s[0..len) into
 * out. A $ followed by anything else is literal. An unset NAME without a
 * default is an error; a set-but-empty NAME with ":-" takes the default.
 * Returns true, or false with what is wrong in why. *changed tells whether
 * anything was replaced. With secret (s may hold a password), the parts of
 * s quoted in why are redacted, and the name of every variable whose value
 * was used is appended to used, each followed by a NUL. */
static bool expand_env(const char *s, size_t len, wh_buf *out, bool *changed, wh_buf *why, bool secret,
                       wh_buf *used) {
    *changed = false;
    wh_buf_reserve(out, len);
    wh_buf_append(out, "", 0); /* NUL-terminated even when s is empty */
    for (size_t i = 0; i < len;) {
        if (s[i] != '$') {
            wh_buf_putc(out, s[i++]);
            continue;
        }
        if (i + 1 < len && s[i + 1] == '$') {
            wh_buf_putc(out, '$');
            i += 2;
            *changed = true;
            continue;
        }
        if (i + 1 >= len || s[i + 1] != '{') {
            wh_buf_putc(out, s[i++]);
            continue;
        }
        size_t name0 = i + 2, j = name0;
        if (j < len && is_name_start(s[j]))
            while (j < len && is_name_char(s[j])) j++;
        const char *close = memchr(s + j, '}', len - j);
        if (close == NULL) {
            wh_buf_puts(why, "unterminated ");
            put_value(why, s + i, len - i, secret);
            wh_buf_puts(why, ": missing \"}\"");
            return false;
        }
        size_t end = (size_t)(close - s); /* index of the '}' */
        bool has_def = false;
        size_t def0 = 0;
        if (j == name0) {
            wh_buf_puts(why, "malformed ");
            put_value(why, s + i, end + 1 - i, secret);
            wh_buf_puts(why, ": a variable name starts with a letter or \"_\" and has only letters, digits and \"_\"");
            return false;
        }
        if (j < end) {
            if (s[j] == ':' && s[j + 1] == '-') { /* j < end, so s[j + 1] exists */
                has_def = true;
                def0 = j + 2;
            } else {
                wh_buf_puts(why, "malformed ");
                put_value(why, s + i, end + 1 - i, secret);
                wh_buf_puts(why, ": write ${NAME} or ${NAME:-default}, where NAME has only letters, digits and \"_\"");
                return false;
            }
        }
        if (has_def) {
            for (size_t k = def0; k + 1 < end; k++)
                if (s[k] == '$' && s[k + 1] == '{') {
                    wh_buf_puts(why, "malformed ");
                    put_value(why, s + i, end + 1 - i, secret);
                    wh_buf_puts(why, ": a ${...} inside a default is not supported");
                    return false;
                }
        }
        char *name = wh_xstrndup(s + name0, j - name0);
        const char *value = getenv(name);
        if (value != NULL && (value[0] != '\0' || !has_def)) {
            wh_buf_puts(out, value);
            if (secret) wh_buf_append(used, name, strlen(name) + 1);
        } else if (has_def) {
            wh_buf_append(out, s + def0, end - def0);
        } else {
            wh_buf_printf(why, "environment variable %s is not set (write ${%s:-default} to give a default)",
                          name, name);
            wh_free(name);
            return false;
        }
        wh_free(name);
        *changed = true;
        i = end + 1;
    }
    return true;
}

/* ==== parsing context and errors ======================================== */

typedef struct ctx {
    yaml_document_t *doc;
    const char *file;             /* for messages (borrowed) */
    wh_config *cfg;               /* being filled (borrowed) */
    wh_err *err;
    wh_buf val;                   /* the current scalar after substitution */
    bool secret;                  /* the current row has F_SECRET */
    wh_buf secret_used;           /* variables put into F_SECRET values: "NAME\0NAME\0" */
    yaml_node_t *key_at[NROWS];   /* where each key was written, NULL = not written */
    yaml_node_t *val_at[NROWS];   /* and its value */
} ctx;

/* A value scalar after substitution. s is borrowed from ctx.val and valid
 * until the next scalar_value call. */
typedef struct scalar {
    const char *s;
    size_t len;
    const char *raw;  /* as written in the file */
    size_t rawlen;
    bool null;        /* a plain "", ~ or null */
    bool changed;     /* ${...} or $$ replaced something */
} scalar;

/* Fills err with "<file>:<line>:<col>: <path>: <message>" (position and
 * path optional). Returns WH_ECONFIG. */
static int fail(ctx *c, const yaml_mark_t *at, const char *path, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
static int fail(ctx *c, const yaml_mark_t *at, const char *path, const char *fmt, ...) {
    wh_buf b = WH_BUF_INIT;
    wh_buf_puts(&b, c->file);
    if (at) wh_buf_printf(&b, ":%zu:%zu", at->line + 1, at->column + 1);
    wh_buf_puts(&b, ": ");
    if (path) wh_buf_printf(&b, "%s: ", path);
    va_list ap;
    va_start(ap, fmt);
    wh_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    wh_err_set(c->err, WH_ECONFIG, "%s", wh_buf_cstr(&b));
    wh_buf_free(&b);
    return WH_ECONFIG;
}

static bool is_null(const yaml_node_t *n) {
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return false;
    const char *v = (const char *)n->data.scalar.value;
    return strcmp(v, "") == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 ||
           strcmp(v, "NULL") == 0;
}

/* Describes a node for "got ...": "a mapping", "a list", "null", or the
 * quoted value (after substitution, with the original when it changed). */
static void put_got(wh_buf *b, const yaml_node_t *n, const scalar *sv, bool secret) {
    if (n->type == YAML_MAPPING_NODE) wh_buf_puts(b, "a mapping");
    else if (n->type == YAML_SEQUENCE_NODE) wh_buf_puts(b, "a list");
    else if (is_null(n)) wh_buf_puts(b, n->data.scalar.length ? "null" : "an empty value");
    else if (sv) {
        put_value(b, sv->s, sv->len, secret);
        if (sv->changed) {
            wh_buf_puts(b, " (from ");
            put_value(b, sv->raw, sv->rawlen, secret);
            wh_buf_putc(b, ')');
        }
    } else {
        put_value(b, (const char *)n->data.scalar.value, n->data.scalar.length, secret);
    }
}

/* "<path>: expected <expected>, got <value>[ <extra>]". */
static int fail_type(ctx *c, const yaml_node_t *n, const char *path, const char *expected,
                     const scalar *sv, const char *extra) {
    wh_buf b = WH_BUF_INIT;
    wh_buf_printf(&b, "expected %s, got ", expected);
    put_got(&b, n, sv, c->secret);
    if (extra) wh_buf_printf(&b, " %s", extra);
    int rc = fail(c, &n->start_mark, path, "%s", wh_buf_cstr(&b));
    wh_buf_free(&b);
    return rc;
}

/* What a row expects, for messages. */
static void describe(const cfg_row *r, wh_buf *b) {
    switch (r->type) {
    case T_INT:
    case T_LONG:
    case T_COUNT:
        if (r->max == NOMAX) wh_buf_printf(b, "an integer >= %llu", r->min);
        else wh_buf_printf(b, "an integer from %llu to %llu", r->min, r->max);
        break;
    case T_SECONDS:
        wh_buf_printf(b, "a number of seconds %s %g (at most %.0f), or a duration such as "
                         "\"500ms\", \"30s\", \"5m\" or \"1h\"",
                      r->smin_open ? ">" : ">=", r->smin, r->smax);
        break;
    case T_SIZE:
        if (r->min > 1) {
            wh_buf_puts(b, "a size of at least ");
            put_size(b, r->min);
            wh_buf_puts(b, ": a number of bytes");
        } else {
            wh_buf_printf(b, "a number of bytes%s", r->min == 1 ? " >= 1" : "");
        }
        wh_buf_puts(b, ", or a size such as \"256MiB\" or \"64 MB\" (units B, KB, MB, GB, KiB, MiB, GiB)");
        break;
    case T_BOOL: wh_buf_puts(b, "true or false"); break;
    case T_ENUM:
        wh_buf_puts(b, "one of ");
        for (size_t i = 0; r->names[i]; i++) wh_buf_printf(b, "%s%s", i ? ", " : "", r->names[i]);
        break;
    case T_STRING: wh_buf_puts(b, "a non-empty string"); break;
    case T_PATH: wh_buf_puts(b, "a directory (a non-empty string)"); break;
    case T_PATHLIST: wh_buf_puts(b, "a list of directories"); break;
    case T_QUEUES: wh_buf_puts(b, "a list of queue names, or a list of [name, weight] pairs"); break;
    }
}

static int fail_row(ctx *c, const cfg_row *r, const yaml_node_t *n, const char *path, const scalar *sv,
                    const char *extra) {
    wh_buf d = WH_BUF_INIT;
    describe(r, &d);
    int rc = fail_type(c, n, path, wh_buf_cstr(&d), sv, extra);
    wh_buf_free(&d);
    return rc;
}

/* Gets node `id` and refuses tags outside YAML's standard set (a `!ENV`
 * tag would otherwise be silently ignored). */
static int get_node(ctx *c, int id, const char *path, yaml_node_t **out) {
    yaml_node_t *n = yaml_document_get_node(c->doc, id);
    *out = n;
    const char *tag = (const char *)n->tag;
    if (tag && strncmp(tag, "tag:yaml.org,2002:", 18) != 0) {
        wh_buf b = WH_BUF_INIT;
        put_quoted(&b, tag, strlen(tag));
        int rc = fail(c, &n->start_mark, path, "unsupported tag %s (write the value without a tag)",
                      wh_buf_cstr(&b));
        wh_buf_free(&b);
        return rc;
    }
    return 0;
}

/* Reads a value scalar and applies ${VAR} substitution. */
static int scalar_value(ctx *c, const yaml_node_t *n, const char *path, scalar *sv) {
    memset(sv, 0, sizeof *sv);
    sv->raw = (const char *)n->data.scalar.value;
    sv->rawlen = n->data.scalar.length;
    sv->null = is_null(n);
    wh_buf_reset(&c->val);
    if (!sv->null) {
        wh_buf why = WH_BUF_INIT;
        if (!expand_env(sv->raw, sv->rawlen, &c->val, &sv->changed, &why, c->secret, &c->secret_used)) {
            int rc = fail(c, &n->start_mark, path, "%s", wh_buf_cstr(&why));
            wh_buf_free(&why);
            return rc;
        }
    }
    sv->s = wh_buf_cstr(&c->val);
    sv->len = c->val.len;
    if (memchr(sv->s, '\0', sv->len) != NULL)
        return fail(c, &n->start_mark, path, "the value contains a NUL character");
    return 0;
}

/* ==== one parse function per type ======================================= */

static void free_field(wh_config *cfg, const cfg_row *r) {
    void *f = field_of(cfg, r);
    switch (r->type) {
    case T_STRING:
    case T_PATH:
        wh_free(*(char **)f);
        *(char **)f = NULL;
        break;
    case T_PATHLIST: {
        char **list = *(char ***)f;
        for (size_t i = 0; list && list[i]; i++) wh_free(list[i]);
        wh_free(list);
        *(char ***)f = NULL;
        break;
    }
    case T_QUEUES:
        for (size_t i = 0; i < cfg->nqueues; i++) wh_free(cfg->queues[i].name);
        wh_free(cfg->queues);
        cfg->queues = NULL;
        cfg->nqueues = 0;
        cfg->queues_weighted = false;
        break;
    default: break;
    }
}

static void store_integer(wh_config *cfg, const cfg_row *r, unsigned long long v) {
    void *f = field_of(cfg, r);
    switch (r->type) {
    case T_INT: *(int *)f = (int)v; break;
    case T_LONG: *(long *)f = (long)v; break;
    case T_COUNT:
    case T_SIZE: *(size_t *)f = (size_t)v; break;
    default: break;
    }
}

static int enum_index(const char *const *names, const char *s) {
    for (int i = 0; names[i]; i++)
        if (strcmp(names[i], s) == 0) return i;
    return -1;
}

/* Sets the default of one row (the text in r->def goes through the same
 * conversions as the file's values). */
static void set_default(wh_config *cfg, const cfg_row *r) {
    void *f = field_of(cfg, r);
    unsigned long long u = 0;
    double d = 0;
    switch (r->type) {
    case T_INT:
    case T_LONG:
    case T_COUNT:
        if (!conv_integer(r->def, r->min, r->max, &u)) abort();
        store_integer(cfg, r, u);
        break;
    case T_SIZE:
        if (!conv_size(r->def, &u)) abort();
        store_integer(cfg, r, u);
        break;
    case T_SECONDS:
        if (!conv_seconds(r->def, &d)) abort();
        *(double *)f = d;
        break;
    case T_BOOL:
        *(bool *)f = (r->flags & F_DEV_DEFAULT) ? strcmp(cfg->env, "development") == 0
                                                 : strcmp(r->def, "true") == 0;
        break;
    case T_ENUM: *(int *)f = enum_index(r->names, r->def); break;
    case T_STRING: *(char **)f = wh_xstrdup(r->def); break;
    case T_PATH: *(char **)f = join_root(cfg->root, r->def); break;
    case T_PATHLIST: {
        char **list = wh_xcalloc(2, sizeof *list);
        list[0] = join_root(cfg->root, r->def);
        *(char ***)f = list;
        break;
    }
    case T_QUEUES: break; /* absent */
    }
}

/* "(remove the key to use the default, 4)" for a null value. */
static int fail_null(ctx *c, const cfg_row *r, const yaml_node_t *n, const char *path) {
    wh_buf extra = WH_BUF_INIT;
    if (r->def) wh_buf_printf(&extra, "(remove the key to use the default, %s)", r->def);
    else wh_buf_puts(&extra, "(remove the key to use the default)");
    int rc = fail_row(c, r, n, path, NULL, wh_buf_cstr(&extra));
    wh_buf_free(&extra);
    return rc;
}

static int parse_scalar(ctx *c, const cfg_row *r, const yaml_node_t *n, const char *path) {
    void *f = field_of(c->cfg, r);
    if (n->type != YAML_SCALAR_NODE) return fail_row(c, r, n, path, NULL, NULL);
    scalar sv;
    int rc = scalar_value(c, n, path, &sv);
    if (rc) return rc;
    if (sv.null || (sv.len == 0 && (r->flags & F_NULLABLE))) {
        if (!(r->flags & F_NULLABLE)) return fail_null(c, r, n, path);
        free_field(c->cfg, r);
        return 0;
    }
    unsigned long long u;
    double d;
    switch (r->type) {
    case T_INT:
    case T_LONG:
    case T_COUNT:
        if (!conv_integer(sv.s, r->min, r->max, &u)) return fail_row(c, r, n, path, &sv, NULL);
        store_integer(c->cfg, r, u);
        return 0;
    case T_SIZE:
        if (!conv_size(sv.s, &u) || u < r->min || u > r->max) return fail_row(c, r, n, path, &sv, NULL);
        store_integer(c->cfg, r, u);
        return 0;
    case T_SECONDS:
        if (!conv_seconds(sv.s, &d) || (r->smin_open ? d <= r->smin : d < r->smin) || d > r->smax)
            return fail_row(c, r, n, path, &sv, NULL);
        *(double *)f = d;
        return 0;
    case T_BOOL:
        if (strcmp(sv.s, "true") == 0 || strcmp(sv.s, "false") == 0) {
            *(bool *)f = sv.s[0] == 't';
            return 0;
        }
        return fail_row(c, r, n, path, &sv,
                        "(write true or false; yes/no, on/off and other spellings are not accepted)");
    case T_ENUM: {
        int i = enum_index(r->names, sv.s);
        if (i >= 0) {
            *(int *)f = i;
            return 0;
        }
        for (i = 0; r->names[i]; i++)
            if (strcasecmp(r->names[i], sv.s) == 0) break;
        if (r->names[i] == NULL) return fail_row(c, r, n, path, &sv, NULL);
        wh_buf extra = WH_BUF_INIT;
        wh_buf_printf(&extra, "(did you mean %s? names are case-sensitive)", r->names[i]);
        rc = fail_row(c, r, n, path, &sv, wh_buf_cstr(&extra));
        wh_buf_free(&extra);
        return rc;
    }
    case T_STRING:
    case T_PATH: {
        if (sv.len == 0) return fail_row(c, r, n, path, &sv, NULL);
        const char *expected = r->check ? r->check(sv.s) : NULL;
        if (expected) return fail_type(c, n, path, expected, &sv, NULL);
        char *v = r->type == T_PATH ? join_root(c->cfg->root, sv.s) : wh_xstrdup(sv.s);
        free_field(c->cfg, r);
        *(char **)f = v;
        return 0;
    }
    default: abort(); /* not a scalar type */
    }
}

/* workers.lua_path: a list of directories, each joined to root. */
static int parse_pathlist(ctx *c, const cfg_row *r, const yaml_node_t *n, const char *path) {
    if (n->type != YAML_SEQUENCE_NODE) return is_null(n) ? fail_null(c, r, n, path) : fail_row(c, r, n, path, NULL, NULL);
    size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    free_field(c->cfg, r);
    char **list = wh_xcalloc(count + 1, sizeof *list);
    *(char ***)field_of(c->cfg, r) = list; /* owned by cfg from here on: errors free it */
    for (size_t i = 0; i < count; i++) {
        char ipath[128];
        snprintf(ipath, sizeof ipath, "%s[%zu]", path, i);
        yaml_node_t *item;
        int rc = get_node(c, n->data.sequence.items.start[i], ipath, &item);
        if (rc) return rc;
        if (item->type != YAML_SCALAR_NODE) return fail_type(c, item, ipath, "a directory (a string)", NULL, NULL);
        scalar sv;
        if ((rc = scalar_value(c, item, ipath, &sv))) return rc;
        if (sv.null || sv.len == 0) return fail_type(c, item, ipath, "a directory (a non-empty string)", &sv, NULL);
        list[i] = join_root(c->cfg->root, sv.s);
    }
    return 0;
}

/* workers.queues, in Sidekiq's forms: [a, b] or [[a, 3], [b, 1]]. */
static int parse_queues(ctx *c, const cfg_row *r, const yaml_node_t *n, const char *path) {
    wh_config *cfg = c->cfg;
    free_field(cfg, r);
    if (is_null(n)) return 0; /* absent */
    if (n->type != YAML_SEQUENCE_NODE) return fail_row(c, r, n, path, NULL, NULL);
    size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (count == 0) return fail(c, &n->start_mark, path, "an empty list: name at least one queue, or remove the key");
    cfg->queues = wh_xcalloc(count, sizeof *cfg->queues); /* cfg->nqueues counts the filled ones */
    bool weighted = false;
    for (size_t i = 0; i < count; i++) {
        char ipath[128], npath[140], wpath[140];
        snprintf(ipath, sizeof ipath, "%s[%zu]", path, i);
        yaml_node_t *item, *name_node, *weight_node = NULL;
        int rc = get_node(c, n->data.sequence.items.start[i], ipath, &item);
        if (rc) return rc;
        if (item->type == YAML_MAPPING_NODE)
            return fail_type(c, item, ipath, "a queue name or a [name, weight] pair", NULL, NULL);
        bool pair = item->type == YAML_SEQUENCE_NODE;
        if (i == 0) weighted = pair;
        else if (pair != weighted)
            return fail(c, &item->start_mark, ipath,
                        "%s, but %s[0] is %s: use one form for the whole list, either "
                        "[critical, default] or [[critical, 3], [default, 1]]",
                        pair ? "a [name, weight] pair" : "a plain queue name", path,
                        weighted ? "a [name, weight] pair" : "a plain name");
        if (pair) {
            size_t m = (size_t)(item->data.sequence.items.top - item->data.sequence.items.start);
            if (m != 2)
                return fail(c, &item->start_mark, ipath, "expected a [name, weight] pair, got a list of %zu item%s",
                            m, m == 1 ? "" : "s");
            snprintf(npath, sizeof npath, "%s[0]", ipath);
            snprintf(wpath, sizeof wpath, "%s[1]", ipath);
            if ((rc = get_node(c, item->data.sequence.items.start[0], npath, &name_node))) return rc;
            if ((rc = get_node(c, item->data.sequence.items.start[1], wpath, &weight_node))) return rc;
        } else {
            snprintf(npath, sizeof npath, "%s", ipath);
            name_node = item;
        }
        if (name_node->type != YAML_SCALAR_NODE) return fail_type(c, name_node, npath, "a queue name", NULL, NULL);
        scalar sv;
        if ((rc = scalar_value(c, name_node, npath, &sv))) return rc;
        if (sv.null || sv.len == 0) return fail(c, &name_node->start_mark, npath, "empty queue name");
        for (size_t k = 0; k < cfg->nqueues; k++)
            if (strcmp(cfg->queues[k].name, sv.s) == 0) {
                wh_buf q = WH_BUF_INIT;
                put_quoted(&q, sv.s, sv.len);
                rc = fail(c, &name_node->start_mark, npath, "duplicate queue %s (already %s[%zu])",
                          wh_buf_cstr(&q), path, k);
                wh_buf_free(&q);
                return rc;
            }
        cfg->queues[cfg->nqueues].name = wh_xstrdup(sv.s);
        cfg->queues[cfg->nqueues].weight = 1;
        cfg->nqueues++;
        if (weight_node) {
            char expected[64];
            snprintf(expected, sizeof expected, "a weight, an integer from 1 to %d", WEIGHT_MAX);
            if (weight_node->type != YAML_SCALAR_NODE) return fail_type(c, weight_node, wpath, expected, NULL, NULL);
            if ((rc = scalar_value(c, weight_node, wpath, &sv))) return rc;
            unsigned long long w;
            if (sv.null || !conv_integer(sv.s, 1, WEIGHT_MAX, &w))
                return fail_type(c, weight_node, wpath, expected, &sv, NULL);
            cfg->queues[cfg->nqueues - 1].weight = (int)w;
        }
    }
    cfg->queues_weighted = weighted;
    return 0;
}

static int parse_row(ctx *c, const cfg_row *r, const yaml_node_t *n, const char *path) {
    c->secret = (r->flags & F_SECRET) != 0;
    int rc;
    switch (r->type) {
    case T_PATHLIST: rc = parse_pathlist(c, r, n, path); break;
    case T_QUEUES: rc = parse_queues(c, r, n, path); break;
    default: rc = parse_scalar(c, r, n, path); break;
    }
    c->secret = false;
    return rc;
}

/* cfg->secret_env from c->secret_used (stays NULL when no variable was used). */
static void set_secret_env(ctx *c) {
    size_t count = 0;
    for (size_t i = 0; i < c->secret_used.len; i++)
        if (c->secret_used.data[i] == '\0') count++;
    if (count == 0) return;
    char **list = wh_xcalloc(count + 1, sizeof *list);
    size_t k = 0;
    for (size_t i = 0; i < c->secret_used.len; i += strlen(c->secret_used.data + i) + 1)
        list[k++] = wh_xstrdup(c->secret_used.data + i);
    c->cfg->secret_env = list;
}

/* ==== the document ====================================================== */

static const cfg_row *find_row(const char *section, const char *key, size_t keylen) {
    for (size_t i = 0; i < NROWS; i++)
        if (strcmp(rows[i].section, section) == 0 && strlen(rows[i].key) == keylen &&
            memcmp(rows[i].key, key, keylen) == 0)
            return &rows[i];
    return NULL;
}

static int fail_key_not_scalar(ctx *c, const yaml_node_t *key, const char *path, const char *what) {
    return fail_type(c, key, path, what, NULL, NULL);
}

static int parse_section(ctx *c, const char *section, const yaml_node_t *map) {
    if (is_null(map)) return 0; /* "workers:" alone: all defaults */
    if (map->type != YAML_MAPPING_NODE)
        return fail_type(c, map, section, "a mapping of settings", NULL, NULL);
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *key, *val;
        int rc = get_node(c, p->key, section, &key);
        if (rc) return rc;
        if (key->type != YAML_SCALAR_NODE) return fail_key_not_scalar(c, key, section, "a key name");
        const char *k = (const char *)key->data.scalar.value;
        size_t klen = key->data.scalar.length;
        wh_buf path = WH_BUF_INIT;
        wh_buf_printf(&path, "%s.", section);
        wh_buf_append(&path, k, klen);
        const cfg_row *r = find_row(section, k, klen);
        if (r == NULL) {
            wh_buf known = WH_BUF_INIT;
            for (size_t i = 0; i < NROWS; i++)
                if (strcmp(rows[i].section, section) == 0)
                    wh_buf_printf(&known, "%s%s", known.len ? ", " : "", rows[i].key);
            if (strcmp(k, "<<") == 0)
                rc = fail(c, &key->start_mark, section, "merge keys (<<) are not supported: write the keys out");
            else
                rc = fail(c, &key->start_mark, wh_buf_cstr(&path), "unknown key (known keys: %s)",
                          wh_buf_cstr(&known));
            wh_buf_free(&known);
            wh_buf_free(&path);
            return rc;
        }
        size_t idx = (size_t)(r - rows);
        if (c->key_at[idx]) {
            rc = fail(c, &key->start_mark, wh_buf_cstr(&path), "duplicate key (first at line %zu, column %zu)",
                      c->key_at[idx]->start_mark.line + 1, c->key_at[idx]->start_mark.column + 1);
            wh_buf_free(&path);
            return rc;
        }
        rc = get_node(c, p->value, wh_buf_cstr(&path), &val);
        if (rc == 0) {
            c->key_at[idx] = key;
            c->val_at[idx] = val;
            rc = parse_row(c, r, val, wh_buf_cstr(&path));
        }
        wh_buf_free(&path);
        if (rc) return rc;
    }
    return 0;
}

/* Checks that involve more than one key. */
static int cross_checks(ctx *c) {
    wh_config *cfg = c->cfg;
    if (cfg->recycle_above_memory == 0 || cfg->recycle_above_memory < cfg->memory_limit) return 0;
    /* recycle_above_memory defaults to 0, so it was written in the file. */
    const yaml_node_t *at = NULL;
    for (size_t i = 0; i < NROWS; i++)
        if (rows[i].offset == OFF(recycle_above_memory)) at = c->val_at[i];
    wh_buf b = WH_BUF_INIT;
    wh_buf_puts(&b, "must be below workers.memory_limit (");
    put_size(&b, cfg->memory_limit);
    wh_buf_puts(&b, "), or 0 for never, got ");
    put_size(&b, cfg->recycle_above_memory);
    wh_buf_puts(&b, ": a VM cannot grow past its memory limit, so it would never be recycled");
    int rc = fail(c, at ? &at->start_mark : NULL, "workers.recycle_above_memory", "%s", wh_buf_cstr(&b));
    wh_buf_free(&b);
    return rc;
}

static int apply_document(ctx *c) {
    yaml_node_t *root = yaml_document_get_root_node(c->doc);
    if (root == NULL) return 0; /* an empty file */
    int rc = get_node(c, 1, NULL, &root); /* the root is node 1; checks its tag */
    if (rc) return rc;
    if (is_null(root)) return 0;
    if (root->type != YAML_MAPPING_NODE)
        return fail_type(c, root, NULL, "a mapping of sections (workers, queue, logger) at the top level", NULL, NULL);
    const yaml_node_t *seen[NSECTIONS] = {0};
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        yaml_node_t *key, *val;
        if ((rc = get_node(c, p->key, NULL, &key))) return rc;
        if (key->type != YAML_SCALAR_NODE) return fail_key_not_scalar(c, key, NULL, "a section name");
        const char *k = (const char *)key->data.scalar.value;
        size_t s;
        for (s = 0; s < NSECTIONS; s++)
            if (strlen(section_names[s]) == key->data.scalar.length && strcmp(section_names[s], k) == 0) break;
        if (s == NSECTIONS) {
            if (strcmp(k, "<<") == 0)
                return fail(c, &key->start_mark, NULL, "merge keys (<<) are not supported: write the keys out");
            wh_buf q = WH_BUF_INIT;
            put_quoted(&q, k, key->data.scalar.length);
            rc = fail(c, &key->start_mark, NULL, "unknown section %s (known: workers, queue, logger)",
                      wh_buf_cstr(&q));
            wh_buf_free(&q);
            return rc;
        }
        if (seen[s])
            return fail(c, &key->start_mark, section_names[s], "duplicate section (first at line %zu, column %zu)",
                        seen[s]->start_mark.line + 1, seen[s]->start_mark.column + 1);
        seen[s] = key;
        if ((rc = get_node(c, p->value, section_names[s], &val))) return rc;
        if ((rc = parse_section(c, section_names[s], val))) return rc;
    }
    return cross_checks(c);
}

/* The byte of text at a libyaml mark (line, and column in characters), or
 * NULL when the mark is past the end. */
static const char *byte_at(const char *text, size_t len, const yaml_mark_t *m) {
    size_t i = 0, line = 0, col = 0;
    while (i < len && line < m->line)
        if (text[i++] == '\n') line++;
    while (i < len && col < m->column && text[i] != '\n') {
        i++;
        while (i < len && ((unsigned char)text[i] & 0xC0) == 0x80) i++; /* UTF-8 continuation */
        col++;
    }
    return i < len ? text + i : NULL;
}

/* Reports a libyaml failure as "<file>:<line>:<col>: <problem> (<context>)". */
static int fail_yaml(ctx *c, const yaml_parser_t *p, const char *text, size_t len) {
    if (p->error == YAML_MEMORY_ERROR) return fail(c, NULL, NULL, "out of memory while reading YAML");
    const char *problem = p->problem ? p->problem : "invalid YAML";
    if (p->error == YAML_READER_ERROR) {
        /* The reader reports a byte offset, not a mark: count lines ourselves. */
        yaml_mark_t m = {0, 0, 0};
        for (size_t i = 0; i < p->problem_offset && i < len; i++) {
            if (text[i] == '\n') m.line++, m.column = 0;
            else if (((unsigned char)text[i] & 0xC0) != 0x80) m.column++;
        }
        if (p->problem_value != -1) return fail(c, &m, NULL, "%s (byte 0x%02X)", problem, (unsigned)p->problem_value);
        return fail(c, &m, NULL, "%s", problem);
    }
    /* The most common cause of "cannot start any token" is a tab: say so. */
    const char *hint = "";
    const char *at = byte_at(text, len, &p->problem_mark);
    if (at && *at == '\t') hint = "; YAML does not allow tabs for indentation, use spaces";
    if (p->context)
        return fail(c, &p->problem_mark, NULL, "%s (%s at line %zu, column %zu)%s", problem, p->context,
                    p->context_mark.line + 1, p->context_mark.column + 1, hint);
    return fail(c, &p->problem_mark, NULL, "%s%s", problem, hint);
}

/* ==== public ============================================================ */

/* A config with every default; takes ownership of root and env (owned strings). */
static wh_config *defaults_owned(char *root, char *env) {
    wh_config *cfg = wh_xcalloc(1, sizeof *cfg);
    cfg->root = root;
    cfg->env = env;
    for (size_t i = 0; i < NROWS; i++) set_default(cfg, &rows[i]);
    return cfg;
}

wh_config *wh_config_defaults(const char *root, const char *env) {
    const char *from;
    return defaults_owned(absolute_root(root), wh_xstrdup(pick_env(env, &from)));
}

/* Parses text into a config whose root and env are already resolved (both
 * owned strings, taken over in every case). */
static int parse_text(wh_config **out, const char *name, const char *text, size_t len, char *root, char *env,
                      wh_err *err) {
    ctx c;
    memset(&c, 0, sizeof c);
    c.cfg = defaults_owned(root, env);
    c.cfg->file = wh_xstrdup(name ? name : "<config>");
    c.file = c.cfg->file;
    c.err = err;
    wh_buf_init(&c.val);
    wh_buf_init(&c.secret_used);

    yaml_parser_t parser;
    yaml_document_t doc, extra;
    int rc = 0;
    if (!yaml_parser_initialize(&parser)) {
        rc = fail(&c, NULL, NULL, "out of memory while reading YAML");
        goto out_cfg;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)(text ? text : ""), text ? len : 0);
    if (!yaml_parser_load(&parser, &doc)) {
        rc = fail_yaml(&c, &parser, text, len);
        goto out_parser;
    }
    if (yaml_document_get_root_node(&doc) != NULL) { /* exactly one document */
        if (!yaml_parser_load(&parser, &extra)) {
            rc = fail_yaml(&c, &parser, text, len);
            goto out_doc;
        }
        if (yaml_document_get_root_node(&extra) != NULL)
            rc = fail(&c, &extra.start_mark, NULL,
                      "a second YAML document starts here; the file must hold exactly one");
        yaml_document_delete(&extra);
        if (rc) goto out_doc;
    }
    c.doc = &doc;
    rc = apply_document(&c);
    if (rc == 0) set_secret_env(&c);
out_doc:
    yaml_document_delete(&doc);
out_parser:
    yaml_parser_delete(&parser);
out_cfg:
    wh_buf_free(&c.val);
    wh_buf_free(&c.secret_used);
    if (rc) {
        wh_config_free(c.cfg);
        return rc;
    }
    *out = c.cfg;
    return 0;
}

int wh_config_parse(wh_config **out, const char *name, const char *text, size_t len, const char *root,
                    const char *env, wh_err *err) {
    const char *from;
    env = pick_env(env, &from);
    int rc = check_env_name(env, from, err);
    if (rc) return rc;
    return parse_text(out, name, text, len, absolute_root(root), wh_xstrdup(env), err);
}


int wh_config_load(wh_config **out, const wh_config_source *src, wh_err *err) {
    static const wh_config_source none = {NULL, NULL, NULL};
    if (src == NULL) src = &none;
    const char *root_arg = src->root ? src->root : ".";

    char *root = realpath(root_arg, NULL);
    struct stat st;
    if (root == NULL || stat(root, &st) != 0 || !S_ISDIR(st.st_mode)) {
        int e = root == NULL ? errno : ENOTDIR;
        free(root);
        return wh_err_set(err, WH_ECONFIG, "root directory %s: %s", root_arg, strerror(e));
    }

    const char *from;
    const char *env = pick_env(src->env, &from);
    int rc = check_env_name(env, from, err);
    if (rc) {
        free(root);
        return rc;
    }

    char *file;
    if (src->file) {
        file = wh_xstrdup(src->file);
    } else {
        wh_buf b = WH_BUF_INIT;
        wh_buf_printf(&b, "%s%sconfig/%s.yaml", root, strcmp(root, "/") == 0 ? "" : "/", env);
        file = wh_buf_steal(&b);
    }

    wh_buf tb = WH_BUF_INIT;
    int e = wh_file_read(file, FILE_MAX, &tb);
    size_t len = tb.len;
    char *text = e ? NULL : wh_buf_steal(&tb);
    wh_buf_free(&tb);
    if (e != 0) {
        rc = wh_err_set(err, WH_ECONFIG, "%s: cannot read: %s", file, strerror(e));
    } else {
        char *root_copy = wh_xstrdup(root);
        rc = parse_text(out, file, text, len, root_copy, wh_xstrdup(env), err);
    }
    free(root); /* from realpath */
    wh_free(text);
    wh_free(file);
    return rc;
}

void wh_config_free(wh_config *cfg) {
    if (cfg == NULL) return;
    for (size_t i = 0; i < NROWS; i++) free_field(cfg, &rows[i]);
    for (size_t i = 0; cfg->secret_env && cfg->secret_env[i]; i++) wh_free(cfg->secret_env[i]);
    wh_free(cfg->secret_env);
    wh_free(cfg->root);
    wh_free(cfg->env);
    wh_free(cfg->file);
    wh_free(cfg);
}

const char *wh_mode_name(wh_mode m) {
    if ((unsigned)m < sizeof mode_names / sizeof mode_names[0] - 1) return mode_names[m];
    return "unknown";
}
