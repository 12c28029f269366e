/* lmodule.c -- see lmodule.h. */
#include "lua/lmodule.h"

#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/jid.h"
#include "core/log.h"
#include "core/clock.h"
#include "core/dir.h"
#include "core/mem.h"
#include "lua/lcall.h"
#include "lua/lconvert.h"
#include "lua/lschema.h"
#include "lua/lworker.h"

extern const char wh_lua_src_workerhost[];
extern const size_t wh_lua_src_workerhost_len;
extern const char wh_lua_src_testing[];
extern const size_t wh_lua_src_testing_len;

static const char host_key = 0;     /* registry: light userdata wh_lhost* */
static const char testapp_key = 0;  /* registry: table name -> definition (workerhost.testing) */

void wh_lmodule_set_host(lua_State *L, const wh_lhost *host) {
    lua_pushlightuserdata(L, (void *)host);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &host_key);
}

static const wh_lhost *get_host(lua_State *L) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &host_key);
    const wh_lhost *h = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return h;
}

/* ---- wh.log ---- */

static int log_at(lua_State *L, wh_log_level level) {
    if (level < wh_log_get_level()) return 0;
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        if (i > 1) luaL_addchar(&b, ' ');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    const wh_job_meta *m = wh_lworker_current(L);
    wh_log(level, m ? m->class_name : NULL, m ? m->jid : NULL, "%s", lua_tostring(L, -1));
    return 0;
}
static int l_log_debug(lua_State *L) { return log_at(L, WH_LOG_DEBUG); }
static int l_log_info(lua_State *L) { return log_at(L, WH_LOG_INFO); }
static int l_log_warn(lua_State *L) { return log_at(L, WH_LOG_WARN); }
static int l_log_error(lua_State *L) { return log_at(L, WH_LOG_ERROR); }

/* ---- wh.enqueue ---- */

void wh_lmodule_check_enqueue_options(lua_State *L, int idx, wh_enqueue_options *o) {
    wh_enqueue_options d = WH_ENQUEUE_OPTIONS_INIT;
    *o = d;
    idx = lua_absindex(L, idx);
    if (lua_isnoneornil(L, idx)) return;
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
        if (strcmp(k, "queue") == 0) {
            if (lua_type(L, -1) != LUA_TSTRING || lua_rawlen(L, -1) == 0)
                luaL_error(L, "wh.enqueue: option queue must be a non-empty string");
            o->queue = lua_tostring(L, -1); /* kept alive by the options table */
        } else if (strcmp(k, "in") == 0) {
            if (lua_type(L, -1) != LUA_TNUMBER || !(lua_tonumber(L, -1) >= 0) || !isfinite(lua_tonumber(L, -1)))
                luaL_error(L, "wh.enqueue: option in must be a number of seconds >= 0");
            o->in = (double)lua_tonumber(L, -1);
        } else if (strcmp(k, "at") == 0) {
            if (lua_type(L, -1) != LUA_TNUMBER || !(lua_tonumber(L, -1) > 0) || !isfinite(lua_tonumber(L, -1)))
                luaL_error(L, "wh.enqueue: option at must be epoch seconds > 0");
            o->at = (double)lua_tonumber(L, -1);
        } else if (strcmp(k, "retry") == 0) {
            if (lua_isboolean(L, -1)) o->retry = lua_toboolean(L, -1) ? WH_DEFAULT_RETRY : WH_RETRY_FALSE;
            else if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 0 && lua_tointeger(L, -1) <= 1000000)
                o->retry = (int)lua_tointeger(L, -1);
            else luaL_error(L, "wh.enqueue: option retry must be an integer >= 0, true or false");
        } else {
            luaL_error(L, "wh.enqueue: unknown option \"%s\" (known: queue, in, at, retry)", k);
        }
        lua_pop(L, 1);
    }
    if (o->in > 0 && o->at > 0) luaL_error(L, "wh.enqueue: give either in or at, not both");
}

/* What wh.enqueue and wh.enqueue_bulk start with: the class name (arg 1),
 * the options (arg 3), the host, and the class's schema; raises (naming
 * `fn`) when there is no host or no such class. */
