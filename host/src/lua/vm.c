/* vm.c -- see vm.h. */
#include "lua/vm.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/mem.h"
#include "lua/lcall.h"

/* Why the VM's allocator last refused to grow. */
enum { OOM_NONE, OOM_LIMIT, OOM_SYSTEM };

struct wh_vm {
    lua_State *L;
    size_t used, limit;
    int oom; /* OOM_*: reset when a job starts */
    bool tainted;
    bool job_hooks; /* a job set a hook of its own (debug.sethook): see hooks_key */
    /* deadline of the running job (monotonic seconds), 0 = none */
    double deadline, timeout;
    bool timed_out;
    atomic_bool interrupt; /* set by another thread: stop the running job */
    int depth;             /* jobs running in this VM: > 1 while a nested job runs */
    int defs_ref;  /* registry: table name -> definition */
    int names_ref; /* registry: sorted list of names */
    size_t nworkers;
    /* C index of the definitions, sorted by name, so finding a job's worker
     * costs a binary search and one rawgeti, not a walk through tables */
    struct vm_entry {
        const char *name;     /* the Lua string, kept alive by the definition */
        wh_lworker_info info; /* borrowed strings and schema, same lifetime */
        int ref;              /* registry reference to the definition */
    } *entries;
};

static const char overlay_key = 0; /* registry: this job's new globals */
/* registry: the hooks the running job set with debug.sethook, a table with
 * weak keys: thread -> {function, mask, count, instructions counted} */
static const char hooks_key = 0;

/* instructions between two looks at the deadline */
#define DEADLINE_COUNT 1000

/* ---- memory ---- */

static void *limited_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    wh_vm *vm = ud;
    if (ptr == NULL) osize = 0;
    if (nsize == 0) {
        free(ptr);
        vm->used -= osize;
        return NULL;
    }
    if (nsize > osize) {
        if (vm->limit && vm->used + (nsize - osize) > vm->limit) {
            vm->oom = OOM_LIMIT;
            return NULL;
        }
        /* a host allocation is waiting for memory the system refused
         * (core/mem.h): give memory back rather than take more */
        if (wh_mem_starving()) {
            vm->oom = OOM_SYSTEM;
            return NULL;
        }
    }
    /* The system may refuse before the limit (ulimit -v, a cgroup, other
     * VMs): NULL, never an abort, so Lua raises "not enough memory" in
     * this VM's job alone. */
    void *p = realloc(ptr, nsize);
    if (p == NULL) {
        if (nsize > osize) vm->oom = OOM_SYSTEM;
        return NULL;
    }
    vm->used = vm->used - osize + nsize;
    return p;
}

static int panic(lua_State *L) {
    /* Only reachable by a bug: every call into Lua is protected. */
    const char *m = lua_tostring(L, -1);
    fprintf(stderr, "workerhost: PANIC: unprotected error in Lua: %s\n", m ? m : "?");
    abort();
}

/* ---- the deadline hook (redis script_lua.c): once the deadline passes it
 * re-arms itself to fire on every instruction, so a script that catches the
 * error with pcall hits it again at once and unwinds to our own pcall.
 *
 * A job cannot remove it: debug.sethook and debug.gethook are replaced by
 * job_sethook and job_gethook, which keep the job's own hook (a profiler's,
 * a coverage tool's) in hooks_key and arm this hook with the union of both
 * masks; this hook checks the deadline first, then calls the job's. ---- */

static void call_job_hook(lua_State *L, lua_Debug *ar);
static void deadline_hook(lua_State *L, lua_Debug *ar);

/* The hook on every instruction of L, and of the VM's main thread, where
 * the job's perform runs: when L is a coroutine, the error ends it, and the
 * code that resumed it (coroutine.resume returns false) must not go on to
 * finish the job either. */
static void every_instruction(wh_vm *vm, lua_State *L) {
    lua_sethook(L, deadline_hook, LUA_MASKCOUNT | LUA_MASKLINE, 1);
    if (L != vm->L) lua_sethook(vm->L, deadline_hook, LUA_MASKCOUNT | LUA_MASKLINE, 1);
}

