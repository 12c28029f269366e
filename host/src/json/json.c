/* SPDX-License-Identifier: MIT
 * json.c -- JSON documents: yajl's event parser feeding an arena-backed tree,
 * plus a compact writer in Ruby JSON.generate style. See json.h for the
 * contract.
 *
 * yajl alone is too lax for job payloads, so parsing is three layers:
 *   1. checks before yajl runs: size limit, empty input, and (only when the
 *      text has a byte >= 0x80, a backslash or a control byte) one scan that
 *      tracks string state and refuses what yajl lets through: overlong or
 *      surrogate-encoding or > U+10FFFF UTF-8 (yajl only checks the byte
 *      pattern), lone surrogate escapes (yajl writes '?' or an encoded
 *      surrogate), and \v / \f between tokens (yajl counts them as spaces);
 *   2. yajl's event parser, configured strictly;
 *   3. the callbacks: depth limit, duplicate keys, exact int64 numbers.
 *
 * Error offsets ("at byte N") are 0-based. For our own checks N is the first
 * byte of the offending thing (the backslash of a lone escape, the first byte
 * of a bad UTF-8 sequence, the opening quote of a duplicate key). For yajl's
 * own errors N is yajl_get_bytes_consumed(), i.e. how far yajl had read when
 * it gave up; an error found only at the end of the text reports the length.
 * When two problems are found, the one earlier in the text is reported.
 */
#include "json/json.h"

#include <assert.h>
#include <inttypes.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_parse.h>

#include "core/mem.h"

#define NO_OFFSET SIZE_MAX

/* ==== arena ============================================================= */

/* A document is one malloc holding the struct and a first bump region sized
 * from the input, so a small payload costs a single allocation for its tree.
 * Further regions are chained in `chunks`; requests much larger than the
 * current chunk size get a chunk of their own so they waste no space. */

typedef struct chunk {
    struct chunk *next;
    size_t size; /* also pads the header to 16 bytes so data is well aligned */
} chunk;

struct wh_json_doc {
    const wh_json *root; /* NULL until set */
    char *cur, *end;     /* the bump region in use */
    chunk *chunks;       /* heap chunks, newest first (the inline region is not one) */
    size_t next_size;    /* size of the next general-purpose chunk */
    size_t inline_size;  /* bytes of the region allocated with the struct */
    /* While a parse runs: bytes it holds (this struct with its inline region,
     * chunks, the parser's stacks, yajl's heap blocks) and the most it may
     * hold. alloc_limit is 0 outside a parse: building by hand is unbounded. */
    size_t alloc_used, alloc_limit;
    wh_json root_slot;   /* holds a parsed root */
};

#define ARENA_MIN_CHUNK 1024
#define ARENA_MAX_CHUNK (1024 * 1024)
#define ARENA_ALIGN (alignof(max_align_t))

/* ---- a pool of small documents ----
 * Jobs are parsed on one thread and freed on another; with glibc that is
 * the worst case (the freeing thread takes the allocating thread's arena
 * lock on every free). Small documents are all made with the same inline
 * size and recycled through a bounded free list instead, so a steady stream
 * of jobs allocates nothing. */

#define POOL_INLINE 1024 /* covers inputs up to (1024 - 512) / 4 = 128 bytes */
#define POOL_MAX 4096    /* documents kept for reuse (about 4.5 MB) */

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static wh_json_doc *pool_head;
static size_t pool_n;

/* try: NULL when the system refuses the memory, instead of wh_xmalloc's wait */
static wh_json_doc *doc_new_sized(size_t inline_size, bool try) {
    wh_json_doc *doc = NULL;
    if (inline_size <= POOL_INLINE) {
        inline_size = POOL_INLINE;
        pthread_mutex_lock(&pool_lock);
        if (pool_head) {
            doc = pool_head;
            pool_head = *(wh_json_doc **)doc;
            pool_n--;
        }
        pthread_mutex_unlock(&pool_lock);
    }
    if (doc == NULL) doc = try ? malloc(sizeof *doc + inline_size) : wh_xmalloc(sizeof *doc + inline_size);
    if (doc == NULL) return NULL;
    doc->root = NULL;
    doc->inline_size = inline_size;
    doc->alloc_used = sizeof *doc + inline_size;
    doc->alloc_limit = 0;
    doc->cur = (char *)(doc + 1);
    doc->end = doc->cur + inline_size;
    doc->chunks = NULL;
    doc->next_size = inline_size * 2 > ARENA_MIN_CHUNK ? inline_size * 2 : ARENA_MIN_CHUNK;
    if (doc->next_size > ARENA_MAX_CHUNK) doc->next_size = ARENA_MAX_CHUNK;
    return doc;
}

static char *align_up(char *p, size_t align) {
    uintptr_t u = ((uintptr_t)p + (align - 1)) & ~(uintptr_t)(align - 1);
    return (char *)u;
}

/* Counts n more bytes against the parse's limit. Returns false (and counts
 * nothing) when they do not fit; always true outside a parse. */
static bool charge(wh_json_doc *doc, size_t n) {
    if (doc->alloc_limit && (n > doc->alloc_limit || doc->alloc_used > doc->alloc_limit - n)) return false;
    doc->alloc_used += n;
    return true;
}

/* try: NULL when the system refuses (instead of wh_xmalloc's wait and abort). */
static chunk *chunk_new(wh_json_doc *doc, size_t size, bool try) {
    if (!charge(doc, sizeof(chunk) + size)) return NULL;
    chunk *c = try ? malloc(sizeof *c + size) : wh_xmalloc(sizeof *c + size);
    if (c == NULL) {
        doc->alloc_used -= sizeof(chunk) + size;
        return NULL;
    }
    c->size = size;
    c->next = doc->chunks;
    doc->chunks = c;
    return c;
}

/* The slow path of arena_alloc: the current region is too small. Returns
 * NULL during a parse when the chunk would pass its limit, and with try when
 * the system refuses. */
