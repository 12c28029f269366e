/* lcall.c -- see lcall.h. */
#include "lua/lcall.h"

#include <lauxlib.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"

/* registry: true while an error raised by wh_lcall_error_nomem unwinds */
static const char nomem_key = 0;

int wh_lcall_error_nomem(lua_State *L) {
    lua_pushboolean(L, 1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &nomem_key); /* may itself fail: LUA_ERRMEM, the same outcome */
    lua_pushliteral(L, "not enough memory");
    return lua_error(L);
}

/* Reads and clears the mark (neither allocates: the key, if set, exists). */
static bool take_nomem(lua_State *L) {
    bool set = lua_rawgetp(L, LUA_REGISTRYINDEX, &nomem_key) != LUA_TNIL;
    lua_pop(L, 1);
    if (set) {
        lua_pushnil(L);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &nomem_key);
    }
    return set;
}

/* Message handler: keeps the message as is and stores the traceback next to
 * it, so the message stays short ("file:line: what") and the traceback can be
 * logged separately. Returns a table {msg, traceback}. */
static int msghandler(lua_State *L) {
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) {
            msg = lua_tostring(L, -1);
        } else {
            msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
        }
    }
    lua_createtable(L, 2, 0);
    lua_pushstring(L, msg);
    lua_rawseti(L, -2, 1);
    luaL_traceback(L, L, NULL, 1);
    lua_rawseti(L, -2, 2);
    return 1;
}

int wh_lcall_pcall(lua_State *L, int nargs, int nres, int code, char **traceback, wh_err *err) {
    int base = lua_gettop(L) - nargs; /* index of the function */
    if (traceback) *traceback = NULL;
    if (!lua_checkstack(L, 4)) {
        lua_settop(L, base - 1);
        return wh_err_set(err, WH_ENOMEM, "Lua stack overflow");
    }
    lua_pushcfunction(L, msghandler);
    lua_insert(L, base);
    int status = lua_pcall(L, nargs, nres, base);
    lua_remove(L, base);
    bool nomem = take_nomem(L); /* cleared either way: a mark the code caught is no outcome */
    if (status == LUA_OK) return 0;

    int rc = status == LUA_ERRMEM || nomem ? WH_ENOMEM : code;
    if (lua_type(L, -1) == LUA_TTABLE) {
        lua_rawgeti(L, -1, 1);
        wh_err_set(err, rc, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "(no message)");
        lua_pop(L, 1);
        if (traceback) {
            lua_rawgeti(L, -1, 2);
            /* plain strdup: memory may be short right now, and the traceback is optional */
            if (lua_isstring(L, -1)) *traceback = strdup(lua_tostring(L, -1));
            lua_pop(L, 1);
        }
    } else if (status == LUA_ERRMEM) {
        wh_err_set(err, rc, "not enough memory");
    } else {
        const char *m = lua_tostring(L, -1);
        wh_err_set(err, rc, "%s", m ? m : "(error in error handling)");
    }
    lua_settop(L, base - 1);
    return rc;
}
