/* lworker.c -- see lworker.h. */
#include "lua/lworker.h"

#include <ctype.h>
#include <lauxlib.h>
#include <math.h>
#include <string.h>

#include "core/buf.h"
#include "lua/lcall.h"
#include "lua/lconvert.h"
#include "lua/lschema.h"

static const char worker_mt_key = 0;  /* registry: metatable of definitions */
static const char current_key = 0;    /* registry: light userdata wh_job_meta* */
#define SCHEMA_UD "wh.Schema"

/* ---- the schema userdata: owns one reference ---- */

static int schema_gc(lua_State *L) {
    wh_schema **p = luaL_checkudata(L, 1, SCHEMA_UD);
    wh_schema_release(*p);
    *p = NULL;
    return 0;
}

static int schema_tostring(lua_State *L) {
    wh_schema **p = luaL_checkudata(L, 1, SCHEMA_UD);
    wh_buf b = WH_BUF_INIT;
    if (*p) wh_schema_describe(*p, &b);
    lua_pushlstring(L, wh_buf_cstr(&b), b.len);
    wh_buf_free(&b);
    return 1;
}

static int def_tostring(lua_State *L) {
    lua_getfield(L, 1, "name");
    lua_pushfstring(L, "worker %s", lua_isstring(L, -1) ? lua_tostring(L, -1) : "(unnamed)");
    return 1;
}

void wh_lworker_init(lua_State *L) {
    if (luaL_newmetatable(L, SCHEMA_UD)) {
        lua_pushcfunction(L, schema_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, schema_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &worker_mt_key) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_createtable(L, 0, 2);
        lua_pushliteral(L, "wh.Worker");
        lua_setfield(L, -2, "__name");
        lua_pushcfunction(L, def_tostring);
        lua_setfield(L, -2, "__tostring");
        lua_rawsetp(L, LUA_REGISTRYINDEX, &worker_mt_key);
    } else {
        lua_pop(L, 1);
    }
    /* the slot for the current job exists from the start, so setting it
     * later never allocates outside a protected call */
    lua_pushlightuserdata(L, NULL);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &current_key);
}

/* ---- names ---- */

bool wh_lworker_valid_name(const char *s) {
    if (s == NULL || *s == '\0') return false;
    for (;;) {
        if (!isupper((unsigned char)*s)) return false;
        while (isalnum((unsigned char)*s) || *s == '_') s++;
        if (*s == '\0') return true;
        if (s[0] != ':' || s[1] != ':') return false;
        s += 2;
    }
}

void wh_lworker_name_from_file(const char *file, char *out, size_t n) {
    if (n == 0) return; /* no room even for the terminator */
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    size_t len = strlen(base);
    if (len > 4 && strcmp(base + len - 4, ".lua") == 0) len -= 4;
    size_t o = 0;
    bool up = true;
    for (size_t i = 0; i < len && o + 1 < n; i++) {
        unsigned char ch = (unsigned char)base[i];
        if (ch == '_' || ch == '-' || ch == '.' || ch == ' ') { up = true; continue; }
        out[o++] = up ? (char)toupper(ch) : (char)ch;
        up = false;
    }
    out[o] = '\0';
}

/* ---- wh.worker{...} ---- */

static const char *const spec_keys[] = {"name", "queue", "retry", "timeout", "args", "perform",
                                        "allow_unknown_args", "description", NULL};

static int define_error(lua_State *L, const char *fmt, const char *a) {
    luaL_where(L, 1);
    lua_pushfstring(L, fmt, a);
    lua_concat(L, 2);
    return lua_error(L);
}

