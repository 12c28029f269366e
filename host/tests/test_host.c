/* test_host.c -- the public C API (workerhost.h) in ForegroundBlocking mode
 * with a temp app: wh_host_new's errors, enqueue outcomes and their codes,
 * named and positional shapes, many threads sharing a host whose VM pool is
 * smaller than the number of callers (no VM ever runs two jobs at once), and
 * wh.enqueue inside a job, which runs the nested job at once.
 * Runs under ThreadSanitizer too (label "threads").
 * SPDX-License-Identifier: MIT
 */
#include <dirent.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "core/log.h"
#include "test.h"
#include "workerhost.h"

/* ---- temp apps ---------------------------------------------------------------- */

static char root[256];     /* the main app */
static char realroot[256]; /* root through realpath, as the config stores it */

static void write_in(const char *dir, const char *rel, const char *text) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    FILE *f = fopen(path, "w");
    if (f == NULL) abort();
    fputs(text, f);
    fclose(f);
}

static void make_dirs(const char *dir) {
    char d[1024];
    snprintf(d, sizeof d, "%s/config", dir);
    mkdir(d, 0755);
    snprintf(d, sizeof d, "%s/workers", dir);
    mkdir(d, 0755);
}

/* Lines in <root>/<rel>, 0 when absent; *last gets the last line (if asked). */
static int count_lines_last(const char *rel, char *last, size_t n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    if (last) last[0] = '\0';
    FILE *f = fopen(path, "r");
    if (f == NULL) return 0;
    int lines = 0;
    char buf[512];
    while (fgets(buf, sizeof buf, f)) {
        lines++;
        if (last) {
            buf[strcspn(buf, "\n")] = '\0';
            snprintf(last, n, "%s", buf);
        }
    }
    fclose(f);
    return lines;
}

static int count_lines(const char *rel) { return count_lines_last(rel, NULL, 0); }

#define HEADER "local wh = require 'workerhost'\n"