static void deadline_hook(lua_State *L, lua_Debug *ar) {
    wh_vm *vm = *(wh_vm **)lua_getextraspace(L);
    if (atomic_load_explicit(&vm->interrupt, memory_order_relaxed)) {
        every_instruction(vm, L);
        luaL_error(L, "interrupted: the host is shutting down");
    }
    if (vm->deadline != 0 && wh_clock_monotonic() >= vm->deadline) {
        vm->timed_out = true;
        every_instruction(vm, L);
        char secs[32]; /* lua_pushfstring has no %g */
        snprintf(secs, sizeof secs, "%g", vm->timeout);
        luaL_error(L, "timed out after %s seconds", secs);
    }
    if (vm->job_hooks) call_job_hook(L, ar);
}

/* Arms the deadline hook on L1 together with a job's own hook of `mask`
 * and `count` (0, 0: none): every event either wants, and a count no larger
 * than DEADLINE_COUNT. Once the job timed out or was interrupted, every
 * instruction, whatever the job asks. */
static void arm(wh_vm *vm, lua_State *L1, int mask, int count) {
    if (vm->timed_out || atomic_load_explicit(&vm->interrupt, memory_order_relaxed)) {
        lua_sethook(L1, deadline_hook, LUA_MASKCOUNT | LUA_MASKLINE, 1);
        return;
    }
    int c = (mask & LUA_MASKCOUNT) && count < DEADLINE_COUNT ? count : DEADLINE_COUNT;
    lua_sethook(L1, deadline_hook, mask | LUA_MASKCOUNT, c);
}

/* Calls the hook the job set on L for this event, as ldblib's hookf does:
 * f(event name, current line or nil). A count hook of count n is called
 * once per n instructions counted (to within DEADLINE_COUNT when n is
 * larger). Errors it raises go to the running code, as with Lua's. */
static void call_job_hook(lua_State *L, lua_Debug *ar) {
    static const char *const names[] = {"call", "return", "line", "count", "tail call"};
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &hooks_key) != LUA_TTABLE) {
        lua_pop(L, 1);
        return;
    }
    lua_pushthread(L);
    if (lua_rawget(L, -2) != LUA_TTABLE) { /* no hook of the job's on this thread */
        lua_pop(L, 2);
        return;
    }
    lua_rawgeti(L, -1, 2);
    lua_rawgeti(L, -2, 3);
    int mask = (int)lua_tointeger(L, -2), count = (int)lua_tointeger(L, -1);
    lua_pop(L, 2);
    bool fire;
    if (ar->event == LUA_HOOKCOUNT) {
        fire = false;
        if (mask & LUA_MASKCOUNT) {
            lua_rawgeti(L, -1, 4);
            lua_Integer counted = lua_tointeger(L, -1) + lua_gethookcount(L);
            lua_pop(L, 1);
            if ((fire = counted >= count)) counted -= count;
            lua_pushinteger(L, counted);
            lua_rawseti(L, -2, 4); /* an existing array slot: no allocation */
        }
    } else {
        int want = ar->event == LUA_HOOKTAILCALL ? LUA_MASKCALL : 1 << ar->event;
        fire = (mask & want) != 0;
    }
    if (!fire) {
        lua_pop(L, 2);
        return;
    }
    lua_rawgeti(L, -1, 1);
    lua_pushstring(L, names[ar->event]);
    if (ar->currentline >= 0) lua_pushinteger(L, ar->currentline);
    else lua_pushnil(L);
    lua_call(L, 2, 0);
    lua_pop(L, 2);
}

/* debug.sethook([thread,] [f, mask [, count]]) and debug.gethook([thread])
 * with Lua's meaning (ldblib.c), for the job's own hook, which runs next to
 * the deadline hook instead of replacing it. */

static lua_State *thread_arg(lua_State *L, int *arg) {
    if (lua_isthread(L, 1)) {
        *arg = 1;
        return lua_tothread(L, 1);
    }
    *arg = 0;
    return L;
}

