/* test_runner.c -- the acceptance criterion of the job runner: handed a raw
 * Sidekiq-shaped payload ({"class":...,"args":[...],"jid":...}, as
 * BackgroundQueue hands it), the core refuses bad arguments in C before any
 * Lua runs, with the argument path in the message, and runs perform for good
 * ones. A temp app (config/test.yaml and the scripts in workers/) is loaded through
 * wh_config_load and wh_catalog_load, exactly as the host does.
 *
 * "Before any Lua runs" is proven twice: perform increments a global that
 * existed when the script loaded (read back from the VM's lua_State), and
 * appends a line to a file in the temp dir; after a refused payload neither
 * has changed.
 * SPDX-License-Identifier: MIT
 */
#include <dirent.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/catalog.h"
#include "app/job.h"
#include "app/runner.h"
#include "config/config.h"
#include "core/log.h"
#include "core/mem.h"
#include "lua/vm.h"
#include "test.h"

/* ---- the temp app ----------------------------------------------------------- */

static char root[256];

static void write_file(const char *rel, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    FILE *f = fopen(path, "w");
    if (f == NULL) abort();
    fputs(text, f);
    fclose(f);
}

/* Lines in <root>/<rel>; 0 when the file does not exist. */
static int count_lines(const char *rel) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    FILE *f = fopen(path, "r");
    if (f == NULL) return 0;
    int n = 0, c;
    while ((c = fgetc(f)) != EOF)
        if (c == '\n') n++;
    fclose(f);
    return n;
}

#define HEADER "local wh = require 'workerhost'\n"

static void make_app(void) {
    snprintf(root, sizeof root, "/tmp/wh_test_runner_XXXXXX");
    if (mkdtemp(root) == NULL) abort();
    char d[512];
    snprintf(d, sizeof d, "%s/config", root);
    mkdir(d, 0755);
    snprintf(d, sizeof d, "%s/workers", root);
    mkdir(d, 0755);
    write_file("config/test.yaml", "workers:\n  mode: ForegroundBlocking\n");

    /* Greeter: named arguments with nesting; records what perform saw */
    char greeter[2048];
    snprintf(greeter, sizeof greeter,
             HEADER
             "local t = wh.types\n"
             "CALLS = 0\n"
             "SEEN = false\n"
             "return wh.worker {\n"
             "  args = { name = 'string', count = 'integer?', items = t.array(t.object{ id = 'integer' }):optional() },\n"
             "  perform = function(args, job)\n"
             "    CALLS = CALLS + 1\n"
             "    local f = assert(io.open('%s/greeter.log', 'a'))\n"
             "    f:write(args.name, '\\n')\n"
             "    f:close()\n"
             "    SEEN = table.concat({ args.name, tostring(args.count), tostring(args.items and #args.items),\n"
             "      job.jid, job.class, job.queue, string.format('%%.2f', job.created_at),\n"
             "      string.format('%%.2f', job.enqueued_at), tostring(job.retry_count) }, '|')\n"
             "  end,\n"
             "}\n",
             root);
    write_file("workers/greeter.lua", greeter);

    /* Adder: positional arguments */
    write_file("workers/adder.lua",
               HEADER
               "CALLS_ADDER = 0\n"
               "SUM = false\n"
               "return wh.worker { queue = 'math', args = { 'integer', 'integer?' }, perform = function(args)\n"
               "  CALLS_ADDER = CALLS_ADDER + 1\n"
               "  SUM = args[1] + (args[2] or 100)\n"
               "end }\n");

    /* Defaults: what perform receives for absent and null arguments */
    write_file("workers/defaults.lua",
               HEADER
               "local t = wh.types\n"
               "DEFAULTS_SEEN = false\n"
               "return wh.worker { args = { n = t.integer:default(3), s = 'string?', v = 'any', "
               "l = t.array('integer'):default({}) },\n"
               "  perform = function(args)\n"
               "    DEFAULTS_SEEN = table.concat({ math.type(args.n) .. ':' .. tostring(args.n), tostring(args.s),\n"
               "      args.v == wh.null and 'wh.null' or tostring(args.v), type(args.l) .. ':' .. #args.l }, '|')\n"
               "  end }\n");

    /* Boom: raises from a helper on line 3 */
    write_file("workers/boom.lua",
               HEADER
               "local function explode(what)\n"
               "  error('kaboom: ' .. what)\n"
               "end\n"
               "return wh.worker { args = { what = 'string' }, perform = function(args)\n"
               "  explode(args.what)\n"
               "end }\n");
}

/* ---- loading, parsing, running -------------------------------------------- */

