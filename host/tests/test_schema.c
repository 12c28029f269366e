/* test_schema.c -- argument schemas compiled from real worker definitions
 * (wh.worker{args = ...} run in a plain lua_State) and the C check of job
 * payload `args`: shapes, type errors with their exact paths and messages at
 * every nesting level, unknown fields, int64 edges, bounds, enums, nulls,
 * the schema hash and the one-line description.
 * SPDX-License-Identifier: MIT
 */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "json/json.h"
#include "lua/lmodule.h"
#include "lua/lworker.h"
#include "schema/schema.h"
#include "test.h"

/* ---- compiling schemas from Lua source ---------------------------------- */

/* Every schema made by compile() is kept here and released at the end of
 * main, so a failed assertion (which returns early) leaks nothing. */
static wh_schema *keep[256];
static size_t nkeep;
static char compile_error[1024];

/* Runs `local wh = require "workerhost"; local t = wh.types; return
 * wh.worker{<spec>, perform = function() end}` in a fresh plain lua_State and
 * returns the worker's schema (retained, so it outlives the state), or NULL
 * with the Lua error in compile_error. */
static wh_schema *compile(const char *spec) {
    compile_error[0] = '\0';
    lua_State *L = luaL_newstate();
    if (L == NULL) abort();
    luaL_openlibs(L);
    wh_lmodule_preload(L);
    wh_buf src = WH_BUF_INIT;
    wh_buf_printf(&src,
                  "local wh = require \"workerhost\"\n"
                  "local t = wh.types\n"
                  "return wh.worker{%s%sperform = function() end}\n",
                  spec, spec[0] ? ", " : "");
    wh_schema *s = NULL;
    if (luaL_loadbuffer(L, src.data, src.len, "=spec") != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
        snprintf(compile_error, sizeof compile_error, "%s", lua_tostring(L, -1));
    } else {
        wh_lworker_info info;
        if (wh_lworker_info_get(L, -1, &info) != 0 || info.schema == NULL) {
            snprintf(compile_error, sizeof compile_error, "not a worker definition");
        } else {
            s = wh_schema_retain(info.schema);
            if (nkeep < sizeof keep / sizeof keep[0]) keep[nkeep++] = s;
            else abort();
        }
    }
    wh_buf_free(&src);
    lua_close(L); /* the retained schema must survive the state */
    return s;
}

/* Parses json and checks it as a payload `args` value. Returns the check's
 * code (or WH_EJSON when the text does not parse); the message is in *err. */
static int check(const wh_schema *s, const char *json, wh_err *err) {
    wh_err_clear(err);
    wh_json_doc *doc = wh_json_parse(json, strlen(json), NULL, err);
    if (doc == NULL) return WH_EJSON;
    int rc = wh_schema_check_payload_args(s, wh_json_doc_root(doc), err);
    wh_json_doc_free(doc);
    return rc;
}

#define COMPILE(var, spec)                                                     \
    wh_schema *var = compile(spec);                                            \
    if (var == NULL) WH_TEST_FAIL("cannot compile {%s}: %s", spec, compile_error)

#define ACCEPT(s, json)                                                        \
    do {                                                                       \
        wh_err e_;                                                             \
        int rc_ = check((s), (json), &e_);                                     \
        if (rc_ != 0)                                                          \
            WH_TEST_FAIL("%s refused (rc %d): %s", json, rc_, e_.msg);         \
    } while (0)

#define REFUSE(s, json, message)                                               \
    do {                                                                       \
        wh_err e_;                                                             \
        int rc_ = check((s), (json), &e_);                                     \
        if (rc_ != WH_EARGS)                                                   \
            WH_TEST_FAIL("%s: expected WH_EARGS, got rc %d (%s)", json, rc_,    \
                         rc_ ? e_.msg : "accepted");                           \
        ASSERT_EQ_INT(e_.code, WH_EARGS);                                      \
        ASSERT_STREQ(e_.msg, message);                                         \
    } while (0)

/* ---- shapes --------------------------------------------------------------- */