static void *arena_grow(wh_json_doc *doc, size_t n, size_t align, bool try) {
    if (n > SIZE_MAX / 2) abort(); /* cannot happen for text that fits in memory */
    size_t need = n + align;
    if (need > doc->next_size / 4) {
        /* Big: its own chunk, and keep bumping in the current region. */
        chunk *c = chunk_new(doc, need, try);
        return c ? align_up((char *)(c + 1), align) : NULL;
    }
    size_t size = doc->next_size;
    bool near_limit = doc->alloc_limit && (doc->alloc_used > doc->alloc_limit ||
                                           doc->alloc_limit - doc->alloc_used < sizeof(chunk) + size);
    if (near_limit) /* what is left of the limit, rather than failing on a chunk mostly unused */
        size = doc->alloc_used + sizeof(chunk) + need <= doc->alloc_limit
                   ? doc->alloc_limit - doc->alloc_used - sizeof(chunk) : need;
    chunk *c = chunk_new(doc, size, try);
    if (c == NULL) return NULL;
    doc->cur = (char *)(c + 1);
    doc->end = doc->cur + c->size;
    if (!near_limit && doc->next_size < ARENA_MAX_CHUNK) doc->next_size *= 2;
    char *p = align_up(doc->cur, align);
    doc->cur = p + n;
    return p;
}

/* Returns n bytes aligned to align (a power of two); lives until the doc is
 * freed. NULL only during a parse, past its limit (see charge), or with try
 * when the system refuses. */
static void *arena_alloc_opt(wh_json_doc *doc, size_t n, size_t align, bool try) {
    char *p = align_up(doc->cur, align);
    if (p <= doc->end && n <= (size_t)(doc->end - p)) {
        doc->cur = p + n;
        return p;
    }
    return arena_grow(doc, n, align, try);
}

static void *arena_alloc(wh_json_doc *doc, size_t n, size_t align) { return arena_alloc_opt(doc, n, align, false); }

static char *arena_strndup(wh_json_doc *doc, const void *s, size_t n) {
    char *p = arena_alloc(doc, n + 1, 1);
    if (p == NULL) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

wh_json_doc *wh_json_doc_new(void) { return doc_new_sized(POOL_INLINE, false); }

wh_json_doc *wh_json_doc_try_new(void) { return doc_new_sized(POOL_INLINE, true); }

void wh_json_doc_free(wh_json_doc *doc) {
    if (doc == NULL) return;
    chunk *c = doc->chunks;
    while (c) {
        chunk *next = c->next;
        wh_free(c);
        c = next;
    }
    if (doc->inline_size == POOL_INLINE) {
        pthread_mutex_lock(&pool_lock);
        if (pool_n < POOL_MAX) {
            *(wh_json_doc **)doc = pool_head; /* the struct is dead: reuse its first word */
            pool_head = doc;
            pool_n++;
            doc = NULL;
        }
        pthread_mutex_unlock(&pool_lock);
    }
    wh_free(doc);
}

const wh_json *wh_json_doc_root(const wh_json_doc *doc) { return doc->root; }

void wh_json_doc_set_root(wh_json_doc *doc, const wh_json *root) { doc->root = root; }

void *wh_json_doc_alloc(wh_json_doc *doc, size_t n) { return arena_alloc(doc, n, ARENA_ALIGN); }

const char *wh_json_doc_strndup(wh_json_doc *doc, const char *s, size_t n) {
    return arena_strndup(doc, s, n);
}

void *wh_json_doc_try_alloc(wh_json_doc *doc, size_t n) { return arena_alloc_opt(doc, n, ARENA_ALIGN, true); }

const char *wh_json_doc_try_strndup(wh_json_doc *doc, const char *s, size_t n) {
    char *p = arena_alloc_opt(doc, n + 1, 1, true);
    if (p == NULL) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* ==== UTF-8 ============================================================= */

/* Length of the valid UTF-8 sequence at p (avail bytes left), or 0 when it is
 * invalid: a stray continuation byte, an overlong form, an encoded surrogate
 * (U+D800..U+DFFF), a code point above U+10FFFF, or a truncated sequence. */
static size_t utf8_seq_len(const unsigned char *p, size_t avail) {
    unsigned char c = p[0];
    if (c < 0x80) return 1;
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0;      /* overlong below U+0800 */
        else if (c == 0xED) hi = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90;      /* overlong below U+10000 */
        else if (c == 0xF4) hi = 0x8F; /* above U+10FFFF */
    } else {
        return 0;
    }
    if (avail < n || p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if ((p[i] & 0xC0) != 0x80) return 0;
    return n;
}

/* Offset of the first invalid sequence in s, or len when all of it is valid. */
static size_t utf8_invalid_at(const unsigned char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        /* Skip ASCII eight bytes at a time; payloads are mostly ASCII. */
        while (i + 8 <= len) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & UINT64_C(0x8080808080808080)) break;
            i += 8;
        }
        if (i >= len) break;
        size_t n = utf8_seq_len(s + i, len - i);
        if (n == 0) return i;
        i += n;
    }
    return len;
}

bool wh_json_utf8_valid(const char *s, size_t len) {
    return utf8_invalid_at((const unsigned char *)s, len) == len;
}

size_t wh_json_utf8_len(const char *s, size_t len) {
    size_t n = 0;
    for (size_t i = 0; i < len; i++) n += ((unsigned char)s[i] & 0xC0) != 0x80;
    return n;
}

/* ==== the pre-scan: what yajl lets through ============================== */

typedef struct scan_issue {
    size_t at;     /* offset of the problem, NO_OFFSET when none */
    char what[64]; /* e.g. "lone surrogate \\uD800" */
} scan_issue;

#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)

/* True when the text has a byte that only the pre-scan can judge: >= 0x80, a
 * backslash, or a control byte (which covers \v and \f; tabs and newlines of
 * pretty-printed text also send it to the scan, which is merely slower).
 * Eight bytes at a time with the classic has-zero-byte tricks, so the common
 * compact, all-ASCII, escape-free payload costs a few operations per word. */
static bool needs_scan(const unsigned char *p, size_t n) {
    uint64_t acc = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w, bs;
        memcpy(&w, p + i, 8);
        bs = w ^ (ONES * '\\');
        acc |= w | ((w - ONES * 0x20) & ~w) | ((bs - ONES) & ~bs);
        if ((i & 63) == 56 && (acc & HIGHS)) return true;
    }
    for (; i < n; i++) acc |= (p[i] >= 0x80 || p[i] < 0x20 || p[i] == '\\') ? 0x80 : 0;
    return (acc & HIGHS) != 0;
}