int wh_lworker_define(lua_State *L) {
    if (!lua_istable(L, 1)) return define_error(L, "wh.worker: expected a table, got %s", luaL_typename(L, 1));
    lua_settop(L, 1);
    /* unknown keys */
    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
        lua_pop(L, 1);
        bool ok = false;
        if (lua_type(L, -1) == LUA_TSTRING)
            for (const char *const *k = spec_keys; *k; k++)
                if (strcmp(*k, lua_tostring(L, -1)) == 0) ok = true;
        if (!ok) {
            const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : luaL_typename(L, -1);
            return define_error(L, "wh.worker: unknown option \"%s\" (known: name, queue, retry, timeout, "
                                   "args, perform, allow_unknown_args, description)", k);
        }
    }
    lua_createtable(L, 0, 8); /* 2: the definition */
    lua_getfield(L, 1, "name");
    if (!lua_isnil(L, -1) && !(lua_type(L, -1) == LUA_TSTRING && wh_lworker_valid_name(lua_tostring(L, -1))))
        return define_error(L, "wh.worker: name must be a class name such as \"DownloadWorker\" "
                               "(a capital letter first, then letters, digits, _ or ::), got %s",
                            lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : luaL_typename(L, -1));
    lua_setfield(L, 2, "name");

    lua_getfield(L, 1, "queue");
    if (lua_isnil(L, -1)) { lua_pop(L, 1); lua_pushliteral(L, "default"); }
    if (lua_type(L, -1) != LUA_TSTRING || lua_rawlen(L, -1) == 0)
        return define_error(L, "wh.worker: queue must be a non-empty string%s", "");
    lua_setfield(L, 2, "queue");

    lua_getfield(L, 1, "retry");
    if (lua_isnil(L, -1) || (lua_isboolean(L, -1) && lua_toboolean(L, -1))) {
        lua_pop(L, 1);
        lua_pushinteger(L, WH_DEFAULT_RETRY);
    } else if (!(lua_isboolean(L, -1) || (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 0))) {
        return define_error(L, "wh.worker: retry must be an integer >= 0, true (25) or false%s", "");
    }
    lua_setfield(L, 2, "retry");

    lua_getfield(L, 1, "timeout");
    if (!lua_isnil(L, -1) && !(lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) > 0 &&
                               isfinite(lua_tonumber(L, -1))))
        return define_error(L, "wh.worker: timeout must be a number of seconds > 0%s", "");
    lua_setfield(L, 2, "timeout");

    lua_getfield(L, 1, "perform");
    if (!lua_isfunction(L, -1)) return define_error(L, "wh.worker: perform must be a function (it is %s)", luaL_typename(L, -1));
    lua_setfield(L, 2, "perform");

    lua_getfield(L, 1, "description");
    lua_setfield(L, 2, "description");

    lua_getfield(L, 1, "allow_unknown_args");
    bool allow_unknown = lua_toboolean(L, -1);
    lua_setfield(L, 2, "allow_unknown_args");

    lua_getfield(L, 1, "args");
    wh_err err;
    wh_schema *s = wh_lschema_compile(L, -1, allow_unknown, &err);
    if (s == NULL) return define_error(L, "wh.worker: %s", err.msg);
    lua_setfield(L, 2, "args");
    wh_schema **ud = lua_newuserdatauv(L, sizeof *ud, 0);
    *ud = s;
    luaL_setmetatable(L, SCHEMA_UD);
    lua_setfield(L, 2, "schema");

    lua_rawgetp(L, LUA_REGISTRYINDEX, &worker_mt_key);
    lua_setmetatable(L, 2);
    return 1;
}