static int job_sethook(lua_State *L) {
    wh_vm *vm = *(wh_vm **)lua_getextraspace(L);
    int arg;
    lua_State *L1 = thread_arg(L, &arg);
    int mask = 0, count = 0;
    if (!lua_isnoneornil(L, arg + 1)) {
        const char *smask = luaL_checkstring(L, arg + 2);
        luaL_checktype(L, arg + 1, LUA_TFUNCTION);
        count = (int)luaL_optinteger(L, arg + 3, 0);
        if (strchr(smask, 'c')) mask |= LUA_MASKCALL;
        if (strchr(smask, 'r')) mask |= LUA_MASKRET;
        if (strchr(smask, 'l')) mask |= LUA_MASKLINE;
        if (count > 0) mask |= LUA_MASKCOUNT;
    }
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &hooks_key) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_createtable(L, 0, 1);
        lua_createtable(L, 0, 1);
        lua_pushliteral(L, "k");
        lua_setfield(L, -2, "__mode");
        lua_setmetatable(L, -2);
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &hooks_key);
    }
    if (arg) lua_pushvalue(L, 1);
    else lua_pushthread(L);
    if (mask) {
        lua_createtable(L, 4, 0);
        lua_pushvalue(L, arg + 1);
        lua_rawseti(L, -2, 1);
        lua_pushinteger(L, mask);
        lua_rawseti(L, -2, 2);
        lua_pushinteger(L, count);
        lua_rawseti(L, -2, 3);
        lua_pushinteger(L, 0);
        lua_rawseti(L, -2, 4);
    } else {
        lua_pushnil(L);
    }
    lua_rawset(L, -3);
    lua_pop(L, 1);
    if (mask) vm->job_hooks = true;
    arm(vm, L1, mask, count);
    return 0;
}

static int job_gethook(lua_State *L) {
    int arg;
    thread_arg(L, &arg);
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &hooks_key) == LUA_TTABLE) {
        if (arg) lua_pushvalue(L, 1);
        else lua_pushthread(L);
        if (lua_rawget(L, -2) == LUA_TTABLE) {
            lua_rawgeti(L, -1, 1);
            lua_rawgeti(L, -2, 2);
            int mask = (int)lua_tointeger(L, -1);
            lua_pop(L, 1);
            char smask[4], *p = smask;
            if (mask & LUA_MASKCALL) *p++ = 'c';
            if (mask & LUA_MASKRET) *p++ = 'r';
            if (mask & LUA_MASKLINE) *p++ = 'l';
            *p = '\0';
            lua_pushstring(L, smask);
            lua_rawgeti(L, -3, 3);
            return 3;
        }
    }
    luaL_pushfail(L);
    return 1;
}

/* Drops the hooks the job set (they last until its end, like its globals).
 * Allocates nothing: the key exists when job_hooks is set. */
static void drop_job_hooks(wh_vm *vm) {
    if (!vm->job_hooks) return;
    lua_pushnil(vm->L);
    lua_rawsetp(vm->L, LUA_REGISTRYINDEX, &hooks_key);
    vm->job_hooks = false;
}

/* ---- os.exit raises ---- */

static int guarded_exit(lua_State *L) {
    const char *code = lua_isnoneornil(L, 1) ? "" : luaL_tolstring(L, 1, NULL);
    return luaL_error(L, "os.exit(%s) called inside a job; the host keeps running", code);
}

/* ---- xpcall, guarded ----
 * When the deadline hook raises its error, Lua calls xpcall's message
 * handler with hooks disabled (they stay off while a hook is running), so a
 * handler that loops would escape the timeout for good. The replacement
 * wraps the script's handler: once the job has timed out or been
 * interrupted, the handler is skipped and the error goes on unchanged. */

static int guarded_handler(lua_State *L) {
    wh_vm *vm = *(wh_vm **)lua_getextraspace(L);
    if (vm->timed_out || atomic_load_explicit(&vm->interrupt, memory_order_relaxed)) return 1;
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

/* the continuation of the protected call, as for the built-in xpcall */
static int xpcall_done(lua_State *L, int status, lua_KContext extra) {
    if (status != LUA_OK && status != LUA_YIELD) {
        lua_pushboolean(L, 0);
        lua_pushvalue(L, -2);
        return 2;
    }
    return lua_gettop(L) - (int)extra;
}

/* xpcall(f, handler, ...) */
static int guarded_xpcall(lua_State *L) {
    int n = lua_gettop(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, guarded_handler, 1);
    lua_replace(L, 2);     /* stack: f, guarded handler, args... */
    lua_pushboolean(L, 1); /* the first result on success */
    lua_pushvalue(L, 1);   /* f again, to call */
    lua_rotate(L, 3, 2);   /* stack: f, handler, true, f, args... */
    int status = lua_pcallk(L, n - 2, LUA_MULTRET, 2, 2, xpcall_done);
    return xpcall_done(L, status, 2);
}

/* ---- per-job globals: _G's metatable sends new globals to an overlay
 * table that is replaced after each job, so they do not leak into the next
 * job. Globals that existed when the scripts loaded are shared as usual. ---- */

static int overlay_index(lua_State *L) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &overlay_key);
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    return 1;
}