static bool hex4(const unsigned char *p, size_t avail, unsigned *out) {
    if (avail < 4) return false;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = p[i], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return false;
        v = v * 16 + d;
    }
    *out = v;
    return true;
}

/* p[i] is a backslash inside a string. Returns the offset after the escape.
 * A high surrogate must be followed at once by an escaped low surrogate; a low
 * surrogate on its own is refused. Malformed escapes are left for yajl. */
static size_t scan_escape(const unsigned char *p, size_t n, size_t i, scan_issue *iss) {
    unsigned u, lo;
    if (i + 1 >= n || p[i + 1] != 'u' || !hex4(p + i + 2, n - i - 2, &u)) return i + 2;
    if (u >= 0xD800 && u <= 0xDBFF && i + 12 <= n && p[i + 6] == '\\' && p[i + 7] == 'u' &&
        hex4(p + i + 8, 4, &lo) && lo >= 0xDC00 && lo <= 0xDFFF)
        return i + 12;
    if (u >= 0xD800 && u <= 0xDFFF) {
        iss->at = i;
        snprintf(iss->what, sizeof iss->what, "lone surrogate \\u%04X", u);
        return n;
    }
    return i + 6;
}

/* p[i] is the first byte after an opening quote. Returns the offset after the
 * closing quote (n if the string is unterminated or a problem was found). */
static size_t scan_string(const unsigned char *p, size_t n, size_t i, scan_issue *iss) {
    while (i < n) {
        unsigned char c = p[i];
        if (c == '"') return i + 1;
        if (c == '\\') {
            i = scan_escape(p, n, i, iss);
        } else if (c >= 0x80) {
            size_t k = utf8_seq_len(p + i, n - i);
            if (k == 0) {
                iss->at = i;
                snprintf(iss->what, sizeof iss->what, "invalid UTF-8 in string");
                return n;
            }
            i += k;
        } else {
            i++;
        }
    }
    return n;
}

/* Finds the first problem yajl would not report. Only lexical state matters
 * here (inside or outside a string); grammar errors are yajl's job. */
static void prescan(const unsigned char *p, size_t n, scan_issue *iss) {
    iss->at = NO_OFFSET;
    size_t i = 0;
    while (i < n && iss->at == NO_OFFSET) {
        unsigned char c = p[i];
        if (c == '"') {
            i = scan_string(p, n, i + 1, iss);
        } else if (c == 0x0b || c == 0x0c) {
            iss->at = i;
            snprintf(iss->what, sizeof iss->what, "invalid character 0x%02x", c);
        } else {
            i++;
        }
    }
}

/* ==== numbers =========================================================== */

/* Parses an integer literal (-?[0-9]+, as yajl has already checked) into
 * *out. Returns false when it does not fit in int64. Exact over the whole
 * range: the magnitude is accumulated unsigned against the limit of its sign. */
static bool parse_int64(const char *s, size_t n, int64_t *out) {
    bool neg = n > 0 && s[0] == '-';
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    uint64_t v = 0;
    for (size_t i = neg; i < n; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (limit - d) / 10) return false;
        v = v * 10 + d;
    }
    if (!neg) *out = (int64_t)v;
    else if (v == (uint64_t)INT64_MAX + 1) *out = INT64_MIN;
    else *out = -(int64_t)v;
    return true;
}

/* strtod that reads '.' as the decimal point whatever LC_NUMERIC says (the
 * host may run with a locale that uses ','). s is NUL-terminated. Like Lua's
 * l_str2d: try as is, and only on failure retry with the locale's point. */
static bool c_strtod(wh_json_doc *doc, const char *s, size_t n, double *out) {
    char *end;
    double d = strtod(s, &end);
    if (end == s + n) {
        *out = d;
        return true;
    }
    const char *point = localeconv()->decimal_point;
    size_t plen = strlen(point);
    if (!charge(doc, n + plen + 1)) return false; /* a parse's limit counts this copy too */
    doc->alloc_used -= n + plen + 1;              /* freed below */
    char *copy = wh_xmalloc(n + plen + 1), *q = copy;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '.') memcpy(q, point, plen), q += plen;
        else *q++ = s[i];
    }
    *q = '\0';
    *out = strtod(copy, NULL);
    wh_free(copy);
    return true;
}

/* Builds the value for number text s (n bytes, valid JSON number syntax).
 * Returns false when the parse's memory limit is reached. */
static bool make_number(wh_json_doc *doc, const char *s, size_t n, wh_json *v) {
    bool int_literal = memchr(s, '.', n) == NULL && memchr(s, 'e', n) == NULL &&
                       memchr(s, 'E', n) == NULL;
    if (int_literal && parse_int64(s, n, &v->u.i)) {
        v->type = WH_JSON_INT;
        return true;
    }
    char *raw = arena_strndup(doc, s, n);
    if (raw == NULL) return false;
    v->type = WH_JSON_FLOAT;
    v->u.f.raw = raw;
    v->u.f.raw_len = n;
    v->u.f.int_literal = int_literal;
    return c_strtod(doc, raw, n, &v->u.f.d);
}

/* ==== the tree builder (yajl callbacks) ================================= */

/* Each array and object gets its items (or members) as one contiguous array
 * in the arena, allocated when it opens with the exact count of values it
 * will hold. The counts come from a quick pass over the text before yajl
 * runs (count_values), so values go straight to their place: no stack of
 * pending values and no copy, and the tree is all a parse holds. */

typedef struct frame {
    void *items;  /* wh_json[] or wh_json_member[] (arena), cap entries; NULL if cap is 0 */
    size_t n, cap;
    size_t start; /* offset of the opening bracket, for duplicate-key messages */
    bool is_obj;
} frame;

#define SMALL_FRAMES 16
#define SMALL_COUNTS 64

typedef struct parse_ctx {
    wh_json_doc *doc;
    yajl_handle h;
    const char *text;
    size_t len;
    wh_err *err;
    int max_depth;
    const scan_issue *issue;
    bool yajl_over; /* a block of yajl's own took the parse past its limit */
    bool completing; /* in yajl_complete_parse */
    wh_json root;
    size_t root_end; /* offset just after the root value */
    uint32_t *counts;  /* values of each container, in the order they open */
    size_t ncounts;    /* entries filled by count_values */
    size_t cap_counts;
    size_t next_count; /* the next container to open */
    frame *frames;
    size_t nframes, cap_frames;
    frame small_frames[SMALL_FRAMES]; /* most payloads never touch the heap */
    uint32_t small_counts[SMALL_COUNTS];
} parse_ctx;