static void test_named_args(void) {
    COMPILE(s, "args = { user_guid = 'string', count = 'integer?' }");
    ASSERT_EQ_INT(wh_schema_shape(s), WH_ARGS_NAMED);
    ACCEPT(s, "[{\"user_guid\":\"u1\",\"count\":3}]");
    ACCEPT(s, "[{\"user_guid\":\"u1\"}]");
    ACCEPT(s, "[{\"count\":3,\"user_guid\":\"\"}]");
    REFUSE(s, "[{\"user_guid\":5}]", "args.user_guid: expected string, got integer");
    REFUSE(s, "[{\"user_guid\":\"u\",\"count\":\"3\"}]", "args.count: expected integer?, got string");
    REFUSE(s, "[{}]", "args.user_guid: missing (expected string)");
    REFUSE(s, "[{\"count\":1}]", "args.user_guid: missing (expected string)");
    REFUSE(s, "[]", "args.user_guid: missing (expected string)");
    REFUSE(s, "[{\"user_guid\":\"u\"},{}]", "args: expected one object of named arguments, got 2 values");
    REFUSE(s, "[\"u\"]", "args: expected one object of named arguments, got string");
    REFUSE(s, "[[\"u\"]]", "args: expected one object of named arguments, got array");
    REFUSE(s, "{\"user_guid\":\"u\"}", "args: expected an array in the job payload, got object");
    REFUSE(s, "\"u\"", "args: expected an array in the job payload, got string");
    REFUSE(s, "null", "args: expected an array in the job payload, got null");
}

static void test_named_all_optional_accepts_empty(void) {
    COMPILE(s, "args = { a = 'string?', b = t.integer:optional(), c = t.number:default(1.5) }");
    ACCEPT(s, "[]");
    ACCEPT(s, "[{}]");
    ACCEPT(s, "[{\"a\":\"x\"}]");
    ACCEPT(s, "[{\"a\":null,\"b\":null,\"c\":null}]");
    REFUSE(s, "[{},{}]", "args: expected one object of named arguments, got 2 values");
}

static void test_no_args(void) {
    COMPILE(none, "");
    ASSERT_EQ_INT(wh_schema_shape(none), WH_ARGS_NONE);
    COMPILE(empty, "args = {}");
    ASSERT_EQ_INT(wh_schema_shape(empty), WH_ARGS_NONE);
    const wh_schema *both[] = {none, empty};
    for (size_t i = 0; i < 2; i++) {
        ACCEPT(both[i], "[]");
        ACCEPT(both[i], "[{}]");
        REFUSE(both[i], "[1]", "args: expected no arguments, got 1");
        REFUSE(both[i], "[{\"a\":1}]", "args: expected no arguments, got 1");
        REFUSE(both[i], "[{},{}]", "args: expected no arguments, got 2");
        REFUSE(both[i], "{}", "args: expected an array in the job payload, got object");
    }
}

static void test_positional_args(void) {
    COMPILE(s, "args = { 'string', 'integer?' }");
    ASSERT_EQ_INT(wh_schema_shape(s), WH_ARGS_POSITIONAL);
    ASSERT_EQ_INT(wh_schema_npositional(s), 2);
    ACCEPT(s, "[\"a\"]");
    ACCEPT(s, "[\"a\",2]");
    ACCEPT(s, "[\"a\",null]");
    REFUSE(s, "[]", "args: expected 1 to 2 arguments, got 0");
    REFUSE(s, "[\"a\",1,2]", "args: expected 1 to 2 arguments, got 3");
    REFUSE(s, "[1]", "args[1]: expected string, got integer");
    REFUSE(s, "[null]", "args[1]: expected string, got null");
    REFUSE(s, "[{\"x\":1}]", "args[1]: expected string, got object");
    REFUSE(s, "[\"a\",true]", "args[2]: expected integer?, got boolean");

    COMPILE(req, "args = { 'string', 'integer' }");
    ACCEPT(req, "[\"a\",1]");
    REFUSE(req, "[\"a\"]", "args: expected 2 arguments, got 1");
    REFUSE(req, "[\"a\",1,2]", "args: expected 2 arguments, got 3");
    REFUSE(req, "[\"a\",1.5]", "args[2]: expected integer, got number 1.5");

    COMPILE(one, "args = { 'integer' }");
    REFUSE(one, "[]", "args: expected 1 argument, got 0");
    REFUSE(one, "[{}]", "args[1]: expected integer, got object");

    COMPILE(opt, "args = { 'integer?', t.string:optional() }");
    ACCEPT(opt, "[]");
    ACCEPT(opt, "[null,null]");
    REFUSE(opt, "[1,\"a\",3]", "args: expected 0 to 2 arguments, got 3");
}