static const wh_schema *enqueue_prelude(lua_State *L, const char *fn, const char **name, wh_enqueue_options *opts,
                                        const wh_lhost **h) {
    *name = luaL_checkstring(L, 1);
    wh_lmodule_check_enqueue_options(L, 3, opts);
    *h = get_host(L);
    if (*h == NULL)
        luaL_error(L, "%s: no host runs this Lua state (in specs, use require(\"workerhost.testing\").app())", fn);
    const wh_schema *s = (*h)->find((*h)->ud, L, *name);
    if (s == NULL) luaL_error(L, "%s: unknown worker class \"%s\"", fn, *name);
    return s;
}

static int l_enqueue(lua_State *L) {
    const char *name;
    wh_enqueue_options opts;
    const wh_lhost *h;
    const wh_schema *s = enqueue_prelude(L, "wh.enqueue", &name, &opts, &h);
    wh_err err;
    wh_json_doc *doc = NULL;
    int rc = wh_lconvert_call_args(L, 2, s, &doc, &err);
    if (rc == 0) rc = wh_schema_check_call_args(s, wh_json_doc_root(doc), &err);
    if (rc != 0) {
        wh_json_doc_free(doc);
        if (rc == WH_ENOMEM) return wh_lcall_error_nomem(L);
        return luaL_error(L, "wh.enqueue: %s: %s", name, err.msg);
    }
    int n = h->enqueue(h->ud, L, name, doc, wh_json_doc_root(doc), &opts, &err);
    if (n < 0) return luaL_error(L, "wh.enqueue: %s: %s", name, err.msg);
    return n;
}

/* wh.enqueue_bulk(name, list, opts): every job is checked first (one refused
 * job raises, naming it, and nothing is queued); then all are queued at once
 * (one pipelined push in BackgroundQueue). Returns the list of job ids. */
static int l_enqueue_bulk(lua_State *L) {
    luaL_checktype(L, 2, LUA_TTABLE);
    const char *name;
    wh_enqueue_options opts;
    const wh_lhost *h;
    const wh_schema *s = enqueue_prelude(L, "wh.enqueue_bulk", &name, &opts, &h);
    lua_Integer n = luaL_len(L, 2);
    if (n < 0 || n > 1000000) return luaL_error(L, "wh.enqueue_bulk: between 0 and 1000000 jobs at a time");
    /* scratch space owned by Lua (collected with the call); the docs in it are freed here */
    wh_json_doc **docs = lua_newuserdatauv(L, ((size_t)n ? (size_t)n : 1) * sizeof *docs, 0);
    wh_err err;
    int rc = 0;
    lua_Integer i = 1;
    for (; i <= n && rc == 0; i++) {
        docs[i - 1] = NULL;
        lua_geti(L, 2, i);
        rc = wh_lconvert_call_args(L, lua_gettop(L), s, &docs[i - 1], &err);
        if (rc == 0) rc = wh_schema_check_call_args(s, wh_json_doc_root(docs[i - 1]), &err);
        lua_pop(L, 1);
    }
    if (rc != 0) {
        for (lua_Integer k = 0; k < i - 1; k++) wh_json_doc_free(docs[k]);
        if (rc == WH_ENOMEM) return wh_lcall_error_nomem(L);
        return luaL_error(L, "wh.enqueue_bulk: %s: job %d of %d: %s", name, (int)(i - 1), (int)n, err.msg);
    }
    lua_createtable(L, (int)n, 0);
    int out = lua_gettop(L);
    if (h->enqueue_bulk) {
        char (*jids)[WH_JID_SIZE] = lua_newuserdatauv(L, ((size_t)n ? (size_t)n : 1) * WH_JID_SIZE, 0);
        rc = h->enqueue_bulk(h->ud, L, name, docs, (size_t)n, &opts, jids, &err); /* takes the docs */
        if (rc != 0) return luaL_error(L, "wh.enqueue_bulk: %s: %s", name, err.msg);
        for (lua_Integer k = 0; k < n; k++) {
            lua_pushstring(L, jids[k]);
            lua_rawseti(L, out, k + 1);
        }
        lua_pop(L, 1);
        return 1;
    }
    for (lua_Integer k = 0; k < n; k++) {
        wh_json_doc *doc = docs[k];
        docs[k] = NULL;
        int top = lua_gettop(L);
        int got = h->enqueue(h->ud, L, name, doc, wh_json_doc_root(doc), &opts, &err); /* takes doc */
        if (got < 0) {
            for (lua_Integer j = k + 1; j < n; j++) wh_json_doc_free(docs[j]);
            return luaL_error(L, "wh.enqueue_bulk: %s: job %d of %d (the ones before it are queued): %s", name,
                              (int)(k + 1), (int)n, err.msg);
        }
        lua_pushvalue(L, top + 1); /* the job id */
        lua_rawseti(L, out, k + 1);
        lua_settop(L, top);
    }
    return 1;
}