static void make_app(void) {
    snprintf(root, sizeof root, "/tmp/wh_test_host_XXXXXX");
    if (mkdtemp(root) == NULL) abort();
    char resolved[PATH_MAX];
    if (realpath(root, resolved) == NULL || strlen(resolved) >= sizeof realroot) abort();
    memcpy(realroot, resolved, strlen(resolved) + 1);
    make_dirs(root);
    write_in(root, "config/test.yaml",
             "workers:\n  mode: ForegroundBlocking\n  concurrency: 2\n  memory_limit: 64MiB\n  timeout: 10\n");
    char code[8192];

    snprintf(code, sizeof code,
             HEADER
             "return wh.worker { args = { name = 'string', count = 'integer?' }, perform = function(args, job)\n"
             "  local f = assert(io.open('%s/ran.log', 'a'))\n"
             "  f:write(args.name, ' ', tostring(args.count), ' ', job.jid, ' ', job.queue, '\\n')\n"
             "  f:close()\n"
             "end }\n",
             realroot);
    write_in(root, "workers/greeter.lua", code);

    snprintf(code, sizeof code,
             HEADER
             "return wh.worker { queue = 'math', args = { 'integer', 'integer' }, perform = function(args)\n"
             "  local f = assert(io.open('%s/ran.log', 'a'))\n"
             "  f:write('sum ', args[1] + args[2], '\\n')\n"
             "  f:close()\n"
             "end }\n",
             realroot);
    write_in(root, "workers/adder.lua", code);

    write_in(root, "workers/boom.lua",
             HEADER
             "local function explode(what)\n"
             "  error('kaboom: ' .. what)\n"
             "end\n"
             "return wh.worker { args = { what = 'string' }, perform = function(args)\n"
             "  explode(args.what)\n"
             "end }\n");

    write_in(root, "workers/tick.lua", HEADER "return wh.worker { perform = function() end }\n");

    write_in(root, "workers/spin.lua",
             HEADER "return wh.worker { timeout = 0.2, perform = function() while true do end end }\n");

    write_in(root, "workers/bomb.lua",
             HEADER "return wh.worker { perform = function()\n"
                    "  local t = {} for i = 1, 1e9 do t[i] = ('x'):rep(1048576 + i) end\n"
                    "end }\n");

    /* Busy: proves a VM never runs two jobs at once (the flag is per VM),
     * counts jobs in a file, and counts VMs as they load the script */
    snprintf(code, sizeof code,
             HEADER
             "do local f = assert(io.open('%s/vms.log', 'a')) f:write('vm\\n') f:close() end\n"
             "local busy = false\n"
             "return wh.worker { args = { n = 'integer' }, perform = function(args)\n"
             "  if busy then error('this VM is already running a job') end\n"
             "  busy = true\n"
             "  local x = 0\n"
             "  for i = 1, 20000 do x = x + i end\n"
             "  local f = assert(io.open('%s/busy.log', 'a'))\n"
             "  f:write(args.n, '\\n')\n"
             "  f:close()\n"
             "  for i = 1, 20000 do x = x - i end\n"
             "  if x ~= 0 or not busy then error('interleaved') end\n"
             "  busy = false\n"
             "end }\n",
             realroot, realroot);
    write_in(root, "workers/busy.lua", code);

    /* Parent / Child: nested wh.enqueue. SHARED exists when the scripts
     * load, so it is shared by both (and not dropped after a job). */
    write_in(root, "workers/child.lua",
             HEADER
             "SHARED = SHARED or { child_runs = 0 }\n"
             "return wh.worker { args = { n = 'integer' }, perform = function(args, job)\n"
             "  SHARED.child_runs = SHARED.child_runs + 1\n"
             "  SHARED.last_n = args.n\n"
             "  SHARED.last_jid = job.jid\n"
             "end }\n");
    write_in(root, "workers/parent.lua",
             HEADER
             "SHARED = SHARED or { child_runs = 0 }\n"
             "return wh.worker { args = { n = 'integer' }, perform = function(args, job)\n"
             "  local before = SHARED.child_runs\n"
             "  local jid, ok, err = wh.enqueue('Child', { n = args.n })\n"
             "  assert(type(jid) == 'string' and #jid == 24 and jid:match('^%x+$'), 'jid: ' .. tostring(jid))\n"
             "  assert(ok == true and err == nil, 'child failed: ' .. tostring(err))\n"
             "  assert(SHARED.child_runs == before + 1, 'the child did not run at once')\n"
             "  assert(SHARED.last_n == args.n and SHARED.last_jid == jid, 'the child saw other arguments')\n"
             "  assert(jid ~= job.jid, 'the child has its own jid')\n"
             "  local jid2, ok2, err2 = wh.enqueue('Boom', { what = 'nested' })\n"
             "  assert(type(jid2) == 'string' and #jid2 == 24, 'failing child jid')\n"
             "  assert(ok2 == false, 'a failing child reports ok = false')\n"
             "  assert(tostring(err2):find('workers/boom.lua:3: kaboom: nested', 1, true), 'err2: ' .. tostring(err2))\n"
             "  local okp, perr = pcall(wh.enqueue, 'Child', { n = 'x' })\n"
             "  assert(not okp and tostring(perr):find('Child: args.n: expected integer, got string', 1, true),\n"
             "         'bad nested args: ' .. tostring(perr))\n"
             "  local okc, cerr = pcall(wh.enqueue, 'Nope', {})\n"
             "  assert(not okc and tostring(cerr):find('unknown worker class', 1, true), 'unknown: ' .. tostring(cerr))\n"
             "  mine = 1\n"
             "  wh.enqueue('Child', { n = args.n })\n"
             "  assert(mine == 1, 'a nested job dropped the parent job\\'s globals')\n"
             "  assert(SHARED.child_runs == before + 2, 'second child')\n"
             "end }\n");
}

/* Outer: a nested job that times out must not change how the rest of the
 * outer job runs (its xpcall handlers still run). Recurse: wh.enqueue of
 * itself without end must fail cleanly, not crash the process. */
static void make_nested_workers(void) {
    write_in(root, "workers/outer.lua",
             HEADER
             "return wh.worker { perform = function()\n"
             "  local jid, ok, err = wh.enqueue('Spin', {})\n"
             "  assert(ok == false and tostring(err):find('timed out after 0.2 seconds', 1, true), 'child: ' .. tostring(err))\n"
             "  local okx, e = xpcall(function() error('inner', 0) end, function(m) return 'handled: ' .. m end)\n"
             "  assert(e == 'handled: inner', 'xpcall handler skipped after a nested timeout: ' .. tostring(e))\n"
             "end }\n");
    write_in(root, "workers/recurse.lua",
             HEADER
             "return wh.worker { args = { n = 'integer' }, perform = function(args)\n"
             "  local jid, ok, err = wh.enqueue('Recurse', { n = args.n + 1 })\n"
             "  if not ok then error(err, 0) end\n"
             "end }\n");
}