/* ---- types at every nesting level --------------------------------------- */

static const char nested_spec[] =
    "args = {\n"
    "  user = t.object{ id = 'integer', name = 'string', tags = t.array('string') },\n"
    "  items = t.array(t.object{ id = 'integer', qty = 'integer?' }),\n"
    "  matrix = t.array(t.array('number')),\n"
    "  flag = 'boolean?',\n"
    "}";

static void test_nested_type_errors(void) {
    COMPILE(s, nested_spec);
    const char *good = "[{\"user\":{\"id\":1,\"name\":\"n\",\"tags\":[\"a\",\"b\"]},"
                       "\"items\":[{\"id\":1},{\"id\":2,\"qty\":3}],\"matrix\":[[1,2.5],[]],\"flag\":false}]";
    ACCEPT(s, good);
    REFUSE(s, "[{\"user\":{\"id\":\"1\",\"name\":\"n\",\"tags\":[]},\"items\":[],\"matrix\":[]}]",
           "args.user.id: expected integer, got string");
    REFUSE(s, "[{\"user\":{\"id\":1,\"name\":\"n\",\"tags\":[\"a\",true]},\"items\":[],\"matrix\":[]}]",
           "args.user.tags[2]: expected string, got boolean");
    REFUSE(s, "[{\"user\":{\"id\":1,\"name\":\"n\",\"tags\":[]},\"items\":[{\"id\":1},{\"id\":\"2\"}],\"matrix\":[]}]",
           "args.items[2].id: expected integer, got string");
    REFUSE(s, "[{\"user\":{\"id\":1,\"name\":\"n\",\"tags\":[]},\"items\":[{\"id\":1,\"qty\":1.5}],\"matrix\":[]}]",
           "args.items[1].qty: expected integer?, got number 1.5");
    REFUSE(s, "[{\"user\":{\"id\":1,\"name\":\"n\",\"tags\":[]},\"items\":[{\"qty\":1}],\"matrix\":[]}]",
           "args.items[1].id: missing (expected integer)");
    REFUSE(s, "[{\"user\":{\"id\":1,\"name\":\"n\",\"tags\":[]},\"items\":[],\"matrix\":[[1],[2,\"3\"]]}]",
           "args.matrix[2][2]: expected number, got string");
    REFUSE(s, "[{\"user\":[],\"items\":[],\"matrix\":[]}]",
           "args.user: expected {id: integer, name: string, tags: array(string)}, got array");
    REFUSE(s, "[{\"user\":{\"id\":1,\"name\":\"n\",\"tags\":[]},\"items\":{},\"matrix\":[]}]",
           "args.items: expected array({id: integer, qty: integer?}), got object");
    REFUSE(s, "[{\"user\":{\"id\":1,\"name\":\"n\",\"tags\":[]},\"items\":[],\"matrix\":[],\"flag\":0}]",
           "args.flag: expected boolean?, got integer");
    REFUSE(s, "[{\"user\":{\"id\":1,\"name\":\"n\",\"tags\":[]},\"items\":[],\"matrix\":[],\"flag\":\"true\"}]",
           "args.flag: expected boolean?, got string");
}