/* ---- workerhost.testing support: an in-VM ForegroundBlocking host ---- */

static int testapp_def(lua_State *L, const char *name) {
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &testapp_key) != LUA_TTABLE) {
        lua_pop(L, 1);
        return 0;
    }
    lua_getfield(L, -1, name);
    lua_remove(L, -2);
    if (lua_isnil(L, -1)) { lua_pop(L, 1); return 0; }
    return 1;
}

static const wh_schema *testapp_find(void *ud, lua_State *L, const char *name) {
    (void)ud;
    if (!testapp_def(L, name)) return NULL;
    wh_lworker_info info;
    int rc = wh_lworker_info_get(L, -1, &info);
    lua_pop(L, 1);
    return rc == 0 ? info.schema : NULL; /* kept alive by the app table */
}

/* Runs the job now in L; pushes jid, ok, err. */
static int testapp_enqueue(void *ud, lua_State *L, const char *name, wh_json_doc *doc, const wh_json *args,
                           const wh_enqueue_options *opts, wh_err *err) {
    (void)ud;
    if (!testapp_def(L, name)) {
        wh_json_doc_free(doc);
        return wh_err_set(err, WH_ENOCLASS, "unknown worker class \"%s\"", name);
    }
    int def = lua_gettop(L);
    wh_lworker_info info;
    wh_lworker_info_get(L, def, &info);
    char jid[WH_JID_SIZE];
    wh_jid_new(jid);
    double now = wh_clock_wall();
    wh_job_meta meta = {jid, name, opts->queue ? opts->queue : info.queue, false, 0, now, now};
    const wh_json *payload_args = wh_schema_payload_args(info.schema, doc, args);
    wh_err jerr;
    char *tb = NULL;
    int rc = wh_lworker_perform(L, def, &info, payload_args, &meta, &tb, &jerr);
    wh_json_doc_free(doc);
    lua_pop(L, 1);
    lua_pushstring(L, jid);
    lua_pushboolean(L, rc == 0);
    if (rc == 0) lua_pushnil(L);
    else lua_pushstring(L, jerr.msg);
    wh_free(tb);
    return 3;
}

static const wh_lhost testapp_host = {testapp_find, testapp_enqueue, NULL, NULL};

/* _set_test_app(table|nil): installs the in-VM host over a table name -> definition. */
static int l_set_test_app(lua_State *L) {
    if (lua_isnil(L, 1)) {
        lua_pushnil(L);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &testapp_key);
        if (get_host(L) == &testapp_host) wh_lmodule_set_host(L, NULL);
        return 0;
    }
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_pushvalue(L, 1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &testapp_key);
    wh_lmodule_set_host(L, &testapp_host);
    return 0;
}

/* ---- helpers for the embedded Lua ---- */

static int l_register_type_mt(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_pushvalue(L, 1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &wh_lschema_type_mt_key);
    return 0;
}

