/* SPDX-License-Identifier: MIT
 * jtop.c -- top-level members of a JSON object, straight from its text. See
 * jtop.h for the contract.
 *
 * One validating scanner, iterative: the kinds of the open containers are
 * bits of one uint64_t (nesting is at most 64 deep), so memory does not
 * depend on the text. Strings are decoded only into a sink: nothing, a
 * comparison with the key asked for, or a buffer (wh_jtop_string).
 */
#include "json/jtop.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "json/json.h"

typedef struct scan {
    const char *s;
    size_t n, i;
    wh_err *err;
} scan;

static int bad(scan *p, size_t at, const char *what) {
    return wh_err_set(p->err, WH_EJSON, "invalid JSON at byte %zu: %s", at, what);
}

static void skip_ws(scan *p) {
    while (p->i < p->n) {
        char c = p->s[p->i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return;
        p->i++;
    }
}

/* ---- strings ---- */

/* Where a string's decoded bytes go: nowhere (NULL), compared with cmp, or
 * appended to buf. */
typedef struct sink {
    wh_buf *buf;
    const char *cmp;
    size_t cmp_len, pos;
    bool eq;
} sink;

static void sink_put(sink *k, const char *b, size_t n) {
    if (k == NULL || n == 0) return;
    if (k->buf) wh_buf_append(k->buf, b, n);
    if (k->cmp) {
        if (k->eq && n <= k->cmp_len - k->pos && memcmp(k->cmp + k->pos, b, n) == 0) k->pos += n;
        else k->eq = false;
    }
}

static int hex4(const char *s, size_t avail) {
    if (avail < 4) return -1;
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        int d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return -1;
        v = v * 16 + d;
    }
    return v;
}

static void put_utf8(sink *k, uint32_t cp) {
    char b[4];
    size_t n;
    if (cp < 0x80) b[0] = (char)cp, n = 1;
    else if (cp < 0x800) b[0] = (char)(0xC0 | cp >> 6), b[1] = (char)(0x80 | (cp & 0x3F)), n = 2;
    else if (cp < 0x10000)
        b[0] = (char)(0xE0 | cp >> 12), b[1] = (char)(0x80 | ((cp >> 6) & 0x3F)), b[2] = (char)(0x80 | (cp & 0x3F)),
        n = 3;
    else
        b[0] = (char)(0xF0 | cp >> 18), b[1] = (char)(0x80 | ((cp >> 12) & 0x3F)),
        b[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), b[3] = (char)(0x80 | (cp & 0x3F)), n = 4;
    sink_put(k, b, n);
}

/* A run of raw bytes inside a string: valid UTF-8, no control bytes (the
 * caller stops at those). */
static int raw_run(scan *p, sink *k, size_t from, size_t to, size_t quote) {
    if (!wh_json_utf8_valid(p->s + from, to - from)) return bad(p, quote, "invalid UTF-8 in string");
    sink_put(k, p->s + from, to - from);
    return 0;
}

/* The escape at p->i (a backslash). */
static int escape(scan *p, sink *k) {
    const char *s = p->s;
    size_t i = p->i;
    if (i + 1 >= p->n) return bad(p, p->n, "unterminated string");
    char e = s[i + 1], one;
    switch (e) {
    case '"': one = '"'; break;
    case '\\': one = '\\'; break;
    case '/': one = '/'; break;
    case 'b': one = '\b'; break;
    case 'f': one = '\f'; break;
    case 'n': one = '\n'; break;
    case 'r': one = '\r'; break;
    case 't': one = '\t'; break;
    case 'u': {
        int u = hex4(s + i + 2, p->n - i - 2);
        if (u < 0) return bad(p, i, "invalid \\u escape");
        char what[40];
        if (u >= 0xD800 && u <= 0xDBFF) {
            int lo = (i + 7 < p->n && s[i + 6] == '\\' && s[i + 7] == 'u') ? hex4(s + i + 8, p->n - i - 8) : -1;
            if (lo >= 0xDC00 && lo <= 0xDFFF) {
                put_utf8(k, 0x10000 + (((uint32_t)u - 0xD800) << 10) + ((uint32_t)lo - 0xDC00));
                p->i = i + 12;
                return 0;
            }
        }
        if (u >= 0xD800 && u <= 0xDFFF) {
            snprintf(what, sizeof what, "lone surrogate \\u%04X", (unsigned)u);
            return bad(p, i, what);
        }
        put_utf8(k, (uint32_t)u);
        p->i = i + 6;
        return 0;
    }
    default: return bad(p, i, "invalid escape in string");
    }
    sink_put(k, &one, 1);
    p->i = i + 2;
    return 0;
}

/* The string token at p->i (its opening quote); p->i ends after it. */
static int scan_string(scan *p, sink *k) {
    size_t quote = p->i, run = ++p->i;
    for (;;) {
        while (p->i < p->n) {
            unsigned char c = (unsigned char)p->s[p->i];
            if (c == '"' || c == '\\' || c < 0x20) break;
            p->i++;
        }
        if (p->i >= p->n) return bad(p, p->n, "unterminated string");
        int rc = raw_run(p, k, run, p->i, quote);
        if (rc) return rc;
        char c = p->s[p->i];
        if (c == '"') {
            p->i++;
            return 0;
        }
        if (c != '\\') return bad(p, p->i, "control character in string");
        rc = escape(p, k);
        if (rc) return rc;
        run = p->i;
    }
}