static int overlay_newindex(lua_State *L) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &overlay_key);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 3);
    lua_rawset(L, -3);
    return 0;
}

/* ---- setup, inside a protected call so a failure is an error, not a panic ---- */

typedef struct setup_ctx {
    wh_vm *vm;
    const wh_vm_options *opts;
} setup_ctx;

/* package.searchers entry for the app modules held in memory: upvalue 1 is
 * a table name -> {code, chunkname}. [-1,+(1|2),e] */
static int memory_searcher(lua_State *L) {
    const char *name = luaL_checkstring(L, 1);
    if (lua_getfield(L, lua_upvalueindex(1), name) != LUA_TTABLE) {
        lua_pushfstring(L, "no app module '%s' (app modules are the .lua files under workers.lua_path "
                           "when the scripts were loaded)", name);
        return 1;
    }
    lua_rawgeti(L, -1, 1);
    lua_rawgeti(L, -2, 2);
    size_t len;
    const char *code = lua_tolstring(L, -2, &len);
    const char *chunk = lua_tostring(L, -1);
    if (luaL_loadbufferx(L, code, len, chunk, "t") != LUA_OK)
        return luaL_error(L, "error loading module '%s':\n\t%s", name, lua_tostring(L, -1));
    lua_pushstring(L, chunk + 1); /* the loader's second argument, as the file searcher passes the path */
    return 2;
}

static void install_modules(lua_State *L, const wh_source *m, size_t n, bool check) {
    lua_newtable(L);
    for (size_t i = 0; i < n; i++) {
        if (check) {
            if (luaL_loadbufferx(L, m[i].code, m[i].len, m[i].chunkname, "t") != LUA_OK) lua_error(L);
            lua_pop(L, 1);
        }
        if (lua_getfield(L, -1, m[i].module) != LUA_TNIL) { /* the first wins */
            lua_pop(L, 1);
            continue;
        }
        lua_pop(L, 1);
        lua_createtable(L, 2, 0);
        lua_pushlstring(L, m[i].code, m[i].len);
        lua_rawseti(L, -2, 1);
        lua_pushstring(L, m[i].chunkname);
        lua_rawseti(L, -2, 2);
        lua_setfield(L, -2, m[i].module);
    }
    lua_pushcclosure(L, memory_searcher, 1);
    /* package.searchers: preload, then ours, then the path and C searchers */
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "searchers");
    lua_Integer k = (lua_Integer)lua_rawlen(L, -1);
    for (; k >= 2; k--) {
        lua_rawgeti(L, -1, k);
        lua_rawseti(L, -2, k + 1);
    }
    lua_pushvalue(L, -3);
    lua_rawseti(L, -2, 2);
    lua_pop(L, 3);
}