static wh_host *open_host(wh_err *err) {
    wh_host_options o = {root, "test", NULL};
    wh_host *h = NULL;
    wh_err_clear(err);
    if (wh_host_new(&h, &o, err) != 0) return NULL;
    if (wh_host_start(h, err) != 0) {
        wh_host_free(h);
        return NULL;
    }
    return h;
}

#define OPEN_HOST(h)                                                           \
    wh_host *h;                                                                \
    do {                                                                       \
        wh_err oerr_;                                                          \
        h = open_host(&oerr_);                                                 \
        if (h == NULL) WH_TEST_FAIL("cannot open the host: %s", oerr_.msg);    \
    } while (0)

static int enqueue(wh_host *h, const char *cls, const char *json, char jid[WH_JID_SIZE], wh_err *err) {
    wh_err_clear(err);
    return wh_host_enqueue(h, cls, json, strlen(json), NULL, jid, err);
}

static bool is_jid(const char *s) {
    if (strlen(s) != 24) return false;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f'))) return false;
    return true;
}

/* ---- wh_host_new ------------------------------------------------------------- */

static void test_new_missing_config(void) {
    wh_host_options o = {root, "nope", NULL};
    wh_host *h = (wh_host *)&o; /* must be left untouched on failure */
    wh_err err;
    wh_err_clear(&err);
    int rc = wh_host_new(&h, &o, &err);
    ASSERT_EQ_INT(rc, WH_ECONFIG);
    ASSERT_EQ_INT(err.code, WH_ECONFIG);
    ASSERT(h == (wh_host *)&o);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "%s/config/nope.yaml", realroot);
    ASSERT_CONTAINS(err.msg, want);
    ASSERT_CONTAINS(err.msg, "cannot read");

    wh_host_options o2 = {"/nonexistent/wh_app", "test", NULL};
    wh_err_clear(&err);
    h = NULL;
    rc = wh_host_new(&h, &o2, &err);
    ASSERT_EQ_INT(rc, WH_ECONFIG);
    ASSERT(h == NULL);
    ASSERT_CONTAINS(err.msg, "/nonexistent/wh_app");

    char file[PATH_MAX + 64];
    snprintf(file, sizeof file, "%s/config/missing.yaml", root);
    wh_host_options o3 = {root, "test", file};
    wh_err_clear(&err);
    rc = wh_host_new(&h, &o3, &err);
    ASSERT_EQ_INT(rc, WH_ECONFIG);
    ASSERT_CONTAINS(err.msg, file);

    ASSERT_EQ_INT(wh_host_new(NULL, &o, &err), WH_EINVAL);
}

static void test_new_broken_script_or_config(void) {
    char other[256];
    snprintf(other, sizeof other, "/tmp/wh_test_host_broken_XXXXXX");
    if (mkdtemp(other) == NULL) abort();
    make_dirs(other);
    write_in(other, "config/test.yaml", "workers:\n  mode: ForegroundBlocking\n");
    write_in(other, "workers/fine.lua", HEADER "return wh.worker { perform = function() end }\n");
    write_in(other, "workers/broken.lua", HEADER "return wh.worker { perform = function() end\n\n");
    wh_host_options o = {other, "test", NULL};
    wh_host *h = NULL;
    wh_err err;
    wh_err_clear(&err);
    int rc = wh_host_new(&h, &o, &err);
    char msg1[sizeof err.msg];
    snprintf(msg1, sizeof msg1, "%s", err.msg);
    int code1 = err.code;

    /* the same app with a bad config value */
    char broken[512];
    snprintf(broken, sizeof broken, "%s/workers/broken.lua", other);
    unlink(broken);
    write_in(other, "config/test.yaml", "workers:\n  mode: ForegroundBlocking\n  concurrency: four\n");
    wh_host *h2 = NULL;
    wh_err_clear(&err);
    int rc2 = wh_host_new(&h2, &o, &err);
    wh_test_rm_tree(other);
    if (rc == 0) wh_host_free(h);
    if (rc2 == 0) wh_host_free(h2);

    ASSERT_EQ_INT(rc, WH_ESCRIPT);
    ASSERT_EQ_INT(code1, WH_ESCRIPT);
    ASSERT(h == NULL);
    ASSERT_CONTAINS(msg1, "workers/broken.lua:4:");
    ASSERT_EQ_INT(rc2, WH_ECONFIG);
    ASSERT(h2 == NULL);
    ASSERT_CONTAINS(err.msg, "config/test.yaml:3:");
    ASSERT_CONTAINS(err.msg, "workers.concurrency");
}

