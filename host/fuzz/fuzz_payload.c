/* SPDX-License-Identifier: MIT
 * fuzz_payload.c -- libFuzzer target for the payload path: the bytes a
 * worker thread gets from Redis, parsed as a job (wh_job_raw_init +
 * wh_job_materialize, with the default workers.max_payload_bytes) and
 * checked against the schemas of two small fixed workers (named and
 * positional arguments), as the runner does before any Lua runs; and the
 * scheduler's streaming rewrite (json/jtop.h) of the same bytes.
 *
 * Besides the sanitizers, it asserts (abort = a finding):
 *   - a parsed payload written back parses again and writes the same bytes;
 *   - wh_jtop_rewrite accepts every object wh_json_parse accepts, refuses
 *     what it refuses except duplicate keys, and its output parses with
 *     enqueued_at set; wh_jtop_string agrees with the tree on "queue".
 *
 * Build: cmake -DWH_FUZZ=ON with CC=clang (see CMakeLists.txt); run by
 * scripts/test from a copy of host/fuzz/corpus/payload. */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/job.h"
#include "core/buf.h"
#include "json/json.h"
#include "json/jtop.h"
#include "lua/lmodule.h"
#include "lua/lworker.h"
#include "schema/schema.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "fuzz_payload: check failed at line %d: %s\n", __LINE__, #cond); \
            abort();                                                                 \
        }                                                                            \
    } while (0)

static wh_schema *named, *positional;

/* The worker's schema, compiled by the real compiler (lua/lschema.c). */
static wh_schema *compile(const char *spec) {
    lua_State *L = luaL_newstate();
    CHECK(L != NULL);
    luaL_openlibs(L);
    wh_lmodule_preload(L);
    char src[2048];
    snprintf(src, sizeof src,
             "local wh = require \"workerhost\"\nlocal t = wh.types\n"
             "return wh.worker{name = \"FuzzWorker\", %s, perform = function() end}\n", spec);
    wh_schema *s = NULL;
    if (luaL_loadstring(L, src) == LUA_OK && lua_pcall(L, 0, 1, 0) == LUA_OK) {
        wh_lworker_info info;
        if (wh_lworker_info_get(L, -1, &info) == 0 && info.schema) s = wh_schema_retain(info.schema);
    } else {
        fprintf(stderr, "fuzz_payload: %s\n", lua_tostring(L, -1));
    }
    lua_close(L);
    CHECK(s != NULL);
    return s;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    named = compile("args = { user_guid = 'string', count = 'integer?',"
                    " level = t.enum{ 'low', 'high' },"
                    " ratio = t.number{ min = 0, max = 1 }:optional(),"
                    " name = t.string{ min_len = 1, max_len = 8 }:optional(),"
                    " tags = t.array('string', { max_items = 4 }):optional(),"
                    " user = t.object{ id = 'integer', extra = t.object({}, { allow_unknown = true }):optional() }:optional(),"
                    " any = 'any?', flag = 'boolean?' }");
    positional = compile("args = { 'string', 'integer', t.array(t.array('number')), 'boolean?' }");
    return 0;
}

/* Writes v, parses the text back and writes it again: the same bytes. */
static void round_trip(const wh_json *v) {
    wh_buf a = WH_BUF_INIT, b = WH_BUF_INIT;
    CHECK(wh_json_write(&a, v, NULL) == 0);
    wh_err e = WH_ERR_INIT;
    wh_json_doc *d = wh_json_parse(a.data, a.len, NULL, &e);
    if (d == NULL) fprintf(stderr, "fuzz_payload: written text does not parse: %s\n", e.msg);
    CHECK(d != NULL);
    CHECK(wh_json_write(&b, wh_json_doc_root(d), NULL) == 0);
    CHECK(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
    wh_json_doc_free(d);
    wh_buf_free(&a);
    wh_buf_free(&b);
}

static void check_jtop(const char *text, size_t len) {
    wh_err pe = WH_ERR_INIT, re = WH_ERR_INIT;
    wh_json_doc *d = wh_json_parse(text, len, NULL, &pe);
    const wh_json *root = d ? wh_json_doc_root(d) : NULL;
    bool is_obj = root && root->type == WH_JSON_OBJECT;
    static const char now[] = "1700000123.456789";
    wh_buf o = WH_BUF_INIT;
    int rc = wh_jtop_rewrite(text, len, "enqueued_at", now, sizeof now - 1, &o, &re);
    if (is_obj && rc != 0) fprintf(stderr, "fuzz_payload: rewrite refused what parse accepts: %s\n", re.msg);
    CHECK(!is_obj || rc == 0);
    if (!is_obj && rc == 0) {
        /* only a duplicate key (or the parse's memory limit) tells them apart */
        if (strstr(pe.msg, "duplicate key") == NULL && strstr(pe.msg, "bytes to parse") == NULL)
            fprintf(stderr, "fuzz_payload: rewrite accepted what parse refuses: %s\n", d ? "non-object" : pe.msg);
        CHECK(d == NULL && (strstr(pe.msg, "duplicate key") || strstr(pe.msg, "bytes to parse")));
    }
    if (is_obj) {
        wh_json_doc *d2 = wh_json_parse(o.data, o.len, NULL, &pe);
        CHECK(d2 != NULL);
        const wh_json *r2 = wh_json_doc_root(d2);
        const wh_json *ea = wh_json_getz(r2, "enqueued_at");
        CHECK(ea && ea->type == WH_JSON_FLOAT && ea->u.f.raw_len == sizeof now - 1);
        CHECK(r2->u.obj.n == root->u.obj.n + (wh_json_getz(root, "enqueued_at") ? 0 : 1));
        wh_json_doc_free(d2);

        const wh_json *q = wh_json_getz(root, "queue");
        wh_buf qs = WH_BUF_INIT;
        int found = wh_jtop_string(text, len, "queue", &qs, &re);
        bool is_str = q && q->type == WH_JSON_STRING;
        CHECK(found == (is_str ? 1 : 0));
        if (is_str) CHECK(qs.len == q->u.str.len && memcmp(qs.data ? qs.data : "", q->u.str.s, qs.len) == 0);
        wh_buf_free(&qs);
    }
    wh_buf_free(&o);
    wh_json_doc_free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    /* the worker thread's path */
    wh_job job;
    wh_job_raw_init(&job, text, size, "default");
    wh_json_limits lim = {1024 * 1024, 0};
    wh_err err = WH_ERR_INIT;
    if (wh_job_materialize(&job, &lim, &err) == 0) {
        CHECK(job.class_name != NULL && job.args != NULL && job.args->type == WH_JSON_ARRAY);
        wh_err e1 = WH_ERR_INIT, e2 = WH_ERR_INIT;
        int r1 = wh_schema_check_payload_args(named, job.args, &e1);
        int r2 = wh_schema_check_payload_args(positional, job.args, &e2);
        CHECK(r1 == 0 || r1 == WH_EARGS);
        CHECK(r2 == 0 || r2 == WH_EARGS);
        round_trip(job.payload);
        wh_buf out = WH_BUF_INIT;
        CHECK(wh_job_write(&job, &out, NULL) == 0);
        CHECK(out.len > 0);
        wh_buf_free(&out);
    } else {
        CHECK(err.code == WH_EJSON || err.code == WH_EARGS);
    }
    wh_job_free(&job);
    /* the scheduler's path */
    check_jtop(text, size);
    return 0;
}
