/* json.h -- JSON documents for job payloads and arguments.
 *
 * Parsing uses yajl's event parser (libyajl, Debian's libyajl-dev) and builds
 * an immutable tree in an arena owned by a wh_json_doc. Chosen for speed and
 * because every rule we need can be enforced around it:
 *   - integers are exact over the whole int64 range (we parse number text
 *     ourselves from yajl's number callback; yajl's integer callback refuses
 *     INT64_MIN and misreads some 19-digit values);
 *   - every number keeps its original text, so writing a parsed document back
 *     reproduces each number byte for byte (no float-digit or int64 drift);
 *   - invalid UTF-8, lone surrogate escapes (\uD800 without its pair, or a
 *     lone low surrogate) and duplicate object keys are refused;
 *   - nesting deeper than limits->max_depth and documents longer than
 *     limits->max_bytes are refused;
 *   - memory is bounded: a parse holds at most 8 times the length of its
 *     text plus 1 MiB (wh_json_parse_limit), or it fails (see below);
 *   - exactly one value with only whitespace around it; no comments.
 *
 * Trees can also be built by hand (from Lua values, say) with the wh_json_new_*
 * functions, whose memory comes from the same arena.
 *
 * Threads: a document is not shared while it is being built; once built it is
 * immutable and may be read from any thread. */
#ifndef WH_JSON_H
#define WH_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"

typedef enum wh_json_type {
    WH_JSON_NULL,
    WH_JSON_FALSE,
    WH_JSON_TRUE,
    WH_JSON_INT,    /* an integer literal within int64: u.i */
    WH_JSON_FLOAT,  /* any other number (fraction, exponent, or an integer
                       literal outside int64): u.f */
    WH_JSON_STRING, /* u.str: UTF-8 checked, may contain NUL bytes */
    WH_JSON_ARRAY,  /* u.arr */
    WH_JSON_OBJECT, /* u.obj, members in document order, keys unique */
} wh_json_type;

typedef struct wh_json wh_json;
typedef struct wh_json_member wh_json_member;

struct wh_json {
    wh_json_type type;
    union {
        int64_t i;
        struct {
            double d;          /* strtod of the text (may be +-inf for 1e999) */
            const char *raw;   /* original number text, or NULL when built by hand */
            size_t raw_len;
            bool int_literal;  /* true when the text is an integer literal (no '.', 'e')
                                  too large for int64 */
        } f;
        struct {
            const char *s; /* not NUL-terminated in general; use len */
            size_t len;    /* bytes */
        } str;
        struct {
            wh_json *items; /* n contiguous values */
            size_t n;
        } arr;
        struct {
            wh_json_member *members; /* n contiguous members */
            size_t n;
        } obj;
    } u;
};

struct wh_json_member {
    const char *key; /* not NUL-terminated in general; use key_len */
    size_t key_len;
    wh_json value;
};

typedef struct wh_json_doc wh_json_doc; /* opaque: an arena and a root */

typedef struct wh_json_limits {
    size_t max_bytes; /* 0 = no limit */
    int max_depth;    /* arrays/objects nested deeper than this are refused; 0 = 64 */
} wh_json_limits;

#define WH_JSON_DEFAULT_MAX_DEPTH 64

/* The memory bound of a parse. Every byte a parse asks malloc for is counted
 * while the parse runs: the document with its arena chunks (the tree, keys,
 * strings, number texts), the per-container value counts of the pass that
 * runs before yajl (4 bytes per array or object) and the stack of open
 * containers (old and new block both while one grows), the sort buffer of
 * the duplicate-key check, and yajl's heap blocks. Ours are refused before
 * they are made; yajl's (a string with escapes is decoded into one buffer,
 * at most twice that string's length) are counted when made and stop the
 * parse at its next event. The limit is WH_JSON_PARSE_FACTOR * len +
 * WH_JSON_PARSE_SLACK: no parse holds more than 8x + 1 MiB (malloc's own
 * headers aside; on failure all of it is freed).
 *
 * What fits: the tree is all a parse keeps. Each array or object gets its
 * values as one array, sized by the counting pass, so there is no stack of
 * pending values. A value takes 40 bytes (56 as an object member) plus the
 * bytes of its string, key or non-int64 number text. Ordinary payloads need
 * 2-5x their size. Text averaging under ~5 bytes per value ([0,0,0,...] is
 * 20x, [[],[],...] and ["","",...] 13x) fits while its tree is under the
 * limit (a [0,0,...] of about 80 KB) and beyond that is refused with
 * "invalid JSON: a payload of N bytes needs more than M bytes to parse". */
