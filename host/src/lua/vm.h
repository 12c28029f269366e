/* vm.h -- one Lua VM of the host: a lua_State with a memory limit, the
 * standard libraries, `workerhost` preloaded, os.exit made to raise, the
 * worker scripts loaded from in-memory sources, and a deadline hook that a
 * job's debug.sethook cannot remove (its own hook runs next to it).
 *
 * The allocator never aborts: past memory_limit, or when the system refuses
 * (a process limit below concurrency x memory_limit), it returns NULL and
 * the job fails with WH_ENOMEM.
 *
 * A wh_vm belongs to one thread at a time; it is never shared. */
#ifndef WH_VM_H
#define WH_VM_H

#include <lauxlib.h>
#include <lua.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/err.h"
#include "lua/lmodule.h"
#include "lua/lworker.h"

typedef struct wh_vm wh_vm;

/* One worker script, kept in memory so every VM (and every rebuild) loads
 * the same code, whatever is on disk later. */
typedef struct wh_source {
    char *path;      /* absolute path, for messages */
    char *chunkname; /* "@workers/x.lua" (relative to the root) */
    char *code;      /* owned */
    size_t len;
    char *module;    /* an app module: the name `require` takes ("a.b"); NULL for a worker script */
} wh_source;

typedef struct wh_vm_options {
    size_t memory_limit;      /* bytes; 0 = none */
    const char *const *lua_path; /* NULL-terminated dirs added to package.path; may be NULL */
    const wh_lhost *host;     /* behind wh.enqueue; may be NULL */
    /* The app's Lua modules, kept in memory (see catalog.h). When given,
     * `require` finds them (copied into the VM) before anything on
     * package.path, and lua_path is not added to package.path, so a VM
     * never reads an app module from disk: a rebuilt VM runs the same
     * module code as the one it replaces. The first of a name wins. */
    const wh_source *modules;
    size_t nmodules;
    /* Compile (not run) every module while the VM is built, so a syntax
     * error in a module no script requires yet is an error now (the
     * catalog's scratch VM); WH_ESCRIPT naming file and line. */
    bool check_modules;
    /* More modules for package.preload, put there before any source runs:
     * {name, opener} pairs ending with {NULL, NULL} (luaL_Reg); may be
     * NULL. The host preloads "workerhost.connect" (app/connect.h) this
     * way, which the workerhost module then sets as wh.connect. */
    const luaL_Reg *preload;
} wh_vm_options;

/* Creates a VM and loads the sources (in order). Every source must return a
 * definition made by wh.worker; unnamed ones are named after their file.
 * Returns an owned VM (free with wh_vm_free), or NULL with err set:
 * WH_ESCRIPT "workers/x.lua:12: ..." naming file and line, or a duplicate
 * worker name naming both files; WH_ENOMEM when memory runs out (the limit,
 * or the system: this never aborts). */
wh_vm *wh_vm_new(const wh_vm_options *opts, const wh_source *sources, size_t nsources, wh_err *err);
void wh_vm_free(wh_vm *vm); /* accepts NULL */

lua_State *wh_vm_state(wh_vm *vm);

/* Number of workers defined, and the i-th one's definition (sorted by name).
 * The info's strings and schema are borrowed from the VM. */
size_t wh_vm_nworkers(const wh_vm *vm);
int wh_vm_worker(wh_vm *vm, size_t i, wh_lworker_info *out);
/* Pushes the definition table of `name` and fills *out; returns 0, or
 * WH_ENOCLASS with nothing pushed. [-0,+(1|0),-] */
int wh_vm_find(wh_vm *vm, const char *name, wh_lworker_info *out);
/* The same without touching the Lua stack (safe while a job runs in the VM,
 * from inside that job's C calls): 0 or WH_ENOCLASS. */
int wh_vm_info(const wh_vm *vm, const char *name, wh_lworker_info *out);

/* The result of one perform. */
typedef struct wh_run_result {
    int rc;             /* 0, WH_EARGS, WH_ENOCLASS, WH_EJOB, WH_ETIMEOUT, WH_ENOMEM (the VM's limit
                         * or the system's refusal: the message says which) */
    wh_err err;         /* the error when rc != 0 */
    char *traceback;    /* owned (wh_free) or NULL */
} wh_run_result;

/* Runs one job of class meta->class_name with the payload `args` array:
 * the C check, then perform, under `timeout` seconds (0 = none). Globals the
 * job creates are dropped afterwards. The caller must free res->traceback. */
void wh_vm_perform(wh_vm *vm, const wh_job_meta *meta, const wh_json *payload_args, double timeout,
                   wh_run_result *res);

/* True when the VM should be rebuilt before its next job (after running out
 * of memory: what was half-built cannot be trusted). */
bool wh_vm_tainted(const wh_vm *vm);
size_t wh_vm_memory(const wh_vm *vm); /* bytes in use */


/* The wh_vm that owns L (a VM made by wh_vm_new), for hosts that receive a
 * lua_State in a callback. */
wh_vm *wh_vm_from_state(lua_State *L);

/* Makes the job running in vm fail at its next Lua instruction ("interrupted:
 * the host is shutting down"), and every later one. The only function here
 * another thread may call. It cannot interrupt a long call inside C. */
void wh_vm_interrupt(wh_vm *vm);

#endif