/* ---- enqueue ------------------------------------------------------------------ */

static void test_enqueue_good(void) {
    OPEN_HOST(h);
    int lines0 = count_lines("ran.log");
    char jid[WH_JID_SIZE], jid2[WH_JID_SIZE];
    wh_err err;
    int rc = enqueue(h, "Greeter", "{\"name\":\"Ann\",\"count\":2}", jid, &err);
    char msg[sizeof err.msg];
    snprintf(msg, sizeof msg, "%s", err.msg);
    int rc2 = enqueue(h, "Greeter", "{\"name\":\"Bo\"}", jid2, &err);
    char last[512];
    int lines = count_lines_last("ran.log", last, sizeof last);
    wh_host_free(h);
    if (rc != 0) WH_TEST_FAIL("rc %d: %s", rc, msg);
    ASSERT_EQ_INT(rc2, 0);
    if (!is_jid(jid)) WH_TEST_FAIL("jid \"%s\" is not 24 hex characters", jid);
    ASSERT(is_jid(jid2));
    ASSERT(strcmp(jid, jid2) != 0);
    ASSERT_EQ_INT(lines, lines0 + 2);
    char want[128];
    snprintf(want, sizeof want, "Bo nil %s default", jid2);
    ASSERT_STREQ(last, want);
}

/* args_json need not be NUL-terminated: only len bytes are read. */
static void test_enqueue_reads_len_bytes(void) {
    OPEN_HOST(h);
    const char buf[] = "{\"name\":\"Len\"}GARBAGE";
    char jid[WH_JID_SIZE];
    wh_err err;
    wh_err_clear(&err);
    int rc = wh_host_enqueue(h, "Greeter", buf, strlen("{\"name\":\"Len\"}"), NULL, jid, &err);
    char last[512];
    count_lines_last("ran.log", last, sizeof last);
    wh_host_free(h);
    if (rc != 0) WH_TEST_FAIL("rc %d: %s", rc, err.msg);
    ASSERT(strncmp(last, "Len nil ", 8) == 0);
}