static int setup(lua_State *L) {
    const setup_ctx *c = lua_touserdata(L, 1);
    luaL_openlibs(L);
    wh_lmodule_preload(L);
    if (c->opts->preload) {
        luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
        for (const luaL_Reg *r = c->opts->preload; r->name; r++) {
            lua_pushcfunction(L, r->func);
            lua_setfield(L, -2, r->name);
        }
        lua_pop(L, 1);
    }
    wh_lmodule_set_host(L, c->opts->host);
    lua_getglobal(L, "os");
    lua_pushcfunction(L, guarded_exit);
    lua_setfield(L, -2, "exit");
    lua_pop(L, 1);
    lua_pushcfunction(L, guarded_xpcall);
    lua_setglobal(L, "xpcall");
    lua_getglobal(L, "debug");
    lua_pushcfunction(L, job_sethook);
    lua_setfield(L, -2, "sethook");
    lua_pushcfunction(L, job_gethook);
    lua_setfield(L, -2, "gethook");
    lua_pop(L, 1);
    /* the hook from the start: coroutines inherit it from the thread that
     * creates them, including those a script creates while it loads */
    lua_sethook(L, deadline_hook, LUA_MASKCOUNT, DEADLINE_COUNT);
    if (c->opts->modules) install_modules(L, c->opts->modules, c->opts->nmodules, c->opts->check_modules);
    else if (c->opts->lua_path) {
        lua_getglobal(L, "package");
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        for (const char *const *d = c->opts->lua_path; *d; d++) {
            lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;", *d, *d);
            luaL_addvalue(&b);
        }
        lua_getfield(L, -2, "path");
        luaL_addvalue(&b);
        luaL_pushresult(&b);
        lua_setfield(L, -2, "path");
        lua_pop(L, 1);
    }
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &overlay_key);
    return 0;
}