int wh_lworker_info_get(lua_State *L, int idx, wh_lworker_info *out) {
    idx = lua_absindex(L, idx);
    if (!lua_istable(L, idx) || !lua_getmetatable(L, idx))
        return wh_err_set(NULL, WH_ESCRIPT, "not a definition");
    lua_rawgetp(L, LUA_REGISTRYINDEX, &worker_mt_key);
    bool ok = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    if (!ok) return WH_ESCRIPT;
    lua_getfield(L, idx, "schema");
    wh_schema **ud = luaL_testudata(L, -1, SCHEMA_UD);
    out->schema = ud ? *ud : NULL;
    lua_pop(L, 1);
    if (out->schema == NULL) return WH_ESCRIPT;
    lua_getfield(L, idx, "name");
    out->name = lua_tostring(L, -1); /* kept alive by the table */
    lua_getfield(L, idx, "queue");
    out->queue = lua_tostring(L, -1) ? lua_tostring(L, -1) : "default";
    lua_getfield(L, idx, "retry");
    out->retry = lua_isinteger(L, -1) ? (int)lua_tointeger(L, -1) : WH_RETRY_FALSE;
    lua_getfield(L, idx, "timeout");
    out->timeout = lua_isnumber(L, -1) ? (double)lua_tonumber(L, -1) : 0.0;
    lua_getfield(L, idx, "file");
    out->file = lua_tostring(L, -1);
    lua_pop(L, 5);
    return 0;
}

void wh_lworker_set_name(lua_State *L, int idx, const char *name) {
    idx = lua_absindex(L, idx);
    lua_pushstring(L, name);
    lua_setfield(L, idx, "name");
}

const wh_job_meta *wh_lworker_current(lua_State *L) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &current_key);
    const wh_job_meta *m = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return m;
}

static void push_job_table(lua_State *L, const wh_job_meta *m) {
    lua_createtable(L, 0, 6);
    lua_pushstring(L, m->jid);
    lua_setfield(L, -2, "jid");
    lua_pushstring(L, m->class_name);
    lua_setfield(L, -2, "class");
    lua_pushstring(L, m->queue);
    lua_setfield(L, -2, "queue");
    if (m->has_retry_count) {
        lua_pushinteger(L, (lua_Integer)m->retry_count);
        lua_setfield(L, -2, "retry_count");
    }
    lua_pushnumber(L, m->created_at);
    lua_setfield(L, -2, "created_at");
    lua_pushnumber(L, m->enqueued_at);
    lua_setfield(L, -2, "enqueued_at");
}

typedef struct perform_ctx {
    const wh_lworker_info *info;
    const wh_json *args;
    const wh_job_meta *meta;
} perform_ctx;

/* Runs inside the protected call, so that building the arguments (which
 * allocates, and may hit the VM's memory limit) is protected too.
 * stack: ctx (light userdata), definition table */
static int perform_trampoline(lua_State *L) {
    const perform_ctx *c = lua_touserdata(L, 1);
    lua_pushlightuserdata(L, (void *)c->meta);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &current_key);
    lua_getfield(L, 2, "perform");
    wh_lconvert_push_payload_args(L, c->info->schema, c->args);
    push_job_table(L, c->meta);
    lua_call(L, 2, 0);
    return 0;
}

int wh_lworker_perform(lua_State *L, int def_idx, const wh_lworker_info *info, const wh_json *payload_args,
                       const wh_job_meta *meta, char **traceback, wh_err *err) {
    if (traceback) *traceback = NULL;
    def_idx = lua_absindex(L, def_idx);
    if (wh_schema_check_payload_args(info->schema, payload_args, err) != 0) {
        wh_err_prefix(err, "%s", meta->class_name);
        return WH_EARGS;
    }
    if (!lua_checkstack(L, 8)) return wh_err_set(err, WH_ENOMEM, "Lua stack overflow");
    /* remember the enclosing job (nested ForegroundBlocking jobs) */
    lua_rawgetp(L, LUA_REGISTRYINDEX, &current_key);
    void *outer = lua_touserdata(L, -1);
    lua_pop(L, 1);

    perform_ctx ctx = {info, payload_args, meta};
    lua_pushcfunction(L, perform_trampoline);
    lua_pushlightuserdata(L, &ctx);
    lua_pushvalue(L, def_idx);
    int rc = wh_lcall_pcall(L, 2, 0, WH_EJOB, traceback, err);

    lua_pushlightuserdata(L, outer);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &current_key);
    return rc;
}
