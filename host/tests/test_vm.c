/* test_vm.c -- one Lua VM (lua/vm.c) built from in-memory sources: job safety
 * (timeouts that pcall cannot swallow, the memory limit, os.exit), globals
 * that do not leak between jobs, module state that persists, script loading
 * errors naming file and line, worker names from file names.
 * SPDX-License-Identifier: MIT
 */
#include <lauxlib.h>
#include <lua.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/mem.h"
#include "json/json.h"
#include "lua/lworker.h"
#include "lua/vm.h"
#include "schema/schema.h"
#include "test.h"

#define MIB (1024u * 1024u)

/* ---- sources and jobs ------------------------------------------------------ */

#define MAX_SOURCES 8

typedef struct app {
    wh_source src[MAX_SOURCES];
    size_t n;
} app;

/* Adds workers/<file> with code; path is "/app/workers/<file>". */
static void add(app *a, const char *file, const char *code) {
    if (a->n == MAX_SOURCES) abort();
    wh_source *s = &a->src[a->n++];
    size_t n = strlen(file) + 32;
    s->path = wh_xmalloc(n);
    snprintf(s->path, n, "/app/workers/%s", file);
    s->chunkname = wh_xmalloc(n);
    snprintf(s->chunkname, n, "@workers/%s", file);
    s->code = wh_xstrdup(code);
    s->len = strlen(code);
}

static void app_free(app *a) {
    for (size_t i = 0; i < a->n; i++) {
        wh_free(a->src[i].path);
        wh_free(a->src[i].chunkname);
        wh_free(a->src[i].code);
    }
    a->n = 0;
}

static wh_vm *vm_new(app *a, size_t memory_limit, wh_err *err) {
    wh_vm_options o = {memory_limit, NULL, NULL, NULL, 0, false, NULL};
    wh_err_clear(err);
    return wh_vm_new(&o, a->src, a->n, err);
}

/* Runs one job of class `cls` with payload args `args_json` (a JSON array).
 * res->traceback is freed here; the rest of res is left for the caller. */
static int run(wh_vm *vm, const char *cls, const char *args_json, double timeout, wh_run_result *res) {
    wh_err perr;
    wh_json_doc *doc = wh_json_parse(args_json, strlen(args_json), NULL, &perr);
    if (doc == NULL) {
        fprintf(stderr, "  bad JSON in test: %s\n", perr.msg);
        abort();
    }
    wh_job_meta meta = {"0123456789abcdef01234567", cls, "default", false, 0, 1700000000.0, 1700000000.0};
    wh_vm_perform(vm, &meta, wh_json_doc_root(doc), timeout, res);
    wh_json_doc_free(doc);
    wh_free(res->traceback);
    res->traceback = NULL;
    return res->rc;
}

#define RUN_OK(vm, cls, args, timeout)                                         \
    do {                                                                       \
        wh_run_result r_;                                                      \
        if (run((vm), (cls), (args), (timeout), &r_) != 0)                      \
            WH_TEST_FAIL("%s %s failed (rc %d): %s", cls, args, r_.rc, r_.err.msg); \
    } while (0)

#define HEADER "local wh = require 'workerhost'\n"

/* ---- timeouts ------------------------------------------------------------- */

static const char spin_src[] =
    HEADER
    "return wh.worker { args = { mode = 'string' }, perform = function(args)\n"
    "  if args.mode == 'loop' then while true do end end\n"
    "  if args.mode == 'pcall' then while true do pcall(function() while true do end end) end end\n"
    "  if args.mode == 'xpcall' then\n"
    "    while true do xpcall(function() while true do end end, function(e) return e end) end\n"
    "  end\n"
    "  if args.mode == 'error_in_handler' then\n"
    "    while true do xpcall(function() while true do end end, function() while true do end end) end\n"
    "  end\n"
    "end }\n";

static const char ok_src[] = HEADER "return wh.worker { perform = function() end }\n";

static void expect_timeout(wh_vm *vm, const char *mode_args, const char *secs) {
    wh_run_result res;
    double t0 = wh_clock_monotonic();
    int rc = run(vm, "Spin", mode_args, 0.2, &res);
    double took = wh_clock_monotonic() - t0;
    ASSERT_EQ_INT(rc, WH_ETIMEOUT);
    ASSERT_EQ_INT(res.err.code, WH_ETIMEOUT);
    ASSERT_CONTAINS(res.err.msg, secs);
    if (took < 0.19 || took > 5.0) WH_TEST_FAIL("%s: took %.3f s for a 0.2 s timeout", mode_args, took);
}

static void test_timeout_busy_loop(void) {
    app a = {0};
    add(&a, "spin.lua", spin_src);
    add(&a, "ok.lua", ok_src);
    wh_err err;
    wh_vm *vm = vm_new(&a, 0, &err);
    app_free(&a);
    if (vm == NULL) WH_TEST_FAIL("wh_vm_new: %s", err.msg);
    int top = lua_gettop(wh_vm_state(vm));
    expect_timeout(vm, "[{\"mode\":\"loop\"}]", "timed out after 0.2 seconds");
    if (!wh_test_current_failed) {
        ASSERT_EQ_INT(lua_gettop(wh_vm_state(vm)), top);
        ASSERT(!wh_vm_tainted(vm));
        /* the same VM runs the next jobs, the same worker included, at full speed */
        double t0 = wh_clock_monotonic();
        wh_run_result res;
        if (run(vm, "Ok", "[]", 0.2, &res) != 0) {
            wh_vm_free(vm);
            WH_TEST_FAIL("next job: %s", res.err.msg);
        }
        if (run(vm, "Spin", "[{\"mode\":\"none\"}]", 0.2, &res) != 0) {
            wh_vm_free(vm);
            WH_TEST_FAIL("same worker again: %s", res.err.msg);
        }
        /* the timeout is per job: a job without one may run past the old deadline */
        if (run(vm, "Ok", "[]", 0, &res) != 0) {
            wh_vm_free(vm);
            WH_TEST_FAIL("job without a timeout: %s", res.err.msg);
        }
        double took = wh_clock_monotonic() - t0;
        if (took > 1.0) {
            wh_vm_free(vm);
            WH_TEST_FAIL("three empty jobs took %.3f s: hook left in every-instruction mode?", took);
        }
    }
    wh_vm_free(vm);
}