/* stack: ctx(light), sources(light), n(integer) -> defs table, names list */
typedef struct load_ctx {
    const wh_source *sources;
    size_t n;
} load_ctx;

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int load_all(lua_State *L) {
    const load_ctx *c = lua_touserdata(L, 1);
    lua_newtable(L); /* 2: name -> definition */
    lua_newtable(L); /* 3: name -> chunkname */
    for (size_t i = 0; i < c->n; i++) {
        const wh_source *s = &c->sources[i];
        if (luaL_loadbufferx(L, s->code, s->len, s->chunkname, "t") != LUA_OK) lua_error(L);
        lua_call(L, 0, 1);
        wh_lworker_info info;
        if (wh_lworker_info_get(L, -1, &info) != 0)
            return luaL_error(L, "%s: the script must return wh.worker{...}, got %s", s->chunkname + 1,
                              luaL_typename(L, -1));
        if (info.name == NULL) {
            char name[256];
            wh_lworker_name_from_file(s->path, name, sizeof name);
            if (!wh_lworker_valid_name(name))
                return luaL_error(L, "%s: cannot make a class name from the file name; set name = ...",
                                  s->chunkname + 1);
            wh_lworker_set_name(L, -1, name);
            wh_lworker_info_get(L, -1, &info);
        }
        if (lua_getfield(L, 3, info.name) != LUA_TNIL)
            return luaL_error(L, "%s: worker %s is already defined in %s", s->chunkname + 1, info.name,
                              lua_tostring(L, -1) + 1);
        lua_pop(L, 1);
        lua_pushstring(L, s->chunkname);
        lua_setfield(L, 3, info.name);
        lua_pushstring(L, s->chunkname + 1);
        lua_setfield(L, -2, "file");
        lua_setfield(L, 2, info.name);
    }
    lua_pop(L, 1);
    /* sorted names */
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, 2)) { lua_pop(L, 1); n++; }
    const char **names = lua_newuserdatauv(L, (n ? n : 1) * sizeof *names, 0); /* 3 */
    size_t i = 0;
    lua_pushnil(L);
    while (lua_next(L, 2)) { lua_pop(L, 1); names[i++] = lua_tostring(L, -1); }
    qsort(names, n, sizeof *names, cmp_names);
    lua_createtable(L, (int)n, 0); /* 4 */
    for (i = 0; i < n; i++) {
        lua_pushstring(L, names[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_remove(L, 3);
    return 2;
}

static int finish(wh_vm *vm, wh_err *err);

wh_vm *wh_vm_new(const wh_vm_options *opts, const wh_source *sources, size_t nsources, wh_err *err) {
    /* calloc, not wh_xcalloc: a VM is built for the next job, and when the
     * system is out of memory that job fails (WH_ENOMEM), not the host */
    wh_vm *vm = calloc(1, sizeof *vm);
    if (vm == NULL) {
        wh_err_set(err, WH_ENOMEM, "cannot create a Lua VM: out of memory");
        return NULL;
    }
    vm->limit = opts->memory_limit;
    atomic_init(&vm->interrupt, false);
    vm->defs_ref = vm->names_ref = LUA_NOREF;
    vm->L = lua_newstate(limited_alloc, vm);
    if (vm->L == NULL) {
        wh_free(vm);
        wh_err_set(err, WH_ENOMEM, "cannot create a Lua state: out of memory (memory_limit too small?)");
        return NULL;
    }
    lua_State *L = vm->L;
    lua_atpanic(L, panic);
    *(wh_vm **)lua_getextraspace(L) = vm;
    lua_gc(L, LUA_GCGEN, 0, 0);

    setup_ctx sc = {vm, opts};
    lua_pushcfunction(L, setup);
    lua_pushlightuserdata(L, &sc);
    if (wh_lcall_pcall(L, 1, 0, WH_ESCRIPT, NULL, err) != 0) goto fail;

    load_ctx lc = {sources, nsources};
    lua_pushcfunction(L, load_all);
    lua_pushlightuserdata(L, &lc);
    if (wh_lcall_pcall(L, 1, 2, WH_ESCRIPT, NULL, err) != 0) {
        if (err && err->code == WH_ENOMEM)
            wh_err_prefix(err, vm->oom == OOM_SYSTEM ? "loading worker scripts (the system refused memory below "
                                                       "workers.memory_limit)"
                                                     : "loading worker scripts (workers.memory_limit)");
        goto fail;
    }
    vm->nworkers = lua_rawlen(L, -1);
    if (finish(vm, err) != 0) goto fail; /* takes the two tables */
    drop_job_hooks(vm); /* a hook a script set while it loaded */
    lua_sethook(L, deadline_hook, LUA_MASKCOUNT, DEADLINE_COUNT);
    return vm;
fail:
    lua_close(L);
    wh_free(vm->entries);
    wh_free(vm);
    return NULL;
}

void wh_vm_free(wh_vm *vm) {
    if (vm == NULL) return;
    lua_close(vm->L);
    wh_free(vm->entries);
    wh_free(vm);
}

lua_State *wh_vm_state(wh_vm *vm) { return vm->L; }
size_t wh_vm_nworkers(const wh_vm *vm) { return vm->nworkers; }
bool wh_vm_tainted(const wh_vm *vm) { return vm->tainted; }
size_t wh_vm_memory(const wh_vm *vm) { return vm->used; }

/* Protected: everything here allocates, and a VM may be built while memory
 * is short. Keeps the definitions and the names, builds the C index of the
 * workers, and from then on sends new globals to the per-job overlay.
 * stack: vm (light), names list, defs table */
static int finish_protected(lua_State *L) {
    wh_vm *vm = lua_touserdata(L, 1);
    lua_pushvalue(L, 2);
    vm->names_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, 3);
    vm->defs_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    for (size_t i = 0; i < vm->nworkers; i++) {
        struct vm_entry *e = &vm->entries[i];
        lua_rawgeti(L, 2, (lua_Integer)i + 1);
        e->name = lua_tostring(L, -1);
        lua_rawget(L, 3);
        wh_lworker_info_get(L, -1, &e->info);
        e->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_pushglobaltable(L);
    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, overlay_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, overlay_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_setmetatable(L, -2);
    return 0;
}

/* stack: defs table, names list -> (popped) */
static int finish(wh_vm *vm, wh_err *err) {
    lua_State *L = vm->L;
    vm->entries = calloc(vm->nworkers ? vm->nworkers : 1, sizeof *vm->entries);
    if (vm->entries == NULL) {
        lua_pop(L, 2);
        return wh_err_set(err, WH_ENOMEM, "cannot index the workers: out of memory");
    }
    lua_pushcfunction(L, finish_protected);
    lua_insert(L, -3);
    lua_pushlightuserdata(L, vm);
    lua_insert(L, -3); /* finish_protected, vm, defs, names */
    lua_rotate(L, -2, 1); /* ..., names, defs */
    return wh_lcall_pcall(L, 3, 0, WH_ESCRIPT, NULL, err);
}

int wh_vm_worker(wh_vm *vm, size_t i, wh_lworker_info *out) {
    if (i >= vm->nworkers) return WH_ENOCLASS;
    *out = vm->entries[i].info;
    return 0;
}

static const struct vm_entry *entry_of(const wh_vm *vm, const char *name) {
    size_t lo = 0, hi = vm->nworkers;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, vm->entries[mid].name);
        if (c == 0) return &vm->entries[mid];
        if (c < 0) hi = mid;
        else lo = mid + 1;
    }
    return NULL;
}