/* Grows a stack that starts in inline storage `small`. With doc (a parse),
 * counts it against the parse's limit, the old and new blocks both while the
 * copy is made, and returns NULL (leaving the stack as it was) when that
 * does not fit. */
static void *stack_grow(wh_json_doc *doc, void *items, void *small, size_t *cap, size_t item_size) {
    size_t ncap = *cap * 2;
    void *p;
    if (doc) {
        if (!charge(doc, ncap * item_size)) return NULL;
        if (items != small) doc->alloc_used -= *cap * item_size; /* the old block goes */
    }
    if (items == small) {
        p = wh_xmalloc(ncap * item_size);
        memcpy(p, items, *cap * item_size);
    } else {
        p = wh_xrealloc(items, ncap * item_size);
    }
    *cap = ncap;
    return p;
}

/* ---- counting values ahead of yajl ---- */

/* Offset of the byte after the string whose opening quote is at i (n if
 * it is unterminated). Escapes are skipped as yajl reads them. */
static size_t skip_string(const char *t, size_t n, size_t i) {
    for (i++; i < n;) {
        const char *q = memchr(t + i, '"', n - i);
        if (q == NULL) return n;
        size_t at = (size_t)(q - t), bs = 0;
        while (at - bs > i && t[at - bs - 1] == '\\') bs++;
        if (bs % 2 == 0) return at + 1; /* not escaped */
        i = at + 1;
    }
    return n;
}

typedef struct count_frame {
    uint32_t k;        /* which container */
    uint32_t nonempty; /* 1 once a value (or key) started in it */
} count_frame;

/* Fills c->counts[k] with the number of values (members, for an object) of
 * the k-th container to open: the commas at its level, plus one unless it
 * is empty (counted when its first value starts, so a count is never short
 * of what came before where the pass stops). Exact for valid JSON; for other
 * text it may count more than yajl will deliver before it reports the
 * error, never fewer (each value after the first needs a comma before it),
 * and the builder checks anyway. Stops at nesting deeper than max_depth
 * (yajl's parse fails there). Returns false past the memory limit. */
static bool count_values(parse_ctx *c) {
    const char *t = c->text;
    size_t n = c->len, depth = 0, nc = 0, cap = SMALL_COUNTS, max_depth = (size_t)c->max_depth;
    uint32_t *counts = c->small_counts;
    count_frame small[WH_JSON_DEFAULT_MAX_DEPTH], *stack = small;
    size_t stack_cap = WH_JSON_DEFAULT_MAX_DEPTH;
    bool ok = true;
    for (size_t i = 0; i < n && ok;) {
        char ch = t[i];
        switch (ch) {
        case ' ': case '\t': case '\n': case '\r': case ':': i++; continue;
        case ',':
            if (depth && counts[stack[depth - 1].k] < UINT32_MAX) counts[stack[depth - 1].k]++;
            i++;
            continue;
        case ']': case '}':
            if (depth) depth--;
            i++;
            continue;
        default: break;
        }
        if (depth && !stack[depth - 1].nonempty) { /* its first value: the one without a comma */
            stack[depth - 1].nonempty = 1;
            if (counts[stack[depth - 1].k] < UINT32_MAX) counts[stack[depth - 1].k]++;
        }
        if (ch == '[' || ch == '{') {
            if (depth == max_depth || nc == UINT32_MAX) break;
            if (nc == cap) {
                uint32_t *g = stack_grow(c->doc, counts, c->small_counts, &cap, sizeof *counts);
                if (g == NULL) ok = false;
                else counts = g;
            }
            if (ok && depth == stack_cap) {
                count_frame *g = stack_grow(c->doc, stack, small, &stack_cap, sizeof *stack);
                if (g == NULL) ok = false;
                else stack = g;
            }
            if (!ok) break;
            counts[nc] = 0;
            stack[depth].k = (uint32_t)nc;
            stack[depth].nonempty = 0;
            depth++, nc++, i++;
        } else if (ch == '"') {
            i = skip_string(t, n, i);
        } else {
            i++;
        }
    }
    if (stack != small) {
        c->doc->alloc_used -= stack_cap * sizeof *stack;
        wh_free(stack);
    }
    c->counts = counts;
    c->cap_counts = cap;
    c->ncounts = nc;
    return ok;
}

/* Reports a problem found at offset `at` (shown in the message only when
 * show_at), unless the pre-scan found one earlier in the text. Returns 0 so
 * callbacks can `return fail(...)`, which makes yajl stop. */
static int fail(parse_ctx *c, size_t at, bool show_at, const char *what) {
    if (c->issue->at != NO_OFFSET && c->issue->at < at)
        wh_err_set(c->err, WH_EJSON, "invalid JSON at byte %zu: %s", c->issue->at, c->issue->what);
    else if (show_at)
        wh_err_set(c->err, WH_EJSON, "invalid JSON at byte %zu: %s", at, what);
    else
        wh_err_set(c->err, WH_EJSON, "invalid JSON: %s", what);
    return 0;
}

/* Fails the parse because it would hold more than its limit. */
static int over_limit(parse_ctx *c) {
    char what[160];
    snprintf(what, sizeof what, "a payload of %zu bytes needs more than %zu bytes to parse", c->len,
             c->doc->alloc_limit);
    return fail(c, yajl_get_bytes_consumed(c->h), false, what);
}

/* A container got more values than counted: cannot happen (see
 * count_values); refuses the text rather than write past the array. */
static int miscounted(parse_ctx *c) {
    return fail(c, yajl_get_bytes_consumed(c->h), true, "unexpected value");
}

/* Places a finished value: as the root, as the next array item, or as the
 * value of the key placed last. */
static int emit(parse_ctx *c, const wh_json *v) {
    if (c->yajl_over) return over_limit(c);
    if (c->nframes == 0) {
        c->root = *v;
        /* a top-level number is only known to end when yajl_complete_parse
         * feeds its one space, at the end of the text */
        c->root_end = c->completing ? c->len : yajl_get_bytes_consumed(c->h);
        return 1;
    }
    frame *f = &c->frames[c->nframes - 1];
    if (f->is_obj) {
        assert(f->n > 0);
        ((wh_json_member *)f->items)[f->n - 1].value = *v;
        return 1;
    }
    if (f->n == f->cap) return miscounted(c);
    ((wh_json *)f->items)[f->n++] = *v;
    return 1;
}