static void test_timeout_cannot_be_caught(void) {
    app a = {0};
    add(&a, "spin.lua", spin_src);
    add(&a, "ok.lua", ok_src);
    wh_err err;
    wh_vm *vm = vm_new(&a, 0, &err);
    app_free(&a);
    if (vm == NULL) WH_TEST_FAIL("wh_vm_new: %s", err.msg);
    const char *modes[] = {"[{\"mode\":\"pcall\"}]", "[{\"mode\":\"xpcall\"}]", "[{\"mode\":\"error_in_handler\"}]"};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0] && !wh_test_current_failed; i++) {
        expect_timeout(vm, modes[i], "timed out after 0.2 seconds");
        wh_run_result res;
        if (!wh_test_current_failed && run(vm, "Ok", "[]", 0.2, &res) != 0) {
            wh_vm_free(vm);
            WH_TEST_FAIL("job after %s: %s", modes[i], res.err.msg);
        }
    }
    wh_vm_free(vm);
}

/* A worker's own timeout wins over the one the host passes. */
static void test_worker_timeout_wins(void) {
    app a = {0};
    add(&a, "quick.lua", HEADER "return wh.worker { timeout = 0.1, perform = function() while true do end end }\n");
    wh_err err;
    wh_vm *vm = vm_new(&a, 0, &err);
    app_free(&a);
    if (vm == NULL) WH_TEST_FAIL("wh_vm_new: %s", err.msg);
    wh_run_result res;
    int rc = run(vm, "Quick", "[]", 0, &res);
    wh_vm_free(vm);
    ASSERT_EQ_INT(rc, WH_ETIMEOUT);
    ASSERT_CONTAINS(res.err.msg, "timed out after 0.1 seconds");
}

/* Coroutines run Lua code too; the deadline must reach them, including one
 * the script created when it loaded. */
static void test_timeout_inside_coroutines(void) {
    app a = {0};
    add(&a, "co.lua",
        HEADER
        "local spin = coroutine.wrap(function() while true do end end)\n"
        "return wh.worker { args = { mode = 'string' }, perform = function(args)\n"
        "  if args.mode == 'new' then coroutine.wrap(function() while true do end end)() end\n"
        "  if args.mode == 'resume' then\n"
        "    while true do coroutine.resume(coroutine.create(function() while true do end end)) end\n"
        "  end\n"
        "  if args.mode == 'loaded' then spin() end\n"
        "end }\n");
    wh_err err;
    wh_vm *vm = vm_new(&a, 0, &err);
    app_free(&a);
    if (vm == NULL) WH_TEST_FAIL("wh_vm_new: %s", err.msg);
    const char *modes[] = {"[{\"mode\":\"new\"}]", "[{\"mode\":\"resume\"}]", "[{\"mode\":\"loaded\"}]"};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        wh_run_result res;
        double t0 = wh_clock_monotonic();
        int rc = run(vm, "Co", modes[i], 0.2, &res);
        double took = wh_clock_monotonic() - t0;
        if (rc != WH_ETIMEOUT || strstr(res.err.msg, "timed out after 0.2 seconds") == NULL || took > 5) {
            wh_vm_free(vm);
            WH_TEST_FAIL("%s: rc %d after %.2f s: %s", modes[i], rc, took, res.err.msg);
        }
    }
    wh_vm_free(vm);
}

/* xpcall is replaced by a guarded one: it must still behave as Lua's does
 * (handler result, extra arguments, results on success, yields across it). */
static void test_xpcall_still_works(void) {
    app a = {0};
    add(&a, "x.lua",
        HEADER
        "return wh.worker { perform = function()\n"
        "  local ok, e = xpcall(function(a, b) error('x' .. a .. b, 0) end, function(m) return 'h:' .. m end, 1, 2)\n"
        "  assert(ok == false and e == 'h:x12', 'handler result: ' .. tostring(e))\n"
        "  local ok2, r1, r2 = xpcall(function(v) return v, v + 1 end, print, 5)\n"
        "  assert(ok2 == true and r1 == 5 and r2 == 6, 'results on success')\n"
        "  assert(select('#', xpcall(function() end, print)) == 1, 'no results')\n"
        "  local co = coroutine.wrap(function()\n"
        "    return xpcall(function() local v = coroutine.yield(1) return v * 2 end, debug.traceback)\n"
        "  end)\n"
        "  assert(co() == 1, 'first resume yields')\n"
        "  local ok3, r3 = co(21)\n"
        "  assert(ok3 == true and r3 == 42, 'resumed through xpcall: ' .. tostring(r3))\n"
        "  local ok4, e4 = xpcall(function() error({code = 7}) end, function(m) return m end)\n"
        "  assert(ok4 == false and type(e4) == 'table' and e4.code == 7, 'error objects pass through')\n"
        "  assert(not pcall(xpcall, function() end), 'xpcall without a handler raises')\n"
        "end }\n");
    wh_err err;
    wh_vm *vm = vm_new(&a, 0, &err);
    app_free(&a);
    if (vm == NULL) WH_TEST_FAIL("wh_vm_new: %s", err.msg);
    wh_run_result res;
    int rc = run(vm, "X", "[]", 5, &res);
    wh_vm_free(vm);
    if (rc != 0) WH_TEST_FAIL("rc %d: %s", rc, res.err.msg);
}

/* ---- the job's own hooks: debug.sethook cannot remove the deadline ---------- */