static void test_unknown_fields(void) {
    COMPILE(s, nested_spec);
    REFUSE(s, "[{\"user\":{\"id\":1,\"name\":\"n\",\"tags\":[]},\"items\":[],\"matrix\":[],\"bogus\":1}]",
           "args.bogus: unknown field (known: flag, items, matrix, user)");
    REFUSE(s, "[{\"user\":{\"id\":1,\"name\":\"n\",\"tags\":[],\"email\":\"e\"},\"items\":[],\"matrix\":[]}]",
           "args.user.email: unknown field (known: id, name, tags)");
    REFUSE(s, "[{\"user\":{\"id\":1,\"name\":\"n\",\"tags\":[]},\"items\":[{\"id\":1,\"sku\":\"x\"}],\"matrix\":[]}]",
           "args.items[1].sku: unknown field (known: id, qty)");

    COMPILE(nofields, "args = { meta = t.object{} }");
    ACCEPT(nofields, "[{\"meta\":{}}]");
    REFUSE(nofields, "[{\"meta\":{\"x\":1}}]", "args.meta.x: unknown field (known: none)");
}

static void test_allow_unknown(void) {
    /* top level: allow_unknown_args; nested objects keep their own rule */
    COMPILE(top, "allow_unknown_args = true, args = { a = 'string', o = t.object{ id = 'integer' } }");
    ACCEPT(top, "[{\"a\":\"x\",\"o\":{\"id\":1},\"extra\":{\"anything\":[1,2]}}]");
    REFUSE(top, "[{\"a\":1,\"o\":{\"id\":1},\"extra\":1}]", "args.a: expected string, got integer");
    REFUSE(top, "[{\"a\":\"x\",\"o\":{\"id\":1,\"x\":2}}]", "args.o.x: unknown field (known: id)");
    REFUSE(top, "[{\"o\":{\"id\":1}}]", "args.a: missing (expected string)");

    /* nested: allow_unknown on the object type only */
    COMPILE(nested, "args = { o = t.object({ id = 'integer' }, { allow_unknown = true }) }");
    ACCEPT(nested, "[{\"o\":{\"id\":1,\"x\":2,\"y\":null}}]");
    REFUSE(nested, "[{\"o\":{\"id\":\"1\",\"x\":2}}]", "args.o.id: expected integer, got string");
    REFUSE(nested, "[{\"o\":{\"id\":1},\"x\":2}]", "args.x: unknown field (known: o)");
}

/* ---- numbers -------------------------------------------------------------- */

static void test_int64_edges(void) {
    COMPILE(s, "args = { n = 'integer' }");
    ACCEPT(s, "[{\"n\":-9223372036854775808}]");
    ACCEPT(s, "[{\"n\":9223372036854775807}]");
    ACCEPT(s, "[{\"n\":0}]");
    ACCEPT(s, "[{\"n\":-0}]");
    REFUSE(s, "[{\"n\":9223372036854775808}]",
           "args.n: expected integer, got an integer outside the 64-bit range");
    REFUSE(s, "[{\"n\":-9223372036854775809}]",
           "args.n: expected integer, got an integer outside the 64-bit range");
    REFUSE(s, "[{\"n\":100000000000000000000000000000}]",
           "args.n: expected integer, got an integer outside the 64-bit range");
    REFUSE(s, "[{\"n\":1.0}]", "args.n: expected integer, got number 1.0");
    REFUSE(s, "[{\"n\":1e2}]", "args.n: expected integer, got number 1e2");
    REFUSE(s, "[{\"n\":-0.0}]", "args.n: expected integer, got number -0.0");
    REFUSE(s, "[{\"n\":\"1\"}]", "args.n: expected integer, got string");

    COMPILE(pos, "args = { 'integer' }");
    REFUSE(pos, "[9223372036854775808]", "args[1]: expected integer, got an integer outside the 64-bit range");

    COMPILE(num, "args = { x = 'number' }");
    ACCEPT(num, "[{\"x\":1.0}]");
    ACCEPT(num, "[{\"x\":1}]");
    ACCEPT(num, "[{\"x\":-2.5e-3}]");
    ACCEPT(num, "[{\"x\":9223372036854775808}]");
    ACCEPT(num, "[{\"x\":-9223372036854775808}]");
    REFUSE(num, "[{\"x\":1e400}]", "args.x: number out of range: 1e400");
    REFUSE(num, "[{\"x\":\"1.0\"}]", "args.x: expected number, got string");
    REFUSE(num, "[{\"x\":null}]", "args.x: expected number, got null");
}