static int on_null(void *ctx) {
    wh_json v = {.type = WH_JSON_NULL};
    return emit(ctx, &v);
}

static int on_boolean(void *ctx, int b) {
    wh_json v = {.type = b ? WH_JSON_TRUE : WH_JSON_FALSE};
    return emit(ctx, &v);
}

static int on_number(void *ctx, const char *s, size_t n) {
    parse_ctx *c = ctx;
    wh_json v;
    if (!make_number(c->doc, s, n, &v)) return over_limit(c);
    return emit(c, &v);
}

static int on_string(void *ctx, const unsigned char *s, size_t n) {
    parse_ctx *c = ctx;
    wh_json v = {.type = WH_JSON_STRING};
    v.u.str.s = arena_strndup(c->doc, s, n);
    if (v.u.str.s == NULL) return over_limit(c);
    v.u.str.len = n;
    return emit(c, &v);
}

static int on_map_key(void *ctx, const unsigned char *s, size_t n) {
    parse_ctx *c = ctx;
    if (c->yajl_over) return over_limit(c);
    frame *f = &c->frames[c->nframes - 1];
    if (f->n == f->cap) return miscounted(c);
    wh_json_member *m = &((wh_json_member *)f->items)[f->n];
    m->key = arena_strndup(c->doc, s, n);
    if (m->key == NULL) return over_limit(c);
    m->key_len = n;
    m->value.type = WH_JSON_NULL;
    f->n++;
    return 1;
}

static int open_container(parse_ctx *c, bool is_obj) {
    if (c->yajl_over) return over_limit(c);
    if (c->nframes >= (size_t)c->max_depth) {
        char what[48];
        snprintf(what, sizeof what, "nesting deeper than %d", c->max_depth);
        return fail(c, yajl_get_bytes_consumed(c->h), false, what);
    }
    if (c->nframes == c->cap_frames) {
        frame *f = stack_grow(c->doc, c->frames, c->small_frames, &c->cap_frames, sizeof(frame));
        if (f == NULL) return over_limit(c);
        c->frames = f;
    }
    if (c->next_count >= c->ncounts) return miscounted(c);
    frame *f = &c->frames[c->nframes];
    f->cap = c->counts[c->next_count++];
    f->n = 0;
    f->items = NULL;
    f->start = yajl_get_bytes_consumed(c->h) - 1;
    f->is_obj = is_obj;
    if (f->cap) {
        f->items = is_obj ? arena_alloc(c->doc, f->cap * sizeof(wh_json_member), alignof(wh_json_member))
                          : arena_alloc(c->doc, f->cap * sizeof(wh_json), alignof(wh_json));
        if (f->items == NULL) return over_limit(c);
    }
    c->nframes++;
    return 1;
}

static int on_start_map(void *ctx) { return open_container(ctx, true); }
static int on_start_array(void *ctx) { return open_container(ctx, false); }

static int on_end_array(void *ctx) {
    parse_ctx *c = ctx;
    const frame *f = &c->frames[--c->nframes];
    wh_json v = {.type = WH_JSON_ARRAY};
    v.u.arr.items = f->n ? f->items : NULL;
    v.u.arr.n = f->n;
    return emit(c, &v);
}

/* ---- duplicate keys ---- */

static bool key_eq(const wh_json_member *a, const wh_json_member *b) {
    return a->key_len == b->key_len && memcmp(a->key, b->key, a->key_len) == 0;
}

/* Orders members by key, then by position, so equal keys end up adjacent
 * with the first occurrence first. */
static int key_cmp(const void *pa, const void *pb) {
    const wh_json_member *a = *(const wh_json_member *const *)pa, *b = *(const wh_json_member *const *)pb;
    size_t n = a->key_len < b->key_len ? a->key_len : b->key_len;
    int r = n ? memcmp(a->key, b->key, n) : 0;
    if (r) return r;
    if (a->key_len != b->key_len) return a->key_len < b->key_len ? -1 : 1;
    return a < b ? -1 : a > b;
}

#define DUP_LINEAR_MAX 16

/* Returns the index of the first member (in document order) whose key
 * already appeared earlier in the object, or n. Quadratic only for small
 * objects; larger ones are sorted so a 100k-key object stays O(n log n).
 * Sets *over (and returns n) when the sort buffer would pass the limit. */
static size_t find_dup(wh_json_doc *doc, const wh_json_member *s, size_t n, bool *over) {
    if (n <= DUP_LINEAR_MAX) {
        for (size_t i = 1; i < n; i++)
            for (size_t j = 0; j < i; j++)
                if (key_eq(&s[i], &s[j])) return i;
        return n;
    }
    if (!charge(doc, n * sizeof(const wh_json_member *))) {
        *over = true;
        return n;
    }
    doc->alloc_used -= n * sizeof(const wh_json_member *); /* freed below */
    const wh_json_member **sorted = wh_xmalloc(n * sizeof *sorted);
    for (size_t i = 0; i < n; i++) sorted[i] = &s[i];
    qsort(sorted, n, sizeof *sorted, key_cmp);
    const wh_json_member *first = NULL;
    for (size_t i = 1; i < n; i++)
        if (key_eq(sorted[i], sorted[i - 1]) && (first == NULL || sorted[i] < first)) first = sorted[i];
    wh_free(sorted);
    return first ? (size_t)(first - s) : n;
}

/* The offset of the opening quote of member idx of the object whose '{' is
 * at `start` (only on the error path: found again in the text). */
static size_t member_offset(const char *t, size_t n, size_t start, size_t idx) {
    size_t depth = 0, member = 0;
    bool key_next = true;
    for (size_t i = start + 1; i < n;) {
        char ch = t[i];
        if (ch == '"') {
            if (depth == 0 && key_next) {
                if (member == idx) return i;
                key_next = false;
            }
            i = skip_string(t, n, i);
            continue;
        }
        if (ch == '[' || ch == '{') depth++;
        else if (ch == ']' || ch == '}') {
            if (depth == 0) break;
            depth--;
        } else if (ch == ',' && depth == 0) {
            member++;
            key_next = true;
        }
        i++;
    }
    return start;
}