static const char hook_src[] =
    HEADER
    "return wh.worker { args = { mode = 'string' }, perform = function(args)\n"
    "  local m = args.mode\n"
    "  if m == 'off' then debug.sethook() while true do end end\n"
    "  if m == 'line' then debug.sethook(function() end, 'l') while true do end end\n"
    "  if m == 'count' then debug.sethook(function() end, '', 1000000) while true do end end\n"
    "  if m == 'calls' then debug.sethook(function() end, 'cr') while true do math.abs(1) end end\n"
    "  if m == 'new_co' then debug.sethook() coroutine.wrap(function() while true do end end)() end\n"
    "  if m == 'co_off' or m == 'co_line' then\n"
    "    local co = coroutine.create(function() while true do end end)\n"
    "    if m == 'co_off' then debug.sethook(co) else debug.sethook(co, function() end, 'l') end\n"
    "    while true do coroutine.resume(co) end\n"
    "  end\n"
    "  if m == 'co_once' then\n"
    "    local co = coroutine.create(function() while true do end end)\n"
    "    debug.sethook(co)\n"
    "    coroutine.resume(co) -- returns false once the deadline ends co: the job must not finish\n"
    "  end\n"
    "  if m == 'in_hook' then\n"
    "    debug.sethook(function() debug.sethook() end, 'l')\n"
    "    while true do end\n"
    "  end\n"
    "end }\n";

/* Runs a job that must time out in a forked child: a job that escaped its
 * deadline would loop forever, so a watchdog ends the child and the test
 * fails instead of hanging. Returns 0 when the job timed out, 1 when it
 * ended otherwise, or -signal. */
static int timeout_in_child(wh_vm *vm, const char *cls, const char *args_json) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) abort();
    if (pid == 0) {
        alarm(20);
        wh_run_result res;
        int rc = run(vm, cls, args_json, 0.2, &res);
        if (rc != WH_ETIMEOUT || strstr(res.err.msg, "timed out after 0.2 seconds") == NULL) {
            fprintf(stderr, "  %s: rc %d: %s\n", args_json, rc, res.err.msg);
            _exit(1);
        }
        _exit(0);
    }
    int st;
    if (waitpid(pid, &st, 0) != pid) abort();
    return WIFSIGNALED(st) ? -WTERMSIG(st) : WEXITSTATUS(st);
}

/* A profiler or a coverage tool calls debug.sethook; a job may call it with
 * no arguments. The deadline holds all the same, on coroutines too. */
static void test_timeout_survives_sethook(void) {
    app a = {0};
    add(&a, "hook.lua", hook_src);
    add(&a, "ok.lua", ok_src);
    wh_err err;
    wh_vm *vm = vm_new(&a, 0, &err);
    app_free(&a);
    if (vm == NULL) WH_TEST_FAIL("wh_vm_new: %s", err.msg);
    const char *modes[] = {"off", "line", "count", "calls", "new_co", "co_off", "co_line", "co_once", "in_hook"};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        char args[64];
        snprintf(args, sizeof args, "[{\"mode\":\"%s\"}]", modes[i]);
        int st = timeout_in_child(vm, "Hook", args);
        if (st != 0) {
            wh_vm_free(vm);
            if (st == -SIGALRM) WH_TEST_FAIL("%s: the job escaped its 0.2 s timeout (still running after 20 s)", args);
            WH_TEST_FAIL("%s: the job did not time out (child status %d)", args, st);
        }
    }
    wh_vm_free(vm);
}

/* debug.sethook and debug.gethook keep Lua's meaning for the job's own
 * hooks, which last until the job ends. */
static void test_job_hooks_still_work(void) {
    app a = {0};
    add(&a, "hooks.lua",
        HEADER
        "return wh.worker { args = { mode = 'string' }, perform = function(args)\n"
        "  if args.mode == 'after' then\n"
        "    assert(debug.gethook() == nil, 'a hook of the last job is still set')\n"
        "    return\n"
        "  end\n"
        "  local lines, calls, counts = 0, 0, 0\n"
        "  debug.sethook(function(ev, line)\n"
        "    assert(ev == 'line' and math.type(line) == 'integer', 'line event: ' .. tostring(ev))\n"
        "    lines = lines + 1\n"
        "  end, 'l')\n"
        "  local x = 0\n"
        "  x = x + 1\n"
        "  x = x + 1\n"
        "  local f, m, c = debug.gethook()\n"
        "  debug.sethook()\n"
        "  assert(lines >= 3, 'line hook called ' .. lines .. ' times')\n"
        "  assert(type(f) == 'function' and m == 'l' and c == 0, 'gethook: ' .. tostring(m) .. ' ' .. tostring(c))\n"
        "  assert(debug.gethook() == nil, 'gethook after sethook()')\n"
        "  debug.sethook(function(ev) assert(ev == 'count') counts = counts + 1 end, '', 100)\n"
        "  for i = 1, 10000 do x = x + i end\n"
        "  debug.sethook()\n"
        "  assert(counts >= 50 and counts <= 2000, 'count hook called ' .. counts .. ' times')\n"
        "  debug.sethook(function(ev) if ev == 'call' or ev == 'tail call' then calls = calls + 1 end end, 'c')\n"
        "  math.abs(1) math.abs(2)\n"
        "  debug.sethook()\n"
        "  assert(calls >= 2, 'call hook called ' .. calls .. ' times')\n"
        "  local co = coroutine.create(function()\n"
        "    local y = 1\n"
        "    y = y + 1\n"
        "    coroutine.yield()\n"
        "  end)\n"
        "  local colines = 0\n"
        "  debug.sethook(co, function() colines = colines + 1 end, 'l')\n"
        "  assert(select(2, debug.gethook(co)) == 'l', 'gethook(co)')\n"
        "  assert(debug.gethook() == nil, 'the main thread has no hook')\n"
        "  coroutine.resume(co)\n"
        "  assert(colines >= 2, 'coroutine line hook called ' .. colines .. ' times')\n"
        "  local fired = false\n"
        "  local ok, e = pcall(function()\n"
        "    debug.sethook(function() if not fired then fired = true error('from the hook', 0) end end, 'l')\n"
        "    local z = 1\n"
        "    return z\n"
        "  end)\n"
        "  debug.sethook()\n"
        "  assert(not ok and e == 'from the hook', 'a hook error reaches the code: ' .. tostring(e))\n"
        "  assert(not pcall(debug.sethook, function() end), 'a mask is required with a function')\n"
        "  debug.sethook(function() end, 'l') -- left set: dropped when the job ends\n"
        "end }\n");
    wh_err err;
    wh_vm *vm = vm_new(&a, 0, &err);
    app_free(&a);
    if (vm == NULL) WH_TEST_FAIL("wh_vm_new: %s", err.msg);
    wh_run_result res;
    int rc = run(vm, "Hooks", "[{\"mode\":\"use\"}]", 5, &res);
    if (rc != 0) {
        wh_vm_free(vm);
        WH_TEST_FAIL("rc %d: %s", rc, res.err.msg);
    }
    rc = run(vm, "Hooks", "[{\"mode\":\"after\"}]", 5, &res);
    wh_vm_free(vm);
    if (rc != 0) WH_TEST_FAIL("next job: rc %d: %s", rc, res.err.msg);
}