#define WH_JSON_PARSE_FACTOR 8
#define WH_JSON_PARSE_SLACK ((size_t)1 << 20)

/* The most bytes a parse of len bytes of text may hold (saturates at SIZE_MAX). */
size_t wh_json_parse_limit(size_t len);

/* Parses len bytes of text. On success returns an owned document (free with
 * wh_json_doc_free) whose root is wh_json_doc_root(). On failure returns NULL
 * and sets err (code WH_EJSON) to a message that says what is wrong and at
 * which byte offset, e.g. "invalid JSON at byte 12: duplicate key \"a\"".
 * limits may be NULL (defaults: no size limit, depth 64). */
wh_json_doc *wh_json_parse(const char *text, size_t len, const wh_json_limits *limits, wh_err *err);

/* The bytes a document holds (its struct, inline region and chunks), as the
 * parse's limit counts them; for tests and measurements. */
size_t wh_json_doc_alloc_bytes(const wh_json_doc *doc);

/* An empty document for building by hand; its root is NULL until set. Owned. */
wh_json_doc *wh_json_doc_new(void);
void wh_json_doc_free(wh_json_doc *doc); /* accepts NULL; invalidates every value in it */

const wh_json *wh_json_doc_root(const wh_json_doc *doc); /* borrowed from doc */
void wh_json_doc_set_root(wh_json_doc *doc, const wh_json *root); /* root must live in doc */

/* Arena allocation for building: memory lives until the doc is freed.
 * These never return NULL (core/mem.h: they wait for memory, then abort). */
void *wh_json_doc_alloc(wh_json_doc *doc, size_t n);          /* aligned for any wh_json */
const char *wh_json_doc_strndup(wh_json_doc *doc, const char *s, size_t n); /* adds a NUL */

/* The same three, returning NULL when the system refuses the memory (the
 * doc stays valid; free it as usual) instead of waiting for memory or
 * aborting: for code that runs on behalf of a job in the job's thread,
 * which fails the job instead (lua/lconvert.c). */
wh_json_doc *wh_json_doc_try_new(void);
void *wh_json_doc_try_alloc(wh_json_doc *doc, size_t n);
const char *wh_json_doc_try_strndup(wh_json_doc *doc, const char *s, size_t n);

/* Looks up key (key_len bytes) in an object; NULL if absent or v is not an
 * object. Borrowed from v's document. Linear for small objects. */
const wh_json *wh_json_get(const wh_json *v, const char *key, size_t key_len);
/* Same, for a NUL-terminated key. */
const wh_json *wh_json_getz(const wh_json *v, const char *key);

/* True when the string is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
bool wh_json_utf8_valid(const char *s, size_t len);
/* Number of code points in valid UTF-8 text. */
size_t wh_json_utf8_len(const char *s, size_t len);

/* Appends the compact JSON text of v to out, the way Ruby's JSON.generate
 * writes it: no spaces, non-ASCII written raw, "/" not escaped, control
 * characters as \uXXXX (\n \t etc. in short form), numbers with raw text
 * written as that text; hand-built floats in the shortest form that reads
 * back to the same double, always with a '.' or an exponent (2.0, not 2).
 * Returns 0, or WH_EJSON if v holds a non-finite hand-built float. */
int wh_json_write(wh_buf *out, const wh_json *v, wh_err *err);

/* Appends d as wh_json_write writes a hand-built float (shortest form that
 * reads back to d, with a '.' or an exponent). WH_EJSON if d is not finite. */
int wh_json_write_float(wh_buf *out, double d, wh_err *err);

/* Appends s (len bytes) as a quoted JSON string, escaped as wh_json_write does. */
void wh_json_write_string(wh_buf *out, const char *s, size_t len);

/* A short name for v's type, for error messages: "null", "boolean",
 * "integer", "number", "string", "array", "object". */
const char *wh_json_type_name(const wh_json *v);

#endif
