/* lworker.h -- worker definitions in Lua (wh.worker{...}) and the one path
 * that runs a job in a lua_State: check in C, convert, call perform.
 *
 * Both the host's VMs and the busted helper (workerhost.testing, in busted's
 * own VM) run jobs through wh_lworker_perform, so a spec exercises exactly
 * what production runs. */
#ifndef WH_LWORKER_H
#define WH_LWORKER_H

#include <lua.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/err.h"
#include "json/json.h"
#include "schema/schema.h"

#define WH_DEFAULT_RETRY 25

/* A worker definition as C sees it. Strings are borrowed from the Lua table
 * (valid while it is reachable); schema is borrowed (retain to keep). */
typedef struct wh_lworker_info {
    const char *name;  /* NULL until the loader names it after its file */
    const char *queue; /* never NULL ("default") */
    int retry;         /* a count >= 0, or WH_RETRY_FALSE */
    double timeout;    /* seconds; 0 = the host's workers.timeout */
    wh_schema *schema;
    const char *file;  /* the script that defined it, or NULL */
} wh_lworker_info;

/* What perform's second argument, the job table, shows. Borrowed strings. */
typedef struct wh_job_meta {
    const char *jid;
    const char *class_name;
    const char *queue;
    bool has_retry_count;
    int64_t retry_count;
    double created_at;
    double enqueued_at;
} wh_job_meta;

/* Registers the definition metatable; called by the module opener. [-0,+0,m] */
void wh_lworker_init(lua_State *L);

/* lua_CFunction for wh.worker(spec): checks the spec, compiles its schema in
 * C and returns the definition table; raises "file:line: ..." on a bad spec. */
int wh_lworker_define(lua_State *L);

/* Fills *out from the definition table at idx. Returns 0, or WH_ESCRIPT when
 * the value is not a definition made by wh.worker. [-0,+0,-] */
int wh_lworker_info_get(lua_State *L, int idx, wh_lworker_info *out);

/* Sets the definition's name (used by the loader: download_worker.lua ->
 * DownloadWorker). [-0,+0,m] */
void wh_lworker_set_name(lua_State *L, int idx, const char *name);

/* The job being performed in L, or NULL (for wh.log). */
const wh_job_meta *wh_lworker_current(lua_State *L);

/* Runs one job: checks the payload `args` (a JSON array, as a Sidekiq payload
 * carries it) against info->schema in C; if refused returns WH_EARGS (message
 * prefixed with the worker's name) without entering Lua. Otherwise calls
 * perform(args, job) through wh_lcall_pcall and returns 0, or the error of
 * the call (WH_EJOB, WH_ENOMEM) with *traceback as wh_lcall_pcall gives it.
 * The definition table is at def_idx. [-0,+0,-] */
int wh_lworker_perform(lua_State *L, int def_idx, const wh_lworker_info *info, const wh_json *payload_args,
                       const wh_job_meta *meta, char **traceback, wh_err *err);

/* Turns a file name into a class name: "download_worker.lua" ->
 * "DownloadWorker", "report-v2.lua" -> "ReportV2". Writes at most n bytes. */
void wh_lworker_name_from_file(const char *file, char *out, size_t n);

/* True when name is a valid class name: Ruby constant style, A-Z first,
 * letters, digits, _ and :: between parts. */
bool wh_lworker_valid_name(const char *name);

#endif