typedef struct env {
    wh_config *cfg;
    wh_catalog *cat;
    wh_vm *vm;
} env;

static int env_open(env *e, wh_err *err) {
    memset(e, 0, sizeof *e);
    wh_config_source src = {root, "test", NULL};
    int rc = wh_config_load(&e->cfg, &src, err);
    if (rc) return rc;
    rc = wh_catalog_load(e->cfg, &e->cat, err);
    if (rc) return rc;
    e->vm = wh_catalog_new_vm(e->cat, e->cfg, NULL, err);
    return e->vm ? 0 : err->code;
}

static void env_close(env *e) {
    wh_vm_free(e->vm);
    wh_catalog_release(e->cat);
    wh_config_free(e->cfg);
}

/* A constructor that fails reports its real code when the caller passes no
 * wh_err (it once fell back to a fixed WH_ESCRIPT). */
static void test_error_code_without_err(void) {
    wh_config *cfg = NULL;
    wh_config_source src = {root, "test", NULL};
    wh_err err;
    if (wh_config_load(&cfg, &src, &err) != 0) WH_TEST_FAIL("config: %s", err.msg);
    cfg->memory_limit = 16 * 1024; /* no VM fits: out of memory, not a script error */
    wh_catalog *cat = NULL;
    int rc = wh_catalog_load(cfg, &cat, &err);
    ASSERT_EQ_INT(rc, WH_ENOMEM);
    ASSERT_EQ_INT(wh_catalog_load(cfg, &cat, NULL), WH_ENOMEM);
    wh_config_free(cfg);
}

/* Reads a global of the VM as an integer (-1 if not an integer). */
static long long global_int(env *e, const char *name) {
    lua_State *L = wh_vm_state(e->vm);
    lua_getglobal(L, name);
    long long v = lua_isinteger(L, -1) ? (long long)lua_tointeger(L, -1) : -1;
    lua_pop(L, 1);
    return v;
}