/* Writes at most ~40 bytes of key into out, printable ASCII as is and other
 * bytes as \xNN, so a hostile key cannot flood the message. */
static void quote_key(char *out, size_t cap, const char *key, size_t len) {
    size_t o = 0, max = 40;
    for (size_t i = 0; i < len && i < max && o + 8 < cap; i++) {
        unsigned char ch = (unsigned char)key[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\')
            out[o++] = (char)ch;
        else
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", ch);
    }
    if (len > max && o + 4 < cap) memcpy(out + o, "...", 3), o += 3;
    out[o] = '\0';
}

static int on_end_map(void *ctx) {
    parse_ctx *c = ctx;
    const frame *f = &c->frames[c->nframes - 1];
    const wh_json_member *m = f->items;
    bool over = false;
    size_t dup = find_dup(c->doc, m, f->n, &over);
    if (over) return over_limit(c);
    if (dup < f->n) {
        char key[200], what[220];
        quote_key(key, sizeof key, m[dup].key, m[dup].key_len);
        snprintf(what, sizeof what, "duplicate key \"%s\"", key);
        return fail(c, member_offset(c->text, c->len, f->start, dup), true, what);
    }
    c->nframes--;
    wh_json v = {.type = WH_JSON_OBJECT};
    v.u.obj.members = f->n ? f->items : NULL;
    v.u.obj.n = f->n;
    return emit(c, &v);
}

static const yajl_callbacks parse_callbacks = {
    .yajl_null = on_null,
    .yajl_boolean = on_boolean,
    .yajl_number = on_number, /* not yajl_integer/yajl_double: see make_number */
    .yajl_string = on_string,
    .yajl_start_map = on_start_map,
    .yajl_map_key = on_map_key,
    .yajl_end_map = on_end_map,
    .yajl_start_array = on_start_array,
    .yajl_end_array = on_end_array,
};

/* ==== parse ============================================================= */

static bool all_space(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r') return false;
    return true;
}

/* Checks that need no parser. Returns 0 or WH_EJSON. */
static int check_input(const char *text, size_t len, const wh_json_limits *limits, wh_err *err) {
    if (limits && limits->max_bytes && len > limits->max_bytes)
        return wh_err_set(err, WH_EJSON, "invalid JSON: %zu bytes is over the limit of %zu", len,
                          limits->max_bytes);
    if (all_space(text, len)) return wh_err_set(err, WH_EJSON, "invalid JSON: empty input");
    return 0;
}

/* Formats yajl's own error. Errors found by yajl_complete_parse come with an
 * offset into the one-space buffer yajl feeds itself, so use the length. */
static void yajl_error(parse_ctx *c, bool at_end) {
    size_t at = at_end ? c->len : yajl_get_bytes_consumed(c->h);
    if (c->issue->at != NO_OFFSET && c->issue->at < at) {
        fail(c, at, true, "");
        return;
    }
    unsigned char *msg = yajl_get_error(c->h, 0, NULL, 0);
    const char *m = msg ? (const char *)msg : "parse error";
    size_t mlen = strlen(m);
    while (mlen > 0 && (m[mlen - 1] == '\n' || m[mlen - 1] == ' ')) mlen--;
    wh_err_set(c->err, WH_EJSON, "invalid JSON at byte %zu: %.*s", at, (int)mlen, m);
    if (msg) yajl_free_error(c->h, msg);
}

/* ---- yajl's own memory: a per-thread scratch region ----
 * yajl mallocs its handle, lexer and buffers on every parse and frees them at
 * the end. Served from a thread-local bump region instead (reset when the
 * parse ends), a parse costs no allocation beyond the tree's arena. Blocks
 * carry their size so realloc can copy; what does not fit falls back to
 * malloc, marked by the flag in the header. */

#define SCRATCH_SIZE (32 * 1024)

typedef struct scratch_hdr {
    size_t size;
    size_t on_heap; /* 1 when malloc'd; also keeps the header 16 bytes */
} scratch_hdr;

static _Thread_local struct {
    _Alignas(max_align_t) char mem[SCRATCH_SIZE];
    size_t used;
} scratch;

/* ctx is the parse_ctx. Heap blocks count against the parse's limit; yajl
 * cannot take a NULL, so one that passes it is still made, and the parse
 * stops at the next event (see parse_ctx.yajl_over). */
static void *scratch_malloc(void *ctx, size_t n) {
    parse_ctx *c = ctx;
    size_t need = sizeof(scratch_hdr) + ((n + 15) & ~(size_t)15);
    scratch_hdr *h;
    if (need <= SCRATCH_SIZE - scratch.used) {
        h = (scratch_hdr *)(scratch.mem + scratch.used);
        scratch.used += need;
        h->on_heap = 0;
    } else {
        if (!charge(c->doc, sizeof *h + n)) {
            c->yajl_over = true;
            c->doc->alloc_used += sizeof *h + n;
        }
        h = wh_xmalloc(sizeof *h + n);
        h->on_heap = 1;
    }
    h->size = n;
    return h + 1;
}

static void scratch_free(void *ctx, void *p) {
    parse_ctx *c = ctx;
    if (p == NULL) return;
    scratch_hdr *h = (scratch_hdr *)p - 1;
    if (h->on_heap) {
        c->doc->alloc_used -= sizeof *h + h->size;
        wh_free(h);
    }
    /* scratch blocks are reclaimed all at once when the parse ends */
}

static void *scratch_realloc(void *ctx, void *p, size_t n) {
    if (p == NULL) return scratch_malloc(ctx, n);
    scratch_hdr *h = (scratch_hdr *)p - 1;
    if (n <= h->size) return p;
    void *q = scratch_malloc(ctx, n);
    memcpy(q, p, h->size);
    scratch_free(ctx, p);
    return q;
}

/* Runs yajl over the text; returns true when the tree is complete. */
static bool run_yajl(parse_ctx *c) {
    size_t mark = scratch.used; /* nested parses (none today) would stack */
    yajl_alloc_funcs funcs = {scratch_malloc, scratch_realloc, scratch_free, c};
    yajl_handle h = yajl_alloc(&parse_callbacks, &funcs, c);
    if (h == NULL) abort(); /* yajl's default allocator: out of memory */
    c->h = h;
    yajl_config(h, yajl_allow_comments, 0);
    yajl_config(h, yajl_dont_validate_strings, 0);
    yajl_config(h, yajl_allow_trailing_garbage, 0);
    yajl_config(h, yajl_allow_multiple_values, 0);
    yajl_config(h, yajl_allow_partial_values, 0);
    bool at_end = false;
    yajl_status st = yajl_parse(h, (const unsigned char *)c->text, c->len);
    if (st == yajl_status_ok) {
        at_end = true;
        c->completing = true;
        st = yajl_complete_parse(h);
    }
    if (st == yajl_status_ok && c->yajl_over) { /* yajl's last block, after the last event */
        over_limit(c);
        st = yajl_status_client_canceled;
    }
    bool ok = st == yajl_status_ok;
    if (ok) {
        /* yajl takes an unterminated string after the value (`{} "abc`) for
         * input still to come, and yajl_complete_parse lets it go. */
        size_t end = c->root_end;
        while (end < c->len && (c->text[end] == ' ' || c->text[end] == '\t' || c->text[end] == '\n' ||
                                c->text[end] == '\r'))
            end++;
        if (end < c->len) ok = fail(c, end, true, "parse error: trailing garbage");
        else if (c->issue->at != NO_OFFSET) ok = fail(c, c->len, true, ""); /* cannot happen: yajl saw the string */
    } else if (st == yajl_status_error) {
        yajl_error(c, at_end);
    }
    /* yajl_status_client_canceled: the callback has set err. */
    yajl_free(h);
    scratch.used = mark;
    return ok;
}

static size_t inline_size_for(size_t len) {
    /* A tree takes about 4x its compact text; start with that in the doc's
     * own allocation, up to 64 KB, plus room for what a job adds around
     * parsed arguments (app/job.c builds the payload in the same arena), so
     * a small job costs one allocation. */
    return len > (65536 - 512) / 4 ? 65536 : len * 4 + 512;
}

size_t wh_json_parse_limit(size_t len) {
    if (len > (SIZE_MAX - WH_JSON_PARSE_SLACK) / WH_JSON_PARSE_FACTOR) return SIZE_MAX;
    return WH_JSON_PARSE_FACTOR * len + WH_JSON_PARSE_SLACK;
}

size_t wh_json_doc_alloc_bytes(const wh_json_doc *doc) { return doc->alloc_used; }

wh_json_doc *wh_json_parse(const char *text, size_t len, const wh_json_limits *limits, wh_err *err) {
    if (text == NULL && len) {
        wh_err_set(err, WH_EINVAL, "wh_json_parse: text is NULL");
        return NULL;
    }
    if (check_input(text, len, limits, err)) return NULL;
    scan_issue issue = {.at = NO_OFFSET};
    if (needs_scan((const unsigned char *)text, len)) prescan((const unsigned char *)text, len, &issue);

    parse_ctx ctx, *c = &ctx; /* ~1 KB, so small payloads need no heap stacks */
    c->doc = doc_new_sized(inline_size_for(len), false);
    c->text = text;
    c->len = len;
    c->err = err;
    c->max_depth = limits && limits->max_depth > 0 ? limits->max_depth : WH_JSON_DEFAULT_MAX_DEPTH;
    c->issue = &issue;
    c->yajl_over = false;
    c->completing = false;
    c->root_end = 0;
    c->counts = c->small_counts;
    c->ncounts = c->next_count = 0;
    c->cap_counts = SMALL_COUNTS;
    c->frames = c->small_frames;
    c->nframes = 0;
    c->cap_frames = SMALL_FRAMES;

    wh_json_doc *doc = c->doc;
    doc->alloc_limit = wh_json_parse_limit(len);
    assert(doc->alloc_used <= doc->alloc_limit); /* the inline region is at most 64 KB */
    bool counted = count_values(c);
    if (!counted)
        wh_err_set(err, WH_EJSON, "invalid JSON: a payload of %zu bytes needs more than %zu bytes to parse", len,
                   doc->alloc_limit);
    if (counted && run_yajl(c)) {
        doc->alloc_limit = 0; /* what the caller adds to the doc is not the parse's */
        doc->root_slot = c->root;
        doc->root = &doc->root_slot;
    } else {
        wh_json_doc_free(doc); /* every partial value lives in the arena */
        doc = NULL;
    }
    if (c->counts != c->small_counts) {
        if (doc) doc->alloc_used -= c->cap_counts * sizeof(uint32_t);
        wh_free(c->counts);
    }
    if (c->frames != c->small_frames) {
        if (doc) doc->alloc_used -= c->cap_frames * sizeof(frame);
        wh_free(c->frames);
    }
    return doc;
}

/* ==== access ============================================================ */

const wh_json *wh_json_get(const wh_json *v, const char *key, size_t key_len) {
    if (v == NULL || v->type != WH_JSON_OBJECT) return NULL;
    for (size_t i = 0; i < v->u.obj.n; i++) {
        const wh_json_member *m = &v->u.obj.members[i];
        if (m->key_len == key_len && memcmp(m->key, key, key_len) == 0) return &m->value;
    }
    return NULL;
}

const wh_json *wh_json_getz(const wh_json *v, const char *key) {
    return wh_json_get(v, key, strlen(key));
}

const char *wh_json_type_name(const wh_json *v) {
    switch (v->type) {
    case WH_JSON_NULL: return "null";
    case WH_JSON_FALSE:
    case WH_JSON_TRUE: return "boolean";
    case WH_JSON_INT: return "integer";
    case WH_JSON_FLOAT: return "number";
    case WH_JSON_STRING: return "string";
    case WH_JSON_ARRAY: return "array";
    case WH_JSON_OBJECT: return "object";
    }
    return "unknown";
}

/* ==== writer ============================================================ */

/* How each byte is written inside a string: 0 raw, 'u' as \u00xx, otherwise
 * the letter of its short escape. Ruby's JSON.generate writes the same. */
static const char escape_kind[256] = {
    ['\b'] = 'b', ['\f'] = 'f', ['\n'] = 'n', ['\r'] = 'r', ['\t'] = 't',
    [0x00] = 'u', [0x01] = 'u', [0x02] = 'u', [0x03] = 'u', [0x04] = 'u', [0x05] = 'u',
    [0x06] = 'u', [0x07] = 'u', [0x0b] = 'u', [0x0e] = 'u', [0x0f] = 'u', [0x10] = 'u',
    [0x11] = 'u', [0x12] = 'u', [0x13] = 'u', [0x14] = 'u', [0x15] = 'u', [0x16] = 'u',
    [0x17] = 'u', [0x18] = 'u', [0x19] = 'u', [0x1a] = 'u', [0x1b] = 'u', [0x1c] = 'u',
    [0x1d] = 'u', [0x1e] = 'u', [0x1f] = 'u', ['"'] = '"', ['\\'] = '\\',
};

void wh_json_write_string(wh_buf *out, const char *s, size_t len) {
    static const char hex[] = "0123456789abcdef";
    wh_buf_reserve(out, len + 2);
    wh_buf_putc(out, '"');
    size_t run = 0; /* start of the pending run of raw bytes */
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        char kind = escape_kind[ch];
        if (kind == 0) continue;
        wh_buf_append(out, s + run, i - run);
        run = i + 1;
        if (kind == 'u') {
            char e[6] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15]};
            wh_buf_append(out, e, 6);
        } else {
            char e[2] = {'\\', kind};
            wh_buf_append(out, e, 2);
        }
    }
    wh_buf_append(out, s + run, len - run);
    wh_buf_putc(out, '"');
}