/* ---- other scalars ---- */

static bool digit_at(const scan *p, size_t i) { return i < p->n && p->s[i] >= '0' && p->s[i] <= '9'; }

static int scan_number(scan *p) {
    size_t start = p->i, i = p->i;
    if (i < p->n && p->s[i] == '-') i++;
    if (i < p->n && p->s[i] == '0') i++;
    else if (digit_at(p, i)) while (digit_at(p, i)) i++;
    else return bad(p, start, "invalid number");
    if (i < p->n && p->s[i] == '.') {
        if (!digit_at(p, ++i)) return bad(p, start, "invalid number");
        while (digit_at(p, i)) i++;
    }
    if (i < p->n && (p->s[i] == 'e' || p->s[i] == 'E')) {
        i++;
        if (i < p->n && (p->s[i] == '+' || p->s[i] == '-')) i++;
        if (!digit_at(p, i)) return bad(p, start, "invalid number");
        while (digit_at(p, i)) i++;
    }
    p->i = i;
    return 0;
}

static int scan_scalar(scan *p) {
    char c = p->s[p->i];
    if (c == '"') return scan_string(p, NULL);
    if (c == '-' || (c >= '0' && c <= '9')) return scan_number(p);
    static const char *const lits[] = {"true", "false", "null"};
    for (int k = 0; k < 3; k++) {
        size_t l = strlen(lits[k]);
        if (p->n - p->i >= l && memcmp(p->s + p->i, lits[k], l) == 0) {
            p->i += l;
            return 0;
        }
    }
    return bad(p, p->i, "unexpected character");
}

/* ---- values ---- */

/* "key" then ':' inside an object (p->i at the key, after whitespace). */
static int scan_key_colon(scan *p, sink *k) {
    if (p->i >= p->n || p->s[p->i] != '"') return bad(p, p->i, "expected a key");
    int rc = scan_string(p, k);
    if (rc) return rc;
    skip_ws(p);
    if (p->i >= p->n || p->s[p->i] != ':') return bad(p, p->i, "expected ':'");
    p->i++;
    return 0;
}

/* One whole value at p->i (after whitespace), depth containers already
 * open around it. */
static int scan_value(scan *p, int depth) {
    uint64_t objs = 0; /* bit 0: the innermost open container here is an object */
    int d = 0;         /* containers open inside this value */
    for (;;) {
        skip_ws(p);
        if (p->i >= p->n) return bad(p, p->n, "unexpected end of text");
        char c = p->s[p->i];
        bool closed_at_once = false;
        if (c == '{' || c == '[') {
            if (depth + d >= WH_JSON_DEFAULT_MAX_DEPTH)
                return wh_err_set(p->err, WH_EJSON, "invalid JSON at byte %zu: nesting deeper than %d", p->i,
                                  WH_JSON_DEFAULT_MAX_DEPTH);
            objs = objs << 1 | (c == '{');
            d++;
            p->i++;
            skip_ws(p);
            if (p->i < p->n && p->s[p->i] == (c == '{' ? '}' : ']')) {
                p->i++;
                d--;
                objs >>= 1;
                closed_at_once = true;
            } else if (c == '{') {
                int rc = scan_key_colon(p, NULL);
                if (rc) return rc;
                continue;
            } else {
                continue;
            }
        }
        if (!closed_at_once) {
            int rc = scan_scalar(p);
            if (rc) return rc;
        }
        /* after a value: close containers, or go on to the next value */
        for (;;) {
            if (d == 0) return 0;
            skip_ws(p);
            if (p->i >= p->n) return bad(p, p->n, "unexpected end of text");
            c = p->s[p->i];
            bool obj = objs & 1;
            if (c == ',') {
                p->i++;
                if (obj) {
                    skip_ws(p);
                    int rc = scan_key_colon(p, NULL);
                    if (rc) return rc;
                }
                break;
            }
            if (c != (obj ? '}' : ']')) return bad(p, p->i, obj ? "expected ',' or '}'" : "expected ',' or ']'");
            p->i++;
            d--;
            objs >>= 1;
        }
    }
}

/* ---- the top-level object ---- */

typedef struct member {
    size_t key_at;           /* the key's opening quote */
    size_t value_at, value_end;
    bool match;              /* the key is the one asked for */
} member;

typedef int (*member_fn)(void *ctx, scan *p, const member *m);

static const char *type_at(char c) {
    switch (c) {
    case '[': return "an array";
    case '"': return "a string";
    case 't': case 'f': return "a boolean";
    case 'n': return "null";
    default: return "a number";
    }
}

/* Walks the object in p, calling fn for each member, then checks that only
 * whitespace follows. *open_at is the '{', *last_end the end of the last
 * member's value (0 if none). A second member matching key is refused. */