/* Copies a string global of the VM into out ("(not a string)" otherwise). */
static void global_str(env *e, const char *name, char *out, size_t n) {
    lua_State *L = wh_vm_state(e->vm);
    lua_getglobal(L, name);
    snprintf(out, n, "%s", lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(not a string)");
    lua_pop(L, 1);
}

/* Parses the payload and runs it. Returns the runner's rc, or the parse
 * error's code (with *parsed false). traceback kept in res. */
static int perform(env *e, const char *payload, wh_run_result *res, bool *parsed) {
    memset(res, 0, sizeof *res);
    wh_json_limits lim = {e->cfg->max_payload_bytes, 0};
    wh_job *job = wh_job_parse(payload, strlen(payload), &lim, &res->err);
    *parsed = job != NULL;
    if (job == NULL) return res->rc = res->err.code;
    wh_runner_perform(e->vm, job, e->cfg->timeout, res);
    wh_job_free(job);
    return res->rc;
}

#define OPEN_ENV(e)                                                            \
    env e;                                                                     \
    do {                                                                       \
        wh_err oerr_;                                                          \
        if (env_open(&e, &oerr_) != 0) {                                       \
            env_close(&e);                                                     \
            WH_TEST_FAIL("cannot load the app: %s", oerr_.msg);                \
        }                                                                      \
    } while (0)

/* A payload that must be refused in C: rc, exact message, nothing ran. */
static void expect_refused(const char *payload, int code, const char *message) {
    OPEN_ENV(e);
    int lines0 = count_lines("greeter.log");
    wh_run_result res;
    bool parsed;
    int rc = perform(&e, payload, &res, &parsed);
    long long calls = global_int(&e, "CALLS"), calls_adder = global_int(&e, "CALLS_ADDER");
    int top = lua_gettop(wh_vm_state(e.vm));
    env_close(&e);
    wh_free(res.traceback);
    if (rc != code) WH_TEST_FAIL("%s: rc %d, expected %d (%s)", payload, rc, code, res.err.msg);
    ASSERT_EQ_INT(res.err.code, code);
    ASSERT_STREQ(res.err.msg, message);
    ASSERT(res.traceback == NULL);
    /* no Lua ran: the counters and the file are untouched */
    ASSERT_EQ_INT(calls, 0);
    ASSERT_EQ_INT(calls_adder, 0);
    ASSERT_EQ_INT(count_lines("greeter.log"), lines0);
    ASSERT_EQ_INT(top, 0);
}

/* ---- tests --------------------------------------------------------------------- */

static void test_good_payload_runs(void) {
    OPEN_ENV(e);
    int lines0 = count_lines("greeter.log");
    const char *payload =
        "{\"class\":\"Greeter\",\"args\":[{\"name\":\"Ann\",\"count\":2,\"items\":[{\"id\":1},{\"id\":2}]}],"
        "\"retry\":true,\"queue\":\"mail\",\"jid\":\"0123456789abcdef01234567\","
        "\"created_at\":1700000000.5,\"enqueued_at\":1700000001.25,\"retry_count\":2}";
    wh_run_result res;
    bool parsed;
    int rc = perform(&e, payload, &res, &parsed);
    wh_free(res.traceback);
    long long calls = global_int(&e, "CALLS");
    char seen[512];
    global_str(&e, "SEEN", seen, sizeof seen);
    env_close(&e);
    if (rc != 0) WH_TEST_FAIL("rc %d: %s", rc, res.err.msg);
    ASSERT_EQ_INT(calls, 1);
    ASSERT_EQ_INT(count_lines("greeter.log"), lines0 + 1);
    ASSERT_STREQ(seen, "Ann|2|2|0123456789abcdef01234567|Greeter|mail|1700000000.50|1700000001.25|2");
}

/* Payload without queue/jid/timestamps: the job table still has its fields. */
static void test_minimal_payload(void) {
    OPEN_ENV(e);
    wh_run_result res;
    bool parsed;
    int rc = perform(&e, "{\"class\":\"Greeter\",\"args\":[{\"name\":\"Bo\"}]}", &res, &parsed);
    wh_free(res.traceback);
    char seen[512];
    global_str(&e, "SEEN", seen, sizeof seen);
    env_close(&e);
    if (rc != 0) WH_TEST_FAIL("rc %d: %s", rc, res.err.msg);
    ASSERT_STREQ(seen, "Bo|nil|nil||Greeter|default|0.00|0.00|nil");
}

static void test_positional_payload(void) {
    OPEN_ENV(e);
    wh_run_result res;
    bool parsed;
    int rc1 = perform(&e, "{\"class\":\"Adder\",\"args\":[1,2],\"jid\":\"aaaaaaaaaaaaaaaaaaaaaaaa\"}", &res, &parsed);
    long long sum1 = global_int(&e, "SUM");
    int rc2 = perform(&e, "{\"class\":\"Adder\",\"args\":[5],\"jid\":\"aaaaaaaaaaaaaaaaaaaaaaab\"}", &res, &parsed);
    long long sum2 = global_int(&e, "SUM");
    int rc3 = perform(&e, "{\"class\":\"Adder\",\"args\":[5,1.5],\"jid\":\"aaaaaaaaaaaaaaaaaaaaaaac\"}", &res, &parsed);
    long long calls = global_int(&e, "CALLS_ADDER");
    env_close(&e);
    ASSERT_EQ_INT(rc1, 0);
    ASSERT_EQ_INT(sum1, 3);
    ASSERT_EQ_INT(rc2, 0);
    ASSERT_EQ_INT(sum2, 105);
    ASSERT_EQ_INT(rc3, WH_EARGS);
    ASSERT_STREQ(res.err.msg, "Adder: args[2]: expected integer?, got number 1.5");
    ASSERT_EQ_INT(calls, 2); /* the refused third job did not run */
}

static void test_bad_types_refused_before_lua(void) {
    expect_refused("{\"class\":\"Greeter\",\"args\":[{\"name\":5}],\"jid\":\"0123456789abcdef01234567\"}",
                   WH_EARGS, "Greeter: args.name: expected string, got integer");
    if (wh_test_current_failed) return;
    expect_refused("{\"class\":\"Greeter\",\"args\":[{\"name\":\"a\",\"count\":1.0}],\"jid\":\"x\"}",
                   WH_EARGS, "Greeter: args.count: expected integer?, got number 1.0");
    if (wh_test_current_failed) return;
    expect_refused("{\"class\":\"Greeter\",\"args\":[{\"name\":\"a\",\"items\":[{\"id\":1},{\"id\":\"2\"}]}]}",
                   WH_EARGS, "Greeter: args.items[2].id: expected integer, got string");
    if (wh_test_current_failed) return;
    expect_refused("{\"class\":\"Greeter\",\"args\":[{\"name\":\"a\",\"count\":9223372036854775808}]}",
                   WH_EARGS, "Greeter: args.count: expected integer?, got an integer outside the 64-bit range");
    if (wh_test_current_failed) return;
    expect_refused("{\"class\":\"Greeter\",\"args\":[{\"name\":\"a\",\"nmae\":\"typo\"}]}",
                   WH_EARGS, "Greeter: args.nmae: unknown field (known: count, items, name)");
    if (wh_test_current_failed) return;
    expect_refused("{\"class\":\"Greeter\",\"args\":[]}", WH_EARGS,
                   "Greeter: args.name: missing (expected string)");
    if (wh_test_current_failed) return;
    expect_refused("{\"class\":\"Greeter\",\"args\":[\"Ann\"]}", WH_EARGS,
                   "Greeter: args: expected one object of named arguments, got string");
    if (wh_test_current_failed) return;
    expect_refused("{\"class\":\"Adder\",\"args\":[]}", WH_EARGS, "Adder: args: expected 1 to 2 arguments, got 0");
    if (wh_test_current_failed) return;
    expect_refused("{\"class\":\"Adder\",\"args\":[{\"a\":1}]}", WH_EARGS, "Adder: args[1]: expected integer, got object");
}

static void test_payload_not_json(void) {
    const char *bad[] = {"{\"class\":", "", "not json", "{\"class\":\"Greeter\",\"args\":[{\"name\":\"a\"}]} x",
                         "{\"class\":\"Greeter\",\"class\":\"Adder\",\"args\":[1]}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        wh_err err;
        wh_err_clear(&err);
        wh_job *job = wh_job_parse(bad[i], strlen(bad[i]), NULL, &err);
        if (job != NULL) {
            wh_job_free(job);
            WH_TEST_FAIL("parsed: %s", bad[i]);
        }
        if (err.code != WH_EJSON) WH_TEST_FAIL("%s: code %d: %s", bad[i], err.code, err.msg);
        ASSERT_CONTAINS(err.msg, "invalid JSON");
    }
}

static void test_payload_shape_refused(void) {
    const struct { const char *payload, *msg; } cases[] = {
        {"{\"args\":[{\"name\":\"a\"}],\"jid\":\"0123456789abcdef01234567\"}", "\"class\" must be a non-empty string"},
        {"{\"class\":5,\"args\":[]}", "\"class\" must be a non-empty string"},
        {"{\"class\":\"\",\"args\":[]}", "\"class\" must be a non-empty string"},
        {"{\"class\":\"Greeter\",\"args\":{\"name\":\"a\"}}", "Greeter: job payload: \"args\" must be an array"},
        {"{\"class\":\"Greeter\"}", "Greeter: job payload: \"args\" must be an array"},
        {"{\"class\":\"Greeter\",\"args\":null}", "Greeter: job payload: \"args\" must be an array"},
        {"[\"Greeter\",[]]", "job payload: expected a JSON object, got array"},
        {"\"Greeter\"", "job payload: expected a JSON object, got string"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        wh_err err;
        wh_err_clear(&err);
        wh_job *job = wh_job_parse(cases[i].payload, strlen(cases[i].payload), NULL, &err);
        if (job != NULL) {
            wh_job_free(job);
            WH_TEST_FAIL("parsed: %s", cases[i].payload);
        }
        if (err.code != WH_EARGS) WH_TEST_FAIL("%s: code %d: %s", cases[i].payload, err.code, err.msg);
        ASSERT_CONTAINS(err.msg, cases[i].msg);
    }
}

static void test_unknown_class(void) {
    expect_refused("{\"class\":\"Nope\",\"args\":[],\"jid\":\"0123456789abcdef01234567\"}", WH_ENOCLASS,
                   "unknown worker class \"Nope\"");
    if (wh_test_current_failed) return;
    /* class names are exact */
    expect_refused("{\"class\":\"greeter\",\"args\":[{\"name\":\"a\"}]}", WH_ENOCLASS,
                   "unknown worker class \"greeter\"");
}

static void test_perform_raising(void) {
    OPEN_ENV(e);
    wh_run_result res;
    bool parsed;
    int rc = perform(&e, "{\"class\":\"Boom\",\"args\":[{\"what\":\"now\"}],\"jid\":\"0123456789abcdef01234567\"}",
                     &res, &parsed);
    char tb[4096];
    snprintf(tb, sizeof tb, "%s", res.traceback ? res.traceback : "(none)");
    wh_free(res.traceback);
    /* the VM survives and runs the next job */
    wh_run_result res2;
    int rc2 = perform(&e, "{\"class\":\"Adder\",\"args\":[1,1]}", &res2, &parsed);
    wh_free(res2.traceback);
    int top = lua_gettop(wh_vm_state(e.vm));
    env_close(&e);
    ASSERT_EQ_INT(rc, WH_EJOB);
    ASSERT_EQ_INT(res.err.code, WH_EJOB);
    ASSERT_STREQ(res.err.msg, "workers/boom.lua:3: kaboom: now");
    ASSERT_CONTAINS(tb, "stack traceback");
    ASSERT_CONTAINS(tb, "workers/boom.lua:3");
    ASSERT_CONTAINS(tb, "workers/boom.lua:6");
    ASSERT_EQ_INT(rc2, 0);
    ASSERT_EQ_INT(top, 0);
    ASSERT_STREQ(wh_runner_outcome_name(rc), "failed");
}

static void test_defaults_and_nulls_reach_perform(void) {
    OPEN_ENV(e);
    const struct { const char *payload, *seen; } cases[] = {
        {"{\"class\":\"Defaults\",\"args\":[{\"v\":1}]}", "integer:3|nil|1|table:0"},
        {"{\"class\":\"Defaults\",\"args\":[{\"n\":null,\"s\":null,\"v\":null,\"l\":null}]}",
         "integer:3|nil|wh.null|table:0"},
        {"{\"class\":\"Defaults\",\"args\":[{\"n\":7,\"s\":\"x\",\"v\":\"y\",\"l\":[1,2]}]}", "integer:7|x|y|table:2"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        wh_run_result res;
        bool parsed;
        int rc = perform(&e, cases[i].payload, &res, &parsed);
        wh_free(res.traceback);
        char seen[256];
        global_str(&e, "DEFAULTS_SEEN", seen, sizeof seen);
        if (rc != 0 || strcmp(seen, cases[i].seen) != 0) {
            env_close(&e);
            WH_TEST_FAIL("%s: rc %d (%s)\n    got:      \"%s\"\n    expected: \"%s\"", cases[i].payload, rc,
                         res.err.msg, seen, cases[i].seen);
        }
    }
    env_close(&e);
}

static void test_unknown_payload_fields_ignored(void) {
    OPEN_ENV(e);
    const char *payload =
        "{\"class\":\"Greeter\",\"args\":[{\"name\":\"Cy\"}],\"jid\":\"0123456789abcdef01234567\","
        "\"bid\":\"b-123abc\",\"tags\":[\"urgent\",{\"x\":1}],\"backtrace\":true,\"unique_for\":3600,"
        "\"error_message\":null,\"failed_at\":1700000000.1,\"custom\":{\"deep\":[1,2,{\"a\":null}]},"
        "\"wh_schema\":\"ffffffffffffffff\",\"lock\":9223372036854775808}";
    wh_run_result res;
    bool parsed;
    int rc = perform(&e, payload, &res, &parsed);
    wh_free(res.traceback);
    long long calls = global_int(&e, "CALLS");
    env_close(&e);
    if (rc != 0) WH_TEST_FAIL("rc %d: %s", rc, res.err.msg);
    ASSERT_EQ_INT(calls, 1);
}

/* A payload that is read back out is byte for byte what came in (retries
 * rewrite it; unknown fields and number text must survive). */
static void test_payload_written_back_unchanged(void) {
    const char *payload =
        "{\"class\":\"Greeter\",\"args\":[{\"name\":\"Cy\",\"count\":1}],\"jid\":\"0123456789abcdef01234567\","
        "\"bid\":\"b\",\"at\":1.10,\"big\":12345678901234567890,\"f\":1e2}";
    wh_err err;
    wh_job *job = wh_job_parse(payload, strlen(payload), NULL, &err);
    if (job == NULL) WH_TEST_FAIL("parse: %s", err.msg);
    wh_buf b = WH_BUF_INIT;
    int rc = wh_job_write(job, &b, &err);
    char out[1024];
    snprintf(out, sizeof out, "%s", wh_buf_cstr(&b));
    wh_buf_free(&b);
    wh_job_free(job);
    ASSERT_EQ_INT(rc, 0);
    ASSERT_STREQ(out, payload);
}

int main(void) {
    alarm(300);
    wh_log_setup(WH_LOG_ERROR, WH_LOG_TEXT);
    make_app();
    RUN(test_error_code_without_err);
    RUN(test_good_payload_runs);
    RUN(test_minimal_payload);
    RUN(test_positional_payload);
    RUN(test_bad_types_refused_before_lua);
    RUN(test_payload_not_json);
    RUN(test_payload_shape_refused);
    RUN(test_unknown_class);
    RUN(test_perform_raising);
    RUN(test_defaults_and_nulls_reach_perform);
    RUN(test_unknown_payload_fields_ignored);
    RUN(test_payload_written_back_unchanged);
    wh_test_rm_tree(root);
    return TEST_REPORT();
}