static void write_int(wh_buf *out, int64_t i) {
    char tmp[24], *p = tmp + sizeof tmp;
    uint64_t u = i < 0 ? (uint64_t)0 - (uint64_t)i : (uint64_t)i;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (i < 0) *--p = '-';
    wh_buf_append(out, p, (size_t)(tmp + sizeof tmp - p));
}

/* snprintf follows LC_NUMERIC; JSON wants '.'. Replaces the locale's decimal
 * point in buf (NUL-terminated) when it differs. */
static void c_locale_point(char *buf) {
    if (strspn(buf, "0123456789+-.e") == strlen(buf)) return;
    const char *point = localeconv()->decimal_point;
    char *at = strstr(buf, point);
    if (at == NULL) return;
    size_t plen = strlen(point);
    *at = '.';
    memmove(at + 1, at + plen, strlen(at + plen) + 1);
}

/* A hand-built float: the shortest of %.15g..%.17g that reads back to d,
 * always with a '.' or an exponent so it reads back as a float. */
static int write_double(wh_buf *out, double d, wh_err *err) {
    if (!isfinite(d)) return wh_err_set(err, WH_EJSON, "cannot write %g as JSON", d);
    char buf[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, d);
        if (strtod(buf, NULL) == d) break;
    }
    c_locale_point(buf);
    wh_buf_puts(out, buf);
    if (strpbrk(buf, ".e") == NULL) wh_buf_append(out, ".0", 2);
    return 0;
}