/* _list_scripts(dir) -> sorted list of "<dir>/<name>.lua", or nil, message */
static int l_list_scripts(lua_State *L) {
    const char *dir = luaL_checkstring(L, 1);
    char **names;
    size_t n;
    wh_err err;
    if (wh_dir_list_lua(dir, &names, &n, &err) != 0) {
        luaL_pushfail(L);
        lua_pushfstring(L, "cannot open %s", err.msg);
        return 2;
    }
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_pushfstring(L, "%s/%s", dir, names[i]); /* may raise: names would leak */
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    wh_dir_free_list(names, n);
    return 1;
}

static int l_name_from_file(lua_State *L) {
    char name[256];
    wh_lworker_name_from_file(luaL_checkstring(L, 1), name, sizeof name);
    lua_pushstring(L, name);
    return 1;
}

static int l_valid_name(lua_State *L) {
    lua_pushboolean(L, wh_lworker_valid_name(luaL_checkstring(L, 1)));
    return 1;
}

static int l_is_worker(lua_State *L) {
    wh_lworker_info info;
    lua_pushboolean(L, wh_lworker_info_get(L, 1, &info) == 0);
    return 1;
}

static int l_new_jid(lua_State *L) {
    char jid[WH_JID_SIZE];
    wh_jid_new(jid);
    lua_pushstring(L, jid);
    return 1;
}

static const luaL_Reg core_funcs[] = {
    {"worker", wh_lworker_define},
    {"enqueue", l_enqueue},
    {"enqueue_bulk", l_enqueue_bulk},
    {"_register_type_mt", l_register_type_mt},
    {"_set_test_app", l_set_test_app},
    {"_list_scripts", l_list_scripts},
    {"_name_from_file", l_name_from_file},
    {"_is_worker", l_is_worker},
    {"_valid_name", l_valid_name},
    {"_new_jid", l_new_jid},
    {NULL, NULL},
};

static const luaL_Reg log_funcs[] = {
    {"debug", l_log_debug}, {"info", l_log_info}, {"warn", l_log_warn}, {"error", l_log_error}, {NULL, NULL},
};

/* Runs an embedded chunk with one argument (the module table) and leaves its
 * single result. Raises on error (we are inside require's protected call). */
static void run_embedded(lua_State *L, const char *src, size_t len, const char *name) {
    if (luaL_loadbufferx(L, src, len, name, "t") != LUA_OK) lua_error(L);
    lua_pushvalue(L, -2);
    lua_call(L, 1, 1);
}

/* Sets module.connect (the module table on top) to the workerhost.connect
 * module, when this state preloads one (app/connect.h: the host's VMs and
 * workerhost.so do). The Lua layer cannot include app/, so the connect
 * module comes in through package.preload. [-0,+0,e] */
static void set_connect(lua_State *L) {
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_CFunction open = lua_getfield(L, -1, "workerhost.connect") == LUA_TFUNCTION ? lua_tocfunction(L, -1) : NULL;
    lua_pop(L, 2);
    if (open == NULL) return;
    luaL_requiref(L, "workerhost.connect", open, 0);
    lua_setfield(L, -2, "connect");
}

int wh_lmodule_open(lua_State *L) {
    wh_lworker_init(L);
    luaL_newlib(L, core_funcs);
    set_connect(L);
    luaL_newlib(L, log_funcs);
    lua_setfield(L, -2, "log");
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    wh_lconvert_push_array_mt(L);
    lua_setfield(L, -2, "array_mt");
    lua_pushliteral(L, WORKERHOST_VERSION);
    lua_setfield(L, -2, "version");
    run_embedded(L, wh_lua_src_workerhost, wh_lua_src_workerhost_len, "=[workerhost]");
    return 1;
}

static int open_testing(lua_State *L) {
    luaL_requiref(L, "workerhost", wh_lmodule_open, 0);
    run_embedded(L, wh_lua_src_testing, wh_lua_src_testing_len, "=[workerhost.testing]");
    return 1;
}

void wh_lmodule_preload(lua_State *L) {
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, wh_lmodule_open);
    lua_setfield(L, -2, "workerhost");
    lua_pushcfunction(L, open_testing);
    lua_setfield(L, -2, "workerhost.testing");
    lua_pop(L, 1);
}
