/* SPDX-License-Identifier: MIT
 * test_jtop.c -- unit tests for json/jtop.c: rewriting and reading
 * top-level members of JSON text without a tree, and that its validation
 * agrees with wh_json_parse. */
#include <stdint.h>
#include <string.h>

#include "core/buf.h"
#include "json/json.h"
#include "json/jtop.h"
#include "test.h"

#define NOW "1700000123.456789"

/* Rewrites text (a literal) with enqueued_at = NOW and compares with want. */
#define REWRITES(text, want)                                                          \
    do {                                                                              \
        wh_buf o_ = WH_BUF_INIT;                                                      \
        wh_err e_ = WH_ERR_INIT;                                                      \
        int rc_ = wh_jtop_rewrite((text), sizeof(text) - 1, "enqueued_at", NOW, strlen(NOW), &o_, &e_); \
        if (rc_ != 0) {                                                               \
            wh_buf_free(&o_);                                                         \
            WH_TEST_FAIL("refused %s: %s", #text, e_.msg);                            \
        }                                                                             \
        int same_ = o_.len == sizeof(want) - 1 && memcmp(o_.data, (want), o_.len) == 0; \
        if (!same_) {                                                                 \
            fprintf(stderr, "  wrote:    %s\n  expected: %s\n", wh_buf_cstr(&o_), (want)); \
            wh_buf_free(&o_);                                                         \
            WH_TEST_FAIL("rewrite of %s differs", #text);                             \
        }                                                                             \
        wh_buf_free(&o_);                                                             \
    } while (0)

/* Asserts text (len bytes) is refused by both functions with WH_EJSON and a
 * message containing needle. */
#define REFUSED_N(text, len, needle)                                                  \
    do {                                                                              \
        wh_buf o_ = WH_BUF_INIT;                                                      \
        wh_err e_ = WH_ERR_INIT;                                                      \
        int rc_ = wh_jtop_rewrite((text), (len), "enqueued_at", NOW, strlen(NOW), &o_, &e_); \
        wh_buf_free(&o_);                                                             \
        if (rc_ == 0) WH_TEST_FAIL("rewrite accepted %s", #text);                     \
        ASSERT_EQ_INT(rc_, WH_EJSON);                                                 \
        ASSERT_CONTAINS(e_.msg, (needle));                                            \
        wh_err_clear(&e_);                                                            \
        rc_ = wh_jtop_string((text), (len), "queue", &o_, &e_);                       \
        wh_buf_free(&o_);                                                             \
        ASSERT_EQ_INT(rc_, WH_EJSON);                                                 \
        ASSERT_CONTAINS(e_.msg, (needle));                                            \
    } while (0)
#define REFUSED(lit, needle) REFUSED_N((lit), sizeof(lit) - 1, (needle))

static void test_replaces_in_place(void) {
    REWRITES("{\"class\":\"W\",\"enqueued_at\":1.5,\"queue\":\"q\"}",
             "{\"class\":\"W\",\"enqueued_at\":" NOW ",\"queue\":\"q\"}");
    /* any type of old value, whitespace around it kept */
    REWRITES("{ \"enqueued_at\" : [1, {\"x\": 2}] , \"b\":2 }", "{ \"enqueued_at\" : " NOW " , \"b\":2 }");
    REWRITES("{\"enqueued_at\":null}", "{\"enqueued_at\":" NOW "}");
    REWRITES("\n {\"a\":{},\"enqueued_at\":\"x\"}\n", "\n {\"a\":{},\"enqueued_at\":" NOW "}\n");
    /* the key as written is kept, also when it is escaped */
    REWRITES("{\"enqueued\\u005fat\":1}", "{\"enqueued\\u005fat\":" NOW "}");
}

static void test_adds_when_absent(void) {
    REWRITES("{\"a\":1}", "{\"a\":1,\"enqueued_at\":" NOW "}");
    REWRITES("{}", "{\"enqueued_at\":" NOW "}");
    REWRITES("{ }", "{\"enqueued_at\":" NOW " }");
    REWRITES(" { \"a\" : 1 } ", " { \"a\" : 1,\"enqueued_at\":" NOW " } ");
    /* a key that only starts or ends like it is another key */
    REWRITES("{\"enqueued_a\":1,\"enqueued_att\":2,\"Enqueued_at\":3}",
             "{\"enqueued_a\":1,\"enqueued_att\":2,\"Enqueued_at\":3,\"enqueued_at\":" NOW "}");
}

static void test_nested_same_key_untouched(void) {
    REWRITES("{\"args\":[{\"enqueued_at\":1}],\"x\":{\"enqueued_at\":2,\"y\":{\"enqueued_at\":3}}}",
             "{\"args\":[{\"enqueued_at\":1}],\"x\":{\"enqueued_at\":2,\"y\":{\"enqueued_at\":3}}"
             ",\"enqueued_at\":" NOW "}");
    REWRITES("{\"args\":[{\"enqueued_at\":1}],\"enqueued_at\":0,\"z\":[[{\"enqueued_at\":[]}]]}",
             "{\"args\":[{\"enqueued_at\":1}],\"enqueued_at\":" NOW ",\"z\":[[{\"enqueued_at\":[]}]]}");
}

static void test_strings_and_numbers_kept(void) {
    /* strings that look like members, escapes of every kind */
    REWRITES("{\"s\":\"\\\"enqueued_at\\\":1}\",\"t\":\"\\\\\",\"u\":\"\\u00e9\\ud83d\\ude00\\/\\b\\f\\n\\r\\t\"}",
             "{\"s\":\"\\\"enqueued_at\\\":1}\",\"t\":\"\\\\\",\"u\":\"\\u00e9\\ud83d\\ude00\\/\\b\\f\\n\\r\\t\""
             ",\"enqueued_at\":" NOW "}");
    /* raw UTF-8 */
    REWRITES("{\"k\":\"h\xc3\xa9llo \xf0\x9f\x98\x80\"}", "{\"k\":\"h\xc3\xa9llo \xf0\x9f\x98\x80\",\"enqueued_at\":" NOW "}");
    /* numbers byte for byte, whatever a double would make of them */
    REWRITES("{\"a\":1.0000000000000001,\"b\":123456789012345678901234567890,\"c\":1E+2,\"d\":-0,\"e\":0.1e-7,"
             "\"f\":-9223372036854775808,\"enqueued_at\":1700000000.1234567}",
             "{\"a\":1.0000000000000001,\"b\":123456789012345678901234567890,\"c\":1E+2,\"d\":-0,\"e\":0.1e-7,"
             "\"f\":-9223372036854775808,\"enqueued_at\":" NOW "}");
}

static void test_other_keys_and_values(void) {
    wh_buf o = WH_BUF_INIT;
    wh_err e = WH_ERR_INIT;
    static const char in[] = "{\"a\":1}";
    ASSERT_EQ_INT(wh_jtop_rewrite(in, sizeof in - 1, "we\"ird", "{\"x\":[true,false,null]}", 23, &o, &e), 0);
    ASSERT_STREQ(wh_buf_cstr(&o), "{\"a\":1,\"we\\\"ird\":{\"x\":[true,false,null]}}");
    /* out is appended to */
    ASSERT_EQ_INT(wh_jtop_rewrite(in, sizeof in - 1, "a", "2", 1, &o, &e), 0);
    ASSERT_STREQ(wh_buf_cstr(&o), "{\"a\":1,\"we\\\"ird\":{\"x\":[true,false,null]}}{\"a\":2}");
    wh_buf_free(&o);
    /* the new value must be one JSON value */
    static const char *const bad_values[] = {"", " ", "1 2", "{", "01", "[1,]", "\"\\uD800\"", "nul"};
    for (size_t k = 0; k < sizeof bad_values / sizeof bad_values[0]; k++) {
        wh_err_clear(&e);
        int rc = wh_jtop_rewrite(in, sizeof in - 1, "a", bad_values[k], strlen(bad_values[k]), &o, &e);
        wh_buf_free(&o);
        if (rc != WH_EINVAL) WH_TEST_FAIL("value %s: rc %d", bad_values[k], rc);
        ASSERT_CONTAINS(e.msg, "wh_jtop_rewrite: the new value: invalid JSON");
    }
    ASSERT_EQ_INT(wh_jtop_rewrite(in, sizeof in - 1, NULL, "1", 1, &o, &e), WH_EINVAL);
}

static void test_read_string(void) {
    wh_buf v = WH_BUF_INIT;
    wh_err e = WH_ERR_INIT;
    static const char a[] = "{\"args\":[{\"queue\":\"inner\"}],\"queue\":\"critical\",\"x\":{\"queue\":\"deep\"}}";
    ASSERT_EQ_INT(wh_jtop_string(a, sizeof a - 1, "queue", &v, &e), 1);
    ASSERT_STREQ(wh_buf_cstr(&v), "critical");
    wh_buf_reset(&v);
    static const char b[] = "{\"qu\\u0065ue\":\"h\\u00e9\\n\\ud83d\\ude00\\u0000z\"}";
    ASSERT_EQ_INT(wh_jtop_string(b, sizeof b - 1, "queue", &v, &e), 1);
    ASSERT_EQ_INT(v.len, 10);
    ASSERT(memcmp(v.data, "h\xc3\xa9\n\xf0\x9f\x98\x80\0z", 10) == 0);
    wh_buf_reset(&v);
    static const char c[] = "{\"args\":[{\"queue\":\"inner\"}],\"queue\":5}";
    ASSERT_EQ_INT(wh_jtop_string(c, sizeof c - 1, "queue", &v, &e), 0);
    static const char d[] = "{\"args\":[],\"x\":{\"queue\":\"deep\"}}";
    ASSERT_EQ_INT(wh_jtop_string(d, sizeof d - 1, "queue", &v, &e), 0);
    ASSERT_EQ_INT(v.len, 0);
    static const char f[] = "{\"queue\":\"\"}";
    ASSERT_EQ_INT(wh_jtop_string(f, sizeof f - 1, "queue", &v, &e), 1);
    ASSERT_EQ_INT(v.len, 0);
    /* a valid string member followed by invalid text is an error */
    static const char g[] = "{\"queue\":\"q\",}";
    ASSERT_EQ_INT(wh_jtop_string(g, sizeof g - 1, "queue", &v, &e), WH_EJSON);
    wh_buf_free(&v);
}

static void test_invalid(void) {
    REFUSED("", "invalid JSON: empty input");
    REFUSED(" \n\t", "invalid JSON: empty input");
    REFUSED("[1]", "invalid JSON: the payload is an array, not an object");
    REFUSED("\"s\"", "invalid JSON: the payload is a string, not an object");
    REFUSED(" 1.5 ", "invalid JSON: the payload is a number, not an object");
    REFUSED("null", "invalid JSON: the payload is null, not an object");
    REFUSED("true", "the payload is a boolean");
    REFUSED("[1", "invalid JSON at byte 2: unexpected end of text");
    REFUSED("{", "invalid JSON at byte 1: expected a key");
    REFUSED("{\"a\"}", "invalid JSON at byte 4: expected ':'");
    REFUSED("{\"a\":}", "invalid JSON at byte 5: unexpected character");
    REFUSED("{\"a\":1,}", "invalid JSON at byte 7: expected a key");
    REFUSED("{\"a\":1 \"b\":2}", "invalid JSON at byte 7: expected ',' or '}'");
    REFUSED("{\"a\":[1,]}", "invalid JSON at byte 8: unexpected character");
    REFUSED("{\"a\":[1 2]}", "invalid JSON at byte 8: expected ',' or ']'");
    REFUSED("{\"a\":{\"b\"}}", "invalid JSON at byte 9: expected ':'");
    REFUSED("{\"a\":[}", "invalid JSON at byte 6: unexpected character");
    REFUSED("{\"a\":01}", "invalid JSON at byte 6: expected ',' or '}'");
    REFUSED("{\"a\":1.}", "invalid JSON at byte 5: invalid number");
    REFUSED("{\"a\":-}", "invalid JSON at byte 5: invalid number");
    REFUSED("{\"a\":1e}", "invalid JSON at byte 5: invalid number");
    REFUSED("{\"a\":.5}", "invalid JSON at byte 5: unexpected character");
    REFUSED("{\"a\":+1}", "invalid JSON at byte 5: unexpected character");
    REFUSED("{\"a\":tru}", "invalid JSON at byte 5: unexpected character");
    REFUSED("{\"a\":NaN}", "invalid JSON at byte 5: unexpected character");
    REFUSED("{\"a\":\"x}", "invalid JSON at byte 8: unterminated string");
    REFUSED("{\"a\":\"\\x\"}", "invalid JSON at byte 6: invalid escape in string");
    REFUSED("{\"a\":\"\\u12G4\"}", "invalid JSON at byte 6: invalid \\u escape");
    REFUSED("{\"a\":\"\\uD800\"}", "invalid JSON at byte 6: lone surrogate \\uD800");
    REFUSED("{\"a\":\"\\uD800\\u0041\"}", "invalid JSON at byte 6: lone surrogate \\uD800");
    REFUSED("{\"a\":\"\\uDC00\"}", "invalid JSON at byte 6: lone surrogate \\uDC00");
    REFUSED("{\"a\":\"\xc0\xaf\"}", "invalid JSON at byte 5: invalid UTF-8 in string");
    REFUSED("{\"a\":\"\xed\xa0\x80\"}", "invalid UTF-8 in string");
    REFUSED("{\"a\":\"\xf4\x90\x80\x80\"}", "invalid UTF-8 in string");
    REFUSED("{\"a\":\"\x01\"}", "invalid JSON at byte 6: control character in string");
    REFUSED_N("{\"a\":\"\0\"}", 9, "invalid JSON at byte 6: control character in string");
    REFUSED("{\"a\":1}x", "invalid JSON at byte 7: text after the value");
    REFUSED("{}{}", "invalid JSON at byte 2: text after the value");
    REFUSED("{}\v", "invalid JSON at byte 2: text after the value");
    REFUSED("{\"a\":1} /* c */", "invalid JSON at byte 8: text after the value");
    /* the key asked for, given twice: which one would be meant? */
    static const char dup[] = "{\"enqueued_at\":1,\"queue\":\"a\",\"enqueued_at\":2,\"queue\":\"b\"}";
    wh_buf o = WH_BUF_INIT;
    wh_err e = WH_ERR_INIT;
    ASSERT_EQ_INT(wh_jtop_rewrite(dup, sizeof dup - 1, "enqueued_at", "1", 1, &o, &e), WH_EJSON);
    ASSERT_CONTAINS(e.msg, "invalid JSON at byte 29: duplicate key \"enqueued_at\"");
    ASSERT_EQ_INT(wh_jtop_string(dup, sizeof dup - 1, "queue", &o, &e), WH_EJSON);
    ASSERT_CONTAINS(e.msg, "invalid JSON at byte 45: duplicate key \"queue\"");
    wh_buf_free(&o);
    /* a duplicate of another key is left to wh_json_parse on the worker thread */
    REWRITES("{\"a\":1,\"a\":2}", "{\"a\":1,\"a\":2,\"enqueued_at\":" NOW "}");
}

/* Nesting: exactly what wh_json_parse allows (64 levels, the object counted). */
static void test_depth_as_parse(void) {
    for (int levels = 62; levels <= 67; levels++) {
        wh_buf t = WH_BUF_INIT;
        wh_buf_puts(&t, "{\"a\":");
        for (int i = 1; i < levels; i++) wh_buf_putc(&t, '[');
        for (int i = 1; i < levels; i++) wh_buf_putc(&t, ']');
        wh_buf_putc(&t, '}');
        wh_err e = WH_ERR_INIT;
        wh_json_doc *d = wh_json_parse(t.data, t.len, NULL, &e);
        wh_buf o = WH_BUF_INIT;
        int rc = wh_jtop_rewrite(t.data, t.len, "enqueued_at", NOW, strlen(NOW), &o, &e);
        wh_json_doc_free(d);
        wh_buf_free(&o);
        wh_buf_free(&t);
        if ((d != NULL) != (rc == 0)) WH_TEST_FAIL("%d levels: parse %s, rewrite %d", levels, d ? "ok" : "refused", rc);
        if (rc) ASSERT_CONTAINS(e.msg, "nesting deeper than 64");
    }
}

/* ---- agreement with wh_json_parse on mutated payloads ---- */

static uint64_t rng_state = 0x2545F4914F6CDD1Du;
static uint64_t rng(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Du;
}

/* Checks one text: what wh_json_parse accepts as an object, the rewrite
 * accepts, and its output parses to the same members with enqueued_at set;
 * what the rewrite accepts, wh_json_parse accepts unless for a duplicate key. */
static int agree(const char *t, size_t len, char *why, size_t whylen) {
    wh_err pe = WH_ERR_INIT, re = WH_ERR_INIT;
    wh_json_doc *d = wh_json_parse(t, len, NULL, &pe);
    const wh_json *root = d ? wh_json_doc_root(d) : NULL;
    bool is_obj = root && root->type == WH_JSON_OBJECT;
    wh_buf o = WH_BUF_INIT;
    int rc = wh_jtop_rewrite(t, len, "enqueued_at", NOW, strlen(NOW), &o, &re);
    int ok = 1;
    if (is_obj && rc != 0) {
        snprintf(why, whylen, "parse accepted, rewrite refused: %s", re.msg);
        ok = 0;
    } else if (!is_obj && rc == 0 && strstr(pe.msg, "duplicate key") == NULL) {
        snprintf(why, whylen, "rewrite accepted, parse: %s", d ? "not an object" : pe.msg);
        ok = 0;
    } else if (is_obj) {
        wh_json_doc *d2 = wh_json_parse(o.data, o.len, NULL, &pe);
        const wh_json *r2 = d2 ? wh_json_doc_root(d2) : NULL;
        const wh_json *ea = wh_json_getz(r2, "enqueued_at");
        size_t want = root->u.obj.n + (wh_json_getz(root, "enqueued_at") ? 0 : 1);
        if (r2 == NULL || ea == NULL || ea->type != WH_JSON_FLOAT || ea->u.f.raw_len != strlen(NOW) ||
            r2->u.obj.n != want) {
            snprintf(why, whylen, "rewritten text wrong: %s", r2 ? wh_buf_cstr(&o) : pe.msg);
            ok = 0;
        }
        wh_json_doc_free(d2);
    }
    wh_buf_free(&o);
    wh_json_doc_free(d);
    return ok;
}

static void test_agrees_with_parse(void) {
    static const char *const seeds[] = {
        "{\"class\":\"W\",\"args\":[{\"user_guid\":\"foo\",\"n\":[1,2.5,-3e2,true,false,null]}],\"queue\":\"q\","
        "\"retry\":25,\"jid\":\"0123456789abcdef01234567\",\"created_at\":1700000000.5,\"enqueued_at\":1.0}",
        "{\"a\":\"\\u00e9\\ud83d\\ude00\\n\",\"b\":{\"c\":[[],{}],\"d\":\"h\xc3\xa9\"}, \"e\" : -0.0e+1 }",
        "[1,2]",
        "{\"x\":{\"y\":{\"z\":[\"\\\"\",\"\\\\\"]}}}",
    };
    static const char alphabet[] = "{}[]\":,\\ 0123456789.eE+-tfnrul\"ua\x01\x80\xc3\xa9";
    char why[1200];
    for (int round = 0; round < 20000; round++) {
        const char *seed = seeds[rng() % (sizeof seeds / sizeof seeds[0])];
        char t[512];
        size_t len = strlen(seed);
        memcpy(t, seed, len);
        int edits = 1 + (int)(rng() % 3);
        for (int k = 0; k < edits && len > 0; k++) {
            size_t at = rng() % len;
            char ch = alphabet[rng() % (sizeof alphabet - 1)];
            switch (rng() % 3) {
            case 0: t[at] = ch; break;                                           /* replace */
            case 1: memmove(t + at, t + at + 1, len - at - 1), len--; break;       /* delete */
            default:                                                             /* insert */
                if (len + 1 < sizeof t) memmove(t + at + 1, t + at, len - at), t[at] = ch, len++;
            }
        }
        if (!agree(t, len, why, sizeof why)) WH_TEST_FAIL("round %d, text %.*s: %s", round, (int)len, t, why);
    }
}

int main(void) {
    RUN(test_replaces_in_place);
    RUN(test_adds_when_absent);
    RUN(test_nested_same_key_untouched);
    RUN(test_strings_and_numbers_kept);
    RUN(test_other_keys_and_values);
    RUN(test_read_string);
    RUN(test_invalid);
    RUN(test_depth_as_parse);
    RUN(test_agrees_with_parse);
    return TEST_REPORT();
}