/* ---- memory ----------------------------------------------------------------- */

static void test_memory_limit(void) {
    app a = {0};
    add(&a, "bomb.lua",
        HEADER
        "return wh.worker { args = { how = 'string' }, perform = function(args)\n"
        "  if args.how == 'table' then\n"
        "    local t = {} for i = 1, 1e9 do t[i] = ('x'):rep(64) .. i end\n"
        "  else\n"
        "    local s = ('x'):rep(64 * 1024 * 1024)\n"
        "  end\n"
        "end }\n");
    add(&a, "ok.lua", ok_src);
    const char *hows[] = {"[{\"how\":\"table\"}]", "[{\"how\":\"string\"}]"};
    for (size_t i = 0; i < 2; i++) {
        wh_err err;
        wh_vm *vm = vm_new(&a, 32 * MIB, &err);
        if (vm == NULL) {
            app_free(&a);
            WH_TEST_FAIL("wh_vm_new: %s", err.msg);
        }
        int top = lua_gettop(wh_vm_state(vm));
        bool tainted_before = wh_vm_tainted(vm);
        wh_run_result res;
        int rc = run(vm, "Bomb", hows[i], 0, &res);
        bool tainted = wh_vm_tainted(vm);
        size_t used = wh_vm_memory(vm);
        int top_after = lua_gettop(wh_vm_state(vm));
        wh_vm_free(vm);
        if (wh_test_current_failed) break;
        if (rc != WH_ENOMEM) {
            app_free(&a);
            WH_TEST_FAIL("%s: rc %d, expected WH_ENOMEM: %s", hows[i], rc, res.err.msg);
        }
        if (res.err.code != WH_ENOMEM || strstr(res.err.msg, "memory limit") == NULL ||
            strstr(res.err.msg, "33554432") == NULL || strstr(res.err.msg, "Bomb") == NULL) {
            app_free(&a);
            WH_TEST_FAIL("%s: message: %s", hows[i], res.err.msg);
        }
        if (tainted_before || !tainted) {
            app_free(&a);
            WH_TEST_FAIL("tainted before %d, after %d", tainted_before, tainted);
        }
        if (used > 32 * MIB || top_after != top) {
            app_free(&a);
            WH_TEST_FAIL("memory %zu > limit, or stack %d != %d", used, top_after, top);
        }
    }
    app_free(&a);
}

/* Scripts too large for the limit fail to load with WH_ENOMEM, not a crash. */
static void test_memory_limit_while_loading(void) {
    app a = {0};
    add(&a, "fat.lua", HEADER "local big = {} for i = 1, 1e7 do big[i] = i .. '' end\n"
                       "return wh.worker { perform = function() end }\n");
    wh_err err;
    wh_vm *vm = vm_new(&a, 8 * MIB, &err);
    app_free(&a);
    if (vm != NULL) {
        wh_vm_free(vm);
        WH_TEST_FAIL("loaded past an 8 MiB limit");
    }
    ASSERT_EQ_INT(err.code, WH_ENOMEM);
    ASSERT_CONTAINS(err.msg, "workers.memory_limit");
}

/* ---- os.exit ---------------------------------------------------------------- */

