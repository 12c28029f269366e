/* lmodule.h -- the `workerhost` Lua module (require "workerhost"): the same
 * module in the host's VMs and in a plain lua5.4 (busted specs, scripts).
 *
 * C parts: wh.worker, wh.enqueue, wh.log.*, wh.null, wh.array_mt; the type
 * constructors (wh.types) come from the embedded workerhost.lua, and the
 * busted helper from the embedded testing.lua ("workerhost.testing").
 *
 * wh.enqueue reaches whatever host owns the lua_State through a wh_lhost
 * installed with wh_lmodule_set_host. The host's VMs install the real host;
 * workerhost.testing installs an in-VM ForegroundBlocking one. */
#ifndef WH_LMODULE_H
#define WH_LMODULE_H

#include <lua.h>

#include "core/err.h"
#include "json/json.h"
#include "schema/schema.h"
#include "workerhost.h"

typedef struct wh_lhost {
    /* The schema of worker `name`, or NULL when no such worker. Borrowed. */
    const wh_schema *(*find)(void *ud, lua_State *L, const char *name);
    /* Enqueues a job whose call-shaped arguments (`args`, in `doc`) passed the
     * check. Takes ownership of doc. Pushes wh.enqueue's results onto L and
     * returns how many; or returns a negative WH_E* with err set (nothing
     * pushed). May run the job at once (ForegroundBlocking). */
    int (*enqueue)(void *ud, lua_State *L, const char *name, wh_json_doc *doc, const wh_json *args,
                   const wh_enqueue_options *opts, wh_err *err);
    void *ud;
    /* Optional (NULL: wh.enqueue_bulk calls enqueue once per job): enqueues n
     * checked jobs at once (docs[i] holds call-shaped args at its root).
     * Takes ownership of every doc, also on failure. Returns 0 and writes each
     * job id into jids[i], or a negative WH_E* with err set. */
    int (*enqueue_bulk)(void *ud, lua_State *L, const char *name, wh_json_doc **docs, size_t n,
                        const wh_enqueue_options *opts, char (*jids)[WH_JID_SIZE], wh_err *err);
} wh_lhost;

/* Opens the module: pushes the module table (cached in package.loaded).
 * Its `connect` is the "workerhost.connect" module (app/connect.h), opened
 * here when package.preload holds it, absent otherwise. lua_CFunction,
 * [-0,+1,m]. */
int wh_lmodule_open(lua_State *L);

/* Installs both modules in package.preload ("workerhost",
 * "workerhost.testing"). [-0,+0,m] */
void wh_lmodule_preload(lua_State *L);

/* Installs (or with NULL removes) the host behind wh.enqueue. The struct is
 * borrowed: it must outlive its installation. [-0,+0,m] */
void wh_lmodule_set_host(lua_State *L, const wh_lhost *host);

/* Parses wh.enqueue's options table at idx (nil allowed) into *out.
 * Raises a Lua error on a bad option. [-0,+0,v] */
void wh_lmodule_check_enqueue_options(lua_State *L, int idx, wh_enqueue_options *out);

#endif