int wh_json_write_float(wh_buf *out, double d, wh_err *err) { return write_double(out, d, err); }

static int write_scalar(wh_buf *out, const wh_json *v, wh_err *err) {
    switch (v->type) {
    case WH_JSON_NULL: wh_buf_append(out, "null", 4); return 0;
    case WH_JSON_FALSE: wh_buf_append(out, "false", 5); return 0;
    case WH_JSON_TRUE: wh_buf_append(out, "true", 4); return 0;
    case WH_JSON_INT: write_int(out, v->u.i); return 0;
    case WH_JSON_FLOAT:
        if (v->u.f.raw) {
            wh_buf_append(out, v->u.f.raw, v->u.f.raw_len);
            return 0;
        }
        return write_double(out, v->u.f.d, err);
    case WH_JSON_STRING: wh_json_write_string(out, v->u.str.s, v->u.str.len); return 0;
    default: return wh_err_set(err, WH_EJSON, "cannot write a JSON value of type %d", (int)v->type);
    }
}

/* The writer walks the tree with an explicit stack, so a hand-built or
 * generously limited deep tree cannot overflow the C stack. */
typedef struct wframe {
    const wh_json *v; /* an array or object */
    size_t next;      /* index of the next child to write */
} wframe;

typedef struct wstack {
    wframe *f;
    size_t n, cap;
    wframe small[32];
} wstack;

/* Writes a scalar, or opens a container and pushes it. */
static int write_open(wh_buf *out, wstack *st, const wh_json *v, wh_err *err) {
    if (v->type != WH_JSON_ARRAY && v->type != WH_JSON_OBJECT) return write_scalar(out, v, err);
    wh_buf_putc(out, v->type == WH_JSON_ARRAY ? '[' : '{');
    if (st->n == st->cap) st->f = stack_grow(NULL, st->f, st->small, &st->cap, sizeof(wframe));
    st->f[st->n].v = v;
    st->f[st->n].next = 0;
    st->n++;
    return 0;
}

/* Writes the next child of the container on top of the stack, or closes it. */
static int write_step(wh_buf *out, wstack *st, wh_err *err) {
    wframe *f = &st->f[st->n - 1];
    const wh_json *c = f->v;
    bool obj = c->type == WH_JSON_OBJECT;
    size_t count = obj ? c->u.obj.n : c->u.arr.n;
    if (f->next == count) {
        wh_buf_putc(out, obj ? '}' : ']');
        st->n--;
        return 0;
    }
    if (f->next > 0) wh_buf_putc(out, ',');
    const wh_json *child;
    if (obj) {
        const wh_json_member *m = &c->u.obj.members[f->next];
        wh_json_write_string(out, m->key, m->key_len);
        wh_buf_putc(out, ':');
        child = &m->value;
    } else {
        child = &c->u.arr.items[f->next];
    }
    f->next++; /* before write_open, which may move the stack */
    return write_open(out, st, child, err);
}

/* On error out keeps what was written before the bad value; discard it. */
int wh_json_write(wh_buf *out, const wh_json *v, wh_err *err) {
    assert(v != NULL); /* e.g. a hand-built doc whose root was never set */
    wstack st;
    st.f = st.small;
    st.n = 0;
    st.cap = sizeof st.small / sizeof st.small[0];
    int rc = write_open(out, &st, v, err);
    while (rc == 0 && st.n > 0) rc = write_step(out, &st, err);
    if (st.f != st.small) wh_free(st.f);
    return rc;
}