static void test_min_max(void) {
    COMPILE(s, "args = { n = t.integer{ min = 1, max = 10 }, neg = t.integer{ min = -5 }, "
               "x = t.number{ min = 0.5, max = 2.5 } }");
    ACCEPT(s, "[{\"n\":1,\"neg\":-5,\"x\":0.5}]");
    ACCEPT(s, "[{\"n\":10,\"neg\":9223372036854775807,\"x\":2.5}]");
    ACCEPT(s, "[{\"n\":5,\"neg\":0,\"x\":2}]");
    REFUSE(s, "[{\"n\":0,\"neg\":0,\"x\":1}]", "args.n: expected an integer >= 1, got 0");
    REFUSE(s, "[{\"n\":11,\"neg\":0,\"x\":1}]", "args.n: expected an integer <= 10, got 11");
    REFUSE(s, "[{\"n\":-9223372036854775808,\"neg\":0,\"x\":1}]",
           "args.n: expected an integer >= 1, got -9223372036854775808");
    REFUSE(s, "[{\"n\":1,\"neg\":-6,\"x\":1}]", "args.neg: expected an integer >= -5, got -6");
    REFUSE(s, "[{\"n\":1,\"neg\":0,\"x\":0.25}]", "args.x: expected a number >= 0.5, got 0.25");
    REFUSE(s, "[{\"n\":1,\"neg\":0,\"x\":3}]", "args.x: expected a number <= 2.5, got 3");
    REFUSE(s, "[{\"n\":1,\"neg\":0,\"x\":2.75}]", "args.x: expected a number <= 2.5, got 2.75");
    /* the bound is checked after the type */
    REFUSE(s, "[{\"n\":5.0,\"neg\":0,\"x\":1}]", "args.n: expected integer(min=1, max=10), got number 5.0");
}

static void test_string_length_in_characters(void) {
    COMPILE(s, "args = { s = t.string{ min_len = 2, max_len = 3 }, one = t.string{ max_len = 1 }:optional() }");
    ACCEPT(s, "[{\"s\":\"ab\"}]");
    ACCEPT(s, "[{\"s\":\"abc\"}]");
    ACCEPT(s, "[{\"s\":\"h\xC3\xA9\xC3\xA9\"}]");             /* héé: 3 characters, 5 bytes */
    ACCEPT(s, "[{\"s\":\"\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\"}]"); /* 日本語: 3 characters, 9 bytes */
    ACCEPT(s, "[{\"s\":\"\xF0\x9F\x98\x80\xF0\x9F\x98\x80\"}]"); /* two emoji: 8 bytes */
    ACCEPT(s, "[{\"s\":\"\\u00e9\\u00e9\"}]");                 /* escapes count as characters */
    ACCEPT(s, "[{\"s\":\"ab\",\"one\":\"\xC3\xA9\"}]");
    REFUSE(s, "[{\"s\":\"\xC3\xA9\"}]", "args.s: expected at least 2 characters, got 1");
    REFUSE(s, "[{\"s\":\"\"}]", "args.s: expected at least 2 characters, got 0");
    REFUSE(s, "[{\"s\":\"abcd\"}]", "args.s: expected at most 3 characters, got 4");
    REFUSE(s, "[{\"s\":\"\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9Ex\"}]", "args.s: expected at most 3 characters, got 4");
    REFUSE(s, "[{\"s\":\"ab\",\"one\":\"xy\"}]", "args.one: expected at most 1 character, got 2");
}