static void test_enqueue_bad_args_runs_nothing(void) {
    OPEN_HOST(h);
    int lines0 = count_lines("ran.log");
    const struct { const char *cls, *json, *msg; } cases[] = {
        {"Greeter", "{\"name\":5}", "Greeter: args.name: expected string, got integer"},
        {"Greeter", "{\"name\":\"a\",\"count\":1.5}", "Greeter: args.count: expected integer?, got number 1.5"},
        {"Greeter", "{\"name\":\"a\",\"bogus\":1}", "Greeter: args.bogus: unknown field (known: count, name)"},
        {"Greeter", "{}", "Greeter: args.name: missing (expected string)"},
        {"Greeter", "[]", "Greeter: args.name: missing (expected string)"},
        {"Greeter", "[\"a\"]", "Greeter: args: expected an object of named arguments, got array"},
        {"Greeter", "\"a\"", "Greeter: args: expected an object of named arguments, got string"},
        {"Adder", "{\"a\":1}", "Adder: args: expected an array of positional arguments, got object"},
        {"Adder", "[1]", "Adder: args: expected 2 arguments, got 1"},
        {"Adder", "[1,\"2\"]", "Adder: args[2]: expected integer, got string"},
        {"Adder", "[1,9223372036854775808]", "Adder: args[2]: expected integer, got an integer outside the 64-bit range"},
        {"Tick", "{\"a\":1}", "Tick: args: expected no arguments ({} or []), got object"},
        {"Tick", "[1]", "Tick: args: expected no arguments ({} or []), got array"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char jid[WH_JID_SIZE];
        memset(jid, 'x', sizeof jid);
        wh_err err;
        int rc = enqueue(h, cases[i].cls, cases[i].json, jid, &err);
        if (rc != WH_EARGS || err.code != WH_EARGS || strcmp(err.msg, cases[i].msg) != 0 || jid[0] != '\0') {
            wh_host_free(h);
            WH_TEST_FAIL("%s %s: rc %d code %d jid \"%.24s\"\n    got:      \"%s\"\n    expected: \"%s\"",
                         cases[i].cls, cases[i].json, rc, err.code, jid, err.msg, cases[i].msg);
        }
    }
    int lines = count_lines("ran.log");
    wh_host_free(h);
    ASSERT_EQ_INT(lines, lines0); /* nothing ran */
}

static void test_enqueue_shapes(void) {
    OPEN_HOST(h);
    const struct { const char *cls, *json, *last; } cases[] = {
        {"Adder", "[1,2]", "sum 3"},
        {"Adder", "[-9223372036854775807,-1]", "sum -9223372036854775808"},
        {"Greeter", "{\"count\":7,\"name\":\"Named\"}", "Named 7 "},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char jid[WH_JID_SIZE];
        wh_err err;
        int rc = enqueue(h, cases[i].cls, cases[i].json, jid, &err);
        char last[512];
        count_lines_last("ran.log", last, sizeof last);
        if (rc != 0 || strncmp(last, cases[i].last, strlen(cases[i].last)) != 0) {
            wh_host_free(h);
            WH_TEST_FAIL("%s %s: rc %d (%s), last line \"%s\"", cases[i].cls, cases[i].json, rc, err.msg, last);
        }
    }
    char jid[WH_JID_SIZE];
    wh_err err;
    int rc1 = enqueue(h, "Tick", "{}", jid, &err);
    int rc2 = enqueue(h, "Tick", "[]", jid, &err);
    wh_host_free(h);
    ASSERT_EQ_INT(rc1, 0);
    ASSERT_EQ_INT(rc2, 0);
}

static void test_enqueue_unknown_class_and_bad_json(void) {
    OPEN_HOST(h);
    int lines0 = count_lines("ran.log");
    char jid[WH_JID_SIZE];
    wh_err err;
    int rc = enqueue(h, "Nope", "{}", jid, &err);
    char msg[sizeof err.msg];
    snprintf(msg, sizeof msg, "%s", err.msg);
    int code = err.code;
    int rc_json = enqueue(h, "Greeter", "{\"name\":", jid, &err);
    char msg_json[sizeof err.msg];
    snprintf(msg_json, sizeof msg_json, "%s", err.msg);
    int code_json = err.code;
    int rc_dup = enqueue(h, "Greeter", "{\"name\":\"a\",\"name\":\"b\"}", jid, &err);
    int rc_empty = enqueue(h, "Greeter", "", jid, &err);
    wh_err_clear(&err);
    int rc_null = wh_host_enqueue(h, NULL, "{}", 2, NULL, jid, &err);
    wh_enqueue_options bad_queue = WH_ENQUEUE_OPTIONS_INIT;
    bad_queue.queue = "";
    int rc_opt = wh_host_enqueue(h, "Tick", "{}", 2, &bad_queue, jid, &err);
    int lines = count_lines("ran.log");
    wh_host_free(h);
    ASSERT_EQ_INT(rc, WH_ENOCLASS);
    ASSERT_EQ_INT(code, WH_ENOCLASS);
    ASSERT_STREQ(msg, "unknown worker class \"Nope\" (known: Adder, Bomb, Boom, Busy, Child, Greeter, Outer, "
                      "Parent, Recurse, Spin, Tick)");
    ASSERT_EQ_INT(rc_json, WH_EJSON);
    ASSERT_EQ_INT(code_json, WH_EJSON);
    ASSERT_CONTAINS(msg_json, "invalid JSON");
    ASSERT_EQ_INT(rc_dup, WH_EJSON);
    ASSERT_EQ_INT(rc_empty, WH_EJSON);
    ASSERT_EQ_INT(rc_null, WH_EINVAL);
    ASSERT_EQ_INT(rc_opt, WH_EINVAL);
    ASSERT_EQ_INT(lines, lines0);
}

static void test_enqueue_job_raising(void) {
    OPEN_HOST(h);
    char jid[WH_JID_SIZE];
    wh_err err;
    int rc = enqueue(h, "Boom", "{\"what\":\"api\"}", jid, &err);
    char msg[sizeof err.msg];
    snprintf(msg, sizeof msg, "%s", err.msg);
    int code = err.code;
    /* the host goes on */
    int rc2 = enqueue(h, "Tick", "{}", NULL, &err);
    wh_host_free(h);
    ASSERT_EQ_INT(rc, WH_EJOB);
    ASSERT_EQ_INT(code, WH_EJOB);
    ASSERT_STREQ(msg, "workers/boom.lua:3: kaboom: api");
    ASSERT(is_jid(jid)); /* filled in on failure too */
    ASSERT_EQ_INT(rc2, 0);
}

/* A timeout and the memory limit surface as WH_EJOB in ForegroundBlocking,
 * and the host keeps serving (a VM over its limit is rebuilt). */
static void test_enqueue_timeout_and_memory(void) {
    OPEN_HOST(h);
    char jid[WH_JID_SIZE];
    wh_err err;
    int rc_t = enqueue(h, "Spin", "{}", jid, &err);
    char msg_t[sizeof err.msg];
    snprintf(msg_t, sizeof msg_t, "%s", err.msg);
    int rc_after_t = enqueue(h, "Tick", "{}", jid, &err);
    int rc_m = enqueue(h, "Bomb", "{}", jid, &err);
    char msg_m[sizeof err.msg];
    snprintf(msg_m, sizeof msg_m, "%s", err.msg);
    int rcs[4];
    for (int i = 0; i < 4; i++) rcs[i] = enqueue(h, "Tick", "{}", jid, &err);
    wh_host_free(h);
    ASSERT_EQ_INT(rc_t, WH_EJOB);
    ASSERT_CONTAINS(msg_t, "timed out after 0.2 seconds");
    ASSERT_EQ_INT(rc_after_t, 0);
    ASSERT_EQ_INT(rc_m, WH_EJOB);
    ASSERT_CONTAINS(msg_m, "memory limit");
    for (int i = 0; i < 4; i++) ASSERT_EQ_INT(rcs[i], 0);
}

static void test_stopped_host(void) {
    OPEN_HOST(h);
    wh_err err;
    wh_err_clear(&err);
    ASSERT_EQ_INT(wh_host_wait_idle(h, 0, &err), 0);
    ASSERT_EQ_INT(wh_host_stop(h, 1, &err), 0);
    ASSERT_EQ_INT(wh_host_stop(h, 1, &err), 0); /* idempotent */
    char jid[WH_JID_SIZE];
    int rc = enqueue(h, "Tick", "{}", jid, &err);
    int rc_start = wh_host_start(h, &err);
    wh_host_free(h);
    ASSERT_EQ_INT(rc, WH_EUNAVAIL);
    ASSERT_EQ_INT(rc_start, WH_ESTATE);
    wh_host_free(NULL);
}

/* ---- threads ------------------------------------------------------------------ */

#define NTHREADS 4
#define JOBS_PER_THREAD 500

typedef struct caller {
    wh_host *h;
    int id;
    int failures;
    char first_error[1100];
} caller;

static void *call_many(void *p) {
    caller *c = p;
    for (int i = 0; i < JOBS_PER_THREAD; i++) {
        char json[64], jid[WH_JID_SIZE];
        snprintf(json, sizeof json, "{\"n\":%d}", c->id * 100000 + i);
        wh_err err;
        wh_err_clear(&err);
        int rc = wh_host_enqueue(c->h, "Busy", json, strlen(json), NULL, jid, &err);
        if (rc != 0 || !is_jid(jid)) {
            if (c->failures++ == 0) snprintf(c->first_error, sizeof c->first_error, "rc %d: %s", rc, err.msg);
        }
    }
    return NULL;
}

static int cmp_long(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

static void test_threads_share_a_small_pool(void) {
    int vms0 = count_lines("vms.log");
    int jobs0 = count_lines("busy.log");
    OPEN_HOST(h);
    caller callers[NTHREADS];
    pthread_t threads[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        callers[i] = (caller){h, i + 1, 0, ""};
        if (pthread_create(&threads[i], NULL, call_many, &callers[i]) != 0) abort();
    }
    for (int i = 0; i < NTHREADS; i++) pthread_join(threads[i], NULL);
    wh_host_free(h);
    for (int i = 0; i < NTHREADS; i++)
        if (callers[i].failures)
            WH_TEST_FAIL("thread %d: %d failures, first: %s", i + 1, callers[i].failures, callers[i].first_error);
    /* every job ran exactly once */
    ASSERT_EQ_INT(count_lines("busy.log") - jobs0, NTHREADS * JOBS_PER_THREAD);
    char path[1024];
    snprintf(path, sizeof path, "%s/busy.log", root);
    FILE *f = fopen(path, "r");
    ASSERT(f != NULL);
    long *ns = malloc(sizeof *ns * (size_t)(NTHREADS * JOBS_PER_THREAD + jobs0));
    size_t n = 0;
    long v;
    while (n < (size_t)(NTHREADS * JOBS_PER_THREAD + jobs0) && fscanf(f, "%ld", &v) == 1) ns[n++] = v;
    fclose(f);
    qsort(ns, n, sizeof *ns, cmp_long);
    size_t k = 0;
    bool ok = true;
    for (int t = 1; t <= NTHREADS && ok; t++)
        for (int i = 0; i < JOBS_PER_THREAD && ok; i++, k++)
            ok = k < n && ns[k] == (long)t * 100000 + i;
    free(ns);
    if (!ok) WH_TEST_FAIL("busy.log does not hold each job exactly once (at index %zu)", k - 1);
    /* at most workers.concurrency VMs, plus the catalog's scratch VM */
    int vms = count_lines("vms.log") - vms0;
    if (vms < 2 || vms > 3) WH_TEST_FAIL("%d VMs loaded the scripts; expected 2 or 3", vms);
}

/* ---- nested enqueue ------------------------------------------------------------ */

static void test_nested_enqueue_runs_at_once(void) {
    OPEN_HOST(h);
    char jid[WH_JID_SIZE];
    wh_err err;
    int rc = enqueue(h, "Parent", "{\"n\":42}", jid, &err);
    char msg[sizeof err.msg];
    snprintf(msg, sizeof msg, "%s", err.msg);
    int rc2 = enqueue(h, "Parent", "{\"n\":43}", jid, &err);
    wh_host_free(h);
    if (rc != 0) WH_TEST_FAIL("rc %d: %s", rc, msg);
    if (rc2 != 0) WH_TEST_FAIL("second parent: rc %d: %s", rc2, err.msg);
}

static void test_nested_timeout_leaves_outer_job_alone(void) {
    OPEN_HOST(h);
    char jid[WH_JID_SIZE];
    wh_err err;
    int rc = enqueue(h, "Outer", "{}", jid, &err);
    wh_host_free(h);
    if (rc != 0) WH_TEST_FAIL("rc %d: %s", rc, err.msg);
}

static void test_unbounded_nested_enqueue(void) {
    OPEN_HOST(h);
    char jid[WH_JID_SIZE];
    wh_err err;
    int rc = enqueue(h, "Recurse", "{\"n\":1}", jid, &err);
    char msg[sizeof err.msg];
    snprintf(msg, sizeof msg, "%s", err.msg);
    int rc2 = enqueue(h, "Tick", "{}", jid, &err);
    wh_host_free(h);
    ASSERT_EQ_INT(rc, WH_EJOB);
    fprintf(stderr, "  (unbounded nesting ends with: %.200s)\n", msg);
    ASSERT_EQ_INT(rc2, 0);
}

static void test_strerror(void) {
    for (int code = 0; code >= WH_ESTATE; code--) {
        const char *s = wh_strerror(code);
        ASSERT(s != NULL && s[0] != '\0');
    }
    ASSERT(wh_strerror(-1000) != NULL);
    ASSERT(wh_strerror(5) != NULL);
}

int main(void) {
    alarm(600);
    wh_log_setup(WH_LOG_ERROR, WH_LOG_TEXT);
    make_app();
    make_nested_workers();
    RUN(test_new_missing_config);
    RUN(test_new_broken_script_or_config);
    RUN(test_enqueue_good);
    RUN(test_enqueue_reads_len_bytes);
    RUN(test_enqueue_bad_args_runs_nothing);
    RUN(test_enqueue_shapes);
    RUN(test_enqueue_unknown_class_and_bad_json);
    RUN(test_enqueue_job_raising);
    RUN(test_enqueue_timeout_and_memory);
    RUN(test_stopped_host);
    RUN(test_threads_share_a_small_pool);
    RUN(test_nested_enqueue_runs_at_once);
    RUN(test_nested_timeout_leaves_outer_job_alone);
    RUN(test_unbounded_nested_enqueue);
    RUN(test_strerror);
    wh_test_rm_tree(root);
    return TEST_REPORT();
}
