/* catalog.h -- the worker scripts of one generation: their sources, kept in
 * memory (every VM, and every rebuilt VM, loads these, not what is on disk
 * later), and what each defines (name, queue, retry, timeout, schema).
 *
 * Built once by loading every script in a scratch VM; immutable afterwards
 * and refcounted, so any thread may read it and check arguments against it
 * without touching a VM. */
#ifndef WH_CATALOG_H
#define WH_CATALOG_H

#include <stddef.h>

#include "config/config.h"
#include "core/err.h"
#include "lua/vm.h"
#include "schema/schema.h"

typedef struct wh_worker_def {
    char *name;
    char *queue;
    int retry;        /* count, or WH_RETRY_FALSE */
    double timeout;   /* seconds: the worker's, else workers.timeout */
    wh_schema *schema;/* retained */
    char *file;       /* where it is defined, "workers/x.lua" */
} wh_worker_def;

typedef struct wh_catalog wh_catalog;

/* Reads every <scripts_dir>/NAME.lua (sorted by name, not recursive) and
 * the app modules (see wh_catalog_modules), compiles every module and loads the scripts in
 * a scratch VM with cfg's memory limit and lua_path. Returns 0 and an owned
 * catalog (release with wh_catalog_release), or WH_ESCRIPT / WH_EIO with the
 * file and line in err. An empty folder is not an error (no workers). */
int wh_catalog_load(const wh_config *cfg, wh_catalog **out, wh_err *err);

wh_catalog *wh_catalog_retain(wh_catalog *c);
void wh_catalog_release(wh_catalog *c); /* accepts NULL */

size_t wh_catalog_count(const wh_catalog *c);
const wh_worker_def *wh_catalog_at(const wh_catalog *c, size_t i);       /* sorted by name */
const wh_worker_def *wh_catalog_find(const wh_catalog *c, const char *name); /* NULL if none */

/* WH_ENOCLASS with the message every enqueue path gives for a class no
 * script of cat defines: unknown worker class "X" (known: A, B). */
int wh_catalog_unknown_class(const wh_catalog *cat, const char *name, wh_err *err);

const wh_source *wh_catalog_sources(const wh_catalog *c, size_t *n);
/* The app's Lua modules: every NAME.lua under the workers.lua_path folders
 * (recursively, at most 8 deep), read when the catalog is loaded. Every VM
 * made from the catalog requires them from these copies, never from disk,
 * so a VM rebuilt later (recycling, a memory error) runs the same module
 * code as the rest of its generation. Borrowed, like the sources. */
const wh_source *wh_catalog_modules(const wh_catalog *c, size_t *n);

/* A new VM with every script of the catalog loaded. Owned. */
wh_vm *wh_catalog_new_vm(const wh_catalog *c, const wh_config *cfg, const wh_lhost *host, wh_err *err);

#endif