static void test_items(void) {
    COMPILE(s, "args = { a = t.array('integer', { min_items = 1, max_items = 2 }), "
               "b = t.array('any', { min_items = 1 }):optional() }");
    ACCEPT(s, "[{\"a\":[1]}]");
    ACCEPT(s, "[{\"a\":[1,2]}]");
    ACCEPT(s, "[{\"a\":[1],\"b\":[null]}]");
    REFUSE(s, "[{\"a\":[]}]", "args.a: expected at least 1 item, got 0");
    REFUSE(s, "[{\"a\":[1,2,3]}]", "args.a: expected at most 2 items, got 3");
    REFUSE(s, "[{\"a\":[1,\"x\"]}]", "args.a[2]: expected integer, got string");
    REFUSE(s, "[{\"a\":[1],\"b\":[]}]", "args.b: expected at least 1 item, got 0");
    REFUSE(s, "[{\"a\":\"1\"}]", "args.a: expected array(integer, min_items=1, max_items=2), got string");
}

static void test_enum(void) {
    COMPILE(s, "args = { level = t.enum{ 'low', 'high' }, n = t.enum({ 1, 2, 3 }, { optional = true }) }");
    ACCEPT(s, "[{\"level\":\"low\"}]");
    ACCEPT(s, "[{\"level\":\"high\",\"n\":3}]");
    ACCEPT(s, "[{\"level\":\"high\",\"n\":null}]");
    REFUSE(s, "[{\"level\":\"mid\"}]", "args.level: expected enum(\"low\", \"high\"), got \"mid\"");
    REFUSE(s, "[{\"level\":\"LOW\"}]", "args.level: expected enum(\"low\", \"high\"), got \"LOW\"");
    REFUSE(s, "[{\"level\":1}]", "args.level: expected enum(\"low\", \"high\"), got 1");
    REFUSE(s, "[{\"level\":null}]", "args.level: expected enum(\"low\", \"high\"), got null");
    REFUSE(s, "[{\"level\":\"low\",\"n\":4}]", "args.n: expected enum(1, 2, 3)?, got 4");
    REFUSE(s, "[{\"level\":\"low\",\"n\":2.0}]", "args.n: expected enum(1, 2, 3)?, got 2.0");
    REFUSE(s, "[{\"level\":\"low\",\"n\":\"2\"}]", "args.n: expected enum(1, 2, 3)?, got \"2\"");
    /* a long value is cut in the message */
    REFUSE(s, "[{\"level\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}]",
           "args.level: expected enum(\"low\", \"high\"), got "
           "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"... (45 bytes)");
}

static void test_null_optional_vs_required(void) {
    COMPILE(s, "args = { req = 'string', opt = 'string?', v = 'any', d = t.integer:default(3), "
               "o = t.object({ x = 'integer' }):optional(), l = t.array('integer?') }");
    ACCEPT(s, "[{\"req\":\"r\",\"v\":null,\"l\":[]}]");
    ACCEPT(s, "[{\"req\":\"r\",\"opt\":null,\"v\":1,\"d\":null,\"o\":null,\"l\":[1,null]}]");
    ACCEPT(s, "[{\"req\":\"r\",\"v\":{\"any\":[\"thing\"]},\"o\":{\"x\":1},\"l\":[]}]");
    REFUSE(s, "[{\"req\":null,\"v\":1,\"l\":[]}]", "args.req: expected string, got null");
    REFUSE(s, "[{\"req\":\"r\",\"l\":[]}]", "args.v: missing (expected any)");
    REFUSE(s, "[{\"req\":\"r\",\"v\":1}]", "args.l: missing (expected array(integer?))");
    REFUSE(s, "[{\"req\":\"r\",\"v\":1,\"l\":null}]", "args.l: expected array(integer?), got null");
    REFUSE(s, "[{\"req\":\"r\",\"v\":1,\"l\":[],\"d\":\"3\"}]", "args.d: expected integer = 3, got string");
    REFUSE(s, "[{\"req\":\"r\",\"v\":1,\"l\":[],\"o\":{\"x\":null}}]", "args.o.x: expected integer, got null");
}

/* ---- compile errors (a bad declaration never becomes a schema) ----------- */

static void test_compile_errors(void) {
    ASSERT(compile("args = { count = 'int' }") == NULL);
    ASSERT_CONTAINS(compile_error, "args.count: unknown type \"int\"");
    ASSERT(compile("args = { 'integer?', 'string' }") == NULL);
    ASSERT_CONTAINS(compile_error, "args[2]: a required positional argument cannot follow an optional one");
    ASSERT(compile("args = { 'string', name = 'string' }") == NULL);
    ASSERT_CONTAINS(compile_error, "a table mixing named fields and positional types is not allowed");
    ASSERT(compile("args = { o = { id = 'integer' } }") == NULL);
    ASSERT_CONTAINS(compile_error, "args.o: a plain table is not a type");
    ASSERT(compile("args = { n = t.integer{ min = 1 }:default(0) }") == NULL);
    ASSERT_CONTAINS(compile_error, "args.n (default): expected an integer >= 1, got 0");
    ASSERT(compile("args = { s = t.string{ maxlen = 3 } }") == NULL);
    ASSERT_CONTAINS(compile_error, "args.s: unknown option \"maxlen\" for string");
    ASSERT(compile("args = { a = t.array('string', { min_items = 3, max_items = 2 }) }") == NULL);
    ASSERT_CONTAINS(compile_error, "min_items is greater than max_items");
    ASSERT(compile("args = { n = t.integer{ min = 1.5 } }") == NULL);
    ASSERT_CONTAINS(compile_error, "option min must be an integer");
}

/* ---- hash and description ------------------------------------------------ */

static bool is_hash(const char *h) {
    if (strlen(h) != 16) return false;
    for (const char *p = h; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) return false;
    return true;
}

static void test_hash(void) {
    COMPILE(a, "args = { a = 'string', b = t.integer{ max = 5 }, c = t.array(t.object{ x = 'number', y = 'any' }) }");
    COMPILE(same, "args = { c = t.array(t.object{ y = 'any', x = 'number' }), b = t.integer{ max = 5 }, a = 'string' }");
    COMPILE(type_changed, "args = { a = 'string', b = t.number{ max = 5 }, c = t.array(t.object{ x = 'number', y = 'any' }) }");
    COMPILE(deep_changed, "args = { a = 'string', b = t.integer{ max = 5 }, c = t.array(t.object{ x = 'integer', y = 'any' }) }");
    COMPILE(bound_changed, "args = { a = 'string', b = t.integer{ max = 6 }, c = t.array(t.object{ x = 'number', y = 'any' }) }");
    COMPILE(opt_changed, "args = { a = 'string?', b = t.integer{ max = 5 }, c = t.array(t.object{ x = 'number', y = 'any' }) }");
    COMPILE(unknown_changed, "allow_unknown_args = true, args = { a = 'string', b = t.integer{ max = 5 }, "
                             "c = t.array(t.object{ x = 'number', y = 'any' }) }");
    COMPILE(positional, "args = { 'string' }");
    COMPILE(positional2, "args = { 'integer' }");
    COMPILE(none, "");
    /* a field name that reads like two fields in a naive description */
    COMPILE(two_fields, "args = { a = 'integer', b = 'string' }");
    COMPILE(one_odd_name, "args = { ['a: integer, b'] = 'string' }");

    const wh_schema *all[] = {a, same, type_changed, deep_changed, bound_changed, opt_changed,
                              unknown_changed, positional, positional2, none, two_fields, one_odd_name};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (!is_hash(wh_schema_hash(all[i]))) WH_TEST_FAIL("not 16 hex: \"%s\"", wh_schema_hash(all[i]));
    ASSERT_STREQ(wh_schema_hash(a), wh_schema_hash(same));
    /* every schema but `same` differs from every other */
    for (size_t i = 2; i < sizeof all / sizeof all[0]; i++) {
        if (strcmp(wh_schema_hash(a), wh_schema_hash(all[i])) == 0)
            WH_TEST_FAIL("schema %zu has the same hash as the original", i);
        for (size_t j = i + 1; j < sizeof all / sizeof all[0]; j++)
            if (strcmp(wh_schema_hash(all[i]), wh_schema_hash(all[j])) == 0)
                WH_TEST_FAIL("schemas %zu and %zu share a hash", i, j);
    }
}

static void expect_describe(const char *spec, const char *want) {
    wh_schema *s = compile(spec);
    if (s == NULL) WH_TEST_FAIL("cannot compile {%s}: %s", spec, compile_error);
    wh_buf b = WH_BUF_INIT;
    wh_schema_describe(s, &b);
    char got[1024];
    snprintf(got, sizeof got, "%s", wh_buf_cstr(&b));
    wh_buf_free(&b);
    ASSERT_STREQ(got, want);
}

static void test_describe(void) {
    const struct { const char *spec, *want; } cases[] = {
        {"", "none"},
        {"args = {}", "none"},
        {"args = { user_guid = 'string', count = 'integer?' }", "{count: integer?, user_guid: string}"},
        {"args = { 'string', 'integer?' }", "(string, integer?)"},
        {"args = { 'any', t.boolean:optional() }", "(any, boolean?)"},
        {"allow_unknown_args = true, args = { a = 'string' }", "{a: string, ...}"},
        {"args = { a = t.array(t.string{ max_len = 64 }, { max_items = 10 }) }",
         "{a: array(string(max_len=64), max_items=10)}"},
        {"args = { e = t.enum{ 'x', 'y' }, n = t.integer{ min = 1, max = 5 } }",
         "{e: enum(\"x\", \"y\"), n: integer(min=1, max=5)}"},
        {"args = { d = t.integer:default(3), f = t.number{ min = 0.5 }:optional() }",
         "{d: integer = 3, f: number(min=0.5)?}"},
        {"args = { o = t.object({ id = 'integer', b = t.string{ min_len = 1 } }, { allow_unknown = true }) }",
         "{o: {b: string(min_len=1), id: integer, ...}}"},
        {"args = { o = t.object({}, { allow_unknown = true }), p = t.object{} }", "{o: {...}, p: {}}"},
        {"args = { ['a: integer, b'] = 'string', ['my-key'] = 'integer' }",
         "{\"a: integer, b\": string, \"my-key\": integer}"},
        {"args = { l = t.array('integer?', { min_items = 1 }):default({1}) }",
         "{l: array(integer?, min_items=1) = [1]}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        expect_describe(cases[i].spec, cases[i].want);
        if (wh_test_current_failed) return;
    }
}

/* The call-shaped check (C API, wh.enqueue) reports the same paths. */
static void test_call_args_same_paths(void) {
    COMPILE(s, nested_spec);
    const char *bad = "{\"user\":{\"id\":1,\"name\":\"n\",\"tags\":[]},\"items\":[{\"id\":1},{\"id\":\"2\"}],\"matrix\":[]}";
    wh_err e;
    wh_json_doc *doc = wh_json_parse(bad, strlen(bad), NULL, &e);
    ASSERT(doc != NULL);
    int rc = wh_schema_check_call_args(s, wh_json_doc_root(doc), &e);
    wh_json_doc_free(doc);
    ASSERT_EQ_INT(rc, WH_EARGS);
    ASSERT_STREQ(e.msg, "args.items[2].id: expected integer, got string");
}

int main(void) {
    RUN(test_named_args);
    RUN(test_named_all_optional_accepts_empty);
    RUN(test_no_args);
    RUN(test_positional_args);
    RUN(test_nested_type_errors);
    RUN(test_unknown_fields);
    RUN(test_allow_unknown);
    RUN(test_int64_edges);
    RUN(test_min_max);
    RUN(test_string_length_in_characters);
    RUN(test_items);
    RUN(test_enum);
    RUN(test_null_optional_vs_required);
    RUN(test_compile_errors);
    RUN(test_hash);
    RUN(test_describe);
    RUN(test_call_args_same_paths);
    for (size_t i = 0; i < nkeep; i++) wh_schema_release(keep[i]);
    return TEST_REPORT();
}