static void test_os_exit_raises(void) {
    app a = {0};
    add(&a, "quitter.lua",
        HEADER
        "local exit = os.exit\n"
        "return wh.worker { args = { how = 'string' }, perform = function(args)\n"
        "  if args.how == 'one' then os.exit(1) end\n"
        "  if args.how == 'bare' then os.exit() end\n"
        "  if args.how == 'saved' then exit(true) end\n"
        "  if args.how == 'loaded' then package.loaded.os.exit(0) end\n"
        "end }\n");
    add(&a, "ok.lua", ok_src);
    wh_err err;
    wh_vm *vm = vm_new(&a, 0, &err);
    app_free(&a);
    if (vm == NULL) WH_TEST_FAIL("wh_vm_new: %s", err.msg);
    const struct { const char *args, *want; } cases[] = {
        {"[{\"how\":\"one\"}]", "os.exit(1) called inside a job"},
        {"[{\"how\":\"bare\"}]", "os.exit() called inside a job"},
        {"[{\"how\":\"saved\"}]", "os.exit(true) called inside a job"},
        {"[{\"how\":\"loaded\"}]", "os.exit(0) called inside a job"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        wh_run_result res;
        int rc = run(vm, "Quitter", cases[i].args, 5, &res);
        if (rc != WH_EJOB || strstr(res.err.msg, cases[i].want) == NULL) {
            wh_vm_free(vm);
            WH_TEST_FAIL("%s: rc %d: %s", cases[i].args, rc, res.err.msg);
        }
    }
    /* still here, and the VM still works */
    RUN_OK(vm, "Ok", "[]", 5);
    wh_vm_free(vm);
}

/* ---- globals and module state ----------------------------------------------- */

static void test_globals_do_not_leak(void) {
    app a = {0};
    add(&a, "leaker.lua",
        HEADER
        "SHARED_AT_LOAD = 0\n"
        "return wh.worker { args = { step = 'integer' }, perform = function(args)\n"
        "  if args.step == 1 then\n"
        "    leak = 1; _G.leak2 = 2; function leaked_fn() end\n"
        "    SHARED_AT_LOAD = SHARED_AT_LOAD + 1\n"
        "    if leak ~= 1 or leak2 ~= 2 then error('a job cannot read its own globals') end\n"
        "  else\n"
        "    if leak ~= nil then error('leak is visible: ' .. tostring(leak)) end\n"
        "    if leak2 ~= nil then error('leak2 is visible') end\n"
        "    if leaked_fn ~= nil then error('leaked_fn is visible') end\n"
        "    if SHARED_AT_LOAD ~= 1 then error('load-time global lost: ' .. tostring(SHARED_AT_LOAD)) end\n"
        "  end\n"
        "end }\n");
    wh_err err;
    wh_vm *vm = vm_new(&a, 0, &err);
    app_free(&a);
    if (vm == NULL) WH_TEST_FAIL("wh_vm_new: %s", err.msg);
    wh_run_result res;
    int rc1 = run(vm, "Leaker", "[{\"step\":1}]", 5, &res);
    char msg1[sizeof res.err.msg];
    snprintf(msg1, sizeof msg1, "%s", res.err.msg);
    lua_State *L = wh_vm_state(vm);
    int t_leak = lua_getglobal(L, "leak");
    lua_pop(L, 1);
    int rc2 = run(vm, "Leaker", "[{\"step\":2}]", 5, &res);
    wh_vm_free(vm);
    if (rc1 != 0) WH_TEST_FAIL("job 1: %s", msg1);
    ASSERT_EQ_INT(t_leak, LUA_TNIL);
    if (rc2 != 0) WH_TEST_FAIL("job 2: %s", res.err.msg);
}

/* A job that fails still has its globals dropped. */
static void test_globals_dropped_after_failure(void) {
    app a = {0};
    add(&a, "f.lua",
        HEADER
        "return wh.worker { args = { step = 'integer' }, perform = function(args)\n"
        "  if args.step == 1 then leak = 'x'; error('fail after leaking') end\n"
        "  if leak ~= nil then error('leak survived a failed job') end\n"
        "end }\n");
    wh_err err;
    wh_vm *vm = vm_new(&a, 0, &err);
    app_free(&a);
    if (vm == NULL) WH_TEST_FAIL("wh_vm_new: %s", err.msg);
    wh_run_result res;
    int rc1 = run(vm, "F", "[{\"step\":1}]", 5, &res);
    int rc2 = run(vm, "F", "[{\"step\":2}]", 5, &res);
    wh_vm_free(vm);
    ASSERT_EQ_INT(rc1, WH_EJOB);
    if (rc2 != 0) WH_TEST_FAIL("job 2: %s", res.err.msg);
}

static void test_module_local_persists(void) {
    app a = {0};
    add(&a, "counter.lua",
        HEADER
        "local count = 0\n"
        "return wh.worker { args = { n = 'integer' }, perform = function(args)\n"
        "  count = count + 1\n"
        "  if count ~= args.n then error('count ' .. count .. ', expected ' .. args.n) end\n"
        "end }\n");
    wh_err err;
    wh_vm *vm = vm_new(&a, 0, &err);
    app_free(&a);
    if (vm == NULL) WH_TEST_FAIL("wh_vm_new: %s", err.msg);
    for (int i = 1; i <= 3 && !wh_test_current_failed; i++) {
        char args[32];
        snprintf(args, sizeof args, "[{\"n\":%d}]", i);
        wh_run_result res;
        if (run(vm, "Counter", args, 5, &res) != 0) {
            wh_vm_free(vm);
            WH_TEST_FAIL("job %d: %s", i, res.err.msg);
        }
    }
    wh_run_result res;
    int rc = run(vm, "Counter", "[{\"n\":9}]", 5, &res);
    wh_vm_free(vm);
    ASSERT_EQ_INT(rc, WH_EJOB);
    ASSERT_STREQ(res.err.msg, "workers/counter.lua:5: count 4, expected 9");
}

/* ---- performing ------------------------------------------------------------- */

static void test_perform_errors_and_unknown_class(void) {
    app a = {0};
    add(&a, "boom.lua",
        HEADER
        "local function inner() error('kaboom') end\n"
        "return wh.worker { args = { 'integer' }, perform = function(args, job)\n"
        "  if job.jid ~= '0123456789abcdef01234567' or job.class ~= 'Boom' then error('bad job table') end\n"
        "  if args[1] == 1 then inner() end\n"
        "end }\n");
    wh_err err;
    wh_vm *vm = vm_new(&a, 0, &err);
    app_free(&a);
    if (vm == NULL) WH_TEST_FAIL("wh_vm_new: %s", err.msg);
    lua_State *L = wh_vm_state(vm);
    int top = lua_gettop(L);

    wh_job_meta meta = {"0123456789abcdef01234567", "Boom", "default", false, 0, 0, 0};
    wh_json_doc *doc = wh_json_parse("[1]", 3, NULL, &err);
    wh_run_result res;
    wh_vm_perform(vm, &meta, wh_json_doc_root(doc), 5, &res);
    wh_json_doc_free(doc);
    int rc_boom = res.rc;
    char boom_msg[sizeof res.err.msg];
    snprintf(boom_msg, sizeof boom_msg, "%s", res.err.msg);
    char tb[4096];
    snprintf(tb, sizeof tb, "%s", res.traceback ? res.traceback : "(none)");
    wh_free(res.traceback);

    RUN_OK(vm, "Boom", "[2]", 5);
    int rc_args = run(vm, "Boom", "[\"2\"]", 5, &res);
    char args_msg[sizeof res.err.msg];
    snprintf(args_msg, sizeof args_msg, "%s", res.err.msg);
    int rc_cls = run(vm, "Nope", "[]", 5, &res);
    wh_lworker_info info;
    int rc_find = wh_vm_find(vm, "Nope", &info);
    int top_after = lua_gettop(L);
    wh_vm_free(vm);

    ASSERT_EQ_INT(rc_boom, WH_EJOB);
    ASSERT_STREQ(boom_msg, "workers/boom.lua:2: kaboom");
    ASSERT_EQ_INT(rc_args, WH_EARGS);
    ASSERT_STREQ(args_msg, "Boom: args[1]: expected integer, got string");
    ASSERT_EQ_INT(rc_cls, WH_ENOCLASS);
    ASSERT_CONTAINS(res.err.msg, "\"Nope\"");
    ASSERT_EQ_INT(rc_find, WH_ENOCLASS);
    ASSERT_EQ_INT(top_after, top);
    ASSERT_CONTAINS(tb, "stack traceback");
    ASSERT_CONTAINS(tb, "workers/boom.lua:2");
    ASSERT_CONTAINS(tb, "workers/boom.lua:5");
}

/* Checked in C first: a refused job never enters Lua. */
static void test_refused_args_run_no_lua(void) {
    app a = {0};
    add(&a, "c.lua",
        HEADER
        "CALLS = 0\n"
        "return wh.worker { args = { n = 'integer' }, perform = function(args) CALLS = CALLS + 1 end }\n");
    wh_err err;
    wh_vm *vm = vm_new(&a, 0, &err);
    app_free(&a);
    if (vm == NULL) WH_TEST_FAIL("wh_vm_new: %s", err.msg);
    lua_State *L = wh_vm_state(vm);
    wh_run_result res;
    int rc_bad = run(vm, "C", "[{\"n\":\"1\"}]", 5, &res);
    lua_getglobal(L, "CALLS");
    lua_Integer after_bad = lua_tointeger(L, -1);
    lua_pop(L, 1);
    int rc_good = run(vm, "C", "[{\"n\":1}]", 5, &res);
    lua_getglobal(L, "CALLS");
    lua_Integer after_good = lua_tointeger(L, -1);
    lua_pop(L, 1);
    wh_vm_free(vm);
    ASSERT_EQ_INT(rc_bad, WH_EARGS);
    ASSERT_EQ_INT(after_bad, 0);
    ASSERT_EQ_INT(rc_good, 0);
    ASSERT_EQ_INT(after_good, 1);
}

/* ---- interrupt from another thread ------------------------------------------ */

static void *interrupt_later(void *vm) {
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
    wh_vm_interrupt(vm);
    return NULL;
}

static void test_interrupt(void) {
    app a = {0};
    add(&a, "spin.lua", spin_src);
    wh_err err;
    wh_vm *vm = vm_new(&a, 0, &err);
    app_free(&a);
    if (vm == NULL) WH_TEST_FAIL("wh_vm_new: %s", err.msg);
    pthread_t t;
    pthread_create(&t, NULL, interrupt_later, vm);
    wh_run_result res;
    int rc = run(vm, "Spin", "[{\"mode\":\"pcall\"}]", 0, &res);
    pthread_join(t, NULL);
    wh_vm_free(vm);
    ASSERT_EQ_INT(rc, WH_EJOB);
    ASSERT_CONTAINS(res.err.msg, "interrupted: the host is shutting down");
}

/* ---- nested jobs -------------------------------------------------------------
 * A minimal host behind wh.enqueue that runs the nested job at once in the
 * same VM through wh_vm_perform, as the ForegroundBlocking host does. */

static const wh_schema *nest_find(void *ud, lua_State *L, const char *name) {
    (void)ud;
    wh_lworker_info info;
    if (wh_vm_find(wh_vm_from_state(L), name, &info) != 0) return NULL;
    lua_pop(L, 1);
    return info.schema;
}

static int nest_enqueue(void *ud, lua_State *L, const char *name, wh_json_doc *doc, const wh_json *args,
                        const wh_enqueue_options *opts, wh_err *err) {
    (void)ud, (void)opts, (void)err;
    wh_vm *vm = wh_vm_from_state(L);
    wh_lworker_info info;
    if (wh_vm_find(vm, name, &info) != 0) {
        wh_json_doc_free(doc);
        return wh_err_set(err, WH_ENOCLASS, "no %s", name);
    }
    lua_pop(L, 1);
    const wh_json *payload_args = wh_schema_payload_args(info.schema, doc, args);
    wh_job_meta meta = {"ffffffffffffffffffffffff", name, "default", false, 0, 0, 0};
    wh_run_result res;
    wh_vm_perform(vm, &meta, payload_args, 0, &res);
    wh_free(res.traceback);
    wh_json_doc_free(doc);
    lua_pushstring(L, meta.jid);
    lua_pushboolean(L, res.rc == 0);
    if (res.rc == 0) lua_pushnil(L);
    else lua_pushstring(L, res.err.msg);
    return 3;
}

static const wh_lhost nest_host = {nest_find, nest_enqueue, NULL, NULL};

static wh_vm *nest_vm(wh_err *err) {
    app a = {0};
    add(&a, "spin.lua", HEADER "return wh.worker { timeout = 0.2, perform = function() while true do end end }\n");
    add(&a, "child.lua", HEADER "return wh.worker { perform = function() child_global = 1 end }\n");
    add(&a, "outer.lua",
        HEADER
        "return wh.worker { args = { mode = 'string' }, perform = function(args)\n"
        "  if args.mode == 'globals' then\n"
        "    mine = 1\n"
        "    local jid, ok, err = wh.enqueue('Child')\n"
        "    assert(ok, err)\n"
        "    assert(mine == 1, 'a nested job dropped the outer job\\'s globals')\n"
        "    return\n"
        "  end\n"
        "  local jid, ok, err = wh.enqueue('Spin')\n"
        "  assert(ok == false and err:find('timed out after 0.2 seconds', 1, true), 'child: ' .. tostring(err))\n"
        "  if args.mode == 'fail' then error('a failure of its own', 0) end\n"
        "end }\n");
    wh_vm_options o = {0, NULL, &nest_host, NULL, 0, false, NULL};
    wh_err_clear(err);
    wh_vm *vm = wh_vm_new(&o, a.src, a.n, err);
    app_free(&a);
    return vm;
}

/* A nested job that times out is the nested job's outcome: the outer job
 * that then fails for its own reason failed, it did not time out. */
static void test_nested_timeout_is_not_the_outer_outcome(void) {
    wh_err err;
    wh_vm *vm = nest_vm(&err);
    if (vm == NULL) WH_TEST_FAIL("wh_vm_new: %s", err.msg);
    wh_run_result res;
    int rc_ok = run(vm, "Outer", "[{\"mode\":\"ok\"}]", 5, &res);
    char msg_ok[sizeof res.err.msg];
    snprintf(msg_ok, sizeof msg_ok, "%s", res.err.msg);
    int rc = run(vm, "Outer", "[{\"mode\":\"fail\"}]", 5, &res);
    wh_vm_free(vm);
    if (rc_ok != 0) WH_TEST_FAIL("outer job after a nested timeout: rc %d: %s", rc_ok, msg_ok);
    ASSERT_STREQ(res.err.msg, "a failure of its own");
    ASSERT_EQ_INT(rc, WH_EJOB);
}

/* wh_vm_perform's timeout 0 means "none"; a nested job inside such a job
 * must still leave the outer job's globals alone until the outer job ends. */
static void test_nested_job_in_job_without_timeout(void) {
    wh_err err;
    wh_vm *vm = nest_vm(&err);
    if (vm == NULL) WH_TEST_FAIL("wh_vm_new: %s", err.msg);
    wh_run_result res;
    int rc_t = run(vm, "Outer", "[{\"mode\":\"globals\"}]", 5, &res);
    char msg_t[sizeof res.err.msg];
    snprintf(msg_t, sizeof msg_t, "%s", res.err.msg);
    int rc0 = run(vm, "Outer", "[{\"mode\":\"globals\"}]", 0, &res);
    wh_vm_free(vm);
    if (rc_t != 0) WH_TEST_FAIL("with a timeout: rc %d: %s", rc_t, msg_t);
    if (rc0 != 0) WH_TEST_FAIL("without a timeout: rc %d: %s", rc0, res.err.msg);
}

/* ---- loading scripts -------------------------------------------------------- */

/* wh_vm_new must fail with code and a message containing each of want[]. */
static void expect_load_error(app *a, int code, const char *const *want, size_t nwant) {
    wh_err err;
    wh_vm *vm = vm_new(a, 0, &err);
    app_free(a);
    if (vm != NULL) {
        wh_vm_free(vm);
        WH_TEST_FAIL("loaded, expected an error");
    }
    ASSERT_EQ_INT(err.code, code);
    for (size_t i = 0; i < nwant; i++) ASSERT_CONTAINS(err.msg, want[i]);
}

static void test_syntax_error(void) {
    app a = {0};
    add(&a, "ok.lua", ok_src);
    add(&a, "x.lua", HEADER "local a = 1\nlocal b = = 2\nreturn wh.worker { perform = function() end }\n");
    const char *want[] = {"workers/x.lua:3:"};
    expect_load_error(&a, WH_ESCRIPT, want, 1);
}

static void test_error_while_loading(void) {
    app a = {0};
    add(&a, "x.lua", HEADER "\nerror('cannot start')\n");
    const char *want[] = {"workers/x.lua:3: cannot start"};
    expect_load_error(&a, WH_ESCRIPT, want, 1);
    if (wh_test_current_failed) return;

    add(&a, "x.lua", HEADER "return wh.worker { perfom = function() end }\n");
    const char *want2[] = {"workers/x.lua:2:", "unknown option \"perfom\""};
    expect_load_error(&a, WH_ESCRIPT, want2, 2);
    if (wh_test_current_failed) return;

    add(&a, "x.lua", HEADER "return wh.worker { args = { n = 'int' }, perform = function() end }\n");
    const char *want3[] = {"workers/x.lua:2:", "args.n: unknown type \"int\""};
    expect_load_error(&a, WH_ESCRIPT, want3, 2);
    if (wh_test_current_failed) return;

    add(&a, "x.lua", HEADER "os.exit(3)\n");
    const char *want4[] = {"os.exit(3) called inside a job"};
    expect_load_error(&a, WH_ESCRIPT, want4, 1);
}

static void test_script_must_return_a_worker(void) {
    const struct { const char *code, *want; } cases[] = {
        {"return 42\n", "workers/x.lua: the script must return wh.worker{...}, got number"},
        {"local x = 1\n", "workers/x.lua: the script must return wh.worker{...}, got nil"},
        {"return { perform = function() end }\n", "workers/x.lua: the script must return wh.worker{...}, got table"},
        {"return 'DownloadWorker'\n", "workers/x.lua: the script must return wh.worker{...}, got string"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        app a = {0};
        add(&a, "ok.lua", ok_src);
        add(&a, "x.lua", cases[i].code);
        const char *want[] = {cases[i].want};
        expect_load_error(&a, WH_ESCRIPT, want, 1);
        if (wh_test_current_failed) return;
    }
}

static void test_duplicate_names(void) {
    app a = {0};
    add(&a, "a.lua", HEADER "return wh.worker { name = 'Same', perform = function() end }\n");
    add(&a, "b.lua", HEADER "return wh.worker { name = 'Same', perform = function() end }\n");
    const char *want[] = {"workers/a.lua", "workers/b.lua", "Same"};
    expect_load_error(&a, WH_ESCRIPT, want, 3);
    if (wh_test_current_failed) return;

    /* a name from a file name collides with an explicit one */
    add(&a, "download_worker.lua", ok_src);
    add(&a, "other.lua", HEADER "return wh.worker { name = 'DownloadWorker', perform = function() end }\n");
    const char *want2[] = {"workers/download_worker.lua", "workers/other.lua", "DownloadWorker"};
    expect_load_error(&a, WH_ESCRIPT, want2, 3);
}

static void test_names_from_files(void) {
    app a = {0};
    add(&a, "download_worker.lua", ok_src);
    add(&a, "report-v2.lua", ok_src);
    add(&a, "named.lua", HEADER "return wh.worker { name = 'Billing::Invoice', queue = 'money', retry = false, "
                         "timeout = 2.5, perform = function() end }\n");
    wh_err err;
    wh_vm *vm = vm_new(&a, 0, &err);
    app_free(&a);
    if (vm == NULL) WH_TEST_FAIL("wh_vm_new: %s", err.msg);
    char names[3][64] = {{0}}, files[3][64] = {{0}};
    wh_lworker_info infos[3];
    size_t n = wh_vm_nworkers(vm);
    for (size_t i = 0; i < n && i < 3; i++) {
        wh_vm_worker(vm, i, &infos[i]);
        snprintf(names[i], sizeof names[i], "%s", infos[i].name ? infos[i].name : "(null)");
        snprintf(files[i], sizeof files[i], "%s", infos[i].file ? infos[i].file : "(null)");
    }
    wh_lworker_info found;
    lua_State *L = wh_vm_state(vm);
    int top = lua_gettop(L);
    int rc_find = wh_vm_find(vm, "DownloadWorker", &found);
    bool pushed_def = lua_gettop(L) == top + 1 && lua_istable(L, -1);
    lua_settop(L, top);
    wh_lworker_info out_of_range;
    int rc_range = wh_vm_worker(vm, 3, &out_of_range);
    wh_vm_free(vm);

    ASSERT_EQ_INT(n, 3);
    /* sorted by name */
    ASSERT_STREQ(names[0], "Billing::Invoice");
    ASSERT_STREQ(names[1], "DownloadWorker");
    ASSERT_STREQ(names[2], "ReportV2");
    ASSERT_STREQ(files[0], "workers/named.lua");
    ASSERT_STREQ(files[1], "workers/download_worker.lua");
    ASSERT_STREQ(files[2], "workers/report-v2.lua");
    ASSERT_EQ_INT(infos[0].retry, WH_RETRY_FALSE);
    ASSERT_EQ_DBL(infos[0].timeout, 2.5);
    ASSERT_EQ_INT(infos[1].retry, WH_DEFAULT_RETRY);
    ASSERT_EQ_DBL(infos[1].timeout, 0);
    ASSERT_EQ_INT(rc_find, 0);
    ASSERT(pushed_def);
    ASSERT_EQ_INT(rc_range, WH_ENOCLASS);
}

static void test_file_name_without_class_name(void) {
    app a = {0};
    add(&a, "2fa.lua", ok_src);
    const char *want[] = {"workers/2fa.lua", "cannot make a class name"};
    expect_load_error(&a, WH_ESCRIPT, want, 2);
}

/* ---- names ------------------------------------------------------------------ */

static void test_name_from_file(void) {
    const struct { const char *file, *want; } cases[] = {
        {"download_worker.lua", "DownloadWorker"},
        {"report-v2.lua", "ReportV2"},
        {"/app/workers/send_email.lua", "SendEmail"},
        {"workers/a/b/c_d.lua", "CD"},
        {"x.lua", "X"},
        {"already_Camel.lua", "AlreadyCamel"},
        {"HTTPFetch.lua", "HTTPFetch"},
        {"foo.bar.lua", "FooBar"},
        {"double__under.lua", "DoubleUnder"},
        {"_leading.lua", "Leading"},
        {"trailing_.lua", "Trailing"},
        {"with space.lua", "WithSpace"},
        {"noext", "Noext"},
        {"v2_job.lua", "V2Job"},
        {"2fa.lua", "2fa"},
        {"script.lua.bak", "ScriptLuaBak"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[64];
        wh_lworker_name_from_file(cases[i].file, out, sizeof out);
        ASSERT_STREQ(out, cases[i].want);
    }
    /* truncation: at most n bytes, always terminated */
    char small[8];
    memset(small, 'Z', sizeof small);
    wh_lworker_name_from_file("download_worker.lua", small, 4);
    ASSERT_STREQ(small, "Dow");
    ASSERT_EQ_INT(small[4], 'Z');
    memset(small, 'Z', sizeof small);
    wh_lworker_name_from_file("download_worker.lua", small, 1);
    ASSERT_STREQ(small, "");
    ASSERT_EQ_INT(small[1], 'Z');
    /* n == 0: nothing may be written */
    memset(small, 'Z', sizeof small);
    wh_lworker_name_from_file("download_worker.lua", small, 0);
    ASSERT_EQ_INT(small[0], 'Z');
}

static void test_valid_name(void) {
    const char *good[] = {"A", "DownloadWorker", "A1", "A_b", "HTTP", "Billing::Invoice", "A::B::C", "X9_::Y"};
    const char *bad[] = {"", "a", "downloadWorker", "1A", "_A", "A-b", "A b", "A::", "::A", "A:B", "A:::B",
                         "A::b", "A::1", "A.B", "A::B::", "\xC3\x84rger", "A\xC3\xA4", "A\n"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        if (!wh_lworker_valid_name(good[i])) WH_TEST_FAIL("\"%s\" refused", good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (wh_lworker_valid_name(bad[i])) WH_TEST_FAIL("\"%s\" accepted", bad[i]);
    ASSERT(!wh_lworker_valid_name(NULL));
}

int main(void) {
    /* a job that escapes its timeout would hang the suite: fail instead */
    alarm(300);
    RUN(test_timeout_busy_loop);
    RUN(test_timeout_cannot_be_caught);
    RUN(test_worker_timeout_wins);
    RUN(test_timeout_inside_coroutines);
    RUN(test_xpcall_still_works);
    RUN(test_timeout_survives_sethook);
    RUN(test_job_hooks_still_work);
    RUN(test_memory_limit);
    RUN(test_memory_limit_while_loading);
    RUN(test_os_exit_raises);
    RUN(test_globals_do_not_leak);
    RUN(test_globals_dropped_after_failure);
    RUN(test_module_local_persists);
    RUN(test_perform_errors_and_unknown_class);
    RUN(test_refused_args_run_no_lua);
    RUN(test_interrupt);
    RUN(test_nested_timeout_is_not_the_outer_outcome);
    RUN(test_nested_job_in_job_without_timeout);
    RUN(test_syntax_error);
    RUN(test_error_while_loading);
    RUN(test_script_must_return_a_worker);
    RUN(test_duplicate_names);
    RUN(test_names_from_files);
    RUN(test_file_name_without_class_name);
    RUN(test_name_from_file);
    RUN(test_valid_name);
    return TEST_REPORT();
}