int wh_vm_find(wh_vm *vm, const char *name, wh_lworker_info *out) {
    const struct vm_entry *e = entry_of(vm, name);
    if (e == NULL) return WH_ENOCLASS;
    *out = e->info;
    lua_rawgeti(vm->L, LUA_REGISTRYINDEX, e->ref);
    return 0;
}

int wh_vm_info(const wh_vm *vm, const char *name, wh_lworker_info *out) {
    const struct vm_entry *e = entry_of(vm, name);
    if (e == NULL) return WH_ENOCLASS;
    *out = e->info;
    return 0;
}

/* True when the job created globals (no allocation: safe unprotected). */
static bool overlay_used(lua_State *L) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &overlay_key);
    lua_pushnil(L);
    bool used = lua_next(L, -2) != 0;
    lua_pop(L, used ? 3 : 1);
    return used;
}

static int reset_overlay_protected(lua_State *L) {
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &overlay_key);
    return 0;
}

void wh_vm_perform(wh_vm *vm, const wh_job_meta *meta, const wh_json *payload_args, double timeout,
                   wh_run_result *res) {
    lua_State *L = vm->L;
    res->rc = 0;
    res->traceback = NULL;
    wh_err_clear(&res->err);
    wh_lworker_info info;
    if (wh_vm_find(vm, meta->class_name, &info) != 0) {
        res->rc = wh_err_set(&res->err, WH_ENOCLASS, "unknown worker class \"%s\"", meta->class_name);
        return;
    }
    int def = lua_gettop(L);
    if (info.timeout > 0) timeout = info.timeout;
    double outer_deadline = vm->deadline, outer_timeout = vm->timeout; /* nested jobs */
    bool outer_timed_out = vm->timed_out;
    bool nested = vm->depth > 0;
    if (timeout > 0) {
        double d = wh_clock_monotonic() + timeout;
        if (vm->deadline == 0 || d < vm->deadline) {
            vm->deadline = d;
            vm->timeout = timeout;
        }
    }
    vm->timed_out = false;
    if (!nested) vm->oom = OOM_NONE;
    vm->depth++;
    res->rc = wh_lworker_perform(L, def, &info, payload_args, meta, &res->traceback, &res->err);
    vm->depth--;
    lua_settop(L, def - 1);
    bool timed_out = vm->timed_out;
    vm->deadline = outer_deadline;
    vm->timeout = outer_timeout;
    vm->timed_out = outer_timed_out; /* a nested job's timeout is not the outer job's */
    if (!nested) {
        drop_job_hooks(vm);
        lua_sethook(L, deadline_hook, LUA_MASKCOUNT, DEADLINE_COUNT);
    }
    if (timed_out && res->rc == WH_EJOB) {
        res->rc = WH_ETIMEOUT;
        res->err.code = WH_ETIMEOUT;
    }
    if (res->rc == WH_ENOMEM) {
        vm->tainted = true;
        if (vm->oom == OOM_LIMIT)
            wh_err_set(&res->err, WH_ENOMEM, "%s: out of memory: the job passed the VM's memory limit "
                       "(workers.memory_limit = %zu bytes)", meta->class_name, vm->limit);
        else
            wh_err_set(&res->err, WH_ENOMEM, "%s: out of memory: the system refused an allocation with the VM "
                       "at %zu bytes, below its limit (workers.memory_limit = %zu bytes): the process may not use "
                       "workers.concurrency x workers.memory_limit", meta->class_name, vm->used, vm->limit);
        /* give back what the failed job held now, not when the VM is
         * rebuilt: the host and the other VMs may be waiting for it */
        lua_gc(L, LUA_GCCOLLECT, 0);
    }
    if (!nested && !vm->tainted && overlay_used(L)) {
        lua_pushcfunction(L, reset_overlay_protected);
        wh_err ignored;
        if (wh_lcall_pcall(L, 0, 0, WH_EJOB, NULL, &ignored) != 0) vm->tainted = true;
    }
}

wh_vm *wh_vm_from_state(lua_State *L) { return *(wh_vm **)lua_getextraspace(L); }

void wh_vm_interrupt(wh_vm *vm) { atomic_store(&vm->interrupt, true); }