static int walk(scan *p, const char *key, member_fn fn, void *ctx, size_t *open_at, size_t *last_end) {
    *last_end = 0;
    skip_ws(p);
    if (p->i >= p->n) return wh_err_set(p->err, WH_EJSON, "invalid JSON: empty input");
    if (p->s[p->i] != '{') {
        char first = p->s[p->i];
        int rc = scan_value(p, 0);
        if (rc) return rc;
        skip_ws(p);
        if (p->i != p->n) return bad(p, p->i, "text after the value");
        return wh_err_set(p->err, WH_EJSON, "invalid JSON: the payload is %s, not an object", type_at(first));
    }
    *open_at = p->i++;
    skip_ws(p);
    bool seen = false;
    if (p->i < p->n && p->s[p->i] == '}') {
        p->i++;
    } else {
        for (;;) {
            member m;
            m.key_at = p->i;
            sink cmp = {NULL, key, strlen(key), 0, true};
            int rc = scan_key_colon(p, &cmp);
            if (rc) return rc;
            m.match = cmp.eq && cmp.pos == cmp.cmp_len;
            if (m.match && seen) {
                char what[80];
                snprintf(what, sizeof what, "duplicate key \"%.40s\"", key);
                return bad(p, m.key_at, what);
            }
            seen = seen || m.match;
            skip_ws(p);
            m.value_at = p->i;
            rc = scan_value(p, 1);
            if (rc) return rc;
            m.value_end = *last_end = p->i;
            rc = fn(ctx, p, &m);
            if (rc) return rc;
            skip_ws(p);
            if (p->i >= p->n) return bad(p, p->n, "unexpected end of text");
            if (p->s[p->i] == '}') {
                p->i++;
                break;
            }
            if (p->s[p->i] != ',') return bad(p, p->i, "expected ',' or '}'");
            p->i++;
            skip_ws(p);
        }
    }
    skip_ws(p);
    if (p->i != p->n) return bad(p, p->i, "text after the value");
    return 0;
}

/* ---- rewrite ---- */

typedef struct rewrite_ctx {
    wh_buf *out;
    const char *value;
    size_t value_len;
    size_t copied; /* text before this offset is in out */
    bool found;
} rewrite_ctx;

static int rewrite_member(void *ctx, scan *p, const member *m) {
    rewrite_ctx *r = ctx;
    if (!m->match) return 0;
    wh_buf_append(r->out, p->s + r->copied, m->value_at - r->copied);
    wh_buf_append(r->out, r->value, r->value_len);
    r->copied = m->value_end;
    r->found = true;
    return 0;
}

int wh_jtop_rewrite(const char *json, size_t len, const char *key, const char *value_json, size_t value_len,
                    wh_buf *out, wh_err *err) {
    if (key == NULL || out == NULL || (json == NULL && len) || (value_json == NULL && value_len))
        return wh_err_set(err, WH_EINVAL, "wh_jtop_rewrite: NULL argument");
    /* The new value: one valid JSON value, which will sit one level down. */
    scan v = {value_json, value_len, 0, err};
    skip_ws(&v);
    int rc = v.i < v.n ? scan_value(&v, 1) : bad(&v, 0, "empty value");
    if (rc == 0) {
        skip_ws(&v);
        if (v.i != v.n) rc = bad(&v, v.i, "text after the value");
    }
    if (rc) {
        wh_err_prefix(err, "wh_jtop_rewrite: the new value");
        if (err) err->code = WH_EINVAL;
        return WH_EINVAL;
    }

    scan p = {json, len, 0, err};
    rewrite_ctx r = {out, value_json, value_len, 0, false};
    size_t open_at = 0, last_end = 0;
    rc = walk(&p, key, rewrite_member, &r, &open_at, &last_end);
    if (rc) return rc;
    if (!r.found) {
        size_t at = last_end ? last_end : open_at + 1;
        wh_buf_append(out, json + r.copied, at - r.copied);
        if (last_end) wh_buf_putc(out, ',');
        wh_json_write_string(out, key, strlen(key));
        wh_buf_putc(out, ':');
        wh_buf_append(out, value_json, value_len);
        r.copied = at;
    }
    wh_buf_append(out, json + r.copied, len - r.copied);
    return 0;
}

/* ---- read a string member ---- */

typedef struct string_ctx {
    wh_buf *value;
    int found;
} string_ctx;

static int string_member(void *ctx, scan *p, const member *m) {
    string_ctx *g = ctx;
    if (!m->match || p->s[m->value_at] != '"') return 0;
    scan sub = {p->s, m->value_end, m->value_at, p->err}; /* already validated */
    sink k = {g->value, NULL, 0, 0, true};
    int rc = scan_string(&sub, &k);
    if (rc == 0) g->found = 1;
    return rc;
}

int wh_jtop_string(const char *json, size_t len, const char *key, wh_buf *value, wh_err *err) {
    if (key == NULL || value == NULL || (json == NULL && len))
        return wh_err_set(err, WH_EINVAL, "wh_jtop_string: NULL argument");
    scan p = {json, len, 0, err};
    string_ctx g = {value, 0};
    size_t open_at, last_end;
    int rc = walk(&p, key, string_member, &g, &open_at, &last_end);
    return rc ? rc : g.found;
}
