/* SPDX-License-Identifier: MIT
 * test_json.c -- unit tests for json/json.c: the strict parser around yajl,
 * the arena tree, the hand-building API and the Ruby-style writer. */
#include <locale.h>
#include <malloc.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/mem.h"
#include "json/json.h"
#include "test.h"

/* ---- helpers --------------------------------------------------------- */

/* Parses a string literal (its length comes from sizeof, so NULs count). */
#define PARSE(lit, errp) wh_json_parse((lit), sizeof(lit) - 1, NULL, (errp))

/* Asserts that text (len bytes) is refused with WH_EJSON and a message
 * containing needle. */
#define REFUSED_N(text, len, limits, needle)                                   \
    do {                                                                       \
        wh_err e_ = WH_ERR_INIT;                                               \
        wh_json_doc *d_ = wh_json_parse((text), (len), (limits), &e_);         \
        if (d_ != NULL) {                                                      \
            wh_json_doc_free(d_);                                              \
            WH_TEST_FAIL("accepted: %s", #text);                               \
        }                                                                      \
        ASSERT_EQ_INT(e_.code, WH_EJSON);                                      \
        ASSERT_CONTAINS(e_.msg, (needle));                                     \
    } while (0)
#define REFUSED(lit, needle) REFUSED_N((lit), sizeof(lit) - 1, NULL, (needle))

/* Parses lit and asserts it is accepted; leaves the doc in `name`. */
#define PARSED(name, lit)                                                      \
    wh_err name##_err = WH_ERR_INIT;                                           \
    wh_json_doc *name = PARSE(lit, &name##_err);                               \
    if (name == NULL) WH_TEST_FAIL("refused %s: %s", #lit, name##_err.msg)

/* Asserts that parsing text and writing it back gives the same bytes. */
#define ROUND_TRIP(lit)                                                        \
    do {                                                                       \
        PARSED(rt_, lit);                                                      \
        wh_buf b_ = WH_BUF_INIT;                                               \
        int rc_ = wh_json_write(&b_, wh_json_doc_root(rt_), NULL);             \
        wh_json_doc_free(rt_);                                                 \
        int same_ = rc_ == 0 && b_.len == sizeof(lit) - 1 &&                   \
                    memcmp(b_.data, (lit), b_.len) == 0;                       \
        if (!same_) {                                                          \
            fprintf(stderr, "  wrote: %s\n", wh_buf_cstr(&b_));                \
            wh_buf_free(&b_);                                                  \
            WH_TEST_FAIL("round trip differs: %s", #lit);                      \
        }                                                                      \
        wh_buf_free(&b_);                                                      \
    } while (0)

static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static uint64_t rng(void) { /* xorshift64*: deterministic, good enough */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Du;
}

/* ---- types ----------------------------------------------------------- */

static void test_every_type(void) {
    PARSED(d, "{\"n\":null,\"f\":false,\"t\":true,\"i\":-42,\"x\":1.5,\"s\":\"hi\","
              "\"a\":[1,[]],\"o\":{\"k\":{}}}");
    const wh_json *r = wh_json_doc_root(d);
    ASSERT_EQ_INT(r->type, WH_JSON_OBJECT);
    ASSERT_EQ_INT(r->u.obj.n, 8);
    ASSERT_STREQ(r->u.obj.members[0].key, "n"); /* document order */
    ASSERT_STREQ(r->u.obj.members[7].key, "o");
    ASSERT_EQ_INT(wh_json_getz(r, "n")->type, WH_JSON_NULL);
    ASSERT_EQ_INT(wh_json_getz(r, "f")->type, WH_JSON_FALSE);
    ASSERT_EQ_INT(wh_json_getz(r, "t")->type, WH_JSON_TRUE);
    ASSERT_EQ_INT(wh_json_getz(r, "i")->type, WH_JSON_INT);
    ASSERT_EQ_INT(wh_json_getz(r, "i")->u.i, -42);
    ASSERT_EQ_INT(wh_json_getz(r, "x")->type, WH_JSON_FLOAT);
    ASSERT_EQ_DBL(wh_json_getz(r, "x")->u.f.d, 1.5);
    const wh_json *s = wh_json_getz(r, "s");
    ASSERT_EQ_INT(s->type, WH_JSON_STRING);
    ASSERT_EQ_INT(s->u.str.len, 2);
    ASSERT(memcmp(s->u.str.s, "hi", 2) == 0);
    const wh_json *a = wh_json_getz(r, "a");
    ASSERT_EQ_INT(a->type, WH_JSON_ARRAY);
    ASSERT_EQ_INT(a->u.arr.n, 2);
    ASSERT_EQ_INT(a->u.arr.items[0].u.i, 1);
    ASSERT_EQ_INT(a->u.arr.items[1].type, WH_JSON_ARRAY);
    ASSERT_EQ_INT(a->u.arr.items[1].u.arr.n, 0);
    const wh_json *k = wh_json_getz(wh_json_getz(r, "o"), "k");
    ASSERT(k != NULL);
    ASSERT_EQ_INT(k->type, WH_JSON_OBJECT);
    ASSERT_EQ_INT(k->u.obj.n, 0);
    ASSERT(wh_json_getz(r, "missing") == NULL);
    ASSERT(wh_json_getz(s, "x") == NULL); /* not an object */
    ASSERT(wh_json_get(r, "nx", 1) != NULL); /* explicit length */
    ASSERT_STREQ(wh_json_type_name(wh_json_getz(r, "n")), "null");
    ASSERT_STREQ(wh_json_type_name(wh_json_getz(r, "f")), "boolean");
    ASSERT_STREQ(wh_json_type_name(wh_json_getz(r, "t")), "boolean");
    ASSERT_STREQ(wh_json_type_name(wh_json_getz(r, "i")), "integer");
    ASSERT_STREQ(wh_json_type_name(wh_json_getz(r, "x")), "number");
    ASSERT_STREQ(wh_json_type_name(s), "string");
    ASSERT_STREQ(wh_json_type_name(a), "array");
    ASSERT_STREQ(wh_json_type_name(r), "object");
    wh_json_doc_free(d);
}

static void test_top_level_scalars(void) {
    PARSED(a, " 123 ");
    ASSERT_EQ_INT(wh_json_doc_root(a)->u.i, 123);
    wh_json_doc_free(a);
    PARSED(b, "\"x\"");
    ASSERT_EQ_INT(wh_json_doc_root(b)->type, WH_JSON_STRING);
    wh_json_doc_free(b);
    PARSED(c, "\r\n\tnull\n");
    ASSERT_EQ_INT(wh_json_doc_root(c)->type, WH_JSON_NULL);
    wh_json_doc_free(c);
    PARSED(e, "-1.5e-3");
    ASSERT_EQ_DBL(wh_json_doc_root(e)->u.f.d, -1.5e-3);
    wh_json_doc_free(e);
}

/* ---- numbers --------------------------------------------------------- */

/* Asserts that lit parses to WH_JSON_INT with value v. */
#define INT_IS(lit, v)                                                         \
    do {                                                                       \
        PARSED(d_, lit);                                                       \
        const wh_json *r_ = wh_json_doc_root(d_);                              \
        int t_ = r_->type;                                                     \
        int64_t i_ = r_->u.i;                                                  \
        wh_json_doc_free(d_);                                                  \
        ASSERT_EQ_INT(t_, WH_JSON_INT);                                        \
        if (i_ != (int64_t)(v))                                                \
            WH_TEST_FAIL("%s: %" PRId64 " != %" PRId64, lit, i_, (int64_t)(v)); \
    } while (0)

/* Asserts that lit parses to WH_JSON_FLOAT with the given int_literal flag,
 * value d and its own text as raw. */
#define FLOAT_IS(lit, is_int_lit, dval)                                        \
    do {                                                                       \
        PARSED(d_, lit);                                                       \
        const wh_json *r_ = wh_json_doc_root(d_);                              \
        int ok_ = r_->type == WH_JSON_FLOAT && r_->u.f.int_literal == (is_int_lit) && \
                  r_->u.f.d == (dval) && r_->u.f.raw != NULL &&                \
                  r_->u.f.raw_len == sizeof(lit) - 1 &&                        \
                  memcmp(r_->u.f.raw, lit, sizeof(lit) - 1) == 0 &&            \
                  r_->u.f.raw[r_->u.f.raw_len] == '\0';                        \
        wh_json_doc_free(d_);                                                  \
        if (!ok_) WH_TEST_FAIL("float %s", lit);                               \
    } while (0)

static void test_int64_edges(void) {
    INT_IS("0", 0);
    INT_IS("-0", 0); /* an integer literal within int64; written back as 0 */
    INT_IS("1", 1);
    INT_IS("-1", -1);
    INT_IS("9223372036854775807", INT64_MAX);
    INT_IS("-9223372036854775808", INT64_MIN);
    INT_IS("9223372036854775806", INT64_MAX - 1);
    INT_IS("-9223372036854775807", INT64_MIN + 1);
    INT_IS("1000000000000000000", INT64_C(1000000000000000000));
    INT_IS("1234567890123456789", INT64_C(1234567890123456789));
    INT_IS("9199999999999999999", INT64_C(9199999999999999999));
    INT_IS("-9223372036854775799", INT64_MIN + 9);
}

/* INT_IS above reads the root; check an array element separately. */
static void test_int64_in_array(void) {
    PARSED(d, "[4611686018427387904,-4611686018427387905,9007199254740993]");
    const wh_json *r = wh_json_doc_root(d);
    ASSERT_EQ_INT(r->u.arr.items[0].type, WH_JSON_INT);
    ASSERT(r->u.arr.items[0].u.i == INT64_C(4611686018427387904));
    ASSERT(r->u.arr.items[1].u.i == INT64_C(-4611686018427387905));
    ASSERT(r->u.arr.items[2].u.i == INT64_C(9007199254740993)); /* 2^53+1: not a double */
    wh_json_doc_free(d);
}

static void test_int64_beyond(void) {
    FLOAT_IS("9223372036854775808", true, 9223372036854775808.0);
    FLOAT_IS("-9223372036854775809", true, -9223372036854775809.0);
    FLOAT_IS("9999999999999999999", true, 9999999999999999999.0);
    FLOAT_IS("18446744073709551616", true, 18446744073709551616.0);
    FLOAT_IS("-99999999999999999999999", true, -99999999999999999999999.0);
    FLOAT_IS("123456789012345678901234567890", true, 123456789012345678901234567890.0);
}

/* Random int64 values (most have 19 digits) must come back exactly, and
 * random 19-digit values above INT64_MAX must become int_literal floats. */
static void test_int64_random(void) {
    char text[64];
    for (int k = 0; k < 20000; k++) {
        int64_t v = (int64_t)rng();
        if (k % 3 == 1) v >>= rng() % 63; /* shorter values too */
        int n = snprintf(text, sizeof text, "%" PRId64, v);
        wh_json_doc *d = wh_json_parse(text, (size_t)n, NULL, NULL);
        ASSERT(d != NULL);
        const wh_json *r = wh_json_doc_root(d);
        int t = r->type;
        int64_t got = r->u.i;
        wh_json_doc_free(d);
        ASSERT_EQ_INT(t, WH_JSON_INT);
        if (got != v) WH_TEST_FAIL("%s read as %" PRId64, text, got);
    }
    for (int k = 0; k < 2000; k++) {
        uint64_t u = (uint64_t)INT64_MAX + 1 + rng() % ((uint64_t)INT64_MAX); /* > INT64_MAX */
        int n = snprintf(text, sizeof text, "%s%" PRIu64, k % 2 ? "-" : "", u + (k % 2));
        wh_json_doc *d = wh_json_parse(text, (size_t)n, NULL, NULL);
        ASSERT(d != NULL);
        const wh_json *r = wh_json_doc_root(d);
        bool ok = r->type == WH_JSON_FLOAT && r->u.f.int_literal && r->u.f.d == strtod(text, NULL);
        wh_json_doc_free(d);
        if (!ok) WH_TEST_FAIL("%s is not an int_literal float", text);
    }
}

static void test_floats_keep_raw(void) {
    FLOAT_IS("1.10", false, 1.1);
    FLOAT_IS("1e5", false, 1e5);
    FLOAT_IS("1E+05", false, 1e5);
    FLOAT_IS("1795867985.6500375", false, 1795867985.6500375);
    FLOAT_IS("1700000000.0", false, 1700000000.0);
    FLOAT_IS("-0.0", false, 0.0);
    FLOAT_IS("0.1", false, 0.1);
    FLOAT_IS("2.5e-308", false, 2.5e-308);
    FLOAT_IS("1.000000000000000000000000001", false, 1.0);
    PARSED(d, "1e999");
    const wh_json *r = wh_json_doc_root(d);
    ASSERT_EQ_INT(r->type, WH_JSON_FLOAT);
    ASSERT(isinf(r->u.f.d) && r->u.f.d > 0);
    ASSERT(!r->u.f.int_literal);
    wh_json_doc_free(d);
    PARSED(z, "-0.0");
    ASSERT(signbit(wh_json_doc_root(z)->u.f.d));
    wh_json_doc_free(z);
}

/* ---- strings --------------------------------------------------------- */

/* Asserts that lit parses to a string of exactly the bytes of `want`. */
#define STRING_IS(lit, want)                                                   \
    do {                                                                       \
        PARSED(d_, lit);                                                       \
        const wh_json *r_ = wh_json_doc_root(d_);                              \
        int ok_ = r_->type == WH_JSON_STRING && r_->u.str.len == sizeof(want) - 1 && \
                  memcmp(r_->u.str.s, want, sizeof(want) - 1) == 0;            \
        wh_json_doc_free(d_);                                                  \
        if (!ok_) WH_TEST_FAIL("string %s", #lit);                             \
    } while (0)

static void test_string_escapes(void) {
    STRING_IS("\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"", "a\"b\\c/d\b\f\n\r\t");
    STRING_IS("\"\\u0041\\u00e9\\u00E9\\u20ac\"", "A\xc3\xa9\xc3\xa9\xe2\x82\xac");
    STRING_IS("\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80");
    STRING_IS("\"\\uD83D\\uDE00\"", "\xf0\x9f\x98\x80");
    STRING_IS("\"\\udbff\\udfff\"", "\xf4\x8f\xbf\xbf"); /* U+10FFFF */
    STRING_IS("\"\\ud800\\udc00\"", "\xf0\x90\x80\x80"); /* U+10000 */
    STRING_IS("\"x\\u0000y\"", "x\0y");
    STRING_IS("\"\\u0000\"", "\0");
    STRING_IS("\"\\\\uD800\"", "\\uD800"); /* an escaped backslash, then plain text */
    STRING_IS("\"\\\\\\\\uDC00\"", "\\\\uDC00");
    STRING_IS("\"\\\\\\ud83d\\ude00\"", "\\\xf0\x9f\x98\x80");
    STRING_IS("\"caf\xc3\xa9 \xf0\x9f\x98\x80 \xef\xbf\xbf \xf4\x8f\xbf\xbf\x7f\"",
              "caf\xc3\xa9 \xf0\x9f\x98\x80 \xef\xbf\xbf \xf4\x8f\xbf\xbf\x7f");
    STRING_IS("\"\"", "");
}

static void test_nul_in_strings_and_keys(void) {
    PARSED(d, "{\"a\\u0000b\":1,\"a\\u0000c\":2,\"a\":3}"); /* three distinct keys */
    const wh_json *r = wh_json_doc_root(d);
    ASSERT_EQ_INT(r->u.obj.n, 3);
    ASSERT_EQ_INT(r->u.obj.members[0].key_len, 3);
    ASSERT(memcmp(r->u.obj.members[0].key, "a\0b", 3) == 0);
    ASSERT_EQ_INT(wh_json_get(r, "a\0c", 3)->u.i, 2);
    ASSERT_EQ_INT(wh_json_getz(r, "a")->u.i, 3);
    wh_json_doc_free(d);
    REFUSED("{\"a\\u0000\":1,\"a\\u0000\":2}", "duplicate key \"a\\x00\"");
}

static void test_invalid_utf8_refused(void) {
    REFUSED("\"\xc0\x80\"", "invalid JSON at byte 1: invalid UTF-8 in string"); /* overlong NUL */
    REFUSED("\"\xc1\xbf\"", "invalid UTF-8 in string");
    REFUSED("\"\xe0\x80\x80\"", "invalid UTF-8 in string");     /* overlong 3-byte */
    REFUSED("\"\xf0\x80\x80\x80\"", "invalid UTF-8 in string"); /* overlong 4-byte */
    REFUSED("\"\xed\xa0\x80\"", "invalid UTF-8 in string");     /* encoded U+D800 */
    REFUSED("\"\xed\xbf\xbf\"", "invalid UTF-8 in string");     /* encoded U+DFFF */
    REFUSED("\"\xf4\x90\x80\x80\"", "invalid UTF-8 in string"); /* U+110000 */
    REFUSED("\"\xf5\x80\x80\x80\"", "invalid UTF-8 in string");
    REFUSED("[\"\xff\"]", "invalid JSON at byte 2: invalid UTF-8 in string");
    REFUSED("\"\x80\"", "invalid UTF-8 in string");             /* stray continuation */
    REFUSED("[\"ab\xe2\x82\"]", "invalid JSON at byte 4: invalid UTF-8 in string"); /* truncated */
    REFUSED("\"\xf0\x9f\x98\"", "invalid UTF-8 in string");
    REFUSED("\"\xc3", "invalid UTF-8 in string");               /* truncated at the end */
    REFUSED("{\"k\xc0\x80\":1}", "invalid JSON at byte 3: invalid UTF-8 in string"); /* in a key */
    /* Bytes >= 0x80 outside strings are yajl's to refuse. */
    REFUSED("[1,\xc3\xa9]", "invalid JSON at byte");
}

static void test_lone_surrogates_refused(void) {
    REFUSED("\"\\uD800\"", "invalid JSON at byte 1: lone surrogate \\uD800");
    REFUSED("[\"ab\\udbff\"]", "invalid JSON at byte 4: lone surrogate \\uDBFF");
    REFUSED("\"\\uDC00\"", "lone surrogate \\uDC00");
    REFUSED("\"\\uDFFF\\uD800\"", "lone surrogate \\uDFFF");       /* low then high */
    REFUSED("\"\\uD800\\u0041\"", "lone surrogate \\uD800");       /* high, non-low escape */
    REFUSED("\"\\uD800\\uD800\\uDC00\"", "at byte 1: lone surrogate \\uD800"); /* high, high */
    REFUSED("\"\\uD800A\"", "lone surrogate \\uD800");             /* high, plain char */
    REFUSED("\"\\uD800\\n\"", "lone surrogate \\uD800");           /* high, other escape */
    REFUSED("\"\\ud83d\\ude00\\ude00\"", "at byte 13: lone surrogate \\uDE00");
    REFUSED("{\"\\uD800\":1}", "lone surrogate \\uD800");          /* in a key */
    REFUSED("\"\\\\\\uD800\"", "at byte 3: lone surrogate \\uD800"); /* \\ then a real escape */
}

/* Bad escapes that are not surrogates stay yajl's business. */
static void test_bad_escapes_refused(void) {
    REFUSED("\"\\x\"", "invalid JSON at byte");
    REFUSED("\"\\u12\"", "invalid JSON at byte");
    REFUSED("\"\\uZZZZ\"", "invalid JSON at byte");
    REFUSED("\"\\", "invalid JSON");
    REFUSED("\"a\x01\"", "invalid JSON at byte");
    REFUSED("\"a\nb\"", "invalid JSON at byte");
}

/* The pre-scan is skipped for plain ASCII text; whatever needs it must be
 * noticed at every position within the 8-byte words of the fast check. */
static void test_scan_every_position(void) {
    const char *bad[] = {"\\uD800", "\xc0\x80", "\xed\xa0\x80"};
    char t[128];
    for (size_t k = 0; k < 3; k++) {
        for (size_t pre = 0; pre < 40; pre++) {
            for (size_t post = 0; post < 12; post++) {
                size_t n = 0;
                t[n++] = '"';
                memset(t + n, 'a', pre), n += pre;
                memcpy(t + n, bad[k], strlen(bad[k])), n += strlen(bad[k]);
                memset(t + n, 'b', post), n += post;
                t[n++] = '"';
                wh_err e = WH_ERR_INIT;
                wh_json_doc *d = wh_json_parse(t, n, NULL, &e);
                wh_json_doc_free(d);
                if (d != NULL) WH_TEST_FAIL("accepted case %zu at %zu+%zu", k, pre, post);
                char want[32];
                snprintf(want, sizeof want, "at byte %zu:", pre + 1);
                ASSERT_CONTAINS(e.msg, want);
            }
        }
    }
    for (size_t pre = 0; pre < 40; pre++) { /* \v between tokens */
        size_t n = 0;
        t[n++] = '[';
        for (size_t i = 0; i < pre; i++) t[n++] = ' ';
        t[n++] = '\v';
        memcpy(t + n, "1]", 2), n += 2;
        wh_err e = WH_ERR_INIT;
        wh_json_doc *d = wh_json_parse(t, n, NULL, &e);
        wh_json_doc_free(d);
        if (d != NULL) WH_TEST_FAIL("\\v accepted at %zu", pre + 1);
        ASSERT_CONTAINS(e.msg, "invalid character 0x0b");
    }
    /* Plain ASCII with escapes elsewhere still parses. */
    PARSED(d, "[\"abcdefghijklmnop\",\"\\n\",\"\\u00e9\", 1,\n\t2]");
    wh_json_doc_free(d);
}

/* ---- duplicate keys -------------------------------------------------- */

static void test_duplicate_keys(void) {
    REFUSED("{\"a\":1,\"a\":2}", "invalid JSON at byte 7: duplicate key \"a\"");
    REFUSED("{\"a\": 1, \"a\": 2}", "invalid JSON at byte 9: duplicate key \"a\"");
    REFUSED("[{\"x\":{\"b\":1,\"c\":2,\"b\":3}}]", "invalid JSON at byte 19: duplicate key \"b\"");
    REFUSED("{\"a\":1,\"b\":2,\"\\u0061\":3}", "at byte 13: duplicate key \"a\""); /* escaped */
    REFUSED("{\"q\\\"\":1,\"q\\\"\":2}", "at byte 9: duplicate key \"q\\x22\"");
    /* The key in the message is cut short. */
    REFUSED("{\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\":1,"
            "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\":2}",
            "duplicate key \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\"");
    PARSED(ok, "{\"a\":1,\"ab\":2,\"b\":{\"a\":3},\"\":4,\"A\":5}"); /* same key in another object is fine */
    ASSERT_EQ_INT(wh_json_doc_root(ok)->u.obj.n, 5);
    wh_json_doc_free(ok);
}

/* Builds {"k0":0,"k1":1,...} with n keys; if dup_at < n, key dup_at repeats
 * key dup_of. Returns owned text. */
static char *big_object(size_t n, size_t dup_at, size_t dup_of) {
    wh_buf b = WH_BUF_INIT;
    wh_buf_putc(&b, '{');
    for (size_t i = 0; i < n; i++)
        wh_buf_printf(&b, "%s\"k%zu\":%zu", i ? "," : "", i == dup_at ? dup_of : i, i);
    wh_buf_putc(&b, '}');
    return wh_buf_steal(&b);
}

static void test_duplicate_keys_large(void) {
    char *t = big_object(100000, SIZE_MAX, 0);
    wh_err e = WH_ERR_INIT;
    wh_json_doc *d = wh_json_parse(t, strlen(t), NULL, &e);
    wh_free(t);
    if (d == NULL) WH_TEST_FAIL("refused: %s", e.msg);
    const wh_json *r = wh_json_doc_root(d);
    size_t n = r->u.obj.n;
    int64_t last = wh_json_getz(r, "k99999")->u.i;
    wh_json_doc_free(d);
    ASSERT_EQ_INT(n, 100000);
    ASSERT_EQ_INT(last, 99999);

    t = big_object(100000, 99990, 12345);
    d = wh_json_parse(t, strlen(t), NULL, &e);
    wh_free(t);
    wh_json_doc_free(d);
    ASSERT(d == NULL);
    ASSERT_CONTAINS(e.msg, "duplicate key \"k12345\"");

    t = big_object(17, 16, 0); /* just above the linear-check size */
    d = wh_json_parse(t, strlen(t), NULL, &e);
    wh_free(t);
    wh_json_doc_free(d);
    ASSERT(d == NULL);
    ASSERT_CONTAINS(e.msg, "invalid JSON at byte 125: duplicate key \"k0\"");
}

/* ---- limits ---------------------------------------------------------- */

/* Returns owned text of depth nested arrays: [[[...]]]. */
static char *nested(size_t depth, bool close) {
    char *t = wh_xmalloc(depth * 2 + 1);
    memset(t, '[', depth);
    if (close) memset(t + depth, ']', depth);
    t[close ? depth * 2 : depth] = '\0';
    return t;
}

static void test_depth_limit(void) {
    char *t = nested(64, true);
    wh_err e = WH_ERR_INIT;
    wh_json_doc *d = wh_json_parse(t, strlen(t), NULL, &e);
    wh_free(t);
    if (d == NULL) WH_TEST_FAIL("64 deep refused: %s", e.msg);
    wh_json_doc_free(d);

    t = nested(65, true);
    REFUSED_N(t, strlen(t), NULL, "invalid JSON: nesting deeper than 64");
    wh_json_limits lim = {0, 65};
    d = wh_json_parse(t, strlen(t), &lim, &e);
    wh_free(t);
    ASSERT(d != NULL);
    wh_json_doc_free(d);

    wh_json_limits two = {0, 2};
    REFUSED_N("{\"a\":[{}]}", 10, &two, "invalid JSON: nesting deeper than 2");
    REFUSED_N("[[[", 3, &two, "nesting deeper than 2");
    d = wh_json_parse("{\"a\":[1]}", 9, &two, &e);
    ASSERT(d != NULL);
    wh_json_doc_free(d);
}

static void test_depth_100000(void) {
    char *t = nested(100000, false); /* unclosed, as an attacker would send */
    REFUSED_N(t, strlen(t), NULL, "nesting deeper than 64");
    wh_free(t);
    t = nested(100000, true);
    REFUSED_N(t, strlen(t), NULL, "nesting deeper than 64");
    /* With a generous depth limit, 100000 levels need more memory than the
     * parse may take (a 40-byte frame and a 40-byte value per 2 bytes of text). */
    wh_json_limits lim = {0, 200000};
    REFUSED_N(t, strlen(t), &lim, "invalid JSON: a payload of 200000 bytes needs more than 2648576 bytes to parse");
    wh_free(t);
    /* 5000 levels fit: the parser and the writer still use no recursion. */
    t = nested(5000, true);
    wh_err e = WH_ERR_INIT;
    wh_json_doc *d = wh_json_parse(t, strlen(t), &lim, &e);
    if (d == NULL) {
        wh_free(t);
        WH_TEST_FAIL("refused: %s", e.msg);
    }
    wh_buf b = WH_BUF_INIT;
    int rc = wh_json_write(&b, wh_json_doc_root(d), &e);
    int same = rc == 0 && b.len == strlen(t) && memcmp(b.data, t, b.len) == 0;
    wh_buf_free(&b);
    wh_json_doc_free(d);
    wh_free(t);
    ASSERT(same);
}

static void test_max_bytes(void) {
    wh_json_limits lim = {10, 0};
    wh_err e = WH_ERR_INIT;
    wh_json_doc *d = wh_json_parse("[1,2,3,45]", 10, &lim, &e);
    ASSERT(d != NULL);
    wh_json_doc_free(d);
    REFUSED_N("[1,2,3,456]", 11, &lim, "invalid JSON: 11 bytes is over the limit of 10");
    wh_json_limits big = {16777216, 0};
    /* The size check comes before anything reads the text. */
    REFUSED_N("", 17000000, &big, "invalid JSON: 17000000 bytes is over the limit of 16777216");
}

/* ---- syntax ---------------------------------------------------------- */

static void test_syntax_refused(void) {
    REFUSED_N("", 0, NULL, "invalid JSON: empty input");
    REFUSED_N(NULL, 0, NULL, "invalid JSON: empty input");
    REFUSED(" \t\r\n ", "invalid JSON: empty input");
    REFUSED("{}x", "invalid JSON at byte 3: parse error: trailing garbage");
    REFUSED("[1] [2]", "trailing garbage");
    REFUSED("1 2", "trailing garbage");
    REFUSED("{} {}", "trailing garbage");
    /* an unterminated string after the value, which yajl alone lets through
     * (found by fuzz_payload: wh_jtop_rewrite refused what this accepted) */
    REFUSED("{} \"abc", "invalid JSON at byte 3: parse error: trailing garbage");
    REFUSED(" \n {\"class\" : \"F\"} \r\n\"F ] ]", "invalid JSON at byte 21: parse error: trailing garbage");
    REFUSED("[1]\"", "invalid JSON at byte 3: parse error: trailing garbage");
    REFUSED("\"a\" \"b", "invalid JSON at byte 4: parse error: trailing garbage");
    REFUSED("true\"x", "invalid JSON at byte 4: parse error: trailing garbage");
    REFUSED("1 \"x", "invalid JSON at byte 2: parse error: trailing garbage");
    REFUSED("{\"a\":1} \"\\u12", "invalid JSON at byte 13: parse error: trailing garbage"); /* yajl's own */
    PARSED(ws_after, "{\"a\":[1]} \r\n\t ");
    wh_json_doc_free(ws_after);
    PARSED(num_at_end, "-12.5e3");
    wh_json_doc_free(num_at_end);
    REFUSED("/* c */ 1", "comment");
    REFUSED("[1] // c", "invalid JSON at byte");
    REFUSED("[1,]", "invalid JSON at byte 4");
    REFUSED("{\"a\":1,}", "invalid JSON at byte");
    REFUSED("[1,,2]", "invalid JSON at byte");
    REFUSED("[01]", "invalid JSON at byte");
    REFUSED("[1.]", "invalid JSON at byte");
    REFUSED("[.5]", "invalid JSON at byte");
    REFUSED("[+1]", "invalid JSON at byte");
    REFUSED("-", "invalid JSON at byte");
    REFUSED("[NaN]", "invalid JSON at byte");
    REFUSED("[Infinity]", "invalid JSON at byte");
    REFUSED("['a']", "invalid JSON at byte");
    REFUSED("{a:1}", "invalid JSON at byte");
    REFUSED("[tru]", "invalid JSON at byte");
    REFUSED("\xef\xbb\xbf{}", "invalid JSON at byte"); /* a BOM */
    REFUSED("[1", "invalid JSON at byte 2: parse error: premature EOF");
    REFUSED("{\"a\"", "premature EOF");
    REFUSED("\"abc", "premature EOF");
    REFUSED("[1]\0", "invalid JSON at byte");
    REFUSED("\v1", "invalid JSON at byte 0: invalid character 0x0b"); /* yajl would skip it */
    REFUSED("[1,\f2]", "invalid JSON at byte 3: invalid character 0x0c");
}

static void test_long_string(void) {
    size_t n = 10 * 1024 * 1024;
    char *t = wh_xmalloc(n + 3);
    t[0] = '"';
    for (size_t i = 0; i < n; i++) t[i + 1] = (char)('a' + i % 26);
    memcpy(t + 1 + n - 10, "\xc3\xa9\\n\\u00e9", 10); /* non-ASCII and escapes at the end */
    t[n + 1] = '"';
    t[n + 2] = '\0';
    wh_err e = WH_ERR_INIT;
    wh_json_doc *d = wh_json_parse(t, n + 2, NULL, &e);
    if (d == NULL) {
        wh_free(t);
        WH_TEST_FAIL("refused: %s", e.msg);
    }
    const wh_json *r = wh_json_doc_root(d);
    size_t len = r->u.str.len;
    int head = memcmp(r->u.str.s, t + 1, n - 10) == 0;
    int tail = memcmp(r->u.str.s + n - 10, "\xc3\xa9\n\xc3\xa9", 5) == 0;
    wh_json_doc_free(d);
    wh_free(t);
    ASSERT_EQ_INT(len, n - 5);
    ASSERT(head);
    ASSERT(tail);
}

/* ---- UTF-8 helpers --------------------------------------------------- */

static void test_utf8_api(void) {
    ASSERT(wh_json_utf8_valid("", 0));
    ASSERT(wh_json_utf8_valid("plain ascii text, longer than eight bytes", 41));
    ASSERT(wh_json_utf8_valid("a\0b", 3));
    ASSERT(wh_json_utf8_valid("\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf", 18));
    ASSERT(wh_json_utf8_valid("\xed\x9f\xbf\xee\x80\x80", 6)); /* U+D7FF, U+E000 */
    ASSERT(!wh_json_utf8_valid("\xc0\x80", 2));
    ASSERT(!wh_json_utf8_valid("\xc1\xbf", 2));
    ASSERT(!wh_json_utf8_valid("\xe0\x9f\xbf", 3));
    ASSERT(!wh_json_utf8_valid("\xed\xa0\x80", 3));
    ASSERT(!wh_json_utf8_valid("\xed\xbf\xbf", 3));
    ASSERT(!wh_json_utf8_valid("\xf0\x8f\xbf\xbf", 4));
    ASSERT(!wh_json_utf8_valid("\xf4\x90\x80\x80", 4));
    ASSERT(!wh_json_utf8_valid("\xf5\x80\x80\x80", 4));
    ASSERT(!wh_json_utf8_valid("\xff", 1));
    ASSERT(!wh_json_utf8_valid("\x80", 1));
    ASSERT(!wh_json_utf8_valid("abcdefgh\xe2\x82", 10)); /* truncated after the fast path */
    ASSERT(!wh_json_utf8_valid("\xe2\x82x", 3));
    ASSERT_EQ_INT(wh_json_utf8_len("", 0), 0);
    ASSERT_EQ_INT(wh_json_utf8_len("abc", 3), 3);
    ASSERT_EQ_INT(wh_json_utf8_len("caf\xc3\xa9", 5), 4);
    ASSERT_EQ_INT(wh_json_utf8_len("\xf0\x9f\x98\x80!\xe2\x82\xac", 8), 3);
}

/* ---- writer ---------------------------------------------------------- */

static void test_write_round_trip(void) {
    /* A Sidekiq payload as Ruby's JSON.generate writes it. */
    ROUND_TRIP("{\"retry\":true,\"queue\":\"default\",\"class\":\"OkWorker\","
               "\"args\":[1,\"x\",{\"k\":null}],\"jid\":\"03a9f1f0c7be4dc5a5aebbac\","
               "\"created_at\":1795867985.6500375,\"enqueued_at\":1795867985.650375}");
    ROUND_TRIP("{\"class\":\"DownloadWorker\",\"args\":[{\"user_guid\":\"4f1c0a2e-9b7d-4c3e-8f2a-1d6e5b4a3c21\","
               "\"count\":3,\"ids\":[9223372036854775807,-9223372036854775808,18446744073709551616],"
               "\"ratio\":1.10,\"big\":1e400,\"tiny\":5e-324,\"name\":\"Zo\xc3\xab \xf0\x9f\x98\x80 \xe6\x97\xa5\","
               "\"path\":\"/srv/app/x.csv\",\"note\":\"line1\\nline2\\t\\\"q\\\" \\\\ \\u0000\\u001f\\b\\f\\r\x7f\"}],"
               "\"queue\":\"default\",\"retry\":25,\"jid\":\"b4a5c6d7e8f90a1b2c3d4e5f\","
               "\"created_at\":1700000000.123456,\"enqueued_at\":1700000000.1234567,"
               "\"failed_at\":1700000000.0,\"retry_count\":0,\"error_message\":null,\"backtrace\":false}");
    ROUND_TRIP("[]");
    ROUND_TRIP("{}");
    ROUND_TRIP("[[],{},[{}],\"\",0,-1,0.0,-0.0,1E5,1e-7]");
    ROUND_TRIP("\"\\u0000\"");
    ROUND_TRIP("12345678901234567890123");
}

/* Whitespace goes away; everything else stays byte for byte. */
static void test_write_compacts(void) {
    PARSED(d, " { \"a\" : [ 1 , 2.50 , \"x\" ] ,\n\t\"b\" : { } } ");
    wh_buf b = WH_BUF_INIT;
    ASSERT_EQ_INT(wh_json_write(&b, wh_json_doc_root(d), NULL), 0);
    wh_json_doc_free(d);
    int ok = strcmp(wh_buf_cstr(&b), "{\"a\":[1,2.50,\"x\"],\"b\":{}}") == 0;
    if (!ok) fprintf(stderr, "  wrote %s\n", wh_buf_cstr(&b));
    wh_buf_free(&b);
    ASSERT(ok);
    /* "-0" is an integer literal, so it is an INT and comes back as 0. */
    PARSED(z, "[-0]");
    ASSERT_EQ_INT(wh_json_write(&b, wh_json_doc_root(z), NULL), 0);
    wh_json_doc_free(z);
    ok = strcmp(wh_buf_cstr(&b), "[0]") == 0;
    wh_buf_free(&b);
    ASSERT(ok);
}

static void test_write_escapes(void) {
    char all[0x80];
    for (int i = 0; i < 0x80; i++) all[i] = (char)i;
    wh_buf b = WH_BUF_INIT;
    wh_json_write_string(&b, all, sizeof all);
    const char *want =
        "\"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r"
        "\\u000e\\u000f\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018\\u0019"
        "\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f !\\\"#$%&'()*+,-./0123456789:;<=>?@"
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\\\]^_`abcdefghijklmnopqrstuvwxyz{|}~\x7f\"";
    int ok = strcmp(wh_buf_cstr(&b), want) == 0;
    if (!ok) fprintf(stderr, "  wrote %s\n", wh_buf_cstr(&b));
    wh_buf_reset(&b);
    ASSERT(ok);
    wh_json_write_string(&b, "\xc3\xa9\xe2\x80\xa8\xf0\x9f\x98\x80/", 10); /* raw, no \u2028 escape */
    ok = strcmp(wh_buf_cstr(&b), "\"\xc3\xa9\xe2\x80\xa8\xf0\x9f\x98\x80/\"") == 0;
    wh_buf_reset(&b);
    ASSERT(ok);
    wh_json_write_string(&b, "", 0);
    ok = strcmp(wh_buf_cstr(&b), "\"\"") == 0;
    wh_buf_free(&b);
    ASSERT(ok);
}

/* Escaped input comes back in Ruby's form. */
static void test_write_normalizes_escapes(void) {
    PARSED(d, "\"\\/\\u00e9\\u0041\\u001F\\u007f\\ud83d\\ude00\"");
    wh_buf b = WH_BUF_INIT;
    ASSERT_EQ_INT(wh_json_write(&b, wh_json_doc_root(d), NULL), 0);
    wh_json_doc_free(d);
    int ok = strcmp(wh_buf_cstr(&b), "\"/\xc3\xa9" "A\\u001f\x7f\xf0\x9f\x98\x80\"") == 0;
    if (!ok) fprintf(stderr, "  wrote %s\n", wh_buf_cstr(&b));
    wh_buf_free(&b);
    ASSERT(ok);
}

/* Writes a hand-built float and compares with want. */
#define FLOAT_WRITES(dv, want)                                                 \
    do {                                                                       \
        wh_json v_ = {.type = WH_JSON_FLOAT};                                  \
        v_.u.f.d = (dv);                                                       \
        wh_buf b_ = WH_BUF_INIT;                                               \
        int rc_ = wh_json_write(&b_, &v_, NULL);                               \
        int ok_ = rc_ == 0 && strcmp(wh_buf_cstr(&b_), want) == 0;             \
        if (!ok_) fprintf(stderr, "  %s wrote %s\n", #dv, wh_buf_cstr(&b_));   \
        wh_buf_free(&b_);                                                      \
        ASSERT(ok_);                                                           \
    } while (0)

static void test_write_hand_floats(void) {
    FLOAT_WRITES(2.0, "2.0");
    FLOAT_WRITES(0.1, "0.1");
    FLOAT_WRITES(-0.0, "-0.0");
    FLOAT_WRITES(0.0, "0.0");
    FLOAT_WRITES(1e300, "1e+300");
    FLOAT_WRITES(1e15, "1e+15");
    FLOAT_WRITES(123456.0, "123456.0");
    FLOAT_WRITES(1700000000.0, "1700000000.0");
    FLOAT_WRITES(1700000000.123456, "1700000000.123456");
    FLOAT_WRITES(1795867985.6500375, "1795867985.6500375");
    FLOAT_WRITES(1.0 / 3.0, "0.3333333333333333");
    FLOAT_WRITES(0.1 + 0.2, "0.30000000000000004");
    FLOAT_WRITES(5e-324, "4.94065645841247e-324"); /* 15 digits already read back */
    FLOAT_WRITES(1.7976931348623157e308, "1.7976931348623157e+308");
    FLOAT_WRITES(9007199254740993.0, "9007199254740992.0");
    /* Every hand-built float reads back to the same double. */
    for (int k = 0; k < 20000; k++) {
        uint64_t bits = rng();
        double d;
        memcpy(&d, &bits, sizeof d);
        if (!isfinite(d)) continue;
        wh_json v = {.type = WH_JSON_FLOAT};
        v.u.f.d = d;
        wh_buf b = WH_BUF_INIT;
        ASSERT_EQ_INT(wh_json_write(&b, &v, NULL), 0);
        wh_json_doc *doc = wh_json_parse(b.data, b.len, NULL, NULL);
        wh_buf_free(&b);
        ASSERT(doc != NULL);
        const wh_json *r = wh_json_doc_root(doc);
        bool ok = r->type == WH_JSON_FLOAT && r->u.f.d == d && signbit(r->u.f.d) == signbit(d);
        wh_json_doc_free(doc);
        if (!ok) WH_TEST_FAIL("%.17g did not read back", d);
    }
}

static void test_write_non_finite_refused(void) {
    double bad[] = {INFINITY, -INFINITY, NAN};
    for (size_t k = 0; k < 3; k++) {
        wh_json v = {.type = WH_JSON_FLOAT};
        v.u.f.d = bad[k];
        wh_json arr = {.type = WH_JSON_ARRAY};
        arr.u.arr.items = &v;
        arr.u.arr.n = 1;
        wh_buf b = WH_BUF_INIT;
        wh_err e = WH_ERR_INIT;
        int rc = wh_json_write(&b, &arr, &e);
        wh_buf_free(&b);
        ASSERT_EQ_INT(rc, WH_EJSON);
        ASSERT_EQ_INT(e.code, WH_EJSON);
        ASSERT_CONTAINS(e.msg, "cannot write");
    }
    /* A parsed 1e999 keeps its text, so it can be written back. */
    ROUND_TRIP("[1e999,-1e999]");
}

static void test_write_ints(void) {
    int64_t vals[] = {0, 1, -1, 9, 10, -10, INT64_MAX, INT64_MIN, INT64_MIN + 1, 1234567890123};
    for (size_t k = 0; k < sizeof vals / sizeof vals[0]; k++) {
        wh_json v = {.type = WH_JSON_INT};
        v.u.i = vals[k];
        char want[32];
        snprintf(want, sizeof want, "%" PRId64, vals[k]);
        wh_buf b = WH_BUF_INIT;
        ASSERT_EQ_INT(wh_json_write(&b, &v, NULL), 0);
        int ok = strcmp(wh_buf_cstr(&b), want) == 0;
        wh_buf_free(&b);
        if (!ok) WH_TEST_FAIL("%s", want);
    }
}

/* Builds {"name":"job","args":[1,2.0,"x\n",true,null],"meta":{}} by hand. */
static void test_hand_built(void) {
    wh_json_doc *doc = wh_json_doc_new();
    ASSERT(wh_json_doc_root(doc) == NULL);
    wh_json *root = wh_json_doc_alloc(doc, sizeof *root);
    wh_json_member *m = wh_json_doc_alloc(doc, 3 * sizeof *m);
    wh_json *items = wh_json_doc_alloc(doc, 5 * sizeof *items);
    ASSERT((uintptr_t)root % _Alignof(wh_json) == 0);
    ASSERT((uintptr_t)m % _Alignof(wh_json_member) == 0);
    ASSERT((uintptr_t)items % _Alignof(wh_json) == 0);
    const char *k = wh_json_doc_strndup(doc, "nameXYZ", 4);
    ASSERT_STREQ(k, "name"); /* NUL added */
    m[0] = (wh_json_member){.key = k, .key_len = 4, .value = {.type = WH_JSON_STRING}};
    m[0].value.u.str.s = wh_json_doc_strndup(doc, "job", 3);
    m[0].value.u.str.len = 3;
    items[0] = (wh_json){.type = WH_JSON_INT, .u.i = 1};
    items[1] = (wh_json){.type = WH_JSON_FLOAT, .u.f = {.d = 2.0}};
    items[2] = (wh_json){.type = WH_JSON_STRING, .u.str = {wh_json_doc_strndup(doc, "x\n", 2), 2}};
    items[3] = (wh_json){.type = WH_JSON_TRUE};
    items[4] = (wh_json){.type = WH_JSON_NULL};
    m[1] = (wh_json_member){.key = "args", .key_len = 4, .value = {.type = WH_JSON_ARRAY}};
    m[1].value.u.arr.items = items;
    m[1].value.u.arr.n = 5;
    m[2] = (wh_json_member){.key = "meta", .key_len = 4, .value = {.type = WH_JSON_OBJECT}};
    root->type = WH_JSON_OBJECT;
    root->u.obj.members = m;
    root->u.obj.n = 3;
    /* Enough further allocations to need several chunks, one of them big. */
    for (int i = 0; i < 1000; i++) ASSERT(wh_json_doc_alloc(doc, 100) != NULL);
    char *big = wh_json_doc_alloc(doc, 1 << 20);
    memset(big, 'x', 1 << 20);
    wh_json_doc_set_root(doc, root);
    ASSERT(wh_json_doc_root(doc) == root);
    ASSERT_EQ_INT(wh_json_getz(root, "args")->u.arr.n, 5);

    wh_buf b = WH_BUF_INIT;
    ASSERT_EQ_INT(wh_json_write(&b, wh_json_doc_root(doc), NULL), 0);
    wh_json_doc_free(doc);
    int ok = strcmp(wh_buf_cstr(&b), "{\"name\":\"job\",\"args\":[1,2.0,\"x\\n\",true,null],\"meta\":{}}") == 0;
    if (!ok) fprintf(stderr, "  wrote %s\n", wh_buf_cstr(&b));
    wh_buf_free(&b);
    ASSERT(ok);
    wh_json_doc_free(NULL); /* accepted */
}

/* ---- error paths and robustness -------------------------------------- */

/* Errors deep inside big partial trees must free everything (run under
 * valgrind / ASan to see it). */
static void test_errors_mid_parse(void) {
    wh_buf b = WH_BUF_INIT;
    wh_buf_puts(&b, "[{\"s\":\"");
    for (int i = 0; i < 5000; i++) wh_buf_puts(&b, "abcdefgh");
    wh_buf_puts(&b, "\"},[");
    for (int i = 0; i < 3000; i++) wh_buf_printf(&b, "%d,1.5,\"x\",", i);
    wh_buf_puts(&b, "[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]");
    size_t keep = b.len;
    const char *tails[] = {",{\"a\":1,\"a\":2}]]", ",\"\\uD800\"]]", ",1,]]", ",1", ",\"\xc0\x80\"]]", "]] x"};
    for (size_t k = 0; k < sizeof tails / sizeof tails[0]; k++) {
        b.len = keep;
        wh_buf_puts(&b, tails[k]);
        wh_err e = WH_ERR_INIT;
        wh_json_doc *d = wh_json_parse(b.data, b.len, NULL, &e);
        wh_json_doc_free(d);
        if (d != NULL) {
            wh_buf_free(&b);
            WH_TEST_FAIL("accepted tail %zu", k);
        }
        if (e.code != WH_EJSON || strlen(e.msg) > 200) {
            wh_buf_free(&b);
            WH_TEST_FAIL("bad error for tail %zu: %s", k, e.msg);
        }
    }
    wh_buf_free(&b);
}

/* When two problems are present, the earlier one in the text is reported. */
static void test_first_error_wins(void) {
    REFUSED("[1,,\"\\uD800\"]", "invalid JSON at byte 4: parse error"); /* yajl's, earlier */
    REFUSED("[\"\\uD800\",,1]", "at byte 2: lone surrogate");         /* ours, earlier */
    REFUSED("[\"\\uD800\",[[[[[[[[[[]]]]]]]]]]]", "at byte 2: lone surrogate");
    REFUSED("[\"\xff\",{\"a\":1,\"a\":2}]", "at byte 2: invalid UTF-8");
    REFUSED("{\"a\":1,\"a\":2,\"b\":\"\\uDC00\"}", "at byte 7: duplicate key"); /* found second */
}

/* Random corruptions of a payload never crash; whatever is accepted writes
 * back to text that parses to the same text again. */
static void test_mutations(void) {
    static const char base[] =
        "{\"class\":\"W\",\"args\":[1,-2,3.5e2,\"\\u00e9\\ud83d\\ude00\",{\"k\":[true,false,null]}],"
        "\"jid\":\"abc\",\"at\":1700000000.5,\"s\":\"caf\xc3\xa9\\n\"}";
    static const char alphabet[] = "{}[],:\"\\u0123456789abcdefDdEe.-+ \t\ntrufalsn\x80\xc3\xed\xff\v";
    char t[sizeof base];
    for (int k = 0; k < 20000; k++) {
        memcpy(t, base, sizeof base);
        int edits = 1 + (int)(rng() % 3);
        for (int j = 0; j < edits; j++)
            t[rng() % (sizeof base - 1)] = alphabet[rng() % (sizeof alphabet - 1)];
        wh_err e = WH_ERR_INIT;
        wh_json_doc *d = wh_json_parse(t, sizeof base - 1, NULL, &e);
        if (d == NULL) {
            ASSERT_EQ_INT(e.code, WH_EJSON);
            continue;
        }
        wh_buf b1 = WH_BUF_INIT, b2 = WH_BUF_INIT;
        int rc = wh_json_write(&b1, wh_json_doc_root(d), NULL);
        wh_json_doc_free(d);
        wh_json_doc *d2 = rc == 0 ? wh_json_parse(b1.data, b1.len, NULL, &e) : NULL;
        if (d2) rc = wh_json_write(&b2, wh_json_doc_root(d2), NULL);
        wh_json_doc_free(d2);
        int ok = d2 != NULL && rc == 0 && b1.len == b2.len && memcmp(b1.data, b2.data, b1.len) == 0 &&
                 wh_json_utf8_valid(b1.data, b1.len);
        wh_buf_free(&b1);
        wh_buf_free(&b2);
        if (!ok) WH_TEST_FAIL("mutation %d: %.*s", k, (int)(sizeof base - 1), t);
    }
}

/* Number text is read and written with '.', whatever LC_NUMERIC says. */
static void test_locale_decimal_comma(void) {
    const char *locales[] = {"de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", "ru_RU.UTF-8"};
    const char *got = NULL;
    for (size_t i = 0; i < 4 && got == NULL; i++) got = setlocale(LC_NUMERIC, locales[i]);
    /* CMake generates de_DE.UTF-8 into the build tree (LOCPATH) from
     * Debian's `locales` sources, so this test always runs for real */
    if (got == NULL) WH_TEST_FAIL("no locale with a decimal comma (LOCPATH=%s)", getenv("LOCPATH") ? getenv("LOCPATH") : "unset");
    PARSED(d, "[1.5,2.25e1]");
    double a = wh_json_doc_root(d)->u.arr.items[0].u.f.d;
    double b2 = wh_json_doc_root(d)->u.arr.items[1].u.f.d;
    wh_json_doc_free(d);
    FLOAT_WRITES(0.5, "0.5");
    setlocale(LC_NUMERIC, "C");
    ASSERT_EQ_DBL(a, 1.5);
    ASSERT_EQ_DBL(b2, 22.5);
}

/* ---- the parse's memory bound ------------------------------------------ */

/* The shapes that cost the most tree per byte of text, about n bytes long. */
static char *worst_shape(int which, size_t n, const char **name) {
    static const char *names[] = {"[0,0,...]", "[[],[],...]", "[{},{},...]", "[\"\",\"\",...]",
                                  "[1e1,1e1,...]", "{\"a\":0,...} (distinct keys)",
                                  "60-deep [[[...]]] repeated", "[\"\\n\",...] (escapes)",
                                  "one string with escapes"};
    *name = names[which];
    wh_buf b = WH_BUF_INIT;
    static const char *items[] = {"0", "[]", "{}", "\"\"", "1e1", NULL, NULL, "\"\\n\""};
    if (which == 5) {
        wh_buf_putc(&b, '{');
        for (size_t k = 0; b.len < n; k++) wh_buf_printf(&b, "%s\"%zx\":0", k ? "," : "", k);
        wh_buf_putc(&b, '}');
    } else if (which == 6) {
        wh_buf_putc(&b, '[');
        while (b.len < n) {
            if (b.len > 1) wh_buf_putc(&b, ',');
            for (int i = 0; i < 60; i++) wh_buf_putc(&b, '[');
            for (int i = 0; i < 60; i++) wh_buf_putc(&b, ']');
        }
        wh_buf_putc(&b, ']');
    } else if (which == 8) {
        wh_buf_putc(&b, '"');
        while (b.len < n) wh_buf_puts(&b, "\\u00e9");
        wh_buf_putc(&b, '"');
    } else {
        wh_buf_putc(&b, '[');
        for (size_t k = 0; b.len < n; k++) {
            if (k) wh_buf_putc(&b, ',');
            wh_buf_puts(&b, items[which]);
        }
        wh_buf_putc(&b, ']');
    }
    return wh_buf_steal(&b);
}

/* A counting allocator: CMakeLists.txt links this test with
 * --wrap=malloc,realloc,free, so every block json.c (and yajl, through
 * json.c's allocator) takes is seen here, with malloc's own rounding. */
void *__real_malloc(size_t n);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);
void *__wrap_malloc(size_t n);
void *__wrap_realloc(void *p, size_t n);
void __wrap_free(void *p);
static long long heap_now, heap_peak;

void *__wrap_malloc(size_t n) {
    void *p = __real_malloc(n);
    if (p) heap_now += (long long)malloc_usable_size(p);
    if (heap_now > heap_peak) heap_peak = heap_now;
    return p;
}

void *__wrap_realloc(void *q, size_t n) {
    long long old = q ? (long long)malloc_usable_size(q) : 0;
    void *p = __real_realloc(q, n);
    if (p) { /* counted as if old and new were both held while it copies */
        heap_now += (long long)malloc_usable_size(p);
        if (heap_now > heap_peak) heap_peak = heap_now;
        heap_now -= old;
    }
    return p;
}

void __wrap_free(void *p) {
    if (p) heap_now -= (long long)malloc_usable_size(p);
    __real_free(p);
}

/* Parses text and returns the most heap it held at once, beyond what was
 * held before. */
static size_t parse_peak(const char *t, size_t len, wh_json_doc **out, wh_err *e) {
    long long base = heap_now;
    heap_peak = heap_now;
    *out = wh_json_parse(t, len, NULL, e);
    return (size_t)(heap_peak - base);
}

/* Each 1 MiB worst shape took 14x to 52x its size before the limit (the
 * tree alone 7x to 20x); now none takes more than 8x + 1 MiB, plus what
 * malloc rounds big blocks up to (a page each, counted here, not by json.c). */
static void test_parse_memory_bound(void) {
    ASSERT_EQ_INT(wh_json_parse_limit(1000), 8 * 1000 + (1 << 20));
    ASSERT_EQ_INT(wh_json_parse_limit(SIZE_MAX / 4), SIZE_MAX);
    for (int which = 0; which < 9; which++) {
        const char *name;
        char *t = worst_shape(which, 1 << 20, &name);
        size_t len = strlen(t);
        wh_err e = WH_ERR_INIT;
        wh_json_doc *d;
        size_t peak = parse_peak(t, len, &d, &e);
        size_t held = d ? wh_json_doc_alloc_bytes(d) : 0;
        wh_json_doc_free(d);
        wh_free(t);
        fprintf(stderr, "  %-32s %zu bytes: %s, peak %.1fx\n", name, len, d ? "parsed" : "refused",
                (double)peak / (double)len);
        if (peak > wh_json_parse_limit(len) + 64 * 1024)
            WH_TEST_FAIL("%s: the parse held %zu bytes for %zu of text", name, peak, len);
        if (d == NULL) {
            char want[128];
            snprintf(want, sizeof want, "a payload of %zu bytes needs more than %zu bytes to parse", len,
                     wh_json_parse_limit(len));
            if (strstr(e.msg, want) == NULL) WH_TEST_FAIL("%s: %s", name, e.msg);
        } else if (held > wh_json_parse_limit(len)) {
            WH_TEST_FAIL("%s: the tree holds %zu bytes for %zu of text", name, held, len);
        }
    }
    /* A payload of the usual shape fits in well under 8x. */
    wh_buf b = WH_BUF_INIT;
    wh_buf_puts(&b, "{\"class\":\"ReportWorker\",\"args\":[{\"users\":[");
    for (int k = 0; b.len < (1 << 20); k++)
        wh_buf_printf(&b, "%s{\"guid\":\"6f1c2a9e-%08d\",\"count\":%d}", k ? "," : "", k, k * 37);
    wh_buf_puts(&b, "]}],\"queue\":\"default\",\"jid\":\"0123456789abcdef01234567\"}");
    wh_err e = WH_ERR_INIT;
    wh_json_doc *d;
    size_t peak = parse_peak(b.data, b.len, &d, &e);
    if (d == NULL) WH_TEST_FAIL("usual shape refused: %s", e.msg);
    size_t held = wh_json_doc_alloc_bytes(d);
    wh_json_doc_free(d);
    fprintf(stderr, "  usual shape %zu bytes: peak %.1fx, tree %.1fx\n", b.len, (double)peak / (double)b.len,
            (double)held / (double)b.len);
    if (held > 6 * b.len) WH_TEST_FAIL("usual shape: %zu bytes of tree for %zu of text", held, b.len);
    wh_buf_free(&b);
}

int main(void) {
    RUN(test_every_type);
    RUN(test_top_level_scalars);
    RUN(test_int64_edges);
    RUN(test_int64_in_array);
    RUN(test_int64_beyond);
    RUN(test_int64_random);
    RUN(test_floats_keep_raw);
    RUN(test_string_escapes);
    RUN(test_nul_in_strings_and_keys);
    RUN(test_invalid_utf8_refused);
    RUN(test_lone_surrogates_refused);
    RUN(test_bad_escapes_refused);
    RUN(test_scan_every_position);
    RUN(test_duplicate_keys);
    RUN(test_duplicate_keys_large);
    RUN(test_depth_limit);
    RUN(test_depth_100000);
    RUN(test_parse_memory_bound);
    RUN(test_max_bytes);
    RUN(test_syntax_refused);
    RUN(test_long_string);
    RUN(test_utf8_api);
    RUN(test_write_round_trip);
    RUN(test_write_compacts);
    RUN(test_write_escapes);
    RUN(test_write_normalizes_escapes);
    RUN(test_write_hand_floats);
    RUN(test_write_non_finite_refused);
    RUN(test_write_ints);
    RUN(test_hand_built);
    RUN(test_errors_mid_parse);
    RUN(test_first_error_wins);
    RUN(test_mutations);
    RUN(test_locale_decimal_comma);
    return TEST_REPORT();
}
